//! shardgate: a sharding proxy for PostgreSQL.
//!
//! `main.rs` only parses the command line; everything else lives here so that tests can start
//! the proxy in-process.

pub mod admin;
pub mod auth;
pub mod backend;
mod background;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod context;
pub mod demo;
pub mod error;
pub mod explain;
pub mod gateway;
pub mod gather;
pub mod localpg;
pub mod protocol;
pub mod rebalance;
pub mod reload;
pub mod ring;
pub mod router;
pub mod server;
pub mod session;
pub mod stats;
pub mod tls;
pub mod top;
pub mod workers;

use config::Config;
use context::Context;
use error::Error;
use server::Server;
use std::sync::Arc;

/// Builds the proxy for a config and binds its listener; `Server::run` then serves clients.
pub async fn start(config: Config) -> Result<(Arc<Context>, Server), Error> {
    if config.auth.is_none() {
        tracing::warn!("no [auth] section: every client is trusted");
    }
    let users = check_auth(&config)?;
    check_tls(&config)?;
    // The shards' journal says where rows are; a rebalance a crash cut short is finished or
    // rolled back here, before any client is served.
    // Serving before an interrupted switch is settled could route by the wrong placement
    // while its prepared parts hold row locks: refuse to start instead.
    let placement = rebalance::journal::recover(&config).await.map_err(|e| {
        Error::config(format!(
            "an interrupted rebalance could not be settled ({e}); start again once every shard it involved is reachable"
        ))
    })?;
    let mut boot = config.clone();
    let mut version = 0;
    if let Some((shards, vnodes, v)) = placement {
        // Urls come from shards.toml where it names the shard (they may have changed since
        // the journal recorded them); a shard only the journal knows keeps the journal's.
        boot.shards = shards
            .into_iter()
            .map(|mut s| {
                if let Some(c) = config.shards.iter().find(|c| c.name == s.name) {
                    s.url = c.url.clone();
                }
                s
            })
            .collect();
        boot.proxy.vnodes = vnodes;
        version = v;
    }
    let moves = rebalance::plan::placement_key(&boot.shards, boot.proxy.vnodes)
        != rebalance::plan::placement_key(&config.shards, config.proxy.vnodes);
    if moves {
        tracing::warn!(
            "the shards hold rows placed for {}; serving that placement and rebalancing to shards.toml's",
            rebalance::plan::placement_key(&boot.shards, boot.proxy.vnodes)
        );
    }
    let ctx = Context::new(boot)?;
    ctx.users.store(Arc::new(users));
    ctx.backend
        .fence
        .version
        .store(version, std::sync::atomic::Ordering::Release);
    if let Err(e) = ctx.refresh_catalog().await {
        // Shards may come up later; key types are read again when a statement needs them.
        tracing::warn!("could not read the shards' catalog at startup: {e}");
    }
    let server = Server::bind(ctx.clone()).await?;
    if let Some(m) = &ctx.config.load().metrics {
        let listener = tokio::net::TcpListener::bind(&m.listen)
            .await
            .map_err(|e| Error::config(format!("[metrics] cannot listen on {}: {e}", m.listen)))?;
        if let Ok(addr) = listener.local_addr() {
            let _ = ctx.metrics_addr.set(addr);
            tracing::info!("Prometheus metrics at http://{addr}/metrics");
        }
        tokio::spawn(admin::http::serve(ctx.clone(), listener));
    }
    // In-doubt two-phase transactions a previous run left are resolved from now on.
    background::spawn(&ctx);
    if moves {
        rebalance::start(&ctx, config)?;
    }
    Ok((ctx, server))
}

/// Reads every file `[tls]` names and prepares each shard's TLS (its name for verify-full, a
/// url's sslmode), so that a bad certificate, key or CA stops `shardgate check` and start-up
/// rather than the first connection.
pub fn check_tls(config: &Config) -> Result<(), Error> {
    tls::acceptor(config.tls.as_ref())?;
    for s in &config.shards {
        let tls = config.tls.as_ref();
        backend::ShardTarget::from_url(&s.name, &s.url, tls, std::time::Duration::ZERO)?;
    }
    Ok(())
}

/// The users of `[auth]` with their passwords parsed: a malformed verifier is a config error
/// naming its user.
pub fn check_auth(config: &Config) -> Result<auth::Users, Error> {
    auth::Users::new(config.auth.as_ref())
}
