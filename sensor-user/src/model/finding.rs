//! Findings in the shape of Amazon GuardDuty's RDS Protection findings, with the evidence the
//! packets add. Our records name every field in snake_case, as all our records do; what goes
//! to AWS as a GuardDuty-shaped event (EventBridge) takes GuardDuty's own names
//! ([`Finding::guardduty_json`]).

use super::{ConnId, Timestamp};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// GuardDuty's numbers: Low 1.0–3.9, Medium 4.0–6.9, High 7.0–8.9.
    pub fn number(self) -> f64 {
        match self {
            Self::Low => 2.0,
            Self::Medium => 5.0,
            Self::High => 8.0,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
        }
    }
}

/// `resource.rdsDbInstanceDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct InstanceDetails {
    pub db_instance_identifier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_cluster_identifier: Option<String>,
    pub engine: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_instance_arn: Option<String>,
    pub tags: Vec<Tag>,
    /// The server address the sensor saw (not a GuardDuty field).
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// `resource.rdsDbUserDetails`. GuardDuty gives every field as a string.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct UserDetails {
    pub user: String,
    pub application: String,
    pub database: String,
    pub ssl: String,
    pub auth_method: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Resource {
    pub resource_type: &'static str,
    pub rds_db_instance_details: InstanceDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds_db_user_details: Option<UserDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Organization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Country {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
}

/// `service.action.rdsLoginAttemptAction.remoteIpDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct RemoteIpDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address_v6: Option<String>,
    pub organization: Organization,
    pub country: Country,
    /// Not GuardDuty fields: the client network the baseline keys on, whether the address is
    /// public, and the threat-list entries it matched.
    pub network: String,
    pub public: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threat_lists: Vec<String>,
}

impl RemoteIpDetails {
    /// The address, or `-` when the finding has none.
    pub fn ip(&self) -> &str {
        self.ip_address_v4
            .as_deref()
            .or(self.ip_address_v6.as_deref())
            .unwrap_or("-")
    }
}

/// One element of `LoginAttributes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct LoginAttribute {
    pub user: String,
    pub application: String,
    pub failed_login_attempts: u64,
    pub successful_login_attempts: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct RdsLoginAttemptAction {
    pub remote_ip_details: RemoteIpDetails,
    pub login_attributes: Vec<LoginAttribute>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Action {
    pub action_type: &'static str,
    pub rds_login_attempt_action: RdsLoginAttemptAction,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Service {
    pub service_name: &'static str,
    pub action: Action,
    pub event_first_seen: Timestamp,
    pub event_last_seen: Timestamp,
    pub count: u64,
    pub archived: bool,
}

/// What the packets showed: statement classes, fingerprints, volumes, why it is unusual.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Evidence {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statement_classes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flow_ends: Vec<String>,
}

const LIST_MAX: usize = 20;

fn union(into: &mut Vec<String>, from: &[String]) {
    for s in from {
        if into.len() >= LIST_MAX {
            break;
        }
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}

fn add(into: &mut Option<u64>, from: Option<u64>) {
    if let Some(f) = from {
        *into = Some(into.unwrap_or(0).saturating_add(f));
    }
}

impl Evidence {
    /// Evidence that is only its reasons.
    pub fn with_reasons(reasons: Vec<String>) -> Self {
        Evidence {
            reasons,
            ..Evidence::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Folds a repeat's evidence in: lists are united (bounded), totals added, baselines kept.
    pub fn merge(&mut self, o: &Evidence) {
        union(&mut self.reasons, &o.reasons);
        union(&mut self.statement_classes, &o.statement_classes);
        union(&mut self.fingerprints, &o.fingerprints);
        union(&mut self.users, &o.users);
        union(&mut self.error_codes, &o.error_codes);
        union(&mut self.flow_ends, &o.flow_ends);
        add(&mut self.queries, o.queries);
        add(&mut self.rows, o.rows);
        add(&mut self.bytes, o.bytes);
        add(&mut self.connections, o.connections);
        if o.baseline_rows.is_some() {
            self.baseline_rows = o.baseline_rows;
        }
        if o.baseline_bytes.is_some() {
            self.baseline_bytes = o.baseline_bytes;
        }
    }
}

/// Who the finding was about when it was first seen: an update shows the latest actor in
/// `service` and `resource`, and keeps this.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FirstActor {
    pub ts: Timestamp,
    /// The client address, `-` when the finding has none.
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<ConnId>,
}

/// The connections a finding saw at most (their `conn_id`s join it to the flow, login and
/// query records); the first ones are kept.
pub const FINDING_CONN_IDS_MAX: usize = 20;

/// A finding, serialised as `{"kind":"finding", …}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Finding {
    /// When this version of the finding was made (`updated_at`).
    pub ts: Timestamp,
    pub schema_version: &'static str,
    /// Stable for one type + actor + resource: updates of a finding keep its id.
    pub id: String,
    #[serde(rename = "type")]
    pub finding_type: &'static str,
    pub severity: f64,
    pub severity_label: &'static str,
    pub title: String,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub resource: Resource,
    pub service: Service,
    pub recommended_response: &'static [&'static str],
    #[serde(skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
    pub first_actor: FirstActor,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conn_ids: Vec<ConnId>,
}

impl Finding {
    /// The finding as AWS services take a GuardDuty-shaped event: every object key in
    /// GuardDuty's camelCase (`rdsDbInstanceDetails`, `ipAddressV4`, and its one exception,
    /// `LoginAttributes`).
    pub fn guardduty_json(&self) -> serde_json::Value {
        fn camel(k: &str) -> String {
            if k == "login_attributes" {
                return "LoginAttributes".to_string();
            }
            let mut out = String::with_capacity(k.len());
            let mut up = false;
            for c in k.chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.extend(c.to_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
        fn walk(v: serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(m) => serde_json::Value::Object(
                    m.into_iter().map(|(k, v)| (camel(&k), walk(v))).collect(),
                ),
                serde_json::Value::Array(a) => {
                    serde_json::Value::Array(a.into_iter().map(walk).collect())
                }
                v => v,
            }
        }
        // Plain data: serialising it cannot fail.
        let mut v = walk(serde_json::to_value(self).unwrap_or_default());
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), "finding".into());
        }
        v
    }
}
