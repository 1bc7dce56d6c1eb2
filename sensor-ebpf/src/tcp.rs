//! A TCP segment, whichever path found it: the database-port filter, its flow's summary and,
//! for payload (or SYN/FIN/RST), its event.

use crate::{
    counters::count,
    event::send_event,
    flow::update_flow,
    maps::{DB_PORTS, SCRATCH, WHOLE},
    parse::L3,
};
use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    programs::XdpContext,
};
use sensor_common::{
    Counters, FlowKey, MAX_WHOLE, SensorConfig, config_flags, counter, direction, split_payload,
    tcp_flags,
};

/// A TCP header: its ports are read for every segment, the rest only for database segments
/// (read up front, the whole header was loaded and spilled to the stack on every packet).
pub trait TcpHeader {
    fn ports(&self) -> [u8; 4];
    /// Bytes 4..20: sequence and acknowledgement numbers, data offset, flags.
    fn rest(&self) -> [u8; 16];
}

/// Copied by the general path.
impl TcpHeader for [u8; 20] {
    #[inline(always)]
    fn ports(&self) -> [u8; 4] {
        [self[0], self[1], self[2], self[3]]
    }
    #[inline(always)]
    fn rest(&self) -> [u8; 16] {
        let mut r = [0u8; 16];
        r.copy_from_slice(&self[4..]);
        r
    }
}

/// A TCP segment whose header (`tcp`, 20 bytes) and IP facts (`l3`) were read by either path;
/// `write_key` puts its addresses into the flow key.
#[inline(always)]
pub fn handle_tcp(
    ctx: &XdpContext,
    cfg: &SensorConfig,
    c: &mut Counters,
    tcp: &impl TcpHeader,
    l3: &L3,
    vni: u32,
    write_key: impl FnOnce(&mut FlowKey, u8) -> bool,
) {
    let Some(ports) = DB_PORTS.get(0) else {
        return;
    };
    let p = tcp.ports();
    let sport = u16::from_be_bytes([p[0], p[1]]);
    let dport = u16::from_be_bytes([p[2], p[3]]);
    let (dir, proto) = match ports.proto[dport as usize] {
        0 => match ports.proto[sport as usize] {
            0 => {
                count(c, counter::NON_DB);
                return;
            }
            p => (direction::TO_CLIENT, p),
        },
        p => (direction::TO_SERVER, p),
    };
    count(c, counter::DB_SEGMENTS);
    // Bytes 4..20: read only now, for database segments.
    let rest = tcp.rest();
    let tcp = |i: usize| rest[i - 4];
    let doff = ((tcp(12) >> 4) as u32) * 4;
    if doff < 20 || doff > l3.l4_len {
        count(c, counter::MALFORMED);
        return;
    }
    let flags = tcp(13);
    let payload_len = l3.l4_len - doff;
    let payload_off = l3.l4_off as u32 + doff;
    // SAFETY: the helper only reads the context the kernel passed to this program.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let present = frame_len.saturating_sub(payload_off);
    let captured = if present < payload_len {
        count(c, counter::TRUNCATED);
        present
    } else {
        payload_len
    };
    let control = flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0;
    let event = payload_len > 0 || (control && cfg.flags & config_flags::CONTROL_EVENTS != 0);
    // An event's timestamp is what latency is measured from, so it is exact. A segment that
    // only updates its flow's summary gets the clock of the last tick (≤ 1/HZ old): the exact
    // clock costs ~35 ns per read on a VM with retpolines (see the bench's clock figure),
    // more than the rest of such a packet's work.
    // SAFETY: clock helpers without arguments.
    let ts = unsafe {
        if event {
            bpf_ktime_get_ns()
        } else {
            bpf_ktime_get_coarse_ns()
        }
    };

    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a valid pointer into this CPU's value, which only this CPU uses; `send_event`
    // gets the raw pointer, and this reference is not used after that call.
    let hdr = unsafe { &mut (*scratch).event.hdr };
    // The key is assembled in the scratch value rather than on the 512-byte stack.
    if !write_key(&mut hdr.key, dir) {
        count(c, counter::MALFORMED);
        return;
    }
    hdr.key.client_port = if dir == direction::TO_SERVER {
        sport
    } else {
        dport
    };
    hdr.key.server_port = if dir == direction::TO_SERVER {
        dport
    } else {
        sport
    };
    hdr.key.vni = vni;

    // This segment in its flow's summary: for a segment without an event, and for one whose
    // event the ring refused (a delivered event is counted by user space).
    let account = |c: &mut Counters, key: &FlowKey| {
        update_flow(
            c,
            key,
            dir,
            flags,
            l3.ip_len,
            payload_len,
            captured < payload_len,
            ts,
        )
    };
    if !event {
        account(c, &hdr.key);
        return;
    }
    if payload_len > 0 {
        count(c, counter::DB_PAYLOAD_SEGMENTS);
    }
    let (mut head, mut tail) = split_payload(captured, cfg.payload_cap, cfg.tail_cap);
    if (head as u32 + tail as u32) < captured {
        // The caps would cut it: a flow user space marked (a TLS session it reads) gets the
        // segment whole. Looked up only here, so other segments pay nothing.
        // Borrowed, not copied: the key stays in the scratch value, off the 512-byte stack.
        #[allow(clippy::needless_borrows_for_generic_args)]
        // SAFETY: the key is in this CPU's scratch value, read by the helper only.
        let marked = captured as usize <= MAX_WHOLE && unsafe { WHOLE.get(&hdr.key) }.is_some();
        if marked {
            head = captured as u16;
            tail = 0;
        } else {
            count(c, counter::CAPPED);
        }
    }
    hdr.ts_ns = ts;
    hdr.seq = u32::from_be_bytes([tcp(4), tcp(5), tcp(6), tcp(7)]);
    hdr.ack = u32::from_be_bytes([tcp(8), tcp(9), tcp(10), tcp(11)]);
    hdr.wire_len = frame_len;
    hdr.payload_len = payload_len;
    hdr.tcp_flags = flags;
    hdr.direction = dir;
    hdr.proto = proto;
    hdr.ip_version = if l3.v6 { 6 } else { 4 };
    hdr.ip_len = l3.ip_len;
    // A delivered event is its segment's account: user space adds it to the flow (this map
    // update cost a third of an event). One the ring refused is counted here instead, so that
    // the flow's totals stay exact.
    if !send_event(
        ctx,
        c,
        cfg.wakeup_bytes,
        cfg.rings,
        scratch,
        payload_off,
        captured,
        head as u32,
        tail as u32,
    ) {
        // SAFETY: the same pointer into this CPU's scratch value; `send_event` has returned.
        account(c, unsafe { &(*scratch).event.hdr.key });
    }
}
