//! Standard output: one JSON object per line (`--json`), or short human-readable lines.

use super::Sink;
use crate::model::Record;
use std::io::Write;

/// ` error=CODE` or ` error=CODE(name)`.
fn error_text(code: Option<&str>, name: Option<&str>) -> String {
    match (code, name) {
        (Some(c), Some(n)) => format!(" error={c}({n})"),
        (Some(c), None) => format!(" error={c}"),
        _ => String::new(),
    }
}

pub struct Stdout {
    json: bool,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Stdout {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }
}

impl Sink for Stdout {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, record)?;
            writeln!(self.out)?;
            return Ok(());
        }
        match record {
            Record::Flow(f) => writeln!(
                self.out,
                "flow {} -> {} {}{} pkts {}/{} bytes {}/{} payload {}/{} {}us end={:?}",
                f.endpoint.client,
                f.endpoint.server,
                f.endpoint.protocol,
                f.endpoint
                    .vni
                    .map(|v| format!(" vni={v}"))
                    .unwrap_or_default(),
                f.packets_to_server,
                f.packets_to_client,
                f.bytes_to_server,
                f.bytes_to_client,
                f.payload_bytes_to_server,
                f.payload_bytes_to_client,
                f.duration_us,
                f.end,
            )?,
            Record::Login(l) => writeln!(
                self.out,
                "login {} -> {} {} user={} db={} app={} {:?}{} tls={}{} auth={}",
                l.endpoint.client,
                l.endpoint.server,
                l.endpoint.protocol,
                l.user.as_deref().unwrap_or("-"),
                l.database.as_deref().unwrap_or("-"),
                l.application.as_deref().unwrap_or("-"),
                l.outcome,
                error_text(l.error_code.as_deref(), l.error_name),
                l.tls,
                match (&l.tls_version, &l.tls_suite) {
                    (Some(v), Some(s)) => format!(" ({v} {s})"),
                    _ => String::new(),
                },
                l.auth_method.as_deref().unwrap_or("-"),
            )?,
            Record::Tls(t) => writeln!(
                self.out,
                "tls {} -> {} {} {} {} sni={} ja4={}{} {}",
                t.endpoint.client,
                t.endpoint.server,
                t.endpoint.protocol,
                t.info.version.as_deref().unwrap_or("-"),
                t.info.suite.as_deref().unwrap_or("-"),
                t.info.sni.as_deref().unwrap_or("-"),
                t.info.ja4.as_deref().unwrap_or("-"),
                if t.info.alpn.is_empty() {
                    String::new()
                } else {
                    format!(" alpn={}", t.info.alpn.join(","))
                },
                match (t.info.decrypted, t.info.undecryptable) {
                    (true, _) => "decrypted".to_string(),
                    (false, Some(why)) => format!("undecryptable={}", why.as_str()),
                    (false, None) => "no records".to_string(),
                },
            )?,
            Record::Query(q) => writeln!(
                self.out,
                "query {} -> {} {} user={} db={} {} rows={} {}us{} {}",
                q.endpoint.client,
                q.endpoint.server,
                q.endpoint.protocol,
                q.user.as_deref().unwrap_or("-"),
                q.database.as_deref().unwrap_or("-"),
                q.verb,
                q.rows.map_or_else(|| "-".to_string(), |r| r.to_string()),
                q.latency_us,
                error_text(q.error_code.as_deref(), q.error_name),
                q.fingerprint,
            )?,
            Record::TlsExchange(e) => writeln!(
                self.out,
                "tls-exchange {} -> {} {} {}us first={}us bytes={}/{} (estimated)",
                e.endpoint.client,
                e.endpoint.server,
                e.endpoint.protocol,
                e.figures.latency_us,
                e.figures.latency_first_byte_us,
                e.figures.bytes_request,
                e.figures.bytes_response,
            )?,
            Record::Latency(l) => writeln!(
                self.out,
                "latency {} {} db={} user={} n={} err={} rows={} p50={}us p99={}us max={}us total={}us {}{}",
                l.server,
                if l.rank == 0 {
                    "server".to_string()
                } else {
                    format!("#{}", l.rank)
                },
                l.database.as_deref().unwrap_or("-"),
                l.user.as_deref().unwrap_or("-"),
                l.count,
                l.errors,
                l.rows,
                l.latency_us.p50,
                l.latency_us.p99,
                l.latency_us.max,
                l.total_us,
                l.fingerprint,
                if l.sampled {
                    " (sampled: events dropped)"
                } else {
                    ""
                },
            )?,
            Record::Summary(s) => {
                let k = |n: &str| {
                    s.kernel
                        .get(n)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                writeln!(
                    self.out,
                    "summary {} packets={} vxlan={} db_segments={} events={} ring_drops={} queue_drops={} truncated={} malformed={} flows_active={} flows_reported={}",
                    s.ts,
                    k("packets"),
                    k("vxlan"),
                    k("db_segments"),
                    s.events,
                    k("events_dropped_ring_full"),
                    s.queue_dropped,
                    k("truncated"),
                    k("malformed"),
                    s.flows_active,
                    s.flows_reported,
                )?;
                if let Some(i) = &s.interface {
                    writeln!(
                        self.out,
                        "interface {} lost_before_xdp={} rx_dropped={} rx_missed={} rx_fifo={} rx_over={} softnet_dropped={}{}",
                        i.interface,
                        i.total(),
                        i.rx_dropped,
                        i.rx_missed_errors,
                        i.rx_fifo_errors,
                        i.rx_over_errors,
                        i.softnet_dropped,
                        i.allowance_exceeded
                            .iter()
                            .map(|(k, v)| format!(" {k}={v}"))
                            .collect::<String>(),
                    )?;
                }
                if let Some(d) = &s.detect {
                    let learning: Vec<String> = d
                        .instances
                        .iter()
                        .filter(|i| i.learning)
                        .map(|i| format!("{} until {}", i.instance, i.learning_until))
                        .collect();
                    writeln!(
                        self.out,
                        "detect findings={} instances={} learning={}{}",
                        d.findings,
                        d.instances.len(),
                        learning.len(),
                        if learning.is_empty() {
                            String::new()
                        } else {
                            format!(" (anomaly findings held back: {})", learning.join(", "))
                        }
                    )?
                }
            }
            Record::Finding(f) => writeln!(
                self.out,
                "finding{} {} {} instance={} remote={} user={} count={} {}",
                if f.service.archived { " archived" } else { "" },
                f.severity_label,
                f.finding_type,
                f.resource.rds_db_instance_details.db_instance_identifier,
                f.service
                    .action
                    .rds_login_attempt_action
                    .remote_ip_details
                    .ip(),
                f.resource
                    .rds_db_user_details
                    .as_ref()
                    .map_or("-", |u| u.user.as_str()),
                f.service.count,
                f.title,
            )?,
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
