//! Key logs shipped from beside an application to the sensor: the real `rds-sensor
//! keylog-forward` process, a receiver with a certificate a test CA (openssl) signed, a key log growing
//! line by line (the bundled capture's, test secrets). Every secret arrives; a wrong token and
//! a peer without TLS are refused and ship nothing; no output holds a secret.

mod common;

use common::test_ca;
use rds_sensor::keyship::receive::{ReceiverOptions, ReceiverStats, start};
use rds_sensor::session::tls::KeyStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");
const TOKEN: &str = "token-0123456789abcdef-test";

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-keyship-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn keylog() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps/pg-tls-keys.keys"),
    )
    .unwrap()
}

fn receiver(
    rt: &tokio::runtime::Runtime,
    c: &Path,
    k: &Path,
) -> (std::net::SocketAddr, KeyStore, Arc<ReceiverStats>) {
    let store = KeyStore::new(1000, None);
    let _g = rt.enter();
    let (addr, stats) = start(
        &ReceiverOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: c.to_path_buf(),
            key: k.to_path_buf(),
            tokens: vec![zeroize::Zeroizing::new(TOKEN.to_string())],
            client_ca: None,
        },
        store.clone(),
    )
    .unwrap();
    (addr, store, stats)
}

fn forwarder(
    file: &Path,
    to: std::net::SocketAddr,
    ca: &Path,
    token_file: &Path,
) -> std::process::Child {
    Command::new(BIN)
        .arg("keylog-forward")
        .arg("--file")
        .arg(file)
        .arg("--to")
        .arg(to.to_string())
        .arg("--ca")
        .arg(ca)
        .arg("--token-file")
        .arg(token_file)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_forwarder_ships_a_growing_key_log_and_wrong_peers_are_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let d = dir();
    let (ca, c, k) = test_ca(&d);
    let (addr, store, stats) = receiver(&rt, &c, &k);
    let tok = d.join("token");
    std::fs::write(&tok, format!("{TOKEN}\n")).unwrap();

    // Half the key log before the forwarder starts, the rest line by line after.
    let text = keylog();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let randoms: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let file = d.join("app.keys");
    let mut f = std::fs::File::create(&file).unwrap();
    let half = lines.len() / 2;
    for l in &lines[..half] {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    let mut child = forwarder(&file, addr, &ca, &tok);
    let t0 = Instant::now();
    wait_for("the first half", || {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
        }
        if let Ok(Some(_)) = child.try_wait() {
            let mut e = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut e).unwrap();
            panic!("the forwarder ended: {e}");
        }
        stats.lines.load(Ordering::Relaxed) >= half as u64
    });
    for l in &lines[half..] {
        // A line written in two parts: only whole lines are shipped.
        let (a, b) = l.split_at(l.len() / 2);
        write!(f, "{a}").unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        writeln!(f, "{b}").unwrap();
        f.flush().unwrap();
    }
    wait_for("every line", || {
        stats.lines.load(Ordering::Relaxed) >= lines.len() as u64
    });
    assert_eq!(store.len(), randoms.len());
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &lines {
        let secret = l.split_whitespace().nth(2).unwrap();
        assert!(!said.contains(secret), "the forwarder printed a secret");
    }
    assert!(!said.contains(TOKEN), "the forwarder printed its token");

    // A wrong token: refused, nothing stored, and the forwarder says so and stops.
    let (addr2, store2, stats2) = receiver(&rt, &c, &k);
    let bad = d.join("bad-token");
    std::fs::write(&bad, "not-the-token-0123456789\n").unwrap();
    let mut child = forwarder(&file, addr2, &ca, &bad);
    wait_for("the refused forwarder to stop", || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stats2.refused.load(Ordering::Relaxed), 1);
    assert!(store2.is_empty());

    // No TLS at all: refused, nothing stored.
    let mut tcp = std::net::TcpStream::connect(addr2).unwrap();
    let _ = tcp.write_all(format!("RDS-KEYLOG/1\nTOKEN {TOKEN}\n{}\n", lines[0]).as_bytes());
    wait_for("the plaintext peer refused", || {
        stats2.refused.load(Ordering::Relaxed) == 2
    });
    assert!(store2.is_empty());
    let _ = std::fs::remove_dir_all(&d);
}
