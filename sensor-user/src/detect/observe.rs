//! Each record's context, built once, then handed to the finding families in turn: logins to
//! intel, policy, weak authentication, brute force and spraying, then the login baseline;
//! queries to privilege drift and data staging; ended connections to intel discovery, policy
//! and the probe/new-edge family.

use super::baseline::fingerprint_key;
use super::context::{FlowCtx, LoginCtx, QueryCtx};
use super::data_staging::reads_rows;
use super::finding::{Evidence, UserDetails};
use super::intel::canonical;
use super::privilege_drift::{drifts, statement_class};
use super::state::Conn;
use super::{Detector, Finding};
use crate::model::{FlowEnd, FlowRecord, LoginRecord, Outcome, Purpose, QueryRecord};
use std::net::{IpAddr, SocketAddr};

/// PostgreSQL's SQLSTATE 42601 (syntax_error), MySQL/MariaDB's 1064 (ER_PARSE_ERROR), SQL
/// Server's 102 (incorrect syntax), 105 (unclosed quotation mark) and 156 (incorrect syntax
/// near a keyword).
fn is_syntax_error(code: &str) -> bool {
    matches!(code, "42601" | "1064" | "102" | "105" | "156")
}

pub(super) fn client_ip(s: &str) -> Option<IpAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
        .or_else(|| s.parse::<IpAddr>().ok().map(canonical))
}

impl Detector {
    pub(super) fn on_login(&mut self, l: &LoginRecord, out: &mut Vec<Finding>) {
        self.stats.logins += 1;
        let now = l.ts.ns();
        self.advance(now, out);
        // No login happened and none was refused (psql prompting for the password): neither a
        // success nor a failure to learn or to count.
        if l.outcome == Outcome::Abandoned {
            return;
        }
        let Some(ip) = client_ip(&l.endpoint.client) else {
            return;
        };
        let inst = self.instance(&l.endpoint.server, l.endpoint.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let ok = l.outcome == Outcome::Success;
        let user = l.user.clone().unwrap_or_else(|| "-".into());
        let app = l.application.clone().unwrap_or_default();
        // Empty: the login named no database.
        let db = l.database.clone().unwrap_or_default();
        let auth = l.auth_method.clone().unwrap_or_default();
        self.conns.insert(
            (l.endpoint.client.clone(), l.endpoint.server.clone()),
            Conn {
                user: l.user.clone(),
                application: l.application.clone().unwrap_or_default(),
                tls: l.tls,
                auth_method: l.auth_method.clone().unwrap_or_default(),
                ts_ns: now,
            },
        );
        {
            let c = self
                .login_counts
                .entry((inst.key.clone(), ip))
                .or_default()
                .entry((user.clone(), app.clone()))
                .or_default();
            if ok {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
        }
        let a = self.actor(ip);
        let ud = Some(UserDetails {
            user: user.clone(),
            application: app.clone(),
            database: db.clone(),
            ssl: l.tls.to_string(),
            auth_method: if auth.is_empty() {
                "unknown".into()
            } else {
                auth.clone()
            },
        });
        let id = inst.details.db_instance_identifier.clone();
        let verb = if ok { "logged in" } else { "failed to log in" };

        let c = LoginCtx {
            l,
            now,
            ip,
            inst,
            learning,
            th,
            ok,
            user,
            app,
            db,
            auth,
            a,
            ud,
            id,
            verb,
        };

        // Threat intelligence and policy: always.
        self.intel_logins(&c, out);
        self.unallowed_login(&c, out);
        self.weak_auth_login(&c, out);
        self.iam_auth_login(&c, out);
        self.tls_login(l, c.who(), c.learning, out);
        // Patterns that need no baseline: brute force and spraying.
        let public_failures = self.brute_force_and_spray(&c, out);
        // Rates and the baseline.
        self.login_anomaly(&c, public_failures, out);
    }

    pub(super) fn on_query(&mut self, q: &QueryRecord, out: &mut Vec<Finding>) {
        self.stats.queries += 1;
        let now = q.ts.ns();
        self.advance(now, out);
        let Some(ip) = client_ip(&q.endpoint.client) else {
            return;
        };
        let conn_key = (q.endpoint.client.clone(), q.endpoint.server.clone());
        if let Some(c) = self.conns.get_mut(&conn_key) {
            c.ts_ns = now;
        }
        let Some(user) = q
            .user
            .clone()
            .or_else(|| self.conns.get(&conn_key).and_then(|c| c.user.clone()))
        else {
            return;
        };
        // A statement the server refused as a syntax error never ran: its "class" is a typo,
        // neither learned nor drift.
        if q.error_code.as_deref().is_some_and(is_syntax_error) {
            return;
        }
        let class = statement_class(&q.verb, &q.fingerprint);
        if class.is_empty() {
            return;
        }
        let inst = self.instance(&q.endpoint.server, q.endpoint.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let rows = if reads_rows(&class) {
            q.rows.unwrap_or(0)
        } else {
            0
        };
        let bytes = q.bytes_response;
        let fpk = fingerprint_key(&q.fingerprint);

        let w = self.staging_window(
            (inst.key.clone(), user.clone(), ip),
            now,
            rows,
            bytes,
            &q.fingerprint,
        );

        let ib = self.instance_baseline(&inst.key);
        if learning {
            let ub = ib.users.entry(user).or_default();
            ub.classes.insert(class);
            ub.queries += 1;
            ub.learn_volume(fpk, rows, bytes);
            ub.max_rows_window = ub.max_rows_window.max(w.rows);
            ub.max_bytes_window = ub.max_bytes_window.max(w.bytes);
            return;
        }
        let (known_user, drift, base_q, base_w) = match ib.users.get_mut(&user) {
            Some(ub) => {
                ub.queries += 1;
                let base_q = ub
                    .volume(&fpk)
                    .map(|v| (v.max_rows, v.max_bytes))
                    .unwrap_or((ub.max_rows_query, ub.max_bytes_query));
                (
                    true,
                    !ub.classes.contains(&class) && drifts(&class),
                    base_q,
                    (ub.max_rows_window, ub.max_bytes_window),
                )
            }
            None => (false, false, (0, 0), (0, 0)),
        };
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        // The session's login, when the sensor saw it, tells the rest.
        let conn = self.conns.get(&conn_key);
        let ud = Some(UserDetails {
            user: user.clone(),
            application: conn.map(|c| c.application.clone()).unwrap_or_default(),
            database: q.database.clone().unwrap_or_else(|| "-".into()),
            ssl: conn.is_some_and(|c| c.tls).to_string(),
            auth_method: conn
                .map(|c| c.auth_method.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        });
        let c = QueryCtx {
            q,
            ip,
            user,
            class,
            inst,
            th,
            rows,
            bytes,
            w,
            known_user,
            base_q,
            base_w,
            a,
            id,
            ud,
        };
        if drift {
            self.privilege_drift(&c, out);
        }
        self.data_staging(&c, out);
    }

    pub(super) fn on_flow(&mut self, f: &FlowRecord, out: &mut Vec<Finding>) {
        self.stats.flows += 1;
        let now = f.first_seen.ns() + f.duration_us * 1000;
        self.advance(now, out);
        let Some(ip) = client_ip(&f.endpoint.client) else {
            return;
        };
        let inst = self.instance(&f.endpoint.server, f.endpoint.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let had_login = self
            .conns
            .remove(&(f.endpoint.client.clone(), f.endpoint.server.clone()))
            .is_some();
        let complete = f.syn > 0 && !matches!(f.end, FlowEnd::EndOfCapture | FlowEnd::Shutdown);
        // A PostgreSQL CancelRequest (a connection of its own, unanswered): the decoder says.
        let cancel = f.purpose == Purpose::Cancel;
        let probe = complete
            && !had_login
            && !cancel
            && f.payload_bytes_to_server <= th.probe_max_client_bytes;
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        let end = format!("{:?}", f.end).to_ascii_lowercase();
        let how = if f.syn_ack == 0 {
            "got no SYN-ACK".to_string()
        } else if probe {
            format!("closed ({end}) before any authentication")
        } else {
            format!(
                "carried {} bytes without a login the sensor could read",
                f.payload_bytes_to_server
            )
        };
        let ev = Evidence {
            connections: Some(1),
            flow_ends: vec![end.clone()],
            ..Evidence::default()
        };
        let listed = !a.lists.is_empty();
        let c = FlowCtx {
            f,
            ip,
            inst,
            learning,
            had_login,
            complete,
            probe,
            a,
            id,
            how,
            ev,
            listed,
        };
        if !had_login {
            self.intel_discovery(&c, out);
            self.unallowed_flow(&c, out);
        }
        self.unauthenticated_flow(&c, out);
    }
}
