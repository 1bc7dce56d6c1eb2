//! The one way a finding leaves a family: the observation (instance, account, client details,
//! the client's recent logins) goes to the [`FindingLog`](super::finding::FindingLog), which
//! emits it when new and deduplicates repeats into updates.

use super::context::{Actor, Who};
use super::finding::{
    Country, Evidence, LoginAttribute, Observation, Organization, RemoteIpDetails,
};
use super::{Detector, Finding, FindingType, Severity};
use std::net::IpAddr;

impl Detector {
    fn remote(a: &Actor) -> RemoteIpDetails {
        RemoteIpDetails {
            ip_address_v4: a.ip.is_ipv4().then(|| a.ip.to_string()),
            ip_address_v6: a.ip.is_ipv6().then(|| a.ip.to_string()),
            organization: Organization {
                asn: a.info.asn.map(|n| n.to_string()),
                asn_org: a.info.asn_org.clone(),
                isp: a.info.isp.clone(),
                org: a.info.org.clone().or_else(|| a.info.asn_org.clone()),
            },
            country: Country {
                country_code: a.info.country_code.clone(),
                country_name: a.info.country_name.clone(),
            },
            network: a.net.to_string(),
            public: a.public,
            threat_lists: a.lists.clone(),
        }
    }

    fn login_attributes(&self, inst: &str, ip: IpAddr) -> Vec<LoginAttribute> {
        self.login_counts
            .get(&(inst.to_string(), ip))
            .map(|m| {
                m.iter()
                    .take(20)
                    .map(|((u, a), (f, s))| LoginAttribute {
                        user: u.clone(),
                        application: a.clone(),
                        failed_login_attempts: *f,
                        successful_login_attempts: *s,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn report(
        &mut self,
        out: &mut Vec<Finding>,
        who: Who,
        kind: FindingType,
        severity: Severity,
        title: String,
        description: String,
        evidence: Evidence,
    ) {
        let o = Observation {
            kind,
            severity,
            instance_key: who.inst.key.clone(),
            actor: who.key,
            title,
            description,
            instance: who.inst.details.clone(),
            user: who.ud.cloned(),
            remote: Self::remote(who.a),
            logins: self.login_attributes(&who.inst.key, who.a.ip),
            evidence,
            ts_ns: self.now_ns,
            conn_id: self.conn_id,
        };
        if let Some(f) = self.log.report(o, self.now_ns) {
            out.push(f);
        }
    }
}
