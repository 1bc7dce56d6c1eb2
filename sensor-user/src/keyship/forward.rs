//! `rds-sensor keylog-forward --file F --to HOST:PORT --ca PEM (--token-file F | --cert PEM
//! --key PEM)`: follows a key log beside the application (from its start, or `--from-end`),
//! as it grows and across rotation, and ships each whole line to the sensor's receiver.
//! Reconnects with backoff; a line is taken as shipped once written, and a connection that
//! breaks is followed by a new one that starts again at the first line not written (lines
//! are idempotent in the store). A refused authentication is an error, not a retry.

use super::{HELLO, MAX_LINE, certs, key, provider, roots};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

#[derive(Clone, Debug)]
pub struct ForwardOptions {
    pub file: PathBuf,
    /// `host:port` of the receiver.
    pub to: String,
    /// The name the receiver's certificate carries (default: the host of `to`).
    pub server_name: Option<String>,
    /// The CA (or the receiver's own self-signed certificate) that the receiver's chain ends in.
    pub ca: PathBuf,
    pub token: Option<Zeroizing<String>>,
    /// A client certificate and key, for a receiver configured with a client CA.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Skip what the file holds already.
    pub from_end: bool,
}

/// Where the file was read to: its inode, and the offset of the first byte not shipped.
struct Cursor {
    ino: u64,
    offset: u64,
    /// `offset` may be inside a line: ship from the next one.
    realign: bool,
}

/// How far back a new connection starts: lines written into a connection that then broke
/// may not have arrived, and shipping a line twice does no harm.
const RESEND: u64 = 64 << 10;

/// Runs until `stop` resolves, or the receiver refuses the credentials.
pub async fn run(opts: ForwardOptions, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    let config = client_config(&opts)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = opts
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(&opts.to).to_string());
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .with_context(|| format!("{host}: not a server name or address"))?;
    let md = std::fs::metadata(&opts.file)
        .with_context(|| format!("key log {}", opts.file.display()))?;
    let mut cur = Cursor {
        ino: md.ino(),
        offset: if opts.from_end { md.len() } else { 0 },
        realign: false,
    };
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(250);
    let authed = std::cell::Cell::new(false);
    loop {
        let session = async {
            let tcp = tokio::net::TcpStream::connect(&opts.to)
                .await
                .with_context(|| format!("connecting to {}", opts.to))?;
            let mut tls = connector
                .connect(name.clone(), tcp)
                .await
                .with_context(|| format!("TLS to {}", opts.to))?;
            let mut hello = Zeroizing::new(String::with_capacity(256));
            hello.push_str(HELLO);
            hello.push('\n');
            if let Some(t) = &opts.token {
                hello.push_str("TOKEN ");
                hello.push_str(t);
                hello.push('\n');
            }
            tls.write_all(hello.as_bytes()).await?;
            tls.flush().await?;
            let mut r = BufReader::new(tls);
            let mut answer = String::new();
            (&mut r).take(64).read_line(&mut answer).await?;
            match answer.trim_end() {
                "OK" => {}
                "DENIED" => return Ok::<bool, anyhow::Error>(true),
                "" => bail!("the receiver closed the connection before answering"),
                other => bail!("the receiver said {other:?}"),
            }
            tracing::info!(to = %opts.to, "key forwarder: authenticated");
            authed.set(true);
            let mut tls = r.into_inner();
            loop {
                let sent = ship(&opts, &mut cur, &mut tls).await?;
                if sent == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            r = session => match r {
                Ok(true) => bail!("the receiver {} refused the credentials (see its log)", opts.to),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "key forwarder: connection lost");
                }
            },
        }
        // A connection that got through starts the backoff again (the sensor waits only
        // seconds for keys), and the next one sends the last lines again.
        if authed.replace(false) {
            backoff = Duration::from_millis(250);
            if cur.offset > 0 {
                cur.offset = cur.offset.saturating_sub(RESEND);
                cur.realign = cur.offset > 0;
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Writes the whole lines added since `cur`; returns the bytes shipped.
async fn ship<W: tokio::io::AsyncWrite + Unpin>(
    opts: &ForwardOptions,
    cur: &mut Cursor,
    out: &mut W,
) -> Result<usize> {
    // Small local reads: the standard library's blocking calls are fine here.
    let md = match std::fs::metadata(&opts.file) {
        Ok(m) => m,
        // Rotated away and not yet recreated.
        Err(_) => return Ok(0),
    };
    if md.ino() != cur.ino || md.len() < cur.offset {
        cur.ino = md.ino();
        cur.offset = 0;
        cur.realign = false;
    }
    if md.len() == cur.offset {
        return Ok(0);
    }
    let mut f = std::fs::File::open(&opts.file)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(cur.offset))?;
    let mut buf = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 20), &mut buf)?;
    if cur.realign {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return Ok(0);
        };
        cur.offset += nl as u64 + 1;
        cur.realign = false;
        return Ok(nl + 1);
    }
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        if buf.len() as u64 >= 1 << 20 {
            // A megabyte without a line end is no key log: skip it.
            cur.offset += buf.len() as u64;
        }
        return Ok(0);
    };
    let whole = &buf[..=end];
    // A line no key log has (longer than the receiver takes) is skipped, not sent.
    for line in whole.split_inclusive(|&b| b == b'\n') {
        if line.len() <= MAX_LINE {
            out.write_all(line).await?;
        }
    }
    out.flush().await?;
    cur.offset += whole.len() as u64;
    Ok(whole.len())
}

fn host_of(to: &str) -> &str {
    let host = match to.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => to,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn client_config(opts: &ForwardOptions) -> Result<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots(&opts.ca)?);
    Ok(match &opts.cert {
        Some((c, k)) => b
            .with_client_auth_cert(certs(c)?, key(k)?)
            .context("the client certificate and key")?,
        None => b.with_no_client_auth(),
    })
}
