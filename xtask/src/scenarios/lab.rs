//! The lab: two network namespaces joined by a veth pair, the servers' (and the SQL Server
//! listener's) and every client's addresses, what tcpdump records, the tools the recorder needs,
//! and running client commands in the client namespace.

use crate::dbserver::pg_find_bin;
use crate::netlab::{self, Expect, NetSpec, check, describe, require_root, require_tool};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread;

pub(super) const SRV_NS: &str = "rdsscn-srv";
pub(super) const CLI_NS: &str = "rdsscn-cli";
pub(super) const PG_ADDR: &str = "198.51.100.10";
pub(super) const MY_ADDR: &str = "198.51.100.11";
/// `crm-sqlserver-1`: the TDS listener of `crate::pcaps::tds` (no SQL Server runs on Debian).
pub(super) const MSSQL_ADDR: &str = "198.51.100.12";
pub(super) const PG_V6: &str = "2001:db8:100::10";

/// Application hosts (allowed networks).
pub(super) const APP1: &str = "198.51.100.20";
pub(super) const APP2: &str = "198.51.100.21";
pub(super) const APP3: &str = "198.51.100.22";
pub(super) const APP_V6: &str = "2001:db8:100::20";
pub(super) const REPORTING: &str = "198.51.100.30";
pub(super) const BASTION: &str = "198.51.100.40";
/// The CRM application, the SQL Server instance's only client.
pub(super) const CRM_APP: &str = "198.51.100.23";
/// The load balancer's TCP health check: connects and closes, every slot.
pub(super) const HEALTH: &str = "198.51.100.5";
/// Attackers.
pub(super) const SPRAYER: &str = "203.0.113.66";
pub(super) const SCANNER: &str = "203.0.113.77";
pub(super) const BRUTE: &str = "89.160.20.112";
pub(super) const SYN_SCANNER: &str = "89.160.20.129";
pub(super) const TOR_EXIT: &str = "185.220.101.7";
pub(super) const MALICIOUS: &str = "45.155.205.33";
pub(super) const MALICIOUS2: &str = "45.155.205.34";
/// nmap's ms-sql-brute against the SQL Server instance.
pub(super) const MSSQL_BRUTE: &str = "89.160.20.150";
/// medusa against MariaDB: a brute force across users (a missing one, then root).
pub(super) const BRUTE_USERS: &str = "89.160.20.113";
/// medusa against MariaDB: a spray whose third login succeeds.
pub(super) const SPRAYER_EARLY: &str = "203.0.113.67";

/// The lab network: every server in one namespace, every client address (application hosts on
/// the server's /24, attackers as /32 "internet" addresses) on the client veth.
pub(super) static LAB: NetSpec = NetSpec {
    srv_ns: SRV_NS,
    cli_ns: CLI_NS,
    srv_if: "rdsscn-s",
    cli_if: "rdsscn-c",
    macs: None,
    srv_v4: &[PG_ADDR, MY_ADDR, MSSQL_ADDR],
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
        CRM_APP,
        MSSQL_BRUTE,
        BRUTE_USERS,
        SPRAYER_EARLY,
    ],
    cli_v6: APP_V6,
};

/// What tcpdump records (the port scan also touches SQL Server and Oracle ports).
pub(super) const CAPTURE_FILTER: &str =
    "tcp and (port 5432 or port 3306 or port 1433 or port 1521)";

pub(super) fn preflight() -> Result<()> {
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
        ("tsql", "freetds-bin"),
        ("nmap", "nmap"),
        ("medusa", "medusa"),
    ] {
        require_tool(tool, pkg)?;
    }
    pg_find_bin().map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Client commands, run concurrently (a connection pool); one-shot commands use `netlab::run`.

/// A command, its stdin, and what it must do.
pub(super) struct Job {
    pub(super) step: String,
    pub(super) cmd: Command,
    pub(super) stdin: Option<String>,
    pub(super) expect: Expect,
}

/// Runs the jobs concurrently (a connection pool) and checks each.
pub(super) fn run_all(jobs: Vec<Job>) -> Result<()> {
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

pub(super) fn run1(
    step: &str,
    mut cmd: Command,
    stdin: Option<String>,
    expect: Expect,
) -> Result<()> {
    netlab::run(step, &mut cmd, stdin.as_deref().map(str::as_bytes), expect).map(|_| ())
}

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

pub(super) fn probe(mode: &str, src: &str, dst: &str, ports: &[u16]) -> Job {
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
