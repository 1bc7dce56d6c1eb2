//! Prepared statements: what is remembered of one, by statement id, and its bounds.

use std::collections::{HashMap, VecDeque};

/// Prepared statements remembered per connection, and their text bytes.
const MAX_STMTS: usize = 256;
const MAX_STMT_BYTES: usize = 256 << 10;

/// What is remembered of a prepared statement.
#[derive(Clone, Debug)]
pub(super) struct Stmt {
    pub(super) verb: String,
    pub(super) fingerprint: String,
    pub(super) query: Option<String>,
}

impl Stmt {
    fn size(&self) -> usize {
        self.fingerprint.len() + self.query.as_ref().map_or(0, String::len) + 64
    }
}

/// Statement id → statement, bounded (oldest forgotten first).
#[derive(Default)]
pub(super) struct Stmts {
    pub(super) map: HashMap<u32, Stmt>,
    order: VecDeque<u32>,
    bytes: usize,
}

impl Stmts {
    pub(super) fn insert(&mut self, id: u32, s: Stmt) {
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

    pub(super) fn remove(&mut self, id: u32) {
        if let Some(s) = self.map.remove(&id) {
            self.bytes -= s.size();
            self.order.retain(|&x| x != id);
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }
}
