//! Offline capture: `rds-sensor analyze FILE`.

use crate::{
    capture::{
        packet::{Decapsulator, LinkType},
        pcap::PcapReader,
    },
    model::FlowEnd,
    pipeline::Pipeline,
};
use anyhow::{Context, Result, bail};
use sensor_common::{SensorConfig, counter};

pub struct OfflineOptions {
    pub ports: Vec<(u16, u8)>,
    pub config: SensorConfig,
    pub flow_capacity: usize,
}

#[derive(Debug, Default)]
pub struct OfflineOutcome {
    pub frames: u64,
    pub counters: [u64; counter::COUNT as usize],
    pub flows_evicted: u64,
}

/// How often (capture time) flows are checked for expiry, as the live agent does.
const EXPIRE_EVERY_NS: u64 = 1_000_000_000;

pub fn analyze(
    path: &std::path::Path,
    opts: &OfflineOptions,
    pipeline: &mut Pipeline,
) -> Result<OfflineOutcome> {
    let mut reader =
        PcapReader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut decap = Decapsulator::new(opts.config, &opts.ports, opts.flow_capacity);
    let mut record = Vec::with_capacity(8192);
    let mut frames = 0u64;
    let mut last_expire = None::<u64>;
    let mut last_ts = 0u64;
    while let Some(frame) = reader
        .next_frame()
        .with_context(|| format!("reading {} after frame {frames}", path.display()))?
    {
        frames += 1;
        let Some(link) = LinkType::from_pcap(frame.linktype) else {
            bail!(
                "{}: frame {frames} has link type {}, which is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)",
                path.display(),
                frame.linktype
            );
        };
        let ts = frame.ts_ns;
        last_ts = last_ts.max(ts);
        decap.process(link, frame.data, frame.orig_len, ts, &mut record);
        if !record.is_empty() {
            pipeline.on_record(&record);
        }
        match last_expire {
            None => last_expire = Some(ts),
            Some(t) if ts >= t + EXPIRE_EVERY_NS => {
                pipeline.expire_flows(&mut decap.flows, ts, None)?;
                last_expire = Some(ts);
            }
            _ => {}
        }
    }
    pipeline.expire_flows(&mut decap.flows, last_ts, Some(FlowEnd::EndOfCapture))?;
    pipeline.summary(last_ts, &decap.counters)?;
    Ok(OfflineOutcome {
        frames,
        counters: decap.counters,
        flows_evicted: decap.flows.evicted,
    })
}
