//! Issue 15, point 15: learning is visible. With `--detect`, anomaly findings wait for each
//! instance's learning period (two weeks by default); the summary (JSON and text) and the HTML
//! report say which instances are learning and until when, and a run without findings says
//! "No findings", not that findings need `--detect` (which it said before).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn analyze(args: &[&str], report: &Path) -> String {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/scenarios/benign.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .arg("analyze")
        .arg(&pcap)
        .arg("--report")
        .arg(report)
        .args(args)
        .output()
        .expect("rds-sensor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn learning_state_is_in_the_summary_and_the_report() {
    let dir = std::env::temp_dir().join(format!("rds-learning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("r.html");
    // --detect with the default learning period: every instance is learning.
    let json = analyze(&["--json", "--detect"], &report);
    let summary: Value = json
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "summary")
        .expect("a summary");
    let inst = summary["detect"]["instances"]
        .as_array()
        .expect("detect state");
    assert!(inst.len() >= 2, "{inst:?}");
    assert!(
        inst.iter()
            .all(|i| i["learning"] == true && i["users"].as_u64().unwrap() > 0)
    );
    assert_eq!(summary["detect"]["findings"], 0);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("No findings."), "the report says so");
    assert!(!html.contains("findings need --detect"));
    assert!(html.contains("learning: anomaly findings held back"));
    // Text mode says it too.
    let text = analyze(&["--detect"], &report);
    assert!(
        text.lines()
            .any(|l| l.starts_with("detect findings=0") && l.contains("anomaly findings held back")),
        "{text}"
    );
    // Without --detect the report still says what is needed, and the summary has no state.
    let json = analyze(&["--json"], &report);
    assert!(!json.contains("\"detect\":"));
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("findings need --detect")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
