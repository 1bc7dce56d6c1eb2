//! What each attacker does, against the lab's servers: the traffic of every [`Attack`].

use super::lab::{
    APP1, APP2, APP3, BRUTE, CRM_APP, MALICIOUS, MALICIOUS2, MSSQL_BRUTE, MY_ADDR, PG_ADDR,
    REPORTING, SCANNER, SPRAYER, SYN_SCANNER, TOR_EXIT, probe, run_all, run1,
};
use super::labels::Attack;
use super::servers::{MSSQL_PASSWORD, MY_PASSWORD, My, PASSWORD};
use super::workload::Rec;
use crate::dbserver::{MY_PORT, PG_PORT};
use crate::netlab::{Expect, say};
use anyhow::{Result, bail};

/// The wrong passwords nmap tries for `sa` (after `sa` itself), before the right one.
const MSSQL_WORDLIST: &[&str] = &[
    "123456",
    "password",
    "admin",
    "P@ssw0rd",
    "Password1",
    "sqlserver",
    "Welcome1",
    "Summer2024!",
    "Passw0rd!",
    "Sql2019!",
];

impl Rec {
    pub(super) fn attack(&mut self, a: Attack) -> Result<()> {
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
            Attack::MssqlBruteForce => {
                // The instance's usual client first, so the attacker stands out.
                self.net.client_source(CRM_APP)?;
                run1(
                    "mssql: crm_app logs in (tsql)",
                    self.mssql.tsql("crm_app", MSSQL_PASSWORD, "crm")?,
                    Some(
                        "SELECT id, name FROM accounts WHERE id < 4\ngo\n\
                         UPDATE accounts SET last_seen = GETDATE() WHERE id = 2\ngo\nexit\n"
                            .into(),
                    ),
                    Expect::Any(&["(3 rows affected)"]),
                )?;
                self.net.client_source(MSSQL_BRUTE)?;
                let mut passwords = MSSQL_WORDLIST.to_vec();
                passwords.push(MSSQL_PASSWORD);
                run1(
                    "mssql: nmap ms-sql-brute",
                    self.mssql.nmap_brute(&["sa"], &passwords)?,
                    None,
                    Expect::Ok,
                )?;
                // nmap 7.93 prints no result for a host-script instance (its output table has
                // string keys, counted as empty): the listener's log says what happened.
                let (logins, failed) = self.mssql.logins_from(MSSQL_BRUTE);
                let want = MSSQL_WORDLIST.len() + 1;
                say(format!(
                    "  nmap: {logins} LOGIN7 from {MSSQL_BRUTE}, {failed} answered 18456"
                ));
                if logins != want + 1 || failed != want {
                    bail!(
                        "nmap ms-sql-brute: expected {} logins, {want} failing; \
                         the listener saw {logins}, {failed} failing",
                        want + 1
                    );
                }
                Ok(())
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
