//! Logins unusual against the learned baseline: a user logging in from a new network/ASN, with a
//! new application or database, or above its learned rate
//! (`CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin`); failures from an unknown network,
//! for an unknown user, or above the learned rate (`.FailedLogin`); and a login's network reaching
//! a database it never reached (`InitialAccess:RDS/AnomalousBehavior.NewClientEdge`).
//! Learned during the learning period, reported after it.

use super::context::{LoginCtx, Who};
use super::finding::Evidence;
use super::{Detector, Finding, FindingType, NS, Severity};
use std::collections::HashMap;

impl Detector {
    /// Login rates, the login baseline (learned or compared), and the anomaly findings.
    pub(super) fn login_anomaly(
        &mut self,
        c: &LoginCtx,
        public_failures: usize,
        out: &mut Vec<Finding>,
    ) {
        let LoginCtx {
            l,
            now,
            ip,
            ref inst,
            learning,
            ref th,
            ok,
            ref user,
            ref app,
            ref db,
            ref a,
            ref id,
            ..
        } = *c;
        // Rates, per clock hour. An hour that ended is learned when it lay wholly inside the
        // learning period: a partial hour (the first, the last, a learning period shorter
        // than an hour) would make a maximum that full hours are then compared with.
        let hour = now / (3600 * NS);
        let (first_ns, learn_end_ns) = {
            let ib = self.instance_baseline(&inst.key);
            (
                ib.first_seen_ns,
                ib.first_seen_ns
                    .saturating_add(self.opts.learning_period_s.saturating_mul(NS)),
            )
        };
        let whole = |h: u64| h * 3600 * NS >= first_ns && (h + 1) * 3600 * NS <= learn_end_ns;
        let bump = |m: &mut HashMap<(String, String), (u64, u64)>, k: (String, String)| {
            let e = m.entry(k).or_insert((hour, 0));
            let mut ended = None;
            if e.0 != hour {
                if whole(e.0) {
                    ended = Some(e.1);
                }
                *e = (hour, 0);
            }
            e.1 += 1;
            (e.1, ended)
        };
        let net = a.net.to_string();
        // A login may name no database (MySQL without one, a `USE` later): its edge is to the
        // instance, and it says nothing of databases.
        let to_db = c.to_db();
        let (hour_count, ended) = if ok {
            bump(&mut self.hour_logins, (inst.key.clone(), user.clone()))
        } else {
            bump(&mut self.hour_failures, (inst.key.clone(), net.clone()))
        };

        let ib = self.instance_baseline(&inst.key);
        if let Some(n) = ended {
            if ok {
                if let Some(ub) = ib.users.get_mut(user) {
                    ub.max_logins_per_hour = ub.max_logins_per_hour.max(n);
                    ub.rate_hours += 1;
                }
            } else if let Some(nb) = ib.networks.get_mut(&net) {
                nb.max_failures_per_hour = nb.max_failures_per_hour.max(n);
                nb.rate_hours += 1;
            }
        }
        if learning {
            let nb = ib.networks.entry(net.clone()).or_default();
            if ok {
                nb.logins += 1;
                if !db.is_empty() {
                    nb.databases.insert(db.clone());
                }
                let ub = ib.users.entry(user.clone()).or_default();
                ub.networks.insert(net.clone());
                if let Some(asn) = a.info.asn {
                    ub.asns.insert(asn);
                }
                if !app.is_empty() {
                    ub.applications.insert(app.clone());
                }
                if !db.is_empty() {
                    ub.databases.insert(db.clone());
                }
                ub.logins += 1;
            } else {
                nb.failures += 1;
                if let Some(ub) = ib.users.get_mut(user) {
                    ub.failures += 1;
                }
            }
            return;
        }

        let over = |factor: f64, learned: u64, min: u64| {
            hour_count > ((factor * learned as f64) as u64).max(min)
        };
        let mut reasons = Vec::new();
        if ok {
            match ib.users.get_mut(user) {
                None => reasons.push(format!(
                    "user {user} never logged in to this instance while learning"
                )),
                Some(ub) => {
                    ub.logins += 1;
                    let asn_known = a.info.asn.is_some_and(|n| ub.asns.contains(&n));
                    if !ub.networks.contains(&net) && !asn_known {
                        reasons.push(format!(
                            "first login of {user} from network {net}{}",
                            a.info.asn.map(|n| format!(" (AS{n})")).unwrap_or_default()
                        ));
                    }
                    if !app.is_empty() && !ub.applications.contains(app) {
                        reasons.push(format!("application `{app}` never used by {user}"));
                    }
                    if !db.is_empty() && !ub.databases.contains(db) {
                        reasons.push(format!("database {db} never used by {user}"));
                    }
                    // Only against a rate learned over whole hours.
                    if ub.rate_hours > 0
                        && over(
                            th.login_rate_factor,
                            ub.max_logins_per_hour,
                            th.login_rate_min,
                        )
                    {
                        reasons.push(format!(
                            "{hour_count} logins of {user} this hour (learned maximum {})",
                            ub.max_logins_per_hour
                        ));
                    }
                }
            }
            let new_edge = !ib
                .networks
                .get(&net)
                .is_some_and(|n| db.is_empty() || n.databases.contains(db));
            if !reasons.is_empty() {
                let pattern = public_failures >= th.public_failure_pattern;
                let sev = if pattern {
                    Severity::High
                } else {
                    a.medium_if_public()
                };
                if pattern {
                    reasons.push(format!(
                        "follows {public_failures} failed logins as {user} from public addresses in the last {} minutes",
                        th.public_failure_window_s / 60
                    ));
                }
                let desc = format!(
                    "{ip} logged in as {user}{to_db} on {id} with `{app}`: {}.",
                    reasons.join("; ")
                );
                self.report(
                    out,
                    c.who(),
                    FindingType::AnomalousSuccessfulLogin,
                    sev,
                    format!("Unusual successful login to RDS DB instance {id}"),
                    desc,
                    Evidence::with_reasons(reasons),
                );
            }
            if new_edge {
                let desc =
                    format!("First session from network {net}{to_db} on {id} ({ip} as {user}).");
                self.report(
                    out,
                    Who {
                        key: format!("{net}|{db}"),
                        ..c.who()
                    },
                    FindingType::NewClientEdge,
                    a.medium_if_public(),
                    if db.is_empty() {
                        format!("New client network for RDS DB instance {id}")
                    } else {
                        format!("New client network for database {db} on RDS DB instance {id}")
                    },
                    desc,
                    Evidence::with_reasons(vec![if db.is_empty() {
                        format!("{net} → {id} never seen while learning")
                    } else {
                        format!("{net} → {db} never seen while learning")
                    }]),
                );
            }
        } else {
            let nb = ib.networks.get(&net);
            match nb {
                None => reasons.push(format!("no login from network {net} while learning")),
                Some(nb) => {
                    if nb.rate_hours > 0
                        && over(
                            th.failure_rate_factor,
                            nb.max_failures_per_hour,
                            th.failure_rate_min,
                        )
                    {
                        reasons.push(format!(
                            "{hour_count} failed logins from {net} this hour (learned maximum {})",
                            nb.max_failures_per_hour
                        ));
                    }
                }
            }
            if !ib.users.contains_key(user) {
                reasons.push(format!(
                    "user {user} never logged in to this instance while learning"
                ));
            }
            if !reasons.is_empty() {
                let k = FindingType::AnomalousFailedLogin;
                let desc = format!(
                    "{ip} failed to log in as {user}{to_db} on {id}{}: {}.",
                    l.error_code
                        .as_deref()
                        .map(|c| format!(" (error {c})"))
                        .unwrap_or_default(),
                    reasons.join("; ")
                );
                self.report(
                    out,
                    c.who(),
                    k,
                    k.default_severity(),
                    format!("Unusual failed login to RDS DB instance {id}"),
                    desc,
                    Evidence {
                        reasons,
                        error_codes: l.error_code.iter().cloned().collect(),
                        ..Evidence::default()
                    },
                );
            }
        }
    }
}
