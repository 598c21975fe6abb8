//! Router tests: targets of reads, writes, DDL, transaction and session statements.

use super::*;
use crate::catalog::Catalog;
use crate::config::{Config, KeyType, ProxyConfig, ShardConfig, TableConfig};

fn table(name: &str, key: Option<&str>, ty: Option<KeyType>, reference: bool) -> TableConfig {
    TableConfig {
        name: name.into(),
        shard_key: key.map(Into::into),
        key_type: ty,
        reference,
    }
}

pub(super) fn config() -> Config {
    Config {
        proxy: ProxyConfig {
            listen: "127.0.0.1:0".into(),
            max_client_connections: 10,
            pool_size: 1,
            database: None,
            vnodes: 64,
            connect_timeout_ms: 1,
            pool_timeout_ms: 1,
            gather_memory_mb: 1,
            recovery_interval_ms: 10_000,
            rebalance_step_rows: 25_000,
            max_user_connections: 0,
            client_idle_timeout_ms: 0,
            idle_transaction_timeout_ms: 0,
            statement_timeout_ms: 0,
            workers: 0,
            auto_prepare: true,
        },
        auth: None,
        shards: (0..3)
            .map(|i| ShardConfig {
                name: format!("s{i}"),
                url: format!("postgres://127.0.0.1:5432/s{i}"),
                weight: 1,
                points: None,
            })
            .collect(),
        tables: vec![
            table("users", Some("id"), Some(KeyType::Int), false),
            table("orders", Some("user_id"), Some(KeyType::Int), false),
            table("accounts", Some("name"), Some(KeyType::Text), false),
            table("events", Some("id"), None, false),
            table("sales.items", Some("order_id"), Some(KeyType::Int), false),
            table("countries", None, None, true),
        ],
        metrics: None,
        stats: Default::default(),
        rate_limits: vec![],
        tls: None,
    }
}

pub(super) fn catalog() -> Catalog {
    Catalog::from_config(&config())
}

pub(super) fn ring() -> Ring {
    Ring::new(&config().shards, 64)
}

pub(super) fn one(sql: &str) -> StatementPlan {
    let mut p = plan(sql, &catalog());
    assert_eq!(p.statements.len(), 1, "{sql}: {:?}", p.statements);
    p.statements.remove(0)
}

pub(super) fn keys(sql: &str) -> Vec<Key> {
    match one(sql).target {
        Target::Keys(k) => k,
        other => panic!("{sql}: expected Keys, got {other:?}"),
    }
}

pub(super) fn ints(v: &[i64]) -> Vec<Key> {
    v.iter().map(|&i| Key::Int(i)).collect()
}

pub(super) fn rejected(sql: &str) -> Error {
    match one(sql).target {
        Target::Reject(e) => e,
        other => panic!("{sql}: expected Reject, got {other:?}"),
    }
}

pub(super) fn unsupported(sql: &str, needle: &str) {
    let e = rejected(sql);
    assert_eq!(e.sqlstate(), "0A000", "{sql}: {e:?}");
    assert!(
        e.to_string().contains(needle),
        "{sql}: {e} lacks {needle:?}"
    );
}

pub(super) fn target_is(sql: &str, want: &str) -> StatementPlan {
    let p = one(sql);
    let got = match &p.target {
        Target::Any => "any",
        Target::All => "all",
        Target::Keys(_) => "keys",
        Target::Split(_) => "split",
        Target::Bound(_) => "bound",
        Target::Transaction(_) => "txn",
        Target::Session(_) => "session",
        Target::CopyIn(_) => "copy",
        Target::Reject(_) => "reject",
    };
    assert_eq!(got, want, "{sql}: {:?}", p.target);
    p
}

#[test]
fn point_reads_pin_keys() {
    assert_eq!(keys("SELECT * FROM users WHERE id = 42"), ints(&[42]));
    assert_eq!(keys("select * from users where 42 = id"), ints(&[42]));
    assert_eq!(keys("SELECT * FROM users u WHERE u.id = '42'"), ints(&[42]));
    assert_eq!(
        keys("SELECT * FROM users WHERE users.id = '42'::bigint"),
        ints(&[42])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE public.users.id = CAST(7 AS int8)"),
        ints(&[7])
    );
    assert_eq!(keys("SELECT * FROM users WHERE id = -5"), ints(&[-5]));
    assert_eq!(
        keys("SELECT * FROM users WHERE (id = 1) AND (name = 'x' AND true)"),
        ints(&[1])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id IN (1, 2, 2, 3)"),
        ints(&[1, 2, 3])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = ANY(ARRAY[4, 5])"),
        ints(&[4, 5])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = 1 AND id = 1"),
        ints(&[1])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = 1 AND id IN (1, 2)"),
        ints(&[1])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = 1 AND id = 2"),
        ints(&[1])
    );
    assert_eq!(keys("SELECT * FROM \"users\" WHERE \"id\" = 3"), ints(&[3]));
    assert_eq!(keys("SELECT * FROM USERS WHERE ID = 3"), ints(&[3]));
    assert_eq!(
        keys("SELECT * FROM accounts WHERE name = 'Ann'"),
        vec![Key::Text("Ann".into())]
    );
    assert_eq!(
        keys("SELECT * FROM accounts WHERE name = E'a\\'b'"),
        vec![Key::Text("a'b".into())]
    );
    assert_eq!(
        keys("SELECT * FROM sales.items WHERE order_id = 9"),
        ints(&[9])
    );
    assert_eq!(keys("UPDATE users SET name = 'x' WHERE id = 8"), ints(&[8]));
    assert_eq!(
        keys("DELETE FROM users WHERE id IN (8, 9) RETURNING *"),
        ints(&[8, 9])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = 42 FOR UPDATE"),
        ints(&[42])
    );
}

#[test]
fn keyless_reads_go_everywhere() {
    target_is("SELECT * FROM users", "all");
    target_is("SELECT * FROM users WHERE id = 1 OR id = 2", "all");
    target_is("SELECT * FROM users WHERE NOT (id = 1)", "all");
    target_is("SELECT * FROM users WHERE id > 4", "all");
    // A parameter pins the key at Bind time (tests_params.rs).
    target_is("SELECT * FROM users WHERE id = $1", "bound");
    target_is(
        "SELECT * FROM users WHERE CASE WHEN id = 1 THEN true END",
        "all",
    );
    target_is("SELECT * FROM users WHERE id = (SELECT 1)", "all");
    target_is("SELECT * FROM users WHERE \"ID\" = 1", "all");
    target_is("SELECT * FROM users u WHERE users.id = 1", "all");
    target_is("SELECT * FROM users WHERE id = NULL", "all");
    let p = target_is("UPDATE users SET name = 'x'", "all");
    assert!(p.writes);
    assert!(p.not_mergeable.is_none());
    target_is("DELETE FROM users WHERE name = 'x'", "all");
}

#[test]
fn joins_pin_through_equalities() {
    let sql = "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 42";
    assert_eq!(keys(sql), ints(&[42]));
    let sql = "SELECT * FROM users u, orders o WHERE o.user_id = u.id AND o.user_id IN (1, 2)";
    assert_eq!(keys(sql), ints(&[1, 2]));
    let sql = "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id = 42";
    assert_eq!(keys(sql), ints(&[42]));
    let sql = "SELECT * FROM users JOIN countries c ON c.code = users.country WHERE users.id = 5";
    assert_eq!(keys(sql), ints(&[5]));
    let sql = "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE id = 3";
    assert_eq!(keys(sql), ints(&[3]));
    let sql = "SELECT * FROM users a JOIN users b ON a.id = b.id WHERE a.id = 3";
    assert_eq!(keys(sql), ints(&[3]));
    let sql = "SELECT * FROM users a JOIN users b ON a.friend = b.id WHERE a.id = 3 AND b.id = 4";
    assert_eq!(keys(sql), ints(&[3, 4]));
    let sql = "UPDATE orders o SET total = 0 FROM users u WHERE o.user_id = u.id AND u.id = 6";
    assert_eq!(keys(sql), ints(&[6]));
    let sql = "DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.id = 6";
    assert_eq!(keys(sql), ints(&[6]));
}

#[test]
fn unpinned_joins_are_refused_unless_colocated() {
    // Joined on their keys: every shard joins its own rows.
    target_is(
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id",
        "all",
    );
    target_is(
        "SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.id",
        "all",
    );
    unsupported(
        "SELECT * FROM users u JOIN orders o ON o.id = u.id",
        "join of sharded tables users and orders",
    );
    let sql = "SELECT * FROM users u JOIN orders o ON o.user_id = u.id AND u.id = 1 WHERE true OR o.user_id = 2";
    assert_eq!(keys(sql), ints(&[1]));
    target_is(
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 1 OR o.user_id = 2",
        "all",
    );
    // A constant in an outer join's ON filters the nullable side only: users is not pinned.
    target_is(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.user_id = 1",
        "all",
    );
    unsupported(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.friend",
        "join",
    );
    unsupported(
        "SELECT * FROM users a JOIN users b ON a.friend = b.id WHERE a.id = 1",
        "self-join",
    );
    let e = rejected("SELECT * FROM users u JOIN orders o ON true");
    assert!(e.hint().unwrap().contains("reference table"));
}

#[test]
fn subqueries_ctes_and_set_operations() {
    assert_eq!(
        keys("SELECT * FROM (SELECT * FROM users WHERE id = 1) s"),
        ints(&[1])
    );
    assert_eq!(
        keys("WITH x AS (SELECT * FROM users WHERE id = 2) SELECT * FROM x"),
        ints(&[2])
    );
    assert_eq!(
        keys("SELECT * FROM countries WHERE code IN (SELECT country FROM users WHERE id = 3)"),
        ints(&[3])
    );
    assert_eq!(
        keys("SELECT id FROM users WHERE id = 1 UNION SELECT id FROM users WHERE id = 2"),
        ints(&[1, 2])
    );
    unsupported(
        "SELECT * FROM (SELECT * FROM users) s",
        "subquery over sharded table users",
    );
    unsupported(
        "WITH x AS (SELECT * FROM users) SELECT * FROM x",
        "WITH query over sharded table users",
    );
    unsupported(
        "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)",
        "orders",
    );
    unsupported("SELECT * FROM users WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = users.id) AND id = 1", "orders");
    unsupported(
        "SELECT id FROM users UNION ALL SELECT user_id FROM orders",
        "UNION",
    );
    unsupported("SELECT 1 UNION SELECT id FROM users", "UNION");
    // CTE names are not tables, and shadow configured names.
    target_is("WITH users AS (SELECT 1 AS id) SELECT * FROM users", "any");
    target_is(
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
        "any",
    );
}

#[test]
fn reference_and_keyless_statements() {
    target_is("SELECT * FROM countries", "any");
    target_is("SELECT * FROM countries c JOIN countries d ON true", "any");
    let p = target_is("INSERT INTO countries VALUES ('fr', 'France')", "all");
    assert!(p.writes);
    assert!(target_is("UPDATE countries SET name = 'x'", "all").writes);
    assert!(target_is("DELETE FROM countries WHERE code = 'fr'", "all").writes);
    unsupported(
        "UPDATE countries SET n = u.id FROM users u WHERE u.id = 1",
        "reference table countries",
    );
    unsupported(
        "INSERT INTO countries SELECT name, name FROM users",
        "reference table countries",
    );
    assert_eq!(
        keys("SELECT * FROM users u JOIN countries c ON c.code = u.cc WHERE u.id = 1"),
        ints(&[1])
    );
    for sql in [
        "SELECT 1",
        "SELECT now()",
        "SHOW search_path",
        "SHOW ALL",
        "VALUES (1)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM pg_class",
        "SELECT * FROM information_schema.tables",
        "EXPLAIN SELECT 1",
        "LISTEN chan",
        "NOTIFY chan, 'x'",
        "UNLISTEN *",
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3",
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        "SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' END as \"Type\", pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
    ] {
        let p = target_is(sql, "any");
        assert!(!p.writes, "{sql}");
        assert!(p.not_mergeable.is_none(), "{sql}");
    }
}

#[test]
fn unlisted_tables_are_refused() {
    for sql in [
        "SELECT * FROM nope",
        "SELECT * FROM users u JOIN nope n ON n.id = u.id WHERE u.id = 1",
        "INSERT INTO nope VALUES (1)",
        "UPDATE nope SET a = 1",
        "DELETE FROM public.nope",
        "SELECT * FROM users WHERE id IN (SELECT id FROM nope)",
        "SELECT * FROM \"Users\"",
    ] {
        let e = rejected(sql);
        assert_eq!(e.sqlstate(), "42P01", "{sql}");
    }
    assert_eq!(
        rejected("SELECT * FROM myschema.nope"),
        Error::UnknownTable {
            table: "myschema.nope".into()
        }
    );
}

#[test]
fn ddl_goes_everywhere() {
    for sql in [
        "CREATE TABLE t (a int)",
        "CREATE TABLE users (id bigint primary key)",
        "ALTER TABLE users ADD COLUMN x int",
        "DROP TABLE users",
        "TRUNCATE users",
        "CREATE INDEX i ON users (name)",
        "COMMENT ON TABLE users IS 'x'",
        "GRANT SELECT ON users TO bob",
        "REVOKE SELECT ON users FROM bob",
        "CREATE SCHEMA s",
        "CREATE SEQUENCE seq",
        "ALTER SEQUENCE seq RESTART",
        "CREATE VIEW v AS SELECT * FROM users",
        "CREATE TABLE t2 AS SELECT * FROM countries",
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
        "CREATE TYPE mood AS ENUM ('a')",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "REINDEX TABLE users",
        "CLUSTER users USING users_pkey",
    ] {
        let p = target_is(sql, "all");
        assert!(p.ddl && p.writes, "{sql}");
        assert!(!p.no_transaction, "{sql}");
    }
    for sql in [
        "VACUUM users",
        "VACUUM",
        "CREATE INDEX CONCURRENTLY i ON users (name)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX TABLE CONCURRENTLY users",
        "CREATE DATABASE x",
        "DROP DATABASE x",
        "ALTER SYSTEM SET work_mem = '1MB'",
        "CREATE TABLESPACE t LOCATION '/x'",
        "DROP TABLESPACE t",
        "ANALYZE",
        "ANALYZE users",
    ] {
        let p = target_is(sql, "all");
        assert!(p.ddl && p.no_transaction, "{sql}");
    }
    unsupported(
        "CREATE TABLE t AS SELECT * FROM users",
        "sharded table users",
    );
    unsupported("SELECT * INTO t FROM users", "sharded table users");
    assert!(target_is("SELECT 1 INTO t", "all").ddl);
}

#[test]
fn transactions_and_session_state() {
    let txn = |sql: &str| match one(sql).target {
        Target::Transaction(t) => t,
        other => panic!("{sql}: {other:?}"),
    };
    assert_eq!(txn("BEGIN"), TxnCommand::Begin);
    assert_eq!(
        txn("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        TxnCommand::Begin
    );
    assert_eq!(
        txn("BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE DEFERRABLE"),
        TxnCommand::Begin
    );
    assert_eq!(txn("BEGIN ISOLATION LEVEL nonsense"), TxnCommand::Begin);
    assert_eq!(txn("COMMIT"), TxnCommand::Commit);
    assert_eq!(txn("END"), TxnCommand::Commit);
    assert_eq!(txn("ROLLBACK"), TxnCommand::Rollback);
    assert_eq!(txn("ABORT"), TxnCommand::Rollback);
    assert_eq!(txn("SAVEPOINT a"), TxnCommand::Savepoint);
    assert_eq!(txn("RELEASE SAVEPOINT a"), TxnCommand::Savepoint);
    assert_eq!(txn("ROLLBACK TO a"), TxnCommand::Savepoint);
    assert_eq!(txn("PREPARE TRANSACTION 'x'"), TxnCommand::TwoPhase);
    assert_eq!(txn("COMMIT PREPARED 'x'"), TxnCommand::TwoPhase);
    assert_eq!(txn("ROLLBACK PREPARED 'x'"), TxnCommand::TwoPhase);
    let session = |sql: &str| match one(sql).target {
        Target::Session(s) => s,
        other => panic!("{sql}: {other:?}"),
    };
    let set = |n: &str| SessionCommand::Set { name: n.into() };
    assert_eq!(session("SET search_path TO a, b"), set("search_path"));
    assert_eq!(
        session("SET SESSION Statement_Timeout = 5"),
        set("statement_timeout")
    );
    assert_eq!(session("SET TIME ZONE 'UTC'"), set("timezone"));
    assert_eq!(
        session("SET application_name = 'x'"),
        set("application_name")
    );
    assert_eq!(
        session("SET LOCAL work_mem = '1MB'"),
        SessionCommand::SetLocal
    );
    assert_eq!(
        session("RESET work_mem"),
        SessionCommand::Reset {
            name: "work_mem".into()
        }
    );
    assert_eq!(session("RESET ALL"), SessionCommand::ResetAll);
    assert_eq!(session("DISCARD ALL"), SessionCommand::ResetAll);
    let p = target_is("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "any");
    assert!(!p.writes);
}

#[test]
fn other_statements() {
    assert!(target_is("DO $$BEGIN PERFORM 1; END$$", "any").writes);
    assert!(target_is("CALL proc(1)", "any").writes);
    target_is("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", "all");
    target_is("LOCK TABLE pg_class", "any");
    unsupported("COPY users FROM STDIN", "COPY");
    // COPY TO STDOUT gathers like the read it is; a per-shard header or file cannot.
    target_is("COPY users TO STDOUT", "all");
    target_is("COPY (SELECT * FROM users) TO STDOUT", "all");
    target_is("COPY (SELECT * FROM users WHERE id = 3) TO STDOUT", "keys");
    unsupported(
        "COPY users TO STDOUT WITH (FORMAT csv, HEADER true)",
        "HEADER",
    );
    unsupported("COPY users TO '/tmp/x'", "file");
    unsupported("COPY countries FROM '/tmp/x'", "file");
    target_is("COPY (SELECT 1) TO STDOUT", "any");
    target_is("COPY pg_class TO STDOUT", "any");
    unsupported(
        "MERGE INTO users u USING countries c ON u.id = c.id WHEN MATCHED THEN DELETE",
        "MERGE",
    );
    unsupported("PREPARE p AS SELECT 1", "PREPARE");
    unsupported("EXECUTE p(1)", "EXECUTE");
    target_is("DEALLOCATE p", "session");
    target_is("DEALLOCATE ALL", "session");
    target_is("TABLE users", "all");
    target_is("TABLE countries", "any");
    unsupported("UPDATE users SET id = 5 WHERE id = 4", "shard key");
    unsupported(
        "UPDATE users SET (name, id) = ('a', 5) WHERE id = 4",
        "shard key",
    );
    unsupported("SELECT * FROM events WHERE id = 1", "not known yet");
    target_is("SELECT * FROM events", "all");
}

#[test]
fn copy_from_stdin_finds_the_key_column_and_format() {
    let p = target_is(
        "COPY users (name, id) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')",
        "copy",
    );
    let Target::CopyIn(c) = &p.target else {
        unreachable!()
    };
    assert_eq!(c.key.map(|(i, _)| i), Some(1));
    assert!(c.csv && c.header);
    assert_eq!((c.delimiter, c.quote, c.escape), (b';', b'"', b'"'));
    assert!(p.writes);
    // pgbench -i spells booleans on/off, which sqlparser alone does not read.
    let p = target_is("copy users (id, name) from stdin with (freeze on)", "copy");
    let Target::CopyIn(c) = &p.target else {
        unreachable!()
    };
    assert_eq!(
        (c.key.map(|(i, _)| i), c.csv, c.delimiter),
        (Some(0), false, b'\t')
    );
    let p = target_is("COPY users (id) FROM STDIN WITH (FORMAT binary)", "copy");
    assert!(matches!(&p.target, Target::CopyIn(c) if c.binary));
    unsupported("COPY users (name) FROM STDIN", "shard key column");
    let p = target_is("COPY countries FROM STDIN", "copy");
    assert!(matches!(&p.target, Target::CopyIn(c) if c.key.is_none()));
}

#[test]
fn plans_name_their_tables_by_configured_name() {
    let tables = |sql: &str| -> Vec<String> {
        let plan = plan(sql, &catalog());
        plan.statements[0]
            .tables
            .iter()
            .map(|t| t.to_string())
            .collect()
    };
    let join = "SELECT * FROM public.users u JOIN orders o ON o.user_id = u.id WHERE u.id = 42";
    assert_eq!(tables(join), ["users", "orders"]);
    assert_eq!(tables("INSERT INTO users (id) VALUES (1), (2)"), ["users"]);
    assert_eq!(
        tables("UPDATE orders SET amount = 1 WHERE user_id = $1"),
        ["orders"]
    );
    assert_eq!(tables("SELECT * FROM countries"), ["countries"]);
    // The sharded table first, whatever the order in the text: its keys route the statement.
    let sql = "SELECT * FROM countries c JOIN users u ON u.country = c.code WHERE u.id = 5";
    assert_eq!(tables(sql), ["users", "countries"]);
    assert!(tables("SELECT 1").is_empty());
}
