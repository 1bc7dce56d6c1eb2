//! Many queues, many cores (issue 17, part 3): the loss-free rate of database events through
//! a veth with 2 receive queues, read by 2 CPUs, 2 rings and 2 workers, against 1 of each.
//!
//! The traffic is `bench_tx_stream` (the kernel's live-frames generator): PostgreSQL
//! queries and their answers on 256 connections per sending CPU, each frame the next segment,
//! so the sensor decodes and pairs every one and writes a JSON record per query. A frame the
//! generator sends on CPU `i` lands on receive queue `i` (veth picks the queue by CPU), whose
//! NAPI thread is pinned to CPU `i`. Each rate is run for a fixed time; the loss-free rate is
//! the highest at which every frame became an event that a worker decoded (no ring drop, no
//! queue drop), found by doubling then halving the step.
//!
//! On a 2-core machine the generator shares the cores with the sensor, as the NIC's
//! interrupts would; the row says what it measured.

use super::{Figure, figure};
use rds_sensor::{
    agent::{self, AgentOptions},
    capture::live::{AttachMode, LiveOptions, Sensor, default_cpus},
    model::{Clock, Record},
    pipeline::{Pipeline, PipelineOptions},
    sinks::Sink,
};
use sensor_common::counter as c;
use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// A veth pair with `queues` queues on each end, both in this namespace, deleted on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new(queues: u16) -> Self {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("rdsq{id}a"), format!("rdsq{id}b"));
        rds_sensor::netns::add_veth(&a, &b, queues, None).expect("veth pair");
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        let me = Self { a, b };
        for dev in [&me.a, &me.b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
            ip(&["link", "set", dev, "up"]);
        }
        me
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).status();
    }
}

fn pin(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The stream's template: a VXLAN-wrapped query of the size `bench_tx_stream` rewrites.
fn template() -> Vec<u8> {
    use crate::common::*;
    use sensor_common::tcp_flags as f;
    vxlan(
        7341,
        0x08,
        &inner_tcp(
            Ip::V4([198, 51, 100, 20], [198, 51, 100, 10]),
            20_000,
            5432,
            f::PSH | f::ACK,
            b"Q\0\0\0\x13select 1      \0",
        ),
        Ip::V4([10, 0, 0, 1], [10, 0, 0, 2]),
        &[],
    )
}

/// Serialises each record as `--json` does, to nowhere, and counts the queries.
struct JsonToNowhere(Vec<u8>, Arc<AtomicU64>);

impl Sink for JsonToNowhere {
    fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        self.0.clear();
        serde_json::to_writer(&mut self.0, record)?;
        if matches!(record, Record::Query(_)) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// CPU seconds so far of the agent's threads (its ring readers, workers and collector), from
/// the scheduler's own account (`/proc/self/task/*/schedstat`, nanoseconds).
fn agent_threads_cpu() -> f64 {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        if comm.starts_with("ring-") || comm.starts_with("worker-") || comm == "collector" {
            let st = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += st
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// What one run at one rate gave.
struct Run {
    /// CPU seconds of the agent's threads while the frames were sent.
    agent_cpu: f64,
    sent: u64,
    events: u64,
    /// Query records: every query and its answer paired.
    queries: u64,
    lost: u64,
}

/// Runs the sensor (`queues` rings and workers) on `pair.b` while `queues` generators, one
/// per CPU, send `rate` frames per second in all for `secs`.
fn run_at(pair: &Pair, generator: &Sensor, queues: u16, rate: f64, secs: f64) -> Run {
    let mut sensor = Sensor::load(&LiveOptions {
        ring_bytes: 32 << 20,
        rings: Some(queues),
        ..LiveOptions::default()
    })
    .expect("load the sensor");
    sensor
        .attach(&pair.b, AttachMode::Native)
        .expect("attach the sensor");
    // Real-time, as a NIC's NAPI in softirq runs before any thread: otherwise the scheduler
    // lets the agent's threads run first and the veth's 256-frame ring overflows, a loss of
    // the test bed's, not the sensor's.
    rds_sensor::netns::pin_napi_threads(&pair.b, queues, true).expect("NAPI threads");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let queries = Arc::new(AtomicU64::new(0));
    let counted = queries.clone();
    let agent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pipeline = Pipeline::new(
            PipelineOptions {
                clock: Clock::monotonic(),
                ..PipelineOptions::default()
            },
            Box::new(JsonToNowhere(Vec::with_capacity(4096), counted)),
        );
        let report = rt
            .block_on(agent::run(
                &mut sensor,
                pipeline,
                AgentOptions {
                    workers: queues as usize,
                    summary_every: Duration::from_secs(3600),
                    ..AgentOptions::default()
                },
                async {
                    let _ = rx.await;
                },
            ))
            .expect("agent");
        sensor.detach().unwrap();
        report
    });
    // The agent's threads up and reading.
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = agent_threads_cpu();
    let frame = template();
    let a = super::LocalVeth::ifindex(&pair.a);
    let prog = generator.program_named("bench_tx_stream").unwrap();
    let per_gen = rate / queues as f64;
    let sent: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..queues as usize)
            .map(|cpu| {
                let frame = &frame;
                s.spawn(move || {
                    // SAFETY: gettid(2) has no arguments.
                    pin(unsafe { libc::gettid() }, cpu);
                    // Bursts every millisecond, at the rate asked.
                    let t0 = Instant::now();
                    let mut sent = 0u64;
                    while t0.elapsed().as_secs_f64() < secs {
                        let due = (t0.elapsed().as_secs_f64() * per_gen) as u64;
                        if due > sent {
                            let n = (due - sent).min(1 << 20) as u32;
                            super::live_send(prog, frame, a, n);
                            sent += n as u64;
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // The last events through the rings and the workers.
    std::thread::sleep(Duration::from_millis(300));
    let _ = tx.send(());
    let agent_cpu = agent_threads_cpu() - cpu0;
    let report = agent.join().unwrap();
    let k = report.counters;
    eprintln!(
        "bench:   ring drops {}, queue drops {}, frames the sensor never saw {}",
        k[c::EVENTS_DROPPED as usize],
        report.queue_dropped,
        sent.saturating_sub(k[c::PACKETS as usize])
    );
    Run {
        agent_cpu,
        sent,
        events: report.events,
        queries: queries.load(Ordering::Relaxed),
        lost: k[c::EVENTS_DROPPED as usize]
            + report.queue_dropped
            + sent.saturating_sub(k[c::PACKETS as usize]),
    }
}

/// The stream generator, attached to the pair's sending end (a veth needs XDP itself for
/// XDP_TX frames to be accepted).
fn generator(pair: &Pair) -> Sensor {
    let mut generator = Sensor::load(&LiveOptions {
        ring_bytes: 1 << 16,
        rings: Some(1),
        flow_entries: 1024,
        ..LiveOptions::default()
    })
    .expect("load the generator");
    generator
        .load_program("bench_tx_stream")
        .expect("bench_tx_stream");
    generator
        .attach_named("bench_tx_stream", &pair.a, AttachMode::Native)
        .expect("attach the generator");
    generator
}

/// The highest rate (frames per second in all) with no frame lost, and the events seen at it.
fn loss_free_rate(queues: u16, quick: bool) -> (f64, Run) {
    let pair = Pair::new(queues);
    let mut generator = generator(&pair);
    let secs = if quick { 0.3 } else { 2.0 };
    let ok = |r: &Run| r.lost == 0 && r.events == r.sent && r.queries * 2 + 2048 >= r.sent;
    // Doubling from 100 k/s while nothing is lost, then bisecting to within 5 %.
    let mut rate = 100_000.0;
    let mut lo: Option<(f64, Run)> = None;
    let mut hi: Option<f64> = None;
    for _ in 0..if quick { 2 } else { 14 } {
        let r = run_at(&pair, &generator, queues, rate, secs);
        eprintln!(
            "bench: {queues} queue(s) at {rate:.0} frames/s: sent {}, events {}, queries {}, lost {}",
            r.sent, r.events, r.queries, r.lost
        );
        if ok(&r) {
            lo = Some((rate, r));
        } else {
            hi = Some(rate);
        }
        rate = match (lo.as_ref().map(|l| l.0), hi) {
            (Some(l), None) => l * 2.0,
            (None, Some(h)) => h / 2.0,
            (Some(l), Some(h)) if (h - l) / l < 0.05 => break,
            (Some(l), Some(h)) => (l + h) / 2.0,
            (None, None) => unreachable!("a run was made"),
        };
    }
    generator.detach().unwrap();
    lo.unwrap_or((
        0.0,
        Run {
            agent_cpu: 0.0,
            sent: 0,
            events: 0,
            queries: 0,
            lost: 0,
        },
    ))
}

pub fn multi_queue(quick: bool, figures: &mut Vec<Figure>) {
    let cpus = default_cpus();
    if cpus < 2 {
        eprintln!("bench: the multi-queue row needs 2 CPUs; this machine has {cpus}: skipped");
        return;
    }
    let (one, _) = loss_free_rate(1, quick);
    let (two, _) = loss_free_rate(2, quick);
    figures.push(figure(
        "2 queues, 2 rings, 2 workers: loss-free db events/s",
        two,
        "events/s",
        "1 queue, 1 ring, 1 worker",
        one,
    ));
    // What sharding costs: the agent's CPU per event at one rate both take without loss.
    let rate = one.min(two) * 0.9;
    let secs = if quick { 0.3 } else { 2.0 };
    let per_m = |queues: u16| {
        let pair = Pair::new(queues);
        let generator = generator(&pair);
        let r = run_at(&pair, &generator, queues, rate, secs);
        r.agent_cpu / r.events.max(1) as f64 * 1e6
    };
    let (cpu_one, cpu_two) = (per_m(1), per_m(2));
    figures.push(figure(
        "2 workers: agent CPU-s per million db events",
        cpu_two,
        "CPU-s",
        "1 worker, same rate",
        cpu_one,
    ));
}
