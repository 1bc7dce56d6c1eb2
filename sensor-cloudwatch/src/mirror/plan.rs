//! From what is there ([`World`]) to the calls that make it what the spec asks: no AWS call
//! here, so every case (rules AWS has and moto cannot hold among them) is a unit test.
//!
//! What is ours is what carries `rds-sensor:mirror=NAME`: only that is modified or deleted.
//! A target is shared (an interface can be the target of one target resource only), so an
//! existing one for the same interface, balancer or endpoint is used whoever made it.

use super::observe::{Session, World};
use super::{Action, Rule};
use anyhow::{Result, bail};
use rds_sensor::cli::MirrorSpec;
use rds_sensor::config::mirror::{MAX_FILTER_RULES, MirrorTarget};
use std::collections::BTreeSet;
use std::fmt;

/// AWS's limit of sessions on one source interface.
pub const MAX_SESSIONS_PER_ENI: usize = 3;
/// First rule number we give, and the step between ours (room for an operator's own).
const RULE_BASE: i32 = 100;

/// An id that exists, or the one a create call earlier in the same plan returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref {
    Existing(String),
    New,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    CreateTarget {
        target: MirrorTarget,
    },
    CreateFilter,
    CreateRule {
        filter: Ref,
        rule: Rule,
    },
    DeleteRule {
        rule: Rule,
    },
    CreateSession {
        eni: String,
        instance: String,
        target: Ref,
        filter: Ref,
        number: i32,
    },
    ModifySession {
        id: String,
        eni: String,
        target: Option<Ref>,
        filter: Option<Ref>,
        packet_length: bool,
    },
    DeleteSession {
        id: String,
        eni: String,
    },
}

/// The calls, in the order they can be made, and what the operator should know.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub name: String,
    pub packet_length: Option<u16>,
    pub calls: Vec<Call>,
    /// Said, nothing to call.
    pub notes: Vec<String>,
    /// Cannot be made right by any call: the run fails after the calls it can make.
    pub problems: Vec<String>,
    /// The interfaces mirrored once the calls are made.
    pub enis: usize,
}

/// The rules a filter needs for these ports: TCP to the port coming in, from it going out.
pub fn wanted_rules(ports: &[u16], ipv6: bool) -> Vec<Rule> {
    let mut out = Vec::new();
    let families: &[&str] = if ipv6 {
        &["0.0.0.0/0", "::/0"]
    } else {
        &["0.0.0.0/0"]
    };
    for &p in ports {
        for cidr in families {
            for ingress in [true, false] {
                out.push(Rule {
                    id: None,
                    ingress,
                    number: 0,
                    accept: true,
                    protocol: Some(6),
                    src_ports: (!ingress).then_some((p, p)),
                    dst_ports: ingress.then_some((p, p)),
                    src_cidr: (*cidr).into(),
                    dst_cidr: (*cidr).into(),
                });
            }
        }
    }
    out
}

/// The lowest session number not taken on an interface (AWS: 1 to 32766, unique per source).
fn free_number(taken: &BTreeSet<i32>) -> i32 {
    (1..=32766).find(|n| !taken.contains(n)).unwrap_or(32766)
}

pub fn plan(spec: &MirrorSpec, world: &World, action: Action) -> Result<Plan> {
    let mut p = Plan {
        name: spec.name().to_string(),
        packet_length: spec.packet_length,
        ..Plan::default()
    };
    for m in &world.missing {
        let line = format!("{m}: RDS has no such instance");
        match action {
            // The agent keeps what it can: an instance being deleted is no reason to stop.
            Action::Reconcile => p.notes.push(line),
            _ => p.problems.push(line),
        }
    }

    // The ports: the spec's, or every chosen instance's endpoint port.
    let mut ports: Vec<u16> = if spec.ports.is_empty() {
        world.instances.iter().filter_map(|i| i.port).collect()
    } else {
        spec.ports.clone()
    };
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        bail!("no database port: no chosen instance has an endpoint yet; give --port");
    }
    let n = spec.rules_for(ports.len());
    if n > MAX_FILTER_RULES {
        bail!(
            "the instances listen on {} ports ({}), which need {n} filter rules; a traffic mirror filter \
             holds at most {MAX_FILTER_RULES}: choose fewer instances, or give --port",
            ports.len(),
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // The target.
    let want = spec.target()?;
    let target = match world.targets.iter().find(|t| match &want {
        MirrorTarget::Eni(e) => t.eni.as_deref() == Some(e),
        MirrorTarget::Nlb(a) => t.nlb.as_deref() == Some(a),
        MirrorTarget::Gwlbe(g) => t.gwlbe.as_deref() == Some(g),
    }) {
        Some(t) => Ref::Existing(t.id.clone()),
        None => {
            p.calls.push(Call::CreateTarget {
                target: want.clone(),
            });
            Ref::New
        }
    };

    // The filter and its rules.
    let filter = match world.filters.first() {
        Some(f) => {
            if world.filters.len() > 1 {
                p.notes.push(format!(
                    "{} filters carry {}={}; {} is used, the others are left alone",
                    world.filters.len(),
                    super::NAME_TAG,
                    p.name,
                    f.id
                ));
            }
            Ref::Existing(f.id.clone())
        }
        None => {
            p.calls.push(Call::CreateFilter);
            Ref::New
        }
    };
    let have: &[Rule] = world.filters.first().map_or(&[], |f| &f.rules);
    let wanted = wanted_rules(&ports, spec.ipv6);
    // Extra rules go first: the quota counts them until they are gone.
    for r in have {
        if !wanted.iter().any(|w| w.same_match(r)) {
            p.calls.push(Call::DeleteRule { rule: r.clone() });
        }
    }
    let mut used: BTreeSet<(bool, i32)> = have
        .iter()
        .filter(|r| wanted.iter().any(|w| w.same_match(r)))
        .map(|r| (r.ingress, r.number))
        .collect();
    for w in &wanted {
        if have.iter().any(|r| w.same_match(r)) {
            continue;
        }
        let number = (0..)
            .map(|k| RULE_BASE * (k + 1))
            .find(|n| !used.contains(&(w.ingress, *n)))
            .unwrap_or(RULE_BASE);
        used.insert((w.ingress, number));
        p.calls.push(Call::CreateRule {
            filter: filter.clone(),
            rule: Rule {
                number,
                ..w.clone()
            },
        });
    }

    // One session per interface of the chosen instances.
    let mut wanted_enis = BTreeSet::new();
    for inst in &world.instances {
        if inst.host.is_none() {
            p.notes.push(format!(
                "{}: no endpoint yet (being created?); mirrored once it has one",
                inst.id
            ));
            continue;
        }
        if inst.addresses.is_empty() {
            p.problems.push(format!(
                "{}: its endpoint {} does not resolve here",
                inst.id,
                inst.host.as_deref().unwrap_or_default()
            ));
            continue;
        }
        if inst.enis.is_empty() {
            p.problems.push(format!(
                "{}: no network interface holds {} (its endpoint's address)",
                inst.id,
                inst.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        for eni in &inst.enis {
            if !wanted_enis.insert(eni.clone()) {
                continue;
            }
            let on: Vec<&Session> = world.sessions.iter().filter(|s| &s.eni == eni).collect();
            let mine = on
                .iter()
                .find(|s| Ref::Existing(s.target.clone()) == target)
                .or_else(|| on.iter().find(|s| s.ours));
            match mine {
                Some(s) => {
                    let t = (Ref::Existing(s.target.clone()) != target).then(|| target.clone());
                    let f = (Ref::Existing(s.filter.clone()) != filter).then(|| filter.clone());
                    let pl = s.packet_length != spec.packet_length.map(i32::from);
                    // Another's session on our target is theirs: its filter is left as it is.
                    let f = if s.ours { f } else { None };
                    if t.is_some() || f.is_some() || (pl && s.ours) {
                        p.calls.push(Call::ModifySession {
                            id: s.id.clone(),
                            eni: eni.clone(),
                            target: t,
                            filter: f,
                            packet_length: pl && s.ours,
                        });
                    }
                }
                None if on.len() >= MAX_SESSIONS_PER_ENI => p.problems.push(format!(
                    "{}: {eni} has {} mirror sessions already, AWS's limit",
                    inst.id,
                    on.len()
                )),
                None => {
                    let taken = on.iter().map(|s| s.number).collect();
                    p.calls.push(Call::CreateSession {
                        eni: eni.clone(),
                        instance: inst.id.clone(),
                        target: target.clone(),
                        filter: filter.clone(),
                        number: free_number(&taken),
                    });
                }
            }
        }
    }
    p.enis = wanted_enis.len();

    // Ours, on interfaces no chosen instance has (any more).
    for s in world
        .sessions
        .iter()
        .filter(|s| s.ours && !wanted_enis.contains(&s.eni))
    {
        match action {
            Action::Reconcile => p.calls.push(Call::DeleteSession {
                id: s.id.clone(),
                eni: s.eni.clone(),
            }),
            _ => p.notes.push(format!(
                "{} on {} mirrors no chosen instance's interface any more; `reconcile` deletes it",
                s.id, s.eni
            )),
        }
    }
    Ok(p)
}

/// A value for the shell, quoted when it has to be.
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn id(r: &Ref, placeholder: &str) -> String {
    match r {
        Ref::Existing(s) => sh(s),
        Ref::New => placeholder.to_string(),
    }
}

/// One call, as the `aws ec2` command that makes it (`$TARGET`, `$FILTER`: the ids the create
/// calls before it return).
pub struct Shown<'a> {
    pub call: &'a Call,
    pub plan: &'a Plan,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.plan.name;
        let tags = |kind: &str, extra: &str| {
            sh(&format!(
                "ResourceType={kind},Tags=[{{Key={},Value={name}}}{extra}]",
                super::NAME_TAG
            ))
        };
        match self.call {
            Call::CreateTarget { target } => {
                let (flag, v) = match target {
                    MirrorTarget::Eni(e) => ("--network-interface-id", e),
                    MirrorTarget::Nlb(a) => ("--network-load-balancer-arn", a),
                    MirrorTarget::Gwlbe(g) => ("--gateway-load-balancer-endpoint-id", g),
                };
                write!(
                    f,
                    "aws ec2 create-traffic-mirror-target {flag} {} --description {} --tag-specifications {}",
                    sh(v),
                    sh(&super::label(name)),
                    tags("traffic-mirror-target", "")
                )
            }
            Call::CreateFilter => write!(
                f,
                "aws ec2 create-traffic-mirror-filter --description {} --tag-specifications {}",
                sh(&format!("{}: database ports", super::label(name))),
                tags("traffic-mirror-filter", "")
            ),
            Call::CreateRule { filter, rule } => {
                write!(
                    f,
                    "aws ec2 create-traffic-mirror-filter-rule --traffic-mirror-filter-id {} \
                     --traffic-direction {} --rule-number {} --rule-action {} --protocol {}",
                    id(filter, "$FILTER"),
                    if rule.ingress { "ingress" } else { "egress" },
                    rule.number,
                    if rule.accept { "accept" } else { "reject" },
                    rule.protocol.unwrap_or(6)
                )?;
                if let Some((a, b)) = rule.src_ports {
                    write!(f, " --source-port-range FromPort={a},ToPort={b}")?;
                }
                if let Some((a, b)) = rule.dst_ports {
                    write!(f, " --destination-port-range FromPort={a},ToPort={b}")?;
                }
                write!(
                    f,
                    " --source-cidr-block {} --destination-cidr-block {}",
                    sh(&rule.src_cidr),
                    sh(&rule.dst_cidr)
                )
            }
            Call::DeleteRule { rule } => write!(
                f,
                "aws ec2 delete-traffic-mirror-filter-rule --traffic-mirror-filter-rule-id {}  # {}",
                sh(rule.id.as_deref().unwrap_or_default()),
                rule
            ),
            Call::CreateSession {
                eni,
                instance,
                target,
                filter,
                number,
            } => {
                write!(
                    f,
                    "aws ec2 create-traffic-mirror-session --network-interface-id {} \
                     --traffic-mirror-target-id {} --traffic-mirror-filter-id {} --session-number {number}",
                    sh(eni),
                    id(target, "$TARGET"),
                    id(filter, "$FILTER")
                )?;
                if let Some(n) = self.plan.packet_length {
                    write!(f, " --packet-length {n}")?;
                }
                write!(
                    f,
                    " --description {} --tag-specifications {}",
                    sh(&format!("{}: {instance}", super::label(name))),
                    tags(
                        "traffic-mirror-session",
                        &format!(",{{Key={},Value={instance}}}", super::INSTANCE_TAG)
                    )
                )
            }
            Call::ModifySession {
                id: sid,
                target,
                filter,
                packet_length,
                ..
            } => {
                write!(
                    f,
                    "aws ec2 modify-traffic-mirror-session --traffic-mirror-session-id {}",
                    sh(sid)
                )?;
                if let Some(t) = target {
                    write!(f, " --traffic-mirror-target-id {}", id(t, "$TARGET"))?;
                }
                if let Some(x) = filter {
                    write!(f, " --traffic-mirror-filter-id {}", id(x, "$FILTER"))?;
                }
                if *packet_length {
                    match self.plan.packet_length {
                        Some(n) => write!(f, " --packet-length {n}")?,
                        None => write!(f, " --remove-fields packet-length")?,
                    }
                }
                Ok(())
            }
            Call::DeleteSession { id: sid, eni } => write!(
                f,
                "aws ec2 delete-traffic-mirror-session --traffic-mirror-session-id {}  # on {eni}",
                sh(sid)
            ),
        }
    }
}
