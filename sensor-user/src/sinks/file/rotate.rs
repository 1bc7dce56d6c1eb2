//! One file of whole lines, rotated by size and age.

use super::FileStats;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When a file is rotated, and how many old ones are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line would take the file past this many bytes (0: never by size).
    pub max_bytes: u64,
    /// Rotate a file this old that has lines (None: never by age).
    pub max_age: Option<Duration>,
    /// Old files kept (`PATH.1` … `PATH.<keep>`); 0 removes a rotated file at once.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 100 << 20,
            max_age: None,
            keep: 10,
        }
    }
}

/// Warnings about a failing file come at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    out: Option<BufWriter<File>>,
    /// The open file's inode: another inode (or none) at `path` means it was moved away.
    ino: u64,
    bytes: u64,
    opened: Instant,
    stats: FileStats,
    /// Lines in the buffer: written only once it is flushed, lost with it if that fails.
    pending: u64,
    last_warn: Option<Instant>,
}

fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Records name users, addresses and statements: not for every local user to read.
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let m = f.metadata()?;
    Ok((BufWriter::with_capacity(64 << 10, f), m.ino(), m.len()))
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self> {
        let (out, ino, bytes) =
            open(path).with_context(|| format!("record file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            rotation,
            out: Some(out),
            ino,
            bytes,
            opened: Instant::now(),
            stats: FileStats::default(),
            pending: 0,
            last_warn: None,
        })
    }

    pub fn stats(&self) -> FileStats {
        self.stats
    }

    /// Appends one whole line (it ends in `\n`).
    pub fn write_line(&mut self, line: &[u8]) {
        let len = line.len() as u64;
        if self.rotation.max_bytes > 0
            && self.bytes > 0
            && self.bytes + len > self.rotation.max_bytes
        {
            self.rotate();
        }
        if self.out.is_none() {
            self.reopen();
        }
        let Some(out) = &mut self.out else {
            self.lost(1, None);
            return;
        };
        match out.write_all(line) {
            Ok(()) => {
                self.bytes += len;
                self.pending += 1;
            }
            Err(e) => {
                // What the buffer held is in doubt too: counted lost, and a fresh open.
                self.out = None;
                self.lost(self.pending + 1, Some(e));
            }
        }
    }

    /// Writes the buffer out: its lines are written, or lost.
    fn flush(&mut self) {
        let Some(out) = &mut self.out else {
            return;
        };
        match out.flush() {
            Ok(()) => {
                self.stats.lines += self.pending;
                self.pending = 0;
            }
            Err(e) => {
                self.out = None;
                self.lost(self.pending, Some(e));
            }
        }
    }

    /// About once a second: writes out the buffer, rotates by age, and follows a file that
    /// was moved away.
    pub fn tick(&mut self) {
        self.flush();
        if let Some(age) = self.rotation.max_age
            && self.bytes > 0
            && self.opened.elapsed() >= age
        {
            self.rotate();
            return;
        }
        let moved = match std::fs::metadata(&self.path) {
            Ok(m) => m.ino() != self.ino,
            Err(_) => true,
        };
        if moved || self.out.is_none() {
            self.reopen();
        }
    }

    fn rotate(&mut self) {
        self.flush();
        self.out = None;
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let step = if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            for i in (1..self.rotation.keep).rev() {
                // Gaps in the numbering (a file removed by hand) are no error.
                let _ = std::fs::rename(numbered(i), numbered(i + 1));
            }
            std::fs::rename(&self.path, numbered(1))
        };
        if let Err(e) = step {
            self.warn(&format!("cannot rotate: {e}; appending to it"));
        } else {
            self.stats.rotations += 1;
        }
        self.reopen();
    }

    fn reopen(&mut self) {
        match open(&self.path) {
            Ok((out, ino, bytes)) => {
                self.out = Some(out);
                self.ino = ino;
                self.bytes = bytes;
                self.opened = Instant::now();
            }
            Err(e) => {
                self.out = None;
                self.warn(&format!("cannot open: {e}"));
            }
        }
    }

    fn lost(&mut self, lines: u64, e: Option<std::io::Error>) {
        self.stats.lost += lines;
        self.pending = 0;
        if let Some(e) = e {
            self.warn(&format!("cannot write: {e}"));
        }
    }

    fn warn(&mut self, what: &str) {
        if self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            self.last_warn = Some(Instant::now());
            tracing::warn!(
                file = %self.path.display(),
                lost = self.stats.lost,
                "record file: {what}"
            );
        }
    }
}
