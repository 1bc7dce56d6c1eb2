//! rds-sensor's user space. Data flows one way:
//!
//! capture ([`capture::live`] ring buffer, or [`capture::offline`] pcap) → [`event`]s →
//! [`pipeline`] (per-connection streams → protocol decoders) → [`records`] (flow, login, query)
//! → aggregates and detectors → [`sinks`] (stdout/JSON, CloudWatch).
//!
//! [`agent`] runs live capture and the pipeline on their own threads; [`demo`] sets up a
//! netns + veth pair ([`netns`]) and replays the bundled captures into it.

pub mod agent;
pub mod aggregate;
pub mod bounded;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod event;
pub mod flows;
pub mod ifwatch;
pub mod model;
pub mod netns;
pub mod offline;
pub mod pipeline;
pub mod ports;
pub mod reassembly;
pub mod report;
pub mod session;
pub mod sinks;
#[doc(hidden)]
pub mod testkit;
