//! Whether each shard answers. A shard is marked down when connecting to it fails; a background
//! probe (see `background.rs`) connects again every second until it answers. Meanwhile statements that need it fail
//! at once with 08006, instead of each waiting out a connect timeout (a host that drops packets
//! would otherwise hold every such client for `connect_timeout_ms`).

use super::Backend;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
pub struct Health {
    down: AtomicBool,
    /// Why and since when, while down.
    detail: Mutex<Option<(String, Instant)>>,
}

impl Health {
    /// The reason, while the shard is down.
    pub fn down(&self) -> Option<String> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        let detail = self.lock().clone();
        Some(match detail {
            Some((why, since)) => format!(
                "down for {:.1}s ({why}); shardgate tries it again every second",
                since.elapsed().as_secs_f64()
            ),
            None => "down".to_owned(),
        })
    }

    pub fn mark_down(&self, shard: &str, why: &str) {
        let mut detail = self.lock();
        if detail.is_none() {
            tracing::warn!("shard \"{shard}\" marked down: {why}");
            *detail = Some((why.to_owned(), Instant::now()));
        }
        self.down.store(true, Ordering::Release);
    }

    fn mark_up(&self) {
        *self.lock() = None;
        self.down.store(false, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, Instant)>> {
        self.detail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Connects to each shard marked down; marks up those that answer.
pub async fn probe(backend: &Backend) {
    for id in backend.ids() {
        let shard = backend.shard(id);
        if shard.health.down().is_none() {
            continue;
        }
        let answer = async {
            let mut conn = backend.connect_direct(id).await.ok()?;
            let reply = super::exchange(&mut conn, "SELECT 1").await.ok()?;
            Some(reply.error.is_none())
        };
        // A shard that accepts but never answers stays down, without stalling the others.
        let answered = tokio::time::timeout(PROBE_LIMIT, answer)
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
        if answered {
            tracing::info!("shard \"{}\" answers again", shard.name);
            shard.health.mark_up();
        }
    }
}
