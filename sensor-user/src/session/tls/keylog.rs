//! Key log files: each path is a file or a directory (every regular file in it), read from
//! where it was last read as it grows. A file that shrank or was replaced (another inode: a
//! rotation) is read again from its start; a line is taken only once it is whole.

use super::keys::KeyStore;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where one file was read to.
struct Cursor {
    ino: u64,
    offset: u64,
    /// The start of a line not yet ended (it may be a secret: zeroized).
    partial: Zeroizing<Vec<u8>>,
    /// A line longer than any key log line is being skipped to its end.
    skipping: bool,
}

/// Longest line kept while it is incomplete (key log lines are under 300 bytes).
const MAX_PARTIAL: usize = 4096;

/// Key log sources, and how far each was read.
pub struct KeyLogFiles {
    paths: Vec<PathBuf>,
    cursors: HashMap<PathBuf, Cursor>,
}

/// A file read past this many bytes in one poll is read on in the next (bounds one poll).
const MAX_READ: u64 = 64 << 20;

impl KeyLogFiles {
    /// Every path must exist now (a typo should not look like a missing key).
    pub fn new(paths: &[PathBuf]) -> Result<Self> {
        for p in paths {
            std::fs::metadata(p).with_context(|| format!("TLS key log {}", p.display()))?;
        }
        Ok(Self {
            paths: paths.to_vec(),
            cursors: HashMap::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Reads what was added since the last poll into `store`; returns the secrets taken.
    pub fn poll(&mut self, store: &KeyStore) -> Result<usize> {
        let mut taken = 0;
        for p in self.paths.clone() {
            let md =
                std::fs::metadata(&p).with_context(|| format!("TLS key log {}", p.display()))?;
            if md.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                    .with_context(|| format!("TLS key log directory {}", p.display()))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path())
                    .collect();
                files.sort();
                for f in files {
                    taken += self.read_file(&f, store)?;
                }
            } else {
                taken += self.read_file(&p, store)?;
            }
        }
        Ok(taken)
    }

    /// Forgets how far every file was read: the next poll reads them all again (SIGHUP).
    pub fn rewind(&mut self) {
        self.cursors.clear();
    }

    fn read_file(&mut self, path: &Path, store: &KeyStore) -> Result<usize> {
        let mut f = File::open(path).with_context(|| format!("TLS key log {}", path.display()))?;
        let md = f.metadata()?;
        let c = self.cursors.entry(path.to_path_buf()).or_insert(Cursor {
            ino: md.ino(),
            offset: 0,
            partial: Zeroizing::new(Vec::new()),
            skipping: false,
        });
        if c.ino != md.ino() || md.len() < c.offset {
            c.ino = md.ino();
            c.offset = 0;
            c.partial.clear();
            c.skipping = false;
        }
        if md.len() == c.offset {
            return Ok(0);
        }
        f.seek(SeekFrom::Start(c.offset))?;
        let mut buf = Zeroizing::new(Vec::new());
        f.take(MAX_READ).read_to_end(&mut buf)?;
        c.offset += buf.len() as u64;
        let mut new: &[u8] = &buf;
        if c.skipping {
            // The rest of an over-long line: up to its end.
            match new.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    new = &new[i + 1..];
                    c.skipping = false;
                }
                None => return Ok(0),
            }
        }
        c.partial.extend_from_slice(new);
        let Some(end) = c.partial.iter().rposition(|&b| b == b'\n') else {
            if c.partial.len() > MAX_PARTIAL {
                // No key log line is this long (a binary file in a key log directory).
                c.partial.clear();
                c.skipping = true;
            }
            return Ok(0);
        };
        let whole: Zeroizing<Vec<u8>> = Zeroizing::new(c.partial.drain(..=end).collect());
        if c.partial.len() > MAX_PARTIAL {
            c.partial.clear();
            c.skipping = true;
        }
        // Not UTF-8: no key log line; a lossy copy would be an unzeroed one.
        Ok(match std::str::from_utf8(&whole) {
            Ok(text) => store.add_text(text),
            Err(_) => {
                // Take the lines that are text, one by one.
                whole
                    .split(|&b| b == b'\n')
                    .filter_map(|l| std::str::from_utf8(l).ok())
                    .map(|l| usize::from(store.add_line(l).unwrap_or(false)))
                    .sum()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(i: u8) -> String {
        format!(
            "CLIENT_RANDOM {} {}\n",
            format!("{i:02x}").repeat(32),
            "ab".repeat(48)
        )
    }

    #[test]
    fn follows_growth_half_lines_rotation_and_directories() {
        let dir = std::env::temp_dir().join(format!("rds-keylog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        let store = KeyStore::new(100, None);
        std::fs::write(&path, line(1)).unwrap();
        let mut files = KeyLogFiles::new(std::slice::from_ref(&path)).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 1);
        assert_eq!(files.poll(&store).unwrap(), 0);

        // Half a line waits for its end.
        let l2 = line(2);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&l2.as_bytes()[..40]).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 0);
        f.write_all(&l2.as_bytes()[40..]).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 1);

        // Rotation: a new file under the name is read from its start.
        std::fs::rename(&path, dir.join("keys.log.1")).unwrap();
        std::fs::write(&path, line(3)).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 1);
        assert_eq!(store.len(), 3);

        // A directory: every file in it.
        let mut all = KeyLogFiles::new(std::slice::from_ref(&dir)).unwrap();
        let fresh = KeyStore::new(100, None);
        assert_eq!(all.poll(&fresh).unwrap(), 3);
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(KeyLogFiles::new(&[dir.join("nope")]).is_err());
    }

    /// A file that is no key log (no line end for megabytes, bytes that are not text) holds
    /// at most a few KiB, and the key log lines around it still count.
    #[test]
    fn binary_and_endless_lines_are_bounded() {
        let dir = std::env::temp_dir().join(format!("rds-keylog-bin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mixed");
        let mut data = line(1).into_bytes();
        data.extend(std::iter::repeat_n(0xffu8, 200_000));
        std::fs::write(&path, &data).unwrap();
        let store = KeyStore::new(100, None);
        let mut files = KeyLogFiles::new(std::slice::from_ref(&path)).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 1);
        let held = files
            .cursors
            .values()
            .map(|c| c.partial.len())
            .max()
            .unwrap();
        assert!(held <= MAX_PARTIAL, "{held} bytes held");
        // The endless line ends; the next line counts.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\xfe\xfe\n").unwrap();
        f.write_all(line(2).as_bytes()).unwrap();
        assert_eq!(files.poll(&store).unwrap(), 1);
        assert_eq!(store.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
