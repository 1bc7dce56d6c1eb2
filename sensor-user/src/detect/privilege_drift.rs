//! Privilege drift: a user running a statement class it never ran while learning
//! (`PrivilegeEscalation:RDS/AnomalousBehavior.PrivilegeDrift`), High for schema and privilege
//! changes and file or program access, which an attacker with stolen credentials reaches for
//! (SQL Server's among them: `xp_cmdshell`, `sp_addsrvrolemember`, `CREATE/ALTER LOGIN`,
//! `OPENROWSET`, `BULK INSERT`).

use super::context::QueryCtx;
use super::finding::Evidence;
use super::{Detector, Finding, FindingType, Severity};

/// The statement class privilege drift compares: the verb, the object kind for DDL
/// (`DROP TABLE`, `CREATE ROLE`, `ALTER SYSTEM`), and the dangerous variants of reads and
/// copies (`COPY PROGRAM`, `SELECT INTO OUTFILE`, `SELECT FILE ACCESS`, `SET ROLE`).
pub fn statement_class(verb: &str, fingerprint: &str) -> String {
    let fp = fingerprint.to_ascii_lowercase();
    let words: Vec<&str> = fp
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let verb = if verb.is_empty() {
        words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default()
    } else {
        verb.to_ascii_uppercase()
    };
    let has = |w: &str| words.contains(&w);
    match verb.as_str() {
        "COPY" => {
            if has("program") {
                "COPY PROGRAM".into()
            } else {
                // Only the top level says the direction: `COPY (SELECT … FROM t) TO STDOUT`.
                let mut depth = 0i32;
                let top: String = fp
                    .chars()
                    .filter(|c| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0 && *c != ')'
                    })
                    .collect();
                if top.split_whitespace().any(|w| w == "to") {
                    "COPY TO".into()
                } else {
                    "COPY FROM".into()
                }
            }
        }
        "CREATE" | "ALTER" | "DROP" => {
            const SKIP: &[&str] = &[
                "or",
                "replace",
                "unique",
                "global",
                "local",
                "unlogged",
                "if",
                "not",
                "exists",
                "definer",
                "algorithm",
                "undefined",
                "merge",
                "sql",
                "security",
                "invoker",
                "recursive",
                "trusted",
                "procedural",
                "concurrently",
                "current_user",
            ];
            let mut temp = false;
            let object = words
                .iter()
                .skip(1)
                .find(|w| {
                    if matches!(**w, "temp" | "temporary") {
                        temp = true;
                        return false;
                    }
                    !SKIP.contains(w)
                })
                .map(|w| w.to_ascii_uppercase());
            match object {
                Some(o) if temp => format!("{verb} TEMP {o}"),
                Some(o) => format!("{verb} {o}"),
                None => verb,
            }
        }
        "SELECT" => {
            if words
                .windows(2)
                .any(|w| w[0] == "into" && matches!(w[1], "outfile" | "dumpfile"))
            {
                "SELECT INTO OUTFILE".into()
            } else if words
                .iter()
                .any(|w| matches!(*w, "openrowset" | "opendatasource"))
            {
                // T-SQL's ad hoc remote and file reads (`OPENROWSET(BULK 'c:\…')`).
                "SELECT OPENROWSET".into()
            } else if words.iter().any(|w| {
                matches!(
                    *w,
                    "pg_read_file"
                        | "pg_read_binary_file"
                        | "pg_ls_dir"
                        | "lo_import"
                        | "lo_export"
                        | "load_file"
                )
            }) {
                "SELECT FILE ACCESS".into()
            } else {
                verb
            }
        }
        "LOAD" => "LOAD DATA".into(),
        // T-SQL: a procedure call is its own class when the procedure reaches the operating
        // system or hands out server roles; other calls are one class.
        "EXEC" | "EXECUTE" => match words.iter().skip(1).find(|w| TSQL_PROCS.contains(w)) {
            Some(p) => format!("EXEC {}", p.to_ascii_uppercase()),
            None => verb,
        },
        // T-SQL's `BULK INSERT … FROM 'file'` reads a file on the server.
        "BULK" => "BULK INSERT".into(),
        "SET" => {
            if words.get(1) == Some(&"role")
                || (words.get(1) == Some(&"session") && words.get(2) == Some(&"authorization"))
            {
                "SET ROLE".into()
            } else {
                verb
            }
        }
        _ => verb,
    }
}

/// SQL Server procedures that run programs, change server configuration or hand out
/// roles and logins (GuardDuty's and the CIS benchmark's lists of what an intruder reaches
/// for).
const TSQL_PROCS: &[&str] = &[
    "xp_cmdshell",
    "sp_configure",
    "sp_addsrvrolemember",
    "sp_addrolemember",
    "sp_addlogin",
    "sp_grantlogin",
    "sp_password",
    "sp_oacreate",
    "sp_oamethod",
    "xp_regwrite",
    "xp_dirtree",
    "sp_execute_external_script",
    "sp_addlinkedserver",
];

/// Whether a user's first use of a class is privilege drift: not for statements that need no
/// privilege beyond the session's, which a dump (pg_dump, mariadb-dump) runs as a matter of
/// course. `COPY … TO` reads (how much, data staging judges); table locks keep the snapshot
/// consistent (`LOCK TABLE`, MariaDB's `LOCK TABLES` / `UNLOCK TABLES`); transaction control,
/// prepared-statement plumbing and session settings (a plain `SET`: `SET ROLE` is a class of
/// its own, and drifts) change no privilege.
pub fn drifts(class: &str) -> bool {
    !matches!(
        class,
        "COPY TO"
            | "LOCK"
            | "UNLOCK"
            | "BEGIN"
            | "START"
            | "COMMIT"
            | "ROLLBACK"
            | "END"
            | "SAVEPOINT"
            | "RELEASE"
            | "PREPARE"
            | "EXECUTE"
            | "DEALLOCATE"
            | "SET"
            | "RESET"
            | "SHOW"
            | "DISCARD"
    )
}

/// Statement classes whose first use by a user is High: schema and privilege changes, file and
/// program access.
pub fn is_dangerous_class(class: &str) -> bool {
    const HIGH: &[&str] = &[
        "DROP",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COPY PROGRAM",
        "SELECT INTO OUTFILE",
        "SELECT FILE ACCESS",
        "LOAD DATA",
        "SET ROLE",
        "CREATE ROLE",
        "CREATE USER",
        "ALTER ROLE",
        "ALTER USER",
        "ALTER SYSTEM",
        "CREATE EXTENSION",
        "CREATE FUNCTION",
        "CREATE PROCEDURE",
        "CREATE LOGIN",
        "ALTER LOGIN",
        "ALTER SERVER",
        "BULK INSERT",
        "SELECT OPENROWSET",
        "EXEC XP_CMDSHELL",
        "EXEC SP_CONFIGURE",
        "EXEC SP_ADDSRVROLEMEMBER",
        "EXEC SP_ADDROLEMEMBER",
        "EXEC SP_ADDLOGIN",
        "EXEC SP_GRANTLOGIN",
        "EXEC SP_PASSWORD",
        "EXEC SP_OACREATE",
        "EXEC SP_OAMETHOD",
        "EXEC XP_REGWRITE",
        "EXEC XP_DIRTREE",
        "EXEC SP_EXECUTE_EXTERNAL_SCRIPT",
        "EXEC SP_ADDLINKEDSERVER",
    ];
    HIGH.iter()
        .any(|h| class == *h || class.starts_with(&format!("{h} ")))
}

impl Detector {
    pub(super) fn privilege_drift(&mut self, c: &QueryCtx, out: &mut Vec<Finding>) {
        let QueryCtx {
            q,
            ip,
            ref user,
            ref class,
            ref id,
            ..
        } = *c;
        let k = FindingType::PrivilegeDrift;
        let sev = if is_dangerous_class(class) {
            Severity::High
        } else {
            Severity::Medium
        };
        let desc = format!(
            "{user} ran {class} on {id} from {ip}{}, a statement class it never ran while learning.",
            q.error_code
                .as_deref()
                .map(|c| format!(" (refused: error {c})"))
                .unwrap_or_default()
        );
        self.report(
            out,
            c.who(),
            k,
            sev,
            format!("{user} ran {class} for the first time on RDS DB instance {id}"),
            desc,
            Evidence {
                statement_classes: vec![class.clone()],
                fingerprints: vec![q.fingerprint.clone()],
                queries: Some(1),
                error_codes: q.error_code.iter().cloned().collect(),
                ..Evidence::default()
            },
        );
    }
}
