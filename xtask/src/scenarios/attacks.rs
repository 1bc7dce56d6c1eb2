//! What each attacker does, against the lab's servers: the traffic of every [`Attack`].

use super::lab::{
    APP1, APP2, APP3, BRUTE, BRUTE_USERS, CRM_APP, MALICIOUS, MALICIOUS2, MSSQL_BRUTE, MY_ADDR,
    PG_ADDR, REPORTING, SCANNER, SPRAYER, SPRAYER_EARLY, SYN_SCANNER, TOR_EXIT, probe, run_all,
    run1,
};
use super::labels::Attack;
use super::servers::{MSSQL_PASSWORD, MY_PASSWORD, My, PASSWORD};
use super::workload::Rec;
use crate::dbserver::{MY_PORT, PG_PORT};
use crate::netlab::{self, Expect, say};
use anyhow::{Result, bail};
use std::process::Command;

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

/// The wrong passwords medusa tries for each user of the brute force across users.
const MY_WORDLIST: &[&str] = &["123456", "password", "toor"];
/// The weak password of the root@'%' account the brute force across users finds.
const MY_ROOT_PASSWORD: &str = "Mariadb2025";
/// The users the early spray tries, in order; the third, billing_app, has the sprayed password.
const SPRAY_EARLY_USERS: &[&str] = &[
    "root",
    "admin",
    "billing_app",
    "backup",
    "reporting",
    "dba",
    "app_orders",
];

/// Runs medusa and returns its (ACCOUNT CHECK, ACCOUNT FOUND) lines.
fn medusa(step: &str, mut cmd: Command) -> Result<(Vec<String>, Vec<String>)> {
    let out = netlab::run(step, &mut cmd, None, Expect::Any(&[]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = |what: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(what))
            .map(str::to_string)
            .collect()
    };
    Ok((lines("ACCOUNT CHECK:"), lines("ACCOUNT FOUND:")))
}

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
            Attack::BruteForceUsers => {
                // No account for hosts outside the application network: MariaDB refuses the
                // attacker before the greeting (1130). (MariaDB 10.11 keeps the old '%' among
                // the hosts allowed to connect until the privileges are reloaded.)
                self.my.root_sql(
                    "brute force across users: billing_app limited to 198.51.100.%",
                    "RENAME USER 'billing_app'@'%' TO 'billing_app'@'198.51.100.%';\n\
                     FLUSH PRIVILEGES;\n",
                )?;
                self.net.client_source(BRUTE_USERS)?;
                for _ in 0..2 {
                    run1(
                        "brute force across users: host not allowed",
                        My::client("root", "root", None),
                        Some("SELECT 1;\n".into()),
                        Expect::Fails(&["ERROR 1130", "is not allowed to connect"]),
                    )?;
                }
                // billing_app back on '%'; a remote root with a weak password.
                self.my.root_sql(
                    "brute force across users: root@'%' with a weak password",
                    &format!(
                        "RENAME USER 'billing_app'@'198.51.100.%' TO 'billing_app'@'%';\n\
                         CREATE USER 'root'@'%' IDENTIFIED VIA mysql_native_password \
                         USING PASSWORD('{MY_ROOT_PASSWORD}');\n\
                         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%';\nFLUSH PRIVILEGES;\n"
                    ),
                )?;
                let mut combos: Vec<(&str, &str)> = Vec::new();
                for user in ["root_nope", "root"] {
                    combos.extend(MY_WORDLIST.iter().map(|p| (user, *p)));
                }
                combos.push(("root", MY_ROOT_PASSWORD));
                let (checks, found) = medusa(
                    "brute force across users: medusa",
                    self.my.medusa(&combos, true)?,
                )?;
                self.my.root_sql(
                    "brute force across users: drop root@'%'",
                    "DROP USER 'root'@'%';\nFLUSH PRIVILEGES;\n",
                )?;
                say(format!(
                    "  medusa: {} logins, found: {found:?}",
                    checks.len()
                ));
                if checks.len() != combos.len()
                    || found.len() != 1
                    || !found[0].contains(&format!("User: root Password: {MY_ROOT_PASSWORD}"))
                {
                    bail!(
                        "medusa: expected {} logins, the last as root succeeding; got {checks:?}, found {found:?}",
                        combos.len()
                    );
                }
                Ok(())
            }
            Attack::SprayEarly => {
                self.net.client_source(SPRAYER_EARLY)?;
                let combos: Vec<(&str, &str)> = SPRAY_EARLY_USERS
                    .iter()
                    .map(|u| (*u, MY_PASSWORD))
                    .collect();
                let (checks, found) =
                    medusa("early spray: medusa", self.my.medusa(&combos, false)?)?;
                say(format!(
                    "  medusa: {} logins, found: {found:?}",
                    checks.len()
                ));
                if checks.len() != combos.len()
                    || found.len() != 1
                    || !found[0].contains("User: billing_app ")
                    || !checks[2].contains("User: billing_app ")
                {
                    bail!(
                        "medusa: expected {} logins, the third (billing_app) succeeding; got {checks:?}, found {found:?}",
                        combos.len()
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
