//! Record files: JSON lines, each file taking the kinds it was given, rotated by size and age
//! and kept to a number of old files, as Suricata's EVE and Zeek's logs are. A log shipper
//! (Fluent Bit, Vector, the CloudWatch agent) tails them; journald, which rate-limits, carries
//! only the agent's own messages.
//!
//! A rotated file is renamed `PATH.1` (older ones move up to `PATH.<keep>`, the oldest is
//! removed), then `PATH` starts anew: a line is never split between two files. A file moved
//! away by something else (logrotate) is noticed at the next flush (each summary) and `PATH`
//! reopened, with no signal. Age is checked at the same flushes. A line that cannot be written
//! is counted and said, never retried into a later line.

mod rotate;

pub use rotate::{RotatingFile, Rotation};

use super::Sink;
use crate::model::Record;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// Every record kind's name, as `"kind"` writes it.
pub const KINDS: &[&str] = &[
    "flow",
    "login",
    "query",
    "tls",
    "tls_exchange",
    "latency",
    "summary",
    "finding",
];

/// A record's `"kind"`.
pub fn kind(r: &Record) -> &'static str {
    match r {
        Record::Flow(_) => "flow",
        Record::Login(_) => "login",
        Record::Query(_) => "query",
        Record::Tls(_) => "tls",
        Record::TlsExchange(_) => "tls_exchange",
        Record::Latency(_) => "latency",
        Record::Summary(_) => "summary",
        Record::Finding(_) => "finding",
    }
}

/// One record file: where, and which kinds (all when none are named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub kinds: Vec<String>,
}

impl FileSpec {
    /// `PATH` or `KIND[,KIND…]=PATH` (`--record-file`).
    pub fn parse(s: &str) -> Result<Self> {
        let (kinds, path) = match s.split_once('=') {
            Some((k, p)) => (
                k.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect(),
                p,
            ),
            None => (Vec::new(), s),
        };
        if path.is_empty() {
            bail!("`{s}`: no file path (PATH or KIND[,KIND…]=PATH)");
        }
        let spec = FileSpec {
            path: PathBuf::from(path),
            kinds,
        };
        spec.check()?;
        Ok(spec)
    }

    pub fn check(&self) -> Result<()> {
        for k in &self.kinds {
            if !KINDS.contains(&k.as_str()) {
                bail!(
                    "{}: no record kind `{k}` (kinds: {})",
                    self.path.display(),
                    KINDS.join(", ")
                );
            }
        }
        Ok(())
    }

    fn takes(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind)
    }
}

/// What a record file did, for the agent's exit line and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub lines: u64,
    pub rotations: u64,
    /// Lines that could not be written (disk full, file gone and not re-creatable).
    pub lost: u64,
}

/// The record files.
pub struct Files {
    files: Vec<(FileSpec, RotatingFile)>,
    line: Vec<u8>,
}

impl Files {
    /// Opens (creates, appends to) every file now, so a path that cannot be written is an error
    /// at start, not a silent loss later.
    pub fn open(specs: &[FileSpec], rotation: Rotation) -> Result<Self> {
        let mut files = Vec::with_capacity(specs.len());
        for s in specs {
            s.check()?;
            files.push((s.clone(), RotatingFile::open(&s.path, rotation)?));
        }
        Ok(Self {
            files,
            line: Vec::with_capacity(1024),
        })
    }

    pub fn stats(&self) -> Vec<(PathBuf, FileStats)> {
        self.files
            .iter()
            .map(|(s, f)| (s.path.clone(), f.stats()))
            .collect()
    }
}

impl Sink for Files {
    fn emit(&mut self, record: &Record) -> Result<()> {
        let kind = kind(record);
        if !self.files.iter().any(|(s, _)| s.takes(kind)) {
            return Ok(());
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        for (s, f) in &mut self.files {
            if s.takes(kind) {
                f.write_line(&self.line);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for (_, f) in &mut self.files {
            f.tick();
        }
        Ok(())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for (s, f) in &mut self.files {
            f.tick();
            let st = f.stats();
            if st.lost > 0 {
                tracing::warn!(
                    file = %s.path.display(),
                    lost = st.lost,
                    written = st.lines,
                    "record lines that could not be written"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
