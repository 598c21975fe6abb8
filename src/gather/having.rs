//! HAVING over combined groups, in SQL's three-valued logic: comparisons of aggregates with
//! constants, other aggregates, or values the shards computed.

use super::collate::Collation;
use super::numeric::Numeric;
use super::rows::Row;
use super::value::{self, Kind, Value};
use super::Col;
use crate::error::Error;
use crate::router::{CmpOp, Operand, Pred};
use std::cmp::Ordering;

/// Whether a combined row passes: Some(true) keeps it; NULL (None) and false drop it.
pub fn eval(p: &Pred, row: &Row, cols: &[Col], coll: &Collation) -> Result<Option<bool>, Error> {
    Ok(match p {
        Pred::And(a, b) => match (eval(a, row, cols, coll)?, eval(b, row, cols, coll)?) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Pred::Or(a, b) => match (eval(a, row, cols, coll)?, eval(b, row, cols, coll)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Pred::Not(a) => eval(a, row, cols, coll)?.map(|b| !b),
        Pred::Column(i) => match column(row, cols, *i)? {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            _ => return Err(Error::internal("HAVING column is not boolean")),
        },
        Pred::IsNull { operand, negated } => {
            let null = match operand {
                Operand::Null => true,
                Operand::Literal(_) => false,
                Operand::Column(i) => row.get(*i).is_none(),
            };
            Some(null != *negated)
        }
        Pred::Cmp { op, left, right } => {
            let kind_of = |o: &Operand| match o {
                Operand::Column(i) => cols.get(*i).map(|c| c.kind),
                _ => None,
            };
            let (lk, rk) = (kind_of(left), kind_of(right));
            let l = operand(left, row, cols, rk)?;
            let r = operand(right, row, cols, lk)?;
            if matches!(l, Value::Null) || matches!(r, Value::Null) {
                return Ok(None);
            }
            let bpchar = [left, right].iter().any(|o| match o {
                Operand::Column(i) => cols.get(*i).is_some_and(|c| c.bpchar),
                _ => false,
            });
            let o = compare(l, r, coll, bpchar);
            Some(match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            })
        }
    })
}

fn column(row: &Row, cols: &[Col], i: usize) -> Result<Value, Error> {
    let c = cols
        .get(i)
        .ok_or_else(|| Error::internal("HAVING names a missing column"))?;
    value::decode(c.kind, c.format, row.get(i))
}

/// A constant is read as the type of the column it is compared with (as PostgreSQL resolves
/// an untyped literal); numbers that do not fit an integer column are read as numeric.
fn operand(o: &Operand, row: &Row, cols: &[Col], other: Option<Kind>) -> Result<Value, Error> {
    match o {
        Operand::Null => Ok(Value::Null),
        Operand::Column(i) => column(row, cols, *i),
        Operand::Literal(text) => {
            let kind = other.unwrap_or(Kind::Numeric);
            match value::decode(kind, 0, Some(text.as_bytes())) {
                Ok(v) => Ok(v),
                Err(_) if matches!(kind, Kind::Int | Kind::Float4 | Kind::Float8) => {
                    value::decode(Kind::Numeric, 0, Some(text.as_bytes()))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Compares across numeric types as PostgreSQL's cross-type operators do: integers and
/// numerics exactly, anything with a float as float8.
fn compare(l: Value, r: Value, coll: &Collation, bpchar: bool) -> Ordering {
    let as_float = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Numeric(n) => n.to_text().parse::<f64>().ok(),
        _ => None,
    };
    match (&l, &r) {
        (Value::Int(a), Value::Numeric(_)) => value::cmp(
            &Value::Numeric(Numeric::from_i128(*a as i128)),
            &r,
            coll,
            bpchar,
        ),
        (Value::Numeric(_), Value::Int(b)) => value::cmp(
            &l,
            &Value::Numeric(Numeric::from_i128(*b as i128)),
            coll,
            bpchar,
        ),
        (Value::Float(_), Value::Int(_) | Value::Numeric(_))
        | (Value::Int(_) | Value::Numeric(_), Value::Float(_)) => {
            match (as_float(&l), as_float(&r)) {
                (Some(a), Some(b)) => value::cmp(&Value::Float(a), &Value::Float(b), coll, bpchar),
                _ => Ordering::Equal,
            }
        }
        _ => value::cmp(&l, &r, coll, bpchar),
    }
}
