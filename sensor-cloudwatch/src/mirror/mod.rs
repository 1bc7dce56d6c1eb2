//! `rds-sensor aws mirror plan|apply|reconcile`, and the agent's `--mirror-reconcile`: VPC
//! Traffic Mirroring from the chosen RDS instances to the sensor, kept in place.
//!
//! One pass: [`observe`] (Describe calls only) → [`plan`] (no call: what to create, repair or
//! delete) → [`apply`] (the calls, in an order where each finds what it needs). Run twice, the
//! second pass plans nothing: the command is idempotent. RDS replaces an instance's network
//! interface on failover, scaling and maintenance, and the sessions on the old one vanish with
//! it, so the agent runs the pass periodically ([`reconcile`]).
//!
//! moto 5.2.5, the emulator the tests run against, has DescribeNetworkInterfaces, the traffic
//! mirror targets, filters and sessions (create, describe, modify, delete), but none of
//! CreateTrafficMirrorFilterRule, DeleteTrafficMirrorFilterRule, DeleteTrafficMirrorFilter,
//! DeleteTrafficMirrorTarget or ModifyTrafficMirrorFilterRule (it answers 500): the rule calls
//! are proven by the plan's unit tests and by the calls the emulator refuses, named.

mod apply;
mod observe;
mod plan;
mod reconcile;

pub use observe::{Instance, World};
pub use plan::{Call, Plan, Ref, plan, wanted_rules};
pub use rds_sensor::cli::MirrorAction as Action;
pub use reconcile::{Reconciler, start};

use anyhow::Result;
use rds_sensor::cli::MirrorSpec;
use std::fmt;

/// The tag on everything `aws mirror` makes; its value is the spec's name.
pub const NAME_TAG: &str = "rds-sensor:mirror";
/// On a session: the DBInstanceIdentifier it mirrors.
pub const INSTANCE_TAG: &str = "rds-sensor:instance";

/// The label on what we make: `rds-sensor`, or `rds-sensor NAME` for another name.
pub fn label(name: &str) -> String {
    match name {
        rds_sensor::config::mirror::DEFAULT_NAME => name.to_string(),
        _ => format!("rds-sensor {name}"),
    }
}

/// A filter rule, as observed or wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// AWS's id (observed rules only).
    pub id: Option<String>,
    pub ingress: bool,
    pub number: i32,
    pub accept: bool,
    pub protocol: Option<i32>,
    pub src_ports: Option<(u16, u16)>,
    pub dst_ports: Option<(u16, u16)>,
    pub src_cidr: String,
    pub dst_cidr: String,
}

impl Rule {
    /// The same traffic, whatever its number and id.
    pub fn same_match(&self, o: &Rule) -> bool {
        (
            self.ingress,
            self.accept,
            self.protocol,
            self.src_ports,
            self.dst_ports,
            &self.src_cidr,
            &self.dst_cidr,
        ) == (
            o.ingress,
            o.accept,
            o.protocol,
            o.src_ports,
            o.dst_ports,
            &o.src_cidr,
            &o.dst_cidr,
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = |p: Option<(u16, u16)>| match p {
            Some((a, b)) if a == b => format!(":{a}"),
            Some((a, b)) => format!(":{a}-{b}"),
            None => String::new(),
        };
        write!(
            f,
            "{} #{} {} proto {} {}{} -> {}{}",
            if self.ingress { "ingress" } else { "egress" },
            self.number,
            if self.accept { "accept" } else { "reject" },
            self.protocol.map_or("all".into(), |p| p.to_string()),
            self.src_cidr,
            ports(self.src_ports),
            self.dst_cidr,
            ports(self.dst_ports)
        )
    }
}

/// `rds-sensor aws mirror ACTION`: one pass, said on stdout; an error when anything is left
/// wrong.
pub fn command(action: Action, spec: &MirrorSpec) -> Result<()> {
    let cfg = std::sync::Arc::new(crate::Config::default());
    let spec = spec.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = crate::ship::worker::spawn(
        "rds-mirror",
        None,
        cfg,
        None,
        clients,
        move |(rds, ec2)| async move {
            let r = async {
                let resolver = crate::discover::Resolver::load(spec.hosts.as_deref())?;
                let world = observe::observe(&rds, &ec2, &spec, &resolver).await?;
                let plan = plan::plan(&spec, &world, action)?;
                let mut out = std::io::stdout().lock();
                match action {
                    Action::Plan => apply::print_plan(&mut out, &plan, &world),
                    Action::Apply | Action::Reconcile => {
                        apply::apply(&ec2, &plan, &world, &mut out).await
                    }
                }
            }
            .await;
            let _ = tx.send(r);
        },
        || {},
    )?;
    let r = rx
        .recv()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the mirror thread stopped")));
    let _ = thread.join();
    r
}

pub(crate) fn clients(
    sdk: &aws_config::SdkConfig,
    _: &crate::Config,
) -> Result<(aws_sdk_rds::Client, aws_sdk_ec2::Client)> {
    crate::ship::clients::require_region(sdk)?;
    Ok((aws_sdk_rds::Client::new(sdk), aws_sdk_ec2::Client::new(sdk)))
}

#[cfg(test)]
mod tests;
