//! PostgreSQL frontend/backend protocol 3.0 decoder.
//!
//! # What becomes a record
//!
//! - **Login**: one [`LoginRecord`](crate::model::LoginRecord) per StartupMessage, stamped with its time. Success at the
//!   first ReadyForQuery; Failure at an ErrorResponse during start-up (SQLSTATE as
//!   `error_code`: 28P01, 28000, 3D000, 53300, …, which may come after AuthenticationOk), or
//!   when the connection ends before either (`error_code` None: e.g. psql hanging up after a
//!   password request to prompt for one). `auth_method`: `trust` (AuthenticationOk without a
//!   request), `cleartext`, `md5`, the SASL mechanism the client chose in lower case
//!   (`scram-sha-256`, `scram-sha-256-plus`), `gss`, `sspi`, `kerberos`. `server_version` from
//!   the ParameterStatus the server sends after authenticating. Passwords and SASL payloads
//!   are never buffered (only the first 32 bytes of a SASLInitialResponse, for the mechanism
//!   name, are read and dropped).
//! - **Encryption**: SSLRequest answered 'S' (or GSSENCRequest answered 'G', or a TLS
//!   ClientHello sent directly, PostgreSQL 17 `sslnegotiation=direct`) is told to the session
//!   ([`Control::StartTls`] at the byte after the answer, or [`Control::Opaque`] for GSSAPI),
//!   and nothing more is decoded here.
//!   No login record is made for such a session: user, database and outcome are all inside
//!   the encryption, and a record of unknown outcome does not fit [`Outcome`]. 'N' means a
//!   plaintext start-up follows. A CancelRequest connection yields no record.
//! - **Simple query** ('Q'): one [`QueryRecord`](crate::model::QueryRecord) per Query message, multi-statement strings
//!   included: verb and fingerprint of the whole string (so the verb is the first
//!   statement's), `rows` the sum over its statements (CommandComplete count, or DataRows for
//!   a count-less tag such as SHOW), `error_code` the first ErrorResponse's SQLSTATE, ends at
//!   ReadyForQuery. A statement that fails contributes no rows.
//! - **Extended query**: one record per Execute (`prepared` true), with the text of the
//!   statement its portal was bound to: Parse texts are kept per statement name (unnamed
//!   included) and portals remember their statement at Bind, so a statement prepared once and
//!   executed many times reports its text every time. An Execute ends at its own completion
//!   message: CommandComplete, EmptyQueryResponse, PortalSuspended (row limit reached; `rows`
//!   the DataRows sent) or ErrorResponse; responses pair with Executes in order, so pipelined
//!   batches (several Execute, one Sync) work. Its request starts at the first message after
//!   the previous Execute (usually its Parse or Bind) and its response at the first message
//!   after the previous completion (usually BindComplete). After an ErrorResponse the server
//!   skips to Sync: the Executes it skipped got no response and are *dropped* (they never
//!   ran; reporting them as errors would count one failure many times). Groups without an
//!   Execute (Parse/Describe/Sync) make no record. A statement the sensor never saw parsed
//!   (prepared before it started) reports verb `EXECUTE` and fingerprint `execute <name>`.
//! - **FunctionCall** ('F'): a record with verb `FUNCTION_CALL`, ending at ReadyForQuery.
//! - Latencies come from the segments' kernel timestamps: `latency_first_byte_us` to the first
//!   response byte, `latency_us` to the end of the completion message (the segment holding
//!   its last byte). `bytes_request`/`bytes_response` are the messages attributed to the
//!   query (client CopyData included). Queries pending when the connection ends are dropped:
//!   their latency is unknown.
//! - Redaction on (the default): `query` is None; fingerprints never hold literals; a text cut
//!   short by a gap or the size cap is fingerprinted on its prefix and marked with ` …`. Bind
//!   parameter values are never read.
//!
//! # Losses
//!
//! See [`framer`] for framing and resynchronisation. What the decoder does when framing is
//! lost, never guessing rows, latencies or pairings:
//!
//! - **Response side**: decided when framing is found again (not at the loss: requests keep
//!   coming while responses are out of sync, and later gaps may hide their answers). The
//!   groups (a Query, or extended messages up to a Sync) whose request began before the
//!   latest lost byte are *affected*. Exactly one affected group, and no later request sent
//!   before the resync point: the resumed bytes are its, and it goes on *tainted*. A simple
//!   query keeps its latency (the ReadyForQuery is real); `rows` only from a CommandComplete
//!   tag and only for a single-statement string (a multi-statement string may have lost tags);
//!   `latency_first_byte_us` None unless a response byte came before the loss; the lost bytes
//!   count in `bytes_response` only if its answer had begun before them. For extended
//!   Executes the completions seen after the resync are matched to the *last* pending
//!   Executes (completions are in order, so the loss can only have hidden earlier ones), the
//!   others dropped; with an ErrorResponse among them that is only exact when none are
//!   missing, otherwise all are dropped. Otherwise (several affected groups, or a later
//!   request that the resumed bytes may answer): how many answers ended in the loss is
//!   unknowable, so the affected groups are dropped for a barrier (below).
//! - A query completed after a response-side loss is **held** until the next request-stream
//!   event: data proves no request was lost before it and releases the record; a gap means a
//!   lost request could own the answer that completed it, and drops it. The connection's end
//!   releases what is held.
//! - An `error_code` of None on a tainted query means no ErrorResponse was *seen*: one may
//!   have been lost (there is no "unknown" in [`QueryRecord`](crate::model::QueryRecord)).
//! - **Request side**: requests in the gap are unknown, so a barrier goes into the queue. It
//!   swallows responses until one arrives no earlier than the first request queued behind it
//!   (a response cannot precede its request; exact for clients that wait for each answer); a
//!   request that turns up older than a response the barrier swallowed is not queued (its
//!   answer may be gone). Requests after the resync are not reported until a group boundary
//!   (Query, or the message after a Sync): if the loss cut an extended group open, that Sync
//!   closes it (one ReadyForQuery); otherwise the cut group swallows its ReadyForQuery. The
//!   unnamed statement and portal are forgotten (their Parse/Bind may be in the gap).
//! - Clients that pipeline (send a request before the previous answer ended) defeat the
//!   barrier's timing rule; after a loss in such a stream a few records may pair wrongly
//!   until the stream is idle again. Without loss, pipelining is exact.
//! - **Mid-stream start**: both directions hunt for a boundary; a barrier swallows responses
//!   to requests never seen; user and database are None. If the first request bytes are a
//!   start-up packet after all (the SYN was missed), the connection is decoded from the start.
//! - At most [`MAX_GROUPS`] request groups and [`MAX_EXECS`] Executes per group pend; beyond,
//!   the queue is dropped (counted in `pending_overflow`) and replaced by a barrier.
//! - Text the fingerprinter cannot lex (a `'`, a backtick, or an unterminated quoted
//!   identifier in its output, e.g. from garbled bytes) is cut there and marked ` …`, so no
//!   raw text can leak through a fingerprint.

pub mod framer;
mod login;
mod loss;
pub mod messages;
mod pairing;
mod queue;
mod records;
mod statements;
#[cfg(test)]
mod tests;

use super::kit::Login;
use crate::{
    decode::{Control, DecodeCtx, Decoder, Dir, Gap},
    model::{Outcome, Purpose},
};
use framer::{Ev, Framer, Mode, Msg};
use queue::Group;
use records::Session;
use statements::{Portals, Statements};
use std::collections::VecDeque;

pub use queue::{MAX_EXECS, MAX_GROUPS};
pub use statements::{MAX_PORTALS, MAX_STATEMENT_BYTES, MAX_STATEMENTS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Expecting an untyped start-up packet.
    Startup,
    /// SSLRequest / GSSENCRequest sent; the server's one-byte answer is next.
    AwaitAnswer,
    /// StartupMessage sent; authentication until ReadyForQuery or ErrorResponse.
    Auth,
    Ready,
    /// Encrypted, cancel request, or failed start-up: nothing more to decode.
    Done,
    /// Not PostgreSQL: everything is skipped.
    Dead,
}

/// Decoder of one PostgreSQL connection; see the module documentation.
pub struct PostgresDecoder {
    req: Framer,
    resp: Framer,
    phase: Phase,
    /// The session switched to an encryption: told to the session by the call that saw it.
    switch: Option<Control>,
    mid_stream: bool,
    seen_request: bool,
    /// A CancelRequest made this connection.
    purpose: Purpose,
    /// The server asked for credentials, and the client has not answered yet.
    awaiting_credentials: bool,
    login: Option<Login>,
    session: Session,
    stmts: Statements,
    portals: Portals,
    groups: VecDeque<Group>,
    /// Extended messages since the last Execute: first byte and bytes.
    pre: Option<(u64, u64)>,
    /// Requests are not reported until a group boundary (framing was lost, or a request came
    /// too late to be told from those a barrier swallowed); the first request seen since.
    req_discard: Option<Option<u64>>,
    /// Requests were lost inside an open extended group (see [`Self::cut_group`]).
    cut_open: bool,
    evs: VecDeque<Ev>,
}

impl PostgresDecoder {
    pub fn new(mid_stream: bool) -> Self {
        let req_mode = if mid_stream {
            Mode::Typed
        } else {
            Mode::Untyped
        };
        let mut d = Self {
            req: Framer::new(Dir::Request, req_mode, mid_stream),
            resp: Framer::new(Dir::Response, Mode::Typed, mid_stream),
            phase: if mid_stream {
                Phase::Ready
            } else {
                Phase::Startup
            },
            switch: None,
            mid_stream,
            seen_request: false,
            purpose: Purpose::Session,
            awaiting_credentials: false,
            login: None,
            session: Session::default(),
            stmts: Statements::default(),
            portals: Portals::default(),
            groups: VecDeque::new(),
            pre: None,
            req_discard: None,
            cut_open: false,
            evs: VecDeque::new(),
        };
        if mid_stream {
            d.groups.push_back(Group::barrier());
            d.req_discard = Some(None);
        }
        d
    }

    fn stop(&mut self) {
        self.groups.clear();
        self.evs.clear();
        self.pre = None;
        self.req.keep_password = 0;
    }

    /// What a data call that ended at `at` tells the session.
    fn control(&mut self, at: usize) -> Control {
        match self.switch.take() {
            Some(Control::StartTls { .. }) => Control::StartTls { at },
            Some(c) => c,
            None => Control::Continue,
        }
    }

    // ---- framing events ----

    fn drain_events(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir) {
        while let Some(ev) = self.evs.pop_front() {
            match (ev, dir) {
                (Ev::Msg(m), Dir::Request) => {
                    self.on_request(cx, &m.as_msg());
                    self.req.recycle(m.body);
                }
                (Ev::Msg(m), Dir::Response) => {
                    self.on_response(cx, &m.as_msg());
                    self.resp.recycle(m.body);
                }
                (Ev::Lost { malformed }, Dir::Request) => self.on_request_lost(malformed),
                (Ev::Lost { .. }, Dir::Response) => {}
                (
                    Ev::Synced {
                        ts,
                        dropped,
                        lost_bytes,
                    },
                    Dir::Response,
                ) => self.on_response_resync(ts, dropped, lost_bytes),
                (Ev::Synced { .. }, Dir::Request) => {}
            }
        }
    }

    // ---- requests ----

    fn on_request(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match self.phase {
            Phase::Startup | Phase::AwaitAnswer if m.typ == 0 => self.on_startup_packet(cx, m),
            Phase::Auth => self.on_auth_request(cx, m),
            Phase::Ready => self.on_typed_request(cx, m),
            _ => {}
        }
    }

    // ---- responses ----

    fn on_response(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match self.phase {
            Phase::AwaitAnswer if m.answer => match m.typ {
                b'S' | b'G' => self.go_encrypted(m.typ == b'G'),
                _ => {
                    self.phase = Phase::Startup;
                    self.req.mode = Mode::Untyped;
                }
            },
            Phase::Auth => self.on_auth_response(cx, m),
            Phase::Ready => self.on_query_response(cx, m, 1),
            _ => {}
        }
    }
}

impl Decoder for PostgresDecoder {
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, bytes: &[u8]) -> Control {
        match self.phase {
            Phase::Done => return Control::Continue,
            Phase::Dead => {
                cx.stats.skipped_bytes += bytes.len() as u64;
                return Control::Continue;
            }
            _ => {}
        }
        if bytes.is_empty() {
            return Control::Continue;
        }
        if dir == Dir::Request {
            // No request was lost before these bytes.
            self.session.release(cx);
        }
        if dir == Dir::Request && !self.seen_request {
            self.seen_request = true;
            if self.mid_stream && messages::looks_like_startup(bytes) {
                // Only the SYN was missed: this is the start of the conversation.
                self.mid_stream = false;
                self.phase = Phase::Startup;
                self.req.reset(Mode::Untyped);
                self.resp.reset(Mode::Typed);
                self.groups.clear();
                self.req_discard = None;
            }
        }
        if dir == Dir::Request
            && self.phase == Phase::Startup
            && self.req.at_boundary()
            && bytes[0] == 0x16
        {
            // A TLS ClientHello without SSLRequest (direct TLS negotiation).
            self.go_encrypted(false);
            return self.control(0);
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let framer = match dir {
                Dir::Request => &mut self.req,
                Dir::Response => &mut self.resp,
            };
            // Messages whole in these bytes are framed in place (most of a response: rows
            // and their completions); the framer buffers only one that straddles deliveries.
            if let Some(mut m) = framer.take_whole(&bytes[pos..], ts_ns) {
                pos += m.wire_len as usize;
                match dir {
                    Dir::Request => self.on_request(cx, &m),
                    Dir::Response if matches!(m.typ, b'D' | b'd') && self.phase == Phase::Ready => {
                        // A run of rows (or of COPY data): only counted, so taken together
                        // (each is one more row, or message, and its bytes, at the same
                        // timestamp; nothing else of a CopyData is read).
                        let mut n = 1;
                        let bounds = messages::body_bounds(Dir::Response, m.typ);
                        while let Some(len) = framer::run_len(m.typ, bounds, &bytes[pos..]) {
                            pos += len;
                            m.wire_len += len as u64;
                            n += 1;
                        }
                        self.on_query_response(cx, &m, n);
                    }
                    Dir::Response => self.on_response(cx, &m),
                }
            } else {
                pos += framer.push(&bytes[pos..], ts_ns, &mut self.evs, cx.stats);
                self.drain_events(cx, dir);
            }
            if self.switch.is_some() {
                return self.control(pos);
            }
            match self.phase {
                Phase::Done => return self.control(pos),
                Phase::Dead => {
                    cx.stats.skipped_bytes += (bytes.len() - pos) as u64;
                    return Control::Continue;
                }
                _ => {}
            }
        }
        Control::Continue
    }

    fn gap(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts_ns: u64, gap: Gap) {
        if matches!(self.phase, Phase::Done | Phase::Dead) || gap.is_empty() {
            return;
        }
        let len = gap.len();
        if dir == Dir::Request {
            // A request may be lost here, and own an answer that completed a held query.
            self.session.held.clear();
        }
        if dir == Dir::Response && self.phase == Phase::AwaitAnswer && self.resp.at_boundary() {
            // The answer byte is in the gap; the client's next bytes tell which it was (a
            // TLS ClientHello, or a start-up packet).
            self.phase = Phase::Startup;
            self.req.mode = Mode::Untyped;
            self.resp.mode = Mode::Typed;
            if len == 1 {
                return;
            }
        }
        let framer = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        match gap {
            Gap::Exact(len) => framer.gap(len, &mut self.evs, cx.stats, ts_ns),
            Gap::AtMost(len) => framer.gap_unknown(len, &mut self.evs, cx.stats, ts_ns),
        }
        self.drain_events(cx, dir);
    }

    fn close(&mut self, cx: &mut DecodeCtx<'_>, _ts_ns: u64) {
        // A client that hangs up when asked for its credentials (psql, to prompt its user for
        // the password, then connects again) abandoned the login: the server refused nothing.
        // A start-up the server never answered did not succeed.
        let outcome = if self.awaiting_credentials {
            Outcome::Abandoned
        } else {
            Outcome::Failure
        };
        self.emit_login(cx, outcome, None);
        self.session.release(cx);
        self.stop();
    }

    fn purpose(&self) -> Purpose {
        self.purpose
    }
}
