//! One rebalance from start to end: prepare, copy, catch up, switch (switch.rs), clean up.

use super::plan::{self, RefTable, Shard, TableMove};
use super::{capture, copy, journal, switch, Phase};
use crate::backend::quote_literal;
use crate::catalog::Catalog;
use crate::config::{Config, ShardConfig};
use crate::context::Context;
use crate::error::Error;
use crate::ring::{Ring, ShardId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Catch-up rounds stop once one finds fewer changes than this, or after `MAX_ROUNDS`.
const QUIET: usize = 200;
/// Tries at taking the rebalance lock, 100 ms apart, before another proxy is taken to hold it.
const LOCK_ATTEMPTS: usize = 50;
const MAX_ROUNDS: usize = 20;
/// Changes taken off a log per query.
const DRAIN_BATCH: i64 = 5000;
/// Keys re-copied per COPY.
const KEYS_PER_COPY: usize = 1000;

/// Everything one rebalance works with.
pub(super) struct Work {
    pub version: i64,
    /// The coordinator: the shard whose journal row decides the switch.
    pub coordinator: ShardId,
    pub old: Arc<Ring>,
    pub new: Arc<Ring>,
    pub to: Config,
    /// Own connections to every shard of either ring.
    pub shards: HashMap<ShardId, Shard>,
    pub sources: Vec<ShardId>,
    pub targets: Vec<ShardId>,
    /// Shards joining (in the new ring, not in the old): they get the reference tables.
    pub joining: Vec<ShardId>,
    pub moves: Vec<TableMove>,
    pub refs: Vec<RefTable>,
    /// Keys that left each (source, table), as text: deleted from the source at the switch.
    pub moving: HashMap<(ShardId, usize), HashSet<String>>,
    /// Reference tables changed since they were copied to the joining shards.
    pub refs_dirty: HashSet<usize>,
    /// The coordinator recorded the switch: it must complete, never be rolled back.
    pub decided: bool,
}

pub(super) async fn run_step(
    ctx: &Arc<Context>,
    from: Arc<Config>,
    to: Config,
) -> Result<(), Error> {
    let rb = &ctx.rebalance;
    let timeout = Duration::from_millis(to.proxy.connect_timeout_ms);
    // Every shard of the new config gets a pool (new ones start out of the ring).
    let mut ids: Vec<(String, ShardId)> = Vec::new();
    let all: Vec<&ShardConfig> = from
        .shards
        .iter()
        .chain(
            to.shards
                .iter()
                .filter(|s| !from.shards.iter().any(|f| f.name == s.name)),
        )
        .collect();
    for s in &all {
        let id = ctx.backend.add_shard(s, &to.proxy, &ctx.stats)?;
        ids.push((s.name.clone(), id));
    }
    let old = ctx.ring.load_full();
    let new = Arc::new(ctx.placement_ring(&to.shards, to.proxy.vnodes)?);
    let mut shards = HashMap::new();
    for s in &all {
        let id = plan::id_of(&ids, &s.name).expect("added above");
        shards.insert(id, plan::connect(s, to.tls.as_ref(), timeout).await?);
    }
    let sources: Vec<ShardId> = old.members().to_vec();
    let targets: Vec<ShardId> = new.members().to_vec();
    let joining: Vec<ShardId> = targets
        .iter()
        .filter(|t| !sources.contains(t))
        .copied()
        .collect();
    let coordinator = *sources
        .iter()
        .filter(|s| targets.contains(s))
        .min_by_key(|s| old.shard_name(**s).to_owned())
        .ok_or_else(|| {
            Error::unsupported(
                "the new shards.toml keeps none of the running shards",
                "keep at least one shard across a rebalance",
            )
        })?;
    // One rebalance at a time across proxies: the coordinator's session lock is held for the
    // whole run, and a starting proxy finds it taken (journal::recover leaves the run alone).
    // A proxy killed mid-rebalance holds the lock until PostgreSQL notices its connection
    // closed, which can be a moment after a restarted proxy gets here: retry for a while
    // before taking the lock for another proxy's.
    let mut locked = false;
    for attempt in 0..LOCK_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        locked = shards[&coordinator]
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&journal::LOCK_KEY])
            .await
            .map_err(|e| Error::internal(format!("rebalance: locking: {}", copy::describe(&e))))?
            .get(0);
        if locked {
            break;
        }
    }
    if !locked {
        return Err(Error::unsupported(
            "another proxy is running a rebalance of these shards",
            "wait for it to finish; its SHOW REBALANCE follows it",
        ));
    }
    let catalog = Catalog::from_config(&to);
    let first = &shards[&sources[0]].client;
    let (moves, refs) = plan::tables(first, &catalog).await?;
    let version = journal::begin(
        &shards,
        &from,
        &to,
        old.shard_name(coordinator),
        &ctx.backend.fence.version,
    )
    .await?;
    let mut w = Work {
        version,
        coordinator,
        old,
        new,
        to,
        shards,
        sources,
        targets,
        joining,
        moves,
        refs,
        moving: HashMap::new(),
        refs_dirty: HashSet::new(),
        decided: false,
    };
    match phases(ctx, &mut w).await {
        Ok(()) => cleanup(&w).await,
        Err(e) => {
            // Nothing was switched (the switch rolls back its own prepared parts): drop the
            // copies and the capture, record the failure, keep the old ring.
            let _ = cleanup(&w).await;
            if !w.decided {
                let _ = journal::set_state(&w.shards, w.version, journal::ROLLED_BACK).await;
            }
            rb.update(|s| s.detail = e.to_string());
            Err(e)
        }
    }
}

async fn phases(ctx: &Arc<Context>, w: &mut Work) -> Result<(), Error> {
    let rb = &ctx.rebalance;
    // Schema on shards that join, from a shard that has it.
    let wanted: Vec<(Option<String>, String)> = Catalog::from_config(&w.to)
        .tables()
        .iter()
        .map(|r| (r.schema.clone(), r.name.clone()))
        .collect();
    for j in &w.joining {
        let created = super::schema::ensure_tables(
            &w.shards[&w.sources[0]].client,
            &w.shards[j].client,
            &wanted,
        )
        .await?;
        if !created.is_empty() {
            tracing::info!(
                "rebalance: created {} on {}",
                created.join(", "),
                w.shards[j].name
            );
        }
    }
    for t in &w.targets {
        capture::create_stage(&w.shards[t].client, &w.moves).await?;
    }
    for s in &w.sources {
        capture::install(&w.shards[s].client, &w.moves, &w.refs).await?;
    }
    rb.set_phase(Phase::Copying, "");
    journal::set_state(&w.shards, w.version, Phase::Copying.name()).await?;
    for i in 0..w.refs.len() {
        copy_reference(w, i).await?;
    }
    for s in w.sources.clone() {
        for (i, table) in w.moves.clone().iter().enumerate() {
            let moved =
                copy::copy_moving((s, &w.shards[&s].client), &w.shards, table, &w.new, None)
                    .await?;
            rb.add_moved(moved.rows);
            let set = w.moving.entry((s, i)).or_default();
            set.extend(moved.keys.into_values().flatten());
        }
    }
    let moved = rb.status().rows_moved;
    rb.update(|s| s.rows_to_move = s.rows_to_move.max(moved));
    rb.set_phase(Phase::CatchingUp, "");
    journal::set_state(&w.shards, w.version, Phase::CatchingUp.name()).await?;
    for _ in 0..MAX_ROUNDS {
        if catch_up(ctx, w).await? < QUIET {
            break;
        }
    }
    rb.set_phase(Phase::Switching, "");
    journal::set_state(&w.shards, w.version, Phase::Switching.name()).await?;
    switch::switch(ctx, w).await
}

/// Copies reference table `i` whole onto the joining shards.
pub(super) async fn copy_reference(w: &Work, i: usize) -> Result<(), Error> {
    let t = &w.refs[i];
    let from = &w.shards[&w.sources[0]].client;
    for j in &w.joining {
        let to = &w.shards[j].client;
        // DELETE, not TRUNCATE: sharded tables may hold foreign keys to a reference table.
        to.batch_execute(&format!("DELETE FROM {}", t.qualified))
            .await
            .map_err(|e| {
                Error::internal(format!(
                    "rebalance: emptying {}: {}",
                    t.name,
                    copy::describe(&e)
                ))
            })?;
        copy::copy_whole(from, to, &t.qualified, &t.name).await?;
    }
    Ok(())
}

/// One round of catch-up: takes the logged changes off every source and stages the moving
/// keys' rows again. Returns how many changes it took.
pub(super) async fn catch_up(ctx: &Arc<Context>, w: &mut Work) -> Result<usize, Error> {
    let mut taken = 0;
    for s in w.sources.clone() {
        loop {
            let changes = capture::drain(&w.shards[&s].client, DRAIN_BATCH).await?;
            taken += changes.len();
            let n = changes.len();
            apply(ctx, w, s, changes).await?;
            if (n as i64) < DRAIN_BATCH {
                break;
            }
        }
    }
    Ok(taken)
}

async fn apply(
    ctx: &Arc<Context>,
    w: &mut Work,
    source: ShardId,
    changes: Vec<(String, Option<String>)>,
) -> Result<(), Error> {
    // (table, new shard) → keys, deduplicated.
    let mut restage: BTreeMap<(usize, ShardId), HashSet<String>> = BTreeMap::new();
    for (tbl, key) in changes {
        if let Some(r) = w.refs.iter().position(|r| r.name == tbl) {
            w.refs_dirty.insert(r);
            continue;
        }
        let Some(i) = w.moves.iter().position(|t| t.name == tbl) else {
            continue;
        };
        let Some(key) = key else {
            return Err(Error::unsupported(
                format!(
                    "{tbl} was truncated on {} during the rebalance",
                    w.shards[&source].name
                ),
                "RELOAD again to start over",
            ));
        };
        // The trigger logs char(n) keys blank-padded; as keys they compare unpadded.
        let key = if w.moves[i].key_sql_type.starts_with("character(") {
            key.trim_end_matches(' ').to_owned()
        } else {
            key
        };
        let Ok(k) = crate::ring::Key::from_text(w.moves[i].key_type, &key) else {
            continue;
        };
        let owner = w.new.shard_for_key(&k);
        if owner != source {
            restage.entry((i, owner)).or_default().insert(key);
        }
    }
    for ((i, owner), keys) in restage {
        let keys: Vec<String> = keys.into_iter().collect();
        let table = w.moves[i].clone();
        for chunk in keys.chunks(KEYS_PER_COPY) {
            capture::unstage(&w.shards[&owner].client, &table, chunk).await?;
            let literals: Vec<String> = chunk.iter().map(|k| quote_literal(k)).collect();
            let moved = copy::copy_moving(
                (source, &w.shards[&source].client),
                &w.shards,
                &table,
                &w.new,
                Some(&literals),
            )
            .await?;
            ctx.rebalance.add_moved(moved.rows);
        }
        w.moving.entry((source, i)).or_default().extend(keys);
    }
    Ok(())
}

/// Removes what the rebalance put on the shards (triggers, log, stage tables).
pub(super) async fn cleanup(w: &Work) -> Result<(), Error> {
    let mut first = Ok(());
    for s in &w.sources {
        if let Err(e) = capture::remove(&w.shards[s].client, &w.moves, &w.refs).await {
            tracing::warn!("rebalance cleanup on {}: {e}", w.shards[s].name);
            first = first.and(Err(e));
        }
    }
    for t in &w.targets {
        if let Err(e) = capture::drop_stage(&w.shards[t].client).await {
            tracing::warn!("rebalance cleanup on {}: {e}", w.shards[t].name);
            first = first.and(Err(e));
        }
    }
    first
}
