//! The detection scorer: `rds-sensor analyze` on the labelled scenario corpus
//! (`pcaps/scenarios/`, recorded by `cargo xtask scenarios` from real servers), as an operator
//! would run it: the benign capture first, learning with a fresh `--baseline`; then each
//! attack capture with a copy of the baseline it left. Prints recall and false positives per
//! finding type and asserts the goal: every attack detected with the right type (and
//! severity), no finding outside a file's labels, and none at all on benign traffic.
//!
//! `RDS_SENSOR_SCENARIOS=DIR` scores another corpus.

#[path = "../src/detect/mmdb_write.rs"]
mod mmdb_write;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    std::env::var_os("RDS_SENSOR_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/scenarios"))
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-scenarios-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small ASN database for the public addresses of the corpus.
fn asn_db(dir: &Path) -> PathBuf {
    use mmdb_write::{MmdbWriter, Value as V, block};
    let mut w = MmdbWriter::new("GeoLite2-ASN");
    for (net, asn, org, cc, country) in [
        (
            "89.160.20.0/24",
            64510,
            "Example Residential ISP",
            "SE",
            "Sweden",
        ),
        (
            "185.220.101.0/24",
            64511,
            "Example Tor Relays e.V.",
            "DE",
            "Germany",
        ),
        (
            "45.155.205.0/24",
            64512,
            "Example Bulletproof Hosting",
            "NL",
            "Netherlands",
        ),
    ] {
        w.insert(
            block(net),
            V::map([
                ("autonomous_system_number", V::U32(asn)),
                ("autonomous_system_organization", V::str(org)),
                (
                    "country",
                    V::map([
                        ("iso_code", V::str(cc)),
                        ("names", V::map([("en", V::str(country))])),
                    ]),
                ),
            ]),
        );
    }
    let p = dir.join("asn.mmdb");
    std::fs::write(&p, w.build()).unwrap();
    p
}

/// The latest version (by id) of every finding `analyze` printed.
fn analyze(file: &Path, args: &[String]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .arg("analyze")
        .arg(file)
        .args(args)
        .output()
        .expect("running rds-sensor");
    assert!(
        out.status.success(),
        "analyze {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("one JSON object per line");
        if v["kind"] == "finding" {
            by_id.insert(v["id"].as_str().unwrap().to_string(), v);
        }
    }
    by_id.into_values().collect()
}

fn rank(label: &str) -> u8 {
    match label {
        "Low" => 1,
        "Medium" => 2,
        "High" => 3,
        other => panic!("unknown severity {other}"),
    }
}

#[derive(Default)]
struct Score {
    /// Files that must yield this type, and how many did.
    expected: u32,
    detected: u32,
    /// Findings of this type in files that may yield it (labelled `also`).
    also: u32,
    /// Findings of this type where no label allows it.
    false_positives: u32,
}

#[test]
fn detection_scenarios() {
    let dir = corpus();
    let labels_path = dir.join("labels.json");
    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(&labels_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (record it: cargo xtask scenarios)",
                labels_path.display()
            )
        }))
        .expect("labels.json");
    let tmp = tmpdir();
    let o = &labels["options"];
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--learning-period".into(),
        o["learning_period_s"].as_u64().unwrap().to_string(),
        "--malicious-ips".into(),
        dir.join(o["malicious_ips"].as_str().unwrap())
            .display()
            .to_string(),
        "--tor-exits".into(),
        dir.join(o["tor_exits"].as_str().unwrap())
            .display()
            .to_string(),
        "--instance-map".into(),
        dir.join(o["instance_map"].as_str().unwrap())
            .display()
            .to_string(),
        "--asn-db".into(),
        asn_db(&tmp).display().to_string(),
    ];
    for c in o["allowed_cidrs"].as_array().unwrap() {
        args.push("--allowed-cidr".into());
        args.push(c.as_str().unwrap().into());
    }
    let scenarios = labels["scenarios"].as_array().unwrap();
    let learned = tmp.join("baseline.json");
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut report = String::new();
    // The benign capture first: it makes the baseline the others start from.
    let mut order: Vec<&Value> = scenarios.iter().filter(|s| s["kind"] == "benign").collect();
    assert_eq!(order.len(), 1, "labels.json has one benign scenario");
    order.extend(scenarios.iter().filter(|s| s["kind"] != "benign"));
    for s in order {
        let file = s["file"].as_str().unwrap();
        let baseline = if s["kind"] == "benign" {
            learned.clone()
        } else {
            let b = tmp.join(format!("{file}.baseline.json"));
            std::fs::copy(&learned, &b).expect("the benign run saved a baseline");
            b
        };
        let mut a = args.clone();
        a.extend(["--baseline".into(), baseline.display().to_string()]);
        let findings = analyze(&dir.join(file), &a);
        let list = |k: &str| -> BTreeSet<String> {
            s[k].as_array()
                .map(|v| {
                    v.iter()
                        .map(|x| x.as_str().or(x["type"].as_str()).unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (expect, also) = (list("expect"), list("also"));
        let mut got: BTreeMap<String, (u32, u8)> = BTreeMap::new();
        for f in &findings {
            let t = f["type"].as_str().unwrap().to_string();
            let e = got.entry(t).or_default();
            e.0 += 1;
            e.1 = e.1.max(rank(f["severity_label"].as_str().unwrap()));
            // Every finding is complete enough for automation.
            for path in [
                "/resource/rds_db_instance_details/db_instance_identifier",
                "/service/action/rds_login_attempt_action/remote_ip_details",
                "/service/event_first_seen",
                "/service/count",
                "/title",
                "/description",
            ] {
                if f.pointer(path).is_none() {
                    problems.push(format!("{file}: a {} finding lacks {path}", f["type"]));
                }
            }
            if f["recommended_response"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                problems.push(format!(
                    "{file}: a {} finding has no recommended response",
                    f["type"]
                ));
            }
        }
        for t in &expect {
            let sc = scores.entry(t.clone()).or_default();
            sc.expected += 1;
            if got.contains_key(t) {
                sc.detected += 1;
            } else {
                problems.push(format!("{file}: no {t} (missed)"));
            }
        }
        for (t, (n, _)) in &got {
            let sc = scores.entry(t.clone()).or_default();
            if also.contains(t) {
                sc.also += n;
            } else if !expect.contains(t) {
                sc.false_positives += n;
                let d: Vec<&str> = findings
                    .iter()
                    .filter(|f| f["type"] == t.as_str())
                    .map(|f| f["description"].as_str().unwrap())
                    .collect();
                problems.push(format!("{file}: {n} false positive(s) {t}: {d:?}"));
            }
        }
        for sv in s["severity"].as_array().into_iter().flatten() {
            let (t, want) = (
                sv["type"].as_str().unwrap(),
                sv["at_least"].as_str().unwrap(),
            );
            let have = got.get(t).map_or(0, |g| g.1);
            if have < rank(want) {
                problems.push(format!("{file}: {t} should reach {want} (max rank {have})"));
            }
        }
        report.push_str(&format!(
            "{file:<30} {:>3} findings  {}\n",
            findings.len(),
            got.iter()
                .map(|(t, (n, _))| format!("{t}×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // The enrichment reaches the findings: a public attacker's ASN and country.
        if file == "attack-bruteforce.pcap"
            && let Some(f) = findings.iter().find(|f| {
                f["type"] == "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce"
            })
        {
            let r = &f["service"]["action"]["rds_login_attempt_action"]["remote_ip_details"];
            if r["organization"]["asn"] != "64510" || r["country"]["country_code"] != "SE" {
                problems.push(format!("{file}: no ASN/country enrichment: {r}"));
            }
            if f["resource"]["rds_db_instance_details"]["db_instance_identifier"] != "orders-pg-1" {
                problems.push(format!("{file}: instance map not applied"));
            }
        }
        // The same finding on SQL Server from a real attack tool: nmap's ms-sql-brute (TDS 7.1
        // LOGIN7 with no PRELOGIN) failing as sa 11 times (18456), then logging in.
        if file == "attack-mssql-bruteforce.pcap"
            && let Some(f) = findings.iter().find(|f| {
                f["type"] == "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce"
            })
        {
            let inst = &f["resource"]["rds_db_instance_details"];
            let action = &f["service"]["action"]["rds_login_attempt_action"];
            let r = &action["remote_ip_details"];
            let attempts = &action["login_attributes"][0];
            for (what, ok) in [
                (
                    "the instance crm-sqlserver-1 (sqlserver-se)",
                    inst["db_instance_identifier"] == "crm-sqlserver-1"
                        && inst["engine"] == "sqlserver-se",
                ),
                (
                    "the user sa and nmap's application name",
                    f["resource"]["rds_db_user_details"]["user"] == "sa"
                        && f["resource"]["rds_db_user_details"]["application"] == "Nmap NSE",
                ),
                (
                    "the attacker 89.160.20.150 with its ASN and country",
                    r["ip_address_v4"] == "89.160.20.150"
                        && r["organization"]["asn"] == "64510"
                        && r["country"]["country_code"] == "SE",
                ),
                (
                    "11 failed logins and 1 success",
                    attempts["failed_login_attempts"] == 11
                        && attempts["successful_login_attempts"] == 1,
                ),
            ] {
                if !ok {
                    problems.push(format!(
                        "{file}: the brute-force finding lacks {what}: {}",
                        serde_json::json!({"resource": f["resource"], "action": action})
                    ));
                }
            }
        }
        // A brute force across users (medusa on MariaDB): 3 failures as root_nope, 3 as root,
        // each under the per-user threshold, then root logs in.
        if file == "attack-bruteforce-users.pcap"
            && let Some(f) = findings.iter().find(|f| {
                f["type"] == "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce"
            })
        {
            let action = &f["service"]["action"]["rds_login_attempt_action"];
            let r = &action["remote_ip_details"];
            let sum = |k: &str| -> u64 {
                action["login_attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a[k].as_u64())
                    .sum()
            };
            for (what, ok) in [
                (
                    "the instance billing-mariadb-1",
                    f["resource"]["rds_db_instance_details"]["db_instance_identifier"]
                        == "billing-mariadb-1",
                ),
                (
                    "the user root (the one that logged in)",
                    f["resource"]["rds_db_user_details"]["user"] == "root",
                ),
                (
                    "the attacker 89.160.20.113",
                    r["ip_address_v4"] == "89.160.20.113",
                ),
                (
                    "the 6 failures across users and the success",
                    sum("failed_login_attempts") >= 6 && sum("successful_login_attempts") >= 1,
                ),
            ] {
                if !ok {
                    problems.push(format!(
                        "{file}: the brute-force finding lacks {what}: {}",
                        serde_json::json!({"resource": f["resource"], "action": action})
                    ));
                }
            }
        }
        // A spray whose third login (billing_app) succeeded: the finding says so.
        if file == "attack-spray-early.pcap"
            && let Some(f) = findings
                .iter()
                .find(|f| f["type"] == "CredentialAccess:RDS/CredentialSpraying.ManyUsers")
            && !f["description"]
                .as_str()
                .is_some_and(|d| d.contains("billing_app"))
        {
            problems.push(format!(
                "{file}: the spraying finding does not name the user that logged in (billing_app): {}",
                f["description"]
            ));
        }
    }
    report.push_str(&format!(
        "\n{:<60} {:>8} {:>7} {:>5} {:>5}\n",
        "finding type", "expected", "recall", "also", "FP"
    ));
    for (t, s) in &scores {
        let recall = if s.expected == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", s.detected, s.expected)
        };
        report.push_str(&format!(
            "{t:<60} {:>8} {recall:>7} {:>5} {:>5}\n",
            s.expected, s.also, s.false_positives
        ));
    }
    eprintln!("{report}");
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(problems.is_empty(), "{report}\n{}", problems.join("\n"));
}
