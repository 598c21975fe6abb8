//! One token bucket, as a single atomic: checking it takes no lock, however many sessions
//! share it.
//!
//! The bucket is kept as its "theoretical arrival time" (GCRA): the instant at which it would
//! be full again. Taking n tokens moves that instant n refill intervals later; a take is
//! refused when it would land more than a whole bucket ahead of now. This is the token bucket
//! exactly (rate r, size b), in one u64 that a compare-and-swap updates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds since the limiter's epoch.
pub type Nanos = u64;

#[derive(Debug)]
pub struct Bucket {
    /// When the bucket is full again (it is full whenever this is not after now).
    full_at: AtomicU64,
    /// Nanoseconds to refill one token.
    interval: u64,
    /// Nanoseconds to refill the whole bucket.
    span: u64,
    pub rate: f64,
    pub burst: u32,
    allowed: AtomicU64,
    refused: AtomicU64,
    /// Last take (allowed or not), for idle eviction and SHOW LIMITS.
    last_used: AtomicU64,
}

/// What a refused take is told: how long until the tokens it asked for are there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub wait: Nanos,
}

impl Bucket {
    pub fn new(rate: f64, burst: u32, now: Nanos) -> Bucket {
        // At least 1 ns per token, so that an absurd rate still fills a finite bucket.
        let interval = ((1e9 / rate).round() as u64).max(1);
        Bucket {
            full_at: AtomicU64::new(now),
            interval,
            span: interval.saturating_mul(u64::from(burst)),
            rate,
            burst,
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_used: AtomicU64::new(now),
        }
    }

    /// Takes `n` tokens, or none and says how long to wait for them.
    pub fn take(&self, n: u32, now: Nanos) -> Result<(), Refused> {
        self.last_used.fetch_max(now, Ordering::Relaxed);
        let cost = self.interval.saturating_mul(u64::from(n));
        let mut current = self.full_at.load(Ordering::Acquire);
        loop {
            let next = current.max(now).saturating_add(cost);
            let ahead = next - now;
            // A saturated sum is never room in the bucket (config validation keeps spans far
            // below it; this only keeps the check from failing open).
            if ahead > self.span || next == u64::MAX {
                self.refused.fetch_add(u64::from(n), Ordering::Relaxed);
                return Err(Refused {
                    wait: ahead - self.span,
                });
            }
            match self.full_at.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.allowed.fetch_add(u64::from(n), Ordering::Relaxed);
                    return Ok(());
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives back `n` tokens taken by a request that another bucket then refused.
    pub fn refund(&self, n: u32, now: Nanos) {
        let cost = self.interval.saturating_mul(u64::from(n));
        let mut current = self.full_at.load(Ordering::Acquire);
        loop {
            let next = current.saturating_sub(cost).max(now.min(current));
            match self.full_at.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.allowed.fetch_sub(u64::from(n), Ordering::Relaxed);
    }

    /// Tokens in the bucket now (fractional while refilling).
    pub fn tokens(&self, now: Nanos) -> f64 {
        let ahead = self.full_at.load(Ordering::Acquire).saturating_sub(now);
        (self.span.saturating_sub(ahead)) as f64 / self.interval as f64
    }

    /// Full and unused since `before`: forgetting it loses nothing, as a new bucket is full.
    pub fn idle(&self, now: Nanos, before: Nanos) -> bool {
        self.full_at.load(Ordering::Acquire) <= now
            && self.last_used.load(Ordering::Relaxed) <= before
    }

    pub fn allowed(&self) -> u64 {
        self.allowed.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn last_used(&self) -> Nanos {
        self.last_used.load(Ordering::Relaxed)
    }

    /// The same limit: a reload keeps such a bucket (and its state) as it is.
    pub fn same_limit(&self, rate: f64, burst: u32) -> bool {
        self.rate == rate && self.burst == burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_gives_burst_then_rate() {
        let b = Bucket::new(10.0, 5, 0);
        for _ in 0..5 {
            b.take(1, 0).unwrap();
        }
        let refused = b.take(1, 0).unwrap_err();
        assert_eq!(refused.wait, SEC / 10);
        // One interval later exactly one token is back.
        b.take(1, SEC / 10).unwrap();
        assert!(b.take(1, SEC / 10).is_err());
        // Over a long wait it fills to burst, never beyond.
        assert!((b.tokens(100 * SEC) - 5.0).abs() < 1e-9);
        for _ in 0..5 {
            b.take(1, 100 * SEC).unwrap();
        }
        assert!(b.take(1, 100 * SEC).is_err());
        assert_eq!((b.allowed(), b.refused()), (11, 3));
    }

    #[test]
    fn a_take_of_several_is_all_or_nothing() {
        let b = Bucket::new(1.0, 4, 0);
        b.take(3, 0).unwrap();
        assert!(b.take(2, 0).is_err());
        assert!((b.tokens(0) - 1.0).abs() < 1e-9);
        assert!(b.take(5, 10 * SEC).is_err(), "more than the bucket holds");
        b.take(4, 10 * SEC).unwrap();
    }

    #[test]
    fn a_refund_puts_tokens_back_but_never_beyond_full() {
        let b = Bucket::new(1.0, 2, 0);
        b.take(2, 0).unwrap();
        b.refund(1, 0);
        assert!((b.tokens(0) - 1.0).abs() < 1e-9);
        b.refund(5, 0);
        assert!((b.tokens(0) - 2.0).abs() < 1e-9);
        assert!(b.take(3, 0).is_err());
    }

    #[test]
    fn idle_means_full_and_unused() {
        let b = Bucket::new(2.0, 2, 0);
        b.take(2, SEC).unwrap();
        assert!(!b.idle(SEC, SEC), "not full");
        assert!(!b.idle(3 * SEC, SEC / 2), "used after the cut-off");
        assert!(b.idle(3 * SEC, 2 * SEC));
    }

    #[test]
    fn concurrent_takes_never_overdraw() {
        let b = std::sync::Arc::new(Bucket::new(1.0, 1000, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|_| b.take(1, 0).is_ok()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
