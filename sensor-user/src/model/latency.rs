//! Latency per server and per top fingerprint over a window, as pg_stat_statements and
//! pt-query-digest report it.

use super::Timestamp;
use serde::Serialize;

/// Percentiles of one histogram, µs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

/// One line of a latency report.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyRecord {
    /// The window's start, as `window_start`.
    pub ts: Timestamp,
    pub window_start: Timestamp,
    pub window_s: f64,
    pub server: String,
    /// Absent for a per-server line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `*` for a per-server line; `(other)` for fingerprints beyond the tracking limit.
    pub fingerprint: String,
    pub verb: String,
    pub count: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_us: u64,
    /// Named apart from a query's `latency_us` (an integer): one field name, one type, in
    /// every kind of record.
    #[serde(rename = "latency_percentiles_us")]
    pub latency_us: Percentiles,
    #[serde(rename = "first_byte_percentiles_us")]
    pub first_byte_us: Percentiles,
    /// Rank by total time in this window (1 = most), 0 for per-server lines.
    pub rank: usize,
    /// Events were dropped in this window (ring buffer full, queue full): the figures come
    /// from a sample of the queries, not all of them.
    pub sampled: bool,
    /// Turns of TLS sessions the sensor could not read, timed from their record boundaries,
    /// not decoded queries (fingerprint `(tls, estimated)`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}
