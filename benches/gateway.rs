//! Benchmarks of the rate-limit check on the statement path: one bucket's take, a session's
//! admit over its rules, and two threads on one shared bucket.

use criterion::{criterion_group, criterion_main, Criterion};
use shardgate::config::RateLimitConfig;
use shardgate::gateway::{Bucket, Limiter, SessionLimits};
use std::hint::black_box;
use std::sync::Arc;

fn rule(per: &str) -> RateLimitConfig {
    RateLimitConfig {
        per: per.into(),
        // High enough that nothing is refused: the admitted path is the one measured.
        rate: 1e9,
        burst: 1_000_000,
        overrides: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let b = Bucket::new(1e9, 1_000_000, 0);
    let mut now = 0u64;
    c.bench_function("bucket take", |bench| {
        bench.iter(|| {
            now += 1;
            black_box(b.take(1, now)).ok()
        })
    });

    let none = Limiter::new(&[]);
    let three = Limiter::new(&[rule("user"), rule("client_ip"), rule("database")]);
    let with_table = Limiter::new(&[rule("user"), rule("table")]);
    let ip = "127.0.0.1".parse().unwrap();
    let mut s = SessionLimits::new("app", "app", ip);
    c.bench_function("admit: no rules", |bench| {
        bench.iter(|| black_box(s.admit(&none, 1, std::iter::empty())).ok())
    });
    let mut s = SessionLimits::new("app", "app", ip);
    c.bench_function("admit: user, client_ip, database", |bench| {
        bench.iter(|| black_box(s.admit(&three, 1, std::iter::empty())).ok())
    });
    let mut s = SessionLimits::new("app", "app", ip);
    c.bench_function("admit: user and table", |bench| {
        bench.iter(|| black_box(s.admit(&with_table, 1, ["users"].into_iter())).ok())
    });

    // Two threads hammering one bucket: the cost of sharing it (one cache line bouncing).
    let shared = Arc::new(Bucket::new(1e9, 1_000_000, 0));
    c.bench_function("bucket take, 2 threads sharing", |bench| {
        bench.iter_custom(|iters| {
            let other = shared.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            let t = std::thread::spawn(move || {
                let mut i = 0u64;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let _ = other.take(1, i);
                }
            });
            let began = std::time::Instant::now();
            for i in 0..iters {
                let _ = black_box(shared.take(1, i));
            }
            let took = began.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            t.join().unwrap();
            took
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
