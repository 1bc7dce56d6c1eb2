//! A database segment's flow summary (`FLOWS`).

use crate::{counters::count, maps::FLOWS};
use core::intrinsics::{AtomicOrdering, atomic_xadd};
use sensor_common::{Counters, FlowKey, FlowStats, counter, tcp_flags};

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn update_flow(
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
            // SAFETY: `init_flow_stats` wrote every word of `fresh`.
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
    // SAFETY: `stats` points to a map value, valid until the program ends (RCU) even if the
    // LRU evicts it meanwhile; `d` is 0 or 1. Other CPUs may update the value too: the counts
    // are atomic adds, `last_ns` one aligned 8-byte store.
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
    // SAFETY: `FlowStats` is 8-aligned and made of WORDS u64 (asserted in sensor-common), so
    // every write is an aligned word inside `s`.
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
///
/// # Safety
///
/// `p` is valid for reads and writes and 8-aligned (a `u64` field of a map value).
#[inline(always)]
unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}
