//! The sensor attached to a real veth pair, each bundled capture replayed into it with
//! tcpreplay, and the results checked against ground truth computed by tshark from the
//! capture itself; then the same capture through `analyze`, which must report the same flows.

mod common;

use common::*;
use rds_sensor::{
    agent::AgentOptions,
    capture::live::{AttachMode, LiveOptions, Sensor},
    model::{Clock, FlowRecord, Record},
    netns::VethPair,
    offline::{self, OfflineOptions},
    pipeline::{Pipeline, PipelineOptions},
    sinks::Collect,
};
use sensor_common::{DEFAULT_DB_PORTS, SensorConfig, counter as c};
use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

/// Per flow (client, server, vni): packets and IP bytes each way.
type FlowCounts = BTreeMap<(String, String, Option<u32>), [u64; 4]>;

#[derive(Debug, Default)]
struct Truth {
    payload_segments: u64,
    control_segments: u64,
    flows: FlowCounts,
}

fn sock(addr: &str, port: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// Ground truth from tshark: every database TCP segment (inner headers for VXLAN).
fn truth(pcap: &Path) -> Truth {
    let ports: Vec<u16> = DEFAULT_DB_PORTS.iter().map(|(p, _)| *p).collect();
    let filter = format!(
        "tcp.port in {{{}}} && !(vxlan && vxlan.flag_i == 0)",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = tshark_fields(
        pcap,
        &filter,
        &[
            "frame.protocols",
            "vxlan.vni",
            "ip.src",
            "ip.dst",
            "ipv6.src",
            "ipv6.dst",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.len",
            "tcp.flags",
            "ip.len",
            "ipv6.plen",
        ],
    );
    let mut t = Truth::default();
    for r in rows {
        let protos = &r[0];
        // The innermost IP layer decides which address fields are the inner ones.
        let inner_v6 = protos.rfind(":ipv6:").unwrap_or(0) > protos.rfind(":ip:").unwrap_or(0);
        let (src, dst, len) = if inner_v6 {
            (&r[4], &r[5], 40 + r[11].parse::<u64>().unwrap())
        } else {
            (&r[2], &r[3], r[10].parse::<u64>().unwrap())
        };
        let (sp, dp): (u16, u16) = (r[6].parse().unwrap(), r[7].parse().unwrap());
        let to_server = ports.contains(&dp);
        let vni = (!r[1].is_empty()).then(|| r[1].parse::<u32>().unwrap());
        let key = if to_server {
            (sock(src, &r[6]), sock(dst, &r[7]), vni)
        } else {
            (sock(dst, &r[7]), sock(src, &r[6]), vni)
        };
        let _ = sp;
        let e = t.flows.entry(key).or_default();
        let d = if to_server { 0 } else { 1 };
        e[d] += 1;
        e[2 + d] += len;
        let payload: u64 = r[8].parse().unwrap();
        let flags = u8::from_str_radix(r[9].trim_start_matches("0x"), 16).unwrap_or(0);
        if payload > 0 {
            t.payload_segments += 1;
        } else if flags & 0x07 != 0 {
            t.control_segments += 1;
        }
    }
    t
}

fn flow_counts(records: &[Record]) -> FlowCounts {
    let mut m = FlowCounts::new();
    for r in records {
        if let Record::Flow(FlowRecord {
            endpoint:
                rds_sensor::model::Endpoint {
                    client,
                    server,
                    vni,
                    ..
                },
            packets_to_server,
            packets_to_client,
            bytes_to_server,
            bytes_to_client,
            ..
        }) = r
        {
            let e = m.entry((client.clone(), server.clone(), *vni)).or_default();
            e[0] += packets_to_server;
            e[1] += packets_to_client;
            e[2] += bytes_to_server;
            e[3] += bytes_to_client;
        }
    }
    m
}

fn pipeline(records: &Arc<Mutex<Vec<Record>>>, clock: Clock) -> Pipeline {
    Pipeline::new(
        PipelineOptions {
            clock,
            ..PipelineOptions::default()
        },
        Box::new(Collect(records.clone())),
    )
}

fn check_capture(pcap: &Path) {
    let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
    let truth = truth(pcap);
    assert!(
        truth.payload_segments > 0,
        "{name}: tshark found no database payload"
    );

    // Live: veth + tcpreplay.
    let pair = VethPair::new("rt").expect("veth pair");
    let live = LiveOptions {
        ring_bytes: 64 << 20,
        ..LiveOptions::default()
    };
    let mut sensor = Sensor::load(&live).expect("load");
    sensor
        .attach(&pair.outside, AttachMode::Auto)
        .expect("attach");
    let records = Arc::new(Mutex::new(Vec::new()));
    let report = agent_during_replay(
        &mut sensor,
        pipeline(&records, Clock::monotonic()),
        AgentOptions::default(),
        &pair,
        Replay {
            pcap,
            wrapper: &[],
            args: &[],
            delay: std::time::Duration::ZERO,
        },
    );
    sensor.detach().unwrap();
    drop(sensor);
    drop(pair);

    let k = report.counters;
    // Every database segment with payload: exactly one event or one counted drop.
    assert_eq!(
        k[c::DB_PAYLOAD_SEGMENTS as usize],
        truth.payload_segments,
        "{name}: payload segments seen by XDP"
    );
    assert_eq!(
        k[c::EVENTS_SENT as usize] + k[c::EVENTS_DROPPED as usize],
        truth.payload_segments + truth.control_segments,
        "{name}: events sent + dropped"
    );
    assert_eq!(
        report.records_read,
        k[c::EVENTS_SENT as usize],
        "{name}: records read from the ring"
    );
    assert_eq!(
        report.events + report.queue_dropped,
        report.records_read,
        "{name}: events decoded + queue drops"
    );
    let live_records = records.lock().unwrap().clone();
    let live_flows = flow_counts(&live_records);
    assert_eq!(live_flows, truth.flows, "{name}: live flows against tshark");

    // Offline: the same capture through analyze.
    let offline_records = Arc::new(Mutex::new(Vec::new()));
    let mut p = pipeline(&offline_records, Clock::default());
    let outcome = offline::analyze(
        pcap,
        &OfflineOptions {
            ports: DEFAULT_DB_PORTS.to_vec(),
            config: SensorConfig::default(),
            flow_capacity: 1 << 20,
        },
        &mut p,
    )
    .expect("analyze");
    assert_eq!(
        outcome.counters[c::DB_PAYLOAD_SEGMENTS as usize],
        truth.payload_segments,
        "{name}: analyze payload segments"
    );
    let offline_records = offline_records.lock().unwrap().clone();
    assert_eq!(
        flow_counts(&offline_records),
        live_flows,
        "{name}: analyze and live report the same flows"
    );
    // And the decoders read the same: every login and query (PostgreSQL, MySQL, SQL Server).
    assert_eq!(
        decoded(&live_records),
        decoded(&offline_records),
        "{name}: analyze and live decode the same logins and queries"
    );
    eprintln!(
        "{name}: {} flows, {} payload segments, {} events, {} ring drops: live = tshark = analyze",
        live_flows.len(),
        truth.payload_segments,
        report.events,
        k[c::EVENTS_DROPPED as usize]
    );
}

#[test]
fn veth_replay_of_bundled_captures() {
    if !kernel_available("veth_replay_of_bundled_captures") {
        return;
    }
    let pcaps = bundled_pcaps();
    assert!(
        !pcaps.is_empty(),
        "no bundled captures in {}",
        pcaps_dir().display()
    );
    for p in &pcaps {
        check_capture(p);
    }
}

#[test]
fn veth_replay_of_synthetic_mixed_capture() {
    if !kernel_available("veth_replay_of_synthetic_mixed_capture") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rds-sensor-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("mixed.pcap");
    write_pcap(&pcap, &mixed_frames());
    check_capture(&pcap);
    let _ = std::fs::remove_dir_all(&dir);
}
