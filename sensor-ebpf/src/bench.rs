//! The benchmark's programs (`cargo xtask bench`), built only with the `bench` feature so that
//! the production object does not carry them.

use crate::{event::ring, maps::SCRATCH};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
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

/// Per CPU: the frames `bench_tx_stream` has sent.
#[map]
pub static BENCH_STREAM: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Connections each CPU's stream runs at once.
const STREAM_CONNS: u64 = 256;
/// Offsets in the stream's frame: Ethernet, IPv4, UDP, VXLAN, then the inner Ethernet, IPv4
/// and TCP headers without options, then 20 payload bytes.
const INNER_IP: usize = 14 + 20 + 8 + 8 + 14;
const TCP: usize = INNER_IP + 20;
const PAYLOAD: usize = TCP + 20;
const STREAM_FRAME: usize = PAYLOAD + 20;
/// A PostgreSQL simple query and its answer, both 20 bytes, so that one frame holds either.
const QUERY: [u8; 20] = *b"Q\0\0\0\x13select 1      \0";
const ANSWER: [u8; 20] = *b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I";
const CLIENT: [u8; 4] = [198, 51, 100, 20];
const SERVER: [u8; 4] = [198, 51, 100, 10];
const CLIENT_ISN: u32 = 1_000_000;
const SERVER_ISN: u32 = 7_000_000;

/// The multi-queue benchmark's traffic: like `bench_tx`, but every frame is the next segment
/// of real PostgreSQL conversations, so that the sensor decodes and pairs each one (not
/// retransmits). Frame `c` of a CPU belongs to connection `c % 256` of that CPU's own client
/// ports, and alternates a query and its answer, with the sequence and acknowledgement
/// numbers of a connection that carries nothing else. The frame given is a VXLAN-wrapped
/// query of `STREAM_FRAME` bytes; every field that changes is written on every run.
#[xdp]
pub fn bench_tx_stream(ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    let Some(n) = BENCH_STREAM.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: this CPU's value, used by this CPU only.
    let c = unsafe {
        let c = *n;
        *n = c + 1;
        c
    };
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + STREAM_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    let conn = c % STREAM_CONNS;
    let turn = c / STREAM_CONNS;
    let answer = turn & 1 == 1;
    let k = (turn / 2) as u32;
    let client_port = (20_000 + cpu * STREAM_CONNS + conn) as u16;
    let (src, dst, sport, dport, seq, ack, payload) = if answer {
        (
            SERVER,
            CLIENT,
            5432u16,
            client_port,
            SERVER_ISN.wrapping_add(20 * k),
            CLIENT_ISN.wrapping_add(20 * (k + 1)),
            &ANSWER,
        )
    } else {
        (
            CLIENT,
            SERVER,
            client_port,
            5432u16,
            CLIENT_ISN.wrapping_add(20 * k),
            SERVER_ISN.wrapping_add(20 * k),
            &QUERY,
        )
    };
    // SAFETY: the frame has at least STREAM_FRAME bytes (checked above) and every write is
    // at a constant offset below it.
    unsafe {
        let p = start as *mut u8;
        core::ptr::write_unaligned(p.add(INNER_IP + 12).cast::<[u8; 4]>(), src);
        core::ptr::write_unaligned(p.add(INNER_IP + 16).cast::<[u8; 4]>(), dst);
        core::ptr::write_unaligned(p.add(TCP).cast::<[u8; 2]>(), sport.to_be_bytes());
        core::ptr::write_unaligned(p.add(TCP + 2).cast::<[u8; 2]>(), dport.to_be_bytes());
        core::ptr::write_unaligned(p.add(TCP + 4).cast::<[u8; 4]>(), seq.to_be_bytes());
        core::ptr::write_unaligned(p.add(TCP + 8).cast::<[u8; 4]>(), ack.to_be_bytes());
        core::ptr::write_unaligned(p.add(PAYLOAD).cast::<[u8; 20]>(), *payload);
    }
    xdp_action::XDP_TX
}
