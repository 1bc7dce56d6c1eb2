//! Where a connection runs: its two addresses, mirror session and protocol.

use sensor_common::{FlowKey, NO_VNI, proto};
use serde::{Serialize, Serializer};
use sha1::{Digest, Sha1};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol a server port speaks (serialised by its name, e.g. `postgresql`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Postgres,
    Mysql,
    Mssql,
    Oracle,
    None,
    #[default]
    Unknown,
}

impl Protocol {
    /// From the kernel ABI's `proto::*` number.
    pub const fn from_wire(p: u8) -> Self {
        match p {
            proto::POSTGRES => Self::Postgres,
            proto::MYSQL => Self::Mysql,
            proto::MSSQL => Self::Mssql,
            proto::ORACLE => Self::Oracle,
            proto::NONE => Self::None,
            _ => Self::Unknown,
        }
    }

    /// The kernel ABI's number.
    pub const fn wire(self) -> u8 {
        match self {
            Self::Postgres => proto::POSTGRES,
            Self::Mysql => proto::MYSQL,
            Self::Mssql => proto::MSSQL,
            Self::Oracle => proto::ORACLE,
            Self::None => proto::NONE,
            Self::Unknown => proto::UNKNOWN,
        }
    }

    pub const fn name(self) -> &'static str {
        proto::name(self.wire())
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Where a decoded connection runs; reassembly fills it, decoders copy it into records.
///
/// Every record of one connection (flow, login, query, tls, tls_exchange) carries the same
/// `conn_id`, as Zeek's `uid` and Suricata's `flow_id` join theirs, and the connection's
/// [Community ID](https://github.com/corelight/community-id-spec), which joins them with
/// Zeek's and Suricata's own logs of the same packets. Addresses come both as `ip:port`
/// text and as separate fields. All but the two texts are `Copy`: a query record clones
/// its endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub conn_id: ConnId,
    pub community_id: CommunityId,
    pub client: String,
    pub server: String,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub protocol: Protocol,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::from_parts(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            None,
            Protocol::Unknown,
            ConnId(0),
        )
    }
}

impl Endpoint {
    /// The connection `key` whose first segment the sensor saw at `first_wall_ns`.
    pub fn new(key: &FlowKey, proto: u8, first_wall_ns: u64) -> Self {
        Self::from_parts(
            client(key),
            server(key),
            (key.vni != NO_VNI).then_some(key.vni),
            Protocol::from_wire(proto),
            ConnId::of(key, first_wall_ns),
        )
    }

    /// From `ip:port` texts (tests, hand-made records); a text that is no socket address
    /// stands as the unspecified address, port 0.
    pub fn from_text(client: &str, server: &str, vni: Option<u32>, protocol: Protocol) -> Self {
        let parse = |t: &str| {
            t.parse()
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
        };
        Self::from_parts(parse(client), parse(server), vni, protocol, ConnId(0))
    }

    pub fn from_parts(
        client: SocketAddr,
        server: SocketAddr,
        vni: Option<u32>,
        protocol: Protocol,
        conn_id: ConnId,
    ) -> Self {
        Self {
            conn_id,
            community_id: CommunityId::tcp(client, server),
            client: addr_string(client),
            server: addr_string(server),
            client_ip: client.ip(),
            client_port: client.port(),
            server_ip: server.ip(),
            server_port: server.port(),
            vni,
            protocol,
        }
    }
}

/// One connection's id in the records: a hash of its addresses, ports, mirror session and the
/// wall-clock time of the first segment the sensor saw, written `C` + 16 hex digits. The same
/// capture analysed twice gives the same ids; a 4-tuple reused later gets a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn of(key: &FlowKey, first_wall_ns: u64) -> Self {
        // SipHash with fixed keys (`DefaultHasher::new`): the same in every run, so offline
        // analysis is repeatable; ids are not secrets, and nothing is keyed on them.
        let mut h = std::hash::DefaultHasher::new();
        key.client_addr.hash(&mut h);
        key.server_addr.hash(&mut h);
        key.client_port.hash(&mut h);
        key.server_port.hash(&mut h);
        key.vni.hash(&mut h);
        first_wall_ns.hash(&mut h);
        ConnId(h.finish())
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "C{:016x}", self.0)
    }
}

impl Serialize for ConnId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A TCP connection's Community ID v1 (seed 0): SHA-1 over the ordered endpoints, written
/// `1:` + base64. Kept as the digest; text only when a record is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CommunityId(pub [u8; 20]);

impl CommunityId {
    const TCP: u8 = 6;

    pub fn tcp(a: SocketAddr, b: SocketAddr) -> Self {
        // The spec orders the two endpoints so that both directions hash alike: the smaller
        // address first, the smaller port breaking a tie. IPv4 hashes as 4 bytes.
        let bytes = |ip: IpAddr| -> ([u8; 16], usize) {
            let mut out = [0u8; 16];
            match ip {
                IpAddr::V4(v4) => {
                    out[..4].copy_from_slice(&v4.octets());
                    (out, 4)
                }
                IpAddr::V6(v6) => (v6.octets(), 16),
            }
        };
        let ((ab, al), (bb, bl)) = (bytes(a.ip()), bytes(b.ip()));
        let (a_first, b_first) = ((&ab[..al], a.port()), (&bb[..bl], b.port()));
        let (src, dst) = if a_first <= b_first {
            (a_first, b_first)
        } else {
            (b_first, a_first)
        };
        let mut h = Sha1::new();
        h.update(0u16.to_be_bytes());
        h.update(src.0);
        h.update(dst.0);
        h.update([Self::TCP, 0]);
        h.update(src.1.to_be_bytes());
        h.update(dst.1.to_be_bytes());
        CommunityId(h.finalize().into())
    }
}

impl std::fmt::Display for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = [0u8; 30];
        out[..2].copy_from_slice(b"1:");
        let d = &self.0;
        let mut at = 2;
        for chunk in d.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                out[at + i] = if i <= chunk.len() {
                    B64[(n >> (18 - 6 * i) & 63) as usize]
                } else {
                    b'='
                };
            }
            at += 4;
        }
        // Base64 of 20 bytes: 28 ASCII characters.
        f.write_str(std::str::from_utf8(&out[..at]).map_err(|_| std::fmt::Error)?)
    }
}

impl Serialize for CommunityId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An address from a flow key: IPv4-mapped addresses come back as IPv4.
pub fn ip(addr: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

pub fn client(key: &FlowKey) -> SocketAddr {
    SocketAddr::new(ip(&key.client_addr), key.client_port)
}

pub fn server(key: &FlowKey) -> SocketAddr {
    SocketAddr::new(ip(&key.server_addr), key.server_port)
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

#[cfg(test)]
mod tests {
    use super::{CommunityId, addr_string};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// The spec's own examples (corelight/community-id-spec and its reference
    /// implementations), IPv4 and IPv6 TCP.
    #[test]
    fn community_id_matches_the_specs_baseline() {
        let a: SocketAddr = "128.232.110.120:34855".parse().unwrap();
        let b: SocketAddr = "66.35.250.204:80".parse().unwrap();
        let id = CommunityId::tcp(a, b).to_string();
        assert_eq!(id, CommunityId::tcp(b, a).to_string(), "direction-free");
        assert_eq!(id, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let a: SocketAddr = "[2001:470:e5bf:dead:4957:2174:e82c:4887]:63943"
            .parse()
            .unwrap();
        let b: SocketAddr = "[2607:f8b0:400c:c03::1a]:25".parse().unwrap();
        assert_eq!(
            CommunityId::tcp(a, b).to_string(),
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="
        );
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
