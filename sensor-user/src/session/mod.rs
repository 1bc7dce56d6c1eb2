//! The per-connection session stack: what reassembly delivers (in-order bytes, gaps, the end)
//! goes through the connection's layer, when it has one, to its decoder.
//!
//! A decoder says where its protocol switches to TLS ([`Control::StartTls`], at an exact byte
//! of the call; [`Control::StartTlsInPrelogin`] for SQL Server 7.x, whose handshake comes
//! wrapped in TDS packets, see [`prelogin`]) and back ([`Control::StopTls`], SQL Server's
//! login-only encryption, or [`Piece::Left`] when the wire shows it). From
//! the switch on, both directions' wire bytes go to the layer [`Layers`] makes ([`tls`]: the
//! TLS layer, reading with client key logs), and the plaintext it gives back, record by
//! record, goes on to the same decoder instance. Without a layer, or when the layer cannot
//! read the session ([`Piece::Opaque`]), the session is counted and nothing more is decoded.
//! A layer's lost record is a [`Gap::AtMost`]: the decoder must find its framing again.
//!
//! The session reports what the layer saw (a [`TlsRecord`] once it knows whether it can
//! read, or at the end), and marks the login records made inside the layer with its version
//! and suite.

mod layer;
mod prelogin;
pub mod tls;

#[cfg(test)]
mod tests;

pub use layer::{Layer, Layers, Piece};

use crate::decode::{Control, DecodeCtx, Decoder, Dir, Gap};
use crate::model::{Record, TlsExchangeRecord, TlsRecord, TurnFigures};

/// One connection's stack. `D` is `dyn Decoder` in the pipeline; tests name the decoder.
pub struct Session<D: Decoder + ?Sized = dyn Decoder> {
    layer: Option<Box<dyn Layer>>,
    /// Encrypted, and nothing reads it: nothing more reaches the decoder.
    opaque: bool,
    /// A layer's plaintext, reused.
    plain: Vec<u8>,
    decoder: Box<D>,
    /// When the last bytes or gap arrived (the time of a report the layer makes unasked).
    ts: u64,
    /// The version and suite of a layer the protocol left (SQL Server's login-only
    /// encryption): the login answered after it was made inside it.
    left: Option<(String, String)>,
}

impl<D: Decoder + ?Sized> Session<D> {
    pub fn new(decoder: Box<D>) -> Self {
        Self {
            layer: None,
            opaque: false,
            plain: Vec::new(),
            decoder,
            ts: 0,
            left: None,
        }
    }

    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// What the connection was for, as its decoder saw.
    pub fn purpose(&self) -> crate::model::Purpose {
        self.decoder.purpose()
    }

    /// The session switched to an encryption (read by a layer or not).
    pub fn encrypted(&self) -> bool {
        self.opaque || self.layer.is_some()
    }

    /// In-order wire bytes of one direction.
    pub fn data(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        layers: &Layers,
        dir: Dir,
        ts: u64,
        bytes: &[u8],
    ) {
        self.ts = self.ts.max(ts);
        if self.opaque {
            // A layer that cannot read the session may still time its turns.
            if let Some(layer) = &mut self.layer {
                layer.push(dir, ts, bytes);
                self.turns(cx, false);
            }
            return;
        }
        if let Some(layer) = &mut self.layer {
            layer.push(dir, ts, bytes);
            self.drain(cx, layers);
        } else {
            self.decode(cx, layers, dir, ts, bytes);
        }
    }

    /// Wire bytes of one direction are missing.
    pub fn gap(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, dir: Dir, ts: u64, gap: Gap) {
        self.ts = self.ts.max(ts);
        cx.stats.gaps += 1;
        cx.stats.gap_bytes += gap.len();
        if self.opaque {
            if let Some(layer) = &mut self.layer {
                layer.gap(dir, ts, gap);
            }
            return;
        }
        if let Some(layer) = &mut self.layer {
            layer.gap(dir, ts, gap);
            self.drain(cx, layers);
        } else {
            self.decoder.gap(cx, dir, ts, gap);
        }
    }

    /// Until when (capture time) the session's layer waits for keys that have not arrived,
    /// if it does.
    pub fn waiting_until(&self) -> Option<u64> {
        if self.opaque {
            return None;
        }
        self.layer.as_ref()?.waiting_until()
    }

    /// Capture time is `now`: a layer whose wait for keys is over gives up, and the session
    /// reports it (the session may be quiet, so no record of its own would ask).
    pub fn expire_wait(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, now: u64) {
        if self.waiting_until().is_some_and(|until| now > until)
            && let Some(layer) = &mut self.layer
        {
            layer.expire(now);
            self.ts = self.ts.max(now);
            self.drain(cx, layers);
        }
    }

    /// The layer reads the session and its segments should come whole.
    pub fn wants_whole(&self) -> bool {
        !self.opaque && self.layer.as_ref().is_some_and(|l| l.wants_whole())
    }

    /// Gives the layer another chance at what it holds (keys may have arrived since).
    pub fn retry(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers) {
        if self.layer.is_some() && !self.opaque {
            self.drain(cx, layers);
        }
    }

    /// The connection ended.
    pub fn close(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) {
        let mark = cx.out.len();
        self.decoder.close(cx, ts);
        self.mark_logins(cx, mark);
        self.report(cx, ts, true);
        self.turns(cx, true);
    }

    /// The turns the layer estimated, as records marked estimated.
    fn turns(&mut self, cx: &mut DecodeCtx<'_>, closing: bool) {
        let Some(layer) = &mut self.layer else { return };
        let mut turns: Vec<TurnFigures> = Vec::new();
        layer.turns(closing, &mut turns);
        for figures in turns {
            cx.out.push(Record::TlsExchange(TlsExchangeRecord {
                ts: cx.clock.at(figures.start_ns),
                endpoint: cx.endpoint.clone(),
                figures,
                estimated: true,
            }));
        }
    }

    /// Login records from `mark` on ran inside the layer: they carry its version and suite.
    /// After the protocol left the layer, those its decoder marks as made inside TLS do.
    fn mark_logins(&self, cx: &mut DecodeCtx<'_>, mark: usize) {
        let (negotiated, all) = match (&self.layer, &self.left) {
            (Some(layer), _) => (layer.negotiated(), true),
            (None, Some(left)) => (Some(left.clone()), false),
            (None, None) => return,
        };
        for r in &mut cx.out[mark..] {
            if let Record::Login(l) = r
                && (all || l.tls)
            {
                l.tls = true;
                if let Some((version, suite)) = &negotiated {
                    l.tls_version = Some(version.clone());
                    l.tls_suite = Some(suite.clone());
                }
            }
        }
    }

    /// The layer's report, once it has one.
    fn report(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, closing: bool) {
        let Some(layer) = &mut self.layer else { return };
        if let Some(info) = layer.report(closing, cx.stats) {
            cx.out.push(Record::Tls(TlsRecord {
                ts: cx.clock.at(ts),
                endpoint: cx.endpoint.clone(),
                info,
            }));
        }
    }

    /// Plaintext (or bytes before any switch) to the decoder, and what it says to do.
    fn decode(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, dir: Dir, ts: u64, bytes: &[u8]) {
        let mark = cx.out.len();
        let control = self.decoder.data(cx, dir, ts, bytes);
        if self.left.is_some() {
            self.mark_logins(cx, mark);
        }
        match control {
            // Not in a layer: nothing to stop.
            Control::Continue | Control::StopTls => {}
            Control::StartTls { at } | Control::StartTlsInPrelogin { at } => {
                cx.stats.tls_sessions += 1;
                let wrapped = matches!(control, Control::StartTlsInPrelogin { .. });
                // SQL Server's TLS may end after the login: its framing is followed even
                // when nothing can read the TLS.
                let layer = match (layers.tls(), wrapped) {
                    (Some(l), false) => Some(l),
                    (Some(l), true) => {
                        Some(Box::new(prelogin::PreloginFraming::new(l)) as Box<dyn Layer>)
                    }
                    (None, true) => Some(Box::new(prelogin::PreloginFraming::new(Box::new(
                        prelogin::Unread,
                    ))) as Box<dyn Layer>),
                    (None, false) => None,
                };
                match layer {
                    Some(mut layer) => {
                        let rest = bytes.get(at..).unwrap_or_default();
                        if !rest.is_empty() {
                            layer.push(dir, ts, rest);
                        }
                        self.layer = Some(layer);
                        self.drain(cx, layers);
                    }
                    None => self.opaque = true,
                }
            }
            Control::Opaque => {
                cx.stats.tls_sessions += 1;
                self.opaque = true;
            }
        }
    }

    /// Hands the layer's complete records to the decoder, requests first (a record of one
    /// direction may wait on the other's handshake, or on late keys, and the decoder pairs
    /// responses with the requests it has seen), until it has none or the decoder leaves
    /// the layer.
    fn drain(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers) {
        loop {
            let Some(layer) = &mut self.layer else {
                return;
            };
            if self.opaque {
                break;
            }
            let dir = match (
                layer.next_ts(Dir::Request, cx.stats),
                layer.next_ts(Dir::Response, cx.stats),
            ) {
                (None, None) => break,
                (Some(_), None) => Dir::Request,
                (None, Some(_)) => Dir::Response,
                (Some(a), Some(b)) => {
                    if a <= b {
                        Dir::Request
                    } else {
                        Dir::Response
                    }
                }
            };
            {
                let mut plain = std::mem::take(&mut self.plain);
                let Some(piece) = layer.next(dir, &mut plain, cx.stats) else {
                    self.plain = plain;
                    break;
                };
                let mark = cx.out.len();
                let layer_gave_up = matches!(piece, Piece::Opaque);
                let (ts, control) = match piece {
                    Piece::Data { ts } => (ts, self.decoder.data(cx, dir, ts, &plain)),
                    Piece::Gap { ts, gap } => {
                        self.decoder.gap(cx, dir, ts, gap);
                        (ts, Control::Continue)
                    }
                    // The wire itself left TLS: as if the decoder had said so.
                    Piece::Left { ts } => (ts, Control::StopTls),
                    Piece::Opaque => (self.ts, Control::Opaque),
                };
                self.plain = plain;
                self.mark_logins(cx, mark);
                match control {
                    // TLS inside TLS does not occur in these protocols.
                    Control::Continue
                    | Control::StartTls { .. }
                    | Control::StartTlsInPrelogin { .. } => {}
                    Control::StopTls => {
                        // What the layer saw is reported before it goes.
                        self.report(cx, ts, true);
                        let Some(layer) = self.layer.take() else {
                            return;
                        };
                        self.left = layer.negotiated();
                        let [request, response] = layer.finish();
                        for (d, rest) in [(Dir::Request, request), (Dir::Response, response)] {
                            if !rest.is_empty() {
                                self.decode(cx, layers, d, ts, &rest);
                            }
                        }
                        return;
                    }
                    Control::Opaque => {
                        // The decoder gave up inside the layer: the layer stays for its
                        // report, and takes nothing more.
                        if !layer_gave_up && let Some(layer) = &mut self.layer {
                            layer.stop();
                        }
                        self.opaque = true;
                        break;
                    }
                }
            }
        }
        self.report(cx, self.ts, false);
        if self.opaque {
            self.turns(cx, false);
        }
    }
}
