//! The console's views of the configuration: SHOW CONFIG (without secrets), SHOW RING, and
//! SHOW ROUTE under the live ring and catalog.

use super::table::{float, int, text, Kind, Table};
use crate::catalog::TableKind;
use crate::context::Context;

fn pct(x: f64) -> Option<String> {
    float(x * 100.0, 1)
}

pub fn config(ctx: &Context) -> Table {
    let mut t = Table::new(&[("key", Kind::Text), ("value", Kind::Text)]);
    let c = ctx.config.load();
    let p = &c.proxy;
    let mut kv = |k: String, v: String| t.row(vec![Some(k), Some(v)]);
    kv("proxy.listen".into(), p.listen.clone());
    kv("proxy.pool_size".into(), p.pool_size.to_string());
    kv(
        "proxy.max_client_connections".into(),
        p.max_client_connections.to_string(),
    );
    if let Some(db) = &p.database {
        kv("proxy.database".into(), db.clone());
    }
    kv("proxy.vnodes".into(), p.vnodes.to_string());
    kv(
        "proxy.connect_timeout_ms".into(),
        p.connect_timeout_ms.to_string(),
    );
    kv(
        "proxy.pool_timeout_ms".into(),
        p.pool_timeout_ms.to_string(),
    );
    kv(
        "proxy.gather_memory_mb".into(),
        p.gather_memory_mb.to_string(),
    );
    kv(
        "proxy.recovery_interval_ms".into(),
        p.recovery_interval_ms.to_string(),
    );
    kv(
        "proxy.rebalance_step_rows".into(),
        p.rebalance_step_rows.to_string(),
    );
    match &c.auth {
        None => kv("auth.method".into(), "none (every client trusted)".into()),
        Some(a) => {
            kv(
                "auth.method".into(),
                format!("{:?}", a.method).to_lowercase(),
            );
            let users: Vec<&str> = a.users.iter().map(|u| u.name.as_str()).collect();
            kv("auth.users".into(), users.join(", "));
            kv("auth.admin_users".into(), a.admin_users.join(", "));
        }
    }
    for s in &c.shards {
        kv(format!("shards.{}.url", s.name), s.redacted_url());
        kv(format!("shards.{}.weight", s.name), s.weight.to_string());
    }
    let catalog = ctx.catalog.load();
    for rule in catalog.tables() {
        let what = match &rule.kind {
            TableKind::Sharded { key, key_type, .. } => match key_type {
                Some(ty) => format!("sharded by {key} ({ty:?})").to_lowercase(),
                None => format!("sharded by {key} (type not known yet)"),
            },
            TableKind::Reference => "reference (a copy on every shard)".into(),
        };
        kv(format!("tables.{}", rule.name), what);
    }
    if let Some(m) = &c.metrics {
        kv("metrics.listen".into(), m.listen.clone());
    }
    kv("stats.skew_factor".into(), c.stats.skew_factor.to_string());
    kv(
        "stats.half_life_secs".into(),
        c.stats.half_life_secs.to_string(),
    );
    kv(
        "stats.skew_min_statements".into(),
        c.stats.skew_min_statements.to_string(),
    );
    for (i, r) in c.rate_limits.iter().enumerate() {
        kv(
            format!("rate_limits.{i}"),
            format!("per {}: rate {}/s, burst {}", r.per, r.rate, r.burst),
        );
    }
    t
}

pub fn ring(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("shard", Kind::Text),
        ("weight", Kind::Int),
        ("points", Kind::Int),
        ("keyspace_share", Kind::Float),
        ("weight_share", Kind::Float),
    ]);
    let ring = ctx.ring.load();
    let owned = ring.ownership();
    let total: u64 = ring.weights().iter().map(|&w| u64::from(w)).sum();
    // Every backend shard: one added but not yet placed, or one drained, shows weight 0.
    for id in ctx.backend.ids() {
        let w = ring.weight(id);
        t.row(vec![
            text(ctx.backend.name(id)),
            int(w),
            int(u64::from(w) * u64::from(ring.vnodes())),
            pct(owned.get(usize::from(id.0)).copied().unwrap_or(0.0)),
            pct(f64::from(w) / total.max(1) as f64),
        ]);
    }
    t
}

pub fn route(ctx: &Context, sql: &str) -> Table {
    let mut t = Table::new(&[
        ("statement", Kind::Text),
        ("route", Kind::Text),
        ("why", Kind::Text),
        ("merge", Kind::Text),
        ("shard_sql", Kind::Text),
    ]);
    let catalog = ctx.catalog.load();
    let ring = ctx.ring.load();
    for e in crate::explain::explain(sql, &catalog, &ring) {
        let (why, merge) = match &e.refused {
            Some(r) => (
                format!(
                    "{} (SQLSTATE {}){}",
                    r.message,
                    r.sqlstate,
                    r.hint
                        .as_ref()
                        .map(|h| format!("; hint: {h}"))
                        .unwrap_or_default()
                ),
                None,
            ),
            None => (e.why.clone(), e.merge.clone()),
        };
        let shard_sql = match (&e.split, &merge) {
            (Some(parts), _) => Some(
                parts
                    .iter()
                    .map(|(s, q)| format!("{s}: {q}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            (None, Some((_, sql))) => Some(sql.clone()),
            _ => None,
        };
        t.row(vec![
            text(e.statement),
            text(e.route),
            text(why),
            merge.map(|(m, _)| m),
            shard_sql,
        ]);
    }
    t
}
