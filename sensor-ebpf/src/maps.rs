//! Every map of the program. User space finds them by name (`sensor_common::names`); the value
//! types shared with it live in sensor-common, the program's own ones here.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sensor_common::{Counters, EventBuf, FlowKey, FlowStats, PortTable, SensorConfig};

// The event rings (`names::RINGS`), one per CPU up to MAX_RINGS. aya-ebpf 0.2.1 has no
// array of maps, so they are separate maps and `event::ring` picks one by index. User space
// sizes each at load time (the unused ones to a page).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);
#[map]
pub static EVENTS_1: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_2: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_3: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_4: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_5: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_6: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
pub static EVENTS_7: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(262_144, 0);

#[map]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Flows whose segments go whole into their events (user space marks the TLS sessions it
/// reads with keys); LRU, so marks of ended flows make room by themselves.
#[map]
pub static WHOLE: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(65_536, 0);

/// One value: the protocol of every port (one lookup per segment, then two loads).
#[map]
pub static DB_PORTS: Array<PortTable> = Array::with_max_entries(1, 0);

#[map]
pub static CONFIG: Array<SensorConfig> = Array::with_max_entries(1, 0);

/// The per-CPU value an event is assembled in (see [`Scratch`]).
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Tail calls: slot 0 is `rds_sensor_geneve`. Parsing GENEVE → IP → VXLAN → IP → TCP inline
/// made one program too complex for the verifier (1M instructions); as a second program,
/// each is verified on its own.
#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static GENEVE_CTX: PerCpuArray<GeneveCtx> = PerCpuArray::with_max_entries(1, 0);

/// What `rds_sensor` found in a GENEVE header, for `rds_sensor_geneve`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GeneveCtx {
    pub ip_off: u32,
    pub ethertype: u32,
    pub vni: u32,
    pub _pad: u32,
}

/// The value of `SCRATCH`: the record (`event`, whose used part goes to the ring buffer), then
/// the program's own scratch words, which never leave the kernel.
#[repr(C)]
pub struct Scratch {
    pub event: EventBuf,
    /// Where the segment's payload starts in the frame: stored and read back by
    /// `event::send_event` so that the verifier sees a fresh scalar (see there).
    pub payload_off: u32,
    pub _pad: u32,
}
