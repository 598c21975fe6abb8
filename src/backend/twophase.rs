//! Two-phase commit of a transaction that reached several shards: transaction ids, the decision
//! record, and the commit protocol. Resolving what a crash left in doubt is `recovery.rs`.
//!
//! The protocol is presumed abort, with the coordinator (the transaction's first shard)
//! committing in one phase:
//! 1. every other participant runs `PREPARE TRANSACTION 'gid'`, in parallel (each its own gid,
//!    as gids are unique per PostgreSQL cluster and several shards may share one);
//! 2. the coordinator inserts `(txn, committed = true)` into `shardgate.txn_decisions` inside
//!    its own transaction and commits it. That commit *is* the decision, durable and atomic with
//!    the coordinator's own writes;
//! 3. every prepared participant runs `COMMIT PREPARED 'gid'`, in parallel.
//!
//! A prepared `sg_` transaction whose transaction has no decision row was never decided.
//! Recovery rolls it back, after inserting `(txn, committed = false)` first: the primary key then makes
//! a coordinator that is somehow still running fail its own insert, so it can never commit
//! after recovery decided to abort (and recovery's insert waits for a coordinator transaction
//! that is still open, so it cannot overtake one either).

use super::ending::{
    abort_prepared, commit_natively, finish, refused, rollback_all, writers_first,
};
pub use super::gid::Gid;
use super::reply::exchange;
use super::{discover::quote_literal, Backend, PooledConn};
use crate::error::Error;
use crate::protocol::Frame;
use crate::ring::ShardId;
use futures_util::future::join_all;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Creates the decision table where it is missing (idempotent; run once per shard and process).
pub const DECISIONS_DDL: &str = "CREATE SCHEMA IF NOT EXISTS shardgate; \
     CREATE TABLE IF NOT EXISTS shardgate.txn_decisions (\
       gid text PRIMARY KEY, \
       committed boolean NOT NULL, \
       at timestamptz NOT NULL DEFAULT clock_timestamp())";

/// Abort records outlive any coordinator that could still try to commit: phase 1 gives up
/// after `PHASE_ONE_LIMIT`, far below this.
pub const ABORT_RECORD_TTL: &str = "1 hour";
const PHASE_ONE_LIMIT: Duration = Duration::from_secs(600);

/// Environment variable naming a point where the proxy kills itself (crash tests only).
pub const FAILPOINT_ENV: &str = "SHARDGATE_FAILPOINT";

/// Why a transaction did not commit: a shard's own error (relayed as sent) or the proxy's.
pub enum Failure {
    Shard(Frame),
    Proxy(Error),
}

pub enum Outcome {
    /// Committed everywhere, except on `pending` shards whose COMMIT PREPARED failed and is
    /// left to recovery (the decision is durable; their part becomes visible then).
    Committed { pending: Vec<String> },
    /// Nothing committed anywhere.
    Aborted(Failure),
    /// The decision's outcome could not be learned; recovery finishes it.
    Unknown(Error),
}

/// The proxy's two-phase state: its instance id, the transactions it is committing now, and
/// the shards known to have the decision table.
pub struct TwoPhase {
    instance: String,
    next: AtomicU64,
    in_flight: Mutex<HashSet<u64>>,
    /// By ShardId, for every id a shard may get (the backend grows at runtime).
    ready: Box<[AtomicBool]>,
    failpoint: Option<String>,
    /// Wakes the recovery task when a commit leaves work for it.
    pub wake: tokio::sync::Notify,
}

/// Keeps a gid in the in-flight set (which recovery leaves alone) while its commit runs.
struct InFlight<'a> {
    owner: &'a TwoPhase,
    seq: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.seq);
    }
}

impl Default for TwoPhase {
    fn default() -> TwoPhase {
        TwoPhase::new()
    }
}

impl TwoPhase {
    pub fn new() -> TwoPhase {
        TwoPhase {
            // Random per process, so that ids never repeat across restarts or proxies.
            instance: format!("{:012x}", rand::random::<u64>() >> 16),
            next: AtomicU64::new(1),
            in_flight: Mutex::new(HashSet::new()),
            ready: (0..crate::config::MAX_SHARDS)
                .map(|_| AtomicBool::new(false))
                .collect(),
            failpoint: std::env::var(FAILPOINT_ENV).ok().filter(|s| !s.is_empty()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True for a gid this process is committing right now.
    pub fn in_flight(&self, gid: &Gid) -> bool {
        gid.instance == self.instance && self.lock().contains(&gid.seq)
    }

    /// Dies on the spot, as a crash would, when the crash tests ask for it at `point`.
    pub fn failpoint(&self, point: &str) {
        if self.failpoint.as_deref() == Some(point) {
            tracing::error!("failpoint {point}: killing the proxy");
            // SAFETY: kill(2) on our own pid with a valid signal has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    /// Makes sure `shard` has the decision table (creating it once per process).
    pub async fn ensure_table(&self, backend: &Backend, shard: ShardId) -> Result<(), Error> {
        let flag = &self.ready[usize::from(shard.0)];
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut conn = backend.connect_direct(shard).await?;
        let mut reply = exchange(&mut conn, DECISIONS_DDL).await?;
        if reply.error.is_some() {
            // Two proxies creating it at once collide on the catalog; the second try sees it.
            reply = exchange(&mut conn, DECISIONS_DDL).await?;
        }
        if let Some(msg) = reply.message() {
            return Err(Error::internal(format!(
                "cannot commit across shards: shard \"{}\" could not create \
                 shardgate.txn_decisions: {msg}",
                backend.name(shard)
            )));
        }
        flag.store(true, Ordering::Release);
        Ok(())
    }

    /// Commits a transaction open on two or more shards. `maybe_writers` are the shards the
    /// router saw a write (or anything but a read) go to; the others are asked whether they
    /// hold a transaction id (a write, a row lock) before anything commits. Shards that wrote
    /// nothing commit natively; two or more that wrote go through two-phase commit. The
    /// connections stay with the caller, idle (or broken) whatever happened.
    pub async fn commit(
        &self,
        backend: &Backend,
        conns: &mut [(ShardId, PooledConn)],
        maybe_writers: &[ShardId],
    ) -> Outcome {
        let checks = join_all(conns.iter_mut().map(|(s, c)| async move {
            if maybe_writers.contains(s) {
                return true;
            }
            // Only an error (say, a transaction the shard aborted) leaves this unknown:
            // counted as a writer, its PREPARE then reports it.
            c.query_rows("SELECT txid_current_if_assigned() IS NOT NULL")
                .await
                .map_or(true, |rows| {
                    !matches!(rows.first().and_then(|r| r.first()), Some(Some(v)) if v == "f")
                })
        }))
        .await;
        let writers = checks.iter().filter(|w| **w).count();
        // Writers first, in their order: the first one coordinates.
        writers_first(conns, &checks);
        let (written, read) = conns.split_at_mut(writers);
        if writers <= 1 {
            return commit_natively(backend, read, written).await;
        }
        let outcome = self.commit_writers(backend, written).await;
        let commit = matches!(outcome, Outcome::Committed { .. });
        // What the readers did needs no decision; their locks go now.
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        join_all(read.iter_mut().map(|(_, c)| exchange(c, sql))).await;
        outcome
    }

    /// Two-phase commit of the shards that wrote (`conns[0]` coordinates).
    async fn commit_writers(
        &self,
        backend: &Backend,
        conns: &mut [(ShardId, PooledConn)],
    ) -> Outcome {
        let Some(((coord_id, coord), others)) = conns.split_first_mut() else {
            return Outcome::Committed {
                pending: Vec::new(),
            };
        };
        let coord_id = *coord_id;
        if let Err(e) = self.ensure_table(backend, coord_id).await {
            rollback_all(coord, others).await;
            return Outcome::Aborted(Failure::Proxy(e));
        }
        let gid = Gid {
            instance: self.instance.clone(),
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            participant: coord_id.0,
            coordinator: backend.name(coord_id).to_owned(),
        };
        self.lock().insert(gid.seq);
        let _in_flight = InFlight {
            owner: self,
            seq: gid.seq,
        };
        // Each participant's gid, quoted.
        let gids: Vec<String> = others
            .iter()
            .map(|(s, _)| {
                let g = Gid {
                    participant: s.0,
                    ..gid.clone()
                };
                quote_literal(&g.to_string())
            })
            .collect();
        let txn = gid.txn();

        // Phase 1.
        let phase_one = join_all(others.iter_mut().zip(&gids).map(|((_, c), g)| async move {
            exchange(c, &format!("PREPARE TRANSACTION {g}")).await
        }));
        let replies = match tokio::time::timeout(PHASE_ONE_LIMIT, phase_one).await {
            Ok(r) => r,
            Err(_) => {
                // Whatever these connections are doing, they are not to be trusted again; a
                // PREPARE that still completes has no decision record and is rolled back by
                // recovery.
                for (_, c) in others.iter_mut() {
                    c.broken = true;
                }
                let _ = exchange(coord, "ROLLBACK").await;
                let none = vec![false; others.len()];
                abort_prepared(backend, others, &none, &gids).await;
                return Outcome::Aborted(Failure::Proxy(Error::internal(
                    "PREPARE TRANSACTION did not finish in time on some shard; the transaction \
                     was rolled back",
                )));
            }
        };
        let mut failure = None;
        let mut prepared = vec![false; others.len()];
        for (i, r) in replies.into_iter().enumerate() {
            match r {
                Ok(reply) if reply.is("PREPARE TRANSACTION") => prepared[i] = true,
                Ok(reply) => {
                    let shard = backend.name(others[i].0);
                    failure.get_or_insert_with(|| refused(reply, shard));
                }
                Err(e) => {
                    failure.get_or_insert(Failure::Proxy(e));
                }
            }
        }
        if let Some(f) = failure {
            let _ = exchange(coord, "ROLLBACK").await;
            abort_prepared(backend, others, &prepared, &gids).await;
            return Outcome::Aborted(f);
        }
        self.failpoint("after-prepare");
        if self.failpoint.as_deref() == Some("lose-coordinator") {
            coord.sever().await;
        }

        // Phase 2: the decision.
        let sql = format!(
            "INSERT INTO shardgate.txn_decisions (gid, committed) VALUES ({}, true); COMMIT",
            quote_literal(&txn)
        );
        match exchange(coord, &sql).await {
            Ok(reply) if reply.is("COMMIT") => {}
            Ok(reply) => {
                if coord.status != b'I' {
                    let _ = exchange(coord, "ROLLBACK").await;
                }
                let all = vec![true; others.len()];
                abort_prepared(backend, others, &all, &gids).await;
                if reply.sqlstate().as_deref() == Some("23505") {
                    // Recovery's abort record was there first (see the module comment).
                    return Outcome::Aborted(Failure::Proxy(Error::RecoveredAway { txn }));
                }
                return Outcome::Aborted(refused(reply, backend.name(coord_id)));
            }
            Err(lost) => match super::recovery::decide(backend, self, coord_id, &gid).await {
                Ok(true) => {}
                Ok(false) => {
                    let all = vec![true; others.len()];
                    abort_prepared(backend, others, &all, &gids).await;
                    return Outcome::Aborted(Failure::Proxy(lost));
                }
                Err(e) => {
                    tracing::warn!("transaction {txn} left in doubt: {e}");
                    self.wake.notify_one();
                    return Outcome::Unknown(Error::CommitUnknown {
                        shard: backend.name(coord_id).to_owned(),
                        gid: txn,
                    });
                }
            },
        }
        self.failpoint("after-decision");

        // Phase 3.
        let done = join_all(others.iter_mut().zip(&gids).map(|((s, c), g)| async move {
            finish(backend, *s, c, &format!("COMMIT PREPARED {g}")).await
        }))
        .await;
        let pending: Vec<String> = others
            .iter()
            .zip(done)
            .filter(|(_, ok)| !ok)
            .map(|((s, _), _)| backend.name(*s).to_owned())
            .collect();
        if !pending.is_empty() {
            self.wake.notify_one();
            tracing::warn!(
                "transaction {txn} committed; COMMIT PREPARED left to recovery on {}",
                pending.join(", ")
            );
        }
        Outcome::Committed { pending }
    }
}
