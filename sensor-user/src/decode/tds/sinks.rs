//! Each direction's framer reports to the session through a [`Sink`]: where TLS or SMP
//! starts at a packet boundary, which headers are plausible now, where whole messages go,
//! and what a loss of framing means for the exchange in progress.

use super::packet::{Msg, Sink};
use super::wire::pkt;
use super::{Conn, Phase, Stmts, TlsMode};
use crate::decode::DecodeCtx;

/// SMP's first byte (MC-SMP §2.2.1).
const SMID: u8 = 0x53;
/// A TLS handshake record's first byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// The request direction's view of the session.
pub(super) struct ReqSink<'a> {
    pub(super) c: &'a mut Conn,
    pub(super) stmts: &'a mut Stmts,
}

impl Sink for ReqSink<'_> {
    fn boundary(&mut self, next: u8) -> bool {
        let c = &mut *self.c;
        match c.phase {
            // TDS 8.0 (strict): TLS before anything else.
            Phase::Prelogin if next == TLS_HANDSHAKE && !c.seen_request && !c.in_tls => {
                c.strict_tls = true;
                true
            }
            // TDS 7.x: the client's PRELOGIN after the exchange carries its TLS handshake.
            Phase::AfterPrelogin
                if next == pkt::PRELOGIN && c.tls != TlsMode::None && !c.in_tls =>
            {
                true
            }
            // No request type is 0x53: at a boundary it is SMP, MARS negotiated or not (a
            // mid-stream start did not see the PRELOGIN).
            Phase::Command if next == SMID => {
                c.smp = true;
                true
            }
            _ => false,
        }
    }

    fn header_ok(&self, typ: u8, _status: u8, _len: usize, _spid: u16) -> bool {
        pkt::is_request(typ)
    }

    fn message(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        self.c.seen_request = true;
        self.c.on_request(cx, self.stmts, m);
    }

    fn lost(&mut self, cx: &mut DecodeCtx<'_>, partial: Option<&Msg<'_>>) {
        // A request whose end was lost was still sent: keep it (its text is cut short).
        if let Some(m) = partial
            && self.c.phase == Phase::Command
            && !m.cut
            && matches!(m.typ, pkt::SQL_BATCH | pkt::RPC)
            && !m.head.is_empty()
        {
            self.c.on_request(cx, self.stmts, m);
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>, first: bool) {
        if !first {
            cx.stats.resyncs += 1;
        }
        let c = &mut *self.c;
        if first && c.phase == Phase::Prelogin {
            c.phase = Phase::Command;
        }
    }
}

/// The response direction's view of the session.
pub(super) struct RespSink<'a> {
    pub(super) c: &'a mut Conn,
    pub(super) stmts: &'a mut Stmts,
}

impl Sink for RespSink<'_> {
    fn header_ok(&self, typ: u8, _status: u8, _len: usize, spid: u16) -> bool {
        // Once the login gave the session its id, every reply carries it.
        typ == pkt::REPLY && self.c.spid.is_none_or(|s| spid == s || spid == 0)
    }

    fn message(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        self.c.on_reply(cx, self.stmts, m);
    }

    fn lost(&mut self, _cx: &mut DecodeCtx<'_>, partial: Option<&Msg<'_>>) {
        if let Some(q) = self.c.pending.front_mut() {
            q.uncertain = true;
            q.lost = true;
            if let Some(m) = partial {
                q.bytes_response += m.wire;
                q.first_ts.get_or_insert(m.start_ts);
                q.end_ts = m.end_ts;
            }
        }
    }

    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, n: u64, ts: u64) {
        // Bytes of a reply whose framing was lost still belong to it (the client sends its
        // next request only after the whole reply): count them, and the last one's time.
        if let Some(q) = self.c.pending.front_mut()
            && q.lost
        {
            q.bytes_response += n;
            q.first_ts.get_or_insert(ts);
            q.end_ts = q.end_ts.max(ts);
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>, first: bool) {
        if !first {
            cx.stats.resyncs += 1;
        }
    }
}
