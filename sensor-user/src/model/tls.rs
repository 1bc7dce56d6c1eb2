//! What a TLS session shows: from its clear handshake alone (version, suite, names, the client's
//! fingerprint), and whether the sensor could read inside it.

use super::{Endpoint, Timestamp};
use serde::Serialize;

/// Why a TLS session's contents could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Undecryptable {
    /// No key log line for its client random arrived in time (or before the held ciphertext
    /// outgrew its bound).
    NoKey,
    /// The keys that arrived do not open its records (a key log of another session or
    /// endpoint with the same random, or a corrupt line).
    BadKey,
    /// A CBC or other non-AEAD suite.
    Suite,
    /// TLS 1.0 or 1.1 (or SSL).
    Version,
    /// The sensor saw no ClientHello/ServerHello: it started in the middle of the session,
    /// or the handshake was lost.
    NoHandshake,
    /// The bytes are not TLS records.
    NotTls,
}

impl Undecryptable {
    pub const ALL: [Undecryptable; 6] = [
        Undecryptable::NoKey,
        Undecryptable::BadKey,
        Undecryptable::Suite,
        Undecryptable::Version,
        Undecryptable::NoHandshake,
        Undecryptable::NotTls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Undecryptable::NoKey => "no_key",
            Undecryptable::BadKey => "bad_key",
            Undecryptable::Suite => "suite",
            Undecryptable::Version => "version",
            Undecryptable::NoHandshake => "no_handshake",
            Undecryptable::NotTls => "not_tls",
        }
    }
}

/// What the clear part of a handshake told, and what came of reading the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// Negotiated version: `TLSv1.3`, `TLSv1.2`, …
    pub version: Option<String>,
    /// IANA name of the negotiated suite, e.g. `TLS_AES_256_GCM_SHA384`.
    pub suite: Option<String>,
    /// Server name the client asked for (on RDS, the instance's endpoint).
    pub sni: Option<String>,
    /// ALPN protocols the client offered (PostgreSQL 17's direct TLS offers `postgresql`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// JA4 fingerprint of the ClientHello.
    pub ja4: Option<String>,
    /// The server's certificate: in the clear in TLS 1.2, read with the keys in TLS 1.3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
    /// The server answered the first ClientHello with a HelloRetryRequest.
    pub hello_retry: bool,
    /// The sensor read the session's contents with a client key log.
    pub decrypted: bool,
    /// Why not, when it did not.
    pub undecryptable: Option<Undecryptable>,
}

/// What the server's own certificate says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// `CN=…, O=…`, in the certificate's order.
    pub subject: String,
    pub issuer: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// `EC P-256`, `RSA 2048`, `Ed25519`, …
    pub key_type: String,
}

/// One TLS session, reported when the sensor knows whether it can read it (or at its end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsRecord {
    pub ts: Timestamp,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    #[serde(flatten)]
    pub info: TlsInfo,
}

/// One request/response turn of a TLS session the sensor could not read, estimated from its
/// record boundaries and directions alone: the client's application-data records up to the
/// server's answer, the server's up to the client's next. Login round trips are turns too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TurnFigures {
    /// When the client's first record of the turn was complete.
    #[serde(skip)]
    pub start_ns: u64,
    /// From then to the server's last record of the turn, and to its first.
    pub latency_us: u64,
    pub latency_first_byte_us: u64,
    /// Record payload bytes (ciphertext) each way, and records.
    pub bytes_request: u64,
    pub bytes_response: u64,
    pub records_request: u64,
    pub records_response: u64,
}

/// An estimated exchange of an encrypted session ([`TurnFigures`]): `estimated` is always
/// true, so that no reader takes it for a decoded query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsExchangeRecord {
    pub ts: Timestamp,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    #[serde(flatten)]
    pub figures: TurnFigures,
    pub estimated: bool,
}
