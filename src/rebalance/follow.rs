//! Other proxies' rebalances: every second a proxy reads the journal's placement in force and,
//! when another proxy has switched the shards to a newer one, routes by it too.

use super::journal;
use super::plan;
use crate::context::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(1);

pub async fn follow(ctx: Arc<Context>) {
    let mut conn: Option<plan::Shard> = None;
    while !ctx.backend.is_closed() {
        // A refused connection (fence.rs) wakes this at once.
        let _ = tokio::time::timeout(EVERY, ctx.backend.fence.changed.notified()).await;
        if ctx.rebalance.status().running() {
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            let config = ctx.config.load_full();
            let timeout = Duration::from_millis(config.proxy.connect_timeout_ms);
            conn = None;
            for s in &config.shards {
                if let Ok(c) = plan::connect(s, config.tls.as_ref(), timeout).await {
                    conn = Some(c);
                    break;
                }
            }
        }
        let Some(c) = &conn else { continue };
        let Ok(Some(entry)) = journal::latest_in_force(&c.client).await else {
            continue;
        };
        if entry.version <= ctx.backend.fence.version.load(Ordering::Acquire) {
            continue;
        }
        let config = ctx.config.load_full();
        if plan::placement_key(&entry.shards, entry.vnodes)
            == plan::placement_key(&config.shards, config.proxy.vnodes)
        {
            ctx.backend
                .fence
                .version
                .store(entry.version, Ordering::Release);
            continue;
        }
        if let Err(e) = adopt(&ctx, &entry).await {
            tracing::warn!("could not follow placement version {}: {e}", entry.version);
        }
    }
}

async fn adopt(ctx: &Arc<Context>, entry: &journal::Entry) -> Result<(), crate::error::Error> {
    let config = ctx.config.load_full();
    for s in &entry.shards {
        ctx.backend.add_shard(s, &config.proxy, &ctx.stats)?;
    }
    let ring = ctx.placement_ring(&entry.shards, entry.vnodes)?;
    let mut live = (*config).clone();
    live.shards = entry.shards.clone();
    live.proxy.vnodes = entry.vnodes;
    ctx.ring.store(Arc::new(ring));
    ctx.config.store(Arc::new(live));
    ctx.backend
        .fence
        .version
        .store(entry.version, Ordering::Release);
    tracing::info!(
        "following placement version {} ({}), switched by another proxy",
        entry.version,
        plan::placement_key(&entry.shards, entry.vnodes)
    );
    Ok(())
}
