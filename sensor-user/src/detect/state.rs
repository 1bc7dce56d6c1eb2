//! What the detector remembers between records, per connection and per client, and how long it
//! keeps it: the login of each open connection, recent failed logins, hourly login and failure
//! counts, data-staging windows, login tallies for the findings' evidence.

use super::{Detector, NS};
use std::collections::{BTreeMap, VecDeque};

/// What a decoded login told about a connection.
#[derive(Clone, Debug)]
pub(super) struct Conn {
    pub(super) user: Option<String>,
    pub(super) application: String,
    pub(super) tls: bool,
    pub(super) auth_method: String,
    pub(super) ts_ns: u64,
}

/// Recent failed logins of one (instance, address): (time, user).
pub(super) type FailureLog = VecDeque<(u64, String)>;
/// (user, application) → (failed, successful) logins of one (instance, address).
pub(super) type LoginCounts = BTreeMap<(String, String), (u64, u64)>;

/// Reads of one client as one user in the current volume window.
#[derive(Clone, Debug, Default)]
pub(super) struct Window {
    pub(super) start_ns: u64,
    pub(super) rows: u64,
    pub(super) bytes: u64,
    pub(super) queries: u64,
    pub(super) fingerprints: Vec<String>,
    pub(super) reported: bool,
    /// When the last read came.
    pub(super) last_ns: u64,
    /// Rows, bytes and queries since the window that was reported: the reads go on being
    /// counted into the finding until the activity ends (a window without reads).
    pub(super) told: Option<(u64, u64, u64)>,
}

pub(super) fn prune(q: &mut VecDeque<u64>, since: u64) {
    while q.front().is_some_and(|t| *t < since) {
        q.pop_front();
    }
}

impl Detector {
    /// Forgets what is too old to matter: connections idle for an hour, failures and windows
    /// past their window, hourly counts past the previous hour; the login tallies when they
    /// grow past 100 000 (instance, address) pairs.
    pub(super) fn forget(&mut self, now: u64) {
        let t = &self.opts.thresholds;
        let keep_conn = now.saturating_sub(3600 * NS);
        self.conns.retain(|_, c| c.ts_ns >= keep_conn);
        let fail_since = now.saturating_sub(t.failure_window_s * NS);
        self.source_failures.retain(|_, q| {
            while q.front().is_some_and(|(ts, _)| *ts < fail_since) {
                q.pop_front();
            }
            !q.is_empty()
        });
        self.source_successes.retain(|_, q| {
            while q.front().is_some_and(|(ts, _)| *ts < fail_since) {
                q.pop_front();
            }
            !q.is_empty()
        });
        let pub_since = now.saturating_sub(t.public_failure_window_s * NS);
        self.public_failures.retain(|_, q| {
            prune(q, pub_since);
            !q.is_empty()
        });
        let win_since = now.saturating_sub(2 * t.staging_window_s * NS);
        self.windows.retain(|_, w| w.start_ns >= win_since);
        let hour = now / (3600 * NS);
        self.hour_logins.retain(|_, (h, _)| *h + 1 >= hour);
        self.hour_failures.retain(|_, (h, _)| *h + 1 >= hour);
        self.forget_tls(now);
        if self.login_counts.len() > 100_000 {
            self.login_counts.clear();
        }
    }
}
