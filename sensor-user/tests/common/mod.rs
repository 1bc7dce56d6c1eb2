//! Shared by the integration tests: frame builders, the kernel-test gate, pcap lookup.
#![allow(dead_code)]

pub mod venv;

use std::path::PathBuf;

/// Whether kernel tests (root, XDP, netns) can run here. Under `cargo xtask test` as root
/// (CI), RDS_SENSOR_REQUIRE_KERNEL_TESTS=1 turns every reason to skip into a failure.
pub fn kernel_available(test: &str) -> bool {
    let required = std::env::var_os("RDS_SENSOR_REQUIRE_KERNEL_TESTS").is_some();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let reason = if euid != 0 {
        Some("not running as root")
    } else if rds_sensor::capture::live::embedded_object().is_none() {
        Some("rds-sensor was built without its XDP object (use `cargo xtask test`)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if required => panic!("{test}: kernel test cannot run: {r}"),
        Some(r) => {
            eprintln!("SKIPPED {test}: {r}");
            false
        }
    }
}

/// The bundled captures.
pub fn pcaps_dir() -> PathBuf {
    std::env::var_os("RDS_SENSOR_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps"))
}

pub fn bundled_pcaps() -> Vec<PathBuf> {
    pcaps_in("")
}

/// The captures of a folder of the bundled ones (`regressions`, `scenarios`, …), sorted.
pub fn pcaps_in(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(pcaps_dir().join(sub))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    v.sort();
    v
}

// ---- frame builders (independent of the code under test) ----

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

#[derive(Clone, Copy)]
pub enum Ip {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

pub fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    a
}

pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An IP packet around an L4 payload. `options`: IPv4 option bytes (multiple of 4) or, for
/// IPv6, a list of (next-header code, extension header bytes) inserted before L4.
pub fn ip(addrs: Ip, proto: u8, l4: &[u8], v4_options: &[u8], v6_ext: &[(u8, Vec<u8>)]) -> Vec<u8> {
    match addrs {
        Ip::V4(s, d) => {
            let ihl = 20 + v4_options.len();
            let total = ihl + l4.len();
            let mut h = vec![0x40 | (ihl / 4) as u8, 0];
            h.extend_from_slice(&(total as u16).to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
            h.extend_from_slice(&s);
            h.extend_from_slice(&d);
            h.extend_from_slice(v4_options);
            h.extend_from_slice(l4);
            h
        }
        Ip::V6(s, d) => {
            let ext_len: usize = v6_ext.iter().map(|(_, e)| e.len()).sum();
            let first = v6_ext.first().map_or(proto, |(code, _)| *code);
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
            h.push(first);
            h.push(64);
            h.extend_from_slice(&s);
            h.extend_from_slice(&d);
            for (i, (_, e)) in v6_ext.iter().enumerate() {
                let next = v6_ext.get(i + 1).map_or(proto, |(c, _)| *c);
                let mut e = e.clone();
                e[0] = next;
                h.extend_from_slice(&e);
            }
            h.extend_from_slice(l4);
            h
        }
    }
}

pub fn eth(ethertype: u16, vlans: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    for &(tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn ethertype(addrs: &Ip) -> u16 {
    match addrs {
        Ip::V4(..) => 0x0800,
        Ip::V6(..) => 0x86dd,
    }
}

/// An inner frame wrapped as AWS Traffic Mirroring sends it: outer IPv4/UDP to 4789, VXLAN.
pub fn vxlan(vni: u32, flags: u8, inner: &[u8], outer: Ip, vlans: &[(u16, u16)]) -> Vec<u8> {
    let mut vx = vec![flags, 0, 0, 0];
    vx.extend_from_slice(&(vni << 8).to_be_bytes());
    vx.extend_from_slice(inner);
    let u = udp(49152 + (vni as u16 & 0xff), 4789, &vx);
    eth(ethertype(&outer), vlans, &ip(outer, 17, &u, &[], &[]))
}

/// A GENEVE frame (RFC 8926) to UDP 6081: `protocol` 0x0800/0x86dd for an IP packet (as a
/// Gateway Load Balancer sends), 0x6558 for an Ethernet frame; `options` a multiple of 4 bytes.
pub fn geneve(
    vni: u32,
    version: u8,
    protocol: u16,
    options: &[u8],
    inner: &[u8],
    outer: Ip,
) -> Vec<u8> {
    let mut g = vec![(version << 6) | (options.len() / 4) as u8, 0];
    g.extend_from_slice(&protocol.to_be_bytes());
    g.extend_from_slice(&(vni << 8).to_be_bytes());
    g.extend_from_slice(options);
    g.extend_from_slice(inner);
    let u = udp(50000, 6081, &g);
    eth(ethertype(&outer), &[], &ip(outer, 17, &u, &[], &[]))
}

pub fn inner_tcp(addrs: Ip, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let t = tcp(sport, dport, 1000, 2000, flags, payload);
    eth(ethertype(&addrs), &[], &ip(addrs, 6, &t, &[], &[]))
}

pub const CLIENT: [u8; 4] = [198, 51, 100, 20];
pub const SERVER: [u8; 4] = [198, 51, 100, 10];
pub const ENI: [u8; 4] = [192, 0, 2, 7];
pub const TARGET: [u8; 4] = [203, 0, 113, 5];

/// Fields of every frame tshark finds in a capture (the independent oracle).
pub fn tshark_fields(pcap: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    tshark_fields_with(pcap, None, filter, fields)
}

/// The same, with TLS decrypted by tshark itself with a key log.
pub fn tshark_fields_with(
    pcap: &std::path::Path,
    keylog: Option<&std::path::Path>,
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut c = std::process::Command::new("tshark");
    if let Some(k) = keylog {
        c.arg("-o").arg(format!("tls.keylog_file:{}", k.display()));
    }
    c.args(["-n", "-r"]).arg(pcap).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=l",
    ]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c
        .output()
        .expect("running tshark (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Waits (at most 20 s) until an XDP program is attached to `iface`.
pub fn wait_attached(iface: &str) {
    let start = std::time::Instant::now();
    loop {
        let out = std::process::Command::new("ip")
            .args(["-d", "link", "show", "dev", iface])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("xdp") {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "XDP never attached to {iface}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Writes a classic pcap (Ethernet, microseconds) of `frames`, one per millisecond.
/// A classic pcap file header: microsecond timestamps, Ethernet, snaplen 256 KiB.
pub fn pcap_header() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&262_144u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v
}

pub fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut v = pcap_header();
    for (i, f) in frames.iter().enumerate() {
        v.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        v.extend_from_slice(&((i as u32) * 1000).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(f);
    }
    std::fs::write(path, v).unwrap();
}

/// A capture mixing database flows (VXLAN and plain, IPv4 and IPv6) with traffic the sensor
/// must ignore, made from scratch for tests that need a pcap the sensor has never seen.
pub fn mixed_frames() -> Vec<Vec<u8>> {
    let outer = Ip::V4(ENI, TARGET);
    let c = Ip::V4(CLIENT, SERVER);
    let s = Ip::V4(SERVER, CLIENT);
    let c6 = Ip::V6(v6(0x20), v6(0x10));
    let s6 = Ip::V6(v6(0x10), v6(0x20));
    let mut frames = Vec::new();
    let conv =
        |frames: &mut Vec<Vec<u8>>, vni: Option<u32>, cl: Ip, sv: Ip, cport: u16, sport: u16| {
            let mut cseq = 100u32;
            let mut sseq = 900u32;
            let mut push =
                |frames: &mut Vec<Vec<u8>>, to_server: bool, flags: u8, payload: &[u8]| {
                    let (addrs, sp, dp, seq, ack) = if to_server {
                        (cl, cport, sport, cseq, sseq)
                    } else {
                        (sv, sport, cport, sseq, cseq)
                    };
                    let t = tcp(sp, dp, seq, ack, flags, payload);
                    let inner = eth(ethertype(&addrs), &[], &ip(addrs, 6, &t, &[], &[]));
                    let adv = payload.len() as u32 + u32::from(flags & 0x03 != 0);
                    if to_server {
                        cseq += adv;
                    } else {
                        sseq += adv;
                    }
                    frames.push(match vni {
                        Some(v) => vxlan(v, 0x08, &inner, outer, &[]),
                        None => inner,
                    });
                };
            push(frames, true, 0x02, &[]);
            push(frames, false, 0x12, &[]);
            push(frames, true, 0x10, &[]);
            for i in 0..5u8 {
                push(frames, true, 0x18, &[b'Q', 0, 0, 0, 9, b's', b'e', b'l', i]);
                push(frames, false, 0x18, &vec![b'D'; 40 + i as usize * 300]);
                push(frames, true, 0x10, &[]);
            }
            push(frames, true, 0x11, &[]);
            push(frames, false, 0x11, &[]);
            push(frames, true, 0x10, &[]);
        };
    conv(&mut frames, Some(7341), c, s, 41000, 5432);
    conv(&mut frames, Some(7342), c, s, 41001, 3306);
    conv(&mut frames, Some(99), c6, s6, 41002, 5432);
    conv(&mut frames, None, c, s, 41003, 5432);
    // Noise: mirrored web traffic, the host's SSH, ARP, and a VXLAN frame without the I flag.
    conv(&mut frames, Some(7341), c, s, 41004, 8080);
    frames.push(inner_tcp(c, 41005, 22, 0x18, b"SSH-2.0-OpenSSH"));
    frames.push(eth(0x0806, &[], &[0u8; 28]));
    frames.push(vxlan(
        7341,
        0x00,
        &inner_tcp(c, 41006, 5432, 0x18, b"ignored"),
        outer,
        &[],
    ));
    frames
}

// ---- TLS material for the key receiver's tests ----

fn openssl_in(args: &[&str], d: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and, signed by it, the receiver's P-256 certificate for localhost / 127.0.0.1,
/// made by openssl: (CA, certificate, key).
pub fn test_ca(d: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl_in(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=rds-sensor test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
        d,
    );
    openssl_in(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
        d,
    );
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl_in(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
        d,
    );
    (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"))
}

/// Standard base64 (RFC 4648), for searching outputs for a secret in that form.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

/// How tcpreplay sends a capture into a veth pair: from the pair's namespace, behind `wrapper`
/// (e.g. `taskset -c 0`), at top speed with `args`, after `delay`.
pub struct Replay<'a> {
    pub pcap: &'a std::path::Path,
    pub wrapper: &'a [&'a str],
    pub args: &'a [&'a str],
    pub delay: std::time::Duration,
}

/// Runs the agent on `sensor` while `replay` sends its capture into the pair's inside end; the
/// agent stops half a second after the last frame, so the last ones reach the ring buffer and
/// the reader.
pub fn agent_during_replay(
    sensor: &mut rds_sensor::capture::live::Sensor,
    pipeline: rds_sensor::pipeline::Pipeline,
    opts: rds_sensor::agent::AgentOptions,
    pair: &rds_sensor::netns::VethPair,
    replay: Replay<'_>,
) -> rds_sensor::agent::AgentReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &pair.ns.name])
        .args(replay.wrapper)
        .args(["tcpreplay", "-q", "--topspeed"])
        .args(replay.args)
        .args(["-i", &pair.inside])
        .arg(replay.pcap);
    let delay = replay.delay;
    let replayer = std::thread::spawn(move || {
        std::thread::sleep(delay);
        let out = cmd.output().expect("tcpreplay");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = tx.send(());
        out
    });
    let report = rt
        .block_on(rds_sensor::agent::run(sensor, pipeline, opts, async {
            let _ = rx.await;
        }))
        .expect("agent");
    let out = replayer.join().unwrap();
    assert!(
        out.status.success(),
        "tcpreplay {}: {}",
        replay.pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// `rds-sensor analyze PCAP ARGS` with logging at debug (what searches for secrets read);
/// it must succeed.
pub fn analyze_debug(pcap: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rds-sensor"))
        .arg("analyze")
        .arg(pcap)
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "analyze {} {args:?}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout then stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A pipeline whose records are kept, and the list they go to.
pub fn collecting(
    clock: rds_sensor::model::Clock,
) -> (
    rds_sensor::pipeline::Pipeline,
    std::sync::Arc<std::sync::Mutex<Vec<rds_sensor::model::Record>>>,
) {
    let records = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = rds_sensor::pipeline::Pipeline::new(
        rds_sensor::pipeline::PipelineOptions {
            clock,
            ..Default::default()
        },
        Box::new(rds_sensor::sinks::Collect(records.clone())),
    );
    (p, records)
}

/// Every record `analyze` makes of `pcap` (default options).
pub fn analyze_records(pcap: &std::path::Path) -> Vec<rds_sensor::model::Record> {
    let (mut p, records) = collecting(rds_sensor::model::Clock::default());
    rds_sensor::offline::analyze(
        pcap,
        &rds_sensor::offline::OfflineOptions {
            ports: sensor_common::DEFAULT_DB_PORTS.to_vec(),
            config: sensor_common::SensorConfig::default(),
            flow_capacity: 1 << 20,
        },
        &mut p,
    )
    .expect("analyze");
    records.lock().unwrap().clone()
}

/// Each login and query, in a form a live run and a capture share (no times), sorted.
pub fn decoded(records: &[rds_sensor::model::Record]) -> Vec<String> {
    use rds_sensor::model::Record;
    let mut v: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Login(l) => Some(format!(
                "login {} {:?} {:?} {:?} {:?}",
                l.endpoint.client, l.user, l.database, l.outcome, l.error_code
            )),
            Record::Query(q) => Some(format!(
                "query {} {} {} {:?} {:?}",
                q.endpoint.client, q.verb, q.fingerprint, q.rows, q.error_code
            )),
            _ => None,
        })
        .collect();
    v.sort();
    v
}
