//! The first stage: where events come from. Live capture loads the XDP program and reads its
//! ring buffer; offline capture reads a pcap and runs each frame through the kernel's twin.
//! Both hand the same ring-buffer records to [`crate::pipeline::Pipeline`].

pub mod live;
pub mod offline;
pub mod packet;
pub mod pcap;
