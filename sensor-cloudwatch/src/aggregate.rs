//! Records → per-period CloudWatch data.
//!
//! Every record lands in the period of its own timestamp (a query at its request's first byte,
//! a flow's bytes when it was last seen and its start when it was first seen, a summary when it
//! was taken), so data that arrives late (a flow reported when it ends) still goes to the right
//! period: CloudWatch adds data points of the same metric and period together.
//!
//! | metric | unit | dimensions | from |
//! |---|---|---|---|
//! | `Queries`, `QueryErrors`, `Rows` | Count | DBInstanceIdentifier, Database (+ rollup: DBInstanceIdentifier) | query records |
//! | `QueryLatency`, `QueryTimeToFirstByte` | Microseconds, Values/Counts | same | query records |
//! | `LoginsSucceeded`, `LoginsFailed` | Count | same | login records |
//! | `Queries`, `QueryErrors`, `QueryLatency` | | DBInstanceIdentifier, Database, Fingerprint (top N) | query records |
//! | `BytesToServer`, `BytesToClient` | Bytes | DBInstanceIdentifier | flow records (IP bytes) |
//! | `NewFlows` | Count | DBInstanceIdentifier | flow records, at their first packet |
//! | `Events`, `RingDrops`, `QueueDrops`, `InterfaceDrops` (frames lost before XDP), `BadRecords`, `DecoderResyncs`, `TlsSessions`, `NewConnections` | Count | Sensor | summaries (differences of the cumulative counters) |
//! | `TlsSessionsDecrypted` | Count | Sensor | summaries: TLS sessions read with a key log |
//! | `TlsSessionsUndecryptable` | Count | Sensor, Reason | summaries: TLS sessions not read, by reason (only reasons that occurred) |
//! | `ActiveFlows`, `ActiveConnections` | Count | Sensor | summaries (the last value in the period) |
//! | `DimensionsFolded` | Count | Sensor | records whose instance or database went to `(other)` |
//! | `MetricDatumsDropped`, `LogEventsDropped` | Count | Sensor | the shipper's bounded queue |

use crate::{
    config::Config,
    distribution::{Distribution, ToValuesCounts},
    model::{Datum, Dimension, Unit},
};
use rds_sensor::{
    aggregate::{Dims, Instances, QueryFigures},
    model::{
        FlowRecord, LoginRecord, Outcome, QueryRecord, SummaryRecord, TlsRecord, Undecryptable,
    },
};
use std::collections::{BTreeMap, HashMap};

pub mod names {
    pub const QUERIES: &str = "Queries";
    pub const QUERY_ERRORS: &str = "QueryErrors";
    pub const ROWS: &str = "Rows";
    pub const QUERY_LATENCY: &str = "QueryLatency";
    pub const QUERY_TTFB: &str = "QueryTimeToFirstByte";
    pub const LOGINS_SUCCEEDED: &str = "LoginsSucceeded";
    pub const LOGINS_FAILED: &str = "LoginsFailed";
    pub const BYTES_TO_SERVER: &str = "BytesToServer";
    pub const BYTES_TO_CLIENT: &str = "BytesToClient";
    pub const NEW_FLOWS: &str = "NewFlows";
    pub const EVENTS: &str = "Events";
    pub const RING_DROPS: &str = "RingDrops";
    pub const QUEUE_DROPS: &str = "QueueDrops";
    pub const INTERFACE_DROPS: &str = "InterfaceDrops";
    pub const BAD_RECORDS: &str = "BadRecords";
    pub const DECODER_RESYNCS: &str = "DecoderResyncs";
    pub const TLS_SESSIONS: &str = "TlsSessions";
    /// TLS sessions read with a key log, and those that could not be (dimension `Reason`:
    /// no_key, bad_key, suite, version, no_handshake, not_tls).
    pub const TLS_DECRYPTED: &str = "TlsSessionsDecrypted";
    pub const TLS_UNDECRYPTABLE: &str = "TlsSessionsUndecryptable";
    pub const NEW_CONNECTIONS: &str = "NewConnections";
    pub const ACTIVE_FLOWS: &str = "ActiveFlows";
    pub const ACTIVE_CONNECTIONS: &str = "ActiveConnections";
    pub const DIMENSIONS_FOLDED: &str = "DimensionsFolded";
    pub const DATUMS_DROPPED: &str = "MetricDatumsDropped";
    pub const LOG_EVENTS_DROPPED: &str = "LogEventsDropped";

    pub const DIM_INSTANCE: &str = "DBInstanceIdentifier";
    pub const DIM_DATABASE: &str = "Database";
    pub const DIM_FINGERPRINT: &str = "Fingerprint";
    pub const DIM_SENSOR: &str = "Sensor";
    pub const DIM_REASON: &str = "Reason";
}
use names::*;

pub use rds_sensor::aggregate::{NO_DATABASE, OTHER};
/// Longest `Fingerprint` dimension value sent (CloudWatch takes 1024).
const FINGERPRINT_MAX: usize = 250;

#[derive(Default)]
struct DbAgg {
    q: QueryFigures,
    logins_ok: u64,
    logins_failed: u64,
}

impl DbAgg {
    fn merge(&mut self, o: &DbAgg) {
        self.q.merge(&o.q);
        self.logins_ok += o.logins_ok;
        self.logins_failed += o.logins_failed;
    }
}

#[derive(Default)]
struct InstAgg {
    bytes_to_server: u64,
    bytes_to_client: u64,
    new_flows: u64,
    has_bytes: bool,
}

/// (instance, database, fingerprint).
type FpKey = (String, String, String);

#[derive(Default)]
struct SensorAgg {
    summaries: u64,
    events: u64,
    ring_drops: u64,
    queue_drops: u64,
    interface_drops: u64,
    bad_records: u64,
    resyncs: u64,
    tls_sessions: u64,
    tls_decrypted: u64,
    tls_undecryptable: [u64; Undecryptable::ALL.len()],
    new_connections: u64,
    flows_active: u64,
    connections_active: u64,
}

struct Period {
    dbs: HashMap<(String, String), DbAgg>,
    instances: HashMap<String, InstAgg>,
    /// The cardinality bound, per period.
    dims: Dims,
    fps: HashMap<FpKey, QueryFigures>,
    sensor: SensorAgg,
}

/// Cumulative summary counters last seen, for differences.
#[derive(Clone, Copy, Default)]
struct Totals {
    events: u64,
    ring_drops: u64,
    queue_drops: u64,
    interface_drops: u64,
    bad_records: u64,
    resyncs: u64,
    tls_sessions: u64,
    tls_decrypted: u64,
    tls_undecryptable: [u64; Undecryptable::ALL.len()],
    new_connections: u64,
}

pub struct Aggregator {
    cfg: std::sync::Arc<Config>,
    instances: Instances,
    sensor: String,
    periods: BTreeMap<i64, Period>,
    totals: Totals,
}

impl Aggregator {
    pub fn new(cfg: std::sync::Arc<Config>) -> Self {
        Self {
            sensor: cfg.sensor(),
            instances: cfg.instances(),
            cfg,
            periods: BTreeMap::new(),
            totals: Totals::default(),
        }
    }

    fn period(&mut self, t: i64) -> &mut Period {
        let p = self.cfg.period_s as i64;
        let (max_instances, max_databases) =
            (self.cfg.max_instances, self.cfg.max_databases_per_instance);
        self.periods
            .entry(t - t.rem_euclid(p))
            .or_insert_with(|| Period {
                dbs: HashMap::new(),
                instances: HashMap::new(),
                dims: Dims::new(max_instances, max_databases),
                fps: HashMap::new(),
                sensor: SensorAgg::default(),
            })
    }

    /// The instance of a server for a record that has no database, bounded.
    fn instance_only(&mut self, t: i64, server: &str) -> String {
        let inst = self.instances.resolve(server);
        self.period(t).dims.instance(inst)
    }

    /// The (instance, database) of a record, bounded.
    fn db_key(&mut self, t: i64, server: &str, database: Option<&str>) -> (String, String) {
        let inst = self.instances.resolve(server);
        self.period(t).dims.database(inst, database)
    }

    pub fn query(&mut self, q: &QueryRecord, t: i64) {
        let key = self.db_key(t, &q.endpoint.server, q.database.as_deref());
        let top = self.cfg.top_fingerprints > 0;
        let max_fps = self.cfg.max_fingerprints_tracked;
        let p = self.period(t);
        if top {
            let fk = (key.0.clone(), key.1.clone(), q.fingerprint.clone());
            if p.fps.contains_key(&fk) || p.fps.len() < max_fps {
                p.fps.entry(fk).or_default().observe(q);
            }
        }
        p.dbs.entry(key).or_default().q.observe(q);
    }

    /// A TLS session: the SNI its client asked for names the server, unless it is named.
    pub fn tls(&mut self, t: &TlsRecord) {
        if let Some(sni) = &t.info.sni {
            self.instances.learn_sni(&t.endpoint.server, sni);
        }
    }

    pub fn login(&mut self, l: &LoginRecord, t: i64) {
        let key = self.db_key(t, &l.endpoint.server, l.database.as_deref());
        let a = self.period(t).dbs.entry(key).or_default();
        match l.outcome {
            Outcome::Success => a.logins_ok += 1,
            Outcome::Failure => a.logins_failed += 1,
            // Neither: the client hung up when asked for its credentials.
            Outcome::Abandoned => {}
        }
    }

    /// A flow's bytes count when it was last seen (`t_last`), the flow itself as new when it
    /// was first seen (`t_first`).
    pub fn flow(&mut self, f: &FlowRecord, t_first: i64, t_last: i64) {
        let inst = self.instance_only(t_last, &f.endpoint.server);
        let a = self.period(t_last).instances.entry(inst).or_default();
        a.bytes_to_server += f.bytes_to_server;
        a.bytes_to_client += f.bytes_to_client;
        a.has_bytes = true;
        let inst = self.instance_only(t_first, &f.endpoint.server);
        self.period(t_first)
            .instances
            .entry(inst)
            .or_default()
            .new_flows += 1;
    }

    pub fn summary(&mut self, s: &SummaryRecord, t: i64) {
        let k = |n: &str| {
            s.kernel
                .get(n)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let now = Totals {
            events: s.events,
            ring_drops: k("events_dropped_ring_full"),
            queue_drops: s.queue_dropped,
            interface_drops: s.interface.as_ref().map_or(0, |i| i.total()),
            bad_records: s.bad_records,
            resyncs: s.decoders.resyncs,
            tls_sessions: s.decoders.tls_sessions,
            tls_decrypted: s.decoders.tls_decrypted,
            tls_undecryptable: Undecryptable::ALL.map(|why| s.decoders.undecryptable(why)),
            new_connections: s.streams.connections_opened,
        };
        let prev = std::mem::replace(&mut self.totals, now);
        let a = &mut self.period(t).sensor;
        a.summaries += 1;
        a.events += now.events.saturating_sub(prev.events);
        a.ring_drops += now.ring_drops.saturating_sub(prev.ring_drops);
        a.queue_drops += now.queue_drops.saturating_sub(prev.queue_drops);
        a.interface_drops += now.interface_drops.saturating_sub(prev.interface_drops);
        a.bad_records += now.bad_records.saturating_sub(prev.bad_records);
        a.resyncs += now.resyncs.saturating_sub(prev.resyncs);
        a.tls_sessions += now.tls_sessions.saturating_sub(prev.tls_sessions);
        a.tls_decrypted += now.tls_decrypted.saturating_sub(prev.tls_decrypted);
        for (i, n) in a.tls_undecryptable.iter_mut().enumerate() {
            *n += now.tls_undecryptable[i].saturating_sub(prev.tls_undecryptable[i]);
        }
        a.new_connections += now.new_connections.saturating_sub(prev.new_connections);
        a.flows_active = s.flows_active as u64;
        a.connections_active = s.connections_active as u64;
    }

    /// Data of every period that ended by `watermark` (seconds).
    pub fn close_until(&mut self, watermark: i64) -> Vec<Datum> {
        let p = self.cfg.period_s as i64;
        let due: Vec<i64> = self
            .periods
            .keys()
            .copied()
            .take_while(|start| start + p <= watermark)
            .collect();
        let mut out = Vec::new();
        for start in due {
            if let Some(period) = self.periods.remove(&start) {
                self.emit(start, period, &mut out);
            }
        }
        out
    }

    /// Data of every period, ended or not (at exit).
    pub fn close_all(&mut self) -> Vec<Datum> {
        let mut out = Vec::new();
        for (start, period) in std::mem::take(&mut self.periods) {
            self.emit(start, period, &mut out);
        }
        out
    }

    /// Periods still open.
    pub fn open_periods(&self) -> usize {
        self.periods.len()
    }

    fn emit(&self, ts: i64, period: Period, out: &mut Vec<Datum>) {
        let e = Emitter { cfg: &self.cfg, ts };
        let mut dbs: Vec<_> = period.dbs.into_iter().collect();
        dbs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rollup: BTreeMap<String, DbAgg> = BTreeMap::new();
        for ((inst, db), a) in &dbs {
            let dims = vec![dim(DIM_INSTANCE, inst), dim(DIM_DATABASE, db)];
            e.db(&dims, a, out);
            if self.cfg.per_instance_rollup {
                rollup.entry(inst.clone()).or_default().merge(a);
            }
        }
        for (inst, a) in &rollup {
            e.db(&[dim(DIM_INSTANCE, inst)], a, out);
        }
        let mut insts: Vec<_> = period.instances.into_iter().collect();
        insts.sort_by(|a, b| a.0.cmp(&b.0));
        for (inst, a) in insts {
            let dims = vec![dim(DIM_INSTANCE, &inst)];
            if a.has_bytes {
                e.count(out, BYTES_TO_SERVER, &dims, Unit::Bytes, a.bytes_to_server);
                e.count(out, BYTES_TO_CLIENT, &dims, Unit::Bytes, a.bytes_to_client);
            }
            if a.new_flows > 0 {
                e.count(out, NEW_FLOWS, &dims, Unit::Count, a.new_flows);
            }
        }
        if self.cfg.top_fingerprints > 0 {
            let mut by_inst: BTreeMap<&str, Vec<(&FpKey, &QueryFigures)>> = BTreeMap::new();
            for (k, f) in &period.fps {
                by_inst.entry(k.0.as_str()).or_default().push((k, f));
            }
            for (_, mut fps) in by_inst {
                fps.sort_by(|a, b| b.1.total_us.cmp(&a.1.total_us).then_with(|| a.0.cmp(b.0)));
                for ((inst, db, fp), f) in fps.into_iter().take(self.cfg.top_fingerprints) {
                    let dims = vec![
                        dim(DIM_INSTANCE, inst),
                        dim(DIM_DATABASE, db),
                        dim(DIM_FINGERPRINT, &fingerprint_value(fp)),
                    ];
                    e.count(out, QUERIES, &dims, Unit::Count, f.queries);
                    e.count(out, QUERY_ERRORS, &dims, Unit::Count, f.errors);
                    e.dist(out, QUERY_LATENCY, &dims, &f.latency);
                }
            }
        }
        let s = &period.sensor;
        let dims = vec![dim(DIM_SENSOR, &self.sensor)];
        if s.summaries > 0 {
            for (name, v) in [
                (EVENTS, s.events),
                (RING_DROPS, s.ring_drops),
                (QUEUE_DROPS, s.queue_drops),
                (INTERFACE_DROPS, s.interface_drops),
                (BAD_RECORDS, s.bad_records),
                (DECODER_RESYNCS, s.resyncs),
                (TLS_SESSIONS, s.tls_sessions),
                (TLS_DECRYPTED, s.tls_decrypted),
                (NEW_CONNECTIONS, s.new_connections),
                (ACTIVE_FLOWS, s.flows_active),
                (ACTIVE_CONNECTIONS, s.connections_active),
            ] {
                e.count(out, name, &dims, Unit::Count, v);
            }
            // Only the reasons that occurred: six more series per sensor otherwise.
            for (why, &v) in Undecryptable::ALL.iter().zip(&s.tls_undecryptable) {
                if v > 0 {
                    let dims = vec![dim(DIM_SENSOR, &self.sensor), dim(DIM_REASON, why.as_str())];
                    e.count(out, TLS_UNDECRYPTABLE, &dims, Unit::Count, v);
                }
            }
        }
        if period.dims.folded > 0 {
            e.count(
                out,
                DIMENSIONS_FOLDED,
                &dims,
                Unit::Count,
                period.dims.folded,
            );
        }
    }
}

pub fn dim(name: &'static str, value: &str) -> Dimension {
    Dimension {
        name,
        value: if value.is_empty() {
            NO_DATABASE.into()
        } else {
            value.chars().take(1024).collect()
        },
    }
}

/// The fingerprint, cut to [`FINGERPRINT_MAX`] characters with a hash of the whole when cut.
pub fn fingerprint_value(fp: &str) -> String {
    if fp.chars().count() <= FINGERPRINT_MAX {
        return fp.to_string();
    }
    // FNV-1a: stable across runs and builds.
    let h = fp.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = fp.chars().take(FINGERPRINT_MAX - 20).collect();
    format!("{head}… #{h:016x}")
}

struct Emitter<'a> {
    cfg: &'a Config,
    ts: i64,
}

impl Emitter<'_> {
    fn count(
        &self,
        out: &mut Vec<Datum>,
        name: &'static str,
        dims: &[Dimension],
        unit: Unit,
        v: u64,
    ) {
        out.push(Datum {
            metric_name: name,
            dimensions: dims.to_vec(),
            timestamp: self.ts,
            unit,
            value: Some(v as f64),
            values: Vec::new(),
            counts: Vec::new(),
            storage_resolution: self.cfg.storage_resolution,
        });
    }

    fn dist(&self, out: &mut Vec<Datum>, name: &'static str, dims: &[Dimension], d: &Distribution) {
        for vc in d.values_counts(self.cfg.latency_precision, self.cfg.max_values_per_datum) {
            out.push(Datum {
                metric_name: name,
                dimensions: dims.to_vec(),
                timestamp: self.ts,
                unit: Unit::Microseconds,
                value: None,
                values: vc.values,
                counts: vc.counts,
                storage_resolution: self.cfg.storage_resolution,
            });
        }
    }

    fn db(&self, dims: &[Dimension], a: &DbAgg, out: &mut Vec<Datum>) {
        let q = &a.q;
        if q.queries > 0 {
            self.count(out, QUERIES, dims, Unit::Count, q.queries);
            self.count(out, QUERY_ERRORS, dims, Unit::Count, q.errors);
            self.count(out, ROWS, dims, Unit::Count, q.rows);
            self.dist(out, QUERY_LATENCY, dims, &q.latency);
            self.dist(out, QUERY_TTFB, dims, &q.first_byte);
        }
        if a.logins_ok + a.logins_failed > 0 {
            self.count(out, LOGINS_SUCCEEDED, dims, Unit::Count, a.logins_ok);
            self.count(out, LOGINS_FAILED, dims, Unit::Count, a.logins_failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rds_sensor::model::{Endpoint, FlowEnd, Protocol, Timestamp};
    use std::sync::Arc;

    fn q(server: &str, db: &str, fp: &str, us: u64) -> QueryRecord {
        QueryRecord {
            ts: Timestamp::default(),
            endpoint: Endpoint::from_text("0.0.0.0:0", server, None, Default::default()),
            user: None,
            database: Some(db.into()),
            verb: "SELECT".into(),
            fingerprint: fp.into(),
            query: None,
            rows: Some(2),
            error_code: None,
            error_name: None,
            error_message: None,
            bytes_request: 0,
            bytes_response: 0,
            latency_first_byte_us: None,
            latency_us: us,
            prepared: false,
            tag: None,
        }
    }

    fn sum(data: &[Datum], name: &str, pred: impl Fn(&Datum) -> bool) -> f64 {
        data.iter()
            .filter(|d| d.metric_name == name && pred(d))
            .map(|d| d.value.unwrap_or(0.0))
            .sum()
    }

    fn value<'a>(d: &'a Datum, dim: &str) -> Option<&'a str> {
        d.dimensions
            .iter()
            .find(|x| x.name == dim)
            .map(|x| x.value.as_str())
    }

    #[test]
    fn cardinality_is_bounded() {
        let cfg = Config {
            max_instances: 2,
            max_databases_per_instance: 3,
            ..Config::default()
        };
        let mut a = Aggregator::new(Arc::new(cfg));
        for s in 0..5 {
            for d in 0..10 {
                a.query(
                    &q(&format!("10.0.0.{s}:5432"), &format!("db{d}"), "f", 10),
                    120,
                );
            }
        }
        let data = a.close_all();
        let per_db: Vec<_> = data
            .iter()
            .filter(|d| d.metric_name == QUERIES && d.dimensions.len() == 2)
            .collect();
        let instances: std::collections::BTreeSet<_> = per_db
            .iter()
            .filter_map(|d| value(d, DIM_INSTANCE))
            .collect();
        assert_eq!(
            instances.len(),
            3,
            "two instances and (other): {instances:?}"
        );
        for i in &instances {
            let dbs = per_db
                .iter()
                .filter(|d| value(d, DIM_INSTANCE) == Some(i))
                .count();
            assert!(dbs <= 4, "{i}: {dbs} databases");
        }
        assert_eq!(sum(&data, QUERIES, |d| d.dimensions.len() == 2), 50.0);
        assert_eq!(sum(&data, QUERIES, |d| d.dimensions.len() == 1), 50.0);
        // 2 instances × 7 databases folded, 3 instances × 10 queries folded.
        assert_eq!(sum(&data, DIMENSIONS_FOLDED, |_| true), 14.0 + 30.0);
    }

    #[test]
    fn periods_late_flows_and_summary_differences() {
        let mut a = Aggregator::new(Arc::new(Config {
            sensor_id: Some("s".into()),
            ..Config::default()
        }));
        a.query(&q("10.0.0.1:5432", "db", "f", 10), 130);
        let flow = FlowRecord {
            ts: Timestamp(0),
            endpoint: Endpoint::from_text(
                "10.1.0.1:4000",
                "10.0.0.1:5432",
                None,
                Protocol::Postgres,
            ),
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            duration_us: 0,
            packets_to_server: 1,
            packets_to_client: 1,
            bytes_to_server: 100,
            bytes_to_client: 1000,
            payload_bytes_to_server: 0,
            payload_bytes_to_client: 0,
            syn: 1,
            syn_ack: 1,
            fin_to_server: 1,
            fin_to_client: 1,
            rst: 0,
            truncated: 0,
            end: FlowEnd::Fin,
            purpose: Default::default(),
        };
        let summary = |events: u64, active: usize| SummaryRecord {
            ts: Timestamp::default(),
            interval_s: 10.0,
            kernel: serde_json::Map::new(),
            events,
            queue_dropped: 0,
            bad_records: 0,
            flows_active: active,
            flows_reported: 0,
            flows_evicted: 0,
            connections_active: 0,
            streams: Default::default(),
            decoders: Default::default(),
            latency_keys_overflowed: 0,
            detect: None,
            interface: None,
        };
        a.summary(&summary(100, 3), 150);
        let first = a.close_until(180);
        assert!(first.iter().all(|d| d.timestamp == 120));
        assert_eq!(sum(&first, EVENTS, |_| true), 100.0);
        assert_eq!(a.open_periods(), 0);
        // A flow that started in the first period ends in the third.
        a.flow(&flow, 125, 250);
        a.summary(&summary(250, 1), 250);
        let later = a.close_until(300);
        assert_eq!(sum(&later, NEW_FLOWS, |d| d.timestamp == 120), 1.0);
        assert_eq!(sum(&later, BYTES_TO_CLIENT, |d| d.timestamp == 240), 1000.0);
        assert_eq!(sum(&later, EVENTS, |d| d.timestamp == 240), 150.0);
        assert_eq!(sum(&later, ACTIVE_FLOWS, |_| true), 1.0);
    }

    #[test]
    fn tls_sessions_by_outcome_and_reason() {
        let mut a = Aggregator::new(Arc::new(Config {
            sensor_id: Some("s".into()),
            ..Config::default()
        }));
        let summary = |decrypted: u64, no_key: u64, suite: u64| SummaryRecord {
            ts: Timestamp::default(),
            interval_s: 10.0,
            kernel: serde_json::Map::new(),
            events: 0,
            queue_dropped: 0,
            bad_records: 0,
            flows_active: 0,
            flows_reported: 0,
            flows_evicted: 0,
            connections_active: 0,
            streams: Default::default(),
            decoders: rds_sensor::model::DecoderStats {
                tls_sessions: decrypted + no_key + suite,
                tls_decrypted: decrypted,
                tls_no_key: no_key,
                tls_suite: suite,
                ..Default::default()
            },
            latency_keys_overflowed: 0,
            detect: None,
            interface: None,
        };
        a.summary(&summary(5, 2, 0), 130);
        a.summary(&summary(9, 3, 1), 140);
        let data = a.close_all();
        assert_eq!(sum(&data, TLS_DECRYPTED, |_| true), 9.0);
        let reason = |r: &str| {
            sum(&data, TLS_UNDECRYPTABLE, |d| {
                value(d, DIM_REASON) == Some(r)
            })
        };
        assert_eq!(reason("no_key"), 3.0);
        assert_eq!(reason("suite"), 1.0);
        // Reasons that did not occur are not sent.
        assert!(
            data.iter()
                .filter(|d| d.metric_name == TLS_UNDECRYPTABLE)
                .all(|d| matches!(value(d, DIM_REASON), Some("no_key" | "suite")))
        );
    }

    #[test]
    fn top_fingerprints_by_total_time() {
        let mut a = Aggregator::new(Arc::new(Config {
            top_fingerprints: 2,
            ..Config::default()
        }));
        for (fp, us, n) in [("a", 10, 100), ("b", 5000, 1), ("c", 100, 30), ("d", 1, 5)] {
            for _ in 0..n {
                a.query(&q("10.0.0.1:5432", "db", fp, us), 0);
            }
        }
        let long = "x".repeat(400);
        a.query(&q("10.0.0.2:5432", "db", &long, 1), 0);
        let data = a.close_all();
        let mut top: Vec<_> = data
            .iter()
            .filter(|d| d.metric_name == QUERIES)
            .filter_map(|d| value(d, DIM_FINGERPRINT))
            .collect();
        top.sort();
        assert_eq!(top.len(), 3);
        assert_eq!(&top[..2], ["b", "c"], "5000 and 3000 µs beat 1000 and 5");
        assert!(top[2].len() < 300 && top[2].contains('#'), "{}", top[2]);
    }
}
