//! Which database instance a server address is: from `--instance-map` (identifier, cluster,
//! engine and version, ARN, tags), else from what AWS says is there (`--discover rds`), else the
//! server's own address, with the engine named after the protocol. Baselines, learning periods and findings are per instance.

use super::Detector;
use super::enrich::InstanceSpec;
use super::finding::{InstanceDetails, Tag};
use crate::aggregate::discovered;
use std::net::SocketAddr;

#[derive(Clone, Debug)]
pub(super) struct Inst {
    pub(super) key: String,
    pub(super) details: InstanceDetails,
}

/// RDS's engine family for a protocol (RDS names SQL Server's editions `sqlserver-ee`,
/// `sqlserver-se`, …; the wire does not say which).
fn default_engine(protocol: &str) -> &str {
    match protocol {
        "postgresql" => "postgres",
        "mssql" => "sqlserver",
        p => p,
    }
}

impl Detector {
    pub(super) fn instance(&mut self, server: &str, protocol: &str) -> Inst {
        // A refresh of what AWS says may have moved names: what was cached from it is stale.
        let generation = discovered::generation();
        if generation != self.discovered_generation {
            self.inst_cache.clear();
            self.discovered_generation = generation;
        }
        if let Some(i) = self.inst_cache.get(server) {
            return i.clone();
        }
        let found;
        let spec = match server
            .parse::<SocketAddr>()
            .ok()
            .and_then(|s| self.instances.get(s))
        {
            Some(s) => Some(s),
            None => {
                found = discovered::get(server).map(|d| InstanceSpec {
                    db_instance_identifier: d.db_instance_identifier,
                    db_cluster_identifier: d.db_cluster_identifier,
                    engine: Some(d.engine),
                    engine_version: d.engine_version,
                    db_instance_arn: d.db_instance_arn,
                    tags: d.tags,
                });
                found.as_ref()
            }
        };
        let details = match spec {
            Some(s) => InstanceDetails {
                db_instance_identifier: s.db_instance_identifier.clone(),
                db_cluster_identifier: s.db_cluster_identifier.clone(),
                engine: s
                    .engine
                    .clone()
                    .unwrap_or_else(|| default_engine(protocol).to_string()),
                engine_version: s.engine_version.clone(),
                db_instance_arn: s.db_instance_arn.clone(),
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| Tag {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                address: server.to_string(),
            },
            // Unmapped: the server's address names the instance (an RDS instance has its own).
            None => InstanceDetails {
                db_instance_identifier: server
                    .parse::<SocketAddr>()
                    .map_or_else(|_| server.to_string(), |s| s.ip().to_string()),
                engine: default_engine(protocol).to_string(),
                address: server.to_string(),
                ..InstanceDetails::default()
            },
        };
        // Named by the map: its identifier. Unnamed: the address and the engine, so that a
        // PostgreSQL and a MariaDB on one address (a test host, a self-managed server) are two
        // instances, with their own baselines and findings.
        let key = if spec.is_some() {
            details.db_instance_identifier.clone()
        } else {
            format!("{}/{}", details.db_instance_identifier, details.engine)
        };
        let i = Inst { key, details };
        if self.inst_cache.len() > 10_000 {
            self.inst_cache.clear();
        }
        self.inst_cache.insert(server.to_string(), i.clone());
        i
    }
}
