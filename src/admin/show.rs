//! The rows of each console SHOW command, read from the running proxy's state.

use super::table::{boolean, float, int, text, Kind, Table};
use crate::context::Context;
use crate::ring::ShardId;
use crate::stats::{histogram::Snapshot, RouteKind};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, UNIX_EPOCH};

fn ms(d: Option<Duration>) -> Option<String> {
    d.and_then(|d| float(d.as_secs_f64() * 1000.0, 3))
}

fn pct(x: f64) -> Option<String> {
    float(x * 100.0, 1)
}

/// "up", or "down" while the shard is marked down.
fn state(ctx: &Context, id: ShardId) -> &'static str {
    if ctx.backend.shard(id).health.down().is_some() {
        "down"
    } else {
        "up"
    }
}

pub fn shards(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("name", Kind::Text),
        ("address", Kind::Text),
        ("weight", Kind::Int),
        ("state", Kind::Text),
        ("queries", Kind::Int),
        ("rows", Kind::Int),
        ("errors", Kind::Int),
        ("p50_ms", Kind::Float),
        ("p95_ms", Kind::Float),
        ("p99_ms", Kind::Float),
        ("share", Kind::Float),
        ("weight_share", Kind::Float),
        ("stored_rows", Kind::Int),
        ("rows_share", Kind::Float),
        ("skewed", Kind::Bool),
        ("why", Kind::Text),
    ]);
    let config = ctx.config.load();
    let ring = ctx.ring.load();
    let skew = ctx.stats.skew();
    // Every backend shard, with its weight in the current ring: 0 for one that has left it.
    for id in ctx.backend.ids() {
        let i = usize::from(id.0);
        let name = ctx.backend.name(id);
        let address = match config.shards.iter().find(|s| s.name == name) {
            Some(s) => s.host_port_db(),
            // A shard the config no longer lists: where its pool connects.
            None => {
                let t = ctx.backend.shard(id).target();
                format!("{}:{}/{}", t.host, t.port, t.database)
            }
        };
        let st = ctx.stats.shard(id);
        // The last minute: what an operator looking now wants (Prometheus has the totals).
        let lat = ctx.stats.recent_latency(id);
        let state = state(ctx, id);
        let sk = skew.get(i).cloned().unwrap_or_default();
        let stored = st.stored_rows.load(Relaxed);
        let why = sk.skewed.as_ref().map(|why| {
            let hot = ctx.stats.hot_keys_on(&ring, id, 3);
            if hot.is_empty() {
                why.clone()
            } else {
                format!("{why}; hot keys: {}", hot.join(", "))
            }
        });
        let errors = st.errors.load(Relaxed);
        t.row(vec![
            text(name),
            text(address),
            int(ring.weight(id)),
            text(state),
            int(st.commands.load(Relaxed) + errors),
            int(st.rows.load(Relaxed)),
            int(errors),
            ms(lat.quantile(0.5)),
            ms(lat.quantile(0.95)),
            ms(lat.quantile(0.99)),
            pct(sk.traffic_share),
            pct(sk.weight_share),
            (stored != u64::MAX).then(|| stored.to_string()),
            sk.rows_share.and_then(pct),
            boolean(sk.skewed.is_some()),
            why,
        ]);
    }
    t
}

pub fn hotspots(ctx: &Context, n: usize) -> Table {
    let mut t = Table::new(&[
        ("table", Kind::Text),
        ("key", Kind::Text),
        ("shard", Kind::Text),
        ("hits", Kind::Float),
        ("share", Kind::Float),
        ("error", Kind::Float),
    ]);
    let ring = ctx.ring.load();
    for h in ctx.stats.hot_spots(&ring, n) {
        t.row(vec![
            text(&*h.table),
            text(h.key.to_string()),
            text(ring.shard_name(h.shard)),
            float(h.hits, 1),
            pct(h.share),
            float(h.error, 1),
        ]);
    }
    t
}

pub fn stats(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("scope", Kind::Text),
        ("statements", Kind::Int),
        ("keys", Kind::Int),
        ("requests", Kind::Int),
        ("p50_ms", Kind::Float),
        ("p95_ms", Kind::Float),
        ("p99_ms", Kind::Float),
    ]);
    let stats = &ctx.stats;
    let mut total = Snapshot::default();
    let mut statements = 0;
    let mut rows = Vec::new();
    for kind in RouteKind::ALL {
        let lat = stats.route_latency(kind);
        let n = stats.route_statements(kind);
        total.add(&lat);
        statements += n;
        rows.push(vec![
            text(format!("route {}", kind.name())),
            int(n),
            None,
            int(lat.count()),
            ms(lat.quantile(0.5)),
            ms(lat.quantile(0.95)),
            ms(lat.quantile(0.99)),
        ]);
    }
    t.row(vec![
        text("total"),
        int(statements),
        None,
        int(total.count()),
        ms(total.quantile(0.5)),
        ms(total.quantile(0.95)),
        ms(total.quantile(0.99)),
    ]);
    for r in rows {
        t.row(r);
    }
    for (table, n, keys) in stats.table_counts() {
        t.row(vec![
            text(format!("table {table}")),
            int(n),
            int(keys),
            None,
            None,
            None,
            None,
        ]);
    }
    t
}

pub fn pools(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("shard", Kind::Text),
        ("state", Kind::Text),
        ("max", Kind::Int),
        ("open", Kind::Int),
        ("in_use", Kind::Int),
        ("idle", Kind::Int),
        ("waiting", Kind::Int),
    ]);
    for id in ctx.backend.ids() {
        let p = ctx.backend.pool_status(id);
        let state = state(ctx, id);
        t.row(vec![
            text(ctx.backend.name(id)),
            text(state),
            int(p.max as u64),
            int(p.open as u64),
            int(p.open.saturating_sub(p.idle) as u64),
            int(p.idle as u64),
            int(p.waiting as u64),
        ]);
    }
    t
}

pub fn clients(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("id", Kind::Int),
        ("user", Kind::Text),
        ("database", Kind::Text),
        ("address", Kind::Text),
        ("connected_at", Kind::Text),
        ("connected_secs", Kind::Float),
        ("state", Kind::Text),
        ("statements", Kind::Int),
    ]);
    for c in ctx.stats.clients.list() {
        let since = c.since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let age = c.since.elapsed().unwrap_or_default();
        t.row(vec![
            int(c.id),
            text(&c.user),
            text(&c.database),
            text(c.addr.to_string()),
            text(utc(since.as_secs())),
            float(age.as_secs_f64(), 1),
            text(c.state().name()),
            int(c.statements.load(Relaxed)),
        ]);
    }
    t
}

pub fn memory(ctx: &Context) -> Table {
    let mut t = Table::new(&[("what", Kind::Text), ("bytes", Kind::Int)]);
    t.row(vec![
        text("hot-key sketches"),
        int(ctx.stats.sketch_memory() as u64),
    ]);
    t
}

/// Seconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss+00` (the proleptic Gregorian
/// calendar, from the day count by the usual era arithmetic).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}+00")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_timestamps() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00+00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00+00");
        assert_eq!(super::utc(1_795_646_505), "2026-11-25 22:41:45+00");
    }
}
