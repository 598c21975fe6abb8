//! The Prometheus text exposition of the proxy's counters, histograms and hot keys (served at
//! `/metrics` by `http.rs`).

use crate::context::Context;
use crate::ring::ShardId;
use crate::stats::histogram::Snapshot;
use crate::stats::RouteKind;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// Hot keys exported per scrape: enough to see the problem, few enough to keep series bounded.
const HOT_KEYS: usize = 10;
/// A label value with `\`, `"` and newlines escaped as the exposition format requires.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.0, " {value}");
        } else if value.is_nan() {
            self.0.push_str(" NaN\n");
        } else {
            self.0
                .push_str(if value > 0.0 { " +Inf\n" } else { " -Inf\n" });
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Snapshot) {
        for (le, count) in h.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                format!("{le}")
            };
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
    }
}

/// The whole exposition.
pub fn render(ctx: &Context) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    let stats = &ctx.stats;
    // Every backend shard by id, including one that has left the ring (its series then show it
    // drained rather than vanish).
    let names: Vec<&str> = ctx.backend.ids().map(|id| ctx.backend.name(id)).collect();
    let skew = stats.skew();

    o.family(
        "shardgate_uptime_seconds",
        "gauge",
        "Seconds since the proxy started.",
    );
    o.sample(
        "shardgate_uptime_seconds",
        &[],
        stats.uptime().as_secs_f64(),
    );
    o.family("shardgate_clients", "gauge", "Connected clients.");
    o.sample("shardgate_clients", &[], stats.clients.len() as f64);
    rebalance(&mut o, ctx);
    limits(&mut o, ctx);

    let per_shard = |o: &mut Out, name: &str, kind: &str, help: &str, f: &dyn Fn(usize) -> f64| {
        o.family(name, kind, help);
        for (i, s) in names.iter().enumerate() {
            o.sample(name, &[("shard", s)], f(i));
        }
    };
    let shard = |i: usize| stats.shard(ShardId(i as u16));
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
    per_shard(
        &mut o,
        "shardgate_shard_up",
        "gauge",
        "1 while the shard answers, 0 while it is marked down.",
        &|i| {
            f64::from(u8::from(
                ctx.backend.shard(ShardId(i as u16)).health.down().is_none(),
            ))
        },
    );
    per_shard(
        &mut o,
        "shardgate_shard_queries_total",
        "counter",
        "Statements the shard completed or failed.",
        &|i| load(&shard(i).commands) + load(&shard(i).errors),
    );
    per_shard(
        &mut o,
        "shardgate_shard_requests_total",
        "counter",
        "Requests the shard answered (one per ReadyForQuery).",
        &|i| load(&shard(i).requests),
    );
    per_shard(
        &mut o,
        "shardgate_shard_rows_total",
        "counter",
        "Rows the shard returned or changed, as its command tags count them.",
        &|i| load(&shard(i).rows),
    );
    per_shard(
        &mut o,
        "shardgate_shard_errors_total",
        "counter",
        "Errors the shard reported.",
        &|i| load(&shard(i).errors),
    );
    per_shard(
        &mut o,
        "shardgate_shard_sent_bytes_total",
        "counter",
        "Bytes the proxy sent to the shard.",
        &|i| load(&shard(i).sent_bytes),
    );
    per_shard(
        &mut o,
        "shardgate_shard_received_bytes_total",
        "counter",
        "Bytes the proxy received from the shard.",
        &|i| load(&shard(i).received_bytes),
    );
    per_shard(
        &mut o,
        "shardgate_shard_keyed_statements_total",
        "counter",
        "Statements routed to the shard by a shard key.",
        &|i| load(&shard(i).keyed),
    );
    per_shard(
        &mut o,
        "shardgate_shard_traffic_share",
        "gauge",
        "The shard's share of recent keyed statements (0-1, decayed by the half-life).",
        &|i| skew.get(i).map_or(0.0, |s| s.traffic_share),
    );
    per_shard(
        &mut o,
        "shardgate_shard_weight_share",
        "gauge",
        "The shard's share of the ring's weight (0-1).",
        &|i| skew.get(i).map_or(0.0, |s| s.weight_share),
    );
    per_shard(
        &mut o,
        "shardgate_shard_skewed",
        "gauge",
        "1 when the shard's traffic or row share exceeds its weight share by [stats] skew_factor.",
        &|i| f64::from(u8::from(skew.get(i).is_some_and(|s| s.skewed.is_some()))),
    );
    o.family(
        "shardgate_shard_stored_rows",
        "gauge",
        "Live rows of the sharded tables on the shard (pg_stat_user_tables).",
    );
    for (i, s) in names.iter().enumerate() {
        let n = shard(i).stored_rows.load(Relaxed);
        if n != u64::MAX {
            o.sample("shardgate_shard_stored_rows", &[("shard", s)], n as f64);
        }
    }
    o.family(
        "shardgate_shard_request_duration_seconds",
        "histogram",
        "Time from a request's first byte sent to the shard to its ReadyForQuery.",
    );
    for (i, s) in names.iter().enumerate() {
        let h = shard(i).latency.snapshot();
        o.histogram(
            "shardgate_shard_request_duration_seconds",
            &[("shard", s)],
            &h,
        );
    }
    let pools: Vec<_> = (0..names.len())
        .map(|i| ctx.backend.pool_status(ShardId(i as u16)))
        .collect();
    o.family(
        "shardgate_pool_connections",
        "gauge",
        "Server connections per shard pool, by state.",
    );
    for (s, p) in names.iter().zip(&pools) {
        let in_use = p.open.saturating_sub(p.idle) as f64;
        o.sample(
            "shardgate_pool_connections",
            &[("shard", s), ("state", "idle")],
            p.idle as f64,
        );
        o.sample(
            "shardgate_pool_connections",
            &[("shard", s), ("state", "in_use")],
            in_use,
        );
    }
    o.family(
        "shardgate_pool_waiting",
        "gauge",
        "Clients waiting for a connection of the shard's pool.",
    );
    for (s, p) in names.iter().zip(&pools) {
        o.sample("shardgate_pool_waiting", &[("shard", s)], p.waiting as f64);
    }

    o.family(
        "shardgate_statements_total",
        "counter",
        "Client statements by route: any (no sharded table), single, multi or all shards.",
    );
    for kind in RouteKind::ALL {
        o.sample(
            "shardgate_statements_total",
            &[("route", kind.name())],
            stats.route_statements(kind) as f64,
        );
    }
    o.family(
        "shardgate_request_duration_seconds",
        "histogram",
        "Client requests from their first message to ReadyForQuery, by their widest route.",
    );
    for kind in RouteKind::ALL {
        o.histogram(
            "shardgate_request_duration_seconds",
            &[("route", kind.name())],
            &stats.route_latency(kind),
        );
    }
    let tables = stats.table_counts();
    o.family(
        "shardgate_table_statements_total",
        "counter",
        "Statements touching the table.",
    );
    for (t, n, _) in &tables {
        o.sample(
            "shardgate_table_statements_total",
            &[("table", t)],
            *n as f64,
        );
    }
    o.family(
        "shardgate_table_keys_total",
        "counter",
        "Shard keys of the table that statements were routed by.",
    );
    for (t, _, k) in &tables {
        o.sample("shardgate_table_keys_total", &[("table", t)], *k as f64);
    }
    let ring = ctx.ring.load();
    let mut hot = stats.hot_spots(&ring, HOT_KEYS);
    // Text keys are kept to 64 bytes: two long keys alike up to there would be one series.
    let mut seen = std::collections::HashSet::new();
    hot.retain(|h| seen.insert((h.table.clone(), h.key.to_string())));
    type Pick = fn(&crate::stats::HotSpot) -> f64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "shardgate_hot_key_hits",
            "Recent hits of the hottest keys (decayed by the half-life), at most 10 keys.",
            |h| h.hits,
        ),
        (
            "shardgate_hot_key_share",
            "The hottest keys' share of their table's recent keyed traffic (0-1).",
            |h| h.share,
        ),
    ];
    for (name, help, pick) in families {
        o.family(name, "gauge", help);
        for h in &hot {
            let key = h.key.to_string();
            let labels = [
                ("table", &*h.table),
                ("key", key.as_str()),
                ("shard", ring.shard_name(h.shard)),
            ];
            o.sample(name, &labels, pick(h));
        }
    }
    o.family(
        "shardgate_hot_key_sketch_bytes",
        "gauge",
        "Memory held by the hot-key sketches.",
    );
    o.sample(
        "shardgate_hot_key_sketch_bytes",
        &[],
        stats.sketch_memory() as f64,
    );
    o.0
}

/// The rebalance's state (one series per state, 1 for the current one) and progress.
fn rebalance(o: &mut Out, ctx: &Context) {
    let s = ctx.rebalance.status();
    o.family(
        "shardgate_rebalance_state",
        "gauge",
        "1 for the state the last (or running) rebalance is in.",
    );
    for p in crate::rebalance::Phase::ALL {
        let on = if p == s.phase { 1.0 } else { 0.0 };
        o.sample("shardgate_rebalance_state", &[("state", p.name())], on);
    }
    o.family(
        "shardgate_rebalance_rows_moved_total",
        "counter",
        "Rows copied to their new shard by rebalances since start.",
    );
    o.sample(
        "shardgate_rebalance_rows_moved_total",
        &[],
        ctx.rebalance.moved_total.load(Relaxed) as f64,
    );
    o.family(
        "shardgate_rebalance_rows_to_move",
        "gauge",
        "Rows the running or last rebalance moves (estimated until its copy has read every table).",
    );
    o.sample(
        "shardgate_rebalance_rows_to_move",
        &[],
        s.rows_to_move.max(s.rows_moved) as f64,
    );
    o.family(
        "shardgate_rebalance_pause_seconds",
        "gauge",
        "Longest time writes of moving keys waited at the last rebalance's switch.",
    );
    o.sample(
        "shardgate_rebalance_pause_seconds",
        &[],
        s.pause.as_secs_f64(),
    );
    o.family(
        "shardgate_placement_version",
        "gauge",
        "Journal version of the placement this proxy routes by (0: none recorded).",
    );
    o.sample(
        "shardgate_placement_version",
        &[],
        ctx.backend.fence.version.load(Relaxed) as f64,
    );
}

/// Statements refused by each rate-limit rule, and the buckets each rule keeps.
fn limits(o: &mut Out, ctx: &Context) {
    let limiter = ctx.limits.load();
    o.family(
        "shardgate_rate_limited_total",
        "counter",
        "Statements refused (53400) by each [[rate_limits]] rule since start.",
    );
    for r in &limiter.rules {
        let refused = r.refused.load(Relaxed) as f64;
        o.sample(
            "shardgate_rate_limited_total",
            &[("per", r.per.as_str())],
            refused,
        );
    }
    o.family(
        "shardgate_rate_limit_buckets",
        "gauge",
        "Buckets each [[rate_limits]] rule holds now (idle full ones are forgotten).",
    );
    for r in &limiter.rules {
        let n = r.buckets().len() as f64;
        o.sample(
            "shardgate_rate_limit_buckets",
            &[("per", r.per.as_str())],
            n,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(escape("'naïve'"), "'naïve'");
    }
}
