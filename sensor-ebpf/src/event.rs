//! A database segment's ring-buffer record (`EVENTS`): `EventHeader` + head + tail bytes.

use crate::{
    counters::count,
    maps::{EVENTS, EVENTS_1, EVENTS_2, EVENTS_3, EVENTS_4, EVENTS_5, EVENTS_6, EVENTS_7, Scratch},
};
use aya_ebpf::{
    helpers::generated::{bpf_get_smp_processor_id, bpf_xdp_load_bytes},
    maps::RingBuf,
    programs::XdpContext,
};
use sensor_common::{Counters, EventHeader, MAX_PAYLOAD_CAP, MAX_WHOLE, counter};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// This CPU's event ring: ring `cpu % rings` (`SensorConfig::rings`, 0 meaning 1). Records
/// of one ring come from few CPUs, each writing in its own time order, which is what the
/// reader's merge by timestamp relies on.
#[inline(always)]
pub fn ring(rings: u16) -> &'static RingBuf {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let n = if rings == 0 { 1 } else { rings as u32 };
    match cpu % n {
        0 => &EVENTS,
        1 => &EVENTS_1,
        2 => &EVENTS_2,
        3 => &EVENTS_3,
        4 => &EVENTS_4,
        5 => &EVENTS_5,
        6 => &EVENTS_6,
        7 => &EVENTS_7,
        _ => &EVENTS,
    }
}

/// Ring-buffer output flags for `SensorConfig::wakeup_bytes`: one forced wakeup when this
/// record takes the waiting bytes across the threshold, none otherwise. Forcing on every
/// record above it would wake the reader (irq_work, then a context switch) once per event
/// for as long as it lags, which is when it can least afford it.
#[inline(always)]
fn wakeup_flags(ring: &RingBuf, wakeup_bytes: u32, len: u64) -> u64 {
    if wakeup_bytes == 0 {
        return 0;
    }
    let waiting = ring.query(BPF_RB_AVAIL_DATA);
    if waiting < wakeup_bytes as u64 && waiting + len >= wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Completes the record in `scratch` (every header field but the lengths is written) with the
/// payload's head and tail, and outputs it. True when the ring buffer took it.
///
/// `scratch`: this CPU's `SCRATCH` value (from a map lookup), not referenced elsewhere during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn send_event(
    ctx: &XdpContext,
    c: &mut Counters,
    wakeup_bytes: u32,
    rings: u16,
    scratch: *mut Scratch,
    payload_off: u32,
    captured: u32,
    head: u32,
    tail: u32,
) -> bool {
    // SAFETY: `scratch` is a valid pointer into this CPU's value, which only this CPU uses.
    unsafe {
        (*scratch).event.hdr.head_len = head as u16;
        (*scratch).event.hdr.tail_len = tail as u16;
        (*scratch).event.hdr.captured_len = captured;
        (*scratch).payload_off = payload_off;
    }
    // Read the lengths back from map memory: the verifier does not track values through map
    // values, so these are fresh scalars bounded only by the checks below. Without this, the
    // precision the helpers' size arguments need propagates back to every header offset and
    // defeats state pruning.
    // SAFETY: as above; volatile so that the loads are not folded into the stores.
    let (head, tail, captured, payload_off) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*scratch).event.hdr.head_len) as u32,
            core::ptr::read_volatile(&raw const (*scratch).event.hdr.tail_len) as u32,
            core::ptr::read_volatile(&raw const (*scratch).event.hdr.captured_len),
            core::ptr::read_volatile(&raw const (*scratch).payload_off),
        )
    };
    // `data` is MAX_WHOLE + MAX_PAYLOAD_CAP so that head + tail fits with each bounded on its
    // own (a marked flow's whole segment is a head of up to MAX_WHOLE bytes).
    if head > MAX_WHOLE as u32 || tail > MAX_PAYLOAD_CAP as u32 {
        return false;
    }
    // SAFETY: `data` has MAX_WHOLE + MAX_PAYLOAD_CAP bytes, head ≤ MAX_WHOLE and tail ≤
    // MAX_PAYLOAD_CAP (checked above), so both copies stay inside it; the helper checks the
    // frame's side. The record is the header plus head + tail bytes of `data`, all inside the
    // value.
    unsafe {
        let data = (&raw mut (*scratch).event.data).cast::<u8>();
        if head > 0 && bpf_xdp_load_bytes(ctx.ctx, payload_off, data.cast(), head) != 0 {
            count(c, counter::MALFORMED);
            return false;
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
            return false;
        }
        let len = EventHeader::SIZE + head as usize + tail as usize;
        let record = core::slice::from_raw_parts(scratch.cast::<u8>(), len);
        let ring = ring(rings);
        match ring.output::<[u8]>(record, wakeup_flags(ring, wakeup_bytes, len as u64)) {
            Ok(()) => {
                count(c, counter::EVENTS_SENT);
                true
            }
            Err(_) => {
                count(c, counter::EVENTS_DROPPED);
                false
            }
        }
    }
}
