//! The two database servers (see `crate::dbserver`) with the applications' roles, users and
//! tables, the SQL Server instance (the TDS listener of `crate::pcaps::tds`), and the client
//! commands that talk to them from the client namespace.

use super::lab::{CLI_NS, MSSQL_ADDR, MY_ADDR, PG_ADDR, PG_V6, SRV_NS};
use crate::dbserver::{MY_PORT, MyConfig, MyServer, PG_PORT, PgConfig, PgServer};
use crate::netlab::{in_ns, say};
use crate::pcaps::tds::{Listener, Mode, TDS_PASSWORD, TDS_PORT, TsqlServer};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) const PASSWORD: &str = "Orders-Pw-2025!";
pub(super) const MY_PASSWORD: &str = "Billing-Pw-2025!";

/// `orders-pg-1`: the server (see `crate::dbserver`) with the orders application's roles and
/// tables.
pub(super) struct Pg {
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
    pub(super) fn start(tmp: &Path) -> Result<Self> {
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
    pub(super) fn psql(&self, host: &str, user: &str, password: &str, app: &str) -> Command {
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
pub(super) struct My {
    server: MyServer,
    dir: PathBuf,
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
    pub(super) fn start(tmp: &Path) -> Result<Self> {
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
        let dir = tmp.join("medusa");
        fs::create_dir_all(&dir)?;
        Ok(Self { server, dir })
    }

    /// SQL as root over the Unix socket (never captured): an attack's account changes.
    pub(super) fn root_sql(&self, step: &str, sql: &str) -> Result<()> {
        self.server.root_sql(step, sql)
    }

    /// medusa's `mysql` module from the client namespace, one login at a time (`-t 1`, so the
    /// order holds), each on its own connection: every (user, password) of `combos` in order
    /// (a combo file), stopping at the first that logs in if `stop_at_first`.
    pub(super) fn medusa(&self, combos: &[(&str, &str)], stop_at_first: bool) -> Result<Command> {
        let file = self.dir.join("combos.txt");
        let text: String = combos
            .iter()
            .map(|(u, p)| format!("{MY_ADDR}:{u}:{p}\n"))
            .collect();
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let mut c = MyServer::client(CLI_NS, "medusa");
        c.args(["-M", "mysql", "-n", &MY_PORT.to_string(), "-t", "1", "-C"])
            .arg(&file);
        if stop_at_first {
            c.arg("-f");
        }
        Ok(c)
    }

    /// A `mariadb` session from the client namespace running the script on its stdin.
    pub(super) fn client(user: &str, password: &str, db: Option<&str>) -> Command {
        let mut c = MyServer::mariadb(CLI_NS, MY_ADDR, user, password, db, false);
        c.arg("--force");
        c
    }
}

/// `crm-sqlserver-1`: the TDS listener of `crate::pcaps::tds` in plaintext mode (PRELOGIN answered
/// ENCRYPT_NOT_SUP; LOGIN7 answered LOGINACK for [`MSSQL_PASSWORD`], whatever the user, or ERROR
/// 18456), on `MSSQL_ADDR:1433`.
pub(super) struct Mssql {
    listener: Listener,
    dir: PathBuf,
}

/// The password the SQL Server instance accepts (the listener's; a canary).
pub(super) const MSSQL_PASSWORD: &str = TDS_PASSWORD;

impl Mssql {
    pub(super) fn start(tmp: &Path) -> Result<Self> {
        let dir = tmp.join("mssql");
        fs::create_dir_all(&dir)?;
        let listener = Listener::start_in(&dir, SRV_NS, MSSQL_ADDR, Mode::Plain, None, None)?;
        say(format!(
            "mssql: crm-sqlserver-1, the TDS listener on {MSSQL_ADDR}:{TDS_PORT}"
        ));
        Ok(Self { listener, dir })
    }

    /// A `tsql` (FreeTDS, TDS 7.4, no encryption) session from the client namespace running the
    /// batches on its stdin (`go` after each).
    pub(super) fn tsql(&self, user: &str, password: &str, db: &str) -> Result<Command> {
        TsqlServer {
            name: "crm",
            host: MSSQL_ADDR,
            encryption: "off",
        }
        .command(&self.dir.join("freetds.conf"), user, password, db)
    }

    /// nmap's `ms-sql-brute` from the client namespace: every user of `users`, first with its
    /// own name as the password, then each of `passwords`, until one logs in. The script is a
    /// host script here (`mssql.instance-port`, the port not scanned): nmap 7.93's port-rule path
    /// fails before its first login (`GetTargetInstances` unpacks one return value as two).
    pub(super) fn nmap_brute(&self, users: &[&str], passwords: &[&str]) -> Result<Command> {
        let (udb, pdb) = (self.dir.join("users.txt"), self.dir.join("passwords.txt"));
        fs::write(&udb, users.join("\n") + "\n")?;
        fs::write(&pdb, passwords.join("\n") + "\n")?;
        let mut c = in_ns(CLI_NS, "nmap");
        c.args([
            "-n",
            "-Pn",
            "-sn",
            "--script",
            "ms-sql-brute",
            "--script-args",
        ])
        .arg(format!(
            "mssql.instance-port={TDS_PORT},userdb={},passdb={}",
            udb.display(),
            pdb.display()
        ))
        .arg(MSSQL_ADDR);
        Ok(c)
    }

    /// The logins the listener answered for clients at `src`: (LOGIN7 messages, 18456 failures).
    pub(super) fn logins_from(&self, src: &str) -> (usize, usize) {
        let log = self.listener.log();
        let from = |what: &str| {
            log.lines()
                .filter(|l| l.starts_with(&format!("{src}:")) && l.contains(what))
                .count()
        };
        (from("LOGIN7 user"), from("login failed (18456)"))
    }
}
