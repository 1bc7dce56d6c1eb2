//! The Security Hub sink against moto.
//!
//! - `scenarios_arrive_as_one_asff_finding_per_id`: `rds-sensor-cloudwatch analyze PCAP --json
//!   --securityhub` over the detection corpus (the benign capture learns the baseline, each
//!   attack starts from a copy), pointed at moto; GetFindings (paginated) holds one finding per
//!   distinct id of the run's `"kind":"finding"` records, each equal to that id's last update
//!   (UpdatedAt, Severity, Resources, GeneratorId, RecordState); and every stored finding is
//!   valid against botocore's Security Hub model (tests/asff_check.py).
//! - `moto_restart_with_a_small_queue`: moto up, killed, back on the same port, with a queue
//!   of 5: nothing panics, the queue stays within its bound, drops are counted and reported by
//!   finish(), and what was queued arrives.
//! - `stdout_prints_the_requests`: `--metrics-sink stdout`, no AWS.

mod common;

use common::{Moto, REGION, emulator_env, wait_for};
use rds_sensor::{cli::Mode, sinks::Sink};
use sensor_cloudwatch::{Config, securityhub};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor-cloudwatch");

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/scenarios")
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The detection corpus's options (labels.json), without a baseline.
fn corpus_args() -> Vec<String> {
    let dir = scenarios();
    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).unwrap()).unwrap();
    let o = &labels["options"];
    let path = |k: &str| dir.join(o[k].as_str().unwrap()).display().to_string();
    let mut args = vec![
        "--json".to_string(),
        "--learning-period".into(),
        o["learning_period_s"].as_u64().unwrap().to_string(),
        "--malicious-ips".into(),
        path("malicious_ips"),
        "--tor-exits".into(),
        path("tor_exits"),
        "--instance-map".into(),
        path("instance_map"),
    ];
    for c in o["allowed_cidrs"].as_array().unwrap() {
        args.push("--allowed-cidr".into());
        args.push(c.as_str().unwrap().into());
    }
    args
}

fn ms(rfc3339: &str) -> u128 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Every finding moto holds, read back by the venv's boto3 and checked against botocore's
/// model of AwsSecurityFinding.
fn stored_and_checked(endpoint: &str) -> Vec<Value> {
    let python = common::moto_server().with_file_name("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asff_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([endpoint, REGION])
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "asff_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("asff_check.py's JSON");
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors.is_empty(),
        "findings that AWS's model refuses:\n{}",
        errors
            .iter()
            .take(30)
            .map(|e| e.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    v["findings"].as_array().unwrap().clone()
}

async fn enable(hub: &aws_sdk_securityhub::Client) {
    hub.enable_security_hub().send().await.unwrap_or_else(|e| {
        panic!(
            "EnableSecurityHub: {}",
            aws_sdk_securityhub::error::DisplayErrorContext(&e)
        )
    });
}

/// Runs `f` on a thread with a stack the SDK's ASFF deserialisers fit in, unoptimised.
fn big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

/// Every finding, through the SDK (paginated).
fn get_findings(
    hub: &aws_sdk_securityhub::Client,
) -> Vec<aws_sdk_securityhub::types::AwsSecurityFinding> {
    big_stack(|| common::runtime().block_on(get_findings_async(hub)))
}

async fn get_findings_async(
    hub: &aws_sdk_securityhub::Client,
) -> Vec<aws_sdk_securityhub::types::AwsSecurityFinding> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let r = hub
            .get_findings()
            .max_results(20)
            .set_next_token(token)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetFindings: {}",
                    aws_sdk_securityhub::error::DisplayErrorContext(&e)
                )
            });
        out.extend(r.findings().iter().cloned());
        match r.next_token() {
            Some(t) if !t.is_empty() && !r.findings().is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out
}

#[test]
fn scenarios_arrive_as_one_asff_finding_per_id() {
    let moto = Moto::start();
    let rt = common::runtime();
    let hub = aws_sdk_securityhub::Client::new(&common::sdk_config(&moto.url()));
    rt.block_on(enable(&hub));
    let dir = common::target_dir().join(format!("sh-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let learned = dir.join("baseline.json");
    let mut files: Vec<String> = std::fs::read_dir(scenarios())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".pcap") && n != "benign.pcap")
        .collect();
    files.sort();
    assert!(files.iter().filter(|f| f.starts_with("attack-")).count() >= 5);
    // The last version of each finding id, over every run in order.
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    let mut versions = 0;
    for file in std::iter::once("benign.pcap".to_string()).chain(files) {
        let baseline = if file == "benign.pcap" {
            learned.clone()
        } else {
            let b = dir.join(format!("{file}.baseline.json"));
            std::fs::copy(&learned, &b).expect("the benign run saved a baseline");
            b
        };
        let out = emulator_env(&mut Command::new(BIN), &dir)
            .arg("analyze")
            .arg(scenarios().join(&file))
            .args(corpus_args())
            .arg("--baseline")
            .arg(&baseline)
            // mixed.pcap's hour: findings of its early attacks end, and are archived.
            .args(["--finding-archive-after", "600"])
            .arg("--securityhub")
            .env("AWS_ENDPOINT_URL", moto.url())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for r in parse_lines(&out.stdout) {
            assert!(
                r["kind"] != "cloudwatch_put_metric_data",
                "--securityhub alone sends no metrics"
            );
            if r["kind"] == "finding" {
                versions += 1;
                last.insert(r["id"].as_str().unwrap().to_string(), r);
            }
        }
    }
    assert!(
        last.len() >= 10,
        "the corpus yields findings: {}",
        last.len()
    );
    assert!(versions > last.len(), "some findings were updated");

    let stored = get_findings(&hub);
    assert_eq!(stored.len(), last.len(), "one Security Hub finding per id");
    for s in &stored {
        let id = s.id().unwrap();
        let r = last
            .get(id)
            .unwrap_or_else(|| panic!("{id}: in Security Hub, not in the records"));
        let what = format!("{id} ({})", r["type"]);
        assert_eq!(s.generator_id(), r["type"].as_str(), "{what}");
        assert_eq!(
            ms(s.updated_at().unwrap()),
            ms(r["updated_at"].as_str().unwrap()),
            "{what}: UpdatedAt is the last update's"
        );
        let sev = s.severity().unwrap();
        assert_eq!(
            sev.label().unwrap().as_str(),
            r["severity_label"].as_str().unwrap().to_uppercase(),
            "{what}"
        );
        assert_eq!(
            sev.normalized(),
            Some((r["severity"].as_f64().unwrap() * 10.0) as i32),
            "{what}"
        );
        let inst = &r["resource"]["rds_db_instance_details"];
        let res = &s.resources()[0];
        assert_eq!(res.r#type(), Some("AwsRdsDbInstance"));
        assert_eq!(
            res.id(),
            inst["db_instance_arn"]
                .as_str()
                .or(inst["db_instance_identifier"].as_str()),
            "{what}"
        );
        let rds = res.details().unwrap().aws_rds_db_instance().unwrap();
        assert_eq!(
            rds.db_instance_identifier(),
            inst["db_instance_identifier"].as_str()
        );
        let archived = r["service"]["archived"].as_bool().unwrap();
        assert_eq!(
            s.record_state().unwrap().as_str(),
            if archived { "ARCHIVED" } else { "ACTIVE" }
        );
    }
    assert!(
        stored
            .iter()
            .any(|s| s.record_state().map(|r| r.as_str()) == Some("ARCHIVED")),
        "a finding that ended is ARCHIVED in Security Hub"
    );
    // AWS's own model, not ours.
    let checked = stored_and_checked(&moto.url());
    assert_eq!(checked.len(), stored.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn moto_restart_with_a_small_queue() {
    let mut moto = Moto::start();
    let port = moto.port;
    let url = moto.url();
    let rt = common::runtime();
    rt.block_on(enable(&aws_sdk_securityhub::Client::new(
        &common::sdk_config(&url),
    )));
    const BOUND: usize = 5;
    let cfg = Config {
        securityhub: true,
        queue_max_findings: BOUND,
        max_attempts: 2,
        backoff_initial_ms: 50,
        backoff_max_ms: 300,
        connect_timeout_ms: 500,
        attempt_timeout_ms: 2_000,
        shutdown_timeout_s: 60,
        ..Config::default()
    };
    let (mut sink, shipper) =
        securityhub::start(cfg, Mode::Live, Some(common::sdk_config(&url))).unwrap();
    let shipper = shipper.expect("a shipper");
    let queue = shipper.queue().clone();
    let finding = |id: &str| {
        rds_sensor::model::Record::Finding(Box::new(securityhub::asff::example(
            id,
            "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce",
        )))
    };

    // 1. Up: three findings arrive (the account from STS).
    for i in 0..3 {
        sink.emit(&finding(&format!("up-{i}"))).unwrap();
    }
    wait_for("3 findings", 30, || queue.stats().sent == 3);
    let hub = aws_sdk_securityhub::Client::new(&common::sdk_config(&url));
    let got = get_findings(&hub);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].product_arn(),
        Some("arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default")
    );

    // 2. Killed: 20 findings (and updates of some) while the queue keeps at most BOUND.
    moto.stop();
    for i in 0..20 {
        sink.emit(&finding(&format!("down-{i}"))).unwrap();
        if i % 4 == 0 {
            // An update of the one just queued: replaces it, not a drop.
            sink.emit(&finding(&format!("down-{i}"))).unwrap();
        }
        assert!(queue.queued() <= BOUND, "queue within its bound");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for("a failed send", 30, || queue.stats().failures > 0);
    let s = queue.stats();
    assert!(s.dropped > 0 && s.max_queued <= BOUND, "{s:?}");
    assert_eq!(s.sent, 3, "nothing got through: {s:?}");

    // 3. Back on the same port (moto forgets everything): what was queued arrives.
    let moto = Moto::start_on(port);
    let hub = aws_sdk_securityhub::Client::new(&common::sdk_config(&moto.url()));
    rt.block_on(enable(&hub));
    drop(sink);
    let err = shipper
        .finish()
        .expect_err("drops are reported as an error");
    let s = queue.stats();
    assert!(
        err.to_string()
            .contains(&format!("dropped from the full queue: {}", s.dropped)),
        "{err}"
    );
    assert_eq!(s.unsent + s.rejected, 0, "{s:?}");
    let after = s.sent - 3;
    assert_eq!(
        after + s.dropped,
        20,
        "each new finding sent or counted as dropped: {s:?}"
    );
    assert!(after >= 1 && after as usize <= BOUND, "{s:?}");
    let got = get_findings(&hub);
    assert_eq!(got.len() as u64, after, "what was queued arrived");
    assert!(
        got.iter().any(|f| f.id() == Some("down-19")),
        "the newest kept"
    );
}

#[test]
fn stdout_prints_the_requests() {
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(scenarios().join("attack-bruteforce.pcap"))
        .args(corpus_args())
        .args(["--securityhub", "--metrics-sink", "stdout"])
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_REGION", REGION)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_lines(&out.stdout);
    let ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "finding")
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let reqs: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "securityhub_batch_import_findings")
        .collect();
    assert!(!ids.is_empty() && !reqs.is_empty());
    let mut printed = std::collections::BTreeSet::new();
    for r in reqs {
        let f = r["findings"].as_array().unwrap();
        assert!(!f.is_empty() && f.len() <= 100);
        for x in f {
            assert_eq!(x["SchemaVersion"], "2018-10-08");
            assert_eq!(
                x["ProductArn"],
                "arn:aws:securityhub:us-east-1:000000000000:product/000000000000/default"
            );
            printed.insert(x["Id"].as_str().unwrap());
        }
    }
    assert_eq!(printed, ids, "every finding printed");
}
