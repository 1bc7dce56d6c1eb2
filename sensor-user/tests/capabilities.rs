//! Least privilege: `rds-sensor run` as `nobody` with only CAP_BPF, CAP_NET_ADMIN and
//! CAP_PERFMON (setpriv from util-linux: those three in the inheritable, ambient and bounding
//! sets, nothing else) attaches, sees a replayed capture, and detaches cleanly on SIGTERM.
//! Without CAP_BPF it fails with an error, not a panic.

mod common;

use common::*;
use rds_sensor::netns::VethPair;
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");

/// The binary copied where `nobody` may read and execute it (the target dir may not be), a
/// copy per test: one test's copy being written while another executes it fails the other
/// with "Text file busy" when the tests run in parallel.
fn public_binary() -> (PathBuf, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rds-sensor-caps-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("rds-sensor");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

fn user() -> (&'static str, &'static str) {
    let ok = |cmd: &str, name: &str| {
        Command::new("getent")
            .args([cmd, name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("passwd", "nobody") && ok("group", "nogroup") {
        return ("nobody", "nogroup");
    }
    if !ok("passwd", "rds-sensor-test") {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "rds-sensor-test",
            ])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd rds-sensor-test");
    }
    ("rds-sensor-test", "rds-sensor-test")
}

fn as_user(bin: &Path, dir: &Path, caps: &str, args: &[&str]) -> Command {
    let (u, g) = user();
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={u}"),
        &format!("--regid={g}"),
        "--init-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps={caps}"),
        &format!("--bounding-set=-all,{caps}"),
    ])
    .arg(bin)
    .args(args)
    .current_dir(dir)
    .env("RUST_LOG", "info");
    c
}

fn xdp_attached(iface: &str) -> bool {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn runs_as_nobody_with_bpf_net_admin_perfmon_only() {
    if !kernel_available("runs_as_nobody_with_bpf_net_admin_perfmon_only") {
        return;
    }
    let (dir, bin) = public_binary();
    let pair = VethPair::new("cp").unwrap();
    let caps = "+bpf,+net_admin,+perfmon";
    let mut child = as_user(
        &bin,
        &dir,
        caps,
        &[
            "run",
            "--iface",
            &pair.outside,
            "--json",
            "--summary-interval",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("setpriv (util-linux)");
    let start = Instant::now();
    while !xdp_attached(&pair.outside) {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "rds-sensor as an unprivileged user exited ({st}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never attached");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The process really is unprivileged: not uid 0, only the three capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .unwrap()
    };
    assert_ne!(field("Uid:"), "0", "runs as a non-root user");
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    let want = (1u64 << 12) | (1 << 38) | (1 << 39); // NET_ADMIN, PERFMON, BPF
    assert_eq!(
        eff, want,
        "effective capabilities: exactly BPF, NET_ADMIN, PERFMON"
    );

    pair.replay(&pcaps_dir().join("pg-queries.pcap"), Some(5000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clean exit on SIGTERM: {stderr}");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .expect("a last summary");
    assert!(
        last["events"].as_u64().unwrap() > 0,
        "events arrived: {last}"
    );
    assert!(!xdp_attached(&pair.outside), "detached after SIGTERM");
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_cap_bpf_it_fails_with_an_error() {
    if !kernel_available("without_cap_bpf_it_fails_with_an_error") {
        return;
    }
    let (dir, bin) = public_binary();
    let pair = VethPair::new("cq").unwrap();
    let out = as_user(
        &bin,
        &dir,
        "+net_admin,+perfmon",
        &["run", "--iface", &pair.outside, "--duration", "2"],
    )
    .output()
    .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail without CAP_BPF");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(!xdp_attached(&pair.outside));
    // One line that says what is needed: all three capabilities, the cause said once.
    assert!(
        stderr.contains("CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"),
        "names every capability it needs: {stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "the error once: {stderr}");
    let line = errors[0];
    let cause = line.split("failed to create map").count() - 1;
    assert!(cause <= 1, "the cause repeated: {line}");
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An interface that does not exist: one error naming the interfaces there are, not a
/// native-XDP warning followed by the same failure twice.
#[test]
fn an_unknown_interface_names_the_ones_there_are() {
    if !kernel_available("an_unknown_interface_names_the_ones_there_are") {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args([
            "run",
            "--iface",
            "nosuch-if0",
            "--no-tui",
            "--duration",
            "1",
        ])
        .output()
        .expect("rds-sensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("no network interface nosuch-if0 here; there are:")
            && lines[0].contains("lo"),
        "{stderr}"
    );
}
