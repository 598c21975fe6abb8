//! Rewrites a query that runs on several shards into the SQL each shard runs and the merge plan
//! that combines their rows; refuses, naming the construct, what cannot be combined exactly.

use super::keys::fold;
use super::limit::{limits, parse_expr, shard_limit, Num};
use super::merge::{Agg, Grouping, MergePlan, SortKey};
use super::shape::{has_aggregate, has_window, is_aggregate};
use sqlparser::ast::{
    Distinct, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, LimitClause, ObjectNamePart, OrderByExpr, OrderByKind, OrderBySort, Query,
    Select, SelectItem, SetExpr, TableFactor, Value,
};

/// Why a multi-shard query cannot be answered exactly, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The construct, e.g. "window function row_number() across shards".
    pub what: String,
    pub hint: String,
}

pub(super) const KEY_HINT: &str =
    "add a condition on the shard key (e.g. WHERE id = ...) so the statement runs on one shard";

pub(super) fn refuse<T>(what: impl Into<String>, hint: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        what: what.into(),
        hint: hint.into(),
    })
}

/// The merge plan of a query whose rows come from several shards: None when concatenating
/// them is already exact (no ORDER BY, LIMIT, DISTINCT or aggregation).
pub(super) fn plan(q: &Query) -> Result<Option<MergePlan>, Refusal> {
    let select = match q.body.as_ref() {
        SetExpr::Select(s) => s,
        SetExpr::SetOperation { op, .. } => return refuse(format!("{op} across shards"), KEY_HINT),
        SetExpr::Query(inner) if plain(q) => return plan(inner),
        _ if plain(q) => return Ok(None),
        _ => {
            return refuse(
                "ORDER BY or LIMIT over this kind of query across shards",
                KEY_HINT,
            )
        }
    };
    if let Some(f) = has_window(select, q) {
        return refuse(
            format!("window function {f}() across shards"),
            "compute the window per shard key (add a condition on the shard key), or window over the rows in your application",
        );
    }
    let Some(lims) = limits(q)? else {
        // A negative LIMIT or OFFSET: every shard answers PostgreSQL's own error.
        return Ok(None);
    };
    let distinct = match &select.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => {
            return refuse(
                "DISTINCT ON across shards",
                "use GROUP BY with aggregates, or add a condition on the shard key",
            )
        }
    };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => return refuse("GROUP BY ALL across shards", KEY_HINT),
        GroupByExpr::Expressions(e, modifiers) => {
            if !modifiers.is_empty() {
                return refuse(
                    "GROUP BY ROLLUP, CUBE or GROUPING SETS across shards",
                    KEY_HINT,
                );
            }
            !e.is_empty()
        }
    };
    let aggregated = grouped
        || select.having.is_some()
        || select.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e).is_some()
            }
            _ => false,
        })
        || order_exprs(q).any(|o| has_aggregate(&o.expr).is_some());
    let no_limit = lims.limit == Num::Null && matches!(lims.offset, Num::Null | Num::Const(0));
    if !aggregated && !distinct && q.order_by.is_none() && no_limit {
        return Ok(None);
    }
    let mut b = Builder::new(select, distinct);
    let mut plan = if aggregated {
        b.aggregated(q)?
    } else {
        b.rows(q)?
    };
    let param = |n: Num| match n {
        Num::Param(p) => Some(p),
        _ => None,
    };
    let constant = |n: Num| match n {
        Num::Const(c) => Some(c as u64),
        _ => None,
    };
    plan.limit = constant(lims.limit);
    plan.offset = constant(lims.offset).unwrap_or(0);
    plan.limit_param = param(lims.limit);
    plan.offset_param = param(lims.offset);
    plan.distinct = distinct;
    plan.shard_sql = b.render(q, aggregated, shard_limit(lims, !aggregated));
    Ok(Some(plan))
}

fn plain(q: &Query) -> bool {
    q.order_by.is_none() && q.limit_clause.is_none() && q.fetch.is_none()
}

pub(super) fn order_exprs(q: &Query) -> impl Iterator<Item = &OrderByExpr> {
    q.order_by.iter().flat_map(|o| match &o.kind {
        OrderByKind::Expressions(v) => v.as_slice(),
        OrderByKind::All(_) => &[],
    })
}

/// The shard query's select list as it is being built, and what each column means.
pub(super) struct Builder<'s> {
    pub select: &'s Select,
    pub distinct: bool,
    /// Qualifiers can be ignored when matching expressions: one table in FROM.
    single_table: bool,
    /// The select list the client wrote, rewritten in place (avg becomes sum).
    pub items: Vec<SelectItem>,
    /// Columns only the merge needs, after the visible ones.
    pub hidden: Vec<SelectItem>,
    /// For aggregated queries: how each column (visible, then hidden) combines.
    pub columns: Vec<Agg>,
    /// Expressions added to the shards' GROUP BY (the arguments of count(DISTINCT x)).
    pub extra_group: Vec<Expr>,
    /// The shards group by `GROUPING SETS ((extra_group), ())` (`Grouping::total`).
    grand_total: bool,
}

impl<'s> Builder<'s> {
    fn new(select: &'s Select, distinct: bool) -> Self {
        let single_table = select.from.len() == 1
            && select.from[0].joins.is_empty()
            && matches!(select.from[0].relation, TableFactor::Table { .. });
        Builder {
            select,
            distinct,
            single_table,
            items: select.projection.clone(),
            hidden: Vec::new(),
            columns: Vec::new(),
            extra_group: Vec::new(),
            grand_total: false,
        }
    }

    /// An expression as text, identifiers folded (and unqualified with one table in FROM), so
    /// that `U.City` in ORDER BY matches `u.city` in the select list.
    pub fn canon(&self, e: &Expr) -> String {
        let mut e = e.clone();
        let single = self.single_table;
        let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
            match x {
                Expr::CompoundIdentifier(parts) if single => {
                    if let Some(last) = parts.pop() {
                        *x = Expr::Identifier(folded(&last));
                    }
                }
                Expr::CompoundIdentifier(parts) => {
                    for p in parts.iter_mut() {
                        *p = folded(p);
                    }
                }
                Expr::Identifier(i) => *i = folded(i),
                _ => {}
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        e.to_string()
    }

    /// The visible item an ORDER BY or GROUP BY expression names: by position, by output
    /// name (`alias_ok`), or by being the same expression.
    pub fn visible(&self, e: &Expr, alias_ok: bool) -> Result<Option<usize>, Refusal> {
        if let Some(n) = ordinal(e) {
            return match n
                .checked_sub(1)
                .filter(|&i| i < self.items.len() || self.wildcard())
            {
                Some(i) => Ok(Some(i)),
                None => refuse(
                    format!("position {n} is not in the select list"),
                    "use a position within the select list",
                ),
            };
        }
        if alias_ok {
            if let Expr::Identifier(id) = e {
                let name = fold(id);
                if let Some(i) = self.select.projection.iter().position(|it| {
                    matches!(it, SelectItem::ExprWithAlias { alias, .. } if fold(alias) == name)
                }) {
                    return Ok(Some(i));
                }
            }
        }
        let want = self.canon(e);
        Ok(self.select.projection.iter().position(|it| match it {
            SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                self.canon(x) == want
            }
            _ => false,
        }))
    }

    pub fn wildcard(&self) -> bool {
        self.select.projection.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
    }

    /// Appends a hidden column; returns its index among all columns (aggregated queries) or
    /// among the hidden ones (row queries, whose width a `*` may leave unknown).
    pub fn push_hidden(&mut self, expr: Expr, agg: Agg) -> usize {
        let alias = Ident::with_quote('"', format!("sg_{}", self.hidden.len() + 1));
        self.hidden.push(SelectItem::ExprWithAlias { expr, alias });
        self.columns.push(agg);
        self.hidden.len() - 1
    }

    /// Row queries: the shards sort and limit, the proxy merges their ordered streams.
    fn rows(&mut self, q: &Query) -> Result<MergePlan, Refusal> {
        let mut order = Vec::new();
        for o in order_exprs(q) {
            let (desc, nulls_first) = direction(o)?;
            let (expr, bytewise) = collation(&o.expr)?;
            let key = match self.visible(expr, true)? {
                Some(column) => SortKey {
                    column,
                    desc,
                    nulls_first,
                    bytewise,
                    hidden: false,
                },
                None if self.distinct => {
                    return refuse(
                        format!("ORDER BY {} with SELECT DISTINCT across shards, as it is not written as in the select list", o.expr),
                        "order by the select list's own expressions or positions",
                    )
                }
                None => SortKey {
                    column: self.push_hidden(o.expr.clone(), Agg::First),
                    desc,
                    nulls_first,
                    bytewise,
                    hidden: true,
                },
            };
            order.push(key);
        }
        Ok(MergePlan {
            shard_sql: String::new(),
            hidden: self.hidden.len(),
            group: None,
            order,
            offset: 0,
            limit: None,
            limit_param: None,
            offset_param: None,
            distinct: false,
        })
    }

    /// The shard SQL: the client's query with the rewritten select list and, for aggregated
    /// queries, partial aggregation only (the proxy does HAVING, ORDER BY and LIMIT).
    fn render(&self, q: &Query, aggregated: bool, limit: Option<String>) -> String {
        let mut select = self.select.clone();
        select.projection = self.items.iter().chain(&self.hidden).cloned().collect();
        let mut out = q.clone();
        if aggregated {
            if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
                for e in &self.extra_group {
                    let c = self.canon(e);
                    if !exprs.iter().any(|x| self.canon(x) == c) {
                        exprs.push(e.clone());
                    }
                }
                if self.grand_total {
                    let sets = vec![std::mem::take(exprs), Vec::new()];
                    exprs.push(Expr::GroupingSets(sets));
                }
            }
            select.having = None;
            select.distinct = None;
            out.order_by = None;
        }
        out.limit_clause = limit.map(|text| LimitClause::LimitOffset {
            limit: Some(parse_expr(&text)),
            offset: None,
            limit_by: Vec::new(),
        });
        out.fetch = None;
        *out.body = SetExpr::Select(Box::new(select));
        out.to_string()
    }

    /// Aggregated queries are planned in `super::aggregate`.
    fn aggregated(&mut self, q: &Query) -> Result<MergePlan, Refusal> {
        let mut group = super::aggregate::plan(self, q)?;
        let order = super::aggregate::order(self, q)?;
        if group.single && self.columns.contains(&Agg::First) {
            if let Some(x) = self.extra_group.first() {
                let flag = super::aggregate::call("grouping", x.clone());
                group.total = Some(self.items.len() + self.push_hidden(flag, Agg::Arg));
                self.grand_total = true;
            }
        }
        Ok(MergePlan {
            shard_sql: String::new(),
            hidden: self.hidden.len(),
            group: Some(Grouping {
                columns: std::mem::take(&mut self.columns),
                ..group
            }),
            order,
            offset: 0,
            limit: None,
            limit_param: None,
            offset_param: None,
            distinct: false,
        })
    }
}

fn folded(i: &Ident) -> Ident {
    Ident {
        value: fold(i),
        quote_style: None,
        span: i.span,
    }
}

fn ordinal(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// (descending, nulls first) as PostgreSQL defaults them: NULLs sort as if larger than any value.
pub(super) fn direction(o: &OrderByExpr) -> Result<(bool, bool), Refusal> {
    let desc = match &o.options.sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(OrderBySort::Using(op)) => {
            return refuse(
                format!("ORDER BY ... USING {op} across shards"),
                "use ASC or DESC",
            )
        }
    };
    Ok((desc, o.options.nulls_first.unwrap_or(desc)))
}

/// The expression under a `COLLATE "C"`, and whether text then compares bytewise.
pub(super) fn collation(e: &Expr) -> Result<(&Expr, bool), Refusal> {
    match e {
        Expr::Collate { expr, collation } => {
            let name = match collation.0.last() {
                Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
                _ => String::new(),
            };
            if name == "C" || name == "POSIX" || name.eq_ignore_ascii_case("c") {
                Ok((expr, true))
            } else {
                refuse(
                    format!("ORDER BY ... COLLATE {collation} across shards"),
                    "order with the database's collation, or COLLATE \"C\"",
                )
            }
        }
        other => Ok((other, false)),
    }
}

/// The aggregate call an expression is, if it is nothing more (parentheses aside).
pub(super) fn bare_aggregate(e: &Expr) -> Option<&Function> {
    match e {
        Expr::Nested(inner) => bare_aggregate(inner),
        Expr::Function(f) => {
            let name = match f.name.0.last()? {
                ObjectNamePart::Identifier(i) => fold(i),
                ObjectNamePart::Function(_) => return None,
            };
            (is_aggregate(&name) || f.filter.is_some() || !f.within_group.is_empty()).then_some(f)
        }
        _ => None,
    }
}

/// The single plain argument of an aggregate call (`*` is None), and whether it is DISTINCT.
pub(super) fn argument(f: &Function) -> Result<(Option<&Expr>, bool), Refusal> {
    let FunctionArguments::List(list) = &f.args else {
        return refuse(format!("{}() across shards", f.name), KEY_HINT);
    };
    if !list.clauses.is_empty() || !f.within_group.is_empty() {
        return refuse(
            format!("ORDER BY inside aggregate {}() across shards", f.name),
            "aggregate without an ordering, or add a condition on the shard key",
        );
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => Ok((None, distinct)),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Ok((Some(e), distinct)),
        _ => refuse(
            format!("aggregate {}() with these arguments across shards", f.name),
            KEY_HINT,
        ),
    }
}
