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

pub mod args;
pub mod baseline;
pub mod enrich;
pub mod finding;
pub mod intel;
#[cfg(test)]
pub(crate) mod mmdb_write;

pub use args::DetectArgs;
pub use finding::{Finding, FindingType, Severity};

use crate::records::{Clock, FlowEnd, FlowRecord, LoginRecord, Outcome, QueryRecord, Record};
use anyhow::Result;
use baseline::{Baseline, BaselineStore, InstanceBaseline, fingerprint_key};
use enrich::{AsnDb, InstanceMap, IpInfo};
use finding::{
    Country, Evidence, FindingLog, InstanceDetails, LoginAttribute, Observation, Organization,
    RemoteIpDetails, Tag, UserDetails,
};
use intel::{Cidr, CidrSet, Lists, canonical, is_public, network_of};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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

/// Reads of one client as one user in the current volume window.
#[derive(Clone, Debug, Default)]
struct Window {
    start_ns: u64,
    rows: u64,
    bytes: u64,
    queries: u64,
    fingerprints: Vec<String>,
    reported: bool,
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

/// The statement class privilege drift compares: the verb, the object kind for DDL
/// (`DROP TABLE`, `CREATE ROLE`, `ALTER SYSTEM`), and the dangerous variants of reads and
/// copies (`COPY PROGRAM`, `SELECT INTO OUTFILE`, `SELECT FILE ACCESS`, `SET ROLE`).
pub fn statement_class(verb: &str, fingerprint: &str) -> String {
    let fp = fingerprint.to_ascii_lowercase();
    let words: Vec<&str> = fp
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let verb = if verb.is_empty() {
        words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default()
    } else {
        verb.to_ascii_uppercase()
    };
    let has = |w: &str| words.contains(&w);
    match verb.as_str() {
        "COPY" => {
            if has("program") {
                "COPY PROGRAM".into()
            } else {
                // Only the top level says the direction: `COPY (SELECT … FROM t) TO STDOUT`.
                let mut depth = 0i32;
                let top: String = fp
                    .chars()
                    .filter(|c| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0 && *c != ')'
                    })
                    .collect();
                if top.split_whitespace().any(|w| w == "to") {
                    "COPY TO".into()
                } else {
                    "COPY FROM".into()
                }
            }
        }
        "CREATE" | "ALTER" | "DROP" => {
            const SKIP: &[&str] = &[
                "or",
                "replace",
                "unique",
                "global",
                "local",
                "unlogged",
                "if",
                "not",
                "exists",
                "definer",
                "algorithm",
                "undefined",
                "merge",
                "sql",
                "security",
                "invoker",
                "recursive",
                "trusted",
                "procedural",
                "concurrently",
                "current_user",
            ];
            let mut temp = false;
            let object = words
                .iter()
                .skip(1)
                .find(|w| {
                    if matches!(**w, "temp" | "temporary") {
                        temp = true;
                        return false;
                    }
                    !SKIP.contains(w)
                })
                .map(|w| w.to_ascii_uppercase());
            match object {
                Some(o) if temp => format!("{verb} TEMP {o}"),
                Some(o) => format!("{verb} {o}"),
                None => verb,
            }
        }
        "SELECT" => {
            if words
                .windows(2)
                .any(|w| w[0] == "into" && matches!(w[1], "outfile" | "dumpfile"))
            {
                "SELECT INTO OUTFILE".into()
            } else if words.iter().any(|w| {
                matches!(
                    *w,
                    "pg_read_file"
                        | "pg_read_binary_file"
                        | "pg_ls_dir"
                        | "lo_import"
                        | "lo_export"
                        | "load_file"
                )
            }) {
                "SELECT FILE ACCESS".into()
            } else {
                verb
            }
        }
        "LOAD" => "LOAD DATA".into(),
        "SET" => {
            if words.get(1) == Some(&"role")
                || (words.get(1) == Some(&"session") && words.get(2) == Some(&"authorization"))
            {
                "SET ROLE".into()
            } else {
                verb
            }
        }
        _ => verb,
    }
}

/// Statement classes whose first use by a user is High: schema and privilege changes, file and
/// program access.
pub fn is_dangerous_class(class: &str) -> bool {
    const HIGH: &[&str] = &[
        "DROP",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COPY PROGRAM",
        "SELECT INTO OUTFILE",
        "SELECT FILE ACCESS",
        "LOAD DATA",
        "SET ROLE",
        "CREATE ROLE",
        "CREATE USER",
        "ALTER ROLE",
        "ALTER USER",
        "ALTER SYSTEM",
        "CREATE EXTENSION",
        "CREATE FUNCTION",
        "CREATE PROCEDURE",
    ];
    HIGH.iter()
        .any(|h| class == *h || class.starts_with(&format!("{h} ")))
}

/// Statement classes whose row count is rows read (not affected).
fn reads_rows(class: &str) -> bool {
    !matches!(
        class,
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "REPLACE" | "COPY FROM" | "LOAD DATA"
    )
}

fn weak_auth(method: &str) -> Option<FindingType> {
    match method.to_ascii_lowercase().as_str() {
        "cleartext" | "password" | "mysql_clear_password" | "dialog" | "pam" | "ldap" => {
            Some(FindingType::CleartextAuthentication)
        }
        "md5" => Some(FindingType::Md5Authentication),
        _ => None,
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

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        out: &mut Vec<Finding>,
        kind: FindingType,
        severity: Severity,
        actor_key: String,
        inst: &Inst,
        a: &Actor,
        user: Option<UserDetails>,
        title: String,
        description: String,
        evidence: Evidence,
    ) {
        let o = Observation {
            kind,
            severity,
            actor: actor_key,
            title,
            description,
            instance: inst.details.clone(),
            user,
            remote: Self::remote(a),
            logins: self.login_attributes(&inst.key, a.ip),
            evidence,
            ts_ns: self.now_ns,
        };
        if let Some(f) = self.log.report(o, self.now_ns) {
            out.push(f);
        }
    }

    fn on_login(&mut self, l: &LoginRecord, out: &mut Vec<Finding>) {
        self.stats.logins += 1;
        let now = self.wall(l.ts_ns);
        self.advance(now, out);
        let Some(ip) = client_ip(&l.endpoint.client) else {
            return;
        };
        let inst = self.instance(&l.endpoint.server, l.endpoint.protocol);
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
        let ipk = ip.to_string();

        // Threat intelligence and policy: always.
        // The two intel lists differ only in their finding types and wording.
        let hits: Vec<_> = [
            (
                self.malicious.lookup(ip),
                FindingType::MaliciousIpSuccessfulLogin,
                FindingType::MaliciousIpFailedLogin,
                "a known malicious IP address",
                "on the malicious list",
            ),
            (
                self.tor.lookup(ip),
                FindingType::TorSuccessfulLogin,
                FindingType::TorFailedLogin,
                "a Tor exit node",
                "a Tor exit node listed in",
            ),
        ]
        .into_iter()
        .filter_map(|(hit, yes, no, what, listed)| {
            hit.map(|(c, p)| {
                (
                    c.to_string(),
                    p.display().to_string(),
                    yes,
                    no,
                    what,
                    listed,
                )
            })
        })
        .collect();
        for (c, p, yes, no, what, listed) in hits {
            let (k, t) = if ok {
                (yes, "Successful login")
            } else {
                (no, "Failed login")
            };
            let desc = format!(
                "{ip} {verb} as {user} to database {db} on {id}; the address is {listed} {p} ({c})."
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("{t} from {what} to RDS DB instance {id}"),
                desc,
                Evidence::default(),
            );
        }
        if !self.allowed.is_empty() && !self.allowed.contains(ip) {
            let k = FindingType::OutsideAllowedNetworks;
            let sev = if ok { Severity::High } else { Severity::Medium };
            let desc = format!(
                "{ip} ({}) {verb} as {user} to {id}; it is outside the allowed client networks.",
                a.net
            );
            self.report(
                out,
                k,
                sev,
                ipk.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("Connection from outside the allowed networks to RDS DB instance {id}"),
                desc,
                Evidence::default(),
            );
        }
        if !l.tls
            && let Some(k) = weak_auth(&auth)
        {
            let sev = if k == FindingType::CleartextAuthentication && a.public {
                Severity::High
            } else {
                k.default_severity()
            };
            let what = if k == FindingType::Md5Authentication {
                "MD5 challenge-response, whose hash is replayable and crackable"
            } else {
                "a cleartext password"
            };
            let desc = format!(
                "{user} authenticated to {id} from {ip} with {auth} ({what}) on an unencrypted connection."
            );
            self.report(
                out,
                k,
                sev,
                user.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("Weak authentication ({auth}) on the wire to RDS DB instance {id}"),
                desc,
                Evidence {
                    reasons: vec![format!("auth method {auth} without TLS")],
                    ..Evidence::default()
                },
            );
        }

        // Patterns that need no baseline: brute force and spraying.
        let (users_failed, user_failures) = {
            let q = self
                .source_failures
                .entry((inst.key.clone(), ip))
                .or_default();
            let since = now.saturating_sub(th.failure_window_s * NS);
            while q.front().is_some_and(|(t, _)| *t < since) {
                q.pop_front();
            }
            if !ok {
                q.push_back((now, user.clone()));
            }
            let users: BTreeSet<String> = q.iter().map(|(_, u)| u.clone()).collect();
            let n = q.iter().filter(|(_, u)| *u == user).count();
            if ok && n >= th.brute_force_failures {
                q.retain(|(_, u)| *u != user);
            }
            (users, n)
        };
        if users_failed.len() >= th.spray_users {
            let k = FindingType::CredentialSpraying;
            let sev = if ok {
                Severity::High
            } else {
                k.default_severity()
            };
            let desc = format!(
                "{ip} failed to log in to {id} as {} different users in {} minutes{}.",
                users_failed.len(),
                th.failure_window_s / 60,
                if ok {
                    format!(", then logged in as {user}")
                } else {
                    String::new()
                }
            );
            self.report(
                out,
                k,
                sev,
                ipk.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("Credential spraying against RDS DB instance {id}"),
                desc,
                Evidence {
                    users: users_failed.iter().cloned().collect(),
                    ..Evidence::default()
                },
            );
        }
        if ok && user_failures >= th.brute_force_failures {
            let k = FindingType::SuccessfulBruteForce;
            let desc = format!(
                "{ip} logged in as {user} to database {db} on {id} after {user_failures} failed logins as {user} in {} minutes.",
                th.failure_window_s / 60
            );
            self.report(
                out,
                k,
                k.default_severity(),
                ipk.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("Successful login after a brute force attack on RDS DB instance {id}"),
                desc,
                Evidence {
                    reasons: vec![format!("{user_failures} failed logins before the success")],
                    ..Evidence::default()
                },
            );
        }
        let public_failures = {
            let q = self
                .public_failures
                .entry((inst.key.clone(), user.clone()))
                .or_default();
            prune(q, now.saturating_sub(th.public_failure_window_s * NS));
            if !ok && a.public {
                q.push_back(now);
            }
            q.len()
        };

        // Rates.
        let hour = now / (3600 * NS);
        let bump = |m: &mut HashMap<(String, String), (u64, u64)>, k: (String, String)| {
            let e = m.entry(k).or_insert((hour, 0));
            if e.0 != hour {
                *e = (hour, 0);
            }
            e.1 += 1;
            e.1
        };
        let net = a.net.to_string();
        let hour_count = if ok {
            bump(&mut self.hour_logins, (inst.key.clone(), user.clone()))
        } else {
            bump(&mut self.hour_failures, (inst.key.clone(), net.clone()))
        };

        let ib = self
            .baseline
            .instances
            .get_mut(&inst.key)
            .expect("created by learning()");
        if learning {
            let nb = ib.networks.entry(net.clone()).or_default();
            if ok {
                nb.logins += 1;
                nb.databases.insert(db.clone());
                let ub = ib.users.entry(user.clone()).or_default();
                ub.networks.insert(net.clone());
                if let Some(asn) = a.info.asn {
                    ub.asns.insert(asn);
                }
                if !app.is_empty() {
                    ub.applications.insert(app.clone());
                }
                ub.databases.insert(db.clone());
                ub.logins += 1;
                ub.max_logins_per_hour = ub.max_logins_per_hour.max(hour_count);
            } else {
                nb.failures += 1;
                nb.max_failures_per_hour = nb.max_failures_per_hour.max(hour_count);
                if let Some(ub) = ib.users.get_mut(&user) {
                    ub.failures += 1;
                }
            }
            return;
        }

        let limit =
            |factor: f64, learned: u64, min: u64| ((factor * learned as f64) as u64).max(min);
        let mut reasons = Vec::new();
        if ok {
            match ib.users.get_mut(&user) {
                None => reasons.push(format!(
                    "user {user} never logged in to this instance while learning"
                )),
                Some(ub) => {
                    ub.logins += 1;
                    let asn_known = a.info.asn.is_some_and(|n| ub.asns.contains(&n));
                    if !ub.networks.contains(&net) && !asn_known {
                        reasons.push(format!(
                            "first login of {user} from network {net}{}",
                            a.info.asn.map(|n| format!(" (AS{n})")).unwrap_or_default()
                        ));
                    }
                    if !app.is_empty() && !ub.applications.contains(&app) {
                        reasons.push(format!("application `{app}` never used by {user}"));
                    }
                    if !ub.databases.contains(&db) {
                        reasons.push(format!("database {db} never used by {user}"));
                    }
                    let lim = limit(
                        th.login_rate_factor,
                        ub.max_logins_per_hour,
                        th.login_rate_min,
                    );
                    if hour_count > lim {
                        reasons.push(format!(
                            "{hour_count} logins of {user} this hour (learned maximum {})",
                            ub.max_logins_per_hour
                        ));
                    }
                }
            }
            let new_edge = !ib
                .networks
                .get(&net)
                .is_some_and(|n| n.databases.contains(&db));
            if !reasons.is_empty() {
                let k = FindingType::AnomalousSuccessfulLogin;
                let pattern = public_failures >= th.public_failure_pattern;
                let sev = if pattern {
                    Severity::High
                } else if a.public {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                if pattern {
                    reasons.push(format!(
                        "follows {public_failures} failed logins as {user} from public addresses in the last {} minutes",
                        th.public_failure_window_s / 60
                    ));
                }
                let desc = format!(
                    "{ip} logged in as {user} to database {db} on {id} with `{app}`: {}.",
                    reasons.join("; ")
                );
                self.report(
                    out,
                    k,
                    sev,
                    ipk.clone(),
                    &inst,
                    &a,
                    ud.clone(),
                    format!("Unusual successful login to RDS DB instance {id}"),
                    desc,
                    Evidence {
                        reasons,
                        ..Evidence::default()
                    },
                );
            }
            if new_edge {
                let k = FindingType::NewClientEdge;
                let sev = if a.public {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                let desc = format!(
                    "First session from network {net} to database {db} on {id} ({ip} as {user})."
                );
                self.report(
                    out,
                    k,
                    sev,
                    format!("{net}|{db}"),
                    &inst,
                    &a,
                    ud,
                    format!("New client network for database {db} on RDS DB instance {id}"),
                    desc,
                    Evidence {
                        reasons: vec![format!("{net} → {db} never seen while learning")],
                        ..Evidence::default()
                    },
                );
            }
        } else {
            let nb = ib.networks.get(&net);
            match nb {
                None => reasons.push(format!("no login from network {net} while learning")),
                Some(nb) => {
                    let lim = limit(
                        th.failure_rate_factor,
                        nb.max_failures_per_hour,
                        th.failure_rate_min,
                    );
                    if hour_count > lim {
                        reasons.push(format!(
                            "{hour_count} failed logins from {net} this hour (learned maximum {})",
                            nb.max_failures_per_hour
                        ));
                    }
                }
            }
            if !ib.users.contains_key(&user) {
                reasons.push(format!(
                    "user {user} never logged in to this instance while learning"
                ));
            }
            if !reasons.is_empty() {
                let k = FindingType::AnomalousFailedLogin;
                let desc = format!(
                    "{ip} failed to log in as {user} to database {db} on {id}{}: {}.",
                    l.error_code
                        .as_deref()
                        .map(|c| format!(" (error {c})"))
                        .unwrap_or_default(),
                    reasons.join("; ")
                );
                self.report(
                    out,
                    k,
                    k.default_severity(),
                    ipk,
                    &inst,
                    &a,
                    ud,
                    format!("Unusual failed login to RDS DB instance {id}"),
                    desc,
                    Evidence {
                        reasons,
                        error_codes: l.error_code.iter().cloned().collect(),
                        ..Evidence::default()
                    },
                );
            }
        }
    }

    fn on_query(&mut self, q: &QueryRecord, out: &mut Vec<Finding>) {
        self.stats.queries += 1;
        let now = self.wall(q.ts_ns);
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
        let inst = self.instance(&q.endpoint.server, q.endpoint.protocol);
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let rows = if reads_rows(&class) {
            q.rows.unwrap_or(0)
        } else {
            0
        };
        let bytes = q.bytes_response;
        let fpk = fingerprint_key(&q.fingerprint);

        let win_ns = th.staging_window_s.max(1) * NS;
        let w = self
            .windows
            .entry((inst.key.clone(), user.clone(), ip))
            .or_default();
        if w.queries == 0 || now >= w.start_ns + win_ns {
            *w = Window {
                start_ns: now,
                ..Window::default()
            };
        }
        w.rows += rows;
        w.bytes += bytes;
        w.queries += 1;
        if w.fingerprints.len() < 10 && !w.fingerprints.contains(&q.fingerprint) {
            w.fingerprints.push(q.fingerprint.clone());
        }
        let w = w.clone();

        let ib = self
            .baseline
            .instances
            .get_mut(&inst.key)
            .expect("created by learning()");
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
        if drift {
            let k = FindingType::PrivilegeDrift;
            let sev = if is_dangerous_class(&class) {
                Severity::High
            } else {
                Severity::Medium
            };
            let desc = format!(
                "{user} ran {class} on {id} from {ip}{}, a statement class it never ran while learning.",
                q.error_code
                    .as_deref()
                    .map(|c| format!(" (refused: error {c})"))
                    .unwrap_or_default()
            );
            self.report(
                out,
                k,
                sev,
                user.clone(),
                &inst,
                &a,
                ud.clone(),
                format!("{user} ran {class} for the first time on RDS DB instance {id}"),
                desc,
                Evidence {
                    statement_classes: vec![class.clone()],
                    fingerprints: vec![q.fingerprint.clone()],
                    queries: Some(1),
                    error_codes: q.error_code.iter().cloned().collect(),
                    ..Evidence::default()
                },
            );
        }
        let over =
            |v: u64, base: u64, min: u64| v > ((th.staging_factor * base as f64) as u64).max(min);
        let why = |what: &str, rows: u64, bytes: u64, base: (u64, u64)| {
            let mut r = Vec::new();
            if over(rows, base.0, th.staging_min_rows) {
                r.push(format!("{rows} rows {what} (baseline {})", base.0));
            }
            if over(bytes, base.1, th.staging_min_bytes) {
                r.push(format!("{bytes} bytes {what} (baseline {})", base.1));
            }
            r
        };
        let mut reasons = why("in one response", rows, bytes, base_q);
        let (mut ev_rows, mut ev_bytes, mut ev_q, mut fps, mut base) =
            (rows, bytes, 1, vec![q.fingerprint.clone()], base_q);
        if reasons.is_empty() && !w.reported {
            reasons = why(
                &format!("in {} s", th.staging_window_s),
                w.rows,
                w.bytes,
                base_w,
            );
            (ev_rows, ev_bytes, ev_q, fps, base) =
                (w.rows, w.bytes, w.queries, w.fingerprints.clone(), base_w);
            if !reasons.is_empty()
                && let Some(w) = self.windows.get_mut(&(inst.key.clone(), user.clone(), ip))
            {
                w.reported = true;
            }
        }
        if !reasons.is_empty() {
            if !known_user {
                reasons.push(format!("{user} has no baseline on this instance"));
            }
            let k = FindingType::DataStaging;
            let desc = format!(
                "{ip} read {ev_rows} rows / {ev_bytes} bytes as {user} from {id}: {}.",
                reasons.join("; ")
            );
            self.report(
                out,
                k,
                k.default_severity(),
                format!("{user}@{ip}"),
                &inst,
                &a,
                ud,
                format!("Data staging: {user} read far more than usual from RDS DB instance {id}"),
                desc,
                Evidence {
                    reasons,
                    fingerprints: fps,
                    queries: Some(ev_q),
                    rows: Some(ev_rows),
                    bytes: Some(ev_bytes),
                    baseline_rows: Some(base.0),
                    baseline_bytes: Some(base.1),
                    statement_classes: vec![class],
                    ..Evidence::default()
                },
            );
        }
    }

    fn on_flow(&mut self, f: &FlowRecord, out: &mut Vec<Finding>) {
        self.stats.flows += 1;
        let now = self.wall(f.first_seen_ns + f.duration_us * 1000);
        self.advance(now, out);
        let Some(ip) = client_ip(&f.client) else {
            return;
        };
        let inst = self.instance(&f.server, f.protocol);
        let learning = self.learning(&inst.key, now);
        let th = self.opts.thresholds.clone();
        let had_login = self
            .conns
            .remove(&(f.client.clone(), f.server.clone()))
            .is_some();
        let complete = f.syn > 0 && !matches!(f.end, FlowEnd::EndOfCapture | FlowEnd::Shutdown);
        // A PostgreSQL CancelRequest is a 16-byte message on a connection of its own, unanswered.
        let cancel = f.protocol == "postgresql"
            && f.payload_bytes_to_server == 16
            && f.payload_bytes_to_client == 0;
        let probe = complete
            && !had_login
            && !cancel
            && f.payload_bytes_to_server <= th.probe_max_client_bytes;
        let a = self.actor(ip);
        let id = inst.details.db_instance_identifier.clone();
        let ipk = ip.to_string();
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
        if !had_login {
            if let Some((c, p)) = self.malicious.lookup(ip) {
                let k = FindingType::MaliciousIpDiscovery;
                let desc = format!(
                    "{ip}, on the malicious list {} ({c}), connected to {id} ({}) and {how}.",
                    p.display(),
                    f.server
                );
                self.report(
                    out,
                    k,
                    k.default_severity(),
                    ipk.clone(),
                    &inst,
                    &a,
                    None,
                    format!("RDS DB instance {id} probed by a known malicious IP address"),
                    desc,
                    ev.clone(),
                );
            }
            if let Some((c, p)) = self.tor.lookup(ip) {
                let k = FindingType::TorDiscovery;
                let desc = format!(
                    "{ip}, a Tor exit node ({c}, {}), connected to {id} ({}) and {how}.",
                    p.display(),
                    f.server
                );
                self.report(
                    out,
                    k,
                    k.default_severity(),
                    ipk.clone(),
                    &inst,
                    &a,
                    None,
                    format!("RDS DB instance {id} probed from a Tor exit node"),
                    desc,
                    ev.clone(),
                );
            }
            if !self.allowed.is_empty() && !self.allowed.contains(ip) {
                let k = FindingType::OutsideAllowedNetworks;
                let desc = format!(
                    "{ip} ({}) connected to {id} ({}) and {how}; it is outside the allowed client networks.",
                    a.net, f.server
                );
                self.report(
                    out,
                    k,
                    k.default_severity(),
                    ipk.clone(),
                    &inst,
                    &a,
                    None,
                    format!("Connection from outside the allowed networks to RDS DB instance {id}"),
                    desc,
                    ev.clone(),
                );
            }
        }
        let net = a.net.to_string();
        let ib = self
            .baseline
            .instances
            .get_mut(&inst.key)
            .expect("created by learning()");
        if learning {
            if listed {
                return;
            }
            if probe {
                ib.networks.entry(net).or_default().probes += 1;
            } else if complete && !had_login {
                ib.networks
                    .entry(net)
                    .or_default()
                    .databases
                    .insert("*".into());
            }
            return;
        }
        if probe && !listed {
            if ib.networks.get(&net).is_some_and(|n| n.probes > 0) {
                return;
            }
            let k = FindingType::PortProbe;
            let sev = if a.public {
                Severity::Medium
            } else {
                Severity::Low
            };
            let desc = format!(
                "{ip} connected to {id} ({}) and {how}; its network {net} never did that while learning.",
                f.server
            );
            self.report(
                out,
                k,
                sev,
                ipk,
                &inst,
                &a,
                None,
                format!("Unauthenticated connection probing RDS DB instance {id}"),
                desc,
                ev,
            );
        } else if complete && !had_login && !probe && !listed && !ib.networks.contains_key(&net) {
            let k = FindingType::NewClientEdge;
            let sev = if a.public {
                Severity::Medium
            } else {
                Severity::Low
            };
            let desc = format!("First session from network {net} to {id} ({ip}; {how}).");
            self.report(
                out,
                k,
                sev,
                format!("{net}|*"),
                &inst,
                &a,
                None,
                format!("New client network for RDS DB instance {id}"),
                desc,
                Evidence {
                    reasons: vec![format!("{net} never reached {id} while learning")],
                    ..ev
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
