//! Aggregates over records: per-query latency distributions ([`latency`]), and what every
//! metric sink (Prometheus, CloudWatch) shares: one server → instance resolver
//! ([`Instances`]) and one bound on dimensions ([`Dims`]), so that every sink names an instance
//! the same way and none keeps unbounded series because of what the wire says (database names
//! are the client's choice).

mod dims;
mod instances;
pub mod latency;

pub use dims::{Dims, MAX_DATABASES, MAX_INSTANCES, NO_DATABASE, OTHER};
pub use instances::Instances;
