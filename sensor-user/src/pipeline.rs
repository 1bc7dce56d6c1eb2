//! Everything after the capture, shared by the live agent and offline analysis:
//! events → per-connection streams → protocol decoders → records → aggregates → sinks.
//!
//! Two halves: a [`Shard`] turns events into records (flows, reassembly, sessions, decoders),
//! and the [`Collector`] takes records (latency aggregates, detection, the sink, summaries).
//! A [`Pipeline`] is one of each, wired directly. The live agent with `--workers N` runs N
//! shards on their own threads, each owning the connections [`shard_of`] gives it, and one
//! collector that takes all of their records: aggregates and detection state live in the
//! collector alone, so nothing is merged but the shards' health figures.

use crate::{
    aggregate::latency::LatencyAggregator,
    capture::{FlowSource, ifstats::InterfaceDrops},
    detect::{Detector, Finding},
    event::Event,
    flows::{FlowTimeouts, FlowTracker},
    model::{Clock, DecoderStats, FlowEnd, Record, StreamStats, SummaryRecord, counter_map},
    ports::PortMap,
    reassembly::{StreamLimits, Streams},
    sinks::Sink,
};
use sensor_common::{FlowKey, counter};

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

/// The worker (of `workers`) that owns a connection: both directions and every event of one
/// connection go to the same one, and its flow too (the kernel's and the delivered account).
pub fn shard_of(key: &FlowKey, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // FNV-1a over the key's bytes: stable across runs and processes (records of one capture
    // are sharded the same way every time), and a few ns.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&key.client_addr);
    eat(&key.server_addr);
    eat(&key.client_port.to_ne_bytes());
    eat(&key.server_port.to_ne_bytes());
    eat(&key.vni.to_ne_bytes());
    ((h ^ (h >> 32)) % workers as u64) as usize
}

/// What a shard reports of itself for the summary; the live agent adds its workers' up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardFigures {
    pub events: u64,
    pub payload_events: u64,
    pub bad_records: u64,
    pub first_event_ns: Option<u64>,
    pub flows_active: usize,
    pub flows_reported: u64,
    pub flows_evicted: u64,
    pub connections_active: usize,
    pub streams: StreamStats,
    pub decoders: DecoderStats,
}

impl core::ops::AddAssign<&ShardFigures> for ShardFigures {
    fn add_assign(&mut self, o: &ShardFigures) {
        self.events += o.events;
        self.payload_events += o.payload_events;
        self.bad_records += o.bad_records;
        self.first_event_ns = match (self.first_event_ns, o.first_event_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.flows_active += o.flows_active;
        self.flows_reported += o.flows_reported;
        self.flows_evicted += o.flows_evicted;
        self.connections_active += o.connections_active;
        self.streams += &o.streams;
        self.decoders += &o.decoders;
    }
}

/// Events to records: the kernel's and the delivered events' flow accounts, and the
/// connections (reassembly, sessions, decoders) of the flows it owns.
pub struct Shard {
    clock: Clock,
    flows: FlowTracker,
    pub streams: Streams,
    /// Records made and not yet taken by the collector.
    pub records: Vec<Record>,
    pub stats: EventStats,
    first_event_ns: Option<u64>,
}

impl Shard {
    fn new(opts: &PipelineOptions) -> Self {
        Self {
            clock: opts.clock,
            flows: FlowTracker::new(opts.timeouts, PortMap::new(&opts.ports), opts.flow_capacity),
            streams: Streams::new(opts.streams, opts.redact),
            records: Vec::new(),
            stats: EventStats::default(),
            first_event_ns: None,
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
    }

    /// Closes the connections and reports the flows that ended or idled by `now_ns` (event
    /// clock); with `all`, every one. Their records go to [`Shard::records`], the
    /// connections' before the flows'.
    pub fn expire(&mut self, source: &mut dyn FlowSource, now_ns: u64, all: Option<FlowEnd>) {
        self.streams
            .expire(now_ns, all.is_some(), &self.clock, &mut self.records);
        let streams = &mut self.streams;
        let flows = self
            .flows
            .expire(source, now_ns, all, &self.clock, &mut |k| {
                streams.take_flow(k)
            });
        self.records.extend(flows.into_iter().map(Record::Flow));
    }

    /// Hands the capture the connections whose segments must now come whole (TLS sessions
    /// read with keys): the kernel's `WHOLE` map, or the offline twin's.
    pub fn apply_marks(&mut self, capture: &mut impl FnMut(&FlowKey)) {
        for k in self.streams.take_marks() {
            capture(&k);
        }
    }

    pub fn figures(&self) -> ShardFigures {
        ShardFigures {
            events: self.stats.events,
            payload_events: self.stats.payload_events,
            bad_records: self.stats.bad_records,
            first_event_ns: self.first_event_ns,
            flows_active: self.flows.active,
            flows_reported: self.flows.emitted,
            flows_evicted: self.flows.evicted(),
            connections_active: self.streams.active(),
            streams: self.streams.stats,
            decoders: self.streams.decoder_stats,
        }
    }
}

/// Records to outputs: latency aggregates, detection (its findings go to the sink after the
/// record that raised them), the sink, and summaries.
pub struct Collector {
    clock: Clock,
    sink: Box<dyn Sink>,
    latency: LatencyAggregator,
    detector: Option<Detector>,
    findings: Vec<Finding>,
    last_summary_ns: Option<u64>,
    /// Events dropped (ring buffer full + queue full) up to the last summary: a latency window
    /// with more is marked `sampled`.
    drops_at_last_summary: u64,
}

impl Collector {
    fn new(opts: &mut PipelineOptions, sink: Box<dyn Sink>) -> Self {
        Self {
            clock: opts.clock,
            sink,
            latency: LatencyAggregator::new(opts.latency_keys, opts.latency_top_n),
            detector: opts.detector.take(),
            findings: Vec::new(),
            last_summary_ns: None,
            drops_at_last_summary: 0,
        }
    }

    /// Takes the records a shard made, in order. A sink error on a flow record is returned
    /// (a flow's end is what the summaries' figures are checked against); on any other
    /// record it is logged, the record being one of many.
    pub fn take(&mut self, records: &mut Vec<Record>) -> anyhow::Result<()> {
        let mut result = Ok(());
        for r in records.drain(..) {
            match &r {
                Record::Query(q) => self.latency.observe(q),
                Record::TlsExchange(e) => self.latency.observe_exchange(e),
                _ => {}
            }
            if let Err(e) = self.sink.emit(&r) {
                if matches!(r, Record::Flow(_)) && result.is_ok() {
                    result = Err(e);
                } else {
                    tracing::warn!(error = %e, "sink failed");
                }
            }
            self.detect(&r);
        }
        result
    }

    /// Feeds one record to the detector, if any, and sends the findings it raised to the sink.
    fn detect(&mut self, r: &Record) {
        let Some(d) = &mut self.detector else { return };
        d.observe(r, &mut self.findings);
        for f in self.findings.drain(..) {
            if let Err(e) = self.sink.emit(&Record::Finding(Box::new(f))) {
                tracing::warn!(error = %e, "sink failed");
            }
        }
    }

    /// The end (capture over, agent stopping), after the last records: pending finding
    /// updates, baseline saved.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(d) = &mut self.detector {
            d.finish(&mut self.findings);
            for f in self.findings.drain(..) {
                self.sink.emit(&Record::Finding(Box::new(f)))?;
            }
        }
        Ok(())
    }

    /// Emits a summary with the shards' figures, the kernel's (or its twin's) counters, and
    /// live, the attached interface's losses before XDP.
    pub fn summary(
        &mut self,
        now_ns: u64,
        counters: &[u64; counter::COUNT as usize],
        interface: Option<InterfaceDrops>,
        shards: &ShardFigures,
        queue_dropped: u64,
    ) -> anyhow::Result<()> {
        let interval_s = self
            .last_summary_ns
            .map_or(0.0, |t| now_ns.saturating_sub(t) as f64 / 1e9);
        let window_start = self
            .last_summary_ns
            .unwrap_or(shards.first_event_ns.unwrap_or(now_ns));
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
            + queue_dropped
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
            events: shards.events,
            queue_dropped,
            bad_records: shards.bad_records,
            flows_active: shards.flows_active,
            flows_reported: shards.flows_reported,
            flows_evicted: shards.flows_evicted,
            connections_active: shards.connections_active,
            streams: shards.streams,
            decoders: shards.decoders,
            latency_keys_overflowed: self.latency.overflowed,
            detect: self.detector.as_ref().map(Detector::state),
            interface,
        };
        self.sink.emit(&Record::Summary(rec))?;
        self.sink.flush()
    }

    /// SIGHUP: the detector's lists, allowed networks and instance map.
    pub fn reload(&mut self, r: &Reloadable) -> anyhow::Result<()> {
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

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.sink.flush()
    }
}

/// One shard and the collector, wired directly: offline analysis, and the live agent with
/// one worker.
pub struct Pipeline {
    pub shard: Shard,
    pub collector: Collector,
    /// What more shards are made from ([`Pipeline::into_parts`]).
    opts: PipelineOptions,
}

impl Pipeline {
    pub fn new(mut opts: PipelineOptions, sink: Box<dyn Sink>) -> Self {
        let collector = Collector::new(&mut opts, sink);
        Self {
            shard: Shard::new(&opts),
            collector,
            opts,
        }
    }

    /// Sessions that switch to TLS go through these layers (the TLS layer and its keys).
    pub fn with_layers(mut self, layers: crate::session::Layers) -> Self {
        self.shard.streams.layers = layers;
        self
    }

    /// `workers` shards and the collector, for the live agent's worker threads. A shard's
    /// connection and flow tables are bounded by its share of the limits, so that all of
    /// them together stay within the memory the limits were set for; the shards share the
    /// TLS layers (and so the key store).
    pub fn into_parts(self, workers: usize) -> (Vec<Shard>, Collector) {
        let workers = workers.max(1);
        if workers == 1 {
            return (vec![self.shard], self.collector);
        }
        let mut opts = self.opts;
        let share = |n: usize| n.div_ceil(workers).max(1);
        opts.flow_capacity = share(opts.flow_capacity);
        opts.streams.max_connections = share(opts.streams.max_connections);
        opts.streams.max_held_total = share(opts.streams.max_held_total);
        let layers = self.shard.streams.layers;
        let shards = (0..workers)
            .map(|_| {
                let mut s = Shard::new(&opts);
                s.streams.layers = layers.clone();
                s
            })
            .collect();
        (shards, self.collector)
    }

    /// Hands the capture the connections whose segments must now come whole.
    pub fn apply_marks(&mut self, capture: &mut impl FnMut(&FlowKey)) {
        self.shard.apply_marks(capture);
    }

    /// One ring-buffer record. A record that fails validation is counted and skipped.
    pub fn on_record(&mut self, record: &[u8]) {
        self.shard.on_record(record);
        self.emit_records();
    }

    pub fn on_event(&mut self, ev: &Event<'_>) {
        self.shard.on_event(ev);
        self.emit_records();
    }

    fn emit_records(&mut self) {
        if !self.shard.records.is_empty() {
            // Only a flow record's sink error is returned, and events make none.
            let _ = self.collector.take(&mut self.shard.records);
        }
    }

    /// Reports flows that ended or idled by `now_ns` (event clock); with `all`, every flow,
    /// and the detector's last word.
    pub fn expire_flows(
        &mut self,
        source: &mut dyn FlowSource,
        now_ns: u64,
        all: Option<FlowEnd>,
    ) -> anyhow::Result<()> {
        self.shard.expire(source, now_ns, all);
        self.collector.take(&mut self.shard.records)?;
        if all.is_some() {
            self.collector.finish()?;
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
        let figures = self.shard.figures();
        let dropped = self.shard.stats.queue_dropped;
        self.collector
            .summary(now_ns, counters, interface, &figures, dropped)
    }

    /// SIGHUP (see [`Reloadable`]): redaction of connections seen from now on, and the
    /// detector's lists, allowed networks and instance map; every other state is kept.
    pub fn reload(&mut self, r: &Reloadable) -> anyhow::Result<()> {
        self.shard.streams.redact = r.redact;
        self.collector.reload(r)
    }

    pub fn flows_reported(&self) -> u64 {
        self.shard.flows.emitted
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.collector.flush()
    }
}
