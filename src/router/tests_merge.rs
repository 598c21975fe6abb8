//! Router tests: merge plans of multi-shard queries (the shard SQL and how rows combine), and
//! the refusals of what cannot be combined exactly.

use super::tests::one;
use super::*;

fn merge(sql: &str) -> MergePlan {
    let p = one(sql);
    assert!(p.not_mergeable.is_none(), "{sql}: {:?}", p.not_mergeable);
    (*p.merge.unwrap_or_else(|| panic!("{sql}: no merge plan"))).clone()
}

fn refused(sql: &str) -> String {
    let p = one(sql);
    p.not_mergeable
        .unwrap_or_else(|| panic!("{sql}: not refused: {:?}", p.merge))
        .what
}

#[test]
fn concatenation_needs_no_plan() {
    for sql in [
        "SELECT * FROM users",
        "SELECT * FROM users FOR UPDATE",
        "SELECT id, (SELECT count(*) FROM countries) FROM users",
        "SELECT count(*) FROM countries",
        "UPDATE users SET x = 1",
        "SELECT * FROM users LIMIT -1",
    ] {
        let p = one(sql);
        assert!(p.merge.is_none() && p.not_mergeable.is_none(), "{sql}");
    }
}

#[test]
fn ordered_rows_are_merged_with_the_limit_pushed_down() {
    let m = merge("SELECT id, name FROM users ORDER BY name DESC, 1 LIMIT 10 OFFSET 5");
    assert_eq!(
        m.shard_sql,
        "SELECT id, name FROM users ORDER BY name DESC, 1 LIMIT 15"
    );
    assert_eq!((m.limit, m.offset, m.hidden), (Some(10), 5, 0));
    let cols: Vec<_> = m
        .order
        .iter()
        .map(|k| (k.column, k.desc, k.nulls_first))
        .collect();
    assert_eq!(cols, [(1, true, true), (0, false, false)]);
    let m = merge("SELECT id FROM users u ORDER BY U.Name NULLS FIRST");
    assert_eq!(m.hidden, 1);
    assert!(m.order[0].hidden && m.order[0].nulls_first);
    assert!(
        m.shard_sql
            .starts_with("SELECT id, U.Name AS \"sg_1\" FROM"),
        "{}",
        m.shard_sql
    );
    let m = merge("SELECT * FROM users ORDER BY name COLLATE \"C\" OFFSET 3");
    assert!(m.order[0].bytewise && m.order[0].hidden);
    assert_eq!((m.limit, m.offset), (None, 3));
    assert!(!m.shard_sql.contains("OFFSET"), "{}", m.shard_sql);
    let m = merge("SELECT name AS n FROM users ORDER BY n FETCH FIRST 2 ROWS ONLY");
    assert_eq!((m.order[0].column, m.limit), (0, Some(2)));
    let m = merge("SELECT id FROM users ORDER BY id LIMIT $2 OFFSET $1");
    assert_eq!((m.limit_param, m.offset_param), (Some(1), Some(0)));
    assert!(
        m.shard_sql.ends_with("LIMIT $2::BIGINT + $1::BIGINT"),
        "{}",
        m.shard_sql
    );
    // Aggregated: the shards need every row, but the parameters stay in the statement.
    let m = merge("SELECT count(*) FROM users GROUP BY name LIMIT $1");
    assert!(
        m.shard_sql
            .ends_with("LIMIT CASE WHEN $1::BIGINT IS NULL THEN NULL::BIGINT END"),
        "{}",
        m.shard_sql
    );
    let m = merge("SELECT DISTINCT name FROM users");
    assert!(m.distinct && m.group.is_none());
}

#[test]
fn aggregates_become_partials() {
    let m =
        merge("SELECT count(*), sum(x), avg(x), min(name), max(x) FILTER (WHERE x > 0) FROM users");
    assert_eq!(
        m.shard_sql,
        "SELECT count(*), sum(x), sum(x) AS \"avg\", min(name), max(x) FILTER (WHERE x > 0), count(x) AS \"sg_1\" FROM users"
    );
    let g = m.group.unwrap();
    assert!(g.single && g.keys.is_empty());
    assert_eq!(
        g.columns,
        [
            Agg::Count,
            Agg::Sum,
            Agg::Avg { count: 5 },
            Agg::Min,
            Agg::Max,
            Agg::Count
        ]
    );
    let m = merge("SELECT city, count(DISTINCT name) AS n FROM users GROUP BY city HAVING count(*) > 2 ORDER BY n DESC, 1 LIMIT 3");
    assert_eq!(
        m.shard_sql,
        "SELECT city, count(DISTINCT name) AS n, name AS \"sg_1\", count(*) AS \"sg_2\" FROM users GROUP BY city, name"
    );
    let g = m.group.unwrap();
    assert_eq!(g.keys, [0]);
    assert_eq!(
        g.columns,
        [
            Agg::First,
            Agg::CountDistinct {
                of: 2,
                filter: None
            },
            Agg::Arg,
            Agg::Count
        ]
    );
    assert_eq!(
        g.having,
        Some(Pred::Cmp {
            op: CmpOp::Gt,
            left: Operand::Column(3),
            right: Operand::Literal("2".into())
        })
    );
    assert_eq!(m.order.iter().map(|k| k.column).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(m.limit, Some(3));
    // No GROUP BY, a count(DISTINCT) and a constant: every shard also returns its grand total,
    // which carries the constant even over no rows; without a constant, nothing changes.
    let m = merge("SELECT 'x', count(DISTINCT name) FROM users HAVING count(*) > 2");
    assert_eq!(
        m.shard_sql,
        "SELECT 'x', count(DISTINCT name), name AS \"sg_1\", count(*) AS \"sg_2\", grouping(name) AS \"sg_3\" FROM users GROUP BY GROUPING SETS ((name), ())"
    );
    let g = m.group.unwrap();
    assert_eq!((g.keys, g.total, g.single), (vec![0], Some(4), true));
    let m = merge("SELECT count(DISTINCT name) FROM users HAVING count(*) > 2");
    assert!(m.shard_sql.ends_with("GROUP BY name"), "{}", m.shard_sql);
    assert_eq!(m.group.unwrap().total, None);
    // A grouped expression that is not selected still keys the groups.
    let m = merge("SELECT count(*) FROM users GROUP BY lower(name) ORDER BY max(x)");
    let g = m.group.unwrap();
    assert_eq!(g.keys, [1]);
    assert_eq!(g.columns, [Agg::Count, Agg::First, Agg::Max]);
    assert_eq!(m.order[0].column, 2);
    // Output names and positions group and order too.
    let m = merge("SELECT lower(name) AS l, avg(x) FROM users GROUP BY l ORDER BY 2");
    assert_eq!(m.group.unwrap().keys, [0]);
    assert_eq!(m.order[0].column, 1);
}

#[test]
fn an_integer_cast_of_count_keeps_its_type() {
    let m = merge("SELECT count(*)::int, count(x)::bigint FROM users");
    assert_eq!(
        m.shard_sql,
        "SELECT count(*)::INT, count(x)::BIGINT FROM users"
    );
    assert_eq!(m.group.unwrap().columns, [Agg::Count, Agg::Count]);
    assert!(refused("SELECT sum(x)::int FROM users").contains("over aggregate sum()"));
}

#[test]
fn joins_on_the_key_across_shards_are_merged() {
    let m =
        merge("SELECT u.name, count(*) FROM users u JOIN users v ON v.id = u.id GROUP BY u.name");
    assert_eq!(m.group.unwrap().keys, [0]);
}

#[test]
fn what_cannot_be_combined_is_refused() {
    for (sql, want) in [
        ("SELECT DISTINCT ON (name) * FROM users", "DISTINCT ON"),
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM users",
            "percentile_cont",
        ),
        ("SELECT 1 + max(x) FROM users", "over aggregate max()"),
        (
            "SELECT row_number() OVER () FROM users",
            "window function row_number()",
        ),
        (
            "SELECT id FROM users ORDER BY rank() OVER (ORDER BY x)",
            "window function rank()",
        ),
        (
            "SELECT id FROM users WHERE id = 1 UNION SELECT id FROM users WHERE id = 2",
            "UNION",
        ),
        ("SELECT string_agg(name, ',') FROM users", "string_agg()"),
        ("SELECT sum(DISTINCT x) FROM users", "sum(DISTINCT"),
        ("SELECT * , count(*) FROM users", "SELECT *"),
        ("SELECT name FROM users GROUP BY ROLLUP (name)", "ROLLUP"),
        ("SELECT DISTINCT name FROM users ORDER BY x", "DISTINCT"),
        ("SELECT id FROM users LIMIT $1 + 1", "LIMIT or OFFSET"),
        (
            "SELECT x FROM users GROUP BY x HAVING sum(x) + 1 > 2",
            "HAVING",
        ),
        (
            "SELECT lower(name) AS name, count(*) FROM users GROUP BY name",
            "output column",
        ),
        ("SELECT x FROM users ORDER BY x USING <", "USING"),
        (
            "SELECT x, count(*) FROM users GROUP BY x ORDER BY count(*) + 1",
            "over aggregate count()",
        ),
    ] {
        let got = refused(sql);
        assert!(got.contains(want), "{sql}: {got}");
    }
}
