//! Statement → route: parses SQL (sqlparser), finds shard keys, decides where each statement
//! runs and how results combine. Pure: no I/O.
//!
//! INTERFACE FROZEN FOR HELPERS.

use crate::catalog::Catalog;
use crate::error::Error;
use crate::ring::{Key, Ring, ShardId};
use std::ops::Range;

/// The plan of one client query string (a simple-protocol Query may hold several statements).
/// Ring-independent, so it can be cached by statement text until the catalog changes.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub statements: Vec<StatementPlan>,
}

#[derive(Debug, Clone)]
pub struct StatementPlan {
    /// Byte range of this statement in the query text (without the trailing ';').
    pub span: Range<usize>,
    pub target: Target,
    /// The statement may write (INSERT/UPDATE/DELETE/DDL/...); multi-shard writes run atomically.
    pub writes: bool,
    /// Schema change: sent to every shard; the catalog is re-read afterwards.
    pub ddl: bool,
    /// Must not run inside a transaction block (VACUUM, CREATE INDEX CONCURRENTLY, CREATE DATABASE...).
    pub no_transaction: bool,
    /// Why concatenating several shards' rows would NOT be exact, if so (ORDER BY, LIMIT,
    /// aggregates, DISTINCT, GROUP BY, window functions, ...). None: concatenation is exact.
    pub not_mergeable: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Target {
    /// Touches no user table: any one shard.
    Any,
    /// Rows of sharded tables with these keys (deduplicated): the shards that own them.
    Keys(Vec<Key>),
    /// Every shard (keyless statement on a sharded table, DDL, writes to reference tables).
    All,
    /// Multi-row INSERT: each row goes to the shard of its key.
    Split(SplitInsert),
    /// Transaction control, handled by the session itself.
    Transaction(TxnCommand),
    /// SET / RESET / DISCARD: session state the session tracks.
    Session(SessionCommand),
    /// Refused, with the error the client gets.
    Reject(Error),
}

#[derive(Debug, Clone)]
pub struct SplitInsert {
    /// The key of each VALUES row, in order.
    pub keys: Vec<Key>,
    /// Renders an INSERT containing only the given rows (indices into `keys`), in the order given.
    pub template: InsertTemplate,
}

/// Enough of the INSERT to re-render it with a subset of its rows.
#[derive(Debug, Clone)]
pub struct InsertTemplate {
    // helper: router (e.g. the sqlparser Statement with its VALUES rows)
}

impl InsertTemplate {
    pub fn render(&self, rows: &[usize]) -> String {
        let _ = rows;
        todo!("helper: router")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnCommand {
    /// BEGIN / START TRANSACTION (with its options, kept in the statement text).
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE, ROLLBACK TO: forwarded to the shards in the transaction.
    Savepoint,
    /// PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED: refused for now.
    TwoPhase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// SET name ... (not LOCAL); name folded to lower case.
    Set { name: String },
    /// SET LOCAL ...: lasts until the transaction ends; not tracked.
    SetLocal,
    /// RESET name
    Reset { name: String },
    /// RESET ALL / DISCARD ALL
    ResetAll,
}

/// Where a planned statement goes under the current ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Any one shard (the session picks).
    Any,
    /// Exactly these shards (sorted, deduplicated, at least one).
    Shards(Vec<ShardId>),
    /// Every shard.
    All,
    /// Per-shard rewritten SQL (sorted by shard).
    Split(Vec<(ShardId, String)>),
}

/// Plans a query string. Never panics; unparsable input on known tables becomes
/// `Target::Reject(Error::Syntax)`, other unparsable input `Target::Any` (PostgreSQL reports it).
pub fn plan(sql: &str, catalog: &Catalog) -> QueryPlan {
    let _ = (sql, catalog);
    todo!("helper: router")
}

/// Resolves a statement plan under a ring. Rejects a multi-shard route of a statement whose
/// results cannot be concatenated exactly (`not_mergeable`), with 0A000.
pub fn route(stmt: &StatementPlan, ring: &Ring) -> Result<Route, Error> {
    let _ = (stmt, ring);
    todo!("helper: router")
}
