//! Eviction for the bounded tables (connections, the offline flow table): when a table is
//! full, the least recently active entries go, a batch at a time.
//!
//! Finding the single oldest entry is a scan of the whole table; doing that for every new
//! entry under a SYN flood from random sources would make each event cost O(table). Evicting
//! 1/64 of the capacity per scan makes it O(64) per entry, amortised.

use std::collections::HashMap;
use std::hash::Hash;

/// How many entries one eviction pass removes from a table of `capacity`.
pub fn batch(capacity: usize) -> usize {
    (capacity / 64).max(1)
}

/// The keys of the `n` entries with the smallest `age_key` (least recently active first).
pub fn oldest<K: Copy + Eq + Hash, V, S>(
    map: &HashMap<K, V, S>,
    n: usize,
    age_key: impl Fn(&V) -> u64,
) -> Vec<K> {
    let mut all: Vec<(u64, K)> = map.iter().map(|(k, v)| (age_key(v), *k)).collect();
    let n = n.min(all.len());
    if n == 0 {
        return Vec::new();
    }
    if n < all.len() {
        all.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        all.truncate(n);
    }
    all.sort_unstable_by_key(|(t, _)| *t);
    all.into_iter().map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_oldest() {
        let m: HashMap<u32, u64> = (0..1000u32)
            .map(|k| (k, u64::from((k * 7919) % 1000)))
            .collect();
        let got = oldest(&m, 3, |v| *v);
        let mut want: Vec<(u64, u32)> = m.iter().map(|(k, v)| (*v, *k)).collect();
        want.sort();
        assert_eq!(got, want[..3].iter().map(|(_, k)| *k).collect::<Vec<_>>());
        assert_eq!(oldest(&m, 5000, |v| *v).len(), 1000);
        assert!(oldest(&m, 0, |v| *v).is_empty());
        assert_eq!(batch(100_000), 1562);
        assert_eq!(batch(10), 1);
    }
}
