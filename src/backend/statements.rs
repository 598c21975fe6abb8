//! The statements prepared on one shard connection, with when each was last used, so that a
//! connection that holds as many as it may can close the ones least recently used.

use crate::protocol::Names;

/// Statements one shard connection holds at most when the proxy prepares one of its own: a
/// bound on what sessions with endless statement texts leave in the shards' memory.
pub const MAX_PER_CONN: usize = 500;

/// How many statements a full connection closes at once: one round trip makes room for this
/// many new ones.
pub const EVICT_AT_ONCE: usize = MAX_PER_CONN / 10;

#[derive(Default)]
pub struct Statements {
    /// Backend name → (hash of SQL and parameter types, use tick).
    map: Names<(u64, u64)>,
    tick: u64,
}

impl Statements {
    pub fn new() -> Self {
        Self::default()
    }

    /// The hash of the statement `name`, without counting it as used.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.map.get(name).map(|&(h, _)| h)
    }

    /// True when `name` is prepared here as `hash`; counts it as used.
    pub fn holds(&mut self, name: &str, hash: u64) -> bool {
        match self.map.get_mut(name) {
            Some((h, used)) if *h == hash => {
                self.tick += 1;
                *used = self.tick;
                true
            }
            _ => false,
        }
    }

    /// Notes `name` as prepared here as `hash`, just used.
    pub fn insert(&mut self, name: String, hash: u64) {
        self.tick += 1;
        self.map.insert(name, (hash, self.tick));
    }

    pub fn remove(&mut self, name: &str) -> Option<u64> {
        self.map.remove(name).map(|(h, _)| h)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True when a statement the proxy prepares of its own accord must first make room.
    pub fn full(&self) -> bool {
        self.map.len() >= MAX_PER_CONN
    }

    /// The `n` named statements least recently used, forgotten here: the caller closes them on
    /// the server before it prepares anything else. The unnamed statement is never among them.
    pub fn evict(&mut self, n: usize) -> Vec<String> {
        let mut by_use: Vec<(u64, &str)> = self.map.named().map(|(k, &(_, u))| (u, k)).collect();
        let n = n.min(by_use.len());
        if n == 0 {
            return Vec::new();
        }
        if n < by_use.len() {
            by_use.select_nth_unstable(n - 1);
        }
        let names: Vec<String> = by_use[..n].iter().map(|(_, k)| (*k).to_owned()).collect();
        for k in &names {
            self.map.remove(k);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_named_statements() {
        let mut s = Statements::new();
        s.insert(String::new(), 7);
        for i in 0..10 {
            s.insert(format!("s{i}"), i);
        }
        // s0 and s1, the oldest, are used again; s2..s4 become the least recently used.
        assert!(s.holds("s0", 0) && s.holds("s1", 1));
        assert!(!s.holds("s5", 99), "a different hash is not the statement");
        let mut gone = s.evict(3);
        gone.sort();
        assert_eq!(gone, ["s2", "s3", "s4"]);
        assert_eq!(s.len(), 8);
        assert_eq!(s.get(""), Some(7));
        assert_eq!(s.get("s2"), None);
        assert_eq!(s.get("s0"), Some(0));
        // Asking for more than there is takes every named statement, never the unnamed one.
        assert_eq!(s.evict(100).len(), 7);
        assert_eq!(s.len(), 1);
        assert!(s.evict(1).is_empty());
    }
}
