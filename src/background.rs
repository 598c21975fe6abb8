//! The tasks a running proxy keeps beside its clients: recovery of in-doubt two-phase
//! transactions and the probe of shards marked down. Both end when the server closes the pools.

use crate::backend::{health, recovery};
use crate::context::Context;
use std::sync::Arc;
use std::time::Duration;

/// How soon a recovery pass runs again when it left in-doubt transactions waiting.
const RECHECK: Duration = Duration::from_secs(1);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Starts both tasks.
pub fn spawn(ctx: &Arc<Context>) {
    tokio::spawn(recover(ctx.clone()));
    tokio::spawn(probe(ctx.clone()));
    tokio::spawn(tick(ctx.clone()));
    tokio::spawn(stored_rows(ctx.clone()));
    tokio::spawn(crate::rebalance::follow::follow(ctx.clone()));
}

/// The statistics' clock and decayed shares advance once a second, and idle rate-limit
/// buckets are forgotten.
async fn tick(ctx: Arc<Context>) {
    while !ctx.backend.is_closed() {
        for (id, skewed) in ctx.stats.tick(&ctx.ring.load()) {
            // Counters can exist for an id whose add_shard then failed (a bad url).
            if usize::from(id.0) >= ctx.backend.len() {
                continue;
            }
            let shard = ctx.backend.name(id);
            match skewed {
                Some(why) => {
                    let hot = ctx.stats.hot_keys_on(&ctx.ring.load(), id, 3);
                    tracing::warn!(shard, hot_keys = %hot.join(", "), "shard skewed: {why}");
                }
                None => tracing::info!(shard, "shard no longer skewed"),
            }
        }
        ctx.limits.load().sweep();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often each shard is asked how many rows its sharded tables hold.
const STORED_ROWS_EVERY: Duration = Duration::from_secs(10);

/// Keeps each shard's stored row count (for the rows skew) fresh, from pg_stat_user_tables:
/// an estimate PostgreSQL keeps anyway, so asking costs the shard nothing. Each shard is asked
/// on a connection of its own, so a busy pool never hides the count.
async fn stored_rows(ctx: Arc<Context>) {
    let mut conns: Vec<Option<crate::backend::ServerConn>> = Vec::new();
    while !ctx.backend.is_closed() {
        // Every backend shard, including one just added or one that left the ring.
        conns.resize_with(ctx.backend.len(), || None);
        let sql = stored_rows_sql(&ctx.catalog.load());
        for (i, slot) in conns.iter_mut().enumerate() {
            let id = crate::ring::ShardId(i as u16);
            let n = match &sql {
                Some(sql) => {
                    let asked =
                        tokio::time::timeout(Duration::from_secs(5), count(&ctx, id, slot, sql));
                    match asked.await {
                        Ok(Some(n)) => n,
                        _ => {
                            *slot = None;
                            u64::MAX
                        }
                    }
                }
                None => u64::MAX,
            };
            ctx.stats
                .shard(id)
                .stored_rows
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::time::sleep(STORED_ROWS_EVERY).await;
    }
}

/// The live rows of every sharded table, each matched by its configured schema if any.
fn stored_rows_sql(catalog: &crate::catalog::Catalog) -> Option<String> {
    use crate::backend::quote_literal;
    let tables: Vec<String> = catalog
        .tables()
        .iter()
        .filter(|t| matches!(t.kind, crate::catalog::TableKind::Sharded { .. }))
        .map(|t| match &t.schema {
            Some(s) => format!(
                "(schemaname = {} AND relname = {})",
                quote_literal(s),
                quote_literal(&t.name)
            ),
            None => format!("relname = {}", quote_literal(&t.name)),
        })
        .collect();
    (!tables.is_empty()).then(|| {
        format!(
            "SELECT coalesce(sum(n_live_tup), 0)::int8 FROM pg_stat_user_tables WHERE {}",
            tables.join(" OR ")
        )
    })
}

async fn count(
    ctx: &Context,
    id: crate::ring::ShardId,
    slot: &mut Option<crate::backend::ServerConn>,
    sql: &str,
) -> Option<u64> {
    if ctx.backend.shard(id).health.down().is_some() {
        return None;
    }
    if slot.as_mut().is_none_or(|c| c.is_dead()) {
        *slot = Some(ctx.backend.connect_direct(id).await.ok()?);
    }
    let rows = slot.as_mut()?.query_rows(sql).await.ok()?;
    rows.first()?.first()?.as_ref()?.parse().ok()
}
/// A recovery pass now, then every `recovery_interval_ms` (every second while something
/// waits), and whenever a commit leaves work behind.
async fn recover(ctx: Arc<Context>) {
    let tp = &ctx.backend.twophase;
    while !ctx.backend.is_closed() {
        // Registered before the pass, so a wake-up during it is not missed.
        let woken = tp.wake.notified();
        let report = recovery::recover(&ctx.backend).await;
        if report.committed + report.rolled_back > 0 || report.removed > 0 {
            tracing::info!(
                "2PC recovery: {} committed, {} rolled back, {} waiting, {} decision records removed",
                report.committed,
                report.rolled_back,
                report.waiting,
                report.removed
            );
        }
        let mut wait = Duration::from_millis(ctx.config.load().proxy.recovery_interval_ms.max(10));
        if report.waiting > 0 {
            wait = wait.min(RECHECK);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = woken => {}
        }
    }
}

async fn probe(ctx: Arc<Context>) {
    while !ctx.backend.is_closed() {
        tokio::time::sleep(PROBE_EVERY).await;
        health::probe(&ctx.backend).await;
    }
}
