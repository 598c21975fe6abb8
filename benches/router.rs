//! Router benchmarks: planning a point SELECT and a 10-row INSERT, resolving routes, and a
//! session's plan cache (by text, and by shape for statements that differ only in constants).

use criterion::{criterion_group, criterion_main, Criterion};
use shardgate::catalog::Catalog;
use shardgate::config::{Config, KeyType, ProxyConfig, ShardConfig, TableConfig};
use shardgate::ring::Ring;
use shardgate::router::cache::PlanCache;
use shardgate::router::{plan, route};
use std::hint::black_box;

fn config() -> Config {
    Config {
        proxy: ProxyConfig {
            listen: "127.0.0.1:0".into(),
            max_client_connections: 10,
            pool_size: 1,
            database: None,
            vnodes: 256,
            connect_timeout_ms: 1,
            pool_timeout_ms: 1,
            gather_memory_mb: 256,
            recovery_interval_ms: 10_000,
            rebalance_step_rows: 25_000,
            max_user_connections: 0,
            client_idle_timeout_ms: 0,
            idle_transaction_timeout_ms: 0,
            statement_timeout_ms: 0,
            workers: 0,
            auto_prepare: true,
        },
        auth: None,
        shards: (0..4)
            .map(|i| ShardConfig {
                name: format!("s{i}"),
                url: format!("postgres://127.0.0.1/s{i}"),
                weight: 1,
                points: None,
            })
            .collect(),
        tables: vec![TableConfig {
            name: "users".into(),
            shard_key: Some("id".into()),
            key_type: Some(KeyType::Int),
            reference: false,
        }],
        metrics: None,
        stats: Default::default(),
        rate_limits: vec![],
        tls: None,
    }
}

fn benches(c: &mut Criterion) {
    let config = config();
    let catalog = Catalog::from_config(&config);
    let ring = Ring::new(&config.shards, config.proxy.vnodes);
    let point = "SELECT id, name, email FROM users WHERE id = 42";
    let rows: Vec<String> = (0..10)
        .map(|i| format!("({i}, 'name {i}', 'u{i}@example.com')"))
        .collect();
    let insert = format!(
        "INSERT INTO users (id, name, email) VALUES {}",
        rows.join(", ")
    );

    c.bench_function("plan point select", |b| {
        b.iter(|| plan(black_box(point), &catalog))
    });
    c.bench_function("plan 10-row insert", |b| {
        b.iter(|| plan(black_box(&insert), &catalog))
    });
    let point_plan = plan(point, &catalog).statements.remove(0);
    c.bench_function("route point select", |b| {
        b.iter(|| route(black_box(&point_plan), &ring))
    });
    let insert_plan = plan(&insert, &catalog).statements.remove(0);
    c.bench_function("route 10-row insert", |b| {
        b.iter(|| route(black_box(&insert_plan), &ring))
    });

    // What a session does per simple Query: the same text again (prepared-style clients, or
    // the extended protocol's Parse), and a point SELECT with a new key each time (pgbench -S
    // -M simple): its shape is known, so it is routed by the literal without a parse.
    let mut cache = PlanCache::new(256, 0);
    cache.plan(point, &catalog);
    c.bench_function("plan cache hit, same text", |b| {
        b.iter(|| cache.plan(black_box(point), &catalog))
    });
    let texts: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "SELECT id, name, email FROM users WHERE id = {}",
                1000 + i * 7919
            )
        })
        .collect();
    let mut cache = PlanCache::new(256, 0);
    // The first of the shape makes its plan; the rest are routed by it.
    assert!(cache.routed(&texts[0], &catalog, &ring).is_none());
    assert!(cache.routed(&texts[1], &catalog, &ring).is_some());
    let mut i = 0;
    c.bench_function("shape hit, new key: lex + route", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            cache.routed(black_box(&texts[i]), &catalog, &ring)
        })
    });
    let mut i = 0;
    c.bench_function("plan cache miss, new key: parse + plan", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            plan(black_box(&texts[i]), &catalog)
        })
    });
}

criterion_group!(router, benches);
criterion_main!(router);
