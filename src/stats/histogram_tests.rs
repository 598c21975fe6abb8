//! Histogram tests: bucket layout, quantile error, Prometheus counts, window and total arithmetic.

use super::*;

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

/// The stated error: 1/16 of the value, or 0.5 µs below 8 µs.
fn within(got: Duration, want: Duration) -> bool {
    let (g, w) = (got.as_secs_f64(), want.as_secs_f64());
    (g - w).abs() <= (w / 16.0).max(0.5e-6) + 1e-15
}

#[test]
fn buckets_tile_the_range() {
    // Every regular bucket starts where the previous one ends, and bucket_of agrees.
    let mut end = 0u64;
    for i in 0..OVERFLOW {
        let (low, width) = bucket_range(i);
        assert_eq!(low, end, "bucket {i}");
        assert!(width == 1 || width * SUB <= low, "bucket {i} is too wide");
        assert_eq!(bucket_of(low), i);
        assert_eq!(bucket_of(low + width - 1), i);
        end = low + width;
    }
    assert_eq!(end, 1 << TOP_EXP);
    assert_eq!(bucket_of(end), OVERFLOW);
    assert_eq!(bucket_of(u64::MAX), OVERFLOW);
}

#[test]
fn empty_has_no_quantile() {
    let h = Histogram::new();
    let s = h.snapshot();
    assert_eq!(s.count(), 0);
    assert_eq!(s.sum_seconds(), 0.0);
    for q in [0.0, 0.5, 1.0] {
        assert_eq!(s.quantile(q), None);
        assert_eq!(Snapshot::default().quantile(q), None);
    }
}

#[test]
fn uniform_quantiles_within_the_stated_error() {
    let h = Histogram::default();
    for v in 1..=1000 {
        h.record(us(v));
    }
    let s = h.snapshot();
    assert_eq!(s.count(), 1000);
    assert!((s.sum_seconds() - 500_500e-6).abs() < 1e-9);
    for (q, want) in [(0.5, 500), (0.9, 900), (0.99, 990), (0.001, 1), (1.0, 1000)] {
        let got = s.quantile(q).unwrap();
        assert!(within(got, us(want)), "q={q}: {got:?}");
    }
    // The rank is ceil(q * count): q=0 is the smallest observation, out of range is clamped.
    assert_eq!(s.quantile(0.0), s.quantile(0.001));
    assert_eq!(s.quantile(-3.0), s.quantile(0.0));
    assert_eq!(s.quantile(7.0), s.quantile(1.0));
    assert_eq!(s.quantile(f64::NAN), s.quantile(0.0));
}

#[test]
fn quantile_error_bound_holds_everywhere() {
    // One observation at a time over a geometric sweep with odd nanoseconds: the single
    // observation is every quantile, so the answer must be within the bound of it.
    let mut ns = 1u64;
    while ns < (1u64 << TOP_EXP) * 1000 {
        let h = Histogram::new();
        let d = Duration::from_nanos(ns);
        h.record(d);
        let got = h.snapshot().quantile(0.5).unwrap();
        let err = (got.as_nanos() as f64 - ns as f64).abs();
        assert!(
            err <= ns as f64 / 16.0 || err <= 500.0,
            "{d:?} reported as {got:?}"
        );
        ns = ns * 9 / 7 + 13;
    }
}

#[test]
fn exponential_like_distribution() {
    // A long-tailed mix: the tail quantiles must hold the same relative error.
    let h = Histogram::new();
    let mut values = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..100_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let v = (-(1.0 - u).ln() * 2_000.0) as u64 + 1;
        values.push(v);
        h.record(us(v));
    }
    values.sort_unstable();
    let s = h.snapshot();
    for q in [0.5, 0.9, 0.99, 0.999] {
        let want = values[(q * values.len() as f64).ceil() as usize - 1];
        let got = s.quantile(q).unwrap();
        assert!(within(got, us(want)), "q={q}: {got:?} vs {want}");
    }
}

#[test]
fn cumulative_is_exact_and_monotone() {
    let h = Histogram::new();
    // Exactly on a bound counts as under it; a nanosecond more does not.
    h.record(us(16));
    h.record(us(16) + Duration::from_nanos(1));
    h.record(Duration::ZERO);
    h.record(us(1000));
    h.record(Duration::from_secs(40));
    let s = h.snapshot();
    let c = s.cumulative();
    assert_eq!(c.len(), 23);
    assert_eq!(c[0], (16e-6, 2));
    assert_eq!(c[1], (32e-6, 3));
    assert_eq!(c.last(), Some(&(f64::INFINITY, 5)));
    let b25 = c[c.len() - 2];
    assert!((b25.0 - 33.554432).abs() < 1e-12);
    assert_eq!(b25.1, 4);
    for w in c.windows(2) {
        assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{w:?}");
    }
    // Against a brute-force count over many values.
    let h = Histogram::new();
    let mut all = Vec::new();
    for i in 0..5000u64 {
        all.push((i * i * 7919 + i * 131) % 40_000_000_000);
    }
    for exp in 0..36 {
        all.extend([(1000 << exp) - 1, 1000 << exp, (1000 << exp) + 1]);
    }
    for &ns in &all {
        h.record(Duration::from_nanos(ns));
    }
    for (le, n) in h.snapshot().cumulative() {
        let le_ns = if le.is_finite() {
            (le * 1e9).round() as u64
        } else {
            u64::MAX
        };
        let want = all.iter().filter(|&&ns| ns <= le_ns).count() as u64;
        assert_eq!(n, want, "le={le}");
    }
    let d = Snapshot::default().cumulative();
    assert_eq!(d.len(), 23);
    assert!(d.iter().all(|&(_, n)| n == 0));
}

#[test]
fn huge_and_zero_durations() {
    let h = Histogram::new();
    h.record(Duration::ZERO);
    h.record(Duration::MAX);
    h.record(Duration::from_secs(3 * 3600));
    let s = h.snapshot();
    assert_eq!(s.count(), 3);
    // Zero lands in the first bucket, (0, 1] µs, reported as its middle.
    assert_eq!(s.quantile(0.0), Some(Duration::from_nanos(500)));
    let top = Duration::from_micros(1 << TOP_EXP);
    assert_eq!(s.quantile(0.5), Some(top));
    assert_eq!(s.quantile(1.0), Some(top));
    assert!(s.sum_seconds() > 1e10 && s.sum_seconds().is_finite());
    assert_eq!(s.cumulative()[0].1, 1);
    assert_eq!(s.cumulative().last().unwrap().1, 3);
}

#[test]
fn since_and_add() {
    let h = Histogram::new();
    for v in [10, 100, 1000] {
        h.record(us(v));
    }
    let older = h.snapshot();
    for v in [100, 5000, 5000] {
        h.record(us(v));
    }
    let newer = h.snapshot();
    let window = newer.since(&older);
    assert_eq!(window.count(), 3);
    assert!((window.sum_seconds() - 10_100e-6).abs() < 1e-12);
    assert!(within(window.quantile(0.0).unwrap(), us(100)));
    assert!(within(window.quantile(1.0).unwrap(), us(5000)));
    // Reversed, it saturates at zero rather than wrapping.
    let backwards = older.since(&newer);
    assert_eq!(backwards.count(), 0);
    assert_eq!(backwards.sum_seconds(), 0.0);
    assert_eq!(backwards.quantile(0.5), None);
    // Against an empty (default) snapshot: unchanged.
    assert_eq!(newer.since(&Snapshot::default()).count(), 6);

    let mut total = Snapshot::default();
    total.add(&older);
    total.add(&window);
    assert_eq!(total.count(), newer.count());
    assert!((total.sum_seconds() - newer.sum_seconds()).abs() < 1e-12);
    assert_eq!(total.cumulative(), newer.cumulative());
    for q in [0.0, 0.3, 0.5, 0.8, 1.0] {
        assert_eq!(total.quantile(q), newer.quantile(q));
    }
    total.add(&Snapshot::default());
    assert_eq!(total.count(), 6);
}

#[test]
fn concurrent_records_are_all_counted() {
    let h = Histogram::new();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let h = &h;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    h.record(us(1 + (i * 7 + t) % 3000));
                }
            });
        }
    });
    let s = h.snapshot();
    assert_eq!(s.count(), 40_000);
    assert_eq!(s.cumulative().last().unwrap().1, 40_000);
}
