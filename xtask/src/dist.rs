//! `cargo xtask dist`: Debian packages a mirror target installs without any Rust or LLVM.
//!
//! - `rds-sensor`: the agent (the XDP object embedded in it), its systemd unit (not enabled:
//!   the interface must be set first), the default configuration as a conffile
//!   (`/etc/rds-sensor/rds-sensor.toml`), man pages and bash/zsh/fish completions generated
//!   from the command line itself (`rds-sensor assets`), and the AWS guide;
//! - `rds-sensor-cloudwatch`: the same command line with the CloudWatch and Security Hub
//!   sinks (the AWS SDK), which `rds-sensor` runs when asked for them.
//!
//! Built with cargo-deb (`cargo install cargo-deb --version =3.8.0`, into target/tools, on
//! first use); dependencies are what dpkg-shlibdeps finds (libc6, libgcc-s1).
//!
//! `--check` installs both into a clean Debian 12 root made with debootstrap from the mirror
//! this machine uses (no Rust, no LLVM, checked), runs the agent there (`--version`,
//! `config --check`, `analyze` of a bundled capture against the same run outside,
//! `--metrics-sink stdout`), checks `dpkg -L`, then purges both and checks nothing is left.

use crate::netlab::{Expect, run as run_step, say};
use crate::{build_ebpf, cargo, root, toolchain};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

const CARGO_DEB: &str = "3.8.0";
const SUITE: &str = "bookworm";

#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Then install the packages into a clean Debian 12 root (debootstrap) and run them there.
    #[arg(long)]
    pub check: bool,
}

fn dist_dir() -> PathBuf {
    root().join("target/dist")
}

/// cargo-deb, installed into target/tools when missing.
fn cargo_deb() -> Result<PathBuf> {
    let tools = root().join("target/tools");
    let bin = tools.join("bin/cargo-deb");
    let have = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB));
    if !have {
        say(format!(
            "installing cargo-deb {CARGO_DEB} into {}",
            tools.display()
        ));
        let mut c = cargo();
        c.args(["install", "cargo-deb", "--locked", "--version"])
            .arg(format!("={CARGO_DEB}"))
            .arg("--root")
            .arg(&tools);
        run_step("install cargo-deb", &mut c, None, Expect::Ok)?;
    }
    Ok(bin)
}

/// What the packages carry beside the binaries, generated into target/dist/stage.
fn stage(bin: &Path) -> Result<()> {
    let stage = dist_dir().join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("systemd"))?;
    run_step(
        "rds-sensor assets",
        Command::new(bin).arg("assets").arg("--out").arg(&stage),
        None,
        Expect::Ok,
    )?;
    // Debian policy: man pages gzipped with -9n (no timestamp, reproducible).
    for e in std::fs::read_dir(stage.join("man"))? {
        let p = e?.path();
        run_step(
            "gzip man page",
            Command::new("gzip").args(["-9nf"]).arg(&p),
            None,
            Expect::Ok,
        )?;
    }
    let conf = run_step(
        "rds-sensor config --print-default",
        Command::new(bin).args(["config", "--print-default"]),
        None,
        Expect::Ok,
    )?;
    std::fs::write(stage.join("rds-sensor.toml"), &conf.stdout)?;
    // The unit the repository documents, with the packaged binary's path.
    let unit = std::fs::read_to_string(root().join("docs/rds-sensor.service"))?;
    ensure!(
        unit.contains("ExecStart=/usr/local/bin/rds-sensor "),
        "docs/rds-sensor.service: no ExecStart=/usr/local/bin/rds-sensor"
    );
    let unit: String = unit
        .lines()
        .filter(|l| !l.starts_with("#   "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("/usr/local/bin/", "/usr/bin/")
        .replace(
            "file:///usr/share/doc/rds-sensor/aws.md",
            "man:rds-sensor(1) file:///usr/share/doc/rds-sensor/aws.md",
        );
    std::fs::write(stage.join("systemd/rds-sensor.service"), unit + "\n")?;
    Ok(())
}

/// Builds both packages; their paths.
pub fn build() -> Result<Vec<PathBuf>> {
    toolchain::ensure_tools(&[("gzip", "gzip"), ("dpkg-shlibdeps", "dpkg-dev")])?;
    let obj = build_ebpf()?;
    for p in ["sensor-user", "sensor-cloudwatch"] {
        let mut c = cargo();
        c.args(["build", "--release", "-p", p])
            .env("RDS_SENSOR_EBPF_OBJ", &obj);
        run_step(
            &format!("cargo build --release -p {p}"),
            &mut c,
            None,
            Expect::Ok,
        )?;
    }
    stage(&root().join("target/release/rds-sensor"))?;
    let deb = cargo_deb()?;
    let out = dist_dir();
    let mut debs = Vec::new();
    for p in ["sensor-user", "sensor-cloudwatch"] {
        let mut c = Command::new(&deb);
        c.current_dir(root())
            // Stripped: the release profile keeps line tables for the benchmarks' profiles.
            .args(["-p", p, "--no-build", "--strip", "--output"])
            .arg(&out);
        let o = run_step(&format!("cargo-deb -p {p}"), &mut c, None, Expect::Ok)?;
        let path = String::from_utf8_lossy(&o.stdout)
            .trim()
            .lines()
            .last()
            .map(PathBuf::from);
        let path = path.filter(|p| p.extension().is_some_and(|e| e == "deb"));
        debs.push(path.with_context(|| format!("cargo-deb -p {p} named no .deb"))?);
    }
    for d in &debs {
        say(format!("xtask: {}", d.display()));
    }
    Ok(debs)
}

pub fn run(args: &DistArgs) -> Result<()> {
    crate::netlab::set_log_tag("dist");
    let debs = build()?;
    if args.check {
        check(&debs)?;
    }
    Ok(())
}

/// The Debian mirror this machine's apt uses (so the root comes from where packages do).
fn mirror() -> String {
    let from_sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("URIs:"))
                .flat_map(str::split_whitespace)
                .find(|u| !u.contains("security"))
                .map(str::to_string)
        });
    let from_list = || {
        std::fs::read_to_string("/etc/apt/sources.list")
            .ok()
            .and_then(|s| {
                s.lines()
                    .filter(|l| l.starts_with("deb ") && !l.contains("security"))
                    .find_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
    };
    from_sources
        .or_else(from_list)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// A debootstrapped root, deleted (and /proc unmounted) on drop.
struct Root {
    dir: PathBuf,
    proc_mounted: bool,
}

impl Root {
    fn create(dir: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_dir_all(&dir);
        let cache = dist_dir().join("debootstrap-cache");
        std::fs::create_dir_all(&cache)?;
        let mirror = mirror();
        say(format!(
            "debootstrap --variant=minbase {SUITE} {} {mirror}",
            dir.display()
        ));
        let mut c = Command::new("debootstrap");
        c.args(["--variant=minbase"])
            .arg(format!("--cache-dir={}", cache.display()))
            .arg(SUITE)
            .arg(&dir)
            .arg(&mirror);
        let mut root = Self {
            dir,
            proc_mounted: false,
        };
        run_step("debootstrap", &mut c, None, Expect::Ok)?;
        run_step(
            "mount /proc in the root",
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(root.dir.join("proc")),
            None,
            Expect::Ok,
        )?;
        root.proc_mounted = true;
        Ok(root)
    }

    /// `sh -c script` inside the root, with a plain environment.
    fn sh(&self, step: &str, script: &str, expect: Expect) -> Result<String> {
        let mut c = Command::new("chroot");
        c.arg(&self.dir)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8");
        let o = run_step(step, &mut c, None, expect)?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.proc_mounted {
            let _ = Command::new("umount").arg(self.dir.join("proc")).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn count_kind(json_lines: &str, kind: &str) -> usize {
    json_lines
        .lines()
        .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
        .count()
}

fn check(debs: &[PathBuf]) -> Result<()> {
    crate::netlab::require_root()?;
    toolchain::ensure_tools(&[("debootstrap", "debootstrap"), ("chroot", "coreutils")])?;
    let sys = Root::create(dist_dir().join(format!("rootfs-{}", std::process::id())))?;
    let tmp = sys.dir.join("tmp");
    for d in debs {
        std::fs::copy(d, tmp.join(d.file_name().unwrap()))?;
    }
    let pcap = "pg-queries.pcap";
    std::fs::copy(root().join("pcaps").join(pcap), tmp.join(pcap))?;

    // Nothing of a toolchain in the root.
    let tools = sys.sh(
        "no toolchain in the root",
        "for t in rustc cargo rustup clang llc bpf-linker gcc cc; do command -v $t; done; \
         dpkg-query -W -f '${Package}\\n' | grep -Ei '^(llvm|clang|rustc|cargo|libstd-rust)' || true",
        Expect::Ok,
    )?;
    ensure!(
        tools.trim().is_empty(),
        "the clean root has a toolchain: {tools}"
    );

    sys.sh(
        "dpkg -i (clean Debian 12)",
        "dpkg -i /tmp/*.deb",
        Expect::Ok,
    )?;
    let version = sys.sh("rds-sensor --version", "rds-sensor --version", Expect::Ok)?;
    let want = format!("rds-sensor {}", env!("CARGO_PKG_VERSION"));
    ensure!(
        version.trim() == want,
        "--version said {version:?}, not {want:?}"
    );
    sys.sh(
        "config --check of the packaged config",
        "rds-sensor config --check /etc/rds-sensor/rds-sensor.toml",
        Expect::Ok,
    )?;
    let inside = sys.sh(
        "analyze a bundled capture",
        &format!("rds-sensor analyze /tmp/{pcap} --json"),
        Expect::Ok,
    )?;
    let outside = Command::new(root().join("target/release/rds-sensor"))
        .args(["analyze", "--json"])
        .arg(root().join("pcaps").join(pcap))
        .output()?;
    let outside = String::from_utf8_lossy(&outside.stdout);
    for kind in ["query", "login", "flow"] {
        let (i, o) = (count_kind(&inside, kind), count_kind(&outside, kind));
        ensure!(
            i == o && i > 0,
            "{pcap}: {i} {kind} records installed, {o} from the build"
        );
    }
    let metrics = sys.sh(
        "--metrics-sink stdout (runs rds-sensor-cloudwatch)",
        &format!("rds-sensor analyze /tmp/{pcap} --metrics-sink stdout"),
        Expect::Ok,
    )?;
    ensure!(
        count_kind(&metrics, "cloudwatch_put_metric_data") > 0,
        "--metrics-sink stdout printed no PutMetricData request:\n{metrics}"
    );
    let files = sys.sh("dpkg -L rds-sensor", "dpkg -L rds-sensor", Expect::Ok)?;
    for want in [
        "/usr/bin/rds-sensor",
        "/etc/rds-sensor/rds-sensor.toml",
        "/usr/lib/systemd/system/rds-sensor.service",
        "/usr/share/man/man1/rds-sensor.1.gz",
        "/usr/share/man/man1/rds-sensor-run.1.gz",
        "/usr/share/bash-completion/completions/rds-sensor",
        "/usr/share/doc/rds-sensor/aws.md",
    ] {
        ensure!(
            files.lines().any(|l| l.trim() == want),
            "dpkg -L rds-sensor has no {want}:\n{files}"
        );
    }
    let conf = sys.sh(
        "the config is a conffile",
        "dpkg-query -W -f '${Conffiles}' rds-sensor",
        Expect::Ok,
    )?;
    ensure!(
        conf.contains("/etc/rds-sensor/rds-sensor.toml"),
        "conffiles: {conf}"
    );
    sys.sh(
        "purge",
        "dpkg --purge rds-sensor-cloudwatch rds-sensor",
        Expect::Ok,
    )?;
    let left = sys.sh(
        "nothing left after purge",
        "ls -d /usr/bin/rds-sensor* /etc/rds-sensor /usr/lib/systemd/system/rds-sensor.service \
         /usr/share/man/man1/rds-sensor* 2>/dev/null || true",
        Expect::Ok,
    )?;
    if !left.trim().is_empty() {
        bail!("left after dpkg --purge: {left}");
    }
    say("dist --check: both packages install, run and purge cleanly on a clean Debian 12 root");
    Ok(())
}
