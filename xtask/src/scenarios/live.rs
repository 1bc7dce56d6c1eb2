//! `cargo xtask run --live`: the demo on real servers. The lab of the scenario recorder
//! (PostgreSQL `orders-pg-1` and MariaDB `billing-mariadb-1` in one namespace, every client in
//! another) runs its benign application workload without end, with a slow query and errors,
//! and an attack every few rounds (brute force, spraying, a port scan, Tor and listed
//! addresses); its traffic is mirrored the way AWS mirrors an ENI: `tc` mirred of both
//! directions of the servers' interface into a VXLAN device (VNI 7341) whose far end is the
//! sensor's veth in this namespace. The sensor runs on that veth with detection on (the
//! corpus's lists and instance map), as on a mirror target.
//!
//! Everything made is undone on the way out (namespaces, servers, the mirror's veth), also
//! after Ctrl-C: this process ignores SIGINT while the sensor handles it.

use super::lab::{LAB, SRV_NS, preflight};
use super::labels::Attack;
use super::servers::{Mssql, My, PASSWORD, Pg};
use super::workload::{Rec, Rng};
use crate::netlab::{self, Expect, Network, TempDir, say};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The sensor's end of the mirror (this namespace) and the servers' end.
const SENSOR_IF: &str = "rdsmir-r";
const MIRROR_IF: &str = "rdsmir-s";
const SENSOR_ADDR: &str = "192.0.2.7";
const MIRROR_ADDR: &str = "192.0.2.6";
const VXLAN_IF: &str = "rdsvx";
pub const VNI: u32 = 7341;

/// The mirror's veth pair and VXLAN device; removed on drop (the server namespace's end goes
/// with the namespace).
struct Mirror;

impl Mirror {
    fn create() -> Result<Self> {
        let _ = Command::new("ip").args(["link", "del", SENSOR_IF]).output();
        let ip = |args: &[&str]| netlab::ip("mirror", args);
        ip(&[
            "link", "add", SENSOR_IF, "type", "veth", "peer", "name", MIRROR_IF, "netns", SRV_NS,
        ])?;
        let m = Mirror;
        ip(&[
            "addr",
            "add",
            &format!("{SENSOR_ADDR}/24"),
            "dev",
            SENSOR_IF,
        ])?;
        // As docs/aws.md has a mirror target: room for a 1500-byte frame and VXLAN's 50 bytes
        // (3498: the most ENA takes with native XDP), so no mirrored frame is cut or split.
        ip(&["link", "set", SENSOR_IF, "mtu", "3498", "up"])?;
        ip(&[
            "-n",
            SRV_NS,
            "addr",
            "add",
            &format!("{MIRROR_ADDR}/24"),
            "dev",
            MIRROR_IF,
        ])?;
        ip(&["-n", SRV_NS, "link", "set", MIRROR_IF, "mtu", "3498", "up"])?;
        let vni = VNI.to_string();
        ip(&[
            "-n",
            SRV_NS,
            "link",
            "add",
            VXLAN_IF,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            MIRROR_ADDR,
            "remote",
            SENSOR_ADDR,
            "dstport",
            "4789",
            "dev",
            MIRROR_IF,
        ])?;
        ip(&["-n", SRV_NS, "link", "set", VXLAN_IF, "mtu", "3448", "up"])?;
        // Both directions of the servers' interface, as a mirror session copies an ENI's.
        let tc = |args: &[&str]| {
            netlab::run(
                "mirror (tc)",
                netlab::in_ns(SRV_NS, "tc").args(args),
                None,
                Expect::Ok,
            )
            .map(|_| ())
        };
        let srv_if = LAB.srv_if;
        tc(&["qdisc", "add", "dev", srv_if, "clsact"])?;
        // u32 matching everything: the classifier every kernel has (matchall and flower are
        // modules some kernels do not ship).
        for dir in ["ingress", "egress"] {
            tc(&[
                "filter", "add", "dev", srv_if, dir, "protocol", "all", "u32", "match", "u32", "0",
                "0", "action", "mirred", "egress", "mirror", "dev", VXLAN_IF,
            ])?;
        }
        say(format!(
            "mirror: {srv_if} (both directions) -> VXLAN {VNI} -> {SENSOR_IF} (the sensor's)"
        ));
        Ok(m)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", SENSOR_IF]).output();
    }
}

/// The attacks shown, one every few rounds, in turn.
const ATTACKS: [Attack; 5] = [
    Attack::BruteForce,
    Attack::Scan,
    Attack::Spray,
    Attack::Tor,
    Attack::Malicious,
];

/// A slow query and two errors, as an application's bad day has them.
const TROUBLE: &str = "\
SELECT pg_sleep(0.8);
SELECT * FROM orders_archive;
SELECT 1/0;
";

/// Runs the servers, the workload and the mirror, then `sensor` (its arguments given) until it
/// exits; returns its exit status.
pub fn run(sensor: &Path, sensor_args: &[String]) -> Result<std::process::ExitStatus> {
    netlab::set_log_tag("live");
    // What the lab runs, installed as `cargo xtask` installs its tools (as root, from Debian).
    crate::toolchain::ensure_tools(&[
        ("mariadbd", "mariadb-server"),
        ("mariadb", "mariadb-client"),
        ("medusa", "medusa"),
        ("nmap", "nmap"),
        ("tsql", "freetds-bin"),
        ("tcpdump", "tcpdump"),
        ("/usr/lib/postgresql/15/bin/pg_ctl", "postgresql-15"),
    ])?;
    preflight().context(
        "the live demo needs the servers and clients of the scenario lab; without them, \
         `cargo xtask run` replays the bundled captures instead",
    )?;
    let tmp = TempDir::fresh(std::env::temp_dir().join("rds-sensor-live"))?;
    let net = Network::create(&LAB).context("step `network`")?;
    let pg = Pg::start(&tmp.path).context("step `postgres`")?;
    let my = My::start(&tmp.path).context("step `mariadb`")?;
    let mssql = Mssql::start(&tmp.path).context("step `sql server listener`")?;
    let _mirror = Mirror::create()?;
    let mut rec = Rec {
        net,
        pg,
        my,
        mssql,
        rng: Rng(0x11fe),
        marks: Vec::new(),
    };
    let corpus = crate::root().join("pcaps/scenarios");
    let mut cmd = Command::new(sensor);
    cmd.args([
        "run",
        "--iface",
        SENSOR_IF,
        "--detect",
        "--summary-interval",
        "2",
    ])
    .arg("--instance-map")
    .arg(corpus.join("instances.json"))
    .arg("--malicious-ips")
    .arg(corpus.join("malicious-ips.txt"))
    .arg("--tor-exits")
    .arg(corpus.join("tor-exits.txt"))
    .args(sensor_args);
    // Ctrl-C is the sensor's to handle; this process cleans up after it.
    // SAFETY: setting a signal's disposition to ignore.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let mut child = cmd.spawn().context("starting the sensor")?;
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|s| {
        let stop2 = stop.clone();
        let work = s.spawn(move || -> Result<()> {
            let mut round = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                rec.benign_slot(round)?;
                rec.net.client_source(super::lab::APP1)?;
                super::lab::run1(
                    "a slow query and errors",
                    rec.pg
                        .psql(super::lab::PG_ADDR, "app_orders", PASSWORD, "orders-api"),
                    Some(TROUBLE.into()),
                    Expect::Ok,
                )?;
                if round % 3 == 2 {
                    let a = ATTACKS[(round / 3) as usize % ATTACKS.len()];
                    rec.attack(a)?;
                }
                round += 1;
            }
            Ok(())
        });
        let status = child.wait();
        stop.store(true, Ordering::Relaxed);
        let work = work.join();
        (status, work)
    });
    // SAFETY: restoring the default disposition.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let (status, work) = result;
    match work {
        Ok(Err(e)) => netlab::warn(format!("workload stopped: {e:#}")),
        Err(_) => netlab::warn("workload panicked"),
        Ok(Ok(())) => {}
    }
    say("stopping the servers; removing the namespaces and the mirror");
    status.context("waiting for the sensor")
}
