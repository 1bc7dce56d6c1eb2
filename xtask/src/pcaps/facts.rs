//! `pcaps/README.md` and the tshark check of every fact it states.
//!
//! Each fact is a tshark display filter plus what its output must be; the README prints the
//! exact shell command, and `verify` runs the same query after recording, so the README cannot
//! drift from the files.

use super::{CANARY, MIRROR_TARGET, OUTPUTS, PASSWORD, TRUNCATE_TO, VNI_MYSQL, VNI_PG};
use super::{Form, Proto};
use crate::pcapfmt::OUTER_LEN;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

pub enum Check {
    /// Every value of the field over the matching frames, in order (several messages in one
    /// frame give comma-separated values; empty values are dropped).
    Values(&'static [&'static str]),
    /// How many of those values equal the first item.
    Count(&'static str, usize),
    /// How many values there are in all.
    Total(usize),
    /// How many frames match the filter.
    Frames(usize),
    /// At least one frame matches the filter.
    SomeFrames,
}

pub struct Fact {
    pub file: &'static str,
    pub says: &'static str,
    pub filter: &'static str,
    pub field: &'static str,
    pub check: Check,
}

const CHECKSUM_OPTS: &[&str] = &[
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "ip.check_checksum:TRUE",
];
const BAD_CHECKSUM: &str = "tcp.checksum.status == 0 || ip.checksum.status == 0";

macro_rules! fact {
    ($file:literal, $says:literal, $filter:literal, $field:literal, $check:expr) => {
        Fact {
            file: $file,
            says: $says,
            filter: $filter,
            field: $field,
            check: $check,
        }
    };
    ($file:literal, $says:literal, $filter:literal, $check:expr) => {
        Fact {
            file: $file,
            says: $says,
            filter: $filter,
            field: "frame.number",
            check: $check,
        }
    };
}

use Check::{Count, Frames, SomeFrames, Total, Values};

/// Facts specific to one file; `common_facts` adds the encapsulation and checksum ones.
pub const FACTS: &[Fact] = &[
    // ---- pg-auth
    fact!(
        "pg-auth.pcap",
        "Authentication requests in order (5 MD5, 10/11/12 SASL/SCRAM, 3 cleartext, 0 AuthenticationOk): md5 ok; scram ok; cleartext ok; scram over IPv6 ok; scram with a wrong password (no 0); md5 into an unknown database (AuthenticationOk comes before the database check). So 5 AuthenticationOk, 4 logins that work.",
        "pgsql.authtype",
        "pgsql.authtype",
        Values(&[
            "5", "0", "10", "11", "12", "0", "3", "0", "10", "11", "12", "0", "10", "11", "5", "0"
        ])
    ),
    fact!(
        "pg-auth.pcap",
        "Exactly two ErrorResponses: 28P01 (wrong password), then 3D000 (unknown database).",
        "pgsql.code",
        "pgsql.code",
        Values(&["28P01", "3D000"])
    ),
    fact!(
        "pg-auth.pcap",
        "Six sessions (StartupMessages).",
        "pgsql",
        "pgsql.type",
        Count("Startup message", 6)
    ),
    fact!(
        "pg-auth.pcap",
        "Outer (ENI) and inner source address of each StartupMessage: ENI 192.0.2.N mirrors client 198.51.100.N; the IPv6 session (4th) has outer source 192.0.2.20 and no inner IPv4.",
        "pgsql.type == \"Startup message\"",
        "ip.src",
        Values(&[
            "192.0.2.20",
            "198.51.100.20",
            "192.0.2.21",
            "198.51.100.21",
            "192.0.2.22",
            "198.51.100.22",
            "192.0.2.20",
            "192.0.2.20",
            "198.51.100.20",
            "192.0.2.21",
            "198.51.100.21"
        ])
    ),
    fact!(
        "pg-auth.pcap",
        "One session runs over IPv6, from 2001:db8:100::20 to 2001:db8:100::10.",
        "pgsql.type == \"Startup message\" && ipv6.src == 2001:db8:100::20 && ipv6.dst == 2001:db8:100::10",
        Frames(1)
    ),
    fact!(
        "pg-auth.pcap",
        "The `password` method (u_clear) sends the password in clear text: exactly one PasswordMessage holds it.",
        "pgsql.password == \"Sup3r-Secret-Pw!\"",
        Frames(1)
    ),
    // ---- pg-queries
    fact!(
        "pg-queries.pcap",
        "16 simple Query messages: 15 in the main session (198.51.100.20), 1 (`SELECT pg_sleep(30)`) in the cancelled one (198.51.100.21).",
        "pgsql",
        "pgsql.type",
        Count("Simple query", 16)
    ),
    fact!(
        "pg-queries.pcap",
        "Three ErrorResponses: 22012 (division by zero), 42601 (syntax error), 57014 (query cancelled).",
        "pgsql.code",
        "pgsql.code",
        Values(&["22012", "42601", "57014"])
    ),
    fact!(
        "pg-queries.pcap",
        "5006 DataRows, 5000 of them from `SELECT * FROM items ORDER BY id` (one response spread over many full-size segments).",
        "pgsql",
        "pgsql.type",
        Count("Data row", 5006)
    ),
    fact!(
        "pg-queries.pcap",
        "2001 CopyData messages: 2000 rows of COPY ... TO STDOUT and 1 message of COPY ... FROM STDIN.",
        "pgsql",
        "pgsql.type",
        Count("Copy data", 2001)
    ),
    fact!(
        "pg-queries.pcap",
        "One multi-statement Query (three SELECTs in one message).",
        "pgsql.query contains \"AS one ; SELECT\"",
        Frames(1)
    ),
    fact!(
        "pg-queries.pcap",
        "The canary literal is in exactly one Query.",
        "pgsql.query contains \"canary-literal-4242\"",
        Frames(1)
    ),
    fact!(
        "pg-queries.pcap",
        "One CancelRequest, on its own connection from 198.51.100.21.",
        "pgsql.type == \"Cancel request\" && ip.src == 198.51.100.21",
        Frames(1)
    ),
    fact!(
        "pg-queries.pcap",
        "No frame is longer than 50 + 1514 bytes (no TSO/GRO super-packets)...",
        "frame.len > 1564",
        Frames(0)
    ),
    fact!(
        "pg-queries.pcap",
        "... and full-size ones exist (the large result).",
        "frame.len == 1564",
        SomeFrames
    ),
    // ---- pg-queries-trunc128
    fact!(
        "pg-queries-trunc128.pcap",
        "No frame has more than 50 + 128 captured bytes.",
        "frame.cap_len > 178",
        Frames(0)
    ),
    fact!(
        "pg-queries-trunc128.pcap",
        "Frames longer than that are cut: caplen < len.",
        "frame.len > frame.cap_len",
        SomeFrames
    ),
    fact!(
        "pg-queries-trunc128.pcap",
        "In every cut frame the outer IPv4 total length (164) and UDP length (144) describe the truncated copy...",
        "frame.len > frame.cap_len && !(ip.len#1 == 164 && udp.length == 144)",
        Frames(0)
    ),
    fact!(
        "pg-queries-trunc128.pcap",
        "... while the inner IPv4 total length is the original one (more than the 114 bytes present).",
        "frame.len > frame.cap_len && ip.len#2 > 114",
        SomeFrames
    ),
    // ---- pg-extended
    fact!(
        "pg-extended.pcap",
        "Named prepared statements P_0..P_6 are parsed once (pgbench -M prepared, tpcb-like, 198.51.100.20).",
        "pgsql.type == \"Parse\"",
        "pgsql.statement",
        Values(&["P_0", "P_1", "P_2", "P_3", "P_4", "P_5", "P_6"])
    ),
    fact!(
        "pg-extended.pcap",
        "... and bound 28 times (7 statements x 4 transactions).",
        "ip.src == 198.51.100.20",
        "pgsql.type",
        Count("Bind", 28)
    ),
    fact!(
        "pg-extended.pcap",
        "pgbench -M extended (198.51.100.21): 5 Parse of unnamed statements, each followed by Bind/Describe/Execute/Sync.",
        "ip.src == 198.51.100.21",
        "pgsql.type",
        Count("Parse", 5)
    ),
    fact!(
        "pg-extended.pcap",
        "Pipeline (198.51.100.22): 9 Execute ...",
        "ip.src == 198.51.100.22",
        "pgsql.type",
        Count("Execute", 9)
    ),
    fact!(
        "pg-extended.pcap",
        "... but only 3 Sync (one per \\endpipeline).",
        "ip.src == 198.51.100.22",
        "pgsql.type",
        Count("Sync", 3)
    ),
    fact!(
        "pg-extended.pcap",
        "In all: 21 Parse ...",
        "pgsql",
        "pgsql.type",
        Count("Parse", 21)
    ),
    fact!(
        "pg-extended.pcap",
        "... 42 Bind ...",
        "pgsql",
        "pgsql.type",
        Count("Bind", 42)
    ),
    fact!(
        "pg-extended.pcap",
        "... and 42 Execute.",
        "pgsql",
        "pgsql.type",
        Count("Execute", 42)
    ),
    // ---- pg-tls
    fact!(
        "pg-tls.pcap",
        "One SSLRequest ...",
        "pgsql",
        "pgsql.type",
        Values(&["SSL request"])
    ),
    fact!(
        "pg-tls.pcap",
        "... answered with a TLS 1.3 handshake ...",
        "tls.handshake.type == 2 && tls.handshake.extensions.supported_version == 0x0304",
        SomeFrames
    ),
    fact!(
        "pg-tls.pcap",
        "... after which nothing is readable: no StartupMessage, no Query.",
        "pgsql.type == \"Startup message\" || pgsql.query",
        Frames(0)
    ),
    // ---- pg-plain-query
    fact!(
        "pg-plain-query.pcap",
        "Plain Ethernet: no VXLAN at all.",
        "vxlan || udp",
        Frames(0)
    ),
    fact!(
        "pg-plain-query.pcap",
        "One scram session from 198.51.100.20 ...",
        "pgsql.type == \"Startup message\" && ip.src == 198.51.100.20",
        Frames(1)
    ),
    fact!(
        "pg-plain-query.pcap",
        "... with one Query holding the canary literal ...",
        "pgsql.query contains \"canary-literal-4242\"",
        Frames(1)
    ),
    fact!(
        "pg-plain-query.pcap",
        "... that returns 3 DataRows.",
        "pgsql",
        "pgsql.type",
        Count("Data row", 3)
    ),
    // ---- mysql-auth
    fact!(
        "mysql-auth.pcap",
        "Seven login requests, in order.",
        "mysql.user",
        "mysql.user",
        Values(&[
            "u_native",
            "u_ed25519",
            "u_native",
            "u_native",
            "u_native",
            "u_ed25519",
            "u_ed25519"
        ])
    ),
    fact!(
        "mysql-auth.pcap",
        "Outer (ENI) and inner source of each login request (the 3rd is IPv6 from 2001:db8:100::20).",
        "mysql.user",
        "ip.src",
        Values(&[
            "192.0.2.20",
            "198.51.100.20",
            "192.0.2.21",
            "198.51.100.21",
            "192.0.2.20",
            "192.0.2.22",
            "198.51.100.22",
            "192.0.2.20",
            "198.51.100.20",
            "192.0.2.21",
            "198.51.100.21",
            "192.0.2.22",
            "198.51.100.22"
        ])
    ),
    fact!(
        "mysql-auth.pcap",
        "The three ed25519 logins go through an AuthSwitchRequest to client_ed25519.",
        "mysql.auth_switch_request.name",
        "mysql.auth_switch_request.name",
        Values(&["client_ed25519", "client_ed25519", "client_ed25519"])
    ),
    fact!(
        "mysql-auth.pcap",
        "Four logins fail: 1045 (wrong password), 1049 (unknown database), 1044 (no access to the database), 1045 (ed25519, wrong password: after the AuthSwitchRequest and the client's signature).",
        "mysql.error_code",
        "mysql.error_code",
        Values(&["1045", "1049", "1044", "1045"])
    ),
    fact!(
        "mysql-auth.pcap",
        "The failed ed25519 login: AuthSwitchRequest (0xfe), the client's 64-byte ed25519 signature, then ERR 1045 (a multi-round exchange whose outcome is only in the server's last packet).",
        "tcp.port == 3306 && ip.addr == 198.51.100.22 && mysql.packet_number >= 2",
        "mysql.response_code",
        Values(&["0xff", "0xfe", "0xff"])
    ),
    fact!(
        "mysql-auth.pcap",
        "Three succeed (OK packets; the SELECT answers are result sets).",
        "mysql",
        "mysql.response_code",
        Count("0x00", 3)
    ),
    fact!(
        "mysql-auth.pcap",
        "One session runs over IPv6.",
        "mysql.user && ipv6.src == 2001:db8:100::20",
        Frames(1)
    ),
    // ---- mysql-queries
    fact!(
        "mysql-queries.pcap",
        "Client commands in order (3 COM_QUERY, 2 COM_INIT_DB, 1 COM_QUIT, 14 COM_PING); the first 25 are one session from 198.51.100.20, then the ping session from 198.51.100.21, then the pipelined session from 198.51.100.22.",
        "mysql.command",
        "mysql.command",
        Values(&[
            "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3", "3",
            "2", "3", "3", "2", "3", "3", "3", "1", "14", "1", "3", "3", "3", "3", "3", "1"
        ])
    ),
    fact!(
        "mysql-queries.pcap",
        "Three errors: 1146 (unknown table), 1064 (syntax), and 1054 (unknown column) for the second query of the pipelined session's second batch.",
        "mysql.error_code",
        "mysql.error_code",
        Values(&["1146", "1064", "1054"])
    ),
    fact!(
        "mysql-queries.pcap",
        "COM_INIT_DB to otherdb, then back to appdb.",
        "mysql.command == 2",
        "mysql.schema",
        Values(&["otherdb", "appdb"])
    ),
    fact!(
        "mysql-queries.pcap",
        "The canary literal is in exactly one COM_QUERY.",
        "mysql.query contains \"canary-literal-4242\"",
        Frames(1)
    ),
    fact!(
        "mysql-queries.pcap",
        "One multi-statement COM_QUERY (three SELECTs; CLIENT_MULTI_STATEMENTS) ...",
        "mysql.query contains \"AS one; SELECT\"",
        Frames(1)
    ),
    fact!(
        "mysql-queries.pcap",
        "... and one CALL of a procedure that returns two result sets.",
        "mysql.query == \"CALL two_results()\"",
        Frames(1)
    ),
    fact!(
        "mysql-queries.pcap",
        "The large result is complete: 20024 text values in all rows of the first session (5000 rows x 4 columns of `SELECT * FROM items` + 24 others), its last row included.",
        "mysql.row.text && ip.dst == 198.51.100.20",
        "mysql.row.text",
        Total(20024)
    ),
    fact!(
        "mysql-queries.pcap",
        "(the last row)",
        "mysql.row.text && ip.dst == 198.51.100.20",
        "mysql.row.text",
        Count("item-5000", 1)
    ),
    fact!(
        "mysql-queries.pcap",
        "One COM_PING, from 198.51.100.21 (mariadb-admin ping).",
        "mysql.command == 14 && ip.src == 198.51.100.21",
        Frames(1)
    ),
    fact!(
        "mysql-queries.pcap",
        "Pipelined session (198.51.100.22): its commands are two COM_QUERY, three COM_QUERY, COM_QUIT ...",
        "ip.src == 198.51.100.22 && mysql.command",
        "mysql.command",
        Values(&["3", "3", "3", "3", "3", "1"])
    ),
    fact!(
        "mysql-queries.pcap",
        "... and each batch of COM_QUERY is one frame: the client wrote them all before reading any answer (two requests in flight, then three).",
        "ip.src == 198.51.100.22 && count(mysql.command) >= 2",
        "mysql.command",
        Values(&["3", "3", "3", "3", "3"])
    ),
    fact!(
        "mysql-queries.pcap",
        "The answer to the first pipelined query (300 rows) spans several full-size segments.",
        "ip.dst == 198.51.100.22 && tcp.len == 1448",
        SomeFrames
    ),
    fact!(
        "mysql-queries.pcap",
        "The second batch: a result set, ERR 1054, then the UPDATE's OK with 3 affected rows.",
        "ip.dst == 198.51.100.22 && mysql.affected_rows == 3",
        Frames(1)
    ),
    // ---- mysql-prepared
    fact!(
        "mysql-prepared.pcap",
        "Commands in order: 4 COM_QUERY (the driver's SET NAMES etc.), then COM_STMT_PREPARE (22), COM_STMT_EXECUTE (23), COM_STMT_CLOSE (25), COM_QUIT (1).",
        "mysql.command",
        "mysql.command",
        Values(&[
            "3", "3", "3", "3", "22", "23", "23", "23", "22", "23", "23", "22", "23", "22", "25",
            "25", "25", "1"
        ])
    ),
    fact!(
        "mysql-prepared.pcap",
        "Statement ids of the EXECUTEs and CLOSEs (statement 2 is executed three times with different parameters).",
        "mysql.command == 23 || mysql.command == 25",
        "mysql.stmt_id",
        Values(&["2", "2", "2", "3", "3", "4", "2", "3", "4"])
    ),
    fact!(
        "mysql-prepared.pcap",
        "Integer parameters (FIELD_TYPE_LONG) of the three executions of statement 2.",
        "mysql.command == 23",
        "mysql.exec.field.long",
        Values(&["1", "3", "100", "104", "4000", "4001"])
    ),
    fact!(
        "mysql-prepared.pcap",
        "The canary literal is a binary string parameter of one COM_STMT_EXECUTE.",
        "mysql.command == 23 && mysql.exec.field.string == \"canary-literal-4242\"",
        Frames(1)
    ),
    fact!(
        "mysql-prepared.pcap",
        "The 4th PREPARE fails with 1054 (unknown column).",
        "mysql.error_code",
        "mysql.error_code",
        Values(&["1054"])
    ),
    // ---- mysql-tls
    fact!(
        "mysql-tls.pcap",
        "A server greeting in clear, then a TLS 1.3 handshake ...",
        "tls.handshake.type == 2 && tls.handshake.extensions.supported_version == 0x0304",
        SomeFrames
    ),
    fact!(
        "mysql-tls.pcap",
        "... and no readable login (the user name is inside TLS) or query.",
        "mysql.user == \"u_tls\" || mysql.query",
        Frames(0)
    ),
];

/// Facts every file of a form shares: encapsulation and correct inner checksums.
fn common_facts(form: Form, proto: Proto) -> Vec<(String, Vec<&'static str>, String, Check)> {
    let vni = match proto {
        Proto::Pg => VNI_PG,
        Proto::Mysql => VNI_MYSQL,
    };
    let mut v = Vec::new();
    if form != Form::Plain {
        v.push((
            format!("Every frame is VXLAN (UDP to port 4789) with VNI {vni}, sent to the mirror target {MIRROR_TARGET}."),
            vec![],
            format!("!(vxlan.vni == {vni} && udp.dstport == 4789 && ip.dst == {MIRROR_TARGET})"),
            Frames(0),
        ));
    }
    if form != Form::Truncated(TRUNCATE_TO) {
        v.push((
            "No bad IPv4 or TCP checksum (checked by tshark).".to_string(),
            CHECKSUM_OPTS.to_vec(),
            BAD_CHECKSUM.to_string(),
            Frames(0),
        ));
    }
    v
}

fn command(
    file: &str,
    opts: &[&str],
    filter: &str,
    field: &str,
    check: &Check,
) -> (String, String) {
    let mut cmd = format!("tshark -r pcaps/{file}");
    for o in opts {
        let _ = write!(cmd, " {o}");
    }
    let _ = write!(cmd, " -Y '{filter}'");
    let fields = format!("{cmd} -T fields -e {field} | tr ',' '\\n' | grep .");
    match check {
        Values(vals) => (format!("{fields} | paste -sd' '"), vals.join(" ")),
        Count(val, n) => (format!("{fields} | grep -cxF '{val}'"), n.to_string()),
        Total(n) => (format!("{fields} | wc -l"), n.to_string()),
        Frames(n) => (format!("{cmd} | wc -l"), n.to_string()),
        SomeFrames => (format!("{cmd} | wc -l"), "more than 0".to_string()),
    }
}

/// Runs one fact's query and returns an error message if it does not hold.
fn check_one(
    dir: &Path,
    file: &str,
    opts: &[&str],
    filter: &str,
    field: &str,
    check: &Check,
) -> Result<Option<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.join(file))
        .args(opts)
        .args(["-Y", filter, "-T", "fields", "-e", field])
        .output()
        .context("running tshark")?;
    if !out.status.success() {
        bail!(
            "tshark failed on {file} with filter `{filter}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let frames = text.lines().filter(|l| !l.trim().is_empty()).count();
    let values: Vec<&str> = text
        .lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let got = match check {
        Values(want) if values != *want => format!("{values:?}"),
        Count(val, n) if values.iter().filter(|v| *v == val).count() != *n => {
            values.iter().filter(|v| *v == val).count().to_string()
        }
        Total(n) if values.len() != *n => values.len().to_string(),
        Frames(n) if frames != *n => frames.to_string(),
        SomeFrames if frames == 0 => "0".to_string(),
        _ => return Ok(None),
    };
    Ok(Some(got))
}

/// Checks every fact about the files in `names` (those just written in `dir`).
pub fn verify(dir: &Path, names: &[&str]) -> Result<()> {
    let mut failed = Vec::new();
    let mut n = 0;
    for f in OUTPUTS.iter().filter(|f| names.contains(&f.name)) {
        for (says, opts, filter, check) in common_facts(f.form, f.proto) {
            n += 1;
            if let Some(got) = check_one(dir, f.name, &opts, &filter, "frame.number", &check)? {
                failed.push(format!("{}: {says} (`{filter}`): got {got}", f.name));
            }
        }
        for fact in FACTS.iter().filter(|x| x.file == f.name) {
            n += 1;
            if let Some(got) = check_one(dir, fact.file, &[], fact.filter, fact.field, &fact.check)?
            {
                let (cmd, want) = command(fact.file, &[], fact.filter, fact.field, &fact.check);
                failed.push(format!(
                    "{}: {}\n    `{cmd}`\n    want {want}, got {got}",
                    fact.file, fact.says
                ));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {n} README facts do not hold:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    crate::netlab::say(format!("tshark confirms all {n} README facts"));
    Ok(())
}

fn describe(file: &str) -> &'static str {
    match file {
        "pg-auth.pcap" => {
            "Six PostgreSQL logins to appdb, each running `SELECT current_user, inet_client_addr()` when it gets in: \
            u_md5 (md5) from 198.51.100.20, u_scram (scram-sha-256) from 198.51.100.21, u_clear (password, i.e. cleartext) from \
            198.51.100.22, u_scram over IPv6 from 2001:db8:100::20, u_scram with a wrong password from 198.51.100.20 (28P01), \
            u_md5 to the unknown database nosuchdb from 198.51.100.21 (3D000)."
        }
        "pg-queries.pcap" => {
            "One psql session (u_scram, appdb, 198.51.100.20) of simple Query messages: the canary query, an aggregate, a \
            multi-statement string (`SELECT 1 AS one ; SELECT 'two' AS two ; SELECT 3 AS three;`), `SELECT 1/0` (22012), \
            `SELEC id FROM items` (42601), `SELECT * FROM items ORDER BY id` (5000 rows), BEGIN/UPDATE/INSERT/DELETE/COMMIT, \
            `COPY (... 2000 rows) TO STDOUT`, a temp table filled with `COPY ... FROM STDIN` (3 rows). Then a second session from \
            198.51.100.21 runs `SELECT pg_sleep(30)`, psql gets SIGINT after 1.5 s and sends a CancelRequest on a new \
            connection; the query ends with 57014."
        }
        "pg-queries-trunc128.pcap" => {
            "pg-queries.pcap as a mirror session with PacketLength 128 delivers it: each inner frame is cut \
            to its first 128 bytes (outer frame at most 178 bytes). The record keeps the untruncated length (caplen < len); the \
            outer IPv4 total length and UDP length describe the truncated copy; the inner IP/TCP headers keep their original \
            lengths (so the inner IP total length exceeds what is present). Same frames and timestamps as pg-queries.pcap."
        }
        "pg-extended.pcap" => {
            "Extended query protocol from pgbench against benchdb (pgbench -i -s 1), user u_scram, with `-n -c 1`: \
            `-M prepared -b tpcb-like -t 4` from 198.51.100.20 (named statements P_0..P_6, Parse once, Bind/Execute per \
            transaction with different random parameters); `-M extended -b select-only -t 5` from 198.51.100.21 (unnamed \
            statements); `-M extended -t 3` with a script of `\\startpipeline`, SELECT/UPDATE/SELECT, `\\endpipeline` from \
            198.51.100.22 (pipelining: three Parse/Bind/Describe/Execute groups, then one Sync). Each pgbench run opens two \
            connections (a setup one that runs simple queries, and the client)."
        }
        "pg-tls.pcap" => {
            "psql with sslmode=require as u_tls (hostssl only) from 198.51.100.22: SSLRequest, 'S', TLS 1.3 (the server \
            asks for a HelloRetryRequest), then everything encrypted. The session runs a query on pg_stat_ssl that confirmed TLS."
        }
        "pg-plain-query.pcap" => {
            "NOT encapsulated: plain Ethernet frames as captured. One u_scram session from 198.51.100.20 running \
            `SELECT id, name FROM items WHERE name <> 'canary-literal-4242' ORDER BY id LIMIT 3`."
        }
        "mysql-auth.pcap" => {
            "Seven MariaDB logins (mariadb client, TLS off, `-e 'SELECT CURRENT_USER(), DATABASE()'`): u_native \
            (mysql_native_password) from 198.51.100.20; u_ed25519 (ed25519: the server answers the client's \
            mysql_native_password with an AuthSwitchRequest to client_ed25519) from 198.51.100.21; u_native over IPv6 from \
            2001:db8:100::20; u_native with a wrong password from 198.51.100.22 (1045); u_native to the unknown database \
            nosuchdb from 198.51.100.20 (1049); u_ed25519 to otherdb, where it has no grant, from 198.51.100.21 (1044); \
            u_ed25519 with a wrong password from 198.51.100.22 (AuthSwitchRequest, the client's ed25519 signature, then 1045: \
            the closest MariaDB has to a failed caching_sha2_password exchange, which no Debian package can serve)."
        }
        "mysql-queries.pcap" => {
            "One mariadb client session (u_native, appdb, 198.51.100.20) of COM_QUERY: the canary query, an \
            aggregate, `SELECT * FROM no_such_table` (1146), `SELEC id FROM items` (1064), `SELECT * FROM items ORDER BY id` \
            (5000 rows, text protocol), BEGIN/UPDATE/INSERT/DELETE/COMMIT, SQL-level PREPARE/EXECUTE (twice)/DEALLOCATE (these \
            are COM_QUERY too), `use otherdb` and `use appdb` (COM_INIT_DB; the client sends `SELECT DATABASE()` before each), a \
            multi-statement query, `CALL two_results()` (two result sets, then the final OK), `SELECT 'bye'`, COM_QUIT. Then \
            `mariadb-admin ping` from 198.51.100.21 (COM_PING). Then a pipelining client from 198.51.100.22 (python3, raw \
            socket, real mysql_native_password handshake as u_native into appdb) that writes several COM_QUERY in one send \
            before reading any answer: `SELECT id, name, price FROM items WHERE id <= 300 ORDER BY id` + `SELECT COUNT(*) AS n \
            FROM items`; then `SELECT 'first' AS a` + `SELECT no_such_column FROM items` (1054) + `UPDATE items SET price = \
            price + 1 WHERE id <= 3` (3 rows); COM_QUIT."
        }
        "mysql-prepared.pcap" => {
            "Binary protocol prepared statements from Perl DBD::MariaDB with mariadb_server_prepare=1 (u_native, \
            appdb, 198.51.100.22): after the driver's four SET statements, PREPARE `SELECT id, name, price, created_at FROM items \
            WHERE id BETWEEN ? AND ? ORDER BY id` executed three times with integer parameters (binary result rows; MariaDB \
            sends the column definitions with the PREPARE answer and not again with each EXECUTE), PREPARE `UPDATE items SET \
            price = price + ? WHERE id = ?` executed twice with string parameters, PREPARE `SELECT COUNT(*) FROM items WHERE \
            name = ?` executed with the canary literal as parameter, a PREPARE that fails with 1054, COM_STMT_CLOSE of the \
            three statements, COM_QUIT."
        }
        "mysql-tls.pcap" => {
            "mariadb client with --ssl as u_tls (REQUIRE SSL) from 198.51.100.21: server greeting, SSL request, \
            TLS 1.3, then everything encrypted (the session ran `SHOW SESSION STATUS LIKE 'Ssl_version'` and a COUNT(*))."
        }
        _ => "",
    }
}

pub fn readme() -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = write!(
        w,
        r#"# pcaps: real PostgreSQL and MariaDB sessions, as AWS VPC Traffic Mirroring delivers them

Generated by `cargo xtask pcaps` (`xtask/src/pcaps.rs`); do not edit by hand, re-run it (as root, on Debian 12 with
postgresql-15, mariadb-server, mariadb-client, libdbd-mariadb-perl, python3, tcpdump, openssl; tshark for the final check).
A re-run records new sessions: timestamps, ports, salts, nonces and random pgbench parameters change, but every fact
listed below holds, and the run checks each of them with tshark and fails if one does not.

## How they were recorded

- Two network namespaces joined by a veth pair (MTU 1500, `gso_max_segs 1`: no TSO/GSO super-packets, so frames are
  at most 1514 bytes as on a real wire). Server side `198.51.100.10` and `2001:db8:100::10` (MAC 02:42:c6:33:64:0a);
  client side `198.51.100.20`, `198.51.100.21`, `198.51.100.22` and `2001:db8:100::20` (MAC 02:42:c6:33:64:14). The
  client source address of each session is chosen with a host route's preferred source.
- PostgreSQL 15 on port 5432 and MariaDB 10.11 on port 3306 (Debian 12 packages), private data dirs, real
  authentication, TLS with a self-signed P-256 certificate (CN=db.rds-sensor.test).
- Real clients (psql, pgbench, mariadb, mariadb-admin, Perl DBD::MariaDB, a python3 raw-socket client that pipelines) in the client namespace while
  `tcpdump -i <client veth> 'tcp port 5432 or tcp port 3306'` runs there. Only those two ports are captured.
- Inner IPv4 header and TCP checksums are recomputed (a veth leaves checksum-offloaded TCP checksums unfilled; a NIC,
  and so a mirror session, carries correct ones).

## Encapsulation (every file except `pg-plain-query.pcap`)

Each captured frame, unchanged, is the payload of a {OUTER_LEN}-byte outer header, as VPC Traffic Mirroring sends it:

| layer | value |
| --- | --- |
| Ethernet | dst 06:1a:2b:3c:4d:05 (mirror target), src 06:1a:2b:3c:4d:01, type IPv4 |
| IPv4 | src = the ENI of the mirrored client: 198.51.100.N and its IPv6 twin -> 192.0.2.N (198.51.100.20 and 2001:db8:100::20 -> 192.0.2.20, .21 -> 192.0.2.21, .22 -> 192.0.2.22); dst = mirror target {MIRROR_TARGET}; TTL 64, DF clear, ID = frame index, header checksum set |
| UDP | dst port 4789; src port 49152 + FNV-1a(inner src IP, dst IP, protocol, src port, dst port) mod 16384, so it differs per flow and per direction; checksum 0 |
| VXLAN | flags 0x08 (I), VNI {VNI_PG} for `pg-*` files, {VNI_MYSQL} for `mysql-*` files |

Timestamps are those tcpdump recorded (microsecond pcap, linktype Ethernet). Both directions of every flow are
present (the mirror source is the client's ENI).

## Users, password, canary

Every user's password is `{PASSWORD}`.

| server | user | authentication | note |
| --- | --- | --- | --- |
| PostgreSQL | u_md5 | md5 (password stored as md5) | |
| PostgreSQL | u_scram | scram-sha-256 | owns appdb and benchdb |
| PostgreSQL | u_clear | password (cleartext on the wire) | the password is readable in pg-auth.pcap |
| PostgreSQL | u_tls | scram-sha-256, `hostssl` only | |
| MariaDB | u_native | mysql_native_password | privileges on `*.*`, so an unknown database gives 1049 |
| MariaDB | u_ed25519 | ed25519 (auth_ed25519 plugin) | grants on appdb only |
| MariaDB | u_tls | mysql_native_password, REQUIRE SSL | |

Databases: PostgreSQL `appdb` (table `items`: id, name `item-<id>`, price, created_at; 5000 rows) and `benchdb`
(`pgbench -i -s 1`); MariaDB `appdb` (same `items`, procedure `two_results()`) and `otherdb` (table `notes`).

The canary literal `{CANARY}` is sent in a query in pg-queries.pcap, pg-plain-query.pcap and mysql-queries.pcap,
and as a binary statement parameter in mysql-prepared.pcap. The sensor must never print it, nor the password
(which is on the wire in clear in pg-auth.pcap).

## Files and facts

Every command runs from the repository root. tshark decodes VXLAN on UDP 4789, `pgsql` on 5432 and `mysql` on 3306
by default. With `-T fields`, several messages in one frame give comma-separated values, hence `tr ',' '\n'`.
"#
    );
    for f in OUTPUTS {
        let _ = write!(w, "\n### {}\n\n{}\n\n", f.name, describe(f.name));
        for (says, opts, filter, check) in common_facts(f.form, f.proto) {
            let (cmd, want) = command(f.name, &opts, &filter, "frame.number", &check);
            let _ = write!(w, "- {says}\n  `{cmd}` -> `{want}`\n");
        }
        for fact in FACTS.iter().filter(|x| x.file == f.name) {
            let (cmd, want) = command(fact.file, &[], fact.filter, fact.field, &fact.check);
            let _ = write!(w, "- {}\n  `{cmd}` -> `{want}`\n", fact.says);
        }
    }
    s
}
