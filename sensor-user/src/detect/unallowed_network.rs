//! Policy: a client outside the networks the security group should allow (`--allowed-cidr`)
//! logging in or connecting (`Policy:RDS/UnallowedNetwork.Connection`). No baseline needed.

use super::context::{FlowCtx, LoginCtx, Who};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType, Severity};
use std::net::IpAddr;

impl Detector {
    /// Whether allowed networks are set and `ip` is outside them.
    fn outside_allowed(&self, ip: IpAddr) -> bool {
        !self.allowed.is_empty() && !self.allowed.contains(ip)
    }

    /// The finding, on `what` the client did.
    fn report_unallowed(
        &mut self,
        out: &mut Vec<Finding>,
        who: Who,
        sev: Severity,
        what: String,
        evidence: Evidence,
    ) {
        let id = who.inst.details.db_instance_identifier.clone();
        self.report(
            out,
            who,
            FindingType::OutsideAllowedNetworks,
            sev,
            format!("Connection from outside the allowed networks to RDS DB instance {id}"),
            format!("{what}; it is outside the allowed client networks."),
            evidence,
        );
    }

    /// A login from outside the allowed networks: High if it succeeded.
    pub(super) fn unallowed_login(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            ip,
            ok,
            ref user,
            ref a,
            ref id,
            verb,
            ..
        } = *c;
        if self.outside_allowed(ip) {
            let sev = if ok { Severity::High } else { Severity::Medium };
            let what = format!("{ip} ({}) {verb} as {user} to {id}", a.net);
            self.report_unallowed(out, c.who(), sev, what, Evidence::default());
        }
    }

    /// A connection without a login from outside the allowed networks.
    pub(super) fn unallowed_flow(&mut self, c: &FlowCtx, out: &mut Vec<Finding>) {
        let FlowCtx {
            f,
            ip,
            ref a,
            ref id,
            ref how,
            ref ev,
            ..
        } = *c;
        if self.outside_allowed(ip) {
            let sev = FindingType::OutsideAllowedNetworks.default_severity();
            let what = format!(
                "{ip} ({}) connected to {id} ({}) and {how}",
                a.net, f.endpoint.server
            );
            self.report_unallowed(out, c.who(), sev, what, ev.clone());
        }
    }
}
