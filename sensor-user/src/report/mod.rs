//! `rds-sensor analyze FILE --report out.html`: one self-contained page (inline SVG and CSS, no
//! script, nothing fetched) with, per server and per top fingerprint, a latency histogram and
//! p50/p90/p99 over time; the logins; the findings with their evidence.
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
        let start = d
            .servers
            .values()
            .flat_map(|s| s.samples.first().map(|x| x.0))
            .min()
            .unwrap_or(0);
        for (name, s) in &d.servers {
            let _ = write!(h, "<h3>{}</h3><div class=\"plots\">", esc(name));
            h.push_str(&histogram_svg(name, &s.samples)?);
            h.push_str(&over_time_svg(name, &s.samples, start)?);
            h.push_str("</div>");
        }
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
                "<h3><code>{}</code> <span class=\"sub\">on {}</span></h3><div class=\"plots\">",
                esc(fp),
                esc(server)
            );
            h.push_str(&histogram_svg(&short, &s.samples)?);
            h.push_str(&over_time_svg(&short, &s.samples, start)?);
            h.push_str("</div>");
        }
        let _ = write!(
            h,
            "<h2 id=\"logins\">Logins</h2><p>{} attempts{}</p><table id=\"logins-table\"><tr><th>time</th><th>client</th><th>server</th><th>user</th><th>database</th><th>outcome</th><th>error</th><th>auth</th><th>TLS</th></tr>",
            d.logins_total,
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
            "<h2 id=\"tls\">TLS</h2><p>{} sessions</p><table id=\"tls-table\"><tr><th>server</th><th>version</th><th>suite</th><th>JA4</th><th>certificate</th><th>read</th><th>sessions</th></tr>",
            d.tls_total
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
                (_, n) => format!("{n} findings."),
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
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Record::Query(q) => {
                let err = q.error_code.is_some();
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
                d.logins_total += 1;
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
            Record::Summary(sm) if sm.detect.is_some() => d.detect.clone_from(&sm.detect),
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

/// p50/p90/p99 per time slice (up to 60 slices over the series' span), in ms.
fn over_time_svg(title: &str, samples: &[(u64, u64)], start_ns: u64) -> Result<String> {
    let mut svg = String::new();
    {
        let first = samples.iter().map(|x| x.0).min().unwrap_or(start_ns);
        let last = samples.iter().map(|x| x.0).max().unwrap_or(first);
        let span = (last - first).max(1);
        let slices = 60u64.min(samples.len() as u64 / 3).max(1);
        let mut by: Vec<Vec<u64>> = vec![Vec::new(); slices as usize];
        for &(t, us) in samples {
            let i = (((t - first) as u128 * slices as u128) / (span as u128 + 1)) as usize;
            by[i.min(slices as usize - 1)].push(us);
        }
        let mut lines: [Vec<(f64, f64)>; 3] = Default::default();
        for (i, v) in by.iter_mut().enumerate() {
            if v.is_empty() {
                continue;
            }
            v.sort_unstable();
            let x = (first - start_ns.min(first)) as f64 / 1e9
                + (i as f64 + 0.5) * span as f64 / slices as f64 / 1e9;
            for (k, q) in [0.5, 0.9, 0.99].into_iter().enumerate() {
                lines[k].push((x, quantile(v, q) as f64 / 1000.0));
            }
        }
        let xmax = lines[0].last().map_or(1.0, |p| p.0).max(0.001) * 1.05;
        let xmin = lines[0].first().map_or(0.0, |p| p.0).min(xmax) * 0.95;
        let ymax = lines[2]
            .iter()
            .map(|p| p.1)
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
            .x_desc("seconds from capture start")
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
            chart
                .draw_series(
                    LineSeries::new(lines[k].iter().copied(), color.stroke_width(2)).point_size(2),
                )
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
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
