//! A login attempt as a decoder learns it, and the record it becomes once the server answers.

use super::ErrorReply;
use super::iam::IamToken;
use crate::{
    decode::DecodeCtx,
    model::{self, LoginRecord, Outcome, Record, Timestamp},
};

/// What is known of a login attempt before the server's final answer.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// When the client's start-up (or handshake response) began.
    pub ts_ns: u64,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// e.g. `scram-sha-256`, `mysql_native_password`.
    pub auth_method: Option<String>,
    pub server_version: Option<String>,
    /// The login ran inside TLS.
    pub tls: bool,
    pub client_host: Option<String>,
    pub client_library: Option<String>,
    /// The cleartext password was an IAM authentication token (see [`super::iam`]).
    pub iam: Option<IamToken>,
}

impl Login {
    /// Reports the attempt with the server's final answer (its error, if it refused).
    pub fn report(self, cx: &mut DecodeCtx<'_>, outcome: Outcome, error: Option<ErrorReply>) {
        let ts = cx.clock.at(self.ts_ns);
        let secs = |s: i64| Timestamp(u64::try_from(s).unwrap_or(0).saturating_mul(1_000_000_000));
        let iam_token = self.iam.map(|t| model::IamToken {
            signed_at: secs(t.signed_at_s),
            expires_at: secs(t.expires_at_s()),
            expired: ts > secs(t.expires_at_s()),
            region: t.region,
            service: t.service.into(),
        });
        let auth_method = if iam_token.is_some() {
            Some("iam".into())
        } else {
            self.auth_method
        };
        cx.out.push(Record::Login(LoginRecord {
            ts,
            endpoint: cx.endpoint.clone(),
            user: self.user,
            database: self.database,
            application: self.application,
            outcome,
            error_message: error.as_ref().and_then(|e| e.message_for(cx.redact)),
            error_name: error.as_ref().and_then(|e| e.name),
            error_code: error.map(|e| e.code),
            tls: self.tls,
            tls_version: None,
            tls_suite: None,
            auth_method,
            server_version: self.server_version,
            client_host: self.client_host,
            client_library: self.client_library,
            iam_token,
        }));
    }
}
