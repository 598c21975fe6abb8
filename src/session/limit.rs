//! The session's pass through the rate limits: each statement of a request takes a token from
//! every bucket that applies before anything runs, and a refused request runs nothing.
//!
//! COMMIT and ROLLBACK take no token: refusing them would keep a transaction, its locks and
//! its shard connections open for as long as the bucket is empty.

use super::Session;
use crate::error::Error;
use crate::gateway::Per;
use crate::protocol::{self, Frame};
use crate::router::{QueryPlan, StatementPlan, Target, TxnCommand};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

fn ends_transaction(s: &StatementPlan) -> bool {
    matches!(
        s.target,
        Target::Transaction(TxnCommand::Commit | TxnCommand::Rollback)
    )
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// Admits a simple Query's statements.
    pub(super) fn limit_plan(&mut self, plan: &QueryPlan) -> Result<(), Error> {
        let limiter = self.ctx.limits.load();
        if limiter.is_empty() {
            return Ok(());
        }
        let counted = || plan.statements.iter().filter(|s| !ends_transaction(s));
        let n = u32::try_from(counted().count()).unwrap_or(u32::MAX);
        let tables = counted().flat_map(|s| s.tables.iter().map(|t| &**t));
        self.limits.admit(&limiter, n, tables)
    }

    /// Admits the Executes of an extended-protocol batch: one token each, and for the table
    /// limits one per Execute of a statement naming the table.
    pub(super) fn limit_batch(&mut self, frames: &[Frame]) -> Result<(), Error> {
        let limiter = self.ctx.limits.load();
        if limiter.is_empty() || !frames.iter().any(|f| f.tag == b'E') {
            return Ok(());
        }
        let per_table = limiter.rules.iter().any(|r| r.per == Per::Table);
        let mut n = 0u32;
        let mut tables: Vec<Arc<str>> = Vec::new();
        // Statements parsed in this batch count as they will be when it runs.
        let mut parsed: Vec<(String, Arc<super::extended::Prepared>)> = Vec::new();
        let mut bound: Option<Arc<super::extended::Prepared>> = None;
        for f in frames {
            match f.tag {
                b'P' => {
                    if let Ok(p) = protocol::decode_parse(f.body()) {
                        let name = p.name.to_owned();
                        let st = self.prepared_of(p);
                        parsed.retain(|(n, _)| *n != name);
                        parsed.push((name, st));
                    }
                }
                b'B' => {
                    bound = protocol::decode_bind(f.body()).ok().and_then(|b| {
                        parsed
                            .iter()
                            .rev()
                            .find(|(n, _)| n == b.statement)
                            .map(|(_, st)| st.clone())
                            .or_else(|| self.stmts.get(b.statement).cloned())
                    });
                }
                b'E' => {
                    // An Execute of a portal bound in an earlier batch is counted, its tables not.
                    let stmts = bound.as_ref().map(|st| &st.plan.statements[..]);
                    if stmts.is_some_and(|s| s.iter().all(ends_transaction) && !s.is_empty()) {
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
