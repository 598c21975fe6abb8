//! The merge plan of a query that runs on several shards: the SQL each shard runs instead of
//! the client's, and how the proxy combines the shards' rows into the one answer an unsharded
//! PostgreSQL would give. Built by `rewrite`, executed by `gather`.

/// How the rows of several shards become one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// What each shard runs: partial aggregates, hidden columns, `LIMIT offset+limit`.
    pub shard_sql: String,
    /// Trailing columns of the shard rows that only the merge needs; the client never sees them.
    pub hidden: usize,
    /// Aggregation across shards (GROUP BY, aggregates, HAVING); None for row queries.
    pub group: Option<Grouping>,
    /// The final order, over the columns of the (combined) rows. Without aggregation the
    /// shards return their rows in this order and the proxy merges the streams.
    pub order: Vec<SortKey>,
    pub offset: u64,
    pub limit: Option<u64>,
    /// `LIMIT $n` / `OFFSET $n`: 0-based parameters whose bound values replace `limit` and
    /// `offset` (the shards get `LIMIT $l + $o`).
    pub limit_param: Option<usize>,
    pub offset_param: Option<usize>,
    /// SELECT DISTINCT: later duplicates of the visible columns are dropped.
    pub distinct: bool,
}

impl MergePlan {
    /// The plan that merges nothing, for a read whose rows concatenate exactly (no ORDER BY,
    /// LIMIT, aggregate or DISTINCT): every shard runs `shard_sql` as it is.
    pub fn concat(shard_sql: &str) -> MergePlan {
        MergePlan {
            shard_sql: shard_sql.to_owned(),
            hidden: 0,
            group: None,
            order: Vec::new(),
            offset: 0,
            limit: None,
            limit_param: None,
            offset_param: None,
            distinct: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub column: usize,
    pub desc: bool,
    pub nulls_first: bool,
    /// `COLLATE "C"`: text compares bytewise whatever the database's collation.
    pub bytewise: bool,
    /// `column` counts from the first hidden column (row queries: a `*` in the select list
    /// leaves the number of visible columns to the shards' row description).
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Columns whose values form the group key; empty: one group over every row.
    pub keys: Vec<usize>,
    /// How each column of the shard rows combines within a group (one entry per column).
    pub columns: Vec<Agg>,
    /// HAVING, evaluated on the combined rows.
    pub having: Option<Pred>,
    /// No GROUP BY: exactly one row comes out, even when no shard returned one.
    pub single: bool,
    /// No GROUP BY, a count(DISTINCT x), and columns the shards evaluate (a constant in the
    /// select list or HAVING): grouped by x, a shard with no matching row would return no row,
    /// and with it no value for those columns. So the shards group by
    /// `GROUPING SETS ((x, ...), ())`, and this column, `GROUPING(x)`, is 1 in each shard's
    /// grand-total row, which is there even over no rows and gives only the `First` columns.
    pub total: Option<usize>,
}

/// How one column combines the partial values of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// The same in every row of the group (a grouped expression, or one that depends on it).
    First,
    /// count: the partial counts added.
    Count,
    /// sum: the partial sums added, in the partial's type (int8, numeric, float4, float8).
    Sum,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    /// avg: this column holds the partial sums, `count` the partial counts.
    Avg {
        count: usize,
    },
    /// count(DISTINCT x): the number of distinct non-NULL values of column `of`, which the
    /// shards group by; with FILTER, only values whose `filter` column (the shards'
    /// `bool_or` of the condition) is true.
    CountDistinct {
        of: usize,
        filter: Option<usize>,
    },
    /// The x of count(DISTINCT x): read by that column, not a group key, not shown.
    Arg,
}

/// A HAVING condition, in SQL's three-valued logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pred {
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
    Cmp {
        op: CmpOp,
        left: Operand,
        right: Operand,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
    /// A boolean column (an expression the shards evaluated).
    Column(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Column(usize),
    /// A constant as written (a number, or a string read as the other side's type).
    Literal(String),
    Null,
}
