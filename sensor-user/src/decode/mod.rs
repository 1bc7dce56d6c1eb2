//! Protocol decoders. Each turns the two in-order byte streams of one connection (with gaps
//! where bytes were lost or not copied) into login and query records.
//!
//! - [`postgres`]: PostgreSQL frontend/backend protocol 3.0.
//! - [`mysql`]: MySQL / MariaDB client/server protocol.
//! - [`fingerprint`]: statement verb and literal-free fingerprint, shared by both.

pub mod fingerprint;
pub mod mysql;
pub mod postgres;

use crate::model::{Clock, DecoderStats, Endpoint, Record};
use sensor_common::proto;

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

/// A protocol decoder for one connection.
pub trait Decoder: Send {
    /// In-order payload bytes of one direction, from segment(s) that arrived at `ts_ns`.
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, bytes: &[u8]);
    /// `len` bytes of one direction are missing at this point: a segment the mirror lost, or
    /// the middle of a segment longer than the kernel's payload cap.
    fn gap(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, len: u64);
    /// The connection ended; report what is still pending (e.g. a login without an answer).
    fn close(&mut self, cx: &mut DecodeCtx<'_>, ts_ns: u64);
    /// True once the session switched to TLS.
    fn encrypted(&self) -> bool;
}

/// Whether there is a decoder for `protocol`.
pub fn decodes(protocol: u8) -> bool {
    matches!(protocol, proto::POSTGRES | proto::MYSQL)
}

/// A decoder for a connection to a server port speaking `protocol`, if there is one.
/// `mid_stream`: the connection was already open when the sensor first saw it.
pub fn for_protocol(protocol: u8, mid_stream: bool) -> Option<Box<dyn Decoder>> {
    match protocol {
        proto::POSTGRES => Some(Box::new(postgres::PostgresDecoder::new(mid_stream))),
        proto::MYSQL => Some(Box::new(mysql::MysqlDecoder::new(mid_stream))),
        _ => None,
    }
}
