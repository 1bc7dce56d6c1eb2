//! The per-connection session stack: what reassembly delivers (in-order bytes, gaps, the end)
//! goes through the connection's layer, when it has one, to its decoder.
//!
//! A decoder says where its protocol switches to TLS ([`Control::StartTls`], at an exact byte
//! of the call) and back ([`Control::StopTls`], SQL Server's login-only encryption). From
//! the switch on, both directions' wire bytes go to the layer [`Layers`] makes, and the
//! plaintext it gives back, record by record, goes on to the same decoder instance. Without
//! a layer (no TLS layer yet, or no keys), the session is counted (`tls_sessions`) and
//! nothing more is decoded. A layer's lost record is a [`Gap::AtMost`]: the decoder must find
//! its framing again.

mod layer;

#[cfg(test)]
mod tests;

pub use layer::{Layer, Layers, Piece};

use crate::decode::{Control, DecodeCtx, Decoder, Dir, Gap};

/// One connection's stack. `D` is `dyn Decoder` in the pipeline; tests name the decoder.
pub struct Session<D: Decoder + ?Sized = dyn Decoder> {
    layer: Option<Box<dyn Layer>>,
    /// Encrypted, and nothing reads it: nothing more reaches the decoder.
    opaque: bool,
    /// A layer's plaintext, reused.
    plain: Vec<u8>,
    decoder: Box<D>,
}

impl<D: Decoder + ?Sized> Session<D> {
    pub fn new(decoder: Box<D>) -> Self {
        Self {
            layer: None,
            opaque: false,
            plain: Vec::new(),
            decoder,
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
        if self.opaque {
            return;
        }
        if let Some(layer) = &mut self.layer {
            layer.push(dir, ts, bytes);
            self.drain(cx, layers, dir);
        } else {
            self.decode(cx, layers, dir, ts, bytes);
        }
    }

    /// Wire bytes of one direction are missing.
    pub fn gap(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, dir: Dir, ts: u64, gap: Gap) {
        cx.stats.gaps += 1;
        cx.stats.gap_bytes += gap.len();
        if self.opaque {
            return;
        }
        if let Some(layer) = &mut self.layer {
            layer.gap(dir, ts, gap);
            self.drain(cx, layers, dir);
        } else {
            self.decoder.gap(cx, dir, ts, gap);
        }
    }

    /// The connection ended.
    pub fn close(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) {
        self.decoder.close(cx, ts);
    }

    /// Plaintext (or bytes before any switch) to the decoder, and what it says to do.
    fn decode(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, dir: Dir, ts: u64, bytes: &[u8]) {
        match self.decoder.data(cx, dir, ts, bytes) {
            // Not in a layer: nothing to stop.
            Control::Continue | Control::StopTls => {}
            Control::StartTls { at } => {
                cx.stats.tls_sessions += 1;
                match layers.tls() {
                    Some(mut layer) => {
                        let rest = bytes.get(at..).unwrap_or_default();
                        if !rest.is_empty() {
                            layer.push(dir, ts, rest);
                        }
                        self.layer = Some(layer);
                        self.drain(cx, layers, dir);
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

    /// Hands the layer's complete records of `dir` to the decoder, until it has none or the
    /// decoder leaves the layer.
    fn drain(&mut self, cx: &mut DecodeCtx<'_>, layers: &Layers, dir: Dir) {
        while let Some(layer) = &mut self.layer {
            let mut plain = std::mem::take(&mut self.plain);
            let Some(piece) = layer.next(dir, &mut plain) else {
                self.plain = plain;
                return;
            };
            let (ts, control) = match piece {
                Piece::Data { ts } => (ts, self.decoder.data(cx, dir, ts, &plain)),
                Piece::Gap { ts, gap } => {
                    self.decoder.gap(cx, dir, ts, gap);
                    (ts, Control::Continue)
                }
            };
            self.plain = plain;
            match control {
                // TLS inside TLS does not occur in these protocols.
                Control::Continue | Control::StartTls { .. } => {}
                Control::StopTls => {
                    let Some(layer) = self.layer.take() else {
                        return;
                    };
                    let [request, response] = layer.finish();
                    for (d, rest) in [(Dir::Request, request), (Dir::Response, response)] {
                        if !rest.is_empty() {
                            self.decode(cx, layers, d, ts, &rest);
                        }
                    }
                    return;
                }
                Control::Opaque => {
                    self.layer = None;
                    self.opaque = true;
                    return;
                }
            }
        }
    }
}
