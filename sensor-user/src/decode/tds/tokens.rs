//! The server's token stream (MS-TDS §2.2.7): what a reply message says of the request it
//! answers. A reply is walked from its start (result sets included, with the column types of
//! COLMETADATA); when its middle was not all captured (a big result set past the kept head,
//! a payload the kernel cut), its end is read from the tail: the longest run of tokens that
//! parses and ends exactly at the message's end, which holds the final DONE.

use super::read::Rd;
use super::types::{self, TypeInfo};

/// DONE status bits (§2.2.7.6).
pub(super) mod done {
    #[cfg(test)]
    pub const MORE: u16 = 0x01;
    pub const ERROR: u16 = 0x02;
    pub const COUNT: u16 = 0x10;
    pub const ATTN: u16 = 0x20;
    pub const SRVERROR: u16 = 0x100;
    /// Every bit the protocol defines: with INXACT 0x04, PROC 0x08 (in replies older
    /// servers send), EVENT 0x40 and RPCINBATCH 0x80 (a batched RPC's calls but the last).
    pub const VALID: u16 = 0x1ff;
}

mod tok {
    pub const OFFSET: u8 = 0x78;
    pub const RETURNSTATUS: u8 = 0x79;
    pub const COLMETADATA: u8 = 0x81;
    pub const TABNAME: u8 = 0xa4;
    pub const COLINFO: u8 = 0xa5;
    pub const ORDER: u8 = 0xa9;
    pub const ERROR: u8 = 0xaa;
    pub const INFO: u8 = 0xab;
    pub const RETURNVALUE: u8 = 0xac;
    pub const LOGINACK: u8 = 0xad;
    pub const FEATUREEXTACK: u8 = 0xae;
    pub const ROW: u8 = 0xd1;
    pub const NBCROW: u8 = 0xd2;
    pub const ENVCHANGE: u8 = 0xe3;
    pub const SESSIONSTATE: u8 = 0xe4;
    pub const SSPI: u8 = 0xed;
    pub const FEDAUTHINFO: u8 = 0xee;
    pub const DONE: u8 = 0xfd;
    pub const DONEPROC: u8 = 0xfe;
    pub const DONEINPROC: u8 = 0xff;
}

/// An ERROR token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ServerError {
    pub(super) number: i32,
    pub(super) state: u8,
    pub(super) class: u8,
    pub(super) message: String,
}

impl ServerError {
    pub(super) fn reply(&self) -> crate::decode::kit::ErrorReply {
        crate::decode::kit::ErrorReply::numbered(
            i64::from(self.number),
            (!self.message.is_empty()).then(|| self.message.clone()),
        )
    }
}

/// LOGINACK: the login succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct LoginAck {
    pub(super) tds_version: u32,
    pub(super) program: String,
    /// `major.minor.build`.
    pub(super) version: String,
}

/// What a reply message said.
#[derive(Clone, Debug, Default)]
pub(super) struct Reply {
    /// The last DONE / DONEPROC / DONEINPROC status seen, and whether any token after it.
    pub(super) last_done: Option<u16>,
    /// Rows counted by DONE tokens (DONE_COUNT), summed; a DONEPROC's count only when no
    /// statement of the procedure counted.
    pub(super) rows: u64,
    pub(super) counted: bool,
    /// Rows of result sets walked (a check on `rows`).
    pub(super) row_tokens: u64,
    /// The first ERROR (a batch may raise several; the first is the cause).
    pub(super) error: Option<ServerError>,
    /// A DONE carried DONE_ERROR or DONE_SRVERROR.
    pub(super) done_error: bool,
    pub(super) attention: bool,
    pub(super) login_ack: Option<LoginAck>,
    /// ENVCHANGE: the database now in use, and the packet size.
    pub(super) database: Option<String>,
    pub(super) packet_size: Option<u32>,
    /// A four-byte integer output parameter (the handle of `sp_prepare`, `sp_prepexec`).
    pub(super) return_int: Option<i32>,
    /// The walk reached the end of what it was given.
    pub(super) complete: bool,
    /// Per RPC call of a batched RPC message: what came up to each DONEPROC.
    pub(super) procs: Vec<Segment>,
    current: Segment,
}

/// What one procedure's part of a reply said (up to its DONEPROC).
#[derive(Clone, Debug, Default)]
pub(super) struct Segment {
    pub(super) rows: u64,
    pub(super) counted: bool,
    pub(super) error: Option<ServerError>,
    pub(super) done_error: bool,
    pub(super) return_int: Option<i32>,
}

#[cfg(test)]
impl Reply {
    /// The reply ends the exchange: its final DONE has no DONE_MORE.
    pub(super) fn is_final(&self) -> bool {
        self.last_done.is_some_and(|s| s & done::MORE == 0)
    }
}

/// Walks tokens from the start of `b`. `tds71`: DONE row counts are four bytes (TDS 7.1 and
/// before). `cols` carries the current result set's column types across calls. Returns where
/// the walk stopped (`b.len()` when it went through).
pub(super) fn walk(
    b: &[u8],
    tds71: bool,
    cols: &mut Option<Vec<TypeInfo>>,
    rows_too: bool,
    out: &mut Reply,
) -> usize {
    let mut r = Rd::new(b);
    loop {
        let at = r.pos;
        if r.left() == 0 {
            out.complete = true;
            return at;
        }
        if token(&mut r, tds71, cols, rows_too, out).is_none() {
            return at;
        }
    }
}

/// One token; `None` when it is cut short, unknown, or not to be walked here.
fn token(
    r: &mut Rd<'_>,
    tds71: bool,
    cols: &mut Option<Vec<TypeInfo>>,
    rows_too: bool,
    out: &mut Reply,
) -> Option<()> {
    let t = r.u8()?;
    match t {
        tok::DONE | tok::DONEPROC | tok::DONEINPROC => {
            let status = r.u16()?;
            if status & !done::VALID != 0 {
                return None;
            }
            let _cur_cmd = r.u16()?;
            let count = if tds71 { u64::from(r.u32()?) } else { r.u64()? };
            // A procedure's statements count in their DONEINPROC; its DONEPROC repeats the
            // last one, and counts alone only when none came before.
            let seg = &mut out.current;
            if status & done::COUNT != 0 && (t != tok::DONEPROC || !seg.counted) {
                seg.rows = seg.rows.saturating_add(count);
                seg.counted = true;
                out.rows = out.rows.saturating_add(count);
                out.counted = true;
            }
            if status & (done::ERROR | done::SRVERROR) != 0 {
                out.done_error = true;
                seg.done_error = true;
            }
            if t == tok::DONEPROC && out.procs.len() < super::wire::MAX_CALLS {
                out.procs.push(std::mem::take(&mut out.current));
            }
            if status & done::ATTN != 0 {
                out.attention = true;
            }
            out.last_done = Some(status);
        }
        tok::RETURNSTATUS => {
            r.skip(4)?;
        }
        tok::OFFSET => {
            r.skip(4)?;
        }
        tok::ERROR | tok::INFO => {
            let len = usize::from(r.u16()?);
            let body = r.take(len)?;
            let mut e = Rd::new(body);
            let number = e.u32()? as i32;
            let state = e.u8()?;
            let class = e.u8()?;
            let message = e.us_varchar()?;
            e.b_varchar()?;
            e.b_varchar()?;
            // Line number: four bytes from 7.2, two before; the length says which.
            if !matches!(e.left(), 2 | 4) {
                return None;
            }
            if t == tok::ERROR {
                let e = ServerError {
                    number,
                    state,
                    class,
                    message,
                };
                out.current.error.get_or_insert_with(|| e.clone());
                out.error.get_or_insert(e);
            }
        }
        tok::LOGINACK => {
            let len = usize::from(r.u16()?);
            let body = r.take(len)?;
            let mut a = Rd::new(body);
            let _interface = a.u8()?;
            let v = a.take(4)?;
            let tds_version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            let program = a.b_varchar()?;
            let p = a.take(4)?;
            out.login_ack = Some(LoginAck {
                tds_version,
                program,
                version: format!("{}.{}.{}", p[0], p[1], u16::from_be_bytes([p[2], p[3]])),
            });
        }
        tok::ENVCHANGE => {
            let len = usize::from(r.u16()?);
            let body = r.take(len)?;
            let mut e = Rd::new(body);
            match e.u8()? {
                1 => out.database = e.b_varchar(),
                4 => out.packet_size = e.b_varchar().and_then(|s| s.parse().ok()),
                _ => {}
            }
        }
        tok::TABNAME | tok::COLINFO | tok::ORDER | tok::SSPI => {
            let len = usize::from(r.u16()?);
            r.skip(len)?;
        }
        tok::SESSIONSTATE | tok::FEDAUTHINFO => {
            let len = r.u32()? as usize;
            r.skip(len)?;
        }
        tok::FEATUREEXTACK => loop {
            if r.u8()? == 0xff {
                break;
            }
            let len = r.u32()? as usize;
            r.skip(len)?;
        },
        tok::RETURNVALUE => {
            let _ordinal = r.u16()?;
            r.b_varchar()?;
            let _status = r.u8()?;
            r.skip(if tds71 { 2 } else { 4 })?; // UserType
            r.skip(2)?; // Flags
            let ti = TypeInfo::parse(r, false)?;
            let v = types::value(r, &ti, 0)?;
            if out.return_int.is_none() {
                out.return_int = v.int;
            }
            if out.current.return_int.is_none() {
                out.current.return_int = v.int;
            }
        }
        tok::COLMETADATA if rows_too => {
            let n = r.u16()?;
            if n == 0xffff {
                *cols = Some(Vec::new());
                return Some(());
            }
            let mut c = Vec::with_capacity(usize::from(n).min(256));
            for _ in 0..n {
                r.skip(if tds71 { 2 } else { 4 })?; // UserType
                r.skip(2)?; // Flags
                c.push(TypeInfo::parse(r, true)?);
                r.b_varchar()?;
            }
            *cols = Some(c);
        }
        tok::ROW | tok::NBCROW if rows_too => {
            let c = cols.as_ref()?;
            let nulls = if t == tok::NBCROW {
                Some(r.take(c.len().div_ceil(8))?)
            } else {
                None
            };
            for (i, ti) in c.iter().enumerate() {
                if nulls.is_some_and(|m| m[i / 8] & (1 << (i % 8)) != 0) {
                    continue;
                }
                types::value(r, ti, 0)?;
            }
            out.row_tokens += 1;
        }
        _ => return None,
    }
    Some(())
}

/// The tokens that end `tail` (the last bytes of a reply whose middle was not walked): the
/// earliest start from which simple tokens (no result set) parse and end exactly at the end,
/// the last being a DONE. `None` when none does.
pub(super) fn tail(tail: &[u8], tds71: bool) -> Option<Reply> {
    let done_len = if tds71 { 9 } else { 13 };
    if tail.len() < done_len {
        return None;
    }
    for start in 0..=tail.len() - done_len {
        if !matches!(
            tail[start],
            tok::ERROR
                | tok::INFO
                | tok::DONE
                | tok::DONEPROC
                | tok::DONEINPROC
                | tok::RETURNSTATUS
                | tok::ENVCHANGE
        ) {
            continue;
        }
        let mut reply = Reply::default();
        let mut cols = None;
        let end = walk(&tail[start..], tds71, &mut cols, false, &mut reply);
        if end == tail.len() - start
            && reply.last_done.is_some()
            && matches!(
                tail[tail.len() - done_len],
                tok::DONE | tok::DONEPROC | tok::DONEINPROC
            )
        {
            return Some(reply);
        }
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A DONE-family token (TDS 7.2+).
    pub(crate) fn done_token(t: u8, status: u16, rows: u64) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&status.to_le_bytes());
        v.extend_from_slice(&0xc1u16.to_le_bytes());
        v.extend_from_slice(&rows.to_le_bytes());
        v
    }

    fn us(s: &str) -> Vec<u8> {
        let mut v = (s.encode_utf16().count() as u16).to_le_bytes().to_vec();
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    fn b(s: &str) -> Vec<u8> {
        let mut v = vec![s.encode_utf16().count() as u8];
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    /// An ERROR token (TDS 7.2+).
    pub(crate) fn error_token(number: i32, state: u8, class: u8, msg: &str) -> Vec<u8> {
        let mut body = number.to_le_bytes().to_vec();
        body.extend_from_slice(&[state, class]);
        body.extend(us(msg));
        body.extend(b("srv"));
        body.extend(b(""));
        body.extend_from_slice(&1i32.to_le_bytes());
        let mut v = vec![0xaa];
        v.extend_from_slice(&(body.len() as u16).to_le_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn result_set_rows_errors_and_done_counts() {
        // COLMETADATA: one INTN(4) column "a"; two ROWs (one NULL via NBCROW); DONE count 2.
        let mut m = vec![0x81, 1, 0, 0, 0, 0, 0, 0, 0, 0x26, 4];
        m.extend(b("a"));
        m.extend_from_slice(&[0xd1, 4, 7, 0, 0, 0]);
        m.extend_from_slice(&[0xd2, 1]);
        m.extend(done_token(0xfd, 0x11, 2));
        m.extend(error_token(208, 1, 16, "Invalid object name 'secret_t'."));
        m.extend(done_token(0xfd, 0x02, 0));
        let mut reply = Reply::default();
        let mut cols = None;
        assert_eq!(walk(&m, false, &mut cols, true, &mut reply), m.len());
        assert!(reply.complete && reply.is_final() && reply.done_error);
        assert_eq!((reply.rows, reply.row_tokens), (2, 2));
        assert_eq!(reply.error.as_ref().map(|e| e.number), Some(208));
        // From the tail alone: the error and final DONE.
        let t = tail(&m[m.len() - 100..], false).unwrap();
        assert_eq!(
            t.error.as_ref().map(|e| (e.number, e.class)),
            Some((208, 16))
        );
        assert!(t.is_final());
    }
}
