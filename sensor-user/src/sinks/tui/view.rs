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

fn block_owned(title: String) -> Block<'static> {
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

/// The longest of some addresses, as a column width (at most an IPv6 socket address's).
fn address_width<'a>(names: impl Iterator<Item = &'a str>, min: u16) -> u16 {
    names
        .map(|n| n.chars().count() as u16)
        .max()
        .unwrap_or(0)
        .clamp(min, 47)
}

/// A pane's rows under the filter: the matching ones, or all of them when the filter matches
/// none here (a filter for a fingerprint must not blank the servers), with a note for the title.
fn filtered<T>(all: Vec<T>, view: &View, matches: impl Fn(&T) -> bool) -> (Vec<T>, &'static str) {
    if view.filter.is_empty() {
        return (all, "");
    }
    if all.iter().any(&matches) {
        (all.into_iter().filter(|x| matches(x)).collect(), "")
    } else {
        (all, " (filter: no match here, all shown)")
    }
}

fn servers(f: &mut Frame, area: Rect, s: &State, view: &View, sparklines: bool) {
    let all: Vec<_> = s.servers.iter().collect();
    // A server matches by its name or by one of its fingerprints.
    let (list, note) = filtered(all, view, |(k, _)| {
        view.matches(k)
            || s.fingerprints
                .values()
                .any(|fp| &fp.server == *k && view.matches(&fp.fingerprint))
    });
    let b = block_owned(format!(
        " Servers: queries/s, errors/s, latency (last 10 s){note} "
    ));
    let inner = b.inner(area);
    f.render_widget(b, area);
    if list.is_empty() {
        f.render_widget(Paragraph::new(" waiting for queries…"), inner);
        return;
    }
    // The address is never cut: it takes its width, and the columns that matter less give
    // way on a narrow terminal (protocol, queries, TLS read, then the sparklines).
    let name_w = address_width(list.iter().map(|(k, _)| k.as_str()), 6);
    let core: u16 = name_w + 1 + 8 + 8 + 9 + 9;
    let mut widths = vec![
        Constraint::Length(name_w + 1),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let mut heads = vec!["server", "q/s", "err/s", "p50", "p99"];
    let mut used = core;
    let mut extra = [false; 3];
    for (i, (w, head)) in [(11u16, "protocol"), (8, "queries"), (10, "tls read")]
        .into_iter()
        .enumerate()
    {
        if used + w <= inner.width {
            used += w;
            widths.push(Constraint::Length(w));
            heads.push(head);
            extra[i] = true;
        }
    }
    let spark_w = if sparklines && inner.width > used + 20 {
        (inner.width - used).min(60)
    } else {
        0
    };
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(used), Constraint::Min(spark_w)])
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
        let mut cells = vec![
            Cell::from(name.to_string()),
            Cell::from(format!("{qps:.1}")),
            Cell::from(format!("{eps:.1}")).style(err_style),
            Cell::from(p50),
            Cell::from(p99),
        ];
        if extra[0] {
            cells.push(Cell::from(v.protocol));
        }
        if extra[1] {
            cells.push(Cell::from(count(v.queries)));
        }
        if extra[2] {
            // TLS sessions decrypted / seen.
            cells.push(Cell::from(
                s.tls
                    .get(*name)
                    .map_or_else(|| "-".to_string(), |(n, d)| format!("{d}/{n}")),
            ));
        }
        Row::new(cells)
    });
    // Widths include each column's gap: nothing is shared out or squeezed.
    let t = Table::new(rows, widths)
        .column_spacing(0)
        .header(Row::new(heads).style(HEAD));
    f.render_widget(t, cols[0]);
    if spark_w > 0 {
        // One sparkline per server, aligned with its row, all on one scale (the busiest
        // second of any), which the header names.
        let n = spark_w as usize;
        let tail = |d: &[u64]| d[d.len().saturating_sub(n)..].to_vec();
        let data: Vec<Vec<u64>> = list
            .iter()
            .map(|(_, v)| tail(&v.queries_history()))
            .collect();
        let peak = data.iter().flatten().copied().max().unwrap_or(0).max(1);
        let secs = data.iter().map(Vec::len).max().unwrap_or(0);
        f.render_widget(
            Paragraph::new(format!("queries/s, last {secs} s (top = {peak}/s)")).style(HEAD),
            Rect::new(cols[1].x, cols[1].y, spark_w, 1),
        );
        for (i, d) in data.iter().enumerate() {
            let y = cols[1].y + 1 + i as u16;
            if y >= cols[1].bottom() {
                break;
            }
            let sl = Sparkline::default()
                .data(d)
                .max(peak)
                .style(Style::default().fg(Color::Green));
            f.render_widget(sl, Rect::new(cols[1].x, y, spark_w, 1));
        }
    }
}

fn sorted<'a>(s: &'a State, view: &View) -> (Vec<&'a Fingerprint>, &'static str) {
    let (mut v, note) = filtered(s.fingerprints.values().collect(), view, |f| {
        view.matches(&f.fingerprint) || view.matches(&f.server)
    });
    match view.sort {
        SortBy::TotalTime => v.sort_by_key(|f| std::cmp::Reverse(f.figures.total_us)),
        SortBy::P99 => v.sort_by_key(|f| std::cmp::Reverse(f.p99())),
        SortBy::Count => v.sort_by_key(|f| std::cmp::Reverse(f.figures.queries)),
    }
    (v, note)
}

fn fingerprints(f: &mut Frame, area: Rect, s: &State, view: &View) {
    let (list, note) = sorted(s, view);
    let title = format!(" Top fingerprints by {}{note} ", view.sort.label());
    let list: Vec<_> = list
        .into_iter()
        .take(area.height.saturating_sub(3) as usize)
        .collect();
    let server_w = address_width(list.iter().map(|fp| fp.server.as_str()), 6) + 1;
    // The server column keeps its width: errs, count, then p99 give way on a narrow terminal,
    // and the fingerprint takes what is left.
    let room = area.width.saturating_sub(2);
    let optional: [(u16, &str); 3] = [(9, "p99"), (7, "count"), (6, "errs")];
    let mut keep = 3;
    while keep > 0 && 9 + server_w + 10 + optional[..keep].iter().map(|o| o.0).sum::<u16>() > room {
        keep -= 1;
    }
    let mut widths = vec![Constraint::Length(9)];
    let mut heads = vec!["total"];
    for (w, h) in &optional[..keep] {
        widths.push(Constraint::Length(*w));
        heads.push(h);
    }
    widths.push(Constraint::Length(server_w));
    widths.push(Constraint::Min(10));
    heads.extend(["server", "fingerprint"]);
    let rows = list.into_iter().map(|fp| {
        let all = [
            duration(fp.figures.total_us),
            duration(fp.p99()),
            count(fp.figures.queries),
            count(fp.figures.errors),
        ];
        let mut cells: Vec<Cell> = all[..1 + keep].iter().cloned().map(Cell::from).collect();
        cells.push(Cell::from(fp.server.clone()));
        cells.push(Cell::from(fp.fingerprint.clone()));
        Row::new(cells)
    });
    let t = Table::new(rows, widths)
        .column_spacing(0)
        .header(Row::new(heads).style(HEAD))
        .block(block(&title));
    f.render_widget(t, area);
}

fn logins(f: &mut Frame, area: Rect, s: &State, view: &View) {
    let (mut v, note) = filtered(s.logins.iter().collect(), view, |(u, _)| view.matches(u));
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
    .block(block_owned(format!(" Logins{note} ")));
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
    // Short labels where the pane is narrow (an 80-column terminal gives it 30).
    let narrow = area.width < 44;
    let mut lines = vec![
        Line::from(if narrow {
            format!(" pkts {}  db {}", count(h.packets), count(h.db_segments))
        } else {
            format!(
                " packets {}  db segments {}",
                count(h.packets),
                count(h.db_segments)
            )
        }),
        Line::from(format!(
            " events {} ({:.0}/s)  bad {}",
            count(h.events),
            h.events_per_s,
            h.bad_records
        )),
        Line::from(vec![
            Span::raw(" drops: "),
            Span::styled(
                if narrow {
                    format!(
                        "ring {} q {} nic {}",
                        h.ring_drops, h.queue_drops, h.iface_drops
                    )
                } else {
                    format!(
                        "ring full {}  queue {}  nic {}",
                        h.ring_drops, h.queue_drops, h.iface_drops
                    )
                },
                drop_style,
            ),
        ]),
    ];
    // A growing `truncated` is the mirror cutting database segments: said where it shows.
    if h.truncated > 0 {
        lines.push(Line::styled(
            if narrow {
                format!(" truncated {}: mirror cuts", count(h.truncated))
            } else {
                format!(
                    " truncated {}: the mirror cuts segments (PacketLength, MTU)",
                    count(h.truncated)
                )
            },
            Style::default().fg(Color::Yellow),
        ));
    }
    lines.push(Line::from(format!(
        " flows {}  conns {}{}",
        h.flows_active,
        h.connections_active,
        if h.truncated > 0 {
            ""
        } else if narrow {
            "  trunc 0"
        } else {
            "  truncated 0"
        }
    )));
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
