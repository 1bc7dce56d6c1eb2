//! A tiny MaxMind DB (format 2.0) writer, for tests: an IPv4 search tree with 24-bit records,
//! a data section without pointers, and the metadata map. Enough to make a small ASN or
//! country database that the `maxminddb` reader (and libmaxminddb) accept.
//!
//! Used by the unit tests (`detect::enrich`) and, through `#[path]`, by the scenario scorer.

#![allow(dead_code)]

use std::net::IpAddr;

/// A value of the data section.
#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

impl Value {
    pub fn str(s: &str) -> Self {
        Self::Str(s.to_string())
    }

    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Self::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
        let (first, extra): (u8, Vec<u8>) = if size < 29 {
            (size as u8, vec![])
        } else if size < 29 + 256 {
            (29, vec![(size - 29) as u8])
        } else if size < 285 + 65_536 {
            (30, ((size - 285) as u16).to_be_bytes().to_vec())
        } else {
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        };
        if kind <= 7 {
            out.push((kind << 5) | first);
        } else {
            out.push(first);
            out.push(kind - 7);
        }
        out.extend_from_slice(&extra);
    }

    fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        Self::control(out, kind, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Str(s) => {
                Self::control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Self::U16(v) => Self::uint(out, 5, u64::from(*v)),
            Self::U32(v) => Self::uint(out, 6, u64::from(*v)),
            Self::U64(v) => Self::uint(out, 9, *v),
            Self::Map(pairs) => {
                Self::control(out, 7, pairs.len());
                for (k, v) in pairs {
                    Self::Str(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Self::Array(items) => {
                Self::control(out, 11, items.len());
                for v in items {
                    v.encode(out);
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Node(u32),
    Data(u32),
}

/// Builds an IPv4 MaxMind DB in memory.
pub struct MmdbWriter {
    database_type: String,
    nodes: Vec<[Slot; 2]>,
    data: Vec<u8>,
}

impl MmdbWriter {
    pub fn new(database_type: &str) -> Self {
        Self {
            database_type: database_type.to_string(),
            nodes: vec![[Slot::Empty, Slot::Empty]],
            data: Vec::new(),
        }
    }

    /// Maps an IPv4 block (address/prefix length) to a record. Insert the broader blocks first.
    pub fn insert(&mut self, (addr, len): (IpAddr, u8), value: Value) {
        let IpAddr::V4(a) = addr else {
            panic!("this writer makes IPv4 databases")
        };
        assert!((1..=32).contains(&len));
        let off = self.data.len() as u32;
        value.encode(&mut self.data);
        let bits = u32::from(a);
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth == len - 1 {
                self.nodes[node][bit] = Slot::Data(off);
                break;
            }
            node = match self.nodes[node][bit] {
                Slot::Node(n) => n as usize,
                other => {
                    let n = self.nodes.len();
                    // A block inside an existing one keeps the outer record for the rest.
                    let inherit = match other {
                        Slot::Data(d) => Slot::Data(d),
                        _ => Slot::Empty,
                    };
                    self.nodes.push([inherit, inherit]);
                    self.nodes[node][bit] = Slot::Node(n as u32);
                    n
                }
            };
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let count = self.nodes.len() as u32;
        let mut out = Vec::new();
        for n in &self.nodes {
            for s in n {
                let v = match *s {
                    Slot::Empty => count,
                    Slot::Node(i) => i,
                    Slot::Data(off) => count + 16 + off,
                };
                out.extend_from_slice(&v.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        Value::Map(vec![
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(1_700_000_000)),
            (
                "database_type".into(),
                Value::Str(self.database_type.clone()),
            ),
            (
                "description".into(),
                Value::map([("en", Value::str("rds-sensor test database"))]),
            ),
            ("ip_version".into(), Value::U16(4)),
            ("languages".into(), Value::Array(vec![Value::str("en")])),
            ("node_count".into(), Value::U32(count)),
            ("record_size".into(), Value::U16(24)),
        ])
        .encode(&mut out);
        out
    }
}

/// `"a.b.c.d/len"` → the pair [`MmdbWriter::insert`] takes.
pub fn block(s: &str) -> (IpAddr, u8) {
    let (a, l) = s.split_once('/').expect("a/len");
    (a.parse().expect("address"), l.parse().expect("length"))
}
