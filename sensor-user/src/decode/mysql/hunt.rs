//! Finding packet boundaries again in bytes of unknown framing ("never guess": every rule
//! asks for a structure random bytes rarely have).
//!
//! - A request: a header with sequence id 0 and a command clients send, whose payload fits
//!   that command (its length, SQL-like text, fixed fields), ending exactly where the bytes
//!   received so far end (clients write one request at a time), or followed by another such
//!   request (pipelined), or — for a long COM_QUERY / COM_STMT_PREPARE still arriving — with
//!   at least 16 bytes of SQL-like text.
//! - A response end: an EOF, an OK with the 0xFE header or an ERR with a SQL state, ending
//!   exactly at the end of the bytes received so far, with plausible status flags.
//! - A server greeting at the very start (a mid-stream start that caught the handshake).

use super::framer::MAX_PACKET;
use super::wire::{self, cap, com};
use crate::decode::kit;

fn u24(w: &[u8], i: usize) -> usize {
    usize::from(w[i]) | usize::from(w[i + 1]) << 8 | usize::from(w[i + 2]) << 16
}

/// Offset of the first plausible request in `w`.
pub fn find_request(w: &[u8]) -> Option<usize> {
    (0..w.len().saturating_sub(4)).find(|&i| candidate(w, i, 0))
}

fn candidate(w: &[u8], i: usize, depth: u32) -> bool {
    if i + 5 > w.len() || w[i + 3] != 0 || !wire::client_command(w[i + 4]) {
        return false;
    }
    let len = u24(w, i);
    if len == 0 || len >= MAX_PACKET as usize {
        return false;
    }
    let end = i + 4 + len;
    let body = &w[i + 4..end.min(w.len())];
    if end > w.len() {
        return matches!(body[0], com::QUERY | com::STMT_PREPARE)
            && body.len() > 16
            && sql_like(wire::query_text(&body[1..], None));
    }
    if !complete_request(body) {
        return false;
    }
    end == w.len() || (depth < 8 && candidate(w, end, depth + 1))
}

/// A whole request payload that fits its command.
fn complete_request(body: &[u8]) -> bool {
    let n = body.len();
    match body[0] {
        com::QUIT
        | com::STATISTICS
        | com::PROCESS_INFO
        | com::DEBUG
        | com::PING
        | com::RESET_CONNECTION => n == 1,
        com::INIT_DB | com::CREATE_DB | com::DROP_DB => {
            (2..=257).contains(&n) && printable(&body[1..])
        }
        com::QUERY | com::STMT_PREPARE => sql_like(wire::query_text(&body[1..], None)),
        com::FIELD_LIST => body[1..]
            .iter()
            .position(|&c| c == 0)
            .is_some_and(|z| z > 0 && printable(&body[1..1 + z])),
        com::REFRESH => n == 2,
        com::SHUTDOWN => n <= 2,
        com::PROCESS_KILL | com::STMT_CLOSE | com::STMT_RESET => n == 5,
        com::CHANGE_USER => body[1..]
            .iter()
            .position(|&c| c == 0)
            .is_some_and(|z| z > 0 && printable(&body[1..1 + z])),
        com::BINLOG_DUMP => n >= 11,
        com::REGISTER_SLAVE => n >= 18,
        com::BINLOG_DUMP_GTID => n >= 19,
        com::STMT_EXECUTE => n >= 10 && body[5] <= 0x0f && body[6..10] == [1, 0, 0, 0],
        com::STMT_SEND_LONG_DATA | com::STMT_BULK_EXECUTE => n >= 7,
        com::SET_OPTION => n == 3 && body[1] <= 1 && body[2] == 0,
        com::STMT_FETCH => n == 9,
        _ => false,
    }
}

/// A non-empty name without control characters.
fn printable(b: &[u8]) -> bool {
    !b.is_empty() && kit::printable(b)
}

/// Looks like the start of an SQL statement: a keyword, a parenthesis or a comment first,
/// and no control characters but tab, CR and LF.
pub fn sql_like(t: &[u8]) -> bool {
    let Some(first) = t.iter().position(|c| !c.is_ascii_whitespace()) else {
        return false;
    };
    (t[first].is_ascii_alphabetic() || matches!(t[first], b'(' | b'/' | b'-' | b'#'))
        && t.iter()
            .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r'))
}

/// Offset of a result-set terminator (or ERR) ending exactly at the end of `w`.
pub fn find_terminator(w: &[u8]) -> Option<usize> {
    let n = w.len();
    if n < 9 {
        return None;
    }
    let lo = n.saturating_sub(1024);
    (lo..=n - 9).rev().find(|&p| {
        let len = u24(w, p);
        if p + 4 + len != n {
            return false;
        }
        let body = &w[p + 4..];
        let flags_ok = |s: u16| s & 0x8004 == 0;
        match body[0] {
            0xfe if len == 5 => flags_ok(u16::from_le_bytes([body[3], body[4]])),
            0xfe if len >= 7 => wire::parse_ok(body, cap::ASSUMED | cap::SESSION_TRACK)
                .is_some_and(|o| flags_ok(o.status) && o.affected < 1 << 48),
            0xff => {
                len >= 9
                    && body[3] == b'#'
                    && body[4..9].iter().all(u8::is_ascii_alphanumeric)
                    && (1000..0xffff).contains(&u16::from_le_bytes([body[1], body[2]]))
            }
            _ => false,
        }
    })
}

/// The whole of `w` is one server greeting (HandshakeV10) with sequence id 0.
pub fn is_greeting(w: &[u8]) -> bool {
    w.len() > 8 && w[3] == 0 && u24(w, 0) + 4 == w.len() && wire::parse_greeting(&w[4..]).is_some()
}

/// `w` starts like a TLS record (handshake, alert or application data; TLS 1.0 – 1.3).
pub fn is_tls(w: &[u8]) -> bool {
    w.len() >= 5 && matches!(w[0], 0x15..=0x17) && w[1] == 3 && w[2] <= 4
}
