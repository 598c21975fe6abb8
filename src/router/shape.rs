//! Finding aggregate and window calls in a query, which decide how its rows from several
//! shards combine.

use super::keys::fold;
use sqlparser::ast::{Expr, Function, ObjectNamePart, Query, Select, Visit, Visitor};
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

pub(super) fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name) || name.starts_with("regr_")
}

/// The first aggregate called in an expression outside nested subqueries (those run per
/// row on the shard), by name.
pub(super) fn has_aggregate(e: &Expr) -> Option<String> {
    let mut finder = CallFinder {
        windows: false,
        ..CallFinder::default()
    };
    let _ = e.visit(&mut finder);
    finder.found
}

/// The first window function of a query's select list or ORDER BY, by name.
pub(super) fn has_window(s: &Select, q: &Query) -> Option<String> {
    let mut finder = CallFinder {
        windows: true,
        ..CallFinder::default()
    };
    let _ = s.projection.visit(&mut finder);
    if finder.found.is_none() {
        let _ = q.order_by.visit(&mut finder);
    }
    finder.found
}

/// Finds an aggregate or window call in a select list, outside nested subqueries (those run
/// per row on the shard and are judged by where their tables live).
#[derive(Default)]
struct CallFinder {
    /// Looking for window functions (else for aggregates).
    windows: bool,
    nesting: usize,
    found: Option<String>,
}

/// The function's name if it is a window call (`windows`) or an aggregate call.
fn call_name(f: &Function, windows: bool) -> Option<String> {
    let name = match f.name.0.last()? {
        ObjectNamePart::Identifier(i) => fold(i),
        ObjectNamePart::Function(_) => return None,
    };
    if windows {
        return f.over.is_some().then_some(name);
    }
    let aggregate = f.over.is_none()
        && (is_aggregate(&name) || !f.within_group.is_empty() || f.filter.is_some());
    aggregate.then_some(name)
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
                if let Some(why) = call_name(f, self.windows) {
                    self.found = Some(why);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}
