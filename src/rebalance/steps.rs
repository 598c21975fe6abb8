//! A rebalance as a series of steps: intermediate placements between the running one and the
//! target, each moving about `[proxy] rebalance_step_rows` rows, each a whole rebalance (run.rs).

use super::plan;
use super::run::run_step;
use crate::backend::quote_literal;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::context::Context;
use crate::error::Error;
use crate::ring::{Ring, ShardId};
use std::sync::Arc;
use std::time::Duration;

/// Large moves go through intermediate placements of about `[proxy] rebalance_step_rows` rows
/// each: each step's switch holds the moving writes for as long as its rows take to change shard.
const MAX_STEPS: u64 = 64;

/// Moves rows from `from`'s placement to `to`'s, in steps: each shard's ring points go from
/// their old count to their new one in equal parts, so every step moves a slice of the keys
/// and is a complete rebalance of its own (journaled, crash-safe, switched on its own).
pub(super) async fn run(ctx: &Arc<Context>, from: Arc<Config>, to: Config) -> Result<(), Error> {
    let rb = &ctx.rebalance;
    let estimate = estimate_all(ctx, &from, &to).await?;
    rb.update(|s| s.rows_to_move = estimate);
    let widest = from
        .shards
        .iter()
        .chain(&to.shards)
        .map(|s| points(&from, &s.name).abs_diff(points(&to, &s.name)))
        .max()
        .unwrap_or(1);
    let steps = estimate
        .div_ceil(to.proxy.rebalance_step_rows.max(1))
        .clamp(1, MAX_STEPS.min(widest.max(1)));
    let mut cur = from.clone();
    for i in 1..=steps {
        let next = step_config(&from, &to, i, steps);
        if plan::placement_key(&cur.shards, cur.proxy.vnodes)
            == plan::placement_key(&next.shards, next.proxy.vnodes)
        {
            continue;
        }
        rb.update(|s| s.step = (i, steps));
        run_step(ctx, cur.clone(), next.clone()).await?;
        cur = ctx.config.load_full();
    }
    rb.update(|s| s.rows_to_move = s.rows_to_move.max(s.rows_moved));
    Ok(())
}

/// A shard's ring points in a placement (0 when it has none).
fn points(c: &Config, name: &str) -> u64 {
    c.shards.iter().find(|s| s.name == name).map_or(0, |s| {
        s.points
            .map_or(u64::from(c.proxy.vnodes) * u64::from(s.weight), u64::from)
    })
}

/// The placement `i` steps of `n` from `from` to `to` (`to` itself at the last step).
fn step_config(from: &Config, to: &Config, i: u64, n: u64) -> Config {
    if i >= n {
        return to.clone();
    }
    let mut out = to.clone();
    out.shards = from
        .shards
        .iter()
        .chain(
            to.shards
                .iter()
                .filter(|t| !from.shards.iter().any(|f| f.name == t.name)),
        )
        .map(|s| {
            let (a, b) = (points(from, &s.name) as i128, points(to, &s.name) as i128);
            let p = a + (b - a) * i128::from(i) / i128::from(n);
            let mut c = to
                .shards
                .iter()
                .find(|t| t.name == s.name)
                .unwrap_or(s)
                .clone();
            c.points = Some(p as u32);
            c
        })
        .collect();
    out
}

/// Rows expected to move from `from` to `to`, from the tables' sizes and the ring shares.
async fn estimate_all(ctx: &Arc<Context>, from: &Config, to: &Config) -> Result<u64, Error> {
    for s in &to.shards {
        ctx.backend.add_shard(s, &to.proxy, &ctx.stats)?;
    }
    let old = ctx.ring.load_full();
    let new = ctx.placement_ring(&to.shards, to.proxy.vnodes)?;
    let timeout = Duration::from_millis(to.proxy.connect_timeout_ms);
    let tables: Vec<String> = Catalog::from_config(to)
        .tables()
        .iter()
        .filter(|r| matches!(r.kind, crate::catalog::TableKind::Sharded { .. }))
        .map(|r| plan::qualified(r.schema.as_deref(), &r.name))
        .collect();
    let mut sources = Vec::new();
    for id in old.members() {
        let name = old.shard_name(*id);
        if let Some(cfg) = from.shards.iter().find(|s| s.name == name) {
            sources.push((*id, plan::connect(cfg, to.tls.as_ref(), timeout).await?));
        }
    }
    let refs: Vec<(ShardId, &tokio_postgres::Client)> =
        sources.iter().map(|(id, s)| (*id, &s.client)).collect();
    Ok(estimate(&old, &new, &refs, &tables).await)
}

/// Rows expected to move: each source table's size times the share of its keys leaving.
async fn estimate(
    old: &Ring,
    new: &Ring,
    sources: &[(ShardId, &tokio_postgres::Client)],
    tables: &[String],
) -> u64 {
    let m = crate::ring::movement(old, new);
    let own = old.ownership();
    let mut total = 0.0;
    for (s, client) in sources {
        let name = old.shard_name(*s);
        let owned = own.get(usize::from(s.0)).copied().unwrap_or(0.0);
        let leaving: f64 = m
            .moves()
            .filter(|(f, _, _)| *f == name)
            .map(|(_, _, x)| x)
            .sum();
        let share = if owned > 0.0 { leaving / owned } else { 0.0 };
        for t in tables {
            // A table never analyzed has no estimate (reltuples -1): it is counted instead.
            let sql = format!(
                "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::float8 \
                             ELSE (SELECT count(*) FROM {t})::float8 END \
                   FROM pg_class c WHERE c.oid = to_regclass({})",
                quote_literal(t)
            );
            if let Ok(row) = client.query_one(sql.as_str(), &[]).await {
                total += row.get::<_, f64>(0) * share;
            }
        }
    }
    total.round() as u64
}
