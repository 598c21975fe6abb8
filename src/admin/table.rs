//! A console answer: typed columns and text rows, written as RowDescription, DataRows and
//! CommandComplete.

use crate::gather::rows::{put_description, put_row, Field};
use bytes::BytesMut;

/// A column's type as clients see it (so that numbers sort and format as numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
}

impl Kind {
    fn oid(self) -> (u32, i16) {
        match self {
            Kind::Text => (25, -1),
            Kind::Int => (20, 8),
            Kind::Float => (701, 8),
            Kind::Bool => (16, 1),
        }
    }
}

pub struct Table {
    columns: Vec<(&'static str, Kind)>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Kind)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one value per column.
    pub fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    pub fn write(&self, out: &mut BytesMut) {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind)| {
                let (oid, typlen) = kind.oid();
                Field {
                    name: name.as_bytes().to_vec(),
                    table: 0,
                    attnum: 0,
                    oid,
                    typlen,
                    typmod: -1,
                    format: 0,
                }
            })
            .collect();
        put_description(out, &fields);
        for r in &self.rows {
            put_row(out, r.iter().map(|v| v.as_deref().map(str::as_bytes)));
        }
        crate::protocol::put_command_complete(out, &format!("SHOW {}", self.rows.len()));
    }
}

/// Cell helpers: every value is sent in text form.
pub fn text(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}

pub fn int(n: impl Into<i128>) -> Option<String> {
    Some(n.into().to_string())
}

pub fn float(x: f64, decimals: usize) -> Option<String> {
    x.is_finite().then(|| format!("{x:.decimals$}"))
}

pub fn boolean(b: bool) -> Option<String> {
    Some(if b { "t" } else { "f" }.to_owned())
}
