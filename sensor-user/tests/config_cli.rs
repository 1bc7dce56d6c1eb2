//! `--config` from the command line: the printed defaults, errors naming the key, and
//! switches overriding the file.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");

fn pcap(name: &str) -> String {
    format!("{}/../pcaps/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rds-sensor-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn kinds(stdout: &[u8], kind: &str) -> usize {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .count()
}

#[test]
fn print_default_is_a_valid_config_and_check_accepts_it() {
    let out = Command::new(BIN)
        .args(["config", "--print-default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[capture]") && text.contains("xdp_mode = \"auto\""));
    let p = file("default.toml", &text);
    let out = Command::new(BIN)
        .args(["config", "--check"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_file_stops_with_the_key() {
    let p = file("bad.toml", "[output]\njsn = true\n");
    let out = Command::new(BIN)
        .args(["analyze", &pcap("pg-queries.pcap"), "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("unknown field `jsn`") && err.contains("`json`"),
        "{err}"
    );
}

#[test]
fn the_file_applies_and_switches_win() {
    // The file: JSON output, and only a port nobody uses: no queries.
    let p = file(
        "ports.toml",
        "[database]\nports = [\"9999\"]\n[output]\njson = true\n",
    );
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["analyze", &pcap("pg-queries.pcap"), "--config"])
            .arg(&p)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let from_file = run(&[]);
    assert_eq!(kinds(&from_file, "query"), 0);
    assert_eq!(kinds(&from_file, "summary"), 1, "JSON from the file");
    let overridden = run(&["--port", "5432"]);
    assert!(kinds(&overridden, "query") > 0);
}

/// Issue 16: `rds-sensor demo` outside the repository failed with "listing pcaps: No such file
/// or directory", naming no path and no way out.
#[test]
fn issue_16_demo_outside_the_repository_names_the_path_and_the_switch() {
    let dir = std::env::temp_dir().join(format!("rds-sensor-elsewhere-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args(["demo", "--duration", "1", "--no-tui"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}", dir.join("pcaps").display())) && err.contains("--pcaps DIR"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
