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
//! | `CredentialAccess:RDS/IamAuthentication.StaticPassword` | High if it succeeded, else Low private / Medium public | a static-password login by a user that logged in only with IAM tokens while learning |
//! | `Policy:RDS/IamAuthentication.Required` | Medium if it succeeded, else Low | a static-password login from `--iam-required-cidr` |
//! | `CredentialAccess:RDS/IamAuthentication.ExpiredToken` | High if it succeeded, else Low private / Medium public | an IAM token presented after its expiry |
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
//! | `iam_auth.rs` | `IamAuthentication.StaticPassword` / `.Required` / `.ExpiredToken` |
//! | `port_probe.rs` | `PortProbe.Unauthenticated`, `NewClientEdge` of a session without a readable login |
//! | `privilege_drift.rs` | `PrivilegeDrift` (and the statement classes it compares) |
//! | `data_staging.rs` | `DataStaging` |
//!
//! Beside the families:
//!
//! | file | holds |
//! |---|---|
//! | `observe.rs` | the dispatch: each record's context built once, then handed to the families in turn |
//! | `context.rs` | what the families are handed: the client ([`Actor`](context::Actor)), the login, query and flow contexts |
//! | `report.rs` | how a family reports a finding (client details, login tallies, deduplication) |
//! | `state.rs` | what is remembered per connection and per client (logins, failures, rates, windows), and for how long |
//! | `instances.rs` | server address → database instance (`--instance-map`), engine |
//! | `learning.rs` | the learning period, access to an instance's baseline, saving it |
//! | `upkeep.rs` | SIGHUP reload, the once-a-second advance of detection time |
//! | `thresholds.rs` | the [`Thresholds`] of the pattern and volume rules |
//!
//! This module holds the public surface: the [`Detector`], its options and figures, and the
//! entry points (records, ticks, the end).

pub mod args;
pub mod baseline;
mod brute_force;
mod context;
mod data_staging;
pub mod enrich;
pub mod finding;
mod iam_auth;
mod instances;
pub mod intel;
mod intel_callers;
mod learning;
mod login_anomaly;
#[cfg(test)]
pub(crate) mod mmdb_write;
mod observe;
mod port_probe;
mod privilege_drift;
mod report;
mod state;
mod thresholds;
mod tls;
mod unallowed_network;
mod upkeep;
mod weak_auth;

pub use args::DetectArgs;
pub use finding::{Finding, FindingType, Severity};
pub use privilege_drift::{is_dangerous_class, statement_class};
pub use thresholds::Thresholds;

use crate::model::{Clock, Record};
use anyhow::Result;
use baseline::{Baseline, BaselineStore};
use enrich::{AsnDb, InstanceMap};
use finding::FindingLog;
use instances::Inst;
use intel::{Cidr, CidrSet, Lists};
use state::{Conn, FailureLog, LoginCounts, Window};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;

const NS: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct DetectorOptions {
    /// Seconds after an instance's first record during which anomalies are learned.
    pub learning_period_s: u64,
    /// Baseline file: loaded at start, saved every `save_every_s` and at the end.
    pub baseline: Option<PathBuf>,
    pub save_every_s: u64,
    /// Repeats of a finding are emitted as an update at most this often.
    pub update_every_s: u64,
    /// A finding without a new occurrence for this long has ended, and is archived.
    pub archive_after_s: u64,
    pub malicious_lists: Vec<PathBuf>,
    pub tor_lists: Vec<PathBuf>,
    /// Client networks the security group should allow; empty: no policy.
    pub allowed: Vec<Cidr>,
    /// Client networks that are to authenticate with IAM tokens; empty: no policy.
    pub iam_required: Vec<Cidr>,
    pub instance_map: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
    pub thresholds: Thresholds,
    /// Key logs are configured: TLS sessions without keys are worth a finding when most are.
    pub tls_keys_expected: bool,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            learning_period_s: 14 * 24 * 3600,
            baseline: None,
            save_every_s: 300,
            update_every_s: 60,
            archive_after_s: 24 * 3600,
            malicious_lists: Vec::new(),
            tor_lists: Vec::new(),
            allowed: Vec::new(),
            iam_required: Vec::new(),
            instance_map: None,
            asn_db: None,
            thresholds: Thresholds::default(),
            tls_keys_expected: false,
        }
    }
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

pub struct Detector {
    opts: DetectorOptions,
    clock: Clock,
    baseline: Baseline,
    store: Option<BaselineStore>,
    last_save_ns: u64,
    malicious: Lists,
    tor: Lists,
    allowed: CidrSet,
    iam_required: CidrSet,
    instances: InstanceMap,
    inst_cache: HashMap<String, Inst>,
    /// The [`crate::aggregate::discovered`] generation `inst_cache` was made under.
    discovered_generation: u64,
    asn: Option<AsnDb>,
    log: FindingLog,
    now_ns: u64,
    /// The connection of the record being observed: a finding it raises names it.
    conn_id: Option<crate::model::ConnId>,
    last_tick_ns: u64,
    conns: HashMap<(String, String), Conn>,
    source_failures: HashMap<(String, IpAddr), FailureLog>,
    /// Successful logins per (instance, address) within the failure window.
    source_successes: HashMap<(String, IpAddr), FailureLog>,
    public_failures: HashMap<(String, String), VecDeque<u64>>,
    hour_logins: HashMap<(String, String), (u64, u64)>,
    hour_failures: HashMap<(String, String), (u64, u64)>,
    windows: HashMap<(String, String, IpAddr), Window>,
    login_counts: HashMap<(String, IpAddr), LoginCounts>,
    /// A TLS session's JA4 until its login, and what each instance's TLS looked like.
    conn_ja4: HashMap<(String, String), (String, u64)>,
    tls_seen: HashMap<String, tls::TlsSeen>,
    pub stats: DetectorStats,
}

impl Detector {
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
        let mut baseline = store
            .as_ref()
            .map_or_else(Baseline::new, |s| s.load().baseline);
        let mut opts = opts;
        learning::reconcile(&mut baseline, &mut opts, &instances);
        let mut log = FindingLog::new(opts.update_every_s.saturating_mul(NS));
        log.archive_after_ns = opts.archive_after_s.saturating_mul(NS);
        Ok(Self {
            allowed: opts.allowed.iter().copied().collect(),
            iam_required: opts.iam_required.iter().copied().collect(),
            opts,
            clock,
            baseline,
            store,
            last_save_ns: 0,
            malicious,
            tor,
            instances,
            inst_cache: HashMap::new(),
            discovered_generation: 0,
            asn,
            log,
            now_ns: 0,
            conn_id: None,
            last_tick_ns: 0,
            conns: HashMap::new(),
            source_failures: HashMap::new(),
            source_successes: HashMap::new(),
            public_failures: HashMap::new(),
            hour_logins: HashMap::new(),
            hour_failures: HashMap::new(),
            windows: HashMap::new(),
            login_counts: HashMap::new(),
            conn_ja4: HashMap::new(),
            tls_seen: HashMap::new(),
            stats: DetectorStats::default(),
        })
    }

    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Feeds one record; findings (new ones and due updates) are appended to `out`.
    pub fn observe(&mut self, record: &Record, out: &mut Vec<Finding>) {
        let before = out.len();
        self.conn_id = match record {
            Record::Login(l) => Some(l.endpoint.conn_id),
            Record::Query(q) => Some(q.endpoint.conn_id),
            Record::Flow(f) => Some(f.endpoint.conn_id),
            Record::Tls(t) => Some(t.endpoint.conn_id),
            _ => None,
        };
        match record {
            Record::Login(l) => self.on_login(l, out),
            Record::Query(q) => self.on_query(q, out),
            Record::Flow(f) => self.on_flow(f, out),
            Record::Tls(t) => self.on_tls(t, out),
            _ => {}
        }
        self.conn_id = None;
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
}

#[cfg(test)]
mod tests;
