//! `COPY table FROM STDIN`: the client's rows split by key across the shards (or copied to every
//! shard for a reference table), in one transaction on each, answered with one `COPY n`.

use super::copy_binary::{BinaryKey, BinarySplitter};
use super::copy_split::{CopyFormat, RowKey, RowSplitter};
use super::{Gone, Session, Step};
use crate::backend::PooledConn;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::{Key, Ring, ShardId};
use crate::router::CopyIn;
use bytes::{BufMut, BytesMut};
use std::cell::RefCell;

/// Rows for one shard are sent once this much has gathered.
const SEND_AT: usize = 64 * 1024;

impl Session {
    /// Runs a COPY FROM STDIN on every member of `ring` (the ring the statement was routed
    /// with, which places its rows); atomic across them outside a transaction.
    pub(super) async fn copy_in(&mut self, sql: &str, copy: &CopyIn, ring: &Ring) -> Step<bool> {
        if ring.members().is_empty() {
            return self.fail(&Error::internal("no shard owns keys in the ring"));
        }
        let wrap = self.txn.is_none() && ring.shard_count() > 1;
        if wrap {
            self.txn = Some(super::txn::Txn::implicit(self.settings.clone()));
        }
        let ok = self.copy_in_shards(sql, copy, ring).await?;
        if wrap {
            let committed = self.end_txn(ok, false).await?;
            return Ok(ok && committed);
        }
        Ok(ok)
    }

    /// `conns` is in the order of `ring.members()`, which `place` relies on.
    async fn copy_in_shards(&mut self, sql: &str, copy: &CopyIn, ring: &Ring) -> Step<bool> {
        let mut conns: Vec<(ShardId, PooledConn)> = Vec::new();
        for &shard in ring.members() {
            match self.acquire(shard).await {
                Ok(mut c) => {
                    c.send_query(sql);
                    conns.push((shard, c));
                }
                Err(e) => {
                    self.abort_copy(conns, "a shard is unavailable").await;
                    return self.fail(&e);
                }
            }
        }
        // Every shard must be ready to take rows before the client sends any.
        let mut response = None;
        for (_, c) in conns.iter_mut() {
            let _ = c.flush().await;
        }
        let mut refused = None;
        // Which shards are now in COPY mode (the others have answered to the end).
        let mut copying = vec![false; conns.len()];
        for (i, (_, c)) in conns.iter_mut().enumerate() {
            loop {
                match c.recv().await {
                    Ok(f) if f.tag == b'G' => {
                        response.get_or_insert(f);
                        copying[i] = true;
                        break;
                    }
                    Ok(f) if f.tag == b'E' => {
                        refused.get_or_insert(f);
                    }
                    Ok(f) if f.tag == b'Z' => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let Some(response) = response.filter(|_| refused.is_none()) else {
            // Only shards in COPY mode answer a CopyFail; waiting on the others would hang.
            let (mut busy, mut done) = (Vec::new(), Vec::new());
            for (conn, copying) in conns.into_iter().zip(copying) {
                if copying {
                    busy.push(conn);
                } else {
                    done.push(conn);
                }
            }
            for (shard, c) in done {
                self.release(shard, c);
            }
            self.abort_copy(busy, "COPY refused on another shard").await;
            match refused {
                Some(err) => self.out.extend_from_slice(&err.bytes),
                None => self.error(&Error::internal("no shard accepted the COPY")),
            }
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
            return Ok(false);
        };
        self.out.extend_from_slice(&response.bytes);
        self.flush().await?;
        let routing = self.stream_rows(copy, ring, &mut conns).await?;
        // Collect every shard's answer: one COPY count, or the first error.
        let mut total: u64 = 0;
        let mut first_tag = None;
        let mut error: Option<Frame> = None;
        let mut lost = None;
        for (shard, c) in conns.iter_mut() {
            loop {
                match c.recv().await {
                    Ok(f) if f.tag == b'Z' => break,
                    Ok(f) if f.tag == b'C' => {
                        let tag = protocol::command_tag(f.body()).to_owned();
                        total += tag
                            .rsplit_once(' ')
                            .and_then(|(_, n)| n.parse::<u64>().ok())
                            .unwrap_or(0);
                        first_tag.get_or_insert(tag);
                    }
                    Ok(f) if f.tag == b'E' => {
                        error.get_or_insert(f);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        lost.get_or_insert((*shard, e));
                        break;
                    }
                }
            }
        }
        for (shard, c) in conns {
            self.release(shard, c);
        }
        if let Some(e) = routing {
            return self.fail(&e);
        }
        if let Some((shard, e)) = lost {
            let err = Error::ShardUnavailable {
                shard: self.ctx.backend.name(shard).to_owned(),
                detail: format!("connection lost: {e}"),
            };
            return self.fail(&err);
        }
        if let Some(err) = error {
            self.out.extend_from_slice(&err.bytes);
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
            return Ok(false);
        }
        // A reference table's copies each count every row: report one copy's count.
        let tag = match (copy.key, first_tag) {
            (None, Some(t)) => t,
            _ => format!("COPY {total}"),
        };
        protocol::put_command_complete(&mut self.out, &tag);
        Ok(true)
    }

    /// Reads the client's CopyData to its end, sending each row to its shard. Returns the error
    /// that made the COPY fail on the proxy's side (a row it cannot place), if any; the shards
    /// were then told CopyFail.
    async fn stream_rows(
        &mut self,
        copy: &CopyIn,
        ring: &Ring,
        conns: &mut [(ShardId, PooledConn)],
    ) -> Step<Option<Error>> {
        let format = if copy.csv {
            CopyFormat::Csv {
                delimiter: copy.delimiter,
                quote: copy.quote,
                escape: copy.escape,
            }
        } else {
            CopyFormat::Text {
                delimiter: copy.delimiter,
            }
        };
        let key_index = copy.key.map_or(0, |(i, _)| i);
        let mut splitter = if copy.binary {
            Splitter::Binary(BinarySplitter::new(key_index))
        } else {
            Splitter::Text(RowSplitter::new(format, key_index, copy.header))
        };
        // One buffer per connection, so per member of the ring (see `buffer_of`).
        let mut bufs: Vec<BytesMut> = vec![BytesMut::new(); conns.len()];
        let mut failed: Option<Error> = None;
        loop {
            let frame = match self.client.next().await {
                Ok(Some(f)) => f,
                _ => {
                    self.abort_shards(conns, "the client went away").await;
                    return Err(Gone);
                }
            };
            let done = match frame.tag {
                b'd' => {
                    let data = frame.body();
                    match &mut splitter {
                        Splitter::Text(sp) => {
                            place(sp, Input::Data(data), copy, ring, &mut bufs, &mut failed)
                        }
                        Splitter::Binary(sp) => {
                            place_binary(sp, Some(data), copy, ring, &mut bufs, &mut failed)
                        }
                    }
                    false
                }
                b'c' => {
                    match &mut splitter {
                        Splitter::Text(sp) => {
                            place(sp, Input::End, copy, ring, &mut bufs, &mut failed);
                            // PostgreSQL takes a last line without its newline; the rows are
                            // concatenated per shard, so each buffer must end with one.
                            for b in bufs.iter_mut() {
                                if !b.is_empty() && !b.ends_with(b"\n") {
                                    b.put_u8(b'\n');
                                }
                            }
                        }
                        Splitter::Binary(sp) => {
                            place_binary(sp, None, copy, ring, &mut bufs, &mut failed)
                        }
                    }
                    true
                }
                b'f' => {
                    let reason = protocol::query_text(frame.body()).unwrap_or("COPY failed");
                    self.abort_shards(conns, &format!("COPY from the client failed: {reason}"))
                        .await;
                    return Ok(None);
                }
                // Flush and Sync mean nothing during COPY.
                b'H' | b'S' => false,
                other => {
                    failed.get_or_insert(Error::Protocol {
                        message: format!("unexpected message type 0x{other:02x} during COPY"),
                    });
                    true
                }
            };
            if failed.is_some() {
                if !done {
                    // As PostgreSQL does: swallow the rest of the client's data, then answer.
                    self.skip_copy_data().await?;
                }
                self.abort_shards(conns, "a row could not be placed").await;
                return Ok(failed);
            }
            for (i, (_, c)) in conns.iter_mut().enumerate() {
                let b = &mut bufs[i];
                if !b.is_empty() && (done || b.len() >= SEND_AT) {
                    let mut msg = BytesMut::with_capacity(b.len() + 5);
                    put_copy_data(&mut msg, b);
                    c.send(&msg);
                    b.clear();
                }
                if done {
                    c.send(&[b'c', 0, 0, 0, 4]);
                }
                let _ = c.flush().await;
            }
            if done {
                return Ok(None);
            }
        }
    }

    /// Reads and drops the client's CopyData up to its CopyDone or CopyFail.
    async fn skip_copy_data(&mut self) -> Step {
        loop {
            match self.client.next().await {
                Ok(Some(f)) if matches!(f.tag, b'c' | b'f') => return Ok(()),
                Ok(Some(_)) => {}
                _ => return Err(Gone),
            }
        }
    }

    /// Ends a COPY on every shard that started it, so their connections come back usable.
    async fn abort_shards(&mut self, conns: &mut [(ShardId, PooledConn)], reason: &str) {
        for (_, c) in conns.iter_mut() {
            c.send(&super::exec::copy_fail(reason));
            let _ = c.flush().await;
        }
    }

    async fn abort_copy(&mut self, mut conns: Vec<(ShardId, PooledConn)>, reason: &str) {
        self.abort_shards(&mut conns, reason).await;
        for (shard, mut c) in conns {
            let _ = c.flush().await;
            loop {
                match c.recv().await {
                    Ok(f) if f.tag == b'Z' => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            self.release(shard, c);
        }
    }
}

/// The buffer of the shard that owns `key`: its position among the ring's members, as the
/// connections are ordered. Keys land only on members, and copy_in refuses a ring without any.
fn buffer_of(ring: &Ring, key: &Key) -> usize {
    let shard = ring.shard_for_key(key);
    ring.members().binary_search(&shard).unwrap_or(0)
}

enum Splitter {
    Text(RowSplitter),
    Binary(BinarySplitter),
}

/// Binary COPY: every shard's stream gets the client's header, its own tuples, and a trailer.
fn place_binary(
    splitter: &mut BinarySplitter,
    data: Option<&[u8]>,
    copy: &CopyIn,
    ring: &Ring,
    bufs: &mut [BytesMut],
    failed: &mut Option<Error>,
) {
    let Some(data) = data else {
        if let Err(message) = splitter.finish() {
            failed.get_or_insert(Error::Syntax { message });
        }
        if splitter.header().is_some() {
            bufs.iter_mut()
                .for_each(|b| b.extend_from_slice(&[0xff, 0xff]));
        }
        return;
    };
    let had_header = splitter.header().is_some();
    let fed = splitter.feed(data, &mut |tuple, key| {
        if failed.is_some() {
            return;
        }
        match (copy.key, key) {
            (None, _) => bufs.iter_mut().for_each(|b| b.extend_from_slice(tuple)),
            (Some((_, ty)), BinaryKey::Value(v)) => match Key::from_binary(ty, 0, v) {
                Ok(k) => bufs[buffer_of(ring, &k)].extend_from_slice(tuple),
                Err(e) => {
                    *failed = Some(Error::unsupported(
                        format!("COPY row cannot be placed: {}", e.0),
                        "every row needs a valid value in the shard key column",
                    ))
                }
            },
            (Some(_), BinaryKey::Null | BinaryKey::Missing) => {
                *failed = Some(Error::unsupported(
                    "COPY row has no shard key value: a NULL key cannot be placed",
                    "every row needs a valid value in the shard key column",
                ))
            }
        }
    });
    if let Err(message) = fed {
        failed.get_or_insert(Error::Syntax { message });
    }
    if let (false, Some(header)) = (had_header, splitter.header()) {
        for b in bufs.iter_mut() {
            let mut with_header = BytesMut::from(header);
            with_header.extend_from_slice(b);
            *b = with_header;
        }
    }
}

enum Input<'a> {
    Data(&'a [u8]),
    End,
}

/// Feeds COPY data to the splitter and appends each row to its shard's buffer (every buffer for
/// a reference table or the header). The first row that cannot be placed is kept in `failed`.
fn place(
    splitter: &mut RowSplitter,
    input: Input<'_>,
    copy: &CopyIn,
    ring: &Ring,
    bufs: &mut Vec<BytesMut>,
    failed: &mut Option<Error>,
) {
    // The row and header callbacks both append, in stream order.
    let state = RefCell::new((std::mem::take(bufs), failed.take()));
    let mut on_row = |row: &[u8], key: RowKey| {
        let mut guard = state.borrow_mut();
        let (bufs, failed) = &mut *guard;
        if failed.is_some() {
            return;
        }
        let problem = match (copy.key, key) {
            (None, _) => {
                bufs.iter_mut().for_each(|b| b.extend_from_slice(row));
                None
            }
            (Some((_, ty)), RowKey::Value(text)) => match Key::from_text(ty, &text) {
                Ok(k) => {
                    bufs[buffer_of(ring, &k)].extend_from_slice(row);
                    None
                }
                Err(e) => Some(format!("COPY row cannot be placed: {}", e.0)),
            },
            (Some(_), RowKey::Null | RowKey::Missing) => {
                Some("COPY row has no shard key value: a NULL key cannot be placed".to_owned())
            }
        };
        if let Some(message) = problem {
            *failed = Some(Error::unsupported(
                message,
                "every row needs a valid value in the shard key column",
            ));
        }
    };
    // A CSV header goes to every shard, whose COPY expects one too.
    let mut on_header = |row: &[u8]| {
        for b in state.borrow_mut().0.iter_mut() {
            b.extend_from_slice(row);
        }
    };
    let end = match input {
        Input::Data(d) => {
            splitter.feed(d, &mut on_row, &mut on_header);
            Ok(())
        }
        Input::End => splitter.finish(&mut on_row, &mut on_header),
    };
    let (b, mut f) = state.into_inner();
    if let Err(message) = end {
        f.get_or_insert(Error::Syntax { message });
    }
    *bufs = b;
    *failed = f;
}

/// A CopyData message carrying `data`.
fn put_copy_data(out: &mut BytesMut, data: &[u8]) {
    out.put_u8(b'd');
    out.put_i32(data.len() as i32 + 4);
    out.put_slice(data);
}
