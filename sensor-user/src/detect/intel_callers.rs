//! Threat-intelligence findings: an address on a malicious or Tor exit-node list logging in
//! (`CredentialAccess:RDS/MaliciousIPCaller.*`, `CredentialAccess:RDS/TorIPCaller.*`) or
//! connecting without a login (`Discovery:RDS/MaliciousIPCaller`, `Discovery:RDS/TorIPCaller`).
//! No baseline is needed: these are reported from the start.

use super::context::{FlowCtx, LoginCtx};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType};

impl Detector {
    /// A login from a listed address: `.SuccessfulLogin` / `.FailedLogin` per list.
    pub(super) fn intel_logins(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            ip,
            ok,
            ref user,
            ref id,
            verb,
            ..
        } = *c;
        let to_db = c.to_db();
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
        for (cat, p, yes, no, what, listed) in hits {
            let (k, t) = if ok {
                (yes, "Successful login")
            } else {
                (no, "Failed login")
            };
            let desc = format!(
                "{ip} {verb} as {user}{to_db} on {id}; the address is {listed} {p} ({cat})."
            );
            self.report(
                out,
                c.who(),
                k,
                k.default_severity(),
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
            ref id,
            ref how,
            ref ev,
            ..
        } = *c;
        // As for logins, the two lists differ only in their finding types and wording.
        let hits: Vec<_> = [
            self.malicious.lookup(ip).map(|(cat, p)| {
                (
                    FindingType::MaliciousIpDiscovery,
                    format!("on the malicious list {} ({cat})", p.display()),
                    "by a known malicious IP address",
                )
            }),
            self.tor.lookup(ip).map(|(cat, p)| {
                (
                    FindingType::TorDiscovery,
                    format!("a Tor exit node ({cat}, {})", p.display()),
                    "from a Tor exit node",
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (k, listed, by) in hits {
            self.report(
                out,
                c.who(),
                k,
                k.default_severity(),
                format!("RDS DB instance {id} probed {by}"),
                format!(
                    "{ip}, {listed}, connected to {id} ({}) and {how}.",
                    f.endpoint.server
                ),
                ev.clone(),
            );
        }
    }
}
