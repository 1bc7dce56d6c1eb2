//! How the sensor itself is doing: the periodic summary and the figures of each stage.

use super::Timestamp;
use sensor_common::counter;
use serde::Serialize;

/// Kernel (or emulated kernel) counters by name.
pub fn counter_map(
    c: &[u64; counter::COUNT as usize],
) -> serde_json::Map<String, serde_json::Value> {
    counter::NAMES
        .iter()
        .zip(c.iter())
        .filter(|(n, _)| !n.starts_with("reserved"))
        .map(|(n, v)| ((*n).to_string(), serde_json::Value::from(*v)))
        .collect()
}

/// Periodic (live) or final (offline) health and volume figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SummaryRecord {
    pub ts: Timestamp,
    /// Seconds covered by this summary (since the previous one).
    pub interval_s: f64,
    /// Counters of the XDP program (or its offline twin), cumulative.
    pub kernel: serde_json::Map<String, serde_json::Value>,
    /// Events user space received, cumulative.
    pub events: u64,
    /// Events lost between the ring-buffer reader and the pipeline (queue full), cumulative.
    pub queue_dropped: u64,
    /// Ring-buffer records that failed validation, cumulative.
    pub bad_records: u64,
    pub flows_active: usize,
    pub flows_reported: u64,
    /// Flows whose account from delivered events was pushed out of a full table (as the
    /// kernel's LRU pushes out its own), cumulative.
    pub flows_evicted: u64,
    /// Connections the decoders are following.
    pub connections_active: usize,
    pub streams: StreamStats,
    pub decoders: DecoderStats,
    /// Queries folded into `(other)` because too many fingerprints were tracked.
    pub latency_keys_overflowed: u64,
    /// With `--detect`: findings so far, and each instance's learning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect: Option<DetectState>,
    /// Live: frames lost before the XDP program ran (the interface's and the host's receive
    /// drops, ENA's allowances), since the sensor attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<crate::capture::ifstats::InterfaceDrops>,
}

/// What the detectors are doing: anomaly findings wait for an instance's learning period, so
/// that a quiet run is not mistaken for a clean one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DetectState {
    pub findings: u64,
    pub instances: Vec<InstanceLearning>,
}

/// One instance's learning.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InstanceLearning {
    pub instance: String,
    /// Anomaly findings are held back until then (patterns such as brute force are not).
    pub learning: bool,
    pub learning_until: Timestamp,
    /// What it has learned: users, client networks, statement classes.
    pub users: usize,
    pub networks: usize,
    pub statement_classes: usize,
}

/// Defines a struct of cumulative `u64` figures and its sum (`+=`) from one list of fields, so
/// that a field added later is summed too: the live agent adds its workers' figures up.
macro_rules! figures {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident: u64,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $name { $($(#[$fm])* pub $f: u64,)* }

        impl core::ops::AddAssign<&$name> for $name {
            fn add_assign(&mut self, o: &$name) {
                $(self.$f += o.$f;)*
            }
        }
    };
}

figures! {
/// Cumulative reassembly figures.
pub struct StreamStats {
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Connections forgotten because the table was full.
    pub connections_evicted: u64,
    /// Connections first seen mid-stream (no SYN).
    pub mid_stream: u64,
    /// Handshakes without payload forgotten because too many were pending (a SYN flood).
    pub handshakes_evicted: u64,
    pub retransmits: u64,
    pub out_of_order: u64,
    /// Holes declared lost, and their bytes.
    pub lost_segments: u64,
    pub lost_bytes: u64,
    /// Out-of-order segments discarded because the hold buffer was full.
    pub held_overflow: u64,
    /// Times a connection's holes were given up because all connections together held
    /// `max_held_total` bytes.
    pub held_budget_flushes: u64,
    /// Events that waited for bytes of the other direction they acknowledge (the two
    /// directions read through different receive queues, or bytes the mirror lost).
    pub waited_for_peer: u64,
}
}

figures! {
/// Cumulative decoder health figures (summed over connections by the pipeline).
pub struct DecoderStats {
    /// Times a decoder lost message framing and found it again.
    pub resyncs: u64,
    /// Gaps reported to decoders, and the bytes they covered.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Bytes a decoder could not attribute to a message and skipped.
    pub skipped_bytes: u64,
    /// Requests dropped because a connection had too many outstanding.
    pub pending_overflow: u64,
    /// Sessions that switched to TLS.
    pub tls_sessions: u64,
    /// TLS sessions read with a client key log, and those that could not be, by reason
    /// (see [`super::Undecryptable`]).
    pub tls_decrypted: u64,
    pub tls_no_key: u64,
    pub tls_bad_key: u64,
    pub tls_suite: u64,
    pub tls_version: u64,
    pub tls_no_handshake: u64,
    pub tls_not_tls: u64,
    /// Of the decrypted sessions, those whose records waited for keys that came late.
    pub tls_keys_late: u64,
    /// TLS records opened, and records lost or unreadable inside sessions being read.
    pub tls_records: u64,
    pub tls_records_lost: u64,
    /// Messages that were malformed (lengths that lie, unknown types in a strict position).
    pub malformed: u64,
}
}

impl DecoderStats {
    fn undecryptable_mut(&mut self, why: super::Undecryptable) -> &mut u64 {
        use super::Undecryptable::*;
        match why {
            NoKey => &mut self.tls_no_key,
            BadKey => &mut self.tls_bad_key,
            Suite => &mut self.tls_suite,
            Version => &mut self.tls_version,
            NoHandshake => &mut self.tls_no_handshake,
            NotTls => &mut self.tls_not_tls,
        }
    }

    /// Counts a TLS session the sensor could not read.
    pub fn count_undecryptable(&mut self, why: super::Undecryptable) {
        *self.undecryptable_mut(why) += 1;
    }

    /// TLS sessions not read for `why`.
    pub fn undecryptable(&self, why: super::Undecryptable) -> u64 {
        let mut copy = *self;
        *copy.undecryptable_mut(why)
    }
}
