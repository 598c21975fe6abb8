//! Where a statement goes and why, in words: `shardgate route` and the console's `SHOW ROUTE`.

use crate::catalog::Catalog;
use crate::ring::Ring;
use crate::router::{self, Route, Target};

/// One statement of a query string, explained.
#[derive(Debug, Clone)]
pub struct Explained {
    pub statement: String,
    /// "s1", "s0, s2", "all 3 shards", "any one shard", "decided at Bind time", "split: s0, s1".
    pub route: String,
    pub why: String,
    /// A split INSERT: each shard and the INSERT it gets.
    pub split: Option<Vec<(String, String)>>,
    /// How the gather combines the shards' rows, and the SQL the shards run.
    pub merge: Option<(String, String)>,
    pub refused: Option<Refused>,
}

#[derive(Debug, Clone)]
pub struct Refused {
    pub sqlstate: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

/// Plans `sql` under this catalog and ring and explains each statement.
pub fn explain(sql: &str, catalog: &Catalog, ring: &Ring) -> Vec<Explained> {
    let plan = router::plan(sql, catalog);
    plan.statements
        .iter()
        .map(|stmt| {
            let text = sql.get(stmt.span.clone()).unwrap_or(sql).trim().to_owned();
            let mut e = Explained {
                statement: text,
                route: String::new(),
                why: why(stmt),
                split: None,
                merge: None,
                refused: None,
            };
            if matches!(stmt.target, Target::Bound(_)) {
                // The shard is only known once the parameters are bound.
                e.route = "decided at Bind time".into();
                return e;
            }
            match router::route(stmt, ring) {
                Ok(route) => {
                    let spread = match &route {
                        Route::All => true,
                        Route::Shards(v) => v.len() > 1,
                        _ => false,
                    };
                    e.route = match &route {
                        Route::Any => "any one shard".to_owned(),
                        Route::All => format!("all {} shards", ring.shard_count()),
                        Route::Shards(v) => names(ring, v.iter().copied()),
                        Route::Split(parts) => {
                            format!("split: {}", names(ring, parts.iter().map(|(s, _)| *s)))
                        }
                    };
                    if let Route::Split(parts) = route {
                        e.split = Some(
                            parts
                                .into_iter()
                                .map(|(s, q)| (ring.shard_name(s).to_owned(), q))
                                .collect(),
                        );
                    }
                    if let (Some(m), true) = (&stmt.merge, spread) {
                        e.merge = Some((describe_merge(m), m.shard_sql.clone()));
                    }
                }
                Err(err) => {
                    e.route = "refused".into();
                    e.refused = Some(Refused {
                        sqlstate: err.sqlstate(),
                        message: err.to_string(),
                        hint: err.hint().map(|h| h.to_string()),
                    });
                }
            }
            e
        })
        .collect()
}

fn names(ring: &Ring, shards: impl Iterator<Item = crate::ring::ShardId>) -> String {
    shards
        .map(|s| ring.shard_name(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn why(stmt: &router::StatementPlan) -> String {
    match &stmt.target {
        Target::Any => "touches no sharded or reference table data".to_owned(),
        Target::Keys(keys) => {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            format!("shard key = {}", keys.join(", "))
        }
        Target::All if stmt.ddl => "schema change: every shard holds the schema".to_owned(),
        Target::All => "no shard key value pins it to one shard".to_owned(),
        Target::Split(s) => format!("multi-row INSERT: {} rows split by key", s.keys.len()),
        Target::Bound(b) => {
            let params = b.params.iter().map(|i| format!("${}", i + 1));
            let arrays = b.arrays.iter().map(|i| format!("${} (an array)", i + 1));
            let params: Vec<String> = params.chain(arrays).collect();
            format!("bind parameters {} hold the key", params.join(", "))
        }
        Target::Transaction(c) => format!("transaction control ({c:?}), handled by the proxy"),
        Target::Session(c) => format!("session setting ({c:?}), replayed on every connection"),
        Target::CopyIn(c) => match c.key {
            Some((i, _)) => format!("COPY FROM STDIN: each row to the shard of column {}", i + 1),
            None => "COPY FROM STDIN into a reference table: every row to every shard".to_owned(),
        },
        Target::Reject(_) => "refused".to_owned(),
    }
}

/// One line on how the gather combines the shards' rows.
fn describe_merge(m: &router::MergePlan) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &m.group {
        let aggs = g
            .columns
            .iter()
            .filter(|a| **a != router::Agg::First)
            .count();
        parts.push(if g.single {
            format!("{aggs} partial aggregates combined into one row")
        } else {
            format!(
                "groups combined by {} key columns, {aggs} partial aggregates",
                g.keys.len()
            )
        });
        if g.having.is_some() {
            parts.push("HAVING evaluated by the proxy".into());
        }
    }
    if !m.order.is_empty() {
        parts.push(if m.group.is_some() {
            format!("sorted by {} keys", m.order.len())
        } else {
            format!("ordered streams merged on {} keys", m.order.len())
        });
    }
    if m.distinct {
        parts.push("duplicates dropped".into());
    }
    if m.offset > 0 || m.offset_param.is_some() {
        parts.push("OFFSET applied by the proxy".into());
    }
    if m.limit.is_some() || m.limit_param.is_some() {
        parts.push("LIMIT applied by the proxy".into());
    }
    if m.hidden > 0 {
        parts.push(format!("{} helper columns dropped", m.hidden));
    }
    parts.join("; ")
}
