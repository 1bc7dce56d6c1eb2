//! `cargo xtask pcaps`: record real PostgreSQL and MariaDB sessions between two network
//! namespaces with tcpdump, and store them as AWS VPC Traffic Mirroring delivers them (VXLAN).
//!
//! Steps: preflight checks, temp dir, netns + veth, self-signed TLS cert, private PostgreSQL and
//! MariaDB servers in the server namespace, client scenarios from the client namespace while
//! tcpdump captures on the client veth, conversion (VXLAN wrap / truncation / plain), then
//! `pcaps/README.md` and a tshark check of every fact the README states.
//! `--only tls` records the TLS captures that come with their TLS key logs (pg8000 and PyMySQL
//! clients writing NSS key log files), copied beside them.
//! `--only tds` records SQL Server (TDS) sessions of real clients (FreeTDS `tsql`, pytds) against a
//! small listener that plays the server side (`pcaps/tds.rs`): no SQL Server runs here.
//! Every piece of state is owned by a guard (see `crate::netlab`), so errors clean up too.
//! The lab network, process plumbing and server start-up are shared with `cargo xtask scenarios`
//! (`crate::netlab`, `crate::dbserver`, `crate::pcapfmt`).

mod facts;
mod iam;
mod my;
mod pg;
pub(crate) mod tds;
mod tlskeys;

use crate::dbserver::{MY_PORT, PG_PORT};
use crate::netlab::{
    self, Capture, Expect, NetSpec, Network, TempDir, require_tool, run as run_cmd, say,
};
use crate::pcapfmt;
use anyhow::{Context, Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Network namespace the database servers run in.
pub const SRV_NS: &str = "rdspcap-srv";
/// Network namespace the clients (and tcpdump) run in.
pub const CLI_NS: &str = "rdspcap-cli";
pub const SRV_V4: &str = "198.51.100.10";
pub const SRV_V6: &str = "2001:db8:100::10";
/// Client addresses, all on the client veth. The first one is the primary address.
pub const CLI_V4: [&str; 3] = ["198.51.100.20", "198.51.100.21", "198.51.100.22"];
pub const CLI_V6: &str = "2001:db8:100::20";

/// The lab network: one server address per family, three IPv4 clients and one IPv6 client, fixed
/// MACs (the committed captures show them).
pub static LAB: NetSpec = NetSpec {
    srv_ns: SRV_NS,
    cli_ns: CLI_NS,
    srv_if: "rdsp-s",
    cli_if: "rdsp-c",
    macs: Some(("02:42:c6:33:64:0a", "02:42:c6:33:64:14")),
    srv_v4: &[SRV_V4],
    srv_v6: SRV_V6,
    cli_v4: &CLI_V4,
    cli_v6: CLI_V6,
};

/// What tcpdump records.
const CAPTURE_FILTER: &str = "tcp port 5432 or tcp port 3306 or tcp port 1433";

/// Password of every test user.
pub const PASSWORD: &str = "Sup3r-Secret-Pw!";
/// Literal that appears in queries of both protocols; the sensor must never print it.
pub const CANARY: &str = "canary-literal-4242";
/// VXLAN network identifiers (mirror sessions) of the PostgreSQL and MySQL files.
pub const VNI_PG: u32 = 7341;
pub const VNI_MYSQL: u32 = 7342;
/// VXLAN network identifier of the SQL Server (TDS) files.
pub const VNI_TDS: u32 = 7343;
/// The mirror target: outer destination of every VXLAN packet.
pub const MIRROR_TARGET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// Inner frames of the truncated variant are cut to this many bytes (mirror PacketLength).
pub const TRUNCATE_TO: usize = 128;
/// The Python the pipelining MySQL client and the TLS key-log clients (pg8000, PyMySQL) run on.
pub const PYTHON: &str = "/usr/bin/python3";

#[derive(clap::Args, Debug)]
pub struct PcapsArgs {
    /// Directory the captures and README.md are written to [default: <workspace>/pcaps]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Record only one group of captures: one protocol's, or the TLS captures with key logs
    #[arg(long, value_enum)]
    pub only: Option<Proto>,
    /// Do not check the README facts with tshark afterwards
    #[arg(long)]
    pub no_verify: bool,
    /// Keep the temp dir (server data dirs, logs, raw captures) for debugging
    #[arg(long)]
    pub keep_tmp: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// PostgreSQL captures
    Pg,
    /// MySQL/MariaDB captures
    Mysql,
    /// TLS captures of both protocols recorded with TLS key logs (`*-tls-keys.pcap` + `.keys`)
    Tls,
    /// SQL Server (TDS) captures: real FreeTDS and pytds clients, the server side played by a
    /// listener built from MS-TDS (`tds-*.pcap`, `tds-tls-login.keys`)
    Tds,
    /// AWS IAM database authentication tokens (botocore's presigner) sent inside TLS by pg8000
    /// and PyMySQL, with key logs (`*-iam.pcap` + `.keys`)
    Iam,
}

/// How a committed file is derived from a raw capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Every frame wrapped in Ethernet/IPv4/UDP/VXLAN.
    Vxlan,
    /// Wrapped, with inner frames cut to this many bytes.
    Truncated(usize),
    /// The plain Ethernet capture.
    Plain,
}

pub struct OutFile {
    pub name: &'static str,
    pub raw: &'static str,
    /// The `--only` group that records it.
    pub proto: Proto,
    pub form: Form,
    /// VXLAN network identifier of the mirror session ([`VNI_PG`], [`VNI_MYSQL`] or [`VNI_TDS`]).
    pub vni: u32,
    /// The TLS key log (NSS key log format) the scenario writes as `<raw dir>/<keys>`, copied
    /// beside the capture under the same name.
    pub keys: Option<&'static str>,
}

pub const OUTPUTS: &[OutFile] = &[
    OutFile {
        name: "pg-auth.pcap",
        raw: "pg-auth",
        proto: Proto::Pg,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "pg-queries.pcap",
        raw: "pg-queries",
        proto: Proto::Pg,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "pg-queries-trunc128.pcap",
        raw: "pg-queries",
        proto: Proto::Pg,
        form: Form::Truncated(TRUNCATE_TO),
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "pg-extended.pcap",
        raw: "pg-extended",
        proto: Proto::Pg,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "pg-tls.pcap",
        raw: "pg-tls",
        proto: Proto::Pg,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "pg-plain-query.pcap",
        raw: "pg-plain",
        proto: Proto::Pg,
        form: Form::Plain,
        vni: VNI_PG,
        keys: None,
    },
    OutFile {
        name: "mysql-auth.pcap",
        raw: "mysql-auth",
        proto: Proto::Mysql,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: None,
    },
    OutFile {
        name: "mysql-queries.pcap",
        raw: "mysql-queries",
        proto: Proto::Mysql,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: None,
    },
    OutFile {
        name: "mysql-prepared.pcap",
        raw: "mysql-prepared",
        proto: Proto::Mysql,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: None,
    },
    OutFile {
        name: "mysql-tls.pcap",
        raw: "mysql-tls",
        proto: Proto::Mysql,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: None,
    },
    OutFile {
        name: "pg-tls-keys.pcap",
        raw: "pg-tls-keys",
        proto: Proto::Tls,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: Some("pg-tls-keys.keys"),
    },
    OutFile {
        name: "mysql-tls-keys.pcap",
        raw: "mysql-tls-keys",
        proto: Proto::Tls,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: Some("mysql-tls-keys.keys"),
    },
    OutFile {
        name: "pg-iam.pcap",
        raw: "pg-iam",
        proto: Proto::Iam,
        form: Form::Vxlan,
        vni: VNI_PG,
        keys: Some("pg-iam.keys"),
    },
    OutFile {
        name: "mysql-iam.pcap",
        raw: "mysql-iam",
        proto: Proto::Iam,
        form: Form::Vxlan,
        vni: VNI_MYSQL,
        keys: Some("mysql-iam.keys"),
    },
    OutFile {
        name: "tds-clients.pcap",
        raw: "tds-clients",
        proto: Proto::Tds,
        form: Form::Vxlan,
        vni: VNI_TDS,
        keys: None,
    },
    OutFile {
        name: "tds-tls-login.pcap",
        raw: "tds-tls-login",
        proto: Proto::Tds,
        form: Form::Vxlan,
        vni: VNI_TDS,
        keys: Some("tds-tls-login.keys"),
    },
];

/// Self-signed certificate shared by both servers.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    fn generate(tmp: &Path) -> Result<Self> {
        let dir = tmp.join("tls");
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        say("openssl: self-signed P-256 certificate for CN=db.rds-sensor.test");
        let mut c = Command::new("openssl");
        c.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=db.rds-sensor.test",
            "-addext",
            &format!("subjectAltName=IP:{},IP:{}", SRV_V4, SRV_V6),
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
        run_cmd("generate TLS certificate", &mut c, None, Expect::Ok)?;
        Ok(Self { cert, key })
    }
}

/// The mirrored ENI for a client address: 198.51.100.N -> 192.0.2.N; the IPv6 client
/// 2001:db8:100::20 is the same (dual-stack) instance as 198.51.100.20.
pub fn eni_for_client(client: IpAddr) -> Ipv4Addr {
    match client {
        IpAddr::V4(a) if a.octets()[..3] == [198, 51, 100] => {
            Ipv4Addr::new(192, 0, 2, a.octets()[3])
        }
        IpAddr::V6(a) if a.to_string() == CLI_V6 => Ipv4Addr::new(192, 0, 2, 20),
        _ => Ipv4Addr::new(192, 0, 2, 1),
    }
}

fn preflight(
    want_pg: bool,
    want_my: bool,
    want_tls: bool,
    want_tds: bool,
    want_iam: bool,
) -> Result<()> {
    let want_tls = want_tls || want_iam;
    netlab::require_root()?;
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("tcpdump", "tcpdump"),
        ("openssl", "openssl"),
        ("setpriv", "util-linux"),
    ] {
        require_tool(tool, pkg)?;
    }
    if want_pg || want_tls {
        let bin = crate::dbserver::pg_find_bin()?;
        say(format!("using PostgreSQL from {}", bin.display()));
    }
    if want_my || want_tls {
        for (tool, pkg) in [
            ("mariadbd", "mariadb-server"),
            ("mariadb-install-db", "mariadb-server"),
            ("mariadb", "mariadb-client"),
            ("mariadb-admin", "mariadb-client"),
            ("perl", "perl"),
        ] {
            require_tool(tool, pkg)?;
        }
    }
    if want_my {
        let ok = Command::new("perl")
            .args(["-MDBI", "-MDBD::MariaDB", "-e1"])
            .status()
            .map(|s| s.success());
        if !matches!(ok, Ok(true)) {
            bail!(
                "step `preflight`: perl DBD::MariaDB is needed for binary prepared statements; `apt-get install -y libdbd-mariadb-perl`"
            );
        }
    }
    if want_tls {
        let ok = Command::new(PYTHON)
            .args(["-c", "import ssl, pg8000.native, pymysql"])
            .status()
            .map(|s| s.success());
        if !matches!(ok, Ok(true)) {
            bail!(
                "step `preflight`: the TLS key-log captures need {PYTHON} with pg8000 and PyMySQL; `apt-get install -y python3-pymysql python3-pip && {PYTHON} -m pip install --break-system-packages pg8000`"
            );
        }
    }
    if want_iam {
        let ok = Command::new(PYTHON)
            .args(["-c", "import botocore.session"])
            .status()
            .map(|s| s.success());
        if !matches!(ok, Ok(true)) {
            bail!(
                "step `preflight`: the IAM captures need {PYTHON} with botocore (its presigner makes the tokens); `apt-get install -y python3-botocore`"
            );
        }
    }
    if want_tds {
        require_tool("tsql", "freetds-bin")?;
        // pytds needs pyOpenSSL (python3-openssl) for its TLS.
        let ok = Command::new(PYTHON)
            .args(["-c", "import ssl, pytds, OpenSSL"])
            .status()
            .map(|s| s.success());
        if !matches!(ok, Ok(true)) {
            bail!(
                "step `preflight`: the TDS captures need {PYTHON} with pytds and pyOpenSSL; `apt-get install -y python3-openssl python3-pip && {PYTHON} -m pip install --break-system-packages python-tds`"
            );
        }
    }
    Ok(())
}

/// Captures the traffic `scenario` makes into `<raw_dir>/<name>.pcap`.
/// If the kernel drops packets (a busy machine), the scenario is recorded again; the scenarios
/// change only data no README fact depends on, so a repeat gives the same facts.
fn record(
    net: &Network,
    raw_dir: &Path,
    name: &str,
    scenario: impl Fn() -> Result<()>,
) -> Result<()> {
    const ATTEMPTS: u32 = 3;
    let path = raw_dir.join(format!("{name}.pcap"));
    for attempt in 1..=ATTEMPTS {
        say(format!("== recording {name} =="));
        let cap = Capture::start(net, &path, CAPTURE_FILTER)
            .with_context(|| format!("recording {name}"))?;
        scenario().with_context(|| format!("recording {name}"))?;
        match cap.finish() {
            Ok(0) => bail!("recording {name}: tcpdump captured no packets"),
            Ok(_) => return Ok(()),
            Err(e) if e.is::<netlab::Dropped>() && attempt < ATTEMPTS => {
                say(format!(
                    "{e}; recording {name} again (attempt {} of {ATTEMPTS})",
                    attempt + 1
                ));
            }
            Err(e) => return Err(e.context(format!("recording {name}"))),
        }
    }
    unreachable!("the last attempt returns")
}

fn convert(raw_dir: &Path, out_dir: &Path, f: &OutFile) -> Result<()> {
    let raw_path = raw_dir.join(format!("{}.pcap", f.raw));
    let mut raw = pcapfmt::read(&raw_path)?;
    for r in &mut raw.records {
        if r.data.len() == r.orig_len as usize {
            pcapfmt::fix_checksums(&mut r.data);
        }
    }
    let vni = f.vni;
    let mirror = |truncate| pcapfmt::Mirror {
        vni,
        target: MIRROR_TARGET,
        server_ports: &[PG_PORT, MY_PORT, tds::TDS_PORT],
        eni_for_client,
        truncate,
    };
    let (out, how) = match f.form {
        Form::Plain => (raw, "plain Ethernet".to_string()),
        Form::Vxlan => (
            pcapfmt::wrap(&raw, &mirror(None))?,
            format!("VXLAN VNI {vni}"),
        ),
        Form::Truncated(n) => (
            pcapfmt::wrap(&raw, &mirror(Some(n)))?,
            format!("VXLAN VNI {vni}, inner frames cut to {n} bytes"),
        ),
    };
    let path = out_dir.join(f.name);
    pcapfmt::write(&path, &out)?;
    let size = std::fs::metadata(&path)?.len();
    say(format!(
        "wrote {} ({} frames, {size} bytes, {how})",
        path.display(),
        out.records.len()
    ));
    if let Some(keys) = f.keys {
        let to = out_dir.join(keys);
        std::fs::copy(raw_dir.join(keys), &to)
            .with_context(|| format!("copying the TLS key log {keys}"))?;
        say(format!("wrote {} (TLS key log)", to.display()));
    }
    Ok(())
}

pub fn run(args: &PcapsArgs) -> Result<()> {
    netlab::set_log_tag("pcaps");
    let started = Instant::now();
    let want_pg = args.only.is_none_or(|p| p == Proto::Pg);
    let want_my = args.only.is_none_or(|p| p == Proto::Mysql);
    let want_tls = args.only.is_none_or(|p| p == Proto::Tls);
    let want_tds = args.only.is_none_or(|p| p == Proto::Tds);
    let want_iam = args.only.is_none_or(|p| p == Proto::Iam);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| crate::root().join("pcaps"));
    preflight(want_pg, want_my, want_tls, want_tds, want_iam)?;
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut tmp = TempDir::fresh(std::env::temp_dir().join("rds-sensor-pcaps"))?;
    tmp.keep = args.keep_tmp;
    let raw_dir = tmp.path.join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    {
        let net = Network::create(&LAB).context("step `network setup`")?;
        let tls = Tls::generate(&tmp.path)?;
        // The key-log captures come after a server's other scenarios, so they change none of them.
        if want_pg || want_tls || want_iam {
            let mut pg = pg::Pg::start(&tmp.path, &tls).context("step `postgres server`")?;
            if want_pg {
                record(&net, &raw_dir, "pg-auth", || pg.auth(&net))?;
                record(&net, &raw_dir, "pg-queries", || pg.queries(&net))?;
                record(&net, &raw_dir, "pg-extended", || pg.extended(&net))?;
                record(&net, &raw_dir, "pg-tls", || pg.tls(&net))?;
                record(&net, &raw_dir, "pg-plain", || pg.plain(&net))?;
            }
            if want_tls {
                record(&net, &raw_dir, "pg-tls-keys", || {
                    pg.tls_keys(&net, &raw_dir, &tmp.path)
                })?;
            }
            if want_iam {
                record(&net, &raw_dir, "pg-iam", || {
                    iam::pg(&pg, &net, &raw_dir, &tmp.path)
                })?;
            }
            pg.stop();
        }
        if want_my || want_tls || want_iam {
            let mut my = my::My::start(&tmp.path, &tls).context("step `mariadb server`")?;
            if want_my {
                record(&net, &raw_dir, "mysql-auth", || my.auth(&net))?;
                record(&net, &raw_dir, "mysql-queries", || my.queries(&net))?;
                record(&net, &raw_dir, "mysql-prepared", || my.prepared(&net))?;
                record(&net, &raw_dir, "mysql-tls", || my.tls(&net))?;
            }
            if want_tls {
                record(&net, &raw_dir, "mysql-tls-keys", || {
                    my.tls_keys(&net, &raw_dir)
                })?;
            }
            if want_iam {
                record(&net, &raw_dir, "mysql-iam", || {
                    iam::my(&my, &net, &raw_dir, &tmp.path)
                })?;
            }
            my.stop();
        }
        if want_tds {
            record(&net, &raw_dir, "tds-clients", || {
                tds::clients(&net, &tmp.path, &tls)
            })?;
            record(&net, &raw_dir, "tds-tls-login", || {
                tds::tls_login(&net, &raw_dir, &tmp.path, &tls)
            })?;
        }
        say("removing network namespaces");
    }

    say(format!("== converting into {} ==", out_dir.display()));
    let wanted: Vec<&OutFile> = OUTPUTS
        .iter()
        .filter(|f| args.only.is_none_or(|p| p == f.proto))
        .collect();
    for f in &wanted {
        convert(&raw_dir, &out_dir, f).with_context(|| format!("step `convert {}`", f.name))?;
    }
    let readme = out_dir.join("README.md");
    let previous = std::fs::read_to_string(&readme).ok();
    std::fs::write(&readme, facts::readme(previous.as_deref()))
        .with_context(|| format!("writing {}", readme.display()))?;
    say(format!("wrote {}", readme.display()));

    if args.no_verify {
        say("skipping the tshark check (--no-verify)");
    } else if require_tool("tshark", "tshark").is_err() {
        say("tshark not found (apt-get install -y tshark): skipping the check of the README facts");
    } else {
        let names: Vec<&str> = wanted.iter().map(|f| f.name).collect();
        facts::verify(&out_dir, &names).context("step `verify README facts with tshark`")?;
    }
    say(format!("done in {:.0?}", started.elapsed()));
    Ok(())
}
