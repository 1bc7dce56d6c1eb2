//! Private PostgreSQL server in the server namespace, and the PostgreSQL capture scenarios.

use super::tlskeys::{self, Session, Suite};
use super::{CANARY, CLI_NS, CLI_V4, CLI_V6, PASSWORD, SRV_NS, SRV_V4, SRV_V6, Tls};
use crate::dbserver::{PG_PORT, PgConfig, PgServer};
use crate::netlab::{Expect, Network, run, say};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// The server (see `crate::dbserver`) and the files the scenarios use.
pub struct Pg {
    server: PgServer,
}

const HBA: &str = "\
# TYPE  DATABASE USER     ADDRESS METHOD
local   all      all              trust
host    all      u_md5    all     md5
host    all      u_scram  all     scram-sha-256
host    all      u_clear  all     password
hostssl all      u_tls    all     scram-sha-256
hostssl all      u_iam    all     password
";

impl Pg {
    pub fn start(tmp: &Path, tls: &Tls) -> Result<Self> {
        let dir = PgServer::dir(tmp);
        let extra_conf = format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\npassword_encryption = 'scram-sha-256'\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        );
        let server = PgServer::start(
            tmp,
            &PgConfig {
                ns: SRV_NS,
                listen: &[SRV_V4, SRV_V6],
                hba: HBA,
                max_connections: 20,
                extra_conf: &extra_conf,
                private_files: &[(&tls.cert, "server.crt"), (&tls.key, "server.key")],
            },
        )?;
        let pg = Self { server };
        pg.setup()?;
        Ok(pg)
    }

    pub(super) fn admin_sql(&self, step: &str, db: &str, sql: &str) -> Result<()> {
        self.server.admin_sql(step, db, sql)
    }

    fn setup(&self) -> Result<()> {
        say(
            "postgres: creating users u_md5 (md5), u_scram (scram-sha-256), u_clear (password), u_tls (hostssl), u_iam (hostssl, password), databases appdb, benchdb",
        );
        let pw = PASSWORD;
        let sql = format!(
            "SET password_encryption = 'md5';\n\
             CREATE ROLE u_md5 LOGIN PASSWORD '{pw}';\n\
             SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE u_scram LOGIN PASSWORD '{pw}';\n\
             CREATE ROLE u_clear LOGIN PASSWORD '{pw}';\n\
             CREATE ROLE u_tls LOGIN PASSWORD '{pw}';\n\
             CREATE ROLE u_iam LOGIN PASSWORD '{pw}';\n\
             CREATE DATABASE appdb OWNER u_scram;\n\
             CREATE DATABASE benchdb OWNER u_scram;\n"
        );
        self.admin_sql("postgres setup: roles and databases", "postgres", &sql)?;
        let sql = "SET ROLE u_scram;\n\
             CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL,\n\
                                 created_at timestamptz NOT NULL DEFAULT now());\n\
             INSERT INTO items SELECT g, 'item-' || g, (g % 1000) / 10.0,\n\
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 5000) g;\n\
             GRANT SELECT ON items TO u_md5, u_clear, u_tls, u_iam;\n";
        self.admin_sql(
            "postgres setup: table appdb.items (5000 rows)",
            "appdb",
            sql,
        )?;
        say("postgres: pgbench -i -s 1 benchdb");
        let mut c = Command::new(self.server.bin.join("pgbench"));
        c.args([
            "-i",
            "-s",
            "1",
            "-q",
            "-U",
            "u_scram",
            "-p",
            &PG_PORT.to_string(),
            "-h",
        ])
        .arg(&self.server.sock)
        .arg("benchdb");
        run("postgres setup: pgbench -i", &mut c, None, Expect::Ok)?;
        fs::write(self.server.dir.join("pipeline.sql"), PIPELINE_SCRIPT)?;
        Ok(())
    }

    fn client(&self, program: &str, password: &str) -> Command {
        self.server.client(CLI_NS, program, password)
    }

    fn psql(&self, host: &str, user: &str, db: &str, sslmode: &str, password: &str) -> Command {
        let mut c = self.client("psql", password);
        c.args(["-X", "-w", "-d"])
            .arg(format!("host={host} port={PG_PORT} user={user} dbname={db} sslmode={sslmode} application_name=psql"));
        c
    }

    fn pgbench(&self, src: &str, args: &[&str]) -> Command {
        let mut c = self.client("pgbench", PASSWORD);
        c.args([
            "-n",
            "-c",
            "1",
            "-h",
            SRV_V4,
            "-p",
            &PG_PORT.to_string(),
            "-U",
            "u_scram",
        ])
        .args(args);
        say(format!("  pgbench {} (u_scram from {src})", args.join(" ")));
        c
    }

    /// pg-auth: three methods that succeed, one over IPv6, and two failures.
    pub fn auth(&self, net: &Network) -> Result<()> {
        let q = ["-c", "SELECT current_user, inet_client_addr()"];
        let ok = |label: &str, src: &str, host: &str, user: &str| -> Result<()> {
            say(format!("  {label}: {user} from {src}"));
            if host == SRV_V4 {
                net.client_source(src)?;
            }
            run(
                &format!("pg-auth: {label}"),
                self.psql(host, user, "appdb", "disable", PASSWORD).args(q),
                None,
                Expect::Ok,
            )
            .map(|_| ())
        };
        ok("md5 login", CLI_V4[0], SRV_V4, "u_md5")?;
        ok("scram-sha-256 login", CLI_V4[1], SRV_V4, "u_scram")?;
        ok("cleartext password login", CLI_V4[2], SRV_V4, "u_clear")?;
        ok("scram-sha-256 login over IPv6", CLI_V6, SRV_V6, "u_scram")?;
        say(format!("  wrong password: u_scram from {}", CLI_V4[0]));
        net.client_source(CLI_V4[0])?;
        let mut c = self.psql(SRV_V4, "u_scram", "appdb", "disable", "wrong-password");
        run(
            "pg-auth: wrong password",
            c.args(q),
            None,
            Expect::Fails(&["password authentication failed"]),
        )?;
        say(format!("  unknown database: u_md5 from {}", CLI_V4[1]));
        net.client_source(CLI_V4[1])?;
        let mut c = self.psql(SRV_V4, "u_md5", "nosuchdb", "disable", PASSWORD);
        run(
            "pg-auth: unknown database",
            c.args(q),
            None,
            Expect::Fails(&["database \"nosuchdb\" does not exist"]),
        )?;
        Ok(())
    }

    /// pg-queries: one simple-query session with errors, a large result, COPY both ways; then a
    /// cancelled query from a second client.
    pub fn queries(&self, net: &Network) -> Result<()> {
        say(format!(
            "  simple-query session: u_scram from {}",
            CLI_V4[0]
        ));
        net.client_source(CLI_V4[0])?;
        let mut c = self.psql(SRV_V4, "u_scram", "appdb", "disable", PASSWORD);
        c.args(["-v", "ON_ERROR_STOP=0", "-f", "-"]);
        let script = QUERIES_SCRIPT.replace("@CANARY@", CANARY);
        let out = run(
            "pg-queries: simple-query session",
            &mut c,
            Some(script.as_bytes()),
            Expect::Any(&["division by zero", "syntax error at or near \"SELEC\""]),
        )?;
        let rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("item-"))
            .count();
        say(format!("  ... psql printed {rows} item rows"));

        say(format!(
            "  cancel request: u_scram from {}, SIGINT to psql during pg_sleep",
            CLI_V4[1]
        ));
        net.client_source(CLI_V4[1])?;
        let mut c = self.psql(SRV_V4, "u_scram", "appdb", "disable", PASSWORD);
        c.args(["-c", "SELECT pg_sleep(30)"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c
            .spawn()
            .context("step `pg-queries: cancel`: starting psql")?;
        thread::sleep(Duration::from_millis(1500));
        let _ = Command::new("kill")
            .args(["-s", "INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("canceling statement due to user request") {
            bail!(
                "step `pg-queries: cancel`: psql did not report a cancelled statement (exit {}): {err}",
                out.status
            );
        }
        Ok(())
    }

    /// pg-extended: extended query protocol (prepared and unnamed statements) and pipelining.
    pub fn extended(&self, net: &Network) -> Result<()> {
        net.client_source(CLI_V4[0])?;
        let mut c = self.pgbench(
            CLI_V4[0],
            &["-M", "prepared", "-b", "tpcb-like", "-t", "4", "benchdb"],
        );
        run("pg-extended: pgbench -M prepared", &mut c, None, Expect::Ok)?;
        net.client_source(CLI_V4[1])?;
        let mut c = self.pgbench(
            CLI_V4[1],
            &["-M", "extended", "-b", "select-only", "-t", "5", "benchdb"],
        );
        run("pg-extended: pgbench -M extended", &mut c, None, Expect::Ok)?;
        net.client_source(CLI_V4[2])?;
        let script = self.server.dir.join("pipeline.sql");
        let script = script.to_string_lossy();
        let mut c = self.pgbench(
            CLI_V4[2],
            &["-M", "extended", "-f", &script, "-t", "3", "benchdb"],
        );
        run("pg-extended: pgbench pipeline", &mut c, None, Expect::Ok)?;
        Ok(())
    }

    /// pg-tls: a session with sslmode=require.
    pub fn tls(&self, net: &Network) -> Result<()> {
        say(format!(
            "  TLS session: u_tls from {} with sslmode=require",
            CLI_V4[2]
        ));
        net.client_source(CLI_V4[2])?;
        let mut c = self.psql(SRV_V4, "u_tls", "appdb", "require", PASSWORD);
        c.args([
            "-A",
            "-t",
            "-c",
            "SELECT 'tls=' || ssl || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ]);
        let out = run("pg-tls: sslmode=require session", &mut c, None, Expect::Ok)?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !line.starts_with("tls=t") {
            bail!("step `pg-tls`: the session did not use TLS: {line}");
        }
        say(format!("  ... {line}"));
        Ok(())
    }

    /// pg-plain: one small session, kept unwrapped.
    pub fn plain(&self, net: &Network) -> Result<()> {
        say(format!("  small session: u_scram from {}", CLI_V4[0]));
        net.client_source(CLI_V4[0])?;
        let q = format!("SELECT id, name FROM items WHERE name <> '{CANARY}' ORDER BY id LIMIT 3");
        let mut c = self.psql(SRV_V4, "u_scram", "appdb", "disable", PASSWORD);
        run("pg-plain: session", c.args(["-c", &q]), None, Expect::Ok).map(|_| ())
    }

    /// pg-tls-keys: pg8000 sessions over TLS whose secrets go to the key log
    /// `<raw_dir>/pg-tls-keys.keys`, except one session's, which go to a file that is not kept.
    pub fn tls_keys(&self, net: &Network, raw_dir: &Path, tmp: &Path) -> Result<()> {
        let keylog = raw_dir.join("pg-tls-keys.keys");
        let withheld = raw_dir.join("pg-tls-keys.withheld.keys");
        // A repeated recording (dropped packets) starts new key logs.
        for p in [&keylog, &withheld] {
            if p.exists() {
                fs::remove_file(p)?;
            }
        }
        let main: Vec<String> = vec![
            format!("SELECT id, name FROM items WHERE name <> '{CANARY}' ORDER BY id LIMIT 3"),
            "SELECT count(*) FROM items".into(),
            "SELECT 1/0".into(),
            "SELECT id, name, price FROM items ORDER BY id LIMIT 200".into(),
        ];
        let short: Vec<String> = vec![
            "SELECT count(*) FROM items".into(),
            "SELECT id, name FROM items WHERE id <= 5 ORDER BY id".into(),
        ];
        let only_count: Vec<String> = vec!["SELECT count(*) FROM items".into()];
        let session = |label, src, suite, queries| Session {
            label,
            src,
            suite,
            user: "u_tls",
            password: PASSWORD,
            keylog: &keylog,
            queries,
            login_error: None,
            expect: Expect::Ok,
        };
        let sessions = [
            Session {
                expect: Expect::Any(&["error 22012"]),
                ..session(
                    "TLS 1.3 default suite",
                    CLI_V4[0],
                    Suite::Tls13Default,
                    &main,
                )
            },
            session(
                "TLS 1.3 ChaCha20-Poly1305",
                CLI_V4[1],
                Suite::Tls13("TLS_CHACHA20_POLY1305_SHA256"),
                &short,
            ),
            session(
                "TLS 1.3 AES-128-GCM",
                CLI_V4[2],
                Suite::Tls13("TLS_AES_128_GCM_SHA256"),
                &short,
            ),
            session(
                "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256",
                CLI_V4[0],
                Suite::Tls12("ECDHE-ECDSA-AES128-GCM-SHA256"),
                &short,
            ),
            session(
                "TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384",
                CLI_V4[1],
                Suite::Tls12("ECDHE-ECDSA-AES256-GCM-SHA384"),
                &short,
            ),
            session(
                "TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305",
                CLI_V4[2],
                Suite::Tls12("ECDHE-ECDSA-CHACHA20-POLY1305"),
                &short,
            ),
            Session {
                keylog: &withheld,
                ..session(
                    "TLS 1.3, keys NOT in the committed key log",
                    CLI_V4[0],
                    Suite::Tls13Default,
                    &only_count,
                )
            },
            Session {
                password: "wrong-password",
                login_error: Some("28P01"),
                ..session(
                    "TLS 1.3, wrong password",
                    CLI_V4[1],
                    Suite::Tls13Default,
                    &[],
                )
            },
        ];
        for s in &sessions {
            tlskeys::run_session("pg-tls-keys", net, PY_PG, s, tmp)?;
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// pg8000 client of pg-tls-keys (after `tlskeys::PY_COMMON`): login over TLS, the TLS check
/// through pg_stat_ssl, then each query as a simple Query; errors are printed, not fatal.
pub(super) const PY_PG: &str = r#"
import pg8000.native as pg

try:
    con = pg.Connection(env["DB_USER"], host=env["DB_HOST"], port=5432, database="appdb",
                        password=env["DB_PASSWORD"], ssl_context=ctx, timeout=10,
                        application_name="pg8000")
except pg.DatabaseError as e:
    code = e.args[0].get("C")
    if code != env["LOGIN_ERROR"]:
        raise
    print("login refused as expected: %s %s" % (code, e.args[0].get("M")))
    sys.exit(0)
if env["LOGIN_ERROR"]:
    sys.exit("login worked, but %s was expected" % env["LOGIN_ERROR"])
[[version, cipher]] = con.run("SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
check_tls(con._usock, version, cipher)
for q in queries:
    try:
        rows = con.run(q)
        print("%s: %d rows" % (show(q), len(rows)))
    except pg.DatabaseError as e:
        print("%s: error %s" % (show(q), e.args[0].get("C")))
con.close()
"#;

const QUERIES_SCRIPT: &str = r"SELECT id, name, price FROM items WHERE name = '@CANARY@' OR id = 4242;
SELECT count(*) AS n, sum(price) AS total FROM items;
SELECT 1 AS one \; SELECT 'two' AS two \; SELECT 3 AS three;
SELECT 1/0;
SELEC id FROM items;
SELECT * FROM items ORDER BY id;
BEGIN;
UPDATE items SET price = price + 1 WHERE id <= 10;
INSERT INTO items (id, name, price) VALUES (100001, 'inserted', 1.00);
DELETE FROM items WHERE id = 100001;
COMMIT;
COPY (SELECT id, name, price FROM items WHERE id <= 2000 ORDER BY id) TO STDOUT;
CREATE TEMP TABLE t_in (id int, name text);
COPY t_in FROM STDIN;
1	copied-one
2	copied-two
3	copied-three
\.
SELECT count(*) FROM t_in;
";

const PIPELINE_SCRIPT: &str = r"\set aid random(1, 100000)
\set delta random(-5000, 5000)
\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\endpipeline
";
