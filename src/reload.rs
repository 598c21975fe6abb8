//! RELOAD and SIGHUP: re-reads shards.toml and applies what can change without moving rows.
//! A change to the shard set, the weights or the vnodes would move keys between shards; this
//! version refuses it whole (nothing changes) rather than route keys to shards without their rows.

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
pub async fn reload(ctx: &Context) -> Result<Outcome, Error> {
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
pub async fn apply(ctx: &Context, new: Config) -> Result<Outcome, Error> {
    let old = ctx.config.load_full();
    refuse_moves(&old, &new)?;
    crate::check_auth(&new)?;
    // Every url is checked before anything changes, so a bad one cannot leave a half-applied
    // reload behind.
    // Shards are matched by name: after a rebalance their ids no longer follow the config's order.
    let mut ids = Vec::with_capacity(new.shards.len());
    for s in &new.shards {
        crate::backend::ShardTarget::from_url(&s.name, &s.url, std::time::Duration::ZERO)?;
        let id = ctx.backend.find(&s.name).ok_or_else(|| {
            Error::config(format!(
                "shard {:?} is not running in this proxy; adding shards needs a rebalance",
                s.name
            ))
        })?;
        ids.push(id);
    }
    let mut out = Outcome::default();
    let mut note = |k: &str, v: String| out.changes.push((k.to_owned(), v));
    let (p, q) = (&old.proxy, &new.proxy);
    let pools_rebuilt =
        p.connect_timeout_ms != q.connect_timeout_ms || p.pool_timeout_ms != q.pool_timeout_ms;
    for (b, &id) in new.shards.iter().zip(&ids) {
        let url_changed = old
            .shards
            .iter()
            .any(|a| a.name == b.name && a.url != b.url);
        if url_changed || pools_rebuilt {
            ctx.backend.replace_pool(id, &b.url, q)?;
            if url_changed {
                note(
                    &format!("shards.{}.url", b.name),
                    format!("applied: new connections go to {}", b.redacted_url()),
                );
            }
        }
    }
    if pools_rebuilt {
        note(
            "proxy.connect_timeout_ms / pool_timeout_ms",
            "applied: every pool was rebuilt".into(),
        );
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
        ("auth", old.auth != new.auth),
        ("rate_limits", old.rate_limits != new.rate_limits),
    ] {
        if changed {
            note(key, "applied".into());
        }
    }
    for (key, changed) in [
        ("proxy.listen", p.listen != q.listen),
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
    live.metrics = old.metrics.clone();
    live.stats = old.stats.clone();
    ctx.config.store(Arc::new(live));
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
    if out.changes.is_empty() {
        out.changes.push(("-".into(), "no change".into()));
    }
    for (k, v) in &out.changes {
        tracing::info!("reload: {k}: {v}");
    }
    Ok(out)
}

/// Changes that would move keys between shards, or change how rows already placed are found.
fn refuse_moves(old: &Config, new: &Config) -> Result<(), Error> {
    let placement = |c: &Config| -> Vec<(String, u32)> {
        c.shards
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect()
    };
    let what = if placement(old) != placement(new) {
        Some("the shards or their weights changed")
    } else if old.proxy.vnodes != new.proxy.vnodes {
        Some("vnodes changed")
    } else if old.tables.iter().any(|t| !new.tables.contains(t)) {
        Some("a table was removed or its shard key or type changed")
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::unsupported(
            format!("{what}: that moves rows between shards, and this version of shardgate cannot rebalance online; nothing was changed"),
            "restore the previous placement in shards.toml, or move the rows and restart the proxy with the new file",
        )),
        None => Ok(()),
    }
}
