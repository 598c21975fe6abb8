//! `[proxy] auto_prepare`: simple-protocol statements of one shape run on the shard as one
//! prepared statement, and every answer (rows, column names, constants' types, errors with
//! their positions) is the one PostgreSQL gives the statement's own text.

mod support;

use support::proxy::Proxy;
use support::Shards;
use tokio_postgres::{Client, SimpleQueryMessage};

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"
key_type = "bigint"
"#;

/// What a client sees of a simple query: column names and text values per result, or the
/// error's SQLSTATE, message and position.
async fn answer(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(msgs) => {
            let mut out = String::new();
            for m in msgs {
                match m {
                    SimpleQueryMessage::RowDescription(cols) => {
                        let names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
                        out.push_str(&format!("cols {names:?}\n"));
                    }
                    SimpleQueryMessage::Row(r) => {
                        let vals: Vec<Option<&str>> = (0..r.len()).map(|i| r.get(i)).collect();
                        out.push_str(&format!("row {vals:?}\n"));
                    }
                    SimpleQueryMessage::CommandComplete(n) => {
                        out.push_str(&format!("done {n}\n"));
                    }
                    _ => {}
                }
            }
            out
        }
        Err(e) => match e.as_db_error() {
            Some(db) => format!(
                "error {} {} at {:?}",
                db.code().code(),
                db.message(),
                db.position()
            ),
            None => format!("client error {e}"),
        },
    }
}

/// An `answer` with its lines sorted: a read without ORDER BY over several shards may give its
/// rows in any order, as PostgreSQL may.
fn sorted(answer: String) -> String {
    let mut lines: Vec<&str> = answer.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Statements of one shape each, run with several constants: `{k}` is a key that exists.
const SHAPES: &[&str] = &[
    "SELECT id, name, score FROM users WHERE id = {k}",
    "SELECT pg_typeof({k}), pg_typeof(2147483648), pg_typeof(9223372036854775808), \
     pg_typeof('x'), 'lit', {k} + 1, 00042 FROM users WHERE id = {k}",
    "SELECT upper('abc' || name), 'a' || 'b', length('it''s') FROM users WHERE id = {k}",
    "SELECT id, name FROM users WHERE id IN ({k}, 1, 12) ORDER BY 2 DESC, 1",
    "SELECT score > 50, count(*) FROM users WHERE id IN ({k}, 1, 2, 9) GROUP BY 1 ORDER BY 1",
    "SELECT id, pg_typeof(-2147483648), -2147483648 FROM users WHERE id = {k}",
    "SELECT id FROM users WHERE id = {k} AND score > -1 LIMIT 5 OFFSET 0",
    "SELECT 'a\\b' AS backslash FROM users WHERE id = {k}",
    "SELECT E'\\x41' FROM users WHERE id = {k}",
    "SELECT id, DATE '2024-01-01' + {k}, INTERVAL '{k} days' FROM users WHERE id = {k}",
    "UPDATE users SET score = score + 1 WHERE id = {k} RETURNING score, pg_typeof(score)",
    "UPDATE users SET name = 'n''{k}' WHERE id = {k}",
    "SELECT id FROM users WHERE id = {k} AND name = 'n''{k}'",
    "SELECT id / ({k} - {k}) FROM users WHERE id = {k}",
    "SELECT nosuch FROM users WHERE id = {k}",
    "SELECT id FROM users WHERE id = 'abc{k}'",
    "SELECT id FROM users WHERE id = '{k}'",
    "INSERT INTO users (id, name, score) VALUES (1{k}, 'new', {k}) RETURNING *",
    "DELETE FROM users WHERE id = 1{k}",
];

/// The proxy over database 1 of one cluster; database 0, the reference, holds the same rows
/// and is queried directly. Returns the reference's client and the proxy's.
async fn setup(proxy_opts: &str) -> (Shards, Proxy, Client, Client) {
    let shards = Shards::databases(2).await;
    // One server connection: every statement meets the ones prepared before it.
    let proxy = Proxy::start_with(&shards.urls()[1..], proxy_opts, TABLES).await;
    for i in 0..2 {
        shards
            .client(i)
            .await
            .batch_execute(
                "CREATE TABLE users (id bigint PRIMARY KEY, name text, score int);
                 INSERT INTO users SELECT g, 'user ' || g, g * 10 FROM generate_series(1, 20) g",
            )
            .await
            .unwrap();
    }
    let direct = shards.client(0).await;
    let client = proxy.client().await;
    (shards, proxy, direct, client)
}

/// The statements the proxy's one server connection holds, as the shard lists them.
async fn prepared_on_server(client: &Client) -> Vec<String> {
    let sql = "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'sg\\_%' ORDER BY 1";
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_run_prepared_and_answer_as_their_text() {
    let (_shards, _proxy, direct, client) = setup("pool_size = 1").await;
    for shape in SHAPES {
        // The same statement through the proxy and straight to the database: the first of a
        // shape plans the shape, the second prepares it, the rest bind to it.
        for k in [3, 4, 5, 6, 7] {
            let sql = shape.replace("{k}", &k.to_string());
            let theirs = answer(&direct, &sql).await;
            let ours = answer(&client, &sql).await;
            assert_eq!(ours, theirs, "{sql}");
        }
    }
    let held = prepared_on_server(&client).await;
    for text in [
        "SELECT id, name, score FROM users WHERE id = $1",
        "UPDATE users SET name = $1 WHERE id = $2",
        "INSERT INTO users (id, name, score) VALUES ($1, $2, $3) RETURNING *",
    ] {
        assert!(held.iter().any(|s| s == text), "{text} not in {held:?}");
    }
    // Constants that are positions, or that a sign or a backslash changes, stay in the text;
    // a statement the shard cannot prepare without its constants is not kept either.
    for part in ["ORDER BY $", "GROUP BY $", "-$", "'a\\b'", "nosuch"] {
        assert!(!held.iter().any(|s| s.contains(part)), "{part} in {held:?}");
    }
}

/// A column added on the shard changes the result type of a statement the connection holds:
/// PostgreSQL refuses to bind it (0A000), and the proxy answers from the text instead, then
/// prepares the statement anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_under_a_prepared_shape_is_not_seen_by_the_client() {
    let (shards, _proxy, direct, client) = setup("pool_size = 1").await;
    let sql = |k: i32| format!("SELECT * FROM users WHERE id = {k}");
    for k in 1..4 {
        assert_eq!(
            answer(&client, &sql(k)).await,
            answer(&direct, &sql(k)).await
        );
    }
    for i in 0..2 {
        shards
            .client(i)
            .await
            .batch_execute("ALTER TABLE users ADD COLUMN extra int DEFAULT 7")
            .await
            .unwrap();
    }
    for k in 4..8 {
        let ours = answer(&client, &sql(k)).await;
        assert!(ours.contains("\"extra\""), "{ours}");
        assert_eq!(ours, answer(&direct, &sql(k)).await);
    }
    let held = prepared_on_server(&client).await;
    assert!(
        held.contains(&"SELECT * FROM users WHERE id = $1".to_owned()),
        "{held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prepare_off_sends_every_statement_as_text() {
    let (_shards, _proxy, direct, client) = setup("pool_size = 1\nauto_prepare = false").await;
    for k in 1..6 {
        let sql = format!("SELECT id, name FROM users WHERE id = {k}");
        assert_eq!(answer(&client, &sql).await, answer(&direct, &sql).await);
    }
    assert!(prepared_on_server(&client).await.is_empty());
}

/// Inside a transaction block a refused prepared form could not be retried: statements there
/// run as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_a_transaction_block_run_as_text() {
    let (_shards, _proxy, _direct, client) = setup("pool_size = 1").await;
    client.batch_execute("BEGIN").await.unwrap();
    for k in 1..6 {
        let sql = format!("SELECT id, name FROM users WHERE id = {k}");
        client.simple_query(&sql).await.unwrap();
    }
    assert!(prepared_on_server(&client).await.is_empty());
    client.batch_execute("COMMIT").await.unwrap();
}

/// Rows of an extended-protocol query through the unnamed statement, as text.
async fn typed_rows(c: &Client, sql: &str, k: i64) -> Vec<Vec<String>> {
    let rows = c
        .query_typed(sql, &[(&k, tokio_postgres::types::Type::INT8)])
        .await
        .unwrap_or_else(|e| panic!("{sql} with {k}: {e:?}"));
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match *r.columns()[i].type_() {
                    tokio_postgres::types::Type::INT8 => {
                        format!("{:?}", r.get::<_, Option<i64>>(i))
                    }
                    tokio_postgres::types::Type::INT4 => {
                        format!("{:?}", r.get::<_, Option<i32>>(i))
                    }
                    _ => format!("{:?}", r.get::<_, Option<String>>(i)),
                })
                .collect()
        })
        .collect()
}

/// A driver's unnamed statement (Parse "" with every query) is parsed once per shard
/// connection under its own name, and answers as it would unnamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_are_parsed_once_per_connection() {
    let (_shards, _proxy, direct, client) = setup("pool_size = 1").await;
    let sql = "SELECT id, name, score FROM users WHERE id = $1";
    for k in 1..6 {
        assert_eq!(
            typed_rows(&client, sql, k).await,
            typed_rows(&direct, sql, k).await
        );
    }
    assert!(prepared_on_server(&client).await.contains(&sql.to_owned()));
}

/// After a column is added on the shard, a kept statement of `SELECT *` is refused at Bind
/// (0A000); outside a transaction the proxy prepares it anew and runs the batch again, inside
/// one the statement goes unnamed as the client sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_survive_a_schema_change() {
    let (shards, _proxy, direct, client) = setup("pool_size = 1").await;
    let sql = "SELECT * FROM users WHERE id = $1";
    for k in 1..4 {
        assert_eq!(
            typed_rows(&client, sql, k).await,
            typed_rows(&direct, sql, k).await
        );
    }
    for i in 0..2 {
        shards
            .client(i)
            .await
            .batch_execute("ALTER TABLE users ADD COLUMN extra text DEFAULT 'x'")
            .await
            .unwrap();
    }
    for k in 4..7 {
        let ours = typed_rows(&client, sql, k).await;
        assert_eq!(ours[0].len(), 4, "{ours:?}");
        assert_eq!(ours, typed_rows(&direct, sql, k).await);
    }
    for i in 0..2 {
        shards
            .client(i)
            .await
            .batch_execute("ALTER TABLE users DROP COLUMN extra")
            .await
            .unwrap();
    }
    client.batch_execute("BEGIN").await.unwrap();
    for k in 7..9 {
        assert_eq!(
            typed_rows(&client, sql, k).await,
            typed_rows(&direct, sql, k).await
        );
    }
    client.batch_execute("COMMIT").await.unwrap();
}

/// The held statements of `prefix` among those the proxy's one server connection lists.
async fn held_with(client: &Client, prefix: &str) -> Vec<String> {
    let mut held = prepared_on_server(client).await;
    held.retain(|s| s.contains(prefix));
    held
}

/// A connection holds at most 500 statements: the 501st first closes the 50 used least
/// recently, which are prepared again when they are next used, and every answer stays the one
/// PostgreSQL gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_closes_its_least_recently_used_statements() {
    let (_shards, _proxy, direct, client) = setup("pool_size = 1").await;
    let unnamed = |i: usize| format!("SELECT id, name AS n{i} FROM users WHERE id = $1");
    for i in 0..500 {
        typed_rows(&client, &unnamed(i), 1).await;
    }
    // The first is used again: the second is now the least recently used.
    assert_eq!(
        typed_rows(&client, &unnamed(0), 2).await,
        typed_rows(&direct, &unnamed(0), 2).await
    );
    assert_eq!(held_with(&client, " AS n").await.len(), 500);
    assert_eq!(
        typed_rows(&client, &unnamed(500), 3).await,
        typed_rows(&direct, &unnamed(500), 3).await
    );
    let held = held_with(&client, " AS n").await;
    assert_eq!(held.len(), 451, "50 closed, one added");
    assert!(held.contains(&unnamed(0)) && held.contains(&unnamed(500)));
    assert!(held.contains(&unnamed(51)) && !held.contains(&unnamed(50)));
    assert!((1..=50).all(|i| !held.contains(&unnamed(i))));
    // A closed statement is prepared again on its next use.
    assert_eq!(
        typed_rows(&client, &unnamed(1), 4).await,
        typed_rows(&direct, &unnamed(1), 4).await
    );
    assert!(held_with(&client, " AS n").await.contains(&unnamed(1)));

    // Simple-protocol shapes fill the connection again and make room the same way.
    for i in 0..60 {
        let sql = format!(
            "SELECT id, name AS s{i} FROM users WHERE id = {}",
            i % 20 + 1
        );
        for _ in 0..2 {
            assert_eq!(answer(&client, &sql).await, answer(&direct, &sql).await);
        }
    }
    let all = prepared_on_server(&client).await;
    assert!(all.len() <= 500, "{} statements held", all.len());
    let shaped = |i: usize| format!("SELECT id, name AS s{i} FROM users WHERE id = $1");
    assert!(all.contains(&shaped(59)), "the newest shape is held");
}

/// Reads over several shards of one shape run by the shape's merge plan with the literals
/// bound; every answer, errors with their positions included, is the one an unsharded
/// database gives the statement's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_shapes_answer_as_their_text() {
    let shards = Shards::databases(4).await;
    let proxy = Proxy::start_with(&shards.urls()[1..], "pool_size = 2", TABLES).await;
    let direct = shards.client(0).await;
    let client = proxy.client().await;
    let ddl = "CREATE TABLE users (id bigint PRIMARY KEY, name text, score int)";
    let values: Vec<String> = (1..=60)
        .map(|g| format!("({g}, 'user {}', {})", g % 7, g * 10 % 170))
        .collect();
    let rows = format!("INSERT INTO users VALUES {}", values.join(", "));
    for c in [&direct, &client] {
        c.batch_execute(ddl).await.unwrap();
        c.batch_execute(&rows).await.unwrap();
    }
    let shapes = [
        "SELECT count(*) FROM users WHERE score BETWEEN {k} AND {k} + 60",
        "SELECT name, count(*), sum(score), avg(score), min(id) FROM users WHERE id > {k} GROUP BY name ORDER BY name",
        "SELECT id, score FROM users WHERE score >= {k} ORDER BY score DESC, id LIMIT {k} OFFSET 2",
        "SELECT DISTINCT name FROM users WHERE score < {k}0 ORDER BY name",
        "SELECT id FROM users WHERE id IN ({k}, 1{k}, 2{k}, 3{k}) ORDER BY id",
        "SELECT count(*) FROM users WHERE name > 'user {k}'",
        "SELECT id FROM users ORDER BY id OFFSET 5{k}",
        // A string constant in the select list: the parameter in its place is typed text, as
        // PostgreSQL types the constant.
        "SELECT 'tag {k}' AS tag, count(*) FROM users WHERE score > {k}",
        // A constant whose type nothing decides: refused as a parameter ("could not determine
        // data type of parameter $1"), run as text, and planned as itself from then on.
        "SELECT pg_typeof('x{k}'), count(*) FROM users WHERE score > {k}",
        // Refused by the shards in the parameterized form (at Bind) and by PostgreSQL in the
        // text (with a position): the client sees the text's error.
        "SELECT count(*) FROM users WHERE score > 'x{k}'",
        // Fails while it runs, after rows have been described.
        "SELECT id, 100 / (score - {k}0) FROM users ORDER BY id",
        // HAVING: the proxy compares with the constants, bound as parameters that the shards
        // return typed as what they are compared with.
        "SELECT name, count(*) FROM users WHERE id > {k} GROUP BY name HAVING count(*) > {k} ORDER BY name",
        "SELECT name, sum(score) FROM users GROUP BY name HAVING sum(score) >= 2{k}0 AND max(id) < 5{k} ORDER BY max(id) DESC",
        "SELECT score FROM users GROUP BY score HAVING min(name) >= 'user {k}' OR count(*) = {k} ORDER BY score",
        "SELECT name FROM users GROUP BY name HAVING avg(score) > {k}0 ORDER BY name LIMIT {k}",
        // count(DISTINCT) without GROUP BY beside constants, over no rows and over some: the
        // shards' grand totals carry the constants.
        "SELECT 'tag {k}', count(DISTINCT score), count(*) FROM users WHERE id < {k} - 4 HAVING count(*) <= {k}",
        "SELECT count(DISTINCT name) FROM users WHERE score > {k}0 HAVING count(*) > {k}",
    ];
    // Rows that concatenate (no ORDER BY, aggregate, DISTINCT or LIMIT), in any order.
    let concatenated = [
        "SELECT id, name FROM users WHERE id IN ({k}, 1{k}, 2{k}, 3{k}, 4{k})",
        "SELECT id, score * {k} FROM users WHERE score > 10{k} AND name <> 'user {k}'",
        "SELECT * FROM users WHERE id IN ({k}, 9{k}) OR score = {k}0",
        "SELECT id FROM users WHERE id IN ({k}, 1{k}, 2{k}) AND 1 / (score - {k}0) > 0",
    ];
    let ordered = (shapes.iter().map(|s| (s, true))).chain(concatenated.iter().map(|s| (s, false)));
    for (shape, ordered) in ordered {
        let as_compared = |a: String| if ordered { a } else { sorted(a) };
        for k in [1, 2, 3, 4] {
            let sql = shape.replace("{k}", &k.to_string());
            assert_eq!(
                as_compared(answer(&client, &sql).await),
                as_compared(answer(&direct, &sql).await),
                "{sql}"
            );
        }
    }
    // The shards got the shape with its literals as parameters, not the statement's text.
    let log = "CREATE TABLE seen (q text);
               CREATE FUNCTION seen(q text) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO seen VALUES (q) RETURNING true $$";
    for i in 0..4 {
        shards.client(i).await.batch_execute(log).await.unwrap();
    }
    for k in [1, 2] {
        let sql = format!("SELECT count(*) FROM users WHERE score > {k} AND seen(current_query())");
        assert_eq!(
            answer(&client, &sql).await,
            answer(&direct, &sql).await,
            "{sql}"
        );
        let sql = format!("SELECT id FROM users WHERE score > {k} AND seen(current_query())");
        assert_eq!(
            sorted(answer(&client, &sql).await),
            sorted(answer(&direct, &sql).await),
            "{sql}"
        );
    }
    let seen = "SELECT DISTINCT q FROM seen ORDER BY q";
    let texts: Vec<String> = (shards.client(1).await.query(seen, &[]).await.unwrap())
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        texts,
        [
            "SELECT count(*) FROM users WHERE score > $1 AND seen(current_query())",
            "SELECT count(*) FROM users WHERE score > 1 AND seen(current_query())",
            "SELECT id FROM users WHERE score > $1 AND seen(current_query())",
            "SELECT id FROM users WHERE score > 1 AND seen(current_query())",
        ],
        "the first statement of each shape as its text, the others as the shape"
    );
    for k in [1, 2] {
        let sql = format!(
            "SELECT name FROM users WHERE seen(current_query()) GROUP BY name HAVING count(*) > {k} ORDER BY name"
        );
        assert_eq!(
            answer(&client, &sql).await,
            answer(&direct, &sql).await,
            "{sql}"
        );
    }
    let grouped =
        "SELECT count(*) FROM seen WHERE q LIKE '%GROUP BY name' AND q LIKE '%ELSE $1 END%'";
    let by_shape: i64 = (shards
        .client(1)
        .await
        .query_one(grouped, &[])
        .await
        .unwrap())
    .get(0);
    assert!(
        by_shape > 0,
        "a HAVING's constant reached the shards as a parameter"
    );

    // With standard_conforming_strings off a backslash in a string constant is an escape
    // ('user \x33' is 'user 3'): such statements keep their text.
    for c in [&client, &direct] {
        c.batch_execute("SET standard_conforming_strings = off")
            .await
            .unwrap();
    }
    for k in [1, 2, 3] {
        let sql = format!(r"SELECT count(*) FROM users WHERE name > 'user \x3{k}'");
        assert_eq!(
            answer(&client, &sql).await,
            answer(&direct, &sql).await,
            "{sql}"
        );
    }
    for c in [&client, &direct] {
        c.batch_execute("RESET standard_conforming_strings")
            .await
            .unwrap();
    }

    // Inside a transaction block the statements are planned as themselves, with the same answers.
    client.batch_execute("BEGIN").await.unwrap();
    direct.batch_execute("BEGIN").await.unwrap();
    for k in [5, 6] {
        let sql = shapes[2].replace("{k}", &k.to_string());
        assert_eq!(
            answer(&client, &sql).await,
            answer(&direct, &sql).await,
            "{sql}"
        );
    }
    client.batch_execute("COMMIT").await.unwrap();
    direct.batch_execute("COMMIT").await.unwrap();
}
