//! Benchmarks of the placement hot path: key parsing, hashing and ring lookup.

use criterion::{criterion_group, criterion_main, Criterion};
use shardgate::config::{default_vnodes, KeyType, ShardConfig};
use shardgate::ring::{Key, Ring};
use std::hint::black_box;

fn ring(shards: usize) -> Ring {
    let shards: Vec<ShardConfig> = (0..shards)
        .map(|i| ShardConfig {
            name: format!("s{i}"),
            url: String::new(),
            weight: 1,
            points: None,
        })
        .collect();
    Ring::new(&shards, default_vnodes())
}

fn lookup(c: &mut Criterion) {
    for n in [3, 16] {
        let ring = ring(n);
        // Varying hashes, so the benchmark does not measure one cached search path.
        let hashes: Vec<u64> = (0..1024i64).map(|k| Key::Int(k).hash()).collect();
        let mut i = 0;
        c.bench_function(&format!("ring lookup, {n} shards"), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                ring.shard_for_hash(black_box(hashes[i]))
            })
        });
    }
}

fn keys(c: &mut Criterion) {
    c.bench_function("Key::from_text Int", |b| {
        b.iter(|| Key::from_text(KeyType::Int, black_box("1234567890")))
    });
    c.bench_function("Key::from_text Uuid", |b| {
        b.iter(|| {
            Key::from_text(
                KeyType::Uuid,
                black_box("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            )
        })
    });
    let int = Key::Int(1_234_567_890);
    c.bench_function("Key::hash Int", |b| b.iter(|| black_box(&int).hash()));
    let text = Key::Text("user-00012345@example.com".into());
    c.bench_function("Key::hash Text (25 bytes)", |b| {
        b.iter(|| black_box(&text).hash())
    });
    let ring = ring(3);
    c.bench_function("Key::from_text Int + hash + lookup, 3 shards", |b| {
        b.iter(|| {
            Key::from_text(KeyType::Int, black_box("1234567890")).map(|k| ring.shard_for_key(&k))
        })
    });
}

criterion_group!(benches, lookup, keys);
criterion_main!(benches);
