//! Request timing on the hot path: a monotonic clock read as whole nanoseconds.
//!
//! Every routed request reads the clock four times (the client request's start and end, the
//! shard request's start and end). `std::time::Instant` normalizes and checks a `timespec` at
//! each read and again at each subtraction (about 100 instructions per `elapsed`); a stamp is
//! the same `CLOCK_MONOTONIC` reading kept as one integer, so a duration is one subtraction.

use std::time::Duration;

/// A point on the monotonic clock, in nanoseconds since an unspecified origin (boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    pub fn now() -> Stamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // CLOCK_MONOTONIC cannot fail with a valid pointer; were it to, the zeroed value gives
        // a stamp at the origin and at worst one wrong latency, never a panic.
        // SAFETY: `ts` is a valid, writable timespec for the call's duration.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Stamp((ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
    }

    /// Nanoseconds from `self` to now (0 if the clock reads earlier, which it should not).
    pub fn elapsed_ns(self) -> u64 {
        Stamp::now().0.saturating_sub(self.0)
    }

    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(self.elapsed_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_instant() {
        let i = std::time::Instant::now();
        let s = Stamp::now();
        std::thread::sleep(Duration::from_millis(20));
        let by_stamp = s.elapsed();
        let by_instant = i.elapsed();
        assert!(by_stamp >= Duration::from_millis(20), "{by_stamp:?}");
        // Read in the opposite order, so the stamp's span lies within the Instant's.
        assert!(by_stamp <= by_instant, "{by_stamp:?} > {by_instant:?}");
        assert!(Stamp::now() >= s);
    }
}
