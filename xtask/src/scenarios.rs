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

use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
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
const SRV_IF: &str = "rdsscn-s";
const CLI_IF: &str = "rdsscn-c";
const PG_ADDR: &str = "198.51.100.10";
const MY_ADDR: &str = "198.51.100.11";
const PG_V6: &str = "2001:db8:100::10";
const PG_PORT: u16 = 5432;
const MY_PORT: u16 = 3306;

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

const CLIENT_V4: &[&str] = &[
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
];

const PASSWORD: &str = "Orders-Pw-2025!";
const MY_PASSWORD: &str = "Billing-Pw-2025!";

/// 2025-03-06T08:00:00Z: application time of the first benign slot.
const T0: u64 = 1_741_248_000;
const SLOT_S: u64 = 300;
/// What the scorer passes as --learning-period.
const LEARNING_S: u64 = 7200;

fn say(msg: impl std::fmt::Display) {
    println!("[scenarios] {msg}");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Processes

fn describe(cmd: &Command) -> String {
    let mut s: String = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if s.len() > 240 {
        let mut cut = 240;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ...");
    }
    s
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a client command must do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    /// Exit non-zero with this text in its output.
    Fails(&'static str),
    /// Any exit status, with this text in its output.
    Says(&'static str),
}

/// A command, its stdin, and what it must do.
struct Job {
    step: String,
    cmd: Command,
    stdin: Option<String>,
    expect: Expect,
}

fn check(step: &str, shown: &str, out: &Output, expect: Expect) -> Result<()> {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let problem = match expect {
        Expect::Ok if !out.status.success() => Some("it failed".to_string()),
        Expect::Fails(_) if out.status.success() => Some("it succeeded".to_string()),
        Expect::Fails(n) | Expect::Says(n) if !text.contains(n) => {
            Some(format!("its output lacks `{n}`"))
        }
        _ => None,
    };
    if let Some(p) = problem {
        bail!(
            "step `{step}`: `{shown}` exited with {}: {p}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            tail(&out.stderr, 12),
            tail(&out.stdout, 6)
        );
    }
    Ok(())
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

fn run1(step: &str, cmd: Command, stdin: Option<String>, expect: Expect) -> Result<()> {
    run_all(vec![Job {
        step: step.to_string(),
        cmd,
        stdin,
        expect,
    }])
}

fn ip(step: &str, args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    run1(step, c, None, Expect::Ok)
}

fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

fn require_tool(program: &str, package: &str) -> Result<()> {
    let found = if program.contains('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    };
    if !found {
        bail!("`{program}` not found; install it with `apt-get install -y {package}`");
    }
    Ok(())
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State guards: each undoes what it made when dropped, also on errors.

struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            say(format!("keeping {}", self.path.display()));
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

struct Network {
    made: Vec<&'static str>,
}

impl Network {
    fn create() -> Result<Self> {
        for ns in [SRV_NS, CLI_NS] {
            if Path::new("/run/netns").join(ns).exists() {
                say(format!("removing stale netns {ns}"));
                let pids = Command::new("ip")
                    .args(["netns", "pids", ns])
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                for pid in String::from_utf8_lossy(&pids)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                {
                    signal(pid, "KILL");
                }
                thread::sleep(Duration::from_millis(300));
                ip("remove stale netns", &["netns", "del", ns])?;
            }
        }
        let mut net = Self { made: Vec::new() };
        for ns in [SRV_NS, CLI_NS] {
            ip("create netns", &["netns", "add", ns])?;
            net.made.push(ns);
            ip("loopback up", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(
            "create veth pair",
            &[
                "link", "add", SRV_IF, "netns", SRV_NS, "type", "veth", "peer", "name", CLI_IF,
                "netns", CLI_NS,
            ],
        )?;
        for (ns, dev) in [(SRV_NS, SRV_IF), (CLI_NS, CLI_IF)] {
            // No GSO super-packets: MTU-sized segments as a NIC puts them on the wire.
            ip(
                "configure veth",
                &[
                    "-n",
                    ns,
                    "link",
                    "set",
                    dev,
                    "mtu",
                    "1500",
                    "gso_max_segs",
                    "1",
                    "gso_max_size",
                    "1500",
                ],
            )?;
            ip("veth up", &["-n", ns, "link", "set", dev, "up"])?;
        }
        let step = "server addresses";
        for a in [&format!("{PG_ADDR}/24"), &format!("{MY_ADDR}/24")] {
            ip(step, &["-n", SRV_NS, "addr", "add", a, "dev", SRV_IF])?;
        }
        ip(
            step,
            &[
                "-n",
                SRV_NS,
                "addr",
                "add",
                &format!("{PG_V6}/64"),
                "dev",
                SRV_IF,
                "nodad",
            ],
        )?;
        // Replies to the attackers' addresses go back over the veth (on-link).
        ip(
            step,
            &["-n", SRV_NS, "route", "add", "default", "dev", SRV_IF],
        )?;
        let step = "client addresses";
        for a in CLIENT_V4 {
            let len = if a.starts_with("198.51.100.") { 24 } else { 32 };
            ip(
                step,
                &[
                    "-n",
                    CLI_NS,
                    "addr",
                    "add",
                    &format!("{a}/{len}"),
                    "dev",
                    CLI_IF,
                ],
            )?;
        }
        ip(
            step,
            &[
                "-n",
                CLI_NS,
                "addr",
                "add",
                &format!("{APP_V6}/64"),
                "dev",
                CLI_IF,
                "nodad",
            ],
        )?;
        say(format!(
            "network: {SRV_NS} ({PG_ADDR}, {MY_ADDR}, {PG_V6}) <-veth-> {CLI_NS} ({} addresses, {APP_V6})",
            CLIENT_V4.len()
        ));
        Ok(net)
    }

    /// The next IPv4 connections from the client namespace to the servers use source `src`
    /// (libpq and the mariadb client cannot bind: a host route with a preferred source).
    fn source(&self, src: &str) -> Result<()> {
        for dst in [PG_ADDR, MY_ADDR] {
            ip(
                "select client source address",
                &[
                    "-n",
                    CLI_NS,
                    "route",
                    "replace",
                    &format!("{dst}/32"),
                    "dev",
                    CLI_IF,
                    "src",
                    src,
                ],
            )?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

struct Daemon {
    name: &'static str,
    child: Option<Child>,
    stop_signal: &'static str,
    log: PathBuf,
}

impl Daemon {
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<Self> {
        let f = fs::File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        say(format!("starting {name}"));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: `{}`", describe(&cmd)))?;
        Ok(Self {
            name,
            child: Some(child),
            stop_signal,
            log: log.to_path_buf(),
        })
    }

    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                bail!(
                    "{} exited with {st}; {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&fs::read(&self.log).unwrap_or_default(), 20)
                );
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after 60 s; see {}",
                    self.name,
                    self.log.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), self.stop_signal);
            if wait_timeout(&mut c, Duration::from_secs(20)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// tcpdump on the client veth.
struct Capture {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    path: PathBuf,
}

impl Capture {
    fn start(path: &Path) -> Result<Self> {
        let mut cmd = in_ns(CLI_NS, "tcpdump");
        cmd.args([
            "-i",
            CLI_IF,
            "-n",
            "-s",
            "0",
            "-U",
            "--immediate-mode",
            "-B",
            "65536",
            "-Z",
            "root",
            "-w",
        ])
        .arg(path)
        .arg("tcp and (port 5432 or port 3306 or port 1433 or port 1521)")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting tcpdump")?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let cap = Self {
            child: Some(child),
            lines: rx,
            path: path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cap.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("listening on") => return Ok(cap),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!("tcpdump did not start listening"),
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        thread::sleep(Duration::from_millis(500));
        let mut child = self.child.take().expect("running");
        signal(child.id(), "INT");
        wait_timeout(&mut child, Duration::from_secs(10))
            .ok_or_else(|| anyhow!("tcpdump did not exit after SIGINT"))?;
        thread::sleep(Duration::from_millis(100));
        let lines: Vec<String> = self.lines.try_iter().collect();
        if let Some(l) = lines
            .iter()
            .find(|l| l.ends_with("packets dropped by kernel"))
            && !l.starts_with("0 ")
        {
            bail!(
                "tcpdump: {l}: the capture {} is incomplete",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "INT");
            if wait_timeout(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

struct Pg {
    _daemon: Daemon,
    bin: PathBuf,
    sock: PathBuf,
}

fn pg_bin() -> Result<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql missing: `apt-get install -y postgresql-15`")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, b): &(u32, PathBuf)| b.join("postgres").is_file())
        .collect();
    v.sort();
    v.pop()
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow!("no PostgreSQL server: `apt-get install -y postgresql-15`"))
}

fn as_postgres(ns: Option<&str>, program: &Path) -> Command {
    let mut c = match ns {
        Some(ns) => in_ns(ns, "setpriv"),
        None => Command::new("setpriv"),
    };
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program);
    c
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
        let bin = pg_bin()?;
        let dir = tmp.join("pg");
        let (data, sock) = (dir.join("data"), dir.join("sock"));
        fs::create_dir_all(&sock)?;
        let id = |f: &str| -> Result<u32> {
            let o = Command::new("id").args([f, "postgres"]).output()?;
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .context("OS user `postgres` (from the postgresql package)")
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        for p in [&dir, &sock] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
        let mut initdb = as_postgres(None, &bin.join("initdb"));
        initdb
            .arg("-D")
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
        run1("postgres initdb", initdb, None, Expect::Ok)?;
        fs::write(data.join("pg_hba.conf"), PG_HBA)?;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        write!(
            f,
            "\nlisten_addresses = '{PG_ADDR},{PG_V6}'\nport = {PG_PORT}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 40\nshared_buffers = 16MB\n",
            sock.display()
        )?;
        let mut cmd = as_postgres(Some(SRV_NS), &bin.join("postgres"));
        cmd.arg("-D").arg(&data).current_dir(&dir);
        let mut daemon = Daemon::spawn("postgres", cmd, &dir.join("postgres.log"), "INT")?;
        let isready = bin.join("pg_isready");
        daemon.wait_ready(|| {
            Command::new(&isready)
                .arg("-h")
                .arg(&sock)
                .args(["-p", &PG_PORT.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success())
        })?;
        let pg = Self {
            _daemon: daemon,
            bin,
            sock,
        };
        pg.admin("postgres", &PG_SETUP.replace("@PW@", PASSWORD))?;
        pg.admin("appdb", PG_TABLES)?;
        say("postgres: orders-pg-1 with appdb (customers 8000 rows, orders 5000 rows)");
        Ok(pg)
    }

    /// psql as superuser over the Unix socket (never captured).
    fn admin(&self, db: &str, sql: &str) -> Result<()> {
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
        run1("postgres setup", c, Some(sql.to_string()), Expect::Ok)
    }

    /// A psql session from the client namespace running `script` (or nothing: `-c ''`).
    fn psql(&self, host: &str, user: &str, password: &str, app: &str) -> Command {
        let mut c = in_ns(CLI_NS, self.bin.join("psql"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGGSSENCMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSFILE", "/dev/null")
            .args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=0", "-d"])
            .arg(format!(
                "host={host} port={PG_PORT} user={user} dbname=appdb application_name={app}"
            ))
            .args(["-f", "-"]);
        c
    }
}

struct My {
    _daemon: Daemon,
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
        let dir = tmp.join("mysql");
        let (data, sock) = (dir.join("data"), dir.join("mysqld.sock"));
        fs::create_dir_all(&dir)?;
        let mut c = Command::new("mariadb-install-db");
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        run1("mariadb install-db", c, None, Expect::Ok)?;
        let mut cmd = in_ns(SRV_NS, "mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={MY_PORT}"))
            .arg(format!("--bind-address={MY_ADDR}"))
            .args([
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=40",
            ]);
        let mut daemon = Daemon::spawn("mariadbd", cmd, &dir.join("mariadbd.log"), "TERM")?;
        let s = sock.clone();
        daemon.wait_ready(|| {
            Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", s.display()))
                .args(["-uroot", "ping"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .arg("-uroot");
        run1(
            "mariadb setup",
            c,
            Some(MY_SETUP.replace("@PW@", MY_PASSWORD)),
            Expect::Ok,
        )?;
        say("mariadb: billing-mariadb-1 with billing.invoices (3000 rows)");
        Ok(Self { _daemon: daemon })
    }

    fn client(user: &str, password: &str, db: Option<&str>) -> Command {
        let mut c = in_ns(CLI_NS, "mariadb");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("--no-defaults")
            .args([
                "--protocol=TCP",
                "-h",
                MY_ADDR,
                "-P",
                &MY_PORT.to_string(),
                "-u",
                user,
            ])
            .arg(format!("--password={password}"))
            .args(["--skip-ssl", "--batch", "--force", "--connect-timeout=10"]);
        if let Some(db) = db {
            c.args(["-D", db]);
        }
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
    let mut c = in_ns(CLI_NS, "/usr/bin/python3");
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
                self.net.source(host)?;
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
            self.net.source(host)?;
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
            self.net.source(REPORTING)?;
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
            self.net.source(BASTION)?;
            if slot % 24 == 7 {
                run_all(vec![self.pg_job(
                    "dba typo",
                    BASTION,
                    "dba",
                    "Orders-Pw-2024!",
                    "psql",
                    String::new(),
                    Expect::Fails("password authentication failed"),
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
                self.net.source(BRUTE)?;
                for i in 0..12 {
                    run_all(vec![self.pg_job(
                        "brute force: wrong password",
                        BRUTE,
                        "app_orders",
                        &format!("Summer{}!", 2010 + i),
                        "psql",
                        String::new(),
                        Expect::Fails("password authentication failed"),
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
                self.net.source(SPRAYER)?;
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
                        Expect::Fails("password authentication failed"),
                    )])?;
                }
                for user in ["root", "admin", "billing_app", "backup"] {
                    run1(
                        "spray (MariaDB)",
                        My::client(user, "Winter2025!", None),
                        Some("SELECT 1;\n".into()),
                        Expect::Fails("Access denied"),
                    )?;
                }
                Ok(())
            }
            Attack::Scan => {
                self.net.source(SCANNER)?;
                run_all(vec![
                    probe("connect", SCANNER, PG_ADDR, &[PG_PORT, 1433, 1521, PG_PORT]),
                    probe("connect", SCANNER, MY_ADDR, &[MY_PORT, 1433]),
                    probe("syn", SYN_SCANNER, PG_ADDR, &[PG_PORT, 3306]),
                    probe("syn", SYN_SCANNER, MY_ADDR, &[MY_PORT]),
                ])
            }
            Attack::Exfiltration => {
                // The application's own credentials and name, from an application host.
                self.net.source(APP2)?;
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
                self.net.source(APP1)?;
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
                self.net.source(APP3)?;
                let script = "SELECT id, amount, status FROM invoices WHERE id = 7;\n\
                    DELETE FROM invoices WHERE status = 'paid';\n\
                    DROP TABLE invoices;\n\
                    GRANT ALL ON billing.* TO 'billing_app'@'%';\n";
                run1(
                    "privilege drift (MariaDB)",
                    My::client("billing_app", MY_PASSWORD, Some("billing")),
                    Some(script.into()),
                    Expect::Says("command denied"),
                )
            }
            Attack::Tor => {
                self.net.source(TOR_EXIT)?;
                run_all(vec![probe("connect", TOR_EXIT, PG_ADDR, &[PG_PORT])])?;
                run_all(vec![self.pg_job(
                    "tor: wrong password",
                    TOR_EXIT,
                    "app_orders",
                    "orders",
                    "psql",
                    String::new(),
                    Expect::Fails("password authentication failed"),
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
                self.net.source(MALICIOUS)?;
                run_all(vec![self.pg_job(
                    "malicious: wrong password",
                    MALICIOUS,
                    "postgres",
                    "postgres",
                    "psql",
                    String::new(),
                    Expect::Fails("password authentication failed"),
                )])?;
                run1(
                    "malicious: wrong password (MariaDB)",
                    My::client("root", "root", None),
                    Some("SELECT 1;\n".into()),
                    Expect::Fails("Access denied"),
                )?;
                self.net.source(MALICIOUS2)?;
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
                self.net.source(REPORTING)?;
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
// pcap files: read tcpdump's, rewrite the timestamps, write plain Ethernet pcaps.

struct Packet {
    ts_ns: u64,
    orig_len: u32,
    data: Vec<u8>,
}

fn read_pcap(path: &Path) -> Result<(u32, Vec<Packet>)> {
    let buf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if buf.len() < 24 {
        bail!("{}: not a pcap file", path.display());
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into()?);
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        m if m.swap_bytes() == 0xa1b2_c3d4 => (false, false),
        m if m.swap_bytes() == 0xa1b2_3c4d => (false, true),
        m => bail!("{}: not a classic pcap (magic {m:#x})", path.display()),
    };
    let u32_at = |o: usize| {
        let b: [u8; 4] = buf[o..o + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20) & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= buf.len() {
        let (sec, frac, incl, orig) = (
            u32_at(off),
            u32_at(off + 4),
            u32_at(off + 8) as usize,
            u32_at(off + 12),
        );
        off += 16;
        if off + incl > buf.len() {
            bail!("{}: truncated record", path.display());
        }
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        out.push(Packet {
            ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            orig_len: orig,
            data: buf[off..off + incl].to_vec(),
        });
        off += incl;
    }
    Ok((linktype, out))
}

fn write_pcap(path: &Path, linktype: u32, packets: &[Packet]) -> Result<u64> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for p in packets {
        out.extend_from_slice(&((p.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((p.ts_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.orig_len.to_le_bytes());
        out.extend_from_slice(&p.data);
    }
    fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    Ok(out.len() as u64)
}

/// Moves each packet from real time to application time: the packets after mark (real R,
/// application A) get A + (t − R).
fn retime(packets: &mut [Packet], marks: &[(u64, u64)]) -> Result<()> {
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
    for p in packets.iter_mut() {
        let i = marks
            .partition_point(|(real, _)| *real <= p.ts_ns)
            .saturating_sub(1);
        let (real, app) = marks[i];
        p.ts_ns = app + p.ts_ns.saturating_sub(real);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn preflight() -> Result<()> {
    let o = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&o.stdout).trim() != "0" {
        bail!("must run as root (network namespaces, tcpdump, servers)");
    }
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
    pg_bin().map(|_| ())
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
    let started = Instant::now();
    preflight().context("step `preflight`")?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("pcaps/scenarios"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tmp_path = std::env::temp_dir().join("rds-sensor-scenarios");
    let _ = fs::remove_dir_all(&tmp_path);
    fs::create_dir_all(&tmp_path)?;
    let tmp = TempDir {
        path: tmp_path,
        keep: args.keep_tmp,
    };
    let raw = tmp.path.join("raw");
    fs::create_dir_all(&raw)?;
    let benign_slots = u64::from(args.benign_slots.max(1));
    let mut recorded: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
    {
        let net = Network::create().context("step `network`")?;
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
            let cap = Capture::start(&raw.join(name))?;
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
        let (linktype, mut packets) = read_pcap(&raw.join(name))?;
        if packets.is_empty() {
            bail!("{name}: tcpdump captured nothing");
        }
        retime(&mut packets, marks).with_context(|| format!("retiming {name}"))?;
        let n = write_pcap(&out.join(name), linktype, &packets)?;
        say(format!(
            "wrote {name}: {} packets, {n} bytes",
            packets.len()
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
