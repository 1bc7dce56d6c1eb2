//! A login attempt as a decoder learns it, and the record it becomes once the server answers.

use crate::{
    decode::DecodeCtx,
    model::{LoginRecord, Outcome, Record},
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
}

impl Login {
    /// Reports the attempt with the server's final answer (`error_code`: SQLSTATE, errno).
    pub fn report(self, cx: &mut DecodeCtx<'_>, outcome: Outcome, error_code: Option<String>) {
        cx.out.push(Record::Login(LoginRecord {
            ts: cx.clock.at(self.ts_ns),
            endpoint: cx.endpoint.clone(),
            user: self.user,
            database: self.database,
            application: self.application,
            outcome,
            error_code,
            tls: self.tls,
            tls_version: None,
            tls_suite: None,
            auth_method: self.auth_method,
            server_version: self.server_version,
            client_host: self.client_host,
            client_library: self.client_library,
        }));
    }
}
