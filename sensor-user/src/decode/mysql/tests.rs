//! Conversations built byte by byte from the protocol documentation.

use super::queue::MAX_PENDING;
use super::wire::{cap, com, status};
use super::*;
use crate::model::{DecoderStats, LoginRecord, Protocol, QueryRecord};
use crate::testkit::{self, Harness, Run};

// ---------- building packets ----------

const MS: u64 = 1_000_000;

const CLIENT: u32 = cap::LONG_PASSWORD
    | cap::CONNECT_WITH_DB
    | (1 << 7) // LOCAL_FILES
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | (1 << 16) // MULTI_STATEMENTS
    | cap::MULTI_RESULTS
    | cap::PLUGIN_AUTH
    | cap::CONNECT_ATTRS
    | cap::PLUGIN_AUTH_LENENC_DATA
    | cap::SESSION_TRACK;
const SERVER: u32 = CLIENT | cap::SSL | cap::DEPRECATE_EOF;

const PASSWORD: &str = "Sup3r-Secret-Pw!";
const CANARY: &str = "canary-literal-4242";

fn lenenc(v: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => v.push(n as u8),
        251..=0xffff => {
            v.push(0xfc);
            v.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            v.push(0xfd);
            v.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            v.push(0xfe);
            v.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn lstr(v: &mut Vec<u8>, s: &[u8]) {
    lenenc(v, s.len() as u64);
    v.extend_from_slice(s);
}

/// One framed packet; advances `seq`.
fn pk(seq: &mut u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 0xff_ffff);
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(*seq);
    v.extend_from_slice(payload);
    *seq = seq.wrapping_add(1);
    v
}

fn greeting(version: &str, caps: u32, plugin: &str, mariadb: bool) -> Vec<u8> {
    let caps = if mariadb {
        caps & !cap::LONG_PASSWORD
    } else {
        caps
    };
    let mut v = vec![0x0a];
    v.extend_from_slice(version.as_bytes());
    v.push(0);
    v.extend_from_slice(&42u32.to_le_bytes());
    v.extend_from_slice(b"abcdefgh");
    v.push(0);
    v.extend_from_slice(&(caps as u16).to_le_bytes());
    v.push(33);
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    v.push(21);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&(if mariadb { 0x1du32 } else { 0 }).to_le_bytes());
    v.extend_from_slice(b"ijklmnopqrst\0");
    v.extend_from_slice(plugin.as_bytes());
    v.push(0);
    v
}

fn hs_response(
    caps: u32,
    user: &str,
    auth: &[u8],
    db: Option<&str>,
    plugin: &str,
    program: &str,
) -> Vec<u8> {
    let caps = if db.is_some() {
        caps
    } else {
        caps & !cap::CONNECT_WITH_DB
    };
    let mut v = caps.to_le_bytes().to_vec();
    v.extend_from_slice(&(16u32 << 20).to_le_bytes());
    v.push(45);
    v.extend_from_slice(&[0; 23]);
    v.extend_from_slice(user.as_bytes());
    v.push(0);
    lstr(&mut v, auth);
    if let Some(db) = db {
        v.extend_from_slice(db.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(plugin.as_bytes());
    v.push(0);
    let mut attrs = Vec::new();
    lstr(&mut attrs, b"_client_name");
    lstr(&mut attrs, b"libmariadb");
    lstr(&mut attrs, b"program_name");
    lstr(&mut attrs, program.as_bytes());
    lstr(&mut v, &attrs);
    v
}

fn ok(affected: u64, status: u16) -> Vec<u8> {
    let mut v = vec![0];
    lenenc(&mut v, affected);
    v.push(0);
    v.extend_from_slice(&status.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v
}

fn ok_fe(status: u16) -> Vec<u8> {
    let mut v = ok(0, status);
    v[0] = 0xfe;
    v
}

fn err(code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut v = vec![0xff];
    v.extend_from_slice(&code.to_le_bytes());
    v.push(b'#');
    v.extend_from_slice(state.as_bytes());
    v.extend_from_slice(msg.as_bytes());
    v
}

fn eof(status: u16) -> Vec<u8> {
    let mut v = vec![0xfe, 0, 0];
    v.extend_from_slice(&status.to_le_bytes());
    v
}

fn coldef(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for s in [
        &b"def"[..],
        b"shop",
        b"t",
        b"t",
        name.as_bytes(),
        name.as_bytes(),
    ] {
        lstr(&mut v, s);
    }
    v.push(0x0c);
    v.extend_from_slice(&33u16.to_le_bytes());
    v.extend_from_slice(&255u32.to_le_bytes());
    v.push(0xfd);
    v.extend_from_slice(&[0, 0, 0, 0, 0]);
    v
}

fn text_row(vals: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in vals {
        lstr(&mut v, s.as_bytes());
    }
    v
}

fn binary_row(vals: &[&str]) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend(std::iter::repeat_n(0u8, (vals.len() + 7 + 2) / 8));
    for s in vals {
        lstr(&mut v, s.as_bytes());
    }
    v
}

fn cmd(c: u8, arg: &[u8]) -> Vec<u8> {
    let mut v = vec![c];
    v.extend_from_slice(arg);
    v
}

/// A result set: count, definitions, (EOF), rows, terminator.
fn result_set(
    seq: &mut u8,
    cols: &[&str],
    rows: &[Vec<u8>],
    deprecate: bool,
    status: u16,
) -> Vec<u8> {
    let mut v = Vec::new();
    let mut count = Vec::new();
    lenenc(&mut count, cols.len() as u64);
    v.extend(pk(seq, &count));
    for c in cols {
        v.extend(pk(seq, &coldef(c)));
    }
    if !deprecate {
        v.extend(pk(seq, &eof(0x0002)));
    }
    for r in rows {
        v.extend(pk(seq, r));
    }
    v.extend(pk(
        seq,
        &if deprecate {
            ok_fe(status)
        } else {
            eof(status)
        },
    ));
    v
}

// ---------- conversations ----------

#[derive(Clone, Debug)]
enum Seg {
    Data(Dir, u64, Vec<u8>),
    Gap(Dir, u64, u64),
}

#[derive(Default, Clone)]
struct Conv {
    segs: Vec<Seg>,
    ts: u64,
}

impl Conv {
    fn c(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.ts += MS;
        self.segs.push(Seg::Data(Dir::Request, self.ts, bytes));
        self
    }
    fn s(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.ts += MS;
        self.segs.push(Seg::Data(Dir::Response, self.ts, bytes));
        self
    }
    fn gap(&mut self, dir: Dir, len: u64) -> &mut Self {
        self.segs.push(Seg::Gap(dir, self.ts, len));
        self
    }
    /// Client request: one packet with sequence id 0.
    fn q(&mut self, payload: Vec<u8>) -> &mut Self {
        self.c(pk(&mut 0, &payload))
    }
}

/// Greeting, response, and the server's packets after the response (seq from 2).
fn login(c: &mut Conv, server_caps: u32, client_caps: u32, server: &[Vec<u8>]) {
    c.s(pk(
        &mut 0,
        &greeting(
            "5.5.5-10.11.6-MariaDB-0+deb12u1",
            server_caps,
            "mysql_native_password",
            true,
        ),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            client_caps,
            "app",
            &[0x5a; 20],
            Some("shop"),
            "mysql_native_password",
            "billing",
        ),
    ));
    let mut seq = 2;
    for p in server {
        let b = pk(&mut seq, p);
        c.s(b);
    }
}

fn logged_in(deprecate: bool) -> Conv {
    let mut c = Conv::default();
    let caps = if deprecate {
        CLIENT | cap::DEPRECATE_EOF
    } else {
        CLIENT
    };
    login(&mut c, SERVER, caps, &[ok(0, 2)]);
    c
}

// ---------- running ----------

#[derive(Clone, Copy)]
enum Split {
    Whole,
    Chunks(usize),
}

fn run_with(segs: &[Seg], mid: bool, redact: bool, split: Split) -> Run {
    let mut h = Harness::new(
        Box::new(MysqlDecoder::new(mid)),
        testkit::endpoint(Protocol::Mysql),
    )
    .redact(redact);
    let mut last = 0;
    for seg in segs {
        match seg {
            Seg::Data(dir, ts, b) => {
                last = *ts;
                match split {
                    Split::Whole => h.data(*dir, *ts, b),
                    Split::Chunks(k) => {
                        for ch in b.chunks(k) {
                            h.data(*dir, *ts, ch);
                        }
                    }
                }
            }
            Seg::Gap(dir, ts, len) => h.gap(*dir, *ts, Gap::Exact(*len)),
        }
        let dec = h.decoder();
        assert!(dec.req.held() <= 2 * (REQ_CAP + REQ_WINDOW) + 64);
        assert!(dec.resp.held() <= 2 * (RESP_CAP + RESP_WINDOW) + 64);
        assert!(dec.s.pending.len() <= MAX_PENDING);
    }
    h.close(last + MS);
    h.finish()
}

fn run(c: &Conv) -> Run {
    run_with(&c.segs, false, true, Split::Whole)
}

fn logins(r: &Run) -> Vec<&LoginRecord> {
    r.logins()
}

fn queries(r: &Run) -> Vec<&QueryRecord> {
    r.queries()
}

fn json(r: &Run) -> Vec<String> {
    r.json_lines()
}

// ---------- the conversations the tests share ----------

fn conv_native_success() -> Conv {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT name FROM users WHERE id = 7"));
    let mut seq = 1;
    c.s(result_set(
        &mut seq,
        &["name"],
        &[text_row(&["ann"])],
        true,
        2,
    ));
    c
}

fn conv_err(code: u16, state: &str) -> Conv {
    let mut c = Conv::default();
    login(&mut c, SERVER, CLIENT, &[err(code, state, "denied")]);
    c
}

fn conv_sha2_fast() -> Conv {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &[7; 32],
            Some("shop"),
            "caching_sha2_password",
            "svc",
        ),
    ));
    c.s([pk(&mut 2, &[0x01, 0x03]), pk(&mut 3, &ok(0, 2))].concat());
    c
}

/// Zeek #3880: full authentication (AuthMoreData 0x04, public key exchange), then ERR.
fn conv_sha2_full_fail() -> Conv {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &[7; 32],
            Some("shop"),
            "caching_sha2_password",
            "svc",
        ),
    ));
    c.s(pk(&mut 2, &[0x01, 0x04]));
    c.c(pk(&mut 3, &[0x02])); // request the public key
    let mut key = vec![0x01];
    key.extend_from_slice(b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n");
    c.s(pk(&mut 4, &key));
    c.c(pk(&mut 5, &[0xa5; 256])); // the RSA-encrypted password
    c.s(pk(
        &mut 6,
        &err(
            1045,
            "28000",
            "Access denied for user 'app'@'10.0.0.1' (using password: YES)",
        ),
    ));
    c
}

fn conv_auth_switch() -> Conv {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "legacy",
            &[7; 32],
            None,
            "caching_sha2_password",
            "cron",
        ),
    ));
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"mysql_native_password\0");
    sw.extend_from_slice(b"0123456789abcdefghij\0");
    c.s(pk(&mut 2, &sw));
    c.c(pk(&mut 3, &[0x33; 20]));
    c.s(pk(&mut 4, &ok(0, 2)));
    c
}

fn conv_eof_result() -> Conv {
    let mut c = logged_in(false);
    c.q(cmd(com::QUERY, b"SELECT id, name FROM users"));
    let mut seq = 1;
    let rows = [
        text_row(&["1", "a"]),
        text_row(&["2", "b"]),
        text_row(&["3", "c"]),
    ];
    c.s(result_set(&mut seq, &["id", "name"], &rows, false, 2));
    c.q(cmd(com::QUERY, b"UPDATE users SET name = 'x' WHERE id < 3"));
    c.s(pk(&mut 1, &ok(2, 2)));
    c
}

fn conv_deprecate_result() -> Conv {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT id, name FROM users"));
    let mut seq = 1;
    let rows = [
        text_row(&["1", "a"]),
        text_row(&["2", "b"]),
        text_row(&["3", "c"]),
    ];
    c.s(result_set(&mut seq, &["id", "name"], &rows, true, 2));
    // an empty result
    c.q(cmd(com::QUERY, b"SELECT id FROM users WHERE 1 = 0"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["id"], &[], true, 2));
    c
}

fn conv_multi() -> Conv {
    let mut c = logged_in(false);
    c.q(cmd(com::QUERY, b"CALL report(2024)"));
    let mut seq = 1;
    let mut b = result_set(
        &mut seq,
        &["a"],
        &[text_row(&["1"]), text_row(&["2"])],
        false,
        2 | status::MORE_RESULTS_EXISTS,
    );
    b.extend(result_set(
        &mut seq,
        &["b"],
        &[text_row(&["3"])],
        false,
        2 | status::MORE_RESULTS_EXISTS,
    ));
    c.s(b);
    c.s(pk(&mut seq, &ok(0, 2)));
    c
}

fn conv_prepared(deprecate: bool) -> Conv {
    let mut c = logged_in(deprecate);
    c.q(cmd(
        com::STMT_PREPARE,
        b"SELECT id, name FROM users WHERE id = ?",
    ));
    let mut seq = 1;
    let mut b = Vec::new();
    let mut pok = vec![0];
    pok.extend_from_slice(&7u32.to_le_bytes());
    pok.extend_from_slice(&2u16.to_le_bytes());
    pok.extend_from_slice(&1u16.to_le_bytes());
    pok.push(0);
    pok.extend_from_slice(&0u16.to_le_bytes());
    b.extend(pk(&mut seq, &pok));
    b.extend(pk(&mut seq, &coldef("?")));
    if !deprecate {
        b.extend(pk(&mut seq, &eof(2)));
    }
    b.extend(pk(&mut seq, &coldef("id")));
    b.extend(pk(&mut seq, &coldef("name")));
    if !deprecate {
        b.extend(pk(&mut seq, &eof(2)));
    }
    c.s(b);
    for i in 0..3u8 {
        let mut e = vec![com::STMT_EXECUTE];
        e.extend_from_slice(&7u32.to_le_bytes());
        e.push(0);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.push(0); // null bitmap
        e.push(1); // new params bound
        e.extend_from_slice(&[0xfe, 0]); // MYSQL_TYPE_STRING
        lstr(&mut e, CANARY.as_bytes());
        c.q(e);
        let mut seq = 1;
        let id = format!("{i}");
        c.s(result_set(
            &mut seq,
            &["id", "name"],
            &[binary_row(&[&id, "n"])],
            deprecate,
            2,
        ));
    }
    let mut close = vec![com::STMT_CLOSE];
    close.extend_from_slice(&7u32.to_le_bytes());
    c.q(close);
    c
}

/// Packetbeat #18471: two requests in flight, answered in order.
fn conv_pipelined() -> Conv {
    let mut c = logged_in(true);
    let q1 = pk(&mut 0, &cmd(com::QUERY, b"SELECT id FROM users"));
    let q2 = pk(
        &mut 0,
        &cmd(com::QUERY, b"DELETE FROM sessions WHERE expired = 1"),
    );
    c.c([q1, q2].concat());
    let mut seq = 1;
    c.s(result_set(
        &mut seq,
        &["id"],
        &[text_row(&["1"]), text_row(&["2"])],
        true,
        2,
    ));
    c.s(pk(&mut 1, &ok(5, 2)));
    c
}

fn conv_init_db() -> Conv {
    let mut c = logged_in(true);
    c.q(cmd(com::INIT_DB, b"other"));
    c.s(pk(&mut 1, &ok(0, 2)));
    c.q(cmd(com::QUERY, b"SELECT 1"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["1"], &[text_row(&["1"])], true, 2));
    c.q(cmd(com::INIT_DB, b"missing"));
    c.s(pk(
        &mut 1,
        &err(1049, "42000", "Unknown database 'missing'"),
    ));
    c.q(cmd(com::QUERY, b"USE `third`"));
    c.s(pk(&mut 1, &ok(0, 2)));
    c.q(cmd(com::PING, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    c
}

fn conv_infile() -> Conv {
    let mut c = logged_in(true);
    c.q(cmd(
        com::QUERY,
        b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t",
    ));
    c.s(pk(&mut 1, b"\xfb/tmp/x.csv"));
    c.c([
        pk(&mut 2, format!("1,{CANARY}\n2,b\n").as_bytes()),
        pk(&mut 3, b""),
    ]
    .concat());
    c.s(pk(&mut 4, &ok(2, 2)));
    c
}

fn conv_change_user() -> Conv {
    let mut c = logged_in(true);
    let mut cu = vec![com::CHANGE_USER];
    cu.extend_from_slice(b"admin\0");
    cu.push(20);
    cu.extend_from_slice(&[0x44; 20]);
    cu.extend_from_slice(b"ops\0");
    cu.extend_from_slice(&33u16.to_le_bytes());
    cu.extend_from_slice(b"mysql_native_password\0");
    c.q(cu.clone());
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"client_ed25519\0");
    sw.extend_from_slice(b"0123456789abcdefghij0123456789ab");
    c.s(pk(&mut 1, &sw));
    c.c(pk(&mut 2, &[0x55; 64]));
    c.s(pk(&mut 3, &err(1045, "28000", "Access denied")));
    c
}

fn all_convs() -> Vec<(&'static str, Conv)> {
    vec![
        ("native", conv_native_success()),
        ("err1045", conv_err(1045, "28000")),
        ("err1049", conv_err(1049, "42000")),
        ("sha2_fast", conv_sha2_fast()),
        ("sha2_full_fail", conv_sha2_full_fail()),
        ("switch", conv_auth_switch()),
        ("eof", conv_eof_result()),
        ("deprecate", conv_deprecate_result()),
        ("multi", conv_multi()),
        ("prepared", conv_prepared(false)),
        ("prepared_deprecate", conv_prepared(true)),
        ("pipelined", conv_pipelined()),
        ("init_db", conv_init_db()),
        ("infile", conv_infile()),
        ("change_user", conv_change_user()),
    ]
}

// ---------- tests ----------

#[test]
fn handshake_native_password_success() {
    let r = run(&conv_native_success());
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    let l = l[0];
    assert_eq!(l.outcome, Outcome::Success);
    assert_eq!(l.user.as_deref(), Some("app"));
    assert_eq!(l.database.as_deref(), Some("shop"));
    assert_eq!(l.application.as_deref(), Some("billing"));
    assert_eq!(l.auth_method.as_deref(), Some("mysql_native_password"));
    assert_eq!(
        l.server_version.as_deref(),
        Some("10.11.6-MariaDB-0+deb12u1")
    );
    assert_eq!(l.error_code, None);
    assert!(!l.tls);
    assert_eq!(l.ts.ns(), 2 * MS, "login time is the handshake response's");
    assert_eq!(l.endpoint.server, "10.0.0.2:3306");
    let q = queries(&r);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].verb, "SELECT");
    assert_eq!(q[0].fingerprint, "select name from users where id = ?");
    assert_eq!(q[0].query, None);
    assert_eq!(q[0].rows, Some(1));
    assert_eq!(q[0].user.as_deref(), Some("app"));
    assert_eq!(q[0].database.as_deref(), Some("shop"));
    assert_eq!(q[0].ts.ns(), 4 * MS);
    assert_eq!(q[0].latency_us, 1000);
    assert_eq!(q[0].latency_first_byte_us, Some(1000));
    assert!(q[0].bytes_request > 0 && q[0].bytes_response > 0);
    assert_eq!(r.stats, DecoderStats::default());
}

#[test]
fn wrong_password_is_failure_1045() {
    let r = run(&conv_err(1045, "28000"));
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Failure);
    assert_eq!(l[0].error_code.as_deref(), Some("1045"));
    assert_eq!(l[0].user.as_deref(), Some("app"));
}

#[test]
fn unknown_database_is_failure_1049_and_1044() {
    for code in [1049, 1044] {
        let r = run(&conv_err(code, "42000"));
        let l = logins(&r);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].outcome, Outcome::Failure);
        assert_eq!(l[0].error_code, Some(code.to_string()));
    }
}

#[test]
fn caching_sha2_fast_auth_success() {
    let r = run(&conv_sha2_fast());
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Success);
    assert_eq!(l[0].auth_method.as_deref(), Some("caching_sha2_password"));
    assert_eq!(l[0].server_version.as_deref(), Some("8.0.36"));
    assert_eq!(l[0].application.as_deref(), Some("svc"));
}

/// Zeek #3880: the server sends AuthMoreData (and a public key) before its final ERR; the
/// login failed.
#[test]
fn zeek_3880_caching_sha2_full_auth_failure_is_failure() {
    let r = run(&conv_sha2_full_fail());
    let l = logins(&r);
    assert_eq!(l.len(), 1, "{:?}", r.records);
    assert_eq!(l[0].outcome, Outcome::Failure);
    assert_eq!(l[0].error_code.as_deref(), Some("1045"));
    assert_eq!(l[0].auth_method.as_deref(), Some("caching_sha2_password"));
    assert!(queries(&r).is_empty());

    // The same exchange, but the fast-auth-success marker comes before a final ERR.
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &[7; 32],
            None,
            "caching_sha2_password",
            "svc",
        ),
    ));
    c.s([
        pk(&mut 2, &[0x01, 0x03]),
        pk(&mut 3, &err(1045, "28000", "denied")),
    ]
    .concat());
    let r = run(&c);
    assert_eq!(logins(&r)[0].outcome, Outcome::Failure);
}

#[test]
fn auth_switch_reports_the_final_plugin() {
    let r = run(&conv_auth_switch());
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Success);
    assert_eq!(l[0].auth_method.as_deref(), Some("mysql_native_password"));
    assert_eq!(l[0].database, None);
    assert_eq!(l[0].application.as_deref(), Some("cron"));
}

#[test]
fn result_set_with_eof_packets() {
    let r = run(&conv_eof_result());
    let q = queries(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].rows, Some(3));
    assert_eq!(q[0].verb, "SELECT");
    assert_eq!(q[1].verb, "UPDATE");
    assert_eq!(q[1].rows, Some(2));
    assert_eq!(q[1].fingerprint, "update users set name = ? where id < ?");
}

#[test]
fn result_set_with_deprecate_eof() {
    let r = run(&conv_deprecate_result());
    let q = queries(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].rows, Some(3));
    assert_eq!(q[1].rows, Some(0));
    assert_eq!(r.stats, DecoderStats::default());
}

#[test]
fn multiple_result_sets_complete_at_the_last() {
    let r = run(&conv_multi());
    let q = queries(&r);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].verb, "CALL");
    assert_eq!(q[0].rows, Some(3));
    // request at 4 ms, final OK at 6 ms, first response byte at 5 ms
    assert_eq!(q[0].latency_us, 2000);
    assert_eq!(q[0].latency_first_byte_us, Some(1000));
}

#[test]
fn prepared_once_executed_three_times_reports_the_prepared_text() {
    for deprecate in [false, true] {
        let r = run(&conv_prepared(deprecate));
        let q = queries(&r);
        assert_eq!(q.len(), 5, "{:#?}", r.records);
        assert_eq!(q[0].verb, "STMT_PREPARE");
        assert_eq!(q[0].fingerprint, "select id, name from users where id = ?");
        for e in &q[1..4] {
            assert_eq!(e.verb, "SELECT");
            assert_eq!(e.fingerprint, "select id, name from users where id = ?");
            assert!(e.prepared);
            assert_eq!(e.rows, Some(1));
            assert_eq!(e.error_code, None);
        }
        assert_eq!(q[4].verb, "STMT_CLOSE");
        assert_eq!(q[4].latency_first_byte_us, None);
        assert_eq!(r.stats, DecoderStats::default());
    }
}

#[test]
fn mariadb_prepare_and_execute_pipelined_with_statement_id_minus_one() {
    let mut c = logged_in(false);
    let prep = pk(
        &mut 0,
        &cmd(com::STMT_PREPARE, b"INSERT INTO t (a) VALUES (?)"),
    );
    let mut e = vec![com::STMT_EXECUTE];
    e.extend_from_slice(&u32::MAX.to_le_bytes());
    e.push(0);
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&[0, 1, 0x08, 0]);
    e.extend_from_slice(&5u64.to_le_bytes());
    let exec = pk(&mut 0, &e);
    c.c([prep, exec].concat());
    let mut seq = 1;
    let mut pok = vec![0];
    pok.extend_from_slice(&3u32.to_le_bytes());
    pok.extend_from_slice(&0u16.to_le_bytes());
    pok.extend_from_slice(&1u16.to_le_bytes());
    pok.extend_from_slice(&[0, 0, 0]);
    let mut b = pk(&mut seq, &pok);
    b.extend(pk(&mut seq, &coldef("?")));
    b.extend(pk(&mut seq, &eof(2)));
    b.extend(pk(&mut 1, &ok(1, 2)));
    c.s(b);
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!(q[1].verb, "INSERT");
    assert_eq!(q[1].fingerprint, "insert into t (a) values (?+)");
    assert_eq!(q[1].rows, Some(1));
    assert!(q[1].prepared);
}

/// Packetbeat #18471: two requests in flight are paired with their own responses.
#[test]
fn packetbeat_18471_two_queries_in_flight_paired_in_order() {
    let r = run(&conv_pipelined());
    let q = queries(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].verb, "SELECT");
    assert_eq!(q[0].rows, Some(2));
    assert_eq!(q[0].latency_us, 1000);
    assert_eq!(q[1].verb, "DELETE");
    assert_eq!(q[1].rows, Some(5));
    assert_eq!(q[1].latency_us, 2000);
    assert_eq!(q[1].latency_first_byte_us, Some(2000));
    assert_eq!(q[0].ts.ns(), q[1].ts.ns());
}

#[test]
fn init_db_and_use_change_the_database() {
    let r = run(&conv_init_db());
    let q = queries(&r);
    let dbs: Vec<_> = q
        .iter()
        .map(|q| {
            (
                q.verb.as_str(),
                q.database.as_deref(),
                q.error_code.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        dbs,
        [
            ("INIT_DB", Some("shop"), None),
            ("SELECT", Some("other"), None),
            ("INIT_DB", Some("other"), Some("1049")),
            ("USE", Some("other"), None),
            ("PING", Some("third"), None),
        ]
    );
    assert_eq!(q[0].fingerprint, "INIT_DB");
    assert_eq!(q[4].fingerprint, "PING");
}

#[test]
fn local_infile_completes_at_the_ok() {
    let r = run(&conv_infile());
    let q = queries(&r);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].verb, "LOAD");
    assert_eq!(q[0].rows, Some(2));
    assert!(q[0].bytes_request > 60);
    assert_eq!(r.stats, DecoderStats::default());
}

#[test]
fn change_user_is_a_login_attempt_with_its_own_outcome() {
    let r = run(&conv_change_user());
    let l = logins(&r);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].outcome, Outcome::Success);
    assert_eq!(l[1].outcome, Outcome::Failure);
    assert_eq!(l[1].user.as_deref(), Some("admin"));
    assert_eq!(l[1].database.as_deref(), Some("ops"));
    assert_eq!(l[1].auth_method.as_deref(), Some("client_ed25519"));
    assert_eq!(l[1].error_code.as_deref(), Some("1045"));
    assert!(queries(&r).is_empty());
}

#[test]
fn ssl_request_makes_the_session_encrypted_without_a_login_record() {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    let mut ssl = (CLIENT | cap::SSL).to_le_bytes().to_vec();
    ssl.extend_from_slice(&(16u32 << 20).to_le_bytes());
    ssl.push(45);
    ssl.extend_from_slice(&[0; 23]);
    c.c(pk(&mut 1, &ssl));
    c.s(vec![0x16, 0x03, 0x03, 0x00, 0x40, 1, 2, 3]);
    c.c(vec![0x17, 0x03, 0x03, 0x00, 0x40, 9, 9, 9]);
    let r = run(&c);
    assert!(r.records.is_empty());
    assert!(r.encrypted);
    assert_eq!(r.stats.tls_sessions, 1);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn mid_stream_tls_is_counted() {
    let mut c = Conv::default();
    c.c(vec![0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3, 4, 5]);
    c.s(vec![0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3, 4, 5]);
    let r = run_with(&c.segs, true, true, Split::Whole);
    assert!(r.encrypted && r.records.is_empty());
    assert_eq!(r.stats.tls_sessions, 1);
}

#[test]
fn sliced_at_every_byte_boundary_gives_identical_records() {
    for (name, c) in all_convs() {
        let whole = json(&run(&c));
        assert!(!whole.is_empty(), "{name}");
        let longest = c
            .segs
            .iter()
            .map(|s| match s {
                Seg::Data(_, _, b) => b.len(),
                Seg::Gap(..) => 0,
            })
            .max()
            .unwrap_or(1);
        for k in 1..=longest {
            let sliced = json(&run_with(&c.segs, false, true, Split::Chunks(k)));
            assert_eq!(whole, sliced, "{name} in chunks of {k}");
        }
        // and each segment cut once at every offset
        for cut in 1..longest {
            let segs: Vec<Seg> = c
                .segs
                .iter()
                .flat_map(|s| match s {
                    Seg::Data(d, ts, b) if b.len() > cut => {
                        vec![
                            Seg::Data(*d, *ts, b[..cut].to_vec()),
                            Seg::Data(*d, *ts, b[cut..].to_vec()),
                        ]
                    }
                    s => vec![s.clone()],
                })
                .collect();
            assert_eq!(
                whole,
                json(&run_with(&segs, false, true, Split::Whole)),
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn gap_inside_a_big_row_is_skipped() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT body FROM docs"));
    // one row of 200 000 bytes: the kernel copies its start, the rest is a gap
    let mut seq = 1;
    let mut head = pk(&mut seq, &[1]);
    head.extend(pk(&mut seq, &coldef("body")));
    let big = {
        let mut v = Vec::new();
        lenenc(&mut v, 199_996);
        v.extend(std::iter::repeat_n(b'x', 199_996));
        v
    };
    let row = pk(&mut seq, &big);
    head.extend_from_slice(&row[..1000]);
    c.s(head);
    c.gap(Dir::Response, (row.len() - 1000 - 100) as u64);
    let mut tail = row[row.len() - 100..].to_vec();
    tail.extend(pk(&mut seq, &text_row(&["small"])));
    tail.extend(pk(&mut seq, &ok_fe(2)));
    c.s(tail);
    c.q(cmd(com::PING, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].rows, Some(2));
    assert_eq!(
        q[0].bytes_response as usize,
        5 + 4 + coldef("body").len() + row.len() + 4 + 6 + 4 + 7
    );
    assert_eq!(q[1].verb, "PING");
    assert_eq!(r.stats.resyncs, 0);
}

#[test]
fn gap_across_rows_loses_the_count_then_recovers_at_the_next_request() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT id FROM big"));
    let mut seq = 1;
    let rows: Vec<Vec<u8>> = (0..500).map(|i| text_row(&[&format!("row-{i}")])).collect();
    let all = result_set(&mut seq, &["id"], &rows, true, 2);
    // head of the segment, a gap across hundreds of row headers, then the rest minus the
    // terminator's last byte (so the end cannot be found in the tail)
    c.s(all[..300].to_vec());
    c.gap(Dir::Response, 4000);
    c.s(all[4300..all.len() - 1].to_vec());
    c.s(all[all.len() - 1..].to_vec());
    c.q(cmd(com::QUERY, b"SELECT 2"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["2"], &[text_row(&["2"])], true, 2));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!(q[0].rows, None, "never guess rows after losing framing");
    assert_eq!(q[1].rows, Some(1));
    assert_eq!(q[1].fingerprint, "select ?");
    assert!(r.stats.resyncs >= 1);

    // Without the next request: the terminator in the tail ends the response.
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT id FROM big"));
    c.s(all[..300].to_vec());
    c.gap(Dir::Response, 4000);
    c.s(all[4300..].to_vec());
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].rows, None);
    assert_eq!(
        q[0].latency_us, 2000,
        "ends at the terminator, not at close"
    );
    assert_eq!(r.stats.resyncs, 1);
}

#[test]
fn lost_request_segment_resyncs_at_the_next_request() {
    let mut c = logged_in(true);
    let big = format!(
        "INSERT INTO t VALUES {}",
        vec!["(1, 'abc')"; 500].join(", ")
    );
    let p = pk(&mut 0, &cmd(com::QUERY, big.as_bytes()));
    c.c(p[..1400].to_vec());
    c.gap(Dir::Request, 1400);
    // a lost segment may hide the end of this request and more: framing is lost
    c.gap(Dir::Request, (p.len() - 2800) as u64 + 10);
    c.c(vec![b'x'; 37]);
    c.s(pk(&mut 1, &ok(500, 2)));
    c.q(cmd(com::QUERY, b"SELECT 1"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["1"], &[text_row(&["1"])], true, 2));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!(q[0].verb, "INSERT");
    assert_eq!(q[0].rows, Some(500));
    assert_eq!(q[1].verb, "SELECT");
    assert_eq!(r.stats.resyncs, 1);
}

#[test]
fn mid_stream_start_finds_the_first_request() {
    let mut c = Conv::default();
    // the end of an earlier result, and the end of a long query's text
    let mut seq = 5;
    c.s([
        pk(&mut seq, &text_row(&["tail", "of", "rows"])),
        pk(&mut seq, &ok_fe(2)),
    ]
    .concat());
    c.c(b"ere id in (1, 2, 3) and name = 'zz'".to_vec());
    c.s(pk(&mut 1, &ok(0, 2)));
    c.q(cmd(com::QUERY, b"SELECT a, b FROM t"));
    let mut seq = 1;
    c.s(result_set(
        &mut seq,
        &["a", "b"],
        &[text_row(&["1", "2"]), text_row(&["3", "4"])],
        false,
        2,
    ));
    c.q(cmd(com::QUERY, b"SELECT a FROM t"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["a"], &[], false, 2));
    let r = run_with(&c.segs, true, true, Split::Whole);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!(q[0].rows, Some(2));
    assert_eq!(q[0].user, None);
    assert_eq!(q[1].rows, Some(0));
    assert_eq!(r.stats.resyncs, 0, "the first find is no resync");
    assert!(r.stats.skipped_bytes > 0);
    // byte by byte too
    let sliced = run_with(&c.segs, true, true, Split::Chunks(1));
    assert_eq!(json(&r), json(&sliced));
}

#[test]
fn mid_stream_start_that_catches_the_handshake() {
    let c = conv_native_success();
    let r = run_with(&c.segs, true, true, Split::Whole);
    assert_eq!(json(&r), json(&run(&c)));
}

#[test]
fn commands_are_named() {
    let mut c = logged_in(true);
    c.q(cmd(com::STATISTICS, b""));
    c.s(pk(&mut 1, b"Uptime: 5  Threads: 1"));
    c.q(cmd(com::RESET_CONNECTION, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    c.q(cmd(com::FIELD_LIST, b"users\0"));
    c.s([pk(&mut 1, &coldef("id")), pk(&mut 2, &ok_fe(2))].concat());
    c.q(cmd(0x42, b"??"));
    c.s(pk(&mut 1, &err(1047, "08S01", "Unknown command")));
    c.q(cmd(com::QUIT, b""));
    let r = run(&c);
    let v: Vec<_> = queries(&r)
        .iter()
        .map(|q| (q.verb.clone(), q.fingerprint.clone(), q.error_code.clone()))
        .collect();
    assert_eq!(
        v,
        [
            ("STATISTICS".into(), "STATISTICS".into(), None),
            ("RESET_CONNECTION".into(), "RESET_CONNECTION".into(), None),
            ("FIELD_LIST".into(), "FIELD_LIST".into(), None),
            ("UNKNOWN".into(), "UNKNOWN".into(), Some("1047".into())),
        ]
    );
}

#[test]
fn pending_requests_are_bounded() {
    let mut c = logged_in(true);
    let many: Vec<u8> = (0..200).flat_map(|_| pk(&mut 0, &[com::PING])).collect();
    c.c(many);
    let r = run(&c);
    assert_eq!(r.stats.pending_overflow, 200 - MAX_PENDING as u64);
    assert_eq!(queries(&r).len(), MAX_PENDING);
}

#[test]
fn session_tracked_schema_changes_the_database() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"CALL switch_db()"));
    let mut okp = vec![0, 0, 0];
    okp.extend_from_slice(&(2 | status::SESSION_STATE_CHANGED).to_le_bytes());
    okp.extend_from_slice(&[0, 0]);
    lstr(&mut okp, b"");
    let mut state = vec![1];
    let mut data = Vec::new();
    lstr(&mut data, b"reports");
    lstr(&mut state, &data);
    lstr(&mut okp, &state);
    c.s(pk(&mut 1, &okp));
    c.q(cmd(com::PING, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    let r = run(&c);
    assert_eq!(queries(&r)[1].database.as_deref(), Some("reports"));
}

#[test]
fn greeting_error_is_a_failed_login() {
    let mut c = Conv::default();
    c.s(pk(&mut 0, b"\xff\x10\x04Too many connections"));
    let r = run(&c);
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].error_code.as_deref(), Some("1040"));
    assert_eq!(l[0].user, None);
}

#[test]
fn login_without_answer_is_reported_at_close() {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "caching_sha2_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &[7; 32],
            None,
            "caching_sha2_password",
            "svc",
        ),
    ));
    let r = run(&c);
    let l = logins(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].outcome, Outcome::Failure);
    assert_eq!(l[0].error_code, None);
}

#[test]
fn other_protocols_on_the_port_yield_nothing() {
    let mut http = Conv::default();
    http.c(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n".to_vec());
    http.s(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let mut pg = Conv::default();
    pg.c(vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]);
    pg.s(b"N".to_vec());
    let mut startup = vec![0, 0, 0, 0x29, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0app\0database\0shop\0\0");
    pg.c(startup);
    for c in [http, pg] {
        for mid in [false, true] {
            let r = run_with(&c.segs, mid, true, Split::Whole);
            assert!(r.records.is_empty(), "{:?}", r.records);
            if !mid {
                assert!(r.stats.malformed > 0);
            }
        }
    }
}

#[test]
fn redaction_keeps_literals_and_passwords_out() {
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "mysql_clear_password", false),
    ));
    let mut pw = PASSWORD.as_bytes().to_vec();
    pw.push(0);
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &pw,
            Some("shop"),
            "mysql_clear_password",
            "svc",
        ),
    ));
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"mysql_clear_password\0");
    c.s(pk(&mut 2, &sw));
    c.c(pk(&mut 3, &pw));
    c.s(pk(&mut 4, &ok(0, 2)));
    c.q(cmd(
        com::QUERY,
        format!("SELECT * FROM t WHERE secret = '{CANARY}' AND n = \"{CANARY}\"").as_bytes(),
    ));
    c.s(pk(&mut 1, &ok(0, 2)));
    // cut in the middle of the literal by the payload cap / a gap
    let long = format!(
        "UPDATE t SET note = '{CANARY} {}' WHERE id = 1",
        "y".repeat(40)
    );
    let p = pk(&mut 0, &cmd(com::QUERY, long.as_bytes()));
    c.c(p[..40].to_vec());
    c.gap(Dir::Request, (p.len() - 40) as u64);
    c.s(pk(&mut 1, &ok(1, 2)));
    // then prepared-statement parameters and LOCAL INFILE content carrying the canary
    let mut all = c.segs.clone();
    for extra in [conv_prepared(true), conv_infile()] {
        all.extend(extra.segs.into_iter().skip(3));
    }
    for redact in [true, false] {
        let r = run_with(&all, false, redact, Split::Whole);
        let text = json(&r).join("\n");
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("Sup3r"), "{text}");
        if redact {
            assert!(!text.contains(CANARY), "{text}");
            assert!(!text.contains("canary"), "{text}");
            assert!(!text.contains("4242"), "{text}");
        } else {
            assert!(text.contains(CANARY), "{text}");
        }
        assert!(queries(&r).len() >= 3);
    }
}

/// Deterministic xorshift: random bytes, mutated conversations, random slicing and gaps.
#[test]
fn random_and_truncated_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let convs = all_convs();
    for round in 0..3000 {
        let mid = rnd() % 2 == 0;
        let mut segs: Vec<Seg> = Vec::new();
        if round % 3 == 0 {
            // pure noise, with plausible headers sprinkled in
            for i in 0..(rnd() % 12) {
                let n = (rnd() % 300) as usize;
                let mut b: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
                if n > 5 && rnd() % 2 == 0 {
                    b[3] = 0;
                    b[4] = [3, 0x16, 0x17, 0x0e, 0x11][(rnd() % 5) as usize];
                }
                let dir = if rnd() % 2 == 0 {
                    Dir::Request
                } else {
                    Dir::Response
                };
                segs.push(Seg::Data(dir, i * MS, b));
                if rnd() % 5 == 0 {
                    segs.push(Seg::Gap(dir, i * MS, rnd() % 70_000));
                }
            }
        } else {
            let c = &convs[(rnd() % convs.len() as u64) as usize].1;
            for s in &c.segs {
                let mut s = s.clone();
                if let Seg::Data(_, _, b) = &mut s {
                    match rnd() % 6 {
                        0 if !b.is_empty() => {
                            let i = (rnd() % b.len() as u64) as usize;
                            b[i] ^= 1 << (rnd() % 8);
                        }
                        1 => {
                            let n = (rnd() % (b.len() as u64 + 1)) as usize;
                            b.truncate(n);
                        }
                        2 if !b.is_empty() => {
                            let i = (rnd() % b.len() as u64) as usize;
                            b[i] = rnd() as u8;
                        }
                        _ => {}
                    }
                }
                segs.push(s);
                if rnd() % 8 == 0 {
                    let dir = if rnd() % 2 == 0 {
                        Dir::Request
                    } else {
                        Dir::Response
                    };
                    segs.push(Seg::Gap(dir, 0, rnd() % 5000));
                }
            }
        }
        let split = if rnd() % 3 == 0 {
            Split::Chunks(1 + (rnd() % 7) as usize)
        } else {
            Split::Whole
        };
        let r = run_with(&segs, mid, rnd() % 2 == 0, split);
        for rec in &r.records {
            serde_json::to_string(rec).unwrap();
        }
    }
}

#[test]
fn lying_lengths_do_not_allocate() {
    // a header announcing 16 MiB − 2 bytes, then little data: nothing is buffered beyond caps
    let mut c = logged_in(true);
    let mut b = vec![0xfe, 0xff, 0xff, 0x00, com::QUERY];
    b.extend_from_slice(b"SELECT 1 ");
    b.extend(std::iter::repeat_n(b' ', 100_000));
    c.c(b);
    c.s(pk(&mut 1, &ok(0, 2)));
    let r = run(&c);
    assert!(queries(&r).len() <= 1);
}

#[test]
fn use_target_parsing() {
    assert_eq!(wire::use_target("USE shop"), Some("shop".into()));
    assert_eq!(wire::use_target("use `my``db`;"), Some("my`db".into()));
    assert_eq!(wire::use_target("  Use\tshop ;"), Some("shop".into()));
    assert_eq!(wire::use_target("user_stats"), None);
}

#[test]
fn local_infile_whose_upload_lost_framing_still_completes() {
    let mut c = logged_in(true);
    c.q(cmd(
        com::QUERY,
        b"LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t",
    ));
    c.s(pk(&mut 1, b"\xfbx.csv"));
    let mut seq = 2;
    let upload: Vec<u8> = (0..40)
        .flat_map(|i| pk(&mut seq, format!("{i},row-{i}\n").repeat(20).as_bytes()))
        .collect();
    let end = pk(&mut seq, b"");
    // the segment's middle is not copied: the gap hides many packet headers
    c.c(upload[..300].to_vec());
    c.gap(Dir::Request, (upload.len() - 400) as u64);
    c.c([upload[upload.len() - 100..].to_vec(), end].concat());
    c.s(pk(&mut seq, &ok(800, 2)));
    c.q(cmd(com::PING, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!(q[0].rows, Some(800));
    assert_eq!(q[0].error_code, None);
    assert_eq!(q[0].bytes_request as usize, 4 + 44 + upload.len() + 4);
    assert_eq!(q[1].verb, "PING");
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn payloads_of_16_mib_continue_in_the_next_packet() {
    const MAX: usize = 0xff_ffff;
    let mut c = logged_in(true);
    // a COM_QUERY of 16 MiB + 10 bytes: one full packet, then the rest
    let mut sql = b"INSERT INTO t VALUES ('".to_vec();
    sql.resize(MAX + 8, b'z');
    sql.extend_from_slice(b"')");
    let payload = cmd(com::QUERY, &sql);
    let mut req = (MAX as u32).to_le_bytes()[..3].to_vec();
    req.push(0);
    req.extend_from_slice(&payload[..MAX]);
    let rest = &payload[MAX..];
    req.extend_from_slice(&(rest.len() as u32).to_le_bytes()[..3]);
    req.push(1);
    req.extend_from_slice(rest);
    c.c(req);
    c.s(pk(&mut 2, &ok(1, 2)));
    // a text row whose only value is longer than 16 MiB: it starts with 0xFE (8-byte length)
    // and is no terminator
    c.q(cmd(com::QUERY, b"SELECT b FROM t"));
    let mut seq = 1;
    let mut resp = pk(&mut seq, &[1]);
    resp.extend(pk(&mut seq, &coldef("b")));
    let mut row = Vec::new();
    lenenc(&mut row, (MAX + 100) as u64);
    row.resize(row.len() + MAX + 100, b'q');
    resp.extend_from_slice(&(MAX as u32).to_le_bytes()[..3]);
    resp.push(seq);
    resp.extend_from_slice(&row[..MAX]);
    resp.extend_from_slice(&((row.len() - MAX) as u32).to_le_bytes()[..3]);
    resp.push(seq + 1);
    resp.extend_from_slice(&row[MAX..]);
    seq += 2;
    resp.extend(pk(&mut seq, &ok_fe(2)));
    c.s(resp);
    for split in [Split::Whole, Split::Chunks(1448)] {
        let r = run_with(&c.segs, false, true, split);
        let q = queries(&r);
        assert_eq!(q.len(), 2, "{:#?}", r.records);
        assert_eq!(q[0].verb, "INSERT");
        assert_eq!(q[0].rows, Some(1));
        assert_eq!(q[0].bytes_request as usize, 8 + payload.len());
        assert_eq!(q[1].rows, Some(1));
        assert_eq!(r.stats, DecoderStats::default());
    }
}

#[test]
fn compressed_sessions_report_the_login_then_skip() {
    let mut c = Conv::default();
    login(
        &mut c,
        SERVER | cap::COMPRESS,
        CLIENT | cap::COMPRESS,
        &[ok(0, 2)],
    );
    c.c(vec![
        0x0c, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 3, b'S', b'E', b'L', b'E',
    ]);
    c.s(vec![7, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
    let r = run(&c);
    assert_eq!(logins(&r).len(), 1);
    assert!(queries(&r).is_empty());
    assert!(r.stats.skipped_bytes > 0);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn cursor_execute_then_fetch() {
    let mut c = logged_in(false);
    c.q(cmd(com::STMT_PREPARE, b"SELECT id FROM t"));
    let mut pok = vec![0];
    pok.extend_from_slice(&1u32.to_le_bytes());
    pok.extend_from_slice(&1u16.to_le_bytes());
    pok.extend_from_slice(&[0, 0, 0, 0, 0]);
    c.s([
        pk(&mut 1, &pok),
        pk(&mut 2, &coldef("id")),
        pk(&mut 3, &eof(2)),
    ]
    .concat());
    let mut e = vec![com::STMT_EXECUTE];
    e.extend_from_slice(&1u32.to_le_bytes());
    e.push(1); // CURSOR_TYPE_READ_ONLY
    e.extend_from_slice(&1u32.to_le_bytes());
    c.q(e);
    c.s([
        pk(&mut 1, &[1]),
        pk(&mut 2, &coldef("id")),
        pk(&mut 3, &eof(2 | status::CURSOR_EXISTS)),
    ]
    .concat());
    let mut f = vec![com::STMT_FETCH];
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&100u32.to_le_bytes());
    c.q(f);
    c.s([
        pk(&mut 1, &binary_row(&["1"])),
        pk(&mut 2, &binary_row(&["2"])),
        pk(&mut 3, &eof(2 | 0x80)),
    ]
    .concat());
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 3, "{:#?}", r.records);
    assert_eq!((q[1].verb.as_str(), q[1].rows), ("SELECT", None));
    assert_eq!(q[2].verb, "STMT_FETCH");
    assert_eq!(q[2].fingerprint, "select id from t");
    assert_eq!(q[2].rows, Some(2));
    assert!(q[2].prepared);
}

#[test]
fn mariadb_progress_reports_are_not_the_answer() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"ALTER TABLE t ADD COLUMN c INT"));
    let mut progress = vec![0xff, 0xff, 0xff, 1, 1, 3];
    progress.extend_from_slice(&[0x10, 0x27, 0]);
    lstr(&mut progress, b"copy to tmp table");
    c.s(pk(&mut 1, &progress));
    c.s(pk(&mut 2, &ok(0, 2)));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].verb, "ALTER");
    assert_eq!(q[0].error_code, None);
    assert_eq!(q[0].latency_us, 2000);
}

#[test]
fn bytes_of_a_response_whose_framing_was_lost_are_still_counted() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"SELECT id FROM big"));
    let mut seq = 1;
    let rows: Vec<Vec<u8>> = (0..300).map(|i| text_row(&[&format!("row-{i}")])).collect();
    let all = result_set(&mut seq, &["id"], &rows, true, 2);
    c.s(all[..500].to_vec());
    c.gap(Dir::Response, 1000);
    c.s(all[1500..2000].to_vec());
    c.gap(Dir::Response, (all.len() - 2100) as u64);
    c.s(all[all.len() - 100..all.len() - 1].to_vec());
    c.s(all[all.len() - 1..].to_vec());
    c.q(cmd(com::PING, b""));
    c.s(pk(&mut 1, &ok(0, 2)));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].rows, None);
    assert_eq!(q[0].bytes_response as usize, all.len());
    assert_eq!(q[0].latency_us, 4000);
    assert_eq!(q[1].rows, None, "PING has no rows");
    assert_eq!(q[1].latency_us, 1000);
}

#[test]
fn unreadable_response_start_ends_at_the_next_request() {
    let mut c = logged_in(true);
    c.q(cmd(com::QUERY, b"UPDATE t SET a = 1"));
    // the OK's header arrives, its body falls in a gap: nothing tells where it ends but its length
    let okp = pk(&mut 1, &ok(3, 2));
    c.s(okp[..4].to_vec());
    c.gap(Dir::Response, (okp.len() - 4) as u64);
    c.q(cmd(com::QUERY, b"SELECT 1"));
    let mut seq = 1;
    c.s(result_set(&mut seq, &["1"], &[text_row(&["1"])], true, 2));
    let r = run(&c);
    let q = queries(&r);
    assert_eq!(q.len(), 2, "{:#?}", r.records);
    assert_eq!((q[0].verb.as_str(), q[0].rows), ("UPDATE", None));
    assert_eq!((q[1].verb.as_str(), q[1].rows), ("SELECT", Some(1)));
}

/// An IAM authentication token's form (botocore's `generate_db_auth_token`), made-up
/// credentials, signed at 1970-01-01T00:00:00Z for 900 s.
const IAM_TOKEN: &str = "billing.abc123.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F19700101%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=19700101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// RDS's IAM plugin (and PAM) switch the client to `mysql_clear_password`; a client may also
/// start with it. Either way the token is recognised, and never kept.
#[test]
fn iam_token_through_mysql_clear_password_is_an_iam_login() {
    let mut token = IAM_TOKEN.as_bytes().to_vec();
    token.push(0);
    // The server asks for the switch (RDS's AWSAuthenticationPlugin, MariaDB's PAM).
    let mut c = Conv::default();
    c.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "mysql_native_password", false),
    ));
    c.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            &[7; 20],
            None,
            "mysql_native_password",
            "cli",
        ),
    ));
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"mysql_clear_password\0");
    c.s(pk(&mut 2, &sw));
    c.c(pk(&mut 3, &token));
    c.s(pk(&mut 4, &err(1045, "28000", "Access denied")));
    // The client starts with the plugin.
    let mut d = Conv::default();
    d.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "mysql_native_password", false),
    ));
    d.c(pk(
        &mut 1,
        &hs_response(CLIENT, "app", &token, None, "mysql_clear_password", "cli"),
    ));
    d.s(pk(&mut 2, &ok(0, 2)));
    for (what, conv, outcome) in [
        ("switched", c, Outcome::Failure),
        ("from the start", d, Outcome::Success),
    ] {
        let r = run(&conv);
        let l = logins(&r);
        assert_eq!(l.len(), 1, "{what}");
        assert_eq!(l[0].outcome, outcome, "{what}");
        assert_eq!(l[0].auth_method.as_deref(), Some("iam"), "{what}");
        let t = l[0].iam_token.as_ref().expect("token facts");
        assert_eq!(
            (t.region.as_str(), t.service.as_str()),
            ("us-east-1", "rds-db")
        );
        assert_eq!(t.expires_at.ns(), 900_000_000_000, "{what}");
        assert!(!t.expired, "{what}: used within its 900 s");
        let json = json(&r).join("\n");
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "0123456789abcdef01",
            "DBUser",
            "X-Amz",
        ] {
            assert!(!json.contains(secret), "{what}: {secret} in {json}");
        }
    }
    // A cleartext password that is no token stays what it is.
    let mut e = Conv::default();
    e.s(pk(
        &mut 0,
        &greeting("8.0.36", SERVER, "mysql_native_password", false),
    ));
    e.c(pk(
        &mut 1,
        &hs_response(
            CLIENT,
            "app",
            b"hunter2\0",
            None,
            "mysql_clear_password",
            "cli",
        ),
    ));
    e.s(pk(&mut 2, &ok(0, 2)));
    let r = run(&e);
    assert_eq!(
        logins(&r)[0].auth_method.as_deref(),
        Some("mysql_clear_password")
    );
    assert!(logins(&r)[0].iam_token.is_none());
}
