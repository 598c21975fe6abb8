//! Placement: canonical key bytes, xxh3 hashing, and the consistent hash ring of vnodes.
//!
//! INTERFACE FROZEN FOR HELPERS: the public items below are used across the crate.

use crate::config::{KeyType, ShardConfig};

/// Index of a shard in the config's `[[shards]]` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// A shard key in canonical form: equal values of a column type give equal bytes whatever
/// their spelling (`42`, `'42'`, `$1` as text or binary int4/int8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
}

/// Why a value could not be made into a key of the column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl Key {
    /// Canonical bytes: Int as 8-byte little-endian, Text as UTF-8, Uuid as its 16 bytes.
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        todo!("helper: ring")
    }

    /// xxh3_64 of the canonical bytes.
    pub fn hash(&self) -> u64 {
        todo!("helper: ring")
    }

    /// A key from the text form of a value (a SQL literal's content, or a text-format parameter).
    pub fn from_text(ty: KeyType, text: &str) -> Result<Key, KeyError> {
        let _ = (ty, text);
        todo!("helper: ring")
    }

    /// A key from a binary-format parameter whose type OID is `oid` (0 = unspecified: use `ty`).
    pub fn from_binary(ty: KeyType, oid: u32, bytes: &[u8]) -> Result<Key, KeyError> {
        let _ = (ty, oid, bytes);
        todo!("helper: ring")
    }
}

/// The ring: `vnodes × weight` points per shard at xxh3_64(name ‖ "#" ‖ i).
#[derive(Debug, Clone)]
pub struct Ring {
    // helper: ring
}

impl Ring {
    pub fn new(shards: &[ShardConfig], vnodes: u32) -> Ring {
        let _ = (shards, vnodes);
        todo!("helper: ring")
    }

    /// The shard owning a hash: the first point at or after it, wrapping around.
    pub fn shard_for_hash(&self, hash: u64) -> ShardId {
        let _ = hash;
        todo!("helper: ring")
    }

    pub fn shard_for_key(&self, key: &Key) -> ShardId {
        self.shard_for_hash(key.hash())
    }

    pub fn shard_count(&self) -> usize {
        todo!("helper: ring")
    }

    pub fn shard_name(&self, id: ShardId) -> &str {
        let _ = id;
        todo!("helper: ring")
    }

    /// The exact share of the 64-bit hash space each shard owns, in ShardId order.
    pub fn ownership(&self) -> Vec<f64> {
        todo!("helper: ring")
    }
}
