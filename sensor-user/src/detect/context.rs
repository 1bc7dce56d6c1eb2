//! What each finding family is handed: the client behind an observation (address, network,
//! ASN, threat lists), who a finding is about, and the context of one login, query or ended
//! connection, built once per record by `observe.rs`.

use super::enrich::IpInfo;
use super::finding::{Evidence, UserDetails};
use super::instances::Inst;
use super::intel::{Cidr, is_public, network_of};
use super::state::Window;
use super::thresholds::Thresholds;
use super::{Detector, Severity};
use crate::model::{FlowRecord, LoginRecord, QueryRecord};
use std::net::IpAddr;

/// Context of one observation about a client.
pub(super) struct Actor {
    pub(super) ip: IpAddr,
    pub(super) net: Cidr,
    pub(super) public: bool,
    pub(super) info: IpInfo,
    pub(super) lists: Vec<String>,
}

impl Actor {
    /// Medium from a public address, Low from a private one.
    pub(super) fn medium_if_public(&self) -> Severity {
        if self.public {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// Who a finding is about and where: the actor key, the instance, the client and the account.
pub(super) struct Who<'c> {
    pub(super) key: String,
    pub(super) inst: &'c Inst,
    pub(super) a: &'c Actor,
    pub(super) ud: Option<&'c UserDetails>,
}

/// One login, as every login family sees it.
pub(super) struct LoginCtx<'r> {
    pub(super) l: &'r LoginRecord,
    pub(super) now: u64,
    pub(super) ip: IpAddr,
    pub(super) inst: Inst,
    pub(super) learning: bool,
    pub(super) th: Thresholds,
    pub(super) ok: bool,
    pub(super) user: String,
    pub(super) app: String,
    pub(super) db: String,
    pub(super) auth: String,
    pub(super) a: Actor,
    pub(super) ud: Option<UserDetails>,
    pub(super) id: String,
    pub(super) verb: &'static str,
}

impl LoginCtx<'_> {
    /// ` to database D`, or nothing when the login named no database.
    pub(super) fn to_db(&self) -> String {
        if self.db.is_empty() {
            String::new()
        } else {
            format!(" to database {}", self.db)
        }
    }

    /// The client by address, with the login's account.
    pub(super) fn who(&self) -> Who<'_> {
        Who {
            key: self.ip.to_string(),
            inst: &self.inst,
            a: &self.a,
            ud: self.ud.as_ref(),
        }
    }
}

/// One query of a known user after the learning period, as privilege drift and data staging see it.
pub(super) struct QueryCtx<'r> {
    pub(super) q: &'r QueryRecord,
    pub(super) ip: IpAddr,
    pub(super) user: String,
    pub(super) class: String,
    pub(super) inst: Inst,
    pub(super) th: Thresholds,
    pub(super) rows: u64,
    pub(super) bytes: u64,
    pub(super) w: Window,
    pub(super) known_user: bool,
    pub(super) base_q: (u64, u64),
    pub(super) base_w: (u64, u64),
    pub(super) a: Actor,
    pub(super) id: String,
    pub(super) ud: Option<UserDetails>,
}

impl QueryCtx<'_> {
    /// The user, with the session's account.
    pub(super) fn who(&self) -> Who<'_> {
        Who {
            key: self.user.clone(),
            inst: &self.inst,
            a: &self.a,
            ud: self.ud.as_ref(),
        }
    }
}

/// One ended connection, as the flow families see it.
pub(super) struct FlowCtx<'r> {
    pub(super) f: &'r FlowRecord,
    pub(super) ip: IpAddr,
    pub(super) inst: Inst,
    pub(super) learning: bool,
    pub(super) had_login: bool,
    pub(super) complete: bool,
    pub(super) probe: bool,
    pub(super) a: Actor,
    pub(super) id: String,
    pub(super) how: String,
    pub(super) ev: Evidence,
    pub(super) listed: bool,
}

impl FlowCtx<'_> {
    /// The client by address; a connection without a login has no account.
    pub(super) fn who(&self) -> Who<'_> {
        Who {
            key: self.ip.to_string(),
            inst: &self.inst,
            a: &self.a,
            ud: None,
        }
    }
}

impl Detector {
    pub(super) fn actor(&mut self, ip: IpAddr) -> Actor {
        let info = self
            .asn
            .as_mut()
            .map(|db| db.lookup(ip))
            .unwrap_or_default();
        let mut lists = Vec::new();
        if let Some((c, p)) = self.malicious.lookup(ip) {
            lists.push(format!("malicious:{c} ({})", p.display()));
        }
        if let Some((c, p)) = self.tor.lookup(ip) {
            lists.push(format!("tor:{c} ({})", p.display()));
        }
        Actor {
            ip,
            net: network_of(ip),
            public: is_public(ip),
            info,
            lists,
        }
    }
}
