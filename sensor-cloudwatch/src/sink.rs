//! The pipeline-side sink: records in, CloudWatch data out (to the shipper's bounded queue, or
//! printed with `--metrics-sink stdout`).

use crate::{
    aggregate::Aggregator,
    config::{Config, SinkKind},
    model::now_s,
    model::{self, BUS_DETAIL_TYPE, BUS_SOURCE, BusEvent, Datum, LogEvent},
    ship::Shared,
};
use rds_sensor::{
    cli::Mode,
    model::{Record, Timestamp},
    sinks::Sink,
};
use std::{io::Write, sync::Arc};

/// CloudWatch refuses data older than two weeks; a capture older than this is moved.
const TOO_OLD_S: i64 = 13 * 24 * 3600;

enum Output {
    Queue(Arc<Shared>),
    /// Printed at flush, after the record sink before it has flushed whole lines.
    Stdout {
        data: Vec<Datum>,
        logs: Vec<LogEvent>,
        bus: Vec<BusEvent>,
    },
}

pub struct CloudWatchSink {
    cfg: Arc<Config>,
    agg: Aggregator,
    out: Output,
    mode: Mode,
    /// Latest record time seen (seconds, shifted).
    watermark: i64,
    last_close: i64,
    /// Seconds added to record times (an old capture, offline); decided at the first record.
    shift: Option<i64>,
    sample_acc: f64,
    log_stream: String,
}

impl CloudWatchSink {
    pub(crate) fn new(cfg: Arc<Config>, mode: Mode, shared: Option<Arc<Shared>>) -> Self {
        let out = match (cfg.metrics_sink, shared) {
            (SinkKind::Cloudwatch, Some(s)) => Output::Queue(s),
            _ => Output::Stdout {
                data: Vec::new(),
                logs: Vec::new(),
                bus: Vec::new(),
            },
        };
        Self {
            agg: Aggregator::new(cfg.clone()),
            log_stream: cfg.log_stream.clone().unwrap_or_else(|| cfg.sensor()),
            cfg,
            out,
            mode,
            watermark: i64::MIN,
            last_close: i64::MIN,
            shift: None,
            sample_acc: 0.0,
        }
    }

    /// Seconds since the epoch of a record time, shifted.
    fn secs(&mut self, ts: Timestamp) -> i64 {
        self.shifted_ms(ms_since_epoch(ts)) / 1000
    }

    fn shifted_ms(&mut self, ms: i64) -> i64 {
        let shift = *self.shift.get_or_insert_with(|| {
            let now = now_s();
            let t = ms.div_euclid(1000);
            if self.mode == Mode::Offline && self.cfg.shift_old_captures && now - t > TOO_OLD_S {
                let p = self.cfg.period_s as i64;
                let s = (now - now.rem_euclid(p)) - (t - t.rem_euclid(p));
                tracing::info!(
                    days = (now - t) / 86400,
                    "the capture is older than CloudWatch accepts: its data is sent as if it started now"
                );
                s
            } else {
                0
            }
        });
        ms + shift * 1000
    }

    fn advance(&mut self, t: i64) {
        self.watermark = self.watermark.max(t);
        // Close ended periods once per period of progress, so late records (flows reported
        // when they end) are gathered, and a long capture does not keep every period open.
        if self.last_close == i64::MIN {
            self.last_close = t;
        } else if self.watermark >= self.last_close + self.cfg.period_s as i64 {
            self.last_close = self.watermark;
            let data = self.agg.close_until(self.watermark);
            self.deliver(data);
        }
    }

    fn deliver(&mut self, data: Vec<Datum>) {
        if data.is_empty() {
            return;
        }
        match &mut self.out {
            Output::Queue(s) => s.push_metrics(data),
            Output::Stdout { data: d, .. } => d.extend(data),
        }
    }

    fn log(&mut self, ev: LogEvent, bus: Option<BusEvent>) {
        match &mut self.out {
            Output::Queue(s) => s.push_log(ev, bus),
            Output::Stdout { logs, bus: b, .. } => {
                logs.push(ev);
                b.extend(bus);
            }
        }
    }

    /// A redacted copy of a query or login record, one in 1/`records_sample`.
    fn sample(&mut self, r: &Record, t_ms: i64) -> anyhow::Result<()> {
        if self.cfg.records_sample <= 0.0 {
            return Ok(());
        }
        self.sample_acc += self.cfg.records_sample;
        if self.sample_acc < 1.0 {
            return Ok(());
        }
        self.sample_acc -= 1.0;
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            // The statement as sent (present only with --no-redact): never shipped.
            o.remove("query");
        }
        self.log(LogEvent::new(t_ms, serde_json::to_string(&v)?), None);
        Ok(())
    }

    /// Records this sink does not aggregate: findings (`"kind":"finding"`) go to CloudWatch
    /// Logs, one event per finding update, as the record the agent writes (snake_case, like
    /// the query records beside it), and to EventBridge when configured, as a GuardDuty-shaped
    /// event (GuardDuty's camelCase, which rules written for GuardDuty match).
    fn other(&mut self, r: &Record) -> anyhow::Result<()> {
        let Record::Finding(f) = r else {
            return Ok(());
        };
        let ms = self.shifted_ms(ms_since_epoch(f.updated_at));
        let message = serde_json::to_string(r)?;
        let bus = match self.cfg.eventbridge_bus {
            Some(_) => Some(BusEvent {
                timestamp: ms,
                source: BUS_SOURCE,
                detail_type: BUS_DETAIL_TYPE,
                detail: serde_json::to_string(&f.guardduty_json())?,
            }),
            None => None,
        };
        self.log(LogEvent::new(ms, message), bus);
        self.advance(ms.div_euclid(1000));
        Ok(())
    }

    fn print(&mut self) -> anyhow::Result<()> {
        let Output::Stdout { data, logs, bus } = &mut self.out else {
            return Ok(());
        };
        let mut out = std::io::stdout().lock();
        for req in model::batch_metrics(
            &self.cfg.namespace,
            std::mem::take(data),
            self.cfg.max_datums_per_request,
            self.cfg.max_request_bytes,
        ) {
            line(
                &mut out,
                &PrintMetrics {
                    kind: "cloudwatch_put_metric_data",
                    namespace: &req.namespace,
                    metric_data: &req.data,
                },
            )?;
        }
        for batch in model::batch_logs(std::mem::take(logs)) {
            line(
                &mut out,
                &PrintLogs {
                    kind: "cloudwatch_logs_put_log_events",
                    log_group_name: &self.cfg.log_group,
                    log_stream_name: &self.log_stream,
                    log_events: &batch,
                },
            )?;
        }
        let bus_name = self.cfg.eventbridge_bus.as_deref().unwrap_or_default();
        for batch in model::batch_bus(std::mem::take(bus)) {
            let entries: Vec<_> = batch
                .iter()
                .map(|e| PrintBusEntry {
                    time: model::rfc3339(e.timestamp.div_euclid(1000)),
                    event: e,
                    event_bus_name: bus_name,
                })
                .collect();
            line(
                &mut out,
                &PrintBus {
                    kind: "eventbridge_put_events",
                    entries,
                },
            )?;
        }
        out.flush()?;
        Ok(())
    }
}

fn line(out: &mut impl Write, v: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The printed requests: a `kind`, then the API's own fields.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PrintMetrics<'a> {
    #[serde(rename = "kind")]
    kind: &'static str,
    namespace: &'a str,
    metric_data: &'a [Datum],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PrintLogs<'a> {
    kind: &'static str,
    log_group_name: &'a str,
    log_stream_name: &'a str,
    log_events: &'a [LogEvent],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PrintBus<'a> {
    #[serde(rename = "kind")]
    kind: &'static str,
    entries: Vec<PrintBusEntry<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PrintBusEntry<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a BusEvent,
    event_bus_name: &'a str,
}

fn ms_since_epoch(t: Timestamp) -> i64 {
    (t.ns() / 1_000_000) as i64
}

impl Sink for CloudWatchSink {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        if let Record::Query(q) = record {
            let t = self.secs(q.ts);
            self.agg.query(q, t);
            self.sample(record, t * 1000)?;
            self.advance(t);
        } else if let Record::Login(l) = record {
            let t = self.secs(l.ts);
            self.agg.login(l, t);
            self.sample(record, t * 1000)?;
            self.advance(t);
        } else if let Record::Flow(f) = record {
            let (first, last) = (self.secs(f.first_seen), self.secs(f.last_seen));
            self.agg.flow(f, first, last);
            self.advance(last);
        } else if let Record::Summary(s) = record {
            let t = self.secs(s.ts);
            self.agg.summary(s, t);
            self.advance(t);
        } else if let Record::Latency(_) = record {
            // The sink keeps its own distributions from the query records.
        } else if let Record::Tls(t) = record {
            // Its SNI names the server where nothing else does (the RDS endpoint).
            self.agg.tls(t);
        } else {
            self.other(record)?;
        }
        Ok(())
    }

    /// Ships every period that has ended (the pipeline flushes at each summary).
    fn flush(&mut self) -> anyhow::Result<()> {
        let data = self.agg.close_until(self.watermark);
        self.deliver(data);
        self.print()
    }
}

impl Drop for CloudWatchSink {
    /// The end of the input: every period, ended or not, is shipped.
    fn drop(&mut self) {
        let data = self.agg.close_all();
        self.deliver(data);
        if let Err(e) = self.print() {
            tracing::warn!(error = %e, "printing CloudWatch requests");
        }
        if let Output::Queue(s) = &self.out {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rds_sensor::model::{Endpoint, QueryRecord};

    /// A query at an RFC 3339 time.
    fn query(ts: &str) -> Record {
        let t = humantime::parse_rfc3339_weak(ts).unwrap();
        let ns = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Record::Query(QueryRecord {
            ts: Timestamp(ns),
            endpoint: Endpoint::from_text("0.0.0.0:0", "10.0.0.1:5432", None, Default::default()),
            user: None,
            database: Some("db".into()),
            verb: "SELECT".into(),
            fingerprint: "select ?".into(),
            query: Some("select 42".into()),
            rows: None,
            error_code: None,
            error_name: None,
            error_message: None,
            bytes_request: 0,
            bytes_response: 0,
            latency_first_byte_us: Some(5),
            latency_us: 10,
            prepared: false,
            tag: None,
        })
    }

    fn taken(s: &mut CloudWatchSink) -> (Vec<Datum>, Vec<LogEvent>) {
        let data = s.agg.close_all();
        let Output::Stdout { logs, data: d, .. } = &mut s.out else {
            unreachable!()
        };
        d.extend(data);
        (std::mem::take(d), std::mem::take(logs))
    }

    #[test]
    fn old_captures_move_to_now_offline_only() {
        let cfg = Arc::new(Config {
            metrics_sink: SinkKind::Stdout,
            records_sample: 0.5,
            ..Config::default()
        });
        let mut s = CloudWatchSink::new(cfg.clone(), Mode::Offline, None);
        for _ in 0..4 {
            s.emit(&query("2020-01-01T00:00:30Z")).unwrap();
        }
        let (data, logs) = taken(&mut s);
        let now = now_s();
        assert!(
            data.iter().all(|d| (now - d.timestamp) < 120),
            "moved to now"
        );
        assert_eq!(logs.len(), 2, "half the records sampled");
        assert!(
            logs.iter().all(|l| !l.message.contains("select 42")),
            "redacted"
        );
        assert!(logs.iter().all(|l| now * 1000 - l.timestamp < 120_000));

        let mut live = CloudWatchSink::new(cfg, Mode::Live, None);
        live.emit(&query("2020-01-01T00:00:30Z")).unwrap();
        let (data, _) = taken(&mut live);
        assert!(
            data.iter().all(|d| d.timestamp == 1_577_836_800),
            "live keeps its times"
        );
    }
}
