//! The first stage: where events come from. Live capture loads the XDP program and reads its
//! ring buffer; offline capture reads a pcap and runs each frame through the kernel's twin.
//! Both produce the same ring-buffer records ([`crate::event`]); the drivers
//! ([`crate::agent`] live, [`crate::offline`] for files) hand them to the pipeline.

pub mod ifstats;
pub mod live;
pub mod native;
pub mod packet;
pub mod pcap;

/// Where flow summaries live: the kernel map (live) or the emulated table (offline).
pub trait FlowSource {
    fn snapshot(&mut self, out: &mut Vec<(sensor_common::FlowKey, sensor_common::FlowStats)>);
    fn remove(&mut self, key: &sensor_common::FlowKey);
    /// This flow's segments go whole into their events from now on (the kernel's `WHOLE`
    /// map; the offline twin keeps its own, see `packet::Decapsulator::mark_whole`).
    fn mark_whole(&mut self, _key: &sensor_common::FlowKey) {}
}
