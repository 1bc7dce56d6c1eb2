//! What the dashboard shows, aggregated from the records; no terminal here.

use crate::aggregate::QueryFigures;
use crate::model::{Outcome, Record};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Seconds of history per server (sparklines).
pub const HISTORY_S: usize = 60;
/// Seconds of latencies behind p50/p99.
const PERCENTILE_WINDOW_S: usize = 10;
/// Latencies kept per server and second for the percentiles.
const SAMPLES_PER_SECOND: usize = 4096;
/// Fingerprints followed; new ones beyond are counted in `fingerprints_overflowed`.
const MAX_FINGERPRINTS: usize = 2000;
const MAX_FINDINGS: usize = 200;
const MAX_LOG_LINES: usize = 50;

#[derive(Clone, Debug, Default)]
pub struct Second {
    pub queries: u64,
    pub errors: u64,
    pub latencies_us: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Server {
    pub protocol: &'static str,
    pub queries: u64,
    pub errors: u64,
    /// Oldest first; the last is the current second.
    pub seconds: VecDeque<Second>,
}

impl Server {
    /// Queries and errors per second over the last complete seconds (up to 5).
    pub fn rates(&self) -> (f64, f64) {
        let done: Vec<&Second> = self.seconds.iter().rev().skip(1).take(5).collect();
        if done.is_empty() {
            return (0.0, 0.0);
        }
        let n = done.len() as f64;
        (
            done.iter().map(|s| s.queries).sum::<u64>() as f64 / n,
            done.iter().map(|s| s.errors).sum::<u64>() as f64 / n,
        )
    }

    /// p50 and p99 latency (µs) over the last seconds.
    pub fn percentiles(&self) -> Option<(u64, u64)> {
        let mut v: Vec<u64> = self
            .seconds
            .iter()
            .rev()
            .take(PERCENTILE_WINDOW_S)
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    pub fn queries_history(&self) -> Vec<u64> {
        self.seconds.iter().map(|s| s.queries).collect()
    }
}

#[derive(Clone, Debug)]
pub struct Fingerprint {
    pub server: String,
    pub fingerprint: String,
    pub figures: QueryFigures,
}

impl Fingerprint {
    pub fn p99(&self) -> u64 {
        self.figures.latency.quantile(0.99)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Logins {
    pub success: u64,
    pub failure: u64,
}

#[derive(Clone, Debug)]
pub struct FindingLine {
    pub at: String,
    pub severity: &'static str,
    pub kind: &'static str,
    pub title: String,
}

#[derive(Clone, Debug, Default)]
pub struct Health {
    pub packets: u64,
    pub db_segments: u64,
    pub events: u64,
    pub ring_drops: u64,
    /// Frames the interface (or the host's backlog) lost before XDP.
    pub iface_drops: u64,
    pub queue_drops: u64,
    pub bad_records: u64,
    pub truncated: u64,
    pub flows_active: usize,
    pub connections_active: usize,
    pub summaries: u64,
    /// Events per second over the last summary interval.
    pub events_per_s: f64,
}

/// Servers whose TLS sessions are counted (as many as a screen can list).
const MAX_TLS_SERVERS: usize = 1000;

/// Everything the dashboard shows.
#[derive(Debug, Default)]
pub struct State {
    /// Seconds since the dashboard started (advanced by [`State::tick`]).
    pub now_s: u64,
    pub servers: BTreeMap<String, Server>,
    pub fingerprints: HashMap<(String, String), Fingerprint>,
    pub fingerprints_overflowed: u64,
    pub logins: BTreeMap<String, Logins>,
    /// TLS sessions per server: (sessions, decrypted).
    pub tls: BTreeMap<String, (u64, u64)>,
    pub findings: VecDeque<FindingLine>,
    /// With detection on: the instances still learning, and until when.
    pub learning: Option<Vec<(String, String)>>,
    pub health: Health,
    pub log: VecDeque<String>,
    pub records: u64,
}

impl State {
    /// Moves time to `now_s` (seconds since start): opens new per-second buckets.
    pub fn tick(&mut self, now_s: u64) {
        let steps = now_s.saturating_sub(self.now_s).min(HISTORY_S as u64);
        self.now_s = now_s.max(self.now_s);
        for s in self.servers.values_mut() {
            for _ in 0..steps {
                s.seconds.push_back(Second::default());
            }
            while s.seconds.len() > HISTORY_S {
                s.seconds.pop_front();
            }
        }
    }

    pub fn observe(&mut self, r: &Record) {
        self.records += 1;
        match r {
            Record::Query(q) => {
                let s = self
                    .servers
                    .entry(q.endpoint.server.clone())
                    .or_insert_with(|| Server {
                        protocol: q.endpoint.protocol.name(),
                        seconds: VecDeque::from([Second::default()]),
                        ..Server::default()
                    });
                s.queries += 1;
                let err = q.error_code.is_some();
                s.errors += u64::from(err);
                if let Some(cur) = s.seconds.back_mut() {
                    cur.queries += 1;
                    cur.errors += u64::from(err);
                    if cur.latencies_us.len() < SAMPLES_PER_SECOND {
                        cur.latencies_us.push(q.latency_us);
                    }
                }
                let key = (q.endpoint.server.clone(), q.fingerprint.clone());
                let full = self.fingerprints.len() >= MAX_FINGERPRINTS;
                match self.fingerprints.get_mut(&key) {
                    Some(f) => f.figures.observe(q),
                    None if full => self.fingerprints_overflowed += 1,
                    None => {
                        let mut f = Fingerprint {
                            server: key.0.clone(),
                            fingerprint: key.1.clone(),
                            figures: QueryFigures::default(),
                        };
                        f.figures.observe(q);
                        self.fingerprints.insert(key, f);
                    }
                }
            }
            Record::Login(l) => {
                let user = l.user.clone().unwrap_or_else(|| "(unknown)".into());
                let e = self.logins.entry(user).or_default();
                match l.outcome {
                    Outcome::Success => e.success += 1,
                    Outcome::Failure => e.failure += 1,
                    // Neither: the client hung up when asked for its credentials.
                    Outcome::Abandoned => {}
                }
            }
            Record::Finding(f) => {
                self.findings.push_front(FindingLine {
                    at: {
                        let at = f.updated_at.rfc3339();
                        at.get(11..19).unwrap_or(&at).to_string()
                    },
                    severity: f.severity_label,
                    kind: f.finding_type,
                    title: if f.service.archived {
                        format!("ended: {}", f.title)
                    } else {
                        f.title.clone()
                    },
                });
                self.findings.truncate(MAX_FINDINGS);
            }
            Record::Summary(s) => {
                let k = |n: &str| s.kernel.get(n).and_then(|v| v.as_u64()).unwrap_or(0);
                let h = &mut self.health;
                if s.interval_s > 0.0 && h.summaries > 0 {
                    h.events_per_s = s.events.saturating_sub(h.events) as f64 / s.interval_s;
                }
                h.packets = k("packets");
                h.db_segments = k("db_segments");
                h.ring_drops = k("events_dropped_ring_full");
                h.iface_drops = s.interface.as_ref().map_or(0, |i| i.total());
                h.truncated = k("truncated");
                h.events = s.events;
                h.queue_drops = s.queue_dropped;
                h.bad_records = s.bad_records;
                h.flows_active = s.flows_active;
                h.connections_active = s.connections_active;
                h.summaries += 1;
                if let Some(d) = &s.detect {
                    self.learning = Some(
                        d.instances
                            .iter()
                            .filter(|i| i.learning)
                            .map(|i| (i.instance.clone(), i.learning_until.to_string()))
                            .collect(),
                    );
                }
            }
            Record::Tls(t) => {
                if self.tls.len() < MAX_TLS_SERVERS || self.tls.contains_key(&t.endpoint.server) {
                    let e = self.tls.entry(t.endpoint.server.clone()).or_default();
                    e.0 += 1;
                    e.1 += u64::from(t.info.decrypted);
                    // A server whose sessions are all unreadable is listed too.
                    self.servers
                        .entry(t.endpoint.server.clone())
                        .or_insert_with(|| Server {
                            protocol: t.endpoint.protocol.name(),
                            seconds: VecDeque::from([Second::default()]),
                            ..Server::default()
                        });
                }
            }
            Record::Flow(_) | Record::Latency(_) | Record::TlsExchange(_) => {}
        }
    }

    pub fn log_line(&mut self, line: String) {
        self.log.push_front(line);
        self.log.truncate(MAX_LOG_LINES);
    }
}
