//! Secrets never reach CloudWatch nor Security Hub: `rds-sensor-cloudwatch analyze --cloudwatch
//! --securityhub --detect` (every query and login record sampled into the log group, findings
//! through EventBridge into a log group and to Security Hub as ASFF) over each bundled capture that carries the known password or the canary literal (see
//! pcaps/README.md), against moto; then everything moto holds — every metric's namespace,
//! name and dimensions, every log group, stream and event, moto's own state dump — and the
//! run's stdout and stderr (logging at debug) are searched for both secrets: nothing.

mod common;

use common::{Moto, REGION, emulator_env};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor-cloudwatch");
const PASSWORD: &str = "Sup3r-Secret-Pw!";
const CANARY: &str = "canary-literal-4242";
const CAPTURES: [&str; 5] = [
    "pg-auth.pcap",
    "pg-queries.pcap",
    "pg-plain-query.pcap",
    "mysql-queries.pcap",
    "mysql-prepared.pcap",
];

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcaps")
        .join(name)
}

/// Everything moto stores, as one text: read with boto3 from moto's venv (paginated), plus
/// moto's state dump.
fn moto_dump(endpoint: &str) -> String {
    let python = common::moto_server().with_file_name("python");
    let script = r#"
import boto3, json, sys, urllib.request
kw = dict(endpoint_url=sys.argv[1], region_name=sys.argv[2],
          aws_access_key_id="testing", aws_secret_access_key="testing")
cw, logs, ev = (boto3.client(s, **kw) for s in ("cloudwatch", "logs", "events"))
out = {"metrics": [], "logs": {}, "buses": [], "securityhub": [], "dump": ""}
for page in boto3.client("securityhub", **kw).get_paginator("get_findings").paginate():
    out["securityhub"] += page["Findings"]
for page in cw.get_paginator("list_metrics").paginate():
    out["metrics"] += page["Metrics"]
for page in logs.get_paginator("describe_log_groups").paginate():
    for g in page["logGroups"]:
        name = g["logGroupName"]
        streams = [s["logStreamName"] for p in logs.get_paginator("describe_log_streams")
                   .paginate(logGroupName=name) for s in p["logStreams"]]
        msgs, kw2 = [], {"logGroupName": name}
        while True:
            r = logs.filter_log_events(**kw2)
            msgs += [e["message"] for e in r["events"]]
            if not r.get("nextToken") or not r["events"]:
                break
            kw2["nextToken"] = r["nextToken"]
        out["logs"][name] = {"streams": streams, "messages": msgs}
out["buses"] = ev.list_event_buses()["EventBuses"]
out["dump"] = urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json").read().decode()
print(json.dumps(out, default=str))
"#;
    let out = Command::new(&python)
        .args(["-c", script, endpoint, REGION])
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "reading moto back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, CANARY] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for f in [secret.to_string(), hex.clone(), hex.to_uppercase()] {
            assert!(!text.contains(&f), "{what} holds {secret:?} (as {f:?})");
        }
    }
}

#[test]
fn nothing_secret_reaches_cloudwatch() {
    let moto = Moto::start();
    let dir = common::target_dir().join(format!("cw-redaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let group = "/rds-sensor/test/redaction";
    let bus_group = "/eventbridge/redaction";
    let python = common::moto_server().with_file_name("python");
    // EventBridge: a bus whose rule sends rds-sensor's events to a log group.
    let setup = r#"
import boto3, sys
kw = dict(endpoint_url=sys.argv[1], region_name=sys.argv[2],
          aws_access_key_id="testing", aws_secret_access_key="testing")
ev, logs = boto3.client("events", **kw), boto3.client("logs", **kw)
boto3.client("securityhub", **kw).enable_security_hub()
ev.create_event_bus(Name="redaction")
logs.create_log_group(logGroupName=sys.argv[3])
ev.put_rule(Name="findings", EventBusName="redaction", EventPattern='{"source": ["rds-sensor"]}')
ev.put_targets(Rule="findings", EventBusName="redaction", Targets=[{"Id": "logs",
    "Arn": "arn:aws:logs:%s:123456789012:log-group:%s" % (sys.argv[2], sys.argv[3])}])
"#;
    let st = Command::new(&python)
        .args(["-c", setup, &moto.url(), REGION, bus_group])
        .status()
        .unwrap();
    assert!(st.success(), "EventBridge set-up in moto");

    let mut outputs = String::new();
    for name in CAPTURES {
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(
            &cfg,
            serde_json::json!({
                "namespace": "Test/redaction",
                "log_group": group,
                "log_stream": name,
                "sensor_id": "sensor-1",
                "records_sample": 1.0,
                "shutdown_timeout_s": 60,
                "eventbridge_bus": "redaction",
            })
            .to_string(),
        )
        .unwrap();
        let out = emulator_env(&mut Command::new(BIN), &dir)
            .arg("analyze")
            .arg(pcap(name))
            .args(["--json", "--cloudwatch-config"])
            .arg(&cfg)
            .args(["--detect", "--allowed-cidr", "10.0.0.0/8", "--securityhub"])
            .env("AWS_ENDPOINT_URL", moto.url())
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&format!("{name}: stdout/stderr"), &text);
        outputs.push_str(&text);
    }
    let stored = moto_dump(&moto.url());
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    // Not vacuous: metrics with dimensions, and the sampled records in the log group.
    assert!(
        v["metrics"].as_array().is_some_and(|m| !m.is_empty()),
        "moto holds metrics"
    );
    let msgs = v["logs"][group]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        msgs.iter()
            .any(|m| m.as_str().is_some_and(|s| s.contains("query"))),
        "moto holds the sampled query records: {} messages",
        msgs.len()
    );
    assert!(
        msgs.iter()
            .any(|m| m.as_str().is_some_and(|s| s.contains("login"))),
        "moto holds the sampled login records"
    );
    assert!(
        v["securityhub"].as_array().is_some_and(|f| !f.is_empty()),
        "moto holds Security Hub findings"
    );
    assert_clean("moto's stored data", &stored);
    // The Security Hub requests as printed (`--metrics-sink stdout`) too.
    for name in CAPTURES {
        let out = Command::new(BIN)
            .arg("analyze")
            .arg(pcap(name))
            .args(["--json", "--securityhub", "--metrics-sink", "stdout"])
            .args(["--detect", "--allowed-cidr", "10.0.0.0/8"])
            .env("AWS_REGION", REGION)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("securityhub_batch_import_findings"), "{name}");
        assert_clean(&format!("{name}: printed Security Hub requests"), &text);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
