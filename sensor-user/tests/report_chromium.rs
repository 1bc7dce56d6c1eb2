//! `analyze --report`: the page renders in headless Chromium (Debian's `chromium`), with its
//! SVG plots and tables. Chromium is installed with apt when missing and we are root (CI:
//! Debian 12 as root); otherwise the test fails saying how to install it.

use std::{path::PathBuf, process::Command};

fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(|b| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {b}")])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            })
    };
    if let Some(p) = find() {
        return p;
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "headless Chromium is needed: run `sudo apt-get install -y chromium` (Debian) and rerun"
    );
    eprintln!("report_chromium: installing chromium with apt-get");
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "apt-get install chromium failed: install it and rerun");
    find().expect("chromium installed but not on PATH")
}

#[test]
fn report_renders_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("rds-sensor-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args(["analyze", "--detect", "--json", "--report"])
        .arg(&html)
        // Enough queries per server for every plot (a series with few draws none).
        .arg(root.join("pcaps/scenarios/mixed.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing fetched.
    assert!(!page.contains("src=\"http") && !page.contains("<script"));

    let dom = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<title>rds-sensor report"), "{dom}");
    let svgs = dom.matches("<svg").count();
    assert!(svgs >= 4, "{svgs} SVG plots");
    assert!(dom.contains("latency histogram") && dom.contains("percentiles over time"));
    assert!(
        dom.contains("<polyline") || dom.contains("<path"),
        "no plotted line"
    );
    for id in [
        "servers-table",
        "fingerprints-table",
        "logins-table",
        "capture",
        "slowest-table",
        "errors-table",
        "users-table",
        "clients-table",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no table {id}");
    }
    // The capture's server and a login row.
    assert!(dom.contains("198.51.100.10:5432"));
    assert!(dom.contains("<td>success</td>") || dom.contains("<td>failure</td>"));
    std::fs::remove_dir_all(&dir).ok();
}
