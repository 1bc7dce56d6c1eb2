//! Flow expiry: reads the flow summaries (the kernel's LRU map, or its offline twin), and
//! turns each flow that ended or idled into one [`FlowRecord`], removing it from the table.

use crate::{
    capture::FlowSource,
    model::{ConnId, FlowEnd, FlowRecord, Purpose},
    ports::PortMap,
};
use sensor_common::{FlowKey, FlowStats};

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
    pub active: usize,
    pub emitted: u64,
}

impl FlowTracker {
    pub fn new(timeouts: FlowTimeouts, ports: PortMap) -> Self {
        Self {
            timeouts,
            ports,
            scratch: Vec::new(),
            active: 0,
            emitted: 0,
        }
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
        let mut out = Vec::new();
        for (key, stats) in &self.scratch {
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
            }
        }
        self.active = self.scratch.len() - out.len();
        self.emitted += out.len() as u64;
        out.sort_by(|a, b| {
            (a.first_seen, &a.endpoint.client).cmp(&(b.first_seen, &b.endpoint.client))
        });
        out
    }
}
