//! A layer between the wire and a decoder: it takes one connection's wire bytes and gives back
//! the plaintext inside (TLS, once keys can be had), record by record.

use crate::decode::{Dir, Gap};
use crate::model::{DecoderStats, TlsInfo, TurnFigures};

/// What a layer gives back, one record's worth at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Plaintext (written to the caller's buffer) of a record complete at `ts`.
    Data { ts: u64 },
    /// Plaintext that cannot be had (a lost or unreadable record).
    Gap { ts: u64, gap: Gap },
    /// The wire left the layer at `ts` (SQL Server's login-only encryption, seen on the wire
    /// itself): what follows is plaintext, which [`Layer::finish`] gives back.
    Left { ts: u64 },
    /// Nothing more of the session can be read (no keys, a suite or version without a
    /// reader, not TLS at all): the session stops decoding; the layer's report says why.
    Opaque,
}

/// One connection's layer. Wire bytes go in per direction; whole records come out in order.
/// A layer holds at most what one record needs per direction, plus what it counts and drops.
pub trait Layer: Send {
    /// In-order wire bytes of one direction.
    fn push(&mut self, dir: Dir, ts: u64, wire: &[u8]);
    /// Wire bytes of one direction are missing.
    fn gap(&mut self, dir: Dir, ts: u64, gap: Gap);
    /// When the next piece of one direction completed, if one can be had now (it is made
    /// ready, not taken): the session hands both directions' pieces to the decoder in time
    /// order, as they were on the wire, even when they were held (late keys).
    fn next_ts(&mut self, dir: Dir, stats: &mut DecoderStats) -> Option<u64>;
    /// The next piece of one direction, if one is complete; plaintext goes to `out` (cleared
    /// first). What it opens and loses is counted in `stats`.
    fn next(&mut self, dir: Dir, out: &mut Vec<u8>, stats: &mut DecoderStats) -> Option<Piece>;
    /// The protocol left the layer: the wire bytes it holds past its last whole record, per
    /// direction (request, response). They are plaintext.
    fn finish(self: Box<Self>) -> [Vec<u8>; 2];
    /// Turns estimated since the last call (a session the layer cannot read: from record
    /// boundaries); with `closing`, the one in progress too.
    fn turns(&mut self, _closing: bool, _out: &mut Vec<TurnFigures>) {}
    /// The decoder stopped reading the session (an encryption inside the layer's, or the
    /// end of the protocol): take nothing more and let go of what is held.
    fn stop(&mut self) {}
    /// Capture time is `now`: a wait for keys past its end gives up (the session went quiet
    /// while it waited, so no new record asked).
    fn expire(&mut self, _now: u64) {}
    /// The layer needs the session's segments whole (a TLS record cut by the payload cap is
    /// lost): the capture is asked to send them whole.
    fn wants_whole(&self) -> bool {
        false
    }
    /// Until when (capture time) the layer holds records for keys that have not arrived.
    fn waiting_until(&self) -> Option<u64> {
        None
    }
    /// The negotiated version and suite, once known: login records inside carry them.
    fn negotiated(&self) -> Option<(String, String)> {
        None
    }
    /// What the layer saw of the session, once: as soon as it knows whether it can read it,
    /// or (`closing`) when the session ends. Counts the outcome in `stats`.
    fn report(&mut self, _closing: bool, _stats: &mut DecoderStats) -> Option<TlsInfo> {
        None
    }
}

/// Makes the layer a session asks for. The TLS layer plugs in here (one entry): it needs the
/// key store, so the agent builds this once and every connection's session shares it.
#[derive(Clone, Default)]
pub struct Layers {
    /// Shared: the live agent's worker threads each hold the same maker.
    tls: Option<std::sync::Arc<dyn Fn() -> Box<dyn Layer> + Send + Sync>>,
}

impl Layers {
    /// No layer: a session that switches to TLS is counted and not decoded further.
    pub fn none() -> Self {
        Self::default()
    }

    /// With a TLS layer made by `make` for each connection that switches.
    pub fn with_tls(make: impl Fn() -> Box<dyn Layer> + Send + Sync + 'static) -> Self {
        Self {
            tls: Some(std::sync::Arc::new(make)),
        }
    }

    pub(super) fn tls(&self) -> Option<Box<dyn Layer>> {
        self.tls.as_ref().map(|make| make())
    }
}
