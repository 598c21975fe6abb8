//! In-doubt two-phase transactions: looked for on every shard at startup and periodically,
//! committed or rolled back by their decision record; decision records no longer needed are
//! removed.

use super::reply::exchange;
use super::twophase::{Gid, TwoPhase, ABORT_RECORD_TTL};
use super::{discover::quote_literal, Backend};
use crate::error::Error;
use crate::ring::ShardId;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A prepared transaction younger than this may still be finished by the proxy that prepared
/// it; recovery leaves it alone until then (resolving it earlier would be safe, only rude).
const GRACE: &str = "2 seconds";
/// Decision records are removed only by a pass shorter than this (see `collect_garbage`).
const GC_PASS_LIMIT: Duration = Duration::from_secs(10);
const COMMIT_RECORD_AGE: &str = "30 seconds";
/// What one step of a pass (listing a shard, deciding, resolving) may take: a shard that hangs
/// rather than refuses must not stall recovery for every other shard.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub committed: usize,
    pub rolled_back: usize,
    /// In-doubt transactions left for a later pass (too young, in flight, coordinator away).
    pub waiting: usize,
    /// Shards that could not be asked.
    pub unreachable: Vec<String>,
    /// Decision records removed.
    pub removed: u64,
}

/// One pass over every shard.
pub async fn recover(backend: &Backend) -> Report {
    let started = Instant::now();
    let tp = &backend.twophase;
    let mut report = Report::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut with_table = Vec::new();
    // One decision per distributed transaction and pass, however many participants it has.
    let mut decided: HashMap<String, bool> = HashMap::new();
    // Every shard, in the ring or not: a shard that left it may still hold prepared work.
    for shard in backend.ids() {
        let name = backend.name(shard);
        let found = async {
            let mut conn = backend.checkout_quiet(shard).await?;
            // Dropped mid-answer by the timeout below, it must not go back to the pool.
            conn.broken = true;
            let rows = conn
                .query_rows(&format!(
                    "SELECT gid, now() - prepared > interval '{GRACE}' FROM pg_prepared_xacts \
                     WHERE database = current_database() AND left(gid, 3) = 'sg_'"
                ))
                .await?;
            let table = conn
                .query_rows("SELECT to_regclass('shardgate.txn_decisions') IS NOT NULL")
                .await?;
            conn.broken = false;
            Ok::<_, Error>((conn, rows, table))
        };
        let found = tokio::time::timeout(STEP_LIMIT, found)
            .await
            .unwrap_or_else(|_| Err(Error::internal("no answer within the recovery step limit")));
        let (mut conn, rows, table) = match found {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("2PC recovery: shard \"{name}\" not reachable: {e}");
                report.unreachable.push(name.to_owned());
                continue;
            }
        };
        if first_is_true(&table) {
            with_table.push(shard);
        }
        for row in rows {
            let (Some(Some(text)), Some(Some(old))) = (row.first(), row.get(1)) else {
                continue;
            };
            let Some(gid) = Gid::parse(text) else {
                continue;
            };
            seen.insert(gid.txn());
            if old != "t" || tp.in_flight(&gid) {
                report.waiting += 1;
                continue;
            }
            let Some(coord) = backend.find(&gid.coordinator) else {
                tracing::warn!(
                    "prepared transaction {gid} on shard \"{name}\" names coordinator \"{}\", \
                     which is not in the config; left for an operator",
                    gid.coordinator
                );
                report.waiting += 1;
                continue;
            };
            if backend.shard(coord).health.down().is_some() {
                report.waiting += 1;
                continue;
            }
            let known = decided.get(&gid.txn()).copied();
            let decision = match known {
                Some(c) => Ok(c),
                None => tokio::time::timeout(STEP_LIMIT, decide(backend, tp, coord, &gid))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::internal("the coordinator did not answer in time"))
                    }),
            };
            let commit = match decision {
                Ok(c) => {
                    decided.insert(gid.txn(), c);
                    c
                }
                Err(e) => {
                    tracing::warn!("2PC recovery: {gid} stays in doubt for now: {e}");
                    report.waiting += 1;
                    continue;
                }
            };
            let verb = if commit { "COMMIT" } else { "ROLLBACK" };
            let sql = format!("{verb} PREPARED {}", quote_literal(text));
            conn.broken = true;
            let done = tokio::time::timeout(STEP_LIMIT, exchange(&mut conn, &sql)).await;
            let done = done.unwrap_or_else(|_| Err(Error::internal("no answer in time")));
            conn.broken = done.is_err();
            match done {
                Ok(r) if r.finished_prepared() => {
                    tracing::info!("2PC recovery: {verb} PREPARED {gid} on shard \"{name}\"");
                    if commit {
                        report.committed += 1;
                    } else {
                        report.rolled_back += 1;
                    }
                }
                Ok(r) => {
                    tracing::warn!("2PC recovery: {sql}: {}", r.message().unwrap_or_default());
                    report.waiting += 1;
                }
                Err(e) => {
                    tracing::warn!("2PC recovery: {sql}: {e}");
                    report.waiting += 1;
                    break;
                }
            }
        }
    }
    if report.unreachable.is_empty() && started.elapsed() < GC_PASS_LIMIT {
        report.removed = collect_garbage(backend, &with_table, &seen, started).await;
    }
    report
}

/// The decision for `gid`, whose coordinator is `coord`: true to commit. With no decision yet,
/// records an abort first, so the coordinator can never commit afterwards. Waits (up to a
/// lock timeout) for a coordinator transaction still open; that wait failing is an `Err`.
pub async fn decide(
    backend: &Backend,
    tp: &TwoPhase,
    coord: ShardId,
    gid: &Gid,
) -> Result<bool, Error> {
    tp.ensure_table(backend, coord).await?;
    // Not from the pool: the commit path asks while it holds the coordinator's connection.
    let mut conn = backend.connect_direct(coord).await?;
    let lit = quote_literal(&gid.txn());
    let reply = exchange(
        &mut conn,
        &format!(
            "BEGIN; SET LOCAL lock_timeout = '2s'; \
             INSERT INTO shardgate.txn_decisions (gid, committed) VALUES ({lit}, false) \
             ON CONFLICT (gid) DO NOTHING; COMMIT"
        ),
    )
    .await?;
    if let Some(msg) = reply.message() {
        if conn.status != b'I' {
            let _ = exchange(&mut conn, "ROLLBACK").await;
        }
        return Err(Error::internal(format!(
            "recording a decision on shard \"{}\": {msg}",
            backend.name(coord)
        )));
    }
    // A new statement, so a new snapshot: it sees a coordinator commit the insert waited for.
    let rows = conn
        .query_rows(&format!(
            "SELECT committed FROM shardgate.txn_decisions WHERE gid = {lit}"
        ))
        .await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Some(v)) => Ok(v == "t"),
        _ => Err(Error::internal(format!(
            "the decision record of {gid} vanished on shard \"{}\"",
            backend.name(coord)
        ))),
    }
}

/// Removes commit records no prepared transaction needs any more, and old abort records.
///
/// A commit record is written after all its participants prepared, so one older than the
/// prepared lists this pass read (`COMMIT_RECORD_AGE` exceeds the pass's length) whose gid is
/// in none of them has no participant left in doubt. Abort records must outlive any
/// coordinator that could still try to commit, which phase 1's own limit bounds.
async fn collect_garbage(
    backend: &Backend,
    shards: &[ShardId],
    seen: &HashSet<String>,
    started: Instant,
) -> u64 {
    let keep = seen
        .iter()
        .map(|g| quote_literal(g))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "DELETE FROM shardgate.txn_decisions WHERE \
         (committed AND at < now() - interval '{COMMIT_RECORD_AGE}' \
          AND gid <> ALL (ARRAY[{keep}]::text[])) \
         OR (NOT committed AND at < now() - interval '{ABORT_RECORD_TTL}')"
    );
    let mut removed = 0;
    for &shard in shards {
        let Ok(mut conn) = backend.checkout_quiet(shard).await else {
            continue;
        };
        // The argument above needs the DELETE to start soon after the prepared lists were read.
        if started.elapsed() >= GC_PASS_LIMIT {
            break;
        }
        conn.broken = true;
        let done = tokio::time::timeout(STEP_LIMIT, exchange(&mut conn, &sql)).await;
        let done = done.unwrap_or_else(|_| Err(Error::internal("no answer in time")));
        conn.broken = done.is_err();
        match done {
            Ok(r) if r.error.is_none() => {
                removed += r
                    .tag_text()
                    .strip_prefix("DELETE ")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Ok(r) => tracing::warn!(
                "removing old decision records on shard \"{}\": {}",
                backend.name(shard),
                r.message().unwrap_or_default()
            ),
            Err(e) => tracing::warn!("removing old decision records: {e}"),
        }
    }
    removed
}

fn first_is_true(rows: &[Vec<Option<String>>]) -> bool {
    matches!(rows.first().and_then(|r| r.first()), Some(Some(v)) if v == "t")
}
