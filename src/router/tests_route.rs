//! Router tests: EXPLAIN, mergeability of multi-shard reads, and route().

use super::tests::{one, ring};
use super::*;

#[test]
fn explain_plans_the_inner_statement() {
    let p = one("EXPLAIN SELECT * FROM users WHERE id = 1");
    assert!(matches!(p.target, Target::Keys(_)));
    assert!(!p.writes);
    assert_eq!(p.not_mergeable.as_deref(), Some("EXPLAIN across shards"));
    assert!(route(&p, &ring()).is_ok());
    let p = one("EXPLAIN SELECT * FROM users");
    assert!(route(&p, &ring())
        .unwrap_err()
        .to_string()
        .contains("EXPLAIN"));
    let p = one("EXPLAIN ANALYZE DELETE FROM users WHERE id = 3");
    assert!(p.writes);
    assert!(!one("EXPLAIN DELETE FROM users WHERE id = 3").writes);
    assert!(matches!(
        one("EXPLAIN SELECT * FROM nope").target,
        Target::Reject(_)
    ));
}

#[test]
fn mergeability() {
    let reason = |sql: &str| one(sql).not_mergeable;
    assert_eq!(reason("SELECT * FROM users"), None);
    assert_eq!(reason("SELECT * FROM users FOR UPDATE"), None);
    assert_eq!(
        reason("SELECT id, (SELECT count(*) FROM countries) FROM users"),
        None
    );
    for (sql, want) in [
        ("SELECT * FROM users ORDER BY id", "ORDER BY"),
        ("SELECT * FROM users LIMIT 5", "LIMIT"),
        ("SELECT * FROM users OFFSET 5", "LIMIT/OFFSET"),
        ("SELECT * FROM users FETCH FIRST 5 ROWS ONLY", "FETCH"),
        ("SELECT DISTINCT name FROM users", "DISTINCT"),
        ("SELECT DISTINCT ON (name) * FROM users", "DISTINCT ON"),
        ("SELECT name FROM users GROUP BY name", "GROUP BY"),
        ("SELECT count(*) FROM users", "count()"),
        (
            "SELECT COUNT(DISTINCT name) FROM users WHERE id IN (1, 2)",
            "count()",
        ),
        ("SELECT sum(x) FILTER (WHERE x > 0) FROM users", "sum()"),
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM users",
            "percentile_cont",
        ),
        ("SELECT 1 + max(x) FROM users", "max()"),
        (
            "SELECT row_number() OVER () FROM users",
            "window function row_number()",
        ),
        (
            "SELECT id FROM users WHERE id = 1 UNION SELECT id FROM users WHERE id = 2",
            "UNION",
        ),
    ] {
        let got = reason(sql).unwrap_or_else(|| panic!("{sql}: mergeable?"));
        assert!(got.contains(want), "{sql}: {got}");
    }
    assert_eq!(reason("SELECT count(*) FROM countries"), None);
    assert_eq!(reason("UPDATE users SET x = 1"), None);
}

#[test]
fn route_resolves_keys_and_refuses_unmergeable_spreads() {
    let ring = ring();
    let p = one("SELECT * FROM users WHERE id = 42");
    assert_eq!(
        route(&p, &ring).unwrap(),
        Route::Shards(vec![ring.shard_for_key(&Key::Int(42))])
    );
    let p = one("SELECT * FROM users WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9)");
    let mut want: Vec<ShardId> = (1..10).map(|i| ring.shard_for_key(&Key::Int(i))).collect();
    want.sort();
    want.dedup();
    assert!(want.len() > 1);
    assert_eq!(route(&p, &ring).unwrap(), Route::Shards(want));
    assert_eq!(
        route(&one("SELECT * FROM users"), &ring).unwrap(),
        Route::All
    );
    assert_eq!(route(&one("SELECT 1"), &ring).unwrap(), Route::Any);
    assert_eq!(route(&one("BEGIN"), &ring).unwrap(), Route::Any);
    assert_eq!(route(&one("SET x = 1"), &ring).unwrap(), Route::Any);
    let e = route(&one("SELECT * FROM users ORDER BY id"), &ring).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("ORDER BY across shards"), "{e}");
    assert!(e.hint().unwrap().contains("shard key"));
    let e = route(
        &one("SELECT count(*) FROM users WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9)"),
        &ring,
    );
    assert!(e.is_err());
    assert!(route(
        &one("SELECT * FROM users WHERE id = 1 ORDER BY name LIMIT 3"),
        &ring
    )
    .is_ok());
    let e = route(&one("SELECT * FROM nope"), &ring).unwrap_err();
    assert_eq!(e.sqlstate(), "42P01");
}
