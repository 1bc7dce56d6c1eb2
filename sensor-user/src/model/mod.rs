//! What the sensor reports: every record type, and the [`Record`] union the sinks take.
//!
//! A leaf: it depends on nothing in the crate, and every stage imports it downwards
//! (decoders make its records, aggregates and detectors read them, sinks write them). Time is
//! integer nanoseconds ([`Timestamp`]), formatted only when a record is serialised; a protocol
//! is an enum ([`Protocol`]). Each record serialises to one JSON object with a `"kind"`.

mod endpoint;
mod finding;
mod flow;
mod health;
mod latency;
mod session;
mod time;
mod tls;

pub use endpoint::{CommunityId, ConnId, Endpoint, Protocol, addr_string, client, ip, server};
pub use finding::{
    Action, Country, Evidence, FINDING_CONN_IDS_MAX, Finding, FirstActor, InstanceDetails,
    LoginAttribute, Organization, RdsLoginAttemptAction, RemoteIpDetails, Resource, Service,
    Severity, Tag, UserDetails,
};
pub use flow::{FlowEnd, FlowRecord, Purpose};
pub use health::{
    DecoderStats, DetectState, InstanceLearning, StreamStats, SummaryRecord, counter_map,
};
pub use latency::{LatencyRecord, Percentiles};
pub use session::{IamToken, LoginRecord, Outcome, QueryRecord};
pub use time::{Clock, Timestamp, epoch_seconds, now};
pub use tls::{Certificate, TlsExchangeRecord, TlsInfo, TlsRecord, TurnFigures, Undecryptable};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Flow(FlowRecord),
    Login(LoginRecord),
    Query(QueryRecord),
    Tls(TlsRecord),
    TlsExchange(TlsExchangeRecord),
    Latency(LatencyRecord),
    Summary(SummaryRecord),
    Finding(Box<Finding>),
}

impl Record {
    pub fn as_query(&self) -> Option<&QueryRecord> {
        match self {
            Record::Query(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_login(&self) -> Option<&LoginRecord> {
        match self {
            Record::Login(l) => Some(l),
            _ => None,
        }
    }
}
