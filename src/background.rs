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
