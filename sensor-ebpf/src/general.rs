//! Every layout the direct path leaves (VLAN tags, IP options, IPv6 extension headers, VXLAN
//! over IPv6, GENEVE, short or odd frames), with bounds-checked copies (see parse.rs for why).

use crate::{
    counters::{count, count_verdict},
    encap::{ENCAP_HLEN, ETH_P_TEB, geneve, mirror_verdict, vxlan_vni},
    maps::{CONFIG, COUNTERS, GENEVE_CTX, JUMP},
    parse::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, load, parse_eth, parse_ip},
    tcp::handle_tcp,
};
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use sensor_common::{Counters, NO_VNI, SensorConfig, counter};

/// UDP header length: the encapsulation header follows it.
const UDP_HLEN: usize = 8;

#[inline(always)]
pub fn slow_path(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters) -> u32 {
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
            handle_vxlan(ctx, cfg, c, outer.l4_off + UDP_HLEN);
            return mirror_verdict(cfg);
        }
        if cfg.geneve_port != 0 && dport == cfg.geneve_port {
            handle_geneve(ctx, c, outer.l4_off + UDP_HLEN);
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

/// A GENEVE header at `off` (see [`geneve`]). A Gateway Load Balancer sends the original IP
/// packet (protocol type IPv4/IPv6); a mirror session whose target is a GWLB endpoint nests
/// VXLAN inside. Ethernet (0x6558) too.
/// The header is read here; what is inside is parsed by `rds_sensor_geneve` (a tail call),
/// which also counts the verdict. Returns only if the tail call could not be made.
#[inline(always)]
pub fn handle_geneve(ctx: &XdpContext, c: &mut Counters, off: usize) {
    let Some(g) = load::<ENCAP_HLEN>(ctx, off).and_then(geneve) else {
        count(c, counter::MALFORMED);
        return;
    };
    let inner = off + g.len;
    let (ethertype, ip_off) = match g.protocol {
        ETH_P_TEB => match parse_eth(ctx, inner) {
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
    // SAFETY: a valid pointer into this CPU's value, which only this CPU writes.
    unsafe {
        (*gc).ip_off = ip_off as u32;
        (*gc).ethertype = ethertype as u32;
        (*gc).vni = g.vni;
    }
    count(c, counter::GENEVE);
    // SAFETY: slot 0 is `rds_sensor_geneve` of this object, which takes the same context and
    // reads GENEVE_CTX written above; nothing here has a destructor that would be skipped.
    unsafe { JUMP.tail_call(ctx, 0) };
    // Not reached unless user space did not install the program.
    count(c, counter::MALFORMED);
}

/// The body of `rds_sensor_geneve`: the inside of a GENEVE frame, as `handle_geneve` found it.
// The lookups are here rather than in the entry: `c` passed down as a `&mut` parameter (noalias
// for LLVM) changes register allocation, 4 more instructions.
#[inline(always)]
pub fn geneve_program(ctx: &XdpContext) -> u32 {
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: as in `rds_sensor` (the tail call runs on the same CPU, without preemption).
    let c = unsafe { &mut *c };
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let (ip_off, ethertype, vni) = match GENEVE_CTX.get(0) {
        Some(g) => (g.ip_off as usize, g.ethertype as u16, g.vni),
        None => (0, 0, 0),
    };
    match parse_ip(ctx, ethertype, ip_off) {
        Ok(Some(l3)) if l3.proto == IPPROTO_UDP => match load::<4>(ctx, l3.l4_off) {
            Some(udp) if u16::from_be_bytes([udp[2], udp[3]]) == cfg.vxlan_port => {
                handle_vxlan(ctx, cfg, c, l3.l4_off + UDP_HLEN)
            }
            Some(_) => count(c, counter::NON_DB),
            None => count(c, counter::MALFORMED),
        },
        Ok(Some(l3)) if l3.proto == IPPROTO_TCP => match load::<20>(ctx, l3.l4_off) {
            Some(tcp) => handle_tcp(ctx, cfg, c, &tcp, &l3, vni, |key, dir| {
                l3.write_key(ctx, key, dir)
            }),
            None => count(c, counter::MALFORMED),
        },
        Ok(_) => count(c, counter::NON_DB),
        Err(e) => count(c, e),
    }
    let verdict = mirror_verdict(cfg);
    count_verdict(c, verdict);
    verdict
}

/// A VXLAN header at `off` (see [`vxlan_vni`]), then the inner frame.
#[inline(always)]
fn handle_vxlan(ctx: &XdpContext, cfg: &SensorConfig, c: &mut Counters, off: usize) {
    let Some(vni) = load::<ENCAP_HLEN>(ctx, off).and_then(vxlan_vni) else {
        count(c, counter::VXLAN_BAD);
        return;
    };
    count(c, counter::VXLAN);
    let Some((ethertype, inner_off)) = parse_eth(ctx, off + ENCAP_HLEN) else {
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
