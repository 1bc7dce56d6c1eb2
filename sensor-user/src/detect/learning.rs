//! The learning period and the baseline it fills: an instance's baseline is created on its first
//! record, anomalies are learned (not reported) until `--learning-period` has passed, and the
//! baseline is saved to `--baseline` now and then and at the end.

use super::baseline::InstanceBaseline;
use super::{Detector, NS};

impl Detector {
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
