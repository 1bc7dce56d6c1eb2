//! `cargo xtask fuzz --minutes N`: every fuzz target of `fuzz/` (packet parser, pcap reader,
//! PostgreSQL and MySQL decoders, pipeline on record sequences), N minutes in all, split evenly.
//!
//! 1. Builds `fuzz/`'s stable driver and writes the seed corpus from the bundled captures into
//!    `fuzz/corpus/<target>/` (not committed).
//! 2. With cargo-fuzz (installed with `cargo install cargo-fuzz` if missing) and rustup's
//!    nightly (installed if missing): `cargo +nightly fuzz run` (libFuzzer, AddressSanitizer)
//!    on each target. Where that cannot build (no nightly, no sanitizer runtime), or with
//!    `--stable`, the stable driver's mutation loop runs the same target functions instead
//!    (no coverage feedback), and says so.
//!
//! A crash leaves its input in `fuzz/artifacts/<target>/` and fails the task; reproduce it
//! with `fuzz/target/release/stable-driver repro TARGET FILE`, then add a regression test.

use crate::{root, run};
use anyhow::{Context, Result, bail};
use std::process::Command;

pub const TARGETS: [&str; 7] = [
    "packet", "pcap", "postgres", "mysql", "tds", "tls", "pipeline",
];

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Minutes in all, split evenly over the targets.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Only this target.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub target: Option<String>,
    /// Use the stable-Rust mutation loop instead of libFuzzer.
    #[arg(long)]
    pub stable: bool,
}

fn have(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn ensure_libfuzzer() -> Result<()> {
    if !have(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        println!("xtask: installing rustup's nightly toolchain (cargo-fuzz needs it)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !have(Command::new("cargo").args(["fuzz", "--version"])) {
        println!("xtask: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// The host's target triple, where cargo-fuzz puts its binaries.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("no host triple in rustc -vV")
}

pub fn run_fuzz(args: &FuzzArgs) -> Result<()> {
    let fuzz = root().join("fuzz");
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let secs = (args.minutes * 60 / targets.len() as u64).max(10);

    println!("xtask: building the fuzz crate's stable driver and seeding fuzz/corpus/");
    run(Command::new("cargo").current_dir(&fuzz).args([
        "build",
        "--release",
        "--bin",
        "stable-driver",
    ]))?;
    let driver = fuzz.join("target/release/stable-driver");
    run(Command::new(&driver)
        .arg("seed")
        .arg(root().join("pcaps"))
        .arg(fuzz.join("corpus")))?;

    let mut libfuzzer = !args.stable;
    if libfuzzer {
        let built = ensure_libfuzzer().and_then(|()| {
            run(Command::new("cargo").current_dir(root()).args([
                "+nightly",
                "fuzz",
                "build",
                "--fuzz-dir",
                "fuzz",
                "-O",
            ]))
        });
        if let Err(e) = built {
            println!(
                "xtask: libFuzzer targets cannot be built here ({e:#}); falling back to the \
                 stable-Rust mutation loop (no coverage feedback)"
            );
            libfuzzer = false;
        }
    }

    let mut failed = Vec::new();
    for t in &targets {
        println!(
            "xtask: fuzzing {t} for {secs} s ({})",
            if libfuzzer {
                "libFuzzer"
            } else {
                "stable driver"
            }
        );
        let ok = if libfuzzer {
            // The binary cargo-fuzz built above, run directly (no rebuild per target).
            let artifacts = fuzz.join("artifacts").join(t);
            std::fs::create_dir_all(&artifacts)?;
            Command::new(fuzz.join(format!("target/{}/release/{t}", host_triple()?)))
                .current_dir(root())
                .arg(fuzz.join("corpus").join(t))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .args([
                    format!("-max_total_time={secs}"),
                    "-max_len=65536".into(),
                    "-timeout=10".into(),
                    "-rss_limit_mb=4096".into(),
                    "-print_final_stats=1".into(),
                ])
                .status()
                .with_context(|| format!("running cargo fuzz run {t}"))?
                .success()
        } else {
            Command::new(&driver)
                .args(["run", t])
                .arg(fuzz.join("corpus").join(t))
                .arg(secs.to_string())
                .arg(fuzz.join("artifacts").join(t))
                .status()
                .with_context(|| format!("running the stable driver on {t}"))?
                .success()
        };
        if !ok {
            failed.push(*t);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found crashes in {}: inputs in fuzz/artifacts/<target>/ (reproduce with \
             fuzz/target/release/stable-driver repro TARGET FILE)",
            failed.join(", ")
        );
    }
    println!(
        "xtask: fuzz: no crash in {} target(s), {secs} s each",
        targets.len()
    );
    Ok(())
}
