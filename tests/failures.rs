//! What happens when things break: a shard down, a client killed mid-query, many clients at once.

mod support;

use shardgate::ring::Key;
use support::proxy::{affected, eventually, rows, sqlstate, value, Proxy};
use support::Shards;

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_only_the_statements_that_need_it() {
    let shards = Shards::start(3).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    c.simple_query("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
        .await
        .unwrap();
    let ring = proxy.ctx.ring.load();
    let key_on = |shard: u16| {
        (1..10_000i64)
            .find(|k| ring.shard_for_key(&Key::Int(*k)).0 == shard)
            .unwrap()
    };
    let (k0, k1) = (key_on(0), key_on(1));
    affected(
        &c,
        &format!("INSERT INTO users VALUES ({k0}, 'zero'), ({k1}, 'one')"),
    )
    .await;

    shards.stop_shard(1);
    // Keys on the down shard: 08006 naming it.
    let err = c
        .simple_query(&format!("SELECT name FROM users WHERE id = {k1}"))
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "08006");
    assert!(db.message().contains("s1"), "{}", db.message());
    // Keys elsewhere keep working, on the same client connection.
    assert_eq!(
        value(&c, &format!("SELECT name FROM users WHERE id = {k0}")).await,
        "zero"
    );
    // A statement that needs every shard fails cleanly too, at once: the shard is marked down
    // and probed in the background, not connected to again by every statement.
    let err = c.simple_query("SELECT * FROM users").await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains("s1") && db.message().contains("down for"),
        "{}",
        db.message()
    );
    assert_eq!(value(&c, "SELECT 1").await, "1");

    shards.start_shard(1);
    // Once it is back, its keys are served again (fresh connections replace the dead ones).
    let sql = format!("SELECT name FROM users WHERE id = {k1}");
    let back = eventually(5, || async {
        support::proxy::try_rows(&c, &sql).await.ok() == Some(vec![vec![Some("one".to_owned())]])
    })
    .await;
    assert!(back, "shard s1 serves again after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_query_leaves_nothing_running() {
    let shards = Shards::start(1).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let direct = shards.client(0).await;
    let victim = support::proxy::send_and_keep_socket(proxy.addr, "SELECT pg_sleep(60)").await;
    // Wait until the sleep runs on the shard, then kill the client.
    let running = || async {
        let sql = "SELECT count(*) FROM pg_stat_activity \
                   WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'";
        direct.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    };
    assert!(
        eventually(5, || async { running().await == 1 }).await,
        "the query reached the shard"
    );
    drop(victim);
    // The proxy notices the hang-up and cancels the statement on the shard.
    assert!(
        eventually(5, || async { running().await == 0 }).await,
        "the shard stopped running the dead client's query"
    );
    // The proxy still serves others.
    let c = proxy.client().await;
    assert_eq!(value(&c, "SELECT 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_clients_and_dozens_of_busy_ones_share_small_pools() {
    let shards = Shards::start(2).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 4", TABLES).await;
    let setup = proxy.client().await;
    setup
        .simple_query("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
        .await
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(proxy.client().await);
    }
    let mut busy = Vec::new();
    for w in 0..40i64 {
        let c = proxy.client().await;
        busy.push(tokio::spawn(async move {
            for i in 0..25i64 {
                let id = w * 1000 + i;
                c.simple_query(&format!("INSERT INTO users VALUES ({id}, 'w{w}')"))
                    .await
                    .unwrap();
                let r = rows(&c, &format!("SELECT name FROM users WHERE id = {id}")).await;
                assert_eq!(r, vec![vec![Some(format!("w{w}"))]]);
            }
        }));
    }
    for b in busy {
        b.await.unwrap();
    }
    assert_eq!(affected(&setup, "SELECT * FROM users").await, 1000);
    // The idle clients are still connected and answer.
    for c in idle.iter().step_by(50) {
        assert_eq!(value(c, "SELECT 3").await, "3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_statement_on_its_shard() {
    let shards = Shards::start(2).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    let token = c.cancel_token();
    // Once the statement runs on its shard, cancel it as psql's Ctrl-C does.
    let canceller = async {
        shards.until_running("SELECT pg_sleep(30)").await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    };
    let (state, ()) = tokio::join!(sqlstate(&c, "SELECT pg_sleep(30)"), canceller);
    assert_eq!(state, "57014");
    // The session goes on, and a cancel with a wrong key does nothing to it.
    assert_eq!(value(&c, "SELECT 'after'").await, "after");
    let other = proxy.client().await;
    other
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    assert_eq!(value(&c, "SELECT 'untouched'").await, "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_gather_leaves_no_half_read_connection_in_the_pool() {
    // One pooled connection per shard: the next client gets exactly the connections the
    // killed one used.
    let shards = Shards::start(2).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 1", TABLES).await;
    let c = proxy.client().await;
    c.simple_query("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
        .await
        .unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    // k0 on the first shard, which the proxy reads first; k1 on the second.
    let first = proxy.ctx.ring.load().shard_for_key(&Key::Int(a)).0 == 0;
    let (k0, k1) = if first { (a, b) } else { (b, a) };
    affected(
        &c,
        &format!("INSERT INTO users VALUES ({k0}, 'a'), ({k1}, 'b')"),
    )
    .await;
    drop(c);
    // The first shard answers after 1 s, the second after 3 s; the client leaves while the
    // proxy waits for the first, so the second's answer has not even started to arrive.
    let sql = format!(
        "SELECT count(*) FROM users WHERE (SELECT true FROM pg_sleep(CASE WHEN users.id = {k0} THEN 1 ELSE 3 END))"
    );
    let victim = support::proxy::send_and_keep_socket(proxy.addr, &sql).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(victim);
    // Every later answer is the answer to its own question.
    let c = proxy.client().await;
    for n in 0..5 {
        assert_eq!(
            value(&c, "SELECT count(*) FROM users").await,
            "2",
            "round {n}"
        );
        assert_eq!(
            value(&c, &format!("SELECT name FROM users WHERE id = {k1}")).await,
            "b"
        );
    }
}
