//! A shard set that changes while the proxy runs, as an online rebalance drives it: a shard is
//! added to the backend (owning nothing yet), then a ring over the new placement is stored, and
//! later a shard is drained (weight 0). Statements follow the ring they were routed with.

mod support;

use bytes::Bytes;
use futures_util::SinkExt;
use shardgate::config::ShardConfig;
use shardgate::ring::{Key, Ring, ShardId};
use std::sync::Arc;
use support::proxy::{rows, value, Proxy};
use support::Shards;
use tokio_postgres::{Client, NoTls};

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";
const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";

async fn console(proxy: &Proxy) -> Client {
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=shardgate",
        proxy.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn shard(name: &str, url: &str, weight: u32) -> ShardConfig {
    ShardConfig {
        name: name.into(),
        url: url.into(),
        weight,
        points: None,
    }
}

/// SHOW SHARDS as (name, weight).
async fn shard_weights(admin: &Client) -> Vec<(String, String)> {
    rows(admin, "SHOW SHARDS")
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[2].clone().unwrap()))
        .collect()
}

async fn copy_in(c: &Client, text: String) -> u64 {
    let sink = c.copy_in("COPY users (id, name) FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(text)).await.unwrap();
    sink.finish().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_added_at_runtime_takes_keys_once_the_ring_places_it() {
    let shards = Shards::databases(3).await;
    let urls = shards.urls();
    let proxy = Proxy::start(&urls[..2], TABLES).await;
    let ctx = proxy.ctx.clone();
    let c = proxy.client().await;
    let admin = console(&proxy).await;
    c.batch_execute(SCHEMA).await.unwrap();
    shards.client(2).await.batch_execute(SCHEMA).await.unwrap();

    // Added, but not placed: it owns nothing and statements for "every shard" skip it.
    let config = ctx.config.load_full();
    let s2 = shard("s2", &urls[2], 1);
    let id = ctx
        .backend
        .add_shard(&s2, &config.proxy, &ctx.stats)
        .unwrap();
    assert_eq!(id, ShardId(2));
    let again = ctx.backend.add_shard(&s2, &config.proxy, &ctx.stats);
    assert_eq!(again.unwrap(), id, "adding by name is idempotent");
    assert_eq!(ctx.backend.len(), 3);
    assert_eq!(ctx.ring.load().members(), [ShardId(0), ShardId(1)]);
    let marker = "INSERT INTO users VALUES (-1, 'only on s2')";
    shards.client(2).await.batch_execute(marker).await.unwrap();
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "0");
    let weights = shard_weights(&admin).await;
    assert_eq!(weights.len(), 3, "{weights:?}");
    assert_eq!(weights[2], ("s2".into(), "0".into()));
    shards
        .client(2)
        .await
        .batch_execute("DELETE FROM users")
        .await
        .unwrap();

    // The switch: the ring over the backend's ids with the new placement's weights.
    let mut placed = config.shards.clone();
    placed.push(s2.clone());
    let vnodes = config.proxy.vnodes;
    let ring = ctx.placement_ring(&placed, vnodes).unwrap();
    // Ids follow the backend, names the config: the same placement as a config of 3 shards.
    let plain = Ring::new(&placed, vnodes);
    for k in (0..2000).map(Key::Int) {
        assert_eq!(ring.shard_for_key(&k), plain.shard_for_key(&k), "{k}");
    }
    let missing = [shard("s9", &urls[2], 1)];
    assert!(ctx.placement_ring(&missing, vnodes).is_err());
    ctx.ring.store(Arc::new(ring));

    let ring = ctx.ring.load_full();
    let on_s2: Vec<i64> = (1..=300)
        .filter(|&k| ring.shard_for_key(&Key::Int(k)) == ShardId(2))
        .collect();
    assert!(!on_s2.is_empty());
    for k in 1..=300i64 {
        c.execute("INSERT INTO users VALUES ($1, 'x')", &[&k])
            .await
            .unwrap();
    }
    let direct = shards.scalar_each("SELECT count(*) FROM users").await;
    assert_eq!(direct[2], on_s2.len() as i64, "{direct:?}");
    assert_eq!(direct.iter().sum::<i64>(), 300);
    // A keyed read of a key placed on s2 finds the row there.
    let k = on_s2[0];
    let got = c
        .query_one("SELECT name FROM users WHERE id = $1", &[&k])
        .await
        .unwrap();
    assert_eq!(got.get::<_, String>(0), "x");
    // The scatter reaches all three: s2's rows are part of the count.
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "300");
    let route = rows(&admin, "SHOW ROUTE SELECT count(*) FROM users").await;
    assert_eq!(route[0][1].as_deref(), Some("all 3 shards"), "{route:?}");
    let weights = shard_weights(&admin).await;
    let names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["s0", "s1", "s2"]);
    assert!(weights.iter().all(|(_, w)| w == "1"), "{weights:?}");

    // Drain s0: it keeps its id and shows weight 0; reads and COPY skip it.
    let drained = [placed[1].clone(), placed[2].clone()];
    ctx.ring
        .store(Arc::new(ctx.placement_ring(&drained, vnodes).unwrap()));
    let left = direct[0];
    assert_eq!(
        value(&c, "SELECT count(*) FROM users").await,
        (300 - left).to_string()
    );
    let text: String = (1001..=1100).map(|k| format!("{k}\tcopied\n")).collect();
    assert_eq!(copy_in(&c, text).await, 100);
    let after = shards
        .scalar_each("SELECT count(*) FROM users WHERE id > 1000")
        .await;
    assert_eq!(after[0], 0, "{after:?}");
    assert_eq!(after[1] + after[2], 100, "{after:?}");
    let ring = ctx.ring.load_full();
    for k in [1001i64, 1050, 1100] {
        let on = ring.shard_for_key(&Key::Int(k));
        let sql = format!("SELECT count(*) FROM users WHERE id = {k}");
        assert_eq!(shards.scalar_each(&sql).await[usize::from(on.0)], 1);
    }
    let weights = shard_weights(&admin).await;
    assert_eq!(weights[0], ("s0".into(), "0".into()));
    let ring_rows = rows(&admin, "SHOW RING").await;
    assert_eq!(ring_rows.len(), 3);
    assert_eq!(ring_rows[0][1].as_deref(), Some("0"));
}
