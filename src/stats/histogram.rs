//! Latency histograms: a lock-free recorder with log-linear buckets, and the snapshots read from
//! it (quantiles, Prometheus cumulative counts, windows, totals).
//!
//! Layout: a duration `d` is filed under `x = ceil(d in µs) - 1` (0 for a zero duration). Values
//! of `x` below 16 get a bucket each; above, every power of two is split into 8 equal
//! sub-buckets. A bucket `[L, L + W)` of `x` thus holds the durations in `(L µs, (L + W) µs]`,
//! with `W <= L / 8`. Filing by the ceiling makes every power of two of microseconds an exact
//! "less than or equal" boundary, which is what Prometheus' `le` means.
//!
//! Error: `quantile` answers the middle of the bucket holding the observation, so it is within
//! 1/16 (6.25 %) of the true value, or within 0.5 µs of it below 8 µs. Durations over 2^32 µs
//! (about 71.6 minutes) share one overflow bucket and are reported as 2^32 µs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// `x` at or above 2^TOP_EXP goes to the overflow bucket.
const TOP_EXP: u32 = 32;
/// The overflow bucket's index: every bucket below it is regular.
const OVERFLOW: usize = ((TOP_EXP - SUB_BITS + 1) as usize) << SUB_BITS;
const BUCKETS: usize = OVERFLOW + 1;

/// Powers of two of microseconds that `cumulative` reports: 16 µs to 2^25 µs (about 33.5 s).
const LE_FIRST_EXP: u32 = 4;
const LE_LAST_EXP: u32 = 25;

/// The bucket of `x` (see the module comment).
fn bucket_of(x: u64) -> usize {
    // Or-ing in SUB puts every x below 2 * SUB on the first octave's scale, where the sub-bucket
    // width is 1: the linear buckets then need no branch of their own.
    let exp = 63 - (x | SUB).leading_zeros();
    let shift = exp - SUB_BITS;
    let index = (u64::from(shift) << SUB_BITS) + (x >> shift);
    index.min(OVERFLOW as u64) as usize
}

/// `(L, W)` of the regular bucket `index`: it holds `x` in `[L, L + W)`.
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        return (index, 1);
    }
    let shift = (index >> SUB_BITS) - 1;
    (((index & (SUB - 1)) + SUB) << shift, 1 << shift)
}

/// Whole nanoseconds, saturating at u64::MAX (584 years).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A latency histogram that threads record into concurrently without locking.
pub struct Histogram {
    buckets: Box<[AtomicU64; BUCKETS]>,
    /// Microseconds, rounded per observation; a u64 of them lasts 584,000 years of latency.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Files one observation. Two relaxed atomic adds: the count is the sum of the buckets, so
    /// it needs no counter of its own and a snapshot's count always matches its buckets.
    pub fn record(&self, elapsed: Duration) {
        self.record_ns(nanos(elapsed));
    }

    /// `record` for a duration already in nanoseconds (see `stamp.rs`).
    pub fn record_ns(&self, ns: u64) {
        let x = ns.saturating_sub(1) / 1000;
        self.buckets[bucket_of(x)].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(ns.saturating_add(500) / 1000, Relaxed);
    }

    /// The counts so far. Concurrent records may land in the buckets but not yet in the sum
    /// (or the reverse): the sum may lag or lead the count by the observations in flight.
    pub fn snapshot(&self) -> Snapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = buckets.iter().fold(0u64, |a, &b| a.saturating_add(b));
        Snapshot {
            buckets,
            sum_us: self.sum_us.load(Relaxed),
            count,
        }
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

/// The counts of a histogram at one moment, or a difference or total of such.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per-bucket counts; empty in a `Default` snapshot, where every bucket reads as 0.
    buckets: Vec<u64>,
    sum_us: u64,
    count: u64,
}

impl Snapshot {
    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the observations, in seconds (each rounded to the microsecond).
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// None when empty. `q` in [0,1] (outside, clamped): the value of the observation of rank
    /// `ceil(q * count)` (at least 1), reported as the middle of its bucket, hence within 6.25 %
    /// of it (within 0.5 µs below 8 µs). Observations over 2^32 µs are reported as 2^32 µs.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        let mut index = OVERFLOW;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                index = i;
                break;
            }
        }
        if index >= OVERFLOW {
            return Some(Duration::from_micros(1 << TOP_EXP));
        }
        let (low, width) = bucket_range(index);
        // The bucket holds (low, low + width] µs: its middle in nanoseconds.
        Some(Duration::from_nanos((2 * low + width) * 500))
    }

    /// For Prometheus: `(upper bound in seconds, observations <= it)` at every power of two of
    /// microseconds from 16 µs to 2^25 µs (about 33.5 s), then `(f64::INFINITY, count)`. The
    /// bounds are bucket boundaries, so every count is exact.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity((LE_LAST_EXP - LE_FIRST_EXP + 2) as usize);
        let mut below = 0u64;
        let mut next = 0usize;
        for exp in LE_FIRST_EXP..=LE_LAST_EXP {
            // `x < 2^exp` is exactly `d <= 2^exp µs`, and 2^exp starts a bucket.
            let end = bucket_of(1 << exp);
            let upto = end.min(self.buckets.len());
            if next < upto {
                below = self.buckets[next..upto]
                    .iter()
                    .fold(below, |a, &b| a.saturating_add(b));
                next = upto;
            }
            out.push(((1u64 << exp) as f64 / 1e6, below));
        }
        out.push((f64::INFINITY, self.count));
        out
    }

    /// `self` minus an older snapshot of the same histogram, bucket by bucket (saturating, so a
    /// histogram that was replaced in between gives zeros rather than wrapping).
    pub fn since(&self, older: &Snapshot) -> Snapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| n.saturating_sub(older.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let count = buckets.iter().fold(0u64, |a, &b| a.saturating_add(b));
        Snapshot {
            buckets,
            sum_us: self.sum_us.saturating_sub(older.sum_us),
            count,
        }
    }

    /// Adds another snapshot's observations to this one (to total several histograms).
    pub fn add(&mut self, other: &Snapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, &theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count = self.count.saturating_add(other.count);
    }
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;
