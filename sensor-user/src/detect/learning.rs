//! The learning period and the baseline it fills: an instance's baseline is created on its first
//! record, anomalies are learned (not reported) until `--learning-period` has passed, and the
//! baseline is saved to `--baseline` now and then and at the end.

use super::baseline::{Baseline, InstanceBaseline, LearnedWith};
use super::enrich::InstanceMap;
use super::{Detector, DetectorOptions, NS};

/// A baseline loaded from a file meets this run's settings (issue 15, point 14):
/// - it was learned with another learning period: the run keeps the baseline's (a run
///   without the switch would otherwise count the default two weeks from the first record,
///   report nothing, and learn the attacker in), and says so;
/// - an instance map names servers whose baselines were learned before it, under their
///   address and engine: those baselines move to the map's identifiers, and it says so.
pub(super) fn reconcile(b: &mut Baseline, opts: &mut DetectorOptions, map: &InstanceMap) {
    match &b.learned_with {
        Some(w) if w.learning_period_s != opts.learning_period_s && !b.instances.is_empty() => {
            tracing::warn!(
                baseline_learning_period_s = w.learning_period_s,
                this_run_s = opts.learning_period_s,
                "the baseline was learned with another learning period: keeping the baseline's \
                 (start a new baseline file to learn with another)"
            );
            opts.learning_period_s = w.learning_period_s;
        }
        _ => {}
    }
    b.learned_with = Some(LearnedWith {
        learning_period_s: opts.learning_period_s,
    });
    for (addr, id, engine) in map.named() {
        if b.instances.contains_key(&id) {
            continue;
        }
        // Learned unmapped: keyed `ip/engine` (see `instances.rs`).
        let prefix = format!("{addr}/");
        let old: Vec<String> = b
            .instances
            .keys()
            .filter(|k| {
                k.strip_prefix(&prefix)
                    .is_some_and(|e| engine.as_deref().is_none_or(|x| same_family(e, x)))
            })
            .cloned()
            .collect();
        if let [k] = old.as_slice()
            && let Some(ib) = b.instances.remove(k)
        {
            tracing::warn!(from = %k, to = %id, "baseline learned before the instance map: now under the map's identifier");
            b.instances.insert(id, ib);
        }
    }
}

/// Whether an engine named after a protocol (`postgres`, `mysql`, `sqlserver`) and an RDS
/// engine name (`aurora-postgresql`, `mariadb`, `sqlserver-se`, …) are the same family.
fn same_family(protocol_engine: &str, rds_engine: &str) -> bool {
    let r = rds_engine.to_ascii_lowercase();
    match protocol_engine {
        "postgres" => r.contains("postgres"),
        "mysql" => r.contains("mysql") || r.contains("mariadb"),
        "sqlserver" => r.contains("sqlserver"),
        e => r.contains(e),
    }
}

impl Detector {
    /// What the detectors are doing: findings so far, and every instance's learning (until
    /// when anomaly findings are held back, what has been learned).
    pub fn state(&self) -> crate::model::DetectState {
        let period = self.opts.learning_period_s.saturating_mul(NS);
        crate::model::DetectState {
            findings: self.stats.findings_emitted,
            instances: self
                .baseline
                .instances
                .iter()
                .map(|(k, ib)| {
                    let until = ib.first_seen_ns.saturating_add(period);
                    crate::model::InstanceLearning {
                        instance: k.clone(),
                        learning: self.now_ns < until,
                        learning_until: crate::model::Timestamp(until),
                        users: ib.users.len(),
                        networks: ib.networks.len(),
                        statement_classes: ib
                            .users
                            .values()
                            .flat_map(|u| u.classes.iter())
                            .collect::<std::collections::BTreeSet<_>>()
                            .len(),
                    }
                })
                .collect(),
        }
    }

    /// True while the instance is learning; creates its baseline on first sight.
    pub(super) fn learning(&mut self, key: &str, now: u64) -> bool {
        let ib = self
            .baseline
            .instances
            .entry(key.to_string())
            .or_insert_with(|| InstanceBaseline {
                first_seen_ns: now,
                ..InstanceBaseline::default()
            });
        if ib.first_seen_ns == 0 {
            ib.first_seen_ns = now;
        }
        ib.last_seen_ns = ib.last_seen_ns.max(now);
        now < ib
            .first_seen_ns
            .saturating_add(self.opts.learning_period_s.saturating_mul(NS))
    }

    /// The baseline of an instance, which `learning()` created.
    pub(super) fn instance_baseline(&mut self, key: &str) -> &mut InstanceBaseline {
        self.baseline
            .instances
            .get_mut(key)
            .expect("created by learning()")
    }

    /// Saves the baseline now (if a file is configured); errors are logged and counted.
    pub fn save(&mut self) {
        let Some(store) = &self.store else { return };
        match store.save(&self.baseline) {
            Ok(()) => {
                self.stats.baseline_saves += 1;
                self.last_save_ns = self.now_ns;
            }
            Err(e) => {
                self.stats.baseline_save_errors += 1;
                tracing::error!("{e:#}");
            }
        }
    }
}
