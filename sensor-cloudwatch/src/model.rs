//! What is sent, independent of the SDK's types: metric data, log events, bus events, and how
//! they are cut into requests under the APIs' limits. `--metrics-sink stdout` prints these
//! requests; the AWS transport converts them one to one.

use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    Count,
    Microseconds,
    Bytes,
}

/// One `MetricDatum`, with CloudWatch's field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datum {
    pub metric_name: &'static str,
    pub dimensions: Vec<Dimension>,
    /// Seconds since the Unix epoch (printed as RFC 3339).
    #[serde(serialize_with = "ser_ts")]
    pub timestamp: i64,
    pub unit: Unit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<f64>,
    pub storage_resolution: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    pub name: &'static str,
    pub value: String,
}

fn ser_ts<S: serde::Serializer>(ts: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ts))
}

pub fn rfc3339(ts: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.max(0) as u64),
    )
    .to_string()
}

impl Datum {
    /// Metric identity: name and dimensions.
    fn identity(&self) -> (&'static str, &[Dimension]) {
        (self.metric_name, &self.dimensions)
    }

    /// Bytes this datum adds to a query-protocol request body (`MetricData.member.N.…=…&`),
    /// an upper bound: every character outside the unreserved set counted as percent-encoded.
    pub fn encoded_len(&self, index: usize) -> usize {
        let prefix = "MetricData.member.".len() + digits(index) + 1;
        let field = |name: &str, value_len: usize| prefix + name.len() + 1 + value_len + 1;
        let mut n = field("MetricName", enc_len(self.metric_name));
        for (j, d) in self.dimensions.iter().enumerate() {
            let p = "Dimensions.member.".len() + digits(j + 1) + 1;
            n += field("", p + "Name".len() + enc_len(d.name));
            n += field("", p + "Value".len() + enc_len(&d.value));
        }
        n += field("Timestamp", enc_len(&rfc3339(self.timestamp)));
        n += field("Unit", 12);
        n += field("StorageResolution", 2);
        if let Some(v) = self.value {
            n += field("Value", num_len(v));
        }
        for (k, (v, c)) in self.values.iter().zip(&self.counts).enumerate() {
            let p = "Values.member.".len() + digits(k + 1);
            n += field("", p + num_len(*v));
            n += field("", p + num_len(*c));
        }
        n
    }
}

fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

fn enc_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                1
            } else {
                3
            }
        })
        .sum()
}

/// The SDK writes numbers with `ryu` (shortest round trip, `1.0`, `1e21`), as Debug does.
fn num_len(v: f64) -> usize {
    format!("{v:?}").len()
}

/// One PutMetricData request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricRequest {
    pub namespace: String,
    #[serde(rename = "MetricData")]
    pub data: Vec<Datum>,
    /// Estimated body size, for the record.
    #[serde(skip)]
    pub bytes: usize,
}

/// Cuts data into requests: at most `max_datums` each, a body of at most `max_bytes`, and no
/// metric (name and dimensions) with a `Values` array twice in one request, since CloudWatch
/// takes 150 values per metric per request. First fit, in order.
pub fn batch_metrics(
    namespace: &str,
    data: Vec<Datum>,
    max_datums: usize,
    max_bytes: usize,
) -> Vec<MetricRequest> {
    let base = "Action=PutMetricData&Version=2010-08-01&Namespace=".len() + enc_len(namespace);
    // Each request with the metrics that have a Values array in it.
    type Metric = (&'static str, Vec<Dimension>);
    let mut reqs: Vec<(MetricRequest, HashSet<Metric>)> = Vec::new();
    for d in data {
        // Sized at the largest index it can get: an upper bound wherever it goes.
        let len = d.encoded_len(max_datums);
        let metric = (!d.values.is_empty()).then(|| (d.identity().0, d.identity().1.to_vec()));
        let slot = reqs.iter().position(|(r, seen)| {
            r.data.len() < max_datums
                && r.bytes + len <= max_bytes
                && metric.as_ref().is_none_or(|m| !seen.contains(m))
        });
        let i = match slot {
            Some(i) => i,
            None => {
                reqs.push((
                    MetricRequest {
                        namespace: namespace.to_string(),
                        data: Vec::new(),
                        bytes: base,
                    },
                    HashSet::new(),
                ));
                reqs.len() - 1
            }
        };
        let (r, seen) = &mut reqs[i];
        r.bytes += len;
        seen.extend(metric);
        r.data.push(d);
    }
    reqs.into_iter().map(|(r, _)| r).collect()
}

/// One CloudWatch Logs event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// ms since the Unix epoch.
    pub timestamp: i64,
    pub message: String,
}

/// CloudWatch Logs limits.
pub const LOG_BATCH_EVENTS: usize = 10_000;
pub const LOG_BATCH_BYTES: usize = 1_048_576;
pub const LOG_EVENT_OVERHEAD: usize = 26;
/// Largest message sent whole (CloudWatch Logs takes 256 KiB per event, overhead included).
pub const LOG_MESSAGE_MAX: usize = 256 * 1024 - LOG_EVENT_OVERHEAD;
const DAY_MS: i64 = 24 * 3600 * 1000;

impl LogEvent {
    pub fn new(timestamp: i64, mut message: String) -> Self {
        if message.len() > LOG_MESSAGE_MAX {
            let mut cut = LOG_MESSAGE_MAX - 16;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("…[truncated]");
        }
        Self { timestamp, message }
    }

    pub fn size(&self) -> usize {
        self.message.len() + LOG_EVENT_OVERHEAD
    }
}

/// Cuts events (sorted by time here) into PutLogEvents batches: at most 10,000 events, 1 MiB
/// with 26 bytes per event, and 24 hours between the first and the last.
pub fn batch_logs(mut events: Vec<LogEvent>) -> Vec<Vec<LogEvent>> {
    events.sort_by_key(|e| e.timestamp);
    let mut out: Vec<Vec<LogEvent>> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let fits = out.last().is_some_and(|b| {
            b.len() < LOG_BATCH_EVENTS
                && bytes + e.size() <= LOG_BATCH_BYTES
                && e.timestamp - b[0].timestamp < DAY_MS
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += e.size();
        out.last_mut().expect("pushed").push(e);
    }
    out
}

/// One EventBridge entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BusEvent {
    /// ms since the Unix epoch.
    #[serde(skip)]
    pub timestamp: i64,
    pub source: &'static str,
    pub detail_type: &'static str,
    pub detail: String,
}

pub const BUS_SOURCE: &str = "rds-sensor";
pub const BUS_DETAIL_TYPE: &str = "RDS Sensor Finding";
/// PutEvents: 10 entries and 256 KiB per request.
pub const BUS_BATCH_EVENTS: usize = 10;
pub const BUS_BATCH_BYTES: usize = 256 * 1024;

impl BusEvent {
    pub fn size(&self) -> usize {
        self.source.len() + self.detail_type.len() + self.detail.len() + 64
    }
}

pub fn batch_bus(events: Vec<BusEvent>) -> Vec<Vec<BusEvent>> {
    let mut out: Vec<Vec<BusEvent>> = Vec::new();
    let mut bytes = 0;
    for e in events {
        if e.size() > BUS_BATCH_BYTES {
            tracing::warn!(
                bytes = e.size(),
                "finding too large for EventBridge; not sent there"
            );
            continue;
        }
        let fits = out
            .last()
            .is_some_and(|b| b.len() < BUS_BATCH_EVENTS && bytes + e.size() <= BUS_BATCH_BYTES);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += e.size();
        out.last_mut().expect("pushed").push(e);
    }
    out
}

/// Seconds since the epoch, now.
pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO)
        .as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(name: &'static str, db: &str, values: usize) -> Datum {
        Datum {
            metric_name: name,
            dimensions: vec![Dimension {
                name: "Database",
                value: db.into(),
            }],
            timestamp: 1_700_000_000,
            unit: Unit::Microseconds,
            value: (values == 0).then_some(1.0),
            values: (0..values).map(|v| 1000.0 + v as f64 * 1.5).collect(),
            counts: (0..values).map(|v| v as f64 + 1.0).collect(),
            storage_resolution: 60,
        }
    }

    #[test]
    fn batches_respect_count_size_and_values_per_metric() {
        let mut data = Vec::new();
        for i in 0..2500 {
            data.push(datum("Queries", &format!("db{i}"), 0));
        }
        for _ in 0..3 {
            data.push(datum("QueryLatency", "db0", 150));
        }
        let reqs = batch_metrics("RDS/TrafficSensor", data, 1000, 800_000);
        assert_eq!(reqs.iter().map(|r| r.data.len()).sum::<usize>(), 2503);
        for r in &reqs {
            assert!(r.data.len() <= 1000);
            assert!(r.bytes <= 800_000);
            let lat = r
                .data
                .iter()
                .filter(|d| d.metric_name == "QueryLatency")
                .count();
            assert!(lat <= 1, "one Values array per metric per request");
        }
        // Size bound: big datums force more requests.
        let big: Vec<_> = (0..200)
            .map(|i| datum("QueryLatency", &format!("db{i}"), 150))
            .collect();
        let one = big[0].encoded_len(1);
        let reqs = batch_metrics("NS", big, 1000, 100_000);
        assert!(reqs.len() >= 200 * one / 100_000);
        assert!(reqs.iter().all(|r| r.bytes <= 100_000));
    }

    #[test]
    fn encoded_len_bounds_the_real_encoding() {
        let d = datum("QueryLatency", "my db/é", 3);
        // MetricData.member.1.MetricName=QueryLatency& …
        let mut real = String::new();
        let p = "MetricData.member.1.";
        real += &format!("{p}MetricName=QueryLatency&");
        real += &format!("{p}Dimensions.member.1.Name=Database&");
        real += &format!("{p}Dimensions.member.1.Value=my%20db%2F%C3%A9&");
        real += &format!("{p}Timestamp=2023-11-14T22%3A13%3A20Z&");
        real += &format!("{p}Unit=Microseconds&{p}StorageResolution=60&");
        for (k, (v, c)) in d.values.iter().zip(&d.counts).enumerate() {
            real += &format!(
                "{p}Values.member.{}={v:?}&{p}Counts.member.{}={c:?}&",
                k + 1,
                k + 1
            );
        }
        assert!(
            d.encoded_len(1) >= real.len(),
            "{} < {}",
            d.encoded_len(1),
            real.len()
        );
        assert!(d.encoded_len(1) <= real.len() + 64);
    }

    #[test]
    fn log_batches() {
        let mut ev: Vec<_> = (0..25_000)
            .map(|i| LogEvent::new(1_000 + i, "x".repeat(10)))
            .collect();
        ev.push(LogEvent::new(1_000 + 3 * DAY_MS, "late".into()));
        ev.push(LogEvent::new(0, "y".repeat(300_000)));
        let b = batch_logs(ev);
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 25_002);
        for batch in &b {
            assert!(batch.len() <= LOG_BATCH_EVENTS);
            assert!(batch.iter().map(LogEvent::size).sum::<usize>() <= LOG_BATCH_BYTES);
            assert!(batch.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            assert!(batch.last().unwrap().timestamp - batch[0].timestamp < DAY_MS);
        }
        assert!(b[0][0].message.len() <= LOG_MESSAGE_MAX);
    }
}
