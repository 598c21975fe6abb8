//! Online movement of rows between shards after a ring change: RELOAD with new shards or
//! weights starts one; `SHOW REBALANCE` and /metrics report it.
//!
//! The phases (DESIGN.md § Rebalancing, README § Reloading):
//! 1. *preparing*: connect to every shard of both rings, create missing tables on new shards,
//!    write the target placement into the journal (`shardgate.placement` on every shard), add
//!    a change-capture trigger on the tables of the shards rows leave, create stage tables on
//!    the shards rows go to;
//! 2. *copying*: binary COPY of each table from each source, filtered by the new ring, into
//!    the stage tables (invisible to queries);
//! 3. *catching-up*: the keys the triggers logged are copied again, round after round;
//! 4. *switching*: writes that the two rings route differently wait at the proxy; after the
//!    transactions already writing on the sources end, the last changes are staged, each shard
//!    prepares its part (stage → table on the receivers, moved keys deleted on the sources),
//!    the journal's coordinator records the decision, the receivers commit, the ring switches,
//!    the sources commit, and the waiting writes go on under the new ring;
//! 5. *done*: triggers, log and stage tables are removed.

pub mod capture;
pub mod copy;
pub mod follow;
pub mod gate;
pub mod journal;
pub mod plan;
mod run;
pub mod schema;
mod steps;
mod switch;

use crate::config::Config;
use crate::context::Context;
use crate::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use gate::{Gate, Hold, Ticket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Preparing,
    Copying,
    CatchingUp,
    Switching,
    Done,
    Failed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Preparing => "preparing",
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching-up",
            Phase::Switching => "switching",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }

    pub const ALL: [Phase; 7] = [
        Phase::Idle,
        Phase::Preparing,
        Phase::Copying,
        Phase::CatchingUp,
        Phase::Switching,
        Phase::Done,
        Phase::Failed,
    ];
}

/// What SHOW REBALANCE shows of the last (or running) rebalance.
#[derive(Debug, Clone)]
pub struct Status {
    pub phase: Phase,
    pub from: String,
    pub to: String,
    pub tables: usize,
    /// Rows copied to their new shard (a row re-copied by the catch-up counts again).
    pub rows_moved: u64,
    /// Estimated before the copy from each table's size and the share of keys moving; exact
    /// once the copy has read every table.
    pub rows_to_move: u64,
    pub started: Option<Instant>,
    pub started_at: Option<SystemTime>,
    pub finished: Option<Instant>,
    /// Longest time writes of moving keys waited at the switch.
    pub pause: Duration,
    /// (step, of steps): large moves go through intermediate placements (run.rs).
    pub step: (u64, u64),
    pub detail: String,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            phase: Phase::Idle,
            from: String::new(),
            to: String::new(),
            tables: 0,
            rows_moved: 0,
            rows_to_move: 0,
            started: None,
            started_at: None,
            finished: None,
            pause: Duration::ZERO,
            step: (0, 0),
            detail: String::new(),
        }
    }
}

impl Status {
    pub fn elapsed(&self) -> Duration {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => f - s,
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        }
    }

    pub fn running(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Done | Phase::Failed)
    }
}

/// The proxy's rebalance state: the gate sessions pass, and the progress.
#[derive(Default)]
pub struct Rebalance {
    pub gate: Gate,
    status: Mutex<Status>,
    /// Rows copied so far, also kept apart from `status` for the copy's hot loop.
    moved: AtomicU64,
    /// Total rows moved by every rebalance since start (for /metrics).
    pub moved_total: AtomicU64,
}

impl Rebalance {
    pub fn status(&self) -> Status {
        let mut s = self.lock().clone();
        s.rows_moved = self.moved.load(Ordering::Relaxed);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.lock());
    }

    fn set_phase(&self, phase: Phase, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(
            "rebalance: {}{}{detail}",
            phase.name(),
            if detail.is_empty() { "" } else { ": " }
        );
        self.update(|s| {
            s.phase = phase;
            s.detail = detail;
            if matches!(phase, Phase::Done | Phase::Failed) {
                s.finished = Some(Instant::now());
            }
        });
    }

    fn add_moved(&self, n: u64) {
        self.moved.fetch_add(n, Ordering::Relaxed);
        self.moved_total.fetch_add(n, Ordering::Relaxed);
    }
}

/// Starts moving rows from the running placement to `to`'s, in the background. Refused while
/// another rebalance runs.
pub fn start(ctx: &Arc<Context>, to: Config) -> Result<String, Error> {
    let from = ctx.config.load_full();
    {
        let mut s = ctx.rebalance.lock();
        if s.running() {
            return Err(Error::unsupported(
                format!("a rebalance is already {}", s.phase.name()),
                "wait for it to finish (SHOW REBALANCE), then RELOAD again",
            ));
        }
        *s = Status {
            phase: Phase::Preparing,
            from: plan::placement_key(&from.shards, from.proxy.vnodes),
            to: plan::placement_key(&to.shards, to.proxy.vnodes),
            tables: to.tables.iter().filter(|t| !t.reference).count(),
            started: Some(Instant::now()),
            started_at: Some(SystemTime::now()),
            ..Status::default()
        };
    }
    ctx.rebalance.moved.store(0, Ordering::Relaxed);
    let summary = {
        let old = ctx.ring.load();
        let new = ctx
            .placement_ring(&to.shards, to.proxy.vnodes)
            .unwrap_or_else(|_| crate::ring::Ring::new(&to.shards, to.proxy.vnodes));
        let m = crate::ring::movement(&old, &new);
        format!("started: {:.1}% of keys move", m.moved_share() * 100.0)
    };
    let ctx = ctx.clone();
    let rb = ctx.clone();
    // Its own thread: it runs for as long as writers keep the catch-up busy, and on a worker
    // it would slow that worker's clients and get only the time they leave it.
    let started = crate::workers::run_apart("shardgate-rebalance", async move {
        ctx.rebalance.gate.set_active(true);
        let result = steps::run(&ctx, from, to).await;
        ctx.rebalance.gate.set_active(false);
        match result {
            Ok(()) => ctx.rebalance.set_phase(Phase::Done, ""),
            Err(e) => {
                tracing::error!("rebalance failed: {e}");
                ctx.rebalance.set_phase(Phase::Failed, e.to_string());
            }
        }
    });
    if let Err(e) = started {
        rb.rebalance.set_phase(Phase::Failed, e.to_string());
        return Err(e);
    }
    Ok(summary)
}
