//! `--discover rds`: servers named by what AWS says is there. DescribeDBInstances lists the
//! instances ([`rds`]); each endpoint is resolved to the address the sensor sees
//! ([`resolve`]); the result replaces [`rds_sensor::aggregate::discovered`], which every sink
//! and the detector consult. The first pass runs before the pipeline starts (its failure stops
//! the start, in one line); a thread refreshes every `--discover-interval` seconds, and sooner
//! (at most once a minute) while servers nothing names show up: a failover moves an endpoint
//! to another address, and the next pass names the new one.

mod rds;
mod resolve;

pub use resolve::Resolver;

use crate::config::Config;
use anyhow::{Context, Result};
use rds_sensor::aggregate::discovered::{self, Discovered};
use rds_sensor::cli::{CloudWatchArgs, Discover};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Refreshes asked for by unknown servers come at most this often.
const UNKNOWN_EVERY: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL_S: u64 = 300;

/// The refresher; stopped on drop.
pub struct Discovery {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Address → instance, from one pass.
async fn pass(
    client: &aws_sdk_rds::Client,
    resolver: &Resolver,
) -> Result<HashMap<SocketAddr, Discovered>> {
    let mut map = HashMap::new();
    for f in rds::describe(client).await? {
        let addrs = resolver.resolve(&f.host, f.port);
        if addrs.is_empty() {
            tracing::warn!(
                instance = %f.info.db_instance_identifier,
                endpoint = %f.host,
                "discovery: the endpoint does not resolve; its server stays unnamed"
            );
        }
        for a in addrs {
            map.insert(a, f.info.clone());
        }
    }
    Ok(map)
}

/// What moved between two passes, for the log.
fn changes(
    old: &HashMap<SocketAddr, Discovered>,
    new: &HashMap<SocketAddr, Discovered>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (a, d) in new {
        match old.get(a) {
            None => out.push(format!("{} at {a}", d.db_instance_identifier)),
            Some(o) if o != d => out.push(format!("{a} is now {}", d.db_instance_identifier)),
            _ => {}
        }
    }
    for (a, d) in old {
        if !new.contains_key(a) {
            out.push(format!("{} no longer at {a}", d.db_instance_identifier));
        }
    }
    out.sort();
    out
}

/// Starts discovery when `--discover` asks for it: the first pass done, the refresher running.
pub fn start(args: &CloudWatchArgs, cfg: &Config) -> Result<Option<Discovery>> {
    let Some(Discover::Rds) = args.discover else {
        return Ok(None);
    };
    let mut resolver = Resolver::load(args.discover_hosts.as_deref())?;
    let interval = Duration::from_secs(match args.discover_interval {
        0 => DEFAULT_INTERVAL_S,
        s => s,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (first_tx, first_rx) = std::sync::mpsc::channel::<Result<usize>>();
    let cfg = Arc::new(cfg.clone());
    let thread = crate::ship::worker::spawn(
        "rds-discovery",
        None,
        cfg,
        None,
        |sdk, _| {
            crate::ship::clients::require_region(sdk)?;
            Ok(aws_sdk_rds::Client::new(sdk))
        },
        {
            let stop = stop.clone();
            move |client| async move {
                let mut known = match pass(&client, &resolver).await {
                    Ok(map) => {
                        let n = map.len();
                        tracing::info!(
                            addresses = n,
                            "discovery: {}",
                            changes(&HashMap::new(), &map).join(", ")
                        );
                        discovered::set(map.clone());
                        let _ = first_tx.send(Ok(n));
                        map
                    }
                    Err(e) => {
                        let _ = first_tx.send(Err(e));
                        return;
                    }
                };
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let due = last.elapsed() >= interval
                        || (last.elapsed() >= UNKNOWN_EVERY && discovered::take_unknown());
                    if !due {
                        continue;
                    }
                    last = Instant::now();
                    resolver.reload();
                    match pass(&client, &resolver).await {
                        Ok(map) => {
                            let moved = changes(&known, &map);
                            if !moved.is_empty() {
                                tracing::info!("discovery: {}", moved.join(", "));
                                discovered::set(map.clone());
                                known = map;
                            }
                        }
                        // What was known stays: names do not vanish with one failed call.
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "discovery: refresh failed")
                        }
                    }
                }
            }
        },
        || {},
    )?;
    let first = first_rx
        .recv()
        .context("the discovery thread stopped before its first pass")?
        .context("--discover rds")?;
    if first == 0 {
        tracing::warn!("discovery: DescribeDBInstances named no reachable instance");
    }
    Ok(Some(Discovery {
        stop,
        thread: Some(thread),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str) -> Discovered {
        Discovered {
            db_instance_identifier: id.into(),
            engine: "postgres".into(),
            ..Discovered::default()
        }
    }

    #[test]
    fn a_failover_is_said_as_a_move() {
        let a: SocketAddr = "10.0.3.17:5432".parse().unwrap();
        let b: SocketAddr = "10.0.4.9:5432".parse().unwrap();
        let old = HashMap::from([(a, d("orders"))]);
        let new = HashMap::from([(b, d("orders"))]);
        assert_eq!(
            changes(&old, &new),
            [
                "orders at 10.0.4.9:5432",
                "orders no longer at 10.0.3.17:5432"
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }
}
