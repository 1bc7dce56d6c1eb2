//! The `rds-sensor` command line, shared by the binaries that run it: `rds-sensor` (this crate,
//! no AWS SDK) and `rds-sensor-cloudwatch` (the `sensor-cloudwatch` crate, which adds the
//! CloudWatch sinks through an [`Extension`]).
//!
//! The CloudWatch switches ([`CloudWatchArgs`]) are part of this command line in both. A binary
//! without an extension that is asked for CloudWatch runs `rds-sensor-cloudwatch` from its own
//! directory in its place, with the same arguments (see `delegate`); when that binary is not
//! there it stops with an error saying how to build it.

use crate::{
    agent::{self, AgentOptions},
    capture::live::{AttachMode, LiveOptions, Sensor},
    demo::{self, DemoOptions},
    flows::FlowTimeouts,
    model::Clock,
    offline::{self, OfflineOptions},
    pipeline::{Pipeline, PipelineOptions},
    ports::parse_port,
    sinks::{Fanout, Sink, stdout::Stdout},
};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sensor_common::{MAX_PAYLOAD_CAP, SensorConfig, config_flags};
use std::{path::PathBuf, time::Duration};

/// The binary that has the CloudWatch sinks built in.
pub const CLOUDWATCH_BINARY: &str = "rds-sensor-cloudwatch";
/// Set by [`delegate`] in the environment of the binary it runs, so that it never loops.
pub const DELEGATED_ENV: &str = "RDS_SENSOR_DELEGATED";

/// Whether the sinks run beside a live capture (`run`, `demo`) or an offline one (`analyze`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Offline,
}

/// Sinks an [`Extension`] adds, and what to do once the pipeline has finished and dropped them
/// (e.g. wait, for a bounded time, until queued data is shipped).
#[derive(Default)]
pub struct ExtraSinks {
    pub sinks: Vec<Box<dyn Sink>>,
    pub finish: Option<Box<dyn FnOnce() -> Result<()>>>,
}

/// What a binary adds to the command line: sinks built from the CloudWatch switches.
pub trait Extension {
    fn sinks(&self, args: &CloudWatchArgs, mode: Mode) -> Result<ExtraSinks>;
    /// `rds-sensor aws mirror plan|apply|reconcile`.
    fn mirror(&self, action: MirrorAction, spec: &MirrorSpec) -> Result<()>;
}

pub use crate::config::mirror::MirrorSpec;

/// What `rds-sensor aws mirror` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MirrorAction {
    /// Print the calls that would make things right, in `aws ec2` form; call nothing that
    /// changes anything.
    Plan,
    /// Make the calls: create or repair the target, the filter and its rules, and one session
    /// per network interface of the instances. Sessions it made that no interface of theirs
    /// needs any more are kept (and said).
    Apply,
    /// `apply`, and delete those sessions too: what the agent's `--mirror-reconcile` runs.
    Reconcile,
}

/// What `--discover` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Discover {
    /// RDS and Aurora instances (DescribeDBInstances).
    Rds,
}

/// Where metrics go when CloudWatch is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsSink {
    /// PutMetricData (and CloudWatch Logs / EventBridge for findings).
    Cloudwatch,
    /// Print, one JSON object per line, exactly the requests that would be sent; send nothing.
    Stdout,
}

/// CloudWatch switches. Every setting, and the ones not here, can also come from a JSON file
/// (`--cloudwatch-config`); a switch overrides the file.
#[derive(Args, Clone, Debug, Default)]
pub struct CloudWatchArgs {
    /// Ship metrics to CloudWatch and findings to CloudWatch Logs (standard AWS credential and
    /// region chain; AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_CLOUDWATCH are honoured).
    #[arg(long, env = "RDS_SENSOR_CLOUDWATCH", value_parser = clap::builder::FalseyValueParser::new())]
    pub cloudwatch: bool,
    /// JSON file with the CloudWatch settings (implies --cloudwatch).
    #[arg(long, env = "RDS_SENSOR_CLOUDWATCH_CONFIG", value_name = "FILE")]
    pub cloudwatch_config: Option<PathBuf>,
    /// `cloudwatch`, or `stdout` to print exactly what would be sent instead (implies
    /// --cloudwatch).
    #[arg(long, value_enum, value_name = "SINK")]
    pub metrics_sink: Option<MetricsSink>,
    /// Metric namespace (default RDS/TrafficSensor).
    #[arg(long, value_name = "NAMESPACE")]
    pub cloudwatch_namespace: Option<String>,
    /// DBInstanceIdentifier of a server, SERVER=ID, SERVER being ADDRESS:PORT or ADDRESS
    /// (repeat). Servers not named use their address.
    #[arg(long = "db-instance", value_name = "SERVER=ID", value_parser = parse_key_value)]
    pub db_instances: Vec<(String, String)>,
    /// Seconds aggregated into one data point (default 60).
    #[arg(long, value_name = "SECONDS")]
    pub cloudwatch_period: Option<u64>,
    /// Storage resolution: 60 (standard) or 1 (high resolution).
    #[arg(long, value_name = "SECONDS", value_parser = parse_resolution)]
    pub cloudwatch_resolution: Option<u32>,
    /// Also send the top N query fingerprints (by total time) per instance and period as a
    /// `Fingerprint` dimension (default 0: off).
    #[arg(long, value_name = "N")]
    pub cloudwatch_top_fingerprints: Option<usize>,
    /// CloudWatch Logs group for findings (default /rds-sensor/findings).
    #[arg(long, value_name = "GROUP")]
    pub cloudwatch_log_group: Option<String>,
    /// CloudWatch Logs stream (default: the host name).
    #[arg(long, value_name = "STREAM")]
    pub cloudwatch_log_stream: Option<String>,
    /// Also send this fraction (0 to 1) of query and login records, redacted, to the log group.
    #[arg(long, value_name = "FRACTION")]
    pub cloudwatch_records_sample: Option<f64>,
    /// Also send findings to this EventBridge bus (PutEvents, source `rds-sensor`).
    #[arg(long, value_name = "BUS")]
    pub eventbridge_bus: Option<String>,
    /// Send every finding to AWS Security Hub (BatchImportFindings, ASFF; its custom
    /// integration's default product). Alone it sends only the findings there, no CloudWatch
    /// metrics or logs; with --cloudwatch (or --cloudwatch-config) both. With --metrics-sink
    /// stdout the Security Hub requests are printed, not sent.
    #[arg(long, env = "RDS_SENSOR_SECURITYHUB", value_parser = clap::builder::FalseyValueParser::new())]
    pub securityhub: bool,
    /// Name servers by what AWS says is there: `rds` asks DescribeDBInstances (standard
    /// credential and region chain) and resolves each endpoint to its address. Every sink then
    /// uses those names (the CloudWatch dimension, the Prometheus label, a finding's resource);
    /// `[instances]`, `--db-instance` and `--instance-map` still win. Refreshed every
    /// --discover-interval seconds, and at most every minute while a server no entry names
    /// shows up (a failover moves an endpoint).
    #[arg(long, value_enum, value_name = "SERVICE")]
    pub discover: Option<Discover>,
    /// Seconds between discovery refreshes.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub discover_interval: u64,
    /// A hosts(5)-format file consulted before DNS for the endpoints' names (split-horizon
    /// DNS; tests).
    #[arg(long, value_name = "FILE")]
    pub discover_hosts: Option<PathBuf>,
    /// Keep the mirror sessions of a spec file (`rds-sensor aws mirror`'s keys in TOML, and
    /// `interval_s`, default 300) in place from the agent: a reconcile pass at start and every
    /// interval. RDS replaces an instance's network interface on failover, scaling and
    /// maintenance, and the sessions on the old one vanish with it. Off unless given.
    #[arg(long, value_name = "FILE")]
    pub mirror_reconcile: Option<PathBuf>,
    /// The detector's `--instance-map` (server → dbInstanceIdentifier), for the
    /// DBInstanceIdentifier dimension; `--db-instance` overrides it.
    #[arg(skip)]
    pub instance_map: Option<PathBuf>,
    /// The `[cloudwatch]` table of `--config` (without `enabled`), as the JSON object a
    /// `--cloudwatch-config` file holds; below that file and the switches.
    #[arg(skip)]
    pub file_settings: Option<serde_json::Value>,
}

impl CloudWatchArgs {
    /// The AWS sinks print their requests on stdout instead of sending them (`--metrics-sink
    /// stdout`, or `metrics_sink = "stdout"` in `[cloudwatch]`).
    pub fn prints(&self) -> bool {
        self.metrics_sink == Some(MetricsSink::Stdout)
            || self.metrics_sink.is_none()
                && self
                    .file_settings
                    .as_ref()
                    .and_then(|v| v.get("metrics_sink"))
                    .and_then(serde_json::Value::as_str)
                    == Some("stdout")
    }

    /// True when any switch asks for the sinks on the AWS SDK (CloudWatch or Security Hub).
    pub fn enabled(&self) -> bool {
        self.cloudwatch_enabled()
            || self.securityhub_enabled()
            || self.discover.is_some()
            || self.mirror_reconcile.is_some()
    }

    /// True when a switch asks for CloudWatch itself (metrics, findings to its Logs).
    pub fn cloudwatch_enabled(&self) -> bool {
        self.cloudwatch || self.cloudwatch_config.is_some() || self.metrics_sink.is_some()
    }

    /// `--securityhub`, or `securityhub = true` in `[cloudwatch]` of the --config file.
    pub fn securityhub_enabled(&self) -> bool {
        self.securityhub
            || self
                .file_settings
                .as_ref()
                .and_then(|v| v.get("securityhub"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
    }
}

fn parse_resolution(s: &str) -> Result<u32, String> {
    match s {
        "1" => Ok(1),
        "60" => Ok(60),
        _ => Err(format!("`{s}`: the storage resolution is 1 or 60")),
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected SERVER=ID")),
    }
}

/// The `rds-sensor` command line.
#[derive(Parser)]
#[command(
    name = "rds-sensor",
    version,
    about = "XDP traffic analyzer for database traffic mirrored from Amazon RDS/Aurora"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to an interface (a VPC Traffic Mirroring target) and report live.
    Run(RunArgs),
    /// Run a pcap/pcapng capture through the same pipeline, without an interface.
    Analyze(AnalyzeArgs),
    /// Make a netns + veth pair, attach to it and replay captures into it in a loop.
    Demo(DemoArgs),
    /// The configuration file (`--config FILE` of run, analyze and demo).
    Config(ConfigArgs),
    /// Beside an application: follow its TLS key log and ship every line to a sensor's key
    /// receiver (`--keylog-listen`), over TLS.
    KeylogForward(KeylogForwardArgs),
    /// AWS resources the sensor needs (on the official AWS SDK: runs rds-sensor-cloudwatch).
    Aws(AwsArgs),
    /// Write the man pages and shell completions (bash, zsh, fish) into a directory: what
    /// `cargo xtask dist` packages.
    #[command(hide = true)]
    Assets(AssetsArgs),
}

#[derive(Args)]
struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
}

#[derive(Subcommand)]
enum AwsCommand {
    /// VPC Traffic Mirroring from RDS to the sensor: the target, a filter for the database
    /// ports (AWS's 10 rules at most), one session per network interface of the instances.
    /// Idempotent: what is right stays, what is missing or wrong is made right. Everything it
    /// makes carries the tag `rds-sensor:mirror=NAME`.
    Mirror(MirrorArgs),
}

#[derive(Args)]
struct MirrorArgs {
    #[arg(value_enum)]
    action: MirrorAction,
    /// The keys below from a TOML file (what `--mirror-reconcile` reads); switches override it.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    #[command(flatten)]
    switches: MirrorSpec,
}

#[derive(Args)]
struct AssetsArgs {
    /// Directory to write `man/*.1` and `completions/{rds-sensor.bash,_rds-sensor,rds-sensor.fish}` into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Man pages (one per subcommand, as `git` has them) and completions from the command line
/// itself, so they never drift from it.
fn assets(a: &AssetsArgs) -> Result<()> {
    use clap::CommandFactory;
    let man = a.out.join("man");
    let comp = a.out.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![(cmd.get_name().to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = man.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "rds-sensor.bash"),
        (clap_complete::Shell::Zsh, "_rds-sensor"),
        (clap_complete::Shell::Fish, "rds-sensor.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "rds-sensor", &mut out);
        let path = comp.join(file);
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[derive(Args)]
struct KeylogForwardArgs {
    /// The key log the application writes (SSLKEYLOGFILE); followed across rotation.
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The sensor's receiver, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// The CA (or the receiver's self-signed certificate) its certificate ends in (PEM).
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// The name in the receiver's certificate, if not the host of --to.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// A file whose first token authenticates the forwarder.
    #[arg(long, value_name = "FILE", required_unless_present = "cert")]
    token_file: Option<PathBuf>,
    /// A client certificate and key (PEM) instead of a token.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Ship only lines written from now on.
    #[arg(long)]
    from_end: bool,
}

#[derive(Args)]
struct ConfigArgs {
    /// Write every key with its default and what it means (commented TOML) to stdout.
    #[arg(long)]
    print_default: bool,
    /// Check a file: parse and validate it, say what is wrong.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file (`rds-sensor config --print-default` shows every key); switches
    /// given on the command line override it. SIGHUP re-reads it (live).
    #[arg(long, env = "RDS_SENSOR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plain log lines even when stdout is a terminal (no live dashboard).
    #[arg(long)]
    no_tui: bool,
    /// Serve Prometheus `/metrics` here (run, demo): PORT (on 127.0.0.1) or ADDRESS:PORT.
    /// Off unless given.
    #[arg(long, value_name = "ADDR", value_parser = crate::sinks::prometheus::parse_listen)]
    prometheus: Option<std::net::SocketAddr>,
    /// The file `--config` named, as read (SIGHUP compares a new one with it).
    #[arg(skip)]
    file: Option<crate::config::Config>,
    /// What everything runs with: the defaults ([`crate::config::Config::default`], the one
    /// place they are), then the `--config` file, then the switches given.
    #[arg(skip)]
    settings: crate::config::Config,
    /// The live dashboard, in place of stdout, when it runs.
    #[arg(skip)]
    screen: Option<crate::sinks::tui::TuiSink>,
    /// Database ports, PORT or PORT=PROTOCOL (postgresql, mysql, mssql, oracle). Repeat or
    /// separate with commas. Default: 5432, 3306, 1433, 1521.
    #[arg(long = "port", value_delimiter = ',', value_parser = parse_port)]
    ports: Vec<(u16, u8)>,
    /// One JSON object per line on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// No records on stdout (`output.quiet`): for a service whose records go to files or
    /// other sinks.
    #[arg(long)]
    quiet: bool,
    /// Write records to a JSON-lines file, rotated (`output.files`): PATH for every kind, or
    /// KIND[,KIND…]=PATH for some (flow, login, query, tls, tls_exchange, latency, summary,
    /// finding). Repeat for more files.
    #[arg(long = "record-file", value_name = "[KINDS=]PATH", value_parser = crate::sinks::file::FileSpec::parse)]
    record_files: Vec<crate::sinks::file::FileSpec>,
    /// Rotate record files past this many MiB (`output.rotate_mib`; 0: never by size).
    #[arg(long, value_name = "MIB")]
    rotate_mib: Option<u64>,
    /// Rotate record files this many seconds old (`output.rotate_interval_s`; 0: never).
    #[arg(long, value_name = "SECONDS")]
    rotate_interval: Option<u64>,
    /// Old record files kept (`output.rotate_keep`).
    #[arg(long, value_name = "N")]
    rotate_keep: Option<u32>,
    /// Payload bytes copied per segment (at most 4096; `capture.payload_cap`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=MAX_PAYLOAD_CAP as i64))]
    payload_cap: Option<u16>,
    /// Of those, bytes taken from the end of a segment longer than the cap
    /// (`capture.tail_cap`).
    #[arg(long)]
    tail_cap: Option<u16>,
    /// Seconds without a segment after which a flow is reported and forgotten
    /// (`limits.flow_idle_timeout_s`).
    #[arg(long)]
    flow_idle_timeout: Option<u64>,
    /// Show query literals, parameters and authentication payloads (redacted by default).
    #[arg(long)]
    no_redact: bool,
    /// NSS key log file (SSLKEYLOGFILE) or directory of them: TLS sessions whose keys it
    /// holds are decrypted and decoded. Repeat for more; followed as it grows (run, demo).
    /// Adds to `tls.keylog`.
    #[arg(long = "tls-keylog", value_name = "PATH")]
    tls_keylog: Vec<PathBuf>,
    /// Receive key log lines from `rds-sensor keylog-forward` here (run, demo): ADDR:PORT
    /// (`tls.listen`). Needs --keylog-cert, --keylog-key and --keylog-token-file (or
    /// --keylog-client-ca).
    #[arg(long, value_name = "ADDR")]
    keylog_listen: Option<String>,
    /// The receiver's certificate chain and key, PEM (`tls.cert`, `tls.key`).
    #[arg(long, value_name = "PEM")]
    keylog_cert: Option<String>,
    #[arg(long, value_name = "PEM")]
    keylog_key: Option<String>,
    /// Tokens forwarders authenticate with, one per line (`tls.token_file`).
    #[arg(long, value_name = "FILE")]
    keylog_token_file: Option<String>,
    /// A CA whose client certificates authenticate forwarders (`tls.client_ca`).
    #[arg(long, value_name = "PEM")]
    keylog_client_ca: Option<String>,
    /// Memory cap in MiB (0: none; at least 64): the reader queue, held out-of-order bytes
    /// and followed connections are sized to stay under it (`limits.memory_mib`).
    #[arg(long, value_name = "MIB")]
    memory_mib: Option<usize>,
    #[command(flatten)]
    cloudwatch: CloudWatchArgs,
    #[command(flatten)]
    detect: crate::detect::DetectArgs,
}

impl Common {
    fn ports(&self) -> Vec<(u16, u8)> {
        self.settings.ports()
    }

    fn config(&self, pass_mirrored: bool) -> SensorConfig {
        let cap = &self.settings.capture;
        let mut c = SensorConfig {
            payload_cap: cap.payload_cap,
            tail_cap: cap.tail_cap.min(cap.payload_cap),
            ..SensorConfig::default()
        };
        if pass_mirrored {
            c.flags &= !config_flags::DROP_MIRRORED;
        }
        c
    }

    fn limits(&self) -> &crate::config::Limits {
        &self.settings.limits
    }

    /// The file's settings over the defaults, then every switch given over those: the one
    /// merge of the three.
    fn overlay(&mut self, live: Option<&LiveArgs>, iface: Option<&str>) -> Result<()> {
        let mut s = match &self.config {
            Some(path) => {
                let file = crate::config::Config::load(path)?;
                self.file = Some(file.clone());
                file
            }
            None => crate::config::Config::default(),
        };
        if !self.ports.is_empty() {
            s.database.ports = self
                .ports
                .iter()
                .map(|&(port, p)| match p {
                    sensor_common::proto::UNKNOWN => port.to_string(),
                    p => format!("{port}={}", sensor_common::proto::name(p)),
                })
                .collect();
        }
        s.output.json |= self.json;
        s.output.tui &= !self.no_tui;
        s.output.quiet |= self.quiet;
        s.output
            .files
            .extend(self.record_files.iter().map(|f| crate::config::RecordFile {
                path: f.path.display().to_string(),
                kinds: f.kinds.clone(),
            }));
        s.redaction.redact &= !self.no_redact;
        s.tls.keylog.extend(self.tls_keylog.iter().cloned());
        for (to, v) in [
            (&mut s.tls.listen, &self.keylog_listen),
            (&mut s.tls.cert, &self.keylog_cert),
            (&mut s.tls.key, &self.keylog_key),
            (&mut s.tls.token_file, &self.keylog_token_file),
            (&mut s.tls.client_ca, &self.keylog_client_ca),
        ] {
            if let Some(v) = v {
                *to = v.clone();
            }
        }
        if let Some(addr) = self.prometheus {
            s.output.prometheus = addr.to_string();
        }
        fn set<T>(to: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *to = v;
            }
        }
        set(&mut s.capture.payload_cap, self.payload_cap);
        set(&mut s.capture.tail_cap, self.tail_cap);
        set(&mut s.limits.flow_idle_timeout_s, self.flow_idle_timeout);
        set(&mut s.output.rotate_mib, self.rotate_mib);
        set(&mut s.output.rotate_interval_s, self.rotate_interval);
        set(&mut s.output.rotate_keep, self.rotate_keep);
        set(&mut s.limits.memory_mib, self.memory_mib);
        if let Some(l) = live {
            set(&mut s.capture.xdp_mode, l.mode.map(Into::into));
            set(&mut s.capture.ring_size, l.ring_size);
            set(&mut s.capture.rings, l.rings);
            set(&mut s.capture.workers, l.workers);
            set(&mut s.limits.flow_entries, l.flow_entries);
            set(&mut s.output.summary_interval_s, l.summary_interval);
            s.capture.pass_mirrored |= l.pass_mirrored;
        }
        if let Some(i) = iface.filter(|i| !i.is_empty()) {
            s.capture.interface = i.to_string();
        }
        // `--db-instance` for a server the file names too: the switch wins.
        for (server, id) in &self.cloudwatch.db_instances {
            s.instances.insert(server.clone(), id.clone());
        }
        s.detect.overlay(&self.detect);
        // The CloudWatch sinks take their settings as a hand-off (their crate has its own).
        let cw = &mut self.cloudwatch;
        cw.cloudwatch |= s.cloudwatch_enabled();
        cw.file_settings = s.cloudwatch_settings();
        cw.db_instances = s.instances.clone().into_iter().collect();
        cw.instance_map = s.detect.instance_map_path();
        self.settings = s;
        Ok(())
    }

    /// The TLS layer every session that switches to TLS gets: with the key logs' secrets
    /// (`follow`: a thread keeps reading them as they grow), or without any, for what the
    /// clear handshake shows.
    fn tls_layers(&self, follow: bool) -> Result<crate::session::Layers> {
        use crate::session::tls::{self, Hold, KeyLogFiles, KeyStore};
        let t = &self.settings.tls;
        let store = KeyStore::new(t.max_keys, follow.then(|| Duration::from_secs(t.key_ttl_s)));
        let receiver = follow && !t.listen.is_empty();
        let hold = if t.keylog.is_empty() && !receiver {
            // No key can come: a session is judged at its first protected record.
            Hold {
                bytes: 0,
                wait_ns: 0,
                total: 0,
            }
        } else {
            Hold {
                bytes: t.hold_kib.saturating_mul(1024),
                wait_ns: t.key_wait_s.saturating_mul(1_000_000_000),
                // Within the memory cap: at most an eighth of it.
                total: match self.settings.limits.memory_mib {
                    0 => t.hold_total_mib,
                    cap => t.hold_total_mib.min(cap / 8),
                }
                .saturating_mul(1 << 20),
            }
        };
        if !t.keylog.is_empty() {
            let mut files = KeyLogFiles::new(&t.keylog)?;
            let n = files.poll(&store)?;
            tracing::info!(secrets = n, sources = t.keylog.len(), "TLS key logs read");
            if follow {
                let store = store.clone();
                // SIGHUP re-reads every key log from its start (a log replaced in place).
                let rewind = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                if let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                {
                    let rewind = rewind.clone();
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            rewind.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
                std::thread::Builder::new()
                    .name("tls-keylog".into())
                    .spawn(move || {
                        let mut failing = false;
                        loop {
                            std::thread::sleep(Duration::from_millis(200));
                            if rewind.swap(false, std::sync::atomic::Ordering::Relaxed) {
                                files.rewind();
                                tracing::info!("SIGHUP: reading the TLS key logs again");
                            }
                            match files.poll(&store) {
                                Ok(_) => failing = false,
                                Err(e) if !failing => {
                                    failing = true;
                                    tracing::warn!(error = %e, "TLS key log unreadable");
                                }
                                Err(_) => {}
                            }
                        }
                    })?;
            }
        }
        if receiver {
            let path = |s: &str, what: &str| -> Result<PathBuf> {
                if s.is_empty() {
                    bail!("--keylog-listen needs {what}");
                }
                Ok(PathBuf::from(s))
            };
            let client_ca = (!t.client_ca.is_empty()).then(|| PathBuf::from(&t.client_ca));
            let tokens = match (t.token_file.is_empty(), &client_ca) {
                (false, _) => crate::keyship::read_tokens(std::path::Path::new(&t.token_file))?,
                (true, Some(_)) => Vec::new(),
                (true, None) => bail!(
                    "--keylog-listen needs --keylog-token-file or --keylog-client-ca: the receiver takes no unauthenticated peer"
                ),
            };
            crate::keyship::receive::start(
                &crate::keyship::receive::ReceiverOptions {
                    listen: t
                        .listen
                        .parse()
                        .with_context(|| format!("--keylog-listen {}: not ADDR:PORT", t.listen))?,
                    cert: path(&t.cert, "--keylog-cert")?,
                    key: path(&t.key, "--keylog-key")?,
                    tokens,
                    client_ca,
                },
                store.clone(),
            )?;
        }
        Ok(tls::layers(store, hold))
    }

    fn pipeline(
        &self,
        clock: Clock,
        extra: Vec<Box<dyn Sink>>,
        follow_keys: bool,
    ) -> Result<Pipeline> {
        let s = &self.settings;
        let limits = self.limits();
        let budget = crate::config::MemoryBudget::of(limits);
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        match &self.screen {
            Some(screen) => sinks.push(Box::new(screen.clone())),
            None if s.output.quiet => {}
            // With a sink that prints too (--metrics-sink stdout), every line is JSON: stdout
            // stays one stream a program can read.
            None => sinks.push(Box::new(Stdout::new(
                s.output.json || self.cloudwatch.prints(),
            ))),
        }
        if !s.output.files.is_empty() {
            let specs: Vec<_> = s.output.files.iter().map(|f| f.spec()).collect();
            sinks.push(Box::new(crate::sinks::file::Files::open(
                &specs,
                s.output.rotation(),
            )?));
        }
        // Stdout first: its buffer is flushed (whole lines) before a sink that prints.
        sinks.extend(extra);
        let sink: Box<dyn Sink> = if sinks.len() == 1 {
            sinks.pop().expect("one")
        } else {
            Box::new(Fanout(sinks))
        };
        Ok(Pipeline::new(
            PipelineOptions {
                ports: self.ports(),
                timeouts: FlowTimeouts {
                    idle_ns: s.limits.flow_idle_timeout_s * 1_000_000_000,
                    ..FlowTimeouts::default()
                },
                clock,
                redact: s.redaction.redact,
                flow_capacity: budget.flows,
                detector: match s.detect.is_on() {
                    true => {
                        let mut o = s.detect.options();
                        o.tls_keys_expected = !s.tls.keylog.is_empty();
                        Some(crate::detect::Detector::new(o, clock)?)
                    }
                    false => None,
                },
                streams: crate::reassembly::StreamLimits {
                    max_connections: budget.connections,
                    max_held_segments: limits.held_segments,
                    max_held_bytes: limits.held_bytes,
                    max_held_total: budget.held_bytes_total,
                    closed_keep_ns: (s.limits.flow_idle_timeout_s.max(300) * 2)
                        .saturating_mul(1_000_000_000),
                    ..crate::reassembly::StreamLimits::default()
                },
                latency_keys: limits.fingerprints,
                latency_top_n: limits.top_fingerprints,
            },
            sink,
        )
        .with_layers(self.tls_layers(follow_keys)?))
    }
}

#[derive(Args, Clone)]
struct LiveArgs {
    /// native, generic, or auto (native with a fallback to generic; `capture.xdp_mode`).
    #[arg(long, value_enum)]
    mode: Option<AttachMode>,
    /// Ring buffer bytes (power of two; `capture.ring_size`). Rule: rate × record size ×
    /// worst reader delay.
    #[arg(long)]
    ring_size: Option<u32>,
    /// Bytes waiting in the ring that force a wakeup of the reader (which otherwise drains
    /// every 2 ms); 0: the ring's adaptive wakeups. Default: an eighth of the ring.
    #[arg(long)]
    wakeup_bytes: Option<u32>,
    /// Kernel flow-table entries (LRU; `limits.flow_entries`).
    #[arg(long)]
    flow_entries: Option<u32>,
    /// Event rings, each with its reader thread (`capture.rings`); 0: one per CPU, up to 8.
    #[arg(long)]
    rings: Option<u16>,
    /// Worker threads the connections are sharded across (`capture.workers`); 0: one per
    /// two CPUs (the other CPU of each pair takes the NIC's queues and the ring readers).
    #[arg(long)]
    workers: Option<u16>,
    /// Let VXLAN mirror copies through to the host stack instead of consuming them.
    #[arg(long)]
    pass_mirrored: bool,
    /// Seconds between summaries (`output.summary_interval_s`).
    #[arg(long)]
    summary_interval: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Load this eBPF object instead of the embedded one.
    #[arg(long)]
    ebpf_object: Option<PathBuf>,
}

impl LiveArgs {
    fn live(&self, common: &Common) -> LiveOptions {
        let s = &common.settings;
        LiveOptions {
            ports: common.ports(),
            config: common.config(s.capture.pass_mirrored),
            ring_bytes: s.capture.ring_size,
            rings: (s.capture.rings > 0).then_some(s.capture.rings),
            flow_entries: s.limits.flow_entries,
            object: self.ebpf_object.clone(),
            wakeup_bytes: self.wakeup_bytes,
        }
    }

    fn agent(&self, common: &Common) -> AgentOptions {
        AgentOptions {
            summary_every: Duration::from_secs(common.settings.output.summary_interval_s.max(1)),
            workers: match common.settings.capture.workers {
                0 => crate::agent::default_workers(),
                n => n as usize,
            },
            ..AgentOptions::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Interface to attach to (or `capture.interface` of --config).
    #[arg(long, short)]
    iface: Option<String>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// pcap or pcapng file (Ethernet, Linux cooked SLL/SLL2, raw IP or BSD loopback).
    file: PathBuf,
    /// Also write a self-contained HTML report here: latency histograms and percentiles over
    /// time (SVG) per server and top fingerprint, logins, findings with their evidence.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct DemoArgs {
    /// Directory with the captures to replay.
    #[arg(long, default_value = "pcaps")]
    pcaps: PathBuf,
    /// Replay at this many packets per second instead of the captures' own timing (whose
    /// latencies are the recorded ones; at a fixed rate every latency is the pacing).
    #[arg(long)]
    pps: Option<u32>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    live: LiveArgs,
}

/// Runs the command line and exits: 0 on success, 1 with the error on stderr.
pub fn main(ext: Option<&dyn Extension>) {
    if let Err(e) = run(ext) {
        eprintln!("rds-sensor: error: {e:#}");
        std::process::exit(1);
    }
}

/// The extension's sinks for these switches, or none when CloudWatch is off.
fn extra_sinks(ext: Option<&dyn Extension>, common: &Common, mode: Mode) -> Result<ExtraSinks> {
    match ext {
        Some(ext) if common.cloudwatch.enabled() => ext.sinks(&common.cloudwatch, mode),
        _ => Ok(ExtraSinks::default()),
    }
}

fn finish(finish: Option<Box<dyn FnOnce() -> Result<()>>>) -> Result<()> {
    finish.map_or(Ok(()), |f| f())
}

/// Parses the command line and runs it.
pub fn run(ext: Option<&dyn Extension>) -> Result<()> {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Config(c) = &cli.command {
        return config_command(c);
    }
    if let Command::KeylogForward(f) = &cli.command {
        return keylog_forward(f);
    }
    if let Command::Assets(a) = &cli.command {
        return assets(a);
    }
    if let Command::Aws(a) = &cli.command {
        return aws_command(ext, a);
    }
    match &mut cli.command {
        Command::Run(r) => {
            r.common.overlay(Some(&r.live), r.iface.as_deref())?;
            if r.common.settings.capture.interface.is_empty() {
                bail!("no interface: give --iface, or capture.interface in a --config file");
            }
        }
        Command::Analyze(a) => a.common.overlay(None, None)?,
        Command::Demo(d) => d.common.overlay(Some(&d.live), None)?,
        Command::Config(_) | Command::KeylogForward(_) | Command::Assets(_) | Command::Aws(_) => {
            unreachable!("handled above")
        }
    }
    let common = match &cli.command {
        Command::Run(r) => &r.common,
        Command::Analyze(a) => &a.common,
        Command::Demo(d) => &d.common,
        Command::Config(_) | Command::KeylogForward(_) | Command::Assets(_) | Command::Aws(_) => {
            unreachable!("handled above")
        }
    };
    if ext.is_none() && common.cloudwatch.enabled() {
        return delegate("CloudWatch (or discovery, or mirror reconciling)");
    }
    // The dashboard when run/demo write to a terminal (log lines then go to its panel).
    let mut dashboard = use_dashboard(&cli.command).then(crate::sinks::tui::Dashboard::new);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(dashboard.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(match &dashboard {
            Some(d) => d.log_writer(),
            None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
        })
        .init();
    // `q` on the dashboard: part of the agent's shutdown future below.
    let quit = match (&mut dashboard, &mut cli.command) {
        (
            Some(d),
            Command::Run(RunArgs { common, .. }) | Command::Demo(DemoArgs { common, .. }),
        ) => {
            let (screen, quit) = d.start()?;
            common.screen = Some(screen);
            Some(quit)
        }
        _ => None,
    };
    match cli.command {
        Command::Analyze(a) => {
            let mut extra = extra_sinks(ext, &a.common, Mode::Offline)?;
            let report = a
                .report
                .as_ref()
                .map(|p| crate::report::Report::new(p.clone(), a.file.display().to_string()));
            if let Some(r) = &report {
                extra.sinks.push(Box::new(r.clone()));
            }
            let progress = crate::report::progress::Progress::start(&a.file);
            let mut pipeline = a.common.pipeline(Clock::default(), extra.sinks, false)?;
            let opts = OfflineOptions {
                ports: a.common.ports(),
                config: a.common.config(false),
                flow_capacity: a.common.limits().offline_flows,
            };
            let out = offline::analyze(&a.file, &opts, &mut pipeline);
            // The sinks see the end of their input when the pipeline drops them.
            drop(pipeline);
            drop(progress);
            if let Some(r) = &report {
                r.write()?;
                tracing::info!(report = %r.path().display(), "report written");
            }
            let shipped = finish(extra.finish);
            let out = out?;
            tracing::debug!(frames = out.frames, "analyzed");
            if let Some(cut) = &out.cut_off {
                eprintln!(
                    "rds-sensor: warning: {}: the capture is cut off in its last record ({cut}); \
                     the {} frames before it were analyzed",
                    a.file.display(),
                    out.frames
                );
            }
            shipped
        }
        Command::Run(r) => {
            let extra = extra_sinks(ext, &r.common, Mode::Live)?;
            let rt = runtime()?;
            rt.block_on(async {
                // Watch the signals before attaching, so that one arriving in between still
                // ends in a clean detach and a last summary.
                let stop = or_quit(shutdown(r.live.duration)?, quit);
                let iface = &r.common.settings.capture.interface;
                let mut sensor = Sensor::load(&r.live.live(&r.common))?;
                let mode = sensor.attach(iface, r.common.settings.capture.xdp_mode.into())?;
                tracing::info!(iface = %iface, mode, "attached");
                // Down/up and renames: still attached. Deleted: stop, then exit with an error.
                let (deleted, gone) = crate::ifwatch::watch(iface, Duration::from_millis(500))?;
                let report = agent::run(
                    &mut sensor,
                    r.common.pipeline(
                        Clock::monotonic(),
                        with_prometheus(&r.common, extra.sinks).await?,
                        true,
                    )?,
                    agent_options(&r.live, &r.common)?,
                    async {
                        tokio::select! { _ = stop => {}, _ = deleted => {} }
                    },
                )
                .await?;
                gone.check(iface)?;
                sensor.detach()?;
                tracing::info!(
                    events = report.events,
                    queue_dropped = report.queue_dropped,
                    "detached"
                );
                Ok::<_, anyhow::Error>(())
            })?;
            finish(extra.finish)
        }
        Command::Demo(mut d) => {
            let extra = extra_sinks(ext, &d.common, Mode::Live)?;
            let pcaps = demo::find_pcaps(&d.pcaps)?;
            // A capture's key log beside it (`x.pcap`, `x.keys`) is read too: the bundled
            // TLS captures come with theirs.
            for p in &pcaps {
                let keys = p.with_extension("keys");
                if keys.is_file() && !d.common.settings.tls.keylog.contains(&keys) {
                    d.common.settings.tls.keylog.push(keys);
                }
            }
            let rt = runtime()?;
            rt.block_on(async {
                let stop = or_quit(shutdown(d.live.duration)?, quit);
                demo::run(
                    DemoOptions {
                        pcaps,
                        pps: d.pps,
                        mode: d.common.settings.capture.xdp_mode.into(),
                    },
                    d.live.live(&d.common),
                    d.common.pipeline(
                        Clock::monotonic(),
                        with_prometheus(&d.common, extra.sinks).await?,
                        true,
                    )?,
                    agent_options(&d.live, &d.common)?,
                    stop,
                )
                .await?;
                Ok::<_, anyhow::Error>(())
            })?;
            finish(extra.finish)
        }
        Command::Config(_) | Command::KeylogForward(_) | Command::Assets(_) | Command::Aws(_) => {
            unreachable!("handled above")
        }
    }
}

/// The agent's options; with --config, a task that re-reads the file on SIGHUP and hands what
/// can change live (`config::Reloadable`) to the pipeline thread. Must run inside the runtime.
fn agent_options(live: &LiveArgs, common: &Common) -> Result<AgentOptions> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut opts = live.agent(common);
    let limits = common.limits();
    crate::config::MemoryBudget::check(
        limits.memory_mib,
        common.settings.capture.ring_size,
        "--memory-mib",
        "--ring-size",
    )?;
    opts.queue_bytes = crate::config::MemoryBudget::of(limits).queue_bytes;
    let (Some(path), Some(first)) = (&common.config, &common.file) else {
        return Ok(opts);
    };
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    opts.reload = Some(slot.clone());
    let mut hup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let (path, mut current) = (path.clone(), first.clone());
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match crate::config::Config::load(&path) {
                Ok(new) => {
                    let restart = current.needs_restart(&new);
                    if !restart.is_empty() {
                        tracing::warn!(
                            sections = restart.join("; "),
                            "SIGHUP: these changed and take effect only after a restart"
                        );
                    }
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(new.reloadable());
                    }
                    current = new;
                }
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "SIGHUP: configuration not reloaded, the running one is kept"
                ),
            }
        }
    });
    Ok(opts)
}

/// With --prometheus, starts `/metrics` and adds its sink.
async fn with_prometheus(
    common: &Common,
    mut sinks: Vec<Box<dyn Sink>>,
) -> Result<Vec<Box<dyn Sink>>> {
    let listen = &common.settings.output.prometheus;
    if !listen.is_empty() {
        let addr = crate::sinks::prometheus::parse_listen(listen)
            .map_err(|e| anyhow::anyhow!("output.prometheus: {e}"))?;
        let p = crate::sinks::prometheus::Prometheus::new(crate::aggregate::Instances::new(
            common.settings.instances.clone(),
        ));
        let local = p.clone().serve(addr).await?;
        tracing::info!(address = %local, "Prometheus metrics at http://{local}/metrics");
        sinks.push(Box::new(p));
    }
    Ok(sinks)
}

/// Whether `run` / `demo` show the dashboard: stdout is a terminal, and neither --no-tui,
/// --json nor a sink that prints (--metrics-sink stdout) is asked for.
fn use_dashboard(cmd: &Command) -> bool {
    let common = match cmd {
        Command::Run(r) => &r.common,
        Command::Demo(d) => &d.common,
        _ => return false,
    };
    common.settings.output.tui
        && !common.settings.output.json
        && !common.settings.output.quiet
        && !common.cloudwatch.prints()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// The shutdown future, also resolved by `q` on the dashboard.
async fn or_quit(
    stop: impl std::future::Future<Output = ()>,
    quit: Option<impl std::future::Future<Output = ()>>,
) {
    match quit {
        Some(quit) => tokio::select! {
            _ = stop => {}
            _ = quit => tracing::info!("q: stopping"),
        },
        None => stop.await,
    }
}

/// `rds-sensor aws …`: the spec checked here, before any binary or credential is looked for.
fn aws_command(ext: Option<&dyn Extension>, a: &AwsArgs) -> Result<()> {
    let AwsCommand::Mirror(m) = &a.command;
    let spec = match &m.spec {
        Some(path) => MirrorSpec::load(path)?.overridden_by(&m.switches),
        None => m.switches.clone(),
    };
    spec.validate()?;
    let Some(ext) = ext else {
        return delegate("`aws mirror`");
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    ext.mirror(m.action, &spec)
}

/// `rds-sensor config`.
fn config_command(c: &ConfigArgs) -> Result<()> {
    if let Some(path) = &c.check {
        crate::config::Config::load(path)?;
        println!("{}: ok", path.display());
    } else if c.print_default {
        print!("{}", crate::config::DEFAULT_TOML);
    } else {
        bail!("`rds-sensor config` needs --print-default or --check FILE");
    }
    Ok(())
}

/// Runs [`CLOUDWATCH_BINARY`] from this binary's directory in place of this process, with the
/// same arguments: `rds-sensor` has no AWS SDK in it, and the operator switches work from it
/// all the same.
fn delegate(what: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(DELEGATED_ENV).is_some() {
        bail!("{what} was asked for, but this binary has no AWS SDK built in");
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    let companion = exe.with_file_name(CLOUDWATCH_BINARY);
    if !companion.is_file() {
        bail!(
            "{what} was asked for, but this rds-sensor is built without the AWS SDK and {} is not beside it; \
             install the rds-sensor-cloudwatch package, or build it with `cargo build --release -p sensor-cloudwatch` \
             (it runs the same command line with the AWS SDK built in)",
            companion.display()
        );
    }
    let err = std::process::Command::new(&companion)
        .args(std::env::args_os().skip(1))
        .env(DELEGATED_ENV, "1")
        .exec();
    Err(err).with_context(|| format!("running {}", companion.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Watches SIGINT and SIGTERM from the moment it is called; the future resolves on either, or
/// when the duration is over.
fn keylog_forward(a: &KeylogForwardArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let token = match &a.token_file {
        Some(f) => crate::keyship::read_tokens(f)?.into_iter().next(),
        None => None,
    };
    let opts = crate::keyship::forward::ForwardOptions {
        file: a.file.clone(),
        to: a.to.clone(),
        server_name: a.server_name.clone(),
        ca: a.ca.clone(),
        token,
        cert: a.cert.clone().zip(a.key.clone()),
        from_end: a.from_end,
    };
    runtime()?.block_on(async { crate::keyship::forward::run(opts, shutdown(None)?).await })
}

fn shutdown(duration: Option<u64>) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        let timer = async {
            match duration {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = timer => tracing::info!("duration reached: stopping"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn analyze(args: &[&str]) -> Common {
        let mut cli = Cli::try_parse_from(
            ["rds-sensor", "analyze", "x.pcap"]
                .iter()
                .chain(args)
                .copied(),
        )
        .unwrap();
        let Command::Analyze(a) = &mut cli.command else {
            unreachable!()
        };
        a.common.overlay(None, None).unwrap();
        a.common.clone()
    }

    /// The defaults come from one place; the file overrides them, and a switch the file.
    #[test]
    fn settings_are_defaults_then_the_file_then_the_switches() {
        let defaults = crate::config::Config::default();
        assert_eq!(analyze(&[]).settings, defaults);
        let dir = std::env::temp_dir().join(format!("settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[capture]\npayload_cap = 100\ntail_cap = 10\n[limits]\nflow_idle_timeout_s = 7\n\
             [instances]\n\"10.0.0.5:5432\" = \"from-file\"\n[detect]\nlearning_period_s = 60\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = analyze(&["--config", f]);
        assert_eq!(c.settings.capture.payload_cap, 100);
        assert_eq!(c.settings.capture.tail_cap, 10);
        assert_eq!(c.settings.limits.flow_idle_timeout_s, 7);
        assert_eq!(
            c.settings.limits.held_bytes, defaults.limits.held_bytes,
            "what the file does not name keeps its default"
        );
        assert!(
            c.settings.detect.is_on(),
            "a learning period other than the default"
        );
        let c = analyze(&[
            "--config",
            f,
            "--payload-cap",
            "200",
            "--db-instance",
            "10.0.0.5:5432=from-switch",
            "--port",
            "7777",
            "--no-redact",
        ]);
        assert_eq!(c.settings.capture.payload_cap, 200);
        assert_eq!(c.settings.capture.tail_cap, 10);
        assert_eq!(c.settings.instances["10.0.0.5:5432"], "from-switch");
        assert_eq!(c.ports(), [(7777, sensor_common::proto::UNKNOWN)]);
        assert!(!c.settings.redaction.redact);
        assert_eq!(
            c.cloudwatch.db_instances,
            [("10.0.0.5:5432".to_string(), "from-switch".to_string())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
