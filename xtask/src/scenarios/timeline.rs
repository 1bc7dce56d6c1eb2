//! Compressed time: each slot of the recording stands for five minutes of application time.
//! The recorder marks (real time, application time) at each slot start; tcpdump's pcaps are
//! then retimed (see `crate::pcapfmt`) so that slot N starts at T0 + N × 5 min, the packets of
//! a slot keeping their relative timing.

use crate::pcapfmt;
use anyhow::{Result, bail};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2025-03-06T08:00:00Z: application time of the first benign slot.
pub(super) const T0: u64 = 1_741_248_000;
pub(super) const SLOT_S: u64 = 300;

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Moves each packet from real time to application time: the packets after mark (real R,
/// application A) get A + (t − R). The result has microsecond timestamps.
pub(super) fn retime(pcap: &mut pcapfmt::Pcap, marks: &[(u64, u64)]) -> Result<()> {
    if marks.is_empty() {
        bail!("no time marks");
    }
    for w in marks.windows(2) {
        let (real, app) = (w[1].0 - w[0].0, w[1].1.saturating_sub(w[0].1));
        if real >= app {
            bail!(
                "a slot took {:.1} s of real time, longer than the {:.0} s it stands for",
                real as f64 / 1e9,
                app as f64 / 1e9
            );
        }
    }
    let frac_ns = if pcap.nanos { 1 } else { 1000 };
    for r in pcap.records.iter_mut() {
        let t = u64::from(r.ts_sec) * 1_000_000_000 + u64::from(r.ts_frac) * frac_ns;
        let i = marks
            .partition_point(|(real, _)| *real <= t)
            .saturating_sub(1);
        let (real, app) = marks[i];
        let t = app + t.saturating_sub(real);
        r.ts_sec = (t / 1_000_000_000) as u32;
        r.ts_frac = (t % 1_000_000_000 / 1000) as u32;
    }
    pcap.nanos = false;
    Ok(())
}
