//! SQL Server 7.x's way of carrying TLS (MS-TDS §3.2.5.2, §3.3.5.3): the handshake records
//! travel as the data of PRELOGIN packets (8-byte TDS header, type 0x12), and the records
//! after it go bare on the wire. With login-only encryption the client's LOGIN7 is the last
//! protected record: both sides then speak plain TDS again.
//!
//! [`PreloginFraming`] sits in front of the TLS layer: at each boundary of each direction
//! the first byte says what comes (0x12: a wrapped packet, whose header it takes off; 20 to
//! 23: a bare TLS record; anything else: a TDS packet in the clear — the wire left TLS). It
//! holds what comes after the wire left TLS (bounded), and once the layer has given all it
//! can of what came before, it tells the session ([`Piece::Left`]), which then hands the
//! held plaintext to the decoder — so a login-only session without keys still has its
//! queries decoded. A decoder that read the LOGIN7 says [`crate::decode::Control::StopTls`]
//! first.

use super::{Layer, Piece};
use crate::decode::{Dir, Gap};
use crate::model::{DecoderStats, TlsInfo, TurnFigures};

/// TDS packet header, and a TLS record header.
const TDS_HEADER: usize = 8;
const TLS_HEADER: usize = 5;
const PRELOGIN: u8 = 0x12;
/// Plaintext held per direction after the wire left TLS, while the layer still waits for
/// keys to read the login; past it the login is given up and the plaintext goes on.
const MAX_HELD: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// Between units: the next byte decides.
    Boundary,
    /// A PRELOGIN packet: its header being read, then `left` payload bytes (TLS).
    WrappedHeader,
    Wrapped,
    /// A bare TLS record: its header being read, then its body.
    RecordHeader,
    Record,
    /// The wire left TLS: everything from here is plaintext.
    Plain,
}

struct Side {
    unit: Unit,
    hdr: Vec<u8>,
    left: usize,
    plain: Vec<u8>,
    /// When the first plaintext byte came.
    plain_ts: Option<u64>,
}

impl Default for Side {
    fn default() -> Self {
        Self {
            unit: Unit::Boundary,
            hdr: Vec::new(),
            left: 0,
            plain: Vec::new(),
            plain_ts: None,
        }
    }
}

pub struct PreloginFraming {
    inner: Box<dyn Layer>,
    sides: [Side; 2],
    stash: [Option<(Piece, Vec<u8>)>; 2],
    spare: Vec<u8>,
    left_given: bool,
    /// Bare TLS records per side. With login-only encryption the client sends one (the
    /// LOGIN7) and the server none; more means the whole session is TLS.
    bare: [u32; 2],
}

fn idx(dir: Dir) -> usize {
    match dir {
        Dir::Request => 0,
        Dir::Response => 1,
    }
}

impl PreloginFraming {
    pub fn new(inner: Box<dyn Layer>) -> Self {
        Self {
            inner,
            sides: Default::default(),
            stash: [None, None],
            spare: Vec::new(),
            left_given: false,
            bare: [0, 0],
        }
    }

    /// When the wire left TLS (either side: the server answers the login in the clear
    /// before the client sends more).
    fn plain_since(&self) -> Option<u64> {
        match (self.sides[0].plain_ts, self.sides[1].plain_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The wire left TLS, and the layer has nothing more it can give before that (or too
    /// much plaintext waits on it).
    fn left(&self) -> Option<u64> {
        let ts = self.plain_since()?;
        (self.inner.waiting_until().is_none()
            || self.sides.iter().any(|s| s.plain.len() > MAX_HELD))
        .then_some(ts)
    }
}

impl Layer for PreloginFraming {
    fn push(&mut self, dir: Dir, ts: u64, wire: &[u8]) {
        let d = idx(dir);
        let mut i = 0;
        while i < wire.len() {
            let s = &mut self.sides[d];
            match s.unit {
                Unit::Plain => {
                    s.plain_ts.get_or_insert(ts);
                    s.plain.extend_from_slice(&wire[i..]);
                    return;
                }
                Unit::Boundary => {
                    s.unit = match wire[i] {
                        PRELOGIN => Unit::WrappedHeader,
                        20..=23 => {
                            self.bare[d] = self.bare[d].saturating_add(1);
                            Unit::RecordHeader
                        }
                        _ => Unit::Plain,
                    };
                }
                Unit::WrappedHeader | Unit::RecordHeader => {
                    let need = if s.unit == Unit::WrappedHeader {
                        TDS_HEADER
                    } else {
                        TLS_HEADER
                    };
                    let n = (need - s.hdr.len()).min(wire.len() - i);
                    s.hdr.extend_from_slice(&wire[i..i + n]);
                    i += n;
                    if s.hdr.len() < need {
                        return;
                    }
                    let h = std::mem::take(&mut s.hdr);
                    if s.unit == Unit::WrappedHeader {
                        s.left = usize::from(u16::from_be_bytes([h[2], h[3]]))
                            .saturating_sub(TDS_HEADER);
                        s.unit = Unit::Wrapped;
                    } else {
                        s.left = usize::from(u16::from_be_bytes([h[3], h[4]]));
                        s.unit = Unit::Record;
                        self.inner.push(dir, ts, &h);
                    }
                    if self.sides[d].left == 0 {
                        self.sides[d].unit = Unit::Boundary;
                    }
                }
                Unit::Wrapped | Unit::Record => {
                    let n = s.left.min(wire.len() - i);
                    s.left -= n;
                    if s.left == 0 {
                        s.unit = Unit::Boundary;
                    }
                    self.inner.push(dir, ts, &wire[i..i + n]);
                    i += n;
                }
            }
        }
    }

    fn gap(&mut self, dir: Dir, ts: u64, gap: Gap) {
        let s = &mut self.sides[idx(dir)];
        if s.unit == Unit::Plain {
            // Held plaintext with a hole: what follows cannot be framed from here.
            s.plain.clear();
            return;
        }
        match (gap, s.unit) {
            (Gap::Exact(n), Unit::Wrapped | Unit::Record) if n as usize <= s.left => {
                s.left -= n as usize;
                if s.left == 0 {
                    s.unit = Unit::Boundary;
                }
            }
            // The next unit's start is unknown: the layer finds its framing again.
            _ => {
                s.unit = Unit::Record;
                s.left = usize::MAX;
            }
        }
        self.inner.gap(dir, ts, gap);
    }

    fn next_ts(&mut self, dir: Dir, stats: &mut DecoderStats) -> Option<u64> {
        let d = idx(dir);
        if self.left_given {
            return None;
        }
        if self.stash[d].is_none() {
            // The plaintext buffers go round (session ↔ stash ↔ spare): none is made per record.
            let mut buf = std::mem::take(&mut self.spare);
            match self.inner.next(dir, &mut buf, stats) {
                // The layer gave up (no keys), but the wire left TLS: the rest is readable.
                Some(Piece::Opaque) if self.plain_since().is_some() => {
                    let ts = self.plain_since().unwrap_or(0);
                    self.stash[d] = Some((Piece::Left { ts }, buf));
                }
                // Gave up (no keys) before the wire showed whether TLS goes on past the
                // login: wait for the next unit.
                Some(Piece::Opaque) if self.bare[0] <= 1 && self.bare[1] == 0 => self.spare = buf,
                Some(p) => self.stash[d] = Some((p, buf)),
                None => match self.left() {
                    Some(ts) => self.stash[d] = Some((Piece::Left { ts }, buf)),
                    None => self.spare = buf,
                },
            }
        }
        self.stash[d].as_ref().map(|(p, _)| match p {
            Piece::Data { ts } | Piece::Gap { ts, .. } | Piece::Left { ts } => *ts,
            Piece::Opaque => 0,
        })
    }

    fn next(&mut self, dir: Dir, out: &mut Vec<u8>, stats: &mut DecoderStats) -> Option<Piece> {
        self.next_ts(dir, stats)?;
        let (piece, mut buf) = self.stash[idx(dir)].take()?;
        std::mem::swap(out, &mut buf);
        buf.clear();
        self.spare = buf;
        if matches!(piece, Piece::Left { .. }) {
            self.left_given = true;
        }
        Some(piece)
    }

    fn finish(self: Box<Self>) -> [Vec<u8>; 2] {
        let this = *self;
        let [mut a, mut b] = this.inner.finish();
        let [s0, s1] = this.sides;
        a.extend_from_slice(&s0.plain);
        b.extend_from_slice(&s1.plain);
        [a, b]
    }

    fn turns(&mut self, closing: bool, out: &mut Vec<TurnFigures>) {
        self.inner.turns(closing, out);
    }

    fn stop(&mut self) {
        self.inner.stop();
        for s in &mut self.sides {
            s.plain = Vec::new();
        }
    }

    fn expire(&mut self, now: u64) {
        self.inner.expire(now);
    }

    fn wants_whole(&self) -> bool {
        self.inner.wants_whole()
    }

    fn waiting_until(&self) -> Option<u64> {
        self.inner.waiting_until()
    }

    fn negotiated(&self) -> Option<(String, String)> {
        self.inner.negotiated()
    }

    fn report(&mut self, closing: bool, stats: &mut DecoderStats) -> Option<TlsInfo> {
        self.inner.report(closing, stats)
    }
}

/// The inner layer when there is no TLS reader at all (no key logs configured): it reads
/// nothing, so SQL Server's login-only sessions still come back to plaintext after the login.
pub struct Unread;

impl Layer for Unread {
    fn push(&mut self, _dir: Dir, _ts: u64, _wire: &[u8]) {}
    fn gap(&mut self, _dir: Dir, _ts: u64, _gap: Gap) {}
    fn next_ts(&mut self, _dir: Dir, _stats: &mut DecoderStats) -> Option<u64> {
        Some(0)
    }
    fn next(&mut self, _dir: Dir, _out: &mut Vec<u8>, _stats: &mut DecoderStats) -> Option<Piece> {
        Some(Piece::Opaque)
    }
    fn finish(self: Box<Self>) -> [Vec<u8>; 2] {
        [Vec::new(), Vec::new()]
    }
}
