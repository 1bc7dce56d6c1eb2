//! An oracle for the protocol decoders that is independent of them: tshark's `pgsql` and `mysql`
//! dissectors frame every message of a capture, and this module derives from that alone what
//! the sensor must report (every login and query, pairing, error codes, rows, timestamps).
//! Shared by `tshark_oracle.rs` and `regressions.rs`; nothing here calls the sensor's parsers.
//!
//! # How expectations are derived
//!
//! 1. `tshark -T json` (TCP reassembly on, out-of-order reassembly on) gives, per frame, the
//!    TCP stream, direction, relative sequence number, payload length and timestamp, and the
//!    PostgreSQL messages / MySQL packets tshark dissected in it, in stream order (a message
//!    split over segments is listed in the frame that completes it).
//! 2. Each message's wire length comes from its length field (PostgreSQL: 1 + Length for typed
//!    messages, Length for start-up packets; MySQL: 4 + packet length), so cumulative lengths
//!    give every message's byte offset in its direction's stream. The oracle checks that the
//!    messages cover every payload byte tshark saw (else it refuses to derive anything).
//! 3. The time of a stream byte is when it, and every byte before it, had arrived (the first
//!    copy of each byte counts; a retransmit changes nothing; for a reordered segment it is the
//!    arrival of the segment that fills the hole). Without reordering this is simply the
//!    timestamp of the frame that carries the byte. A message starts at the time of its first
//!    byte and ends at the time of its last.
//! 4. Requests and responses are paired by the protocols' own rules, not by the decoders':
//!    - PostgreSQL: the server's messages after authentication split at each ReadyForQuery;
//!      the client's into groups (a Query, a FunctionCall, or extended messages up to a Sync),
//!      the n-th group answered by the n-th chunk. A simple Query ends at its ReadyForQuery.
//!      In an extended group the k-th CommandComplete / EmptyQueryResponse / PortalSuspended /
//!      ErrorResponse completes the k-th Execute (the decoder's documented end); after an
//!      ErrorResponse the server skips to Sync, so later Executes never ran and are not
//!      expected. An Execute's request starts at the first Parse/Bind/Describe/Close after the
//!      previous Execute or Sync (or at the Execute), its response at the first server message
//!      after the previous completion. Statement text: Parse (statement name -> text), Bind
//!      (portal -> statement), Execute (portal).
//!    - MySQL: commands are the client packets with sequence id 0; every response restarts at
//!      sequence id 1, so the server's packets after the login split into responses where the
//!      sequence id goes back to 1 (a wrap 255 -> 0 -> 1 inside a large result is not a
//!      restart). The n-th response answers the n-th command that expects one
//!      (COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get none: the sensor reports them with
//!      latency 0 and no first byte; COM_QUIT ends the session and is no query). Each response is then walked (OK / ERR / result sets
//!      with their EOFs, SERVER_MORE_RESULTS_EXISTS) to check that it ends where the split
//!      says, and to count rows and find the error.
//!    - Logins: the StartupMessage / HandshakeResponse gives user, database and method; the
//!      server's final word (ReadyForQuery or ErrorResponse; OK or ERR after any
//!      AuthSwitchRequest) gives the outcome.
//! 5. TLS sessions (tshark sees TLS records on the connection) must each be counted in the
//!    decoders' `tls_sessions`. Given the key log recorded with the capture, tshark decrypts
//!    them itself (`-o tls.keylog_file:`): the messages it finds inside are placed in the
//!    plaintext streams and timed by the frame it shows them in (the one that completed
//!    their TLS record, which is when the sensor can have them too), and steps 4's rules
//!    apply. Where tshark cannot read a session (no key log, or no key in it) no login or
//!    query is expected from it.
#![allow(dead_code)]

use rds_sensor::{
    model::{LoginRecord, Outcome, QueryRecord, Record},
    offline::{self, OfflineOptions},
    pipeline::{Pipeline, PipelineOptions},
    sinks::Collect,
};
use sensor_common::{DEFAULT_DB_PORTS, SensorConfig};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const PG_PORT: u16 = 5432;
pub const MY_PORT: u16 = 3306;
pub const MS_PORT: u16 = 1433;

// ---------------------------------------------------------------------------------------------
// tshark

/// All frames of a capture as tshark dissects them (TCP only).
pub fn tshark_json(pcap: &Path) -> Vec<Value> {
    tshark_json_with(pcap, None)
}

/// The same, decrypting TLS with a key log (tshark's own TLS, not the sensor's).
pub fn tshark_json_with(pcap: &Path, keylog: Option<&Path>) -> Vec<Value> {
    let mut cmd = std::process::Command::new("tshark");
    if let Some(k) = keylog {
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", k.display()));
    }
    let out = cmd
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-o",
            "tcp.desegment_tcp_streams:TRUE",
            "-o",
            "tcp.reassemble_out_of_order:TRUE",
            "-o",
            "tcp.relative_sequence_numbers:TRUE",
            "-Y",
            "tcp",
            "-T",
            "json",
            "--no-duplicate-keys",
            "-J",
            "frame ip ipv6 tcp tls pgsql mysql tds",
        ])
        .output()
        .expect("running tshark (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice::<Value>(&out.stdout).expect("tshark JSON") {
        Value::Array(v) => v,
        _ => panic!("tshark JSON is not an array"),
    }
}

/// The first value under `key` anywhere in `v` (depth first).
pub fn subtree<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| subtree(x, key))),
        Value::Array(a) => a.iter().find_map(|x| subtree(x, key)),
        _ => None,
    }
}

/// Values of `key` anywhere in `v` (depth first, in order), arrays flattened.
pub fn all(v: &Value, key: &str) -> Vec<String> {
    fn walk(v: &Value, key: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == key {
                        push(x, out);
                    } else {
                        walk(x, key, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
            _ => {}
        }
    }
    fn push(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| push(x, out)),
            Value::Number(n) => out.push(n.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, key, &mut out);
    out
}

pub fn first(v: &Value, key: &str) -> Option<String> {
    all(v, key).into_iter().next()
}

fn num(v: &Value, key: &str) -> Option<u64> {
    first(v, key).and_then(|s| parse_num(&s))
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// "1795303500.537352000" -> ns.
fn epoch_ns(s: &str) -> u64 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    sec.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        x => vec![x],
    }
}

fn last_obj(v: &Value) -> &Value {
    match v {
        Value::Array(a) => a.last().unwrap_or(&Value::Null),
        x => x,
    }
}

/// An RDS IAM authentication token, by the form the RDS User Guide gives it: a presigned
/// `rds-db` connect URL without its scheme.
pub fn is_iam_token(password: &[u8]) -> bool {
    let p = String::from_utf8_lossy(password);
    p.contains("/?Action=connect&")
        && p.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256")
        && p.contains("%2Frds-db%2Faws4_request")
        && p.contains("X-Amz-Signature=")
}

/// tshark's bytes fields: `62:69:6c…` (or without colons).
pub fn hex_bytes(h: &str) -> Vec<u8> {
    let h = h.replace(':', "");
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

pub fn sock(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

// ---------------------------------------------------------------------------------------------
// Connections: segments, messages, byte times

/// One protocol message (PostgreSQL message, MySQL packet) at its place in the stream.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Byte offset in its direction's stream, and wire length.
    pub off: u64,
    pub len: u64,
    /// Times of its first and last byte (see the module documentation).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Frame in which tshark dissected it.
    pub frame: u64,
    pub v: Value,
}

impl Msg {
    pub fn f(&self, key: &str) -> Option<String> {
        first(&self.v, key)
    }
    pub fn n(&self, key: &str) -> Option<u64> {
        num(&self.v, key)
    }
    /// PostgreSQL message type as tshark names it ("Simple query", "Ready for query", …).
    pub fn pg_type(&self) -> String {
        self.f("pgsql.type").unwrap_or_default()
    }
}

#[derive(Default)]
struct DirBuild {
    syn: bool,
    /// (frame, ts, relative seq, len)
    segs: Vec<(u64, u64, u64, u64)>,
    msgs: Vec<(u64, Value)>,
    /// Time of the frame each message is shown in.
    msg_ts: Vec<u64>,
}

/// What tshark shows of a server certificate.
#[derive(Clone, Debug)]
pub struct OracleCert {
    pub issuer_cn: Option<String>,
    pub subject_cn: Option<String>,
    pub not_after: Option<String>,
    pub curve: Option<String>,
}

pub struct Conn {
    pub stream: u64,
    pub client: String,
    pub server: String,
    pub server_port: u16,
    pub tls: bool,
    /// tshark read the TLS with the key log it was given.
    pub decrypted: bool,
    /// The ServerHello's version and suite, and the ClientHello's SNI, as tshark read them.
    pub tls_version: Option<u64>,
    pub tls_suite: Option<u64>,
    pub sni: Option<String>,
    /// The server certificate as tshark read it (in the clear, or decrypted).
    pub cert: Option<OracleCert>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// [to server, to client]
    pub msgs: [Vec<Msg>; 2],
    /// Payload bytes per direction (highest offset reached).
    pub bytes: [u64; 2],
    /// Why message offsets could not be trusted, if they cannot.
    pub framing_problem: Option<String>,
}

/// The connections of a capture to the PostgreSQL and MySQL ports, by tshark stream index.
pub fn connections(pcap: &Path) -> BTreeMap<u64, Conn> {
    connections_with(pcap, None)
}

/// The same, with TLS decrypted by tshark where `keylog` has the keys. The messages of a
/// decrypted connection are placed in its plaintext streams and timed by the frame tshark
/// shows them in (the frame that completed their TLS record).
pub fn connections_with(pcap: &Path, keylog: Option<&Path>) -> BTreeMap<u64, Conn> {
    let frames = tshark_json_with(pcap, keylog);
    let mut build: BTreeMap<u64, (Conn, [DirBuild; 2])> = BTreeMap::new();
    for f in &frames {
        let l = &f["_source"]["layers"];
        let fr = &l["frame"];
        let no: u64 = fr["frame.number"].as_str().unwrap().parse().unwrap();
        let ts = epoch_ns(fr["frame.time_epoch"].as_str().unwrap());
        let protos = fr["frame.protocols"].as_str().unwrap_or("");
        let tcp = last_obj(&l["tcp"]);
        let (Some(sp), Some(dp)) = (num(tcp, "tcp.srcport"), num(tcp, "tcp.dstport")) else {
            continue;
        };
        let (sp, dp) = (sp as u16, dp as u16);
        let server_port = if [PG_PORT, MY_PORT, MS_PORT].contains(&dp) {
            dp
        } else if [PG_PORT, MY_PORT, MS_PORT].contains(&sp) {
            sp
        } else {
            continue;
        };
        let to_server = dp == server_port;
        let (src, dst) = if l.get("ipv6").is_some() {
            let ip = last_obj(&l["ipv6"]);
            (first(ip, "ipv6.src"), first(ip, "ipv6.dst"))
        } else {
            let ip = last_obj(&l["ip"]);
            (first(ip, "ip.src"), first(ip, "ip.dst"))
        };
        let (src, dst) = (src.unwrap(), dst.unwrap());
        let stream = num(tcp, "tcp.stream").unwrap();
        let seq = num(tcp, "tcp.seq").unwrap_or(0);
        let len = num(tcp, "tcp.len").unwrap_or(0);
        let flags = num(tcp, "tcp.flags").unwrap_or(0);
        let (client, server) = if to_server {
            (sock(&src, sp), sock(&dst, dp))
        } else {
            (sock(&dst, dp), sock(&src, sp))
        };
        let (c, dirs) = build.entry(stream).or_insert_with(|| {
            (
                Conn {
                    stream,
                    client,
                    server,
                    server_port,
                    tls: false,
                    decrypted: false,
                    tls_version: None,
                    tls_suite: None,
                    sni: None,
                    cert: None,
                    first_ns: ts,
                    last_ns: ts,
                    msgs: [Vec::new(), Vec::new()],
                    bytes: [0, 0],
                    framing_problem: None,
                },
                [DirBuild::default(), DirBuild::default()],
            )
        });
        c.first_ns = c.first_ns.min(ts);
        c.last_ns = c.last_ns.max(ts);
        if protos.split(':').any(|p| p == "tls") {
            c.tls = true;
            if let Some(t) = l.get("tls") {
                // The ServerHello (not a HelloRetryRequest: same version and suite anyway).
                if all(t, "tls.handshake.type").iter().any(|x| x == "2") {
                    c.tls_suite = first(t, "tls.handshake.ciphersuite").and_then(|s| parse_num(&s));
                    c.tls_version = first(t, "tls.handshake.extensions.supported_version")
                        .or_else(|| first(t, "tls.handshake.version"))
                        .and_then(|s| parse_num(&s));
                }
                if let Some(n) = first(t, "tls.handshake.extensions_server_name") {
                    c.sni = Some(n);
                }
                if all(t, "tls.handshake.type").iter().any(|x| x == "11") && c.cert.is_none() {
                    // The first certificate: issuer then subject names, notBefore then
                    // notAfter ("2036-12-01 17:47:09 (UTC)"), and an EC key's curve.
                    let cn = |k: &str| subtree(t, k).and_then(|v| first(v, "x509sat.uTF8String"));
                    c.cert = Some(OracleCert {
                        issuer_cn: cn("x509af.issuer_tree"),
                        subject_cn: cn("x509af.subject_tree"),
                        not_after: subtree(t, "x509af.notAfter_tree")
                            .and_then(|v| first(v, "x509af.utcTime"))
                            .map(|t| {
                                format!("{}Z", t.trim_end_matches(" (UTC)").replacen(' ', "T", 1))
                            }),
                        curve: first(t, "pkcs1.namedCurve"),
                    });
                }
            }
        }
        let d = &mut dirs[usize::from(!to_server)];
        if flags & 0x02 != 0 {
            d.syn = true;
        }
        if len > 0 {
            d.segs.push((no, ts, seq, len));
        }
        let key = match server_port {
            PG_PORT => "pgsql",
            MS_PORT => "tds",
            _ => "mysql",
        };
        if let Some(m) = l.get(key) {
            for x in as_list(m) {
                d.msgs.push((no, x.clone()));
                d.msg_ts.push(ts);
            }
        }
    }
    build
        .into_iter()
        .map(|(k, (mut c, dirs))| {
            if c.tls {
                // Decrypted: messages past the clear start-up (SSLRequest / MySQL's SSL
                // request packet) were found inside TLS.
                c.decrypted = dirs[0].msgs.len() > 1;
                if c.decrypted {
                    for (i, d) in dirs.into_iter().enumerate() {
                        c.msgs[i] = place_plaintext(d, c.server_port);
                    }
                    return (k, c);
                }
            }
            for (i, d) in dirs.into_iter().enumerate() {
                let (msgs, bytes, problem) = place(d, c.server_port);
                c.msgs[i] = msgs;
                c.bytes[i] = bytes;
                if problem.is_some() && c.framing_problem.is_none() {
                    c.framing_problem = problem;
                }
            }
            (k, c)
        })
        .collect()
}

/// Wire length of a message as tshark decoded it.
fn wire_len(v: &Value, server_port: u16) -> Option<u64> {
    if server_port == MS_PORT {
        // A TDS packet: its length counts its 8-byte header.
        return num(v, "tds.length");
    }
    if server_port == PG_PORT {
        let len = num(v, "pgsql.length")?;
        let typ = first(v, "pgsql.type").unwrap_or_default();
        // Untyped start-up packets: the length counts itself and there is no type byte.
        let untyped = matches!(
            typ.as_str(),
            "Startup message" | "SSL request" | "Cancel request" | "GSS encrypt request"
        ) || typ.starts_with("GSSENC");
        Some(if untyped { len } else { len + 1 })
    } else {
        Some(num(v, "mysql.packet_length")? + 4)
    }
}

/// The messages tshark found inside TLS, in plaintext order, each timed by its frame; the
/// clear SSL request that started TLS is left out (the start-up goes on inside).
fn place_plaintext(d: DirBuild, server_port: u16) -> Vec<Msg> {
    let mut off = 0;
    let mut out = Vec::new();
    for ((frame, v), ts) in d.msgs.into_iter().zip(d.msg_ts) {
        let len = wire_len(&v, server_port).unwrap_or(0);
        let ssl_request = if server_port == PG_PORT {
            first(&v, "pgsql.type").as_deref() == Some("SSL request")
        } else {
            num(&v, "mysql.packet_length") == Some(32)
                && first(&v, "mysql.user").is_none_or(|u| u.is_empty())
        };
        if ssl_request {
            continue;
        }
        out.push(Msg {
            off,
            len,
            start_ns: ts,
            end_ns: ts,
            frame,
            v,
        });
        off += len;
    }
    out
}

/// Gives each message its offset and times.
fn place(d: DirBuild, server_port: u16) -> (Vec<Msg>, u64, Option<String>) {
    let base = if d.syn {
        1
    } else {
        d.segs.iter().map(|s| s.2).min().unwrap_or(0)
    };
    let total = d
        .segs
        .iter()
        .map(|s| s.2.saturating_sub(base) + s.3)
        .max()
        .unwrap_or(0);
    // First arrival of every byte, then "everything up to here had arrived".
    let mut at = vec![u64::MAX; total as usize];
    for &(_, ts, seq, len) in &d.segs {
        let off = seq.saturating_sub(base) as usize;
        for t in &mut at[off..off + len as usize] {
            if *t == u64::MAX {
                *t = ts;
            }
        }
    }
    let mut run = 0u64;
    for t in &mut at {
        run = if *t == u64::MAX || run == u64::MAX {
            u64::MAX
        } else {
            run.max(*t)
        };
        *t = run;
    }
    let mut msgs = Vec::new();
    let mut off = 0u64;
    let mut problem = None;
    for (frame, v) in d.msgs {
        let Some(len) = wire_len(&v, server_port) else {
            problem.get_or_insert(format!("frame {frame}: a message without a length"));
            continue;
        };
        if off + len > total {
            problem.get_or_insert(format!(
                "frame {frame}: messages run past the {total} bytes of the stream"
            ));
            break;
        }
        msgs.push(Msg {
            off,
            len,
            start_ns: at[off as usize],
            end_ns: at[(off + len - 1) as usize],
            frame,
            v,
        });
        off += len;
    }
    if problem.is_none() && off != total {
        problem = Some(format!(
            "tshark's messages cover {off} of the {total} payload bytes"
        ));
    }
    if problem.is_none() && at.contains(&u64::MAX) {
        problem = Some("bytes missing from the capture".into());
    }
    (msgs, total, problem)
}

// ---------------------------------------------------------------------------------------------
// Expectations

/// What the sensor must report for one query.
#[derive(Clone, Debug)]
pub struct ExpQuery {
    pub client: String,
    pub server: String,
    /// Request's first byte.
    pub ts_ns: u64,
    pub first_ns: Option<u64>,
    pub end_ns: u64,
    pub error: Option<String>,
    /// `None`: not checked.
    pub rows: Option<Option<u64>>,
    /// Statement text (from the Query, the Parse behind an Execute, COM_QUERY, the PREPARE).
    pub text: Option<String>,
    /// Expected verb, when the oracle can tell.
    pub verb: Option<String>,
    /// Whether it ran a prepared statement, when the oracle can tell.
    pub prepared: Option<bool>,
    /// For messages: what the request was.
    pub what: String,
    /// No answer is in the capture (it ends first): latencies are not checked, and there
    /// must be no first byte.
    pub unanswered: bool,
}

impl ExpQuery {
    pub fn latency_us(&self) -> u64 {
        (self.end_ns - self.ts_ns) / 1000
    }
    pub fn first_byte_us(&self) -> Option<u64> {
        self.first_ns.map(|f| (f - self.ts_ns) / 1000)
    }
}

#[derive(Clone, Debug)]
pub struct ExpLogin {
    pub client: String,
    pub server: String,
    pub ts_ns: u64,
    pub user: Option<String>,
    pub database: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub auth_method: Option<String>,
}

#[derive(Default)]
pub struct Expected {
    pub queries: Vec<ExpQuery>,
    pub logins: Vec<ExpLogin>,
    /// Connections that switched to TLS.
    pub tls: Vec<(String, String)>,
    /// Of those, the ones tshark could not read (no key log, or no key in it).
    pub opaque: Vec<(String, String)>,
    /// Connections carrying only a PostgreSQL CancelRequest.
    pub cancels: Vec<(String, String)>,
    /// Things the oracle could not derive (each one a failure of the oracle, not the sensor).
    pub problems: Vec<String>,
    /// Capture span.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Per connection (client, server): first and last frame time.
    pub spans: BTreeMap<(String, String), (u64, u64)>,
}

pub fn expectations(pcap: &Path) -> Expected {
    expectations_of(&connections(pcap))
}

/// Expectations with TLS decrypted by tshark with `keylog`.
pub fn expectations_with(pcap: &Path, keylog: &Path) -> Expected {
    expectations_of(&connections_with(pcap, Some(keylog)))
}

pub fn expectations_of(conns: &BTreeMap<u64, Conn>) -> Expected {
    let mut e = Expected {
        first_ns: u64::MAX,
        ..Default::default()
    };
    for c in conns.values() {
        e.first_ns = e.first_ns.min(c.first_ns);
        e.last_ns = e.last_ns.max(c.last_ns);
        e.spans.insert(
            (c.client.clone(), c.server.clone()),
            (c.first_ns, c.last_ns),
        );
        if c.tls {
            e.tls.push((c.client.clone(), c.server.clone()));
            if !c.decrypted {
                e.opaque.push((c.client.clone(), c.server.clone()));
                continue;
            }
        }
        if c.msgs[0].is_empty() && c.msgs[1].is_empty() {
            continue;
        }
        if let Some(p) = &c.framing_problem {
            e.problems.push(format!(
                "stream {} ({} -> {}): {p}",
                c.stream, c.client, c.server
            ));
            continue;
        }
        match c.server_port {
            PG_PORT => pg_conn(c, &mut e),
            MS_PORT => tds_conn(c, &mut e),
            _ => my_conn(c, &mut e),
        }
    }
    if e.first_ns == u64::MAX {
        e.first_ns = 0;
    }
    e
}

fn short(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// First SQL keyword, upper case (skipping blanks, parentheses and comments).
pub fn first_word(sql: &str) -> Option<String> {
    let mut s = sql.trim_start();
    loop {
        if let Some(r) = s.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |x| x.1).trim_start();
        } else if let Some(r) = s.strip_prefix("/*") {
            s = r.split_once("*/").map_or("", |x| x.1).trim_start();
        } else if let Some(r) = s.strip_prefix('(') {
            s = r.trim_start();
        } else {
            break;
        }
    }
    let w: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!w.is_empty()).then(|| w.to_ascii_uppercase())
}

/// Identifier-like words of a statement outside quotes ('…', "…", `…`) and not part of numbers.
pub fn bare_words(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' && c != b'"' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == b'$' || c == b'@' || c == b':' {
            // numbers, $1 placeholders, @variables, :names
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let w = sql[s..i].to_ascii_lowercase();
            // Boolean and NULL literals may become `?` like other literals.
            if !matches!(w.as_str(), "true" | "false" | "null") {
                out.push(w);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Rows of a CommandComplete tag, for the tags that carry a count.
fn tag_count(tag: &str) -> Option<u64> {
    let mut w = tag.split_whitespace();
    let verb = w.next()?;
    if !matches!(
        verb,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY"
    ) {
        return None;
    }
    tag.split_whitespace().last()?.parse().ok()
}

// ---- PostgreSQL

enum PgGroup {
    Simple {
        m: Msg,
        text: Option<String>,
        verb: Option<String>,
    },
    Extended {
        execs: Vec<(u64, Msg, Option<String>)>,
    },
}

fn pg_conn(c: &Conn, e: &mut Expected) {
    let [cm, sm] = &c.msgs;
    let key = (c.client.clone(), c.server.clone());
    let problem = |e: &mut Expected, p: String| {
        e.problems
            .push(format!("{} -> {} (stream {}): {p}", key.0, key.1, c.stream))
    };
    let mut ci = 0;
    match cm.first().map(Msg::pg_type).as_deref() {
        Some("Cancel request") => {
            e.cancels.push(key.clone());
            return;
        }
        Some("Startup message") => {}
        Some("SSL request") => {
            // Answered 'N' (else the connection would be TLS): a plaintext start-up follows,
            // and the server's one-byte answer is not a pgsql message (offsets would be off).
            problem(
                e,
                "SSL request answered N: not handled by the oracle".into(),
            );
            return;
        }
        other => {
            problem(e, format!("starts with {other:?}"));
            return;
        }
    }
    let startup = &cm[0];
    ci += 1;
    let names = all(&startup.v, "pgsql.parameter_name");
    let values = all(&startup.v, "pgsql.parameter_value");
    let param = |k: &str| {
        names
            .iter()
            .position(|n| n == k)
            .and_then(|i| values.get(i).cloned())
    };
    let user = param("user");
    let database = param("database").or_else(|| user.clone());
    // Authentication: until ReadyForQuery (in) or ErrorResponse (refused).
    let mut method: Option<String> = None;
    let mut outcome = None;
    let mut si = 0;
    while si < sm.len() {
        let m = &sm[si];
        si += 1;
        match m.pg_type().as_str() {
            "Authentication request" => match m.n("pgsql.authtype") {
                Some(0) => {
                    method.get_or_insert("trust".into());
                }
                Some(2) => method = Some("kerberos".into()),
                Some(3) => method = Some("cleartext".into()),
                Some(5) => method = Some("md5".into()),
                Some(7) => method = Some("gss".into()),
                Some(9) => method = Some("sspi".into()),
                Some(10) => {
                    // The mechanism is the client's choice, in its SASLInitialResponse.
                    method = cm
                        .iter()
                        .find(|x| x.pg_type() == "SASLInitialResponse message")
                        .and_then(|x| x.f("pgsql.auth.sasl.mech"))
                        .map(|s| s.to_ascii_lowercase())
                        .or(Some("sasl".into()));
                }
                _ => {}
            },
            "Ready for query" => {
                outcome = Some((true, None));
                break;
            }
            "Error" => {
                outcome = Some((false, m.f("pgsql.code")));
                break;
            }
            _ => {}
        }
    }
    // A cleartext password that is an IAM authentication token: an IAM login.
    if method.as_deref() == Some("cleartext")
        && cm
            .iter()
            .filter_map(|x| x.f("pgsql.password"))
            .any(|p| is_iam_token(p.as_bytes()))
    {
        method = Some("iam".into());
    }
    // No final word: the client gave up (the decoder reports a failure without a code).
    let (success, error) = outcome.clone().unwrap_or((false, None));
    e.logins.push(ExpLogin {
        client: key.0.clone(),
        server: key.1.clone(),
        ts_ns: startup.start_ns,
        user,
        database,
        success,
        error,
        auth_method: method,
    });
    if !success {
        return;
    }
    // Client messages of the authentication exchange are not requests.
    while ci < cm.len()
        && matches!(
            cm[ci].pg_type().as_str(),
            "Password message"
                | "SASLInitialResponse message"
                | "SASLResponse message"
                | "GSSAPI or SSPI response"
        )
    {
        ci += 1;
    }
    // Client side: request groups.
    let mut stmts: HashMap<String, String> = HashMap::new();
    let mut portals: HashMap<String, Option<String>> = HashMap::new();
    let mut groups: Vec<PgGroup> = Vec::new();
    let mut open: Option<Vec<(u64, Msg, Option<String>)>> = None;
    let mut pre: Option<u64> = None;
    for m in &cm[ci..] {
        let t = m.pg_type();
        match t.as_str() {
            "Simple query" | "Function call" => {
                if open.is_some() {
                    problem(e, "extended messages without Sync before a Query".into());
                    return;
                }
                pre = None;
                let (text, verb) = if t == "Simple query" {
                    let q = m.f("pgsql.query");
                    let v = q.as_deref().and_then(first_word);
                    (q, v)
                } else {
                    (None, Some("FUNCTION_CALL".into()))
                };
                groups.push(PgGroup::Simple {
                    m: m.clone(),
                    text,
                    verb,
                });
            }
            "Parse" | "Bind" | "Describe" | "Close" => {
                pre.get_or_insert(m.start_ns);
                open.get_or_insert_with(Vec::new);
                match t.as_str() {
                    "Parse" => {
                        let name = m.f("pgsql.statement").unwrap_or_default();
                        stmts.insert(name, m.f("pgsql.query").unwrap_or_default());
                    }
                    "Bind" => {
                        let portal = m.f("pgsql.portal").unwrap_or_default();
                        let stmt = m.f("pgsql.statement").unwrap_or_default();
                        portals.insert(portal, stmts.get(&stmt).cloned());
                    }
                    "Close" => {
                        if let Some(s) = m.f("pgsql.statement") {
                            stmts.remove(&s);
                        } else if let Some(p) = m.f("pgsql.portal") {
                            portals.remove(&p);
                        }
                    }
                    _ => {}
                }
            }
            "Execute" => {
                let portal = m.f("pgsql.portal").unwrap_or_default();
                let text = portals.get(&portal).cloned().flatten();
                let start = pre.take().unwrap_or(m.start_ns);
                open.get_or_insert_with(Vec::new)
                    .push((start, m.clone(), text));
            }
            "Sync" => {
                pre = None;
                groups.push(PgGroup::Extended {
                    execs: open.take().unwrap_or_default(),
                });
            }
            "Flush" | "Copy data" | "Copy completion" | "Copy failure" | "Termination" => {}
            other => {
                problem(
                    e,
                    format!("client message {other:?} not handled by the oracle"),
                );
                return;
            }
        }
    }
    // Server side: chunks ending at ReadyForQuery.
    let mut chunks: Vec<&[Msg]> = Vec::new();
    let rest = &sm[si..];
    let mut s = 0;
    for (i, m) in rest.iter().enumerate() {
        if m.pg_type() == "Ready for query" {
            chunks.push(&rest[s..=i]);
            s = i + 1;
        }
    }
    if chunks.len() > groups.len() {
        problem(
            e,
            format!(
                "{} ReadyForQuery for {} request groups",
                chunks.len(),
                groups.len()
            ),
        );
        return;
    }
    // Groups without a ReadyForQuery (the connection ended first) are not expected.
    for (g, chunk) in groups.iter().zip(chunks) {
        let z = chunk.last().unwrap();
        let body = &chunk[..chunk.len() - 1];
        match g {
            PgGroup::Simple { m, text, verb } => {
                let first = chunk
                    .iter()
                    .find(|x| x.pg_type() != "Notification response")
                    .map(|x| x.start_ns);
                let mut error = None;
                let (mut sum, mut has, mut cur) = (0u64, false, 0u64);
                for x in body {
                    match x.pg_type().as_str() {
                        "Data row" => cur += 1,
                        "Command completion" => {
                            match x.f("pgsql.tag").as_deref().and_then(tag_count) {
                                Some(n) => {
                                    sum += n;
                                    has = true;
                                }
                                None if cur > 0 => {
                                    sum += cur;
                                    has = true;
                                }
                                None => {}
                            }
                            cur = 0;
                        }
                        "Error" => {
                            error = error.or(x.f("pgsql.code"));
                            cur = 0;
                        }
                        _ => {}
                    }
                }
                e.queries.push(ExpQuery {
                    client: key.0.clone(),
                    server: key.1.clone(),
                    ts_ns: m.start_ns,
                    first_ns: first,
                    end_ns: z.end_ns,
                    error,
                    rows: Some(has.then_some(sum)),
                    text: text.clone(),
                    verb: verb.clone(),
                    prepared: Some(false),
                    unanswered: false,
                    what: format!(
                        "{} (frame {}) `{}`",
                        m.pg_type(),
                        m.frame,
                        short(text.as_deref().unwrap_or(""))
                    ),
                });
            }
            PgGroup::Extended { execs } => {
                let mut k = 0;
                let mut first = None;
                let mut rows = 0u64;
                for x in body {
                    let t = x.pg_type();
                    if t == "Notification response" {
                        continue;
                    }
                    if first.is_none() {
                        first = Some(x.start_ns);
                    }
                    let (done, r, err) = match t.as_str() {
                        "Data row" => {
                            rows += 1;
                            continue;
                        }
                        "Command completion" => (
                            true,
                            x.f("pgsql.tag")
                                .as_deref()
                                .and_then(tag_count)
                                .or((rows > 0).then_some(rows)),
                            None,
                        ),
                        "Portal suspended" => (true, Some(rows), None),
                        "Empty query" => (true, None, None),
                        "Error" => (true, None, x.f("pgsql.code")),
                        _ => (false, None, None),
                    };
                    if !done {
                        continue;
                    }
                    let Some((start, em, text)) = execs.get(k) else {
                        if err.is_none() {
                            problem(
                                e,
                                format!("frame {}: a completion without Execute", x.frame),
                            );
                        }
                        break;
                    };
                    e.queries.push(ExpQuery {
                        client: key.0.clone(),
                        server: key.1.clone(),
                        ts_ns: *start,
                        first_ns: first,
                        end_ns: x.end_ns,
                        error: err.clone(),
                        rows: Some(r),
                        text: text.clone(),
                        verb: text.as_deref().and_then(first_word),
                        prepared: Some(true),
                        unanswered: false,
                        what: format!(
                            "Execute (frame {}) `{}`",
                            em.frame,
                            short(text.as_deref().unwrap_or("?"))
                        ),
                    });
                    k += 1;
                    first = None;
                    rows = 0;
                    if err.is_some() {
                        // The server skipped the rest of the group: those never ran.
                        break;
                    }
                }
            }
        }
    }
}

// ---- MySQL

const COM_QUIT: u64 = 1;
const COM_INIT_DB: u64 = 2;
const COM_QUERY: u64 = 3;
const COM_PING: u64 = 14;
const COM_STMT_PREPARE: u64 = 22;
const COM_STMT_EXECUTE: u64 = 23;
const COM_STMT_SEND_LONG_DATA: u64 = 24;
const COM_STMT_CLOSE: u64 = 25;
const MORE_RESULTS: u64 = 0x0008;

fn seq(m: &Msg) -> u64 {
    m.n("mysql.packet_number").unwrap_or(0)
}

fn rc(m: &Msg) -> Option<u64> {
    m.n("mysql.response_code")
}

fn is_eof(m: &Msg) -> bool {
    rc(m) == Some(0xfe) && m.len - 4 < 9
}

pub fn mysql_command_name(cmd: u64) -> &'static str {
    match cmd {
        COM_QUIT => "QUIT",
        COM_INIT_DB => "INIT_DB",
        COM_QUERY => "QUERY",
        COM_PING => "PING",
        COM_STMT_PREPARE => "STMT_PREPARE",
        COM_STMT_EXECUTE => "STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "STMT_CLOSE",
        _ => "OTHER",
    }
}

/// Walks one response; returns (error, rows) or why it does not end where it should.
fn my_walk(cmd: u64, r: &[Msg]) -> Result<(Option<String>, Option<u64>), String> {
    let at = |i: usize| r.get(i).ok_or_else(|| format!("ends after {i} packets"));
    if cmd == COM_STMT_PREPARE {
        let ok = at(0)?;
        if rc(ok) == Some(0xff) {
            return end(r, 1, ok.f("mysql.error_code"), None);
        }
        let p = ok.n("mysql.num_params").unwrap_or(0) as usize;
        let c = ok.n("mysql.num_fields").unwrap_or(0) as usize;
        let mut i = 1;
        for n in [p, c] {
            if n > 0 {
                i += n;
                if !is_eof(at(i)?) {
                    return Err(format!("no EOF after {n} definitions"));
                }
                i += 1;
            }
        }
        return end(r, i, None, None);
    }
    let mut i = 0;
    let mut rows = 0u64;
    loop {
        let m = at(i)?;
        i += 1;
        match rc(m) {
            Some(0xff) => return end(r, i, m.f("mysql.error_code"), None),
            Some(0x00) if m.f("mysql.num_fields").is_none() => {
                rows += m.n("mysql.affected_rows").unwrap_or(0);
                if m.n("mysql.server_status").unwrap_or(0) & MORE_RESULTS == 0 {
                    return end(r, i, None, Some(rows));
                }
            }
            Some(0xfe) if is_eof(m) => return end(r, i, None, Some(rows)),
            _ => {
                // A result set: column count, definitions (unless MariaDB cached them), EOF,
                // rows, EOF. (MariaDB does not use CLIENT_DEPRECATE_EOF.)
                let n = m
                    .n("mysql.num_fields")
                    .ok_or_else(|| format!("packet {} is no result-set header", i - 1))?
                    as usize;
                let defs = if m.f("mysql.metadata_follows").as_deref() == Some("0") {
                    0
                } else {
                    n
                };
                i += defs;
                if !is_eof(at(i)?) {
                    return Err(format!("no EOF after {defs} column definitions"));
                }
                i += 1;
                loop {
                    let x = at(i)?;
                    i += 1;
                    if rc(x) == Some(0xff) {
                        return end(r, i, x.f("mysql.error_code"), None);
                    }
                    if is_eof(x) {
                        if x.n("mysql.server_status").unwrap_or(0) & MORE_RESULTS == 0 {
                            return end(r, i, None, Some(rows));
                        }
                        break;
                    }
                    rows += 1;
                }
            }
        }
    }
}

fn end(
    r: &[Msg],
    used: usize,
    err: Option<String>,
    rows: Option<u64>,
) -> Result<(Option<String>, Option<u64>), String> {
    if used == r.len() {
        Ok((err, rows))
    } else {
        Err(format!(
            "the response ends after packet {used}, but {} packets carry its sequence ids",
            r.len()
        ))
    }
}

fn my_conn(c: &Conn, e: &mut Expected) {
    let [cm, sm] = &c.msgs;
    let key = (c.client.clone(), c.server.clone());
    let problem = |e: &mut Expected, p: String| {
        e.problems
            .push(format!("{} -> {} (stream {}): {p}", key.0, key.1, c.stream))
    };
    let Some(greeting) = sm.first() else { return };
    if rc(greeting) == Some(0xff) {
        e.logins.push(ExpLogin {
            client: key.0.clone(),
            server: key.1.clone(),
            ts_ns: greeting.start_ns,
            user: None,
            database: None,
            success: false,
            error: greeting.f("mysql.error_code"),
            auth_method: None,
        });
        return;
    }
    let Some(hs) = cm.first() else { return };
    let mut method = hs
        .f("mysql.client_auth_plugin")
        .or_else(|| greeting.f("mysql.auth_plugin"));
    let mut si = 1;
    let mut outcome = None;
    while si < sm.len() {
        let m = &sm[si];
        si += 1;
        if let Some(p) = m.f("mysql.auth_switch_request.name") {
            method = Some(p);
        }
        match rc(m) {
            Some(0x00) => {
                outcome = Some((true, None));
                break;
            }
            Some(0xff) => {
                outcome = Some((false, m.f("mysql.error_code")));
                break;
            }
            _ => {}
        }
    }
    let Some((success, error)) = outcome else {
        // The connection ended before the server's final word.
        return;
    };
    // `mysql_clear_password` carrying an IAM authentication token: an IAM login.
    if method.as_deref() == Some("mysql_clear_password")
        && cm
            .iter()
            .filter_map(|x| {
                x.f("mysql.auth_switch_response.data")
                    .or_else(|| x.f("mysql.passwd"))
            })
            .any(|h| is_iam_token(&hex_bytes(&h)))
    {
        method = Some("iam".into());
    }
    e.logins.push(ExpLogin {
        client: key.0.clone(),
        server: key.1.clone(),
        ts_ns: hs.start_ns,
        user: hs.f("mysql.user"),
        database: hs.f("mysql.schema"),
        success,
        error,
        auth_method: method,
    });
    if !success {
        return;
    }
    // Commands: sequence id 0. Responses: split where the sequence id restarts at 1.
    let cmds: Vec<&Msg> = cm[1..].iter().filter(|m| seq(m) == 0).collect();
    let rest = &sm[si..];
    let mut resps: Vec<&[Msg]> = Vec::new();
    let mut s = 0;
    for i in 1..=rest.len() {
        if i == rest.len() || (seq(&rest[i]) == 1 && seq(&rest[i - 1]) != 0) {
            resps.push(&rest[s..i]);
            s = i;
        }
    }
    let mut stmts: HashMap<u64, String> = HashMap::new();
    let mut ri = 0;
    for m in cmds {
        let Some(cmd) = m.n("mysql.command") else {
            problem(e, format!("frame {}: a command without a code", m.frame));
            return;
        };
        let mut text = match cmd {
            COM_QUERY | COM_STMT_PREPARE => m.f("mysql.query"),
            _ => None,
        };
        if cmd == COM_STMT_EXECUTE {
            text = m.n("mysql.stmt_id").and_then(|id| stmts.get(&id).cloned());
        }
        let verb = match cmd {
            COM_QUERY | COM_STMT_EXECUTE => text.as_deref().and_then(first_word),
            COM_STMT_PREPARE => None,
            c => Some(mysql_command_name(c).to_string()),
        };
        let what = format!(
            "COM_{} (frame {}) `{}`",
            mysql_command_name(cmd),
            m.frame,
            short(
                text.as_deref()
                    .or(m.f("mysql.schema").as_deref())
                    .unwrap_or("")
            )
        );
        let mut q = ExpQuery {
            client: key.0.clone(),
            server: key.1.clone(),
            ts_ns: m.start_ns,
            first_ns: None,
            end_ns: m.start_ns,
            error: None,
            rows: None,
            text: text.clone(),
            verb,
            prepared: Some(matches!(cmd, COM_STMT_EXECUTE)),
            unanswered: false,
            what,
        };
        if cmd == COM_QUIT {
            // The end of the session: no query, no response.
            continue;
        }
        if matches!(cmd, COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA) {
            // No response: reported at once.
            e.queries.push(q);
            continue;
        }
        let Some(r) = resps.get(ri) else {
            // The connection ended before the answer.
            continue;
        };
        ri += 1;
        match my_walk(cmd, r) {
            Ok((err, rows)) => {
                q.error = err;
                if matches!(cmd, COM_QUERY | COM_STMT_EXECUTE) && q.error.is_none() {
                    q.rows = Some(rows);
                }
            }
            Err(why) => {
                problem(e, format!("{}: {why}", q.what));
                return;
            }
        }
        if cmd == COM_STMT_PREPARE
            && q.error.is_none()
            && let (Some(id), Some(t)) = (r[0].n("mysql.stmt_id"), text)
        {
            stmts.insert(id, t);
        }
        q.first_ns = Some(r[0].start_ns);
        q.end_ns = r.last().unwrap().end_ns;
        e.queries.push(q);
    }
    if ri < resps.len() {
        problem(e, format!("{} responses for {ri} commands", resps.len()));
    }
}

/// A TDS message: its packets (EOM ends it), as tshark showed them.
struct TdsMsg<'a> {
    typ: u64,
    start_ns: u64,
    end_ns: u64,
    /// Where tshark put the reassembled message: the last packet.
    last: &'a Msg,
    frame: u64,
}

fn tds_messages(packets: &[Msg]) -> Vec<TdsMsg<'_>> {
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    for p in packets {
        let s = *start.get_or_insert(p.start_ns);
        if p.n("tds.status").unwrap_or(0) & 1 != 0 {
            out.push(TdsMsg {
                typ: p.n("tds.type").unwrap_or(0),
                start_ns: s,
                end_ns: p.end_ns,
                last: p,
                frame: p.frame,
            });
            start = None;
        }
    }
    out
}

/// What tshark shows of a reply's DONE tokens: the rows DONE and DONEINPROC counted (a
/// DONEPROC's only when nothing before it counted), and per procedure of a batched RPC. tshark
/// groups tokens by kind, so their order is lost: per procedure only when each has exactly
/// one counting DONEINPROC (paired in order) or none has any (its DONEPROC's count);
/// otherwise per-procedure rows are not known (empty).
fn tds_reply_rows(m: &Msg) -> (Option<u64>, Vec<Option<u64>>) {
    let counted = |t: &Value, kind: &str| -> Option<u64> {
        let st = num(t, &format!("tds.{kind}.status"))?;
        (st & 0x10 != 0)
            .then(|| {
                num(t, &format!("tds.{kind}.donerowcount64"))
                    .or(num(t, &format!("tds.{kind}.donerowcount")))
            })
            .flatten()
    };
    let mut total = None::<u64>;
    for kind in ["done", "doneinproc"] {
        for t in
            m.v.get(format!("tds.{kind}"))
                .map(as_list)
                .unwrap_or_default()
        {
            if let Some(n) = counted(t, kind) {
                total = Some(total.unwrap_or(0) + n);
            }
        }
    }
    let procs: Vec<Option<u64>> =
        m.v.get("tds.doneproc")
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .map(|t| counted(t, "doneproc"))
            .collect();
    let inproc: Vec<u64> =
        m.v.get("tds.doneinproc")
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| counted(t, "doneinproc"))
            .collect();
    if total.is_none() {
        total = procs.iter().flatten().copied().reduce(|a, b| a + b);
    }
    let per_proc = if inproc.is_empty() {
        procs
    } else if inproc.len() == procs.len() && m.v.get("tds.done").is_none() {
        inproc.into_iter().map(Some).collect()
    } else {
        Vec::new()
    };
    (total, per_proc)
}

/// The first ERROR token's number in a reply.
fn tds_error(m: &Msg) -> Option<String> {
    m.v.get("tds.error")
        .and_then(|e| first(e, "tds.error.number"))
}

fn tds_conn(c: &Conn, e: &mut Expected) {
    let key = (c.client.clone(), c.server.clone());
    let cm = tds_messages(&c.msgs[0]);
    let sm = tds_messages(&c.msgs[1]);
    let problem = |e: &mut Expected, p: String| {
        e.problems
            .push(format!("{} -> {} (stream {}): {p}", key.0, key.1, c.stream))
    };
    let mut ci = 0;
    let mut si = 0;
    // PRELOGIN and its reply.
    if cm.first().is_some_and(|m| m.typ == 18) {
        ci = 1;
        si = 1;
    }
    // LOGIN7 and the reply that decides it.
    if let Some(l) = cm.get(ci).filter(|m| m.typ == 16) {
        ci += 1;
        let Some(r) = sm.get(si) else { return };
        si += 1;
        let success = r.last.v.get("tds.loginack").is_some();
        e.logins.push(ExpLogin {
            client: key.0.clone(),
            server: key.1.clone(),
            ts_ns: l.start_ns,
            user: l.last.f("tds.7login.username"),
            database: l
                .last
                .f("tds.7login.databasename")
                .filter(|d| !d.is_empty()),
            success,
            error: tds_error(r.last),
            auth_method: Some("sql".into()),
        });
        if !success {
            return;
        }
    }
    let requests = &cm[ci..];
    let replies = &sm[si..];
    if replies.len() > requests.len() {
        problem(
            e,
            format!("{} replies for {} requests", replies.len(), requests.len()),
        );
        return;
    }
    for (i, m) in requests.iter().enumerate() {
        let reply = replies.get(i);
        let base = ExpQuery {
            client: key.0.clone(),
            server: key.1.clone(),
            ts_ns: m.start_ns,
            first_ns: reply.map(|r| r.start_ns),
            end_ns: reply.map_or(m.end_ns, |r| r.end_ns),
            error: reply.and_then(|r| tds_error(r.last)),
            rows: reply.is_none().then_some(None),
            text: None,
            verb: None,
            prepared: Some(false),
            unanswered: reply.is_none(),
            what: String::new(),
        };
        match m.typ {
            1 => {
                let text = m.last.f("tds.query");
                let mut q = base;
                q.verb = text.as_deref().and_then(first_word);
                q.what = format!(
                    "SQL batch (frame {}) `{}`",
                    m.frame,
                    short(text.as_deref().unwrap_or(""))
                );
                if let Some(r) = reply {
                    q.rows = Some(tds_reply_rows(r.last).0);
                }
                q.text = text;
                e.queries.push(q);
            }
            3 => {
                // One query per call of a batched RPC (tshark lists them in order).
                let rpc = m.last.v.get("tds.rpc");
                let ids: Vec<String> = rpc.map(|r| all(r, "tds.rpc.proc_id")).unwrap_or_default();
                let names: Vec<String> = rpc.map(|r| all(r, "tds.rpc.name")).unwrap_or_default();
                let calls = ids.len() + names.len();
                let (_, procs) = reply.map(|r| tds_reply_rows(r.last)).unwrap_or_default();
                for k in 0..calls.max(1) {
                    let mut q = base.clone();
                    let id = ids.get(k).and_then(|x| parse_num(x));
                    let name = if ids.is_empty() {
                        names.get(k).cloned()
                    } else {
                        None
                    };
                    // tshark leaves an RPC it cannot read as data (a client whose packet
                    // ids run on across messages, as pytds's do): then it is not known.
                    q.prepared = (calls > 0).then_some(matches!(id, Some(4 | 5 | 12 | 13)));
                    if name.is_some()
                        && !name
                            .as_deref()
                            .is_some_and(|n| n.ends_with("sp_executesql"))
                    {
                        q.verb = Some("EXEC".into());
                    }
                    if calls > 1 {
                        q.rows = reply.and_then(|_| procs.get(k).copied());
                        // Each call's error: only the whole message's is known.
                        q.error = None;
                    } else if let Some(r) = reply {
                        q.rows = Some(tds_reply_rows(r.last).0);
                    }
                    q.what = format!(
                        "RPC call {} of {} (frame {}) {}",
                        k + 1,
                        calls.max(1),
                        m.frame,
                        name.clone()
                            .or(id.map(|i| format!("proc id {i}")))
                            .unwrap_or_else(|| "(tshark could not read it)".into())
                    );
                    e.queries.push(q);
                }
            }
            14 => {
                let mut q = base;
                q.what = format!("transaction manager request (frame {})", m.frame);
                e.queries.push(q);
            }
            6 => {
                // ATTENTION: answered by the reply whose DONE carries DONE_ATTN.
                let mut q = base;
                q.verb = Some("ATTENTION".into());
                q.rows = reply.map(|_| None);
                q.what = format!("ATTENTION (frame {})", m.frame);
                e.queries.push(q);
            }
            t => problem(e, format!("frame {}: a request of type {t}", m.frame)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sensor

pub struct SensorRun {
    pub records: Vec<Record>,
    pub tls_sessions: u64,
}

impl SensorRun {
    pub fn queries(&self) -> Vec<&QueryRecord> {
        self.records.iter().filter_map(Record::as_query).collect()
    }
    pub fn logins(&self) -> Vec<&LoginRecord> {
        self.records.iter().filter_map(Record::as_login).collect()
    }
    /// The decoders' figures at the end of the run (the last summary).
    pub fn decoders(&self) -> rds_sensor::model::DecoderStats {
        self.records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Summary(s) => Some(s.decoders),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// `analyze --tls-keylog` on a capture.
pub fn run_sensor_with(pcap: &Path, keylog: &Path) -> SensorRun {
    use rds_sensor::session::tls::{self, Hold, KeyLogFiles, KeyStore};
    let store = KeyStore::new(1000, None);
    KeyLogFiles::new(&[keylog.to_path_buf()])
        .unwrap()
        .poll(&store)
        .unwrap();
    run_sensor_layers(pcap, tls::layers(store, Hold::default()))
}

/// `analyze` on a capture, as `rds-sensor analyze` runs it (redaction on, default caps).
pub fn run_sensor(pcap: &Path) -> SensorRun {
    run_sensor_layers(pcap, rds_sensor::session::Layers::none())
}

/// `analyze` on a capture with the given session layers (TLS).
pub fn run_sensor_layers(pcap: &Path, layers: rds_sensor::session::Layers) -> SensorRun {
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut p = Pipeline::new(
        PipelineOptions::default(),
        Box::new(Collect(records.clone())),
    )
    .with_layers(layers);
    offline::analyze(
        pcap,
        &OfflineOptions {
            ports: DEFAULT_DB_PORTS.to_vec(),
            config: SensorConfig::default(),
            flow_capacity: 1 << 20,
        },
        &mut p,
    )
    .expect("analyze");
    let records = records.lock().unwrap().clone();
    let tls_sessions = records
        .iter()
        .filter_map(|r| match r {
            Record::Summary(s) => Some(s.decoders.tls_sessions),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    SensorRun {
        records,
        tls_sessions,
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

fn us(ns: u64, base: u64) -> String {
    format!("+{}µs", (ns.saturating_sub(base)) / 1000)
}

fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= 1
}

/// Every difference between what the oracle expects and what the sensor reported.
pub fn compare(name: &str, exp: &Expected, run: &SensorRun) -> Vec<String> {
    let mut fails = Vec::new();
    for p in &exp.problems {
        fails.push(format!("{name}: ORACLE cannot derive: {p}"));
    }
    let base = exp.first_ns;
    // ---- queries, per connection, in request order
    let mut want: BTreeMap<(String, String), Vec<&ExpQuery>> = BTreeMap::new();
    for q in &exp.queries {
        want.entry((q.client.clone(), q.server.clone()))
            .or_default()
            .push(q);
    }
    let mut got: BTreeMap<(String, String), Vec<&QueryRecord>> = BTreeMap::new();
    for q in run.queries() {
        got.entry((q.endpoint.client.clone(), q.endpoint.server.clone()))
            .or_default()
            .push(q);
    }
    for v in got.values_mut() {
        v.sort_by_key(|q| q.ts.ns());
    }
    let mut keys: Vec<_> = want.keys().chain(got.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let w = want.get(&k).cloned().unwrap_or_default();
        let g = got.get(&k).cloned().unwrap_or_default();
        let conn = format!("{name} {} -> {}", k.0, k.1);
        let (mut i, mut j) = (0, 0);
        while i < w.len() || j < g.len() {
            match (w.get(i), g.get(j)) {
                (Some(e), Some(r)) if r.ts.ns().abs_diff(e.ts_ns) <= 1000 => {
                    check_query(&conn, e, r, base, &mut fails);
                    i += 1;
                    j += 1;
                }
                (Some(e), r) if r.is_none_or(|r| r.ts.ns() > e.ts_ns) => {
                    fails.push(format!(
                        "{conn}: MISSING {} at {} (latency {}µs, first byte {:?}µs, error {:?}): not reported",
                        e.what,
                        us(e.ts_ns, base),
                        e.latency_us(),
                        e.first_byte_us(),
                        e.error
                    ));
                    i += 1;
                }
                (_, Some(r)) => {
                    fails.push(format!(
                        "{conn}: UNEXPECTED query record at {}: {} `{}` latency {}µs error {:?} (no request starts then)",
                        us(r.ts.ns(), base),
                        r.verb,
                        short(&r.fingerprint),
                        r.latency_us,
                        r.error_code
                    ));
                    j += 1;
                }
                (None, None) => break,
                (Some(_), None) => unreachable!(),
            }
        }
    }
    // ---- logins
    let mut wl: BTreeMap<(String, String), Vec<&ExpLogin>> = BTreeMap::new();
    for l in &exp.logins {
        wl.entry((l.client.clone(), l.server.clone()))
            .or_default()
            .push(l);
    }
    let mut gl: BTreeMap<(String, String), Vec<&LoginRecord>> = BTreeMap::new();
    for l in run.logins() {
        gl.entry((l.endpoint.client.clone(), l.endpoint.server.clone()))
            .or_default()
            .push(l);
    }
    let mut keys: Vec<_> = wl.keys().chain(gl.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let w = wl.get(&k).cloned().unwrap_or_default();
        let g = gl.get(&k).cloned().unwrap_or_default();
        let conn = format!("{name} {} -> {}", k.0, k.1);
        if w.len() != g.len() {
            fails.push(format!(
                "{conn}: {} login record(s), expected {}",
                g.len(),
                w.len()
            ));
        }
        for (e, r) in w.iter().zip(g.iter()) {
            let want_outcome = if e.success {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let mut diffs = Vec::new();
            if r.user != e.user {
                diffs.push(format!("user {:?}, expected {:?}", r.user, e.user));
            }
            if r.database != e.database {
                diffs.push(format!(
                    "database {:?}, expected {:?}",
                    r.database, e.database
                ));
            }
            if r.outcome != want_outcome {
                diffs.push(format!(
                    "outcome {:?}, expected {want_outcome:?}",
                    r.outcome
                ));
            }
            if r.error_code != e.error {
                diffs.push(format!(
                    "error_code {:?}, expected {:?}",
                    r.error_code, e.error
                ));
            }
            if r.auth_method != e.auth_method {
                diffs.push(format!(
                    "auth_method {:?}, expected {:?}",
                    r.auth_method, e.auth_method
                ));
            }
            if r.ts.ns().abs_diff(e.ts_ns) > 1000 {
                diffs.push(format!(
                    "ts {}, expected {}",
                    us(r.ts.ns(), base),
                    us(e.ts_ns, base)
                ));
            }
            let tls = exp
                .tls
                .iter()
                .any(|t| t.0 == r.endpoint.client && t.1 == r.endpoint.server);
            if r.tls != tls {
                diffs.push(format!("tls {}, expected {tls}", r.tls));
            }
            if !diffs.is_empty() {
                fails.push(format!("{conn}: login: {}", diffs.join("; ")));
            }
        }
    }
    // ---- TLS sessions: counted, and nothing decoded from them
    if run.tls_sessions != exp.tls.len() as u64 {
        fails.push(format!(
            "{name}: tls_sessions {}, expected {} (connections with TLS records: {:?})",
            run.tls_sessions,
            exp.tls.len(),
            exp.tls
        ));
    }
    for k in exp.opaque.iter().chain(exp.cancels.iter()) {
        let n = run
            .records
            .iter()
            .filter(|r| match r {
                Record::Query(q) => q.endpoint.client == k.0 && q.endpoint.server == k.1,
                Record::Login(l) => l.endpoint.client == k.0 && l.endpoint.server == k.1,
                _ => false,
            })
            .count();
        if n > 0 {
            fails.push(format!(
                "{name} {} -> {}: {n} login/query records from a TLS or CancelRequest connection",
                k.0, k.1
            ));
        }
    }
    fails
}

fn check_query(conn: &str, e: &ExpQuery, r: &QueryRecord, base: u64, fails: &mut Vec<String>) {
    let mut d = Vec::new();
    if e.unanswered {
        if r.latency_first_byte_us.is_some() || r.rows.is_some() {
            d.push(format!(
                "no answer was captured, yet first byte {:?}µs, rows {:?}",
                r.latency_first_byte_us, r.rows
            ));
        }
    } else if !close(r.latency_us, e.latency_us()) {
        d.push(format!(
            "latency_us {}, expected {}",
            r.latency_us,
            e.latency_us()
        ));
    }
    match (r.latency_first_byte_us, e.first_byte_us()) {
        _ if e.unanswered => {}
        (Some(a), Some(b)) if close(a, b) => {}
        (None, None) => {}
        (a, b) => d.push(format!("latency_first_byte_us {a:?}, expected {b:?}")),
    }
    if r.error_code != e.error {
        d.push(format!(
            "error_code {:?}, expected {:?}",
            r.error_code, e.error
        ));
    }
    if let Some(rows) = e.rows
        && r.rows != rows
    {
        d.push(format!("rows {:?}, expected {rows:?}", r.rows));
    }
    if let Some(v) = &e.verb
        && &r.verb != v
    {
        d.push(format!("verb {:?}, expected {v:?}", r.verb));
    }
    if let Some(p) = e.prepared
        && r.prepared != p
    {
        d.push(format!("prepared {}, expected {p}", r.prepared));
    }
    if let Some(t) = &e.text
        && !r.fingerprint.ends_with(" …")
    {
        let fp = r.fingerprint.to_ascii_lowercase();
        let missing: Vec<String> = bare_words(t)
            .into_iter()
            .filter(|w| !fp.contains(w.as_str()))
            .collect();
        if !missing.is_empty() && r.verb != "EXECUTE" {
            d.push(format!(
                "fingerprint `{}` lacks {missing:?} of the statement text",
                short(&r.fingerprint)
            ));
        }
    }
    if !d.is_empty() {
        fails.push(format!(
            "{conn}: {} at {}: {}",
            e.what,
            us(e.ts_ns, base),
            d.join("; ")
        ));
    }
}

/// The oracle against the sensor on one capture: every failure, and a one-line summary.
pub fn check_capture(pcap: &Path) -> (Vec<String>, String) {
    check_capture_with(pcap, None)
}

/// With a key log: tshark decrypts for the oracle, the sensor for itself.
pub fn check_capture_with(pcap: &Path, keylog: Option<&Path>) -> (Vec<String>, String) {
    let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
    let (exp, run) = match keylog {
        Some(k) => (expectations_with(pcap, k), run_sensor_with(pcap, k)),
        None => (expectations(pcap), run_sensor(pcap)),
    };
    let fails = compare(&name, &exp, &run);
    let summary = format!(
        "{name}: oracle expects {} queries, {} logins, {} TLS sessions; sensor reported {} queries, {} logins, {} TLS sessions; {} differences",
        exp.queries.len(),
        exp.logins.len(),
        exp.tls.len(),
        run.queries().len(),
        run.logins().len(),
        run.tls_sessions,
        fails.len()
    );
    (fails, summary)
}

pub fn report(fails: &[String], summary: &str) {
    eprintln!("{summary}");
    for f in fails.iter().take(80) {
        eprintln!("  {f}");
    }
    if fails.len() > 80 {
        eprintln!("  … and {} more", fails.len() - 80);
    }
}

// ---------------------------------------------------------------------------------------------
// Captures as data: for variants of the bundled captures (reordered, duplicated, cut frames)

pub fn pcaps_dir() -> PathBuf {
    std::env::var_os("RDS_SENSOR_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps"))
}

pub fn pcap(name: &str) -> PathBuf {
    pcaps_dir().join(name)
}

#[derive(Clone, Debug)]
pub struct PcapRec {
    pub ts_sec: u32,
    pub ts_frac: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A classic pcap: its 24-byte header and records (either byte order, µs or ns).
pub struct PcapFile {
    pub header: Vec<u8>,
    pub big_endian: bool,
    pub nanos: bool,
    pub recs: Vec<PcapRec>,
}

impl PcapFile {
    pub fn read(path: &Path) -> Self {
        let b = std::fs::read(path).unwrap();
        let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let (big_endian, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            m => panic!("{}: not a classic pcap (magic {m:#x})", path.display()),
        };
        let rd = |x: &[u8]| {
            let a: [u8; 4] = x.try_into().unwrap();
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let mut recs = Vec::new();
        let mut i = 24;
        while i + 16 <= b.len() {
            let incl = rd(&b[i + 8..i + 12]) as usize;
            recs.push(PcapRec {
                ts_sec: rd(&b[i..i + 4]),
                ts_frac: rd(&b[i + 4..i + 8]),
                orig_len: rd(&b[i + 12..i + 16]),
                data: b[i + 16..i + 16 + incl].to_vec(),
            });
            i += 16 + incl;
        }
        Self {
            header: b[..24].to_vec(),
            big_endian,
            nanos,
            recs,
        }
    }

    pub fn write(&self, path: &Path) {
        let wr = |v: &mut Vec<u8>, x: u32| {
            if self.big_endian {
                v.extend_from_slice(&x.to_be_bytes())
            } else {
                v.extend_from_slice(&x.to_le_bytes())
            }
        };
        let mut v = self.header.clone();
        for r in &self.recs {
            wr(&mut v, r.ts_sec);
            wr(&mut v, r.ts_frac);
            wr(&mut v, r.data.len() as u32);
            wr(&mut v, r.orig_len.max(r.data.len() as u32));
            v.extend_from_slice(&r.data);
        }
        std::fs::write(path, v).unwrap();
    }

    pub fn ts_ns(&self, i: usize) -> u64 {
        let r = &self.recs[i];
        r.ts_sec as u64 * 1_000_000_000 + r.ts_frac as u64 * if self.nanos { 1 } else { 1000 }
    }

    /// Keeps the i-th timestamp in place while the frames' contents move (the order the
    /// mirror target received them in; timestamps stay monotonic).
    pub fn swap_contents(&mut self, i: usize, j: usize) {
        let (a, b) = (self.recs[i].clone(), self.recs[j].clone());
        self.recs[i].data = b.data;
        self.recs[i].orig_len = b.orig_len;
        self.recs[j].data = a.data;
        self.recs[j].orig_len = a.orig_len;
    }
}

/// A scratch directory for derived captures, unique per test process and name.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rds-sensor-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Where in a frame the inner TCP header of a (possibly VXLAN-wrapped) IPv4/IPv6 Ethernet frame
/// is, and the TCP payload's offset and length. Independent of the sensor's parser.
pub fn tcp_of(frame: &[u8]) -> Option<TcpView> {
    fn ip_at(f: &[u8], mut o: usize) -> Option<TcpView> {
        // Ethernet (skip VLAN tags)
        let mut et = u16::from_be_bytes([*f.get(o + 12)?, *f.get(o + 13)?]);
        o += 14;
        while et == 0x8100 || et == 0x88a8 {
            et = u16::from_be_bytes([*f.get(o + 2)?, *f.get(o + 3)?]);
            o += 4;
        }
        let (proto, l4, ip_end) = match et {
            0x0800 => {
                let ihl = (*f.get(o)? & 0x0f) as usize * 4;
                let total = u16::from_be_bytes([*f.get(o + 2)?, *f.get(o + 3)?]) as usize;
                (*f.get(o + 9)?, o + ihl, o + total)
            }
            0x86dd => {
                let plen = u16::from_be_bytes([*f.get(o + 4)?, *f.get(o + 5)?]) as usize;
                (*f.get(o + 6)?, o + 40, o + 40 + plen)
            }
            _ => return None,
        };
        match proto {
            17 => {
                let dport = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
                if dport != 4789 {
                    return None;
                }
                ip_at(f, l4 + 8 + 8)
            }
            6 => {
                let off = ((*f.get(l4 + 12)? >> 4) as usize) * 4;
                Some(TcpView {
                    tcp: l4,
                    payload: l4 + off,
                    payload_len: ip_end.saturating_sub(l4 + off),
                    sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
                    dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
                    flags: f[l4 + 13],
                })
            }
            _ => None,
        }
    }
    ip_at(frame, 0)
}

#[derive(Clone, Copy, Debug)]
pub struct TcpView {
    pub tcp: usize,
    pub payload: usize,
    pub payload_len: usize,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
}
