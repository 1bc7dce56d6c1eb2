//! Reassembly: puts each direction's segments back in sequence order and hands each
//! connection's session ([`crate::session`]) in-order bytes, gaps where bytes are missing
//! (exact: their length is known), and the end.
//!
//! A segment arrives as an event with `head_len` bytes from its start and `tail_len` bytes
//! that end its captured part: the middle of a segment longer than the kernel's cap, and the
//! end of a truncated one, are gaps of known length. Retransmits are dropped, overlaps
//! trimmed, out-of-order segments held (bounded) until the hole fills. A hole is declared
//! lost when the peer acknowledges past it (the receiver got it, so no retransmit will come),
//! when the hold buffer is full, or when the connection ends.

use crate::{
    decode::{self, DecodeCtx, Dir, Gap},
    event::Event,
    model::{Clock, ConnId, DecoderStats, Endpoint, Protocol, Purpose, Record, StreamStats},
    session::{Layers, Session},
};
use sensor_common::{EventHeader, FlowKey, tcp_flags};
use std::collections::{BTreeMap, VecDeque};

/// Keyed by addresses and ports an attacker chooses: foldhash, randomly seeded per map (HashDoS
/// resistant), at a fraction of SipHash's cost per lookup.
type HashMap<K, V> = foldhash::HashMap<K, V>;

#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Connections tracked at once; the least recently active is evicted beyond this.
    pub max_connections: usize,
    /// Out-of-order segments held per direction.
    pub max_held_segments: usize,
    /// Bytes held per direction.
    pub max_held_bytes: usize,
    /// Bytes held across all connections: without it the per-direction bounds allow
    /// connections × 2 × `max_held_bytes` (tens of GB at the defaults) under crafted loss.
    pub max_held_total: usize,
    /// A connection without a segment for this long is closed.
    pub idle_ns: u64,
    /// A closed connection's id and purpose are kept this long for its flow record (which
    /// comes after the flow's own linger or idle timeout, never later).
    pub closed_keep_ns: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_held_segments: 64,
            max_held_bytes: 256 << 10,
            max_held_total: 64 << 20,
            idle_ns: 300_000_000_000,
            closed_keep_ns: 600_000_000_000,
        }
    }
}

/// One held (out-of-order) segment.
struct Held {
    ts: u64,
    len: u32,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Bytes missing between head and tail (cap), and after the tail (truncation).
    middle_gap: u32,
}

#[derive(Default)]
struct DirState {
    /// Next expected sequence number; `None` until the first segment or SYN.
    next: Option<u32>,
    /// The latest timestamp of the direction's events fed so far.
    last_ts: u64,
    held: BTreeMap<u32, Held>,
    held_bytes: usize,
    fin: bool,
}

struct Conn {
    endpoint: Endpoint,
    session: Session,
    dirs: [DirState; 2],
    last_ts: u64,
    rst: bool,
    /// The kernel was asked to send this connection's segments whole.
    whole: bool,
    /// Events of one direction that acknowledge bytes of the other not yet seen (see
    /// [`Streams::on_event`]), as records, oldest first.
    waiting: VecDeque<Box<[u8]>>,
    /// Their bytes: at most `max_held_bytes` (beyond, they all go on), and counted in
    /// `max_held_total`.
    waiting_bytes: usize,
    /// An event with payload has been fed to the connection. Until then, its first segment with payload
    /// (which the connection id is made from) is the earliest of those seen: the event that
    /// opened it may be a response that came through a faster receive queue than its request.
    fed: bool,
    first_ts: u64,
    /// The connection was seen opening: a side whose SYN has not come yet will send one (it
    /// may be on another receive queue), so an event that acknowledges that side waits for
    /// it. Off once such a wait ran out (the mirror lost the SYN).
    await_peer_syn: bool,
}

/// How long (capture time) an event waits for the bytes of the other direction it
/// acknowledges. With several receive queues the two directions of a connection are read by
/// different CPUs, whose timestamps and order can disagree by the queues' processing delays
/// (microseconds, milliseconds under load); bytes the mirror lost never come, and then the
/// event goes on after this wait, as it would have at once.
pub const CAUSAL_WAIT_NS: u64 = 50_000_000;

/// The event acknowledges bytes of the other direction that were not delivered yet (a FIN
/// takes one sequence number).
fn ahead_of_peer(conn: &Conn, h: &EventHeader) -> bool {
    if h.tcp_flags & tcp_flags::ACK == 0 {
        return false;
    }
    let peer = &conn.dirs[1 - (h.direction & 1) as usize];
    let Some(next) = peer.next else {
        return conn.await_peer_syn;
    };
    seq_lt(next.wrapping_add(peer.fin as u32), h.ack)
}

/// The header of a waiting record (made from a parsed event, so whole).
fn waiting_header(record: &[u8]) -> EventHeader {
    // SAFETY: the record starts with a whole header (it was copied from a parsed event);
    // EventHeader is plain old data, read unaligned.
    unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<EventHeader>()) }
}

/// Sequence-space comparison (RFC 1982 style, 32-bit wrap).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// A handshake seen before any payload: where each direction's data will start.
struct Handshake {
    next: [Option<u32>; 2],
    ts: u64,
}

pub struct Streams {
    conns: HashMap<FlowKey, Conn>,
    /// Connections that have shaken hands but sent nothing yet. A decoder is made only when
    /// payload arrives, so a SYN flood costs a small entry per source, not a connection.
    handshakes: HashMap<FlowKey, Handshake>,
    pub limits: StreamLimits,
    pub stats: StreamStats,
    pub decoder_stats: DecoderStats,
    pub redact: bool,
    /// The layers a session can switch to (TLS).
    pub layers: Layers,
    /// Closed connections, until their flow is reported ([`Streams::take_flow`]): what they
    /// were for, and their id, which the flow record shares. Bounded by `max_connections`;
    /// an entry whose flow never comes (the kernel's flow map was full) goes after
    /// [`StreamLimits::closed_keep_ns`].
    closed: HashMap<FlowKey, Closed>,
    /// Out-of-order bytes held by all connections (the sum of their `held_bytes`).
    held_total: usize,
    /// Closed connections whose TLS layer still waits for late keys (see [`Parked`]).
    parked: Vec<Parked>,
    /// When parked sessions are next offered the keys that arrived meanwhile.
    parked_retry_ns: u64,
    /// Connections whose segments the capture should send whole from now on, until taken
    /// ([`Streams::take_marks`]).
    marks: Vec<FlowKey>,
}

/// Marks not yet taken at most (a caller that never takes them loses the later ones).
const MAX_MARKS: usize = 4096;

/// A connection that ended while its TLS layer held ciphertext for keys that had not yet
/// arrived (a key forwarder slower than the mirror): its session is kept until the keys come
/// or the layer's wait ends, then closed as any other. Bounded by [`MAX_PARKED`].
struct Parked {
    endpoint: Endpoint,
    session: Session,
    until: u64,
    ts: u64,
}

/// Sessions parked at once for late keys; beyond, a session is closed at once (its report
/// says `no_key`).
const MAX_PARKED: usize = 4096;

/// A closed connection waiting for its flow record.
struct Closed {
    purpose: Purpose,
    conn_id: ConnId,
    ts: u64,
}

/// How often (capture time) parked sessions look for their keys.
const PARKED_RETRY_NS: u64 = 50_000_000;

impl Streams {
    pub fn new(limits: StreamLimits, redact: bool) -> Self {
        Self {
            conns: HashMap::default(),
            handshakes: HashMap::default(),
            limits,
            stats: StreamStats::default(),
            decoder_stats: DecoderStats::default(),
            redact,
            layers: Layers::none(),
            closed: HashMap::default(),
            held_total: 0,
            parked: Vec::new(),
            parked_retry_ns: 0,
            marks: Vec::new(),
        }
    }

    /// The connections to capture whole, since the last call.
    pub fn take_marks(&mut self) -> Vec<FlowKey> {
        std::mem::take(&mut self.marks)
    }

    /// Whether connections wait to be marked ([`Streams::take_marks`]).
    pub fn has_marks(&self) -> bool {
        !self.marks.is_empty()
    }

    /// Sessions parked for late keys.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Offers parked sessions the keys that arrived; closes those that were read or whose
    /// wait is over (every one, with `all`).
    fn retry_parked(&mut self, now: u64, all: bool, clock: &Clock, out: &mut Vec<Record>) {
        if self.parked.is_empty() || (!all && now < self.parked_retry_ns) {
            return;
        }
        self.parked_retry_ns = now.saturating_add(PARKED_RETRY_NS);
        let mut i = 0;
        while i < self.parked.len() {
            let p = &mut self.parked[i];
            let mut down = ToSession::new(
                &mut p.session,
                &p.endpoint,
                clock,
                self.redact,
                out,
                &mut self.decoder_stats,
                &self.layers,
            );
            down.session.retry(&mut down.cx, down.layers);
            let done = all || now >= p.until || down.session.waiting_until().is_none();
            if done {
                let ts = p.ts.max(now.min(p.until));
                down.session.close(&mut down.cx, ts);
                self.parked.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Out-of-order bytes held by all connections.
    pub fn held_bytes(&self) -> usize {
        self.held_total
    }

    pub fn active(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one event; records the decoders produce are appended to `out`.
    ///
    /// An event that acknowledges bytes of the other direction not yet seen waits for them
    /// (bounded: [`CAUSAL_WAIT_NS`], and the held-bytes bounds of a direction and of all), and the
    /// events of its direction after it keep their order behind it. A response is then never
    /// decoded before its request, whichever receive queue, CPU and ring each came through.
    pub fn on_event(&mut self, ev: &Event<'_>, clock: &Clock, out: &mut Vec<Record>) {
        self.retry_parked(ev.hdr.ts_ns, false, clock, out);
        if !self.open(ev, clock, out) {
            return;
        }
        let key = ev.hdr.key;
        // Only a connection with events waiting has any to release after this one.
        let mut waited = false;
        if let Some(conn) = self.conns.get_mut(&key) {
            if !conn.fed && ev.hdr.payload_len > 0 && ev.hdr.ts_ns < conn.first_ts {
                conn.first_ts = ev.hdr.ts_ns;
                conn.endpoint = Endpoint::new(&key, ev.hdr.proto, clock.at(ev.hdr.ts_ns).ns());
            }
            let d = ev.hdr.direction & 1;
            let waiting_dir = conn
                .waiting
                .front()
                .map(|w| waiting_header(w).direction & 1);
            waited = waiting_dir.is_some();
            if waiting_dir == Some(d) || (waiting_dir.is_none() && ahead_of_peer(conn, &ev.hdr)) {
                let size = EventHeader::SIZE + ev.hdr.data_len();
                if conn.waiting_bytes + size <= self.limits.max_held_bytes
                    && self.held_total + size <= self.limits.max_held_total
                {
                    let mut record = Vec::with_capacity(size);
                    record.extend_from_slice(crate::event::header_bytes(&ev.hdr));
                    record.extend_from_slice(ev.head());
                    record.extend_from_slice(ev.tail());
                    conn.waiting.push_back(record.into_boxed_slice());
                    conn.waiting_bytes += size;
                    self.held_total += size;
                    self.stats.waited_for_peer += 1;
                    self.release(&key, None, false, clock, out);
                    return;
                }
                // No room: what waits goes on now, then this event.
                self.release(&key, None, true, clock, out);
            } else if waiting_dir.is_some()
                && ev.hdr.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0
            {
                // The other side ends the connection: what waits goes first.
                self.release(&key, None, true, clock, out);
            }
        }
        self.process(ev, clock, out);
        if waited {
            self.release(&key, None, false, clock, out);
        }
    }

    /// Feeds the waiting events of a connection that can go on: the bytes they acknowledge
    /// have come, or the other direction has gone [`CAUSAL_WAIT_NS`] past them without those
    /// bytes (or, from expiry, the clock has: `now`); with `force`, all of them.
    fn release(
        &mut self,
        key: &FlowKey,
        now: Option<u64>,
        force: bool,
        clock: &Clock,
        out: &mut Vec<Record>,
    ) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Some(w) = conn.waiting.front() else {
                return;
            };
            let h = waiting_header(w);
            let peer = &conn.dirs[1 - (h.direction & 1) as usize];
            let peer_ts = peer.last_ts;
            let came = !ahead_of_peer(conn, &h);
            let waited = now.unwrap_or(peer_ts).saturating_sub(h.ts_ns) >= CAUSAL_WAIT_NS;
            if !(force || came || waited) {
                return;
            }
            if !came && peer.next.is_none() {
                // The other side's SYN never came: wait for it no more.
                conn.await_peer_syn = false;
            }
            let mut w = conn.waiting.pop_front().expect("looked at above");
            conn.waiting_bytes -= w.len();
            if came && peer_ts > h.ts_ns {
                // It acknowledges bytes stamped later than itself: the two CPUs' receive
                // queues were processed out of step. It cannot have happened before them,
                // so it counts from them (a latency is then 0, not negative, and the
                // decoders see time run forward).
                let ts = core::mem::offset_of!(EventHeader, ts_ns);
                w[ts..ts + 8].copy_from_slice(&peer_ts.to_ne_bytes());
            }
            self.held_total = self.held_total.saturating_sub(w.len());
            match Event::parse(&w) {
                Ok(ev) => self.process(&ev, clock, out),
                Err(e) => debug_assert!(false, "a waiting record made from an event: {e}"),
            }
        }
    }

    /// Makes the event's connection if it is new and worth one. False when there is none to
    /// feed the event to.
    fn open(&mut self, ev: &Event<'_>, clock: &Clock, out: &mut Vec<Record>) -> bool {
        let key = ev.hdr.key;
        let flags = ev.hdr.tcp_flags;
        if !self.conns.contains_key(&key) {
            // Only a connection we can decode is worth tracking.
            if !decode::decodes(Protocol::from_wire(ev.hdr.proto)) {
                return false;
            }
            let d = (ev.hdr.direction & 1) as usize;
            if ev.hdr.payload_len == 0 {
                if flags & tcp_flags::SYN != 0 {
                    if !self.handshakes.contains_key(&key)
                        && self.handshakes.len() >= self.limits.max_connections
                    {
                        let batch = crate::bounded::batch(self.limits.max_connections);
                        for k in crate::bounded::oldest(&self.handshakes, batch, |h| h.ts) {
                            self.handshakes.remove(&k);
                            self.stats.handshakes_evicted += 1;
                        }
                    }
                    let h = self.handshakes.entry(key).or_insert(Handshake {
                        next: [None; 2],
                        ts: ev.hdr.ts_ns,
                    });
                    h.next[d] = Some(ev.hdr.seq.wrapping_add(1));
                    if flags & tcp_flags::ACK != 0 {
                        // A SYN-ACK tells where the client's data starts, even when the
                        // client's SYN comes later (through another receive queue) or never.
                        h.next[1 - d].get_or_insert(ev.hdr.ack);
                    }
                    h.ts = ev.hdr.ts_ns;
                } else if flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
                    // Closed before any payload (a probe, a health check): nothing to decode.
                    self.handshakes.remove(&key);
                }
                return false;
            }
            let handshake = self.handshakes.remove(&key);
            let protocol = Protocol::from_wire(ev.hdr.proto);
            let Some(decoder) = decode::for_protocol(protocol, handshake.is_none()) else {
                return false;
            };
            if self.conns.len() >= self.limits.max_connections {
                self.evict_oldest(clock, out);
            }
            self.stats.connections_opened += 1;
            if handshake.is_none() {
                self.stats.mid_stream += 1;
            }
            let mut dirs = [DirState::default(), DirState::default()];
            let opened = handshake.is_some();
            if let Some(h) = handshake {
                dirs[0].next = h.next[0];
                dirs[1].next = h.next[1];
            }
            self.conns.insert(
                key,
                Conn {
                    endpoint: Endpoint::new(&key, ev.hdr.proto, clock.at(ev.hdr.ts_ns).ns()),
                    session: Session::new(decoder),
                    dirs,
                    last_ts: ev.hdr.ts_ns,
                    rst: false,
                    whole: false,
                    waiting: VecDeque::new(),
                    waiting_bytes: 0,
                    fed: false,
                    first_ts: ev.hdr.ts_ns,
                    await_peer_syn: opened,
                },
            );
        }
        true
    }

    /// Feeds one event to its (open) connection.
    fn process(&mut self, ev: &Event<'_>, clock: &Clock, out: &mut Vec<Record>) {
        let key = ev.hdr.key;
        let flags = ev.hdr.tcp_flags;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.fed |= ev.hdr.payload_len > 0;
        conn.last_ts = conn.last_ts.max(ev.hdr.ts_ns);
        let d_ts = &mut conn.dirs[(ev.hdr.direction & 1) as usize].last_ts;
        *d_ts = (*d_ts).max(ev.hdr.ts_ns);
        let held_before = conn.dirs[0].held_bytes + conn.dirs[1].held_bytes;
        let d = (ev.hdr.direction & 1) as usize;
        let dir = Dir::from_direction(ev.hdr.direction);
        let mut down = ToSession::new(
            &mut conn.session,
            &conn.endpoint,
            clock,
            self.redact,
            out,
            &mut self.decoder_stats,
            &self.layers,
        );

        // The peer's ACK tells what this side's receiver already has.
        if flags & tcp_flags::ACK != 0 {
            let other = &mut conn.dirs[1 - d];
            declare_acked_holes(
                other,
                ev.hdr.ack,
                &mut down,
                Dir::from_direction(1 - ev.hdr.direction),
                &mut self.stats,
            );
        }

        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK {
            conn.dirs[1 - d].next.get_or_insert(ev.hdr.ack);
        }
        let st = &mut conn.dirs[d];
        if flags & tcp_flags::SYN != 0 {
            st.next = Some(ev.hdr.seq.wrapping_add(1));
        }
        if ev.hdr.payload_len > 0 {
            let seq = if flags & tcp_flags::SYN != 0 {
                ev.hdr.seq.wrapping_add(1)
            } else {
                ev.hdr.seq
            };
            let next = *st.next.get_or_insert(seq);
            let seg = Segment {
                ts: ev.hdr.ts_ns,
                len: ev.hdr.payload_len,
                head: ev.head(),
                tail: ev.tail(),
                middle_gap: ev.hdr.captured_len - ev.hdr.head_len as u32 - ev.hdr.tail_len as u32,
            };
            if seq == next {
                deliver(st, seq, &seg, &mut down, dir);
                drain_held(st, &mut down, dir, &mut self.stats, seg.ts);
            } else if seq_lt(seq, next) {
                let end = seq.wrapping_add(seg.len);
                if seq_lt(next, end) {
                    // Overlap: deliver only the new part.
                    let skip = next.wrapping_sub(seq);
                    deliver_from(st, seq, skip, &seg, &mut down, dir);
                    drain_held(st, &mut down, dir, &mut self.stats, seg.ts);
                } else {
                    self.stats.retransmits += 1;
                }
            } else {
                self.stats.out_of_order += 1;
                hold(st, seq, &seg, &self.limits, &mut self.stats);
                if st.held.len() > self.limits.max_held_segments
                    || st.held_bytes > self.limits.max_held_bytes
                {
                    // Give up on the hole: what we hold is newer than anything that can fill it.
                    force_first_hole(st, &mut down, dir, &mut self.stats);
                }
            }
        }
        if flags & tcp_flags::FIN != 0 {
            st.fin = true;
        }
        if flags & tcp_flags::RST != 0 {
            conn.rst = true;
        }
        let held_after = conn.dirs[0].held_bytes + conn.dirs[1].held_bytes;
        self.held_total = (self.held_total + held_after).saturating_sub(held_before);
        if self.held_total > self.limits.max_held_total && held_after > 0 {
            // Over the global budget: this connection (the one that just grew) gives up its
            // holes, which keeps the total at or under the budget whatever the others hold.
            self.stats.held_budget_flushes += 1;
            for (i, st) in conn.dirs.iter_mut().enumerate() {
                let dir = if i == 0 { Dir::Request } else { Dir::Response };
                while !st.held.is_empty() {
                    force_first_hole(st, &mut down, dir, &mut self.stats);
                }
            }
            self.held_total = self.held_total.saturating_sub(held_after);
        }
        if !conn.whole && conn.session.wants_whole() && self.marks.len() < MAX_MARKS {
            conn.whole = true;
            self.marks.push(key);
        }
        if conn.rst || (conn.dirs[0].fin && conn.dirs[1].fin) {
            let ts = ev.hdr.ts_ns;
            self.close(&key, ts, clock, out);
        }
    }

    /// What a connection was for and its id, once: its flow is being reported. `None` for a
    /// flow no session was made of (a probe, a handshake alone).
    pub fn take_flow(&mut self, key: &FlowKey) -> Option<(Purpose, ConnId)> {
        if let Some(c) = self.closed.remove(key) {
            return Some((c.purpose, c.conn_id));
        }
        // The flow idled out before the connection did: the connection keeps its id.
        self.conns
            .get(key)
            .map(|c| (c.session.purpose(), c.endpoint.conn_id))
    }

    fn remember_closed(&mut self, key: &FlowKey, purpose: Purpose, conn_id: ConnId, ts: u64) {
        if self.closed.len() < self.limits.max_connections {
            self.closed.insert(
                *key,
                Closed {
                    purpose,
                    conn_id,
                    ts,
                },
            );
        }
    }

    /// Closes connections idle at `now_ns`; with `all`, every connection.
    pub fn expire(&mut self, now_ns: u64, all: bool, clock: &Clock, out: &mut Vec<Record>) {
        self.retry_parked(now_ns, false, clock, out);
        // Events that waited long enough for the other direction go on.
        let mut waiting: Vec<(u64, FlowKey)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.waiting.is_empty())
            .map(|(k, c)| (c.first_ts, *k))
            .collect();
        waiting.sort_unstable();
        for (_, k) in waiting {
            self.release(&k, Some(now_ns), all, clock, out);
        }
        let idle_ns = self.limits.idle_ns;
        self.handshakes
            .retain(|_, h| !all && now_ns.saturating_sub(h.ts) < idle_ns);
        let keep_ns = self.limits.closed_keep_ns;
        self.closed
            .retain(|_, c| now_ns.saturating_sub(c.ts) < keep_ns);
        let mut idle: Vec<(u64, FlowKey)> = self
            .conns
            .iter()
            .filter(|(_, c)| all || now_ns.saturating_sub(c.last_ts) >= self.limits.idle_ns)
            .map(|(k, c)| (c.last_ts, *k))
            .collect();
        // In the order they went quiet, not the hash map's (seeded per run): the records a
        // close flushes come out in the same order on every run.
        idle.sort_unstable();
        for (_, k) in idle {
            self.close(&k, now_ns, clock, out);
        }
        // Sessions still open whose wait for keys is over: they give up now, not at their
        // idle timeout, and let go of what they held.
        for conn in self.conns.values_mut() {
            if conn
                .session
                .waiting_until()
                .is_some_and(|until| now_ns > until)
            {
                let mut down = ToSession::new(
                    &mut conn.session,
                    &conn.endpoint,
                    clock,
                    self.redact,
                    out,
                    &mut self.decoder_stats,
                    &self.layers,
                );
                down.session.expire_wait(&mut down.cx, down.layers, now_ns);
            }
        }
        // At the end, the sessions just parked too: nothing will come for them.
        if all {
            self.retry_parked(now_ns, true, clock, out);
        }
    }

    /// Makes room: closes the least recently active connections, a batch at a time.
    fn evict_oldest(&mut self, clock: &Clock, out: &mut Vec<Record>) {
        let batch = crate::bounded::batch(self.limits.max_connections);
        for k in crate::bounded::oldest(&self.conns, batch, |c| c.last_ts) {
            let ts = self.conns.get(&k).map_or(0, |c| c.last_ts);
            self.stats.connections_evicted += 1;
            self.close(&k, ts, clock, out);
            self.stats.connections_closed -= 1;
        }
    }

    fn close(&mut self, key: &FlowKey, ts: u64, clock: &Clock, out: &mut Vec<Record>) {
        // What waited for the other direction goes on before the end.
        self.release(key, None, true, clock, out);
        let Some(mut conn) = self.conns.remove(key) else {
            return;
        };
        self.held_total = self
            .held_total
            .saturating_sub(conn.dirs[0].held_bytes + conn.dirs[1].held_bytes);
        let mut down = ToSession::new(
            &mut conn.session,
            &conn.endpoint,
            clock,
            self.redact,
            out,
            &mut self.decoder_stats,
            &self.layers,
        );
        for (i, st) in conn.dirs.iter_mut().enumerate() {
            let dir = if i == 0 { Dir::Request } else { Dir::Response };
            while !st.held.is_empty() {
                force_first_hole(st, &mut down, dir, &mut self.stats);
            }
        }
        match down.session.waiting_until() {
            Some(until) if until > ts && self.parked.len() < MAX_PARKED => {
                let purpose = conn.session.purpose();
                let conn_id = conn.endpoint.conn_id;
                self.parked.push(Parked {
                    endpoint: conn.endpoint,
                    session: conn.session,
                    until,
                    ts,
                });
                self.remember_closed(key, purpose, conn_id, ts);
                self.stats.connections_closed += 1;
                return;
            }
            _ => down.session.close(&mut down.cx, ts),
        }
        self.remember_closed(key, conn.session.purpose(), conn.endpoint.conn_id, ts);
        self.stats.connections_closed += 1;
    }
}

/// Where reassembly delivers each direction's in-order bytes and gaps.
trait Downstream {
    fn data(&mut self, dir: Dir, ts: u64, bytes: &[u8]);
    fn gap(&mut self, dir: Dir, ts: u64, gap: Gap);
}

/// A connection's session, with what its calls need.
struct ToSession<'a> {
    session: &'a mut Session,
    cx: DecodeCtx<'a>,
    layers: &'a Layers,
}

impl<'a> ToSession<'a> {
    fn new(
        session: &'a mut Session,
        endpoint: &'a Endpoint,
        clock: &'a Clock,
        redact: bool,
        out: &'a mut Vec<Record>,
        stats: &'a mut DecoderStats,
        layers: &'a Layers,
    ) -> Self {
        Self {
            session,
            cx: DecodeCtx {
                endpoint,
                clock,
                redact,
                out,
                stats,
            },
            layers,
        }
    }
}

impl Downstream for ToSession<'_> {
    fn data(&mut self, dir: Dir, ts: u64, bytes: &[u8]) {
        self.session.data(&mut self.cx, self.layers, dir, ts, bytes);
    }

    fn gap(&mut self, dir: Dir, ts: u64, gap: Gap) {
        self.session.gap(&mut self.cx, self.layers, dir, ts, gap);
    }
}

struct Segment<'a> {
    ts: u64,
    len: u32,
    head: &'a [u8],
    tail: &'a [u8],
    middle_gap: u32,
}

fn deliver(st: &mut DirState, seq: u32, seg: &Segment<'_>, down: &mut dyn Downstream, dir: Dir) {
    deliver_from(st, seq, 0, seg, down, dir);
}

/// Delivers a segment's bytes from offset `skip` on (0 for all of it), advancing `next`.
fn deliver_from(
    st: &mut DirState,
    seq: u32,
    skip: u32,
    seg: &Segment<'_>,
    down: &mut dyn Downstream,
    dir: Dir,
) {
    // Layout of the segment: [head][middle gap][tail][truncated gap] = len bytes.
    let head = seg.head.len() as u32;
    let tail = seg.tail.len() as u32;
    let trunc = seg.len - head - seg.middle_gap - tail;
    let parts: [(u32, Option<&[u8]>); 4] = [
        (head, Some(seg.head)),
        (seg.middle_gap, None),
        (tail, Some(seg.tail)),
        (trunc, None),
    ];
    let mut off = 0u32;
    for (len, bytes) in parts {
        if len == 0 {
            continue;
        }
        let start = skip.max(off);
        let end = off + len;
        if start < end {
            match bytes {
                Some(b) => down.data(dir, seg.ts, &b[(start - off) as usize..]),
                None => {
                    down.gap(dir, seg.ts, Gap::Exact((end - start) as u64));
                }
            }
        }
        off = end;
    }
    st.next = Some(seq.wrapping_add(seg.len));
}

fn hold(
    st: &mut DirState,
    seq: u32,
    seg: &Segment<'_>,
    limits: &StreamLimits,
    stats: &mut StreamStats,
) {
    if st.held.contains_key(&seq) {
        stats.retransmits += 1;
        return;
    }
    let bytes = seg.head.len() + seg.tail.len();
    if st.held.len() >= limits.max_held_segments * 2 {
        stats.held_overflow += 1;
        return;
    }
    st.held_bytes += bytes;
    st.held.insert(
        seq,
        Held {
            ts: seg.ts,
            len: seg.len,
            head: seg.head.to_vec(),
            tail: seg.tail.to_vec(),
            middle_gap: seg.middle_gap,
        },
    );
}

/// Delivers held segments that now continue the stream. Their bytes count as arrived at
/// `now` (when the hole filled) if that is later than their own arrival: a byte is usable
/// only once everything before it has arrived, and latencies must not run backwards.
fn drain_held(
    st: &mut DirState,
    down: &mut dyn Downstream,
    dir: Dir,
    stats: &mut StreamStats,
    now: u64,
) {
    loop {
        let Some(next) = st.next else { return };
        // The held segment with the lowest sequence number relative to `next`.
        let Some((&seq, _)) = st.held.iter().min_by_key(|(s, _)| s.wrapping_sub(next)) else {
            return;
        };
        if seq_lt(next, seq) {
            return;
        }
        let Some(h) = st.held.remove(&seq) else {
            return;
        };
        st.held_bytes -= h.head.len() + h.tail.len();
        let seg = Segment {
            ts: h.ts.max(now),
            len: h.len,
            head: &h.head,
            tail: &h.tail,
            middle_gap: h.middle_gap,
        };
        let end = seq.wrapping_add(h.len);
        if seq_lt(next, end) {
            deliver_from(st, seq, next.wrapping_sub(seq), &seg, down, dir);
        } else {
            stats.retransmits += 1;
        }
    }
}

/// Declares the hole before the first held segment lost, then delivers what follows it.
fn force_first_hole(
    st: &mut DirState,
    down: &mut dyn Downstream,
    dir: Dir,
    stats: &mut StreamStats,
) {
    let Some(next) = st.next else { return };
    let Some(&seq) = st.held.keys().min_by_key(|s| s.wrapping_sub(next)) else {
        return;
    };
    if seq_lt(next, seq) {
        let missing = seq.wrapping_sub(next);
        let ts = st.held.get(&seq).map_or(0, |h| h.ts);
        stats.lost_segments += 1;
        stats.lost_bytes += missing as u64;
        down.gap(dir, ts, Gap::Exact(missing as u64));
        st.next = Some(seq);
    }
    // The hole will never fill: what follows it keeps its own arrival time.
    drain_held(st, down, dir, stats, 0);
}

/// The peer acknowledged `ack`: bytes of this direction before it that we never saw are lost.
fn declare_acked_holes(
    st: &mut DirState,
    ack: u32,
    down: &mut dyn Downstream,
    dir: Dir,
    stats: &mut StreamStats,
) {
    while let Some(next) = st.next {
        let Some(&first) = st.held.keys().min_by_key(|s| s.wrapping_sub(next)) else {
            return;
        };
        // The hole [next, first) is acknowledged: it reached the receiver without us.
        if seq_lt(next, first) && !seq_lt(ack, first) {
            force_first_hole(st, down, dir, stats);
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a decoder is given.
    #[derive(Default)]
    struct Tape(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl crate::decode::Decoder for Tape {
        fn data(
            &mut self,
            _: &mut DecodeCtx<'_>,
            dir: Dir,
            _: u64,
            bytes: &[u8],
        ) -> crate::decode::Control {
            self.0
                .lock()
                .unwrap()
                .push(format!("{dir:?}:{}", String::from_utf8_lossy(bytes)));
            crate::decode::Control::Continue
        }
        fn gap(&mut self, _: &mut DecodeCtx<'_>, dir: Dir, _: u64, gap: Gap) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{dir:?}:gap{}", gap.len()));
        }
        fn close(&mut self, _: &mut DecodeCtx<'_>, _: u64) {
            self.0.lock().unwrap().push("close".into());
        }
    }

    fn run(segs: &[(u32, &[u8])]) -> Vec<String> {
        let tape = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut st = DirState::default();
        let mut session: Session = Session::new(Box::new(Tape(tape.clone())));
        let layers = Layers::none();
        let ep = Endpoint::default();
        let clock = Clock::default();
        let mut out = Vec::new();
        let mut stats = DecoderStats::default();
        let mut sstats = StreamStats::default();
        let limits = StreamLimits::default();
        let mut dec = ToSession::new(
            &mut session,
            &ep,
            &clock,
            true,
            &mut out,
            &mut stats,
            &layers,
        );
        for &(seq, data) in segs {
            let seg = Segment {
                ts: 0,
                len: data.len() as u32,
                head: data,
                tail: &[],
                middle_gap: 0,
            };
            let next = *st.next.get_or_insert(seq);
            if seq == next {
                deliver(&mut st, seq, &seg, &mut dec, Dir::Request);
                drain_held(&mut st, &mut dec, Dir::Request, &mut sstats, 0);
            } else if seq_lt(seq, next) {
                if seq_lt(next, seq.wrapping_add(seg.len)) {
                    deliver_from(
                        &mut st,
                        seq,
                        next.wrapping_sub(seq),
                        &seg,
                        &mut dec,
                        Dir::Request,
                    );
                }
            } else {
                hold(&mut st, seq, &seg, &limits, &mut sstats);
            }
        }
        while !st.held.is_empty() {
            force_first_hole(&mut st, &mut dec, Dir::Request, &mut sstats);
        }
        tape.lock().unwrap().clone()
    }

    #[test]
    fn reorders_and_trims() {
        assert_eq!(
            run(&[(100, b"abc"), (106, b"ghi"), (103, b"def")]),
            ["Request:abc", "Request:def", "Request:ghi"]
        );
        // retransmit dropped, overlap trimmed
        assert_eq!(
            run(&[(100, b"abc"), (100, b"abc"), (101, b"bcde")]),
            ["Request:abc", "Request:de"]
        );
        // lost segment becomes a gap
        assert_eq!(
            run(&[(100, b"abc"), (106, b"ghi")]),
            ["Request:abc", "Request:gap3", "Request:ghi"]
        );
        // sequence wrap
        assert_eq!(
            run(&[(u32::MAX - 1, b"ab"), (0, b"cd")]),
            ["Request:ab", "Request:cd"]
        );
    }

    #[test]
    fn head_tail_segment_has_a_middle_gap() {
        let tape = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut session: Session = Session::new(Box::new(Tape(tape.clone())));
        let layers = Layers::none();
        let mut st = DirState::default();
        let ep = Endpoint::default();
        let clock = Clock::default();
        let mut out = Vec::new();
        let mut stats = DecoderStats::default();
        let mut dec = ToSession::new(
            &mut session,
            &ep,
            &clock,
            true,
            &mut out,
            &mut stats,
            &layers,
        );
        // 20-byte segment, 4 head bytes, 3 tail bytes, truncated after 15 captured bytes
        let seg = Segment {
            ts: 0,
            len: 20,
            head: b"HEAD",
            tail: b"TAI",
            middle_gap: 8,
        };
        deliver(&mut st, 1, &seg, &mut dec, Dir::Response);
        assert_eq!(
            *tape.lock().unwrap(),
            [
                "Response:HEAD",
                "Response:gap8",
                "Response:TAI",
                "Response:gap5"
            ]
        );
        assert_eq!(st.next, Some(21));
        assert_eq!((stats.gaps, stats.gap_bytes), (2, 13));
    }

    /// Out-of-order data on many connections: the total held never passes the global
    /// budget, the connection that would pass it gives up its holes (counted), and the
    /// others keep theirs.
    #[test]
    fn held_bytes_are_bounded_across_connections() {
        use sensor_common::{EventHeader, direction, proto};
        let limits = StreamLimits {
            max_held_total: 10_000,
            ..StreamLimits::default()
        };
        let mut streams = Streams::new(limits, true);
        let clock = Clock::default();
        let mut out = Vec::new();
        let payload = vec![b'x'; 1000];
        let mut feed = |streams: &mut Streams, port: u16, seq: u32, flags: u8, data: &[u8]| {
            // The server's SYN-ACK (the only segment with SYN and ACK here) goes to the client.
            let syn_ack = flags == tcp_flags::SYN | tcp_flags::ACK;
            let mut hdr = EventHeader {
                ts_ns: 1,
                seq,
                ack: if syn_ack { 1 } else { 0 },
                payload_len: data.len() as u32,
                captured_len: data.len() as u32,
                head_len: data.len() as u16,
                tcp_flags: flags,
                direction: if syn_ack {
                    direction::TO_CLIENT
                } else {
                    direction::TO_SERVER
                },
                proto: proto::POSTGRES,
                ..Default::default()
            };
            hdr.key.client_port = port;
            hdr.key.server_port = 5432;
            let mut rec = crate::event::header_bytes(&hdr).to_vec();
            rec.extend_from_slice(data);
            streams.on_event(&crate::event::Event::parse(&rec).unwrap(), &clock, &mut out);
        };
        for port in 1000..1010u16 {
            // The handshake fixes the next sequence number at 1; then 1001.. arrives first.
            feed(&mut streams, port, 0, tcp_flags::SYN, &[]);
            feed(&mut streams, port, 0, tcp_flags::SYN | tcp_flags::ACK, &[]);
            feed(&mut streams, port, 1, tcp_flags::ACK, b"Q");
            for k in 0..3u32 {
                feed(
                    &mut streams,
                    port,
                    1001 + k * 1000,
                    tcp_flags::ACK,
                    &payload,
                );
                assert!(
                    streams.held_bytes() <= 10_000,
                    "held {} > budget",
                    streams.held_bytes()
                );
            }
        }
        assert!(streams.stats.held_budget_flushes > 0);
        assert!(streams.held_bytes() > 0, "the others keep theirs");
        let held: usize = streams
            .conns
            .values()
            .map(|c| c.dirs[0].held_bytes + c.dirs[1].held_bytes)
            .sum();
        assert_eq!(held, streams.held_bytes(), "the running total is the sum");
        streams.expire(u64::MAX, true, &clock, &mut out);
        assert_eq!(streams.held_bytes(), 0);
    }
}
