//! Private MariaDB server in the server namespace, and the MySQL-protocol capture scenarios.

use super::tlskeys::{self, Session, Suite};
use super::{CANARY, CLI_NS, CLI_V4, CLI_V6, PASSWORD, PYTHON, SRV_NS, SRV_V4, SRV_V6, Tls};
use crate::dbserver::{MY_PORT, MyConfig, MyServer};
use crate::netlab::{Expect, Network, run, say};
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

/// The server (see `crate::dbserver`).
pub struct My {
    server: MyServer,
}

impl My {
    pub fn start(tmp: &Path, tls: &Tls) -> Result<Self> {
        let server = MyServer::start(
            tmp,
            &MyConfig {
                ns: SRV_NS,
                bind: &[SRV_V4, SRV_V6],
                max_connections: 20,
                extra_args: &[
                    format!("--ssl-cert={}", tls.cert.display()),
                    format!("--ssl-key={}", tls.key.display()),
                    "--plugin-load-add=auth_ed25519".to_string(),
                    // PAM with the cleartext plugin: what RDS's IAM plugin asks clients for.
                    "--plugin-load-add=auth_pam".to_string(),
                    "--pam-use-cleartext-plugin=ON".to_string(),
                ],
            },
        )?;
        let my = Self { server };
        my.setup()?;
        Ok(my)
    }

    fn setup(&self) -> Result<()> {
        say(
            "mariadb: creating users u_native (mysql_native_password), u_ed25519 (ed25519), u_tls (REQUIRE SSL), database appdb",
        );
        let pw = PASSWORD;
        let sql = format!(
            "CREATE DATABASE appdb; CREATE DATABASE otherdb;\n\
             CREATE USER 'u_native'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{pw}');\n\
             CREATE USER 'u_ed25519'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{pw}');\n\
             CREATE USER 'u_tls'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{pw}') REQUIRE SSL;\n\
             GRANT ALL ON appdb.* TO 'u_native'@'%', 'u_ed25519'@'%', 'u_tls'@'%';\n\
             GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON *.* TO 'u_native'@'%';\n\
             USE appdb;\n\
             CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(10,2) NOT NULL,\n\
                                 created_at DATETIME NOT NULL);\n\
             INSERT INTO items SELECT seq, CONCAT('item-', seq), (seq % 1000) / 10,\n\
                    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_5000;\n\
             DELIMITER //\n\
             CREATE PROCEDURE two_results() BEGIN\n\
               SELECT id, name FROM items WHERE id <= 3 ORDER BY id;\n\
               SELECT COUNT(*) AS n FROM items;\n\
             END //\n\
             DELIMITER ;\n\
             USE otherdb;\n\
             CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);\n\
             INSERT INTO notes VALUES (1, 'first'), (2, 'second');\n"
        );
        self.server
            .root_sql("mariadb setup: users, appdb.items (5000 rows)", &sql)
    }

    /// SQL as root over the Unix socket (never captured).
    pub(super) fn root_sql(&self, step: &str, sql: &str) -> Result<()> {
        self.server.root_sql(step, sql)
    }

    fn client(program: &str) -> Command {
        MyServer::client(CLI_NS, program)
    }

    /// `mariadb` (the mysql command-line client) over TCP, TLS off unless `tls`.
    fn mariadb(host: &str, user: &str, password: &str, db: Option<&str>, tls: bool) -> Command {
        MyServer::mariadb(CLI_NS, host, user, password, db, tls)
    }

    /// mysql-auth: two plugins that succeed (one with an auth switch), one IPv6 login, three failures.
    pub fn auth(&self, net: &Network) -> Result<()> {
        let q = ["-e", "SELECT CURRENT_USER(), DATABASE()"];
        let ok = |label: &str, src: &str, host: &str, user: &str| -> Result<()> {
            say(format!("  {label}: {user} from {src}"));
            if host == SRV_V4 {
                net.client_source(src)?;
            }
            let mut c = Self::mariadb(host, user, PASSWORD, Some("appdb"), false);
            run(&format!("mysql-auth: {label}"), c.args(q), None, Expect::Ok).map(|_| ())
        };
        ok("mysql_native_password login", CLI_V4[0], SRV_V4, "u_native")?;
        ok(
            "ed25519 login (auth switch)",
            CLI_V4[1],
            SRV_V4,
            "u_ed25519",
        )?;
        ok(
            "mysql_native_password login over IPv6",
            CLI_V6,
            SRV_V6,
            "u_native",
        )?;
        say(format!("  wrong password: u_native from {}", CLI_V4[2]));
        net.client_source(CLI_V4[2])?;
        let mut c = Self::mariadb(SRV_V4, "u_native", "wrong-password", Some("appdb"), false);
        run(
            "mysql-auth: wrong password",
            c.args(q),
            None,
            Expect::Fails(&["ERROR 1045"]),
        )?;
        say(format!("  unknown database: u_native from {}", CLI_V4[0]));
        net.client_source(CLI_V4[0])?;
        let mut c = Self::mariadb(SRV_V4, "u_native", PASSWORD, Some("nosuchdb"), false);
        run(
            "mysql-auth: unknown database",
            c.args(q),
            None,
            Expect::Fails(&["ERROR 1049"]),
        )?;
        say(format!(
            "  database access denied: u_ed25519 to otherdb from {}",
            CLI_V4[1]
        ));
        net.client_source(CLI_V4[1])?;
        let mut c = Self::mariadb(SRV_V4, "u_ed25519", PASSWORD, Some("otherdb"), false);
        let step = "mysql-auth: access denied to database";
        run(step, c.args(q), None, Expect::Fails(&["ERROR 1044"]))?;
        // A failed multi-round login (the closest MariaDB has to a failed caching_sha2_password
        // exchange, Zeek #3880): AuthSwitchRequest to client_ed25519, the client's signature
        // with the wrong password, then ERR 1045.
        say(format!(
            "  ed25519 wrong password: u_ed25519 from {}",
            CLI_V4[2]
        ));
        net.client_source(CLI_V4[2])?;
        let mut c = Self::mariadb(SRV_V4, "u_ed25519", "wrong-password", Some("appdb"), false);
        let step = "mysql-auth: ed25519 wrong password";
        run(step, c.args(q), None, Expect::Fails(&["ERROR 1045"]))?;
        Ok(())
    }

    /// mysql-queries: COM_QUERY session with errors, a large result, COM_INIT_DB, SQL-level
    /// PREPARE/EXECUTE, multi-statement and multi-result; then `mariadb-admin ping`.
    pub fn queries(&self, net: &Network) -> Result<()> {
        say(format!("  COM_QUERY session: u_native from {}", CLI_V4[0]));
        net.client_source(CLI_V4[0])?;
        let mut c = Self::mariadb(SRV_V4, "u_native", PASSWORD, Some("appdb"), false);
        c.arg("--force");
        let script = QUERIES_SCRIPT.replace("@CANARY@", CANARY);
        run(
            "mysql-queries: COM_QUERY session",
            &mut c,
            Some(script.as_bytes()),
            Expect::Any(&["ERROR 1146", "ERROR 1064"]),
        )?;
        say(format!(
            "  COM_PING: mariadb-admin ping, u_native from {}",
            CLI_V4[1]
        ));
        net.client_source(CLI_V4[1])?;
        let mut c = Self::client("mariadb-admin");
        c.arg("--no-defaults")
            .args([
                "--protocol=TCP",
                "-h",
                SRV_V4,
                "-P",
                &MY_PORT.to_string(),
                "-u",
                "u_native",
            ])
            .arg(format!("--password={PASSWORD}"))
            .args(["--skip-ssl", "--connect-timeout=10", "ping"]);
        run(
            "mysql-queries: mariadb-admin ping",
            &mut c,
            None,
            Expect::Any(&["mysqld is alive"]),
        )?;
        say(format!(
            "  pipelined COM_QUERY (raw-socket python3 client): u_native from {}",
            CLI_V4[2]
        ));
        net.client_source(CLI_V4[2])?;
        if !Path::new(PYTHON).exists() {
            bail!(
                "step `mysql-queries`: {PYTHON} is needed for the pipelined client; `apt-get install -y python3`"
            );
        }
        let mut c = Self::client(PYTHON);
        c.env("DB_PASSWORD", PASSWORD)
            .env("DB_HOST", SRV_V4)
            .args(["-c", PY_PIPELINED]);
        let out = run(
            "mysql-queries: pipelined COM_QUERY",
            &mut c,
            None,
            Expect::Ok,
        )?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            say(format!("  ... {l}"));
        }
        Ok(())
    }

    /// mysql-prepared: binary protocol (COM_STMT_PREPARE/EXECUTE/CLOSE) from Perl DBD::MariaDB
    /// with server-side prepare.
    pub fn prepared(&self, net: &Network) -> Result<()> {
        say(format!(
            "  binary prepared statements (perl DBD::MariaDB, mariadb_server_prepare=1): u_native from {}",
            CLI_V4[2]
        ));
        net.client_source(CLI_V4[2])?;
        let mut c = Self::client("perl");
        c.env("DB_PASSWORD", PASSWORD)
            .env("DB_HOST", SRV_V4)
            .env("CANARY", CANARY)
            .args(["-e", PERL_PREPARED]);
        let out = run(
            "mysql-prepared: perl DBD::MariaDB",
            &mut c,
            None,
            Expect::Any(&["prepare error 1054", "done"]),
        )?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            say(format!("  ... {l}"));
        }
        Ok(())
    }

    /// mysql-tls: a session over TLS.
    pub fn tls(&self, net: &Network) -> Result<()> {
        say(format!(
            "  TLS session: u_tls from {} with --ssl",
            CLI_V4[1]
        ));
        net.client_source(CLI_V4[1])?;
        let mut c = Self::mariadb(SRV_V4, "u_tls", PASSWORD, Some("appdb"), true);
        c.args([
            "-e",
            "SHOW SESSION STATUS LIKE 'Ssl_version'; SELECT COUNT(*) FROM items",
        ]);
        let out = run("mysql-tls: --ssl session", &mut c, None, Expect::Ok)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("TLSv1") {
            bail!("step `mysql-tls`: the session did not use TLS: {text}");
        }
        say(format!(
            "  ... {}",
            text.lines()
                .find(|l| l.contains("TLSv1"))
                .unwrap_or_default()
        ));
        Ok(())
    }

    /// mysql-tls-keys: PyMySQL sessions over TLS whose secrets go to the key log
    /// `<raw_dir>/mysql-tls-keys.keys`.
    pub fn tls_keys(&self, net: &Network, raw_dir: &Path) -> Result<()> {
        let keylog = raw_dir.join("mysql-tls-keys.keys");
        // A repeated recording (dropped packets) starts a new key log.
        if keylog.exists() {
            std::fs::remove_file(&keylog)?;
        }
        let queries: Vec<String> = vec![
            format!("SELECT id, name FROM items WHERE name <> '{CANARY}' ORDER BY id LIMIT 3"),
            "SELECT COUNT(*) FROM items".into(),
            "SELECT * FROM no_such_table".into(),
            "SELECT id, name, price FROM items ORDER BY id LIMIT 200".into(),
        ];
        let session = |label, src, suite| Session {
            label,
            src,
            suite,
            user: "u_tls",
            password: PASSWORD,
            keylog: &keylog,
            queries: &queries,
            login_error: None,
            expect: Expect::Any(&["error 1146"]),
        };
        let sessions = [
            session("TLS 1.3 default suite", CLI_V4[0], Suite::Tls13Default),
            session(
                "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256",
                CLI_V4[1],
                Suite::Tls12("ECDHE-ECDSA-AES128-GCM-SHA256"),
            ),
        ];
        for s in &sessions {
            tlskeys::run_session("mysql-tls-keys", net, PY_MY, s, raw_dir)?;
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// PyMySQL client of mysql-tls-keys (after `tlskeys::PY_COMMON`): login over TLS (autocommit
/// on, the server's default, so the driver sends no SET AUTOCOMMIT), the TLS check through
/// `SHOW SESSION STATUS`, then each query as a COM_QUERY; errors are printed, not fatal.
pub(super) const PY_MY: &str = r#"
import pymysql

try:
    con = pymysql.connect(host=env["DB_HOST"], port=3306, user=env["DB_USER"],
                          password=env["DB_PASSWORD"], database="appdb", ssl=ctx,
                          connect_timeout=10, autocommit=True)
except pymysql.err.OperationalError as e:
    code = str(e.args[0])
    if code != env["LOGIN_ERROR"]:
        raise
    print("login refused as expected: %s %s" % (code, e.args[1]))
    sys.exit(0)
if env["LOGIN_ERROR"]:
    sys.exit("login worked, but %s was expected" % env["LOGIN_ERROR"])
cur = con.cursor()
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
[(_, version)] = cur.fetchall()
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
[(_, cipher)] = cur.fetchall()
check_tls(con._sock, version, cipher)
for q in queries:
    try:
        cur.execute(q)
        print("%s: %d rows" % (show(q), len(cur.fetchall())))
    except pymysql.err.MySQLError as e:
        print("%s: error %s" % (show(q), e.args[0]))
cur.close()
con.close()
"#;

/// A client that writes several COM_QUERY packets in one send before reading any answer
/// (Packetbeat #18471), after a real mysql_native_password handshake; it reads and checks
/// every answer. Raw sockets: no driver pipelines COM_QUERY.
const PY_PIPELINED: &str = r#"
import hashlib, os, socket, struct, sys

s = socket.create_connection((os.environ["DB_HOST"], 3306), timeout=10)

def exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("connection closed")
        b += c
    return b

def read():
    h = exact(4)
    return h[3], exact(h[0] | h[1] << 8 | h[2] << 16)

def packet(seq, body):
    return struct.pack("<I", len(body))[:3] + bytes([seq]) + body

def lenenc(b, i):
    c = b[i]
    if c < 0xFB:
        return c, i + 1
    n = {0xFC: 2, 0xFD: 3, 0xFE: 8}[c]
    return int.from_bytes(b[i + 1:i + 1 + n], "little"), i + 1 + n

def response():
    # One whole answer: OK / ERR / result sets until SERVER_MORE_RESULTS_EXISTS is clear.
    out = []
    while True:
        _, p = read()
        if p[0] == 0xFF:
            out.append(("error", p[1] | p[2] << 8))
            return out
        if p[0] == 0x00:
            affected, i = lenenc(p, 1)
            _, i = lenenc(p, i)
            status = p[i] | p[i + 1] << 8
            out.append(("affected", affected))
        else:
            n, _ = lenenc(p, 0)
            for _ in range(n):
                read()
            _, eof = read()
            assert eof[0] == 0xFE and len(eof) < 9, "EOF after the column definitions"
            rows = 0
            while True:
                _, r = read()
                if r[0] == 0xFE and len(r) < 9:
                    status = r[3] | r[4] << 8
                    break
                if r[0] == 0xFF:
                    out.append(("error", r[1] | r[2] << 8))
                    return out
                rows += 1
            out.append(("rows", rows))
        if not status & 0x0008:
            return out

# Handshake: HandshakeV10 -> HandshakeResponse41 (mysql_native_password) -> OK.
_, g = read()
assert g[0] == 10, "protocol 10 greeting"
i = g.index(b"\0", 1) + 1 + 4
salt = g[i:i + 8]
i += 9 + 2 + 1 + 2 + 2
auth_len = g[i]
i += 1 + 10
salt += g[i:i + max(13, auth_len - 8) - 1]
pw = os.environ["DB_PASSWORD"].encode()
h1 = hashlib.sha1(pw).digest()
h3 = hashlib.sha1(salt[:20] + hashlib.sha1(h1).digest()).digest()
scramble = bytes(a ^ b for a, b in zip(h1, h3))
# LONG_PASSWORD, LONG_FLAG, CONNECT_WITH_DB, PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION,
# MULTI_RESULTS, PLUGIN_AUTH
caps = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000
hello = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"u_native\0" + bytes([20]) + scramble
hello += b"appdb\0mysql_native_password\0"
s.sendall(packet(1, hello))
_, ok = read()
assert ok[0] == 0x00, "login refused: %r" % ok

def batch(queries):
    # Every COM_QUERY in one write, before reading any answer.
    s.sendall(b"".join(packet(0, b"\x03" + q.encode()) for q in queries))
    return [response() for _ in queries]

a = batch([
    "SELECT id, name, price FROM items WHERE id <= 300 ORDER BY id",
    "SELECT COUNT(*) AS n FROM items",
])
assert a == [[("rows", 300)], [("rows", 1)]], a
print("batch 1 (2 COM_QUERY in one write):", a)
b = batch([
    "SELECT 'first' AS a",
    "SELECT no_such_column FROM items",
    "UPDATE items SET price = price + 1 WHERE id <= 3",
])
assert b == [[("rows", 1)], [("error", 1054)], [("affected", 3)]], b
print("batch 2 (3 COM_QUERY in one write):", b)
s.sendall(packet(0, b"\x01"))
s.close()
print("done")
"#;

const QUERIES_SCRIPT: &str = r"SELECT id, name, price FROM items WHERE name = '@CANARY@' OR id = 4242;
SELECT COUNT(*) AS n, SUM(price) AS total FROM items;
SELECT * FROM no_such_table;
SELEC id FROM items;
SELECT * FROM items ORDER BY id;
BEGIN;
UPDATE items SET price = price + 1 WHERE id <= 10;
INSERT INTO items (id, name, price, created_at) VALUES (100001, 'inserted', 1.00, NOW());
DELETE FROM items WHERE id = 100001;
COMMIT;
PREPARE s1 FROM 'SELECT id, name FROM items WHERE id = ?';
SET @id = 42;
EXECUTE s1 USING @id;
SET @id = 4242;
EXECUTE s1 USING @id;
DEALLOCATE PREPARE s1;
use otherdb
SELECT DATABASE(), COUNT(*) FROM notes;
use appdb
DELIMITER //
SELECT 1 AS one; SELECT 'two' AS two; SELECT 3 AS three //
CALL two_results() //
DELIMITER ;
SELECT 'bye';
";

const PERL_PREPARED: &str = r#"
use strict; use warnings; use DBI qw(:sql_types);
my $dbh = DBI->connect("DBI:MariaDB:database=appdb;host=$ENV{DB_HOST};port=3306", "u_native", $ENV{DB_PASSWORD},
    { RaiseError => 1, PrintError => 0, AutoCommit => 1, mariadb_server_prepare => 1 });
my $sel = $dbh->prepare("SELECT id, name, price, created_at FROM items WHERE id BETWEEN ? AND ? ORDER BY id");
for my $r ([1, 3], [100, 104], [4000, 4001]) {
    $sel->bind_param(1, $r->[0], SQL_INTEGER);
    $sel->bind_param(2, $r->[1], SQL_INTEGER);
    $sel->execute;
    my $rows = $sel->fetchall_arrayref;
    printf "select %d..%d: %d rows\n", $r->[0], $r->[1], scalar @$rows;
}
my $upd = $dbh->prepare("UPDATE items SET price = price + ? WHERE id = ?");
$upd->execute("1.50", 7);
$upd->execute("2.25", 8);
my $can = $dbh->prepare("SELECT COUNT(*) FROM items WHERE name = ?");
$can->execute($ENV{CANARY});
my ($n) = $can->fetchrow_array;
print "canary rows: $n\n";
$can->finish;
eval { $dbh->prepare("SELECT no_such_column FROM items WHERE id = ?"); 1 } or print "prepare error ", $dbh->err, "\n";
undef $sel; undef $upd; undef $can;
$dbh->disconnect;
print "done\n";
"#;
