//! One request and its response, and the record it becomes: latencies are measured here, once
//! for every protocol, from the request's first byte.

use super::ErrorReply;
use crate::{
    decode::DecodeCtx,
    model::{QueryRecord, Record},
};

/// A finished request/response exchange.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    /// When the request's first byte arrived.
    pub ts_ns: u64,
    /// When the response's first byte arrived, if it did.
    pub first_ns: Option<u64>,
    /// When the response ended.
    pub end_ns: u64,
    pub user: Option<String>,
    pub database: Option<String>,
    pub verb: String,
    pub fingerprint: String,
    /// The statement as sent; reported only when redaction is off.
    pub text: Option<String>,
    pub rows: Option<u64>,
    pub error: Option<ErrorReply>,
    pub bytes_request: u64,
    pub bytes_response: u64,
    pub prepared: bool,
    /// The server's completion tag, where the protocol has one.
    pub tag: Option<String>,
}

impl Exchange {
    pub fn record(self, cx: &DecodeCtx<'_>) -> Record {
        let since = |t: u64| t.saturating_sub(self.ts_ns) / 1000;
        Record::Query(QueryRecord {
            ts: cx.clock.at(self.ts_ns),
            endpoint: cx.endpoint.clone(),
            user: self.user,
            database: self.database,
            verb: self.verb,
            fingerprint: self.fingerprint,
            query: if cx.redact { None } else { self.text },
            rows: self.rows,
            error_message: self.error.as_ref().and_then(|e| e.message_for(cx.redact)),
            error_name: self.error.as_ref().and_then(|e| e.name),
            error_code: self.error.map(|e| e.code),
            bytes_request: self.bytes_request,
            bytes_response: self.bytes_response,
            latency_first_byte_us: self.first_ns.map(since),
            latency_us: since(self.end_ns),
            prepared: self.prepared,
            tag: self.tag,
        })
    }
}
