//! The XDP program run on fixture frames through BPF_PROG_TEST_RUN (`Xdp::test_run`):
//! frame in → verdict, counters, ring-buffer record and flow summary out. Each fixture states
//! its expectation by hand, and the offline twin (capture::packet) must agree with the kernel
//! byte for byte, so `analyze` and the live path decode the same events.

mod common;

use aya::programs::{TestRun, TestRunOptions};
use common::*;
use rds_sensor::{
    capture::{
        FlowSource,
        live::{LiveOptions, Sensor},
        packet::{Decapsulator, LinkType, Verdict},
    },
    event::Event,
};
use sensor_common::{EventHeader, NO_VNI, SensorConfig, counter as c, direction, tcp_flags as f};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

struct Harness {
    sensor: Sensor,
    /// Every ring in use: a test run's event goes to the ring of the CPU it ran on.
    rings: Vec<aya::maps::RingBuf<aya::maps::MapData>>,
    state: rds_sensor::capture::live::KernelState,
    twin: Decapsulator,
}

/// What one frame did in the kernel.
struct Outcome {
    verdict: u32,
    delta: [u64; c::COUNT as usize],
    records: Vec<Vec<u8>>,
}

impl Harness {
    fn new(config: SensorConfig) -> Self {
        let opts = LiveOptions {
            config,
            ring_bytes: 1 << 20,
            ..LiveOptions::default()
        };
        let mut sensor = Sensor::load(&opts).expect("loading the XDP program");
        let rings = sensor.take_rings().unwrap();
        let state = sensor.take_state().unwrap();
        let twin = Decapsulator::new(config, &opts.ports, 1024);
        Self {
            sensor,
            rings,
            state,
            twin,
        }
    }

    fn run(&mut self, name: &str, frame: &[u8]) -> Outcome {
        let before = self.state.counters().unwrap();
        let res = self
            .sensor
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: 1,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("{name}: test_run: {e}"));
        let after = self.state.counters().unwrap();
        let mut delta = [0u64; c::COUNT as usize];
        for i in 0..delta.len() {
            delta[i] = after[i] - before[i];
        }
        let mut records = Vec::new();
        for ring in &mut self.rings {
            while let Some(item) = ring.next() {
                records.push(item.to_vec());
            }
        }
        // The twin must agree on everything but the clock.
        let twin_before = self.twin.counters;
        let mut rec = Vec::new();
        let v = self
            .twin
            .process(LinkType::Ethernet, frame, frame.len() as u32, 0, &mut rec);
        let twin_verdict = if v == Verdict::Drop {
            XDP_DROP
        } else {
            XDP_PASS
        };
        assert_eq!(twin_verdict, res.return_value, "{name}: twin verdict");
        let mut twin_delta = [0u64; c::COUNT as usize];
        for i in 0..twin_delta.len() {
            twin_delta[i] = self.twin.counters[i] - twin_before[i];
        }
        assert_eq!(twin_delta, delta, "{name}: twin counters ({:?})", c::NAMES);
        let twin_records: Vec<Vec<u8>> = if rec.is_empty() { vec![] } else { vec![rec] };
        assert_eq!(
            records.iter().map(|r| without_clock(r)).collect::<Vec<_>>(),
            twin_records
                .iter()
                .map(|r| without_clock(r))
                .collect::<Vec<_>>(),
            "{name}: twin record"
        );
        Outcome {
            verdict: res.return_value,
            delta,
            records,
        }
    }
}

fn without_clock(r: &[u8]) -> Vec<u8> {
    let mut v = r.to_vec();
    v[..8].fill(0);
    v
}

fn expect_counts(name: &str, o: &Outcome, expected: &[(u32, u64)]) {
    let mut want = [0u64; c::COUNT as usize];
    want[c::PACKETS as usize] = 1;
    for &(i, n) in expected {
        want[i as usize] = n;
    }
    let names = |a: &[u64]| -> Vec<String> {
        a.iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, v)| format!("{}={v}", c::NAMES[i]))
            .collect()
    };
    assert_eq!(names(&o.delta), names(&want), "{name}: counters");
}

fn one_event<'a>(name: &str, o: &'a Outcome) -> Event<'a> {
    assert_eq!(o.records.len(), 1, "{name}: one event");
    Event::parse(&o.records[0]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..].copy_from_slice(&v4);
    a
}

fn pg_query(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((4 + sql.len() + 1) as u32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

#[allow(clippy::too_many_arguments)]
fn check_hdr(
    name: &str,
    h: &EventHeader,
    dir: u8,
    client: [u8; 16],
    server: [u8; 16],
    cport: u16,
    sport: u16,
    vni: u32,
) {
    assert_eq!(h.direction, dir, "{name}: direction");
    assert_eq!(h.key.client_addr, client, "{name}: client address");
    assert_eq!(h.key.server_addr, server, "{name}: server address");
    assert_eq!(
        (h.key.client_port, h.key.server_port),
        (cport, sport),
        "{name}: ports"
    );
    assert_eq!(h.key.vni, vni, "{name}: vni");
}

#[test]
fn xdp_fixtures() {
    if !kernel_available("xdp_fixtures") {
        return;
    }
    let mut h = Harness::new(SensorConfig::default());
    let outer4 = Ip::V4(ENI, TARGET);
    let inner4 = Ip::V4(CLIENT, SERVER);
    let inner4_back = Ip::V4(SERVER, CLIENT);

    // A PostgreSQL request inside VXLAN: consumed (XDP_DROP), one event with the whole payload.
    let q = pg_query("select 1");
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4, 40000, 5432, f::PSH | f::ACK, &q),
        outer4,
        &[],
    );
    let o = h.run("vxlan_request", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    expect_counts(
        "vxlan_request",
        &o,
        &[
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::DROPPED, 1),
        ],
    );
    let ev = one_event("vxlan_request", &o);
    check_hdr(
        "vxlan_request",
        &ev.hdr,
        direction::TO_SERVER,
        mapped(CLIENT),
        mapped(SERVER),
        40000,
        5432,
        7341,
    );
    assert_eq!(
        (ev.hdr.payload_len, ev.hdr.captured_len),
        (q.len() as u32, q.len() as u32)
    );
    assert_eq!(ev.head(), &q[..]);
    assert!(ev.tail().is_empty());
    assert_eq!(
        (
            ev.hdr.seq,
            ev.hdr.ack,
            ev.hdr.tcp_flags,
            ev.hdr.proto,
            ev.hdr.ip_version
        ),
        (1000, 2000, f::PSH | f::ACK, 1, 4)
    );
    assert_eq!(ev.hdr.wire_len as usize, frame.len());

    // A long response: head + tail, the tail ends with ReadyForQuery.
    let mut resp: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let n = resp.len();
    resp[n - 6..].copy_from_slice(b"Z\0\0\0\x05I");
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4_back, 5432, 40000, f::PSH | f::ACK, &resp),
        outer4,
        &[],
    );
    let o = h.run("vxlan_long_response", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    expect_counts(
        "vxlan_long_response",
        &o,
        &[
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::DROPPED, 1),
            (c::CAPPED, 1),
        ],
    );
    let ev = one_event("vxlan_long_response", &o);
    check_hdr(
        "vxlan_long_response",
        &ev.hdr,
        direction::TO_CLIENT,
        mapped(CLIENT),
        mapped(SERVER),
        40000,
        5432,
        7341,
    );
    let cfg = SensorConfig::default();
    assert_eq!(ev.head().len(), (cfg.payload_cap - cfg.tail_cap) as usize);
    assert_eq!(ev.head(), &resp[..ev.head().len()]);
    assert_eq!(ev.tail(), &resp[n - cfg.tail_cap as usize..]);
    assert!(ev.tail().ends_with(b"Z\0\0\0\x05I"));

    // The same flow marked whole (as user space marks a TLS session it reads with keys): the
    // segment the caps cut goes whole, and is not counted capped; kernel and twin agree.
    let key = ev.hdr.key;
    rds_sensor::capture::FlowSource::mark_whole(&mut h.state, &key);
    h.twin.mark_whole(&key);
    let o = h.run("vxlan_long_response_whole", &frame);
    expect_counts(
        "vxlan_long_response_whole",
        &o,
        &[
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::DROPPED, 1),
        ],
    );
    let ev = one_event("vxlan_long_response_whole", &o);
    assert_eq!(ev.head(), &resp[..], "the whole segment");
    assert!(ev.tail().is_empty());

    // Mirrored but not database traffic: consumed, counted, no event.
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4, 40001, 8080, f::ACK, b"GET / HTTP/1.1\r\n"),
        outer4,
        &[],
    );
    let o = h.run("vxlan_non_db", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    expect_counts(
        "vxlan_non_db",
        &o,
        &[(c::VXLAN, 1), (c::NON_DB, 1), (c::DROPPED, 1)],
    );
    assert!(o.records.is_empty());

    // Plain (SPAN) database segment: passed to the host, with an event and no VNI.
    let frame = inner_tcp(inner4, 40002, 3306, f::PSH | f::ACK, b"\x05\0\0\0\x0eabcd");
    let o = h.run("plain_mysql", &frame);
    assert_eq!(o.verdict, XDP_PASS);
    expect_counts(
        "plain_mysql",
        &o,
        &[
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::PASSED, 1),
        ],
    );
    let ev = one_event("plain_mysql", &o);
    check_hdr(
        "plain_mysql",
        &ev.hdr,
        direction::TO_SERVER,
        mapped(CLIENT),
        mapped(SERVER),
        40002,
        3306,
        NO_VNI,
    );
    assert_eq!(ev.hdr.proto, 2);

    // The host's own traffic (SSH): passed, nothing else.
    let frame = inner_tcp(inner4, 40003, 22, f::ACK, b"SSH-2.0-x");
    let o = h.run("host_ssh", &frame);
    assert_eq!(o.verdict, XDP_PASS);
    expect_counts("host_ssh", &o, &[(c::NON_DB, 1), (c::PASSED, 1)]);

    // ARP: not IP, passed untouched.
    let o = h.run("arp", &eth(0x0806, &[], &[0u8; 28]));
    assert_eq!(o.verdict, XDP_PASS);
    expect_counts("arp", &o, &[(c::PASSED, 1)]);

    // IPv6 inside, IPv6 outside with QinQ tags.
    let inner6 = Ip::V6(v6(0x20), v6(0x10));
    let frame = vxlan(
        42,
        0x08,
        &inner_tcp(inner6, 40004, 5432, f::PSH | f::ACK, &q),
        Ip::V6(v6(0x07), v6(0x05)),
        &[(0x88a8, 100), (0x8100, 200)],
    );
    let o = h.run("ipv6_qinq", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    let ev = one_event("ipv6_qinq", &o);
    check_hdr(
        "ipv6_qinq",
        &ev.hdr,
        direction::TO_SERVER,
        v6(0x20),
        v6(0x10),
        40004,
        5432,
        42,
    );
    assert_eq!(ev.hdr.ip_version, 6);

    // IPv4 options and IPv6 extension headers (hop-by-hop, destination options) are skipped.
    let t = tcp(40005, 5432, 1, 1, f::PSH | f::ACK, &q);
    let frame = vxlan(
        1,
        0x08,
        &eth(
            0x0800,
            &[],
            &ip(inner4, 6, &t, &[1, 1, 1, 0, 0x94, 4, 0, 0], &[]),
        ),
        outer4,
        &[],
    );
    let ev_o = h.run("ipv4_options", &frame);
    assert_eq!(one_event("ipv4_options", &ev_o).head(), &q[..]);
    let ext = vec![
        (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]),
        (60u8, vec![0, 0, 1, 4, 0, 0, 0, 0]),
    ];
    let frame = vxlan(
        1,
        0x08,
        &eth(0x86dd, &[], &ip(inner6, 6, &t, &[], &ext)),
        outer4,
        &[],
    );
    let o = h.run("ipv6_ext_headers", &frame);
    let ev = one_event("ipv6_ext_headers", &o);
    assert_eq!(ev.head(), &q[..]);
    assert_eq!(ev.hdr.key.client_port, 40005);

    // A VXLAN header without the I flag: not a valid copy; consumed and counted, no event.
    let frame = vxlan(
        7341,
        0x00,
        &inner_tcp(inner4, 40000, 5432, f::ACK, &q),
        outer4,
        &[],
    );
    let o = h.run("vxlan_bad_flags", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    expect_counts("vxlan_bad_flags", &o, &[(c::VXLAN_BAD, 1), (c::DROPPED, 1)]);

    // Truncated by the mirror session's PacketLength: the IP header keeps the true length.
    let big = pg_query(&"x".repeat(1000));
    let mut frame = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4, 40000, 5432, f::PSH | f::ACK, &big),
        outer4,
        &[],
    );
    frame.truncate(128);
    let o = h.run("truncated", &frame);
    expect_counts(
        "truncated",
        &o,
        &[
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::DROPPED, 1),
            (c::TRUNCATED, 1),
        ],
    );
    let ev = one_event("truncated", &o);
    let headers = 14 + 20 + 8 + 8 + 14 + 20 + 20;
    assert_eq!(
        (ev.hdr.payload_len, ev.hdr.captured_len),
        (big.len() as u32, (128 - headers) as u32)
    );
    assert_eq!(ev.head(), &big[..128 - headers]);

    // A non-first IPv4 fragment has no TCP header: counted, no event.
    let mut pkt = ip(inner4, 6, &[0u8; 40], &[], &[]);
    pkt[6] = 0x00;
    pkt[7] = 0x10;
    let o = h.run(
        "fragment",
        &vxlan(1, 0x08, &eth(0x0800, &[], &pkt), outer4, &[]),
    );
    expect_counts(
        "fragment",
        &o,
        &[(c::VXLAN, 1), (c::FRAGMENTS, 1), (c::DROPPED, 1)],
    );

    // A TCP data offset pointing past the segment: malformed.
    let mut t = tcp(40006, 5432, 1, 1, f::ACK, b"abc");
    t[12] = 15 << 4;
    let o = h.run(
        "bad_data_offset",
        &vxlan(
            1,
            0x08,
            &eth(0x0800, &[], &ip(inner4, 6, &t, &[], &[])),
            outer4,
            &[],
        ),
    );
    expect_counts(
        "bad_data_offset",
        &o,
        &[
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::MALFORMED, 1),
            (c::DROPPED, 1),
        ],
    );

    // SYN: a control event without payload, and the flow's SYN count.
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4, 40007, 5432, f::SYN, &[]),
        outer4,
        &[],
    );
    let o = h.run("syn", &frame);
    let ev = one_event("syn", &o);
    assert_eq!((ev.hdr.payload_len, ev.hdr.tcp_flags), (0, f::SYN));
    // The inner datagram's length, from its header (20 IP + 20 TCP): what its flow counts.
    assert_eq!(ev.hdr.ip_len, 40);

    // GENEVE from a Gateway Load Balancer: the original IP packet inside; when the GWLB
    // endpoint is a mirror target, that packet is the mirror session's VXLAN.
    let mirrored = vxlan(
        7341,
        0x08,
        &inner_tcp(inner4, 40009, 5432, f::PSH | f::ACK, &q),
        outer4,
        &[],
    );
    let gwlb_options = [0x01, 0x08, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]; // one 8-byte option
    let frame = geneve(
        77,
        0,
        0x0800,
        &gwlb_options,
        &mirrored[14..],
        Ip::V4(ENI, TARGET),
    );
    let o = h.run("geneve_vxlan", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    expect_counts(
        "geneve_vxlan",
        &o,
        &[
            (c::GENEVE, 1),
            (c::VXLAN, 1),
            (c::DB_SEGMENTS, 1),
            (c::DB_PAYLOAD_SEGMENTS, 1),
            (c::EVENTS_SENT, 1),
            (c::DROPPED, 1),
        ],
    );
    let ev = one_event("geneve_vxlan", &o);
    check_hdr(
        "geneve_vxlan",
        &ev.hdr,
        direction::TO_SERVER,
        mapped(CLIENT),
        mapped(SERVER),
        40009,
        5432,
        7341,
    );
    assert_eq!(ev.head(), &q[..]);
    // GENEVE straight around the database packet (IP, then Ethernet): the GENEVE VNI is used.
    let pkt = inner_tcp(inner4, 40010, 5432, f::PSH | f::ACK, &q);
    let o = h.run(
        "geneve_ip",
        &geneve(78, 0, 0x0800, &[], &pkt[14..], Ip::V4(ENI, TARGET)),
    );
    check_hdr(
        "geneve_ip",
        &one_event("geneve_ip", &o).hdr,
        direction::TO_SERVER,
        mapped(CLIENT),
        mapped(SERVER),
        40010,
        5432,
        78,
    );
    let o = h.run(
        "geneve_eth",
        &geneve(79, 0, 0x6558, &[], &pkt, Ip::V4(ENI, TARGET)),
    );
    check_hdr(
        "geneve_eth",
        &one_event("geneve_eth", &o).hdr,
        direction::TO_SERVER,
        mapped(CLIENT),
        mapped(SERVER),
        40010,
        5432,
        79,
    );
    // An unknown GENEVE version is malformed, not parsed.
    let o = h.run(
        "geneve_v1",
        &geneve(80, 1, 0x0800, &[], &pkt[14..], Ip::V4(ENI, TARGET)),
    );
    expect_counts("geneve_v1", &o, &[(c::MALFORMED, 1), (c::DROPPED, 1)]);
    let frame = geneve(
        77,
        0,
        0x0800,
        &gwlb_options,
        &mirrored[14..],
        Ip::V4(ENI, TARGET),
    );
    for cut in 14..frame.len() {
        h.run(&format!("geneve_cut_at_{cut}"), &frame[..cut]);
    }

    // Plain IPv6 (the direct-access IPv6 path): a database segment, a UDP datagram that is
    // not VXLAN, VXLAN over untagged IPv6 (handed to the general path), and every cut.
    let inner6 = Ip::V6(v6(0x20), v6(0x10));
    let frame = inner_tcp(inner6, 40010, 5432, f::PSH | f::ACK, &q);
    let o = h.run("host_ipv6_db", &frame);
    assert_eq!(o.verdict, XDP_PASS);
    let ev = one_event("host_ipv6_db", &o);
    check_hdr(
        "host_ipv6_db",
        &ev.hdr,
        direction::TO_SERVER,
        v6(0x20),
        v6(0x10),
        40010,
        5432,
        NO_VNI,
    );
    assert_eq!(ev.hdr.ip_version, 6);
    assert_eq!(ev.head(), &q[..]);
    let back = inner_tcp(Ip::V6(v6(0x10), v6(0x20)), 5432, 40010, f::ACK, &[]);
    let o = h.run("host_ipv6_db_ack", &back);
    expect_counts(
        "host_ipv6_db_ack",
        &o,
        &[(c::DB_SEGMENTS, 1), (c::PASSED, 1)],
    );
    let frame = eth(
        0x86dd,
        &[],
        &ip(inner6, 17, &udp(5353, 53, b"dns"), &[], &[]),
    );
    let o = h.run("host_ipv6_udp", &frame);
    expect_counts("host_ipv6_udp", &o, &[(c::NON_DB, 1), (c::PASSED, 1)]);
    let frame = vxlan(
        9,
        0x08,
        &inner_tcp(Ip::V4(CLIENT, SERVER), 40011, 5432, f::PSH | f::ACK, &q),
        Ip::V6(v6(0x07), v6(0x05)),
        &[],
    );
    let o = h.run("vxlan_over_ipv6", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    assert_eq!(one_event("vxlan_over_ipv6", &o).hdr.key.vni, 9);
    let frame = inner_tcp(inner6, 40012, 5432, f::PSH | f::ACK, &q);
    for cut in 14..frame.len() {
        h.run(&format!("ipv6_cut_at_{cut}"), &frame[..cut]);
    }
    // IPv6 inside untagged VXLAN over IPv4 (the direct path), a response, and every cut.
    let frame = vxlan(
        11,
        0x08,
        &inner_tcp(Ip::V6(v6(0x10), v6(0x20)), 5432, 40013, f::PSH | f::ACK, &q),
        outer4,
        &[],
    );
    let o = h.run("vxlan_inner_ipv6", &frame);
    assert_eq!(o.verdict, XDP_DROP);
    let ev = one_event("vxlan_inner_ipv6", &o);
    check_hdr(
        "vxlan_inner_ipv6",
        &ev.hdr,
        direction::TO_CLIENT,
        v6(0x20),
        v6(0x10),
        40013,
        5432,
        11,
    );
    assert_eq!(ev.hdr.ip_version, 6);
    assert_eq!(ev.head(), &q[..]);
    for cut in 14..frame.len() {
        h.run(&format!("vxlan_inner_ipv6_cut_at_{cut}"), &frame[..cut]);
    }
    let frame = vxlan(
        11,
        0x08,
        &eth(
            0x86dd,
            &[],
            &ip(inner6, 17, &udp(5353, 53, b"dns"), &[], &[]),
        ),
        outer4,
        &[],
    );
    let o = h.run("vxlan_inner_ipv6_udp", &frame);
    expect_counts(
        "vxlan_inner_ipv6_udp",
        &o,
        &[(c::VXLAN, 1), (c::NON_DB, 1), (c::DROPPED, 1)],
    );

    // Every truncation of a valid frame: a verdict and counters, never a fault, and the twin
    // agrees at every length (checked inside run()).
    let frame = vxlan(
        7341,
        0x08,
        &inner_tcp(Ip::V4(CLIENT, SERVER), 40008, 5432, f::PSH | f::ACK, &q),
        outer4,
        &[(0x8100, 5)],
    );
    for cut in 14..frame.len() {
        let o = h.run(&format!("cut_at_{cut}"), &frame[..cut]);
        assert!(o.verdict == XDP_DROP || o.verdict == XDP_PASS);
    }

    // The kernel's flow table equals the twin's (timestamps aside).
    let mut kernel = Vec::new();
    h.state.snapshot(&mut kernel);
    let mut twin = Vec::new();
    h.twin.flows.snapshot(&mut twin);
    let norm = |v: &mut Vec<(sensor_common::FlowKey, sensor_common::FlowStats)>| {
        for (_, s) in v.iter_mut() {
            s.first_ns = 0;
            s.last_ns = 0;
        }
        v.sort_by_key(|(k, _)| *k);
    };
    norm(&mut kernel);
    norm(&mut twin);
    assert_eq!(kernel, twin, "flow tables");
    // A segment whose event was delivered is the event's to count (user space adds it to its
    // flow): the SYN's flow is in neither table; its event above carries what it counts.
    assert!(
        kernel.iter().all(|(k, _)| k.client_port != 40007),
        "a delivered event's segment counted by the kernel too"
    );
}

#[test]
fn xdp_config_is_honoured() {
    if !kernel_available("xdp_config_is_honoured") {
        return;
    }
    // Mirror copies passed through, no control events, a tiny cap, and a custom port.
    let config = SensorConfig {
        payload_cap: 16,
        tail_cap: 4,
        flags: 0,
        ..SensorConfig::default()
    };
    let mut h = Harness::new(config);
    let q = pg_query("select * from big_table where id = 42");
    let frame = vxlan(
        9,
        0x08,
        &inner_tcp(Ip::V4(CLIENT, SERVER), 40000, 5432, f::PSH | f::ACK, &q),
        Ip::V4(ENI, TARGET),
        &[],
    );
    let o = h.run("pass_mirrored", &frame);
    assert_eq!(o.verdict, XDP_PASS);
    let ev = one_event("pass_mirrored", &o);
    assert_eq!(ev.head(), &q[..12]);
    assert_eq!(ev.tail(), &q[q.len() - 4..]);
    let frame = vxlan(
        9,
        0x08,
        &inner_tcp(Ip::V4(CLIENT, SERVER), 40001, 5432, f::SYN, &[]),
        Ip::V4(ENI, TARGET),
        &[],
    );
    let o = h.run("no_control_events", &frame);
    assert!(o.records.is_empty());
    assert_eq!(o.delta[c::DB_SEGMENTS as usize], 1);
}

/// The reader is woken once when the waiting bytes cross the threshold (default: an eighth of
/// the ring), not per record: records below it leave a blocked reader asleep (it drains on
/// its timer), and the record that crosses it wakes it. A threshold that never reached the
/// kernel made every record a wakeup (~4 µs of agent CPU per database packet).
#[test]
fn ring_wakes_the_reader_when_the_threshold_is_crossed() {
    use std::os::fd::AsRawFd;
    if !kernel_available("ring_wakes_the_reader_when_the_threshold_is_crossed") {
        return;
    }
    let opts = LiveOptions {
        ring_bytes: 64 << 10,
        rings: Some(1),
        ..LiveOptions::default()
    };
    let mut sensor = Sensor::load(&opts).expect("loading the XDP program");
    let ring = sensor.take_events().unwrap();
    let fd = ring.as_raw_fd();
    let frame = select_1_frame();
    let send = |n: u32| {
        sensor
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat: n,
                ..TestRunOptions::default()
            })
            .expect("test_run");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let poller = std::thread::spawn(move || {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: a valid pointer to one local pollfd, and a count of one.
        let n = unsafe { libc::poll(&mut p, 1, 10_000) };
        tx.send(n).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    // ~1.2 KiB of records against an 8 KiB threshold: no wakeup.
    send(10);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        rx.try_recv().is_err(),
        "the reader was woken below the threshold"
    );
    // Enough to cross it: one wakeup.
    send(100);
    let n = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the reader was not woken when the threshold was crossed");
    assert_eq!(n, 1);
    poller.join().unwrap();
    drop(ring);
}

/// Regression (flow accounting moved to delivered events): when the ring buffer is full, the
/// kernel counts the refused event's segment in `FLOWS` itself, so that a flow's totals stay
/// exact. A 4 KiB ring nobody reads takes a few events of 300 sent; the flow record the
/// pipeline makes from what was delivered and from the kernel's table counts all 300, as sent.
#[test]
fn a_full_ring_loses_no_segment_from_the_flow_totals() {
    if !kernel_available("a_full_ring_loses_no_segment_from_the_flow_totals") {
        return;
    }
    use rds_sensor::model::{FlowEnd, Record};
    use rds_sensor::pipeline::{Pipeline, PipelineOptions};
    use std::sync::{Arc, Mutex};

    let mut sensor = Sensor::load(&LiveOptions {
        ring_bytes: 4096,
        rings: Some(1),
        ..LiveOptions::default()
    })
    .expect("loading the XDP program");
    let mut ring = sensor.take_events().unwrap();
    let mut state = sensor.take_state().unwrap();
    let outer4 = Ip::V4(ENI, TARGET);
    let payload = [b'x'; 100];
    let send = |sensor: &mut Sensor, sport: u16, n: u32| {
        for _ in 0..n {
            let frame = vxlan(
                7341,
                0x08,
                &inner_tcp(
                    Ip::V4(CLIENT, SERVER),
                    sport,
                    5432,
                    f::PSH | f::ACK,
                    &payload,
                ),
                outer4,
                &[],
            );
            sensor
                .program()
                .unwrap()
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    repeat: 1,
                    ..TestRunOptions::default()
                })
                .unwrap();
        }
    };
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let mut pipeline = Pipeline::new(
        PipelineOptions::default(),
        Box::new(rds_sensor::sinks::Collect(records.clone())),
    );
    // One flow through a full ring; then, the ring drained, one whose every event arrives.
    send(&mut sensor, 41000, 300);
    let counters = state.counters().unwrap();
    let (sent, dropped) = (
        counters[c::EVENTS_SENT as usize],
        counters[c::EVENTS_DROPPED as usize],
    );
    assert_eq!(sent + dropped, 300);
    assert!(sent > 0 && dropped > 0, "sent {sent}, dropped {dropped}");
    let mut delivered = 0;
    while let Some(item) = ring.next() {
        pipeline.on_record(&item);
        delivered += 1;
    }
    assert_eq!(delivered, sent);
    send(&mut sensor, 41001, 7);
    while let Some(item) = ring.next() {
        pipeline.on_record(&item);
    }
    pipeline
        .expire_flows(&mut state, u64::MAX, Some(FlowEnd::EndOfCapture))
        .unwrap();
    let records = records.lock().unwrap();
    let flow = |port: u16| {
        let v: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Flow(f) if f.endpoint.client_port == port => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(v.len(), 1, "one record for the flow from port {port}");
        v[0].clone()
    };
    // 20 IP + 20 TCP + 100 payload bytes per segment, as built above.
    for (port, n) in [(41000u16, 300u64), (41001, 7)] {
        let f = flow(port);
        assert_eq!(
            (
                f.packets_to_server,
                f.bytes_to_server,
                f.payload_bytes_to_server
            ),
            (n, n * 140, n * 100),
            "flow from port {port}"
        );
    }
}

/// Pins the calling thread to one CPU (a test run executes on the CPU that makes the call).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}

/// One ring per CPU: an event goes to ring `cpu % rings`, whichever CPU ran the program, so
/// that receive queues on different CPUs never share a ring's producer lock or its reader.
/// With more CPUs than rings, the CPUs share rings round-robin.
#[test]
fn each_cpu_writes_its_events_to_its_own_ring() {
    if !kernel_available("each_cpu_writes_its_events_to_its_own_ring") {
        return;
    }
    let cpus = rds_sensor::capture::live::default_cpus();
    assert!(
        cpus >= 2,
        "this test needs 2 CPUs (CI has 2), this machine has {cpus}"
    );
    let frame = select_1_frame();
    for rings in [2u16, 1] {
        let mut sensor = Sensor::load(&LiveOptions {
            ring_bytes: 1 << 20,
            rings: Some(rings),
            ..LiveOptions::default()
        })
        .expect("loading the XDP program");
        assert_eq!(sensor.rings, rings);
        let mut taken = sensor.take_rings().unwrap();
        assert_eq!(taken.len(), rings as usize);
        // A thread of its own, pinned to each CPU in turn.
        let counts: Vec<Vec<usize>> = std::thread::scope(|s| {
            s.spawn(|| {
                (0..cpus.min(4))
                    .map(|cpu| {
                        pin_to_cpu(cpu);
                        sensor
                            .program()
                            .unwrap()
                            .test_run(TestRunOptions {
                                data_in: Some(&frame),
                                repeat: 3,
                                ..TestRunOptions::default()
                            })
                            .expect("test_run");
                        taken
                            .iter_mut()
                            .map(|ring| {
                                let mut n = 0;
                                while ring.next().is_some() {
                                    n += 1;
                                }
                                n
                            })
                            .collect()
                    })
                    .collect()
            })
            .join()
            .unwrap()
        });
        for (cpu, per_ring) in counts.iter().enumerate() {
            let mut want = vec![0usize; rings as usize];
            want[cpu % rings as usize] = 3;
            assert_eq!(per_ring, &want, "{rings} rings, CPU {cpu}: events per ring");
        }
    }
}

/// A mirrored (VXLAN) PostgreSQL `select 1` from the client.
fn select_1_frame() -> Vec<u8> {
    vxlan(
        7341,
        0x08,
        &inner_tcp(
            Ip::V4(CLIENT, SERVER),
            40000,
            5432,
            f::PSH | f::ACK,
            &pg_query("select 1"),
        ),
        Ip::V4(ENI, TARGET),
        &[],
    )
}
