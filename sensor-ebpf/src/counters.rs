//! The per-CPU counters (`sensor_common::counter`). Plain increments: a per-CPU value is
//! written only by its own CPU, and XDP is not preempted.

use aya_ebpf::bindings::xdp_action;
use sensor_common::{Counters, counter};

#[inline(always)]
pub fn count(c: &mut Counters, index: u32) {
    c.v[index as usize] += 1;
}

/// Counts a frame's verdict: dropped or passed.
#[inline(always)]
pub fn count_verdict(c: &mut Counters, verdict: u32) {
    if verdict == xdp_action::XDP_DROP {
        count(c, counter::DROPPED);
    } else {
        count(c, counter::PASSED);
    }
}
