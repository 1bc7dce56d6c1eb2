//! XDP program for a VPC Traffic Mirroring target.
//!
//! Frame → (VLAN tags) → IPv4/IPv6 → UDP to the VXLAN port → VXLAN (I flag, VNI) → inner
//! Ethernet → IPv4/IPv6 → TCP; or plain TCP without encapsulation. A TCP segment whose source
//! or destination port is in `DB_PORTS` is accounted in its flow's summary and, if it carries
//! payload (or is SYN/FIN/RST), sent to user space as one ring-buffer record. Checksums are
//! never validated: mirrored frames may be truncated to the session's PacketLength.
#![no_std]
#![no_main]
// The BPF target's `core` has no 64-bit atomic RMW types (no CAS), but BPF has atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{
        bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::XdpContext,
};
use core::intrinsics::{AtomicOrdering, atomic_xadd};
use parse::{
    ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, L3, V4_MAPPED_ZERO, load, parse_eth, parse_ip,
};
use sensor_common::{
    Counters, EventBuf, EventHeader, FlowKey, FlowStats, MAX_PAYLOAD_CAP, NO_VNI, PortTable,
    SensorConfig, config_flags, counter, direction, split_payload, tcp_flags,
};

/// Default ring size; user space resizes it at load time (`--ring-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

#[map]
static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(262_144, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// One value: the protocol of every port (one lookup per segment, then two loads).
#[map]
static DB_PORTS: Array<PortTable> = Array::with_max_entries(1, 0);

#[map]
static CONFIG: Array<SensorConfig> = Array::with_max_entries(1, 0);

#[map]
static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

/// Tail calls: slot 0 is `rds_sensor_geneve`. Parsing GENEVE → IP → VXLAN → IP → TCP inline
/// made one program too complex for the verifier (1M instructions); as a second program,
/// each is verified on its own.
#[map]
static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What `rds_sensor` found in a GENEVE header, for `rds_sensor_geneve`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GeneveCtx {
    ip_off: u32,
    ethertype: u32,
    vni: u32,
    _pad: u32,
}

#[map]
static GENEVE_CTX: PerCpuArray<GeneveCtx> = PerCpuArray::with_max_entries(1, 0);

/// `frags`: accept multi-buffer frames (jumbo MTU 9001 on the mirror target); payload bytes
/// are read with bpf_xdp_load_bytes, which crosses fragments.
// inline(always) reaches the function the macro nests inside the entry point: left to LLVM's
// inliner it is outlined once the body is large, and the verifier refuses a tail call (GENEVE)
// from a subprogram without BTF.
#[xdp(frags)]
#[inline(always)]
pub fn rds_sensor(ctx: XdpContext) -> u32 {
    try_rds_sensor(ctx)
}

#[inline(always)]
fn try_rds_sensor(ctx: XdpContext) -> u32 {
    // One lookup for all counters of this packet (per-CPU: no other CPU writes it).
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    let c = unsafe { &mut *c };
    c.v[counter::PACKETS as usize] += 1;
    // Read in place: a copy of the whole value costs loads and stack spills on every packet.
    // Index 0 of a one-entry array always exists.
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let verdict = match fast_path(&ctx, cfg, c) {
        Some(v) => v,
        None => slow_path(&ctx, cfg, c),
    };
    if verdict == xdp_action::XDP_DROP {
        c.v[counter::DROPPED as usize] += 1;
    } else {
        c.v[counter::PASSED as usize] += 1;
    }
    verdict
}

/// The benchmark floor: a program that only drops. `cargo xtask bench` measures the sensor
/// against it in the same run (BPF_PROG_TEST_RUN's own overhead dominates this figure).
#[xdp]
pub fn bench_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// The benchmark's measure of the exact clock: one `bpf_ktime_get_ns`, then drop. Every
/// event carries one such read (latency is measured from it), so this bounds how cheap an
/// event can be on the machine at hand.
#[xdp]
pub fn bench_clock(_ctx: XdpContext) -> u32 {
    let t = unsafe { bpf_ktime_get_ns() };
    if t == 0 {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// The benchmark's traffic generator: run with BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX sends each
/// frame out of the ingress device (a veth), so the sensor on its peer receives it.
#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[inline(always)]
fn count(c: &mut Counters, index: u32) {
    c.v[index as usize] += 1;
}

#[inline(always)]
fn mirror_verdict(cfg: &SensorConfig) -> u32 {
    if cfg.flags & config_flags::DROP_MIRRORED != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// `N` bytes at a constant offset of a range already checked against data_end.
#[inline(always)]
fn rd<const N: usize>(base: usize, off: usize) -> [u8; N] {
    unsafe { core::ptr::read_unaligned((base + off) as *const [u8; N]) }
}

// Offsets of the common layouts: Ethernet + IPv4 without options (+ UDP + VXLAN + Ethernet +
// IPv4 without options) + TCP.
const PLAIN_TCP: usize = 14 + 20;
const VX_UDP: usize = 14 + 20;
const VX_HDR: usize = VX_UDP + 8;
const VX_INNER_IP: usize = VX_HDR + 8 + 14;
const VX_TCP: usize = VX_INNER_IP + 20;
const V6_L4: usize = 14 + 40;
const VX_INNER_L4_V6: usize = VX_INNER_IP + 40;

/// The common layouts with direct packet access at constant offsets: one bounds check and no
/// helper calls for headers. `None`: anything else (VLAN tags, IPv6, IP options, fragments,
/// short or odd frames), which the general path handles. Nothing is counted before deciding.
#[inline(always)]
fn fast_path(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters) -> Option<u32> {
    let base = ctx.data();
    if base + VX_UDP > ctx.data_end() {
        return None;
    }
    let eth: [u8; 2] = rd(base, 12);
    if eth == [0x86, 0xdd] {
        return fast_path_v6(ctx, cfg, c, base);
    }
    let ip: [u8; 20] = rd(base, 14);
    if eth != [0x08, 0x00] || ip[0] != 0x45 || (ip[6] & 0x1f) | ip[7] != 0 {
        return None;
    }
    match ip[9] {
        IPPROTO_TCP => {
            if base + PLAIN_TCP + 20 > ctx.data_end() {
                return None;
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as u32;
            if total < 20 {
                return None;
            }
            direct_tcp(ctx, cfg, c, base, 14, false, total - 20, NO_VNI);
            Some(xdp_action::XDP_PASS)
        }
        IPPROTO_UDP => {
            if base + VX_HDR > ctx.data_end() {
                return None;
            }
            let udp: [u8; 4] = rd(base, VX_UDP);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if dport != cfg.vxlan_port {
                if cfg.geneve_port != 0 && dport == cfg.geneve_port {
                    return None;
                }
                count(c, counter::NON_DB);
                return Some(xdp_action::XDP_PASS);
            }
            if base + VX_TCP + 20 > ctx.data_end() {
                return None;
            }
            let vx: [u8; 8] = rd(base, VX_HDR);
            let inner_eth: [u8; 2] = rd(base, VX_INNER_IP - 2);
            if vx[0] & 0x08 != 0 && inner_eth == [0x86, 0xdd] {
                return vxlan_inner_v6(ctx, cfg, c, base, &vx);
            }
            let inner: [u8; 20] = rd(base, VX_INNER_IP);
            let total = u16::from_be_bytes([inner[2], inner[3]]) as u32;
            if vx[0] & 0x08 == 0
                || inner_eth != [0x08, 0x00]
                || inner[0] != 0x45
                || (inner[6] & 0x1f) | inner[7] != 0
                || total < 20
            {
                return None;
            }
            count(c, counter::VXLAN);
            if inner[9] != IPPROTO_TCP {
                count(c, counter::NON_DB);
                return Some(mirror_verdict(cfg));
            }
            let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
            direct_tcp(ctx, cfg, c, base, VX_INNER_IP, false, total - 20, vni);
            Some(mirror_verdict(cfg))
        }
        _ => None,
    }
}

/// VXLAN (IPv4 outside, checked by the caller up to the inner Ethernet header) around IPv6
/// without extension headers + TCP. Anything else inside goes to the general path.
#[inline(always)]
fn vxlan_inner_v6(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    base: usize,
    vx: &[u8; 8],
) -> Option<u32> {
    if base + VX_INNER_L4_V6 + 20 > ctx.data_end() {
        return None;
    }
    let ip: [u8; 8] = rd(base, VX_INNER_IP);
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_TCP {
        return None;
    }
    count(c, counter::VXLAN);
    let payload = u16::from_be_bytes([ip[4], ip[5]]) as u32;
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    direct_tcp(ctx, cfg, c, base, VX_INNER_IP, true, payload, vni);
    Some(mirror_verdict(cfg))
}

/// Ethernet + IPv6 without extension headers + TCP, or + UDP that is neither VXLAN nor
/// GENEVE (VXLAN over IPv6 and extension headers take the general path).
#[inline(always)]
fn fast_path_v6(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    base: usize,
) -> Option<u32> {
    if base + V6_L4 + 8 > ctx.data_end() {
        return None;
    }
    let ip: [u8; 8] = rd(base, 14);
    if ip[0] >> 4 != 6 {
        return None;
    }
    let payload = u16::from_be_bytes([ip[4], ip[5]]) as u32;
    match ip[6] {
        IPPROTO_TCP => {
            if base + V6_L4 + 20 > ctx.data_end() {
                return None;
            }
            direct_tcp(ctx, cfg, c, base, 14, true, payload, NO_VNI);
            Some(xdp_action::XDP_PASS)
        }
        IPPROTO_UDP => {
            let udp: [u8; 4] = rd(base, V6_L4);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if dport == cfg.vxlan_port || (cfg.geneve_port != 0 && dport == cfg.geneve_port) {
                return None;
            }
            count(c, counter::NON_DB);
            Some(xdp_action::XDP_PASS)
        }
        _ => None,
    }
}

/// A TCP segment behind an IP header without options or extension headers at the constant
/// `ip_off` (every direct layout), its 20-byte header checked against data_end by the caller.
/// `l4_len`: TCP header + payload according to the IP header.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn direct_tcp(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    base: usize,
    ip_off: usize,
    v6: bool,
    l4_len: u32,
    vni: u32,
) {
    let (ip_hdr, addr_off) = if v6 {
        (40, ip_off + 8)
    } else {
        (20, ip_off + 12)
    };
    let l3 = L3 {
        l4_off: ip_off + ip_hdr,
        l4_len,
        ip_len: l4_len + ip_hdr as u32,
        proto: IPPROTO_TCP,
        v6,
        addr_off,
    };
    handle_tcp(
        ctx,
        cfg,
        c,
        &Direct(base + l3.l4_off),
        &l3,
        vni,
        |key, dir| {
            if v6 {
                write_addrs(key, dir, rd(base, addr_off), rd(base, addr_off + 16));
            } else {
                write_v4_key(key, dir, rd(base, addr_off), rd(base, addr_off + 4));
            }
            true
        },
    );
}

#[inline(always)]
fn write_addrs(key: &mut FlowKey, dir: u8, src: [u8; 16], dst: [u8; 16]) {
    if dir == direction::TO_SERVER {
        key.client_addr = src;
        key.server_addr = dst;
    } else {
        key.client_addr = dst;
        key.server_addr = src;
    }
}

#[inline(always)]
fn write_v4_key(key: &mut FlowKey, dir: u8, src: [u8; 4], dst: [u8; 4]) {
    let (client, server) = if dir == direction::TO_SERVER {
        (src, dst)
    } else {
        (dst, src)
    };
    key.client_addr = V4_MAPPED_ZERO;
    key.server_addr = V4_MAPPED_ZERO;
    key.client_addr[12..].copy_from_slice(&client);
    key.server_addr[12..].copy_from_slice(&server);
}

/// Every other layout, with bounds-checked copies (see parse.rs for why).
#[inline(always)]
fn slow_path(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters) -> u32 {
    let Some((ethertype, off)) = parse_eth(ctx, 0) else {
        count(c, counter::MALFORMED);
        return xdp_action::XDP_PASS;
    };
    let outer = match parse_ip(ctx, ethertype, off) {
        Ok(Some(l3)) => l3,
        Ok(None) => return xdp_action::XDP_PASS, // not IP: ARP and friends
        Err(e) => {
            count(c, e);
            return xdp_action::XDP_PASS;
        }
    };
    if outer.proto == IPPROTO_UDP {
        let Some(udp) = load::<4>(ctx, outer.l4_off) else {
            count(c, counter::MALFORMED);
            return xdp_action::XDP_PASS;
        };
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        if dport == cfg.vxlan_port {
            handle_vxlan(ctx, cfg, c, outer.l4_off + 8);
            return mirror_verdict(cfg);
        }
        if cfg.geneve_port != 0 && dport == cfg.geneve_port {
            handle_geneve(ctx, c, outer.l4_off + 8);
            return mirror_verdict(cfg);
        }
        count(c, counter::NON_DB);
        return xdp_action::XDP_PASS;
    }
    if outer.proto == IPPROTO_TCP {
        match load::<20>(ctx, outer.l4_off) {
            Some(tcp) => handle_tcp(ctx, cfg, c, &tcp, &outer, NO_VNI, |key, dir| {
                outer.write_key(ctx, key, dir)
            }),
            None => count(c, counter::MALFORMED),
        }
    } else {
        count(c, counter::NON_DB);
    }
    xdp_action::XDP_PASS
}

/// RFC 8926: ver(2) opt_len(6) | O C rsvd(6) | protocol type(16) | VNI(24) rsvd(8) | options.
/// A Gateway Load Balancer sends the original IP packet (protocol type IPv4/IPv6); a mirror
/// session whose target is a GWLB endpoint nests VXLAN inside. Ethernet (0x6558) too.
/// The header is read here; what is inside is parsed by `rds_sensor_geneve` (a tail call),
/// which also counts the verdict. Returns only if the tail call could not be made.
#[inline(always)]
fn handle_geneve(ctx: &XdpContext, c: &mut Counters, off: usize) {
    let Some(g) = load::<8>(ctx, off) else {
        count(c, counter::MALFORMED);
        return;
    };
    if g[0] >> 6 != 0 {
        count(c, counter::MALFORMED);
        return;
    }
    let inner = off + 8 + ((g[0] & 0x3f) as usize) * 4;
    let (ethertype, ip_off) = match u16::from_be_bytes([g[2], g[3]]) {
        0x6558 => match parse_eth(ctx, inner) {
            Some(e) => e,
            None => {
                count(c, counter::MALFORMED);
                return;
            }
        },
        p @ (ETH_P_IP | ETH_P_IPV6) => (p, inner),
        _ => {
            count(c, counter::NON_DB);
            return;
        }
    };
    let Some(gc) = GENEVE_CTX.get_ptr_mut(0) else {
        return;
    };
    unsafe {
        (*gc).ip_off = ip_off as u32;
        (*gc).ethertype = ethertype as u32;
        (*gc).vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
    }
    count(c, counter::GENEVE);
    unsafe { JUMP.tail_call(ctx, 0) };
    // Not reached unless user space did not install the program.
    count(c, counter::MALFORMED);
}

/// The inside of a GENEVE frame (see `handle_geneve`), tail-called from `rds_sensor`.
#[xdp(frags)]
pub fn rds_sensor_geneve(ctx: XdpContext) -> u32 {
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    let c = unsafe { &mut *c };
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let (ip_off, ethertype, vni) = match GENEVE_CTX.get(0) {
        Some(g) => (g.ip_off as usize, g.ethertype as u16, g.vni),
        None => (0, 0, 0),
    };
    match parse_ip(&ctx, ethertype, ip_off) {
        Ok(Some(l3)) if l3.proto == IPPROTO_UDP => match load::<4>(&ctx, l3.l4_off) {
            Some(udp) if u16::from_be_bytes([udp[2], udp[3]]) == cfg.vxlan_port => {
                handle_vxlan(&ctx, cfg, c, l3.l4_off + 8)
            }
            Some(_) => count(c, counter::NON_DB),
            None => count(c, counter::MALFORMED),
        },
        Ok(Some(l3)) if l3.proto == IPPROTO_TCP => match load::<20>(&ctx, l3.l4_off) {
            Some(tcp) => handle_tcp(&ctx, cfg, c, &tcp, &l3, vni, |key, dir| {
                l3.write_key(&ctx, key, dir)
            }),
            None => count(c, counter::MALFORMED),
        },
        Ok(_) => count(c, counter::NON_DB),
        Err(e) => count(c, e),
    }
    let verdict = mirror_verdict(cfg);
    if verdict == xdp_action::XDP_DROP {
        count(c, counter::DROPPED);
    } else {
        count(c, counter::PASSED);
    }
    verdict
}

/// RFC 7348: flags(8, I = 0x08) reserved(24) VNI(24) reserved(8), then the inner frame.
#[inline(always)]
fn handle_vxlan(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters, off: usize) {
    let Some(vx) = load::<8>(ctx, off) else {
        count(c, counter::VXLAN_BAD);
        return;
    };
    if vx[0] & 0x08 == 0 {
        count(c, counter::VXLAN_BAD);
        return;
    }
    count(c, counter::VXLAN);
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    let Some((ethertype, inner_off)) = parse_eth(ctx, off + 8) else {
        count(c, counter::MALFORMED);
        return;
    };
    match parse_ip(ctx, ethertype, inner_off) {
        Ok(Some(inner)) if inner.proto == IPPROTO_TCP => match load::<20>(ctx, inner.l4_off) {
            Some(tcp) => handle_tcp(ctx, cfg, c, &tcp, &inner, vni, |key, dir| {
                inner.write_key(ctx, key, dir)
            }),
            None => count(c, counter::MALFORMED),
        },
        Ok(_) => count(c, counter::NON_DB),
        Err(e) => count(c, e),
    }
}

/// A TCP segment whose header (`tcp`, 20 bytes) and IP facts (`l3`) were read by either path;
/// `write_key` puts its addresses into the flow key.
#[inline(always)]
fn handle_tcp(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    tcp: &impl TcpHeader,
    l3: &L3,
    vni: u32,
    write_key: impl FnOnce(&mut FlowKey, u8) -> bool,
) {
    let Some(ports) = DB_PORTS.get(0) else {
        return;
    };
    let p = tcp.ports();
    let sport = u16::from_be_bytes([p[0], p[1]]);
    let dport = u16::from_be_bytes([p[2], p[3]]);
    let (dir, proto) = match ports.proto[dport as usize] {
        0 => match ports.proto[sport as usize] {
            0 => {
                count(c, counter::NON_DB);
                return;
            }
            p => (direction::TO_CLIENT, p),
        },
        p => (direction::TO_SERVER, p),
    };
    count(c, counter::DB_SEGMENTS);
    // Bytes 4..20: read only now, for database segments.
    let rest = tcp.rest();
    let tcp = |i: usize| rest[i - 4];
    let doff = ((tcp(12) >> 4) as u32) * 4;
    if doff < 20 || doff > l3.l4_len {
        count(c, counter::MALFORMED);
        return;
    }
    let flags = tcp(13);
    let payload_len = l3.l4_len - doff;
    let payload_off = l3.l4_off as u32 + doff;
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let present = frame_len.saturating_sub(payload_off);
    let captured = if present < payload_len {
        count(c, counter::TRUNCATED);
        present
    } else {
        payload_len
    };
    let control = flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0;
    let event = payload_len > 0 || (control && cfg.flags & config_flags::CONTROL_EVENTS != 0);
    // An event's timestamp is what latency is measured from, so it is exact. A segment that
    // only updates its flow's summary gets the clock of the last tick (≤ 1/HZ old): the exact
    // clock costs ~35 ns per read on a VM with retpolines (see the bench's clock figure),
    // more than the rest of such a packet's work.
    let ts = unsafe {
        if event {
            bpf_ktime_get_ns()
        } else {
            bpf_ktime_get_coarse_ns()
        }
    };

    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let hdr = unsafe { &mut (*buf).hdr };
    // The key is assembled in the scratch value rather than on the 512-byte stack.
    if !write_key(&mut hdr.key, dir) {
        count(c, counter::MALFORMED);
        return;
    }
    hdr.key.client_port = if dir == direction::TO_SERVER {
        sport
    } else {
        dport
    };
    hdr.key.server_port = if dir == direction::TO_SERVER {
        dport
    } else {
        sport
    };
    hdr.key.vni = vni;

    update_flow(
        c,
        &hdr.key,
        dir,
        flags,
        l3.ip_len,
        payload_len,
        captured < payload_len,
        ts,
    );

    if !event {
        return;
    }
    if payload_len > 0 {
        count(c, counter::DB_PAYLOAD_SEGMENTS);
    }
    let (head, tail) = split_payload(captured, cfg.payload_cap, cfg.tail_cap);
    if (head as u32 + tail as u32) < captured {
        count(c, counter::CAPPED);
    }
    hdr.ts_ns = ts;
    hdr.seq = u32::from_be_bytes([tcp(4), tcp(5), tcp(6), tcp(7)]);
    hdr.ack = u32::from_be_bytes([tcp(8), tcp(9), tcp(10), tcp(11)]);
    hdr.payload_len = payload_len;
    hdr.tcp_flags = flags;
    hdr.direction = dir;
    hdr.proto = proto;
    hdr.ip_version = if l3.v6 { 6 } else { 4 };
    hdr._pad = [0; 4];
    send_event(
        ctx,
        c,
        cfg.wakeup_bytes,
        buf,
        frame_len,
        payload_off,
        captured,
        head as u32,
        tail as u32,
    );
}

/// A TCP header: its ports are read for every segment, the rest only for database segments
/// (read up front, the whole header was loaded and spilled to the stack on every packet).
trait TcpHeader {
    fn ports(&self) -> [u8; 4];
    /// Bytes 4..20: sequence and acknowledgement numbers, data offset, flags.
    fn rest(&self) -> [u8; 16];
}

/// Copied by the general path.
impl TcpHeader for [u8; 20] {
    #[inline(always)]
    fn ports(&self) -> [u8; 4] {
        [self[0], self[1], self[2], self[3]]
    }
    #[inline(always)]
    fn rest(&self) -> [u8; 16] {
        let mut r = [0u8; 16];
        r.copy_from_slice(&self[4..]);
        r
    }
}

/// In the packet at an address the direct path checked against data_end (20 bytes).
struct Direct(usize);

impl TcpHeader for Direct {
    #[inline(always)]
    fn ports(&self) -> [u8; 4] {
        rd(self.0, 0)
    }
    #[inline(always)]
    fn rest(&self) -> [u8; 16] {
        rd(self.0, 4)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn update_flow(
    c: &mut Counters,
    key: &FlowKey,
    dir: u8,
    flags: u8,
    ip_len: u32,
    payload_len: u32,
    truncated: bool,
    ts: u64,
) {
    let stats = match FLOWS.get_ptr_mut(key) {
        Some(s) => s,
        None => {
            let mut fresh = core::mem::MaybeUninit::<FlowStats>::uninit();
            init_flow_stats(&mut fresh, ts);
            // BPF_NOEXIST: another CPU may have created it meanwhile; then we use theirs.
            // Inserted from the initialised memory itself: a copy would be a memset again.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let _ = FLOWS.insert(key, unsafe { &*fresh.as_ptr() }, 1);
            match FLOWS.get_ptr_mut(key) {
                Some(s) => s,
                None => {
                    count(c, counter::FLOW_UPDATE_FAILED);
                    return;
                }
            }
        }
    };
    let d = (dir & 1) as usize;
    unsafe {
        (*stats).last_ns = ts;
        add(&raw mut (*stats).packets[d], 1);
        add(&raw mut (*stats).bytes[d], ip_len as u64);
        if payload_len != 0 {
            add(&raw mut (*stats).payload_bytes[d], payload_len as u64);
        }
        if flags & tcp_flags::SYN != 0 {
            if flags & tcp_flags::ACK != 0 {
                add(&raw mut (*stats).syn_ack, 1);
            } else {
                add(&raw mut (*stats).syn, 1);
            }
        }
        if flags & tcp_flags::FIN != 0 {
            add(&raw mut (*stats).fin[d], 1);
        }
        if flags & tcp_flags::RST != 0 {
            add(&raw mut (*stats).rst, 1);
        }
        if truncated {
            add(&raw mut (*stats).truncated, 1);
        }
    }
}

/// A zeroed summary built with volatile stores: a struct literal becomes a call to a byte-wise
/// `memset`, which the verifier walks byte by byte at every call site (1M-instruction limit).
#[inline(always)]
fn init_flow_stats(s: &mut core::mem::MaybeUninit<FlowStats>, ts: u64) {
    let p = s.as_mut_ptr().cast::<u64>();
    const WORDS: usize = core::mem::size_of::<FlowStats>() / 8;
    unsafe {
        core::ptr::write_volatile(p, ts);
        let mut i = 1;
        while i < WORDS {
            core::ptr::write_volatile(p.add(i), 0);
            i += 1;
        }
    }
}

/// An atomic add (BPF_ATOMIC | BPF_ADD): both directions of a flow may update it from
/// different CPUs at once.
#[inline(always)]
unsafe fn add(p: *mut u64, v: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Ring-buffer output flags for [`SensorConfig::wakeup_bytes`]: one forced wakeup when this
/// record takes the waiting bytes across the threshold, none otherwise. Forcing on every
/// record above it would wake the reader (irq_work, then a context switch) once per event
/// for as long as it lags, which is when it can least afford it.
#[inline(always)]
fn wakeup_flags(wakeup_bytes: u32, len: u64) -> u64 {
    if wakeup_bytes == 0 {
        return 0;
    }
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    if waiting < wakeup_bytes as u64 && waiting + len >= wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send_event(
    ctx: &XdpContext,
    c: &mut Counters,
    wakeup_bytes: u32,
    buf: *mut EventBuf,
    frame_len: u32,
    payload_off: u32,
    captured: u32,
    head: u32,
    tail: u32,
) {
    unsafe {
        (*buf).hdr.head_len = head as u16;
        (*buf).hdr.tail_len = tail as u16;
        (*buf).hdr.captured_len = captured;
        (*buf).hdr.wire_len = payload_off;
    }
    // Read the lengths back from map memory: the verifier does not track values through map
    // values, so these are fresh scalars bounded only by the checks below. Without this, the
    // precision the helpers' size arguments need propagates back to every header offset and
    // defeats state pruning.
    let (head, tail, captured, payload_off) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*buf).hdr.head_len) as u32,
            core::ptr::read_volatile(&raw const (*buf).hdr.tail_len) as u32,
            core::ptr::read_volatile(&raw const (*buf).hdr.captured_len),
            core::ptr::read_volatile(&raw const (*buf).hdr.wire_len),
        )
    };
    // `data` is 2 × MAX_PAYLOAD_CAP so that head + tail fits with each bounded on its own.
    if head > MAX_PAYLOAD_CAP as u32 || tail > MAX_PAYLOAD_CAP as u32 {
        return;
    }
    unsafe {
        let data = (&raw mut (*buf).data).cast::<u8>();
        if head > 0 && bpf_xdp_load_bytes(ctx.ctx, payload_off, data.cast(), head) != 0 {
            count(c, counter::MALFORMED);
            return;
        }
        if tail > 0
            && bpf_xdp_load_bytes(
                ctx.ctx,
                payload_off + captured - tail,
                data.add(head as usize).cast(),
                tail,
            ) != 0
        {
            count(c, counter::MALFORMED);
            return;
        }
        (*buf).hdr.wire_len = frame_len;
        let len = EventHeader::SIZE + head as usize + tail as usize;
        let record = core::slice::from_raw_parts(buf.cast::<u8>(), len);
        match EVENTS.output::<[u8]>(record, wakeup_flags(wakeup_bytes, len as u64)) {
            Ok(()) => count(c, counter::EVENTS_SENT),
            Err(_) => count(c, counter::EVENTS_DROPPED),
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
