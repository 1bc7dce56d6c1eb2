//! `rds-sensor aws mirror plan|apply|reconcile` against moto's EC2 and RDS. The world (a VPC,
//! two RDS instances with the interfaces RDS would make for them, the sensor's interface) is
//! made and read back with boto3 (tests/mirror_world.py), a client other than the one under
//! test; the endpoints resolve through a hosts file the test controls.
//!
//! moto 5.2.5 lacks the filter-rule calls (CreateTrafficMirrorFilterRule answers 500), so every
//! `apply` here fails on exactly those and makes everything else: the test checks both. The
//! rules themselves are proven by the planner's unit tests (src/mirror/tests.rs); every flag
//! `plan` prints is checked against botocore's model of the EC2 API, the one `aws ec2` reads.

mod common;

use common::Moto;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor-cloudwatch");

fn world(moto: &Moto, args: &[&str]) -> Value {
    common::mirror_world(moto, args)
}

struct Env {
    moto: Moto,
    dir: PathBuf,
    hosts: PathBuf,
    setup: Value,
}

impl Env {
    fn new(tag: &str) -> Self {
        let moto = Moto::start();
        let dir = common::target_dir().join(format!("mirror-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let setup = world(&moto, &["setup"]);
        let hosts = dir.join("hosts");
        let env = Self {
            moto,
            dir,
            hosts,
            setup,
        };
        env.point("orders-pg", env.ip("orders-pg"));
        env
    }

    fn ip(&self, inst: &str) -> &str {
        self.setup["instances"][inst]["ip"].as_str().unwrap()
    }

    fn eni(&self, inst: &str) -> String {
        self.setup["instances"][inst]["eni"]
            .as_str()
            .unwrap()
            .into()
    }

    fn sensor_eni(&self) -> &str {
        self.setup["sensor_eni"].as_str().unwrap()
    }

    /// The hosts file: `inst`'s endpoint at `ip`, the other where setup put it.
    fn point(&self, inst: &str, ip: &str) {
        let mut text = String::new();
        for (name, i) in self.setup["instances"].as_object().unwrap() {
            let at = if name == inst { ip } else { self.ip(name) };
            text += &format!("{at} {}\n", i["endpoint"].as_str().unwrap());
        }
        std::fs::write(&self.hosts, text).unwrap();
    }

    fn mirror(&self, action: &str, extra: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        common::emulator_env(&mut c, &self.dir);
        c.env("AWS_ENDPOINT_URL", self.moto.url())
            .args(["aws", "mirror", action])
            .args(["--instance", "orders-pg", "--instance", "shop-my"])
            .args(["--target-eni", self.sensor_eni()])
            .arg("--hosts")
            .arg(&self.hosts)
            .args(extra)
            .output()
            .unwrap()
    }

    fn state(&self) -> Value {
        world(&self.moto, &["state"])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The `aws ec2 …` lines of an output (`ok ID: ` taken off).
fn calls(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("failed: ").unwrap_or(l);
            let l = match l.split_once(": aws ec2 ") {
                Some((ok, rest)) if ok.starts_with("ok ") => format!("aws ec2 {rest}"),
                _ => l.to_string(),
            };
            l.starts_with("aws ec2 ").then_some(l)
        })
        .collect()
}

fn count(lines: &[String], op: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with(&format!("aws ec2 {op} ")))
        .count()
}

fn sessions_on(state: &Value) -> BTreeSet<String> {
    state["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["eni"].as_str().unwrap().to_string())
        .collect()
}

/// moto lacks exactly the filter-rule calls: an apply there fails on those, and only those.
fn only_rules_failed(stdout: &str, stderr: &str, rules: usize) {
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    assert_eq!(failed.len(), rules, "{stdout}");
    assert!(
        failed
            .iter()
            .all(|l| l.contains("create-traffic-mirror-filter-rule")),
        "{stdout}"
    );
    assert!(
        stdout.contains("CreateTrafficMirrorFilterRule: HTTP 500 with no AWS error in its body"),
        "{stdout}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains(&format!("{rules} of ")),
        "one line: {stderr}"
    );
}

#[test]
fn plan_apply_reconcile_follow_a_failover() {
    let env = Env::new("cli");
    let pg = env.eni("orders-pg");
    let my = env.eni("shop-my");

    // plan: the calls, and nothing made.
    let o = env.mirror("plan", &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let planned = calls(&out);
    assert_eq!(count(&planned, "create-traffic-mirror-target"), 1, "{out}");
    assert_eq!(count(&planned, "create-traffic-mirror-filter"), 1);
    assert_eq!(
        count(&planned, "create-traffic-mirror-filter-rule"),
        4,
        "in and out for 5432 and 3306"
    );
    assert_eq!(count(&planned, "create-traffic-mirror-session"), 2);
    for (eni, inst) in [(&pg, "orders-pg"), (&my, "shop-my")] {
        assert!(
            planned
                .iter()
                .any(|l| l.contains(&format!("--network-interface-id {eni} "))
                    && l.contains(&format!("Value={inst}}}"))),
            "a session for {inst} on {eni}: {out}"
        );
    }
    // The interface of the other VPC at orders-pg's address is not taken for it.
    assert!(out.contains("2 instances, 2 interfaces"), "{out}");
    let s = env.state();
    assert_eq!(
        (
            s["targets"].as_array().unwrap().len(),
            s["filters"].as_array().unwrap().len(),
            s["sessions"].as_array().unwrap().len()
        ),
        (0, 0, 0),
        "plan makes nothing"
    );

    // Every flag printed is one `aws ec2` takes (botocore's model of the EC2 API).
    let model = world(&env.moto, &["flags"]);
    for line in &planned {
        let mut words = line.split_whitespace().skip(2);
        let op: String = words
            .next()
            .unwrap()
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        let members = model[&op]
            .as_array()
            .unwrap_or_else(|| panic!("{op} is no EC2 operation"));
        for flag in line.split_whitespace().filter_map(|w| w.strip_prefix("--")) {
            let member: String = flag
                .split('-')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            assert!(
                members.iter().any(|m| m == &member),
                "{op} takes no --{flag}: {line}"
            );
        }
    }

    // apply: everything moto has is made; the rules are refused, each named.
    let o = env.mirror("apply", &[]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    only_rules_failed(&out, &err, 4);
    let s = env.state();
    let target = &s["targets"][0];
    assert_eq!(s["targets"].as_array().unwrap().len(), 1);
    assert_eq!(target["eni"], env.sensor_eni());
    assert_eq!(target["tags"]["rds-sensor:mirror"], "rds-sensor");
    let filter = &s["filters"][0];
    assert_eq!(s["filters"].as_array().unwrap().len(), 1);
    assert_eq!(filter["tags"]["rds-sensor:mirror"], "rds-sensor");
    assert_eq!(sessions_on(&s), BTreeSet::from([pg.clone(), my.clone()]));
    for sess in s["sessions"].as_array().unwrap() {
        assert_eq!(sess["target"], target["id"]);
        assert_eq!(sess["filter"], filter["id"]);
        assert_eq!(sess["number"], 1);
        let inst = if sess["eni"] == pg.as_str() {
            "orders-pg"
        } else {
            "shop-my"
        };
        assert_eq!(sess["tags"]["rds-sensor:instance"], inst);
    }
    // The created ids replace $TARGET and $FILTER in what apply says.
    assert!(
        out.contains(&format!(
            "--traffic-mirror-target-id {} --traffic-mirror-filter-id {}",
            target["id"].as_str().unwrap(),
            filter["id"].as_str().unwrap()
        )),
        "{out}"
    );

    // Again: idempotent. Only the rules moto could not keep are asked for again.
    let o = env.mirror("apply", &[]);
    let (out, err) = text(&o);
    only_rules_failed(&out, &err, 4);
    let again = calls(&out);
    assert_eq!(again.len(), 4, "{out}");
    assert_eq!(env.state()["sessions"], s["sessions"]);
    assert_eq!(env.state()["targets"], s["targets"]);

    // A packet length asked for later: the sessions are modified, not made again.
    let o = env.mirror("apply", &["--packet-length", "256"]);
    let (out, _) = text(&o);
    assert_eq!(
        count(&calls(&out), "modify-traffic-mirror-session"),
        2,
        "{out}"
    );
    let s = env.state();
    assert!(
        s["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["packet_length"] == 256)
    );

    // Failover: orders-pg's endpoint moves to a new interface; the old one is deleted.
    let moved: String =
        serde_json::from_value(world(&env.moto, &["move", &pg, "10.0.1.77"])).unwrap();
    env.point("orders-pg", "10.0.1.77");
    let o = env.mirror("apply", &["--packet-length", "256"]);
    let (out, _) = text(&o);
    assert_eq!(count(&calls(&out), "create-traffic-mirror-session"), 1);
    assert!(
        out.contains(&format!("--network-interface-id {moved} ")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "on {pg} mirrors no chosen instance's interface any more"
        )),
        "apply keeps the old session, and says so: {out}"
    );
    assert_eq!(
        sessions_on(&env.state()),
        BTreeSet::from([pg.clone(), my.clone(), moved.clone()])
    );
    let o = env.mirror("reconcile", &["--packet-length", "256"]);
    let (out, _) = text(&o);
    assert_eq!(
        count(&calls(&out), "delete-traffic-mirror-session"),
        1,
        "{out}"
    );
    assert_eq!(
        sessions_on(&env.state()),
        BTreeSet::from([my.clone(), moved.clone()])
    );
}

#[test]
fn what_cannot_be_done_is_said_before_any_call() {
    let env = Env::new("refusals");
    let run = |args: &[&str]| {
        let mut c = Command::new(BIN);
        common::emulator_env(&mut c, &env.dir);
        let o = c
            .env("AWS_ENDPOINT_URL", env.moto.url())
            .args(["aws", "mirror"])
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run(&["plan", "--instance", "orders-pg"]);
    assert!(e.contains("no mirror target"), "{e}");
    let e = run(&[
        "plan",
        "--target-eni",
        "eni-1",
        "--port",
        "1",
        "--port",
        "2",
        "--port",
        "3",
        "--port",
        "4",
        "--port",
        "5",
        "--port",
        "6",
        "--instance",
        "x",
    ]);
    assert!(e.contains("at most 10"), "{e}");
    let e = run(&[
        "apply",
        "--instance",
        "no-such-db",
        "--target-eni",
        env.sensor_eni(),
        "--hosts",
        env.hosts.to_str().unwrap(),
        "--port",
        "5432",
    ]);
    assert!(e.contains("problem"), "{e}");
    let s = env.state();
    assert_eq!(s["sessions"].as_array().unwrap().len(), 0);
}
