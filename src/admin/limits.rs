//! SHOW LIMITS: each rate-limit rule and the state of its buckets.

use super::table::{float, int, text, Kind, Table};
use crate::context::Context;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// One row per rule (key `*`: its default limit and every refusal it made), then one per
/// bucket: its limit, the tokens in it now, and the statements it let through and refused.
pub fn limits(ctx: &Context) -> Table {
    let mut t = Table::new(&[
        ("per", Kind::Text),
        ("key", Kind::Text),
        ("rate", Kind::Float),
        ("burst", Kind::Int),
        ("tokens", Kind::Float),
        ("allowed", Kind::Int),
        ("refused", Kind::Int),
        ("sessions", Kind::Int),
        ("idle_s", Kind::Float),
    ]);
    let limiter = ctx.limits.load();
    let now = limiter.now();
    for rule in &limiter.rules {
        t.row(vec![
            text(rule.per.as_str()),
            text("*"),
            float(rule.rate, 3),
            int(rule.burst),
            None,
            None,
            int(rule.refused.load(Relaxed)),
            None,
            None,
        ]);
        for (key, b) in rule.buckets() {
            // One reference is the rule's own; table buckets are also held per session.
            let sessions = Arc::strong_count(&b).saturating_sub(2) as u64;
            t.row(vec![
                text(rule.per.as_str()),
                text(key),
                float(b.rate, 3),
                int(b.burst),
                float(b.tokens(now), 2),
                int(b.allowed()),
                int(b.refused()),
                int(sessions),
                float(now.saturating_sub(b.last_used()) as f64 / 1e9, 3),
            ]);
        }
    }
    t
}
