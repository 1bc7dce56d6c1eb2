//! Connections without a login: probes closed before any authentication, from a network that
//! never probed while learning (`Discovery:RDS/PortProbe.Unauthenticated`), and sessions the
//! sensor could not read from a network never seen (`InitialAccess:RDS/AnomalousBehavior.NewClientEdge`).

use super::finding::Evidence;
use super::{Detector, Finding, FindingType, FlowCtx, Severity};

impl Detector {
    /// Learns or compares a flow's network: probes and sessions the sensor could not read.
    pub(super) fn unauthenticated_flow(&mut self, c: &FlowCtx, out: &mut Vec<Finding>) {
        let FlowCtx {
            f,
            ip,
            ref inst,
            learning,
            had_login,
            complete,
            probe,
            ref a,
            ref id,
            ref ipk,
            ref how,
            ref ev,
            listed,
        } = *c;
        let net = a.net.to_string();
        let ib = self
            .baseline
            .instances
            .get_mut(&inst.key)
            .expect("created by learning()");
        if learning {
            if listed {
                return;
            }
            if probe {
                ib.networks.entry(net).or_default().probes += 1;
            } else if complete && !had_login {
                ib.networks
                    .entry(net)
                    .or_default()
                    .databases
                    .insert("*".into());
            }
            return;
        }
        if probe && !listed {
            if ib.networks.get(&net).is_some_and(|n| n.probes > 0) {
                return;
            }
            let k = FindingType::PortProbe;
            let sev = if a.public {
                Severity::Medium
            } else {
                Severity::Low
            };
            let desc = format!(
                "{ip} connected to {id} ({}) and {how}; its network {net} never did that while learning.",
                f.server
            );
            self.report(
                out,
                k,
                sev,
                ipk.clone(),
                inst,
                a,
                None,
                format!("Unauthenticated connection probing RDS DB instance {id}"),
                desc,
                ev.clone(),
            );
        } else if complete && !had_login && !probe && !listed && !ib.networks.contains_key(&net) {
            let k = FindingType::NewClientEdge;
            let sev = if a.public {
                Severity::Medium
            } else {
                Severity::Low
            };
            let desc = format!("First session from network {net} to {id} ({ip}; {how}).");
            self.report(
                out,
                k,
                sev,
                format!("{net}|*"),
                inst,
                a,
                None,
                format!("New client network for RDS DB instance {id}"),
                desc,
                Evidence {
                    reasons: vec![format!("{net} never reached {id} while learning")],
                    ..ev.clone()
                },
            );
        }
    }
}
