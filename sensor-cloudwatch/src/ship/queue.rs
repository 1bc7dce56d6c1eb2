//! The bounded queue between the sink (pipeline thread) and the shipper: the oldest data is
//! dropped beyond the bounds, and counted.

use crate::{
    config::Config,
    model::{self, BusEvent, Datum, LogEvent},
};
use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
};
use tokio::sync::Notify;

/// What the shipper has done, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShipStats {
    pub datums_sent: u64,
    /// Dropped from the full queue (oldest first).
    pub datums_dropped: u64,
    /// Refused by CloudWatch as invalid.
    pub datums_rejected: u64,
    pub log_events_sent: u64,
    pub log_events_dropped: u64,
    pub log_events_rejected: u64,
    pub bus_events_sent: u64,
    pub bus_events_dropped: u64,
    pub bus_events_rejected: u64,
    pub requests: u64,
    /// Requests that failed after the SDK's retries and were queued again.
    pub failures: u64,
    /// Most data ever waiting at once.
    pub max_queued_datums: usize,
    pub max_queued_log_events: usize,
    /// Data the shipper added to report its own queue's drops.
    pub report_datums: u64,
    /// Left unsent when the shipper stopped (the shutdown timeout passed).
    pub datums_unsent: u64,
    pub log_events_unsent: u64,
}

#[derive(Default)]
pub(super) struct Queues {
    pub(super) metrics: VecDeque<Datum>,
    pub(super) logs: VecDeque<LogEvent>,
    pub(super) log_bytes: usize,
    pub(super) bus: VecDeque<BusEvent>,
    /// No more input will come: stop once everything is sent.
    pub(super) closed: bool,
    /// Stop now.
    pub(super) abort: bool,
    pub(super) done: bool,
    pub(super) stats: ShipStats,
}

/// The queue between the sink (pipeline thread) and the shipper.
pub struct Shared {
    pub(super) q: Mutex<Queues>,
    pub(super) max_datums: usize,
    pub(super) max_log_events: usize,
    pub(super) max_log_bytes: usize,
    /// Wakes the shipper when data arrives.
    pub(super) data: Notify,
    /// Wakes the shipper out of a backoff when it has to stop.
    pub(super) stop: Notify,
    pub(super) done: Condvar,
}

impl Shared {
    pub fn new(cfg: &Config) -> Self {
        Self {
            q: Mutex::new(Queues::default()),
            max_datums: cfg.queue_max_datums.max(1),
            max_log_events: cfg.queue_max_log_events.max(1),
            max_log_bytes: cfg.queue_max_log_bytes.max(model::LOG_MESSAGE_MAX),
            data: Notify::new(),
            stop: Notify::new(),
            done: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Queues> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> ShipStats {
        self.lock().stats
    }

    /// Data and events waiting.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        (q.metrics.len(), q.logs.len())
    }

    pub(super) fn bound(&self, q: &mut Queues) {
        while q.metrics.len() > self.max_datums {
            q.metrics.pop_front();
            q.stats.datums_dropped += 1;
        }
        while q.logs.len() > self.max_log_events || q.log_bytes > self.max_log_bytes {
            let Some(e) = q.logs.pop_front() else { break };
            q.log_bytes -= e.size();
            q.stats.log_events_dropped += 1;
        }
        while q.bus.len() > self.max_log_events {
            q.bus.pop_front();
            q.stats.bus_events_dropped += 1;
        }
        q.stats.max_queued_datums = q.stats.max_queued_datums.max(q.metrics.len());
        q.stats.max_queued_log_events = q.stats.max_queued_log_events.max(q.logs.len());
    }

    pub fn push_metrics(&self, data: Vec<Datum>) {
        let mut q = self.lock();
        q.metrics.extend(data);
        self.bound(&mut q);
        drop(q);
        self.data.notify_one();
    }

    pub fn push_log(&self, ev: LogEvent, bus: Option<BusEvent>) {
        let mut q = self.lock();
        q.log_bytes += ev.size();
        q.logs.push_back(ev);
        q.bus.extend(bus);
        self.bound(&mut q);
        drop(q);
        self.data.notify_one();
    }

    /// No more input.
    pub fn close(&self) {
        self.lock().closed = true;
        self.data.notify_one();
    }

    pub(super) fn requeue_metrics(&self, data: Vec<Datum>) {
        let mut q = self.lock();
        for d in data.into_iter().rev() {
            q.metrics.push_front(d);
        }
        self.bound(&mut q);
    }

    pub(super) fn requeue_logs(&self, events: Vec<LogEvent>) {
        let mut q = self.lock();
        for e in events.into_iter().rev() {
            q.log_bytes += e.size();
            q.logs.push_front(e);
        }
        self.bound(&mut q);
    }

    pub(super) fn requeue_bus(&self, events: Vec<BusEvent>) {
        let mut q = self.lock();
        for e in events.into_iter().rev() {
            q.bus.push_front(e);
        }
        self.bound(&mut q);
    }
}
