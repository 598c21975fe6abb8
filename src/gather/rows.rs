//! The two row messages a merge reads and writes: RowDescription (which columns, of which
//! types and formats) and DataRow (their values), parsed without copying the values.

use crate::error::Error;
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub table: u32,
    pub attnum: i16,
    pub oid: u32,
    pub typlen: i16,
    pub typmod: i32,
    pub format: i16,
}

impl Field {
    /// A computed column (no table behind it), in text format.
    pub fn computed(name: &str, oid: u32) -> Field {
        Field {
            name: name.as_bytes().to_vec(),
            table: 0,
            attnum: 0,
            oid,
            typlen: -1,
            typmod: -1,
            format: 0,
        }
    }
}

fn malformed(what: &str) -> Error {
    Error::Protocol {
        message: format!("a shard sent a malformed {what}"),
    }
}

/// Parses a RowDescription body.
pub fn parse_description(body: &[u8]) -> Result<Vec<Field>, Error> {
    let bad = || malformed("RowDescription");
    let count = u16::from_be_bytes(
        body.get(..2)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let mut at = 2;
    let mut fields = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let end = at
            + body
                .get(at..)
                .ok_or_else(bad)?
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(bad)?;
        let name = body[at..end].to_vec();
        let rest = body.get(end + 1..end + 19).ok_or_else(bad)?;
        let u32_at =
            |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let i16_at = |i: usize| i16::from_be_bytes([rest[i], rest[i + 1]]);
        fields.push(Field {
            name,
            table: u32_at(0),
            attnum: i16_at(4),
            oid: u32_at(6),
            typlen: i16_at(10),
            typmod: u32_at(12) as i32,
            format: i16_at(16),
        });
        at = end + 19;
    }
    Ok(fields)
}

/// A RowDescription message (with its tag) for these fields.
pub fn put_description(out: &mut BytesMut, fields: &[Field]) {
    let len = 4 + 2 + fields.iter().map(|f| f.name.len() + 19).sum::<usize>();
    out.reserve(len + 1);
    out.put_u8(b'T');
    out.put_i32(len as i32);
    out.put_u16(fields.len() as u16);
    for f in fields {
        out.put_slice(&f.name);
        out.put_u8(0);
        out.put_u32(f.table);
        out.put_i16(f.attnum);
        out.put_u32(f.oid);
        out.put_i16(f.typlen);
        out.put_i32(f.typmod);
        out.put_i16(f.format);
    }
}

/// A DataRow: its body and where each column's value lies in it (None: NULL).
#[derive(Debug, Clone)]
pub struct Row {
    body: Bytes,
    cols: Vec<Option<Range<usize>>>,
}

impl Row {
    /// Parses a DataRow body.
    pub fn parse(body: Bytes) -> Result<Row, Error> {
        let bad = || malformed("DataRow");
        let count = u16::from_be_bytes(
            body.get(..2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let mut cols = Vec::with_capacity(count as usize);
        let mut at = 2usize;
        for _ in 0..count {
            let len = i32::from_be_bytes(
                body.get(at..at + 4)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?,
            );
            at += 4;
            if len < 0 {
                cols.push(None);
                continue;
            }
            let end = at
                .checked_add(len as usize)
                .filter(|&e| e <= body.len())
                .ok_or_else(bad)?;
            cols.push(Some(at..end));
            at = end;
        }
        Ok(Row { body, cols })
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.cols.get(i)?.as_ref().map(|r| &self.body[r.clone()])
    }

    /// Bytes this row holds, for the memory bound.
    pub fn size(&self) -> usize {
        self.body.len() + self.cols.len() * 16 + 48
    }

    /// Writes a DataRow message of the first `n` columns.
    pub fn put_prefix(&self, out: &mut BytesMut, n: usize) {
        put_row(out, (0..n.min(self.len())).map(|i| self.get(i)));
    }
}

/// Writes a DataRow message of these column values.
pub fn put_row<'a>(out: &mut BytesMut, cols: impl Iterator<Item = Option<&'a [u8]>> + Clone) {
    let (count, bytes) = cols.clone().fold((0usize, 0usize), |(n, b), c| {
        (n + 1, b + 4 + c.map_or(0, <[u8]>::len))
    });
    out.reserve(bytes + 7);
    out.put_u8(b'D');
    out.put_i32((4 + 2 + bytes) as i32);
    out.put_u16(count as u16);
    for c in cols {
        match c {
            Some(v) => {
                out.put_i32(v.len() as i32);
                out.put_slice(v);
            }
            None => out.put_i32(-1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_descriptions_round_trip() {
        let fields = vec![
            Field {
                name: b"id".to_vec(),
                table: 1,
                attnum: 1,
                oid: 20,
                typlen: 8,
                typmod: -1,
                format: 1,
            },
            Field {
                name: b"name".to_vec(),
                table: 0,
                attnum: 0,
                oid: 25,
                typlen: -1,
                typmod: -1,
                format: 0,
            },
        ];
        let mut out = BytesMut::new();
        put_description(&mut out, &fields);
        assert_eq!(out[0], b'T');
        assert_eq!(parse_description(&out[5..]).unwrap(), fields);
        let mut out = BytesMut::new();
        put_row(
            &mut out,
            [Some(&b"42"[..]), None, Some(&b""[..])].into_iter(),
        );
        let row = Row::parse(Bytes::copy_from_slice(&out[5..])).unwrap();
        assert_eq!(
            (row.len(), row.get(0), row.get(1), row.get(2)),
            (3, Some(&b"42"[..]), None, Some(&b""[..]))
        );
        let mut cut = BytesMut::new();
        row.put_prefix(&mut cut, 1);
        assert_eq!(
            Row::parse(Bytes::copy_from_slice(&cut[5..])).unwrap().len(),
            1
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"\x00\x01",
            b"\x00\x01\x00\x00\x00\x09ab",
            b"\x00\x02\xff\xff\xff\xff",
        ] {
            assert!(Row::parse(Bytes::copy_from_slice(body)).is_err());
        }
        assert!(parse_description(b"\x00\x01name").is_err());
        assert!(parse_description(b"\x00\x01n\x00\x00").is_err());
    }
}
