//! One multi-shard query's merge: the shards' rows in, the client's rows out. Ordered rows are
//! merged k-way as they stream in; grouped rows are combined, filtered by HAVING and sorted
//! once every shard has answered. OFFSET, LIMIT and DISTINCT apply on the way out.

use super::collate::Collation;
use super::group::{self, Acc};
use super::rows::{self, Field, Row};
use super::value::{self, Kind, Value};
use super::{having, Col};
use crate::error::Error;
use crate::router::{Agg, MergePlan, SortKey};
use bytes::{Bytes, BytesMut};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the session does next for an ordered merge.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read this shard's next row (or its end).
    Need(usize),
    /// Every row is out (or the LIMIT is reached).
    Done,
}

pub struct Gather {
    plan: Arc<MergePlan>,
    coll: Arc<Collation>,
    bytewise: Collation,
    limit_mb: u64,
    used: usize,
    /// The shard rows' columns, and the combined rows' (avg changes type).
    cols: Vec<Col>,
    out: Vec<Col>,
    visible: usize,
    /// Sort keys with absolute column indices.
    order: Vec<SortKey>,
    heads: Vec<Option<(Row, Vec<Value>)>>,
    done: Vec<bool>,
    groups: HashMap<Vec<u8>, Vec<Acc>>,
    seen: HashSet<Vec<u8>>,
    /// The plan's OFFSET and LIMIT, or the values bound to their parameters.
    offset: u64,
    limit: Option<u64>,
    skipped: u64,
    emitted: u64,
}

impl Gather {
    pub fn new(plan: Arc<MergePlan>, coll: Arc<Collation>, limit_mb: u64, shards: usize) -> Self {
        Gather {
            offset: plan.offset,
            limit: plan.limit,
            plan,
            coll,
            bytewise: Collation::bytewise(),
            limit_mb,
            used: 0,
            cols: Vec::new(),
            out: Vec::new(),
            visible: 0,
            order: Vec::new(),
            heads: vec![None; shards],
            done: vec![false; shards],
            groups: HashMap::new(),
            seen: HashSet::new(),
            skipped: 0,
            emitted: 0,
        }
    }

    /// Reads the shards' RowDescription; returns the client's (the visible columns, avg
    /// retyped) as a message.
    pub fn describe(&mut self, body: &[u8]) -> Result<BytesMut, Error> {
        let fields = rows::parse_description(body)?;
        let hidden = self.plan.hidden;
        if fields.len() < hidden {
            return Err(Error::internal(
                "a shard returned fewer columns than planned",
            ));
        }
        self.visible = fields.len() - hidden;
        let aggs: Option<&Vec<Agg>> = self.plan.group.as_ref().map(|g| &g.columns);
        if aggs.is_some_and(|a| a.len() != fields.len()) {
            return Err(Error::internal(
                "a shard returned other columns than planned",
            ));
        }
        self.cols = fields.iter().map(|f| Col::new(f.oid, f.format)).collect();
        let mut shown: Vec<Field> = fields[..self.visible].to_vec();
        self.out = self.cols.clone();
        if let Some(aggs) = aggs {
            for (i, agg) in aggs.iter().enumerate() {
                let oid = group::output_oid(*agg, fields[i].oid);
                if oid != fields[i].oid {
                    self.out[i] = Col::new(oid, fields[i].format);
                    if let Some(f) = shown.get_mut(i) {
                        f.oid = oid;
                        f.typlen = if oid == value::oid::FLOAT8 || oid == value::oid::INT8 {
                            8
                        } else {
                            -1
                        };
                        f.typmod = -1;
                        f.table = 0;
                        f.attnum = 0;
                    }
                }
            }
        }
        self.order = self
            .plan
            .order
            .iter()
            .map(|k| SortKey {
                column: if k.hidden {
                    self.visible + k.column
                } else {
                    k.column
                },
                ..*k
            })
            .collect();
        if let Some(bad) = self.order.iter().find(|k| k.column >= fields.len()) {
            return Err(Error::internal(format!(
                "sort column {} out of range",
                bad.column
            )));
        }
        if self.coll.is_missing() {
            self.refuse_text_order()?;
        }
        let mut msg = BytesMut::new();
        rows::put_description(&mut msg, &shown);
        Ok(msg)
    }

    /// The values bound to `LIMIT $n` / `OFFSET $n` (None: no limit).
    pub fn bind_limits(&mut self, limit: Option<u64>, offset: u64) {
        if self.plan.limit_param.is_some() {
            self.limit = limit;
        }
        if self.plan.offset_param.is_some() {
            self.offset = offset;
        }
    }

    /// Without the shards' collation, text cannot be ordered (ORDER BY, min, max) as they
    /// would order it.
    fn refuse_text_order(&self) -> Result<(), Error> {
        let text = |i: usize| {
            let c = &self.cols[i];
            matches!(c.kind, Kind::Text | Kind::Bpchar) && !c.bytewise
        };
        let sorted = self.order.iter().any(|k| !k.bytewise && text(k.column));
        let best = self.plan.group.as_ref().is_some_and(|g| {
            g.columns
                .iter()
                .enumerate()
                .any(|(i, a)| matches!(a, Agg::Min | Agg::Max) && text(i))
        });
        if sorted || best || self.plan.group.as_ref().is_some_and(|g| g.having.is_some()) {
            return Err(Error::unsupported(
                format!(
                    "ordering text across shards needs the shards' collation \"{}\", which is not installed on the shardgate host",
                    self.coll.name()
                ),
                "install that locale on the proxy's host (see `locale -a`), or order by the text with COLLATE \"C\"",
            ));
        }
        Ok(())
    }

    /// Rows stream from the shards in order and are merged as they come.
    pub fn ordered(&self) -> bool {
        self.plan.group.is_none() && !self.plan.order.is_empty()
    }

    /// No more rows are wanted.
    pub fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.emitted >= l)
    }

    pub fn tag(&self) -> String {
        format!("SELECT {}", self.emitted)
    }

    fn charge(&mut self, bytes: usize) -> Result<(), Error> {
        self.used += bytes;
        if self.used as u64 > self.limit_mb.saturating_mul(1 << 20) {
            return Err(Error::GatherMemory {
                limit_mb: self.limit_mb,
            });
        }
        Ok(())
    }

    /// One DataRow body from a shard.
    pub fn push(&mut self, shard: usize, body: Bytes, out: &mut BytesMut) -> Result<(), Error> {
        let row = Row::parse(body)?;
        if row.len() != self.cols.len() {
            return Err(Error::internal(
                "a shard row does not match its description",
            ));
        }
        if self.plan.group.is_some() {
            return self.accumulate(row);
        }
        if !self.ordered() {
            return self.emit(&row, out);
        }
        let keys = self.sort_values(&row, &self.cols)?;
        self.charge(row.size())?;
        match self.heads.get_mut(shard) {
            Some(slot) => *slot = Some((row, keys)),
            None => return Err(Error::internal("row from an unknown shard")),
        }
        Ok(())
    }

    /// A shard has sent all its rows.
    pub fn finish_shard(&mut self, shard: usize) {
        if let Some(d) = self.done.get_mut(shard) {
            *d = true;
        }
    }

    /// Ordered merge: emits rows while every live shard has one waiting.
    pub fn next(&mut self, out: &mut BytesMut) -> Result<Next, Error> {
        loop {
            if self.full() {
                return Ok(Next::Done);
            }
            let mut best: Option<usize> = None;
            for i in 0..self.heads.len() {
                match &self.heads[i] {
                    None if !self.done[i] => return Ok(Next::Need(i)),
                    None => {}
                    Some((_, keys)) => {
                        let better = match best.and_then(|b| self.heads[b].as_ref()) {
                            None => true,
                            Some((_, b)) => self.compare(keys, b) == Ordering::Less,
                        };
                        if better {
                            best = Some(i);
                        }
                    }
                }
            }
            let Some(i) = best else {
                return Ok(Next::Done);
            };
            let (row, _) = self.heads[i].take().expect("chosen head exists");
            self.used = self.used.saturating_sub(row.size());
            self.emit(&row, out)?;
            if !self.done[i] {
                return Ok(Next::Need(i));
            }
        }
    }

    fn sort_values(&self, row: &Row, cols: &[Col]) -> Result<Vec<Value>, Error> {
        self.order
            .iter()
            .map(|k| {
                let c = &cols[k.column];
                value::decode(c.kind, c.format, row.get(k.column))
            })
            .collect()
    }

    fn compare(&self, a: &[Value], b: &[Value]) -> Ordering {
        for (k, (x, y)) in self.order.iter().zip(a.iter().zip(b)) {
            let o = match (matches!(x, Value::Null), matches!(y, Value::Null)) {
                (true, true) => Ordering::Equal,
                (true, false) if k.nulls_first => Ordering::Less,
                (true, false) => Ordering::Greater,
                (false, true) if k.nulls_first => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    let coll = if k.bytewise || self.cols[k.column].bytewise {
                        &self.bytewise
                    } else {
                        &self.coll
                    };
                    let o = value::cmp(x, y, coll, self.cols[k.column].bpchar);
                    if k.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Writes one row for the client: after DISTINCT and OFFSET, up to LIMIT.
    fn emit(&mut self, row: &Row, out: &mut BytesMut) -> Result<(), Error> {
        if self.full() {
            return Ok(());
        }
        if self.plan.distinct {
            let mut key = Vec::new();
            for i in 0..self.visible {
                key_of(&self.out[i], row.get(i), &mut key)?;
            }
            let n = key.len() + 32;
            if !self.seen.insert(key) {
                return Ok(());
            }
            self.charge(n)?;
        }
        if self.skipped < self.offset {
            self.skipped += 1;
            return Ok(());
        }
        row.put_prefix(out, self.visible);
        self.emitted += 1;
        Ok(())
    }

    fn accumulate(&mut self, row: Row) -> Result<(), Error> {
        let Some(g) = &self.plan.group else {
            return Ok(());
        };
        let mut key = Vec::new();
        for &k in &g.keys {
            key_of(&self.cols[k], row.get(k), &mut key)?;
        }
        let mut added = 0;
        let accs = match self.groups.get_mut(&key) {
            Some(a) => a,
            None => {
                added += key.len() + 64 * g.columns.len();
                let fresh = g.columns.iter().map(|a| Acc::new(*a)).collect();
                self.groups.entry(key).or_insert(fresh)
            }
        };
        // A shard's grand-total row (`Grouping::total`) gives the constants, nothing more.
        let total = match g.total {
            Some(t) => matches!(
                value::decode(self.cols[t].kind, self.cols[t].format, row.get(t))?,
                Value::Int(1)
            ),
            None => false,
        };
        for (i, agg) in g.columns.iter().enumerate() {
            if total && *agg != Agg::First {
                continue;
            }
            let arg = match agg {
                Agg::CountDistinct { of, filter } => {
                    let passes = match filter {
                        None => true,
                        Some(c) => matches!(
                            value::decode(self.cols[*c].kind, self.cols[*c].format, row.get(*c))?,
                            Value::Bool(true)
                        ),
                    };
                    passes.then(|| (&self.cols[*of], row.get(*of)))
                }
                _ => None,
            };
            let coll = if self.cols[i].bytewise {
                &self.bytewise
            } else {
                &self.coll
            };
            added += accs[i].add(*agg, &self.cols[i], row.get(i), arg, coll)?;
        }
        self.charge(added)
    }

    /// Grouped: combines every group, then HAVING, ORDER BY and the rest on the way out.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        let Some(g) = self.plan.group.clone() else {
            return Ok(());
        };
        if g.single && self.groups.is_empty() {
            let fresh = g.columns.iter().map(|a| Acc::new(*a)).collect();
            self.groups.insert(Vec::new(), fresh);
        }
        let mut done: Vec<(Row, Vec<Value>)> = Vec::with_capacity(self.groups.len());
        for accs in std::mem::take(&mut self.groups).into_values() {
            let mut vals = Vec::with_capacity(accs.len());
            for (i, agg) in g.columns.iter().enumerate() {
                vals.push(group::finish(&accs[i], *agg, &self.cols[i], &accs)?);
            }
            let mut msg = BytesMut::new();
            rows::put_row(&mut msg, vals.iter().map(|v| v.as_deref()));
            let row = Row::parse(msg.freeze().slice(5..))?;
            if let Some(h) = &g.having {
                if having::eval(h, &row, &self.out, &self.coll)? != Some(true) {
                    continue;
                }
            }
            let keys = self.sort_values(&row, &self.out)?;
            self.charge(row.size())?;
            done.push((row, keys));
        }
        if !self.order.is_empty() {
            done.sort_by(|a, b| self.compare(&a.1, &b.1));
        }
        for (row, _) in done {
            if self.full() {
                break;
            }
            self.emit(&row, out)?;
        }
        Ok(())
    }
}

const INTERVAL: u32 = 1186;

/// Appends a value's grouping key. Types the proxy cannot read compare by their bytes, which
/// PostgreSQL prints canonically for most of them; interval is refused, as equal intervals
/// print differently ('1 day' = '24 hours').
fn key_of(c: &Col, raw: Option<&[u8]>, key: &mut Vec<u8>) -> Result<(), Error> {
    match c.kind {
        Kind::Other(INTERVAL) => Err(Error::unsupported(
            "grouping or DISTINCT on an interval across shards is not supported by shardgate",
            "group by a text or numeric form of the interval, or add a condition on the shard key",
        )),
        Kind::Other(_) => {
            match raw {
                None => key.push(0),
                Some(b) => {
                    key.push(1);
                    key.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    key.extend_from_slice(b);
                }
            }
            Ok(())
        }
        kind => {
            let v = value::decode(kind, c.format, raw)?;
            value::group_key(&v, c.bpchar, key);
            Ok(())
        }
    }
}
