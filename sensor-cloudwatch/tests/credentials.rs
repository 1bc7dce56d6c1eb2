//! Without AWS credentials the AWS sinks stop at once with one line that says what to set
//! (issue 16: it was 36 lines of the SDK's retries, then a summary of data "not delivered").
//! The binary runs with an empty environment: no keys, no profile, no config files, no
//! instance metadata.

use std::process::Command;

#[test]
fn missing_credentials_are_one_line_before_anything_runs() {
    let home = std::env::temp_dir().join(format!("no-aws-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let pcap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/pg-queries.pcap");
    for sink in ["--cloudwatch", "--securityhub"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rds-sensor-cloudwatch"))
            .arg("analyze")
            .arg(&pcap)
            .args(["--json", sink])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &home)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sink}: must fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{sink}: one line:\n{stderr}");
        assert!(
            lines[0].contains("no AWS credentials") && lines[0].contains("AWS_ACCESS_KEY_ID"),
            "{sink}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{sink}: nothing analyzed first");
    }
    let _ = std::fs::remove_dir_all(&home);
}
