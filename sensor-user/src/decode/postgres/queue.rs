//! What waits for an answer: queries ([`Query`]) in groups ([`Group`]: a Query or
//! FunctionCall, or extended-protocol messages up to a Sync, answered by one ReadyForQuery),
//! barriers standing for requests lost, and what completed Executes after a response-side
//! loss ([`Deferred`]).

use super::{framer::Msg, messages, statements::Stmt};
use crate::decode::kit::ErrorReply;
use std::{collections::VecDeque, sync::Arc};

/// Request groups pending per connection.
pub const MAX_GROUPS: usize = 1024;
/// Executes pending in one group.
pub const MAX_EXECS: usize = 1024;

/// One query (a Query message, a FunctionCall, or an Execute) waiting for its response.
#[derive(Debug)]
pub(super) struct Query {
    pub(super) stmt: Arc<Stmt>,
    pub(super) ts_ns: u64,
    pub(super) bytes_req: u64,
    pub(super) bytes_resp: u64,
    pub(super) first_resp: Option<u64>,
    /// Response framing was lost before any response byte of this query was seen.
    first_unknown: bool,
    /// Rows from CommandComplete counts, and from DataRows of count-less statements.
    tag_rows: Option<u64>,
    row_rows: Option<u64>,
    /// DataRows since the last completion.
    pub(super) cur_rows: u64,
    pub(super) error: Option<ErrorReply>,
    pub(super) prepared: bool,
    /// Response framing was lost while this query was answered.
    pub(super) tainted: bool,
    /// The last CommandComplete tag's command.
    pub(super) tag: Option<String>,
}

impl Query {
    pub(super) fn new(stmt: Arc<Stmt>, ts_ns: u64, bytes_req: u64, prepared: bool) -> Self {
        Self {
            stmt,
            ts_ns,
            bytes_req,
            bytes_resp: 0,
            first_resp: None,
            first_unknown: false,
            tag_rows: None,
            tag: None,
            row_rows: None,
            cur_rows: 0,
            error: None,
            prepared,
            tainted: false,
        }
    }

    pub(super) fn saw_response(&mut self, m: &Msg<'_>) {
        self.bytes_resp += m.wire_len;
        if self.first_resp.is_none() && !self.first_unknown {
            self.first_resp = Some(m.start_ts);
        }
    }

    pub(super) fn taint(&mut self) {
        self.tainted = true;
        if self.first_resp.is_none() {
            self.first_unknown = true;
        }
    }

    /// A CommandComplete of one statement of a simple query.
    pub(super) fn statement_done(&mut self, m: &Msg<'_>) {
        if m.complete {
            self.tag = messages::tag_command(m.body);
        }
        match m.complete.then(|| messages::tag_rows(m.body)).flatten() {
            Some(n) => self.tag_rows = Some(self.tag_rows.unwrap_or(0) + n),
            None if self.cur_rows > 0 => {
                self.row_rows = Some(self.row_rows.unwrap_or(0) + self.cur_rows)
            }
            None => {}
        }
        self.cur_rows = 0;
    }

    /// Rows of a finished simple query.
    pub(super) fn simple_rows(&self) -> Option<u64> {
        if self.tainted {
            // Tags may have been lost with the framing; DataRows certainly were.
            return if self.stmt.multi { None } else { self.tag_rows };
        }
        match (self.tag_rows, self.row_rows) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }
}

/// What completed an Execute after response framing was lost (matched at ReadyForQuery).
#[derive(Debug)]
pub(super) struct Completion {
    pub(super) first: Option<u64>,
    pub(super) end_ts: u64,
    pub(super) bytes: u64,
    pub(super) rows: Option<u64>,
    pub(super) error: Option<ErrorReply>,
    pub(super) tag: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Deferred {
    pub(super) done: Vec<Completion>,
    /// The response in progress: its first byte is known unless it began before the resync.
    pub(super) first: Option<u64>,
    pub(super) bytes: u64,
    pub(super) rows: u64,
    pub(super) known_start: bool,
}

impl Deferred {
    /// `m`, or `n` DataRows at once (`m` then stands for all of them: see
    /// [`PostgresDecoder::on_query_response`](super::PostgresDecoder::on_query_response)).
    pub(super) fn on_msg(&mut self, m: &Msg<'_>, n: u64) {
        self.bytes += m.wire_len;
        if self.known_start && self.first.is_none() {
            self.first = Some(m.start_ts);
        }
        let rows = match m.typ {
            b'D' => {
                self.rows += n;
                return;
            }
            b'C' => m
                .complete
                .then(|| messages::tag_rows(m.body))
                .flatten()
                .or((self.known_start && self.rows > 0).then_some(self.rows)),
            b's' => self.known_start.then_some(self.rows),
            b'I' | b'E' => None,
            _ => return,
        };
        let error = (m.typ == b'E')
            .then(|| messages::error_reply(m.body))
            .flatten();
        if self.done.len() < MAX_EXECS {
            self.done.push(Completion {
                first: self.first,
                end_ts: m.end_ts,
                bytes: self.bytes,
                rows,
                error,
                tag: (m.typ == b'C' && m.complete)
                    .then(|| messages::tag_command(m.body))
                    .flatten(),
            });
        }
        self.first = None;
        self.bytes = 0;
        self.rows = 0;
        self.known_start = true;
    }
}

#[derive(Debug)]
pub(super) enum Kind {
    Simple(Query),
    Extended {
        /// Executes without a completion yet, oldest first.
        execs: VecDeque<Query>,
        deferred: Option<Deferred>,
    },
    /// Requests lost to a gap (or before a mid-stream start): swallows their responses.
    Barrier {
        /// End of the latest response swallowed.
        absorbed_until: u64,
    },
}

/// Requests answered by one ReadyForQuery: a Query/FunctionCall, or extended-protocol
/// messages up to a Sync.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) kind: Kind,
    /// First request byte.
    pub(super) first_ts: u64,
    /// No more requests join it (Sync or Query seen).
    pub(super) closed: bool,
    /// A ReadyForQuery ends it (false for extended messages a Query followed without Sync).
    pub(super) needs_z: bool,
    /// Reported at all (false: responses are swallowed until its ReadyForQuery).
    pub(super) emit: bool,
    /// An ErrorResponse came: the server skips the rest of the group.
    pub(super) failed: bool,
}

impl Group {
    pub(super) fn extended(first_ts: u64, emit: bool) -> Self {
        Self {
            kind: Kind::Extended {
                execs: VecDeque::new(),
                deferred: None,
            },
            first_ts,
            closed: false,
            needs_z: true,
            emit,
            failed: false,
        }
    }

    pub(super) fn simple(q: Query) -> Self {
        Self {
            first_ts: q.ts_ns,
            kind: Kind::Simple(q),
            closed: true,
            needs_z: true,
            emit: true,
            failed: false,
        }
    }

    pub(super) fn barrier() -> Self {
        Self {
            kind: Kind::Barrier { absorbed_until: 0 },
            first_ts: 0,
            closed: true,
            needs_z: true,
            emit: false,
            failed: false,
        }
    }

    pub(super) fn is_barrier(&self) -> bool {
        matches!(self.kind, Kind::Barrier { .. })
    }

    /// Queries it holds.
    pub(super) fn units(&self) -> u64 {
        match &self.kind {
            Kind::Simple(_) => 1,
            Kind::Extended { execs, .. } => execs.len() as u64,
            Kind::Barrier { .. } => 0,
        }
    }
}
