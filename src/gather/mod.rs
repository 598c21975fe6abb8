//! Merging many shards' results into the one answer an unsharded PostgreSQL would give: the
//! k-way merge of ordered rows, LIMIT/OFFSET, DISTINCT, and aggregates combined per group.

pub mod collate;
mod datetime;
pub mod float;
mod group;
mod having;
pub mod merge;
#[cfg(test)]
mod merge_tests;
pub mod numeric;
pub mod rows;
pub mod value;

pub use merge::{Gather, Next};

/// What the merge knows of one column: its type, how it reads, and its wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub oid: u32,
    pub kind: value::Kind,
    pub format: i16,
    /// character(n): trailing spaces do not count when comparing.
    pub bpchar: bool,
    /// `name` orders by the "C" collation whatever the database's.
    pub bytewise: bool,
}

impl Col {
    pub fn new(oid: u32, format: i16) -> Col {
        Col {
            oid,
            kind: value::Kind::of(oid),
            format,
            bpchar: oid == value::oid::BPCHAR,
            bytewise: oid == value::oid::NAME,
        }
    }
}
