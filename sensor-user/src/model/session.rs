//! What decoders make of a session: its logins and its queries.

use super::{Endpoint, Timestamp};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// The client went away when the server asked for its credentials: no refusal, no login
    /// (psql does this, then asks its user for the password and connects again).
    Abandoned,
}

/// One login attempt and what the server finally said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoginRecord {
    pub ts: Timestamp,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    pub outcome: Outcome,
    /// SQLSTATE (PostgreSQL) or error number (MySQL, SQL Server), as a string.
    pub error_code: Option<String>,
    /// The code's name (PostgreSQL's condition name, MySQL's `ER_` symbol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_name: Option<&'static str>,
    /// The server's message, quoted spans and numbers redacted unless `--no-redact`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub tls: bool,
    /// The TLS version and suite the login ran under, when it ran inside TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_suite: Option<String>,
    /// e.g. `cleartext`, `md5`, `scram-sha-256`, `mysql_native_password`, `caching_sha2_password`.
    pub auth_method: Option<String>,
    /// Server version when the protocol tells it (MySQL handshake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The client's own name for its host, and its driver library, when the login says
    /// (SQL Server's LOGIN7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_library: Option<String>,
    /// The password was an AWS IAM database authentication token (`auth_method: "iam"`):
    /// what the token says of itself. The token is never kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam_token: Option<IamToken>,
}

/// An IAM database authentication token's own times and scope (nothing secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IamToken {
    /// Its `X-Amz-Date`.
    pub signed_at: Timestamp,
    /// `X-Amz-Date` + `X-Amz-Expires`: the server refuses it from then on.
    pub expires_at: Timestamp,
    /// The region and service (`rds-db`, Aurora DSQL's `dsql`) of its credential scope.
    pub region: String,
    pub service: String,
    /// The login came after `expires_at`.
    pub expired: bool,
}

/// One request and its response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryRecord {
    /// When the request's first byte arrived.
    pub ts: Timestamp,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub database: Option<String>,
    /// Statement class: SELECT, INSERT, UPDATE, DELETE, DDL verbs (CREATE, ALTER, DROP, …),
    /// COPY, BEGIN, COMMIT, …, or the protocol command (PING, INIT_DB, …).
    pub verb: String,
    /// The statement with literals and parameters replaced by `?`.
    pub fingerprint: String,
    /// The statement as sent, only when redaction is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Rows returned or affected, when the protocol says.
    pub rows: Option<u64>,
    pub error_code: Option<String>,
    /// The code's name (PostgreSQL's condition name, MySQL's `ER_` symbol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_name: Option<&'static str>,
    /// The server's message, quoted spans and numbers redacted unless `--no-redact`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub bytes_request: u64,
    pub bytes_response: u64,
    /// From the request's first byte to the response's first byte, µs.
    pub latency_first_byte_us: Option<u64>,
    /// From the request's first byte to the end of the response, µs.
    pub latency_us: u64,
    /// Extended-protocol / binary-protocol prepared statement executions.
    pub prepared: bool,
    /// What the server said it did, when it says (PostgreSQL's CommandComplete tag without
    /// its counts: a COMMIT of an aborted transaction completes as `ROLLBACK`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}
