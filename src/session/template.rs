//! Simple-protocol statements routed by their shape's plan (router/cache.rs): no parse, the
//! route from the literals, the statement's own text relayed to its one shard (or its shape
//! gathered from several, `shape_gather.rs`).

use super::{Session, Step};
use crate::error::Error;
use crate::router::cache::{self, Routed};
use crate::router::Route;
use std::sync::atomic::Ordering;

impl Session {
    /// `text` routed to one shard by its shape's plan, if it has one.
    pub(super) fn templated(&mut self, text: &str) -> Option<Routed> {
        // While a rebalance runs, its gate routes each request under two rings by the plan of
        // the statement itself.
        if self.ctx.rebalance.gate.active() {
            return None;
        }
        let version = self.ctx.catalog_version.load(Ordering::Acquire);
        self.cache.check_version(version);
        let routed = self
            .cache
            .routed(text, &self.ctx.catalog.load(), &self.ctx.ring.load())?;
        if !cache::one_shard(&routed.route) && !self.may_gather_shaped(text, &routed) {
            return None;
        }
        Some(routed)
    }

    /// Whether a read over several shards may run by its shape's merge plan: where its
    /// literals may be bound (`may_bind_literals`), and with whole numbers for a LIMIT or
    /// OFFSET.
    fn may_gather_shaped(&mut self, text: &str, routed: &Routed) -> bool {
        let merge = routed
            .plan
            .statements
            .first()
            .and_then(|s| s.merge.as_ref());
        self.may_bind_literals(text)
            && merge.is_some_and(|m| cache::literal_limits(m, text, self.cache.lits()).is_some())
    }

    /// Runs a one-statement Query whose route its shape's plan gave.
    pub(super) async fn run_routed(&mut self, text: &str, routed: Routed) -> Step {
        let Routed { plan, route, shape } = routed;
        if let Err(e) = self.limit_plan(&plan) {
            self.fail(&e)?;
            return Ok(());
        }
        let Some(stmt) = plan.statements.first() else {
            return Ok(());
        };
        if self.txn.as_ref().is_some_and(|t| t.failed) {
            self.error(&Error::TransactionAborted);
            return Ok(());
        }
        let ring = self.ctx.ring.load_full();
        self.count(stmt, &route, &ring);
        for k in self.cache.keys() {
            self.count_key(&stmt.tables, k);
        }
        self.reads_only = !stmt.writes && !stmt.ddl;
        match route {
            Route::Shards(v) if v.len() == 1 => match self.auto_prepared(shape, text) {
                Some(st) => self.exec_prepared(v[0], text, st).await?,
                None => self.exec_one(v[0], text).await?,
            },
            Route::Any => self.exec_any(text, &ring).await?,
            route => {
                self.gather_shaped(text, (shape, &plan), route, &ring)
                    .await?
            }
        };
        Ok(())
    }
}
