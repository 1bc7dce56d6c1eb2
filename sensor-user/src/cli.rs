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
    capture::{
        live::{AttachMode, LiveOptions, Sensor},
        offline::{self, OfflineOptions},
    },
    demo::{self, DemoOptions},
    flows::FlowTimeouts,
    pipeline::{Pipeline, PipelineOptions},
    ports::parse_port,
    records::Clock,
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
}

#[derive(Args, Clone)]
struct Common {
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

    fn pipeline(&self, clock: Clock, extra: Vec<Box<dyn Sink>>) -> Result<Pipeline> {
        let stdout: Box<dyn Sink> = Box::new(Stdout::new(self.json));
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
                ..PipelineOptions::default()
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
    /// Interface to attach to.
    #[arg(long, short)]
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
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Run(r) => &r.common,
        Command::Analyze(a) => &a.common,
        Command::Demo(d) => &d.common,
    };
    if ext.is_none() && common.cloudwatch.enabled() {
        return delegate();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Analyze(a) => {
            let extra = extra_sinks(ext, &a.common, Mode::Offline)?;
            let mut pipeline = a.common.pipeline(Clock::default(), extra.sinks)?;
            let opts = OfflineOptions {
                ports: a.common.ports(),
                config: a.common.config(false),
                flow_capacity: 1 << 20,
            };
            let out = offline::analyze(&a.file, &opts, &mut pipeline);
            // The sinks see the end of their input when the pipeline drops them.
            drop(pipeline);
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
                let stop = shutdown(r.live.duration)?;
                let mut sensor = Sensor::load(&r.live.live(&r.common))?;
                let mode = sensor.attach(&r.iface, r.live.mode)?;
                tracing::info!(iface = %r.iface, mode, "attached");
                let report = agent::run(
                    &mut sensor,
                    r.common.pipeline(Clock::monotonic(), extra.sinks)?,
                    r.live.agent(),
                    stop,
                )
                .await?;
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
                let stop = shutdown(d.live.duration)?;
                let pcaps = demo::find_pcaps(&d.pcaps)?;
                demo::run(
                    DemoOptions {
                        pcaps,
                        pps: d.pps,
                        mode: d.live.mode,
                    },
                    d.live.live(&d.common),
                    d.common.pipeline(Clock::monotonic(), extra.sinks)?,
                    d.live.agent(),
                    stop,
                )
                .await?;
                Ok::<_, anyhow::Error>(())
            })?;
            finish(extra.finish)
        }
    }
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
