//! Faults, as an operator meets them:
//! - the interface goes down and up: the agent keeps running and sees traffic afterwards;
//! - the interface is deleted: a clear error and a non-zero exit, no panic;
//! - the ring buffer is full (`--ring-size 4096`, replay at top speed): the kernel drops and
//!   counts, `events_sent + events_dropped_ring_full` = every database segment with payload or
//!   SYN/FIN/RST (as the offline twin counts them), and latency lines say `sampled`;
//! - latency lines are `sampled` exactly when the window saw drops (offline, deterministic).

mod common;

use common::*;
use rds_sensor::{
    model::{Clock, Record},
    netns::VethPair,
    offline::{self, OfflineOptions},
    pipeline::{Pipeline, PipelineOptions},
    sinks::Collect,
};
use sensor_common::{DEFAULT_DB_PORTS, SensorConfig};
use serde_json::Value;
use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

// The caller waits for the child (`stop`, or its exit after the interface is deleted).
#[allow(clippy::zombie_processes)]
fn spawn(iface: &str, extra: &[&str]) -> Child {
    let mut child = Command::new(BIN)
        .args(["run", "--iface", iface, "--json"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args(["-d", "link", "show", "dev", iface])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("xdp") {
            return child;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("never attached");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: Child) -> (Vec<Value>, String) {
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "clean exit: {stderr}");
    (lines(&out.stdout), stderr)
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|v| v["kind"] == "summary")
        .expect("a summary")
}

#[test]
fn interface_down_and_up_keeps_running() {
    if !kernel_available("interface_down_and_up_keeps_running") {
        return;
    }
    let pair = VethPair::new("fd").unwrap();
    let mut child = spawn(&pair.outside, &["--summary-interval", "1"]);
    pair.replay(&pcaps_dir().join("pg-queries.pcap"), Some(5000))
        .unwrap();
    ip(&["link", "set", "dev", &pair.outside, "down"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while down"
    );
    ip(&["link", "set", "dev", &pair.outside, "up"]);
    std::thread::sleep(Duration::from_secs(1));
    // mysql-* captures carry VNI 7342, pg-* 7341: flows of 7342 arrived after the link came back.
    pair.replay(&pcaps_dir().join("mysql-queries.pcap"), Some(5000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after up"
    );
    let (lines, stderr) = stop(child);
    let vnis: Vec<u64> = lines
        .iter()
        .filter(|v| v["kind"] == "flow")
        .filter_map(|v| v["vni"].as_u64())
        .collect();
    assert!(vnis.contains(&7341), "traffic before down");
    assert!(vnis.contains(&7342), "traffic after up: {stderr}");
    assert!(
        stderr.contains("interface down"),
        "down is logged: {stderr}"
    );
}

#[test]
fn interface_deleted_is_a_clear_error() {
    if !kernel_available("interface_deleted_is_a_clear_error") {
        return;
    }
    let pair = VethPair::new("fx").unwrap();
    let child = spawn(&pair.outside, &["--summary-interval", "1"]);
    pair.replay(&pcaps_dir().join("pg-plain-query.pcap"), Some(1000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ip(&["link", "del", &pair.outside]);
    let start = Instant::now();
    let pid = child.id();
    let out = loop {
        let mut status = 0;
        // Poll without consuming the Child's pipes.
        // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
        if unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } == 0 {
            if start.elapsed() > Duration::from_secs(15) {
                // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("the agent kept running after its interface was deleted");
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut child = child;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_end(&mut stderr)
            .unwrap();
        break (status, stdout, stderr);
    };
    let (status, stdout, stderr) = out;
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0,
        "non-zero exit: {status} {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(
        stderr.contains(&format!("interface {} was deleted", pair.outside)),
        "a clear message: {stderr}"
    );
    let lines = lines(&stdout);
    assert!(
        lines.iter().any(|v| v["kind"] == "flow"),
        "flows reported before exiting"
    );
    last_summary(&lines);
}

#[test]
fn ring_buffer_full_drops_are_counted() {
    if !kernel_available("ring_buffer_full_drops_are_counted") {
        return;
    }
    let pcap = pcaps_dir().join("pg-queries.pcap");
    // Ground truth: the offline twin (checked against tshark by veth_replay) never drops.
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(&pcap)
        .arg("--json")
        .output()
        .unwrap();
    let offline = lines(&out.stdout);
    let k = &last_summary(&offline)["kernel"];
    let segments = k["events_sent"].as_u64().unwrap();
    assert_eq!(k["events_dropped_ring_full"], 0);

    let pair = VethPair::new("fr").unwrap();
    let child = spawn(
        &pair.outside,
        &["--ring-size", "4096", "--summary-interval", "60"],
    );
    pair.replay(&pcap, None).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let (lines, _) = stop(child);
    let s = last_summary(&lines);
    let k = &s["kernel"];
    let sent = k["events_sent"].as_u64().unwrap();
    let dropped = k["events_dropped_ring_full"].as_u64().unwrap();
    assert_eq!(
        sent + dropped,
        segments,
        "events sent + dropped = database segments with payload + control: {s}"
    );
    assert!(dropped > 0, "a 4 KiB ring at top speed drops: {s}");
    assert_eq!(
        s["events"].as_u64().unwrap() + s["queue_dropped"].as_u64().unwrap(),
        sent,
        "every event sent reached the pipeline or was counted: {s}"
    );
    for l in lines.iter().filter(|v| v["kind"] == "latency") {
        assert_eq!(l["sampled"], true, "latency from a window with drops: {l}");
    }
    eprintln!(
        "ring full: {sent} sent, {dropped} dropped of {segments}; {} latency lines",
        lines.iter().filter(|v| v["kind"] == "latency").count()
    );
}

fn latency_lines(queue_dropped: u64) -> Vec<bool> {
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut p = Pipeline::new(
        PipelineOptions {
            clock: Clock::default(),
            ..PipelineOptions::default()
        },
        Box::new(Collect(records.clone())),
    );
    p.shard.stats.queue_dropped = queue_dropped;
    offline::analyze(
        &pcaps_dir().join("pg-queries.pcap"),
        &OfflineOptions {
            ports: DEFAULT_DB_PORTS.to_vec(),
            config: SensorConfig::default(),
            flow_capacity: 1 << 20,
        },
        &mut p,
    )
    .unwrap();
    let r = records.lock().unwrap();
    r.iter()
        .filter_map(|r| match r {
            Record::Latency(l) => Some(l.sampled),
            _ => None,
        })
        .collect()
}

#[test]
fn latency_is_marked_sampled_only_after_drops() {
    let clean = latency_lines(0);
    assert!(!clean.is_empty(), "pg-queries.pcap gives latency lines");
    assert!(clean.iter().all(|s| !s), "no drops: not sampled");
    let dropped = latency_lines(1);
    assert!(!dropped.is_empty());
    assert!(dropped.iter().all(|s| *s), "a drop in the window: sampled");
}
