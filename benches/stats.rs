//! Benchmarks of the statistics hot paths: recording a latency, counting a routed key.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shardgate::ring::Key;
use shardgate::stats::histogram::Histogram;
use shardgate::stats::hotkeys::HotKeys;
use shardgate::stats::stamp::Stamp;
use shardgate::stats::{RouteKind, Stats};
use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Entries per stripe, stripes, half-life: what the proxy uses (stats/mod.rs).
fn sketch() -> HotKeys {
    HotKeys::new(64, 8, 60.0)
}

/// A coarse clock as a caller would pass it (unix seconds), ticking every 2^16 hits.
fn now(i: usize) -> u64 {
    1_700_000_000 + (i >> 16) as u64
}

/// Keys and their hashes, precomputed so that generating them is not measured.
fn stream(len: usize, mut make: impl FnMut(&mut StdRng) -> Key) -> Vec<(Key, u64)> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..len)
        .map(|_| {
            let k = make(&mut rng);
            let h = k.hash();
            (k, h)
        })
        .collect()
}

fn int_uniform(rng: &mut StdRng) -> Key {
    Key::Int(rng.random_range(0..1_000_000))
}

fn int_hot30(rng: &mut StdRng) -> Key {
    if rng.random_bool(0.3) {
        Key::Int(-1)
    } else {
        int_uniform(rng)
    }
}

fn text_uniform(rng: &mut StdRng) -> Key {
    Key::Text(format!(
        "customer-{:07}@example.com",
        rng.random_range(0..1_000_000)
    ))
}

fn histogram(c: &mut Criterion) {
    let h = Histogram::new();
    // Spread over the buckets a proxy sees: 50 µs to about 3 s.
    let values: Vec<Duration> = (0..1024u64)
        .map(|i| Duration::from_nanos(50_000 + i * i * i * 3))
        .collect();
    let mut i = 0;
    c.bench_function("histogram/record", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            h.record(black_box(values[i]))
        })
    });
}

fn hit_bench(c: &mut Criterion, name: &str, keys: &[(Key, u64)]) {
    let hk = sketch();
    let mask = keys.len() - 1;
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (k, h) = &keys[i & mask];
            hk.hit(black_box(k), *h, now(i))
        })
    });
}

fn hotkeys(c: &mut Criterion) {
    let uniform = stream(1 << 20, int_uniform);
    hit_bench(c, "hotkeys/hit_int_uniform_1M", &uniform);
    drop(uniform);
    let hot30 = stream(1 << 20, int_hot30);
    hit_bench(c, "hotkeys/hit_int_hot30", &hot30);
    let text = stream(1 << 18, text_uniform);
    hit_bench(c, "hotkeys/hit_text_uniform", &text);
    drop(text);

    // Per hit as each of two threads sees it while both hit the same sketch.
    let hk = sketch();
    let mask = hot30.len() - 1;
    c.bench_function("hotkeys/contended_2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2usize {
                    let (hk, keys) = (&hk, &hot30);
                    s.spawn(move || {
                        for n in 0..iters as usize {
                            let i = n + t * (mask / 2);
                            let (k, h) = &keys[i & mask];
                            hk.hit(black_box(k), *h, now(n));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });

    let hk = sketch();
    for (i, (k, h)) in hot30.iter().enumerate() {
        hk.hit(k, *h, now(i));
    }
    c.bench_function("hotkeys/top_10 (8 stripes of 64)", |b| {
        b.iter(|| hk.top(10, now(hot30.len())))
    });
}

/// Everything the proxy records for one statement routed by key to one shard, as the session
/// and the shard connection do it: the statement by route and table, its key (shard counter and
/// sketch), the shard's bytes, command tag, request count and latency, the client request's
/// latency, and the two clock reads that time them.
fn per_statement(c: &mut Criterion) {
    let config = shardgate::config::Config::parse(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\
         [[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/db\"\n\
         [[shards]]\nname = \"s1\"\nurl = \"postgres://u@h/db\"\n\
         [[shards]]\nname = \"s2\"\nurl = \"postgres://u@h/db\"\n\
         [[tables]]\nname = \"users\"\nshard_key = \"id\"\n",
    )
    .unwrap();
    let ring = shardgate::ring::Ring::new(&config.shards, config.proxy.vnodes);
    let stats = Stats::new(&config);
    let tables = shardgate::router::TableList::of(["users".into()]);
    for (name, keys) in [
        (
            "stats/per_statement_uniform_1M",
            stream(1 << 16, int_uniform),
        ),
        ("stats/per_statement_hot30", stream(1 << 16, int_hot30)),
    ] {
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                let (key, hash) = &keys[i & (keys.len() - 1)];
                i = i.wrapping_add(1);
                let began = Stamp::now();
                let shard = ring.shard_for_hash(*hash);
                stats.statement(&tables, RouteKind::Single);
                stats.key(&tables, key, *hash);
                stats.keyed(shard);
                let s = stats.shard(shard);
                s.sent_bytes.fetch_add(40, Relaxed);
                s.received_bytes.fetch_add(80, Relaxed);
                s.command(b"SELECT 1\0");
                s.requests.fetch_add(1, Relaxed);
                let elapsed = began.elapsed_ns();
                s.latency.record_ns(elapsed);
                stats.request(RouteKind::Single, black_box(elapsed));
            })
        });
    }
}

criterion_group!(benches, histogram, hotkeys, per_statement);
criterion_main!(benches);
