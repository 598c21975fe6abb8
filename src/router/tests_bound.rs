//! Router tests: `route_bound`, resolving bind-parameter keys on a real ring.

use super::tests::one;
use super::*;
use crate::config::ShardConfig;

fn ring4() -> Ring {
    let shards: Vec<ShardConfig> = (0..4)
        .map(|i| ShardConfig {
            name: format!("s{i}"),
            url: format!("postgres://127.0.0.1:5432/s{i}"),
            weight: 1,
        })
        .collect();
    Ring::new(&shards, 1280)
}

fn shard(ring: &Ring, k: i64) -> ShardId {
    ring.shard_for_key(&Key::Int(k))
}

/// Two integer keys that live on different shards.
fn apart(ring: &Ring) -> (i64, i64) {
    let other = (2..1000)
        .find(|&k| shard(ring, k) != shard(ring, 1))
        .unwrap();
    (1, other)
}

fn sorted(mut v: Vec<ShardId>) -> Vec<ShardId> {
    v.sort();
    v.dedup();
    v
}

type Param = Option<Result<Key, String>>;

/// Routes `sql` with parameter i bound to `params[i]`; also checks each key parameter is asked
/// for once.
fn route_with(sql: &str, ring: &Ring, params: &[Param]) -> Result<Route, Error> {
    let stmt = one(sql);
    let mut asked = Vec::new();
    let got = route_bound(&stmt, ring, &mut |i| {
        asked.push(i);
        params[i].clone()
    });
    let mut unique = asked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), asked.len(), "{sql}: asked {asked:?}");
    got
}

fn int(k: i64) -> Param {
    Some(Ok(Key::Int(k)))
}

#[test]
fn route_bound_places_parameters_on_the_ring() {
    let ring = ring4();
    let (a, b) = apart(&ring);
    for k in [1, 42, -7, a, b] {
        assert_eq!(
            route_with("SELECT * FROM users WHERE id = $1", &ring, &[int(k)]).unwrap(),
            Route::Shards(vec![shard(&ring, k)])
        );
    }
    let got = route_with(
        "SELECT * FROM users WHERE id IN ($1, $2, 7)",
        &ring,
        &[int(a), int(b)],
    )
    .unwrap();
    let want = sorted(vec![shard(&ring, a), shard(&ring, b), shard(&ring, 7)]);
    assert_eq!(got, Route::Shards(want));
    let text = Some(Ok(Key::Text("bob".into())));
    assert_eq!(
        route_with("SELECT * FROM accounts WHERE name = $1", &ring, &[text]).unwrap(),
        Route::Shards(vec![ring.shard_for_key(&Key::Text("bob".into()))])
    );
    // Only the key parameters are decoded.
    assert_eq!(
        route_with(
            "UPDATE users SET name = $1 WHERE id = $2",
            &ring,
            &[Some(Err("never asked".into())), int(9)]
        )
        .unwrap(),
        Route::Shards(vec![shard(&ring, 9)])
    );
}

#[test]
fn route_bound_null_parameters() {
    let ring = ring4();
    let sql = "SELECT * FROM users WHERE id IN ($1, $2)";
    assert_eq!(
        route_with(sql, &ring, &[None, int(5)]).unwrap(),
        Route::Shards(vec![shard(&ring, 5)])
    );
    // No key at all: no row matches, and one shard says so.
    assert_eq!(
        route_with(sql, &ring, &[None, None]).unwrap(),
        Route::Shards(vec![ShardId(0)])
    );
    assert_eq!(
        route_with("SELECT * FROM users WHERE id IN ($1, 8)", &ring, &[None]).unwrap(),
        Route::Shards(vec![shard(&ring, 8)])
    );
    let e = route_with("INSERT INTO users (id) VALUES ($1)", &ring, &[None]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(
        e.to_string().contains("a NULL shard key cannot be placed"),
        "{e}"
    );
    // A plain EXPLAIN inserts nothing.
    assert!(route_with("EXPLAIN INSERT INTO users (id) VALUES ($1)", &ring, &[None]).is_ok());
    assert!(route_with(
        "EXPLAIN ANALYZE INSERT INTO users (id) VALUES ($1)",
        &ring,
        &[None]
    )
    .is_err());
}

#[test]
fn route_bound_decode_errors() {
    let ring = ring4();
    let bad = Some(Err(
        "invalid input syntax for type bigint: \"x\"".to_string()
    ));
    let e = route_with("SELECT * FROM users WHERE id = $1", &ring, &[bad]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    let text = e.to_string();
    assert!(
        text.contains("invalid input syntax for type bigint"),
        "{text}"
    );
    assert!(text.contains("$1"), "{text}");
    assert!(e.hint().unwrap().contains("integer"));
}

#[test]
fn route_bound_inserts() {
    let ring = ring4();
    let (a, b) = apart(&ring);
    let sql = "INSERT INTO users (id) VALUES ($1), ($2)";
    assert_eq!(
        route_with(sql, &ring, &[int(a), int(a)]).unwrap(),
        Route::Shards(vec![shard(&ring, a)])
    );
    let e = route_with(sql, &ring, &[int(a), int(b)]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("cannot split"), "{e}");
    let sql = format!("INSERT INTO users (id) VALUES ($1), ({b})");
    assert!(route_with(&sql, &ring, &[int(a)]).is_err());
    assert_eq!(
        route_with(&sql, &ring, &[int(b)]).unwrap(),
        Route::Shards(vec![shard(&ring, b)])
    );
}

#[test]
fn route_bound_checks_mergeability() {
    let ring = ring4();
    let (a, b) = apart(&ring);
    let sql = "SELECT string_agg(name, ',') FROM users WHERE id IN ($1, $2)";
    assert!(route_with(sql, &ring, &[int(a), int(a)]).is_ok());
    let e = route_with(sql, &ring, &[int(a), int(b)]).unwrap_err();
    assert!(e.to_string().contains("string_agg()"), "{e}");
    let p = one("EXPLAIN SELECT * FROM users WHERE id = $1");
    assert!(matches!(p.target, Target::Bound(_)));
    assert_eq!(
        p.not_mergeable.as_ref().unwrap().what,
        "EXPLAIN across shards"
    );
}

#[test]
fn route_and_route_bound_agree_elsewhere() {
    let ring = ring4();
    let e = route(&one("SELECT * FROM users WHERE id = $1"), &ring).unwrap_err();
    assert_eq!(e.sqlstate(), "XX000");
    assert!(e.to_string().contains("parameters needed"), "{e}");
    for sql in [
        "SELECT * FROM users WHERE id = 42",
        "SELECT * FROM users",
        "SELECT 1",
        "BEGIN",
        "INSERT INTO users (id) VALUES (1), (2), (3)",
        "SELECT * FROM users ORDER BY id",
        "SELECT * FROM nope",
    ] {
        let stmt = one(sql);
        let got = route_bound(&stmt, &ring, &mut |i| panic!("{sql}: asked for ${}", i + 1));
        assert_eq!(got, route(&stmt, &ring), "{sql}");
    }
}

#[test]
fn route_bound_through_joins() {
    let ring = ring4();
    let (a, b) = apart(&ring);
    assert_eq!(
        route_with(
            "SELECT * FROM orders o JOIN users u ON o.user_id = u.id WHERE u.id = $1",
            &ring,
            &[int(a)]
        )
        .unwrap(),
        Route::Shards(vec![shard(&ring, a)])
    );
    let sql = format!("SELECT * FROM users u, orders o WHERE u.id = {a} AND o.user_id = $1");
    assert_eq!(
        route_with(&sql, &ring, &[int(b)]).unwrap(),
        Route::Shards(sorted(vec![shard(&ring, a), shard(&ring, b)]))
    );
}
