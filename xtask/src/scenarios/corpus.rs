//! Writing the corpus: the retimed pcaps, the lists and instance map the scorer passes,
//! `labels.json` and `README.md`.

use super::labels::{Attack, labels};
use super::timeline::{SLOT_S, retime};
use crate::netlab::say;
use crate::pcapfmt;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;

const MALICIOUS_LIST: &str = "\
# Known-bad addresses and networks (scenario corpus). One address or CIDR per line.
45.155.205.0/24     # example bulletproof hoster
198.18.0.66         # (benchmarking range, unused by the scenarios)
";

const TOR_LIST: &str = "\
# Tor exit nodes (scenario corpus). One address per line.
185.220.101.7
185.220.101.8
2001:db8:7::1
";

const INSTANCES: &str = r#"{
  "198.51.100.10": {"dbInstanceIdentifier": "orders-pg-1", "dbClusterIdentifier": "orders",
                    "engine": "postgres", "engineVersion": "15",
                    "dbInstanceArn": "arn:aws:rds:eu-west-1:123456789012:db:orders-pg-1",
                    "tags": {"team": "orders", "env": "prod"}},
  "2001:db8:100::10": {"dbInstanceIdentifier": "orders-pg-1", "dbClusterIdentifier": "orders",
                    "engine": "postgres", "engineVersion": "15",
                    "dbInstanceArn": "arn:aws:rds:eu-west-1:123456789012:db:orders-pg-1",
                    "tags": {"team": "orders", "env": "prod"}},
  "198.51.100.11": {"dbInstanceIdentifier": "billing-mariadb-1", "engine": "mariadb",
                    "engineVersion": "10.11", "tags": {"team": "billing", "env": "prod"}},
  "198.51.100.12": {"dbInstanceIdentifier": "crm-sqlserver-1", "engine": "sqlserver-se",
                    "engineVersion": "16.00", "tags": {"team": "crm", "env": "prod"}}
}
"#;

fn readme(sizes: &[(String, u64)], benign_slots: u64) -> String {
    let mut s = String::from(
        "# Detection scenarios\n\n\
         Recorded by `cargo xtask scenarios` (xtask/src/scenarios/) from real PostgreSQL 15 and MariaDB\n\
         servers in network namespaces; scored by `sensor-user/tests/detection_scenarios.rs`.\n\
         SQL Server is the TDS listener of `cargo xtask pcaps` (xtask/src/pcaps/tds.rs, built from\n\
         MS-TDS; no SQL Server runs on Debian): its clients are real (FreeTDS `tsql`, nmap\n\
         `ms-sql-brute`), its answers the listener's.\n\
         `labels.json` says which findings each file must yield (`expect`), which others it may\n\
         (`also`, with the reason) and the options to analyze with.\n\n\
         Time is compressed: the benign workload was recorded in slots standing for 5 minutes of\n\
         application time each, and the timestamps rewritten so that slot N starts at\n\
         2025-03-06T08:00:00Z + N × 5 min. The scorer learns the first two hours of `benign.pcap`\n\
         (--learning-period 7200), checks that its third hour yields nothing, then analyzes every\n\
         other file with a copy of the baseline.\n\n\
         Instances: `orders-pg-1` (PostgreSQL, 198.51.100.10 and 2001:db8:100::10),\n\
         `billing-mariadb-1` (MariaDB, 198.51.100.11) and `crm-sqlserver-1` (SQL Server,\n\
         198.51.100.12). Allowed client networks: 198.51.100.0/24,\n\
         2001:db8:100::/64. 89.160.20.0/24, 185.220.101.7 (Tor list) and 45.155.205.0/24\n\
         (malicious list) are public addresses that existed only inside the recording namespace.\n\n\
         | file | bytes | what |\n|---|---|---|\n",
    );
    let what = |f: &str| -> String {
        if f == "benign.pcap" {
            return format!(
                "{benign_slots} slots ({} h) of the benign workload",
                benign_slots * SLOT_S / 3600
            );
        }
        if f == "mixed.pcap" {
            return "an hour of the benign workload with every attack mixed in".into();
        }
        Attack::ALL
            .iter()
            .find(|a| a.file() == f)
            .map_or_else(String::new, |a| a.description().to_string())
    };
    for (f, n) in sizes {
        s.push_str(&format!("| `{f}` | {n} | {} |\n", what(f)));
    }
    s
}

/// Writes the corpus to `out` from the raw captures in `raw` (name, time marks); returns the
/// name and size of every pcap of the corpus (`all`, in order): those recorded now, and those
/// left in `out` by an earlier recording (`--only`).
pub(super) fn write(
    out: &Path,
    raw: &Path,
    recorded: &[(String, Vec<(u64, u64)>)],
    all: &[String],
    benign_slots: u64,
) -> Result<Vec<(String, u64)>> {
    say(format!("== writing {} ==", out.display()));
    let mut sizes = Vec::new();
    for name in all {
        let Some((_, marks)) = recorded.iter().find(|(n, _)| n == name) else {
            let path = out.join(name);
            let n = fs::metadata(&path)
                .with_context(|| format!("{}: not recorded now nor before", path.display()))?
                .len();
            say(format!("kept {name}: {n} bytes"));
            sizes.push((name.clone(), n));
            continue;
        };
        let mut pcap = pcapfmt::read(&raw.join(name))?;
        if pcap.records.is_empty() {
            bail!("{name}: tcpdump captured nothing");
        }
        retime(&mut pcap, marks).with_context(|| format!("retiming {name}"))?;
        let path = out.join(name);
        pcapfmt::write(&path, &pcap)?;
        let n = fs::metadata(&path)?.len();
        say(format!(
            "wrote {name}: {} packets, {n} bytes",
            pcap.records.len()
        ));
        sizes.push((name.clone(), n));
    }
    for (f, text) in [
        ("malicious-ips.txt", MALICIOUS_LIST.to_string()),
        ("tor-exits.txt", TOR_LIST.to_string()),
        ("instances.json", INSTANCES.to_string()),
        (
            "labels.json",
            serde_json::to_string_pretty(&labels(benign_slots))? + "\n",
        ),
        ("README.md", readme(&sizes, benign_slots)),
    ] {
        fs::write(out.join(f), text).with_context(|| format!("writing {f}"))?;
    }
    Ok(sizes)
}
