//! The figures of a stream of queries, as every metric sink keeps them (per instance and
//! database, per fingerprint): counts, total time, and latency distributions.

use super::Distribution;
use crate::model::QueryRecord;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFigures {
    pub queries: u64,
    pub errors: u64,
    pub rows: u64,
    /// Latencies as reported, summed (µs; not clamped as the distributions are).
    pub total_us: u64,
    pub first_byte_total_us: u64,
    /// From the request's first byte to the end of the response.
    pub latency: Distribution,
    /// From the request's first byte to the response's first byte.
    pub first_byte: Distribution,
}

impl QueryFigures {
    pub fn observe(&mut self, q: &QueryRecord) {
        self.queries += 1;
        self.errors += u64::from(q.error_code.is_some());
        self.rows += q.rows.unwrap_or(0);
        self.total_us += q.latency_us;
        self.latency.record(q.latency_us);
        if let Some(f) = q.latency_first_byte_us {
            self.first_byte_total_us += f;
            self.first_byte.record(f);
        }
    }

    pub fn merge(&mut self, o: &QueryFigures) {
        self.queries += o.queries;
        self.errors += o.errors;
        self.rows += o.rows;
        self.total_us += o.total_us;
        self.first_byte_total_us += o.first_byte_total_us;
        self.latency.merge(&o.latency);
        self.first_byte.merge(&o.first_byte);
    }
}
