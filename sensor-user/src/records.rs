//! What the pipeline reports. Each record serialises to one JSON object with a `"kind"` field.

use crate::event;
use sensor_common::{FlowKey, FlowStats, NO_VNI, counter, proto};
use std::collections::HashMap;

/// Which protocol each configured database port speaks.
#[derive(Clone, Debug, Default)]
pub struct PortMap(pub HashMap<u16, u8>);

impl PortMap {
    pub fn new(ports: &[(u16, u8)]) -> Self {
        Self(ports.iter().copied().collect())
    }

    pub fn proto(&self, port: u16) -> u8 {
        self.0.get(&port).copied().unwrap_or(proto::UNKNOWN)
    }
}

use serde::Serialize;

/// Turns event timestamps into wall-clock time. Live events carry the kernel's monotonic clock;
/// offline events carry the capture's wall-clock time (offset 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Add to an event timestamp to get ns since the Unix epoch.
    pub offset_ns: i128,
}

impl Clock {
    /// For kernel timestamps (bpf_ktime_get_ns is CLOCK_MONOTONIC).
    pub fn monotonic() -> Self {
        let real = now(libc::CLOCK_REALTIME);
        let mono = now(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: real as i128 - mono as i128,
        }
    }

    pub fn wall_ns(&self, ts_ns: u64) -> u64 {
        (ts_ns as i128 + self.offset_ns).max(0) as u64
    }

    /// `humantime::format_rfc3339_micros` of the wall-clock time: `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
    /// Records come many per second, so the part up to the seconds is formatted once per
    /// second (per thread) and only the microseconds each time.
    pub fn rfc3339(&self, ts_ns: u64) -> String {
        thread_local! {
            /// Seconds formatted lately (a flow's first and last, records of a few
            /// connections interleaved), and their `YYYY-MM-DDTHH:MM:SS`, by `secs % 4`.
            static PREFIXES: std::cell::Cell<[(u64, [u8; 19]); 4]> =
                const { std::cell::Cell::new([(u64::MAX, [0; 19]); 4]) };
        }
        let wall = self.wall_ns(ts_ns);
        let (secs, micros) = (wall / 1_000_000_000, (wall % 1_000_000_000) / 1000);
        let mut slots = PREFIXES.get();
        let slot = (secs % 4) as usize;
        let (cached, mut prefix) = slots[slot];
        if cached != secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let full = humantime::format_rfc3339_seconds(t).to_string();
            match full.as_bytes().get(..19) {
                Some(p) if full.len() == 20 => prefix.copy_from_slice(p),
                // (Not 20 bytes: a year humantime writes otherwise; never cached.)
                _ => {
                    return humantime::format_rfc3339_micros(
                        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall),
                    )
                    .to_string();
                }
            }
            slots[slot] = (secs, prefix);
            PREFIXES.set(slots);
        }
        let mut out = [0u8; 27];
        out[..19].copy_from_slice(&prefix);
        out[19] = b'.';
        let mut m = micros as u32;
        for i in (20..26).rev() {
            out[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out[26] = b'Z';
        // ASCII digits and punctuation only.
        String::from_utf8(out.to_vec()).expect("ASCII")
    }
}

/// `SocketAddr`'s `Display` text (`a.b.c.d:port`, `[v6]:port`); IPv4, the common case, without
/// the formatting machinery (a connection and a flow record each format two).
pub fn addr_string(a: std::net::SocketAddr) -> String {
    /// Writes `v` in decimal at `buf[at..]`; returns the new end.
    fn put_dec(buf: &mut [u8; 21], at: usize, mut v: u16) -> usize {
        let mut digits = [0u8; 5];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut at = at;
        for &d in &digits[i..] {
            buf[at] = d;
            at += 1;
        }
        at
    }
    match a {
        std::net::SocketAddr::V4(v4) => {
            // At most "255.255.255.255:65535": 21 bytes.
            let mut buf = [0u8; 21];
            let mut at = 0;
            for (i, o) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf[at] = b'.';
                    at += 1;
                }
                at = put_dec(&mut buf, at, u16::from(o));
            }
            buf[at] = b':';
            at = put_dec(&mut buf, at + 1, v4.port());
            // ASCII digits and punctuation only.
            String::from(std::str::from_utf8(&buf[..at]).expect("ASCII"))
        }
        a => a.to_string(),
    }
}

/// Current time of a clock, in ns.
pub fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    pub client: String,
    pub server: String,
    /// VXLAN VNI (mirror session); absent for unencapsulated traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub protocol: &'static str,
    pub first_seen: String,
    pub last_seen: String,
    #[serde(skip)]
    pub first_seen_ns: u64,
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
}

impl FlowRecord {
    pub fn new(key: &FlowKey, s: &FlowStats, end: FlowEnd, clock: &Clock, proto: u8) -> Self {
        Self {
            client: addr_string(event::client(key)),
            server: addr_string(event::server(key)),
            vni: (key.vni != NO_VNI).then_some(key.vni),
            protocol: proto::name(proto),
            first_seen: clock.rfc3339(s.first_ns),
            last_seen: clock.rfc3339(s.last_ns),
            first_seen_ns: s.first_ns,
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
        }
    }
}

/// Kernel (or emulated kernel) counters by name.
pub fn counter_map(
    c: &[u64; counter::COUNT as usize],
) -> serde_json::Map<String, serde_json::Value> {
    counter::NAMES
        .iter()
        .zip(c.iter())
        .filter(|(n, _)| !n.starts_with("reserved"))
        .map(|(n, v)| ((*n).to_string(), serde_json::Value::from(*v)))
        .collect()
}

/// Periodic (live) or final (offline) health and volume figures.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRecord {
    pub ts: String,
    /// Seconds covered by this summary (since the previous one).
    pub interval_s: f64,
    /// Counters of the XDP program (or its offline twin), cumulative.
    pub kernel: serde_json::Map<String, serde_json::Value>,
    /// Events user space received, cumulative.
    pub events: u64,
    /// Events lost between the ring-buffer reader and the pipeline (queue full), cumulative.
    pub queue_dropped: u64,
    /// Ring-buffer records that failed validation, cumulative.
    pub bad_records: u64,
    pub flows_active: usize,
    pub flows_reported: u64,
    /// Connections the decoders are following.
    pub connections_active: usize,
    pub streams: crate::streams::StreamStats,
    pub decoders: crate::decode::DecoderStats,
    /// Queries folded into `(other)` because too many fingerprints were tracked.
    pub latency_keys_overflowed: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Flow(FlowRecord),
    Login(LoginRecord),
    Query(QueryRecord),
    Latency(crate::aggregate::latency::LatencyRecord),
    Summary(SummaryRecord),
    Finding(Box<crate::detect::Finding>),
}

/// Where a decoded connection runs; the pipeline fills it, decoders copy it into records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub client: String,
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub protocol: &'static str,
}

impl Endpoint {
    pub fn new(key: &FlowKey, proto: u8) -> Self {
        Self {
            client: addr_string(event::client(key)),
            server: addr_string(event::server(key)),
            vni: (key.vni != NO_VNI).then_some(key.vni),
            protocol: proto::name(proto),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// One login attempt and what the server finally said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoginRecord {
    pub ts: String,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    pub outcome: Outcome,
    /// SQLSTATE (PostgreSQL) or error number (MySQL), as a string.
    pub error_code: Option<String>,
    pub tls: bool,
    /// e.g. `cleartext`, `md5`, `scram-sha-256`, `mysql_native_password`, `caching_sha2_password`.
    pub auth_method: Option<String>,
    /// Server version when the protocol tells it (MySQL handshake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip)]
    pub ts_ns: u64,
}

/// One request and its response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryRecord {
    /// When the request's first byte arrived.
    pub ts: String,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub database: Option<String>,
    /// Statement class: SELECT, INSERT, UPDATE, DELETE, DDL verbs (CREATE, ALTER, DROP, …),
    /// COPY, BEGIN, COMMIT, …, or the protocol command (PING, INIT_DB, …).
    pub verb: String,
    /// The statement with literals and parameters replaced by `?`.
    pub fingerprint: String,
    /// The statement as sent, only when redaction is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Rows returned or affected, when the protocol says.
    pub rows: Option<u64>,
    pub error_code: Option<String>,
    pub bytes_request: u64,
    pub bytes_response: u64,
    /// From the request's first byte to the response's first byte, µs.
    pub latency_first_byte_us: Option<u64>,
    /// From the request's first byte to the end of the response, µs.
    pub latency_us: u64,
    /// Extended-protocol / binary-protocol prepared statement executions.
    pub prepared: bool,
    #[serde(skip)]
    pub ts_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::addr_string;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    #[test]
    fn rfc3339_is_humantime() {
        let c = super::Clock::default();
        let mut ts = vec![0u64, 1, 999, 1_000, 999_999_999, 1_000_000_000, u64::MAX];
        for base in [
            1_700_000_000_000_000_000u64,
            951_782_400_000_000_000,
            4_102_444_799_999_999_999,
        ] {
            for d in [
                0u64,
                1,
                999,
                1_000,
                1_001,
                999_999,
                1_000_000,
                999_999_999,
                1_000_000_000,
                86_400_000_000_123,
            ] {
                ts.push(base + d);
                ts.push(base - d);
            }
        }
        for t in ts {
            let want = humantime::format_rfc3339_micros(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t),
            )
            .to_string();
            assert_eq!(c.rfc3339(t), want, "{t}");
            assert_eq!(c.rfc3339(t), want, "{t} (cached)");
        }
    }

    #[test]
    fn addr_string_is_display() {
        let ips = [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 100, 255)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6("2001:db8::ff00:42:8329".parse().unwrap()),
        ];
        for ip in ips {
            for port in [0, 7, 10, 99, 100, 5432, 9999, 10000, 65535] {
                let a = SocketAddr::new(ip, port);
                assert_eq!(addr_string(a), a.to_string());
            }
        }
    }
}
