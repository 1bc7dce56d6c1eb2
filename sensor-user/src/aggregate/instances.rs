//! Server address → instance name (`--db-instance`, `[instances]`, an instance map file).

use std::collections::BTreeMap;

/// The one resolver every sink uses: a server (`addr:port`) is named by its own entry, else
/// by its address's, else by what AWS says is there ([`super::discovered`]), else by the name
/// its TLS clients asked for (SNI: on RDS, the endpoint,
/// whose first label is the DB instance or cluster identifier), else it names itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instances {
    /// `addr:port` or `addr` (IPv6 with or without brackets) → name.
    names: BTreeMap<String, String>,
    /// `addr:port` → the name learned from its TLS sessions' SNI.
    sni: BTreeMap<String, String>,
}

/// Servers whose SNI name is remembered (the first ones).
const MAX_SNI: usize = 10_000;

/// The instance name an SNI gives: an RDS endpoint
/// (`database-1.abcdefghijkl.us-east-1.rds.amazonaws.com`) names its instance or cluster by
/// its first label; any other name stands as it is.
pub fn sni_instance(sni: &str) -> String {
    let s = sni.trim_end_matches('.').to_ascii_lowercase();
    let rds = [".rds.amazonaws.com", ".rds.amazonaws.com.cn"];
    match s.split_once('.') {
        Some((first, _)) if rds.iter().any(|d| s.ends_with(d)) => first.to_string(),
        _ => s,
    }
}

impl Instances {
    pub fn new<K: Into<String>, V: Into<String>>(names: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            sni: BTreeMap::new(),
        }
    }

    /// A TLS client of `server` asked for `sni`: the server's name unless it is named already.
    pub fn learn_sni(&mut self, server: &str, sni: &str) {
        if sni.is_empty() || self.sni.contains_key(server) || self.sni.len() >= MAX_SNI {
            return;
        }
        self.sni.insert(server.to_string(), sni_instance(sni));
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The instance name of a server (`addr:port`, `[v6]:port`).
    pub fn resolve(&self, server: &str) -> String {
        if let Some(id) = self.names.get(server) {
            return id.clone();
        }
        let addr = match server.rsplit_once(':') {
            Some((a, p)) if p.chars().all(|c| c.is_ascii_digit()) => a,
            _ => server,
        };
        if let Some(id) = self
            .names
            .get(addr)
            .or_else(|| self.names.get(addr.trim_matches(['[', ']'])))
        {
            return id.clone();
        }
        // What AWS says (`--discover rds`) before what TLS clients asked for.
        if let Some(d) = super::discovered::get(server) {
            return d.db_instance_identifier;
        }
        self.sni
            .get(server)
            .cloned()
            .unwrap_or_else(|| server.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sni_names_a_server_no_entry_names() {
        let mut i = Instances::new([("10.0.0.5:5432", "orders-db")]);
        i.learn_sni(
            "10.0.0.9:5432",
            "database-1.abcdefghijkl.us-east-1.rds.amazonaws.com",
        );
        i.learn_sni(
            "10.0.0.8:3306",
            "aurora-1.cluster-abcdefghijkl.eu-west-1.rds.amazonaws.com",
        );
        i.learn_sni("10.0.0.7:5432", "db.internal.example");
        i.learn_sni("10.0.0.5:5432", "other.abc.us-east-1.rds.amazonaws.com");
        assert_eq!(i.resolve("10.0.0.9:5432"), "database-1");
        assert_eq!(i.resolve("10.0.0.8:3306"), "aurora-1");
        assert_eq!(i.resolve("10.0.0.7:5432"), "db.internal.example");
        // The configured name wins.
        assert_eq!(i.resolve("10.0.0.5:5432"), "orders-db");
    }

    #[test]
    fn by_server_then_address_then_itself() {
        let i = Instances::new([
            ("10.0.0.5:5432", "orders-db"),
            ("10.0.0.6:3306", "users-db"),
            ("10.0.0.7", "mapped-db"),
            ("2001:db8::10", "v6-db"),
        ]);
        assert_eq!(i.resolve("10.0.0.5:5432"), "orders-db");
        assert_eq!(i.resolve("10.0.0.6:3306"), "users-db");
        assert_eq!(i.resolve("10.0.0.6:3307"), "10.0.0.6:3307");
        assert_eq!(i.resolve("10.0.0.7:3306"), "mapped-db");
        assert_eq!(i.resolve("[2001:db8::10]:5432"), "v6-db");
        assert_eq!(
            Instances::default().resolve("10.0.0.9:5432"),
            "10.0.0.9:5432"
        );
    }
}
