//! The proxy killed in the middle of a two-phase commit (the `shardgate` binary, run as a
//! separate process with a failpoint), then started again: its recovery finishes every in-doubt
//! transaction as the decision record says, and no prepared transaction is left. Also the
//! coordinator's connection lost just before the decision, with the proxy alive.

mod support;

use shardgate::ring::Key;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::proxy::eventually;
use support::Shards;
use tokio_postgres::NoTls;

struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the shardgate binary on `config` and waits until it accepts connections.
async fn spawn_proxy(config: &Path, port: u16, failpoint: Option<&str>, log: &Path) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    cmd.arg("--config").arg(config).stdin(Stdio::null());
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a log file"));
    match failpoint {
        Some(f) => cmd.env("SHARDGATE_FAILPOINT", f),
        None => cmd.env_remove("SHARDGATE_FAILPOINT"),
    };
    let running = Running {
        child: cmd.spawn().expect("shardgate starts"),
        port,
    };
    let up = eventually(20, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(
        up,
        "shardgate did not start: {:?}",
        std::fs::read_to_string(log)
    );
    running
}

async fn client(port: u16) -> tokio_postgres::Client {
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=app connect_timeout=10");
    let (client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("connect through shardgate");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Two shards with `users`, a config for a proxy over them, and two keys on different shards.
async fn setup(dir: &Path) -> (Shards, std::path::PathBuf, u16, i64) {
    let shards = Shards::databases(2).await;
    let port = free_port();
    let config = dir.join("shards.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\npool_size = 4\nrecovery_interval_ms = 300\n\n{}\n\
             [[tables]]\nname = \"users\"\nshard_key = \"id\"\n",
            shards.shards_toml()
        ),
    )
    .unwrap();
    let parsed = shardgate::config::Config::load(&config).unwrap();
    let ring = shardgate::ring::Ring::new(&parsed.shards, parsed.proxy.vnodes);
    let home = ring.shard_for_key(&Key::Int(1));
    let other = (2..)
        .find(|k| ring.shard_for_key(&Key::Int(*k)) != home)
        .unwrap();
    // Created on the shards directly: through a proxy with a failpoint, the DDL's own
    // two-phase commit would trip it.
    for i in 0..shards.len() {
        shards
            .client(i)
            .await
            .batch_execute("CREATE TABLE users (id bigint PRIMARY KEY)")
            .await
            .unwrap();
    }
    (shards, config, port, other)
}

/// Kills the proxy at `failpoint` in the commit of a transaction over two shards, restarts it,
/// and returns how many of the transaction's two rows exist afterwards (0 or 2 are atomic).
async fn crash_and_recover(failpoint: &str) -> (usize, Vec<i64>, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let (shards, config, port, other) = setup(dir.path()).await;
    let log = dir.path().join("first.log");
    let mut first = spawn_proxy(&config, port, Some(failpoint), &log).await;
    let c = client(port).await;
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users VALUES (1); INSERT INTO users VALUES ({other})"
    ))
    .await
    .unwrap();
    let commit = c.batch_execute("COMMIT").await;
    assert!(commit.is_err(), "the proxy died during COMMIT");
    let status = tokio::task::spawn_blocking(move || {
        let s = first.child.wait();
        drop(first);
        s
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!status.success(), "killed, not exited: {status:?}");
    let in_doubt = shards
        .scalar_each("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")
        .await;

    let log = dir.path().join("second.log");
    let second = spawn_proxy(&config, port, None, &log).await;
    let resolved = eventually(20, || async {
        shards
            .scalar_each(
                "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
            )
            .await
            .iter()
            .all(|n| *n == 0)
    })
    .await;
    assert!(
        resolved,
        "recovery left prepared transactions: {:?}",
        std::fs::read_to_string(&log)
    );
    let c = client(second.port).await;
    let through_proxy: i64 = c
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    let per_shard = shards.scalar_each("SELECT count(*) FROM users").await;
    assert_eq!(through_proxy, per_shard.iter().sum::<i64>());
    (through_proxy as usize, in_doubt, per_shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_prepare_before_the_decision_rolls_back() {
    let (rows, in_doubt, per_shard) = crash_and_recover("after-prepare").await;
    assert_eq!(
        in_doubt.iter().sum::<i64>(),
        1,
        "one participant was left prepared"
    );
    assert_eq!(rows, 0, "no decision record: rolled back everywhere");
    assert_eq!(per_shard, vec![0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_decision_commits_everywhere() {
    let (rows, in_doubt, per_shard) = crash_and_recover("after-decision").await;
    assert_eq!(
        in_doubt.iter().sum::<i64>(),
        1,
        "one participant was left prepared"
    );
    assert_eq!(
        rows, 2,
        "the decision record says commit: committed everywhere"
    );
    assert_eq!(per_shard, vec![1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_lost_before_the_decision_rolls_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (shards, config, port, other) = setup(dir.path()).await;
    let log = dir.path().join("proxy.log");
    let _proxy = spawn_proxy(&config, port, Some("lose-coordinator"), &log).await;
    let c = client(port).await;
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users VALUES (1); INSERT INTO users VALUES ({other})"
    ))
    .await
    .unwrap();
    // The proxy asks the coordinator on a new connection, finds no decision, records the
    // abort and rolls the prepared participant back: a clear error, nothing left behind.
    let err = c.batch_execute("COMMIT").await.unwrap_err();
    let db = err.as_db_error().expect("an error from the proxy");
    assert_eq!(db.code().code(), "08006", "{db:?}");
    assert_eq!(
        shards
            .scalar_each(
                "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"
            )
            .await,
        vec![0, 0]
    );
    assert_eq!(
        shards.scalar_each("SELECT count(*) FROM users").await,
        vec![0, 0]
    );
    let mut aborts = 0;
    for i in 0..shards.len() {
        let d = shards.client(i).await;
        let row = d
            .query_one(
                "SELECT to_regclass('shardgate.txn_decisions') IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            let n: i64 = d
                .query_one(
                    "SELECT count(*) FROM shardgate.txn_decisions WHERE NOT committed",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            aborts += n;
        }
    }
    assert_eq!(aborts, 1, "the abort was recorded on the coordinator");
    // The client connection still works.
    assert_eq!(
        c.query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}
