//! Everything after the capture, shared by the live agent and offline analysis:
//! events → per-connection streams → protocol decoders → records → aggregates → sinks.

use crate::{
    aggregate::latency::LatencyAggregator,
    capture::{FlowSource, ifstats::InterfaceDrops},
    detect::{Detector, Finding},
    event::Event,
    flows::{FlowTimeouts, FlowTracker},
    model::{Clock, FlowEnd, Record, SummaryRecord, counter_map},
    ports::PortMap,
    reassembly::{StreamLimits, Streams},
    sinks::Sink,
};
use sensor_common::counter;

pub struct PipelineOptions {
    pub ports: Vec<(u16, u8)>,
    pub timeouts: FlowTimeouts,
    pub clock: Clock,
    pub streams: StreamLimits,
    /// Keep passwords, literals and parameters out of every record (default on).
    pub redact: bool,
    /// Query fingerprints tracked per latency window, and lines reported per window.
    pub latency_keys: usize,
    pub latency_top_n: usize,
    /// Anomalous-client detection; its findings go to the sink after the record that raised them.
    pub detector: Option<Detector>,
    /// Flows accounted from delivered events at most (as the kernel's `FLOWS`,
    /// `limits.flow_entries`); past it the least recently seen go first, counted.
    pub flow_capacity: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            ports: sensor_common::DEFAULT_DB_PORTS.to_vec(),
            timeouts: FlowTimeouts::default(),
            clock: Clock::default(),
            streams: StreamLimits::default(),
            redact: true,
            latency_keys: 10_000,
            latency_top_n: 20,
            detector: None,
            flow_capacity: 262_144,
        }
    }
}

/// Cumulative figures about the events themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    pub events: u64,
    pub payload_events: u64,
    pub bad_records: u64,
    /// Set by the live agent: events lost between the ring reader and the pipeline.
    pub queue_dropped: u64,
}

/// What SIGHUP can change without a restart; the configuration file
/// (`config::Config::reloadable`) says which keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Reloadable {
    pub redact: bool,
    pub summary_interval_s: u64,
    pub allowed_cidrs: Vec<crate::detect::intel::Cidr>,
    pub malicious_ips: Vec<std::path::PathBuf>,
    pub tor_exits: Vec<std::path::PathBuf>,
    pub instance_map: Option<std::path::PathBuf>,
    pub instances: std::collections::BTreeMap<String, String>,
}

pub struct Pipeline {
    clock: Clock,
    flows: FlowTracker,
    pub streams: Streams,
    sink: Box<dyn Sink>,
    records: Vec<Record>,
    latency: LatencyAggregator,
    pub stats: EventStats,
    last_summary_ns: Option<u64>,
    first_event_ns: Option<u64>,
    detector: Option<Detector>,
    findings: Vec<Finding>,
    /// Events dropped (ring buffer full + queue full) up to the last summary: a latency window
    /// with more is marked `sampled`.
    drops_at_last_summary: u64,
}

/// Feeds one record to the detector, if any, and sends the findings it raised to the sink.
fn detect(
    detector: &mut Option<Detector>,
    findings: &mut Vec<Finding>,
    sink: &mut dyn Sink,
    r: &Record,
) {
    let Some(d) = detector else { return };
    d.observe(r, findings);
    for f in findings.drain(..) {
        if let Err(e) = sink.emit(&Record::Finding(Box::new(f))) {
            tracing::warn!(error = %e, "sink failed");
        }
    }
}

impl Pipeline {
    pub fn new(opts: PipelineOptions, sink: Box<dyn Sink>) -> Self {
        Self {
            clock: opts.clock,
            flows: FlowTracker::new(opts.timeouts, PortMap::new(&opts.ports), opts.flow_capacity),
            streams: Streams::new(opts.streams, opts.redact),
            sink,
            records: Vec::new(),
            latency: LatencyAggregator::new(opts.latency_keys, opts.latency_top_n),
            stats: EventStats::default(),
            last_summary_ns: None,
            first_event_ns: None,
            detector: opts.detector,
            findings: Vec::new(),
            drops_at_last_summary: 0,
        }
    }

    /// Sessions that switch to TLS go through these layers (the TLS layer and its keys).
    pub fn with_layers(mut self, layers: crate::session::Layers) -> Self {
        self.streams.layers = layers;
        self
    }

    /// Hands the capture the connections whose segments must now come whole (TLS sessions
    /// read with keys): the kernel's `WHOLE` map, or the offline twin's.
    pub fn apply_marks(&mut self, capture: &mut impl FnMut(&sensor_common::FlowKey)) {
        for k in self.streams.take_marks() {
            capture(&k);
        }
    }

    /// One ring-buffer record. A record that fails validation is counted and skipped.
    pub fn on_record(&mut self, record: &[u8]) {
        match Event::parse(record) {
            Ok(ev) => self.on_event(&ev),
            Err(e) => {
                self.stats.bad_records += 1;
                tracing::debug!(error = %e, "bad event record");
            }
        }
    }

    pub fn on_event(&mut self, ev: &Event<'_>) {
        self.stats.events += 1;
        self.first_event_ns.get_or_insert(ev.hdr.ts_ns);
        self.flows.account(&ev.hdr);
        if ev.hdr.payload_len > 0 {
            self.stats.payload_events += 1;
        }
        self.streams.on_event(ev, &self.clock, &mut self.records);
        self.emit_records();
    }

    fn emit_records(&mut self) {
        for r in self.records.drain(..) {
            match &r {
                Record::Query(q) => self.latency.observe(q),
                Record::TlsExchange(e) => self.latency.observe_exchange(e),
                _ => {}
            }
            if let Err(e) = self.sink.emit(&r) {
                tracing::warn!(error = %e, "sink failed");
            }
            detect(&mut self.detector, &mut self.findings, &mut *self.sink, &r);
        }
    }

    /// Reports flows that ended or idled by `now_ns` (event clock); with `all`, every flow.
    pub fn expire_flows(
        &mut self,
        source: &mut dyn FlowSource,
        now_ns: u64,
        all: Option<FlowEnd>,
    ) -> anyhow::Result<()> {
        self.streams
            .expire(now_ns, all.is_some(), &self.clock, &mut self.records);
        self.emit_records();
        let streams = &mut self.streams;
        let flows = self
            .flows
            .expire(source, now_ns, all, &self.clock, &mut |k| {
                streams.take_flow(k)
            });
        for f in flows {
            let r = Record::Flow(f);
            self.sink.emit(&r)?;
            detect(&mut self.detector, &mut self.findings, &mut *self.sink, &r);
        }
        if all.is_some()
            && let Some(d) = &mut self.detector
        {
            // The end (capture over, agent stopping): pending finding updates, baseline saved.
            d.finish(&mut self.findings);
            for f in self.findings.drain(..) {
                self.sink.emit(&Record::Finding(Box::new(f)))?;
            }
        }
        Ok(())
    }

    /// Emits a summary with the kernel's (or its twin's) counters, and live, the attached
    /// interface's losses before XDP.
    pub fn summary(
        &mut self,
        now_ns: u64,
        counters: &[u64; counter::COUNT as usize],
        interface: Option<InterfaceDrops>,
    ) -> anyhow::Result<()> {
        let interval_s = self
            .last_summary_ns
            .map_or(0.0, |t| now_ns.saturating_sub(t) as f64 / 1e9);
        let window_start = self
            .last_summary_ns
            .unwrap_or(self.first_event_ns.unwrap_or(now_ns));
        self.last_summary_ns = Some(now_ns);
        if let Some(d) = &mut self.detector {
            // Quiet periods too: due finding updates, list reloads, baseline saves.
            d.tick(now_ns, &mut self.findings);
            for f in self.findings.drain(..) {
                self.sink.emit(&Record::Finding(Box::new(f)))?;
            }
        }
        // Frames the interface lost before XDP are events that never were: the window is a
        // sample as surely as when the ring was full.
        let drops = counters[counter::EVENTS_DROPPED as usize]
            + self.stats.queue_dropped
            + interface.as_ref().map_or(0, InterfaceDrops::total);
        let sampled = drops > self.drops_at_last_summary;
        self.drops_at_last_summary = drops;
        if !self.latency.is_empty() {
            let window_s = now_ns.saturating_sub(window_start) as f64 / 1e9;
            for mut l in self.latency.report(self.clock.at(window_start), window_s) {
                l.sampled = sampled;
                self.sink.emit(&Record::Latency(l))?;
            }
        }
        let rec = SummaryRecord {
            ts: self.clock.at(now_ns),
            interval_s,
            kernel: counter_map(counters),
            events: self.stats.events,
            queue_dropped: self.stats.queue_dropped,
            bad_records: self.stats.bad_records,
            flows_active: self.flows.active,
            flows_reported: self.flows.emitted,
            flows_evicted: self.flows.evicted(),
            connections_active: self.streams.active(),
            streams: self.streams.stats,
            decoders: self.streams.decoder_stats,
            latency_keys_overflowed: self.latency.overflowed,
            detect: self.detector.as_ref().map(Detector::state),
            interface,
        };
        self.sink.emit(&Record::Summary(rec))?;
        self.sink.flush()
    }

    /// SIGHUP (see [`Reloadable`]): redaction of connections seen from now on, and the
    /// detector's lists, allowed networks and instance map; every other state is kept.
    pub fn reload(&mut self, r: &Reloadable) -> anyhow::Result<()> {
        self.streams.redact = r.redact;
        if let Some(d) = &mut self.detector {
            d.reload(
                &r.allowed_cidrs,
                &r.malicious_ips,
                &r.tor_exits,
                r.instance_map.as_deref(),
            )?;
        }
        Ok(())
    }

    pub fn flows_reported(&self) -> u64 {
        self.flows.emitted
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.sink.flush()
    }
}
