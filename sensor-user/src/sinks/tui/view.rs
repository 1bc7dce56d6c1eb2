//! Draws a [`State`]: a pure function of the state and the view settings, so that tests render
//! it on ratatui's `TestBackend`.

use super::state::{Fingerprint, State};
use ratatui::{
    Frame,
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table},
};

/// How fingerprints are ordered (`s` cycles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    TotalTime,
    P99,
    Count,
}

impl SortBy {
    pub fn next(self) -> Self {
        match self {
            SortBy::TotalTime => SortBy::P99,
            SortBy::P99 => SortBy::Count,
            SortBy::Count => SortBy::TotalTime,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortBy::TotalTime => "total time",
            SortBy::P99 => "p99",
            SortBy::Count => "count",
        }
    }
}

/// What the keys change.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub sort: SortBy,
    /// Servers and fingerprints containing this text (case-insensitive); empty: all.
    pub filter: String,
    /// `/` was pressed: keys go to the filter until Enter or Esc.
    pub editing: bool,
}

impl View {
    fn matches(&self, s: &str) -> bool {
        self.filter.is_empty() || s.to_lowercase().contains(&self.filter.to_lowercase())
    }
}

pub fn duration(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..10_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn block(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

const HEAD: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

pub fn render(f: &mut Frame, state: &State, view: &View) {
    let area = f.area();
    let compact = area.height < 30;
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            // As many rows as servers, up to a share of the screen.
            Constraint::Length(
                (state.servers.len() as u16 + 3)
                    .max(4)
                    .min(area.height * if compact { 2 } else { 1 } / 3),
            ),
            Constraint::Min(6),
            Constraint::Length(if compact { 6 } else { 9 }),
            Constraint::Length(1),
        ])
        .split(area);
    header(f, rows[0], state);
    servers(f, rows[1], state, view, !compact);
    let wide = area.width >= 120;
    let mid = Layout::default()
        .direction(Direction::Horizontal)
        .constraints(if wide {
            vec![Constraint::Percentage(72), Constraint::Percentage(28)]
        } else {
            vec![Constraint::Percentage(100), Constraint::Length(0)]
        })
        .split(rows[2]);
    fingerprints(f, mid[0], state, view);
    if wide {
        logins(f, mid[1], state, view);
    }
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(62), Constraint::Percentage(38)])
        .split(rows[3]);
    findings(f, bottom[0], state);
    health(f, bottom[1], state);
    footer(f, rows[4], view);
}

fn header(f: &mut Frame, area: Rect, s: &State) {
    let q: u64 = s.servers.values().map(|v| v.queries).sum();
    let line = Line::from(vec![
        Span::styled(
            " rds-sensor ",
            Style::default().fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(format!(
            "  up {}s  servers {}  queries {}  logins {}  findings {}",
            s.now_s,
            s.servers.len(),
            count(q),
            count(s.logins.values().map(|l| l.success + l.failure).sum()),
            s.findings.len(),
        )),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn servers(f: &mut Frame, area: Rect, s: &State, view: &View, sparklines: bool) {
    let b = block(" Servers: queries/s, errors/s, latency (last 10 s) ");
    let inner = b.inner(area);
    f.render_widget(b, area);
    let list: Vec<_> = s.servers.iter().filter(|(k, _)| view.matches(k)).collect();
    if list.is_empty() {
        f.render_widget(Paragraph::new(" waiting for queries…"), inner);
        return;
    }
    let spark_w = if sparklines && inner.width > 100 {
        inner.width.saturating_sub(100).min(60)
    } else {
        0
    };
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(98), Constraint::Min(spark_w)])
        .split(inner);
    let rows = list.iter().map(|(name, v)| {
        let (qps, eps) = v.rates();
        let (p50, p99) = v.percentiles().map_or(("-".into(), "-".into()), |(a, b)| {
            (duration(a), duration(b))
        });
        let err_style = if eps > 0.0 {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(name.to_string()),
            Cell::from(v.protocol),
            Cell::from(format!("{qps:.1}")),
            Cell::from(format!("{eps:.1}")).style(err_style),
            Cell::from(p50),
            Cell::from(p99),
            Cell::from(count(v.queries)),
            // TLS sessions decrypted / seen.
            Cell::from(
                s.tls
                    .get(*name)
                    .map_or_else(|| "-".to_string(), |(n, d)| format!("{d}/{n}")),
            ),
        ])
    });
    let t = Table::new(
        rows,
        [
            Constraint::Length(28),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new([
            "server", "protocol", "q/s", "err/s", "p50", "p99", "queries", "tls read",
        ])
        .style(HEAD),
    );
    f.render_widget(t, cols[0]);
    if spark_w > 0 {
        // One sparkline per server, aligned with its row (after the header).
        for (i, (_, v)) in list.iter().enumerate() {
            let y = cols[1].y + 1 + i as u16;
            if y >= cols[1].bottom() {
                break;
            }
            let data = v.queries_history();
            let n = data.len().min(spark_w as usize);
            let sl = Sparkline::default()
                .data(&data[data.len() - n..])
                .style(Style::default().fg(Color::Green));
            f.render_widget(sl, Rect::new(cols[1].x, y, spark_w, 1));
        }
    }
}

fn sorted<'a>(s: &'a State, view: &View) -> Vec<&'a Fingerprint> {
    let mut v: Vec<&Fingerprint> = s
        .fingerprints
        .values()
        .filter(|f| view.matches(&f.fingerprint) || view.matches(&f.server))
        .collect();
    match view.sort {
        SortBy::TotalTime => v.sort_by_key(|f| std::cmp::Reverse(f.figures.total_us)),
        SortBy::P99 => v.sort_by_key(|f| std::cmp::Reverse(f.p99())),
        SortBy::Count => v.sort_by_key(|f| std::cmp::Reverse(f.figures.queries)),
    }
    v
}

fn fingerprints(f: &mut Frame, area: Rect, s: &State, view: &View) {
    let title = format!(" Top fingerprints by {} ", view.sort.label());
    let rows = sorted(s, view)
        .into_iter()
        .take(area.height.saturating_sub(3) as usize)
        .map(|fp| {
            Row::new(vec![
                Cell::from(duration(fp.figures.total_us)),
                Cell::from(duration(fp.p99())),
                Cell::from(count(fp.figures.queries)),
                Cell::from(count(fp.figures.errors)),
                Cell::from(fp.server.clone()),
                Cell::from(fp.fingerprint.clone()),
            ])
        });
    let t = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(22),
            Constraint::Min(20),
        ],
    )
    .header(Row::new(["total", "p99", "count", "errs", "server", "fingerprint"]).style(HEAD))
    .block(block(&title));
    f.render_widget(t, area);
}

fn logins(f: &mut Frame, area: Rect, s: &State, view: &View) {
    let mut v: Vec<_> = s.logins.iter().filter(|(u, _)| view.matches(u)).collect();
    v.sort_by_key(|(_, l)| std::cmp::Reverse(l.failure * 1000 + l.success));
    let rows = v.into_iter().map(|(u, l)| {
        let fail = if l.failure > 0 {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(u.clone()),
            Cell::from(count(l.success)),
            Cell::from(count(l.failure)).style(fail),
        ])
    });
    let t = Table::new(
        rows,
        [
            Constraint::Min(10),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(["user", "ok", "failed"]).style(HEAD))
    .block(block(" Logins "));
    f.render_widget(t, area);
}

fn findings(f: &mut Frame, area: Rect, s: &State) {
    let mut lines: Vec<Line> = if s.findings.is_empty() {
        vec![Line::from(" no findings")]
    } else {
        s.findings
            .iter()
            .map(|x| {
                let color = match x.severity {
                    "High" | "Critical" => Color::Red,
                    "Medium" => Color::Yellow,
                    _ => Color::Gray,
                };
                Line::from(vec![
                    Span::raw(format!("{} ", x.at)),
                    Span::styled(format!("{:<6} ", x.severity), Style::default().fg(color)),
                    Span::raw(x.title.clone()),
                    Span::styled(
                        format!("  {}", x.kind),
                        Style::default().fg(Color::DarkGray),
                    ),
                ])
            })
            .collect()
    };
    // Anomaly findings wait for learning: a quiet panel is not a clean bill.
    if let Some(l) = &s.learning {
        for (inst, until) in l {
            lines.push(Line::from(Span::styled(
                format!(" {inst}: learning until {until}, anomaly findings held back"),
                Style::default().fg(Color::DarkGray),
            )));
        }
    }
    f.render_widget(Paragraph::new(lines).block(block(" Findings ")), area);
}

fn health(f: &mut Frame, area: Rect, s: &State) {
    let h = &s.health;
    let drops = h.ring_drops + h.queue_drops + h.iface_drops;
    let drop_style = if drops > 0 {
        Style::default().fg(Color::Red)
    } else {
        Style::default().fg(Color::Green)
    };
    let mut lines = vec![
        Line::from(format!(
            " packets {}  db segments {}",
            count(h.packets),
            count(h.db_segments)
        )),
        Line::from(format!(
            " events {} ({:.0}/s)  bad {}",
            count(h.events),
            h.events_per_s,
            h.bad_records
        )),
        Line::from(vec![
            Span::raw(" drops: "),
            Span::styled(
                format!(
                    "ring full {}  queue {}  nic {}",
                    h.ring_drops, h.queue_drops, h.iface_drops
                ),
                drop_style,
            ),
        ]),
        Line::from(format!(
            " truncated {}  flows {}  conns {}",
            h.truncated, h.flows_active, h.connections_active
        )),
    ];
    for l in s.log.iter().take(2) {
        lines.push(Line::styled(
            format!(" {l}"),
            Style::default().fg(Color::DarkGray),
        ));
    }
    f.render_widget(Paragraph::new(lines).block(block(" Sensor health ")), area);
}

fn footer(f: &mut Frame, area: Rect, view: &View) {
    let filter = if view.editing {
        format!("filter: {}▏ (Enter: keep, Esc: clear)", view.filter)
    } else if view.filter.is_empty() {
        "/ filter".to_string()
    } else {
        format!("/ filter [{}]  Esc clear", view.filter)
    };
    f.render_widget(
        Paragraph::new(format!(
            " q quit   s sort ({})   {filter}",
            view.sort.label()
        ))
        .style(Style::default().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}
