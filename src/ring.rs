//! Placement: the consistent hash ring of vnodes that maps a key's hash to a shard.
//!
//! INTERFACE FROZEN FOR HELPERS: the public items below are used across the crate.

mod array;
mod key;
mod movement;
#[cfg(test)]
mod weight_tests;

pub use array::{array_from_binary, array_from_text, ArrayKeys, MAX_ARRAY_KEYS};
pub use key::{key_error_sqlstate, oid, plain_int, Key, KeyError};
pub use movement::{movement, Movement};

use crate::config::ShardConfig;
use std::fmt;
use twox_hash::XxHash3_64;

/// A shard's id: its position in the backend's list, fixed for the life of the process (the
/// initial config's `[[shards]]` order, then shards a rebalance adds, in the order added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// The ring: `vnodes × weight` points per shard at xxh3_64(name ‖ "#" ‖ i) (or `points`, for
/// the intermediate placements of a rebalance). A shard of weight 0
/// keeps its id and name (statistics and SHOW commands still name it) but owns no keys.
#[derive(Clone)]
pub struct Ring {
    names: Vec<String>,
    weights: Vec<u32>,
    /// Ids of the shards with weight > 0, ascending: where "every shard" statements go.
    members: Vec<ShardId>,
    vnodes: u32,
    /// Point positions, ascending; kept apart from `owners` so the binary search touches only
    /// the hashes (half the cache lines of a Vec<(u64, ShardId)>).
    points: Vec<u64>,
    /// `owners[j]` owns `points[j]`; among equal positions the lower ShardId comes first.
    owners: Vec<ShardId>,
    /// The points whose top `index_bits` bits are b are `points[index[b]..index[b + 1]]`: a
    /// lookup reads one index entry and searches a point or two, where a binary search over
    /// thousands of points misses the cache at every step (the proxy shares its cores).
    index: Vec<u32>,
    index_bits: u32,
    /// The owner of every point when there is one: a ring of one shard needs no search.
    sole: Option<ShardId>,
}

/// Bits of the bucket index: about one bucket per point, at most 2^16 buckets (256 KB).
fn index_bits_for(points: usize) -> u32 {
    (usize::BITS - points.saturating_sub(1).leading_zeros()).min(16)
}

/// Empty for a ring too large to index by u32 (far beyond what validation allows): lookups
/// then search every point.
fn build_index(points: &[u64], bits: u32) -> Vec<u32> {
    if u32::try_from(points.len()).is_err() {
        return Vec::new();
    }
    let buckets = 1usize << bits;
    let mut index = Vec::with_capacity(buckets + 1);
    let mut j = 0;
    for b in 0..buckets as u64 {
        let start = if bits == 0 { 0 } else { b << (64 - bits) };
        while j < points.len() && points[j] < start {
            j += 1;
        }
        index.push(j as u32);
    }
    index.push(points.len() as u32);
    index
}

impl Ring {
    /// Builds the ring over `shards` in ShardId order; a weight of 0 gives a shard no points.
    /// Shards past u16::MAX (config validation allows far fewer) are ignored.
    pub fn new(shards: &[ShardConfig], vnodes: u32) -> Ring {
        let shards = &shards[..shards.len().min(usize::from(u16::MAX) + 1)];
        let count = |s: &ShardConfig| {
            s.points
                .map_or(u64::from(vnodes) * u64::from(s.weight), u64::from)
        };
        let total: usize = shards.iter().map(|s| count(s) as usize).sum();
        let mut pairs: Vec<(u64, ShardId)> = Vec::with_capacity(total);
        let mut buf = Vec::new();
        for (id, shard) in (0u16..).zip(shards) {
            for i in 0..count(shard) {
                buf.clear();
                buf.extend_from_slice(shard.name.as_bytes());
                buf.push(b'#');
                buf.extend_from_slice(i.to_string().as_bytes());
                pairs.push((XxHash3_64::oneshot(&buf), ShardId(id)));
            }
        }
        // Sorting by (position, id) makes placement independent of shard order on collisions.
        pairs.sort_unstable();
        let points: Vec<u64> = pairs.iter().map(|p| p.0).collect();
        let owners: Vec<ShardId> = pairs.iter().map(|p| p.1).collect();
        let index_bits = index_bits_for(points.len());
        let sole = match owners.first() {
            Some(&first) if owners.iter().all(|&o| o == first) => Some(first),
            _ => None,
        };
        Ring {
            names: shards.iter().map(|s| s.name.clone()).collect(),
            weights: shards.iter().map(|s| s.weight).collect(),
            members: (0u16..)
                .zip(shards)
                .filter(|(_, s)| count(s) > 0)
                .map(|(id, _)| ShardId(id))
                .collect(),
            vnodes,
            index: build_index(&points, index_bits),
            index_bits,
            points,
            owners,
            sole,
        }
    }

    /// The shard owning a hash: the first point at or after it, wrapping around.
    /// A ring without points (no shards, or all weights 0) answers ShardId(0).
    pub fn shard_for_hash(&self, hash: u64) -> ShardId {
        if let Some(owner) = self.sole {
            return owner;
        }
        let b = if self.index_bits == 0 {
            0
        } else {
            (hash >> (64 - self.index_bits)) as usize
        };
        let (lo, hi) = match (self.index.get(b), self.index.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.points.len()),
        };
        let j = lo + self.points[lo..hi].partition_point(|&p| p < hash);
        let j = if j == self.points.len() { 0 } else { j };
        self.owners.get(j).copied().unwrap_or(ShardId(0))
    }

    /// `shard_for_hash` by a plain binary search over every point: what the index must agree
    /// with.
    #[cfg(test)]
    pub(crate) fn shard_for_hash_by_search(&self, hash: u64) -> ShardId {
        let j = self.points.partition_point(|&p| p < hash);
        let j = if j == self.points.len() { 0 } else { j };
        self.owners.get(j).copied().unwrap_or(ShardId(0))
    }

    pub fn shard_for_key(&self, key: &Key) -> ShardId {
        self.shard_for_hash(key.hash())
    }

    /// The number of shards that own keys (the members), which is how many "every shard" means.
    pub fn shard_count(&self) -> usize {
        self.members.len()
    }

    /// The shards with weight > 0, ascending: the targets of a statement that goes everywhere.
    pub fn members(&self) -> &[ShardId] {
        &self.members
    }

    /// The shard for a statement any one shard can answer: the first member (ShardId(0) for a
    /// ring without members, as `shard_for_hash` answers).
    pub fn first_member(&self) -> ShardId {
        self.members.first().copied().unwrap_or(ShardId(0))
    }

    /// The shard's weight; 0 for a shard that owns nothing or that this ring does not list.
    pub fn weight(&self, id: ShardId) -> u32 {
        self.weights.get(usize::from(id.0)).copied().unwrap_or(0)
    }

    /// The shard's name; "" for an id not in this ring.
    pub fn shard_name(&self, id: ShardId) -> &str {
        self.names.get(usize::from(id.0)).map_or("", String::as_str)
    }

    /// The shard of that name, if the ring has it.
    pub fn shard_by_name(&self, name: &str) -> Option<ShardId> {
        let i = self.names.iter().position(|n| n == name)?;
        u16::try_from(i).ok().map(ShardId)
    }

    /// Shard names in ShardId order, weight-0 shards included.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Number of points on the ring.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// Each point with the slice of hash space it owns, as `(end, shard, size)`: point `j` owns
    /// `(points[j-1], points[j]]` and point 0 also owns the wrap-around above the last point.
    fn arcs(&self) -> impl Iterator<Item = (u64, ShardId, u128)> + '_ {
        let n = self.points.len();
        (0..n).map(move |j| {
            let end = self.points[j];
            let size = if j == 0 {
                (1u128 << 64) - u128::from(self.points[n - 1]) + u128::from(end)
            } else {
                u128::from(end - self.points[j - 1])
            };
            (end, self.owners[j], size)
        })
    }

    /// The exact share of the 64-bit hash space each shard owns, in ShardId order.
    pub fn ownership(&self) -> Vec<f64> {
        let mut owned = vec![0u128; self.names.len()];
        for (_, shard, size) in self.arcs() {
            owned[usize::from(shard.0)] += size;
        }
        owned.iter().map(|&o| o as f64 / SPACE).collect()
    }
}

/// 2^64, the number of hash values.
const SPACE: f64 = 18_446_744_073_709_551_616.0;

impl fmt::Debug for Ring {
    // Thousands of points say nothing in a log line; the shape of the ring does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("names", &self.names)
            .field("weights", &self.weights)
            .field("vnodes", &self.vnodes)
            .field("points", &self.points.len())
            .finish()
    }
}

/// How unevenly a ring divides the hash space: the largest ratio of a shard's ownership to its
/// fair share by weight (for equal weights, max ownership / mean ownership). 1.0 is perfect.
pub fn spread(ring: &Ring) -> f64 {
    let total: u64 = ring.weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 || ring.points.is_empty() {
        return 1.0;
    }
    ring.ownership()
        .iter()
        .zip(&ring.weights)
        .filter(|(_, &w)| w > 0)
        .map(|(&own, &w)| own / (f64::from(w) / total as f64))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests;
