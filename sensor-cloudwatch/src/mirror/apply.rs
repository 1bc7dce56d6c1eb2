//! A plan's calls, made in order. A create that fails leaves the calls needing its id undone
//! (and said); every other call is made all the same, so one refusal does not leave the rest
//! unmirrored. The run fails when any call did, after all were tried.

use super::observe::World;
use super::plan::{Call, Plan, Ref, Shown};
use super::{INSTANCE_TAG, NAME_TAG, label};
use anyhow::{Result, anyhow, bail};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    ResourceType, Tag, TagSpecification, TrafficDirection, TrafficMirrorPortRangeRequest,
    TrafficMirrorRuleAction, TrafficMirrorSessionField,
};
use rds_sensor::config::mirror::MirrorTarget;
use std::io::Write;

fn tags(kind: ResourceType, name: &str, instance: Option<&str>) -> TagSpecification {
    let mut b = TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key(NAME_TAG).value(name).build());
    if let Some(i) = instance {
        b = b.tags(Tag::builder().key(INSTANCE_TAG).value(i).build());
    }
    b.build()
}

/// What the pass found, in one line.
pub fn summary(plan: &Plan, world: &World) -> String {
    let sessions = world.sessions.iter().filter(|s| s.ours).count();
    format!(
        "mirror {}: {} instance{}, {} interface{}, {} session{} tagged ours",
        plan.name,
        world.instances.len(),
        if world.instances.len() == 1 { "" } else { "s" },
        plan.enis,
        if plan.enis == 1 { "" } else { "s" },
        sessions,
        if sessions == 1 { "" } else { "s" },
    )
}

fn notes(out: &mut dyn Write, plan: &Plan) -> Result<()> {
    for n in &plan.notes {
        writeln!(out, "# note: {n}")?;
    }
    for n in &plan.problems {
        writeln!(out, "# problem: {n}")?;
    }
    Ok(())
}

/// `plan`: the calls in `aws ec2` form; nothing made.
pub fn print_plan(out: &mut dyn Write, plan: &Plan, world: &World) -> Result<()> {
    writeln!(out, "# {}", summary(plan, world))?;
    notes(out, plan)?;
    if plan.calls.is_empty() {
        writeln!(out, "# in place: nothing to call")?;
    } else {
        if plan
            .calls
            .iter()
            .any(|c| matches!(c, Call::CreateTarget { .. } | Call::CreateFilter))
        {
            writeln!(
                out,
                "# $TARGET, $FILTER: the ids the create calls above them return"
            )?;
        }
        for c in &plan.calls {
            writeln!(out, "{}", Shown { call: c, plan })?;
        }
    }
    if !plan.problems.is_empty() {
        bail!(
            "{} problem{} no call can fix (above)",
            plan.problems.len(),
            if plan.problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// The id a call refers to, once its create call has run.
fn resolve(r: &Ref, made: &Option<String>, what: &str) -> Result<String> {
    match r {
        Ref::Existing(id) => Ok(id.clone()),
        Ref::New => made
            .clone()
            .ok_or_else(|| anyhow!("skipped: the {what} was not created")),
    }
}

/// AWS's reason in one line: its error code and message, or the HTTP status when the body
/// says nothing (an emulator's 500 for a call it lacks), or the transport's error.
fn said<E>(op: &str, e: &SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(se) = e {
        return match (se.err().code(), se.err().message()) {
            (Some(c), Some(m)) => anyhow!("{op}: {c}: {m}"),
            (Some(c), None) => anyhow!("{op}: {c}"),
            _ => anyhow!(
                "{op}: HTTP {} with no AWS error in its body (does the endpoint have this call?)",
                se.raw().status().as_u16()
            ),
        };
    }
    anyhow!("{op}: {}", DisplayErrorContext(e))
}

/// The call with the ids created before it in place of `$TARGET` and `$FILTER`.
fn with_ids(call: &Call, target: &Option<String>, filter: &Option<String>) -> Call {
    let fill = |r: &Ref, made: &Option<String>| match (r, made) {
        (Ref::New, Some(id)) => Ref::Existing(id.clone()),
        _ => r.clone(),
    };
    let mut c = call.clone();
    match &mut c {
        Call::CreateRule { filter: f, .. } => *f = fill(f, filter),
        Call::CreateSession {
            target: t,
            filter: f,
            ..
        } => {
            *t = fill(t, target);
            *f = fill(f, filter);
        }
        Call::ModifySession {
            target: t,
            filter: f,
            ..
        } => {
            if let Some(t) = t {
                *t = fill(t, target);
            }
            if let Some(f) = f {
                *f = fill(f, filter);
            }
        }
        _ => {}
    }
    c
}

async fn make(
    ec2: &aws_sdk_ec2::Client,
    plan: &Plan,
    call: &Call,
    target: &mut Option<String>,
    filter: &mut Option<String>,
) -> Result<String> {
    let name = plan.name.as_str();
    match call {
        Call::CreateTarget { target: t } => {
            let mut req = ec2
                .create_traffic_mirror_target()
                .description(label(name))
                .tag_specifications(tags(ResourceType::TrafficMirrorTarget, name, None));
            req = match t {
                MirrorTarget::Eni(x) => req.network_interface_id(x),
                MirrorTarget::Nlb(x) => req.network_load_balancer_arn(x),
                MirrorTarget::Gwlbe(x) => req.gateway_load_balancer_endpoint_id(x),
            };
            let r = req
                .send()
                .await
                .map_err(|x| said("CreateTrafficMirrorTarget", &x))?;
            let id = r
                .traffic_mirror_target()
                .and_then(|t| t.traffic_mirror_target_id())
                .ok_or_else(|| anyhow!("CreateTrafficMirrorTarget returned no id"))?;
            *target = Some(id.to_string());
            Ok(id.to_string())
        }
        Call::CreateFilter => {
            let r = ec2
                .create_traffic_mirror_filter()
                .description(format!("{}: database ports", label(name)))
                .tag_specifications(tags(ResourceType::TrafficMirrorFilter, name, None))
                .send()
                .await
                .map_err(|x| said("CreateTrafficMirrorFilter", &x))?;
            let id = r
                .traffic_mirror_filter()
                .and_then(|f| f.traffic_mirror_filter_id())
                .ok_or_else(|| anyhow!("CreateTrafficMirrorFilter returned no id"))?;
            *filter = Some(id.to_string());
            Ok(id.to_string())
        }
        Call::CreateRule { filter: f, rule } => {
            let fid = resolve(f, filter, "filter")?;
            let range = |p: Option<(u16, u16)>| {
                p.map(|(a, b)| {
                    TrafficMirrorPortRangeRequest::builder()
                        .from_port(i32::from(a))
                        .to_port(i32::from(b))
                        .build()
                })
            };
            let r = ec2
                .create_traffic_mirror_filter_rule()
                .traffic_mirror_filter_id(fid)
                .traffic_direction(if rule.ingress {
                    TrafficDirection::Ingress
                } else {
                    TrafficDirection::Egress
                })
                .rule_number(rule.number)
                .rule_action(if rule.accept {
                    TrafficMirrorRuleAction::Accept
                } else {
                    TrafficMirrorRuleAction::Reject
                })
                .set_protocol(rule.protocol)
                .set_source_port_range(range(rule.src_ports))
                .set_destination_port_range(range(rule.dst_ports))
                .source_cidr_block(&rule.src_cidr)
                .destination_cidr_block(&rule.dst_cidr)
                .description(label(name))
                .send()
                .await
                .map_err(|x| said("CreateTrafficMirrorFilterRule", &x))?;
            Ok(r.traffic_mirror_filter_rule()
                .and_then(|r| r.traffic_mirror_filter_rule_id())
                .unwrap_or_default()
                .to_string())
        }
        Call::DeleteRule { rule } => {
            ec2.delete_traffic_mirror_filter_rule()
                .traffic_mirror_filter_rule_id(rule.id.clone().unwrap_or_default())
                .send()
                .await
                .map_err(|x| said("DeleteTrafficMirrorFilterRule", &x))?;
            Ok(rule.id.clone().unwrap_or_default())
        }
        Call::CreateSession {
            eni,
            instance,
            target: t,
            filter: f,
            number,
        } => {
            let tid = resolve(t, target, "target")?;
            let fid = resolve(f, filter, "filter")?;
            let r = ec2
                .create_traffic_mirror_session()
                .network_interface_id(eni)
                .traffic_mirror_target_id(tid)
                .traffic_mirror_filter_id(fid)
                .session_number(*number)
                .set_packet_length(plan.packet_length.map(i32::from))
                .description(format!("{}: {instance}", label(name)))
                .tag_specifications(tags(
                    ResourceType::TrafficMirrorSession,
                    name,
                    Some(instance),
                ))
                .send()
                .await
                .map_err(|x| said("CreateTrafficMirrorSession", &x))?;
            Ok(r.traffic_mirror_session()
                .and_then(|s| s.traffic_mirror_session_id())
                .unwrap_or_default()
                .to_string())
        }
        Call::ModifySession {
            id,
            target: t,
            filter: f,
            packet_length,
            ..
        } => {
            let mut req = ec2
                .modify_traffic_mirror_session()
                .traffic_mirror_session_id(id);
            if let Some(t) = t {
                req = req.traffic_mirror_target_id(resolve(t, target, "target")?);
            }
            if let Some(f) = f {
                req = req.traffic_mirror_filter_id(resolve(f, filter, "filter")?);
            }
            if *packet_length {
                req = match plan.packet_length {
                    Some(n) => req.packet_length(i32::from(n)),
                    None => req.remove_fields(TrafficMirrorSessionField::PacketLength),
                };
            }
            req.send()
                .await
                .map_err(|x| said("ModifyTrafficMirrorSession", &x))?;
            Ok(id.clone())
        }
        Call::DeleteSession { id, .. } => {
            ec2.delete_traffic_mirror_session()
                .traffic_mirror_session_id(id)
                .send()
                .await
                .map_err(|x| said("DeleteTrafficMirrorSession", &x))?;
            Ok(id.clone())
        }
    }
}

/// What one run of the calls did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub made: usize,
    pub failed: Vec<String>,
}

/// Makes every call, saying each on `out` (`ok` with the id it returned, or `failed` with
/// AWS's reason).
pub async fn run(ec2: &aws_sdk_ec2::Client, plan: &Plan, out: &mut dyn Write) -> Result<Outcome> {
    let (mut target, mut filter) = (None, None);
    let mut o = Outcome::default();
    for c in &plan.calls {
        let shown = Shown {
            call: &with_ids(c, &target, &filter),
            plan,
        }
        .to_string();
        match make(ec2, plan, c, &mut target, &mut filter).await {
            Ok(id) => {
                o.made += 1;
                writeln!(out, "ok {id}: {shown}")?;
            }
            Err(e) => {
                writeln!(out, "failed: {shown}\n  {e:#}")?;
                o.failed.push(format!("{e:#}"));
            }
        }
    }
    Ok(o)
}

/// `apply`, `reconcile`: the calls, then one line of what was done.
pub async fn apply(
    ec2: &aws_sdk_ec2::Client,
    plan: &Plan,
    world: &World,
    out: &mut dyn Write,
) -> Result<()> {
    writeln!(out, "# {}", summary(plan, world))?;
    notes(out, plan)?;
    let o = run(ec2, plan, out).await?;
    writeln!(
        out,
        "# {} call{} made, {} failed",
        o.made,
        if o.made == 1 { "" } else { "s" },
        o.failed.len()
    )?;
    match (o.failed.len(), plan.problems.len()) {
        (0, 0) => Ok(()),
        (f, 0) => bail!("{f} of {} calls failed (above)", plan.calls.len()),
        (0, p) => bail!(
            "{p} problem{} no call can fix (above)",
            if p == 1 { "" } else { "s" }
        ),
        (f, p) => bail!(
            "{f} of {} calls failed, and {p} problem{} no call can fix (above)",
            plan.calls.len(),
            if p == 1 { "" } else { "s" }
        ),
    }
}
