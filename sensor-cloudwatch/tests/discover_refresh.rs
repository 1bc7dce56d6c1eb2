//! A failover seen by discovery: the endpoint of `orders-pg-1` moves to another address (its
//! name now resolves elsewhere); within a refresh the new address is named and the old one
//! no longer is. On moto's RDS, with the refresher running as the agent runs it. Its own test
//! binary: it points this process's AWS environment at the emulator.

mod common;

use common::Moto;
use rds_sensor::aggregate::discovered;
use rds_sensor::cli::{CloudWatchArgs, Discover};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_failover_renames_within_a_refresh() {
    let moto = Moto::start();
    let dir = common::target_dir().join(format!("discover-refresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let python = common::moto_server().with_file_name("python");
    let script = r#"
import boto3, sys
c = boto3.client("rds", endpoint_url=sys.argv[1], region_name=sys.argv[2],
                 aws_access_key_id="testing", aws_secret_access_key="testing")
c.create_db_instance(DBInstanceIdentifier="orders-pg-1", Engine="postgres",
                     DBInstanceClass="db.t3.micro", Port=5432, MasterUsername="admin",
                     MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
print(c.describe_db_instances()["DBInstances"][0]["Endpoint"]["Address"])
"#;
    let out = Command::new(&python)
        .args(["-c", script, &moto.url(), common::REGION])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("10.0.3.17 {endpoint}\n")).unwrap();
    // SAFETY: this test binary has this one test: nothing else reads the environment now.
    unsafe { common::emulator_env_here(&moto, &dir) };
    let args = CloudWatchArgs {
        discover: Some(Discover::Rds),
        discover_interval: 1,
        discover_hosts: Some(hosts.clone()),
        ..CloudWatchArgs::default()
    };
    let cfg = sensor_cloudwatch::Config::from_args(&args).unwrap();
    let discovery = sensor_cloudwatch::discover::start(&args, &cfg)
        .unwrap()
        .expect("discovery runs");
    let name = |s: &str| discovered::get(s).map(|d| d.db_instance_identifier);
    assert_eq!(name("10.0.3.17:5432").as_deref(), Some("orders-pg-1"));
    assert_eq!(name("10.0.4.9:5432"), None);
    // The failover: the endpoint now resolves to the standby's address.
    std::fs::write(&hosts, format!("10.0.4.9 {endpoint}\n")).unwrap();
    common::wait_for("the refresh to name the new address", 10, || {
        name("10.0.4.9:5432").as_deref() == Some("orders-pg-1")
    });
    assert_eq!(
        name("10.0.3.17:5432"),
        None,
        "the old address is no longer named"
    );
    drop(discovery);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(&dir).unwrap();
}
