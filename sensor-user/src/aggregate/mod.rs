//! Aggregates over records: per-query latency reports ([`latency`]), and the one metrics model
//! every metric sink (Prometheus, CloudWatch, the dashboard) renders: [`QueryFigures`] (counts,
//! total time, [`Distribution`]s of latency), one server → instance resolver
//! ([`Instances`]) and one bound on dimensions ([`Dims`]), so that every sink names an instance
//! the same way and none keeps unbounded series because of what the wire says (database names
//! are the client's choice).

mod dims;
pub mod discovered;
mod distribution;
mod figures;
mod instances;
pub mod latency;

pub use dims::{Dims, MAX_DATABASES, MAX_INSTANCES, NO_DATABASE, OTHER};
pub use distribution::{Bucket, BucketView, Distribution, MAX_US, SIGFIG, template};
pub use figures::QueryFigures;
pub use instances::Instances;
