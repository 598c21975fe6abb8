//! Ending a participant of a distributed transaction: native commits of the shards that wrote
//! nothing, rollbacks, and COMMIT/ROLLBACK PREPARED retried on fresh connections.

use super::reply::{exchange, Reply};
use super::twophase::{Failure, Outcome};
use super::{Backend, PooledConn, ServerConn};
use crate::error::Error;
use crate::ring::ShardId;
use futures_util::future::join_all;
use std::time::Duration;

/// How often, and how long apart, a COMMIT/ROLLBACK PREPARED is tried before it is left to
/// recovery.
const FINISH_TRIES: u32 = 3;
const FINISH_BACKOFF: Duration = Duration::from_millis(200);

/// Moves the items whose flag is set to the front, keeping the order within both groups.
pub(super) fn writers_first<T>(items: &mut [T], flags: &[bool]) {
    let mut front = 0;
    for (i, &flag) in flags.iter().enumerate() {
        if flag {
            items[front..=i].rotate_right(1);
            front += 1;
        }
    }
}

/// Commits a transaction in which at most one shard (`written`) wrote: the readers first, then
/// the writer, each natively. A reader that cannot commit rolls everything back.
pub(super) async fn commit_natively(
    backend: &Backend,
    read: &mut [(ShardId, PooledConn)],
    written: &mut [(ShardId, PooledConn)],
) -> Outcome {
    let mut failure = None;
    let replies = join_all(read.iter_mut().map(|(_, c)| exchange(c, "COMMIT"))).await;
    for ((shard, _), r) in read.iter().zip(replies) {
        match r {
            Ok(reply) if reply.is("COMMIT") => {}
            Ok(reply) => {
                failure.get_or_insert_with(|| refused(reply, backend.name(*shard)));
            }
            Err(e) => {
                failure.get_or_insert(Failure::Proxy(e));
            }
        }
    }
    let Some((shard, conn)) = written.first_mut() else {
        return match failure {
            Some(f) => Outcome::Aborted(f),
            None => Outcome::Committed {
                pending: Vec::new(),
            },
        };
    };
    if let Some(f) = failure {
        let _ = exchange(conn, "ROLLBACK").await;
        return Outcome::Aborted(f);
    }
    match exchange(conn, "COMMIT").await {
        Ok(reply) if reply.is("COMMIT") => Outcome::Committed {
            pending: Vec::new(),
        },
        Ok(reply) => {
            if conn.status != b'I' {
                let _ = exchange(conn, "ROLLBACK").await;
            }
            Outcome::Aborted(refused(reply, backend.name(*shard)))
        }
        // Lost during its own COMMIT: as unknown as PostgreSQL's own client would see it.
        Err(e) => Outcome::Aborted(Failure::Proxy(e)),
    }
}

/// A shard's answer that was not the one wanted: its error, or (an aborted transaction answers
/// PREPARE with a ROLLBACK tag) a proxy error saying so.
pub(super) fn refused(reply: Reply, shard: &str) -> Failure {
    match reply.error {
        Some(frame) => Failure::Shard(frame),
        None => Failure::Proxy(Error::internal(format!(
            "shard \"{shard}\" answered {:?} instead of committing; the transaction was rolled \
             back on every shard",
            reply.tag_text()
        ))),
    }
}

/// Rolls back a transaction that never reached phase 1.
pub async fn rollback_all(coord: &mut PooledConn, others: &mut [(ShardId, PooledConn)]) {
    let _ = exchange(coord, "ROLLBACK").await;
    join_all(others.iter_mut().map(|(_, c)| exchange(c, "ROLLBACK"))).await;
}

/// Undoes phase 1: ROLLBACK PREPARED where the PREPARE may have happened, ROLLBACK where the
/// transaction is still open. What cannot be reached is left to recovery, which finds no
/// decision record and rolls it back.
pub(super) async fn abort_prepared(
    backend: &Backend,
    others: &mut [(ShardId, PooledConn)],
    prepared: &[bool],
    gids: &[String],
) {
    let work = others.iter_mut().zip(prepared).zip(gids).map(
        |(((shard, conn), &was_prepared), gid)| async move {
            if was_prepared || conn.broken {
                finish(backend, *shard, conn, &format!("ROLLBACK PREPARED {gid}")).await;
            } else if conn.status != b'I' {
                let _ = exchange(conn, "ROLLBACK").await;
            }
        },
    );
    join_all(work).await;
}

/// Runs COMMIT or ROLLBACK PREPARED, on `conn` and then on fresh connections, a few times.
/// Returns whether it took effect (or had already: the gid no longer exists).
pub(super) async fn finish(
    backend: &Backend,
    shard: ShardId,
    conn: &mut PooledConn,
    sql: &str,
) -> bool {
    let mut fresh: Option<ServerConn> = None;
    for attempt in 0..FINISH_TRIES {
        if attempt > 0 {
            tokio::time::sleep(FINISH_BACKOFF * attempt).await;
        }
        let target: &mut ServerConn = if !conn.broken {
            conn
        } else {
            if fresh.as_ref().is_none_or(|c| c.broken) {
                fresh = backend.connect_direct(shard).await.ok();
            }
            match fresh.as_mut() {
                Some(c) => c,
                None => continue,
            }
        };
        match exchange(target, sql).await {
            Ok(r) if r.finished_prepared() => return true,
            Ok(r) => {
                tracing::warn!(
                    "{sql} on shard \"{}\": {}",
                    backend.name(shard),
                    r.message().unwrap_or_default()
                );
            }
            Err(e) => tracing::warn!("{sql}: {e}"),
        }
    }
    false
}
