//! Finding (or installing) a toolchain that builds the eBPF crate.
//!
//! Two routes work:
//! - **debian**: Debian's `rustc-web` (1.96, LLVM 22) ships a prebuilt `core` for
//!   bpfel-unknown-none (`libstd-rust-web-dev-bpf`); with `bpf-linker` built against LLVM 22
//!   no `build-std` is needed. aya-ebpf needs one unstable feature, hence RUSTC_BOOTSTRAP=1.
//! - **nightly**: rustup's nightly with the `rust-src` component and `-Z build-std=core`, the
//!   usual route on a developer's machine.
//!
//! [`ensure`] picks the first route that is complete; if none is, it installs the Debian route
//! when it can (root + apt + the packages exist), and otherwise stops with the exact commands.

use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-clippy",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Target directory (in sensor-ebpf/) of the object with the benchmark's programs.
pub const BENCH_TARGET_DIR: &str = "target-bench";

#[derive(Clone, Debug)]
pub enum Route {
    Debian { rustc: PathBuf, cargo: PathBuf },
    Nightly,
}

impl Route {
    pub fn describe(&self) -> String {
        match self {
            Route::Debian { rustc, .. } => format!(
                "Debian rustc-web ({}) with its prebuilt core for bpfel-unknown-none",
                rustc.display()
            ),
            Route::Nightly => "rustup nightly + rust-src with -Z build-std=core".into(),
        }
    }

    /// The command that builds the eBPF crate in `dir` (release). `bench`: with the feature of
    /// that name (the benchmark's programs), into [`BENCH_TARGET_DIR`] under `dir`, so that the
    /// production object in `dir/target` stays as it is.
    pub fn build_command(&self, dir: &Path, bench: bool) -> Command {
        let mut c = self.cargo_command(dir, "build");
        if bench {
            c.args(["--features", "bench", "--target-dir"])
                .arg(dir.join(BENCH_TARGET_DIR));
        }
        c
    }

    /// clippy with `-D warnings` on the eBPF crate, with the same toolchain and target.
    pub fn clippy_command(&self, dir: &Path) -> Command {
        let mut c = self.cargo_command(dir, "clippy");
        if let Route::Debian { .. } = self {
            // Debian's cargo-clippy / clippy-driver (rust-web-clippy) match rustc-web; rustup's
            // would look for a bpfel core in its own sysroot.
            c.env("PATH", format!("/usr/bin:{}", path_with_cargo_bin()));
        }
        c.args(["--", "-D", "warnings"]);
        c
    }

    fn cargo_command(&self, dir: &Path, verb: &str) -> Command {
        let mut c;
        match self {
            Route::Debian { rustc, cargo } => {
                c = Command::new(cargo);
                c.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
                c.args([verb, "--release", "--target", "bpfel-unknown-none"]);
            }
            Route::Nightly => {
                c = Command::new("rustup");
                c.args([
                    "run",
                    "nightly",
                    "cargo",
                    verb,
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "-Z",
                    "build-std=core",
                ]);
            }
        }
        // Cargo's own variables from the outer `cargo xtask` must not leak into the inner build.
        for v in [
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
        ] {
            c.env_remove(v);
        }
        if let Route::Nightly = self {
            c.env_remove("RUSTC");
        }
        c.env("PATH", path_with_cargo_bin());
        c.current_dir(dir);
        c
    }

    /// Whether the toolchain can run clippy on the eBPF crate.
    pub fn has_clippy(&self) -> bool {
        match self {
            Route::Debian { .. } => Path::new("/usr/bin/clippy-driver").is_file(),
            Route::Nightly => true,
        }
    }
}

/// PATH with ~/.cargo/bin, where `cargo install bpf-linker` puts the linker.
pub fn path_with_cargo_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    match cargo_bin() {
        Some(bin) if !path.split(':').any(|p| Path::new(p) == bin) => {
            format!("{}:{path}", bin.display())
        }
        _ => path,
    }
}

fn cargo_bin() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"))
}

fn which(name: &str) -> Option<PathBuf> {
    path_with_cargo_bin()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn debian_route() -> Result<Route, String> {
    let rustc = PathBuf::from("/usr/bin/rustc");
    if !rustc.is_file() {
        return Err("/usr/bin/rustc (package rustc-web) is missing".into());
    }
    let sysroot = output(Command::new(&rustc).args(["--print", "sysroot"]))
        .ok_or("/usr/bin/rustc --print sysroot failed")?;
    let core = Path::new(sysroot.trim()).join("lib/rustlib/bpfel-unknown-none");
    if !core.is_dir() {
        return Err(format!(
            "{} is missing (package libstd-rust-web-dev-bpf)",
            core.display()
        ));
    }
    let cargo = if Path::new("/usr/bin/cargo").is_file() {
        PathBuf::from("/usr/bin/cargo")
    } else {
        which("cargo").ok_or("no cargo found")?
    };
    linker_ok()?;
    Ok(Route::Debian { rustc, cargo })
}

fn nightly_route() -> Result<Route, String> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .ok_or("rustup has no nightly toolchain")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        return Err("rustup's nightly has no rust-src component".into());
    }
    linker_ok()?;
    Ok(Route::Nightly)
}

fn linker_ok() -> Result<(), String> {
    which("bpf-linker")
        .map(|_| ())
        .ok_or_else(|| "bpf-linker is not installed".to_string())
}

/// A route that builds the eBPF crate, installing the Debian one if needed and possible.
pub fn ensure(install: bool) -> Result<Route> {
    let debian = debian_route();
    if let Ok(r) = debian {
        return Ok(r);
    }
    let nightly = nightly_route();
    if let Ok(r) = nightly {
        return Ok(r);
    }
    let (d_err, n_err) = (debian.unwrap_err(), nightly.unwrap_err());
    if install
        && is_root()
        && Path::new("/usr/bin/apt-get").exists()
        && apt_has("libstd-rust-web-dev-bpf")
    {
        println!("xtask: no eBPF toolchain ({d_err}; {n_err}); installing the Debian route");
        apt_install(DEBIAN_PACKAGES)?;
        if which("bpf-linker").is_none() {
            install_bpf_linker()?;
        }
        return debian_route().map_err(|e| anyhow::anyhow!("after installing: {e}"));
    }
    bail!(
        "no toolchain can build the eBPF crate:\n  - Debian route: {d_err}\n  - nightly route: {n_err}\n\
         Either (Debian 12 with bookworm-security, as root):\n    \
         apt-get update && apt-get install -y {}\n    \
         LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@{BPF_LINKER_VERSION} --no-default-features --features llvm-22\n\
         or (rustup):\n    \
         rustup toolchain install nightly --component rust-src\n    \
         cargo install bpf-linker",
        DEBIAN_PACKAGES.join(" ")
    )
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

static APT_UPDATED: std::sync::Once = std::sync::Once::new();

fn apt_update() {
    APT_UPDATED.call_once(|| {
        println!("xtask: apt-get update");
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    });
}

fn apt_has(pkg: &str) -> bool {
    apt_update();
    output(Command::new("apt-cache").args(["policy", pkg])).is_some_and(|s| {
        s.lines()
            .any(|l| l.trim_start().starts_with("Candidate:") && !l.contains("(none)"))
    })
}

/// Installs Debian packages, printing what it does.
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    apt_update();
    println!("xtask: apt-get install -y {}", pkgs.join(" "));
    let st = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !st.success() {
        bail!("apt-get install {} failed", pkgs.join(" "));
    }
    Ok(())
}

/// Suricata, the bench's decoding peer: Debian 12 has none in main, so it comes from
/// bookworm-backports (7.0), a suite of the same Debian mirror. The package's service is not
/// left running: the bench runs Suricata on captures only.
pub fn ensure_suricata() -> Result<()> {
    if which("suricata").is_some() || Path::new("/usr/bin/suricata").is_file() {
        return Ok(());
    }
    if !is_root() {
        bail!("not root: install it with `apt-get install -t bookworm-backports suricata`");
    }
    let codename = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_default();
    let mut target = Vec::new();
    if !apt_has("suricata") {
        if codename != "bookworm" {
            bail!("no suricata package for `{codename}`");
        }
        let list = Path::new("/etc/apt/sources.list.d/rds-sensor-bench-backports.list");
        std::fs::write(
            list,
            "deb http://deb.debian.org/debian bookworm-backports main\n",
        )
        .with_context(|| format!("writing {}", list.display()))?;
        println!(
            "xtask: added bookworm-backports ({}) for Suricata",
            list.display()
        );
        let st = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get update")?;
        if !st.success() {
            bail!("apt-get update failed");
        }
        target = vec!["-t", "bookworm-backports"];
    }
    let mut args = target;
    args.push("suricata");
    apt_install(&args)?;
    // No init system in a container; where there is one, the daemon must not sniff the host.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "suricata"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    Ok(())
}

fn install_bpf_linker() -> Result<()> {
    println!(
        "xtask: LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@{BPF_LINKER_VERSION} --no-default-features --features llvm-22 (a few minutes)"
    );
    let st = Command::new("cargo")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .status()
        .context("running cargo install bpf-linker")?;
    if !st.success() {
        bail!("cargo install bpf-linker failed");
    }
    Ok(())
}

/// Runtime tools the demo and the tests use: program name → Debian package.
pub const RUNTIME_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("tcpreplay", "tcpreplay"),
    ("tshark", "tshark"),
    // The driver statistics test compares with `ethtool -S`.
    ("ethtool", "ethtool"),
    // `promtool check metrics` reads the Prometheus endpoint's text.
    ("promtool", "prometheus"),
    // The error-name tables are checked against the servers' own lists (a path: a file).
    ("/usr/share/postgresql/15/errcodes.txt", "postgresql-15"),
    ("/usr/include/mariadb/mysqld_error.h", "libmariadb-dev"),
];

/// Installs missing runtime tools when possible, else says which are missing.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| {
            if bin.starts_with('/') {
                return !Path::new(bin).is_file();
            }
            which(bin).is_none()
                && !Path::new("/usr/sbin").join(bin).is_file()
                && !Path::new("/sbin").join(bin).is_file()
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        // tshark asks whether non-root users may capture; the default answer is fine.
        return apt_install(&missing);
    }
    bail!(
        "missing tools; install them with: sudo apt-get install -y {}",
        missing.join(" ")
    )
}
