//! Packet framing of one direction (MS-TDS §2.2.3): an 8-byte header (type, status, length
//! with the header, SPID, packet id, window), messages continued over packets up to the one
//! with EOM. Works on any slicing of the stream; keeps the first `cap` bytes of a message's
//! payload and its last [`TAIL`] bytes (a reply's final tokens), counts the rest; skips gaps
//! that fall inside a packet of known length, and loses framing when a gap may hide a header.
//! While lost it keeps a bounded window of the bytes since and looks for a header its
//! [`Sink`] finds plausible, confirmed by the next header or by the window's end.

use super::wire::status;
use crate::decode::{DecodeCtx, Gap};

/// Header bytes.
pub(super) const HEADER: usize = 8;
/// Largest packet (§2.2.6.4: packet sizes up to 32767; 32768 allowed by some servers).
pub(super) const MAX_PACKET: usize = 32768;
/// Payload bytes kept at a message's end.
pub(super) const TAIL: usize = 2048;
/// Bytes kept while framing is lost.
const WINDOW: usize = 16 << 10;

/// One message (a request or a reply), as far as it was captured.
pub(super) struct Msg<'a> {
    pub(super) typ: u8,
    /// The first packet's status (RESETCONNECTION lives there).
    pub(super) status: u8,
    pub(super) spid: u16,
    /// When its first byte arrived, and its last.
    pub(super) start_ts: u64,
    pub(super) end_ts: u64,
    /// The captured start of the payload, contiguous from its first byte.
    pub(super) head: &'a [u8],
    /// The payload's last bytes, contiguous up to its end (empty when `whole`).
    pub(super) tail: &'a [u8],
    /// `head` is the whole payload.
    pub(super) whole: bool,
    /// Wire bytes (headers included).
    pub(super) wire: u64,
    /// Its start was lost (framing found again inside it).
    pub(super) cut: bool,
}

/// What a framer reports to.
pub(super) trait Sink {
    /// At a packet boundary, the next byte of the stream: `true` stops the framer here (the
    /// rest is TLS). Asked once per boundary with at least one byte.
    fn boundary(&mut self, _next: u8) -> bool {
        false
    }
    /// Whether a header is plausible here (phase, type, SPID).
    fn header_ok(&self, typ: u8, status: u8, len: usize, spid: u16) -> bool;
    /// A complete message (EOM seen).
    fn message(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>);
    /// Framing lost; `partial`: the message in progress.
    fn lost(&mut self, cx: &mut DecodeCtx<'_>, partial: Option<&Msg<'_>>);
    /// Framing found again (`first`: the first time, a mid-stream start).
    fn resynced(&mut self, cx: &mut DecodeCtx<'_>, first: bool);
    /// Bytes no message accounts for (while lost), and when the last arrived.
    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, _n: u64, _ts: u64) {}
}

/// The message being put together.
struct Build {
    typ: u8,
    status: u8,
    spid: u16,
    start_ts: u64,
    end_ts: u64,
    head: Vec<u8>,
    /// The head stopped growing (cap reached or a gap).
    head_closed: bool,
    tail: Vec<u8>,
    len: u64,
    wire: u64,
    cut: bool,
    eom: bool,
    /// The last packet's status (IGNORE comes with EOM).
    last_status: u8,
}

pub(super) struct Framer {
    cap: usize,
    hdr: [u8; HEADER],
    hdr_len: usize,
    /// Payload bytes left in the current packet.
    remaining: usize,
    msg: Option<Build>,
    lost: bool,
    window: Vec<u8>,
    /// When the window's bytes arrived: (offset just past a delivery, its time), so bytes
    /// parsed again keep their own times (a message's start is its first byte's).
    window_ts: Vec<(usize, u64)>,
    /// Framing has been had once (a mid-stream start's first find is no resync).
    synced: bool,
    /// The boundary's next byte was shown to the sink.
    asked: bool,
    /// Framing was just found again: the next message may have lost its start.
    resumed: bool,
    stopped: bool,
}

impl Framer {
    pub(super) fn new(cap: usize, mid_stream: bool) -> Self {
        Self {
            cap,
            hdr: [0; HEADER],
            hdr_len: 0,
            remaining: 0,
            msg: None,
            lost: mid_stream,
            window: Vec::new(),
            window_ts: Vec::new(),
            synced: !mid_stream,
            asked: false,
            resumed: false,
            stopped: false,
        }
    }

    /// Takes nothing more (the stream left for a layer, or is not TDS).
    pub(super) fn stop(&mut self) {
        self.stopped = true;
        self.msg = None;
        self.window = Vec::new();
        self.window_ts = Vec::new();
    }

    /// Starts again at the next byte, in sync (a layer gave back plaintext that starts at a
    /// packet boundary).
    pub(super) fn restart(&mut self) {
        *self = Self::new(self.cap, false);
    }

    /// In-order bytes. Returns `Some(at)` when the sink stopped the framer at offset `at`.
    pub(super) fn data(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        ts: u64,
        bytes: &[u8],
        sink: &mut impl Sink,
    ) -> Option<usize> {
        if self.stopped {
            return None;
        }
        if self.lost {
            self.keep(bytes, ts);
        } else {
            match self.run(cx, ts, bytes, sink, true) {
                Run::Done => return None,
                Run::Stop(at) => return Some(at),
                // The rest of `bytes` went to the window.
                Run::Lost => self.window_ts.push((self.window.len(), ts)),
            }
        }
        // Lost: look for a header in the window; what follows it is parsed again (and may
        // lose framing again, which puts its rest back into the window).
        loop {
            let Some(p) = self.find(sink) else {
                if self.window.len() > WINDOW {
                    let cut = self.window.len() - WINDOW / 2;
                    self.drop_window(cut);
                    sink.unframed(cx, cut as u64, ts);
                }
                return None;
            };
            sink.unframed(cx, p as u64, ts);
            self.drop_window(p);
            let replay = std::mem::take(&mut self.window);
            let times = std::mem::take(&mut self.window_ts);
            self.lost = false;
            let first = !self.synced;
            self.synced = true;
            self.resumed = true;
            sink.resynced(cx, first);
            // Each delivery's bytes again, at their own time; a loss of framing puts the
            // rest (this delivery's and the later ones') back into the window.
            let mut from = 0;
            let mut lost = false;
            for (end, t) in times {
                let chunk = &replay[from..end.min(replay.len())];
                from = end.min(replay.len());
                if lost {
                    self.keep(chunk, t);
                    continue;
                }
                match self.run(cx, t, chunk, sink, false) {
                    Run::Done | Run::Stop(_) => {}
                    Run::Lost => {
                        lost = true;
                        // `run` put the rest of this chunk in the window: date it.
                        self.window_ts.push((self.window.len(), t));
                    }
                }
            }
            if !lost {
                return None;
            }
        }
    }

    /// Keeps bytes received while lost, with their time.
    fn keep(&mut self, bytes: &[u8], ts: u64) {
        self.window.extend_from_slice(bytes);
        self.window_ts.push((self.window.len(), ts));
    }

    /// Drops the window's first `n` bytes.
    fn drop_window(&mut self, n: usize) {
        self.window.drain(..n);
        self.window_ts.retain_mut(|(end, _)| {
            *end = end.saturating_sub(n);
            *end > 0
        });
    }

    /// Parses `bytes` in sync. On a loss of framing, the bytes not yet parsed go to the
    /// window (from the second byte of a rejected header).
    fn run(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        ts: u64,
        bytes: &[u8],
        sink: &mut impl Sink,
        may_stop: bool,
    ) -> Run {
        let mut i = 0;
        while i < bytes.len() {
            if self.remaining == 0 && self.hdr_len == 0 && !self.asked && may_stop {
                self.asked = true;
                if sink.boundary(bytes[i]) {
                    self.asked = false;
                    return Run::Stop(i);
                }
            }
            if self.remaining == 0 {
                let n = (HEADER - self.hdr_len).min(bytes.len() - i);
                self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&bytes[i..i + n]);
                self.hdr_len += n;
                i += n;
                if self.hdr_len < HEADER {
                    break;
                }
                self.hdr_len = 0;
                self.asked = false;
                if !self.header(cx, ts, sink) {
                    let hdr = self.hdr;
                    self.lose(cx, sink);
                    self.window.extend_from_slice(&hdr[1..]);
                    self.window.extend_from_slice(&bytes[i..]);
                    return Run::Lost;
                }
                continue;
            }
            let n = self.remaining.min(bytes.len() - i);
            self.payload(&bytes[i..i + n], ts);
            self.remaining -= n;
            i += n;
            if self.remaining == 0 {
                self.packet_end(cx, sink);
            }
        }
        Run::Done
    }

    pub(super) fn gap(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, gap: Gap, sink: &mut impl Sink) {
        if self.stopped {
            return;
        }
        let n = gap.len();
        if self.lost {
            let held = self.window.len() as u64;
            self.window.clear();
            self.window_ts.clear();
            sink.unframed(cx, n + held, ts);
            return;
        }
        match gap {
            Gap::Exact(n) if self.hdr_len == 0 && (n as usize) <= self.remaining => {
                let n = n as usize;
                self.remaining -= n;
                if let Some(m) = &mut self.msg {
                    m.head_closed = true;
                    m.tail.clear();
                    m.len += n as u64;
                    m.wire += n as u64;
                    m.end_ts = ts;
                }
                if self.remaining == 0 {
                    self.packet_end(cx, sink);
                }
            }
            _ => {
                self.lose(cx, sink);
                sink.unframed(cx, n, ts);
            }
        }
    }

    fn header(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, sink: &mut impl Sink) -> bool {
        let h = self.hdr;
        let (typ, st) = (h[0], h[1]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let spid = u16::from_be_bytes([h[4], h[5]]);
        if !plausible(st, len) || !sink.header_ok(typ, st, len, spid) {
            return false;
        }
        match &mut self.msg {
            Some(m) if m.typ == typ => {
                m.wire += HEADER as u64;
                m.eom = st & status::EOM != 0;
                m.last_status = st;
            }
            Some(_) => {
                // A message of another type before the last one ended: the last one's end
                // was lost.
                cx.stats.malformed += 1;
                let partial = self.msg.take();
                if let Some(b) = &partial {
                    sink.lost(cx, Some(&b.view()));
                }
                self.resumed = false;
                self.msg = Some(Build::new(typ, st, spid, ts, false));
            }
            None => {
                // After a resync, a packet other than a message's first (packet id 1) continues
                // a message whose start was lost.
                let cut = std::mem::take(&mut self.resumed) && h[6] != 1;
                self.msg = Some(Build::new(typ, st, spid, ts, cut));
            }
        }
        self.remaining = len - HEADER;
        if self.remaining == 0 {
            self.packet_end(cx, sink);
        }
        true
    }

    fn payload(&mut self, b: &[u8], ts: u64) {
        let Some(m) = &mut self.msg else { return };
        m.len += b.len() as u64;
        m.wire += b.len() as u64;
        m.end_ts = ts;
        if !m.head_closed {
            let room = self.cap - m.head.len();
            m.head.extend_from_slice(&b[..b.len().min(room)]);
            if b.len() > room {
                m.head_closed = true;
                let rest = &b[room..];
                m.tail
                    .extend_from_slice(&rest[rest.len().saturating_sub(TAIL)..]);
            }
        } else {
            let keep = &b[b.len().saturating_sub(TAIL)..];
            let over = (m.tail.len() + keep.len()).saturating_sub(TAIL);
            m.tail.drain(..over.min(m.tail.len()));
            m.tail.extend_from_slice(keep);
        }
    }

    fn packet_end(&mut self, cx: &mut DecodeCtx<'_>, sink: &mut impl Sink) {
        let eom = self.msg.as_ref().is_some_and(|m| m.eom);
        if eom && let Some(m) = self.msg.take() {
            // IGNORE (with EOM): the sender withdrew the message (§2.2.3.1.2).
            if m.last_status & status::IGNORE == 0 || m.typ == 0x04 {
                sink.message(cx, &m.view());
            }
        }
    }

    fn lose(&mut self, cx: &mut DecodeCtx<'_>, sink: &mut impl Sink) {
        let partial = self.msg.take();
        sink.lost(cx, partial.as_ref().map(|b| b.view()).as_ref());
        self.lost = true;
        self.hdr_len = 0;
        self.remaining = 0;
        self.asked = false;
        self.window.clear();
        self.window_ts.clear();
    }

    /// While lost: where in the window a plausible header starts, confirmed by the header
    /// after its packet, or by the window ending exactly at its end, or (once in sync
    /// before) by being the window's first bytes.
    fn find(&self, sink: &impl Sink) -> Option<usize> {
        let w = &self.window;
        let mut p = 0;
        while p + HEADER <= w.len() {
            if let Some(len) = header_at(w, p, sink) {
                let next = p + len;
                if next == w.len()
                    || (next + HEADER <= w.len() && header_at(w, next, sink).is_some())
                    || (next > w.len() && p == 0 && self.synced)
                {
                    return Some(p);
                }
            }
            p += 1;
        }
        None
    }
}

/// How a run of bytes in sync ended.
enum Run {
    Done,
    Stop(usize),
    Lost,
}

impl Build {
    fn new(typ: u8, st: u8, spid: u16, ts: u64, cut: bool) -> Self {
        Self {
            typ,
            status: st,
            spid,
            start_ts: ts,
            end_ts: ts,
            head: Vec::new(),
            head_closed: false,
            tail: Vec::new(),
            len: 0,
            wire: HEADER as u64,
            cut,
            eom: st & status::EOM != 0,
            last_status: st,
        }
    }

    fn view(&self) -> Msg<'_> {
        let whole = !self.head_closed && self.head.len() as u64 == self.len;
        Msg {
            typ: self.typ,
            status: self.status,
            spid: self.spid,
            start_ts: self.start_ts,
            end_ts: self.end_ts,
            head: &self.head,
            tail: if whole { &[] } else { &self.tail },
            whole,
            wire: self.wire,
            cut: self.cut,
        }
    }
}

/// A header's status and length are possible.
fn plausible(st: u8, len: usize) -> bool {
    st & !status::ALL == 0 && (HEADER..=MAX_PACKET).contains(&len)
}

/// The packet length of a header at `p` the sink accepts.
fn header_at(w: &[u8], p: usize, sink: &impl Sink) -> Option<usize> {
    let h = w.get(p..p + HEADER)?;
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let spid = u16::from_be_bytes([h[4], h[5]]);
    // The window byte is 0 in every TDS version (§2.2.3.1.6).
    (plausible(h[1], len) && h[7] == 0 && sink.header_ok(h[0], h[1], len, spid)).then_some(len)
}
