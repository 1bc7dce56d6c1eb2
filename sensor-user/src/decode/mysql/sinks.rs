//! Each direction's framer reports to the session through a [`Sink`]: which headers may
//! start a packet now, where whole packets go, and — when framing is lost — what a packet cut
//! short, bytes without framing, the hunt for the next boundary (see [`hunt`]) and framing
//! found again mean for the exchange in progress.

use super::{
    Phase, Session,
    framer::{MAX_PACKET, Packet, Sink},
    hunt,
    queue::RState,
    wire,
};
use crate::decode::DecodeCtx;

/// The request direction's view of the session.
pub(super) struct ReqSink<'a> {
    pub(super) s: &'a mut Session,
    pub(super) resp_lost: bool,
}

impl Sink for ReqSink<'_> {
    fn header(&mut self, _cx: &mut DecodeCtx<'_>, seq: u8, len: u32) -> bool {
        let s = &self.s;
        match s.phase {
            Phase::Greeting => seq <= 1 && len < 1 << 16,
            Phase::HandshakeResponse | Phase::Auth => seq == s.seq_next,
            Phase::Command => seq == 0 || s.continuation_expected(seq),
            _ => true,
        }
    }

    fn packet(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let s = &mut *self.s;
        match s.phase {
            Phase::Greeting if p.seq == 1 => s.on_handshake_response(cx, p),
            Phase::Greeting => {
                s.phase = Phase::Command;
                s.on_command(cx, p, &mut self.resp_lost);
            }
            Phase::HandshakeResponse => s.on_handshake_response(cx, p),
            Phase::Auth => s.on_auth_request(p),
            Phase::Command if p.seq == 0 => s.on_command(cx, p, &mut self.resp_lost),
            Phase::Command => s.on_continuation(cx, p),
            _ => {}
        }
    }

    fn lost(&mut self, cx: &mut DecodeCtx<'_>, partial: Option<&Packet<'_>>) {
        let (Some(p), Phase::Command) = (partial, self.s.phase) else {
            return;
        };
        if p.seq == 0 && !p.head.is_empty() {
            // A request whose end was lost was still sent: keep it (its text is cut short).
            self.s.on_command(cx, p, &mut self.resp_lost);
        } else if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Infile
        {
            q.bytes_request += p.wire;
        }
    }

    fn hunt(&mut self, _cx: &mut DecodeCtx<'_>, window: &[u8]) -> Option<usize> {
        let s = &mut *self.s;
        if !s.req_synced && hunt::is_tls(window) {
            s.phase = Phase::Tls;
            s.tls_after = Some(None);
            return None;
        }
        let at = hunt::find_request(window)?;
        if s.phase != Phase::Command {
            // Commands come only after a successful login.
            s.phase = Phase::Command;
            s.login = None;
        }
        Some(at)
    }

    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, n: i64, _ts: u64) {
        // The rest of a LOCAL INFILE upload whose framing was lost.
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Infile
        {
            q.bytes_request = q.bytes_request.saturating_add_signed(n);
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>) {
        if self.s.req_synced {
            cx.stats.resyncs += 1;
        }
        self.s.req_synced = true;
    }
}

/// The response direction's view of the session.
pub(super) struct RespSink<'a> {
    pub(super) s: &'a mut Session,
}

impl Sink for RespSink<'_> {
    fn header(&mut self, _cx: &mut DecodeCtx<'_>, seq: u8, len: u32) -> bool {
        let s = &self.s;
        match s.phase {
            Phase::Greeting => seq == 0 && len < 1 << 14,
            Phase::Auth => seq == s.seq_next,
            Phase::Command => match s.pending.front() {
                // While the client uploads a LOCAL INFILE the server only speaks to end it;
                // the upload's sequence ids may have been lost with its framing.
                Some(q) if matches!(q.st, RState::Resync | RState::Infile) => true,
                Some(q) => seq == q.next_seq || s.trailing_eof == Some(seq),
                None => true,
            },
            _ => true,
        }
    }

    fn packet(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let s = &mut *self.s;
        match s.phase {
            Phase::Greeting => s.on_greeting(cx, p),
            // The client's response went missing; the server's answer still tells.
            Phase::HandshakeResponse if p.seq >= 2 => s.on_auth_response(cx, p),
            Phase::Auth => s.on_auth_response(cx, p),
            Phase::Command => s.on_response(cx, p),
            Phase::Dead => cx.stats.skipped_bytes += p.wire,
            _ => {}
        }
    }

    fn runs(&mut self, _cx: &mut DecodeCtx<'_>, ts: u64, input: &[u8]) -> usize {
        // Rows of a result set, counted in place as `header` and `on_response` would.
        let s = &mut *self.s;
        if s.phase != Phase::Command || s.trailing_eof.is_some() {
            return 0;
        }
        let Some(q) = s.pending.front_mut() else {
            return 0;
        };
        if q.st != RState::Rows || q.deferred_stmt {
            return 0;
        }
        // Counted in locals, stored once at the end.
        let (mut off, mut next_seq, mut rows, mut bytes) = (0, q.next_seq, 0u64, 0u64);
        while let Some(h) = input.get(off..off + 4) {
            let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
            let seq = h[3];
            let end = off + 4 + len as usize;
            if seq != next_seq || len == 0 || len == MAX_PACKET || input.len() < end {
                break;
            }
            let head = &input[off + 4..end];
            if head[0] == 0xff || wire::is_terminator(head, u64::from(len)) {
                break;
            }
            next_seq = seq.wrapping_add(1);
            bytes += 4 + u64::from(len);
            rows += 1;
            off = end;
        }
        if rows > 0 {
            q.next_seq = next_seq;
            q.bytes_response += bytes;
            q.first_ts.get_or_insert(ts);
            q.end_ts = ts;
            q.rows += rows;
        }
        off
    }

    fn lost(&mut self, _cx: &mut DecodeCtx<'_>, partial: Option<&Packet<'_>>) {
        if self.s.phase != Phase::Command {
            return;
        }
        if let Some(q) = self.s.pending.front_mut() {
            q.uncertain = true;
            q.st = RState::Lost;
            if let Some(p) = partial {
                q.bytes_response += p.wire;
                q.first_ts.get_or_insert(p.start_ts);
            }
        }
    }

    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, n: i64, ts: u64) {
        // Bytes of a response whose framing was lost still belong to it (the client sends its
        // next request only after the whole response): count them, and the last one's time.
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Lost
        {
            q.bytes_response = q.bytes_response.saturating_add_signed(n);
            if n > 0 {
                q.end_ts = ts;
            }
        }
    }

    fn hunt(&mut self, _cx: &mut DecodeCtx<'_>, window: &[u8]) -> Option<usize> {
        let s = &mut *self.s;
        if !s.resp_synced
            && s.pending.is_empty()
            && s.phase == Phase::Command
            && hunt::is_greeting(window)
        {
            // A mid-stream start that caught the handshake: the client answers next.
            s.phase = Phase::Greeting;
            s.arm_req = Some(1);
            return Some(0);
        }
        match s.pending.front() {
            Some(q) if q.st == RState::Lost => hunt::find_terminator(window),
            _ => None,
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>) {
        if self.s.resp_synced {
            cx.stats.resyncs += 1;
        }
        self.s.resp_synced = true;
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Lost
        {
            q.st = RState::Resync;
        }
    }
}
