//! The benchmark's programs (`cargo xtask bench`), built only with the `bench` feature so that
//! the production object does not carry them.

use crate::{event::ring, maps::SCRATCH};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use sensor_common::{EventHeader, MAX_PAYLOAD_CAP};

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
    // SAFETY: a clock helper without arguments.
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

/// `bench_event`'s frame: where the payload starts, how many of its bytes a sensor event
/// carries (the benchmark sets them for the frame it runs), and the rings in use.
#[map]
pub static BENCH_EVENT: Array<[u32; 3]> = Array::with_max_entries(1, 0);

/// The benchmark's baseline for an event: the irreducible work of one, and nothing else. It
/// reads the exact clock, copies the payload bytes a sensor event carries (offset and length
/// from `BENCH_EVENT`, no parsing) into a record, outputs the record to this CPU's ring as the
/// sensor picks it, and drops. The sensor's cost per database event is reported as a ratio to this.
#[xdp]
pub fn bench_event(ctx: XdpContext) -> u32 {
    // SAFETY: a clock helper without arguments.
    let t = unsafe { bpf_ktime_get_ns() };
    let Some(cfg) = BENCH_EVENT.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let (off, len, rings) = (cfg[0], cfg[1], cfg[2] as u16);
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    if len == 0 || len > MAX_PAYLOAD_CAP as u32 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: `scratch` is this CPU's value; `data` holds at least MAX_PAYLOAD_CAP bytes and
    // 0 < len <= MAX_PAYLOAD_CAP (checked above); the helper checks the frame's side. The
    // record is the header plus `len` bytes of `data`, inside the value.
    unsafe {
        (*scratch).event.hdr.ts_ns = t;
        let data = (&raw mut (*scratch).event.data).cast::<u8>();
        if bpf_xdp_load_bytes(ctx.ctx, off, data.cast(), len) != 0 {
            return xdp_action::XDP_PASS;
        }
        let n = EventHeader::SIZE + len as usize;
        let record = core::slice::from_raw_parts(scratch.cast::<u8>(), n);
        let _ = ring(rings).output::<[u8]>(record, 0);
    }
    xdp_action::XDP_DROP
}
