//! Prepared statements and portals: what a statement is (verb, fingerprint, text when
//! redaction is off), the per-connection caches of Parse and Bind and their bounds, and the
//! bookkeeping of Parse, Bind and Close.

use super::{
    PostgresDecoder,
    framer::Msg,
    messages::{self, cstr},
};
use crate::decode::{DecodeCtx, fingerprint, kit::lossy};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

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
pub(super) struct Stmt {
    pub(super) verb: String,
    pub(super) fingerprint: String,
    /// The SQL text, only when redaction is off.
    pub(super) text: Option<String>,
    /// More than one statement in the string.
    pub(super) multi: bool,
}

impl Stmt {
    /// The statement of `sql` (cut by a gap or the keep limit when `cut`). Its identity
    /// depends on the bytes alone, so it is remembered per thread by a keyed hash of them
    /// ([`fingerprint::SqlCache`]: the text itself is not kept); the text is added when
    /// redaction is off.
    pub(super) fn from_sql(sql: &[u8], cut: bool, redact: bool) -> Arc<Self> {
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

    pub(super) fn unknown(name: &[u8]) -> Arc<Self> {
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

    pub(super) fn special(verb: &str, fingerprint: String) -> Arc<Self> {
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
pub(super) struct Statements {
    pub(super) unnamed: Option<Arc<Stmt>>,
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
pub(super) struct Portals {
    pub(super) unnamed: Option<Arc<Stmt>>,
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

    pub(super) fn get(&self, name: &[u8]) -> Option<Arc<Stmt>> {
        if name.is_empty() {
            self.unnamed.clone()
        } else {
            self.named.get(name).cloned()
        }
    }
}

impl PostgresDecoder {
    /// Statement and portal bookkeeping (done even while requests are not reported).
    pub(super) fn track_statements(&mut self, cx: &mut DecodeCtx<'_>, m: &Msg<'_>) {
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
}
