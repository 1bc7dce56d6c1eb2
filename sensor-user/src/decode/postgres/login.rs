//! Start-up: SSLRequest / GSSENCRequest and their answer, the StartupMessage, the
//! authentication exchange, and the login record it ends in.

use super::{
    Phase, PostgresDecoder,
    framer::{Mode, Msg},
    messages::{self, StartupPacket, cstr},
    records::Session,
};
use crate::{
    decode::{
        Control, DecodeCtx,
        kit::{ErrorReply, Login, iam, lossy},
    },
    model::{Outcome, Purpose},
};

impl PostgresDecoder {
    /// TLS (or, `gss`, GSSAPI encryption) from the next byte on. Inside TLS the conversation
    /// starts again (a StartupMessage first), so the decoder does too: the session gives it
    /// the plaintext when a layer can read it, and nothing more when none can.
    pub(super) fn go_encrypted(&mut self, gss: bool) {
        if gss {
            self.switch = Some(Control::Opaque);
            self.phase = Phase::Done;
            self.login = None;
            self.stop();
        } else {
            *self = PostgresDecoder::new(false);
            self.switch = Some(Control::StartTls { at: 0 });
        }
    }

    pub(super) fn emit_login(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        outcome: Outcome,
        error: Option<ErrorReply>,
    ) {
        if let Some(l) = self.login.take() {
            l.report(cx, outcome, error);
        }
    }

    /// A client message during authentication: a SASLInitialResponse names the mechanism the
    /// client chose, a cleartext password may be an IAM token; anything else but a Terminate
    /// or COPY data means the server's answer went missing.
    pub(super) fn on_auth_request(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        if m.typ == b'p' {
            self.awaiting_credentials = false;
            let kept = std::mem::take(&mut self.req.keep_password);
            let Some(l) = self.login.as_mut() else { return };
            if kept == messages::KEEP_CLEARTEXT {
                // Cut short (a token longer than kept, a capture's snap length): not judged.
                if m.complete && m.body.len() as u64 == m.body_len {
                    l.iam = iam::recognise(m.body);
                }
            } else if kept > 0 {
                let mut pos = 0;
                if let Some(mech) = cstr(m.body, &mut pos)
                    && !mech.is_empty()
                {
                    l.auth_method = Some(lossy(mech).to_ascii_lowercase());
                }
            }
        } else if !matches!(m.typ, b'X' | b'd' | b'c' | b'f') {
            // Clients query only after ReadyForQuery: the answer went missing.
            self.emit_login(cx, Outcome::Success, None);
            self.phase = Phase::Ready;
            self.on_typed_request(cx, m);
        }
    }

    pub(super) fn on_startup_packet(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match messages::parse_startup(m.body) {
            StartupPacket::Ssl | StartupPacket::GssEnc => {
                self.phase = Phase::AwaitAnswer;
                self.resp.mode = Mode::Answer;
            }
            StartupPacket::Cancel => {
                self.purpose = Purpose::Cancel;
                self.phase = Phase::Done;
                self.stop();
            }
            StartupPacket::Startup { params } => {
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let user = get("user");
                // The server's default database is the user name.
                let database = get("database").or_else(|| user.clone());
                self.session = Session {
                    user: user.clone(),
                    database: database.clone(),
                    held: Vec::new(),
                };
                self.login = Some(Login {
                    ts_ns: m.start_ts,
                    user,
                    database,
                    application: get("application_name"),
                    ..Login::default()
                });
                self.phase = Phase::Auth;
                self.req.mode = Mode::Typed;
                self.resp.mode = Mode::Typed;
            }
            StartupPacket::Invalid => {
                cx.stats.malformed += 1;
                self.phase = Phase::Dead;
                self.stop();
            }
        }
    }

    pub(super) fn on_auth_response(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match m.typ {
            b'R' => {
                let Some(l) = self.login.as_mut() else { return };
                let code = messages::auth_code(m.body);
                // Anything but AuthenticationOk and SASLFinal asks the client for more.
                self.awaiting_credentials = !matches!(code, Some(0 | 12));
                let method = match code {
                    Some(0) => {
                        if l.auth_method.is_none() {
                            l.auth_method = Some("trust".into());
                        }
                        None
                    }
                    Some(2) => Some("kerberos".to_string()),
                    Some(3) => {
                        self.req.keep_password = messages::KEEP_CLEARTEXT;
                        Some("cleartext".into())
                    }
                    Some(5) => Some("md5".into()),
                    Some(7) => Some("gss".into()),
                    Some(9) => Some("sspi".into()),
                    Some(10) => {
                        // The client names its choice in the SASLInitialResponse.
                        self.req.keep_password = messages::KEEP_SASL_MECHANISM;
                        let mechs = messages::sasl_mechanisms(m.body);
                        Some(match mechs.as_slice() {
                            [one] => one.to_ascii_lowercase(),
                            _ => "sasl".into(),
                        })
                    }
                    _ => None,
                };
                if let Some(method) = method {
                    l.auth_method = Some(method);
                }
            }
            b'S' => {
                let mut pos = 0;
                if let Some(b"server_version") = cstr(m.body, &mut pos)
                    && let Some(v) = cstr(m.body, &mut pos)
                    && let Some(l) = self.login.as_mut()
                {
                    l.server_version = Some(lossy(v));
                }
            }
            b'E' => {
                let code = if m.complete || m.body.len() >= 64 {
                    messages::error_reply(m.body)
                } else {
                    None
                };
                self.emit_login(cx, Outcome::Failure, code);
                self.phase = Phase::Done;
                self.stop();
            }
            b'Z' => {
                self.emit_login(cx, Outcome::Success, None);
                self.req.keep_password = 0;
                self.phase = Phase::Ready;
            }
            _ => {}
        }
    }
}
