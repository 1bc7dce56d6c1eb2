//! `analyze`'s progress bar (indicatif) on large captures when stderr is a terminal. The
//! capture reader is not told about it: the bar follows the reader's file offset in
//! `/proc/self/fdinfo`, so the capture code stays as it is.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Captures from this size on get a bar.
pub const MIN_BYTES: u64 = 32 << 20;

pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The offset of this process's open file `path`, if it is open.
fn offset(path: &Path) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if std::fs::read_link(e.path()).ok().as_deref() == Some(path) {
            let info =
                std::fs::read_to_string(Path::new("/proc/self/fdinfo").join(e.file_name())).ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

impl Progress {
    /// A bar for `path` when stderr is a terminal and the file is large; otherwise none.
    pub fn start(path: &Path) -> Option<Self> {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return None;
        }
        let size = std::fs::metadata(path).ok()?.len();
        if size < MIN_BYTES {
            return None;
        }
        let path: PathBuf = std::fs::canonicalize(path).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            while !s.load(Ordering::Acquire) {
                if let Some(pos) = offset(&path) {
                    bar.set_position(pos.min(size));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn follows_the_file_offset() {
        use std::io::{Read, Seek};
        let p = std::env::temp_dir().join(format!("rds-sensor-progress-{}", std::process::id()));
        std::fs::write(&p, vec![0u8; 10_000]).unwrap();
        let canon = std::fs::canonicalize(&p).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        f.seek(std::io::SeekFrom::Start(1234)).unwrap();
        assert_eq!(super::offset(&canon), Some(1234));
        let mut b = [0u8; 100];
        f.read_exact(&mut b).unwrap();
        assert_eq!(super::offset(&canon), Some(1334));
        drop(f);
        assert_eq!(super::offset(&canon), None);
        std::fs::remove_file(&p).ok();
    }
}
