//! Aggregates over records: per-query latency distributions (and, later, detector baselines).

pub mod latency;
