//! The bounded queue of findings between the sink (pipeline thread) and the Security Hub
//! shipper. A finding's updates share its id and each carries the whole finding, so only the
//! newest version of an id is worth keeping: an update replaces the version still waiting.

use rds_sensor::model::Finding;
use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
};
use tokio::sync::Notify;

/// What the Security Hub shipper has done, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecurityHubStats {
    /// Findings (versions) Security Hub accepted.
    pub sent: u64,
    /// Dropped from the full queue (oldest first).
    pub dropped: u64,
    /// Replaced, while waiting, by a newer version of the same finding: not a loss.
    pub superseded: u64,
    /// Refused by Security Hub (FailedFindings or the whole call), or too large to send.
    pub rejected: u64,
    /// Sent without some of their evidence, to fit Security Hub's size limit.
    pub trimmed: u64,
    /// Left unsent when the shipper stopped (the shutdown timeout passed).
    pub unsent: u64,
    pub requests: u64,
    /// Calls (or findings of a call) that failed for a transient reason and were queued again.
    pub failures: u64,
    /// Most findings ever waiting at once.
    pub max_queued: usize,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) findings: VecDeque<Finding>,
    pub(super) closed: bool,
    pub(super) abort: bool,
    pub(super) done: bool,
    pub(super) stats: SecurityHubStats,
}

pub struct FindingQueue {
    q: Mutex<Inner>,
    max: usize,
    /// Wakes the shipper when findings arrive.
    pub(super) data: Notify,
    /// Wakes the shipper out of a backoff when it has to stop.
    pub(super) stop: Notify,
    pub(super) done: Condvar,
}

impl FindingQueue {
    pub fn new(max: usize) -> Self {
        Self {
            q: Mutex::new(Inner::default()),
            max: max.max(1),
            data: Notify::new(),
            stop: Notify::new(),
            done: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> SecurityHubStats {
        self.lock().stats
    }

    pub fn queued(&self) -> usize {
        self.lock().findings.len()
    }

    fn bound(&self, q: &mut Inner) {
        while q.findings.len() > self.max {
            q.findings.pop_front();
            q.stats.dropped += 1;
        }
        q.stats.max_queued = q.stats.max_queued.max(q.findings.len());
    }

    /// A finding or an update of one: an older version still waiting is replaced in place,
    /// so the update goes out as soon as the old version would have.
    pub fn push(&self, f: Finding) {
        let mut q = self.lock();
        if let Some(old) = q.findings.iter_mut().find(|o| o.id == f.id) {
            *old = f;
            q.stats.superseded += 1;
        } else {
            q.findings.push_back(f);
            self.bound(&mut q);
        }
        drop(q);
        self.data.notify_one();
    }

    /// Up to `n` findings from the front.
    pub(super) fn take(&self, n: usize) -> Vec<Finding> {
        let mut q = self.lock();
        let n = n.min(q.findings.len());
        q.findings.drain(..n).collect()
    }

    /// Findings that failed go back to the front, in order, unless a newer version of one
    /// has been queued since.
    pub(super) fn requeue(&self, findings: Vec<Finding>) {
        let mut q = self.lock();
        for f in findings.into_iter().rev() {
            if q.findings.iter().any(|o| o.id == f.id) {
                q.stats.superseded += 1;
            } else {
                q.findings.push_front(f);
            }
        }
        self.bound(&mut q);
    }

    /// No more input.
    pub fn close(&self) {
        self.lock().closed = true;
        self.data.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::securityhub::asff::tests::finding;

    fn ids(q: &FindingQueue) -> Vec<String> {
        q.lock().findings.iter().map(|f| f.id.clone()).collect()
    }

    #[test]
    fn bounded_oldest_dropped_and_updates_replace() {
        let q = FindingQueue::new(3);
        for id in ["a", "b", "c"] {
            q.push(finding(id, "Discovery:RDS/TorIPCaller"));
        }
        let mut update = finding("a", "Discovery:RDS/TorIPCaller");
        update.service.count = 99;
        q.push(update);
        assert_eq!(ids(&q), ["a", "b", "c"], "an update is not a drop");
        assert_eq!(q.lock().findings[0].service.count, 99);
        q.push(finding("d", "Discovery:RDS/TorIPCaller"));
        assert_eq!(ids(&q), ["b", "c", "d"]);
        let s = q.stats();
        assert_eq!((s.dropped, s.superseded, s.max_queued), (1, 1, 3));

        // A failed call's findings go back first, except where a newer version waits.
        let taken = q.take(2);
        q.push(finding("b", "Discovery:RDS/TorIPCaller"));
        q.requeue(taken);
        assert_eq!(ids(&q), ["c", "d", "b"]);
        assert_eq!(q.stats().superseded, 2);
        q.requeue(vec![finding("x", "Discovery:RDS/TorIPCaller")]);
        assert_eq!(ids(&q), ["c", "d", "b"], "the bound holds on requeue");
        assert_eq!(q.stats().dropped, 2);
    }
}
