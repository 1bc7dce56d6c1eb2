//! The shipper: a thread with its own tokio runtime that takes data from a bounded queue and
//! sends it with the AWS SDK (PutMetricData, PutLogEvents, PutEvents).
//!
//! - **Credentials, region, endpoint:** `aws_config::defaults`, i.e. the standard chains
//!   (environment, profile, web identity, ECS/EKS container credentials, IMDSv2) and the
//!   standard endpoint overrides `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_CLOUDWATCH` /
//!   `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` / `AWS_ENDPOINT_URL_EVENTBRIDGE` (and the profile's
//!   `endpoint_url`), unless the settings name an endpoint or region.
//! - **Retries:** the SDK's standard mode (exponential backoff with jitter, on throttling, 5xx,
//!   timeouts and transport errors) within a request; when it gives up the data goes back to
//!   the front of the queue and is tried again after a backoff of our own (doubling up to a
//!   maximum, full jitter). A request the service refuses as invalid (4xx other than
//!   throttling) is dropped and counted as rejected.
//! - **Bounded memory:** the queue holds at most `queue_max_datums` data and
//!   `queue_max_log_events` / `queue_max_log_bytes` of events; the oldest beyond are dropped,
//!   counted, and the counts are sent as `MetricDatumsDropped` / `LogEventsDropped`.
//! - **Compression:** PutMetricData bodies from `compression_min_bytes` on are gzipped by the
//!   SDK (the operation carries Smithy's `requestCompression` trait).

pub(crate) mod clients;
mod queue;
pub(crate) mod retry;
mod send;
pub(crate) mod worker;

pub use clients::Clients;
pub use queue::{Shared, ShipStats};

use crate::{
    aggregate::{dim, names},
    config::Config,
    model::{self, BusEvent, Datum, LogEvent, Unit, now_s},
};
use anyhow::{Result, bail};
use retry::Backoff;
use send::{put_metrics, send_bus, send_logs, send_metrics};
use std::{sync::Arc, time::Duration};
/// Owns the shipper thread; [`Shipper::finish`] waits for the queue to drain.
pub struct Shipper {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    timeout: Duration,
}

impl Shipper {
    /// Loads the AWS configuration (the standard chains, or `sdk` when given), failing early
    /// without a region, and starts sending.
    pub fn start(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        sdk: Option<aws_config::SdkConfig>,
    ) -> Result<Self> {
        let thread = {
            let (shared, done) = (shared.clone(), shared.clone());
            let run_cfg = cfg.clone();
            worker::spawn(
                "cloudwatch",
                None,
                cfg.clone(),
                sdk,
                Clients::from_sdk,
                move |clients| async move { run(&run_cfg, &shared, &clients).await },
                move || {
                    let mut q = done.lock();
                    q.done = true;
                    done.done.notify_all();
                },
            )?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
            timeout: Duration::from_secs(cfg.shutdown_timeout_s),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Ends the input, waits up to the shutdown timeout for what is queued to be sent, and
    /// stops. An error if data was left unsent or refused.
    pub fn finish(mut self) -> Result<ShipStats> {
        self.shared.close();
        let deadline = std::time::Instant::now() + self.timeout;
        let mut q = self.shared.lock();
        while !q.done && !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                if !q.abort {
                    tracing::warn!(
                        datums = q.metrics.len(),
                        log_events = q.logs.len(),
                        "CloudWatch: shutdown timeout; giving up on what is queued"
                    );
                    q.abort = true;
                    self.shared.stop.notify_one();
                    self.shared.data.notify_one();
                }
                q = self
                    .shared
                    .done
                    .wait_timeout(q, Duration::from_millis(100))
                    .map(|r| r.0)
                    .unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            q = self
                .shared
                .done
                .wait_timeout(q, left.min(Duration::from_millis(200)))
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        q.stats.datums_unsent += q.metrics.len() as u64;
        q.stats.log_events_unsent += (q.logs.len() + q.bus.len()) as u64;
        let s = q.stats;
        drop(q);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            bail!("the CloudWatch thread panicked");
        }
        tracing::info!(
            datums_sent = s.datums_sent,
            datums_dropped = s.datums_dropped,
            log_events_sent = s.log_events_sent,
            log_events_dropped = s.log_events_dropped,
            requests = s.requests,
            failures = s.failures,
            "CloudWatch: done"
        );
        if s.datums_unsent + s.log_events_unsent + s.datums_rejected + s.log_events_rejected > 0 {
            bail!(
                "CloudWatch: {} metric data and {} events were not delivered (refused: {} and {}), see the log",
                s.datums_unsent + s.datums_rejected,
                s.log_events_unsent + s.log_events_rejected,
                s.datums_rejected,
                s.log_events_rejected
            );
        }
        Ok(s)
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let mut q = self.shared.lock();
            q.abort = true;
            drop(q);
            self.shared.stop.notify_one();
            self.shared.data.notify_one();
        }
    }
}

/// Work taken from the queue for one round.
struct Round {
    /// The drop counts this report covers, and its data.
    report: Option<((u64, u64), Vec<Datum>)>,
    metrics: Vec<Datum>,
    logs: Vec<LogEvent>,
    bus: Vec<BusEvent>,
}

async fn run(cfg: &Config, shared: &Shared, clients: &Clients) {
    let sensor = cfg.sensor();
    let log_stream = cfg.log_stream.clone().unwrap_or_else(|| sensor.clone());
    let mut log_ready = false;
    let mut backoff = Backoff::new(cfg);
    let mut reported = (0u64, 0u64);
    loop {
        let round = {
            let mut q = shared.lock();
            if q.abort {
                break;
            }
            let take = cfg.max_datums_per_request.min(q.metrics.len());
            let metrics: Vec<Datum> = q.metrics.drain(..take).collect();
            // The queue's own drops, reported as data of their own (never queued, so never
            // dropped themselves): the difference since the last report that got through.
            let dropped = (
                q.stats.datums_dropped,
                q.stats.log_events_dropped + q.stats.bus_events_dropped,
            );
            let report = (dropped != reported).then(|| {
                let dims = vec![dim(names::DIM_SENSOR, &sensor)];
                let ts = now_s();
                let data = [
                    (names::DATUMS_DROPPED, dropped.0 - reported.0),
                    (names::LOG_EVENTS_DROPPED, dropped.1 - reported.1),
                ]
                .into_iter()
                .map(|(name, v)| Datum {
                    metric_name: name,
                    dimensions: dims.clone(),
                    timestamp: ts,
                    unit: Unit::Count,
                    value: Some(v as f64),
                    values: Vec::new(),
                    counts: Vec::new(),
                    storage_resolution: cfg.storage_resolution,
                })
                .collect::<Vec<_>>();
                (dropped, data)
            });
            let mut logs = Vec::new();
            let mut bytes = 0;
            while let Some(e) = q.logs.front() {
                if logs.len() >= model::LOG_BATCH_EVENTS
                    || bytes + e.size() > model::LOG_BATCH_BYTES
                {
                    break;
                }
                bytes += e.size();
                let e = q.logs.pop_front().expect("front");
                q.log_bytes -= e.size();
                logs.push(e);
            }
            let n = q.bus.len().min(model::BUS_BATCH_EVENTS * 10);
            let bus: Vec<BusEvent> = q.bus.drain(..n).collect();
            if report.is_none() && metrics.is_empty() && logs.is_empty() && bus.is_empty() {
                if q.closed {
                    break;
                }
                None
            } else {
                Some(Round {
                    report,
                    metrics,
                    logs,
                    bus,
                })
            }
        };
        let Some(round) = round else {
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.data.notified()).await;
            continue;
        };
        let mut failed = false;
        if let Some((snapshot, data)) = round.report {
            match put_metrics(cfg, clients, data).await {
                Ok(n) => {
                    reported = snapshot;
                    let mut q = shared.lock();
                    q.stats.requests += 1;
                    q.stats.report_datums += n;
                }
                Err(_) => failed = true,
            }
        }
        if failed {
            // The endpoint is down: everything goes back, and is tried after the backoff.
            shared.requeue_metrics(round.metrics);
            shared.requeue_logs(round.logs);
            shared.requeue_bus(round.bus);
            shared.lock().stats.failures += 1;
        } else {
            failed |= !send_metrics(cfg, shared, clients, round.metrics).await;
            failed |= !send_logs(
                cfg,
                shared,
                clients,
                &log_stream,
                &mut log_ready,
                round.logs,
            )
            .await;
            failed |= !send_bus(cfg, shared, clients, round.bus).await;
        }
        if failed {
            let wait = backoff.step();
            tracing::debug!(?wait, "CloudWatch: backing off");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shared.stop.notified() => {}
            }
        } else {
            backoff.reset();
        }
    }
}
