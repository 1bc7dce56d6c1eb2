//! Header parsing. Every header read goes through [`load`], one bounds-checked copy.
//!
//! Why bpf_xdp_load_bytes rather than direct packet access: with direct access every offset
//! is a packet pointer the verifier must track exactly, so each combination of VLAN tags,
//! IPv4 options and IPv6 extension headers, outer and inner, is a separate state, and the
//! program exceeded the 1M-instruction verification limit. Offsets passed to the helper are
//! plain scalars the verifier need not track precisely, so those paths merge. The helper
//! checks the range at run time (and crosses XDP fragments).

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use sensor_common::{FlowKey, counter, direction};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const ETH_HLEN: usize = 14;
/// IPv6 extension headers walked before giving up (each one costs verifier states).
const MAX_IPV6_EXT: usize = 6;

/// Copies `N` bytes at `offset`, or `None` if the frame is shorter.
#[inline(always)]
pub fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    // Uninitialised on purpose: zeroing becomes a byte-wise memset call the verifier walks
    // byte by byte; the helper writes all N bytes (or zeroes them on failure).
    let mut buf = core::mem::MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: the helper writes at most N bytes, the size of `buf`.
    let ret =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf.as_mut_ptr().cast(), N as u32) };
    // SAFETY: on success the helper wrote all N bytes.
    (ret == 0).then(|| unsafe { buf.assume_init() })
}

/// Copies `len` bytes at `offset` into `dst` (map memory), false if the frame is shorter.
///
/// # Safety
///
/// `dst` is valid for writes of `len` bytes.
#[inline(always)]
unsafe fn load_into(ctx: &XdpContext, offset: usize, dst: *mut u8, len: u32) -> bool {
    // SAFETY: the helper writes at most `len` bytes at `dst` (the caller's contract).
    unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, dst.cast(), len) == 0 }
}

/// Ethernet header plus up to two VLAN tags (802.1ad outer, 802.1Q inner).
/// Returns the ethertype and the offset of the L3 header.
#[inline(always)]
pub fn parse_eth(ctx: &XdpContext, off: usize) -> Option<(u16, usize)> {
    let t = load::<2>(ctx, off + 12)?;
    let mut ethertype = u16::from_be_bytes(t);
    let mut off = off + ETH_HLEN;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let t = load::<2>(ctx, off + 2)?;
        ethertype = u16::from_be_bytes(t);
        off += 4;
    }
    Some((ethertype, off))
}

/// What a flow key and the accounting need from an IP header.
pub struct L3 {
    /// Offset of the L4 header.
    pub l4_off: usize,
    /// L4 bytes according to the IP header (excluding IPv6 extension headers).
    pub l4_len: u32,
    /// Datagram bytes according to the IP header.
    pub ip_len: u32,
    pub proto: u8,
    pub v6: bool,
    /// Offset of the source address; the destination follows it (4 or 16 bytes later).
    pub addr_off: usize,
}

impl L3 {
    /// Writes the addresses into `key` (map memory; IPv4 as IPv4-mapped IPv6), the client
    /// side first. False if the frame is too short.
    #[inline(always)]
    pub fn write_key(&self, ctx: &XdpContext, key: &mut FlowKey, dir: u8) -> bool {
        let (client, server) = if dir == direction::TO_SERVER {
            (key.client_addr.as_mut_ptr(), key.server_addr.as_mut_ptr())
        } else {
            (key.server_addr.as_mut_ptr(), key.client_addr.as_mut_ptr())
        };
        if self.v6 {
            // SAFETY: `client` and `server` point to the key's two 16-byte addresses.
            return unsafe {
                load_into(ctx, self.addr_off, client, 16)
                    && load_into(ctx, self.addr_off + 16, server, 16)
            };
        }
        key.client_addr = V4_MAPPED_ZERO;
        key.server_addr = V4_MAPPED_ZERO;
        // SAFETY: the last 4 bytes of the key's two 16-byte addresses (IPv4-mapped IPv6).
        unsafe {
            load_into(ctx, self.addr_off, client.add(12), 4)
                && load_into(ctx, self.addr_off + 4, server.add(12), 4)
        }
    }
}

pub const V4_MAPPED_ZERO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];

/// Parses an IPv4 or IPv6 header at `off`. `Ok(None)`: not IP. `Err(counter)`: a frame to
/// account under that counter (malformed, or a non-first fragment without an L4 header).
#[inline(always)]
pub fn parse_ip(ctx: &XdpContext, ethertype: u16, off: usize) -> Result<Option<L3>, u32> {
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, off).map(Some),
        ETH_P_IPV6 => parse_ipv6(ctx, off).map(Some),
        _ => Ok(None),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<L3, u32> {
    let h = load::<20>(ctx, off).ok_or(counter::MALFORMED)?;
    if h[0] >> 4 != 4 {
        return Err(counter::MALFORMED);
    }
    // IHL is 4 bits: at most 60 bytes, which keeps the offset's range small for the verifier.
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

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<L3, u32> {
    let h = load::<8>(ctx, off).ok_or(counter::MALFORMED)?;
    let (payload, mut next) = (u16::from_be_bytes([h[4], h[5]]) as u32, h[6]);
    let mut l4_off = off + 40;
    let mut l4_len = payload;
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units, minus one.
            0 | 43 | 60 => {
                let e = load::<2>(ctx, l4_off).ok_or(counter::MALFORMED)?;
                next = e[0];
                (e[1] as u32 + 1) * 8
            }
            // Fragment: only the first fragment carries the TCP header.
            44 => {
                let e = load::<4>(ctx, l4_off).ok_or(counter::MALFORMED)?;
                if u16::from_be_bytes([e[2], e[3]]) & 0xfff8 != 0 {
                    return Err(counter::FRAGMENTS);
                }
                next = e[0];
                8
            }
            // Authentication header: length in 4-octet units, minus two.
            51 => {
                let e = load::<2>(ctx, l4_off).ok_or(counter::MALFORMED)?;
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
