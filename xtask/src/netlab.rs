//! The network lab both capture recorders run in (`cargo xtask pcaps`, `cargo xtask scenarios`):
//! two network namespaces joined by a veth pair (database servers in one, clients and tcpdump in
//! the other), plus the process plumbing around it (running and checking commands, daemons,
//! tcpdump captures, temp dirs).
//!
//! Everything that creates state on the machine returns a guard whose `Drop` undoes it, so an
//! error anywhere (or a panic) still removes namespaces, stops servers and deletes temp dirs.

use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

static LOG_TAG: OnceLock<&'static str> = OnceLock::new();

/// Sets the `[tag]` in front of every log line (the recorder's name); once, at start-up.
pub fn set_log_tag(tag: &'static str) {
    let _ = LOG_TAG.set(tag);
}

fn log_tag() -> &'static str {
    LOG_TAG.get().copied().unwrap_or("xtask")
}

pub fn say(msg: impl std::fmt::Display) {
    // Never panics (println! does on a closed pipe): `say` runs inside Drop guards, and a panic
    // there while unwinding would abort and leave servers and namespaces behind.
    let _ = writeln!(std::io::stdout(), "[{}] {msg}", log_tag());
}

/// Like `say`, on stderr.
pub fn warn(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "[{}] warning: {msg}", log_tag());
}

/// Shell-like rendering of a command, for logs and error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for part in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        let p = part.to_string_lossy();
        if !s.is_empty() {
            s.push(' ');
        }
        if p.is_empty() || p.contains(|c: char| c.is_whitespace() || "'\"$;|&<>()\\*!".contains(c))
        {
            s.push('\'');
            s.push_str(&p.replace('\'', r"'\''"));
            s.push('\'');
        } else {
            s.push_str(&p);
        }
    }
    if s.len() > 300 {
        let mut cut = 300;
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

pub fn file_tail(path: &Path, lines: usize) -> String {
    fs::read(path)
        .map(|b| tail(&b, lines))
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

/// What a client command is expected to do.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Exit 0.
    Ok,
    /// Exit non-zero with every one of these strings in its stdout+stderr.
    Fails(&'static [&'static str]),
    /// Any exit status, with every one of these strings in its stdout+stderr.
    Any(&'static [&'static str]),
}

/// Runs `cmd` to completion (feeding `stdin` if given) and checks the outcome against `expect`.
pub fn run(step: &str, cmd: &mut Command, stdin: Option<&[u8]>, expect: Expect) -> Result<Output> {
    let shown = describe(cmd);
    let out = if let Some(input) = stdin {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("step `{step}`: cannot start `{shown}`"))?;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        let writer = thread::spawn(move || pipe.write_all(&input));
        let out = child
            .wait_with_output()
            .with_context(|| format!("step `{step}`: waiting for `{shown}`"))?;
        // A client that exits early (e.g. on a failed login) closes its stdin: not an error here.
        let _ = writer.join();
        out
    } else {
        cmd.output()
            .with_context(|| format!("step `{step}`: cannot start `{shown}`"))?
    };
    check(step, &shown, &out, expect)?;
    Ok(out)
}

/// Checks the outcome of `shown` (a command line, see [`describe`]) against `expect`.
pub fn check(step: &str, shown: &str, out: &Output, expect: Expect) -> Result<()> {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let problem = match expect {
        Expect::Ok if !out.status.success() => Some("it failed".to_string()),
        Expect::Fails(_) if out.status.success() => {
            Some("it succeeded but a failure was expected".to_string())
        }
        Expect::Fails(needles) | Expect::Any(needles) => needles
            .iter()
            .find(|n| !text.contains(**n))
            .map(|n| format!("its output lacks the expected `{n}`")),
        Expect::Ok => None,
    };
    if let Some(problem) = problem {
        bail!(
            "step `{step}`: `{shown}` exited with {}: {problem}\n--- stderr (tail) ---\n{}\n--- stdout (tail) ---\n{}",
            out.status,
            tail(&out.stderr, 15),
            tail(&out.stdout, 10)
        );
    }
    Ok(())
}

/// Runs `cmd`, which must exit 0, and returns its trimmed stdout.
pub fn stdout_of(step: &str, cmd: &mut Command) -> Result<String> {
    let out = run(step, cmd, None, Expect::Ok)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `ip netns exec NS PROGRAM`.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// `ip ARGS`, which must succeed.
pub fn ip(step: &str, args: &[&str]) -> Result<()> {
    run(step, Command::new("ip").args(args), None, Expect::Ok).map(|_| ())
}

/// Sends `sig` (a name: INT, TERM, KILL) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// A temp directory removed on drop (unless `keep` is set).
pub struct TempDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl TempDir {
    /// Creates a fresh directory at `path`, removing what a crashed earlier run left there.
    pub fn fresh(path: PathBuf) -> Result<Self> {
        if path.exists() {
            say(format!("removing stale temp dir {}", path.display()));
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        fs::create_dir_all(&path)
            .with_context(|| format!("creating temp dir {}", path.display()))?;
        Ok(Self { path, keep: false })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            say(format!("keeping temp dir {}", self.path.display()));
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            warn(format!("cannot remove {}: {e}", self.path.display()));
        }
    }
}

/// Layout of a lab network: names of the namespaces and veth ends, and the addresses on each side.
/// A client address in the server's /24 gets a /24 (on-link), any other (the "internet" ones) a
/// /32; the server namespace routes everything back over the veth.
pub struct NetSpec {
    /// Network namespace the database servers run in.
    pub srv_ns: &'static str,
    /// Network namespace the clients (and tcpdump) run in.
    pub cli_ns: &'static str,
    /// veth end inside the server namespace.
    pub srv_if: &'static str,
    /// veth end inside the client namespace; tcpdump captures here.
    pub cli_if: &'static str,
    /// Fixed MAC addresses (server, client) of the veth ends; `None`: the kernel picks.
    pub macs: Option<(&'static str, &'static str)>,
    /// Server IPv4 addresses; the first one's /24 is the on-link client network.
    pub srv_v4: &'static [&'static str],
    pub srv_v6: &'static str,
    /// Client IPv4 addresses, all on the client veth.
    pub cli_v4: &'static [&'static str],
    pub cli_v6: &'static str,
}

/// The two namespaces and the veth pair between them; deleting the namespaces deletes the veths.
pub struct Network {
    pub spec: &'static NetSpec,
    made: Vec<&'static str>,
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Removes namespaces a crashed earlier run of this tool left behind, killing (by pid) the
/// processes that still run inside them.
fn remove_stale_netns(name: &str) -> Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    say(format!(
        "removing stale network namespace {name} from an earlier run"
    ));
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for pid in String::from_utf8_lossy(&pids)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        say(format!("  killing leftover process {pid} in {name}"));
        signal(pid, "KILL");
    }
    thread::sleep(Duration::from_millis(300));
    ip("remove stale netns", &["netns", "del", name])
}

/// The /24 network part (`a.b.c.`) of an IPv4 address.
fn net24(addr: &str) -> &str {
    addr.rfind('.').map_or(addr, |i| &addr[..=i])
}

impl Network {
    pub fn create(spec: &'static NetSpec) -> Result<Self> {
        let NetSpec {
            srv_ns,
            cli_ns,
            srv_if,
            cli_if,
            ..
        } = *spec;
        remove_stale_netns(srv_ns)?;
        remove_stale_netns(cli_ns)?;
        let mut net = Self {
            spec,
            made: Vec::new(),
        };
        for ns in [srv_ns, cli_ns] {
            ip("create netns", &["netns", "add", ns])?;
            net.made.push(ns);
            ip("bring up loopback", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (srv_mac, cli_mac) = match spec.macs {
            Some((s, c)) => (vec!["address", s], vec!["address", c]),
            None => (vec![], vec![]),
        };
        let mut veth = vec!["link", "add", srv_if];
        veth.extend(&srv_mac);
        veth.extend(["netns", srv_ns, "type", "veth", "peer", "name", cli_if]);
        veth.extend(&cli_mac);
        veth.extend(["netns", cli_ns]);
        ip("create veth pair", &veth)?;
        let step = "configure veths";
        for (ns, dev) in [(srv_ns, srv_if), (cli_ns, cli_if)] {
            // gso_max_segs 1: no TSO/GSO super-packets, so the capture holds MTU-sized segments
            // as a real NIC puts them on the wire.
            ip(
                step,
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
            ip(step, &["-n", ns, "link", "set", dev, "up"])?;
        }
        let add = |ns: &str, dev: &str, addr: String, nodad: bool| {
            let mut args = vec!["-n", ns, "addr", "add", &addr, "dev", dev];
            if nodad {
                args.push("nodad");
            }
            ip(step, &args)
        };
        for a in spec.srv_v4 {
            add(srv_ns, srv_if, format!("{a}/24"), false)?;
        }
        add(srv_ns, srv_if, format!("{}/64", spec.srv_v6), true)?;
        // Replies to off-link clients (the "internet" addresses) go back over the veth too.
        ip(
            step,
            &["-n", srv_ns, "route", "add", "default", "dev", srv_if],
        )?;
        let lan = net24(spec.srv_v4[0]);
        for a in spec.cli_v4 {
            let len = if net24(a) == lan { 24 } else { 32 };
            add(cli_ns, cli_if, format!("{a}/{len}"), false)?;
        }
        add(cli_ns, cli_if, format!("{}/64", spec.cli_v6), true)?;
        say(format!(
            "network: netns {srv_ns} ({srv_if} {}, {}) <-veth-> netns {cli_ns} ({cli_if} {}, {})",
            spec.srv_v4.join(", "),
            spec.srv_v6,
            spec.cli_v4.join(", "),
            spec.cli_v6
        ));
        Ok(net)
    }

    /// Makes the next IPv4 connections from the client namespace to the servers use source
    /// address `src` (a host route with a preferred source; libpq and libmariadb cannot bind).
    pub fn client_source(&self, src: &str) -> Result<()> {
        for dst in self.spec.srv_v4 {
            ip(
                "select client source address",
                &[
                    "-n",
                    self.spec.cli_ns,
                    "route",
                    "replace",
                    &format!("{dst}/32"),
                    "dev",
                    self.spec.cli_if,
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
            let st = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            if !matches!(st, Ok(s) if s.success()) {
                warn(format!("cannot delete netns {ns}"));
            }
        }
    }
}

/// A long-running server process, stopped with `stop_signal` (then SIGKILL) on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    stop_signal: &'static str,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<Self> {
        let f = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        say(format!("starting {name}: {}", describe(&cmd)));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: `{}`", describe(&cmd)))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            stop_signal,
            log: log.to_path_buf(),
        })
    }

    /// Fails (with the log tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(st)) = child.try_wait()
        {
            self.child = None;
            bail!(
                "{} exited early with {st}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                file_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// Polls `ready` until it returns true (server ready) or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if ready() {
                say(format!("{} is ready", self.name));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    file_tail(&self.log, 20)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        say(format!("stopping {} (pid {})", self.name, child.id()));
        signal(child.id(), self.stop_signal);
        if wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
            warn(format!("{} did not stop, killing it", self.name));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tcpdump reported packets dropped by the kernel: the capture is incomplete (worth a retry).
#[derive(Debug)]
pub struct Dropped(pub u64);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step `stop tcpdump`: the kernel dropped {} packets; the capture is incomplete",
            self.0
        )
    }
}

impl std::error::Error for Dropped {}

/// A running tcpdump writing a classic pcap file.
pub struct Capture {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
    pub path: PathBuf,
}

impl Capture {
    /// Starts tcpdump on the client veth of `net`, capturing what `filter` (a pcap filter)
    /// selects, and waits until it is listening.
    pub fn start(net: &Network, path: &Path, filter: &str) -> Result<Self> {
        let (cli_ns, cli_if) = (net.spec.cli_ns, net.spec.cli_if);
        let mut cmd = in_ns(cli_ns, "tcpdump");
        // --immediate-mode: hand over every packet at once; with the default buffer timeout the
        // packets of the last second are still in the ring when SIGINT stops tcpdump.
        // -Z root: Debian's tcpdump otherwise drops to user `tcpdump`, who cannot write here.
        // -B 65536: a 64 MiB ring, so a burst (the large results) is never dropped.
        let opts = [
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
        ];
        cmd.args(["-i", cli_if])
            .args(opts)
            .arg(path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let shown = describe(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("step `start tcpdump`: `{shown}`"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cap = Self {
            child: Some(child),
            lines: rx,
            reader: Some(reader),
            path: path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cap.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(l) => say(format!("tcpdump: {l}")),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!(
                    "step `start tcpdump`: `{shown}` did not report `listening on` (exited or timed out)"
                ),
            }
        }
        say(format!(
            "tcpdump capturing on {cli_ns}/{cli_if} into {}",
            path.display()
        ));
        Ok(cap)
    }

    /// Stops tcpdump with SIGINT, waits for it to flush, and returns the packet count.
    pub fn finish(mut self) -> Result<u64> {
        // Let the last FIN/ACKs of the sessions reach the capture.
        thread::sleep(Duration::from_millis(500));
        let mut child = self.child.take().expect("capture still running");
        signal(child.id(), "INT");
        let st = wait_timeout(&mut child, Duration::from_secs(10)).ok_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            anyhow!("step `stop tcpdump`: tcpdump did not exit after SIGINT")
        })?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines: Vec<String> = self.lines.try_iter().collect();
        let count = |what: &str| {
            lines
                .iter()
                .find(|l| l.ends_with(what))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        };
        let captured = count("packets captured").ok_or_else(|| {
            anyhow!("step `stop tcpdump`: exit {st}, no packet count in its output: {lines:?}")
        })?;
        if let Some(d) = count("packets dropped by kernel")
            && d > 0
        {
            return Err(Dropped(d).into());
        }
        say(format!(
            "tcpdump stopped: {captured} packets in {}",
            self.path.display()
        ));
        Ok(captured)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            if wait_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Numeric uid and gid of a local user (`id -u`, `id -g`).
pub fn user_ids(user: &str) -> Result<(u32, u32)> {
    let uid = stdout_of("look up user", Command::new("id").args(["-u", user]))?;
    let gid = stdout_of("look up user", Command::new("id").args(["-g", user]))?;
    Ok((uid.parse()?, gid.parse()?))
}

/// Fails unless this runs as root (network namespaces, tcpdump, servers need it).
pub fn require_root() -> Result<()> {
    let uid = stdout_of("preflight", Command::new("id").arg("-u"))?;
    if uid != "0" {
        bail!(
            "step `preflight`: must run as root (network namespaces, tcpdump, servers); uid is {uid}"
        );
    }
    Ok(())
}

/// Fails unless `program` can be found on PATH (or is an existing path).
pub fn require_tool(program: &str, package: &str) -> Result<()> {
    let found = if program.contains('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    };
    if !found {
        bail!(
            "step `preflight`: `{program}` not found; install it with `apt-get install -y {package}`"
        );
    }
    Ok(())
}
