//! Weak authentication on the wire: a cleartext password or MD5 challenge-response on a
//! connection without TLS (`CredentialAccess:RDS/WeakAuthentication.Cleartext` / `.MD5`), which
//! only packets show. No baseline needed.

use super::context::{LoginCtx, Who};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType, Severity};

/// The weak-authentication finding type of an authentication method, if it is weak.
pub(super) fn weak_auth(method: &str) -> Option<FindingType> {
    match method.to_ascii_lowercase().as_str() {
        "cleartext" | "password" | "mysql_clear_password" | "dialog" | "pam" | "ldap" => {
            Some(FindingType::CleartextAuthentication)
        }
        "md5" => Some(FindingType::Md5Authentication),
        _ => None,
    }
}

impl Detector {
    pub(super) fn weak_auth_login(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            l,
            ip,
            ref user,
            ref auth,
            ref a,
            ref id,
            ..
        } = *c;
        if !l.tls
            && let Some(k) = weak_auth(auth)
        {
            let sev = if k == FindingType::CleartextAuthentication && a.public {
                Severity::High
            } else {
                k.default_severity()
            };
            let what = if k == FindingType::Md5Authentication {
                "MD5 challenge-response, whose hash is replayable and crackable"
            } else {
                "a cleartext password"
            };
            let desc = format!(
                "{user} authenticated to {id} from {ip} with {auth} ({what}) on an unencrypted connection."
            );
            self.report(
                out,
                Who {
                    key: user.clone(),
                    ..c.who()
                },
                k,
                sev,
                format!("Weak authentication ({auth}) on the wire to RDS DB instance {id}"),
                desc,
                Evidence::with_reasons(vec![format!("auth method {auth} without TLS")]),
            );
        }
    }
}
