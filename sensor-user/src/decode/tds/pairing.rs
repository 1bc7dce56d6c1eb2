//! Requests paired with their replies: each request message is queued, and each reply
//! message answers the oldest (a client waits for a reply before its next request; only
//! ATTENTION comes in between). The exchange is then reported.

use super::packet::Msg;
use super::read::ucs2;
use super::tokens::{Reply, Segment};
use super::wire::{self, pkt, proc_id};
use super::{Conn, MAX_STMTS, Phase, Stmt, Stmts, TEXT_CAP};
use crate::decode::{
    DecodeCtx,
    fingerprint::{Dialect, fingerprint_cached},
    kit::{ErrorReply, Exchange},
};

/// Requests outstanding per session: one, plus ATTENTIONs (bounded all the same).
const MAX_PENDING: usize = 16;

pub(super) struct Pending {
    attention: bool,
    /// Calls of the same RPC message queued after this one (they share its reply).
    batched: usize,
    ts_ns: u64,
    bytes_request: u64,
    verb: String,
    fingerprint: String,
    text: Option<String>,
    prepared: bool,
    /// `sp_prepare` and the like: the statement to remember under the handle returned.
    remember: Option<Stmt>,
    unprepare: Option<i32>,
    pub(super) first_ts: Option<u64>,
    pub(super) end_ts: u64,
    pub(super) bytes_response: u64,
    rows: u64,
    counted: bool,
    error: Option<ErrorReply>,
    /// Framing was lost inside the reply, or no reply came.
    pub(super) uncertain: bool,
    pub(super) lost: bool,
}

impl Pending {
    fn new(m: &Msg<'_>, name: &str) -> Self {
        Self {
            attention: false,
            batched: 0,
            ts_ns: m.start_ts,
            bytes_request: m.wire,
            verb: name.into(),
            fingerprint: name.into(),
            text: None,
            prepared: false,
            remember: None,
            unprepare: None,
            first_ts: None,
            end_ts: m.end_ts,
            bytes_response: 0,
            rows: 0,
            counted: false,
            error: None,
            uncertain: false,
            lost: false,
        }
    }

    /// Verb, fingerprint and text of a statement.
    fn statement(&mut self, sql: &str) {
        let (verb, fp) = fingerprint_cached(sql, Dialect::TSql);
        if !verb.is_empty() {
            self.verb = verb;
        }
        if !fp.is_empty() {
            self.fingerprint = fp;
        }
        self.text = Some(sql.to_string());
    }

    fn stmt(&self, redact: bool) -> Stmt {
        Stmt {
            verb: self.verb.clone(),
            fingerprint: self.fingerprint.clone(),
            query: if redact { None } else { self.text.clone() },
        }
    }
}

impl Conn {
    pub(super) fn on_request(&mut self, cx: &mut DecodeCtx<'_>, stmts: &mut Stmts, m: &Msg<'_>) {
        // A mid-stream start that caught a connection's login: it starts here.
        if self.phase == Phase::Command
            && self.user.is_none()
            && self.pending.is_empty()
            && matches!(m.typ, pkt::PRELOGIN | pkt::LOGIN7 | pkt::PRE_TDS7_LOGIN)
        {
            self.phase = Phase::Prelogin;
        }
        match (self.phase, m.typ) {
            (Phase::Prelogin | Phase::AfterPrelogin, pkt::PRELOGIN) => {
                self.on_prelogin_request(m);
                return;
            }
            (Phase::Prelogin | Phase::AfterPrelogin | Phase::Login, pkt::LOGIN7) => {
                self.on_login7(cx, m);
                return;
            }
            // The TDS 4.2 / 5.0 login (hydra's and medusa's mssql modules still send it).
            (Phase::Prelogin | Phase::AfterPrelogin, pkt::PRE_TDS7_LOGIN) => {
                self.on_old_login(m);
                return;
            }
            // The rest of an SSPI or federated authentication exchange.
            (Phase::Login, pkt::SSPI | pkt::FEDAUTH_TOKEN) => return,
            (Phase::Dead, _)
            | (_, pkt::PRELOGIN | pkt::LOGIN7 | pkt::SSPI | pkt::PRE_TDS7_LOGIN) => {
                cx.stats.skipped_bytes += m.wire;
                return;
            }
            (
                Phase::Login,
                pkt::SQL_BATCH | pkt::RPC | pkt::TRANSACTION_MANAGER | pkt::BULK_LOAD,
            ) if self.login.is_some() => {
                // A client sends requests only after its login succeeded (a refused login
                // ends the connection): the reply that said so was not readable (cut by the
                // payload cap, or lost).
                self.login_succeeded(cx, None);
            }
            (Phase::Prelogin | Phase::AfterPrelogin | Phase::Login, _) => {
                // Requests come only after a login: this one's start was not seen.
                self.phase = Phase::Command;
                self.login = None;
            }
            (Phase::Command, _) => {}
        }
        if m.typ != pkt::ATTENTION {
            // The client sends a request only once the last reply ended: whatever is still
            // pending ended unseen (its reply's framing was lost, or it was never captured).
            while let Some(mut q) = self.pending.pop_front() {
                q.uncertain = true;
                self.emit(cx, q);
            }
        }
        if m.status & wire::status::RESET != 0 {
            stmts.map.clear();
        }
        for q in self.request(cx, stmts, m) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
                cx.stats.pending_overflow += 1;
            }
            self.pending.push_back(q);
        }
    }

    /// The exchanges a request message starts: one, or one per call of a batched RPC.
    fn request(&mut self, cx: &mut DecodeCtx<'_>, stmts: &mut Stmts, m: &Msg<'_>) -> Vec<Pending> {
        let tds72 = self.tds72();
        let body = wire::skip_all_headers(m.head, tds72);
        let mut q;
        match m.typ {
            _ if m.cut => {
                q = Pending::new(m, "UNKNOWN");
                q.uncertain = true;
            }
            pkt::SQL_BATCH => {
                q = Pending::new(m, "SQL_BATCH");
                let n = body.len().min(2 * TEXT_CAP) & !1;
                let text = ucs2(&body[..n]);
                q.statement(&text);
                if !m.whole || n < body.len() {
                    // The text was cut (payload cap, a gap, its length): the fingerprint says
                    // so, and a first word that runs to the cut is no verb.
                    q.fingerprint.push_str(" …");
                    if !text.trim_start().contains(char::is_whitespace) {
                        q.verb = "SQL_BATCH".into();
                    }
                }
            }
            pkt::RPC => {
                let calls = wire::rpcs(body, TEXT_CAP);
                if calls.is_empty() {
                    let mut q = Pending::new(m, "RPC");
                    if m.whole {
                        cx.stats.malformed += 1;
                    } else {
                        // Cut before its procedure could be read.
                        q.fingerprint.push_str(" …");
                    }
                    return vec![q];
                }
                let n = calls.len();
                return calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, call)| {
                        let mut q = Pending::new(m, "RPC");
                        // The message's bytes count once, with its first call.
                        if i > 0 {
                            q.bytes_request = 0;
                        }
                        q.batched = n - 1 - i;
                        let cut = !m.whole && call.statement_cut();
                        let name = call.name.clone();
                        self.rpc(cx, stmts, &mut q, call);
                        if cut {
                            // Its statement was past the captured bytes: only the procedure
                            // is known.
                            q.verb = "RPC".into();
                            q.fingerprint = format!("{name} …");
                        }
                        q
                    })
                    .collect();
            }
            pkt::ATTENTION => {
                q = Pending::new(m, "ATTENTION");
                q.attention = true;
            }
            pkt::TRANSACTION_MANAGER => {
                let (verb, name) = wire::transaction_request(body);
                q = Pending::new(m, name);
                q.verb = verb.into();
            }
            pkt::BULK_LOAD => q = Pending::new(m, "BULK_LOAD"),
            _ => {
                cx.stats.malformed += 1;
                q = Pending::new(m, "UNKNOWN");
            }
        }
        vec![q]
    }

    fn rpc(&mut self, cx: &mut DecodeCtx<'_>, stmts: &mut Stmts, q: &mut Pending, call: wire::Rpc) {
        use proc_id::*;
        let Some(id) = call.id else {
            // A named procedure: `exec [dbo].[name]`, normalised like a batch's.
            let (_, fp) = fingerprint_cached(&format!("exec {}", call.name), Dialect::TSql);
            q.verb = "EXEC".into();
            q.fingerprint = fp;
            return;
        };
        q.verb = call.name.to_ascii_uppercase();
        q.fingerprint.clone_from(&call.name);
        let stmt = call.statement.as_deref();
        match id {
            SP_EXECUTESQL | SP_CURSOROPEN => {
                if let Some(sql) = stmt {
                    q.statement(sql);
                }
            }
            SP_PREPARE | SP_CURSORPREPARE => {
                if let Some(sql) = stmt {
                    q.statement(sql);
                    q.remember = Some(q.stmt(cx.redact));
                }
                q.verb = "PREPARE".into();
            }
            SP_PREPEXEC | SP_CURSORPREPEXEC => {
                if let Some(sql) = stmt {
                    q.statement(sql);
                    q.remember = Some(q.stmt(cx.redact));
                }
                q.prepared = true;
            }
            SP_EXECUTE | SP_CURSOREXECUTE => {
                q.prepared = true;
                if let Some(s) = call.handle.and_then(|h| stmts.map.get(&h)) {
                    q.verb.clone_from(&s.verb);
                    q.fingerprint.clone_from(&s.fingerprint);
                    q.text.clone_from(&s.query);
                }
            }
            SP_UNPREPARE => q.unprepare = call.handle,
            _ => {}
        }
        if call.truncated && stmt.is_none() {
            cx.stats.malformed += 1;
        }
    }

    pub(super) fn on_reply(&mut self, cx: &mut DecodeCtx<'_>, stmts: &mut Stmts, m: &Msg<'_>) {
        match self.phase {
            Phase::Prelogin => {
                if self.on_prelogin_reply(m) {
                    return;
                }
                // A mid-stream start, or a client that skipped PRELOGIN.
                self.phase = Phase::Command;
            }
            Phase::AfterPrelogin | Phase::Login => {
                self.on_login_reply(cx, m);
                return;
            }
            Phase::Dead => {
                cx.stats.skipped_bytes += m.wire;
                return;
            }
            Phase::Command => {}
        }
        let Some(q) = self.pending.pop_front() else {
            // The answer to a request we did not see.
            cx.stats.skipped_bytes += m.wire;
            return;
        };
        let reply = self.read_reply(m);
        // A batched RPC's calls share the reply: each takes its part, up to its DONEPROC.
        let mut group = vec![q];
        while group.last().is_some_and(|q| q.batched > 0) {
            match self.pending.pop_front() {
                Some(q) => group.push(q),
                None => break,
            }
        }
        let n = group.len();
        let mut first = true;
        for (i, mut q) in group.into_iter().enumerate() {
            let seg = if n == 1 {
                None
            } else {
                Some(reply.procs.get(i).cloned().unwrap_or_default())
            };
            if first {
                q.bytes_response += m.wire;
                first = false;
            }
            self.answer(cx, stmts, q, m, &reply, seg.as_ref());
        }
        if let Some(db) = reply.database.clone() {
            self.database = Some(db);
        }
        debug_assert!(stmts.map.len() <= MAX_STMTS);
    }

    /// One exchange answered by `m` (`seg`: its part of a batched RPC's reply).
    fn answer(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        stmts: &mut Stmts,
        mut q: Pending,
        m: &Msg<'_>,
        reply: &Reply,
        seg: Option<&Segment>,
    ) {
        q.first_ts.get_or_insert(m.start_ts);
        q.end_ts = m.end_ts;
        let (rows, counted, error, done_error, return_int) = match seg {
            Some(s) => (
                s.rows,
                s.counted,
                s.error.as_ref(),
                s.done_error,
                s.return_int,
            ),
            None => (
                reply.rows,
                reply.counted,
                reply.error.as_ref(),
                reply.done_error,
                reply.return_int,
            ),
        };
        q.rows = rows;
        q.counted = counted;
        if reply.last_done.is_none() {
            // Nothing of the reply's end could be read.
            q.uncertain = true;
        }
        if let Some(e) = error {
            q.error = Some(e.reply());
        } else if done_error && q.error.is_none() {
            q.error = Some(ErrorReply::code("error"));
        }
        if error.is_none() && !done_error {
            if let (Some(s), Some(h)) = (q.remember.take(), return_int) {
                stmts.insert(h, s);
            }
            if let Some(h) = q.unprepare {
                stmts.map.remove(&h);
            }
        }
        if reply.attention && !q.attention {
            // Cancelled: the ATTENTION queued after it is acknowledged by the same reply.
            q.error = Some(ErrorReply::code("cancelled"));
            q.counted = false;
            self.emit(cx, q);
            if let Some(pos) = self.pending.iter().position(|p| p.attention)
                && let Some(mut a) = self.pending.remove(pos)
            {
                a.first_ts = Some(m.start_ts);
                a.end_ts = m.end_ts;
                self.emit(cx, a);
            }
        } else {
            self.emit(cx, q);
        }
    }

    pub(super) fn emit(&mut self, cx: &mut DecodeCtx<'_>, q: Pending) {
        let rows = (!q.uncertain && q.counted).then_some(q.rows);
        let r = Exchange {
            ts_ns: q.ts_ns,
            first_ns: q.first_ts,
            end_ns: q.end_ts,
            user: self.user.clone(),
            database: self.database.clone(),
            verb: q.verb,
            fingerprint: q.fingerprint,
            text: q.text,
            rows,
            error: q.error,
            bytes_request: q.bytes_request,
            bytes_response: q.bytes_response,
            prepared: q.prepared,
            tag: None,
        }
        .record(cx);
        cx.out.push(r);
    }
}
