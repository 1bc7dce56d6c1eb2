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

use crate::{
    aggregate::{dim, names},
    config::Config,
    model::{self, BusEvent, Datum, LogEvent, Unit},
    sink::now_s,
};
use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};
use tokio::sync::Notify;

/// What the shipper has done, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShipStats {
    pub datums_sent: u64,
    /// Dropped from the full queue (oldest first).
    pub datums_dropped: u64,
    /// Refused by CloudWatch as invalid.
    pub datums_rejected: u64,
    pub log_events_sent: u64,
    pub log_events_dropped: u64,
    pub log_events_rejected: u64,
    pub bus_events_sent: u64,
    pub bus_events_dropped: u64,
    pub bus_events_rejected: u64,
    pub requests: u64,
    /// Requests that failed after the SDK's retries and were queued again.
    pub failures: u64,
    /// Most data ever waiting at once.
    pub max_queued_datums: usize,
    pub max_queued_log_events: usize,
    /// Data the shipper added to report its own queue's drops.
    pub report_datums: u64,
    /// Left unsent when the shipper stopped (the shutdown timeout passed).
    pub datums_unsent: u64,
    pub log_events_unsent: u64,
}

#[derive(Default)]
struct Queues {
    metrics: VecDeque<Datum>,
    logs: VecDeque<LogEvent>,
    log_bytes: usize,
    bus: VecDeque<BusEvent>,
    /// No more input will come: stop once everything is sent.
    closed: bool,
    /// Stop now.
    abort: bool,
    done: bool,
    stats: ShipStats,
}

/// The queue between the sink (pipeline thread) and the shipper.
pub struct Shared {
    q: Mutex<Queues>,
    max_datums: usize,
    max_log_events: usize,
    max_log_bytes: usize,
    /// Wakes the shipper when data arrives.
    data: Notify,
    /// Wakes the shipper out of a backoff when it has to stop.
    stop: Notify,
    done: Condvar,
}

impl Shared {
    pub fn new(cfg: &Config) -> Self {
        Self {
            q: Mutex::new(Queues::default()),
            max_datums: cfg.queue_max_datums.max(1),
            max_log_events: cfg.queue_max_log_events.max(1),
            max_log_bytes: cfg.queue_max_log_bytes.max(model::LOG_MESSAGE_MAX),
            data: Notify::new(),
            stop: Notify::new(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> ShipStats {
        self.lock().stats
    }

    /// Data and events waiting.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        (q.metrics.len(), q.logs.len())
    }

    fn bound(&self, q: &mut Queues) {
        while q.metrics.len() > self.max_datums {
            q.metrics.pop_front();
            q.stats.datums_dropped += 1;
        }
        while q.logs.len() > self.max_log_events || q.log_bytes > self.max_log_bytes {
            let Some(e) = q.logs.pop_front() else { break };
            q.log_bytes -= e.size();
            q.stats.log_events_dropped += 1;
        }
        while q.bus.len() > self.max_log_events {
            q.bus.pop_front();
            q.stats.bus_events_dropped += 1;
        }
        q.stats.max_queued_datums = q.stats.max_queued_datums.max(q.metrics.len());
        q.stats.max_queued_log_events = q.stats.max_queued_log_events.max(q.logs.len());
    }

    pub fn push_metrics(&self, data: Vec<Datum>) {
        let mut q = self.lock();
        q.metrics.extend(data);
        self.bound(&mut q);
        drop(q);
        self.data.notify_one();
    }

    pub fn push_log(&self, ev: LogEvent, bus: Option<BusEvent>) {
        let mut q = self.lock();
        q.log_bytes += ev.size();
        q.logs.push_back(ev);
        q.bus.extend(bus);
        self.bound(&mut q);
        drop(q);
        self.data.notify_one();
    }

    /// No more input.
    pub fn close(&self) {
        self.lock().closed = true;
        self.data.notify_one();
    }

    fn requeue_metrics(&self, data: Vec<Datum>) {
        let mut q = self.lock();
        for d in data.into_iter().rev() {
            q.metrics.push_front(d);
        }
        self.bound(&mut q);
    }

    fn requeue_logs(&self, events: Vec<LogEvent>) {
        let mut q = self.lock();
        for e in events.into_iter().rev() {
            q.log_bytes += e.size();
            q.logs.push_front(e);
        }
        self.bound(&mut q);
    }

    fn requeue_bus(&self, events: Vec<BusEvent>) {
        let mut q = self.lock();
        for e in events.into_iter().rev() {
            q.bus.push_front(e);
        }
        self.bound(&mut q);
    }
}

/// The AWS clients, from the standard configuration chain.
pub struct Clients {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub events: Option<aws_sdk_eventbridge::Client>,
}

impl Clients {
    /// The standard chains, with the settings' region and endpoint over them if given.
    pub async fn sdk_config(cfg: &Config) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &cfg.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &cfg.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        loader.load().await
    }

    /// Clients on `sdk` (credentials, region, endpoints), with the settings' retries,
    /// timeouts and compression.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<Self> {
        if sdk.region().is_none_or(|r| r.as_ref().is_empty()) {
            bail!(
                "no AWS region: set AWS_REGION (or a profile's region), or run on EC2 where the instance metadata gives it"
            );
        }
        let retry = RetryConfig::standard()
            .with_max_attempts(cfg.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(cfg.backoff_initial_ms.max(1)))
            .with_max_backoff(Duration::from_millis(cfg.backoff_max_ms.max(1)));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .operation_attempt_timeout(Duration::from_millis(cfg.attempt_timeout_ms))
            .build();
        let cw = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .request_min_compression_size_bytes(cfg.compression_min_bytes)
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .build();
        let events = aws_sdk_eventbridge::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .build();
        Ok(Self {
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cw),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs),
            events: cfg
                .eventbridge_bus
                .as_ref()
                .map(|_| aws_sdk_eventbridge::Client::from_conf(events)),
        })
    }
}

/// What to do with a request that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Retry,
    Reject,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServiceError",
    "InternalException",
];

fn classify<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>, status: Option<u16>) -> Fate {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            match status {
                Some(s) if s >= 500 || s == 429 => Fate::Retry,
                _ if THROTTLING.contains(&code) => Fate::Retry,
                _ => Fate::Reject,
            }
        }
        // No credentials yet, timeouts, connection refused, a cut response: transient.
        _ => Fate::Retry,
    }
}

/// The HTTP status of a failed call, when there was a response.
fn status<E>(e: &SdkError<E, aws_sdk_cloudwatch::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Exponential backoff with full jitter.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(cfg: &Config) -> Self {
        let initial = Duration::from_millis(cfg.backoff_initial_ms.max(1));
        Self {
            initial,
            max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms).max(1)),
            next: initial,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn step(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        // Full jitter: uniform in [cap/2, cap] (never zero, so a dead endpoint is not spun on).
        let r = random() % 1000;
        cap / 2 + cap / 2 * r as u32 / 1000
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_s() as u64);
    h.finish()
}

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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = {
            let shared = shared.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name("cloudwatch".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    rt.block_on(async {
                        let sdk = match sdk {
                            Some(s) => s,
                            None => Clients::sdk_config(&cfg).await,
                        };
                        let clients = match Clients::from_sdk(&sdk, &cfg) {
                            Ok(c) => {
                                let _ = ready_tx.send(Ok(()));
                                c
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        run(&cfg, &shared, &clients).await;
                    });
                    let mut q = shared.lock();
                    q.done = true;
                    shared.done.notify_all();
                })
                .context("starting the CloudWatch thread")?
        };
        ready_rx
            .recv()
            .context("the CloudWatch thread stopped while starting")??;
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

/// Sends data; false if some went back to the queue.
async fn send_metrics(cfg: &Config, shared: &Shared, clients: &Clients, data: Vec<Datum>) -> bool {
    if data.is_empty() {
        return true;
    }
    let mut reqs = model::batch_metrics(
        &cfg.namespace,
        data,
        cfg.max_datums_per_request,
        cfg.max_request_bytes,
    )
    .into_iter();
    while let Some(req) = reqs.next() {
        let n = req.data.len() as u64;
        let sdk_data: Vec<_> = req.data.iter().map(to_sdk).collect();
        let r = clients
            .cloudwatch
            .put_metric_data()
            .namespace(&req.namespace)
            .set_metric_data(Some(sdk_data))
            .send()
            .await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(_) => q.stats.datums_sent += n,
            Err(e) => match classify(&e, status(&e)) {
                Fate::Reject => {
                    q.stats.datums_rejected += n;
                    tracing::warn!(error = %DisplayErrorContext(&e), datums = n, "CloudWatch refused metric data");
                }
                Fate::Retry => {
                    q.stats.failures += 1;
                    drop(q);
                    tracing::warn!(error = %DisplayErrorContext(&e), datums = n, "PutMetricData failed; the data stays queued");
                    let mut back = req.data;
                    back.extend(reqs.flat_map(|r| r.data));
                    shared.requeue_metrics(back);
                    return false;
                }
            },
        }
    }
    true
}

/// One small request of data that are not in the queue; the number sent.
async fn put_metrics(cfg: &Config, clients: &Clients, data: Vec<Datum>) -> Result<u64> {
    let n = data.len() as u64;
    clients
        .cloudwatch
        .put_metric_data()
        .namespace(&cfg.namespace)
        .set_metric_data(Some(data.iter().map(to_sdk).collect()))
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %DisplayErrorContext(&e), "PutMetricData failed");
            anyhow::anyhow!("PutMetricData failed")
        })?;
    Ok(n)
}

fn to_sdk(d: &Datum) -> aws_sdk_cloudwatch::types::MetricDatum {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let unit = match d.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Bytes => StandardUnit::Bytes,
    };
    let mut b = MetricDatum::builder()
        .metric_name(d.metric_name)
        .set_dimensions(Some(
            d.dimensions
                .iter()
                .map(|x| Dimension::builder().name(x.name).value(&x.value).build())
                .collect(),
        ))
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            d.timestamp,
        ))
        .unit(unit)
        .storage_resolution(d.storage_resolution as i32)
        .set_value(d.value);
    if !d.values.is_empty() {
        b = b
            .set_values(Some(d.values.clone()))
            .set_counts(Some(d.counts.clone()));
    }
    b.build()
}

async fn ensure_log_stream(clients: &Clients, group: &str, stream: &str) -> Result<(), String> {
    match clients
        .logs
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
        Err(e) => return Err(DisplayErrorContext(&e).to_string()),
    }
    match clients
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(DisplayErrorContext(&e).to_string()),
    }
}

async fn send_logs(
    cfg: &Config,
    shared: &Shared,
    clients: &Clients,
    stream: &str,
    ready: &mut bool,
    events: Vec<LogEvent>,
) -> bool {
    if events.is_empty() {
        return true;
    }
    if !*ready {
        match ensure_log_stream(clients, &cfg.log_group, stream).await {
            Ok(()) => *ready = true,
            Err(e) => {
                tracing::warn!(error = %e, group = %cfg.log_group, "CloudWatch Logs: creating the log group/stream failed; events stay queued");
                shared.lock().stats.failures += 1;
                shared.requeue_logs(events);
                return false;
            }
        }
    }
    let mut batches = model::batch_logs(events).into_iter();
    while let Some(batch) = batches.next() {
        let n = batch.len() as u64;
        let sdk: Vec<_> = batch
            .iter()
            .filter_map(|e| {
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(e.timestamp)
                    .message(&e.message)
                    .build()
                    .ok()
            })
            .collect();
        let r = clients
            .logs
            .put_log_events()
            .log_group_name(&cfg.log_group)
            .log_stream_name(stream)
            .set_log_events(Some(sdk))
            .send()
            .await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(out) => {
                let rejected = out.rejected_log_events_info().map_or(0, |i| {
                    let old = i.too_old_log_event_end_index().map_or(0, |x| x + 1);
                    let exp = i.expired_log_event_end_index().map_or(0, |x| x + 1);
                    let new = i
                        .too_new_log_event_start_index()
                        .map_or(0, |x| n as i32 - x);
                    old.max(exp) as u64 + new.max(0) as u64
                });
                if rejected > 0 {
                    tracing::warn!(
                        rejected,
                        "CloudWatch Logs refused events (too old or too new)"
                    );
                }
                q.stats.log_events_rejected += rejected.min(n);
                q.stats.log_events_sent += n - rejected.min(n);
            }
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                let fate = if not_found {
                    Fate::Retry
                } else {
                    classify(&e, status(&e))
                };
                match fate {
                    Fate::Reject => {
                        q.stats.log_events_rejected += n;
                        tracing::warn!(error = %DisplayErrorContext(&e), events = n, "CloudWatch Logs refused events");
                    }
                    Fate::Retry => {
                        q.stats.failures += 1;
                        drop(q);
                        if not_found {
                            *ready = false;
                        }
                        tracing::warn!(error = %DisplayErrorContext(&e), events = n, "PutLogEvents failed; the events stay queued");
                        let mut back = batch;
                        back.extend(batches.flatten());
                        shared.requeue_logs(back);
                        return false;
                    }
                }
            }
        }
    }
    true
}

async fn send_bus(cfg: &Config, shared: &Shared, clients: &Clients, events: Vec<BusEvent>) -> bool {
    let (Some(client), Some(bus_name)) = (&clients.events, &cfg.eventbridge_bus) else {
        return true;
    };
    let mut back = Vec::new();
    let mut batches = model::batch_bus(events).into_iter();
    while let Some(batch) = batches.next() {
        let entries: Vec<_> = batch
            .iter()
            .map(|e| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                        e.timestamp,
                    ))
                    .source(e.source)
                    .detail_type(e.detail_type)
                    .detail(&e.detail)
                    .event_bus_name(bus_name)
                    .build()
            })
            .collect();
        let r = client.put_events().set_entries(Some(entries)).send().await;
        let mut q = shared.lock();
        q.stats.requests += 1;
        match r {
            Ok(out) => {
                for (e, res) in batch.into_iter().zip(out.entries()) {
                    match res.error_code() {
                        None => q.stats.bus_events_sent += 1,
                        Some(c) if THROTTLING.contains(&c) => back.push(e),
                        Some(c) => {
                            q.stats.bus_events_rejected += 1;
                            tracing::warn!(
                                code = c,
                                message = res.error_message().unwrap_or(""),
                                "EventBridge refused a finding"
                            );
                        }
                    }
                }
            }
            Err(e) => match classify(&e, status(&e)) {
                Fate::Reject => {
                    q.stats.bus_events_rejected += batch.len() as u64;
                    tracing::warn!(error = %DisplayErrorContext(&e), "EventBridge refused findings");
                }
                Fate::Retry => {
                    q.stats.failures += 1;
                    drop(q);
                    tracing::warn!(error = %DisplayErrorContext(&e), "PutEvents failed; the findings stay queued");
                    back.extend(batch);
                    back.extend(batches.flatten());
                    break;
                }
            },
        }
    }
    let ok = back.is_empty();
    if !ok {
        shared.requeue_bus(back);
    }
    ok
}
