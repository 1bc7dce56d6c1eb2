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
//! - [`ship::Shipper`] sends them from a bounded queue on its own thread.

pub mod aggregate;
pub mod config;
pub mod distribution;
pub mod model;
pub mod ship;
pub mod sink;

pub use config::Config;
use rds_sensor::cli::{CloudWatchArgs, Extension, ExtraSinks, Mode};
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

/// Adds the CloudWatch sinks to the `rds-sensor` command line.
pub struct CloudWatchExtension;

impl Extension for CloudWatchExtension {
    fn sinks(&self, args: &CloudWatchArgs, mode: Mode) -> anyhow::Result<ExtraSinks> {
        let cfg = Config::from_args(args)?;
        let (sink, shipper) = start(cfg, mode)?;
        Ok(ExtraSinks {
            sinks: vec![Box::new(sink)],
            finish: shipper.map(|s| {
                Box::new(move || s.finish().map(|_| ())) as Box<dyn FnOnce() -> anyhow::Result<()>>
            }),
        })
    }
}
