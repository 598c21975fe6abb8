//! Simple-protocol reads over several shards routed by their shape's plan: the shape's merge
//! plan, made once, runs with the statement's literals bound as parameters, so the statement is
//! neither parsed nor rewritten again.
//!
//! The shards get the rewritten shape as the unnamed statement, the literals as text
//! parameters typed as PostgreSQL types the constants (see `router::prepare`), and every
//! result column in text, as a simple Query returns them. If a shard refuses that at Parse or
//! Bind, nothing has run and nothing has reached the client: the statement's own text runs
//! instead, so that the client sees what PostgreSQL says of the text itself.

use super::gather::Gathered;
use super::{Session, Step};
use crate::protocol;
use crate::ring::Ring;
use crate::router::cache::literal_limits;
use crate::router::{prepare, QueryPlan, Route};

impl Session {
    /// Runs `text`, a read of the shape `shape` whose plan is `plan`, on the shards of `route`.
    pub(super) async fn gather_shaped(
        &mut self,
        text: &str,
        (shape, plan): (u64, &QueryPlan),
        route: Route,
        ring: &Ring,
    ) -> Step<bool> {
        let merge = plan.statements.first().and_then(|s| s.merge.clone());
        let lits = self.cache.lits();
        let limits = merge.as_ref().and_then(|m| literal_limits(m, text, lits));
        let shards = super::exec::gather_shards(&route, ring);
        // `templated` let only gatherable statements through: this is a safeguard.
        let (Some(merge), Some(limits), Some(shards)) = (merge, limits, shards) else {
            return self.run_own_plan(text, true).await;
        };
        let mut types = Vec::with_capacity(lits.len());
        prepare::types(text, lits, &mut types);
        let mut request = bytes::BytesMut::new();
        protocol::put_parse(&mut request, "", &merge.shard_sql, &types);
        super::autoprep::put_bind_literals(&mut request, "", text, lits);
        protocol::put_target_message(&mut request, b'D', b'P', "");
        protocol::put_execute_all(&mut request);
        protocol::put_empty(&mut request, b'S');
        let (mark, flushes) = (self.out.len(), self.flushes);
        let gathered = self.gather_on(shards, merge, &request, (true, true), limits, true);
        match gathered.await? {
            Gathered::Done(ok) => Ok(ok),
            Gathered::Refused => {
                // Notices the refusal brought are the text's to give again.
                if self.flushes == flushes {
                    self.out.truncate(mark);
                }
                // A form the shards refuse where the text runs (a constant whose type only
                // its context decides, `SELECT 'a' AS tag ...`) is not tried again.
                let ok = self.run_own_plan(text, false).await?;
                if ok {
                    self.cache.no_gather(shape);
                }
                Ok(ok)
            }
        }
    }

    /// Runs `text` by its own plan, as if its shape had none; `count`: it is not counted in
    /// the statistics yet.
    async fn run_own_plan(&mut self, text: &str, count: bool) -> Step<bool> {
        let plan = self.cache.plan(text, &self.ctx.catalog.load());
        match plan.statements.first() {
            Some(stmt) => self.run_statement_as(text, stmt, count).await,
            None => Ok(true),
        }
    }
}
