//! The rebalance's figures at a size worth measuring (ignored by default; run with
//! `cargo test --release --test rebalance_bench -- --ignored --nocapture`, `ROWS=N` to scale):
//! rows moved per second, and the longest any write waited while 8 clients update random
//! users through the proxy during the whole rebalance.

mod support;

use futures_util::SinkExt;
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::proxy::Proxy;
use support::Shards;
use tokio_postgres::{NoTls, SimpleQueryMessage};

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n\
                      [[tables]]\nname = \"orders\"\nshard_key = \"user_id\"\n";

fn config(urls: &[String]) -> String {
    let mut t = "[proxy]\nlisten = \"127.0.0.1:0\"\npool_size = 16\n".to_owned();
    for (i, u) in urls.iter().enumerate() {
        t.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{u}\"\n"));
    }
    t + TABLES
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by name with --ignored"]
async fn rebalance_figures() {
    let rows: i64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let shards = Shards::databases(4).await;
    let urls = shards.urls();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&urls[..3])).unwrap();
    let proxy = Proxy::start_with(&urls[..3], "pool_size = 16", TABLES).await;
    proxy
        .ctx
        .config_path
        .set(file.path().to_path_buf())
        .unwrap();
    let c = proxy.client().await;
    c.batch_execute(
        "CREATE TABLE users (id bigint PRIMARY KEY, name text, balance bigint NOT NULL DEFAULT 0);
         CREATE TABLE orders (id bigint, user_id bigint, amount bigint, PRIMARY KEY (user_id, id))",
    )
    .await
    .unwrap();
    let load = Instant::now();
    for (table, per) in [("users", 1), ("orders", 2)] {
        let sink = c
            .copy_in(&format!("COPY {table} FROM STDIN"))
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        let mut buf = String::new();
        for id in 1..=rows {
            for j in 0..per {
                buf.push_str(&match table {
                    "users" => format!("{id}\tuser {id}\t0\n"),
                    _ => format!("{j}\t{id}\t{}\n", id * 3 + j),
                });
            }
            if buf.len() > 1 << 20 {
                sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                    .await
                    .unwrap();
            }
        }
        sink.send(bytes::Bytes::from(buf)).await.unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    c.batch_execute("ANALYZE").await.unwrap();
    eprintln!(
        "loaded {rows} users and {} orders in {:?}",
        rows * 2,
        load.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (w, stop) = (proxy.client().await, stop.clone());
        writers.push(tokio::spawn(async move {
            let update = w
                .prepare("UPDATE users SET balance = balance + 1 WHERE id = $1")
                .await
                .unwrap();
            let (mut n, mut worst) = (0u64, Duration::ZERO);
            while !stop.load(SeqCst) {
                let id: i64 = rand::rng().random_range(1..=rows);
                let t = Instant::now();
                assert_eq!(w.execute(&update, &[&id]).await.unwrap(), 1, "user {id}");
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (n, worst)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(file.path(), config(&urls)).unwrap();
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=shardgate",
        proxy.addr.port()
    );
    let (admin, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.simple_query("RELOAD").await.unwrap();
    let status = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let msgs = admin.simple_query("SHOW REBALANCE").await.unwrap();
        let Some(SimpleQueryMessage::Row(r)) = msgs
            .into_iter()
            .find(|m| matches!(m, SimpleQueryMessage::Row(_)))
        else {
            panic!("SHOW REBALANCE returned no row");
        };
        let get = |k: &str| r.get(k).unwrap_or("").to_owned();
        match get("state").as_str() {
            "done" => break [get("rows_moved"), get("elapsed_s"), get("pause_ms")],
            "failed" => panic!("rebalance failed: {}", get("detail")),
            _ => {}
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    let (mut n, mut worst) = (0, Duration::ZERO);
    for w in writers {
        let (a, b) = w.await.unwrap();
        n += a;
        worst = worst.max(b);
    }
    let moved: f64 = status[0].parse().unwrap();
    let secs: f64 = status[1].parse().unwrap();
    eprintln!(
        "rows moved {moved} in {secs:.2} s = {:.0} rows/s; switch pause {} ms; \
         {n} updates by 8 clients, the slowest {worst:?}",
        moved / secs,
        status[2]
    );
}
