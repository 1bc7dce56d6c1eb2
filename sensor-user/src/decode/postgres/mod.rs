//! PostgreSQL frontend/backend protocol 3.0 decoder.
//!
//! # What becomes a record
//!
//! - **Login**: one [`LoginRecord`] per StartupMessage, stamped with its time. Success at the
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
//! - **Simple query** ('Q'): one [`QueryRecord`] per Query message, multi-statement strings
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
//!   have been lost (there is no "unknown" in [`QueryRecord`]).
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
pub mod messages;
#[cfg(test)]
mod tests;

use super::kit::{Exchange, Login, lossy};
use crate::{
    decode::{Control, DecodeCtx, Decoder, Dir, Gap, fingerprint},
    model::{Outcome, Record},
};
use framer::{Ev, Framer, Mode, Msg};
use messages::{StartupPacket, cstr};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

/// Request groups pending per connection.
pub const MAX_GROUPS: usize = 1024;
/// Executes pending in one group.
pub const MAX_EXECS: usize = 1024;
/// Named prepared statements remembered per connection, and their fingerprint/text bytes.
pub const MAX_STATEMENTS: usize = 1024;
pub const MAX_STATEMENT_BYTES: usize = 4 << 20;
/// Named portals remembered per connection.
pub const MAX_PORTALS: usize = 256;

thread_local! {
    /// Statements by a keyed hash of their SQL (see [`Stmt::from_sql`]); never with text.
    static STATEMENTS: std::cell::RefCell<fingerprint::SqlCache<Arc<Stmt>>> =
        std::cell::RefCell::new(fingerprint::SqlCache::new(
            fingerprint::CACHE_ENTRIES,
            fingerprint::CACHE_BYTES,
        ));
}

/// A statement's identity.
#[derive(Debug)]
struct Stmt {
    verb: String,
    fingerprint: String,
    /// The SQL text, only when redaction is off.
    text: Option<String>,
    /// More than one statement in the string.
    multi: bool,
}

impl Stmt {
    /// The statement of `sql` (cut by a gap or the keep limit when `cut`). Its identity
    /// depends on the bytes alone, so it is remembered per thread by a keyed hash of them
    /// ([`fingerprint::SqlCache`]: the text itself is not kept); the text is added when
    /// redaction is off.
    fn from_sql(sql: &[u8], cut: bool, redact: bool) -> Arc<Self> {
        let s = STATEMENTS.with(|c| {
            c.borrow_mut().get_or_insert_with(
                u8::from(cut),
                sql,
                |s: &Arc<Self>| s.size(),
                || Self::identify(sql, cut),
            )
        });
        if redact {
            return s;
        }
        Arc::new(Self {
            verb: s.verb.clone(),
            fingerprint: s.fingerprint.clone(),
            text: Some(messages::sql_text(sql)),
            multi: s.multi,
        })
    }

    /// The statement of `sql` without its text.
    fn identify(sql: &[u8], cut: bool) -> Arc<Self> {
        let text = messages::sql_text(sql);
        let (verb, fp) = fingerprint::fingerprint(&text, fingerprint::Dialect::Postgres);
        let (mut fp, unsafe_tail) = guard_fingerprint(fp);
        let multi = fp.contains(';');
        if cut || unsafe_tail {
            fp.push_str(" …");
        }
        Arc::new(Self {
            verb,
            fingerprint: fp,
            text: None,
            multi,
        })
    }

    fn unknown(name: &[u8]) -> Arc<Self> {
        let name: String = if name.is_empty() {
            "<unnamed>".into()
        } else {
            lossy(name)
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
                .take(64)
                .collect()
        };
        Arc::new(Self {
            verb: "EXECUTE".into(),
            fingerprint: format!("execute {name}"),
            text: None,
            multi: false,
        })
    }

    fn special(verb: &str, fingerprint: String) -> Arc<Self> {
        Arc::new(Self {
            verb: verb.into(),
            fingerprint,
            text: None,
            multi: false,
        })
    }

    fn size(&self) -> usize {
        self.fingerprint.len() + self.text.as_ref().map_or(0, String::len) + 64
    }
}

/// Defence in depth for redaction: a fingerprint holds no string literal, so a `'` (or a
/// backtick, not a PostgreSQL quote) outside a quoted identifier, or a quoted identifier that
/// never ends, means the text did not lex (garbled or cut bytes) and what follows may be raw
/// text. The fingerprint is cut there; true when it was.
fn guard_fingerprint(fp: String) -> (String, bool) {
    let mut open = None;
    for (i, c) in fp.char_indices() {
        match (c, open) {
            ('"', None) => open = Some(i),
            ('"', Some(_)) => open = None,
            ('\'' | '`', None) => return (fp[..i].trim_end().to_owned(), true),
            _ => {}
        }
    }
    match open {
        Some(i) => (fp[..i].trim_end().to_owned(), true),
        None => (fp, false),
    }
}

/// Prepared statements by name, bounded (oldest first out).
#[derive(Default)]
struct Statements {
    unnamed: Option<Arc<Stmt>>,
    named: HashMap<Vec<u8>, (u64, Arc<Stmt>)>,
    order: VecDeque<(Vec<u8>, u64)>,
    generation: u64,
    bytes: usize,
}

impl Statements {
    fn insert(&mut self, name: &[u8], s: Arc<Stmt>) {
        if name.is_empty() {
            self.unnamed = Some(s);
            return;
        }
        self.remove(name);
        self.generation += 1;
        self.bytes += s.size();
        self.named.insert(name.to_vec(), (self.generation, s));
        self.order.push_back((name.to_vec(), self.generation));
        while self.named.len() > MAX_STATEMENTS || self.bytes > MAX_STATEMENT_BYTES {
            let Some((n, g)) = self.order.pop_front() else {
                break;
            };
            if self.named.get(&n).is_some_and(|(eg, _)| *eg == g) {
                self.remove(&n);
            }
        }
        if self.order.len() > 4 * MAX_STATEMENTS {
            let named = &self.named;
            self.order
                .retain(|(n, g)| named.get(n).is_some_and(|(eg, _)| eg == g));
        }
    }

    fn remove(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else if let Some((_, s)) = self.named.remove(name) {
            self.bytes -= s.size();
        }
    }

    fn get(&self, name: &[u8]) -> Option<Arc<Stmt>> {
        if name.is_empty() {
            self.unnamed.clone()
        } else {
            self.named.get(name).map(|(_, s)| s.clone())
        }
    }
}

/// Portals by name, bounded (forgotten all at once when full: named portals are rare).
#[derive(Default)]
struct Portals {
    unnamed: Option<Arc<Stmt>>,
    named: HashMap<Vec<u8>, Arc<Stmt>>,
}

impl Portals {
    fn insert(&mut self, name: &[u8], s: Arc<Stmt>) {
        if name.is_empty() {
            self.unnamed = Some(s);
        } else {
            if self.named.len() >= MAX_PORTALS {
                self.named.clear();
            }
            self.named.insert(name.to_vec(), s);
        }
    }

    fn remove(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    fn get(&self, name: &[u8]) -> Option<Arc<Stmt>> {
        if name.is_empty() {
            self.unnamed.clone()
        } else {
            self.named.get(name).cloned()
        }
    }
}

/// One query (a Query message, a FunctionCall, or an Execute) waiting for its response.
#[derive(Debug)]
struct Query {
    stmt: Arc<Stmt>,
    ts_ns: u64,
    bytes_req: u64,
    bytes_resp: u64,
    first_resp: Option<u64>,
    /// Response framing was lost before any response byte of this query was seen.
    first_unknown: bool,
    /// Rows from CommandComplete counts, and from DataRows of count-less statements.
    tag_rows: Option<u64>,
    row_rows: Option<u64>,
    /// DataRows since the last completion.
    cur_rows: u64,
    error: Option<String>,
    prepared: bool,
    /// Response framing was lost while this query was answered.
    tainted: bool,
}

impl Query {
    fn new(stmt: Arc<Stmt>, ts_ns: u64, bytes_req: u64, prepared: bool) -> Self {
        Self {
            stmt,
            ts_ns,
            bytes_req,
            bytes_resp: 0,
            first_resp: None,
            first_unknown: false,
            tag_rows: None,
            row_rows: None,
            cur_rows: 0,
            error: None,
            prepared,
            tainted: false,
        }
    }

    fn saw_response(&mut self, m: &Msg<'_>) {
        self.bytes_resp += m.wire_len;
        if self.first_resp.is_none() && !self.first_unknown {
            self.first_resp = Some(m.start_ts);
        }
    }

    fn taint(&mut self) {
        self.tainted = true;
        if self.first_resp.is_none() {
            self.first_unknown = true;
        }
    }

    /// A CommandComplete of one statement of a simple query.
    fn statement_done(&mut self, m: &Msg<'_>) {
        match m.complete.then(|| messages::tag_rows(m.body)).flatten() {
            Some(n) => self.tag_rows = Some(self.tag_rows.unwrap_or(0) + n),
            None if self.cur_rows > 0 => {
                self.row_rows = Some(self.row_rows.unwrap_or(0) + self.cur_rows)
            }
            None => {}
        }
        self.cur_rows = 0;
    }

    /// Rows of a finished simple query.
    fn simple_rows(&self) -> Option<u64> {
        if self.tainted {
            // Tags may have been lost with the framing; DataRows certainly were.
            return if self.stmt.multi { None } else { self.tag_rows };
        }
        match (self.tag_rows, self.row_rows) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }
}

/// What completed an Execute after response framing was lost (matched at ReadyForQuery).
#[derive(Debug)]
struct Completion {
    first: Option<u64>,
    end_ts: u64,
    bytes: u64,
    rows: Option<u64>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Deferred {
    done: Vec<Completion>,
    /// The response in progress: its first byte is known unless it began before the resync.
    first: Option<u64>,
    bytes: u64,
    rows: u64,
    known_start: bool,
}

impl Deferred {
    /// `m`, or `n` DataRows at once (`m` then stands for all of them: see
    /// [`PostgresDecoder::on_query_response`]).
    fn on_msg(&mut self, m: &Msg<'_>, n: u64) {
        self.bytes += m.wire_len;
        if self.known_start && self.first.is_none() {
            self.first = Some(m.start_ts);
        }
        let rows = match m.typ {
            b'D' => {
                self.rows += n;
                return;
            }
            b'C' => m
                .complete
                .then(|| messages::tag_rows(m.body))
                .flatten()
                .or((self.known_start && self.rows > 0).then_some(self.rows)),
            b's' => self.known_start.then_some(self.rows),
            b'I' | b'E' => None,
            _ => return,
        };
        let error = (m.typ == b'E')
            .then(|| messages::error_fields(m.body).1)
            .flatten();
        if self.done.len() < MAX_EXECS {
            self.done.push(Completion {
                first: self.first,
                end_ts: m.end_ts,
                bytes: self.bytes,
                rows,
                error,
            });
        }
        self.first = None;
        self.bytes = 0;
        self.rows = 0;
        self.known_start = true;
    }
}

#[derive(Debug)]
enum Kind {
    Simple(Query),
    Extended {
        /// Executes without a completion yet, oldest first.
        execs: VecDeque<Query>,
        deferred: Option<Deferred>,
    },
    /// Requests lost to a gap (or before a mid-stream start): swallows their responses.
    Barrier {
        /// End of the latest response swallowed.
        absorbed_until: u64,
    },
}

/// Requests answered by one ReadyForQuery: a Query/FunctionCall, or extended-protocol
/// messages up to a Sync.
#[derive(Debug)]
struct Group {
    kind: Kind,
    /// First request byte.
    first_ts: u64,
    /// No more requests join it (Sync or Query seen).
    closed: bool,
    /// A ReadyForQuery ends it (false for extended messages a Query followed without Sync).
    needs_z: bool,
    /// Reported at all (false: responses are swallowed until its ReadyForQuery).
    emit: bool,
    /// An ErrorResponse came: the server skips the rest of the group.
    failed: bool,
}

impl Group {
    fn extended(first_ts: u64, emit: bool) -> Self {
        Self {
            kind: Kind::Extended {
                execs: VecDeque::new(),
                deferred: None,
            },
            first_ts,
            closed: false,
            needs_z: true,
            emit,
            failed: false,
        }
    }

    fn simple(q: Query) -> Self {
        Self {
            first_ts: q.ts_ns,
            kind: Kind::Simple(q),
            closed: true,
            needs_z: true,
            emit: true,
            failed: false,
        }
    }

    fn barrier() -> Self {
        Self {
            kind: Kind::Barrier { absorbed_until: 0 },
            first_ts: 0,
            closed: true,
            needs_z: true,
            emit: false,
            failed: false,
        }
    }

    fn is_barrier(&self) -> bool {
        matches!(self.kind, Kind::Barrier { .. })
    }

    /// Queries it holds.
    fn units(&self) -> u64 {
        match &self.kind {
            Kind::Simple(_) => 1,
            Kind::Extended { execs, .. } => execs.len() as u64,
            Kind::Barrier { .. } => 0,
        }
    }
}

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

/// Who a record is about, and records held back.
#[derive(Default)]
struct Session {
    user: Option<String>,
    database: Option<String>,
    /// Queries completed after a response-side loss, reported once the request stream shows
    /// no request was lost before their completion (the next request event is data, not a
    /// gap): a lost request could own the answer that completed them.
    held: Vec<Record>,
}

impl Session {
    fn emit(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        q: &Query,
        rows: Option<u64>,
        first: Option<u64>,
        end_ts: u64,
        hold: bool,
    ) {
        let r = Exchange {
            ts_ns: q.ts_ns,
            first_ns: first,
            end_ns: end_ts,
            user: self.user.clone(),
            database: self.database.clone(),
            verb: q.stmt.verb.clone(),
            fingerprint: q.stmt.fingerprint.clone(),
            // Cloned only when it will be reported.
            text: if cx.redact { None } else { q.stmt.text.clone() },
            rows,
            error_code: q.error.clone(),
            bytes_request: q.bytes_req,
            bytes_response: q.bytes_resp,
            prepared: q.prepared,
        }
        .record(cx);
        if hold && self.held.len() < MAX_EXECS {
            self.held.push(r);
        } else {
            cx.out.push(r);
        }
    }

    fn release(&mut self, cx: &mut DecodeCtx<'_>) {
        cx.out.append(&mut self.held);
    }
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
        self.req.keep_password = false;
    }

    /// TLS (or, `gss`, GSSAPI encryption) from the next byte on.
    fn go_encrypted(&mut self, gss: bool) {
        self.switch = Some(if gss {
            Control::Opaque
        } else {
            Control::StartTls { at: 0 }
        });
        self.phase = Phase::Done;
        self.login = None;
        self.stop();
    }

    /// What a data call that ended at `at` tells the session.
    fn control(&mut self, at: usize) -> Control {
        match self.switch.take() {
            Some(Control::StartTls { .. }) => Control::StartTls { at },
            Some(c) => c,
            None => Control::Continue,
        }
    }

    fn emit_login(&mut self, cx: &mut DecodeCtx<'_>, outcome: Outcome, error: Option<String>) {
        if let Some(l) = self.login.take() {
            l.report(cx, outcome, error);
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

    fn on_request_lost(&mut self, malformed: bool) {
        match self.phase {
            Phase::Startup | Phase::AwaitAnswer if self.login.is_none() => {
                if malformed && !self.mid_stream {
                    // A new connection that does not open like PostgreSQL.
                    self.phase = Phase::Dead;
                    self.stop();
                    return;
                }
                self.phase = Phase::Ready;
                self.resp.mode = Mode::Typed;
                self.requests_lost();
            }
            Phase::Ready => self.requests_lost(),
            _ => {}
        }
    }

    /// Requests went missing: see the module documentation.
    fn requests_lost(&mut self) {
        match self.groups.back_mut() {
            Some(g) if g.is_barrier() => {}
            Some(g) => {
                // An extended group cut open is most likely continued after the loss: the
                // next Sync closes it (one ReadyForQuery), unless its answer comes first.
                self.cut_open = !g.closed && matches!(g.kind, Kind::Extended { .. });
                g.closed = true;
                self.groups.push_back(Group::barrier());
            }
            None => self.groups.push_back(Group::barrier()),
        }
        self.stmts.unnamed = None;
        self.portals.unnamed = None;
        self.pre = None;
        self.req_discard = Some(None);
    }

    /// Response framing is back after a loss (or found after a mid-stream start with bytes
    /// skipped); `dropped` is the time of the latest bytes lost, `lost_bytes` how many. The groups whose requests
    /// began by then may have had their answers, or part of them, in what was lost (requests
    /// keep coming while responses are out of sync, and later gaps may hide their answers), so
    /// this is decided now, not at the loss. One such group, and no later request sent before
    /// the resync point (`ts`): the resumed bytes are its, it goes on, tainted. Otherwise how
    /// many were answered in the loss is unknowable, so the affected groups are dropped for a
    /// barrier that swallows responses until one to a later request comes.
    fn on_response_resync(&mut self, ts: u64, dropped: Option<u64>, lost_bytes: u64) {
        let Some(dropped) = dropped else { return };
        if self.phase != Phase::Ready {
            return;
        }
        let affected = self
            .groups
            .iter()
            .take_while(|g| g.is_barrier() || g.first_ts <= dropped)
            .count();
        if affected == 0 {
            return;
        }
        // Groups the resumed bytes may answer: a later request sent before them means the
        // affected group's answer may have ended in the loss (clients that wait for answers
        // send the next request only then).
        let candidates = self
            .groups
            .iter()
            .take_while(|g| g.is_barrier() || g.first_ts <= ts)
            .count();
        if affected == 1 && candidates == 1 && !self.groups[0].is_barrier() {
            // The bytes lost were its answer if its answer had begun before them (between its
            // first response byte and the resumed bytes, nothing else can have been sent).
            match &mut self.groups[0].kind {
                Kind::Simple(q) => {
                    if q.first_resp.is_some() {
                        q.bytes_resp += lost_bytes;
                    }
                    q.taint();
                }
                Kind::Extended { execs, deferred } => {
                    for q in execs.iter_mut() {
                        q.taint();
                    }
                    // Completions before the loss are reported already; match anew. With one
                    // Execute pending, the bytes lost were its.
                    let one = execs.len() == 1 && execs[0].first_resp.is_some();
                    let d = deferred.get_or_insert_with(Deferred::default);
                    d.done.clear();
                    d.bytes = if one { d.bytes + lost_bytes } else { 0 };
                    d.first = None;
                    d.rows = 0;
                    d.known_start = false;
                }
                Kind::Barrier { .. } => {}
            }
            return;
        }
        let absorbed = self
            .groups
            .iter()
            .take(affected)
            .map(|g| match g.kind {
                Kind::Barrier { absorbed_until } => absorbed_until,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
            .max(ts);
        if affected == self.groups.len() {
            // The rest of an open extended group goes unreported too (the server answers
            // the whole group at once).
            let open = self.groups.back().filter(|g| !g.closed).map(|g| g.first_ts);
            if let Some(first) = open
                && self.req_discard.is_none()
            {
                self.req_discard = Some(Some(first));
                self.pre = None;
            }
        }
        self.groups.drain(..affected);
        self.groups.push_front(Group {
            kind: Kind::Barrier {
                absorbed_until: absorbed,
            },
            ..Group::barrier()
        });
    }

    // ---- requests ----

    fn on_request(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match self.phase {
            Phase::Startup | Phase::AwaitAnswer if m.typ == 0 => self.on_startup_packet(cx, m),
            Phase::Auth => {
                if m.typ == b'p' {
                    if self.req.keep_password {
                        self.req.keep_password = false;
                        let mut pos = 0;
                        if let Some(mech) = cstr(m.body, &mut pos)
                            && !mech.is_empty()
                            && let Some(l) = self.login.as_mut()
                        {
                            l.auth_method = Some(lossy(mech).to_ascii_lowercase());
                        }
                    }
                } else if !matches!(m.typ, b'X' | b'd' | b'c' | b'f') {
                    // Clients query only after ReadyForQuery: the answer went missing.
                    self.emit_login(cx, Outcome::Success, None);
                    self.phase = Phase::Ready;
                    self.on_typed_request(cx, m);
                }
            }
            Phase::Ready => self.on_typed_request(cx, m),
            _ => {}
        }
    }

    fn on_startup_packet(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match messages::parse_startup(m.body) {
            StartupPacket::Ssl | StartupPacket::GssEnc => {
                self.phase = Phase::AwaitAnswer;
                self.resp.mode = Mode::Answer;
            }
            StartupPacket::Cancel => {
                self.phase = Phase::Done;
                self.stop();
            }
            StartupPacket::Startup { params } => {
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let user = get("user");
                // The server's default database is the user name.
                let database = get("database").or_else(|| user.clone());
                self.session = Session {
                    user: user.clone(),
                    database: database.clone(),
                    held: Vec::new(),
                };
                self.login = Some(Login {
                    ts_ns: m.start_ts,
                    user,
                    database,
                    application: get("application_name"),
                    ..Login::default()
                });
                self.phase = Phase::Auth;
                self.req.mode = Mode::Typed;
                self.resp.mode = Mode::Typed;
            }
            StartupPacket::Invalid => {
                cx.stats.malformed += 1;
                self.phase = Phase::Dead;
                self.stop();
            }
        }
    }

    /// Queues a group. A group behind a barrier whose request began before the barrier's
    /// last swallowed response may have been answered already: it is not queued (false), and
    /// requests are not reported until the next boundary. Beyond [`MAX_GROUPS`], the queue
    /// is dropped for a barrier.
    fn push_group(&mut self, cx: &mut DecodeCtx<'_>, g: Group) -> bool {
        if let Some(Group {
            kind: Kind::Barrier { absorbed_until },
            ..
        }) = self.groups.back()
            && g.first_ts < *absorbed_until
        {
            if !g.closed {
                self.req_discard = Some(Some(g.first_ts));
            }
            return false;
        }
        if self.groups.len() >= MAX_GROUPS {
            cx.stats.pending_overflow += self.groups.iter().map(Group::units).sum::<u64>();
            self.groups.clear();
            self.groups.push_back(Group::barrier());
        }
        self.groups.push_back(g);
        true
    }

    /// Index of the open extended group, created if needed.
    fn open_group(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) -> Option<usize> {
        let open = self
            .groups
            .back()
            .is_some_and(|g| !g.closed && matches!(g.kind, Kind::Extended { .. }));
        if !open && !self.push_group(cx, Group::extended(ts, true)) {
            return None;
        }
        Some(self.groups.len() - 1)
    }

    fn note_pre(&mut self, m: &Msg<'_>) {
        let p = self.pre.get_or_insert((m.start_ts, 0));
        p.1 += m.wire_len;
    }

    /// Statement and portal bookkeeping (done even while requests are not reported).
    fn track_statements(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match m.typ {
            b'P' => {
                let mut pos = 0;
                if let Some(name) = cstr(m.body, &mut pos) {
                    let rest = &m.body[pos..];
                    let (sql, cut) = match rest.iter().position(|&c| c == 0) {
                        Some(n) => (&rest[..n], false),
                        None => (rest, true),
                    };
                    self.stmts.insert(name, Stmt::from_sql(sql, cut, cx.redact));
                } else if m.complete {
                    cx.stats.malformed += 1;
                }
            }
            b'B' => {
                let mut pos = 0;
                match (cstr(m.body, &mut pos), cstr(m.body, &mut pos)) {
                    (Some(portal), Some(stmt)) => {
                        let s = self.stmts.get(stmt).unwrap_or_else(|| Stmt::unknown(stmt));
                        self.portals.insert(portal, s);
                    }
                    (Some(portal), None) => self.portals.remove(portal),
                    _ => cx.stats.malformed += u64::from(m.complete),
                }
            }
            b'C' => {
                let mut pos = 1;
                if let Some(name) = cstr(m.body, &mut pos) {
                    match m.body.first() {
                        Some(b'S') => self.stmts.remove(name),
                        Some(b'P') => self.portals.remove(name),
                        _ => cx.stats.malformed += 1,
                    }
                }
            }
            _ => {}
        }
    }

    /// The extended group requests were lost in (just before the barrier), if it is still
    /// waiting for its answer.
    fn cut_group(&mut self) -> Option<&mut Group> {
        if !std::mem::take(&mut self.cut_open) {
            return None;
        }
        let n = self.groups.len();
        if n < 2 || !self.groups[n - 1].is_barrier() {
            return None;
        }
        Some(&mut self.groups[n - 2]).filter(|g| matches!(g.kind, Kind::Extended { .. }))
    }

    fn on_typed_request(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        self.track_statements(cx, m);
        if let Some(first) = &mut self.req_discard {
            let first = *first.get_or_insert(m.start_ts);
            match m.typ {
                b'Q' | b'F' => {
                    self.req_discard = None;
                    if let Some(g) = self.cut_group() {
                        // Extended messages a Query follows without Sync: no ReadyForQuery.
                        g.needs_z = false;
                    }
                }
                b'S' => {
                    self.req_discard = None;
                    self.pre = None;
                    if self.cut_group().is_none() {
                        // The group cut short ends here: it swallows its ReadyForQuery.
                        let mut g = Group::extended(first, false);
                        g.closed = true;
                        self.push_group(cx, g);
                    }
                    return;
                }
                _ => return,
            }
        }
        match m.typ {
            b'Q' => {
                self.pre = None;
                // Extended messages a Query follows without Sync get no ReadyForQuery of
                // their own.
                if let Some(g) = self.groups.back_mut()
                    && !g.closed
                {
                    g.closed = true;
                    g.needs_z = false;
                }
                let (sql, cut) = match m.body.iter().position(|&c| c == 0) {
                    Some(n) => (&m.body[..n], false),
                    None => (m.body, true),
                };
                let s = Stmt::from_sql(sql, cut, cx.redact);
                self.push_group(
                    cx,
                    Group::simple(Query::new(s, m.start_ts, m.wire_len, false)),
                );
            }
            b'F' => {
                self.pre = None;
                let fp = match m.body.len() >= 4 {
                    true => format!("fastpath function {}", messages::be32(m.body)),
                    false => "fastpath function".into(),
                };
                let s = Stmt::special("FUNCTION_CALL", fp);
                self.push_group(
                    cx,
                    Group::simple(Query::new(s, m.start_ts, m.wire_len, false)),
                );
            }
            // (Flush and Sync belong to what came before them, and are not counted.)
            b'P' | b'B' | b'D' | b'C' => self.note_pre(m),
            b'E' => {
                let mut pos = 0;
                let portal = cstr(m.body, &mut pos).unwrap_or_default();
                let stmt = self
                    .portals
                    .get(portal)
                    .unwrap_or_else(|| Stmt::unknown(b""));
                let (ts, bytes) = self.pre.take().unwrap_or((m.start_ts, 0));
                let q = Query::new(stmt, ts, bytes + m.wire_len, true);
                let Some(i) = self.open_group(cx, ts) else {
                    return;
                };
                let g = &mut self.groups[i];
                if let Kind::Extended { execs, .. } = &mut g.kind
                    && !g.failed
                    && g.emit
                {
                    if execs.len() >= MAX_EXECS {
                        // Too many to pair reliably: the group is swallowed unreported.
                        cx.stats.pending_overflow += execs.len() as u64 + 1;
                        execs.clear();
                        g.emit = false;
                    } else {
                        execs.push_back(q);
                    }
                }
            }
            b'S' => {
                self.pre = None;
                if let Some(i) = self.open_group(cx, m.start_ts) {
                    self.groups[i].closed = true;
                }
            }
            b'd' | b'c' | b'f' => {
                // Client CopyData belongs to the query that asked for it: the latest one.
                if let Some(g) = self.groups.back_mut() {
                    match &mut g.kind {
                        Kind::Simple(q) => q.bytes_req += m.wire_len,
                        Kind::Extended { execs, .. } => {
                            if let Some(q) = execs.back_mut() {
                                q.bytes_req += m.wire_len;
                            }
                        }
                        Kind::Barrier { .. } => {}
                    }
                }
            }
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

    fn on_auth_response(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
        match m.typ {
            b'R' => {
                let Some(l) = self.login.as_mut() else { return };
                let method = match messages::auth_code(m.body) {
                    Some(0) => {
                        if l.auth_method.is_none() {
                            l.auth_method = Some("trust".into());
                        }
                        None
                    }
                    Some(2) => Some("kerberos".to_string()),
                    Some(3) => Some("cleartext".into()),
                    Some(5) => Some("md5".into()),
                    Some(7) => Some("gss".into()),
                    Some(9) => Some("sspi".into()),
                    Some(10) => {
                        // The client names its choice in the SASLInitialResponse.
                        self.req.keep_password = true;
                        let mechs = messages::sasl_mechanisms(m.body);
                        Some(match mechs.as_slice() {
                            [one] => one.to_ascii_lowercase(),
                            _ => "sasl".into(),
                        })
                    }
                    _ => None,
                };
                if let Some(method) = method {
                    l.auth_method = Some(method);
                }
            }
            b'S' => {
                let mut pos = 0;
                if let Some(b"server_version") = cstr(m.body, &mut pos)
                    && let Some(v) = cstr(m.body, &mut pos)
                    && let Some(l) = self.login.as_mut()
                {
                    l.server_version = Some(lossy(v));
                }
            }
            b'E' => {
                let code = if m.complete || m.body.len() >= 64 {
                    messages::error_fields(m.body).1
                } else {
                    None
                };
                self.emit_login(cx, Outcome::Failure, code);
                self.phase = Phase::Done;
                self.stop();
            }
            b'Z' => {
                self.emit_login(cx, Outcome::Success, None);
                self.req.keep_password = false;
                self.phase = Phase::Ready;
            }
            _ => {}
        }
    }

    /// Pops finished groups that get no ReadyForQuery of their own.
    fn settle_front(&mut self) {
        while let Some(g) = self.groups.front() {
            let done = !g.needs_z
                && match &g.kind {
                    Kind::Extended { execs, .. } => execs.is_empty() || g.failed,
                    _ => false,
                };
            if !done {
                return;
            }
            self.groups.pop_front();
        }
    }

    /// `n`: for a DataRow, how many rows `m` stands for (consecutive rows that arrived
    /// together, their wire lengths summed in `m`; consecutive CopyData messages are taken
    /// together the same way); 1 for any other message.
    fn on_query_response(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>, n: u64) {
        let t = m.typ;
        // Asynchronous: belongs to no query.
        if t == b'A' {
            return;
        }
        // Most messages: the front group is a query's that `settle_front` keeps (not a
        // barrier, not finished), so the loop below would change nothing.
        let settled = self.groups.front().is_some_and(|g| match &g.kind {
            Kind::Simple(_) => true,
            Kind::Extended { execs, .. } => g.needs_z || (!execs.is_empty() && !g.failed),
            Kind::Barrier { .. } => false,
        });
        if !settled {
            loop {
                self.settle_front();
                let next_ts = self.groups.get(1).map(|g| g.first_ts);
                let Some(g) = self.groups.front_mut() else {
                    return;
                };
                let Kind::Barrier { absorbed_until } = &mut g.kind else {
                    break;
                };
                match next_ts {
                    Some(ts) if m.start_ts >= ts => {
                        self.groups.pop_front();
                    }
                    _ => {
                        *absorbed_until = (*absorbed_until).max(m.end_ts);
                        return;
                    }
                }
            }
        }
        if t == b'Z' {
            let Some(g) = self.groups.pop_front() else {
                return;
            };
            if !g.emit {
                return;
            }
            match g.kind {
                Kind::Simple(mut q) => {
                    q.saw_response(m);
                    let rows = q.simple_rows();
                    self.session
                        .emit(cx, &q, rows, q.first_resp, m.end_ts, q.tainted);
                }
                Kind::Extended {
                    execs,
                    deferred: Some(d),
                } => self.match_deferred(cx, execs, d),
                _ => {}
            }
            return;
        }
        let Some(g) = self.groups.front_mut() else {
            return;
        };
        if !g.emit {
            return;
        }
        match &mut g.kind {
            Kind::Simple(q) => {
                q.saw_response(m);
                match t {
                    b'D' => q.cur_rows += n,
                    b'C' => q.statement_done(m),
                    b'E' => {
                        if q.error.is_none() {
                            q.error = messages::error_fields(m.body).1;
                        }
                        q.cur_rows = 0;
                    }
                    _ => {}
                }
            }
            Kind::Extended { execs, deferred } => {
                if let Some(d) = deferred {
                    d.on_msg(m, n);
                    return;
                }
                if g.failed {
                    return;
                }
                let Some(q) = execs.front_mut() else {
                    if t == b'E' {
                        g.failed = true;
                    }
                    return;
                };
                q.saw_response(m);
                let rows = match t {
                    b'D' => {
                        q.cur_rows += n;
                        return;
                    }
                    b'C' => m
                        .complete
                        .then(|| messages::tag_rows(m.body))
                        .flatten()
                        .or((!q.tainted && q.cur_rows > 0).then_some(q.cur_rows)),
                    b's' => (!q.tainted).then_some(q.cur_rows),
                    b'I' => None,
                    b'E' => {
                        q.error = messages::error_fields(m.body).1;
                        None
                    }
                    _ => return,
                };
                let Some(q) = execs.pop_front() else { return };
                if t == b'E' {
                    // The server skips to Sync: the rest never ran.
                    g.failed = true;
                    execs.clear();
                }
                self.session
                    .emit(cx, &q, rows, q.first_resp, m.end_ts, q.tainted);
            }
            Kind::Barrier { .. } => {}
        }
    }

    /// Matches the completions seen after a response-side loss with the Executes pending.
    fn match_deferred(&mut self, cx: &mut DecodeCtx<'_>, execs: VecDeque<Query>, d: Deferred) {
        let (m, c) = (execs.len(), d.done.len());
        let failed = d.done.iter().any(|x| x.error.is_some());
        // Completions are in order and only earlier ones can hide in the gap; after an error
        // the rest of the group got none, so then only a full set is unambiguous.
        let skip = match (failed, c.cmp(&m)) {
            (_, std::cmp::Ordering::Equal) => 0,
            (false, std::cmp::Ordering::Less) => m - c,
            _ => return,
        };
        for (k, (mut q, comp)) in execs.into_iter().skip(skip).zip(d.done).enumerate() {
            q.bytes_resp += comp.bytes;
            let first = match (k, skip) {
                (0, 0) => q.first_resp,
                (0, _) => None,
                _ => comp.first,
            };
            if comp.error.is_some() {
                q.error = comp.error;
            }
            self.session
                .emit(cx, &q, comp.rows, first, comp.end_ts, true);
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
        // A start-up the server never answered (or the client abandoned, e.g. psql hanging
        // up to prompt for a password) did not succeed.
        self.emit_login(cx, Outcome::Failure, None);
        self.session.release(cx);
        self.stop();
    }
}
