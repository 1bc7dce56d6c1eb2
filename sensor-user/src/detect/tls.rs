//! What TLS shows, even without keys: a weak version or suite to an instance, a server
//! certificate close to its end (the RDS CA rotations), a plaintext login to an instance
//! whose clients use TLS (a downgrade), a client TLS fingerprint (JA4) an instance has not
//! seen after learning, and (when key logs are configured) too many sessions without keys.
//! Packet-only findings: GuardDuty has none of them.

use super::context::Who;
use super::finding::Evidence;
use super::observe::client_ip;
use super::{Detector, Finding, FindingType, NS, Severity};
use crate::model::{LoginRecord, TlsRecord, Undecryptable};
use std::collections::HashSet;

/// JA4 fingerprints remembered per instance (beyond, new ones are not learned).
const MAX_JA4_PER_INSTANCE: usize = 1000;
/// Connections whose JA4 waits for their login.
const MAX_CONN_JA4: usize = 100_000;

/// Per instance: what its TLS sessions and logins looked like.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsSeen {
    /// Logins inside TLS, and in plaintext.
    pub(super) tls_logins: u64,
    pub(super) plain_logins: u64,
    pub(super) ja4: HashSet<String>,
    /// TLS sessions, and those without keys (only counted when key logs are configured).
    pub(super) sessions: u64,
    pub(super) no_key: u64,
    pub(super) keys_reported: bool,
}

/// Why a version or suite is weak, if it is.
fn weakness(version: Option<&str>, suite: Option<&str>) -> Option<(String, Severity)> {
    if let Some(v) = version
        && matches!(v, "TLSv1" | "TLSv1.1" | "SSLv3")
    {
        return Some((format!("{v}, below TLS 1.2"), Severity::Medium));
    }
    let s = suite?;
    let weak = [
        "_RC4_", "_3DES_", "_DES_", "_NULL_", "_EXPORT", "_anon_", "_MD5",
    ];
    if weak.iter().any(|w| s.contains(w)) {
        return Some((format!("{s}, a broken cipher"), Severity::Medium));
    }
    if s.starts_with("TLS_RSA_WITH_") {
        return Some((
            format!("{s}: RSA key exchange, no forward secrecy"),
            Severity::Low,
        ));
    }
    if s.contains("_CBC_") {
        return Some((
            format!("{s}: CBC mode (Lucky13-class attacks)"),
            Severity::Low,
        ));
    }
    None
}

/// Seconds since the epoch of an RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` time.
fn epoch_s(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    Some(crate::model::epoch_seconds(y, m, d, hh, mm, ss))
}

impl Detector {
    pub(super) fn on_tls(&mut self, t: &TlsRecord, out: &mut Vec<Finding>) {
        let now = t.ts.ns();
        self.advance(now, out);
        let Some(ip) = client_ip(&t.endpoint.client) else {
            return;
        };
        let inst = self.instance(&t.endpoint.server, t.endpoint.protocol.name());
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        let i = &t.info;
        if let Some(ja4) = &i.ja4
            && self.conn_ja4.len() < MAX_CONN_JA4
        {
            self.conn_ja4.insert(
                (t.endpoint.client.clone(), t.endpoint.server.clone()),
                (ja4.clone(), now),
            );
        }
        if let Some((why, sev)) = weakness(i.version.as_deref(), i.suite.as_deref()) {
            self.report(
                out,
                Who {
                    key: ip.to_string(),
                    inst: &inst,
                    a: &a,
                    ud: None,
                },
                FindingType::WeakTls,
                sev,
                format!("Weak TLS to RDS DB instance {id}"),
                format!("{ip} connected to {id} with {why}."),
                Evidence::with_reasons(vec![why.clone()]),
            );
        }
        if let Some(c) = &i.certificate
            && let Some(end) = epoch_s(&c.not_after)
        {
            let now_s = (self.now_ns / NS) as i64;
            let days = (end - now_s).div_euclid(86_400);
            let within = self.opts.thresholds.cert_expiry_days as i64;
            if days < within {
                let (sev, when) = if end <= now_s {
                    (Severity::High, format!("expired on {}", c.not_after))
                } else {
                    (
                        Severity::Medium,
                        format!("expires on {} ({days} days)", c.not_after),
                    )
                };
                self.report(
                    out,
                    Who {
                        key: format!("{id}:{}", c.subject),
                        inst: &inst,
                        a: &a,
                        ud: None,
                    },
                    FindingType::CertificateExpiring,
                    sev,
                    format!("The server certificate of RDS DB instance {id} {when}"),
                    format!(
                        "{id} presents the certificate {} issued by {} that {when}; clients that verify it will refuse to connect.",
                        c.subject, c.issuer
                    ),
                    Evidence::with_reasons(vec![format!(
                        "not after {}, threshold {within} days",
                        c.not_after
                    )]),
                );
            }
        }
        if self.opts.tls_keys_expected {
            let th = self.opts.thresholds.clone();
            let seen = self.tls_seen.entry(inst.key.clone()).or_default();
            seen.sessions += 1;
            if i.undecryptable == Some(Undecryptable::NoKey) {
                seen.no_key += 1;
            }
            let share = seen.no_key as f64 / seen.sessions as f64;
            if !seen.keys_reported
                && seen.sessions >= th.missing_keys_min_sessions
                && share > th.missing_keys_share
            {
                seen.keys_reported = true;
                let (n, k) = (seen.sessions, seen.no_key);
                self.report(
                    out,
                    Who {
                        key: id.clone(),
                        inst: &inst,
                        a: &a,
                        ud: None,
                    },
                    FindingType::TlsKeysMissing,
                    Severity::Low,
                    format!("Most TLS sessions to RDS DB instance {id} arrive without keys"),
                    format!(
                        "{k} of {n} TLS sessions to {id} had no key in the key logs: their logins and queries are not seen. Check that every client writes its key log and that the forwarder reaches the sensor."
                    ),
                    Evidence::with_reasons(vec![format!(
                        "{k}/{n} sessions without keys, above {:.0}%",
                        th.missing_keys_share * 100.0
                    )]),
                );
            }
        }
    }

    /// A login's TLS side: a plaintext login where TLS is the rule, and a client TLS
    /// fingerprint the instance has not seen, after learning.
    pub(super) fn tls_login(
        &mut self,
        l: &LoginRecord,
        who: Who<'_>,
        learning: bool,
        out: &mut Vec<Finding>,
    ) {
        let th = self.opts.thresholds.clone();
        let key = (l.endpoint.client.clone(), l.endpoint.server.clone());
        let ja4 = self.conn_ja4.remove(&key).map(|(j, _)| j);
        let inst = who.inst.key.clone();
        let id = who.inst.details.db_instance_identifier.clone();
        let seen = self.tls_seen.entry(inst).or_default();
        let (tls, plain) = (seen.tls_logins, seen.plain_logins);
        if l.tls {
            seen.tls_logins += 1;
        } else {
            seen.plain_logins += 1;
        }
        let new_ja4 = match &ja4 {
            Some(j) if !seen.ja4.contains(j) => {
                if seen.ja4.len() < MAX_JA4_PER_INSTANCE {
                    seen.ja4.insert(j.clone());
                }
                // A first one is no news: the instance had no fingerprint yet.
                !learning && !seen.ja4.is_empty() && seen.ja4.len() > 1
            }
            _ => false,
        };
        let user = l.user.clone().unwrap_or_else(|| "-".into());
        let ip = who.a.ip;
        if !learning
            && !l.tls
            && tls + plain >= th.downgrade_min_logins
            && tls as f64 / (tls + plain) as f64 >= th.downgrade_tls_share
        {
            self.report(
                out,
                Who {
                    key: ip.to_string(),
                    ..who
                },
                FindingType::TlsDowngrade,
                Severity::Medium,
                format!("Plaintext login to RDS DB instance {id}, whose clients use TLS"),
                format!(
                    "{user} logged in to {id} from {ip} without TLS, where {tls} of the {} logins learned used TLS: a client misconfigured, or a downgrade.",
                    tls + plain
                ),
                Evidence::with_reasons(vec![format!(
                    "{tls}/{} learned logins used TLS",
                    tls + plain
                )]),
            );
            return;
        }
        if new_ja4 && let Some(j) = ja4 {
            self.report(
                out,
                Who {
                    key: format!("{ip}:{j}"),
                    ..who
                },
                FindingType::NewTlsFingerprint,
                Severity::Low,
                format!("A new client TLS fingerprint at RDS DB instance {id}"),
                format!(
                    "{user} connected to {id} from {ip} with a TLS client (JA4 {j}) the instance had not seen since it learned its clients: a new driver or tool."
                ),
                Evidence::with_reasons(vec![format!("JA4 {j} not learned")]),
            );
        }
    }

    /// Forgets JA4s of connections whose login never came.
    pub(super) fn forget_tls(&mut self, now: u64) {
        let since = now.saturating_sub(3600 * NS);
        self.conn_ja4.retain(|_, (_, ts)| *ts >= since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_epoch() {
        assert_eq!(epoch_s("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_s("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(epoch_s("2036-12-01T17:45:00Z"), Some(2_111_766_300));
        assert_eq!(epoch_s("2036-12-01"), None);
    }

    #[test]
    fn weak_versions_and_suites() {
        assert!(weakness(Some("TLSv1.1"), None).is_some());
        assert!(weakness(Some("TLSv1.2"), Some("TLS_RSA_WITH_AES_128_GCM_SHA256")).is_some());
        assert!(weakness(Some("TLSv1.2"), Some("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")).is_some());
        assert!(weakness(Some("TLSv1.3"), Some("TLS_AES_256_GCM_SHA384")).is_none());
        assert!(
            weakness(
                Some("TLSv1.2"),
                Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
            )
            .is_none()
        );
    }
}
