//! Login patterns that need no baseline: one address failing as many users
//! (`CredentialAccess:RDS/CredentialSpraying.ManyUsers`), and a success after repeated failures
//! for the same user (`CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce`). Also
//! tallies failed logins from public addresses, which raise an anomalous login to High.

use super::context::LoginCtx;
use super::finding::Evidence;
use super::state::prune;
use super::{Detector, Finding, FindingType, NS, Severity};
use std::collections::BTreeSet;

impl Detector {
    /// Reports spraying and brute force; returns the user's recent failed logins from public
    /// addresses (`login_anomaly` raises an anomalous login to High on a pattern of them).
    pub(super) fn brute_force_and_spray(&mut self, c: &LoginCtx, out: &mut Vec<Finding>) -> usize {
        let LoginCtx {
            now,
            ip,
            ref inst,
            ref th,
            ok,
            ref user,
            ref a,
            ref id,
            ..
        } = *c;
        let to_db = c.to_db();
        // Patterns that need no baseline: brute force and spraying.
        let (users_failed, user_failures) = {
            let q = self
                .source_failures
                .entry((inst.key.clone(), ip))
                .or_default();
            let since = now.saturating_sub(th.failure_window_s * NS);
            while q.front().is_some_and(|(t, _)| *t < since) {
                q.pop_front();
            }
            if !ok {
                q.push_back((now, user.clone()));
            }
            let users: BTreeSet<String> = q.iter().map(|(_, u)| u.clone()).collect();
            let n = q.iter().filter(|(_, u)| u == user).count();
            if ok && n >= th.brute_force_failures {
                q.retain(|(_, u)| u != user);
            }
            (users, n)
        };
        if users_failed.len() >= th.spray_users {
            let k = FindingType::CredentialSpraying;
            let sev = if ok {
                Severity::High
            } else {
                k.default_severity()
            };
            let desc = format!(
                "{ip} failed to log in to {id} as {} different users in {} minutes{}.",
                users_failed.len(),
                th.failure_window_s / 60,
                if ok {
                    format!(", then logged in as {user}")
                } else {
                    String::new()
                }
            );
            self.report(
                out,
                c.who(),
                k,
                sev,
                format!("Credential spraying against RDS DB instance {id}"),
                desc,
                Evidence {
                    users: users_failed.iter().cloned().collect(),
                    ..Evidence::default()
                },
            );
        }
        if ok && user_failures >= th.brute_force_failures {
            let k = FindingType::SuccessfulBruteForce;
            let desc = format!(
                "{ip} logged in as {user}{to_db} on {id} after {user_failures} failed logins as {user} in {} minutes.",
                th.failure_window_s / 60
            );
            self.report(
                out,
                c.who(),
                k,
                k.default_severity(),
                format!("Successful login after a brute force attack on RDS DB instance {id}"),
                desc,
                Evidence::with_reasons(vec![format!(
                    "{user_failures} failed logins before the success"
                )]),
            );
        }
        // Failed logins as this user from public addresses.
        {
            let q = self
                .public_failures
                .entry((inst.key.clone(), user.clone()))
                .or_default();
            prune(q, now.saturating_sub(th.public_failure_window_s * NS));
            if !ok && a.public {
                q.push_back(now);
            }
            q.len()
        }
    }
}
