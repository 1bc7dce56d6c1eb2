//! Findings shaped like Amazon GuardDuty's RDS Protection findings, their types and default
//! severities, the recommended responses, and the deduplication of repeats.

pub use crate::model::{
    Action, Country, Evidence, Finding, InstanceDetails, LoginAttribute, Organization,
    RdsLoginAttemptAction, RemoteIpDetails, Resource, Service, Severity, Tag, UserDetails,
};
use crate::model::{ConnId, FINDING_CONN_IDS_MAX, FirstActor, Timestamp};
use std::collections::HashMap;

/// Every finding type: GuardDuty's nine RDS Protection types, and the ones only packets show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingType {
    AnomalousSuccessfulLogin,
    AnomalousFailedLogin,
    SuccessfulBruteForce,
    MaliciousIpSuccessfulLogin,
    MaliciousIpFailedLogin,
    MaliciousIpDiscovery,
    TorSuccessfulLogin,
    TorFailedLogin,
    TorDiscovery,
    DataStaging,
    PrivilegeDrift,
    CredentialSpraying,
    PortProbe,
    CleartextAuthentication,
    Md5Authentication,
    OutsideAllowedNetworks,
    NewClientEdge,
    WeakTls,
    CertificateExpiring,
    TlsDowngrade,
    NewTlsFingerprint,
    TlsKeysMissing,
    IamStaticPassword,
    IamRequired,
    IamTokenExpired,
}

/// How the response differs by finding family.
#[derive(Clone, Copy)]
enum Family {
    Login,
    Intel,
    Sql,
    Probe,
    WeakAuth,
    Network,
    Tls,
    Iam,
}

impl FindingType {
    pub const ALL: [FindingType; 25] = [
        Self::AnomalousSuccessfulLogin,
        Self::AnomalousFailedLogin,
        Self::SuccessfulBruteForce,
        Self::MaliciousIpSuccessfulLogin,
        Self::MaliciousIpFailedLogin,
        Self::MaliciousIpDiscovery,
        Self::TorSuccessfulLogin,
        Self::TorFailedLogin,
        Self::TorDiscovery,
        Self::DataStaging,
        Self::PrivilegeDrift,
        Self::CredentialSpraying,
        Self::PortProbe,
        Self::CleartextAuthentication,
        Self::Md5Authentication,
        Self::OutsideAllowedNetworks,
        Self::NewClientEdge,
        Self::WeakTls,
        Self::CertificateExpiring,
        Self::TlsDowngrade,
        Self::NewTlsFingerprint,
        Self::TlsKeysMissing,
        Self::IamStaticPassword,
        Self::IamRequired,
        Self::IamTokenExpired,
    ];

    /// The type name, in GuardDuty's `ThreatPurpose:ResourceType/ThreatFamilyName.DetectionMechanism`
    /// form; the first nine are GuardDuty's own.
    pub fn name(self) -> &'static str {
        match self {
            Self::AnomalousSuccessfulLogin => {
                "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin"
            }
            Self::AnomalousFailedLogin => "CredentialAccess:RDS/AnomalousBehavior.FailedLogin",
            Self::SuccessfulBruteForce => {
                "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce"
            }
            Self::MaliciousIpSuccessfulLogin => {
                "CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin"
            }
            Self::MaliciousIpFailedLogin => "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin",
            Self::MaliciousIpDiscovery => "Discovery:RDS/MaliciousIPCaller",
            Self::TorSuccessfulLogin => "CredentialAccess:RDS/TorIPCaller.SuccessfulLogin",
            Self::TorFailedLogin => "CredentialAccess:RDS/TorIPCaller.FailedLogin",
            Self::TorDiscovery => "Discovery:RDS/TorIPCaller",
            Self::DataStaging => "Exfiltration:RDS/AnomalousBehavior.DataStaging",
            Self::PrivilegeDrift => "PrivilegeEscalation:RDS/AnomalousBehavior.PrivilegeDrift",
            Self::CredentialSpraying => "CredentialAccess:RDS/CredentialSpraying.ManyUsers",
            Self::PortProbe => "Discovery:RDS/PortProbe.Unauthenticated",
            Self::CleartextAuthentication => "CredentialAccess:RDS/WeakAuthentication.Cleartext",
            Self::Md5Authentication => "CredentialAccess:RDS/WeakAuthentication.MD5",
            Self::OutsideAllowedNetworks => "Policy:RDS/UnallowedNetwork.Connection",
            Self::NewClientEdge => "InitialAccess:RDS/AnomalousBehavior.NewClientEdge",
            Self::WeakTls => "Policy:RDS/WeakTls.Negotiated",
            Self::CertificateExpiring => "Policy:RDS/ServerCertificate.Expiring",
            Self::TlsDowngrade => "DefenseEvasion:RDS/TlsDowngrade.PlaintextLogin",
            Self::NewTlsFingerprint => "InitialAccess:RDS/AnomalousBehavior.NewTlsFingerprint",
            Self::TlsKeysMissing => "Operational:RDS/TlsKeys.Missing",
            Self::IamStaticPassword => "CredentialAccess:RDS/IamAuthentication.StaticPassword",
            Self::IamRequired => "Policy:RDS/IamAuthentication.Required",
            Self::IamTokenExpired => "CredentialAccess:RDS/IamAuthentication.ExpiredToken",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The default severity; some types raise it (see [`crate::detect`]).
    pub fn default_severity(self) -> Severity {
        match self {
            Self::AnomalousSuccessfulLogin => Severity::Low,
            Self::AnomalousFailedLogin => Severity::Low,
            Self::SuccessfulBruteForce => Severity::High,
            Self::MaliciousIpSuccessfulLogin => Severity::High,
            Self::MaliciousIpFailedLogin => Severity::Medium,
            Self::MaliciousIpDiscovery => Severity::Medium,
            Self::TorSuccessfulLogin => Severity::High,
            Self::TorFailedLogin => Severity::Medium,
            Self::TorDiscovery => Severity::Medium,
            Self::DataStaging => Severity::High,
            Self::PrivilegeDrift => Severity::Medium,
            Self::CredentialSpraying => Severity::Medium,
            Self::PortProbe => Severity::Low,
            Self::CleartextAuthentication => Severity::Medium,
            Self::Md5Authentication => Severity::Low,
            Self::OutsideAllowedNetworks => Severity::Medium,
            Self::NewClientEdge => Severity::Low,
            Self::WeakTls => Severity::Medium,
            Self::CertificateExpiring => Severity::Medium,
            Self::TlsDowngrade => Severity::Medium,
            Self::NewTlsFingerprint => Severity::Low,
            Self::TlsKeysMissing => Severity::Low,
            Self::IamStaticPassword => Severity::Medium,
            Self::IamRequired => Severity::Low,
            Self::IamTokenExpired => Severity::Medium,
        }
    }

    fn family(self) -> Family {
        match self {
            Self::AnomalousSuccessfulLogin
            | Self::AnomalousFailedLogin
            | Self::SuccessfulBruteForce
            | Self::CredentialSpraying => Family::Login,
            Self::MaliciousIpSuccessfulLogin
            | Self::MaliciousIpFailedLogin
            | Self::TorSuccessfulLogin
            | Self::TorFailedLogin => Family::Intel,
            Self::DataStaging | Self::PrivilegeDrift => Family::Sql,
            Self::MaliciousIpDiscovery | Self::TorDiscovery | Self::PortProbe => Family::Probe,
            Self::CleartextAuthentication | Self::Md5Authentication => Family::WeakAuth,
            Self::OutsideAllowedNetworks | Self::NewClientEdge => Family::Network,
            Self::WeakTls
            | Self::CertificateExpiring
            | Self::TlsDowngrade
            | Self::NewTlsFingerprint
            | Self::TlsKeysMissing => Family::Tls,
            Self::IamStaticPassword | Self::IamRequired | Self::IamTokenExpired => Family::Iam,
        }
    }

    /// What to do, after AWS's guidance on remediating a potentially compromised database and
    /// the RDS security best practices.
    pub fn recommended_response(self) -> &'static [&'static str] {
        const REVIEW: &str = "Review the database audit logs (PostgreSQL log_connections/pgAudit, MariaDB/MySQL audit plugin, Database Activity Streams) for what the session did, and the CloudTrail events of the instance.";
        const SG: &str = "Tighten the DB instance's security group (and network ACLs) to the client networks that need access; keep the instance out of public subnets (PubliclyAccessible=false).";
        const KILL: &str = "If the activity is unauthorized, terminate the session (pg_terminate_backend / KILL) and rotate the credential of the affected database user (or move it to IAM database authentication or Secrets Manager rotation).";
        match self.family() {
            Family::Login => &[
                "Confirm with the owner of the database user whether this login was expected.",
                KILL,
                SG,
                REVIEW,
            ],
            Family::Intel => &[
                "Treat the credential as compromised: the source is on a threat list.",
                KILL,
                SG,
                REVIEW,
            ],
            Family::Sql => &[
                "Confirm whether the statements and data volume were expected for this user.",
                KILL,
                "Grant the user only the privileges it needs (least privilege: revoke DDL, GRANT and bulk export rights from application users).",
                REVIEW,
            ],
            Family::Probe => &[
                SG,
                "Block the source address in network ACLs or AWS Network Firewall if it keeps probing.",
                REVIEW,
            ],
            Family::WeakAuth => &[
                "Require TLS for every connection (rds.force_ssl=1 / require_secure_transport=ON).",
                "Switch the user to SCRAM-SHA-256 (PostgreSQL) or caching_sha2_password (MySQL), or IAM database authentication, and rotate its password: it may have been exposed on the network.",
                REVIEW,
            ],
            Family::Network => &[
                "Confirm whether this client should reach the database.",
                SG,
                KILL,
                REVIEW,
            ],
            Family::Tls => &[
                "Require TLS 1.2 or later for every connection (rds.force_ssl=1 / require_secure_transport=ON; the parameter group's ssl_min_protocol_version / tls_version).",
                "Rotate the instance to a current RDS certificate authority before the old one expires (modify-db-instance --ca-certificate-identifier), and update the clients' trust stores.",
                "Confirm whether a new client (driver, tool) is expected; if not, treat it as an unknown actor.",
                REVIEW,
            ],
            Family::Iam => &[
                "Confirm with the owner of the database user whether a static password should work at all; if the user is to use IAM only, remove its password (PostgreSQL: GRANT rds_iam and ALTER ROLE … PASSWORD NULL; MySQL: IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS').",
                "An expired token presented again was stored where it can be read: find the client by its address, and keep tokens out of logs, environment dumps and command lines (they are bearer credentials for 15 minutes).",
                KILL,
                REVIEW,
            ],
        }
    }
}

/// One occurrence, before deduplication.
#[derive(Clone, Debug)]
pub struct Observation {
    pub kind: FindingType,
    pub severity: Severity,
    /// Which instance, as the detector keys it (its identifier; for a server no map names,
    /// address and engine: two engines on one address are two instances).
    pub instance_key: String,
    /// Who: a client address, or `user@instance` for credential-centred types.
    pub actor: String,
    pub title: String,
    pub description: String,
    pub instance: InstanceDetails,
    pub user: Option<UserDetails>,
    pub remote: RemoteIpDetails,
    pub logins: Vec<LoginAttribute>,
    pub evidence: Evidence,
    /// Wall-clock ns of the occurrence.
    pub ts_ns: u64,
    /// The connection of the record that showed it, when one did.
    pub conn_id: Option<ConnId>,
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Entry {
    finding: Finding,
    last_emit_ns: u64,
    dirty: bool,
}

/// Repeats of a finding (same type, actor and resource) update its count and last-seen time
/// instead of making a new one; an update is emitted at most every `update_every_ns`, and the
/// last pending ones on [`flush`](Self::flush).
pub struct FindingLog {
    entries: HashMap<String, Entry>,
    pub update_every_ns: u64,
    /// A finding with no new occurrence for this long has ended: it is emitted once more,
    /// archived, and forgotten (a later occurrence starts it again, under the same id).
    pub archive_after_ns: u64,
    pub max_entries: usize,
    /// Findings forgotten because the log was full.
    pub evicted: u64,
}

impl FindingLog {
    pub fn new(update_every_ns: u64) -> Self {
        Self {
            entries: HashMap::new(),
            update_every_ns,
            archive_after_ns: u64::MAX,
            max_entries: 50_000,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records an occurrence; returns the finding to emit now, if any (a new finding always,
    /// an update when the previous emission is old enough).
    pub fn report(&mut self, o: Observation, now_ns: u64) -> Option<Finding> {
        let key = format!("{}|{}|{}", o.kind.name(), o.actor, o.instance_key);
        if let Some(e) = self.entries.get_mut(&key) {
            let f = &mut e.finding;
            f.service.count += 1;
            if let Some(id) = o.conn_id
                && f.conn_ids.len() < FINDING_CONN_IDS_MAX
                && !f.conn_ids.contains(&id)
            {
                f.conn_ids.push(id);
            }
            if o.ts_ns >= f.updated_at.ns() {
                f.updated_at = Timestamp(o.ts_ns);
                f.ts = f.updated_at;
                f.service.event_last_seen = f.updated_at;
                f.description = o.description;
                f.title = o.title;
                if o.user.is_some() {
                    f.resource.rds_db_user_details = o.user;
                }
                if !o.logins.is_empty() {
                    f.service.action.rds_login_attempt_action.login_attributes = o.logins;
                }
                let r = &mut f.service.action.rds_login_attempt_action.remote_ip_details;
                if o.remote.ip_address_v4.is_some() || o.remote.ip_address_v6.is_some() {
                    *r = o.remote;
                }
            }
            if o.severity.number() > f.severity {
                f.severity = o.severity.number();
                f.severity_label = o.severity.label();
            }
            f.evidence.merge(&o.evidence);
            e.dirty = true;
            if now_ns.saturating_sub(e.last_emit_ns) >= self.update_every_ns {
                e.dirty = false;
                e.last_emit_ns = now_ns;
                return Some(e.finding.clone());
            }
            return None;
        }
        if self.entries.len() >= self.max_entries {
            self.evict();
        }
        let at = Timestamp(o.ts_ns);
        let first_actor = FirstActor {
            ts: at,
            ip: o.remote.ip().to_string(),
            user: o.user.as_ref().map(|u| u.user.clone()),
            application: o.user.as_ref().map(|u| u.application.clone()),
            conn_id: o.conn_id,
        };
        let finding = Finding {
            ts: at,
            first_actor,
            conn_ids: o.conn_id.into_iter().collect(),
            schema_version: "2.0",
            id: format!(
                "{:016x}{:016x}",
                fnv(&key),
                fnv(&format!("rds-sensor|{key}"))
            ),
            finding_type: o.kind.name(),
            severity: o.severity.number(),
            severity_label: o.severity.label(),
            title: o.title,
            description: o.description,
            created_at: at,
            updated_at: at,
            resource: Resource {
                resource_type: "RDSDBInstance",
                rds_db_instance_details: o.instance,
                rds_db_user_details: o.user,
            },
            service: Service {
                service_name: "rds-sensor",
                action: Action {
                    action_type: "RDS_LOGIN_ATTEMPT",
                    rds_login_attempt_action: RdsLoginAttemptAction {
                        remote_ip_details: o.remote,
                        login_attributes: o.logins,
                    },
                },
                event_first_seen: at,
                event_last_seen: at,
                count: 1,
                archived: false,
            },
            recommended_response: o.kind.recommended_response(),
            evidence: o.evidence,
        };
        self.entries.insert(
            key,
            Entry {
                finding: finding.clone(),
                last_emit_ns: now_ns,
                dirty: false,
            },
        );
        Some(finding)
    }

    /// Updates whose quiet period is over.
    pub fn due(&mut self, now_ns: u64) -> Vec<Finding> {
        let every = self.update_every_ns;
        let mut out: Vec<Finding> = self
            .entries
            .values_mut()
            .filter(|e| e.dirty && now_ns.saturating_sub(e.last_emit_ns) >= every)
            .map(|e| {
                e.dirty = false;
                e.last_emit_ns = now_ns;
                e.finding.clone()
            })
            .collect();
        out.sort_by_key(|f| f.created_at);
        out
    }

    /// Findings that have ended: quiet for `archive_after_ns` (record time). Each is emitted
    /// a last time with `service.archived` and `updated_at` now, and forgotten.
    pub fn archive(&mut self, now_ns: u64) -> Vec<Finding> {
        let after = self.archive_after_ns;
        let ended: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| now_ns.saturating_sub(e.finding.updated_at.ns()) >= after)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Finding> = ended
            .into_iter()
            .filter_map(|k| self.entries.remove(&k))
            .map(|e| {
                let mut f = e.finding;
                f.service.archived = true;
                f.updated_at = Timestamp(now_ns);
                f.ts = f.updated_at;
                f
            })
            .collect();
        out.sort_by_key(|f| f.created_at);
        out
    }

    /// Every pending update (at shutdown / end of capture).
    pub fn flush(&mut self, now_ns: u64) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .entries
            .values_mut()
            .filter(|e| e.dirty)
            .map(|e| {
                e.dirty = false;
                e.last_emit_ns = now_ns;
                e.finding.clone()
            })
            .collect();
        out.sort_by_key(|f| f.created_at);
        out
    }

    /// Forgets the least recently seen tenth of the findings.
    fn evict(&mut self) {
        let mut ages: Vec<(Timestamp, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.finding.updated_at, k.clone()))
            .collect();
        ages.sort();
        for (_, k) in ages.into_iter().take(self.max_entries / 10 + 1) {
            self.entries.remove(&k);
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1_000_000_000;

    fn obs(kind: FindingType, actor: &str, ts_s: u64) -> Observation {
        Observation {
            instance_key: "pg-1".into(),
            kind,
            severity: kind.default_severity(),
            actor: actor.to_string(),
            title: "t".into(),
            description: format!("d{ts_s}"),
            instance: InstanceDetails {
                db_instance_identifier: "pg-1".into(),
                engine: "postgres".into(),
                ..InstanceDetails::default()
            },
            user: None,
            remote: RemoteIpDetails::default(),
            logins: vec![],
            evidence: Evidence {
                rows: Some(10),
                fingerprints: vec![format!("select {ts_s}")],
                ..Evidence::default()
            },
            ts_ns: ts_s * 1_000_000_000,
            conn_id: Some(ConnId(ts_s)),
        }
    }

    fn from(mut o: Observation, ip: &str, user: &str) -> Observation {
        o.remote.ip_address_v4 = Some(ip.into());
        o.user = Some(UserDetails {
            user: user.into(),
            application: "psql".into(),
            ..UserDetails::default()
        });
        o
    }

    #[test]
    fn an_update_keeps_the_first_actor_and_gathers_the_connections() {
        let mut log = FindingLog::new(0);
        let k = FindingType::AnomalousSuccessfulLogin;
        let first = log
            .report(
                from(obs(k, "user@pg-1", 100), "10.0.0.5", "alice"),
                100 * NS,
            )
            .unwrap();
        let update = log
            .report(
                from(obs(k, "user@pg-1", 200), "10.0.0.9", "mallory"),
                200 * NS,
            )
            .unwrap();
        assert_eq!(update.id, first.id);
        assert_eq!(
            update
                .service
                .action
                .rds_login_attempt_action
                .remote_ip_details
                .ip(),
            "10.0.0.9",
            "the latest actor"
        );
        assert_eq!(
            update.resource.rds_db_user_details.as_ref().unwrap().user,
            "mallory"
        );
        assert_eq!(update.first_actor.ip, "10.0.0.5", "the first actor");
        assert_eq!(update.first_actor.user.as_deref(), Some("alice"));
        assert_eq!(update.first_actor.conn_id, Some(ConnId(100)));
        assert_eq!(update.first_actor.ts, Timestamp(100 * NS));
        assert_eq!(update.conn_ids, vec![ConnId(100), ConnId(200)]);
        assert_eq!(update.ts, Timestamp(200 * NS));
        // Bounded: the first connections are kept.
        let mut last = update.clone();
        for t in 300..400 {
            if let Some(f) = log.report(obs(k, "user@pg-1", t), t * NS) {
                last = f;
            }
        }
        let ids = &last.conn_ids;
        assert!(ids.len() <= FINDING_CONN_IDS_MAX, "{}", ids.len());
        assert_eq!(ids[..2], [ConnId(100), ConnId(200)]);
    }

    #[test]
    fn the_guardduty_event_keeps_guardduty_names() {
        let mut log = FindingLog::new(0);
        let f = log
            .report(
                from(
                    obs(FindingType::AnomalousSuccessfulLogin, "a", 1),
                    "10.0.0.5",
                    "alice",
                ),
                NS,
            )
            .unwrap();
        let ours = serde_json::to_value(&f).unwrap();
        assert!(ours["resource"]["rds_db_instance_details"].is_object());
        let gd = f.guardduty_json();
        assert_eq!(gd["kind"], "finding");
        assert_eq!(
            gd["resource"]["rdsDbInstanceDetails"]["dbInstanceIdentifier"],
            "pg-1"
        );
        let action = &gd["service"]["action"]["rdsLoginAttemptAction"];
        assert_eq!(action["remoteIpDetails"]["ipAddressV4"], "10.0.0.5");
        assert!(action["LoginAttributes"].is_array());
        assert_eq!(gd["severityLabel"], f.severity_label);
        assert_eq!(
            gd["service"]["eventFirstSeen"],
            ours["service"]["event_first_seen"]
        );
    }

    #[test]
    fn names_are_unique_and_guardduty_severities_hold() {
        let mut names: Vec<&str> = FindingType::ALL.iter().map(|t| t.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FindingType::ALL.len());
        for t in FindingType::ALL {
            assert_eq!(FindingType::from_name(t.name()), Some(t));
            let (tactic, rest) = t.name().split_once(":RDS/").expect("Tactic:RDS/…");
            assert!(!tactic.is_empty() && !rest.is_empty());
            assert!(!t.recommended_response().is_empty());
        }
        use FindingType::*;
        use Severity::*;
        for (t, s) in [
            (AnomalousSuccessfulLogin, Low),
            (AnomalousFailedLogin, Low),
            (SuccessfulBruteForce, High),
            (MaliciousIpSuccessfulLogin, High),
            (MaliciousIpFailedLogin, Medium),
            (MaliciousIpDiscovery, Medium),
            (TorSuccessfulLogin, High),
            (TorFailedLogin, Medium),
            (TorDiscovery, Medium),
        ] {
            assert_eq!(t.default_severity(), s, "{}", t.name());
        }
        assert_eq!(High.number(), 8.0);
        assert_eq!(Medium.label(), "Medium");
    }

    #[test]
    fn repeats_update_count_and_are_rate_limited() {
        let mut log = FindingLog::new(60_000_000_000);
        let t = FindingType::PortProbe;
        let first = log
            .report(obs(t, "203.0.113.9", 100), 100_000_000_000)
            .unwrap();
        assert_eq!(first.service.count, 1);
        // Repeats within 60 s: counted, not emitted.
        for s in 101..110 {
            assert!(
                log.report(obs(t, "203.0.113.9", s), s * 1_000_000_000)
                    .is_none()
            );
        }
        // Another actor is another finding.
        let other = log
            .report(obs(t, "203.0.113.10", 105), 105_000_000_000)
            .unwrap();
        assert_ne!(other.id, first.id);
        assert!(log.due(150_000_000_000).is_empty());
        let due = log.due(160_000_000_000);
        assert_eq!(due.len(), 1);
        let u = &due[0];
        assert_eq!(u.id, first.id);
        assert_eq!(u.service.count, 10);
        assert_eq!(u.service.event_first_seen, first.service.event_first_seen);
        assert_eq!(u.service.event_last_seen, Timestamp(109_000_000_000));
        assert_eq!(u.evidence.rows, Some(100));
        assert_eq!(u.evidence.fingerprints.len(), 10);
        // Nothing pending any more.
        assert!(log.due(500_000_000_000).is_empty());
        assert!(log.flush(500_000_000_000).is_empty());
        // A repeat long after: emitted at once.
        let again = log
            .report(obs(t, "203.0.113.9", 300), 300_000_000_000)
            .unwrap();
        assert_eq!(again.service.count, 11);
        assert!(
            log.report(obs(t, "203.0.113.9", 301), 301_000_000_000)
                .is_none()
        );
        let flushed = log.flush(302_000_000_000);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].service.count, 12);
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn severity_only_rises_on_repeats() {
        let mut log = FindingLog::new(0);
        let mut o = obs(FindingType::AnomalousSuccessfulLogin, "x", 1);
        o.severity = Severity::Medium;
        log.report(o.clone(), 1).unwrap();
        o.severity = Severity::High;
        assert_eq!(log.report(o.clone(), 2).unwrap().severity_label, "High");
        o.severity = Severity::Low;
        assert_eq!(log.report(o, 3).unwrap().severity_label, "High");
    }

    #[test]
    fn a_quiet_finding_is_archived_once_then_starts_again_under_its_id() {
        let mut log = FindingLog::new(60 * NS);
        log.archive_after_ns = 3600 * NS;
        let first = log
            .report(obs(FindingType::PortProbe, "a", 100), 100 * NS)
            .unwrap();
        assert!(
            log.report(obs(FindingType::PortProbe, "a", 130), 130 * NS)
                .is_none()
        );
        assert!(
            log.archive(3700 * NS).is_empty(),
            "seen at 130 s: not quiet for an hour yet"
        );
        let ended = log.archive(3800 * NS);
        assert_eq!(ended.len(), 1);
        let f = &ended[0];
        assert!(f.service.archived);
        assert_eq!((f.id.as_str(), f.service.count), (first.id.as_str(), 2));
        assert_eq!(f.updated_at, Timestamp(3800 * NS));
        assert_eq!(f.service.event_last_seen, Timestamp(130 * NS));
        assert!(
            log.is_empty() && log.archive(9000 * NS).is_empty(),
            "archived once"
        );
        let again = log
            .report(obs(FindingType::PortProbe, "a", 9000), 9000 * NS)
            .unwrap();
        assert_eq!(again.id, first.id);
        assert!(!again.service.archived);
    }

    #[test]
    fn a_full_log_forgets_the_oldest() {
        let mut log = FindingLog::new(0);
        log.max_entries = 10;
        for i in 0..25 {
            log.report(obs(FindingType::PortProbe, &format!("a{i}"), i), i);
        }
        assert!(log.len() <= 10);
        assert!(log.evicted >= 15);
    }
}
