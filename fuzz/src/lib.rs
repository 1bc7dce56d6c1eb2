//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and the stable
//! driver (`src/bin/stable-driver.rs`). Each must never panic, whatever the input.
//!
//! - [`packet`]: one frame through the XDP program's user-space twin
//!   (`Decapsulator::process`); a record it makes must parse and go through the pipeline.
//!   Input: link-type byte, then the frame.
//! - [`pcap`]: a whole pcap/pcapng file through the reader.
//! - [`postgres`], [`mysql`], [`tds`]: one connection's byte streams through the decoder (the `Decoder`
//!   trait directly), as [`chunks`]: data either way, gaps, close.
//! - [`tls`]: a connection's byte streams through the PostgreSQL or MySQL decoder behind the
//!   TLS layer, which holds the key logs of the bundled TLS captures: their real sessions
//!   decrypt, and mutations reach record framing, the hellos, certificates, epochs, loss
//!   and resynchronisation.
//! - [`pipeline`]: a sequence of ring-buffer records (u16 length + bytes each) through
//!   `Pipeline::on_record` (event validation, reassembly, decoders, aggregates), then a summary.

use rds_sensor::{
    capture::{
        packet::{Decapsulator, LinkType},
        pcap::PcapReader,
    },
    decode::{self, Dir, Gap},
    testkit::Harness,
    event::Event,
    model::{Clock, Endpoint, Protocol, Record},
    pipeline::{Pipeline, PipelineOptions},
    sinks::Sink,
};
use sensor_common::{DEFAULT_DB_PORTS, FlowKey, SensorConfig, counter};

/// Drops every record (after serializing it, as the stdout sink would).
struct Null;

impl Sink for Null {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        serde_json::to_vec(record)?;
        Ok(())
    }
}

pub const LINKS: [LinkType; 4] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
];

fn new_pipeline() -> Pipeline {
    Pipeline::new(
        PipelineOptions {
            clock: Clock::default(),
            ..PipelineOptions::default()
        },
        Box::new(Null),
    )
}

pub fn packet(data: &[u8]) {
    let Some((&l, frame)) = data.split_first() else {
        return;
    };
    let link = LINKS[l as usize % LINKS.len()];
    let mut d = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 16);
    let mut record = Vec::new();
    let wire = frame.len() as u32 + u32::from(l >> 2);
    d.process(link, frame, wire, 1, &mut record);
    let sent = d.counters[counter::EVENTS_SENT as usize];
    assert_eq!(sent, u64::from(!record.is_empty()));
    if !record.is_empty() {
        Event::parse(&record).expect("the twin makes valid records");
        let mut p = new_pipeline();
        p.on_record(&record);
        let _ = p.summary(2, &d.counters);
    }
}

pub fn pcap(data: &[u8]) {
    let Ok(mut r) = PcapReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    for _ in 0..10_000 {
        match r.next_frame() {
            Ok(Some(f)) => {
                let _ = (f.ts_ns, f.orig_len, f.linktype, f.data.len());
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// One step of a connection, as the decoder targets read their input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Data(Dir, Vec<u8>),
    Gap(Dir, u64),
    Close,
}

/// Input format of the decoder targets: repeated `ctl, len (u16 LE), bytes`; `ctl & 1`: the
/// direction (1 = server to client); `ctl >> 1 & 3`: 0 data (len bytes follow), 1 gap of len
/// bytes, 2 close. A short last chunk takes what is left.
pub fn chunks(mut data: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let ctl = data[0];
        let len = u16::from_le_bytes([data[1], data[2]]) as usize;
        data = &data[3..];
        let dir = if ctl & 1 == 0 {
            Dir::Request
        } else {
            Dir::Response
        };
        match (ctl >> 1) & 3 {
            0 | 3 => {
                let n = len.min(data.len());
                out.push(Chunk::Data(dir, data[..n].to_vec()));
                data = &data[n..];
            }
            1 => out.push(Chunk::Gap(dir, len as u64)),
            _ => out.push(Chunk::Close),
        }
    }
    out
}

/// The inverse of [`chunks`], for seeds.
pub fn encode_chunks(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let (ctl, len, bytes): (u8, usize, &[u8]) = match c {
            Chunk::Data(d, b) => ((*d == Dir::Response) as u8, b.len(), b),
            Chunk::Gap(d, n) => ((*d == Dir::Response) as u8 | 2, *n as usize, &[]),
            Chunk::Close => (4, 0, &[]),
        };
        for piece in bytes
            .chunks(u16::MAX as usize)
            .chain(bytes.is_empty().then_some(&[][..]))
        {
            out.push(ctl);
            let l = if bytes.is_empty() {
                len.min(u16::MAX as usize)
            } else {
                piece.len()
            };
            out.extend_from_slice(&(l as u16).to_le_bytes());
            out.extend_from_slice(piece);
        }
    }
    out
}

/// Input: a flags byte (bit 0: mid-stream, bit 1: redaction off, bit 2: gaps of unknown
/// length), then chunks, through the decoder's session stack ([`rds_sensor::testkit`]).
fn decoder(protocol: Protocol, data: &[u8]) {
    decoder_with(protocol, data, rds_sensor::session::Layers::none());
}

fn decoder_with(protocol: Protocol, data: &[u8], layers: rds_sensor::session::Layers) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Some(dec) = decode::for_protocol(protocol, first & 1 == 1) else {
        return;
    };
    let key = FlowKey {
        client_addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1],
        server_addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2],
        client_port: 40000,
        server_port: 5432,
        vni: 7,
    };
    let mut h = Harness::new(dec, Endpoint::new(&key, protocol.wire()))
        .redact(first & 2 == 0)
        .layers(layers);
    let gap = |n| {
        if first & 4 == 0 {
            Gap::Exact(n)
        } else {
            Gap::AtMost(n)
        }
    };
    let mut ts = 1_000_000_000u64;
    let mut written = 0;
    for c in chunks(rest) {
        ts += 1000;
        match c {
            Chunk::Data(d, b) => h.data(d, ts, &b),
            Chunk::Gap(d, n) => h.gap(d, ts, gap(n)),
            Chunk::Close => break,
        }
        for r in &h.records()[written..] {
            serde_json::to_vec(r).unwrap();
        }
        written = h.records().len();
    }
    h.close(ts + 1);
    for r in &h.records()[written..] {
        serde_json::to_vec(r).unwrap();
    }
}

pub fn postgres(data: &[u8]) {
    decoder(Protocol::Postgres, data);
}

pub fn mysql(data: &[u8]) {
    decoder(Protocol::Mysql, data);
}

/// Input: flags (bit 3: behind the TLS layer, which reaches the PRELOGIN unwrapping and the
/// way back to plaintext; bits 0–2 as for the decoder targets), then chunks.
pub fn tds(data: &[u8]) {
    use rds_sensor::session::tls::{self, Hold, KeyStore};
    if data.first().is_some_and(|f| f & 8 != 0) {
        let store = KeyStore::new(64, None);
        store.add_text(KEYS);
        decoder_with(Protocol::Mssql, data, tls::layers(store, Hold::default()));
    } else {
        decoder(Protocol::Mssql, data);
    }
}

/// The key logs recorded with the bundled TLS captures (test secrets only).
const KEYS: &str = concat!(
    include_str!("../../pcaps/pg-tls-keys.keys"),
    include_str!("../../pcaps/mysql-tls-keys.keys")
);

/// Input: flags (bit 3: MySQL, else PostgreSQL; bits 0–2 as for the decoder targets), then
/// chunks, through the decoder behind the TLS layer.
pub fn tls(data: &[u8]) {
    use rds_sensor::session::tls::{self, Hold, KeyStore};
    let protocol = if data.first().is_some_and(|f| f & 8 != 0) {
        Protocol::Mysql
    } else {
        Protocol::Postgres
    };
    let store = KeyStore::new(64, None);
    store.add_text(KEYS);
    decoder_with(protocol, data, tls::layers(store, Hold::default()));
}

/// Input: repeated `len (u16 LE), record bytes`.
pub fn pipeline_records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        out.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    out
}

pub fn pipeline(data: &[u8]) {
    let mut p = new_pipeline();
    for r in pipeline_records(data) {
        p.on_record(r);
    }
    let _ = p.summary(u64::MAX / 2, &[0; counter::COUNT as usize]);
    let mut flows = rds_sensor::capture::packet::FlowTable::new(16);
    let _ = p.expire_flows(
        &mut flows,
        u64::MAX / 2,
        Some(rds_sensor::model::FlowEnd::Shutdown),
    );
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name.
pub const TARGETS: [(&str, Target); 7] = [
    ("packet", packet),
    ("pcap", pcap),
    ("postgres", postgres),
    ("mysql", mysql),
    ("tds", tds),
    ("tls", tls),
    ("pipeline", pipeline),
];
