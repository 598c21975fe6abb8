//! The session's pass through a rebalance's gate (rebalance/gate.rs): while a rebalance runs,
//! each request touching placed tables holds a ticket until its ReadyForQuery, and a write that
//! the old and the new ring route differently waits while the switch moves its rows.

use super::ext_route::Count;
use super::Session;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::rebalance::Ticket;
use crate::ring::Ring;
use crate::router::{self, QueryPlan, Route};

impl Session {
    /// Passes the gate for a simple Query's statements.
    pub(super) async fn gate_plan(&mut self, plan: &QueryPlan) -> Result<(), Error> {
        if !self.ctx.rebalance.gate.active() {
            return Ok(());
        }
        let stmts = &plan.statements;
        if stmts.iter().any(|s| s.ddl) {
            return Err(ddl_refused());
        }
        if stmts.iter().all(|s| s.tables.is_empty()) {
            return Ok(());
        }
        let writes = stmts.iter().any(|s| s.writes);
        self.pass(writes, |ring| {
            stmts.iter().map(|s| router::route(s, ring).ok()).collect()
        })
        .await
    }

    /// Passes the gate for the Binds of an extended-protocol batch (statements parsed in the
    /// batch included, read as the batch will read them).
    pub(super) async fn gate_batch(&mut self, frames: &[Frame]) -> Result<(), Error> {
        if !self.ctx.rebalance.gate.active() {
            return Ok(());
        }
        let binds: Vec<_> = self
            .bound_statements(frames)
            .into_iter()
            .map(|(i, st)| (st, &frames[i]))
            .collect();
        let stmts = || binds.iter().flat_map(|(st, _)| st.plan.statements.iter());
        if stmts().any(|s| s.ddl) {
            return Err(ddl_refused());
        }
        if stmts().all(|s| s.tables.is_empty()) {
            return Ok(());
        }
        let writes = stmts().any(|s| s.writes);
        let this = &*self;
        let routes = |ring: &Ring| -> Vec<Option<Route>> {
            binds
                .iter()
                .filter(|(st, _)| st.plan.statements.iter().any(|s| s.writes))
                .map(|(st, f)| {
                    let bind = protocol::decode_bind(f.body()).ok()?;
                    this.bind_route(st, &bind, ring, Count::Not).ok().flatten()
                })
                .collect()
        };
        let admitted = admit(
            &self.ctx.rebalance.gate,
            self.ticket.is_some(),
            writes,
            routes,
        );
        if let Some(ticket) = admitted.await? {
            self.ticket = Some(ticket);
        }
        Ok(())
    }

    async fn pass(
        &mut self,
        writes: bool,
        routes: impl Fn(&Ring) -> Vec<Option<Route>>,
    ) -> Result<(), Error> {
        let admitted = admit(
            &self.ctx.rebalance.gate,
            self.ticket.is_some(),
            writes,
            routes,
        );
        if let Some(ticket) = admitted.await? {
            self.ticket = Some(ticket);
        }
        Ok(())
    }
}

/// Passes the gate: a new ticket, or None when the request already holds one. A request
/// already past the gate (a pipeline, a batch flushed before its Sync) holds a ticket the
/// switch waits for: it cannot wait in turn, so a held write is refused.
async fn admit(
    gate: &crate::rebalance::Gate,
    has_ticket: bool,
    writes: bool,
    routes: impl Fn(&Ring) -> Vec<Option<Route>>,
) -> Result<Option<Ticket>, Error> {
    let check = |h: &crate::rebalance::Hold| writes && must_wait(&routes(&h.old), &routes(&h.new));
    if has_ticket {
        return match gate.holding(check) {
            true => Err(Error::RebalanceWait { secs: 0 }),
            false => Ok(None),
        };
    }
    gate.enter(check).await.map(Some)
}

/// A write waits when either ring sends it somewhere else, or to every shard (a write without
/// a key may touch moving rows), or when it cannot be routed (it is not let past blind).
fn must_wait(old: &[Option<Route>], new: &[Option<Route>]) -> bool {
    old != new || old.iter().any(|r| matches!(r, Some(Route::All) | None))
}

fn ddl_refused() -> Error {
    Error::unsupported(
        "schema changes are refused while a rebalance runs: the shards joining would miss them",
        "run it once SHOW REBALANCE in the admin console says done",
    )
}

#[cfg(test)]
mod tests {
    use super::must_wait;
    use crate::ring::ShardId;
    use crate::router::Route;

    #[test]
    fn writes_wait_when_the_rings_disagree_or_no_key_says_where() {
        let one = |i| Some(Route::Shards([ShardId(i)].into_iter().collect()));
        assert!(!must_wait(&[one(1)], &[one(1)]));
        assert!(must_wait(&[one(1)], &[one(3)]));
        assert!(must_wait(&[Some(Route::All)], &[Some(Route::All)]));
        assert!(must_wait(&[None], &[None]));
        assert!(!must_wait(&[Some(Route::Any)], &[Some(Route::Any)]));
        let split = |a, b| {
            Some(Route::Split(vec![
                (ShardId(a), "x".into()),
                (ShardId(b), "y".into()),
            ]))
        };
        assert!(!must_wait(&[split(0, 1)], &[split(0, 1)]));
        assert!(must_wait(&[split(0, 1)], &[split(0, 3)]));
    }
}
