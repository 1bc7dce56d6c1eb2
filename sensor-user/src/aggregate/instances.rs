//! Server address → instance name (`--db-instance`, `[instances]`, an instance map file).

use std::collections::BTreeMap;

/// The one resolver every sink uses: a server (`addr:port`) is named by its own entry, else
/// by its address's, else it names itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instances {
    /// `addr:port` or `addr` (IPv6 with or without brackets) → name.
    names: BTreeMap<String, String>,
}

impl Instances {
    pub fn new<K: Into<String>, V: Into<String>>(names: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
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
        self.names
            .get(addr)
            .or_else(|| self.names.get(addr.trim_matches(['[', ']'])))
            .cloned()
            .unwrap_or_else(|| server.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
