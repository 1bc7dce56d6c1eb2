//! What `rds-sensor aws mirror plan|apply|reconcile` keeps in place, and what the agent's
//! `--mirror-reconcile FILE` reads: the RDS instances to mirror and the target that receives
//! their traffic. The same keys come as switches (`--instance db-1 --target-eni eni-…`) or
//! from a TOML file (`--spec FILE`, `instances = ["db-1"]`, `target_eni = "eni-…"`); a switch
//! given overrides the file.
//!
//! The limits checked here are AWS's: a filter holds at most 10 rules (Traffic Mirroring
//! quotas), a session number is 1 to 32766, and the mirrored packet length 1 to 8947 bytes
//! ("CreateTrafficMirrorSession", EC2 API reference).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// At most this many rules in one traffic mirror filter (an AWS quota that cannot be raised).
pub const MAX_FILTER_RULES: usize = 10;
/// The tag value that marks the resources `aws mirror` made, unless `--name` says otherwise.
pub const DEFAULT_NAME: &str = "rds-sensor";
/// Seconds between the agent's passes, unless the file says `interval_s`.
pub const DEFAULT_INTERVAL_S: u64 = 300;

#[derive(Args, Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorSpec {
    /// A DBInstanceIdentifier to mirror (repeat).
    #[arg(long = "instance", value_name = "ID")]
    pub instances: Vec<String>,
    /// Every instance of this DBClusterIdentifier (Aurora; repeat).
    #[arg(long = "cluster", value_name = "ID")]
    pub clusters: Vec<String>,
    /// The mirror target: the sensor's network interface (eni-…).
    #[arg(long, value_name = "ENI", group = "target")]
    pub target_eni: Option<String>,
    /// The mirror target: a Network Load Balancer in front of sensors (its ARN).
    #[arg(long, value_name = "ARN", group = "target")]
    pub target_nlb: Option<String>,
    /// The mirror target: a Gateway Load Balancer endpoint in front of sensors (vpce-…).
    #[arg(long, value_name = "VPCE", group = "target")]
    pub target_gwlbe: Option<String>,
    /// Database ports the filter passes (repeat). Default: the instances' endpoint ports.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Also pass IPv6 traffic (dual-stack instances): two more rules per port.
    #[arg(long)]
    #[serde(default)]
    pub ipv6: bool,
    /// Mirror only the first BYTES of each packet (AWS's PacketLength; docs/aws.md says what it
    /// costs). Default: whole packets.
    #[arg(long, value_name = "BYTES")]
    pub packet_length: Option<u16>,
    /// The value of the `rds-sensor:mirror` tag on everything this makes: what it owns and
    /// may repair or remove. Default `rds-sensor`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A hosts(5)-format file consulted before DNS for the instances' endpoint names
    /// (split-horizon DNS, tests).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Seconds between the agent's reconcile passes (file only).
    #[arg(skip)]
    pub interval_s: Option<u64>,
}

/// Which target kind, with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorTarget {
    Eni(String),
    Nlb(String),
    Gwlbe(String),
}

impl MirrorSpec {
    /// Reads a TOML file of these keys, checked.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let s: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
            .with_context(|| path.display().to_string())?;
        s.validate().with_context(|| path.display().to_string())?;
        Ok(s)
    }

    /// This spec with every switch given in `over` in place of its own value.
    pub fn overridden_by(mut self, over: &Self) -> Self {
        if !over.instances.is_empty() {
            self.instances = over.instances.clone();
        }
        if !over.clusters.is_empty() {
            self.clusters = over.clusters.clone();
        }
        if over.target_eni.is_some() || over.target_nlb.is_some() || over.target_gwlbe.is_some() {
            self.target_eni = over.target_eni.clone();
            self.target_nlb = over.target_nlb.clone();
            self.target_gwlbe = over.target_gwlbe.clone();
        }
        if !over.ports.is_empty() {
            self.ports = over.ports.clone();
        }
        self.ipv6 |= over.ipv6;
        if over.name.is_some() {
            self.name.clone_from(&over.name);
        }
        if over.packet_length.is_some() {
            self.packet_length = over.packet_length;
        }
        if over.hosts.is_some() {
            self.hosts.clone_from(&over.hosts);
        }
        self
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_NAME)
    }

    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.interval_s.unwrap_or(DEFAULT_INTERVAL_S).max(1))
    }

    pub fn target(&self) -> Result<MirrorTarget> {
        match (&self.target_eni, &self.target_nlb, &self.target_gwlbe) {
            (Some(e), None, None) => Ok(MirrorTarget::Eni(e.clone())),
            (None, Some(n), None) => Ok(MirrorTarget::Nlb(n.clone())),
            (None, None, Some(g)) => Ok(MirrorTarget::Gwlbe(g.clone())),
            (None, None, None) => bail!(
                "no mirror target: give --target-eni (the sensor's interface), --target-nlb or --target-gwlbe"
            ),
            _ => bail!("one mirror target only: --target-eni, --target-nlb or --target-gwlbe"),
        }
    }

    /// Rules a filter needs for `ports`: one each way per port and address family.
    pub fn rules_for(&self, ports: usize) -> usize {
        ports * 2 * if self.ipv6 { 2 } else { 1 }
    }

    /// Checks what the types do not.
    pub fn validate(&self) -> Result<()> {
        if self.instances.is_empty() && self.clusters.is_empty() {
            bail!("nothing to mirror: give --instance ID or --cluster ID (repeat)");
        }
        self.target()?;
        if let Some(t) = &self.target_eni
            && !t.starts_with("eni-")
        {
            bail!("--target-eni `{t}` is no network interface id (eni-…)");
        }
        if let Some(t) = &self.target_gwlbe
            && !t.starts_with("vpce-")
        {
            bail!("--target-gwlbe `{t}` is no VPC endpoint id (vpce-…)");
        }
        if let Some(t) = &self.target_nlb
            && !t.starts_with("arn:")
        {
            bail!("--target-nlb `{t}` is no load balancer ARN (arn:aws:elasticloadbalancing:…)");
        }
        if self.ports.contains(&0) {
            bail!("port 0 is no database port");
        }
        let mut ports = self.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if self.rules_for(ports.len()) > MAX_FILTER_RULES {
            bail!(
                "{} ports need {} filter rules, and a traffic mirror filter holds at most {MAX_FILTER_RULES}: \
                 mirror at most {} ports per name (run once per --name for more)",
                ports.len(),
                self.rules_for(ports.len()),
                MAX_FILTER_RULES / self.rules_for(1)
            );
        }
        if let Some(n) = self.packet_length
            && !(1..=8947).contains(&n)
        {
            bail!("--packet-length {n}: AWS takes 1 to 8947 bytes");
        }
        let name = self.name();
        if name.is_empty()
            || name.len() > 256
            || name.starts_with("aws:")
            || name.chars().any(char::is_control)
        {
            bail!("--name `{name}`: a tag value of 1 to 256 characters, not starting with aws:");
        }
        if self.interval_s == Some(0) {
            bail!("interval_s: at least 1 second");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MirrorSpec {
        MirrorSpec {
            instances: vec!["db-1".into()],
            target_eni: Some("eni-0abc".into()),
            ..MirrorSpec::default()
        }
    }

    #[test]
    fn a_file_reads_and_switches_override_it() {
        let dir = std::env::temp_dir().join(format!("mirror-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("mirror.toml");
        std::fs::write(
            &f,
            "instances = [\"db-1\", \"db-2\"]\ntarget_eni = \"eni-0abc\"\nports = [5432]\ninterval_s = 60\n",
        )
        .unwrap();
        let s = MirrorSpec::load(&f).unwrap();
        assert_eq!(s.instances, ["db-1", "db-2"]);
        assert_eq!(s.interval(), std::time::Duration::from_secs(60));
        let over = MirrorSpec {
            target_nlb: Some("arn:aws:elasticloadbalancing:x".into()),
            ..MirrorSpec::default()
        };
        let s = s.overridden_by(&over);
        assert_eq!(
            s.target().unwrap(),
            MirrorTarget::Nlb("arn:aws:elasticloadbalancing:x".into())
        );
        assert_eq!(s.ports, [5432]);
        std::fs::write(&f, "instance = [\"db-1\"]\n").unwrap();
        let e = format!("{:#}", MirrorSpec::load(&f).unwrap_err());
        assert!(e.contains("unknown field `instance`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ten_rule_quota_is_checked_before_any_call() {
        let mut s = spec();
        s.ports = vec![5432, 3306, 1433, 1521, 5433];
        s.validate().unwrap();
        s.ports.push(3307);
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("12 filter rules") && e.contains("at most 10"),
            "{e}"
        );
        s.ports.truncate(3);
        s.ipv6 = true;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("12 filter rules"), "{e}");
    }

    #[test]
    fn a_target_is_one_of_three_and_well_formed() {
        let mut s = spec();
        s.target_gwlbe = Some("vpce-1".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("one mirror target")
        );
        s.target_eni = None;
        s.validate().unwrap();
        s.target_gwlbe = Some("eni-1".into());
        assert!(s.validate().unwrap_err().to_string().contains("vpce-"));
        let s = MirrorSpec {
            instances: vec!["db".into()],
            ..MirrorSpec::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("no mirror target")
        );
        let mut s = spec();
        s.packet_length = Some(9000);
        assert!(s.validate().unwrap_err().to_string().contains("8947"));
    }
}
