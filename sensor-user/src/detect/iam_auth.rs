//! IAM database authentication, which only the wire shows per login (RDS security best
//! practice: temporary credentials instead of long-lived passwords):
//! - `CredentialAccess:RDS/IamAuthentication.StaticPassword`: a login with a static password by
//!   a database user that, while learning, logged in only with IAM tokens;
//! - `Policy:RDS/IamAuthentication.Required`: a static-password login from a network where IAM
//!   is the rule (`--iam-required-cidr`);
//! - `CredentialAccess:RDS/IamAuthentication.ExpiredToken`: a token presented after its expiry.
//!   The server refuses it; a client replaying a token it found (in a log, a process list, a
//!   crash dump) looks exactly like this, and a client with a broken token cache too.

use super::context::{LoginCtx, Who};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType, Severity};
use std::net::IpAddr;

/// Methods that prove a long-lived secret the client holds: what IAM authentication replaces.
/// Not: `iam`, `trust`, Kerberos/GSSAPI/SSPI, Entra ID (`fedauth`), or an unknown method.
pub(super) fn is_static_password(method: &str) -> bool {
    matches!(
        method.to_ascii_lowercase().as_str(),
        "cleartext"
            | "password"
            | "md5"
            | "scram-sha-256"
            | "scram-sha-256-plus"
            | "sasl"
            | "mysql_native_password"
            | "mysql_old_password"
            | "mysql_clear_password"
            | "caching_sha2_password"
            | "sha256_password"
            | "client_ed25519"
            | "sql"
            | "sql-tds4"
    )
}

impl Detector {
    fn iam_required(&self, ip: IpAddr) -> bool {
        self.iam_required.contains(ip)
    }

    /// Learns and judges a login's authentication method against IAM authentication.
    pub(super) fn iam_auth_login(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) {
        let LoginCtx {
            l,
            ip,
            ref inst,
            learning,
            ok,
            ref user,
            ref auth,
            ref a,
            ref id,
            verb,
            ..
        } = *c;
        let iam = auth == "iam";
        let password = is_static_password(auth);
        if let Some(t) = l.iam_token.as_ref().filter(|t| t.expired) {
            let late_s = l.ts.ns().saturating_sub(t.expires_at.ns()) / 1_000_000_000;
            let desc = format!(
                "{ip} presented an IAM authentication token as {user} to {id} {late_s} s after it expired \
                 (signed {}, valid until {}); the server refuses it. A token reused this late was \
                 kept somewhere it can be read.",
                t.signed_at.rfc3339(),
                t.expires_at.rfc3339()
            );
            let sev = if ok {
                Severity::High
            } else {
                a.medium_if_public()
            };
            self.report(
                out,
                Who {
                    key: format!("{user}|{ip}"),
                    ..c.who()
                },
                FindingType::IamTokenExpired,
                sev,
                format!("Expired IAM authentication token presented to RDS DB instance {id}"),
                desc,
                Evidence::with_reasons(vec![format!("IAM token used {late_s} s after its expiry")]),
            );
        }
        if password && self.iam_required(ip) {
            let sev = if ok { Severity::Medium } else { Severity::Low };
            let desc = format!(
                "{ip} ({}) {verb} as {user} to {id} with a static password ({auth}); \
                 clients from this network are to use IAM database authentication.",
                a.net
            );
            self.report(
                out,
                Who {
                    key: format!("{user}|{}", a.net),
                    ..c.who()
                },
                FindingType::IamRequired,
                sev,
                format!("Static-password login where IAM authentication is required, RDS DB instance {id}"),
                desc,
                Evidence::with_reasons(vec![format!(
                    "auth method {auth} from a network where IAM is required"
                )]),
            );
        }
        let ib = self.instance_baseline(&inst.key);
        if learning {
            // What the user authenticates with: its successful logins.
            if ok && (iam || password) {
                let ub = ib.users.entry(user.clone()).or_default();
                if iam {
                    ub.iam_logins += 1;
                } else {
                    ub.password_logins += 1;
                }
            }
            return;
        }
        let Some(ub) = ib.users.get(user) else { return };
        if !(password && ub.iam_logins > 0 && ub.password_logins == 0) {
            return;
        }
        let learned = ub.iam_logins;
        let sev = if ok {
            Severity::High
        } else {
            a.medium_if_public()
        };
        let desc = format!(
            "{ip} {verb} as {user} to {id} with a static password ({auth}); while learning, {user} \
             logged in only with IAM authentication tokens ({learned} logins)."
        );
        self.report(
            out,
            Who {
                key: user.clone(),
                ..c.who()
            },
            FindingType::IamStaticPassword,
            sev,
            format!("Static-password login by an IAM-authenticated user on RDS DB instance {id}"),
            desc,
            Evidence::with_reasons(vec![format!(
                "auth method {auth}; learned: IAM only ({learned} logins)"
            )]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_static_password;

    #[test]
    fn passwords_are_static_and_tokens_and_tickets_are_not() {
        for m in [
            "md5",
            "SCRAM-SHA-256",
            "mysql_native_password",
            "sql",
            "cleartext",
        ] {
            assert!(is_static_password(m), "{m}");
        }
        for m in [
            "iam", "trust", "gss", "kerberos", "sspi", "fedauth", "", "unknown",
        ] {
            assert!(!is_static_password(m), "{m}");
        }
    }
}
