//! The live agent: a ring-buffer reader (tokio, woken by the kernel) hands records through a
//! lock-free SPSC byte queue (`ringbuf`) to the pipeline thread, which decodes, expires flows
//! and reports. The reader never blocks on the pipeline: when the queue is full the record is
//! dropped and counted.

use crate::{
    capture::{
        ifstats::InterfaceCounters,
        live::{KernelState, Sensor},
    },
    model::{FlowEnd, now},
    pipeline::Pipeline,
};
use anyhow::{Context, Result, anyhow};
use ringbuf::{
    HeapRb,
    traits::{Consumer, Observer, Producer, Split},
};
use sensor_common::counter;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::io::unix::AsyncFd;

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// How often a summary is reported.
    pub summary_every: Duration,
    /// Bytes of the queue between the ring-buffer reader and the pipeline.
    pub queue_bytes: usize,
    /// The reader also drains on this timer: with `wakeup_bytes` set, the kernel writes
    /// without waking it until a threshold, so the timer bounds how long a record waits.
    pub drain_every: Duration,
    /// SIGHUP: settings put here are applied by the pipeline thread (see `config::Reloadable`).
    pub reload: Option<Arc<std::sync::Mutex<Option<crate::pipeline::Reloadable>>>>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            summary_every: Duration::from_secs(10),
            queue_bytes: 64 << 20,
            drain_every: Duration::from_millis(2),
            reload: None,
        }
    }
}

/// Final figures of a run.
#[derive(Clone, Debug, Default)]
pub struct AgentReport {
    pub records_read: u64,
    pub queue_dropped: u64,
    pub counters: [u64; counter::COUNT as usize],
    pub events: u64,
    pub flows_reported: u64,
}

/// Runs until `shutdown` resolves, then drains what is left, reports every open flow and
/// a last summary. The sensor stays attached until the caller drops or detaches it.
pub async fn run(
    sensor: &mut Sensor,
    mut pipeline: Pipeline,
    opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<AgentReport> {
    let ring = sensor.take_events()?;
    // The attached interface's own receive drops, from now on.
    let mut iface = sensor
        .attached
        .as_ref()
        .and_then(|(name, _)| crate::ifwatch::ifindex(name))
        .map(InterfaceCounters::new);
    let mut state = sensor.take_state()?;
    let (mut prod, mut cons) = HeapRb::<u8>::new(opts.queue_bytes.max(1 << 16)).split();
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));

    let worker = {
        let stop = stop.clone();
        let dropped = dropped.clone();
        let mut summary_every = opts.summary_every;
        let reload = opts.reload.clone();
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || -> Result<AgentReport> {
                let mut buf = Vec::with_capacity(8192);
                let mut last_expire = std::time::Instant::now();
                let mut last_summary = std::time::Instant::now();
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    let mut worked = false;
                    while cons.occupied_len() >= 4 {
                        let mut len = [0u8; 4];
                        cons.pop_slice(&mut len);
                        let len = u32::from_ne_bytes(len) as usize;
                        buf.resize(len, 0);
                        // The producer pushed prefix and record in one push_slice, so the
                        // record is already complete here.
                        let got = cons.pop_slice(&mut buf);
                        debug_assert_eq!(got, len);
                        pipeline.on_record(&buf[..got]);
                        worked = true;
                    }
                    pipeline.apply_marks(&mut |k| {
                        crate::capture::FlowSource::mark_whole(&mut state, k)
                    });
                    pipeline.stats.queue_dropped = dropped.load(Ordering::Relaxed);
                    if stopping {
                        break;
                    }
                    if last_expire.elapsed() >= Duration::from_secs(1) {
                        pipeline.expire_flows(&mut state, now(libc::CLOCK_MONOTONIC), None)?;
                        last_expire = std::time::Instant::now();
                    }
                    if let Some(r) = reload
                        .as_ref()
                        .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()))
                    {
                        summary_every = Duration::from_secs(r.summary_interval_s.max(1));
                        match pipeline.reload(&r) {
                            Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                            Err(e) => tracing::warn!(
                                error = %format!("{e:#}"),
                                "SIGHUP: reload failed, previous lists and maps kept"
                            ),
                        }
                    }
                    if last_summary.elapsed() >= summary_every {
                        let c = state.counters()?;
                        let i = iface.as_mut().and_then(InterfaceCounters::read);
                        pipeline.summary(now(libc::CLOCK_MONOTONIC), &c, i)?;
                        last_summary = std::time::Instant::now();
                    }
                    if !worked {
                        std::thread::park_timeout(Duration::from_millis(20));
                    }
                }
                finish(&mut pipeline, &mut state, iface.as_mut())
            })
            .context("starting the pipeline thread")?
    };
    let wake = worker.thread().clone();

    // SAFETY: the ring buffer's fd is owned by `ring`, which the AsyncFd owns and drops after
    // deregistering it.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("polling the ring buffer : {e}"))?;
    let mut frame = Vec::with_capacity(8192);
    let mut records_read = 0u64;
    // Moves every record the ring holds into the queue; a full queue drops and counts.
    let mut drain = |rb: &mut aya::maps::RingBuf<aya::maps::MapData>| {
        let mut n = 0u64;
        while let Some(item) = rb.next() {
            n += 1;
            frame.clear();
            frame.extend_from_slice(&(item.len() as u32).to_ne_bytes());
            frame.extend_from_slice(&item);
            drop(item);
            if prod.vacant_len() >= frame.len() {
                prod.push_slice(&frame);
            } else {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        n
    };
    let mut timer = tokio::time::interval(opts.drain_every.max(Duration::from_micros(100)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            guard = fd.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                records_read += drain(guard.get_inner_mut());
                guard.clear_ready();
                wake.unpark();
            }
            _ = timer.tick() => {
                let n = drain(fd.get_mut());
                if n > 0 {
                    records_read += n;
                    wake.unpark();
                }
            }
        }
    }
    // Whatever the kernel wrote before we stopped.
    records_read += drain(fd.get_mut());
    stop.store(true, Ordering::Release);
    wake.unpark();
    let mut report = worker
        .join()
        .map_err(|_| anyhow!("the pipeline thread panicked"))??;
    report.records_read = records_read;
    report.queue_dropped = dropped.load(Ordering::Relaxed);
    Ok(report)
}

fn finish(
    pipeline: &mut Pipeline,
    state: &mut KernelState,
    iface: Option<&mut InterfaceCounters>,
) -> Result<AgentReport> {
    let now_ns = now(libc::CLOCK_MONOTONIC);
    pipeline.expire_flows(state, now_ns, Some(FlowEnd::Shutdown))?;
    let counters = state.counters()?;
    pipeline.summary(now_ns, &counters, iface.and_then(InterfaceCounters::read))?;
    pipeline.flush()?;
    Ok(AgentReport {
        counters,
        events: pipeline.stats.events,
        flows_reported: pipeline.flows_reported(),
        ..AgentReport::default()
    })
}
