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
//! - `timing`: the request/response turns of a session that cannot be read, estimated from
//!   its record boundaries.

mod cert;
mod cipher;
mod hello;
pub mod keylog;
pub mod keys;
mod layer;
#[cfg(test)]
mod tests;
mod timing;

pub use keylog::KeyLogFiles;
pub use keys::{KeyStats, KeyStore, LineError};
pub use layer::{Hold, HoldBudget, TlsLayer};

use super::Layers;

/// The session layers for a sensor that reads TLS with the keys in `store`; every
/// connection's layer draws on one [`HoldBudget`] for the ciphertext it holds for late keys.
pub fn layers(store: KeyStore, hold: Hold) -> Layers {
    layers_with_budget(store, hold, std::sync::Arc::default())
}

/// [`layers`], drawing on a budget the caller can watch.
pub fn layers_with_budget(
    store: KeyStore,
    hold: Hold,
    budget: std::sync::Arc<HoldBudget>,
) -> Layers {
    Layers::with_tls(move || Box::new(TlsLayer::new(store.clone(), hold, budget.clone())))
}

/// For the benchmark suite: `n` TLS 1.3 records of `len` plaintext bytes protected with
/// AES-128-GCM, opened as the layer opens them (nonce from the sequence number, the header as
/// AAD, the tag checked, decrypted in place). Returns the seconds the
/// opening took (records sealed beforehand); panics if one does not open.
#[doc(hidden)]
pub fn bench_open(len: usize, n: usize) -> f64 {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    let secret = keys::Secret::new(vec![7; 32]);
    let suite = cipher::Suite::from_id(0x1301);
    let keys = cipher::tls13_keys(&suite, &secret).expect("a 32-byte secret");
    // Seal with the same key and IV (RustCrypto directly): what a peer would send.
    let key = cipher::expand_for_bench(&secret, "key", 16);
    let sealer = aes_gcm::Aes128Gcm::new_from_slice(&key).expect("16-byte key");
    let records: Vec<(Vec<u8>, [u8; 16], [u8; 5])> = (0..n as u64)
        .map(|seq| {
            let mut body = vec![0x5a; len];
            let header = [23, 3, 3, ((len + 16) >> 8) as u8, (len + 16) as u8];
            let tag = sealer
                .encrypt_inout_detached(
                    (&keys.nonce(seq, None)).into(),
                    &header,
                    body.as_mut_slice().into(),
                )
                .expect("seal");
            (body, tag.into(), header)
        })
        .collect();
    let start = std::time::Instant::now();
    for (seq, (body, tag, header)) in records.into_iter().enumerate() {
        let mut body = body;
        assert!(
            keys.cipher
                .open(&keys.nonce(seq as u64, None), &header, &mut body, &tag)
        );
        std::hint::black_box(&body);
    }
    start.elapsed().as_secs_f64()
}
