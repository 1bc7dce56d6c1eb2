//! Private PostgreSQL and MariaDB servers for the capture recorders (`cargo xtask pcaps`,
//! `cargo xtask scenarios`): data dir under the recorder's temp dir, server in the lab's server
//! namespace, admin access over a Unix socket (never captured), clients in the client namespace.
//! What each recorder puts into the servers (users, tables, TLS) stays with the recorder.

use crate::netlab::{Daemon, Expect, in_ns, run, say, user_ids};
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const PG_PORT: u16 = 5432;
pub const MY_PORT: u16 = 3306;
/// How long a freshly started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The newest `/usr/lib/postgresql/N/bin` that has a server (and pgbench).
pub fn pg_find_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context(
            "step `preflight`: /usr/lib/postgresql missing; `apt-get install -y postgresql-15`",
        )?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| {
            bin.join("postgres").is_file() && bin.join("pgbench").is_file()
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "step `preflight`: no /usr/lib/postgresql/*/bin with postgres and pgbench; `apt-get install -y postgresql-15`"
        ),
    }
}

/// Runs a program as the `postgres` OS user (the server refuses to run as root), optionally
/// inside a network namespace. `ip netns exec` and `setpriv` both exec, so the child's pid is the
/// program's.
fn as_postgres(ns: Option<&str>, program: &Path) -> Command {
    let mut cmd = match ns {
        Some(ns) => in_ns(ns, "setpriv"),
        None => Command::new("setpriv"),
    };
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program);
    cmd
}

/// How to set up a PostgreSQL server.
pub struct PgConfig<'a> {
    /// Namespace the server runs in.
    pub ns: &'a str,
    /// Addresses it listens on (port [`PG_PORT`]).
    pub listen: &'a [&'a str],
    pub hba: &'a str,
    pub max_connections: u32,
    /// Extra `postgresql.conf` lines (`key = value\n`).
    pub extra_conf: &'a str,
    /// Files copied into the server dir `<tmp>/pg` as (source, name), owned by `postgres` with
    /// mode 0600 (TLS certificate and key).
    pub private_files: &'a [(&'a Path, &'a str)],
}

/// A PostgreSQL server in `<tmp>/pg`, stopped on drop.
pub struct PgServer {
    pub daemon: Daemon,
    pub bin: PathBuf,
    pub sock: PathBuf,
    pub dir: PathBuf,
}

impl PgServer {
    /// `<tmp>/pg`, the server dir `start` uses.
    pub fn dir(tmp: &Path) -> PathBuf {
        tmp.join("pg")
    }

    pub fn start(tmp: &Path, cfg: &PgConfig) -> Result<Self> {
        let bin = pg_find_bin()?;
        let dir = Self::dir(tmp);
        let (data, sock) = (dir.join("data"), dir.join("sock"));
        fs::create_dir_all(&sock)?;
        let (uid, gid) = user_ids("postgres")
            .context("step `postgres setup`: OS user `postgres` (from the postgresql package)")?;
        let mut owned = vec![dir.clone(), sock.clone()];
        for (src, name) in cfg.private_files {
            let to = dir.join(name);
            fs::copy(src, &to).with_context(|| format!("copying {}", src.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600))?;
            owned.push(to);
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        for p in &owned {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
        }

        say(format!("initdb {} ({})", data.display(), bin.display()));
        let mut initdb = as_postgres(None, &bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=reject",
            ])
            .current_dir(&dir);
        run("postgres initdb", &mut initdb, None, Expect::Ok)?;
        fs::write(data.join("pg_hba.conf"), cfg.hba)?;
        let conf = format!(
            "\n# added by cargo xtask\nlisten_addresses = '{}'\nport = {PG_PORT}\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = {}\nshared_buffers = 16MB\n{}",
            cfg.listen.join(","),
            sock.display(),
            cfg.max_connections,
            cfg.extra_conf
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(&mut f, conf.as_bytes())?;

        let mut cmd = as_postgres(Some(cfg.ns), &bin.join("postgres"));
        cmd.arg("-D").arg(&data).current_dir(&dir);
        let mut daemon = Daemon::spawn("postgres", cmd, &dir.join("postgres.log"), "INT")?;
        let isready = bin.join("pg_isready");
        daemon.wait_ready(READY_TIMEOUT, || {
            let st = Command::new(&isready)
                .arg("-h")
                .arg(&sock)
                .args(["-p", &PG_PORT.to_string(), "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            matches!(st, Ok(s) if s.success())
        })?;
        Ok(Self {
            daemon,
            bin,
            sock,
            dir,
        })
    }

    /// psql as superuser over the Unix socket (never captured).
    pub fn admin_sql(&self, step: &str, db: &str, sql: &str) -> Result<()> {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-p",
            &PG_PORT.to_string(),
            "-d",
            db,
            "-h",
        ])
        .arg(&self.sock)
        .args(["-f", "-"]);
        run(step, &mut c, Some(sql.as_bytes()), Expect::Ok).map(|_| ())
    }

    /// A client program (psql, pgbench) run in namespace `ns` with a clean libpq environment
    /// (TLS and GSS encryption off unless the connection string asks).
    pub fn client(&self, ns: &str, program: &str, password: &str) -> Command {
        let mut c = in_ns(ns, self.bin.join(program));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGGSSENCMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSFILE", "/dev/null");
        c
    }

    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// How to set up a MariaDB server.
pub struct MyConfig<'a> {
    /// Namespace the server runs in.
    pub ns: &'a str,
    /// Addresses it listens on (port [`MY_PORT`]).
    pub bind: &'a [&'a str],
    pub max_connections: u32,
    /// Extra `mariadbd` options (TLS, plugins).
    pub extra_args: &'a [String],
}

/// A MariaDB server in `<tmp>/mysql`, stopped on drop.
pub struct MyServer {
    pub daemon: Daemon,
    pub sock: PathBuf,
}

impl MyServer {
    pub fn start(tmp: &Path, cfg: &MyConfig) -> Result<Self> {
        let dir = tmp.join("mysql");
        let (data, sock) = (dir.join("data"), dir.join("mysqld.sock"));
        fs::create_dir_all(&dir)?;
        say(format!("mariadb-install-db {}", data.display()));
        let mut c = Command::new("mariadb-install-db");
        // --no-defaults must come first: ignore /etc/mysql so nothing touches the system server.
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        run("mariadb install-db", &mut c, None, Expect::Ok)?;

        let mut cmd = in_ns(cfg.ns, "mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={MY_PORT}"))
            .arg(format!("--bind-address={}", cfg.bind.join(",")))
            .args(cfg.extra_args)
            .args([
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
            ])
            .arg(format!("--max-connections={}", cfg.max_connections));
        let mut daemon = Daemon::spawn("mariadbd", cmd, &dir.join("mariadbd.log"), "TERM")?;
        daemon.wait_ready(READY_TIMEOUT, || {
            let st = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", sock.display()))
                .args(["-uroot", "ping"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            matches!(st, Ok(s) if s.success())
        })?;
        Ok(Self { daemon, sock })
    }

    /// `mariadb` as root over the Unix socket (never captured).
    pub fn root_sql(&self, step: &str, sql: &str) -> Result<()> {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.sock.display()))
            .arg("-uroot");
        run(step, &mut c, Some(sql.as_bytes()), Expect::Ok).map(|_| ())
    }

    /// A client program run in namespace `ns` with a clean environment.
    pub fn client(ns: &str, program: &str) -> Command {
        let mut c = in_ns(ns, program);
        c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    /// `mariadb` (the mysql command-line client) from namespace `ns` over TCP, TLS off unless
    /// `tls`.
    pub fn mariadb(
        ns: &str,
        host: &str,
        user: &str,
        password: &str,
        db: Option<&str>,
        tls: bool,
    ) -> Command {
        let mut c = Self::client(ns, "mariadb");
        c.arg("--no-defaults")
            .args([
                "--protocol=TCP",
                "-h",
                host,
                "-P",
                &MY_PORT.to_string(),
                "-u",
                user,
            ])
            .arg(format!("--password={password}"))
            .arg(if tls { "--ssl" } else { "--skip-ssl" })
            .args(["--batch", "--connect-timeout=10"]);
        if let Some(db) = db {
            c.args(["-D", db]);
        }
        c
    }

    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}
