//! XDP program for a VPC Traffic Mirroring target.
//!
//! Frame → (VLAN tags) → IPv4/IPv6 → UDP to the VXLAN port → VXLAN (I flag, VNI) → inner
//! Ethernet → IPv4/IPv6 → TCP; or plain TCP without encapsulation. A TCP segment whose source
//! or destination port is in `DB_PORTS` is accounted in its flow's summary and, if it carries
//! payload (or is SYN/FIN/RST), sent to user space as one ring-buffer record. Checksums are
//! never validated: mirrored frames may be truncated to the session's PacketLength.
//!
//! The entry points are here; the rest, by concern:
//! - [`direct`]: the common layouts at constant offsets (direct packet access);
//! - [`general`]: every other layout, VXLAN and GENEVE, with bounds-checked copies ([`parse`]);
//! - [`tcp`]: a database segment, whichever path found it; [`flow`] its flow's summary,
//!   [`event`] its ring-buffer record;
//! - [`maps`], [`counters`], [`encap`] (VXLAN/GENEVE headers, the verdict on mirrored frames);
//! - `bench` (feature `bench`): the benchmark's programs, absent from the production object.
#![no_std]
#![no_main]
// The BPF target's `core` has no 64-bit atomic RMW types (no CAS), but BPF has atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

#[cfg(feature = "bench")]
mod bench;
mod counters;
mod direct;
mod encap;
mod event;
mod flow;
mod general;
mod maps;
mod parse;
mod tcp;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use counters::{count, count_verdict};
use maps::{CONFIG, COUNTERS};
use sensor_common::counter;

/// `frags`: accept multi-buffer frames (jumbo MTU 9001 on the mirror target); payload bytes
/// are read with bpf_xdp_load_bytes, which crosses fragments.
// inline(always) reaches the function the macro nests inside the entry point: left to LLVM's
// inliner it is outlined once the body is large, and the verifier refuses a tail call (GENEVE)
// from a subprogram without BTF.
#[xdp(frags)]
#[inline(always)]
pub fn rds_sensor(ctx: XdpContext) -> u32 {
    // One lookup for all counters of this packet (per-CPU: no other CPU writes it).
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a valid pointer into this CPU's value; XDP runs without preemption on this CPU,
    // so nothing else writes it while this reference lives.
    let c = unsafe { &mut *c };
    count(c, counter::PACKETS);
    // Read in place: a copy of the whole value costs loads and stack spills on every packet.
    // Index 0 of a one-entry array always exists.
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let verdict = match direct::fast_path(&ctx, cfg, c) {
        Some(v) => v,
        None => general::slow_path(&ctx, cfg, c),
    };
    count_verdict(c, verdict);
    verdict
}

/// The inside of a GENEVE frame (see [`general::handle_geneve`]), tail-called from
/// `rds_sensor`.
#[xdp(frags)]
pub fn rds_sensor_geneve(ctx: XdpContext) -> u32 {
    general::geneve_program(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
