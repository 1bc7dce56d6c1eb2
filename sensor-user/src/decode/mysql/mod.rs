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
//!   ([`Control::StartTls`]); the HandshakeResponse and everything after it follow inside
//!   TLS, and this decoder goes on with the plaintext when the session's layer can read it
//!   (else nothing more reaches it, and no LoginRecord is made: neither the user nor the
//!   outcome can be known). A mid-stream start whose first client bytes are TLS records is
//!   counted the same way.
//! - **Compression.** When both sides negotiated CLIENT_COMPRESS or zstd, packets after the
//!   login are compressed: the login is reported, then the bytes are skipped.
//! - **Commands.** Requests (sequence id 0) are queued in order (at most `MAX_PENDING`) and
//!   paired with responses in order, so pipelined requests get their own responses
//!   (Packetbeat #18471). A response ends at: its OK / ERR (not at a MariaDB progress
//!   report); for a result set, the terminator (EOF, or OK with 0xFE header under
//!   CLIENT_DEPRECATE_EOF) whose status lacks SERVER_MORE_RESULTS_EXISTS; for an EXECUTE
//!   that opened a cursor, the EOF after the definitions; for a PREPARE, its last
//!   definition (or EOF); LOCAL INFILE goes through the client's file packets and empty
//!   packet to the OK / ERR. COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA have no response and
//!   are reported at once. COM_QUIT ends the session and is no query: it is not reported. Whether EOF packets are present is taken from the
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
mod login;
mod pairing;
mod queue;
mod results;
mod sinks;
mod statements;
mod wire;

#[cfg(test)]
mod tests;

use super::kit::Login;
use super::{Control, DecodeCtx, Decoder, Dir, Gap};
use crate::model::Outcome;
use framer::Framer;
use queue::Pending;
use sinks::{ReqSink, RespSink};
use statements::Stmts;
use std::collections::VecDeque;

/// Payload bytes kept per request packet (the SQL text used for fingerprints).
const REQ_CAP: usize = 32 << 10;
/// Payload bytes kept per response packet (headers, OK / ERR / greeting / auth packets).
const RESP_CAP: usize = 1024;
/// Bytes kept while looking for the next request / response end after framing was lost
/// (rescanned at each delivery, so small: a long query is found by its start, see [`hunt`]).
const REQ_WINDOW: usize = 8 << 10;
const RESP_WINDOW: usize = 4 << 10;

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
