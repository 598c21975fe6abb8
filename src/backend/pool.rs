//! A shard's pool: its connections split into one share per worker thread, the checkout that
//! looks beyond its own share, and the vetting of a connection before it is lent again.
//!
//! Hand-written rather than deadpool's: every statement borrows and returns a connection, and a
//! share is touched by its own worker but for the rare borrow from another, so a checkout needs
//! only an uncontended lock and a pop. deadpool's checkout (a semaphore, hooks, timestamps and a
//! large future moved about) cost some 1,200 instructions per statement, and its waiters could
//! only be woken by their own share.

use super::{fence, ServerConn, ShardTarget};
use crate::config::ProxyConfig;
use crate::config::TlsConfig;
use crate::error::Error;
use crate::stats::ShardStats;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Creates and vets connections of one shard.
struct Manager {
    target: ShardTarget,
    fence: Arc<fence::Fence>,
}

impl Manager {
    async fn create(&self) -> Result<Box<ServerConn>, Error> {
        let mut conn = Box::new(ServerConn::connect(&self.target).await?);
        // The check is the proxy's own traffic, not the shard's workload.
        let counted = conn.count_in(Arc::default());
        self.fence.check(&mut conn).await?;
        conn.count_in(counted);
        Ok(conn)
    }

    /// Whether an idle connection may be lent again.
    async fn recycle(&self, conn: &mut ServerConn) -> bool {
        // A quiet checkout (`checkout_quiet`) left it counting elsewhere.
        conn.count_to(&self.target.stats);
        if conn.is_dead() {
            return false;
        }
        if conn.status != b'I' {
            // A session left without ending its transaction; never hand that state to another
            // client.
            let bound = self.target.connect_timeout;
            let rolled = tokio::time::timeout(bound, conn.query_rows("ROLLBACK")).await;
            return matches!(rolled, Ok(Ok(_))) && conn.status == b'I';
        }
        true
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

/// Why no connection could be had.
#[derive(Debug)]
pub enum GetError {
    /// Connecting failed: the shard does not answer, or refused.
    Connect(Error),
    /// Connecting took longer than twice `connect_timeout_ms`.
    ConnectTimeout,
    /// Every connection stayed on loan for `pool_timeout_ms`.
    WaitTimeout,
    /// The pool was closed (shutdown, or replaced by a RELOAD).
    Closed,
}

/// One worker's part of a shard's connections. Boxed, so a checkout moves a pointer rather
/// than a connection's few hundred bytes.
#[allow(clippy::vec_box)]
struct Share {
    idle: Mutex<Vec<Box<ServerConn>>>,
    /// Connections of this share that exist: idle, on loan, or being connected.
    open: AtomicUsize,
    max: AtomicUsize,
}

impl Share {
    #[allow(clippy::vec_box)]
    fn idle(&self) -> MutexGuard<'_, Vec<Box<ServerConn>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection in if the share has room for it.
    fn reserve(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

struct Inner {
    shares: Box<[Share]>,
    manager: Manager,
    wait: Duration,
    create_timeout: Duration,
    waiting: AtomicUsize,
    /// Woken when a connection is returned or room is made: waiters take from any share.
    returned: Notify,
    closed: AtomicBool,
}

/// One shard's connections, split among the worker threads (`crate::workers`): a session
/// borrows from its own worker's share first, so the connections it uses are polled by the
/// runtime it runs on.
pub struct Pools(Arc<Inner>);

/// A connection on loan from a shard's pool; dropping it returns it.
pub struct PooledConn {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Inner>,
    share: usize,
}

impl Deref for PooledConn {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn
            .as_deref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_deref_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(self.share, conn);
        }
    }
}

/// Takes a connection out of its pool for good (it is broken or its state is unknown).
pub fn discard(mut conn: PooledConn) {
    if let Some(c) = conn.conn.take() {
        drop(c);
        conn.pool.forget(conn.share);
    }
}

/// What a look at the shares found.
enum Found {
    Idle(usize, Box<ServerConn>),
    Room(usize),
}

impl Inner {
    /// An idle connection or room for a new one: the worker's own share first, then the
    /// others'. A share left empty by a RELOAD has no room and is passed over.
    fn find(&self, own: usize) -> Option<Found> {
        let n = self.shares.len();
        if let Some(c) = self.shares[own].idle().pop() {
            return Some(Found::Idle(own, c));
        }
        if self.shares[own].reserve() {
            return Some(Found::Room(own));
        }
        for i in (1..n).map(|d| (own + d) % n) {
            if let Some(c) = self.shares[i].idle().pop() {
                return Some(Found::Idle(i, c));
            }
        }
        (1..n)
            .map(|d| (own + d) % n)
            .find(|&i| self.shares[i].reserve())
            .map(Found::Room)
    }

    fn put_back(&self, share: usize, conn: Box<ServerConn>) {
        let s = &self.shares[share];
        if self.closed.load(Ordering::Acquire)
            || s.open.load(Ordering::Acquire) > s.max.load(Ordering::Relaxed)
        {
            // Closed, or shrunk by a RELOAD while this was on loan.
            drop(conn);
            self.forget(share);
            return;
        }
        s.idle().push(conn);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.returned.notify_one();
        }
    }

    /// A connection of `share` is gone: there is room for another.
    fn forget(&self, share: usize) {
        self.shares[share].open.fetch_sub(1, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.returned.notify_one();
        }
    }

    /// Turns what `find` found into a connection on loan; None if an idle one failed its
    /// vetting (it is dropped, and the caller looks again).
    async fn lend(self: &Arc<Self>, found: Found) -> Option<Result<PooledConn, GetError>> {
        let (share, conn) = match found {
            Found::Idle(share, mut conn) => {
                let claim = Claim::new(self, share);
                if !self.manager.recycle(&mut conn).await {
                    return None;
                }
                claim.keep();
                (share, conn)
            }
            Found::Room(share) => {
                let claim = Claim::new(self, share);
                let made = tokio::time::timeout(self.create_timeout, self.manager.create()).await;
                match made {
                    Ok(Ok(conn)) => {
                        claim.keep();
                        (share, conn)
                    }
                    Ok(Err(e)) => return Some(Err(GetError::Connect(e))),
                    Err(_) => return Some(Err(GetError::ConnectTimeout)),
                }
            }
        };
        Some(Ok(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            share,
        }))
    }
}

/// A connection of a share, counted in its `open`, that is being made or vetted: given up
/// (its count with it) if that fails, or if the checkout is abandoned, its future dropped
/// mid-way (a client gone, a statement timeout).
struct Claim<'a> {
    pool: &'a Inner,
    share: usize,
}

impl<'a> Claim<'a> {
    fn new(pool: &'a Inner, share: usize) -> Self {
        Claim { pool, share }
    }

    /// The connection made it: it stays counted.
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.pool.forget(self.share);
    }
}

impl Pools {
    /// A connection for a session on worker `worker`: an idle one of its own share, or a new
    /// one if that share has room; else the same from another worker's share; else the first
    /// returned to any share (or room made in one), within `pool_timeout_ms`.
    pub async fn get(&self, worker: usize) -> Result<PooledConn, GetError> {
        let p = &self.0;
        let own = worker % p.shares.len();
        loop {
            if p.closed.load(Ordering::Acquire) {
                return Err(GetError::Closed);
            }
            match p.find(own) {
                Some(found) => match p.lend(found).await {
                    Some(got) => return got,
                    None => continue,
                },
                None => return self.wait(own).await,
            }
        }
    }

    async fn wait(&self, own: usize) -> Result<PooledConn, GetError> {
        let p = &self.0;
        let deadline = tokio::time::Instant::now() + p.wait;
        p.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&p.waiting);
        loop {
            // Registered before looking, so a return between the look and the wait wakes it.
            let returned = p.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if p.closed.load(Ordering::Acquire) {
                return Err(GetError::Closed);
            }
            if let Some(found) = p.find(own) {
                match p.lend(found).await {
                    Some(got) => return got,
                    None => continue,
                }
            }
            if tokio::time::timeout_at(deadline, returned).await.is_err() {
                return Err(GetError::WaitTimeout);
            }
        }
    }

    /// The shares' sizes and loans, added up.
    pub fn status(&self) -> PoolStatus {
        let p = &self.0;
        let mut sum = PoolStatus {
            max: 0,
            open: 0,
            idle: 0,
            waiting: p.waiting.load(Ordering::Relaxed),
        };
        for s in p.shares.iter() {
            sum.max += s.max.load(Ordering::Relaxed);
            sum.open += s.open.load(Ordering::Relaxed);
            sum.idle += s.idle().len();
        }
        sum
    }

    /// Drops the idle connections; those on loan are dropped when returned, and waiters fail.
    pub(super) fn close(&self) {
        let p = &self.0;
        p.closed.store(true, Ordering::Release);
        for s in p.shares.iter() {
            let idle = std::mem::take(&mut *s.idle());
            s.open.fetch_sub(idle.len(), Ordering::AcqRel);
        }
        p.returned.notify_waiters();
    }

    /// Splits `size` anew between the shares; idle connections beyond a share's new size are
    /// dropped now, those on loan when returned.
    pub(super) fn resize(&self, size: usize) {
        let p = &self.0;
        let n = p.shares.len();
        for (i, s) in p.shares.iter().enumerate() {
            let max = share(size, n, i);
            s.max.store(max, Ordering::Release);
            let mut idle = s.idle();
            while s.open.load(Ordering::Acquire) > max && idle.pop().is_some() {
                s.open.fetch_sub(1, Ordering::AcqRel);
            }
        }
        // Waiters may find room now.
        p.returned.notify_waiters();
    }
}

/// Counts a waiter out however its wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Worker `i`'s part of `size` connections shared by `n` workers: they add up to `size`.
fn share(size: usize, n: usize, i: usize) -> usize {
    size / n + usize::from(i < size % n)
}

/// A shard's connection target and pool, as the config describes them.
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
    let workers = workers.max(1);
    let shares = (0..workers)
        .map(|i| Share {
            // LIFO: a steady load keeps reusing the few backends it needs, warm in their
            // caches, instead of rotating through every one the pool opened at its peak.
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(share(p.pool_size, workers, i)),
        })
        .collect();
    let pools = Pools(Arc::new(Inner {
        shares,
        manager: Manager {
            target: target.clone(),
            fence,
        },
        wait: Duration::from_millis(p.pool_timeout_ms),
        create_timeout: connect_timeout * 2,
        waiting: AtomicUsize::new(0),
        returned: Notify::new(),
        closed: AtomicBool::new(false),
    }));
    Ok((target, pools))
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
