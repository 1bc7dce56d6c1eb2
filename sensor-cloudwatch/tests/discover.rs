//! `--discover rds` against moto's RDS: two instances made with boto3 (PostgreSQL with a tag,
//! MariaDB), their endpoints resolved through a hosts file the test controls to the addresses
//! of pcaps/scenarios/mixed.pcap; the CloudWatch dimension and every finding's resource then
//! carry the instances' identifiers, engines and tags, where without discovery they carry
//! addresses. A hosts file that cannot be read stops the start in one line.

mod common;

use common::Moto;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor-cloudwatch");

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcaps")
        .join(name)
}

/// Creates the instances; returns each one's endpoint address.
fn make_instances(moto: &Moto) -> Vec<(String, String)> {
    let python = common::moto_server().with_file_name("python");
    let script = r#"
import boto3, json, sys
c = boto3.client("rds", endpoint_url=sys.argv[1], region_name=sys.argv[2],
                 aws_access_key_id="testing", aws_secret_access_key="testing")
c.create_db_instance(DBInstanceIdentifier="orders-pg-1", Engine="postgres",
                     EngineVersion="15.4", DBInstanceClass="db.t3.micro", Port=5432,
                     MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                     AllocatedStorage=20, Tags=[{"Key": "env", "Value": "prod"}])
c.create_db_instance(DBInstanceIdentifier="billing-mariadb-1", Engine="mariadb",
                     EngineVersion="10.11.8",
                     DBInstanceClass="db.t3.micro", Port=3306, MasterUsername="admin",
                     MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
out = []
for db in c.describe_db_instances()["DBInstances"]:
    out.append([db["DBInstanceIdentifier"], db["Endpoint"]["Address"]])
print(json.dumps(out))
"#;
    let out = Command::new(&python)
        .args(["-c", script, &moto.url(), common::REGION])
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

fn run(moto: &Moto, dir: &Path, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let mut c = Command::new(BIN);
    common::emulator_env(&mut c, dir);
    let out = c
        .env("AWS_ENDPOINT_URL", moto.url())
        .arg("analyze")
        .arg(pcap("scenarios/mixed.pcap"))
        .args([
            "--json",
            "--metrics-sink",
            "stdout",
            "--detect",
            "--learning-period",
            "0",
        ])
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dimension_values(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["kind"] == "cloudwatch_put_metric_data")
        .flat_map(|r| r["MetricData"].as_array().cloned().unwrap_or_default())
        .flat_map(|d| d["Dimensions"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["Name"] == "DBInstanceIdentifier")
        .filter_map(|d| d["Value"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn discovered_instances_name_every_sink() {
    let moto = Moto::start();
    let dir = common::target_dir().join(format!("discover-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let endpoints = make_instances(&moto);
    let host = |id: &str| {
        endpoints
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("no {id} in {endpoints:?}"))
    };
    // The capture's servers: PostgreSQL on 198.51.100.10 and 2001:db8:100::10, MariaDB on
    // 198.51.100.11.
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "198.51.100.10 {pg}\n2001:db8:100::10 {pg}\n198.51.100.11 {my}\n",
            pg = host("orders-pg-1"),
            my = host("billing-mariadb-1")
        ),
    )
    .unwrap();
    let hosts_arg = hosts.display().to_string();

    let (ok, lines, err) = run(
        &moto,
        &dir,
        &["--discover", "rds", "--discover-hosts", &hosts_arg],
    );
    assert!(ok, "{err}");
    assert!(err.contains("orders-pg-1 at 198.51.100.10:5432"), "{err}");
    let dims = dimension_values(&lines);
    assert!(
        dims.contains("orders-pg-1") && dims.contains("billing-mariadb-1"),
        "{dims:?}"
    );
    // The discovered endpoints are named; what a scan probed elsewhere is not RDS's.
    for named in [
        "198.51.100.10:5432",
        "198.51.100.11:3306",
        "[2001:db8:100::10]:5432",
    ] {
        assert!(!dims.contains(named), "{named} unnamed: {dims:?}");
    }
    let findings: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "finding").collect();
    assert!(findings.len() > 5, "{} findings", findings.len());
    for f in &findings {
        let i = &f["resource"]["rds_db_instance_details"];
        let want = match i["address"].as_str().unwrap() {
            "198.51.100.11:3306" => ("billing-mariadb-1", "mariadb"),
            "198.51.100.10:5432" | "[2001:db8:100::10]:5432" => ("orders-pg-1", "postgres"),
            // Probed ports with no instance behind them.
            _ => continue,
        };
        assert_eq!(i["db_instance_identifier"], want.0, "{f}");
        assert_eq!(i["engine"], want.1, "{f}");
        if want.0 == "orders-pg-1" {
            assert_eq!(i["engine_version"], "15.4", "{f}");
            assert_eq!(i["tags"][0]["key"], "env", "{f}");
            assert!(
                i["db_instance_arn"]
                    .as_str()
                    .unwrap()
                    .contains(":db:orders-pg-1"),
                "{f}"
            );
        }
    }

    // Without discovery the same run names servers by their addresses.
    let (ok, lines, err) = run(&moto, &dir, &[]);
    assert!(ok, "{err}");
    assert!(dimension_values(&lines).contains("198.51.100.10:5432"));

    // A hosts file that is no hosts file stops the start, in one line.
    std::fs::write(&hosts, "not-an-address x\n").unwrap();
    let (ok, _, err) = run(
        &moto,
        &dir,
        &["--discover", "rds", "--discover-hosts", &hosts_arg],
    );
    assert!(!ok);
    assert!(
        err.contains("--discover-hosts") && err.contains("no address"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
