//! TLS sessions read with key logs, beyond the oracle (`tshark_oracle.rs`): keys that never
//! come, segments lost inside TLS, and the live path (a veth, the XDP program, `rds-sensor
//! run --tls-keylog`) against `analyze` on the same real captures, with the key log there
//! from the start and with it arriving after the sessions it opens have ended.

mod common;
mod oracle;

use common::*;
use rds_sensor::{
    model::{Record, Undecryptable},
    session::tls::{self, Hold, KeyLogFiles, KeyStore},
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

const BIN: &str = env!("CARGO_BIN_EXE_rds-sensor");

fn pcap_path(name: &str) -> PathBuf {
    pcaps_dir().join(name)
}

fn scratch_path(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-sensor-tls-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// `editcap` (Wireshark's) writes the capture without the given frames (1-based).
fn drop_frames(from: &Path, to: &Path, frames: &[usize]) {
    let out = std::process::Command::new("editcap")
        .arg(from)
        .arg(to)
        .args(frames.iter().map(|f| f.to_string()))
        .output()
        .expect("editcap (Wireshark's, with tshark)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keys_of(pcap: &Path) -> PathBuf {
    pcap.with_extension("keys")
}

fn store_with(keylog: Option<&Path>) -> KeyStore {
    let store = KeyStore::new(1000, None);
    if let Some(k) = keylog {
        KeyLogFiles::new(&[k.to_path_buf()])
            .unwrap()
            .poll(&store)
            .unwrap();
    }
    store
}

/// `analyze` with the TLS layer and `store`'s keys (oracle's run: the same options as the
/// binary's).
fn analyze(pcap: &Path, store: KeyStore) -> oracle::SensorRun {
    oracle::run_sensor_layers(pcap, tls::layers(store, Hold::default()))
}

#[test]
fn keys_that_never_come_are_no_key_after_the_wait() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let records = analyze(&pcap, store_with(None)).records;
    let tls: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Tls(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tls.len(), 8);
    assert!(tls.iter().all(|t| !t.info.decrypted
        && t.info.undecryptable == Some(Undecryptable::NoKey)
        && t.info.version.is_some()));
    assert!(records.iter().all(|r| r.as_query().is_none()));
}

/// What sessions hold for late keys is bounded across all of them: with a budget smaller
/// than one session's ciphertext, every session is `no_key` at once, and whatever was held is
/// given back (the budget ends at zero, as it does when keys come or sessions end).
#[test]
fn ciphertext_held_for_keys_is_bounded_across_sessions_and_given_back() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let mut peaks = Vec::new();
    for total in [0usize, 100, 64 << 20] {
        let budget = Arc::new(tls::HoldBudget::default());
        let run = oracle::run_sensor_layers(
            &pcap,
            tls::layers_with_budget(
                store_with(None),
                Hold {
                    total,
                    ..Hold::default()
                },
                budget.clone(),
            ),
        );
        assert_eq!(budget.held(), 0, "total {total}");
        let no_key = run
            .records
            .iter()
            .filter(|r| matches!(r, Record::Tls(t) if t.info.undecryptable == Some(Undecryptable::NoKey)))
            .count();
        assert_eq!(no_key, 8, "total {total}");
        peaks.push(budget.peak());
    }
    // A small budget stops at the first record past it; a large one holds a session's
    // records while it waits (here: every session's, until each wait ends).
    assert!(peaks[0] <= 1500 && peaks[1] <= 1600, "{peaks:?}");
    assert!(peaks[2] > 4 * peaks[1], "{peaks:?}");
}

/// The capture with one of its frames removed: the frame is chosen by tshark (the first
/// client segment carrying TLS application data after the 200-row answer's query, in the
/// first session), independent of the sensor.
#[test]
fn a_lost_segment_inside_tls_loses_that_record_only() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let keylog = keys_of(&pcap);
    // The frames of stream 0 whose TLS records carry a Simple query/Parse from the client,
    // as tshark decrypts them.
    let rows = tshark_fields_with(
        &pcap,
        Some(&keylog),
        "tcp.stream == 0 && pgsql.query && tcp.dstport == 5432",
        &["frame.number", "pgsql.query"],
    );
    let victim = rows
        .iter()
        .find(|r| r[1].contains("count(*)"))
        .map(|r| r[0].parse::<usize>().unwrap())
        .expect("the count(*) query's frame");
    let cut = scratch_path("pg-tls-keys-lost.pcap");
    drop_frames(&pcap, &cut, &[victim]);

    let full = analyze(&pcap, store_with(Some(&keylog)));
    let lost = analyze(&cut, store_with(Some(&keylog)));
    let fp = |rs: &[Record]| -> Vec<String> {
        rs.iter()
            .filter_map(Record::as_query)
            .map(|q| q.fingerprint.clone())
            .collect()
    };
    let (f, l) = (fp(&full.records), fp(&lost.records));
    // Exactly the lost query is missing; the queries after it in the same session (the
    // error and the 200 rows) and every other session are still read.
    let mut want = f.clone();
    let at = want
        .iter()
        .position(|q| q.contains("count(*)"))
        .expect("count(*) in the full run");
    want.remove(at);
    assert_eq!(l, want);
    let stats = lost.decoders();
    assert!(stats.tls_records_lost >= 1, "{stats:?}");
    assert_eq!(stats.tls_decrypted, 7, "{stats:?}");
}

// ---- live ----

fn run_json(args: &[&str]) -> std::process::Child {
    std::process::Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn lines_of(kind: &str, out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// `rds-sensor analyze PCAP ARGS` (with `--tls-keylog` of the capture's own key log when
/// `keyed`): its stdout; it must succeed.
fn analyze_cli(pcap: &Path, keyed: bool, args: &[&str]) -> String {
    let mut c = std::process::Command::new(BIN);
    c.arg("analyze").arg(pcap);
    if keyed {
        c.arg("--tls-keylog").arg(keys_of(pcap));
    }
    let o = c.args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What live and offline must agree on: not the times (a replay has its own), the rest.
fn essence(out: &str) -> Vec<String> {
    let mut v = Vec::new();
    for q in lines_of("query", out) {
        v.push(format!(
            "query {} {} {} rows={} err={}",
            q["client"], q["user"], q["fingerprint"], q["rows"], q["error_code"]
        ));
    }
    for l in lines_of("login", out) {
        v.push(format!(
            "login {} {} {} {} {} {}",
            l["client"], l["user"], l["outcome"], l["tls"], l["tls_version"], l["tls_suite"]
        ));
    }
    for t in lines_of("tls", out) {
        v.push(format!(
            "tls {} {} {} {} {}",
            t["client"], t["version"], t["suite"], t["decrypted"], t["undecryptable"]
        ));
    }
    v.sort();
    v
}

/// How the live run gets its keys.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Keys {
    /// A key log directory holding them from the start.
    Early,
    /// The directory, into which they are copied only after the replay began.
    LateFile,
    /// `rds-sensor keylog-forward` to the run's `--keylog-listen`, started after the replay
    /// began.
    Forwarded,
}

/// `rds-sensor run` on a veth while the keyed captures are replayed into it, with the keys
/// there from the start, arriving late in a followed directory, and arriving late through
/// `keylog-forward` → `--keylog-listen`: the same logins, queries and TLS records as
/// `analyze --tls-keylog` every time.
#[test]
fn live_replay_with_key_logs_matches_analyze() {
    if !kernel_available("live_replay_with_key_logs_matches_analyze") {
        return;
    }
    let names = ["pg-tls-keys.pcap", "mysql-tls-keys.pcap"];
    let mut offline = String::new();
    for n in names {
        offline.push_str(&analyze_cli(&pcap_path(n), true, &["--json"]));
    }
    let want = essence(&offline);
    assert!(want.iter().filter(|x| x.starts_with("query")).count() >= 32);
    for mode in [Keys::Early, Keys::LateFile, Keys::Forwarded] {
        let pair = rds_sensor::netns::VethPair::new(match mode {
            Keys::Early => "tk",
            Keys::LateFile => "tl",
            Keys::Forwarded => "tf",
        })
        .unwrap();
        let dir = scratch_path(&format!("keys-{mode:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let all_keys = dir.join("all.keys");
        let copy_keys = |into: &Path| {
            for n in names {
                let p = pcap_path(n);
                std::fs::copy(keys_of(&p), into.join(n).with_extension("keys")).unwrap();
            }
        };
        let mut args: Vec<String> = ["run", "--iface", &pair.outside, "--json", "--no-tui"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut forward = None;
        match mode {
            Keys::Early | Keys::LateFile => {
                let keydir = dir.join("keylogs");
                std::fs::create_dir_all(&keydir).unwrap();
                if mode == Keys::Early {
                    copy_keys(&keydir);
                }
                args.push("--tls-keylog".into());
                args.push(keydir.to_string_lossy().into_owned());
            }
            Keys::Forwarded => {
                let (ca, cert, key) = test_ca(&dir);
                let tok = dir.join("token");
                std::fs::write(&tok, "live-test-token-0123456789\n").unwrap();
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                for (k, v) in [
                    ("--keylog-listen", format!("127.0.0.1:{port}")),
                    ("--keylog-cert", cert.to_string_lossy().into_owned()),
                    ("--keylog-key", key.to_string_lossy().into_owned()),
                    ("--keylog-token-file", tok.to_string_lossy().into_owned()),
                ] {
                    args.push(k.into());
                    args.push(v);
                }
                let text: String = names
                    .iter()
                    .map(|n| std::fs::read_to_string(keys_of(&pcap_path(n))).unwrap())
                    .collect();
                std::fs::write(&all_keys, text).unwrap();
                forward = Some((ca, tok, port));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = run_json(&args);
        wait_attached(&pair.outside);
        let late = {
            let keydir = dir.join("keylogs");
            let all_keys = all_keys.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                match (mode, forward) {
                    (Keys::LateFile, _) => {
                        for n in names {
                            let p = pcap_path(n);
                            std::fs::copy(keys_of(&p), keydir.join(n).with_extension("keys"))
                                .unwrap();
                        }
                        None
                    }
                    (Keys::Forwarded, Some((ca, tok, port))) => Some(
                        std::process::Command::new(BIN)
                            .arg("keylog-forward")
                            .arg("--file")
                            .arg(&all_keys)
                            .args(["--to", &format!("127.0.0.1:{port}"), "--ca"])
                            .arg(&ca)
                            .arg("--token-file")
                            .arg(&tok)
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .unwrap(),
                    ),
                    _ => None,
                }
            })
        };
        let pps = if mode == Keys::Early { 2000 } else { 200 };
        for n in names {
            pair.replay(&pcap_path(n), Some(pps)).unwrap();
        }
        let forwarder = late.join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        if let Some(mut f) = forwarder {
            let _ = f.kill();
            let _ = f.wait();
        }
        // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "run ({mode:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(essence(&live), want, "keys {mode:?}");
        // The late runs did wait for their keys (sessions held, some past their end); the
        // early one never did.
        let waited = lines_of("summary", &live)
            .iter()
            .filter_map(|s| s["decoders"]["tls_keys_late"].as_u64())
            .max()
            .unwrap_or(0);
        if mode == Keys::Early {
            assert_eq!(waited, 0);
        } else {
            assert!(waited >= 1, "{mode:?}: no session waited for its keys");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A segment lost in the middle of a TLS record (the 200-row answer spans several segments):
/// that record is lost, the layer skips to its end (its header said where), and every
/// other query of the session and of the capture is still read.
#[test]
fn a_segment_lost_inside_a_record_loses_that_record_only() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let keylog = keys_of(&pcap);
    // Full-sized server segments of stream 0: the 200-row answer's record.
    let rows = tshark_fields(
        &pcap,
        "tcp.stream == 0 && tcp.srcport == 5432 && tcp.len >= 1000",
        &["frame.number"],
    );
    assert!(rows.len() >= 3, "{rows:?}");
    let victim: usize = rows[1][0].parse().unwrap();
    let cut = scratch_path("pg-tls-keys-mid.pcap");
    drop_frames(&pcap, &cut, &[victim]);
    let full = analyze(&pcap, store_with(Some(&keylog)));
    let lost = analyze(&cut, store_with(Some(&keylog)));
    let big = "select id, name, price from items order by id limit ?";
    let others = |rs: &[Record]| -> Vec<(String, Option<u64>)> {
        rs.iter()
            .filter_map(Record::as_query)
            .filter(|q| q.fingerprint != big)
            .map(|q| (q.fingerprint.clone(), q.rows))
            .collect()
    };
    assert_eq!(others(&lost.records), others(&full.records));
    let stats = lost.decoders();
    assert!(stats.tls_records_lost >= 1, "{stats:?}");
    // The big answer is not reported as if whole.
    assert!(
        lost.queries()
            .into_iter()
            .all(|q| q.fingerprint != big || q.rows != Some(200)),
        "a lost record's query reported with all its rows"
    );
}

/// Findings from what TLS shows, on the real capture: the server certificate (read in the
/// clear from the TLS 1.2 sessions, and with the keys from the 1.3 ones) is reported when it
/// ends within the threshold, and each client TLS fingerprint the instance had not seen
/// once it stopped learning; neither with the default threshold and a learning period.
#[test]
fn tls_findings_on_the_real_capture() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let cfg = scratch_path("tls-findings.toml");
    std::fs::write(
        &cfg,
        "[detect]\nenabled = true\nlearning_period_s = 0\n[detect.thresholds]\ncert_expiry_days = 4000\n",
    )
    .unwrap();
    let run = |args: &[&str]| -> Vec<serde_json::Value> {
        lines_of(
            "finding",
            &analyze_cli(&pcap, true, &[&["--json"][..], args].concat()),
        )
    };
    let f = run(&["--config", cfg.to_str().unwrap()]);
    // Distinct findings (a repeat is emitted again as an update with the same id).
    let of = |t: &str| -> Vec<&serde_json::Value> {
        let mut v: Vec<&serde_json::Value> = f.iter().filter(|x| x["type"] == t).collect();
        v.sort_by_key(|x| x["id"].to_string());
        v.dedup_by_key(|x| x["id"].to_string());
        v
    };
    let types: Vec<&str> = f.iter().filter_map(|x| x["type"].as_str()).collect();
    let cert = of("Policy:RDS/ServerCertificate.Expiring");
    assert_eq!(cert.len(), 1, "{types:?}");
    let d = cert[0]["description"].as_str().unwrap();
    assert!(
        d.contains("CN=db.rds-sensor.test") && d.contains("2036-12-01"),
        "{d}"
    );
    // Six distinct JA4s in the capture (three TLS 1.3 suite configurations, three TLS 1.2
    // ones): the first is learned, the five others are new.
    assert_eq!(
        of("InitialAccess:RDS/AnomalousBehavior.NewTlsFingerprint").len(),
        5,
        "{f:?}"
    );
    let quiet = run(&["--detect"]);
    assert!(
        quiet.iter().all(|x| {
            let t = x["type"].as_str().unwrap_or_default();
            !t.contains("Certificate") && !t.contains("TlsFingerprint")
        }),
        "{quiet:?}"
    );
}

/// The HTML report's TLS section: every session, by what it showed and whether it was read.
#[test]
fn the_report_has_a_tls_section() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let out = scratch_path("tls-report.html");
    analyze_cli(&pcap, true, &["--report", out.to_str().unwrap()]);
    let html = std::fs::read_to_string(&out).unwrap();
    let tls = &html[html.find("id=\"tls\"").expect("a TLS section")..];
    let tls = &tls[..tls.find("</table>").unwrap()];
    assert!(tls.contains("8 sessions"), "{tls}");
    assert_eq!(tls.matches(">decrypted<").count(), 6, "{tls}");
    assert!(tls.contains(">no_key<") && tls.contains("CN=db.rds-sensor.test"));
}

/// Without keys, each request/response turn of a TLS session is estimated from its record
/// boundaries and directions. Checked against the decrypted truth on the same capture: every
/// query the key log reveals starts a turn at its own start (within 1 µs), with its latency
/// and first-byte latency (within 1 µs); the other turns are the login's round trips. The
/// per-server latency line of the turns says `(tls, estimated)`.
#[test]
fn estimated_turns_without_keys_match_the_decrypted_queries() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let truth = lines_of("query", &analyze_cli(&pcap, true, &["--json"]));
    let blind = analyze_cli(&pcap, false, &["--json"]);
    let turns = lines_of("tls_exchange", &blind);
    assert_eq!(truth.len(), 20);
    assert!(turns.iter().all(|t| t["estimated"] == true));
    let ns = |v: &serde_json::Value| -> i128 {
        // RFC 3339 with µs: compare as text down to the µs, then as numbers.
        let s = v["ts"].as_str().unwrap();
        let (secs, frac) = s.trim_end_matches('Z').rsplit_once('.').unwrap();
        let hms: Vec<i128> = secs[11..].split(':').map(|x| x.parse().unwrap()).collect();
        ((hms[0] * 3600 + hms[1] * 60 + hms[2]) * 1_000_000_000)
            + frac.parse::<i128>().unwrap() * 10i128.pow(9 - frac.len() as u32)
    };
    for q in &truth {
        let t = turns
            .iter()
            .find(|t| t["client"] == q["client"] && (ns(t) - ns(q)).abs() <= 1000)
            .unwrap_or_else(|| panic!("no estimated turn at the query {q}"));
        for (a, b) in [
            ("latency_us", "latency_us"),
            ("latency_first_byte_us", "latency_first_byte_us"),
        ] {
            let (e, r) = (t[a].as_i64().unwrap(), q[b].as_i64().unwrap());
            assert!((e - r).abs() <= 1, "{a}: estimated {e}, decrypted {r}: {q}");
        }
    }
    // Turns also time the login round trips (3 per session that logged in) and the sessions
    // without keys: more turns than queries, all timed.
    assert!(turns.len() > truth.len(), "{} turns", turns.len());
    let line = lines_of("latency", &blind)
        .into_iter()
        .find(|l| l["fingerprint"] == "(tls, estimated)")
        .expect("a per-server line of estimated turns");
    assert_eq!(line["estimated"], true);
    assert_eq!(line["count"].as_u64().unwrap(), turns.len() as u64);
}

/// With a payload cap far below the TLS records' size, a session read with keys still gives
/// every query: from the switch to TLS, with key logs configured, the layer asks the capture
/// (here the XDP program's offline twin; live, the kernel's `WHOLE` map, checked by
/// `xdp_fixtures`) for whole segments. The plaintext start-up's long segments (none here)
/// and other connections' are still cut.
#[test]
fn tls_sessions_with_keys_get_whole_segments_under_a_small_payload_cap() {
    let pcap = pcap_path("pg-tls-keys.pcap");
    let small_cap = ["--json", "--payload-cap", "200", "--tail-cap", "64"];
    let full = analyze_cli(&pcap, true, &["--json"]);
    let small = analyze_cli(&pcap, true, &small_cap);
    let queries = |out: &str| -> Vec<String> {
        let mut v: Vec<String> = lines_of("query", out)
            .iter()
            .map(|q| {
                format!(
                    "{} {} {} {}",
                    q["client"], q["fingerprint"], q["rows"], q["latency_us"]
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(queries(&small).len(), 20);
    assert_eq!(queries(&small), queries(&full));
    // Without key logs nothing asks: the same cap cuts the long segments.
    let blind = analyze_cli(&pcap, false, &small_cap);
    let capped = lines_of("summary", &blind)
        .iter()
        .filter_map(|s| s["kernel"]["capped"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        capped > 0,
        "the cap cuts long segments of sessions nobody marked"
    );
}
