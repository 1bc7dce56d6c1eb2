//! The strongest open peer that runs here: Suricata's PostgreSQL parser (Suricata 7.0 from
//! Debian's bookworm-backports; `cargo xtask bench` installs it). The same PostgreSQL frames
//! go through ours and through `suricata --runmode single` (one thread, like ours), and the
//! cost is CPU per PostgreSQL *message*: Suricata decodes no extended-protocol statement into a
//! query, so a per-query figure would flatter neither. The message count comes from tshark
//! (every `pgsql.type` it dissects), outside both.
//!
//! Suricata tracks TCP streams, so a capture repeated as it is would be read as retransmission
//! after the first copy: each round's client ports are moved (the inner header of a VXLAN
//! frame included) and its time shifted past the previous round, so every round is new flows.
//! Its start-up (configuration, rules, threads) is taken out by running it on 2 rounds and on
//! 2 + R rounds and counting only the difference. Where Suricata is missing, the row says so.

use super::{Figure, cpu_time_children, figure, pipeline_cpu_per_round};
use rds_sensor::capture::pcap::PcapReader;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plaintext PostgreSQL captures, whole (no truncation, no TLS): what both parsers can read.
const CAPTURES: &[&str] = &[
    "pg-queries.pcap",
    "pg-extended.pcap",
    "pg-auth.pcap",
    "pg-plain-query.pcap",
];
const DB_PORTS: [u16; 4] = [5432, 3306, 1433, 1521];

struct Frame {
    ts_ns: u64,
    len: u32,
    data: Vec<u8>,
}

fn frames(dir: &Path) -> Vec<Frame> {
    let mut out = Vec::new();
    for name in CAPTURES {
        let mut r = PcapReader::open(&dir.join(name)).expect("bundled capture");
        while let Some(f) = r.next_frame().expect("bundled capture") {
            if f.linktype == 1 {
                out.push(Frame {
                    ts_ns: f.ts_ns,
                    len: f.orig_len,
                    data: f.data.to_vec(),
                });
            }
        }
    }
    out
}

/// PostgreSQL messages in the captures, as tshark dissects them.
fn tshark_messages(dir: &Path) -> u64 {
    let mut n = 0;
    for name in CAPTURES {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(dir.join(name))
            .args(["-Y", "pgsql", "-T", "fields", "-e", "pgsql.type"])
            .output()
            .expect("running tshark");
        assert!(out.status.success(), "tshark on {name}");
        n += String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').filter(|t| !t.is_empty()).count() as u64)
            .sum::<u64>();
    }
    n
}

/// Moves the TCP client port (the one that is no database port) of an Ethernet frame by
/// `k`, inside VXLAN too; the same move for both directions keeps a connection one flow.
fn move_client_port(f: &mut [u8], k: u16, depth: u8) {
    let mut off = 12;
    let mut ty = u16::from_be_bytes([f[off], f[off + 1]]);
    if ty == 0x8100 {
        off += 4;
        ty = u16::from_be_bytes([f[off], f[off + 1]]);
    }
    let l3 = off + 2;
    let (proto, l4) = match ty {
        0x0800 if f.len() > l3 + 20 => (f[l3 + 9], l3 + usize::from(f[l3] & 0x0f) * 4),
        0x86dd if f.len() > l3 + 40 => (f[l3 + 6], l3 + 40),
        _ => return,
    };
    if f.len() < l4 + 8 {
        return;
    }
    match proto {
        17 if depth == 0 && u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]) == 4789 => {
            let inner = l4 + 16;
            if f.len() > inner + 14 {
                move_client_port(&mut f[inner..], k, 1);
            }
        }
        6 => {
            for at in [l4, l4 + 2] {
                let p = u16::from_be_bytes([f[at], f[at + 1]]);
                if p >= 1024 && !DB_PORTS.contains(&p) {
                    let q = 1024 + ((u32::from(p) - 1024 + u32::from(k) * 7919) % 64000) as u16;
                    f[at..at + 2].copy_from_slice(&q.to_be_bytes());
                }
            }
        }
        _ => {}
    }
}

/// `rounds` copies of the frames, each new flows and later than the one before.
fn write_rounds(path: &Path, frames: &[Frame], rounds: u16) {
    let first = frames.iter().map(|f| f.ts_ns).min().unwrap_or(0);
    let span = frames.iter().map(|f| f.ts_ns).max().unwrap_or(0) - first + 1_000_000_000;
    let mut v = super::common::pcap_header();
    for k in 0..rounds {
        // The captures' own order, and their own spacing within a round.
        let mut round: Vec<&Frame> = frames.iter().collect();
        round.sort_by_key(|f| f.ts_ns);
        for f in round {
            let ts = 1_700_000_000_000_000_000 + u64::from(k) * span + (f.ts_ns - first);
            let mut d = f.data.clone();
            move_client_port(&mut d, k + 1, 0);
            v.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
            v.extend_from_slice(&((ts % 1_000_000_000 / 1000) as u32).to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&f.len.to_le_bytes());
            v.extend_from_slice(&d);
        }
    }
    std::fs::write(path, v).expect("writing the peer's capture");
}

const CONFIG: &str = "%YAML 1.1
---
outputs:
  - eve-log:
      enabled: EVE
      filetype: regular
      filename: eve.json
      types:
        - pgsql
app-layer:
  protocols:
    pgsql:
      enabled: yes
stream:
  checksum-validation: no
";

/// Suricata's CPU seconds on a capture (and the pgsql records it logged, when `eve`).
fn suricata(dir: &Path, pcap: &Path, eve: bool) -> (f64, u64) {
    let cfg = dir.join(if eve { "eve.yaml" } else { "quiet.yaml" });
    std::fs::write(&cfg, CONFIG.replace("EVE", if eve { "yes" } else { "no" })).unwrap();
    let log = dir.join(if eve { "log-eve" } else { "log" });
    let _ = std::fs::remove_dir_all(&log);
    std::fs::create_dir_all(&log).unwrap();
    let c0 = cpu_time_children();
    let out = Command::new("suricata")
        .arg("-c")
        .arg(&cfg)
        .arg("-r")
        .arg(pcap)
        .arg("-l")
        .arg(&log)
        .args(["--runmode", "single", "-k", "none", "-S", "/dev/null"])
        .output()
        .expect("running suricata");
    let cpu = cpu_time_children() - c0;
    assert!(
        out.status.success(),
        "suricata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged = std::fs::read_to_string(log.join("eve.json"))
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("\"event_type\":\"pgsql\""))
                .count() as u64
        })
        .unwrap_or(0);
    (cpu, logged)
}

pub fn suricata_pgsql(dir: &Path, quick: bool, figures: &mut Vec<Figure>) {
    let frames = frames(dir);
    let messages = tshark_messages(dir);
    assert!(messages > 0, "tshark found no PostgreSQL message");
    let tuples: Vec<(u64, u32, Vec<u8>)> = frames
        .iter()
        .map(|f| (f.ts_ns, f.len, f.data.clone()))
        .collect();
    let (cpu, _) = pipeline_cpu_per_round(&tuples, if quick { 5 } else { 40 }, || {
        rds_sensor::session::Layers::none()
    });
    let ours = cpu / messages as f64;
    let name = "decoder: CPU per PostgreSQL message (1 thread)";
    let version = Command::new("suricata")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(version) = version else {
        eprintln!(
            "bench: suricata is not installed (cargo xtask bench installs it): its row has no baseline"
        );
        figures.push(figure(
            name,
            ours * 1e9,
            "ns/msg",
            "Suricata: not installed here",
            0.0,
        ));
        return;
    };
    let version = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("?")
        .to_string();
    let tmp: PathBuf = std::env::temp_dir().join(format!("rds-sensor-peer-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let r: u16 = if quick { 10 } else { 200 };
    let (small, big) = (tmp.join("small.pcap"), tmp.join("big.pcap"));
    write_rounds(&small, &frames, 2);
    write_rounds(&big, &frames, 2 + r);
    // The parser ran on every round: as many pgsql records per round as on one.
    let one = tmp.join("one.pcap");
    write_rounds(&one, &frames, 1);
    let (_, per_one) = suricata(&tmp, &one, true);
    let (_, per_two) = suricata(&tmp, &small, true);
    assert!(
        per_one > 0 && per_two == 2 * per_one,
        "Suricata's pgsql parser logged {per_one} records on one round, {per_two} on two"
    );
    let mut best = f64::MAX;
    for _ in 0..if quick { 1 } else { 3 } {
        let (s, _) = suricata(&tmp, &small, false);
        let (b, _) = suricata(&tmp, &big, false);
        best = best.min((b - s).max(1e-9) / f64::from(r));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    figures.push(figure(
        name,
        ours * 1e9,
        "ns/msg",
        &format!("Suricata {version} pgsql, 1 thread"),
        best / messages as f64 * 1e9,
    ));
}
