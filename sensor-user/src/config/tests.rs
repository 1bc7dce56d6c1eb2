use super::*;

fn err(text: &str) -> String {
    format!("{:#}", Config::parse(text).unwrap_err())
}

#[test]
fn the_printed_defaults_are_the_defaults() {
    let parsed = Config::parse(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, Config::default_with_cloudwatch());
    // And every key of the structs is in the printed file (a key missing from it would
    // still parse, so compare the key sets through a round trip).
    let printed: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    let full: toml::Table = toml::from_str(&toml::to_string(&parsed).unwrap()).unwrap();
    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = format!("{prefix}{k}");
            if let toml::Value::Table(t) = v {
                keys(t, &format!("{key}."), out);
            }
            out.push(key);
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys(&printed, "", &mut a);
    keys(&full, "", &mut b);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

impl Config {
    fn default_with_cloudwatch() -> Self {
        let mut c = Config::default();
        c.cloudwatch.insert("enabled".into(), false.into());
        c
    }
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
}

#[test]
fn unknown_keys_are_named_with_the_allowed_ones() {
    let e = err("[capture]\ninterfce = \"ens5\"\n");
    assert!(e.contains("unknown field `interfce`"), "{e}");
    assert!(e.contains("`interface`"), "{e}");
    let e = err("[nope]\n");
    assert!(
        e.contains("unknown field `nope`") && e.contains("`capture`"),
        "{e}"
    );
    let e = err("[detect.thresholds]\nbrute_force = 3\n");
    assert!(
        e.contains("unknown field `brute_force`") && e.contains("`brute_force_failures`"),
        "{e}"
    );
}

#[test]
fn bad_values_name_the_key_and_what_is_allowed() {
    let e = err("[capture]\nxdp_mode = \"fast\"\n");
    assert!(e.contains("xdp_mode") && e.contains("`native`"), "{e}");
    let e = err("[capture]\nring_size = \"big\"\n");
    assert!(
        e.contains("ring_size = \"big\"") && e.contains("expected u32"),
        "{e}"
    );
    let e = err("[capture]\nring_size = 5000\n");
    assert!(
        e.contains("capture.ring_size: 5000; allowed: a power of two"),
        "{e}"
    );
    let e = err("[capture]\npayload_cap = 9000\n");
    assert!(
        e.contains("capture.payload_cap: 9000; allowed: 0 to 4096"),
        "{e}"
    );
    let e = err("[capture]\npayload_cap = 100\ntail_cap = 200\n");
    assert!(e.contains("capture.tail_cap: 200"), "{e}");
    let e = err("[database]\nports = [\"5432\", \"70000\"]\n");
    assert!(
        e.contains("database.ports[1]") && e.contains("PORT=PROTOCOL"),
        "{e}"
    );
    let e = err("[database]\nports = [\"5432=db2\"]\n");
    assert!(
        e.contains("database.ports[0]") && e.contains("postgresql, mysql"),
        "{e}"
    );
    let e = err("[detect]\nallowed_cidrs = [\"10.0.0.0/33\"]\n");
    assert!(
        e.contains("detect.allowed_cidrs[0]") && e.contains("ADDRESS/LENGTH"),
        "{e}"
    );
    let e = err("[instances]\n\"orders\" = \"orders-db\"\n");
    assert!(
        e.contains("instances.\"orders\"") && e.contains("ADDRESS:PORT"),
        "{e}"
    );
    let e = err("[output]\nprometheus = \"0.0.0.0\"\n");
    assert!(
        e.contains("output.prometheus") && e.contains("127.0.0.1:9187"),
        "{e}"
    );
    let e = err("[output]\nsummary_interval_s = 0\n");
    assert!(
        e.contains("output.summary_interval_s: 0; allowed: 1 second"),
        "{e}"
    );
    let e = err("[limits]\nconnections = 0\n");
    assert!(e.contains("limits.connections: 0"), "{e}");
    let e = err("[detect.thresholds]\nstaging_factor = -1.0\n");
    assert!(e.contains("detect.thresholds.staging_factor"), "{e}");
    let e = err("[cloudwatch]\nenabled = \"yes\"\n");
    assert!(
        e.contains("cloudwatch.enabled") && e.contains("true or false"),
        "{e}"
    );
}

#[test]
fn a_full_file_parses() {
    let c = Config::parse(
        r#"
[capture]
interface = "ens5"
xdp_mode = "generic"
[database]
ports = ["15432=postgresql", "3306"]
[instances]
"10.0.3.17:5432" = "orders-db"
"[2001:db8::1]:5432" = "v6-db"
[detect]
allowed_cidrs = ["10.0.0.0/16"]
[detect.thresholds]
spray_users = 9
[redaction]
redact = false
[cloudwatch]
enabled = true
namespace = "Test"
period_s = 10
"#,
    )
    .unwrap();
    assert_eq!(c.capture.xdp_mode, XdpMode::Generic);
    assert_eq!(
        c.ports(),
        vec![
            (15432, sensor_common::proto::POSTGRES),
            (3306, sensor_common::proto::MYSQL)
        ]
    );
    assert_eq!(c.detect.thresholds.spray_users, 9);
    assert_eq!(c.detect.thresholds.brute_force_failures, 5);
    assert!(c.cloudwatch_enabled());
    assert_eq!(
        c.cloudwatch_settings().unwrap(),
        serde_json::json!({"namespace": "Test", "period_s": 10})
    );
    let r = c.reloadable();
    assert!(!r.redact);
    assert_eq!(r.allowed_cidrs.len(), 1);
    let mut d = c.clone();
    d.redaction.redact = true;
    d.detect.allowed_cidrs.clear();
    assert!(c.needs_restart(&d).is_empty());
    d.capture.xdp_mode = XdpMode::Native;
    assert_eq!(c.needs_restart(&d), vec!["capture"]);
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("rds-sensor-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[limits]\nfingerprints = 0\n").unwrap();
    let e = format!("{:#}", Config::load(&p).unwrap_err());
    assert!(
        e.contains("bad.toml") && e.contains("limits.fingerprints"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sighup_reload_reaches_the_pipeline_and_a_bad_file_changes_nothing() {
    use crate::{
        detect::{Detector, DetectorOptions},
        model::Clock,
        pipeline::{Pipeline, PipelineOptions},
        sinks::Collect,
    };
    let detector = Detector::new(DetectorOptions::default(), Clock::default()).unwrap();
    let mut p = Pipeline::new(
        PipelineOptions {
            detector: Some(detector),
            ..PipelineOptions::default()
        },
        Box::new(Collect::default()),
    );
    let dir = std::env::temp_dir().join(format!("rds-sensor-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("bad-ips.txt");
    std::fs::write(&list, "203.0.113.0/24\n").unwrap();
    let cfg = Config::parse(&format!(
        "[detect]\nallowed_cidrs = [\"10.0.0.0/8\"]\nmalicious_ips = [{:?}]\n[redaction]\nredact = false\n",
        list.display().to_string()
    ))
    .unwrap();
    p.reload(&cfg.reloadable()).unwrap();
    let mut bad = cfg.reloadable();
    bad.tor_exits = vec![dir.join("missing.txt")];
    let e = format!("{:#}", p.reload(&bad).unwrap_err());
    assert!(e.contains("missing.txt"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_memory_cap_sizes_the_bounded_structures_and_is_checked() {
    use super::{Limits, MemoryBudget};
    let none = MemoryBudget::of(&Limits::default());
    assert_eq!(none.queue_bytes, MemoryBudget::DEFAULT_QUEUE);
    assert_eq!(none.connections, Limits::default().connections);
    let capped = MemoryBudget::of(&Limits {
        memory_mib: 128,
        ..Limits::default()
    });
    assert_eq!(capped.queue_bytes, 32 << 20);
    assert_eq!(capped.held_bytes_total, 16 << 20);
    assert_eq!(capped.connections, (16 << 20) / super::CONNECTION_BYTES);
    assert_eq!(capped.flows, (8 << 20) / super::FLOW_BYTES);
    assert_eq!(none.flows, Limits::default().flow_entries as usize);
    // A share never raises a limit set lower.
    let low = MemoryBudget::of(&Limits {
        memory_mib: 4096,
        connections: 10,
        ..Limits::default()
    });
    assert_eq!(low.connections, 10);
    let e = err("[limits]\nmemory_mib = 16\n");
    assert!(
        e.contains("limits.memory_mib: 16; allowed: 0 (no cap) or 64 and more"),
        "{e}"
    );
    let e = err("[limits]\nmemory_mib = 64\n[capture]\nring_size = 33554432\n");
    assert!(
        e.contains("capture.ring_size: 32 MiB is more than a quarter of limits.memory_mib"),
        "{e}"
    );
}
