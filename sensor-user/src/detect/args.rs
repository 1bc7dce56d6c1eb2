//! The detection switches of `rds-sensor run`, `analyze` and `demo`. They overlay the
//! settings (`config::Detect::overlay`), which make the detector.

use super::intel::Cidr;
use std::path::PathBuf;

/// Anomalous-client detection. On when `--detect` or any other of these switches is given.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DetectArgs {
    /// Report findings (GuardDuty RDS Protection types and more) as `{"kind":"finding"}`.
    #[arg(long)]
    pub detect: bool,
    /// File of malicious addresses/CIDRs, one a line, `#` comments; reloaded when it changes
    /// (repeat for several files; implies --detect).
    #[arg(long = "malicious-ips", value_name = "FILE")]
    pub malicious_ips: Vec<PathBuf>,
    /// File of Tor exit node addresses, same format (repeat; implies --detect).
    #[arg(long = "tor-exits", value_name = "FILE")]
    pub tor_exits: Vec<PathBuf>,
    /// Client network the security group should allow (repeat or separate with commas);
    /// clients elsewhere are reported (implies --detect).
    #[arg(long = "allowed-cidr", value_name = "CIDR", value_delimiter = ',', value_parser = parse_cidr)]
    pub allowed_cidrs: Vec<Cidr>,
    /// Client network whose clients are to log in with IAM database authentication tokens;
    /// a static password from there is reported (repeat or separate with commas; implies
    /// --detect).
    #[arg(long = "iam-required-cidr", value_name = "CIDR", value_delimiter = ',', value_parser = parse_cidr)]
    pub iam_required_cidrs: Vec<Cidr>,
    /// JSON map of server address to RDS instance: {"IP:PORT": {"dbInstanceIdentifier": …,
    /// "dbClusterIdentifier": …, "engine": …, "tags": {…}}} (implies --detect).
    #[arg(long, value_name = "FILE")]
    pub instance_map: Option<PathBuf>,
    /// Behavioural baseline, loaded at start and saved periodically and at the end
    /// (implies --detect).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Seconds, from an instance's first record, during which anomalies are learned, not
    /// reported [default: 1209600, two weeks] (implies --detect).
    #[arg(long, value_name = "SECONDS")]
    pub learning_period: Option<u64>,
    /// MaxMind-format database (GeoLite2/GeoIP2 ASN, ISP, Country or City) for the client's
    /// ASN, organisation and country (implies --detect).
    #[arg(long, value_name = "FILE")]
    pub asn_db: Option<PathBuf>,
    /// Repeats of a finding are emitted as an update at most this often [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub finding_update_interval: Option<u64>,
    /// A finding with no new occurrence for this many seconds (record time) has ended: it is
    /// emitted a last time with `archived: true` [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub finding_archive_after: Option<u64>,
    /// Seconds (record time) between baseline saves [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub baseline_save_interval: Option<u64>,
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}
