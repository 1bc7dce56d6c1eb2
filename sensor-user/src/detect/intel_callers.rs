//! Threat-intelligence findings: an address on a malicious or Tor exit-node list logging in
//! (`CredentialAccess:RDS/MaliciousIPCaller.*`, `CredentialAccess:RDS/TorIPCaller.*`) or
//! connecting without a login (`Discovery:RDS/MaliciousIPCaller`, `Discovery:RDS/TorIPCaller`).
//! No baseline is needed: these are reported from the start.

use super::finding::Evidence;
use super::{Detector, Finding, FindingType, FlowCtx, LoginCtx};

impl Detector {
    /// A login from a listed address: `.SuccessfulLogin` / `.FailedLogin` per list.
    pub(super) fn intel_logins(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            ip,
            ref inst,
            ok,
            ref user,
            ref db,
            ref a,
            ref ud,
            ref id,
            verb,
            ref ipk,
            ..
        } = *c;
        // The two intel lists differ only in their finding types and wording.
        let hits: Vec<_> = [
            (
                self.malicious.lookup(ip),
                FindingType::MaliciousIpSuccessfulLogin,
                FindingType::MaliciousIpFailedLogin,
                "a known malicious IP address",
                "on the malicious list",
            ),
            (
                self.tor.lookup(ip),
                FindingType::TorSuccessfulLogin,
                FindingType::TorFailedLogin,
                "a Tor exit node",
                "a Tor exit node listed in",
            ),
        ]
        .into_iter()
        .filter_map(|(hit, yes, no, what, listed)| {
            hit.map(|(c, p)| {
                (
                    c.to_string(),
                    p.display().to_string(),
                    yes,
                    no,
                    what,
                    listed,
                )
            })
        })
        .collect();
        for (c, p, yes, no, what, listed) in hits {
            let (k, t) = if ok {
                (yes, "Successful login")
            } else {
                (no, "Failed login")
            };
            let desc = format!(
                "{ip} {verb} as {user} to database {db} on {id}; the address is {listed} {p} ({c})."
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                inst,
                a,
                ud.clone(),
                format!("{t} from {what} to RDS DB instance {id}"),
                desc,
                Evidence::default(),
            );
        }
    }

    /// A connection without a login from a listed address: `Discovery:RDS/…IPCaller`.
    pub(super) fn intel_discovery(&mut self, c: &FlowCtx, out: &mut Vec<Finding>) {
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
        if let Some((c, p)) = self.malicious.lookup(ip) {
            let k = FindingType::MaliciousIpDiscovery;
            let desc = format!(
                "{ip}, on the malicious list {} ({c}), connected to {id} ({}) and {how}.",
                p.display(),
                f.server
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                inst,
                a,
                None,
                format!("RDS DB instance {id} probed by a known malicious IP address"),
                desc,
                ev.clone(),
            );
        }
        if let Some((c, p)) = self.tor.lookup(ip) {
            let k = FindingType::TorDiscovery;
            let desc = format!(
                "{ip}, a Tor exit node ({c}, {}), connected to {id} ({}) and {how}.",
                p.display(),
                f.server
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                inst,
                a,
                None,
                format!("RDS DB instance {id} probed from a Tor exit node"),
                desc,
                ev.clone(),
            );
        }
    }
}
