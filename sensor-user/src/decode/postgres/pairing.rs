//! Requests paired with their responses: requests queue up as groups, responses complete
//! the queries at the front in order, and each completion becomes a record.

use super::{
    PostgresDecoder,
    framer::Msg,
    messages::{self, cstr},
    queue::{Deferred, Group, Kind, MAX_EXECS, MAX_GROUPS, Query},
    statements::Stmt,
};
use crate::decode::DecodeCtx;
use std::collections::VecDeque;

impl PostgresDecoder {
    /// Queues a group. A group behind a barrier whose request began before the barrier's
    /// last swallowed response may have been answered already: it is not queued (false), and
    /// requests are not reported until the next boundary. Beyond [`MAX_GROUPS`], the queue
    /// is dropped for a barrier.
    pub(super) fn push_group(&mut self, cx: &mut DecodeCtx<'_>, g: Group) -> bool {
        if let Some(Group {
            kind: Kind::Barrier { absorbed_until },
            ..
        }) = self.groups.back()
            && g.first_ts < *absorbed_until
        {
            if !g.closed {
                self.req_discard = Some(Some(g.first_ts));
            }
            return false;
        }
        if self.groups.len() >= MAX_GROUPS {
            cx.stats.pending_overflow += self.groups.iter().map(Group::units).sum::<u64>();
            self.groups.clear();
            self.groups.push_back(Group::barrier());
        }
        self.groups.push_back(g);
        true
    }

    /// Index of the open extended group, created if needed.
    fn open_group(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) -> Option<usize> {
        let open = self
            .groups
            .back()
            .is_some_and(|g| !g.closed && matches!(g.kind, Kind::Extended { .. }));
        if !open && !self.push_group(cx, Group::extended(ts, true)) {
            return None;
        }
        Some(self.groups.len() - 1)
    }

    fn note_pre(&mut self, m: &Msg<'_>) {
        let p = self.pre.get_or_insert((m.start_ts, 0));
        p.1 += m.wire_len;
    }

    pub(super) fn on_typed_request(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        self.track_statements(cx, m);
        if self.discards(cx, m) {
            return;
        }
        match m.typ {
            b'Q' => {
                self.pre = None;
                // Extended messages a Query follows without Sync get no ReadyForQuery of
                // their own.
                if let Some(g) = self.groups.back_mut()
                    && !g.closed
                {
                    g.closed = true;
                    g.needs_z = false;
                }
                let (sql, cut) = match m.body.iter().position(|&c| c == 0) {
                    Some(n) => (&m.body[..n], false),
                    None => (m.body, true),
                };
                let s = Stmt::from_sql(sql, cut, cx.redact);
                self.push_group(
                    cx,
                    Group::simple(Query::new(s, m.start_ts, m.wire_len, false)),
                );
            }
            b'F' => {
                self.pre = None;
                let fp = match m.body.len() >= 4 {
                    true => format!("fastpath function {}", messages::be32(m.body)),
                    false => "fastpath function".into(),
                };
                let s = Stmt::special("FUNCTION_CALL", fp);
                self.push_group(
                    cx,
                    Group::simple(Query::new(s, m.start_ts, m.wire_len, false)),
                );
            }
            // (Flush and Sync belong to what came before them, and are not counted.)
            b'P' | b'B' | b'D' | b'C' => self.note_pre(m),
            b'E' => {
                let mut pos = 0;
                let portal = cstr(m.body, &mut pos).unwrap_or_default();
                let stmt = self
                    .portals
                    .get(portal)
                    .unwrap_or_else(|| Stmt::unknown(b""));
                let (ts, bytes) = self.pre.take().unwrap_or((m.start_ts, 0));
                let q = Query::new(stmt, ts, bytes + m.wire_len, true);
                let Some(i) = self.open_group(cx, ts) else {
                    return;
                };
                let g = &mut self.groups[i];
                if let Kind::Extended { execs, .. } = &mut g.kind
                    && !g.failed
                    && g.emit
                {
                    if execs.len() >= MAX_EXECS {
                        // Too many to pair reliably: the group is swallowed unreported.
                        cx.stats.pending_overflow += execs.len() as u64 + 1;
                        execs.clear();
                        g.emit = false;
                    } else {
                        execs.push_back(q);
                    }
                }
            }
            b'S' => {
                self.pre = None;
                if let Some(i) = self.open_group(cx, m.start_ts) {
                    self.groups[i].closed = true;
                }
            }
            b'd' | b'c' | b'f' => {
                // Client CopyData belongs to the query that asked for it: the latest one.
                if let Some(g) = self.groups.back_mut() {
                    match &mut g.kind {
                        Kind::Simple(q) => q.bytes_req += m.wire_len,
                        Kind::Extended { execs, .. } => {
                            if let Some(q) = execs.back_mut() {
                                q.bytes_req += m.wire_len;
                            }
                        }
                        Kind::Barrier { .. } => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// Pops finished groups that get no ReadyForQuery of their own.
    fn settle_front(&mut self) {
        while let Some(g) = self.groups.front() {
            let done = !g.needs_z
                && match &g.kind {
                    Kind::Extended { execs, .. } => execs.is_empty() || g.failed,
                    _ => false,
                };
            if !done {
                return;
            }
            self.groups.pop_front();
        }
    }

    /// `n`: for a DataRow, how many rows `m` stands for (consecutive rows that arrived
    /// together, their wire lengths summed in `m`; consecutive CopyData messages are taken
    /// together the same way); 1 for any other message.
    pub(super) fn on_query_response(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>, n: u64) {
        let t = m.typ;
        // Asynchronous: belongs to no query.
        if t == b'A' {
            return;
        }
        // Most messages: the front group is a query's that `settle_front` keeps (not a
        // barrier, not finished), so the loop below would change nothing.
        let settled = self.groups.front().is_some_and(|g| match &g.kind {
            Kind::Simple(_) => true,
            Kind::Extended { execs, .. } => g.needs_z || (!execs.is_empty() && !g.failed),
            Kind::Barrier { .. } => false,
        });
        if !settled {
            loop {
                self.settle_front();
                let next_ts = self.groups.get(1).map(|g| g.first_ts);
                let Some(g) = self.groups.front_mut() else {
                    return;
                };
                let Kind::Barrier { absorbed_until } = &mut g.kind else {
                    break;
                };
                match next_ts {
                    Some(ts) if m.start_ts >= ts => {
                        self.groups.pop_front();
                    }
                    _ => {
                        *absorbed_until = (*absorbed_until).max(m.end_ts);
                        return;
                    }
                }
            }
        }
        if t == b'Z' {
            let Some(g) = self.groups.pop_front() else {
                return;
            };
            if !g.emit {
                return;
            }
            match g.kind {
                Kind::Simple(mut q) => {
                    q.saw_response(m);
                    let rows = q.simple_rows();
                    self.session
                        .emit(cx, &q, rows, q.first_resp, m.end_ts, q.tainted);
                }
                Kind::Extended {
                    execs,
                    deferred: Some(d),
                } => self.match_deferred(cx, execs, d),
                _ => {}
            }
            return;
        }
        let Some(g) = self.groups.front_mut() else {
            return;
        };
        if !g.emit {
            return;
        }
        match &mut g.kind {
            Kind::Simple(q) => {
                q.saw_response(m);
                match t {
                    b'D' => q.cur_rows += n,
                    b'C' => q.statement_done(m),
                    b'E' => {
                        if q.error.is_none() {
                            q.error = messages::error_reply(m.body);
                        }
                        q.cur_rows = 0;
                    }
                    _ => {}
                }
            }
            Kind::Extended { execs, deferred } => {
                if let Some(d) = deferred {
                    d.on_msg(m, n);
                    return;
                }
                if g.failed {
                    return;
                }
                let Some(q) = execs.front_mut() else {
                    if t == b'E' {
                        g.failed = true;
                    }
                    return;
                };
                q.saw_response(m);
                let rows = match t {
                    b'D' => {
                        q.cur_rows += n;
                        return;
                    }
                    b'C' => {
                        if m.complete {
                            q.tag = messages::tag_command(m.body);
                        }
                        m.complete
                            .then(|| messages::tag_rows(m.body))
                            .flatten()
                            .or((!q.tainted && q.cur_rows > 0).then_some(q.cur_rows))
                    }
                    b's' => (!q.tainted).then_some(q.cur_rows),
                    b'I' => None,
                    b'E' => {
                        q.error = messages::error_reply(m.body);
                        None
                    }
                    _ => return,
                };
                let Some(q) = execs.pop_front() else { return };
                if t == b'E' {
                    // The server skips to Sync: the rest never ran.
                    g.failed = true;
                    execs.clear();
                }
                self.session
                    .emit(cx, &q, rows, q.first_resp, m.end_ts, q.tainted);
            }
            Kind::Barrier { .. } => {}
        }
    }

    /// Matches the completions seen after a response-side loss with the Executes pending.
    fn match_deferred(&mut self, cx: &mut DecodeCtx<'_>, execs: VecDeque<Query>, d: Deferred) {
        let (m, c) = (execs.len(), d.done.len());
        let failed = d.done.iter().any(|x| x.error.is_some());
        // Completions are in order and only earlier ones can hide in the gap; after an error
        // the rest of the group got none, so then only a full set is unambiguous.
        let skip = match (failed, c.cmp(&m)) {
            (_, std::cmp::Ordering::Equal) => 0,
            (false, std::cmp::Ordering::Less) => m - c,
            _ => return,
        };
        for (k, (mut q, comp)) in execs.into_iter().skip(skip).zip(d.done).enumerate() {
            q.bytes_resp += comp.bytes;
            let first = match (k, skip) {
                (0, 0) => q.first_resp,
                (0, _) => None,
                _ => comp.first,
            };
            if comp.error.is_some() {
                q.error = comp.error;
            }
            q.tag = comp.tag;
            self.session
                .emit(cx, &q, comp.rows, first, comp.end_ts, true);
        }
    }
}
