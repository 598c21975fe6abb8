//! How several proxies agree on placement. Every shard connection a proxy opens takes a shared
//! advisory lock naming the proxy, and reads the placement journal before its first use:
//! - a newer placement in force than the proxy routes by: the connection is refused with
//!   40001 (the statement was routed by the old ring) and the proxy adopts the new placement;
//! - another proxy switching rows right now: the connection waits for the switch to end.
//!
//! The proxy running a switch first marks the journal `switching`, then ends every other
//! proxy's connections (found by their advisory locks), so no other proxy can reach a moving
//! row by a stale ring until it has read the new placement.

use super::ServerConn;
use crate::error::Error;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// First half of the advisory lock key every proxy connection holds (shared).
pub const LOCK_CLASS: i32 = 0x5347_5250; // "SGRP"

/// The longest a new connection waits for another proxy's switch.
const WAIT_FOR_SWITCH: Duration = Duration::from_secs(30);

pub struct Fence {
    /// This proxy's half of the lock key (random, positive).
    pub key: i32,
    /// The journal version of the placement this proxy routes by (0: none recorded).
    pub version: AtomicI64,
    /// Set while this proxy runs a switch: its own connections must not wait for it.
    pub switching_self: AtomicBool,
    /// Wakes the task that adopts a newer placement.
    pub changed: tokio::sync::Notify,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            key: (rand::random::<u32>() >> 1) as i32,
            version: AtomicI64::new(0),
            switching_self: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl Fence {
    /// Runs on every new shard connection before it is used.
    pub async fn check(&self, conn: &mut ServerConn) -> Result<(), Error> {
        let sql = format!(
            "SELECT pg_advisory_lock_shared({LOCK_CLASS}, {}), \
                    to_regclass('shardgate.placement') IS NOT NULL",
            self.key
        );
        let rows = conn.query_rows(&sql).await?;
        let has_journal = rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .is_some_and(|v| v == "t");
        if !has_journal {
            return Ok(());
        }
        let deadline = Instant::now() + WAIT_FOR_SWITCH;
        loop {
            let rows = conn
                .query_rows(
                    "SELECT coalesce(max(version) FILTER (WHERE state IN ('in-force', 'done')), 0), \
                            coalesce(bool_or(state IN ('switching', 'committing')), false) \
                       FROM shardgate.placement",
                )
                .await?;
            let row = rows.first().cloned().unwrap_or_default();
            let in_force: i64 = row
                .first()
                .cloned()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let switching = row.get(1).cloned().flatten().is_some_and(|v| v == "t");
            if in_force > self.version.load(Ordering::Acquire) {
                self.changed.notify_one();
                return Err(Error::PlacementChanged { version: in_force });
            }
            if !switching || self.switching_self.load(Ordering::Acquire) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::ShardUnavailable {
                    shard: conn.shard.clone(),
                    detail: "another shardgate's rebalance switch has not ended in 30 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Ends the shard connections of every other proxy (they reconnect and read the journal).
pub fn evict_others_sql(key: i32) -> String {
    format!(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
          WHERE l.locktype = 'advisory' AND l.classid = {LOCK_CLASS}::oid AND l.objsubid = 2 \
            AND l.objid <> {key}::oid AND l.pid <> pg_backend_pid() \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}
