//! Conversations built byte by byte from the protocol documentation ("Message Formats",
//! "Message Flow"), fed through the decoder in every slicing.

use super::*;
use crate::{
    decode::{Dir, Gap},
    model::{DecoderStats, Outcome, Protocol, Purpose},
    testkit::{self, Harness, Run},
};

// ---- message builders ----

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cs(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn untyped(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut b = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        b.extend(cs(k));
        b.extend(cs(v));
    }
    b.push(0);
    untyped(&b)
}

fn code_packet(code: u32) -> Vec<u8> {
    untyped(&code.to_be_bytes())
}

fn cancel() -> Vec<u8> {
    let mut b = messages::CANCEL_REQUEST.to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0x30, 0x39, 1, 2, 3, 4]);
    untyped(&b)
}

fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(extra);
    msg(b'R', &b)
}

fn sasl(mechs: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    for m in mechs {
        b.extend(cs(m));
    }
    b.push(0);
    auth(10, &b)
}

fn sasl_initial(mech: &str, data: &[u8]) -> Vec<u8> {
    let mut b = cs(mech);
    b.extend_from_slice(&(data.len() as i32).to_be_bytes());
    b.extend_from_slice(data);
    msg(b'p', &b)
}

fn password(p: &str) -> Vec<u8> {
    msg(b'p', &cs(p))
}

fn param_status(k: &str, v: &str) -> Vec<u8> {
    let mut b = cs(k);
    b.extend(cs(v));
    msg(b'S', &b)
}

fn backend_key() -> Vec<u8> {
    msg(b'K', &[0, 0, 0x30, 0x39, 9, 9, 9, 9])
}

fn ready(s: u8) -> Vec<u8> {
    msg(b'Z', &[s])
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cs(sql))
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cs(name);
    b.extend(cs(sql));
    b.extend_from_slice(&0u16.to_be_bytes());
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut b = cs(portal);
    b.extend(cs(stmt));
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as i32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    msg(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cs(name));
    msg(b'D', &b)
}

fn close_msg(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cs(name));
    msg(b'C', &b)
}

fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    let mut b = cs(portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    msg(b'E', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

fn flush() -> Vec<u8> {
    msg(b'H', &[])
}

fn terminate() -> Vec<u8> {
    msg(b'X', &[])
}

fn row_desc(cols: &[&str]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        b.extend(cs(c));
        b.extend_from_slice(&[
            0, 0, 0x40, 0, 0, 1, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ]);
    }
    msg(b'T', &b)
}

fn data_row(cols: &[&[u8]]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        b.extend_from_slice(&(c.len() as i32).to_be_bytes());
        b.extend_from_slice(c);
    }
    msg(b'D', &b)
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cs(tag))
}

fn error(sev: &str, code: &str, text: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend(cs(sev));
    b.push(b'V');
    b.extend(cs(sev));
    b.push(b'C');
    b.extend(cs(code));
    b.push(b'M');
    b.extend(cs(text));
    b.push(0);
    msg(b'E', &b)
}

fn notice(text: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend(cs("NOTICE"));
    b.push(b'C');
    b.extend(cs("00000"));
    b.push(b'M');
    b.extend(cs(text));
    b.push(0);
    msg(b'N', &b)
}

fn notification(channel: &str, payload: &str) -> Vec<u8> {
    let mut b = 4242u32.to_be_bytes().to_vec();
    b.extend(cs(channel));
    b.extend(cs(payload));
    msg(b'A', &b)
}

fn empty() -> Vec<u8> {
    msg(b'I', &[])
}

fn parse_complete() -> Vec<u8> {
    msg(b'1', &[])
}

fn bind_complete() -> Vec<u8> {
    msg(b'2', &[])
}

fn close_complete() -> Vec<u8> {
    msg(b'3', &[])
}

fn no_data() -> Vec<u8> {
    msg(b'n', &[])
}

fn param_desc(n: u16) -> Vec<u8> {
    let mut b = n.to_be_bytes().to_vec();
    for _ in 0..n {
        b.extend_from_slice(&23u32.to_be_bytes());
    }
    msg(b't', &b)
}

fn suspended() -> Vec<u8> {
    msg(b's', &[])
}

fn copy_response(t: u8, cols: u16) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(&cols.to_be_bytes());
    for _ in 0..cols {
        b.extend_from_slice(&0u16.to_be_bytes());
    }
    msg(t, &b)
}

fn copy_data(d: &[u8]) -> Vec<u8> {
    msg(b'd', d)
}

fn copy_done() -> Vec<u8> {
    msg(b'c', &[])
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- harness ----

const C: Dir = Dir::Request;
const S: Dir = Dir::Response;

#[derive(Clone, Debug)]
enum Step {
    Data(Dir, u64, Vec<u8>),
    Gap(Dir, u64, u64),
}

/// Data at `ms` milliseconds.
fn d(dir: Dir, ms: u64, b: Vec<u8>) -> Step {
    Step::Data(dir, ms * 1_000_000, b)
}

fn g(dir: Dir, ms: u64, len: u64) -> Step {
    Step::Gap(dir, ms * 1_000_000, len)
}

/// Feeds the steps; a step is split into pieces at `cuts` (offsets within that step).
fn run_with(
    steps: &[Step],
    mid_stream: bool,
    redact: bool,
    split: &dyn Fn(usize, usize) -> Vec<usize>,
) -> Run {
    let mut h = Harness::new(
        Box::new(PostgresDecoder::new(mid_stream)),
        testkit::endpoint(Protocol::Postgres),
    )
    .redact(redact);
    let mut last = 0;
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Data(dir, ts, b) => {
                let mut at = 0;
                for cut in split(i, b.len()).into_iter().chain([b.len()]) {
                    if cut > at && cut <= b.len() {
                        h.data(*dir, *ts, &b[at..cut]);
                        at = cut;
                    }
                }
                last = *ts;
            }
            Step::Gap(dir, ts, len) => {
                h.gap(*dir, *ts, Gap::Exact(*len));
                last = *ts;
            }
        }
    }
    h.close(last);
    h.finish()
}

fn run(steps: &[Step]) -> Run {
    run_with(steps, false, true, &|_, _| vec![])
}

/// Every slicing of every step gives the same records.
fn assert_split_invariant(steps: &[Step], mid_stream: bool) -> Run {
    let base = run_with(steps, mid_stream, true, &|_, _| vec![]);
    for (i, s) in steps.iter().enumerate() {
        let Step::Data(_, _, b) = s else { continue };
        for k in 1..b.len() {
            let r = run_with(steps, mid_stream, true, &|j, _| {
                if j == i { vec![k] } else { vec![] }
            });
            assert_eq!(r.json(), base.json(), "step {i} cut at {k}");
        }
    }
    let bytewise = run_with(steps, mid_stream, true, &|_, n| (1..n).collect());
    assert_eq!(bytewise.json(), base.json(), "byte by byte");
    base
}

fn login_steps() -> Vec<Step> {
    vec![
        d(
            C,
            1,
            startup(&[
                ("user", "alice"),
                ("database", "shop"),
                ("application_name", "psql"),
            ]),
        ),
        d(S, 2, sasl(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])),
        d(
            C,
            3,
            sasl_initial("SCRAM-SHA-256", b"n,,n=,r=secret-client-nonce"),
        ),
        d(
            S,
            4,
            auth(11, b"r=secret-client-nonce-server,s=salt,i=4096"),
        ),
        d(
            C,
            5,
            password("c=biws,r=secret,p=proof-canary-literal-4242"),
        ),
        d(S, 6, auth(12, b"v=signature")),
        d(
            S,
            7,
            cat(&[
                auth(0, &[]),
                param_status("application_name", "psql"),
                param_status("server_version", "15.4"),
                backend_key(),
                ready(b'I'),
            ]),
        ),
    ]
}

// ---- start-up and authentication ----

#[test]
fn scram_login_success() {
    let r = assert_split_invariant(&login_steps(), false);
    let l = r.logins();
    assert_eq!(l.len(), 1);
    let l = l[0];
    assert_eq!(l.user.as_deref(), Some("alice"));
    assert_eq!(l.database.as_deref(), Some("shop"));
    assert_eq!(l.application.as_deref(), Some("psql"));
    assert_eq!(l.outcome, Outcome::Success);
    assert_eq!(l.auth_method.as_deref(), Some("scram-sha-256"));
    assert_eq!(l.server_version.as_deref(), Some("15.4"));
    assert_eq!(l.error_code, None);
    assert!(!l.tls);
    assert_eq!(l.ts.ns(), 1_000_000);
    assert_eq!(l.endpoint.server, "10.0.0.2:5432");
    assert!(!r.json().contains("canary"), "SASL payloads never output");
    assert!(!r.json().contains("secret"));
    assert_eq!(r.stats, DecoderStats::default());
}

#[test]
fn failed_login_md5_28p01() {
    let steps = vec![
        d(C, 1, startup(&[("user", "bob"), ("database", "db")])),
        d(S, 2, auth(5, &[1, 2, 3, 4])),
        d(C, 3, password("md5canary-literal-4242")),
        d(
            S,
            4,
            error(
                "FATAL",
                "28P01",
                "password authentication failed for user \"bob\"",
            ),
        ),
    ];
    let r = assert_split_invariant(&steps, false);
    let l = r.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Failure);
    assert_eq!(l[0].error_code.as_deref(), Some("28P01"));
    assert_eq!(l[0].auth_method.as_deref(), Some("md5"));
    assert!(!r.json().contains("canary"));
}

#[test]
fn failure_after_auth_ok_3d000_and_trust() {
    let steps = vec![
        d(C, 1, startup(&[("user", "carol"), ("database", "nope")])),
        d(
            S,
            2,
            cat(&[
                auth(0, &[]),
                error("FATAL", "3D000", "database \"nope\" does not exist"),
            ]),
        ),
    ];
    let r = run(&steps);
    let l = r.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Failure);
    assert_eq!(l[0].error_code.as_deref(), Some("3D000"));
    assert_eq!(l[0].auth_method.as_deref(), Some("trust"));
}

#[test]
fn cleartext_login_default_database_and_abandoned_login() {
    let steps = vec![
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, auth(3, &[])),
        d(C, 3, password("canary-literal-4242")),
        d(S, 4, cat(&[auth(0, &[]), ready(b'I')])),
    ];
    let r = run(&steps);
    let l = r.logins();
    assert_eq!(l[0].database.as_deref(), Some("dave"));
    assert_eq!(l[0].auth_method.as_deref(), Some("cleartext"));
    assert_eq!(l[0].outcome, Outcome::Success);
    // psql's first attempt: the password request, then a hang-up: abandoned, not refused.
    let r = run(&[
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, auth(5, &[0; 4])),
    ]);
    let l = r.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].outcome, l[0].error_code.as_deref()),
        (Outcome::Abandoned, None)
    );
    assert_eq!(l[0].auth_method.as_deref(), Some("md5"));
    // A start-up the server never answered did not succeed.
    let r = run(&[d(C, 1, startup(&[("user", "dave")]))]);
    assert_eq!(r.logins()[0].outcome, Outcome::Failure);
    // The password sent, then the connection gone before the verdict: not abandoned.
    let r = run(&[
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, auth(3, &[])),
        d(C, 3, password("canary-literal-4242")),
    ]);
    assert_eq!(r.logins()[0].outcome, Outcome::Failure);
}

#[test]
fn too_many_connections_53300() {
    let r = run(&[
        d(C, 1, startup(&[("user", "x")])),
        d(
            S,
            2,
            error("FATAL", "53300", "sorry, too many clients already"),
        ),
    ]);
    assert_eq!(r.logins()[0].error_code.as_deref(), Some("53300"));
}

#[test]
fn ssl_request_accepted_is_encrypted() {
    let steps = vec![
        d(C, 1, code_packet(messages::SSL_REQUEST)),
        d(S, 2, b"S".to_vec()),
        d(
            C,
            3,
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        ),
        d(S, 4, vec![0x16, 0x03, 0x03, 0x00, 0x7a, 0x02]),
    ];
    let r = assert_split_invariant(&steps, false);
    assert!(r.encrypted);
    assert!(r.records.is_empty(), "no login record for a TLS session");
    assert_eq!(r.stats.tls_sessions, 1);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn ssl_refused_then_plaintext_and_gssenc() {
    let mut steps = vec![
        d(C, 0, code_packet(messages::GSSENC_REQUEST)),
        d(S, 0, b"N".to_vec()),
        d(C, 0, code_packet(messages::SSL_REQUEST)),
        d(S, 0, b"N".to_vec()),
    ];
    steps.extend(login_steps());
    let r = assert_split_invariant(&steps, false);
    assert!(!r.encrypted);
    assert_eq!(r.logins().len(), 1);
    assert_eq!(r.logins()[0].outcome, Outcome::Success);

    let r = run(&[
        d(C, 1, code_packet(messages::GSSENC_REQUEST)),
        d(S, 2, b"G".to_vec()),
        d(C, 3, vec![0x60, 0x82]),
    ]);
    assert!(r.encrypted);
    assert_eq!(r.stats.tls_sessions, 1);

    // Direct TLS (PostgreSQL 17 sslnegotiation=direct).
    let r = run(&[d(C, 1, vec![0x16, 0x03, 0x01, 0x00, 0xf4, 0x01])]);
    assert!(r.encrypted);
}

#[test]
fn cancel_request_yields_nothing() {
    let r = run(&[d(C, 1, cancel())]);
    assert!(r.records.is_empty());
    assert_eq!(r.stats, DecoderStats::default());
}

/// The decoder tells what the connection was for: the detectors take a cancel for no probe.
#[test]
fn a_cancel_request_connection_says_so() {
    let mut h = Harness::new(
        Box::new(PostgresDecoder::new(false)),
        testkit::endpoint(Protocol::Postgres),
    );
    assert_eq!(h.decoder().purpose(), Purpose::Session);
    h.data(C, 1, &cancel());
    assert_eq!(h.decoder().purpose(), Purpose::Cancel);
}

#[test]
fn other_protocols_never_decoded() {
    let r = run(&[
        d(C, 1, b"GET / HTTP/1.1\r\nHost: db\r\n\r\n".to_vec()),
        d(S, 2, b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
    ]);
    assert!(r.records.is_empty());
    assert_eq!(r.stats.malformed, 1);
    assert!(r.stats.skipped_bytes > 0);
    // A MySQL greeting and login on a PostgreSQL port.
    let mut greet = vec![0x4a, 0, 0, 0, 0x0a];
    greet.extend_from_slice(b"8.0.35\0");
    greet.extend_from_slice(&[0x41; 40]);
    let r = run(&[
        d(S, 1, greet.clone()),
        d(C, 2, vec![0x55, 0, 0, 1, 0x8d, 0xa6, 0xff, 0x19]),
        d(S, 3, greet),
    ]);
    assert!(r.records.is_empty());
    let r = run_with(
        &[
            d(C, 1, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            d(S, 2, b"HTTP/1.1 200 OK\r\n".to_vec()),
        ],
        true,
        true,
        &|_, _| vec![],
    );
    assert!(r.records.is_empty());
}

// ---- simple query ----

fn ready_steps() -> Vec<Step> {
    login_steps()
}

#[test]
fn simple_query_rows_latency_bytes() {
    let mut steps = ready_steps();
    let q = query("SELECT * FROM t WHERE name = 'canary-literal-4242'");
    let resp1 = cat(&[
        row_desc(&["a", "b"]),
        data_row(&[b"1", b"x"]),
        data_row(&[b"2", b"y"]),
    ]);
    let resp2 = cat(&[data_row(&[b"3", b"z"]), complete("SELECT 3"), ready(b'I')]);
    let (ql, rl) = (q.len() as u64, (resp1.len() + resp2.len()) as u64);
    steps.extend([d(C, 100, q), d(S, 103, resp1), d(S, 110, resp2)]);
    let r = assert_split_invariant(&steps, false);
    let qs = r.queries();
    assert_eq!(qs.len(), 1);
    let q = qs[0];
    assert_eq!(q.verb, "SELECT");
    assert_eq!(q.fingerprint, "select * from t where name = ?");
    assert_eq!(q.query, None);
    assert_eq!(q.rows, Some(3));
    assert_eq!(q.error_code, None);
    assert_eq!(q.latency_first_byte_us, Some(3000));
    assert_eq!(q.latency_us, 10_000);
    assert_eq!((q.bytes_request, q.bytes_response), (ql, rl));
    assert!(!q.prepared);
    assert_eq!(q.user.as_deref(), Some("alice"));
    assert_eq!(q.database.as_deref(), Some("shop"));
    assert_eq!(q.ts.ns(), 100_000_000);
    assert_eq!(q.ts.rfc3339(), "1970-01-01T00:00:00.100000Z");
    assert!(!r.json().contains("canary-literal-4242"));
}

#[test]
fn redaction_off_keeps_text() {
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SELECT 'canary-literal-4242'")),
        d(
            S,
            101,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"canary-literal-4242"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        d(C, 102, parse("", "SELECT $1")),
        d(
            C,
            102,
            cat(&[
                bind("", "", &[b"canary-literal-4242"]),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            103,
            cat(&[
                parse_complete(),
                bind_complete(),
                data_row(&[b"canary-literal-4242"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = run_with(&steps, false, false, &|_, _| vec![]);
    let qs = r.queries();
    assert_eq!(qs[0].query.as_deref(), Some("SELECT 'canary-literal-4242'"));
    assert_eq!(qs[1].query.as_deref(), Some("SELECT $1"));
    // Bind parameters never appear, even with redaction off.
    assert_eq!(r.json().matches("canary-literal-4242").count(), 1);
    let r = run(&steps);
    assert!(r.queries().iter().all(|q| q.query.is_none()));
    assert!(!r.json().contains("canary"));
}

#[test]
fn multi_statement_query_one_record() {
    let mut steps = ready_steps();
    steps.extend([
        d(
            C,
            100,
            query("BEGIN; UPDATE t SET a = 1; SELECT * FROM t; SHOW work_mem; COMMIT"),
        ),
        d(
            S,
            105,
            cat(&[
                complete("BEGIN"),
                complete("UPDATE 4"),
                row_desc(&["a"]),
                data_row(&[b"1"]),
                data_row(&[b"1"]),
                complete("SELECT 2"),
                row_desc(&["work_mem"]),
                data_row(&[b"4MB"]),
                complete("SHOW"),
                complete("COMMIT"),
                ready(b'I'),
            ]),
        ),
        d(C, 200, query("SELECT 1; SELECT 1/0; SELECT 2")),
        d(
            S,
            201,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                row_desc(&["x"]),
                error("ERROR", "22012", "division by zero"),
                ready(b'E'),
            ]),
        ),
        d(C, 300, query("")),
        d(S, 301, cat(&[empty(), ready(b'I')])),
        d(C, 400, query("SET x = 1")),
        d(S, 401, cat(&[complete("SET"), ready(b'I')])),
    ]);
    let r = assert_split_invariant(&steps, false);
    let qs = r.queries();
    assert_eq!(qs.len(), 4);
    assert_eq!(qs[0].verb, "BEGIN");
    assert_eq!(qs[0].rows, Some(4 + 2 + 1));
    assert_eq!(qs[1].rows, Some(1));
    assert_eq!(qs[1].error_code.as_deref(), Some("22012"));
    assert_eq!(qs[2].rows, None);
    assert_eq!(qs[2].verb, "");
    assert_eq!(qs[3].rows, None);
    assert_eq!(qs[3].verb, "SET");
}

#[test]
fn notices_notifications_parameter_status_end_nothing() {
    let mut steps = ready_steps();
    steps.extend([
        d(S, 50, notification("chan", "idle payload")),
        d(C, 100, query("DO $$ BEGIN RAISE NOTICE 'hi'; END $$")),
        d(S, 102, notice("hi")),
        d(
            S,
            104,
            cat(&[
                notification("chan", "x"),
                complete("DO"),
                param_status("TimeZone", "UTC"),
            ]),
        ),
        d(S, 106, ready(b'I')),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].verb, "DO");
    assert_eq!(q[0].latency_us, 6000);
    assert_eq!(q[0].latency_first_byte_us, Some(2000));
}

#[test]
fn copy_out_and_in() {
    let mut steps = ready_steps();
    let cd = copy_data(b"1\tcanary-literal-4242\n");
    steps.extend([
        d(C, 100, query("COPY t TO STDOUT")),
        d(
            S,
            101,
            cat(&[
                copy_response(b'H', 2),
                copy_data(b"1\ta\n"),
                copy_data(b"2\tb\n"),
                copy_done(),
                complete("COPY 2"),
                ready(b'I'),
            ]),
        ),
        d(C, 200, query("COPY t FROM STDIN")),
        d(S, 201, copy_response(b'G', 2)),
        d(
            C,
            202,
            cat(&[cd.clone(), cd.clone(), cd.clone(), copy_done()]),
        ),
        d(S, 203, cat(&[complete("COPY 3"), ready(b'I')])),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].verb.as_str(), q[0].rows), ("COPY", Some(2)));
    assert_eq!((q[1].verb.as_str(), q[1].rows), ("COPY", Some(3)));
    assert_eq!(
        q[1].bytes_request,
        query("COPY t FROM STDIN").len() as u64 + 3 * cd.len() as u64 + 5
    );
    assert_eq!(q[1].latency_us, 3000);
    assert!(!r.json().contains("canary"));
}

// ---- extended query ----

#[test]
fn pipelined_extended_queries() {
    let mut steps = ready_steps();
    let req = cat(&[
        parse("", "SELECT * FROM t WHERE id = $1"),
        bind("", "", &[b"7"]),
        describe(b'P', ""),
        execute("", 0),
        parse("", "UPDATE t SET a = $1 WHERE id = $2"),
        bind("", "", &[b"1", b"2"]),
        execute("", 0),
        parse("", "INSERT INTO t VALUES ($1)"),
        bind("", "", &[b"9"]),
        execute("", 0),
        sync(),
    ]);
    steps.extend([
        d(C, 100, req),
        d(
            S,
            101,
            cat(&[
                parse_complete(),
                bind_complete(),
                row_desc(&["id"]),
                data_row(&[b"7"]),
                complete("SELECT 1"),
            ]),
        ),
        d(
            S,
            102,
            cat(&[parse_complete(), bind_complete(), complete("UPDATE 5")]),
        ),
        d(
            S,
            103,
            cat(&[
                parse_complete(),
                bind_complete(),
                complete("INSERT 0 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 3);
    assert_eq!(
        q.iter()
            .map(|q| (q.verb.as_str(), q.rows, q.latency_us, q.prepared))
            .collect::<Vec<_>>(),
        [
            ("SELECT", Some(1), 1000, true),
            ("UPDATE", Some(5), 2000, true),
            ("INSERT", Some(1), 3000, true)
        ]
    );
    assert_eq!(q[0].fingerprint, "select * from t where id = ?");
    assert_eq!(q[2].fingerprint, "insert into t values (?+)");
    assert_eq!(q[1].latency_first_byte_us, Some(2000));
    let parts = [
        parse("", "UPDATE t SET a = $1 WHERE id = $2"),
        bind("", "", &[b"1", b"2"]),
        execute("", 0),
    ];
    assert_eq!(
        q[1].bytes_request,
        parts.iter().map(|p| p.len() as u64).sum::<u64>()
    );
    assert_eq!(q[1].bytes_response, 5 + 5 + 14);
}

#[test]
fn prepared_once_executed_three_times() {
    let mut steps = ready_steps();
    steps.extend([
        d(
            C,
            100,
            cat(&[
                parse("S_1", "SELECT name FROM users WHERE id = $1"),
                describe(b'S', "S_1"),
                sync(),
            ]),
        ),
        d(
            S,
            101,
            cat(&[
                parse_complete(),
                param_desc(1),
                row_desc(&["name"]),
                ready(b'I'),
            ]),
        ),
    ]);
    for i in 0..3u64 {
        let t = 200 + i * 100;
        steps.push(d(
            C,
            t,
            cat(&[bind("", "S_1", &[b"42"]), execute("", 0), sync()]),
        ));
        steps.push(d(
            S,
            t + 5,
            cat(&[
                bind_complete(),
                data_row(&[b"x"]),
                complete("SELECT 1"),
                ready(b'T'),
            ]),
        ));
    }
    steps.push(d(C, 600, cat(&[close_msg(b'S', "S_1"), sync()])));
    steps.push(d(S, 601, cat(&[close_complete(), ready(b'I')])));
    steps.push(d(
        C,
        700,
        cat(&[bind("", "S_1", &[b"42"]), execute("", 0), sync()]),
    ));
    steps.push(d(
        S,
        701,
        cat(&[
            error(
                "ERROR",
                "26000",
                "prepared statement \"S_1\" does not exist",
            ),
            ready(b'I'),
        ]),
    ));
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 4);
    for q in &q[..3] {
        assert_eq!(q.fingerprint, "select name from users where id = ?");
        assert_eq!(q.verb, "SELECT");
        assert_eq!(q.rows, Some(1));
        assert_eq!(q.latency_us, 5000);
    }
    assert_eq!(
        (q[3].verb.as_str(), q[3].fingerprint.as_str()),
        ("EXECUTE", "execute S_1")
    );
    assert_eq!(q[3].error_code.as_deref(), Some("26000"));
}

#[test]
fn error_in_pipeline_drops_skipped_executes() {
    let mut steps = ready_steps();
    steps.extend([
        d(
            C,
            100,
            cat(&[
                parse("", "INSERT INTO t VALUES ($1)"),
                bind("", "", &[b"1"]),
                execute("", 0),
                parse("", "INSERT INTO t VALUES ($1)"),
                bind("", "", &[b"1"]),
                execute("", 0),
                parse("", "INSERT INTO t VALUES ($1)"),
                bind("", "", &[b"2"]),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            102,
            cat(&[
                parse_complete(),
                bind_complete(),
                complete("INSERT 0 1"),
                parse_complete(),
                bind_complete(),
                error(
                    "ERROR",
                    "23505",
                    "duplicate key value violates unique constraint",
                ),
                ready(b'E'),
            ]),
        ),
        d(
            C,
            200,
            cat(&[
                parse("", "SELEC 1"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            201,
            cat(&[error("ERROR", "42601", "syntax error"), ready(b'I')]),
        ),
        d(C, 300, query("SELECT 1")),
        d(
            S,
            301,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 4);
    assert_eq!((q[0].rows, q[0].error_code.as_deref()), (Some(1), None));
    assert_eq!(
        (q[1].rows, q[1].error_code.as_deref()),
        (None, Some("23505"))
    );
    assert_eq!(q[2].error_code.as_deref(), Some("42601"));
    assert_eq!(q[3].rows, Some(1));
    assert!(!q[3].prepared);
}

#[test]
fn row_limit_portal_suspended_and_named_portal() {
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, cat(&[query("BEGIN")])),
        d(S, 101, cat(&[complete("BEGIN"), ready(b'T')])),
        d(
            C,
            200,
            cat(&[
                parse("q", "SELECT * FROM big"),
                bind("cur", "q", &[]),
                execute("cur", 2),
                flush(),
            ]),
        ),
        d(
            S,
            201,
            cat(&[
                parse_complete(),
                bind_complete(),
                data_row(&[b"1"]),
                data_row(&[b"2"]),
                suspended(),
            ]),
        ),
        d(C, 300, cat(&[execute("cur", 2), flush()])),
        d(S, 302, cat(&[data_row(&[b"3"]), complete("SELECT 1")])),
        d(C, 400, cat(&[close_msg(b'P', "cur"), sync()])),
        d(S, 401, cat(&[close_complete(), ready(b'T')])),
        d(
            C,
            500,
            cat(&[
                parse("", "SELECT 1"),
                bind("", "", &[]),
                describe(b'P', ""),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            501,
            cat(&[
                parse_complete(),
                bind_complete(),
                no_data(),
                empty(),
                ready(b'T'),
            ]),
        ),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 4);
    assert_eq!(
        (q[1].rows, q[1].latency_us, q[1].fingerprint.as_str()),
        (Some(2), 1000, "select * from big")
    );
    assert_eq!(
        (q[2].rows, q[2].latency_us, q[2].fingerprint.as_str()),
        (Some(1), 2000, "select * from big")
    );
    assert_eq!(q[3].rows, None);
}

#[test]
fn query_after_unsynced_extended_messages() {
    let mut steps = ready_steps();
    steps.extend([
        d(
            C,
            100,
            cat(&[
                parse("", "SELECT 1"),
                bind("", "", &[]),
                execute("", 0),
                flush(),
            ]),
        ),
        d(
            S,
            101,
            cat(&[
                parse_complete(),
                bind_complete(),
                data_row(&[b"1"]),
                complete("SELECT 1"),
            ]),
        ),
        d(C, 200, query("SELECT 2")),
        d(
            S,
            201,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"2"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 2);
    assert_eq!(q[1].latency_us, 1000);
    assert_eq!(q[1].fingerprint, "select ?");
}

#[test]
fn function_call() {
    let mut steps = ready_steps();
    let mut f = 764u32.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    steps.extend([
        d(C, 100, msg(b'F', &f)),
        d(S, 104, cat(&[msg(b'V', &[0, 0, 0, 1, 7]), ready(b'I')])),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(
        (q[0].verb.as_str(), q[0].latency_us),
        ("FUNCTION_CALL", 4000)
    );
}

// ---- losses ----

#[test]
fn gap_inside_big_data_row() {
    let mut steps = ready_steps();
    let big = vec![b'x'; 9000];
    let row = data_row(&[&big]);
    // The kernel copied 1536 head and 128 tail bytes of the segment holding the row.
    let seg = cat(&[
        row_desc(&["blob"]),
        row,
        data_row(&[b"small"]),
        complete("SELECT 2"),
        ready(b'I'),
    ]);
    let (head, rest) = seg.split_at(1536);
    let tail_at = rest.len() - 128;
    steps.extend([
        d(C, 100, query("SELECT blob FROM files")),
        d(S, 101, head.to_vec()),
        g(S, 101, tail_at as u64),
        d(S, 101, rest[tail_at..].to_vec()),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].rows, Some(2));
    assert_eq!(q[0].bytes_response, seg.len() as u64);
    assert_eq!(r.stats.resyncs, 0);
    // Without the tag, DataRows are still countable: the gap hid no header.
    let seg = cat(&[
        data_row(&[&big]),
        data_row(&[b"y"]),
        complete("SHOW"),
        ready(b'I'),
    ]);
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SHOW blob")),
        d(S, 101, seg[..100].to_vec()),
        g(S, 101, 8000),
        d(S, 102, seg[8100..].to_vec()),
    ]);
    let r = run(&steps);
    assert_eq!(r.queries()[0].rows, Some(2));
}

/// A gap of unknown length (a layer lost a record) is never assumed to end inside the message
/// it hits: framing is found again after it, and the query still completes.
#[test]
fn a_gap_of_at_most_n_bytes_resyncs_instead_of_skipping() {
    let big = vec![b'x'; 9000];
    let seg = cat(&[
        row_desc(&["blob"]),
        data_row(&[&big]),
        data_row(&[b"small"]),
        complete("SELECT 2"),
        ready(b'I'),
    ]);
    let (head, rest) = seg.split_at(1536);
    let tail_at = rest.len() - 128;
    let run = |gap: Gap| {
        let mut h = Harness::new(
            Box::new(PostgresDecoder::new(false)),
            testkit::endpoint(Protocol::Postgres),
        );
        for s in ready_steps() {
            match s {
                Step::Data(dir, ts, b) => h.data(dir, ts, &b),
                Step::Gap(dir, ts, n) => h.gap(dir, ts, Gap::Exact(n)),
            }
        }
        h.data(C, 100, &query("SELECT blob FROM files"));
        h.data(S, 101, head);
        h.gap(S, 101, gap);
        h.data(S, 101, &rest[tail_at..]);
        h.close(200);
        h.finish()
    };
    let exact = run(Gap::Exact(tail_at as u64));
    assert_eq!(exact.stats.resyncs, 0);
    let at_most = run(Gap::AtMost(tail_at as u64));
    assert!(at_most.stats.resyncs >= 1, "{:?}", at_most.stats);
    assert_eq!(at_most.queries().len(), 1);
    assert_eq!(
        at_most.queries()[0].fingerprint,
        exact.queries()[0].fingerprint
    );
}

fn many_rows(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| data_row(&[format!("{i}").as_bytes(), b"some text value"]))
        .collect::<Vec<_>>()
        .concat()
}

#[test]
fn gap_spanning_messages_then_resync() {
    // A response whose middle (many DataRows) is missing.
    let resp = cat(&[
        row_desc(&["id", "v"]),
        many_rows(200),
        complete("SELECT 200"),
        ready(b'I'),
    ]);
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SELECT id, v FROM t")),
        d(S, 101, resp[..1000].to_vec()),
        g(S, 102, 2000),
        d(S, 103, resp[3000..].to_vec()),
        d(C, 200, query("SELECT 1")),
        d(
            S,
            201,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = assert_split_invariant(&steps, false);
    let q = r.queries();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].rows, Some(200), "from the tag");
    assert_eq!(q[0].latency_us, 3000);
    assert_eq!(q[0].latency_first_byte_us, Some(1000));
    assert_eq!(q[1].rows, Some(1));
    assert_eq!(q[1].latency_us, 1000);
    assert_eq!(r.stats.resyncs, 1);
    assert!(r.stats.skipped_bytes > 0);

    // The gap also swallowed the tag: rows unknown, latency still from ReadyForQuery.
    let resp = cat(&[
        row_desc(&["id"]),
        many_rows(100),
        complete("SELECT 100"),
        ready(b'I'),
    ]);
    let n = resp.len();
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SELECT id FROM t")),
        d(S, 101, resp[..500].to_vec()),
        g(S, 102, (n - 500 - 6) as u64),
        d(S, 103, resp[n - 6..].to_vec()),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].rows, q[0].latency_us), (None, 3000));
    assert_eq!(r.stats.resyncs, 1);

    // Gap before any response byte: the first-byte latency is unknown.
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SELECT id FROM t")),
        g(S, 102, 700),
        d(
            S,
            103,
            cat(&[
                data_row(&[b"1", b"x"]),
                data_row(&[b"2", b"y"]),
                complete("SELECT 40"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(
        (q[0].rows, q[0].latency_first_byte_us, q[0].latency_us),
        (Some(40), None, 3000)
    );
}

#[test]
fn gap_in_pipelined_extended_response() {
    let mut steps = ready_steps();
    let mut req = Vec::new();
    for i in 0..5 {
        req.extend(parse("", &format!("SELECT * FROM t{i}")));
        req.extend(bind("", "", &[]));
        req.extend(execute("", 0));
    }
    req.extend(sync());
    let mut resp = Vec::new();
    for i in 0..5 {
        resp.extend(cat(&[
            parse_complete(),
            bind_complete(),
            many_rows(30),
            complete(&format!("SELECT {}", 30 + i)),
        ]));
    }
    resp.extend(ready(b'I'));
    // Lose from inside the 2nd response to inside the 3rd.
    let per = resp.len() / 5;
    let (a, b) = (per + 100, 2 * per + 100);
    steps.extend([
        d(C, 100, req),
        d(S, 101, resp[..a].to_vec()),
        g(S, 102, (b - a) as u64),
        d(S, 103, resp[b..].to_vec()),
    ]);
    let r = run(&steps);
    let q = r.queries();
    // The 1st was complete before the loss; the 3rd to 5th are matched from the end.
    assert_eq!(
        q.iter().map(|q| q.fingerprint.as_str()).collect::<Vec<_>>(),
        [
            "select * from t0",
            "select * from t2",
            "select * from t3",
            "select * from t4"
        ]
    );
    assert_eq!(
        q.iter().map(|q| q.rows).collect::<Vec<_>>(),
        [Some(30), Some(32), Some(33), Some(34)]
    );
    assert_eq!(q[1].latency_first_byte_us, None);
    assert_eq!(q[2].latency_first_byte_us, Some(3000));
    assert_eq!(r.stats.resyncs, 1);
}

#[test]
fn request_gap_then_recovery() {
    let mut steps = ready_steps();
    steps.extend([
        d(C, 100, query("SELECT 1")),
        d(
            S,
            101,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        // A lost request segment, and its answer.
        g(C, 200, 40),
        d(
            S,
            201,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        // A batch whose start was lost.
        g(C, 300, 30),
        d(C, 300, cat(&[bind("", "", &[]), execute("", 0), sync()])),
        d(
            S,
            301,
            cat(&[
                parse_complete(),
                bind_complete(),
                complete("UPDATE 1"),
                ready(b'I'),
            ]),
        ),
        d(C, 400, query("DELETE FROM t")),
        d(S, 402, cat(&[complete("DELETE 9"), ready(b'I')])),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 2);
    assert_eq!(
        (q[1].verb.as_str(), q[1].rows, q[1].latency_us),
        ("DELETE", Some(9), 2000)
    );
}

#[test]
fn gap_inside_query_text_fingerprints_prefix() {
    let mut steps = ready_steps();
    let sql = format!(
        "SELECT * FROM t WHERE a = 'canary-literal-4242' AND b IN ({})",
        "1, ".repeat(1000) + "2"
    );
    let q = query(&sql);
    steps.extend([
        d(C, 100, q[..40].to_vec()),
        g(C, 100, (q.len() - 140) as u64),
        d(C, 100, q[q.len() - 100..].to_vec()),
        d(S, 101, cat(&[complete("SELECT 0"), ready(b'I')])),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].fingerprint, "select * from t where a = ? …");
    assert_eq!(q[0].rows, Some(0));
    assert!(!r.json().contains("canary"));
    assert_eq!(r.stats.resyncs, 0);
}

#[test]
fn mid_stream_start() {
    // Joined in the middle of a response, and of a request.
    let tail = cat(&[many_rows(3), complete("SELECT 50"), ready(b'I')]);
    let steps = vec![
        d(S, 1, tail[7..].to_vec()),
        d(C, 10, query("SELECT now()")),
        d(
            S,
            12,
            cat(&[
                row_desc(&["now"]),
                data_row(&[b"2024"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        d(
            C,
            20,
            cat(&[bind("", "S_7", &[b"1"]), execute("", 0), sync()]),
        ),
        d(
            S,
            21,
            cat(&[bind_complete(), complete("UPDATE 2"), ready(b'I')]),
        ),
        d(
            C,
            30,
            cat(&[
                parse("", "SELECT $1::int"),
                bind("", "", &[b"5"]),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            33,
            cat(&[
                parse_complete(),
                bind_complete(),
                data_row(&[b"5"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ];
    let r = assert_split_invariant(&steps, true);
    let q = r.queries();
    assert_eq!(q.len(), 3, "{q:#?}");
    assert_eq!(
        (q[0].verb.as_str(), q[0].rows, q[0].latency_us),
        ("SELECT", Some(1), 2000)
    );
    assert_eq!(q[0].user, None);
    assert_eq!(
        (q[1].verb.as_str(), q[1].fingerprint.as_str()),
        ("EXECUTE", "execute S_7")
    );
    assert_eq!(q[2].fingerprint, "select ?::int");
    assert!(r.logins().is_empty());
    assert_eq!(r.stats.resyncs, 0);

    // Joined in the middle of a long Query: its rest is skipped, its answer swallowed.
    let q1 = query(&format!(
        "SELECT * FROM accounts WHERE id IN ({})",
        "1, ".repeat(500) + "2"
    ));
    let steps = vec![
        d(C, 10, q1[900..].to_vec()),
        d(
            S,
            12,
            cat(&[data_row(&[b"x"]), complete("SELECT 1"), ready(b'I')]),
        ),
        d(C, 20, query("SELECT 2")),
        d(S, 21, cat(&[data_row(&[b"2"]), complete("SELECT 1")])),
        d(S, 23, ready(b'I')),
    ];
    let r = assert_split_invariant(&steps, true);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].fingerprint.as_str(), q[0].latency_us),
        ("select ?", 3000)
    );
}

#[test]
fn unlexable_text_is_cut_not_leaked() {
    let mut steps = ready_steps();
    steps.extend([
        d(
            C,
            100,
            query("SELECT `x FROM t WHERE a = 'canary-literal-4242'"),
        ),
        d(
            S,
            101,
            cat(&[error("ERROR", "42601", "syntax error"), ready(b'I')]),
        ),
        d(C, 200, query("SELECT \"x FROM t WHERE a = 4242")),
        d(
            S,
            201,
            cat(&[error("ERROR", "42601", "syntax error"), ready(b'I')]),
        ),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q[0].fingerprint, "select …");
    // The fingerprint itself replaces an unterminated quoted identifier.
    assert_eq!(q[1].fingerprint, "select ?");
    assert!(!r.json().contains("4242"));
}

#[test]
fn missed_syn_but_startup_seen() {
    let r = run_with(&login_steps(), true, true, &|_, _| vec![]);
    assert_eq!(r.logins().len(), 1);
    assert_eq!(r.logins()[0].outcome, Outcome::Success);
}

#[test]
fn pending_requests_are_bounded() {
    let mut steps = ready_steps();
    for i in 0..(MAX_GROUPS as u64 + 10) {
        steps.push(d(C, 100 + i, query("SELECT 1")));
    }
    steps.push(d(S, 5000, cat(&[complete("SELECT 1"), ready(b'I')])));
    let r = run(&steps);
    assert!(r.stats.pending_overflow >= MAX_GROUPS as u64);
    assert!(r.queries().len() <= 1);
}

#[test]
fn lying_lengths_count_malformed() {
    let mut steps = ready_steps();
    steps.extend([
        d(S, 50, vec![b'Z', 0, 0, 0, 2]),
        d(S, 51, vec![b'D', 0x7f, 0xff, 0xff, 0xff]),
        d(C, 100, query("SELECT 1")),
        d(
            S,
            101,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"1"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = run(&steps);
    assert!(r.stats.malformed >= 1);
    assert_eq!(r.queries().len(), 1);
}

// ---- robustness ----

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fuzz_conversation() -> Vec<Step> {
    let mut steps = login_steps();
    steps.extend([
        d(
            C,
            100,
            query("SELECT * FROM t WHERE x = 'canary-literal-4242'"),
        ),
        d(
            S,
            101,
            cat(&[
                row_desc(&["a"]),
                many_rows(20),
                complete("SELECT 20"),
                ready(b'I'),
            ]),
        ),
        d(
            C,
            102,
            cat(&[
                parse("s", "UPDATE t SET a = $1"),
                bind("", "s", &[b"canary-literal-4242"]),
                execute("", 0),
                sync(),
            ]),
        ),
        d(
            S,
            103,
            cat(&[
                parse_complete(),
                bind_complete(),
                complete("UPDATE 1"),
                ready(b'I'),
            ]),
        ),
        d(C, 104, query("COPY t FROM STDIN")),
        d(S, 105, copy_response(b'G', 1)),
        d(C, 106, cat(&[copy_data(b"1\n"), copy_done()])),
        d(S, 107, cat(&[complete("COPY 1"), notice("n"), ready(b'I')])),
        d(C, 108, terminate()),
    ]);
    steps
}

#[test]
fn fuzz_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let base = fuzz_conversation();
    // PG_FUZZ_ROUNDS=1000000 for a longer run.
    let rounds = std::env::var("PG_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for round in 0..rounds {
        let mut steps = Vec::new();
        match round % 4 {
            // random bytes in both directions
            0 => {
                for i in 0..rng.below(8) + 1 {
                    let n = rng.below(300) as usize;
                    let b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    steps.push(d(if rng.below(2) == 0 { C } else { S }, i, b));
                }
            }
            // the conversation with bytes flipped
            1 => {
                for s in &base {
                    if let Step::Data(dir, ts, b) = s {
                        let mut b = b.clone();
                        for _ in 0..rng.below(3) {
                            if !b.is_empty() {
                                let i = rng.below(b.len() as u64) as usize;
                                b[i] = rng.next() as u8;
                            }
                        }
                        steps.push(Step::Data(*dir, *ts, b));
                    }
                }
            }
            // truncated at a random point, with random gaps
            2 => {
                let cut = rng.below(base.len() as u64) as usize;
                for s in &base[..cut] {
                    if let Step::Data(dir, ts, b) = s {
                        let k = rng.below(b.len() as u64 + 1) as usize;
                        steps.push(Step::Data(*dir, *ts, b[..k].to_vec()));
                        if rng.below(3) == 0 {
                            steps.push(Step::Gap(*dir, *ts, rng.below(5000)));
                        }
                        steps.push(Step::Data(*dir, *ts, b[k..].to_vec()));
                    }
                }
            }
            // plausible-looking messages with random lengths
            _ => {
                let types = b"RK23CdcGHWDIEVvnNAtS1sZTBCdcfDEHFpPQSX";
                for i in 0..rng.below(20) + 1 {
                    let mut b = vec![types[rng.below(types.len() as u64) as usize]];
                    let len = match rng.below(4) {
                        0 => rng.below(8) as u32,
                        1 => rng.next() as u32,
                        _ => 4 + rng.below(40) as u32,
                    };
                    b.extend_from_slice(&len.to_be_bytes());
                    for _ in 0..rng.below(48) {
                        b.push(rng.next() as u8);
                    }
                    steps.push(d(if rng.below(2) == 0 { C } else { S }, i, b));
                }
            }
        }
        let mid = rng.below(2) == 0;
        let r = run_with(&steps, mid, true, &|_, n| {
            if n > 1 { vec![n / 3, n / 2] } else { vec![] }
        });
        assert!(
            !r.json().contains("canary-literal-4242"),
            "round {round}: {}",
            r.json()
        );
    }
}

#[test]
fn scan_buffer_stays_bounded() {
    let mut h = Harness::new(
        Box::new(PostgresDecoder::new(true)),
        testkit::endpoint(Protocol::Postgres),
    );
    let junk = vec![0xabu8; 1 << 20];
    for i in 0..8 {
        h.data(S, i, &junk);
        h.data(C, i, &junk);
    }
    let r = h.finish();
    assert!(r.stats.skipped_bytes >= 15 << 20);
    assert!(r.records.is_empty());
}

#[test]
fn chain_check() {
    use framer::{Chain, check_chain};
    let z = ready(b'I');
    assert_eq!(check_chain(S, &z), Chain::Accept);
    assert_eq!(check_chain(S, &z[..4]), Chain::Undecided);
    assert_eq!(
        check_chain(S, &cat(&[data_row(&[b"1"]), complete("SELECT 1")])),
        Chain::Accept
    );
    assert_eq!(check_chain(S, &cat(&[data_row(&[b"1"])])), Chain::Undecided);
    assert_eq!(check_chain(S, b"HTTP/1.1 200 OK"), Chain::Reject);
    // A column of length 4 after a value ending in '1' looks like ParseComplete.
    assert_eq!(
        check_chain(S, &[b'1', 0, 0, 0, 4, b'a', b'b', b'c', b'd', 0, 0]),
        Chain::Reject
    );
    assert_eq!(check_chain(C, &query("SELECT 1")), Chain::Accept);
    assert_eq!(
        check_chain(C, &cat(&[bind("", "", &[]), execute("", 0), sync()])),
        Chain::Accept
    );
}

#[test]
fn gap_fit_resync_after_truncated_segments() {
    // A mirror session with a packet-length cut: every segment keeps its first 62 bytes.
    let mut steps = vec![d(C, 1, startup(&[("user", "u")]))];
    let burst = cat(&[
        auth(0, &[]),
        param_status("application_name", "psql"),
        param_status("client_encoding", "UTF8"),
        param_status("DateStyle", "ISO, MDY"),
        param_status("server_version", "15.4"),
        backend_key(),
        ready(b'I'),
    ]);
    steps.extend([
        d(S, 2, burst[..62].to_vec()),
        g(S, 2, (burst.len() - 62) as u64),
    ]);
    steps.push(d(C, 10, query("SELECT pg_sleep(30)")));
    let resp = cat(&[
        row_desc(&["pg_sleep"]),
        error("ERROR", "57014", "canceling statement due to user request"),
    ]);
    steps.extend([
        d(S, 20, resp[..62].to_vec()),
        g(S, 20, (resp.len() - 62) as u64),
        d(S, 21, ready(b'I')),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].error_code.as_deref(), Some("57014"));
    assert_eq!(
        (q[0].latency_first_byte_us, q[0].latency_us),
        (Some(10_000), 11_000)
    );
    assert_eq!(r.stats.resyncs, 1);
}

#[test]
fn answer_ending_in_a_gap_is_not_given_to_the_next_query() {
    // Q1's answer loses its end (ReadyForQuery included) to a cut; the client then sends Q2,
    // whose answer is where framing is found again: Q1 is unknowable, Q2 exact.
    let mut steps = ready_steps();
    let r1 = cat(&[
        row_desc(&["a"]),
        many_rows(10),
        complete("SELECT 10"),
        ready(b'I'),
    ]);
    steps.extend([
        d(C, 100, query("SELECT a FROM t")),
        d(S, 101, r1[..60].to_vec()),
        g(S, 101, (r1.len() - 60) as u64),
        d(C, 110, query("SELECT 1/0")),
        d(
            S,
            112,
            cat(&[error("ERROR", "22012", "division by zero"), ready(b'I')]),
        ),
        d(C, 120, query("SELECT 2")),
        d(
            S,
            121,
            cat(&[
                row_desc(&["x"]),
                data_row(&[b"2"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 2, "{q:#?}");
    assert_eq!(
        (q[0].error_code.as_deref(), q[0].latency_us),
        (Some("22012"), 2000)
    );
    assert_eq!((q[1].rows, q[1].latency_us), (Some(1), 1000));
}

#[test]
fn answer_lost_with_the_next_request_is_not_misattributed() {
    // Q1's whole answer and Q2's request are lost; Q2's answer resyncs the response side
    // before the request side reports its loss. Q1 must not be completed by Q2's answer.
    let mut steps = ready_steps();
    let a1 = cat(&[
        row_desc(&["x"]),
        data_row(&[b"1"]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    steps.extend([
        d(C, 100, query("SELECT 1")),
        g(S, 103, a1.len() as u64),
        d(S, 103, cat(&[complete("BEGIN"), ready(b'T')])),
        g(C, 104, query("BEGIN").len() as u64),
        d(C, 104, query("COMMIT")),
        d(S, 106, cat(&[complete("COMMIT"), ready(b'I')])),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!((q[0].verb.as_str(), q[0].latency_us), ("COMMIT", 2000));
}

#[test]
fn lost_bytes_count_toward_a_started_answer() {
    let mut steps = ready_steps();
    let resp = cat(&[
        row_desc(&["id", "v"]),
        many_rows(300),
        complete("SELECT 300"),
        ready(b'I'),
    ]);
    steps.extend([
        d(C, 100, query("SELECT id, v FROM t")),
        d(S, 101, resp[..1536].to_vec()),
        g(S, 101, (resp.len() - 1536 - 128) as u64),
        d(S, 101, resp[resp.len() - 128..].to_vec()),
        d(C, 200, query("SELECT 2")),
    ]);
    let r = run(&steps);
    let q = r.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].rows, q[0].bytes_response),
        (Some(300), resp.len() as u64)
    );
    assert_eq!(r.stats.resyncs, 1);
}

/// An IAM authentication token's form (botocore's `generate_db_auth_token`), made-up
/// credentials, signed at 1970-01-01T00:00:00Z for 900 s.
const IAM_TOKEN: &str = "orders.abc123.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=dave&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F19700101%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=19700101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// RDS IAM authentication on PostgreSQL: the server asks for a cleartext password and the
/// client sends the token. It is recognised by its form in any slicing, its expiry is judged
/// against the login's time, and none of it is kept.
#[test]
fn iam_token_as_cleartext_password_is_an_iam_login() {
    let session = |login_ms| {
        vec![
            d(C, login_ms, startup(&[("user", "dave")])),
            d(S, login_ms + 1, auth(3, &[])),
            d(C, login_ms + 2, password(IAM_TOKEN)),
            d(
                S,
                login_ms + 3,
                error("FATAL", "28P01", "PAM authentication failed"),
            ),
        ]
    };
    let r = assert_split_invariant(&session(1), false);
    let l = r.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].auth_method.as_deref(), Some("iam"));
    assert_eq!(l[0].error_code.as_deref(), Some("28P01"));
    let t = l[0].iam_token.as_ref().expect("token facts");
    assert_eq!(
        (t.signed_at.ns(), t.expires_at.ns(), t.expired),
        (0, 900_000_000_000, false)
    );
    let json = r.json();
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        "0123456789abcdef01",
        "DBUser",
        "X-Amz",
    ] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
    // 901 s after signing: expired.
    let r = run(&session(901_000));
    assert!(r.logins()[0].iam_token.as_ref().unwrap().expired);
    // A plain cleartext password, and a token cut short (a snap length), are not IAM.
    let r = run(&[
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, auth(3, &[])),
        d(C, 3, password("Sup3r-Secret-Pw!")),
        d(S, 4, cat(&[auth(0, &[]), ready(b'I')])),
    ]);
    assert_eq!(r.logins()[0].auth_method.as_deref(), Some("cleartext"));
    let cut = password(IAM_TOKEN);
    let r = run(&[
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, auth(3, &[])),
        d(C, 3, cut[..200].to_vec()),
        g(C, 3, (cut.len() - 200) as u64),
        d(S, 4, cat(&[auth(0, &[]), ready(b'I')])),
    ]);
    assert_eq!(r.logins()[0].auth_method.as_deref(), Some("cleartext"));
    // SCRAM's SASLInitialResponse still names its mechanism.
    let r = run(&[
        d(C, 1, startup(&[("user", "dave")])),
        d(S, 2, sasl(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])),
        d(C, 3, sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc")),
    ]);
    assert_eq!(r.logins()[0].auth_method.as_deref(), Some("scram-sha-256"));
}
