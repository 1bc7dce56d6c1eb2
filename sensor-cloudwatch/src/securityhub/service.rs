//! The Security Hub shipper: a thread with its own tokio runtime that takes findings from the
//! bounded queue, maps them to ASFF and sends them with BatchImportFindings.
//!
//! - **Account:** the settings' `securityhub_account_id`, else STS GetCallerIdentity, asked
//!   once before the first call (findings wait in the queue until it answers).
//! - **Retries:** as the CloudWatch shipper (`ship::retry`): the SDK's standard mode within a
//!   call; a call that still fails for a transient reason goes back to the front of the queue
//!   and is tried after a backoff; a refusal is counted as rejected. Findings of an accepted
//!   call that Security Hub lists in FailedFindings are retried the same way when their error
//!   is transient, else rejected (each distinct error logged once).

use super::{
    asff::{self, AsffFinding, Target},
    queue::{FindingQueue, SecurityHubStats},
    sdk,
};
use crate::{
    config::Config,
    ship::{
        clients::{policies, require_region},
        retry::{Backoff, Fate, THROTTLING, classify, status},
        worker,
    },
};
use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_securityhub::error::DisplayErrorContext;
use rds_sensor::model::Finding;
use std::{collections::HashSet, sync::Arc, time::Duration};

struct Service {
    hub: aws_sdk_securityhub::Client,
    sts: aws_sdk_sts::Client,
    region: String,
}

impl Service {
    fn new(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<Self> {
        let region = require_region(sdk)?;
        let (retry, timeouts) = policies(cfg);
        let hub = aws_sdk_securityhub::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .build();
        let sts = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .build();
        Ok(Self {
            hub: aws_sdk_securityhub::Client::from_conf(hub),
            sts: aws_sdk_sts::Client::from_conf(sts),
            region,
        })
    }

    async fn target(&self, cfg: &Config) -> Result<Target> {
        let account = match &cfg.securityhub_account_id {
            Some(a) => a.clone(),
            None => {
                let out =
                    self.sts.get_caller_identity().send().await.map_err(|e| {
                        anyhow!("STS GetCallerIdentity: {}", DisplayErrorContext(&e))
                    })?;
                out.account()
                    .context("STS GetCallerIdentity gave no account")?
                    .to_string()
            }
        };
        Ok(Target {
            partition: cfg.securityhub_partition.clone(),
            region: self.region.clone(),
            account,
            company_name: cfg.securityhub_company_name.clone(),
        })
    }
}

/// Owns the Security Hub thread; [`SecurityHubShipper::finish`] waits for the queue to drain.
pub struct SecurityHubShipper {
    queue: Arc<FindingQueue>,
    thread: Option<std::thread::JoinHandle<()>>,
    timeout: Duration,
}

impl SecurityHubShipper {
    /// Loads the AWS configuration (the standard chains, or `sdk` when given), failing early
    /// without a region, and starts sending.
    pub fn start(
        cfg: Arc<Config>,
        queue: Arc<FindingQueue>,
        sdk: Option<aws_config::SdkConfig>,
    ) -> Result<Self> {
        let thread = {
            let (queue, done) = (queue.clone(), queue.clone());
            let run_cfg = cfg.clone();
            worker::spawn(
                "securityhub",
                // The SDK's ASFF (de)serialisers nest deep, and unoptimised builds overflow
                // the default 2 MiB.
                Some(16 << 20),
                cfg.clone(),
                sdk,
                Service::new,
                move |service| async move { run(&run_cfg, &queue, &service).await },
                move || {
                    let mut q = done.lock();
                    q.done = true;
                    done.done.notify_all();
                },
            )?
        };
        Ok(Self {
            queue,
            thread: Some(thread),
            timeout: Duration::from_secs(cfg.shutdown_timeout_s),
        })
    }

    pub fn queue(&self) -> &Arc<FindingQueue> {
        &self.queue
    }

    /// Ends the input, waits up to the shutdown timeout for what is queued to be sent, and
    /// stops. An error if findings were dropped, left unsent or refused.
    pub fn finish(mut self) -> Result<SecurityHubStats> {
        self.queue.close();
        let deadline = std::time::Instant::now() + self.timeout;
        let mut q = self.queue.lock();
        while !q.done && !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            if std::time::Instant::now() >= deadline && !q.abort {
                tracing::warn!(
                    findings = q.findings.len(),
                    "Security Hub: shutdown timeout; giving up on what is queued"
                );
                q.abort = true;
                self.queue.stop.notify_one();
                self.queue.data.notify_one();
            }
            q = self
                .queue
                .done
                .wait_timeout(q, Duration::from_millis(100))
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        q.stats.unsent += q.findings.len() as u64;
        q.findings.clear();
        let s = q.stats;
        drop(q);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            bail!("the Security Hub thread panicked");
        }
        tracing::info!(
            sent = s.sent,
            superseded = s.superseded,
            trimmed = s.trimmed,
            dropped = s.dropped,
            rejected = s.rejected,
            unsent = s.unsent,
            requests = s.requests,
            failures = s.failures,
            "Security Hub: done"
        );
        if s.dropped + s.unsent + s.rejected > 0 {
            bail!(
                "Security Hub: {} findings were not delivered (dropped from the full queue: {}, refused: {}, unsent at exit: {}), see the log",
                s.dropped + s.unsent + s.rejected,
                s.dropped,
                s.rejected,
                s.unsent
            );
        }
        Ok(s)
    }
}

impl Drop for SecurityHubShipper {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.queue.lock().abort = true;
            self.queue.stop.notify_one();
            self.queue.data.notify_one();
        }
    }
}

async fn run(cfg: &Config, queue: &FindingQueue, svc: &Service) {
    let mut backoff = Backoff::new(cfg);
    let mut target: Option<Target> = None;
    let mut logged = HashSet::new();
    loop {
        let idle = {
            let q = queue.lock();
            if q.abort || (q.closed && q.findings.is_empty()) {
                break;
            }
            q.findings.is_empty()
        };
        if idle {
            let _ = tokio::time::timeout(Duration::from_secs(1), queue.data.notified()).await;
            continue;
        }
        let ok = match &target {
            None => match svc.target(cfg).await {
                Ok(t) => {
                    target = Some(t);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Security Hub: no account yet; the findings stay queued");
                    queue.lock().stats.failures += 1;
                    false
                }
            },
            Some(t) => {
                let findings = queue.take(asff::BATCH_FINDINGS);
                send(queue, svc, t, findings, &mut logged).await
            }
        };
        if ok {
            backoff.reset();
        } else {
            let wait = backoff.step();
            tracing::debug!(?wait, "Security Hub: backing off");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = queue.stop.notified() => {}
            }
        }
    }
}

/// Maps and fits the findings, as the calls that will carry them.
fn prepare(
    queue: &FindingQueue,
    target: &Target,
    findings: Vec<Finding>,
) -> Vec<Vec<(Finding, AsffFinding)>> {
    let mut ready = Vec::new();
    for f in findings {
        match asff::fit(asff::map(&f, target), asff::FINDING_MAX_BYTES) {
            Ok((a, trimmed)) => {
                queue.lock().stats.trimmed += u64::from(trimmed);
                let n = asff::size(&a);
                ready.push(((f, a), n));
            }
            Err(e) => {
                queue.lock().stats.rejected += 1;
                tracing::warn!(id = %f.id, bytes = e.bytes, "Security Hub: finding too large even without its evidence; not sent");
            }
        }
    }
    asff::batches(ready, asff::BATCH_FINDINGS, asff::BATCH_MAX_BYTES)
}

/// Sends findings; false if some went back to the queue.
async fn send(
    queue: &FindingQueue,
    svc: &Service,
    target: &Target,
    findings: Vec<Finding>,
    logged: &mut HashSet<String>,
) -> bool {
    let mut calls = prepare(queue, target, findings).into_iter();
    let mut back: Vec<Finding> = Vec::new();
    while let Some(call) = calls.next() {
        let n = call.len() as u64;
        let r = svc
            .hub
            .batch_import_findings()
            .set_findings(Some(call.iter().map(|(_, a)| sdk::finding(a)).collect()))
            .send()
            .await;
        let mut q = queue.lock();
        q.stats.requests += 1;
        match r {
            Ok(out) => {
                let mut failed = 0;
                for ff in out.failed_findings() {
                    failed += 1;
                    let code = ff.error_code().unwrap_or("");
                    let id = ff.id().unwrap_or("");
                    if THROTTLING.contains(&code) || code.starts_with("Internal") {
                        q.stats.failures += 1;
                        back.extend(
                            call.iter()
                                .filter(|(f, _)| f.id == id)
                                .map(|(f, _)| f.clone()),
                        );
                    } else {
                        q.stats.rejected += 1;
                        let msg = ff.error_message().unwrap_or("");
                        if logged.insert(format!("{code}: {msg}")) {
                            tracing::warn!(code, message = msg, %id, "Security Hub refused a finding (this error is logged once)");
                        }
                    }
                }
                q.stats.sent += n.saturating_sub(failed);
            }
            Err(e) => match classify(&e, status(&e)) {
                Fate::Reject => {
                    q.stats.rejected += n;
                    tracing::warn!(error = %DisplayErrorContext(&e), findings = n, "Security Hub refused BatchImportFindings");
                }
                Fate::Retry => {
                    q.stats.failures += 1;
                    drop(q);
                    tracing::warn!(error = %DisplayErrorContext(&e), findings = n, "BatchImportFindings failed; the findings stay queued");
                    back.extend(call.into_iter().map(|(f, _)| f));
                    back.extend(calls.flatten().map(|(f, _)| f));
                    break;
                }
            },
        }
    }
    let ok = back.is_empty();
    if !ok {
        queue.requeue(back);
    }
    ok
}
