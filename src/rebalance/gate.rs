//! The sessions' side of a rebalance's switch: while the moving rows change shard, writes that
//! would land differently under the old and the new ring wait (they are queued, not failed),
//! and for the few milliseconds the commits take, every statement on a placed table waits.
//!
//! Idle (no rebalance), a statement pays one relaxed atomic load.

use crate::error::Error;
use crate::ring::Ring;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The rings of a switch in progress: writes routed differently by them wait.
pub struct Hold {
    pub old: Arc<Ring>,
    pub new: Arc<Ring>,
}

pub struct Gate {
    active: AtomicBool,
    /// Statements on placed tables hold it shared from routing to their ReadyForQuery; the
    /// switch takes it exclusively to wait for them and to keep new ones out while it commits.
    lock: Arc<RwLock<()>>,
    hold: watch::Sender<Option<Arc<Hold>>>,
    /// How long a statement waits at the gate before it is refused.
    pub wait: Duration,
}

/// A statement's pass through the gate; dropping it (at ReadyForQuery) lets a switch go on.
pub type Ticket = OwnedRwLockReadGuard<()>;

impl Default for Gate {
    fn default() -> Self {
        Gate {
            active: AtomicBool::new(false),
            lock: Arc::new(RwLock::new(())),
            hold: watch::channel(None).0,
            wait: Duration::from_secs(10),
        }
    }
}

impl Gate {
    /// True while a rebalance runs: statements on placed tables must pass the gate.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(super) fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::SeqCst);
    }

    /// Lets a statement through. `must_wait` says, given the switch's rings, whether the
    /// statement writes rows that are changing shard. Returns the ticket to keep until the
    /// statement's ReadyForQuery.
    pub async fn enter(&self, must_wait: impl Fn(&Hold) -> bool) -> Result<Ticket, Error> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut holds = self.hold.subscribe();
        loop {
            let ticket = tokio::time::timeout_at(deadline, self.lock.clone().read_owned())
                .await
                .map_err(|_| waited_too_long(self.wait))?;
            let hold = holds.borrow_and_update().clone();
            match hold {
                Some(h) if must_wait(&h) => {
                    drop(ticket);
                    tokio::time::timeout_at(deadline, holds.changed())
                        .await
                        .map_err(|_| waited_too_long(self.wait))?
                        .map_err(|_| waited_too_long(self.wait))?;
                }
                _ => return Ok(ticket),
            }
        }
    }

    /// True when a hold is on and `must_wait` says the statement is among the writes it holds
    /// (for a request that already has its ticket and so cannot wait).
    pub fn holding(&self, must_wait: impl Fn(&Hold) -> bool) -> bool {
        self.hold.borrow().as_ref().is_some_and(|h| must_wait(h))
    }

    /// Waits for the statements in flight and keeps new ones out until the guard drops.
    pub(super) async fn close(&self, within: Duration) -> Option<OwnedRwLockWriteGuard<()>> {
        tokio::time::timeout(within, self.lock.clone().write_owned())
            .await
            .ok()
    }

    /// Starts (Some) or ends (None) holding the writes that move.
    pub(super) fn hold(&self, hold: Option<Hold>) {
        self.hold.send_replace(hold.map(Arc::new));
    }
}

fn waited_too_long(wait: Duration) -> Error {
    Error::RebalanceWait {
        secs: wait.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ShardConfig;

    fn ring(n: usize) -> Arc<Ring> {
        let shards: Vec<ShardConfig> = (0..n)
            .map(|i| ShardConfig {
                name: format!("s{i}"),
                url: String::new(),
                weight: 1,
                points: None,
            })
            .collect();
        Arc::new(Ring::new(&shards, 16))
    }

    #[tokio::test]
    async fn a_held_write_waits_until_the_hold_ends_and_others_pass() {
        let gate = Arc::new(Gate::default());
        gate.hold(Some(Hold {
            old: ring(3),
            new: ring(4),
        }));
        // A statement that does not move passes at once.
        drop(gate.enter(|_| false).await.unwrap());
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter(|_| true).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a moving write waits while the hold lasts"
        );
        gate.hold(None);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn closing_waits_for_tickets_and_keeps_new_ones_out() {
        let gate = Arc::new(Gate::default());
        let ticket = gate.enter(|_| false).await.unwrap();
        assert!(gate.close(Duration::from_millis(50)).await.is_none());
        drop(ticket);
        let guard = gate.close(Duration::from_millis(50)).await.unwrap();
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter(|_| false).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "no statement starts during the commit"
        );
        drop(guard);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_write_held_too_long_gets_55p03() {
        let gate = Gate {
            wait: Duration::from_millis(30),
            ..Gate::default()
        };
        gate.hold(Some(Hold {
            old: ring(3),
            new: ring(4),
        }));
        let err = gate.enter(|_| true).await.unwrap_err();
        assert_eq!(err.sqlstate(), "55P03");
    }
}
