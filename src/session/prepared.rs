//! The statements a client prepares, as the session keeps them: each Parse planned once under
//! the catalog version it was made for, and the name it carries on backend connections.

use super::Session;
use crate::protocol;
use crate::router::{self, QueryPlan, Target};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A statement a client prepared, as the proxy keeps it.
pub struct Prepared {
    pub(super) sql: Arc<str>,
    pub(super) types: Vec<u32>,
    pub(super) hash: u64,
    pub(super) plan: Arc<QueryPlan>,
    /// Its name on backend connections: the same for every client preparing the same text and
    /// types, so a pooled connection prepares it once.
    pub(super) backend_name: String,
    /// A client's unnamed statement kept on the shards under `backend_name` (`[proxy]
    /// auto_prepare`), so that a connection parses it once rather than with every query;
    /// inside a transaction block, or on a connection holding too many statements, it goes
    /// unnamed as the client sent it (see `ext_route::server_name`).
    pub(super) auto: bool,
    /// The session runs it itself (see `runs_locally`).
    pub(super) local: bool,
    /// The catalog version `plan` was made under.
    pub(super) version: u64,
}

impl Session {
    /// The statement already registered under a Parse's name when the Parse repeats it: drivers
    /// re-parse the unnamed statement with every query. The same text and types, planned under
    /// the same catalog, keep it, without decoding the message or looking up a plan.
    pub(super) fn repeated_parse(&self, body: &[u8]) -> Option<Arc<Prepared>> {
        let (name, rest) = protocol::parse_name(body).ok()?;
        let old = self.stmts.get(name)?;
        let current = old.version == self.ctx.catalog_version.load(Ordering::Acquire);
        (current && protocol::parse_rest_is(rest, &old.sql, &old.types)).then(|| old.clone())
    }

    /// Records a client's Parse under its name (the unnamed statement too).
    pub(super) fn register(&mut self, p: protocol::ParseMsg<'_>) -> Arc<Prepared> {
        let name = p.name.to_owned();
        let prepared = self.prepared_of(p);
        self.stmts.insert(name, prepared.clone());
        prepared
    }

    /// A client's Parse as the session keeps it.
    pub(super) fn prepared_of(&mut self, p: protocol::ParseMsg<'_>) -> Arc<Prepared> {
        let hash = router::prepare::statement_hash(p.query, &p.types);
        // Read before planning: a catalog change meanwhile leaves the statement planned anew.
        let version = self.ctx.catalog_version.load(Ordering::Acquire);
        let plan = self.plan(p.query);
        let local = runs_locally(p.query, &plan);
        let auto = p.name.is_empty()
            && !local
            && plan.statements.len() == 1
            && plan.statements.iter().all(|s| !s.ddl)
            && router::prepare::plain_statement(p.query)
            && self.config.get().proxy.auto_prepare;
        let backend_name = if p.name.is_empty() && !auto {
            String::new()
        } else {
            router::prepare::backend_name(hash)
        };
        let prepared = Prepared {
            version,
            local,
            sql: Arc::from(p.query),
            types: p.types,
            hash,
            plan,
            backend_name,
            auto,
        };
        Arc::new(prepared)
    }
}

impl Prepared {
    pub(super) fn local(&self) -> bool {
        self.local
    }

    /// PostgreSQL's refusal of a Bind whose formats or parameters do not fit this statement,
    /// which PostgreSQL checks before it reads a parameter (and the proxy before the keys).
    pub(super) fn params_mismatch(
        &self,
        bind: &protocol::BindMsg<'_>,
    ) -> Result<(), crate::error::Error> {
        protocol::check_bind_formats(bind)?;
        let supplied = bind.params.len();
        let [stmt] = self.plan.statements.as_slice() else {
            return Ok(());
        };
        match stmt.params.map(|n| n.max(self.types.len())) {
            Some(needed) if needed != supplied => Err(crate::error::Error::Protocol {
                message: format!(
                    "bind message supplies {supplied} parameters, but prepared statement \"{}\" requires {needed}",
                    bind.statement
                ),
            }),
            _ => Ok(()),
        }
    }

    /// All PostgreSQL checks in a Bind's layout, for the Binds the proxy answers itself
    /// (gathers, transaction control); PostgreSQL checks the end of the others.
    pub(super) fn bind_mismatch(
        &self,
        body: &[u8],
        bind: &protocol::BindMsg<'_>,
    ) -> Option<crate::error::Error> {
        self.params_mismatch(bind)
            .and_then(|()| protocol::check_bind_end(body, bind))
            .err()
    }

    /// The text of one of its statements.
    pub(super) fn sql_of(&self, stmt: &router::StatementPlan) -> &str {
        self.sql.get(stmt.span.clone()).unwrap_or(&self.sql)
    }
}

/// Statements the session runs itself rather than relaying the protocol: transaction
/// control and SET, and schema changes and writes for several shards that return no rows
/// (run as the simple-protocol machinery runs them: on every shard, atomically).
fn runs_locally(sql: &str, plan: &QueryPlan) -> bool {
    let [one] = plan.statements.as_slice() else {
        return false;
    };
    match &one.target {
        Target::Transaction(_) | Target::Session(_) | Target::CopyIn(_) => true,
        Target::All | Target::Split(_) => {
            let lower = sql.trim_start().to_ascii_lowercase();
            // COPY ... TO STDOUT answers with CopyData, not rows: the gather relays it as is.
            one.ddl || lower.starts_with("copy") || (one.writes && !lower.contains("returning"))
        }
        _ => false,
    }
}
