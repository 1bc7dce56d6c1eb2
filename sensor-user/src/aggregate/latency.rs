//! Per-query latency, as pg_stat_statements and pt-query-digest report it: an HdrHistogram of
//! completion time and of time to first byte per (server, database, user, fingerprint) and per
//! server, over a window, with count, errors, rows and total time; the top N by total time are
//! reported when the window closes.

use crate::model::{LatencyRecord, Percentiles, QueryRecord, Timestamp};
use hdrhistogram::Histogram;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// Keyed by text clients choose (fingerprints, user and database names): hashbrown with its
/// default hasher, foldhash, randomly seeded per map (HashDoS resistant), looked up by a
/// borrowed key ([`KeyRef`]) so that a query of a known key allocates nothing.
type HashMap<K, V> = hashbrown::HashMap<K, V>;

/// Latencies are clamped to an hour.
const MAX_US: u64 = 3_600_000_000;
/// Per server: 3 significant digits (0.1% relative error).
const SIGFIG_SERVER: u8 = 3;
/// Per fingerprint: 2 significant digits (1%). A 3-digit histogram covering up to a second
/// holds ~10k counters (80 KiB); with thousands of fingerprints, two histograms each, memory
/// and the zeroing of fresh histograms dominated (it was most of the decoder benchmark's
/// time). At 2 digits one is ~1.7k counters.
const SIGFIG_QUERY: u8 = 2;

/// An auto-resizing histogram: it covers only up to the largest value recorded.
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new(sigfig).expect("2 or 3 significant digits is valid")
}

/// Values a [`Lat`] keeps inline before it makes its histogram.
const FEW: usize = 8;

/// A latency distribution: the first [`FEW`] values inline, then an HdrHistogram holding them
/// all. Most keys of a window see a handful of queries, and most are never reported (only the
/// top N are), so making and zeroing two histograms for each was the aggregator's main cost.
/// A histogram is order-independent, so one made from the inline values at report time is the
/// one recording them would have made.
pub enum Lat {
    Few { n: u8, v: [u64; FEW] },
    Hist(Histogram<u64>),
}

impl Lat {
    fn new() -> Self {
        Lat::Few { n: 0, v: [0; FEW] }
    }

    fn record(&mut self, value: u64, sigfig: u8) {
        match self {
            Lat::Few { n, v } if (*n as usize) < FEW => {
                v[*n as usize] = value;
                *n += 1;
            }
            Lat::Few { v, .. } => {
                let mut h = histogram(sigfig);
                for &x in v.iter() {
                    // `record`, not `saturating_record`: only `record` grows an auto-resizing
                    // histogram (saturating_record clamps to its current, small, range).
                    let _ = h.record(x);
                }
                let _ = h.record(value);
                *self = Lat::Hist(h);
            }
            Lat::Hist(h) => {
                let _ = h.record(value);
            }
        }
    }

    /// The histogram of every value recorded.
    pub fn histogram(&self, sigfig: u8) -> Cow<'_, Histogram<u64>> {
        match self {
            Lat::Few { n, v } => {
                let mut h = histogram(sigfig);
                for &x in &v[..*n as usize] {
                    let _ = h.record(x);
                }
                Cow::Owned(h)
            }
            Lat::Hist(h) => Cow::Borrowed(h),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueryKey {
    pub server: String,
    pub database: Option<String>,
    pub user: Option<String>,
    /// Part of the key: a MySQL PREPARE and its EXECUTEs share a fingerprint.
    pub verb: String,
    pub fingerprint: String,
}

/// A [`QueryKey`] borrowed from a query record: looks the key up without allocating.
#[derive(Hash, PartialEq, Eq)]
struct KeyRef<'a> {
    server: &'a str,
    database: Option<&'a str>,
    user: Option<&'a str>,
    verb: &'a str,
    fingerprint: &'a str,
}

impl QueryKey {
    fn as_key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            server: &self.server,
            database: self.database.as_deref(),
            user: self.user.as_deref(),
            verb: &self.verb,
            fingerprint: &self.fingerprint,
        }
    }
}

impl KeyRef<'_> {
    fn to_key(&self) -> QueryKey {
        QueryKey {
            server: self.server.to_string(),
            database: self.database.map(str::to_string),
            user: self.user.map(str::to_string),
            verb: self.verb.to_string(),
            fingerprint: self.fingerprint.to_string(),
        }
    }
}

/// Hashed as its borrowed form, so that the two find the same entries.
impl Hash for QueryKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_key_ref().hash(state);
    }
}

impl hashbrown::Equivalent<QueryKey> for KeyRef<'_> {
    fn equivalent(&self, key: &QueryKey) -> bool {
        *self == key.as_key_ref()
    }
}

pub struct Stats {
    pub verb: String,
    pub count: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_us: u64,
    /// Significant digits of the histograms.
    pub sigfig: u8,
    pub latency: Lat,
    pub first_byte: Lat,
}

impl Stats {
    fn new(verb: &str, sigfig: u8) -> Self {
        Self {
            verb: verb.to_string(),
            count: 0,
            errors: 0,
            rows: 0,
            total_us: 0,
            sigfig,
            latency: Lat::new(),
            first_byte: Lat::new(),
        }
    }

    /// An encrypted session's turn, estimated from its records.
    fn observe_turn(&mut self, t: &crate::model::TurnFigures) {
        self.count += 1;
        self.total_us += t.latency_us;
        self.latency
            .record(t.latency_us.clamp(1, MAX_US), self.sigfig);
        self.first_byte
            .record(t.latency_first_byte_us.clamp(1, MAX_US), self.sigfig);
    }

    fn observe(&mut self, q: &QueryRecord) {
        self.count += 1;
        self.errors += u64::from(q.error_code.is_some());
        self.rows += q.rows.unwrap_or(0);
        self.total_us += q.latency_us;
        self.latency
            .record(q.latency_us.clamp(1, MAX_US), self.sigfig);
        if let Some(f) = q.latency_first_byte_us {
            self.first_byte.record(f.clamp(1, MAX_US), self.sigfig);
        }
    }
}

/// Percentiles of one histogram.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

pub struct LatencyAggregator {
    /// Fingerprint keys tracked per window; queries beyond go to `(other)` per server.
    pub max_keys: usize,
    /// Lines reported per window (by total time).
    pub top_n: usize,
    by_query: HashMap<QueryKey, Stats>,
    by_server: HashMap<String, Stats>,
    /// Per server: the turns of TLS sessions that could not be read, estimated.
    by_server_estimated: HashMap<String, Stats>,
    /// Queries folded into `(other)` because of `max_keys`, cumulative.
    pub overflowed: u64,
}

impl LatencyAggregator {
    pub fn new(max_keys: usize, top_n: usize) -> Self {
        Self {
            max_keys,
            top_n,
            by_query: HashMap::default(),
            by_server: HashMap::default(),
            by_server_estimated: HashMap::default(),
            overflowed: 0,
        }
    }

    pub fn observe(&mut self, q: &QueryRecord) {
        let key = KeyRef {
            server: &q.endpoint.server,
            database: q.database.as_deref(),
            user: q.user.as_deref(),
            verb: &q.verb,
            fingerprint: &q.fingerprint,
        };
        match self.by_query.get_mut(&key) {
            Some(s) => s.observe(q),
            None => {
                let key = if self.by_query.len() >= self.max_keys {
                    self.overflowed += 1;
                    QueryKey {
                        server: q.endpoint.server.clone(),
                        database: None,
                        user: None,
                        verb: "*".into(),
                        fingerprint: "(other)".into(),
                    }
                } else {
                    key.to_key()
                };
                self.by_query
                    .entry(key)
                    .or_insert_with_key(|k| Stats::new(&k.verb, SIGFIG_QUERY))
                    .observe(q);
            }
        }
        match self.by_server.get_mut(q.endpoint.server.as_str()) {
            Some(s) => s.observe(q),
            None => {
                let mut s = Stats::new("*", SIGFIG_SERVER);
                s.observe(q);
                self.by_server.insert(q.endpoint.server.clone(), s);
            }
        }
    }

    /// An estimated turn of an encrypted session: reported per server apart from the
    /// queries, as `(tls, estimated)`.
    pub fn observe_exchange(&mut self, e: &crate::model::TlsExchangeRecord) {
        // Servers are as many as the connections' (bounded by reassembly).
        self.by_server_estimated
            .entry(e.endpoint.server.clone())
            .or_insert_with(|| Stats::new("TLS", SIGFIG_SERVER))
            .observe_turn(&e.figures);
    }

    pub fn is_empty(&self) -> bool {
        self.by_server.is_empty() && self.by_server_estimated.is_empty()
    }

    /// Closes the window: per-server lines and the top N queries by total time, then resets.
    pub fn report(&mut self, window_start: Timestamp, window_s: f64) -> Vec<LatencyRecord> {
        let mut out = Vec::new();
        let mut servers: Vec<_> = self.by_server.drain().collect();
        servers.sort_by(|a, b| a.0.cmp(&b.0));
        for (server, s) in servers {
            out.push(line(
                window_start,
                window_s,
                server,
                None,
                None,
                "*".into(),
                &s,
                0,
            ));
        }
        let mut estimated: Vec<_> = self.by_server_estimated.drain().collect();
        estimated.sort_by(|a, b| a.0.cmp(&b.0));
        for (server, s) in estimated {
            let mut l = line(
                window_start,
                window_s,
                server,
                None,
                None,
                ESTIMATED.into(),
                &s,
                0,
            );
            l.estimated = true;
            out.push(l);
        }
        let mut queries: Vec<_> = self.by_query.drain().collect();
        queries.sort_by(|a, b| b.1.total_us.cmp(&a.1.total_us).then_with(|| a.0.cmp(&b.0)));
        for (i, (k, s)) in queries.into_iter().take(self.top_n).enumerate() {
            out.push(line(
                window_start,
                window_s,
                k.server,
                k.database,
                k.user,
                k.fingerprint,
                &s,
                i + 1,
            ));
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn line(
    window_start: Timestamp,
    window_s: f64,
    server: String,
    database: Option<String>,
    user: Option<String>,
    fingerprint: String,
    s: &Stats,
    rank: usize,
) -> LatencyRecord {
    LatencyRecord {
        ts: window_start,
        window_start,
        window_s,
        server,
        database,
        user,
        fingerprint,
        verb: s.verb.clone(),
        count: s.count,
        errors: s.errors,
        rows: s.rows,
        total_us: s.total_us,
        latency_us: percentiles(&s.latency.histogram(s.sigfig)),
        first_byte_us: percentiles(&s.first_byte.histogram(s.sigfig)),
        rank,
        sampled: false,
        estimated: false,
    }
}

/// The fingerprint of a per-server line of estimated turns of unreadable TLS sessions.
pub const ESTIMATED: &str = "(tls, estimated)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn q(fp: &str, us: u64, err: bool) -> QueryRecord {
        QueryRecord {
            ts: Timestamp::default(),
            endpoint: Endpoint::from_text("0.0.0.0:0", "10.0.0.1:5432", None, Default::default()),
            user: Some("app".into()),
            database: Some("db".into()),
            verb: "SELECT".into(),
            fingerprint: fp.into(),
            query: None,
            rows: Some(1),
            error_code: err.then(|| "57014".into()),
            error_name: None,
            error_message: None,
            bytes_request: 0,
            bytes_response: 0,
            latency_first_byte_us: Some(us / 2),
            latency_us: us,
            prepared: false,
            tag: None,
        }
    }

    #[test]
    fn percentiles_and_ranking() {
        let mut a = LatencyAggregator::new(100, 10);
        for us in 1..=1000 {
            a.observe(&q("select ?", us, us % 100 == 0));
        }
        a.observe(&q("select slow", 5_000_000, false));
        let r = a.report(Timestamp::default(), 10.0);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].fingerprint.as_str(), r[0].count), ("*", 1001));
        // The slow one has the most total time.
        assert_eq!((r[1].fingerprint.as_str(), r[1].rank), ("select slow", 1));
        let fast = &r[2];
        assert_eq!((fast.count, fast.errors, fast.rows), (1000, 10, 1000));
        // Within HdrHistogram's 3-significant-digit precision of the exact order statistics.
        assert!(
            (fast.latency_us.p50 as i64 - 500).abs() <= 1,
            "{:?}",
            fast.latency_us
        );
        assert!(
            (fast.latency_us.p99 as i64 - 990).abs() <= 1,
            "{:?}",
            fast.latency_us
        );
        assert!(
            (1000..=1010).contains(&fast.latency_us.max),
            "{:?}",
            fast.latency_us
        );
        // The 5 s outlier is kept (the histograms grow to cover it), not clamped.
        assert!(
            (4_950_000..=5_050_000).contains(&r[1].latency_us.max),
            "{:?}",
            r[1].latency_us
        );
        assert!(
            (4_995_000..=5_005_000).contains(&r[0].latency_us.max),
            "{:?}",
            r[0].latency_us
        );
        assert!(a.is_empty(), "the window resets");
    }

    #[test]
    fn fingerprint_cardinality_is_bounded() {
        let mut a = LatencyAggregator::new(5, 100);
        for i in 0..50 {
            a.observe(&q(&format!("select c{i}"), 10, false));
        }
        assert_eq!(a.overflowed, 45);
        let r = a.report(Timestamp::default(), 1.0);
        assert_eq!(r.len(), 1 + 5 + 1);
        assert!(
            r.iter()
                .any(|l| l.fingerprint == "(other)" && l.count == 45)
        );
    }
}
