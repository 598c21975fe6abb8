//! Statement → route: parses SQL (sqlparser), finds shard keys, decides where each statement
//! runs and how results combine. Pure: no I/O.
//!
//! INTERFACE FROZEN FOR HELPERS.

mod aggregate;
pub mod cache;
mod classify;
mod copy;
mod decide;
mod dml;
mod fallback;
mod insert;
mod keys;
mod limit;
pub mod literals;
mod merge;
pub mod prepare;
mod resolve;
mod rewrite;
mod scope;
mod shape;
mod shape_merge;
mod split;
mod table_list;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bound;
#[cfg(test)]
mod tests_insert;
#[cfg(test)]
mod tests_merge;
#[cfg(test)]
mod tests_params;
#[cfg(test)]
mod tests_robust;
#[cfg(test)]
mod tests_route;

use crate::catalog::Catalog;
use crate::error::Error;
use crate::ring::{ArrayKeys, Key, Ring, ShardId};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::ops::Range;
use std::sync::Arc;
pub use table_list::{TableList, Tables};

pub use merge::{Agg, CmpOp, Grouping, MergePlan, Operand, Pred, SortKey};
pub use resolve::{route, route_bound};
pub use rewrite::Refusal;

/// Beyond this many operator tokens in one statement, sqlparser's trees get deep enough to
/// overflow the stack when they are dropped: such statements are not parsed at all.
const MAX_OPERATORS: usize = 16_000;

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
    /// Why the rows of several shards cannot be combined exactly, if so (a window function,
    /// an aggregate the proxy cannot combine, ...): the statement must stay on one shard.
    pub not_mergeable: Option<Refusal>,
    /// How the rows of several shards combine when concatenating them is not exact (ORDER BY,
    /// LIMIT, aggregates, GROUP BY, DISTINCT). None: concatenation is exact.
    pub merge: Option<Arc<MergePlan>>,
    /// A write to a reference table: every shard holds a copy, so the client sees one copy's
    /// answer (its rows and count), not their sum.
    pub replicated: bool,
    /// An INSERT ... VALUES placing rows of a sharded table by their keys: a NULL key bound at
    /// Bind time is an error here, where in a WHERE clause it merely matches no row.
    pub inserts: bool,
    /// The tables of shards.toml the statement touches, by their configured names; its keys
    /// are counted as the first one's (for the hot-key statistics).
    pub tables: Tables,
    /// The highest `$n` it refers to (0 for none; None for placeholders of another form): with
    /// the types its Parse declares, how many parameters a Bind must supply.
    pub params: Option<usize>,
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
    /// Rows of sharded tables whose keys are these literals and the values of these parameters:
    /// resolved at Bind time by `route_bound`.
    Bound(BoundKeys),
    /// `COPY table FROM STDIN`: each row goes to the shard of its key (every shard for a
    /// reference table).
    CopyIn(CopyIn),
    /// Transaction control, handled by the session itself.
    Transaction(TxnCommand),
    /// SET / RESET / DISCARD: session state the session tracks.
    Session(SessionCommand),
    /// Refused, with the error the client gets.
    Reject(Error),
}

impl Target {
    /// Exactly one key value (a literal, or one scalar parameter): one shard under any ring.
    pub fn single_key(&self) -> bool {
        match self {
            Target::Keys(k) => k.len() == 1,
            // An array parameter may hold keys of several shards.
            Target::Bound(b) => b.arrays.is_empty() && b.literals.len() + b.params.len() == 1,
            _ => false,
        }
    }
}

/// Keys that are partly or wholly bind parameters, known only at Bind time.
///
/// For an INSERT of several rows, these are the keys of all rows: the rows are not split
/// between shards (a split of parameterized rows is not supported), so `route_bound` refuses
/// when they land on more than one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundKeys {
    /// The key column's type: parameters are decoded as this type.
    pub key_type: crate::config::KeyType,
    /// Keys given as literals in the statement.
    pub literals: Vec<Key>,
    /// 0-based indices of the parameters that hold keys (`$1` is 0), deduplicated, in order of appearance.
    pub params: Vec<usize>,
    /// 0-based indices of the parameters that hold arrays of keys (`key = ANY($1)`), likewise.
    pub arrays: Vec<usize>,
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
    /// The INSERT statement as the client wrote it.
    text: String,
    /// Byte range of each VALUES row in `text`, parentheses included, in order.
    rows: Vec<Range<usize>>,
}

impl InsertTemplate {
    /// Rows are sliced from the original text, so literals reach PostgreSQL exactly as written.
    /// Indices out of range are skipped.
    pub fn render(&self, rows: &[usize]) -> String {
        let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) else {
            return self.text.clone();
        };
        let (prefix, suffix) = (&self.text[..first.start], &self.text[last.end..]);
        let picked = || rows.iter().filter_map(|&i| self.rows.get(i));
        let len = prefix.len() + suffix.len() + picked().map(|r| r.len() + 2).sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push_str(prefix);
        for (n, range) in picked().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(&self.text[range.clone()]);
        }
        out.push_str(suffix);
        out
    }
}

/// How to find each row's key in the data of a `COPY ... FROM STDIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyIn {
    /// 0-based column of the key among the copied columns, and its type; None for reference
    /// tables (every shard gets every row).
    pub key: Option<(usize, crate::config::KeyType)>,
    pub csv: bool,
    pub binary: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    pub header: bool,
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
    /// DEALLOCATE name, or DEALLOCATE ALL (None): the client's prepared statements.
    Deallocate { name: Option<String> },
}

/// The shards of a route: held inline up to four, so that routing a statement to one shard
/// allocates nothing.
pub type ShardSet = smallvec::SmallVec<[ShardId; 4]>;

/// Where a planned statement goes under the current ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Any one shard (the session picks).
    Any,
    /// Exactly these shards (sorted, deduplicated, at least one).
    Shards(ShardSet),
    /// Every shard.
    All,
    /// Per-shard rewritten SQL (sorted by shard).
    Split(Vec<(ShardId, String)>),
}

/// Plans a query string. Never panics; unparsable input on known tables becomes
/// `Target::Reject(Error::Syntax)`, other unparsable input `Target::Any` (PostgreSQL reports it).
pub fn plan(sql: &str, catalog: &Catalog) -> QueryPlan {
    let statements = split::split(sql)
        .into_iter()
        .map(|piece| {
            let text = &sql[piece.span.clone()];
            let planned = plan_one(text, piece.operators, catalog);
            StatementPlan {
                span: piece.span,
                target: planned.target,
                writes: planned.writes,
                ddl: planned.ddl,
                no_transaction: planned.no_transaction,
                not_mergeable: planned.not_mergeable,
                merge: planned.merge,
                replicated: planned.replicated,
                inserts: planned.inserts,
                tables: planned.tables,
                params: piece.params,
            }
        })
        .collect();
    QueryPlan { statements }
}

fn plan_one(text: &str, operators: usize, catalog: &Catalog) -> classify::Planned {
    if operators > MAX_OPERATORS {
        return fallback::too_complex(text, MAX_OPERATORS, catalog);
    }
    match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        Ok(stmts) => match stmts.as_slice() {
            [stmt] => classify::plan(stmt, text, catalog),
            _ => fallback::plan(text, "expected exactly one statement", catalog),
        },
        Err(e) => {
            // sqlparser reads `COPY ... WITH (FREEZE on)` (pgbench -i sends it) only with
            // true/false; the shards still get the client's own text.
            if let Some(alt) = copy_with_booleans(text) {
                if let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, &alt) {
                    if let [stmt] = stmts.as_slice() {
                        return classify::plan(stmt, &alt, catalog);
                    }
                }
            }
            fallback::plan(text, &e.to_string(), catalog)
        }
    }
}

/// A COPY statement with `on`/`off` option values spelled `true`/`false`, if it is a COPY.
fn copy_with_booleans(text: &str) -> Option<String> {
    let head = text.trim_start().get(..4)?;
    if !head.eq_ignore_ascii_case("copy") {
        return None;
    }
    let open = text.rfind('(')?;
    let (before, options) = text.split_at(open);
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(before);
    for (i, word) in options.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_end_matches([',', ')']);
        let rest = &word[bare.len()..];
        match bare.to_ascii_lowercase().as_str() {
            "on" => out.push_str("true"),
            "off" => out.push_str("false"),
            _ => out.push_str(bare),
        }
        out.push_str(rest);
    }
    Some(out)
}
