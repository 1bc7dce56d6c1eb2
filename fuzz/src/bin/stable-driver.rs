//! `stable-driver seed PCAPS_DIR CORPUS_DIR`: writes the seed corpus of every target from the
//! bundled captures (frames, whole files, per-connection byte streams and record sequences).
//!
//! `stable-driver run TARGET CORPUS_DIR SECONDS ARTIFACTS_DIR`: a mutation loop on stable Rust
//! (no coverage feedback) over the same target functions, for when libFuzzer is unavailable;
//! a panicking input is written to ARTIFACTS_DIR and the exit status is 1.

use rds_sensor::{
    capture::{packet::Decapsulator, pcap::PcapReader},
    decode::Dir,
    event::Event,
};
use rds_sensor_fuzz::{Chunk, LINKS, TARGETS, encode_chunks};
use sensor_common::{DEFAULT_DB_PORTS, FlowKey, SensorConfig, direction, proto};
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

fn write(dir: &Path, seen: &mut HashSet<Vec<u8>>, data: Vec<u8>) {
    if data.is_empty() || !seen.insert(data.clone()) {
        return;
    }
    let name = format!("seed-{:016x}", fnv(&data));
    std::fs::write(dir.join(name), data).unwrap();
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn seed(pcaps: &Path, corpus: &Path) {
    let dirs: Vec<PathBuf> = ["packet", "pcap", "postgres", "mysql", "pipeline", "tls", "tds"]
        .iter()
        .map(|t| corpus.join(t))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut seen = HashSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(pcaps)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        // pcap: the head of each file (libFuzzer's inputs stay small).
        write(
            &dirs[1],
            &mut seen,
            bytes[..bytes.len().min(16 << 10)].to_vec(),
        );
        let mut r = PcapReader::open(f).unwrap();
        let mut d = Decapsulator::new(SensorConfig::default(), &DEFAULT_DB_PORTS, 1 << 16);
        let mut record = Vec::new();
        type Conn = (Vec<Chunk>, Vec<u8>);
        let mut conns: BTreeMap<(FlowKey, u8), Conn> = BTreeMap::new();
        while let Ok(Some(fr)) = r.next_frame() {
            let Some(link) = rds_sensor::capture::packet::LinkType::from_pcap(fr.linktype) else {
                continue;
            };
            let l = LINKS.iter().position(|x| *x == link).unwrap() as u8;
            let mut p = vec![l];
            p.extend_from_slice(fr.data);
            write(&dirs[0], &mut seen, p);
            d.process(link, fr.data, fr.orig_len, fr.ts_ns, &mut record);
            let Ok(ev) = Event::parse(&record) else {
                continue;
            };
            let c = conns.entry((ev.hdr.key, ev.hdr.proto)).or_default();
            if c.1.len() < 60_000 {
                c.1.extend_from_slice(&(record.len() as u16).to_le_bytes());
                c.1.extend_from_slice(&record);
            }
            let dir = if ev.hdr.direction == direction::TO_SERVER {
                Dir::Request
            } else {
                Dir::Response
            };
            if !ev.head().is_empty() {
                c.0.push(Chunk::Data(dir, ev.head().to_vec()));
            }
            let missing = ev.hdr.payload_len as u64 - (ev.head().len() + ev.tail().len()) as u64;
            if !ev.tail().is_empty() || missing > 0 {
                if missing > 0 {
                    c.0.push(Chunk::Gap(dir, missing));
                }
                if !ev.tail().is_empty() {
                    c.0.push(Chunk::Data(dir, ev.tail().to_vec()));
                }
            }
        }
        for ((_, p), (mut chunks, records)) in conns {
            chunks.push(Chunk::Close);
            let mut stream = vec![0u8];
            stream.extend(encode_chunks(&chunks));
            stream.truncate(60_000);
            // The TLS target's flags: bit 3 for MySQL, bit 4 so its seeds differ from the
            // plain decoder targets' (every connection: TLS sessions and plaintext alike).
            let mut tls_stream = stream.clone();
            tls_stream[0] = 0x10 | if p == proto::MYSQL { 8 } else { 0 };
            match p {
                proto::POSTGRES => write(&dirs[2], &mut seen, stream),
                proto::MYSQL => write(&dirs[3], &mut seen, stream),
                proto::MSSQL => {
                    // Both ways: the plain decoder, and behind the TLS layer (flag bit 3).
                    let mut behind = stream.clone();
                    behind[0] = 8;
                    write(&dirs[6], &mut seen, stream);
                    write(&dirs[6], &mut seen, behind);
                    write(&dirs[4], &mut seen, records);
                    continue;
                }
                _ => {}
            }
            write(&dirs[5], &mut seen, tls_stream);
            write(&dirs[4], &mut seen, records);
        }
    }
    for d in &dirs {
        println!(
            "seed: {}: {} inputs",
            d.display(),
            std::fs::read_dir(d).unwrap().count()
        );
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: [u32; 10] = [
        0,
        1,
        0x7f,
        0x80,
        0xff,
        0x7fff,
        0xffff,
        0x7fff_ffff,
        0xffff_ffff,
        0x8000_0000,
    ];
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let n = 1 << rng.below(3);
                input[i..i + n.min(4)].copy_from_slice(&b[..n.min(4)]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, fill);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            6 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = a + rng.below((other.len() - a).min(512));
                let i = rng.below(len + 1);
                input.splice(i..i, other[a..b].iter().copied());
            }
            _ if len > 1 => {
                // Duplicate a range (repeated messages, retransmits).
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(256));
                let piece = input[a..b].to_vec();
                input.splice(b..b, piece);
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(1 << 17);
}

fn run(target: &str, corpus: &Path, secs: u64, artifacts: &Path) -> bool {
    let f = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if seeds.is_empty() {
        seeds.push(vec![0; 64]);
    }
    // Seeds first, unmutated.
    for s in &seeds {
        f(s);
    }
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut execs = 0u64;
    while Instant::now() < end {
        for _ in 0..100 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            let other = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, &mut input, other);
            execs += 1;
            let r = std::panic::catch_unwind(|| f(&input));
            if let Err(e) = r {
                let _ = std::panic::take_hook();
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                std::fs::create_dir_all(artifacts).unwrap();
                let path = artifacts.join(format!("crash-{target}-{:016x}", fnv(&input)));
                std::fs::write(&path, &input).unwrap();
                eprintln!(
                    "{target}: PANIC after {execs} inputs: {msg}\n  input: {}",
                    path.display()
                );
                return false;
            }
            if rng.below(50) == 0 && seeds.len() < 5000 {
                seeds.push(input);
            }
        }
    }
    let _ = std::panic::take_hook();
    println!("{target}: {execs} inputs in {secs} s, no panic");
    true
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("seed") if a.len() == 4 => seed(Path::new(&a[2]), Path::new(&a[3])),
        Some("run") if a.len() == 6 => {
            let ok = run(
                &a[2],
                Path::new(&a[3]),
                a[4].parse().unwrap(),
                Path::new(&a[5]),
            );
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some("repro") if a.len() == 4 => {
            let f = TARGETS.iter().find(|(n, _)| *n == a[2]).expect("target").1;
            f(&std::fs::read(&a[3]).unwrap());
            println!("no panic");
        }
        _ => {
            eprintln!(
                "usage: stable-driver seed PCAPS CORPUS | run TARGET CORPUS SECONDS ARTIFACTS | repro TARGET FILE"
            );
            std::process::exit(2);
        }
    }
}
