//! Connection caps and the proxy's timeouts, through real clients: max_client_connections and
//! per-user caps refuse with 53300 and free their slots; idle clients are disconnected (57P05,
//! 25P03 with the transaction rolled back); a statement past statement_timeout_ms is cancelled
//! on its shards (57014) and the connection stays usable, and a RELOAD changes it for open sessions.

mod support;

use std::time::{Duration, Instant};
use support::proxy::{eventually, value, Proxy};
use support::Shards;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";

/// A client as `user`, with the connection task's outcome (how the server ended it).
async fn connect(
    proxy: &Proxy,
    user: &str,
    db: &str,
) -> Result<(Client, JoinHandle<Result<(), tokio_postgres::Error>>), tokio_postgres::Error> {
    let url = format!(
        "host=127.0.0.1 port={} user={user} dbname={db}",
        proxy.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    Ok((client, tokio::spawn(conn)))
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_with_53300_and_free_their_slots() {
    let shards = Shards::databases(2).await;
    let opts = "pool_size = 4\nmax_client_connections = 3\nmax_user_connections = 2";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    let (a1, _) = connect(&proxy, "alice", "app").await.unwrap();
    let (a2, _) = connect(&proxy, "alice", "app").await.unwrap();
    let err = connect(&proxy, "alice", "app").await.unwrap_err();
    assert_eq!(code(&err), "53300");
    let msg = err.as_db_error().unwrap().message();
    assert_eq!(msg, "too many connections for user \"alice\" (at most 2)");
    let (b1, _) = connect(&proxy, "bob", "app").await.unwrap();
    let err = connect(&proxy, "carol", "app").await.unwrap_err();
    assert_eq!(code(&err), "53300");
    let msg = err.as_db_error().unwrap().message();
    assert!(msg.contains("too many client connections"), "{msg}");
    // The console has its own reserve when the proxy is full.
    let (admin, _) = connect(&proxy, "postgres", "shardgate").await.unwrap();
    admin.simple_query("SHOW CLIENTS").await.unwrap();
    // Slots come back when clients leave.
    drop(a1);
    assert!(
        eventually(5, || async {
            connect(&proxy, "alice", "app").await.is_ok()
        })
        .await,
        "alice's slot did not come back"
    );
    for c in [&a2, &b1] {
        assert_eq!(value(c, "SELECT 1").await, "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_disconnected_and_their_transactions_rolled_back() {
    let shards = Shards::databases(2).await;
    // Timeouts well above the pauses of a loaded machine between a test's two statements.
    let opts = "pool_size = 4\nclient_idle_timeout_ms = 1500\nidle_transaction_timeout_ms = 2000";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    let (setup, _) = connect(&proxy, "postgres", "app").await.unwrap();
    setup
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
        .await
        .unwrap();

    // Busy clients are not idle: statements every 250 ms for longer than the idle timeout.
    let (busy, busy_conn) = connect(&proxy, "postgres", "app").await.unwrap();
    for _ in 0..10 {
        busy.simple_query("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!busy_conn.is_finished());

    let (idle, idle_conn) = connect(&proxy, "postgres", "app").await.unwrap();
    idle.simple_query("SELECT 1").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("the idle client was not disconnected")
        .unwrap();
    assert_eq!(code(&ended.unwrap_err()), "57P05");
    assert!(idle.simple_query("SELECT 1").await.is_err());

    let (txn, txn_conn) = connect(&proxy, "postgres", "app").await.unwrap();
    // Taken before the request, so before the proxy's clock starts at its answer.
    let began = Instant::now();
    txn.batch_execute("BEGIN; INSERT INTO users VALUES (1, 'uncommitted')")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), txn_conn)
        .await
        .expect("the idle transaction was not ended")
        .unwrap();
    assert_eq!(code(&ended.unwrap_err()), "25P03");
    assert!(
        began.elapsed() >= Duration::from_millis(2000),
        "ended too soon"
    );
    // The setup client idled out long ago: a fresh one looks.
    let (check, _) = connect(&proxy, "postgres", "app").await.unwrap();
    assert_eq!(
        value(&check, "SELECT count(*) FROM users").await,
        "0",
        "the idle transaction's insert survived"
    );
    // Its shard connection went back clean: the row lock is gone.
    check
        .batch_execute("INSERT INTO users VALUES (1, 'committed')")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_timeout_is_cancelled_on_its_shards() {
    let shards = Shards::databases(2).await;
    // Long enough that the statements under it, and a cancel sent once a statement runs,
    // finish inside it on a loaded machine.
    let opts = "pool_size = 4\nstatement_timeout_ms = 1500";
    let proxy = Proxy::start_with(&shards.urls(), opts, TABLES).await;
    let (c, _) = connect(&proxy, "postgres", "app").await.unwrap();
    c.batch_execute("CREATE TABLE users (id int PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=20).map(|i| format!("({i})")).collect();
    c.batch_execute(&format!("INSERT INTO users VALUES {}", values.join(",")))
        .await
        .unwrap();

    let timed = |sql: &'static str| {
        let c = &c;
        async move {
            let began = Instant::now();
            let err = c.simple_query(sql).await.unwrap_err();
            (err, began.elapsed())
        }
    };
    for sql in [
        // One shard.
        "SELECT pg_sleep(5)",
        "SELECT pg_sleep(5) FROM users WHERE id = 3",
        // Every shard, through the gather.
        "SELECT count(*) FROM users WHERE pg_sleep(1) IS NOT NULL",
    ] {
        let (err, took) = timed(sql).await;
        assert_eq!(code(&err), "57014", "{sql}: {err}");
        let msg = err.as_db_error().unwrap().message().to_owned();
        assert_eq!(msg, "canceling statement due to statement timeout", "{sql}");
        assert!(took < Duration::from_secs(5), "{sql} took {took:?}");
        assert_eq!(value(&c, "SELECT count(*) FROM users").await, "20");
    }
    // The extended protocol, and inside a transaction (which the error aborts, as in
    // PostgreSQL).
    let err = c
        .query("SELECT pg_sleep($1::float8)", &[&5.0f64])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "57014");
    // A client's own CancelRequest reaches an extended-protocol statement too.
    // Sent once the statement runs on its shard: one sent before would find nothing to cancel.
    let token = c.cancel_token();
    let sql = "SELECT pg_sleep($1::float8) AS cancelled";
    let cancel = async {
        shards.until_running(sql).await;
        token.cancel_query(NoTls).await.unwrap();
    };
    let (res, ()) = tokio::join!(c.query(sql, &[&5.0f64]), cancel);
    let err = res.unwrap_err();
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert_eq!(msg, "canceling statement due to user request");
    c.batch_execute("BEGIN").await.unwrap();
    let err = c.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(code(&err), "57014");
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    // Statements under the limit are untouched, also one after another in a request.
    assert_eq!(value(&c, "SELECT pg_sleep(0.3)::text || 'ok'").await, "ok");
    c.batch_execute("SELECT pg_sleep(0.3); SELECT pg_sleep(0.2)")
        .await
        .unwrap();
}

/// RELOAD changes the statement timeout for the sessions already connected, from their next
/// statement on (each keeps its own view of the config, which must follow the reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_statement_timeout_applies_to_open_sessions() {
    let shards = Shards::databases(2).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let config = |opts: &str| {
        let mut t = format!("[proxy]\nlisten = \"127.0.0.1:0\"\npool_size = 4\n{opts}\n");
        for (i, url) in shards.urls().iter().enumerate() {
            t.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
        }
        format!("{t}{TABLES}")
    };
    std::fs::write(file.path(), config("")).unwrap();
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 4", TABLES).await;
    proxy
        .ctx
        .config_path
        .set(file.path().to_path_buf())
        .unwrap();
    let (c, _) = connect(&proxy, "postgres", "app").await.unwrap();
    let prepared = c.prepare("SELECT pg_sleep($1::float8)").await.unwrap();
    // No timeout yet: a statement longer than the one set below runs to its end.
    c.simple_query("SELECT pg_sleep(1.6)").await.unwrap();
    c.query(&prepared, &[&1.6f64]).await.unwrap();
    let (admin, _) = connect(&proxy, "postgres", "shardgate").await.unwrap();
    std::fs::write(file.path(), config("statement_timeout_ms = 1500")).unwrap();
    admin.simple_query("RELOAD").await.unwrap();
    let err = c.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err}");
    let err = c.query(&prepared, &[&5.0f64]).await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err}");
    assert_eq!(value(&c, "SELECT 'still usable'").await, "still usable");
}
