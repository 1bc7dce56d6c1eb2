//! Finished queries become records: who they are about, and those held back after a
//! response-side loss until the request stream shows no request was lost before them.

use super::queue::{MAX_EXECS, Query};
use crate::{
    decode::{DecodeCtx, kit::Exchange},
    model::Record,
};

/// Who a record is about, and records held back.
#[derive(Default)]
pub(super) struct Session {
    pub(super) user: Option<String>,
    pub(super) database: Option<String>,
    /// Queries completed after a response-side loss, reported once the request stream shows
    /// no request was lost before their completion (the next request event is data, not a
    /// gap): a lost request could own the answer that completed them.
    pub(super) held: Vec<Record>,
}

impl Session {
    pub(super) fn emit(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        q: &Query,
        rows: Option<u64>,
        first: Option<u64>,
        end_ts: u64,
        hold: bool,
    ) {
        let r = Exchange {
            ts_ns: q.ts_ns,
            first_ns: first,
            end_ns: end_ts,
            user: self.user.clone(),
            database: self.database.clone(),
            verb: q.stmt.verb.clone(),
            fingerprint: q.stmt.fingerprint.clone(),
            // Cloned only when it will be reported.
            text: if cx.redact { None } else { q.stmt.text.clone() },
            rows,
            error: q.error.clone(),
            bytes_request: q.bytes_req,
            bytes_response: q.bytes_resp,
            prepared: q.prepared,
            tag: q.tag.clone(),
        }
        .record(cx);
        if hold && self.held.len() < MAX_EXECS {
            self.held.push(r);
        } else {
            cx.out.push(r);
        }
    }

    pub(super) fn release(&mut self, cx: &mut DecodeCtx<'_>) {
        cx.out.append(&mut self.held);
    }
}
