//! Routing through the proxy onto real shards: DDL everywhere, rows by key, keyless gather,
//! refusals and PostgreSQL's own errors.

mod support;

use shardgate::ring::Key;
use support::proxy::{affected, rows, sqlstate, value, Proxy};
use support::Shards;

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "orders"
shard_key = "user_id"

[[tables]]
name = "countries"
reference = true
"#;

const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text, score int);
CREATE TABLE orders (id bigint, user_id bigint, amount int, PRIMARY KEY (user_id, id));
CREATE TABLE countries (code text PRIMARY KEY, name text)";

async fn setup() -> (Shards, Proxy) {
    let shards = Shards::start(3).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let c = proxy.client().await;
    c.batch_execute(SCHEMA)
        .await
        .expect("schema through the proxy");
    (shards, proxy)
}

/// The ids present on shard `i`, read directly from it.
async fn ids_on(shards: &Shards, i: usize, table: &str, col: &str) -> Vec<i64> {
    let c = shards.client(i).await;
    let sql = format!("SELECT {col} FROM {table} ORDER BY {col}");
    c.query(sql.as_str(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_reaches_every_shard_and_rows_land_where_the_ring_says() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let sql = "SELECT count(*) FROM pg_tables WHERE tablename IN ('users','orders','countries')";
    assert_eq!(
        shards.scalar_each(sql).await,
        [3, 3, 3],
        "every shard has the schema"
    );
    // Single-row inserts, with the key spelled as a number and as a string.
    for id in 1..=60i64 {
        let sql = if id % 2 == 0 {
            format!("INSERT INTO users (id, name) VALUES ({id}, 'u{id}')")
        } else {
            format!("INSERT INTO users (name, id) VALUES ('u{id}', '{id}')")
        };
        assert_eq!(affected(&c, &sql).await, 1);
    }
    // One multi-row insert, split by shard, answered with one tag.
    let values: Vec<String> = (61..=150).map(|id| format!("({id}, 'u{id}')")).collect();
    let sql = format!("INSERT INTO users (id, name) VALUES {}", values.join(", "));
    assert_eq!(affected(&c, &sql).await, 90);

    let ring = proxy.ctx.ring.load();
    let mut seen = Vec::new();
    for i in 0..3 {
        let ids = ids_on(&shards, i, "users", "id").await;
        assert!(!ids.is_empty(), "shard {i} got some rows");
        for id in &ids {
            assert_eq!(
                ring.shard_for_key(&Key::Int(*id)).0 as usize,
                i,
                "row {id} is on the shard the ring names"
            );
        }
        seen.extend(ids);
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=150).collect::<Vec<_>>(),
        "every row exactly once"
    );

    // DROP reaches every shard too.
    c.simple_query("DROP TABLE countries").await.unwrap();
    let sql = "SELECT count(*) FROM pg_tables WHERE tablename = 'countries'";
    assert_eq!(shards.scalar_each(sql).await, [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_statements_touch_one_shard_only() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    affected(&c, "INSERT INTO users (id, name) VALUES (42, 'right')").await;
    let home = proxy.ctx.ring.load().shard_for_key(&Key::Int(42)).0 as usize;
    // Plant an impostor row with the same key on every other shard, behind the proxy's back:
    // a statement routed by key must never see them.
    for i in (0..3).filter(|i| *i != home) {
        shards
            .client(i)
            .await
            .simple_query("INSERT INTO users (id, name) VALUES (42, 'wrong')")
            .await
            .unwrap();
    }
    for sql in [
        "SELECT name FROM users WHERE id = 42",
        "SELECT name FROM users WHERE id = '42'",
        "SELECT name FROM users WHERE users.id = 42 AND name IS NOT NULL",
        "SELECT u.name FROM users u WHERE 42 = u.id",
        "SELECT name FROM users WHERE id IN (42)",
    ] {
        assert_eq!(
            rows(&c, sql).await,
            vec![vec![Some("right".to_owned())]],
            "{sql}"
        );
    }
    assert_eq!(
        affected(&c, "UPDATE users SET score = 7 WHERE id = 42").await,
        1
    );
    assert_eq!(
        value(&c, "SELECT score FROM users WHERE id = 42").await,
        "7"
    );
    assert_eq!(affected(&c, "DELETE FROM users WHERE id = 42").await, 1);
    // The impostors are untouched: the DELETE ran on the home shard only.
    let total = affected(&c, "SELECT * FROM users").await;
    assert_eq!(total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_statements_gather_from_every_shard() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let values: Vec<String> = (1..=100)
        .map(|id| format!("({id}, 'n{id}', {})", id % 5))
        .collect();
    c.simple_query(&format!(
        "INSERT INTO users (id, name, score) VALUES {}",
        values.join(",")
    ))
    .await
    .unwrap();
    let all = rows(&c, "SELECT id, name FROM users").await;
    assert_eq!(all.len(), 100);
    let mut ids: Vec<i64> = all
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    assert_eq!(
        affected(&c, "SELECT id FROM users WHERE score = 3").await,
        20
    );
    assert_eq!(
        affected(&c, "UPDATE users SET score = 9 WHERE score = 0").await,
        20
    );
    assert_eq!(affected(&c, "DELETE FROM users WHERE score = 9").await, 20);
    let mut per_shard = 0;
    for i in 0..3 {
        per_shard += ids_on(&shards, i, "users", "id").await.len();
    }
    assert_eq!(per_shard, 80);
    // An empty keyless result still describes its columns.
    let msgs = c
        .simple_query("SELECT id FROM users WHERE id < 0")
        .await
        .unwrap();
    assert!(matches!(
        msgs.last(),
        Some(tokio_postgres::SimpleQueryMessage::CommandComplete(0))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_without_tables_and_catalog_queries_answer_from_one_shard() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    assert_eq!(value(&c, "SELECT 1").await, "1");
    assert!(!value(&c, "SELECT now()").await.is_empty());
    assert_eq!(value(&c, "SHOW standard_conforming_strings").await, "on");
    // What psql's \dt users sends.
    let dt = rows(
        &c,
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r','p','') AND c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default \
         AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
    )
    .await;
    assert_eq!(dt, vec![vec![Some("public".into()), Some("users".into())]]);
    // Reference tables: writes everywhere, reads from one.
    // The client sees one copy's answer, not the sum over the copies.
    let sql = "INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan')";
    assert_eq!(affected(&c, sql).await, 2);
    let returned = rows(&c, "UPDATE countries SET name = upper(name) RETURNING code").await;
    assert_eq!(returned.len(), 2);
    assert_eq!(affected(&c, "SELECT * FROM countries").await, 2);
    let sql = "SELECT count(*) FROM countries WHERE name = 'JAPAN'";
    assert_eq!(
        shards.scalar_each(sql).await,
        [1, 1, 1],
        "every shard holds a full copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_postgres_errors_keep_the_session_usable() {
    let (_shards, proxy) = setup().await;
    let c = proxy.client().await;
    affected(&c, "INSERT INTO users (id, name) VALUES (1, 'a')").await;
    // Cannot be placed: refused, never broadcast.
    assert_eq!(
        sqlstate(&c, "INSERT INTO users SELECT * FROM users").await,
        "0A000"
    );
    assert_eq!(
        sqlstate(&c, "INSERT INTO users (name) VALUES ('no key')").await,
        "0A000"
    );
    assert_eq!(
        sqlstate(&c, "UPDATE users SET id = 2 WHERE id = 1").await,
        "0A000"
    );
    // Not exact across shards: refused with a reason.
    assert_eq!(
        sqlstate(&c, "SELECT rank() OVER (ORDER BY id) FROM users").await,
        "0A000"
    );
    assert_eq!(
        sqlstate(&c, "SELECT string_agg(name, ',') FROM users").await,
        "0A000"
    );
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "1");
    // Tables the config does not list.
    assert_eq!(sqlstate(&c, "INSERT INTO ghosts VALUES (1)").await, "42P01");
    assert_eq!(sqlstate(&c, "SELECT * FROM ghosts").await, "42P01");
    // PostgreSQL's own errors, unchanged.
    assert_eq!(
        sqlstate(&c, "INSERT INTO users (id, name) VALUES (1, 'dup')").await,
        "23505"
    );
    assert_eq!(sqlstate(&c, "SELECT 1/0").await, "22012");
    assert_eq!(sqlstate(&c, "SELEC 1").await, "42601");
    assert_eq!(
        sqlstate(&c, "SELECT nosuchcolumn FROM users WHERE id = 1").await,
        "42703"
    );
    // And the session goes on.
    assert_eq!(value(&c, "SELECT name FROM users WHERE id = 1").await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_span_shards_and_roll_back_together() {
    let (shards, proxy) = setup().await;
    let c = proxy.client().await;
    let (a, b) = proxy.keys_on_two_shards();
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users (id) VALUES ({a}); INSERT INTO users (id) VALUES ({b}); ROLLBACK"
    ))
    .await
    .unwrap();
    assert_eq!(affected(&c, "SELECT * FROM users").await, 0);
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query(&format!("INSERT INTO users (id) VALUES ({a})"))
        .await
        .unwrap();
    c.simple_query(&format!("INSERT INTO users (id) VALUES ({b})"))
        .await
        .unwrap();
    // Inside the transaction the rows are visible through it, not to others.
    assert_eq!(affected(&c, "SELECT * FROM users").await, 2);
    let other = proxy.client().await;
    assert_eq!(affected(&other, "SELECT * FROM users").await, 0);
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(affected(&other, "SELECT * FROM users").await, 2);

    // An error aborts the whole transaction until ROLLBACK.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query(&format!("UPDATE users SET score = 1 WHERE id = {a}"))
        .await
        .unwrap();
    assert_eq!(
        sqlstate(&c, &format!("INSERT INTO users (id) VALUES ({b})")).await,
        "23505"
    );
    assert_eq!(sqlstate(&c, "SELECT 1").await, "25P02");
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        value(
            &c,
            &format!("SELECT coalesce(score, 0) FROM users WHERE id = {a}")
        )
        .await,
        "0"
    );

    // A multi-row INSERT that fails on one shard leaves no row on any shard.
    let sql = format!("INSERT INTO users (id) VALUES (5000), (5001), (5002), ({b})");
    assert_eq!(sqlstate(&c, &sql).await, "23505");
    for i in 0..3 {
        let ids = ids_on(&shards, i, "users", "id").await;
        assert!(ids.iter().all(|id| *id < 5000), "shard {i}: {ids:?}");
    }
    // So does a multi-statement string (one implicit transaction).
    let sql = format!("INSERT INTO users (id) VALUES (6000); INSERT INTO users (id) VALUES ({b})");
    assert_eq!(sqlstate(&c, &sql).await, "23505");
    assert_eq!(affected(&c, "SELECT * FROM users WHERE id = 6000").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_follow_the_client_not_the_connection() {
    let shards = Shards::start(2).await;
    // One pooled connection per shard: both clients must share it.
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 1", TABLES).await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    a.simple_query("SET statement_timeout = '123s'")
        .await
        .unwrap();
    assert_eq!(value(&a, "SHOW statement_timeout").await, "123s");
    assert_eq!(value(&b, "SHOW statement_timeout").await, "0");
    assert_eq!(value(&a, "SHOW statement_timeout").await, "123s");
    a.simple_query("RESET statement_timeout").await.unwrap();
    assert_eq!(value(&a, "SHOW statement_timeout").await, "0");
    // A SET inside a rolled-back transaction is undone, as in PostgreSQL.
    a.batch_execute("BEGIN; SET work_mem = '7MB'; ROLLBACK")
        .await
        .unwrap();
    assert_ne!(value(&a, "SHOW work_mem").await, "7MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_paths_answer_with_errors_not_hangs() {
    let (_shards, proxy) = setup().await;
    let c = proxy.client().await;
    // A keyless write returning rows through the extended protocol is refused cleanly...
    let err = c
        .query("UPDATE users SET name = name RETURNING id", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("0A000"));
    // ...and the connection goes on.
    assert_eq!(value(&c, "SELECT 'still here'").await, "still here");
    // Input that is not UTF-8 gets 22021 on a connection that stays usable.
    let mut s = support::proxy::send_and_keep_socket(proxy.addr, "SELECT 1").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = b"SELECT '\xff'\0";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((bad.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(bad);
    s.write_all(&msg).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Two ReadyForQuery messages: after SELECT 1 and after the refused query.
    while got.windows(5).filter(|w| *w == [b'Z', 0, 0, 0, 5]).count() < 2 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the proxy hung up");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.windows(6).any(|w| w == b"C22021"),
        "SQLSTATE 22021 reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_insert_returning_keeps_values_order() {
    let (_shards, proxy) = setup().await;
    let c = proxy.client().await;
    // Keys in a scrambled order, spread over all shards.
    let ids: Vec<i64> = vec![907, 3, 55, 1200, 8, 71, 640, 2, 19, 333, 4, 88];
    let values: Vec<String> = ids.iter().map(|id| format!("({id}, 'n{id}')")).collect();
    let sql = format!(
        "INSERT INTO users (id, name) VALUES {} RETURNING id",
        values.join(", ")
    );
    let got: Vec<i64> = rows(&c, &sql)
        .await
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, ids, "RETURNING rows come back in VALUES order");
    // When ON CONFLICT skips rows the order cannot be known: refused, and nothing applied.
    let ring = proxy.ctx.ring.load();
    let home = ring.shard_for_key(&Key::Int(907));
    let elsewhere: Vec<i64> = (5000..)
        .filter(|k| ring.shard_for_key(&Key::Int(*k)) != home)
        .take(2)
        .collect();
    let (a, b) = (elsewhere[0], elsewhere[1]);
    let rows_sql = format!("VALUES ({a}, 'x'), (907, 'dup'), ({b}, 'y') ON CONFLICT DO NOTHING");
    let sql = format!("INSERT INTO users (id, name) {rows_sql} RETURNING id");
    assert_eq!(sqlstate(&c, &sql).await, "0A000");
    let check = format!("SELECT * FROM users WHERE id IN ({a}, {b})");
    assert_eq!(affected(&c, &check).await, 0);
    // Without RETURNING the same statement is fine.
    let sql = format!("INSERT INTO users (id, name) {rows_sql}");
    assert_eq!(affected(&c, &sql).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_in_a_simple_query_gets_postgres_own_error() {
    let (_shards, proxy) = setup().await;
    let c = proxy.client().await;
    assert_eq!(
        sqlstate(&c, "SELECT * FROM users WHERE id = $1").await,
        "42P02"
    );
    assert_eq!(value(&c, "SELECT 'fine'").await, "fine");
}

/// After the first statement of a shape (the text with its constants taken out), the proxy
/// routes the others by their own literals without parsing them: every one must still reach
/// the shard its key names, and whatever the shape's plan cannot route falls back to the
/// statement's own plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_one_shape_are_routed_by_their_own_literals() {
    let shards = Shards::start(3).await;
    let extra = format!("{TABLES}\n[[tables]]\nname = \"mail\"\nshard_key = \"addr\"\n");
    let proxy = Proxy::start(&shards.urls(), &extra).await;
    let c = proxy.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    c.batch_execute("CREATE TABLE mail (addr text PRIMARY KEY, n int)")
        .await
        .unwrap();
    let ring = proxy.ctx.ring.load();

    // Text keys holding quotes and spaces: one shape, sixty values.
    let addr = |i: usize| format!("o'brien {i}@example.com");
    let quoted = |i: usize| addr(i).replace('\'', "''");
    for i in 0..60 {
        let sql = format!("INSERT INTO mail (addr, n) VALUES ('{}', {i})", quoted(i));
        assert_eq!(affected(&c, &sql).await, 1);
    }
    let mut placed = 0;
    for s in 0..3 {
        let direct = shards.client(s).await;
        for row in direct.query("SELECT addr FROM mail", &[]).await.unwrap() {
            let a: String = row.get(0);
            let home = ring.shard_for_key(&Key::Text(a.clone())).0 as usize;
            assert_eq!(home, s, "{a} is on the shard the ring names");
            placed += 1;
        }
    }
    assert_eq!(placed, 60, "every row exactly once");
    // Reads and writes of one shape each find their own row.
    for i in 0..60 {
        let sql = format!("UPDATE mail SET n = n + 100 WHERE addr = '{}'", quoted(i));
        assert_eq!(affected(&c, &sql).await, 1, "update of row {i}");
        let sql = format!("SELECT n FROM mail WHERE addr = '{}'", quoted(i));
        assert_eq!(value(&c, &sql).await, (i + 100).to_string());
    }

    // Integer keys: an IN list over two shards is the statement's own plan's to gather.
    let (a, b) = proxy.keys_on_two_shards();
    for k in [a, b, a + 1000, b + 1000] {
        let sql = format!("INSERT INTO users (id, name) VALUES ({k}, 'k{k}')");
        assert_eq!(affected(&c, &sql).await, 1);
    }
    let count = |x: i64, y: i64| format!("SELECT count(*) FROM users WHERE id IN ({x}, {y})");
    assert_eq!(value(&c, &count(a, a)).await, "1");
    assert_eq!(value(&c, &count(a, b)).await, "2");
    assert_eq!(value(&c, &count(a + 1000, b + 1000)).await, "2");
    // A string that is no integer: PostgreSQL's own error, after the same shape routed fine.
    let by_string = |k: &str| format!("SELECT name FROM users WHERE id = '{k}'");
    assert_eq!(value(&c, &by_string(&a.to_string())).await, format!("k{a}"));
    assert_eq!(value(&c, &by_string(&b.to_string())).await, format!("k{b}"));
    assert_eq!(sqlstate(&c, &by_string("abc")).await, "22P02");
    // Negative and decimal constants stay part of the shape.
    assert_eq!(
        value(
            &c,
            &format!("SELECT count(*) FROM users WHERE id = {a} AND score IS NULL AND -1 < 0")
        )
        .await,
        "1"
    );
    // In a transaction that rolls back, rows written by shape are gone on every shard.
    c.batch_execute("BEGIN").await.unwrap();
    for k in 9000..9020i64 {
        let sql = format!("INSERT INTO users (id, name) VALUES ({k}, 'k{k}')");
        assert_eq!(affected(&c, &sql).await, 1);
    }
    c.batch_execute("ROLLBACK").await.unwrap();
    let sql = "SELECT count(*) FROM users WHERE id >= 9000";
    assert_eq!(shards.scalar_each(sql).await, [0, 0, 0]);
    // A failed transaction refuses statements of a known shape too.
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(sqlstate(&c, &by_string("abc")).await, "22P02");
    assert_eq!(sqlstate(&c, &by_string(&a.to_string())).await, "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(value(&c, &by_string(&a.to_string())).await, format!("k{a}"));
}
