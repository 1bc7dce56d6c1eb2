//! A minimal classic-pcap reader/writer and the AWS VPC Traffic Mirroring (VXLAN) wrapper.

use anyhow::{Context, Result, bail};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub const LINKTYPE_ETHERNET: u32 = 1;
const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;

/// Bytes AWS adds in front of each mirrored frame: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OUTER_LEN: usize = 50;
pub const VXLAN_PORT: u16 = 4789;

#[derive(Clone, Debug)]
pub struct Record {
    pub ts_sec: u32,
    /// Microseconds or nanoseconds, per [`Pcap::nanos`].
    pub ts_frac: u32,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// Captured bytes (may be shorter than `orig_len`).
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Pcap {
    pub nanos: bool,
    pub snaplen: u32,
    pub linktype: u32,
    pub records: Vec<Record>,
}

pub fn read(path: &Path) -> Result<Pcap> {
    let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&buf).with_context(|| format!("parsing pcap {}", path.display()))
}

pub fn parse(buf: &[u8]) -> Result<Pcap> {
    if buf.len() < 24 {
        bail!("file shorter than the 24-byte pcap header");
    }
    let raw = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let (le, nanos) = match raw {
        MAGIC_USEC => (true, false),
        MAGIC_NSEC => (true, true),
        m if m.swap_bytes() == MAGIC_USEC => (false, false),
        m if m.swap_bytes() == MAGIC_NSEC => (false, true),
        m => bail!("not a classic pcap file (magic {m:#010x}); pcapng is not supported"),
    };
    let u32_at = |off: usize| {
        let b: [u8; 4] = buf[off..off + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let snaplen = u32_at(16);
    let linktype = u32_at(20) & 0x0fff_ffff;
    let mut records = Vec::new();
    let mut off = 24;
    while off < buf.len() {
        if off + 16 > buf.len() {
            bail!("truncated record header at offset {off}");
        }
        let (ts_sec, ts_frac, incl, orig_len) = (
            u32_at(off),
            u32_at(off + 4),
            u32_at(off + 8) as usize,
            u32_at(off + 12),
        );
        off += 16;
        if off + incl > buf.len() {
            bail!("truncated record data at offset {off} ({incl} bytes announced)");
        }
        records.push(Record {
            ts_sec,
            ts_frac,
            orig_len,
            data: buf[off..off + incl].to_vec(),
        });
        off += incl;
    }
    Ok(Pcap {
        nanos,
        snaplen,
        linktype,
        records,
    })
}

pub fn write(path: &Path, pcap: &Pcap) -> Result<()> {
    let size = 24
        + pcap
            .records
            .iter()
            .map(|r| 16 + r.data.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(if pcap.nanos { MAGIC_NSEC } else { MAGIC_USEC }).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&pcap.snaplen.to_le_bytes());
    out.extend_from_slice(&pcap.linktype.to_le_bytes());
    for r in &pcap.records {
        out.extend_from_slice(&r.ts_sec.to_le_bytes());
        out.extend_from_slice(&r.ts_frac.to_le_bytes());
        out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.orig_len.to_le_bytes());
        out.extend_from_slice(&r.data);
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The L3/L4 view of an Ethernet frame carrying TCP or UDP over IPv4/IPv6.
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    l3: usize,
    l4: usize,
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn flow(frame: &[u8]) -> Option<Flow> {
    let mut l3 = 14;
    let mut ethertype = be16(frame.get(..14)?, 12);
    if ethertype == 0x8100 {
        ethertype = be16(frame.get(..18)?, 16);
        l3 = 18;
    }
    let (src, dst, proto, l4) = match ethertype {
        0x0800 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
            (IpAddr::V4(src), IpAddr::V4(dst), ip[9], l3 + ihl)
        }
        0x86dd => {
            let ip = frame.get(l3..l3 + 40)?;
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            (IpAddr::V6(src), IpAddr::V6(dst), ip[6], l3 + 40)
        }
        _ => return None,
    };
    if proto != 6 && proto != 17 {
        return None;
    }
    let ports = frame.get(l4..l4 + 4)?;
    Some(Flow {
        src,
        dst,
        proto,
        sport: be16(ports, 0),
        dport: be16(ports, 2),
        l3,
        l4,
    })
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header checksum and the TCP checksum of a complete frame. A capture on a
/// veth holds checksum-offloaded packets whose TCP checksum was never filled in; a real NIC
/// (and so a mirror session) carries correct ones.
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(f) = flow(frame) else { return };
    if f.proto != 6 {
        return;
    }
    let ip_end = match f.src {
        IpAddr::V4(_) => f.l3 + usize::from(be16(frame, f.l3 + 2)),
        IpAddr::V6(_) => f.l3 + 40 + usize::from(be16(frame, f.l3 + 4)),
    };
    if ip_end > frame.len() || ip_end < f.l4 + 20 {
        return;
    }
    let mut acc = 0;
    if f.src.is_ipv4() {
        frame[f.l3 + 10..f.l3 + 12].fill(0);
        let c = fold(sum16(&frame[f.l3..f.l4], 0));
        frame[f.l3 + 10..f.l3 + 12].copy_from_slice(&c.to_be_bytes());
        acc = sum16(&frame[f.l3 + 12..f.l3 + 20], acc);
    } else {
        acc = sum16(&frame[f.l3 + 8..f.l3 + 40], acc);
    }
    let tcp_len = ip_end - f.l4;
    acc += 6 + (tcp_len as u32 & 0xffff) + (tcp_len as u32 >> 16);
    frame[f.l4 + 16..f.l4 + 18].fill(0);
    let c = fold(sum16(&frame[f.l4..ip_end], acc));
    frame[f.l4 + 16..f.l4 + 18].copy_from_slice(&c.to_be_bytes());
}

/// FNV-1a over the 5-tuple in packet direction: each flow and each direction of it gets its own
/// outer UDP source port in 49152..=65535, as AWS spreads mirrored flows.
fn outer_source_port(f: &Flow) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            eat(&s.octets());
            eat(&d.octets());
        }
        (s, d) => {
            eat(&ip_bytes(s));
            eat(&ip_bytes(d));
        }
    }
    eat(&[f.proto]);
    eat(&f.sport.to_be_bytes());
    eat(&f.dport.to_be_bytes());
    49152 + (h % 16384) as u16
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// How to wrap a capture, i.e. what the mirror session looks like.
pub struct Mirror {
    /// VXLAN network identifier (the traffic mirror session's VNI).
    pub vni: u32,
    /// Mirror target (e.g. an NLB or the sensor's ENI) = outer destination.
    pub target: Ipv4Addr,
    /// Database server ports; the other end of a flow is the mirrored client.
    pub server_ports: &'static [u16],
    /// Outer source: the ENI of the mirrored client, chosen from the inner client address.
    pub eni_for_client: fn(IpAddr) -> Ipv4Addr,
    /// Mirror session PacketLength: inner frames are cut to this many bytes.
    pub truncate: Option<usize>,
}

pub const OUTER_SRC_MAC: [u8; 6] = [0x06, 0x1a, 0x2b, 0x3c, 0x4d, 0x01];
pub const OUTER_DST_MAC: [u8; 6] = [0x06, 0x1a, 0x2b, 0x3c, 0x4d, 0x05];

/// Wraps every frame of an Ethernet capture in Ethernet/IPv4/UDP/VXLAN as AWS VPC Traffic
/// Mirroring delivers it. Timestamps are kept.
pub fn wrap(raw: &Pcap, m: &Mirror) -> Result<Pcap> {
    if raw.linktype != LINKTYPE_ETHERNET {
        bail!(
            "can only wrap Ethernet captures (linktype {})",
            raw.linktype
        );
    }
    let mut records = Vec::with_capacity(raw.records.len());
    for (i, r) in raw.records.iter().enumerate() {
        let inner = match m.truncate {
            Some(n) if r.data.len() > n => &r.data[..n],
            _ => &r.data[..],
        };
        let f = flow(&r.data);
        let (eni, sport) = match &f {
            Some(f) => {
                let client = if m.server_ports.contains(&f.sport) {
                    f.dst
                } else {
                    f.src
                };
                ((m.eni_for_client)(client), outer_source_port(f))
            }
            None => (Ipv4Addr::new(192, 0, 2, 1), 49152),
        };
        let mut o = Vec::with_capacity(OUTER_LEN + inner.len());
        o.extend_from_slice(&OUTER_DST_MAC);
        o.extend_from_slice(&OUTER_SRC_MAC);
        o.extend_from_slice(&0x0800u16.to_be_bytes());
        // IPv4: the outer lengths describe the (possibly truncated) copy actually sent.
        let ip_len = (20 + 8 + 8 + inner.len()) as u16;
        o.extend_from_slice(&[0x45, 0x00]);
        o.extend_from_slice(&ip_len.to_be_bytes());
        o.extend_from_slice(&(i as u16).to_be_bytes()); // identification
        o.extend_from_slice(&[0x00, 0x00, 64, 17, 0, 0]); // flags/frag, TTL, UDP, checksum
        o.extend_from_slice(&eni.octets());
        o.extend_from_slice(&m.target.octets());
        let c = fold(sum16(&o[14..34], 0));
        o[24..26].copy_from_slice(&c.to_be_bytes());
        // UDP, checksum 0 (allowed for UDP over IPv4, and what VXLAN senders commonly do).
        o.extend_from_slice(&sport.to_be_bytes());
        o.extend_from_slice(&VXLAN_PORT.to_be_bytes());
        o.extend_from_slice(&(ip_len - 20).to_be_bytes());
        o.extend_from_slice(&[0, 0]);
        // VXLAN: flags I, 24 reserved bits, 24-bit VNI, 8 reserved bits.
        o.extend_from_slice(&[0x08, 0, 0, 0]);
        o.extend_from_slice(&(m.vni << 8).to_be_bytes());
        debug_assert_eq!(o.len(), OUTER_LEN);
        o.extend_from_slice(inner);
        records.push(Record {
            ts_sec: r.ts_sec,
            ts_frac: r.ts_frac,
            // With truncation the record keeps the untruncated length, so caplen < len.
            orig_len: r.orig_len + OUTER_LEN as u32,
            data: o,
        });
    }
    let snaplen = match m.truncate {
        Some(n) => (OUTER_LEN + n) as u32,
        None => raw.snaplen.max(65535) + OUTER_LEN as u32,
    };
    Ok(Pcap {
        nanos: raw.nanos,
        snaplen,
        linktype: LINKTYPE_ETHERNET,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_ipv4_header() {
        // The IPv4 header checksum example from Wikipedia (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum16(&h, 0)), 0xb861);
    }

    #[test]
    fn roundtrip() {
        let p = Pcap {
            nanos: false,
            snaplen: 262144,
            linktype: 1,
            records: vec![Record {
                ts_sec: 1,
                ts_frac: 2,
                orig_len: 3,
                data: vec![1, 2, 3],
            }],
        };
        let dir = std::env::temp_dir().join(format!("pcapfmt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcap");
        write(&path, &p).unwrap();
        let q = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(q.records[0].data, vec![1, 2, 3]);
        assert_eq!(
            (
                q.records[0].ts_sec,
                q.records[0].ts_frac,
                q.records[0].orig_len
            ),
            (1, 2, 3)
        );
    }
}
