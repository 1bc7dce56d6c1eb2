//! `rds-sensor`: the agent binary.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use rds_sensor::{
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
    sinks::stdout::Stdout,
};
use sensor_common::{DEFAULT_DB_PORTS, MAX_PAYLOAD_CAP, SensorConfig, config_flags};
use std::{path::PathBuf, time::Duration};

#[derive(Parser)]
#[command(
    name = "rds-sensor",
    version,
    about = "XDP traffic analyzer for database traffic mirrored from Amazon RDS/Aurora"
)]
struct Cli {
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

    fn pipeline(&self, clock: Clock) -> Pipeline {
        Pipeline::new(
            PipelineOptions {
                ports: self.ports(),
                timeouts: FlowTimeouts {
                    idle_ns: self.flow_idle_timeout * 1_000_000_000,
                    ..FlowTimeouts::default()
                },
                clock,
                redact: !self.no_redact,
                ..PipelineOptions::default()
            },
            Box::new(Stdout::new(self.json)),
        )
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

fn main() {
    if let Err(e) = real_main() {
        eprintln!("rds-sensor: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Analyze(a) => {
            let mut pipeline = a.common.pipeline(Clock::default());
            let opts = OfflineOptions {
                ports: a.common.ports(),
                config: a.common.config(false),
                flow_capacity: 1 << 20,
            };
            let out = offline::analyze(&a.file, &opts, &mut pipeline)?;
            tracing::debug!(frames = out.frames, "analyzed");
            Ok(())
        }
        Command::Run(r) => {
            let rt = runtime()?;
            rt.block_on(async {
                let mut sensor = Sensor::load(&r.live.live(&r.common))?;
                let mode = sensor.attach(&r.iface, r.live.mode)?;
                tracing::info!(iface = %r.iface, mode, "attached");
                let report = agent::run(
                    &mut sensor,
                    r.common.pipeline(Clock::monotonic()),
                    r.live.agent(),
                    shutdown(r.live.duration),
                )
                .await?;
                sensor.detach()?;
                tracing::info!(
                    events = report.events,
                    queue_dropped = report.queue_dropped,
                    "detached"
                );
                Ok(())
            })
        }
        Command::Demo(d) => {
            let rt = runtime()?;
            rt.block_on(async {
                let pcaps = demo::find_pcaps(&d.pcaps)?;
                demo::run(
                    DemoOptions {
                        pcaps,
                        pps: d.pps,
                        mode: d.live.mode,
                    },
                    d.live.live(&d.common),
                    d.common.pipeline(Clock::monotonic()),
                    d.live.agent(),
                    shutdown(d.live.duration),
                )
                .await?;
                Ok(())
            })
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Resolves on SIGINT, SIGTERM or when the duration is over.
async fn shutdown(duration: Option<u64>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    let timer = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = timer => tracing::info!("duration reached: stopping"),
    }
}
