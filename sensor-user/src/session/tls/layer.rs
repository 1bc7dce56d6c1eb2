//! The TLS layer of one connection: frames records per direction, reads the clear hellos,
//! takes the keys from the store (waiting a bounded while when they are late), opens records
//! with the epoch's keys, and gives the plaintext of application data back record by record.
//!
//! - **TLS 1.3.** Outer type 23 is protected. Each side starts in its handshake epoch
//!   (`*_HANDSHAKE_TRAFFIC_SECRET`) and moves to `*_TRAFFIC_SECRET_0` after its own Finished;
//!   a KeyUpdate moves it to the next generation (RFC 8446 §7.2). Inner content type and
//!   padding are taken off (§5.4).
//! - **TLS 1.2.** Each side's records are protected from its ChangeCipherSpec on, with keys
//!   from the `CLIENT_RANDOM` master secret; GCM records carry their explicit nonce.
//! - **Loss.** A record cut by a gap is skipped to its end (the header says where). When a gap
//!   swallows a header, framing is found again by scanning for a record header that opens.
//!   A lost record shifts the sequence number: the next record is tried at up to `WINDOW`
//!   sequence numbers past the expected one (and, in the handshake epoch, at the first ones
//!   of the next epoch, in case the Finished was lost); only the AEAD tag decides. The
//!   decoder is told of every lost record as a [`Gap::AtMost`].

use super::cipher::{DirKeys, Suite, tls12_keys, tls13_keys, tls13_next_secret};
use super::hello::{self, ClientHello, ServerHello};
use super::keys::{KeyStore, Secret, Secrets};
use super::timing::Timing;
use crate::decode::{Dir, Gap};
use crate::model::{DecoderStats, TlsInfo, TurnFigures, Undecryptable};
use crate::session::{Layer, Piece};
use std::collections::VecDeque;

/// Largest protected record: 2^14 plaintext + 2048 expansion (RFC 5246 §6.2.3; 1.3 allows 256).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// How many sequence numbers past the expected one a record is tried at.
const WINDOW: u64 = 32;
/// Handshake message bytes kept while a message is incomplete (a certificate chain).
const MAX_HANDSHAKE: usize = 256 * 1024;
/// Push times remembered per direction (to date records).
const MAX_ARRIVALS: usize = 4096;
/// Candidate boundaries tried after framing was lost before the session is given up.
const MAX_RESYNC_TRIES: u32 = 16;
/// Consecutive records that fail to open, with keys and no record yet opened, before the
/// keys are judged wrong.
const BAD_KEY_AFTER: u32 = 3;

const CT_CCS: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APP: u8 = 23;

const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_CERTIFICATE: u8 = 11;
const HS_FINISHED: u8 = 20;
const HS_KEY_UPDATE: u8 = 24;

/// How long and how much ciphertext a connection holds while its keys are late.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    /// Bytes per direction.
    pub bytes: usize,
    /// Capture-time nanoseconds since the first record that needed the keys.
    pub wait_ns: u64,
    /// Bytes all connections together hold for keys; a connection that would go past it is
    /// counted `no_key` at once.
    pub total: usize,
}

impl Default for Hold {
    fn default() -> Self {
        Self {
            bytes: 1 << 20,
            wait_ns: 10_000_000_000,
            total: 64 << 20,
        }
    }
}

/// What every connection's layer holds for late keys, together.
#[derive(Debug, Default)]
pub struct HoldBudget {
    held: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl HoldBudget {
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hellos not both seen, or keys not yet had.
    Opening,
    /// Keys in hand.
    Reading,
    Failed(Undecryptable),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Epoch {
    /// TLS 1.3 handshake traffic keys.
    Handshake,
    /// TLS 1.3 application traffic keys (generation), or TLS 1.2's only keys.
    Traffic(u32),
}

#[derive(Default)]
struct Side {
    /// Wire bytes not yet taken, from `start`; `base` is the stream offset of `wire[0]`.
    wire: Vec<u8>,
    start: usize,
    base: u64,
    /// Stream offset just past each push, and its time: a record is as old as the push that
    /// completed it.
    arrivals: VecDeque<(u64, u64)>,
    /// Bytes still to drop: the rest of a record a gap cut.
    skip: u64,
    /// Framing lost: the next record boundary must be found.
    lost: bool,
    /// Lost bytes not yet reported to the decoder, and when.
    lost_bytes: u64,
    lost_ts: u64,
    /// Handshake messages being put together.
    hs: Vec<u8>,
    /// Records of this side are protected (1.2: after its ChangeCipherSpec).
    protected: bool,
    epoch: Option<Epoch>,
    keys: Option<DirKeys>,
    /// TLS 1.3: the epoch's traffic secret (KeyUpdate derives the next one from it).
    secret: Option<Secret>,
    seq: u64,
    /// Records of this side that opened, and consecutive ones that did not.
    opened: u64,
    failures: u32,
    /// TLS 1.3 without the handshake secrets: the encrypted handshake records cannot open.
    no_handshake_keys: bool,
    /// Candidate record boundaries tried since framing was lost.
    resync_tries: u32,
}

impl Side {
    fn avail(&self) -> &[u8] {
        &self.wire[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        // Arrivals wholly before what is left are no longer asked about.
        let off = self.base + self.start as u64;
        while self.arrivals.len() > 1 && self.arrivals[0].0 <= off {
            self.arrivals.pop_front();
        }
        if self.start == self.wire.len() {
            self.base += self.start as u64;
            self.wire.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.wire.len() {
            self.base += self.start as u64;
            self.wire.drain(..self.start);
            self.start = 0;
        }
    }

    /// When the bytes up to stream offset `end` had all arrived.
    fn ts_at(&mut self, end: u64) -> u64 {
        while self.arrivals.len() > 1 && self.arrivals[0].0 < end {
            self.arrivals.pop_front();
        }
        self.arrivals.front().map_or(0, |a| a.1)
    }

    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }
}

/// One connection's TLS layer (see the module documentation).
pub struct TlsLayer {
    store: KeyStore,
    hold: Hold,
    budget: std::sync::Arc<HoldBudget>,
    /// Of the budget, what this layer holds.
    accounted: usize,
    sides: [Side; 2],
    client_hello: Option<ClientHello>,
    server_hello: Option<ServerHello>,
    suite: Option<Suite>,
    secrets: Option<Secrets>,
    state: State,
    /// When the first record that needed keys waited for them.
    waiting_since: Option<u64>,
    info: TlsInfo,
    reported: bool,
    /// A piece made ready by [`Layer::next_ts`] and not yet taken, per direction, and a
    /// spare plaintext buffer.
    stash: [Option<(Piece, Vec<u8>)>; 2],
    spare: Vec<u8>,
    /// Once the session cannot be read: its turns, estimated from record boundaries.
    timing: Option<Timing>,
    /// The decoder left: nothing more is taken.
    stopped: bool,
}

fn idx(dir: Dir) -> usize {
    match dir {
        Dir::Request => 0,
        Dir::Response => 1,
    }
}

/// The result of one record.
enum Step {
    /// Plaintext application data is in `out`.
    Data(u64),
    /// Lost bytes to tell the decoder of.
    Gap(u64, u64),
    /// Nothing for the decoder; go on.
    Next,
    /// Wait for more bytes (or for keys).
    Wait,
}

impl TlsLayer {
    pub fn new(store: KeyStore, hold: Hold, budget: std::sync::Arc<HoldBudget>) -> Self {
        Self {
            store,
            hold,
            budget,
            accounted: 0,
            sides: Default::default(),
            client_hello: None,
            server_hello: None,
            suite: None,
            secrets: None,
            state: State::Opening,
            waiting_since: None,
            info: TlsInfo::default(),
            reported: false,
            stash: [None, None],
            spare: Vec::new(),
            timing: None,
            stopped: false,
        }
    }

    /// The next piece of side `d`, if one can be made now.
    fn produce(&mut self, d: usize, out: &mut Vec<u8>, stats: &mut DecoderStats) -> Option<Piece> {
        loop {
            if let State::Failed(_) = self.state {
                return Some(Piece::Opaque);
            }
            match self.step(d, out, stats) {
                Step::Data(ts) => return Some(Piece::Data { ts }),
                Step::Gap(ts, n) => {
                    return Some(Piece::Gap {
                        ts,
                        gap: Gap::AtMost(n),
                    });
                }
                Step::Next => continue,
                Step::Wait => {
                    return match self.state {
                        State::Failed(_) => Some(Piece::Opaque),
                        _ => None,
                    };
                }
            }
        }
    }

    /// TLS 1.3 was chosen (a HelloRetryRequest exists only in 1.3).
    fn tls13(&self) -> bool {
        self.server_hello.is_some_and(|s| s.version == 0x0304) || self.info.hello_retry
    }

    /// Gives back what this layer held for keys.
    fn release(&mut self) {
        if self.accounted > 0 {
            self.budget
                .held
                .fetch_sub(self.accounted, std::sync::atomic::Ordering::Relaxed);
            self.accounted = 0;
        }
    }

    fn fail(&mut self, why: Undecryptable) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        self.release();
        self.state = State::Failed(why);
        let framed = matches!(
            why,
            Undecryptable::NoKey
                | Undecryptable::BadKey
                | Undecryptable::Suite
                | Undecryptable::Version
        );
        if framed && self.client_hello.is_some() && self.server_hello.is_some() {
            self.start_timing();
        }
        // What was held for the keys can never be read: let it go.
        for s in &mut self.sides {
            s.base += s.wire.len() as u64 - s.start as u64;
            s.wire = Vec::new();
            s.start = 0;
            s.hs = Vec::new();
            s.arrivals.clear();
        }
    }

    /// From now on, turns are estimated; the records held so far go first, in the order they
    /// completed on the wire.
    fn start_timing(&mut self) {
        let mut t = Timing::new(self.tls13());
        let mut records: Vec<(u64, usize, usize, usize)> = Vec::new();
        let mut rest = [0usize; 2];
        for (d, side) in self.sides.iter().enumerate() {
            let a = side.avail();
            let mut arrivals = side.arrivals.iter().peekable();
            let mut at = 0;
            while a.len() - at >= 5 {
                let len = 5 + u16::from_be_bytes([a[at + 3], a[at + 4]]) as usize;
                if a.len() - at < len {
                    break;
                }
                let end = side.offset() + (at + len) as u64;
                while arrivals.next_if(|(e, _)| *e < end).is_some() {}
                let ts = arrivals.peek().map_or(0, |x| x.1);
                records.push((ts, d, at, at + len));
                at += len;
            }
            rest[d] = at;
        }
        records.sort_by_key(|r| (r.0, r.1));
        for (ts, d, from, to) in records {
            t.push(d, ts, &self.sides[d].avail()[from..to]);
        }
        for (d, side) in self.sides.iter().enumerate() {
            let ts = side.arrivals.back().map_or(0, |x| x.1);
            t.push(d, ts, &side.avail()[rest[d]..]);
        }
        self.timing = Some(t);
    }

    /// One record (or a wait) from `dir`'s wire bytes.
    fn step(&mut self, d: usize, out: &mut Vec<u8>, stats: &mut DecoderStats) -> Step {
        // While keys are awaited, a loss waits too: the records before it (either side) are
        // held, and the decoder must hear of them first.
        let waiting = self.state == State::Opening && self.waiting_since.is_some();
        let side = &mut self.sides[d];
        if side.lost_bytes > 0 && !waiting {
            let (n, ts) = (side.lost_bytes, side.lost_ts);
            side.lost_bytes = 0;
            return Step::Gap(ts, n);
        }
        if side.skip > 0 {
            let n = (side.skip as usize).min(side.avail().len());
            side.skip -= n as u64;
            side.consume(n);
            if side.skip > 0 {
                return Step::Wait;
            }
        }
        if side.lost {
            return self.resync(d, out, stats);
        }
        let a = side.avail();
        if a.len() < 5 {
            return Step::Wait;
        }
        let (typ, major, len) = (a[0], a[1], u16::from_be_bytes([a[3], a[4]]) as usize);
        if !(CT_CCS..=CT_APP).contains(&typ) || major != 3 || len > MAX_RECORD {
            if self.client_hello.is_none() && self.server_hello.is_none() {
                self.fail(Undecryptable::NotTls);
                return Step::Wait;
            }
            let side = &mut self.sides[d];
            side.lost = true;
            stats.resyncs += 1;
            return Step::Next;
        }
        if a.len() < 5 + len {
            if self.state == State::Opening
                && self.waiting_since.is_some()
                && a.len() > self.hold.bytes
            {
                self.fail(Undecryptable::NoKey);
            }
            return Step::Wait;
        }
        if typ == CT_APP
            && d == 0
            && self.client_hello.is_some()
            && self.server_hello.is_none()
            && !self.info.hello_retry
        {
            // The client's protected records may be looked at before the server's hello
            // that says how to read them (both directions taken in one call): wait for it,
            // within the bounds of a wait for keys.
            let end = self.sides[d].offset() + 5 + len as u64;
            let ts = self.sides[d].ts_at(end);
            let _ = self.wait(d, ts, Undecryptable::NoHandshake);
            return Step::Wait;
        }
        let protected = if self.tls13() {
            typ == CT_APP
        } else {
            self.sides[d].protected
        };
        if !protected {
            let end = self.sides[d].offset() + 5 + len as u64;
            let ts = self.sides[d].ts_at(end);
            let body = self.sides[d].avail()[5..5 + len].to_vec();
            self.sides[d].consume(5 + len);
            match typ {
                CT_HANDSHAKE => self.clear_handshake(d, &body),
                CT_CCS => {
                    if !self.tls13() {
                        let side = &mut self.sides[d];
                        side.protected = true;
                        side.seq = 0;
                    }
                }
                // Alerts in the clear (a refused handshake); application data before any
                // protection is not TLS as negotiated.
                CT_ALERT => {}
                _ => self.fail(Undecryptable::NoHandshake),
            }
            let _ = ts;
            return Step::Next;
        }
        let end = self.sides[d].offset() + 5 + len as u64;
        let ts = self.sides[d].ts_at(end);
        match self.ensure_keys(d, ts) {
            Some(true) => {}
            Some(false) => return Step::Wait,
            None => return Step::Wait,
        }
        let rec = self.sides[d].avail()[..5 + len].to_vec();
        self.sides[d].consume(5 + len);
        self.protected_record(d, &rec, ts, out, stats)
    }

    /// Opens a protected record and acts on what is inside.
    fn protected_record(
        &mut self,
        d: usize,
        rec: &[u8],
        ts: u64,
        out: &mut Vec<u8>,
        stats: &mut DecoderStats,
    ) -> Step {
        match self.open(d, rec, out, stats) {
            Some(inner) => {
                stats.tls_records += 1;
                let side = &mut self.sides[d];
                side.opened += 1;
                side.failures = 0;
                if !self.info.decrypted {
                    self.info.decrypted = true;
                }
                match inner {
                    CT_APP => Step::Data(ts),
                    CT_HANDSHAKE => {
                        let body = std::mem::take(out);
                        self.protected_handshake(d, &body);
                        *out = body;
                        out.clear();
                        Step::Next
                    }
                    _ => Step::Next,
                }
            }
            None => {
                let side = &mut self.sides[d];
                side.failures += 1;
                // The handshake flight's records (up to ~6) when its secrets are not logged.
                let allowed = if side.no_handshake_keys && side.opened == 0 {
                    BAD_KEY_AFTER + 8
                } else if self.info.decrypted {
                    // Readable before, unreadable now for this long: keys changed unseen.
                    BAD_KEY_AFTER * 20
                } else {
                    BAD_KEY_AFTER
                };
                if side.failures >= allowed {
                    self.fail(Undecryptable::BadKey);
                    return Step::Wait;
                }
                stats.tls_records_lost += 1;
                Step::Gap(ts, (rec.len() - 5) as u64)
            }
        }
    }

    /// `Some(true)`: this side has keys. `Some(false)`: waiting for them (held). `None`: the
    /// session failed.
    fn ensure_keys(&mut self, d: usize, ts: u64) -> Option<bool> {
        if let State::Failed(_) = self.state {
            return None;
        }
        if self.sides[d].keys.is_some() {
            return Some(true);
        }
        let (Some(ch), Some(sh)) = (&self.client_hello, self.server_hello) else {
            if self.client_hello.is_none() {
                self.fail(Undecryptable::NoHandshake);
                return None;
            }
            return self.wait(d, ts, Undecryptable::NoHandshake);
        };
        let client_random = ch.random;
        let suite = *self.suite.get_or_insert(Suite::from_id(sh.suite));
        // Look again while what this side needs is missing: a key log's lines for one
        // session arrive one by one (a forwarder), and the first look may see only some.
        let needs = |s: &Secrets| {
            if sh.version == 0x0304 {
                (if d == 0 {
                    &s.client_traffic
                } else {
                    &s.server_traffic
                })
                .is_some()
            } else {
                s.master.is_some()
            }
        };
        if !self.secrets.as_ref().is_some_and(needs)
            && let Some(fresh) = self.store.get(&client_random)
        {
            self.secrets = Some(fresh);
        }
        let Some(secrets) = &self.secrets else {
            return self.wait(d, ts, Undecryptable::NoKey);
        };
        if sh.version == 0x0304 {
            let side = &self.sides[d];
            let epoch = side.epoch.unwrap_or(Epoch::Handshake);
            let secret = match (d, epoch) {
                (0, Epoch::Handshake) => secrets.client_handshake.clone(),
                (1, Epoch::Handshake) => secrets.server_handshake.clone(),
                (0, Epoch::Traffic(_)) => secrets.client_traffic.clone(),
                (1, Epoch::Traffic(_)) => secrets.server_traffic.clone(),
                _ => None,
            };
            // A log with only the traffic secrets (some writers leave the handshake ones
            // out): start in the traffic epoch; the handshake records will not open.
            let (epoch, secret) = match (epoch, secret) {
                (e, Some(s)) => (e, s),
                (Epoch::Handshake, None) => {
                    let s = if d == 0 {
                        secrets.client_traffic.clone()
                    } else {
                        secrets.server_traffic.clone()
                    };
                    match s {
                        Some(s) => {
                            self.sides[d].no_handshake_keys = true;
                            (Epoch::Traffic(0), s)
                        }
                        None => return self.wait(d, ts, Undecryptable::NoKey),
                    }
                }
                (_, None) => return self.wait(d, ts, Undecryptable::NoKey),
            };
            let Some(keys) = tls13_keys(&suite, &secret) else {
                self.fail(Undecryptable::BadKey);
                return None;
            };
            let side = &mut self.sides[d];
            side.keys = Some(keys);
            side.secret = Some(secret);
            side.epoch = Some(epoch);
        } else {
            let Some(master) = &secrets.master else {
                return self.wait(d, ts, Undecryptable::NoKey);
            };
            let Some((ck, sk)) = tls12_keys(&suite, master, &client_random, &sh.random) else {
                self.fail(Undecryptable::BadKey);
                return None;
            };
            for (side, k) in self.sides.iter_mut().zip([ck, sk]) {
                if side.keys.is_none() {
                    side.keys = Some(k);
                    side.epoch = Some(Epoch::Traffic(0));
                }
            }
        }
        self.state = State::Reading;
        // What waited is read from now on: no longer held for keys.
        self.release();
        Some(true)
    }

    /// Keys are not there yet: hold the record, within the bounds.
    fn wait(&mut self, d: usize, ts: u64, why: Undecryptable) -> Option<bool> {
        let since = *self.waiting_since.get_or_insert(ts);
        // How long it has waited: by the latest bytes of either side, not by the held record
        // (which does not change while it waits).
        let ts = self
            .sides
            .iter()
            .filter_map(|s| s.arrivals.back().map(|a| a.1))
            .max()
            .unwrap_or(ts)
            .max(ts);
        let held: usize = self.sides.iter().map(|s| s.avail().len()).sum();
        if held > self.accounted {
            let more = held - self.accounted;
            let now = self
                .budget
                .held
                .fetch_add(more, std::sync::atomic::Ordering::Relaxed)
                + more;
            self.budget
                .peak
                .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
            self.accounted = held;
        }
        if ts.saturating_sub(since) > self.hold.wait_ns
            || self.sides[d].avail().len() > self.hold.bytes
            || self.budget.held() > self.hold.total
        {
            self.fail(why);
            return None;
        }
        Some(false)
    }

    /// Tries the record at the expected sequence number, then past it, then (1.3, handshake
    /// epoch) at the start of the traffic epoch. On success the plaintext is in `out` and
    /// the inner content type is returned.
    fn open(
        &mut self,
        d: usize,
        rec: &[u8],
        out: &mut Vec<u8>,
        stats: &mut DecoderStats,
    ) -> Option<u8> {
        let r = self.open_at(d, rec, out);
        if let Some((_, skipped)) = r {
            // Records that never came (lost whole, with their headers).
            stats.tls_records_lost += skipped;
        }
        r.map(|(t, _)| t)
    }

    /// [`Self::open`], with how many sequence numbers the record was past the expected one.
    fn open_at(&mut self, d: usize, rec: &[u8], out: &mut Vec<u8>) -> Option<(u8, u64)> {
        let tls13 = self.tls13();
        let seq = self.sides[d].seq;
        if let Some(t) = self.try_keys(d, rec, seq..seq + 1, out) {
            return Some((t, 0));
        }
        if let Some(t) = self.try_keys(d, rec, seq + 1..seq + WINDOW, out) {
            return Some((t, self.sides[d].seq - 1 - seq));
        }
        if tls13 && self.sides[d].epoch == Some(Epoch::Handshake) && self.next_epoch(d) {
            if let Some(t) = self.try_keys(d, rec, 0..WINDOW, out) {
                // The handshake's last record(s) (its Finished) and any before this one.
                return Some((t, self.sides[d].seq));
            }
            // Not the traffic epoch after all: back to the handshake keys.
            let side = &mut self.sides[d];
            side.keys = None;
            side.secret = None;
            side.epoch = Some(Epoch::Handshake);
            side.seq = seq;
            let _ = self.ensure_keys(d, 0);
        }
        None
    }

    fn try_keys(
        &mut self,
        d: usize,
        rec: &[u8],
        seqs: std::ops::Range<u64>,
        out: &mut Vec<u8>,
    ) -> Option<u8> {
        let tls13 = self.tls13();
        let side = &mut self.sides[d];
        let keys = side.keys.as_ref()?;
        let (header, body) = rec.split_at(5);
        let explicit = !tls13 && keys.explicit_nonce;
        let skip = if explicit { 8 } else { 0 };
        if body.len() < skip + 16 {
            return None;
        }
        let (nonce_part, rest) = body.split_at(skip);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let tag: &[u8; 16] = tag.try_into().ok()?;
        for seq in seqs {
            let nonce = keys.nonce(seq, explicit.then_some(nonce_part));
            let aad12;
            let aad: &[u8] = if tls13 {
                header
            } else {
                let mut a = [0u8; 13];
                a[..8].copy_from_slice(&seq.to_be_bytes());
                a[8..11].copy_from_slice(&header[..3]);
                a[11..].copy_from_slice(&(ct.len() as u16).to_be_bytes());
                aad12 = a;
                &aad12
            };
            out.clear();
            out.extend_from_slice(ct);
            if keys.cipher.open(&nonce, aad, out, tag) {
                side.seq = seq + 1;
                if !tls13 {
                    return Some(header[0]);
                }
                // TLSInnerPlaintext: content, type, zero padding (RFC 8446 §5.4).
                let end = out.iter().rposition(|&b| b != 0)?;
                let inner = out[end];
                out.truncate(end);
                return Some(inner);
            }
        }
        None
    }

    /// TLS 1.3: this side moves to its next traffic epoch.
    fn next_epoch(&mut self, d: usize) -> bool {
        let Some(suite) = self.suite else {
            return false;
        };
        // The traffic secret may have come after the handshake's.
        let has_traffic = |s: &Secrets| {
            (if d == 0 {
                &s.client_traffic
            } else {
                &s.server_traffic
            })
            .is_some()
        };
        if self.sides[d].epoch == Some(Epoch::Handshake)
            && !self.secrets.as_ref().is_some_and(has_traffic)
            && let Some(ch) = &self.client_hello
            && let Some(fresh) = self.store.get(&ch.random)
        {
            self.secrets = Some(fresh);
        }
        let side = &self.sides[d];
        let next = match side.epoch {
            Some(Epoch::Handshake) => {
                let s = self.secrets.as_ref().and_then(|s| {
                    if d == 0 {
                        s.client_traffic.clone()
                    } else {
                        s.server_traffic.clone()
                    }
                });
                s.map(|s| (Epoch::Traffic(0), s))
            }
            Some(Epoch::Traffic(g)) => side.secret.as_ref().map(|s| {
                (
                    Epoch::Traffic(g.saturating_add(1)),
                    tls13_next_secret(&suite, s),
                )
            }),
            None => None,
        };
        let Some((epoch, secret)) = next else {
            return false;
        };
        let Some(keys) = tls13_keys(&suite, &secret) else {
            return false;
        };
        let side = &mut self.sides[d];
        side.keys = Some(keys);
        side.secret = Some(secret);
        side.epoch = Some(epoch);
        side.seq = 0;
        true
    }

    /// Handshake messages in the clear: the hellos.
    fn clear_handshake(&mut self, d: usize, body: &[u8]) {
        for (typ, msg) in self.messages(d, body) {
            match (d, typ) {
                (0, HS_CLIENT_HELLO) => {
                    if let Some(ch) = hello::client_hello(&msg) {
                        // After a HelloRetryRequest the client says hello again with the
                        // same random; the first hello names the session.
                        if self.client_hello.is_none() {
                            self.info.sni = ch.sni.clone();
                            self.info.alpn = ch.alpn.clone();
                            self.info.ja4 = Some(hello::ja4(&ch));
                        }
                        self.client_hello = Some(ch);
                    }
                }
                (1, HS_CERTIFICATE) if self.info.certificate.is_none() => {
                    self.info.certificate = super::cert::first_of_message(&msg, false);
                }
                (1, HS_SERVER_HELLO) => {
                    let Some(sh) = hello::server_hello(&msg) else {
                        continue;
                    };
                    if sh.retry {
                        self.info.hello_retry = true;
                        continue;
                    }
                    let suite = Suite::from_id(sh.suite);
                    self.info.version = Some(hello::version_name(sh.version));
                    self.info.suite = Some(suite.display());
                    self.server_hello = Some(sh);
                    self.suite = Some(suite);
                    if sh.version < 0x0303 {
                        self.fail(Undecryptable::Version);
                    } else if suite.aead.is_none() {
                        self.fail(Undecryptable::Suite);
                    }
                }
                _ => {}
            }
        }
    }

    /// Protected handshake messages: Finished ends a 1.3 side's handshake epoch; KeyUpdate
    /// moves it to the next generation.
    fn protected_handshake(&mut self, d: usize, body: &[u8]) {
        if !self.tls13() {
            return;
        }
        for (typ, msg) in self.messages(d, body) {
            let epoch = self.sides[d].epoch;
            match typ {
                // The handshake's Finished ends its epoch; a KeyUpdate moves a traffic epoch
                // on. Nothing may follow either in its record (RFC 8446 §5.1): the rest is
                // dropped, so one record cannot force thousands of key changes.
                HS_FINISHED if epoch == Some(Epoch::Handshake) => {
                    let _ = self.next_epoch(d);
                    self.sides[d].hs.clear();
                    break;
                }
                HS_KEY_UPDATE if matches!(epoch, Some(Epoch::Traffic(_))) => {
                    let _ = self.next_epoch(d);
                    self.sides[d].hs.clear();
                    break;
                }
                HS_CERTIFICATE if d == 1 && self.info.certificate.is_none() => {
                    self.info.certificate = super::cert::first_of_message(&msg, true);
                }
                _ => {}
            }
        }
    }

    /// Whole handshake messages from `body` and what was left over before it.
    fn messages(&mut self, d: usize, body: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let hs = &mut self.sides[d].hs;
        hs.extend_from_slice(body);
        let mut msgs = Vec::new();
        let mut at = 0;
        while hs.len() - at >= 4 {
            let len = u32::from_be_bytes([0, hs[at + 1], hs[at + 2], hs[at + 3]]) as usize;
            if hs.len() - at - 4 < len {
                break;
            }
            msgs.push((hs[at], hs[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        hs.drain(..at);
        if hs.len() > MAX_HANDSHAKE {
            hs.clear();
        }
        msgs
    }

    /// Framing was lost: find a record header whose record opens with this side's keys.
    fn resync(&mut self, d: usize, out: &mut Vec<u8>, stats: &mut DecoderStats) -> Step {
        if self.sides[d].keys.is_none() {
            if self.client_hello.is_none() || self.server_hello.is_none() {
                // Nothing can confirm a boundary without the hellos: the session stays unread.
                self.fail(Undecryptable::NoHandshake);
                return Step::Wait;
            }
            // Only the tag can confirm a boundary: wait for the keys (within the bounds of any
            // wait for keys), then look.
            let ts = self.sides[d].arrivals.back().map_or(0, |a| a.1);
            if self.ensure_keys(d, ts) != Some(true) {
                return Step::Wait;
            }
        }
        let mut i = 0;
        loop {
            if self.sides[d].resync_tries >= MAX_RESYNC_TRIES {
                // Nothing opens where framing could be: the keys no longer match (a KeyUpdate
                // lost with its record), or the bytes are not this session's.
                self.fail(Undecryptable::BadKey);
                return Step::Wait;
            }
            let a = self.sides[d].avail();
            let Some(off) = a[i..]
                .windows(3)
                .position(|w| (CT_ALERT..=CT_APP).contains(&w[0]) && w[1] == 3 && w[2] <= 4)
            else {
                // Keep what could still start a header.
                let keep = a.len().min(2);
                let drop = a.len() - keep;
                let side = &mut self.sides[d];
                side.consume(drop);
                side.lost_bytes += drop as u64;
                return Step::Wait;
            };
            let at = i + off;
            if a.len() < at + 5 {
                let side = &mut self.sides[d];
                side.consume(at);
                side.lost_bytes += at as u64;
                return Step::Wait;
            }
            let len = u16::from_be_bytes([a[at + 3], a[at + 4]]) as usize;
            if (16..=MAX_RECORD).contains(&len) {
                if a.len() < at + 5 + len {
                    // The candidate's record is not all here yet.
                    if a.len() - at > 2 * MAX_RECORD {
                        i = at + 1;
                        continue;
                    }
                    let side = &mut self.sides[d];
                    side.consume(at);
                    side.lost_bytes += at as u64;
                    return Step::Wait;
                }
                let rec = a[at..at + 5 + len].to_vec();
                let end = self.sides[d].offset() + (at + 5 + len) as u64;
                if let Some(inner) = self.open(d, &rec, out, stats) {
                    let ts = self.sides[d].ts_at(end);
                    let side = &mut self.sides[d];
                    side.consume(at + 5 + len);
                    side.lost_bytes += at as u64;
                    side.lost = false;
                    side.resync_tries = 0;
                    stats.tls_records += 1;
                    side.opened += 1;
                    return match inner {
                        CT_APP => Step::Data(ts),
                        CT_HANDSHAKE => {
                            let body = std::mem::take(out);
                            self.protected_handshake(d, &body);
                            Step::Next
                        }
                        _ => Step::Next,
                    };
                }
                self.sides[d].resync_tries += 1;
            }
            i = at + 1;
        }
    }
}

impl Drop for TlsLayer {
    fn drop(&mut self) {
        self.release();
    }
}

impl Layer for TlsLayer {
    fn push(&mut self, dir: Dir, ts: u64, wire: &[u8]) {
        if self.stopped {
            return;
        }
        if let State::Failed(_) = self.state {
            if let Some(t) = &mut self.timing {
                t.push(idx(dir), ts, wire);
            }
            return;
        }
        let side = &mut self.sides[idx(dir)];
        side.wire.extend_from_slice(wire);
        let end = side.base + side.wire.len() as u64;
        // Bounded: pushes at one time are one entry, and past the cap the last entry grows
        // (its bytes are then dated by the latest of them).
        let full = side.arrivals.len() >= MAX_ARRIVALS;
        match side.arrivals.back_mut() {
            Some(b) if b.1 == ts || full => {
                b.0 = end;
                b.1 = b.1.max(ts);
            }
            _ => side.arrivals.push_back((end, ts)),
        }
    }

    fn gap(&mut self, dir: Dir, ts: u64, gap: Gap) {
        if self.stopped {
            return;
        }
        if let State::Failed(_) = self.state {
            if let Some(t) = &mut self.timing {
                t.gap();
            }
            return;
        }
        let d = idx(dir);
        let handshake_done = self.server_hello.is_some() && self.sides[d].keys.is_some();
        let side = &mut self.sides[d];
        let n = gap.len();
        let a = side.avail();
        let partial = a.len() as u64;
        let header = (a.len() >= 5).then(|| 5 + u16::from_be_bytes([a[3], a[4]]) as u64);
        side.lost_ts = ts;
        match (gap, header) {
            (Gap::Exact(_), Some(rec)) if !side.lost => {
                // The whole record is lost (its plaintext is at most its length).
                side.lost_bytes += (n + partial).max(rec);
                if partial + n < rec {
                    side.skip = rec - partial - n;
                } else if partial + n > rec {
                    side.lost = true;
                }
            }
            (Gap::Exact(_), None) if !side.lost && partial == 0 && side.skip >= n => {
                // Inside the rest of a record already counted lost.
                side.skip -= n;
            }
            _ => {
                side.lost_bytes += n + partial;
                side.lost = true;
            }
        }
        let consumed = side.avail().len();
        side.consume(consumed);
        side.base += n;
        if !handshake_done && (self.client_hello.is_none() || self.server_hello.is_none()) {
            self.fail(Undecryptable::NoHandshake);
        }
    }

    fn next_ts(&mut self, dir: Dir, stats: &mut DecoderStats) -> Option<u64> {
        let d = idx(dir);
        if self.stash[d].is_none() {
            let mut buf = std::mem::take(&mut self.spare);
            match self.produce(d, &mut buf, stats) {
                Some(p) => self.stash[d] = Some((p, buf)),
                None => self.spare = buf,
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
        Some(piece)
    }

    fn finish(self: Box<Self>) -> [Vec<u8>; 2] {
        [
            self.sides[0].avail().to_vec(),
            self.sides[1].avail().to_vec(),
        ]
    }

    fn turns(&mut self, closing: bool, out: &mut Vec<TurnFigures>) {
        if let Some(t) = &mut self.timing {
            if closing {
                t.close();
            }
            out.append(&mut t.done);
        }
    }

    fn stop(&mut self) {
        self.release();
        self.stopped = true;
        self.timing = None;
        for s in &mut self.sides {
            s.wire = Vec::new();
            s.start = 0;
            s.hs = Vec::new();
            s.arrivals.clear();
        }
        self.stash = [None, None];
    }

    fn expire(&mut self, now: u64) {
        if self.waiting_until().is_some_and(|until| now > until) {
            self.fail(if self.server_hello.is_some() {
                Undecryptable::NoKey
            } else {
                Undecryptable::NoHandshake
            });
        }
    }

    fn wants_whole(&self) -> bool {
        // From the switch on, when keys can come (a hello or a record the payload cap cut is
        // lost for good); not once the session is given up.
        self.hold.total > 0 && !self.stopped && !matches!(self.state, State::Failed(_))
    }

    fn waiting_until(&self) -> Option<u64> {
        if self.stopped {
            return None;
        }
        match self.state {
            State::Opening => self
                .waiting_since
                .map(|since| since.saturating_add(self.hold.wait_ns)),
            _ => None,
        }
    }

    fn negotiated(&self) -> Option<(String, String)> {
        Some((self.info.version.clone()?, self.info.suite.clone()?))
    }

    fn report(&mut self, closing: bool, stats: &mut DecoderStats) -> Option<TlsInfo> {
        if self.reported {
            return None;
        }
        let mut info = match self.state {
            State::Failed(why) => {
                stats.count_undecryptable(why);
                TlsInfo {
                    undecryptable: Some(why),
                    ..self.info.clone()
                }
            }
            // In TLS 1.3 the certificate is inside: wait for it (or for the server's traffic
            // epoch, or the end) before reporting.
            _ if self.info.decrypted
                && (closing
                    || !self.tls13()
                    || self.info.certificate.is_some()
                    || matches!(self.sides[1].epoch, Some(Epoch::Traffic(_)))) =>
            {
                stats.tls_decrypted += 1;
                if self.waiting_since.is_some() {
                    stats.tls_keys_late += 1;
                }
                self.info.clone()
            }
            State::Opening if closing && self.waiting_since.is_some() => {
                let why = if self.server_hello.is_none() {
                    Undecryptable::NoHandshake
                } else {
                    Undecryptable::NoKey
                };
                stats.count_undecryptable(why);
                TlsInfo {
                    undecryptable: Some(why),
                    ..self.info.clone()
                }
            }
            _ if closing => self.info.clone(),
            _ => return None,
        };
        info.decrypted = self.info.decrypted;
        self.reported = true;
        Some(info)
    }
}
