//! The embedded demo: a netns + veth pair of its own, the sensor attached to it, and the
//! bundled captures replayed into it in a loop until Ctrl-C or the duration ends.

use crate::{
    agent::{self, AgentOptions, AgentReport},
    capture::live::{AttachMode, LiveOptions, Sensor},
    netns::VethPair,
    pipeline::Pipeline,
};
use anyhow::{Context, Result, bail};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

pub struct DemoOptions {
    pub pcaps: Vec<PathBuf>,
    /// A fixed replay rate, packets per second; `None`: the captures' own timing.
    pub pps: Option<u32>,
    pub mode: AttachMode,
}

pub fn find_pcaps(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    // Named whole: a relative default (`pcaps`) means nothing to someone not in the repository.
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !dir.is_dir() {
        bail!(
            "no directory {} with captures to replay: give one with --pcaps DIR (the repository's pcaps/, e.g. `--pcaps ~/rds-sensor/pcaps`)",
            shown.display()
        );
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", shown.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no .pcap or .pcapng files in {}", shown.display());
    }
    Ok(v)
}

pub async fn run(
    opts: DemoOptions,
    live: LiveOptions,
    pipeline: Pipeline,
    agent_opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<AgentReport> {
    let pair = VethPair::new("demo").context("creating the demo's netns and veth pair")?;
    let mut sensor = Sensor::load(&live)?;
    let mode = sensor.attach(&pair.outside, opts.mode)?;
    tracing::info!(
        iface = %pair.outside,
        mode,
        netns = %pair.ns.name,
        pcaps = opts.pcaps.len(),
        "demo: sensor attached; replaying the bundled captures in a loop"
    );
    // Said where the dashboard shows it: what the figures on screen are.
    match opts.pps {
        None => tracing::info!(
            "demo: recorded captures replayed with their own timing: latencies are the recorded ones"
        ),
        Some(pps) => tracing::warn!(
            pps,
            "demo: recorded captures replayed at a fixed rate: latencies are the replay's pacing, not the servers'"
        ),
    }
    let stop = Arc::new(AtomicBool::new(false));
    let replayer = {
        let stop = stop.clone();
        let pcaps = opts.pcaps.clone();
        let inside = pair.inside.clone();
        let ns = pair.ns.name.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for p in &pcaps {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut replay = std::process::Command::new("ip");
                    replay.args(["netns", "exec", &ns, "tcpreplay", "-q", "-i", &inside]);
                    if let Some(pps) = opts.pps {
                        replay.arg(format!("--pps={pps}"));
                    }
                    let out = replay.arg(p).output();
                    match out {
                        Ok(o) if o.status.success() => {}
                        Ok(o) => {
                            tracing::warn!(pcap = %p.display(), stderr = %String::from_utf8_lossy(&o.stderr).trim(), "tcpreplay failed");
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot run tcpreplay (install tcpreplay)");
                            return;
                        }
                    }
                }
            }
        })
    };
    let report = agent::run(&mut sensor, pipeline, agent_opts, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    let _ = replayer.join();
    sensor.detach()?;
    drop(sensor);
    drop(pair);
    tracing::info!("demo: detached; netns and veth pair removed");
    report
}
