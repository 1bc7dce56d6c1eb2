//! The protocol decoders against an independent oracle: tshark's pgsql and mysql dissectors
//! over the bundled captures (see `oracle/mod.rs` for how expectations are derived). For every
//! capture: each query reported exactly once, paired with the right response (order per
//! connection), with the same error code and rows, and latency and first-byte latency equal to
//! the tshark-derived values within 1 µs; every login with its user, database, outcome, error
//! code and method; TLS sessions counted and not decoded.
//!
//! TLS: with the key log recorded beside a capture (pg-tls-keys, mysql-tls-keys), tshark
//! decrypts for the oracle (`-o tls.keylog_file:`) and the sensor for itself, and the same
//! checks hold inside TLS (logins also carry `tls`); a session whose keys are not in the log
//! must give nothing. Without a key log (pg-tls, mysql-tls) only that the session is TLS is
//! known: it must be counted, and no login or query may come from it. For every TLS session
//! the sensor's `tls` record gives tshark's version and suite.
//!
//! What tshark cannot tell, and so is not checked here: pg-queries-trunc128 (frames cut to 128 bytes: tshark cannot reassemble
//! them), for which the check is that what the sensor does report is true of the full capture.

mod oracle;

use oracle::*;

fn run(name: &str) {
    let p = pcap(name);
    assert!(p.exists(), "{} is missing", p.display());
    let (fails, summary) = check_capture(&p);
    report(&fails, &summary);
    assert!(fails.is_empty(), "{summary}\n{}", fails.join("\n"));
}

#[test]
fn oracle_pg_auth() {
    run("pg-auth.pcap");
}

#[test]
fn oracle_pg_queries() {
    run("pg-queries.pcap");
}

#[test]
fn oracle_pg_extended() {
    run("pg-extended.pcap");
}

#[test]
fn oracle_pg_plain_query() {
    run("pg-plain-query.pcap");
}

#[test]
fn oracle_pg_tls() {
    run("pg-tls.pcap");
}

fn run_keyed(name: &str) {
    let p = pcap(name);
    let keys = p.with_extension("keys");
    assert!(
        p.exists() && keys.exists(),
        "{} or its key log is missing",
        p.display()
    );
    let (fails, summary) = check_capture_with(&p, Some(&keys));
    report(&fails, &summary);
    assert!(fails.is_empty(), "{summary}\n{}", fails.join("\n"));
}

#[test]
fn oracle_pg_tls_keys() {
    run_keyed("pg-tls-keys.pcap");
}

#[test]
fn oracle_mysql_tls_keys() {
    run_keyed("mysql-tls-keys.pcap");
}

/// IAM tokens as passwords (a cleartext PasswordMessage; `mysql_clear_password` after an
/// AuthSwitchRequest): logins, refusals and queries as tshark reads them inside TLS.
#[test]
fn oracle_pg_iam() {
    run_keyed("pg-iam.pcap");
}

#[test]
fn oracle_mysql_iam() {
    run_keyed("mysql-iam.pcap");
}

/// IANA names of the suites in the bundled captures (RFC 8446 §B.4, RFC 5289, RFC 7905).
fn suite_name(id: u64) -> &'static str {
    match id {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => "unlisted",
    }
}

/// Every TLS session gets one `tls` record whose version, suite and SNI are tshark's, with
/// or without keys; it says `decrypted` exactly where tshark could decrypt with the same key
/// log, and `no_key` where it could not.
#[test]
fn tls_records_match_tshark_with_and_without_keys() {
    let mut checked = 0;
    let mut certs = 0;
    for (name, keyed) in [
        ("pg-tls.pcap", false),
        ("mysql-tls.pcap", false),
        ("pg-tls-keys.pcap", false),
        ("mysql-tls-keys.pcap", false),
        ("pg-tls-keys.pcap", true),
        ("mysql-tls-keys.pcap", true),
    ] {
        let p = pcap(name);
        let keys = p.with_extension("keys");
        let keylog = keyed.then_some(keys.as_path());
        let conns = connections_with(&p, keylog);
        let run = match keylog {
            Some(k) => run_sensor_with(&p, k),
            None => run_sensor_with(&p, &empty_keylog()),
        };
        let tls: Vec<_> = run
            .records
            .iter()
            .filter_map(|r| match r {
                rds_sensor::model::Record::Tls(t) => Some(t),
                _ => None,
            })
            .collect();
        for c in conns.values().filter(|c| c.tls) {
            let mine: Vec<_> = tls
                .iter()
                .filter(|t| t.endpoint.client == c.client && t.endpoint.server == c.server)
                .collect();
            assert_eq!(mine.len(), 1, "{name} {}: tls records {mine:?}", c.client);
            let t = &mine[0].info;
            let version = match c.tls_version {
                Some(0x0304) => "TLSv1.3",
                Some(0x0303) => "TLSv1.2",
                v => panic!("{name} {}: tshark's version {v:?}", c.client),
            };
            assert_eq!(t.version.as_deref(), Some(version), "{name} {}", c.client);
            assert_eq!(
                t.suite.as_deref(),
                c.tls_suite.map(suite_name),
                "{name} {}",
                c.client
            );
            assert_eq!(t.sni, c.sni, "{name} {}", c.client);
            // The certificate: where tshark could read it (TLS 1.2 in the clear, 1.3 with
            // the keys), the sensor too, with the same names, end and key.
            match (&c.cert, &t.certificate) {
                (None, None) => {}
                (Some(o), Some(m)) => {
                    let cn = |s: &str| s.strip_prefix("CN=").map(str::to_string);
                    assert_eq!(cn(&m.subject), o.subject_cn, "{name} {}", c.client);
                    assert_eq!(cn(&m.issuer), o.issuer_cn, "{name} {}", c.client);
                    assert_eq!(Some(&m.not_after), o.not_after.as_ref(), "{name}");
                    let curve = match o.curve.as_deref() {
                        Some("1.2.840.10045.3.1.7") => "EC P-256",
                        other => panic!("{name}: tshark's curve {other:?}"),
                    };
                    assert_eq!(m.key_type, curve, "{name} {}", c.client);
                    certs += 1;
                }
                (o, m) => panic!("{name} {}: tshark {o:?}, sensor {m:?}", c.client),
            }
            assert_eq!(t.decrypted, c.decrypted, "{name} {}: {t:?}", c.client);
            if !c.decrypted {
                assert_eq!(
                    t.undecryptable,
                    Some(rds_sensor::model::Undecryptable::NoKey),
                    "{name} {}",
                    c.client
                );
            }
            checked += 1;
        }
    }
    // 1 + 1 + 8 + 2 sessions, each twice for the keyed captures.
    assert_eq!(checked, 1 + 1 + 8 + 2 + 8 + 2);
    // Without keys: the three TLS 1.2 sessions of pg-tls-keys and the one of mysql-tls-keys;
    // with keys, every session but the one whose keys are absent.
    assert_eq!(certs, 3 + 1 + 7 + 2);
}

/// A key log with no line in it.
fn empty_keylog() -> std::path::PathBuf {
    let p = scratch("empty.keys");
    std::fs::write(&p, "").unwrap();
    p
}

#[test]
fn oracle_mysql_auth() {
    run("mysql-auth.pcap");
}

#[test]
fn oracle_mysql_queries() {
    run("mysql-queries.pcap");
}

#[test]
fn oracle_mysql_prepared() {
    run("mysql-prepared.pcap");
}

#[test]
fn oracle_mysql_tls() {
    run("mysql-tls.pcap");
}

/// SQL Server 2000 (TDS 7.1): PRELOGIN, a LOGIN7, a batch with a result set (public capture,
/// see pcaps/public/README.md).
#[test]
fn oracle_tds_login_sql2000() {
    run("public/tds-login-sql2000.pcap");
}

/// TDS 7.2+ RPCs (sp_prepexec, sp_execute, two sp_execute calls batched in one message,
/// sp_executesql, named procedures; an 8000-byte packet continued), batches, and requests
/// whose reply the capture does not hold (public capture).
#[test]
fn oracle_tds_rpc_requests() {
    run("public/tds-rpc-requests.pcap");
}

/// Real clients (FreeTDS tsql, pytds) against the xtask listener: PRELOGIN, LOGIN7 at TDS
/// 7.4, batches, sp_executesql / sp_prepare / sp_execute, transaction manager requests,
/// ATTENTION, a failed login (18456).
#[test]
fn oracle_tds_clients() {
    run("tds-clients.pcap");
}

/// A capture added to `pcaps/` must get an oracle test (or a reason not to).
#[test]
fn every_bundled_capture_is_checked() {
    let covered = [
        "pg-auth.pcap",
        "pg-queries.pcap",
        "pg-extended.pcap",
        "pg-plain-query.pcap",
        "pg-tls.pcap",
        "mysql-auth.pcap",
        "mysql-queries.pcap",
        "mysql-prepared.pcap",
        "mysql-tls.pcap",
        "pg-tls-keys.pcap",
        "mysql-tls-keys.pcap",
        "pg-iam.pcap",
        "mysql-iam.pcap",
        // tshark cannot reassemble cut frames: see truncated_capture_reports_only_true_figures.
        "pg-queries-trunc128.pcap",
        "tds-clients.pcap",
        // tshark cannot decrypt the TDS-wrapped handshake: see tests/tds_sessions.rs.
        "tds-tls-login.pcap",
        "public/tds-login-sql2000.pcap",
        "public/tds-rpc-requests.pcap",
    ];
    let mut missing = Vec::new();
    for dir in ["", "public/"] {
        for e in std::fs::read_dir(pcaps_dir().join(dir)).unwrap() {
            let n = format!("{dir}{}", e.unwrap().file_name().to_string_lossy());
            if (n.ends_with(".pcap") || n.ends_with(".pcapng")) && !covered.contains(&n.as_str()) {
                missing.push(n);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "captures without an oracle test: {missing:?}"
    );
}

/// The oracle itself: what it derives matches the facts pcaps/README.md states (counts checked
/// by `cargo xtask pcaps`), so a bug in the oracle cannot silently weaken the checks above.
#[test]
fn oracle_agrees_with_the_readme_facts() {
    let e = expectations(&pcap("pg-extended.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    // 42 Execute, none failed: 42 extended-protocol queries, each with its Parse text.
    let ext: Vec<_> = e
        .queries
        .iter()
        .filter(|q| q.prepared == Some(true))
        .collect();
    assert_eq!(ext.len(), 42);
    assert!(ext.iter().all(|q| q.text.is_some() && q.error.is_none()));
    // The pipeline client: 9 Executes answered in 3 chunks; Executes of one chunk share the
    // request frame, yet each gets its own completion.
    let pipe: Vec<_> = ext
        .iter()
        .filter(|q| q.client.starts_with("198.51.100.22:"))
        .collect();
    assert_eq!(pipe.len(), 9);
    assert!(pipe.windows(2).all(|w| w[0].end_ns <= w[1].end_ns));

    let e = expectations(&pcap("pg-auth.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    let codes: Vec<_> = e.logins.iter().filter_map(|l| l.error.clone()).collect();
    assert_eq!(codes, ["28P01", "3D000"]);
    assert_eq!(e.logins.len(), 6);
    assert_eq!(e.logins.iter().filter(|l| l.success).count(), 4);

    let e = expectations(&pcap("pg-queries.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    let errs: Vec<_> = e.queries.iter().filter_map(|q| q.error.clone()).collect();
    assert_eq!(errs, ["22012", "42601", "57014"]);
    assert!(e.queries.iter().any(|q| q.rows == Some(Some(5000))));
    assert_eq!(e.cancels.len(), 1);

    let e = expectations(&pcap("mysql-queries.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    let errs: Vec<_> = e.queries.iter().filter_map(|q| q.error.clone()).collect();
    assert!(errs.starts_with(&["1146".to_string(), "1064".to_string()]));
    assert!(e.queries.iter().any(|q| q.rows == Some(Some(5000))));
    // CALL two_results(): 3 + 1 rows over two result sets, then the final OK.
    let call = e
        .queries
        .iter()
        .find(|q| q.text.as_deref() == Some("CALL two_results()"))
        .expect("the CALL");
    assert_eq!(call.rows, Some(Some(4)));

    let e = expectations(&pcap("mysql-prepared.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    let exec: Vec<_> = e
        .queries
        .iter()
        .filter(|q| q.prepared == Some(true))
        .collect();
    assert_eq!(exec.len(), 6);
    assert!(exec.iter().all(|q| q.text.is_some()));
    let errs: Vec<_> = e.queries.iter().filter_map(|q| q.error.clone()).collect();
    assert_eq!(errs, ["1054"]);

    let e = expectations(&pcap("mysql-auth.pcap"));
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    let codes: Vec<_> = e.logins.iter().filter_map(|l| l.error.clone()).collect();
    assert!(codes.starts_with(&["1045".to_string(), "1049".to_string(), "1044".to_string()]));

    for (f, n) in [("pg-tls.pcap", 1), ("mysql-tls.pcap", 1)] {
        let e = expectations(&pcap(f));
        assert_eq!(e.tls.len(), n, "{f}");
        assert!(e.queries.is_empty() && e.logins.is_empty(), "{f}");
    }
}

/// pg-queries-trunc128 is pg-queries with every frame cut to 128 bytes (same frames and
/// timestamps). tshark cannot reassemble it, but the full capture's oracle says what is true:
/// every login must match; every query the sensor still reports must be a real query (same
/// connection and start) with exactly its latency, error and first byte, never a guess.
#[test]
fn truncated_capture_reports_only_true_figures() {
    let full = expectations(&pcap("pg-queries.pcap"));
    assert!(full.problems.is_empty(), "{:?}", full.problems);
    let run = run_sensor(&pcap("pg-queries-trunc128.pcap"));
    let mut fails = Vec::new();
    let mut exact = 0;
    for r in run.queries() {
        let Some(e) = full.queries.iter().find(|e| {
            e.client == r.endpoint.client
                && e.server == r.endpoint.server
                && e.ts_ns.abs_diff(r.ts.ns()) <= 1000
        }) else {
            fails.push(format!(
                "a query record at ts {} ({} `{}`) that is no request of pg-queries.pcap",
                r.ts, r.verb, r.fingerprint
            ));
            continue;
        };
        let mut d = Vec::new();
        if r.latency_us.abs_diff(e.latency_us()) > 1 {
            d.push(format!(
                "latency_us {}, true {}",
                r.latency_us,
                e.latency_us()
            ));
        }
        if let (Some(a), Some(b)) = (r.latency_first_byte_us, e.first_byte_us())
            && a.abs_diff(b) > 1
        {
            d.push(format!("latency_first_byte_us {a}, true {b}"));
        }
        if r.error_code.is_some() && r.error_code != e.error {
            d.push(format!("error_code {:?}, true {:?}", r.error_code, e.error));
        }
        if let (Some(got), Some(Some(want))) = (r.rows, e.rows)
            && got != want
        {
            d.push(format!("rows {got}, true {want}"));
        }
        if d.is_empty() {
            exact += 1;
        } else {
            fails.push(format!("{}: {}", e.what, d.join("; ")));
        }
    }
    let logins = run.logins();
    if logins.len() != full.logins.len() {
        fails.push(format!(
            "{} logins, the full capture has {}",
            logins.len(),
            full.logins.len()
        ));
    }
    for (r, e) in logins.iter().zip(full.logins.iter()) {
        if r.user != e.user
            || r.database != e.database
            || (r.outcome == rds_sensor::model::Outcome::Success) != e.success
        {
            fails.push(format!("login {r:?} differs from {e:?}"));
        }
    }
    eprintln!(
        "pg-queries-trunc128.pcap: {} of {} queries reported, {exact} with exact figures; {} differences",
        run.queries().len(),
        full.queries.len(),
        fails.len()
    );
    for f in &fails {
        eprintln!("  {f}");
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}
