//! The scenarios and their labels: the attacks, which finding types each must yield (and at
//! which severity), which others it legitimately yields, the attacks mixed into `mixed.pcap`,
//! and `labels.json`, which tells the scorer all of it and the options to analyze with.

use super::lab::{BRUTE, BRUTE_USERS, MALICIOUS, MALICIOUS2, MSSQL_BRUTE, SYN_SCANNER, TOR_EXIT};
use super::timeline::{SLOT_S, T0};

/// What the scorer passes as --learning-period.
const LEARNING_S: u64 = 7200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Attack {
    BruteForce,
    Spray,
    Scan,
    Exfiltration,
    PrivilegeDrift,
    Tor,
    Malicious,
    WeakAuth,
    MssqlBruteForce,
    BruteForceUsers,
    SprayEarly,
}

const ANOMALOUS_OK: &str = "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin";
const ANOMALOUS_FAIL: &str = "CredentialAccess:RDS/AnomalousBehavior.FailedLogin";
const BRUTE_FORCE: &str = "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce";
const MAL_OK: &str = "CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin";
const MAL_FAIL: &str = "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin";
const MAL_DISC: &str = "Discovery:RDS/MaliciousIPCaller";
const TOR_OK: &str = "CredentialAccess:RDS/TorIPCaller.SuccessfulLogin";
const TOR_FAIL: &str = "CredentialAccess:RDS/TorIPCaller.FailedLogin";
const TOR_DISC: &str = "Discovery:RDS/TorIPCaller";
const STAGING: &str = "Exfiltration:RDS/AnomalousBehavior.DataStaging";
const DRIFT: &str = "PrivilegeEscalation:RDS/AnomalousBehavior.PrivilegeDrift";
const SPRAY: &str = "CredentialAccess:RDS/CredentialSpraying.ManyUsers";
const PROBE: &str = "Discovery:RDS/PortProbe.Unauthenticated";
const CLEARTEXT: &str = "CredentialAccess:RDS/WeakAuthentication.Cleartext";
const MD5: &str = "CredentialAccess:RDS/WeakAuthentication.MD5";
const UNALLOWED: &str = "Policy:RDS/UnallowedNetwork.Connection";
const NEW_EDGE: &str = "InitialAccess:RDS/AnomalousBehavior.NewClientEdge";

impl Attack {
    pub(super) const ALL: [Attack; 11] = [
        Self::BruteForce,
        Self::Spray,
        Self::Scan,
        Self::Exfiltration,
        Self::PrivilegeDrift,
        Self::Tor,
        Self::Malicious,
        Self::WeakAuth,
        Self::MssqlBruteForce,
        Self::BruteForceUsers,
        Self::SprayEarly,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::BruteForce => "bruteforce",
            Self::Spray => "spray",
            Self::Scan => "scan",
            Self::Exfiltration => "exfiltration",
            Self::PrivilegeDrift => "privilege-drift",
            Self::Tor => "tor",
            Self::Malicious => "malicious",
            Self::WeakAuth => "weakauth",
            Self::MssqlBruteForce => "mssql-bruteforce",
            Self::BruteForceUsers => "bruteforce-users",
            Self::SprayEarly => "spray-early",
        }
    }

    pub(super) fn file(self) -> String {
        match self {
            Self::WeakAuth => "policy-weakauth.pcap".into(),
            a => format!("attack-{}.pcap", a.name()),
        }
    }

    pub(super) fn description(self) -> &'static str {
        match self {
            Self::BruteForce => {
                "12 wrong passwords for app_orders from the public address 89.160.20.112 with psql, then the right one and two queries"
            }
            Self::Spray => {
                "203.0.113.66 tries one password for 6 users on PostgreSQL and 4 on MariaDB"
            }
            Self::Scan => {
                "203.0.113.77 connects and closes (nc -z) to 5432, 1433, 1521, 3306; 89.160.20.129 sends half-open SYNs"
            }
            Self::Exfiltration => {
                "app_orders, from an application host with the application's name, reads the whole customers table (8000 rows)"
            }
            Self::PrivilegeDrift => {
                "app_orders issues DELETE, DROP TABLE, GRANT and COPY TO PROGRAM; billing_app DELETE, DROP, GRANT (refused)"
            }
            Self::Tor => {
                "185.220.101.7 (on the Tor exit list) probes, fails a login, then logs in as app_orders"
            }
            Self::Malicious => {
                "45.155.205.33 (malicious list) probes both instances and fails logins; 45.155.205.34 logs in as app_orders"
            }
            Self::WeakAuth => {
                "legacy_md5 (md5) and kiosk (cleartext password) log in from the reporting host"
            }
            Self::MssqlBruteForce => {
                "SQL Server (crm-sqlserver-1, TDS): crm_app logs in with tsql from the CRM host; then nmap 7.93 ms-sql-brute from the public address 89.160.20.150 tries sa with 10 wrong passwords (11 logins failing with 18456, the first with the user name as password), then the right one. The instance is not in benign.pcap, so it is still learning: no anomaly findings, only the brute force"
            }
            Self::BruteForceUsers => {
                "MariaDB (billing-mariadb-1): from the public address 89.160.20.113, 2 mariadb client connections refused before the greeting (1130, host not allowed: billing_app was then limited to 198.51.100.%); then, with billing_app back on '%' and a root@'%' with a weak password (account changes over the Unix socket, not captured), medusa 2.2 (mysql module, -t 1, a combo file) fails 3 times as root_nope (no such user) and 3 times as root (1045), then logs in as root: 6 failures across 2 users, fewer than 5 for either"
            }
            Self::SprayEarly => {
                "MariaDB (billing-mariadb-1): 203.0.113.67 sprays one password (billing_app's) with medusa 2.2 (mysql module, -t 1) over 7 users in order root, admin, billing_app, backup, reporting, dba, app_orders: the 3rd login (billing_app) succeeds, the other 6 fail (1045), so the spray threshold (4 users) is crossed after the success"
            }
        }
    }

    /// Finding types the file must yield (recall), and severities that must be reached.
    fn expect(
        self,
    ) -> (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ) {
        match self {
            Self::BruteForce => (
                &[BRUTE_FORCE, ANOMALOUS_OK, ANOMALOUS_FAIL, NEW_EDGE],
                &[
                    (BRUTE_FORCE, "High"),
                    (ANOMALOUS_OK, "High"),
                    (ANOMALOUS_FAIL, "Low"),
                    (NEW_EDGE, "Medium"),
                ],
            ),
            // The instance is not in benign.pcap: its learning period starts with this capture,
            // so only the patterns that need no baseline are reported.
            Self::MssqlBruteForce => (&[BRUTE_FORCE], &[(BRUTE_FORCE, "High")]),
            // Failures spread over users, each under the per-user threshold, then a success: a
            // brute force by the attacker's count across users.
            Self::BruteForceUsers => (
                &[BRUTE_FORCE, ANOMALOUS_FAIL],
                &[(BRUTE_FORCE, "High"), (ANOMALOUS_FAIL, "Low")],
            ),
            // A sprayed login that succeeds makes the spray High, wherever it falls in the window.
            Self::SprayEarly => (
                &[SPRAY, ANOMALOUS_FAIL],
                &[(SPRAY, "High"), (ANOMALOUS_FAIL, "Low")],
            ),
            Self::Spray => (
                &[SPRAY, ANOMALOUS_FAIL],
                &[(SPRAY, "Medium"), (ANOMALOUS_FAIL, "Low")],
            ),
            Self::Scan => (
                &[PROBE, UNALLOWED],
                &[(PROBE, "Medium"), (UNALLOWED, "Medium")],
            ),
            Self::Exfiltration => (&[STAGING], &[(STAGING, "High")]),
            Self::PrivilegeDrift => (&[DRIFT], &[(DRIFT, "High")]),
            Self::Tor => (
                &[TOR_OK, TOR_FAIL, TOR_DISC],
                &[(TOR_OK, "High"), (TOR_FAIL, "Medium"), (TOR_DISC, "Medium")],
            ),
            Self::Malicious => (
                &[MAL_OK, MAL_FAIL, MAL_DISC],
                &[(MAL_OK, "High"), (MAL_FAIL, "Medium"), (MAL_DISC, "Medium")],
            ),
            Self::WeakAuth => (&[MD5, CLEARTEXT], &[(MD5, "Low"), (CLEARTEXT, "Medium")]),
        }
    }

    /// Other findings the file legitimately yields (not false positives), and why.
    fn also(self) -> &'static [(&'static str, &'static str)] {
        const OUTSIDE: &str =
            "the client is outside the allowed networks (198.51.100.0/24, 2001:db8:100::/64)";
        const NEW_NET: &str = "a network that never reached the instance";
        match self {
            Self::BruteForce | Self::Spray | Self::MssqlBruteForce => &[(UNALLOWED, OUTSIDE)],
            Self::BruteForceUsers | Self::SprayEarly => &[
                (ANOMALOUS_OK, "a login from a network the user never used"),
                (NEW_EDGE, NEW_NET),
                (UNALLOWED, OUTSIDE),
            ],
            Self::Scan => &[],
            Self::Tor | Self::Malicious => &[
                (ANOMALOUS_OK, "a login from a network the user never used"),
                (ANOMALOUS_FAIL, "failed logins from a network never seen"),
                (NEW_EDGE, NEW_NET),
                (UNALLOWED, OUTSIDE),
            ],
            Self::WeakAuth => &[(ANOMALOUS_OK, "users that never logged in while learning")],
            Self::Exfiltration | Self::PrivilegeDrift => &[],
        }
    }
}

/// The attacks of mixed.pcap and the slot (of its twelve) each starts in.
pub(super) const MIXED_ATTACKS: &[(u64, Attack)] = &[
    (1, Attack::Spray),
    (3, Attack::BruteForce),
    (4, Attack::Scan),
    (6, Attack::Exfiltration),
    (7, Attack::PrivilegeDrift),
    (9, Attack::Tor),
    (10, Attack::Malicious),
];

pub(super) fn labels(benign_slots: u64) -> serde_json::Value {
    use serde_json::json;
    let attack = |a: Attack, file: String, start_s: u64| {
        let (expect, sev) = a.expect();
        json!({
            "file": file,
            "kind": "attack",
            "attacks": [a.name()],
            "description": a.description(),
            "starts_at_s": start_s,
            "expect": expect,
            "severity": sev.iter().map(|(t, s)| json!({"type": t, "at_least": s})).collect::<Vec<_>>(),
            "also": a.also().iter().map(|(t, why)| json!({"type": t, "why": why})).collect::<Vec<_>>(),
        })
    };
    let mut scenarios = vec![json!({
        "file": "benign.pcap",
        "kind": "benign",
        "description": format!(
            "{benign_slots} slots of 5 minutes ({} h) of normal business: orders-api pool (2 connections on 3 hosts, one IPv6), billing on MariaDB, health checks, reporting every 15 min, the DBA hourly with an occasional typo",
            benign_slots as f64 * SLOT_S as f64 / 3600.0
        ),
        "expect": [],
        "also": [],
    })];
    let alone_at = benign_slots * SLOT_S + 1800;
    for a in Attack::ALL {
        scenarios.push(attack(a, a.file(), alone_at));
    }
    let mut expect: Vec<&str> = Vec::new();
    let mut also: Vec<serde_json::Value> = Vec::new();
    let mut sev = Vec::new();
    for a in MIXED_ATTACKS.iter().map(|(_, a)| *a) {
        let (e, s) = a.expect();
        for t in e {
            if !expect.contains(t) {
                expect.push(t);
            }
        }
        for (t, l) in s {
            sev.push(json!({"type": t, "at_least": l}));
        }
        for (t, why) in a.also() {
            if !also.iter().any(|v| v["type"] == *t) {
                also.push(json!({"type": t, "why": why}));
            }
        }
    }
    also.retain(|v| !expect.iter().any(|e| v["type"] == *e));
    scenarios.push(json!({
        "file": "mixed.pcap",
        "kind": "mixed",
        "attacks": MIXED_ATTACKS.iter().map(|(_, a)| a.name()).collect::<Vec<_>>(),
        "description": "one more hour of the benign workload with the attacks mixed in, one every few slots",
        "starts_at_s": benign_slots * SLOT_S,
        "expect": expect,
        "severity": sev,
        "also": also,
    }));
    json!({
        "t0": T0,
        "t0_rfc3339": "2025-03-06T08:00:00Z",
        "slot_s": SLOT_S,
        "how_to_score": "analyze benign.pcap with a fresh --baseline and the options below; then each other file with a copy of the baseline it left. A finding whose type is neither in `expect` nor in `also` is a false positive; benign.pcap must yield none.",
        "options": {
            "learning_period_s": LEARNING_S,
            "allowed_cidrs": ["198.51.100.0/24", "2001:db8:100::/64"],
            "malicious_ips": "malicious-ips.txt",
            "tor_exits": "tor-exits.txt",
            "instance_map": "instances.json",
            "public_addresses": [BRUTE, SYN_SCANNER, TOR_EXIT, MALICIOUS, MALICIOUS2, MSSQL_BRUTE, BRUTE_USERS],
        },
        "scenarios": scenarios,
    })
}
