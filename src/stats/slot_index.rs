//! A hot-key stripe's map from a key's hash to its slot: open addressing with linear probing
//! over a table allocated once, at most a quarter full, with backward-shift deletion.
//!
//! With many distinct keys nearly every hit evicts, so each is a failed lookup, a removal and
//! an insertion. A general hash map spends about 150 instructions on the three; here a probe
//! is a load and a compare, as the hash is already xxh3 and needs no hashing again. A quarter
//! full rather than half keeps the runs a removal shifts short: 81 instructions for the three
//! against 128 at half (callgrind, `-M prepared`), for 64 bytes per summary entry instead of 32.

use std::mem::size_of;

/// `slot` of a free entry.
const FREE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    slot: u32,
}

pub(super) struct SlotIndex {
    entries: Box<[Entry]>,
    mask: usize,
}

impl SlotIndex {
    /// Room for `capacity` hashes (slots below `u32::MAX`) in four times as many entries.
    pub fn new(capacity: usize) -> SlotIndex {
        let size = (4 * capacity).next_power_of_two().max(8);
        SlotIndex {
            entries: vec![
                Entry {
                    hash: 0,
                    slot: FREE
                };
                size
            ]
            .into_boxed_slice(),
            mask: size - 1,
        }
    }

    /// Where a hash's probe starts: its low bits (a stripe is chosen by bits 16..48).
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// The entry holding `hash`, or the free one that ends its probe. Never loops forever: at
    /// most a quarter of the entries are taken.
    fn find(&self, hash: u64) -> usize {
        let mut i = self.home(hash);
        loop {
            let e = self.entries[i];
            if e.slot == FREE || e.hash == hash {
                return i;
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn get(&self, hash: u64) -> Option<u32> {
        let e = self.entries[self.find(hash)];
        (e.slot != FREE).then_some(e.slot)
    }

    /// Maps `hash` to `slot`, replacing what it mapped to. The caller keeps at most the
    /// capacity's number of hashes.
    pub fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert_ne!(slot, FREE);
        let i = self.find(hash);
        self.entries[i] = Entry { hash, slot };
    }

    /// Unmaps `hash`. Each entry after it in the same run that may sit earlier moves back into
    /// the gap, so that no probe ever stops short of its hash at a freed entry.
    pub fn remove(&mut self, hash: u64) {
        let mut gap = self.find(hash);
        if self.entries[gap].slot == FREE {
            return;
        }
        let mut j = gap;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e.slot == FREE {
                break;
            }
            // It may move into the gap if its home is not after the gap (cyclically): its
            // distance from home is at least the gap's distance from it.
            let from_home = j.wrapping_sub(self.home(e.hash)) & self.mask;
            let from_gap = j.wrapping_sub(gap) & self.mask;
            if from_home >= from_gap {
                self.entries[gap] = e;
                gap = j;
            }
        }
        self.entries[gap].slot = FREE;
    }

    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use std::collections::HashMap;

    /// Random inserts and removals against std's map, on hashes crowded into few homes so
    /// that runs wrap around the table's end and removals shift entries back.
    #[test]
    fn agrees_with_a_hash_map() {
        for (capacity, homes) in [(4, 3u64), (64, 16), (64, 1 << 20)] {
            let mut index = SlotIndex::new(capacity);
            let mut truth: HashMap<u64, u32> = HashMap::new();
            let mut rng = StdRng::seed_from_u64(capacity as u64 ^ homes);
            for step in 0..200_000u32 {
                // Distinct hashes sharing low bits: home (low bits) times a high part.
                let hash = rng.random_range(0..homes) | (rng.random_range(0..8u64) << 40);
                let hash = hash.wrapping_add(index.mask as u64 - 1);
                if truth.remove(&hash).is_some() {
                    index.remove(hash);
                } else {
                    if truth.len() == capacity {
                        let h = *truth.keys().next().unwrap();
                        index.remove(h);
                        truth.remove(&h);
                    }
                    index.insert(hash, step % 1000);
                    truth.insert(hash, step % 1000);
                }
                // Removing what is absent changes nothing.
                index.remove(hash ^ (1 << 60));
                assert_eq!(index.get(hash), truth.get(&hash).copied(), "step {step}");
                // Checked at every step: a table that kept stale entries would fill up, and a
                // probe of a full table never ends.
                let taken = index.entries.iter().filter(|e| e.slot != FREE).count();
                assert_eq!(taken, truth.len(), "step {step}");
                for (&h, &s) in &truth {
                    assert_eq!(index.get(h), Some(s), "step {step}");
                }
            }
        }
    }

    #[test]
    fn sized_to_at_most_a_quarter_full() {
        assert_eq!(SlotIndex::new(64).entries.len(), 256);
        assert_eq!(SlotIndex::new(65).entries.len(), 512);
        assert_eq!(SlotIndex::new(1).entries.len(), 8);
        assert_eq!(SlotIndex::new(64).memory_bytes(), 256 * 16);
    }
}
