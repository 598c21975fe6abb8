//! Router tests: shard keys given as bind parameters, planned as `Target::Bound`.

use super::tests::{ints, keys, one, target_is, unsupported};
use super::*;
use crate::config::KeyType;

fn bound(sql: &str) -> BoundKeys {
    match one(sql).target {
        Target::Bound(b) => b,
        other => panic!("{sql}: expected Bound, got {other:?}"),
    }
}

fn int_bound(literals: &[i64], params: &[usize]) -> BoundKeys {
    BoundKeys {
        key_type: KeyType::Int,
        literals: ints(literals),
        params: params.to_vec(),
        arrays: vec![],
    }
}

#[test]
fn where_parameters_bind_the_key() {
    for sql in [
        "SELECT * FROM users WHERE id = $1",
        "SELECT * FROM users WHERE $1 = id",
        "SELECT * FROM users WHERE id = $1::bigint",
        "SELECT * FROM users WHERE id = CAST($1 AS int)",
        "SELECT * FROM users WHERE (id = ($1))",
        "SELECT * FROM users u WHERE u.id = $1 AND name = $2",
        "SELECT * FROM users WHERE public.users.id = $1",
        "SELECT * FROM users WHERE id = $1 FOR UPDATE",
    ] {
        assert_eq!(bound(sql), int_bound(&[], &[0]), "{sql}");
    }
    assert_eq!(
        bound("SELECT * FROM users WHERE id IN ($1, $2, 7)"),
        int_bound(&[7], &[0, 1])
    );
    assert_eq!(
        bound("SELECT * FROM users WHERE id IN ($3, $1, $3, NULL)"),
        int_bound(&[], &[2, 0])
    );
    assert_eq!(
        bound("SELECT * FROM users WHERE id = ANY(ARRAY[$2, 4])"),
        int_bound(&[4], &[1])
    );
    assert_eq!(
        bound("SELECT * FROM accounts WHERE name = $1"),
        BoundKeys {
            key_type: KeyType::Text,
            literals: vec![],
            params: vec![0],
            arrays: vec![],
        }
    );
    let p = one("SELECT * FROM users WHERE id = $1");
    assert!(!p.writes && !p.inserts && p.not_mergeable.is_none());
}

#[test]
fn unusable_parameters_change_nothing() {
    target_is("SELECT * FROM users WHERE id = $1 OR id = $2", "all");
    target_is("SELECT * FROM users WHERE id = ANY($1) OR id = 3", "all");
    target_is("SELECT * FROM users WHERE id <> ANY($1)", "all");
    target_is("SELECT * FROM users WHERE id = ALL($1)", "all");
    target_is("SELECT * FROM users WHERE id = ANY($1 || $2)", "all");
    target_is("SELECT * FROM users WHERE id = ANY('{1,2}')", "all");
    // A parameter that is not itself an array (its text is cast) is not read.
    target_is(
        "SELECT * FROM users WHERE id = ANY($1::text::bigint[])",
        "all",
    );
    target_is(
        "SELECT * FROM users WHERE id = ANY(string_to_array($1, ','))",
        "all",
    );
    target_is("SELECT * FROM users WHERE id > $1", "all");
    target_is("SELECT * FROM users WHERE id = $1 + 1", "all");
    target_is("SELECT * FROM users WHERE id <> $1", "all");
    target_is("SELECT * FROM users WHERE name = $1", "all");
    target_is("SELECT * FROM users WHERE id = $0", "all");
    target_is("SELECT * FROM users WHERE id NOT IN ($1)", "all");
    target_is("SELECT $1::int", "any");
    target_is("SELECT * FROM countries WHERE code = $1", "any");
}

#[test]
fn literals_still_plan_as_keys() {
    assert_eq!(keys("SELECT * FROM users WHERE id = 42"), ints(&[42]));
    assert_eq!(
        keys("SELECT * FROM users WHERE id IN (1, 2)"),
        ints(&[1, 2])
    );
    assert_eq!(
        keys("INSERT INTO users (id, name) VALUES (3, $1)"),
        ints(&[3])
    );
    assert!(one("INSERT INTO users (id) VALUES (3)").inserts);
    assert!(matches!(
        one("INSERT INTO users (id) VALUES (1), (2)").target,
        Target::Split(_)
    ));
    assert!(!one("DELETE FROM users WHERE id = 1").inserts);
}

#[test]
fn literal_and_parameter_on_one_key() {
    // The literal alone bounds the key exactly; a differing parameter selects no row anyway.
    assert_eq!(
        keys("SELECT * FROM users WHERE id = $1 AND id = 5"),
        ints(&[5])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id IN (1, 2) AND id = $1"),
        ints(&[1, 2])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id IN ($1, 3) AND id = 4"),
        ints(&[4])
    );
    // Two parameters: the union of both, wider but correct.
    assert_eq!(
        bound("SELECT * FROM users WHERE id = $2 AND id = $1"),
        int_bound(&[], &[1, 0])
    );
    assert_eq!(
        bound("SELECT * FROM users WHERE id IN ($1, 3) AND id IN ($2, 4)"),
        int_bound(&[3, 4], &[0, 1])
    );
    // A NULL literal pins nothing, so the parameter decides.
    assert_eq!(
        bound("SELECT * FROM users WHERE id = NULL AND id = $1"),
        int_bound(&[], &[0])
    );
}

#[test]
fn parameters_pin_through_joins() {
    for sql in [
        "SELECT * FROM orders o JOIN users u ON o.user_id = u.id WHERE u.id = $1",
        "SELECT * FROM users u, orders o WHERE o.user_id = u.id AND u.id = $1",
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id = $1",
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id AND o.user_id = $1",
    ] {
        assert_eq!(bound(sql), int_bound(&[], &[0]), "{sql}");
    }
    assert_eq!(
        bound("SELECT * FROM users u, orders o WHERE u.id = 5 AND o.user_id = $1"),
        int_bound(&[5], &[0])
    );
    assert_eq!(
        bound("SELECT * FROM users u, accounts a WHERE u.id = $1 AND a.name = 'x'"),
        BoundKeys {
            key_type: KeyType::Int,
            literals: vec![Key::Text("x".into())],
            params: vec![0],
            arrays: vec![],
        }
    );
    unsupported(
        "SELECT * FROM users u, accounts a WHERE u.id = $1 AND a.name = $2",
        "different types",
    );
    unsupported(
        "SELECT * FROM users u, orders o WHERE u.id = $1",
        "a join of sharded tables users and orders",
    );
    // A constant in an outer join's ON filters the nullable side only: it pins nothing.
    unsupported(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = $1",
        "join",
    );
    unsupported("SELECT * FROM events WHERE id = $1", "not known yet");
}

#[test]
fn parameters_in_subqueries() {
    unsupported(
        "SELECT * FROM users WHERE id = $1 AND id IN (SELECT user_id FROM orders)",
        "subquery over sharded table orders",
    );
    // Parameters are listed in order of appearance, whatever the order of the scopes.
    assert_eq!(
        bound("SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE user_id = $2) AND id = $1"),
        int_bound(&[], &[1, 0])
    );
    assert_eq!(
        bound("WITH x AS (SELECT * FROM orders WHERE user_id = $1) SELECT * FROM x"),
        int_bound(&[], &[0])
    );
    assert_eq!(
        bound("SELECT * FROM (SELECT * FROM users WHERE id = $1) s"),
        int_bound(&[], &[0])
    );
    unsupported(
        "SELECT * FROM users WHERE id = $1 UNION ALL SELECT * FROM users",
        "UNION",
    );
}

#[test]
fn updates_and_deletes_bind_the_key() {
    let sql = "UPDATE users SET name = $2 WHERE id = $1";
    assert_eq!(bound(sql), int_bound(&[], &[0]));
    let p = one(sql);
    assert!(p.writes && !p.inserts);
    assert_eq!(
        bound("DELETE FROM users WHERE id = $1 RETURNING *"),
        int_bound(&[], &[0])
    );
    assert_eq!(
        bound("UPDATE orders o SET n = 1 FROM users u WHERE o.user_id = u.id AND u.id = $1"),
        int_bound(&[], &[0])
    );
    unsupported(
        "UPDATE users SET id = $2 WHERE id = $1",
        "cannot change the shard key",
    );
}

#[test]
fn inserts_bind_the_key() {
    for (sql, param) in [
        ("INSERT INTO users (id) VALUES ($1)", 0),
        ("INSERT INTO users (id, name) VALUES ($1, $2)", 0),
        ("INSERT INTO users (name, id) VALUES ($1, $2::bigint)", 1),
        (
            "INSERT INTO users (id) VALUES (CAST($3 AS int8)) RETURNING *",
            2,
        ),
        (
            "INSERT INTO users (id, n) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET n = $2",
            0,
        ),
    ] {
        assert_eq!(bound(sql), int_bound(&[], &[param]), "{sql}");
        let p = one(sql);
        assert!(p.writes && p.inserts, "{sql}");
    }
    assert_eq!(
        bound(
            "INSERT INTO users (id, n) VALUES ($1, 'a'), (5, 'b'), ($3, 'c'), ($1, 'd'), (5, 'e')"
        ),
        int_bound(&[5], &[0, 2])
    );
    assert_eq!(
        bound("INSERT INTO accounts (name) VALUES ($1)").key_type,
        KeyType::Text
    );
    unsupported("INSERT INTO events (id) VALUES ($1)", "not known yet");
    unsupported("INSERT INTO users (id) VALUES ($1 + 1)", "constant");
    unsupported("INSERT INTO users (id) VALUES ($0)", "constant");
    unsupported("INSERT INTO users (id) VALUES ($1), (NULL)", "NULL");
    unsupported(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET id = $2",
        "cannot change the shard key",
    );
}

fn arrays_bound(literals: &[i64], params: &[usize], arrays: &[usize]) -> BoundKeys {
    BoundKeys {
        arrays: arrays.to_vec(),
        ..int_bound(literals, params)
    }
}

#[test]
fn array_parameters_bind_the_key() {
    for sql in [
        "SELECT * FROM users WHERE id = ANY($1)",
        "SELECT * FROM users WHERE id = ANY($1::bigint[])",
        "SELECT * FROM users WHERE id = ANY($1::int[])",
        "SELECT * FROM users WHERE id = ANY($1::int8[])",
        "SELECT * FROM users WHERE id = ANY(CAST($1 AS integer[]))",
        "SELECT * FROM users WHERE id = ANY($1::int4[]::int8[])",
        "SELECT * FROM users WHERE id = ANY(($1)::bigint ARRAY)",
        "SELECT * FROM users WHERE id = SOME($1)",
        "SELECT * FROM users WHERE (id = ANY(($1)))",
        "SELECT * FROM users u WHERE u.id = ANY($1) AND name = $2",
        "UPDATE users SET name = 'x' WHERE id = ANY($1)",
        "DELETE FROM users WHERE id = ANY($1)",
        "SELECT * FROM orders o JOIN users u ON o.user_id = u.id WHERE u.id = ANY($1)",
    ] {
        assert_eq!(bound(sql), arrays_bound(&[], &[], &[0]), "{sql}");
    }
    assert_eq!(
        bound("SELECT * FROM accounts WHERE name = ANY($1::text[])"),
        BoundKeys {
            key_type: KeyType::Text,
            literals: vec![],
            params: vec![],
            arrays: vec![0],
        }
    );
    // With scalar keys: the union of all of them.
    assert_eq!(
        bound("SELECT * FROM users WHERE id = ANY($2) AND id IN ($1, 7) AND id = ANY($2)"),
        arrays_bound(&[7], &[0], &[1])
    );
    assert_eq!(
        bound("SELECT * FROM users u, orders o WHERE u.id = ANY($1) AND o.user_id = $2"),
        arrays_bound(&[], &[1], &[0])
    );
    // Literals alone bound the key exactly.
    assert_eq!(
        keys("SELECT * FROM users WHERE id = ANY($1) AND id IN (1, 2)"),
        ints(&[1, 2])
    );
    assert_eq!(
        keys("SELECT * FROM users WHERE id = ANY(ARRAY[1, 2])"),
        ints(&[1, 2])
    );
    // An array may span shards, alone or with one other key: their rows are merged.
    for sql in [
        "SELECT id FROM users WHERE id = ANY($1) ORDER BY id LIMIT 2",
        "SELECT id FROM users WHERE id = ANY($1) AND id = $2 ORDER BY id LIMIT 2",
        "SELECT count(*) FROM users u, orders o WHERE u.id = ANY($1) AND o.user_id = 7",
    ] {
        assert!(one(sql).merge.is_some(), "{sql}");
    }
    assert!(
        one("SELECT id FROM users WHERE id = $1 ORDER BY id LIMIT 2")
            .merge
            .is_none()
    );
    // INSERT keys are never arrays.
    assert_eq!(
        bound("INSERT INTO users (id, name) VALUES ($1, $2)"),
        int_bound(&[], &[0])
    );
}
