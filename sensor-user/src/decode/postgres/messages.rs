//! PostgreSQL protocol 3.0 message vocabulary: which type bytes each side sends, the body
//! lengths each type can have, how much of a body is worth keeping, the plausibility checks
//! used to find a message boundary again after framing was lost, and body parsers.
//!
//! Every message after start-up is `type:u8 length:i32 body`, where `length` counts itself
//! but not the type byte. Start-up packets have no type byte.

use crate::decode::{
    Dir,
    kit::{lossy, printable},
};

/// Largest body accepted in sync (the server's own limit for most messages is 1 GiB).
pub const MAX_BODY: u64 = 1 << 30;
/// Largest body a message may claim while hunting for a boundary: a bigger claim in bytes of
/// unknown meaning is far more likely noise than a message.
pub const SCAN_MAX_BODY: u64 = 32 << 10;
/// Start-up packets are at most this long (PostgreSQL's MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP: u32 = 10_000;
/// SQL text kept from a Query or Parse message; longer text is fingerprinted on its prefix.
pub const MAX_SQL: usize = 256 << 10;
/// Most columns a row can have (MaxTupleAttributeNumber).
const MAX_COLUMNS: u16 = 1664;

pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Frontend (client → server) message types.
const FRONTEND: &[u8] = b"BCdcfDEHFpPQSX";
/// Backend (server → client) message types.
const BACKEND: &[u8] = b"RK23CdcGHWDIEVvnNAtS1sZT";
/// ErrorResponse / NoticeResponse field codes.
const ERROR_FIELDS: &[u8] = b"SVCMDHPpqWstcdnFLR";

/// One bit per type byte, per direction: checked for every message header, so a table lookup
/// rather than a scan of the lists above.
const VALID: [[u64; 4]; 2] = [type_set(FRONTEND), type_set(BACKEND)];

const fn type_set(types: &[u8]) -> [u64; 4] {
    let mut set = [0u64; 4];
    let mut i = 0;
    while i < types.len() {
        let t = types[i] as usize;
        set[t / 64] |= 1 << (t % 64);
        i += 1;
    }
    set
}

#[inline]
pub fn valid_type(dir: Dir, t: u8) -> bool {
    let set = &VALID[matches!(dir, Dir::Response) as usize];
    set[t as usize / 64] & (1 << (t % 64)) != 0
}

/// Inclusive bounds of the body length (the declared length minus its own 4 bytes).
#[inline]
pub fn body_bounds(dir: Dir, t: u8) -> (u64, u64) {
    BOUNDS[matches!(dir, Dir::Response) as usize][t as usize]
}

/// [`bounds_of`] of every type byte, requests then responses (looked up once per message).
static BOUNDS: [[(u64, u64); 256]; 2] = {
    let mut table = [[(0, 0); 256]; 2];
    let mut t = 0;
    while t < 256 {
        table[0][t] = bounds_of(Dir::Request, t as u8);
        table[1][t] = bounds_of(Dir::Response, t as u8);
        t += 1;
    }
    table
};

const fn bounds_of(dir: Dir, t: u8) -> (u64, u64) {
    match dir {
        Dir::Request => match t {
            b'B' => (8, MAX_BODY),
            b'C' | b'D' => (2, 1 << 16),
            b'E' => (5, 1 << 16),
            b'H' | b'S' | b'X' | b'c' => (0, 0),
            b'd' => (0, MAX_BODY),
            b'f' => (1, 1 << 20),
            b'F' => (10, MAX_BODY),
            b'p' => (1, 1 << 20),
            b'P' => (4, MAX_BODY),
            b'Q' => (1, MAX_BODY),
            _ => (0, MAX_BODY),
        },
        Dir::Response => match t {
            b'R' => (4, 1 << 20),
            b'K' => (8, 264),
            b'2' | b'3' | b'1' | b'n' | b'I' | b's' | b'c' => (0, 0),
            b'C' => (1, 4096),
            b'd' | b'V' => (0, MAX_BODY),
            b'D' => (2, MAX_BODY),
            b'T' => (2, 1 << 24),
            b'E' | b'N' => (1, 1 << 20),
            b'G' | b'H' | b'W' => (3, 8192),
            b'v' => (8, 1 << 16),
            b'A' => (6, 1 << 20),
            b't' => (2, 2 + 4 * 65_535),
            b'S' => (2, 1 << 16),
            b'Z' => (1, 1),
            _ => (0, MAX_BODY),
        },
    }
}

/// How many body bytes to keep: only what the decoder reads. Row data, copy data, row
/// descriptions and bind parameters are skipped without being buffered.
/// `keep_password` while a SASLInitialResponse is expected: its mechanism name; never more.
pub const KEEP_SASL_MECHANISM: usize = 32;
/// `keep_password` while a cleartext password is expected: enough for the longest IAM token
/// (with a session token), whose form alone is looked at.
pub const KEEP_CLEARTEXT: usize = 16 << 10;

pub fn keep_len(dir: Dir, t: u8) -> usize {
    match dir {
        Dir::Request => match t {
            b'Q' | b'P' => MAX_SQL + 512,
            b'B' | b'E' | b'C' | b'D' => 512,
            // PasswordMessage-type bodies: only what the framer is told (`keep_password`).
            b'p' => 0,
            b'F' => 4,
            _ => 0,
        },
        Dir::Response => match t {
            b'R' => 512,
            b'E' | b'N' => 4096,
            b'C' => 256,
            b'Z' => 1,
            b'S' => 512,
            b'D' | b'T' => 2,
            _ => 0,
        },
    }
}

/// A NUL-terminated name at the start of `b` made of printable bytes; `None` when the bytes
/// available end before the NUL (unknown), `Some(false)` when a byte is implausible.
fn name_ok(b: &[u8], max: usize) -> Option<bool> {
    for (i, &c) in b.iter().enumerate() {
        if c == 0 {
            return Some(true);
        }
        if i >= max || !((0x20..0x7f).contains(&c) || c >= 0x80) {
            return Some(false);
        }
    }
    None
}

/// SQL text: no NUL before the end, no control characters other than whitespace.
fn sql_ok(b: &[u8]) -> bool {
    b.iter()
        .take(256)
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r' | 0x0c))
}

/// Content checks while hunting for a boundary. `avail` is the part of the body at hand
/// (possibly all of it); a check that needs bytes not at hand passes.
pub fn plausible_body(dir: Dir, t: u8, avail: &[u8], body_len: u64) -> bool {
    let full = avail.len() as u64 >= body_len;
    match dir {
        Dir::Response => match t {
            b'Z' => avail
                .first()
                .is_none_or(|c| matches!(c, b'I' | b'T' | b'E')),
            b'C' => {
                let text = if full {
                    &avail[..avail.len() - 1]
                } else {
                    avail
                };
                avail.first().is_none_or(u8::is_ascii_uppercase)
                    && text
                        .iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ')
                    && (!full || avail.last() == Some(&0))
            }
            b'D' => {
                if avail.len() < 2 {
                    return true;
                }
                let n = u16::from_be_bytes([avail[0], avail[1]]);
                if n > MAX_COLUMNS || (n == 0 && body_len != 2) {
                    return false;
                }
                if n > 0 && avail.len() >= 6 {
                    let l = i32::from_be_bytes([avail[2], avail[3], avail[4], avail[5]]);
                    return l >= -1 && (l as i64) <= body_len as i64 - 6;
                }
                true
            }
            b'T' => {
                if avail.len() < 2 {
                    return true;
                }
                let n = u16::from_be_bytes([avail[0], avail[1]]);
                n <= MAX_COLUMNS && (n > 0 || body_len == 2)
            }
            b'E' | b'N' => avail.first().is_none_or(|c| ERROR_FIELDS.contains(c)),
            b'R' => {
                if avail.len() < 4 {
                    return true;
                }
                match be32(avail) {
                    0 | 3 | 7 | 9 => body_len == 4,
                    5 => body_len == 8,
                    2 | 6 | 8 | 10 | 11 | 12 => true,
                    _ => false,
                }
            }
            b'S' => name_ok(avail, 64) != Some(false),
            b'G' | b'H' | b'W' => avail.first().is_none_or(|c| *c <= 1),
            _ => true,
        },
        Dir::Request => match t {
            b'Q' => {
                let text = if full {
                    &avail[..avail.len() - 1]
                } else {
                    avail
                };
                sql_ok(text) && !text.contains(&0) && (!full || avail.last() == Some(&0))
            }
            b'P' => match name_ok(avail, 256) {
                Some(false) => false,
                Some(true) => {
                    let rest = &avail[avail.iter().position(|&c| c == 0).unwrap_or(0) + 1..];
                    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                    sql_ok(&rest[..end])
                }
                None => true,
            },
            b'B' => match name_ok(avail, 256) {
                Some(false) => false,
                Some(true) => {
                    let rest = &avail[avail.iter().position(|&c| c == 0).unwrap_or(0) + 1..];
                    name_ok(rest, 256) != Some(false)
                }
                None => true,
            },
            b'E' => {
                name_ok(avail, 256) != Some(false)
                    && (!full || avail.get(avail.len().wrapping_sub(5)) == Some(&0))
            }
            b'C' | b'D' => {
                avail.first().is_none_or(|c| matches!(c, b'S' | b'P'))
                    && (avail.len() < 2 || name_ok(&avail[1..], 256) != Some(false))
            }
            b'f' => printable(&avail[..avail.len().saturating_sub(1)]),
            _ => true,
        },
    }
}

/// How much a complete, plausible message is worth as evidence of a real boundary (3 is
/// enough): fixed five- or six-byte messages and well-formed text are hard to hit by chance.
pub fn strength(dir: Dir, t: u8, body: &[u8]) -> u32 {
    match dir {
        Dir::Response => match t {
            b'Z' | b'2' | b'3' | b'1' | b'n' | b'I' | b's' | b'c' => 3,
            b'C' if body.len() >= 4 => 3,
            b'K' | b'R' | b'E' | b'N' | b'S' => 2,
            _ => 1,
        },
        Dir::Request => match t {
            b'H' | b'S' | b'X' | b'c' => 3,
            b'Q' if body.len() >= 8 => 3,
            b'P' | b'B' | b'E' => 2,
            _ => 1,
        },
    }
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A NUL-terminated string at `*pos`; advances past the NUL.
pub fn cstr<'a>(b: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = b.get(*pos..)?;
    let n = rest.iter().position(|&c| c == 0)?;
    *pos += n + 1;
    Some(&rest[..n])
}

/// An untyped start-up packet (its body, after the length word).
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel,
    Startup { params: Vec<(String, String)> },
    Invalid,
}

/// Parses a start-up packet body. Parameters are pairs of NUL-terminated strings ended by an
/// empty name; a body that was cut short yields the pairs that are complete.
pub fn parse_startup(body: &[u8]) -> StartupPacket {
    if body.len() < 4 {
        return StartupPacket::Invalid;
    }
    let code = be32(body);
    match code {
        SSL_REQUEST => StartupPacket::Ssl,
        GSSENC_REQUEST => StartupPacket::GssEnc,
        CANCEL_REQUEST => StartupPacket::Cancel,
        c if c >> 16 == 3 => {
            let mut params = Vec::new();
            let mut pos = 4;
            while let Some(name) = cstr(body, &mut pos) {
                if name.is_empty() {
                    break;
                }
                let Some(value) = cstr(body, &mut pos) else {
                    break;
                };
                if params.len() < 64 {
                    params.push((lossy(name), lossy(value)));
                }
            }
            StartupPacket::Startup { params }
        }
        _ => StartupPacket::Invalid,
    }
}

/// Whether `b` starts with an untyped start-up packet header (length and code/version).
pub fn looks_like_startup(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let len = be32(b);
    let code = be32(&b[4..]);
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => (16..=264).contains(&len),
        c => c >> 16 == 3 && (c & 0xffff) <= 2 && (9..=MAX_STARTUP).contains(&len),
    }
}

/// The fields of an ErrorResponse/NoticeResponse body: (type byte, value), up to the
/// terminator or the first field cut short.
fn notice_fields(body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let f = *body.get(pos)?;
        if f == 0 {
            return None;
        }
        pos += 1;
        cstr(body, &mut pos).map(|v| (f, v))
    })
}

/// A well-formed SQLSTATE: five letters or digits.
fn sqlstate(v: &[u8]) -> Option<String> {
    (v.len() == 5 && v.iter().all(u8::is_ascii_alphanumeric)).then(|| lossy(v))
}

/// Severity and SQLSTATE of an ErrorResponse/NoticeResponse body.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let (mut severity, mut localized, mut code) = (None, None, None);
    for (f, v) in notice_fields(body) {
        match f {
            b'V' => severity = Some(lossy(v)),
            b'S' => localized = Some(lossy(v)),
            b'C' => code = sqlstate(v).or(code),
            _ => {}
        }
    }
    (severity.or(localized), code)
}

/// An ErrorResponse as a record carries it: its SQLSTATE (none without a well-formed one)
/// and primary message ('M').
pub fn error_reply(body: &[u8]) -> Option<crate::decode::kit::ErrorReply> {
    let (mut code, mut message) = (None, None);
    for (f, v) in notice_fields(body) {
        match f {
            b'C' => code = sqlstate(v).or(code),
            b'M' => message = Some(lossy(v)),
            _ => {}
        }
    }
    Some(crate::decode::kit::ErrorReply::postgres(code?, message))
}

/// Rows a CommandComplete tag reports: `SELECT n`, `INSERT oid n`, `UPDATE n`, `DELETE n`,
/// `MERGE n`, `MOVE n`, `FETCH n`, `COPY n`. Other tags carry no count.
pub fn tag_rows(body: &[u8]) -> Option<u64> {
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    let tag = std::str::from_utf8(&body[..end]).ok()?;
    let mut words = tag.split(' ');
    let verb = words.next()?;
    if !matches!(
        verb,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "MOVE" | "FETCH" | "COPY"
    ) {
        return None;
    }
    tag.rsplit(' ').next()?.parse().ok()
}

/// The command a CommandComplete tag names, without its counts (`INSERT 0 1` → `INSERT`,
/// `ROLLBACK`, `CREATE TABLE`); `None` for a tag that is not short printable text.
pub fn tag_command(body: &[u8]) -> Option<String> {
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    let tag = std::str::from_utf8(body.get(..end.min(64))?).ok()?;
    let words: Vec<&str> = tag
        .split(' ')
        .take_while(|w| !w.is_empty() && !w.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let cmd = words.join(" ");
    (!cmd.is_empty() && cmd.bytes().all(|b| b.is_ascii_uppercase() || b == b' ')).then_some(cmd)
}

/// Authentication request code of an 'R' message.
pub fn auth_code(body: &[u8]) -> Option<u32> {
    (body.len() >= 4).then(|| be32(body))
}

/// SASL mechanisms an AuthenticationSASL message offers.
pub fn sasl_mechanisms(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 4;
    while let Some(m) = cstr(body, &mut pos) {
        if m.is_empty() || out.len() >= 8 {
            break;
        }
        out.push(lossy(m));
    }
    out
}

/// Cuts `sql` to a prefix that ends on a character boundary.
pub fn sql_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(e) if e.error_len().is_none() => lossy(&b[..e.valid_up_to()]),
        Err(_) => lossy(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(tag_rows(b"SELECT 1000\0"), Some(1000));
        assert_eq!(tag_rows(b"INSERT 0 5\0"), Some(5));
        assert_eq!(tag_rows(b"UPDATE 3\0"), Some(3));
        assert_eq!(tag_rows(b"COPY 7\0"), Some(7));
        assert_eq!(tag_rows(b"BEGIN\0"), None);
        assert_eq!(tag_rows(b"CREATE TABLE\0"), None);
        assert_eq!(tag_rows(b"SELECT\0"), None);
        let cmd = |b: &[u8]| tag_command(b).map(|s| s.to_string());
        assert_eq!(cmd(b"INSERT 0 5\0").as_deref(), Some("INSERT"));
        assert_eq!(cmd(b"ROLLBACK\0").as_deref(), Some("ROLLBACK"));
        assert_eq!(cmd(b"CREATE TABLE\0").as_deref(), Some("CREATE TABLE"));
        assert_eq!(cmd(b"SELECT 1000\0").as_deref(), Some("SELECT"));
        assert_eq!(cmd(b"\0"), None);
        assert_eq!(cmd(b"select\x01\0"), None, "not a tag");
    }

    #[test]
    fn errors() {
        let b = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0";
        assert_eq!(
            error_fields(b),
            (Some("FATAL".into()), Some("28P01".into()))
        );
        assert_eq!(error_fields(b"SERROR\0C4"), (Some("ERROR".into()), None));
    }

    #[test]
    fn startup() {
        let mut b = 196_608u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"user\0alice\0database\0db\0\0");
        assert_eq!(
            parse_startup(&b),
            StartupPacket::Startup {
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
        assert_eq!(
            parse_startup(&SSL_REQUEST.to_be_bytes()),
            StartupPacket::Ssl
        );
        assert_eq!(parse_startup(&[1, 2, 3, 4]), StartupPacket::Invalid);
    }
}

#[cfg(test)]
mod valid_type_tests {
    use super::*;

    #[test]
    fn table_matches_the_lists() {
        for t in 0..=255u8 {
            assert_eq!(valid_type(Dir::Request, t), FRONTEND.contains(&t), "{t}");
            assert_eq!(valid_type(Dir::Response, t), BACKEND.contains(&t), "{t}");
        }
    }
}
