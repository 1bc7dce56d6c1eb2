//! CloudWatch settings: defaults, a JSON file (`--cloudwatch-config`), then the switches.

use anyhow::{Context, Result, bail};
use rds_sensor::cli::{CloudWatchArgs, MetricsSink};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every setting of the CloudWatch sinks. The JSON file uses these names; every field is
/// optional there.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Metric namespace.
    pub namespace: String,
    /// `cloudwatch` sends; `stdout` prints exactly what would be sent.
    pub metrics_sink: SinkKind,
    /// DBInstanceIdentifier by server: `ADDRESS:PORT` or `ADDRESS` (as in records: IPv6
    /// servers are `[ADDR]:PORT`). Servers not named use their address as the identifier.
    pub db_instances: BTreeMap<String, String>,
    /// The detector's instance map (`--instance-map`: a JSON object of server →
    /// `{"dbInstanceIdentifier": …}`), below `db_instances` and the switches.
    pub instance_map: Option<std::path::PathBuf>,
    /// Value of the `Sensor` dimension of the sensor's own health metrics (default: host name).
    pub sensor_id: Option<String>,
    /// Seconds aggregated into one data point.
    pub period_s: u64,
    /// 60 (standard) or 1 (high resolution).
    pub storage_resolution: u32,
    /// Also send query/login metrics per instance (without `Database`): CloudWatch does not
    /// aggregate across dimensions.
    pub per_instance_rollup: bool,
    /// Top N fingerprints by total time, per instance and period, sent with a `Fingerprint`
    /// dimension (0: off).
    pub top_fingerprints: usize,
    /// Fingerprints followed per period to pick the top N from; others are not candidates.
    pub max_fingerprints_tracked: usize,
    /// Distinct DBInstanceIdentifier values per period; more are folded into `(other)`.
    pub max_instances: usize,
    /// Distinct `Database` values per instance and period; more are folded into `(other)`.
    pub max_databases_per_instance: usize,
    /// Relative precision kept when latency buckets are merged (default: the histogram's).
    pub latency_precision: f64,
    /// Distinct values per datum (CloudWatch: at most 150).
    pub max_values_per_datum: usize,
    /// Data per PutMetricData request (CloudWatch: at most 1000).
    pub max_datums_per_request: usize,
    /// Bytes of a PutMetricData request body before compression (CloudWatch: 1 MB).
    pub max_request_bytes: usize,
    /// Request bodies from this size on are gzipped (the SDK's request compression).
    pub compression_min_bytes: u32,
    /// Data waiting to be sent while CloudWatch is unreachable; the oldest beyond are dropped
    /// (and counted, and the count reported).
    pub queue_max_datums: usize,
    /// Log events (and EventBridge events) waiting; same rule.
    pub queue_max_log_events: usize,
    pub queue_max_log_bytes: usize,
    /// Attempts per request inside the SDK (standard retry mode: exponential backoff with
    /// jitter on throttling, 5xx and transport errors).
    pub max_attempts: u32,
    /// When the SDK gives up, the data stays queued and is tried again after a backoff from
    /// this (doubling, full jitter) up to the maximum.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Connect and per-attempt timeouts.
    pub connect_timeout_ms: u64,
    pub attempt_timeout_ms: u64,
    /// At exit, how long to keep trying to send what is queued.
    pub shutdown_timeout_s: u64,
    /// CloudWatch Logs group and stream for findings (and sampled records).
    pub log_group: String,
    /// Default: the sensor id.
    pub log_stream: Option<String>,
    /// Fraction of query and login records sent, redacted, to the log stream (0: none).
    pub records_sample: f64,
    /// EventBridge bus for findings (PutEvents, source `rds-sensor`); none: off.
    pub eventbridge_bus: Option<String>,
    /// `analyze`: a capture older than CloudWatch accepts (two weeks) is moved so that it
    /// starts in the current period.
    pub shift_old_captures: bool,
    /// Endpoint for every service, instead of the SDK's resolution (which honours
    /// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>).
    pub endpoint_url: Option<String>,
    /// Region, instead of the SDK's chain (AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Every finding to AWS Security Hub too (BatchImportFindings, in ASFF): `--securityhub`.
    pub securityhub: bool,
    /// The account the findings belong to (the custom integration's product is in it);
    /// default: the credentials' own, from STS GetCallerIdentity.
    pub securityhub_account_id: Option<String>,
    /// `aws`, `aws-cn` or `aws-us-gov`: the partition of the product ARN.
    pub securityhub_partition: String,
    /// CompanyName of the findings.
    pub securityhub_company_name: String,
    /// Findings waiting for Security Hub; the oldest beyond are dropped (and counted). An
    /// update of a finding still waiting replaces it.
    pub queue_max_findings: usize,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Cloudwatch,
    Stdout,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "RDS/TrafficSensor".into(),
            metrics_sink: SinkKind::Cloudwatch,
            db_instances: BTreeMap::new(),
            instance_map: None,
            sensor_id: None,
            period_s: 60,
            storage_resolution: 60,
            per_instance_rollup: true,
            top_fingerprints: 0,
            max_fingerprints_tracked: 1000,
            max_instances: rds_sensor::aggregate::MAX_INSTANCES,
            max_databases_per_instance: rds_sensor::aggregate::MAX_DATABASES,
            latency_precision: crate::distribution::PRECISION,
            max_values_per_datum: crate::distribution::MAX_VALUES_PER_DATUM,
            max_datums_per_request: 1000,
            max_request_bytes: 800_000,
            compression_min_bytes: 10_240,
            queue_max_datums: 100_000,
            queue_max_log_events: 10_000,
            queue_max_log_bytes: 16 << 20,
            max_attempts: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            connect_timeout_ms: 3_000,
            attempt_timeout_ms: 20_000,
            shutdown_timeout_s: 15,
            log_group: "/rds-sensor/findings".into(),
            log_stream: None,
            records_sample: 0.0,
            eventbridge_bus: None,
            shift_old_captures: true,
            endpoint_url: None,
            region: None,
            securityhub: false,
            securityhub_account_id: None,
            securityhub_partition: "aws".into(),
            securityhub_company_name: "rds-sensor".into(),
            queue_max_findings: 10_000,
        }
    }
}

impl Config {
    /// The file named by `--cloudwatch-config` if any, then the switches over it.
    pub fn from_args(args: &CloudWatchArgs) -> Result<Self> {
        let mut c = match &args.cloudwatch_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: bad CloudWatch settings", path.display()))?
            }
            // The `[cloudwatch]` table of rds-sensor's --config file.
            None => match &args.file_settings {
                Some(v) => serde_json::from_value(v.clone())
                    .context("[cloudwatch] of the --config file: bad CloudWatch settings")?,
                None => Config::default(),
            },
        };
        if let Some(s) = args.metrics_sink {
            c.metrics_sink = match s {
                MetricsSink::Cloudwatch => SinkKind::Cloudwatch,
                MetricsSink::Stdout => SinkKind::Stdout,
            };
        }
        if let Some(n) = &args.cloudwatch_namespace {
            c.namespace = n.clone();
        }
        if let Some(p) = &args.instance_map {
            c.instance_map = Some(p.clone());
        }
        if let Some(path) = &c.instance_map {
            let mut m = load_instance_map(path)?;
            m.append(&mut c.db_instances);
            c.db_instances = m;
        }
        for (server, id) in &args.db_instances {
            c.db_instances.insert(server.clone(), id.clone());
        }
        if let Some(p) = args.cloudwatch_period {
            c.period_s = p;
        }
        if let Some(r) = args.cloudwatch_resolution {
            c.storage_resolution = r;
        }
        if let Some(n) = args.cloudwatch_top_fingerprints {
            c.top_fingerprints = n;
        }
        if let Some(g) = &args.cloudwatch_log_group {
            c.log_group = g.clone();
        }
        if let Some(s) = &args.cloudwatch_log_stream {
            c.log_stream = Some(s.clone());
        }
        if let Some(f) = args.cloudwatch_records_sample {
            c.records_sample = f;
        }
        if let Some(b) = &args.eventbridge_bus {
            c.eventbridge_bus = Some(b.clone());
        }
        c.securityhub |= args.securityhub;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.namespace.is_empty() || self.namespace.starts_with("AWS/") {
            bail!(
                "namespace `{}`: must be non-empty and not start with AWS/",
                self.namespace
            );
        }
        if self.period_s == 0 {
            bail!("the CloudWatch period must be at least one second");
        }
        if !matches!(self.storage_resolution, 1 | 60) {
            bail!(
                "storage resolution {}: must be 1 or 60",
                self.storage_resolution
            );
        }
        if !(1..=150).contains(&self.max_values_per_datum) {
            bail!("max_values_per_datum must be 1 to 150");
        }
        if !(1..=1000).contains(&self.max_datums_per_request) {
            bail!("max_datums_per_request must be 1 to 1000");
        }
        if !(self.latency_precision >= 0.0 && self.latency_precision < 1.0) {
            bail!("latency_precision must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.records_sample) {
            bail!("records_sample must be between 0 and 1");
        }
        if self.max_instances == 0 || self.max_databases_per_instance == 0 {
            bail!("max_instances and max_databases_per_instance must be at least 1");
        }
        if self.log_group.is_empty() {
            bail!("the log group name is empty");
        }
        if !SECURITYHUB_PARTITIONS.contains(&self.securityhub_partition.as_str()) {
            bail!(
                "securityhub_partition `{}`: one of {}",
                self.securityhub_partition,
                SECURITYHUB_PARTITIONS.join(", ")
            );
        }
        if let Some(a) = &self.securityhub_account_id
            && !(a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        {
            bail!("securityhub_account_id `{a}`: an account id is 12 digits");
        }
        if self.securityhub_company_name.is_empty() {
            bail!("securityhub_company_name is empty");
        }
        if self.queue_max_findings == 0 {
            bail!("queue_max_findings must be at least 1");
        }
        Ok(())
    }

    /// The `Sensor` dimension value.
    pub fn sensor(&self) -> String {
        self.sensor_id.clone().unwrap_or_else(hostname)
    }

    /// The server → instance resolver every sink shares.
    pub fn instances(&self) -> rds_sensor::aggregate::Instances {
        rds_sensor::aggregate::Instances::new(self.db_instances.clone())
    }
}

/// The partitions Security Hub's Resource.Partition takes (its model's enum, less the
/// isolated ones the SDK cannot reach from here).
const SECURITYHUB_PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// Server → DBInstanceIdentifier from an instance map file.
fn load_instance_map(path: &std::path::Path) -> Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        db_instance_identifier: String,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("instance map {}", path.display()))?;
    let raw: BTreeMap<String, Spec> =
        serde_json::from_str(&text).with_context(|| format!("instance map {}", path.display()))?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v.db_instance_identifier))
        .collect())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rds-sensor".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_switches() {
        let dir = std::env::temp_dir().join(format!("cw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cw.json");
        std::fs::write(
            &path,
            r#"{"namespace": "Test/NS", "period_s": 10, "db_instances": {"10.0.0.5": "orders-db"}}"#,
        )
        .unwrap();
        let map = dir.join("instances.json");
        std::fs::write(
            &map,
            r#"{"10.0.0.5": {"dbInstanceIdentifier": "overridden"},
                "[2001:db8::10]:5432": {"dbInstanceIdentifier": "v6-db", "engine": "postgres"},
                "10.0.0.7": {"dbInstanceIdentifier": "mapped-db", "tags": {"env": "prod"}}}"#,
        )
        .unwrap();
        let args = CloudWatchArgs {
            cloudwatch_config: Some(path),
            cloudwatch_period: Some(30),
            db_instances: vec![("10.0.0.6:3306".into(), "users-db".into())],
            instance_map: Some(map),
            ..CloudWatchArgs::default()
        };
        let c = Config::from_args(&args).unwrap();
        assert_eq!((c.namespace.as_str(), c.period_s), ("Test/NS", 30));
        assert_eq!(c.instances().resolve("10.0.0.5:5432"), "orders-db");
        assert_eq!(c.instances().resolve("10.0.0.6:3306"), "users-db");
        assert_eq!(c.instances().resolve("10.0.0.6:3307"), "10.0.0.6:3307");
        assert_eq!(c.instances().resolve("10.0.0.7:3306"), "mapped-db");
        assert_eq!(c.instances().resolve("[2001:db8::10]:5432"), "v6-db");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        for json in [
            r#"{"period_s": 0}"#,
            r#"{"storage_resolution": 5}"#,
            r#"{"max_values_per_datum": 151}"#,
            r#"{"namespace": "AWS/RDS"}"#,
            r#"{"no_such_setting": 1}"#,
            r#"{"securityhub_partition": "mars"}"#,
            r#"{"securityhub_account_id": "12345"}"#,
            r#"{"queue_max_findings": 0}"#,
        ] {
            let r: Result<Config> = serde_json::from_str::<Config>(json)
                .map_err(anyhow::Error::from)
                .and_then(|c| c.validate().map(|_| c));
            assert!(r.is_err(), "{json}");
        }
    }
}
