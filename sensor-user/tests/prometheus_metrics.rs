//! `/metrics` as Prometheus users expect it, from the bundled captures run through the
//! pipeline (detection on, so findings count too): `promtool check metrics` (Prometheus's own
//! linter) accepts it; the histograms agree with the query records they were made from; no
//! label is empty; and the Grafana dashboard shipped in docs/grafana queries only metrics the
//! sensor exports, and shows every one of them.

mod common;

use rds_sensor::{
    detect::{Detector, DetectorOptions},
    model::{Clock, Record},
    offline::{OfflineOptions, analyze},
    pipeline::{Pipeline, PipelineOptions},
    sinks::{Collect, Fanout, prometheus::Prometheus},
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

struct Scraped {
    text: String,
    records: Vec<Record>,
}

fn captures() -> Vec<PathBuf> {
    let mut v = common::bundled_pcaps();
    v.extend(common::pcaps_in("scenarios"));
    v
}

fn scraped() -> &'static Scraped {
    static S: OnceLock<Scraped> = OnceLock::new();
    S.get_or_init(|| {
        let prom = Prometheus::default();
        let records = Arc::new(Mutex::new(Vec::new()));
        let sc = common::pcaps_dir().join("scenarios");
        for pcap in captures() {
            let detector = Detector::new(
                DetectorOptions {
                    learning_period_s: 0,
                    malicious_lists: vec![sc.join("malicious-ips.txt")],
                    tor_lists: vec![sc.join("tor-exits.txt")],
                    ..DetectorOptions::default()
                },
                Clock::default(),
            )
            .unwrap();
            let mut pipeline = Pipeline::new(
                PipelineOptions {
                    ports: sensor_common::DEFAULT_DB_PORTS.to_vec(),
                    detector: Some(detector),
                    redact: true,
                    ..PipelineOptions::default()
                },
                Box::new(Fanout(vec![
                    Box::new(prom.clone()),
                    Box::new(Collect(records.clone())),
                ])),
            );
            analyze(
                &pcap,
                &OfflineOptions {
                    ports: sensor_common::DEFAULT_DB_PORTS.to_vec(),
                    config: sensor_common::SensorConfig::default(),
                    flow_capacity: 1 << 16,
                },
                &mut pipeline,
            )
            .unwrap_or_else(|e| panic!("{}: {e:#}", pcap.display()));
        }
        let records = records.lock().unwrap().clone();
        Scraped {
            text: prom.render(),
            records,
        }
    })
}

#[test]
fn promtool_accepts_the_exposition() {
    let s = scraped();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (cargo xtask test installs Debian's prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(s.text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.text
    );
    assert!(
        !s.text.contains("=\"\""),
        "an empty label value:\n{}",
        s.text
    );
    for family in [
        "# TYPE rds_sensor_build_info gauge",
        "# TYPE rds_sensor_query_latency_seconds histogram",
        "# TYPE rds_sensor_findings_total counter",
        "# TYPE rds_sensor_query_request_bytes_total counter",
    ] {
        assert!(s.text.contains(family), "no `{family}`");
    }
    assert!(
        s.text
            .lines()
            .any(|l| l.starts_with("rds_sensor_findings_total{"))
    );
}

/// Each histogram series is what its query records say: the count, every cumulative
/// bucket (the share at or under its bound), and the sum.
#[test]
fn the_histograms_are_the_records() {
    let s = scraped();
    let mut lat: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &s.records {
        if let Record::Query(q) = r {
            lat.entry(q.endpoint.server.clone())
                .or_default()
                .push(q.latency_us);
        }
    }
    // Without an instance map a server is named by its address: one series per (server, db);
    // summed per server here.
    let mut buckets: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let label = |l: &str, k: &str| -> String {
        let at = l.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
        l[at..at + l[at..].find('"').unwrap()].to_string()
    };
    for l in s.text.lines() {
        let v = || l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        if l.starts_with("rds_sensor_query_latency_seconds_bucket{") {
            *buckets
                .entry((label(l, "db_instance"), label(l, "le")))
                .or_default() += v() as u64;
        } else if l.starts_with("rds_sensor_query_latency_seconds_count{") {
            *counts.entry(label(l, "db_instance")).or_default() += v() as u64;
        } else if l.starts_with("rds_sensor_query_latency_seconds_sum{") {
            *sums.entry(label(l, "db_instance")).or_default() += v();
        }
    }
    assert!(lat.len() >= 3, "{:?}", lat.keys());
    for (server, us) in &lat {
        assert_eq!(counts[server], us.len() as u64, "{server}");
        let total: u64 = us.iter().sum();
        assert!(
            (sums[server] - total as f64 / 1e6).abs() < 1e-6 * (1.0 + total as f64),
            "{server}"
        );
        let les: BTreeSet<&String> = buckets
            .keys()
            .filter(|k| &k.0 == server)
            .map(|k| &k.1)
            .collect();
        assert!(les.len() >= 10, "{server}: {les:?}");
        for le in les {
            let n = buckets[&(server.clone(), le.clone())];
            let want = if le == "+Inf" {
                us.len()
            } else {
                let bound = (le.parse::<f64>().unwrap() * 1e6).round() as u64;
                us.iter().filter(|&&u| u <= bound).count()
            };
            assert_eq!(n, want as u64, "{server} le={le}");
        }
    }
}

#[test]
fn the_grafana_dashboard_queries_what_is_exported() {
    let s = scraped();
    let families: BTreeSet<String> = s
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/rds-sensor.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(d["templating"]["list"][0]["type"], "datasource");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut used = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("rds_sensor_"))
                .collect();
            assert!(!names.is_empty(), "{title}: {expr}");
            for n in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suf| {
                        n.strip_suffix(suf)
                            .filter(|f| families.contains(*f))
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| n.to_string());
                assert!(families.contains(&family), "{title}: `{n}` is not exported");
                used.insert(family);
            }
        }
    }
    let unused: Vec<&String> = families.difference(&used).collect();
    assert!(unused.is_empty(), "exported but on no panel: {unused:?}");
}
