//! Login patterns that need no baseline: one address failing as many users
//! (`CredentialAccess:RDS/CredentialSpraying.ManyUsers`, High when the address also got in
//! within the window, before or after), and a success after repeated failures from the same
//! address, whatever users they named (`CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce`). Also
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
        // Patterns that need no baseline: brute force and spraying. Failures count per
        // source address across users (GuardDuty's SuccessfulBruteForce: failed logins from
        // one remote address, then a success), refusals before any user was named included.
        let key = (inst.key.clone(), ip);
        let since = now.saturating_sub(th.failure_window_s * NS);
        let (users_failed, failures) = {
            let q = self.source_failures.entry(key.clone()).or_default();
            while q.front().is_some_and(|(t, _)| *t < since) {
                q.pop_front();
            }
            if !ok {
                q.push_back((now, user.clone()));
            }
            let users: BTreeSet<String> = q.iter().map(|(_, u)| u.clone()).collect();
            let failures: Vec<String> = q.iter().map(|(_, u)| u.clone()).collect();
            if ok && failures.len() >= th.brute_force_failures {
                // The attack got in: its failures are told once.
                q.clear();
            }
            (users, failures)
        };
        // Successes from the address in the window: a spray that got in is High, whether
        // the success came before or after the spray was recognised.
        let got_in: Vec<String> = {
            let s = self.source_successes.entry(key).or_default();
            while s.front().is_some_and(|(t, _)| *t < since) {
                s.pop_front();
            }
            if ok && s.len() < 64 {
                s.push_back((now, user.clone()));
            }
            let mut v: Vec<String> = Vec::new();
            for (_, u) in s.iter() {
                if !v.contains(u) {
                    v.push(u.clone());
                }
            }
            v
        };
        if users_failed.len() >= th.spray_users {
            let k = FindingType::CredentialSpraying;
            let sev = if got_in.is_empty() {
                k.default_severity()
            } else {
                Severity::High
            };
            let desc = format!(
                "{ip} failed to log in to {id} as {} different users in {} minutes{}.",
                users_failed.len(),
                th.failure_window_s / 60,
                if got_in.is_empty() {
                    String::new()
                } else {
                    format!(", and logged in as {} in that time", got_in.join(", "))
                }
            );
            let mut users: Vec<String> = users_failed.iter().cloned().collect();
            users.extend(
                got_in
                    .iter()
                    .filter(|u| !users_failed.contains(*u))
                    .cloned(),
            );
            self.report(
                out,
                c.who(),
                k,
                sev,
                format!("Credential spraying against RDS DB instance {id}"),
                desc,
                Evidence {
                    users,
                    ..Evidence::default()
                },
            );
        }
        if ok && failures.len() >= th.brute_force_failures {
            let k = FindingType::SuccessfulBruteForce;
            let mut per_user: Vec<(String, usize)> = Vec::new();
            for u in &failures {
                match per_user.iter_mut().find(|(x, _)| x == u) {
                    Some((_, n)) => *n += 1,
                    None => per_user.push((u.clone(), 1)),
                }
            }
            let as_users = per_user
                .iter()
                .map(|(u, n)| format!("{n} as {u}"))
                .collect::<Vec<_>>()
                .join(", ");
            let desc = format!(
                "{ip} logged in as {user}{to_db} on {id} after {} failed logins ({as_users}) in {} minutes.",
                failures.len(),
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
                    "{} failed logins from {ip} before the success ({as_users})",
                    failures.len()
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
