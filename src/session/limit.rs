//! The session's pass through the rate limits: each statement of a request takes a token from
//! every bucket that applies before anything runs, and a refused request runs nothing.

use super::Session;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::router::QueryPlan;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// Admits a simple Query's statements.
    pub(super) fn limit_plan(&mut self, plan: &QueryPlan) -> Result<(), Error> {
        let limiter = self.ctx.limits.load();
        if limiter.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(plan.statements.len()).unwrap_or(u32::MAX);
        let tables = plan
            .statements
            .iter()
            .flat_map(|s| s.tables.iter().map(|t| &**t));
        self.limits.admit(&limiter, n, tables)
    }

    /// Admits the Executes of an extended-protocol batch: one token each, and for the table
    /// limits one per Execute of a statement naming the table.
    pub(super) fn limit_batch(&mut self, frames: &[Frame]) -> Result<(), Error> {
        let limiter = self.ctx.limits.load();
        if limiter.is_empty() {
            return Ok(());
        }
        let executes = frames.iter().filter(|f| f.tag == b'E').count();
        if executes == 0 {
            return Ok(());
        }
        let n = u32::try_from(executes).unwrap_or(u32::MAX);
        let mut tables: Vec<Arc<str>> = Vec::new();
        if limiter
            .rules
            .iter()
            .any(|r| r.per == crate::gateway::Per::Table)
        {
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
                        if let Some(st) = &bound {
                            for s in st.plan.statements.iter() {
                                tables.extend(s.tables.iter().cloned());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.limits.admit(&limiter, n, tables.iter().map(|t| &**t))
    }
}
