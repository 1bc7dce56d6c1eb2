//! MARS: the Session Multiplex Protocol (MC-SMP §2.2) under TDS. Once a client with MARS
//! negotiated sends SMP, every byte both ways is an SMP packet: a 16-byte header (SMID 0x53,
//! flags SYN / ACK / FIN / DATA, session id, length with the header, sequence number,
//! window), and for DATA the TDS packets of that session. Each session gets its own framers
//! and request queue (a [`Stream`]), with the connection's login (user, database, version);
//! prepared handles are the connection's.

use super::{Conn, Phase, Stmts, Stream};
use crate::decode::{DecodeCtx, Dir, Gap};

const HEADER: usize = 16;
const SMID: u8 = 0x53;
/// Flags (MC-SMP §2.2.1.2).
const SYN: u8 = 0x01;
const ACK: u8 = 0x02;
const FIN: u8 = 0x04;
const DATA: u8 = 0x08;
/// Sessions followed per connection (SQL Server allows more; past this, a new session's
/// bytes are counted, not decoded).
const MAX_SESSIONS: usize = 64;
/// Largest SMP packet believed (the negotiated TDS packet size plus the header, with room).
const MAX_LEN: usize = 64 << 10;

#[derive(Default)]
struct Side {
    hdr: [u8; HEADER],
    hdr_len: usize,
    /// Payload bytes left in the current SMP packet, its session and flags.
    left: usize,
    sid: u16,
    flags: u8,
    /// A header that is none, or a gap that hid one: nothing more is read this way.
    lost: bool,
}

#[derive(Default)]
pub(super) struct Demux {
    sides: [Side; 2],
    sessions: Vec<(u16, Stream)>,
}

fn idx(dir: Dir) -> usize {
    match dir {
        Dir::Request => 0,
        Dir::Response => 1,
    }
}

impl Demux {
    /// The session `sid`, made with the connection's login if it is new.
    fn session(&mut self, sid: u16, conn: &Conn) -> Option<&mut Stream> {
        if let Some(i) = self.sessions.iter().position(|(s, _)| *s == sid) {
            return Some(&mut self.sessions[i].1);
        }
        if self.sessions.len() >= MAX_SESSIONS {
            return None;
        }
        let mut s = Stream::new(false);
        s.c.phase = Phase::Command;
        s.c.user.clone_from(&conn.user);
        s.c.database.clone_from(&conn.database);
        s.c.tds_version = conn.tds_version;
        s.c.server_version.clone_from(&conn.server_version);
        s.c.spid = conn.spid;
        self.sessions.push((sid, s));
        self.sessions.last_mut().map(|(_, s)| s)
    }

    pub(super) fn data(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        stmts: &mut Stmts,
        conn: &Conn,
        dir: Dir,
        ts: u64,
        bytes: &[u8],
    ) {
        let d = idx(dir);
        let mut i = 0;
        while i < bytes.len() {
            let s = &mut self.sides[d];
            if s.lost {
                cx.stats.skipped_bytes += (bytes.len() - i) as u64;
                return;
            }
            if s.left == 0 {
                let n = (HEADER - s.hdr_len).min(bytes.len() - i);
                s.hdr[s.hdr_len..s.hdr_len + n].copy_from_slice(&bytes[i..i + n]);
                s.hdr_len += n;
                i += n;
                if s.hdr_len < HEADER {
                    return;
                }
                s.hdr_len = 0;
                let h = s.hdr;
                let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
                let sid = u16::from_le_bytes([h[2], h[3]]);
                if h[0] != SMID
                    || !(HEADER..=MAX_LEN).contains(&len)
                    || !matches!(h[1], SYN | ACK | FIN | DATA)
                {
                    cx.stats.malformed += 1;
                    s.lost = true;
                    continue;
                }
                s.left = len - HEADER;
                s.sid = sid;
                s.flags = h[1];
                match h[1] {
                    SYN => {
                        let _ = self.session(sid, conn);
                    }
                    FIN => {
                        if let Some(pos) = self.sessions.iter().position(|(x, _)| *x == sid) {
                            let (_, mut st) = self.sessions.swap_remove(pos);
                            st.close(cx, ts);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let n = s.left.min(bytes.len() - i);
            s.left -= n;
            let (sid, flags) = (s.sid, s.flags);
            let chunk = &bytes[i..i + n];
            i += n;
            if flags != DATA {
                cx.stats.skipped_bytes += n as u64;
                continue;
            }
            match self.session(sid, conn) {
                Some(st) => {
                    let _ = st.data(cx, stmts, dir, ts, chunk);
                }
                None => cx.stats.skipped_bytes += n as u64,
            }
        }
    }

    pub(super) fn gap(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        stmts: &mut Stmts,
        conn: &Conn,
        dir: Dir,
        ts: u64,
        gap: Gap,
    ) {
        let d = idx(dir);
        let s = &mut self.sides[d];
        match gap {
            // Inside a DATA packet's payload: the session's framer skips it.
            Gap::Exact(n) if !s.lost && s.hdr_len == 0 && (n as usize) <= s.left => {
                s.left -= n as usize;
                let (sid, flags) = (s.sid, s.flags);
                if flags == DATA
                    && let Some(st) = self.session(sid, conn)
                {
                    st.gap(cx, stmts, dir, ts, gap);
                }
            }
            _ => s.lost = true,
        }
    }

    pub(super) fn close(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) {
        for (_, mut st) in self.sessions.drain(..) {
            st.close(cx, ts);
        }
    }
}
