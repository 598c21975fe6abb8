//! Whether a shape may run as a server-side prepared statement: its literals become parameters
//! whose types are the ones PostgreSQL gives the literals themselves, so the statement means
//! what its text means. The check is conservative; a shape it refuses runs as plain text.

use super::literals::{Lit, LitKind};
use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, OrderByKind, Query, SetExpr, Statement, UnaryOperator, Value,
    Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// The type PostgreSQL's parser gives `5`, `3000000000` or `1e99`-sized digit strings.
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
/// A string constant is of type unknown until its context decides, as a parameter of type 0 is.
const UNKNOWN: u32 = 0;

/// Parameters beyond this many leave the shape to run as text: its types signature is a u64
/// of two bits per literal.
pub const MAX_PARAMS: usize = 32;

/// True when `shaped` (a shape's text with `$n` for its literals) is one SELECT, INSERT,
/// UPDATE or DELETE in which no parameter stands where a constant means something else than
/// its value: a position in ORDER BY, GROUP BY or DISTINCT ON (`ORDER BY 2`), or the operand
/// of a sign (`-2147483648` is an integer, `-$1` of 2147483648 a bigint), or the string of a
/// typed constant (`DATE '2024-01-01'`).
pub fn preparable(shaped: &str, params: usize) -> bool {
    if params == 0 || params > MAX_PARAMS {
        return false;
    }
    let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, shaped) else {
        return false;
    };
    let [stmt] = stmts.as_slice() else {
        return false;
    };
    let plain = match stmt {
        Statement::Query(q) => !selects_into(q),
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => true,
        _ => false,
    };
    plain && stmt.visit(&mut Checker).is_continue()
}

/// The parameter type of each literal, as PostgreSQL types the constant, folded two bits per
/// literal into a signature that tells the statements of one shape apart.
pub fn types(text: &str, lits: &[Lit], out: &mut Vec<u32>) -> u64 {
    out.clear();
    let mut sig = 0u64;
    for (i, l) in lits.iter().enumerate() {
        let (ty, code) = match l.kind {
            LitKind::Str => (UNKNOWN, 0),
            LitKind::Int => match int_type(&text[l.span.clone()]) {
                INT4 => (INT4, 1),
                INT8 => (INT8, 2),
                _ => (NUMERIC, 3),
            },
        };
        out.push(ty);
        sig |= code << (2 * (i % MAX_PARAMS));
    }
    sig
}

/// True when `sql` starts as a query or a row change does (SELECT, INSERT, UPDATE, DELETE,
/// WITH, VALUES, TABLE), after blanks and parentheses; a comment first gives false.
pub fn plain_statement(sql: &str) -> bool {
    let rest = sql.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '(');
    let word: &str = rest
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    [
        "select", "insert", "update", "delete", "with", "values", "table",
    ]
    .iter()
    .any(|w| word.eq_ignore_ascii_case(w))
}

/// The hash of a statement's text and parameter types, as backend connections record their
/// statements.
pub fn statement_hash(sql: &str, types: &[u32]) -> u64 {
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    std::hash::Hasher::write(&mut h, sql.as_bytes());
    for t in types {
        std::hash::Hasher::write_u32(&mut h, *t);
    }
    std::hash::Hasher::finish(&h)
}

/// A statement's name on backend connections: the same for every session preparing the same
/// text and types, so that a pooled connection prepares it once.
pub fn backend_name(hash: u64) -> String {
    format!("sg_{hash:016x}")
}

/// An unsigned integer constant is int4 if it fits, else int8 if it fits, else numeric.
fn int_type(digits: &str) -> u32 {
    let d = digits.trim_start_matches('0');
    if d.len() < 10 {
        return INT4;
    }
    match d.parse::<u64>() {
        Ok(v) if v <= i32::MAX as u64 => INT4,
        Ok(v) if v <= i64::MAX as u64 => INT8,
        _ => NUMERIC,
    }
}

fn selects_into(q: &Query) -> bool {
    matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some())
}

struct Checker;

impl Visitor for Checker {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(order) = &q.order_by {
            if let OrderByKind::Expressions(items) = &order.kind {
                if items.iter().any(|o| is_param(&o.expr)) {
                    return ControlFlow::Break(());
                }
            }
        }
        if positional(&q.body) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr,
            } if is_param(expr) => ControlFlow::Break(()),
            // `DATE '...'`, `INTERVAL '...'`: a typed constant, not an expression of a value.
            Expr::TypedString(ts) if matches!(ts.value.value, Value::Placeholder(_)) => {
                ControlFlow::Break(())
            }
            Expr::Interval(i) if is_param(&i.value) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// A parameter where GROUP BY or DISTINCT ON would read a constant as a column position, in
/// the SELECTs of a query body (set operations included).
fn positional(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => {
            let grouped = match &s.group_by {
                GroupByExpr::Expressions(items, _) => items.iter().any(groups_by_param),
                GroupByExpr::All(_) => false,
            };
            let distinct_on = match &s.distinct {
                Some(Distinct::On(items)) => items.iter().any(is_param),
                _ => false,
            };
            grouped || distinct_on
        }
        SetExpr::SetOperation { left, right, .. } => positional(left) || positional(right),
        _ => false,
    }
}

/// GROUP BY items, looking into ROLLUP, CUBE and GROUPING SETS lists.
fn groups_by_param(e: &Expr) -> bool {
    match e {
        Expr::Rollup(sets) | Expr::Cube(sets) => sets.iter().flatten().any(groups_by_param),
        Expr::GroupingSets(sets) => sets.iter().flatten().any(groups_by_param),
        Expr::Tuple(items) => items.iter().any(groups_by_param),
        e => is_param(e),
    }
}

/// A parameter, alone or in parentheses.
fn is_param(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_param(inner),
        Expr::Value(v) => matches!(v.value, Value::Placeholder(_)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_statements_with_parameters_are_preparable() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "SELECT * FROM users WHERE id = $1 ORDER BY name LIMIT $2",
            "INSERT INTO users (id, name) VALUES ($1, $2)",
            "UPDATE users SET name = $1 WHERE id = $2",
            "DELETE FROM users WHERE id = $1",
            "SELECT a FROM t WHERE id = $1 GROUP BY a ORDER BY a + $2",
            "SELECT a - $1 FROM t WHERE id = $2",
            "SELECT * FROM t WHERE id = $1 UNION SELECT * FROM u WHERE id = $2 ORDER BY 1",
        ] {
            assert!(preparable(sql, 2), "{sql}");
        }
    }

    #[test]
    fn constants_that_are_not_values_keep_the_text() {
        for sql in [
            "SELECT a, b FROM t WHERE id = $1 ORDER BY $2",
            "SELECT a, b FROM t WHERE id = $1 ORDER BY ($2) DESC",
            "SELECT a, count(*) FROM t WHERE id = $1 GROUP BY $2",
            "SELECT a, count(*) FROM t WHERE id = $1 GROUP BY ROLLUP ($2)",
            "SELECT DISTINCT ON ($2) a FROM t WHERE id = $1",
            "SELECT * FROM t WHERE id = $1 UNION SELECT * FROM u WHERE id = $2 ORDER BY $1",
            "SELECT * FROM t WHERE id = $1 AND (SELECT b FROM u ORDER BY $2 LIMIT 1) > 0",
            "SELECT * FROM t WHERE id = -$1",
            "SELECT a INTO new_table FROM t WHERE id = $1",
            "SET work_mem = $1",
            "SELECT 1; SELECT $1",
            "SELECT * FROM t WHERE d = DATE $1",
            "SELECT * FROM t WHERE d > now() - INTERVAL $1",
        ] {
            assert!(!preparable(sql, 2), "{sql}");
        }
        assert!(!preparable("SELECT 1", 0));
    }

    #[test]
    fn literal_types_follow_postgresql() {
        let text = "SELECT 7, 2147483647, 2147483648, 0000000000002, 9223372036854775808, 'x'";
        let mut lits = Vec::new();
        super::super::literals::shape(text, &mut lits).unwrap();
        let mut types_out = Vec::new();
        let sig = types(text, &lits, &mut types_out);
        assert_eq!(types_out, [INT4, INT4, INT8, INT4, NUMERIC, UNKNOWN]);
        assert_eq!(sig, 1 | 1 << 2 | 2 << 4 | 1 << 6 | 3 << 8);
    }
}
