//! AWS Security Hub: every finding, as the AWS Security Finding Format (ASFF), imported with
//! BatchImportFindings into the account's custom integration
//! (`arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`).
//!
//! - [`asff`]: the mapping (pure), the size limits and the batching;
//! - [`queue`]: the bounded queue, where an update replaces the version of its finding still
//!   waiting;
//! - [`service`]: the thread that sends, with the CloudWatch shipper's retry rules.
//!
//! A finding's id is stable across its updates, so each update replaces the one Security Hub
//! finding; the detector's last update (`service.archived`) archives it.

pub mod asff;
pub mod queue;
mod sdk;
pub mod service;

use crate::config::{Config, SinkKind};
use asff::Target;
use queue::FindingQueue;
use rds_sensor::{
    cli::Mode,
    model::{Finding, Record},
    sinks::Sink,
};
pub use service::SecurityHubShipper;
use std::{io::Write, sync::Arc};

/// The account printed requests name when the settings give none (nothing asks STS then).
const PRINT_ACCOUNT: &str = "000000000000";

enum Output {
    Queue(Arc<FindingQueue>),
    /// Printed at flush: the latest version of each finding since the last flush.
    Stdout {
        target: Target,
        pending: Vec<Finding>,
    },
}

/// The pipeline-side sink: findings in, to the shipper's queue (or printed).
pub struct SecurityHubSink {
    out: Output,
}

impl SecurityHubSink {
    fn print(&mut self) -> anyhow::Result<()> {
        let Output::Stdout { target, pending } = &mut self.out else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let mut ready = Vec::new();
        for f in pending.drain(..) {
            match asff::fit(asff::map(&f, target), asff::FINDING_MAX_BYTES) {
                Ok((a, _)) => {
                    let n = asff::size(&a);
                    ready.push((a, n));
                }
                Err(e) => {
                    tracing::warn!(id = %f.id, bytes = e.bytes, "Security Hub: finding too large; not sent")
                }
            }
        }
        let mut out = std::io::stdout().lock();
        for call in asff::batches(ready, asff::BATCH_FINDINGS, asff::BATCH_MAX_BYTES) {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "kind": "securityhub_batch_import_findings",
                    "findings": call,
                }),
            )?;
            writeln!(out)?;
        }
        out.flush()?;
        Ok(())
    }
}

impl Sink for SecurityHubSink {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        let Record::Finding(f) = record else {
            return Ok(());
        };
        match &mut self.out {
            Output::Queue(q) => q.push((**f).clone()),
            Output::Stdout { pending, .. } => match pending.iter_mut().find(|o| o.id == f.id) {
                Some(old) => *old = (**f).clone(),
                None => pending.push((**f).clone()),
            },
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.print()
    }
}

impl Drop for SecurityHubSink {
    fn drop(&mut self) {
        if let Err(e) = self.print() {
            tracing::warn!(error = %e, "printing Security Hub requests");
        }
        if let Output::Queue(q) = &self.out {
            q.close();
        }
    }
}

/// The sink and, unless it prints (`metrics_sink: stdout`), the shipper behind it. `sdk`:
/// an SDK configuration of the caller's, else the standard chains.
pub fn start(
    cfg: Config,
    _mode: Mode,
    sdk: Option<aws_config::SdkConfig>,
) -> anyhow::Result<(SecurityHubSink, Option<SecurityHubShipper>)> {
    cfg.validate()?;
    match cfg.metrics_sink {
        SinkKind::Stdout => {
            let region = cfg
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let target = Target {
                partition: cfg.securityhub_partition.clone(),
                region,
                account: cfg
                    .securityhub_account_id
                    .clone()
                    .unwrap_or_else(|| PRINT_ACCOUNT.into()),
                company_name: cfg.securityhub_company_name.clone(),
            };
            let out = Output::Stdout {
                target,
                pending: Vec::new(),
            };
            Ok((SecurityHubSink { out }, None))
        }
        SinkKind::Cloudwatch => {
            let queue = Arc::new(FindingQueue::new(cfg.queue_max_findings));
            let shipper = SecurityHubShipper::start(Arc::new(cfg), queue.clone(), sdk)?;
            let out = Output::Queue(queue);
            Ok((SecurityHubSink { out }, Some(shipper)))
        }
    }
}
