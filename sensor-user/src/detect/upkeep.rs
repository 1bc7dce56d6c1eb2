//! Keeping the detector current: SIGHUP reloads (lists, allowed networks, instance map), and
//! the once-a-second advance of detection time (due updates, changed lists, forgetting old
//! state, saving the baseline).

use super::enrich::InstanceMap;
use super::intel::{Cidr, Lists};
use super::{Detector, Finding, NS};
use anyhow::Result;
use std::path::PathBuf;

impl Detector {
    /// SIGHUP: new malicious/Tor lists, allowed networks and instance map; the baseline, open
    /// findings and every window are kept. On an unreadable file nothing changes.
    pub fn reload(
        &mut self,
        allowed: &[Cidr],
        malicious: &[PathBuf],
        tor: &[PathBuf],
        instance_map: Option<&std::path::Path>,
    ) -> Result<()> {
        let m = Lists::load("malicious", malicious)?;
        let t = Lists::load("tor", tor)?;
        let instances = match instance_map {
            Some(p) => InstanceMap::load(p)?,
            None => InstanceMap::default(),
        };
        self.malicious = m;
        self.tor = t;
        self.instances = instances;
        self.inst_cache.clear();
        self.allowed = allowed.iter().copied().collect();
        self.opts.allowed = allowed.to_vec();
        self.opts.malicious_lists = malicious.to_vec();
        self.opts.tor_lists = tor.to_vec();
        self.opts.instance_map = instance_map.map(PathBuf::from);
        Ok(())
    }

    pub(super) fn wall(&self, ts_ns: u64) -> u64 {
        self.clock.wall_ns(ts_ns)
    }

    /// Moves detection time forward; once a second (record time) emits due updates, reloads
    /// changed lists, forgets old state and saves the baseline when it is time.
    pub(super) fn advance(&mut self, now: u64, out: &mut Vec<Finding>) {
        self.now_ns = self.now_ns.max(now);
        let now = self.now_ns;
        if now < self.last_tick_ns + NS {
            return;
        }
        let first = self.last_tick_ns == 0;
        self.last_tick_ns = now;
        if first {
            self.last_save_ns = now;
        }
        out.extend(self.log.due(now));
        out.extend(self.log.archive(now));
        self.malicious.maybe_reload();
        self.tor.maybe_reload();
        self.forget(now);
        if self.store.is_some()
            && now.saturating_sub(self.last_save_ns) >= self.opts.save_every_s * NS
        {
            self.save();
        }
    }
}
