//! `--mirror-reconcile FILE` in the agent: a reconcile pass at start, then one every
//! `interval_s` (300 by default), on its own thread. The first pass failing to look (no
//! credentials, no permission to describe) stops the start in one line; a call refused later
//! is logged and tried again at the next pass, and the sensor keeps running.

use super::{Action, apply, observe, plan};
use crate::config::Config;
use anyhow::{Context, Result};
use rds_sensor::cli::MirrorSpec;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The reconciling thread; stopped on drop.
pub struct Reconciler {
    stop: Arc<AtomicBool>,
    passes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reconciler {
    /// Passes finished so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn pass(
    rds: &aws_sdk_rds::Client,
    ec2: &aws_sdk_ec2::Client,
    spec: &MirrorSpec,
    resolver: &mut crate::discover::Resolver,
) -> Result<()> {
    resolver.reload();
    let world = observe::observe(rds, ec2, spec, resolver).await?;
    let plan = plan::plan(spec, &world, Action::Reconcile)?;
    for n in &plan.notes {
        tracing::info!("mirror {}: {n}", plan.name);
    }
    for n in &plan.problems {
        tracing::warn!("mirror {}: {n}", plan.name);
    }
    if plan.calls.is_empty() {
        return Ok(());
    }
    let mut said = Vec::new();
    let o = apply::run(ec2, &plan, &mut said).await?;
    for line in String::from_utf8_lossy(&said).lines() {
        if o.failed.is_empty() {
            tracing::info!("mirror {}: {line}", plan.name);
        } else {
            tracing::warn!("mirror {}: {line}", plan.name);
        }
    }
    Ok(())
}

/// Starts reconciling when `--mirror-reconcile` names a spec: the first pass done.
pub fn start(path: Option<&Path>, cfg: &Config) -> Result<Option<Reconciler>> {
    let Some(path) = path else { return Ok(None) };
    let spec = MirrorSpec::load(path).context("--mirror-reconcile")?;
    let mut resolver = crate::discover::Resolver::load(spec.hosts.as_deref())?;
    let interval = spec.interval();
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let (first_tx, first_rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = crate::ship::worker::spawn(
        "rds-mirror",
        None,
        Arc::new(cfg.clone()),
        None,
        super::clients,
        {
            let (stop, passes) = (stop.clone(), passes.clone());
            move |(rds, ec2)| async move {
                let first = pass(&rds, &ec2, &spec, &mut resolver).await;
                let failed = first.is_err();
                if !failed {
                    // Counted before `start` returns: whoever started it sees the first pass.
                    passes.fetch_add(1, Ordering::Relaxed);
                }
                let _ = first_tx.send(first);
                if failed {
                    return;
                }
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if last.elapsed() < interval {
                        continue;
                    }
                    last = Instant::now();
                    if let Err(e) = pass(&rds, &ec2, &spec, &mut resolver).await {
                        tracing::warn!(error = %format!("{e:#}"), "mirror: reconcile pass failed");
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
        || {},
    )?;
    first_rx
        .recv()
        .context("the mirror thread stopped before its first pass")?
        .context("--mirror-reconcile")?;
    Ok(Some(Reconciler {
        stop,
        passes,
        thread: Some(thread),
    }))
}
