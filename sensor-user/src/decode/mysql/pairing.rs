//! Requests paired with their responses: each command the client sends is queued, and the
//! server's packets go to the oldest one until its response is complete, which is then
//! reported (a COM_CHANGE_USER as a login).

use super::{
    REQ_CAP, Session,
    framer::Packet,
    queue::{Pending, RState},
    statements::Stmt,
    wire::{self, com},
};
use crate::{
    decode::{
        DecodeCtx,
        fingerprint::{Dialect, fingerprint_cached},
        kit::{self, Login},
    },
    model::Outcome,
};

impl Session {
    // ---- command phase: requests ----

    pub(super) fn on_command(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        p: &Packet<'_>,
        resp_lost: &mut bool,
    ) {
        if *resp_lost {
            // The response side lost framing: whatever was outstanding ended unseen, and
            // this request's response starts at the response side's next byte.
            while let Some(mut q) = self.pending.pop_front() {
                q.uncertain = true;
                if let Some(l) = q.login.take() {
                    let _ = l; // outcome unknown: never guess
                    continue;
                }
                self.emit_query(cx, *q);
            }
            self.arm_resp = Some(p.last_seq.wrapping_add(1));
            *resp_lost = false;
        }
        // A response we could only skip through (its start unreadable) ends before the
        // client's next request.
        while self
            .pending
            .front()
            .is_some_and(|q| matches!(q.st, RState::Resync | RState::Lost))
        {
            if let Some(mut q) = self.pending.pop_front()
                && q.login.is_none()
            {
                q.uncertain = true;
                self.emit_query(cx, *q);
            }
        }
        let Some(&cmd) = p.head.first() else {
            // The command byte itself was lost: keep the pairing with an unknown request.
            cx.stats.malformed += 1;
            self.push(cx, Pending::new(0xff, p, RState::Start));
            return;
        };
        let body = &p.head[1..];
        let mut q = Pending::new(cmd, p, RState::Single);
        match cmd {
            com::QUERY => {
                let sql = kit::text(wire::query_text(body, self.query_attrs()), REQ_CAP);
                let (verb, fp) = fingerprint_cached(&sql, Dialect::MySql);
                if !verb.is_empty() {
                    q.verb = verb;
                }
                q.fingerprint = if fp.is_empty() { "QUERY".into() } else { fp };
                if q.verb == "USE" {
                    q.use_db = wire::use_target(&sql);
                }
                q.query = Some(sql);
                q.st = RState::Start;
            }
            com::STMT_PREPARE => {
                let sql = kit::text(body, REQ_CAP);
                let (verb, fp) = fingerprint_cached(&sql, Dialect::MySql);
                q.fingerprint.clone_from(&fp);
                q.query = Some(sql.clone());
                q.prep = Some(Stmt {
                    verb: if verb.is_empty() {
                        "STMT_EXECUTE".into()
                    } else {
                        verb
                    },
                    fingerprint: fp,
                    query: (!cx.redact).then_some(sql),
                });
                q.st = RState::Start;
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE | com::STMT_FETCH => {
                q.prepared = true;
                let id = wire::Rd::new(body).u32();
                if id == Some(u32::MAX) && cmd != com::STMT_FETCH {
                    q.deferred_stmt = true;
                } else if let Some(s) = id.and_then(|id| self.stmts.map.get(&id)) {
                    if cmd == com::STMT_FETCH {
                        q.fingerprint.clone_from(&s.fingerprint);
                    } else {
                        q.set_stmt(s);
                    }
                }
                q.st = if cmd == com::STMT_FETCH {
                    RState::UntilEof { count: true }
                } else {
                    RState::Start
                };
            }
            // The end of the session, not a query: reporting it (with no response, at 0 µs)
            // would count a query per connection and pull every percentile down.
            com::QUIT => return,
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA => {
                if cmd == com::STMT_CLOSE
                    && let Some(id) = wire::Rd::new(body).u32()
                {
                    self.stmts.remove(id);
                }
                // No response: reported at once.
                q.end_ts = p.start_ts;
                self.emit_query(cx, q);
                return;
            }
            com::INIT_DB => q.use_db = wire::name(body),
            com::FIELD_LIST => q.st = RState::UntilEof { count: false },
            com::PROCESS_INFO => q.st = RState::Start,
            com::CHANGE_USER => {
                let caps = self.caps();
                let h = wire::parse_change_user(body, caps).unwrap_or_default();
                q.login = Some(Login {
                    ts_ns: p.start_ts,
                    user: h.user,
                    database: h.database,
                    application: wire::application(&h.attrs).or_else(|| self.application.clone()),
                    auth_method: h.plugin.or_else(|| self.server_plugin.clone()),
                    ..Default::default()
                });
                q.st = RState::Auth;
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::TABLE_DUMP => q.st = RState::Start,
            _ if wire::command_name(cmd).is_none() => {
                cx.stats.malformed += 1;
            }
            _ => {}
        }
        self.push(cx, q);
    }

    /// A client packet continuing an exchange (LOCAL INFILE data, COM_CHANGE_USER auth).
    pub(super) fn on_continuation(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let Some(q) = self.pending.front_mut() else {
            cx.stats.skipped_bytes += p.wire;
            return;
        };
        q.bytes_request += p.wire;
        q.next_seq = p.last_seq.wrapping_add(1);
        if q.st == RState::Infile && p.len == 0 {
            q.st = RState::Start;
        }
    }

    pub(super) fn continuation_expected(&self, seq: u8) -> bool {
        self.pending
            .front()
            .is_some_and(|q| matches!(q.st, RState::Infile | RState::Auth) && q.next_seq == seq)
    }

    // ---- command phase: responses ----

    pub(super) fn on_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        // A result-set row (most packets of a response): counted in place, as `step` would.
        if self.trailing_eof.is_none()
            && let Some(q) = self.pending.front_mut()
            && q.st == RState::Rows
            && !q.deferred_stmt
            && let Some(&b0) = p.head.first()
            && b0 != 0xff
            && !wire::is_terminator(p.head, p.len)
        {
            q.next_seq = p.last_seq.wrapping_add(1);
            q.bytes_response += p.wire;
            q.first_ts.get_or_insert(p.start_ts);
            q.end_ts = p.end_ts;
            q.rows += 1;
            return;
        }
        let Some(mut q) = self.pending.pop_front() else {
            if self.trailing_eof == Some(p.seq) && wire::is_eof(p.head, p.len) {
                self.deprecate_eof = Some(false);
            } else {
                // Unsolicited (e.g. the ERR of a server closing an idle connection) or
                // the answer to a request we did not see.
                cx.stats.skipped_bytes += p.wire;
            }
            self.trailing_eof = None;
            return;
        };
        if self.trailing_eof == Some(p.seq) && p.seq != q.next_seq && wire::is_eof(p.head, p.len) {
            self.deprecate_eof = Some(false);
            self.trailing_eof = None;
            self.pending.push_front(q);
            return;
        }
        self.trailing_eof = None;
        if q.deferred_stmt {
            q.deferred_stmt = false;
            if let Some(s) = self.last_prepared.and_then(|id| self.stmts.map.get(&id)) {
                q.set_stmt(s);
            }
        }
        q.next_seq = p.last_seq.wrapping_add(1);
        q.bytes_response += p.wire;
        q.first_ts.get_or_insert(p.start_ts);
        q.end_ts = p.end_ts;
        if wire::is_progress(p.head) {
            self.pending.push_front(q);
            return;
        }
        if self.step(cx, &mut q, p) {
            if let Some(l) = q.login.take() {
                let outcome = if q.error.is_some() {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                if outcome == Outcome::Success {
                    self.user.clone_from(&l.user);
                    self.database.clone_from(&l.database);
                    self.application.clone_from(&l.application);
                    self.stmts.clear();
                }
                self.emit_login(cx, l, outcome, q.error.take());
            } else {
                self.emit_query(cx, *q);
            }
        } else {
            self.pending.push_front(q);
        }
    }
}
