//! Message framing for one direction: turns arbitrarily sliced bytes and gaps into whole
//! messages, keeping only the body bytes the decoder reads (bounded) and skipping the rest
//! without buffering it (a 1 GiB DataRow costs its header).
//!
//! In sync, a gap inside a message body is skipped (the length is known) and the message is
//! marked incomplete. A gap that reaches past the current message, a gap where a header was
//! due, or a header that cannot be (type not valid for the direction, length outside the
//! bounds for the type: see [`super::messages::body_bounds`]) loses framing; the message cut by
//! the gap is still reported (incomplete). Out of sync, bytes go to a bounded scan buffer
//! ([`SCAN_CAP`]), searched for the first offset that starts a plausible chain of messages
//! ([`check_chain`]: two complete messages with enough evidence, or a message peers flush
//! after, such as ReadyForQuery, Sync or a Query, ending exactly where the bytes at hand end).
//! A gap arriving out of sync accepts the first candidate whose last, partial message lacks
//! exactly the gap's length (segments end where messages do more often than not). The
//! buffered bytes from the boundary on are replayed with their original timestamps.
//! `resyncs` counts boundaries found after a loss, `skipped_bytes` the bytes dropped on the
//! way, `malformed` impossible headers.

use super::messages::{
    MAX_STARTUP, SCAN_MAX_BODY, be32, body_bounds, keep_len, plausible_body, strength, valid_type,
};
use crate::{decode::Dir, model::DecoderStats};
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;

/// Bytes held while hunting for a boundary.
pub const SCAN_CAP: usize = 64 << 10;
/// Timestamped pieces the scan buffer remembers; older pieces merge into their predecessor.
const MAX_CHUNKS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `type length body`.
    Typed,
    /// Start-up packets: `length body`.
    Untyped,
    /// The server's one-byte answer to SSLRequest / GSSENCRequest ('S', 'G' or 'N'); any
    /// other byte starts a typed message (an old server's ErrorResponse).
    Answer,
}

/// One framed message, its kept body borrowed: from the segment's own bytes (a message
/// whole in one delivery, [`Framer::take_whole`]) or from a buffered [`OwnedMsg`].
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// Type byte; 0 for an untyped start-up packet.
    pub typ: u8,
    /// The one-byte answer to an encryption request.
    pub answer: bool,
    /// Bytes on the wire, type byte and length word included.
    pub wire_len: u64,
    pub body_len: u64,
    /// The kept prefix of the body.
    pub body: &'a [u8],
    /// The whole body is in `body` (not cut by a gap or the keep limit).
    pub complete: bool,
    /// Timestamps of the segments holding the first and the last byte.
    pub start_ts: u64,
    pub end_ts: u64,
}

/// A message assembled across deliveries or gaps: its kept body buffered.
#[derive(Debug)]
pub struct OwnedMsg {
    pub typ: u8,
    pub answer: bool,
    pub wire_len: u64,
    pub body_len: u64,
    pub body: Vec<u8>,
    pub complete: bool,
    pub start_ts: u64,
    pub end_ts: u64,
}

impl OwnedMsg {
    pub fn as_msg(&self) -> Msg<'_> {
        Msg {
            typ: self.typ,
            answer: self.answer,
            wire_len: self.wire_len,
            body_len: self.body_len,
            body: &self.body,
            complete: self.complete,
            start_ts: self.start_ts,
            end_ts: self.end_ts,
        }
    }
}

#[derive(Debug)]
pub enum Ev {
    Msg(OwnedMsg),
    /// Framing lost; `malformed` when a header was impossible (rather than a gap).
    Lost {
        malformed: bool,
    },
    /// Framing found (again); messages follow. `ts`: the first byte's timestamp; `dropped`:
    /// the timestamp of the latest bytes lost or dropped on the way (always set after a loss;
    /// after a mid-stream start, when the first boundary was not where the bytes began).
    /// `lost_bytes`: bytes lost or dropped since sync was lost.
    Synced {
        ts: u64,
        dropped: Option<u64>,
        lost_bytes: u64,
    },
}

enum St {
    Header {
        buf: [u8; 5],
        have: usize,
        start_ts: u64,
    },
    Body {
        typ: u8,
        untyped: bool,
        body_len: u64,
        remaining: u64,
        keep: usize,
        body: Vec<u8>,
        holed: bool,
        start_ts: u64,
    },
}

const FRESH: St = St::Header {
    buf: [0; 5],
    have: 0,
    start_ts: 0,
};

pub struct Framer {
    dir: Dir,
    pub mode: Mode,
    /// Bytes kept of PasswordMessage-type ('p') bodies: the SASL mechanism's name while its
    /// choice is expected, a cleartext password while one is (only to tell an IAM token, see
    /// `kit::iam`); otherwise none, and password bytes are never buffered.
    pub keep_password: usize,
    st: St,
    lost: bool,
    /// Out of sync since the start (joined mid-stream): finding sync is not a resync.
    initial: bool,
    /// Timestamp of the latest bytes dropped since sync was lost (or since the start).
    dropped: Option<u64>,
    /// Bytes lost (gaps) or dropped since sync was lost.
    lost_bytes: u64,
    /// Bytes held while looking for a message boundary; consumed from the front, so a
    /// `BytesMut` (`advance` is O(1)) rather than a `Vec` (`drain(..k)` moves the rest).
    scan: BytesMut,
    /// (offset in `scan`, timestamp) of each delivered piece.
    chunks: VecDeque<(usize, u64)>,
    /// A small body buffer handed back by the decoder ([`Framer::recycle`]), reused for the
    /// next message that keeps bytes: most messages (rows) keep a few, and an allocation
    /// each cost more than the rest of their framing.
    spare: Vec<u8>,
}

/// Largest body buffer kept for reuse.
const SPARE_CAP: usize = 4096;

/// Verdict on a candidate boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    Reject,
    Undecided,
    Accept,
}

/// Whether `buf` starts with a plausible chain of messages: every header in it valid for the
/// direction with a body length in bounds (and small: [`SCAN_MAX_BODY`]), every body passing
/// the content checks for its type. Accepted with at least two complete messages worth 3
/// points together ([`strength`]), or a message a peer flushes after (ReadyForQuery; Query,
/// Sync, Flush, Terminate) ending exactly at the end of the bytes at hand. Undecided while
/// the chain runs off the end of `buf`.
pub fn check_chain(dir: Dir, buf: &[u8]) -> Chain {
    walk(dir, buf).0
}

/// [`check_chain`], and for a chain that is undecided because its last message runs past
/// the end of `buf`, how many bytes that message still lacks (when the chain shows some
/// substance: a complete message before it, or four bytes of its body).
fn walk(dir: Dir, buf: &[u8]) -> (Chain, Option<u64>) {
    let mut off = 0usize;
    let mut points = 0u32;
    let mut msgs = 0u32;
    loop {
        if buf.len() - off < 5 {
            return (Chain::Undecided, None);
        }
        let t = buf[off];
        let len = be32(&buf[off + 1..]) as u64;
        if !valid_type(dir, t) || len < 4 {
            return (Chain::Reject, None);
        }
        let body_len = len - 4;
        let (lo, hi) = body_bounds(dir, t);
        if body_len < lo || body_len > hi.min(SCAN_MAX_BODY) {
            return (Chain::Reject, None);
        }
        let end = (off + 5 + body_len as usize).min(buf.len());
        let avail = &buf[off + 5..end];
        if !plausible_body(dir, t, avail, body_len) {
            return (Chain::Reject, None);
        }
        if (avail.len() as u64) < body_len {
            let short = (msgs > 0 || avail.len() >= 4).then_some(body_len - avail.len() as u64);
            return (Chain::Undecided, short);
        }
        points += strength(dir, t, avail);
        msgs += 1;
        if msgs >= 2 && points >= 3 {
            return (Chain::Accept, None);
        }
        // Peers flush after these: one ending exactly where the bytes at hand end is a
        // boundary (a lone Query, the Sync closing a batch, a ReadyForQuery).
        let flushed = match dir {
            Dir::Response => t == b'Z',
            Dir::Request => matches!(t, b'S' | b'H' | b'X') || (t == b'Q' && avail.len() >= 2),
        };
        if flushed && end == buf.len() {
            return (Chain::Accept, None);
        }
        off = end;
    }
}

/// The wire length of a response message of type `typ` (a DataRow or a CopyData) whole at
/// the start of `b` (its header in bounds: `bounds` is `body_bounds(Dir::Response, typ)`),
/// if one is.
#[inline]
pub fn run_len(typ: u8, bounds: (u64, u64), b: &[u8]) -> Option<usize> {
    if b.len() < 5 || b[0] != typ {
        return None;
    }
    let body_len = (be32(&b[1..5]) as u64).checked_sub(4)?;
    let (lo, hi) = bounds;
    (body_len >= lo && body_len <= hi && body_len <= (b.len() - 5) as u64)
        .then_some(5 + body_len as usize)
}

impl Framer {
    /// A framer in sync (`lost` false) or hunting for its first boundary (mid-stream).
    pub fn new(dir: Dir, mode: Mode, lost: bool) -> Self {
        Self {
            dir,
            mode,
            keep_password: 0,
            st: FRESH,
            lost,
            initial: lost,
            dropped: None,
            lost_bytes: 0,
            scan: BytesMut::new(),
            chunks: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Takes back the body of a message the decoder is done with, for reuse.
    pub fn recycle(&mut self, mut body: Vec<u8>) {
        if body.capacity() > self.spare.capacity() && body.capacity() <= SPARE_CAP {
            body.clear();
            self.spare = body;
        }
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// In sync, between two messages.
    pub fn at_boundary(&self) -> bool {
        !self.lost && matches!(self.st, St::Header { have: 0, .. })
    }

    /// Back in sync at a boundary, forgetting anything buffered.
    pub fn reset(&mut self, mode: Mode) {
        self.mode = mode;
        self.st = FRESH;
        self.lost = false;
        self.initial = false;
        self.dropped = None;
        self.lost_bytes = 0;
        self.scan = BytesMut::new();
        self.chunks.clear();
    }

    /// The message at the start of `b` when it is whole there and the framer is in sync,
    /// typed, between two messages: framed in place (its kept body borrowed from `b`,
    /// nothing buffered or queued), exactly as [`Framer::push`] would have framed it. `None`
    /// otherwise (a message straddling deliveries, a header to check the slow way, another
    /// mode): then [`Framer::push`] takes over.
    #[inline]
    pub fn take_whole<'a>(&self, b: &'a [u8], ts: u64) -> Option<Msg<'a>> {
        if self.lost
            || self.mode != Mode::Typed
            || !matches!(self.st, St::Header { have: 0, .. })
            || b.len() < 5
        {
            return None;
        }
        let typ = b[0];
        let len = be32(&b[1..5]);
        if len < 4 || !valid_type(self.dir, typ) {
            return None;
        }
        let body_len = len as u64 - 4;
        let (lo, hi) = body_bounds(self.dir, typ);
        if body_len < lo || body_len > hi || body_len > (b.len() - 5) as u64 {
            return None;
        }
        let keep = if typ == b'p' && self.dir == Dir::Request {
            self.keep_password
        } else {
            keep_len(self.dir, typ)
        }
        .min(body_len as usize);
        Some(Msg {
            typ,
            answer: false,
            wire_len: body_len + 5,
            body_len,
            body: &b[5..5 + keep],
            complete: keep as u64 == body_len,
            start_ts: ts,
            end_ts: ts,
        })
    }

    /// Consumes a prefix of `b` (in sync: up to the end of one message, so the decoder can
    /// change the mode between messages) and returns its length.
    pub fn push(
        &mut self,
        b: &[u8],
        ts: u64,
        out: &mut VecDeque<Ev>,
        stats: &mut DecoderStats,
    ) -> usize {
        if b.is_empty() {
            return 0;
        }
        if self.lost {
            let n = b.len().min(SCAN_CAP / 2);
            self.scan_append(&b[..n], ts, stats);
            self.try_resync(out, stats);
            return n;
        }
        self.push_normal(b, ts, out, stats)
    }

    /// `len` bytes are missing here.
    pub fn gap(&mut self, len: u64, out: &mut VecDeque<Ev>, stats: &mut DecoderStats, ts: u64) {
        if self.lost {
            // A chain whose last message lacks exactly the bytes the gap covers is a boundary
            // (segments often end where messages do: a mirror's packet-length cut, or the
            // kernel's payload cap, leaves such gaps).
            if self.gap_completes_chain(len, stats) {
                self.accept(out, stats);
            }
            if self.lost {
                self.gap_while_lost(len, stats, ts);
                return;
            }
        }
        match &mut self.st {
            St::Body {
                remaining, holed, ..
            } if *remaining >= len => {
                *remaining -= len;
                *holed = true;
                if *remaining == 0 {
                    self.finish(ts, out);
                }
            }
            St::Body {
                remaining, holed, ..
            } => {
                // The message started here ends inside the gap: report what we have of it,
                // then whatever follows is of unknown framing.
                let beyond = len - *remaining;
                *remaining = 0;
                *holed = true;
                self.finish(ts, out);
                self.go_lost(out, false, ts);
                self.lost_bytes += beyond;
            }
            St::Header { have, .. } => {
                let have = *have as u64;
                self.st = FRESH;
                self.go_lost(out, false, ts);
                self.skip_bytes(have, stats);
                self.lost_bytes += len;
            }
        }
    }

    /// At most `len` bytes are missing, exactly how many is unknown: a message in progress
    /// ends there (incomplete), and framing must be found again after it.
    pub fn gap_unknown(
        &mut self,
        len: u64,
        out: &mut VecDeque<Ev>,
        stats: &mut DecoderStats,
        ts: u64,
    ) {
        if self.lost {
            self.gap_while_lost(len, stats, ts);
            return;
        }
        match &mut self.st {
            St::Body {
                remaining, holed, ..
            } => {
                *remaining = 0;
                *holed = true;
                self.finish(ts, out);
            }
            St::Header { have, .. } => {
                let have = *have as u64;
                self.st = FRESH;
                self.skip_bytes(have, stats);
            }
        }
        self.go_lost(out, false, ts);
        self.lost_bytes += len;
    }

    /// A gap while hunting for a boundary: what was being scanned is not contiguous with what
    /// follows, so it is given up.
    fn gap_while_lost(&mut self, len: u64, stats: &mut DecoderStats, ts: u64) {
        self.skip_bytes(self.scan.len() as u64, stats);
        self.lost_bytes += len;
        self.note_drop(ts);
        self.scan.clear();
        self.chunks.clear();
    }

    /// Delivered bytes that will never be part of a message.
    fn skip_bytes(&mut self, n: u64, stats: &mut DecoderStats) {
        stats.skipped_bytes += n;
        self.lost_bytes += n;
    }

    fn note_drop(&mut self, ts: u64) {
        let last = self.chunks.back().map_or(0, |c| c.1);
        self.dropped = Some(self.dropped.unwrap_or(0).max(ts).max(last));
    }

    fn go_lost(&mut self, out: &mut VecDeque<Ev>, malformed: bool, ts: u64) {
        self.lost = true;
        self.lost_bytes = 0;
        self.note_drop(ts);
        self.mode = Mode::Typed;
        self.st = FRESH;
        out.push_back(Ev::Lost { malformed });
    }

    fn finish(&mut self, ts: u64, out: &mut VecDeque<Ev>) {
        let st = std::mem::replace(&mut self.st, FRESH);
        if let St::Body {
            typ,
            untyped,
            body_len,
            body,
            holed,
            start_ts,
            ..
        } = st
        {
            out.push_back(Ev::Msg(OwnedMsg {
                typ,
                answer: false,
                wire_len: body_len + if untyped { 4 } else { 5 },
                body_len,
                complete: !holed && body.len() as u64 == body_len,
                body,
                start_ts,
                end_ts: ts,
            }));
        }
    }

    fn push_normal(
        &mut self,
        b: &[u8],
        ts: u64,
        out: &mut VecDeque<Ev>,
        stats: &mut DecoderStats,
    ) -> usize {
        let mut pos = 0;
        while pos < b.len() {
            match &mut self.st {
                St::Header {
                    buf,
                    have,
                    start_ts,
                } => {
                    if *have == 0 {
                        *start_ts = ts;
                        if self.mode == Mode::Answer {
                            let c = b[pos];
                            if matches!(c, b'S' | b'N' | b'G') {
                                out.push_back(Ev::Msg(OwnedMsg {
                                    typ: c,
                                    answer: true,
                                    wire_len: 1,
                                    body_len: 0,
                                    body: Vec::new(),
                                    complete: true,
                                    start_ts: ts,
                                    end_ts: ts,
                                }));
                                return pos + 1;
                            }
                            self.mode = Mode::Typed;
                        }
                    }
                    let untyped = self.mode == Mode::Untyped;
                    let need = if untyped { 4 } else { 5 };
                    let n = (need - *have).min(b.len() - pos);
                    buf[*have..*have + n].copy_from_slice(&b[pos..pos + n]);
                    *have += n;
                    pos += n;
                    if *have < need {
                        return pos;
                    }
                    let (typ, len) = if untyped {
                        (0, be32(&buf[..4]))
                    } else {
                        (buf[0], be32(&buf[1..5]))
                    };
                    let body_len = (len as u64).saturating_sub(4);
                    let ok = if untyped {
                        (8..=MAX_STARTUP).contains(&len)
                    } else {
                        let (lo, hi) = body_bounds(self.dir, typ);
                        valid_type(self.dir, typ) && len >= 4 && (lo..=hi).contains(&body_len)
                    };
                    let start = *start_ts;
                    if !ok {
                        stats.malformed += 1;
                        // The boundary may be anywhere after this header's first byte.
                        let rest = buf[1..need].to_vec();
                        self.go_lost(out, true, start);
                        self.scan_append(&rest, start, stats);
                        self.skip_bytes(1, stats);
                        return pos;
                    }
                    let keep = if untyped {
                        MAX_STARTUP as usize
                    } else if typ == b'p' && self.dir == Dir::Request {
                        self.keep_password
                    } else {
                        keep_len(self.dir, typ)
                    }
                    .min(body_len as usize);
                    self.st = St::Body {
                        typ,
                        untyped,
                        body_len,
                        remaining: body_len,
                        keep,
                        body: if keep == 0 {
                            Vec::new()
                        } else {
                            let mut body = std::mem::take(&mut self.spare);
                            body.reserve(keep.min(SPARE_CAP));
                            body
                        },
                        holed: false,
                        start_ts: start,
                    };
                    if body_len == 0 {
                        self.finish(ts, out);
                        return pos;
                    }
                }
                St::Body {
                    remaining,
                    keep,
                    body,
                    holed,
                    ..
                } => {
                    let n = (*remaining).min((b.len() - pos) as u64) as usize;
                    if !*holed && body.len() < *keep {
                        let k = n.min(*keep - body.len());
                        body.extend_from_slice(&b[pos..pos + k]);
                    }
                    *remaining -= n as u64;
                    pos += n;
                    if *remaining == 0 {
                        self.finish(ts, out);
                    }
                    return pos;
                }
            }
        }
        pos
    }

    fn scan_append(&mut self, b: &[u8], ts: u64, stats: &mut DecoderStats) {
        if b.is_empty() {
            return;
        }
        if self.chunks.back().is_none_or(|c| c.1 != ts) || self.scan.is_empty() {
            if self.scan.is_empty() {
                self.chunks.clear();
            }
            self.chunks.push_back((self.scan.len(), ts));
        }
        self.scan.extend_from_slice(b);
        if self.scan.len() > SCAN_CAP {
            let drop = self.scan.len() - SCAN_CAP;
            self.skip_bytes(drop as u64, stats);
            self.drain(drop);
        }
        if self.chunks.len() > MAX_CHUNKS {
            // Merge the second-oldest piece into the oldest.
            self.chunks.remove(1);
        }
    }

    /// Forgets the first `k` scanned bytes.
    fn drain(&mut self, k: usize) {
        if k > 0 {
            let ts = self
                .chunks
                .iter()
                .take_while(|c| c.0 < k)
                .last()
                .map_or(0, |c| c.1);
            self.dropped = Some(self.dropped.unwrap_or(0).max(ts));
        }
        self.scan.advance(k);
        while self.chunks.len() > 1 && self.chunks[1].0 <= k {
            self.chunks.pop_front();
        }
        for (i, c) in self.chunks.iter_mut().enumerate() {
            c.0 = if i == 0 { 0 } else { c.0 - k };
        }
        if self.scan.is_empty() {
            self.chunks.clear();
        }
    }

    fn try_resync(&mut self, out: &mut VecDeque<Ev>, stats: &mut DecoderStats) {
        while self.lost && !self.scan.is_empty() {
            let mut found = None;
            for i in 0..self.scan.len() {
                if self.cannot_start(i) {
                    continue;
                }
                match check_chain(self.dir, &self.scan[i..]) {
                    Chain::Reject => {}
                    v => {
                        found = Some((i, v));
                        break;
                    }
                }
            }
            let Some((i, verdict)) = found else {
                self.note_drop(0);
                self.skip_bytes(self.scan.len() as u64, stats);
                self.scan.clear();
                self.chunks.clear();
                return;
            };
            if i > 0 {
                self.skip_bytes(i as u64, stats);
                self.drain(i);
            }
            if verdict == Chain::Undecided && self.scan.len() < SCAN_CAP {
                return;
            }
            self.accept(out, stats);
        }
    }

    /// Whether the first candidate boundary in the scan buffer starts a chain whose last
    /// message lacks exactly `len` bytes; if so the bytes before it are dropped.
    fn gap_completes_chain(&mut self, len: u64, stats: &mut DecoderStats) -> bool {
        for i in 0..self.scan.len() {
            if self.cannot_start(i) {
                continue;
            }
            match walk(self.dir, &self.scan[i..]) {
                (Chain::Reject, _) => {}
                (_, short) => {
                    if short != Some(len) {
                        return false;
                    }
                    if i > 0 {
                        self.skip_bytes(i as u64, stats);
                        self.drain(i);
                    }
                    return true;
                }
            }
        }
        false
    }

    /// What [`walk`] says first of most offsets, without the call: a whole header there whose
    /// type byte is not one of the direction's, or whose length is below 4 or above
    /// [`SCAN_MAX_BODY`] + 4 (most offsets inside text), rejects the offset.
    #[inline]
    fn cannot_start(&self, i: usize) -> bool {
        let Some(h) = self.scan.get(i..i + 5) else {
            return false;
        };
        if !valid_type(self.dir, h[0]) {
            return true;
        }
        let len = be32(&h[1..5]) as u64;
        len < 4 || len - 4 > SCAN_MAX_BODY
    }

    /// In sync at the start of the scan buffer: replays it (framing may be lost again).
    fn accept(&mut self, out: &mut VecDeque<Ev>, stats: &mut DecoderStats) {
        self.lost = false;
        if !self.initial {
            stats.resyncs += 1;
        }
        out.push_back(Ev::Synced {
            ts: self.chunks.front().map_or(0, |c| c.1),
            dropped: self.dropped.take(),
            lost_bytes: std::mem::take(&mut self.lost_bytes),
        });
        self.initial = false;
        self.mode = Mode::Typed;
        self.st = FRESH;
        let buf = std::mem::take(&mut self.scan);
        let chunks: Vec<(usize, u64)> = std::mem::take(&mut self.chunks).into();
        for (k, &(start, ts)) in chunks.iter().enumerate() {
            let end = chunks.get(k + 1).map_or(buf.len(), |c| c.0);
            let mut p = start;
            while p < end {
                if self.lost {
                    self.scan_append(&buf[p..end], ts, stats);
                    break;
                }
                p += self.push_normal(&buf[p..end], ts, out, stats);
            }
        }
    }
}
