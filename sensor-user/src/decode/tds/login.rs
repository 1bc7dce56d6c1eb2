//! The login: PRELOGIN both ways (what TLS follows), LOGIN7, and the reply that decides it.

use super::packet::Msg;
use super::tokens::{self, Reply, ServerError};
use super::wire::{self, encrypt};
use super::{Conn, Phase, TlsMode};
use crate::decode::{DecodeCtx, kit::Login};
use crate::model::Outcome;

impl Conn {
    pub(super) fn on_prelogin_request(&mut self, m: &Msg<'_>) {
        if let Some(p) = wire::prelogin(m.head) {
            self.client_encryption = p.encryption;
        }
    }

    /// The server's PRELOGIN reply (a REPLY packet holding the option table, not tokens);
    /// `false` when the message is not one.
    pub(super) fn on_prelogin_reply(&mut self, m: &Msg<'_>) -> bool {
        let Some(p) = wire::prelogin(m.head) else {
            return false;
        };
        if p.version.is_some() {
            self.server_version = p.version;
        }
        // The server's answer settles it (§2.2.6.5): OFF only when the client offered OFF
        // (login-only), ON / REQ for the whole session, NOT_SUP for none.
        self.tls = match (self.client_encryption, p.encryption) {
            (_, Some(encrypt::NOT_SUP)) | (Some(encrypt::NOT_SUP), Some(encrypt::OFF)) => {
                TlsMode::None
            }
            (_, Some(encrypt::OFF)) => TlsMode::LoginOnly,
            (_, Some(encrypt::ON | encrypt::REQ)) => TlsMode::Full,
            _ => TlsMode::None,
        };
        self.phase = Phase::AfterPrelogin;
        true
    }

    pub(super) fn on_login7(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        let mut login = Login {
            ts_ns: m.start_ts,
            server_version: self.server_version.clone(),
            tls: self.in_tls,
            ..Default::default()
        };
        match wire::login7(m.head) {
            Some(l) => {
                self.tds_version = Some(l.tds_version);
                login.auth_method = Some(l.auth_method().into());
                login.user = l.user;
                login.database = l.database;
                login.application = l.application;
                login.client_host = l.host;
                login.client_library = l.interface;
            }
            None => cx.stats.malformed += 1,
        }
        self.login = Some(login);
        self.phase = Phase::Login;
        if self.in_tls && self.tls == TlsMode::LoginOnly {
            self.stop_tls = true;
        }
    }

    /// The login of TDS 4.2 / 5.0 (Sybase's layout, which SQL Server kept before 7.0): fixed
    /// 30-byte fields each followed by its length — host name, then user name. The password
    /// field after them is not read. The reply decides, as for LOGIN7.
    pub(super) fn on_old_login(&mut self, m: &Msg<'_>) {
        let field = |at: usize| -> Option<String> {
            let b = m.head.get(at..at + 30)?;
            let n = usize::from(*m.head.get(at + 30)?).min(30);
            let t = crate::decode::kit::text(&b[..n], 30);
            (!t.is_empty() && crate::decode::kit::printable(t.as_bytes())).then_some(t)
        };
        self.login = Some(Login {
            ts_ns: m.start_ts,
            user: field(31),
            auth_method: Some("sql-tds4".into()),
            server_version: self.server_version.clone(),
            ..Default::default()
        });
        self.phase = Phase::Login;
    }

    /// A reply during the login: LOGINACK or an error ends it; anything else (an SSPI
    /// challenge) continues it.
    pub(super) fn on_login_reply(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        let reply = self.read_reply(m);
        let outcome = if reply.login_ack.is_some() {
            Outcome::Success
        } else if reply.error.is_some() || reply.done_error {
            Outcome::Failure
        } else {
            return;
        };
        // Without the LOGIN7 (it was inside TLS without keys) the outcome is still known.
        let mut login = self.login.take().unwrap_or_else(|| Login {
            ts_ns: m.start_ts,
            server_version: self.server_version.clone(),
            tls: true,
            ..Default::default()
        });
        if let Some(ack) = &reply.login_ack {
            self.tds_version = Some(ack.tds_version);
            login.server_version = Some(ack.version.clone());
            self.server_version = Some(ack.version.clone());
        }
        let code = reply.error.as_ref().map(ServerError::reply);
        if outcome == Outcome::Success {
            self.login = Some(login);
            if m.spid != 0 {
                self.spid = Some(m.spid);
            }
            self.login_succeeded(cx, reply.database.clone());
        } else {
            self.phase = Phase::Dead;
            login.report(cx, outcome, code);
        }
    }

    /// The login in progress succeeded (`database`: the one ENVCHANGE set).
    pub(super) fn login_succeeded(&mut self, cx: &mut DecodeCtx<'_>, database: Option<String>) {
        let Some(login) = self.login.take() else {
            return;
        };
        self.phase = Phase::Command;
        self.user.clone_from(&login.user);
        self.database = database.or_else(|| login.database.clone());
        login.report(cx, Outcome::Success, None);
    }

    /// What a reply message says: its tokens walked from the start, and, when its middle
    /// was not all captured or the walk stopped, its end read from the tail.
    pub(super) fn read_reply(&self, m: &Msg<'_>) -> Reply {
        let tds71 = self.tds71();
        let mut reply = Reply::default();
        let mut cols = None;
        let stop = tokens::walk(m.head, tds71, &mut cols, true, &mut reply);
        if m.whole && reply.complete {
            return reply;
        }
        let tail = if m.whole {
            let from = stop.max(m.head.len().saturating_sub(super::packet::TAIL));
            &m.head[from..]
        } else {
            m.tail
        };
        if let Some(t) = tokens::tail(tail, tds71) {
            reply.last_done = t.last_done;
            reply.rows = reply.rows.saturating_add(t.rows);
            reply.counted |= t.counted;
            reply.error = reply.error.or(t.error);
            reply.done_error |= t.done_error;
            reply.attention |= t.attention;
            reply.database = t.database.or(reply.database);
            reply.return_int = reply.return_int.or(t.return_int);
        }
        reply
    }

    /// DONE row counts are four bytes before TDS 7.2.
    pub(super) fn tds71(&self) -> bool {
        self.tds_version
            .is_some_and(|v| (0x7000_0000..0x7209_0002).contains(&v))
    }

    /// Requests start with ALL_HEADERS from TDS 7.2 (unknown mid-stream).
    pub(super) fn tds72(&self) -> Option<bool> {
        self.tds_version
            .map(|v| v >= 0x7209_0002 || v >> 24 == 0x08)
    }
}
