//! The SQL Server (TDS) captures: real client bytes from FreeTDS `tsql` and pytds, talking to a
//! small listener that plays the server side (no SQL Server runs on Debian). The listener
//! ([`PY_LISTENER`], python3) is built from MS-TDS: it answers PRELOGIN (VERSION 16.0.4000, the
//! encryption its mode allows), LOGIN7 (LOGINACK with ENVCHANGEs, or ERROR 18456 for a wrong
//! password; also as the first message, with no PRELOGIN, as TDS 7.0/7.1 clients such as nmap's
//! `ms-sql-brute` send it), SQL batches and RPCs with fixed small results, transaction manager
//! requests and attentions. With login-only encryption (client ENCRYPT_OFF, server ENCRYPT_OFF)
//! it runs a real TLS server handshake over `ssl.MemoryBIO` whose records travel inside TDS
//! PRELOGIN packets (MS-TDS 3.3.5.3), decrypts the LOGIN7 (a bare TLS record), then goes back to
//! plaintext TDS; `SSLContext.keylog_filename` writes the session secrets (NSS key log).
//! So the client side of these captures is ground truth; the server side is the listener's.

use super::{CANARY, CLI_NS, CLI_V4, PYTHON, SRV_NS, SRV_V4, Tls};
use crate::netlab::{Daemon, Expect, Network, file_tail, in_ns, run, say};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SQL Server's port.
pub const TDS_PORT: u16 = 1433;
/// Password the listener accepts for every user; a canary (the sensor must never print it).
pub const TDS_PASSWORD: &str = "Pa55-canary-tds";
/// The wrong password of the failed logins; a canary too.
pub const TDS_WRONG_PASSWORD: &str = "Wr0ng-canary-tds";

/// What the listener's PRELOGIN answer allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Always ENCRYPT_NOT_SUP (0x02): everything in the clear.
    Plain,
    /// The server is set to ENCRYPT_OFF: login-only encryption for a client that offers OFF, full
    /// encryption for one that asks ON (MS-TDS 2.2.6.5).
    Tls,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Tls => "tls",
        }
    }
}

/// The listener, running in the server namespace on `SRV_V4:1433`.
pub struct Listener {
    daemon: Daemon,
}

impl Listener {
    /// Starts the listener in `mode`; with [`Mode::Tls`] it appends the secrets of every session
    /// to `keylog`.
    pub fn start(tmp: &Path, tls: &Tls, mode: Mode, keylog: Option<&Path>) -> Result<Self> {
        Self::start_in(tmp, SRV_NS, SRV_V4, mode, Some(tls), keylog)
    }

    /// Starts the listener in namespace `ns` on `listen:1433` (the scenario corpus runs it in
    /// its own lab). [`Mode::Plain`] needs no certificate.
    pub fn start_in(
        tmp: &Path,
        ns: &str,
        listen: &str,
        mode: Mode,
        tls: Option<&Tls>,
        keylog: Option<&Path>,
    ) -> Result<Self> {
        if mode == Mode::Tls && tls.is_none() {
            anyhow::bail!("the TDS listener in TLS mode needs a certificate");
        }
        let log = tmp.join(format!("tds-listener-{}.log", mode.name()));
        let mut c = in_ns(ns, PYTHON);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("TDS_MODE", mode.name())
            .env("TDS_PASSWORD", TDS_PASSWORD)
            .env("LISTEN", listen)
            .env("PORT", TDS_PORT.to_string());
        if let Some(tls) = tls {
            c.env("TLS_CERT", &tls.cert).env("TLS_KEY", &tls.key);
        }
        if let Some(k) = keylog {
            c.env("KEYLOG", k);
        }
        c.arg("-c").arg(PY_LISTENER);
        let mut daemon =
            Daemon::spawn(&format!("TDS listener ({})", mode.name()), c, &log, "TERM")?;
        daemon.wait_ready(Duration::from_secs(15), || {
            fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"))
        })?;
        Ok(Self { daemon })
    }

    /// The listener's log: one line per message it read.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.daemon.log, lines)
    }

    /// The listener's whole log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// FreeTDS's `encryption` setting of a `tsql` session.
#[derive(Clone, Copy, Debug)]
pub enum Encryption {
    /// `off`: PRELOGIN ENCRYPTION 0x02 (ENCRYPT_NOT_SUP).
    Off,
    /// `request`: 0x00 (ENCRYPT_OFF): login-only encryption if the server says OFF.
    Request,
    /// `require`: 0x01 (ENCRYPT_ON): everything after the handshake is TLS.
    Require,
}

impl Encryption {
    fn setting(self) -> &'static str {
        match self {
            Encryption::Off => "off",
            Encryption::Request => "request",
            Encryption::Require => "require",
        }
    }
}

/// A server as FreeTDS's `tsql` reaches it: a freetds.conf entry, TDS 7.4.
pub(crate) struct TsqlServer<'a> {
    /// The entry's name (LOGIN7 carries it as the server name).
    pub(crate) name: &'a str,
    pub(crate) host: &'a str,
    /// FreeTDS's `encryption` setting (`off`, `request`, `require`).
    pub(crate) encryption: &'a str,
}

impl TsqlServer<'_> {
    /// `tsql` in the client namespace, logging in as `user` to `db`; the freetds.conf it
    /// reads (`FREETDSCONF`) is written to `conf`. Batches go on its stdin (`go` after each).
    pub(crate) fn command(
        &self,
        conf: &Path,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<std::process::Command> {
        fs::write(
            conf,
            format!(
                "[global]\n\ttds version = 7.4\n\n[{}]\n\thost = {}\n\tport = {TDS_PORT}\n\
                 \ttds version = 7.4\n\tencryption = {}\n",
                self.name, self.host, self.encryption
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let mut c = in_ns(CLI_NS, "tsql");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("FREETDSCONF", conf)
            .env("LANG", "C.UTF-8")
            .args(["-S", self.name, "-U", user, "-P", password, "-D", db]);
        Ok(c)
    }
}

/// The statements every `tsql` session runs, one batch each (`go`).
fn tsql_batches() -> Vec<String> {
    vec![
        format!("SELECT id, name FROM items WHERE name <> '{CANARY}'"),
        "UPDATE items SET price = price + 1 WHERE id = 1".to_string(),
    ]
}

/// One `tsql` (FreeTDS) session from `src` as u_freetds into appdb, TDS 7.4, with `enc`; the
/// freetds.conf it reads (`FREETDSCONF`) is written into `conf_dir`.
fn tsql(net: &Network, label: &str, src: &str, enc: Encryption, conf_dir: &Path) -> Result<()> {
    say(format!(
        "  {label}: tsql (FreeTDS) as u_freetds from {src}, encryption = {}",
        enc.setting()
    ));
    net.client_source(src)?;
    let conf = conf_dir.join(format!("freetds-{}.conf", enc.setting()));
    let server = TsqlServer {
        name: "lab",
        host: SRV_V4,
        encryption: enc.setting(),
    };
    let mut c = server.command(&conf, "u_freetds", TDS_PASSWORD, "appdb")?;
    let mut input = String::new();
    for b in tsql_batches() {
        input.push_str(&b);
        input.push_str("\ngo\n");
    }
    input.push_str("exit\n");
    // tsql exits 0 even when a batch fails; the rows of the SELECT show the session got through.
    run(
        &format!("tds: {label}"),
        &mut c,
        Some(input.as_bytes()),
        Expect::Any(&["(3 rows affected)"]),
    )?;
    Ok(())
}

/// How a pytds session logs in.
#[derive(Clone, Copy, Debug)]
pub enum PyTls {
    /// No `cafile`: PRELOGIN ENCRYPTION 0x02 (ENCRYPT_NOT_SUP).
    None,
    /// `cafile` + `enc_login_only=True`: 0x00 (ENCRYPT_OFF), login-only encryption (pyOpenSSL).
    LoginOnly,
}

/// One pytds session from `src` as u_pytds into appdb: the queries of [`PY_CLIENT`], or (with
/// `wrong_password`) a login that must fail with 18456.
fn pytds(
    net: &Network,
    label: &str,
    src: &str,
    how: PyTls,
    wrong_password: bool,
    cafile: &Path,
) -> Result<()> {
    say(format!(
        "  {label}: pytds as u_pytds from {src}{}{}",
        match how {
            PyTls::None => "",
            PyTls::LoginOnly => ", enc_login_only",
        },
        if wrong_password {
            ", wrong password"
        } else {
            ""
        }
    ));
    net.client_source(src)?;
    let mut c = in_ns(CLI_NS, PYTHON);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("DB_HOST", SRV_V4)
        .env("DB_PORT", TDS_PORT.to_string())
        .env("CANARY", CANARY)
        .env(
            "DB_PASSWORD",
            if wrong_password {
                TDS_WRONG_PASSWORD
            } else {
                TDS_PASSWORD
            },
        )
        .env("WRONG_PASSWORD", if wrong_password { "1" } else { "" });
    if let PyTls::LoginOnly = how {
        c.env("CAFILE", cafile);
    }
    c.arg("-c").arg(PY_CLIENT);
    let expect = if wrong_password {
        Expect::Ok
    } else {
        Expect::Any(&["sp_execute rows [(1,), (2,), (3,)]"])
    };
    let out = run(&format!("tds: {label}"), &mut c, None, expect)?;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        say(format!("  ... {l}"));
    }
    Ok(())
}

/// tds-clients: everything in the clear (the listener answers ENCRYPT_NOT_SUP).
pub fn clients(net: &Network, tmp: &Path, tls: &Tls) -> Result<()> {
    let mut l = Listener::start(tmp, tls, Mode::Plain, None).context("step `TDS listener`")?;
    let r = (|| {
        tsql(net, "tsql, encryption off", CLI_V4[0], Encryption::Off, tmp)?;
        pytds(
            net,
            "pytds queries",
            CLI_V4[1],
            PyTls::None,
            false,
            &tls.cert,
        )?;
        pytds(
            net,
            "pytds wrong password",
            CLI_V4[2],
            PyTls::None,
            true,
            &tls.cert,
        )
    })();
    say(format!("  listener log:\n{}", l.log_tail(40)));
    l.stop();
    r
}

/// tds-tls-login: login-only encryption (tsql and pytds), then one fully encrypted tsql session.
/// The listener writes the key log `<raw_dir>/tds-tls-login.keys`.
pub fn tls_login(net: &Network, raw_dir: &Path, tmp: &Path, tls: &Tls) -> Result<()> {
    let keylog: PathBuf = raw_dir.join("tds-tls-login.keys");
    // A repeated recording (dropped packets) starts a new key log.
    if keylog.exists() {
        fs::remove_file(&keylog)?;
    }
    let mut l =
        Listener::start(tmp, tls, Mode::Tls, Some(&keylog)).context("step `TDS listener`")?;
    let r = (|| {
        tsql(
            net,
            "tsql, encryption request (login only)",
            CLI_V4[0],
            Encryption::Request,
            tmp,
        )?;
        pytds(
            net,
            "pytds, login only",
            CLI_V4[1],
            PyTls::LoginOnly,
            false,
            &tls.cert,
        )?;
        tsql(
            net,
            "tsql, encryption require (full)",
            CLI_V4[2],
            Encryption::Require,
            tmp,
        )
    })();
    say(format!("  listener log:\n{}", l.log_tail(40)));
    l.stop();
    r
}

/// The pytds client (`DB_HOST`, `DB_PORT`, `DB_PASSWORD`, `CANARY`, `CAFILE`, `WRONG_PASSWORD`).
/// `autocommit=False` (pytds's default) makes it begin a transaction with a transaction manager
/// request right after login and commit it at the end. A parameterized `execute` is an
/// sp_executesql RPC (proc id 10); `callproc(SP_PREPARE)` / `callproc(SP_EXECUTE)` are RPCs by
/// proc id 11 and 12. Before each next request pytds cancels the result it did not read to the
/// end (the listener's DONEINPROC has DONE_MORE set, as SQL Server's does) with an ATTENTION.
pub const PY_CLIENT: &str = r#"
import os, sys, pytds
from pytds import tds_base

env = os.environ
kw = dict(server=env["DB_HOST"], port=int(env["DB_PORT"]), database="appdb", user="u_pytds",
          password=env["DB_PASSWORD"], autocommit=False, login_timeout=10, timeout=10)
if env.get("CAFILE"):
    kw.update(cafile=env["CAFILE"], validate_host=False, enc_login_only=True)
if env.get("WRONG_PASSWORD"):
    try:
        pytds.connect(**kw)
    except pytds.Error as e:
        if "Login failed for user 'u_pytds'" not in str(e):
            raise
        print("login failed as expected:", e)
        sys.exit(0)
    sys.exit("the wrong password was accepted")
with pytds.connect(**kw) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM items WHERE name <> %s AND id < %s", (env["CANARY"], 10))
        print("sp_executesql rows", cur.fetchall())
        cur.callproc(tds_base.SP_PREPARE, (pytds.output(param_type="int"), "@p1 int",
                                            "SELECT id FROM items WHERE id = @p1", 1))
        handle = cur.get_proc_outputs()[0]
        print("sp_prepare handle", handle)
        cur.callproc(tds_base.SP_EXECUTE, (handle, 7))
        print("sp_execute rows", cur.fetchall())
    conn.commit()
"#;

/// The listener (see the module doc). Environment: `TDS_MODE` (`plain` or `tls`), `TDS_PASSWORD`,
/// `LISTEN`, `PORT`, and for `tls` `TLS_CERT`, `TLS_KEY`, `KEYLOG`.
pub const PY_LISTENER: &str = r#"
import os, socket, ssl, struct, sys, threading

env = os.environ
MODE = env["TDS_MODE"]  # "plain": always ENCRYPT_NOT_SUP; "tls": the server's setting is ENCRYPT_OFF
PASSWORD = env["TDS_PASSWORD"]
SPID = 51

def log(*a):
    print(*a, flush=True)

def ucs2(s):
    return s.encode("utf-16-le")

def b_varchar(s):
    return bytes([len(s)]) + ucs2(s)

def us_varchar(s):
    return struct.pack("<H", len(s)) + ucs2(s)

def b_varbyte(b):
    return bytes([len(b)]) + b

def envchange(kind, new, old):
    body = bytes([kind]) + new + old
    return b"\xe3" + struct.pack("<H", len(body)) + body

def message(token, number, state, klass, text, line=1):
    body = (struct.pack("<iBB", number, state, klass) + us_varchar(text)
            + b_varchar("TDSLAB") + b_varchar("") + struct.pack("<i", line))
    return bytes([token]) + struct.pack("<H", len(body)) + body

def done(token, status, curcmd, rows):
    return bytes([token]) + struct.pack("<HHQ", status, curcmd, rows)

DONE, DONEPROC, DONEINPROC = 0xFD, 0xFE, 0xFF
DONE_MORE, DONE_ERROR, DONE_COUNT = 0x01, 0x02, 0x10

def result(rows):
    """One INT column named `value` (INT4, not nullable) and `rows` ROW tokens 1..rows."""
    colmeta = b"\x81" + struct.pack("<H", 1) + struct.pack("<IH", 0, 0) + b"\x38" + b_varchar("value")
    return colmeta + b"".join(b"\xd1" + struct.pack("<i", i + 1) for i in range(rows))

class Conn:
    def __init__(self, sock, peer, ctx):
        self.sock, self.peer, self.ctx = sock, peer, ctx
        self.tls = None        # SSLObject while TLS is on
        self.full_tls = False  # every packet after the handshake goes through TLS
        self.rbuf = b""
        self.tds_version = 0x74000004
        self.first_login = None  # a LOGIN7 that came first, with no PRELOGIN

    # ---- raw socket
    def recv_exact(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    # ---- TLS records read from the socket (no TDS header around them)
    def tls_read_record(self):
        hdr = self.recv_exact(5)
        body = self.recv_exact(struct.unpack(">H", hdr[3:5])[0])
        self.inc.write(hdr + body)

    def tls_plain(self, n):
        """n bytes of plaintext from TLS records."""
        out = b""
        while len(out) < n:
            try:
                out += self.tls.read(n - len(out))
            except ssl.SSLWantReadError:
                self.tls_read_record()
        return out

    def read_bytes(self, n):
        return self.tls_plain(n) if self.tls else self.recv_exact(n)

    def read_message(self):
        """(type, payload) of the next TDS message (packets up to EOM)."""
        payload, ptype = b"", None
        while True:
            hdr = self.read_bytes(8)
            t, status, length = struct.unpack(">BBH", hdr[:4])
            ptype = t if ptype is None else ptype
            payload += self.read_bytes(length - 8)
            if status & 0x01:
                return ptype, payload

    def send_message(self, ptype, payload, raw=False):
        out = b""
        maxlen = 4096 - 8
        chunks = [payload[i:i + maxlen] for i in range(0, len(payload), maxlen)] or [b""]
        # Packet ids start at 1 in every message, as SQL Server sends them (tshark's TDS
        # dissector takes a reply whose first packet is not 1 for a continuation).
        for i, c in enumerate(chunks):
            status = 0x01 if i == len(chunks) - 1 else 0x00
            out += struct.pack(">BBHHBB", ptype, status, len(c) + 8, SPID, (i + 1) % 256, 0) + c
        if self.tls and self.full_tls:
            self.tls.write(out)
            out = self.out.read()
        self.sock.sendall(out)

    # ---- PRELOGIN
    def prelogin(self):
        t, p = self.read_message()
        if t == 0x10:
            # A TDS 7.0/7.1 client may log in without PRELOGIN (nmap's mssql library sends a
            # 7.1 LOGIN7 first); SQL Server takes that login in the clear.
            log(self.peer, "LOGIN7 without PRELOGIN")
            self.first_login = p
            return
        if t != 0x12:
            raise ValueError("expected PRELOGIN, got type %d" % t)
        opts, i = {}, 0
        while p[i] != 0xFF:
            tok, off, ln = struct.unpack(">BHH", p[i:i + 5])
            opts[tok] = p[off:off + ln]
            i += 5
        client_enc = opts.get(1, b"\x02")[0]
        if MODE == "plain":
            enc = 0x02
        else:  # server set to ENCRYPT_OFF (MS-TDS 2.2.6.5 table)
            enc = {0x00: 0x00, 0x01: 0x01, 0x02: 0x02, 0x03: 0x01}[client_enc]
        fields = [
            (0x00, struct.pack(">BBHH", 16, 0, 4000, 0)),  # VERSION 16.0.4000.0
            (0x01, bytes([enc])),                           # ENCRYPTION
            (0x02, b"\x00"),                                # INSTOPT
            (0x03, b""),                                    # THREADID
            (0x04, b"\x00"),                                # MARS off
        ]
        if 0x06 in opts:
            fields.append((0x06, b"\x00"))                  # FEDAUTHREQUIRED
        pos = 5 * len(fields) + 1
        head, data = b"", b""
        for tok, val in fields:
            head += struct.pack(">BHH", tok, pos, len(val))
            pos += len(val)
            data += val
        self.send_message(0x04, head + b"\xff" + data)
        log(self.peer, "PRELOGIN client encryption 0x%02x -> 0x%02x" % (client_enc, enc))
        if enc in (0x00, 0x01):
            self.handshake()
            self.full_tls = enc == 0x01
            log(self.peer, "TLS", self.tls.version(), self.tls.cipher()[0], "full" if self.full_tls else "login only")

    def handshake(self):
        """TLS handshake whose records travel inside TDS PRELOGIN packets (MS-TDS 3.3.5.3)."""
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.ctx.wrap_bio(self.inc, self.out, server_side=True)
        while True:
            t, p = self.read_message()
            if t != 0x12:
                raise ValueError("TLS handshake: expected PRELOGIN, got type %d" % t)
            self.inc.write(p)
            try:
                tls.do_handshake()
                finished = True
            except ssl.SSLWantReadError:
                finished = False
            pending = self.out.read()
            if pending:
                self.send_message(0x12, pending)
            if finished:
                self.tls = tls
                return

    # ---- LOGIN7
    def login(self):
        if self.first_login is not None:
            t, p = 0x10, self.first_login
        else:
            t, p = self.read_message()
        if t != 0x10:
            raise ValueError("expected LOGIN7, got type %d" % t)
        if self.tls and not self.full_tls:
            log(self.peer, "LOGIN7 came through TLS; back to plaintext")
            self.tls = None  # login-only encryption: the rest is in the clear
        self.tds_version = struct.unpack("<I", p[4:8])[0]
        def field(at):
            off, ln = struct.unpack("<HH", p[at:at + 4])
            return p[off:off + 2 * ln]
        user = field(40).decode("utf-16-le")
        pw = bytes(((b ^ 0xA5) >> 4 | ((b ^ 0xA5) & 0x0F) << 4) for b in field(44)).decode("utf-16-le")
        db = field(68).decode("utf-16-le") or "master"
        log(self.peer, "LOGIN7 user %r database %r tds 0x%08x" % (user, db, self.tds_version))
        if pw != PASSWORD:
            body = message(0xAA, 18456, 1, 14, "Login failed for user '%s'." % user)
            body += done(DONE, DONE_ERROR, 0, 0)
            self.send_message(0x04, body)
            log(self.peer, "login failed (18456)")
            return False
        body = envchange(1, b_varchar(db), b_varchar("master"))
        body += message(0xAB, 5701, 2, 0, "Changed database context to '%s'." % db)
        body += envchange(7, b_varbyte(bytes.fromhex("0904d00034")), b_varbyte(b""))
        body += envchange(4, b_varchar("4096"), b_varchar("4096"))
        ack = b"\x01" + struct.pack(">I", self.tds_version) + b_varchar("Microsoft SQL Server") + bytes([16, 0, 0x0F, 0xA0])
        body += b"\xad" + struct.pack("<H", len(ack)) + ack
        body += done(DONE, 0, 0, 0)
        self.send_message(0x04, body)
        return True

    @staticmethod
    def skip_all_headers(p):
        return p[struct.unpack("<I", p[:4])[0]:]

    def serve(self):
        self.prelogin()
        if not self.login():
            return
        trans = 0
        while True:
            try:
                t, p = self.read_message()
            except EOFError:
                log(self.peer, "client closed")
                return
            if t == 0x01:  # SQL batch
                sql = self.skip_all_headers(p).decode("utf-16-le")
                log(self.peer, "SQL batch %r" % sql)
                if sql.lstrip().lower().startswith("select"):
                    body = result(3) + done(DONE, DONE_COUNT, 0xC1, 3)
                else:
                    body = done(DONE, DONE_COUNT, 0xC5, 1)
                self.send_message(0x04, body)
            elif t == 0x03:  # RPC
                r = self.skip_all_headers(p)
                (n,) = struct.unpack("<H", r[:2])
                if n == 0xFFFF:
                    proc = struct.unpack("<H", r[2:4])[0]
                else:
                    proc = r[2:2 + 2 * n].decode("utf-16-le")
                log(self.peer, "RPC %r" % (proc,))
                body = b""
                if proc in (11, 13, "sp_prepare", "sp_prepexec"):
                    val = b"\x26\x04" + b"\x04" + struct.pack("<i", 1)
                    body += b"\xac" + struct.pack("<H", 0) + b_varchar("@handle") + b"\x01" + struct.pack("<IH", 0, 0x0001) + val
                if proc == 12 or (proc != 11 and ucs2("select") in r.lower()):
                    body += result(3) + done(DONEINPROC, DONE_MORE | DONE_COUNT, 0xC1, 3)
                body += b"\x79" + struct.pack("<i", 0)
                body += done(DONEPROC, 0, 0xE0, 0)
                self.send_message(0x04, body)
            elif t == 0x0E:  # transaction manager request
                req = struct.unpack("<H", self.skip_all_headers(p)[:2])[0]
                log(self.peer, "transaction manager request %d" % req)
                if req == 5:  # TM_BEGIN_XACT
                    trans += 1
                    body = envchange(8, b_varbyte(struct.pack("<Q", trans)), b_varbyte(b""))
                elif req in (7, 8):  # TM_COMMIT_XACT, TM_ROLLBACK_XACT
                    body = envchange(9 if req == 7 else 10, b_varbyte(b""), b_varbyte(struct.pack("<Q", trans)))
                else:
                    body = b""
                self.send_message(0x04, body + done(DONE, 0, 0, 0))
            elif t == 0x06:  # attention
                log(self.peer, "attention")
                self.send_message(0x04, done(DONE, 0x20, 0, 0))
            else:
                log(self.peer, "unexpected packet type %d" % t)
                return

def handle(sock, peer, ctx):
    try:
        Conn(sock, peer, ctx).serve()
    except EOFError:
        log(peer, "client closed")
    except Exception as e:
        log(peer, "error: %r" % (e,))
    finally:
        sock.close()

def main():
    ctx = None
    if MODE == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(env["TLS_CERT"], env["TLS_KEY"])
        ctx.keylog_filename = env["KEYLOG"]
        # SQL Server negotiates TLS 1.2 in the TDS 7.x PRELOGIN handshake (TLS 1.3 only with TDS 8).
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((env["LISTEN"], int(env["PORT"])))
    srv.listen(8)
    log("listening on %s:%s (%s)" % (env["LISTEN"], env["PORT"], MODE))
    while True:
        s, peer = srv.accept()
        threading.Thread(target=handle, args=(s, "%s:%d" % peer, ctx), daemon=True).start()

main()
"#;
