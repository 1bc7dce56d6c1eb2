//! `/metrics` in the Prometheus text exposition format (`--prometheus 127.0.0.1:9187`, or
//! `output.prometheus` in the config file): the figures the CloudWatch sink sends, as counters
//! since start and latency histograms (fixed buckets, so a fleet's sensors aggregate with
//! `sum by (le)` and `histogram_quantile` over any range), for teams that scrape.
//!
//! Series are bounded as CloudWatch's dimensions are ([`Dims`]: at most [`MAX_INSTANCES`]
//! instances and [`MAX_DATABASES`] databases each, then `(other)`), folds counted in
//! `rds_sensor_dimensions_folded_total`; instances are named by the shared [`Instances`].
//!
//! A minimal HTTP/1.1 server on tokio's `TcpListener`: `GET /metrics` (any other path: 404),
//! one response per connection. Loopback unless an address says otherwise.

use crate::aggregate::{Dims, Instances, MAX_DATABASES, MAX_INSTANCES};
use crate::model::{Outcome, Record};
use crate::sinks::Sink;
use anyhow::{Context, Result};
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

/// `PORT` (loopback) or `ADDRESS:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("`{s}`: expected PORT or ADDRESS:PORT (e.g. 127.0.0.1:9187)"))
}

/// Histogram bucket bounds, µs: 100 µs to 30 s, about 2.5× apart (a database's latencies span
/// index lookups to reports).
const BUCKETS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// One Prometheus histogram: counts per bucket (the last is +Inf), and the sum.
#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn write(&self, o: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            let le = BUCKETS_US
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| (*b as f64 / 1e6).to_string());
            let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{le}\"}} {acc}");
        }
        let _ = writeln!(o, "{name}_sum{{{labels}}} {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(o, "{name}_count{{{labels}}} {acc}");
    }
}

/// What one (instance, database) did.
#[derive(Clone, Debug, Default)]
struct Queries {
    queries: u64,
    errors: u64,
    rows: u64,
    /// Request and response bytes, counted as each query completes: they move while a
    /// connection lives (the flow counters only when it ends).
    bytes_request: u64,
    bytes_response: u64,
    latency: Histogram,
    first_byte: Histogram,
}

struct Metrics {
    dims: Dims,
    /// (instance, database)
    queries: BTreeMap<(String, String), Queries>,
    /// (instance, finding type, severity label): new findings (not their updates).
    findings: BTreeMap<(String, &'static str, &'static str), u64>,
    /// (instance, outcome)
    logins: BTreeMap<(String, &'static str), u64>,
    /// TLS sessions by instance and what came of reading them.
    tls: BTreeMap<(String, &'static str), u64>,
    /// instance → (to server, to client, flows)
    bytes: BTreeMap<String, (u64, u64, u64)>,
    health: Vec<(&'static str, &'static str, &'static str, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            dims: Dims::new(MAX_INSTANCES, MAX_DATABASES),
            queries: BTreeMap::new(),
            findings: BTreeMap::new(),
            logins: BTreeMap::new(),
            tls: BTreeMap::new(),
            bytes: BTreeMap::new(),
            health: Vec::new(),
        }
    }
}

/// The sink; clones share the figures with the server.
#[derive(Clone, Default)]
pub struct Prometheus {
    metrics: Arc<Mutex<Metrics>>,
    /// Server → DBInstanceIdentifier (`--db-instance`, `[instances]`).
    instances: Arc<Instances>,
}

impl Prometheus {
    pub fn new(instances: Instances) -> Self {
        Self {
            metrics: Arc::default(),
            instances: Arc::new(instances),
        }
    }

    /// Binds and serves until the runtime stops.
    pub async fn serve(self, addr: SocketAddr) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Prometheus endpoint to {addr}"))?;
        let local = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.answer(conn).await {
                        tracing::debug!(error = %e, "prometheus: connection");
                    }
                });
            }
        });
        Ok(local)
    }

    async fn answer(&self, mut conn: tokio::net::TcpStream) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let read = async {
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), read).await??;
        let line = String::from_utf8_lossy(&buf);
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
            ("GET", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.render(),
            ),
            ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n".to_string(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body.as_bytes()).await?;
        conn.shutdown().await?;
        Ok(())
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(
            o,
            "# HELP rds_sensor_build_info The sensor's version and kernel ABI.\n# TYPE rds_sensor_build_info gauge\nrds_sensor_build_info{{version=\"{}\",abi=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            sensor_common::ABI_VERSION
        );
        let counter = |o: &mut String, name: &str, help: &str, f: &dyn Fn(&Queries) -> u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((inst, db), s) in &m.queries {
                let _ = writeln!(
                    o,
                    "{name}{{db_instance=\"{}\",database=\"{}\"}} {}",
                    esc(inst),
                    esc(db),
                    f(s)
                );
            }
        };
        counter(&mut o, "rds_sensor_queries_total", "Queries seen.", &|s| {
            s.queries
        });
        counter(
            &mut o,
            "rds_sensor_query_errors_total",
            "Queries answered with an error.",
            &|s| s.errors,
        );
        counter(
            &mut o,
            "rds_sensor_rows_total",
            "Rows returned or affected.",
            &|s| s.rows,
        );
        counter(
            &mut o,
            "rds_sensor_query_request_bytes_total",
            "Request bytes of completed queries (the protocol's messages).",
            &|s| s.bytes_request,
        );
        counter(
            &mut o,
            "rds_sensor_query_response_bytes_total",
            "Response bytes of completed queries (the protocol's messages).",
            &|s| s.bytes_response,
        );
        for (name, help, pick) in [
            (
                "rds_sensor_query_latency_seconds",
                "From the request's first byte to the end of the response.",
                0,
            ),
            (
                "rds_sensor_query_time_to_first_byte_seconds",
                "From the request's first byte to the response's first byte.",
                1,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((inst, db), s) in &m.queries {
                let h = if pick == 0 { &s.latency } else { &s.first_byte };
                if h.count() == 0 {
                    continue;
                }
                let labels = format!("db_instance=\"{}\",database=\"{}\"", esc(inst), esc(db));
                h.write(&mut o, name, &labels);
            }
        }
        let name = "rds_sensor_findings_total";
        let _ = writeln!(
            o,
            "# HELP {name} Findings raised (new ones and ones that came back after being archived; not their updates).\n# TYPE {name} counter"
        );
        for ((inst, ty, sev), n) in &m.findings {
            let _ = writeln!(
                o,
                "{name}{{db_instance=\"{}\",type=\"{}\",severity=\"{sev}\"}} {n}",
                esc(inst),
                esc(ty)
            );
        }
        let name = "rds_sensor_logins_total";
        let _ = writeln!(
            o,
            "# HELP {name} Login attempts by outcome.\n# TYPE {name} counter"
        );
        for ((inst, outcome), n) in &m.logins {
            let _ = writeln!(
                o,
                "{name}{{db_instance=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(inst)
            );
        }
        let name = "rds_sensor_tls_sessions_total";
        let _ = writeln!(
            o,
            "# HELP {name} TLS sessions: decrypted with a key log, or why not (no_key, bad_key, suite, version, no_handshake, not_tls; none: ended before any record).\n# TYPE {name} counter"
        );
        for ((inst, result), n) in &m.tls {
            let _ = writeln!(
                o,
                "{name}{{db_instance=\"{}\",result=\"{result}\"}} {n}",
                esc(inst)
            );
        }
        for (name, help, idx) in [
            (
                "rds_sensor_bytes_to_server_total",
                "IP bytes client to server, from ended flows.",
                0,
            ),
            (
                "rds_sensor_bytes_to_client_total",
                "IP bytes server to client, from ended flows.",
                1,
            ),
            ("rds_sensor_flows_total", "Flows reported.", 2),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (inst, v) in &m.bytes {
                let v = [v.0, v.1, v.2][idx];
                let _ = writeln!(o, "{name}{{db_instance=\"{}\"}} {v}", esc(inst));
            }
        }
        for (name, kind, help, v) in &m.health {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let name = "rds_sensor_dimensions_folded_total";
        let _ = writeln!(
            o,
            "# HELP {name} Records whose instance or database went to (other).\n# TYPE {name} counter\n{name} {}",
            m.dims.folded
        );
        o
    }
}

impl Sink for Prometheus {
    fn emit(&mut self, r: &Record) -> Result<()> {
        let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Record::Query(q) => {
                let inst = self.instances.resolve(&q.endpoint.server);
                let key = m.dims.database(inst, q.database.as_deref());
                let e = m.queries.entry(key).or_default();
                e.queries += 1;
                e.errors += u64::from(q.error_code.is_some());
                e.rows += q.rows.unwrap_or(0);
                e.bytes_request += q.bytes_request;
                e.bytes_response += q.bytes_response;
                e.latency.observe(q.latency_us);
                if let Some(f) = q.latency_first_byte_us {
                    e.first_byte.observe(f);
                }
            }
            Record::Login(l) => {
                let outcome = match l.outcome {
                    Outcome::Success => "success",
                    Outcome::Failure => "failure",
                    Outcome::Abandoned => "abandoned",
                };
                let inst = m.dims.instance(self.instances.resolve(&l.endpoint.server));
                *m.logins.entry((inst, outcome)).or_default() += 1;
            }
            Record::Tls(t) => {
                if let Some(sni) = &t.info.sni {
                    std::sync::Arc::make_mut(&mut self.instances)
                        .learn_sni(&t.endpoint.server, sni);
                }
                let result = match (t.info.decrypted, t.info.undecryptable) {
                    (true, _) => "decrypted",
                    (false, Some(why)) => why.as_str(),
                    (false, None) => "none",
                };
                let inst = m.dims.instance(self.instances.resolve(&t.endpoint.server));
                *m.tls.entry((inst, result)).or_default() += 1;
            }
            Record::Flow(f) => {
                let inst = m.dims.instance(self.instances.resolve(&f.endpoint.server));
                let e = m.bytes.entry(inst).or_default();
                e.0 += f.bytes_to_server;
                e.1 += f.bytes_to_client;
                e.2 += 1;
            }
            Record::Summary(s) => {
                let k = |n: &str| s.kernel.get(n).and_then(|v| v.as_u64()).unwrap_or(0);
                m.health = vec![
                    (
                        "rds_sensor_packets_total",
                        "counter",
                        "Frames the XDP program saw.",
                        k("packets"),
                    ),
                    (
                        "rds_sensor_events_total",
                        "counter",
                        "Events user space received.",
                        s.events,
                    ),
                    (
                        "rds_sensor_ring_drops_total",
                        "counter",
                        "Events lost: ring buffer full.",
                        k("events_dropped_ring_full"),
                    ),
                    (
                        "rds_sensor_queue_drops_total",
                        "counter",
                        "Events lost: reader queue full.",
                        s.queue_dropped,
                    ),
                    (
                        "rds_sensor_interface_drops_total",
                        "counter",
                        "Frames lost before the XDP program ran: the interface's receive drops, the host's backlog drops, ENA's allowances exceeded.",
                        s.interface.as_ref().map_or(0, |i| i.total()),
                    ),
                    (
                        "rds_sensor_bad_records_total",
                        "counter",
                        "Ring-buffer records that failed validation.",
                        s.bad_records,
                    ),
                    (
                        "rds_sensor_truncated_total",
                        "counter",
                        "Segments truncated by the mirror (MTU or PacketLength).",
                        k("truncated"),
                    ),
                    (
                        "rds_sensor_active_flows",
                        "gauge",
                        "Flows open.",
                        s.flows_active as u64,
                    ),
                    (
                        "rds_sensor_active_connections",
                        "gauge",
                        "Connections the decoders follow.",
                        s.connections_active as u64,
                    ),
                ];
            }
            // A finding's first emission has count 1 (updates count on); one that ended and
            // came back starts at 1 again.
            Record::Finding(f) if f.service.count == 1 && !f.service.archived => {
                // Named as the other series are: by the server address the sensor saw.
                let server = &f.resource.rds_db_instance_details.address;
                let inst = m.dims.instance(self.instances.resolve(server));
                *m.findings
                    .entry((inst, f.finding_type, f.severity_label))
                    .or_default() += 1;
            }
            Record::Latency(_) | Record::Finding(_) | Record::TlsExchange(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol, QueryRecord, Timestamp};

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("9187").unwrap().to_string(), "127.0.0.1:9187");
        assert_eq!(
            parse_listen("[::1]:9187").unwrap().to_string(),
            "[::1]:9187"
        );
        assert!(
            parse_listen("localhost")
                .unwrap_err()
                .contains("ADDRESS:PORT")
        );
    }

    #[test]
    fn tls_sessions_by_result_and_an_sni_names_its_server() {
        let mut sink = Prometheus::new(Instances::default());
        let ep = Endpoint::from_text("10.0.1.5:40000", "10.0.3.99:5432", None, Protocol::Postgres);
        for (decrypted, why) in [
            (true, None),
            (false, Some(crate::model::Undecryptable::NoKey)),
        ] {
            sink.emit(&Record::Tls(crate::model::TlsRecord {
                ts: Timestamp::default(),
                endpoint: ep.clone(),
                info: crate::model::TlsInfo {
                    sni: Some("database-1.abcdefghijkl.us-east-1.rds.amazonaws.com".into()),
                    decrypted,
                    undecryptable: why,
                    ..Default::default()
                },
            }))
            .unwrap();
        }
        let text = sink.render();
        for want in [
            "rds_sensor_tls_sessions_total{db_instance=\"database-1\",result=\"decrypted\"} 1",
            "rds_sensor_tls_sessions_total{db_instance=\"database-1\",result=\"no_key\"} 1",
        ] {
            assert!(text.contains(want), "no {want} in\n{text}");
        }
    }

    #[test]
    fn scrape() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut sink = Prometheus::new(Instances::new([("10.0.3.17", "orders-db")]));
        for (us, err) in [(1_000, false), (2_000, false), (400_000, true)] {
            sink.emit(&Record::Query(QueryRecord {
                ts: Timestamp::default(),
                endpoint: Endpoint::from_text(
                    "10.0.1.5:40000",
                    "10.0.3.17:5432",
                    None,
                    Protocol::Postgres,
                ),
                user: Some("app".into()),
                database: Some("orders".into()),
                verb: "SELECT".into(),
                fingerprint: "SELECT ?".into(),
                query: None,
                rows: Some(2),
                error_code: err.then(|| "57014".into()),
                error_name: None,
                error_message: None,
                bytes_request: 1,
                bytes_response: 1,
                latency_first_byte_us: Some(us / 2),
                latency_us: us,
                prepared: false,
                tag: None,
            }))
            .unwrap();
        }
        let body = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let addr = sink
                .clone()
                .serve(parse_listen("0").unwrap())
                .await
                .unwrap();
            assert!(addr.ip().is_loopback());
            let get = |path: &'static str| async move {
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut out = String::new();
                c.read_to_string(&mut out).await.unwrap();
                out
            };
            assert!(get("/").await.starts_with("HTTP/1.1 404"));
            get("/metrics").await
        });
        assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
        assert!(body.contains("Content-Type: text/plain; version=0.0.4"));
        let l = "{db_instance=\"orders-db\",database=\"orders\"}";
        for line in [
            "# TYPE rds_sensor_queries_total counter".to_string(),
            format!("rds_sensor_queries_total{l} 3"),
            format!("rds_sensor_query_errors_total{l} 1"),
            format!("rds_sensor_rows_total{l} 6"),
            "# TYPE rds_sensor_query_latency_seconds histogram".to_string(),
            // 1 ms, 2 ms and 400 ms, cumulative.
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"0.0005\"} 0".to_string(),
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"0.001\"} 1".to_string(),
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"0.0025\"} 2".to_string(),
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"0.25\"} 2".to_string(),
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"0.5\"} 3".to_string(),
            "rds_sensor_query_latency_seconds_bucket{db_instance=\"orders-db\",database=\"orders\",le=\"+Inf\"} 3".to_string(),
            format!("rds_sensor_query_latency_seconds_sum{l} 0.403"),
            format!("rds_sensor_query_latency_seconds_count{l} 3"),
        ] {
            assert!(body.lines().any(|x| x.starts_with(&line)), "no `{line}` in\n{body}");
        }
    }

    /// Database names are the client's to choose: past the bound they fold into `(other)`,
    /// and the folds are counted.
    #[test]
    fn series_are_bounded_and_folds_counted() {
        let mut sink = Prometheus::new(Instances::default());
        for i in 0..100 {
            sink.emit(&Record::Query(QueryRecord {
                ts: Timestamp::default(),
                endpoint: Endpoint::from_text(
                    "0.0.0.0:0",
                    "10.0.3.17:5432",
                    None,
                    Default::default(),
                ),
                user: None,
                database: Some(format!("db{i}")),
                verb: "SELECT".into(),
                fingerprint: "SELECT ?".into(),
                query: None,
                rows: None,
                error_code: None,
                error_name: None,
                error_message: None,
                bytes_request: 1,
                bytes_response: 1,
                latency_first_byte_us: None,
                latency_us: 10,
                prepared: false,
                tag: None,
            }))
            .unwrap();
        }
        let body = sink.render();
        let series = body
            .lines()
            .filter(|l| l.starts_with("rds_sensor_queries_total{"))
            .count();
        assert_eq!(series, MAX_DATABASES + 1, "{body}");
        assert!(body.contains("database=\"(other)\"} 80"), "{body}");
        assert!(
            body.contains(&format!(
                "rds_sensor_dimensions_folded_total {}",
                100 - MAX_DATABASES
            )),
            "{body}"
        );
    }
}
