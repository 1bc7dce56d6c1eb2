//! Database port lists as operators write them: `5432`, `5432=postgresql`, `3306=mysql`.

use sensor_common::{DEFAULT_DB_PORTS, proto};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("'{0}' is not a port number (1-65535)")]
    BadPort(String),
    #[error("'{0}' is not a known protocol (postgresql, mysql, mssql, oracle)")]
    BadProto(String),
}

/// Which protocol each configured database port speaks.
#[derive(Clone, Debug, Default)]
pub struct PortMap(pub HashMap<u16, u8>);

impl PortMap {
    pub fn new(ports: &[(u16, u8)]) -> Self {
        Self(ports.iter().copied().collect())
    }

    pub fn proto(&self, port: u16) -> u8 {
        self.0.get(&port).copied().unwrap_or(proto::UNKNOWN)
    }
}

/// Parses one `PORT[=PROTOCOL]`. Without a protocol, a default port keeps its protocol and
/// any other port is marked unknown.
pub fn parse_port(s: &str) -> Result<(u16, u8), PortError> {
    let (port, name) = match s.split_once('=') {
        Some((p, n)) => (p.trim(), Some(n.trim())),
        None => (s.trim(), None),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| PortError::BadPort(port.to_string()))?;
    let p = match name {
        Some(n) => match n.to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" | "pg" => proto::POSTGRES,
            "mysql" | "mariadb" => proto::MYSQL,
            "mssql" | "sqlserver" => proto::MSSQL,
            "oracle" => proto::ORACLE,
            _ => return Err(PortError::BadProto(n.to_string())),
        },
        None => DEFAULT_DB_PORTS
            .iter()
            .find(|(dp, _)| *dp == port)
            .map_or(proto::UNKNOWN, |(_, pr)| *pr),
    };
    Ok((port, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports() {
        assert_eq!(parse_port("5432"), Ok((5432, proto::POSTGRES)));
        assert_eq!(parse_port("15432=postgres"), Ok((15432, proto::POSTGRES)));
        assert_eq!(parse_port("3307=MariaDB"), Ok((3307, proto::MYSQL)));
        assert_eq!(parse_port("9999"), Ok((9999, proto::UNKNOWN)));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
        assert!(matches!(parse_port("1=redis"), Err(PortError::BadProto(_))));
    }
}
