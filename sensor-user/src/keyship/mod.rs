//! Key logs from where the applications run to the sensor: `rds-sensor keylog-forward` follows
//! a key log file beside an application and ships every line, over TLS, to the sensor's key
//! receiver (`--keylog-listen`), which feeds the key store the TLS layer reads.
//!
//! The wire, inside TLS 1.3 or 1.2 (rustls, ring): the forwarder sends `RDS-KEYLOG/1`, then
//! (token authentication) `TOKEN <token>`, one line each; the receiver answers `OK` or `DENIED`
//! and, after `OK`, takes key log lines until the connection ends. A receiver configured with
//! a client CA also takes a client certificate it verifies as authentication. Nothing that
//! is not authenticated reaches the store, and the receiver says why in its own log (never a
//! line's text: lines are secrets).

pub mod forward;
pub mod receive;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The first line a forwarder sends.
pub const HELLO: &str = "RDS-KEYLOG/1";
/// Longest line either side reads (key log lines are under 300 bytes).
pub const MAX_LINE: usize = 1024;

/// The crypto provider both sides use, named (the AWS SDK brings another into some builds).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading the private key {}", path.display()))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// Tokens, one per line of a file (blank lines and `#` comments skipped), held zeroized.
pub fn read_tokens(path: &Path) -> Result<Vec<Zeroizing<String>>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?,
    );
    let tokens: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Zeroizing::new(l.to_string()))
        .collect();
    if tokens.is_empty() {
        bail!("{}: no token in it", path.display());
    }
    if tokens.iter().any(|t| t.len() < 16) {
        bail!(
            "{}: a token is shorter than 16 characters (use a random one, e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(tokens)
}

/// Equal without saying where they differ (the comparison takes the same time whatever the
/// guess).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_files_are_checked() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abc", b"abcdef"));
        let dir = std::env::temp_dir().join(format!("rds-keyship-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens");
        std::fs::write(&f, "# comment\n\n0123456789abcdef0123\n").unwrap();
        assert_eq!(read_tokens(&f).unwrap().len(), 1);
        std::fs::write(&f, "short\n").unwrap();
        assert!(read_tokens(&f).is_err());
        std::fs::write(&f, "").unwrap();
        assert!(read_tokens(&f).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
