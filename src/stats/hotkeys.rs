//! Hot keys of a sharded table: a bounded, time-decayed top-K of the routed keys, kept as
//! striped Space-Saving summaries so that recording a hit never queues queries on one lock.
//!
//! Space-Saving (Metwally et al.) keeps K counters; an untracked key takes over the smallest,
//! inheriting its count as the error. Every key's true count then lies in `[count - error,
//! count]`, and any key hotter than the smallest counter is tracked. Memory is K entries
//! whatever the number of distinct keys.
//!
//! Decay is forward decay (Cormode et al.): a hit at time t adds `2^((t - base) / H)`, so older
//! hits weigh relatively less without ever touching the counters; reading divides by the weight
//! of `now`. Weights grow with time, so a stripe rescales its counters and moves `base` when
//! they would grow too large.
//!
//! A key's home stripe is fixed by its hash; a hit whose home stripe is busy goes to the next
//! free one. Summaries of disjoint streams merge by summing, once a key absent from a stripe is
//! charged what it could have had there (see `top`).

use crate::ring::Key;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

/// Text keys are kept for display only, so a long one is cut to this many bytes: the hash,
/// not the text, identifies an entry.
const MAX_TEXT: usize = 64;

/// A stripe rescales once a new hit would weigh 2^RESCALE_EXP times a hit at its landmark:
/// rare (every 40 half-lives), and far below f64's range even after billions of hits.
const RESCALE_EXP: f64 = 40.0;

/// Reading at a time before a stripe's landmark multiplies by at most 2^MAX_READ_EXP, so a
/// stale clock cannot overflow a count into infinity.
const MAX_READ_EXP: f64 = 64.0;

/// The routed key's hash is already xxh3: hashing it again would only cost time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; anything else is folded in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type ByHash<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// The home stripe of a hash. Bits 16..48 are used because the map indexes buckets by the low
/// bits and tags them with the top 7: keys sharing a stripe must not share those.
fn home_of(hash: u64, stripes: usize) -> usize {
    ((u64::from((hash >> 16) as u32) * stripes as u64) >> 32) as usize
}

/// A key as kept for display: Text cut to MAX_TEXT bytes on a char boundary.
fn display_text(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut cut = MAX_TEXT;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

fn stored(key: &Key) -> Key {
    match key {
        Key::Text(s) => Key::Text(display_text(s).to_owned()),
        other => other.clone(),
    }
}

/// Overwrites an evicted entry's key, reusing its text buffer: with unbounded distinct text
/// keys every miss is an eviction, and buffers only grow to the longest text seen (at most
/// MAX_TEXT), so the steady state allocates nothing.
fn store(dst: &mut Key, src: &Key) {
    match (dst, src) {
        (Key::Text(d), Key::Text(s)) => {
            let s = display_text(s);
            d.clear();
            d.reserve_exact(s.len());
            d.push_str(s);
        }
        (dst, src) => *dst = stored(src),
    }
}

/// A heap node: the counts sit in the heap array itself so that sifting reads contiguous
/// memory, and only a slot number moves with them.
#[derive(Clone, Copy)]
struct Node {
    count: f64,
    slot: u32,
}

struct Slot {
    hash: u64,
    /// Space-Saving's overestimate bound, in the stripe's landmark units like the count.
    error: f64,
    /// Its home is another stripe: it came here because its home was busy.
    foreign: bool,
    key: Key,
}

/// One Space-Saving summary: a min-heap of counts over slots that never move, so a swap while
/// sifting updates `at` rather than the map.
struct Stripe {
    heap: Vec<Node>,
    /// `at[slot]`: the slot's position in `heap`.
    at: Vec<u32>,
    slots: Vec<Slot>,
    index: ByHash<u32>,
    /// Landmark of the forward decay, in the caller's seconds.
    base: u64,
    /// The last `now` seen and its weight: one exp2 per stripe per tick instead of per hit.
    clock: u64,
    weight: f64,
    /// Weight of every hit, tracked or not.
    total: f64,
    /// The largest count evicted: the most an absent key homed here can have had here.
    evicted: f64,
    /// The largest count of a foreign entry evicted: the most an absent key homed elsewhere
    /// can have had here.
    foreign_evicted: f64,
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            heap: Vec::new(),
            at: Vec::new(),
            slots: Vec::new(),
            index: ByHash::default(),
            base: 0,
            clock: 0,
            weight: 1.0,
            total: 0.0,
            evicted: 0.0,
            foreign_evicted: 0.0,
        }
    }

    fn weight_at(&mut self, now: u64, inv_half_life: f64) -> f64 {
        if now != self.clock {
            let mut exp = (now as f64 - self.base as f64) * inv_half_life;
            if exp > RESCALE_EXP {
                self.rescale(now, exp);
                exp = 0.0;
            }
            self.clock = now;
            self.weight = exp.exp2();
        }
        self.weight
    }

    /// Moves the landmark to `now`. Multiplying every count by one positive factor keeps their
    /// order, so the heap stays valid.
    fn rescale(&mut self, now: u64, exp: f64) {
        let factor = (-exp).exp2();
        for node in &mut self.heap {
            node.count *= factor;
        }
        for slot in &mut self.slots {
            slot.error *= factor;
        }
        self.total *= factor;
        self.evicted *= factor;
        self.foreign_evicted *= factor;
        self.base = now;
    }

    /// The factor that turns this stripe's counts into hits decayed to `now`.
    fn decay_to(&self, now: u64, inv_half_life: f64) -> f64 {
        let exp = (self.base as f64 - now as f64) * inv_half_life;
        exp.min(MAX_READ_EXP).exp2()
    }

    fn hit(&mut self, key: &Key, hash: u64, now: u64, foreign: bool, shape: &HotKeys) {
        let w = self.weight_at(now, shape.inv_half_life);
        self.total += w;
        if let Some(&slot) = self.index.get(&hash) {
            let at = self.at[slot as usize] as usize;
            self.heap[at].count += w;
            self.sift_down(at);
        } else if self.heap.len() < shape.capacity {
            if self.heap.len() == self.heap.capacity() {
                // Doubling, but never past the capacity: the summary's size is its bound.
                let more = self.heap.len().max(4).min(shape.capacity - self.heap.len());
                self.heap.reserve_exact(more);
                self.at.reserve_exact(more);
                self.slots.reserve_exact(more);
            }
            let slot = self.slots.len() as u32;
            self.slots.push(Slot {
                hash,
                error: 0.0,
                foreign,
                key: stored(key),
            });
            self.at.push(self.heap.len() as u32);
            self.heap.push(Node { count: w, slot });
            self.index.insert(hash, slot);
            self.sift_up(self.heap.len() - 1);
        } else {
            let Node { count: min, slot } = self.heap[0];
            let entry = &mut self.slots[slot as usize];
            self.index.remove(&entry.hash);
            self.evicted = self.evicted.max(min);
            if entry.foreign {
                self.foreign_evicted = self.foreign_evicted.max(min);
            }
            entry.hash = hash;
            entry.error = min;
            entry.foreign = foreign;
            store(&mut entry.key, key);
            self.index.insert(hash, slot);
            self.heap[0].count = min + w;
            self.sift_down(0);
        }
    }

    fn place(&mut self, at: usize, node: Node) {
        self.heap[at] = node;
        self.at[node.slot as usize] = at as u32;
    }

    fn sift_up(&mut self, mut at: usize) {
        let node = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent].count <= node.count {
                break;
            }
            self.place(at, self.heap[parent]);
            at = parent;
        }
        self.place(at, node);
    }

    fn sift_down(&mut self, mut at: usize) {
        let node = self.heap[at];
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].count < self.heap[left].count {
                right
            } else {
                left
            };
            if self.heap[child].count >= node.count {
                break;
            }
            self.place(at, self.heap[child]);
            at = child;
        }
        self.place(at, node);
    }

    fn memory_bytes(&self) -> usize {
        let text: usize = self
            .slots
            .iter()
            .map(|s| match &s.key {
                Key::Text(t) => t.capacity(),
                _ => 0,
            })
            .sum();
        self.heap.capacity() * size_of::<Node>()
            + self.at.capacity() * size_of::<u32>()
            + self.slots.capacity() * size_of::<Slot>()
            + map_bytes(self.index.capacity())
            + text
    }
}

/// Heap bytes of a hash map of u64 -> u32 able to hold `capacity` entries, after the std
/// (hashbrown) layout: a power of two of buckets at most 7/8 full (at most n - 1 of n below 8),
/// each a (key, value) pair and one control byte, plus one group (16) of trailing control bytes.
fn map_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (size_of::<(u64, u32)>() + 1) + 16
}

/// A stripe on its own cache lines (two, as adjacent-line prefetching pairs them), so that
/// threads working on neighbouring stripes do not invalidate each other's lock word.
#[repr(align(128))]
struct Padded(Mutex<Stripe>);

/// A lock whose holder panicked is still consistent enough for statistics: recover it.
fn lock(m: &Mutex<Stripe>) -> MutexGuard<'_, Stripe> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hot-key sketch of one table.
pub struct HotKeys {
    stripes: Box<[Padded]>,
    capacity: usize,
    /// 1 / half-life: 0 for an infinite half-life, which disables decay.
    inv_half_life: f64,
}

/// A key as `top` reports it: `key` is for display (text cut to 64 bytes), `hash` identifies
/// it. The true (decayed) number of hits lies in `[hits - error, hits]`.
#[derive(Debug, Clone)]
pub struct HotKey {
    pub key: Key,
    pub hash: u64,
    pub hits: f64,
    pub error: f64,
}

impl HotKeys {
    /// capacity: entries per stripe; stripes: number of stripes (>= 1); half_life_secs > 0
    /// (infinity: no decay). Panics on values outside those ranges.
    pub fn new(capacity: usize, stripes: usize, half_life_secs: f64) -> HotKeys {
        assert!(
            (1..=u32::MAX as usize).contains(&capacity),
            "capacity must be at least 1"
        );
        assert!(stripes >= 1, "at least one stripe is needed");
        assert!(half_life_secs > 0.0, "the half-life must be positive");
        HotKeys {
            stripes: (0..stripes)
                .map(|_| Padded(Mutex::new(Stripe::new())))
                .collect(),
            capacity,
            inv_half_life: 1.0 / half_life_secs,
        }
    }

    /// Counts one routed key; `hash` is `key.hash()`, `now` a coarse clock in whole seconds.
    pub fn hit(&self, key: &Key, hash: u64, now: u64) {
        let n = self.stripes.len();
        let home = home_of(hash, n);
        let mut at = home;
        for _ in 0..n {
            match self.stripes[at].0.try_lock() {
                Ok(mut s) => return s.hit(key, hash, now, at != home, self),
                Err(TryLockError::Poisoned(p)) => {
                    return p.into_inner().hit(key, hash, now, at != home, self)
                }
                Err(TryLockError::WouldBlock) => {}
            }
            at = if at + 1 == n { 0 } else { at + 1 };
        }
        lock(&self.stripes[home].0).hit(key, hash, now, false, self);
    }

    /// The n hottest keys, merged across stripes, decayed to `now`, hottest first.
    ///
    /// A key counted in several stripes has its counts and errors summed. A stripe where it is
    /// absent may have evicted it: that stripe adds the most it can have had there (the largest
    /// count it evicted, of its own keys or of foreign ones) to both, so the true count stays
    /// within `[hits - error, hits]`. Without contention nothing is foreign and this adds 0.
    pub fn top(&self, n: usize, now: u64) -> Vec<HotKey> {
        if n == 0 {
            return Vec::new();
        }
        struct Merged {
            key: Key,
            hits: f64,
            error: f64,
            at_home: bool,
            /// The foreign bounds of the foreign stripes that hold it: not owed.
            foreign_held: f64,
        }
        let count = self.stripes.len();
        let mut bounds = Vec::with_capacity(count);
        let mut merged: ByHash<Merged> = ByHash::default();
        for (i, padded) in self.stripes.iter().enumerate() {
            let s = lock(&padded.0);
            let f = s.decay_to(now, self.inv_half_life);
            let foreign = s.foreign_evicted * f;
            bounds.push((s.evicted * f, foreign));
            merged.reserve(s.heap.len());
            for node in &s.heap {
                let slot = &s.slots[node.slot as usize];
                let m = merged.entry(slot.hash).or_insert_with(|| Merged {
                    key: slot.key.clone(),
                    hits: 0.0,
                    error: 0.0,
                    at_home: false,
                    foreign_held: 0.0,
                });
                m.hits += node.count * f;
                m.error += slot.error * f;
                if home_of(slot.hash, count) == i {
                    m.at_home = true;
                } else {
                    m.foreign_held += foreign;
                }
            }
        }
        let foreign_total: f64 = bounds.iter().map(|b| b.1).sum();
        let mut out: Vec<HotKey> = merged
            .into_iter()
            .map(|(hash, m)| {
                let (evicted_home, foreign_home) = bounds[home_of(hash, count)];
                let mut owed = (foreign_total - foreign_home - m.foreign_held).max(0.0);
                if !m.at_home {
                    owed += evicted_home;
                }
                HotKey {
                    key: m.key,
                    hash,
                    hits: m.hits + owed,
                    error: m.error + owed,
                }
            })
            .collect();
        let hottest = |a: &HotKey, b: &HotKey| b.hits.total_cmp(&a.hits).then(a.hash.cmp(&b.hash));
        if n < out.len() {
            out.select_nth_unstable_by(n - 1, hottest);
            out.truncate(n);
        }
        out.sort_unstable_by(hottest);
        out
    }

    /// Decayed total weight of every hit (tracked or not) as of `now`: the denominator of a
    /// key's share.
    pub fn total(&self, now: u64) -> f64 {
        self.stripes
            .iter()
            .map(|p| {
                let s = lock(&p.0);
                s.total * s.decay_to(now, self.inv_half_life)
            })
            .sum()
    }

    /// An upper bound of the heap memory the sketch holds now (entries, maps, key strings), in
    /// bytes: at most about 220 bytes per entry (`stripes * capacity`), plus 256 per stripe.
    pub fn memory_bytes(&self) -> usize {
        self.stripes.len() * size_of::<Padded>()
            + self
                .stripes
                .iter()
                .map(|p| lock(&p.0).memory_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
#[path = "hotkeys_tests.rs"]
mod tests;
