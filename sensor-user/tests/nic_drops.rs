//! Frames lost before the XDP program runs (issue 15, point 16): the sensor reports the
//! attached interface's own receive drops, which its program cannot count.
//!
//! The loss is forced for real: the sensor attached in generic (SKB) mode to a veth, whose
//! frames reach XDP only after the host's receive backlog; RPS sends them to the other CPU,
//! and `net.core.netdev_max_backlog=1` makes that backlog overflow while tcpreplay sends at
//! top speed. The kernel counts each such drop in the veth's `rx_dropped` and in
//! /proc/net/softnet_stat. Ground truth is the kernel's own counter, read with `ip -s -j link`
//! before and after; the sensor's last summary must say exactly that, and the latency windows
//! with loss must be marked sampled. A run without the forcing must report no loss and no
//! sampled window, so the check can fail both ways.

mod common;

use common::*;
use rds_sensor::{
    agent::AgentOptions,
    capture::live::{AttachMode, LiveOptions, Sensor},
    model::{Clock, Record},
    netns::VethPair,
    pipeline::{Pipeline, PipelineOptions},
    sinks::Collect,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

/// Restores a sysctl or sysfs file's content when dropped.
struct Restore(PathBuf, String);

impl Restore {
    fn set(path: impl Into<PathBuf>, value: &str) -> Self {
        let path = path.into();
        let old =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path, old)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, self.1.trim());
    }
}

/// The kernel's `rx_dropped` of an interface, by iproute2.
fn rx_dropped(iface: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-s", "-j", "link", "show", iface])
        .output()
        .expect("ip");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["stats64"]["rx"]["dropped"]
        .as_u64()
        .expect("rx dropped")
}

struct Run {
    records: Vec<Record>,
    /// What the kernel counted on the interface while the sensor ran.
    kernel_rx_dropped: u64,
}

fn replay(pcap: &Path, force: bool) -> Run {
    let pair = VethPair::new("nd").expect("veth pair");
    let mut sensor = Sensor::load(&LiveOptions {
        ring_bytes: 64 << 20,
        ..LiveOptions::default()
    })
    .expect("load");
    // Generic XDP: the frames go through the backlog first (native XDP on a veth takes them
    // from its own ring, where the sender counts what does not fit).
    sensor
        .attach(&pair.outside, AttachMode::Generic)
        .expect("attach");
    let _forced = force.then(|| {
        (
            Restore::set(
                format!("/sys/class/net/{}/queues/rx-0/rps_cpus", pair.outside),
                "2",
            ),
            Restore::set("/proc/sys/net/core/netdev_max_backlog", "1"),
        )
    });
    let before = rx_dropped(&pair.outside);
    let records = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::new(
        PipelineOptions {
            clock: Clock::monotonic(),
            ..PipelineOptions::default()
        },
        Box::new(Collect(records.clone())),
    );
    // The sender on CPU 0, the backlog RPS fills on CPU 1; after the agent has read the
    // counters it reports from.
    agent_during_replay(
        &mut sensor,
        pipeline,
        AgentOptions {
            summary_every: Duration::from_millis(300),
            ..AgentOptions::default()
        },
        &pair,
        Replay {
            pcap,
            wrapper: &["taskset", "-c", "0"],
            args: &["--loop", "8"],
            delay: Duration::from_millis(300),
        },
    );
    let kernel_rx_dropped = rx_dropped(&pair.outside) - before;
    sensor.detach().unwrap();
    let records = records.lock().unwrap().clone();
    Run {
        records,
        kernel_rx_dropped,
    }
}

#[test]
fn frames_the_interface_drops_before_xdp_are_reported() {
    if !kernel_available("frames_the_interface_drops_before_xdp_are_reported") {
        return;
    }
    assert!(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "the forced backlog overflow needs two CPUs (RPS to the one tcpreplay is not on)"
    );
    let pcap = pcaps_dir().join("pg-queries.pcap");
    for force in [false, true] {
        let run = replay(&pcap, force);
        let last = run
            .records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Summary(s) => s.interface.clone(),
                _ => None,
            })
            .expect("a summary with the interface's counters");
        let sampled: Vec<bool> = run
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Latency(l) => Some(l.sampled),
                _ => None,
            })
            .collect();
        assert!(!sampled.is_empty(), "force={force}: no latency window");
        if force {
            assert!(
                run.kernel_rx_dropped > 0,
                "the forcing made no drop: nothing was checked"
            );
            assert!(
                sampled.iter().any(|s| *s),
                "a latency window with loss is marked sampled"
            );
        } else {
            assert!(!sampled.iter().any(|s| *s), "no loss, no sampled window");
        }
        assert_eq!(
            last.rx_dropped, run.kernel_rx_dropped,
            "force={force}: the sensor's rx_dropped is the kernel's ({last:?})"
        );
        // The same drops, counted per CPU for the whole host.
        assert!(last.softnet_dropped >= last.rx_dropped, "{last:?}");
        assert!(last.total() >= run.kernel_rx_dropped);
        eprintln!(
            "force={force}: kernel rx_dropped {}, sensor {last:?}",
            run.kernel_rx_dropped
        );
    }
}

/// The driver statistics the sensor reads through SIOCETHTOOL (where ENA keeps its allowance
/// counters) are `ethtool -S`'s, name for name and value for value, on a veth.
#[test]
fn driver_statistics_equal_ethtool_s() {
    if !kernel_available("driver_statistics_equal_ethtool_s") {
        return;
    }
    let pair = VethPair::new("es").expect("veth pair");
    let out = std::process::Command::new("ethtool")
        .args(["-S", &pair.outside])
        .output()
        .expect("ethtool (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.trim().rsplit_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    assert!(
        want.iter().any(|(k, _)| k == "peer_ifindex"),
        "a veth names its peer: {want:?}"
    );
    assert_eq!(
        rds_sensor::capture::ifstats::ethtool_stats(&pair.outside),
        want
    );
    assert!(rds_sensor::capture::ifstats::ethtool_stats("no-such-if0").is_empty());
}
