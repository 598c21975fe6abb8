//! Whether a shape's merge plan, with a statement's literals bound, merges the shards' rows as
//! that statement's own merge plan does (`cache::gatherable`).
//!
//! The two plans come from one query whose literals are `$n` parameters in the shape. They
//! differ in one place by construction: a number compared in HAVING is a constant of the
//! statement's own plan (`Operand::Literal`), where the shape's plan has the shards return the
//! parameter as a hidden column, typed as what it is compared with (and, being the same in
//! every row, among the group keys). So the shape's plan may have more hidden columns than the
//! statement's, and the columns after them move. Everything else must be equal, column for
//! column once those extra columns are set aside.

use super::merge::{Agg, Grouping, MergePlan, Operand, Pred, SortKey};

/// True when `theirs` (the shape's plan) merges as `mine` (the statement's own) does, LIMIT and
/// OFFSET aside (their parameters are checked by the caller).
pub(super) fn merges_alike(mine: &MergePlan, theirs: &MergePlan) -> bool {
    if mine.distinct != theirs.distinct {
        return false;
    }
    let (a, b) = match (&mine.group, &theirs.group) {
        (None, None) => return mine.hidden == theirs.hidden && mine.order == theirs.order,
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    let (na, nb) = (a.columns.len(), b.columns.len());
    let (Some(visible), Some(visible_b)) =
        (na.checked_sub(mine.hidden), nb.checked_sub(theirs.hidden))
    else {
        return false;
    };
    if visible != visible_b || a.single != b.single {
        return false;
    }
    // The shape's columns that stand for a constant of the statement's HAVING.
    let mut extra = vec![false; nb];
    match (&a.having, &b.having) {
        (None, None) => {}
        (Some(pa), Some(pb)) if zip_preds(pa, pb, &mut |x, y| constant(x, y, &mut extra)) => {}
        _ => return false,
    }
    let extra_ok = |j: usize| j >= visible && b.columns[j] == Agg::First;
    if (0..nb).any(|j| extra[j] && !extra_ok(j)) {
        return false;
    }
    // The shards' grand totals (`Grouping::total`) give only the constants' values: the shape
    // may need them for its HAVING's parameters where the statement's own plan needs none.
    match (a.total, b.total) {
        (None, Some(t)) if b.columns.get(t) == Some(&Agg::Arg) => extra[t] = true,
        (None, None) | (Some(_), Some(_)) => {}
        _ => return false,
    }
    // The statement's column i is the shape's map[i].
    let map: Vec<usize> = (0..nb).filter(|&j| !extra[j]).collect();
    if map.len() != na {
        return false;
    }
    let to = |i: usize| map.get(i).copied();
    let same_having = match (&a.having, &b.having) {
        (Some(pa), Some(pb)) => same_pred(pa, pb, &to, &extra),
        _ => true,
    };
    same_having
        && (a.total.is_none() || a.total.and_then(to) == b.total)
        && same_columns(a, b, &to, &extra)
        && mine.order.len() == theirs.order.len()
        && (mine.order.iter().zip(&theirs.order))
            .all(|(x, y)| to(x.column).is_some_and(|c| SortKey { column: c, ..*x } == *y))
}

/// Walks both predicates alike, calling `each` with every pair of operands in the same place
/// (a boolean column as a pair of column operands); false if their structure differs or
/// `each` says so.
fn zip_preds(a: &Pred, b: &Pred, each: &mut dyn FnMut(&Operand, &Operand) -> bool) -> bool {
    match (a, b) {
        (Pred::And(a1, a2), Pred::And(b1, b2)) | (Pred::Or(a1, a2), Pred::Or(b1, b2)) => {
            zip_preds(a1, b1, each) && zip_preds(a2, b2, each)
        }
        (Pred::Not(a), Pred::Not(b)) => zip_preds(a, b, each),
        (
            Pred::Cmp {
                op: oa,
                left: la,
                right: ra,
            },
            Pred::Cmp {
                op: ob,
                left: lb,
                right: rb,
            },
        ) => oa == ob && each(la, lb) && each(ra, rb),
        (
            Pred::IsNull {
                operand: x,
                negated: na,
            },
            Pred::IsNull {
                operand: y,
                negated: nb,
            },
        ) => na == nb && each(x, y),
        (Pred::Column(i), Pred::Column(j)) => each(&Operand::Column(*i), &Operand::Column(*j)),
        _ => false,
    }
}

/// Marks in `extra` the shape's column that stands where the statement has a constant.
fn constant(a: &Operand, b: &Operand, extra: &mut [bool]) -> bool {
    match (a, b) {
        (Operand::Literal(_), Operand::Column(j)) => match extra.get_mut(*j) {
            // One parameter stands for one constant.
            Some(e) if !*e => {
                *e = true;
                true
            }
            _ => false,
        },
        (Operand::Column(_), Operand::Column(_)) | (Operand::Null, Operand::Null) => true,
        (Operand::Literal(x), Operand::Literal(y)) => x == y,
        _ => false,
    }
}

/// The predicates compare the same columns (through `to`) and the same constants.
fn same_pred(a: &Pred, b: &Pred, to: &dyn Fn(usize) -> Option<usize>, extra: &[bool]) -> bool {
    zip_preds(a, b, &mut |x, y| match (x, y) {
        (Operand::Column(i), Operand::Column(j)) => to(*i) == Some(*j),
        (Operand::Literal(_), Operand::Column(j)) => extra.get(*j) == Some(&true),
        (x, y) => x == y,
    })
}

/// The group keys and each column's combination agree, through `to`. The shape's extra columns
/// may be group keys: as constants, they split no group.
fn same_columns(
    a: &Grouping,
    b: &Grouping,
    to: &dyn Fn(usize) -> Option<usize>,
    extra: &[bool],
) -> bool {
    let same_agg = |x: Agg, y: Agg| match (x, y) {
        (Agg::Avg { count: c }, Agg::Avg { count: d }) => to(c) == Some(d),
        (
            Agg::CountDistinct { of, filter },
            Agg::CountDistinct {
                of: of_b,
                filter: filter_b,
            },
        ) => {
            to(of) == Some(of_b)
                && match (filter, filter_b) {
                    (Some(f), Some(g)) => to(f) == Some(g),
                    (None, None) => true,
                    _ => false,
                }
        }
        (x, y) => x == y,
    };
    let keys_b: Vec<usize> = (b.keys.iter().copied())
        .filter(|&l| extra.get(l) != Some(&true))
        .collect();
    a.keys.len() == keys_b.len()
        && (a.keys.iter().zip(&keys_b)).all(|(&k, &l)| to(k) == Some(l))
        && (a.columns.iter().enumerate())
            .all(|(i, &x)| to(i).is_some_and(|j| same_agg(x, b.columns[j])))
}

#[cfg(test)]
mod tests {
    use super::merges_alike;
    use crate::router::merge::MergePlan;
    use crate::router::plan;
    use crate::router::tests::catalog;

    fn merge(sql: &str) -> MergePlan {
        let p = plan(sql, &catalog());
        let stmt = p.statements.first().expect("one statement");
        (**stmt.merge.as_ref().expect("a merge plan")).clone()
    }

    /// The statement's own plan and its shape's, for pairs of (text, shape); and pairs that
    /// differ in more than their constants.
    #[test]
    fn constants_of_having_are_the_only_difference_allowed() {
        let alike = [
            (
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > $1",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > 5 AND avg(score) < 70 ORDER BY max(id) DESC",
                "SELECT name FROM users GROUP BY name HAVING count(*) > $1 AND avg(score) < $2 ORDER BY max(id) DESC",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING min(created) >= '2024-01-05' OR count(*) = -2",
                "SELECT name FROM users GROUP BY name HAVING min(created) >= $1 OR count(*) = -$2",
            ),
            (
                "SELECT name, count(DISTINCT score) FROM users GROUP BY name HAVING sum(score) IS NOT NULL",
                "SELECT name, count(DISTINCT score) FROM users GROUP BY name HAVING sum(score) IS NOT NULL",
            ),
            // The shape's shards return their grand totals too, for its parameter's column.
            (
                "SELECT count(DISTINCT score) FROM users WHERE id > 5 HAVING count(*) <= 26",
                "SELECT count(DISTINCT score) FROM users WHERE id > $1 HAVING count(*) <= $2",
            ),
            (
                "SELECT 'x', count(DISTINCT score) FROM users HAVING min(name) > 'a'",
                "SELECT $1, count(DISTINCT score) FROM users HAVING min(name) > $2",
            ),
        ];
        for (text, shape) in alike {
            let (mine, theirs) = (merge(text), merge(shape));
            assert!(
                merges_alike(&mine, &theirs),
                "{text}\n{mine:#?}\n{theirs:#?}"
            );
        }
        // The hidden column of ORDER BY max(id) moves past the two parameters' columns.
        let (mine, theirs) = (merge(alike[1].0), merge(alike[1].1));
        assert_eq!(theirs.hidden, mine.hidden + 2);
        assert_eq!(theirs.order[0].column, mine.order[0].column + 2);
        let (mine, theirs) = (merge(alike[4].0), merge(alike[4].1));
        let (a, b) = (mine.group.unwrap(), theirs.group.unwrap());
        assert_eq!((a.total, b.total), (None, Some(4)));

        let different = [
            (
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) >= $1",
            ),
            (
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name, count(*) FROM users GROUP BY name HAVING sum(score) > $1",
            ),
            (
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name, count(*) FROM users GROUP BY name, score HAVING count(*) > $1",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > 5 ORDER BY max(id)",
                "SELECT name FROM users GROUP BY name HAVING count(*) > $1 ORDER BY min(id)",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > 5 OR count(*) < 2",
                "SELECT name FROM users GROUP BY name HAVING count(*) > $1 AND count(*) < $2",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name FROM users GROUP BY name HAVING count(*) > $1 AND count(*) < $2",
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > 5",
                "SELECT name FROM users GROUP BY name",
            ),
            (
                "SELECT 'x', count(DISTINCT score) FROM users",
                "SELECT count(DISTINCT score) FROM users",
            ),
            (
                "SELECT DISTINCT name FROM users WHERE score > 5",
                "SELECT name FROM users WHERE score > $1 ORDER BY name",
            ),
        ];
        for (text, shape) in different {
            let (mine, theirs) = (merge(text), merge(shape));
            assert!(!merges_alike(&mine, &theirs), "{text}\n{shape}");
        }
    }
}
