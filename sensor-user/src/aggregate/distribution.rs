//! A latency distribution every sink can render: HdrHistogram buckets (1 µs to an hour, 3
//! significant digits: a bucket spans at most 1/1024 of its value) kept sparse, each with the
//! exact sum of its samples. A dense histogram of that range is ~188 KB; this one costs what
//! its distinct latencies cost. Quantiles are HdrHistogram's; CloudWatch turns the buckets
//! into `Values`/`Counts`.

use hdrhistogram::Histogram;
use std::{collections::BTreeMap, sync::OnceLock};

/// Highest latency tracked, µs (an hour); larger values count as this.
pub const MAX_US: u64 = 3_600_000_000;
/// Significant digits of the histogram.
pub const SIGFIG: u8 = 3;

/// An empty histogram of the aggregator's shape, used for its bucket arithmetic.
pub fn template() -> &'static Histogram<u64> {
    static T: OnceLock<Histogram<u64>> = OnceLock::new();
    T.get_or_init(|| Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("valid bounds"))
}

/// The samples of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub count: u64,
    pub sum: u128,
}

/// One HdrHistogram bucket as the conversion sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketView {
    /// Lowest and highest value the bucket stands for.
    pub low: u64,
    pub high: u64,
    pub count: u64,
    /// Sum of the samples (exact for a [`Distribution`]).
    pub sum: f64,
}

/// HdrHistogram-bucketed samples with exact per-bucket sums; sparse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distribution {
    /// Keyed by the bucket's lowest equivalent value.
    buckets: BTreeMap<u64, Bucket>,
    count: u64,
    sum: u128,
}

impl Distribution {
    pub fn record(&mut self, us: u64) {
        let v = us.clamp(1, MAX_US);
        let b = self
            .buckets
            .entry(template().lowest_equivalent(v))
            .or_default();
        b.count += 1;
        b.sum += u128::from(v);
        self.count += 1;
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Distribution) {
        for (k, b) in &other.buckets {
            let e = self.buckets.entry(*k).or_default();
            e.count += b.count;
            e.sum += b.sum;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the recorded values (after clamping to 1..=[`MAX_US`]).
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Distinct buckets hit.
    pub fn buckets_len(&self) -> usize {
        self.buckets.len()
    }

    pub fn buckets(&self) -> impl Iterator<Item = BucketView> + '_ {
        let t = template();
        self.buckets.iter().map(|(low, b)| BucketView {
            low: *low,
            high: t.highest_equivalent(*low),
            count: b.count,
            sum: b.sum as f64,
        })
    }

    /// The value at quantile `q` as HdrHistogram reports it (`value_at_quantile`): the
    /// highest value equivalent to the sample of rank max(1, ⌈q·N⌉); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (low, b) in &self.buckets {
            seen += b.count;
            if seen >= rank {
                return template().highest_equivalent(*low);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quantiles are HdrHistogram's own, for every rank of a spread of samples.
    #[test]
    fn quantiles_are_hdrhistograms() {
        let mut d = Distribution::default();
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_US, SIGFIG).unwrap();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = 1 + (x >> 33) % 5_000_000;
            d.record(v);
            h.record(v).unwrap();
        }
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(d.quantile(q), h.value_at_quantile(q), "q={q}");
        }
        assert_eq!(Distribution::default().quantile(0.5), 0);
    }
}
