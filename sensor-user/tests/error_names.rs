//! Errors as the records carry them: the code, the code's name and the server's message.
//! The names come from the servers' own lists as Debian installs them (PostgreSQL 15's
//! errcodes.txt, MariaDB Connector/C's mysqld_error.h): the tables in the sensor are compared
//! with those files. The messages are compared with tshark's reading of every bundled
//! capture (with `--no-redact`), and redacted they hide every quoted span and number.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ERRCODES: &str = "/usr/share/postgresql/15/errcodes.txt";
const MYSQLD_ERROR: &str = "/usr/include/mariadb/mysqld_error.h";

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| {
        panic!("{p}: {e} (cargo xtask test installs postgresql-15 and libmariadb-dev)")
    })
}

/// `rds-sensor analyze` with the records' error fields: (protocol, code, name, message).
fn errors(pcap: &Path, redact: bool) -> Vec<(String, String, Option<String>, Option<String>)> {
    let mut args = vec!["--json"];
    if !redact {
        args.push("--no-redact");
    }
    let out = common::analyze_debug(pcap, &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "query" || r["kind"] == "login")
        .filter_map(|r| {
            Some((
                r["protocol"].as_str()?.to_string(),
                r["error_code"].as_str()?.to_string(),
                r["error_name"].as_str().map(str::to_string),
                r["error_message"].as_str().map(str::to_string),
            ))
        })
        .collect()
}

#[test]
fn the_names_are_the_servers_own() {
    let mut pg = BTreeMap::new();
    for l in read(ERRCODES).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && f[0].len() == 5 && ["E", "W", "S"].contains(&f[1]) {
            pg.insert(f[0].to_string(), f[3].to_string());
        }
    }
    assert!(pg.len() > 200, "{ERRCODES}: {} codes", pg.len());
    let mut my = BTreeMap::new();
    for l in read(MYSQLD_ERROR).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3
            && f[0] == "#define"
            && f[1].starts_with("ER_")
            && let Ok(n) = f[2].parse::<u16>()
        {
            my.entry(n).or_insert_with(|| f[1].to_string());
        }
    }
    assert!(my.len() > 1000, "{MYSQLD_ERROR}: {} numbers", my.len());
    let ours_pg: BTreeMap<String, String> = rds_sensor::decode::postgres_error_names()
        .iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect();
    let ours_my: BTreeMap<u16, String> = rds_sensor::decode::mysql_error_names()
        .iter()
        .map(|(c, n)| (*c, n.to_string()))
        .collect();
    assert_eq!(ours_pg, pg, "PostgreSQL's names");
    assert_eq!(ours_my, my, "MariaDB's names");
}

/// (code, message) of every error tshark reads in a capture.
fn tshark_errors(pcap: &Path) -> Vec<(String, String)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-Y",
            "pgsql.code || mysql.error_code || tds.error.number",
            "-T",
            "json",
        ])
        .args([
            "-e",
            "pgsql.type",
            "-e",
            "pgsql.code",
            "-e",
            "pgsql.message",
        ])
        .args(["-e", "mysql.error_code", "-e", "mysql.error.message"])
        .args(["-e", "tds.error.number", "-e", "tds.error.msgtext"])
        .output()
        .expect("running tshark (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    let mut v = Vec::new();
    let strs = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for f in frames.as_array().into_iter().flatten() {
        let l = &f["_source"]["layers"];
        // PostgreSQL: codes and messages belong to the frame's Error and Notice messages, in order.
        let types: Vec<String> = strs(&l["pgsql.type"])
            .into_iter()
            .filter(|t| t == "Error" || t == "Notice")
            .collect();
        for ((t, c), m) in types
            .iter()
            .zip(strs(&l["pgsql.code"]))
            .zip(strs(&l["pgsql.message"]))
        {
            if t == "Error" {
                v.push((c, m));
            }
        }
        for (c, m) in strs(&l["mysql.error_code"])
            .into_iter()
            .zip(strs(&l["mysql.error.message"]))
        {
            v.push((c, m));
        }
        // One reply may carry several ERROR tokens; a record keeps the first.
        if let (Some(c), Some(m)) = (
            strs(&l["tds.error.number"]).first(),
            strs(&l["tds.error.msgtext"]).first(),
        ) {
            v.push((c.clone(), m.clone()));
        }
    }
    v.sort();
    v
}

fn captures() -> Vec<PathBuf> {
    let mut v = common::bundled_pcaps();
    v.extend(common::pcaps_in("regressions"));
    v.extend(common::pcaps_in("scenarios"));
    v
}

#[test]
fn messages_are_the_servers_and_redacted_by_default() {
    let mut compared = 0;
    let mut names = 0;
    for pcap in captures() {
        let theirs = tshark_errors(&pcap);
        let full = errors(&pcap, false);
        let mut ours: Vec<(String, String)> = full
            .iter()
            .filter_map(|(_, c, _, m)| Some((c.clone(), m.clone()?)))
            .collect();
        ours.sort();
        if pcap.to_string_lossy().contains("trunc") {
            // Frames cut by the mirror's PacketLength: tshark reads none of their messages,
            // the sensor what the cut kept.
            assert!(
                theirs.iter().all(|e| ours.contains(e)),
                "{}",
                pcap.display()
            );
        } else {
            assert_eq!(ours, theirs, "{}", pcap.display());
        }
        compared += ours.len();
        for (kind, code, name, _) in &full {
            // PostgreSQL's and MySQL's codes have names; SQL Server's numbers have none.
            let named = match kind.as_str() {
                "postgresql" => code.len() == 5,
                "mysql" => code.parse::<u16>().is_ok_and(|n| (1000..1700).contains(&n)),
                _ => false,
            };
            if named {
                assert!(
                    name.is_some(),
                    "{}: {kind} {code} has no name",
                    pcap.display()
                );
                names += 1;
            }
        }
        for (kind, code, _, m) in errors(&pcap, true) {
            if let Some(m) = m {
                assert!(
                    !m.contains(['\'', '"', '`']) && !m.bytes().any(|b| b.is_ascii_digit()),
                    "{}: {kind} {code}: not redacted: {m}",
                    pcap.display()
                );
            }
        }
    }
    assert!(compared >= 60, "{compared} messages compared");
    assert!(names >= 40, "{names} names");
}
