//! The benchmark's programs (`cargo xtask bench`), built only with the `bench` feature so that
//! the production object does not carry them.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};

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
