//! A bound on the (instance, database) pairs a sink keeps: past it, new values fold into
//! `(other)`, and each record folded is counted.

use std::collections::{HashMap, HashSet};

/// `Database` when the protocol did not say.
pub const NO_DATABASE: &str = "(none)";
/// A folded instance or database.
pub const OTHER: &str = "(other)";
/// Default bounds: instances, and databases per instance, with series of their own.
pub const MAX_INSTANCES: usize = 50;
pub const MAX_DATABASES: usize = 20;

/// The dimensions seen (per CloudWatch period, or since start for Prometheus).
#[derive(Clone, Debug)]
pub struct Dims {
    max_instances: usize,
    max_databases: usize,
    /// Instance → databases kept for it.
    databases: HashMap<String, usize>,
    known: HashSet<(String, String)>,
    /// Records whose instance or database was folded.
    pub folded: u64,
}

impl Dims {
    pub fn new(max_instances: usize, max_databases_per_instance: usize) -> Self {
        Self {
            max_instances,
            max_databases: max_databases_per_instance,
            databases: HashMap::new(),
            known: HashSet::new(),
            folded: 0,
        }
    }

    /// The instance, or `(other)` past the bound (and then true).
    fn instance_key(&mut self, inst: String) -> (String, bool) {
        if self.databases.contains_key(&inst) || self.databases.len() < self.max_instances {
            self.databases.entry(inst.clone()).or_insert(0);
            (inst, false)
        } else {
            (OTHER.into(), true)
        }
    }

    /// The dimension of a record that has no database; a fold is counted.
    pub fn instance(&mut self, inst: String) -> String {
        let (inst, folded) = self.instance_key(inst);
        self.folded += u64::from(folded);
        inst
    }

    /// The (instance, database) of a record; one fold is counted per record folded.
    pub fn database(&mut self, inst: String, database: Option<&str>) -> (String, String) {
        let (inst, inst_folded) = self.instance_key(inst);
        let db = database
            .filter(|d| !d.is_empty())
            .unwrap_or(NO_DATABASE)
            .to_string();
        self.folded += u64::from(inst_folded);
        let key = (inst, db);
        if self.known.contains(&key) {
            return key;
        }
        let n = self.databases.entry(key.0.clone()).or_insert(0);
        let key = if *n < self.max_databases {
            *n += 1;
            key
        } else {
            // One fold per record: an instance folded already counted.
            self.folded += u64::from(!inst_folded);
            let key = (key.0, OTHER.to_string());
            if !self.known.contains(&key) {
                *n += 1;
            }
            key
        };
        self.known.insert(key.clone());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_databases_fold_past_their_bounds_and_folds_are_counted() {
        let mut d = Dims::new(2, 2);
        assert_eq!(d.database("a".into(), Some("x")), ("a".into(), "x".into()));
        assert_eq!(
            d.database("a".into(), None),
            ("a".into(), NO_DATABASE.into())
        );
        assert_eq!(
            d.database("a".into(), Some("y")),
            ("a".into(), OTHER.into())
        );
        assert_eq!(d.database("a".into(), Some("x")), ("a".into(), "x".into()));
        assert_eq!(d.instance("b".into()), "b");
        assert_eq!(d.instance("c".into()), OTHER);
        assert_eq!(
            d.database("c".into(), Some("z")),
            (OTHER.into(), "z".into())
        );
        // y, then c twice: one fold per record.
        assert_eq!(d.folded, 3);
    }
}
