//! The agent's `--mirror-reconcile FILE`: the first pass mirrors the instances before the
//! pipeline starts; a failover later (the endpoint moves to a new interface, the old one is
//! deleted) is followed within an interval, as the agent runs it, on moto's EC2 and RDS. Its
//! own test binary: it points this process's AWS environment at the emulator. The binary's
//! `analyze --mirror-reconcile` checks that the switch reaches the reconciler.

mod common;

use common::Moto;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn world(moto: &Moto, args: &[&str]) -> Value {
    common::mirror_world(moto, args)
}

fn sessions(moto: &Moto) -> BTreeSet<String> {
    world(moto, &["state"])["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["eni"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_agent_follows_a_failover_within_an_interval() {
    let moto = Moto::start();
    let dir = common::target_dir().join(format!("mirror-reconcile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = world(&moto, &["setup"]);
    let inst = |i: &str, k: &str| setup["instances"][i][k].as_str().unwrap().to_string();
    let hosts = dir.join("hosts");
    let write_hosts = |pg_ip: &str| {
        std::fs::write(
            &hosts,
            format!(
                "{pg_ip} {}\n{} {}\n",
                inst("orders-pg", "endpoint"),
                inst("shop-my", "ip"),
                inst("shop-my", "endpoint")
            ),
        )
        .unwrap()
    };
    write_hosts(&inst("orders-pg", "ip"));
    let spec = dir.join("mirror.toml");
    std::fs::write(
        &spec,
        format!(
            "instances = [\"orders-pg\", \"shop-my\"]\ntarget_eni = \"{}\"\nhosts = \"{}\"\ninterval_s = 1\n",
            setup["sensor_eni"].as_str().unwrap(),
            hosts.display()
        ),
    )
    .unwrap();

    // The binary: `analyze` with the switch runs the first pass before the capture.
    let mut c = Command::new(env!("CARGO_BIN_EXE_rds-sensor-cloudwatch"));
    common::emulator_env(&mut c, &dir);
    let out = c
        .env("AWS_ENDPOINT_URL", moto.url())
        .arg("analyze")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/pg-queries.pcap"))
        .arg("--mirror-reconcile")
        .arg(&spec)
        .arg("--json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // moto has no filter-rule calls: the agent says so and goes on.
    assert!(
        err.contains("CreateTrafficMirrorFilterRule: HTTP 500"),
        "{err}"
    );
    let pg = inst("orders-pg", "eni");
    let my = inst("shop-my", "eni");
    assert_eq!(sessions(&moto), BTreeSet::from([pg.clone(), my.clone()]));

    // In this process, as the agent runs it.
    // SAFETY: this test binary has this one test: nothing else reads the environment now.
    unsafe { common::emulator_env_here(&moto, &dir) };
    let cfg = sensor_cloudwatch::Config::default();
    let r = sensor_cloudwatch::mirror::start(Some(&spec), &cfg)
        .unwrap()
        .expect("reconciling");
    assert_eq!(r.passes(), 1);
    let moved: String = serde_json::from_value(world(&moto, &["move", &pg, "10.0.1.77"])).unwrap();
    write_hosts("10.0.1.77");
    common::wait_for("the reconciler to follow the failover", 30, || {
        sessions(&moto) == BTreeSet::from([my.clone(), moved.clone()])
    });
    drop(r);

    // A spec that names nothing stops the start in one line.
    std::fs::write(&spec, "target_eni = \"eni-1\"\n").unwrap();
    let e = format!(
        "{:#}",
        sensor_cloudwatch::mirror::start(Some(&spec), &cfg)
            .err()
            .expect("refused")
    );
    assert!(
        e.contains("--mirror-reconcile") && e.contains("nothing to mirror"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
