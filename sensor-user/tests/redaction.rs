//! Secrets never leave: the real binary over every bundled capture that carries the known
//! password (`Sup3r-Secret-Pw!`, in clear in pg-auth.pcap) or the canary literal
//! (`canary-literal-4242`, see pcaps/README.md), in JSON and text mode, with and without
//! `--detect`, with logging at debug; stdout and stderr must hold neither secret, in plain, hex
//! or base64 form. The live path once: `rds-sensor run --json` on a veth pair while the captures
//! are replayed into it. And `--no-redact` does show the canary, so the search can fail.

mod common;

use common::*;
use rds_sensor::netns::VethPair;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");
const PASSWORD: &str = "Sup3r-Secret-Pw!";
const CANARY: &str = "canary-literal-4242";
/// SQL Server's LOGIN7 passwords in tds-clients.pcap and tds-tls-login.pcap (obfuscated on the
/// wire, not encrypted) and the wrong one of the failed login.
const TDS_PASSWORDS: [&str; 2] = ["Pa55-canary-tds", "Wr0ng-canary-tds"];

/// Every secret the outputs are searched for.
fn secrets() -> Vec<&'static str> {
    [PASSWORD, CANARY]
        .into_iter()
        .chain(TDS_PASSWORDS)
        .collect()
}

/// UTF-16LE, as SQL Server's protocol carries text.
fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// LOGIN7's password obfuscation (MS-TDS §2.2.6.4): each byte's nibbles swapped, then XOR
/// 0xA5 — reversible, so the obfuscated form is a secret too.
fn tds_obfuscated(s: &str) -> Vec<u8> {
    utf16(s).iter().map(|b| b.rotate_right(4) ^ 0xa5).collect()
}

/// The forms a secret could leak in: plain, hex (both cases), and base64 at each of the three
/// alignments it could have inside a longer encoded buffer (only the characters that depend on
/// the secret's bytes alone).
fn forms(secret: &str) -> Vec<String> {
    let mut v = vec![secret.to_string()];
    // The bytes as UTF-8, as UTF-16LE (TDS), and as LOGIN7 obfuscates them.
    for b in [
        secret.as_bytes().to_vec(),
        utf16(secret),
        tds_obfuscated(secret),
    ] {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        v.push(hex.clone());
        v.push(hex.to_uppercase());
        for skip in 0..3 {
            let tail = &b[skip..];
            let whole = tail.len() / 3 * 3;
            v.push(base64(&tail[..whole]));
        }
    }
    v
}

/// Panics if any form of either secret is in `text`.
fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        for f in forms(secret) {
            assert!(
                !text.contains(&f),
                "{what}: the output holds {secret:?} (as {f:?}):\n{}",
                text.lines()
                    .filter(|l| l.contains(&f))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

fn holds(path: &Path, needle: &[u8]) -> bool {
    let data = std::fs::read(path).unwrap();
    data.windows(needle.len()).any(|w| w == needle)
}

/// Every bundled capture (top level and scenarios/) whose bytes hold either secret.
fn secret_captures() -> Vec<PathBuf> {
    let mut all = bundled_pcaps();
    if let Ok(d) = std::fs::read_dir(pcaps_dir().join("scenarios")) {
        let mut s: Vec<PathBuf> = d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
            .collect();
        s.sort();
        all.extend(s);
    }
    all.retain(|p| {
        secrets()
            .iter()
            .any(|s| holds(p, s.as_bytes()) || holds(p, &utf16(s)) || holds(p, &tds_obfuscated(s)))
    });
    all
}

fn text(out: &Output) -> String {
    output_text(out)
}

fn analyze(pcap: &Path, args: &[&str]) -> Output {
    analyze_debug(pcap, args)
}

#[test]
fn analyze_never_prints_a_secret() {
    let pcaps = secret_captures();
    let names: Vec<String> = pcaps
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "pg-auth.pcap",
        "pg-queries.pcap",
        "pg-plain-query.pcap",
        "mysql-queries.pcap",
        "mysql-prepared.pcap",
        "tds-clients.pcap",
        "tds-tls-login.pcap",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} should carry a secret (found: {names:?})"
        );
    }
    let detect = ["--detect", "--allowed-cidr", "10.0.0.0/8"];
    for pcap in &pcaps {
        let name = pcap.file_name().unwrap().to_string_lossy();
        for (mode, args) in [
            ("json", vec!["--json"]),
            ("text", vec![]),
            ("json --detect", [&["--json"][..], &detect[..]].concat()),
            ("text --detect", detect.to_vec()),
        ] {
            let out = analyze(pcap, &args);
            let t = text(&out);
            assert!(
                !out.stdout.is_empty(),
                "{name} {mode}: no output at all, so nothing was checked"
            );
            assert_clean(&format!("{name} ({mode})"), &t);
        }
        // The record files hold what stdout would: searched too.
        let file = std::env::temp_dir().join(format!(
            "rds-sensor-redaction-{}-{name}.json",
            std::process::id()
        ));
        let file_arg = file.display().to_string();
        let args = [&["--quiet", "--record-file", &file_arg][..], &detect[..]].concat();
        analyze(pcap, &args);
        let written = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(
            !written.is_empty(),
            "{name}: an empty record file checks nothing"
        );
        assert_clean(&format!("{name} (--record-file)"), &written);
    }
}

#[test]
fn no_redact_shows_the_canary() {
    // The search above can fail: with --no-redact the literal is printed.
    for name in ["pg-queries.pcap", "mysql-queries.pcap", "tds-clients.pcap"] {
        let out = analyze(&pcaps_dir().join(name), &["--json", "--no-redact"]);
        assert!(
            text(&out).contains(CANARY),
            "{name}: --no-redact should show {CANARY}"
        );
    }
}

#[test]
fn live_run_never_prints_a_secret() {
    if !kernel_available("live_run_never_prints_a_secret") {
        return;
    }
    let pair = VethPair::new("rd").unwrap();
    let child = Command::new(BIN)
        .args([
            "run",
            "--iface",
            &pair.outside,
            "--json",
            "--summary-interval",
            "1",
            "--detect",
            "--allowed-cidr",
            "10.0.0.0/8",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_attached(&pair.outside);
    for name in [
        "pg-queries.pcap",
        "pg-auth.pcap",
        "mysql-prepared.pcap",
        "tds-clients.pcap",
    ] {
        pair.replay(&pcaps_dir().join(name), Some(5000)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"kind\":\"query\""),
        "the live run decoded queries: {stdout}"
    );
    assert_clean("live run --json", &text(&out));
}

/// The key log's secrets as they could leak: the hex the file holds (both cases), and the
/// raw bytes in base64 at each alignment.
fn key_forms(keylog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(keylog).unwrap();
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(secret) = line.split_whitespace().nth(2) else {
            continue;
        };
        let raw: Vec<u8> = (0..secret.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).unwrap())
            .collect();
        v.push(secret.to_lowercase());
        v.push(secret.to_uppercase());
        for skip in 0..3 {
            let tail = &raw[skip..];
            v.push(base64(&tail[..tail.len() / 3 * 3]));
        }
    }
    assert!(v.len() >= 3 * 5, "{}: no secrets read", keylog.display());
    v
}

/// Inside TLS too: with the key log, the sensor decrypts (so the canary literal and the
/// login are there to leak), and neither they nor any form of the key log's secrets reach
/// stdout or stderr, at debug, in any mode. `--no-redact` shows the canary decrypted, so the
/// search can fail.
#[test]
fn tls_with_key_logs_never_prints_a_secret_or_a_key() {
    let detect = ["--detect", "--allowed-cidr", "10.0.0.0/8"];
    // Each with a user whose login is only readable decrypted.
    for (name, user) in [
        ("pg-tls-keys.pcap", "u_tls"),
        ("mysql-tls-keys.pcap", "u_tls"),
        ("tds-tls-login.pcap", "u_freetds"),
    ] {
        let pcap = pcaps_dir().join(name);
        let keys = pcap.with_extension("keys");
        let keys_arg = keys.to_string_lossy().into_owned();
        let secrets = key_forms(&keys);
        for (mode, args) in [
            ("json", vec!["--json"]),
            ("text", vec![]),
            ("json --detect", [&["--json"][..], &detect[..]].concat()),
            ("text --detect", detect.to_vec()),
        ] {
            let args = [&["--tls-keylog", keys_arg.as_str()][..], &args[..]].concat();
            let out = analyze(&pcap, &args);
            let t = text(&out);
            assert!(
                t.contains("query") && t.contains(user),
                "{name} {mode}: nothing decrypted, so nothing was checked:\n{t}"
            );
            assert_clean(&format!("{name} ({mode})"), &t);
            for f in &secrets {
                assert!(
                    !t.contains(f.as_str()),
                    "{name} ({mode}): the output holds a key log secret (as {f:?})"
                );
            }
        }
        let out = analyze(&pcap, &["--json", "--no-redact", "--tls-keylog", &keys_arg]);
        assert!(
            text(&out).contains(CANARY),
            "{name}: --no-redact with the key log should show {CANARY}"
        );
    }
}
