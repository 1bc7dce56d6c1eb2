//! Anomalous-client detection: GuardDuty RDS Protection's findings from packets, and what only
//! packets show (data staging, privilege drift, credential spraying, probes, weak
//! authentication on the wire, clients outside the allowed networks, new client edges).
//!
//! The [`Detector`] is fed every record (login, query, flow) in time order and keeps, per
//! database instance, a behavioural [`baseline`]: which users log in from which client networks
//! (/24, /64, or autonomous system with `--asn-db`), with which applications, to which
//! databases, at what rates; which statement classes each user runs; how many rows and bytes
//! each client reads per fingerprint and per window. Time is the records' own (wall-clock) time,
//! so an old capture analysed offline behaves as it did live.
//!
//! During the learning period of an instance (from its first record; `--learning-period`,
//! GuardDuty's is up to two weeks) anomalies are learned, not reported. Threat-intelligence and
//! policy findings (malicious and Tor lists, allowed networks, weak authentication) and attack
//! patterns that need no baseline (brute force, spraying) are reported from the start.
//!
//! | type | default severity | from |
//! |---|---|---|
//! | `CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin` | Low private, Medium public, High after a pattern of failed logins from public addresses | a login unusual for the user: network/ASN, application, database, rate |
//! | `CredentialAccess:RDS/AnomalousBehavior.FailedLogin` | Low | a failed login from a network or for a user never seen, or above the learned failure rate |
//! | `CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce` | High | a success after ≥ N failures from the same address for the same user |
//! | `CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin` / `.FailedLogin` | High / Medium | a login from an address on the malicious list |
//! | `Discovery:RDS/MaliciousIPCaller` | Medium | a connection from a listed address without a login |
//! | `CredentialAccess:RDS/TorIPCaller.SuccessfulLogin` / `.FailedLogin`, `Discovery:RDS/TorIPCaller` | High / Medium / Medium | the same for Tor exit nodes |
//! | `Exfiltration:RDS/AnomalousBehavior.DataStaging` | High | rows or bytes read far above the client's baseline (per query, per window) |
//! | `PrivilegeEscalation:RDS/AnomalousBehavior.PrivilegeDrift` | Medium, High for DDL/GRANT/file and program access | a statement class the user never ran |
//! | `CredentialAccess:RDS/CredentialSpraying.ManyUsers` | Medium, High if one succeeded | one address failing as many users |
//! | `Discovery:RDS/PortProbe.Unauthenticated` | Low private, Medium public | connections closed before any authentication |
//! | `CredentialAccess:RDS/WeakAuthentication.Cleartext` / `.MD5` | Medium (High from public) / Low | the authentication method on the wire, without TLS |
//! | `Policy:RDS/UnallowedNetwork.Connection` | Medium, High on a successful login | a client outside `--allowed-cidr` |
//! | `InitialAccess:RDS/AnomalousBehavior.NewClientEdge` | Low private, Medium public | a client network reaching a database it never reached |
//!
//! Where each family lives:
//!
//! | file | findings |
//! |---|---|
//! | `login_anomaly.rs` | `AnomalousBehavior.SuccessfulLogin` / `.FailedLogin`, `NewClientEdge` of a login |
//! | `brute_force.rs` | `AnomalousBehavior.SuccessfulBruteForce`, `CredentialSpraying.ManyUsers` |
//! | `intel_callers.rs` | `MaliciousIPCaller.*`, `TorIPCaller.*`, logins and discovery |
//! | `unallowed_network.rs` | `UnallowedNetwork.Connection` |
//! | `weak_auth.rs` | `WeakAuthentication.Cleartext` / `.MD5` |
//! | `port_probe.rs` | `PortProbe.Unauthenticated`, `NewClientEdge` of a session without a readable login |
//! | `privilege_drift.rs` | `PrivilegeDrift` (and the statement classes it compares) |
//! | `data_staging.rs` | `DataStaging` |
//!
//! This module holds the shared state (the [`Detector`], its options and thresholds) and the
//! dispatch: each record's context is built once, then handed to the families in turn.

pub mod args;
pub mod baseline;
mod brute_force;
mod data_staging;
pub mod enrich;
pub mod finding;
pub mod intel;
mod intel_callers;
mod login_anomaly;
#[cfg(test)]
pub(crate) mod mmdb_write;
mod port_probe;
mod privilege_drift;
mod unallowed_network;
mod weak_auth;

pub use args::DetectArgs;
pub use finding::{Finding, FindingType, Severity};
pub use privilege_drift::{is_dangerous_class, statement_class};

use crate::model::{
    Clock, FlowEnd, FlowRecord, LoginRecord, Outcome, Protocol, QueryRecord, Record,
};
use anyhow::Result;
use baseline::{Baseline, BaselineStore, InstanceBaseline, fingerprint_key};
use data_staging::{Window, reads_rows};
use enrich::{AsnDb, InstanceMap, IpInfo};
use finding::{
    Country, Evidence, FindingLog, InstanceDetails, LoginAttribute, Observation, Organization,
    RemoteIpDetails, Tag, UserDetails,
};
use intel::{Cidr, CidrSet, Lists, canonical, is_public, network_of};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

const NS: u64 = 1_000_000_000;

/// Thresholds of the pattern and volume rules (`[detect.thresholds]` of the config file).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Failed logins of one user from one address, within `failure_window_s`, that make a
    /// following success a brute force.
    pub brute_force_failures: usize,
    pub failure_window_s: u64,
    /// Distinct users one address failed as, within `failure_window_s`: spraying.
    pub spray_users: usize,
    /// Failed logins from public addresses, for one user within `public_failure_window_s`,
    /// that make an anomalous successful login High.
    pub public_failure_pattern: usize,
    pub public_failure_window_s: u64,
    /// A network's failed logins in one hour above max(factor × learned maximum, min) are
    /// unusual; the same for a user's successful logins.
    pub failure_rate_factor: f64,
    pub failure_rate_min: u64,
    pub login_rate_factor: f64,
    pub login_rate_min: u64,
    /// A read is data staging above max(factor × baseline, min) rows or bytes.
    pub staging_factor: f64,
    pub staging_min_rows: u64,
    pub staging_min_bytes: u64,
    pub staging_window_s: u64,
    /// A connection without a login that sent at most this many payload bytes is a probe.
    pub probe_max_client_bytes: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            brute_force_failures: 5,
            failure_window_s: 600,
            spray_users: 4,
            public_failure_pattern: 5,
            public_failure_window_s: 3600,
            failure_rate_factor: 3.0,
            failure_rate_min: 3,
            login_rate_factor: 3.0,
            login_rate_min: 30,
            staging_factor: 10.0,
            staging_min_rows: 1_000,
            staging_min_bytes: 1 << 20,
            staging_window_s: 300,
            probe_max_client_bytes: 64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DetectorOptions {
    /// Seconds after an instance's first record during which anomalies are learned.
    pub learning_period_s: u64,
    /// Baseline file: loaded at start, saved every `save_every_s` and at the end.
    pub baseline: Option<PathBuf>,
    pub save_every_s: u64,
    /// Repeats of a finding are emitted as an update at most this often.
    pub update_every_s: u64,
    pub malicious_lists: Vec<PathBuf>,
    pub tor_lists: Vec<PathBuf>,
    /// Client networks the security group should allow; empty: no policy.
    pub allowed: Vec<Cidr>,
    pub instance_map: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
    pub thresholds: Thresholds,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            learning_period_s: 14 * 24 * 3600,
            baseline: None,
            save_every_s: 300,
            update_every_s: 60,
            malicious_lists: Vec::new(),
            tor_lists: Vec::new(),
            allowed: Vec::new(),
            instance_map: None,
            asn_db: None,
            thresholds: Thresholds::default(),
        }
    }
}

/// What a decoded login told about a connection.
#[derive(Clone, Debug)]
struct Conn {
    user: Option<String>,
    application: String,
    tls: bool,
    auth_method: String,
    ts_ns: u64,
}

#[derive(Clone, Debug)]
struct Inst {
    key: String,
    details: InstanceDetails,
}

/// Cumulative figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetectorStats {
    pub logins: u64,
    pub queries: u64,
    pub flows: u64,
    pub findings_emitted: u64,
    pub baseline_saves: u64,
    pub baseline_save_errors: u64,
}

/// Recent failed logins of one (instance, address): (time, user).
type FailureLog = VecDeque<(u64, String)>;
/// (user, application) → (failed, successful) logins of one (instance, address).
type LoginCounts = BTreeMap<(String, String), (u64, u64)>;

pub struct Detector {
    opts: DetectorOptions,
    clock: Clock,
    baseline: Baseline,
    store: Option<BaselineStore>,
    last_save_ns: u64,
    malicious: Lists,
    tor: Lists,
    allowed: CidrSet,
    instances: InstanceMap,
    inst_cache: HashMap<String, Inst>,
    asn: Option<AsnDb>,
    log: FindingLog,
    now_ns: u64,
    last_tick_ns: u64,
    conns: HashMap<(String, String), Conn>,
    source_failures: HashMap<(String, IpAddr), FailureLog>,
    public_failures: HashMap<(String, String), VecDeque<u64>>,
    hour_logins: HashMap<(String, String), (u64, u64)>,
    hour_failures: HashMap<(String, String), (u64, u64)>,
    windows: HashMap<(String, String, IpAddr), Window>,
    login_counts: HashMap<(String, IpAddr), LoginCounts>,
    pub stats: DetectorStats,
}

fn client_ip(s: &str) -> Option<IpAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
        .or_else(|| s.parse::<IpAddr>().ok().map(canonical))
}

fn default_engine(protocol: &str) -> &str {
    match protocol {
        "postgresql" => "postgres",
        p => p,
    }
}

fn prune(q: &mut VecDeque<u64>, since: u64) {
    while q.front().is_some_and(|t| *t < since) {
        q.pop_front();
    }
}

/// Context of one observation about a client.
struct Actor {
    ip: IpAddr,
    net: Cidr,
    public: bool,
    info: IpInfo,
    lists: Vec<String>,
}

impl Actor {
    /// Medium from a public address, Low from a private one.
    fn medium_if_public(&self) -> Severity {
        if self.public {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// Who a finding is about and where: the actor key, the instance, the client and the account.
struct Who<'c> {
    key: String,
    inst: &'c Inst,
    a: &'c Actor,
    ud: Option<&'c UserDetails>,
}

/// One login, as every login family sees it.
struct LoginCtx<'r> {
    l: &'r LoginRecord,
    now: u64,
    ip: IpAddr,
    inst: Inst,
    learning: bool,
    th: Thresholds,
    ok: bool,
    user: String,
    app: String,
    db: String,
    auth: String,
    a: Actor,
    ud: Option<UserDetails>,
    id: String,
    verb: &'static str,
}

impl LoginCtx<'_> {
    /// The client by address, with the login's account.
    fn who(&self) -> Who<'_> {
        Who {
            key: self.ip.to_string(),
            inst: &self.inst,
            a: &self.a,
            ud: self.ud.as_ref(),
        }
    }
}

/// One query of a known user after the learning period, as privilege drift and data staging see it.
struct QueryCtx<'r> {
    q: &'r QueryRecord,
    ip: IpAddr,
    user: String,
    class: String,
    inst: Inst,
    th: Thresholds,
    rows: u64,
    bytes: u64,
    w: Window,
    known_user: bool,
    base_q: (u64, u64),
    base_w: (u64, u64),
    a: Actor,
    id: String,
    ud: Option<UserDetails>,
}

impl QueryCtx<'_> {
    /// The user, with the session's account.
    fn who(&self) -> Who<'_> {
        Who {
            key: self.user.clone(),
            inst: &self.inst,
            a: &self.a,
            ud: self.ud.as_ref(),
        }
    }
}

/// One ended connection, as the flow families see it.
struct FlowCtx<'r> {
    f: &'r FlowRecord,
    ip: IpAddr,
    inst: Inst,
    learning: bool,
    had_login: bool,
    complete: bool,
    probe: bool,
    a: Actor,
    id: String,
    how: String,
    ev: Evidence,
    listed: bool,
}

impl FlowCtx<'_> {
    /// The client by address; a connection without a login has no account.
    fn who(&self) -> Who<'_> {
        Who {
            key: self.ip.to_string(),
            inst: &self.inst,
            a: &self.a,
            ud: None,
        }
    }
}

impl Detector {
    /// SIGHUP: new malicious/Tor lists, allowed networks and instance map; the baseline, open
    /// findings and every window are kept. On an unreadable file nothing changes.
    pub fn reload(
        &mut self,
        allowed: &[Cidr],
        malicious: &[PathBuf],
        tor: &[PathBuf],
        instance_map: Option<&std::path::Path>,
    ) -> Result<()> {
        let m = Lists::load("malicious", malicious)?;
        let t = Lists::load("tor", tor)?;
        let instances = match instance_map {
            Some(p) => InstanceMap::load(p)?,
            None => InstanceMap::default(),
        };
        self.malicious = m;
        self.tor = t;
        self.instances = instances;
        self.inst_cache.clear();
        self.allowed = allowed.iter().copied().collect();
        self.opts.allowed = allowed.to_vec();
        self.opts.malicious_lists = malicious.to_vec();
        self.opts.tor_lists = tor.to_vec();
        self.opts.instance_map = instance_map.map(PathBuf::from);
        Ok(())
    }

    /// Loads the lists, the instance map, the mmdb and the baseline. Unreadable list, map or
    /// mmdb files are errors (naming the file); a corrupt baseline is not (see
    /// [`BaselineStore::load`]).
    pub fn new(opts: DetectorOptions, clock: Clock) -> Result<Self> {
        let malicious = Lists::load("malicious", &opts.malicious_lists)?;
        let tor = Lists::load("tor", &opts.tor_lists)?;
        let instances = match &opts.instance_map {
            Some(p) => InstanceMap::load(p)?,
            None => InstanceMap::default(),
        };
        let asn = opts.asn_db.as_deref().map(AsnDb::open).transpose()?;
        let store = opts.baseline.as_deref().map(BaselineStore::new);
        let baseline = store
            .as_ref()
            .map_or_else(Baseline::new, |s| s.load().baseline);
        let log = FindingLog::new(opts.update_every_s.saturating_mul(NS));
        Ok(Self {
            allowed: opts.allowed.iter().copied().collect(),
            opts,
            clock,
            baseline,
            store,
            last_save_ns: 0,
            malicious,
            tor,
            instances,
            inst_cache: HashMap::new(),
            asn,
            log,
            now_ns: 0,
            last_tick_ns: 0,
            conns: HashMap::new(),
            source_failures: HashMap::new(),
            public_failures: HashMap::new(),
            hour_logins: HashMap::new(),
            hour_failures: HashMap::new(),
            windows: HashMap::new(),
            login_counts: HashMap::new(),
            stats: DetectorStats::default(),
        })
    }

    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Feeds one record; findings (new ones and due updates) are appended to `out`.
    pub fn observe(&mut self, record: &Record, out: &mut Vec<Finding>) {
        let before = out.len();
        match record {
            Record::Login(l) => self.on_login(l, out),
            Record::Query(q) => self.on_query(q, out),
            Record::Flow(f) => self.on_flow(f, out),
            _ => {}
        }
        self.stats.findings_emitted += (out.len() - before) as u64;
    }

    /// Time passes without records (`ts_ns` on the records' clock): emits due updates, reloads
    /// changed lists and saves the baseline when it is time.
    pub fn tick(&mut self, ts_ns: u64, out: &mut Vec<Finding>) {
        let before = out.len();
        self.advance(self.wall(ts_ns), out);
        self.stats.findings_emitted += (out.len() - before) as u64;
    }

    /// End of capture or shutdown: emits every pending update and saves the baseline.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        let pending = self.log.flush(self.now_ns);
        self.stats.findings_emitted += pending.len() as u64;
        out.extend(pending);
        self.save();
    }

    /// Saves the baseline now (if a file is configured); errors are logged and counted.
    pub fn save(&mut self) {
        let Some(store) = &self.store else { return };
        match store.save(&self.baseline) {
            Ok(()) => {
                self.stats.baseline_saves += 1;
                self.last_save_ns = self.now_ns;
            }
            Err(e) => {
                self.stats.baseline_save_errors += 1;
                tracing::error!("{e:#}");
            }
        }
    }

    fn wall(&self, ts_ns: u64) -> u64 {
        self.clock.wall_ns(ts_ns)
    }

    /// Moves detection time forward; once a second (record time) emits due updates, reloads
    /// changed lists, forgets old state and saves the baseline when it is time.
    fn advance(&mut self, now: u64, out: &mut Vec<Finding>) {
        self.now_ns = self.now_ns.max(now);
        let now = self.now_ns;
        if now < self.last_tick_ns + NS {
            return;
        }
        let first = self.last_tick_ns == 0;
        self.last_tick_ns = now;
        if first {
            self.last_save_ns = now;
        }
        out.extend(self.log.due(now));
        self.malicious.maybe_reload();
        self.tor.maybe_reload();
        let t = &self.opts.thresholds;
        let keep_conn = now.saturating_sub(3600 * NS);
        self.conns.retain(|_, c| c.ts_ns >= keep_conn);
        let fail_since = now.saturating_sub(t.failure_window_s * NS);
        self.source_failures.retain(|_, q| {
            while q.front().is_some_and(|(ts, _)| *ts < fail_since) {
                q.pop_front();
            }
            !q.is_empty()
        });
        let pub_since = now.saturating_sub(t.public_failure_window_s * NS);
        self.public_failures.retain(|_, q| {
            prune(q, pub_since);
            !q.is_empty()
        });
        let win_since = now.saturating_sub(2 * t.staging_window_s * NS);
        self.windows.retain(|_, w| w.start_ns >= win_since);
        let hour = now / (3600 * NS);
        self.hour_logins.retain(|_, (h, _)| *h + 1 >= hour);
        self.hour_failures.retain(|_, (h, _)| *h + 1 >= hour);
        if self.login_counts.len() > 100_000 {
            self.login_counts.clear();
        }
        if self.store.is_some()
            && now.saturating_sub(self.last_save_ns) >= self.opts.save_every_s * NS
        {
            self.save();
        }
    }

    fn instance(&mut self, server: &str, protocol: &str) -> Inst {
        if let Some(i) = self.inst_cache.get(server) {
            return i.clone();
        }
        let spec = server
            .parse::<SocketAddr>()
            .ok()
            .and_then(|s| self.instances.get(s));
        let details = match spec {
            Some(s) => InstanceDetails {
                db_instance_identifier: s.db_instance_identifier.clone(),
                db_cluster_identifier: s.db_cluster_identifier.clone(),
                engine: s
                    .engine
                    .clone()
                    .unwrap_or_else(|| default_engine(protocol).to_string()),
                engine_version: s.engine_version.clone(),
                db_instance_arn: s.db_instance_arn.clone(),
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| Tag {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                address: server.to_string(),
            },
            // Unmapped: the server's address names the instance (an RDS instance has its own).
            None => InstanceDetails {
                db_instance_identifier: server
                    .parse::<SocketAddr>()
                    .map_or_else(|_| server.to_string(), |s| s.ip().to_string()),
                engine: default_engine(protocol).to_string(),
                address: server.to_string(),
                ..InstanceDetails::default()
            },
        };
        let i = Inst {
            key: details.db_instance_identifier.clone(),
            details,
        };
        if self.inst_cache.len() > 10_000 {
            self.inst_cache.clear();
        }
        self.inst_cache.insert(server.to_string(), i.clone());
        i
    }

    /// True while the instance is learning; creates its baseline on first sight.
    fn learning(&mut self, key: &str, now: u64) -> bool {
        let ib = self
            .baseline
            .instances
            .entry(key.to_string())
            .or_insert_with(|| InstanceBaseline {
                first_seen_ns: now,
                ..InstanceBaseline::default()
            });
        if ib.first_seen_ns == 0 {
            ib.first_seen_ns = now;
        }
        ib.last_seen_ns = ib.last_seen_ns.max(now);
        now < ib
            .first_seen_ns
            .saturating_add(self.opts.learning_period_s.saturating_mul(NS))
    }

    fn actor(&mut self, ip: IpAddr) -> Actor {
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

    fn remote(a: &Actor) -> RemoteIpDetails {
        RemoteIpDetails {
            ip_address_v4: a.ip.is_ipv4().then(|| a.ip.to_string()),
            ip_address_v6: a.ip.is_ipv6().then(|| a.ip.to_string()),
            organization: Organization {
                asn: a.info.asn.map(|n| n.to_string()),
                asn_org: a.info.asn_org.clone(),
                isp: a.info.isp.clone(),
                org: a.info.org.clone().or_else(|| a.info.asn_org.clone()),
            },
            country: Country {
                country_code: a.info.country_code.clone(),
                country_name: a.info.country_name.clone(),
            },
            network: a.net.to_string(),
            public: a.public,
            threat_lists: a.lists.clone(),
        }
    }

    fn login_attributes(&self, inst: &str, ip: IpAddr) -> Vec<LoginAttribute> {
        self.login_counts
            .get(&(inst.to_string(), ip))
            .map(|m| {
                m.iter()
                    .take(20)
                    .map(|((u, a), (f, s))| LoginAttribute {
                        user: u.clone(),
                        application: a.clone(),
                        failed_login_attempts: *f,
                        successful_login_attempts: *s,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The baseline of an instance, which `learning()` created.
    fn instance_baseline(&mut self, key: &str) -> &mut InstanceBaseline {
        self.baseline
            .instances
            .get_mut(key)
            .expect("created by learning()")
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        out: &mut Vec<Finding>,
        who: Who,
        kind: FindingType,
        severity: Severity,
        title: String,
        description: String,
        evidence: Evidence,
    ) {
        let o = Observation {
            kind,
            severity,
            actor: who.key,
            title,
            description,
            instance: who.inst.details.clone(),
            user: who.ud.cloned(),
            remote: Self::remote(who.a),
            logins: self.login_attributes(&who.inst.key, who.a.ip),
            evidence,
            ts_ns: self.now_ns,
        };
        if let Some(f) = self.log.report(o, self.now_ns) {
            out.push(f);
        }
    }

    fn on_login(&mut self, l: &LoginRecord, out: &mut Vec<Finding>) {
        self.stats.logins += 1;
        let now = l.ts.ns();
        self.advance(now, out);
        let Some(ip) = client_ip(&l.endpoint.client) else {
            return;
        };
        let inst = self.instance(&l.endpoint.server, l.endpoint.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let ok = l.outcome == Outcome::Success;
        let user = l.user.clone().unwrap_or_else(|| "-".into());
        let app = l.application.clone().unwrap_or_default();
        let db = l.database.clone().unwrap_or_else(|| "-".into());
        let auth = l.auth_method.clone().unwrap_or_default();
        self.conns.insert(
            (l.endpoint.client.clone(), l.endpoint.server.clone()),
            Conn {
                user: l.user.clone(),
                application: l.application.clone().unwrap_or_default(),
                tls: l.tls,
                auth_method: l.auth_method.clone().unwrap_or_default(),
                ts_ns: now,
            },
        );
        {
            let c = self
                .login_counts
                .entry((inst.key.clone(), ip))
                .or_default()
                .entry((user.clone(), app.clone()))
                .or_default();
            if ok {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
        }
        let a = self.actor(ip);
        let ud = Some(UserDetails {
            user: user.clone(),
            application: app.clone(),
            database: db.clone(),
            ssl: l.tls.to_string(),
            auth_method: if auth.is_empty() {
                "unknown".into()
            } else {
                auth.clone()
            },
        });
        let id = inst.details.db_instance_identifier.clone();
        let verb = if ok { "logged in" } else { "failed to log in" };

        let c = LoginCtx {
            l,
            now,
            ip,
            inst,
            learning,
            th,
            ok,
            user,
            app,
            db,
            auth,
            a,
            ud,
            id,
            verb,
        };

        // Threat intelligence and policy: always.
        self.intel_logins(&c, out);
        self.unallowed_login(&c, out);
        self.weak_auth_login(&c, out);
        // Patterns that need no baseline: brute force and spraying.
        let public_failures = self.brute_force_and_spray(&c, out);
        // Rates and the baseline.
        self.login_anomaly(&c, public_failures, out);
    }

    fn on_query(&mut self, q: &QueryRecord, out: &mut Vec<Finding>) {
        self.stats.queries += 1;
        let now = q.ts.ns();
        self.advance(now, out);
        let Some(ip) = client_ip(&q.endpoint.client) else {
            return;
        };
        let conn_key = (q.endpoint.client.clone(), q.endpoint.server.clone());
        if let Some(c) = self.conns.get_mut(&conn_key) {
            c.ts_ns = now;
        }
        let Some(user) = q
            .user
            .clone()
            .or_else(|| self.conns.get(&conn_key).and_then(|c| c.user.clone()))
        else {
            return;
        };
        let class = statement_class(&q.verb, &q.fingerprint);
        if class.is_empty() {
            return;
        }
        let inst = self.instance(&q.endpoint.server, q.endpoint.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let rows = if reads_rows(&class) {
            q.rows.unwrap_or(0)
        } else {
            0
        };
        let bytes = q.bytes_response;
        let fpk = fingerprint_key(&q.fingerprint);

        let w = self.staging_window(
            (inst.key.clone(), user.clone(), ip),
            now,
            rows,
            bytes,
            &q.fingerprint,
        );

        let ib = self.instance_baseline(&inst.key);
        if learning {
            let ub = ib.users.entry(user).or_default();
            ub.classes.insert(class);
            ub.queries += 1;
            ub.learn_volume(fpk, rows, bytes);
            ub.max_rows_window = ub.max_rows_window.max(w.rows);
            ub.max_bytes_window = ub.max_bytes_window.max(w.bytes);
            return;
        }
        let (known_user, drift, base_q, base_w) = match ib.users.get_mut(&user) {
            Some(ub) => {
                ub.queries += 1;
                let base_q = ub
                    .volume(&fpk)
                    .map(|v| (v.max_rows, v.max_bytes))
                    .unwrap_or((ub.max_rows_query, ub.max_bytes_query));
                (
                    true,
                    !ub.classes.contains(&class),
                    base_q,
                    (ub.max_rows_window, ub.max_bytes_window),
                )
            }
            None => (false, false, (0, 0), (0, 0)),
        };
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        // The session's login, when the sensor saw it, tells the rest.
        let conn = self.conns.get(&conn_key);
        let ud = Some(UserDetails {
            user: user.clone(),
            application: conn.map(|c| c.application.clone()).unwrap_or_default(),
            database: q.database.clone().unwrap_or_else(|| "-".into()),
            ssl: conn.is_some_and(|c| c.tls).to_string(),
            auth_method: conn
                .map(|c| c.auth_method.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        });
        let c = QueryCtx {
            q,
            ip,
            user,
            class,
            inst,
            th,
            rows,
            bytes,
            w,
            known_user,
            base_q,
            base_w,
            a,
            id,
            ud,
        };
        if drift {
            self.privilege_drift(&c, out);
        }
        self.data_staging(&c, out);
    }

    fn on_flow(&mut self, f: &FlowRecord, out: &mut Vec<Finding>) {
        self.stats.flows += 1;
        let now = f.first_seen.ns() + f.duration_us * 1000;
        self.advance(now, out);
        let Some(ip) = client_ip(&f.client) else {
            return;
        };
        let inst = self.instance(&f.server, f.protocol.name());
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let had_login = self
            .conns
            .remove(&(f.client.clone(), f.server.clone()))
            .is_some();
        let complete = f.syn > 0 && !matches!(f.end, FlowEnd::EndOfCapture | FlowEnd::Shutdown);
        // A PostgreSQL CancelRequest is a 16-byte message on a connection of its own, unanswered.
        let cancel = f.protocol == Protocol::Postgres
            && f.payload_bytes_to_server == 16
            && f.payload_bytes_to_client == 0;
        let probe = complete
            && !had_login
            && !cancel
            && f.payload_bytes_to_server <= th.probe_max_client_bytes;
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        let end = format!("{:?}", f.end).to_ascii_lowercase();
        let how = if f.syn_ack == 0 {
            "got no SYN-ACK".to_string()
        } else if probe {
            format!("closed ({end}) before any authentication")
        } else {
            format!(
                "carried {} bytes without a login the sensor could read",
                f.payload_bytes_to_server
            )
        };
        let ev = Evidence {
            connections: Some(1),
            flow_ends: vec![end.clone()],
            ..Evidence::default()
        };
        let listed = !a.lists.is_empty();
        let c = FlowCtx {
            f,
            ip,
            inst,
            learning,
            had_login,
            complete,
            probe,
            a,
            id,
            how,
            ev,
            listed,
        };
        if !had_login {
            self.intel_discovery(&c, out);
            self.unallowed_flow(&c, out);
        }
        self.unauthenticated_flow(&c, out);
    }
}

#[cfg(test)]
mod tests;
