//! One harness for decoder tests, fuzz targets and the next protocol: a decoder behind the real
//! session stack, fed what reassembly would hand it.

use crate::{
    decode::{DecodeCtx, Decoder, Dir, Gap},
    model::{Clock, DecoderStats, Endpoint, LoginRecord, Protocol, QueryRecord, Record},
    session::{Layers, Session},
};

/// A client and a server of `protocol` (mirror session 7 for PostgreSQL, none otherwise, as
/// the decoders' tests have always used).
pub fn endpoint(protocol: Protocol) -> Endpoint {
    let (server, vni) = match protocol {
        Protocol::Postgres => ("10.0.0.2:5432", Some(7)),
        Protocol::Mysql => ("10.0.0.2:3306", None),
        Protocol::Mssql => ("10.0.0.2:1433", None),
        _ => ("10.0.0.2:1", None),
    };
    let client = match protocol {
        Protocol::Mysql => "10.0.0.1:50000",
        _ => "10.0.0.1:40000",
    };
    Endpoint::from_text(client, server, vni, protocol)
}

/// A decoder behind a session, and what it reported.
pub struct Harness<D: Decoder + ?Sized = dyn Decoder> {
    endpoint: Endpoint,
    clock: Clock,
    redact: bool,
    layers: Layers,
    session: Session<D>,
    records: Vec<Record>,
    stats: DecoderStats,
}

impl<D: Decoder + ?Sized> Harness<D> {
    pub fn new(decoder: Box<D>, endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            clock: Clock::default(),
            redact: true,
            layers: Layers::none(),
            session: Session::new(decoder),
            records: Vec::new(),
            stats: DecoderStats::default(),
        }
    }

    /// Keep literals, parameters and passwords out (the default), or not.
    pub fn redact(mut self, redact: bool) -> Self {
        self.redact = redact;
        self
    }

    /// The layers a session may switch to (none by default).
    pub fn layers(mut self, layers: Layers) -> Self {
        self.layers = layers;
        self
    }

    pub fn data(&mut self, dir: Dir, ts: u64, bytes: &[u8]) {
        let (mut cx, session, layers) = self.parts();
        session.data(&mut cx, layers, dir, ts, bytes);
    }

    pub fn gap(&mut self, dir: Dir, ts: u64, gap: Gap) {
        let (mut cx, session, layers) = self.parts();
        session.gap(&mut cx, layers, dir, ts, gap);
    }

    pub fn close(&mut self, ts: u64) {
        let (mut cx, session, _) = self.parts();
        session.close(&mut cx, ts);
    }

    pub fn decoder(&self) -> &D {
        self.session.decoder()
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// What the run reported.
    pub fn finish(self) -> Run {
        Run {
            encrypted: self.session.encrypted(),
            records: self.records,
            stats: self.stats,
        }
    }

    fn parts(&mut self) -> (DecodeCtx<'_>, &mut Session<D>, &Layers) {
        (
            DecodeCtx {
                endpoint: &self.endpoint,
                clock: &self.clock,
                redact: self.redact,
                out: &mut self.records,
                stats: &mut self.stats,
            },
            &mut self.session,
            &self.layers,
        )
    }
}

/// The records and figures of a finished run.
pub struct Run {
    pub records: Vec<Record>,
    pub stats: DecoderStats,
    /// The session switched to an encryption.
    pub encrypted: bool,
}

impl Run {
    pub fn logins(&self) -> Vec<&LoginRecord> {
        self.records.iter().filter_map(Record::as_login).collect()
    }

    pub fn queries(&self) -> Vec<&QueryRecord> {
        self.records.iter().filter_map(Record::as_query).collect()
    }

    /// Each record as its JSON line.
    pub fn json_lines(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| serde_json::to_string(r).expect("records serialise"))
            .collect()
    }

    /// Every record's JSON line, each ending in a newline.
    pub fn json(&self) -> String {
        self.json_lines().into_iter().map(|l| l + "\n").collect()
    }
}
