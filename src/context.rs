//! The shared state of one running proxy, built once in `main` and passed around as `Arc<Context>`.

use crate::backend::{self, Backend, Cancels};
use crate::catalog::Catalog;
use crate::config::{Config, ShardConfig};
use crate::error::Error;
use crate::gather::collate::Collation;
use crate::ring::Ring;
use crate::stats::Stats;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// ParameterStatus (name, value) pairs.
pub type ServerParams = Arc<Vec<(String, String)>>;

pub struct Context {
    pub config: ArcSwap<Config>,
    pub ring: ArcSwap<Ring>,
    pub catalog: ArcSwap<Catalog>,
    /// Bumped on every catalog change, so sessions drop plans made under the old one.
    pub catalog_version: AtomicU64,
    pub backend: Backend,
    /// Traffic counters, hot keys, skew, connected clients.
    pub stats: Arc<Stats>,
    /// Clients' cancel keys and the backends their statements run on.
    pub cancels: Cancels,
    /// Connected clients (for max_client_connections).
    pub clients: AtomicUsize,
    /// Connected admin console sessions (counted apart, see server.rs).
    pub admin_clients: AtomicUsize,
    /// Connections still in their handshake (TLS, startup, authentication).
    pub handshakes: AtomicUsize,
    /// Held while a reload applies.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The `[[rate_limits]]` in force and their buckets (swapped whole on reload).
    pub limits: ArcSwap<crate::gateway::Limiter>,
    /// Connections per user name.
    pub user_conns: crate::gateway::ConnCaps,
    /// The shards' database collation, which orders text when rows of several shards merge.
    pub collation: ArcSwap<Collation>,
    /// The config file, when the proxy was started from one (RELOAD and SIGHUP re-read it).
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    /// Where `/metrics` is served, once bound (port 0 in the config picks a free one).
    pub metrics_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// The online rebalance: its gate for sessions and its progress.
    pub rebalance: crate::rebalance::Rebalance,
    /// The users of `[auth]` with their parsed passwords; replaced on a reload that changes
    /// `[auth]`, so clients already in keep their sessions.
    pub users: ArcSwap<crate::auth::Users>,
    /// TLS offered to clients (`[tls]` cert and key); RELOAD swaps it, so new connections get
    /// renewed files and open ones keep theirs.
    pub tls_acceptor: ArcSwapOption<crate::tls::ClientTls>,
    /// ParameterStatus values of a real shard, reported to clients at startup.
    server_params: Mutex<Option<ServerParams>>,
}

impl Context {
    pub fn new(config: Config) -> Result<Arc<Context>, Error> {
        let catalog = Catalog::from_config(&config);
        let stats = Arc::new(Stats::new(&config));
        let backend = Backend::new(&config, &stats)?;
        let limits = crate::gateway::Limiter::new(&config.rate_limits);
        let acceptor = crate::tls::acceptor(config.tls.as_ref())?;
        let ctx = Context {
            config: ArcSwap::from_pointee(config),
            // Replaced at once below, when the backend it is built over is in place.
            ring: ArcSwap::from_pointee(Ring::new(&[], 1)),
            catalog: ArcSwap::from_pointee(catalog),
            catalog_version: AtomicU64::new(1),
            backend,
            stats,
            cancels: Cancels::default(),
            clients: AtomicUsize::new(0),
            admin_clients: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            reload_lock: Default::default(),
            limits: ArcSwap::from_pointee(limits),
            user_conns: Default::default(),
            collation: ArcSwap::from_pointee(Collation::bytewise()),
            metrics_addr: Default::default(),
            config_path: Default::default(),
            rebalance: Default::default(),
            // Nobody until `start` puts the config's users here: an empty list fails closed.
            users: ArcSwap::from_pointee(crate::auth::Users::default()),
            tls_acceptor: ArcSwapOption::new(acceptor.map(Arc::new)),
            server_params: Mutex::new(None),
        };
        // The backend's ids are the config's order, so this is the config's ring.
        let config = ctx.config.load_full();
        let ring = ctx.placement_ring(&config.shards, config.proxy.vnodes)?;
        ctx.ring.store(Arc::new(ring));
        Ok(Arc::new(ctx))
    }

    /// The ring for a placement: every backend shard in id order (ids must not change), each
    /// with its weight in `shards`, or 0 (no keys) if `shards` leaves it out. Every shard of
    /// `shards` must already be in the backend (`backend.add_shard`).
    pub fn placement_ring(&self, shards: &[ShardConfig], vnodes: u32) -> Result<Ring, Error> {
        let mut list: Vec<ShardConfig> = self
            .backend
            .ids()
            .map(|id| ShardConfig {
                name: self.backend.name(id).to_owned(),
                // The ring needs names and weights only; urls live in the backend.
                url: String::new(),
                weight: 0,
                points: None,
            })
            .collect();
        for s in shards {
            let Some(id) = self.backend.find(&s.name) else {
                return Err(Error::config(format!(
                    "shard {:?} is not in the backend: add it before placing keys on it",
                    s.name
                )));
            };
            list[usize::from(id.0)].weight = s.weight;
            list[usize::from(id.0)].points = s.points;
        }
        Ok(Ring::new(&list, vnodes))
    }

    /// Re-reads key types and positions from the shards and publishes a new catalog.
    pub async fn refresh_catalog(&self) -> Result<(), Error> {
        let current = self.catalog.load_full();
        // Only the ring's members: a shard being added may not have the schema yet.
        let members = self.ring.load().members().to_vec();
        let found = backend::discover_keys(&self.backend, &members, &current).await?;
        let mut next = Catalog::from_config(&self.config.load());
        for (table, ty, pos) in found {
            next.set_key_info(&table, ty, pos);
        }
        self.catalog.store(Arc::new(next));
        self.catalog_version.fetch_add(1, Ordering::Release);
        let name = backend::discover_collation(&self.backend, &members).await?;
        if name != self.collation.load().name() {
            let coll = Collation::new(&name).unwrap_or_else(|e| {
                tracing::warn!("{e}; multi-shard queries that order text will be refused");
                Collation::missing(&name)
            });
            self.collation.store(Arc::new(coll));
        }
        Ok(())
    }

    /// The server's ParameterStatus values, asked of the first reachable shard once.
    pub async fn server_params(&self) -> ServerParams {
        if let Some(p) = self.lock_params().clone() {
            return p;
        }
        for &id in self.ring.load().members() {
            if let Ok(conn) = self.backend.checkout(id).await {
                let params = Arc::new(conn.parameters.clone());
                *self.lock_params() = Some(params.clone());
                return params;
            }
        }
        // Every shard is down: report what a UTF-8 PostgreSQL 15 would, so clients can start
        // and see the shards' errors on their first statement.
        Arc::new(
            [
                ("server_version", "15.0"),
                ("server_encoding", "UTF8"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO, MDY"),
                ("integer_datetimes", "on"),
                ("standard_conforming_strings", "on"),
                ("TimeZone", "UTC"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }

    fn lock_params(&self) -> std::sync::MutexGuard<'_, Option<ServerParams>> {
        self.server_params
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
