//! Live capture: load the XDP program, fill its maps, attach it, and read what it reports.

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use sensor_common::{
    Counters, FlowKey, FlowStats, MAX_RINGS, PortTable, SensorConfig, counter, names,
};

/// The XDP object, embedded at build time (see build.rs).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf.o"));

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) XDP, falling back to generic with a warning.
    Auto,
    /// Native XDP only.
    Native,
    /// Generic (SKB) XDP: works everywhere, slower.
    Generic,
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub ports: Vec<(u16, u8)>,
    pub config: SensorConfig,
    /// Ring buffer size in bytes (a power of two, at least a page), shared by the rings:
    /// each has the largest power of two within its share, at least a page.
    pub ring_bytes: u32,
    /// Event rings (1 to `MAX_RINGS`): CPU `c` writes to ring `c % rings`, and each ring has
    /// its own reader. `None`: one per CPU, up to `MAX_RINGS`.
    pub rings: Option<u16>,
    /// Capacity of the kernel flow table.
    pub flow_entries: u32,
    /// An eBPF object to load instead of the embedded one.
    pub object: Option<std::path::PathBuf>,
    /// Waiting bytes that force a reader wakeup (see `SensorConfig::wakeup_bytes`); `None`:
    /// an eighth of the ring; `Some(0)`: the ring buffer's own adaptive wakeups.
    pub wakeup_bytes: Option<u32>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            ports: sensor_common::DEFAULT_DB_PORTS.to_vec(),
            config: SensorConfig::default(),
            ring_bytes: 16 << 20,
            rings: None,
            flow_entries: 262_144,
            object: None,
            wakeup_bytes: None,
        }
    }
}

/// The loaded program and its maps.
pub struct Sensor {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    /// Which mode the program ended up attached in.
    pub attached: Option<(String, &'static str)>,
    attached_name: String,
    /// Event rings in use.
    pub rings: u16,
}

pub fn embedded_object() -> Option<&'static [u8]> {
    (!EBPF_OBJECT.is_empty()).then_some(EBPF_OBJECT)
}

impl Sensor {
    /// Loads the program into the kernel (not yet attached) and fills its maps.
    pub fn load(opts: &LiveOptions) -> Result<Self> {
        let owned;
        let object: &[u8] = match &opts.object {
            Some(path) => {
                owned = read_aligned(path)?;
                &owned
            }
            None => embedded_object().ok_or_else(|| {
                anyhow!(
                    "this rds-sensor was built without its XDP object; build it with \
                     `cargo xtask build` (or set RDS_SENSOR_EBPF_OBJ when building, or pass --ebpf-object)"
                )
            })?,
        };
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < 4096 {
            bail!(
                "ring buffer size {} is not a power of two of at least 4096 bytes",
                opts.ring_bytes
            );
        }
        let rings = opts
            .rings
            .unwrap_or_else(default_rings)
            .clamp(1, MAX_RINGS as u16);
        let per_ring = ring_share(opts.ring_bytes, rings);
        bump_memlock();
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::FLOWS, opts.flow_entries);
        for (i, name) in names::RINGS.iter().enumerate() {
            // The rings not in use keep a page each.
            loader.map_max_entries(name, if i < rings as usize { per_ring } else { 4096 });
        }
        let mut ebpf = loader.load(object).map_err(load_error)?;
        // An object built for another contract: say so, not what breaks later.
        for name in [
            names::EVENTS,
            names::RINGS[MAX_RINGS - 1],
            names::FLOWS,
            names::COUNTERS,
            names::DB_PORTS,
            names::CONFIG,
            names::SCRATCH,
            names::JUMP,
            names::WHOLE,
        ] {
            if ebpf.map(name).is_none() {
                bail!(
                    "the XDP object is not for this rds-sensor (kernel/user ABI {}: it has no map {name}); rebuild it with `cargo xtask build`",
                    sensor_common::ABI_VERSION
                );
            }
        }
        {
            let mut ports: Array<_, PortTable> = Array::try_from(map(&mut ebpf, names::DB_PORTS)?)?;
            // 64 KiB: built on the heap, not the stack.
            let table: Box<PortTable> = Box::new(PortTable::new(&opts.ports));
            ports
                .set(0, table.as_ref(), 0)
                .context("writing the database ports map")?;
        }
        {
            let mut cfg: Array<_, SensorConfig> = Array::try_from(map(&mut ebpf, names::CONFIG)?)?;
            let mut config = opts.config;
            config.wakeup_bytes = opts.wakeup_bytes.unwrap_or(per_ring / 8);
            config.rings = rings;
            cfg.set(0, config, 0)
                .context("writing the sensor config map")?;
        }
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| anyhow!("program {} not in the object", names::PROGRAM))?
            .try_into()?;
        prog.load().map_err(verifier_error)?;
        let geneve: &mut Xdp = ebpf
            .program_mut(names::GENEVE_PROGRAM)
            .ok_or_else(|| anyhow!("program {} not in the object", names::GENEVE_PROGRAM))?
            .try_into()?;
        geneve.load().map_err(verifier_error)?;
        let geneve_fd = geneve.fd()?.try_clone()?;
        let mut jump = ProgramArray::try_from(map(&mut ebpf, names::JUMP)?)?;
        jump.set(0, &geneve_fd, 0)
            .context("installing the GENEVE tail call")?;
        Ok(Self {
            ebpf,
            link: None,
            attached: None,
            attached_name: names::PROGRAM.to_string(),
            rings,
        })
    }

    /// Loads another program of the object (e.g. `bench_floor`, the benchmark's baseline).
    pub fn load_program(&mut self, name: &str) -> Result<&Xdp> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} not in the object"))?
            .try_into()?;
        prog.load().map_err(verifier_error)?;
        Ok(prog)
    }

    pub fn program(&self) -> Result<&Xdp> {
        self.program_named(names::PROGRAM)
    }

    /// A map of the object by name (the benchmark sets its programs' parameters in theirs).
    pub fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} not in the object"))
    }

    pub fn program_named(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .ok_or_else(|| anyhow!("program {name} not in the object"))?
            .try_into()?)
    }

    /// Attaches to `iface`. The attachment is a bpf_link owned by this process: if the
    /// process dies, the kernel detaches the program.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<&'static str> {
        self.attach_named(names::PROGRAM, iface, mode)
    }

    /// Attaches another (loaded) program of the object instead, e.g. the benchmark floor.
    pub fn attach_named(
        &mut self,
        name: &str,
        iface: &str,
        mode: AttachMode,
    ) -> Result<&'static str> {
        // Said once and plainly, not as a native attach failing and then a generic one.
        if crate::ifwatch::ifindex(iface).is_none() {
            bail!(
                "no network interface {iface} here; there are: {}",
                interfaces().join(", ")
            );
        }
        self.attached_name = name.to_string();
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        let (link, used) = match mode {
            AttachMode::Native => (
                prog.attach(iface, XdpMode::Driver).with_context(|| {
                    match super::native::refusal_hint(iface) {
                        Some(fix) => format!("attaching native XDP to {iface}; {fix}"),
                        None => format!("attaching native XDP to {iface}"),
                    }
                })?,
                "native",
            ),
            AttachMode::Generic => (
                prog.attach(iface, XdpMode::Skb)
                    .with_context(|| format!("attaching generic XDP to {iface}"))?,
                "generic",
            ),
            AttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(l) => (l, "native"),
                Err(native) => {
                    match super::native::refusal_hint(iface) {
                        Some(fix) => tracing::warn!(
                            iface,
                            error = %native,
                            "falling back to generic XDP (slower); for {fix}"
                        ),
                        None => tracing::warn!(
                            iface,
                            error = %native,
                            "native XDP is not available on this interface; falling back to generic XDP (slower)"
                        ),
                    }
                    (
                        prog.attach(iface, XdpMode::Skb).with_context(|| {
                            format!("attaching XDP to {iface} (native failed: {native})")
                        })?,
                        "generic",
                    )
                }
            },
        };
        self.link = Some(link);
        self.attached = Some((iface.to_string(), used));
        Ok(used)
    }

    /// Detaches (also done when the Sensor is dropped).
    pub fn detach(&mut self) -> Result<()> {
        if let Some(link) = self.link.take() {
            let prog: &mut Xdp = self
                .ebpf
                .program_mut(&self.attached_name)
                .ok_or_else(|| anyhow!("program missing"))?
                .try_into()?;
            prog.detach(link).context("detaching XDP")?;
            self.attached = None;
        }
        Ok(())
    }

    /// The first ring buffer (the only one with `rings: Some(1)`). Can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let m = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or_else(|| anyhow!("map {} already taken", names::EVENTS))?;
        Ok(RingBuf::try_from(m)?)
    }

    /// The event rings in use, each to be drained by its own reader. Can be taken once.
    pub fn take_rings(&mut self) -> Result<Vec<RingBuf<MapData>>> {
        names::RINGS[..self.rings as usize]
            .iter()
            .map(|name| {
                let m = self
                    .ebpf
                    .take_map(name)
                    .ok_or_else(|| anyhow!("map {name} already taken"))?;
                Ok(RingBuf::try_from(m)?)
            })
            .collect()
    }

    /// Handles on the counter and flow maps, which can move to another thread.
    pub fn take_state(&mut self) -> Result<KernelState> {
        let counters = self
            .ebpf
            .take_map(names::COUNTERS)
            .ok_or_else(|| anyhow!("map {} already taken", names::COUNTERS))?;
        let flows = self
            .ebpf
            .take_map(names::FLOWS)
            .ok_or_else(|| anyhow!("map {} already taken", names::FLOWS))?;
        let whole = self
            .ebpf
            .take_map(names::WHOLE)
            .ok_or_else(|| anyhow!("map {} already taken", names::WHOLE))?;
        Ok(KernelState {
            counters: PerCpuArray::try_from(counters)?,
            flows: BpfHashMap::try_from(flows)?,
            whole: BpfHashMap::try_from(whole)?,
        })
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!(error = %e, "detaching on drop");
        }
    }
}

/// The kernel's counters and flow table.
pub struct KernelState {
    counters: PerCpuArray<MapData, Counters>,
    flows: BpfHashMap<MapData, FlowKey, FlowStats>,
    whole: BpfHashMap<MapData, FlowKey, u8>,
}

impl KernelState {
    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<[u64; counter::COUNT as usize]> {
        let mut out = [0u64; counter::COUNT as usize];
        for cpu in self.counters.get(&0, 0)?.iter() {
            for (o, v) in out.iter_mut().zip(cpu.v.iter()) {
                *o += v;
            }
        }
        Ok(out)
    }
}

impl super::FlowSource for KernelState {
    fn snapshot(&mut self, out: &mut Vec<(FlowKey, FlowStats)>) {
        out.clear();
        // An entry can vanish between the key walk and the lookup (LRU eviction): skip it.
        out.extend(self.flows.iter().filter_map(Result::ok));
    }

    fn remove(&mut self, key: &FlowKey) {
        let _ = self.flows.remove(key);
    }

    fn mark_whole(&mut self, key: &FlowKey) {
        // An LRU map: a full one makes room itself; an error leaves the flow capped.
        if let Err(e) = self.whole.insert(key, 1u8, 0) {
            tracing::debug!(error = %e, "marking a flow whole");
        }
    }
}

/// One ring per online CPU (XDP runs where the receive queues' interrupts go, whatever this
/// process's own affinity), up to `MAX_RINGS`.
pub fn default_rings() -> u16 {
    default_cpus().min(MAX_RINGS) as u16
}

/// The online CPUs.
pub fn default_cpus() -> usize {
    // SAFETY: a plain query.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Each ring's size: the largest power of two within its share of `total`, at least a page.
fn ring_share(total: u32, rings: u16) -> u32 {
    let share = (total / rings.max(1) as u32).max(4096);
    1 << (31 - share.leading_zeros())
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} not in the XDP object"))
}

fn read_aligned(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading eBPF object {}", path.display()))
}

/// Shows the verifier's log, which is the only useful part of a load failure.
fn verifier_error(e: aya::programs::ProgramError) -> anyhow::Error {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => anyhow!("the kernel verifier rejected the XDP program: {io_error}\n{verifier_log}"),
        other => anyhow!(other).context("loading the XDP program"),
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn bump_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels ≥ 5.11");
    }
}

/// The interfaces of this network namespace, sorted.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A load failure in one line: aya's error repeats its inner error in its own message, so
/// the outermost message and the root cause are said once each; a permission error names
/// what the sensor needs.
fn load_error(e: aya::EbpfError) -> anyhow::Error {
    let top = e.to_string();
    let mut root: &dyn std::error::Error = &e;
    while let Some(s) = root.source() {
        root = s;
    }
    let root_text = root.to_string();
    let what = if top.ends_with(&root_text) {
        top
    } else {
        format!("{top}: {root_text}")
    };
    let denied = root.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(io.kind(), std::io::ErrorKind::PermissionDenied)
            || io.raw_os_error() == Some(libc::EPERM)
    });
    if denied {
        anyhow!(
            "loading the XDP object into the kernel: {what}. The sensor needs root, or the \
             capabilities CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (kernel 5.8 or later; \
             CAP_SYS_ADMIN before), as docs/rds-sensor.service grants them"
        )
    } else {
        anyhow!("loading the XDP object into the kernel: {what}")
    }
}
