//! Streams a table's moving rows from a source shard into the stage tables of their new shards
//! with binary COPY: the source sends every row (or the rows of some keys) with its key as text
//! in front; the key decides the row's new shard, and the row goes on without that column.

use super::plan::{Shard, TableMove};
use crate::error::Error;
use crate::ring::{Key, Ring, ShardId};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::pin::Pin;
use tokio_postgres::{Client, CopyInSink};

/// PGCOPY signature, flags and an empty header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A target's buffer is sent once it holds this much.
const FLUSH_AT: usize = 256 * 1024;

/// What one pass moved.
#[derive(Debug, Default, Clone)]
pub struct Moved {
    pub rows: u64,
    pub bytes: u64,
    /// Keys (as the source spells them in text) of the rows that left, by their new shard.
    pub keys: HashMap<ShardId, Vec<String>>,
}

/// Copies the rows of `table` on `source` whose owner under `ring` is another shard into that
/// shard's stage table. `keys` limits the pass to rows with those keys (as SQL literals).
pub async fn copy_moving(
    source: (ShardId, &Client),
    targets: &HashMap<ShardId, Shard>,
    table: &TableMove,
    ring: &Ring,
    keys: Option<&[String]>,
) -> Result<Moved, Error> {
    let filter = match keys {
        Some(list) => format!(" WHERE {} IN ({})", table.key, list.join(", ")),
        None => String::new(),
    };
    let sql = format!(
        "COPY (SELECT {}::text, {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
        table.key, table.columns, table.qualified
    );
    let stream = source
        .1
        .copy_out(sql.as_str())
        .await
        .map_err(|e| pg_error(&table.name, "reading rows", e))?;
    let mut stream = std::pin::pin!(stream);
    let mut buf = BytesMut::new();
    let mut header_done = false;
    let mut outs: HashMap<ShardId, Out> = HashMap::new();
    let mut moved = Moved::default();
    'read: while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| pg_error(&table.name, "reading rows", e))?;
        buf.extend_from_slice(&chunk);
        if !header_done {
            let Some(n) = header_len(&buf)? else {
                continue;
            };
            buf.advance(n);
            header_done = true;
        }
        while let Some(len) = tuple_len(&buf)? {
            let Some(len) = len else {
                break 'read;
            };
            let tuple = buf.split_to(len).freeze();
            let (key, rest) = split_key(&tuple)?;
            let Some(key_text) = key else {
                // A row without a key cannot be placed by any ring; it stays where it is.
                continue;
            };
            let parsed = Key::from_text(table.key_type, key_text).map_err(|e| {
                Error::internal(format!("{}: key {key_text:?} unreadable: {e}", table.name))
            })?;
            let owner = ring.shard_for_key(&parsed);
            if owner == source.0 {
                continue;
            }
            let out = match outs.get_mut(&owner) {
                Some(o) => o,
                None => {
                    let Some(t) = targets.get(&owner) else {
                        return Err(Error::internal(format!(
                            "{}: the new ring names a shard with no connection",
                            table.name
                        )));
                    };
                    let o = Out::open(&t.client, table).await?;
                    outs.entry(owner).or_insert(o)
                }
            };
            // The tuple minus its first field: field count - 1, then the fields after the key.
            out.buf
                .put_i16(i16::from_be_bytes([tuple[0], tuple[1]]) - 1);
            out.buf.extend_from_slice(rest);
            out.rows += 1;
            moved.rows += 1;
            moved.bytes += rest.len() as u64;
            let list = moved.keys.entry(owner).or_default();
            list.push(key_text.to_owned());
            if out.buf.len() >= FLUSH_AT {
                out.flush(&table.name).await?;
            }
        }
    }
    for (_, out) in outs {
        out.finish(&table.name).await?;
    }
    Ok(moved)
}

/// Copies a whole table (a reference table) from one shard to another, byte for byte.
pub async fn copy_whole(
    from: &Client,
    to: &Client,
    qualified: &str,
    name: &str,
) -> Result<u64, Error> {
    let out = from
        .copy_out(format!("COPY {qualified} TO STDOUT (FORMAT binary)").as_str())
        .await
        .map_err(|e| pg_error(name, "reading rows", e))?;
    let sink = to
        .copy_in(format!("COPY {qualified} FROM STDIN (FORMAT binary)").as_str())
        .await
        .map_err(|e| pg_error(name, "writing rows", e))?;
    let mut out = std::pin::pin!(out);
    let mut sink = std::pin::pin!(sink);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(|e| pg_error(name, "reading rows", e))?;
        sink.send(chunk)
            .await
            .map_err(|e| pg_error(name, "writing rows", e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| pg_error(name, "writing rows", e))
}

/// One target's COPY into its stage table.
struct Out {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
    rows: u64,
}

impl Out {
    async fn open(client: &Client, table: &TableMove) -> Result<Out, Error> {
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.stage, table.columns
        );
        let sink = client
            .copy_in(sql.as_str())
            .await
            .map_err(|e| pg_error(&table.name, "writing rows", e))?;
        let mut buf = BytesMut::with_capacity(FLUSH_AT + 8192);
        buf.extend_from_slice(HEADER);
        Ok(Out {
            sink: Box::pin(sink),
            buf,
            rows: 0,
        })
    }

    async fn flush(&mut self, table: &str) -> Result<(), Error> {
        let data = self.buf.split().freeze();
        self.sink
            .send(data)
            .await
            .map_err(|e| pg_error(table, "writing rows", e))
    }

    async fn finish(mut self, table: &str) -> Result<(), Error> {
        self.buf.put_i16(-1);
        self.flush(table).await?;
        let n = self
            .sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| pg_error(table, "writing rows", e))?;
        if n != self.rows {
            return Err(Error::internal(format!(
                "{table}: the new shard took {n} rows of {}",
                self.rows
            )));
        }
        Ok(())
    }
}

fn pg_error(table: &str, doing: &str, e: tokio_postgres::Error) -> Error {
    Error::internal(format!("rebalance of {table}: {doing}: {}", describe(&e)))
}

/// A tokio-postgres error with the server's message when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Length of the COPY header once it is all in `buf`.
fn header_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < 19 {
        return Ok(None);
    }
    if &buf[..11] != b"PGCOPY\n\xff\r\n\0" {
        return Err(Error::internal("binary COPY without its signature"));
    }
    let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
    Ok((buf.len() >= 19 + ext).then_some(19 + ext))
}

/// The length of the tuple at the start of `buf`: None when incomplete, Some(None) at the
/// trailer.
fn tuple_len(buf: &[u8]) -> Result<Option<Option<usize>>, Error> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fields = i16::from_be_bytes([buf[0], buf[1]]);
    if fields == -1 {
        return Ok(Some(None));
    }
    if fields < 1 {
        return Err(Error::internal(format!(
            "binary COPY tuple of {fields} fields"
        )));
    }
    let mut at = 2usize;
    for _ in 0..fields {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        at += 4;
        if len > 0 {
            at += len as usize;
        }
        if buf.len() < at {
            return Ok(None);
        }
    }
    Ok(Some(Some(at)))
}

/// The first field as text (None for NULL) and the bytes of the fields after it.
fn split_key(tuple: &[u8]) -> Result<(Option<&str>, &[u8]), Error> {
    let len = i32::from_be_bytes([tuple[2], tuple[3], tuple[4], tuple[5]]);
    if len < 0 {
        return Ok((None, &tuple[6..]));
    }
    let end = 6 + len as usize;
    let key = std::str::from_utf8(&tuple[6..end])
        .map_err(|_| Error::internal("a shard key's text is not UTF-8"))?;
    Ok((Some(key), &tuple[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                Some(b) => {
                    v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    v.extend_from_slice(b);
                }
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        v
    }

    #[test]
    fn tuples_are_found_whole_or_not_at_all() {
        let t = tuple(&[Some(b"42"), None, Some(b"abc")]);
        for cut in 0..t.len() {
            assert_eq!(tuple_len(&t[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(tuple_len(&t).unwrap(), Some(Some(t.len())));
        assert_eq!(tuple_len(&(-1i16).to_be_bytes()).unwrap(), Some(None));
        let (key, rest) = split_key(&t).unwrap();
        assert_eq!(key, Some("42"));
        assert_eq!(rest, &t[8..]);
    }

    #[test]
    fn header_with_extension() {
        let mut h = HEADER.to_vec();
        assert_eq!(header_len(&h).unwrap(), Some(19));
        h[18] = 3;
        assert_eq!(header_len(&h).unwrap(), None);
        h.extend_from_slice(b"xyz");
        assert_eq!(header_len(&h).unwrap(), Some(22));
        assert!(header_len(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0").is_err());
    }
}
