//! Connections to the shards: one pool of wire connections per shard, handed out per statement
//! or per transaction, and the catalog discovery that asks a shard for key types.

mod cancel;
mod conn;
mod discover;
mod ending;
pub mod fence;
mod gid;
pub mod health;
mod prelude;
pub mod recovery;
mod reply;
pub mod statements;
pub mod twophase;

pub use cancel::{CancelKey, Cancels, Running};
pub use conn::{decode_text_row, ServerConn, ShardTarget};
pub use discover::{discover_collation, discover_keys, quote_literal};
pub use reply::{exchange, Reply};
pub use twophase::TwoPhase;

use crate::config::{Config, ProxyConfig, ShardConfig, TlsConfig, MAX_SHARDS};
use crate::error::Error;
use crate::ring::ShardId;
use crate::stats::{ShardStats, Stats};
use arc_swap::{ArcSwap, ArcSwapOption};
use deadpool::managed::{
    self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult, Timeouts,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

pub struct Shard {
    /// Fixed for the life of the proxy (placement derives from it).
    pub name: String,
    /// Where and how to connect; replaced when RELOAD changes the shard's url.
    target: ArcSwap<ShardTarget>,
    pool: ArcSwap<Pool<Manager>>,
    pub health: health::Health,
}

impl Shard {
    pub fn target(&self) -> Arc<ShardTarget> {
        self.target.load_full()
    }
}

/// The pools of all shards, in `ShardId` order. The list only grows (a rebalance adds shards
/// while clients run), so a shard's id is its slot for the life of the process, and the hot path
/// finds it without a lock. A shard that leaves the ring keeps its slot.
pub struct Backend {
    /// `MAX_SHARDS` slots; the first `len` are set.
    slots: Box<[OnceLock<Shard>]>,
    len: AtomicUsize,
    /// Held only while appending, so two adds of one name cannot both take a slot.
    adding: Mutex<()>,
    /// Two-phase commit across these shards.
    pub twophase: TwoPhase,
    /// The placement version this proxy routes by, checked on every new connection.
    pub fence: Arc<fence::Fence>,
    /// Set by `close`: the pools may be replaced by RELOAD, so theirs is not the flag.
    closed: std::sync::atomic::AtomicBool,
    /// `[tls]`, for the targets of pools built from now on (RELOAD replaces it, then the pools).
    tls: ArcSwapOption<TlsConfig>,
}

/// A shard's connection target and pool, as the config describes them.
fn build(
    name: &str,
    url: &str,
    tls: Option<&TlsConfig>,
    p: &ProxyConfig,
    stats: Arc<ShardStats>,
    fence: Arc<fence::Fence>,
) -> Result<(ShardTarget, Pool<Manager>), Error> {
    let connect_timeout = Duration::from_millis(p.connect_timeout_ms);
    let mut target = ShardTarget::from_url(name, url, tls, connect_timeout)?;
    target.stats = stats;
    let pool = Pool::builder(Manager {
        target: target.clone(),
        fence,
    })
    .max_size(p.pool_size)
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
    .map_err(|e| Error::config(format!("shard {name}: {e}")))?;
    Ok((target, pool))
}

impl Backend {
    pub fn new(config: &Config, stats: &Stats) -> Result<Backend, Error> {
        let backend = Backend {
            slots: (0..MAX_SHARDS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            adding: Mutex::new(()),
            twophase: TwoPhase::new(),
            fence: Arc::default(),
            closed: Default::default(),
            tls: ArcSwapOption::from_pointee(config.tls.clone()),
        };
        for s in &config.shards {
            backend.add_shard(s, &config.proxy, stats)?;
        }
        Ok(backend)
    }

    /// Adds a shard (its pool connects lazily) and returns its id; a shard of that name already
    /// present keeps its id and pool, so calling this twice is harmless. Adding does not put it
    /// in the ring: it owns keys only once a ring built with its weight is stored.
    pub fn add_shard(
        &self,
        cfg: &ShardConfig,
        p: &ProxyConfig,
        stats: &Stats,
    ) -> Result<ShardId, Error> {
        let _guard = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.find(&cfg.name) {
            return Ok(id);
        }
        let i = self.len.load(Ordering::Acquire);
        if i >= MAX_SHARDS {
            return Err(Error::config(format!(
                "cannot add shard {:?}: at most {MAX_SHARDS} shards are supported over the \
                 life of a proxy (restart it to forget shards that left the ring)",
                cfg.name
            )));
        }
        let id = ShardId(i as u16);
        let (target, pool) = build(
            &cfg.name,
            &cfg.url,
            self.tls.load().as_deref(),
            p,
            stats.shard(id).clone(),
            self.fence.clone(),
        )?;
        let shard = Shard {
            name: cfg.name.clone(),
            target: ArcSwap::from_pointee(target),
            pool: ArcSwap::from_pointee(pool),
            health: health::Health::default(),
        };
        if self.slots[i].set(shard).is_err() {
            return Err(Error::internal("shard slot taken twice"));
        }
        // Published only once the slot is set: whoever sees the new len finds the shard.
        self.len.store(i + 1, Ordering::Release);
        if self.is_closed() {
            self.shard(id).pool.load().close();
        }
        Ok(id)
    }

    /// Points shard `id` at a new url or new timeouts: new connections go there at once; the
    /// old pool is closed, so connections on loan finish their work and are then dropped.
    pub fn replace_pool(&self, id: ShardId, url: &str, p: &ProxyConfig) -> Result<(), Error> {
        let shard = self.shard(id);
        let stats = shard.target().stats.clone();
        let tls = self.tls.load();
        let (target, pool) = build(
            &shard.name,
            url,
            tls.as_deref(),
            p,
            stats,
            self.fence.clone(),
        )?;
        shard.target.store(Arc::new(target));
        let old = shard.pool.swap(Arc::new(pool));
        old.close();
        Ok(())
    }

    /// The `[tls]` that pools built from now on connect with; `replace_pool` applies it to a
    /// shard's existing pool.
    pub fn set_tls(&self, tls: Option<TlsConfig>) {
        self.tls.store(tls.map(Arc::new));
    }

    /// Grows or shrinks every pool (connections on loan are kept until returned).
    pub fn resize_pools(&self, size: usize) {
        for s in self.shards() {
            s.pool.load().resize(size);
        }
    }

    /// Shards in the backend, including any that have left the ring.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every shard's id, ascending: for the proxy's own work on all of them (health, recovery).
    /// Statements go to the ring's members instead.
    pub fn ids(&self) -> impl Iterator<Item = ShardId> {
        (0..self.len()).map(|i| ShardId(i as u16))
    }

    fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.slots[..self.len()].iter().filter_map(OnceLock::get)
    }

    /// The shard of an id the backend handed out. Panics for any other id, as an index would.
    pub fn shard(&self, id: ShardId) -> &Shard {
        match self.slots.get(usize::from(id.0)).and_then(OnceLock::get) {
            Some(s) => s,
            None => panic!("no shard {}: the backend has {}", id.0, self.len()),
        }
    }

    pub fn name(&self, id: ShardId) -> &str {
        &self.shard(id).name
    }

    /// The shard of this name.
    pub fn find(&self, name: &str) -> Option<ShardId> {
        self.shards()
            .position(|s| s.name == name)
            .map(|i| ShardId(i as u16))
    }

    /// True once `close` ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A connection to the shard, from the pool or newly made.
    pub async fn checkout(&self, id: ShardId) -> Result<PooledConn, Error> {
        let shard = self.shard(id);
        if let Some(detail) = shard.health.down() {
            return Err(Error::ShardUnavailable {
                shard: shard.name.clone(),
                detail,
            });
        }
        // Owned, not a guard: the guard would be held across the wait for a connection.
        let pool = shard.pool.load_full();
        // Most checkouts find a connection idle: taken without arming the wait timer (a clock
        // read and a timer entry per statement). Only an empty pool waits, under the timeout.
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            ..pool.timeouts()
        };
        let got = match pool.timeout_get(&now).await {
            Err(PoolError::Timeout(managed::TimeoutType::Wait)) => pool.get().await,
            got => got,
        };
        got.map_err(|e| match e {
            PoolError::Backend(e) => {
                // Only connecting can fail here: the shard does not answer.
                let name = &shard.name;
                match &e {
                    Error::ShardUnavailable { detail, .. } => shard.health.mark_down(name, detail),
                    other => shard.health.mark_down(name, &other.to_string()),
                }
                e
            }
            PoolError::Timeout(managed::TimeoutType::Wait) => Error::PoolTimeout {
                shard: shard.name.clone(),
            },
            other => Error::ShardUnavailable {
                shard: shard.name.clone(),
                detail: other.to_string(),
            },
        })
    }

    /// A pooled connection for the proxy's own work (recovery, polling): its traffic is not
    /// counted in the shard's statistics, which describe the clients' workload.
    pub async fn checkout_quiet(&self, id: ShardId) -> Result<PooledConn, Error> {
        let mut conn = self.checkout(id).await?;
        conn.count_in(Default::default());
        Ok(conn)
    }

    /// A new connection outside the pool, for the proxy's own work while a transaction holds
    /// the pooled ones (a pool of one must not wait on itself). Not counted in the statistics.
    pub async fn connect_direct(&self, id: ShardId) -> Result<ServerConn, Error> {
        let mut conn = ServerConn::connect(&self.shard(id).target()).await?;
        conn.count_in(Default::default());
        Ok(conn)
    }

    /// The shard's pool: (max size, connections open, idle, clients waiting).
    pub fn pool_status(&self, id: ShardId) -> PoolStatus {
        let s = self.shard(id).pool.load().status();
        PoolStatus {
            max: s.max_size,
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    /// Closes every pool (idle connections are dropped; loans end when returned).
    pub fn close(&self) {
        // Under the append lock, so a shard being added now is either closed here or sees the
        // flag and closes its own pool.
        let _guard = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        for s in self.shards() {
            s.pool.load().close();
        }
    }
}

/// Takes a connection out of its pool for good (it is broken or its state is unknown).
pub fn discard(conn: PooledConn) {
    drop(Object::take(conn));
}
