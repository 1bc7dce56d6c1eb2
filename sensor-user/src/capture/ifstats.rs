//! Frames lost before the XDP program runs, which it cannot count: the attached interface's own
//! receive drops, the host's backlog drops, and on ENA the allowance counters AWS tells mirror
//! target owners to watch (ENA Linux driver documentation, "ENA Express / network performance
//! metrics": `bw_in_allowance_exceeded`, `pps_allowance_exceeded`,
//! `conntrack_allowance_exceeded`, `linklocal_allowance_exceeded`).
//!
//! - `/sys/class/net/<if>/statistics/{rx_dropped, rx_missed_errors, rx_fifo_errors,
//!   rx_over_errors}`: what the driver and the core count (a veth's backlog drops land in
//!   `rx_dropped`, generic XDP runs after them);
//! - `/proc/net/softnet_stat`, second column: per-CPU backlog drops of the whole host (frames
//!   of every interface; `netdev_max_backlog`);
//! - the driver's ethtool statistics (`SIOCETHTOOL` `ETHTOOL_GSTATS`): those whose name ends in
//!   `_allowance_exceeded` (only inbound or shared allowances: `bw_out_…` is not loss here).
//!
//! Counters are reported as differences from when the sensor attached.

use serde::Serialize;
use std::collections::BTreeMap;

/// Receive-side losses outside the XDP program, since the sensor attached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceDrops {
    pub interface: String,
    pub rx_dropped: u64,
    pub rx_missed_errors: u64,
    pub rx_fifo_errors: u64,
    pub rx_over_errors: u64,
    /// Backlog drops of the whole host (every interface).
    pub softnet_dropped: u64,
    /// ENA's allowance counters (absent on drivers without them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub allowance_exceeded: BTreeMap<String, u64>,
}

impl InterfaceDrops {
    /// Frames this interface (or the host's backlog) lost: what makes a latency window sampled.
    pub fn total(&self) -> u64 {
        self.rx_dropped
            + self.rx_missed_errors
            + self.rx_fifo_errors
            + self.rx_over_errors
            + self.softnet_dropped
            + self.allowance_exceeded.values().sum::<u64>()
    }
}

const SYSFS: [&str; 4] = [
    "rx_dropped",
    "rx_missed_errors",
    "rx_fifo_errors",
    "rx_over_errors",
];

/// Reads an interface's counters and reports them relative to the first reading.
pub struct InterfaceCounters {
    ifindex: u32,
    base: Option<InterfaceDrops>,
}

impl InterfaceCounters {
    /// From now on (the first reading is the base).
    pub fn new(ifindex: u32) -> Self {
        let mut c = Self {
            ifindex,
            base: None,
        };
        c.base = c.raw();
        c
    }

    /// The counters now, since the base; `None` when the interface is gone.
    pub fn read(&mut self) -> Option<InterfaceDrops> {
        let now = self.raw()?;
        let Some(base) = &self.base else {
            self.base = Some(now.clone());
            return Some(InterfaceDrops {
                interface: now.interface,
                ..InterfaceDrops::default()
            });
        };
        // A counter that went backwards (a driver reset) starts again from zero.
        let d = |a: u64, b: u64| a.saturating_sub(b);
        Some(InterfaceDrops {
            rx_dropped: d(now.rx_dropped, base.rx_dropped),
            rx_missed_errors: d(now.rx_missed_errors, base.rx_missed_errors),
            rx_fifo_errors: d(now.rx_fifo_errors, base.rx_fifo_errors),
            rx_over_errors: d(now.rx_over_errors, base.rx_over_errors),
            softnet_dropped: d(now.softnet_dropped, base.softnet_dropped),
            allowance_exceeded: now
                .allowance_exceeded
                .iter()
                .map(|(k, v)| {
                    let b = base.allowance_exceeded.get(k).copied().unwrap_or(0);
                    (k.clone(), d(*v, b))
                })
                .collect(),
            interface: now.interface,
        })
    }

    /// Absolute counters.
    fn raw(&self) -> Option<InterfaceDrops> {
        let name = crate::ifwatch::ifname(self.ifindex)?;
        let dir = std::path::Path::new("/sys/class/net")
            .join(&name)
            .join("statistics");
        let sys = |f: &str| -> u64 {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let [rx_dropped, rx_missed_errors, rx_fifo_errors, rx_over_errors] = SYSFS.map(sys);
        let allowance_exceeded = ethtool_stats(&name)
            .into_iter()
            .filter(|(k, _)| k.ends_with("_allowance_exceeded") && !k.starts_with("bw_out"))
            .collect();
        Some(InterfaceDrops {
            interface: name,
            rx_dropped,
            rx_missed_errors,
            rx_fifo_errors,
            rx_over_errors,
            softnet_dropped: std::fs::read_to_string("/proc/net/softnet_stat")
                .map(|s| softnet_dropped(&s))
                .unwrap_or(0),
            allowance_exceeded,
        })
    }
}

/// The sum of `/proc/net/softnet_stat`'s second column (hexadecimal, one line per CPU).
pub fn softnet_dropped(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

// linux/ethtool.h
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// Drivers expose a few hundred; more is not a NIC we know.
const MAX_STATS: usize = 4096;

/// One `SIOCETHTOOL` request with `data` as its command buffer.
pub(super) fn ethtool(fd: libc::c_int, name: &str, data: &mut [u8]) -> bool {
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    for (d, s) in ifr.ifr_name.iter_mut().zip(&name.as_bytes()[..n]) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
    // SAFETY: `ifr` names the interface and points at `data`, which is as large as the
    // command it holds says (the kernel copies at most that).
    unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut ifr) == 0 }
}

/// The driver's ethtool statistics by name (`ethtool -S`); empty when it has none.
pub fn ethtool_stats(name: &str) -> Vec<(String, u64)> {
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Vec::new();
    }
    let out = (|| -> Option<Vec<(String, u64)>> {
        // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[1]; }
        let mut info = vec![0u8; 24];
        info[..4].copy_from_slice(&ETHTOOL_GSSET_INFO.to_ne_bytes());
        info[8..16].copy_from_slice(&(1u64 << ETH_SS_STATS).to_ne_bytes());
        if !ethtool(fd, name, &mut info) {
            return None;
        }
        let mask = u64::from_ne_bytes(info[8..16].try_into().ok()?);
        if mask & (1 << ETH_SS_STATS) == 0 {
            return None;
        }
        let n = u32::from_ne_bytes(info[16..20].try_into().ok()?) as usize;
        if n == 0 || n > MAX_STATS {
            return None;
        }
        // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
        let mut strings = vec![0u8; 12 + n * ETH_GSTRING_LEN];
        strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        strings[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
        // struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
        let mut stats = vec![0u8; 8 + n * 8];
        stats[..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
        stats[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
        if !ethtool(fd, name, &mut strings) || !ethtool(fd, name, &mut stats) {
            return None;
        }
        // The kernel says how many it filled.
        let got = (u32::from_ne_bytes(stats[4..8].try_into().ok()?) as usize).min(n);
        (0..got)
            .map(|i| {
                let s = &strings[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
                let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                let v = u64::from_ne_bytes(stats[8 + i * 8..16 + i * 8].try_into().ok()?);
                Some((String::from_utf8_lossy(&s[..end]).into_owned(), v))
            })
            .collect::<Option<Vec<_>>>()
    })();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    out.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softnet_drops_are_the_second_column_in_hex_over_every_cpu() {
        let t = "0000abcd 00000276 00000000 00000000\n00001000 0000000a 00000001 00000000\n";
        assert_eq!(softnet_dropped(t), 0x276 + 0xa);
        assert_eq!(softnet_dropped("garbage\n\n"), 0);
    }

    #[test]
    fn the_loopback_has_counters_and_no_allowances() {
        let lo = crate::ifwatch::ifindex("lo").expect("lo");
        let mut c = InterfaceCounters::new(lo);
        let d = c.read().expect("lo is there");
        assert_eq!(d.interface, "lo");
        assert!(d.allowance_exceeded.is_empty());
        assert!(InterfaceCounters::new(u32::MAX - 7).read().is_none());
    }
}
