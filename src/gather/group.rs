//! Combining the partial aggregates of one group: the accumulator of each column and the value
//! it finally holds, typed and encoded as PostgreSQL would have computed it on one server.

use super::numeric::Numeric;
use super::value::oid::{BOOL, FLOAT4, FLOAT8, INT4, INT8, NUMERIC};
use super::value::{self, Kind, Value};
use super::Col;
use crate::error::Error;
use crate::router::Agg;
use std::collections::HashSet;

/// A running sum in the partial's own type.
#[derive(Debug, Clone)]
pub enum Sum {
    Empty,
    Int(i128),
    Num(Numeric),
    Float(f64),
}

impl Sum {
    fn add(&mut self, v: Value) -> Result<(), Error> {
        *self = match (std::mem::replace(self, Sum::Empty), v) {
            (s, Value::Null) => s,
            (Sum::Empty, Value::Int(i)) => Sum::Int(i as i128),
            (Sum::Int(a), Value::Int(i)) => Sum::Int(a + i as i128),
            (Sum::Empty, Value::Numeric(n)) => Sum::Num(n),
            (Sum::Num(a), Value::Numeric(n)) => Sum::Num(a.add(&n)),
            (Sum::Empty, Value::Float(f)) => Sum::Float(f),
            (Sum::Float(a), Value::Float(f)) => Sum::Float(a + f),
            _ => return Err(Error::internal("partial sums of different types")),
        };
        Ok(())
    }
}

/// The state of one column of one group.
#[derive(Debug, Clone)]
pub enum Acc {
    First(Option<Option<Vec<u8>>>),
    Count(i64),
    Sum(Sum),
    Best(Option<(Value, Vec<u8>)>),
    Bool(Option<bool>),
    Distinct(HashSet<Vec<u8>>),
    Nothing,
}

impl Acc {
    pub fn new(agg: Agg) -> Acc {
        match agg {
            Agg::First => Acc::First(None),
            Agg::Count => Acc::Count(0),
            Agg::Sum | Agg::Avg { .. } => Acc::Sum(Sum::Empty),
            Agg::Min | Agg::Max => Acc::Best(None),
            Agg::BoolAnd | Agg::BoolOr => Acc::Bool(None),
            Agg::CountDistinct { .. } => Acc::Distinct(HashSet::new()),
            Agg::Arg => Acc::Nothing,
        }
    }

    /// Folds in one shard row's value of this column; `arg` is the value a count(DISTINCT)
    /// counts (its `of` column). Returns the bytes newly held, for the memory bound.
    pub fn add(
        &mut self,
        agg: Agg,
        col: &Col,
        raw: Option<&[u8]>,
        arg: Option<(&Col, Option<&[u8]>)>,
        coll: &super::collate::Collation,
    ) -> Result<usize, Error> {
        match self {
            Acc::First(v @ None) => {
                *v = Some(raw.map(<[u8]>::to_vec));
                return Ok(raw.map_or(0, <[u8]>::len));
            }
            Acc::First(_) | Acc::Nothing => {}
            Acc::Count(n) => {
                if let Value::Int(i) = value::decode(col.kind, col.format, raw)? {
                    *n += i;
                }
            }
            Acc::Sum(s) => s.add(value::decode(col.kind, col.format, raw)?)?,
            Acc::Best(best) => {
                let v = value::decode(col.kind, col.format, raw)?;
                if matches!(v, Value::Null) {
                    return Ok(0);
                }
                let better = match best {
                    None => true,
                    Some((b, _)) => {
                        let o = value::cmp(&v, b, coll, col.bpchar);
                        if agg == Agg::Max {
                            o.is_gt()
                        } else {
                            o.is_lt()
                        }
                    }
                };
                if better {
                    let bytes = raw.map(<[u8]>::to_vec).unwrap_or_default();
                    let n = bytes.len();
                    *best = Some((v, bytes));
                    return Ok(n);
                }
            }
            Acc::Bool(b) => {
                if let Value::Bool(v) = value::decode(col.kind, col.format, raw)? {
                    *b = Some(match (*b, agg) {
                        (None, _) => v,
                        (Some(a), Agg::BoolAnd) => a && v,
                        (Some(a), _) => a || v,
                    });
                }
            }
            Acc::Distinct(set) => {
                let Some((of, raw)) = arg else { return Ok(0) };
                let v = value::decode(of.kind, of.format, raw)?;
                if matches!(v, Value::Null) {
                    return Ok(0);
                }
                let mut key = Vec::new();
                value::group_key(&v, of.bpchar, &mut key);
                let n = key.len() + 32;
                if set.insert(key) {
                    return Ok(n);
                }
            }
        }
        Ok(0)
    }
}

/// The type a combined column has: avg's differs from its partial sum's.
pub fn output_oid(agg: Agg, partial_oid: u32) -> u32 {
    match agg {
        Agg::Avg { .. } => match Kind::of(partial_oid) {
            Kind::Float4 | Kind::Float8 => FLOAT8,
            _ => NUMERIC,
        },
        // A count's partial type is bigint, or the integer type it was cast to.
        Agg::Count => partial_oid,
        Agg::CountDistinct { .. } => INT8,
        _ => partial_oid,
    }
}

/// The final bytes of one column of a group, in the column's output type and format.
pub fn finish(acc: &Acc, agg: Agg, col: &Col, accs: &[Acc]) -> Result<Option<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let value = match (acc, agg) {
        (Acc::First(v), _) => return Ok(v.clone().flatten()),
        (Acc::Nothing, _) => return Ok(None),
        (Acc::Best(b), _) => return Ok(b.as_ref().map(|(_, raw)| raw.clone())),
        (Acc::Count(n), _) if col.oid == INT4 && i32::try_from(*n).is_err() => {
            return Err(Error::OutOfRange {
                message: "integer out of range".into(),
            })
        }
        (Acc::Count(n), _) => Value::Int(*n),
        (Acc::Distinct(set), _) => Value::Int(set.len() as i64),
        (Acc::Bool(b), _) => match b {
            Some(b) => Value::Bool(*b),
            None => return Ok(None),
        },
        (Acc::Sum(s), Agg::Avg { count }) => {
            let n = match accs.get(count) {
                Some(Acc::Count(n)) => *n,
                _ => return Err(Error::internal("avg without its count")),
            };
            if n == 0 {
                return Ok(None);
            }
            match s {
                Sum::Empty => return Ok(None),
                Sum::Int(i) => Value::Numeric(Numeric::avg(&Numeric::from_i128(*i), n)),
                Sum::Num(x) => Value::Numeric(Numeric::avg(x, n)),
                Sum::Float(f) => Value::Float(f / n as f64),
            }
        }
        (Acc::Sum(s), _) => match s {
            Sum::Empty => return Ok(None),
            Sum::Int(i) => match i64::try_from(*i) {
                Ok(i) if col.oid == INT8 => Value::Int(i),
                _ => {
                    return Err(Error::OutOfRange {
                        message: "bigint out of range".into(),
                    })
                }
            },
            Sum::Num(x) => Value::Numeric(x.clone()),
            Sum::Float(f) if col.oid == FLOAT4 => Value::Float(*f as f32 as f64),
            Sum::Float(f) => Value::Float(*f),
        },
    };
    let oid = output_oid(agg, col.oid);
    let oid = if matches!(value, Value::Bool(_)) {
        BOOL
    } else {
        oid
    };
    value::encode(&value, oid, col.format, &mut out);
    Ok(Some(out))
}
