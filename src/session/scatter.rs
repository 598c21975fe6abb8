//! Running one statement on several shards: their rows concatenated (or put back in the order
//! of a split INSERT's rows), their command tags added up.

use super::exec::{Cancellable, Recv};
use super::{Session, Step};
use crate::backend::PooledConn;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use std::collections::VecDeque;

/// How the answers of several shards become one.
pub(super) enum Combine {
    /// Rows concatenated, counts added.
    Concat,
    /// Identical copies (reference tables): the first shard's rows and count.
    FirstCopy,
    /// A split INSERT: RETURNING rows put back in VALUES order (the shard of each row given).
    RowOrder(Vec<ShardId>),
}

impl Session {
    /// Runs per-shard SQL on several shards and answers as one result, combined as `combine` says.
    pub(super) async fn exec_many(
        &mut self,
        parts: Vec<(ShardId, String)>,
        combine: Combine,
    ) -> Step<bool> {
        let replicated = matches!(combine, Combine::FirstCopy);
        let mut held: Vec<VecDeque<Frame>> = vec![VecDeque::new(); parts.len()];
        let mut conns: Vec<(ShardId, PooledConn)> = Vec::with_capacity(parts.len());
        for (shard, sql) in &parts {
            match self.acquire(*shard).await {
                Ok(mut c) => {
                    c.send_query(sql);
                    if let Err(e) = c.flush().await {
                        self.restore(conns);
                        return self.broken(*shard, c, e);
                    }
                    conns.push((*shard, c));
                }
                Err(e) => {
                    // The statements already sent still run; drain them so the connections
                    // come back clean.
                    let drained = self.drain_all(conns).await?;
                    self.restore(drained);
                    return self.fail(&e);
                }
            }
        }
        let keys: Vec<&PooledConn> = conns.iter().map(|(_, c)| c).collect();
        let _cancellable = Cancellable::new(&self.running, &keys);
        drop(keys);
        let mut described = false;
        let mut copying = false;
        let mut tags: Vec<String> = Vec::new();
        let mut first_error: Option<Frame> = None;
        let mut broken: Option<Error> = None;
        let mut done = Vec::with_capacity(conns.len());
        let mut pending: VecDeque<(ShardId, PooledConn)> = conns.into();
        let mut i = 0;
        while let Some((shard, mut conn)) = pending.pop_front() {
            loop {
                let received = match self.recv(&mut conn).await {
                    Ok(r) => r,
                    Err(gone) => {
                        // The client left: the other shards' answers are unread, so their
                        // connections must not go back to the pool.
                        for (_, c) in &mut pending {
                            c.broken = true;
                        }
                        return Err(gone);
                    }
                };
                let frame = match received {
                    Recv::Frame(f) => f,
                    Recv::Broken(e) => {
                        broken.get_or_insert(self.unavailable(shard, e));
                        break;
                    }
                };
                match frame.tag {
                    b'Z' => break,
                    b'T' if !described => {
                        described = true;
                        self.out.extend_from_slice(&frame.bytes);
                    }
                    b'D' if matches!(combine, Combine::RowOrder(_)) => held[i].push_back(frame),
                    b'D' if i == 0 || !replicated => {
                        self.out.extend_from_slice(&frame.bytes);
                        self.maybe_flush().await?;
                    }
                    b'C' if i == 0 || !replicated => {
                        tags.push(protocol::command_tag(frame.body()).to_owned())
                    }
                    // COPY TO STDOUT: one CopyOutResponse, every shard's data, one CopyDone.
                    b'H' if !copying => {
                        copying = true;
                        self.out.extend_from_slice(&frame.bytes);
                    }
                    b'd' => {
                        self.out.extend_from_slice(&frame.bytes);
                        self.maybe_flush().await?;
                    }
                    b'E' => {
                        first_error.get_or_insert(frame);
                    }
                    // The same notice from every shard would only repeat itself.
                    b'N' | b'S' if i == 0 => self.out.extend_from_slice(&frame.bytes),
                    _ => {}
                }
            }
            done.push((shard, conn));
            i += 1;
        }
        self.restore(done);
        if let Some(e) = broken {
            return self.fail(&e);
        }
        if let Some(err) = first_error {
            self.out.extend_from_slice(&err.bytes);
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
            return Ok(false);
        }
        if let Combine::RowOrder(order) = &combine {
            if !self.put_in_row_order(&parts, order, held) {
                return self.fail(&Error::unsupported(
                    "INSERT ... RETURNING over several shards cannot return its rows in VALUES order when ON CONFLICT skipped some of them",
                    "insert the rows one shard key at a time, or drop RETURNING",
                ));
            }
        }
        if copying {
            protocol::put_empty(&mut self.out, b'c');
        }
        if let Some(tag) = protocol::sum_tags(tags.iter().map(String::as_str)) {
            protocol::put_command_complete(&mut self.out, &tag);
        }
        Ok(true)
    }

    /// Emits the RETURNING rows of a split INSERT in the order of its VALUES rows, as PostgreSQL
    /// would (ORMs match returned ids to rows by position). False if the counts do not match.
    fn put_in_row_order(
        &mut self,
        parts: &[(ShardId, String)],
        order: &[ShardId],
        mut held: Vec<VecDeque<Frame>>,
    ) -> bool {
        let total: usize = held.iter().map(VecDeque::len).sum();
        if total == 0 {
            return true;
        }
        if total != order.len() {
            return false;
        }
        for shard in order {
            let Some(i) = parts.iter().position(|(s, _)| s == shard) else {
                return false;
            };
            match held[i].pop_front() {
                Some(row) => self.out.extend_from_slice(&row.bytes),
                None => return false,
            }
        }
        true
    }

    /// Reads the shards' answers to the end and discards them.
    async fn drain_all(
        &mut self,
        conns: Vec<(ShardId, PooledConn)>,
    ) -> Step<Vec<(ShardId, PooledConn)>> {
        let mut out = Vec::with_capacity(conns.len());
        for (shard, mut conn) in conns {
            loop {
                match self.recv(&mut conn).await? {
                    Recv::Frame(f) if f.tag == b'Z' => break,
                    Recv::Frame(_) => {}
                    Recv::Broken(_) => break,
                }
            }
            out.push((shard, conn));
        }
        Ok(out)
    }

    /// Puts connections back where they belong (the transaction, or the pool).
    fn restore(&mut self, conns: Vec<(ShardId, PooledConn)>) {
        for (shard, conn) in conns {
            self.release(shard, conn);
        }
    }
}
