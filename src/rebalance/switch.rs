//! The switch: the short pause in which the moving rows change shard and the ring changes,
//! committed on every shard through prepared transactions and the coordinator's journal row.

use super::gate::Hold;
use super::run::{catch_up, copy_reference, Work};
use super::{copy::describe, journal, Phase};
use crate::context::Context;
use crate::error::Error;
use crate::ring::ShardId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ATTEMPTS: u32 = 10;
/// How long the switch waits for statements and transactions already running.
const DRAIN: Duration = Duration::from_secs(5);

enum Stop {
    /// Something was busy; the rows are back as they were; try again after more catch-up.
    Retry(String),
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}

pub(super) async fn switch(ctx: &Arc<Context>, w: &mut Work) -> Result<(), Error> {
    let rb = &ctx.rebalance;
    for attempt in 1..=ATTEMPTS {
        rb.gate.hold(Some(Hold {
            old: w.old.clone(),
            new: w.new.clone(),
        }));
        let held = Instant::now();
        ctx.backend
            .fence
            .switching_self
            .store(true, Ordering::Release);
        let result = attempt_switch(ctx, w).await;
        ctx.backend
            .fence
            .switching_self
            .store(false, Ordering::Release);
        rb.gate.hold(None);
        let pause = held.elapsed();
        rb.update(|s| s.pause = s.pause.max(pause));
        match result {
            Ok(()) => {
                tracing::info!("rebalance: switched; moving writes waited {pause:?}");
                return Ok(());
            }
            Err(Stop::Retry(why)) => {
                // Other proxies' connections waiting for the switch may go on.
                journal::set_state(&w.shards, w.version, Phase::CatchingUp.name()).await?;
                tracing::warn!("rebalance: switch attempt {attempt} put off: {why}");
                rb.set_phase(Phase::CatchingUp, format!("switch put off: {why}"));
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                catch_up(ctx, w).await?;
                rb.set_phase(Phase::Switching, format!("attempt {}", attempt + 1));
            }
            Err(Stop::Fail(e)) => return Err(e),
        }
    }
    Err(Error::unsupported(
        format!("the switch was put off {ATTEMPTS} times by long transactions"),
        "RELOAD again when the shards are quieter",
    ))
}

fn gid(version: i64, shard: ShardId) -> String {
    format!("{}{version}_{}", journal::GID_PREFIX, shard.0)
}

async fn attempt_switch(ctx: &Arc<Context>, w: &mut Work) -> Result<(), Stop> {
    let gate = &ctx.rebalance.gate;
    // Other proxies: their new connections wait while the journal says switching, and their
    // open ones end here, so none reaches a moving row by its old ring (backend/fence.rs).
    journal::set_state(&w.shards, w.version, Phase::Switching.name()).await?;
    let evict = crate::backend::fence::evict_others_sql(ctx.backend.fence.key);
    for s in w.shards.values() {
        if let Err(e) = s.client.batch_execute(&evict).await {
            return Err(Stop::Fail(Error::internal(format!(
                "rebalance: ending other proxies' connections on {}: {}",
                s.name,
                describe(&e)
            ))));
        }
    }
    // Statements that passed the gate before the hold finish first.
    match gate.close(DRAIN).await {
        Some(guard) => drop(guard),
        None => return Err(Stop::Retry("statements still running after 5 s".into())),
    }
    let deadline = Instant::now() + DRAIN;
    let waits = w
        .sources
        .iter()
        .map(|s| wait_for_writers(&w.shards[s].client, deadline));
    for r in futures_util::future::join_all(waits).await {
        r?;
    }
    // Every change to a moving key is committed and logged now, and new ones wait.
    catch_up(ctx, w).await?;
    for i in std::mem::take(&mut w.refs_dirty) {
        copy_reference(w, i).await?;
    }
    let mut parts: Vec<ShardId> = w.sources.iter().chain(&w.targets).copied().collect();
    parts.sort();
    parts.dedup();
    // Every shard prepares its part at once: the moving writes wait for the slowest only.
    let results = futures_util::future::join_all(parts.iter().map(|p| prepare(w, *p))).await;
    let mut prepared: Vec<ShardId> = Vec::new();
    let (mut inserted, mut deleted) = (0u64, 0u64);
    let mut failure = None;
    for (p, r) in parts.iter().zip(results) {
        match r {
            Ok((i, d)) => {
                inserted += i;
                deleted += d;
                prepared.push(*p);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        abort(w, &prepared).await;
        return Err(e);
    }
    if inserted != deleted {
        abort(w, &prepared).await;
        return Err(Stop::Fail(Error::internal(format!(
            "the switch would insert {inserted} rows and delete {deleted}; nothing was changed"
        ))));
    }
    let Some(guard) = gate.close(DRAIN).await else {
        abort(w, &prepared).await;
        return Err(Stop::Retry("reads still running after 5 s".into()));
    };
    ctx.backend.twophase.failpoint("rebalance-prepared");
    let decided = w.shards[&w.coordinator]
        .client
        .execute(
            "UPDATE shardgate.placement SET state = $2, updated = clock_timestamp() WHERE version = $1",
            &[&w.version, &journal::COMMITTING],
        )
        .await;
    if let Err(e) = decided {
        abort(w, &prepared).await;
        return Err(Stop::Fail(Error::internal(format!(
            "rebalance: recording the switch: {}",
            describe(&e)
        ))));
    }
    w.decided = true;
    ctx.backend.twophase.failpoint("rebalance-decided");
    // Decided: from here every prepared part commits, by this process or by the next start,
    // and nothing may report the switch as failed or rolled back.
    for p in &prepared {
        commit(w, *p).await;
    }
    let mut live = (*ctx.config.load_full()).clone();
    live.shards = w.to.shards.clone();
    live.proxy.vnodes = w.to.proxy.vnodes;
    ctx.ring.store(w.new.clone());
    ctx.config.store(Arc::new(live));
    ctx.backend
        .fence
        .version
        .store(w.version, Ordering::Release);
    drop(guard);
    tracing::info!("rebalance: {inserted} rows changed shard at the switch");
    for attempt in 1..=3 {
        match journal::set_state(&w.shards, w.version, journal::DONE).await {
            Ok(()) => break,
            // The coordinator's row says committing: the next start settles it the same way.
            Err(e) => tracing::error!("rebalance: recording done (attempt {attempt}): {e}"),
        }
    }
    Ok(())
}

/// Waits until the transactions running on a source when called have ended.
async fn wait_for_writers(client: &tokio_postgres::Client, deadline: Instant) -> Result<(), Stop> {
    let fail = |e: tokio_postgres::Error| Stop::Fail(Error::internal(describe(&e)));
    let row = client
        .query_one(
            "SELECT coalesce(array_agg(x::text), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x",
            &[],
        )
        .await
        .map_err(fail)?;
    let xids: Vec<String> = row.get(0);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM unnest($1::text[]) x \
                  WHERE pg_xact_status(x::xid8) = 'in progress'",
                &[&xids],
            )
            .await
            .map_err(fail)?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Stop::Retry(
                "a transaction writing on a source is still open".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One shard's part: stage rows into the table (receiving), moved keys out (sending). Returns
/// (rows inserted, rows deleted). Inserts go in shards.toml's table order and deletes in the
/// reverse, so foreign keys between co-located tables hold when parents are listed first.
async fn prepare(w: &Work, p: ShardId) -> Result<(u64, u64), Stop> {
    let c = &w.shards[&p].client;
    let name = &w.shards[&p].name;
    let (mut ins, mut del) = (0, 0);
    let result: Result<(), tokio_postgres::Error> = async {
        c.batch_execute("BEGIN; SET LOCAL lock_timeout = '3s'")
            .await?;
        if w.targets.contains(&p) {
            for t in &w.moves {
                let sql = format!(
                    "INSERT INTO {} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM {}",
                    t.qualified,
                    t.stage,
                    c = t.columns
                );
                ins += c.execute(sql.as_str(), &[]).await?;
            }
        }
        for (i, t) in w.moves.iter().enumerate().rev() {
            if let Some(keys) = w.moving.get(&(p, i)) {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let sql = format!(
                    "DELETE FROM {} t USING unnest($1::text[]) m(k) WHERE t.{} = m.k::{}",
                    t.qualified, t.key, t.key_sql_type
                );
                del += c.execute(sql.as_str(), &[&keys]).await?;
            }
        }
        c.batch_execute(&format!("PREPARE TRANSACTION '{}'", gid(w.version, p)))
            .await
    }
    .await;
    match result {
        Ok(()) => Ok((ins, del)),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            let why = format!("preparing {name}: {}", describe(&e));
            // Busy rows (a lock wait, a deadlock, a conflict) put the switch off; anything
            // else is a real failure.
            use tokio_postgres::error::SqlState;
            let busy = [
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
            ];
            if e.code().is_some_and(|c| busy.contains(c)) {
                Err(Stop::Retry(why))
            } else {
                Err(Stop::Fail(Error::internal(format!("rebalance: {why}"))))
            }
        }
    }
}

async fn abort(w: &Work, prepared: &[ShardId]) {
    for p in prepared {
        let sql = format!("ROLLBACK PREPARED '{}'", gid(w.version, *p));
        if let Err(e) = w.shards[p].client.batch_execute(&sql).await {
            tracing::warn!("rebalance: {sql} on {}: {}", w.shards[p].name, describe(&e));
        }
    }
}

/// COMMIT PREPARED, retried; a part that still fails is committed by the next start's
/// recovery (the journal says the switch was decided).
async fn commit(w: &Work, p: ShardId) {
    let sql = format!("COMMIT PREPARED '{}'", gid(w.version, p));
    for attempt in 1..=3 {
        match w.shards[&p].client.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(
                    "rebalance: {sql} on {} (attempt {attempt}): {}",
                    w.shards[&p].name,
                    describe(&e)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
