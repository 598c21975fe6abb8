//! A map from statement or portal names to what the proxy keeps for them, with the unnamed
//! one ("") held apart.
//!
//! Drivers bind the unnamed portal with every query, and most parse the unnamed statement with
//! every query too, so the session looks these up several times per request. Held in a field,
//! the unnamed entry costs no hashing and no probe into a table the cache has long forgotten.

use std::collections::HashMap;

/// Names are looked up on every request of a driver that prepares statements. Foldhash hashes
/// a short name several times faster than SipHash; its per-map random seed still keeps a client
/// from choosing names that collide.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug)]
pub struct Names<V> {
    unnamed: Option<V>,
    named: HashMap<String, V, Hasher>,
}

impl<V> Default for Names<V> {
    fn default() -> Self {
        Names {
            unnamed: None,
            named: HashMap::default(),
        }
    }
}

impl<V> Names<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else if self.named.is_empty() {
            None
        } else {
            self.named.get(name)
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        if name.is_empty() {
            self.unnamed.as_mut()
        } else {
            self.named.get_mut(name)
        }
    }

    /// Sets `name` to `value`, returning what it held.
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        if name.is_empty() {
            self.unnamed.replace(value)
        } else {
            self.named.insert(name, value)
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        if name.is_empty() {
            self.unnamed.take()
        } else if self.named.is_empty() {
            None
        } else {
            self.named.remove(name)
        }
    }

    pub fn clear(&mut self) {
        self.unnamed = None;
        self.named.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.unnamed.is_none() && self.named.is_empty()
    }

    pub fn len(&self) -> usize {
        usize::from(self.unnamed.is_some()) + self.named.len()
    }

    /// The named entries, in no particular order.
    pub fn named(&self) -> impl Iterator<Item = (&str, &V)> {
        self.named.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on a Names and on a plain HashMap leave them holding the same.
    #[test]
    fn behaves_as_a_map() {
        let mut names = Names::new();
        let mut map = HashMap::new();
        let keys = ["", "a", "P0_1", "", "a", "b", ""];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(names.insert(k.to_string(), i), map.insert(k.to_string(), i));
            for probe in ["", "a", "b", "P0_1", "zz"] {
                assert_eq!(names.get(probe), map.get(probe), "{probe:?}");
            }
            if i % 3 == 2 {
                assert_eq!(names.remove(k), map.remove(*k));
                assert_eq!(names.remove("zz"), map.remove("zz"));
            }
            if let (Some(a), Some(b)) = (names.get_mut("a"), map.get_mut("a")) {
                *a += 10;
                *b += 10;
            }
            assert_eq!(names.is_empty(), map.is_empty());
        }
        names.clear();
        assert!(names.is_empty() && names.get("").is_none() && names.get("a").is_none());
        assert_eq!(names.remove(""), None);
    }
}
