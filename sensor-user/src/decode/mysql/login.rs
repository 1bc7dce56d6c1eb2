//! The connection phase: greeting, HandshakeResponse (or SSLRequest), the authentication
//! exchange and its outcome (also for COM_CHANGE_USER), and what the handshake negotiated.

use super::{
    Phase, Session,
    framer::Packet,
    wire::{self, cap},
};
use crate::{
    decode::{
        DecodeCtx,
        kit::{ErrorReply, Login, iam},
    },
    model::Outcome,
};

/// The authentication plugin that sends the password in clear (inside TLS, for IAM).
const CLEAR_PASSWORD: &str = "mysql_clear_password";

impl Session {
    /// Negotiated capabilities (assumed when the handshake was not seen).
    pub(super) fn caps(&self) -> u32 {
        match (self.server_caps, self.client_caps) {
            (Some(s), Some(c)) => s & c,
            (None, Some(c)) => c,
            (Some(s), None) => s & cap::ASSUMED,
            (None, None) => cap::ASSUMED,
        }
    }

    /// Whether COM_QUERY carries query attributes (`None`: unknown).
    pub(super) fn query_attrs(&self) -> Option<bool> {
        match (self.server_caps, self.client_caps) {
            (Some(s), Some(c)) => Some(s & c & cap::QUERY_ATTRIBUTES != 0),
            _ => None,
        }
    }

    pub(super) fn mariadb_cache_metadata(&self) -> bool {
        self.server_ext & self.client_ext & cap::MARIADB_CACHE_METADATA != 0
    }

    /// The server said it is MariaDB (its error numbers from 1700 up are MariaDB's own).
    pub(super) fn mariadb(&self) -> bool {
        self.server_version
            .as_deref()
            .is_some_and(|v| v.contains("MariaDB"))
    }

    pub(super) fn emit_login(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        mut l: Login,
        outcome: Outcome,
        error: Option<ErrorReply>,
    ) {
        l.server_version = self.server_version.clone();
        l.report(cx, outcome, error);
    }

    // ---- connection phase ----

    pub(super) fn on_greeting(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        match p.head.first() {
            Some(0x0a) => {
                if let Some(g) = wire::parse_greeting(p.head) {
                    self.server_version = Some(g.version);
                    self.connection_id = Some(g.connection_id);
                    self.server_caps = Some(g.caps);
                    self.server_ext = g.ext_caps;
                    self.server_plugin = g.plugin;
                    self.phase = Phase::HandshakeResponse;
                    self.seq_next = p.last_seq.wrapping_add(1);
                    return;
                }
            }
            Some(0xff) => {
                // Refused before the handshake (too many connections, host blocked, …).
                let code = wire::parse_err_reply(p.head, self.mariadb());
                let l = Login {
                    ts_ns: p.start_ts,
                    ..Default::default()
                };
                self.emit_login(cx, l, Outcome::Failure, code);
                self.phase = Phase::Dead;
                return;
            }
            _ => {}
        }
        cx.stats.malformed += 1;
        self.phase = Phase::Command;
    }

    pub(super) fn on_handshake_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let Some(h) = wire::parse_handshake_response(p.head, p.whole()) else {
            cx.stats.malformed += 1;
            // Whatever it was, the server answers it: keep following the exchange.
            self.login = Some(Login {
                ts_ns: p.start_ts,
                ..Default::default()
            });
            self.phase = Phase::Auth;
            self.seq_next = p.last_seq.wrapping_add(1);
            return;
        };
        self.client_caps = Some(h.caps);
        self.client_ext = h.ext_caps;
        if h.ssl_request {
            // TLS starts after this packet, and the HandshakeResponse follows inside it with
            // the next sequence id: the session hands this decoder the plaintext when a layer
            // can read it, and nothing more when none can.
            self.phase = Phase::HandshakeResponse;
            self.seq_next = p.last_seq.wrapping_add(1);
            self.tls_after = Some(Some(p.wire));
            return;
        }
        let method = h
            .plugin
            .clone()
            .or_else(|| self.server_plugin.clone())
            .or_else(|| {
                Some(if h.caps & cap::SECURE_CONNECTION != 0 {
                    "mysql_native_password".to_string()
                } else {
                    "mysql_old_password".to_string()
                })
            });
        let iam = if method.as_deref() == Some(CLEAR_PASSWORD) {
            p.head.get(h.auth.clone()).and_then(iam::recognise)
        } else {
            None
        };
        self.login = Some(Login {
            ts_ns: p.start_ts,
            user: h.user,
            database: h.database,
            application: wire::application(&h.attrs),
            auth_method: method,
            iam,
            ..Default::default()
        });
        self.phase = Phase::Auth;
        self.seq_next = p.last_seq.wrapping_add(1);
    }

    /// A server packet of the login exchange (handshake or COM_CHANGE_USER). Returns the
    /// outcome once the server said its final word.
    pub(super) fn auth_step(
        login: &mut Login,
        p: &Packet<'_>,
        mariadb: bool,
    ) -> Option<(Outcome, Option<ErrorReply>)> {
        match p.head.first() {
            Some(0x00) => Some((Outcome::Success, None)),
            Some(0xff) if wire::is_progress(p.head) => None,
            Some(0xff) => Some((Outcome::Failure, wire::parse_err_reply(p.head, mariadb))),
            Some(0xfe) => {
                // AuthSwitchRequest (a lone 0xFE: the old switch to mysql_old_password).
                let plugin = if p.head.len() == 1 {
                    Some("mysql_old_password".to_string())
                } else {
                    wire::name(wire::Rd::new(&p.head[1..]).nul_or_end())
                };
                if plugin.is_some() {
                    login.auth_method = plugin;
                }
                None
            }
            // AuthMoreData (caching_sha2 fast-auth success 0x03, full auth 0x04, a public
            // key) and anything else: the exchange goes on.
            _ => None,
        }
    }

    /// A client packet of the login exchange: after a switch to `mysql_clear_password` (what
    /// RDS's IAM plugin and PAM ask for), the password, which may be an IAM token.
    pub(super) fn on_auth_request(&mut self, p: &Packet<'_>) {
        self.seq_next = p.last_seq.wrapping_add(1);
        if let Some(l) = self.login.as_mut()
            && l.auth_method.as_deref() == Some(CLEAR_PASSWORD)
            && l.iam.is_none()
            && p.whole()
        {
            l.iam = iam::recognise(p.head);
        }
    }

    pub(super) fn on_auth_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        self.seq_next = p.last_seq.wrapping_add(1);
        let mariadb = self.mariadb();
        let login = self.login.get_or_insert_with(|| Login {
            ts_ns: p.start_ts,
            ..Default::default()
        });
        let Some((outcome, error)) = Self::auth_step(login, p, mariadb) else {
            return;
        };
        let l = self.login.take().unwrap_or_default();
        self.user.clone_from(&l.user);
        self.database.clone_from(&l.database);
        self.application.clone_from(&l.application);
        self.emit_login(cx, l, outcome, error);
        if outcome == Outcome::Failure {
            self.phase = Phase::Dead;
            return;
        }
        self.phase = Phase::Command;
        if self.caps() & (cap::COMPRESS | cap::ZSTD_COMPRESSION) != 0 && self.client_caps.is_some()
        {
            self.phase = Phase::Compressed;
        }
        if let Some(c) = self.server_caps.zip(self.client_caps).map(|(s, c)| s & c) {
            self.deprecate_eof = Some(c & cap::DEPRECATE_EOF != 0);
        }
    }
}
