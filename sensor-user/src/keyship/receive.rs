//! The sensor's key receiver (`--keylog-listen ADDR`): TLS, then authentication (a token, or
//! a client certificate the configured CA signed), then key log lines into the store.

use super::{HELLO, MAX_LINE, certs, key, provider, roots, same};
use crate::session::tls::KeyStore;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

/// Connections served at once; beyond, new ones wait in the kernel's backlog.
const MAX_PEERS: usize = 256;
/// Time to finish TLS and authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ReceiverOptions {
    pub listen: SocketAddr,
    /// The receiver's certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Tokens a forwarder may authenticate with (zeroized when dropped).
    pub tokens: Vec<Zeroizing<String>>,
    /// A CA whose client certificates authenticate without a token.
    pub client_ca: Option<PathBuf>,
}

/// What the receiver did, for its summary and tests.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub lines: AtomicU64,
    pub malformed: AtomicU64,
}

/// Binds and serves in the background (inside a tokio runtime); returns the bound address.
pub fn start(opts: &ReceiverOptions, store: KeyStore) -> Result<(SocketAddr, Arc<ReceiverStats>)> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match &opts.client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            // A forwarder without a certificate may still authenticate with a token.
            .allow_unauthenticated()
            .build()
            .context("the client CA")?,
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(&opts.cert)?, key(&opts.key)?)
        .context("the receiver's certificate and key")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind(opts.listen)
        .with_context(|| format!("--keylog-listen {}", opts.listen))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(ReceiverStats::default());
    let tokens = Arc::new(opts.tokens.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_PEERS));
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "key receiver: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, store, tokens, st) =
                (acceptor.clone(), store.clone(), tokens.clone(), st.clone());
            tokio::spawn(async move {
                serve_peer(acceptor, tcp, peer, store, &tokens, &st).await;
                drop(permit);
            });
        }
    });
    tracing::info!(%addr, "key receiver listening");
    Ok((addr, stats))
}

async fn serve_peer(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    store: KeyStore,
    tokens: &[Zeroizing<String>],
    st: &ReceiverStats,
) {
    let refuse = |why: &str| {
        st.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, reason = why, "key receiver: connection refused");
    };
    let auth = async {
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let cert_ok = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let mut r = BufReader::new(tls);
        let mut line = Zeroizing::new(String::new());
        read_line(&mut r, &mut line).await?;
        if line.trim_end() != HELLO {
            return Err("not a key forwarder (no RDS-KEYLOG/1 hello)".to_string());
        }
        if !cert_ok {
            read_line(&mut r, &mut line).await?;
            let token = line.trim_end().strip_prefix("TOKEN ").unwrap_or_default();
            if !tokens.iter().any(|t| same(t.as_bytes(), token.as_bytes())) {
                let _ = r.get_mut().write_all(b"DENIED\n").await;
                let _ = r.get_mut().flush().await;
                let _ = r.get_mut().shutdown().await;
                return Err("wrong or missing token".to_string());
            }
        }
        let w = r.get_mut();
        w.write_all(b"OK\n").await.map_err(|e| e.to_string())?;
        w.flush().await.map_err(|e| e.to_string())?;
        Ok(r)
    };
    let mut r = match tokio::time::timeout(AUTH_TIMEOUT, auth).await {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => return refuse(&why),
        Err(_) => return refuse("no authentication within 10 s"),
    };
    st.accepted.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, "key receiver: forwarder authenticated");
    let mut line = Zeroizing::new(String::new());
    loop {
        match read_line(&mut r, &mut line).await {
            Ok(0) => break,
            Ok(_) => {
                st.lines.fetch_add(1, Ordering::Relaxed);
                if store.add_line(&line).is_err() {
                    st.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(why) => {
                tracing::warn!(%peer, reason = %why, "key receiver: connection dropped");
                break;
            }
        }
    }
}

/// One line of at most [`MAX_LINE`] bytes into `line` (cleared first); 0 at the end.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Zeroizing<String>,
) -> Result<usize, String> {
    line.clear();
    let mut buf = Zeroizing::new(Vec::new());
    loop {
        let avail = r.fill_buf().await.map_err(|e| e.to_string())?;
        if avail.is_empty() {
            break;
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if buf.len() > MAX_LINE {
            return Err(format!("a line longer than {MAX_LINE} bytes"));
        }
        if done {
            break;
        }
    }
    line.push_str(&String::from_utf8_lossy(&buf));
    Ok(buf.len())
}
