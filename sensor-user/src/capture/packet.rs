//! The user-space twin of the XDP program's parser (sensor-ebpf/src/main.rs and parse.rs).
//!
//! Offline analysis runs every frame of a capture through [`Decapsulator::process`], which
//! applies the same rules, updates the same counters and flow summaries, and encodes the same
//! ring-buffer record the kernel would, so everything after the capture is shared. The BPF
//! fixture tests check the two against each other byte for byte.

use sensor_common::{
    EventHeader, FlowKey, FlowStats, MAX_WHOLE, NO_VNI, SensorConfig, config_flags, counter,
    direction, split_payload, tcp_flags,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const MAX_IPV6_EXT: usize = 6;

/// How the frame starts (pcap link types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// DLT_EN10MB (1).
    Ethernet,
    /// DLT_LINUX_SLL (113): 16-byte cooked header, protocol in bytes 14..16.
    LinuxSll,
    /// DLT_LINUX_SLL2 (276): 20-byte cooked header, protocol in bytes 0..2.
    LinuxSll2,
    /// DLT_RAW (101 / 12 / 14) and LINKTYPE_IPV4 (228) / LINKTYPE_IPV6 (229): the IP header first.
    RawIp,
    /// DLT_NULL (0), BSD loopback: a 4-byte address family in the capturing host's byte order
    /// (AF_INET 2; AF_INET6 24, 28 or 30 depending on the BSD), then the IP header.
    /// LINKTYPE_LOOP (108, OpenBSD) is the same in network byte order.
    Null,
}

impl LinkType {
    pub fn from_pcap(linktype: u32) -> Option<Self> {
        match linktype {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            12 | 14 | 101 | 228 | 229 => Some(Self::RawIp),
            0 | 108 => Some(Self::Null),
            _ => None,
        }
    }
}

/// Verdict the kernel would return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

struct L3 {
    l4_off: usize,
    l4_len: u32,
    ip_len: u32,
    proto: u8,
    v6: bool,
    addr_off: usize,
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn parse_eth(b: &[u8], off: usize) -> Option<(u16, usize)> {
    let mut ethertype = be16(b, off + 12)?;
    let mut off = off + 14;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(b, off + 2)?;
        off += 4;
    }
    Some((ethertype, off))
}

fn parse_ip(b: &[u8], ethertype: u16, off: usize) -> Result<Option<L3>, u32> {
    match ethertype {
        ETH_P_IP => parse_ipv4(b, off).map(Some),
        ETH_P_IPV6 => parse_ipv6(b, off).map(Some),
        _ => Ok(None),
    }
}

fn parse_ipv4(b: &[u8], off: usize) -> Result<L3, u32> {
    let h = b.get(off..off + 20).ok_or(counter::MALFORMED)?;
    if h[0] >> 4 != 4 {
        return Err(counter::MALFORMED);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as u32;
    if ihl < 20 || total < ihl as u32 {
        return Err(counter::MALFORMED);
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Err(counter::FRAGMENTS);
    }
    Ok(L3 {
        l4_off: off + ihl,
        l4_len: total - ihl as u32,
        ip_len: total,
        proto: h[9],
        v6: false,
        addr_off: off + 12,
    })
}

fn parse_ipv6(b: &[u8], off: usize) -> Result<L3, u32> {
    let h = b.get(off..off + 40).ok_or(counter::MALFORMED)?;
    let payload = u16::from_be_bytes([h[4], h[5]]) as u32;
    let mut next = h[6];
    let mut l4_off = off + 40;
    let mut l4_len = payload;
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            0 | 43 | 60 => {
                let e = b.get(l4_off..l4_off + 2).ok_or(counter::MALFORMED)?;
                next = e[0];
                (e[1] as u32 + 1) * 8
            }
            44 => {
                let e = b.get(l4_off..l4_off + 8).ok_or(counter::MALFORMED)?;
                if u16::from_be_bytes([e[2], e[3]]) & 0xfff8 != 0 {
                    return Err(counter::FRAGMENTS);
                }
                next = e[0];
                8
            }
            51 => {
                let e = b.get(l4_off..l4_off + 2).ok_or(counter::MALFORMED)?;
                next = e[0];
                (e[1] as u32 + 2) * 4
            }
            _ => break,
        };
        if len > l4_len {
            return Err(counter::MALFORMED);
        }
        l4_len -= len;
        l4_off += len as usize;
    }
    Ok(L3 {
        l4_off,
        l4_len,
        ip_len: 40 + payload,
        proto: next,
        v6: true,
        addr_off: off + 8,
    })
}

/// The emulated kernel state: counters, the flow table and the database port set.
pub struct Decapsulator {
    pub config: SensorConfig,
    ports: Box<[u8; 65536]>,
    pub counters: [u64; counter::COUNT as usize],
    pub flows: FlowTable,
    /// Flows marked to send their segments whole (the kernel's `WHOLE`).
    whole: foldhash::HashSet<FlowKey>,
}

/// The offline twin of the kernel's `FLOWS` LRU map, bounded the same way.
pub struct FlowTable {
    /// foldhash: keyed per table (HashDoS-resistant, as the keys come from the wire) and far
    /// cheaper than SipHash on a 40-byte key, which this looks up once per frame.
    pub map: foldhash::HashMap<FlowKey, FlowStats>,
    pub capacity: usize,
    /// Entries pushed out because the table was full (the kernel's LRU does this silently;
    /// here it is counted).
    pub evicted: u64,
}

impl FlowTable {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: foldhash::HashMap::default(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    pub fn entry(&mut self, key: &FlowKey, ts: u64) -> &mut FlowStats {
        // One lookup when the table has room (every frame but a flood's); the eviction check
        // needs a second only when it is full.
        if self.map.len() >= self.capacity && !self.map.contains_key(key) {
            // Least recently updated first, as the kernel's LRU approximates; a batch at a
            // time so that a flood of new flows costs O(1) amortised, not a scan each.
            let batch = crate::bounded::batch(self.capacity);
            for k in crate::bounded::oldest(&self.map, batch, |s| s.last_ns) {
                self.map.remove(&k);
                self.evicted += 1;
            }
        }
        self.map.entry(*key).or_insert_with(|| FlowStats {
            first_ns: ts,
            ..FlowStats::default()
        })
    }
}

impl Decapsulator {
    pub fn new(config: SensorConfig, ports: &[(u16, u8)], flow_capacity: usize) -> Self {
        let mut table = Box::new([0u8; 65536]);
        for &(port, proto) in ports {
            table[port as usize] = proto;
        }
        Self {
            config,
            ports: table,
            counters: [0; counter::COUNT as usize],
            flows: FlowTable::new(flow_capacity),
            whole: foldhash::HashSet::default(),
        }
    }

    /// The kernel's `WHOLE` map: this flow's segments go whole into their events. Bounded
    /// as the kernel's LRU (65 536 flows; past it, the oldest marks go first, here all).
    pub fn mark_whole(&mut self, key: &FlowKey) {
        if self.whole.len() >= 65_536 {
            self.whole.clear();
        }
        self.whole.insert(*key);
    }

    /// What the kernel does with a mirror copy (VXLAN or GENEVE).
    fn mirror_verdict(&self) -> Verdict {
        if self.config.flags & config_flags::DROP_MIRRORED != 0 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }

    fn count(&mut self, c: u32) {
        self.counters[c as usize] += 1;
    }

    /// Runs one frame as the XDP program would. `frame` is what arrived (the captured bytes),
    /// `wire_len` its length on the wire. When the frame yields an event, its record
    /// (header + payload, the ring-buffer encoding) is written to `record`, which is cleared first.
    pub fn process(
        &mut self,
        link: LinkType,
        frame: &[u8],
        wire_len: u32,
        ts_ns: u64,
        record: &mut Vec<u8>,
    ) -> Verdict {
        record.clear();
        self.count(counter::PACKETS);
        let verdict = self.try_process(link, frame, wire_len, ts_ns, record);
        self.count(match verdict {
            Verdict::Drop => counter::DROPPED,
            Verdict::Pass => counter::PASSED,
        });
        verdict
    }

    fn try_process(
        &mut self,
        link: LinkType,
        b: &[u8],
        wire_len: u32,
        ts: u64,
        record: &mut Vec<u8>,
    ) -> Verdict {
        let first = match link {
            LinkType::Ethernet => parse_eth(b, 0),
            LinkType::LinuxSll => be16(b, 14).map(|p| (p, 16)),
            LinkType::LinuxSll2 => be16(b, 0).map(|p| (p, 20)),
            LinkType::RawIp => match b.first().map(|v| v >> 4) {
                Some(4) => Some((ETH_P_IP, 0)),
                Some(6) => Some((ETH_P_IPV6, 0)),
                _ => None,
            },
            LinkType::Null => b.get(..4).and_then(|f| {
                let f: [u8; 4] = f.try_into().ok()?;
                // Either byte order: the family is a small number in one of them.
                let family = u32::from_le_bytes(f).min(u32::from_be_bytes(f));
                match family {
                    2 => Some((ETH_P_IP, 4)),
                    24 | 28 | 30 => Some((ETH_P_IPV6, 4)),
                    _ => None,
                }
            }),
        };
        let Some((ethertype, off)) = first else {
            self.count(counter::MALFORMED);
            return Verdict::Pass;
        };
        let outer = match parse_ip(b, ethertype, off) {
            Ok(Some(l3)) => l3,
            Ok(None) => return Verdict::Pass,
            Err(c) => {
                self.count(c);
                return Verdict::Pass;
            }
        };
        if outer.proto == IPPROTO_UDP {
            let Some(dport) = be16(b, outer.l4_off + 2) else {
                self.count(counter::MALFORMED);
                return Verdict::Pass;
            };
            if dport == self.config.vxlan_port {
                let verdict = self.mirror_verdict();
                self.vxlan(b, outer.l4_off + 8, wire_len, ts, record);
                return verdict;
            }
            if self.config.geneve_port != 0 && dport == self.config.geneve_port {
                let verdict = self.mirror_verdict();
                self.geneve(b, outer.l4_off + 8, wire_len, ts, record);
                return verdict;
            }
            self.count(counter::NON_DB);
            return Verdict::Pass;
        }
        if outer.proto == IPPROTO_TCP {
            self.tcp(b, &outer, NO_VNI, wire_len, ts, record);
        } else {
            self.count(counter::NON_DB);
        }
        Verdict::Pass
    }

    /// GENEVE (RFC 8926), as the kernel handles it: IP or Ethernet inside, VXLAN or TCP next.
    fn geneve(&mut self, b: &[u8], off: usize, wire_len: u32, ts: u64, record: &mut Vec<u8>) {
        let Some(g) = b.get(off..off + 8) else {
            self.count(counter::MALFORMED);
            return;
        };
        if g[0] >> 6 != 0 {
            self.count(counter::MALFORMED);
            return;
        }
        let inner = off + 8 + ((g[0] & 0x3f) as usize) * 4;
        let vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
        let (ethertype, ip_off) = match u16::from_be_bytes([g[2], g[3]]) {
            0x6558 => match parse_eth(b, inner) {
                Some(e) => e,
                None => {
                    self.count(counter::MALFORMED);
                    return;
                }
            },
            p @ (ETH_P_IP | ETH_P_IPV6) => (p, inner),
            _ => {
                self.count(counter::NON_DB);
                return;
            }
        };
        self.count(counter::GENEVE);
        match parse_ip(b, ethertype, ip_off) {
            Ok(Some(l3)) if l3.proto == IPPROTO_UDP => match be16(b, l3.l4_off + 2) {
                Some(port) if port == self.config.vxlan_port => {
                    self.vxlan(b, l3.l4_off + 8, wire_len, ts, record)
                }
                Some(_) => self.count(counter::NON_DB),
                None => self.count(counter::MALFORMED),
            },
            Ok(Some(l3)) if l3.proto == IPPROTO_TCP => self.tcp(b, &l3, vni, wire_len, ts, record),
            Ok(_) => self.count(counter::NON_DB),
            Err(c) => self.count(c),
        }
    }

    fn vxlan(&mut self, b: &[u8], off: usize, wire_len: u32, ts: u64, record: &mut Vec<u8>) {
        let Some(vx) = b.get(off..off + 8) else {
            self.count(counter::VXLAN_BAD);
            return;
        };
        if vx[0] & 0x08 == 0 {
            self.count(counter::VXLAN_BAD);
            return;
        }
        self.count(counter::VXLAN);
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        let Some((ethertype, inner_off)) = parse_eth(b, off + 8) else {
            self.count(counter::MALFORMED);
            return;
        };
        match parse_ip(b, ethertype, inner_off) {
            Ok(Some(inner)) if inner.proto == IPPROTO_TCP => {
                self.tcp(b, &inner, vni, wire_len, ts, record)
            }
            Ok(_) => self.count(counter::NON_DB),
            Err(c) => self.count(c),
        }
    }

    fn tcp(&mut self, b: &[u8], l3: &L3, vni: u32, wire_len: u32, ts: u64, record: &mut Vec<u8>) {
        let Some(tcp) = b.get(l3.l4_off..l3.l4_off + 20) else {
            self.count(counter::MALFORMED);
            return;
        };
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let (dir, proto) = match self.ports[dport as usize] {
            0 => match self.ports[sport as usize] {
                0 => {
                    self.count(counter::NON_DB);
                    return;
                }
                p => (direction::TO_CLIENT, p),
            },
            p => (direction::TO_SERVER, p),
        };
        self.count(counter::DB_SEGMENTS);
        let doff = ((tcp[12] >> 4) as u32) * 4;
        if doff < 20 || doff > l3.l4_len {
            self.count(counter::MALFORMED);
            return;
        }
        let flags = tcp[13];
        let seq = be32(tcp, 4).unwrap_or(0);
        let ack = be32(tcp, 8).unwrap_or(0);
        let payload_len = l3.l4_len - doff;
        let payload_off = l3.l4_off as u32 + doff;
        let present = (b.len() as u32).saturating_sub(payload_off);
        let captured = if present < payload_len {
            self.count(counter::TRUNCATED);
            present
        } else {
            payload_len
        };

        let mut key = FlowKey::default();
        let (src, dst) = addresses(b, l3);
        if dir == direction::TO_SERVER {
            (key.client_addr, key.server_addr) = (src, dst);
            (key.client_port, key.server_port) = (sport, dport);
        } else {
            (key.client_addr, key.server_addr) = (dst, src);
            (key.client_port, key.server_port) = (dport, sport);
        }
        key.vni = vni;

        let control = flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0;
        let event =
            payload_len > 0 || (control && self.config.flags & config_flags::CONTROL_EVENTS != 0);
        if !event {
            // As the kernel: a segment without an event is counted in the flow table; one with
            // an event is counted by whoever reads the event (the pipeline's flow tracker).
            self.flows.entry(&key, ts).add_segment(
                dir,
                flags,
                l3.ip_len,
                payload_len,
                captured < payload_len,
                ts,
            );
            return;
        }
        if payload_len > 0 {
            self.count(counter::DB_PAYLOAD_SEGMENTS);
        }
        let (mut head, mut tail) =
            split_payload(captured, self.config.payload_cap, self.config.tail_cap);
        if (head as u32 + tail as u32) < captured {
            // As the kernel: a flow marked whole gets what the caps would cut.
            if captured as usize <= MAX_WHOLE && self.whole.contains(&key) {
                head = captured as u16;
                tail = 0;
            } else {
                self.count(counter::CAPPED);
            }
        }
        let hdr = EventHeader {
            ts_ns: ts,
            key,
            seq,
            ack,
            wire_len,
            payload_len,
            captured_len: captured,
            head_len: head,
            tail_len: tail,
            tcp_flags: flags,
            direction: dir,
            proto,
            ip_version: if l3.v6 { 6 } else { 4 },
            ip_len: l3.ip_len,
        };
        record.extend_from_slice(crate::event::header_bytes(&hdr));
        // When the frame ends inside the TCP options, the payload offset lies past its end
        // and nothing is captured (head = tail = 0): slice only what is there.
        if captured > 0 {
            let p = payload_off as usize;
            let end = p + captured as usize;
            record.extend_from_slice(&b[p..p + head as usize]);
            record.extend_from_slice(&b[end - tail as usize..end]);
        }
        self.count(counter::EVENTS_SENT);
    }
}

/// Source and destination addresses, IPv4 mapped into IPv6.
fn addresses(b: &[u8], l3: &L3) -> ([u8; 16], [u8; 16]) {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if l3.v6 {
        src.copy_from_slice(&b[l3.addr_off..l3.addr_off + 16]);
        dst.copy_from_slice(&b[l3.addr_off + 16..l3.addr_off + 32]);
    } else {
        src[10] = 0xff;
        src[11] = 0xff;
        dst[10] = 0xff;
        dst[11] = 0xff;
        src[12..].copy_from_slice(&b[l3.addr_off..l3.addr_off + 4]);
        dst[12..].copy_from_slice(&b[l3.addr_off + 4..l3.addr_off + 8]);
    }
    (src, dst)
}

impl super::FlowSource for FlowTable {
    fn snapshot(&mut self, out: &mut Vec<(sensor_common::FlowKey, sensor_common::FlowStats)>) {
        out.clear();
        out.extend(self.map.iter().map(|(k, v)| (*k, *v)));
    }

    fn remove(&mut self, key: &sensor_common::FlowKey) {
        self.map.remove(key);
    }
}
