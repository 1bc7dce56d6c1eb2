//! `cargo xtask bench`: every figure beside the baseline it is compared to, measured in the same
//! run (these machines are noisy). Prints one table and writes `target/bench/results.json`.
//!
//! 1. XDP cost per packet (BPF_PROG_TEST_RUN) for each kind of frame, against `bench_floor`,
//!    a program that only drops.
//! 2. Decoder throughput (events per CPU-second, one thread) over the bundled captures,
//!    against tshark dissecting the same frames.
//! 3. TLS: AES-128-GCM record opening against `openssl speed -evp aes-128-gcm` (16 KiB
//!    blocks), and decoder events per CPU-second on the keyed TLS capture (decrypted) against
//!    the plaintext PostgreSQL capture.
//! 4. The peer: CPU per PostgreSQL message against Suricata's pgsql parser on the same frames
//!    ([`peer`]).
//! 5. Many queues: the loss-free rate of database events with 2 receive queues, rings and
//!    workers against 1 of each ([`queues`]).
//! 6. Memory: kernel flow-table memory and agent RSS with many concurrent flows (a SYN flood
//!    from random sources), against the empty table.
//!
//! `--quick` runs each for a fraction of the time (CI's smoke run); no figure is asserted.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "suite/peer.rs"]
mod peer;
#[path = "suite/queues.rs"]
mod queues;

use aya::programs::{TestRun, TestRunOptions};
use common::*;
use rds_sensor::{
    capture::{
        live::{LiveOptions, Sensor},
        packet::{Decapsulator, LinkType},
        pcap::PcapReader,
    },
    model::Record,
    pipeline::{Pipeline, PipelineOptions},
    sinks::Sink,
};
use sensor_common::{DEFAULT_DB_PORTS, SensorConfig, tcp_flags as f};
use serde::Serialize;
use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

#[derive(Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: String,
    baseline_name: String,
    baseline_value: f64,
    /// value / baseline_value.
    ratio: f64,
}

fn figure(name: &str, value: f64, unit: &str, baseline_name: &str, baseline_value: f64) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
        baseline_name: baseline_name.into(),
        baseline_value,
        ratio: if baseline_value == 0.0 {
            0.0
        } else {
            value / baseline_value
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only xdp|live|queues|cpu|memory|decoder|peer|tls` runs one part (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let mut figures = Vec::new();
    let kernel =
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        unsafe { libc::geteuid() } == 0 && rds_sensor::capture::live::embedded_object().is_some();
    if !kernel && (want("xdp") || want("memory")) {
        eprintln!(
            "bench: XDP and memory figures need root and the XDP object (cargo xtask bench): skipped"
        );
    }
    if kernel && want("xdp") {
        xdp_cost(quick, &mut figures);
    }
    if kernel && want("live") {
        live_frames(quick, &mut figures);
    }
    if kernel && want("queues") {
        queues::multi_queue(quick, &mut figures);
    }
    if kernel && want("cpu") {
        end_to_end_cpu(quick, &mut figures);
    }
    if kernel && want("memory") {
        flow_memory(quick, &mut figures);
    }
    if want("decoder") {
        decoder_throughput(quick, &mut figures);
    }
    if want("peer") {
        peer::suricata_pgsql(&pcaps_dir(), quick, &mut figures);
    }
    if want("tls") {
        tls_throughput(quick, &mut figures);
    }

    println!(
        "\n{:<44} {:>14} {:<9} {:<28} {:>14} {:>8}",
        "figure", "value", "unit", "baseline", "value", "ratio"
    );
    for f in &figures {
        println!(
            "{:<44} {:>14.1} {:<9} {:<28} {:>14.1} {:>8.2}",
            f.name, f.value, f.unit, f.baseline_name, f.baseline_value, f.ratio
        );
    }
    let dir = std::env::var_os("RDS_SENSOR_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"));
    std::fs::create_dir_all(&dir).expect("creating the results directory");
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&figures).unwrap())
        .expect("writing results.json");
    println!("\nwrote {}", path.display());
}

/// Average ns per run of `prog` on `frame`.
fn ns_per_packet(prog: &aya::programs::Xdp, frame: &[u8], repeat: u32) -> f64 {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("test_run");
    // The kernel reports the mean duration of one run.
    r.duration.as_nanos() as f64
}

fn xdp_cost(quick: bool, figures: &mut Vec<Figure>) {
    let repeat = if quick { 20_000 } else { 300_000 };
    let mut sensor = Sensor::load(&LiveOptions {
        // One ring: this row's reader drains ring 0 (the multi-queue row has its own).
        rings: Some(1),
        ring_bytes: 256 << 20,
        ..LiveOptions::default()
    })
    .expect("loading the XDP program");
    // Drain the ring while the kernel runs the program, so that events cost what they cost
    // live (a full ring would measure the drop path instead).
    let mut ring = sensor.take_events().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                while let Some(item) = ring.next() {
                    n += item.len() as u64;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            n
        })
    };
    let q = {
        let mut m = b"Q\0\0\0\x2dselect * from accounts where id = 42\0".to_vec();
        m.resize(46, b' ');
        m
    };
    let mut resp: Vec<u8> = (0..1400u32).map(|i| (i % 251) as u8).collect();
    let n = resp.len();
    resp[n - 6..].copy_from_slice(b"Z\0\0\0\x05I");
    let outer = Ip::V4(ENI, TARGET);
    let inner = Ip::V4(CLIENT, SERVER);
    let back = Ip::V4(SERVER, CLIENT);
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "xdp: vxlan db request (46 B)",
            vxlan(
                7341,
                0x08,
                &inner_tcp(inner, 40000, 5432, f::PSH | f::ACK, &q),
                outer,
                &[],
            ),
        ),
        (
            "xdp: vxlan db request, inner IPv6",
            vxlan(
                7341,
                0x08,
                &inner_tcp(Ip::V6(v6(0x20), v6(0x10)), 40000, 5432, f::PSH | f::ACK, &q),
                outer,
                &[],
            ),
        ),
        (
            "xdp: vxlan db response (1400 B)",
            vxlan(
                7341,
                0x08,
                &inner_tcp(back, 5432, 40000, f::PSH | f::ACK, &resp),
                outer,
                &[],
            ),
        ),
        (
            "xdp: vxlan db control (SYN)",
            vxlan(
                7341,
                0x08,
                &inner_tcp(inner, 40001, 5432, f::SYN, &[]),
                outer,
                &[],
            ),
        ),
        (
            "xdp: vxlan db ack (no payload)",
            vxlan(
                7341,
                0x08,
                &inner_tcp(inner, 40000, 5432, f::ACK, &[]),
                outer,
                &[],
            ),
        ),
        (
            "xdp: vxlan non-db",
            vxlan(
                7341,
                0x08,
                &inner_tcp(inner, 40002, 8080, f::PSH | f::ACK, &q),
                outer,
                &[],
            ),
        ),
        (
            "xdp: host ipv4 (ssh)",
            inner_tcp(inner, 40003, 22, f::PSH | f::ACK, &q),
        ),
        (
            "xdp: host ipv6 (ssh)",
            inner_tcp(Ip::V6(v6(0x20), v6(0x10)), 40004, 22, f::PSH | f::ACK, &q),
        ),
    ];
    let floor_name = "bench_floor (XDP_DROP only)";
    sensor.load_program("bench_floor").expect("floor");
    sensor.load_program("bench_clock").expect("clock");
    // Floor and sensor alternate on each frame, so drift hits both alike.
    // Each is the best of several alternating runs: a test_run is a tight loop that other
    // work on a noisy VM can only slow down, so the minimum is the repeatable figure.
    let rounds = if quick { 2 } else { 7 };
    // Best of alternating runs of `program` and its `baseline` on one frame.
    let best_pair = |sensor: &Sensor, baseline: &str, program: &str, frame: &[u8]| {
        let (mut base, mut value) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            base = base.min(ns_per_packet(
                sensor.program_named(baseline).expect(baseline),
                frame,
                repeat,
            ));
            value = value.min(ns_per_packet(
                sensor.program_named(program).expect(program),
                frame,
                repeat,
            ));
        }
        (value, base)
    };
    let best_of = |sensor: &Sensor, program: &str, frame: &[u8]| {
        best_pair(sensor, "bench_floor", program, frame)
    };
    let mut rows = Vec::new();
    for (name, frame) in &frames {
        let (value, floor) = best_of(&sensor, sensor_common::names::PROGRAM, frame);
        rows.push((name.to_string(), value, floor));
    }
    // The exact clock alone (one bpf_ktime_get_ns): every event pays it.
    let (value, floor) = best_of(&sensor, "bench_clock", &frames[0].1);
    rows.push(("xdp: exact clock read alone".to_string(), value, floor));
    // The sensor's database events against the minimal event program on the same frame: the
    // clock, the same payload bytes copied, one ring record, nothing else. The ratio is the
    // sensor's overhead over the irreducible work, whatever the machine's floor.
    sensor.load_program("bench_event").expect("bench_event");
    let event_name = "bench_event (clock + payload copy + ring record)";
    let mut vs_event = Vec::new();
    for (i, payload) in [(0usize, q.len()), (2, resp.len())] {
        // Outer Ethernet, IPv4, UDP, VXLAN, then the inner Ethernet, IPv4 and TCP headers.
        let off = (14 + 20 + 8 + 8 + 14 + 20 + 20) as u32;
        let mut a: aya::maps::Array<_, [u32; 3]> =
            aya::maps::Array::try_from(sensor.map_mut("BENCH_EVENT").expect("BENCH_EVENT"))
                .expect("an array");
        a.set(0, [off, payload as u32, 1], 0)
            .expect("setting BENCH_EVENT");
        let (value, base) = best_pair(
            &sensor,
            "bench_event",
            sensor_common::names::PROGRAM,
            &frames[i].1,
        );
        vs_event.push((
            format!("{}, vs the minimal event", frames[i].0),
            value,
            base,
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    for (name, value, floor) in rows {
        figures.push(figure(&name, value, "ns/pkt", floor_name, floor));
    }
    for (name, value, base) in vs_event {
        figures.push(figure(&name, value, "ns/pkt", event_name, base));
    }
}

/// A veth pair with both ends in this namespace, deleted on drop.
struct LocalVeth {
    a: String,
    b: String,
}

impl LocalVeth {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("rdsb{id}a"), format!("rdsb{id}b"));
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        let me = Self { a, b };
        // No IPv6 autoconfiguration traffic of their own: only the generator's frames.
        for dev in [&me.a, &me.b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
        }
        ip(&["link", "set", &me.a, "up"]);
        ip(&["link", "set", &me.b, "up"]);
        me
    }

    fn ifindex(name: &str) -> u32 {
        std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .expect("ifindex")
            .trim()
            .parse()
            .expect("ifindex")
    }
}

impl Drop for LocalVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).status();
    }
}

/// Sends `n` copies of `frame` out of `ifindex` with the kernel's live-frames generator
/// (BPF_PROG_TEST_RUN + XDP_TX) and returns the wall time: the receiving veth's NAPI runs
/// on the same CPU between batches, so the time includes the receiver's XDP program.
fn live_send(
    generator: &aya::programs::Xdp,
    frame: &[u8],
    ifindex: u32,
    n: u32,
) -> std::time::Duration {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The kernel insists that data_end equals the frame's length (no metadata).
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let t0 = Instant::now();
    generator
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: n,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })
        .expect("live-frames test_run");
    t0.elapsed()
}

/// Runs `send` while a reader drains `sensor`'s ring as the agent does; returns what `send`
/// returned and the records read.
fn send_while_draining<T>(sensor: &mut Sensor, send: impl FnOnce() -> T) -> (T, u64) {
    let mut ring = sensor.take_events().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                while ring.next().is_some() {
                    n += 1;
                }
                if stopping {
                    return n;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let out = send();
    // The last records reach the ring after the last frame is sent.
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    (out, reader.join().unwrap())
}

fn live_frames(quick: bool, figures: &mut Vec<Figure>) {
    let n: u32 = if quick { 200_000 } else { 5_000_000 };
    let veth = LocalVeth::new();
    let a = LocalVeth::ifindex(&veth.a);
    let q = b"Q\0\0\0\x0dselect 1\0";
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(Ip::V4(CLIENT, SERVER), 40000, 5432, f::PSH | f::ACK, q),
        Ip::V4(ENI, TARGET),
        &[],
    );
    let mut generator = Sensor::load(&LiveOptions {
        // One ring: this row's reader drains ring 0 (the multi-queue row has its own).
        rings: Some(1),
        ring_bytes: 1 << 16,
        flow_entries: 1024,
        ..LiveOptions::default()
    })
    .expect("load");
    generator.load_program("bench_tx").expect("bench_tx");
    // The sending veth needs XDP enabled itself: the generator requires the ingress device's
    // XDP receive queue to be registered, which veth does only while a program is attached.
    generator
        .attach_named(
            "bench_tx",
            &veth.a,
            rds_sensor::capture::live::AttachMode::Native,
        )
        .expect("attach the generator's end");

    // Baseline: a program that drops everything, on the receiving end.
    let mut floor = Sensor::load(&LiveOptions {
        // One ring: this row's reader drains ring 0 (the multi-queue row has its own).
        rings: Some(1),
        ring_bytes: 1 << 16,
        flow_entries: 1024,
        ..LiveOptions::default()
    })
    .expect("load");
    floor.load_program("bench_floor").expect("floor");
    floor
        .attach_named(
            "bench_floor",
            &veth.b,
            rds_sensor::capture::live::AttachMode::Native,
        )
        .expect("attach floor");
    let floor_time = live_send(generator.program_named("bench_tx").unwrap(), &frame, a, n);
    floor.detach().unwrap();
    drop(floor);

    // The minimal event program (issue 17's baseline) on the same veth: the clock, the same
    // payload bytes, one ring record per frame, a reader draining the ring as the agent does.
    let mut minimal = Sensor::load(&LiveOptions {
        // One ring: this row's reader drains ring 0 (the multi-queue row has its own).
        rings: Some(1),
        ring_bytes: 64 << 20,
        ..LiveOptions::default()
    })
    .expect("load");
    minimal.load_program("bench_event").expect("bench_event");
    {
        // Outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet, IPv4, TCP.
        let off = (14 + 20 + 8 + 8 + 14 + 20 + 20) as u32;
        let mut m: aya::maps::Array<_, [u32; 3]> =
            aya::maps::Array::try_from(minimal.map_mut("BENCH_EVENT").expect("BENCH_EVENT"))
                .expect("an array");
        m.set(0, [off, q.len() as u32, 1], 0)
            .expect("setting BENCH_EVENT");
    }
    minimal
        .attach_named(
            "bench_event",
            &veth.b,
            rds_sensor::capture::live::AttachMode::Native,
        )
        .expect("attach the minimal event program");
    let (minimal_time, minimal_read) = send_while_draining(&mut minimal, || {
        live_send(generator.program_named("bench_tx").unwrap(), &frame, a, n)
    });
    minimal.detach().unwrap();
    drop(minimal);

    // The sensor, with a reader draining its ring as the agent does.
    let mut sensor = Sensor::load(&LiveOptions {
        // One ring: this row's reader drains ring 0 (the multi-queue row has its own).
        rings: Some(1),
        ring_bytes: 64 << 20,
        ..LiveOptions::default()
    })
    .expect("load");
    sensor
        .attach(&veth.b, rds_sensor::capture::live::AttachMode::Native)
        .expect("attach sensor");
    let state = sensor.take_state().unwrap();
    let (sensor_time, read) = send_while_draining(&mut sensor, || {
        live_send(generator.program_named("bench_tx").unwrap(), &frame, a, n)
    });
    let k = state.counters().unwrap();
    use sensor_common::counter as c;
    sensor.detach().unwrap();

    let mpps = |t: std::time::Duration| n as f64 / t.as_secs_f64() / 1e6;
    figures.push(figure(
        "live frames: sensor on a veth (VXLAN db request)",
        mpps(sensor_time),
        "Mpps",
        "drop-all on the same veth",
        mpps(floor_time),
    ));
    figures.push(figure(
        "live frames: sensor on a veth, vs the minimal event",
        mpps(sensor_time),
        "Mpps",
        "bench_event on the same veth",
        mpps(minimal_time),
    ));
    figures.push(figure(
        "live frames: events the minimal program delivered",
        minimal_read as f64,
        "events",
        "frames sent",
        n as f64,
    ));
    figures.push(figure(
        "live frames: frames seen by the sensor",
        k[c::PACKETS as usize] as f64,
        "frames",
        "frames sent",
        n as f64,
    ));
    let accounted = k[c::EVENTS_SENT as usize] + k[c::EVENTS_DROPPED as usize];
    figures.push(figure(
        "live frames: events read + counted ring drops",
        (read + k[c::EVENTS_DROPPED as usize]) as f64,
        "events",
        "events the program accounted",
        accounted as f64,
    ));
}

/// Busy CPU time of the whole machine (user, system, irq, softirq), in seconds.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6];
    busy as f64 / 100.0
}

/// End-to-end CPU per million database packets: the whole agent (XDP in softirq, ring
/// reader, decoders) against tshark live-dissecting the same traffic on the same interface
/// (AF_PACKET capture + user-space decode). The replay's own cost is measured alone and
/// subtracted from both.
fn end_to_end_cpu(quick: bool, figures: &mut Vec<Figure>) {
    use rds_sensor::netns::VethPair;
    // Enough packets that the sensor's share stands out of the machine's background noise.
    let loops = if quick { 2 } else { 200 };
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for p in bundled_pcaps() {
        let mut r = PcapReader::open(&p).expect("bundled capture");
        while let Some(fr) = r.next_frame().expect("bundled capture") {
            if fr.linktype == 1 && fr.data.len() <= 9000 {
                frames.push(fr.data.to_vec());
            }
        }
    }
    let mut decap = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 1 << 16);
    let mut rec = Vec::new();
    for f in &frames {
        decap.process(LinkType::Ethernet, f, f.len() as u32, 0, &mut rec);
    }
    let db_packets = decap.counters[sensor_common::counter::DB_SEGMENTS as usize] * loops;
    let dir = std::env::temp_dir().join(format!("rds-sensor-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("all.pcap");
    write_pcap(&pcap, &frames);
    let pair = VethPair::new("bc").expect("veth pair");
    let replay = || {
        let st = pair
            .ns
            .command("tcpreplay")
            .args([
                "-q",
                "--topspeed",
                "-i",
                &pair.inside,
                &format!("--loop={loops}"),
            ])
            .arg(&pcap)
            .output()
            .expect("tcpreplay");
        assert!(
            st.status.success(),
            "tcpreplay: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    let settle = || std::thread::sleep(std::time::Duration::from_millis(500));
    // The replay alone.
    settle();
    let b0 = machine_busy();
    replay();
    settle();
    let alone = machine_busy() - b0;

    // The agent, as operators run it.
    let mut agent = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args([
            "run",
            "--iface",
            &pair.outside,
            "--json",
            "--summary-interval",
            "3600",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rds-sensor");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let b0 = machine_busy();
    replay();
    settle();
    let sensor = machine_busy() - b0;
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();

    // tshark live on the same interface.
    let mut tshark = Command::new("tshark")
        .args([
            "-n",
            "-i",
            &pair.outside,
            "-Y",
            "pgsql || mysql",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tshark");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let b0 = machine_busy();
    replay();
    // tshark's work is done when it has dissected everything: give it time, then stop it
    // and count the CPU it spent until it exited.
    settle();
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(tshark.id() as i32, libc::SIGINT) };
    let _ = tshark.wait();
    let tshark_cpu = machine_busy() - b0;
    let _ = std::fs::remove_dir_all(&dir);
    let per_m = |cpu: f64| (cpu - alone).max(0.0) / db_packets as f64 * 1e6;
    figures.push(figure(
        "end to end: CPU-s per million db packets",
        per_m(sensor),
        "CPU-s",
        "tshark live on the same veth",
        per_m(tshark_cpu),
    ));
}

/// Counts records without keeping them.
#[derive(Default)]
struct Count(Arc<std::sync::atomic::AtomicU64>);

impl Sink for Count {
    fn emit(&mut self, _record: &Record) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn cpu_time_thread() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a local timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn cpu_time_children() -> f64 {
    // SAFETY: rusage is plain integers: all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn decoder_throughput(quick: bool, figures: &mut Vec<Figure>) {
    // Every frame of the bundled captures, in memory.
    let mut frames: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    for p in bundled_pcaps() {
        let mut r = PcapReader::open(&p).expect("bundled capture");
        while let Some(fr) = r.next_frame().expect("bundled capture") {
            if fr.linktype == 1 {
                frames.push((fr.ts_ns, fr.orig_len, fr.data.to_vec()));
            }
        }
    }
    assert!(
        !frames.is_empty(),
        "no bundled captures in {}",
        pcaps_dir().display()
    );
    let rounds = if quick { 3 } else { 40 };

    // Ours: the offline twin of the XDP program + the whole pipeline, on one thread.
    let records = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut events = 0u64;
    let mut rec = Vec::with_capacity(8192);
    // One twin and one pipeline for the whole run, as a live agent or `analyze` has: each round
    // ends every connection and flow (below), so the next one decodes them from scratch again,
    // but the setup a real run pays once (the twin's port table, the latency aggregator's
    // per-server histograms, table growth) is not paid again every ~1300 events.
    let mut decap = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 1 << 16);
    let mut pipeline = Pipeline::new(PipelineOptions::default(), Box::new(Count(records.clone())));
    let mut per_round = None;
    // The best of several batches of rounds (and of several tshark runs below): other work on
    // a noisy VM only slows a run down, so the fastest is the repeatable figure.
    let batch = if quick { 1 } else { 5 };
    let mut best = f64::MAX;
    let mut cpu0 = cpu_time_thread();
    let mut batch_events = 0u64;
    for round in 0..rounds {
        let before = records.load(Ordering::Relaxed);
        for (ts, len, data) in &frames {
            decap.process(LinkType::Ethernet, data, *len, *ts, &mut rec);
            if !rec.is_empty() {
                pipeline.on_record(&rec);
                events += 1;
            }
        }
        pipeline
            .expire_flows(
                &mut decap.flows,
                u64::MAX,
                Some(rds_sensor::model::FlowEnd::EndOfCapture),
            )
            .unwrap();
        // Every round is the same work: the same records from the same frames.
        let n = records.load(Ordering::Relaxed) - before;
        assert_eq!(*per_round.get_or_insert(n), n, "a round made other records");
        if (round + 1) % batch == 0 {
            let cpu = cpu_time_thread();
            let per_event = (cpu - cpu0) / (events - batch_events) as f64;
            best = best.min(per_event);
            cpu0 = cpu;
            batch_events = events;
        }
    }
    let ours = 1.0 / best;

    // tshark: the same frames, repeated as many times, dissected as pgsql/mysql/tds (the
    // protocols the sensor decodes).
    let dir = std::env::temp_dir().join(format!("rds-sensor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("all.pcap");
    let tshark_rounds = if quick { 1 } else { 4 };
    let all: Vec<Vec<u8>> = (0..tshark_rounds)
        .flat_map(|_| frames.iter().map(|(_, _, d)| d.clone()))
        .collect();
    write_pcap(&big, &all);
    let mut tshark_cpu = f64::MAX;
    for _ in 0..if quick { 1 } else { 3 } {
        let c0 = cpu_time_children();
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&big)
            .args([
                "-Y",
                "pgsql || mysql || tds",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ])
            .output()
            .expect("running tshark");
        tshark_cpu = tshark_cpu.min(cpu_time_children() - c0);
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tshark_events = events / rounds as u64 * tshark_rounds as u64;
    let tshark = tshark_events as f64 / tshark_cpu;
    let _ = std::fs::remove_dir_all(&dir);
    figures.push(figure(
        "decoder: events per CPU-second (1 thread)",
        ours,
        "events/s",
        "tshark -Y 'pgsql || mysql || tds'",
        tshark,
    ));
}

/// Bytes per second `openssl speed -evp aes-128-gcm` reports for 16 KiB blocks.
fn openssl_aes128gcm(seconds: u32) -> f64 {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-128-gcm",
            "-bytes",
            "16384",
            "-seconds",
        ])
        .arg(seconds.to_string())
        .output()
        .expect("running openssl speed");
    let text = String::from_utf8_lossy(&out.stdout);
    // The result row: "AES-128-GCM   1234567.89k" (thousands of bytes per second).
    let row = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-128-gcm"))
        .unwrap_or_else(|| panic!("openssl speed said: {text}"));
    let k: f64 = row
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .unwrap_or_else(|| panic!("openssl speed row: {row}"));
    k * 1000.0
}

/// Events per CPU-second of the whole pipeline over one capture's frames, `rounds` times
/// (the best of batches), with `layers` for TLS.
fn pipeline_events_per_s(
    pcap: &std::path::Path,
    rounds: usize,
    layers: impl Fn() -> rds_sensor::session::Layers,
) -> f64 {
    let mut frames = Vec::new();
    let mut r = PcapReader::open(pcap).expect("bundled capture");
    while let Some(fr) = r.next_frame().expect("bundled capture") {
        frames.push((fr.ts_ns, fr.orig_len, fr.data.to_vec()));
    }
    let (cpu, events) = pipeline_cpu_per_round(&frames, rounds, layers);
    events as f64 / cpu
}

/// The whole pipeline (the XDP program's twin, reassembly, decoders, records) over `frames`,
/// `rounds` times on one thread, every flow ended after each round: the best CPU seconds per
/// round over batches of 5, and the events per round.
fn pipeline_cpu_per_round(
    frames: &[(u64, u32, Vec<u8>)],
    rounds: usize,
    layers: impl Fn() -> rds_sensor::session::Layers,
) -> (f64, u64) {
    let records = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut best = f64::MAX;
    let mut per_round = 0;
    let mut rec = Vec::with_capacity(8192);
    for _ in 0..rounds.div_ceil(5).max(1) {
        let mut decap = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 1 << 16);
        let mut pipeline =
            Pipeline::new(PipelineOptions::default(), Box::new(Count(records.clone())))
                .with_layers(layers());
        let c0 = cpu_time_thread();
        let mut events = 0u64;
        for _ in 0..5 {
            for (ts, len, data) in frames {
                decap.process(LinkType::Ethernet, data, *len, *ts, &mut rec);
                if !rec.is_empty() {
                    pipeline.on_record(&rec);
                    events += 1;
                }
            }
            pipeline
                .expire_flows(
                    &mut decap.flows,
                    u64::MAX,
                    Some(rds_sensor::model::FlowEnd::EndOfCapture),
                )
                .unwrap();
        }
        best = best.min((cpu_time_thread() - c0) / 5.0);
        per_round = events / 5;
    }
    assert!(
        records.load(Ordering::Relaxed) > 0,
        "no record from the frames"
    );
    (best, per_round)
}

fn tls_throughput(quick: bool, figures: &mut Vec<Figure>) {
    use rds_sensor::session::tls::{self, Hold, KeyLogFiles, KeyStore};
    let n = if quick { 2_000 } else { 20_000 };
    let ours = (0..if quick { 1 } else { 3 })
        .map(|_| (16384 * n) as f64 / tls::bench_open(16384, n))
        .fold(0.0, f64::max);
    let theirs = openssl_aes128gcm(if quick { 1 } else { 3 });
    figures.push(figure(
        "TLS: AES-128-GCM record opening, 16 KiB",
        ours / 1e6,
        "MB/s",
        "openssl speed -evp aes-128-gcm",
        theirs / 1e6,
    ));
    let rounds = if quick { 5 } else { 40 };
    let keyed = pcaps_dir().join("pg-tls-keys.pcap");
    let keys = keyed.with_extension("keys");
    let tls_rate = pipeline_events_per_s(&keyed, rounds, || {
        let store = KeyStore::new(1000, None);
        KeyLogFiles::new(std::slice::from_ref(&keys))
            .unwrap()
            .poll(&store)
            .unwrap();
        tls::layers(store, Hold::default())
    });
    let plain_rate = pipeline_events_per_s(&pcaps_dir().join("pg-queries.pcap"), rounds, || {
        rds_sensor::session::Layers::none()
    });
    figures.push(figure(
        "decoder on TLS, decrypted (pg-tls-keys)",
        tls_rate,
        "events/s",
        "plaintext (pg-queries)",
        plain_rate,
    ));
}

/// Reads a map's kernel memory from /proc/self/fdinfo (memlock).
fn map_memlock(fd: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("memlock:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn flow_memory(quick: bool, figures: &mut Vec<Figure>) {
    // A SYN flood from random sources into a database port fills the kernel flow table;
    // the LRU map evicts beyond its capacity, so memory is bounded by the configuration.
    let flows: u32 = if quick { 20_000 } else { 1_000_000 };
    let capacity = 262_144u32;
    let rss0 = rss_kib();
    let mut sensor = Sensor::load(&LiveOptions {
        flow_entries: capacity,
        rings: Some(1),
        ..LiveOptions::default()
    })
    .expect("load");
    let mut state = sensor.take_state().unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let outer = Ip::V4(ENI, TARGET);
    for _ in 0..flows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = (x as u32).to_be_bytes();
        let frame = vxlan(
            7341,
            0x08,
            &inner_tcp(
                Ip::V4(src, SERVER),
                (x >> 32) as u16 | 1024,
                5432,
                f::SYN,
                &[],
            ),
            outer,
            &[],
        );
        let _ = sensor.program().unwrap().test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            ..TestRunOptions::default()
        });
    }
    let mut snapshot = Vec::new();
    rds_sensor::capture::FlowSource::snapshot(&mut state, &mut snapshot);
    let rss1 = rss_kib();
    // The flow map's kernel memory, read from its fd.
    let memlock = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target.to_string_lossy().contains("bpf-map").then_some(fd)
        })
        .map(map_memlock)
        .sum::<u64>();
    figures.push(figure(
        &format!("memory: flows held after {flows} SYNs"),
        snapshot.len() as f64,
        "flows",
        "flow table capacity",
        capacity as f64,
    ));
    figures.push(figure(
        "memory: all BPF maps (memlock)",
        memlock as f64 / 1048576.0,
        "MiB",
        "ring buffer alone",
        (LiveOptions::default().ring_bytes as f64) / 1048576.0,
    ));
    figures.push(figure(
        "memory: RSS growth during the flood",
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        "MiB",
        "RSS before loading",
        rss0 as f64 / 1024.0,
    ));
    agent_under_flood(quick, figures);
}

fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The whole agent (`rds-sensor run`) on a veth while a SYN flood from random sources (as
/// mirrored VXLAN frames) is replayed into it: its RSS, with the connection and flow tables
/// at their limits, against its RSS once attached and idle.
/// The agent's memory cap in the flood run: its queue, held bytes and connections are sized
/// from it (config::MemoryBudget); the ring is the default 16 MiB.
const MEMORY_CAP_MIB: usize = 128;

fn agent_under_flood(quick: bool, figures: &mut Vec<Figure>) {
    use rds_sensor::netns::VethPair;
    let n: u32 = if quick { 30_000 } else { 300_000 };
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let outer = Ip::V4(ENI, TARGET);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = (x as u32).to_be_bytes();
            vxlan(
                7341,
                0x08,
                &inner_tcp(
                    Ip::V4(src, SERVER),
                    (x >> 32) as u16 | 1024,
                    5432,
                    f::SYN,
                    &[],
                ),
                outer,
                &[],
            )
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("rds-sensor-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("flood.pcap");
    write_pcap(&pcap, &frames);
    let pair = VethPair::new("bf").expect("veth pair");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .args([
            "run",
            "--iface",
            &pair.outside,
            "--json",
            "--no-tui",
            "--flow-entries",
            "65536",
            "--memory-mib",
            &MEMORY_CAP_MIB.to_string(),
            // Workers on: a ring, a reader and a shard each, within the same cap.
            "--workers",
            "2",
            "--rings",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rds-sensor");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle = rss_kib_of(agent.id());
    let mut peak = idle;
    let replay = std::thread::spawn({
        let ns = pair.ns.name.clone();
        let inside = pair.inside.clone();
        let pcap = pcap.clone();
        move || {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "tcpreplay",
                    "-q",
                    "--topspeed",
                    "-i",
                    &inside,
                ])
                .arg(&pcap)
                .output()
                .expect("tcpreplay")
        }
    });
    while !replay.is_finished() {
        peak = peak.max(rss_kib_of(agent.id()));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for _ in 0..20 {
        peak = peak.max(rss_kib_of(agent.id()));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = replay.join();
    // SAFETY: kill(2) takes a pid and a signal number; no memory is passed.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
    figures.push(figure(
        &format!("memory: agent RSS peak, {n} SYNs from random sources"),
        peak as f64 / 1024.0,
        "MiB",
        "the configured cap (--memory-mib)",
        MEMORY_CAP_MIB as f64,
    ));
    figures.push(figure(
        "memory: agent RSS attached, idle",
        idle as f64 / 1024.0,
        "MiB",
        "the configured cap (--memory-mib)",
        MEMORY_CAP_MIB as f64,
    ));
}
