//! The numbers the pattern and volume rules compare against: brute force, spraying, login and
//! failure rates, data staging, probes.

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
    /// A server certificate that ends within this many days is a finding.
    pub cert_expiry_days: u64,
    /// A plaintext login is a downgrade where at least this share of at least this many
    /// learned logins used TLS.
    pub downgrade_tls_share: f64,
    pub downgrade_min_logins: u64,
    /// With key logs configured: more than this share of at least this many TLS sessions to
    /// an instance without keys is a finding.
    pub missing_keys_share: f64,
    pub missing_keys_min_sessions: u64,
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
            cert_expiry_days: 30,
            downgrade_tls_share: 0.95,
            downgrade_min_logins: 20,
            missing_keys_share: 0.5,
            missing_keys_min_sessions: 20,
        }
    }
}
