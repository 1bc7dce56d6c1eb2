//! Data staging: a client reading far more rows or bytes than its baseline, in one response
//! (per fingerprint) or within a window (`Exfiltration:RDS/AnomalousBehavior.DataStaging`),
//! the bulk read that precedes exfiltration.

use super::context::{QueryCtx, Who};
use super::finding::Evidence;
use super::state::Window;
use super::{Detector, Finding, FindingType, NS};
use std::net::IpAddr;

/// Statement classes whose row count is rows read (not affected).
pub(super) fn reads_rows(class: &str) -> bool {
    !matches!(
        class,
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "REPLACE" | "COPY FROM" | "LOAD DATA"
    )
}

impl Detector {
    /// Adds one response to the client's current volume window; returns the window.
    pub(super) fn staging_window(
        &mut self,
        key: (String, String, IpAddr),
        now: u64,
        rows: u64,
        bytes: u64,
        fingerprint: &str,
    ) -> Window {
        let th = &self.opts.thresholds;
        let win_ns = th.staging_window_s.max(1) * NS;
        let w = self.windows.entry(key).or_default();
        if w.queries == 0 || now >= w.start_ns + win_ns {
            // Staging that was reported and goes on (reads less than a window apart) stays
            // one activity: its finding keeps counting.
            let going_on = w.reported && now < w.last_ns.saturating_add(win_ns);
            *w = Window {
                start_ns: now,
                reported: going_on,
                told: if going_on { w.told } else { None },
                ..Window::default()
            };
        }
        w.rows += rows;
        w.bytes += bytes;
        w.queries += 1;
        w.last_ns = now;
        if let Some(t) = &mut w.told {
            *t = (t.0 + rows, t.1 + bytes, t.2 + 1);
        }
        if w.fingerprints.len() < 10 && !w.fingerprints.iter().any(|f| f == fingerprint) {
            w.fingerprints.push(fingerprint.to_string());
        }
        w.clone()
    }

    /// Reports (or adds to) a client's DataStaging finding.
    fn staging(&mut self, c: &QueryCtx, out: &mut Vec<Finding>, desc: String, ev: Evidence) {
        let (user, ip, id) = (&c.user, c.ip, &c.id);
        let k = FindingType::DataStaging;
        self.report(
            out,
            Who {
                key: format!("{user}@{ip}"),
                ..c.who()
            },
            k,
            k.default_severity(),
            format!("Data staging: {user} read far more than usual from RDS DB instance {id}"),
            desc,
            ev,
        );
    }

    pub(super) fn data_staging(&mut self, c: &QueryCtx, out: &mut Vec<Finding>) {
        let QueryCtx {
            q,
            ip,
            ref user,
            ref class,
            ref inst,
            ref th,
            rows,
            bytes,
            ref w,
            known_user,
            base_q,
            base_w,
            ref id,
            ..
        } = *c;
        let over =
            |v: u64, base: u64, min: u64| v > ((th.staging_factor * base as f64) as u64).max(min);
        let why = |what: &str, rows: u64, bytes: u64, base: (u64, u64)| {
            let mut r = Vec::new();
            if over(rows, base.0, th.staging_min_rows) {
                r.push(format!("{rows} rows {what} (baseline {})", base.0));
            }
            if over(bytes, base.1, th.staging_min_bytes) {
                r.push(format!("{bytes} bytes {what} (baseline {})", base.1));
            }
            r
        };
        let mut reasons = why("in one response", rows, bytes, base_q);
        let (mut ev_rows, mut ev_bytes, mut ev_q, mut fps, mut base) =
            (rows, bytes, 1, vec![q.fingerprint.clone()], base_q);
        if reasons.is_empty()
            && w.reported
            && let Some((t_rows, t_bytes, t_queries)) = w.told
        {
            // The staging goes on after it was reported: this read is added to the finding
            // (evidence totals add up), and the description gives the running total.
            let desc = format!(
                "{ip} read {t_rows} rows / {t_bytes} bytes as {user} from {id} in {t_queries} queries since the volume went past its baseline, and goes on reading."
            );
            self.staging(
                c,
                out,
                desc,
                Evidence {
                    fingerprints: vec![q.fingerprint.clone()],
                    queries: Some(1),
                    rows: Some(rows),
                    bytes: Some(bytes),
                    statement_classes: vec![class.clone()],
                    ..Evidence::default()
                },
            );
            return;
        }
        if reasons.is_empty() && !w.reported {
            reasons = why(
                &format!("in {} s", th.staging_window_s),
                w.rows,
                w.bytes,
                base_w,
            );
            (ev_rows, ev_bytes, ev_q, fps, base) =
                (w.rows, w.bytes, w.queries, w.fingerprints.clone(), base_w);
            if !reasons.is_empty()
                && let Some(w) = self.windows.get_mut(&(inst.key.clone(), user.clone(), ip))
            {
                w.reported = true;
                w.told = Some((w.rows, w.bytes, w.queries));
            }
        }
        if !reasons.is_empty() {
            if !known_user {
                reasons.push(format!("{user} has no baseline on this instance"));
            }
            let desc = format!(
                "{ip} read {ev_rows} rows / {ev_bytes} bytes as {user} from {id}: {}.",
                reasons.join("; ")
            );
            self.staging(
                c,
                out,
                desc,
                Evidence {
                    reasons,
                    fingerprints: fps,
                    queries: Some(ev_q),
                    rows: Some(ev_rows),
                    bytes: Some(ev_bytes),
                    baseline_rows: Some(base.0),
                    baseline_bytes: Some(base.1),
                    statement_classes: vec![class.clone()],
                    ..Evidence::default()
                },
            );
        }
    }
}
