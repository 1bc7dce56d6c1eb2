//! `cargo xtask …`: every set-up step a fresh machine needs, then the task itself.

mod dbserver;
mod dist;
mod fuzz;
mod modgraph;
mod netlab;
mod pcapfmt;
mod pcaps;
mod scenarios;
mod toolchain;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run and test rds-sensor")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build and the tests need (apt packages, bpf-linker), if missing.
    Setup,
    /// Build the XDP object (sensor-ebpf) for bpfel-unknown-none.
    BuildEbpf,
    /// Build the XDP object and the rds-sensor binary (release) with the object embedded.
    Build,
    /// Run the sensor: with no --iface, the embedded demo on its own netns + veth pair.
    Run {
        /// Attach to this interface instead of running the demo.
        #[arg(long, short)]
        iface: Option<String>,
        /// The demo on real servers (PostgreSQL, MariaDB) with a live workload and attacks,
        /// mirrored through VXLAN as AWS does, instead of replaying the bundled captures.
        #[arg(long, conflicts_with = "iface")]
        live: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// More arguments for rds-sensor (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, BPF_PROG_TEST_RUN fixtures, veth + tcpreplay integration.
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// The benchmark suite: every figure beside a baseline measured in the same run; writes
    /// target/bench/results.json.
    Bench {
        /// A short smoke run (CI): same figures, fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// One part only: xdp, live, cpu, decoder, peer, tls or memory (for profiling).
        #[arg(long)]
        only: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on the user-space and eBPF crates.
    Lint,
    /// Fuzz every target of fuzz/ (libFuzzer via cargo-fuzz, else a stable-Rust loop).
    Fuzz(fuzz::FuzzArgs),
    /// Record the bundled captures from real PostgreSQL and MariaDB servers (root; netns).
    Pcaps(pcaps::PcapsArgs),
    /// Record the labelled detection corpus (pcaps/scenarios/) from real servers (root; netns).
    Scenarios(scenarios::ScenariosArgs),
    /// Debian packages (rds-sensor, rds-sensor-cloudwatch) into target/dist; `--check` installs
    /// them into a clean Debian 12 root and runs them there (root).
    Dist(dist::DistArgs),
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn ebpf_object() -> PathBuf {
    root().join("sensor-ebpf/target/bpfel-unknown-none/release/sensor-ebpf")
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

/// Runs `cargo test`, passing its output through, and ends with one closing line that sums
/// every test binary's `test result:` line (cargo's own last line is the doc-tests').
fn run_tests(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let st = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !st.success() {
        bail!("cargo test failed ({st})");
    }
    Ok(())
}

fn build_ebpf() -> Result<PathBuf> {
    build_ebpf_object(false)
}

/// Builds the XDP object. `bench`: with the benchmark's programs (feature `bench`), into
/// sensor-ebpf/target-bench; the production object, which the tests embed, stays as it is.
fn build_ebpf_object(bench: bool) -> Result<PathBuf> {
    let route = toolchain::ensure(true)?;
    println!("xtask: building sensor-ebpf with {}", route.describe());
    let dir = root().join("sensor-ebpf");
    run(&mut route.build_command(&dir, bench))?;
    let obj = if bench {
        dir.join(toolchain::BENCH_TARGET_DIR)
            .join("bpfel-unknown-none/release/sensor-ebpf")
    } else {
        ebpf_object()
    };
    if !obj.is_file() {
        bail!("the eBPF build succeeded but {} is missing", obj.display());
    }
    Ok(obj)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn build_user(obj: &Path) -> Result<PathBuf> {
    run(cargo()
        .args(["build", "--release", "-p", "sensor-user"])
        .env("RDS_SENSOR_EBPF_OBJ", obj))?;
    Ok(root().join("target/release/rds-sensor"))
}

/// `rds-sensor-cloudwatch` (the AWS SDK's build takes minutes, so only `build` makes it).
fn build_cloudwatch(obj: &Path) -> Result<PathBuf> {
    run(cargo()
        .args(["build", "--release", "-p", "sensor-cloudwatch"])
        .env("RDS_SENSOR_EBPF_OBJ", obj))?;
    Ok(root().join("target/release/rds-sensor-cloudwatch"))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => {
            toolchain::ensure(true)?;
            toolchain::ensure_tools(toolchain::RUNTIME_TOOLS)?;
            println!("xtask: ready");
            Ok(())
        }
        Cmd::BuildEbpf => build_ebpf().map(|p| println!("xtask: {}", p.display())),
        Cmd::Build => {
            let obj = build_ebpf()?;
            let bin = build_user(&obj)?;
            let cw = build_cloudwatch(&obj)?;
            println!("xtask: {}\nxtask: {}", bin.display(), cw.display());
            Ok(())
        }
        Cmd::Run {
            iface,
            live,
            duration,
            args,
        } => {
            if !toolchain::is_root() {
                bail!(
                    "the sensor loads an XDP program and (for the demo) makes a netns: run as root, \
                     e.g. `sudo -E cargo xtask run`"
                );
            }
            let tools: &[(&str, &str)] = if iface.is_some() {
                &toolchain::RUNTIME_TOOLS[..1]
            } else {
                &toolchain::RUNTIME_TOOLS[..2]
            };
            toolchain::ensure_tools(tools)?;
            let obj = build_ebpf()?;
            let bin = build_user(&obj)?;
            if live {
                let mut extra: Vec<String> = Vec::new();
                if let Some(d) = duration {
                    extra.extend(["--duration".to_string(), d.to_string()]);
                }
                extra.extend(args.iter().cloned());
                let st = scenarios::live_demo(&bin, &extra)?;
                if !st.success() {
                    bail!("the sensor exited with {st}");
                }
                return Ok(());
            }
            let mut c = Command::new(bin);
            match &iface {
                Some(i) => c.args(["run", "--iface", i]),
                // Detection on: the captures' brute force, weak and cleartext logins and IAM
                // tokens raise findings on the dashboard.
                None => c.args(["demo", "--pcaps"]).arg(root().join("pcaps")).args([
                    "--summary-interval",
                    "2",
                    "--detect",
                ]),
            };
            if let Some(d) = duration {
                c.args(["--duration", &d.to_string()]);
            }
            c.args(&args);
            run(&mut c)
        }
        Cmd::Test { filter } => {
            toolchain::ensure_tools(toolchain::RUNTIME_TOOLS)?;
            let obj = build_ebpf()?;
            let mut c = cargo();
            // --no-fail-fast: every test binary runs, so the closing line counts them all.
            c.args(["test", "--workspace", "--no-fail-fast"])
                // Tests talk to a local CloudWatch emulator only: never let the SDK probe the
                // EC2 instance-metadata address for a region or credentials.
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("RDS_SENSOR_EBPF_OBJ", &obj)
                .env("RDS_SENSOR_PCAPS", root().join("pcaps"));
            if toolchain::is_root() {
                // The kernel tests must run, not skip, wherever they can.
                c.env("RDS_SENSOR_REQUIRE_KERNEL_TESTS", "1");
            } else {
                println!(
                    "xtask: not root: the kernel (XDP, netns) tests will say they are skipped"
                );
            }
            c.arg("--");
            if let Some(f) = filter {
                c.arg(f);
            }
            // Tests that touch kernel state (netns, XDP attach) must not run concurrently.
            c.arg("--test-threads=1");
            run_tests(&mut c)
        }
        Cmd::Fuzz(args) => fuzz::run_fuzz(&args),
        Cmd::Pcaps(args) => pcaps::run(&args),
        Cmd::Scenarios(args) => scenarios::run(&args),
        Cmd::Dist(args) => dist::run(&args),
        Cmd::Bench { quick, only } => {
            toolchain::ensure_tools(toolchain::RUNTIME_TOOLS)?;
            if only.as_deref().is_none_or(|o| o == "peer") {
                // The peer is a baseline, not a dependency: without it the row says so.
                if let Err(e) = toolchain::ensure_suricata() {
                    println!("xtask: no Suricata for the peer row: {e:#}");
                }
            }
            let obj = build_ebpf_object(true)?;
            let mut c = cargo();
            c.args(["bench", "-p", "sensor-user", "--bench", "suite"])
                .env("RDS_SENSOR_EBPF_OBJ", &obj)
                .env("RDS_SENSOR_PCAPS", root().join("pcaps"))
                .env("RDS_SENSOR_BENCH_OUT", root().join("target/bench"));
            c.arg("--");
            if quick {
                c.arg("--quick");
            }
            if let Some(part) = only {
                c.args(["--only", &part]);
            }
            run(&mut c)
        }
        Cmd::Lint => {
            // Data flows one way: no import cycle among the modules of the library crates.
            for (name, dir) in [
                ("sensor-user", "sensor-user/src"),
                ("sensor-cloudwatch", "sensor-cloudwatch/src"),
            ] {
                modgraph::check_acyclic(name, &root().join(dir))?;
            }
            println!("xtask: no import cycle among sensor-user's or sensor-cloudwatch's modules");
            run(cargo().args(["fmt", "--all", "--", "--check"]))?;
            run(cargo().args([
                "fmt",
                "--manifest-path",
                "sensor-ebpf/Cargo.toml",
                "--",
                "--check",
            ]))?;
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            let route = toolchain::ensure(true)?;
            if !route.has_clippy() {
                toolchain::apt_install(&["rust-web-clippy"])?;
            }
            run(&mut route.clippy_command(&root().join("sensor-ebpf")))
        }
    }
}
