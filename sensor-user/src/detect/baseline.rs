//! The behavioural baseline: per database instance, what its users normally do and from where.
//! Persisted as JSON (`--baseline FILE`) so that a restart does not forget.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    /// Instance identifier (or server address) → baseline.
    pub instances: BTreeMap<String, InstanceBaseline>,
    /// The settings it was learned with (absent in files saved before they were kept).
    #[serde(default)]
    pub learned_with: Option<LearnedWith>,
}

/// The settings a baseline was learned with: a later run that disagrees is told, and keeps
/// the baseline's (issue 15, point 14).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearnedWith {
    pub learning_period_s: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBaseline {
    /// Wall-clock ns of the first record seen: learning runs from here for the learning period.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub users: BTreeMap<String, UserBaseline>,
    /// Client network (a /24, a /64) → what it did.
    pub networks: BTreeMap<String, NetworkBaseline>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkBaseline {
    /// Databases reached from this network (client-to-database edges); `*` for sessions whose
    /// login the sensor could not read (TLS, undecoded protocols).
    pub databases: BTreeSet<String>,
    /// Connections closed before any authentication (health checks, load balancers).
    pub probes: u64,
    pub logins: u64,
    pub failures: u64,
    /// The most failed logins in one hour, over `rate_hours` whole clock hours of learning.
    pub max_failures_per_hour: u64,
    pub rate_hours: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserBaseline {
    pub networks: BTreeSet<String>,
    /// Autonomous systems the user logged in from (with `--asn-db`).
    pub asns: BTreeSet<u32>,
    pub applications: BTreeSet<String>,
    pub databases: BTreeSet<String>,
    /// Statement classes (SELECT, INSERT, DROP TABLE, GRANT, COPY TO PROGRAM, …).
    pub classes: BTreeSet<String>,
    pub logins: u64,
    pub failures: u64,
    /// Successful logins with an IAM authentication token, and with a static password.
    pub iam_logins: u64,
    pub password_logins: u64,
    pub queries: u64,
    /// The most logins in one clock hour, over `rate_hours` whole hours of learning (a
    /// partial hour is no rate: a maximum learned in minutes would be compared with full
    /// hours).
    pub max_logins_per_hour: u64,
    pub rate_hours: u64,
    /// The largest single response, in rows and bytes.
    pub max_rows_query: u64,
    pub max_bytes_query: u64,
    /// The most rows and bytes one client read as this user in one volume window.
    pub max_rows_window: u64,
    pub max_bytes_window: u64,
    /// Query fingerprint (hash) → volume.
    pub fingerprints: BTreeMap<String, Volume>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub count: u64,
    pub max_rows: u64,
    pub max_bytes: u64,
}

/// Fingerprints kept per user; beyond this they are folded into one entry.
pub const MAX_FINGERPRINTS: usize = 5_000;
pub const OTHER_FINGERPRINT: &str = "(other)";

/// The key a fingerprint is stored under.
pub fn fingerprint_key(fp: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in fp.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl UserBaseline {
    /// The learned volume of a fingerprint, if known.
    pub fn volume(&self, fp_key: &str) -> Option<&Volume> {
        self.fingerprints.get(fp_key)
    }

    pub fn learn_volume(&mut self, fp_key: String, rows: u64, bytes: u64) {
        let full = self.fingerprints.len() >= MAX_FINGERPRINTS;
        let key = if full && !self.fingerprints.contains_key(&fp_key) {
            OTHER_FINGERPRINT.to_string()
        } else {
            fp_key
        };
        let v = self.fingerprints.entry(key).or_default();
        v.count += 1;
        v.max_rows = v.max_rows.max(rows);
        v.max_bytes = v.max_bytes.max(bytes);
        self.max_rows_query = self.max_rows_query.max(rows);
        self.max_bytes_query = self.max_bytes_query.max(bytes);
    }
}

impl Baseline {
    pub fn new() -> Self {
        Self {
            version: FORMAT_VERSION,
            instances: BTreeMap::new(),
            learned_with: None,
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        let b: Self = serde_json::from_str(text)?;
        if b.version != FORMAT_VERSION {
            bail!(
                "baseline format version {} (this sensor reads {FORMAT_VERSION})",
                b.version
            );
        }
        Ok(b)
    }
}

/// Where the baseline lives: `FILE`, and `FILE.prev`, the version before the last save.
#[derive(Clone, Debug)]
pub struct BaselineStore {
    pub path: PathBuf,
}

/// What [`BaselineStore::load`] found.
#[derive(Debug)]
pub struct Loaded {
    pub baseline: Baseline,
    /// Where it came from (`None`: a new, empty baseline).
    pub from: Option<PathBuf>,
    /// Errors met on the way (a corrupt file), already logged.
    pub errors: Vec<String>,
}

impl BaselineStore {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn prev_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".prev");
        PathBuf::from(p)
    }

    fn read(path: &Path) -> Result<Option<Baseline>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Baseline::parse(&text)
                .map(Some)
                .with_context(|| format!("baseline {} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading baseline {}", path.display())),
        }
    }

    /// Loads the baseline. A missing file starts a new one; a corrupt one is reported (naming
    /// the file), kept aside as `FILE.corrupt`, and the last good version (`FILE.prev`) is used
    /// instead; the sensor keeps going either way.
    pub fn load(&self) -> Loaded {
        let mut errors = Vec::new();
        match Self::read(&self.path) {
            Ok(Some(b)) => {
                tracing::info!(path = %self.path.display(), instances = b.instances.len(), "baseline loaded");
                return Loaded {
                    baseline: b,
                    from: Some(self.path.clone()),
                    errors,
                };
            }
            Ok(None) => {
                tracing::info!(path = %self.path.display(), "no baseline yet: learning from scratch");
                return Loaded {
                    baseline: Baseline::new(),
                    from: None,
                    errors,
                };
            }
            Err(e) => {
                let mut corrupt = self.path.clone().into_os_string();
                corrupt.push(".corrupt");
                let kept = std::fs::rename(&self.path, &corrupt).is_ok();
                let msg = format!(
                    "{e:#}{}",
                    if kept {
                        format!(" (moved to {})", PathBuf::from(&corrupt).display())
                    } else {
                        String::new()
                    }
                );
                tracing::error!("{msg}");
                errors.push(msg);
            }
        }
        let prev = self.prev_path();
        match Self::read(&prev) {
            Ok(Some(b)) => {
                tracing::warn!(path = %prev.display(), "using the last good baseline");
                Loaded {
                    baseline: b,
                    from: Some(prev),
                    errors,
                }
            }
            Ok(None) => {
                tracing::warn!("no earlier baseline: learning from scratch");
                Loaded {
                    baseline: Baseline::new(),
                    from: None,
                    errors,
                }
            }
            Err(e) => {
                let msg = format!("{e:#}; learning from scratch");
                tracing::error!("{msg}");
                errors.push(msg);
                Loaded {
                    baseline: Baseline::new(),
                    from: None,
                    errors,
                }
            }
        }
    }

    /// Writes the baseline atomically (temp file, fsync, rename); the file it replaces becomes
    /// `FILE.prev`.
    pub fn save(&self, b: &Baseline) -> Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> Result<()> {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut f, b)?;
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            if self.path.exists() {
                std::fs::rename(&self.path, self.prev_path())?;
            }
            std::fs::rename(&tmp, &self.path)?;
            Ok(())
        };
        write().with_context(|| format!("saving baseline {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rds-baseline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample(n: u64) -> Baseline {
        let mut b = Baseline::new();
        let i = b.instances.entry("pg-1".into()).or_default();
        i.first_seen_ns = n;
        let u = i.users.entry("app".into()).or_default();
        u.classes.insert("SELECT".into());
        u.learn_volume(fingerprint_key("select ?"), 5, 500);
        b
    }

    #[test]
    fn save_load_roundtrip_and_prev() {
        let d = dir("rt");
        let s = BaselineStore::new(&d.join("b.json"));
        let l = s.load();
        assert!(l.from.is_none() && l.errors.is_empty());
        s.save(&sample(1)).unwrap();
        s.save(&sample(2)).unwrap();
        let l = s.load();
        assert_eq!(l.baseline, sample(2));
        assert_eq!(
            Baseline::parse(&std::fs::read_to_string(s.prev_path()).unwrap()).unwrap(),
            sample(1)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_file_is_named_and_the_last_good_version_used() {
        let d = dir("corrupt");
        let s = BaselineStore::new(&d.join("b.json"));
        s.save(&sample(1)).unwrap();
        s.save(&sample(2)).unwrap();
        std::fs::write(&s.path, b"{\"version\":1,\"instances\":{\"pg-1\":").unwrap();
        let l = s.load();
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].contains("b.json is corrupt"), "{}", l.errors[0]);
        assert_eq!(l.from.as_deref(), Some(s.prev_path().as_path()));
        assert_eq!(l.baseline, sample(1));
        assert!(d.join("b.json.corrupt").exists());
        // Neither readable: an empty baseline, and the sensor keeps going.
        std::fs::write(&s.path, b"garbage").unwrap();
        std::fs::write(s.prev_path(), b"garbage").unwrap();
        let l = s.load();
        assert_eq!(l.errors.len(), 2);
        assert!(l.baseline.instances.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fingerprints_are_bounded() {
        let mut u = UserBaseline::default();
        for i in 0..MAX_FINGERPRINTS + 10 {
            u.learn_volume(fingerprint_key(&format!("select {i}")), i as u64, 1);
        }
        assert_eq!(u.fingerprints.len(), MAX_FINGERPRINTS + 1);
        assert_eq!(u.fingerprints[OTHER_FINGERPRINT].count, 10);
    }
}
