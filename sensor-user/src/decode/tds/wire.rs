//! The grammar of the client's messages (MS-TDS §2.2.6): PRELOGIN options, LOGIN7, the
//! ALL_HEADERS prefix, SQL batches, RPC calls and transaction manager requests. Every read is
//! bounded by the bytes at hand; nothing here panics on any input.

use super::read::{Rd, ucs2};
use super::types::{self, TypeInfo};

/// Packet types (MS-TDS §2.2.3.1.1).
pub(super) mod pkt {
    pub const SQL_BATCH: u8 = 0x01;
    pub const PRE_TDS7_LOGIN: u8 = 0x02;
    pub const RPC: u8 = 0x03;
    pub const REPLY: u8 = 0x04;
    pub const ATTENTION: u8 = 0x06;
    pub const BULK_LOAD: u8 = 0x07;
    pub const FEDAUTH_TOKEN: u8 = 0x08;
    pub const TRANSACTION_MANAGER: u8 = 0x0e;
    pub const LOGIN7: u8 = 0x10;
    pub const SSPI: u8 = 0x11;
    pub const PRELOGIN: u8 = 0x12;

    /// Types a client sends.
    pub fn is_request(t: u8) -> bool {
        matches!(
            t,
            SQL_BATCH
                | PRE_TDS7_LOGIN
                | RPC
                | ATTENTION
                | BULK_LOAD
                | FEDAUTH_TOKEN
                | TRANSACTION_MANAGER
                | LOGIN7
                | SSPI
                | PRELOGIN
        )
    }
}

/// Packet status bits (§2.2.3.1.2).
pub(super) mod status {
    pub const EOM: u8 = 0x01;
    pub const IGNORE: u8 = 0x02;
    /// RESETCONNECTION / RESETCONNECTIONSKIPTRAN: the server resets the session (its
    /// prepared handles go) before running the message.
    pub const RESET: u8 = 0x18;
    pub const ALL: u8 = 0x1f;
}

/// PRELOGIN encryption option values (§2.2.6.5).
pub(super) mod encrypt {
    pub const OFF: u8 = 0x00;
    pub const ON: u8 = 0x01;
    pub const NOT_SUP: u8 = 0x02;
    pub const REQ: u8 = 0x03;
}

/// What a PRELOGIN message (either side's) says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Prelogin {
    /// `major.minor.build` (the server's is the SQL Server version).
    pub(super) version: Option<String>,
    pub(super) encryption: Option<u8>,
}

/// Reads PRELOGIN options: token, offset and length (big-endian) until 0xFF; `None` when the
/// option table is not one (its offsets point outside the message).
pub(super) fn prelogin(b: &[u8]) -> Option<Prelogin> {
    let mut p = Prelogin::default();
    let mut at = 0;
    let mut any = false;
    loop {
        let token = *b.get(at)?;
        if token == 0xff {
            return any.then_some(p);
        }
        let h = b.get(at + 1..at + 5)?;
        let (off, len) = (
            usize::from(u16::from_be_bytes([h[0], h[1]])),
            usize::from(u16::from_be_bytes([h[2], h[3]])),
        );
        let v = b.get(off..off.checked_add(len)?)?;
        match token {
            0x00 if len >= 6 => {
                p.version = Some(format!(
                    "{}.{}.{}",
                    v[0],
                    v[1],
                    u16::from_be_bytes([v[2], v[3]])
                ));
            }
            0x01 if len >= 1 => p.encryption = Some(v[0]),
            _ => {}
        }
        any = true;
        at += 5;
        if at > 64 * 5 {
            return None;
        }
    }
}

/// What LOGIN7 says of the client (§2.2.6.4). The password is only read to be cleared: it
/// is XORed and nibble-swapped, not encrypted, so it never leaves this function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Login7 {
    pub(super) tds_version: u32,
    pub(super) packet_size: u32,
    pub(super) host: Option<String>,
    pub(super) user: Option<String>,
    pub(super) application: Option<String>,
    pub(super) server: Option<String>,
    pub(super) interface: Option<String>,
    pub(super) database: Option<String>,
    /// Integrated security (SSPI: Kerberos / NTLM).
    pub(super) sspi: bool,
    /// A FEDAUTH feature extension (Microsoft Entra ID tokens).
    pub(super) fedauth: bool,
}

impl Login7 {
    pub(super) fn auth_method(&self) -> &'static str {
        if self.sspi {
            "sspi"
        } else if self.fedauth {
            "fedauth"
        } else {
            "sql"
        }
    }
}

/// The fixed part of LOGIN7, up to and including cbSSPILong.
const LOGIN7_FIXED: usize = 94;

pub(super) fn login7(b: &[u8]) -> Option<Login7> {
    let mut r = Rd::new(b);
    let len = r.u32()? as usize;
    if !(36 + 9 * 4..=128 * 1024).contains(&len) {
        return None;
    }
    let tds_version = r.u32()?;
    // 7.0 to 7.4 (sent little-endian: 0x74000004), 8.0.
    if !matches!(tds_version >> 24, 0x70..=0x74 | 0x08) {
        return None;
    }
    let packet_size = r.u32()?;
    r.skip(4 + 4 + 4)?; // ClientProgVer, ClientPID, ConnectionID
    let _flags1 = r.u8()?;
    let flags2 = r.u8()?;
    let _type_flags = r.u8()?;
    let flags3 = r.u8()?;
    r.skip(8)?; // ClientTimeZone, ClientLCID
    let field = |r: &mut Rd<'_>| -> Option<(usize, usize)> {
        Some((usize::from(r.u16()?), usize::from(r.u16()?)))
    };
    let host = field(&mut r)?;
    let user = field(&mut r)?;
    let _password = field(&mut r)?;
    let app = field(&mut r)?;
    let server = field(&mut r)?;
    let extension = field(&mut r)?;
    let interface = field(&mut r)?;
    let _language = field(&mut r)?;
    let database = field(&mut r)?;
    let text = |(off, chars): (usize, usize)| -> Option<String> {
        if chars == 0 {
            return None;
        }
        let s = b.get(off..off.checked_add(2 * chars)?)?;
        let t = ucs2(s);
        (!t.is_empty()).then_some(t)
    };
    let mut l = Login7 {
        tds_version,
        packet_size,
        host: text(host),
        user: text(user),
        application: text(app),
        server: text(server),
        interface: text(interface),
        database: text(database),
        sspi: flags2 & 0x80 != 0,
        fedauth: false,
    };
    // fExtension: the Extension field holds the offset of the FeatureExt list.
    if flags3 & 0x10 != 0 && extension.1 >= 4 && b.len() >= LOGIN7_FIXED.min(len) {
        let at = extension.0;
        if let Some(o) = b.get(at..at + 4) {
            let mut f = Rd::new(b);
            f.pos = u32::from_le_bytes([o[0], o[1], o[2], o[3]]) as usize;
            while let Some(id) = f.u8() {
                if id == 0xff {
                    break;
                }
                if id == 0x02 {
                    l.fedauth = true;
                }
                let Some(n) = f.u32() else { break };
                if f.skip(n as usize).is_none() {
                    break;
                }
            }
        }
    }
    Some(l)
}

/// Skips ALL_HEADERS (TDS 7.2+, §2.2.5.3: a total length that counts itself, then headers
/// that each count themselves, of types 1 to 3) when the message starts with a valid one.
/// Before the login says the version (a mid-stream start), the headers are recognised by
/// their shape: UCS-2 text never starts with a small little-endian length.
pub(super) fn skip_all_headers(b: &[u8], tds72: Option<bool>) -> &[u8] {
    if tds72 == Some(false) || b.len() < 4 {
        return b;
    }
    let total = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if !(4..=4096).contains(&total) || total > b.len() {
        return b;
    }
    let mut h = &b[4..total];
    while !h.is_empty() {
        let Some(x) = h.get(..6) else { return b };
        let len = u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize;
        let typ = u16::from_le_bytes([x[4], x[5]]);
        if len < 6 || len > h.len() || !(1..=3).contains(&typ) {
            return b;
        }
        h = &h[len..];
    }
    &b[total..]
}

/// Well-known RPC procedure ids (§2.2.6.6).
pub(super) mod proc_id {
    pub const SP_CURSOROPEN: u16 = 2;
    pub const SP_CURSORPREPARE: u16 = 3;
    pub const SP_CURSOREXECUTE: u16 = 4;
    pub const SP_CURSORPREPEXEC: u16 = 5;
    pub const SP_EXECUTESQL: u16 = 10;
    pub const SP_PREPARE: u16 = 11;
    pub const SP_EXECUTE: u16 = 12;
    pub const SP_PREPEXEC: u16 = 13;
    pub const SP_UNPREPARE: u16 = 15;

    pub fn name(id: u16) -> Option<&'static str> {
        Some(match id {
            1 => "sp_cursor",
            2 => "sp_cursoropen",
            3 => "sp_cursorprepare",
            4 => "sp_cursorexecute",
            5 => "sp_cursorprepexec",
            6 => "sp_cursorunprepare",
            7 => "sp_cursorfetch",
            8 => "sp_cursoroption",
            9 => "sp_cursorclose",
            10 => "sp_executesql",
            11 => "sp_prepare",
            12 => "sp_execute",
            13 => "sp_prepexec",
            14 => "sp_prepexecrpc",
            15 => "sp_unprepare",
            _ => return None,
        })
    }

    /// The id of a system procedure called by name (drivers do both).
    pub fn by_name(name: &str) -> Option<u16> {
        let n = name.rsplit('.').next()?.trim_matches(['[', ']']);
        (1..=15).find(|&id| name_eq(id, n))
    }

    fn name_eq(id: u16, n: &str) -> bool {
        name(id).is_some_and(|x| x.eq_ignore_ascii_case(n))
    }
}

/// One RPC call of a request: the procedure, and what its parameters say that matters here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Rpc {
    /// The well-known id, if the procedure is one (by id or by name).
    pub(super) id: Option<u16>,
    /// The procedure's name as sent (or the well-known name).
    pub(super) name: String,
    /// The statement text the call carries (`sp_executesql`, `sp_prepare`, …), if read.
    pub(super) statement: Option<String>,
    /// The prepared handle the call runs (`sp_execute`, `sp_unprepare`, …).
    pub(super) handle: Option<i32>,
    /// Parameter values that could not be walked (a type this reader does not know): the
    /// statement may be past them.
    pub(super) truncated: bool,
}

impl Rpc {
    /// The call carries a statement this reader did not get to (the message was cut).
    pub(super) fn statement_cut(&self) -> bool {
        self.truncated
            && self.statement.is_none()
            && self.id.is_some_and(|id| roles(id).0.is_some())
    }
}

/// Which parameter (0-based) holds the statement, and which the handle the call uses.
fn roles(id: u16) -> (Option<usize>, Option<usize>) {
    use proc_id::*;
    match id {
        SP_EXECUTESQL => (Some(0), None),
        SP_PREPARE => (Some(2), None),
        SP_PREPEXEC => (Some(2), None),
        SP_EXECUTE | SP_UNPREPARE => (None, Some(0)),
        SP_CURSOROPEN => (Some(1), None),
        SP_CURSORPREPARE => (Some(3), None),
        SP_CURSORPREPEXEC => (Some(3), None),
        SP_CURSOREXECUTE => (None, Some(0)),
        _ => (None, None),
    }
}

/// Calls one RPC message carries at most (the rest are counted in the last).
pub(super) const MAX_CALLS: usize = 64;

/// The RPC calls of an RPC request message (after ALL_HEADERS): a client may batch several,
/// separated by a batch flag (0xFF from TDS 7.2, 0x80 before; 0xFE: no-exec). `max_text`:
/// characters kept of a statement. Empty when even the first is unreadable.
pub(super) fn rpcs(b: &[u8], max_text: usize) -> Vec<Rpc> {
    let mut r = Rd::new(b);
    let mut calls = Vec::new();
    while calls.len() < MAX_CALLS {
        let Some(call) = rpc(&mut r, max_text) else {
            break;
        };
        let walked = !call.truncated;
        calls.push(call);
        // The next call follows its separator, once every parameter was walked.
        if !walked || !matches!(r.u8(), Some(0xff | 0x80 | 0xfe)) {
            break;
        }
    }
    calls
}

/// One RPC call; the reader is left after its last parameter (`truncated`: not reached).
fn rpc(r: &mut Rd<'_>, max_text: usize) -> Option<Rpc> {
    let n = r.u16()?;
    let mut call = Rpc::default();
    if n == 0xffff {
        let id = r.u16()?;
        call.id = Some(id);
        call.name = proc_id::name(id).map_or_else(|| format!("proc#{id}"), str::to_string);
    } else {
        if n == 0 || n > 1024 {
            return None;
        }
        call.name = ucs2(r.take(2 * usize::from(n))?);
        call.id = proc_id::by_name(&call.name);
    }
    let _options = r.u16()?;
    let (stmt_at, handle_at) = call.id.map_or((None, None), roles);
    let mut i = 0;
    while r.left() > 0 && !matches!(r.peek(), Some(0xff | 0x80 | 0xfe)) {
        let Some(param) = param(r, max_text) else {
            call.truncated = true;
            break;
        };
        if Some(i) == stmt_at {
            call.statement = param.text;
        } else if Some(i) == handle_at {
            call.handle = param.int;
        }
        i += 1;
    }
    Some(call)
}

/// A parameter's value as far as this decoder reads it.
pub(super) struct Param {
    pub(super) text: Option<String>,
    pub(super) int: Option<i32>,
}

/// One parameter: name, status, TYPE_INFO, value.
fn param(r: &mut Rd<'_>, max_text: usize) -> Option<Param> {
    let name_len = usize::from(r.u8()?);
    r.skip(2 * name_len)?;
    let _status = r.u8()?;
    let ti = TypeInfo::parse(r, false)?;
    let value = types::value(r, &ti, max_text)?;
    Some(Param {
        text: value.text,
        int: value.int,
    })
}

/// Transaction manager request types (§2.2.6.9): the verb and the name a record gives them.
pub(super) fn transaction_request(b: &[u8]) -> (&'static str, &'static str) {
    let t = b
        .get(..2)
        .map(|x| u16::from_le_bytes([x[0], x[1]]))
        .unwrap_or(u16::MAX);
    match t {
        0 => ("TM_GET_DTC_ADDRESS", "TM_GET_DTC_ADDRESS"),
        1 => ("TM_PROPAGATE_XACT", "TM_PROPAGATE_XACT"),
        5 => ("BEGIN", "TM_BEGIN_XACT"),
        6 => ("TM_PROMOTE_XACT", "TM_PROMOTE_XACT"),
        7 => ("COMMIT", "TM_COMMIT_XACT"),
        8 => ("ROLLBACK", "TM_ROLLBACK_XACT"),
        9 => ("SAVE", "TM_SAVE_XACT"),
        _ => ("TRANSACTION_MANAGER", "TRANSACTION_MANAGER"),
    }
}
