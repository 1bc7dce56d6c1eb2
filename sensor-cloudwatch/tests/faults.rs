//! Issue 7, "Faults": CloudWatch slow, throttling or answering 5xx, then back.
//!
//! A fault-injecting HTTP proxy (in this file, tokio, on 127.0.0.1) sits between the SDK and
//! moto. The library sink gets one period of query records per tick (timestamps hours back, so
//! every period has ended) while the proxy goes through:
//!
//! 1. **slow**: each request is held 5 s, longer than the SDK's 2 s attempt timeout (the SDK
//!    gives up; what it abandoned is not forwarded);
//! 2. **throttling**: CloudWatch's query-protocol `Throttling` (HTTP 400, `<ErrorResponse>`
//!    XML), CloudWatch Logs' JSON-protocol `ThrottlingException` (HTTP 400);
//! 3. **5xx**: 503 and 500, alternately;
//! 4. **healthy**: forwarded to moto.
//!
//! Between the fault phases the proxy is healthy until the queue has drained once, so each
//! phase starts from a reset backoff. Ten minutes of each fault are compressed: 45 s slow (its
//! rounds spend 4-8 s in timeouts), 25 s each of throttling and 5xx (~95 s of faults, ~2
//! minutes in all), by the sink's own knobs: a small queue bound, backoff from 1 s doubling to
//! 8 s, 2 attempts per request inside the SDK, a 2 s attempt timeout; a tick of 250 ms carries
//! a 60 s period of data, so the queue overflows and drops as it would over ten minutes.
//!
//! Asserted: nothing panics and the sink never blocks the caller; the queue (and the test
//! process's RSS, loosely) stays bounded; the SDK retried inside requests (the proxy sees
//! `amz-sdk-request: attempt=2` in each phase) and the idle gaps before the sink's own retries
//! grow within each phase (jitter tolerated); after the healthy phase everything queued
//! arrives: sent + dropped = generated for data and log events, nothing rejected or unsent,
//! moto holds exactly the data and events sent, and the drop counts themselves reached moto as
//! `MetricDatumsDropped` / `LogEventsDropped`.

mod common;

use common::{Moto, REGION};
use rds_sensor::{
    cli::Mode,
    model::{Endpoint, Protocol, QueryRecord, Record, Timestamp},
    sinks::Sink,
};
use sensor_cloudwatch::Config;
use std::{
    sync::{Arc, Mutex, atomic::Ordering::SeqCst},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Healthy,
    Slow,
    Throttling,
    ServerError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    CloudWatch,
    Logs,
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
struct Seen {
    phase: Phase,
    service: Service,
    /// The SDK's attempt number (`amz-sdk-request: …; attempt=N; max=M`).
    attempt: u32,
    arrived: Instant,
    /// Answered, or given up on by the client.
    ended: Instant,
    status: u16,
    /// Forwarded to moto, but the client had gone before the answer (moto may hold a copy the
    /// sink counts as not sent).
    abandoned_after_forward: bool,
}

struct Proxy {
    phase: Mutex<Phase>,
    log: Mutex<Vec<Seen>>,
    upstream: String,
    errors: Mutex<u64>,
    /// Requests read and not yet answered or given up on.
    in_flight: std::sync::atomic::AtomicUsize,
}

const HOLD: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT_MS: u64 = 2_000;

impl Proxy {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap()
    }

    fn set(&self, p: Phase) {
        *self.phase.lock().unwrap() = p;
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 message head and its Content-Length body; None at EOF.
async fn read_message(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut body = buf[head_end..].to_vec();
    if header(&head, "transfer-encoding").is_some() {
        return Err(std::io::Error::other("chunked bodies are not handled"));
    }
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("cut body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head without the hop-by-hop and length headers, with `extra` added.
fn rewrite(head: &str, extra: &str) -> String {
    let mut out = String::new();
    for (i, l) in head.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if i > 0
            && matches!(
                name.as_str(),
                "connection" | "keep-alive" | "content-length" | "transfer-encoding" | "expect"
            )
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(extra);
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn response(status: u16, reason: &str, content_type: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: \
         00000000-0000-0000-0000-000000000000\r\n{extra}Content-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn query_error(status: u16, reason: &str, kind: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}\
         </Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId>\
         </ErrorResponse>"
    );
    response(status, reason, "text/xml", "", &body)
}

fn json_error(status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    let extra = format!("x-amzn-ErrorType: {code}\r\n");
    response(status, reason, "application/x-amz-json-1.1", &extra, &body)
}

/// Resolves when the peer closes (or resets) the connection.
async fn closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {} // nothing is pipelined; ignore
        }
    }
}

async fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let mut req = rewrite(head, &format!("Content-Length: {}\r\n", body.len())).into_bytes();
    req.extend_from_slice(body);
    up.write_all(&req).await?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await?;
    let i = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?
        + 4;
    let head = String::from_utf8_lossy(&raw[..i]).to_string();
    if header(&head, "transfer-encoding").is_some() {
        return Err(std::io::Error::other("chunked response"));
    }
    let body = &raw[i..];
    let mut out = rewrite(&head, &format!("Content-Length: {}\r\n", body.len())).into_bytes();
    out.extend_from_slice(body);
    Ok(out)
}

async fn serve(proxy: Arc<Proxy>, mut client: TcpStream, n: u64) -> std::io::Result<()> {
    let Some((head, body)) = read_message(&mut client).await? else {
        return Ok(());
    };
    let arrived = Instant::now();
    proxy.in_flight.fetch_add(1, SeqCst);
    let r = answer(&proxy, &mut client, head, body, arrived, n).await;
    proxy.in_flight.fetch_sub(1, SeqCst);
    r?;
    let _ = client.shutdown().await;
    Ok(())
}

async fn answer(
    proxy: &Proxy,
    client: &mut TcpStream,
    head: String,
    body: Vec<u8>,
    arrived: Instant,
    n: u64,
) -> std::io::Result<()> {
    let phase = proxy.phase();
    let service = if header(&head, "x-amz-target").is_some() {
        Service::Logs
    } else {
        Service::CloudWatch
    };
    let attempt = header(&head, "amz-sdk-request")
        .and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("attempt=")?.parse().ok())
        })
        .unwrap_or(0);
    let mut abandoned_after_forward = false;
    let (status, out) = match phase {
        Phase::Slow => {
            // Held past the SDK's timeout; if the client is still there, forwarded.
            let gone = tokio::select! {
                _ = tokio::time::sleep(HOLD) => false,
                _ = closed(client) => true,
            };
            if gone {
                (0, None)
            } else {
                let r = forward(&proxy.upstream, &head, &body).await?;
                (status_of(&r), Some(r))
            }
        }
        Phase::Throttling => match service {
            Service::CloudWatch => (
                400,
                Some(query_error(
                    400,
                    "Bad Request",
                    "Sender",
                    "Throttling",
                    "Rate exceeded",
                )),
            ),
            Service::Logs => (
                400,
                Some(json_error(
                    400,
                    "Bad Request",
                    "ThrottlingException",
                    "Rate exceeded",
                )),
            ),
        },
        Phase::ServerError => {
            let (s, reason) = if n.is_multiple_of(2) {
                (503, "Service Unavailable")
            } else {
                (500, "Internal Server Error")
            };
            let r = match service {
                Service::CloudWatch => {
                    query_error(s, reason, "Receiver", "ServiceUnavailable", "unavailable")
                }
                Service::Logs => json_error(s, reason, "ServiceUnavailableException", "down"),
            };
            (s, Some(r))
        }
        Phase::Healthy => {
            let upstream = proxy.upstream.clone();
            let fwd = tokio::spawn(async move { forward(&upstream, &head, &body).await });
            let mut fwd = fwd;
            let r = tokio::select! {
                r = &mut fwd => Some(r),
                _ = closed(client) => None,
            };
            match r {
                Some(r) => {
                    let r = r.map_err(std::io::Error::other)??;
                    (status_of(&r), Some(r))
                }
                None => {
                    // The client timed out while moto worked: moto may store what the sink
                    // will send again.
                    abandoned_after_forward = true;
                    let _ = fwd.await;
                    (0, None)
                }
            }
        }
    };
    if let Some(out) = out {
        client.write_all(&out).await?;
        client.flush().await?;
    }
    let ended = Instant::now();
    proxy.log.lock().unwrap().push(Seen {
        phase,
        service,
        attempt,
        arrived,
        ended,
        status,
        abandoned_after_forward,
    });
    Ok(())
}

fn status_of(r: &[u8]) -> u16 {
    String::from_utf8_lossy(&r[..r.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Serves the proxy on `listener` from its own thread.
fn start_proxy(proxy: Arc<Proxy>, listener: std::net::TcpListener) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::from_std(listener).unwrap();
            let mut n = 0u64;
            loop {
                let Ok((c, _)) = l.accept().await else {
                    continue;
                };
                n += 1;
                let p = proxy.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(p.clone(), c, n).await {
                        eprintln!("proxy: {e}");
                        *p.errors.lock().unwrap() += 1;
                    }
                });
            }
        });
    });
}

fn query(t_s: i64) -> Record {
    Record::Query(QueryRecord {
        ts: Timestamp(t_s as u64 * 1_000_000_000),
        endpoint: Endpoint::from_text("10.1.0.5:40000", "10.0.0.5:5432", None, Protocol::Postgres),
        user: Some("app".into()),
        database: Some("orders".into()),
        verb: "SELECT".into(),
        fingerprint: "select ?".into(),
        query: Some("select 1".into()),
        rows: Some(1),
        error_code: None,
        error_name: None,
        error_message: None,
        bytes_request: 10,
        bytes_response: 20,
        latency_first_byte_us: Some(500),
        latency_us: 1000,
        prepared: false,
        tag: None,
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Idle times before the sink's own retries in a phase: for each first attempt, the time
/// since the previous request ended, leaving out the phase's first (its start is arbitrary)
/// and the requests that follow another at once within a round.
fn backoff_gaps(seen: &[Seen], phase: Phase) -> Vec<f64> {
    let mut gaps = Vec::new();
    let mut first = true;
    for w in seen.windows(2) {
        let (prev, cur) = (&w[0], &w[1]);
        if cur.phase != phase || cur.attempt != 1 {
            continue;
        }
        if first || prev.phase != phase {
            first = false;
            continue;
        }
        let idle = cur
            .arrived
            .saturating_duration_since(prev.ended)
            .as_secs_f64();
        if idle > 0.3 {
            gaps.push(idle);
        }
    }
    gaps
}

/// Feeds the sink one period per tick and watches its queue and the process's memory.
struct Driver {
    sink: Option<sensor_cloudwatch::sink::CloudWatchSink>,
    shared: Arc<sensor_cloudwatch::ship::Shared>,
    proxy: Arc<Proxy>,
    p0: i64,
    periods: u64,
    rss0: u64,
    rss_max: u64,
    slowest_emit: Duration,
}

const BOUND: usize = 120;
const LOG_BOUND: usize = 40;

impl Driver {
    /// One tick: one period of data (a query; the next tick's closes it).
    fn tick(&mut self) {
        let sink = self.sink.as_mut().expect("the sink");
        let t = Instant::now();
        sink.emit(&query(self.p0 + 60 * self.periods as i64 + 1))
            .unwrap();
        sink.flush().unwrap();
        self.periods += 1;
        self.slowest_emit = self.slowest_emit.max(t.elapsed());
        let (d, l) = self.shared.queued();
        assert!(
            d <= BOUND && l <= LOG_BOUND,
            "queue within its bound: {d}, {l}"
        );
        self.rss_max = self.rss_max.max(rss_kib());
        std::thread::sleep(Duration::from_millis(250));
    }

    fn run_for(&mut self, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            self.tick();
        }
    }

    /// Healthy until the queue has drained after a success and the shipper is idle (no
    /// request for half a second, the last one answered by moto), so its backoff is reset.
    /// The input pauses for that last part.
    fn drain(&mut self, what: &str) {
        self.proxy.set(Phase::Healthy);
        let before = self.shared.stats().datums_sent;
        let deadline = Instant::now() + Duration::from_secs(90);
        let timeout = |what: &str| assert!(Instant::now() < deadline, "{what}: no drain");
        while !(self.shared.stats().datums_sent > before && self.shared.queued() == (0, 0)) {
            self.tick();
            timeout(what);
        }
        let mut last_seen = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let (n, last_ok) = {
                let log = self.proxy.log.lock().unwrap();
                let ok = log
                    .last()
                    .is_some_and(|r| r.phase == Phase::Healthy && r.status == 200);
                (log.len(), ok)
            };
            let idle = n == last_seen && last_ok && self.proxy.in_flight.load(SeqCst) == 0;
            last_seen = n;
            if idle && self.shared.queued() == (0, 0) {
                break;
            }
            timeout(what);
        }
    }
}

#[test]
fn slow_throttling_5xx_then_back() {
    // Never anything but 127.0.0.1: the SDK configuration is explicit (endpoint: the proxy,
    // region, credentials); the environment agrees, should anything read it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // SAFETY: the only test of this binary, before it starts any thread.
    unsafe {
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_ENDPOINT_URL", &url);
    }
    let moto = Moto::start();
    let proxy = Arc::new(Proxy {
        phase: Mutex::new(Phase::Healthy),
        log: Mutex::new(Vec::new()),
        upstream: format!("127.0.0.1:{}", moto.port),
        errors: Mutex::new(0),
        in_flight: Default::default(),
    });
    start_proxy(proxy.clone(), listener);

    let cfg = Config {
        namespace: "Test/Faults".into(),
        sensor_id: Some("faults".into()),
        log_group: "/rds-sensor/test/faults".into(),
        records_sample: 1.0,
        queue_max_datums: BOUND,
        queue_max_log_events: LOG_BOUND,
        max_attempts: 2,
        backoff_initial_ms: 1_000,
        backoff_max_ms: 8_000,
        connect_timeout_ms: 1_000,
        attempt_timeout_ms: ATTEMPT_TIMEOUT_MS,
        shutdown_timeout_s: 90,
        ..Config::default()
    };
    let (sink, shipper) =
        sensor_cloudwatch::start_with(cfg, Mode::Live, Some(common::sdk_config(&url))).unwrap();
    let shipper = shipper.expect("a shipper");
    // Per period: Queries, QueryErrors, Rows, QueryLatency, QueryTimeToFirstByte, for
    // (instance, database) and for the instance.
    const PER_PERIOD: u64 = 10;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rss0 = rss_kib();
    let mut d = Driver {
        sink: Some(sink),
        shared: shipper.shared().clone(),
        proxy: proxy.clone(),
        // Ten hours back: every period has ended, and there are fewer than 600 ticks.
        p0: now - now % 60 - 10 * 3600,
        periods: 0,
        rss0,
        rss_max: rss0,
        slowest_emit: Duration::ZERO,
    };

    d.drain("start");
    for (phase, secs) in [
        (Phase::Slow, 45),
        (Phase::Throttling, 25),
        (Phase::ServerError, 25),
    ] {
        proxy.set(phase);
        d.run_for(secs);
        let s = d.shared.stats();
        assert!(s.failures > 0, "{phase:?}: {s:?}");
        d.drain(&format!("after {phase:?}"));
    }
    d.run_for(3);
    drop(d.sink.take()); // the last period closes here
    let s = shipper.finish().expect("everything queued is delivered");
    let (periods, rss0, rss_max, slowest_emit) = (d.periods, d.rss0, d.rss_max, d.slowest_emit);
    eprintln!("stats: {s:?}");
    eprintln!("periods {periods}, slowest emit {slowest_emit:?}, RSS {rss0} → max {rss_max} KiB");
    // Healthy and never blocked: the pipeline thread does not wait for CloudWatch.
    assert!(
        slowest_emit < Duration::from_secs(1),
        "emit+flush took {slowest_emit:?}"
    );
    assert_eq!(
        *proxy.errors.lock().unwrap(),
        0,
        "proxy errors (see stderr)"
    );
    // Bounded memory.
    assert!(s.max_queued_datums <= BOUND, "{s:?}");
    assert!(s.max_queued_log_events <= LOG_BOUND, "{s:?}");
    assert!(
        rss_max < rss0 + 64 * 1024,
        "RSS grew from {rss0} to {rss_max} KiB"
    );
    // Every datum and event sent or dropped (and counted), none refused or left.
    let generated = PER_PERIOD * periods;
    assert!(s.datums_dropped > 0 && s.log_events_dropped > 0, "{s:?}");
    assert_eq!(s.datums_sent + s.datums_dropped, generated, "{s:?}");
    assert_eq!(s.log_events_sent + s.log_events_dropped, periods, "{s:?}");
    assert_eq!((s.datums_rejected, s.log_events_rejected), (0, 0), "{s:?}");
    assert_eq!((s.datums_unsent, s.log_events_unsent), (0, 0), "{s:?}");

    // Retries: inside the SDK (attempt 2) on each fault, and the sink's own backing off.
    let seen = proxy.seen();
    for phase in [Phase::Slow, Phase::Throttling, Phase::ServerError] {
        for service in [Service::CloudWatch, Service::Logs] {
            let n = |a: u32| {
                seen.iter()
                    .filter(|r| r.phase == phase && r.service == service && r.attempt == a)
                    .count()
            };
            assert!(
                n(1) > 0 && n(2) > 0,
                "{phase:?} {service:?}: attempts 1: {}, 2: {}",
                n(1),
                n(2)
            );
        }
        let statuses: std::collections::BTreeSet<u16> = seen
            .iter()
            .filter(|r| r.phase == phase)
            .map(|r| r.status)
            .collect();
        match phase {
            Phase::Slow => assert_eq!(statuses, [0].into(), "the SDK gave up on every one"),
            Phase::Throttling => assert_eq!(statuses, [400].into()),
            _ => assert_eq!(statuses, [500, 503].into()),
        }
        // Backoff from 1 s doubling to 8 s, jittered in [cap/2, cap]: below the cap each idle
        // gap is at least the previous one's (less 0.4 s for a noisy machine); at the cap
        // (gaps from 4 s on) they stay within [4, 8] s.
        let gaps = backoff_gaps(&seen, phase);
        eprintln!("{phase:?}: backoff gaps {gaps:.2?}");
        assert!(gaps.len() >= 3, "{phase:?}: {gaps:?}");
        for w in gaps.windows(2) {
            let floor = if w[0] < 4.0 - 0.4 { w[0] } else { 4.0 };
            assert!(w[1] >= floor - 0.4, "{phase:?}: gaps shrink: {gaps:?}");
        }
        let max = gaps.iter().cloned().fold(0.0, f64::max);
        assert!(max >= 2.0 * gaps[0] && max >= 2.0, "{phase:?}: {gaps:?}");
        assert!(max <= 8.0 + 0.8, "{phase:?}: beyond the cap: {gaps:?}");
    }

    // moto holds what was sent (a forwarded request the client gave up on could add a copy).
    let dup = seen.iter().filter(|r| r.abandoned_after_forward).count();
    let rt = common::runtime();
    let cw = aws_sdk_cloudwatch::Client::new(&common::sdk_config(&moto.url()));
    let logs = aws_sdk_cloudwatchlogs::Client::new(&common::sdk_config(&moto.url()));
    rt.block_on(async {
        // One query per period: every datum has SampleCount 1; asking for the instance alone
        // matches both dimension sets.
        let mut in_moto = 0.0;
        for m in [
            "Queries",
            "QueryErrors",
            "Rows",
            "QueryLatency",
            "QueryTimeToFirstByte",
        ] {
            let dims = [("DBInstanceIdentifier", "10.0.0.5:5432")];
            in_moto += common::stats(&cw, "Test/Faults", m, &dims).await.0;
        }
        let (_, queries) = common::stats(
            &cw,
            "Test/Faults",
            "Queries",
            &[
                ("DBInstanceIdentifier", "10.0.0.5:5432"),
                ("Database", "orders"),
            ],
        )
        .await;
        let messages = common::log_messages(&logs, "/rds-sensor/test/faults").await;
        let sensor = [("Sensor", "faults")];
        let (_, dropped) = common::stats(&cw, "Test/Faults", "MetricDatumsDropped", &sensor).await;
        let (_, log_dropped) = common::stats(&cw, "Test/Faults", "LogEventsDropped", &sensor).await;
        eprintln!(
            "moto: {in_moto} data, {queries} queries, {} log events; drops reported {dropped} \
             + {log_dropped}; abandoned after forwarding: {dup}",
            messages.len()
        );
        if dup == 0 {
            assert_eq!(in_moto, s.datums_sent as f64, "data in moto vs sent");
            assert_eq!(messages.len() as u64, s.log_events_sent, "log events");
            assert_eq!(dropped, s.datums_dropped as f64, "MetricDatumsDropped");
            assert_eq!(log_dropped, s.log_events_dropped as f64, "LogEventsDropped");
        } else {
            assert!(in_moto >= s.datums_sent as f64);
            assert!(messages.len() as u64 >= s.log_events_sent);
            assert!(dropped >= s.datums_dropped as f64);
            assert!(log_dropped >= s.log_events_dropped as f64);
        }
        assert!(queries > 0.0 && queries < periods as f64, "{queries}");
    });
}
