//! TLS, read with client key logs: the session layer that takes TLS records off a
//! connection's two streams and gives the plaintext to its decoder, and what the clear
//! handshake shows when no key is there.
//!
//! - [`keys`]: the key store (NSS key log lines, bounded, expiring, zeroized, never printed).
//! - [`keylog`]: key log files and directories, followed as they grow and rotate.
//! - `hello`: ClientHello/ServerHello and the JA4 fingerprint; `cert`: the server
//!   certificate's names, validity and key.
//! - `cipher`: suites, the TLS 1.3 and 1.2 key schedules, AEAD record protection.
//! - `layer`: one connection's records, epochs, sequence numbers and losses.

mod cert;
mod cipher;
mod hello;
pub mod keylog;
pub mod keys;
mod layer;

pub use keylog::KeyLogFiles;
pub use keys::{KeyStats, KeyStore, LineError};
pub use layer::{Hold, TlsLayer};

use super::Layers;

/// The session layers for a sensor that reads TLS with the keys in `store`.
pub fn layers(store: KeyStore, hold: Hold) -> Layers {
    Layers::with_tls(move || Box::new(TlsLayer::new(store.clone(), hold)))
}
