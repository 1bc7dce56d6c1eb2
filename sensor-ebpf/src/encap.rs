//! The encapsulations a mirror target receives (VXLAN from VPC Traffic Mirroring, GENEVE from a
//! Gateway Load Balancer) and the verdict on the frames they carry.

use aya_ebpf::bindings::xdp_action;
use sensor_common::{SensorConfig, config_flags};

/// VXLAN and GENEVE headers without options: 8 bytes.
pub const ENCAP_HLEN: usize = 8;
/// VXLAN's I flag: the VNI is valid (RFC 7348 §5).
const VXLAN_FLAG_I: u8 = 0x08;
/// GENEVE protocol type of an Ethernet frame (Transparent Ethernet Bridging).
pub const ETH_P_TEB: u16 = 0x6558;

/// The 24-bit VNI at bytes 4..7 of a VXLAN or GENEVE header.
#[inline(always)]
fn vni(hdr: &[u8; ENCAP_HLEN]) -> u32 {
    u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]])
}

/// RFC 7348: flags(8, I = 0x08) reserved(24) VNI(24) reserved(8), then the inner frame.
/// The VNI, or `None` without the I flag.
#[inline(always)]
pub fn vxlan_vni(hdr: [u8; ENCAP_HLEN]) -> Option<u32> {
    if hdr[0] & VXLAN_FLAG_I == 0 {
        return None;
    }
    Some(vni(&hdr))
}

/// What the GENEVE header says about the frame inside.
pub struct Geneve {
    /// Header and options: the inner frame starts this many bytes after the header's start.
    pub len: usize,
    /// Ethertype of the inner frame ([`ETH_P_TEB`]: Ethernet).
    pub protocol: u16,
    pub vni: u32,
}

/// RFC 8926: ver(2) opt_len(6) | O C rsvd(6) | protocol type(16) | VNI(24) rsvd(8) | options.
/// `None` for a version other than 0.
#[inline(always)]
pub fn geneve(hdr: [u8; ENCAP_HLEN]) -> Option<Geneve> {
    if hdr[0] >> 6 != 0 {
        return None;
    }
    Some(Geneve {
        // opt_len counts 4-byte words.
        len: ENCAP_HLEN + ((hdr[0] & 0x3f) as usize) * 4,
        protocol: u16::from_be_bytes([hdr[2], hdr[3]]),
        vni: vni(&hdr),
    })
}

/// The verdict on an encapsulated (mirrored) frame once accounted: XDP_DROP with
/// [`config_flags::DROP_MIRRORED`] (the host stack would only answer it with ICMP port
/// unreachable), else XDP_PASS.
#[inline(always)]
pub fn mirror_verdict(cfg: &SensorConfig) -> u32 {
    if cfg.flags & config_flags::DROP_MIRRORED != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
