//! What the TLS key-log scenarios (pg-tls-keys, mysql-tls-keys) share: one Python client process
//! per session (pg8000 or PyMySQL) whose `ssl.SSLContext` appends the session's secrets to an NSS
//! key log file (`keylog_filename`), with the TLS version and cipher suite chosen per session and
//! checked against what the server reports.

use super::{CLI_NS, PYTHON, SRV_V4};
use crate::netlab::{Expect, Network, in_ns, run, say};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The TLS version and cipher suite a session negotiates.
#[derive(Clone, Copy, Debug)]
pub enum Suite {
    /// TLS 1.3 with the default suites of both sides: TLS_AES_256_GCM_SHA384.
    Tls13Default,
    /// TLS 1.3, the client offering only this suite (through `OPENSSL_CONF`: Python's `ssl`
    /// cannot set TLS 1.3 suites).
    Tls13(&'static str),
    /// TLS 1.2 at most (`maximum_version`), the client offering only this cipher (`set_ciphers`).
    Tls12(&'static str),
}

impl Suite {
    /// What the server reports (pg_stat_ssl version/cipher, MariaDB Ssl_version/Ssl_cipher):
    /// OpenSSL's names.
    pub fn want(self) -> (&'static str, &'static str) {
        match self {
            Suite::Tls13Default => ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
            Suite::Tls13(s) => ("TLSv1.3", s),
            Suite::Tls12(c) => ("TLSv1.2", c),
        }
    }
}

/// One client session.
pub struct Session<'a> {
    pub label: &'a str,
    /// Client IPv4 address (`Network::client_source`).
    pub src: &'a str,
    pub suite: Suite,
    pub user: &'a str,
    pub password: &'a str,
    /// The key log the session's secrets are appended to.
    pub keylog: &'a Path,
    /// Statements run after the TLS check, in order.
    pub queries: &'a [String],
    /// The error the login must fail with (SQLSTATE or MySQL error number); `None`: it must work.
    pub login_error: Option<&'a str>,
    /// What the client's output must hold (e.g. `error 22012` for a statement that must fail).
    pub expect: Expect,
}

/// `PYTHON` in the client namespace with a clean environment.
fn python() -> Command {
    let mut c = in_ns(CLI_NS, PYTHON);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// An OpenSSL configuration that limits the TLS 1.3 suites of every context the process creates
/// to `suites`; for `OPENSSL_CONF`.
fn openssl_conf_tls13(dir: &Path, suites: &str) -> Result<PathBuf> {
    let path = dir.join(format!("openssl-{}.cnf", suites.replace(':', "+")));
    std::fs::write(
        &path,
        format!(
            "openssl_conf = default_conf\n\n[default_conf]\nssl_conf = ssl_sect\n\n\
             [ssl_sect]\nsystem_default = sd\n\n[sd]\nCiphersuites = {suites}\n"
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `script` (after [`PY_COMMON`]; see `PY_PG` / `PY_MY`) for one session from `s.src`; `conf_dir` holds the
/// `OPENSSL_CONF` files.
pub fn run_session(
    scenario: &str,
    net: &Network,
    script: &str,
    s: &Session,
    conf_dir: &Path,
) -> Result<()> {
    let (version, cipher) = s.suite.want();
    say(format!(
        "  {}: {} from {} ({version} {cipher}, key log {})",
        s.label,
        s.user,
        s.src,
        s.keylog.file_name().unwrap_or_default().to_string_lossy()
    ));
    net.client_source(s.src)?;
    let mut c = python();
    c.env("DB_HOST", SRV_V4)
        .env("DB_USER", s.user)
        .env("DB_PASSWORD", s.password)
        .env("KEYLOG", s.keylog)
        .env("WANT_VERSION", version)
        .env("WANT_CIPHER", cipher)
        .env("QUERIES", s.queries.join("\n"))
        .env("LOGIN_ERROR", s.login_error.unwrap_or_default());
    match s.suite {
        Suite::Tls13Default => {}
        Suite::Tls13(suites) => {
            c.env("OPENSSL_CONF", openssl_conf_tls13(conf_dir, suites)?);
        }
        Suite::Tls12(ciphers) => {
            c.env("TLS12_CIPHERS", ciphers);
        }
    }
    c.arg("-c").arg(format!("{PY_COMMON}{script}"));
    let out = run(&format!("{scenario}: {}", s.label), &mut c, None, s.expect)?;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        say(format!("  ... {l}"));
    }
    Ok(())
}

/// The SSL context every key-log client builds (`KEYLOG`, `TLS12_CIPHERS`), and the check of the
/// TLS version and cipher the server reports (`WANT_VERSION`, `WANT_CIPHER`).
pub const PY_COMMON: &str = r#"
import os, ssl, sys

env = os.environ
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.keylog_filename = env["KEYLOG"]
if env.get("TLS12_CIPHERS"):
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(env["TLS12_CIPHERS"])
queries = [q for q in env["QUERIES"].split("\n") if q]

def check_tls(sock, server_version, server_cipher):
    want = (env["WANT_VERSION"], env["WANT_CIPHER"])
    print("client:", sock.version(), sock.cipher()[0], "/ server:", server_version, server_cipher)
    if (sock.version(), sock.cipher()[0]) != want or (server_version, server_cipher) != want:
        sys.exit("TLS mismatch: wanted %s %s" % want)

def show(q):
    return q if len(q) <= 70 else q[:67] + "..."
"#;
