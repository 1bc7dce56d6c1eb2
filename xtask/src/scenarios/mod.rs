//! `cargo xtask scenarios`: record the labelled detection corpus (`pcaps/scenarios/`) from real
//! PostgreSQL and MariaDB servers (and the SQL Server listener of `crate::pcaps::tds`), for the
//! scorer `sensor-user/tests/detection_scenarios.rs`.
//!
//! Two network namespaces joined by a veth pair: the servers (`orders-pg-1`, PostgreSQL, on
//! 198.51.100.10 and 2001:db8:100::10; `billing-mariadb-1`, MariaDB, on 198.51.100.11;
//! `crm-sqlserver-1`, the TDS listener, on 198.51.100.12) in one,
//! every client in the other, which holds all the client addresses: application hosts in
//! 198.51.100.0/24 and 2001:db8:100::/64, and the attackers (203.0.113.0/24, documentation space
//! outside the allowed networks, and a few public addresses that exist only inside this
//! namespace: 89.160.20.0/24, 185.220.101.7 on the Tor list, 45.155.205.0/24 on the malicious
//! list). Nothing leaves the machine: the client namespace has no route but the veth.
//!
//! Time is compressed: the benign application runs in slots, each standing for five minutes of
//! application time, recorded back to back; the pcap timestamps are then rewritten so that slot
//! N starts at T0 + N × 5 min (the packets of a slot keep their relative timing). `benign.pcap`
//! is three hours (the scorer learns the first two); the attack files start after it.
//!
//! Writes `benign.pcap`, one `attack-*.pcap` per attack alone, `mixed.pcap` (an hour of benign
//! traffic with every attack mixed in), `policy-weakauth.pcap`, the lists the scorer passes
//! (`malicious-ips.txt`, `tor-exits.txt`, `instances.json`), `labels.json` (which finding types
//! each file must yield, and which others it may) and `README.md`. Plain Ethernet pcaps.
//!
//! | file | holds |
//! |---|---|
//! | `lab.rs` | the namespaces and addresses, what tcpdump records, preflight, running client commands |
//! | `servers.rs` | `orders-pg-1` (PostgreSQL), `billing-mariadb-1` (MariaDB), `crm-sqlserver-1` (TDS listener): setup and clients |
//! | `workload.rs` | the recorder and the benign workload of each slot |
//! | `attacks.rs` | the traffic of each attack |
//! | `labels.rs` | the attacks, what each must and may yield, `labels.json` |
//! | `timeline.rs` | compressed time: slot marks, retiming the pcaps |
//! | `corpus.rs` | writing the pcaps, lists, `labels.json` and `README.md` |
//! | `live.rs` | `cargo xtask run --live`: the same lab, mirrored live to the sensor |

mod attacks;
mod corpus;
mod lab;
mod labels;
mod live;
mod servers;
mod timeline;
mod workload;

pub use live::run as live_demo;

use crate::netlab::{self, Capture, Network, TempDir, say};
use anyhow::{Context, Result};
use lab::{CAPTURE_FILTER, LAB, preflight};
use labels::{Attack, MIXED_ATTACKS};
use servers::{Mssql, My, Pg};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;
use timeline::SLOT_S;
use workload::{Rec, Rng};

#[derive(clap::Args, Debug)]
pub struct ScenariosArgs {
    /// Directory the corpus is written to [default: <workspace>/pcaps/scenarios]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Benign slots (five minutes of application time each) in benign.pcap
    #[arg(long, default_value_t = 36)]
    pub benign_slots: u32,
    /// Keep the temp dir (server data dirs, logs, raw captures) for debugging
    #[arg(long)]
    pub keep_tmp: bool,
    /// Record only these captures (file names, e.g. attack-mssql-bruteforce.pcap; repeat or
    /// separate with commas), leaving the others in `--out` as they are; the lists, labels.json
    /// and README.md are rewritten all the same
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

pub fn run(args: &ScenariosArgs) -> Result<()> {
    netlab::set_log_tag("scenarios");
    let started = Instant::now();
    preflight().context("step `preflight`")?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::root().join("pcaps/scenarios"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut tmp = TempDir::fresh(std::env::temp_dir().join("rds-sensor-scenarios"))?;
    tmp.keep = args.keep_tmp;
    let raw = tmp.path.join("raw");
    fs::create_dir_all(&raw)?;
    let benign_slots = u64::from(args.benign_slots.max(1));
    // In the order they are recorded.
    let known: Vec<String> = std::iter::once("benign.pcap".to_string())
        .chain(Attack::ALL.iter().map(|a| a.file()))
        .chain(std::iter::once("mixed.pcap".to_string()))
        .collect();
    if let Some(f) = args.only.iter().find(|f| !known.contains(f)) {
        anyhow::bail!(
            "--only {f}: not a capture of the corpus ({})",
            known.join(", ")
        );
    }
    let wanted = |f: &str| args.only.is_empty() || args.only.iter().any(|o| o == f);
    let mut recorded: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
    {
        let net = Network::create(&LAB).context("step `network`")?;
        let pg = Pg::start(&tmp.path).context("step `postgres`")?;
        let my = My::start(&tmp.path).context("step `mariadb`")?;
        let mssql = Mssql::start(&tmp.path).context("step `sql server listener`")?;
        let mut rec = Rec {
            net,
            pg,
            my,
            mssql,
            rng: Rng(0x5eed),
            marks: Vec::new(),
        };
        let mut capture = |name: &str,
                           rec: &mut Rec,
                           body: &mut dyn FnMut(&mut Rec) -> Result<()>|
         -> Result<()> {
            if !wanted(name) {
                return Ok(());
            }
            say(format!("== recording {name} =="));
            rec.marks.clear();
            let cap = Capture::start(&rec.net, &raw.join(name), CAPTURE_FILTER)?;
            body(rec).with_context(|| format!("recording {name}"))?;
            cap.finish()?;
            recorded.push((name.to_string(), std::mem::take(&mut rec.marks)));
            Ok(())
        };
        capture("benign.pcap", &mut rec, &mut |rec| {
            for slot in 0..benign_slots {
                rec.mark(slot * SLOT_S);
                rec.benign_slot(slot)?;
                if slot % 6 == 5 {
                    say(format!("  {} of {benign_slots} slots", slot + 1));
                }
            }
            Ok(())
        })?;
        let alone_at = benign_slots * SLOT_S + 1800;
        for a in Attack::ALL {
            capture(&a.file(), &mut rec, &mut |rec| {
                rec.mark(alone_at);
                rec.attack(a)
            })?;
        }
        capture("mixed.pcap", &mut rec, &mut |rec| {
            for i in 0..12 {
                let slot = benign_slots + i;
                rec.mark(slot * SLOT_S);
                rec.benign_slot(slot)?;
                for (_, a) in MIXED_ATTACKS.iter().filter(|(at, _)| *at == i) {
                    rec.mark(slot * SLOT_S + 120);
                    rec.attack(*a)?;
                }
            }
            Ok(())
        })?;
        say("stopping servers, removing network namespaces");
    }

    let sizes = corpus::write(&out, &raw, &recorded, &known, benign_slots)?;
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    say(format!(
        "done in {:.0?}: {} captures recorded, {} in the corpus, {:.1} MB",
        started.elapsed(),
        recorded.len(),
        sizes.len(),
        total as f64 / 1e6
    ));
    Ok(())
}
