//! Addresses and networks: CIDR parsing and sets, the threat-intelligence lists (malicious
//! addresses, Tor exit nodes) reloaded when their file changes, the allowed client networks,
//! and the public/private split that GuardDuty's severities depend on.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

/// An address block; a bare address is a /32 (IPv4) or /128 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    pub len: u8,
}

fn bits(ip: IpAddr) -> (bool, u128) {
    match canonical(ip) {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn width(v6: bool) -> u8 {
    if v6 { 128 } else { 32 }
}

fn masked(value: u128, v6: bool, len: u8) -> u128 {
    let w = width(v6);
    if len == 0 {
        0
    } else {
        let keep = u32::from(w - len);
        let m = if v6 { u128::MAX } else { u128::from(u32::MAX) };
        value & (m >> keep << keep)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    pub fn new(ip: IpAddr, len: u8) -> Option<Self> {
        let ip = canonical(ip);
        let (v6, value) = bits(ip);
        if len > width(v6) {
            return None;
        }
        let m = masked(value, v6, len);
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::from(m))
        } else {
            IpAddr::V4(Ipv4Addr::from(m as u32))
        };
        Some(Self { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, value) = bits(ip);
        let (nv6, net) = bits(self.addr);
        v6 == nv6 && masked(value, v6, self.len) == net
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IPv4 or IPv6 address"))?;
        let ip = canonical(ip);
        let max = width(ip.is_ipv6());
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("prefix length `/{l}` is not 0..={max}"))?,
        };
        Cidr::new(ip, len).ok_or_else(|| format!("bad prefix length /{len}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A set of address blocks; lookups cost one hash probe per distinct prefix length.
#[derive(Clone, Debug, Default)]
pub struct CidrSet {
    by_len: BTreeMap<(bool, u8), HashSet<u128>>,
    len: usize,
}

impl CidrSet {
    pub fn insert(&mut self, c: Cidr) {
        let (v6, value) = bits(c.addr);
        if self.by_len.entry((v6, c.len)).or_default().insert(value) {
            self.len += 1;
        }
    }

    /// The most specific block that holds `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<Cidr> {
        let (v6, value) = bits(ip);
        self.by_len
            .iter()
            .rev()
            .filter(|((fam, _), _)| *fam == v6)
            .find(|((_, len), set)| set.contains(&masked(value, v6, *len)))
            .and_then(|((_, len), _)| Cidr::new(canonical(ip), *len))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lookup(ip).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl FromIterator<Cidr> for CidrSet {
    fn from_iter<T: IntoIterator<Item = Cidr>>(iter: T) -> Self {
        let mut s = Self::default();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

/// A line of a list file that is not an address or block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub path: PathBuf,
    pub line: usize,
    pub text: String,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} (line skipped: `{}`)",
            self.path.display(),
            self.line,
            self.reason,
            self.text
        )
    }
}

/// Parses a list: one address or CIDR block a line; `#` starts a comment; blank lines are
/// ignored. Bad lines are returned, the others still load.
pub fn parse_list(text: &str, path: &Path) -> (CidrSet, Vec<LineError>) {
    let mut set = CidrSet::default();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<Cidr>() {
            Ok(c) => set.insert(c),
            Err(reason) => errors.push(LineError {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.chars().take(80).collect(),
                reason,
            }),
        }
    }
    (set, errors)
}

/// How often a list file's mtime is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A list file (malicious addresses, Tor exits) kept in memory and reloaded when it changes.
#[derive(Debug)]
pub struct IpList {
    /// What the list is, for messages: "malicious", "tor".
    pub name: &'static str,
    pub path: PathBuf,
    pub set: CidrSet,
    /// Bad lines of the last load.
    pub errors: Vec<LineError>,
    stamp: Option<(SystemTime, u64)>,
    last_check: Option<Instant>,
    pub reloads: u64,
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len()))
}

impl IpList {
    /// Loads the file; an unreadable file is an error, bad lines are logged and skipped.
    pub fn load(name: &'static str, path: &Path) -> Result<Self> {
        let mut l = Self {
            name,
            path: path.to_path_buf(),
            set: CidrSet::default(),
            errors: Vec::new(),
            stamp: None,
            last_check: None,
            reloads: 0,
        };
        l.read()
            .with_context(|| format!("{name} address list {}", path.display()))?;
        Ok(l)
    }

    fn read(&mut self) -> Result<()> {
        let st = stamp(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let (set, errors) = parse_list(&text, &self.path);
        for e in &errors {
            tracing::error!("{} list: {e}", self.name);
        }
        tracing::info!(
            list = self.name,
            path = %self.path.display(),
            entries = set.len(),
            bad_lines = errors.len(),
            "address list loaded"
        );
        self.set = set;
        self.errors = errors;
        self.stamp = Some(st);
        Ok(())
    }

    /// Reloads the file if its mtime or size changed (checked at most every 2 s). A file that
    /// became unreadable keeps the list as it was. Returns true when reloaded.
    pub fn maybe_reload(&mut self) -> bool {
        if self.last_check.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return false;
        }
        self.reload_if_changed()
    }

    /// As [`maybe_reload`](Self::maybe_reload), without the rate limit.
    pub fn reload_if_changed(&mut self) -> bool {
        self.last_check = Some(Instant::now());
        match stamp(&self.path) {
            Ok(st) if Some(st) != self.stamp => match self.read() {
                Ok(()) => {
                    self.reloads += 1;
                    true
                }
                Err(e) => {
                    tracing::error!("{} list: {e:#}; keeping the previous version", self.name);
                    false
                }
            },
            Ok(_) => false,
            Err(e) => {
                if self.stamp.is_some() {
                    tracing::error!(
                        "{} list {}: {e}; keeping the previous version",
                        self.name,
                        self.path.display()
                    );
                    self.stamp = None;
                }
                false
            }
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Cidr> {
        self.set.lookup(ip)
    }
}

/// Several list files of one kind.
#[derive(Debug, Default)]
pub struct Lists(pub Vec<IpList>);

impl Lists {
    pub fn load(name: &'static str, paths: &[PathBuf]) -> Result<Self> {
        paths
            .iter()
            .map(|p| IpList::load(name, p))
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }

    pub fn maybe_reload(&mut self) {
        for l in &mut self.0 {
            l.maybe_reload();
        }
    }

    /// The matching block and the file it came from.
    pub fn lookup(&self, ip: IpAddr) -> Option<(Cidr, &Path)> {
        self.0
            .iter()
            .find_map(|l| l.lookup(ip).map(|c| (c, l.path.as_path())))
    }
}

const NON_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// True for addresses reachable on the Internet: not RFC 1918 / RFC 4193 private, loopback,
/// link-local, shared (CGNAT), multicast or documentation (RFC 5737 / RFC 3849) space.
/// Documentation ranges count as private because test networks use them for internal hosts.
pub fn is_public(ip: IpAddr) -> bool {
    use std::sync::OnceLock;
    static SET: OnceLock<CidrSet> = OnceLock::new();
    let set = SET.get_or_init(|| {
        NON_PUBLIC
            .iter()
            .map(|s| s.parse::<Cidr>().expect("built-in block"))
            .collect()
    });
    !set.contains(ip)
}

/// The client network a baseline keys on: the /24 of an IPv4 address, the /64 of an IPv6 one.
pub fn network_of(ip: IpAddr) -> Cidr {
    let ip = canonical(ip);
    let len = if ip.is_ipv6() { 64 } else { 24 };
    Cidr::new(ip, len).expect("valid prefix length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "198.51.100.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "198.51.100.0/24");
        assert!(c.contains(ip("198.51.100.1")));
        assert!(c.contains(ip("::ffff:198.51.100.1")));
        assert!(!c.contains(ip("198.51.101.1")));
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(ip("2001:db8:100::20")));
        assert!(!c.contains(ip("198.51.100.1")));
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().len, 32);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["1.2.3.4/33", "1.2.3", "foo", "::/129", "1.2.3.4/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn list_parsing_reports_bad_lines_and_keeps_the_rest() {
        let text = "# Tor exits\n185.220.101.7\n\n999.1.1.1   # typo\n185.220.102.0/24 # block\n2001:db8:dead::/48\nnot-an-ip\n";
        let (set, errs) = parse_list(text, Path::new("/etc/tor.txt"));
        assert_eq!(set.len(), 3);
        assert!(set.contains(ip("185.220.101.7")));
        assert!(!set.contains(ip("185.220.101.8")));
        assert_eq!(
            set.lookup(ip("185.220.102.9")).unwrap().to_string(),
            "185.220.102.0/24"
        );
        assert!(set.contains(ip("2001:db8:dead:1::1")));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 4);
        assert_eq!(errs[1].line, 7);
        let msg = errs[0].to_string();
        assert!(msg.starts_with("/etc/tor.txt:4: "), "{msg}");
        assert!(msg.contains("999.1.1.1"), "{msg}");
    }

    #[test]
    fn list_reloads_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("rds-intel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.txt");
        std::fs::write(&p, "203.0.113.9\n").unwrap();
        let mut l = IpList::load("malicious", &p).unwrap();
        assert!(l.lookup(ip("203.0.113.9")).is_some());
        assert!(!l.reload_if_changed());
        std::fs::write(&p, "203.0.113.10\n203.0.113.11\nbad line\n").unwrap();
        assert!(l.reload_if_changed());
        assert!(l.lookup(ip("203.0.113.9")).is_none());
        assert!(l.lookup(ip("203.0.113.11")).is_some());
        assert_eq!(l.errors.len(), 1);
        assert_eq!(l.errors[0].line, 3);
        std::fs::remove_file(&p).unwrap();
        assert!(!l.reload_if_changed());
        assert!(
            l.lookup(ip("203.0.113.11")).is_some(),
            "keeps the last version"
        );
        let e = IpList::load("tor", &dir.join("missing.txt")).unwrap_err();
        assert!(format!("{e:#}").contains("missing.txt"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_and_networks() {
        for a in [
            "10.0.0.1",
            "192.168.1.1",
            "172.20.0.1",
            "198.51.100.20",
            "203.0.113.5",
            "2001:db8::1",
            "fd00::1",
            "127.0.0.1",
            "100.64.1.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip(a)), "{a}");
        }
        for a in ["45.155.205.33", "185.220.101.7", "8.8.8.8", "2a01:4f8::1"] {
            assert!(is_public(ip(a)), "{a}");
        }
        assert_eq!(
            network_of(ip("198.51.100.20")).to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            network_of(ip("2001:db8:100::20")).to_string(),
            "2001:db8:100::/64"
        );
    }
}
