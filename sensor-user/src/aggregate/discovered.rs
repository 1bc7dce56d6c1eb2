//! Instances found in AWS (`rds-sensor-cloudwatch --discover rds`): each RDS instance's
//! endpoint, resolved to the address the sensor sees, with what DescribeDBInstances says of it.
//! One store for the process, replaced whole at each refresh, which every namer consults after
//! what the configuration names: [`super::Instances::resolve`] (the CloudWatch dimension, the
//! Prometheus label) and the detector (a finding's resource). A failover moves an endpoint to
//! another address: the next refresh names the new one, everywhere at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// What AWS says of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    pub db_instance_identifier: String,
    pub db_cluster_identifier: Option<String>,
    pub engine: String,
    pub engine_version: Option<String>,
    pub db_instance_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

static STORE: RwLock<Option<Arc<HashMap<SocketAddr, Discovered>>>> = RwLock::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// A server no entry names was seen since the last refresh.
static UNKNOWN_SEEN: AtomicBool = AtomicBool::new(false);

/// Replaces what is known (a refresh).
pub fn set(map: HashMap<SocketAddr, Discovered>) {
    let mut s = STORE.write().unwrap_or_else(|p| p.into_inner());
    *s = Some(Arc::new(map));
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Whether discovery runs at all (no store: nothing to look up, nothing to ask for).
pub fn active() -> bool {
    STORE.read().map(|s| s.is_some()).unwrap_or(false)
}

/// Bumped at each refresh: a cache of names made from the store is stale when it moves.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The instance at `server` (`addr:port`, `[v6]:port`), if discovery found one; a server it
/// does not know asks for an early refresh ([`take_unknown`]).
pub fn get(server: &str) -> Option<Discovered> {
    let s = STORE.read().unwrap_or_else(|p| p.into_inner());
    let map = s.as_ref()?;
    let found = server
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| map.get(&a).cloned());
    if found.is_none() {
        UNKNOWN_SEEN.store(true, Ordering::Relaxed);
    }
    found
}

/// Whether an unknown server was seen since the last call (the refresher asks).
pub fn take_unknown() -> bool {
    UNKNOWN_SEEN.swap(false, Ordering::Relaxed)
}
