//! Policy: a client outside the networks the security group should allow (`--allowed-cidr`)
//! logging in or connecting (`Policy:RDS/UnallowedNetwork.Connection`). No baseline needed.

use super::finding::Evidence;
use super::{Detector, Finding, FindingType, FlowCtx, LoginCtx, Severity};

impl Detector {
    /// A login from outside the allowed networks: High if it succeeded.
    pub(super) fn unallowed_login(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            ip,
            ref inst,
            ok,
            ref user,
            ref a,
            ref ud,
            ref id,
            verb,
            ref ipk,
            ..
        } = *c;
        if !self.allowed.is_empty() && !self.allowed.contains(ip) {
            let k = FindingType::OutsideAllowedNetworks;
            let sev = if ok { Severity::High } else { Severity::Medium };
            let desc = format!(
                "{ip} ({}) {verb} as {user} to {id}; it is outside the allowed client networks.",
                a.net
            );
            self.report(
                out,
                k,
                sev,
                ipk.clone(),
                inst,
                a,
                ud.clone(),
                format!("Connection from outside the allowed networks to RDS DB instance {id}"),
                desc,
                Evidence::default(),
            );
        }
    }

    /// A connection without a login from outside the allowed networks.
    pub(super) fn unallowed_flow(&mut self, c: &FlowCtx, out: &mut Vec<Finding>) {
        let FlowCtx {
            f,
            ip,
            ref inst,
            ref a,
            ref id,
            ref ipk,
            ref how,
            ref ev,
            ..
        } = *c;
        if !self.allowed.is_empty() && !self.allowed.contains(ip) {
            let k = FindingType::OutsideAllowedNetworks;
            let desc = format!(
                "{ip} ({}) connected to {id} ({}) and {how}; it is outside the allowed client networks.",
                a.net, f.server
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                inst,
                a,
                None,
                format!("Connection from outside the allowed networks to RDS DB instance {id}"),
                desc,
                ev.clone(),
            );
        }
    }
}
