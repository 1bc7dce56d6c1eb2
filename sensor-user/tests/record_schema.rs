//! The records as a SIEM takes them: every record the bundled captures produce (with
//! detection on, so findings too) is checked against docs/records.schema.json by an outside
//! validator (Python's jsonschema), keeps one type per field name across kinds, joins to its
//! connection's flow by `conn_id`, and carries the Community ID that tshark computes for the
//! same packets. The records come through `--record-file`, which must write exactly what
//! `--json` prints.

mod common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const JSONSCHEMA: &str = "jsonschema==4.26.0";

struct Run {
    capture: PathBuf,
    records: Vec<Value>,
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-sensor-record-schema-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every bundled capture analysed once (key logs beside their captures; the scenarios with
/// their lists and instance map, learning off so that anomaly findings come too).
fn runs() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = common::pcaps_dir();
        let tmp = tmpdir();
        let mut captures: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for sub in ["", "regressions", "public"] {
            for p in common::pcaps_in(sub) {
                let keys = p.with_extension("keys");
                let args = if keys.is_file() {
                    vec!["--tls-keylog".to_string(), keys.display().to_string()]
                } else {
                    Vec::new()
                };
                captures.push((p, args));
            }
        }
        let sc = dir.join("scenarios");
        for p in common::pcaps_in("scenarios") {
            let arg = |k: &str, f: &str| [k.to_string(), sc.join(f).display().to_string()];
            let mut args = vec!["--learning-period".to_string(), "0".to_string()];
            args.extend(arg("--instance-map", "instances.json"));
            args.extend(arg("--malicious-ips", "malicious-ips.txt"));
            args.extend(arg("--tor-exits", "tor-exits.txt"));
            captures.push((p, args));
        }
        assert!(captures.len() >= 30, "{} captures", captures.len());
        captures
            .into_iter()
            .enumerate()
            .map(|(i, (capture, args))| {
                let all = tmp.join(format!("{i}.json"));
                let some = tmp.join(format!("{i}.login-finding.json"));
                let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
                    .arg("analyze")
                    .arg(&capture)
                    .arg("--json")
                    .arg("--record-file")
                    .arg(&all)
                    .arg("--record-file")
                    .arg(format!("login,finding={}", some.display()))
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    capture.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let stdout = String::from_utf8(out.stdout).unwrap();
                let file = std::fs::read_to_string(&all).unwrap();
                assert_eq!(
                    file,
                    stdout,
                    "{}: the file is what --json prints",
                    capture.display()
                );
                let records: Vec<Value> = stdout
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                    .collect();
                let picked: Vec<&str> = stdout
                    .lines()
                    .zip(&records)
                    .filter(|(_, r)| r["kind"] == "login" || r["kind"] == "finding")
                    .map(|(l, _)| l)
                    .collect();
                let got = std::fs::read_to_string(&some).unwrap();
                assert_eq!(
                    got.lines().collect::<Vec<_>>(),
                    picked,
                    "{}: the login,finding file",
                    capture.display()
                );
                Run { capture, records }
            })
            .collect()
    })
}

#[test]
fn every_record_validates_against_the_schema() {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/records.schema.json");
    let lines = tmpdir().join("all-records.jsonl");
    let mut text = String::new();
    let mut kinds = BTreeMap::<String, usize>::new();
    for r in runs() {
        for rec in &r.records {
            *kinds
                .entry(rec["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
            text.push_str(&rec.to_string());
            text.push('\n');
        }
    }
    std::fs::write(&lines, &text).unwrap();
    let every = rds_sensor::sinks::file::KINDS;
    for k in every {
        assert!(
            kinds.get(*k).is_some_and(|n| *n > 0),
            "no {k} record: {kinds:?}"
        );
    }
    let py = common::venv::venv("jsonschema-venv", JSONSCHEMA).join("bin/python");
    let check = r#"
import json, sys
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
bad = 0
n = 0
for line in open(sys.argv[2]):
    n += 1
    errors = list(v.iter_errors(json.loads(line)))
    if errors:
        bad += 1
        if bad <= 10:
            e = best_match(errors)
            print(f"line {n}: {e.json_path}: {e.message[:300]}")
print(f"{n} records, {bad} invalid")
sys.exit(1 if bad or n == 0 else 0)
"#;
    let out = Command::new(&py)
        .args(["-c", check])
        .arg(&schema)
        .arg(&lines)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("{} records, 0 invalid", text.lines().count())),
        "{said}"
    );

    // The schema is strict: a record with a field it does not know, or a field of another
    // type, is refused (a schema that took anything would pass the check above).
    let q = runs()
        .iter()
        .flat_map(|r| &r.records)
        .find(|r| r["kind"] == "query")
        .unwrap();
    let mut unknown = q.clone();
    unknown["latency_ms"] = 1.into();
    let mut retyped = q.clone();
    retyped["latency_us"] = serde_json::json!({"p50": 1});
    std::fs::write(&lines, format!("{unknown}\n{retyped}\n")).unwrap();
    let out = Command::new(&py)
        .args(["-c", check])
        .arg(&schema)
        .arg(&lines)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 records, 2 invalid"), "{said}");
}

/// What a JSON value is, as a mapping of Elasticsearch or OpenSearch sees it.
fn json_type(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

fn types(
    v: &Value,
    path: &str,
    kind: &str,
    out: &mut BTreeMap<String, BTreeMap<&'static str, BTreeSet<String>>>,
) {
    let Some(t) = json_type(v) else {
        return;
    };
    if !path.is_empty() {
        out.entry(path.to_string())
            .or_default()
            .entry(t)
            .or_default()
            .insert(kind.to_string());
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                types(x, &p, kind, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                types(x, &format!("{path}[]"), kind, out);
            }
        }
        _ => {}
    }
}

#[test]
fn one_field_name_has_one_type_in_every_kind() {
    let mut seen = BTreeMap::new();
    for r in runs() {
        for rec in &r.records {
            types(rec, "", rec["kind"].as_str().unwrap(), &mut seen);
        }
    }
    let clashes: Vec<String> = seen
        .iter()
        .filter(|(_, t)| t.len() > 1)
        .map(|(p, t)| format!("{p}: {t:?}"))
        .collect();
    assert!(clashes.is_empty(), "{clashes:#?}");
    // Every record has a time.
    for r in runs() {
        for rec in &r.records {
            assert!(rec["ts"].is_string(), "{}: {rec}", r.capture.display());
        }
    }
}

#[test]
fn a_connections_records_share_its_flows_conn_id() {
    let mut joined = 0;
    for r in runs() {
        let what = r.capture.display();
        let mut flows: BTreeMap<&str, &Value> = BTreeMap::new();
        for f in r.records.iter().filter(|x| x["kind"] == "flow") {
            let id = f["conn_id"].as_str().unwrap();
            assert!(flows.insert(id, f).is_none(), "{what}: two flows with {id}");
        }
        for rec in &r.records {
            let kind = rec["kind"].as_str().unwrap();
            if ["login", "query", "tls", "tls_exchange"].contains(&kind) {
                let id = rec["conn_id"].as_str().unwrap();
                let f = flows
                    .get(id)
                    .unwrap_or_else(|| panic!("{what}: {kind} record of no flow: {rec}"));
                for k in [
                    "client",
                    "server",
                    "client_ip",
                    "server_port",
                    "community_id",
                ] {
                    assert_eq!(f[k], rec[k], "{what}: {kind} {id}: {k}");
                }
                joined += 1;
            }
            if kind == "finding" {
                let ids = rec["conn_ids"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                for id in ids {
                    assert!(
                        flows.contains_key(id.as_str().unwrap()),
                        "{what}: a finding names {id}, which no flow has"
                    );
                }
                if let Some(first) = rec["first_actor"]["conn_id"].as_str() {
                    assert!(ids.iter().any(|i| i == first), "{what}: {rec}");
                }
            }
        }
    }
    assert!(joined > 1000, "{joined} records joined");
}

#[test]
fn the_community_id_is_tsharks() {
    let mut compared = 0;
    for r in runs() {
        let ours: BTreeSet<String> = r
            .records
            .iter()
            .filter(|x| x["kind"] == "flow")
            .map(|f| f["community_id"].as_str().unwrap().to_string())
            .collect();
        let out = Command::new("tshark")
            .args(["--enable-protocol", "communityid", "-n", "-r"])
            .arg(&r.capture)
            .args([
                "-Y",
                "tcp.port == 5432 || tcp.port == 3306 || tcp.port == 1433 || tcp.port == 1521",
                "-T",
                "fields",
                "-e",
                "communityid",
            ])
            .output()
            .expect("running tshark (cargo xtask test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.rsplit(',').next().unwrap_or("").to_string())
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(ours, theirs, "{}", r.capture.display());
        compared += ours.len();
    }
    assert!(compared > 300, "{compared} flows compared");
}
