//! Offline capture: `rds-sensor analyze FILE`.

use crate::{
    capture::{
        packet::{Decapsulator, LinkType},
        pcap::{PcapError, PcapReader},
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
    /// The capture ended inside a record (a full disk, a capture killed mid-write): what,
    /// and where. The frames before it were analyzed.
    pub cut_off: Option<String>,
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
    let mut cut_off = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            // Cut off after whole frames: they are reported (as tshark and Suricata do),
            // and the caller warns. A file cut before any frame is no capture to speak of.
            Err(PcapError::Truncated { what, offset }) if frames > 0 => {
                cut_off = Some(format!("truncated {what} at byte {offset}"));
                break;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {} after frame {frames}", path.display()));
            }
        };
        frames += 1;
        let Some(link) = LinkType::from_pcap(frame.linktype) else {
            bail!(
                "{}: frame {frames} has link type {}, which is not supported (Ethernet, Linux cooked SLL/SLL2, raw IP and BSD loopback are)",
                path.display(),
                frame.linktype
            );
        };
        let ts = frame.ts_ns;
        last_ts = last_ts.max(ts);
        decap.process(link, frame.data, frame.orig_len, ts, &mut record);
        if !record.is_empty() {
            pipeline.on_record(&record);
            pipeline.apply_marks(&mut |k| decap.mark_whole(k));
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
    pipeline.summary(last_ts, &decap.counters, None)?;
    Ok(OfflineOutcome {
        frames,
        cut_off,
        counters: decap.counters,
        flows_evicted: decap.flows.evicted,
    })
}
