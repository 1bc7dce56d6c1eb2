//! SQL Server's TLS on real clients (pcaps/tds-tls-login.pcap: FreeTDS tsql and pytds, the
//! same sessions as pcaps/tds-clients.pcap, which tshark checks in `tshark_oracle.rs`):
//!
//! - login-only encryption (streams 0 and 1: the TLS handshake inside PRELOGIN packets, the
//!   LOGIN7 its only protected record, then plain TDS) decodes the queries without keys, and
//!   the login's outcome, with neither user nor database (they were inside TLS); with the key
//!   log the LOGIN7 is read too, and the login carries the TLS version and suite;
//! - full encryption (stream 2) decodes nothing without keys and everything with them.
//!
//! Ground truth outside the sensor: tshark for what is in the clear (the requests after the
//! login, the ClientHello randoms the key log names), and the plaintext capture of the same
//! client scripts for what is inside.

mod oracle;

use oracle::*;
use rds_sensor::model::{Outcome, Record, Undecryptable};

fn capture() -> std::path::PathBuf {
    pcap("tds-tls-login.pcap")
}

/// Per client address (each session has its own): logins, then (verb, fingerprint, rows).
type Sessions =
    std::collections::BTreeMap<String, (Vec<String>, Vec<(String, String, Option<u64>)>)>;

fn sessions(run: &SensorRun) -> Sessions {
    let mut out = Sessions::new();
    for r in &run.records {
        match r {
            Record::Login(l) => out
                .entry(l.endpoint.client.split(':').next().unwrap().to_string())
                .or_default()
                .0
                .push(format!(
                    "{:?} user={:?} db={:?} tls={} {:?} {:?}",
                    l.outcome, l.user, l.database, l.tls, l.tls_version, l.tls_suite
                )),
            Record::Query(q) => out
                .entry(q.endpoint.client.split(':').next().unwrap().to_string())
                .or_default()
                .1
                .push((q.verb.clone(), q.fingerprint.clone(), q.rows)),
            _ => {}
        }
    }
    out
}

/// The requests of the plaintext capture's sessions, which the TLS capture's repeat.
fn clear_queries() -> Vec<Vec<(String, String, Option<u64>)>> {
    let run = run_sensor(&pcap("tds-clients.pcap"));
    sessions(&run).into_values().map(|s| s.1).collect()
}

#[test]
fn login_only_tls_reads_queries_without_keys_and_the_login_with_them() {
    let p = capture();
    let clear = clear_queries();
    // Without keys, as `analyze` without a key log: a TLS layer that reads the clear
    // handshake and judges a session at its first protected record.
    let hold = rds_sensor::session::tls::Hold {
        bytes: 0,
        wait_ns: 0,
        total: 0,
    };
    let no_keys =
        rds_sensor::session::tls::layers(rds_sensor::session::tls::KeyStore::new(16, None), hold);
    let run = run_sensor_layers(&p, no_keys);
    let s = sessions(&run);
    let v: Vec<_> = s.values().collect();
    assert_eq!(
        v.len(),
        2,
        "two login-only sessions decode; the fully encrypted one does not: {s:?}"
    );
    for (i, (logins, queries)) in v.iter().enumerate() {
        assert_eq!(logins.len(), 1, "{logins:?}");
        assert!(
            logins[0].starts_with("Success user=None db=None tls=true Some(\"TLSv1.2\")"),
            "{logins:?}"
        );
        assert_eq!(
            queries, &clear[i],
            "session {i}: the same requests as in the clear capture"
        );
    }
    // With no TLS reader at all, the same.
    let bare = sessions(&run_sensor(&p));
    assert_eq!(
        bare.values().map(|s| &s.1).collect::<Vec<_>>(),
        s.values().map(|s| &s.1).collect::<Vec<_>>()
    );
    let tls: Vec<_> = run
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Tls(t) => Some(t.info.undecryptable),
            _ => None,
        })
        .collect();
    assert_eq!(tls, vec![Some(Undecryptable::NoKey); 3]);
    // With the key log: the LOGIN7s (and the whole third session) are read.
    let run = run_sensor_with(&p, &p.with_extension("keys"));
    let s = sessions(&run);
    let v: Vec<_> = s.values().collect();
    assert_eq!(v.len(), 3, "{s:?}");
    let users = ["u_freetds", "u_pytds", "u_freetds"];
    for (i, (logins, queries)) in v.iter().enumerate() {
        assert_eq!(
            logins,
            &vec![format!(
                "Success user=Some({:?}) db=Some(\"appdb\") tls=true Some(\"TLSv1.2\") Some(\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\")",
                users[i]
            )]
        );
        let want = &clear[if i == 2 { 0 } else { i }];
        assert_eq!(queries, want, "session {i}");
    }
    assert!(run.logins().iter().all(|l| l.outcome == Outcome::Success));
}

/// What tshark reads in the clear after login-only TLS is what the sensor reports, without
/// keys: every SQL batch's text, in order.
#[test]
fn requests_in_the_clear_after_the_login_match_tshark() {
    let p = capture();
    let want: Vec<String> = tshark_fields(&p, "tds.query")
        .into_iter()
        .filter(|q| !q.is_empty())
        .collect();
    assert_eq!(
        want.len(),
        2,
        "tsql's two batches after its login-only TLS: {want:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args(["analyze", "--json", "--no-redact"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "query" && v["verb"] != "ATTENTION")
        .filter_map(|v| v["query"].as_str().map(str::to_string))
        .filter(|q| want.contains(q))
        .collect();
    assert_eq!(got, want);
}

/// tshark's view of one field over a capture, one value per frame that has it.
fn tshark_fields(p: &std::path::Path, field: &str) -> Vec<String> {
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(p)
        .args(["-Y", "tds", "-T", "fields", "-e", field])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // tshark escapes a newline in a field.
        .map(|l| l.replace("\\n", "\n"))
        .collect()
}

/// The records of `analyze --json` on a capture, with extra switches.
fn analyze_records(p: &std::path::Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args(["analyze", "--json", "--no-redact"])
        .args(args)
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "query" || v["kind"] == "login")
        .collect()
}

/// With a payload cap far below the messages (64 bytes, 32 of them the tail), what the sensor
/// reports of the real clients' sessions is true of the full capture: every request is still
/// reported, at the same time, with the same latency, rows when it gives them, a fingerprint
/// that is the full one's start (marked cut), and every login with its outcome.
#[test]
fn capped_payloads_report_only_what_is_true() {
    let p = pcap("tds-clients.pcap");
    let full = analyze_records(&p, &[]);
    let capped = analyze_records(&p, &["--payload-cap", "64", "--tail-cap", "32"]);
    let of = |v: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        v.iter().filter(|r| r["kind"] == kind).cloned().collect()
    };
    let (fq, cq) = (of(&full, "query"), of(&capped, "query"));
    assert_eq!(cq.len(), fq.len(), "every request is reported");
    for (c, f) in cq.iter().zip(&fq) {
        let what = format!("{c}\nvs {f}");
        assert_eq!(c["ts"], f["ts"], "{what}");
        assert_eq!(c["client"], f["client"], "{what}");
        assert_eq!(c["latency_us"], f["latency_us"], "{what}");
        if !c["rows"].is_null() {
            assert_eq!(c["rows"], f["rows"], "{what}");
        }
        let cfp = c["fingerprint"].as_str().unwrap();
        let ffp = f["fingerprint"].as_str().unwrap();
        match cfp.strip_suffix(" …") {
            // The start of the statement, or (its statement past the cut) the procedure.
            Some(start) => assert!(
                ffp.starts_with(start) || (c["verb"] == "RPC" && !start.contains(' ')),
                "{what}"
            ),
            // An execution whose prepared statement's text was past the cut: the handle's
            // procedure, as for a statement prepared before the capture.
            None if c["prepared"] == true && !cfp.contains(' ') => {}
            None => assert_eq!(cfp, ffp, "{what}"),
        }
        let cv = c["verb"].as_str().unwrap();
        assert!(
            cv == f["verb"].as_str().unwrap()
                || matches!(cv, "SQL_BATCH" | "RPC")
                || (c["prepared"] == true && cv.starts_with("SP_")),
            "{what}"
        );
    }
    let (fl, cl) = (of(&full, "login"), of(&capped, "login"));
    assert_eq!(cl.len(), fl.len(), "every login is reported");
    for (c, f) in cl.iter().zip(&fl) {
        assert_eq!(c["outcome"], f["outcome"], "{c}\nvs {f}");
        assert!(c["user"].is_null() || c["user"] == f["user"], "{c}\nvs {f}");
    }
}
