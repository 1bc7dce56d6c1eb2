//! The CloudWatch sinks against moto (a real emulator of CloudWatch and CloudWatch Logs).
//!
//! - `pcaps_ship_what_the_analyzer_measured`: `rds-sensor-cloudwatch analyze PCAP --json
//!   --cloudwatch` on bundled captures, pointed at moto through the SDK's standard endpoint
//!   variables; what moto holds (read back through the SDK) equals the run's own records:
//!   query, error, row and login counts, latency SampleCount and Sum (both kinds), bytes,
//!   events; the records and findings in the log group.
//! - `metrics_sink_stdout_prints_the_requests`: `--metrics-sink stdout`, no AWS.
//! - `unreachable_then_back`: moto up, killed, back on the same port: nothing panics, the
//!   queue stays within its bound, drops are counted and reported, queued data arrives.
//! - `rds_sensor_runs_the_cloudwatch_binary`: `rds-sensor` (no SDK) asked for CloudWatch.

mod common;

use common::{Moto, REGION, emulator_env, wait_for};
use rds_sensor::{
    cli::Mode,
    model::{Endpoint, Protocol, QueryRecord, Record, Timestamp},
    sinks::Sink,
};
use sensor_cloudwatch::Config;
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor-cloudwatch");

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcaps")
        .join(name)
}

/// What the run's own records say, per (DBInstanceIdentifier, Database).
#[derive(Debug, Default, Clone, PartialEq)]
struct Expect {
    queries: u64,
    errors: u64,
    rows: u64,
    latency_n: u64,
    latency_sum: f64,
    ttfb_n: u64,
    ttfb_sum: f64,
    logins_ok: u64,
    logins_failed: u64,
}

struct Run {
    records: Vec<Value>,
    by_db: BTreeMap<(String, String), Expect>,
    bytes: BTreeMap<String, (u64, u64)>,
    events: u64,
    findings: usize,
}

const MAPPED: (&str, &str) = ("198.51.100.10", "orders-db");

fn instance(server: &str) -> String {
    if server.starts_with(&format!("{}:", MAPPED.0)) {
        MAPPED.1.to_string()
    } else {
        server.to_string()
    }
}

fn analyze(records: Vec<Value>) -> Run {
    let mut by_db: BTreeMap<(String, String), Expect> = BTreeMap::new();
    let mut bytes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut per_server_latency: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut latency_lines: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut events = 0;
    let mut findings = 0;
    for r in &records {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let u = |k: &str| r[k].as_u64();
        let key = || {
            let db = r["database"].as_str().filter(|d| !d.is_empty());
            (instance(&s("server")), db.unwrap_or("(none)").to_string())
        };
        match r["kind"].as_str().unwrap() {
            "query" => {
                let e = by_db.entry(key()).or_default();
                e.queries += 1;
                e.errors += u64::from(!r["error_code"].is_null());
                e.rows += u("rows").unwrap_or(0);
                let lat = u("latency_us").unwrap();
                e.latency_n += 1;
                e.latency_sum += lat.max(1) as f64;
                if let Some(f) = u("latency_first_byte_us") {
                    e.ttfb_n += 1;
                    e.ttfb_sum += f.max(1) as f64;
                }
                let p = per_server_latency.entry(s("server")).or_default();
                p.0 += 1;
                p.1 += lat;
            }
            "login" => {
                let e = by_db.entry(key()).or_default();
                match r["outcome"].as_str() {
                    Some("success") => e.logins_ok += 1,
                    _ => e.logins_failed += 1,
                }
            }
            "flow" => {
                let b = bytes.entry(instance(&s("server"))).or_default();
                b.0 += u("bytes_to_server").unwrap();
                b.1 += u("bytes_to_client").unwrap();
            }
            "summary" => events = u("events").unwrap(),
            "latency" if r["rank"] == 0 => {
                let l = latency_lines.entry(s("server")).or_default();
                l.0 += u("count").unwrap();
                l.1 += u("total_us").unwrap();
            }
            "finding" => findings += 1,
            _ => {}
        }
    }
    // The latency aggregator's own per-server figures agree with the query records.
    assert_eq!(
        per_server_latency, latency_lines,
        "latency lines vs query records"
    );
    Run {
        records,
        by_db,
        bytes,
        events,
        findings,
    }
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn pcaps_ship_what_the_analyzer_measured() {
    let moto = Moto::start();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let dir = common::target_dir().join(format!("cw-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = common::runtime();
    let sdk = common::sdk_config(&moto.url());
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let mut total_queries = 0;
    let mut total_findings = 0;
    for (i, name) in [
        "pg-queries.pcap",
        "pg-auth.pcap",
        "pg-extended.pcap",
        "mysql-auth.pcap",
        "mysql-queries.pcap",
    ]
    .into_iter()
    .enumerate()
    {
        let ns = format!("Test/{}", name.trim_end_matches(".pcap"));
        let group = format!("/rds-sensor/test/{}", name.trim_end_matches(".pcap"));
        // EventBridge: a bus whose rule sends rds-sensor's events to a log group.
        let bus = format!("bus-{i}");
        let bus_group = format!("/eventbridge/test-{i}");
        rt.block_on(async {
            events.create_event_bus().name(&bus).send().await.unwrap();
            logs.create_log_group()
                .log_group_name(&bus_group)
                .send()
                .await
                .unwrap();
            events
                .put_rule()
                .name("findings")
                .event_bus_name(&bus)
                .event_pattern(r#"{"source": ["rds-sensor"]}"#)
                .send()
                .await
                .unwrap();
            events
                .put_targets()
                .rule("findings")
                .event_bus_name(&bus)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("logs")
                        .arn(format!(
                            "arn:aws:logs:{REGION}:123456789012:log-group:{bus_group}"
                        ))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        });
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(
            &cfg,
            serde_json::json!({
                "namespace": ns,
                "log_group": group,
                "log_stream": "sensor-1",
                "sensor_id": "sensor-1",
                "records_sample": 1.0,
                "shutdown_timeout_s": 60,
                // Gzip every PutMetricData body, so moto reads compressed requests.
                "compression_min_bytes": 1,
                "eventbridge_bus": bus,
            })
            .to_string(),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        emulator_env(&mut cmd, &dir);
        cmd.arg("analyze")
            .arg(pcap(name))
            .args(["--json", "--cloudwatch-config"])
            .arg(&cfg)
            .args(["--db-instance", &format!("{}={}", MAPPED.0, MAPPED.1)])
            // Findings: every client of the captures is outside this network.
            .args(["--detect", "--allowed-cidr", "10.0.0.0/8"])
            .env("AWS_ENDPOINT_URL_EVENTBRIDGE", moto.url())
            .env("RUST_LOG", "warn");
        if i == 0 {
            // The SDK's global endpoint variable.
            cmd.env("AWS_ENDPOINT_URL", moto.url());
        } else {
            // The per-service variables win over a global one that leads nowhere.
            cmd.env("AWS_ENDPOINT_URL", &dead)
                .env("AWS_ENDPOINT_URL_CLOUDWATCH", moto.url())
                .env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", moto.url());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let run = analyze(parse_lines(&out.stdout));
        assert!(!run.by_db.is_empty(), "{name}: no query or login records");
        rt.block_on(async {
            for ((inst, db), e) in &run.by_db {
                let dims = [
                    ("DBInstanceIdentifier", inst.as_str()),
                    ("Database", db.as_str()),
                ];
                let got = |m: &'static str| common::stats(&cw, &ns, m, &dims);
                let what = format!("{name} {inst}/{db}");
                if e.queries > 0 {
                    assert_eq!(got("Queries").await.1, e.queries as f64, "{what} queries");
                    assert_eq!(got("QueryErrors").await.1, e.errors as f64, "{what} errors");
                    assert_eq!(got("Rows").await.1, e.rows as f64, "{what} rows");
                    let (n, sum) = got("QueryLatency").await;
                    assert_eq!(n, e.latency_n as f64, "{what} latency SampleCount");
                    assert!(
                        close(sum, e.latency_sum),
                        "{what} latency Sum {sum} vs {}",
                        e.latency_sum
                    );
                    let (n, sum) = got("QueryTimeToFirstByte").await;
                    assert_eq!(n, e.ttfb_n as f64, "{what} first byte SampleCount");
                    assert!(
                        close(sum, e.ttfb_sum),
                        "{what} first byte Sum {sum} vs {}",
                        e.ttfb_sum
                    );
                    total_queries += e.queries;
                }
                if e.logins_ok + e.logins_failed > 0 {
                    assert_eq!(
                        got("LoginsSucceeded").await.1,
                        e.logins_ok as f64,
                        "{what} logins"
                    );
                    assert_eq!(
                        got("LoginsFailed").await.1,
                        e.logins_failed as f64,
                        "{what} failed logins"
                    );
                }
            }
            // Per-instance rollups. moto matches a superset of the dimensions asked for, so
            // asking for the instance alone also counts the per-database data: twice.
            let mut per_inst: BTreeMap<&str, u64> = BTreeMap::new();
            for ((inst, _), e) in &run.by_db {
                *per_inst.entry(inst).or_default() += e.queries;
            }
            for (inst, q) in per_inst {
                let (_, sum) =
                    common::stats(&cw, &ns, "Queries", &[("DBInstanceIdentifier", inst)]).await;
                assert_eq!(sum, 2.0 * q as f64, "{name} {inst} rollup");
            }
            for (inst, (to_server, to_client)) in &run.bytes {
                let dims = [("DBInstanceIdentifier", inst.as_str())];
                assert_eq!(
                    common::stats(&cw, &ns, "BytesToServer", &dims).await.1,
                    *to_server as f64
                );
                assert_eq!(
                    common::stats(&cw, &ns, "BytesToClient", &dims).await.1,
                    *to_client as f64
                );
            }
            let (_, events) = common::stats(&cw, &ns, "Events", &[("Sensor", "sensor-1")]).await;
            assert_eq!(events, run.events as f64, "{name} events");
            // The dimension sets of Queries: one per (instance, database) and per instance.
            let listed = cw
                .list_metrics()
                .namespace(&ns)
                .metric_name("Queries")
                .send()
                .await
                .unwrap();
            let mut sets: Vec<Vec<(String, String)>> = listed
                .metrics()
                .iter()
                .map(|m| {
                    m.dimensions()
                        .iter()
                        .map(|d| {
                            (
                                d.name().unwrap().to_string(),
                                d.value().unwrap().to_string(),
                            )
                        })
                        .collect()
                })
                .collect();
            sets.sort();
            sets.dedup(); // moto lists one entry per stored sample
            let with_queries: Vec<_> = run.by_db.iter().filter(|(_, e)| e.queries > 0).collect();
            let instances: std::collections::BTreeSet<_> =
                with_queries.iter().map(|((i, _), _)| i.clone()).collect();
            assert_eq!(
                sets.len(),
                with_queries.len() + instances.len(),
                "{name}: {sets:?}"
            );

            // The log group: every query and login record (records_sample 1), redacted, and
            // every finding update.
            let messages = common::log_messages(&logs, &group).await;
            let kinds = |k: &str| {
                messages
                    .iter()
                    .filter(|m| serde_json::from_str::<Value>(m).unwrap()["kind"] == k)
                    .count()
            };
            let count = |k: &str| run.records.iter().filter(|r| r["kind"] == k).count();
            assert_eq!(
                kinds("query"),
                count("query"),
                "{name}: query records in Logs"
            );
            assert_eq!(
                kinds("login"),
                count("login"),
                "{name}: login records in Logs"
            );
            assert_eq!(kinds("finding"), run.findings, "{name}: findings in Logs");
            total_findings += run.findings;
            assert!(
                messages.iter().all(|m| !m.contains("\"query\":")),
                "redacted"
            );
            // The same findings through EventBridge (a rule on the bus, to a log group).
            let via_bus = common::log_messages_boto3(&moto.url(), &bus_group);
            assert_eq!(
                via_bus.len(),
                run.findings,
                "{name}: findings through EventBridge"
            );
            for m in &via_bus {
                let e: Value = serde_json::from_str(m).unwrap();
                assert_eq!(e["source"], "rds-sensor", "{m}");
                assert_eq!(e["detail"]["kind"], "finding", "{m}");
                // What goes to AWS keeps GuardDuty's names, so rules written for GuardDuty's
                // RDS findings match it; the records in Logs are ours, in snake_case.
                assert!(
                    e["detail"]["resource"]["rdsDbInstanceDetails"]["dbInstanceIdentifier"]
                        .is_string(),
                    "{m}"
                );
                assert!(e["detail"]["service"]["eventFirstSeen"].is_string(), "{m}");
            }
            for m in messages
                .iter()
                .filter(|m| m.contains("\"kind\":\"finding\""))
            {
                let f: Value = serde_json::from_str(m).unwrap();
                assert!(
                    f["resource"]["rds_db_instance_details"]["db_instance_identifier"].is_string(),
                    "{m}"
                );
            }
        });
    }
    assert!(
        total_queries > 50,
        "the captures decode into queries ({total_queries})"
    );
    assert!(
        total_findings > 5,
        "the captures raise findings ({total_findings})"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16: `--metrics-sink stdout` without `--json` printed text records between the JSON
/// requests; stdout is now one JSON object per line whatever else is asked, and `--quiet`
/// leaves only the requests.
#[test]
fn metrics_sink_stdout_is_json_on_its_own() {
    for quiet in [false, true] {
        let mut c = Command::new(BIN);
        c.arg("analyze")
            .arg(pcap("pg-queries.pcap"))
            .args(["--metrics-sink", "stdout"])
            .env_remove("AWS_ENDPOINT_URL");
        if quiet {
            c.arg("--quiet");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = parse_lines(&out.stdout);
        let requests = lines
            .iter()
            .filter(|l| l["kind"] == "cloudwatch_put_metric_data")
            .count();
        let records = lines
            .iter()
            .filter(|l| {
                ["query", "login", "flow", "summary"].contains(&l["kind"].as_str().unwrap_or(""))
            })
            .count();
        assert!(requests > 0, "quiet={quiet}");
        if quiet {
            assert_eq!(records, 0, "--quiet: only the requests");
        } else {
            assert!(records > 10, "the records, as JSON: {records}");
        }
    }
}

#[test]
fn metrics_sink_stdout_prints_the_requests() {
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(pcap("pg-queries.pcap"))
        .args([
            "--json",
            "--metrics-sink",
            "stdout",
            "--cloudwatch-top-fingerprints",
            "3",
        ])
        .args(["--db-instance", &format!("{}={}", MAPPED.0, MAPPED.1)])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_lines(&out.stdout);
    let (requests, records): (Vec<_>, Vec<_>) = lines
        .into_iter()
        .partition(|l| l["kind"] == "cloudwatch_put_metric_data");
    let run = analyze(records);
    assert!(!requests.is_empty());
    let mut sums: BTreeMap<(String, Vec<String>), (f64, f64)> = BTreeMap::new();
    for r in &requests {
        assert_eq!(r["Namespace"], "RDS/TrafficSensor");
        let data = r["MetricData"].as_array().unwrap();
        assert!(data.len() <= 1000);
        for d in data {
            let dims: Vec<String> = d["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["Value"].as_str().unwrap().to_string())
                .collect();
            let e = sums
                .entry((d["MetricName"].as_str().unwrap().to_string(), dims))
                .or_default();
            if let Some(values) = d["Values"].as_array() {
                let counts = d["Counts"].as_array().unwrap();
                assert!(values.len() <= 150 && values.len() == counts.len());
                for (v, c) in values.iter().zip(counts) {
                    e.0 += c.as_f64().unwrap();
                    e.1 += v.as_f64().unwrap() * c.as_f64().unwrap();
                }
            } else {
                e.0 += 1.0;
                e.1 += d["Value"].as_f64().unwrap();
            }
        }
    }
    for ((inst, db), e) in &run.by_db {
        let k = |m: &str| (m.to_string(), vec![inst.clone(), db.clone()]);
        assert_eq!(sums[&k("Queries")].1, e.queries as f64);
        assert_eq!(sums[&k("QueryLatency")].0, e.latency_n as f64);
        assert!(close(sums[&k("QueryLatency")].1, e.latency_sum));
        assert_eq!(sums[&k("LoginsSucceeded")].1, e.logins_ok as f64);
    }
    let top: Vec<_> = sums
        .keys()
        .filter(|(m, d)| m == "Queries" && d.len() == 3)
        .collect();
    assert_eq!(top.len(), 3, "top 3 fingerprints: {top:?}");
    assert!(
        top.iter().any(|(_, d)| d[2] == "select pg_sleep(?)"),
        "{top:?}"
    );
}

fn query(t_s: i64, latency_us: u64) -> Record {
    Record::Query(QueryRecord {
        ts: Timestamp(t_s as u64 * 1_000_000_000),
        endpoint: Endpoint::from_text("10.1.0.5:40000", "10.0.0.5:5432", None, Protocol::Postgres),
        user: Some("app".into()),
        database: Some("orders".into()),
        verb: "SELECT".into(),
        fingerprint: "select ?".into(),
        query: Some("select 1".into()),
        rows: Some(1),
        error_code: None,
        error_name: None,
        error_message: None,
        bytes_request: 10,
        bytes_response: 20,
        latency_first_byte_us: Some(latency_us / 2),
        latency_us,
        prepared: false,
        tag: None,
    })
}

#[test]
fn unreachable_then_back() {
    let mut moto = Moto::start();
    let port = moto.port;
    let url = moto.url();
    const BOUND: usize = 40;
    let cfg = Config {
        namespace: "Test/Fault".into(),
        sensor_id: Some("fault".into()),
        queue_max_datums: BOUND,
        max_attempts: 2,
        backoff_initial_ms: 50,
        backoff_max_ms: 300,
        connect_timeout_ms: 500,
        attempt_timeout_ms: 2_000,
        shutdown_timeout_s: 60,
        ..Config::default()
    };
    let (mut sink, shipper) =
        sensor_cloudwatch::start_with(cfg, Mode::Live, Some(common::sdk_config(&url))).unwrap();
    let shipper = shipper.expect("a shipper");
    let shared = shipper.shared().clone();
    // Ten periods back, so every period here has ended.
    let p0 = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - now % 60 - 40 * 60
    };
    // Per period: Queries, QueryErrors, Rows, QueryLatency, QueryTimeToFirstByte, for
    // (instance, database) and for the instance.
    const PER_PERIOD: u64 = 10;

    // 1. Up: period 0 arrives.
    for l in [100, 200, 300, 400, 500] {
        sink.emit(&query(p0 + 5, l)).unwrap();
    }
    sink.emit(&query(p0 + 60, 100)).unwrap();
    sink.flush().unwrap();
    wait_for("period 0", 30, || shared.stats().datums_sent == PER_PERIOD);
    let rt = common::runtime();
    let cw = aws_sdk_cloudwatch::Client::new(&common::sdk_config(&url));
    let dims = [
        ("DBInstanceIdentifier", "10.0.0.5:5432"),
        ("Database", "orders"),
    ];
    let (n, sum) = rt.block_on(common::stats(&cw, "Test/Fault", "QueryLatency", &dims));
    assert_eq!((n, sum), (5.0, 1500.0));

    // 2. Killed: 30 more periods; the queue keeps at most BOUND, drops the oldest.
    moto.stop();
    for i in 1..=30 {
        let t = p0 + 60 * i;
        sink.emit(&query(t + 1, 1000)).unwrap();
        sink.emit(&query(t + 2, 2000)).unwrap();
        sink.emit(&query(t + 60, 100)).unwrap();
        sink.flush().unwrap();
        assert!(shared.queued().0 <= BOUND, "queue within its bound");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for("a failed send", 30, || shared.stats().failures > 0);
    let s = shared.stats();
    assert!(s.datums_dropped > 0, "{s:?}");
    assert!(s.max_queued_datums <= BOUND, "{s:?}");
    assert_eq!(s.datums_sent, PER_PERIOD, "nothing got through: {s:?}");

    // 3. Back on the same port: the end of input, then everything queued arrives.
    let moto = Moto::start_on(port);
    drop(sink); // the last period (31) closes here
    let s = shipper.finish().expect("everything queued is delivered");
    assert_eq!(
        s.datums_sent + s.datums_dropped,
        PER_PERIOD * 32,
        "each datum sent or counted as dropped: {s:?}"
    );
    assert!(s.failures > 0 && s.report_datums >= 2, "{s:?}");
    let cw = aws_sdk_cloudwatch::Client::new(&common::sdk_config(&moto.url()));
    rt.block_on(async {
        // The newest data survived (the oldest were dropped).
        let (n, _) = common::stats(&cw, "Test/Fault", "QueryLatency", &dims).await;
        assert!(n >= 3.0, "{n}");
        let (_, q) = common::stats(&cw, "Test/Fault", "Queries", &dims).await;
        assert!(q >= 3.0, "{q}");
        // The drops were reported, all of them.
        let (_, dropped) = common::stats(
            &cw,
            "Test/Fault",
            "MetricDatumsDropped",
            &[("Sensor", "fault")],
        )
        .await;
        assert_eq!(dropped, s.datums_dropped as f64);
        // New moto: only what was queued while it was down, less the drops.
        let (_, queries) = common::stats(
            &cw,
            "Test/Fault",
            "Queries",
            &[("DBInstanceIdentifier", "10.0.0.5:5432")],
        )
        .await;
        assert!(queries > 0.0);
    });
}

#[test]
fn rds_sensor_runs_the_cloudwatch_binary() {
    // `rds-sensor` is sensor-user's binary; build it beside this one.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = Path::new(BIN).parent().unwrap().ends_with("release");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "sensor-user",
            "--bin",
            "rds-sensor",
        ])
        .args(release.then_some("--release"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building rds-sensor");
    let dir = Path::new(BIN).parent().unwrap();
    let rds_sensor = dir.join("rds-sensor");
    let out = Command::new(&rds_sensor)
        .arg("analyze")
        .arg(pcap("pg-queries.pcap"))
        .args(["--json", "--metrics-sink", "stdout"])
        .env_remove("RDS_SENSOR_DELEGATED")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_lines(&out.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "cloudwatch_put_metric_data")
    );
    assert!(lines.iter().any(|l| l["kind"] == "query"));

    // Without the companion binary beside it, a clear error.
    let lonely = common::target_dir().join(format!("lonely-{}", std::process::id()));
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(&rds_sensor, lonely.join("rds-sensor")).unwrap();
    let out = Command::new(lonely.join("rds-sensor"))
        .arg("analyze")
        .arg(pcap("pg-queries.pcap"))
        .arg("--cloudwatch")
        .output()
        .unwrap();
    let mirror = |args: &[&str]| {
        let o = Command::new(lonely.join("rds-sensor"))
            .args(["aws", "mirror", "plan"])
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // `aws mirror` is the companion's too; a spec that cannot work is refused before.
    let mirror_err = mirror(&["--instance", "db-1", "--target-eni", "eni-1"]);
    let bad_spec = mirror(&["--target-eni", "eni-1"]);
    std::fs::remove_dir_all(&lonely).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rds-sensor-cloudwatch") && err.contains("cargo build"),
        "{err}"
    );
    assert!(
        mirror_err.contains("`aws mirror` was asked for")
            && mirror_err.contains("rds-sensor-cloudwatch"),
        "{mirror_err}"
    );
    assert!(bad_spec.contains("nothing to mirror"), "{bad_spec}");
}
