//! The detector on synthetic records: severity rules, learning, patterns, intel, persistence,
//! deduplication.

use super::*;
use crate::model::{
    Endpoint, FlowEnd, FlowRecord, LoginRecord, Outcome, Protocol, Purpose, QueryRecord, Record,
    Timestamp,
};

const SRV: &str = "198.51.100.10:5432";
const APP: &str = "198.51.100.20";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-detect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ep(client: &str, port: u16) -> Endpoint {
    let client = if client.contains(':') {
        format!("[{client}]:{port}")
    } else {
        format!("{client}:{port}")
    };
    Endpoint::from_text(&client, SRV, None, Protocol::Postgres)
}

/// Seconds of record time → ns (the default clock has offset 0: wall = ts).
fn t(s: u64) -> u64 {
    1_700_000_000 * NS + s * NS
}

struct L<'a> {
    ip: &'a str,
    port: u16,
    user: &'a str,
    ok: bool,
    at: u64,
    auth: &'a str,
    app: &'a str,
    db: &'a str,
    tls: bool,
}

impl Default for L<'_> {
    fn default() -> Self {
        Self {
            ip: APP,
            port: 40000,
            user: "app",
            ok: true,
            at: 0,
            auth: "scram-sha-256",
            app: "orders-api",
            db: "appdb",
            tls: false,
        }
    }
}

fn login(l: L<'_>) -> Record {
    Record::Login(LoginRecord {
        ts: Timestamp(t(l.at)),
        endpoint: ep(l.ip, l.port),
        user: Some(l.user.into()),
        database: Some(l.db.into()),
        application: Some(l.app.into()),
        outcome: if l.ok {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        error_code: (!l.ok).then(|| "28P01".into()),
        error_name: None,
        error_message: None,
        tls: l.tls,
        tls_version: None,
        tls_suite: None,
        auth_method: Some(l.auth.into()),
        server_version: None,
        client_host: None,
        client_library: None,
        iam_token: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn query(
    ip: &str,
    port: u16,
    user: &str,
    sql_fp: &str,
    verb: &str,
    rows: u64,
    bytes: u64,
    at: u64,
) -> Record {
    Record::Query(QueryRecord {
        ts: Timestamp(t(at)),
        endpoint: ep(ip, port),
        user: Some(user.into()),
        database: Some("appdb".into()),
        verb: verb.into(),
        fingerprint: sql_fp.into(),
        query: None,
        rows: Some(rows),
        error_code: None,
        error_name: None,
        error_message: None,
        bytes_request: 60,
        bytes_response: bytes,
        latency_first_byte_us: None,
        latency_us: 100,
        prepared: false,
        tag: None,
    })
}

fn flow(ip: &str, port: u16, at: u64, payload_to_server: u64, end: FlowEnd) -> Record {
    Record::Flow(FlowRecord {
        ts: Timestamp(t(at)),
        endpoint: ep(ip, port),
        first_seen: Timestamp(t(at)),
        last_seen: Timestamp(t(at)),
        duration_us: 1000,
        packets_to_server: 3,
        packets_to_client: 2,
        bytes_to_server: 180 + payload_to_server,
        bytes_to_client: 120,
        payload_bytes_to_server: payload_to_server,
        payload_bytes_to_client: 0,
        syn: 1,
        syn_ack: 1,
        fin_to_server: u64::from(end == FlowEnd::Fin),
        fin_to_client: u64::from(end == FlowEnd::Fin),
        rst: u64::from(end == FlowEnd::Rst),
        truncated: 0,
        end,
        purpose: Purpose::Session,
    })
}

fn detector(learning_s: u64, f: impl FnOnce(&mut DetectorOptions)) -> Detector {
    let mut o = DetectorOptions {
        learning_period_s: learning_s,
        update_every_s: 60,
        ..DetectorOptions::default()
    };
    f(&mut o);
    Detector::new(o, Clock::default()).unwrap()
}

fn feed(d: &mut Detector, recs: impl IntoIterator<Item = Record>) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in recs {
        d.observe(&r, &mut out);
    }
    out
}

fn types(fs: &[Finding]) -> Vec<&'static str> {
    let mut v: Vec<&str> = fs.iter().map(|f| f.finding_type).collect();
    v.sort();
    v.dedup();
    v
}

fn find(fs: &[Finding], k: FindingType) -> &Finding {
    fs.iter()
        .rev()
        .find(|f| f.finding_type == k.name())
        .unwrap_or_else(|| panic!("no {} in {:?}", k.name(), types(fs)))
}

/// 100 s of normal application traffic: logins from the app network, SELECT/INSERT/UPDATE.
fn learn_app(d: &mut Detector) {
    let mut recs = Vec::new();
    for i in 0..50u64 {
        let port = 40000 + i as u16;
        let ip = if i % 2 == 0 { APP } else { "198.51.100.21" };
        recs.push(login(L {
            ip,
            port,
            at: i * 2,
            ..L::default()
        }));
        recs.push(query(
            ip,
            port,
            "app",
            "select * from orders where id = ?",
            "SELECT",
            1 + i % 20,
            400,
            i * 2,
        ));
        recs.push(query(
            ip,
            port,
            "app",
            "insert into orders values (?+)",
            "INSERT",
            1,
            20,
            i * 2,
        ));
        recs.push(query(
            ip,
            port,
            "app",
            "update orders set state = ? where id = ?",
            "UPDATE",
            1,
            20,
            i * 2,
        ));
        recs.push(flow(ip, port, i * 2, 900, FlowEnd::Fin));
    }
    // One health checker that connects and closes, and one typo.
    recs.push(flow("198.51.100.5", 50000, 10, 0, FlowEnd::Fin));
    recs.push(login(L {
        port: 41000,
        ok: false,
        at: 20,
        ..L::default()
    }));
    assert!(
        feed(d, recs).is_empty(),
        "nothing is reported while learning"
    );
}

#[test]
fn benign_traffic_after_learning_reports_nothing() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let mut recs = Vec::new();
    for i in 0..50u64 {
        let port = 45000 + i as u16;
        let at = 200 + i * 3;
        recs.push(login(L {
            port,
            at,
            ..L::default()
        }));
        recs.push(query(
            APP,
            port,
            "app",
            "select * from orders where id = ?",
            "SELECT",
            5,
            400,
            at,
        ));
        recs.push(query(
            APP,
            port,
            "app",
            "update orders set state = ? where id = ?",
            "UPDATE",
            1,
            20,
            at,
        ));
        recs.push(flow(APP, port, at, 900, FlowEnd::Fin));
    }
    recs.push(flow("198.51.100.5", 50001, 300, 0, FlowEnd::Fin));
    recs.push(login(L {
        port: 46000,
        ok: false,
        at: 310,
        ..L::default()
    }));
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    assert!(out.is_empty(), "{:?}", types(&out));
}

#[test]
fn anomalous_login_severity_private_public_and_after_public_failures() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    // A private network never used by `app`: Low.
    let out = feed(
        &mut d,
        [login(L {
            ip: "10.9.9.9",
            at: 200,
            ..L::default()
        })],
    );
    let f = find(&out, FindingType::AnomalousSuccessfulLogin);
    assert_eq!(f.severity_label, "Low");
    assert_eq!(f.severity, 2.0);
    assert!(
        f.description
            .contains("first login of app from network 10.9.9.0/24"),
        "{}",
        f.description
    );
    // A public one: Medium.
    let out = feed(
        &mut d,
        [login(L {
            ip: "45.155.205.33",
            at: 210,
            ..L::default()
        })],
    );
    assert_eq!(
        find(&out, FindingType::AnomalousSuccessfulLogin).severity_label,
        "Medium"
    );
    // After failed logins as `app` from (other) public addresses: High.
    let mut recs: Vec<Record> = (0..5)
        .map(|i| {
            login(L {
                ip: "185.199.1.10",
                port: 42000 + i,
                ok: false,
                at: 220 + u64::from(i),
                ..L::default()
            })
        })
        .collect();
    recs.push(login(L {
        ip: "93.184.216.34",
        at: 230,
        ..L::default()
    }));
    let out = feed(&mut d, recs);
    let f = find(&out, FindingType::AnomalousSuccessfulLogin);
    assert_eq!(f.severity_label, "High");
    assert_eq!(f.severity, 8.0);
    assert!(
        f.evidence
            .reasons
            .iter()
            .any(|r| r.contains("5 failed logins")),
        "{:?}",
        f.evidence.reasons
    );
    // The failures themselves: unusual (unknown network), Low.
    assert_eq!(
        find(&out, FindingType::AnomalousFailedLogin).severity_label,
        "Low"
    );
    // Failures from private addresses do not make it High.
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let mut recs: Vec<Record> = (0..6)
        .map(|i| {
            login(L {
                ip: "10.1.1.1",
                port: 42000 + i,
                ok: false,
                at: 220 + u64::from(i),
                ..L::default()
            })
        })
        .collect();
    recs.push(login(L {
        ip: "10.2.2.2",
        at: 230,
        ..L::default()
    }));
    assert_eq!(
        find(&feed(&mut d, recs), FindingType::AnomalousSuccessfulLogin).severity_label,
        "Low"
    );
}

#[test]
fn unusual_application_and_database_are_reasons() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let out = feed(
        &mut d,
        [login(L {
            app: "psql",
            db: "postgres",
            at: 200,
            ..L::default()
        })],
    );
    let f = find(&out, FindingType::AnomalousSuccessfulLogin);
    assert!(
        f.evidence
            .reasons
            .iter()
            .any(|r| r.contains("application `psql`"))
    );
    assert!(
        f.evidence
            .reasons
            .iter()
            .any(|r| r.contains("database postgres"))
    );
    // 198.51.100.0/24 never reached `postgres`: a new edge too.
    assert_eq!(find(&out, FindingType::NewClientEdge).severity_label, "Low");
    let u = f.resource.rds_db_user_details.as_ref().unwrap();
    assert_eq!(
        (u.user.as_str(), u.application.as_str(), u.database.as_str()),
        ("app", "psql", "postgres")
    );
    assert_eq!(u.ssl, "false");
    assert_eq!(u.auth_method, "scram-sha-256");
}

#[test]
fn brute_force_ending_in_success() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let ip = "45.155.205.77";
    let mut recs: Vec<Record> = (0..8)
        .map(|i| {
            login(L {
                ip,
                port: 43000 + i,
                ok: false,
                at: 200 + u64::from(i),
                ..L::default()
            })
        })
        .collect();
    recs.push(login(L {
        ip,
        port: 43100,
        at: 210,
        ..L::default()
    }));
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let f = find(&out, FindingType::SuccessfulBruteForce);
    assert_eq!(f.severity_label, "High");
    assert_eq!(f.service.count, 1);
    let la = &f.service.action.rds_login_attempt_action.login_attributes;
    assert_eq!(la.len(), 1);
    assert_eq!(
        (la[0].failed_login_attempts, la[0].successful_login_attempts),
        (8, 1)
    );
    assert_eq!(
        f.service
            .action
            .rds_login_attempt_action
            .remote_ip_details
            .ip_address_v4
            .as_deref(),
        Some(ip)
    );
    assert_eq!(
        find(&out, FindingType::AnomalousSuccessfulLogin).severity_label,
        "High"
    );
    // The failed logins fold into one finding whose count is 8.
    let failed: Vec<&Finding> = out
        .iter()
        .filter(|f| f.finding_type == FindingType::AnomalousFailedLogin.name())
        .collect();
    assert_eq!(failed.first().unwrap().service.count, 1);
    assert_eq!(failed.last().unwrap().service.count, 8);
    assert_eq!(failed.first().unwrap().id, failed.last().unwrap().id);
    // Brute force also fires while learning (a pattern, not an anomaly).
    let mut d = detector(1_000_000, |_| {});
    let mut recs: Vec<Record> = (0..5)
        .map(|i| {
            login(L {
                ip,
                port: 43000 + i,
                ok: false,
                at: u64::from(i),
                ..L::default()
            })
        })
        .collect();
    recs.push(login(L {
        ip,
        port: 43100,
        at: 10,
        ..L::default()
    }));
    assert_eq!(
        types(&feed(&mut d, recs)),
        vec![FindingType::SuccessfulBruteForce.name()]
    );
    // Four failures are not enough.
    let mut d = detector(1_000_000, |_| {});
    let mut recs: Vec<Record> = (0..4)
        .map(|i| {
            login(L {
                ip,
                port: 43000 + i,
                ok: false,
                at: u64::from(i),
                ..L::default()
            })
        })
        .collect();
    recs.push(login(L {
        ip,
        port: 43100,
        at: 10,
        ..L::default()
    }));
    assert!(feed(&mut d, recs).is_empty());
}

/// Issue 15, point 7: failures from one address count across users (GuardDuty's rule), so
/// three as a user that does not exist and three as `root`, then `root` gets in, is a
/// successful brute force (before: none, each user under the threshold).
#[test]
fn issue_15_brute_force_across_users() {
    let mut d = detector(1_000_000, |_| {});
    let ip = "45.155.205.78";
    let mut recs: Vec<Record> = Vec::new();
    for (i, user) in [
        "root_nope",
        "root_nope",
        "root_nope",
        "root",
        "root",
        "root",
    ]
    .iter()
    .enumerate()
    {
        recs.push(login(L {
            ip,
            port: 43000 + i as u16,
            user,
            ok: false,
            at: i as u64,
            ..L::default()
        }));
    }
    recs.push(login(L {
        ip,
        port: 43100,
        user: "root",
        at: 20,
        ..L::default()
    }));
    let out = feed(&mut d, recs);
    let f = find(&out, FindingType::SuccessfulBruteForce);
    assert_eq!(f.severity_label, "High");
    assert!(
        f.description
            .contains("after 6 failed logins (3 as root_nope, 3 as root)"),
        "{}",
        f.description
    );
    // Once told, the same failures do not make a second finding at the next login.
    let again = feed(
        &mut d,
        [login(L {
            ip,
            port: 43200,
            user: "root",
            at: 30,
            ..L::default()
        })],
    );
    assert!(
        !types(&again).contains(&FindingType::SuccessfulBruteForce.name()),
        "{:?}",
        types(&again)
    );
}

/// Issue 15, point 8: a sprayed login that succeeds before the spray is recognised still
/// makes the spraying finding High, and its description says so.
#[test]
fn issue_15_spraying_that_succeeds_early_is_high() {
    let mut d = detector(1_000_000, |_| {});
    let ip = "203.0.113.67";
    let steps = [
        ("admin", false),
        ("postgres", false),
        ("backup", true),
        ("root", false),
        ("app", false),
        ("oracle", false),
    ];
    let recs: Vec<Record> = steps
        .iter()
        .enumerate()
        .map(|(i, (user, ok))| {
            login(L {
                ip,
                port: 44000 + i as u16,
                user,
                ok: *ok,
                at: i as u64,
                ..L::default()
            })
        })
        .collect();
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let f = find(&out, FindingType::CredentialSpraying);
    assert_eq!(f.severity_label, "High");
    assert!(
        f.description.contains("logged in as backup"),
        "{}",
        f.description
    );
    assert!(f.evidence.users.contains(&"backup".to_string()));
}

#[test]
fn credential_spraying() {
    let mut d = detector(1_000_000, |_| {});
    let users = ["admin", "postgres", "root", "app", "backup"];
    let recs: Vec<Record> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            login(L {
                ip: "203.0.113.66",
                port: 44000 + i as u16,
                user: u,
                ok: false,
                at: i as u64,
                ..L::default()
            })
        })
        .collect();
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let f = find(&out, FindingType::CredentialSpraying);
    assert_eq!(f.severity_label, "Medium");
    let mut users = f.evidence.users.clone();
    users.sort();
    assert_eq!(users, vec!["admin", "app", "backup", "postgres", "root"]);
    assert_eq!(f.service.count, 2);
    // A success during the spray: High.
    let mut out = feed(
        &mut d,
        [login(L {
            ip: "203.0.113.66",
            port: 44100,
            user: "backup",
            at: 20,
            ..L::default()
        })],
    );
    d.finish(&mut out);
    assert_eq!(
        find(&out, FindingType::CredentialSpraying).severity_label,
        "High"
    );
}

/// Whether a connection was a PostgreSQL CancelRequest is the decoder's word, not a guess from
/// its byte counts: a cancel is no probe, and a 16-byte probe is one.
#[test]
fn a_cancel_request_is_no_probe_and_sixteen_bytes_are_no_cancel() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let mut cancel = flow("10.7.7.7", 60010, 203, 16, FlowEnd::Fin);
    if let Record::Flow(f) = &mut cancel {
        f.purpose = Purpose::Cancel;
    }
    let out = feed(
        &mut d,
        [cancel, flow("10.9.9.9", 60011, 204, 16, FlowEnd::Fin)],
    );
    let probes: Vec<&str> = out
        .iter()
        .filter(|f| f.finding_type == FindingType::PortProbe.name())
        .map(|f| f.description.as_str())
        .collect();
    assert!(
        !probes.iter().any(|p| p.starts_with("10.7.7.7")),
        "{probes:?}"
    );
    assert!(
        probes.iter().any(|p| p.starts_with("10.9.9.9")),
        "{probes:?}"
    );
}

#[test]
fn probes_after_learning_but_not_from_learned_health_checkers() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let mut recs = vec![
        // The health checker's network probed while learning: quiet.
        flow("198.51.100.5", 50002, 200, 0, FlowEnd::Fin),
        // Half-open scan from a public address, connect scan from a private one.
        flow("45.155.205.90", 60000, 201, 0, FlowEnd::Rst),
        flow("45.155.205.90", 60001, 202, 0, FlowEnd::Rst),
        flow("10.7.7.7", 60002, 203, 8, FlowEnd::Fin),
        // A connection still open at the end of the capture is not a probe.
        flow("10.8.8.8", 60003, 204, 0, FlowEnd::EndOfCapture),
    ];
    // A real session whose login the sensor did not see (TLS): not a probe, a new edge.
    recs.push(flow("10.6.6.6", 60004, 205, 2400, FlowEnd::Fin));
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let probes: Vec<&Finding> = out
        .iter()
        .filter(|f| f.finding_type == FindingType::PortProbe.name())
        .collect();
    let public = probes
        .iter()
        .rev()
        .find(|f| f.description.starts_with("45.155.205.90"))
        .unwrap();
    assert_eq!(public.severity_label, "Medium");
    assert_eq!(public.service.count, 2);
    assert_eq!(public.evidence.connections, Some(2));
    assert_eq!(public.evidence.flow_ends, vec!["rst"]);
    let private = probes
        .iter()
        .find(|f| f.description.starts_with("10.7.7.7"))
        .unwrap();
    assert_eq!(private.severity_label, "Low");
    assert!(
        !probes
            .iter()
            .any(|f| f.description.starts_with("198.51.100.5"))
    );
    assert!(!probes.iter().any(|f| f.description.starts_with("10.8.8.8")));
    let edge = find(&out, FindingType::NewClientEdge);
    assert!(
        edge.description.contains("10.6.6.0/24"),
        "{}",
        edge.description
    );
    // A flow that had a login is never a probe.
    let mut d = detector(0, |_| {});
    let out = feed(
        &mut d,
        [
            login(L {
                ip: "10.5.5.5",
                port: 1,
                ok: false,
                ..L::default()
            }),
            flow("10.5.5.5", 1, 1, 0, FlowEnd::Fin),
        ],
    );
    assert!(!types(&out).contains(&FindingType::PortProbe.name()));
}

#[test]
fn threat_lists_fire_during_learning() {
    let dir = tmpdir("intel");
    let (mal, tor) = (dir.join("malicious.txt"), dir.join("tor.txt"));
    std::fs::write(&mal, "# bad\n45.155.205.0/24\nnot an address\n").unwrap();
    std::fs::write(&tor, "185.220.101.7\n2001:db8:7::/48\n").unwrap();
    let mut d = detector(1_000_000, |o| {
        o.malicious_lists = vec![mal.clone()];
        o.tor_lists = vec![tor.clone()];
    });
    let out = feed(
        &mut d,
        [
            login(L {
                ip: "45.155.205.33",
                at: 1,
                ..L::default()
            }),
            login(L {
                ip: "45.155.205.34",
                ok: false,
                at: 2,
                ..L::default()
            }),
            flow("45.155.205.35", 1, 3, 0, FlowEnd::Rst),
            login(L {
                ip: "185.220.101.7",
                at: 4,
                ..L::default()
            }),
            login(L {
                ip: "2001:db8:7::9",
                ok: false,
                at: 5,
                ..L::default()
            }),
            flow("185.220.101.7", 2, 6, 0, FlowEnd::Fin),
        ],
    );
    let sev = |k: FindingType| find(&out, k).severity_label;
    assert_eq!(sev(FindingType::MaliciousIpSuccessfulLogin), "High");
    assert_eq!(sev(FindingType::MaliciousIpFailedLogin), "Medium");
    assert_eq!(sev(FindingType::MaliciousIpDiscovery), "Medium");
    assert_eq!(sev(FindingType::TorSuccessfulLogin), "High");
    assert_eq!(sev(FindingType::TorFailedLogin), "Medium");
    assert_eq!(sev(FindingType::TorDiscovery), "Medium");
    let r = &find(&out, FindingType::TorFailedLogin)
        .service
        .action
        .rds_login_attempt_action
        .remote_ip_details;
    assert_eq!(r.ip_address_v6.as_deref(), Some("2001:db8:7::9"));
    assert!(
        r.threat_lists[0].starts_with("tor:2001:db8:7::/48"),
        "{:?}",
        r.threat_lists
    );
    assert_eq!(types(&out).len(), 6, "{:?}", types(&out));
    // The lists are reloaded when they change.
    std::fs::write(&tor, "185.220.101.8\n").unwrap();
    for l in &mut d.tor.0 {
        l.reload_if_changed();
    }
    let out = feed(
        &mut d,
        [login(L {
            ip: "185.220.101.8",
            at: 10,
            ..L::default()
        })],
    );
    assert_eq!(types(&out), vec![FindingType::TorSuccessfulLogin.name()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weak_authentication_and_allowed_networks() {
    let mut d = detector(1_000_000, |o| {
        o.allowed = vec!["198.51.100.0/24".parse().unwrap()];
    });
    let out = feed(
        &mut d,
        [
            login(L {
                user: "u_md5",
                auth: "md5",
                at: 1,
                ..L::default()
            }),
            login(L {
                user: "u_clear",
                auth: "cleartext",
                at: 2,
                ..L::default()
            }),
            login(L {
                user: "u_tls",
                auth: "cleartext",
                tls: true,
                at: 3,
                ..L::default()
            }),
            login(L {
                user: "u_scram",
                at: 4,
                ..L::default()
            }),
        ],
    );
    assert_eq!(
        find(&out, FindingType::Md5Authentication).severity_label,
        "Low"
    );
    assert_eq!(
        find(&out, FindingType::CleartextAuthentication).severity_label,
        "Medium"
    );
    assert_eq!(
        out.len(),
        2,
        "TLS hides the method; SCRAM is fine: {:?}",
        types(&out)
    );
    let out = feed(
        &mut d,
        [
            login(L {
                ip: "203.0.113.50",
                ok: false,
                at: 5,
                ..L::default()
            }),
            flow("203.0.113.51", 7, 6, 0, FlowEnd::Rst),
        ],
    );
    let f = find(&out, FindingType::OutsideAllowedNetworks);
    assert_eq!(f.severity_label, "Medium");
    // A successful login from there: the same finding (same address), raised to High.
    let mut out = feed(
        &mut d,
        [login(L {
            ip: "203.0.113.50",
            at: 7,
            ..L::default()
        })],
    );
    assert!(
        out.is_empty(),
        "a repeat within the update interval is not emitted at once"
    );
    d.finish(&mut out);
    let f = out
        .iter()
        .find(|f| f.description.starts_with("203.0.113.50"))
        .unwrap();
    assert_eq!(f.severity_label, "High");
    assert_eq!(f.service.count, 2);
}

#[test]
fn privilege_drift() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let out = feed(
        &mut d,
        [
            login(L {
                port: 47000,
                at: 200,
                ..L::default()
            }),
            query(
                APP,
                47000,
                "app",
                "select * from orders where id = ?",
                "SELECT",
                1,
                300,
                201,
            ),
            query(
                APP,
                47000,
                "app",
                "delete from orders where id > ?",
                "DELETE",
                30,
                20,
                202,
            ),
        ],
    );
    let f = find(&out, FindingType::PrivilegeDrift);
    assert_eq!(f.severity_label, "Medium");
    assert_eq!(f.evidence.statement_classes, vec!["DELETE"]);
    let u = f.resource.rds_db_user_details.as_ref().unwrap();
    assert_eq!(
        (u.application.as_str(), u.auth_method.as_str()),
        ("orders-api", "scram-sha-256")
    );
    assert_eq!(
        f.evidence.fingerprints,
        vec!["delete from orders where id > ?"]
    );
    let out = feed(
        &mut d,
        [
            query(APP, 47000, "app", "drop table orders", "DROP", 0, 20, 203),
            query(
                APP,
                47000,
                "app",
                "grant all on orders to public",
                "GRANT",
                0,
                20,
                204,
            ),
        ],
    );
    assert!(out.is_empty(), "updates wait for the update interval");
    let mut out = Vec::new();
    d.finish(&mut out);
    let f = find(&out, FindingType::PrivilegeDrift);
    assert_eq!(f.severity_label, "High");
    assert_eq!(f.service.count, 3);
    assert_eq!(
        f.evidence.statement_classes,
        vec!["DELETE", "DROP TABLE", "GRANT"]
    );
    assert!(
        f.recommended_response
            .iter()
            .any(|r| r.contains("least privilege"))
    );
}

#[test]
fn data_staging_per_query_and_per_window() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    // A known fingerprint read 20 rows at most; a dump of 50 000 rows is staging.
    let out = feed(
        &mut d,
        [query(
            APP,
            48000,
            "app",
            "select * from orders where id = ?",
            "SELECT",
            50_000,
            3_000_000,
            200,
        )],
    );
    let f = find(&out, FindingType::DataStaging);
    assert_eq!(f.severity_label, "High");
    assert_eq!(f.evidence.rows, Some(50_000));
    assert_eq!(f.evidence.baseline_rows, Some(20));
    // Many medium reads that add up within the window.
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let recs: Vec<Record> = (0..30)
        .map(|i| {
            query(
                "198.51.100.21",
                48001,
                "app",
                "select * from orders where id = ?",
                "SELECT",
                150,
                6000,
                200 + i,
            )
        })
        .collect();
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let f = find(&out, FindingType::DataStaging);
    assert!(f.evidence.rows.unwrap() > 1000);
    // One finding, whose last state counts every read (issue 15, point 12).
    let last = out
        .iter()
        .rev()
        .find(|f| f.finding_type == FindingType::DataStaging.name())
        .unwrap();
    assert_eq!(last.id, f.id);
    // (The window also holds what this address read while learning.)
    assert!(last.evidence.rows.unwrap() >= 30 * 150);
    assert!(last.evidence.queries.unwrap() >= 30);
    // Writes do not count as reads.
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    let out = feed(
        &mut d,
        [query(
            APP,
            48002,
            "app",
            "update orders set state = ? where id = ?",
            "UPDATE",
            90_000,
            20,
            200,
        )],
    );
    assert!(out.is_empty());
}

/// Issue 15, point 12: paged reads (120 pages of 500 rows) go on after the window crossed its
/// baseline; the finding's evidence keeps counting until the reads stop (before: frozen at the
/// threshold, 9 500 of 60 000 rows), across windows while the pages keep coming.
#[test]
fn issue_15_data_staging_evidence_counts_until_the_reads_stop() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    // A page every 5 s: 600 s of paging spans several staging windows.
    let recs: Vec<Record> = (0..120)
        .map(|i| {
            // An address of the learnt user that read nothing while learning.
            query(
                "198.51.100.29",
                48003,
                "app",
                "select * from orders order by id limit ? offset ?",
                "SELECT",
                500,
                40_000,
                200 + 5 * i,
            )
        })
        .collect();
    let mut out = feed(&mut d, recs);
    d.finish(&mut out);
    let staging: Vec<&Finding> = out
        .iter()
        .filter(|f| f.finding_type == FindingType::DataStaging.name())
        .collect();
    let last = staging.last().expect("a DataStaging finding");
    assert!(staging.iter().all(|f| f.id == last.id), "one finding");
    assert_eq!(last.evidence.rows, Some(120 * 500));
    assert_eq!(last.evidence.queries, Some(120));
    assert!(
        last.description.contains("60000 rows"),
        "{}",
        last.description
    );
}

#[test]
fn baseline_survives_a_restart_and_a_corrupt_file() {
    let dir = tmpdir("persist");
    let path = dir.join("baseline.json");
    let mut d = detector(100, |o| o.baseline = Some(path.clone()));
    learn_app(&mut d);
    let mut out = Vec::new();
    d.finish(&mut out);
    assert!(out.is_empty());
    assert!(path.exists());
    // A new process: learning is over (it started at the first record of the first run).
    let mut d = detector(100, |o| o.baseline = Some(path.clone()));
    assert!(
        d.baseline()
            .instances
            .contains_key("198.51.100.10/postgres")
    );
    let out = feed(
        &mut d,
        [
            login(L {
                port: 49000,
                at: 300,
                ..L::default()
            }),
            login(L {
                ip: "10.3.3.3",
                at: 301,
                ..L::default()
            }),
        ],
    );
    assert_eq!(
        types(&out),
        vec![
            FindingType::AnomalousSuccessfulLogin.name(),
            FindingType::NewClientEdge.name(),
        ]
    );
    d.finish(&mut Vec::new());
    // Corrupt the file: the last good version (.prev) is used.
    std::fs::write(&path, "{ not json").unwrap();
    let mut d = detector(100, |o| o.baseline = Some(path.clone()));
    assert!(
        d.baseline().instances["198.51.100.10/postgres"]
            .users
            .contains_key("app")
    );
    let out = feed(
        &mut d,
        [login(L {
            port: 49001,
            at: 400,
            ..L::default()
        })],
    );
    assert!(out.is_empty(), "{:?}", types(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 15, point 14: a baseline remembers the learning period it was learned with, and an
/// instance map added after learning takes over the baselines learned under the addresses.
/// Before: the second run counted its own (default two-week) period from the first record and
/// reported nothing, and the mapped instance started learning from scratch.
#[test]
fn issue_15_a_baseline_reused_with_other_switches() {
    let dir = tmpdir("reuse");
    let path = dir.join("baseline.json");
    let mut d = detector(100, |o| o.baseline = Some(path.clone()));
    learn_app(&mut d);
    d.finish(&mut Vec::new());
    let later = |d: &mut Detector, at: u64| {
        feed(
            d,
            [login(L {
                ip: "10.3.3.3",
                port: 49100,
                at,
                ..L::default()
            })],
        )
    };
    // A run without the switch (the two-week default): the baseline's 100 s holds.
    let mut d = detector(14 * 24 * 3600, |o| o.baseline = Some(path.clone()));
    let out = later(&mut d, 300);
    assert!(
        types(&out).contains(&FindingType::AnomalousSuccessfulLogin.name()),
        "{:?}",
        types(&out)
    );
    d.finish(&mut Vec::new());
    // An instance map added now: the learned baseline is the mapped instance's.
    let map = dir.join("instances.json");
    std::fs::write(
        &map,
        format!(r#"{{"{SRV}": {{"dbInstanceIdentifier": "orders-pg-1", "engine": "postgres"}}}}"#),
    )
    .unwrap();
    let mut d = detector(14 * 24 * 3600, |o| {
        o.baseline = Some(path.clone());
        o.instance_map = Some(map.clone());
    });
    assert!(d.baseline().instances.contains_key("orders-pg-1"));
    assert!(
        !d.baseline()
            .instances
            .contains_key("198.51.100.10/postgres")
    );
    let out = later(&mut d, 400);
    let f = find(&out, FindingType::AnomalousSuccessfulLogin);
    assert_eq!(
        f.resource.rds_db_instance_details.db_instance_identifier,
        "orders-pg-1"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 15, point 11: a login rate learned over less than an hour is no hourly rate. Four
/// minutes of learning with 80 logins, then 241 logins in the hour: no rate finding (before:
/// "241 logins this hour (learned maximum 80)"). Learned over whole hours, the same burst is
/// one.
#[test]
fn issue_15_a_login_rate_needs_whole_hours_of_learning() {
    let logins = |from: u64, n: u64, step: u64, port: u16| -> Vec<Record> {
        (0..n)
            .map(|i| {
                login(L {
                    port: port.wrapping_add(i as u16),
                    at: from + i * step,
                    ..L::default()
                })
            })
            .collect()
    };
    let rate_reasons = |out: &[Finding]| -> Vec<String> {
        out.iter()
            .flat_map(|f| f.evidence.reasons.iter())
            .filter(|r| r.contains("this hour"))
            .cloned()
            .collect()
    };
    // Four minutes of learning.
    let mut d = detector(240, |_| {});
    feed(&mut d, logins(0, 80, 3, 10_000));
    let mut out = feed(&mut d, logins(300, 241, 10, 20_000));
    d.finish(&mut out);
    assert!(rate_reasons(&out).is_empty(), "{:?}", rate_reasons(&out));
    // Three whole hours of learning, 80 logins each; then a burst of 241 in an hour.
    let mut d = detector(3 * 3600, |_| {});
    for h in 0..3 {
        feed(&mut d, logins(h * 3600, 80, 40, 10_000 + (h as u16) * 100));
    }
    let mut out = feed(&mut d, logins(3 * 3600 + 10, 241, 10, 30_000));
    d.finish(&mut out);
    let r = rate_reasons(&out);
    assert!(r.iter().any(|r| r.contains("learned maximum 80")), "{r:?}");
}

#[test]
fn learning_is_per_instance() {
    let mut d = detector(100, |_| {});
    learn_app(&mut d);
    // Another instance appears late: it learns for its own period.
    let mut r = login(L {
        ip: "10.4.4.4",
        at: 500,
        ..L::default()
    });
    if let Record::Login(l) = &mut r {
        l.endpoint.server = "198.51.100.11:3306".into(); // another host
        l.endpoint.protocol = Protocol::Mysql;
    }
    assert!(feed(&mut d, [r]).is_empty());
}

#[test]
fn instance_map_and_asn_enrichment() {
    use crate::detect::mmdb_write::{MmdbWriter, Value, block};
    let dir = tmpdir("enrich");
    let map = dir.join("instances.json");
    std::fs::write(&map, format!(r#"{{"{SRV}": {{"dbInstanceIdentifier": "orders-pg-1", "dbClusterIdentifier": "orders", "engine": "postgres", "engineVersion": "15.4", "tags": {{"env": "prod"}}}}}}"#)).unwrap();
    let mut w = MmdbWriter::new("GeoLite2-ASN");
    w.insert(
        block("45.155.205.0/24"),
        Value::map([
            ("autonomous_system_number", Value::U32(64501)),
            (
                "autonomous_system_organization",
                Value::str("Example Hosting"),
            ),
        ]),
    );
    let mmdb = dir.join("asn.mmdb");
    std::fs::write(&mmdb, w.build()).unwrap();
    let mut d = detector(0, |o| {
        o.instance_map = Some(map.clone());
        o.asn_db = Some(mmdb.clone());
    });
    let out = feed(
        &mut d,
        [login(L {
            ip: "45.155.205.9",
            at: 1,
            ..L::default()
        })],
    );
    let f = find(&out, FindingType::AnomalousSuccessfulLogin);
    let i = &f.resource.rds_db_instance_details;
    assert_eq!(i.db_instance_identifier, "orders-pg-1");
    assert_eq!(i.db_cluster_identifier.as_deref(), Some("orders"));
    assert_eq!(
        i.tags,
        vec![finding::Tag {
            key: "env".into(),
            value: "prod".into()
        }]
    );
    let r = &f.service.action.rds_login_attempt_action.remote_ip_details;
    assert_eq!(r.organization.asn.as_deref(), Some("64501"));
    assert_eq!(r.organization.asn_org.as_deref(), Some("Example Hosting"));
    assert!(r.public);
    // The JSON shape automation consumes: our record in snake_case, the GuardDuty-shaped
    // event (EventBridge) in GuardDuty's names.
    let v = serde_json::to_value(Record::Finding(Box::new(f.clone()))).unwrap();
    assert_eq!(v["kind"], "finding");
    assert_eq!(
        v["type"],
        "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin"
    );
    assert_eq!(v["severity"], 5.0);
    assert_eq!(
        v["resource"]["rds_db_instance_details"]["db_instance_identifier"],
        "orders-pg-1"
    );
    assert_eq!(
        v["resource"]["rds_db_user_details"]["auth_method"],
        "scram-sha-256"
    );
    assert_eq!(
        v["service"]["action"]["rds_login_attempt_action"]["login_attributes"][0]["successful_login_attempts"],
        1
    );
    assert_eq!(v["first_actor"]["user"], "app");
    let g = f.guardduty_json();
    assert_eq!(g["kind"], "finding");
    assert_eq!(
        g["resource"]["rdsDbInstanceDetails"]["dbInstanceIdentifier"],
        "orders-pg-1"
    );
    assert_eq!(
        g["resource"]["rdsDbUserDetails"]["authMethod"],
        "scram-sha-256"
    );
    assert_eq!(
        g["service"]["action"]["rdsLoginAttemptAction"]["remoteIpDetails"]["organization"]["asn"],
        "64501"
    );
    assert_eq!(
        g["service"]["action"]["rdsLoginAttemptAction"]["LoginAttributes"][0]["successfulLoginAttempts"],
        1
    );
    assert_eq!(g["service"]["count"], 1);
    assert!(g["recommendedResponse"].as_array().unwrap().len() >= 3);
    // Bad inputs are errors that name the file.
    let e = Detector::new(
        DetectorOptions {
            instance_map: Some(dir.join("nope.json")),
            ..DetectorOptions::default()
        },
        Clock::default(),
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("nope.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn statement_classes() {
    let c = |v: &str, fp: &str| statement_class(v, fp);
    assert_eq!(c("SELECT", "select * from t"), "SELECT");
    assert_eq!(c("DROP", "drop table if exists t"), "DROP TABLE");
    assert_eq!(
        c("CREATE", "create or replace function f() ..."),
        "CREATE FUNCTION"
    );
    assert_eq!(
        c("CREATE", "create temp table t (a int)"),
        "CREATE TEMP TABLE"
    );
    assert_eq!(c("CREATE", "create user x identified by ?"), "CREATE USER");
    assert_eq!(c("ALTER", "alter system set x = ?"), "ALTER SYSTEM");
    assert_eq!(c("COPY", "copy t to program ?"), "COPY PROGRAM");
    assert_eq!(c("COPY", "copy (select a from t) to stdout"), "COPY TO");
    assert_eq!(c("COPY", "copy t from stdin"), "COPY FROM");
    assert_eq!(
        c("SELECT", "select * from t into outfile ?"),
        "SELECT INTO OUTFILE"
    );
    assert_eq!(c("SELECT", "select pg_read_file(?)"), "SELECT FILE ACCESS");
    assert_eq!(c("SET", "set role admin"), "SET ROLE");
    assert_eq!(c("SET", "set search_path = ?"), "SET");
    assert_eq!(c("", "grant select on t to u"), "GRANT");
    assert!(is_dangerous_class("DROP TABLE"));
    assert!(is_dangerous_class("COPY PROGRAM"));
    assert!(!is_dangerous_class("DELETE"));
    assert!(!is_dangerous_class("CREATE TEMP TABLE"));
    // T-SQL (fingerprints as the TDS decoder makes them).
    let tsql = |sql: &str| {
        let (verb, fp) =
            crate::decode::fingerprint::fingerprint(sql, crate::decode::fingerprint::Dialect::TSql);
        statement_class(&verb, &fp)
    };
    assert_eq!(
        tsql("EXEC master..xp_cmdshell 'whoami'"),
        "EXEC XP_CMDSHELL"
    );
    assert_eq!(
        tsql("exec sp_addsrvrolemember @loginame = N'x', @rolename = N'sysadmin'"),
        "EXEC SP_ADDSRVROLEMEMBER"
    );
    assert_eq!(tsql("EXEC dbo.GetPay @id = 1"), "EXEC");
    assert_eq!(
        tsql("CREATE LOGIN [evil] WITH PASSWORD = N'x'"),
        "CREATE LOGIN"
    );
    assert_eq!(tsql("ALTER LOGIN sa ENABLE"), "ALTER LOGIN");
    assert_eq!(
        tsql("SELECT * FROM OPENROWSET(BULK N'C:\\secrets.txt', SINGLE_CLOB) AS x"),
        "SELECT OPENROWSET"
    );
    assert_eq!(tsql("BULK INSERT t FROM 'c:\\x.csv'"), "BULK INSERT");
    for class in [
        "EXEC XP_CMDSHELL",
        "EXEC SP_ADDSRVROLEMEMBER",
        "CREATE LOGIN",
        "ALTER LOGIN",
        "SELECT OPENROWSET",
        "BULK INSERT",
    ] {
        assert!(is_dangerous_class(class), "{class}");
    }
    assert!(!is_dangerous_class("EXEC"));
}

#[test]
fn command_line_switches() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        d: DetectArgs,
    }
    // The switches overlay the settings, which make the detector.
    let settings = |a: &DetectArgs| {
        let mut d = crate::config::Detect::default();
        d.overlay(a);
        d
    };
    let c = Cli::parse_from(["x"]);
    assert!(!settings(&c.d).is_on());
    let c = Cli::parse_from([
        "x",
        "--allowed-cidr",
        "198.51.100.0/24,2001:db8::/32",
        "--allowed-cidr",
        "10.0.0.0/8",
        "--learning-period",
        "60",
        "--tor-exits",
        "a",
        "--tor-exits",
        "b",
    ]);
    assert!(settings(&c.d).is_on());
    let o = settings(&c.d).options();
    assert_eq!(o.allowed.len(), 3);
    assert_eq!(o.learning_period_s, 60);
    assert_eq!(o.tor_lists.len(), 2);
    assert_eq!(o.update_every_s, 60);
    assert!(Cli::try_parse_from(["x", "--allowed-cidr", "10.0.0.0/33"]).is_err());
    assert!(
        settings(&Cli::parse_from(["x", "--detect"]).d)
            .detector(Clock::default())
            .unwrap()
            .is_some()
    );
}

fn tls_rec(port: u16, at: u64, ja4: &str, info: impl FnOnce(&mut crate::model::TlsInfo)) -> Record {
    let mut i = crate::model::TlsInfo {
        version: Some("TLSv1.3".into()),
        suite: Some("TLS_AES_256_GCM_SHA384".into()),
        ja4: Some(ja4.into()),
        ..Default::default()
    };
    info(&mut i);
    Record::Tls(crate::model::TlsRecord {
        ts: Timestamp(t(at)),
        endpoint: ep(APP, port),
        info: i,
    })
}

#[test]
fn a_plaintext_login_where_tls_is_the_rule_is_a_downgrade_after_learning() {
    let mut d = detector(100, |_| {});
    // Learning: 25 TLS logins.
    let mut recs = Vec::new();
    for i in 0..25u16 {
        recs.push(tls_rec(40000 + i, u64::from(i), "t13d_a", |_| {}));
        recs.push(login(L {
            port: 40000 + i,
            at: u64::from(i),
            tls: true,
            ..L::default()
        }));
    }
    let out = feed(&mut d, recs);
    assert!(!types(&out).contains(&FindingType::TlsDowngrade.name()));
    // After learning: a TLS login is nothing, a plaintext one is a downgrade.
    let out = feed(
        &mut d,
        [
            tls_rec(41000, 200, "t13d_a", |_| {}),
            login(L {
                port: 41000,
                at: 200,
                tls: true,
                ..L::default()
            }),
        ],
    );
    assert!(out.is_empty(), "{:?}", types(&out));
    let out = feed(
        &mut d,
        [login(L {
            port: 41001,
            at: 201,
            tls: false,
            ..L::default()
        })],
    );
    let f = find(&out, FindingType::TlsDowngrade);
    assert!(f.description.contains("without TLS"), "{}", f.description);
}

#[test]
fn a_new_client_tls_fingerprint_after_learning_is_reported_once() {
    let mut d = detector(100, |_| {});
    let mut recs = Vec::new();
    for (i, ja4) in ["t13d_a", "t13d_b"].iter().enumerate() {
        recs.push(tls_rec(40000 + i as u16, i as u64, ja4, |_| {}));
        recs.push(login(L {
            port: 40000 + i as u16,
            at: i as u64,
            tls: true,
            ..L::default()
        }));
    }
    assert!(feed(&mut d, recs).is_empty());
    let known = feed(
        &mut d,
        [
            tls_rec(41000, 200, "t13d_b", |_| {}),
            login(L {
                port: 41000,
                at: 200,
                tls: true,
                ..L::default()
            }),
        ],
    );
    assert!(known.is_empty(), "{:?}", types(&known));
    let new = feed(
        &mut d,
        [
            tls_rec(41001, 201, "t12i_new", |_| {}),
            login(L {
                port: 41001,
                at: 201,
                tls: true,
                ..L::default()
            }),
        ],
    );
    let f = find(&new, FindingType::NewTlsFingerprint);
    assert!(f.description.contains("t12i_new"));
    let again = feed(
        &mut d,
        [
            tls_rec(41002, 202, "t12i_new", |_| {}),
            login(L {
                port: 41002,
                at: 202,
                tls: true,
                ..L::default()
            }),
        ],
    );
    assert!(
        !types(&again).contains(&FindingType::NewTlsFingerprint.name()),
        "learned once seen"
    );
}

#[test]
fn weak_tls_expiring_certificates_and_missing_keys() {
    let mut d = detector(0, |o| {
        o.tls_keys_expected = true;
        o.thresholds.missing_keys_min_sessions = 4;
    });
    let out = feed(
        &mut d,
        [tls_rec(40000, 0, "x", |i| {
            i.version = Some("TLSv1.2".into());
            i.suite = Some("TLS_RSA_WITH_AES_128_CBC_SHA".into());
            i.certificate = Some(crate::model::Certificate {
                subject: "CN=db".into(),
                issuer: "CN=rds-ca-2019".into(),
                not_before: "2019-08-22T17:08:50Z".into(),
                not_after: "2023-11-21T17:08:50Z".into(),
                key_type: "RSA 2048".into(),
            });
        })],
    );
    assert_eq!(find(&out, FindingType::WeakTls).severity_label, "Low");
    // Record time is 2023-11-14: six days left.
    let f = find(&out, FindingType::CertificateExpiring);
    assert!(f.description.contains("(6 days)"), "{}", f.description);
    assert_eq!(f.severity_label, "Medium");
    let out = feed(
        &mut d,
        [tls_rec(40009, 1, "x", |i| {
            i.certificate = Some(crate::model::Certificate {
                subject: "CN=old".into(),
                issuer: "CN=rds-ca-2015".into(),
                not_before: "2015-02-05T09:11:31Z".into(),
                not_after: "2020-03-05T09:11:31Z".into(),
                key_type: "RSA 2048".into(),
            });
        })],
    );
    let f = find(&out, FindingType::CertificateExpiring);
    assert!(
        f.description.contains("expired on 2020-03-05"),
        "{}",
        f.description
    );
    assert_eq!(f.severity_label, "High");
    assert!(!types(&out).contains(&FindingType::WeakTls.name()));
    let mut out = Vec::new();
    for i in 1..=4u16 {
        out.extend(feed(
            &mut d,
            [tls_rec(40000 + i, u64::from(i), "x", |i| {
                i.undecryptable = Some(crate::model::Undecryptable::NoKey);
            })],
        ));
    }
    find(&out, FindingType::TlsKeysMissing);
}

/// A login with an IAM token signed `signed_s` (record seconds) for 900 s.
fn iam_login(l: L<'_>, signed_s: u64) -> Record {
    let at = l.at;
    let mut r = login(L { auth: "iam", ..l });
    if let Record::Login(x) = &mut r {
        x.iam_token = Some(crate::model::IamToken {
            signed_at: Timestamp(t(signed_s)),
            expires_at: Timestamp(t(signed_s + 900)),
            region: "us-east-1".into(),
            service: "rds-db".into(),
            expired: at > signed_s + 900,
        });
    }
    r
}

#[test]
fn iam_users_static_passwords_required_networks_and_expired_tokens() {
    let mut d = detector(100, |o| {
        o.iam_required = vec!["203.0.113.0/24".parse().unwrap()];
    });
    // Learning: svc_iam logs in only with tokens, app only with its password.
    let mut recs = Vec::new();
    for i in 0..5u16 {
        let at = u64::from(i);
        let port = 40000 + i;
        recs.push(iam_login(
            L {
                user: "svc_iam",
                port,
                at,
                tls: true,
                ..L::default()
            },
            at,
        ));
        recs.push(login(L {
            port: port + 100,
            at,
            ..L::default()
        }));
    }
    let out = feed(&mut d, recs);
    assert!(types(&out).is_empty(), "{:?}", types(&out));
    let ib = &d.baseline.instances.values().next().unwrap().users;
    assert_eq!(
        (ib["svc_iam"].iam_logins, ib["svc_iam"].password_logins),
        (5, 0)
    );
    assert_eq!((ib["app"].iam_logins, ib["app"].password_logins), (0, 5));

    // After learning: the same habits are nothing; svc_iam with a password is.
    let out = feed(
        &mut d,
        [
            iam_login(
                L {
                    user: "svc_iam",
                    port: 41000,
                    at: 200,
                    tls: true,
                    ..L::default()
                },
                150,
            ),
            login(L {
                port: 41001,
                at: 201,
                ..L::default()
            }),
        ],
    );
    assert!(out.is_empty(), "{:?}", types(&out));
    let out = feed(
        &mut d,
        [login(L {
            user: "svc_iam",
            auth: "cleartext",
            tls: true,
            port: 41002,
            at: 202,
            ..L::default()
        })],
    );
    let f = find(&out, FindingType::IamStaticPassword);
    assert_eq!(f.severity_label, "High", "it worked");
    assert!(f.description.contains("only with IAM"), "{}", f.description);
    assert_eq!(types(&out), [FindingType::IamStaticPassword.name()]);

    // From a network where IAM is required: a password is a policy finding, a token is not.
    let out = feed(
        &mut d,
        [
            login(L {
                ip: "203.0.113.9",
                ok: false,
                port: 41003,
                at: 203,
                ..L::default()
            }),
            iam_login(
                L {
                    ip: "203.0.113.9",
                    user: "svc_iam",
                    port: 41004,
                    at: 204,
                    tls: true,
                    ..L::default()
                },
                200,
            ),
        ],
    );
    let f = find(&out, FindingType::IamRequired);
    assert_eq!(f.severity_label, "Low", "refused");
    assert!(!types(&out).contains(&FindingType::IamStaticPassword.name()));

    // A token presented 1000 s after it was signed (valid for 900).
    let out = feed(
        &mut d,
        [iam_login(
            L {
                user: "svc_iam",
                ok: false,
                port: 41005,
                at: 1300,
                tls: true,
                ..L::default()
            },
            300,
        )],
    );
    let f = find(&out, FindingType::IamTokenExpired);
    assert!(
        f.description.contains("100 s after it expired"),
        "{}",
        f.description
    );
    assert_eq!(f.severity_label, "Low", "refused, from a private address");
}
