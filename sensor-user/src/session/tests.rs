//! The stack with a protocol and a layer made for the test: a decoder that switches to "TLS"
//! in the middle of a segment and back, and a layer that unwraps toy records.

use super::*;
use crate::{
    model::{DecoderStats, Protocol, QueryRecord, Record, Timestamp},
    testkit::{self, Harness, Run},
};

/// Lines of text. `STARTTLS` and `STOPTLS` (from the client) switch; every other client line
/// becomes a query record whose verb says whether it came through the layer.
#[derive(Default)]
struct Lines {
    partial: [Vec<u8>; 2],
    in_tls: bool,
    gaps: u64,
}

impl Decoder for Lines {
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts: u64, bytes: &[u8]) -> Control {
        let d = dir as usize;
        let mut from = 0;
        while let Some(nl) = bytes[from..].iter().position(|&b| b == b'\n') {
            let end = from + nl + 1;
            self.partial[d].extend_from_slice(&bytes[from..end - 1]);
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial[d])).into_owned();
            from = end;
            if dir == Dir::Response {
                continue;
            }
            match (line.as_str(), self.in_tls) {
                ("STARTTLS", false) => {
                    self.in_tls = true;
                    return Control::StartTls { at: end };
                }
                ("STOPTLS", true) => {
                    self.in_tls = false;
                    // What follows this record is plaintext; nothing else may be in it.
                    assert_eq!(end, bytes.len(), "STOPTLS ends its record");
                    return Control::StopTls;
                }
                _ => cx.out.push(Record::Query(QueryRecord {
                    ts: Timestamp(ts),
                    endpoint: cx.endpoint.clone(),
                    user: None,
                    database: None,
                    verb: if self.in_tls { "TLS" } else { "PLAIN" }.into(),
                    fingerprint: line,
                    query: None,
                    rows: None,
                    error_code: None,
                    error_name: None,
                    error_message: None,
                    bytes_request: 0,
                    bytes_response: 0,
                    latency_first_byte_us: None,
                    latency_us: 0,
                    prepared: false,
                    tag: None,
                })),
            }
        }
        self.partial[d].extend_from_slice(&bytes[from..]);
        Control::Continue
    }

    fn gap(&mut self, _: &mut DecodeCtx<'_>, dir: Dir, _: u64, gap: Gap) {
        // A line with a hole is not reported; framing is found again at the next line.
        assert!(
            matches!(gap, Gap::AtMost(_)),
            "the test's wire has no lost bytes"
        );
        self.gaps += 1;
        self.partial[dir as usize].clear();
    }

    fn close(&mut self, _: &mut DecodeCtx<'_>, _: u64) {}
}

/// Toy records: `0x17`, a length byte, the payload XORed with 0x5a. Another first byte makes
/// a record that cannot be read (its plaintext is a gap of at most its length).
#[derive(Default)]
struct Xor {
    wire: [Vec<u8>; 2],
    ts: [u64; 2],
}

fn record(plain: &[u8]) -> Vec<u8> {
    let mut r = vec![0x17, plain.len() as u8];
    r.extend(plain.iter().map(|b| b ^ 0x5a));
    r
}

impl Layer for Xor {
    fn push(&mut self, dir: Dir, ts: u64, wire: &[u8]) {
        self.wire[dir as usize].extend_from_slice(wire);
        self.ts[dir as usize] = ts;
    }

    fn gap(&mut self, _: Dir, _: u64, _: Gap) {
        unreachable!("the test's wire has no lost bytes");
    }

    fn next_ts(&mut self, dir: Dir, _: &mut DecoderStats) -> Option<u64> {
        let w = &self.wire[dir as usize];
        let len = *w.get(1)? as usize;
        (w.len() >= 2 + len).then_some(self.ts[dir as usize])
    }

    fn next(&mut self, dir: Dir, out: &mut Vec<u8>, _: &mut DecoderStats) -> Option<Piece> {
        let w = &mut self.wire[dir as usize];
        let len = *w.get(1)? as usize;
        if w.len() < 2 + len {
            return None;
        }
        let rec: Vec<u8> = w.drain(..2 + len).collect();
        let ts = self.ts[dir as usize];
        if rec[0] != 0x17 {
            return Some(Piece::Gap {
                ts,
                gap: Gap::AtMost(len as u64),
            });
        }
        out.clear();
        out.extend(rec[2..].iter().map(|b| b ^ 0x5a));
        Some(Piece::Data { ts })
    }

    fn finish(self: Box<Self>) -> [Vec<u8>; 2] {
        let [a, b] = self.wire;
        [a, b]
    }
}

fn conversation() -> Vec<(Dir, Vec<u8>)> {
    let mut c = Vec::new();
    // The switch in the middle of a segment: a plaintext line, STARTTLS, then a record.
    let mut seg = b"hello\nSTARTTLS\n".to_vec();
    seg.extend(record(b"secret one\n"));
    c.push((Dir::Request, seg));
    c.push((Dir::Response, record(b"ok\n")));
    // A line across two records, then one that cannot be read, then back to plaintext in
    // the middle of the next segment.
    let mut seg = record(b"secret ");
    seg.extend(record(b"two\n"));
    let mut bad = record(b"lost line\n");
    bad[0] = 0x15;
    seg.extend(bad);
    seg.extend(record(b"STOPTLS\n"));
    seg.extend_from_slice(b"plain ");
    c.push((Dir::Request, seg));
    c.push((Dir::Request, b"again\n".to_vec()));
    c
}

fn run(layers: Layers, bytewise: bool) -> Run {
    let mut h = Harness::new(
        Box::new(Lines::default()),
        testkit::endpoint(Protocol::Postgres),
    )
    .layers(layers);
    for (i, (dir, bytes)) in conversation().into_iter().enumerate() {
        if bytewise {
            for b in bytes.chunks(1) {
                h.data(dir, i as u64, b);
            }
        } else {
            h.data(dir, i as u64, &bytes);
        }
    }
    h.close(9);
    h.finish()
}

fn lines(r: &Run) -> Vec<String> {
    r.queries()
        .iter()
        .map(|q| format!("{} {}", q.verb, q.fingerprint))
        .collect()
}

#[test]
fn a_layer_plugs_in_mid_segment_and_the_same_decoder_goes_on_after_it() {
    let r = run(Layers::with_tls(|| Box::<Xor>::default()), false);
    assert_eq!(
        lines(&r),
        [
            "PLAIN hello",
            "TLS secret one",
            "TLS secret two",
            "PLAIN plain again"
        ]
    );
    assert_eq!(r.stats.tls_sessions, 1);
    assert!(!r.encrypted, "the session left the layer");
    // Byte by byte, the same: the switch is at an exact byte whatever the segmentation.
    let b = run(Layers::with_tls(|| Box::<Xor>::default()), true);
    assert_eq!(lines(&b), lines(&r));
}

#[test]
fn a_record_no_layer_can_read_is_a_gap_of_at_most_its_length() {
    let mut h = Harness::new(
        Box::new(Lines::default()),
        testkit::endpoint(Protocol::Postgres),
    )
    .layers(Layers::with_tls(|| Box::<Xor>::default()));
    for (i, (dir, bytes)) in conversation().into_iter().enumerate() {
        h.data(dir, i as u64, &bytes);
    }
    assert_eq!(h.decoder().gaps, 1);
}

#[test]
fn without_a_layer_the_session_is_counted_and_nothing_more_is_decoded() {
    let r = run(Layers::none(), false);
    assert_eq!(lines(&r), ["PLAIN hello"]);
    assert_eq!(r.stats.tls_sessions, 1);
    assert!(r.encrypted);
}
