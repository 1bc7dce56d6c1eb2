//! Request/response turns of a TLS session that cannot be read, from its record boundaries
//! and directions alone ([`TurnFigures`]): a turn starts with the client's first
//! application-data record after the server spoke, and ends with the server's last before the
//! client speaks again. Only record headers are read: nothing is held.
//!
//! In TLS 1.3 the client's Finished is itself an application-data record on the wire (RFC
//! 8446 §5.2): the client's first one is skipped. A lost segment ends the estimate (record
//! framing cannot be trusted after it without keys to confirm a boundary).

use crate::model::TurnFigures;

/// Largest record on the wire (RFC 5246 §6.2.3).
const MAX_RECORD: u64 = (1 << 14) + 2048;
/// Turns kept for the session to take (it takes them after every push).
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct Side {
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current record still to come.
    remain: u64,
    typ: u8,
    len: u64,
}

#[derive(Default)]
pub(super) struct Timing {
    sides: [Side; 2],
    /// The turn in progress.
    open: Option<TurnFigures>,
    skip_client: u32,
    /// Turns complete, not yet taken.
    pub(super) done: Vec<TurnFigures>,
    /// Framing was lost: nothing more is estimated.
    stopped: bool,
}

impl Timing {
    pub(super) fn new(tls13: bool) -> Self {
        Self {
            skip_client: u32::from(tls13),
            ..Self::default()
        }
    }

    /// Wire bytes of side `d` (0: client) that arrived at `ts`.
    pub(super) fn push(&mut self, d: usize, ts: u64, mut wire: &[u8]) {
        while !wire.is_empty() && !self.stopped {
            let s = &mut self.sides[d];
            if s.remain > 0 {
                let n = (s.remain as usize).min(wire.len());
                s.remain -= n as u64;
                wire = &wire[n..];
                if s.remain == 0 {
                    let (typ, len) = (s.typ, s.len);
                    self.record(d, typ, len, ts);
                }
                continue;
            }
            let n = (5 - s.have).min(wire.len());
            s.header[s.have..s.have + n].copy_from_slice(&wire[..n]);
            s.have += n;
            wire = &wire[n..];
            if s.have < 5 {
                continue;
            }
            s.have = 0;
            let h = s.header;
            let len = u64::from(u16::from_be_bytes([h[3], h[4]]));
            if !(20..=23).contains(&h[0]) || h[1] != 3 || len > MAX_RECORD {
                self.stopped = true;
                self.open = None;
                return;
            }
            s.typ = h[0];
            s.len = len;
            s.remain = len;
            if len == 0 {
                self.record(d, h[0], 0, ts);
            }
        }
    }

    /// Bytes were lost: the estimate ends here.
    pub(super) fn gap(&mut self) {
        self.stopped = true;
        self.open = None;
    }

    /// The session ended: the turn in progress, if the server answered it.
    pub(super) fn close(&mut self) {
        if let Some(t) = self.open.take()
            && t.records_response > 0
        {
            self.push_done(t);
        }
    }

    fn push_done(&mut self, t: TurnFigures) {
        if self.done.len() < MAX_PENDING {
            self.done.push(t);
        }
    }

    fn record(&mut self, d: usize, typ: u8, len: u64, ts: u64) {
        // Only application data: handshake, alerts and ChangeCipherSpec are no turn.
        if typ != 23 {
            return;
        }
        if d == 0 {
            if self.skip_client > 0 {
                self.skip_client -= 1;
                return;
            }
            match &mut self.open {
                Some(t) if t.records_response == 0 => {
                    // The request goes on (a long statement, a pipelined batch).
                    t.records_request += 1;
                    t.bytes_request += len;
                }
                _ => {
                    self.close();
                    self.open = Some(TurnFigures {
                        start_ns: ts,
                        records_request: 1,
                        bytes_request: len,
                        ..TurnFigures::default()
                    });
                }
            }
        } else if let Some(t) = &mut self.open {
            let us = ts.saturating_sub(t.start_ns) / 1000;
            if t.records_response == 0 {
                t.latency_first_byte_us = us;
            }
            t.latency_us = us;
            t.records_response += 1;
            t.bytes_response += len;
        }
        // A server record with no turn open (a session ticket): nothing to time.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(typ: u8, len: usize) -> Vec<u8> {
        let mut r = vec![typ, 3, 3, (len >> 8) as u8, len as u8];
        r.extend(std::iter::repeat_n(0xab, len));
        r
    }

    #[test]
    fn turns_from_record_directions_in_any_segmentation() {
        let script: Vec<(usize, u64, Vec<u8>)> = vec![
            (1, 1_000, rec(23, 40)), // server handshake flight (1.3): no turn open
            (0, 2_000, rec(23, 53)), // client Finished (1.3): skipped
            (0, 2_000, rec(23, 80)), // request
            (1, 5_000, rec(23, 100)),
            (1, 9_000, rec(23, 1000)),
            (0, 20_000, rec(23, 30)), // next request, in two records
            (0, 21_000, rec(23, 30)),
            (1, 30_000, rec(23, 10)),
        ];
        for chunk in [1usize, 3, 7, 5000] {
            let mut t = Timing::new(true);
            for (d, ts, bytes) in &script {
                for c in bytes.chunks(chunk) {
                    t.push(*d, *ts, c);
                }
            }
            t.close();
            assert_eq!(t.done.len(), 2, "chunk {chunk}");
            let (a, b) = (t.done[0], t.done[1]);
            assert_eq!(
                (a.start_ns, a.latency_first_byte_us, a.latency_us),
                (2_000, 3, 7)
            );
            assert_eq!(
                (a.bytes_request, a.bytes_response, a.records_response),
                (80, 1100, 2)
            );
            assert_eq!(
                (b.start_ns, b.records_request, b.latency_us),
                (20_000, 2, 10)
            );
        }
        let mut t = Timing::new(false);
        t.push(0, 1, &[0x47, 0x45, 0x54, 0x20, 0x2f]);
        t.push(0, 2, &rec(23, 5));
        assert!(t.done.is_empty() && t.stopped);
    }
}
