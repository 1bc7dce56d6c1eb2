//! CloudWatch for rds-sensor, on the official AWS SDK for Rust: latency distributions, counters
//! and sensor health with PutMetricData; findings (and, sampled and redacted, query and login
//! records) to CloudWatch Logs; findings to EventBridge.
//!
//! It is its own crate so that the SDK (minutes to build) stays out of the core's build: the
//! `rds-sensor` binary (crate `sensor-user`) has no SDK in it. This crate builds
//! `rds-sensor-cloudwatch`, the same command line ([`rds_sensor::cli`]) with the CloudWatch
//! sinks added through [`CloudWatchExtension`]; `rds-sensor` asked for CloudWatch runs it.
//!
//! - [`sink::CloudWatchSink`] (a [`rds_sensor::sinks::Sink`]) aggregates records per period
//!   ([`aggregate`]) into data ([`model`]), latency as HdrHistogram-bucketed distributions
//!   ([`distribution`]);
//! - [`ship::Shipper`] sends them from a bounded queue on its own thread;
//! - [`securityhub`] sends every finding to AWS Security Hub (ASFF, BatchImportFindings), on
//!   its own queue and thread: with `--securityhub` alone it is the only sink;
//! - [`discover`] names servers by what AWS says is there (`--discover rds`);
//! - [`mirror`] keeps the VPC Traffic Mirroring from RDS in place (`rds-sensor aws mirror`,
//!   `--mirror-reconcile`).

pub mod aggregate;
pub mod config;
pub mod discover;
pub mod distribution;
pub mod mirror;
pub mod model;
pub mod securityhub;
pub mod ship;
pub mod sink;

pub use config::Config;
use rds_sensor::cli::{CloudWatchArgs, Extension, ExtraSinks, MirrorAction, MirrorSpec, Mode};
use ship::{Shared, Shipper};
use sink::CloudWatchSink;
use std::sync::Arc;

/// A sink and, unless it prints (`metrics_sink: stdout`), the shipper behind it, on the
/// standard AWS configuration chains.
pub fn start(cfg: Config, mode: Mode) -> anyhow::Result<(CloudWatchSink, Option<Shipper>)> {
    start_with(cfg, mode, None)
}

/// [`start`] with an SDK configuration of the caller's (credentials, region, endpoint).
pub fn start_with(
    cfg: Config,
    mode: Mode,
    sdk: Option<aws_config::SdkConfig>,
) -> anyhow::Result<(CloudWatchSink, Option<Shipper>)> {
    cfg.validate()?;
    let cfg = Arc::new(cfg);
    match cfg.metrics_sink {
        config::SinkKind::Stdout => Ok((CloudWatchSink::new(cfg, mode, None), None)),
        config::SinkKind::Cloudwatch => {
            let shared = Arc::new(Shared::new(&cfg));
            let shipper = Shipper::start(cfg.clone(), shared.clone(), sdk)?;
            Ok((CloudWatchSink::new(cfg, mode, Some(shared)), Some(shipper)))
        }
    }
}

/// What the pipeline waits for once it has finished.
type Finish = Box<dyn FnOnce() -> anyhow::Result<()>>;

/// Adds the CloudWatch sinks (and Security Hub's) to the `rds-sensor` command line.
pub struct CloudWatchExtension;

impl Extension for CloudWatchExtension {
    fn mirror(&self, action: MirrorAction, spec: &MirrorSpec) -> anyhow::Result<()> {
        mirror::command(action, spec)
    }

    fn sinks(&self, args: &CloudWatchArgs, mode: Mode) -> anyhow::Result<ExtraSinks> {
        let cfg = Config::from_args(args)?;
        let mut extra = ExtraSinks::default();
        let mut finishes: Vec<Finish> = Vec::new();
        // Names first: the sinks and the detector find them in place from the first record.
        if let Some(d) = discover::start(args, &cfg)? {
            finishes.push(Box::new(move || {
                drop(d);
                Ok(())
            }));
        }
        if let Some(r) = mirror::start(args.mirror_reconcile.as_deref(), &cfg)? {
            finishes.push(Box::new(move || {
                drop(r);
                Ok(())
            }));
        }
        if args.cloudwatch_enabled() {
            let (sink, shipper) = start(cfg.clone(), mode)?;
            extra.sinks.push(Box::new(sink));
            if let Some(s) = shipper {
                finishes.push(Box::new(move || s.finish().map(|_| ())));
            }
        }
        if cfg.securityhub {
            let (sink, shipper) = securityhub::start(cfg, mode, None)?;
            extra.sinks.push(Box::new(sink));
            if let Some(s) = shipper {
                finishes.push(Box::new(move || s.finish().map(|_| ())));
            }
        }
        // Every shipper gets its time to drain, whichever fails first.
        extra.finish = (!finishes.is_empty()).then(|| {
            Box::new(move || {
                let errors: Vec<String> = finishes
                    .into_iter()
                    .filter_map(|f| f().err().map(|e| format!("{e:#}")))
                    .collect();
                match errors.is_empty() {
                    true => Ok(()),
                    false => Err(anyhow::anyhow!(errors.join("; "))),
                }
            }) as Finish
        });
        Ok(extra)
    }
}
