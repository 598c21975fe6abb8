//! Hot-key sketch tests: accuracy and memory on a million distinct keys, decay and rescaling,
//! Space-Saving's bounds (including hits spilled to other stripes), and concurrent hits.

use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

fn int(i: i64) -> (Key, u64) {
    let k = Key::Int(i);
    let h = k.hash();
    (k, h)
}

fn text(s: String) -> (Key, u64) {
    let k = Key::Text(s);
    let h = k.hash();
    (k, h)
}

/// An int key whose home stripe (of `stripes`) is `home`, searching upwards from `from`.
fn int_homed(home: usize, stripes: usize, from: i64) -> (Key, u64) {
    (from..)
        .map(int)
        .find(|(_, h)| home_of(*h, stripes) == home)
        .unwrap()
}

#[test]
fn exact_while_under_capacity() {
    let hk = HotKeys::new(16, 2, 60.0);
    let (t, th) = text("tenant-α".into());
    for _ in 0..25 {
        hk.hit(&t, th, 0);
    }
    for i in 0..10 {
        let (k, h) = int(i);
        for _ in 0..=i {
            hk.hit(&k, h, 0);
        }
    }
    let top = hk.top(100, 0);
    assert_eq!(top.len(), 11);
    assert_eq!(top[0].key, t);
    assert_eq!(top[0].hash, th);
    assert_eq!((top[0].hits, top[0].error), (25.0, 0.0));
    for (rank, e) in top[1..].iter().enumerate() {
        let i = 9 - rank as i64;
        assert_eq!(e.key, Key::Int(i));
        assert_eq!(e.hash, Key::Int(i).hash());
        assert_eq!((e.hits, e.error), ((i + 1) as f64, 0.0));
    }
    assert_eq!(hk.total(0), 25.0 + 55.0);
    assert_eq!(hk.top(3, 0).len(), 3);
    assert_eq!(hk.top(3, 0)[2].key, Key::Int(8));
    assert!(hk.top(0, 0).is_empty());
    let empty = HotKeys::new(4, 3, 1.0);
    assert!(empty.top(10, 5).is_empty());
    assert_eq!(empty.total(5), 0.0);
}

#[test]
fn text_keys_are_cut_for_display_but_identified_by_hash() {
    let hk = HotKeys::new(8, 1, 60.0);
    let long = format!("a{}", "é".repeat(40));
    let (a, ah) = text(format!("{long}-first"));
    let (b, bh) = text(format!("{long}-second"));
    hk.hit(&a, ah, 0);
    hk.hit(&b, bh, 0);
    hk.hit(&b, bh, 0);
    let top = hk.top(10, 0);
    assert_eq!(top.len(), 2);
    // 64 falls inside an 'é': the cut is at 63.
    let shown = Key::Text(long[..63].to_owned());
    assert_eq!((&top[0].key, top[0].hash, top[0].hits), (&shown, bh, 2.0));
    assert_eq!((&top[1].key, top[1].hash, top[1].hits), (&shown, ah, 1.0));
    assert_eq!(display_text("short"), "short");
    assert_eq!(display_text(&"x".repeat(64)).len(), 64);
    assert_eq!(display_text(&"x".repeat(65)).len(), 64);
}

/// Memory must stay below this whatever the number of distinct keys, for 8 stripes of 128.
const MEMORY_BOUND: usize = 256 * 1024;

#[test]
fn thirty_percent_key_among_a_million_distinct() {
    let hk = HotKeys::new(128, 8, 60.0);
    // 100 bytes of multi-byte text: stored cut to 64 bytes (32 chars).
    let (hot, hot_hash) = text("é".repeat(50));
    let mut hot_hits = 0u64;
    let mut hits = 0u64;
    let mut memory = Vec::new();
    for i in 0..1_000_000i64 {
        // 100 seconds in all: decay is at work, evenly for every key.
        let now = i as u64 / 10_000;
        let (k, h) = if i % 2 == 0 {
            int(i)
        } else {
            text(format!("customer-{i:07}-{}", "x".repeat(90)))
        };
        hk.hit(&k, h, now);
        hits += 1;
        // 3 hot hits per 7 distinct keys: 30 % of all hits.
        if i % 7 < 3 {
            hk.hit(&hot, hot_hash, now);
            hot_hits += 1;
            hits += 1;
        }
        if [1_000, 100_000, 999_999].contains(&i) {
            memory.push(hk.memory_bytes());
        }
    }
    assert!((hot_hits as f64 / hits as f64 - 0.3).abs() < 1e-4);
    let now = 99;
    let top = hk.top(5, now);
    assert_eq!(top[0].hash, hot_hash);
    assert_eq!(top[0].key, Key::Text("é".repeat(32)));
    let share = top[0].hits / hk.total(now);
    assert!((share - 0.30).abs() < 0.01, "share {share}");
    // The runner-up is noise: a distinct key, far below the hot one.
    assert!(top[1].hits < top[0].hits / 100.0, "{top:?}");
    for (at, bytes) in [1_000, 100_000, 1_000_000].iter().zip(&memory) {
        assert!(*bytes < MEMORY_BOUND, "{bytes} bytes after {at} keys");
    }
    // Full after the first thousands: it does not grow from there.
    assert!(memory[2] <= memory[1] + memory[1] / 4, "{memory:?}");
}

/// Σ 2^((t - now) / h) over the hit times: what a key's decayed count must be.
fn decayed(times: impl Iterator<Item = u64>, now: u64, h: f64) -> f64 {
    times.map(|t| ((t as f64 - now as f64) / h).exp2()).sum()
}

#[test]
fn decay_fades_yesterdays_key() {
    let hk = HotKeys::new(16, 2, 60.0);
    let (a, ah) = int(1);
    let (b, bh) = text("b".into());
    let times = |from: u64| (0..1000).map(move |i| from + i / 100);
    for t in times(0) {
        hk.hit(&a, ah, t);
    }
    let before = hk.top(2, 10);
    assert_eq!(before[0].key, a);
    for t in times(600) {
        hk.hit(&b, bh, t);
    }
    let top = hk.top(2, 610);
    assert_eq!(top[0].key, b);
    assert_eq!(top[1].key, a);
    assert!(top[1].hits < 0.01 * top[0].hits, "{top:?}");
    let want_a = decayed(times(0), 610, 60.0);
    let want_b = decayed(times(600), 610, 60.0);
    assert!((top[0].hits / want_b - 1.0).abs() < 1e-9, "{top:?}");
    assert!((top[1].hits / want_a - 1.0).abs() < 1e-9, "{top:?}");
    assert!((hk.total(610) / (want_a + want_b) - 1.0).abs() < 1e-9);
    // Read later, everything has halved once per minute.
    let later = hk.top(1, 670);
    assert!((later[0].hits / (want_b / 2.0) - 1.0).abs() < 1e-9);
}

#[test]
fn rescaling_keeps_values_finite_and_ordered() {
    // A half-life of one second over 10,000 seconds: 250 rescales of every stripe.
    let hk = HotKeys::new(8, 2, 1.0);
    let (steady, sh) = int(-1);
    let (other, oh) = int(-2);
    for t in 0..=10_000u64 {
        hk.hit(&steady, sh, t);
        hk.hit(&steady, sh, t);
        hk.hit(&other, oh, t);
        let (noise, nh) = int(t as i64);
        hk.hit(&noise, nh, t);
        if t > 0 && (t % 997 == 0 || t == 10_000) {
            let top = hk.top(3, t);
            let geometric = 2.0 * (1.0 - (-(t as f64 + 1.0)).exp2());
            assert_eq!((&top[0].key, &top[1].key), (&steady, &other), "t={t}");
            assert!((top[0].hits - 2.0 * geometric).abs() < 1e-9, "{t}: {top:?}");
            assert!((top[1].hits - geometric).abs() < 1e-9, "{t}: {top:?}");
            assert!(top
                .iter()
                .all(|e| e.hits.is_finite() && e.error.is_finite()));
            assert!((hk.total(t) - 4.0 * geometric).abs() < 1e-9);
        }
    }
    // Long after: everything has decayed to nothing, but stays a number.
    let far = hk.top(3, 20_000);
    assert!(far.iter().all(|e| e.hits == 0.0 && e.error == 0.0));
    assert_eq!(hk.total(20_000), 0.0);
    // A hit after the gap counts fully, and reading before a landmark stays finite.
    let (fresh, fh) = int(7);
    hk.hit(&fresh, fh, 20_000);
    assert_eq!(hk.top(1, 20_000)[0].key, fresh);
    assert_eq!(hk.top(1, 20_000)[0].hits, 1.0);
    assert!(hk.top(3, 0).iter().all(|e| e.hits.is_finite()));
    assert!(hk.total(0).is_finite());
}

/// Checks Space-Saving's guarantees against true counts.
fn check_bounds(hk: &HotKeys, truth: &HashMap<u64, u64>, capacity: usize, stripes: usize) {
    let top = hk.top(usize::MAX, 0);
    let reported: HashMap<u64, &HotKey> = top.iter().map(|e| (e.hash, e)).collect();
    for e in &top {
        let t = truth.get(&e.hash).copied().unwrap_or(0) as f64;
        assert!(e.hits >= t && e.hits - e.error <= t, "{e:?} true {t}");
    }
    // Any key hotter than its stripe's share of the stream over K is tracked.
    let mut per_stripe = vec![0u64; stripes];
    for (&h, &n) in truth {
        per_stripe[home_of(h, stripes)] += n;
    }
    for (&h, &n) in truth {
        if n * capacity as u64 > per_stripe[home_of(h, stripes)] {
            assert!(reported.contains_key(&h), "a key with {n} hits is missing");
        }
    }
}

#[test]
fn space_saving_bounds_on_a_skewed_stream() {
    for (capacity, stripes) in [(64, 1), (32, 4)] {
        let hk = HotKeys::new(capacity, stripes, 60.0);
        let mut rng = StdRng::seed_from_u64(42);
        let mut truth: HashMap<u64, u64> = HashMap::new();
        for _ in 0..200_000 {
            // Log-uniform over 1..100,000: density 1/x, a Zipf-like head and a long tail.
            let x = (rng.random::<f64>() * 100_000f64.ln()).exp() as i64;
            let (k, h) = int(x);
            hk.hit(&k, h, 0);
            *truth.entry(h).or_default() += 1;
        }
        check_bounds(&hk, &truth, capacity, stripes);
        assert_eq!(hk.total(0), 200_000.0);
        let top = hk.top(3, 0);
        assert_eq!(top[0].key, Key::Int(1), "{top:?}");
    }
}

#[test]
fn spilled_hits_are_merged_and_bounded() {
    let hk = HotKeys::new(4, 2, 60.0);
    let (k, h) = int_homed(0, 2, 0);
    {
        // Home busy: the hits go to stripe 1.
        let _busy = lock(&hk.stripes[0].0);
        for _ in 0..5 {
            hk.hit(&k, h, 0);
        }
    }
    for _ in 0..3 {
        hk.hit(&k, h, 0);
    }
    let top = hk.top(10, 0);
    assert_eq!((top[0].hash, top[0].hits, top[0].error), (h, 8.0, 0.0));
    // Flood stripe 1 with its own keys until k's 5 hits there are evicted.
    for i in 0..100 {
        let (other, oh) = int_homed(1, 2, 1000 + 10 * i);
        hk.hit(&other, oh, 0);
    }
    assert!(!lock(&hk.stripes[1].0).index.contains_key(&h));
    let mut truth = HashMap::from([(h, 8)]);
    for i in 0..100 {
        *truth.entry(int_homed(1, 2, 1000 + 10 * i).1).or_default() += 1;
    }
    let e = hk
        .top(usize::MAX, 0)
        .into_iter()
        .find(|e| e.hash == h)
        .unwrap();
    assert!(e.hits >= 8.0 && e.hits - e.error <= 8.0, "{e:?}");
    check_bounds(&hk, &truth, 4, 2);
    assert_eq!(hk.total(0), 108.0);
}

#[test]
fn eviction_reuses_text_buffers() {
    let hk = HotKeys::new(32, 1, 60.0);
    let key = |i: usize| text(format!("{i:0>70}"));
    for i in 0..1000 {
        let (k, h) = key(i);
        hk.hit(&k, h, 0);
    }
    let buffers = |hk: &HotKeys| {
        let s = lock(&hk.stripes[0].0);
        let mut v: Vec<(usize, usize)> = s
            .slots
            .iter()
            .map(|s| match &s.key {
                Key::Text(t) => (t.as_ptr() as usize, t.capacity()),
                other => panic!("{other:?}"),
            })
            .collect();
        v.sort_unstable();
        (v, s.heap.capacity(), s.index.capacity())
    };
    let before = buffers(&hk);
    assert!(before.0.iter().all(|&(_, cap)| cap == MAX_TEXT));
    let memory = hk.memory_bytes();
    for i in 1000..50_000 {
        let (k, h) = key(i);
        hk.hit(&k, h, 0);
    }
    assert_eq!(buffers(&hk), before);
    assert_eq!(hk.memory_bytes(), memory);
}

#[test]
fn concurrent_hits_conserve_the_total() {
    const PER_THREAD: i64 = 50_000;
    let hk = HotKeys::new(64, 4, 60.0);
    let (hot, hot_hash) = int(-1);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (hk, hot) = (&hk, &hot);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    if i % 2 == 0 {
                        hk.hit(hot, hot_hash, 0);
                    } else {
                        let (k, h) = int(t * PER_THREAD + i);
                        hk.hit(&k, h, 0);
                    }
                }
            });
        }
    });
    assert_eq!(hk.total(0), 4.0 * PER_THREAD as f64);
    let top = hk.top(2, 0);
    assert_eq!(top[0].key, hot);
    let want = 2.0 * PER_THREAD as f64;
    assert!(
        top[0].hits >= want && top[0].hits - top[0].error <= want,
        "{top:?}"
    );
    assert!(top[1].hits < want / 20.0, "{top:?}");
}

#[test]
#[should_panic(expected = "half-life")]
fn rejects_a_zero_half_life() {
    HotKeys::new(4, 1, 0.0);
}

#[test]
fn stripes_and_map_use_independent_bits() {
    // Keys sharing a stripe must still spread over the map's buckets (low bits) and tags (top
    // 7 bits); stripes must be balanced.
    let stripes = 6;
    let mut per_stripe = vec![0usize; stripes];
    let mut low = vec![[false; 256]; stripes];
    let mut tag = vec![[false; 128]; stripes];
    for i in 0..60_000 {
        let h = Key::Int(i).hash();
        let s = home_of(h, stripes);
        per_stripe[s] += 1;
        low[s][(h & 255) as usize] = true;
        tag[s][(h >> 57) as usize] = true;
    }
    for s in 0..stripes {
        assert!(per_stripe[s].abs_diff(10_000) < 500, "{per_stripe:?}");
        assert!(low[s].iter().all(|&seen| seen));
        assert!(tag[s].iter().all(|&seen| seen));
    }
}
