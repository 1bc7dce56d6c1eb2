//! Context for findings: who an address belongs to (a MaxMind-format ASN, ISP, Country or City
//! database), and which RDS instance a server address is.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// What an mmdb says about an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpInfo {
    pub asn: Option<u32>,
    pub asn_org: Option<String>,
    pub isp: Option<String>,
    pub org: Option<String>,
    pub country_code: Option<String>,
    pub country_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct Names {
    #[serde(default)]
    en: Option<String>,
}

#[derive(Deserialize, Default)]
struct MmCountry {
    #[serde(default)]
    iso_code: Option<String>,
    #[serde(default)]
    names: Option<Names>,
}

#[derive(Deserialize, Default)]
struct MmTraits {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
    #[serde(default)]
    isp: Option<String>,
    #[serde(default)]
    organization: Option<String>,
}

/// The fields of GeoLite2/GeoIP2 ASN, ISP, Country, City and Enterprise records we use; the
/// rest is ignored, so any of those databases works.
#[derive(Deserialize, Default)]
struct MmRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
    #[serde(default)]
    isp: Option<String>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    country: Option<MmCountry>,
    #[serde(default)]
    traits: Option<MmTraits>,
}

/// A MaxMind DB file (`--asn-db`), with a small lookup cache.
pub struct AsnDb {
    reader: maxminddb::Reader<Vec<u8>>,
    pub path: PathBuf,
    cache: HashMap<IpAddr, IpInfo>,
}

const CACHE_MAX: usize = 65_536;

impl AsnDb {
    pub fn open(path: &Path) -> Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path)
            .with_context(|| format!("MaxMind database {}", path.display()))?;
        tracing::info!(
            path = %path.display(),
            kind = %reader.metadata().database_type,
            "MaxMind database loaded"
        );
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            cache: HashMap::new(),
        })
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// What the database knows about `ip`; nothing (not an error) when it has no entry.
    pub fn lookup(&mut self, ip: IpAddr) -> IpInfo {
        if let Some(i) = self.cache.get(&ip) {
            return i.clone();
        }
        let info = match self.decode(ip) {
            Ok(Some(r)) => {
                let t = r.traits.unwrap_or_default();
                let c = r.country.unwrap_or_default();
                IpInfo {
                    asn: r.autonomous_system_number.or(t.autonomous_system_number),
                    asn_org: r
                        .autonomous_system_organization
                        .or(t.autonomous_system_organization),
                    isp: r.isp.or(t.isp),
                    org: r.organization.or(t.organization),
                    country_code: c.iso_code,
                    country_name: c.names.and_then(|n| n.en),
                }
            }
            Ok(None) => IpInfo::default(),
            Err(e) => {
                tracing::debug!(%ip, error = %e, "mmdb lookup failed");
                IpInfo::default()
            }
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(ip, info.clone());
        info
    }

    fn decode(&self, ip: IpAddr) -> Result<Option<MmRecord>, maxminddb::MaxMindDbError> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return Ok(None);
        }
        self.reader.lookup(ip)?.decode::<MmRecord>()
    }
}

/// One RDS instance as the instance map (`--instance-map`) describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub db_instance_identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_cluster_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_instance_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Server address → instance. The file is a JSON object whose keys are `IP:PORT` (or `IP`, any
/// port; IPv6 as `[2001:db8::10]:5432` or `2001:db8::10`) and whose values are
/// [`InstanceSpec`]s:
///
/// ```json
/// {"198.51.100.10:5432": {"dbInstanceIdentifier": "orders-pg-1",
///   "dbClusterIdentifier": "orders", "engine": "postgres", "tags": {"env": "prod"}}}
/// ```
#[derive(Clone, Debug, Default)]
pub struct InstanceMap {
    by_socket: HashMap<SocketAddr, InstanceSpec>,
    by_ip: HashMap<IpAddr, InstanceSpec>,
}

impl InstanceMap {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("instance map {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("instance map {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let raw: BTreeMap<String, InstanceSpec> = serde_json::from_str(text)?;
        let mut m = Self::default();
        for (k, v) in raw {
            if v.db_instance_identifier.is_empty() {
                bail!("`{k}`: dbInstanceIdentifier is empty");
            }
            if let Ok(s) = k.parse::<SocketAddr>() {
                m.by_socket.insert(s, v);
            } else if let Ok(ip) = k.trim_matches(['[', ']']).parse::<IpAddr>() {
                m.by_ip.insert(ip, v);
            } else {
                bail!("`{k}` is neither IP:PORT nor IP");
            }
        }
        Ok(m)
    }

    pub fn get(&self, server: SocketAddr) -> Option<&InstanceSpec> {
        self.by_socket
            .get(&server)
            .or_else(|| self.by_ip.get(&server.ip()))
    }

    pub fn len(&self) -> usize {
        self.by_socket.len() + self.by_ip.len()
    }

    /// Every server the map names (by socket address or by address alone): the address, its
    /// identifier and engine.
    pub fn named(&self) -> Vec<(IpAddr, String, Option<String>)> {
        self.by_socket
            .iter()
            .map(|(a, s)| (a.ip(), s))
            .chain(self.by_ip.iter().map(|(a, s)| (*a, s)))
            .map(|(a, s)| (a, s.db_instance_identifier.clone(), s.engine.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::mmdb_write::{MmdbWriter, Value, block};

    #[test]
    fn instance_map_by_socket_then_ip() {
        let m = InstanceMap::parse(
            r#"{"198.51.100.10:5432": {"dbInstanceIdentifier": "pg-1", "engine": "postgres",
                 "tags": {"env": "prod"}},
               "198.51.100.10": {"dbInstanceIdentifier": "any-port"},
               "[2001:db8:100::10]:3306": {"dbInstanceIdentifier": "my-1", "dbClusterIdentifier": "c"}}"#,
        )
        .unwrap();
        let get = |s: &str| {
            m.get(s.parse().unwrap())
                .map(|i| i.db_instance_identifier.as_str())
        };
        assert_eq!(get("198.51.100.10:5432"), Some("pg-1"));
        assert_eq!(get("198.51.100.10:3306"), Some("any-port"));
        assert_eq!(get("[2001:db8:100::10]:3306"), Some("my-1"));
        assert_eq!(get("198.51.100.11:5432"), None);
        assert!(InstanceMap::parse(r#"{"nonsense": {"dbInstanceIdentifier": "x"}}"#).is_err());
        assert!(InstanceMap::parse(r#"{"1.2.3.4": {"identifier": "x"}}"#).is_err());
    }

    #[test]
    fn mmdb_lookup_of_a_generated_database() {
        let mut w = MmdbWriter::new("GeoLite2-ASN");
        w.insert(
            block("45.155.205.0/24"),
            Value::map([
                ("autonomous_system_number", Value::U32(64501)),
                (
                    "autonomous_system_organization",
                    Value::str("Example Bulletproof Hosting"),
                ),
            ]),
        );
        w.insert(
            block("185.220.100.0/22"),
            Value::map([
                ("autonomous_system_number", Value::U32(64502)),
                (
                    "autonomous_system_organization",
                    Value::str("Example Tor Relays e.V."),
                ),
                (
                    "country",
                    Value::map([
                        ("iso_code", Value::str("DE")),
                        ("names", Value::map([("en", Value::str("Germany"))])),
                    ]),
                ),
            ]),
        );
        let dir = std::env::temp_dir().join(format!("rds-mmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("asn.mmdb");
        std::fs::write(&p, w.build()).unwrap();
        let mut db = AsnDb::open(&p).unwrap();
        assert_eq!(db.database_type(), "GeoLite2-ASN");
        let i = db.lookup("45.155.205.33".parse().unwrap());
        assert_eq!(i.asn, Some(64501));
        assert_eq!(i.asn_org.as_deref(), Some("Example Bulletproof Hosting"));
        assert_eq!(i.country_code, None);
        let i = db.lookup("185.220.101.7".parse().unwrap());
        assert_eq!(i.asn, Some(64502));
        assert_eq!(i.country_code.as_deref(), Some("DE"));
        assert_eq!(i.country_name.as_deref(), Some("Germany"));
        assert_eq!(
            db.lookup("198.51.100.20".parse().unwrap()),
            IpInfo::default()
        );
        assert_eq!(db.lookup("2001:db8::1".parse().unwrap()), IpInfo::default());
        std::fs::write(&p, b"not an mmdb").unwrap();
        let e = AsnDb::open(&p).err().unwrap();
        assert!(format!("{e:#}").contains("asn.mmdb"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
