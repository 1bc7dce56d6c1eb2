//! Endpoint names to addresses: a hosts(5)-format file first (`--discover-hosts`: split-horizon
//! DNS, tests), then the system's resolver.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

#[derive(Debug, Default)]
pub struct Resolver {
    hosts: HashMap<String, Vec<IpAddr>>,
    /// Read again at each pass ([`Resolver::reload`]): a name that moves moves there too.
    path: Option<std::path::PathBuf>,
}

impl Resolver {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--discover-hosts {}", path.display()))?;
        let mut r =
            Self::parse(&text).with_context(|| format!("--discover-hosts {}", path.display()))?;
        r.path = Some(path.to_path_buf());
        Ok(r)
    }

    /// Reads the hosts file again; keeps what it had when the file cannot be read now.
    pub fn reload(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        match Self::load(Some(&path)) {
            Ok(r) => *self = r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "discovery: keeping the hosts file read before")
            }
        }
    }

    /// `ADDRESS NAME [ALIAS…]` per line, `#` comments.
    pub fn parse(text: &str) -> Result<Self> {
        let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(addr) = words.next() else { continue };
            let ip: IpAddr = addr
                .parse()
                .with_context(|| format!("line {}: `{addr}` is no address", n + 1))?;
            for name in words {
                hosts
                    .entry(name.trim_end_matches('.').to_ascii_lowercase())
                    .or_default()
                    .push(ip);
            }
        }
        Ok(Self { hosts, path: None })
    }

    /// Every address of `host`, with `port`; empty when it does not resolve.
    pub fn resolve(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.hosts.get(&key) {
            return ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        }
        (host, port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_comes_first_and_is_read_as_hosts_5() {
        let r = Resolver::parse(
            "# RDS endpoints\n198.51.100.10 orders.abc.us-east-1.rds.amazonaws.com ORDERS-alias.\n\n2001:db8::10 v6.example  # trailing\n",
        )
        .unwrap();
        assert_eq!(
            r.resolve("Orders.abc.us-east-1.rds.amazonaws.com.", 5432),
            vec!["198.51.100.10:5432".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(r.resolve("orders-alias", 1).len(), 1);
        assert_eq!(
            r.resolve("v6.example", 3306),
            vec!["[2001:db8::10]:3306".parse::<SocketAddr>().unwrap()]
        );
        assert!(!r.resolve("localhost", 80).is_empty(), "then the system's");
        assert!(Resolver::parse("not-an-address name").is_err());
    }
}
