//! Issue 15, point 14, on the labelled corpus (`pcaps/scenarios/`, real servers and tools): a
//! baseline learned on the benign capture and reused on an attack capture with other switches
//! gives the findings it gives with the same switches.
//!
//! - The later run leaves out `--learning-period`: the baseline's period holds (before, the
//!   default two weeks counted from the first record: no anomaly finding at all), and the run
//!   says so on stderr.
//! - The later run adds `--instance-map`: the baselines learned under the servers' addresses
//!   become the mapped instances' (before, the map's identifiers started learning from
//!   scratch).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/scenarios")
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-baseline-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The finding types (with their instance) of one run, and its stderr.
fn run(file: &str, baseline: &Path, args: &[String]) -> (BTreeSet<String>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .arg("analyze")
        .arg(corpus().join(file))
        .args(["--json", "--baseline"])
        .arg(baseline)
        .args(args)
        .output()
        .expect("rds-sensor");
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "finding")
        .map(|v| {
            format!(
                "{} on {}",
                v["type"].as_str().unwrap_or_default(),
                v["resource"]["rds_db_instance_details"]["db_instance_identifier"]
                    .as_str()
                    .unwrap_or_default()
            )
        })
        .collect();
    (types, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn options() -> (String, PathBuf) {
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus().join("labels.json")).expect("labels.json"),
    )
    .unwrap();
    let o = &labels["options"];
    (
        o["learning_period_s"].as_u64().unwrap().to_string(),
        corpus().join(o["instance_map"].as_str().unwrap()),
    )
}

#[test]
fn a_baseline_reused_without_the_learning_period_keeps_its_own() {
    let (period, map) = options();
    let tmp = tmpdir();
    let map_arg = vec!["--instance-map".to_string(), map.display().to_string()];
    let with_period: Vec<String> = [
        vec!["--learning-period".to_string(), period],
        map_arg.clone(),
    ]
    .concat();
    let learned = tmp.join("learned.json");
    run("benign.pcap", &learned, &with_period);
    // The same switches: the reference.
    let a = tmp.join("a.json");
    std::fs::copy(&learned, &a).unwrap();
    let (want, _) = run("attack-bruteforce.pcap", &a, &with_period);
    assert!(
        want.iter()
            .any(|t| t.contains("AnomalousBehavior.SuccessfulLogin")),
        "the reference run has anomaly findings: {want:?}"
    );
    // Without --learning-period.
    let b = tmp.join("b.json");
    std::fs::copy(&learned, &b).unwrap();
    let (got, stderr) = run("attack-bruteforce.pcap", &b, &map_arg);
    assert_eq!(got, want);
    assert!(
        stderr.contains("another learning period"),
        "the run says it keeps the baseline's period: {stderr}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn an_instance_map_added_after_learning_takes_over_the_baseline() {
    let (period, map) = options();
    let tmp = tmpdir().join("map");
    std::fs::create_dir_all(&tmp).unwrap();
    let p = vec!["--learning-period".to_string(), period];
    let with_map: Vec<String> = [
        p.clone(),
        vec!["--instance-map".into(), map.display().to_string()],
    ]
    .concat();
    // Reference: mapped from the start.
    let mapped = tmp.join("mapped.json");
    run("benign.pcap", &mapped, &with_map);
    let (want, _) = run("attack-bruteforce.pcap", &mapped, &with_map);
    // Learned unmapped, then run with the map.
    let unmapped = tmp.join("unmapped.json");
    run("benign.pcap", &unmapped, &p);
    let (got, stderr) = run("attack-bruteforce.pcap", &unmapped, &with_map);
    assert_eq!(got, want);
    assert!(stderr.contains("before the instance map"), "{stderr}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
