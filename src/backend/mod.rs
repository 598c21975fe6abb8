//! Connections to the shards: one pool of wire connections per shard, handed out per statement
//! or per transaction, and the catalog discovery that asks a shard for key types.

mod cancel;
mod conn;
mod discover;
mod ending;
pub mod fence;
mod gid;
pub mod health;
mod pool;
mod prelude;
pub mod recovery;
mod reply;
pub mod statements;
pub mod twophase;

pub use cancel::{CancelKey, Cancels, Running};
pub use conn::{decode_text_row, ServerConn, ShardTarget, Tags};
pub use discover::{discover_collation, discover_keys, quote_literal};
use pool::Pools;
pub use pool::{discard, PoolStatus, PooledConn};
pub use reply::{exchange, Reply};
pub use twophase::TwoPhase;

use crate::config::{Config, ProxyConfig, ShardConfig, TlsConfig, MAX_SHARDS};
use crate::error::Error;
use crate::ring::ShardId;
use crate::stats::Stats;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub struct Shard {
    /// Fixed for the life of the proxy (placement derives from it).
    pub name: String,
    /// Where and how to connect; replaced when RELOAD changes the shard's url.
    target: ArcSwap<ShardTarget>,
    pool: ArcSwap<Pools>,
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
    /// Worker threads, each with its share of every shard's pool; fixed at start.
    workers: usize,
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
            workers: crate::workers::count(config.proxy.workers, config.proxy.pool_size),
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
        let (target, pool) = pool::build(
            &cfg.name,
            &cfg.url,
            self.tls.load().as_deref(),
            p,
            self.workers,
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
        let (target, pool) = pool::build(
            &shard.name,
            url,
            tls.as_deref(),
            p,
            self.workers,
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

    /// The worker threads serving clients (`crate::workers`), one pool per shard each.
    pub fn workers(&self) -> usize {
        self.workers
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

    /// A connection to the shard for the proxy's own work (worker 0's pool first).
    pub async fn checkout(&self, id: ShardId) -> Result<PooledConn, Error> {
        self.checkout_on(0, id).await
    }

    /// A connection to the shard for a session on `worker`, its own share of the pool first
    /// (`Pools::get`).
    pub async fn checkout_on(&self, worker: usize, id: ShardId) -> Result<PooledConn, Error> {
        let shard = self.shard(id);
        if let Some(detail) = shard.health.down() {
            return Err(Error::ShardUnavailable {
                shard: shard.name.clone(),
                detail,
            });
        }
        // Owned, not a guard: the guard would be held across the wait for a connection.
        let got = shard.pool.load_full().get(worker).await;
        got.map_err(|e| match e {
            pool::GetError::Connect(e) => {
                // The shard does not answer.
                let name = &shard.name;
                match &e {
                    Error::ShardUnavailable { detail, .. } => shard.health.mark_down(name, detail),
                    other => shard.health.mark_down(name, &other.to_string()),
                }
                e
            }
            pool::GetError::WaitTimeout => Error::PoolTimeout {
                shard: shard.name.clone(),
            },
            pool::GetError::ConnectTimeout => Error::ShardUnavailable {
                shard: shard.name.clone(),
                detail: "timed out connecting".into(),
            },
            pool::GetError::Closed => Error::ShardUnavailable {
                shard: shard.name.clone(),
                detail: "the pool is closed".into(),
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
        self.shard(id).pool.load().status()
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
