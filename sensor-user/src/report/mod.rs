//! `rds-sensor analyze FILE --report out.html`: one self-contained page (inline SVG and CSS, no
//! script, nothing fetched): a header (time range, packets, flows, sessions, the decoders'
//! health); per server and per top fingerprint a latency histogram and p50/p90/p99 over time
//! (seconds from the capture's start, broken where no query came, drawn only with enough
//! queries); the slowest queries, the top errors, per-user and per-client tables; the logins;
//! the findings with their evidence.
//!
//! The plots are drawn by plotters' SVG backend, which writes text as `<text>` elements and
//! estimates its size without fonts: nothing from the system is needed to build or render.

use crate::{
    model::{Outcome, Record},
    sinks::Sink,
};
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

pub mod progress;

/// Latency samples kept per series (the first ones: a capture report, not a reservoir).
const MAX_SAMPLES: usize = 200_000;
const MAX_LOGINS: usize = 5_000;
const TOP_FINGERPRINTS: usize = 8;
/// A histogram needs this many queries to say anything; a line over time this many.
const MIN_HISTOGRAM: usize = 10;
const MIN_OVER_TIME: usize = 30;
/// Rows of the slowest-queries, errors, users and clients tables.
const TOP_ROWS: usize = 20;
/// Distinct users, clients and errors followed (beyond, folded into one row).
const MAX_KEYS: usize = 2_000;

/// `1 query`, `2 queries`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

struct SlowQuery {
    ts_ns: u64,
    us: u64,
    server: String,
    user: String,
    fingerprint: String,
    error: String,
}

#[derive(Default)]
struct ErrorStat {
    count: u64,
    name: String,
    example: String,
    message: String,
}

#[derive(Default)]
struct Who {
    queries: u64,
    errors: u64,
    total_us: u64,
    logins: u64,
    failed_logins: u64,
}

/// `key`'s entry, or the `(other)` one once `MAX_KEYS` are followed.
fn entry<'a, V: Default>(m: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    let k = if m.len() < MAX_KEYS || m.contains_key(key) {
        key.to_string()
    } else {
        "(other)".to_string()
    };
    m.entry(k).or_default()
}

#[derive(Default)]
struct Series {
    /// (ns since capture start as the record says, µs)
    samples: Vec<(u64, u64)>,
    count: u64,
    errors: u64,
    total_us: u64,
}

impl Series {
    fn add(&mut self, ts_ns: u64, us: u64, err: bool) {
        self.count += 1;
        self.errors += u64::from(err);
        self.total_us += us;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push((ts_ns, us));
        }
    }
}

struct LoginRow {
    ts: String,
    client: String,
    server: String,
    user: String,
    database: String,
    outcome: Outcome,
    error: String,
    auth: String,
    tls: bool,
}

/// TLS sessions alike in what they show: (server, version, suite, JA4, certificate subject and
/// end, outcome).
type TlsKey = (String, String, String, String, String, String);

/// Distinct kinds of TLS session kept (beyond, only counted).
const MAX_TLS_ROWS: usize = 500;

#[derive(Default)]
struct Data {
    servers: BTreeMap<String, Series>,
    tls: BTreeMap<TlsKey, u64>,
    tls_total: u64,
    fingerprints: HashMap<(String, String), Series>,
    logins: Vec<LoginRow>,
    logins_total: u64,
    /// Latest version of each finding, by id, in first-seen order.
    findings: Vec<(String, serde_json::Value)>,
    /// The detectors' last word on their learning (`None`: detection was off).
    detect: Option<crate::model::DetectState>,
    /// The first and last times any record names (a flow's first packet included): the
    /// capture's span as the sensor saw it.
    first_ns: Option<u64>,
    last_ns: u64,
    /// The last summary: packets, flows, sessions, decoders' health.
    summary: Option<crate::model::SummaryRecord>,
    slowest: Vec<SlowQuery>,
    /// (code, server) → count, name, an example.
    errors: BTreeMap<String, ErrorStat>,
    users: BTreeMap<String, Who>,
    clients: BTreeMap<String, Who>,
    queries: u64,
}

impl Data {
    fn saw(&mut self, ns: u64) {
        self.first_ns = Some(self.first_ns.map_or(ns, |f| f.min(ns)));
        self.last_ns = self.last_ns.max(ns);
    }
}

/// Collects what the report shows; [`Report::write`] at the end.
#[derive(Clone)]
pub struct Report {
    data: Arc<Mutex<Data>>,
    path: PathBuf,
    title: String,
}

impl Report {
    pub fn new(path: PathBuf, title: String) -> Self {
        Self {
            data: Arc::default(),
            path,
            title,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Renders the page and writes it.
    pub fn write(&self) -> Result<()> {
        let html = self.render()?;
        std::fs::write(&self.path, html)
            .with_context(|| format!("writing the report {}", self.path.display()))
    }

    pub fn render(&self) -> Result<String> {
        let d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rds-sensor report: {t}</title><style>{CSS}</style></head><body><h1>rds-sensor report</h1><p class=\"sub\">{t}</p>",
            t = esc(&self.title)
        );
        let start = d.first_ns.unwrap_or(0);
        h.push_str(&header(&d));
        // Summary table.
        let _ = write!(
            h,
            "<h2 id=\"servers\">Servers</h2><table id=\"servers-table\"><tr><th>server</th><th>queries</th><th>errors</th><th>p50</th><th>p99</th><th>total time</th></tr>"
        );
        for (name, s) in &d.servers {
            let (p50, p99) = percentiles(&s.samples);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                s.count,
                s.errors,
                ms(p50),
                ms(p99),
                ms(s.total_us)
            );
        }
        h.push_str("</table>");
        for (name, s) in &d.servers {
            let _ = write!(h, "<h3>{}</h3>", esc(name));
            h.push_str(&plots(name, &s.samples, s.count, start)?);
        }
        h.push_str(&tables(&d, start));
        let mut top: Vec<_> = d.fingerprints.iter().collect();
        top.sort_by_key(|(_, s)| std::cmp::Reverse(s.total_us));
        let _ = write!(
            h,
            "<h2 id=\"fingerprints\">Top fingerprints by total time</h2><table id=\"fingerprints-table\"><tr><th>server</th><th>fingerprint</th><th>count</th><th>errors</th><th>p50</th><th>p99</th><th>total</th></tr>"
        );
        for ((server, fp), s) in top.iter().take(TOP_FINGERPRINTS * 3) {
            let (p50, p99) = percentiles(&s.samples);
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(server),
                esc(fp),
                s.count,
                s.errors,
                ms(p50),
                ms(p99),
                ms(s.total_us)
            );
        }
        h.push_str("</table>");
        for ((server, fp), s) in top.iter().take(TOP_FINGERPRINTS) {
            let short: String = fp.chars().take(60).collect();
            let _ = write!(
                h,
                "<h3><code>{}</code> <span class=\"sub\">on {}</span></h3><div>",
                esc(fp),
                esc(server)
            );
            h.push_str("</div>");
            h.push_str(&plots(&short, &s.samples, s.count, start)?);
        }
        let _ = write!(
            h,
            "<h2 id=\"logins\">Logins</h2><p>{}{}</p><table id=\"logins-table\"><tr><th>time</th><th>client</th><th>server</th><th>user</th><th>database</th><th>outcome</th><th>error</th><th>auth</th><th>TLS</th></tr>",
            plural(d.logins_total, "attempt", "attempts"),
            if d.logins_total as usize > d.logins.len() {
                format!(", the first {} below", d.logins.len())
            } else {
                String::new()
            }
        );
        for l in &d.logins {
            let (cls, o) = match l.outcome {
                Outcome::Success => ("ok", "success"),
                Outcome::Failure => ("fail", "failure"),
                Outcome::Abandoned => ("", "abandoned"),
            };
            let _ = write!(
                h,
                "<tr class=\"{cls}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{o}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.ts),
                esc(&l.client),
                esc(&l.server),
                esc(&l.user),
                esc(&l.database),
                esc(&l.error),
                esc(&l.auth),
                if l.tls { "yes" } else { "no" }
            );
        }
        h.push_str("</table>");
        let _ = write!(
            h,
            "<h2 id=\"tls\">TLS</h2><p>{}</p><table id=\"tls-table\"><tr><th>server</th><th>version</th><th>suite</th><th>JA4</th><th>certificate</th><th>read</th><th>sessions</th></tr>",
            plural(d.tls_total, "session", "sessions")
        );
        for ((server, version, suite, ja4, cert, outcome), n) in &d.tls {
            let cls = if outcome == "decrypted" { "ok" } else { "" };
            let _ = write!(
                h,
                "<tr class=\"{cls}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{n}</td></tr>",
                esc(server),
                esc(version),
                esc(suite),
                esc(ja4),
                esc(cert),
                esc(outcome)
            );
        }
        h.push_str("</table>");
        let _ = write!(
            h,
            "<h2 id=\"findings\">Findings</h2><p>{}</p>",
            match (&d.detect, d.findings.len()) {
                (None, 0) => "None (findings need --detect or one of its switches).".to_string(),
                (Some(_), 0) => "No findings.".to_string(),
                (_, n) => format!("{}.", plural(n as u64, "finding", "findings")),
            }
        );
        if let Some(st) = &d.detect {
            // Anomaly findings wait for each instance's learning: say where it stands.
            let _ = write!(
                h,
                "<table id=\"learning\"><tr><th>instance</th><th>learning</th><th>until</th><th>users</th><th>client networks</th><th>statement classes</th></tr>"
            );
            for i in &st.instances {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&i.instance),
                    if i.learning {
                        "learning: anomaly findings held back"
                    } else {
                        "done"
                    },
                    esc(&i.learning_until.to_string()),
                    i.users,
                    i.networks,
                    i.statement_classes
                );
            }
            h.push_str("</table>");
        }
        for (_, f) in &d.findings {
            let s = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let _ = write!(
                h,
                "<div class=\"finding\"><h3><span class=\"sev {sev}\">{sev}</span> {title}{ended}</h3><p><code>{ty}</code> · {created} – {updated}</p><p>{desc}</p><details open><summary>evidence</summary><pre>{ev}</pre></details></div>",
                sev = esc(&s("severity_label")),
                ended = if f["service"]["archived"] == true {
                    " (ended, archived)"
                } else {
                    ""
                },
                title = esc(&s("title")),
                ty = esc(&s("type")),
                created = esc(&s("created_at")),
                updated = esc(&s("updated_at")),
                desc = esc(&s("description")),
                ev = esc(
                    &serde_json::to_string_pretty(f.get("evidence").unwrap_or(f))
                        .unwrap_or_default()
                ),
            );
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }
}

impl Sink for Report {
    fn emit(&mut self, r: &Record) -> Result<()> {
        let mut guard = self.data.lock().unwrap_or_else(|p| p.into_inner());
        // Through the guard once: its fields then borrow apart.
        let d = &mut *guard;
        match r {
            Record::Query(q) => {
                let err = q.error_code.is_some();
                d.saw(q.ts.ns());
                d.queries += 1;
                let user = q.user.clone().unwrap_or_else(|| "-".into());
                for who in [
                    entry(&mut d.users, &user),
                    entry(&mut d.clients, &q.endpoint.client_ip.to_string()),
                ] {
                    who.queries += 1;
                    who.errors += u64::from(err);
                    who.total_us += q.latency_us;
                }
                if let Some(code) = &q.error_code {
                    let e = entry(&mut d.errors, code);
                    e.count += 1;
                    if e.example.is_empty() {
                        e.name = q.error_name.unwrap_or_default().to_string();
                        e.example = q.fingerprint.clone();
                        e.message = q.error_message.clone().unwrap_or_default();
                    }
                }
                if d.slowest.len() < TOP_ROWS
                    || d.slowest.last().is_some_and(|l| l.us < q.latency_us)
                {
                    d.slowest.push(SlowQuery {
                        ts_ns: q.ts.ns(),
                        us: q.latency_us,
                        server: q.endpoint.server.clone(),
                        user,
                        fingerprint: q.fingerprint.clone(),
                        error: q.error_code.clone().unwrap_or_default(),
                    });
                    d.slowest.sort_by_key(|x| std::cmp::Reverse(x.us));
                    d.slowest.truncate(TOP_ROWS);
                }
                d.servers.entry(q.endpoint.server.clone()).or_default().add(
                    q.ts.ns(),
                    q.latency_us,
                    err,
                );
                d.fingerprints
                    .entry((q.endpoint.server.clone(), q.fingerprint.clone()))
                    .or_default()
                    .add(q.ts.ns(), q.latency_us, err);
            }
            Record::Login(l) => {
                d.saw(l.ts.ns());
                d.logins_total += 1;
                let failed = u64::from(l.outcome == Outcome::Failure);
                let user = l.user.clone().unwrap_or_else(|| "-".into());
                for who in [
                    entry(&mut d.users, &user),
                    entry(&mut d.clients, &l.endpoint.client_ip.to_string()),
                ] {
                    who.logins += 1;
                    who.failed_logins += failed;
                }
                if d.logins.len() < MAX_LOGINS {
                    d.logins.push(LoginRow {
                        ts: l.ts.rfc3339(),
                        client: l.endpoint.client.clone(),
                        server: l.endpoint.server.clone(),
                        user: l.user.clone().unwrap_or_default(),
                        database: l.database.clone().unwrap_or_default(),
                        outcome: l.outcome,
                        error: l.error_code.clone().unwrap_or_default(),
                        auth: l.auth_method.clone().unwrap_or_default(),
                        tls: l.tls,
                    });
                }
            }
            Record::Tls(t) => {
                d.tls_total += 1;
                let i = &t.info;
                let outcome = match (i.decrypted, i.undecryptable) {
                    (true, _) => "decrypted".to_string(),
                    (false, Some(why)) => why.as_str().to_string(),
                    (false, None) => "no records".to_string(),
                };
                let key = (
                    t.endpoint.server.clone(),
                    i.version.clone().unwrap_or_default(),
                    i.suite.clone().unwrap_or_default(),
                    i.ja4.clone().unwrap_or_default(),
                    i.certificate
                        .as_ref()
                        .map(|c| format!("{} (until {})", c.subject, c.not_after))
                        .unwrap_or_default(),
                    outcome,
                );
                if d.tls.len() < MAX_TLS_ROWS || d.tls.contains_key(&key) {
                    *d.tls.entry(key).or_default() += 1;
                }
            }
            Record::Flow(f) => {
                d.saw(f.first_seen.ns());
                d.saw(f.last_seen.ns());
            }
            Record::Summary(sm) => {
                if sm.detect.is_some() {
                    d.detect.clone_from(&sm.detect);
                }
                d.summary = Some(sm.clone());
            }
            Record::Finding(f) => {
                let v = serde_json::to_value(f)?;
                match d.findings.iter_mut().find(|(id, _)| *id == f.id) {
                    Some(x) => x.1 = v,
                    None => d.findings.push((f.id.clone(), v)),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
h1{margin-bottom:0}.sub{color:#777;font-weight:normal}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}th{background:#f4f4f4}\
tr.fail td{background:#fdecea}.plots{display:flex;flex-wrap:wrap;gap:1em}\
.finding{border-left:4px solid #c0392b;padding:.2em 1em;margin:1em 0;background:#fafafa}\
.sev{padding:0 .4em;border-radius:3px;color:#fff;background:#888}.sev.High{background:#c0392b}\
.sev.Medium{background:#e67e22}.sev.Low{background:#2980b9}pre{white-space:pre-wrap;font-size:.85em}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn percentiles(samples: &[(u64, u64)]) -> (u64, u64) {
    let mut v: Vec<u64> = samples.iter().map(|x| x.1).collect();
    v.sort_unstable();
    (quantile(&v, 0.5), quantile(&v, 0.99))
}

/// Seconds from the capture's start, as the report writes them.
fn since(ns: u64, start: u64) -> String {
    format!("+{:.3} s", ns.saturating_sub(start) as f64 / 1e9)
}

/// What the capture was: its time range, packets, flows, sessions, and the decoders' health.
fn header(d: &Data) -> String {
    let mut h = String::from("<table id=\"capture\">");
    let row = |h: &mut String, k: &str, v: String| {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    };
    if let Some(first) = d.first_ns {
        let at = |ns: u64| crate::model::Timestamp(ns).rfc3339();
        row(
            &mut h,
            "time",
            format!(
                "{} – {} ({:.3} s)",
                at(first),
                at(d.last_ns),
                d.last_ns.saturating_sub(first) as f64 / 1e9
            ),
        );
    }
    if let Some(s) = &d.summary {
        let k = |n: &str| {
            s.kernel
                .get(n)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        row(
            &mut h,
            "traffic",
            format!(
                "{}, {} of the database ports, {}",
                plural(k("packets"), "packet", "packets"),
                plural(k("db_segments"), "segment", "segments"),
                plural(s.flows_reported, "flow", "flows")
            ),
        );
        row(
            &mut h,
            "sessions",
            format!(
                "{} decoded ({} joined mid-stream), {}, {}",
                s.streams.connections_opened,
                s.streams.mid_stream,
                plural(d.queries, "query", "queries"),
                plural(d.logins_total, "login", "logins")
            ),
        );
        let health: Vec<String> = [
            ("truncated by the mirror", k("truncated")),
            ("events dropped (ring full)", k("events_dropped_ring_full")),
            ("events dropped (queue full)", s.queue_dropped),
            ("segments lost", s.streams.lost_segments),
            ("framing resyncs", s.decoders.resyncs),
            ("gaps", s.decoders.gaps),
            ("malformed messages", s.decoders.malformed),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
        row(
            &mut h,
            "decoders",
            if health.is_empty() {
                "clean: nothing truncated, dropped, lost or malformed".to_string()
            } else {
                health.join(", ")
            },
        );
    }
    h.push_str("</table>");
    h
}

/// A series' histogram and percentiles over time, each only with enough queries to mean
/// something; otherwise a line that says so.
fn plots(title: &str, samples: &[(u64, u64)], count: u64, start: u64) -> Result<String> {
    let mut h = String::new();
    if let (Some(a), Some(b)) = (
        samples.iter().map(|x| x.0).min(),
        samples.iter().map(|x| x.0).max(),
    ) {
        let _ = write!(
            h,
            "<p class=\"sub\">{}, from {} to {} after the capture's start</p>",
            plural(count, "query", "queries"),
            since(a, start),
            since(b, start)
        );
    }
    h.push_str("<div class=\"plots\">");
    if samples.len() >= MIN_HISTOGRAM {
        h.push_str(&histogram_svg(title, samples)?);
    }
    if samples.len() >= MIN_OVER_TIME {
        h.push_str(&over_time_svg(title, samples, start)?);
    }
    h.push_str("</div>");
    if samples.len() < MIN_OVER_TIME {
        let _ = write!(
            h,
            "<p class=\"sub\">Too few queries to plot {} (a histogram needs {MIN_HISTOGRAM}, percentiles over time {MIN_OVER_TIME}).</p>",
            if samples.len() < MIN_HISTOGRAM {
                "them"
            } else {
                "percentiles over time"
            }
        );
    }
    Ok(h)
}

/// The slowest queries, the top errors, and who did what (users, client addresses).
fn tables(d: &Data, start: u64) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<h2 id=\"slowest\">Slowest queries</h2><table id=\"slowest-table\"><tr><th>time</th><th>from start</th><th>server</th><th>user</th><th>latency</th><th>error</th><th>fingerprint</th></tr>"
    );
    for q in &d.slowest {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            crate::model::Timestamp(q.ts_ns).rfc3339(),
            since(q.ts_ns, start),
            esc(&q.server),
            esc(&q.user),
            ms(q.us),
            esc(&q.error),
            esc(&q.fingerprint)
        );
    }
    h.push_str("</table>");
    let mut errors: Vec<_> = d.errors.iter().collect();
    errors.sort_by_key(|(_, e)| std::cmp::Reverse(e.count));
    let _ = write!(
        h,
        "<h2 id=\"errors\">Top errors</h2><p>{}</p><table id=\"errors-table\"><tr><th>code</th><th>name</th><th>queries</th><th>message (redacted unless --no-redact)</th><th>example</th></tr>",
        plural(
            d.errors.values().map(|e| e.count).sum(),
            "query answered with an error",
            "queries answered with an error"
        )
    );
    for (code, e) in errors.iter().take(TOP_ROWS) {
        let _ = write!(
            h,
            "<tr class=\"fail\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(code),
            esc(&e.name),
            e.count,
            esc(&e.message),
            esc(&e.example)
        );
    }
    h.push_str("</table>");
    for (id, title, key, many, map) in [
        ("users", "Users", "user", "users", &d.users),
        (
            "clients",
            "Clients",
            "client address",
            "client addresses",
            &d.clients,
        ),
    ] {
        let mut rows: Vec<_> = map.iter().collect();
        rows.sort_by_key(|(_, w)| std::cmp::Reverse((w.total_us, w.queries, w.logins)));
        let _ = write!(
            h,
            "<h2 id=\"{id}\">{title}</h2><p>{}</p><table id=\"{id}-table\"><tr><th>{key}</th><th>queries</th><th>errors</th><th>total time</th><th>logins</th><th>failed logins</th></tr>",
            if map.len() > TOP_ROWS {
                format!("The {TOP_ROWS} with the most query time, of {}.", map.len())
            } else {
                format!("{}.", plural(map.len() as u64, key, many))
            }
        );
        for (k, w) in rows.iter().take(TOP_ROWS) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(k),
                w.queries,
                w.errors,
                ms(w.total_us),
                w.logins,
                w.failed_logins
            );
        }
        h.push_str("</table>");
    }
    h
}

const W: u32 = 560;
const H: u32 = 300;

fn plot_err<E: std::error::Error + Send + Sync>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

/// Latency histogram on log-spaced buckets (4 a decade), in ms.
fn histogram_svg(title: &str, samples: &[(u64, u64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let bucket = |us: u64| ((us.max(1) as f64).log10() * 4.0).floor() as i32;
        let mut counts: BTreeMap<i32, u32> = BTreeMap::new();
        for &(_, us) in samples {
            *counts.entry(bucket(us)).or_default() += 1;
        }
        let lo = counts.keys().next().copied().unwrap_or(0);
        let hi = counts.keys().last().copied().unwrap_or(1) + 1;
        let ymax = counts.values().copied().max().unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}: latency histogram"), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d((lo..hi).into_segmented(), 0u32..ymax + ymax / 10 + 1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("queries")
            .x_label_formatter(&|v| match v {
                SegmentValue::Exact(b) | SegmentValue::CenterOf(b) => {
                    let ms = 10f64.powf(*b as f64 / 4.0) / 1000.0;
                    if ms < 1.0 {
                        format!("{ms:.2}")
                    } else {
                        format!("{ms:.0}")
                    }
                }
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(RGBColor(52, 152, 219).filled())
                    .margin(1)
                    .data(counts.iter().map(|(b, c)| (*b, *c))),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// p50/p90/p99 per time slice (up to 60 slices over the series' span): x in seconds from the
/// capture's start (`start_ns`), y in ms. A slice without queries breaks the lines: each
/// returned segment is a run of slices that had some.
fn over_time_points(samples: &[(u64, u64)], start_ns: u64) -> Vec<[Vec<(f64, f64)>; 3]> {
    let Some(first) = samples.iter().map(|x| x.0).min() else {
        return Vec::new();
    };
    let last = samples.iter().map(|x| x.0).max().unwrap_or(first);
    let span = (last - first).max(1);
    let slices = 60u64.min(samples.len() as u64 / 3).max(1);
    let mut by: Vec<Vec<u64>> = vec![Vec::new(); slices as usize];
    for &(t, us) in samples {
        let i = (((t - first) as u128 * slices as u128) / (span as u128 + 1)) as usize;
        by[i.min(slices as usize - 1)].push(us);
    }
    let mut segments: Vec<[Vec<(f64, f64)>; 3]> = Vec::new();
    let mut open = false;
    for (i, v) in by.iter_mut().enumerate() {
        if v.is_empty() {
            open = false;
            continue;
        }
        if !open {
            segments.push(Default::default());
            open = true;
        }
        v.sort_unstable();
        let x = first.saturating_sub(start_ns) as f64 / 1e9
            + (i as f64 + 0.5) * span as f64 / slices as f64 / 1e9;
        let seg = segments.last_mut().expect("pushed");
        for (k, q) in [0.5, 0.9, 0.99].into_iter().enumerate() {
            seg[k].push((x, quantile(v, q) as f64 / 1000.0));
        }
    }
    segments
}

fn over_time_svg(title: &str, samples: &[(u64, u64)], start_ns: u64) -> Result<String> {
    let mut svg = String::new();
    {
        let segments = over_time_points(samples, start_ns);
        let xs = || segments.iter().flat_map(|s| s[0].iter().map(|p| p.0));
        let xmax = xs().fold(0.0f64, f64::max).max(0.001) * 1.05;
        let xmin = xs().fold(f64::INFINITY, f64::min).min(xmax) * 0.95;
        let ymax = segments
            .iter()
            .flat_map(|s| s[2].iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(0.001)
            * 1.1;
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}: percentiles over time"),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(xmin..xmax, 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the capture's start")
            .y_desc("latency (ms)")
            .draw()
            .map_err(plot_err)?;
        for (k, (label, color)) in [
            ("p50", RGBColor(39, 174, 96)),
            ("p90", RGBColor(243, 156, 18)),
            ("p99", RGBColor(192, 57, 43)),
        ]
        .into_iter()
        .enumerate()
        {
            for (n, seg) in segments.iter().enumerate() {
                let drawn = chart
                    .draw_series(
                        LineSeries::new(seg[k].iter().copied(), color.stroke_width(2))
                            .point_size(2),
                    )
                    .map_err(plot_err)?;
                if n == 0 {
                    drawn
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, FlowEnd, FlowRecord, Protocol, QueryRecord, Timestamp};

    const T0: u64 = 1_700_000_000_000_000_000;
    const S: u64 = 1_000_000_000;

    fn query(at_ns: u64, us: u64) -> Record {
        Record::Query(QueryRecord {
            ts: Timestamp(at_ns),
            endpoint: Endpoint::from_text(
                "10.0.0.9:40000",
                "10.0.0.1:5432",
                None,
                Protocol::Postgres,
            ),
            user: Some("app".into()),
            database: Some("db".into()),
            verb: "SELECT".into(),
            fingerprint: "select ?".into(),
            query: None,
            rows: Some(1),
            error_code: None,
            error_name: None,
            error_message: None,
            bytes_request: 10,
            bytes_response: 10,
            latency_first_byte_us: Some(us),
            latency_us: us,
            prepared: false,
            tag: None,
        })
    }

    fn flow(first: u64, last: u64) -> Record {
        Record::Flow(FlowRecord {
            ts: Timestamp(first),
            endpoint: Endpoint::from_text(
                "10.0.0.9:40000",
                "10.0.0.1:5432",
                None,
                Protocol::Postgres,
            ),
            first_seen: Timestamp(first),
            last_seen: Timestamp(last),
            duration_us: (last - first) / 1000,
            packets_to_server: 1,
            packets_to_client: 1,
            bytes_to_server: 1,
            bytes_to_client: 1,
            payload_bytes_to_server: 0,
            payload_bytes_to_client: 0,
            syn: 1,
            syn_ack: 1,
            fin_to_server: 0,
            fin_to_client: 0,
            rst: 0,
            truncated: 0,
            end: FlowEnd::EndOfCapture,
            purpose: Default::default(),
        })
    }

    /// The numbers plotters wrote as tick labels.
    fn ticks(svg: &str) -> Vec<f64> {
        svg.split("<text")
            .filter_map(|t| t.split('>').nth(1)?.split('<').next()?.trim().parse().ok())
            .collect()
    }

    /// Issue 16: a query 168.8 s into a capture was plotted at 0.27 s: the axis counted from
    /// the first query, not from the capture's start.
    #[test]
    fn issue_16_the_time_axis_counts_from_the_captures_start() {
        let mut r = Report::new("/dev/null".into(), "t".into());
        r.emit(&flow(T0, T0 + 170 * S)).unwrap();
        let mut samples = Vec::new();
        for i in 0..40 {
            let at = T0 + 168_800_000_000 + i * 25_000_000;
            r.emit(&query(at, 500)).unwrap();
            samples.push((at, 500));
        }
        let html = r.render().unwrap();
        assert!(
            html.contains("from +168.800 s to +169.775 s after the capture"),
            "{html}"
        );
        for seg in over_time_points(&samples, T0) {
            for p in &seg[0] {
                assert!((168.8..=169.8).contains(&p.0), "plotted at {}", p.0);
            }
        }
        let svg = over_time_svg("t", &samples, T0).unwrap();
        let xs: Vec<f64> = ticks(&svg).into_iter().filter(|v| *v > 100.0).collect();
        assert!(!xs.is_empty(), "no x tick near 168 s: {:?}", ticks(&svg));
    }

    #[test]
    fn lines_break_where_no_query_came() {
        let samples: Vec<(u64, u64)> = (0..30)
            .map(|i| (T0 + i * S / 10, 100))
            .chain((0..30).map(|i| (T0 + 100 * S + i * S / 10, 200)))
            .collect();
        let segs = over_time_points(&samples, T0);
        assert_eq!(segs.len(), 2, "two bursts, two segments");
        assert!(segs[0][0].iter().all(|p| p.0 < 5.0));
        assert!(segs[1][0].iter().all(|p| p.0 > 99.0));
    }

    #[test]
    fn few_queries_are_not_plotted_and_counts_agree_in_number() {
        let mut r = Report::new("/dev/null".into(), "t".into());
        r.emit(&query(T0, 1000)).unwrap();
        let html = r.render().unwrap();
        assert!(!html.contains("<svg"), "one query plotted");
        assert!(html.contains("Too few queries to plot them"));
        assert!(html.contains("1 query,"), "singular");
        assert!(html.contains("0 attempts") && html.contains("0 sessions"));
        assert!(html.contains("id=\"slowest-table\"") && html.contains("id=\"users-table\""));
        assert!(html.contains("1 user.") && html.contains("1 client address."));
    }
}
