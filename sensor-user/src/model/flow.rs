//! A connection's packet-level summary, reported once when it ends.

use super::{Clock, ConnId, Endpoint, Timestamp};
use sensor_common::{FlowKey, FlowStats};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEnd {
    /// FIN seen in both directions.
    Fin,
    Rst,
    /// No segment for the idle timeout.
    Idle,
    /// The live agent stopped while the flow was open.
    Shutdown,
    /// The capture file ended while the flow was open.
    EndOfCapture,
}

/// What a connection was for, as its decoder saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Purpose {
    /// A session (or nothing a decoder could tell).
    #[default]
    Session,
    /// A PostgreSQL CancelRequest: a connection of its own that carries only the request.
    Cancel,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// The connection's first packet (Zeek's conn.log `ts`), as `first_seen`.
    pub ts: Timestamp,
    /// The session's `conn_id` when a decoder made one of the flow (its login, query and tls
    /// records carry the same), else one of its own.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub duration_us: u64,
    pub packets_to_server: u64,
    pub packets_to_client: u64,
    /// IP bytes according to the IP headers.
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub payload_bytes_to_server: u64,
    pub payload_bytes_to_client: u64,
    pub syn: u64,
    pub syn_ack: u64,
    pub fin_to_server: u64,
    pub fin_to_client: u64,
    pub rst: u64,
    pub truncated: u64,
    pub end: FlowEnd,
    /// From the connection's decoder (not written: the detectors read it).
    #[serde(skip)]
    pub purpose: Purpose,
}

impl FlowRecord {
    pub fn new(
        key: &FlowKey,
        s: &FlowStats,
        end: FlowEnd,
        clock: &Clock,
        proto: u8,
        conn_id: Option<ConnId>,
    ) -> Self {
        let first_seen = clock.at(s.first_ns);
        let mut endpoint = Endpoint::new(key, proto, first_seen.ns());
        if let Some(id) = conn_id {
            endpoint.conn_id = id;
        }
        Self {
            ts: first_seen,
            endpoint,
            first_seen,
            last_seen: clock.at(s.last_ns),
            duration_us: s.last_ns.saturating_sub(s.first_ns) / 1000,
            packets_to_server: s.packets[0],
            packets_to_client: s.packets[1],
            bytes_to_server: s.bytes[0],
            bytes_to_client: s.bytes[1],
            payload_bytes_to_server: s.payload_bytes[0],
            payload_bytes_to_client: s.payload_bytes[1],
            syn: s.syn,
            syn_ack: s.syn_ack,
            fin_to_server: s.fin[0],
            fin_to_client: s.fin[1],
            rst: s.rst,
            truncated: s.truncated,
            end,
            purpose: Purpose::Session,
        }
    }
}
