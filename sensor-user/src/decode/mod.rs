//! Protocol decoders. Each turns the two in-order byte streams of one connection (with gaps
//! where bytes were lost or not copied) into login and query records, and tells the session
//! where TLS starts and stops ([`Control`]).
//!
//! - [`postgres`]: PostgreSQL frontend/backend protocol 3.0.
//! - [`mysql`]: MySQL / MariaDB client/server protocol.
//! - [`tds`]: SQL Server's TDS.
//! - [`fingerprint`]: statement verb and literal-free fingerprint, shared by all.

pub mod fingerprint;
pub mod kit;
pub mod mysql;
pub mod postgres;
pub mod tds;

/// The table the records' `error_name` comes from for PostgreSQL (SQLSTATE → condition name),
/// for checks against the server's own list.
pub fn postgres_error_names() -> &'static [(&'static str, &'static str)] {
    kit::errnames::POSTGRES
}

/// The same for MySQL and MariaDB (error number → `ER_` symbol).
pub fn mysql_error_names() -> &'static [(u16, &'static str)] {
    kit::errnames::MYSQL
}

use crate::model::{Clock, DecoderStats, Endpoint, Protocol, Purpose, Record};

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    Request,
    /// Server → client.
    Response,
}

impl Dir {
    pub fn from_direction(d: u8) -> Self {
        if d == sensor_common::direction::TO_SERVER {
            Self::Request
        } else {
            Self::Response
        }
    }
}

/// What a decoder call may use and write.
pub struct DecodeCtx<'a> {
    pub endpoint: &'a Endpoint,
    pub clock: &'a Clock,
    /// Keep literals, parameters and passwords out of every record (the default).
    pub redact: bool,
    pub out: &'a mut Vec<Record>,
    pub stats: &'a mut DecoderStats,
}

/// Bytes of one direction that never reached the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// Exactly this many: a segment the mirror lost, or the middle of a segment longer than
    /// the kernel's payload cap. Framing can continue across it.
    Exact(u64),
    /// At most this many, exact count unknown (a layer lost a record whose plaintext length
    /// it cannot know): framing must be found again.
    AtMost(u64),
}

impl Gap {
    /// The gap's length, or its bound.
    pub fn len(self) -> u64 {
        match self {
            Gap::Exact(n) | Gap::AtMost(n) => n,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// What the session must do after a decoder call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// The protocol switched to TLS: `bytes[at..]` of this call, and everything after in both
    /// directions, are TLS records (PostgreSQL's SSLRequest answered `S`, MySQL's SSL request
    /// packet, a ClientHello first). The decoder goes on with the plaintext, if a layer can
    /// read it.
    StartTls {
        at: usize,
    },
    /// The rest of the session is encrypted with something no layer reads (PostgreSQL's
    /// GSSAPI encryption): counted, not decoded.
    Opaque,
    /// SQL Server 7.x: TLS starts at `bytes[at..]`, its handshake wrapped in PRELOGIN packets
    /// (MS-TDS §3.3.5.3: the TLS payload is the PRELOGIN packet's data) and the records after
    /// it bare; the layer takes the wrapping off.
    StartTlsInPrelogin {
        at: usize,
    },
    /// The protocol left TLS (SQL Server's login-only encryption): what follows the record
    /// that carried these bytes is plaintext again.
    StopTls,
}

/// A protocol decoder for one connection: the session ([`crate::session`]) hands it the two
/// in-order byte streams (plaintext once a layer took off the TLS), with explicit gaps.
pub trait Decoder: Send {
    /// In-order bytes of one direction, from segment(s) that arrived at `ts_ns`.
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, bytes: &[u8]) -> Control;
    /// Bytes of one direction are missing at this point.
    fn gap(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, gap: Gap);
    /// The connection ended; report what is still pending (e.g. a login without an answer).
    fn close(&mut self, cx: &mut DecodeCtx<'_>, ts_ns: u64);
    /// What the connection was for, as far as the decoder saw.
    fn purpose(&self) -> Purpose {
        Purpose::Session
    }
}

/// Makes a decoder; `mid_stream`: the connection was already open when the sensor first saw it.
type MakeDecoder = fn(mid_stream: bool) -> Box<dyn Decoder>;

/// The registry: which protocol each decoder reads. A new protocol is a folder beside
/// `postgres/` and `mysql/`, and one line here.
const DECODERS: &[(Protocol, MakeDecoder)] = &[
    (Protocol::Postgres, |mid| {
        Box::new(postgres::PostgresDecoder::new(mid))
    }),
    (Protocol::Mysql, |mid| {
        Box::new(mysql::MysqlDecoder::new(mid))
    }),
    (Protocol::Mssql, |mid| Box::new(tds::TdsDecoder::new(mid))),
];

/// Whether there is a decoder for `protocol`.
pub fn decodes(protocol: Protocol) -> bool {
    DECODERS.iter().any(|(p, _)| *p == protocol)
}

/// A decoder for a connection to a server port speaking `protocol`, if there is one.
pub fn for_protocol(protocol: Protocol, mid_stream: bool) -> Option<Box<dyn Decoder>> {
    DECODERS
        .iter()
        .find(|(p, _)| *p == protocol)
        .map(|(_, make)| make(mid_stream))
}
