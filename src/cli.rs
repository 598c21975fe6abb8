//! The offline commands: `check`, `route` and `plan` (no shard is contacted).

use crate::catalog::{Catalog, TableKind};
use crate::config::{Config, KeyType};
use crate::error::Error;
use crate::ring::{self, Ring};
use crate::router::{self, Route, Target};
use std::path::Path;

/// `shardgate check`: validates the config and prints how the ring divides the key space.
pub fn check(path: &Path) -> Result<(), Error> {
    let config = Config::load(path)?;
    let ring = Ring::new(&config.shards, config.proxy.vnodes);
    println!("{}: ok", path.display());
    println!(
        "{} shards, {} vnodes per unit of weight, spread (max/mean ownership) {:.3}",
        config.shards.len(),
        config.proxy.vnodes,
        ring::spread(&ring)
    );
    println!("{:<16} {:>6} {:>10}  url", "shard", "weight", "keys");
    for (s, share) in config.shards.iter().zip(ring.ownership()) {
        println!(
            "{:<16} {:>6} {:>9.2}%  {}",
            s.name,
            s.weight,
            share * 100.0,
            s.redacted_url()
        );
    }
    for t in &config.tables {
        match (&t.shard_key, t.reference) {
            (Some(k), _) => println!("table {}: sharded by {k}", t.name),
            (None, _) => println!("table {}: reference (a copy on every shard)", t.name),
        }
    }
    Ok(())
}

/// `shardgate route`: where each statement of `sql` would go, and why.
pub fn route(path: &Path, sql: &str) -> Result<(), Error> {
    let config = Config::load(path)?;
    let ring = Ring::new(&config.shards, config.proxy.vnodes);
    let mut catalog = Catalog::from_config(&config);
    let mut assumed = Vec::new();
    for t in catalog.tables().to_vec() {
        if let TableKind::Sharded {
            key_type: None,
            key,
            ..
        } = &t.kind
        {
            // Offline there is no shard to ask; integer keys are by far the most common.
            catalog.set_key_info(&t.name, Some(KeyType::Int), None);
            assumed.push(format!("{}.{key}", t.name));
        }
    }
    if !assumed.is_empty() {
        println!(
            "note: assuming integer keys for {} (set key_type in shards.toml to be sure)",
            assumed.join(", ")
        );
    }
    let plan = router::plan(sql, &catalog);
    if plan.statements.is_empty() {
        println!("empty query: answered by the proxy");
    }
    for (n, stmt) in plan.statements.iter().enumerate() {
        let text = sql.get(stmt.span.clone()).unwrap_or(sql);
        println!("statement {}: {}", n + 1, text);
        let why = match &stmt.target {
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
                Some((i, _)) => {
                    format!("COPY FROM STDIN: each row to the shard of column {}", i + 1)
                }
                None => {
                    "COPY FROM STDIN into a reference table: every row to every shard".to_owned()
                }
            },
            Target::Reject(_) => "refused".to_owned(),
        };
        if matches!(stmt.target, Target::Bound(_)) {
            // The shard is only known once the parameters are bound.
            println!("  route: decided at Bind time\n  why:   {why}");
            continue;
        }
        match router::route(stmt, &ring) {
            Ok(route) => {
                let spread = match &route {
                    Route::All => true,
                    Route::Shards(v) => v.len() > 1,
                    _ => false,
                };
                let place = match route {
                    Route::Any => "any one shard".to_owned(),
                    Route::All => format!("all {} shards", ring.shard_count()),
                    Route::Shards(v) => v
                        .iter()
                        .map(|s| ring.shard_name(*s).to_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                    Route::Split(parts) => parts
                        .iter()
                        .map(|(s, q)| format!("\n    {}: {q}", ring.shard_name(*s)))
                        .collect(),
                };
                println!("  route: {place}\n  why:   {why}");
                if let (Some(m), true) = (&stmt.merge, spread) {
                    println!("  merge: {}", describe_merge(m));
                    println!("  shards run: {}", m.shard_sql);
                }
            }
            Err(e) => {
                println!("  refused: {} (SQLSTATE {})", e, e.sqlstate());
                if let Some(h) = e.hint() {
                    println!("  hint:    {h}");
                }
            }
        }
    }
    Ok(())
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

/// `shardgate plan`: the share of keys that moves between shards from one config to another.
pub fn plan(from: &Path, to: &Path) -> Result<(), Error> {
    let old = Config::load(from)?;
    let new = Config::load(to)?;
    let old_ring = Ring::new(&old.shards, old.proxy.vnodes);
    let new_ring = Ring::new(&new.shards, new.proxy.vnodes);
    let movement = ring::movement(&old_ring, &new_ring);
    println!("{movement}");
    let tables: Vec<&str> = new
        .tables
        .iter()
        .filter(|t| t.shard_key.is_some())
        .map(|t| t.name.as_str())
        .collect();
    let references: Vec<&str> = new
        .tables
        .iter()
        .filter(|t| t.reference)
        .map(|t| t.name.as_str())
        .collect();
    if !references.is_empty() {
        println!(
            "reference tables ({}) are copied whole onto every new shard",
            references.join(", ")
        );
    }
    if !tables.is_empty() {
        println!(
            "every sharded table ({}) moves this share of its keys: {:.2}%",
            tables.join(", "),
            movement.moved_share() * 100.0
        );
    }
    Ok(())
}
