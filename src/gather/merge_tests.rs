//! Gather tests on hand-made shard answers: the k-way merge with OFFSET/LIMIT and NULL order,
//! grouped partial aggregates, HAVING, DISTINCT, the empty single group and the memory bound.

use super::collate::Collation;
use super::rows::{self, Field, Row};
use super::{Gather, Next};
use crate::router::{Agg, CmpOp, Grouping, MergePlan, Operand, Pred, SortKey};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

fn field(name: &str, oid: u32) -> Field {
    Field::computed(name, oid)
}

fn description(fields: &[Field]) -> Vec<u8> {
    let mut out = BytesMut::new();
    rows::put_description(&mut out, fields);
    out[5..].to_vec()
}

fn row(cols: &[Option<&str>]) -> Bytes {
    let mut out = BytesMut::new();
    rows::put_row(&mut out, cols.iter().map(|c| c.map(str::as_bytes)));
    out.freeze().slice(5..)
}

/// The rows a gather wrote, as text.
fn read(out: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let len = i32::from_be_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
        if out[at] == b'D' {
            let r = Row::parse(Bytes::copy_from_slice(&out[at + 5..at + 1 + len])).unwrap();
            rows.push(
                (0..r.len())
                    .map(|i| r.get(i).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            );
        }
        at += 1 + len;
    }
    rows
}

fn plan(
    group: Option<Grouping>,
    order: Vec<SortKey>,
    offset: u64,
    limit: Option<u64>,
) -> MergePlan {
    MergePlan {
        shard_sql: String::new(),
        hidden: 0,
        group,
        order,
        offset,
        limit,
        limit_param: None,
        offset_param: None,
        distinct: false,
    }
}

fn key(column: usize, desc: bool, nulls_first: bool) -> SortKey {
    SortKey {
        column,
        desc,
        nulls_first,
        bytewise: false,
        hidden: false,
    }
}

/// Feeds each shard's rows; an ordered plan is driven as the session drives it.
fn run(
    p: MergePlan,
    fields: &[Field],
    shards: Vec<Vec<Bytes>>,
) -> Result<Vec<Vec<Option<String>>>, crate::error::Error> {
    let mut g = Gather::new(
        Arc::new(p),
        Arc::new(Collation::bytewise()),
        1,
        shards.len(),
    );
    g.describe(&description(fields))?;
    let mut out = BytesMut::new();
    let mut queues: Vec<std::collections::VecDeque<Bytes>> =
        shards.into_iter().map(Into::into).collect();
    if g.ordered() {
        let mut want: Vec<usize> = (0..queues.len()).collect();
        loop {
            while let Some(i) = want.pop() {
                match queues[i].pop_front() {
                    Some(r) => g.push(i, r, &mut out)?,
                    None => g.finish_shard(i),
                }
            }
            match g.next(&mut out)? {
                Next::Need(i) => want.push(i),
                Next::Done => break,
            }
        }
    } else {
        for (i, q) in queues.iter_mut().enumerate() {
            while let Some(r) = q.pop_front() {
                g.push(i, r, &mut out)?;
            }
        }
        g.finish(&mut out)?;
    }
    Ok(read(&out))
}

fn texts(rows: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.map(String::from)).collect())
        .collect()
}

#[test]
fn ordered_streams_merge_with_nulls_offset_and_limit() {
    let fields = [field("n", 23), field("s", 25)];
    let shard = |v: &[(Option<&str>, &str)]| v.iter().map(|(n, s)| row(&[*n, Some(s)])).collect();
    // Each shard sorted as `ORDER BY n DESC NULLS LAST`.
    let shards = vec![
        shard(&[(Some("10"), "a"), (Some("2"), "b"), (None, "c")]),
        shard(&[(Some("7"), "d"), (Some("-3"), "e")]),
        shard(&[]),
    ];
    let got = run(
        plan(None, vec![key(0, true, false)], 1, Some(3)),
        &fields,
        shards.clone(),
    )
    .unwrap();
    assert_eq!(
        got,
        texts(&[
            &[Some("7"), Some("d")],
            &[Some("2"), Some("b")],
            &[Some("-3"), Some("e")]
        ])
    );
    let got = run(
        plan(None, vec![key(0, true, false)], 4, None),
        &fields,
        shards,
    )
    .unwrap();
    assert_eq!(got, texts(&[&[None, Some("c")]]));
}

#[test]
fn grouped_partials_combine_and_having_filters() {
    // SELECT city, count(*), sum(x), avg(x) [sum, hidden count] GROUP BY city HAVING count(*) > 2
    let fields = [
        field("city", 25),
        field("count", 20),
        field("sum", 20),
        field("avg", 20),
        field("sg_1", 20),
    ];
    let columns = vec![
        Agg::First,
        Agg::Count,
        Agg::Sum,
        Agg::Avg { count: 4 },
        Agg::Count,
    ];
    let having = Pred::Cmp {
        op: CmpOp::Gt,
        left: Operand::Column(1),
        right: Operand::Literal("2".into()),
    };
    let g = Grouping {
        keys: vec![0],
        columns,
        having: Some(having),
        single: false,
        total: None,
    };
    let r = |c: &str, n: &str, s: Option<&str>, k: &str| row(&[Some(c), Some(n), s, s, Some(k)]);
    let shards = vec![
        vec![
            r("Oslo", "2", Some("3"), "2"),
            r("Rome", "1", Some("5"), "1"),
        ],
        vec![r("Oslo", "2", Some("4"), "1"), r("Rome", "1", None, "0")],
    ];
    let mut p = plan(Some(g), vec![key(0, false, false)], 0, None);
    p.hidden = 1;
    let got = run(p, &fields, shards).unwrap();
    // Oslo: 4 rows, sum 7, avg 7/3 with numeric's scale; Rome (2 rows) fails HAVING.
    assert_eq!(
        got,
        texts(&[&[
            Some("Oslo"),
            Some("4"),
            Some("7"),
            Some("2.3333333333333333")
        ]])
    );
}

#[test]
fn count_distinct_counts_values_across_shards_once() {
    // SELECT count(DISTINCT x) [x hidden, grouped by x on each shard]
    let fields = [field("count", 20), field("sg_1", 23)];
    let g = Grouping {
        keys: vec![],
        columns: vec![
            Agg::CountDistinct {
                of: 1,
                filter: None,
            },
            Agg::Arg,
        ],
        having: None,
        single: true,
        total: None,
    };
    let r = |x: Option<&str>| row(&[Some("1"), x]);
    let shards = vec![
        vec![r(Some("1")), r(Some("2")), r(None)],
        vec![r(Some("2")), r(Some("3"))],
    ];
    let mut p = plan(Some(g.clone()), vec![], 0, None);
    p.hidden = 1;
    assert_eq!(
        run(p.clone(), &fields, shards).unwrap(),
        texts(&[&[Some("3")]])
    );
    // No rows anywhere: one row, count 0.
    assert_eq!(
        run(p, &fields, vec![vec![], vec![]]).unwrap(),
        texts(&[&[Some("0")]])
    );
}

#[test]
fn distinct_drops_later_duplicates_and_numeric_equality_counts() {
    let fields = [field("v", 1700)];
    let shards = vec![
        vec![row(&[Some("1.0")]), row(&[Some("2")])],
        vec![row(&[Some("1.00")]), row(&[None]), row(&[None])],
    ];
    let mut p = plan(None, vec![], 0, None);
    p.distinct = true;
    let got = run(p, &fields, shards).unwrap();
    assert_eq!(got, texts(&[&[Some("1.0")], &[Some("2")], &[None]]));
}

#[test]
fn the_memory_bound_is_a_clear_error() {
    let fields = [field("k", 25), field("count", 20)];
    let g = Grouping {
        keys: vec![0],
        columns: vec![Agg::First, Agg::Count],
        having: None,
        single: false,
        total: None,
    };
    let big = "x".repeat(1000);
    let rows: Vec<Bytes> = (0..2000)
        .map(|i| row(&[Some(&format!("{big}{i}")), Some("1")]))
        .collect();
    let e = run(plan(Some(g), vec![], 0, None), &fields, vec![rows]).unwrap_err();
    assert_eq!(e.sqlstate(), "53200");
    assert!(e.to_string().contains("1 MB"), "{e}");
}

#[test]
fn a_sum_past_bigint_is_out_of_range() {
    let fields = [field("sum", 20)];
    let g = Grouping {
        keys: vec![],
        columns: vec![Agg::Sum],
        having: None,
        single: true,
        total: None,
    };
    let max = i64::MAX.to_string();
    let shards = vec![vec![row(&[Some(&max)])], vec![row(&[Some("1")])]];
    let e = run(plan(Some(g), vec![], 0, None), &fields, shards).unwrap_err();
    assert_eq!(e.sqlstate(), "22003");
}

#[test]
fn text_order_without_the_shards_collation_is_refused() {
    let fields = [field("name", 25), field("n", 23)];
    let mut g = Gather::new(
        Arc::new(plan(None, vec![key(0, false, false)], 0, None)),
        Arc::new(Collation::missing("xx_XX.UTF-8")),
        1,
        2,
    );
    let e = g.describe(&description(&fields)).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("xx_XX.UTF-8"), "{e}");
    // Ordering numbers needs no collation.
    let mut g = Gather::new(
        Arc::new(plan(None, vec![key(1, false, false)], 0, None)),
        Arc::new(Collation::missing("xx_XX.UTF-8")),
        1,
        2,
    );
    assert!(g.describe(&description(&fields)).is_ok());
}
