//! The contract between the XDP program (sensor-ebpf) and user space (sensor-user).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so the kernel and user space agree
//! byte for byte; no `bool` or enum is stored in a map value or an event (their bit patterns
//! are not guaranteed across the boundary). Sizes and alignments are pinned by const asserts.
//! `aya::Pod` is implemented only with the `user` feature, so the eBPF build never sees aya.
#![no_std]

/// Names of the maps and the program in the eBPF object. User space looks them up by these.
pub mod names {
    pub const PROGRAM: &str = "rds_sensor";
    /// Parses the inside of GENEVE frames; tail-called from [`PROGRAM`] through [`JUMP`].
    pub const GENEVE_PROGRAM: &str = "rds_sensor_geneve";
    /// Program array of tail calls; slot 0 is [`GENEVE_PROGRAM`].
    pub const JUMP: &str = "JUMP";
    /// Ring buffer of [`EventHeader`](super::EventHeader) + payload bytes: the first of
    /// [`RINGS`].
    pub const EVENTS: &str = "EVENTS";
    /// The event rings, one per CPU up to [`MAX_RINGS`](super::MAX_RINGS) (a CPU writes to
    /// ring `cpu % SensorConfig::rings`). One ring shared by every receive queue is one
    /// producer lock and one consumer for all of them; a ring per CPU is neither.
    pub const RINGS: [&str; super::MAX_RINGS] = [
        EVENTS, "EVENTS_1", "EVENTS_2", "EVENTS_3", "EVENTS_4", "EVENTS_5", "EVENTS_6", "EVENTS_7",
    ];
    /// LRU hash of [`FlowKey`](super::FlowKey) → [`FlowStats`](super::FlowStats).
    pub const FLOWS: &str = "FLOWS";
    /// Per-CPU array with one [`Counters`](super::Counters).
    pub const COUNTERS: &str = "COUNTERS";
    /// Array with one [`PortTable`](super::PortTable): the application protocol of every port.
    pub const DB_PORTS: &str = "DB_PORTS";
    /// Array with one [`SensorConfig`](super::SensorConfig).
    pub const CONFIG: &str = "CONFIG";
    /// Per-CPU scratch [`EventBuf`](super::EventBuf) that an event is assembled in before output.
    pub const SCRATCH: &str = "SCRATCH";
    /// LRU hash of [`FlowKey`](super::FlowKey) → `u8`: flows whose segments go whole into
    /// their events (up to [`MAX_WHOLE`](super::MAX_WHOLE) bytes), not head + tail. User space
    /// marks a TLS session it reads with keys: its records are only readable whole.
    pub const WHOLE: &str = "WHOLE";
}

/// The kernel/user contract's version: an object built for another one is refused at load
/// (its maps are checked by name, `names::WHOLE` is new in 2) with an error that says to
/// rebuild it. 3: the event rings ([`names::RINGS`], `SensorConfig::rings`).
pub const ABI_VERSION: u32 = 3;

/// Event rings in the object at most. Eight covers the receive queues ENA gives XDP on most
/// instance sizes (half the maximum, see docs/aws.md); CPUs beyond share rings.
pub const MAX_RINGS: usize = 8;

/// Application protocols, as stored in `DB_PORTS` and carried in every event.
pub mod proto {
    pub const NONE: u8 = 0;
    pub const POSTGRES: u8 = 1;
    pub const MYSQL: u8 = 2;
    pub const MSSQL: u8 = 3;
    pub const ORACLE: u8 = 4;
    /// A database port the operator configured without saying which protocol it speaks.
    pub const UNKNOWN: u8 = 255;

    pub const fn name(p: u8) -> &'static str {
        match p {
            POSTGRES => "postgresql",
            MYSQL => "mysql",
            MSSQL => "mssql",
            ORACLE => "oracle",
            NONE => "none",
            _ => "unknown",
        }
    }
}

/// Default database ports: PostgreSQL, MySQL/MariaDB, SQL Server, Oracle.
pub const DEFAULT_DB_PORTS: [(u16, u8); 4] = [
    (5432, proto::POSTGRES),
    (3306, proto::MYSQL),
    (1433, proto::MSSQL),
    (1521, proto::ORACLE),
];

/// IANA VXLAN port; AWS VPC Traffic Mirroring sends to it.
pub const VXLAN_PORT: u16 = 4789;
/// IANA GENEVE port; an AWS Gateway Load Balancer sends to its appliances on it (a mirror
/// session whose target is a GWLB endpoint arrives as GENEVE around VXLAN).
pub const GENEVE_PORT: u16 = 6081;
/// VNI value of a segment that arrived without encapsulation (SPAN port, capture on the host).
/// Real VNIs are 24-bit, so this cannot collide.
pub const NO_VNI: u32 = u32::MAX;

/// Upper bound of the payload cap (head + tail bytes of a segment longer than the cap).
pub const MAX_PAYLOAD_CAP: usize = 4096;
/// Upper bound of a segment a marked flow ([`names::WHOLE`]) sends whole: a 9001-byte MTU (the
/// VPC default, and a mirror target's) leaves at most 8961 bytes of TCP payload.
pub const MAX_WHOLE: usize = 9216;
/// Default payload bytes per event: a whole segment at a 1500-byte MTU fits.
pub const DEFAULT_PAYLOAD_CAP: u16 = 1536;
/// Default bytes of a segment's end kept when the segment is longer than the cap: enough for a
/// PostgreSQL CommandComplete + ReadyForQuery or MySQL's final OK/EOF, which end a response.
pub const DEFAULT_TAIL_CAP: u16 = 128;

/// Direction of a segment relative to the database server.
pub mod direction {
    /// Client → server (a request).
    pub const TO_SERVER: u8 = 0;
    /// Server → client (a response).
    pub const TO_CLIENT: u8 = 1;
}

/// TCP flag bits, as on the wire (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Per-CPU counters. Every packet the program sees is accounted in at least one of them, and
/// no drop is silent.
pub mod counter {
    /// Every frame the program ran on.
    pub const PACKETS: u32 = 0;
    /// Frames to the VXLAN port with a valid VXLAN header (I flag set).
    pub const VXLAN: u32 = 1;
    /// Frames to the VXLAN port whose VXLAN header is missing, short or lacks the I flag.
    pub const VXLAN_BAD: u32 = 2;
    /// TCP segments to or from a database port (after decapsulation), with or without payload.
    pub const DB_SEGMENTS: u32 = 3;
    /// Database segments that carry payload.
    pub const DB_PAYLOAD_SEGMENTS: u32 = 4;
    /// Events written to the ring buffer.
    pub const EVENTS_SENT: u32 = 5;
    /// Events lost because the ring buffer was full.
    pub const EVENTS_DROPPED: u32 = 6;
    /// Database segments whose payload is shorter in the frame than the IP header says
    /// (mirror PacketLength or MTU truncation).
    pub const TRUNCATED: u32 = 7;
    /// Frames whose headers could not be parsed (short, bad lengths, bad TCP offset).
    pub const MALFORMED: u32 = 8;
    /// IP fragments (non-first fragments carry no TCP header and cannot be attributed).
    pub const FRAGMENTS: u32 = 9;
    /// Flow-table updates that failed (the LRU map could not insert).
    pub const FLOW_UPDATE_FAILED: u32 = 10;
    /// Verdict XDP_PASS.
    pub const PASSED: u32 = 11;
    /// Verdict XDP_DROP (consumed mirror copies).
    pub const DROPPED: u32 = 12;
    /// Non-database TCP/UDP/other traffic seen (inner, after decapsulation).
    pub const NON_DB: u32 = 13;
    /// Database segments whose payload was longer than the cap (head + tail were sent).
    pub const CAPPED: u32 = 14;
    /// Frames to the GENEVE port with a valid GENEVE header (decapsulated, then parsed again).
    pub const GENEVE: u32 = 15;
    pub const COUNT: u32 = 16;

    /// Names used in logs, JSON and metrics, indexed by counter.
    pub const NAMES: [&str; COUNT as usize] = [
        "packets",
        "vxlan",
        "vxlan_bad",
        "db_segments",
        "db_payload_segments",
        "events_sent",
        "events_dropped_ring_full",
        "truncated",
        "malformed",
        "fragments",
        "flow_update_failed",
        "passed",
        "dropped",
        "non_db",
        "capped",
        "geneve",
    ];
}

/// The `DB_PORTS` map's one value: the application protocol ([`proto`]) of every TCP port,
/// 0 if none. One value rather than an entry per port: one lookup per segment, not two.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PortTable {
    pub proto: [u8; 65536],
}

impl PortTable {
    pub fn new(ports: &[(u16, u8)]) -> Self {
        let mut t = Self { proto: [0; 65536] };
        for &(port, proto) in ports {
            t.proto[port as usize] = proto;
        }
        t
    }
}

/// The per-CPU counters, one value in the `COUNTERS` map (one lookup per packet instead of
/// one per counter), indexed by [`counter`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub v: [u64; counter::COUNT as usize],
}

/// Bits of [`SensorConfig::flags`].
pub mod config_flags {
    /// Consume VXLAN mirror copies with XDP_DROP after accounting (the host stack would only
    /// answer them with ICMP port unreachable).
    pub const DROP_MIRRORED: u16 = 1 << 0;
    /// Also send events for SYN/FIN/RST segments without payload.
    pub const CONTROL_EVENTS: u16 = 1 << 1;
}

/// Runtime settings user space writes into the `CONFIG` map before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SensorConfig {
    /// UDP destination port of VXLAN, host byte order.
    pub vxlan_port: u16,
    /// Payload bytes an event may carry (≤ [`MAX_PAYLOAD_CAP`]).
    pub payload_cap: u16,
    /// When a payload is longer than `payload_cap`, how many of those bytes are the segment's
    /// last bytes (the rest are its first bytes).
    pub tail_cap: u16,
    /// [`config_flags`] bits.
    pub flags: u16,
    /// 0: the ring buffer's own adaptive wakeups. Otherwise records are written without
    /// waking the reader (which drains on a short timer) until this many bytes are waiting,
    /// then one forced wakeup: a wakeup costs several µs, far more than a record.
    pub wakeup_bytes: u32,
    /// UDP destination port of GENEVE, host byte order; 0 turns GENEVE off.
    pub geneve_port: u16,
    /// Event rings in use (1 to [`MAX_RINGS`]); a CPU writes to ring `cpu % rings`. 0 is 1.
    pub rings: u16,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            vxlan_port: VXLAN_PORT,
            payload_cap: DEFAULT_PAYLOAD_CAP,
            tail_cap: DEFAULT_TAIL_CAP,
            flags: config_flags::DROP_MIRRORED | config_flags::CONTROL_EVENTS,
            wakeup_bytes: 0,
            geneve_port: GENEVE_PORT,
            rings: 1,
        }
    }
}

/// A TCP connection to a database as seen through one mirror session, normalised so that both
/// directions share one key. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    /// VXLAN Network Identifier (the mirror session), or [`NO_VNI`].
    pub vni: u32,
}

impl FlowKey {
    pub const fn is_ipv4(&self) -> bool {
        is_v4_mapped(&self.client_addr)
    }
}

pub const fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[0] == 0
        && a[1] == 0
        && a[2] == 0
        && a[3] == 0
        && a[4] == 0
        && a[5] == 0
        && a[6] == 0
        && a[7] == 0
        && a[8] == 0
        && a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff
}

/// Per-flow summary kept in the kernel's LRU map and updated with atomic adds (the two
/// directions of one flow can arrive on different CPUs: their outer UDP source ports differ).
/// Indexes `[0]`/`[1]` are [`direction`] values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowStats {
    /// Kernel monotonic time of the first and last segment, ns.
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: [u64; 2],
    /// Inner IP datagram bytes, from the IP header (true size even when the frame was truncated).
    pub bytes: [u64; 2],
    /// TCP payload bytes, from the IP header.
    pub payload_bytes: [u64; 2],
    /// SYN without ACK (client opens).
    pub syn: u64,
    /// SYN with ACK (server accepts).
    pub syn_ack: u64,
    pub fin: [u64; 2],
    pub rst: u64,
    /// Segments whose payload was cut short in the frame.
    pub truncated: u64,
}

impl FlowStats {
    /// Counts one segment (the kernel does the same with atomic adds).
    #[inline]
    pub fn add_segment(
        &mut self,
        dir: u8,
        flags: u8,
        ip_len: u32,
        payload_len: u32,
        truncated: bool,
        ts: u64,
    ) {
        let d = (dir & 1) as usize;
        self.last_ns = ts;
        self.packets[d] += 1;
        self.bytes[d] += ip_len as u64;
        self.payload_bytes[d] += payload_len as u64;
        if flags & tcp_flags::SYN != 0 {
            if flags & tcp_flags::ACK != 0 {
                self.syn_ack += 1;
            } else {
                self.syn += 1;
            }
        }
        if flags & tcp_flags::FIN != 0 {
            self.fin[d] += 1;
        }
        if flags & tcp_flags::RST != 0 {
            self.rst += 1;
        }
        if truncated {
            self.truncated += 1;
        }
    }

    /// Adds another account of the same flow (the kernel's and the delivered events').
    #[inline]
    pub fn merge(&mut self, o: &FlowStats) {
        self.first_ns = if self.first_ns < o.first_ns {
            self.first_ns
        } else {
            o.first_ns
        };
        self.last_ns = if self.last_ns > o.last_ns {
            self.last_ns
        } else {
            o.last_ns
        };
        for d in 0..2 {
            self.packets[d] += o.packets[d];
            self.bytes[d] += o.bytes[d];
            self.payload_bytes[d] += o.payload_bytes[d];
            self.fin[d] += o.fin[d];
        }
        self.syn += o.syn;
        self.syn_ack += o.syn_ack;
        self.rst += o.rst;
        self.truncated += o.truncated;
    }
}

/// Fixed part of every ring-buffer record. `head_len` payload bytes from the start of the
/// segment follow it, then `tail_len` bytes that end at `captured_len`.
///
/// Why head *and* tail: a request starts at the head of a client segment, but a response's end
/// marker (PostgreSQL ReadyForQuery, MySQL's final OK/EOF) sits at the end of a server segment.
/// When the payload fits in the cap the whole of it is in the head and `tail_len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EventHeader {
    /// Kernel monotonic time (bpf_ktime_get_ns) when the frame arrived; pcap time offline.
    pub ts_ns: u64,
    pub key: FlowKey,
    /// TCP sequence and acknowledgement numbers, host byte order.
    pub seq: u32,
    pub ack: u32,
    /// Frame length as received (outer headers included).
    pub wire_len: u32,
    /// TCP payload length according to the inner IP header.
    pub payload_len: u32,
    /// TCP payload bytes actually present in the frame (less than `payload_len` if truncated).
    pub captured_len: u32,
    pub head_len: u16,
    pub tail_len: u16,
    pub tcp_flags: u8,
    /// [`direction`] value.
    pub direction: u8,
    /// [`proto`] value of the server port.
    pub proto: u8,
    /// Inner IP version, 4 or 6.
    pub ip_version: u8,
    /// Inner IP datagram length from its header: what the flow summary counts in `bytes`.
    /// A delivered event is its segment's only account (the kernel leaves `FLOWS` to user
    /// space then, and updates it itself only when the event could not be delivered).
    pub ip_len: u32,
}

impl EventHeader {
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// Total payload bytes that follow the header.
    pub const fn data_len(&self) -> usize {
        self.head_len as usize + self.tail_len as usize
    }

    /// Offset in the segment's payload where the tail bytes start.
    pub const fn tail_offset(&self) -> u32 {
        self.captured_len - self.tail_len as u32
    }
}

/// The per-CPU scratch value in which the kernel assembles one record before copying the used
/// part (`EventHeader::SIZE + data_len()`) into the ring buffer.
///
/// `data` holds the longest head ([`MAX_WHOLE`], a marked flow's whole segment) plus the
/// longest tail ([`MAX_PAYLOAD_CAP`]) because the verifier bounds the two lengths separately,
/// not their sum: the tail's copy at offset `head_len` must be provably inside the value. (A
/// per-CPU value may not exceed 32 KiB.)
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EventBuf {
    pub hdr: EventHeader,
    pub data: [u8; MAX_WHOLE + MAX_PAYLOAD_CAP],
}

/// [`split_payload`], for a flow marked whole (`whole`): a segment the caps would cut goes
/// whole when it fits [`MAX_WHOLE`]. Returns (head, tail, whether the caps cut it).
pub const fn capture_split(
    captured: u32,
    payload_cap: u16,
    tail_cap: u16,
    whole: bool,
) -> (u16, u16, bool) {
    let (head, tail) = split_payload(captured, payload_cap, tail_cap);
    let cut = (head as u32 + tail as u32) < captured;
    if cut && whole && captured as usize <= MAX_WHOLE {
        return (captured as u16, 0, false);
    }
    (head, tail, cut)
}

/// Splits a payload of `captured` bytes into (head, tail) lengths under the caps, the rule the
/// kernel applies. Shared so that offline analysis makes byte-identical events.
pub const fn split_payload(captured: u32, payload_cap: u16, tail_cap: u16) -> (u16, u16) {
    let cap = if payload_cap as usize > MAX_PAYLOAD_CAP {
        MAX_PAYLOAD_CAP as u32
    } else {
        payload_cap as u32
    };
    if captured <= cap {
        return (captured as u16, 0);
    }
    let tail = if tail_cap as u32 > cap {
        cap
    } else {
        tail_cap as u32
    };
    ((cap - tail) as u16, tail as u16)
}

const _: () = {
    assert!(core::mem::size_of::<FlowKey>() == 40);
    assert!(core::mem::align_of::<FlowKey>() == 4);
    assert!(core::mem::size_of::<FlowStats>() == 112);
    assert!(core::mem::align_of::<FlowStats>() == 8);
    assert!(core::mem::size_of::<EventHeader>() == 80);
    assert!(core::mem::align_of::<EventHeader>() == 8);
    assert!(core::mem::size_of::<SensorConfig>() == 16);
    assert!(core::mem::size_of::<Counters>() == 8 * counter::COUNT as usize);
    assert!(core::mem::size_of::<EventBuf>() == 80 + MAX_WHOLE + MAX_PAYLOAD_CAP);
    // A per-CPU map value is at most 32 KiB (with the program's scratch words).
    assert!(core::mem::size_of::<EventBuf>() + 64 <= 32 * 1024);
    assert!(MAX_WHOLE <= u16::MAX as usize);
    assert!(MAX_PAYLOAD_CAP.is_power_of_two());
    assert!(DEFAULT_PAYLOAD_CAP as usize <= MAX_PAYLOAD_CAP);
    assert!(counter::NAMES.len() == counter::COUNT as usize);
};

#[cfg(feature = "user")]
mod pod {
    // Each: #[repr(C)], made only of integers and integer arrays, with no implicit padding
    // (sizes are asserted above), so every bit pattern is valid.
    /// SAFETY: see above.
    macro_rules! pod {
        ($($t:ident),*) => {$(
            // SAFETY: see above.
            unsafe impl aya::Pod for super::$t {}
        )*};
    }
    pod!(
        FlowKey,
        FlowStats,
        SensorConfig,
        EventHeader,
        Counters,
        PortTable
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_small_payload_goes_whole_into_head() {
        assert_eq!(split_payload(100, 1536, 128), (100, 0));
        assert_eq!(split_payload(1536, 1536, 128), (1536, 0));
    }

    #[test]
    fn split_large_payload_keeps_head_and_tail() {
        assert_eq!(split_payload(8000, 1536, 128), (1408, 128));
        // a tail cap above the cap is clamped
        assert_eq!(split_payload(8000, 64, 128), (0, 64));
        // the cap is clamped to the scratch buffer
        assert_eq!(
            split_payload(9000, u16::MAX, 0),
            (MAX_PAYLOAD_CAP as u16, 0)
        );
    }

    #[test]
    fn a_marked_flow_sends_what_the_caps_would_cut_whole() {
        assert_eq!(capture_split(8000, 1536, 128, false), (1408, 128, true));
        assert_eq!(capture_split(8000, 1536, 128, true), (8000, 0, false));
        assert_eq!(capture_split(100, 1536, 128, true), (100, 0, false));
        // Beyond MAX_WHOLE: cut as any other.
        assert_eq!(capture_split(9300, 1536, 128, true), (1408, 128, true));
    }

    #[test]
    fn v4_mapped() {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[10, 0, 0, 1]);
        assert!(is_v4_mapped(&a));
        a[0] = 0x20;
        assert!(!is_v4_mapped(&a));
    }
}
