//! moto, the AWS emulator, for the tests: installed into a venv under the target directory on
//! first use (`pip install 'moto[server]==5.2.5'`), started as `moto_server -H 127.0.0.1 -p N`
//! and killed when the guard drops. A test that cannot get moto fails, saying why.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const MOTO: &str = "moto[server]==5.2.5";
pub const REGION: &str = "us-east-1";

#[path = "../../../sensor-user/tests/common/venv.rs"]
mod venv;
#[allow(unused_imports)]
pub use venv::target_dir;

/// The `moto_server` of the test venv, installing it first if needed.
pub fn moto_server() -> PathBuf {
    let bin = venv::venv("moto-venv", MOTO).join("bin/moto_server");
    assert!(
        bin.is_file(),
        "{} missing after installing moto",
        bin.display()
    );
    bin
}

/// A running moto_server; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// On a port of its choosing.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> Self {
        let bin = moto_server();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = String::new();
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                        let p: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        if let Ok(p) = p.parse::<u16>() {
                            let _ = tx.send(Ok(p));
                            sent = true;
                        }
                    }
                }
                // Keep draining so moto never blocks on a full pipe.
            }
            if !sent {
                let _ = tx.send(Err(seen));
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(p)) => p,
            Ok(Err(out)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server exited without serving:\n{out}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not say which port it serves within 60 s");
            }
        };
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().expect("local address").port()
}

/// An SDK configuration for moto: fixed test credentials, region, endpoint.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_cloudwatch::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .build()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// SampleCount and Sum of a metric with exactly these dimensions' values (moto matches any
/// superset of the dimensions given), over all time.
pub async fn stats(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    dims: &[(&str, &str)],
) -> (f64, f64) {
    use aws_sdk_cloudwatch::{
        primitives::DateTime,
        types::{Dimension, Statistic},
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(
            dims.iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .start_time(DateTime::from_secs(946_684_800))
        .end_time(DateTime::from_secs(now + 3 * 86_400))
        .period(86_400)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetMetricStatistics {name}: {}",
                aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
            )
        });
    out.datapoints().iter().fold((0.0, 0.0), |(c, s), d| {
        (
            c + d.sample_count().unwrap_or(0.0),
            s + d.sum().unwrap_or(0.0),
        )
    })
}

/// Every message in a log group (all streams).
pub async fn log_messages(logs: &aws_sdk_cloudwatchlogs::Client, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let r = logs
            .filter_log_events()
            .log_group_name(group)
            .set_next_token(token)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "FilterLogEvents {group}: {}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                )
            });
        out.extend(
            r.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_string)),
        );
        match r.next_token() {
            Some(t) if !r.events().is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out
}

/// Every message in a log group, read with boto3 from moto's venv: log groups that an
/// EventBridge rule writes to get fractional timestamps from moto, which the Rust SDK refuses.
pub fn log_messages_boto3(endpoint: &str, group: &str) -> Vec<String> {
    let python = moto_server().with_file_name("python");
    let script = r#"
import boto3, json, sys
c = boto3.client("logs", endpoint_url=sys.argv[1], region_name=sys.argv[3],
                 aws_access_key_id="testing", aws_secret_access_key="testing")
out, kw = [], {"logGroupName": sys.argv[2]}
while True:
    r = c.filter_log_events(**kw)
    out += [e["message"] for e in r["events"]]
    if not r.get("nextToken") or not r["events"]:
        break
    kw["nextToken"] = r["nextToken"]
print(json.dumps(out))
"#;
    let out = Command::new(&python)
        .args(["-c", script, endpoint, group, REGION])
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "boto3 filter_log_events {group}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list of messages")
}

/// A child's AWS environment pointing at the emulator only: test credentials and region, no
/// instance metadata, no config or credentials file of the machine's (`dir` holds neither), no
/// profile, and no per-service endpoint left over from the caller's environment.
pub fn emulator_env<'c>(
    cmd: &'c mut std::process::Command,
    dir: &Path,
) -> &'c mut std::process::Command {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL_CLOUDWATCH")
        .env_remove("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
        .env_remove("AWS_ENDPOINT_URL_EVENTBRIDGE")
}

/// Polls `f` every 50 ms until it holds; fails after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// tests/mirror_world.py (boto3: the AWS side of the `aws mirror` tests) run against `moto`,
/// its JSON answer.
pub fn mirror_world(moto: &Moto, args: &[&str]) -> serde_json::Value {
    let python = moto_server().with_file_name("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mirror_world.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([moto.url().as_str(), REGION])
        .args(args)
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "mirror_world.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Points this process's AWS environment at the emulator only (what the agent's threads read),
/// as [`emulator_env`] does for a child.
///
/// # Safety
///
/// Nothing else may read or write the environment meanwhile: call it from a test binary's only
/// test, before any thread that does.
pub unsafe fn emulator_env_here(moto: &Moto, dir: &Path) {
    // SAFETY: the caller's contract.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ENDPOINT_URL", moto.url());
        std::env::set_var("AWS_CONFIG_FILE", dir.join("no-config"));
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"));
    }
}
