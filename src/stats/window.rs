//! Recent latency: every shard's histogram is marked every 10 s, and views subtract the oldest
//! mark kept, so they show about the last minute rather than the proxy's whole life.

use super::histogram::Snapshot;
use std::collections::VecDeque;

/// Seconds between marks, and marks kept: the window spans 60 to 70 seconds.
const EVERY: u64 = 10;
const KEEP: usize = 7;

#[derive(Default)]
pub(super) struct Window {
    marks: VecDeque<(u64, Vec<Snapshot>)>,
}

impl Window {
    /// Takes a mark (from `take`) if the last one is `EVERY` seconds old.
    pub fn tick(&mut self, secs: u64, take: impl FnOnce() -> Vec<Snapshot>) {
        if self.marks.back().is_none_or(|(t, _)| secs >= t + EVERY) {
            self.marks.push_back((secs, take()));
            while self.marks.len() > KEEP {
                self.marks.pop_front();
            }
        }
    }

    /// `now` minus shard `i`'s oldest mark (all of `now` before the first mark).
    pub fn recent(&self, i: usize, now: &Snapshot) -> Snapshot {
        match self.marks.front().and_then(|(_, m)| m.get(i)) {
            Some(old) => now.since(old),
            None => now.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram::Histogram;
    use std::time::Duration;

    #[test]
    fn the_window_forgets_what_is_older_than_a_minute() {
        let h = Histogram::new();
        let mut w = Window::default();
        // A slow minute, then fast ones.
        for secs in 0..200u64 {
            let d = if secs < 60 { 100_000 } else { 100 };
            h.record(Duration::from_micros(d));
            w.tick(secs, || vec![h.snapshot()]);
        }
        let recent = w.recent(0, &h.snapshot());
        assert!(
            recent.count() <= 70 && recent.count() >= 60,
            "{}",
            recent.count()
        );
        let p99 = recent.quantile(0.99).unwrap();
        assert!(
            p99 < Duration::from_millis(1),
            "the slow minute is forgotten: {p99:?}"
        );
        let all = h.snapshot().quantile(0.99).unwrap();
        assert!(all > Duration::from_millis(50), "{all:?}");
    }

    #[test]
    fn before_the_first_mark_everything_counts() {
        let h = Histogram::new();
        h.record(Duration::from_millis(3));
        let w = Window::default();
        assert_eq!(w.recent(0, &h.snapshot()).count(), 1);
    }
}
