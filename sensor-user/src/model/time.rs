//! Time in records: integer nanoseconds of wall-clock time, formatted only when a sink
//! writes them (RFC 3339 with microseconds, as `humantime` writes it).

use serde::{Serialize, Serializer};

/// Wall-clock time, ns since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn ns(self) -> u64 {
        self.0
    }

    /// `humantime::format_rfc3339_micros`: `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
    /// Records come many per second, so the part up to the seconds is formatted once per
    /// second (per thread) and only the microseconds each time.
    pub fn rfc3339(self) -> String {
        thread_local! {
            /// Seconds formatted lately (a flow's first and last, records of a few
            /// connections interleaved), and their `YYYY-MM-DDTHH:MM:SS`, by `secs % 4`.
            static PREFIXES: std::cell::Cell<[(u64, [u8; 19]); 4]> =
                const { std::cell::Cell::new([(u64::MAX, [0; 19]); 4]) };
        }
        let wall = self.0;
        let (secs, micros) = (wall / 1_000_000_000, (wall % 1_000_000_000) / 1000);
        let mut slots = PREFIXES.get();
        let slot = (secs % 4) as usize;
        let (cached, mut prefix) = slots[slot];
        if cached != secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let full = humantime::format_rfc3339_seconds(t).to_string();
            match full.as_bytes().get(..19) {
                Some(p) if full.len() == 20 => prefix.copy_from_slice(p),
                // (Not 20 bytes: a year humantime writes otherwise; never cached.)
                _ => {
                    return humantime::format_rfc3339_micros(
                        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall),
                    )
                    .to_string();
                }
            }
            slots[slot] = (secs, prefix);
            PREFIXES.set(slots);
        }
        let mut out = [0u8; 27];
        out[..19].copy_from_slice(&prefix);
        out[19] = b'.';
        let mut m = micros as u32;
        for i in (20..26).rev() {
            out[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out[26] = b'Z';
        // ASCII digits and punctuation only.
        String::from_utf8(out.to_vec()).expect("ASCII")
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

/// Turns event timestamps into wall-clock time. Live events carry the kernel's monotonic clock;
/// offline events carry the capture's wall-clock time (offset 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Add to an event timestamp to get ns since the Unix epoch.
    pub offset_ns: i128,
}

impl Clock {
    /// For kernel timestamps (bpf_ktime_get_ns is CLOCK_MONOTONIC).
    pub fn monotonic() -> Self {
        let real = now(libc::CLOCK_REALTIME);
        let mono = now(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: real as i128 - mono as i128,
        }
    }

    pub fn wall_ns(&self, ts_ns: u64) -> u64 {
        (ts_ns as i128 + self.offset_ns).max(0) as u64
    }

    /// The wall-clock time of an event timestamp.
    pub fn at(&self, ts_ns: u64) -> Timestamp {
        Timestamp(self.wall_ns(ts_ns))
    }
}

/// Current time of a clock, in ns.
pub fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the epoch of a UTC civil time (proleptic Gregorian; Howard Hinnant's
/// days-from-civil), for times protocols write as text (certificate validity, SigV4 dates).
pub fn epoch_seconds(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_is_humantime() {
        let mut ts = vec![0u64, 1, 999, 1_000, 999_999_999, 1_000_000_000, u64::MAX];
        for base in [
            1_700_000_000_000_000_000u64,
            951_782_400_000_000_000,
            4_102_444_799_999_999_999,
        ] {
            for d in [
                0u64,
                1,
                999,
                1_000,
                1_001,
                999_999,
                1_000_000,
                999_999_999,
                1_000_000_000,
                86_400_000_000_123,
            ] {
                ts.push(base + d);
                ts.push(base - d);
            }
        }
        for t in ts {
            let want = humantime::format_rfc3339_micros(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t),
            )
            .to_string();
            assert_eq!(Timestamp(t).rfc3339(), want, "{t}");
            assert_eq!(Timestamp(t).rfc3339(), want, "{t} (cached)");
            assert_eq!(serde_json::to_value(Timestamp(t)).unwrap(), want.as_str());
        }
    }
}
