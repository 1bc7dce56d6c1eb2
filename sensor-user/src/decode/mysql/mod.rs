//! MySQL / MariaDB client/server protocol decoder.
//!
//! Each direction goes through a `framer::Framer` (packet framing over any slicing of the
//! stream, gaps, resynchronisation); the packets drive one `Session`:
//!
//! - **Connection phase.** HandshakeV10 (server version — MariaDB's "5.5.5-" prefix
//!   dropped —, capabilities, default plugin) → HandshakeResponse41 (user, database, client
//!   plugin, connection attributes; the auth response is skipped, never kept) → any number
//!   of AuthSwitchRequest / AuthMoreData / client auth packets → the final OK or ERR, which
//!   alone decides the outcome: a caching_sha2_password exchange that goes through
//!   AuthMoreData (fast-auth success 0x03, full auth 0x04, public key) and ends in ERR is a
//!   failure (Zeek #3880). `auth_method` is the plugin last switched to, else the client's,
//!   else the server's default. `application` is the `program_name` attribute, else
//!   `_program_name`, else the client library's `_client_name`. An ERR instead of a greeting
//!   (too many connections, host blocked) is a failed login without a user; a login the
//!   server never answered is reported at close as a failure without an error code.
//!   COM_CHANGE_USER is a login attempt of its own (a LoginRecord, no QueryRecord).
//! - **TLS.** An SSLRequest tells the session that TLS starts right after it
//!   ([`Control::StartTls`]), and nothing more is decoded here. No LoginRecord is emitted for such a session: neither the user nor the outcome
//!   can be known (a record would have to guess). The pre-TLS server version and
//!   capabilities are kept in the session state. A mid-stream start whose first client bytes
//!   are TLS records is counted the same way.
//! - **Compression.** When both sides negotiated CLIENT_COMPRESS or zstd, packets after the
//!   login are compressed: the login is reported, then the bytes are skipped.
//! - **Commands.** Requests (sequence id 0) are queued in order (at most `MAX_PENDING`) and
//!   paired with responses in order, so pipelined requests get their own responses
//!   (Packetbeat #18471). A response ends at: its OK / ERR (not at a MariaDB progress
//!   report); for a result set, the terminator (EOF, or OK with 0xFE header under
//!   CLIENT_DEPRECATE_EOF) whose status lacks SERVER_MORE_RESULTS_EXISTS; for an EXECUTE
//!   that opened a cursor, the EOF after the definitions; for a PREPARE, its last
//!   definition (or EOF); LOCAL INFILE goes through the client's file packets and empty
//!   packet to the OK / ERR. COM_QUIT, COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA have no
//!   response and are reported at once. Whether EOF packets are present is taken from the
//!   handshake, or for a mid-stream start learnt from the packets (a 5-byte 0xFE packet is
//!   an EOF, a ≥ 7-byte one an OK); column definitions are recognised by their "def"
//!   catalog, so metadata-less results (MariaDB metadata cache, MySQL optional metadata)
//!   parse without the handshake.
//! - **Records.** COM_QUERY: verb and fingerprint of the SQL; COM_STMT_PREPARE: verb
//!   `STMT_PREPARE`, the SQL's fingerprint; COM_STMT_EXECUTE (and MariaDB's bulk execute,
//!   statement id −1 = the last prepared): the prepared statement's verb and fingerprint,
//!   `prepared: true` (`STMT_EXECUTE` when the PREPARE was not seen); other commands: verb
//!   and fingerprint = the command name. `rows` = result-set rows returned plus OK affected
//!   rows, summed over the results of a multi-result response; `None` when framing was lost
//!   inside the response, and for commands that say nothing of rows (PING, PREPARE, …).
//!   `database` is the one in effect when the server ran the request; COM_INIT_DB, a `USE`
//!   that succeeded and session-state schema tracking change it for what follows.
//! - **Gaps and resynchronisation** (see `hunt`): a gap inside a payload of known length is
//!   skipped (only the captured prefix of each payload is kept, ≤ `REQ_CAP` /
//!   `RESP_CAP`); a gap that may hide headers loses framing. Requests are found again at
//!   the next plausible request (a request cut by the gap is still reported, its text
//!   truncated). A response whose framing was lost ends at a plausible terminator ending the
//!   bytes received, or when the client sends its next request (whose response then starts
//!   at the response side's next byte, with the sequence id after the request's); it is
//!   reported with `rows: None`, its bytes all counted, ending at its last byte seen. A
//!   mid-stream start hunts the same way (the first find is not counted as a resync).
//!   During a LOCAL INFILE upload the server's next packet ends it whatever its sequence id.
//!   A pending request at close is reported with `rows: None` (latency up to its last
//!   response byte, or to the close when nothing came back).

mod framer;
mod hunt;
mod wire;

#[cfg(test)]
mod tests;

use super::fingerprint::{Dialect, fingerprint_cached};
use super::kit::{self, Exchange, Login};
use super::{Control, DecodeCtx, Decoder, Dir, Gap};
use crate::model::Outcome;
use framer::{Framer, MAX_PACKET, Packet, Sink};
use std::collections::{HashMap, VecDeque};
use wire::{cap, com, status};

/// Payload bytes kept per request packet (the SQL text used for fingerprints).
const REQ_CAP: usize = 32 << 10;
/// Payload bytes kept per response packet (headers, OK / ERR / greeting / auth packets).
const RESP_CAP: usize = 1024;
/// Bytes kept while looking for the next request / response end after framing was lost
/// (rescanned at each delivery, so small: a long query is found by its start, see [`hunt`]).
const REQ_WINDOW: usize = 8 << 10;
const RESP_WINDOW: usize = 4 << 10;
/// Outstanding requests per connection.
const MAX_PENDING: usize = 64;
/// Prepared statements remembered per connection, and their text bytes.
const MAX_STMTS: usize = 256;
const MAX_STMT_BYTES: usize = 256 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server greeting.
    Greeting,
    /// Greeting seen; waiting for the client's HandshakeResponse (or SSLRequest).
    HandshakeResponse,
    /// Waiting for the server's final word on the login.
    Auth,
    Command,
    Tls,
    Compressed,
    /// A binlog dump: the server streams events until the connection ends.
    Replication,
    /// The login failed; the server closes the connection.
    Dead,
}

/// What is remembered of a prepared statement.
#[derive(Clone, Debug)]
struct Stmt {
    verb: String,
    fingerprint: String,
    query: Option<String>,
}

impl Stmt {
    fn size(&self) -> usize {
        self.fingerprint.len() + self.query.as_ref().map_or(0, String::len) + 64
    }
}

/// Statement id → statement, bounded (oldest forgotten first).
#[derive(Default)]
struct Stmts {
    map: HashMap<u32, Stmt>,
    order: VecDeque<u32>,
    bytes: usize,
}

impl Stmts {
    fn insert(&mut self, id: u32, s: Stmt) {
        self.remove(id);
        self.bytes += s.size();
        self.map.insert(id, s);
        self.order.push_back(id);
        while self.map.len() > MAX_STMTS || self.bytes > MAX_STMT_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.map.remove(&old) {
                self.bytes -= s.size();
            }
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(s) = self.map.remove(&id) {
            self.bytes -= s.size();
            self.order.retain(|&x| x != id);
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Where a response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RState {
    /// Expecting the first packet of a (next) result.
    Start,
    /// Column definitions left.
    Cols(u64),
    /// After the definitions: an EOF, or the first row / terminator.
    AfterCols,
    Rows,
    /// PREPARE_OK's parameter and column definitions left; `maybe_eof`: a group just ended
    /// and its EOF may come now.
    Prep {
        params: u16,
        cols: u16,
        maybe_eof: bool,
    },
    /// LOCAL INFILE: the client is sending the file.
    Infile,
    /// Packets up to a terminator (COM_FIELD_LIST, COM_STMT_FETCH); `count`: they are rows.
    UntilEof {
        count: bool,
    },
    /// One packet, whatever it is.
    Single,
    /// COM_CHANGE_USER's authentication exchange.
    Auth,
    /// Framing was lost inside this response.
    Lost,
    /// Framing found again inside this response: skip to its terminator.
    Resync,
}

struct Pending {
    cmd: u8,
    ts_ns: u64,
    bytes_request: u64,
    /// Sequence id of the next packet of this exchange (either direction).
    next_seq: u8,
    verb: String,
    fingerprint: String,
    query: Option<String>,
    prepared: bool,
    /// MariaDB's statement id −1: the statement prepared last, known when the response comes.
    deferred_stmt: bool,
    /// COM_STMT_PREPARE: the statement to remember under PREPARE_OK's id.
    prep: Option<Stmt>,
    /// Database selected on success (COM_INIT_DB, `USE`).
    use_db: Option<String>,
    /// COM_CHANGE_USER.
    login: Option<Login>,
    st: RState,
    first_ts: Option<u64>,
    end_ts: u64,
    bytes_response: u64,
    rows: u64,
    affected: u64,
    /// An OK or a finished result set said how many rows.
    counted: bool,
    /// A result set's rows were being counted.
    in_rows: bool,
    /// Framing was lost inside the response, or a row could not be told from a terminator.
    uncertain: bool,
    error: Option<String>,
    schema: Option<String>,
}

impl Pending {
    fn new(cmd: u8, p: &Packet<'_>, st: RState) -> Self {
        let name = wire::command_name(cmd).unwrap_or("UNKNOWN");
        Self {
            cmd,
            ts_ns: p.start_ts,
            bytes_request: p.wire,
            next_seq: p.last_seq.wrapping_add(1),
            verb: name.to_string(),
            fingerprint: name.to_string(),
            query: None,
            prepared: false,
            deferred_stmt: false,
            prep: None,
            use_db: None,
            login: None,
            st,
            first_ts: None,
            end_ts: p.end_ts,
            bytes_response: 0,
            rows: 0,
            affected: 0,
            counted: false,
            in_rows: false,
            uncertain: false,
            error: None,
            schema: None,
        }
    }

    fn set_stmt(&mut self, s: &Stmt) {
        self.verb.clone_from(&s.verb);
        self.fingerprint.clone_from(&s.fingerprint);
        self.query.clone_from(&s.query);
    }
}

/// Per-connection protocol state.
struct Session {
    phase: Phase,
    /// TLS starts: after the client's first `n` bytes (the SSL request packet is the first
    /// thing a client sends), or `None` where that is unknown (TLS records found mid-stream).
    tls_after: Option<Option<u64>>,
    server_version: Option<String>,
    connection_id: Option<u32>,
    server_caps: Option<u32>,
    server_ext: u32,
    server_plugin: Option<String>,
    client_caps: Option<u32>,
    client_ext: u32,
    user: Option<String>,
    database: Option<String>,
    application: Option<String>,
    login: Option<Login>,
    /// Next sequence id of the connection-phase exchange.
    seq_next: u8,
    deprecate_eof: Option<bool>,
    /// Boxed: a response's every packet takes the front one out and may put it back, which
    /// moves only a pointer then.
    pending: VecDeque<Box<Pending>>,
    stmts: Stmts,
    last_prepared: Option<u32>,
    /// Sequence id of an EOF that may still follow the last response (a PREPARE answered
    /// before we knew whether EOF packets are sent).
    trailing_eof: Option<u8>,
    /// Arm the other direction's framer at its next byte with this sequence id.
    arm_resp: Option<u8>,
    arm_req: Option<u8>,
    /// Framing has been found at least once (a mid-stream start's first find is no resync).
    req_synced: bool,
    resp_synced: bool,
}

pub struct MysqlDecoder {
    req: Framer,
    resp: Framer,
    /// Request bytes delivered (gaps included): where in the client's stream a call starts.
    req_pos: u64,
    s: Session,
}

impl MysqlDecoder {
    pub fn new(mid_stream: bool) -> Self {
        Self {
            req: Framer::new(REQ_CAP, REQ_WINDOW, mid_stream),
            resp: Framer::new(RESP_CAP, RESP_WINDOW, mid_stream),
            req_pos: 0,
            s: Session {
                tls_after: None,
                phase: if mid_stream {
                    Phase::Command
                } else {
                    Phase::Greeting
                },
                server_version: None,
                connection_id: None,
                server_caps: None,
                server_ext: 0,
                server_plugin: None,
                client_caps: None,
                client_ext: 0,
                user: None,
                database: None,
                application: None,
                login: None,
                seq_next: 0,
                deprecate_eof: None,
                pending: VecDeque::new(),
                stmts: Stmts::default(),
                last_prepared: None,
                trailing_eof: None,
                arm_resp: None,
                arm_req: None,
                req_synced: !mid_stream,
                resp_synced: !mid_stream,
            },
        }
    }

    /// Server version from the (pre-TLS) handshake.
    pub fn server_version(&self) -> Option<&str> {
        self.s.server_version.as_deref()
    }

    /// Server thread id from the handshake.
    pub fn connection_id(&self) -> Option<u32> {
        self.s.connection_id
    }

    /// Server capability flags from the handshake.
    pub fn server_capabilities(&self) -> Option<u32> {
        self.s.server_caps
    }

    fn skipping(&self) -> bool {
        matches!(self.s.phase, Phase::Tls | Phase::Compressed)
    }

    fn apply_arms(&mut self, cx: &mut DecodeCtx<'_>) {
        if let Some(seq) = self.s.arm_resp.take() {
            self.resp.arm(cx, seq);
        }
        if let Some(seq) = self.s.arm_req.take() {
            self.req.arm(cx, seq);
        }
        if self.skipping() {
            self.req.stop();
            self.resp.stop();
        }
    }
}

impl Decoder for MysqlDecoder {
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, bytes: &[u8]) -> Control {
        let base = self.req_pos;
        if dir == Dir::Request {
            self.req_pos += bytes.len() as u64;
        }
        if self.skipping() {
            if self.s.phase == Phase::Compressed {
                cx.stats.skipped_bytes += bytes.len() as u64;
            }
            return Control::Continue;
        }
        match dir {
            Dir::Request => {
                let resp_lost = self.resp.is_lost();
                let mut sink = ReqSink {
                    s: &mut self.s,
                    resp_lost,
                };
                self.req.data(cx, ts_ns, bytes, &mut sink);
            }
            Dir::Response => self
                .resp
                .data(cx, ts_ns, bytes, &mut RespSink { s: &mut self.s }),
        }
        self.apply_arms(cx);
        match self.s.tls_after.take() {
            Some(after) => {
                let at = after.map_or(bytes.len() as u64, |n| n.saturating_sub(base));
                Control::StartTls {
                    at: at.min(bytes.len() as u64) as usize,
                }
            }
            None => Control::Continue,
        }
    }

    fn gap(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, gap: Gap) {
        if dir == Dir::Request {
            self.req_pos += gap.len();
        }
        if self.skipping() {
            return;
        }
        match dir {
            Dir::Request => {
                let resp_lost = self.resp.is_lost();
                let mut sink = ReqSink {
                    s: &mut self.s,
                    resp_lost,
                };
                self.req.gap(cx, ts_ns, gap, &mut sink);
            }
            Dir::Response => self
                .resp
                .gap(cx, ts_ns, gap, &mut RespSink { s: &mut self.s }),
        }
        self.apply_arms(cx);
    }

    fn close(&mut self, cx: &mut DecodeCtx<'_>, ts_ns: u64) {
        let s = &mut self.s;
        // A login without an answer: the client saw the connection end, not a success.
        if matches!(s.phase, Phase::Auth)
            && let Some(l) = s.login.take()
        {
            s.emit_login(cx, l, Outcome::Failure, None);
        }
        while let Some(mut q) = s.pending.pop_front() {
            if let Some(l) = q.login.take() {
                s.emit_login(cx, l, Outcome::Failure, None);
                continue;
            }
            // Unanswered or cut short: as long as we know it ran, rows unknown.
            q.uncertain = true;
            if q.bytes_response == 0 {
                q.end_ts = q.end_ts.max(ts_ns);
            }
            s.emit_query(cx, *q);
        }
    }
}

impl Session {
    /// Negotiated capabilities (assumed when the handshake was not seen).
    fn caps(&self) -> u32 {
        match (self.server_caps, self.client_caps) {
            (Some(s), Some(c)) => s & c,
            (None, Some(c)) => c,
            (Some(s), None) => s & cap::ASSUMED,
            (None, None) => cap::ASSUMED,
        }
    }

    /// Whether COM_QUERY carries query attributes (`None`: unknown).
    fn query_attrs(&self) -> Option<bool> {
        match (self.server_caps, self.client_caps) {
            (Some(s), Some(c)) => Some(s & c & cap::QUERY_ATTRIBUTES != 0),
            _ => None,
        }
    }

    fn mariadb_cache_metadata(&self) -> bool {
        self.server_ext & self.client_ext & cap::MARIADB_CACHE_METADATA != 0
    }

    fn emit_login(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        mut l: Login,
        outcome: Outcome,
        error: Option<String>,
    ) {
        l.server_version = self.server_version.clone();
        l.report(cx, outcome, error);
    }

    fn emit_query(&mut self, cx: &mut DecodeCtx<'_>, q: Pending) {
        let rows = if q.uncertain {
            None
        } else if q.error.is_some() {
            q.in_rows.then_some(q.rows)
        } else if q.counted {
            Some(q.rows + q.affected)
        } else {
            None
        };
        let database = self.database.clone();
        if q.error.is_none() && !q.uncertain {
            if let Some(db) = q.schema.clone().or(q.use_db.clone()) {
                self.database = Some(db);
            }
            if q.cmd == com::RESET_CONNECTION {
                self.stmts.clear();
            }
        }
        let r = Exchange {
            ts_ns: q.ts_ns,
            first_ns: q.first_ts,
            end_ns: q.end_ts,
            user: self.user.clone(),
            database,
            verb: q.verb,
            fingerprint: q.fingerprint,
            text: q.query,
            rows,
            error_code: q.error,
            bytes_request: q.bytes_request,
            bytes_response: q.bytes_response,
            prepared: q.prepared,
        }
        .record(cx);
        cx.out.push(r);
    }

    // ---- connection phase ----

    fn on_greeting(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        match p.head.first() {
            Some(0x0a) => {
                if let Some(g) = wire::parse_greeting(p.head) {
                    self.server_version = Some(g.version);
                    self.connection_id = Some(g.connection_id);
                    self.server_caps = Some(g.caps);
                    self.server_ext = g.ext_caps;
                    self.server_plugin = g.plugin;
                    self.phase = Phase::HandshakeResponse;
                    self.seq_next = p.last_seq.wrapping_add(1);
                    return;
                }
            }
            Some(0xff) => {
                // Refused before the handshake (too many connections, host blocked, …).
                let code = wire::parse_err(p.head).map(|c| c.to_string());
                let l = Login {
                    ts_ns: p.start_ts,
                    ..Default::default()
                };
                self.emit_login(cx, l, Outcome::Failure, code);
                self.phase = Phase::Dead;
                return;
            }
            _ => {}
        }
        cx.stats.malformed += 1;
        self.phase = Phase::Command;
    }

    fn on_handshake_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let Some(h) = wire::parse_handshake_response(p.head, p.whole()) else {
            cx.stats.malformed += 1;
            // Whatever it was, the server answers it: keep following the exchange.
            self.login = Some(Login {
                ts_ns: p.start_ts,
                ..Default::default()
            });
            self.phase = Phase::Auth;
            self.seq_next = p.last_seq.wrapping_add(1);
            return;
        };
        self.client_caps = Some(h.caps);
        self.client_ext = h.ext_caps;
        if h.ssl_request {
            self.phase = Phase::Tls;
            self.tls_after = Some(Some(p.wire));
            return;
        }
        let method = h
            .plugin
            .clone()
            .or_else(|| self.server_plugin.clone())
            .or_else(|| {
                Some(if h.caps & cap::SECURE_CONNECTION != 0 {
                    "mysql_native_password".to_string()
                } else {
                    "mysql_old_password".to_string()
                })
            });
        self.login = Some(Login {
            ts_ns: p.start_ts,
            user: h.user,
            database: h.database,
            application: wire::application(&h.attrs),
            auth_method: method,
            ..Default::default()
        });
        self.phase = Phase::Auth;
        self.seq_next = p.last_seq.wrapping_add(1);
    }

    /// A server packet of the login exchange (handshake or COM_CHANGE_USER). Returns the
    /// outcome once the server said its final word.
    fn auth_step(login: &mut Login, p: &Packet<'_>) -> Option<(Outcome, Option<String>)> {
        match p.head.first() {
            Some(0x00) => Some((Outcome::Success, None)),
            Some(0xff) if wire::is_progress(p.head) => None,
            Some(0xff) => Some((
                Outcome::Failure,
                wire::parse_err(p.head).map(|c| c.to_string()),
            )),
            Some(0xfe) => {
                // AuthSwitchRequest (a lone 0xFE: the old switch to mysql_old_password).
                let plugin = if p.head.len() == 1 {
                    Some("mysql_old_password".to_string())
                } else {
                    wire::name(wire::Rd::new(&p.head[1..]).nul_or_end())
                };
                if plugin.is_some() {
                    login.auth_method = plugin;
                }
                None
            }
            // AuthMoreData (caching_sha2 fast-auth success 0x03, full auth 0x04, a public
            // key) and anything else: the exchange goes on.
            _ => None,
        }
    }

    fn on_auth_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        self.seq_next = p.last_seq.wrapping_add(1);
        let login = self.login.get_or_insert_with(|| Login {
            ts_ns: p.start_ts,
            ..Default::default()
        });
        let Some((outcome, error)) = Self::auth_step(login, p) else {
            return;
        };
        let l = self.login.take().unwrap_or_default();
        self.user.clone_from(&l.user);
        self.database.clone_from(&l.database);
        self.application.clone_from(&l.application);
        self.emit_login(cx, l, outcome, error);
        if outcome == Outcome::Failure {
            self.phase = Phase::Dead;
            return;
        }
        self.phase = Phase::Command;
        if self.caps() & (cap::COMPRESS | cap::ZSTD_COMPRESSION) != 0 && self.client_caps.is_some()
        {
            self.phase = Phase::Compressed;
        }
        if let Some(c) = self.server_caps.zip(self.client_caps).map(|(s, c)| s & c) {
            self.deprecate_eof = Some(c & cap::DEPRECATE_EOF != 0);
        }
    }

    // ---- command phase: requests ----

    fn on_command(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>, resp_lost: &mut bool) {
        if *resp_lost {
            // The response side lost framing: whatever was outstanding ended unseen, and
            // this request's response starts at the response side's next byte.
            while let Some(mut q) = self.pending.pop_front() {
                q.uncertain = true;
                if let Some(l) = q.login.take() {
                    let _ = l; // outcome unknown: never guess
                    continue;
                }
                self.emit_query(cx, *q);
            }
            self.arm_resp = Some(p.last_seq.wrapping_add(1));
            *resp_lost = false;
        }
        // A response we could only skip through (its start unreadable) ends before the
        // client's next request.
        while self
            .pending
            .front()
            .is_some_and(|q| matches!(q.st, RState::Resync | RState::Lost))
        {
            if let Some(mut q) = self.pending.pop_front()
                && q.login.is_none()
            {
                q.uncertain = true;
                self.emit_query(cx, *q);
            }
        }
        let Some(&cmd) = p.head.first() else {
            // The command byte itself was lost: keep the pairing with an unknown request.
            cx.stats.malformed += 1;
            self.push(cx, Pending::new(0xff, p, RState::Start));
            return;
        };
        let body = &p.head[1..];
        let mut q = Pending::new(cmd, p, RState::Single);
        match cmd {
            com::QUERY => {
                let sql = kit::text(wire::query_text(body, self.query_attrs()), REQ_CAP);
                let (verb, fp) = fingerprint_cached(&sql, Dialect::MySql);
                if !verb.is_empty() {
                    q.verb = verb;
                }
                q.fingerprint = if fp.is_empty() { "QUERY".into() } else { fp };
                if q.verb == "USE" {
                    q.use_db = wire::use_target(&sql);
                }
                q.query = Some(sql);
                q.st = RState::Start;
            }
            com::STMT_PREPARE => {
                let sql = kit::text(body, REQ_CAP);
                let (verb, fp) = fingerprint_cached(&sql, Dialect::MySql);
                q.fingerprint.clone_from(&fp);
                q.query = Some(sql.clone());
                q.prep = Some(Stmt {
                    verb: if verb.is_empty() {
                        "STMT_EXECUTE".into()
                    } else {
                        verb
                    },
                    fingerprint: fp,
                    query: (!cx.redact).then_some(sql),
                });
                q.st = RState::Start;
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE | com::STMT_FETCH => {
                q.prepared = true;
                let id = wire::Rd::new(body).u32();
                if id == Some(u32::MAX) && cmd != com::STMT_FETCH {
                    q.deferred_stmt = true;
                } else if let Some(s) = id.and_then(|id| self.stmts.map.get(&id)) {
                    if cmd == com::STMT_FETCH {
                        q.fingerprint.clone_from(&s.fingerprint);
                    } else {
                        q.set_stmt(s);
                    }
                }
                q.st = if cmd == com::STMT_FETCH {
                    RState::UntilEof { count: true }
                } else {
                    RState::Start
                };
            }
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA | com::QUIT => {
                if cmd == com::STMT_CLOSE
                    && let Some(id) = wire::Rd::new(body).u32()
                {
                    self.stmts.remove(id);
                }
                // No response: reported at once.
                q.end_ts = p.start_ts;
                self.emit_query(cx, q);
                return;
            }
            com::INIT_DB => q.use_db = wire::name(body),
            com::FIELD_LIST => q.st = RState::UntilEof { count: false },
            com::PROCESS_INFO => q.st = RState::Start,
            com::CHANGE_USER => {
                let caps = self.caps();
                let h = wire::parse_change_user(body, caps).unwrap_or_default();
                q.login = Some(Login {
                    ts_ns: p.start_ts,
                    user: h.user,
                    database: h.database,
                    application: wire::application(&h.attrs).or_else(|| self.application.clone()),
                    auth_method: h.plugin.or_else(|| self.server_plugin.clone()),
                    ..Default::default()
                });
                q.st = RState::Auth;
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::TABLE_DUMP => q.st = RState::Start,
            _ if wire::command_name(cmd).is_none() => {
                cx.stats.malformed += 1;
            }
            _ => {}
        }
        self.push(cx, q);
    }

    fn push(&mut self, cx: &mut DecodeCtx<'_>, q: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            cx.stats.pending_overflow += 1;
        }
        self.pending.push_back(Box::new(q));
    }

    /// A client packet continuing an exchange (LOCAL INFILE data, COM_CHANGE_USER auth).
    fn on_continuation(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let Some(q) = self.pending.front_mut() else {
            cx.stats.skipped_bytes += p.wire;
            return;
        };
        q.bytes_request += p.wire;
        q.next_seq = p.last_seq.wrapping_add(1);
        if q.st == RState::Infile && p.len == 0 {
            q.st = RState::Start;
        }
    }

    fn continuation_expected(&self, seq: u8) -> bool {
        self.pending
            .front()
            .is_some_and(|q| matches!(q.st, RState::Infile | RState::Auth) && q.next_seq == seq)
    }

    // ---- command phase: responses ----

    fn on_response(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        // A result-set row (most packets of a response): counted in place, as `step` would.
        if self.trailing_eof.is_none()
            && let Some(q) = self.pending.front_mut()
            && q.st == RState::Rows
            && !q.deferred_stmt
            && let Some(&b0) = p.head.first()
            && b0 != 0xff
            && !wire::is_terminator(p.head, p.len)
        {
            q.next_seq = p.last_seq.wrapping_add(1);
            q.bytes_response += p.wire;
            q.first_ts.get_or_insert(p.start_ts);
            q.end_ts = p.end_ts;
            q.rows += 1;
            return;
        }
        let Some(mut q) = self.pending.pop_front() else {
            if self.trailing_eof == Some(p.seq) && wire::is_eof(p.head, p.len) {
                self.deprecate_eof = Some(false);
            } else {
                // Unsolicited (e.g. the ERR of a server closing an idle connection) or
                // the answer to a request we did not see.
                cx.stats.skipped_bytes += p.wire;
            }
            self.trailing_eof = None;
            return;
        };
        if self.trailing_eof == Some(p.seq) && p.seq != q.next_seq && wire::is_eof(p.head, p.len) {
            self.deprecate_eof = Some(false);
            self.trailing_eof = None;
            self.pending.push_front(q);
            return;
        }
        self.trailing_eof = None;
        if q.deferred_stmt {
            q.deferred_stmt = false;
            if let Some(s) = self.last_prepared.and_then(|id| self.stmts.map.get(&id)) {
                q.set_stmt(s);
            }
        }
        q.next_seq = p.last_seq.wrapping_add(1);
        q.bytes_response += p.wire;
        q.first_ts.get_or_insert(p.start_ts);
        q.end_ts = p.end_ts;
        if wire::is_progress(p.head) {
            self.pending.push_front(q);
            return;
        }
        if self.step(cx, &mut q, p) {
            if let Some(l) = q.login.take() {
                let outcome = if q.error.is_some() {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                if outcome == Outcome::Success {
                    self.user.clone_from(&l.user);
                    self.database.clone_from(&l.database);
                    self.application.clone_from(&l.application);
                    self.stmts.clear();
                }
                self.emit_login(cx, l, outcome, q.error.take());
            } else {
                self.emit_query(cx, *q);
            }
        } else {
            self.pending.push_front(q);
        }
    }

    /// Advances a response by one packet; true when it is complete.
    fn step(&mut self, cx: &mut DecodeCtx<'_>, q: &mut Pending, p: &Packet<'_>) -> bool {
        let h = p.head;
        let b0 = h.first().copied();
        let caps = self.caps();
        if b0 == Some(0xff) && !matches!(q.st, RState::Cols(_) | RState::Prep { .. }) {
            q.error = wire::parse_err(h).map(|c| c.to_string());
            if q.error.is_none() {
                cx.stats.malformed += 1;
                q.error = Some("unknown".into());
            }
            return true;
        }
        match q.st {
            RState::Start => self.start(cx, q, p, caps),
            RState::Cols(n) => {
                if h.is_empty() || wire::is_column_def(h) {
                    q.st = if n <= 1 {
                        RState::AfterCols
                    } else {
                        RState::Cols(n - 1)
                    };
                    false
                } else {
                    // No definitions after all (optional metadata not announced).
                    q.st = RState::AfterCols;
                    self.step(cx, q, p)
                }
            }
            RState::AfterCols => {
                q.in_rows = true;
                if wire::is_eof(h, p.len) {
                    self.deprecate_eof = Some(false);
                    let st = wire::terminator_status(h, p.len, caps);
                    if st & status::CURSOR_EXISTS != 0 {
                        // Rows come with COM_STMT_FETCH.
                        return self.end_result(q, st, false);
                    }
                    q.st = RState::Rows;
                    false
                } else {
                    self.deprecate_eof = Some(true);
                    q.st = RState::Rows;
                    self.step(cx, q, p)
                }
            }
            RState::Rows => {
                if p.head.is_empty() && p.broken {
                    q.uncertain = true;
                    return false;
                }
                if wire::is_terminator(h, p.len) {
                    let st = wire::terminator_status(h, p.len, caps);
                    return self.end_result(q, st, true);
                }
                q.rows += 1;
                false
            }
            RState::Prep {
                mut params,
                mut cols,
                maybe_eof,
            } => {
                if maybe_eof {
                    if wire::is_eof(h, p.len) {
                        self.deprecate_eof = Some(false);
                        q.st = RState::Prep {
                            params,
                            cols,
                            maybe_eof: false,
                        };
                        return params == 0 && cols == 0;
                    }
                    self.deprecate_eof = Some(true);
                }
                let group_done = if params > 0 {
                    params -= 1;
                    params == 0
                } else if cols > 0 {
                    cols -= 1;
                    cols == 0
                } else {
                    // An EOF was announced and something else came.
                    cx.stats.malformed += 1;
                    return true;
                };
                let last = params == 0 && cols == 0;
                q.st = RState::Prep {
                    params,
                    cols,
                    maybe_eof: false,
                };
                if !group_done {
                    return false;
                }
                match self.deprecate_eof {
                    Some(true) => last,
                    None if last => {
                        // Complete now; an EOF, if the server sends them, is still to come.
                        self.trailing_eof = Some(p.last_seq.wrapping_add(1));
                        true
                    }
                    _ => {
                        q.st = RState::Prep {
                            params,
                            cols,
                            maybe_eof: true,
                        };
                        false
                    }
                }
            }
            RState::Infile => {
                // The server speaks while the client should: follow whatever it says.
                q.st = RState::Start;
                self.step(cx, q, p)
            }
            RState::UntilEof { count } => {
                if wire::is_terminator(h, p.len) {
                    q.counted |= count;
                    q.in_rows |= count;
                    return true;
                }
                if count {
                    q.in_rows = true;
                    q.rows += 1;
                }
                false
            }
            RState::Single => {
                if b0 == Some(0x00)
                    && let Some(ok) = wire::parse_ok(h, caps)
                {
                    q.schema = ok.schema;
                }
                true
            }
            RState::Auth => {
                let login = q.login.get_or_insert_with(Login::default);
                match Self::auth_step(login, p) {
                    Some((_, err)) => {
                        q.error = err;
                        true
                    }
                    None => false,
                }
            }
            RState::Lost => false,
            RState::Resync => {
                if wire::is_terminator(h, p.len) {
                    let st = wire::terminator_status(h, p.len, caps);
                    return self.end_result(q, st, false);
                }
                false
            }
        }
    }

    /// The first packet of a response (or of the next result of a multi-result response).
    fn start(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        q: &mut Pending,
        p: &Packet<'_>,
        caps: u32,
    ) -> bool {
        let h = p.head;
        match q.cmd {
            com::STMT_PREPARE => {
                let Some((id, cols, params, metadata)) = wire::parse_prepare_ok(h, caps) else {
                    cx.stats.malformed += 1;
                    return true;
                };
                if let Some(s) = q.prep.take() {
                    self.stmts.insert(id, s);
                }
                self.last_prepared = Some(id);
                if !metadata || (params == 0 && cols == 0) {
                    return true;
                }
                q.st = RState::Prep {
                    params,
                    cols,
                    maybe_eof: false,
                };
                false
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::TABLE_DUMP => {
                // The server streams from here on; the request is reported now.
                self.phase = Phase::Replication;
                true
            }
            _ => match h.first() {
                None => {
                    q.uncertain = true;
                    q.st = RState::Resync;
                    false
                }
                Some(0x00) => {
                    let ok = wire::parse_ok(h, caps).unwrap_or_default();
                    q.affected += ok.affected;
                    q.counted = true;
                    if ok.schema.is_some() {
                        q.schema = ok.schema;
                    }
                    self.end_result(q, ok.status, false)
                }
                Some(0xfb) if q.cmd == com::QUERY => {
                    q.st = RState::Infile;
                    false
                }
                Some(0xfe) => {
                    let st = wire::terminator_status(h, p.len, caps);
                    self.end_result(q, st, false)
                }
                Some(_) => {
                    let mut r = wire::Rd::new(h);
                    let mut metadata = true;
                    if caps & cap::OPTIONAL_RESULTSET_METADATA != 0 && self.client_caps.is_some() {
                        metadata = r.u8() != Some(0);
                    }
                    let Some(n) = r.lenenc().filter(|&n| n > 0) else {
                        cx.stats.malformed += 1;
                        q.uncertain = true;
                        q.st = RState::Resync;
                        return false;
                    };
                    if self.mariadb_cache_metadata()
                        && matches!(q.cmd, com::STMT_EXECUTE | com::STMT_BULK_EXECUTE)
                    {
                        metadata = r.u8() != Some(0);
                    }
                    q.in_rows = true;
                    q.st = if metadata {
                        RState::Cols(n)
                    } else {
                        RState::AfterCols
                    };
                    false
                }
            },
        }
    }

    /// A result ended with `status`; true when the whole response is complete.
    fn end_result(&mut self, q: &mut Pending, st: u16, rows: bool) -> bool {
        if rows {
            q.counted = true;
        }
        if st & status::MORE_RESULTS_EXISTS != 0 {
            q.st = RState::Start;
            false
        } else {
            true
        }
    }
}

/// The request direction's view of the session.
struct ReqSink<'a> {
    s: &'a mut Session,
    resp_lost: bool,
}

impl Sink for ReqSink<'_> {
    fn header(&mut self, _cx: &mut DecodeCtx<'_>, seq: u8, len: u32) -> bool {
        let s = &self.s;
        match s.phase {
            Phase::Greeting => seq <= 1 && len < 1 << 16,
            Phase::HandshakeResponse | Phase::Auth => seq == s.seq_next,
            Phase::Command => seq == 0 || s.continuation_expected(seq),
            _ => true,
        }
    }

    fn packet(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let s = &mut *self.s;
        match s.phase {
            Phase::Greeting if p.seq == 1 => s.on_handshake_response(cx, p),
            Phase::Greeting => {
                s.phase = Phase::Command;
                s.on_command(cx, p, &mut self.resp_lost);
            }
            Phase::HandshakeResponse => s.on_handshake_response(cx, p),
            Phase::Auth => s.seq_next = p.last_seq.wrapping_add(1),
            Phase::Command if p.seq == 0 => s.on_command(cx, p, &mut self.resp_lost),
            Phase::Command => s.on_continuation(cx, p),
            _ => {}
        }
    }

    fn lost(&mut self, cx: &mut DecodeCtx<'_>, partial: Option<&Packet<'_>>) {
        let (Some(p), Phase::Command) = (partial, self.s.phase) else {
            return;
        };
        if p.seq == 0 && !p.head.is_empty() {
            // A request whose end was lost was still sent: keep it (its text is cut short).
            self.s.on_command(cx, p, &mut self.resp_lost);
        } else if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Infile
        {
            q.bytes_request += p.wire;
        }
    }

    fn hunt(&mut self, _cx: &mut DecodeCtx<'_>, window: &[u8]) -> Option<usize> {
        let s = &mut *self.s;
        if !s.req_synced && hunt::is_tls(window) {
            s.phase = Phase::Tls;
            s.tls_after = Some(None);
            return None;
        }
        let at = hunt::find_request(window)?;
        if s.phase != Phase::Command {
            // Commands come only after a successful login.
            s.phase = Phase::Command;
            s.login = None;
        }
        Some(at)
    }

    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, n: i64, _ts: u64) {
        // The rest of a LOCAL INFILE upload whose framing was lost.
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Infile
        {
            q.bytes_request = q.bytes_request.saturating_add_signed(n);
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>) {
        if self.s.req_synced {
            cx.stats.resyncs += 1;
        }
        self.s.req_synced = true;
    }
}

/// The response direction's view of the session.
struct RespSink<'a> {
    s: &'a mut Session,
}

impl Sink for RespSink<'_> {
    fn header(&mut self, _cx: &mut DecodeCtx<'_>, seq: u8, len: u32) -> bool {
        let s = &self.s;
        match s.phase {
            Phase::Greeting => seq == 0 && len < 1 << 14,
            Phase::Auth => seq == s.seq_next,
            Phase::Command => match s.pending.front() {
                // While the client uploads a LOCAL INFILE the server only speaks to end it;
                // the upload's sequence ids may have been lost with its framing.
                Some(q) if matches!(q.st, RState::Resync | RState::Infile) => true,
                Some(q) => seq == q.next_seq || s.trailing_eof == Some(seq),
                None => true,
            },
            _ => true,
        }
    }

    fn packet(&mut self, cx: &mut DecodeCtx<'_>, p: &Packet<'_>) {
        let s = &mut *self.s;
        match s.phase {
            Phase::Greeting => s.on_greeting(cx, p),
            // The client's response went missing; the server's answer still tells.
            Phase::HandshakeResponse if p.seq >= 2 => s.on_auth_response(cx, p),
            Phase::Auth => s.on_auth_response(cx, p),
            Phase::Command => s.on_response(cx, p),
            Phase::Dead => cx.stats.skipped_bytes += p.wire,
            _ => {}
        }
    }

    fn runs(&mut self, _cx: &mut DecodeCtx<'_>, ts: u64, input: &[u8]) -> usize {
        // Rows of a result set, counted in place as `header` and `on_response` would.
        let s = &mut *self.s;
        if s.phase != Phase::Command || s.trailing_eof.is_some() {
            return 0;
        }
        let Some(q) = s.pending.front_mut() else {
            return 0;
        };
        if q.st != RState::Rows || q.deferred_stmt {
            return 0;
        }
        // Counted in locals, stored once at the end.
        let (mut off, mut next_seq, mut rows, mut bytes) = (0, q.next_seq, 0u64, 0u64);
        while let Some(h) = input.get(off..off + 4) {
            let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
            let seq = h[3];
            let end = off + 4 + len as usize;
            if seq != next_seq || len == 0 || len == MAX_PACKET || input.len() < end {
                break;
            }
            let head = &input[off + 4..end];
            if head[0] == 0xff || wire::is_terminator(head, u64::from(len)) {
                break;
            }
            next_seq = seq.wrapping_add(1);
            bytes += 4 + u64::from(len);
            rows += 1;
            off = end;
        }
        if rows > 0 {
            q.next_seq = next_seq;
            q.bytes_response += bytes;
            q.first_ts.get_or_insert(ts);
            q.end_ts = ts;
            q.rows += rows;
        }
        off
    }

    fn lost(&mut self, _cx: &mut DecodeCtx<'_>, partial: Option<&Packet<'_>>) {
        if self.s.phase != Phase::Command {
            return;
        }
        if let Some(q) = self.s.pending.front_mut() {
            q.uncertain = true;
            q.st = RState::Lost;
            if let Some(p) = partial {
                q.bytes_response += p.wire;
                q.first_ts.get_or_insert(p.start_ts);
            }
        }
    }

    fn unframed(&mut self, _cx: &mut DecodeCtx<'_>, n: i64, ts: u64) {
        // Bytes of a response whose framing was lost still belong to it (the client sends its
        // next request only after the whole response): count them, and the last one's time.
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Lost
        {
            q.bytes_response = q.bytes_response.saturating_add_signed(n);
            if n > 0 {
                q.end_ts = ts;
            }
        }
    }

    fn hunt(&mut self, _cx: &mut DecodeCtx<'_>, window: &[u8]) -> Option<usize> {
        let s = &mut *self.s;
        if !s.resp_synced
            && s.pending.is_empty()
            && s.phase == Phase::Command
            && hunt::is_greeting(window)
        {
            // A mid-stream start that caught the handshake: the client answers next.
            s.phase = Phase::Greeting;
            s.arm_req = Some(1);
            return Some(0);
        }
        match s.pending.front() {
            Some(q) if q.st == RState::Lost => hunt::find_terminator(window),
            _ => None,
        }
    }

    fn resynced(&mut self, cx: &mut DecodeCtx<'_>) {
        if self.s.resp_synced {
            cx.stats.resyncs += 1;
        }
        self.s.resp_synced = true;
        if let Some(q) = self.s.pending.front_mut()
            && q.st == RState::Lost
        {
            q.st = RState::Resync;
        }
    }
}
