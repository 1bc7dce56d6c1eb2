use super::state::FindingLine;
use super::*;
use crate::model::{Endpoint, LoginRecord, Outcome, Protocol, QueryRecord, Timestamp};
use ratatui::{Terminal, backend::TestBackend};

fn query(server: &str, fp: &str, us: u64, err: bool) -> Record {
    Record::Query(QueryRecord {
        ts: Timestamp::default(),
        endpoint: Endpoint::from_text("10.0.1.5:40000", server, Some(7), Protocol::Postgres),
        user: Some("app".into()),
        database: Some("orders".into()),
        verb: "SELECT".into(),
        fingerprint: fp.into(),
        query: None,
        rows: Some(1),
        error_code: err.then(|| "42P01".into()),
        error_name: None,
        error_message: None,
        bytes_request: 10,
        bytes_response: 10,
        latency_first_byte_us: None,
        latency_us: us,
        prepared: false,
        tag: None,
    })
}

fn login(user: &str, outcome: Outcome) -> Record {
    Record::Login(LoginRecord {
        ts: Timestamp::default(),
        endpoint: Endpoint::default(),
        user: Some(user.into()),
        database: None,
        application: None,
        outcome,
        error_code: None,
        error_name: None,
        error_message: None,
        tls: false,
        tls_version: None,
        tls_suite: None,
        auth_method: None,
        server_version: None,
        client_host: None,
        client_library: None,
        iam_token: None,
    })
}

fn state() -> State {
    let mut s = State::default();
    for sec in 0..4 {
        s.tick(sec);
        for i in 0..20 {
            s.observe(&query(
                "10.0.3.17:5432",
                "SELECT * FROM orders WHERE id = ?",
                1_000 + i * 10,
                false,
            ));
        }
        s.observe(&query(
            "10.0.3.17:5432",
            "SELECT pg_sleep(?)",
            900_000,
            false,
        ));
        s.observe(&query(
            "10.0.3.20:3306",
            "UPDATE stock SET n = n - ? WHERE sku = ?",
            5_000,
            sec % 2 == 0,
        ));
    }
    s.tick(4);
    s.observe(&login("app", Outcome::Success));
    s.observe(&login("app", Outcome::Success));
    s.observe(&login("mallory", Outcome::Failure));
    s.findings.push_front(FindingLine {
        at: "12:00:01".into(),
        severity: "High",
        kind: "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce",
        title: "Brute force on orders-db".into(),
    });
    s.health.packets = 123_456;
    s.health.events = 4_321;
    s.health.ring_drops = 7;
    s
}

fn screen(s: &State, v: &View, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, s, v)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in\n{screen}"))
}

#[test]
fn renders_every_panel_on_a_large_terminal() {
    let s = state();
    let out = screen(&s, &View::default(), 160, 45);
    for needle in [
        "Servers",
        "Top fingerprints by total time",
        "Logins",
        "Findings",
        "Sensor health",
        "q quit",
    ] {
        assert!(out.contains(needle), "no `{needle}` in\n{out}");
    }
    // Per server: 21 queries/s, p50 ≈ 1.1 ms, p99 = the 900 ms sleep.
    let pg = line_with(&out, "10.0.3.17:5432");
    assert!(
        pg.contains("postgresql") && pg.contains("21.0") && pg.contains("900.0ms"),
        "{pg}"
    );
    let my = line_with(&out, "10.0.3.20:3306");
    assert!(my.contains("0.3") || my.contains("0.7"), "errors/s: {my}");
    // Sparklines: block characters right of the table.
    assert!(pg.chars().any(|c| ('▁'..='█').contains(&c)), "{pg}");
    // Top fingerprint by total time: the sleep (4 × 900 ms) before the 80 fast ones.
    let sleep = out.find("SELECT pg_sleep(?)").unwrap();
    let orders = out.find("SELECT * FROM orders WHERE id = ?").unwrap();
    assert!(sleep < orders);
    let mallory = line_with(&out, "mallory");
    assert!(
        mallory.trim_end().ends_with("1 │") || mallory.contains(" 1"),
        "{mallory}"
    );
    assert!(out.contains("High") && out.contains("Brute force on orders-db"));
    assert!(
        out.contains("packets 123.5k") && out.contains("ring full 7"),
        "{out}"
    );
}

#[test]
fn sort_and_filter_keys() {
    let s = state();
    let mut v = View::default();
    let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(on_key(&mut v, key('s')), Action::None);
    assert_eq!(v.sort, SortBy::P99);
    on_key(&mut v, key('s'));
    assert_eq!(v.sort, SortBy::Count);
    let out = screen(&s, &v, 160, 45);
    assert!(out.contains("Top fingerprints by count"));
    // By count, the fast query (80) comes before the sleep (4).
    assert!(out.find("FROM orders").unwrap() < out.find("pg_sleep").unwrap());
    // `/` then text filters; `q` while typing is text, not quit.
    on_key(&mut v, key('/'));
    for c in "stockq".chars() {
        assert_eq!(on_key(&mut v, key(c)), Action::None);
    }
    on_key(
        &mut v,
        KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE),
    );
    on_key(&mut v, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(v.filter, "stock");
    let out = screen(&s, &v, 160, 45);
    assert!(
        out.contains("UPDATE stock") && !out.contains("pg_sleep"),
        "{out}"
    );
    assert!(out.contains("filter [stock]"));
    on_key(&mut v, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(v.filter.is_empty());
    assert_eq!(on_key(&mut v, key('q')), Action::Quit);
    assert_eq!(
        on_key(
            &mut v,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ),
        Action::Quit
    );
}

#[test]
fn adapts_to_a_small_terminal() {
    let s = state();
    let out = screen(&s, &View::default(), 80, 24);
    // Narrow: no logins column, no sparklines; the rest still there.
    assert!(!out.contains("Logins"));
    assert!(out.contains("10.0.3.17:5432") && out.contains("Findings") && out.contains("q quit"));
    assert!(!out.chars().any(|c| ('▁'..='█').contains(&c)));
    // Tiny terminals do not panic.
    for (w, h) in [(20, 5), (1, 1), (200, 8)] {
        screen(&s, &View::default(), w, h);
    }
}

#[test]
fn the_sink_feeds_the_state_and_logs_go_to_the_panel() {
    let d = Dashboard::new();
    let mut sink = TuiSink(d.state.clone());
    sink.emit(&query("10.0.3.17:5432", "SELECT ?", 10, false))
        .unwrap();
    {
        use std::io::Write;
        let mw = d.log_writer();
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&mw);
        w.write_all(b"2026-11-22T00:05:49.023324Z  INFO attached iface=ens5\n")
            .unwrap();
    }
    let st = lock(&d.state);
    assert_eq!(st.servers["10.0.3.17:5432"].queries, 1);
    assert_eq!(
        st.log.front().map(String::as_str),
        Some("INFO attached iface=ens5")
    );
}

#[test]
fn tls_sessions_show_per_server_with_how_many_were_read() {
    let mut s = state();
    let tls = |server: &str, decrypted: bool| {
        Record::Tls(crate::model::TlsRecord {
            ts: crate::model::Timestamp(0),
            endpoint: crate::model::Endpoint::from_text(
                "0.0.0.0:0",
                server,
                None,
                Default::default(),
            ),
            info: crate::model::TlsInfo {
                decrypted,
                ..Default::default()
            },
        })
    };
    s.observe(&tls("10.0.3.17:5432", true));
    s.observe(&tls("10.0.3.17:5432", false));
    // No query at all: its sessions could not be read; still listed.
    s.observe(&tls("10.0.9.9:5432", false));
    let out = screen(&s, &View::default(), 160, 45);
    assert!(out.contains("tls read"), "{out}");
    assert!(line_with(&out, "10.0.3.17:5432").contains("1/2"));
    assert!(line_with(&out, "10.0.9.9:5432").contains("0/1"));
}

/// Issue 16: at 80×24 addresses were cut (a 28-column server field, a 22-column one in the
/// fingerprints); the columns that matter less give way instead.
#[test]
fn issue_16_no_address_is_cut_at_80_by_24() {
    let mut s = state();
    let v6 = "[2001:db8:100:ffff:ffff:ffff:ffff:10]:5432";
    s.observe(&query(v6, "SELECT ?", 2_000, false));
    let out = screen(&s, &View::default(), 80, 24);
    for addr in ["10.0.3.17:5432", "10.0.3.20:3306", v6] {
        assert!(
            out.lines().filter(|l| l.contains(addr)).count() >= 2,
            "`{addr}` cut in a pane:\n{out}"
        );
    }
    assert!(out.contains("pkts 123.5k"), "{out}");
}

/// Issue 16: a filter that matched a fingerprint blanked the servers pane; a pane the filter
/// matches nothing in shows all its rows, and says so.
#[test]
fn issue_16_a_filter_does_not_blank_unrelated_panes() {
    let s = state();
    let v = View {
        filter: "pg_sleep".into(),
        ..View::default()
    };
    let out = screen(&s, &v, 160, 45);
    // The server of the matching fingerprint stays, the other goes; the logins (no user
    // matches) are all shown with a note.
    assert!(out.contains("10.0.3.17:5432"), "{out}");
    assert!(!line_with(&out, "Servers").contains("no match"), "{out}");
    assert!(
        out.contains("Logins (filter: no match here, all shown)"),
        "{out}"
    );
    assert!(out.contains("mallory"));
    assert!(!out.contains("waiting for queries"), "{out}");
}

#[test]
fn sparklines_are_labelled_with_their_scale_and_truncation_is_explained() {
    let mut s = state();
    s.health.truncated = 12;
    let out = screen(&s, &View::default(), 160, 45);
    assert!(out.contains("queries/s, last 5 s (top = 21/s)"), "{out}");
    assert!(
        out.contains("truncated 12: the mirror cuts segments (PacketLength, MTU)"),
        "{out}"
    );
}
