//! Where a connection runs: its two addresses, mirror session and protocol.

use sensor_common::{FlowKey, NO_VNI, proto};
use serde::Serialize;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

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

/// Where a decoded connection runs; the pipeline fills it, decoders copy it into records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub client: String,
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub protocol: Protocol,
}

impl Endpoint {
    pub fn new(key: &FlowKey, proto: u8) -> Self {
        Self {
            client: addr_string(client(key)),
            server: addr_string(server(key)),
            vni: (key.vni != NO_VNI).then_some(key.vni),
            protocol: Protocol::from_wire(proto),
        }
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
    use super::addr_string;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
