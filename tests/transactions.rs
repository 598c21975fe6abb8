//! Transactions over several shards: two-phase commit, what a failed PREPARE or a lost backend
//! connection does, and recovery of in-doubt transactions from their decision records.

mod support;

use shardgate::backend::recovery;
use std::time::Duration;
use support::proxy::{affected, eventually, rows, sqlstate, value, Proxy};
use support::Shards;

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";
const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, score int NOT NULL DEFAULT 0)";

async fn count_prepared(shards: &Shards) -> Vec<i64> {
    shards
        .scalar_each("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")
        .await
}

async fn decisions(shards: &Shards, shard: usize) -> Vec<(String, bool)> {
    let c = shards.client(shard).await;
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('shardgate.txn_decisions') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        return Vec::new();
    }
    c.query(
        "SELECT gid, committed FROM shardgate.txn_decisions ORDER BY at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_two_shards_commits_through_a_decision_record() {
    let shards = Shards::databases(2).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    c.simple_query(SCHEMA).await.unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    let home = proxy
        .ctx
        .ring
        .load()
        .shard_for_key(&shardgate::ring::Key::Int(a))
        .0 as usize;

    // One shard only: a native commit, no decision record.
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users (id) VALUES ({a}); COMMIT"
    ))
    .await
    .unwrap();
    assert!(decisions(&shards, home).await.is_empty());

    // Two shards: the first one the transaction reached coordinates and keeps the record
    // (keyed by the transaction; each participant's prepared gid adds its shard).
    c.batch_execute(&format!(
        "BEGIN; UPDATE users SET score = 5 WHERE id = {a}; INSERT INTO users (id, score) VALUES ({b}, 7); COMMIT"
    ))
    .await
    .unwrap();
    let records = decisions(&shards, home).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let (gid, committed) = &records[0];
    assert!(committed);
    assert!(gid.starts_with("sg_"), "{gid}");
    assert_eq!(count_prepared(&shards).await, vec![0, 0]);
    let other = proxy.client().await;
    assert_eq!(
        value(&other, "SELECT sum(score) FROM users").await,
        "12",
        "both shards' writes are visible after COMMIT"
    );

    // An implicit transaction (a multi-statement string) over two shards commits the same way.
    c.batch_execute(&format!(
        "UPDATE users SET score = score + 1 WHERE id = {a}; UPDATE users SET score = score - 1 WHERE id = {b}"
    ))
    .await
    .unwrap();
    assert_eq!(decisions(&shards, home).await.len(), 2);
    assert_eq!(value(&other, "SELECT sum(score) FROM users").await, "12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prepare_rolls_back_every_shard() {
    let shards = Shards::databases(2).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    // A deferred unique constraint is checked at PREPARE TRANSACTION on the second shard.
    c.simple_query(
        "CREATE TABLE users (id bigint PRIMARY KEY, \
         tag int UNIQUE DEFERRABLE INITIALLY DEFERRED)",
    )
    .await
    .unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    let (a2, b2) = {
        let ring = proxy.ctx.ring.load();
        let on = |k: i64| ring.shard_for_key(&shardgate::ring::Key::Int(k));
        let a2 = (b + 1..).find(|k| on(*k) == on(a)).unwrap();
        let b2 = (a2 + 1..).find(|k| on(*k) == on(b)).unwrap();
        (a2, b2)
    };
    affected(&c, &format!("INSERT INTO users VALUES ({b}, 1)")).await;
    c.simple_query("BEGIN").await.unwrap();
    affected(&c, &format!("INSERT INTO users VALUES ({a}, 1), ({a2}, 2)")).await;
    // Accepted for now (deferred), refused when the shard prepares.
    affected(&c, &format!("INSERT INTO users VALUES ({b2}, 1)")).await;
    let err = c.simple_query("COMMIT").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23505", "{err}");
    // Nothing of it committed anywhere, and the connection is usable and out of the transaction.
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "1");
    assert_eq!(count_prepared(&shards).await, vec![0, 0]);
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users VALUES ({a}, 3); INSERT INTO users VALUES ({b2}, 4); COMMIT"
    ))
    .await
    .unwrap();
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_transaction_aborts_it_and_frees_the_other_shards() {
    let shards = Shards::databases(2).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    c.simple_query(SCHEMA).await.unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    let ring = proxy.ctx.ring.load_full();
    let shard_of = |k: i64| ring.shard_for_key(&shardgate::ring::Key::Int(k)).0 as usize;
    affected(&c, &format!("INSERT INTO users (id) VALUES ({a}), ({b})")).await;

    c.batch_execute(&format!(
        "BEGIN; SAVEPOINT s; UPDATE users SET score = 1 WHERE id = {a}; UPDATE users SET score = 1 WHERE id = {b}"
    ))
    .await
    .unwrap();
    // An operator kills the proxy's connection on b's shard.
    let direct_b = shards.client(shard_of(b)).await;
    let killed: i64 = direct_b
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'shardgate' AND datname = current_database() \
             AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let err = c
        .simple_query(&format!("SELECT score FROM users WHERE id = {b}"))
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains(&format!("s{}", shard_of(b))),
        "{}",
        db.message()
    );
    // a's shard was rolled back at once: its row lock is free for others.
    let direct_a = shards.client(shard_of(a)).await;
    direct_a
        .batch_execute("SET lock_timeout = '2s'")
        .await
        .unwrap();
    direct_a
        .execute(&format!("UPDATE users SET score = 9 WHERE id = {a}"), &[])
        .await
        .expect("the other shard's transaction was rolled back, releasing its locks");
    // A savepoint cannot bring back what the lost shard held; only ROLLBACK ends it.
    assert_eq!(sqlstate(&c, "ROLLBACK TO SAVEPOINT s").await, "25P02");
    assert_eq!(sqlstate(&c, "SELECT 1").await, "25P02");
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        rows(&c, "SELECT score FROM users ORDER BY id").await.len(),
        2
    );
    assert_eq!(
        value(&c, &format!("SELECT score FROM users WHERE id = {b}")).await,
        "0"
    );
    assert_eq!(
        value(&c, &format!("SELECT score FROM users WHERE id = {a}")).await,
        "9"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_commits_or_rolls_back_by_the_decision_record() {
    let shards = Shards::databases(3).await;
    // Recovery runs only when the test says so.
    let proxy = Proxy::start_with(
        &shards.urls(),
        "pool_size = 4\nrecovery_interval_ms = 3600000",
        TABLES,
    )
    .await;
    let c = proxy.client().await;
    c.simple_query(SCHEMA).await.unwrap();
    // A first two-shard commit creates the decision table on its coordinator; make sure every
    // shard has one, as a coordinator.
    for s in 0..3 {
        shards
            .client(s)
            .await
            .batch_execute(shardgate::backend::twophase::DECISIONS_DDL)
            .await
            .unwrap();
    }
    // What a proxy that crashed would leave: transactions prepared on s1 and s2 with s0 as the
    // coordinator; one with a commit record, one without any.
    let prepare = |shard: usize, id: i64, gid: &'static str| {
        let shards = &shards;
        async move {
            let d = shards.client(shard).await;
            d.batch_execute(&format!(
                "BEGIN; INSERT INTO users (id) VALUES ({id}); PREPARE TRANSACTION '{gid}'"
            ))
            .await
            .unwrap();
        }
    };
    // Recovery leaves alone what was prepared less than 2 s ago.
    let first = std::time::Instant::now();
    prepare(1, 101, "sg_dead00000000_1_1_s0").await;
    prepare(2, 102, "sg_dead00000000_1_2_s0").await;
    prepare(1, 201, "sg_dead00000000_2_1_s0").await;
    shards
        .client(0)
        .await
        .batch_execute(
            "INSERT INTO shardgate.txn_decisions (gid, committed) VALUES ('sg_dead00000000_1', true)",
        )
        .await
        .unwrap();
    // Not a shardgate transaction: left alone.
    prepare(2, 301, "someone_else").await;
    assert_eq!(count_prepared(&shards).await, vec![0, 2, 2]);

    // Too young: a proxy may still be finishing them. Only checked if the setup took less
    // than the 2 s, which a loaded machine may not manage.
    let report = recovery::recover(&proxy.ctx.backend).await;
    if first.elapsed() < Duration::from_millis(1900) {
        assert_eq!((report.committed, report.rolled_back), (0, 0), "{report:?}");
        assert_eq!(report.waiting, 3, "{report:?}");
    } else {
        eprintln!(
            "setup took {:?}: too slow to check the young ones",
            first.elapsed()
        );
    }

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = recovery::recover(&proxy.ctx.backend).await;
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert_eq!(count_prepared(&shards).await, vec![0, 0, 1]);
    let ids: Vec<String> = rows(&c, "SELECT id FROM users ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ids, ["101", "102"]);
    // The undecided one got an abort record, so its coordinator could no longer commit it.
    let records = decisions(&shards, 0).await;
    assert!(
        records.contains(&("sg_dead00000000_2".to_owned(), false)),
        "{records:?}"
    );
    let d0 = shards.client(0).await;
    let late = d0
        .batch_execute(
            "INSERT INTO shardgate.txn_decisions (gid, committed) VALUES ('sg_dead00000000_2', true)",
        )
        .await;
    assert!(late.is_err(), "a late commit record is refused");

    // Records no prepared transaction needs are removed once old enough (the one above and
    // the CREATE TABLE's, which was committed in two phases too).
    d0.batch_execute("UPDATE shardgate.txn_decisions SET at = at - interval '1 minute'")
        .await
        .unwrap();
    let committed = decisions(&shards, 0).await.iter().filter(|r| r.1).count();
    assert!(committed >= 2, "{committed}");
    let report = recovery::recover(&proxy.ctx.backend).await;
    assert_eq!(report.removed as usize, committed, "{report:?}");
    assert_eq!(
        decisions(&shards, 0).await,
        vec![("sg_dead00000000_2".to_owned(), false)],
        "the abort record stays for an hour"
    );
    shards
        .client(2)
        .await
        .batch_execute("ROLLBACK PREPARED 'someone_else'")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_transaction_leaves_every_shard_clean() {
    let shards = Shards::databases(2).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 1", TABLES).await;
    let c = proxy.client().await;
    c.simple_query(SCHEMA).await.unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    {
        let gone = proxy.client().await;
        gone.batch_execute(&format!(
            "BEGIN; INSERT INTO users (id) VALUES ({a}); INSERT INTO users (id) VALUES ({b})"
        ))
        .await
        .unwrap();
    }
    // With one connection per shard, the next client gets the same ones: idle, nothing open.
    let clean = eventually(5, || async {
        shards
            .scalar_each(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardgate' \
                 AND datname = current_database() AND state <> 'idle'",
            )
            .await
            == vec![0, 0]
    })
    .await;
    assert!(clean, "no shard connection is left inside a transaction");
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "0");
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users (id) VALUES ({a}); INSERT INTO users (id) VALUES ({b}); COMMIT"
    ))
    .await
    .unwrap();
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_joins_a_transaction_in_its_first_statements_round_trip() {
    let shards = Shards::databases(2).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    c.simple_query(SCHEMA).await.unwrap();
    let (a, b) = proxy.keys_on_two_shards();

    // The BEGIN rides in front of the statement, but errors point into the client's own text.
    c.simple_query("BEGIN").await.unwrap();
    let err = c
        .simple_query(&format!("SELECT nosuch FROM users WHERE id = {a}"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42703");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(8))
    );
    c.simple_query("ROLLBACK").await.unwrap();

    // A BEGIN the shards refuse stops the statement it rides with: nothing runs outside the
    // transaction, through either protocol.
    for extended in [false, true] {
        c.simple_query("BEGIN ISOLATION LEVEL nonsense")
            .await
            .unwrap();
        let insert = if extended {
            c.execute("INSERT INTO users (id) VALUES ($1)", &[&a])
                .await
                .map(|_| ())
        } else {
            c.batch_execute(&format!("INSERT INTO users (id) VALUES ({a})"))
                .await
        };
        let err = insert.expect_err("the shard refuses the BEGIN");
        assert_eq!(err.as_db_error().unwrap().code().code(), "42601", "{err}");
        assert_eq!(sqlstate(&c, "SELECT 1").await, "25P02");
        c.simple_query("ROLLBACK").await.unwrap();
        let n: i64 = shards
            .scalar_each("SELECT count(*) FROM users")
            .await
            .iter()
            .sum();
        assert_eq!(n, 0, "extended: {extended}");
    }

    // Savepoints and SET LOCAL made before a shard joined are replayed on it, in the same trip.
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users (id) VALUES ({a}); SAVEPOINT s; SET LOCAL search_path = nowhere, public"
    ))
    .await
    .unwrap();
    assert_eq!(
        value(
            &c,
            &format!("SELECT current_setting('search_path') FROM users WHERE id = {a}")
        )
        .await,
        "nowhere, public"
    );
    c.execute("INSERT INTO users (id, score) VALUES ($1, 3)", &[&b])
        .await
        .unwrap();
    assert_eq!(
        value(
            &c,
            &format!("SELECT current_setting('search_path') FROM users WHERE id = {b}")
        )
        .await,
        "nowhere, public"
    );
    c.simple_query("ROLLBACK TO SAVEPOINT s").await.unwrap();
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_transactions_that_write_on_two_shards_need_prepare() {
    // Prepared transactions disabled: any PREPARE fails, so what commits did not use one.
    let options = support::Options {
        settings: vec![("max_prepared_transactions".into(), "0".into())],
        ..Default::default()
    };
    let shards = Shards::start_with(2, options).await;
    for i in 0..2 {
        shards
            .client(i)
            .await
            .batch_execute(&format!(
                "{SCHEMA}; CREATE FUNCTION bump(bigint) RETURNS int LANGUAGE sql AS \
                 'UPDATE users SET score = score + 1 WHERE id = $1 RETURNING score'"
            ))
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    let (a, b) = proxy.keys_on_two_shards();
    for k in [a, b] {
        affected(&c, &format!("INSERT INTO users (id) VALUES ({k})")).await;
    }
    let scores = || async { value(&c, "SELECT sum(score) FROM users").await };

    // Reads on both shards, read only or not, and a write on one: native commits.
    c.batch_execute("BEGIN READ ONLY; SELECT count(*) FROM users; COMMIT")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "BEGIN; SELECT count(*) FROM users; UPDATE users SET score = 5 WHERE id = {a}; COMMIT"
    ))
    .await
    .unwrap();
    assert_eq!(scores().await, "5");

    // Writes on two shards need PREPARE, which these shards refuse: nothing commits.
    c.batch_execute(&format!(
        "BEGIN; UPDATE users SET score = 7 WHERE id = {a}; UPDATE users SET score = 7 WHERE id = {b}"
    ))
    .await
    .unwrap();
    let err = c.simple_query("COMMIT").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "55000", "{err}");
    assert_eq!(scores().await, "5");

    // A "read" that writes through a function on both shards is caught at COMMIT (the shards
    // hold transaction ids), so it is not committed shard by shard either.
    c.batch_execute("BEGIN; SELECT bump(id) FROM users")
        .await
        .unwrap();
    let err = c.simple_query("COMMIT").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "55000", "{err}");
    assert_eq!(scores().await, "5");
}
