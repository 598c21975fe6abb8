//! RELOAD and SIGHUP: re-reads shards.toml and applies it. Settings that move no rows apply at
//! once; a change to the shard set, the weights or the vnodes starts an online rebalance
//! (rebalance/), and the shards keep their running placement until its switch.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::context::Context;
use crate::error::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a reload did: one line per changed setting, saying whether it took effect.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: Vec<(String, String)>,
}

/// Re-reads the config file the proxy was started with.
pub async fn reload(ctx: &Arc<Context>) -> Result<Outcome, Error> {
    let Some(path) = ctx.config_path.get() else {
        return Err(Error::unsupported(
            "this proxy was not started from a config file, so there is nothing to reload",
            "start shardgate with --config FILE",
        ));
    };
    let config = Config::load(path)?;
    apply(ctx, config).await
}

/// Applies a validated config to the running proxy. Either everything that can apply does, or
/// (for changes that would move rows) nothing does.
pub async fn apply(ctx: &Arc<Context>, new: Config) -> Result<Outcome, Error> {
    // One at a time (the console's RELOAD and SIGHUP may meet): two reloads building on the
    // same old state would each make a "next" rate limiter, and sessions could keep the loser's.
    let _one = ctx.reload_lock.lock().await;
    let old = ctx.config.load_full();
    refuse_moves(&old, &new)?;
    let moves = placement_changed(&old, &new);
    if moves && ctx.rebalance.status().running() {
        return Err(Error::unsupported(
            "a rebalance is running; nothing was changed",
            "wait until SHOW REBALANCE says done, then RELOAD again",
        ));
    }
    // Built before anything changes: a malformed verifier leaves the running config in place.
    let users = ctx.users.load().rebuild(new.auth.as_ref())?;
    // The certificate files are read again even when [tls] is unchanged: renewing them and
    // reloading is how a certificate is rotated.
    let acceptor = crate::tls::acceptor(new.tls.as_ref())?;
    // Every url (and the TLS each is reached with) is checked before anything changes, so a bad
    // one cannot leave a half-applied reload behind.
    for s in &new.shards {
        let tls = new.tls.as_ref();
        crate::backend::ShardTarget::from_url(&s.name, &s.url, tls, std::time::Duration::ZERO)?;
    }
    let mut out = Outcome::default();
    let mut note = |k: &str, v: String| out.changes.push((k.to_owned(), v));
    let (p, q) = (&old.proxy, &new.proxy);
    let shard_tls = |c: &Config| c.tls.as_ref().map(|t| (t.shards, t.shard_ca.clone()));
    let shard_tls_changed =
        shard_tls(&old).unwrap_or_default() != shard_tls(&new).unwrap_or_default();
    let pools_rebuilt = p.connect_timeout_ms != q.connect_timeout_ms
        || p.pool_timeout_ms != q.pool_timeout_ms
        || shard_tls_changed;
    ctx.backend.set_tls(new.tls.clone());
    // Shards are matched by name: ids keep their first order while rebalances add shards.
    for b in &new.shards {
        let (Some(a), Some(id)) = (
            old.shards.iter().find(|a| a.name == b.name),
            ctx.backend.find(&b.name),
        ) else {
            continue;
        };
        if a.url != b.url || pools_rebuilt {
            ctx.backend.replace_pool(id, &b.url, q)?;
            if a.url != b.url {
                note(
                    &format!("shards.{}.url", b.name),
                    format!("applied: new connections go to {}", b.redacted_url()),
                );
            }
        }
    }
    if pools_rebuilt {
        let what = if shard_tls_changed {
            "tls.shards / shard_ca"
        } else {
            "proxy.connect_timeout_ms / pool_timeout_ms"
        };
        note(what, "applied: every pool was rebuilt".into());
    } else if p.pool_size != q.pool_size {
        ctx.backend.resize_pools(q.pool_size);
    }
    if p.pool_size != q.pool_size {
        note(
            "proxy.pool_size",
            format!("applied: {} → {}", p.pool_size, q.pool_size),
        );
    }
    for (key, changed) in [
        (
            "proxy.max_client_connections",
            p.max_client_connections != q.max_client_connections,
        ),
        ("proxy.database", p.database != q.database),
        (
            "proxy.gather_memory_mb",
            p.gather_memory_mb != q.gather_memory_mb,
        ),
        (
            "proxy.recovery_interval_ms",
            p.recovery_interval_ms != q.recovery_interval_ms,
        ),
        (
            "proxy.rebalance_step_rows",
            p.rebalance_step_rows != q.rebalance_step_rows,
        ),
        ("auth", old.auth != new.auth),
        ("tls", old.tls != new.tls),
        ("rate_limits", old.rate_limits != new.rate_limits),
        (
            "proxy.max_user_connections",
            p.max_user_connections != q.max_user_connections,
        ),
        (
            "proxy.client_idle_timeout_ms",
            p.client_idle_timeout_ms != q.client_idle_timeout_ms,
        ),
        (
            "proxy.idle_transaction_timeout_ms",
            p.idle_transaction_timeout_ms != q.idle_transaction_timeout_ms,
        ),
        (
            "proxy.statement_timeout_ms",
            p.statement_timeout_ms != q.statement_timeout_ms,
        ),
        ("proxy.auto_prepare", p.auto_prepare != q.auto_prepare),
    ] {
        if changed {
            note(key, "applied".into());
        }
    }
    for (key, changed) in [
        ("proxy.listen", p.listen != q.listen),
        ("proxy.workers", p.workers != q.workers),
        ("metrics", old.metrics != new.metrics),
        ("stats", old.stats != new.stats),
    ] {
        if changed {
            note(key, "needs a restart: the running value is kept".into());
        }
    }
    let added: Vec<String> = new
        .tables
        .iter()
        .filter(|t| !old.tables.contains(t))
        .map(|t| t.name.clone())
        .collect();
    // Settings that need a restart keep their running values in the live config too, so that
    // SHOW CONFIG says what is in force.
    let mut live = new.clone();
    live.proxy.listen = p.listen.clone();
    live.proxy.workers = p.workers;
    live.metrics = old.metrics.clone();
    live.stats = old.stats.clone();
    if moves {
        // The running placement stays until the rebalance switches; urls changed above apply.
        live.proxy.vnodes = p.vnodes;
        live.shards = old
            .shards
            .iter()
            .cloned()
            .map(|mut a| {
                if let Some(b) = new.shards.iter().find(|b| b.name == a.name) {
                    a.url = b.url.clone();
                }
                a
            })
            .collect();
    }
    if old.auth != new.auth {
        ctx.users.store(Arc::new(users));
    }
    // Before the config, so a client never finds `require` without the certificate to offer.
    ctx.tls_acceptor.store(acceptor.map(Arc::new));
    ctx.config.store(Arc::new(live));
    if old.rate_limits != new.rate_limits {
        // Sessions see the new generation at their next statement; buckets whose limit is
        // unchanged keep their tokens.
        let next = ctx.limits.load().reload(&new.rate_limits);
        ctx.limits.store(Arc::new(next));
    }
    if !added.is_empty() {
        if let Err(e) = ctx.refresh_catalog().await {
            // The shards cannot be asked now: the new tables are known, with the key types
            // already read for the others; theirs are read when a statement needs them.
            tracing::warn!("reload: could not read the new tables' key types yet: {e}");
            let mut next = Catalog::from_config(&new);
            for rule in ctx.catalog.load().tables() {
                if let crate::catalog::TableKind::Sharded {
                    key_type,
                    key_position,
                    ..
                } = &rule.kind
                {
                    next.set_key_info(&rule.configured_name(), *key_type, *key_position);
                }
            }
            ctx.catalog.store(Arc::new(next));
            ctx.catalog_version.fetch_add(1, Ordering::Release);
        }
        for t in added {
            note(&format!("tables.{t}"), "applied: added".into());
        }
    }
    if moves {
        let started = crate::rebalance::start(ctx, new)?;
        out.changes.push((
            "shards".into(),
            format!("rebalance {started}; SHOW REBALANCE follows it"),
        ));
    }
    if out.changes.is_empty() {
        out.changes.push(("-".into(), "no change".into()));
    }
    for (k, v) in &out.changes {
        tracing::info!("reload: {k}: {v}");
    }
    Ok(out)
}

/// True when the shard set, a weight or vnodes changed: keys change shard.
fn placement_changed(old: &Config, new: &Config) -> bool {
    crate::rebalance::plan::placement_key(&old.shards, old.proxy.vnodes)
        != crate::rebalance::plan::placement_key(&new.shards, new.proxy.vnodes)
}

/// Changes that would change how rows already placed are found, which no rebalance fixes.
fn refuse_moves(old: &Config, new: &Config) -> Result<(), Error> {
    if old.tables.iter().any(|t| !new.tables.contains(t)) {
        return Err(Error::unsupported(
            "a table was removed or its shard key or type changed: rows already placed would no longer be found; nothing was changed",
            "restore the table's entry in shards.toml; to re-shard a table by another key, copy it into a new table",
        ));
    }
    Ok(())
}
