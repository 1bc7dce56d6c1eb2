//! What is there now: the chosen instances and their network interfaces, the mirror targets,
//! the filters and sessions carrying our tag (or on our target). Only Describe calls.
//!
//! An RDS instance's network interface is found by its address: the endpoint's name resolves
//! to the interface's private address (DescribeNetworkInterfaces,
//! `addresses.private-ip-address`), in the instance's VPC. RDS names these interfaces
//! `RDSNetworkInterface` but says nowhere which instance one belongs to; the address is the
//! one link. A Multi-AZ standby's interface has no name pointing at it until a failover moves
//! the endpoint there, which is why the agent reconciles periodically.

use super::{NAME_TAG, Rule};
use crate::discover::Resolver;
use anyhow::{Context, Result};
use aws_sdk_ec2::types::{Filter, Tag, TrafficDirection, TrafficMirrorRuleAction};
use rds_sensor::cli::MirrorSpec;
use std::collections::BTreeMap;

/// An instance the spec chose, as RDS describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    pub id: String,
    pub port: Option<u16>,
    /// Its endpoint's addresses, resolved now (empty: no endpoint yet, or no answer).
    pub addresses: Vec<std::net::IpAddr>,
    pub host: Option<String>,
    /// Network interfaces holding one of those addresses.
    pub enis: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub id: String,
    pub eni: Option<String>,
    pub nlb: Option<String>,
    pub gwlbe: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FilterState {
    pub id: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub id: String,
    pub eni: String,
    pub target: String,
    pub filter: String,
    pub number: i32,
    pub packet_length: Option<i32>,
    /// Carries `rds-sensor:mirror=NAME` of this spec: ours to repair or remove.
    pub ours: bool,
}

/// Everything a plan is made from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct World {
    pub instances: Vec<Instance>,
    /// Named by `--instance` (or a cluster named by `--cluster`) and not found.
    pub missing: Vec<String>,
    pub targets: Vec<Target>,
    /// Filters with our tag, oldest listed first.
    pub filters: Vec<FilterState>,
    pub sessions: Vec<Session>,
}

fn tagged(tags: &[Tag], name: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(NAME_TAG) && t.value() == Some(name))
}

fn rule(r: &aws_sdk_ec2::types::TrafficMirrorFilterRule) -> Rule {
    let range = |p: Option<&aws_sdk_ec2::types::TrafficMirrorPortRange>| {
        p.and_then(|p| {
            Some((
                u16::try_from(p.from_port()?).ok()?,
                u16::try_from(p.to_port()?).ok()?,
            ))
        })
    };
    Rule {
        id: r.traffic_mirror_filter_rule_id().map(str::to_string),
        ingress: r.traffic_direction() == Some(&TrafficDirection::Ingress),
        number: r.rule_number().unwrap_or_default(),
        accept: r.rule_action() == Some(&TrafficMirrorRuleAction::Accept),
        protocol: r.protocol(),
        src_ports: range(r.source_port_range()),
        dst_ports: range(r.destination_port_range()),
        src_cidr: r.source_cidr_block().unwrap_or_default().to_string(),
        dst_cidr: r.destination_cidr_block().unwrap_or_default().to_string(),
    }
}

async fn instances(
    rds: &aws_sdk_rds::Client,
    spec: &MirrorSpec,
) -> Result<(Vec<(Instance, Option<String>)>, Vec<String>)> {
    let mut found = Vec::new();
    let mut clusters_seen = Vec::new();
    let mut pages = rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeDBInstances")?;
        for db in page.db_instances() {
            let id = db.db_instance_identifier().unwrap_or_default();
            let cluster = db.db_cluster_identifier();
            let chosen = spec.instances.iter().any(|i| i == id)
                || cluster.is_some_and(|c| spec.clusters.iter().any(|k| k == c));
            if !chosen {
                continue;
            }
            if let Some(c) = cluster {
                clusters_seen.push(c.to_string());
            }
            let ep = db.endpoint();
            let vpc = db
                .db_subnet_group()
                .and_then(|g| g.vpc_id())
                .map(str::to_string);
            found.push((
                Instance {
                    id: id.to_string(),
                    port: ep
                        .and_then(|e| e.port())
                        .and_then(|p| u16::try_from(p).ok()),
                    host: ep.and_then(|e| e.address()).map(str::to_string),
                    ..Instance::default()
                },
                vpc,
            ));
        }
    }
    let mut missing: Vec<String> = spec
        .instances
        .iter()
        .filter(|i| !found.iter().any(|(f, _)| &f.id == *i))
        .cloned()
        .collect();
    missing.extend(
        spec.clusters
            .iter()
            .filter(|c| !clusters_seen.contains(c))
            .map(|c| format!("cluster {c}")),
    );
    Ok((found, missing))
}

/// Network interfaces holding each address, within `vpc` when it is known.
async fn enis_at(
    ec2: &aws_sdk_ec2::Client,
    addrs: &[std::net::IpAddr],
    vpc: Option<&str>,
) -> Result<Vec<String>> {
    let (v4, v6): (Vec<std::net::IpAddr>, Vec<std::net::IpAddr>) =
        addrs.iter().partition(|a| a.is_ipv4());
    let mut out = Vec::new();
    for (filter, list) in [
        ("addresses.private-ip-address", v4),
        ("ipv6-addresses.ipv6-address", v6),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut req = ec2.describe_network_interfaces().filters(
            Filter::builder()
                .name(filter)
                .set_values(Some(list.iter().map(ToString::to_string).collect()))
                .build(),
        );
        if let Some(v) = vpc {
            req = req.filters(Filter::builder().name("vpc-id").values(v).build());
        }
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.context("DescribeNetworkInterfaces")?;
            out.extend(
                page.network_interfaces()
                    .iter()
                    .filter_map(|n| n.network_interface_id().map(str::to_string)),
            );
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One look at everything the plan needs.
pub async fn observe(
    rds: &aws_sdk_rds::Client,
    ec2: &aws_sdk_ec2::Client,
    spec: &MirrorSpec,
    resolver: &Resolver,
) -> Result<World> {
    let name = spec.name();
    let (found, missing) = instances(rds, spec).await?;
    let mut world = World {
        missing,
        ..World::default()
    };
    for (mut inst, vpc) in found {
        if let (Some(host), Some(port)) = (&inst.host, inst.port) {
            let mut ips: Vec<_> = resolver
                .resolve(host, port)
                .into_iter()
                .map(|a| a.ip())
                .collect();
            ips.sort();
            ips.dedup();
            inst.addresses = ips;
        }
        inst.enis = enis_at(ec2, &inst.addresses, vpc.as_deref()).await?;
        world.instances.push(inst);
    }
    world.instances.sort_by(|a, b| a.id.cmp(&b.id));

    let mut pages = ec2
        .describe_traffic_mirror_targets()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeTrafficMirrorTargets")?;
        world
            .targets
            .extend(page.traffic_mirror_targets().iter().map(|t| Target {
                id: t.traffic_mirror_target_id().unwrap_or_default().to_string(),
                eni: t.network_interface_id().map(str::to_string),
                nlb: t.network_load_balancer_arn().map(str::to_string),
                gwlbe: t.gateway_load_balancer_endpoint_id().map(str::to_string),
            }));
    }

    let mut pages = ec2
        .describe_traffic_mirror_filters()
        .filters(
            Filter::builder()
                .name(format!("tag:{NAME_TAG}"))
                .values(name)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeTrafficMirrorFilters")?;
        for f in page.traffic_mirror_filters() {
            // The tag filter is the server's; checked again here, since a filter that is not
            // ours must never be changed.
            if !tagged(f.tags(), name) {
                continue;
            }
            world.filters.push(FilterState {
                id: f.traffic_mirror_filter_id().unwrap_or_default().to_string(),
                rules: f
                    .ingress_filter_rules()
                    .iter()
                    .chain(f.egress_filter_rules())
                    .map(rule)
                    .collect(),
            });
        }
    }

    let mut by_id = BTreeMap::new();
    let mut pages = ec2
        .describe_traffic_mirror_sessions()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("DescribeTrafficMirrorSessions")?;
        for s in page.traffic_mirror_sessions() {
            let id = s
                .traffic_mirror_session_id()
                .unwrap_or_default()
                .to_string();
            by_id.insert(
                id.clone(),
                Session {
                    id,
                    eni: s.network_interface_id().unwrap_or_default().to_string(),
                    target: s.traffic_mirror_target_id().unwrap_or_default().to_string(),
                    filter: s.traffic_mirror_filter_id().unwrap_or_default().to_string(),
                    number: s.session_number().unwrap_or_default(),
                    packet_length: s.packet_length(),
                    ours: tagged(s.tags(), name),
                },
            );
        }
    }
    world.sessions = by_id.into_values().collect();
    Ok(world)
}
