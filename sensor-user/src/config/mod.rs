//! The configuration file (`--config FILE`, TOML). [`DEFAULT_TOML`] is every key with its
//! default and what it means (`rds-sensor config --print-default`); [`Config::default`] is the
//! same values, which a test keeps in step.
//!
//! Unknown keys are rejected by serde (`deny_unknown_fields`: the error names the key and lists
//! the allowed ones); values serde cannot check are checked by [`Config::validate`], whose
//! errors name the key (`database.ports[1]`) and say what is allowed.

pub mod mirror;

use crate::{capture::live::AttachMode, detect::Thresholds, detect::intel::Cidr};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

/// Every key with its default, commented.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: Capture,
    pub database: Database,
    /// Server → DBInstanceIdentifier.
    pub instances: BTreeMap<String, String>,
    pub detect: Detect,
    pub redaction: Redaction,
    pub tls: Tls,
    pub output: Output,
    pub limits: Limits,
    /// `enabled`, then the CloudWatch sinks' own settings, handed to them as they are.
    pub cloudwatch: toml::Table,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capture {
    pub interface: String,
    pub xdp_mode: XdpMode,
    pub ring_size: u32,
    /// Event rings (each with its reader thread); 0: one per CPU, up to `MAX_RINGS`.
    pub rings: u16,
    /// Worker threads the connections are sharded across; 0: one per two CPUs.
    pub workers: u16,
    pub payload_cap: u16,
    pub tail_cap: u16,
    pub pass_mirrored: bool,
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            interface: String::new(),
            xdp_mode: XdpMode::Auto,
            ring_size: 16 << 20,
            rings: 0,
            workers: 0,
            payload_cap: sensor_common::DEFAULT_PAYLOAD_CAP,
            tail_cap: sensor_common::DEFAULT_TAIL_CAP,
            pass_mirrored: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
}

impl From<AttachMode> for XdpMode {
    fn from(m: AttachMode) -> Self {
        match m {
            AttachMode::Auto => XdpMode::Auto,
            AttachMode::Native => XdpMode::Native,
            AttachMode::Generic => XdpMode::Generic,
        }
    }
}

impl From<XdpMode> for AttachMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Auto => AttachMode::Auto,
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    pub ports: Vec<String>,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            ports: ["5432=postgresql", "3306=mysql", "1433=mssql", "1521=oracle"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Detect {
    pub enabled: bool,
    pub allowed_cidrs: Vec<String>,
    pub iam_required_cidrs: Vec<String>,
    pub malicious_ips: Vec<String>,
    pub tor_exits: Vec<String>,
    pub instance_map: String,
    pub baseline: String,
    pub baseline_save_interval_s: u64,
    pub asn_db: String,
    pub learning_period_s: u64,
    pub finding_update_interval_s: u64,
    pub finding_archive_after_s: u64,
    pub thresholds: Thresholds,
}

impl Default for Detect {
    fn default() -> Self {
        let d = crate::detect::DetectorOptions::default();
        Self {
            enabled: false,
            allowed_cidrs: Vec::new(),
            iam_required_cidrs: Vec::new(),
            malicious_ips: Vec::new(),
            tor_exits: Vec::new(),
            instance_map: String::new(),
            baseline: String::new(),
            baseline_save_interval_s: d.save_every_s,
            asn_db: String::new(),
            learning_period_s: d.learning_period_s,
            finding_update_interval_s: d.update_every_s,
            finding_archive_after_s: d.archive_after_s,
            thresholds: Thresholds::default(),
        }
    }
}

impl Detect {
    /// The detection switches given, over these settings: lists and files given replace the
    /// file's, numbers given replace its numbers, `--detect` turns detection on.
    pub fn overlay(&mut self, a: &crate::detect::DetectArgs) {
        let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
            v.iter().map(|p| p.display().to_string()).collect()
        };
        self.enabled |= a.detect;
        if !a.malicious_ips.is_empty() {
            self.malicious_ips = paths(&a.malicious_ips);
        }
        if !a.tor_exits.is_empty() {
            self.tor_exits = paths(&a.tor_exits);
        }
        if !a.allowed_cidrs.is_empty() {
            self.allowed_cidrs = a.allowed_cidrs.iter().map(|c| c.to_string()).collect();
        }
        if !a.iam_required_cidrs.is_empty() {
            self.iam_required_cidrs = a.iam_required_cidrs.iter().map(|c| c.to_string()).collect();
        }
        let path = |to: &mut String, v: &Option<std::path::PathBuf>| {
            if let Some(p) = v {
                *to = p.display().to_string();
            }
        };
        path(&mut self.instance_map, &a.instance_map);
        path(&mut self.baseline, &a.baseline);
        path(&mut self.asn_db, &a.asn_db);
        let num = |to: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *to = v;
            }
        };
        num(&mut self.learning_period_s, a.learning_period);
        num(
            &mut self.finding_update_interval_s,
            a.finding_update_interval,
        );
        num(&mut self.baseline_save_interval_s, a.baseline_save_interval);
        num(&mut self.finding_archive_after_s, a.finding_archive_after);
    }

    /// On when asked for, or when anything only detection uses is set (a list, a network, a
    /// file, a number other than its default).
    pub fn is_on(&self) -> bool {
        let d = Self::default();
        self.enabled
            || !self.malicious_ips.is_empty()
            || !self.tor_exits.is_empty()
            || !self.allowed_cidrs.is_empty()
            || !self.iam_required_cidrs.is_empty()
            || !self.instance_map.is_empty()
            || !self.baseline.is_empty()
            || !self.asn_db.is_empty()
            || self.learning_period_s != d.learning_period_s
            || self.finding_update_interval_s != d.finding_update_interval_s
            || self.finding_archive_after_s != d.finding_archive_after_s
            || self.baseline_save_interval_s != d.baseline_save_interval_s
    }

    /// `instance_map`, when set.
    pub fn instance_map_path(&self) -> Option<std::path::PathBuf> {
        path_of(&self.instance_map)
    }

    pub fn options(&self) -> crate::detect::DetectorOptions {
        let paths = |v: &[String]| v.iter().map(std::path::PathBuf::from).collect();
        crate::detect::DetectorOptions {
            learning_period_s: self.learning_period_s,
            baseline: path_of(&self.baseline),
            save_every_s: self.baseline_save_interval_s,
            update_every_s: self.finding_update_interval_s,
            archive_after_s: self.finding_archive_after_s,
            malicious_lists: paths(&self.malicious_ips),
            tor_lists: paths(&self.tor_exits),
            allowed: self
                .allowed_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            iam_required: self
                .iam_required_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            instance_map: self.instance_map_path(),
            asn_db: path_of(&self.asn_db),
            thresholds: self.thresholds.clone(),
            tls_keys_expected: false,
        }
    }

    /// The detector these settings ask for, or none.
    pub fn detector(&self, clock: crate::model::Clock) -> Result<Option<crate::detect::Detector>> {
        if !self.is_on() {
            return Ok(None);
        }
        crate::detect::Detector::new(self.options(), clock).map(Some)
    }
}

/// A path setting: `""` is none.
fn path_of(s: &str) -> Option<std::path::PathBuf> {
    (!s.is_empty()).then(|| std::path::PathBuf::from(s))
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redaction {
    pub redact: bool,
}

impl Default for Redaction {
    fn default() -> Self {
        Self { redact: true }
    }
}

/// Reading TLS with client key logs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// NSS key log files (SSLKEYLOGFILE) or directories of them, followed as they grow.
    pub keylog: Vec<std::path::PathBuf>,
    /// Client randoms whose secrets are held at most (the oldest go first).
    pub max_keys: usize,
    /// Seconds a secret is held after it arrived (live).
    pub key_ttl_s: u64,
    /// Seconds of capture a session's ciphertext waits for late keys, and how many KiB per
    /// direction it may hold meanwhile.
    pub key_wait_s: u64,
    pub hold_kib: usize,
    /// MiB of ciphertext all connections together hold for late keys.
    pub hold_total_mib: usize,
    /// The key receiver (live): `ADDR:PORT` ("" off), its certificate and key (PEM), the
    /// tokens forwarders authenticate with (a file, one per line), and a CA whose client
    /// certificates authenticate without a token ("" none).
    pub listen: String,
    pub cert: String,
    pub key: String,
    pub token_file: String,
    pub client_ca: String,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            keylog: Vec::new(),
            max_keys: 200_000,
            key_ttl_s: 3600,
            key_wait_s: 10,
            hold_kib: 1024,
            hold_total_mib: 64,
            listen: String::new(),
            cert: String::new(),
            key: String::new(),
            token_file: String::new(),
            client_ca: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    pub json: bool,
    pub tui: bool,
    /// No records on stdout (the files, Prometheus and AWS sinks still get them).
    pub quiet: bool,
    pub summary_interval_s: u64,
    pub prometheus: String,
    /// Record files (`[[output.files]]`), each with the kinds it takes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RecordFile>,
    /// Every record file rotates past this size (0: never by size) …
    pub rotate_mib: u64,
    /// … and when this old (0: never by age) …
    pub rotate_interval_s: u64,
    /// … keeping this many old files.
    pub rotate_keep: u32,
}

/// `[[output.files]]`: a JSON-lines file of records.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordFile {
    pub path: String,
    /// Record kinds this file takes (empty: all).
    pub kinds: Vec<String>,
}

impl RecordFile {
    pub fn spec(&self) -> crate::sinks::file::FileSpec {
        crate::sinks::file::FileSpec {
            path: self.path.clone().into(),
            kinds: self.kinds.clone(),
        }
    }
}

impl Output {
    pub fn rotation(&self) -> crate::sinks::file::Rotation {
        crate::sinks::file::Rotation {
            max_bytes: self.rotate_mib.saturating_mul(1 << 20),
            max_age: (self.rotate_interval_s > 0)
                .then(|| std::time::Duration::from_secs(self.rotate_interval_s)),
            keep: self.rotate_keep,
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Self {
            json: false,
            tui: true,
            quiet: false,
            summary_interval_s: 10,
            prometheus: String::new(),
            files: Vec::new(),
            rotate_mib: 100,
            rotate_interval_s: 0,
            rotate_keep: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub flow_entries: u32,
    pub offline_flows: usize,
    pub flow_idle_timeout_s: u64,
    pub connections: usize,
    pub held_segments: usize,
    pub held_bytes: usize,
    pub fingerprints: usize,
    pub top_fingerprints: usize,
    /// Held out-of-order bytes across all connections.
    pub held_bytes_total: usize,
    /// The agent's memory cap in MiB (0: none); see [`MemoryBudget`].
    pub memory_mib: usize,
}

/// What a memory cap leaves to each bounded structure of the agent: a quarter to the queue
/// between the ring reader and the pipeline, an eighth to held out-of-order bytes, an eighth
/// to connection state, a sixteenth to the flows accounted from delivered events, and the
/// rest to the ring buffer's touched pages, the latency histograms, detector state and the
/// process itself. Each is the smaller of its share and its own limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub queue_bytes: usize,
    pub held_bytes_total: usize,
    pub connections: usize,
    /// Flows accounted from delivered events (the kernel's `FLOWS` is `limits.flow_entries`
    /// on its own, in kernel memory).
    pub flows: usize,
}

/// An upper estimate of one flow accounted in user space: its key and summary (152 bytes) in
/// a hash table with its control bytes and load factor.
pub const FLOW_BYTES: usize = 256;

/// An upper estimate of one followed connection: its table entry, both directions' state and
/// a decoder with its buffers.
pub const CONNECTION_BYTES: usize = 4096;

impl MemoryBudget {
    /// The queue's size without a cap.
    pub const DEFAULT_QUEUE: usize = 64 << 20;
    /// The agent attached and idle is ~40 MiB (binary, runtime, tables' first pages).
    pub const MIN_MIB: usize = 64;

    /// A cap below the idle agent, or one that the ring alone takes more than a quarter of, is
    /// refused; the message names the keys (`memory_key`, `ring_key`) as the user gave them.
    pub fn check(
        memory_mib: usize,
        ring_bytes: u32,
        memory_key: &str,
        ring_key: &str,
    ) -> Result<()> {
        let m = memory_mib;
        if m != 0 && m < Self::MIN_MIB {
            bail!(
                "{memory_key}: {m}; allowed: 0 (no cap) or {} and more",
                Self::MIN_MIB
            );
        }
        if m != 0 && ring_bytes as usize > (m << 20) / 4 {
            bail!(
                "{ring_key}: {} MiB is more than a quarter of {memory_key} ({m} MiB)",
                ring_bytes >> 20
            );
        }
        Ok(())
    }

    pub fn of(limits: &Limits) -> Self {
        let uncapped = Self {
            queue_bytes: Self::DEFAULT_QUEUE,
            held_bytes_total: limits.held_bytes_total,
            connections: limits.connections,
            flows: limits.flow_entries as usize,
        };
        if limits.memory_mib == 0 {
            return uncapped;
        }
        let cap = limits.memory_mib << 20;
        Self {
            queue_bytes: uncapped.queue_bytes.min(cap / 4),
            held_bytes_total: uncapped.held_bytes_total.min(cap / 8),
            connections: uncapped.connections.min(cap / 8 / CONNECTION_BYTES).max(1),
            flows: uncapped.flows.min(cap / 16 / FLOW_BYTES).max(1),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let s = crate::reassembly::StreamLimits::default();
        Self {
            flow_entries: 262_144,
            offline_flows: 1 << 20,
            flow_idle_timeout_s: 300,
            connections: s.max_connections,
            held_segments: s.max_held_segments,
            held_bytes: s.max_held_bytes,
            fingerprints: 10_000,
            top_fingerprints: 20,
            held_bytes_total: s.max_held_total,
            memory_mib: 0,
        }
    }
}

/// Keys of `[cloudwatch]` besides the CloudWatch sinks' own.
const CLOUDWATCH_ENABLED: &str = "enabled";

impl Config {
    /// Reads, parses and validates a file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        let c: Config = toml::from_str(text).map_err(|e| {
            // toml's message names the key (and shows the line); keep it as it is.
            anyhow::anyhow!("{}", e.to_string().trim_end())
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Checks what the types do not.
    pub fn validate(&self) -> Result<()> {
        for (i, p) in self.database.ports.iter().enumerate() {
            crate::ports::parse_port(p).map_err(|e| {
                anyhow::anyhow!(
                    "database.ports[{i}]: {e}; allowed: \"PORT\" or \"PORT=PROTOCOL\" \
                     (postgresql, mysql, mssql, oracle)"
                )
            })?;
        }
        if self.database.ports.is_empty() {
            bail!("database.ports: empty; give at least one port (e.g. [\"5432\"])");
        }
        for (key, list) in [
            ("allowed_cidrs", &self.detect.allowed_cidrs),
            ("iam_required_cidrs", &self.detect.iam_required_cidrs),
        ] {
            for (i, c) in list.iter().enumerate() {
                c.parse::<Cidr>().map_err(|e| {
                    anyhow::anyhow!(
                        "detect.{key}[{i}]: {e}; allowed: an address or ADDRESS/LENGTH \
                         (e.g. \"10.0.0.0/16\", \"2001:db8::/32\")"
                    )
                })?;
            }
        }
        for (server, id) in &self.instances {
            server_key(server).map_err(|e| anyhow::anyhow!("instances.\"{server}\": {e}"))?;
            if id.is_empty() {
                bail!("instances.\"{server}\": empty identifier; allowed: a DBInstanceIdentifier");
            }
        }
        let c = &self.capture;
        if c.ring_size < 4096 || !c.ring_size.is_power_of_two() {
            bail!(
                "capture.ring_size: {}; allowed: a power of two, at least 4096",
                c.ring_size
            );
        }
        if c.rings as usize > sensor_common::MAX_RINGS {
            bail!(
                "capture.rings: {}; allowed: 0 (one per CPU) to {}",
                c.rings,
                sensor_common::MAX_RINGS
            );
        }
        if c.payload_cap as usize > sensor_common::MAX_PAYLOAD_CAP {
            bail!(
                "capture.payload_cap: {}; allowed: 0 to {}",
                c.payload_cap,
                sensor_common::MAX_PAYLOAD_CAP
            );
        }
        if c.tail_cap > c.payload_cap {
            bail!(
                "capture.tail_cap: {}; allowed: 0 to capture.payload_cap ({})",
                c.tail_cap,
                c.payload_cap
            );
        }
        MemoryBudget::check(
            self.limits.memory_mib,
            c.ring_size,
            "limits.memory_mib",
            "capture.ring_size",
        )?;
        for (i, f) in self.output.files.iter().enumerate() {
            if f.path.is_empty() {
                bail!("output.files[{i}].path: empty; give the file's path");
            }
            f.spec()
                .check()
                .map_err(|e| anyhow::anyhow!("output.files[{i}].kinds: {e}"))?;
        }
        if self.output.summary_interval_s == 0 {
            bail!("output.summary_interval_s: 0; allowed: 1 second or more");
        }
        if !self.output.prometheus.is_empty() {
            self.output
                .prometheus
                .parse::<std::net::SocketAddr>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "output.prometheus: `{}`; allowed: ADDRESS:PORT (e.g. \"127.0.0.1:9187\") or \"\" (off)",
                        self.output.prometheus
                    )
                })?;
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.flow_entries", l.flow_entries as usize),
            ("limits.offline_flows", l.offline_flows),
            ("limits.flow_idle_timeout_s", l.flow_idle_timeout_s as usize),
            ("limits.connections", l.connections),
            ("limits.fingerprints", l.fingerprints),
        ] {
            if v == 0 {
                bail!("{key}: 0; allowed: 1 or more");
            }
        }
        let t = &self.detect.thresholds;
        for (key, v) in [
            (
                "detect.thresholds.failure_rate_factor",
                t.failure_rate_factor,
            ),
            ("detect.thresholds.login_rate_factor", t.login_rate_factor),
            ("detect.thresholds.staging_factor", t.staging_factor),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{key}: {v}; allowed: a number above 0");
            }
        }
        if let Some(v) = self.cloudwatch.get(CLOUDWATCH_ENABLED)
            && !v.is_bool()
        {
            bail!("cloudwatch.enabled: `{v}`; allowed: true or false");
        }
        Ok(())
    }

    /// `[cloudwatch] enabled`.
    pub fn cloudwatch_enabled(&self) -> bool {
        self.cloudwatch
            .get(CLOUDWATCH_ENABLED)
            .and_then(toml::Value::as_bool)
            .unwrap_or(false)
    }

    /// The CloudWatch sinks' settings of `[cloudwatch]` (without `enabled`), as the JSON
    /// object their `--cloudwatch-config` file holds; none when there are none.
    pub fn cloudwatch_settings(&self) -> Option<serde_json::Value> {
        let mut t = self.cloudwatch.clone();
        t.remove(CLOUDWATCH_ENABLED);
        if t.is_empty() {
            return None;
        }
        serde_json::to_value(&t).ok()
    }

    /// The database ports, parsed (validated already).
    pub fn ports(&self) -> Vec<(u16, u8)> {
        self.database
            .ports
            .iter()
            .filter_map(|p| crate::ports::parse_port(p).ok())
            .collect()
    }

    /// The allowed client CIDRs, parsed (validated already).
    pub fn allowed_cidrs(&self) -> Vec<Cidr> {
        self.detect
            .allowed_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }
}

/// A server key of `[instances]`: ADDRESS or ADDRESS:PORT (IPv6: `[ADDR]:PORT` or ADDR).
fn server_key(s: &str) -> Result<(), String> {
    let allowed = "allowed: ADDRESS or ADDRESS:PORT (IPv6: [ADDRESS]:PORT)";
    if s.parse::<std::net::IpAddr>().is_ok() || s.parse::<std::net::SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("not a server address; {allowed}"))
    }
}

impl Config {
    pub fn reloadable(&self) -> crate::pipeline::Reloadable {
        let paths = |v: &[String]| v.iter().map(std::path::PathBuf::from).collect();
        crate::pipeline::Reloadable {
            redact: self.redaction.redact,
            summary_interval_s: self.output.summary_interval_s,
            allowed_cidrs: self.allowed_cidrs(),
            malicious_ips: paths(&self.detect.malicious_ips),
            tor_exits: paths(&self.detect.tor_exits),
            instance_map: (!self.detect.instance_map.is_empty())
                .then(|| self.detect.instance_map.clone().into()),
            instances: self.instances.clone(),
        }
    }

    /// Keys that changed between `self` and `new` and need a restart to take effect.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.capture != new.capture {
            out.push("capture");
        }
        if self.database != new.database {
            out.push("database");
        }
        if self.limits != new.limits {
            out.push("limits");
        }
        if self.cloudwatch != new.cloudwatch {
            out.push("cloudwatch");
        }
        if self.output.json != new.output.json
            || self.output.tui != new.output.tui
            || self.output.quiet != new.output.quiet
            || self.output.files != new.output.files
            || self.output.rotation() != new.output.rotation()
            || self.output.prometheus != new.output.prometheus
        {
            out.push("output (json, tui, quiet, files, rotation, prometheus)");
        }
        let (a, b) = (&self.detect, &new.detect);
        if a.enabled != b.enabled
            || a.baseline != b.baseline
            || a.asn_db != b.asn_db
            || a.learning_period_s != b.learning_period_s
            || a.thresholds != b.thresholds
            || a.baseline_save_interval_s != b.baseline_save_interval_s
            || a.finding_update_interval_s != b.finding_update_interval_s
        {
            out.push("detect (enabled, baseline, asn_db, periods, thresholds)");
        }
        out
    }
}

#[cfg(test)]
mod tests;
