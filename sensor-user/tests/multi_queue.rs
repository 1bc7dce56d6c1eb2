//! Several receive queues, rings and workers (issue 17, part 3).
//!
//! A NIC spreads mirrored frames over its receive queues by a hash of their outer headers,
//! and the two directions of one connection have different outer UDP ports: they can be read
//! by different CPUs, rings and readers, and a response can reach the decoders before its
//! request. These tests check that the records do not change:
//! - without root, on the bundled captures, with every response read ahead of its turn (and
//!   with a request the mirror lost);
//! - live, on a veth with two receive queues read by two CPUs, two rings and two workers,
//!   against the same captures read by one, and by `analyze`.

mod common;

use common::*;
use rds_sensor::{
    agent::AgentOptions,
    capture::{
        live::{AttachMode, LiveOptions, Sensor},
        packet::{Decapsulator, LinkType},
        pcap::PcapReader,
    },
    model::{Clock, FlowEnd, FlowRecord, Record},
    netns::VethPair,
};
use sensor_common::{DEFAULT_DB_PORTS, EventHeader, SensorConfig, counter as c, direction};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

fn captures() -> Vec<PathBuf> {
    let d = pcaps_dir();
    [
        "pg-queries.pcap",
        "pg-extended.pcap",
        "pg-auth.pcap",
        "mysql-queries.pcap",
        "mysql-prepared.pcap",
        "mysql-auth.pcap",
        "tds-clients.pcap",
        "scenarios/benign.pcap",
        "scenarios/mixed.pcap",
    ]
    .iter()
    .map(|n| d.join(n))
    .collect()
}

/// The capture's events, as the kernel's twin makes them, in capture order.
fn events(pcap: &Path) -> Vec<Vec<u8>> {
    let mut reader = PcapReader::open(pcap).expect("open");
    let mut decap = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 1 << 16);
    let mut out = Vec::new();
    let mut rec = Vec::new();
    while let Some(f) = reader.next_frame().expect("frame") {
        let link = LinkType::from_pcap(f.linktype).expect("link type");
        decap.process(link, f.data, f.orig_len, f.ts_ns, &mut rec);
        if !rec.is_empty() {
            out.push(rec.clone());
        }
    }
    out
}

fn header(record: &[u8]) -> EventHeader {
    // SAFETY: records made by the twin start with a whole header; read unaligned.
    unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<EventHeader>()) }
}

/// Feeds `events` to a pipeline and returns its records, every flow ended.
fn run(events: &[Vec<u8>]) -> (Vec<Record>, u64) {
    let (mut p, records) = collecting(Clock::default());
    for e in events {
        p.on_record(e);
    }
    let mut none = NoFlows;
    p.expire_flows(&mut none, u64::MAX, Some(FlowEnd::EndOfCapture))
        .unwrap();
    let waited = p.shard.streams.stats.waited_for_peer;
    let r = records.lock().unwrap().clone();
    (r, waited)
}

/// No kernel flow table: every segment was delivered as an event.
struct NoFlows;

impl rds_sensor::capture::FlowSource for NoFlows {
    fn snapshot(&mut self, out: &mut Vec<(sensor_common::FlowKey, sensor_common::FlowStats)>) {
        out.clear();
    }
    fn remove(&mut self, _: &sensor_common::FlowKey) {}
}

/// What a connection's decoders said: every login, query and TLS record whole (times and
/// latencies included, which come from the events' own timestamps), sorted.
fn said(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Login(_) | Record::Query(_) | Record::Tls(_) | Record::TlsExchange(_)
            )
        })
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    v.sort();
    v
}

/// Per connection id: packets and bytes each way.
fn flows(records: &[Record]) -> BTreeMap<String, [u64; 4]> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f @ FlowRecord { .. }) => Some((
                format!("{} {}", f.endpoint.client, f.endpoint.server),
                [
                    f.packets_to_server,
                    f.packets_to_client,
                    f.bytes_to_server,
                    f.bytes_to_client,
                ],
            )),
            _ => None,
        })
        .collect()
}

/// One direction (`TO_CLIENT` or `TO_SERVER`) read `ahead` events early, as when its receive
/// queue is processed ahead of the other's: responses before their requests, or requests
/// before the server's SYN-ACK and the responses they acknowledge.
fn ahead_by(events: &[Vec<u8>], dir: u8, ahead: usize) -> Vec<Vec<u8>> {
    // Half positions: a server event `ahead` places early goes before the client event there.
    let mut keyed: Vec<(isize, &Vec<u8>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let i = 2 * i as isize;
            let at = if header(e).direction == dir {
                i - 2 * ahead as isize - 1
            } else {
                i
            };
            (at, e)
        })
        .collect();
    keyed.sort_by_key(|&(at, _)| at);
    keyed.into_iter().map(|(_, e)| e.clone()).collect()
}

/// Regression (issue 17, part 3): a response read before its request was decoded first and
/// paired with nothing. The reassembly holds an event that acknowledges bytes of the other
/// direction it has not seen, until they come; the records are then those of the capture read
/// in order, times, latencies and connection ids included.
#[test]
fn responses_read_before_their_requests_decode_as_in_order() {
    for pcap in captures() {
        let name = pcap.display().to_string();
        let evs = events(&pcap);
        let (base, waited_in_order) = run(&evs);
        assert_eq!(waited_in_order, 0, "{name}: in order, nothing waits");
        assert!(!said(&base).is_empty(), "{name}: nothing decoded");
        for (side, dir) in [
            ("server", direction::TO_CLIENT),
            ("client", direction::TO_SERVER),
        ] {
            for ahead in [1, 3, 8, 30] {
                let (skewed, waited) = run(&ahead_by(&evs, dir, ahead));
                assert!(
                    waited > 0,
                    "{name}, {side} {ahead} ahead: no event had to wait"
                );
                assert_eq!(
                    said(&skewed),
                    said(&base),
                    "{name}: the {side}'s direction {ahead} events ahead"
                );
                assert_eq!(
                    flows(&skewed),
                    flows(&base),
                    "{name}: flows, {side} {ahead} ahead"
                );
            }
        }
    }
}

/// A request the mirror lost never comes: its response waits no longer than
/// `CAUSAL_WAIT_NS` of capture time, then goes on as it would have at once, and the records
/// are those of the same loss read in order.
#[test]
fn a_response_whose_request_was_lost_goes_on_after_the_wait() {
    let pcap = pcaps_dir().join("pg-queries.pcap");
    let mut evs = events(&pcap);
    // Lose the third client segment with payload.
    let lost = evs
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            let h = header(e);
            h.direction == direction::TO_SERVER && h.payload_len > 0
        })
        .nth(2)
        .map(|(i, _)| i)
        .expect("three requests");
    evs.remove(lost);
    let (base, _) = run(&evs);
    let (skewed, waited) = run(&ahead_by(&evs, direction::TO_CLIENT, 2));
    assert!(waited > 0, "nothing waited");
    assert_eq!(said(&skewed), said(&base));
    assert_eq!(flows(&skewed), flows(&base));
}

/// One live run: the capture replayed into a veth with `queues` receive queues, each read by
/// a NAPI thread of its own pinned to its own CPU, the sensor with `queues` rings and
/// `workers` workers.
fn live(pcap: &Path, queues: u16, workers: usize) -> (Vec<Record>, rds_sensor::agent::AgentReport) {
    let pair = VethPair::with_queues("mq", queues).expect("veth pair");
    let mut sensor = Sensor::load(&LiveOptions {
        ring_bytes: 64 << 20,
        rings: Some(queues),
        ..LiveOptions::default()
    })
    .expect("load");
    sensor
        .attach(&pair.outside, AttachMode::Native)
        .expect("attach");
    // Threaded NAPI: each receive queue is polled by a kernel thread of its own, pinned to its
    // own CPU, as a NIC's queues are by their interrupts' affinity.
    rds_sensor::netns::pin_napi_threads(&pair.outside, queues, false).expect("NAPI threads");
    let (pipeline, records) = collecting(Clock::monotonic());
    let report = agent_during_replay(
        &mut sensor,
        pipeline,
        AgentOptions {
            workers,
            ..AgentOptions::default()
        },
        &pair,
        Replay {
            pcap,
            wrapper: &[],
            args: &[],
            delay: std::time::Duration::ZERO,
        },
    );
    sensor.detach().unwrap();
    let r = records.lock().unwrap().clone();
    (r, report)
}

/// Two receive queues on two CPUs, two rings, two readers, two workers: the same logins,
/// queries and flows as one of each and as `analyze`, no event lost, and both rings used.
#[test]
fn two_receive_queues_and_two_workers_read_what_one_does() {
    if !kernel_available("two_receive_queues_and_two_workers_read_what_one_does") {
        return;
    }
    let cpus = rds_sensor::capture::live::default_cpus();
    assert!(
        cpus >= 2,
        "this test needs 2 CPUs (CI has 2), this machine has {cpus}"
    );
    let mut per_ring = vec![0u64; 2];
    let mut waited = 0u64;
    for pcap in captures() {
        let name = pcap.display().to_string();
        let truth = analyze_records(&pcap);
        let (one, r1) = live(&pcap, 1, 1);
        let (two, r2) = live(&pcap, 2, 2);
        for (what, records, r) in [("1 queue", &one, &r1), ("2 queues", &two, &r2)] {
            let k = r.counters;
            assert_eq!(
                k[c::EVENTS_DROPPED as usize],
                0,
                "{name}, {what}: ring drops"
            );
            assert_eq!(r.queue_dropped, 0, "{name}, {what}: queue drops");
            assert_eq!(r.events, r.records_read, "{name}, {what}: events decoded");
            assert_eq!(
                decoded(records),
                decoded(&truth),
                "{name}, {what}: logins and queries against analyze"
            );
            assert_eq!(
                flows(records),
                flows(&truth),
                "{name}, {what}: flows against analyze"
            );
        }
        assert_eq!(decoded(&two), decoded(&one), "{name}: 2 queues against 1");
        assert_eq!(r2.records_per_ring.len(), 2);
        for (t, n) in per_ring.iter_mut().zip(&r2.records_per_ring) {
            *t += n;
        }
        waited += two
            .iter()
            .filter_map(|r| match r {
                Record::Summary(s) => Some(s.streams.waited_for_peer),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        eprintln!(
            "{name}: {} events, per ring {:?}, = 1 queue = analyze",
            r2.events, r2.records_per_ring
        );
    }
    assert!(
        per_ring.iter().all(|&n| n > 0),
        "both queues' CPUs wrote events: {per_ring:?}"
    );
    eprintln!("events that waited for the other direction: {waited}");
}
