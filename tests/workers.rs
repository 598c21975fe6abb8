//! Worker threads (`[proxy] workers`): clients are handed to the workers in turn, each worker
//! borrows from its own share of every shard's pool first, and together they never open more
//! than `pool_size` connections to a shard, nor leave a client waiting while another worker's
//! share has a connection to give.

mod support;

use shardgate::ring::ShardId;
use std::time::Duration;
use support::proxy::{value, Proxy};
use support::Shards;

const TABLES: &str = "[[tables]]\nname = \"kv\"\nshard_key = \"k\"\n";

#[tokio::test]
async fn a_client_waits_for_a_connection_any_worker_returns() {
    let shards = Shards::databases(1).await;
    let opts = "pool_size = 2\nworkers = 2\npool_timeout_ms = 20000";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    assert_eq!(proxy.ctx.backend.workers(), 2);
    // Handed out in turn: a and c to the first worker, b to the second.
    let a = proxy.client().await;
    let b = proxy.client().await;
    let c = proxy.client().await;
    for t in [&a, &b] {
        t.simple_query("BEGIN").await.unwrap();
        assert_eq!(value(t, "SELECT 1").await, "1");
    }
    // Each worker's share (one connection) is held by a transaction.
    let pools = proxy.ctx.backend.pool_status(ShardId(0));
    assert_eq!((pools.max, pools.open, pools.idle), (2, 2, 0));
    let waiting = tokio::spawn(async move { value(&c, "SELECT 42").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a third connection was opened");
    // b's connection goes back to the second worker's share; c, on the first, takes it while
    // a still holds the first worker's.
    b.simple_query("COMMIT").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client got the connection b returned")
        .unwrap();
    assert_eq!(got, "42");
    assert_eq!(value(&a, "SELECT 2").await, "2");
    a.simple_query("COMMIT").await.unwrap();
    assert_eq!(proxy.ctx.backend.pool_status(ShardId(0)).open, 2);
}

#[tokio::test]
async fn a_pool_shrunk_below_the_workers_still_serves_every_worker() {
    let shards = Shards::databases(1).await;
    let opts = "pool_size = 2\nworkers = 2\npool_timeout_ms = 20000";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    let clients = [proxy.client().await, proxy.client().await];
    for c in &clients {
        assert_eq!(value(c, "SELECT 1").await, "1");
    }
    // As RELOAD does for `pool_size = 1`: the second worker's share is none.
    proxy.ctx.backend.resize_pools(1);
    assert_eq!(proxy.ctx.backend.pool_status(ShardId(0)).max, 1);
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(5), value(c, "SELECT 7"))
                .await
                .unwrap_or_else(|_| panic!("client {i} waited in round {round}"));
            assert_eq!(got, "7");
        }
    }
    assert!(proxy.ctx.backend.pool_status(ShardId(0)).open <= 1);
}

#[tokio::test]
async fn workers_are_capped_by_the_pool_size() {
    let shards = Shards::databases(1).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 1\nworkers = 4", TABLES).await;
    assert_eq!(proxy.ctx.backend.workers(), 1);
    let c = proxy.client().await;
    assert_eq!(value(&c, "SELECT 3").await, "3");
}

#[tokio::test]
async fn connections_on_loan_when_the_pool_shrinks_close_as_they_come_back() {
    let shards = Shards::databases(1).await;
    let opts = "pool_size = 4\nworkers = 2\npool_timeout_ms = 20000";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(proxy.client().await);
    }
    for c in &clients {
        c.simple_query("BEGIN").await.unwrap();
        assert_eq!(value(c, "SELECT 1").await, "1");
    }
    let pools = proxy.ctx.backend.pool_status(ShardId(0));
    assert_eq!((pools.max, pools.open, pools.idle), (4, 4, 0));
    // As RELOAD does for `pool_size = 2`: every connection is on loan, none can go now.
    proxy.ctx.backend.resize_pools(2);
    assert_eq!(proxy.ctx.backend.pool_status(ShardId(0)).open, 4);
    for c in &clients {
        c.simple_query("COMMIT").await.unwrap();
    }
    let pools = proxy.ctx.backend.pool_status(ShardId(0));
    assert_eq!((pools.max, pools.open, pools.idle), (2, 2, 2));
    // The pool still serves every client within its new size.
    for c in &clients {
        assert_eq!(value(c, "SELECT 5").await, "5");
    }
    assert!(proxy.ctx.backend.pool_status(ShardId(0)).open <= 2);
}

#[tokio::test]
async fn an_abandoned_checkout_gives_back_its_place_in_the_pool() {
    let shards = Shards::databases(1).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 2\nworkers = 1", TABLES).await;
    let backend = &proxy.ctx.backend;
    let mut held = Vec::new();
    while backend.pool_status(ShardId(0)).idle > 0 {
        held.push(backend.checkout(ShardId(0)).await.unwrap());
    }
    let before = backend.pool_status(ShardId(0)).open;
    assert!(before < 2, "no room left to connect");
    // Dropped while it connects, as when its client goes away or its statement times out.
    for _ in 0..5 {
        let abandoned = tokio::time::timeout(Duration::ZERO, backend.checkout(ShardId(0))).await;
        assert!(abandoned.is_err(), "connected within one poll");
        assert_eq!(backend.pool_status(ShardId(0)).open, before);
    }
    held.push(backend.checkout(ShardId(0)).await.unwrap());
    assert_eq!(backend.pool_status(ShardId(0)).open, before + 1);
}
