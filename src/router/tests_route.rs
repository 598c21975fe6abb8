//! Router tests: EXPLAIN and route().

use super::tests::{one, ring};
use super::*;

#[test]
fn explain_plans_the_inner_statement() {
    let p = one("EXPLAIN SELECT * FROM users WHERE id = 1");
    assert!(matches!(p.target, Target::Keys(_)));
    assert!(!p.writes);
    assert_eq!(
        p.not_mergeable.as_ref().unwrap().what,
        "EXPLAIN across shards"
    );
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
fn route_resolves_keys_and_refuses_unmergeable_spreads() {
    let ring = ring();
    let p = one("SELECT * FROM users WHERE id = 42");
    assert_eq!(
        route(&p, &ring).unwrap(),
        Route::Shards(smallvec::smallvec![ring.shard_for_key(&Key::Int(42))])
    );
    let p = one("SELECT * FROM users WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9)");
    let mut want: ShardSet = (1..10).map(|i| ring.shard_for_key(&Key::Int(i))).collect();
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
    assert_eq!(
        route(&one("SELECT * FROM users ORDER BY id"), &ring).unwrap(),
        Route::All
    );
    let e = route(&one("SELECT row_number() OVER () FROM users"), &ring).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(
        e.to_string().contains("window function row_number()"),
        "{e}"
    );
    assert!(e.hint().is_some());
    assert!(route(
        &one("SELECT * FROM users WHERE id = 1 ORDER BY name LIMIT 3"),
        &ring
    )
    .is_ok());
    let e = route(&one("SELECT * FROM nope"), &ring).unwrap_err();
    assert_eq!(e.sqlstate(), "42P01");
}
