//! Latency distributions for CloudWatch: HdrHistogram buckets kept sparse, with each bucket's
//! exact sum, turned into `Values`/`Counts` arrays.
//!
//! A [`Distribution`] buckets values exactly as `hdrhistogram::Histogram::new_with_bounds(1, 1 h,
//! 3)` does (the latency aggregator's histogram: 3 significant digits, so a bucket spans at most
//! 1/1024 of its value), but stores only the buckets that were hit, each with its count and the
//! exact sum of its samples. A dense histogram of that range is ~188 KB; this one costs what
//! the period's distinct latencies cost.
//!
//! [`values_counts`] turns buckets into CloudWatch data:
//!
//! 1. adjacent buckets are merged while the merged range (lowest equivalent value of the first
//!    bucket to highest equivalent value of the last) stays within `precision` × its low end;
//!    a single bucket always qualifies, so with the histogram's own precision (10⁻³) only
//!    buckets the histogram keeps apart below its precision (values under 2048 µs) are merged;
//! 2. each group is sent as one value, the mean of its samples, with its count. The mean lies
//!    inside the group's range, so the sample of any rank, and so every percentile, moves by at
//!    most the range (≤ precision × value); `SampleCount` and `Sum` are exact;
//! 3. groups go into datums of at most `max_values` (CloudWatch: 150) distinct values. More than
//!    one datum is sent for a wide distribution (same metric, dimensions and timestamp):
//!    CloudWatch aggregates them into the period. Squeezing a latency range of several decades
//!    into 150 values would need buckets ~10% wide, far beyond the histogram's precision; a
//!    coarser `precision` (configurable) trades accuracy for fewer datums.

use hdrhistogram::Histogram;

pub use rds_sensor::aggregate::{Bucket, BucketView, Distribution, MAX_US, SIGFIG, template};

/// The histogram's relative precision (10^-SIGFIG).
pub const PRECISION: f64 = 1e-3;
/// CloudWatch's limit of distinct values in one datum's `Values` array.
pub const MAX_VALUES_PER_DATUM: usize = 150;

/// A distribution as CloudWatch takes it.
pub trait ToValuesCounts {
    /// `Values`/`Counts` arrays (see the module documentation).
    fn values_counts(&self, precision: f64, max_values: usize) -> Vec<ValuesCounts>;
}

impl ToValuesCounts for Distribution {
    fn values_counts(&self, precision: f64, max_values: usize) -> Vec<ValuesCounts> {
        values_counts(self.buckets(), precision, max_values)
    }
}

/// The buckets of a real HdrHistogram. Its samples' sums are unknown, so each bucket stands
/// for its median equivalent value.
pub fn histogram_buckets(h: &Histogram<u64>) -> Vec<BucketView> {
    h.iter_recorded()
        .map(|v| {
            let value = v.value_iterated_to();
            let count = v.count_at_value();
            BucketView {
                low: h.lowest_equivalent(value),
                high: h.highest_equivalent(value),
                count,
                sum: h.median_equivalent(value) as f64 * count as f64,
            }
        })
        .collect()
}

/// One datum's `Values` and `Counts`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValuesCounts {
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
}

/// Merges adjacent buckets (in increasing order) within `precision` and splits the result into
/// arrays of at most `max_values` values (see the module documentation).
pub fn values_counts(
    buckets: impl Iterator<Item = BucketView>,
    precision: f64,
    max_values: usize,
) -> Vec<ValuesCounts> {
    let max_values = max_values.max(1);
    let precision = precision.max(0.0);
    let mut groups: Vec<(f64, u64)> = Vec::new();
    let mut cur: Option<(u64, u64, u64, f64)> = None; // low, high, count, sum
    for b in buckets.filter(|b| b.count > 0) {
        cur = match cur {
            Some((low, _, count, sum)) if (b.high - low) as f64 <= precision * low as f64 => {
                Some((low, b.high, count + b.count, sum + b.sum))
            }
            Some((_, _, count, sum)) => {
                groups.push((sum / count as f64, count));
                Some((b.low, b.high, b.count, b.sum))
            }
            None => Some((b.low, b.high, b.count, b.sum)),
        };
    }
    if let Some((_, _, count, sum)) = cur {
        groups.push((sum / count as f64, count));
    }
    groups
        .chunks(max_values)
        .map(|c| ValuesCounts {
            values: c.iter().map(|g| g.0).collect(),
            counts: c.iter().map(|g| g.1 as f64).collect(),
        })
        .collect()
}

/// The value at quantile `q` of Values/Counts data, ranked as HdrHistogram ranks: the sample of
/// rank max(1, ⌈q·N⌉) in increasing order.
pub fn quantile(data: &[ValuesCounts], q: f64) -> Option<f64> {
    let mut pairs: Vec<(f64, f64)> = data
        .iter()
        .flat_map(|d| d.values.iter().copied().zip(d.counts.iter().copied()))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    if total == 0.0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total).ceil().max(1.0);
    let mut seen = 0.0;
    for (v, c) in pairs {
        seen += c;
        if seen >= rank {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of latencies over five decades, with repeats.
    fn samples(n: usize) -> Vec<u64> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // log-uniform between 20 µs and 2 s
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                (20.0 * (1e5f64).powf(u)) as u64
            })
            .collect()
    }

    fn reference(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, MAX_US, SIGFIG).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    fn check_quantiles(data: &[ValuesCounts], h: &Histogram<u64>, precision: f64) {
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = h.value_at_quantile(q) as f64;
            let got = quantile(data, q).unwrap();
            // The histogram answers with its bucket's highest equivalent value; the group's
            // value lies in the same range, which spans at most `precision` of it.
            assert!(
                (got - want).abs() <= precision * want + 1e-9,
                "q={q}: sent {got}, histogram {want}"
            );
        }
    }

    #[test]
    fn values_counts_reproduce_the_histograms_percentiles() {
        let values = samples(200_000);
        let h = reference(&values);
        let mut d = Distribution::default();
        for v in &values {
            d.record(*v);
        }
        assert_eq!(d.buckets_len(), h.iter_recorded().count(), "same buckets");
        let data = d.values_counts(PRECISION, MAX_VALUES_PER_DATUM);
        assert!(data.len() > 1, "a wide distribution needs several datums");
        for datum in &data {
            assert!(datum.values.len() <= MAX_VALUES_PER_DATUM);
            assert_eq!(datum.values.len(), datum.counts.len());
            assert!(datum.values.windows(2).all(|w| w[0] < w[1]), "distinct");
        }
        // SampleCount and Sum are exact.
        let n: f64 = data.iter().flat_map(|d| &d.counts).sum();
        let sum: f64 = data
            .iter()
            .flat_map(|d| d.values.iter().zip(&d.counts).map(|(v, c)| v * c))
            .sum();
        assert_eq!(n as u64, values.len() as u64);
        let exact: u64 = values.iter().sum();
        assert!(
            (sum - exact as f64).abs() <= exact as f64 * 1e-12,
            "{sum} vs {exact}"
        );
        check_quantiles(&data, &h, PRECISION);
        // p50/p99 explicitly, as the issue asks.
        for q in [0.5, 0.99] {
            let (got, want) = (quantile(&data, q).unwrap(), h.value_at_quantile(q) as f64);
            assert!(
                (got - want).abs() / want <= PRECISION,
                "p{q}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn every_rank_moves_by_at_most_the_precision() {
        // Small values are exact buckets in the histogram; they are merged within precision.
        let values: Vec<u64> = (1000..=3000).chain(1000..=1100).collect();
        let h = reference(&values);
        for precision in [PRECISION, 0.01, 0.1] {
            let mut d = Distribution::default();
            values.iter().for_each(|v| d.record(*v));
            let data = d.values_counts(precision, MAX_VALUES_PER_DATUM);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let pairs: Vec<(f64, f64)> = data
                .iter()
                .flat_map(|d| d.values.iter().copied().zip(d.counts.iter().copied()))
                .collect();
            let mut expanded = Vec::new();
            for (v, c) in pairs {
                expanded.extend(std::iter::repeat_n(v, c as usize));
            }
            assert_eq!(expanded.len(), sorted.len());
            for (sent, orig) in expanded.iter().zip(&sorted) {
                let bucket = h.highest_equivalent(*orig) as f64;
                assert!(
                    (sent - bucket).abs() <= precision * bucket + 1e-9,
                    "precision {precision}: {orig} sent as {sent}"
                );
            }
            check_quantiles(&data, &h, precision);
        }
        let mut d = Distribution::default();
        values.iter().for_each(|v| d.record(*v));
        let fine: usize = d
            .values_counts(PRECISION, 150)
            .iter()
            .map(|x| x.values.len())
            .sum();
        let coarse: usize = d
            .values_counts(0.01, 150)
            .iter()
            .map(|x| x.values.len())
            .sum();
        assert!(
            fine < d.buckets_len(),
            "values under 2048 are merged within 0.1%"
        );
        assert!(coarse < fine / 5, "{coarse} vs {fine}");
    }

    #[test]
    fn from_a_real_hdrhistogram() {
        let values = samples(50_000);
        let h = reference(&values);
        let data = values_counts(histogram_buckets(&h).into_iter(), PRECISION, 150);
        assert!(data.iter().all(|d| d.values.len() <= 150));
        let n: f64 = data.iter().flat_map(|d| &d.counts).sum();
        assert_eq!(n as u64, h.len());
        check_quantiles(&data, &h, PRECISION);
    }

    #[test]
    fn clamps_and_merges() {
        let mut a = Distribution::default();
        a.record(0);
        a.record(u64::MAX);
        let mut b = Distribution::default();
        b.record(5);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum(), 1 + MAX_US as u128 + 5);
        assert!(
            Distribution::default()
                .values_counts(PRECISION, 150)
                .is_empty()
        );
        let one = b.values_counts(PRECISION, 150);
        assert_eq!(
            one,
            vec![ValuesCounts {
                values: vec![5.0],
                counts: vec![1.0]
            }]
        );
    }
}
