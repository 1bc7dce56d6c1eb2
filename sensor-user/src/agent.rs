//! The live agent: one reader thread per event ring, `--workers` shard threads, one collector.
//!
//! - A **reader** drains its ring (woken by the kernel, or on a short timer) and hands each
//!   record to the worker that owns its connection ([`pipeline::shard_of`]), through a
//!   lock-free SPSC byte queue (`ringbuf`) per reader and worker. It never blocks: when a
//!   queue is full the record is dropped and counted.
//! - A **worker** merges its queues by timestamp and feeds its [`Shard`]. The two directions
//!   of one connection can arrive on different receive queues, so on different CPUs and
//!   rings; a connection's decoder needs them in the order they happened. Each ring is in
//!   time order (a CPU runs one XDP program at a time), so a k-way merge is exact once every
//!   ring has said how far it has got: its reader publishes a watermark, the time below which
//!   it will send nothing more. A record waits at most a drain interval plus [`SLACK_NS`].
//! - The **collector** takes the workers' records (latency aggregates, detection, the sink)
//!   and reports summaries. With one worker it runs on the worker's thread, with nothing in
//!   between.

use crate::{
    capture::{
        FlowSource,
        ifstats::InterfaceCounters,
        live::{KernelState, Sensor},
    },
    model::{FlowEnd, Record, now},
    pipeline::{Collector, Pipeline, Reloadable, Shard, ShardFigures, shard_of},
};
use anyhow::{Context, Result, anyhow};
use aya::maps::{MapData, RingBuf};
use ringbuf::{
    HeapCons, HeapProd, HeapRb,
    traits::{Consumer, Observer, Producer, Split},
};
use sensor_common::{EventHeader, FlowKey, FlowStats, counter};
use std::{
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::Thread,
    time::{Duration, Instant},
};

/// How late a record may be committed to its ring after its timestamp was taken: an XDP run
/// takes microseconds, so a ring found empty at time `t` will send nothing older than
/// `t - SLACK_NS`.
pub const SLACK_NS: u64 = 1_000_000;

/// Records drained between two watermarks while a reader catches up.
const WATERMARK_EVERY: u32 = 256;

/// Events a worker feeds its shard before it hands the records made on: under a steady load
/// the queues never empty, and the records must not pile up meanwhile.
const BATCH: usize = 256;

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// How often a summary is reported.
    pub summary_every: Duration,
    /// Bytes of the queues between the ring readers and the workers, all of them together.
    pub queue_bytes: usize,
    /// The readers also drain on this timer: with `wakeup_bytes` set, the kernel writes
    /// without waking them until a threshold, so the timer bounds how long a record waits.
    pub drain_every: Duration,
    /// SIGHUP: settings put here are applied by the collector (see `config::Reloadable`).
    pub reload: Option<Arc<Mutex<Option<Reloadable>>>>,
    /// Worker threads the connections are sharded across (at least 1).
    pub workers: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            summary_every: Duration::from_secs(10),
            queue_bytes: 64 << 20,
            drain_every: Duration::from_millis(2),
            reload: None,
            workers: 1,
        }
    }
}

/// Workers by default: one per two CPUs, at least one. The kernel runs XDP on the CPUs that
/// take the NIC's queues, and each ring has a reader: measured on 2 vCPUs (`cargo xtask bench
/// --only queues`), two workers took 0.72× the events one did, the cores being already busy.
pub fn default_workers() -> usize {
    (crate::capture::live::default_cpus() / 2).max(1)
}

/// Final figures of a run.
#[derive(Clone, Debug, Default)]
pub struct AgentReport {
    pub records_read: u64,
    /// Records read from each ring (`names::RINGS` order).
    pub records_per_ring: Vec<u64>,
    pub queue_dropped: u64,
    pub counters: [u64; counter::COUNT as usize],
    pub events: u64,
    pub flows_reported: u64,
}

/// Runs until `shutdown` resolves, then drains what is left, reports every open flow and
/// a last summary. The sensor stays attached until the caller drops or detaches it.
pub async fn run(
    sensor: &mut Sensor,
    pipeline: Pipeline,
    opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<AgentReport> {
    let rings = sensor.take_rings()?;
    // The attached interface's own receive drops, from now on.
    let iface = sensor
        .attached
        .as_ref()
        .and_then(|(name, _)| crate::ifwatch::ifindex(name))
        .map(InterfaceCounters::new);
    let state = Arc::new(Mutex::new(sensor.take_state()?));
    let workers = opts.workers.max(1);
    let redact = Arc::new(AtomicBool::new(pipeline.shard.streams.redact));
    let (shards, collector) = pipeline.into_parts(workers);

    // One queue per reader and worker: each has one producer and one consumer.
    let per_queue = (opts.queue_bytes / (rings.len() * workers)).max(1 << 16);
    let mut prods: Vec<Vec<HeapProd<u8>>> = (0..rings.len()).map(|_| Vec::new()).collect();
    let mut conss: Vec<Vec<HeapCons<u8>>> = (0..workers).map(|_| Vec::new()).collect();
    for p in prods.iter_mut() {
        for c in conss.iter_mut() {
            let (prod, cons) = HeapRb::<u8>::new(per_queue).split();
            p.push(prod);
            c.push(cons);
        }
    }
    let watermarks: Arc<[AtomicU64]> = (0..rings.len()).map(|_| AtomicU64::new(0)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));

    let outputs = Outputs {
        collector,
        state: state.clone(),
        iface,
        figures: vec![ShardFigures::default(); workers],
        dropped: dropped.clone(),
        summary_every: opts.summary_every,
        last_summary: Instant::now(),
        reload: opts.reload.clone(),
        redact: redact.clone(),
    };
    let mut outputs = Some(outputs);
    let (tx, collector_thread) = if workers == 1 {
        (None, None)
    } else {
        let outputs = outputs.take().expect("made above");
        // Bounded: a collector that falls behind holds the workers back, their queues fill
        // and the readers drop and count, as with one worker.
        let (tx, rx) = mpsc::sync_channel::<Batch>(256);
        let handle = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || collect(outputs, rx))
            .context("starting the collector thread")?;
        (Some(tx), Some(handle))
    };

    let mut worker_threads = Vec::with_capacity(workers);
    for (id, (shard, inputs)) in shards.into_iter().zip(conss).enumerate() {
        let down = match &tx {
            Some(tx) => Downstream::Channel(tx.clone()),
            None => Downstream::Here(Box::new(outputs.take().expect("one worker"))),
        };
        let worker = Worker {
            id,
            workers,
            shard,
            inputs,
            watermarks: watermarks.clone(),
            state: state.clone(),
            redact: redact.clone(),
            down,
            buf: Vec::with_capacity(8192),
        };
        worker_threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())
                .context("starting a worker thread")?,
        );
    }
    drop(tx);
    let wake: Arc<[Thread]> = worker_threads.iter().map(|h| h.thread().clone()).collect();

    let mut readers = Vec::with_capacity(rings.len());
    for (i, (ring, queues)) in rings.into_iter().zip(prods).enumerate() {
        let reader = Reader {
            ring,
            queues,
            watermark: watermarks.clone(),
            index: i,
            stop: stop.clone(),
            dropped: dropped.clone(),
            wake: wake.clone(),
            drain_every: opts.drain_every.max(Duration::from_micros(100)),
            frame: Vec::with_capacity(8192),
        };
        readers.push(
            std::thread::Builder::new()
                .name(format!("ring-{i}"))
                .spawn(move || reader.run())
                .context("starting a ring reader")?,
        );
    }

    shutdown.await;
    // Each reader drains its ring once more, then says it is done (watermark at the end of
    // time); the workers then empty their queues, end every flow and stop.
    stop.store(true, Ordering::Release);
    let mut records_per_ring = Vec::with_capacity(readers.len());
    for r in readers {
        records_per_ring.push(r.join().map_err(|_| anyhow!("a ring reader panicked"))?);
    }
    for t in wake.iter() {
        t.unpark();
    }
    let mut report = None;
    let mut first_error = None;
    for w in worker_threads {
        match w.join().map_err(|_| anyhow!("a worker thread panicked"))? {
            Ok(Some(r)) => report = Some(r),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(c) = collector_thread {
        match c
            .join()
            .map_err(|_| anyhow!("the collector thread panicked"))?
        {
            Ok(r) => report = Some(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut report = report.ok_or_else(|| anyhow!("no collector report"))?;
    report.records_read = records_per_ring.iter().sum();
    report.records_per_ring = records_per_ring;
    report.queue_dropped = dropped.load(Ordering::Relaxed);
    Ok(report)
}

/// A ring's reader.
struct Reader {
    ring: RingBuf<MapData>,
    /// One per worker.
    queues: Vec<HeapProd<u8>>,
    watermark: Arc<[AtomicU64]>,
    index: usize,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    wake: Arc<[Thread]>,
    drain_every: Duration,
    frame: Vec<u8>,
}

impl Reader {
    /// Drains until stopped; returns the records read.
    fn run(mut self) -> u64 {
        let mut read = 0u64;
        let timeout = libc::timespec {
            tv_sec: self.drain_every.as_secs() as libc::time_t,
            tv_nsec: self.drain_every.subsec_nanos() as libc::c_long,
        };
        loop {
            // Read before the drain that ends with the ring found empty: anything committed
            // later was stamped after `t - SLACK_NS`.
            let stopping = self.stop.load(Ordering::Acquire);
            let t = now(libc::CLOCK_MONOTONIC);
            let n = self.drain();
            read += n;
            self.publish(t.saturating_sub(SLACK_NS));
            if n > 0 {
                for w in self.wake.iter() {
                    w.unpark();
                }
            }
            if stopping {
                // Whatever the kernel wrote before the stop has been read.
                self.publish(u64::MAX);
                return read;
            }
            let mut pfd = libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd and a valid timeout; no signal mask change.
            unsafe { libc::ppoll(&mut pfd, 1, &timeout, std::ptr::null()) };
        }
    }

    fn publish(&self, ts: u64) {
        self.watermark[self.index].fetch_max(ts, Ordering::Release);
    }

    /// Moves every record the ring holds to its worker's queue; a full queue drops and
    /// counts. While it catches up, the watermark follows the records.
    fn drain(&mut self) -> u64 {
        let workers = self.queues.len();
        let watermark = &self.watermark[self.index];
        let mut n = 0u64;
        let mut since = 0u32;
        while let Some(item) = self.ring.next() {
            n += 1;
            let (w, ts) = route(&item, workers);
            self.frame.clear();
            self.frame
                .extend_from_slice(&(item.len() as u32).to_ne_bytes());
            self.frame.extend_from_slice(&item);
            drop(item);
            let q = &mut self.queues[w];
            if q.vacant_len() >= self.frame.len() {
                // One push: the consumer sees the length prefix and the record together.
                q.push_slice(&self.frame);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            since += 1;
            if since == WATERMARK_EVERY {
                since = 0;
                // A ring shared by CPUs is only nearly in time order: the slack covers it.
                watermark.fetch_max(ts.saturating_sub(SLACK_NS), Ordering::Release);
                for t in self.wake.iter() {
                    t.unpark();
                }
            }
        }
        n
    }
}

/// The worker that owns a record's connection, and the record's timestamp. A record too short
/// for a header goes to worker 0, which counts it as bad.
fn route(record: &[u8], workers: usize) -> (usize, u64) {
    if record.len() < EventHeader::SIZE {
        return (0, 0);
    }
    let ts = u64::from_ne_bytes(record[..8].try_into().expect("8 bytes"));
    if workers == 1 {
        return (0, ts);
    }
    let off = core::mem::offset_of!(EventHeader, key);
    // SAFETY: the record holds a whole header (checked above), so the key's bytes are inside
    // it; FlowKey is plain old data (repr(C), integers and byte arrays) and is read unaligned.
    let key: FlowKey =
        unsafe { core::ptr::read_unaligned(record.as_ptr().add(off).cast::<FlowKey>()) };
    (shard_of(&key, workers), ts)
}

/// The timestamp of the record at the head of a queue, if one is there.
fn head_ts(q: &HeapCons<u8>) -> Option<u64> {
    if q.occupied_len() < 4 {
        return None;
    }
    let mut head = [0u8; 12];
    let got = q.peek_slice(&mut head);
    let len = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len < 8 || got < 12 {
        // Not a valid event: it goes first, to be counted.
        return Some(0);
    }
    Some(u64::from_ne_bytes(head[4..12].try_into().expect("8 bytes")))
}

/// Where a worker's records go.
enum Downstream {
    /// One worker: the collector runs on its thread.
    Here(Box<Outputs>),
    Channel(mpsc::SyncSender<Batch>),
}

/// A worker's records, in order, and its figures (sent every expiry pass and at the end).
struct Batch {
    worker: usize,
    records: Vec<Record>,
    figures: Option<ShardFigures>,
}

struct Worker {
    id: usize,
    workers: usize,
    shard: Shard,
    /// One per ring.
    inputs: Vec<HeapCons<u8>>,
    watermarks: Arc<[AtomicU64]>,
    state: Arc<Mutex<KernelState>>,
    redact: Arc<AtomicBool>,
    down: Downstream,
    buf: Vec<u8>,
}

impl Worker {
    /// Returns the run's report when the collector ran here.
    fn run(mut self) -> Result<Option<AgentReport>> {
        let mut last_expire = Instant::now();
        loop {
            let worked = self.merge();
            if self.shard.streams.has_marks() {
                // The kernel state's lock only when there is something to mark.
                let mut state = lock(&self.state);
                self.shard
                    .apply_marks(&mut |k| FlowSource::mark_whole(&mut *state, k));
            }
            let redact = self.redact.load(Ordering::Relaxed);
            if self.shard.streams.redact != redact {
                self.shard.streams.redact = redact;
            }
            let done = self
                .watermarks
                .iter()
                .all(|w| w.load(Ordering::Acquire) == u64::MAX)
                && self.inputs.iter().all(|q| q.occupied_len() == 0);
            if done {
                break;
            }
            let mut figures = None;
            if last_expire.elapsed() >= Duration::from_secs(1) {
                self.expire(None);
                figures = Some(self.shard.figures());
                last_expire = Instant::now();
            }
            if !self.send(figures)? {
                // The collector stopped (its error is reported by the agent).
                return Ok(None);
            }
            if let Downstream::Here(out) = &mut self.down {
                out.figures[0] = self.shard.figures();
                out.tick()?;
            }
            if !worked {
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        self.expire(Some(FlowEnd::Shutdown));
        let figures = self.shard.figures();
        match self.down {
            Downstream::Here(mut out) => {
                out.collector.take(&mut self.shard.records)?;
                out.figures[0] = figures;
                out.finish().map(Some)
            }
            Downstream::Channel(tx) => {
                let _ = tx.send(Batch {
                    worker: self.id,
                    records: std::mem::take(&mut self.shard.records),
                    figures: Some(figures),
                });
                Ok(None)
            }
        }
    }

    /// Feeds the shard the records that can go in time order now, up to [`BATCH`] (the
    /// caller sends their records on between batches). True if any did.
    fn merge(&mut self) -> bool {
        let mut worked = false;
        for _ in 0..BATCH {
            let Some(i) = self.next_input() else { break };
            let q = &mut self.inputs[i];
            let mut len = [0u8; 4];
            q.pop_slice(&mut len);
            let len = u32::from_ne_bytes(len) as usize;
            self.buf.resize(len, 0);
            // The reader pushed prefix and record in one push_slice, so it is all here.
            let got = q.pop_slice(&mut self.buf);
            self.shard.on_record(&self.buf[..got]);
            worked = true;
            if let Downstream::Here(out) = &mut self.down
                && !self.shard.records.is_empty()
            {
                // Only a flow record's sink error is returned, and events make none.
                let _ = out.collector.take(&mut self.shard.records);
            }
        }
        worked
    }

    /// The queue whose head record is the oldest, if it is older than anything any empty
    /// queue's ring can still send.
    fn next_input(&self) -> Option<usize> {
        if self.inputs.len() == 1 {
            return (self.inputs[0].occupied_len() >= 4).then_some(0);
        }
        let mut best: Option<(u64, usize)> = None;
        let mut bound = u64::MAX;
        for (i, q) in self.inputs.iter().enumerate() {
            // The watermark first: a queue found empty after it was read holds nothing the
            // watermark did not cover.
            let wm = self.watermarks[i].load(Ordering::Acquire);
            match head_ts(q) {
                Some(t) => {
                    if best.is_none_or(|(b, _)| t < b) {
                        best = Some((t, i));
                    }
                }
                None => bound = bound.min(wm),
            }
        }
        let (t, i) = best?;
        (t <= bound).then_some(i)
    }

    fn expire(&mut self, all: Option<FlowEnd>) {
        let mut source = ShardSource {
            state: &self.state,
            worker: self.id,
            workers: self.workers,
        };
        self.shard
            .expire(&mut source, now(libc::CLOCK_MONOTONIC), all);
    }

    /// Sends the records made so far (and figures) to the collector thread. False when it is
    /// gone.
    fn send(&mut self, figures: Option<ShardFigures>) -> Result<bool> {
        match &mut self.down {
            Downstream::Here(out) => {
                out.collector.take(&mut self.shard.records)?;
                Ok(true)
            }
            Downstream::Channel(tx) => {
                if self.shard.records.is_empty() && figures.is_none() {
                    return Ok(true);
                }
                let batch = Batch {
                    worker: self.id,
                    records: std::mem::take(&mut self.shard.records),
                    figures,
                };
                Ok(tx.send(batch).is_ok())
            }
        }
    }
}

/// A worker's view of the kernel's flow table: only the flows it owns.
struct ShardSource<'a> {
    state: &'a Mutex<KernelState>,
    worker: usize,
    workers: usize,
}

impl FlowSource for ShardSource<'_> {
    fn snapshot(&mut self, out: &mut Vec<(FlowKey, FlowStats)>) {
        lock(self.state).snapshot(out);
        if self.workers > 1 {
            out.retain(|(k, _)| shard_of(k, self.workers) == self.worker);
        }
    }

    fn remove(&mut self, key: &FlowKey) {
        lock(self.state).remove(key);
    }

    fn mark_whole(&mut self, key: &FlowKey) {
        lock(self.state).mark_whole(key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A thread that panicked holding it has ended the run anyway; the maps are still valid.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The collector and what its summaries need.
struct Outputs {
    collector: Collector,
    state: Arc<Mutex<KernelState>>,
    iface: Option<InterfaceCounters>,
    /// Each worker's latest figures.
    figures: Vec<ShardFigures>,
    dropped: Arc<AtomicU64>,
    summary_every: Duration,
    last_summary: Instant,
    reload: Option<Arc<Mutex<Option<Reloadable>>>>,
    redact: Arc<AtomicBool>,
}

impl Outputs {
    /// A SIGHUP's settings, and the summary when due.
    fn tick(&mut self) -> Result<()> {
        if let Some(r) = self
            .reload
            .as_ref()
            .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()))
        {
            self.summary_every = Duration::from_secs(r.summary_interval_s.max(1));
            self.redact.store(r.redact, Ordering::Relaxed);
            match self.collector.reload(&r) {
                Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "SIGHUP: reload failed, previous lists and maps kept"
                ),
            }
        }
        if self.last_summary.elapsed() >= self.summary_every {
            self.summary()?;
            self.last_summary = Instant::now();
        }
        Ok(())
    }

    fn summary(&mut self) -> Result<[u64; counter::COUNT as usize]> {
        let counters = lock(&self.state).counters()?;
        let mut sum = ShardFigures::default();
        for f in &self.figures {
            sum += f;
        }
        let i = self.iface.as_mut().and_then(InterfaceCounters::read);
        self.collector.summary(
            now(libc::CLOCK_MONOTONIC),
            &counters,
            i,
            &sum,
            self.dropped.load(Ordering::Relaxed),
        )?;
        Ok(counters)
    }

    /// After the workers' last records: the detector's last word, a last summary.
    fn finish(mut self) -> Result<AgentReport> {
        self.collector.finish()?;
        let counters = self.summary()?;
        self.collector.flush()?;
        let (events, flows_reported) = self
            .figures
            .iter()
            .fold((0, 0), |(e, f), s| (e + s.events, f + s.flows_reported));
        Ok(AgentReport {
            counters,
            events,
            flows_reported,
            ..AgentReport::default()
        })
    }
}

/// The collector thread (more than one worker): takes the workers' batches until every
/// worker has ended.
fn collect(mut out: Outputs, rx: mpsc::Receiver<Batch>) -> Result<AgentReport> {
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut b) => {
                out.collector.take(&mut b.records)?;
                if let Some(f) = b.figures {
                    out.figures[b.worker] = f;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        out.tick()?;
    }
    out.finish()
}
