//! Differential tests: the same seeded data in one unsharded PostgreSQL database and, through the
//! proxy, in four shards; the same queries on both; the answers compared row for row, through the
//! simple protocol (text values, column names) and the extended protocol (binary values, column
//! names and type OIDs).
//!
//! Rows compare as multisets unless the query has an ORDER BY (every ordered query here orders
//! totally: a third, "control" database holds the same rows inserted in reverse order, and any
//! query whose answer differs between the two unsharded copies is reported as a bug of the suite).
//! Columns named `f_...` (float aggregates) compare with a relative tolerance of 1e-9, everything
//! else byte for byte. A query the unsharded database answers must be answered by the
//! proxy; the queries of `queries::REFUSED` must get SQLSTATE 0A000, and the connection must keep
//! working afterwards.
//!
//! Environment:
//! - `DIFF_SEED=N`: replay a run (the seed is printed at the start and in every failure);
//! - `DIFF_QUERIES=N`: how many generated queries (default 300);
//! - `DIFF_ONLY_BASIC=1`: only what the proxy answers without the gather engine: queries on one
//!   shard (both protocols), plain keyless reads of one table (simple protocol), and the refusals
//!   (what the gather engine must answer or may refuse is left out);
//! - `DIFF_FILTER=text`: only the queries whose SQL contains `text`;
//! - `DIFF_SHOW=N`: how many failures to list (default 20).

mod support;

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/data.rs"]
mod data;
#[path = "differential/generator.rs"]
mod generator;
#[path = "differential/queries.rs"]
mod queries;
#[path = "differential/run.rs"]
mod run;
#[path = "differential/terms.rs"]
mod terms;

use compare::{compare, Proto, Side};
use run::{Run, Settings};
use std::time::Instant;
use support::proxy::Proxy;
use support::Shards;

/// The proxy's shards: databases 1..=4 of the harness; database 0 is the unsharded reference and
/// database 5 the control copy (same rows, inserted last to first).
const SHARDS: usize = 4;
const CONTROL: usize = SHARDS + 1;

/// The comparator itself must catch what it is there to catch: each pair runs the first query on
/// the unsharded side and the second through the proxy (both on one shard, so this works without
/// the gather engine), and must (or must not) be flagged.
async fn comparator_catches_differences(plain: &Side, sharded: &Side, seed: u64) {
    let cases: &[(&str, &str, Proto, bool)] = &[
        (
            "SELECT id, name FROM users WHERE id = 5",
            "SELECT id, name FROM users WHERE id = 6",
            Proto::Simple,
            true,
        ),
        (
            "SELECT id, name FROM users WHERE id = 5",
            "SELECT id, name FROM users WHERE id = 6",
            Proto::Extended,
            true,
        ),
        (
            "SELECT 1::int AS x",
            "SELECT 1::bigint AS x",
            Proto::Simple,
            false,
        ),
        (
            "SELECT 1::int AS x",
            "SELECT 1::bigint AS x",
            Proto::Extended,
            true,
        ),
        ("SELECT 1 AS x", "SELECT 1 AS y", Proto::Simple, true),
        (
            "SELECT NULL::text AS x",
            "SELECT ''::text AS x",
            Proto::Simple,
            true,
        ),
        (
            "SELECT NULL::text AS x",
            "SELECT ''::text AS x",
            Proto::Extended,
            true,
        ),
        (
            "SELECT 2.50::numeric AS x",
            "SELECT 2.5::numeric AS x",
            Proto::Extended,
            true,
        ),
        (
            "SELECT 0.1::float8 AS f_x",
            "SELECT (0.1 + 1e-12)::float8 AS f_x",
            Proto::Simple,
            false,
        ),
        (
            "SELECT 0.1::float8 AS f_x",
            "SELECT (0.1 + 1e-12)::float8 AS f_x",
            Proto::Extended,
            false,
        ),
        (
            "SELECT 0.1::float8 AS f_x",
            "SELECT 0.1000001::float8 AS f_x",
            Proto::Simple,
            true,
        ),
        (
            "SELECT 0.1::float8 AS f_x",
            "SELECT 0.1000001::float8 AS f_x",
            Proto::Extended,
            true,
        ),
        (
            "SELECT 0.1::float8 AS x",
            "SELECT (0.1 + 1e-12)::float8 AS x",
            Proto::Extended,
            true,
        ),
        (
            "SELECT x FROM (VALUES (1), (2)) v(x)",
            "SELECT x FROM (VALUES (2), (1)) v(x)",
            Proto::Simple,
            false,
        ),
        (
            "SELECT x FROM (VALUES (1), (1), (2)) v(x)",
            "SELECT x FROM (VALUES (1), (2), (2)) v(x)",
            Proto::Simple,
            true,
        ),
        (
            "SELECT id FROM orders WHERE user_id = 7 ORDER BY id",
            "SELECT id FROM orders WHERE user_id = 7 ORDER BY id DESC",
            Proto::Extended,
            true,
        ),
        (
            "SELECT id FROM orders WHERE user_id = 7 ORDER BY id LIMIT 3",
            "SELECT id FROM orders WHERE user_id = 7 ORDER BY id LIMIT 3",
            Proto::Extended,
            false,
        ),
    ];
    for &(expected_sql, actual_sql, proto, differs) in cases {
        let expected = (plain.run(proto, expected_sql).await)
            .unwrap_or_else(|e| panic!("self-check {expected_sql}: {e} (seed {seed})"));
        let actual = (sharded.run(proto, actual_sql).await).unwrap_or_else(|e| {
            panic!("self-check through the proxy {actual_sql}: {e} (seed {seed})")
        });
        let ordered = compare::has_top_level_order_by(expected_sql);
        let verdict = compare(&expected, &actual, ordered);
        assert_eq!(
            verdict.is_err(),
            differs,
            "comparator self-check ({proto:?}): {expected_sql} vs {actual_sql}: {verdict:?} (seed {seed})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsharded_and_sharded_answers_agree() {
    let settings = Settings::from_env();
    let seed = settings.seed;
    eprintln!("differential seed = {seed} (replay: DIFF_SEED={seed} cargo test --release --test differential)");
    let started = Instant::now();

    let shards = Shards::databases(2 + SHARDS).await;
    let urls = shards.urls();
    let proxy = Proxy::start(&urls[1..=SHARDS], data::TABLES).await;
    let plain = Side::connect(shards.url(0)).await;
    let control = Side::connect(shards.url(CONTROL)).await;
    let sharded = Side::connect(proxy.url()).await;

    let data = data::generate(seed);
    data::load(
        plain.client(),
        &data,
        &format!("unsharded, seed {seed}"),
        false,
    )
    .await;
    data::load(
        control.client(),
        &data,
        &format!("control, seed {seed}"),
        true,
    )
    .await;
    data::load(
        sharded.client(),
        &data,
        &format!("proxy, seed {seed}"),
        false,
    )
    .await;
    // Every row landed exactly once, spread over the shards.
    for table in [&data.users, &data.orders] {
        let sql = format!("SELECT count(*) FROM {}", table.name);
        let per_shard = &shards.scalar_each(&sql).await[1..=SHARDS];
        assert_eq!(
            per_shard.iter().sum::<i64>(),
            table.rows.len() as i64,
            "{}: rows per shard {per_shard:?} (seed {seed})",
            table.name
        );
        assert!(
            per_shard.iter().all(|n| *n > 0),
            "{}: {per_shard:?} (seed {seed})",
            table.name
        );
    }
    let copies = shards.scalar_each("SELECT count(*) FROM countries").await;
    let want = data.countries.rows.len() as i64;
    assert_eq!(
        copies[1..=SHARDS],
        [want; SHARDS],
        "every shard has the reference table"
    );
    let loaded = started.elapsed();

    comparator_catches_differences(&plain, &sharded, seed).await;

    let mut run = Run::new(settings, plain, control, sharded);
    for q in queries::hand_written() {
        run.check(&q).await;
    }
    let generated = generator::generate(&data, seed, run.settings.queries, run.settings.basic);
    for q in &generated {
        run.check(q).await;
    }
    for sql in queries::REFUSED {
        run.check_refused(sql).await;
    }
    eprintln!(
        "differential: setup and load {:.1?}, queries {:.1?}{}",
        loaded,
        started.elapsed() - loaded,
        if run.settings.basic {
            " (DIFF_ONLY_BASIC)"
        } else {
            ""
        }
    );
    match run.report() {
        Ok(summary) => eprintln!("{summary}"),
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn only_a_statement_level_order_by_makes_rows_compare_in_order() {
    use compare::has_top_level_order_by as ordered;
    assert!(ordered("SELECT a FROM t ORDER BY a"));
    assert!(ordered("select a from t\norder by 1 limit 3"));
    assert!(ordered("SELECT a, (SELECT 1) FROM t ORDER BY a"));
    assert!(!ordered("SELECT a FROM t"));
    assert!(!ordered("SELECT row_number() OVER (ORDER BY a) FROM t"));
    assert!(!ordered("SELECT string_agg(a, ',' ORDER BY a) FROM t"));
    assert!(!ordered("SELECT 'x ORDER BY y' FROM t"));
    assert!(!ordered("SELECT a AS reorder_by FROM t"));
}
