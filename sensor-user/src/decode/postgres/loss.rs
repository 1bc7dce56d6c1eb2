//! Around gaps: requests lost (a barrier in the queue, reports held back until a group
//! boundary) and response framing found again (the affected groups go on tainted or are
//! dropped for a barrier). See the module documentation, "Losses".

use super::{
    Phase, PostgresDecoder,
    framer::{Mode, Msg},
    queue::{Deferred, Group, Kind},
};
use crate::decode::DecodeCtx;

impl PostgresDecoder {
    pub(super) fn on_request_lost(&mut self, malformed: bool) {
        match self.phase {
            Phase::Startup | Phase::AwaitAnswer if self.login.is_none() => {
                if malformed && !self.mid_stream {
                    // A new connection that does not open like PostgreSQL.
                    self.phase = Phase::Dead;
                    self.stop();
                    return;
                }
                self.phase = Phase::Ready;
                self.resp.mode = Mode::Typed;
                self.requests_lost();
            }
            Phase::Ready => self.requests_lost(),
            _ => {}
        }
    }

    /// Requests went missing: see the module documentation.
    fn requests_lost(&mut self) {
        match self.groups.back_mut() {
            Some(g) if g.is_barrier() => {}
            Some(g) => {
                // An extended group cut open is most likely continued after the loss: the
                // next Sync closes it (one ReadyForQuery), unless its answer comes first.
                self.cut_open = !g.closed && matches!(g.kind, Kind::Extended { .. });
                g.closed = true;
                self.groups.push_back(Group::barrier());
            }
            None => self.groups.push_back(Group::barrier()),
        }
        self.stmts.unnamed = None;
        self.portals.unnamed = None;
        self.pre = None;
        self.req_discard = Some(None);
    }

    /// Response framing is back after a loss (or found after a mid-stream start with bytes
    /// skipped); `dropped` is the time of the latest bytes lost, `lost_bytes` how many. The groups whose requests
    /// began by then may have had their answers, or part of them, in what was lost (requests
    /// keep coming while responses are out of sync, and later gaps may hide their answers), so
    /// this is decided now, not at the loss. One such group, and no later request sent before
    /// the resync point (`ts`): the resumed bytes are its, it goes on, tainted. Otherwise how
    /// many were answered in the loss is unknowable, so the affected groups are dropped for a
    /// barrier that swallows responses until one to a later request comes.
    pub(super) fn on_response_resync(&mut self, ts: u64, dropped: Option<u64>, lost_bytes: u64) {
        let Some(dropped) = dropped else { return };
        if self.phase != Phase::Ready {
            return;
        }
        let affected = self
            .groups
            .iter()
            .take_while(|g| g.is_barrier() || g.first_ts <= dropped)
            .count();
        if affected == 0 {
            return;
        }
        // Groups the resumed bytes may answer: a later request sent before them means the
        // affected group's answer may have ended in the loss (clients that wait for answers
        // send the next request only then).
        let candidates = self
            .groups
            .iter()
            .take_while(|g| g.is_barrier() || g.first_ts <= ts)
            .count();
        if affected == 1 && candidates == 1 && !self.groups[0].is_barrier() {
            // The bytes lost were its answer if its answer had begun before them (between its
            // first response byte and the resumed bytes, nothing else can have been sent).
            match &mut self.groups[0].kind {
                Kind::Simple(q) => {
                    if q.first_resp.is_some() {
                        q.bytes_resp += lost_bytes;
                    }
                    q.taint();
                }
                Kind::Extended { execs, deferred } => {
                    for q in execs.iter_mut() {
                        q.taint();
                    }
                    // Completions before the loss are reported already; match anew. With one
                    // Execute pending, the bytes lost were its.
                    let one = execs.len() == 1 && execs[0].first_resp.is_some();
                    let d = deferred.get_or_insert_with(Deferred::default);
                    d.done.clear();
                    d.bytes = if one { d.bytes + lost_bytes } else { 0 };
                    d.first = None;
                    d.rows = 0;
                    d.known_start = false;
                }
                Kind::Barrier { .. } => {}
            }
            return;
        }
        let absorbed = self
            .groups
            .iter()
            .take(affected)
            .map(|g| match g.kind {
                Kind::Barrier { absorbed_until } => absorbed_until,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
            .max(ts);
        if affected == self.groups.len() {
            // The rest of an open extended group goes unreported too (the server answers
            // the whole group at once).
            let open = self.groups.back().filter(|g| !g.closed).map(|g| g.first_ts);
            if let Some(first) = open
                && self.req_discard.is_none()
            {
                self.req_discard = Some(Some(first));
                self.pre = None;
            }
        }
        self.groups.drain(..affected);
        self.groups.push_front(Group {
            kind: Kind::Barrier {
                absorbed_until: absorbed,
            },
            ..Group::barrier()
        });
    }

    /// The extended group requests were lost in (just before the barrier), if it is still
    /// waiting for its answer.
    fn cut_group(&mut self) -> Option<&mut Group> {
        if !std::mem::take(&mut self.cut_open) {
            return None;
        }
        let n = self.groups.len();
        if n < 2 || !self.groups[n - 1].is_barrier() {
            return None;
        }
        Some(&mut self.groups[n - 2]).filter(|g| matches!(g.kind, Kind::Extended { .. }))
    }

    /// Requests are not reported until a group boundary (see `req_discard`): true while `m`
    /// is one of them. A Query or FunctionCall is the boundary and is reported; a Sync ends
    /// what is discarded and is not.
    pub(super) fn discards(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) -> bool {
        let Some(first) = &mut self.req_discard else {
            return false;
        };
        let first = *first.get_or_insert(m.start_ts);
        match m.typ {
            b'Q' | b'F' => {
                self.req_discard = None;
                if let Some(g) = self.cut_group() {
                    // Extended messages a Query follows without Sync: no ReadyForQuery.
                    g.needs_z = false;
                }
                false
            }
            b'S' => {
                self.req_discard = None;
                self.pre = None;
                if self.cut_group().is_none() {
                    // The group cut short ends here: it swallows its ReadyForQuery.
                    let mut g = Group::extended(first, false);
                    g.closed = true;
                    self.push_group(cx, g);
                }
                true
            }
            _ => true,
        }
    }
}
