//! The placement journal, `shardgate.placement` on every shard: which shards and weights are in
//! force, and the rebalance under way. It is how a restarted proxy (or another one) knows where
//! rows are, and it holds the switch's decision: the coordinator's row turning `committing`.

use super::copy::describe;
use super::plan::{self, qualified, Shard};
use crate::catalog::Catalog;
use crate::config::{Config, ShardConfig};
use crate::error::Error;
use crate::ring::ShardId;
use std::collections::HashMap;
use std::time::Duration;

/// Advisory lock key held by the proxy running a rebalance, on the coordinator shard.
pub const LOCK_KEY: i64 = 0x5348_4152_4447_5442; // "SHARDGTB"
pub const GID_PREFIX: &str = "shardgate_rb_";
pub const IN_FORCE: &str = "in-force";
pub const COMMITTING: &str = "committing";
pub const DONE: &str = "done";
pub const ROLLED_BACK: &str = "rolled-back";

const DDL: &str = "CREATE SCHEMA IF NOT EXISTS shardgate;
CREATE TABLE IF NOT EXISTS shardgate.placement (
  version bigint PRIMARY KEY,
  vnodes integer NOT NULL,
  shards text NOT NULL,
  state text NOT NULL,
  coordinator text NOT NULL,
  updated timestamptz NOT NULL DEFAULT clock_timestamp())";

/// One journal row.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub vnodes: u32,
    pub shards: Vec<ShardConfig>,
    pub state: String,
    pub coordinator: String,
}

impl Entry {
    fn in_force(&self) -> bool {
        self.state == IN_FORCE || self.state == DONE
    }

    fn pending(&self) -> bool {
        !self.in_force() && self.state != ROLLED_BACK && self.state != "failed"
    }
}

/// Shards as journal text, one per line: name, weight, url and (for a rebalance's intermediate
/// placements) ring points, tab-separated.
fn encode(shards: &[ShardConfig]) -> String {
    shards
        .iter()
        .map(|s| match s.points {
            Some(p) => format!("{}\t{}\t{}\t{p}", s.name, s.weight, s.url),
            None => format!("{}\t{}\t{}", s.name, s.weight, s.url),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode(text: &str) -> Vec<ShardConfig> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some(ShardConfig {
                name: it.next()?.to_owned(),
                weight: it.next()?.parse().ok()?,
                url: it.next()?.to_owned(),
                points: it.next().and_then(|p| p.parse().ok()),
            })
        })
        .collect()
}

fn fail(doing: &str, e: tokio_postgres::Error) -> Error {
    Error::internal(format!("placement journal: {doing}: {}", describe(&e)))
}

async fn read(client: &tokio_postgres::Client) -> Result<Vec<Entry>, tokio_postgres::Error> {
    // Asked first, so that shards without a journal log no error every time a proxy looks.
    let exists: bool = client
        .query_one("SELECT to_regclass('shardgate.placement') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, vnodes, shards, state, coordinator FROM shardgate.placement \
              ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            version: r.get(0),
            vnodes: r.get::<_, i32>(1) as u32,
            shards: decode(r.get(2)),
            state: r.get(3),
            coordinator: r.get(4),
        })
        .collect())
}

/// The newest placement in force in one shard's journal.
pub async fn latest_in_force(client: &tokio_postgres::Client) -> Result<Option<Entry>, Error> {
    let rows = read(client).await.map_err(|e| fail("reading", e))?;
    Ok(rows.into_iter().rev().find(|e| e.in_force()))
}

/// Records the running placement (if the journal does not have it as in force) and the target,
/// on every shard; returns the target's version.
pub async fn begin(
    shards: &HashMap<ShardId, Shard>,
    from: &Config,
    to: &Config,
    coordinator: &str,
    running: &std::sync::atomic::AtomicI64,
) -> Result<i64, Error> {
    let mut latest: Option<Entry> = None;
    let mut in_force: Option<Entry> = None;
    for s in shards.values() {
        s.client
            .batch_execute(DDL)
            .await
            .map_err(|e| fail("creating", e))?;
        for e in read(&s.client).await.map_err(|e| fail("reading", e))? {
            if e.in_force() && in_force.as_ref().is_none_or(|l| e.version > l.version) {
                in_force = Some(e.clone());
            }
            if latest.as_ref().is_none_or(|l| e.version > l.version) {
                latest = Some(e);
            }
        }
    }
    let mut version = latest.as_ref().map_or(0, |l| l.version);
    let key = |shards: &[ShardConfig], v| plan::placement_key(shards, v);
    // The newest placement in force, if it is the running one, keeps its version: other proxies
    // routing by it must not find their placement replaced (backend/fence.rs).
    let current = in_force
        .as_ref()
        .filter(|l| key(&l.shards, l.vnodes) == key(&from.shards, from.proxy.vnodes))
        .map(|l| l.version);
    let mut rows = Vec::new();
    let running_version = match current {
        Some(v) => v,
        None => {
            version += 1;
            rows.push((version, from, IN_FORCE));
            version
        }
    };
    // This proxy's own new connections must find their placement current (backend/fence.rs).
    running.store(running_version, std::sync::atomic::Ordering::Release);
    version += 1;
    rows.push((version, to, "preparing"));
    for s in shards.values() {
        for (v, c, state) in &rows {
            s.client
                .execute(
                    "INSERT INTO shardgate.placement (version, vnodes, shards, state, coordinator) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO UPDATE SET \
                     vnodes = EXCLUDED.vnodes, shards = EXCLUDED.shards, state = EXCLUDED.state, \
                     coordinator = EXCLUDED.coordinator, updated = clock_timestamp()",
                    &[v, &(c.proxy.vnodes as i32), &encode(&c.shards), state, &coordinator],
                )
                .await
                .map_err(|e| fail("recording", e))?;
        }
    }
    Ok(version)
}

/// Sets a version's state on every shard.
pub async fn set_state(
    shards: &HashMap<ShardId, Shard>,
    version: i64,
    state: &str,
) -> Result<(), Error> {
    for s in shards.values() {
        s.client
            .execute(
                "UPDATE shardgate.placement SET state = $2, updated = clock_timestamp() WHERE version = $1",
                &[&version, &state],
            )
            .await
            .map_err(|e| fail("updating", e))?;
    }
    Ok(())
}

/// What a proxy starting with `config` must route by: the journal's placement in force, after
/// finishing (if decided) or rolling back (if not) a rebalance a crash interrupted. None when
/// no shard has a journal.
pub async fn recover(config: &Config) -> Result<Option<(Vec<ShardConfig>, u32, i64)>, Error> {
    let timeout = Duration::from_millis(config.proxy.connect_timeout_ms);
    let mut entries: Vec<Entry> = Vec::new();
    let mut reachable = Vec::new();
    for s in &config.shards {
        let Ok(shard) = plan::connect(s, config.tls.as_ref(), timeout).await else {
            continue;
        };
        if let Ok(rows) = read(&shard.client).await {
            for e in rows {
                // The coordinator's copy may be the only one saying the switch was decided.
                match entries.iter_mut().find(|x| x.version == e.version) {
                    Some(x) if decided_state(&e.state) => *x = e,
                    Some(_) => {}
                    None => entries.push(e),
                }
            }
        }
        reachable.push(shard);
    }
    entries.sort_by_key(|e| e.version);
    let Some(force) = entries.iter().rev().find(|e| e.in_force()).cloned() else {
        return Ok(None);
    };
    let Some(pending) = entries
        .iter()
        .rev()
        .find(|e| e.version > force.version && e.pending())
        .cloned()
    else {
        // No switch can be running: prepared parts an earlier failure left are settled by
        // their version's record.
        for s in &reachable {
            settle(&s.client, |v| {
                entries
                    .iter()
                    .any(|e| e.version == v && decided_state(&e.state))
            })
            .await?;
        }
        return Ok(Some((force.shards, force.vnodes, force.version)));
    };
    // Every shard of both placements, by name.
    let mut all: Vec<ShardConfig> = force.shards.clone();
    for s in &pending.shards {
        if !all.iter().any(|a| a.name == s.name) {
            all.push(s.clone());
        }
    }
    let mut shards = HashMap::new();
    for (i, s) in all.iter().enumerate() {
        shards.insert(
            ShardId(i as u16),
            plan::connect(s, config.tls.as_ref(), timeout).await?,
        );
    }
    let coord = shards
        .values()
        .find(|s| s.name == pending.coordinator)
        .ok_or_else(|| {
            Error::internal("the interrupted rebalance's coordinator is not among its shards")
        })?;
    let free: bool = coord
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| fail("locking", e))?
        .get(0);
    if !free {
        // Another proxy is running it: serve what is in force; its switch will tell.
        return Ok(Some((force.shards, force.vnodes, force.version)));
    }
    let decided = read(&coord.client)
        .await
        .map_err(|e| fail("reading the coordinator's record", e))?
        .iter()
        .any(|e| e.version == pending.version && (e.state == COMMITTING || e.state == DONE));
    let catalog = Catalog::from_config(config);
    let tables: Vec<String> = catalog
        .tables()
        .iter()
        .map(|r| qualified(r.schema.as_deref(), &r.name))
        .collect();
    for s in shards.values() {
        settle(&s.client, |v| {
            if v == pending.version {
                decided
            } else {
                entries
                    .iter()
                    .any(|e| e.version == v && decided_state(&e.state))
            }
        })
        .await?;
        super::capture::remove_named(&s.client, &tables).await?;
        super::capture::drop_stage(&s.client).await?;
    }
    let state = if decided { DONE } else { ROLLED_BACK };
    set_state(&shards, pending.version, state).await?;
    // Released now, not when the connection's backend gets round to exiting: the rebalance
    // this start may begin next takes the same lock.
    coord
        .client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| fail("unlocking", e))?;
    tracing::warn!(
        "an interrupted rebalance (placement version {}) was {} at start",
        pending.version,
        if decided { "finished" } else { "rolled back" }
    );
    Ok(Some(if decided {
        (pending.shards, pending.vnodes, pending.version)
    } else {
        (force.shards, force.vnodes, force.version)
    }))
}

fn decided_state(state: &str) -> bool {
    state == COMMITTING || state == DONE
}

/// Commits or rolls back every prepared part of a rebalance switch on this shard, as its
/// version was decided.
async fn settle(
    client: &tokio_postgres::Client,
    decided: impl Fn(i64) -> bool,
) -> Result<(), Error> {
    let gids = client
        .query(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1",
            &[&format!("{}%", GID_PREFIX.replace('_', "\\_"))],
        )
        .await
        .map_err(|e| fail("reading prepared transactions", e))?;
    for g in gids {
        let gid: String = g.get(0);
        let Some(version) = gid
            .strip_prefix(GID_PREFIX)
            .and_then(|r| r.split('_').next())
            .and_then(|v| v.parse::<i64>().ok())
        else {
            continue;
        };
        let verb = if decided(version) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        client
            .batch_execute(&format!("{verb} PREPARED '{gid}'"))
            .await
            .map_err(|e| fail("finishing an interrupted switch", e))?;
        tracing::warn!("{verb} PREPARED {gid}: left by an interrupted rebalance");
    }
    Ok(())
}
