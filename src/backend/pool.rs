//! A shard's pools: deadpool's manager for shard connections, and the pool split into one
//! share per worker thread, with the checkout that looks beyond its own share.

use super::{fence, ServerConn, ShardTarget};
use crate::config::ProxyConfig;
use crate::config::TlsConfig;
use crate::error::Error;
use crate::stats::ShardStats;
use deadpool::managed::{
    self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult, Timeouts,
};
use std::sync::Arc;
use std::time::Duration;

/// Creates and vets connections of one shard for deadpool.
pub struct Manager {
    target: ShardTarget,
    fence: Arc<fence::Fence>,
}

impl managed::Manager for Manager {
    /// Boxed: the pool moves its objects in and out on every checkout and return, and a
    /// connection's state is a few hundred bytes.
    type Type = Box<ServerConn>;
    type Error = Error;

    async fn create(&self) -> Result<Box<ServerConn>, Error> {
        let mut conn = Box::new(ServerConn::connect(&self.target).await?);
        // The check is the proxy's own traffic, not the shard's workload.
        let counted = conn.count_in(Arc::default());
        self.fence.check(&mut conn).await?;
        conn.count_in(counted);
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Box<ServerConn>, _: &Metrics) -> RecycleResult<Error> {
        // A quiet checkout (`checkout_quiet`) left it counting elsewhere.
        conn.count_to(&self.target.stats);
        if conn.is_dead() {
            return Err(RecycleError::message(
                "connection broken or closed by the server",
            ));
        }
        if conn.status != b'I' {
            // A session left without ending its transaction; never hand that state to another
            // client. Bounded here, not by the pool: the pool's recycle timeout would arm a
            // timer on every checkout for this rare case.
            let bound = self.target.connect_timeout;
            tokio::time::timeout(bound, conn.query_rows("ROLLBACK"))
                .await
                .map_err(|_| RecycleError::message("ROLLBACK timed out"))?
                .map_err(RecycleError::Backend)?;
            if conn.status != b'I' {
                return Err(RecycleError::message("connection not idle after ROLLBACK"));
            }
        }
        Ok(())
    }
}

/// How one shard's pool is used right now.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// A connection on loan from a shard's pool; dropping it returns it.
pub type PooledConn = Object<Manager>;

/// One shard's connections, split among the worker threads (`crate::workers`): a session
/// borrows from its own worker's pool first, so the connections it uses are polled by the
/// runtime it runs on.
pub struct Pools(Box<[Pool<Manager>]>);

impl Pools {
    /// A connection for a session on worker `worker`: an idle one of its own pool, or a new one
    /// if that pool has room; else an idle one of another worker's; else the first returned to
    /// any, within `pool_timeout_ms`.
    pub async fn get(&self, worker: usize) -> Got {
        let pools = &self.0;
        let own = worker % pools.len();
        // Most checkouts find a connection idle: taken without arming the wait timer (a clock
        // read and a timer entry per statement). Only an empty pool waits, under the timeout.
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            ..pools[own].timeouts()
        };
        let got = pools[own].timeout_get(&now).await;
        if !is_wait_timeout(&got) {
            return got;
        }
        if pools.len() > 1 {
            if let Some(got) = others_idle(pools, own, &now).await {
                return got;
            }
        }
        wait_any(pools, own).await
    }

    /// The pools' sizes and loans, added up.
    pub fn status(&self) -> PoolStatus {
        let mut sum = PoolStatus {
            max: 0,
            open: 0,
            idle: 0,
            waiting: 0,
        };
        for s in self.0.iter().map(Pool::status) {
            sum.max += s.max_size;
            sum.open += s.size;
            sum.idle += s.available;
            sum.waiting += s.waiting;
        }
        sum
    }

    pub(super) fn close(&self) {
        self.0.iter().for_each(Pool::close);
    }

    pub(super) fn resize(&self, size: usize) {
        let n = self.0.len();
        for (i, p) in self.0.iter().enumerate() {
            p.resize(share(size, n, i));
        }
    }
}

/// Worker `i`'s part of `size` connections shared by `n` workers: they add up to `size`.
fn share(size: usize, n: usize, i: usize) -> usize {
    size / n + usize::from(i < size % n)
}

/// A shard's connection target and pools, as the config describes them.
pub(super) fn build(
    name: &str,
    url: &str,
    tls: Option<&TlsConfig>,
    p: &ProxyConfig,
    workers: usize,
    stats: Arc<ShardStats>,
    fence: Arc<fence::Fence>,
) -> Result<(ShardTarget, Pools), Error> {
    let connect_timeout = Duration::from_millis(p.connect_timeout_ms);
    let mut target = ShardTarget::from_url(name, url, tls, connect_timeout)?;
    target.stats = stats;
    let pools = (0..workers)
        .map(|i| build_pool(name, &target, p, share(p.pool_size, workers, i), &fence))
        .collect::<Result<_, _>>()?;
    Ok((target, Pools(pools)))
}

fn build_pool(
    name: &str,
    target: &ShardTarget,
    p: &ProxyConfig,
    size: usize,
    fence: &Arc<fence::Fence>,
) -> Result<Pool<Manager>, Error> {
    let connect_timeout = target.connect_timeout;
    Pool::builder(Manager {
        target: target.clone(),
        fence: fence.clone(),
    })
    .max_size(size)
    // The most recently used connection first: a steady load keeps reusing the few backends
    // it needs, warm in their caches, instead of rotating through every one the pool opened
    // at its peak (FIFO would wake all of them in turn).
    .queue_mode(managed::QueueMode::Lifo)
    .wait_timeout(Some(Duration::from_millis(p.pool_timeout_ms)))
    .create_timeout(Some(connect_timeout * 2))
    // Recycling does no I/O but for the ROLLBACK, which bounds itself.
    .recycle_timeout(None)
    .runtime(deadpool::Runtime::Tokio1)
    .build()
    .map_err(|e| Error::config(format!("shard {name}: {e}")))
}

type Got = Result<PooledConn, PoolError<Error>>;

fn is_wait_timeout(got: &Got) -> bool {
    matches!(got, Err(PoolError::Timeout(managed::TimeoutType::Wait)))
}

/// An idle connection of another worker's pool, if one has any (or room for a new one).
async fn others_idle(pools: &[Pool<Manager>], own: usize, now: &Timeouts) -> Option<Got> {
    for (i, p) in pools.iter().enumerate() {
        if i != own && p.status().max_size > 0 {
            let got = p.timeout_get(now).await;
            if !is_wait_timeout(&got) {
                return Some(got);
            }
        }
    }
    None
}

/// Waits for a connection: on the worker's own pool (or the first with a share, if a RELOAD
/// left it none), looking at the others between short waits, until `pool_timeout_ms`.
async fn wait_any(pools: &[Pool<Manager>], own: usize) -> Got {
    let home = if pools[own].status().max_size > 0 {
        own
    } else {
        pools
            .iter()
            .position(|p| p.status().max_size > 0)
            .unwrap_or(own)
    };
    let timeouts = pools[home].timeouts();
    if pools.len() == 1 {
        return pools[home].timeout_get(&timeouts).await;
    }
    // Connections go back to the pool they came from, and a waiter is woken by its own pool
    // only: the others are looked at every few milliseconds.
    const SLICE: Duration = Duration::from_millis(5);
    let deadline = timeouts.wait.map(|w| tokio::time::Instant::now() + w);
    let now = Timeouts {
        wait: Some(Duration::ZERO),
        ..timeouts
    };
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        let got = pools[home]
            .timeout_get(&Timeouts {
                wait: Some(slice),
                ..timeouts
            })
            .await;
        if !is_wait_timeout(&got) || left.is_some_and(|l| l <= slice) {
            return got;
        }
        if let Some(got) = others_idle(pools, home, &now).await {
            return got;
        }
    }
}

/// Takes a connection out of its pool for good (it is broken or its state is unknown).
pub fn discard(conn: PooledConn) {
    drop(Object::take(conn));
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_pool_size() {
        for size in 0..40 {
            for n in 1..9 {
                let shares: Vec<usize> = (0..n).map(|i| share(size, n, i)).collect();
                assert_eq!(shares.iter().sum::<usize>(), size, "{size} over {n}");
                let (lo, hi) = (shares.iter().min(), shares.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "{shares:?}");
            }
        }
    }
}
