//! Network namespaces and veth pairs for the demo and the tests, removed in `Drop` (also when
//! a test panics). Uses iproute2's `ip`, which every target machine has.

use anyhow::{Context, Result, bail};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the veth pair `a` – `b` with `queues` transmit and receive queues on each end (a
/// frame sent on queue `i` of one end arrives on receive queue `i` of the other), `b` in
/// namespace `ns` if one is given.
pub fn add_veth(a: &str, b: &str, queues: u16, ns: Option<&str>) -> Result<()> {
    let q = queues.max(1).to_string();
    let mut args = vec![
        "link",
        "add",
        a,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ];
    if let Some(ns) = ns {
        args.extend(["netns", ns]);
    }
    ip(&args)
}

/// Turns on threaded NAPI on `dev` and pins the newest `queues` NAPI threads (`napi/<dev>-<id>`,
/// cut to 15 characters) each to its own CPU, as a NIC's queues are by their interrupts'
/// affinity. `realtime`: SCHED_FIFO, as a NIC's NAPI runs in softirq, before any thread.
pub fn pin_napi_threads(dev: &str, queues: u16, realtime: bool) -> Result<()> {
    std::fs::write(format!("/sys/class/net/{dev}/threaded"), "1")
        .with_context(|| format!("turning on threaded NAPI on {dev}"))?;
    let want: String = format!("napi/{dev}-").chars().take(15).collect();
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&want))
        })
        .collect();
    pids.sort();
    if pids.len() < queues as usize {
        bail!("{dev} has {} NAPI threads, not {queues}", pids.len());
    }
    // The newest ones: a detached program's may still be going away.
    for (cpu, pid) in pids[pids.len() - queues as usize..].iter().enumerate() {
        // SAFETY: a zeroed cpu_set_t is valid, CPU_SET writes inside it, and the calls read
        // valid pointers to locals.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(*pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                bail!(
                    "pinning NAPI thread {pid} to CPU {cpu}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let param = libc::sched_param { sched_priority: 50 };
            if realtime && libc::sched_setscheduler(*pid, libc::SCHED_FIFO, &param) != 0 {
                bail!(
                    "making NAPI thread {pid} real-time: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(())
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])
            .with_context(|| format!("creating netns {name} (root needed)"))?;
        Ok(Self {
            name: name.to_string(),
        })
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A veth pair: `outside` in the current namespace (where the sensor attaches), `inside` in
/// `ns` (where frames are replayed from). Deleting either end deletes both.
pub struct VethPair {
    pub outside: String,
    pub inside: String,
    pub ns: Netns,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl VethPair {
    /// Creates a fresh namespace and pair with unique names (`tag` ≤ 4 characters).
    /// MTU 9000 on both ends: VXLAN-wrapped 1500-byte frames are 1550 bytes long.
    pub fn new(tag: &str) -> Result<Self> {
        Self::with_queues(tag, 1)
    }

    /// As [`VethPair::new`], with `queues` transmit and receive queues on each end: a frame
    /// sent on queue `i` of one end (chosen by the hash of its headers) arrives on receive
    /// queue `i` of the other, as RSS spreads a NIC's traffic.
    pub fn with_queues(tag: &str, queues: u16) -> Result<Self> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let ns = Netns::new(&format!("rds-{tag}-{id}"))?;
        let outside = format!("{tag}{id}o");
        let inside = format!("{tag}{id}i");
        if outside.len() > 15 {
            bail!("interface name {outside} too long");
        }
        add_veth(&outside, &inside, queues, Some(&ns.name))?;
        let pair = Self {
            outside,
            inside,
            ns,
        };
        ip(&["link", "set", &pair.outside, "mtu", "9000", "up"])?;
        ip(&[
            "-n",
            &pair.ns.name,
            "link",
            "set",
            &pair.inside,
            "mtu",
            "9000",
            "up",
        ])?;
        ip(&["-n", &pair.ns.name, "link", "set", "lo", "up"])?;
        Ok(pair)
    }

    /// Replays a capture into the pair from inside the namespace, so its frames arrive on
    /// `outside`. `pps`: packets per second, or as fast as possible with `None`.
    pub fn replay(&self, pcap: &std::path::Path, pps: Option<u32>) -> Result<()> {
        let mut c = self.ns.command("tcpreplay");
        c.args(["-q", "-i", &self.inside]);
        match pps {
            Some(p) => c.arg(format!("--pps={p}")),
            None => c.arg("--topspeed"),
        };
        c.arg(pcap);
        let out = c
            .output()
            .context("running tcpreplay (install tcpreplay)")?;
        if !out.status.success() {
            bail!(
                "tcpreplay {} failed: {}{}",
                pcap.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outside]);
    }
}
