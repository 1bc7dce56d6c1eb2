//! What waits for an answer: the requests sent, in order ([`Pending`]: where its response
//! is, [`RState`]), their bound, and the record each becomes.

use super::{
    Session,
    framer::Packet,
    statements::Stmt,
    wire::{self, com},
};
use crate::decode::{
    DecodeCtx,
    kit::{ErrorReply, Exchange, Login},
};

/// Outstanding requests per connection.
pub(super) const MAX_PENDING: usize = 64;

/// Where a response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RState {
    /// Expecting the first packet of a (next) result.
    Start,
    /// Column definitions left.
    Cols(u64),
    /// After the definitions: an EOF, or the first row / terminator.
    AfterCols,
    Rows,
    /// PREPARE_OK's parameter and column definitions left; `maybe_eof`: a group just ended
    /// and its EOF may come now.
    Prep {
        params: u16,
        cols: u16,
        maybe_eof: bool,
    },
    /// LOCAL INFILE: the client is sending the file.
    Infile,
    /// Packets up to a terminator (COM_FIELD_LIST, COM_STMT_FETCH); `count`: they are rows.
    UntilEof {
        count: bool,
    },
    /// One packet, whatever it is.
    Single,
    /// COM_CHANGE_USER's authentication exchange.
    Auth,
    /// Framing was lost inside this response.
    Lost,
    /// Framing found again inside this response: skip to its terminator.
    Resync,
}

pub(super) struct Pending {
    pub(super) cmd: u8,
    pub(super) ts_ns: u64,
    pub(super) bytes_request: u64,
    /// Sequence id of the next packet of this exchange (either direction).
    pub(super) next_seq: u8,
    pub(super) verb: String,
    pub(super) fingerprint: String,
    pub(super) query: Option<String>,
    pub(super) prepared: bool,
    /// MariaDB's statement id −1: the statement prepared last, known when the response comes.
    pub(super) deferred_stmt: bool,
    /// COM_STMT_PREPARE: the statement to remember under PREPARE_OK's id.
    pub(super) prep: Option<Stmt>,
    /// Database selected on success (COM_INIT_DB, `USE`).
    pub(super) use_db: Option<String>,
    /// COM_CHANGE_USER.
    pub(super) login: Option<Login>,
    pub(super) st: RState,
    pub(super) first_ts: Option<u64>,
    pub(super) end_ts: u64,
    pub(super) bytes_response: u64,
    pub(super) rows: u64,
    pub(super) affected: u64,
    /// An OK or a finished result set said how many rows.
    pub(super) counted: bool,
    /// A result set's rows were being counted.
    pub(super) in_rows: bool,
    /// Framing was lost inside the response, or a row could not be told from a terminator.
    pub(super) uncertain: bool,
    pub(super) error: Option<ErrorReply>,
    pub(super) schema: Option<String>,
}

impl Pending {
    pub(super) fn new(cmd: u8, p: &Packet<'_>, st: RState) -> Self {
        let name = wire::command_name(cmd).unwrap_or("UNKNOWN");
        Self {
            cmd,
            ts_ns: p.start_ts,
            bytes_request: p.wire,
            next_seq: p.last_seq.wrapping_add(1),
            verb: name.to_string(),
            fingerprint: name.to_string(),
            query: None,
            prepared: false,
            deferred_stmt: false,
            prep: None,
            use_db: None,
            login: None,
            st,
            first_ts: None,
            end_ts: p.end_ts,
            bytes_response: 0,
            rows: 0,
            affected: 0,
            counted: false,
            in_rows: false,
            uncertain: false,
            error: None,
            schema: None,
        }
    }

    pub(super) fn set_stmt(&mut self, s: &Stmt) {
        self.verb.clone_from(&s.verb);
        self.fingerprint.clone_from(&s.fingerprint);
        self.query.clone_from(&s.query);
    }
}

impl Session {
    pub(super) fn push(&mut self, cx: &mut DecodeCtx<'_>, q: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            cx.stats.pending_overflow += 1;
        }
        self.pending.push_back(Box::new(q));
    }

    pub(super) fn emit_query(&mut self, cx: &mut DecodeCtx<'_>, q: Pending) {
        let rows = if q.uncertain {
            None
        } else if q.error.is_some() {
            q.in_rows.then_some(q.rows)
        } else if q.counted {
            Some(q.rows + q.affected)
        } else {
            None
        };
        let database = self.database.clone();
        if q.error.is_none() && !q.uncertain {
            if let Some(db) = q.schema.clone().or(q.use_db.clone()) {
                self.database = Some(db);
            }
            if q.cmd == com::RESET_CONNECTION {
                self.stmts.clear();
            }
        }
        let r = Exchange {
            ts_ns: q.ts_ns,
            first_ns: q.first_ts,
            end_ns: q.end_ts,
            user: self.user.clone(),
            database,
            verb: q.verb,
            fingerprint: q.fingerprint,
            text: q.query,
            rows,
            error: q.error,
            bytes_request: q.bytes_request,
            bytes_response: q.bytes_response,
            prepared: q.prepared,
            // MySQL's OK packet names no command.
            tag: None,
        }
        .record(cx);
        cx.out.push(r);
    }
}
