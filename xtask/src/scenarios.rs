//! `cargo xtask scenarios`: record the labelled detection corpus (`pcaps/scenarios/`) from real
//! PostgreSQL and MariaDB servers, for the scorer `sensor-user/tests/detection_scenarios.rs`.
//!
//! Two network namespaces joined by a veth pair: the servers (`orders-pg-1`, PostgreSQL, on
//! 198.51.100.10 and 2001:db8:100::10; `billing-mariadb-1`, MariaDB, on 198.51.100.11) in one,
//! every client in the other, which holds all the client addresses: application hosts in
//! 198.51.100.0/24 and 2001:db8:100::/64, and the attackers (203.0.113.0/24, documentation space
//! outside the allowed networks, and a few public addresses that exist only inside this
//! namespace: 89.160.20.0/24, 185.220.101.7 on the Tor list, 45.155.205.0/24 on the malicious
//! list). Nothing leaves the machine: the client namespace has no route but the veth.
//!
//! Time is compressed: the benign application runs in slots, each standing for five minutes of
//! application time, recorded back to back; the pcap timestamps are then rewritten so that slot
//! N starts at T0 + N × 5 min (the packets of a slot keep their relative timing). `benign.pcap`
//! is three hours (the scorer learns the first two); the attack files start after it.
//!
//! Writes `benign.pcap`, one `attack-*.pcap` per attack alone, `mixed.pcap` (an hour of benign
//! traffic with every attack mixed in), `policy-weakauth.pcap`, the lists the scorer passes
//! (`malicious-ips.txt`, `tor-exits.txt`, `instances.json`), `labels.json` (which finding types
//! each file must yield, and which others it may) and `README.md`. Plain Ethernet pcaps.

use crate::dbserver::{MY_PORT, MyConfig, MyServer, PG_PORT, PgConfig, PgServer, pg_find_bin};
use crate::netlab::{
    self, Capture, Expect, NetSpec, Network, TempDir, check, describe, require_root, require_tool,
    say,
};
use crate::pcapfmt;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
pub struct ScenariosArgs {
    /// Directory the corpus is written to [default: <workspace>/pcaps/scenarios]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Benign slots (five minutes of application time each) in benign.pcap
    #[arg(long, default_value_t = 36)]
    pub benign_slots: u32,
    /// Keep the temp dir (server data dirs, logs, raw captures) for debugging
    #[arg(long)]
    pub keep_tmp: bool,
}

const SRV_NS: &str = "rdsscn-srv";
const CLI_NS: &str = "rdsscn-cli";
const PG_ADDR: &str = "198.51.100.10";
const MY_ADDR: &str = "198.51.100.11";
const PG_V6: &str = "2001:db8:100::10";

/// Application hosts (allowed networks).
const APP1: &str = "198.51.100.20";
const APP2: &str = "198.51.100.21";
const APP3: &str = "198.51.100.22";
const APP_V6: &str = "2001:db8:100::20";
const REPORTING: &str = "198.51.100.30";
const BASTION: &str = "198.51.100.40";
/// The load balancer's TCP health check: connects and closes, every slot.
const HEALTH: &str = "198.51.100.5";
/// Attackers.
const SPRAYER: &str = "203.0.113.66";
const SCANNER: &str = "203.0.113.77";
const BRUTE: &str = "89.160.20.112";
const SYN_SCANNER: &str = "89.160.20.129";
const TOR_EXIT: &str = "185.220.101.7";
const MALICIOUS: &str = "45.155.205.33";
const MALICIOUS2: &str = "45.155.205.34";

/// The lab network: both servers in one namespace, every client address (application hosts on
/// the server's /24, attackers as /32 "internet" addresses) on the client veth.
static LAB: NetSpec = NetSpec {
    srv_ns: SRV_NS,
    cli_ns: CLI_NS,
    srv_if: "rdsscn-s",
    cli_if: "rdsscn-c",
    macs: None,
    srv_v4: &[PG_ADDR, MY_ADDR],
    srv_v6: PG_V6,
    cli_v4: &[
        APP1,
        APP2,
        APP3,
        REPORTING,
        BASTION,
        HEALTH,
        SPRAYER,
        SCANNER,
        BRUTE,
        SYN_SCANNER,
        TOR_EXIT,
        MALICIOUS,
        MALICIOUS2,
    ],
    cli_v6: APP_V6,
};

/// What tcpdump records (the port scan also touches SQL Server and Oracle ports).
const CAPTURE_FILTER: &str = "tcp and (port 5432 or port 3306 or port 1433 or port 1521)";

const PASSWORD: &str = "Orders-Pw-2025!";
const MY_PASSWORD: &str = "Billing-Pw-2025!";

/// 2025-03-06T08:00:00Z: application time of the first benign slot.
const T0: u64 = 1_741_248_000;
const SLOT_S: u64 = 300;
/// What the scorer passes as --learning-period.
const LEARNING_S: u64 = 7200;

// ---------------------------------------------------------------------------------------------
// Client commands, run concurrently (a connection pool); one-shot commands use `netlab::run`.

/// A command, its stdin, and what it must do.
struct Job {
    step: String,
    cmd: Command,
    stdin: Option<String>,
    expect: Expect,
}

/// Runs the jobs concurrently (a connection pool) and checks each.
fn run_all(jobs: Vec<Job>) -> Result<()> {
    /// A started job: step, command line, child, expectation, stdin writer.
    type Running = (
        String,
        String,
        Child,
        Expect,
        Option<thread::JoinHandle<()>>,
    );
    let mut running: Vec<Running> = Vec::new();
    for mut j in jobs {
        let shown = describe(&j.cmd);
        j.cmd
            .stdin(if j.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = j
            .cmd
            .spawn()
            .with_context(|| format!("step `{}`: cannot start `{shown}`", j.step))?;
        let writer = j.stdin.map(|input| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            })
        });
        running.push((j.step, shown, child, j.expect, writer));
    }
    let mut first_err = None;
    for (step, shown, child, expect, writer) in running {
        let out = child.wait_with_output();
        if let Some(w) = writer {
            let _ = w.join();
        }
        let r = out
            .with_context(|| format!("step `{step}`: waiting for `{shown}`"))
            .and_then(|o| check(&step, &shown, &o, expect));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn run1(step: &str, mut cmd: Command, stdin: Option<String>, expect: Expect) -> Result<()> {
    netlab::run(step, &mut cmd, stdin.as_deref().map(str::as_bytes), expect).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Servers

/// `orders-pg-1`: the server (see `crate::dbserver`) with the orders application's roles and
/// tables.
struct Pg {
    server: PgServer,
}

const PG_HBA: &str = "\
local   all  all               trust
host    all  legacy_md5  all   md5
host    all  kiosk       all   password
host    all  all         all   scram-sha-256
";

const PG_SETUP: &str = "\
SET password_encryption = 'scram-sha-256';
CREATE ROLE app_orders LOGIN PASSWORD '@PW@';
CREATE ROLE reporter LOGIN PASSWORD '@PW@';
CREATE ROLE dba LOGIN SUPERUSER PASSWORD '@PW@';
CREATE ROLE kiosk LOGIN PASSWORD '@PW@';
SET password_encryption = 'md5';
CREATE ROLE legacy_md5 LOGIN PASSWORD '@PW@';
CREATE DATABASE appdb OWNER app_orders;
";

const PG_TABLES: &str = "\
SET ROLE app_orders;
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, name text NOT NULL, last_order_at timestamptz);
INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'Customer ' || g, NULL FROM generate_series(1, 8000) g;
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL, state text NOT NULL, total numeric(10,2) NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO orders (customer_id, state, total, created_at)
  SELECT 1 + g % 500, (ARRAY['new','paid','shipped'])[1 + g % 3], (g % 997) / 10.0,
         timestamptz '2025-03-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 5000) g;
CREATE TABLE legacy_sessions (id int, token text);
GRANT SELECT ON customers, orders TO reporter;
GRANT SELECT ON orders TO legacy_md5, kiosk;
";

impl Pg {
    fn start(tmp: &Path) -> Result<Self> {
        let server = PgServer::start(
            tmp,
            &PgConfig {
                ns: SRV_NS,
                listen: &[PG_ADDR, PG_V6],
                hba: PG_HBA,
                max_connections: 40,
                extra_conf: "",
                private_files: &[],
            },
        )?;
        server.admin_sql(
            "postgres setup",
            "postgres",
            &PG_SETUP.replace("@PW@", PASSWORD),
        )?;
        server.admin_sql("postgres setup", "appdb", PG_TABLES)?;
        say("postgres: orders-pg-1 with appdb (customers 8000 rows, orders 5000 rows)");
        Ok(Self { server })
    }

    /// A psql session from the client namespace running the script on its stdin.
    fn psql(&self, host: &str, user: &str, password: &str, app: &str) -> Command {
        let mut c = self.server.client(CLI_NS, "psql", password);
        c.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=0", "-d"])
            .arg(format!(
                "host={host} port={PG_PORT} user={user} dbname=appdb application_name={app}"
            ))
            .args(["-f", "-"]);
        c
    }
}

/// `billing-mariadb-1`: the server (see `crate::dbserver`) with the billing service's user and
/// table.
struct My {
    _server: MyServer,
}

const MY_SETUP: &str = "\
CREATE DATABASE billing;
CREATE USER 'billing_app'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('@PW@');
GRANT SELECT, INSERT, UPDATE ON billing.* TO 'billing_app'@'%';
USE billing;
CREATE TABLE invoices (id INT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, amount DECIMAL(10,2) NOT NULL,
                       status VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO invoices (account, amount, status) SELECT seq % 300, (seq % 997) / 10, 'open' FROM seq_1_to_3000;
";

impl My {
    fn start(tmp: &Path) -> Result<Self> {
        let server = MyServer::start(
            tmp,
            &MyConfig {
                ns: SRV_NS,
                bind: &[MY_ADDR],
                max_connections: 40,
                extra_args: &[],
            },
        )?;
        server.root_sql("mariadb setup", &MY_SETUP.replace("@PW@", MY_PASSWORD))?;
        say("mariadb: billing-mariadb-1 with billing.invoices (3000 rows)");
        Ok(Self { _server: server })
    }

    /// A `mariadb` session from the client namespace running the script on its stdin.
    fn client(user: &str, password: &str, db: Option<&str>) -> Command {
        let mut c = MyServer::mariadb(CLI_NS, MY_ADDR, user, password, db, false);
        c.arg("--force");
        c
    }
}

// ---------------------------------------------------------------------------------------------
// Client behaviour

/// A small deterministic generator, so that a re-recording makes the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One orders-api session: a few requests of the web application.
fn orders_script(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..4 {
        let (order, customer) = (1 + rng.below(5000), 1 + rng.below(500));
        match rng.below(5) {
            0 | 1 => s.push_str(&format!(
                "SELECT id, state, total FROM orders WHERE id = {order};\n"
            )),
            2 => s.push_str(&format!(
                "SELECT id, state, total, created_at FROM orders WHERE customer_id = {customer} ORDER BY id DESC LIMIT 20;\n"
            )),
            3 => s.push_str(&format!(
                "BEGIN;\nINSERT INTO orders (customer_id, state, total) VALUES ({customer}, 'new', {}.{:02}) RETURNING id;\n\
                 UPDATE customers SET last_order_at = now() WHERE id = {customer};\nCOMMIT;\n",
                1 + rng.below(300),
                rng.below(100)
            )),
            _ => s.push_str(&format!(
                "UPDATE orders SET state = 'shipped' WHERE id = {order};\n"
            )),
        }
    }
    s
}

fn billing_script(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..4 {
        let (inv, acct) = (1 + rng.below(3000), rng.below(300));
        match rng.below(4) {
            0 => s.push_str(&format!("SELECT id, amount, status FROM invoices WHERE id = {inv};\n")),
            1 => s.push_str(&format!(
                "SELECT id, amount, status FROM invoices WHERE account = {acct} ORDER BY id DESC LIMIT 20;\n"
            )),
            2 => s.push_str(&format!(
                "INSERT INTO invoices (account, amount, status) VALUES ({acct}, {}.50, 'open');\n",
                1 + rng.below(500)
            )),
            _ => s.push_str(&format!("UPDATE invoices SET status = 'paid' WHERE id = {inv};\n")),
        }
    }
    s
}

const REPORT_SCRIPT: &str = "\
SELECT state, count(*), sum(total) FROM orders GROUP BY state;
SELECT date_trunc('hour', created_at) AS h, count(*) FROM orders GROUP BY h ORDER BY h DESC LIMIT 48;
";

const DBA_SCRIPT: &str = "\
SELECT pid, usename, application_name, state FROM pg_stat_activity;
VACUUM ANALYZE orders;
";

/// Connect and close without a word (`nc -z`), or a half-open SYN (raw socket: the client
/// kernel answers the SYN-ACK with a RST), from `src`.
const PROBE_PY: &str = r#"
import socket, struct, sys
mode, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
ports = [int(p) for p in sys.argv[4:]]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
for i, port in enumerate(ports):
    if mode == "connect":
        try:
            s = socket.create_connection((dst, port), timeout=3, source_address=(src, 0))
            s.close()
        except OSError:
            pass
    else:
        sport = 40000 + i
        hdr = struct.pack("!HHIIBBHHH", sport, port, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
        hdr = hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        r.bind((src, 0))
        r.sendto(hdr, (dst, 0))
        r.close()
import time; time.sleep(0.5)
"#;

fn probe(mode: &str, src: &str, dst: &str, ports: &[u16]) -> Job {
    let mut c = netlab::in_ns(CLI_NS, "/usr/bin/python3");
    c.args(["-c", PROBE_PY, mode, src, dst])
        .args(ports.iter().map(|p| p.to_string()));
    Job {
        step: format!("{mode} probe {src} -> {dst}"),
        cmd: c,
        stdin: None,
        expect: Expect::Ok,
    }
}

/// The recorder: servers, network, and the time marks of the current capture.
struct Rec {
    net: Network,
    pg: Pg,
    rng: Rng,
    /// (real time, application time) of each slot start, both in ns since the epoch.
    marks: Vec<(u64, u64)>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Rec {
    /// Starts the slot that stands for application time `app_s` (seconds since T0).
    fn mark(&mut self, app_s: u64) {
        // Let the previous slot's last segments (FIN, ACK) be captured before the cut.
        thread::sleep(Duration::from_millis(150));
        self.marks.push((now_ns(), (T0 + app_s) * 1_000_000_000));
    }

    #[allow(clippy::too_many_arguments)]
    fn pg_job(
        &self,
        step: &str,
        src: &str,
        user: &str,
        pw: &str,
        app: &str,
        script: String,
        expect: Expect,
    ) -> Job {
        let host = if src.contains(':') { PG_V6 } else { PG_ADDR };
        Job {
            step: step.to_string(),
            cmd: self.pg.psql(host, user, pw, app),
            stdin: Some(script),
            expect,
        }
    }

    /// Five minutes of normal business: the orders API (a pool of two connections on each of
    /// three hosts, one of them IPv6), the billing service on MariaDB, health checks, the
    /// reporting job every 15 minutes and the DBA once an hour (with a typo twice a day).
    fn benign_slot(&mut self, slot: u64) -> Result<()> {
        for host in [APP1, APP2, APP_V6] {
            if !host.contains(':') {
                self.net.client_source(host)?;
            }
            let jobs = (0..2)
                .map(|_| {
                    let s = orders_script(&mut self.rng);
                    self.pg_job(
                        "orders-api session",
                        host,
                        "app_orders",
                        PASSWORD,
                        "orders-api",
                        s,
                        Expect::Ok,
                    )
                })
                .collect();
            run_all(jobs)?;
        }
        for host in [APP2, APP3] {
            self.net.client_source(host)?;
            run1(
                "billing session",
                My::client("billing_app", MY_PASSWORD, Some("billing")),
                Some(billing_script(&mut self.rng)),
                Expect::Ok,
            )?;
        }
        run_all(vec![
            probe("connect", HEALTH, PG_ADDR, &[PG_PORT]),
            probe("connect", HEALTH, MY_ADDR, &[MY_PORT]),
        ])?;
        if slot % 3 == 1 {
            self.net.client_source(REPORTING)?;
            run_all(vec![self.pg_job(
                "reporting job",
                REPORTING,
                "reporter",
                PASSWORD,
                "metabase",
                REPORT_SCRIPT.into(),
                Expect::Ok,
            )])?;
        }
        if slot % 12 == 7 {
            self.net.client_source(BASTION)?;
            if slot % 24 == 7 {
                run_all(vec![self.pg_job(
                    "dba typo",
                    BASTION,
                    "dba",
                    "Orders-Pw-2024!",
                    "psql",
                    String::new(),
                    Expect::Fails(&["password authentication failed"]),
                )])?;
            }
            run_all(vec![self.pg_job(
                "dba session",
                BASTION,
                "dba",
                PASSWORD,
                "psql",
                DBA_SCRIPT.into(),
                Expect::Ok,
            )])?;
        }
        Ok(())
    }

    fn attack(&mut self, a: Attack) -> Result<()> {
        say(format!("  attack: {}", a.name()));
        match a {
            Attack::BruteForce => {
                self.net.client_source(BRUTE)?;
                for i in 0..12 {
                    run_all(vec![self.pg_job(
                        "brute force: wrong password",
                        BRUTE,
                        "app_orders",
                        &format!("Summer{}!", 2010 + i),
                        "psql",
                        String::new(),
                        Expect::Fails(&["password authentication failed"]),
                    )])?;
                }
                run_all(vec![self.pg_job(
                    "brute force: success",
                    BRUTE,
                    "app_orders",
                    PASSWORD,
                    "psql",
                    "SELECT current_user, version();\nSELECT count(*) FROM customers;\n".into(),
                    Expect::Ok,
                )])
            }
            Attack::Spray => {
                self.net.client_source(SPRAYER)?;
                for user in [
                    "postgres",
                    "admin",
                    "root",
                    "app_orders",
                    "reporter",
                    "backup",
                ] {
                    run_all(vec![self.pg_job(
                        "spray (PostgreSQL)",
                        SPRAYER,
                        user,
                        "Winter2025!",
                        "psql",
                        String::new(),
                        Expect::Fails(&["password authentication failed"]),
                    )])?;
                }
                for user in ["root", "admin", "billing_app", "backup"] {
                    run1(
                        "spray (MariaDB)",
                        My::client(user, "Winter2025!", None),
                        Some("SELECT 1;\n".into()),
                        Expect::Fails(&["Access denied"]),
                    )?;
                }
                Ok(())
            }
            Attack::Scan => {
                self.net.client_source(SCANNER)?;
                run_all(vec![
                    probe("connect", SCANNER, PG_ADDR, &[PG_PORT, 1433, 1521, PG_PORT]),
                    probe("connect", SCANNER, MY_ADDR, &[MY_PORT, 1433]),
                    probe("syn", SYN_SCANNER, PG_ADDR, &[PG_PORT, 3306]),
                    probe("syn", SYN_SCANNER, MY_ADDR, &[MY_PORT]),
                ])
            }
            Attack::Exfiltration => {
                // The application's own credentials and name, from an application host.
                self.net.client_source(APP2)?;
                let script = "SELECT id, state, total FROM orders WHERE id = 17;\nSELECT id, email FROM customers;\n";
                run_all(vec![self.pg_job(
                    "exfiltration: dump customers",
                    APP2,
                    "app_orders",
                    PASSWORD,
                    "orders-api",
                    script.into(),
                    Expect::Ok,
                )])
            }
            Attack::PrivilegeDrift => {
                self.net.client_source(APP1)?;
                let script = "SELECT id, state, total FROM orders WHERE id = 42;\n\
                    DELETE FROM orders WHERE state = 'new' AND id > 4990;\n\
                    DROP TABLE legacy_sessions;\n\
                    GRANT SELECT ON customers TO PUBLIC;\n\
                    COPY (SELECT 1) TO PROGRAM 'id';\n";
                run_all(vec![self.pg_job(
                    "privilege drift (PostgreSQL)",
                    APP1,
                    "app_orders",
                    PASSWORD,
                    "orders-api",
                    script.into(),
                    Expect::Ok,
                )])?;
                self.net.client_source(APP3)?;
                let script = "SELECT id, amount, status FROM invoices WHERE id = 7;\n\
                    DELETE FROM invoices WHERE status = 'paid';\n\
                    DROP TABLE invoices;\n\
                    GRANT ALL ON billing.* TO 'billing_app'@'%';\n";
                run1(
                    "privilege drift (MariaDB)",
                    My::client("billing_app", MY_PASSWORD, Some("billing")),
                    Some(script.into()),
                    Expect::Any(&["command denied"]),
                )
            }
            Attack::Tor => {
                self.net.client_source(TOR_EXIT)?;
                run_all(vec![probe("connect", TOR_EXIT, PG_ADDR, &[PG_PORT])])?;
                run_all(vec![self.pg_job(
                    "tor: wrong password",
                    TOR_EXIT,
                    "app_orders",
                    "orders",
                    "psql",
                    String::new(),
                    Expect::Fails(&["password authentication failed"]),
                )])?;
                run_all(vec![self.pg_job(
                    "tor: login",
                    TOR_EXIT,
                    "app_orders",
                    PASSWORD,
                    "psql",
                    "SELECT id, email FROM customers ORDER BY id LIMIT 5;\n".into(),
                    Expect::Ok,
                )])
            }
            Attack::Malicious => {
                run_all(vec![
                    probe("connect", MALICIOUS, PG_ADDR, &[PG_PORT]),
                    probe("connect", MALICIOUS, MY_ADDR, &[MY_PORT]),
                ])?;
                self.net.client_source(MALICIOUS)?;
                run_all(vec![self.pg_job(
                    "malicious: wrong password",
                    MALICIOUS,
                    "postgres",
                    "postgres",
                    "psql",
                    String::new(),
                    Expect::Fails(&["password authentication failed"]),
                )])?;
                run1(
                    "malicious: wrong password (MariaDB)",
                    My::client("root", "root", None),
                    Some("SELECT 1;\n".into()),
                    Expect::Fails(&["Access denied"]),
                )?;
                self.net.client_source(MALICIOUS2)?;
                run_all(vec![self.pg_job(
                    "malicious: login",
                    MALICIOUS2,
                    "app_orders",
                    PASSWORD,
                    "psql",
                    "SELECT count(*) FROM orders;\n".into(),
                    Expect::Ok,
                )])
            }
            Attack::WeakAuth => {
                self.net.client_source(REPORTING)?;
                run_all(vec![
                    self.pg_job(
                        "md5 login",
                        REPORTING,
                        "legacy_md5",
                        PASSWORD,
                        "legacy-etl",
                        "SELECT count(*) FROM orders;\n".into(),
                        Expect::Ok,
                    ),
                    self.pg_job(
                        "cleartext login",
                        REPORTING,
                        "kiosk",
                        PASSWORD,
                        "kiosk",
                        "SELECT count(*) FROM orders;\n".into(),
                        Expect::Ok,
                    ),
                ])
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    BruteForce,
    Spray,
    Scan,
    Exfiltration,
    PrivilegeDrift,
    Tor,
    Malicious,
    WeakAuth,
}

const ANOMALOUS_OK: &str = "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin";
const ANOMALOUS_FAIL: &str = "CredentialAccess:RDS/AnomalousBehavior.FailedLogin";
const BRUTE_FORCE: &str = "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce";
const MAL_OK: &str = "CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin";
const MAL_FAIL: &str = "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin";
const MAL_DISC: &str = "Discovery:RDS/MaliciousIPCaller";
const TOR_OK: &str = "CredentialAccess:RDS/TorIPCaller.SuccessfulLogin";
const TOR_FAIL: &str = "CredentialAccess:RDS/TorIPCaller.FailedLogin";
const TOR_DISC: &str = "Discovery:RDS/TorIPCaller";
const STAGING: &str = "Exfiltration:RDS/AnomalousBehavior.DataStaging";
const DRIFT: &str = "PrivilegeEscalation:RDS/AnomalousBehavior.PrivilegeDrift";
const SPRAY: &str = "CredentialAccess:RDS/CredentialSpraying.ManyUsers";
const PROBE: &str = "Discovery:RDS/PortProbe.Unauthenticated";
const CLEARTEXT: &str = "CredentialAccess:RDS/WeakAuthentication.Cleartext";
const MD5: &str = "CredentialAccess:RDS/WeakAuthentication.MD5";
const UNALLOWED: &str = "Policy:RDS/UnallowedNetwork.Connection";
const NEW_EDGE: &str = "InitialAccess:RDS/AnomalousBehavior.NewClientEdge";

impl Attack {
    const ALL: [Attack; 8] = [
        Self::BruteForce,
        Self::Spray,
        Self::Scan,
        Self::Exfiltration,
        Self::PrivilegeDrift,
        Self::Tor,
        Self::Malicious,
        Self::WeakAuth,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::BruteForce => "bruteforce",
            Self::Spray => "spray",
            Self::Scan => "scan",
            Self::Exfiltration => "exfiltration",
            Self::PrivilegeDrift => "privilege-drift",
            Self::Tor => "tor",
            Self::Malicious => "malicious",
            Self::WeakAuth => "weakauth",
        }
    }

    fn file(self) -> String {
        match self {
            Self::WeakAuth => "policy-weakauth.pcap".into(),
            a => format!("attack-{}.pcap", a.name()),
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::BruteForce => {
                "12 wrong passwords for app_orders from the public address 89.160.20.112 with psql, then the right one and two queries"
            }
            Self::Spray => {
                "203.0.113.66 tries one password for 6 users on PostgreSQL and 4 on MariaDB"
            }
            Self::Scan => {
                "203.0.113.77 connects and closes (nc -z) to 5432, 1433, 1521, 3306; 89.160.20.129 sends half-open SYNs"
            }
            Self::Exfiltration => {
                "app_orders, from an application host with the application's name, reads the whole customers table (8000 rows)"
            }
            Self::PrivilegeDrift => {
                "app_orders issues DELETE, DROP TABLE, GRANT and COPY TO PROGRAM; billing_app DELETE, DROP, GRANT (refused)"
            }
            Self::Tor => {
                "185.220.101.7 (on the Tor exit list) probes, fails a login, then logs in as app_orders"
            }
            Self::Malicious => {
                "45.155.205.33 (malicious list) probes both instances and fails logins; 45.155.205.34 logs in as app_orders"
            }
            Self::WeakAuth => {
                "legacy_md5 (md5) and kiosk (cleartext password) log in from the reporting host"
            }
        }
    }

    /// Finding types the file must yield (recall), and severities that must be reached.
    fn expect(
        self,
    ) -> (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ) {
        match self {
            Self::BruteForce => (
                &[BRUTE_FORCE, ANOMALOUS_OK, ANOMALOUS_FAIL, NEW_EDGE],
                &[
                    (BRUTE_FORCE, "High"),
                    (ANOMALOUS_OK, "High"),
                    (ANOMALOUS_FAIL, "Low"),
                    (NEW_EDGE, "Medium"),
                ],
            ),
            Self::Spray => (
                &[SPRAY, ANOMALOUS_FAIL],
                &[(SPRAY, "Medium"), (ANOMALOUS_FAIL, "Low")],
            ),
            Self::Scan => (
                &[PROBE, UNALLOWED],
                &[(PROBE, "Medium"), (UNALLOWED, "Medium")],
            ),
            Self::Exfiltration => (&[STAGING], &[(STAGING, "High")]),
            Self::PrivilegeDrift => (&[DRIFT], &[(DRIFT, "High")]),
            Self::Tor => (
                &[TOR_OK, TOR_FAIL, TOR_DISC],
                &[(TOR_OK, "High"), (TOR_FAIL, "Medium"), (TOR_DISC, "Medium")],
            ),
            Self::Malicious => (
                &[MAL_OK, MAL_FAIL, MAL_DISC],
                &[(MAL_OK, "High"), (MAL_FAIL, "Medium"), (MAL_DISC, "Medium")],
            ),
            Self::WeakAuth => (&[MD5, CLEARTEXT], &[(MD5, "Low"), (CLEARTEXT, "Medium")]),
        }
    }

    /// Other findings the file legitimately yields (not false positives), and why.
    fn also(self) -> &'static [(&'static str, &'static str)] {
        const OUTSIDE: &str =
            "the client is outside the allowed networks (198.51.100.0/24, 2001:db8:100::/64)";
        const NEW_NET: &str = "a network that never reached the instance";
        match self {
            Self::BruteForce | Self::Spray => &[(UNALLOWED, OUTSIDE)],
            Self::Scan => &[],
            Self::Tor | Self::Malicious => &[
                (ANOMALOUS_OK, "a login from a network the user never used"),
                (ANOMALOUS_FAIL, "failed logins from a network never seen"),
                (NEW_EDGE, NEW_NET),
                (UNALLOWED, OUTSIDE),
            ],
            Self::WeakAuth => &[(ANOMALOUS_OK, "users that never logged in while learning")],
            Self::Exfiltration | Self::PrivilegeDrift => &[],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pcap files: tcpdump's, with the timestamps rewritten (see `crate::pcapfmt`).

/// Moves each packet from real time to application time: the packets after mark (real R,
/// application A) get A + (t − R). The result has microsecond timestamps.
fn retime(pcap: &mut pcapfmt::Pcap, marks: &[(u64, u64)]) -> Result<()> {
    if marks.is_empty() {
        bail!("no time marks");
    }
    for w in marks.windows(2) {
        let (real, app) = (w[1].0 - w[0].0, w[1].1.saturating_sub(w[0].1));
        if real >= app {
            bail!(
                "a slot took {:.1} s of real time, longer than the {:.0} s it stands for",
                real as f64 / 1e9,
                app as f64 / 1e9
            );
        }
    }
    let frac_ns = if pcap.nanos { 1 } else { 1000 };
    for r in pcap.records.iter_mut() {
        let t = u64::from(r.ts_sec) * 1_000_000_000 + u64::from(r.ts_frac) * frac_ns;
        let i = marks
            .partition_point(|(real, _)| *real <= t)
            .saturating_sub(1);
        let (real, app) = marks[i];
        let t = app + t.saturating_sub(real);
        r.ts_sec = (t / 1_000_000_000) as u32;
        r.ts_frac = (t % 1_000_000_000 / 1000) as u32;
    }
    pcap.nanos = false;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn preflight() -> Result<()> {
    require_root()?;
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("tcpdump", "tcpdump"),
        ("setpriv", "util-linux"),
        ("/usr/bin/python3", "python3"),
        ("mariadbd", "mariadb-server"),
        ("mariadb-install-db", "mariadb-server"),
        ("mariadb", "mariadb-client"),
        ("mariadb-admin", "mariadb-client"),
    ] {
        require_tool(tool, pkg)?;
    }
    pg_find_bin().map(|_| ())
}

const MALICIOUS_LIST: &str = "\
# Known-bad addresses and networks (scenario corpus). One address or CIDR per line.
45.155.205.0/24     # example bulletproof hoster
198.18.0.66         # (benchmarking range, unused by the scenarios)
";

const TOR_LIST: &str = "\
# Tor exit nodes (scenario corpus). One address per line.
185.220.101.7
185.220.101.8
2001:db8:7::1
";

const INSTANCES: &str = r#"{
  "198.51.100.10": {"dbInstanceIdentifier": "orders-pg-1", "dbClusterIdentifier": "orders",
                    "engine": "postgres", "engineVersion": "15",
                    "dbInstanceArn": "arn:aws:rds:eu-west-1:123456789012:db:orders-pg-1",
                    "tags": {"team": "orders", "env": "prod"}},
  "2001:db8:100::10": {"dbInstanceIdentifier": "orders-pg-1", "dbClusterIdentifier": "orders",
                    "engine": "postgres", "engineVersion": "15",
                    "dbInstanceArn": "arn:aws:rds:eu-west-1:123456789012:db:orders-pg-1",
                    "tags": {"team": "orders", "env": "prod"}},
  "198.51.100.11": {"dbInstanceIdentifier": "billing-mariadb-1", "engine": "mariadb",
                    "engineVersion": "10.11", "tags": {"team": "billing", "env": "prod"}}
}
"#;

fn labels(benign_slots: u64) -> serde_json::Value {
    use serde_json::json;
    let attack = |a: Attack, file: String, start_s: u64| {
        let (expect, sev) = a.expect();
        json!({
            "file": file,
            "kind": "attack",
            "attacks": [a.name()],
            "description": a.description(),
            "starts_at_s": start_s,
            "expect": expect,
            "severity": sev.iter().map(|(t, s)| json!({"type": t, "at_least": s})).collect::<Vec<_>>(),
            "also": a.also().iter().map(|(t, why)| json!({"type": t, "why": why})).collect::<Vec<_>>(),
        })
    };
    let mut scenarios = vec![json!({
        "file": "benign.pcap",
        "kind": "benign",
        "description": format!(
            "{benign_slots} slots of 5 minutes ({} h) of normal business: orders-api pool (2 connections on 3 hosts, one IPv6), billing on MariaDB, health checks, reporting every 15 min, the DBA hourly with an occasional typo",
            benign_slots as f64 * SLOT_S as f64 / 3600.0
        ),
        "expect": [],
        "also": [],
    })];
    let alone_at = benign_slots * SLOT_S + 1800;
    for a in Attack::ALL {
        scenarios.push(attack(a, a.file(), alone_at));
    }
    let mut expect: Vec<&str> = Vec::new();
    let mut also: Vec<serde_json::Value> = Vec::new();
    let mut sev = Vec::new();
    for a in MIXED_ATTACKS.iter().map(|(_, a)| *a) {
        let (e, s) = a.expect();
        for t in e {
            if !expect.contains(t) {
                expect.push(t);
            }
        }
        for (t, l) in s {
            sev.push(json!({"type": t, "at_least": l}));
        }
        for (t, why) in a.also() {
            if !also.iter().any(|v| v["type"] == *t) {
                also.push(json!({"type": t, "why": why}));
            }
        }
    }
    also.retain(|v| !expect.iter().any(|e| v["type"] == *e));
    scenarios.push(json!({
        "file": "mixed.pcap",
        "kind": "mixed",
        "attacks": MIXED_ATTACKS.iter().map(|(_, a)| a.name()).collect::<Vec<_>>(),
        "description": "one more hour of the benign workload with the attacks mixed in, one every few slots",
        "starts_at_s": benign_slots * SLOT_S,
        "expect": expect,
        "severity": sev,
        "also": also,
    }));
    json!({
        "t0": T0,
        "t0_rfc3339": "2025-03-06T08:00:00Z",
        "slot_s": SLOT_S,
        "how_to_score": "analyze benign.pcap with a fresh --baseline and the options below; then each other file with a copy of the baseline it left. A finding whose type is neither in `expect` nor in `also` is a false positive; benign.pcap must yield none.",
        "options": {
            "learning_period_s": LEARNING_S,
            "allowed_cidrs": ["198.51.100.0/24", "2001:db8:100::/64"],
            "malicious_ips": "malicious-ips.txt",
            "tor_exits": "tor-exits.txt",
            "instance_map": "instances.json",
            "public_addresses": [BRUTE, SYN_SCANNER, TOR_EXIT, MALICIOUS, MALICIOUS2],
        },
        "scenarios": scenarios,
    })
}

/// The attacks of mixed.pcap and the slot (of its twelve) each starts in.
const MIXED_ATTACKS: &[(u64, Attack)] = &[
    (1, Attack::Spray),
    (3, Attack::BruteForce),
    (4, Attack::Scan),
    (6, Attack::Exfiltration),
    (7, Attack::PrivilegeDrift),
    (9, Attack::Tor),
    (10, Attack::Malicious),
];

fn readme(sizes: &[(String, u64)], benign_slots: u64) -> String {
    let mut s = String::from(
        "# Detection scenarios\n\n\
         Recorded by `cargo xtask scenarios` (xtask/src/scenarios.rs) from real PostgreSQL 15 and MariaDB\n\
         servers in network namespaces; scored by `sensor-user/tests/detection_scenarios.rs`.\n\
         `labels.json` says which findings each file must yield (`expect`), which others it may\n\
         (`also`, with the reason) and the options to analyze with.\n\n\
         Time is compressed: the benign workload was recorded in slots standing for 5 minutes of\n\
         application time each, and the timestamps rewritten so that slot N starts at\n\
         2025-03-06T08:00:00Z + N × 5 min. The scorer learns the first two hours of `benign.pcap`\n\
         (--learning-period 7200), checks that its third hour yields nothing, then analyzes every\n\
         other file with a copy of the baseline.\n\n\
         Instances: `orders-pg-1` (PostgreSQL, 198.51.100.10 and 2001:db8:100::10) and\n\
         `billing-mariadb-1` (MariaDB, 198.51.100.11). Allowed client networks: 198.51.100.0/24,\n\
         2001:db8:100::/64. 89.160.20.0/24, 185.220.101.7 (Tor list) and 45.155.205.0/24\n\
         (malicious list) are public addresses that existed only inside the recording namespace.\n\n\
         | file | bytes | what |\n|---|---|---|\n",
    );
    let what = |f: &str| -> String {
        if f == "benign.pcap" {
            return format!(
                "{benign_slots} slots ({} h) of the benign workload",
                benign_slots * SLOT_S / 3600
            );
        }
        if f == "mixed.pcap" {
            return "an hour of the benign workload with every attack mixed in".into();
        }
        Attack::ALL
            .iter()
            .find(|a| a.file() == f)
            .map_or_else(String::new, |a| a.description().to_string())
    };
    for (f, n) in sizes {
        s.push_str(&format!("| `{f}` | {n} | {} |\n", what(f)));
    }
    s
}

pub fn run(args: &ScenariosArgs) -> Result<()> {
    netlab::set_log_tag("scenarios");
    let started = Instant::now();
    preflight().context("step `preflight`")?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::root().join("pcaps/scenarios"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut tmp = TempDir::fresh(std::env::temp_dir().join("rds-sensor-scenarios"))?;
    tmp.keep = args.keep_tmp;
    let raw = tmp.path.join("raw");
    fs::create_dir_all(&raw)?;
    let benign_slots = u64::from(args.benign_slots.max(1));
    let mut recorded: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
    {
        let net = Network::create(&LAB).context("step `network`")?;
        let pg = Pg::start(&tmp.path).context("step `postgres`")?;
        let _my = My::start(&tmp.path).context("step `mariadb`")?;
        let mut rec = Rec {
            net,
            pg,
            rng: Rng(0x5eed),
            marks: Vec::new(),
        };
        let mut capture = |name: &str,
                           rec: &mut Rec,
                           body: &mut dyn FnMut(&mut Rec) -> Result<()>|
         -> Result<()> {
            say(format!("== recording {name} =="));
            rec.marks.clear();
            let cap = Capture::start(&rec.net, &raw.join(name), CAPTURE_FILTER)?;
            body(rec).with_context(|| format!("recording {name}"))?;
            cap.finish()?;
            recorded.push((name.to_string(), std::mem::take(&mut rec.marks)));
            Ok(())
        };
        capture("benign.pcap", &mut rec, &mut |rec| {
            for slot in 0..benign_slots {
                rec.mark(slot * SLOT_S);
                rec.benign_slot(slot)?;
                if slot % 6 == 5 {
                    say(format!("  {} of {benign_slots} slots", slot + 1));
                }
            }
            Ok(())
        })?;
        let alone_at = benign_slots * SLOT_S + 1800;
        for a in Attack::ALL {
            capture(&a.file(), &mut rec, &mut |rec| {
                rec.mark(alone_at);
                rec.attack(a)
            })?;
        }
        capture("mixed.pcap", &mut rec, &mut |rec| {
            for i in 0..12 {
                let slot = benign_slots + i;
                rec.mark(slot * SLOT_S);
                rec.benign_slot(slot)?;
                for (_, a) in MIXED_ATTACKS.iter().filter(|(at, _)| *at == i) {
                    rec.mark(slot * SLOT_S + 120);
                    rec.attack(*a)?;
                }
            }
            Ok(())
        })?;
        say("stopping servers, removing network namespaces");
    }

    say(format!("== writing {} ==", out.display()));
    let mut sizes = Vec::new();
    for (name, marks) in &recorded {
        let mut pcap = pcapfmt::read(&raw.join(name))?;
        if pcap.records.is_empty() {
            bail!("{name}: tcpdump captured nothing");
        }
        retime(&mut pcap, marks).with_context(|| format!("retiming {name}"))?;
        let path = out.join(name);
        pcapfmt::write(&path, &pcap)?;
        let n = fs::metadata(&path)?.len();
        say(format!(
            "wrote {name}: {} packets, {n} bytes",
            pcap.records.len()
        ));
        sizes.push((name.clone(), n));
    }
    for (f, text) in [
        ("malicious-ips.txt", MALICIOUS_LIST.to_string()),
        ("tor-exits.txt", TOR_LIST.to_string()),
        ("instances.json", INSTANCES.to_string()),
        (
            "labels.json",
            serde_json::to_string_pretty(&labels(benign_slots))? + "\n",
        ),
        ("README.md", readme(&sizes, benign_slots)),
    ] {
        fs::write(out.join(f), text).with_context(|| format!("writing {f}"))?;
    }
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    say(format!(
        "done in {:.0?}: {} captures, {:.1} MB",
        started.elapsed(),
        sizes.len(),
        total as f64 / 1e6
    ));
    Ok(())
}
