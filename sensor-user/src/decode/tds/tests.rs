//! Byte-level tests built by hand from MS-TDS, for what no capture here covers; the real
//! captures are checked against tshark in `tests/`.

use super::tokens::tests::{done_token, error_token};
use super::*;
use crate::decode::Dir::{Request as Rq, Response as Rs};
use crate::model::{Outcome, Protocol};
use crate::testkit::{self, Harness, Run};

/// UCS-2.
fn u(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// One message in packets of at most `size` bytes (header included).
fn packets(typ: u8, payload: &[u8], size: usize, spid: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(size - 8).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        out.push(typ);
        out.push(u8::from(last));
        out.extend_from_slice(&((c.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(&spid.to_be_bytes());
        out.push((i + 1) as u8);
        out.push(0);
        out.extend_from_slice(c);
    }
    out
}

fn msg(typ: u8, payload: &[u8]) -> Vec<u8> {
    packets(typ, payload, 4096, 0)
}

fn reply(payload: &[u8]) -> Vec<u8> {
    packets(0x04, payload, 4096, 53)
}

/// PRELOGIN options: VERSION, ENCRYPTION, MARS.
fn prelogin(version: [u8; 6], encryption: u8, mars: u8) -> Vec<u8> {
    let base = 3 * 5 + 1;
    let mut v = vec![0, 0, base as u8, 0, 6];
    v.extend_from_slice(&[1, 0, (base + 6) as u8, 0, 1]);
    v.extend_from_slice(&[4, 0, (base + 7) as u8, 0, 1]);
    v.push(0xff);
    v.extend_from_slice(&version);
    v.push(encryption);
    v.push(mars);
    v
}

/// A LOGIN7 (TDS 7.4) with a password that must never surface.
pub(crate) fn login7(user: &str, password: &str, app: &str, db: &str) -> Vec<u8> {
    let fields = [
        "client-host",
        user,
        password,
        app,
        "srv",
        "",
        "ODBC",
        "",
        db,
    ];
    let mut data = Vec::new();
    let mut table = Vec::new();
    let mut off = 94usize;
    for f in fields {
        let mut b = u(f);
        if f == password {
            // Obfuscation (§2.2.6.4): nibbles swapped, then XOR 0xA5.
            for x in &mut b {
                *x = x.rotate_right(4) ^ 0xa5;
            }
        }
        table.extend_from_slice(&(off as u16).to_le_bytes());
        table.extend_from_slice(&((b.len() / 2) as u16).to_le_bytes());
        off += b.len();
        data.extend(b);
    }
    let mut v = Vec::new();
    v.extend_from_slice(&((94 + data.len()) as u32).to_le_bytes());
    v.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    v.extend_from_slice(&4096u32.to_le_bytes());
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&[0xe0, 0x03, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    v.extend(table);
    v.extend_from_slice(&[0; 6]); // ClientID
    v.extend_from_slice(&[94, 0, 0, 0]); // SSPI
    v.extend_from_slice(&[94, 0, 0, 0]); // AtchDBFile
    v.extend_from_slice(&[94, 0, 0, 0]); // ChangePassword
    v.extend_from_slice(&[0; 4]); // cbSSPILong
    assert_eq!(v.len(), 94);
    v.extend(data);
    v
}

fn envchange_db(db: &str) -> Vec<u8> {
    let mut body = vec![1, db.encode_utf16().count() as u8];
    body.extend(u(db));
    body.extend_from_slice(&[6]);
    body.extend(u("master"));
    let mut v = vec![0xe3];
    v.extend_from_slice(&(body.len() as u16).to_le_bytes());
    v.extend(body);
    v
}

fn loginack() -> Vec<u8> {
    // Interface, TDS 7.4 (big-endian), the program name, its version 16.0.4000.
    let mut body = vec![1, 0x74, 0, 0, 4, 20];
    body.extend(u("Microsoft SQL Server"));
    body.extend_from_slice(&[16, 0, 0x0f, 0xa0]);
    let mut v = vec![0xad];
    v.extend_from_slice(&(body.len() as u16).to_le_bytes());
    v.extend(body);
    v
}

/// ALL_HEADERS with a transaction descriptor.
fn all_headers() -> Vec<u8> {
    let mut v = 22u32.to_le_bytes().to_vec();
    v.extend_from_slice(&18u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&1u32.to_le_bytes());
    v
}

fn batch(sql: &str) -> Vec<u8> {
    let mut v = all_headers();
    v.extend(u(sql));
    msg(0x01, &v)
}

/// NVARCHAR parameter.
fn nvarchar(name: &str, value: &str) -> Vec<u8> {
    let mut v = vec![name.encode_utf16().count() as u8];
    v.extend(u(name));
    v.push(0);
    v.extend_from_slice(&[0xe7, 0x40, 0x1f, 9, 4, 0xd0, 0, 0x34]);
    let b = u(value);
    v.extend_from_slice(&(b.len() as u16).to_le_bytes());
    v.extend(b);
    v
}

fn int_param(value: Option<i32>, output: bool) -> Vec<u8> {
    let mut v = vec![0, u8::from(output), 0x26, 4];
    match value {
        Some(x) => {
            v.push(4);
            v.extend_from_slice(&x.to_le_bytes());
        }
        None => v.push(0),
    }
    v
}

fn rpc(proc_id: u16, params: &[Vec<u8>]) -> Vec<u8> {
    let mut v = all_headers();
    v.extend_from_slice(&0xffffu16.to_le_bytes());
    v.extend_from_slice(&proc_id.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    for p in params {
        v.extend_from_slice(p);
    }
    msg(0x03, &v)
}

fn rpc_named(name: &str, params: &[Vec<u8>]) -> Vec<u8> {
    let mut v = all_headers();
    v.extend_from_slice(&(name.encode_utf16().count() as u16).to_le_bytes());
    v.extend(u(name));
    v.extend_from_slice(&0u16.to_le_bytes());
    for p in params {
        v.extend_from_slice(p);
    }
    msg(0x03, &v)
}

/// A reply with one INT column, `n` rows and a final counted DONE.
fn rows_reply(n: u32) -> Vec<u8> {
    let mut v = vec![0x81, 1, 0, 0, 0, 0, 0, 0, 0, 0x26, 4, 1];
    v.extend(u("a"));
    for i in 0..n {
        v.extend_from_slice(&[0xd1, 4]);
        v.extend_from_slice(&i.to_le_bytes());
    }
    v.extend(done_token(0xfd, 0x10, u64::from(n)));
    v
}

/// A RETURNVALUE of an INT output parameter (a prepared handle).
fn return_handle(h: i32) -> Vec<u8> {
    let mut v = vec![0xac, 0, 0, 0, 1];
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0x26, 4, 4]);
    v.extend_from_slice(&h.to_le_bytes());
    v
}

fn harness() -> Harness {
    Harness::new(
        Box::new(TdsDecoder::new(false)),
        testkit::endpoint(Protocol::Mssql),
    )
}

/// PRELOGIN both ways (no encryption) and a login that succeeds.
fn login(h: &mut Harness, t: &mut u64) {
    let mut step = |h: &mut Harness, d, b: &[u8]| {
        *t += 1000;
        h.data(d, *t, b);
    };
    step(h, Rq, &msg(0x12, &prelogin([0; 6], 2, 0)));
    step(h, Rs, &reply(&prelogin([16, 0, 0x0f, 0xa0, 0, 0], 2, 0)));
    step(
        h,
        Rq,
        &msg(
            0x10,
            &login7("app_user", "Pa55-canary-tds", "payroll-app", "payroll"),
        ),
    );
    let mut r = envchange_db("payroll");
    r.extend(loginack());
    r.extend(done_token(0xfd, 0, 0));
    step(h, Rs, &reply(&r));
}

#[test]
fn login_batches_rpcs_prepared_errors_and_latency() {
    let mut h = harness().redact(false);
    let mut t = 0;
    login(&mut h, &mut t);
    // A batch whose 1000 rows come in 2 KiB packets, answered 7 µs after the request.
    h.data(
        Rq,
        10_000,
        &batch("SELECT [a] FROM [dbo].[t] WHERE b = N'x'"),
    );
    let big = packets(0x04, &rows_reply(1000), 2048, 53);
    h.data(Rs, 17_000, &big[..2048]);
    h.data(Rs, 19_000, &big[2048..]);
    // sp_executesql: the statement is the first parameter.
    h.data(
        Rq,
        30_000,
        &rpc(
            10,
            &[
                nvarchar("@stmt", "UPDATE t SET a = @P1 WHERE id = @P2"),
                nvarchar("@params", "@P1 int, @P2 int"),
            ],
        ),
    );
    h.data(Rs, 31_000, &reply(&done_token(0xff, 0x10, 1)));
    // sp_prepare returns handle 7 (RETURNVALUE); sp_execute 7 runs it.
    h.data(
        Rq,
        40_000,
        &rpc(
            11,
            &[
                int_param(None, true),
                nvarchar("@params", "@P1 int"),
                nvarchar("@stmt", "DELETE FROM t WHERE id = @P1"),
            ],
        ),
    );
    let mut r = return_handle(7);
    r.extend(done_token(0xfe, 0, 0));
    h.data(Rs, 41_000, &reply(&r));
    h.data(
        Rq,
        50_000,
        &rpc(12, &[int_param(Some(7), false), int_param(Some(3), false)]),
    );
    h.data(Rs, 52_000, &reply(&done_token(0xfe, 0x10, 1)));
    // A named procedure, and an error.
    h.data(
        Rq,
        60_000,
        &rpc_named("[dbo].[GetPay]", &[int_param(Some(1), false)]),
    );
    let mut r = error_token(2812, 62, 16, "Could not find stored procedure");
    r.extend(done_token(0xfe, 0x02, 0));
    h.data(Rs, 61_000, &reply(&r));
    // USE: the database changes for what follows.
    h.data(Rq, 70_000, &batch("use hr"));
    let mut r = envchange_db("hr");
    r.extend(done_token(0xfd, 0, 0));
    h.data(Rs, 71_000, &reply(&r));
    h.data(Rq, 80_000, &batch("select 1"));
    h.data(Rs, 81_000, &reply(&rows_reply(1)));
    h.close(90_000);
    let run = h.finish();
    let l = run.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Success);
    assert_eq!(l[0].user.as_deref(), Some("app_user"));
    assert_eq!(l[0].database.as_deref(), Some("payroll"));
    assert_eq!(l[0].application.as_deref(), Some("payroll-app"));
    assert_eq!(l[0].auth_method.as_deref(), Some("sql"));
    assert_eq!(l[0].server_version.as_deref(), Some("16.0.4000"));
    assert_eq!(
        (l[0].client_host.as_deref(), l[0].client_library.as_deref()),
        (Some("client-host"), Some("ODBC"))
    );
    let q = run.queries();
    let got: Vec<_> = q
        .iter()
        .map(|q| {
            (
                q.verb.as_str(),
                q.fingerprint.as_str(),
                q.rows,
                q.error_code.as_deref(),
                q.prepared,
                q.database.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "SELECT",
                "select [a] from [dbo].[t] where b = ?",
                Some(1000),
                None,
                false,
                Some("payroll")
            ),
            (
                "UPDATE",
                "update t set a = ? where id = ?",
                Some(1),
                None,
                false,
                Some("payroll")
            ),
            (
                "PREPARE",
                "delete from t where id = ?",
                None,
                None,
                false,
                Some("payroll")
            ),
            (
                "DELETE",
                "delete from t where id = ?",
                Some(1),
                None,
                true,
                Some("payroll")
            ),
            (
                "EXEC",
                "exec [dbo].[GetPay]",
                None,
                Some("2812"),
                false,
                Some("payroll")
            ),
            ("USE", "use hr", None, None, false, Some("payroll")),
            ("SELECT", "select ?", Some(1), None, false, Some("hr")),
        ]
    );
    // Latency from the request's first byte: first reply byte at 7 µs, EOM at 9 µs.
    assert_eq!(q[0].latency_first_byte_us, Some(7));
    assert_eq!(q[0].latency_us, 9);
    assert_eq!(q[0].bytes_response, big.len() as u64);
    assert!(!run.json().contains("Pa55-canary-tds"));
    assert_eq!(run.stats.malformed, 0);
}

#[test]
fn failed_login_18456_and_redaction() {
    let mut h = harness();
    h.data(Rq, 1000, &msg(0x12, &prelogin([0; 6], 2, 0)));
    h.data(Rs, 2000, &reply(&prelogin([15, 0, 0x10, 0x88, 0, 0], 2, 0)));
    h.data(
        Rq,
        3000,
        &msg(0x10, &login7("sa", "Pa55-canary-tds", "sqlcmd", "")),
    );
    let mut r = error_token(18456, 1, 14, "Login failed for user 'sa'.");
    r.extend(done_token(0xfd, 0x02, 0));
    h.data(Rs, 4000, &reply(&r));
    h.close(5000);
    let run = h.finish();
    let l = run.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (
            l[0].outcome,
            l[0].error_code.as_deref(),
            l[0].user.as_deref()
        ),
        (Outcome::Failure, Some("18456"), Some("sa"))
    );
    assert_eq!(l[0].server_version.as_deref(), Some("15.0.4232"));
    assert!(run.queries().is_empty());
    assert!(!run.json().contains("canary"));
}

#[test]
fn redaction_keeps_literals_and_parameters_out() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    h.data(
        Rq,
        10_000,
        &batch("select * from t where secret = 'canary-literal-tds'"),
    );
    h.data(Rs, 11_000, &reply(&rows_reply(0)));
    h.data(
        Rq,
        20_000,
        &rpc(
            10,
            &[
                nvarchar("@stmt", "select @P1"),
                nvarchar("@params", "@P1 nvarchar(40)"),
                nvarchar("@P1", "canary-param-tds"),
            ],
        ),
    );
    h.data(Rs, 21_000, &reply(&rows_reply(1)));
    h.close(30_000);
    let run = h.finish();
    assert_eq!(run.queries().len(), 2);
    let json = run.json();
    assert!(!json.contains("canary"), "{json}");
}

#[test]
fn attention_cancels_and_is_acknowledged() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    h.data(Rq, 10_000, &batch("waitfor delay '00:10'"));
    h.data(Rq, 15_000, &msg(0x06, &[]));
    h.data(Rs, 16_000, &reply(&done_token(0xfd, 0x20, 0)));
    h.data(Rq, 20_000, &batch("select 1"));
    h.data(Rs, 21_000, &reply(&rows_reply(1)));
    h.close(30_000);
    let run = h.finish();
    let q: Vec<_> = run
        .queries()
        .iter()
        .map(|q| (q.verb.clone(), q.error_code.clone(), q.latency_us))
        .collect();
    assert_eq!(
        q,
        vec![
            ("WAITFOR".into(), Some("cancelled".into()), 6),
            ("ATTENTION".into(), None, 1),
            ("SELECT".into(), None, 1),
        ]
    );
}

#[test]
fn transaction_manager_and_reset_connection() {
    let mut h = harness().redact(false);
    let mut t = 0;
    login(&mut h, &mut t);
    let mut tm = all_headers();
    tm.extend_from_slice(&5u16.to_le_bytes());
    tm.extend_from_slice(&[0, 0]);
    h.data(Rq, 10_000, &msg(0x0e, &tm));
    h.data(Rs, 11_000, &reply(&done_token(0xfd, 0, 0)));
    // sp_prepexec remembers handle 9; a RESETCONNECTION request forgets it.
    h.data(
        Rq,
        20_000,
        &rpc(
            13,
            &[
                int_param(None, true),
                nvarchar("@params", ""),
                nvarchar("@stmt", "select 2"),
            ],
        ),
    );
    let mut r = rows_reply(1);
    r.extend(return_handle(9));
    r.extend(done_token(0xfe, 0, 0));
    h.data(Rs, 21_000, &reply(&r));
    let mut e = rpc(12, &[int_param(Some(9), false)]);
    e[1] |= 0x08;
    h.data(Rq, 30_000, &e);
    h.data(Rs, 31_000, &reply(&done_token(0xfe, 0, 0)));
    h.close(40_000);
    let run = h.finish();
    let q: Vec<_> = run
        .queries()
        .iter()
        .map(|q| (q.verb.clone(), q.fingerprint.clone()))
        .collect();
    assert_eq!(
        q,
        vec![
            ("BEGIN".into(), "TM_BEGIN_XACT".into()),
            ("SELECT".into(), "select ?".into()),
            ("SP_EXECUTE".into(), "sp_execute".into()),
        ]
    );
}

#[test]
fn gaps_resync_and_every_byte_is_safe() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    h.data(Rq, 10_000, &batch("select 1"));
    let big = packets(0x04, &rows_reply(2000), 4096, 53);
    // A gap that swallows a header: the reply's framing is lost; the next request ends it.
    h.data(Rs, 11_000, &big[..3000]);
    h.gap(Rs, 12_000, Gap::Exact(6000));
    h.data(Rs, 13_000, &big[9000..]);
    h.data(Rq, 20_000, &batch("select 2"));
    h.data(Rs, 21_000, &reply(&rows_reply(1)));
    h.close(30_000);
    let run = h.finish();
    let q = run.queries();
    assert_eq!(q.len(), 2);
    assert_eq!(q[1].rows, Some(1));
    assert_eq!(q[1].latency_us, 1);
    assert!(q[0].bytes_response > 3000);

    // Arbitrary bytes, sliced anywhere, never panic.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let mut h = Harness::new(
            Box::new(TdsDecoder::new(seed & 1 == 0)),
            testkit::endpoint(Protocol::Mssql),
        );
        let mut b = batch("select 1");
        b.extend(reply(&rows_reply(3)));
        for x in &mut b {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(7) {
                *x = seed as u8;
            }
        }
        for (i, c) in b.chunks(1 + (seed % 9) as usize).enumerate() {
            h.data(if i % 3 == 0 { Rs } else { Rq }, i as u64, c);
        }
        h.close(1 << 20);
        let _: Run = h.finish();
    }
}

#[test]
fn mid_stream_start_finds_requests_and_replies() {
    let mut h = Harness::new(
        Box::new(TdsDecoder::new(true)),
        testkit::endpoint(Protocol::Mssql),
    );
    // The tail of an earlier reply, then a whole exchange.
    let old = reply(&rows_reply(50));
    h.data(Rs, 1000, &old[old.len() - 100..]);
    let mut two = batch("select name from sys.databases");
    two.extend(batch("select 3"));
    h.data(Rq, 2000, &two[..two.len() / 2 + 3]);
    h.data(Rq, 2500, &two[two.len() / 2 + 3..]);
    h.data(Rs, 3000, &reply(&rows_reply(4)));
    h.close(4000);
    let run = h.finish();
    let q: Vec<_> = run
        .queries()
        .iter()
        .map(|q| (q.fingerprint.clone(), q.rows))
        .collect();
    assert!(q.contains(&("select ?".into(), Some(4))), "{q:?}");
}

#[test]
fn batched_rpc_calls_each_get_their_part_of_the_reply() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    // Two named calls in one RPC message, separated by the 7.2 batch flag.
    let mut v = all_headers();
    for (i, name) in ["p_one", "p_two"].iter().enumerate() {
        if i > 0 {
            v.push(0xff);
        }
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend(u(name));
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend(int_param(Some(5), false));
    }
    h.data(Rq, 10_000, &msg(0x03, &v));
    let mut r = rows_reply(3);
    r.truncate(r.len() - 13);
    r.extend(done_token(0xff, 0x11, 3));
    r.extend(done_token(0xfe, 0x01, 0));
    r.extend(error_token(547, 0, 16, "conflict"));
    r.extend(done_token(0xff, 0x02, 0));
    r.extend(done_token(0xfe, 0x02, 0));
    h.data(Rs, 12_000, &reply(&r));
    h.close(20_000);
    let run = h.finish();
    let q: Vec<_> = run
        .queries()
        .iter()
        .map(|q| {
            (
                q.fingerprint.clone(),
                q.rows,
                q.error_code.clone(),
                q.latency_us,
            )
        })
        .collect();
    assert_eq!(
        q,
        vec![
            ("exec p_one".into(), Some(3), None, 2),
            ("exec p_two".into(), None, Some("547".into()), 2),
        ]
    );
}

/// A TLS record (content type, version 1.2) around `body`.
fn tls_record(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// Login-only encryption (§3.3.5.3) with nothing to read the TLS: the handshake in PRELOGIN
/// packets both ways, the LOGIN7 as one bare record, then plain TDS. The session comes back
/// to plaintext: the login's outcome (without its user) and the queries are read.
#[test]
fn login_only_tls_comes_back_to_plaintext_without_keys() {
    for enc in [0u8, 1] {
        let mut h = harness();
        h.data(Rq, 1000, &msg(0x12, &prelogin([0; 6], 0, 0)));
        h.data(
            Rs,
            2000,
            &reply(&prelogin([16, 0, 0x0f, 0xa0, 0, 0], enc, 0)),
        );
        // ClientHello, then the server's flight, then the client's Finished: all wrapped.
        h.data(
            Rq,
            3000,
            &msg(0x12, &tls_record(22, &[1, 0, 0, 4, 3, 3, 0, 0])),
        );
        h.data(
            Rs,
            4000,
            &packets(0x12, &tls_record(22, &[2, 0, 0, 2, 3, 3]), 4096, 0),
        );
        h.data(Rq, 5000, &msg(0x12, &tls_record(20, &[1])));
        h.data(Rs, 5500, &packets(0x12, &tls_record(20, &[1]), 4096, 0));
        // The LOGIN7, protected.
        h.data(Rq, 6000, &tls_record(23, &[0x5a; 180]));
        if enc == 0 {
            // Login-only: the server answers in the clear.
            let mut r = envchange_db("payroll");
            r.extend(loginack());
            r.extend(done_token(0xfd, 0, 0));
            h.data(Rs, 7000, &reply(&r));
            h.data(Rq, 8000, &batch("select 1"));
            h.data(Rs, 9000, &reply(&rows_reply(1)));
        } else {
            // Full encryption: everything after is TLS.
            h.data(Rs, 7000, &tls_record(23, &[0x33; 90]));
            h.data(Rq, 8000, &tls_record(23, &[0x44; 60]));
        }
        h.close(10_000);
        let run = h.finish();
        if enc == 0 {
            let l = run.logins();
            assert_eq!(l.len(), 1);
            assert_eq!(
                (l[0].outcome, l[0].user.as_deref(), l[0].tls),
                (Outcome::Success, None, true)
            );
            assert_eq!(l[0].server_version.as_deref(), Some("16.0.4000"));
            let q = run.queries();
            assert_eq!(q.len(), 1);
            assert_eq!(
                (
                    q[0].fingerprint.as_str(),
                    q[0].rows,
                    q[0].database.as_deref()
                ),
                ("select ?", Some(1), Some("payroll"))
            );
            assert!(!run.encrypted, "the session left TLS");
        } else {
            assert!(run.logins().is_empty() && run.queries().is_empty());
            assert!(run.encrypted);
        }
        assert_eq!(run.stats.tls_sessions, 1);
    }
}

/// TDS 8.0 (strict): TLS before anything else; the session switches at the first byte.
#[test]
fn strict_tls_starts_at_the_first_byte() {
    let mut h = harness();
    h.data(Rq, 1000, &tls_record(22, &[1, 0, 0, 4, 3, 3, 0, 0]));
    h.data(Rs, 2000, &tls_record(22, &[2, 0, 0, 2, 3, 3]));
    h.close(3000);
    let run = h.finish();
    assert!(run.encrypted);
    assert_eq!(run.stats.tls_sessions, 1);
    assert!(run.records.is_empty());
    assert_eq!(run.stats.malformed, 0);
}

/// An SMP packet (MC-SMP §2.2.1).
fn smp(flags: u8, sid: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x53, flags];
    v.extend_from_slice(&sid.to_le_bytes());
    v.extend_from_slice(&((16 + payload.len()) as u32).to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// MARS: two sessions in one connection, their requests and replies interleaved; each
/// reply pairs with its own session's request.
#[test]
fn mars_sessions_pair_their_own_replies() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    h.data(Rq, 10_000, &smp(0x01, 0, 0, &[]));
    h.data(Rq, 10_000, &smp(0x01, 1, 0, &[]));
    h.data(Rs, 10_500, &smp(0x02, 0, 0, &[]));
    let a = batch("select a from t");
    let b = batch("update t set b = 1");
    // Session 0's request split over two SMP DATA packets.
    let mut two = smp(0x08, 0, 1, &a[..20]);
    two.extend(smp(0x08, 0, 2, &a[20..]));
    h.data(Rq, 11_000, &two);
    h.data(Rq, 12_000, &smp(0x08, 1, 1, &b));
    h.data(
        Rs,
        15_000,
        &smp(0x08, 1, 1, &reply(&done_token(0xfd, 0x10, 4))),
    );
    h.gap(Rs, 15_500, Gap::Exact(0));
    h.data(Rs, 18_000, &smp(0x08, 0, 1, &reply(&rows_reply(2))));
    h.data(Rq, 19_000, &smp(0x04, 1, 2, &[]));
    h.close(20_000);
    let run = h.finish();
    let mut q: Vec<_> = run
        .queries()
        .iter()
        .map(|q| (q.verb.clone(), q.rows, q.latency_us, q.user.clone()))
        .collect();
    q.sort();
    assert_eq!(
        q,
        vec![
            ("SELECT".into(), Some(2), 7, Some("app_user".into())),
            ("UPDATE".into(), Some(4), 3, Some("app_user".into())),
        ]
    );
    assert_eq!(run.stats.malformed, 0);
}

/// A message the client withdraws (IGNORE with EOM on its last packet) is no request.
#[test]
fn an_ignored_message_is_no_request() {
    let mut h = harness();
    let mut t = 0;
    login(&mut h, &mut t);
    let mut b = packets(
        0x01,
        &{
            let mut v = all_headers();
            v.extend(u(&"select 1 ".repeat(100)));
            v
        },
        512,
        0,
    );
    // The last packet (packets are 512 bytes but the last): EOM | IGNORE.
    let last = (b.len() - 1) / 512 * 512;
    assert_eq!(b[last + 1], 0x01);
    b[last + 1] = 0x03;
    h.data(Rq, 10_000, &b);
    h.data(Rq, 20_000, &batch("select 2"));
    h.data(Rs, 21_000, &reply(&rows_reply(1)));
    h.close(30_000);
    let run = h.finish();
    let q = run.queries();
    assert_eq!(
        q.len(),
        1,
        "{:?}",
        q.iter().map(|q| &q.fingerprint).collect::<Vec<_>>()
    );
    assert_eq!(q[0].rows, Some(1));
}

/// A mid-stream start that catches a login reads it.
#[test]
fn mid_stream_start_at_a_login_reads_it() {
    let mut h: Harness = Harness::new(
        Box::new(TdsDecoder::new(true)),
        testkit::endpoint(Protocol::Mssql),
    );
    let mut t = 0;
    login(&mut h, &mut t);
    h.data(Rq, 10_000, &batch("select 1"));
    h.data(Rs, 11_000, &reply(&rows_reply(1)));
    h.close(20_000);
    let run = h.finish();
    let l = run.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].user.as_deref(), Some("app_user"));
    let q = run.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].user.as_deref(), Some("app_user"));
}

/// The TDS 4.2 login (type 2, fixed 30-byte fields: what hydra's and medusa's mssql modules
/// send) is a login attempt: its user, and the reply's outcome; no query.
#[test]
fn an_old_tds_login_is_a_login_attempt() {
    let mut b = vec![0u8; 512];
    b[..4].copy_from_slice(b"scan");
    b[30] = 4;
    b[31..33].copy_from_slice(b"sa");
    b[61] = 2;
    b[62..70].copy_from_slice(b"Pa55word");
    b[92] = 8;
    let mut h = harness();
    h.data(Rq, 1000, &msg(0x02, &b));
    let mut r = error_token(18456, 1, 14, "Login failed for user 'sa'.");
    r.extend(done_token(0xfd, 0x02, 0));
    h.data(Rs, 2000, &reply(&r));
    h.close(3000);
    let run = h.finish();
    let l = run.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (
            l[0].user.as_deref(),
            l[0].outcome,
            l[0].error_code.as_deref()
        ),
        (Some("sa"), Outcome::Failure, Some("18456"))
    );
    assert!(run.queries().is_empty());
    assert!(!run.json().contains("Pa55word"));
}

/// With small payload caps the LOGINACK may be cut out of its reply and a batch's text cut
/// short: the login still succeeded (the client goes on with requests), and the cut
/// fingerprint says so, with no verb made from a cut word.
#[test]
fn cut_replies_and_texts_report_only_what_is_true() {
    let mut h = harness().redact(false);
    h.data(Rq, 1000, &msg(0x12, &prelogin([0; 6], 2, 0)));
    h.data(Rs, 2000, &reply(&prelogin([16, 0, 0x0f, 0xa0, 0, 0], 2, 0)));
    h.data(
        Rq,
        3000,
        &msg(0x10, &login7("app_user", "x", "app", "payroll")),
    );
    // The login reply with its middle (the LOGINACK) lost: only its DONE is seen.
    let mut r = envchange_db("payroll");
    r.extend(loginack());
    r.extend(done_token(0xfd, 0, 0));
    let r = reply(&r);
    h.data(Rs, 4000, &r[..20]);
    h.gap(Rs, 4000, Gap::Exact((r.len() - 20 - 13) as u64));
    h.data(Rs, 4000, &r[r.len() - 13..]);
    // A batch whose text is cut after two characters.
    let b = batch("SELECT name FROM t");
    h.data(Rq, 5000, &b[..34]);
    h.gap(Rq, 5000, Gap::Exact((b.len() - 34) as u64));
    h.data(Rs, 6000, &reply(&rows_reply(1)));
    h.close(7000);
    let run = h.finish();
    let l = run.logins();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].outcome, l[0].user.as_deref()),
        (Outcome::Success, Some("app_user"))
    );
    let q = run.queries();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].verb.as_str(), q[0].fingerprint.as_str(), q[0].rows),
        ("SQL_BATCH", "se …", Some(1))
    );
    assert_eq!(q[0].user.as_deref(), Some("app_user"));
}
