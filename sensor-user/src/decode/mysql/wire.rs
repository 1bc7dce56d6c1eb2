//! MySQL / MariaDB wire formats: constants, a bounds-checked reader, and parsers for the
//! packets the decoder looks inside. Every parser works on a captured prefix of a payload
//! and returns `None` (never panics) when the bytes do not fit the format.

use crate::decode::kit::text;

/// Capability flags (client and server, lower 32 bits).
pub mod cap {
    /// MySQL: "long password"; MariaDB servers clear it ("CLIENT_MYSQL") and then carry
    /// extended capabilities in the handshake's reserved bytes.
    pub const LONG_PASSWORD: u32 = 1;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// What a modern client and server negotiate; assumed when the handshake was not seen.
    pub const ASSUMED: u32 = PROTOCOL_41
        | SECURE_CONNECTION
        | TRANSACTIONS
        | MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA;
    /// MariaDB extended capability (bit 4 of the extended word): the column-count packet of
    /// a binary result set carries a "metadata follows" byte.
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags (OK / EOF packets).
pub mod status {
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes.
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// The command's name as reported in `verb` (None for a byte that is no command).
pub fn command_name(cmd: u8) -> Option<&'static str> {
    Some(match cmd {
        0x00 => "SLEEP",
        0x01 => "QUIT",
        0x02 => "INIT_DB",
        0x03 => "QUERY",
        0x04 => "FIELD_LIST",
        0x05 => "CREATE_DB",
        0x06 => "DROP_DB",
        0x07 => "REFRESH",
        0x08 => "SHUTDOWN",
        0x09 => "STATISTICS",
        0x0a => "PROCESS_INFO",
        0x0b => "CONNECT",
        0x0c => "PROCESS_KILL",
        0x0d => "DEBUG",
        0x0e => "PING",
        0x0f => "TIME",
        0x10 => "DELAYED_INSERT",
        0x11 => "CHANGE_USER",
        0x12 => "BINLOG_DUMP",
        0x13 => "TABLE_DUMP",
        0x14 => "CONNECT_OUT",
        0x15 => "REGISTER_SLAVE",
        0x16 => "STMT_PREPARE",
        0x17 => "STMT_EXECUTE",
        0x18 => "STMT_SEND_LONG_DATA",
        0x19 => "STMT_CLOSE",
        0x1a => "STMT_RESET",
        0x1b => "SET_OPTION",
        0x1c => "STMT_FETCH",
        0x1d => "DAEMON",
        0x1e => "BINLOG_DUMP_GTID",
        0x1f => "RESET_CONNECTION",
        0x20 => "CLONE",
        0xfa => "STMT_BULK_EXECUTE",
        _ => return None,
    })
}

/// Commands a client really sends (server-internal ones excluded): the only ones accepted
/// when looking for the next request after framing was lost.
pub fn client_command(cmd: u8) -> bool {
    matches!(cmd, 0x01..=0x0a | 0x0c..=0x0e | 0x11 | 0x12 | 0x15..=0x1c | 0x1e | 0x1f | 0xfa)
}

/// A bounds-checked cursor over a byte slice.
pub struct Rd<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Rd<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }

    pub fn left(&self) -> usize {
        self.b.len().saturating_sub(self.i)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.i.checked_add(n)?;
        let s = self.b.get(self.i..end)?;
        self.i = end;
        Some(s)
    }

    pub fn uint(&mut self, n: usize) -> Option<u64> {
        let s = self.bytes(n)?;
        Some(s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.uint(2).map(|v| v as u16)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.uint(4).map(|v| v as u32)
    }

    /// Length-encoded integer; `None` for NULL (0xFB), the invalid 0xFF, or truncation.
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            x @ 0..=0xfa => Some(u64::from(x)),
            0xfc => self.uint(2),
            0xfd => self.uint(3),
            0xfe => self.uint(8),
            _ => None,
        }
    }

    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.bytes(usize::try_from(n).ok()?)
    }

    /// Bytes up to a NUL (consumed); `None` when there is no NUL.
    pub fn nul(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.i..)?;
        let n = rest.iter().position(|&c| c == 0)?;
        self.i += n + 1;
        Some(&rest[..n])
    }

    /// Bytes up to a NUL or the end.
    pub fn nul_or_end(&mut self) -> &'a [u8] {
        let rest = self.b.get(self.i..).unwrap_or(&[]);
        match rest.iter().position(|&c| c == 0) {
            Some(n) => {
                self.i += n + 1;
                &rest[..n]
            }
            None => {
                self.i = self.b.len();
                rest
            }
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.b.get(self.i..).unwrap_or(&[]);
        self.i = self.b.len();
        r
    }
}

/// A name (user, database, plugin, attribute): empty means absent.
pub fn name(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| text(b, 256))
}

/// Protocol::HandshakeV10 (the server greeting).
#[derive(Clone, Debug, Default)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    pub caps: u32,
    /// MariaDB extended capabilities (0 for MySQL).
    pub ext_caps: u32,
    pub plugin: Option<String>,
}

pub fn parse_greeting(p: &[u8]) -> Option<Greeting> {
    let mut r = Rd::new(p);
    if r.u8()? != 0x0a {
        return None;
    }
    let v = r.nul()?;
    if v.is_empty() || v.len() > 128 || v.iter().any(|&c| !(0x20..0x7f).contains(&c)) {
        return None;
    }
    let mut version = text(v, 128);
    // MariaDB prefixes its version with "5.5.5-" for old replication clients.
    if let Some(rest) = version.strip_prefix("5.5.5-")
        && rest.contains("MariaDB")
    {
        version = rest.to_string();
    }
    let connection_id = r.u32()?;
    r.bytes(8)?; // auth-plugin-data part 1
    r.u8()?; // filler
    let mut caps = u32::from(r.u16()?);
    let mut g = Greeting {
        version,
        connection_id,
        caps,
        ..Default::default()
    };
    if r.left() == 0 {
        return Some(g);
    }
    r.u8()?; // character set
    r.u16()?; // status flags
    caps |= u32::from(r.u16()?) << 16;
    g.caps = caps;
    let auth_len = r.u8()?;
    let reserved = r.bytes(10)?;
    if caps & cap::LONG_PASSWORD == 0 {
        g.ext_caps = u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]]);
    }
    if caps & cap::SECURE_CONNECTION != 0 {
        let n = usize::from(auth_len).saturating_sub(8).max(13);
        r.bytes(n.min(r.left()))?;
    }
    if caps & cap::PLUGIN_AUTH != 0 {
        g.plugin = name(r.nul_or_end());
    }
    Some(g)
}

/// What the decoder keeps of a HandshakeResponse (never the auth response).
#[derive(Clone, Debug, Default)]
pub struct HandshakeResponse {
    pub caps: u32,
    pub ext_caps: u32,
    /// Only the fixed part with CLIENT_SSL: an SSLRequest.
    pub ssl_request: bool,
    pub user: Option<String>,
    pub database: Option<String>,
    pub plugin: Option<String>,
    /// Where the auth response lies in the packet (read in place, never copied: only a
    /// cleartext one is looked at, to tell an IAM token).
    pub auth: std::ops::Range<usize>,
    /// The connection attributes [`application`] reads (of the first 64).
    pub attrs: Vec<(String, String)>,
}

/// Protocol::HandshakeResponse41 / 320 and Protocol::SSLRequest. `server_caps` decides
/// nothing here: the client's flags describe its own packet.
pub fn parse_handshake_response(p: &[u8], whole: bool) -> Option<HandshakeResponse> {
    let mut r = Rd::new(p);
    let lo = r.u16()?;
    let mut h = HandshakeResponse::default();
    if u32::from(lo) & cap::PROTOCOL_41 == 0 {
        // HandshakeResponse320: caps(2) max packet(3) user NUL auth ...
        h.caps = u32::from(lo);
        r.bytes(3)?;
        h.user = name(r.nul()?);
        if h.caps & cap::SSL != 0 && p.len() == 5 {
            h.ssl_request = true;
        }
        return Some(h);
    }
    h.caps = u32::from(lo) | (u32::from(r.u16()?) << 16);
    r.u32()?; // max packet size
    r.u8()?; // character set
    let filler = r.bytes(23)?;
    if h.caps & cap::LONG_PASSWORD == 0 {
        h.ext_caps = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
    }
    if r.left() == 0 && whole {
        h.ssl_request = h.caps & cap::SSL != 0;
        return Some(h);
    }
    h.user = name(r.nul()?);
    let auth = if h.caps & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes()?
    } else if h.caps & cap::SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.bytes(usize::from(n))?
    } else {
        r.nul()?
    };
    let end =
        r.i - usize::from(h.caps & (cap::PLUGIN_AUTH_LENENC_DATA | cap::SECURE_CONNECTION) == 0);
    h.auth = end - auth.len()..end;
    if h.caps & cap::CONNECT_WITH_DB != 0 {
        h.database = name(r.nul_or_end());
    }
    if h.caps & cap::PLUGIN_AUTH != 0 {
        h.plugin = name(r.nul_or_end());
    }
    if h.caps & cap::CONNECT_ATTRS != 0 {
        h.attrs = parse_attrs(&mut r);
    }
    Some(h)
}

fn parse_attrs(r: &mut Rd<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(total) = r.lenenc() else { return out };
    let end =
        r.i.saturating_add(usize::try_from(total).unwrap_or(usize::MAX))
            .min(r.b.len());
    let mut a = Rd::new(&r.b[..end]);
    a.i = r.i;
    let mut seen = 0;
    while a.left() > 0 && seen < 64 {
        let (Some(k), Some(v)) = (a.lenenc_bytes(), a.lenenc_bytes()) else {
            break;
        };
        seen += 1;
        // Only the attributes [`application`] reads are kept (a key's text is one of
        // those names exactly when its bytes are: lossy text of other bytes is not that
        // ASCII).
        if APPLICATION_KEYS.iter().any(|n| n.as_bytes() == k) {
            out.push((text(k, 64), text(v, 256)));
        }
    }
    r.i = end;
    out
}

/// Connection attributes that name the application, by preference.
const APPLICATION_KEYS: [&str; 3] = ["program_name", "_program_name", "_client_name"];

/// The application name a client announces in its connection attributes.
pub fn application(attrs: &[(String, String)]) -> Option<String> {
    APPLICATION_KEYS.iter().find_map(|k| {
        attrs
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    })
}

/// COM_CHANGE_USER (after the command byte), with the session's capabilities.
pub fn parse_change_user(p: &[u8], caps: u32) -> Option<HandshakeResponse> {
    let mut r = Rd::new(p);
    let mut h = HandshakeResponse {
        caps,
        user: name(r.nul()?),
        ..Default::default()
    };
    if caps & cap::SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.bytes(usize::from(n))?;
    } else {
        r.nul()?;
    }
    h.database = name(r.nul_or_end());
    if r.left() >= 2 {
        r.u16()?; // character set
        if caps & cap::PLUGIN_AUTH != 0 {
            h.plugin = name(r.nul_or_end());
        }
        if caps & cap::CONNECT_ATTRS != 0 {
            h.attrs = parse_attrs(&mut r);
        }
    }
    Some(h)
}

/// OK packet (header 0x00, or 0xFE when it ends a result set with CLIENT_DEPRECATE_EOF).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected: u64,
    pub status: u16,
    /// New default schema from session-state tracking.
    pub schema: Option<String>,
}

pub fn parse_ok(p: &[u8], caps: u32) -> Option<OkPacket> {
    let mut r = Rd::new(p);
    let h = r.u8()?;
    if h != 0x00 && h != 0xfe {
        return None;
    }
    let affected = r.lenenc()?;
    r.lenenc()?; // last insert id
    let mut ok = OkPacket {
        affected,
        ..Default::default()
    };
    if caps & cap::PROTOCOL_41 != 0 {
        ok.status = r.u16()?;
        r.u16()?; // warnings
    } else if caps & cap::TRANSACTIONS != 0 {
        ok.status = r.u16()?;
    }
    if ok.status & status::SESSION_STATE_CHANGED != 0 && r.left() > 0 {
        r.lenenc_bytes()?; // info
        if let Some(state) = r.lenenc_bytes() {
            let mut s = Rd::new(state);
            while s.left() > 0 {
                let (Some(kind), Some(data)) = (s.u8(), s.lenenc_bytes()) else {
                    break;
                };
                if kind == 1 {
                    // SESSION_TRACK_SCHEMA: the data is itself a lenenc string
                    ok.schema = Rd::new(data).lenenc_bytes().and_then(name);
                }
            }
        }
    }
    Some(ok)
}

/// ERR packet: the error number (`None` for MariaDB's progress report, code 0xFFFF).
pub fn parse_err(p: &[u8]) -> Option<u16> {
    let mut r = Rd::new(p);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    (code != 0xffff).then_some(code)
}

/// An ERR packet as a record carries it: the error number, its name, and the message (after
/// the `#` SQLSTATE marker of protocol 4.1, absent from errors sent before the handshake).
pub fn parse_err_reply(p: &[u8], mariadb: bool) -> Option<crate::decode::kit::ErrorReply> {
    let code = parse_err(p)?;
    let mut rest = p.get(3..).unwrap_or_default();
    if rest.first() == Some(&b'#') && rest.len() >= 6 {
        rest = &rest[6..];
    }
    let message = (!rest.is_empty()).then(|| crate::decode::kit::lossy(rest));
    Some(crate::decode::kit::ErrorReply::mysql(
        code, message, mariadb,
    ))
}

/// A MariaDB progress report (an ERR packet with code 0xFFFF), not a final answer.
pub fn is_progress(p: &[u8]) -> bool {
    p.len() >= 3 && p[0] == 0xff && p[1] == 0xff && p[2] == 0xff
}

/// A 0xFE packet shorter than 16 MiB - 1 ends a result set (EOF, or OK with DEPRECATE_EOF);
/// a text row can start with 0xFE only as an 8-byte length, hence far longer.
pub fn is_terminator(p: &[u8], len: u64) -> bool {
    p.first() == Some(&0xfe) && len < 0xff_ffff
}

/// A classic EOF packet (0xFE, warnings, status: 5 bytes; 1 byte before 4.1).
pub fn is_eof(p: &[u8], len: u64) -> bool {
    p.first() == Some(&0xfe) && len < 7
}

/// Status flags of a result-set terminator (EOF or OK layout, told apart by length).
pub fn terminator_status(p: &[u8], len: u64, caps: u32) -> u16 {
    if len < 7 {
        let mut r = Rd::new(p);
        r.u8();
        r.u16();
        r.u16().unwrap_or(0)
    } else {
        parse_ok(p, caps).map_or(0, |o| o.status)
    }
}

/// COM_STMT_PREPARE_OK: statement id, columns, parameters, and whether metadata follows.
pub fn parse_prepare_ok(p: &[u8], caps: u32) -> Option<(u32, u16, u16, bool)> {
    let mut r = Rd::new(p);
    if r.u8()? != 0 {
        return None;
    }
    let id = r.u32()?;
    let cols = r.u16()?;
    let params = r.u16()?;
    let mut metadata = true;
    if caps & cap::OPTIONAL_RESULTSET_METADATA != 0 {
        r.u8();
        r.u16();
        metadata = r.u8() != Some(0);
    }
    Some((id, cols, params, metadata))
}

/// A Protocol::ColumnDefinition41 starts with the catalog, always "def".
pub fn is_column_def(p: &[u8]) -> bool {
    p.starts_with(b"\x03def")
}

/// The SQL text of a COM_QUERY payload (after the command byte), skipping MySQL 8 query
/// attributes when the client negotiated them (`Some(true)`) or when unknown and the
/// payload starts like an empty attribute block.
pub fn query_text(p: &[u8], attrs: Option<bool>) -> &[u8] {
    match attrs {
        Some(false) => p,
        None => {
            if p.len() >= 2 && p[0] == 0 && p[1] == 1 {
                &p[2..]
            } else {
                p
            }
        }
        Some(true) => skip_query_attributes(p).unwrap_or(&[]),
    }
}

fn skip_query_attributes(p: &[u8]) -> Option<&[u8]> {
    let mut r = Rd::new(p);
    let count = usize::try_from(r.lenenc()?).ok()?;
    r.lenenc()?; // parameter set count (1)
    if count > 0 {
        if count > 4096 {
            return None;
        }
        let nulls = r.bytes(count.div_ceil(8))?;
        if r.u8()? != 1 {
            return None; // new-params-bound flag: always 1 here
        }
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            types.push(r.u16()?);
            r.lenenc_bytes()?; // name
        }
        for (i, t) in types.iter().enumerate() {
            if nulls[i / 8] & (1 << (i % 8)) == 0 {
                skip_binary_value(&mut r, (*t & 0xff) as u8)?;
            }
        }
    }
    Some(r.rest())
}

/// Skips one binary-protocol value of a column type.
fn skip_binary_value(r: &mut Rd<'_>, ty: u8) -> Option<()> {
    match ty {
        0x06 => {}                               // NULL
        0x01 => drop(r.bytes(1)?),               // TINY
        0x02 | 0x0d => drop(r.bytes(2)?),        // SHORT, YEAR
        0x03 | 0x09 | 0x04 => drop(r.bytes(4)?), // LONG, INT24, FLOAT
        0x05 | 0x08 => drop(r.bytes(8)?),        // DOUBLE, LONGLONG
        0x07 | 0x0a | 0x0b | 0x0c | 0x0e | 0x11 | 0x12 | 0x13 => {
            let n = r.u8()?;
            r.bytes(usize::from(n))?;
        }
        _ => drop(r.lenenc_bytes()?),
    }
    Some(())
}

/// The database a `USE db` statement selects.
pub fn use_target(sql: &str) -> Option<String> {
    let s = sql.trim_start();
    let rest = s
        .get(..3)
        .filter(|w| w.eq_ignore_ascii_case("use"))
        .map(|_| &s[3..])?;
    if !rest.starts_with(|c: char| c.is_whitespace() || c == '`') {
        return None;
    }
    let rest = rest.trim_start();
    if let Some(q) = rest.strip_prefix('`') {
        let mut out = String::new();
        let mut it = q.chars().peekable();
        while let Some(c) = it.next() {
            if c == '`' {
                if it.peek() == Some(&'`') {
                    it.next();
                    out.push('`');
                    continue;
                }
                return (!out.is_empty()).then_some(out);
            }
            out.push(c);
        }
        None
    } else {
        let name: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ';')
            .collect();
        (!name.is_empty()).then_some(name)
    }
}
