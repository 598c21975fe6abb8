//! Mergeability: whether concatenating several shards' rows gives exactly what one PostgreSQL
//! would return for a query, and if not, why (the reason names the clause in the refusal).

use super::keys::fold;
use sqlparser::ast::{
    Distinct, Expr, Function, GroupByExpr, ObjectNamePart, Query, SetExpr, Visit, Visitor,
};
use std::ops::ControlFlow;

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "json_objectagg",
    "json_arrayagg",
    "json_agg_strict",
    "jsonb_agg_strict",
    "json_object_agg_strict",
    "jsonb_object_agg_strict",
    "json_object_agg_unique",
    "jsonb_object_agg_unique",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    "xmlagg",
    "range_agg",
    "range_intersect_agg",
    "any_value",
];

/// Why a query's rows from several shards cannot simply be concatenated; None if they can.
pub(super) fn reason(q: &Query) -> Option<String> {
    if q.order_by.is_some() {
        return Some("ORDER BY across shards".into());
    }
    if q.limit_clause.is_some() {
        return Some("LIMIT/OFFSET across shards".into());
    }
    if q.fetch.is_some() {
        return Some("FETCH FIRST across shards".into());
    }
    body_reason(&q.body)
}

fn body_reason(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Query(q) => reason(q),
        SetExpr::SetOperation { op, .. } => Some(format!("{op} across shards")),
        SetExpr::Select(s) => {
            match &s.distinct {
                Some(Distinct::Distinct) => return Some("DISTINCT across shards".into()),
                Some(Distinct::On(_)) => return Some("DISTINCT ON across shards".into()),
                _ => {}
            }
            let grouped = match &s.group_by {
                GroupByExpr::All(_) => true,
                GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
            };
            if grouped {
                return Some("GROUP BY across shards".into());
            }
            if s.having.is_some() {
                return Some("HAVING across shards".into());
            }
            let mut finder = CallFinder::default();
            let _ = s.projection.visit(&mut finder);
            finder.found
        }
        _ => None,
    }
}

/// Finds an aggregate or window call in a select list, outside nested subqueries (those run
/// per row on the shard and are judged by where their tables live).
#[derive(Default)]
struct CallFinder {
    nesting: usize,
    found: Option<String>,
}

fn call_reason(f: &Function) -> Option<String> {
    let name = match f.name.0.last()? {
        ObjectNamePart::Identifier(i) => fold(i),
        ObjectNamePart::Function(_) => return None,
    };
    if f.over.is_some() {
        return Some(format!("window function {name}() across shards"));
    }
    let aggregate = AGGREGATES.contains(&name.as_str())
        || name.starts_with("regr_")
        || !f.within_group.is_empty()
        || f.filter.is_some();
    aggregate.then(|| format!("aggregate {name}() across shards"))
}

impl Visitor for CallFinder {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.nesting += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.nesting -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.nesting == 0 {
            if let Expr::Function(f) = expr {
                if let Some(why) = call_reason(f) {
                    self.found = Some(why);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}
