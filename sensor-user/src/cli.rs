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
use sensor_common::{DEFAULT_DB_PORTS, MAX_PAYLOAD_CAP, SensorConfig, config_flags};
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
    /// True when any switch asks for the CloudWatch sinks.
    pub fn enabled(&self) -> bool {
        self.cloudwatch || self.cloudwatch_config.is_some() || self.metrics_sink.is_some()
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
    /// The file `--config` named, once read (limits come from it).
    #[arg(skip)]
    file: Option<crate::config::Config>,
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
    /// Payload bytes copied per segment (at most 4096).
    #[arg(long, default_value_t = sensor_common::DEFAULT_PAYLOAD_CAP, value_parser = clap::value_parser!(u16).range(0..=MAX_PAYLOAD_CAP as i64))]
    payload_cap: u16,
    /// Of those, bytes taken from the end of a segment longer than the cap.
    #[arg(long, default_value_t = sensor_common::DEFAULT_TAIL_CAP)]
    tail_cap: u16,
    /// Seconds without a segment after which a flow is reported and forgotten.
    #[arg(long, default_value_t = 300)]
    flow_idle_timeout: u64,
    /// Show query literals, parameters and authentication payloads (redacted by default).
    #[arg(long)]
    no_redact: bool,
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
        if self.ports.is_empty() {
            DEFAULT_DB_PORTS.to_vec()
        } else {
            self.ports.clone()
        }
    }

    fn config(&self, pass_mirrored: bool) -> SensorConfig {
        let mut c = SensorConfig {
            payload_cap: self.payload_cap,
            tail_cap: self.tail_cap.min(self.payload_cap),
            ..SensorConfig::default()
        };
        if pass_mirrored {
            c.flags &= !config_flags::DROP_MIRRORED;
        }
        c
    }

    /// The file's limits (or the defaults) with the switches that override them.
    fn limits(&self) -> crate::config::Limits {
        let mut limits = self
            .file
            .as_ref()
            .map(|f| f.limits.clone())
            .unwrap_or_default();
        if let Some(m) = self.memory_mib {
            limits.memory_mib = m;
        }
        limits
    }

    fn pipeline(&self, clock: Clock, extra: Vec<Box<dyn Sink>>) -> Result<Pipeline> {
        let limits = self.limits();
        let budget = crate::config::MemoryBudget::of(&limits);
        let stdout: Box<dyn Sink> = match &self.screen {
            Some(screen) => Box::new(screen.clone()),
            None => Box::new(Stdout::new(self.json)),
        };
        let sink = if extra.is_empty() {
            stdout
        } else {
            // Stdout first: its buffer is flushed (whole lines) before a sink that prints.
            Box::new(Fanout(std::iter::once(stdout).chain(extra).collect()))
        };
        Ok(Pipeline::new(
            PipelineOptions {
                ports: self.ports(),
                timeouts: FlowTimeouts {
                    idle_ns: self.flow_idle_timeout * 1_000_000_000,
                    ..FlowTimeouts::default()
                },
                clock,
                redact: !self.no_redact,
                detector: self.detect.detector(clock)?,
                streams: crate::reassembly::StreamLimits {
                    max_connections: budget.connections,
                    max_held_segments: limits.held_segments,
                    max_held_bytes: limits.held_bytes,
                    max_held_total: budget.held_bytes_total,
                    ..crate::reassembly::StreamLimits::default()
                },
                latency_keys: limits.fingerprints,
                latency_top_n: limits.top_fingerprints,
            },
            sink,
        ))
    }
}

#[derive(Args, Clone)]
struct LiveArgs {
    /// native, generic, or auto (native with a fallback to generic).
    #[arg(long, value_enum, default_value = "auto")]
    mode: AttachMode,
    /// Ring buffer bytes (power of two). Rule: rate × record size × worst reader delay.
    #[arg(long, default_value_t = 16 << 20)]
    ring_size: u32,
    /// Bytes waiting in the ring that force a wakeup of the reader (which otherwise drains
    /// every 2 ms); 0: the ring's adaptive wakeups. Default: an eighth of the ring.
    #[arg(long)]
    wakeup_bytes: Option<u32>,
    /// Kernel flow-table entries (LRU).
    #[arg(long, default_value_t = 262_144)]
    flow_entries: u32,
    /// Let VXLAN mirror copies through to the host stack instead of consuming them.
    #[arg(long)]
    pass_mirrored: bool,
    /// Seconds between summaries.
    #[arg(long, default_value_t = 10)]
    summary_interval: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Load this eBPF object instead of the embedded one.
    #[arg(long)]
    ebpf_object: Option<PathBuf>,
}

impl LiveArgs {
    fn live(&self, common: &Common) -> LiveOptions {
        LiveOptions {
            ports: common.ports(),
            config: common.config(self.pass_mirrored),
            ring_bytes: self.ring_size,
            flow_entries: self.flow_entries,
            object: self.ebpf_object.clone(),
            wakeup_bytes: self.wakeup_bytes,
        }
    }

    fn agent(&self) -> AgentOptions {
        AgentOptions {
            summary_every: Duration::from_secs(self.summary_interval.max(1)),
            ..AgentOptions::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Interface to attach to (or `capture.interface` of --config).
    #[arg(long, short, default_value = "", hide_default_value = true)]
    iface: String,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// pcap or pcapng file (Ethernet, Linux cooked SLL/SLL2 or raw IP).
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
    /// Replay rate in packets per second.
    #[arg(long, default_value_t = 2000)]
    pps: u32,
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
        Some(ext) if common.cloudwatch.enabled() => {
            let mut args = common.cloudwatch.clone();
            args.instance_map = common.detect.instance_map.clone();
            ext.sinks(&args, mode)
        }
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
    if let Some((_, sub)) = matches.subcommand() {
        apply_config_file(&mut cli.command, sub)?;
    }
    let common = match &cli.command {
        Command::Run(r) => &r.common,
        Command::Analyze(a) => &a.common,
        Command::Demo(d) => &d.common,
        Command::Config(_) => unreachable!("handled above"),
    };
    if ext.is_none() && common.cloudwatch.enabled() {
        return delegate();
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
            let mut pipeline = a.common.pipeline(Clock::default(), extra.sinks)?;
            let opts = OfflineOptions {
                ports: a.common.ports(),
                config: a.common.config(false),
                flow_capacity: a
                    .common
                    .file
                    .as_ref()
                    .map_or(1 << 20, |f| f.limits.offline_flows),
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
            shipped
        }
        Command::Run(r) => {
            let extra = extra_sinks(ext, &r.common, Mode::Live)?;
            let rt = runtime()?;
            rt.block_on(async {
                // Watch the signals before attaching, so that one arriving in between still
                // ends in a clean detach and a last summary.
                let stop = or_quit(shutdown(r.live.duration)?, quit);
                let mut sensor = Sensor::load(&r.live.live(&r.common))?;
                let mode = sensor.attach(&r.iface, r.live.mode)?;
                tracing::info!(iface = %r.iface, mode, "attached");
                // Down/up and renames: still attached. Deleted: stop, then exit with an error.
                let (deleted, gone) = crate::ifwatch::watch(&r.iface, Duration::from_millis(500))?;
                let report = agent::run(
                    &mut sensor,
                    r.common.pipeline(
                        Clock::monotonic(),
                        with_prometheus(&r.common, extra.sinks).await?,
                    )?,
                    agent_options(&r.live, &r.common)?,
                    async {
                        tokio::select! { _ = stop => {}, _ = deleted => {} }
                    },
                )
                .await?;
                gone.check(&r.iface)?;
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
        Command::Demo(d) => {
            let extra = extra_sinks(ext, &d.common, Mode::Live)?;
            let rt = runtime()?;
            rt.block_on(async {
                let stop = or_quit(shutdown(d.live.duration)?, quit);
                let pcaps = demo::find_pcaps(&d.pcaps)?;
                demo::run(
                    DemoOptions {
                        pcaps,
                        pps: d.pps,
                        mode: d.live.mode,
                    },
                    d.live.live(&d.common),
                    d.common.pipeline(
                        Clock::monotonic(),
                        with_prometheus(&d.common, extra.sinks).await?,
                    )?,
                    agent_options(&d.live, &d.common)?,
                    stop,
                )
                .await?;
                Ok::<_, anyhow::Error>(())
            })?;
            finish(extra.finish)
        }
        Command::Config(_) => unreachable!("handled above"),
    }
}

/// The agent's options; with --config, a task that re-reads the file on SIGHUP and hands what
/// can change live (`config::Reloadable`) to the pipeline thread. Must run inside the runtime.
fn agent_options(live: &LiveArgs, common: &Common) -> Result<AgentOptions> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut opts = live.agent();
    let limits = common.limits();
    crate::config::MemoryBudget::check(
        limits.memory_mib,
        live.ring_size,
        "--memory-mib",
        "--ring-size",
    )?;
    opts.queue_bytes = crate::config::MemoryBudget::of(&limits).queue_bytes;
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
    if let Some(addr) = common.prometheus {
        let p = crate::sinks::prometheus::Prometheus::new(crate::aggregate::Instances::new(
            common.cloudwatch.db_instances.iter().cloned(),
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
    !common.no_tui
        && !common.json
        && common.cloudwatch.metrics_sink != Some(MetricsSink::Stdout)
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

/// Whether a switch was given (command line or environment), so that it beats the file.
fn given(m: &clap::ArgMatches, id: &str) -> bool {
    use clap::parser::ValueSource;
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Reads `--config` and takes from it every setting no switch gave.
fn apply_config_file(cmd: &mut Command, m: &clap::ArgMatches) -> Result<()> {
    let (common, live, iface) = match cmd {
        Command::Run(r) => (&mut r.common, Some(&mut r.live), Some(&mut r.iface)),
        Command::Analyze(a) => (&mut a.common, None, None),
        Command::Demo(d) => (&mut d.common, Some(&mut d.live), None),
        Command::Config(_) => return Ok(()),
    };
    let Some(path) = common.config.clone() else {
        if iface.is_some_and(|i| i.is_empty()) {
            bail!("no interface: give --iface, or capture.interface in a --config file");
        }
        return Ok(());
    };
    let cfg = crate::config::Config::load(&path)?;
    let g = |id: &str| given(m, id);
    if !g("ports") {
        common.ports = cfg.ports();
    }
    if !g("json") {
        common.json = cfg.output.json;
    }
    if !g("no_tui") {
        common.no_tui = !cfg.output.tui;
    }
    if !g("payload_cap") {
        common.payload_cap = cfg.capture.payload_cap;
    }
    if !g("tail_cap") {
        common.tail_cap = cfg.capture.tail_cap;
    }
    if !g("flow_idle_timeout") {
        common.flow_idle_timeout = cfg.limits.flow_idle_timeout_s;
    }
    if !g("no_redact") {
        common.no_redact = !cfg.redaction.redact;
    }
    if !g("prometheus") && !cfg.output.prometheus.is_empty() {
        common.prometheus = cfg.output.prometheus.parse().ok();
    }
    let cw = &mut common.cloudwatch;
    if cfg.cloudwatch_enabled() {
        cw.cloudwatch = true;
    }
    cw.file_settings = cfg.cloudwatch_settings();
    // The file's first: a --db-instance for the same server comes later and wins.
    let mut instances: Vec<(String, String)> = cfg.instances.clone().into_iter().collect();
    instances.append(&mut cw.db_instances);
    cw.db_instances = instances;
    let (d, f) = (&mut common.detect, &cfg.detect);
    let defaults = crate::config::Detect::default();
    let path_of = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    d.detect |= f.enabled;
    if d.malicious_ips.is_empty() {
        d.malicious_ips = f.malicious_ips.iter().map(PathBuf::from).collect();
    }
    if d.tor_exits.is_empty() {
        d.tor_exits = f.tor_exits.iter().map(PathBuf::from).collect();
    }
    if d.allowed_cidrs.is_empty() {
        d.allowed_cidrs = cfg.allowed_cidrs();
    }
    d.instance_map = d.instance_map.take().or_else(|| path_of(&f.instance_map));
    d.baseline = d.baseline.take().or_else(|| path_of(&f.baseline));
    d.asn_db = d.asn_db.take().or_else(|| path_of(&f.asn_db));
    // Only values other than the defaults: any of these switches turns detection on.
    let set = |v: u64, default: u64| (v != default).then_some(v);
    d.learning_period = d
        .learning_period
        .or(set(f.learning_period_s, defaults.learning_period_s));
    d.finding_update_interval = d.finding_update_interval.or(set(
        f.finding_update_interval_s,
        defaults.finding_update_interval_s,
    ));
    d.baseline_save_interval = d.baseline_save_interval.or(set(
        f.baseline_save_interval_s,
        defaults.baseline_save_interval_s,
    ));
    d.thresholds = Some(f.thresholds.clone());
    if let Some(l) = live {
        if !g("mode") {
            l.mode = cfg.capture.xdp_mode.into();
        }
        if !g("ring_size") {
            l.ring_size = cfg.capture.ring_size;
        }
        if !g("flow_entries") {
            l.flow_entries = cfg.limits.flow_entries;
        }
        if !g("pass_mirrored") {
            l.pass_mirrored = cfg.capture.pass_mirrored;
        }
        if !g("summary_interval") {
            l.summary_interval = cfg.output.summary_interval_s;
        }
    }
    if let Some(iface) = iface {
        if iface.is_empty() {
            iface.clone_from(&cfg.capture.interface);
        }
        if iface.is_empty() {
            bail!(
                "no interface: give --iface, or capture.interface in {}",
                path.display()
            );
        }
    }
    common.file = Some(cfg);
    Ok(())
}

/// Runs [`CLOUDWATCH_BINARY`] from this binary's directory in place of this process, with the
/// same arguments: `rds-sensor` has no AWS SDK in it, and the operator switches work from it
/// all the same.
fn delegate() -> Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(DELEGATED_ENV).is_some() {
        bail!("CloudWatch was asked for, but this binary has no CloudWatch sink built in");
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    let companion = exe.with_file_name(CLOUDWATCH_BINARY);
    if !companion.is_file() {
        bail!(
            "CloudWatch was asked for, but this rds-sensor is built without the AWS SDK and {} is not beside it; \
             build it with `cargo build --release -p sensor-cloudwatch` (it runs the same command line with CloudWatch built in)",
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
