//! How a response advances packet by packet: OK / ERR, result sets (column definitions,
//! EOF or not, rows, terminators, more results), PREPARE_OK and its definitions, LOCAL
//! INFILE, and the commands answered by packets up to a terminator or by a single packet.

use super::{
    Phase, Session,
    framer::Packet,
    queue::{Pending, RState},
    wire::{self, cap, com, status},
};
use crate::decode::{
    DecodeCtx,
    kit::{ErrorReply, Login},
};

impl Session {
    /// Advances a response by one packet; true when it is complete.
    pub(super) fn step(&mut self, cx: &mut DecodeCtx<'_>, q: &mut Pending, p: &Packet<'_>) -> bool {
        let h = p.head;
        let b0 = h.first().copied();
        let caps = self.caps();
        if b0 == Some(0xff) && !matches!(q.st, RState::Cols(_) | RState::Prep { .. }) {
            q.error = wire::parse_err_reply(h, self.mariadb());
            if q.error.is_none() {
                cx.stats.malformed += 1;
                q.error = Some(ErrorReply::code("unknown"));
            }
            return true;
        }
        match q.st {
            RState::Start => self.start(cx, q, p, caps),
            RState::Cols(n) => {
                if h.is_empty() || wire::is_column_def(h) {
                    q.st = if n <= 1 {
                        RState::AfterCols
                    } else {
                        RState::Cols(n - 1)
                    };
                    false
                } else {
                    // No definitions after all (optional metadata not announced).
                    q.st = RState::AfterCols;
                    self.step(cx, q, p)
                }
            }
            RState::AfterCols => {
                q.in_rows = true;
                if wire::is_eof(h, p.len) {
                    self.deprecate_eof = Some(false);
                    let st = wire::terminator_status(h, p.len, caps);
                    if st & status::CURSOR_EXISTS != 0 {
                        // Rows come with COM_STMT_FETCH.
                        return self.end_result(q, st, false);
                    }
                    q.st = RState::Rows;
                    false
                } else {
                    self.deprecate_eof = Some(true);
                    q.st = RState::Rows;
                    self.step(cx, q, p)
                }
            }
            RState::Rows => {
                if p.head.is_empty() && p.broken {
                    q.uncertain = true;
                    return false;
                }
                if wire::is_terminator(h, p.len) {
                    let st = wire::terminator_status(h, p.len, caps);
                    return self.end_result(q, st, true);
                }
                q.rows += 1;
                false
            }
            RState::Prep {
                mut params,
                mut cols,
                maybe_eof,
            } => {
                if maybe_eof {
                    if wire::is_eof(h, p.len) {
                        self.deprecate_eof = Some(false);
                        q.st = RState::Prep {
                            params,
                            cols,
                            maybe_eof: false,
                        };
                        return params == 0 && cols == 0;
                    }
                    self.deprecate_eof = Some(true);
                }
                let group_done = if params > 0 {
                    params -= 1;
                    params == 0
                } else if cols > 0 {
                    cols -= 1;
                    cols == 0
                } else {
                    // An EOF was announced and something else came.
                    cx.stats.malformed += 1;
                    return true;
                };
                let last = params == 0 && cols == 0;
                q.st = RState::Prep {
                    params,
                    cols,
                    maybe_eof: false,
                };
                if !group_done {
                    return false;
                }
                match self.deprecate_eof {
                    Some(true) => last,
                    None if last => {
                        // Complete now; an EOF, if the server sends them, is still to come.
                        self.trailing_eof = Some(p.last_seq.wrapping_add(1));
                        true
                    }
                    _ => {
                        q.st = RState::Prep {
                            params,
                            cols,
                            maybe_eof: true,
                        };
                        false
                    }
                }
            }
            RState::Infile => {
                // The server speaks while the client should: follow whatever it says.
                q.st = RState::Start;
                self.step(cx, q, p)
            }
            RState::UntilEof { count } => {
                if wire::is_terminator(h, p.len) {
                    q.counted |= count;
                    q.in_rows |= count;
                    return true;
                }
                if count {
                    q.in_rows = true;
                    q.rows += 1;
                }
                false
            }
            RState::Single => {
                if b0 == Some(0x00)
                    && let Some(ok) = wire::parse_ok(h, caps)
                {
                    q.schema = ok.schema;
                }
                true
            }
            RState::Auth => {
                let mariadb = self.mariadb();
                let login = q.login.get_or_insert_with(Login::default);
                match Self::auth_step(login, p, mariadb) {
                    Some((_, err)) => {
                        q.error = err;
                        true
                    }
                    None => false,
                }
            }
            RState::Lost => false,
            RState::Resync => {
                if wire::is_terminator(h, p.len) {
                    let st = wire::terminator_status(h, p.len, caps);
                    return self.end_result(q, st, false);
                }
                false
            }
        }
    }

    /// The first packet of a response (or of the next result of a multi-result response).
    fn start(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        q: &mut Pending,
        p: &Packet<'_>,
        caps: u32,
    ) -> bool {
        let h = p.head;
        match q.cmd {
            com::STMT_PREPARE => {
                let Some((id, cols, params, metadata)) = wire::parse_prepare_ok(h, caps) else {
                    cx.stats.malformed += 1;
                    return true;
                };
                if let Some(s) = q.prep.take() {
                    self.stmts.insert(id, s);
                }
                self.last_prepared = Some(id);
                if !metadata || (params == 0 && cols == 0) {
                    return true;
                }
                q.st = RState::Prep {
                    params,
                    cols,
                    maybe_eof: false,
                };
                false
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::TABLE_DUMP => {
                // The server streams from here on; the request is reported now.
                self.phase = Phase::Replication;
                true
            }
            _ => match h.first() {
                None => {
                    q.uncertain = true;
                    q.st = RState::Resync;
                    false
                }
                Some(0x00) => {
                    let ok = wire::parse_ok(h, caps).unwrap_or_default();
                    q.affected += ok.affected;
                    q.counted = true;
                    if ok.schema.is_some() {
                        q.schema = ok.schema;
                    }
                    self.end_result(q, ok.status, false)
                }
                Some(0xfb) if q.cmd == com::QUERY => {
                    q.st = RState::Infile;
                    false
                }
                Some(0xfe) => {
                    let st = wire::terminator_status(h, p.len, caps);
                    self.end_result(q, st, false)
                }
                Some(_) => {
                    let mut r = wire::Rd::new(h);
                    let mut metadata = true;
                    if caps & cap::OPTIONAL_RESULTSET_METADATA != 0 && self.client_caps.is_some() {
                        metadata = r.u8() != Some(0);
                    }
                    let Some(n) = r.lenenc().filter(|&n| n > 0) else {
                        cx.stats.malformed += 1;
                        q.uncertain = true;
                        q.st = RState::Resync;
                        return false;
                    };
                    if self.mariadb_cache_metadata()
                        && matches!(q.cmd, com::STMT_EXECUTE | com::STMT_BULK_EXECUTE)
                    {
                        metadata = r.u8() != Some(0);
                    }
                    q.in_rows = true;
                    q.st = if metadata {
                        RState::Cols(n)
                    } else {
                        RState::AfterCols
                    };
                    false
                }
            },
        }
    }

    /// A result ended with `status`; true when the whole response is complete.
    fn end_result(&mut self, q: &mut Pending, st: u16, rows: bool) -> bool {
        if rows {
            q.counted = true;
        }
        if st & status::MORE_RESULTS_EXISTS != 0 {
            q.st = RState::Start;
            false
        } else {
            true
        }
    }
}
