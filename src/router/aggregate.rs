//! The aggregated half of the rewrite: partial aggregates per shard (avg as sum and count,
//! count(DISTINCT x) by grouping the shards on x), group keys, HAVING and ORDER BY over the
//! combined groups.

use super::keys::fold;
use super::merge::{Agg, CmpOp, Grouping, Operand, Pred, SortKey};
use super::rewrite::{
    argument, bare_aggregate, collation, direction, order_exprs, refuse, Builder, Refusal,
};
use super::shape::has_aggregate;
use sqlparser::ast::{
    BinaryOperator, Expr, Function, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query,
    SelectItem, UnaryOperator, Value,
};

const EXPR_HINT: &str = "select the aggregate itself and compute the rest in your application, or add a condition on the shard key";

/// Fills the builder's columns and returns the grouping (its `columns` left for the caller).
pub(super) fn plan(b: &mut Builder<'_>, _q: &Query) -> Result<Grouping, Refusal> {
    if b.wildcard() {
        return refuse(
            "SELECT * with GROUP BY or aggregates across shards",
            "list the columns",
        );
    }
    let vis = b.items.len();
    b.columns = vec![Agg::First; vis];
    for i in 0..vis {
        let (expr, alias) = match &b.select.projection[i] {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => return refuse("this select list across shards", "list the columns"),
        };
        let Some(name) = has_aggregate(expr) else {
            continue;
        };
        if let Some(f) = integer_count(expr) {
            // count(...)::int: the shards' counts come cast, and the proxy's total keeps the
            // cast's type (an int4 past its range is PostgreSQL's own "integer out of range").
            let (_, agg) = partial(b, f)?;
            b.columns[i] = agg;
            continue;
        }
        let Some(f) = bare_aggregate(expr) else {
            return refuse(
                format!("the expression {expr} over aggregate {name}() across shards"),
                EXPR_HINT,
            );
        };
        let (shard_expr, agg) = partial(b, f)?;
        if shard_expr != *expr {
            let alias = alias.unwrap_or_else(|| Ident::with_quote('"', function_name(f)));
            b.items[i] = SelectItem::ExprWithAlias {
                expr: shard_expr,
                alias,
            };
        }
        b.columns[i] = agg;
    }
    let GroupByExpr::Expressions(groups, _) = &b.select.group_by else {
        return refuse("GROUP BY ALL across shards", super::rewrite::KEY_HINT);
    };
    for g in groups {
        if matches!(g, Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_)) {
            return refuse(
                "GROUP BY ROLLUP, CUBE or GROUPING SETS across shards",
                super::rewrite::KEY_HINT,
            );
        }
        if b.visible(g, false)?.is_some() {
            continue;
        }
        if let Some(i) = output_name(b, g)? {
            let _ = i; // grouped by an output column, which is a key already
            continue;
        }
        b.push_hidden(g.clone(), Agg::First);
    }
    let having = match &b.select.having {
        Some(h) => Some(predicate(b, h)?),
        None => None,
    };
    let keys = (0..b.columns.len())
        .filter(|&i| b.columns[i] == Agg::First)
        .collect();
    Ok(Grouping {
        keys,
        columns: Vec::new(),
        having,
        single: groups.is_empty(),
        total: None,
    })
}

/// `GROUP BY name` where `name` is an output column's alias. PostgreSQL prefers an input
/// column of that name; if the aliased expression itself reads such a column, the two
/// readings differ, so that case is refused.
fn output_name(b: &Builder<'_>, g: &Expr) -> Result<Option<usize>, Refusal> {
    let Expr::Identifier(id) = g else {
        return Ok(None);
    };
    let name = fold(id);
    for (i, item) in b.select.projection.iter().enumerate() {
        if let SelectItem::ExprWithAlias { expr, alias } = item {
            if fold(alias) == name {
                let mut reads_name = false;
                let _ = sqlparser::ast::visit_expressions(expr, |x| {
                    if let Expr::Identifier(c) = x {
                        reads_name |= fold(c) == name;
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
                if reads_name {
                    return refuse(
                        format!("GROUP BY {name}, both an output column and an input column, across shards"),
                        "group by the expression itself or by its position",
                    );
                }
                return Ok(Some(i));
            }
        }
    }
    Ok(None)
}

/// What the shards compute in an aggregate's column, and how the proxy combines it. May add
/// helper columns (the count of an avg, the argument of a count(DISTINCT)).
fn partial(b: &mut Builder<'_>, f: &Function) -> Result<(Expr, Agg), Refusal> {
    let name = function_name(f);
    let (arg, distinct) = argument(f)?;
    let same = Expr::Function(f.clone());
    let no_distinct = |agg| {
        if distinct {
            refuse(
                format!("{name}(DISTINCT ...) across shards"),
                "use count(DISTINCT ...), min or max, or add a condition on the shard key",
            )
        } else {
            Ok(agg)
        }
    };
    let vis = b.items.len();
    let agg = match name.as_str() {
        "count" if distinct => {
            let Some(x) = arg else {
                return refuse("count(DISTINCT *) across shards", "name a column");
            };
            b.extra_group.push(x.clone());
            // The shards' own count(DISTINCT x) keeps the column's name and type; its value is
            // replaced by the proxy's count of distinct x.
            let of = vis + b.push_hidden(x.clone(), Agg::Arg);
            // Grouped by x, a shard says whether any row of x passes the FILTER.
            let filter = f.filter.as_ref().map(|cond| {
                let any = call("bool_or", (**cond).clone());
                vis + b.push_hidden(any, Agg::Arg)
            });
            Agg::CountDistinct { of, filter }
        }
        "count" => Agg::Count,
        "sum" => no_distinct(Agg::Sum)?,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "bool_and" | "every" => Agg::BoolAnd,
        "bool_or" => Agg::BoolOr,
        "avg" => {
            no_distinct(Agg::Count)?;
            let count = vis + b.push_hidden(Expr::Function(renamed(f, "count")), Agg::Count);
            return Ok((Expr::Function(renamed(f, "sum")), Agg::Avg { count }));
        }
        "string_agg" | "array_agg" | "json_agg" | "jsonb_agg" => {
            return refuse(
                format!("aggregate {name}() across shards: the order of its elements would depend on the shards"),
                "add a condition on the shard key, or collect the values in your application",
            )
        }
        _ => {
            return refuse(
                format!("aggregate {name}() across shards"),
                "use count, sum, avg, min, max, bool_and or bool_or, or add a condition on the shard key",
            )
        }
    };
    Ok((same, agg))
}

/// `name(arg)`.
pub(super) fn call(name: &str, arg: Expr) -> Expr {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments};
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// `count(...)` cast to an integer type (`count(*)::int`, as node-pg users write it).
fn integer_count(e: &Expr) -> Option<&Function> {
    use sqlparser::ast::DataType as T;
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    let integer = matches!(
        data_type,
        T::Int(_) | T::Integer(_) | T::Int4(_) | T::BigInt(_) | T::Int8(_)
    );
    let f = bare_aggregate(expr)?;
    let plain = argument(f).is_ok_and(|(_, distinct)| !distinct);
    (integer && plain && function_name(f) == "count").then_some(f)
}

fn renamed(f: &Function, to: &str) -> Function {
    let mut g = f.clone();
    g.name = ObjectName::from(vec![Ident::new(to)]);
    g
}

pub(super) fn function_name(f: &Function) -> String {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => fold(i),
        _ => f.name.to_string(),
    }
}

/// The column holding an aggregate that HAVING or ORDER BY names: the select list's own if it
/// is the same call, else a hidden one.
fn aggregate_column(b: &mut Builder<'_>, f: &Function) -> Result<usize, Refusal> {
    let e = Expr::Function(f.clone());
    let want = b.canon(&e);
    for (i, item) in b.select.projection.iter().enumerate() {
        if let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } = item {
            if bare_aggregate(x).is_some() && b.canon(x) == want {
                return Ok(i);
            }
        }
    }
    let vis = b.items.len();
    for (k, item) in b.hidden.iter().enumerate() {
        if let SelectItem::ExprWithAlias { expr, .. } = item {
            let combines = b.columns[vis + k];
            if combines != Agg::First && combines != Agg::Arg && b.canon(expr) == want {
                return Ok(vis + k);
            }
        }
    }
    let (shard_expr, agg) = partial(b, f)?;
    Ok(vis + b.push_hidden(shard_expr, agg))
}

/// A column for an expression without aggregates: the select list's if it is the same
/// expression, else a hidden one (its value is the same throughout a group).
fn plain_column(b: &mut Builder<'_>, e: &Expr) -> Result<usize, Refusal> {
    if let Some(i) = b.visible(e, false)? {
        return Ok(i);
    }
    let vis = b.items.len();
    Ok(vis + b.push_hidden(e.clone(), Agg::First))
}

/// HAVING as a predicate over the combined rows. Its comparisons may involve aggregates;
/// anything without aggregates is evaluated by the shards as a hidden column.
fn predicate(b: &mut Builder<'_>, e: &Expr) -> Result<Pred, Refusal> {
    if has_aggregate(e).is_none() {
        return Ok(Pred::Column(plain_column(b, e)?));
    }
    Ok(match e {
        Expr::Nested(inner) => predicate(b, inner)?,
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => Pred::And(
                Box::new(predicate(b, left)?),
                Box::new(predicate(b, right)?),
            ),
            BinaryOperator::Or => Pred::Or(
                Box::new(predicate(b, left)?),
                Box::new(predicate(b, right)?),
            ),
            _ => {
                let op = match op {
                    BinaryOperator::Eq => CmpOp::Eq,
                    BinaryOperator::NotEq => CmpOp::Ne,
                    BinaryOperator::Lt => CmpOp::Lt,
                    BinaryOperator::LtEq => CmpOp::Le,
                    BinaryOperator::Gt => CmpOp::Gt,
                    BinaryOperator::GtEq => CmpOp::Ge,
                    _ => return having_refusal(e),
                };
                Pred::Cmp {
                    op,
                    left: typed_operand(b, left, right)?,
                    right: typed_operand(b, right, left)?,
                }
            }
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Pred::Not(Box::new(predicate(b, expr)?)),
        Expr::IsNull(x) => Pred::IsNull {
            operand: operand(b, x)?,
            negated: false,
        },
        Expr::IsNotNull(x) => Pred::IsNull {
            operand: operand(b, x)?,
            negated: true,
        },
        _ => return having_refusal(e),
    })
}

fn having_refusal<T>(e: &Expr) -> Result<T, Refusal> {
    refuse(
        format!("HAVING {e} across shards"),
        "in HAVING, compare aggregates with =, <>, <, <=, >, >= (combined with AND, OR, NOT, IS NULL), or add a condition on the shard key",
    )
}

fn operand(b: &mut Builder<'_>, e: &Expr) -> Result<Operand, Refusal> {
    if let Some(lit) = literal(e) {
        return Ok(lit);
    }
    if let Some(f) = bare_aggregate(e).or_else(|| integer_count(e)) {
        return Ok(Operand::Column(aggregate_column(b, f)?));
    }
    if has_aggregate(e).is_some() {
        return having_refusal(e);
    }
    Ok(Operand::Column(plain_column(b, e)?))
}

/// A quoted constant compared with an expression takes that expression's type in PostgreSQL
/// ('2024-01-01' against a timestamp): the shards read it so, as
/// `CASE WHEN false THEN <expression> ELSE <constant> END`, whose type is the expression's.
/// A parameter likewise: alone in a select list PostgreSQL would make it text, and a driver
/// that bound it as the expression's type (an int4 in binary) would be refused.
fn typed_operand(b: &mut Builder<'_>, e: &Expr, other: &Expr) -> Result<Operand, Refusal> {
    let quoted = matches!(e, Expr::Value(v)
        if matches!(v.value, Value::SingleQuotedString(_) | Value::Placeholder(_)));
    if quoted && literal(other).is_none() {
        let typed = Expr::Case {
            case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![sqlparser::ast::CaseWhen {
                condition: Expr::value(Value::Boolean(false)),
                result: other.clone(),
            }],
            else_result: Some(Box::new(e.clone())),
        };
        let vis = b.items.len();
        return Ok(Operand::Column(vis + b.push_hidden(typed, Agg::First)));
    }
    operand(b, e)
}

fn literal(e: &Expr) -> Option<Operand> {
    match e {
        Expr::Nested(inner) => literal(inner),
        Expr::Value(v) => match &v.value {
            Value::Null => Some(Operand::Null),
            Value::Number(n, _) => Some(Operand::Literal(n.clone())),
            Value::SingleQuotedString(s) => Some(Operand::Literal(s.clone())),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Operand::Literal(n) if n.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                Some(Operand::Literal(format!("-{n}")))
            }
            _ => None,
        },
        _ => None,
    }
}

/// ORDER BY over the combined groups: positions, output names, the select list's expressions,
/// aggregates, or expressions of the group keys (hidden columns).
pub(super) fn order(b: &mut Builder<'_>, q: &Query) -> Result<Vec<SortKey>, Refusal> {
    let mut keys = Vec::new();
    for o in order_exprs(q) {
        let (desc, nulls_first) = direction(o)?;
        let (expr, bytewise) = collation(&o.expr)?;
        let column = if let Some(i) = b.visible(expr, true)? {
            i
        } else if let Some(f) = bare_aggregate(expr) {
            aggregate_column(b, f)?
        } else if let Some(name) = has_aggregate(expr) {
            return refuse(
                format!("ORDER BY the expression {expr} over aggregate {name}() across shards"),
                "select the expression with an alias computed in your application, or order by the aggregate itself",
            );
        } else if b.distinct {
            return refuse(
                format!("ORDER BY {expr} with SELECT DISTINCT across shards, as it is not written as in the select list"),
                "order by the select list's own expressions or positions",
            );
        } else {
            plain_column(b, expr)?
        };
        keys.push(SortKey {
            column,
            desc,
            nulls_first,
            bytewise,
            hidden: false,
        });
    }
    Ok(keys)
}
