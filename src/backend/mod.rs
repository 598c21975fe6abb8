//! Connections to the shards: one pool of wire connections per shard, handed out per statement
//! or per transaction, and the catalog discovery that asks a shard for key types.

mod cancel;
mod conn;
mod discover;
mod ending;
mod gid;
pub mod health;
mod prelude;
pub mod recovery;
mod reply;
pub mod twophase;

pub use cancel::{CancelKey, Cancels, Running};
pub use conn::{decode_text_row, ServerConn, ShardTarget};
pub use discover::{discover_collation, discover_keys, quote_literal};
pub use reply::{exchange, Reply};
pub use twophase::TwoPhase;

use crate::config::Config;
use crate::error::Error;
use crate::ring::ShardId;
use crate::stats::Stats;
use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use std::time::Duration;

/// Creates and vets connections of one shard for deadpool.
pub struct Manager {
    target: ShardTarget,
}

impl managed::Manager for Manager {
    type Type = ServerConn;
    type Error = Error;

    async fn create(&self) -> Result<ServerConn, Error> {
        ServerConn::connect(&self.target).await
    }

    async fn recycle(&self, conn: &mut ServerConn, _: &Metrics) -> RecycleResult<Error> {
        // A quiet checkout (`checkout_quiet`) left it counting elsewhere.
        conn.count_to(&self.target.stats);
        if conn.is_dead() {
            return Err(RecycleError::message(
                "connection broken or closed by the server",
            ));
        }
        if conn.status != b'I' {
            // A session left without ending its transaction; never hand that state to another
            // client.
            conn.query_rows("ROLLBACK")
                .await
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
    pub target: ShardTarget,
    pool: Pool<Manager>,
    pub health: health::Health,
}

/// The pools of all shards, in `ShardId` order.
pub struct Backend {
    shards: Vec<Shard>,
    /// Two-phase commit across these shards.
    pub twophase: TwoPhase,
}

impl Backend {
    pub fn new(config: &Config, stats: &Stats) -> Result<Backend, Error> {
        let p = &config.proxy;
        let connect_timeout = Duration::from_millis(p.connect_timeout_ms);
        let mut shards = Vec::with_capacity(config.shards.len());
        for (i, s) in config.shards.iter().enumerate() {
            let mut target = ShardTarget::from_url(&s.name, &s.url, connect_timeout)?;
            target.stats = stats.shard(ShardId(i as u16)).clone();
            let pool = Pool::builder(Manager {
                target: target.clone(),
            })
            .max_size(p.pool_size)
            .wait_timeout(Some(Duration::from_millis(p.pool_timeout_ms)))
            .create_timeout(Some(connect_timeout * 2))
            .recycle_timeout(Some(connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("shard {}: {e}", s.name)))?;
            shards.push(Shard {
                target,
                pool,
                health: health::Health::default(),
            });
        }
        Ok(Backend {
            twophase: TwoPhase::new(shards.len()),
            shards,
        })
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn shard(&self, id: ShardId) -> &Shard {
        &self.shards[id.0 as usize]
    }

    pub fn name(&self, id: ShardId) -> &str {
        &self.shards[id.0 as usize].target.name
    }

    /// The shard of this name.
    pub fn find(&self, name: &str) -> Option<ShardId> {
        self.shards
            .iter()
            .position(|s| s.target.name == name)
            .map(|i| ShardId(i as u16))
    }

    /// True once `close` ran.
    pub fn is_closed(&self) -> bool {
        self.shards.first().is_none_or(|s| s.pool.is_closed())
    }

    /// A connection to the shard, from the pool or newly made.
    pub async fn checkout(&self, id: ShardId) -> Result<PooledConn, Error> {
        let shard = self.shard(id);
        if let Some(detail) = shard.health.down() {
            return Err(Error::ShardUnavailable {
                shard: shard.target.name.clone(),
                detail,
            });
        }
        shard.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => {
                // Only connecting can fail here: the shard does not answer.
                let name = &shard.target.name;
                match &e {
                    Error::ShardUnavailable { detail, .. } => shard.health.mark_down(name, detail),
                    other => shard.health.mark_down(name, &other.to_string()),
                }
                e
            }
            PoolError::Timeout(managed::TimeoutType::Wait) => Error::PoolTimeout {
                shard: shard.target.name.clone(),
            },
            other => Error::ShardUnavailable {
                shard: shard.target.name.clone(),
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
        let mut conn = ServerConn::connect(&self.shard(id).target).await?;
        conn.count_in(Default::default());
        Ok(conn)
    }

    /// The shard's pool: (max size, connections open, idle, clients waiting).
    pub fn pool_status(&self, id: ShardId) -> PoolStatus {
        let s = self.shard(id).pool.status();
        PoolStatus {
            max: s.max_size,
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    /// Closes every pool (idle connections are dropped; loans end when returned).
    pub fn close(&self) {
        for s in &self.shards {
            s.pool.close();
        }
    }
}

/// Takes a connection out of its pool for good (it is broken or its state is unknown).
pub fn discard(conn: PooledConn) {
    drop(Object::take(conn));
}
