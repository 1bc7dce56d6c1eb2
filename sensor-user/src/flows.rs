//! Flow expiry: reads the flow summaries (the kernel's LRU map, or its offline twin), adds
//! what the delivered events said of the same flows, and turns each flow that ended or idled
//! into one [`FlowRecord`], removing it from both.
//!
//! A segment is counted once: the kernel counts in `FLOWS` the segments that make no event,
//! and those whose event the ring buffer refused; a delivered event is counted here
//! ([`FlowTracker::account`]). The kernel's map update was a third of a database event's cost.

use crate::{
    capture::{FlowSource, packet::FlowTable},
    model::{ConnId, FlowEnd, FlowRecord, Purpose},
    ports::PortMap,
};
use sensor_common::{EventHeader, FlowKey, FlowStats};

#[derive(Clone, Copy, Debug)]
pub struct FlowTimeouts {
    /// A flow with no segment for this long is reported and forgotten.
    pub idle_ns: u64,
    /// A flow that ended (RST, or FIN both ways) is reported once quiet for this long, so the
    /// last ACKs land in the same record rather than starting a new flow.
    pub linger_ns: u64,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        Self {
            idle_ns: 300_000_000_000,
            linger_ns: 2_000_000_000,
        }
    }
}

pub struct FlowTracker {
    pub timeouts: FlowTimeouts,
    pub ports: PortMap,
    scratch: Vec<(FlowKey, FlowStats)>,
    /// What delivered events said of each flow.
    delivered: FlowTable,
    pub active: usize,
    pub emitted: u64,
}

impl FlowTracker {
    pub fn new(timeouts: FlowTimeouts, ports: PortMap, capacity: usize) -> Self {
        Self {
            timeouts,
            ports,
            scratch: Vec::new(),
            delivered: FlowTable::new(capacity),
            active: 0,
            emitted: 0,
        }
    }

    /// Counts a delivered event's segment in its flow.
    pub fn account(&mut self, h: &EventHeader) {
        self.delivered.entry(&h.key, h.ts_ns).add_segment(
            h.direction,
            h.tcp_flags,
            h.ip_len,
            h.payload_len,
            h.captured_len < h.payload_len,
            h.ts_ns,
        );
    }

    /// Flows whose delivered-event account was pushed out by a full table.
    pub fn evicted(&self) -> u64 {
        self.delivered.evicted
    }

    /// Expires what is due at `now_ns` (same clock as the summaries' timestamps) and returns
    /// the records. With `all`, every flow is reported (end of capture, shutdown).
    pub fn expire(
        &mut self,
        source: &mut dyn FlowSource,
        now_ns: u64,
        all: Option<FlowEnd>,
        clock: &crate::model::Clock,
        session: &mut dyn FnMut(&FlowKey) -> Option<(Purpose, ConnId)>,
    ) -> Vec<FlowRecord> {
        source.snapshot(&mut self.scratch);
        // The kernel's account and the delivered events' of each flow, added; then the flows
        // only events told of.
        let mut seen = 0usize;
        for (key, stats) in self.scratch.iter_mut() {
            if let Some(d) = self.delivered.map.get(key) {
                stats.merge(d);
                seen += 1;
            }
        }
        if seen < self.delivered.map.len() {
            let kernel: foldhash::HashSet<FlowKey> = self.scratch.iter().map(|(k, _)| *k).collect();
            self.scratch.extend(
                self.delivered
                    .map
                    .iter()
                    .filter(|(k, _)| !kernel.contains(*k))
                    .map(|(k, s)| (*k, *s)),
            );
        }
        let mut due = Vec::new();
        for (i, (_, stats)) in self.scratch.iter().enumerate() {
            let quiet = now_ns.saturating_sub(stats.last_ns);
            let ended = if stats.rst > 0 {
                Some(FlowEnd::Rst)
            } else if stats.fin[0] > 0 && stats.fin[1] > 0 {
                Some(FlowEnd::Fin)
            } else {
                None
            };
            let end = match (ended, all) {
                (Some(e), _) if quiet >= self.timeouts.linger_ns || all.is_some() => Some(e),
                (None, Some(a)) => Some(a),
                (None, None) if quiet >= self.timeouts.idle_ns => Some(FlowEnd::Idle),
                _ => None,
            };
            if let Some(end) = end {
                due.push((i, end));
            }
        }
        // Oldest first, whatever order the tables hold them in: ending a flow ends its
        // connection, whose last records then come out in the same order on every run.
        due.sort_by_key(|&(i, _)| (self.scratch[i].1.first_ns, self.scratch[i].0));
        let mut out = Vec::with_capacity(due.len());
        for (i, end) in due {
            let (key, stats) = &self.scratch[i];
            let made = session(key);
            let mut r = FlowRecord::new(
                key,
                stats,
                end,
                clock,
                self.ports.proto(key.server_port),
                made.map(|m| m.1),
            );
            r.purpose = made.map(|m| m.0).unwrap_or_default();
            out.push(r);
            source.remove(key);
            self.delivered.map.remove(key);
        }
        self.active = self.scratch.len() - out.len();
        self.emitted += out.len() as u64;
        out.sort_by(|a, b| {
            (a.first_seen, &a.endpoint.client).cmp(&(b.first_seen, &b.endpoint.client))
        });
        out
    }
}
