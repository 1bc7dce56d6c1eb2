//! A finding in the AWS Security Finding Format (ASFF), independent of the SDK's types: what
//! `--metrics-sink stdout` prints and what the request size is measured on; the sender
//! converts it one to one. Pure: no I/O, no clock.

use rds_sensor::model::{Finding, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: &str = "2018-10-08";
pub const PRODUCT_NAME: &str = "rds-sensor";
/// Security Hub's limits (ASFF and BatchImportFindings).
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 1024;
pub const RECOMMENDATION_MAX: usize = 512;
pub const FIELD_KEY_MAX: usize = 128;
pub const FIELD_VALUE_MAX: usize = 2048;
pub const TAG_VALUE_MAX: usize = 256;
/// ProductFields takes 50 entries, and Security Hub adds its own `aws/securityhub/…` ones
/// (FindingId, ProductName, CompanyName) to what a provider sends: ours stop short of that.
pub const PRODUCT_FIELDS_MAX: usize = 45;
pub const BATCH_FINDINGS: usize = 100;
/// Security Hub refuses a finding over 240 KB; ours are measured as the JSON the SDK writes,
/// which differs from the wire in escaping only, so a margin of a few KB is kept.
pub const FINDING_MAX_BYTES: usize = 235_000;
/// Security Hub takes 6 MB per BatchImportFindings call; 5 MB leaves room for the envelope,
/// escaping differences and the signature headers.
pub const BATCH_MAX_BYTES: usize = 5_000_000;

/// ProductFields keys of the evidence: what trimming drops first.
const EVIDENCE: &str = "rds-sensor/evidence/";

/// Where the findings go: the account and region of the custom integration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub company_name: String,
}

impl Target {
    /// The default product of a custom integration: every account has it once Security Hub
    /// is enabled.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{}:securityhub:{}:{}:product/{}/default",
            self.partition, self.region, self.account, self.account
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub product_name: &'static str,
    pub company_name: String,
    pub generator_id: String,
    pub aws_account_id: String,
    pub types: Vec<String>,
    pub first_observed_at: String,
    pub last_observed_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub severity: Severity,
    /// Security Hub lets a provider update Severity and Types only through these.
    pub finding_provider_fields: ProviderFields,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
    pub product_fields: BTreeMap<String, String>,
    pub resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub record_state: &'static str,
    pub workflow: Workflow,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Severity {
    pub label: &'static str,
    pub normalized: i32,
    pub original: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderFields {
    pub severity: ProviderSeverity,
    pub types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderSeverity {
    pub label: &'static str,
    pub original: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Remediation {
    pub recommendation: Recommendation,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recommendation {
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: String,
    pub region: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    pub details: ResourceDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceDetails {
    #[serde(rename = "AwsRdsDbInstance")]
    pub rds: RdsDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RdsDetails {
    pub db_instance_identifier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_cluster_identifier: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub direction: &'static str,
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_v6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_ip_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_ip_v6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Action {
    pub action_type: &'static str,
    pub network_connection_action: ConnectionAction,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionAction {
    pub connection_direction: &'static str,
    pub protocol: &'static str,
    pub remote_ip_details: RemoteIp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_port_details: Option<LocalPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoteIp {
    /// ASFF has no IPv6 member here: a v6 client is in Network.SourceIpV6 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Organization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Country {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalPort {
    pub port: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Workflow {
    pub status: &'static str,
}

/// ASFF's `namespace/category` for a finding type's ThreatPurpose (before the `:`).
/// Types to come (`CredentialAccess:RDS/IamAuthentication…`) reuse their purpose's mapping;
/// a purpose never seen is still an unusual database behaviour.
pub fn type_category(finding_type: &str) -> &'static str {
    let purpose = finding_type.split(':').next().unwrap_or("");
    match purpose {
        "CredentialAccess" => "TTPs/Credential Access",
        "Discovery" | "Recon" => "TTPs/Discovery",
        "Exfiltration" => "Effects/Data Exfiltration",
        "PrivilegeEscalation" => "TTPs/Privilege Escalation",
        "InitialAccess" | "UnauthorizedAccess" => "TTPs/Initial Access",
        "DefenseEvasion" | "Stealth" => "TTPs/Defense Evasion",
        "Persistence" => "TTPs/Persistence",
        "Execution" => "TTPs/Execution",
        "Collection" => "TTPs/Collection",
        "Impact" => "Effects/Data Destruction",
        "Policy" | "Operational" => "Software and Configuration Checks/AWS Security Best Practices",
        _ => "Unusual Behaviors/Database",
    }
}

/// `namespace/category/classifier`, the classifier being the type with `/` as `-` (as
/// GuardDuty's own integration writes them: a `/` would make a fourth level).
pub fn asff_type(finding_type: &str) -> String {
    format!(
        "{}/{}",
        type_category(finding_type),
        cut(&finding_type.replace('/', "-"), 100)
    )
}

/// At most `max` characters, on a character boundary, marked with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// RFC 3339 with milliseconds, as ASFF wants its dates.
pub fn rfc3339(t: Timestamp) -> String {
    let d = std::time::Duration::from_nanos(t.ns());
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + d).to_string()
}

/// `ip:port`, `[v6]:port`, or a bare address.
fn split_address(a: &str) -> (Option<std::net::IpAddr>, Option<u16>) {
    if let Ok(s) = a.parse::<std::net::SocketAddr>() {
        return (Some(s.ip()), Some(s.port()));
    }
    (a.trim_matches(['[', ']']).parse().ok(), None)
}

/// `arn:PARTITION:rds:REGION:…`'s partition and region.
fn arn_place(arn: &str) -> Option<(&str, &str)> {
    let mut p = arn.split(':');
    let (_, partition, _, region) = (p.next()?, p.next()?, p.next()?, p.next()?);
    (!partition.is_empty() && !region.is_empty()).then_some((partition, region))
}

fn none_if_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// The ProductFields entry, bounded as ASFF bounds them.
fn field(fields: &mut BTreeMap<String, String>, key: String, value: String) {
    if value.is_empty() || fields.len() >= PRODUCT_FIELDS_MAX {
        return;
    }
    fields.insert(cut(&key, FIELD_KEY_MAX), cut(&value, FIELD_VALUE_MAX));
}

/// The actor (who, from where, how often) first, then the evidence, which trimming drops.
fn product_fields(f: &Finding) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let p = "rds-sensor/";
    if let Some(u) = &f.resource.rds_db_user_details {
        for (k, v) in [
            ("DbUser", &u.user),
            ("Application", &u.application),
            ("Database", &u.database),
            ("AuthMethod", &u.auth_method),
            ("Ssl", &u.ssl),
        ] {
            field(&mut m, format!("{p}{k}"), v.clone());
        }
    }
    let action = &f.service.action.rds_login_attempt_action;
    let (failed, ok) = action
        .login_attributes
        .iter()
        .fold((0u64, 0u64), |(a, b), l| {
            (
                a.saturating_add(l.failed_login_attempts),
                b.saturating_add(l.successful_login_attempts),
            )
        });
    field(&mut m, format!("{p}Count"), f.service.count.to_string());
    if !action.login_attributes.is_empty() {
        field(
            &mut m,
            format!("{p}FailedLoginAttempts"),
            failed.to_string(),
        );
        field(
            &mut m,
            format!("{p}SuccessfulLoginAttempts"),
            ok.to_string(),
        );
    }
    let ip = &action.remote_ip_details;
    field(&mut m, format!("{p}ClientNetwork"), ip.network.clone());
    field(&mut m, format!("{p}PublicAddress"), ip.public.to_string());
    field(
        &mut m,
        format!("{p}ThreatLists"),
        ip.threat_lists.join(", "),
    );
    let inst = &f.resource.rds_db_instance_details;
    field(&mut m, format!("{p}ServerAddress"), inst.address.clone());
    let e = &f.evidence;
    for (k, v) in [
        ("queries", e.queries),
        ("rows", e.rows),
        ("bytes", e.bytes),
        ("baselineRows", e.baseline_rows),
        ("baselineBytes", e.baseline_bytes),
        ("connections", e.connections),
    ] {
        if let Some(v) = v {
            field(&mut m, format!("{EVIDENCE}{k}"), v.to_string());
        }
    }
    for (k, list) in [
        ("reasons", &e.reasons),
        ("statementClasses", &e.statement_classes),
        ("users", &e.users),
        ("errorCodes", &e.error_codes),
        ("flowEnds", &e.flow_ends),
        ("fingerprints", &e.fingerprints),
    ] {
        for (i, v) in list.iter().enumerate() {
            field(&mut m, format!("{EVIDENCE}{k}/{i}"), v.clone());
        }
    }
    m
}

/// One finding (its latest version) as ASFF.
pub fn map(f: &Finding, to: &Target) -> AsffFinding {
    let inst = &f.resource.rds_db_instance_details;
    let ip = &f.service.action.rds_login_attempt_action.remote_ip_details;
    let (partition, region) = inst
        .db_instance_arn
        .as_deref()
        .and_then(arn_place)
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .unwrap_or_else(|| (to.partition.clone(), to.region.clone()));
    let label = match f.severity_label {
        "High" => "HIGH",
        "Medium" => "MEDIUM",
        "Low" => "LOW",
        // GuardDuty's scale tops out at High; anything else is unexpected, not silent.
        _ if f.severity >= 9.0 => "CRITICAL",
        _ => "INFORMATIONAL",
    };
    let original = f.severity.to_string();
    let types = vec![asff_type(f.finding_type)];
    let (dst, port) = split_address(&inst.address);
    let v4 = ip.ip_address_v4.clone();
    let v6 = ip.ip_address_v6.clone();
    let network = Network {
        direction: "IN",
        protocol: "TCP",
        source_ip_v4: v4.clone(),
        source_ip_v6: v6.clone(),
        destination_ip_v4: dst.filter(|d| d.is_ipv4()).map(|d| d.to_string()),
        destination_ip_v6: dst.filter(|d| d.is_ipv6()).map(|d| d.to_string()),
        destination_port: port.map(i32::from),
    };
    let org = Organization {
        asn: ip
            .organization
            .asn
            .as_deref()
            .and_then(|a| a.trim_start_matches("AS").parse().ok()),
        asn_org: none_if_empty(&ip.organization.asn_org),
        isp: none_if_empty(&ip.organization.isp),
        org: none_if_empty(&ip.organization.org),
    };
    let country = Country {
        country_code: none_if_empty(&ip.country.country_code),
        country_name: none_if_empty(&ip.country.country_name),
    };
    let action = Action {
        action_type: "NETWORK_CONNECTION",
        network_connection_action: ConnectionAction {
            connection_direction: "INBOUND",
            protocol: "TCP",
            remote_ip_details: RemoteIp {
                ip_address_v4: v4,
                organization: (org != Organization::default()).then_some(org),
                country: (country.country_code.is_some() || country.country_name.is_some())
                    .then_some(country),
            },
            local_port_details: port.map(|p| LocalPort { port: p.into() }),
        },
    };
    let recommendation = f.recommended_response.join(" ");
    AsffFinding {
        schema_version: SCHEMA_VERSION,
        id: cut(&f.id, 512),
        product_arn: to.product_arn(),
        product_name: PRODUCT_NAME,
        company_name: cut(&to.company_name, 128),
        generator_id: cut(f.finding_type, 512),
        aws_account_id: to.account.clone(),
        types: types.clone(),
        first_observed_at: rfc3339(f.service.event_first_seen),
        last_observed_at: rfc3339(f.service.event_last_seen),
        created_at: rfc3339(f.created_at),
        updated_at: rfc3339(f.updated_at),
        severity: Severity {
            label,
            normalized: (f.severity * 10.0).round().clamp(0.0, 100.0) as i32,
            original: original.clone(),
        },
        finding_provider_fields: ProviderFields {
            severity: ProviderSeverity { label, original },
            types,
        },
        title: cut(&f.title, TITLE_MAX),
        description: cut(&f.description, DESCRIPTION_MAX),
        remediation: (!recommendation.is_empty()).then(|| Remediation {
            recommendation: Recommendation {
                text: cut(&recommendation, RECOMMENDATION_MAX),
            },
        }),
        product_fields: product_fields(f),
        resources: vec![Resource {
            kind: "AwsRdsDbInstance",
            id: inst
                .db_instance_arn
                .clone()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| inst.db_instance_identifier.clone()),
            partition,
            region,
            tags: inst
                .tags
                .iter()
                .take(50)
                .map(|t| (cut(&t.key, 128), cut(&t.value, TAG_VALUE_MAX)))
                .collect(),
            details: ResourceDetails {
                rds: RdsDetails {
                    db_instance_identifier: inst.db_instance_identifier.clone(),
                    engine: Some(inst.engine.clone()).filter(|e| !e.is_empty()),
                    engine_version: none_if_empty(&inst.engine_version),
                    db_cluster_identifier: none_if_empty(&inst.db_cluster_identifier),
                },
            },
        }],
        network: (network.source_ip_v4.is_some()
            || network.source_ip_v6.is_some()
            || dst.is_some())
        .then_some(network),
        action: Some(action),
        record_state: if f.service.archived {
            "ARCHIVED"
        } else {
            "ACTIVE"
        },
        workflow: Workflow { status: "NEW" },
    }
}

/// Bytes of a finding in a request body.
pub fn size(a: &AsffFinding) -> usize {
    serde_json::to_vec(a).map_or(usize::MAX, |v| v.len())
}

/// Why a finding cannot be sent.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub bytes: usize,
}

/// The finding within `max_bytes`: the evidence entries dropped, last first, until it fits;
/// an error if it does not fit without them. The flag says whether anything was dropped.
pub fn fit(mut a: AsffFinding, max_bytes: usize) -> Result<(AsffFinding, bool), TooLarge> {
    let mut bytes = size(&a);
    let mut trimmed = false;
    while bytes > max_bytes {
        let Some(k) = a
            .product_fields
            .keys()
            .rfind(|k| k.starts_with(EVIDENCE))
            .cloned()
        else {
            return Err(TooLarge { bytes });
        };
        a.product_fields.remove(&k);
        trimmed = true;
        bytes = size(&a);
    }
    Ok((a, trimmed))
}

/// Items of known size cut into calls: at most `max_items` each, and `max_bytes` of items
/// (one larger item goes alone), in order.
pub fn batches<T>(
    items: impl IntoIterator<Item = (T, usize)>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for (item, n) in items {
        let fits = out
            .last()
            .is_some_and(|b| b.len() < max_items.max(1) && bytes + n <= max_bytes);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        out.last_mut().expect("pushed").push(item);
    }
    out
}

/// A complete finding for tests (this crate's and its integration tests'): a brute force
/// from a public address on a mapped instance, with its user and login counts.
#[doc(hidden)]
pub fn example(id: &str, kind: &'static str) -> Finding {
    use rds_sensor::model::{
        Action as GdAction, Country as GdCountry, Evidence, InstanceDetails, LoginAttribute,
        Organization as GdOrg, RdsLoginAttemptAction, RemoteIpDetails, Resource as GdResource,
        Service, Tag, UserDetails,
    };
    Finding {
        ts: Timestamp(1_700_000_100_000_000_000),
        first_actor: rds_sensor::model::FirstActor {
            ts: Timestamp(1_700_000_000_123_000_000),
            ip: "203.0.113.7".into(),
            user: Some("app_orders".into()),
            application: Some("psql".into()),
            conn_id: None,
        },
        conn_ids: Vec::new(),
        schema_version: "2.0",
        id: id.into(),
        finding_type: kind,
        severity: 8.0,
        severity_label: "High",
        title: "A title".into(),
        description: "A description".into(),
        created_at: Timestamp(1_700_000_000_123_000_000),
        updated_at: Timestamp(1_700_000_100_000_000_000),
        resource: GdResource {
            resource_type: "RDSDBInstance",
            rds_db_instance_details: InstanceDetails {
                db_instance_identifier: "orders-pg-1".into(),
                db_cluster_identifier: Some("orders".into()),
                engine: "postgres".into(),
                engine_version: Some("15".into()),
                db_instance_arn: None,
                tags: vec![Tag {
                    key: "env".into(),
                    value: "prod".into(),
                }],
                address: "198.51.100.10:5432".into(),
            },
            rds_db_user_details: Some(UserDetails {
                user: "app_orders".into(),
                application: "psql".into(),
                database: "orders".into(),
                ssl: "false".into(),
                auth_method: "SCRAM-SHA-256".into(),
            }),
        },
        service: Service {
            service_name: "rds-sensor",
            action: GdAction {
                action_type: "RDS_LOGIN_ATTEMPT",
                rds_login_attempt_action: RdsLoginAttemptAction {
                    remote_ip_details: RemoteIpDetails {
                        ip_address_v4: Some("89.160.20.112".into()),
                        ip_address_v6: None,
                        organization: GdOrg {
                            asn: Some("29518".into()),
                            asn_org: Some("Bredband2 AB".into()),
                            isp: None,
                            org: None,
                        },
                        country: GdCountry {
                            country_code: Some("SE".into()),
                            country_name: None,
                        },
                        network: "89.160.20.0/24".into(),
                        public: true,
                        threat_lists: vec![],
                    },
                    login_attributes: vec![LoginAttribute {
                        user: "app_orders".into(),
                        application: "psql".into(),
                        failed_login_attempts: 12,
                        successful_login_attempts: 1,
                    }],
                },
            },
            event_first_seen: Timestamp(1_700_000_000_000_000_000),
            event_last_seen: Timestamp(1_700_000_100_500_000_000),
            count: 13,
            archived: false,
        },
        recommended_response: &["Rotate the password.", "Block the address."],
        evidence: Evidence::with_reasons(vec!["12 failures then a success".into()]),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rds_sensor::detect::FindingType;

    pub(crate) fn target() -> Target {
        Target {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            company_name: "rds-sensor".into(),
        }
    }

    pub(crate) fn finding(id: &str, kind: &'static str) -> Finding {
        example(id, kind)
    }

    #[test]
    fn every_finding_type_maps_to_a_valid_asff_type() {
        const NAMESPACES: [&str; 5] = [
            "Software and Configuration Checks",
            "TTPs",
            "Effects",
            "Unusual Behaviors",
            "Sensitive Data Identifications",
        ];
        let names: Vec<&str> = FindingType::ALL.iter().map(|t| t.name()).collect();
        assert!(names.len() >= 10, "{names:?}");
        let extra = [
            "CredentialAccess:RDS/IamAuthentication.Anomalous",
            "Impact:RDS/Something",
            "Unheard:RDS/Of",
            "",
            "no-colon/at/all",
        ];
        for t in names.iter().copied().chain(extra) {
            let a = asff_type(t);
            let parts: Vec<&str> = a.splitn(3, '/').collect();
            assert_eq!(parts.len(), 3, "{t} → {a}");
            assert!(NAMESPACES.contains(&parts[0]), "{t} → {a}");
            assert!(!parts[1].is_empty() && !parts[2].contains('/'), "{t} → {a}");
            assert!(a.chars().count() <= 128, "{a}");
        }
        assert_eq!(
            asff_type("CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce"),
            "TTPs/Credential Access/CredentialAccess:RDS-AnomalousBehavior.SuccessfulBruteForce"
        );
        assert_eq!(
            type_category("Exfiltration:RDS/AnomalousBehavior.DataStaging"),
            "Effects/Data Exfiltration"
        );
        assert_eq!(
            type_category("Policy:RDS/UnallowedNetwork.Connection"),
            "Software and Configuration Checks/AWS Security Best Practices"
        );
        assert_eq!(
            type_category("CredentialAccess:RDS/IamAuthentication.New"),
            "TTPs/Credential Access"
        );
    }

    #[test]
    fn maps_the_fields() {
        let f = finding(
            "f-1",
            "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce",
        );
        let a = map(&f, &target());
        assert_eq!(a.schema_version, "2018-10-08");
        assert_eq!(a.id, "f-1");
        assert_eq!(
            a.product_arn,
            "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
        );
        assert_eq!(a.generator_id, f.finding_type);
        assert_eq!(
            (
                a.severity.label,
                a.severity.normalized,
                a.severity.original.as_str()
            ),
            ("HIGH", 80, "8")
        );
        assert_eq!(a.created_at, "2023-11-14T22:13:20.123Z");
        assert_eq!(a.updated_at, "2023-11-14T22:15:00.000Z");
        assert_eq!(a.last_observed_at, "2023-11-14T22:15:00.500Z");
        assert_eq!(a.record_state, "ACTIVE");
        assert_eq!(a.workflow.status, "NEW");
        let r = &a.resources[0];
        assert_eq!((r.kind, r.id.as_str()), ("AwsRdsDbInstance", "orders-pg-1"));
        assert_eq!(
            (r.partition.as_str(), r.region.as_str()),
            ("aws", "us-east-1")
        );
        assert_eq!(
            r.details.rds.db_cluster_identifier.as_deref(),
            Some("orders")
        );
        assert_eq!(r.tags["env"], "prod");
        let n = a.network.as_ref().unwrap();
        assert_eq!(n.source_ip_v4.as_deref(), Some("89.160.20.112"));
        assert_eq!(n.destination_ip_v4.as_deref(), Some("198.51.100.10"));
        assert_eq!(n.destination_port, Some(5432));
        let c = &a.action.as_ref().unwrap().network_connection_action;
        assert_eq!(
            c.remote_ip_details.organization.as_ref().unwrap().asn,
            Some(29518)
        );
        assert_eq!(c.local_port_details.as_ref().unwrap().port, 5432);
        assert_eq!(a.product_fields["rds-sensor/DbUser"], "app_orders");
        assert_eq!(a.product_fields["rds-sensor/FailedLoginAttempts"], "12");
        assert_eq!(a.product_fields["rds-sensor/Count"], "13");
        assert_eq!(
            a.remediation.unwrap().recommendation.text,
            "Rotate the password. Block the address."
        );
    }

    #[test]
    fn severities_archive_and_arns() {
        let mut f = finding("f", "Discovery:RDS/PortProbe.Unauthenticated");
        for (n, label, want) in [
            (2.0, "Low", "LOW"),
            (5.0, "Medium", "MEDIUM"),
            (8.0, "High", "HIGH"),
        ] {
            f.severity = n;
            f.severity_label = label;
            let a = map(&f, &target());
            assert_eq!(a.severity.label, want);
            assert_eq!(a.severity.normalized, (n * 10.0) as i32);
            assert_eq!(a.finding_provider_fields.severity.label, want);
        }
        f.service.archived = true;
        f.resource.rds_db_instance_details.db_instance_arn =
            Some("arn:aws-cn:rds:cn-north-1:123456789012:db:orders-pg-1".into());
        let a = map(&f, &target());
        assert_eq!(a.record_state, "ARCHIVED");
        let r = &a.resources[0];
        assert_eq!(
            r.id,
            "arn:aws-cn:rds:cn-north-1:123456789012:db:orders-pg-1"
        );
        assert_eq!(
            (r.partition.as_str(), r.region.as_str()),
            ("aws-cn", "cn-north-1")
        );
    }

    #[test]
    fn ipv6_addresses() {
        let mut f = finding("f", "Policy:RDS/UnallowedNetwork.Connection");
        let ip = &mut f.service.action.rds_login_attempt_action.remote_ip_details;
        ip.ip_address_v4 = None;
        ip.ip_address_v6 = Some("2001:db8:200::5".into());
        f.resource.rds_db_instance_details.address = "[2001:db8:100::10]:5432".into();
        let a = map(&f, &target());
        let n = a.network.unwrap();
        assert_eq!(n.source_ip_v6.as_deref(), Some("2001:db8:200::5"));
        assert_eq!(n.source_ip_v4, None);
        assert_eq!(n.destination_ip_v6.as_deref(), Some("2001:db8:100::10"));
        assert_eq!(n.destination_port, Some(5432));
        let c = a.action.unwrap().network_connection_action;
        assert_eq!(c.remote_ip_details.ip_address_v4, None);
        // A bare address (no port) and none at all.
        f.resource.rds_db_instance_details.address = "2001:db8:100::10".into();
        let n = map(&f, &target()).network.unwrap();
        assert_eq!(
            (n.destination_ip_v6.as_deref(), n.destination_port),
            (Some("2001:db8:100::10"), None)
        );
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        let mut f = finding("f", "Discovery:RDS/MaliciousIPCaller");
        f.title = "é".repeat(1000);
        f.description = "日本".repeat(2000);
        let long: &'static str = Box::leak("ü".repeat(600).into_boxed_str());
        f.recommended_response = Box::leak(vec![long].into_boxed_slice());
        let a = map(&f, &target());
        assert_eq!(a.title.chars().count(), TITLE_MAX);
        assert!(a.title.ends_with('…'));
        assert_eq!(a.description.chars().count(), DESCRIPTION_MAX);
        assert_eq!(
            a.remediation.unwrap().recommendation.text.chars().count(),
            RECOMMENDATION_MAX
        );
        assert_eq!(cut("short", 10), "short");
    }

    #[test]
    fn a_huge_finding_is_trimmed_evidence_first() {
        let mut f = finding("huge", "Exfiltration:RDS/AnomalousBehavior.DataStaging");
        f.evidence.fingerprints = (0..5_000)
            .map(|i| format!("select * from t{i} where a = ? {}", "y".repeat(4_000)))
            .collect();
        f.evidence.reasons = (0..5_000)
            .map(|i| format!("reason {i} {}", "z".repeat(3_000)))
            .collect();
        let a = map(&f, &target());
        assert!(a.product_fields.len() <= PRODUCT_FIELDS_MAX);
        assert!(
            a.product_fields
                .values()
                .all(|v| v.chars().count() <= FIELD_VALUE_MAX)
        );
        // Under the real limit as mapped; under a small limit only by losing evidence.
        assert!(size(&a) <= FINDING_MAX_BYTES, "{}", size(&a));
        let (small, trimmed) = fit(a.clone(), 8_000).unwrap();
        assert!(trimmed && size(&small) <= 8_000);
        assert_eq!(small.product_fields["rds-sensor/DbUser"], "app_orders");
        assert!(small.product_fields.len() < a.product_fields.len());
        let (same, trimmed) = fit(a.clone(), FINDING_MAX_BYTES).unwrap();
        assert!(!trimmed && same == a);
        // Too large even without evidence: refused.
        assert!(fit(a, 500).is_err());
    }

    #[test]
    fn two_hundred_fifty_findings_make_three_calls() {
        let items: Vec<_> = (0..250)
            .map(|i| {
                let a = map(
                    &finding(&format!("f-{i}"), "Discovery:RDS/TorIPCaller"),
                    &target(),
                );
                let n = size(&a);
                (a, n)
            })
            .collect();
        let calls = batches(items, BATCH_FINDINGS, BATCH_MAX_BYTES);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        // The byte bound cuts too.
        let items: Vec<_> = (0..10).map(|i| (i, 300)).collect();
        let calls = batches(items, BATCH_FINDINGS, 1_000);
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert!(batches(Vec::<(u8, usize)>::new(), 100, 100).is_empty());
    }
}
