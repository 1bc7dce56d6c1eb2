//! `--only iam`: AWS IAM database authentication tokens on the wire. The tokens are real: made
//! by botocore's `generate_db_auth_token` (the SDK's presigner, offline, with the AWS
//! documentation's example credentials), and sent by real clients inside TLS with key logs:
//! pg8000 as a cleartext PasswordMessage, PyMySQL through `mysql_clear_password`, which
//! MariaDB's PAM plugin asks for as RDS's AWSAuthenticationPlugin does.
//!
//! No server here can check a token. PostgreSQL accepts one when it was set as the role's
//! password beforehand (over the Unix socket, not captured), as RDS accepts a valid token; any
//! other token it refuses (28P01). MariaDB's PAM service denies everything (1045).

use super::my::My;
use super::pg::Pg;
use super::tlskeys::{self, Session, Suite};
use super::{CLI_V4, PASSWORD, PYTHON};
use crate::netlab::{Expect, Network, say};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The RDS endpoints the tokens are signed for (a token names the endpoint it connects to).
pub const PG_ENDPOINT: &str = "orders-pg-1.c9akciq32.us-east-1.rds.amazonaws.com";
pub const MY_ENDPOINT: &str = "billing-mariadb-1.c9akciq32.us-east-1.rds.amazonaws.com";
/// The region of the tokens' credential scope.
pub const REGION: &str = "us-east-1";
/// How long before its use the expired token was signed (RDS tokens live 900 s).
pub const EXPIRED_AGE_S: u64 = 1200;
/// The user that logs in with tokens on both servers.
pub const IAM_USER: &str = "u_iam";
/// The PAM service MariaDB's `u_iam` authenticates through (`/etc/pam.d/<this>`).
const PAM_SERVICE: &str = "rds-sensor-iam-lab";

/// A token from botocore, signed `age_s` seconds ago, with a session token if `session`.
pub fn token(endpoint: &str, port: u16, age_s: u64, session: bool) -> Result<String> {
    let out = Command::new(PYTHON)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ENDPOINT", endpoint)
        .env("PORT", port.to_string())
        .env("DB_USER", IAM_USER)
        .env("REGION", REGION)
        .env("AGE_S", age_s.to_string())
        .env("SESSION", if session { "1" } else { "" })
        .args(["-c", PY_TOKEN])
        .output()
        .context("running botocore's generate_db_auth_token")?;
    anyhow::ensure!(
        out.status.success(),
        "generate_db_auth_token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(
        t.contains("X-Amz-Signature=") && t.starts_with(endpoint),
        "generate_db_auth_token gave no token: {t}"
    );
    Ok(t)
}

/// botocore's presigner; `AGE_S` moves its clock back (botocore.auth reads
/// `datetime.datetime.utcnow()`), which is how a token signed earlier is made.
const PY_TOKEN: &str = r#"
import datetime, os
import botocore.auth, botocore.session

env = os.environ
age = int(env["AGE_S"])
if age:
    real = datetime.datetime
    class Past(real):
        @classmethod
        def utcnow(cls):
            return real.utcnow() - datetime.timedelta(seconds=age)
    botocore.auth.datetime.datetime = Past
s = botocore.session.get_session()
# The AWS documentation's example access key: the token is well formed, and no account's.
s.set_credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                  "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENforDocumentationOnly" * 12 if env["SESSION"] else None)
c = s.create_client("rds", region_name=env["REGION"])
print(c.generate_db_auth_token(env["ENDPOINT"], int(env["PORT"]), env["DB_USER"]))
"#;

/// A session of `IAM_USER` from `src`, TLS 1.3, key log `keylog`.
fn session<'a>(
    label: &'a str,
    src: &'a str,
    password: &'a str,
    keylog: &'a Path,
    queries: &'a [String],
    login_error: Option<&'a str>,
) -> Session<'a> {
    Session {
        label,
        src,
        suite: Suite::Tls13Default,
        user: IAM_USER,
        password,
        keylog,
        queries,
        login_error,
        expect: Expect::Ok,
    }
}

/// Starts a fresh key log (a repeated recording starts again).
fn fresh(path: PathBuf) -> Result<PathBuf> {
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    Ok(path)
}

/// pg-iam: two tokens the server accepts (one with a session token), a fresh token it does not
/// hold, an expired one, then — 3 s later, so a learning period can end between — the static
/// password, from another address, which it accepts.
pub fn pg(pg: &Pg, net: &Network, raw_dir: &Path, tmp: &Path) -> Result<()> {
    let keylog = fresh(raw_dir.join("pg-iam.keys"))?;
    let port = crate::dbserver::PG_PORT;
    let count = vec!["SELECT count(*) FROM items".to_string()];
    let set = |pw: &str| {
        pg.admin_sql(
            "pg-iam: set u_iam's password (Unix socket, not captured)",
            "postgres",
            &format!("ALTER ROLE {IAM_USER} PASSWORD '{pw}';"),
        )
    };
    let accepted = token(PG_ENDPOINT, port, 0, false)?;
    set(&accepted)?;
    tlskeys::run_session(
        "pg-iam",
        net,
        super::pg::PY_PG,
        &session(
            "IAM token, accepted",
            CLI_V4[0],
            &accepted,
            &keylog,
            &count,
            None,
        ),
        tmp,
    )?;
    let with_session = token(PG_ENDPOINT, port, 0, true)?;
    set(&with_session)?;
    tlskeys::run_session(
        "pg-iam",
        net,
        super::pg::PY_PG,
        &session(
            "IAM token with a session token, accepted",
            CLI_V4[0],
            &with_session,
            &keylog,
            &count,
            None,
        ),
        tmp,
    )?;
    let unknown = token(PG_ENDPOINT, port, 5, false)?;
    tlskeys::run_session(
        "pg-iam",
        net,
        super::pg::PY_PG,
        &session(
            "IAM token the server does not hold, refused",
            CLI_V4[1],
            &unknown,
            &keylog,
            &[],
            Some("28P01"),
        ),
        tmp,
    )?;
    let expired = token(PG_ENDPOINT, port, EXPIRED_AGE_S, false)?;
    tlskeys::run_session(
        "pg-iam",
        net,
        super::pg::PY_PG,
        &session(
            "IAM token signed 20 minutes ago (expired), refused",
            CLI_V4[1],
            &expired,
            &keylog,
            &[],
            Some("28P01"),
        ),
        tmp,
    )?;
    say("  (3 s pause: a learning period can end here)");
    std::thread::sleep(std::time::Duration::from_secs(3));
    set(PASSWORD)?;
    tlskeys::run_session(
        "pg-iam",
        net,
        super::pg::PY_PG,
        &session(
            "static password, accepted",
            CLI_V4[2],
            PASSWORD,
            &keylog,
            &count,
            None,
        ),
        tmp,
    )
}

/// `/etc/pam.d/<PAM_SERVICE>` denying every password, removed on drop.
pub struct PamService(PathBuf);

impl PamService {
    pub fn install() -> Result<Self> {
        let path = Path::new("/etc/pam.d").join(PAM_SERVICE);
        say(format!("pam: {} (denies every password)", path.display()));
        std::fs::write(
            &path,
            "# rds-sensor capture lab (cargo xtask pcaps --only iam); removed afterwards\n\
             auth required pam_deny.so\naccount required pam_permit.so\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The MariaDB user the MySQL sessions log in as, through PAM (cleartext plugin, TLS required).
pub fn my_user_sql() -> String {
    format!(
        "CREATE USER '{IAM_USER}'@'%' IDENTIFIED VIA pam USING '{PAM_SERVICE}' REQUIRE SSL;\n\
         GRANT SELECT ON appdb.* TO '{IAM_USER}'@'%';\n"
    )
}

/// mysql-iam: MariaDB asks PyMySQL for the cleartext plugin; a fresh token, an expired one and
/// the static password are each refused by PAM (1045).
pub fn my(my: &My, net: &Network, raw_dir: &Path, tmp: &Path) -> Result<()> {
    let keylog = fresh(raw_dir.join("mysql-iam.keys"))?;
    let _pam = PamService::install()?;
    my.root_sql("mysql-iam: user u_iam via PAM", &my_user_sql())?;
    let port = crate::dbserver::MY_PORT;
    let fresh_token = token(MY_ENDPOINT, port, 0, false)?;
    let expired = token(MY_ENDPOINT, port, EXPIRED_AGE_S, false)?;
    for (label, src, pw) in [
        ("IAM token, refused by PAM", CLI_V4[0], fresh_token.as_str()),
        (
            "IAM token signed 20 minutes ago (expired), refused",
            CLI_V4[1],
            expired.as_str(),
        ),
        ("static password, refused by PAM", CLI_V4[2], PASSWORD),
    ] {
        tlskeys::run_session(
            "mysql-iam",
            net,
            super::my::PY_MY,
            &session(label, src, pw, &keylog, &[], Some("1045")),
            tmp,
        )?;
    }
    Ok(())
}
