//! The extended query protocol through the proxy with tokio-postgres: prepared statements,
//! binary parameters routed by key, lazy preparation on pooled connections, errors mid-batch.

mod support;

use shardgate::ring::Key;
use support::proxy::{affected, rows, value, Proxy};
use support::Shards;

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "accounts"
shard_key = "login"
"#;

async fn setup(pool: &str) -> (Shards, Proxy) {
    let shards = Shards::start(3).await;
    let proxy = Proxy::start_with(&shards.urls(), pool, TABLES).await;
    proxy
        .client()
        .await
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, name text);
             CREATE TABLE accounts (login text PRIMARY KEY, balance int)",
        )
        .await
        .unwrap();
    (shards, proxy)
}

/// Inserts users 1..=n through the proxy with a prepared statement, named by `name`.
async fn insert_users(c: &tokio_postgres::Client, n: i64, name: impl Fn(i64) -> String) {
    let insert = c
        .prepare("INSERT INTO users (id, name) VALUES ($1, $2)")
        .await
        .unwrap();
    for id in 1..=n {
        assert_eq!(c.execute(&insert, &[&id, &name(id)]).await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_keys_route_to_one_shard() {
    let (shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    insert_users(&c, 120, |id| format!("n{id}")).await;
    // Every row sits on the shard the ring names for its key.
    let ring = proxy.ctx.ring.load();
    let mut total = 0;
    for i in 0..3 {
        let direct = shards.client(i).await;
        for row in direct.query("SELECT id FROM users", &[]).await.unwrap() {
            let id: i64 = row.get(0);
            assert_eq!(ring.shard_for_key(&Key::Int(id)).0 as usize, i, "row {id}");
            total += 1;
        }
    }
    assert_eq!(total, 120);
    // A key bound in binary lands where the same key as a literal does: plant impostors on
    // the other shards and read through a prepared statement.
    let home = ring.shard_for_key(&Key::Int(42)).0 as usize;
    for i in (0..3).filter(|i| *i != home) {
        shards
            .client(i)
            .await
            .simple_query("INSERT INTO users VALUES (42, 'impostor')")
            .await
            .unwrap();
    }
    let rows = c
        .query("SELECT name FROM users WHERE id = $1", &[&42i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "n42");
    // Text keys, bound as text.
    c.execute("INSERT INTO accounts VALUES ($1, $2)", &[&"Ada", &10i32])
        .await
        .unwrap();
    let r = c
        .query_one("SELECT balance FROM accounts WHERE login = $1", &[&"Ada"])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 10);
    // UPDATE and DELETE by bound key.
    assert_eq!(
        c.execute(
            "UPDATE users SET name = $2 WHERE id = $1",
            &[&7i64, &"seven"]
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        c.execute("DELETE FROM users WHERE id = $1", &[&8i64])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        value(&c, "SELECT name FROM users WHERE id = 7").await,
        "seven"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_refusals_leave_the_connection_usable() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    c.execute("INSERT INTO users VALUES ($1, $2)", &[&1i64, &"a"])
        .await
        .unwrap();
    // PostgreSQL's own error, mid-batch.
    let err = c
        .execute("INSERT INTO users VALUES ($1, $2)", &[&1i64, &"dup"])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23505");
    // What cannot be combined across shards exactly: 0A000.
    let err = c
        .query("SELECT row_number() OVER () FROM users", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    // A syntax error at Parse.
    let err = c.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42601");
    // And the connection goes on, in both protocols.
    let r = c.query_one("SELECT $1::int + 1", &[&41i32]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    assert_eq!(value(&c, "SELECT name FROM users WHERE id = 1").await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_shard_reads_with_parameters_are_merged() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    for i in 1..=40i64 {
        c.execute(
            "INSERT INTO users VALUES ($1, $2)",
            &[&i, &format!("u{:02}", i % 7)],
        )
        .await
        .unwrap();
    }
    // Keyless, a parameter in WHERE, binary results: every shard, merged.
    let n: i64 = c
        .query_one("SELECT count(*) FROM users WHERE name <> $1", &[&"u00"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 35);
    // Keys bound to several shards, ordered and cut at the proxy.
    let rows = c
        .query(
            "SELECT id FROM users WHERE id IN ($1, $2, $3, $4) ORDER BY id DESC LIMIT 3",
            &[&3i64, &30i64, &17i64, &8i64],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [30, 17, 8]);
    // A prepared statement, executed twice.
    let stmt = c.prepare("SELECT id FROM users ORDER BY id").await.unwrap();
    for _ in 0..2 {
        let all: Vec<i64> = c
            .query(&stmt, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(all, (1..=40).collect::<Vec<i64>>());
    }
    // A portal fetched 15 rows at a time (a driver's fetch size), inside a transaction.
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    let portal = tx
        .bind("SELECT id FROM users ORDER BY id DESC", &[])
        .await
        .unwrap();
    let mut fetched = Vec::new();
    let mut chunks = 0;
    loop {
        let rows = tx.query_portal(&portal, 15).await.unwrap();
        if rows.is_empty() {
            break;
        }
        chunks += 1;
        fetched.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(chunks, 3);
    assert_eq!(fetched, (1..=40).rev().collect::<Vec<i64>>());
    tx.commit().await.unwrap();
    // A parameter in HAVING: the shards evaluate it, the proxy compares.
    let g = c
        .query_one(
            "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > $1::int ORDER BY 1 LIMIT 1",
            &[&5i32],
        )
        .await
        .unwrap();
    assert_eq!(
        (g.get::<_, String>(0), g.get::<_, i64>(1)),
        ("u01".into(), 6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_connection_pooling() {
    // One backend connection per shard, shared by three clients with their own statements.
    let (_shards, proxy) = setup("pool_size = 1").await;
    let clients = [
        proxy.client().await,
        proxy.client().await,
        proxy.client().await,
    ];
    let mut stmts = Vec::new();
    for c in &clients {
        stmts.push(
            c.prepare("SELECT name FROM users WHERE id = $1")
                .await
                .unwrap(),
        );
    }
    let other = clients[0]
        .prepare("INSERT INTO users (id, name) VALUES ($1, $2)")
        .await
        .unwrap();
    for id in 1..=30i64 {
        clients[0]
            .execute(&other, &[&id, &format!("u{id}")])
            .await
            .unwrap();
    }
    for round in 0..3 {
        for (c, st) in clients.iter().zip(&stmts) {
            let id: i64 = 1 + (round * 7 + 3) % 30;
            let r = c.query_one(st, &[&id]).await.unwrap();
            assert_eq!(r.get::<_, String>(0), format!("u{id}"));
        }
    }
    // DISCARD ALL on the shared connection does not break anyone's statements.
    clients[1].batch_execute("DISCARD ALL").await.unwrap();
    let r = clients[2].query_one(&stmts[2], &[&5i64]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "u5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_mix_simple_control_and_extended_statements() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let mut c = proxy.client().await;
    let (a, b) = proxy.keys_on_two_shards();
    // The same two-shard transaction, rolled back and then committed.
    for (commit, rows) in [(false, 0), (true, 2)] {
        let tx = c.transaction().await.unwrap();
        for (key, name) in [(a, "a"), (b, "b")] {
            tx.execute("INSERT INTO users VALUES ($1, $2)", &[&key, &name])
                .await
                .unwrap();
        }
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        assert_eq!(affected(&c, "SELECT * FROM users").await, rows);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_control_and_set_through_the_extended_protocol() {
    let (_shards, proxy) = setup("pool_size = 2").await;
    let c = proxy.client().await;
    let (a, b) = proxy.keys_on_two_shards();
    // BEGIN/ROLLBACK/COMMIT as prepared statements, as JDBC and pgbench -M prepared send them.
    c.execute("BEGIN", &[]).await.unwrap();
    c.execute("INSERT INTO users VALUES ($1, 'a')", &[&a])
        .await
        .unwrap();
    c.execute("INSERT INTO users VALUES ($1, 'b')", &[&b])
        .await
        .unwrap();
    c.execute("ROLLBACK", &[]).await.unwrap();
    assert_eq!(affected(&c, "SELECT * FROM users").await, 0);
    c.execute("BEGIN", &[]).await.unwrap();
    c.execute("INSERT INTO users VALUES ($1, 'a')", &[&a])
        .await
        .unwrap();
    c.execute("INSERT INTO users VALUES ($1, 'b')", &[&b])
        .await
        .unwrap();
    // An error inside aborts the transaction; COMMIT then rolls back, as in PostgreSQL.
    let err = c
        .execute("INSERT INTO users VALUES ($1, 'dup')", &[&a])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23505");
    let err = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    c.execute("COMMIT", &[]).await.unwrap();
    assert_eq!(affected(&c, "SELECT * FROM users").await, 0);
    // SET through the protocol follows the client onto every connection.
    c.execute("SET statement_timeout = '77s'", &[])
        .await
        .unwrap();
    for _ in 0..4 {
        let r = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
        assert_eq!(r.get::<_, String>(0), "77s");
    }
    let other = proxy.client().await;
    let r = other
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_and_keyless_writes_through_the_extended_protocol() {
    let (shards, proxy) = setup("pool_size = 2").await;
    let c = proxy.client().await;
    // DDL prepared and executed (psycopg sends everything this way) reaches every shard.
    c.execute("CREATE INDEX users_name ON users (name)", &[])
        .await
        .unwrap();
    let sql = "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name'";
    assert_eq!(
        shards.scalar_each(sql).await,
        [1, 1, 1],
        "every shard has the index"
    );
    for id in 1..=30i64 {
        c.execute("INSERT INTO users VALUES ($1, 'x')", &[&id])
            .await
            .unwrap();
    }
    // A keyless write without parameters runs on every shard, atomically, with the summed count.
    assert_eq!(
        c.execute("UPDATE users SET name = 'y'", &[]).await.unwrap(),
        30
    );
    assert_eq!(
        c.execute(
            "INSERT INTO users VALUES (100, 'a'), (200, 'b'), (300, 'c')",
            &[]
        )
        .await
        .unwrap(),
        3
    );
    // DEALLOCATE, as drivers send it after DDL, forgets the client's statements.
    let st = c
        .prepare("SELECT name FROM users WHERE id = $1")
        .await
        .unwrap();
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    let err = c.query(&st, &[&1i64]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "26000");
    let r = c
        .query_one("SELECT name FROM users WHERE id = $1", &[&1i64])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_fetch_in_pieces_with_max_rows() {
    let (_shards, proxy) = setup("pool_size = 2").await;
    let mut c = proxy.client().await;
    for id in 1..=10i64 {
        c.execute(
            "INSERT INTO accounts VALUES ($1, $2)",
            &[&format!("acc{id:02}"), &(id as i32)],
        )
        .await
        .unwrap();
    }
    let tx = c.transaction().await.unwrap();
    // A keyed statement and one that touches no table, each read two rows at a time.
    let st = tx
        .prepare("SELECT balance FROM accounts WHERE login = $1")
        .await
        .unwrap();
    let portal = tx.bind(&st, &[&"acc07"]).await.unwrap();
    let first = tx.query_portal(&portal, 2).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].get::<_, i32>(0), 7);
    let st = tx
        .prepare("SELECT g FROM generate_series(1, 5) g")
        .await
        .unwrap();
    let portal = tx.bind(&st, &[]).await.unwrap();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        // Execute with max_rows: PortalSuspended relayed, the same portal continued.
        let rows = tx.query_portal(&portal, 2).await.unwrap();
        if rows.is_empty() {
            break;
        }
        sizes.push(rows.len());
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    tx.commit().await.unwrap();
}

/// Raw extended-protocol messages, as libpq and JDBC send them (tokio-postgres never sends
/// Describe for a portal): the answers' message types, in order, up to `syncs` ReadyForQuery.
/// A raw connection through the proxy, past startup.
async fn raw_client(proxy: &Proxy) -> tokio::net::TcpStream {
    let mut s = support::proxy::send_and_keep_socket(proxy.addr, "SELECT 1").await;
    raw_exchange(&mut s, &[], 1).await;
    s
}

/// Parse of the unnamed statement, no declared types.
fn parse_msg(sql: &str) -> (u8, Vec<u8>) {
    let mut body = vec![0u8];
    body.extend_from_slice(sql.as_bytes());
    body.extend_from_slice(&[0, 0, 0]);
    (b'P', body)
}

/// Bind of the unnamed portal to the unnamed statement, no parameters.
fn bind_msg() -> (u8, Vec<u8>) {
    (b'B', vec![0; 8])
}

/// Execute of the unnamed portal, every row.
fn execute_msg() -> (u8, Vec<u8>) {
    (b'E', vec![0; 5])
}

fn sync_msg() -> (u8, Vec<u8>) {
    (b'S', Vec::new())
}
async fn raw_exchange(
    s: &mut tokio::net::TcpStream,
    msgs: &[(u8, Vec<u8>)],
    syncs: usize,
) -> Vec<u8> {
    let answers = raw_answers(s, msgs, syncs).await;
    answers.into_iter().map(|(tag, _)| tag).collect()
}

/// As `raw_exchange`, with each answer's body.
async fn raw_answers(
    s: &mut tokio::net::TcpStream,
    msgs: &[(u8, Vec<u8>)],
    syncs: usize,
) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = Vec::new();
    for (tag, body) in msgs {
        out.push(*tag);
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
    }
    s.write_all(&out).await.unwrap();
    let mut answers: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while answers.iter().filter(|(t, _)| *t == b'Z').count() < syncs {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "proxy closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 5 {
            let len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
            if buf.len() < 1 + len {
                break;
            }
            answers.push((buf[0], buf[5..1 + len].to_vec()));
            buf.drain(..1 + len);
        }
    }
    answers
}

/// The text of the first column of a DataRow's body.
fn first_value(row: &[u8]) -> String {
    let len = i32::from_be_bytes(row[2..6].try_into().unwrap()) as usize;
    String::from_utf8(row[6..6 + len].to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_describe_comes_before_merged_rows() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    for i in 1..=9i64 {
        c.execute("INSERT INTO users VALUES ($1, 'x')", &[&i])
            .await
            .unwrap();
    }
    let mut s = raw_client(&proxy).await;
    let (parse, bind, execute, sync) = (parse_msg, bind_msg(), execute_msg(), sync_msg());
    let describe = (b'D', vec![b'P', 0]);
    let sql = "SELECT id FROM users ORDER BY id DESC LIMIT 4";
    // Parse, Bind, Describe portal, Execute, Sync in one batch: the description first.
    let tags = raw_exchange(
        &mut s,
        &[
            parse(sql),
            bind.clone(),
            describe.clone(),
            execute.clone(),
            sync.clone(),
        ],
        1,
    )
    .await;
    assert_eq!(
        tags,
        b"12TDDDDCZ".to_vec(),
        "{}",
        String::from_utf8_lossy(&tags)
    );
    // Describe alone: asked of one shard.
    let tags = raw_exchange(
        &mut s,
        &[parse(sql), bind.clone(), describe, sync.clone()],
        1,
    )
    .await;
    assert_eq!(tags, b"12TZ".to_vec(), "{}", String::from_utf8_lossy(&tags));
    let tags = raw_exchange(&mut s, &[bind, execute, sync], 1).await;
    assert_eq!(
        tags,
        b"2DDDDCZ".to_vec(),
        "{}",
        String::from_utf8_lossy(&tags)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_array_parameters_reach_only_the_owning_shards() {
    let (shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    insert_users(&c, 40, |id| format!("n{id}")).await;
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    let sql = "SELECT id FROM users WHERE id = ANY($1) ORDER BY id";
    // An IN list as drivers bind it: keys on several shards, gathered and ordered.
    let rows = c.query(sql, &[&vec![3i64, 17, 30]]).await.unwrap();
    assert_eq!(ids(rows), [3, 17, 30]);
    let ring = proxy.ctx.ring.load_full();
    let shard_of = |k: i64| ring.shard_for_key(&Key::Int(k)).0 as usize;
    // Keys on two shards: rows with the same keys planted on the third would come back if it
    // were asked.
    let (a, b) = proxy.keys_on_two_shards();
    let spare = (0..3)
        .find(|&s| s != shard_of(a) && s != shard_of(b))
        .unwrap();
    let two: Vec<i64> = (1..=40).filter(|&k| shard_of(k) != spare).collect();
    let direct = shards.client(spare).await;
    for k in &two {
        direct
            .execute("INSERT INTO users VALUES ($1, 'impostor')", &[k])
            .await
            .unwrap();
    }
    let named = "SELECT id, name FROM users WHERE id = ANY($1) ORDER BY id";
    let rows = c.query(named, &[&two]).await.unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(i64, String)> = two.iter().map(|&k| (k, format!("n{k}"))).collect();
    assert_eq!(got, want);
    // int4 elements, cast.
    let two32: Vec<i32> = two.iter().map(|&k| k as i32).collect();
    let rows = c
        .query(
            "SELECT id FROM users WHERE id = ANY($1::int[]) ORDER BY id",
            &[&two32],
        )
        .await
        .unwrap();
    assert_eq!(ids(rows), two);
    // NULL elements, an empty array, a NULL array: only the keys that are there.
    let with_nulls: Vec<Option<i64>> = vec![None, Some(two[0]), None];
    assert_eq!(ids(c.query(sql, &[&with_nulls]).await.unwrap()), [two[0]]);
    assert!(c
        .query(sql, &[&Vec::<i64>::new()])
        .await
        .unwrap()
        .is_empty());
    assert!(c.query(sql, &[&None::<Vec<i64>>]).await.unwrap().is_empty());
    // Text keys.
    for login in ["ada", "bob", "cy", "dee"] {
        c.execute("INSERT INTO accounts VALUES ($1, 1)", &[&login])
            .await
            .unwrap();
    }
    let rows = c
        .query(
            "SELECT login FROM accounts WHERE login = ANY($1) ORDER BY login",
            &[&vec!["dee", "ada", "zed"]],
        )
        .await
        .unwrap();
    let logins: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(logins, ["ada", "dee"]);
    // A write by an array of keys on one shard runs there.
    let home: Vec<i64> = (1..=40).filter(|&k| shard_of(k) == 0).collect();
    assert!(home.len() >= 3, "{home:?}");
    let n = c
        .execute(
            "UPDATE users SET name = 'home' WHERE id = ANY($1)",
            &[&home[..2].to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Keys on shard 0 only: with the other shards stopped, the query still succeeds.
    shards.stop_shard(1);
    shards.stop_shard(2);
    let rows = c.query(sql, &[&home]).await.unwrap();
    assert_eq!(ids(rows), home);
    let with_nulls: Vec<Option<i64>> = home.iter().map(|&k| Some(k)).chain([None]).collect();
    assert_eq!(ids(c.query(sql, &[&with_nulls]).await.unwrap()), home);
    // While a statement that needs a stopped shard fails: they are really down.
    let elsewhere = (1..=40).find(|&k| shard_of(k) != 0).unwrap();
    assert!(c.query(sql, &[&vec![home[0], elsewhere]]).await.is_err());
    assert!(c.query("SELECT id FROM users", &[]).await.is_err());
    let rows = c.query(sql, &[&home[..1].to_vec()]).await.unwrap();
    assert_eq!(ids(rows), home[..1]);
}

/// Drivers send the unnamed statement's Parse again with every query, and the proxy keeps the
/// statement it registered when the text and types repeat. A schema change in between must
/// still plan it anew: here the table's key type is only known once it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_parse_is_planned_again_after_a_schema_change() {
    let tables = format!("{TABLES}\n[[tables]]\nname = \"events\"\nshard_key = \"id\"\n");
    let shards = Shards::start(2).await;
    let proxy = Proxy::start_with(&shards.urls(), "pool_size = 4", &tables).await;
    let mut s = support::proxy::send_and_keep_socket(proxy.addr, "SELECT 1").await;
    raw_exchange(&mut s, &[], 1).await;
    let sql = "SELECT count(*) FROM events WHERE id = $1";
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    // Unnamed portal and statement, no formats, one text parameter "7", no result formats.
    let mut bind = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'7'];
    bind.extend_from_slice(&[0, 0]);
    let batch = [
        (b'P', parse),
        (b'B', bind),
        (b'E', vec![0, 0, 0, 0, 0]),
        (b'S', Vec::new()),
    ];
    // Refused while the table is missing (by PostgreSQL at Parse; the proxy would refuse the
    // Bind, as the key's type is not known yet).
    let tags = raw_exchange(&mut s, &batch, 1).await;
    assert_eq!(tags, b"EZ".to_vec(), "{}", String::from_utf8_lossy(&tags));
    proxy
        .client()
        .await
        .batch_execute("CREATE TABLE events (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    // The same bytes again: routed by the key now.
    let tags = raw_exchange(&mut s, &batch, 1).await;
    assert_eq!(
        tags,
        b"12DCZ".to_vec(),
        "{}",
        String::from_utf8_lossy(&tags)
    );
}

/// LIMIT and OFFSET bound as parameters of a gathered query: the shards must still accept the
/// statement where they get no limit of their own (an aggregate ordered by its result, or an
/// OFFSET alone), and the proxy applies the bound values to the merged rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_limit_and_offset_of_gathered_queries() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    // Names n0..n4: n4 the most frequent, then n0..n3 alike.
    insert_users(&c, 40, |id| format!("n{}", (id % 10).min(4))).await;
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    let top = c
        .query(
            "SELECT name, count(*) AS n FROM users GROUP BY name ORDER BY n DESC, name LIMIT $1",
            &[&2i64],
        )
        .await
        .unwrap();
    let got: Vec<(String, i64)> = top.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [("n4".to_owned(), 24), ("n0".to_owned(), 4)]);
    let skipped = c
        .query("SELECT id FROM users ORDER BY id OFFSET $1", &[&36i64])
        .await
        .unwrap();
    assert_eq!(ids(skipped), [37, 38, 39, 40]);
    let page = c
        .query(
            "SELECT id FROM users ORDER BY id LIMIT $1 OFFSET $2",
            &[&3i64, &10i64],
        )
        .await
        .unwrap();
    assert_eq!(ids(page), [11, 12, 13]);
}

/// A HAVING compared with a bound parameter across shards: the shards must give the parameter
/// the type of what it is compared with, as PostgreSQL does, for a driver binds it as that
/// type (an int4 in binary here, refused as text before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn having_with_bound_parameters() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    c.batch_execute("ALTER TABLE users ADD COLUMN score int")
        .await
        .unwrap();
    let insert = c
        .prepare("INSERT INTO users (id, name, score) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    let mut min_by_name = std::collections::BTreeMap::new();
    for id in 1..=40i64 {
        let (name, score) = (format!("n{}", id % 4), (id * 7 % 50) as i32);
        c.execute(&insert, &[&id, &name, &score]).await.unwrap();
        let m = min_by_name.entry(name).or_insert(score);
        *m = (*m).min(score);
    }
    for floor in [0i32, 3, 5, 100] {
        let rows = c
            .query(
                "SELECT name, min(score) FROM users GROUP BY name HAVING min(score) >= $1 ORDER BY name",
                &[&floor],
            )
            .await
            .unwrap();
        let got: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want: Vec<(String, i32)> = (min_by_name.iter())
            .filter(|(_, m)| **m >= floor)
            .map(|(n, m)| (n.clone(), *m))
            .collect();
        assert_eq!(got, want, "HAVING min(score) >= {floor}");
    }
    let rows = c
        .query(
            "SELECT name FROM users GROUP BY name HAVING max(name) > $1 ORDER BY name",
            &[&"n1"],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, ["n2", "n3"]);
}

/// count(DISTINCT) without GROUP BY beside constants the shards evaluate: the shards group by
/// the distinct argument, so over no matching row each returns only its grand-total row, which
/// must still carry the constants (a NULL there once made the HAVING unknown and the row go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_distinct_with_constants_over_no_rows_and_some() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    c.batch_execute("ALTER TABLE users ADD COLUMN score int")
        .await
        .unwrap();
    for id in 1..=30i64 {
        let score = (id % 7) as i32;
        c.execute(
            "INSERT INTO users (id, name, score) VALUES ($1, 'n', $2)",
            &[&id, &score],
        )
        .await
        .unwrap();
    }
    let having = "SELECT count(DISTINCT score) FROM users WHERE id < $1 HAVING count(*) <= $2";
    for (below, most, want) in [(0i64, 5i64, Some(0i64)), (11, 10, Some(7)), (12, 10, None)] {
        let rows = c.query(having, &[&below, &most]).await.unwrap();
        let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(got, Vec::from_iter(want), "{having} with {below}, {most}");
    }
    let constant =
        "SELECT 'x' AS tag, count(DISTINCT score), count(*), sum(score) FROM users WHERE id < $1";
    for (below, distinct, count, sum) in [(0i64, 0i64, 0i64, None), (8, 7, 7, Some(21i64))] {
        let r = c.query_one(constant, &[&below]).await.unwrap();
        let got: (String, i64, i64, Option<i64>) = (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(
            got,
            ("x".into(), distinct, count, sum),
            "{constant} with {below}"
        );
    }
    // The simple protocol, twice each: its text, then its shape.
    for _ in 0..2 {
        let text =
            "SELECT 'x', count(DISTINCT score) FROM users WHERE id < 0 HAVING count(*) <= '5'";
        let got = rows(&c, text).await;
        assert_eq!(
            got,
            [vec![Some("x".to_string()), Some("0".to_string())]],
            "{text}"
        );
    }
}

/// An error in an extended-protocol batch rolls back what the batch ran before it, as
/// PostgreSQL rolls back the implicit transaction up to Sync: the proxy's own refusals (a
/// statement for a second shard, an unknown statement, a malformed message or Sync) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_mid_batch_rolls_back_what_the_batch_ran() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let (a, b) = proxy.keys_on_two_shards();
    let c = proxy.client().await;
    let mut s = raw_client(&proxy).await;
    let (parse, bind, execute, sync) = (parse_msg, bind_msg(), execute_msg(), sync_msg());
    let insert = [
        parse(&format!("INSERT INTO users VALUES ({a}, 'x')")),
        bind.clone(),
        execute.clone(),
    ];
    let stored = format!("SELECT count(*) FROM users WHERE id = {a}");
    let cases = [
        (
            "a statement for another shard",
            vec![
                parse(&format!("SELECT * FROM users WHERE id = {b}")),
                bind.clone(),
                execute.clone(),
                sync.clone(),
            ],
        ),
        (
            "an unknown statement",
            vec![(b'B', b"\0nosuch\0\0\0\0\0\0\0".to_vec()), sync.clone()],
        ),
        (
            "a Describe of no kind",
            vec![(b'D', b"X\0".to_vec()), sync.clone()],
        ),
        ("a Sync with a body", vec![(b'S', vec![1])]),
        (
            "a failure after a read the proxy gathers",
            vec![
                parse("SELECT count(*) FROM users"),
                bind.clone(),
                execute.clone(),
                parse(&format!("SELECT 1 / (id - id) FROM users WHERE id = {a}")),
                bind.clone(),
                execute.clone(),
                sync.clone(),
            ],
        ),
    ];
    for (case, tail) in cases {
        let msgs: Vec<(u8, Vec<u8>)> = insert.iter().cloned().chain(tail).collect();
        let tags = raw_exchange(&mut s, &msgs, 1).await;
        assert_eq!(&tags[..3], b"12C", "{case}: the INSERT ran");
        assert!(tags.contains(&b'E'), "{case}: an error");
        assert_eq!(value(&c, &stored).await, "0", "{case}: rolled back");
    }
    // The same INSERT with a plain Sync is committed.
    let msgs: Vec<(u8, Vec<u8>)> = insert.iter().cloned().chain([sync]).collect();
    assert_eq!(raw_exchange(&mut s, &msgs, 1).await, b"12CZ".to_vec());
    assert_eq!(value(&c, &stored).await, "1");
}

/// Writes on two shards with a read the proxy gathers between them, in one batch up to Sync:
/// one implicit transaction, as in PostgreSQL. The read sees the batch's own write, and the
/// writes are committed together, or rolled back together when a later statement fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_around_a_gathered_read_is_one_transaction() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let (a, b) = proxy.keys_on_two_shards();
    let c = proxy.client().await;
    let mut s = raw_client(&proxy).await;
    let (parse, bind, execute, sync) = (parse_msg, bind_msg(), execute_msg(), sync_msg());
    let batch = |key_a: i64, key_b: i64, fail: bool| {
        let mut msgs = vec![
            parse(&format!("INSERT INTO users VALUES ({key_a}, 'x')")),
            bind.clone(),
            execute.clone(),
            parse("SELECT count(*) FROM users"),
            bind.clone(),
            execute.clone(),
            parse(&format!("INSERT INTO users VALUES ({key_b}, 'y')")),
            bind.clone(),
            execute.clone(),
        ];
        if fail {
            msgs.push(parse(&format!(
                "SELECT 1 / (id - id) FROM users WHERE id = {key_a}"
            )));
            msgs.push(bind.clone());
            msgs.push(execute.clone());
        }
        msgs.push(sync.clone());
        msgs
    };
    let both = format!("SELECT count(*) FROM users WHERE id IN ({a}, {b})");
    // A failure at the end: neither write stays.
    let tags = raw_exchange(&mut s, &batch(a, b, true), 1).await;
    assert_eq!(&tags[..9], b"12C12DC12", "{tags:?}");
    assert!(tags.contains(&b'E'));
    assert_eq!(value(&c, &both).await, "0");
    // No failure: both are committed, and the read counted the first.
    let before: i64 = value(&c, "SELECT count(*) FROM users")
        .await
        .parse()
        .unwrap();
    let answers = raw_answers(&mut s, &batch(a, b, false), 1).await;
    let tags: Vec<u8> = answers.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"12C12DC12CZ".to_vec());
    assert_eq!(first_value(&answers[5].1), (before + 1).to_string());
    // Idle, as PostgreSQL is after the Sync that ends an implicit transaction.
    assert_eq!(answers[10].1, b"I");
    assert_eq!(value(&c, &both).await, "2");
    // The connection is out of any transaction: a plain batch commits at once.
    let a2 = a + 1_000_000;
    let single = [
        parse(&format!("INSERT INTO users VALUES ({a2}, 'z')")),
        bind.clone(),
        execute.clone(),
        sync.clone(),
    ];
    assert_eq!(raw_exchange(&mut s, &single, 1).await, b"12CZ".to_vec());
    assert_eq!(
        value(&c, &format!("SELECT count(*) FROM users WHERE id = {a2}")).await,
        "1"
    );
}

/// DISCARD ALL deallocates the client's prepared statements, as PostgreSQL's does; DEALLOCATE
/// one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_deallocates_prepared_statements() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let c = proxy.client().await;
    let code = |e: tokio_postgres::Error| e.as_db_error().map(|d| d.code().code().to_owned());
    let one = c.prepare("SELECT 1").await.unwrap();
    let two = c.prepare("SELECT 2").await.unwrap();
    c.query(&one, &[]).await.unwrap();
    c.batch_execute("DISCARD ALL").await.unwrap();
    for st in [&one, &two] {
        let err = c.query(st, &[]).await.unwrap_err();
        assert_eq!(code(err).as_deref(), Some("26000"));
    }
    let three = c.prepare("SELECT 3").await.unwrap();
    assert_eq!(c.query_one(&three, &[]).await.unwrap().get::<_, i32>(0), 3);
}

/// A gathered read pipelined before other statements: its Execute answers rows only (the
/// RowDescription belongs to Describe), as a later Bind of the same portal name must not
/// take its portal away before it runs; executed again, it has no more rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gathered_portal_runs_before_a_later_bind_of_its_name() {
    let (_shards, proxy) = setup("pool_size = 4").await;
    let (a, _) = proxy.keys_on_two_shards();
    let mut s = raw_client(&proxy).await;
    let (parse, bind, execute) = (parse_msg, bind_msg(), execute_msg());
    let msgs = [
        parse("SELECT count(*) FROM users"),
        bind.clone(),
        execute.clone(),
        parse(&format!("INSERT INTO users VALUES ({a}, 'x')")),
        bind,
        execute,
        sync_msg(),
    ];
    let tags = raw_exchange(&mut s, &msgs, 1).await;
    assert_eq!(tags, b"12DC12CZ", "{}", String::from_utf8_lossy(&tags));
    // Executed again after its end, the portal has no more rows: CommandComplete alone.
    let again = [
        msgs[0].clone(),
        msgs[1].clone(),
        msgs[2].clone(),
        msgs[2].clone(),
        sync_msg(),
    ];
    let tags = raw_exchange(&mut s, &again, 1).await;
    assert_eq!(tags, b"12DCCZ", "{}", String::from_utf8_lossy(&tags));
}

/// Parse of a named statement, no declared types.
fn named_parse(name: &str, sql: &str) -> (u8, Vec<u8>) {
    let mut body = name.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(sql.as_bytes());
    body.extend_from_slice(&[0, 0, 0]);
    (b'P', body)
}

/// Bind of `portal` to `statement` with one format code for every parameter, results in text.
fn bind_of(portal: &str, statement: &str, format: i16, params: &[&[u8]]) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    for name in [portal, statement] {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&format.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p);
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    (b'B', body)
}

fn query(sql: &str) -> (u8, Vec<u8>) {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    (b'Q', body)
}

fn describe_portal(portal: &str) -> (u8, Vec<u8>) {
    let mut body = vec![b'P'];
    body.extend_from_slice(portal.as_bytes());
    body.push(0);
    (b'D', body)
}

fn execute_of(portal: &str, max_rows: i32) -> (u8, Vec<u8>) {
    let mut body = portal.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&max_rows.to_be_bytes());
    (b'E', body)
}

/// An answer as the comparison sees it: an error by its SQLSTATE and message (where in the
/// server's source it was raised is no concern of the client's), anything else whole.
fn comparable((tag, body): (u8, Vec<u8>)) -> (u8, Vec<u8>) {
    if tag != b'E' {
        return (tag, body);
    }
    let mut kept = Vec::new();
    let mut fields = body.as_slice();
    while let Some((&kind, rest)) = fields.split_first().filter(|(k, _)| **k != 0) {
        let end = rest.iter().position(|&b| b == 0).unwrap();
        if matches!(kind, b'C' | b'M') {
            kept.push(kind);
            kept.extend_from_slice(&rest[..=end]);
        }
        fields = &rest[end + 1..];
    }
    (tag, kept)
}

/// What libpq and most drivers send for each query once a statement is prepared (Bind, a
/// Describe of the portal with libpq, Execute, Sync) is answered message for message as one
/// unsharded PostgreSQL answers it: rows, no rows, many rows, a write, a portal cut short by
/// max_rows, keys in text and binary, and errors from the shard and from the Bind itself, each on a
/// connection that goes on; outside a transaction block and inside one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_execute_sync_answers_as_postgresql_does() {
    let shards = Shards::start(3).await;
    let urls = shards.urls();
    let proxy = Proxy::start_with(&urls[..2], "pool_size = 2", TABLES).await;
    let c = proxy.client().await;
    let direct = shards.client(2).await;
    for db in [&c, &direct] {
        let create = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";
        db.batch_execute(create).await.unwrap();
        let insert = "INSERT INTO users VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')";
        db.batch_execute(insert).await.unwrap();
    }
    let (host, db) = (urls[2].trim_start_matches("postgres://postgres@"))
        .split_once('/')
        .unwrap();
    let mut d = support::proxy::raw_login(host.parse().unwrap(), db).await;
    let mut s = support::proxy::raw_login(proxy.addr, "app").await;
    let statements = vec![
        named_parse("get", "SELECT id, name FROM users WHERE id = $1"),
        named_parse(
            "pairs",
            "SELECT id, g FROM users, generate_series(1, $2::int) g WHERE id = $1",
        ),
        named_parse("div", "SELECT id / $2::int FROM users WHERE id = $1"),
        named_parse("put", "INSERT INTO users (id, name) VALUES ($1, $2)"),
        sync_msg(),
    ];
    let four = 4i64.to_be_bytes();
    // A key on another shard than key 1's (one of the rows above).
    let other = proxy.keys_on_two_shards().1.to_string();
    assert!(other.parse::<i64>().unwrap() <= 4, "{other}");
    let e = || execute_of("", 0);
    let cases: Vec<Vec<(u8, Vec<u8>)>> = vec![
        statements,
        vec![bind_of("", "get", 0, &[b"2"]), e(), sync_msg()],
        vec![
            bind_of("", "get", 0, &[b"3"]),
            describe_portal(""),
            e(),
            sync_msg(),
        ],
        vec![
            bind_of("", "get", 0, &[b"99"]),
            describe_portal(""),
            e(),
            sync_msg(),
        ],
        vec![bind_of("", "get", 1, &[&four]), e(), sync_msg()],
        vec![
            bind_of("", "pairs", 0, &[b"1", b"3"]),
            execute_of("", 2),
            sync_msg(),
        ],
        // Rows past what the proxy buffers before sending some on.
        vec![bind_of("", "pairs", 0, &[b"2", b"30000"]), e(), sync_msg()],
        vec![bind_of("", "div", 0, &[b"1", b"0"]), e(), sync_msg()],
        vec![bind_of("", "div", 0, &[b"2", b"2"]), e(), sync_msg()],
        vec![bind_of("", "get", 0, &[]), e(), sync_msg()],
        vec![bind_of("", "get", 0, &[b"abc"]), e(), sync_msg()],
        vec![bind_of("", "put", 0, &[b"5", b"e"]), e(), sync_msg()],
        vec![bind_of("", "put", 0, &[b"5", b"e"]), e(), sync_msg()],
        vec![
            bind_of("p1", "get", 0, &[b"5"]),
            describe_portal("p1"),
            execute_of("p1", 0),
            sync_msg(),
        ],
        vec![bind_of("", "nothing", 0, &[b"1"]), e(), sync_msg()],
        // In a transaction block: a read, a write, a portal on another shard than the read's
        // read in pieces over three batches, then an error, after which nothing runs, and the
        // rollback.
        vec![query("BEGIN")],
        vec![bind_of("", "get", 0, &[b"1"]), e(), sync_msg()],
        vec![bind_of("", "put", 0, &[b"6", b"f"]), e(), sync_msg()],
        vec![
            bind_of("c1", "pairs", 0, &[other.as_bytes(), b"5"]),
            execute_of("c1", 2),
            sync_msg(),
        ],
        vec![execute_of("c1", 2), sync_msg()],
        vec![execute_of("c1", 0), sync_msg()],
        vec![bind_of("", "div", 0, &[b"6", b"0"]), e(), sync_msg()],
        vec![bind_of("", "get", 0, &[b"6"]), e(), sync_msg()],
        vec![query("ROLLBACK")],
        vec![bind_of("", "get", 0, &[b"6"]), e(), sync_msg()],
        // And one committed.
        vec![query("BEGIN")],
        vec![bind_of("", "put", 0, &[b"7", b"g"]), e(), sync_msg()],
        vec![bind_of("", "get", 0, &[b"7"]), e(), sync_msg()],
        vec![query("COMMIT")],
        vec![bind_of("", "get", 0, &[b"7"]), e(), sync_msg()],
    ];
    for (i, case) in cases.iter().enumerate() {
        let want: Vec<_> = raw_answers(&mut d, case, 1).await;
        let got: Vec<_> = raw_answers(&mut s, case, 1).await;
        let want: Vec<_> = want.into_iter().map(comparable).collect();
        let got: Vec<_> = got.into_iter().map(comparable).collect();
        assert_eq!(
            got,
            want,
            "case {i}: {:?}",
            case.iter().map(|m| m.0 as char)
        );
    }
    // The writes reached the key's shard only, the rolled-back one none.
    for (id, rows) in [(5, 1), (6, 0), (7, 1)] {
        let sql = format!("SELECT count(*) FROM users WHERE id = {id}");
        let on_shards = shards.scalar_each(&sql).await;
        assert_eq!(on_shards[..2].iter().sum::<i64>(), rows, "{id}");
    }
}

/// Pipelines of bound statements (several Bind/Describe/Execute before one Sync, as libpq's
/// pipeline mode and pgx's batches send) are answered message for message as one unsharded
/// PostgreSQL answers them: on one shard, with an error mid-way that skips the rest and rolls
/// back the writes before it, with a Bind the proxy refuses, with portals cut short, first uses
/// of statements, and inside a transaction block. Each statement is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_of_bound_statements_answer_as_postgresql_does() {
    let shards = Shards::start(3).await;
    let urls = shards.urls();
    let proxy = Proxy::start_with(&urls[..2], "pool_size = 2", TABLES).await;
    let c = proxy.client().await;
    let direct = shards.client(2).await;
    for db in [&c, &direct] {
        let create = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";
        db.batch_execute(create).await.unwrap();
        let rows: Vec<String> = (1..=40).map(|k| format!("({k}, 'u{k}')")).collect();
        let insert = format!("INSERT INTO users VALUES {}", rows.join(", "));
        db.batch_execute(&insert).await.unwrap();
    }
    // Keys on key 1's shard: existing rows, and new ones for the writes.
    let ring = proxy.ctx.ring.load();
    let home = ring.shard_for_key(&Key::Int(1));
    let on_home: Vec<String> = (1..)
        .filter(|k| ring.shard_for_key(&Key::Int(*k)) == home)
        .take(40)
        .map(|k: i64| k.to_string())
        .collect();
    let (old, new): (Vec<&str>, Vec<&str>) = (
        on_home
            .iter()
            .filter(|k| k.parse::<i64>().unwrap() <= 40)
            .map(String::as_str)
            .collect(),
        on_home
            .iter()
            .filter(|k| k.parse::<i64>().unwrap() > 40)
            .map(String::as_str)
            .collect(),
    );
    assert!(old.len() >= 3 && new.len() >= 6, "{old:?} {new:?}");
    // No row has it, and none is written.
    let absent = new[5];
    let other = proxy.keys_on_two_shards().1.to_string();
    let (host, db) = (urls[2].trim_start_matches("postgres://postgres@"))
        .split_once('/')
        .unwrap();
    let mut d = support::proxy::raw_login(host.parse().unwrap(), db).await;
    let mut s = support::proxy::raw_login(proxy.addr, "app").await;
    let get = |k: &str| bind_of("", "get", 0, &[k.as_bytes()]);
    let put = |k: &str| bind_of("", "put", 0, &[k.as_bytes(), b"n"]);
    let e = || execute_of("", 0);
    let cases: Vec<Vec<(u8, Vec<u8>)>> = vec![
        vec![
            named_parse("get", "SELECT id, name FROM users WHERE id = $1"),
            named_parse(
                "pairs",
                "SELECT id, g FROM users, generate_series(1, $2::int) g WHERE id = $1",
            ),
            named_parse("div", "SELECT id / $2::int FROM users WHERE id = $1"),
            named_parse("put", "INSERT INTO users (id, name) VALUES ($1, $2)"),
            sync_msg(),
        ],
        // As libpq sends them, and without the Describes.
        vec![
            get(old[0]),
            describe_portal(""),
            e(),
            get(old[1]),
            describe_portal(""),
            e(),
            sync_msg(),
        ],
        vec![
            get(old[0]),
            e(),
            get(absent),
            e(),
            get(old[2]),
            e(),
            sync_msg(),
        ],
        // Named portals, one cut short by max_rows.
        vec![
            bind_of("p1", "pairs", 0, &[old[0].as_bytes(), b"5"]),
            describe_portal("p1"),
            execute_of("p1", 2),
            bind_of("p2", "get", 0, &[old[1].as_bytes()]),
            describe_portal("p2"),
            execute_of("p2", 0),
            sync_msg(),
        ],
        // An error mid-way: nothing after it runs.
        vec![
            get(old[0]),
            e(),
            bind_of("", "div", 0, &[old[1].as_bytes(), b"0"]),
            e(),
            get(old[2]),
            e(),
            sync_msg(),
        ],
        // Writes, then writes rolled back by a duplicate key after them.
        vec![put(new[0]), e(), put(new[1]), e(), sync_msg()],
        vec![put(new[2]), e(), put(new[0]), e(), sync_msg()],
        // A Bind the proxy refuses itself after one it runs.
        vec![get(old[0]), e(), get("abc"), e(), sync_msg()],
        // First uses of statements.
        vec![
            named_parse("get2", "SELECT name, id FROM users WHERE id = $1"),
            named_parse("put2", "INSERT INTO users (name, id) VALUES ($2, $1)"),
            sync_msg(),
        ],
        vec![
            bind_of("", "get2", 0, &[old[0].as_bytes()]),
            e(),
            bind_of("", "put2", 0, &[new[3].as_bytes(), b"m"]),
            e(),
            bind_of("", "get2", 0, &[new[3].as_bytes()]),
            e(),
            sync_msg(),
        ],
        // In a transaction block: a read and a write, then an error, after which nothing
        // runs, and the rollback.
        vec![query("BEGIN")],
        vec![get(old[0]), e(), put(new[4]), e(), sync_msg()],
        vec![get(new[4]), e(), sync_msg()],
        vec![
            bind_of("", "div", 0, &[old[0].as_bytes(), b"0"]),
            e(),
            get(old[1]),
            e(),
            sync_msg(),
        ],
        vec![get(old[0]), e(), get(old[1]), e(), sync_msg()],
        vec![query("ROLLBACK")],
        vec![get(new[4]), e(), get(new[0]), e(), sync_msg()],
    ];
    for (i, case) in cases.iter().enumerate() {
        let want: Vec<_> = raw_answers(&mut d, case, 1).await;
        let got: Vec<_> = raw_answers(&mut s, case, 1).await;
        let want: Vec<_> = want.into_iter().map(comparable).collect();
        let got: Vec<_> = got.into_iter().map(comparable).collect();
        assert_eq!(
            got,
            want,
            "case {i}: {:?}",
            case.iter().map(|m| m.0 as char)
        );
    }
    for (key, rows) in [
        (new[0], 1),
        (new[1], 1),
        (new[2], 0),
        (new[3], 1),
        (new[4], 0),
    ] {
        let sql = format!("SELECT count(*) FROM users WHERE id = {key}");
        let on_shards = shards.scalar_each(&sql).await;
        assert_eq!(on_shards[..2].iter().sum::<i64>(), rows, "{key}");
    }

    // Each statement is counted once, whichever path the pipeline takes.
    let counts = || {
        let t = proxy.ctx.stats.table_counts();
        let (_, statements, keys) = t.into_iter().find(|(n, _, _)| &**n == "users").unwrap();
        (statements, keys)
    };
    let two_gets = |a: &str, b: &str| vec![get(a), e(), get(b), e(), sync_msg()];
    let before = counts();
    raw_answers(&mut s, &two_gets(old[0], old[1]), 1).await;
    let after = counts();
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 2));
    // Keys on two shards: the batch machinery, which runs the first and refuses the second.
    let answers = raw_answers(&mut s, &two_gets(old[0], &other), 1).await;
    let tags: Vec<u8> = answers.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"2DCEZ", "{answers:?}");
    let error = String::from_utf8_lossy(&answers[3].1).into_owned();
    assert!(error.contains("C0A000\0"), "{error}");
    let again = counts();
    assert_eq!((again.0 - after.0, again.1 - after.1), (2, 2));
}
