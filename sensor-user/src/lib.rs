//! rds-sensor's user space. Data flows one way, and each stage is a module:
//!
//! [`capture`] (the live ring buffer, or a capture file through the XDP program's twin) →
//! [`event`]s → [`reassembly`] → [`session`] (TLS, later) → [`decode`]rs → [`model`] records →
//! [`aggregate`]s and [`detect`]ors → [`sinks`]. [`pipeline`] wires the stages after the
//! capture; [`agent`] (live) and [`offline`] drive it.
//!
//! The curated surface, for the `rds-sensor` binaries and for embedding, is [`cli`] (the
//! command line and the [`cli::Extension`] the CloudWatch binary plugs into), [`model`] (every
//! record), [`sinks::Sink`], [`pipeline`], [`offline`], [`aggregate`] and [`config`]. The other
//! modules are public for the crate's own tests, benches and fuzz targets only and hidden from
//! its documentation: their items may change without notice.

pub mod aggregate;
pub mod cli;
pub mod config;
pub mod model;
pub mod offline;
pub mod pipeline;
pub mod sinks;

#[doc(hidden)]
pub mod agent;
#[doc(hidden)]
pub mod bounded;
#[doc(hidden)]
pub mod capture;
#[doc(hidden)]
pub mod decode;
#[doc(hidden)]
pub mod demo;
#[doc(hidden)]
pub mod detect;
#[doc(hidden)]
pub mod event;
#[doc(hidden)]
pub mod flows;
#[doc(hidden)]
pub mod ifwatch;
#[doc(hidden)]
pub mod keyship;
#[doc(hidden)]
pub mod netns;
#[doc(hidden)]
pub mod ports;
#[doc(hidden)]
pub mod reassembly;
#[doc(hidden)]
pub mod report;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod testkit;
