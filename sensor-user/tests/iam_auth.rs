//! AWS IAM database authentication on real captures: pcaps/pg-iam.pcap and mysql-iam.pcap,
//! tokens made by botocore's presigner and sent inside TLS by pg8000 (a cleartext
//! PasswordMessage) and PyMySQL (`mysql_clear_password`, which MariaDB's PAM asked for).
//!
//! Ground truth is outside the sensor: tshark, decrypting with the key log, gives each
//! session's password as the client sent it; a password is a token when it is a presigned
//! `rds-db` connect URL, and `date` turns its own X-Amz-Date into a time, which with its
//! X-Amz-Expires and the frame's time says whether it had expired. The sensor must agree for
//! every login, never print a token (plain, hex, base64, or its signature, credential or
//! security token alone) in any mode, `--no-redact` included, and raise the IAM findings.

mod common;
mod oracle;

use common::{analyze_debug, base64, output_text};
use oracle::{hex_bytes, is_iam_token, pcap, run_sensor_with};
use rds_sensor::model::LoginRecord;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What a client sent as its password, as tshark decrypts it.
struct Sent {
    /// `ADDR:PORT` of the client (the inner one: the outer is the mirror's VXLAN).
    client: String,
    ts_ns: u64,
    password: Vec<u8>,
}

fn tshark_fields(pcap: &Path, keys: &Path, filter: &str, field: &str) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args(["-Y", filter, "-T", "fields", "-E", "separator=\t"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "frame.time_epoch",
        ])
        .args(["-e", field])
        .output()
        .expect("running tshark (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn epoch_ns(s: &str) -> u64 {
    let (sec, frac) = s.split_once('.').unwrap();
    sec.parse::<u64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}")[..9].parse::<u64>().unwrap()
}

/// Every password of the capture, by tshark.
fn sent(name: &str) -> Vec<Sent> {
    let (p, keys) = (pcap(name), pcap(name).with_extension("keys"));
    let (filter, field) = if name.starts_with("pg-") {
        ("pgsql.password", "pgsql.password")
    } else {
        (
            "mysql.auth_switch_response.data",
            "mysql.auth_switch_response.data",
        )
    };
    tshark_fields(&p, &keys, filter, field)
        .into_iter()
        .map(|f| {
            let password = if name.starts_with("pg-") {
                f[3].as_bytes().to_vec()
            } else {
                hex_bytes(&f[3])
            };
            Sent {
                client: format!("{}:{}", f[0].rsplit(',').next().unwrap(), f[1]),
                ts_ns: epoch_ns(&f[2]),
                password,
            }
        })
        .collect()
}

/// A query parameter of a token.
fn param<'a>(token: &'a str, key: &str) -> &'a str {
    token
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {token}"))
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`, by `date`.
fn date_s(amz: &str) -> u64 {
    let iso = format!(
        "{}-{}-{} {}:{}:{} UTC",
        &amz[0..4],
        &amz[4..6],
        &amz[6..8],
        &amz[9..11],
        &amz[11..13],
        &amz[13..15]
    );
    let out = Command::new("date")
        .args(["-u", "-d", &iso, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn check(name: &str, want_tokens: usize, want_expired: usize) -> Vec<String> {
    let sent = sent(name);
    let run = run_sensor_with(&pcap(name), &pcap(name).with_extension("keys"));
    let logins: BTreeMap<String, &LoginRecord> = run
        .logins()
        .into_iter()
        .map(|l| (l.endpoint.client.clone(), l))
        .collect();
    let (mut tokens, mut expired, mut all) = (0, 0, Vec::new());
    for s in &sent {
        let pw = String::from_utf8_lossy(&s.password)
            .trim_end_matches('\0')
            .to_string();
        let l = logins.get(&s.client).unwrap_or_else(|| {
            panic!("{name}: no login of {} (has {:?})", s.client, logins.keys())
        });
        if !is_iam_token(pw.as_bytes()) {
            assert_ne!(l.auth_method.as_deref(), Some("iam"), "{name} {}", s.client);
            assert!(l.iam_token.is_none(), "{name} {}", s.client);
            continue;
        }
        all.push(pw.clone());
        tokens += 1;
        assert_eq!(l.auth_method.as_deref(), Some("iam"), "{name} {}", s.client);
        let t = l.iam_token.as_ref().expect("token facts");
        let signed = date_s(param(&pw, "X-Amz-Date"));
        let expires = signed + param(&pw, "X-Amz-Expires").parse::<u64>().unwrap();
        assert_eq!(
            t.signed_at.ns(),
            signed * 1_000_000_000,
            "{name} {}",
            s.client
        );
        assert_eq!(
            t.expires_at.ns(),
            expires * 1_000_000_000,
            "{name} {}",
            s.client
        );
        let is_expired = s.ts_ns > expires * 1_000_000_000;
        assert_eq!(t.expired, is_expired, "{name} {}", s.client);
        expired += usize::from(is_expired);
        let scope = param(&pw, "X-Amz-Credential");
        assert_eq!(scope.split("%2F").nth(2), Some(t.region.as_str()));
        assert_eq!(t.service, "rds-db");
    }
    assert_eq!(
        (tokens, expired),
        (want_tokens, want_expired),
        "{name}: the capture's tokens (pcaps/README.md)"
    );
    all
}

#[test]
fn every_token_tshark_decrypts_is_an_iam_login_with_its_own_times() {
    check("pg-iam.pcap", 4, 1);
    check("mysql-iam.pcap", 2, 1);
}

fn analyze(pcap: &Path, args: &[&str]) -> String {
    output_text(&analyze_debug(pcap, args))
}

/// A token's leakable forms: whole (plain, hex, base64 at each alignment) and the parts that
/// are credentials on their own.
fn forms(token: &str) -> Vec<String> {
    let b = token.as_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let mut v = vec![token.to_string(), hex.to_uppercase(), hex];
    for skip in 0..3 {
        let tail = &b[skip..];
        v.push(base64(&tail[..tail.len() / 3 * 3]));
    }
    v.push(param(token, "X-Amz-Signature").to_string());
    v.push(param(token, "X-Amz-Credential").to_string());
    v.push("AKIAIOSFODNN7EXAMPLE".to_string());
    if token.contains("X-Amz-Security-Token=") {
        v.push(param(token, "X-Amz-Security-Token").to_string());
    }
    v
}

#[test]
fn no_token_is_ever_printed_even_without_redaction() {
    for (name, tokens, expired) in [("pg-iam.pcap", 4, 1), ("mysql-iam.pcap", 2, 1)] {
        let tokens = check(name, tokens, expired);
        let p = pcap(name);
        let keys = p.with_extension("keys");
        let keys = keys.to_str().unwrap();
        let detect = [
            "--detect",
            "--learning-period",
            "2",
            "--iam-required-cidr",
            "198.51.100.0/24",
        ];
        for (mode, args) in [
            ("json", vec!["--json"]),
            ("text", vec![]),
            ("json --detect", [&["--json"][..], &detect[..]].concat()),
            ("text --detect", detect.to_vec()),
            ("json --no-redact", vec!["--json", "--no-redact"]),
        ] {
            let args = [&["--tls-keylog", keys][..], &args[..]].concat();
            let out = analyze(&p, &args);
            assert!(
                out.contains("iam"),
                "{name} {mode}: no IAM login decoded, so nothing was checked:\n{out}"
            );
            for t in &tokens {
                for f in forms(t) {
                    assert!(!out.contains(&f), "{name} ({mode}): the output holds {f:?}");
                }
            }
        }
    }
}

#[test]
fn iam_findings_on_the_real_sessions() {
    let out = analyze(
        &pcap("pg-iam.pcap"),
        &[
            "--json",
            "--tls-keylog",
            pcap("pg-iam.keys").to_str().unwrap(),
            // Sessions 0 to 3 (the tokens) fall in the first two seconds; the static-password
            // session comes 3 s after them.
            "--learning-period",
            "2",
            "--iam-required-cidr",
            "198.51.100.22/32",
        ],
    );
    let mut got: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "finding")
        .map(|f| {
            (
                f["type"].as_str().unwrap().to_string(),
                f["severity_label"].as_str().unwrap().to_string(),
                f["service"]["action"]["rds_login_attempt_action"]["remote_ip_details"]["ip_address_v4"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    got.sort();
    let want = [
        // Session 3: the token signed 1200 s before its use, refused, from a private address.
        (
            "CredentialAccess:RDS/IamAuthentication.ExpiredToken",
            "Low",
            "198.51.100.21",
        ),
        // Session 4: u_iam, learned IAM-only, gets in with the static password ...
        (
            "CredentialAccess:RDS/IamAuthentication.StaticPassword",
            "High",
            "198.51.100.22",
        ),
        // ... from the network where IAM is required.
        (
            "Policy:RDS/IamAuthentication.Required",
            "Medium",
            "198.51.100.22",
        ),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want, "{out}");
}
