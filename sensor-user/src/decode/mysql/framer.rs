//! Packet framing of one direction: 3-byte length + sequence id, payloads of 16 MiB − 1
//! continued in the following packets. Works on any slicing of the stream, keeps only the
//! first `cap` bytes of each payload (bodies are skipped, not buffered), skips gaps that fall
//! inside a payload of known length, and loses framing when a gap may hide packet headers.
//! While lost it keeps a bounded window of the bytes since the gap and asks its [`Sink`] at
//! the end of each delivery where a plausible packet starts.

use super::{DecodeCtx, Gap};
use bytes::{Buf, BytesMut};

/// Payload length that says "continued in the next packet".
pub const MAX_PACKET: u32 = 0xff_ffff;

/// One logical packet (a payload split over several physical packets counts once).
pub struct Packet<'a> {
    /// Sequence id of the first and of the last physical packet.
    pub seq: u8,
    pub last_seq: u8,
    /// Logical payload length.
    pub len: u64,
    /// The captured prefix of the payload: contiguous from its first byte, at most `cap`.
    pub head: &'a [u8],
    /// A gap fell inside the payload.
    pub broken: bool,
    /// Timestamp of the first header byte, and of the last byte.
    pub start_ts: u64,
    pub end_ts: u64,
    /// Bytes on the wire, headers included.
    pub wire: u64,
}

impl Packet<'_> {
    /// The whole payload is in `head`.
    pub fn whole(&self) -> bool {
        self.head.len() as u64 == self.len
    }
}

/// What a framer reports to.
pub trait Sink {
    /// A header starting a logical packet; `false` rejects it (the framer loses framing).
    fn header(&mut self, cx: &mut DecodeCtx<'_>, seq: u8, len: u32) -> bool;
    fn packet(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>);
    /// Framing lost. `partial`: the packet in progress, cut short (its header is known).
    fn lost(&mut self, cx: &mut DecodeCtx<'_>, partial: Option<&Packet<'_>>);
    /// While lost: the offset in `window` (bytes since the gap, the last ones received at
    /// `window.len()`) where a plausible packet starts, if any.
    fn hunt(&mut self, cx: &mut DecodeCtx<'_>, window: &[u8]) -> Option<usize>;
    /// In sync between two packets: how many bytes at the start of `input` are whole
    /// packets the sink took in place, without their being reported one by one (the rows
    /// of a result set); 0 for none. Only packets that [`Sink::header`] would accept and
    /// that are whole, single and not empty.
    fn runs(&mut self, _cx: &mut DecodeCtx<'_>, _ts: u64, _input: &[u8]) -> usize {
        0
    }
    /// Framing found again at a position `hunt` chose or `arm` told.
    fn resynced(&mut self, cx: &mut DecodeCtx<'_>);
    /// `n` bytes arrived at `ts` that no packet accounts for (while lost: data and gaps);
    /// negative when bytes counted so are framed after all (handed back after a resync).
    fn unframed(&mut self, cx: &mut DecodeCtx<'_>, n: i64, ts: u64);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Header,
    Body,
    Lost,
}

pub struct Framer {
    st: St,
    hdr: [u8; 4],
    hdr_len: usize,
    /// Bytes left in the current physical packet, and its length.
    remaining: u32,
    pkt_len: u32,
    /// A logical packet is in progress (between its first header and its last byte).
    active: bool,
    seq: u8,
    last_seq: u8,
    total: u64,
    wire: u64,
    start_ts: u64,
    head: Vec<u8>,
    broken: bool,
    cap: usize,
    /// Bytes held while hunting for a packet boundary; consumed from the front (`advance`).
    window: BytesMut,
    window_cap: usize,
    /// Set by `arm`: the next header must carry this sequence id.
    expect: Option<u8>,
}

impl Framer {
    /// `cap`: payload bytes kept per packet; `window_cap`: bytes kept while lost.
    pub fn new(cap: usize, window_cap: usize, lost: bool) -> Self {
        Self {
            st: if lost { St::Lost } else { St::Header },
            hdr: [0; 4],
            hdr_len: 0,
            remaining: 0,
            pkt_len: 0,
            active: false,
            seq: 0,
            last_seq: 0,
            total: 0,
            wire: 0,
            start_ts: 0,
            head: Vec::new(),
            broken: false,
            cap,
            window: BytesMut::new(),
            window_cap,
            expect: None,
        }
    }

    pub fn is_lost(&self) -> bool {
        self.st == St::Lost
    }

    /// Memory held (for tests of the bounds).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.head.capacity() + self.window.capacity()
    }

    /// While lost: the next byte starts a packet with sequence id `seq`.
    pub fn arm(&mut self, cx: &mut DecodeCtx<'_>, seq: u8) {
        if self.st == St::Lost {
            cx.stats.skipped_bytes += self.window.len() as u64;
            self.window = BytesMut::new();
            self.st = St::Header;
            self.hdr_len = 0;
            self.active = false;
            self.expect = Some(seq);
        }
    }

    /// Leaves framing for good (e.g. TLS): everything after is hunted, never framed.
    pub fn stop(&mut self) {
        self.st = St::Lost;
        self.window = BytesMut::new();
        self.head = Vec::new();
        self.active = false;
    }

    pub fn data(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, bytes: &[u8], sink: &mut dyn Sink) {
        let mut again = self.run(cx, ts, bytes, sink);
        while let Some(v) = again.take() {
            again = self.run(cx, ts, &v, sink);
        }
    }

    /// Processes `input`; returns bytes to process again after a resynchronisation.
    fn run(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        ts: u64,
        mut input: &[u8],
        sink: &mut dyn Sink,
    ) -> Option<Vec<u8>> {
        while !input.is_empty() {
            match self.st {
                St::Header => {
                    if self.hdr_len == 0 && !self.active && self.expect.is_none() {
                        let n = sink.runs(cx, ts, input);
                        if n > 0 {
                            input = &input[n..];
                            continue;
                        }
                    }
                    if self.hdr_len == 0
                        && !self.active
                        && self.expect.is_none()
                        && let Some(n) = self.whole(cx, ts, input, sink)
                    {
                        input = &input[n..];
                        continue;
                    }
                    if self.hdr_len == 0 && !self.active {
                        self.start_ts = ts;
                    }
                    let n = (4 - self.hdr_len).min(input.len());
                    self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
                    self.hdr_len += n;
                    input = &input[n..];
                    if self.hdr_len < 4 {
                        continue;
                    }
                    self.hdr_len = 0;
                    let len = u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], 0]);
                    let seq = self.hdr[3];
                    let ok = if self.active {
                        seq == self.last_seq.wrapping_add(1)
                    } else {
                        let armed = self.expect.take();
                        let ok = armed.is_none_or(|e| e == seq) && sink.header(cx, seq, len);
                        if ok && armed.is_some() {
                            sink.resynced(cx);
                        }
                        ok
                    };
                    if !ok {
                        cx.stats.malformed += 1;
                        cx.stats.skipped_bytes += 1;
                        sink.unframed(cx, 4, ts);
                        if self.active {
                            self.lose(cx, sink);
                        } else {
                            sink.lost(cx, None);
                            self.st = St::Lost;
                        }
                        // Hunt again from the byte after this header's first one.
                        self.window.clear();
                        self.window.extend_from_slice(&self.hdr[1..]);
                        continue;
                    }
                    if !self.active {
                        self.active = true;
                        self.seq = seq;
                        self.total = 0;
                        self.wire = 0;
                        self.head.clear();
                        self.broken = false;
                    }
                    self.last_seq = seq;
                    self.pkt_len = len;
                    self.remaining = len;
                    self.total += u64::from(len);
                    self.wire += 4 + u64::from(len);
                    if len == 0 {
                        self.end_packet(cx, ts, sink);
                    } else {
                        self.st = St::Body;
                    }
                }
                St::Body => {
                    let n = (self.remaining as usize).min(input.len());
                    if !self.broken && self.head.len() < self.cap {
                        let k = n.min(self.cap - self.head.len());
                        self.head.extend_from_slice(&input[..k]);
                    }
                    self.remaining -= n as u32;
                    input = &input[n..];
                    if self.remaining == 0 {
                        self.end_packet(cx, ts, sink);
                    }
                }
                St::Lost => {
                    sink.unframed(cx, input.len() as i64, ts);
                    self.window.extend_from_slice(input);
                    input = &[];
                    if let Some(off) = sink
                        .hunt(cx, &self.window)
                        .filter(|&o| o < self.window.len())
                    {
                        cx.stats.skipped_bytes += off as u64;
                        let rest = self.window.split_off(off);
                        self.window = BytesMut::new();
                        sink.unframed(cx, -(rest.len() as i64), ts);
                        self.st = St::Header;
                        self.hdr_len = 0;
                        self.active = false;
                        self.expect = None;
                        sink.resynced(cx);
                        return Some(rest.to_vec());
                    }
                    if self.window.len() > self.window_cap {
                        let drop = self.window.len() - self.window_cap;
                        cx.stats.skipped_bytes += drop as u64;
                        self.window.advance(drop);
                    }
                }
            }
        }
        None
    }

    /// A packet whole at the start of `input` (one physical packet, its header accepted):
    /// reported in place, its head borrowed from `input` (nothing copied), as the byte-wise
    /// path would have reported it. Returns the bytes it took; `None` leaves everything to
    /// that path (a header cut by the delivery's end, a body running past it, a continued
    /// payload, a header the sink rejects).
    #[inline]
    fn whole(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        ts: u64,
        input: &[u8],
        sink: &mut dyn Sink,
    ) -> Option<usize> {
        let h = input.get(..4)?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
        let seq = h[3];
        let end = 4 + len as usize;
        if len == MAX_PACKET || input.len() < end || !sink.header(cx, seq, len) {
            return None;
        }
        let keep = (len as usize).min(self.cap);
        let p = Packet {
            seq,
            last_seq: seq,
            len: u64::from(len),
            head: &input[4..4 + keep],
            broken: false,
            start_ts: ts,
            end_ts: ts,
            wire: 4 + u64::from(len),
        };
        sink.packet(cx, &p);
        Some(end)
    }

    fn end_packet(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, sink: &mut dyn Sink) {
        self.st = St::Header;
        if self.pkt_len == MAX_PACKET {
            return; // continued in the next packet
        }
        self.active = false;
        let p = Packet {
            seq: self.seq,
            last_seq: self.last_seq,
            len: self.total,
            head: &self.head,
            broken: self.broken,
            start_ts: self.start_ts,
            end_ts: ts,
            wire: self.wire,
        };
        sink.packet(cx, &p);
        if self.head.capacity() > 4096 {
            self.head = Vec::new();
        }
    }

    /// Reports the packet in progress as cut short, and loses framing.
    fn lose(&mut self, cx: &mut DecodeCtx<'_>, sink: &mut dyn Sink) {
        if self.active {
            let p = Packet {
                seq: self.seq,
                last_seq: self.last_seq,
                len: self.total,
                head: &self.head,
                broken: true,
                start_ts: self.start_ts,
                end_ts: self.start_ts,
                wire: self.wire,
            };
            sink.lost(cx, Some(&p));
        } else {
            sink.lost(cx, None);
        }
        self.active = false;
        self.head = Vec::new();
        self.st = St::Lost;
        self.hdr_len = 0;
        self.expect = None;
        self.window.clear();
    }

    /// `len` bytes are missing here.
    pub fn gap(&mut self, cx: &mut DecodeCtx<'_>, ts: u64, gap: Gap, sink: &mut dyn Sink) {
        let len = gap.len();
        if len == 0 {
            return;
        }
        match self.st {
            // Of an unknown length: never assumed to end inside the packet.
            St::Body if matches!(gap, Gap::Exact(_)) && len <= u64::from(self.remaining) => {
                self.broken = true;
                self.remaining -= len as u32;
                if self.remaining == 0 {
                    self.end_packet(cx, ts, sink);
                }
            }
            St::Lost => {
                // What follows is not contiguous with the window.
                cx.stats.skipped_bytes += self.window.len() as u64;
                self.window.clear();
                sink.unframed(cx, len as i64, ts);
            }
            _ => {
                let beyond = match self.st {
                    St::Body => len.saturating_sub(u64::from(self.remaining)),
                    _ => len + self.hdr_len as u64,
                };
                self.lose(cx, sink);
                sink.unframed(cx, beyond as i64, ts);
            }
        }
    }
}
