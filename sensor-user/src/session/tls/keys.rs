//! The key store: secrets from NSS key logs (the `SSLKEYLOGFILE` format), by client random.
//!
//! Format (NSS, also written by OpenSSL's `SSL_CTX_set_keylog_callback`, Python's
//! `keylog_filename`, Go's `KeyLogWriter`, curl, Firefox and Chrome): one secret per line,
//! `LABEL <client_random hex> <secret hex>`; `#` starts a comment.
//!
//! Secrets are held in memory only: at most `max` client randoms (the oldest go first), each
//! for at most `ttl` after it arrived, zeroized when dropped, and printed by nothing (their
//! `Debug` says `[redacted]`; an error about a line gives its number, never its text).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A client random: the key log's index.
pub type ClientRandom = [u8; 32];

/// A secret from a key log line: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// What a key log holds for one client random.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// TLS 1.2 and earlier: `CLIENT_RANDOM`, the 48-byte master secret.
    pub master: Option<Secret>,
    /// TLS 1.3: `CLIENT_HANDSHAKE_TRAFFIC_SECRET` and `SERVER_HANDSHAKE_TRAFFIC_SECRET`.
    pub client_handshake: Option<Secret>,
    pub server_handshake: Option<Secret>,
    /// TLS 1.3: `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0`.
    pub client_traffic: Option<Secret>,
    pub server_traffic: Option<Secret>,
}

impl Secrets {
    fn slot(&mut self, label: Label) -> &mut Option<Secret> {
        match label {
            Label::ClientRandom => &mut self.master,
            Label::ClientHandshake => &mut self.client_handshake,
            Label::ServerHandshake => &mut self.server_handshake,
            Label::ClientTraffic0 => &mut self.client_traffic,
            Label::ServerTraffic0 => &mut self.server_traffic,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    ClientRandom,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic0,
    ServerTraffic0,
}

impl Label {
    /// `None`: a label the store does not need (`EXPORTER_SECRET`, 0-RTT's
    /// `CLIENT_EARLY_TRAFFIC_SECRET`), skipped without complaint.
    fn parse(s: &str) -> Result<Option<Self>, LineError> {
        Ok(Some(match s {
            "CLIENT_RANDOM" => Label::ClientRandom,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Label::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Label::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Label::ClientTraffic0,
            "SERVER_TRAFFIC_SECRET_0" => Label::ServerTraffic0,
            "EXPORTER_SECRET" | "CLIENT_EARLY_TRAFFIC_SECRET" | "EARLY_EXPORTER_SECRET" | "RSA" => {
                return Ok(None);
            }
            _ => return Err(LineError::Label),
        }))
    }
}

/// Why a key log line was not taken. Says nothing of the line's text: it holds a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not `LABEL <client random> <secret>`")]
    Shape,
    #[error("unknown label")]
    Label,
    #[error("the client random is not 32 bytes of hex")]
    ClientRandom,
    #[error("the secret is not hex of 32 to 64 bytes")]
    Secret,
}

/// What the store took and dropped, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Secrets taken.
    pub secrets: u64,
    /// Lines that were not key log lines.
    pub malformed: u64,
    /// Client randoms dropped for room, and for age.
    pub evicted: u64,
    pub expired: u64,
}

struct Entry {
    secrets: Secrets,
    added: Instant,
}

struct Inner {
    map: HashMap<ClientRandom, Entry>,
    /// Arrival order, for eviction and expiry.
    order: VecDeque<(ClientRandom, Instant)>,
    max: usize,
    ttl: Option<Duration>,
    stats: KeyStats,
}

/// Secrets by client random, shared by every connection's TLS layer and the key sources.
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Client randoms held by default: a busy fleet's handshakes over the key lifetime.
pub const DEFAULT_MAX_KEYS: usize = 200_000;
/// How long a client random's secrets are kept: a handshake reads them within moments of the
/// line being written; an hour covers a late mirror or a slow forwarder.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(3600);

impl Default for KeyStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS, Some(DEFAULT_KEY_TTL))
    }
}

impl KeyStore {
    /// At most `max` client randoms, each kept `ttl` (none: until evicted for room; offline
    /// analysis loads its key logs once).
    pub fn new(max: usize, ttl: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                max: max.max(1),
                ttl,
                stats: KeyStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every line of `text`; returns how many secrets it held. Bad lines are counted.
    pub fn add_text(&self, text: &str) -> usize {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut taken = 0;
        for line in text.lines() {
            match parse_line(line) {
                Ok(Some((label, random, secret))) => {
                    inner.insert(label, random, secret, now);
                    taken += 1;
                }
                Ok(None) => {}
                Err(_) => inner.stats.malformed += 1,
            }
        }
        taken
    }

    /// One line; `Ok(false)` for a comment, a blank or a label the store does not need.
    pub fn add_line(&self, line: &str) -> Result<bool, LineError> {
        match parse_line(line) {
            Ok(Some((label, random, secret))) => {
                self.lock().insert(label, random, secret, Instant::now());
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.lock().stats.malformed += 1;
                Err(e)
            }
        }
    }

    /// The secrets of `random`, if they arrived and have not expired.
    pub fn get(&self, random: &ClientRandom) -> Option<Secrets> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        inner.map.get(random).map(|e| e.secrets.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> KeyStats {
        self.lock().stats
    }
}

impl Inner {
    fn insert(&mut self, label: Label, random: ClientRandom, secret: Secret, now: Instant) {
        self.expire(now);
        self.stats.secrets += 1;
        let entry = self.map.entry(random).or_insert_with(|| {
            self.order.push_back((random, now));
            Entry {
                secrets: Secrets::default(),
                added: now,
            }
        });
        *entry.secrets.slot(label) = Some(secret);
        while self.map.len() > self.max {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|e| e.added == at) {
                self.map.remove(&old);
                self.stats.evicted += 1;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.ttl else { return };
        while let Some(&(random, at)) = self.order.front() {
            if now.duration_since(at) < ttl {
                break;
            }
            self.order.pop_front();
            if self.map.get(&random).is_some_and(|e| e.added == at) {
                self.map.remove(&random);
                self.stats.expired += 1;
            }
        }
    }
}

fn parse_line(line: &str) -> Result<Option<(Label, ClientRandom, Secret)>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut parts = line.split_ascii_whitespace();
    let (Some(label), Some(random), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LineError::Shape);
    };
    let Some(label) = Label::parse(label)? else {
        return Ok(None);
    };
    let random: ClientRandom = unhex(random)
        .and_then(|v| v.try_into().ok())
        .ok_or(LineError::ClientRandom)?;
    let secret = unhex(secret)
        .filter(|s| (32..=64).contains(&s.len()))
        .ok_or(LineError::Secret)?;
    Ok(Some((label, random, Secret::new(secret))))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn cr() -> ClientRandom {
        unhex(CR).unwrap().try_into().unwrap()
    }

    #[test]
    fn takes_every_label_and_skips_what_it_does_not_need() {
        let s = KeyStore::new(10, None);
        let text = format!(
            "# comment\n\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {CR} {a}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {CR} {b}\n\
             CLIENT_TRAFFIC_SECRET_0 {CR} {a}\nSERVER_TRAFFIC_SECRET_0 {CR} {b}\nEXPORTER_SECRET {CR} {a}\n\
             CLIENT_RANDOM {CR} {m}\n",
            a = "11".repeat(48),
            b = "22".repeat(48),
            m = "33".repeat(48)
        );
        assert_eq!(s.add_text(&text), 5);
        let got = s.get(&cr()).unwrap();
        assert_eq!(got.master.unwrap().bytes(), &[0x33; 48]);
        assert_eq!(got.server_traffic.unwrap().bytes(), &[0x22; 48]);
        assert_eq!(s.stats().malformed, 0);
    }

    #[test]
    fn bad_lines_are_counted_and_their_text_is_never_in_the_error() {
        let s = KeyStore::new(10, None);
        let secret = "ab".repeat(48);
        for (line, want) in [
            (format!("CLIENT_RANDOM {CR}"), LineError::Shape),
            (format!("NOT_A_LABEL {CR} {secret}"), LineError::Label),
            (
                format!("CLIENT_RANDOM abcd {secret}"),
                LineError::ClientRandom,
            ),
            (format!("CLIENT_RANDOM {CR} zz{secret}"), LineError::Secret),
        ] {
            let e = s.add_line(&line).unwrap_err();
            assert_eq!(e, want);
            assert!(!format!("{e} {e:?}").contains(&secret[..16]));
        }
        assert_eq!(s.stats().malformed, 4);
        let secrets = Secrets {
            master: Some(Secret::new(vec![0xab; 48])),
            ..Secrets::default()
        };
        assert!(!format!("{secrets:?}").contains("ab, ab"));
        assert!(format!("{secrets:?}").contains("[redacted]"));
    }

    #[test]
    fn bounded_oldest_first_and_expired() {
        let s = KeyStore::new(2, None);
        for i in 0..3u8 {
            let random = format!("{:02x}{}", i, &CR[2..]);
            s.add_line(&format!("CLIENT_RANDOM {random} {}", "44".repeat(48)))
                .unwrap();
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.stats().evicted, 1);
        let mut first = cr();
        first[0] = 0;
        assert!(s.get(&first).is_none());

        let s = KeyStore::new(10, Some(Duration::ZERO));
        s.add_line(&format!("CLIENT_RANDOM {CR} {}", "44".repeat(48)))
            .unwrap();
        assert!(s.get(&cr()).is_none());
        assert_eq!(s.stats().expired, 1);
    }
}
