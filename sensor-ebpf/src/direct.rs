//! The common layouts with direct packet access at constant offsets: one bounds check and no
//! helper calls for headers. TCP in plain IPv4/IPv6, or in VXLAN (IPv4 outside) around
//! IPv4/IPv6, all IP without options or extension headers. Anything else returns `None` and
//! takes the general path (general.rs).
//!
//! Every read goes through [`Frame::rd`], which is `unsafe`: its range must be covered by a
//! [`Frame::has`] check on the same path. The verifier refuses the program otherwise, so a
//! missing check is a load-time error, not a wrong read; the `// SAFETY:` comments name the
//! check that covers each read.

use crate::{
    counters::count,
    encap::{ENCAP_HLEN, mirror_verdict, vxlan_vni},
    parse::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, L3, V4_MAPPED_ZERO},
    tcp::{TcpHeader, handle_tcp},
};
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use sensor_common::{Counters, FlowKey, NO_VNI, SensorConfig, counter, direction};

// Offsets of the common layouts: Ethernet + IPv4 without options (+ UDP + VXLAN + Ethernet +
// IPv4 without options) + TCP.
const ETH_HLEN: usize = 14;
const PLAIN_TCP: usize = ETH_HLEN + 20;
const VX_UDP: usize = ETH_HLEN + 20;
const VX_HDR: usize = VX_UDP + 8;
const VX_INNER_IP: usize = VX_HDR + ENCAP_HLEN + ETH_HLEN;
const VX_TCP: usize = VX_INNER_IP + 20;
const V6_L4: usize = ETH_HLEN + 40;
const VX_INNER_L4_V6: usize = VX_INNER_IP + 40;

/// Ethertypes as they are on the wire.
const ETH_IP: [u8; 2] = ETH_P_IP.to_be_bytes();
const ETH_IPV6: [u8; 2] = ETH_P_IPV6.to_be_bytes();

/// The frame's first byte in direct packet access (`ctx.data()`); made only from the context.
#[derive(Clone, Copy)]
pub struct Frame(usize);

impl Frame {
    #[inline(always)]
    fn of(ctx: &XdpContext) -> Self {
        Frame(ctx.data())
    }

    /// Whether the frame's first `len` bytes are in the packet (its linear part: with `frags`,
    /// the first buffer). The check the verifier needs before any read of them.
    #[inline(always)]
    fn has(self, ctx: &XdpContext, len: usize) -> bool {
        self.0 + len <= ctx.data_end()
    }

    /// `N` bytes at offset `off` of the frame.
    ///
    /// # Safety
    ///
    /// `self.has(ctx, off + N)` (or a check of a larger length) was true on this path.
    #[inline(always)]
    unsafe fn rd<const N: usize>(self, off: usize) -> [u8; N] {
        // SAFETY: in the packet by the caller's contract; a frame has no alignment.
        unsafe { core::ptr::read_unaligned((self.0 + off) as *const [u8; N]) }
    }
}

/// IPv4 without options and not a later fragment (fragment offset 0; MF may be set: the first
/// fragment carries the TCP header).
#[inline(always)]
fn plain_v4(ip: &[u8; 20]) -> bool {
    ip[0] == 0x45 && (ip[6] & 0x1f) | ip[7] == 0
}

/// The common layouts; `None`: anything else (VLAN tags, IP options, fragments, short or odd
/// frames), which the general path handles. Nothing is counted before deciding.
#[inline(always)]
pub fn fast_path(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters) -> Option<u32> {
    let frame = Frame::of(ctx);
    if !frame.has(ctx, VX_UDP) {
        return None;
    }
    // SAFETY: within VX_UDP (checked above).
    let eth: [u8; 2] = unsafe { frame.rd(12) };
    if eth == ETH_IPV6 {
        return fast_path_v6(ctx, cfg, c, frame);
    }
    // SAFETY: 14 + 20 = VX_UDP (checked above).
    let ip: [u8; 20] = unsafe { frame.rd(ETH_HLEN) };
    if eth != ETH_IP || !plain_v4(&ip) {
        return None;
    }
    match ip[9] {
        IPPROTO_TCP => {
            if !frame.has(ctx, PLAIN_TCP + 20) {
                return None;
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as u32;
            if total < 20 {
                return None;
            }
            // SAFETY: IPv4 at 14 without options, TCP header within PLAIN_TCP + 20 (checked).
            unsafe { direct_tcp(ctx, cfg, c, frame, ETH_HLEN, false, total - 20, NO_VNI) };
            Some(xdp_action::XDP_PASS)
        }
        IPPROTO_UDP => {
            if !frame.has(ctx, VX_HDR) {
                return None;
            }
            // SAFETY: VX_UDP + 4 within VX_HDR (checked above).
            let udp: [u8; 4] = unsafe { frame.rd(VX_UDP) };
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if dport != cfg.vxlan_port {
                if cfg.geneve_port != 0 && dport == cfg.geneve_port {
                    return None;
                }
                count(c, counter::NON_DB);
                return Some(xdp_action::XDP_PASS);
            }
            if !frame.has(ctx, VX_TCP + 20) {
                return None;
            }
            // SAFETY: the VXLAN header and the inner ethertype end before VX_INNER_IP, within
            // VX_TCP + 20 (checked above).
            let (vx, inner_eth): ([u8; 8], [u8; 2]) =
                unsafe { (frame.rd(VX_HDR), frame.rd(VX_INNER_IP - 2)) };
            let vni = vxlan_vni(vx)?;
            if inner_eth == ETH_IPV6 {
                return vxlan_inner_v6(ctx, cfg, c, frame, vni);
            }
            // SAFETY: VX_INNER_IP + 20 = VX_TCP (checked above).
            let inner: [u8; 20] = unsafe { frame.rd(VX_INNER_IP) };
            let total = u16::from_be_bytes([inner[2], inner[3]]) as u32;
            if inner_eth != ETH_IP || !plain_v4(&inner) || total < 20 {
                return None;
            }
            count(c, counter::VXLAN);
            if inner[9] != IPPROTO_TCP {
                count(c, counter::NON_DB);
                return Some(mirror_verdict(cfg));
            }
            // SAFETY: inner IPv4 at VX_INNER_IP without options, TCP header within VX_TCP + 20
            // (checked above).
            unsafe { direct_tcp(ctx, cfg, c, frame, VX_INNER_IP, false, total - 20, vni) };
            Some(mirror_verdict(cfg))
        }
        _ => None,
    }
}

/// VXLAN (IPv4 outside, already read up to the inner Ethernet header) around IPv6 without
/// extension headers + TCP. Anything else inside goes to the general path.
#[inline(always)]
fn vxlan_inner_v6(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    frame: Frame,
    vni: u32,
) -> Option<u32> {
    if !frame.has(ctx, VX_INNER_L4_V6 + 20) {
        return None;
    }
    // SAFETY: within VX_INNER_L4_V6 + 20 (checked above).
    let ip: [u8; 8] = unsafe { frame.rd(VX_INNER_IP) };
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_TCP {
        return None;
    }
    count(c, counter::VXLAN);
    let payload = u16::from_be_bytes([ip[4], ip[5]]) as u32;
    // SAFETY: inner IPv6 at VX_INNER_IP without extension headers, TCP header within
    // VX_INNER_L4_V6 + 20 (checked above).
    unsafe { direct_tcp(ctx, cfg, c, frame, VX_INNER_IP, true, payload, vni) };
    Some(mirror_verdict(cfg))
}

/// Ethernet + IPv6 without extension headers + TCP, or + UDP that is neither VXLAN nor
/// GENEVE (VXLAN over IPv6 and extension headers take the general path).
#[inline(always)]
fn fast_path_v6(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    frame: Frame,
) -> Option<u32> {
    if !frame.has(ctx, V6_L4 + 8) {
        return None;
    }
    // SAFETY: within V6_L4 + 8 (checked above).
    let ip: [u8; 8] = unsafe { frame.rd(ETH_HLEN) };
    if ip[0] >> 4 != 6 {
        return None;
    }
    let payload = u16::from_be_bytes([ip[4], ip[5]]) as u32;
    match ip[6] {
        IPPROTO_TCP => {
            if !frame.has(ctx, V6_L4 + 20) {
                return None;
            }
            // SAFETY: IPv6 at 14 without extension headers, TCP header within V6_L4 + 20
            // (checked above).
            unsafe { direct_tcp(ctx, cfg, c, frame, ETH_HLEN, true, payload, NO_VNI) };
            Some(xdp_action::XDP_PASS)
        }
        IPPROTO_UDP => {
            // SAFETY: V6_L4 + 4 within V6_L4 + 8 (checked at the top).
            let udp: [u8; 4] = unsafe { frame.rd(V6_L4) };
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
/// `ip_off` (every direct layout). `l4_len`: TCP header + payload according to the IP header.
///
/// # Safety
///
/// `frame.has(ctx, ip_off + 20 + 20)` (IPv4) or `frame.has(ctx, ip_off + 40 + 20)` (IPv6,
/// `v6`) was true: the IP header's addresses and the 20-byte TCP header are read directly.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn direct_tcp(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    frame: Frame,
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
    // SAFETY: the TCP header's 20 bytes at l4_off are in the packet (this function's contract).
    let tcp = unsafe { Direct::new(frame, l3.l4_off) };
    handle_tcp(ctx, cfg, c, &tcp, &l3, vni, |key, dir| {
        // SAFETY: the addresses are in the IP header, before the TCP header (contract).
        unsafe {
            if v6 {
                write_addrs(key, dir, frame.rd(addr_off), frame.rd(addr_off + 16));
            } else {
                write_v4_key(key, dir, frame.rd(addr_off), frame.rd(addr_off + 4));
            }
        }
        true
    });
}

/// IPv6 addresses into the flow key, the client's first.
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

/// IPv4 addresses into the flow key as IPv4-mapped IPv6, the client's first.
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

/// A TCP header in the packet, read in place (20 bytes the direct path checked).
struct Direct {
    frame: Frame,
    off: usize,
}

impl Direct {
    /// # Safety
    ///
    /// `frame.has(ctx, off + 20)` was true on this path.
    #[inline(always)]
    unsafe fn new(frame: Frame, off: usize) -> Self {
        Direct { frame, off }
    }
}

impl TcpHeader for Direct {
    #[inline(always)]
    fn ports(&self) -> [u8; 4] {
        // SAFETY: bytes 0..4 of the 20 that `Direct::new`'s caller checked.
        unsafe { self.frame.rd(self.off) }
    }
    #[inline(always)]
    fn rest(&self) -> [u8; 16] {
        // SAFETY: bytes 4..20 of the 20 that `Direct::new`'s caller checked.
        unsafe { self.frame.rd(self.off + 4) }
    }
}
