//! LIMIT, OFFSET and FETCH FIRST of a multi-shard query: constants or bind parameters, and
//! the `LIMIT offset + limit` each shard gets.

use super::rewrite::{refuse, Refusal, KEY_HINT};
use sqlparser::ast::{Expr, LimitClause, Query, Value};

/// A LIMIT or OFFSET: a constant, NULL (none), or a bind parameter (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Num {
    Null,
    Const(i64),
    Param(usize),
}

/// LIMIT and OFFSET; None if one is a negative constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub limit: Num,
    pub offset: Num,
}

pub(super) fn limits(q: &Query) -> Result<Option<Limits>, Refusal> {
    let (limit, offset) = match &q.limit_clause {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (limit.as_ref(), offset.as_ref().map(|o| &o.value)),
        Some(_) => return refuse("this LIMIT syntax across shards", "use LIMIT n OFFSET m"),
    };
    let mut limit = limit.map(number).transpose()?.unwrap_or(Num::Null);
    if let Some(f) = &q.fetch {
        if f.with_ties || f.percent {
            return refuse(
                "FETCH FIRST ... WITH TIES or PERCENT across shards",
                KEY_HINT,
            );
        }
        limit = match &f.quantity {
            Some(e) => number(e)?,
            None => Num::Const(1),
        };
    }
    let offset = offset.map(number).transpose()?.unwrap_or(Num::Null);
    if matches!(limit, Num::Const(n) if n < 0) || matches!(offset, Num::Const(n) if n < 0) {
        return Ok(None);
    }
    Ok(Some(Limits { limit, offset }))
}

/// A LIMIT/OFFSET value.
fn number(e: &Expr) -> Result<Num, Refusal> {
    match e {
        Expr::Nested(inner) => number(inner),
        Expr::Cast { expr, .. } => match number(expr)? {
            Num::Param(p) => Ok(Num::Param(p)),
            _ => refuse(
                format!("LIMIT or OFFSET {e} across shards"),
                "write LIMIT and OFFSET as constants or parameters",
            ),
        },
        Expr::Value(v) => match &v.value {
            Value::Null => Ok(Num::Null),
            Value::Number(n, _) => match n.parse::<i64>() {
                Ok(n) => Ok(Num::Const(n)),
                Err(_) => refuse(
                    format!("LIMIT or OFFSET {n} across shards"),
                    "use a whole number",
                ),
            },
            Value::Placeholder(p) => {
                match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n >= 1 => Ok(Num::Param(n - 1)),
                    _ => refuse(
                        format!("LIMIT or OFFSET {p} across shards"),
                        "use $1, $2, ...",
                    ),
                }
            }
            _ => refuse(
                "LIMIT or OFFSET that is not a number across shards",
                KEY_HINT,
            ),
        },
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match number(expr)? {
            Num::Const(n) => Ok(Num::Const(-n)),
            _ => refuse(
                format!("LIMIT or OFFSET {e} across shards"),
                "use a whole number",
            ),
        },
        _ => refuse(
            format!("LIMIT or OFFSET {e} across shards"),
            "write LIMIT and OFFSET as constants or parameters",
        ),
    }
}

/// The LIMIT each shard gets, as SQL: `offset + limit` rows for row queries; for aggregated
/// queries (which need every row) none, but the parameters stay referenced, as a Bind must
/// supply exactly the statement's parameters.
pub(super) fn shard_limit(l: Limits, rows: bool) -> Option<String> {
    let text = |n: Num| match n {
        Num::Null => None,
        Num::Const(c) => Some(c.to_string()),
        Num::Param(p) => Some(format!("${}::bigint", p + 1)),
    };
    if rows {
        match (l.limit, l.offset) {
            (Num::Const(a), Num::Const(b)) => return Some(a.saturating_add(b).to_string()),
            (Num::Const(a), Num::Null) => return Some(a.to_string()),
            _ => {}
        }
        if let Some(limit) = text(l.limit) {
            return Some(match text(l.offset) {
                Some(o) => format!("{limit} + {o}"),
                None => limit,
            });
        }
    }
    let params: Vec<String> = [l.limit, l.offset]
        .iter()
        .filter_map(|n| match n {
            Num::Param(p) => Some(format!("${}::bigint IS NULL", p + 1)),
            _ => None,
        })
        .collect();
    // A bare NULL would make the CASE text, which LIMIT refuses (42804).
    (!params.is_empty())
        .then(|| format!("CASE WHEN {} THEN NULL::bigint END", params.join(" AND ")))
}

/// An expression this module wrote itself.
pub(super) fn parse_expr(text: &str) -> Expr {
    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|_| Expr::value(Value::Null))
}
