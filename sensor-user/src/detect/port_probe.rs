//! Connections without a login: probes closed before any authentication, from a network that
//! never probed while learning (`Discovery:RDS/PortProbe.Unauthenticated`), and sessions the
//! sensor could not read from a network never seen (`InitialAccess:RDS/AnomalousBehavior.NewClientEdge`).

use super::context::{FlowCtx, Who};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType};

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
            ref how,
            ref ev,
            listed,
        } = *c;
        let net = a.net.to_string();
        let ib = self.instance_baseline(&inst.key);
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
            let desc = format!(
                "{ip} connected to {id} ({}) and {how}; its network {net} never did that while learning.",
                f.endpoint.server
            );
            self.report(
                out,
                c.who(),
                FindingType::PortProbe,
                a.medium_if_public(),
                format!("Unauthenticated connection probing RDS DB instance {id}"),
                desc,
                ev.clone(),
            );
        } else if complete && !had_login && !probe && !listed && !ib.networks.contains_key(&net) {
            let desc = format!("First session from network {net} to {id} ({ip}; {how}).");
            self.report(
                out,
                Who {
                    key: format!("{net}|*"),
                    ..c.who()
                },
                FindingType::NewClientEdge,
                a.medium_if_public(),
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
