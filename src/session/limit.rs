//! The session's pass through the rate limits: each statement of a request takes a token from
//! every bucket that applies before anything runs, and a refused request runs nothing.
//!
//! COMMIT and ROLLBACK take no token: refusing them would keep a transaction, its locks and
//! its shard connections open for as long as the bucket is empty.

use super::Session;
use crate::error::Error;
use crate::gateway::Per;
use crate::protocol::Frame;
use crate::router::{QueryPlan, StatementPlan, Target, TxnCommand};
use std::sync::Arc;

fn ends_transaction(s: &StatementPlan) -> bool {
    matches!(
        s.target,
        Target::Transaction(TxnCommand::Commit | TxnCommand::Rollback)
    )
}

impl Session {
    /// Admits a simple Query's statements.
    pub(super) fn limit_plan(&mut self, plan: &QueryPlan) -> Result<(), Error> {
        if self.limiter.get().is_empty() {
            return Ok(());
        }
        let limiter = self.ctx.limits.load();
        let counted = || plan.statements.iter().filter(|s| !ends_transaction(s));
        let n = u32::try_from(counted().count()).unwrap_or(u32::MAX);
        let tables = counted().flat_map(|s| s.tables.iter().map(|t| &**t));
        self.limits.admit(&limiter, n, tables)
    }

    /// Admits the Executes of an extended-protocol batch: one token each, and for the table
    /// limits one per Execute of a statement naming the table.
    pub(super) fn limit_batch(&mut self, frames: &[Frame]) -> Result<(), Error> {
        if self.limiter.get().is_empty() || !frames.iter().any(|f| f.tag == b'E') {
            return Ok(());
        }
        // The cached view only spares the common case, no limits at all, the shared load.
        let limiter = self.ctx.limits.load();
        let per_table = limiter.rules.iter().any(|r| r.per == Per::Table);
        let mut n = 0u32;
        let mut tables: Vec<Arc<str>> = Vec::new();
        let bound_at = self.bound_statements(frames);
        let mut binds = bound_at.iter().peekable();
        let mut bound: Option<&Arc<super::prepared::Prepared>> = None;
        for (i, f) in frames.iter().enumerate() {
            match f.tag {
                b'B' => {
                    bound = None;
                    if let Some((_, st)) = binds.next_if(|(at, _)| *at == i) {
                        bound = Some(st);
                    }
                }
                b'E' => {
                    // An Execute of a portal bound in an earlier batch is counted, its tables not.
                    let stmts = bound.map(|st| &st.plan.statements[..]);
                    if stmts.is_some_and(|s| !s.is_empty() && s.iter().all(ends_transaction)) {
                        continue;
                    }
                    n = n.saturating_add(1);
                    if per_table {
                        for s in stmts.unwrap_or_default() {
                            tables.extend(s.tables.iter().cloned());
                        }
                    }
                }
                _ => {}
            }
        }
        self.limits.admit(&limiter, n, tables.iter().map(|t| &**t))
    }
}
