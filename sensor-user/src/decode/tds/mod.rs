//! SQL Server's TDS (MS-TDS 7.1 to 7.4, and 8.0) decoder.
//!
//! Each direction goes through a `packet::Framer` (8-byte headers, messages up to EOM, gaps,
//! resynchronisation on headers); whole messages drive one `Conn`:
//!
//! - **PRELOGIN.** The client's options (version, encryption), then the server's reply
//!   (the SQL Server version, its encryption answer). The encryption both chose decides
//!   what follows (§2.2.6.5): nothing, TLS for the login only (both `ENCRYPT_OFF`), or TLS
//!   for the whole session.
//! - **TLS.** In TDS 7.x the handshake travels inside PRELOGIN packets and the records after
//!   it go bare: the decoder says [`Control::StartTlsInPrelogin`] at the client's next
//!   PRELOGIN packet and the session's layer unwraps them. With login-only encryption the
//!   LOGIN7 is the one protected record: once it is read, [`Control::StopTls`] hands the
//!   stream back in plaintext; without keys the layer sees the wire leave TLS itself and the
//!   login's outcome (LOGINACK or error 18456) is still read in the clear, without the user.
//!   TDS 8.0 (strict) is TLS from the first byte ([`Control::StartTls`] at 0).
//! - **LOGIN7.** User, database, application, host and client interface; the auth method
//!   (`sql`, `sspi`, `fedauth`). The password is obfuscated, not encrypted, and never read.
//!   The outcome is the reply's LOGINACK (success; the server's program version), or its
//!   ERROR (18456 and the like: failure, the error number as the code). An SSPI exchange
//!   goes on until one of them comes.
//! - **Requests.** SQL batches (UCS-2 text after ALL_HEADERS), RPCs (`sp_executesql`'s
//!   statement; `sp_prepare` / `sp_prepexec` / `sp_cursorprepare` remember their statement
//!   under the handle the reply returns, and `sp_execute` / `sp_cursorexecute` report it;
//!   named procedures as `exec name`), ATTENTION (the cancel), transaction manager requests,
//!   bulk load data. A client sends its next request only after the reply (§3.1: one
//!   request at a time per session; MARS multiplexes sessions with SMP, see below), so
//!   requests pair with replies in order; ATTENTION is paired with the reply whose DONE
//!   carries DONE_ATTN, and the request it cancelled ends there too, if it had not.
//! - **Replies.** One message each: DONE / DONEPROC / DONEINPROC (row counts with
//!   DONE_COUNT, the error bits), ERROR (the first one's number is the error code), ENVCHANGE
//!   (the database), RETURNVALUE (a prepared handle). The whole token stream is walked when
//!   it was all captured, result rows included; a big reply keeps its first bytes and its
//!   last ones, and its end is read from the tail (the final DONE), so it needs no full
//!   capture. Latency: the reply's first byte and its EOM.
//! - **MARS.** When the client starts SMP (MC-SMP; after MARS was negotiated, and known by its
//!   first byte 0x53, which no request type is), the sessions multiplexed inside are taken
//!   apart (`smp`): each session id gets its own framers and request queue, with the
//!   connection's login.
//! - **Gaps.** A gap inside a packet is skipped (its length is known); one that may hide a
//!   header loses framing, found again at a plausible header confirmed by the next one.
//!   A reply whose framing was lost ends when the client sends its next request; it is
//!   reported with `rows: None`.

mod login;
mod packet;
mod pairing;
mod read;
mod sinks;
mod smp;
mod tokens;
mod types;
mod wire;

#[cfg(test)]
mod tests;

use super::kit::Login;
use super::{Control, DecodeCtx, Decoder, Dir, Gap};
use crate::model::Outcome;
use packet::Framer;
use pairing::Pending;
use sinks::{ReqSink, RespSink};
use std::collections::{HashMap, VecDeque};

/// Payload bytes kept of a request message (SQL text is UCS-2: 32 K characters).
const REQ_CAP: usize = 64 << 10;
/// Payload bytes kept at the start of a reply message (tokens before the rows).
const RESP_CAP: usize = 32 << 10;
/// Characters of statement text kept.
const TEXT_CAP: usize = 32 << 10;
/// Prepared handles remembered per connection.
const MAX_STMTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the PRELOGIN exchange (or a LOGIN7 without one).
    Prelogin,
    /// The server answered PRELOGIN: a TLS handshake or the LOGIN7 comes next.
    AfterPrelogin,
    /// LOGIN7 sent: waiting for LOGINACK or an error.
    Login,
    Command,
    /// The login failed: the server closes the connection.
    Dead,
}

/// What TLS the PRELOGIN exchange chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    None,
    /// Only the LOGIN7 is protected.
    LoginOnly,
    Full,
}

/// A statement remembered under its prepared handle.
#[derive(Clone, Debug)]
struct Stmt {
    verb: String,
    fingerprint: String,
    /// The text, kept only with redaction off.
    query: Option<String>,
}

/// One TDS session's state: the whole connection, or one MARS session.
struct Conn {
    phase: Phase,
    client_encryption: Option<u8>,
    tls: TlsMode,
    /// The session is in TLS now (the layer gives this decoder plaintext).
    in_tls: bool,
    /// TDS version from LOGIN7, then LOGINACK.
    tds_version: Option<u32>,
    server_version: Option<String>,
    user: Option<String>,
    database: Option<String>,
    login: Option<Login>,
    pending: VecDeque<Pending>,
    /// The server's SPID, from its packets' headers.
    spid: Option<u16>,
    /// Tell the session, after this call, that TLS stops (login-only encryption).
    stop_tls: bool,
    /// The first client bytes are TLS (TDS 8.0 strict).
    strict_tls: bool,
    /// A whole client message was seen.
    seen_request: bool,
    /// The client started SMP (MARS): from here on both ways are SMP packets.
    smp: bool,
}

/// Statements by prepared handle, shared by a connection's sessions.
#[derive(Default)]
struct Stmts {
    map: HashMap<i32, Stmt>,
}

impl Stmts {
    fn insert(&mut self, handle: i32, s: Stmt) {
        if self.map.len() >= MAX_STMTS && !self.map.contains_key(&handle) {
            // Bounded: a client that never unprepares starts the map over.
            self.map.clear();
        }
        self.map.insert(handle, s);
    }
}

/// What reassembly hands a direction.
enum Input<'a> {
    Data(&'a [u8]),
    Gap(Gap),
}

impl Input<'_> {
    fn to(
        self,
        framer: &mut Framer,
        cx: &mut DecodeCtx<'_>,
        ts: u64,
        sink: &mut impl packet::Sink,
    ) -> Option<usize> {
        match self {
            Input::Data(b) => framer.data(cx, ts, b, sink),
            Input::Gap(g) => {
                framer.gap(cx, ts, g, sink);
                None
            }
        }
    }
}

/// One direction pair of framers and the session they feed.
struct Stream {
    req: Framer,
    resp: Framer,
    c: Conn,
}

impl Stream {
    fn new(mid_stream: bool) -> Self {
        Self {
            req: Framer::new(REQ_CAP, mid_stream),
            resp: Framer::new(RESP_CAP, mid_stream),
            c: Conn {
                phase: if mid_stream {
                    Phase::Command
                } else {
                    Phase::Prelogin
                },
                client_encryption: None,
                tls: TlsMode::None,
                in_tls: false,
                tds_version: None,
                server_version: None,
                user: None,
                database: None,
                login: None,
                pending: VecDeque::new(),
                spid: None,
                stop_tls: false,
                strict_tls: false,
                seen_request: false,
                smp: false,
            },
        }
    }

    fn data(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        stmts: &mut Stmts,
        dir: Dir,
        ts: u64,
        bytes: &[u8],
    ) -> Option<usize> {
        self.feed(cx, stmts, dir, ts, Input::Data(bytes))
    }

    fn gap(&mut self, cx: &mut DecodeCtx<'_>, stmts: &mut Stmts, dir: Dir, ts: u64, gap: Gap) {
        self.feed(cx, stmts, dir, ts, Input::Gap(gap));
    }

    /// Bytes or a gap to one direction's framer, which reports to that direction's sink.
    fn feed(
        &mut self,
        cx: &mut DecodeCtx<'_>,
        stmts: &mut Stmts,
        dir: Dir,
        ts: u64,
        input: Input<'_>,
    ) -> Option<usize> {
        let c = &mut self.c;
        match dir {
            Dir::Request => input.to(&mut self.req, cx, ts, &mut ReqSink { c, stmts }),
            Dir::Response => input.to(&mut self.resp, cx, ts, &mut RespSink { c, stmts }),
        }
    }

    fn close(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) {
        let c = &mut self.c;
        if matches!(c.phase, Phase::Login)
            && let Some(l) = c.login.take()
        {
            // A login without an answer: the client saw the connection end, not a success.
            l.report(cx, Outcome::Failure, None);
        }
        while let Some(mut q) = c.pending.pop_front() {
            q.uncertain = true;
            if q.bytes_response == 0 {
                q.end_ts = q.end_ts.max(ts);
            }
            c.emit(cx, q);
        }
    }
}

pub struct TdsDecoder {
    main: Stream,
    stmts: Stmts,
    /// MARS sessions, once SMP started.
    smp: Option<smp::Demux>,
}

impl TdsDecoder {
    pub fn new(mid_stream: bool) -> Self {
        Self {
            main: Stream::new(mid_stream),
            stmts: Stmts::default(),
            smp: None,
        }
    }
}

impl Decoder for TdsDecoder {
    fn data(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts: u64, bytes: &[u8]) -> Control {
        if let Some(m) = &mut self.smp {
            m.data(cx, &mut self.stmts, &self.main.c, dir, ts, bytes);
            return Control::Continue;
        }
        let at = self.main.data(cx, &mut self.stmts, dir, ts, bytes);
        let s = &mut self.main;
        if s.c.smp {
            // From here on, both ways, SMP packets carry the sessions' TDS.
            s.req.stop();
            s.resp.stop();
            let mut m = smp::Demux::default();
            m.data(
                cx,
                &mut self.stmts,
                &self.main.c,
                dir,
                ts,
                &bytes[at.unwrap_or(bytes.len())..],
            );
            self.smp = Some(m);
            return Control::Continue;
        }
        if let Some(at) = at {
            s.c.in_tls = true;
            // The layer gives back plaintext from a packet boundary on.
            s.req.restart();
            s.resp.restart();
            return if std::mem::take(&mut s.c.strict_tls) {
                Control::StartTls { at }
            } else {
                Control::StartTlsInPrelogin { at }
            };
        }
        if std::mem::take(&mut s.c.stop_tls) {
            s.c.in_tls = false;
            return Control::StopTls;
        }
        Control::Continue
    }

    fn gap(&mut self, cx: &mut DecodeCtx<'_>, dir: Dir, ts: u64, gap: Gap) {
        if let Some(m) = &mut self.smp {
            m.gap(cx, &mut self.stmts, &self.main.c, dir, ts, gap);
            return;
        }
        self.main.gap(cx, &mut self.stmts, dir, ts, gap);
    }

    fn close(&mut self, cx: &mut DecodeCtx<'_>, ts: u64) {
        if let Some(m) = &mut self.smp {
            m.close(cx, ts);
        }
        self.main.close(cx, ts);
    }
}
