//! `pcaps/README.md` and the tshark check of every fact it states.
//!
//! Each fact is a tshark display filter plus what its output must be; the README prints the
//! exact shell command, and `verify` runs the same query after recording, so the README cannot
//! drift from the files.

use super::tds::{TDS_PASSWORD, TDS_WRONG_PASSWORD};
use super::{CANARY, MIRROR_TARGET, OUTPUTS, PASSWORD, TRUNCATE_TO, VNI_MYSQL, VNI_PG, VNI_TDS};
use super::{Form, OutFile};
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
    /// tshark reads the file with its TLS key log (`-o tls.keylog_file:<the file's .keys>`).
    pub keylog: bool,
}

const CHECKSUM_OPTS: &[&str] = &[
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "ip.check_checksum:TRUE",
];
const BAD_CHECKSUM: &str = "tcp.checksum.status == 0 || ip.checksum.status == 0";

macro_rules! fact {
    (keylog $file:literal, $says:literal, $filter:literal, $field:literal, $check:expr) => {
        Fact {
            keylog: true,
            ..fact!($file, $says, $filter, $field, $check)
        }
    };
    (keylog $file:literal, $says:literal, $filter:literal, $check:expr) => {
        Fact {
            keylog: true,
            ..fact!($file, $says, $filter, $check)
        }
    };
    ($file:literal, $says:literal, $filter:literal, $field:literal, $check:expr) => {
        Fact {
            file: $file,
            says: $says,
            filter: $filter,
            field: $field,
            check: $check,
            keylog: false,
        }
    };
    ($file:literal, $says:literal, $filter:literal, $check:expr) => {
        Fact {
            file: $file,
            says: $says,
            filter: $filter,
            field: "frame.number",
            check: $check,
            keylog: false,
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
    // ---- pg-tls-keys (sessions are tcp.stream 0..7, one TCP connection each, in order)
    fact!(
        "pg-tls-keys.pcap",
        "Eight sessions, each opening with an SSLRequest ...",
        "pgsql",
        "pgsql.type",
        Values(&[
            "SSL request",
            "SSL request",
            "SSL request",
            "SSL request",
            "SSL request",
            "SSL request",
            "SSL request",
            "SSL request"
        ])
    ),
    fact!(
        "pg-tls-keys.pcap",
        "... and, without the key log, nothing readable after it: no StartupMessage, no Query, no ErrorResponse.",
        "pgsql.type == \"Startup message\" || pgsql.query || pgsql.code",
        Frames(0)
    ),
    fact!(
        "pg-tls-keys.pcap",
        "Every TLS 1.3 session (0, 1, 2, 6, 7) starts with a HelloRetryRequest (a ServerHello with the special random) asking for secp256r1 (group 23): the server's `ssl_ecdh_curve` is prime256v1, the client's first key share X25519.",
        "tls.handshake.type == 2 && tls.handshake.random == cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c",
        "tls.handshake.extensions_key_share_selected_group",
        Values(&["23", "23", "23", "23", "23"])
    ),
    fact!(
        "pg-tls-keys.pcap",
        "Cipher suite of each real ServerHello (HelloRetryRequests left out), in session order: 0x1302 TLS_AES_256_GCM_SHA384, 0x1303 TLS_CHACHA20_POLY1305_SHA256, 0x1301 TLS_AES_128_GCM_SHA256, 0xc02b ECDHE-ECDSA-AES128-GCM-SHA256, 0xc02c ECDHE-ECDSA-AES256-GCM-SHA384, 0xcca9 ECDHE-ECDSA-CHACHA20-POLY1305, then 0x1302 twice.",
        "tls.handshake.type == 2 && !(tls.handshake.random == cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c)",
        "tls.handshake.ciphersuite",
        Values(&[
            "0x1302", "0x1303", "0x1301", "0xc02b", "0xc02c", "0xcca9", "0x1302", "0x1302"
        ])
    ),
    fact!(
        "pg-tls-keys.pcap",
        "Five TLS 1.3 ServerHellos (supported_versions 0x0304) ...",
        "tls.handshake.type == 2 && tls.handshake.extensions.supported_version == 0x0304 && !(tls.handshake.random == cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c)",
        "tcp.stream",
        Values(&["0", "1", "2", "6", "7"])
    ),
    fact!(
        "pg-tls-keys.pcap",
        "... and three TLS 1.2 ones (no supported_versions extension; their random ends with the TLS 1.3 downgrade sentinel `DOWNGRD\\x01`).",
        "tls.handshake.type == 2 && !tls.handshake.extensions.supported_version && tls.handshake.random[24:8] == 44:4f:57:4e:47:52:44:01",
        "tcp.stream",
        Values(&["3", "4", "5"])
    ),
    fact!(
        "pg-tls-keys.pcap",
        "One TLS record is longer than a TCP segment: the answer to the 200-row query (session 0), so records must be reassembled across segments.",
        "tls.record.length > 1448",
        "tcp.stream",
        Values(&["0"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "With the key log: the StartupMessages of every session but 6 (whose keys are not in the file) ...",
        "pgsql.type == \"Startup message\"",
        "tcp.stream",
        Values(&["0", "1", "2", "3", "4", "5", "7"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... their SCRAM exchanges (10 SASL, 11 SASL continue, 12 SASL final, 0 ok; session 7 stops after 11) ...",
        "pgsql.authtype",
        "pgsql.authtype",
        Values(&[
            "10", "11", "12", "0", "10", "11", "12", "0", "10", "11", "12", "0", "10", "11", "12",
            "0", "10", "11", "12", "0", "10", "11", "12", "0", "10", "11"
        ])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... 20 simple Queries, by session: 5 in session 0, 3 in each of sessions 1 to 5, none in 6 ...",
        "pgsql.query",
        "tcp.stream",
        Values(&[
            "0", "0", "0", "0", "0", "1", "1", "1", "2", "2", "2", "3", "3", "3", "4", "4", "4",
            "5", "5", "5"
        ])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... each session's first being the TLS check on pg_stat_ssl ...",
        "pgsql.query == \"SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()\"",
        "tcp.stream",
        Values(&["0", "1", "2", "3", "4", "5"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... one holding the canary literal (session 0) ...",
        "pgsql.query contains \"canary-literal-4242\"",
        "tcp.stream",
        Values(&["0"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... two ErrorResponses: 22012 (`SELECT 1/0`, session 0) and 28P01 (wrong password, session 7) ...",
        "pgsql.code",
        "pgsql.code",
        Values(&["22012", "28P01"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "... and 240 DataRows: 205 in session 0 (1 + 3 + 1 + 200) and 7 (1 + 1 + 5) in each of sessions 1 to 5.",
        "pgsql",
        "pgsql.type",
        Count("Data row", 240)
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "Session 6 stays opaque even with the key log: TLS application data, but no PostgreSQL message after its SSLRequest.",
        "tcp.stream == 6 && pgsql",
        "pgsql.type",
        Values(&["SSL request"])
    ),
    fact!(
        keylog "pg-tls-keys.pcap",
        "(its application data)",
        "tcp.stream == 6 && tls.app_data",
        SomeFrames
    ),
    // ---- pg-iam (sessions are tcp.stream 0..4, one TCP connection each, in order)
    fact!(
        "pg-iam.pcap",
        "Five sessions, every one TLS after its SSLRequest: without the key log no password and no query is readable.",
        "pgsql.password || pgsql.query",
        Frames(0)
    ),
    fact!(
        keylog "pg-iam.pcap",
        "With the key log: each session's server asks for a cleartext password (3); sessions 0, 1 and 4 get in (0) ...",
        "pgsql.authtype",
        "pgsql.authtype",
        Values(&["3", "0", "3", "0", "3", "3", "3", "0"])
    ),
    fact!(
        keylog "pg-iam.pcap",
        "... the passwords of sessions 0 to 3 are IAM tokens: botocore's presigned `rds-db:connect` URLs ...",
        "pgsql.password contains \"/?Action=connect&DBUser=u_iam&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F\" && pgsql.password contains \"%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=\" && pgsql.password contains \"&X-Amz-Expires=900&\"",
        "tcp.stream",
        Values(&["0", "1", "2", "3"])
    ),
    fact!(
        keylog "pg-iam.pcap",
        "... session 1's of temporary credentials (with a security token) ...",
        "pgsql.password contains \"&X-Amz-Security-Token=\"",
        "tcp.stream",
        Values(&["1"])
    ),
    fact!(
        keylog "pg-iam.pcap",
        "... session 4's the static password ...",
        "pgsql.password == \"Sup3r-Secret-Pw!\"",
        "tcp.stream",
        Values(&["4"])
    ),
    fact!(
        keylog "pg-iam.pcap",
        "... sessions 2 and 3 are refused with 28P01 (session 3's token was signed 1200 s before its use; see its X-Amz-Date) ...",
        "pgsql.code",
        "pgsql.code",
        Values(&["28P01", "28P01"])
    ),
    fact!(
        keylog "pg-iam.pcap",
        "... and the sessions that got in run the TLS check and `SELECT count(*) FROM items`.",
        "pgsql.query",
        "tcp.stream",
        Values(&["0", "0", "1", "1", "4", "4"])
    ),
    // ---- mysql-iam (sessions are tcp.stream 0..2)
    fact!(
        "mysql-iam.pcap",
        "Three sessions, TLS after the SSL request: without the key log no login is readable.",
        "mysql.user == \"u_iam\" || mysql.auth_switch_request.name",
        Frames(0)
    ),
    fact!(
        keylog "mysql-iam.pcap",
        "With the key log: three logins as u_iam, each switched by the server to `mysql_clear_password` ...",
        "mysql.auth_switch_request.name",
        "mysql.auth_switch_request.name",
        Values(&["mysql_clear_password", "mysql_clear_password", "mysql_clear_password"])
    ),
    fact!(
        keylog "mysql-iam.pcap",
        "... the clear passwords of sessions 0 and 1 are IAM tokens ...",
        "mysql.auth_switch_response.data contains \"/?Action=connect&DBUser=u_iam&X-Amz-Algorithm=AWS4-HMAC-SHA256&\"",
        "tcp.stream",
        Values(&["0", "1"])
    ),
    fact!(
        keylog "mysql-iam.pcap",
        "... session 2's the static password ...",
        "mysql.auth_switch_response.data contains \"Sup3r-Secret-Pw!\"",
        "tcp.stream",
        Values(&["2"])
    ),
    fact!(
        keylog "mysql-iam.pcap",
        "... and PAM refuses all three: 1045.",
        "mysql.error_code",
        "mysql.error_code",
        Values(&["1045", "1045", "1045"])
    ),
    // ---- mysql-tls-keys (sessions are tcp.stream 0 and 1)
    fact!(
        "mysql-tls-keys.pcap",
        "Two sessions: a server greeting and an SSL request in clear, then TLS; without the key log no login (the user name is inside TLS) and no query is readable.",
        "mysql.user == \"u_tls\" || mysql.query",
        Frames(0)
    ),
    fact!(
        "mysql-tls-keys.pcap",
        "ServerHellos: TLS 1.3 with 0x1302 TLS_AES_256_GCM_SHA384 (session 0), TLS 1.2 with 0xc02b ECDHE-ECDSA-AES128-GCM-SHA256 (session 1) ...",
        "tls.handshake.type == 2",
        "tls.handshake.ciphersuite",
        Values(&["0x1302", "0xc02b"])
    ),
    fact!(
        "mysql-tls-keys.pcap",
        "... the first one TLS 1.3 (supported_versions 0x0304) ...",
        "tls.handshake.type == 2 && tls.handshake.extensions.supported_version == 0x0304",
        "tcp.stream",
        Values(&["0"])
    ),
    fact!(
        "mysql-tls-keys.pcap",
        "... and no HelloRetryRequest (MariaDB accepts the client's X25519 key share).",
        "tls.handshake.random == cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c",
        Frames(0)
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "With the key log: both logins as u_tls ...",
        "mysql.user",
        "mysql.user",
        Values(&["u_tls", "u_tls"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... the commands of each session: 6 COM_QUERY, COM_QUIT ...",
        "mysql.command",
        "mysql.command",
        Values(&["3", "3", "3", "3", "3", "3", "1", "3", "3", "3", "3", "3", "3", "1"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... 12 queries readable, 6 per session ...",
        "mysql.query",
        "tcp.stream",
        Values(&["0", "0", "0", "0", "0", "0", "1", "1", "1", "1", "1", "1"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... the two TLS checks of each session ...",
        "mysql.query contains \"SHOW SESSION STATUS LIKE\"",
        "tcp.stream",
        Values(&["0", "0", "1", "1"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... the canary literal in one query per session ...",
        "mysql.query contains \"canary-literal-4242\"",
        "tcp.stream",
        Values(&["0", "1"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... `SELECT * FROM no_such_table` failing with 1146 in each ...",
        "mysql.error_code",
        "mysql.error_code",
        Values(&["1146", "1146"])
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... and every row value: 611 per session (4 + 6 + 1 + 200 x 3) ...",
        "mysql.row.text",
        "mysql.row.text",
        Total(1222)
    ),
    fact!(
        keylog "mysql-tls-keys.pcap",
        "... the last of the 200 rows included.",
        "mysql.row.text",
        "mysql.row.text",
        Count("item-200", 2)
    ),
    // ---- tds-clients (sessions are tcp.stream 0..2, in order; the server side is the xtask listener)
    fact!(
        "tds-clients.pcap",
        "Three sessions; each PRELOGIN offers ENCRYPT_NOT_SUP (2) and the listener's answer says the same.",
        "tds.prelogin.option.encryption",
        "tds.prelogin.option.encryption",
        Values(&["2", "2", "2", "2", "2", "2"])
    ),
    fact!(
        "tds-clients.pcap",
        "Three LOGIN7s, readable: user names ...",
        "tds.type == 16",
        "tds.7login.username",
        Values(&["u_freetds", "u_pytds", "u_pytds"])
    ),
    fact!(
        "tds-clients.pcap",
        "... and client library names (FreeTDS's tsql says TSQL).",
        "tds.type == 16",
        "tds.7login.appname",
        Values(&["TSQL", "pytds", "pytds"])
    ),
    fact!(
        "tds-clients.pcap",
        "Client messages in order (18 PRELOGIN, 16 LOGIN7, 1 SQL batch, 14 transaction manager request, 3 RPC, 6 attention): tsql's two batches; pytds's begin transaction, sp_executesql, attention, sp_prepare, sp_execute, attention, commit; the failed login.",
        "tds.type != 4",
        "tds.type",
        Values(&[
            "18", "16", "1", "1", "18", "16", "14", "3", "6", "3", "3", "6", "14", "18", "16"
        ])
    ),
    fact!(
        "tds-clients.pcap",
        "Two SQL batches, both from tsql (session 0) ...",
        "tds.type == 1",
        "tcp.stream",
        Values(&["0", "0"])
    ),
    fact!(
        "tds-clients.pcap",
        "... the SELECT holding the canary literal ...",
        "tds.query contains \"canary-literal-4242\"",
        Frames(1)
    ),
    fact!(
        "tds-clients.pcap",
        "... and the UPDATE.",
        "tds.query contains \"UPDATE items SET price = price + 1 WHERE id = 1\"",
        Frames(1)
    ),
    fact!(
        "tds-clients.pcap",
        "The RPCs call procedures by id (ProcIDSwitch 0xffff): sp_executesql (10) ...",
        "tds.type == 3 && tcp.payload contains ff:ff:0a:00",
        "tcp.stream",
        Values(&["1"])
    ),
    fact!(
        "tds-clients.pcap",
        "... sp_prepare (11) ...",
        "tds.type == 3 && tcp.payload contains ff:ff:0b:00",
        "tcp.stream",
        Values(&["1"])
    ),
    fact!(
        "tds-clients.pcap",
        "... and sp_execute (12).",
        "tds.type == 3 && tcp.payload contains ff:ff:0c:00",
        "tcp.stream",
        Values(&["1"])
    ),
    fact!(
        "tds-clients.pcap",
        "The canary literal is also an NVARCHAR parameter (UTF-16LE) of the sp_executesql RPC.",
        "tds.type == 3 && tcp.payload contains 63:00:61:00:6e:00:61:00:72:00:79:00:2d:00:6c:00:69:00:74:00:65:00:72:00:61:00:6c:00:2d:00:34:00:32:00:34:00:32:00",
        Frames(1)
    ),
    fact!(
        "tds-clients.pcap",
        "One ERROR token (0xaa, 90 bytes: Login failed for user 'u_pytds'.), number 18456, state 1, class 14: the listener's answer to the wrong password, session 2.",
        "tds.type == 4 && tcp.payload contains aa:5a:00:18:48:00:00:01:0e",
        "tcp.stream",
        Values(&["2"])
    ),
    fact!(
        "tds-clients.pcap",
        "15 answers (type 4) from the listener: one per client message, attentions included.",
        "tds",
        "tds.type",
        Count("4", 15)
    ),
    // ---- tds-tls-login (sessions are tcp.stream 0..2, in order; the server side is the xtask listener)
    fact!(
        "tds-tls-login.pcap",
        "PRELOGIN encryption, request and answer per session: 0 (ENCRYPT_OFF, login-only) in sessions 0 (tsql) and 1 (pytds), 1 (ENCRYPT_ON) in session 2 (tsql).",
        "tds.prelogin.option.encryption",
        "tds.prelogin.option.encryption",
        Values(&["0", "0", "0", "0", "1", "1"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "Each session's TLS ClientHello travels inside a TDS PRELOGIN packet (type 18) ...",
        "tds.type == 18 && tls.handshake.type == 1",
        "tcp.stream",
        Values(&["0", "1", "2"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "... so do the server's handshake records (ServerHello ... ServerHelloDone, then ChangeCipherSpec + Finished): two PRELOGIN packets from the listener per session, after its PRELOGIN answer (type 4).",
        "tds.type == 18 && ip.src == 198.51.100.10",
        "tcp.stream",
        Values(&["0", "0", "1", "1", "2", "2"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "The LOGIN7s are TLS application data, not readable: no user name in the clear.",
        "tds.type == 16 || tds.7login.username",
        Frames(0)
    ),
    fact!(
        "tds-tls-login.pcap",
        "After the login-only TLS, the SQL batches of session 0 are in the clear ...",
        "tds.type == 1",
        "tcp.stream",
        Values(&["0", "0"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "... the canary SELECT among them (session 2 runs the same batches, encrypted) ...",
        "tds.query contains \"canary-literal-4242\"",
        "tcp.stream",
        Values(&["0"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "... and so are pytds's requests in session 1: begin transaction, sp_executesql, attention, sp_prepare, sp_execute, attention, commit.",
        "tcp.stream == 1 && tds.type != 4 && tds.type != 18",
        "tds.type",
        Values(&["14", "3", "6", "3", "3", "6", "14"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "The listener's LOGINACK (program name `Microsoft SQL Server`, UTF-16LE) is in the clear in the two login-only sessions.",
        "tds.type == 4 && tcp.payload contains 4d:00:69:00:63:00:72:00:6f:00:73:00:6f:00:66:00:74:00:20:00:53:00:51:00:4c:00",
        "tcp.stream",
        Values(&["0", "1"])
    ),
    fact!(
        "tds-tls-login.pcap",
        "Session 2 (full encryption): after the handshake only TLS application data records, no TDS header in the clear.",
        "tcp.stream == 2 && tls.record.content_type == 23",
        SomeFrames
    ),
];

/// Facts every file of a form shares: encapsulation and correct inner checksums.
fn common_facts(form: Form, vni: u32) -> Vec<(String, Vec<&'static str>, String, Check)> {
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

/// The tshark options of a fact about `f`: its TLS key log, read from directory `dir`, if the
/// fact needs it.
fn keylog_opts(f: &OutFile, fact: &Fact, dir: &str) -> Vec<String> {
    match (fact.keylog, f.keys) {
        (false, _) => vec![],
        (true, Some(keys)) => vec!["-o".into(), format!("tls.keylog_file:{dir}/{keys}")],
        (true, None) => panic!("a fact about {} needs a key log it has none", f.name),
    }
}

/// Checks every fact about the files in `names` (those just written in `dir`).
pub fn verify(dir: &Path, names: &[&str]) -> Result<()> {
    let mut failed = Vec::new();
    let mut n = 0;
    for f in OUTPUTS.iter().filter(|f| names.contains(&f.name)) {
        for (says, opts, filter, check) in common_facts(f.form, f.vni) {
            n += 1;
            if let Some(got) = check_one(dir, f.name, &opts, &filter, "frame.number", &check)? {
                failed.push(format!("{}: {says} (`{filter}`): got {got}", f.name));
            }
        }
        for fact in FACTS.iter().filter(|x| x.file == f.name) {
            n += 1;
            let opts = keylog_opts(f, fact, &dir.display().to_string());
            let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
            if let Some(got) =
                check_one(dir, fact.file, &opts, fact.filter, fact.field, &fact.check)?
            {
                let opts = keylog_opts(f, fact, "pcaps");
                let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                let (cmd, want) = command(fact.file, &opts, fact.filter, fact.field, &fact.check);
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
        "pg-tls-keys.pcap" => {
            "PostgreSQL over TLS from pg8000 1.31 (a pure-Python driver) on python3, one process and one TCP connection \
            per session (tcp.stream 0 to 7, in order). Each builds an `ssl.SSLContext` (no certificate check) whose \
            `keylog_filename` is pg-tls-keys.keys, sends an SSLRequest, and logs in as u_tls (scram-sha-256, `hostssl` only) \
            to appdb; a session that gets in first runs `SELECT version, cipher FROM pg_stat_ssl WHERE pid = \
            pg_backend_pid()` and checks that the server reports the wanted TLS version and cipher, then its queries (simple \
            Query messages), then Terminate. Session 0 from 198.51.100.20, TLS 1.3 TLS_AES_256_GCM_SHA384 (both sides' \
            default): `SELECT id, name FROM items WHERE name <> 'canary-literal-4242' ORDER BY id LIMIT 3`, `SELECT count(*) \
            FROM items`, `SELECT 1/0` (22012), `SELECT id, name, price FROM items ORDER BY id LIMIT 200` (one TLS record over \
            several segments). Sessions 1 to 5 each run `SELECT count(*) FROM items` and `SELECT id, name FROM items WHERE id \
            <= 5 ORDER BY id`: 1 from 198.51.100.21, TLS 1.3 TLS_CHACHA20_POLY1305_SHA256; 2 from 198.51.100.22, TLS 1.3 \
            TLS_AES_128_GCM_SHA256 (for both, an `OPENSSL_CONF` limits the client's TLS 1.3 suites: Python's `ssl` cannot); \
            3 from 198.51.100.20, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256; 4 from 198.51.100.21, TLS 1.2 \
            ECDHE-ECDSA-AES256-GCM-SHA384; 5 from 198.51.100.22, TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305 (the TLS 1.2 ones \
            set `maximum_version` and `set_ciphers`). Session 6 from 198.51.100.20, TLS 1.3 TLS_AES_256_GCM_SHA384, runs \
            `SELECT count(*) FROM items`, but its client wrote its secrets to another key log, which is not committed: it \
            cannot be decrypted. Session 7 from 198.51.100.21, TLS 1.3 TLS_AES_256_GCM_SHA384, logs in with a wrong \
            password: 28P01 after the client's SCRAM proof. Every TLS 1.3 handshake begins with a HelloRetryRequest \
            (PostgreSQL's `ssl_ecdh_curve` is prime256v1; OpenSSL's client sends an X25519 key share first)."
        }
        "mysql-tls-keys.pcap" => {
            "MariaDB over TLS from PyMySQL 1.0.2 (Debian python3-pymysql) on python3, one process and one TCP \
            connection per session (tcp.stream 0 and 1). Each passes `ssl=` an `ssl.SSLContext` (no certificate check) whose \
            `keylog_filename` is mysql-tls-keys.keys, and `autocommit=True` (the server's default, so the driver sends no \
            SET AUTOCOMMIT); user u_tls (REQUIRE SSL) into appdb. Session 0 from 198.51.100.20, TLS 1.3 TLS_AES_256_GCM_SHA384; \
            session 1 from 198.51.100.21, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256. Each: server greeting and SSL request in \
            clear, TLS, login, `SHOW SESSION STATUS LIKE 'Ssl_version'` and `SHOW SESSION STATUS LIKE 'Ssl_cipher'` (checked \
            against the wanted version and cipher), `SELECT id, name FROM items WHERE name <> 'canary-literal-4242' ORDER BY id \
            LIMIT 3`, `SELECT COUNT(*) FROM items`, `SELECT * FROM no_such_table` (1146), `SELECT id, name, price FROM items \
            ORDER BY id LIMIT 200`, COM_QUIT. The keys of both sessions are in the key log."
        }
        "tds-clients.pcap" => {
            "SQL Server TDS 7.4, everything in the clear. The CLIENT bytes are real: FreeTDS 1.3.17 `tsql` (Debian \
            freetds-bin) and pytds 1.17.1 (PyPI python-tds) on python3. The SERVER side is not SQL Server: it is the xtask \
            listener (`xtask/src/pcaps/tds.rs`, python3) built from MS-TDS, which answers PRELOGIN with VERSION 16.0.4000 and \
            ENCRYPTION 0x02 (ENCRYPT_NOT_SUP); LOGIN7 with ENVCHANGE database, INFO 5701, ENVCHANGE collation and packet size, \
            LOGINACK (`Microsoft SQL Server` 16.0.4000), DONE for the password `Pa55-canary-tds`, or ERROR 18456 state 1 class 14 \
            `Login failed for user '<u>'.` + DONE (DONE_ERROR) otherwise; a SELECT batch with COLMETADATA (one INT column \
            `value`), three ROWs and DONE (DONE_COUNT, 3), any other batch with DONE (DONE_COUNT, 1); an RPC with, for \
            sp_prepare/sp_prepexec, RETURNVALUE (INT handle 1), for sp_execute and any RPC whose text holds SELECT the same \
            three-row result closed by DONEINPROC (DONE_MORE|DONE_COUNT), then RETURNSTATUS 0 and DONEPROC; a transaction \
            manager request with ENVCHANGE begin/commit/rollback + DONE; an attention with DONE (DONE_ATTN). Its answers are \
            canned, not computed. Session 0 from 198.51.100.20: tsql (`encryption = off`, which sends ENCRYPT_NOT_SUP; \
            `tds version = 7.4`) as u_freetds into appdb, running `SELECT id, name FROM items WHERE name <> \
            'canary-literal-4242'` and `UPDATE items SET price = price + 1 WHERE id = 1`, one batch each. Session 1 from \
            198.51.100.21: pytds (no cafile, so ENCRYPT_NOT_SUP; autocommit off) as u_pytds into appdb: TM_BEGIN_XACT, \
            `cursor.execute('SELECT id FROM items WHERE name <> %s AND id < %s', (canary, 10))` (sp_executesql RPC with \
            NVARCHAR and INT parameters), `callproc(SP_PREPARE, (output int, '@p1 int', 'SELECT id FROM items WHERE id = \
            @p1', 1))`, `callproc(SP_EXECUTE, (handle, 7))`, commit (TM_COMMIT_XACT); before the sp_prepare and the commit \
            pytds cancels the result it left unread (DONEINPROC with DONE_MORE) with an ATTENTION. Session 2 from \
            198.51.100.22: pytds as u_pytds with the wrong password `Wr0ng-canary-tds`: 18456. tshark 4.0 dissects the client \
            messages (PRELOGIN, LOGIN7, SQL batch) but not the token streams of the answers, nor RPC fields; facts about \
            those use the bytes (`tcp.payload contains`)."
        }
        "pg-iam.pcap" => {
            "AWS IAM database authentication on PostgreSQL, inside TLS 1.3 (pg8000, key log pg-iam.keys): u_iam sends \
            as its cleartext password (pg_hba `hostssl ... password`, AuthenticationCleartextPassword, type 3) a token made by \
            botocore's `generate_db_auth_token` for orders-pg-1.c9akciq32.us-east-1.rds.amazonaws.com:5432, signed with the \
            AWS documentation's example key AKIAIOSFODNN7EXAMPLE in us-east-1. Session 0 from 198.51.100.20: a fresh token, \
            accepted (it was set as u_iam's password beforehand, over the Unix socket: PostgreSQL cannot check a token; \
            RDS does), then the TLS check and `SELECT count(*) FROM items`. Session 1 from 198.51.100.20: the same with a token \
            of temporary credentials (with X-Amz-Security-Token). Session 2 from 198.51.100.21: a fresh token the server does \
            not hold: 28P01. Session 3 from 198.51.100.21: a token signed 1200 s earlier (expired after 900 s): 28P01. Then, \
            3 s later, session 4 from 198.51.100.22: u_iam with the static password, accepted, and the same two queries. \
            Recorded by `cargo xtask pcaps --only iam` (needs python3-botocore besides the TLS captures' pg8000)."
        }
        "mysql-iam.pcap" => {
            "AWS IAM database authentication on MariaDB, inside TLS 1.3 (PyMySQL, key log mysql-iam.keys): u_iam is \
            `IDENTIFIED VIA pam` with `pam_use_cleartext_plugin=ON`, so after the HandshakeResponse the server sends an \
            AuthSwitchRequest for `mysql_clear_password`, as RDS's AWSAuthenticationPlugin does, and the client sends the \
            password in clear (inside TLS). The PAM service denies everything: each login ends in 1045. Session 0 from \
            198.51.100.20: a fresh botocore token (for billing-mariadb-1.c9akciq32.us-east-1.rds.amazonaws.com:3306). \
            Session 1 from 198.51.100.21: a token signed 1200 s earlier (expired). Session 2 from 198.51.100.22: the static \
            password."
        }
        "tds-tls-login.pcap" => {
            "SQL Server TDS 7.4 with TLS inside the PRELOGIN exchange (MS-TDS 3.3.5.3). The CLIENT bytes are real \
            (FreeTDS 1.3.17 `tsql`, GnuTLS; pytds 1.17.1 with pyOpenSSL); the SERVER side is the xtask listener (see \
            tds-clients.pcap) set to ENCRYPT_OFF: it answers a client's ENCRYPT_OFF with ENCRYPT_OFF (login-only encryption) \
            and ENCRYPT_ON with ENCRYPT_ON, then runs a real TLS server handshake (python3 `ssl`, `MemoryBIO`, TLS 1.2 at \
            most as SQL Server with TDS 7.x; self-signed P-256 certificate CN=db.rds-sensor.test) whose records travel in TDS \
            PRELOGIN packets (type 18) both ways. The client's LOGIN7 then comes as a bare TLS application-data record; with \
            login-only encryption everything after it is plaintext TDS again (the LOGINACK too), with full encryption every \
            packet after the handshake is a bare TLS record. Session 0 from 198.51.100.20: tsql with `encryption = request` \
            (ENCRYPT_OFF), u_freetds, the same two batches as in tds-clients.pcap. Session 1 from 198.51.100.21: pytds with a \
            cafile and `enc_login_only=True` (ENCRYPT_OFF), u_pytds, the same requests as in tds-clients.pcap. Session 2 from \
            198.51.100.22: tsql with `encryption = require` (ENCRYPT_ON), u_freetds, the same two batches, all encrypted. All \
            three negotiate TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384. tds-tls-login.keys holds the listener's NSS key log \
            (`SSLContext.keylog_filename`): one CLIENT_RANDOM line per session, matching the three ClientHellos. tshark 4.0.17 \
            hands the client's PRELOGIN-wrapped handshake records to its TLS dissector but not the server's, so it never \
            sees the ServerHello and cannot decrypt the LOGIN7s even with the key log: no fact here uses the key log."
        }
        _ => "",
    }
}

/// The heading of the README's last part, written by hand (captures made outside this recorder,
/// for regression tests): `readme` keeps it, from that line to the end, as it finds it.
const HAND_WRITTEN: &str = "## regressions/\n";

/// The README; `previous` is the one it replaces, whose hand-written part (see [`HAND_WRITTEN`])
/// is kept at the end.
pub fn readme(previous: Option<&str>) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = write!(
        w,
        r#"# pcaps: real PostgreSQL and MariaDB sessions, as AWS VPC Traffic Mirroring delivers them

Generated by `cargo xtask pcaps` (`xtask/src/pcaps.rs`); do not edit by hand, re-run it (as root, on Debian 12 with
postgresql-15, mariadb-server, mariadb-client, libdbd-mariadb-perl, python3, tcpdump, openssl, and for the TDS captures
freetds-bin, python3-openssl and python-tds; tshark for the final check).
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
  `tcpdump -i <client veth> 'tcp port 5432 or tcp port 3306 or tcp port 1433'` runs there. Only those ports are captured
  (1433: the SQL Server captures, see below).
- Inner IPv4 header and TCP checksums are recomputed (a veth leaves checksum-offloaded TCP checksums unfilled; a NIC,
  and so a mirror session, carries correct ones).

## Encapsulation (every file except `pg-plain-query.pcap`)

Each captured frame, unchanged, is the payload of a {OUTER_LEN}-byte outer header, as VPC Traffic Mirroring sends it:

| layer | value |
| --- | --- |
| Ethernet | dst 06:1a:2b:3c:4d:05 (mirror target), src 06:1a:2b:3c:4d:01, type IPv4 |
| IPv4 | src = the ENI of the mirrored client: 198.51.100.N and its IPv6 twin -> 192.0.2.N (198.51.100.20 and 2001:db8:100::20 -> 192.0.2.20, .21 -> 192.0.2.21, .22 -> 192.0.2.22); dst = mirror target {MIRROR_TARGET}; TTL 64, DF clear, ID = frame index, header checksum set |
| UDP | dst port 4789; src port 49152 + FNV-1a(inner src IP, dst IP, protocol, src port, dst port) mod 16384, so it differs per flow and per direction; checksum 0 |
| VXLAN | flags 0x08 (I), VNI {VNI_PG} for `pg-*` files, {VNI_MYSQL} for `mysql-*` files, {VNI_TDS} for `tds-*` files |

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
| PostgreSQL | u_iam | password (cleartext), `hostssl` only | logs in with IAM tokens in pg-iam.pcap (see there) |
| MariaDB | u_native | mysql_native_password | privileges on `*.*`, so an unknown database gives 1049 |
| MariaDB | u_ed25519 | ed25519 (auth_ed25519 plugin) | grants on appdb only |
| MariaDB | u_tls | mysql_native_password, REQUIRE SSL | |
| MariaDB | u_iam | PAM (`pam_use_cleartext_plugin`), REQUIRE SSL | only in mysql-iam.pcap; PAM denies every password |

Databases: PostgreSQL `appdb` (table `items`: id, name `item-<id>`, price, created_at; 5000 rows) and `benchdb`
(`pgbench -i -s 1`); MariaDB `appdb` (same `items`, procedure `two_results()`) and `otherdb` (table `notes`).

The canary literal `{CANARY}` is sent in a query in pg-queries.pcap, pg-plain-query.pcap and mysql-queries.pcap,
and as a binary statement parameter in mysql-prepared.pcap. The sensor must never print it, nor the password
(which is on the wire in clear in pg-auth.pcap).

## TLS key logs (`*.keys`)

`pg-tls-keys.pcap` and `mysql-tls-keys.pcap` come with `pg-tls-keys.keys` and `mysql-tls-keys.keys`: the TLS
secrets of their sessions in the NSS key log format (SSLKEYLOGFILE), as Python's `ssl` writes them
(`SSLContext.keylog_filename`): a `CLIENT_RANDOM` line per TLS 1.2 session;
`CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`, `CLIENT_TRAFFIC_SECRET_0`,
`SERVER_TRAFFIC_SECRET_0` and `EXPORTER_SECRET` lines per TLS 1.3 session. They are test-only secrets: the
ephemeral keys of sessions with a throwaway lab server and its self-signed certificate; they decrypt nothing else.
tshark reads one with `-o tls.keylog_file:pcaps/<name>.keys`.

The keys of session 6 of pg-tls-keys.pcap (tcp.stream 6: TLS 1.3 from 198.51.100.20, the 7th connection) are
deliberately absent: its client wrote them to another file, which is not committed. Given the key log, a sensor
decrypts every other session and must count that one as TLS it cannot decrypt for want of keys. The MySQL key log
holds the keys of both its sessions.

`pg-iam.pcap` and `mysql-iam.pcap` come with `pg-iam.keys` and `mysql-iam.keys`, written the same way; their
IAM authentication tokens are signed with the AWS documentation's example key (AKIAIOSFODNN7EXAMPLE), so they
are no account's credentials, but the sensor must never print them either.

These two captures are recorded by `cargo xtask pcaps --only tls` (and by the default run, after the other sessions
of each server), which also needs pg8000 (`python3 -m pip install --break-system-packages pg8000`) and
python3-pymysql.

## SQL Server (TDS) captures: real clients, a stand-in server

No SQL Server runs on Debian, so `tds-clients.pcap` and `tds-tls-login.pcap` record real clients, FreeTDS `tsql`
(Debian freetds-bin) and pytds (PyPI python-tds, with python3-openssl for its TLS), talking to a small listener that
plays the server side: `xtask/src/pcaps/tds.rs`, python3, built from MS-TDS. Their CLIENT bytes (PRELOGIN, the
TLS handshake inside PRELOGIN, LOGIN7, SQL batches, RPCs, transaction manager requests, attentions) are ground
truth; their SERVER bytes are the listener's: well-formed MS-TDS with canned answers, not SQL Server's output. The
listener accepts any user whose password is `{TDS_PASSWORD}` and refuses others with error 18456; the wrong
password of the failed login is `{TDS_WRONG_PASSWORD}`. Both passwords are canaries: the sensor must never print
them (the LOGIN7 password is only obfuscated, so both are recoverable from tds-clients.pcap), nor the canary
literal, which is in a batch and an RPC parameter. Port 1433, client addresses as above. `tds-tls-login.keys` is
the listener's key log (see its entry). These captures are recorded by `cargo xtask pcaps --only tds` (and by the
default run), which also needs freetds-bin, python3-openssl and python-tds (`python3 -m pip install
--break-system-packages python-tds`).

## Files and facts

Every command runs from the repository root. tshark decodes VXLAN on UDP 4789, `pgsql` on 5432, `mysql` on 3306
and `tds` on 1433 by default. With `-T fields`, several messages in one frame give comma-separated values, hence `tr ',' '\n'`.
"#
    );
    for f in OUTPUTS {
        let _ = write!(w, "\n### {}\n\n{}\n\n", f.name, describe(f.name));
        for (says, opts, filter, check) in common_facts(f.form, f.vni) {
            let (cmd, want) = command(f.name, &opts, &filter, "frame.number", &check);
            let _ = write!(w, "- {says}\n  `{cmd}` -> `{want}`\n");
        }
        for fact in FACTS.iter().filter(|x| x.file == f.name) {
            let opts = keylog_opts(f, fact, "pcaps");
            let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
            let (cmd, want) = command(fact.file, &opts, fact.filter, fact.field, &fact.check);
            let _ = write!(w, "- {}\n  `{cmd}` -> `{want}`\n", fact.says);
        }
    }
    let kept = previous.and_then(|p| {
        p.starts_with(HAND_WRITTEN)
            .then_some(0)
            .or_else(|| p.find(&format!("\n{HAND_WRITTEN}")).map(|i| i + 1))
            .map(|i| &p[i..])
    });
    if let Some(kept) = kept {
        s.push('\n');
        s.push_str(kept);
    }
    s
}
