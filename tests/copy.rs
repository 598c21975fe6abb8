//! COPY FROM STDIN through the proxy: rows split by key (text and CSV), reference tables copied
//! whole, bad rows refused without a partial load.

mod support;

use bytes::Bytes;
use futures_util::SinkExt;
use shardgate::ring::Key;
use support::proxy::{affected, value, Proxy};
use support::Shards;

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "countries"
reference = true
"#;

async fn setup() -> (Shards, Proxy) {
    let shards = Shards::start(3).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    proxy
        .client()
        .await
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, name text);
             CREATE TABLE countries (code text PRIMARY KEY, name text)",
        )
        .await
        .unwrap();
    (shards, proxy)
}

/// Sends `data` in chunks of `chunk` bytes through COPY ... FROM STDIN; the row count.
async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &[u8],
    chunk: usize,
) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    for part in data.chunks(chunk) {
        sink.send(Bytes::copy_from_slice(part)).await?;
    }
    sink.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_splits_rows_by_key() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let mut text = String::new();
    for id in 1..=500 {
        text.push_str(&format!("{id}\tname\\t{id}\n"));
    }
    // Chunks that cut rows anywhere.
    assert_eq!(
        copy_in(&c, "COPY users (id, name) FROM STDIN", text.as_bytes(), 7)
            .await
            .unwrap(),
        500
    );
    let mut csv = String::from("name,id\n");
    for id in 501..=600 {
        csv.push_str(&format!("\"a, \"\"quoted\"\"\nname\",{id}\n"));
    }
    let sql = "COPY users (name, id) FROM STDIN WITH (FORMAT csv, HEADER true)";
    assert_eq!(copy_in(&c, sql, csv.as_bytes(), 1000).await.unwrap(), 100);
    let ring = proxy.ctx.ring.load();
    let mut total = 0;
    for i in 0..3 {
        let direct = shards.client(i).await;
        let rows = direct.query("SELECT id FROM users", &[]).await.unwrap();
        assert!(!rows.is_empty());
        for r in rows {
            let id: i64 = r.get(0);
            assert_eq!(ring.shard_for_key(&Key::Int(id)).0 as usize, i, "row {id}");
            total += 1;
        }
    }
    assert_eq!(total, 600);
    assert_eq!(
        value(&c, "SELECT name FROM users WHERE id = 7").await,
        "name\t7"
    );
    assert_eq!(
        value(&c, "SELECT name FROM users WHERE id = 555").await,
        "a, \"quoted\"\nname"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_into_a_reference_table_reaches_every_copy() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let n = copy_in(
        &c,
        "COPY countries FROM STDIN",
        b"fr\tFrance\njp\tJapan\n",
        64,
    )
    .await
    .unwrap();
    assert_eq!(n, 2, "one copy's count");
    assert_eq!(
        shards.scalar_each("SELECT count(*) FROM countries").await,
        [2, 2, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_loads_nothing_anywhere() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    // A key that cannot be placed (not an integer): refused by the proxy.
    let err = copy_in(
        &c,
        "COPY users FROM STDIN",
        b"1\ta\n2\tb\nxyz\tc\n4\td\n",
        5,
    )
    .await
    .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    // A row PostgreSQL rejects on one shard (duplicate key): the others roll back too.
    copy_in(&c, "COPY users FROM STDIN", b"10\tten\n", 64)
        .await
        .unwrap();
    let err = copy_in(
        &c,
        "COPY users FROM STDIN",
        b"11\ta\n12\tb\n13\tc\n10\tdup\n",
        64,
    )
    .await
    .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23505");
    let per_shard = shards.scalar_each("SELECT count(*) FROM users").await;
    assert_eq!(
        per_shard.iter().sum::<i64>(),
        1,
        "only the first COPY's row"
    );
    // The connection goes on.
    assert_eq!(affected(&c, "SELECT * FROM users WHERE id = 10").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_gathers_every_shard() {
    let (_shards, proxy) = setup().await;
    let c = proxy.client().await;
    let mut text = String::new();
    for id in 1..=300 {
        text.push_str(&format!("{id}\tn{id}\n"));
    }
    copy_in(&c, "COPY users FROM STDIN", text.as_bytes(), 4096)
        .await
        .unwrap();
    for sql in [
        "COPY users TO STDOUT",
        "COPY (SELECT id, name FROM users) TO STDOUT",
    ] {
        let stream = c.copy_out(sql).await.unwrap();
        futures_util::pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            out.extend_from_slice(&chunk.unwrap());
        }
        let mut lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        lines.sort_by_key(|l| l.split('\t').next().unwrap().parse::<i64>().unwrap());
        let mut want: Vec<&str> = text.lines().collect();
        want.sort_by_key(|l| l.split('\t').next().unwrap().parse::<i64>().unwrap());
        assert_eq!(lines, want, "{sql}: every row exactly once");
    }
    // A header would repeat per shard: refused.
    let err = c
        .copy_out("COPY users TO STDOUT WITH (FORMAT csv, HEADER true)")
        .await
        .err()
        .expect("refused");
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    assert_eq!(value(&c, "SELECT 'still fine'").await, "still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_splits_tuples_by_key() {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let sink = c
        .copy_in("COPY users (id, name) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT]);
    futures_util::pin_mut!(writer);
    for id in 1..=200i64 {
        let name = format!("bin{id}");
        writer.as_mut().write(&[&id, &name]).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 200);
    let per_shard = shards.scalar_each("SELECT count(*) FROM users").await;
    assert_eq!(per_shard.iter().sum::<i64>(), 200);
    assert!(per_shard.iter().all(|n| *n > 0), "{per_shard:?}");
    let ring = proxy.ctx.ring.load();
    for i in 0..3 {
        for r in shards
            .client(i)
            .await
            .query("SELECT id FROM users", &[])
            .await
            .unwrap()
        {
            assert_eq!(ring.shard_for_key(&Key::Int(r.get(0))).0 as usize, i);
        }
    }
    assert_eq!(
        value(&c, "SELECT name FROM users WHERE id = 77").await,
        "bin77"
    );
}
