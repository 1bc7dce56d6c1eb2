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
        let q = queues.max(1).to_string();
        ip(&[
            "link",
            "add",
            &outside,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns.name,
        ])?;
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
