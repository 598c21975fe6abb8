//! Router tests: `route_bound`, resolving bind-parameter keys on a real ring.

use super::tests::one;
use super::*;
use crate::config::{KeyType, ShardConfig};
use crate::ring::ArrayKeys;

fn ring4() -> Ring {
    let shards: Vec<ShardConfig> = (0..4)
        .map(|i| ShardConfig {
            name: format!("s{i}"),
            url: format!("postgres://127.0.0.1:5432/s{i}"),
            weight: 1,
            points: None,
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

fn sorted(v: Vec<ShardId>) -> ShardSet {
    let mut v = ShardSet::from_vec(v);
    v.sort();
    v.dedup();
    v
}

type Param = Option<Result<Key, String>>;
type Array = Option<Result<ArrayKeys, String>>;

/// Routes `sql` with parameter i bound to `params[i]`; also checks each key parameter is asked
/// for once.
fn route_with(sql: &str, ring: &Ring, params: &[Param]) -> Result<Route, Error> {
    route_with_arrays(sql, ring, params, &[])
}

/// As `route_with`, with array parameter i (`id = ANY($i)`) bound to `arrays[i]`.
fn route_with_arrays(
    sql: &str,
    ring: &Ring,
    params: &[Param],
    arrays: &[(usize, Array)],
) -> Result<Route, Error> {
    let stmt = one(sql);
    let asked = std::cell::RefCell::new(Vec::new());
    let got = route_bound(
        &stmt,
        ring,
        &mut |i| {
            asked.borrow_mut().push(i);
            params[i].clone()
        },
        &mut |i| {
            asked.borrow_mut().push(i);
            let bound = arrays.iter().find(|(at, _)| *at == i);
            bound
                .unwrap_or_else(|| panic!("{sql}: asked for array ${}", i + 1))
                .1
                .clone()
        },
    );
    let asked = asked.into_inner();
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
            Route::Shards(smallvec::smallvec![shard(&ring, k)])
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
        Route::Shards(smallvec::smallvec![
            ring.shard_for_key(&Key::Text("bob".into()))
        ])
    );
    // Only the key parameters are decoded.
    assert_eq!(
        route_with(
            "UPDATE users SET name = $1 WHERE id = $2",
            &ring,
            &[Some(Err("never asked".into())), int(9)]
        )
        .unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, 9)])
    );
}

#[test]
fn route_bound_null_parameters() {
    let ring = ring4();
    let sql = "SELECT * FROM users WHERE id IN ($1, $2)";
    assert_eq!(
        route_with(sql, &ring, &[None, int(5)]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, 5)])
    );
    // No key at all: no row matches, and one shard says so.
    assert_eq!(
        route_with(sql, &ring, &[None, None]).unwrap(),
        Route::Shards(smallvec::smallvec![ShardId(0)])
    );
    assert_eq!(
        route_with("SELECT * FROM users WHERE id IN ($1, 8)", &ring, &[None]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, 8)])
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
    // PostgreSQL's own SQLSTATE for a value it would refuse too.
    assert_eq!(e.sqlstate(), "22P02");
    let text = e.to_string();
    assert!(
        text.contains("invalid input syntax for type bigint"),
        "{text}"
    );
    // Which parameter, in the context field, as PostgreSQL gives it.
    assert_eq!(e.context().as_deref(), Some("bind parameter $1"));
    // One PostgreSQL would take, but not as a key: the proxy's refusal.
    let float = Some(Err(
        "a parameter of type double precision cannot be a key of a bigint column".to_string(),
    ));
    let e = route_with("SELECT * FROM users WHERE id = $1", &ring, &[float]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.hint().unwrap().contains("integer"));
}

#[test]
fn route_bound_inserts() {
    let ring = ring4();
    let (a, b) = apart(&ring);
    let sql = "INSERT INTO users (id) VALUES ($1), ($2)";
    assert_eq!(
        route_with(sql, &ring, &[int(a), int(a)]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, a)])
    );
    let e = route_with(sql, &ring, &[int(a), int(b)]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("cannot split"), "{e}");
    let sql = format!("INSERT INTO users (id) VALUES ($1), ({b})");
    assert!(route_with(&sql, &ring, &[int(a)]).is_err());
    assert_eq!(
        route_with(&sql, &ring, &[int(b)]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, b)])
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
        let got = route_bound(
            &stmt,
            &ring,
            &mut |i| panic!("{sql}: asked for ${}", i + 1),
            &mut |i| panic!("{sql}: asked for array ${}", i + 1),
        );
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
        Route::Shards(smallvec::smallvec![shard(&ring, a)])
    );
    let sql = format!("SELECT * FROM users u, orders o WHERE u.id = {a} AND o.user_id = $1");
    assert_eq!(
        route_with(&sql, &ring, &[int(b)]).unwrap(),
        Route::Shards(sorted(vec![shard(&ring, a), shard(&ring, b)]))
    );
}

/// The keys of a text-format array parameter, as the session decodes them.
fn text_array(ty: KeyType, text: &str) -> Array {
    Some(crate::ring::array_from_text(ty, text).map_err(|e| e.0))
}

/// An int8[] in binary format (array_send), NULL elements as None.
fn binary_int_array(elems: &[Option<i64>]) -> Array {
    let mut b = Vec::new();
    for word in [
        1,
        i32::from(elems.contains(&None)),
        crate::ring::oid::INT8 as i32,
    ] {
        b.extend_from_slice(&word.to_be_bytes());
    }
    b.extend_from_slice(&(elems.len() as i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    for e in elems {
        match e {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(k) => {
                b.extend_from_slice(&8i32.to_be_bytes());
                b.extend_from_slice(&k.to_be_bytes());
            }
        }
    }
    Some(crate::ring::array_from_binary(KeyType::Int, &b).map_err(|e| e.0))
}

/// Integer keys spread over every shard, and keys that share one shard.
fn spread(ring: &Ring) -> (Vec<i64>, Vec<i64>) {
    let mut by_shard: Vec<Vec<i64>> = vec![Vec::new(); 4];
    for k in 1..200 {
        by_shard[shard(ring, k).0 as usize].push(k);
    }
    let one_each = by_shard.iter().map(|v| v[0]).collect();
    (one_each, by_shard[2][..3].to_vec())
}

#[test]
fn route_bound_array_parameters() {
    let ring = ring4();
    let (one_each, together) = spread(&ring);
    let sql = "SELECT * FROM users WHERE id = ANY($1)";
    let shards_of = |keys: &[i64]| sorted(keys.iter().map(|&k| shard(&ring, k)).collect());
    // Exactly the shards of the elements, from text and from binary arrays.
    for keys in [
        vec![one_each[0]],
        vec![one_each[1], one_each[3]],
        one_each.clone(),
        together.clone(),
    ] {
        let want = Route::Shards(shards_of(&keys));
        let listed: Vec<String> = keys.iter().map(i64::to_string).collect();
        let text = text_array(KeyType::Int, &format!("{{{}}}", listed.join(",")));
        assert_eq!(
            route_with_arrays(sql, &ring, &[], &[(0, text)]).unwrap(),
            want
        );
        let some: Vec<Option<i64>> = keys.iter().copied().map(Some).collect();
        let binary = binary_int_array(&some);
        assert_eq!(
            route_with_arrays(sql, &ring, &[], &[(0, binary)]).unwrap(),
            want
        );
    }
    assert_eq!(shards_of(&together).len(), 1);
    // Casts, SOME, parentheses.
    for sql in [
        "SELECT * FROM users WHERE id = ANY($1::bigint[])",
        "SELECT * FROM users WHERE id = ANY($1::int[])",
        "SELECT * FROM users WHERE id = ANY(CAST($1 AS int8[]))",
        "SELECT * FROM users WHERE (id = SOME(($1)))",
        "SELECT name FROM users WHERE id = ANY($1) ORDER BY id",
    ] {
        let arr = text_array(KeyType::Int, &format!("{{{}}}", one_each[1]));
        assert_eq!(
            route_with_arrays(sql, &ring, &[], &[(0, arr)]).unwrap(),
            Route::Shards(smallvec::smallvec![shard(&ring, one_each[1])]),
            "{sql}"
        );
    }
    // Text keys.
    let sql = "SELECT * FROM accounts WHERE name = ANY($1::text[])";
    let arr = text_array(KeyType::Text, r#"{"bob","a b",NULL}"#);
    let want = sorted(vec![
        ring.shard_for_key(&Key::Text("bob".into())),
        ring.shard_for_key(&Key::Text("a b".into())),
    ]);
    assert_eq!(
        route_with_arrays(sql, &ring, &[], &[(0, arr)]).unwrap(),
        Route::Shards(want)
    );
}

#[test]
fn route_bound_array_nulls_and_empty_arrays() {
    let ring = ring4();
    let (one_each, _) = spread(&ring);
    let sql = "SELECT * FROM users WHERE id = ANY($1)";
    let k = one_each[3];
    let text = text_array(KeyType::Int, &format!("{{NULL,{k},null}}"));
    let binary = binary_int_array(&[None, Some(k), None]);
    for arr in [text, binary] {
        assert_eq!(
            route_with_arrays(sql, &ring, &[], &[(0, arr)]).unwrap(),
            Route::Shards(smallvec::smallvec![shard(&ring, k)])
        );
    }
    // No key at all (NULL array, empty array, only NULL elements): no row matches, one shard
    // says so.
    for arr in [
        None,
        text_array(KeyType::Int, "{}"),
        text_array(KeyType::Int, "{NULL}"),
        binary_int_array(&[]),
        binary_int_array(&[None, None]),
    ] {
        assert_eq!(
            route_with_arrays(sql, &ring, &[], &[(0, arr.clone())]).unwrap(),
            Route::Shards(smallvec::smallvec![ShardId(0)]),
            "{arr:?}"
        );
    }
}

#[test]
fn route_bound_array_errors_and_limits() {
    let ring = ring4();
    let sql = "SELECT * FROM users WHERE id = ANY($1)";
    for (arr, code) in [
        (text_array(KeyType::Int, "{1,2"), "22P02"),
        (text_array(KeyType::Int, "1,2"), "22P02"),
        (text_array(KeyType::Int, "{1,x}"), "22P02"),
        (
            Some(crate::ring::array_from_binary(KeyType::Int, &[0, 0, 0, 1]).map_err(|e| e.0)),
            "08P01",
        ),
    ] {
        let e = route_with_arrays(sql, &ring, &[], &[(0, arr.clone())]).unwrap_err();
        assert_eq!(e.sqlstate(), code, "{arr:?}");
        assert_eq!(e.context().as_deref(), Some("bind parameter $1"), "{e}");
    }
    let other = Some(Err("a parameter of type text cannot be a key".to_string()));
    let e = route_with_arrays(sql, &ring, &[], &[(0, other)]).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.hint().unwrap().contains("array of integer"), "{e:?}");
    // Too many elements to read: every shard, as before arrays were read at all.
    let huge = Some(Ok(ArrayKeys::TooMany));
    assert_eq!(
        route_with_arrays(sql, &ring, &[], &[(0, huge.clone())]).unwrap(),
        Route::All
    );
    // A decode error of another key parameter still refuses.
    let sql2 = "SELECT * FROM users u, orders o WHERE u.id = ANY($1) AND o.user_id = $2";
    let bad = Some(Err("nope".to_string()));
    assert!(route_with_arrays(sql2, &ring, &[None, bad], &[(0, huge)]).is_err());
}

#[test]
fn route_bound_arrays_with_other_keys() {
    let ring = ring4();
    let (one_each, _) = spread(&ring);
    let (a, b, c) = (one_each[0], one_each[1], one_each[2]);
    // A scalar key elsewhere in the statement adds its shard: the union, as IN lists do.
    let arr = || text_array(KeyType::Int, &format!("{{{a}}}"));
    let sql = "SELECT * FROM users u, orders o WHERE u.id = ANY($1) AND o.user_id = $2";
    assert_eq!(
        route_with_arrays(sql, &ring, &[None, int(b)], &[(0, arr())]).unwrap(),
        Route::Shards(sorted(vec![shard(&ring, a), shard(&ring, b)]))
    );
    let sql = format!("SELECT * FROM users WHERE id = ANY($2) AND id IN ($1, {c})");
    assert_eq!(
        route_with_arrays(&sql, &ring, &[int(b)], &[(1, arr())]).unwrap(),
        Route::Shards(sorted(vec![
            shard(&ring, a),
            shard(&ring, b),
            shard(&ring, c)
        ]))
    );
    // Joined on the keys: both tables are pinned by the array.
    let sql = "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = ANY($1)";
    assert_eq!(
        route_with_arrays(sql, &ring, &[], &[(0, arr())]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, a)])
    );
    // Results that cannot be combined are refused once the keys span shards.
    let sql = "SELECT string_agg(name, ',') FROM users WHERE id = ANY($1)";
    assert!(route_with_arrays(sql, &ring, &[], &[(0, arr())]).is_ok());
    let two = text_array(KeyType::Int, &format!("{{{a},{b}}}"));
    let e = route_with_arrays(sql, &ring, &[], &[(0, two)]).unwrap_err();
    assert!(e.to_string().contains("string_agg()"), "{e}");
    // Writes by an array of keys on one shard.
    let sql = "DELETE FROM users WHERE id = ANY($1)";
    assert_eq!(
        route_with_arrays(sql, &ring, &[], &[(0, arr())]).unwrap(),
        Route::Shards(smallvec::smallvec![shard(&ring, a)])
    );
}

#[test]
fn arrays_that_do_not_pin_route_everywhere() {
    let ring = ring4();
    // OR is not a conjunct: the array narrows nothing, every shard runs it, and the array is
    // never read.
    for sql in [
        "SELECT * FROM users WHERE id = ANY($1) OR name = 'x'",
        "SELECT * FROM users WHERE id = ANY($1) OR id = ANY($2)",
        "SELECT * FROM users WHERE id <> ANY($1)",
        "SELECT * FROM users WHERE id = ALL($1)",
        "SELECT * FROM users WHERE NOT id = ANY($1)",
        "SELECT * FROM users WHERE name = ANY($1)",
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.user_id = ANY($1)",
    ] {
        assert!(matches!(one(sql).target, Target::All), "{sql}");
        assert_eq!(route_with_arrays(sql, &ring, &[], &[]).unwrap(), Route::All);
    }
}
