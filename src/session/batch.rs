//! The I/O side of an extended-protocol batch: reading each message's answer from the shard,
//! answering batches that need no shard, and closing a batch the client left open.

use super::exec::Recv;
use super::extended::{is_statement_close, End, Msg};
use super::{Session, Step};
use crate::backend::{PooledConn, Tags};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use std::collections::HashMap;
use std::sync::Arc;

/// The answers a relay passes on as they came, in one copy: all but ParseComplete (of a Parse
/// the proxy may add; `relay_one` adds it for a client's), errors, COPY and ReadyForQuery.
pub(super) const RELAYED: Tags = Tags::of(b"2TDnsICt");

impl Session {
    /// Reads one message's answer; Ok(true) when it succeeded, Ok(false) after an ErrorResponse
    /// (PostgreSQL then skips to Sync). `end` None: a hidden Parse, answered by ParseComplete.
    pub(super) async fn relay_one(
        &mut self,
        conn: &mut PooledConn,
        end: Option<End>,
        record: Option<(String, u64)>,
    ) -> Step<Result<bool, std::io::Error>> {
        loop {
            // The usual answer moves in one copy, up to the message that ends it; anything
            // else, and everything after the statement timeout (`after_timeout`), as a frame.
            if let (Some(e), false) = (end, self.timed_out) {
                if conn.relay_through(&mut self.out, super::FLUSH_AT, RELAYED, e.last_tags()) {
                    break;
                }
            }
            let next = match self.buffered(conn) {
                Some(r) => r,
                None => match self.wait_for(conn).await? {
                    Ok(()) => continue,
                    Err(e) => return Ok(Err(e)),
                },
            };
            let f = match next {
                Recv::Frame(f) => f,
                Recv::Broken(e) => return Ok(Err(e)),
            };
            match f.tag {
                b'E' => {
                    self.scratch.last_error = protocol::error_field(f.body(), b'C');
                    self.out.extend_from_slice(&f.bytes);
                    return Ok(Ok(false));
                }
                b'G' | b'W' => {
                    if let Err(e) = super::exec::refuse_copy_in(conn).await {
                        return Ok(Err(e));
                    }
                }
                t if end.map_or(t == b'1', |e| e.is_last(t)) => {
                    if end.is_some() {
                        self.out.extend_from_slice(&f.bytes);
                    }
                    break;
                }
                _ if end.is_some() => {
                    self.out.extend_from_slice(&f.bytes);
                    if self.out.len() >= super::FLUSH_AT {
                        self.maybe_flush().await?;
                    }
                }
                _ => {}
            }
        }
        if let Some((name, hash)) = record {
            if !conn.prepared.holds(&name, hash) {
                conn.prepared.insert(name, hash);
            }
        }
        Ok(Ok(true))
    }

    /// Reads the shard's error for `put_failing_execute`, which the client does not see.
    pub(super) async fn swallow_error(
        &mut self,
        conn: &mut PooledConn,
    ) -> Step<Result<(), std::io::Error>> {
        loop {
            let next = match self.buffered(conn) {
                Some(r) => r,
                None => self.recv(conn).await?,
            };
            match next {
                Recv::Frame(f) if f.tag == b'E' => return Ok(Ok(())),
                Recv::Frame(_) => {}
                Recv::Broken(e) => return Ok(Err(e)),
            }
        }
    }

    /// The shard for a batch that binds no key: the transaction's, else the first.
    pub(super) fn default_shard(&self) -> ShardId {
        self.txn
            .as_ref()
            .and_then(|t| t.conns.first().map(|(s, _)| *s))
            .unwrap_or_else(|| self.ctx.ring.load().first_member())
    }

    /// A batch that needs no shard (only statement Closes, a refusal, Sync).
    pub(super) fn answer_locally(
        &mut self,
        msgs: &[Msg],
        refused_at: Option<(usize, Error)>,
    ) -> Step {
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        for m in msgs[..stop].iter().map(|m| &m.frame) {
            // The name was freed when the batch was read (`classify`).
            if is_statement_close(m) && !self.ext_skipping {
                self.scratch.names_run += 1;
                protocol::put_empty(&mut self.out, b'3');
            }
        }
        if let Some((_, e)) = refused_at {
            if !self.ext_skipping {
                self.error(&e);
                self.ext_skipping = true;
                if let Some(t) = &mut self.txn {
                    t.failed = true;
                }
            }
        }
        Ok(())
    }

    /// The shard connection broke mid-batch: the batch fails with 08006, the session goes on.
    pub(super) async fn batch_broken(
        &mut self,
        shard: ShardId,
        conn: PooledConn,
        e: std::io::Error,
    ) -> Step {
        self.broken(shard, conn, e)?;
        self.ext_skipping = true;
        Ok(())
    }

    pub(super) async fn end_batch(&mut self, sync: bool) -> Step {
        if !sync {
            return self.flush().await;
        }
        self.ext_skipping = false;
        self.end_portals();
        self.ready().await
    }

    /// Outside a transaction block, the portals end with the implicit transaction that a Sync
    /// or a simple query closes, those the proxy runs itself too.
    pub(super) fn end_portals(&mut self) {
        if self.txn.is_none() {
            self.portals.clear();
            if !self.local_portals.is_empty() {
                self.local_portals.clear();
            }
            if !self.gather_portals.is_empty() {
                self.gather_portals.clear();
            }
        }
    }

    /// Ends a batch the client left open (Flush without Sync) before a simple Query: the shard
    /// gets the Sync the client never sent, and the client no ReadyForQuery for it.
    pub(super) async fn close_open_batch(&mut self) -> Step {
        self.end_open_batch(false).await
    }

    /// Ends a batch the client left open, with `abort` rolling back what it ran (an error
    /// after it, which PostgreSQL would have rolled it back for).
    pub(super) async fn end_open_batch(&mut self, abort: bool) -> Step {
        let Some((shard, mut conn)) = self.ext.take() else {
            return Ok(());
        };
        let mut swallow = abort && !self.ext_skipping;
        if swallow {
            protocol::put_failing_execute(&mut self.sync_buf);
        }
        protocol::put_empty(&mut self.sync_buf, b'S');
        let sync = std::mem::take(&mut self.sync_buf);
        conn.send(&sync);
        if let Err(e) = conn.flush().await {
            self.broken(shard, conn, e)?;
            return Ok(());
        }
        loop {
            match self.recv_frame(&mut conn).await? {
                Ok(f) if f.tag == b'Z' => break,
                Ok(f) if swallow && f.tag == b'E' => swallow = false,
                Ok(f) => self.out.extend_from_slice(&f.bytes),
                Err(e) => {
                    self.broken(shard, conn, e)?;
                    return Ok(());
                }
            }
        }
        self.ext_skipping = false;
        self.release(shard, conn);
        Ok(())
    }

    /// The prepared statement each Bind of `frames` binds, by the Bind's position (statements
    /// parsed earlier in the batch included, as the batch will read them when it runs).
    pub(super) fn bound_statements(
        &mut self,
        frames: &[Frame],
    ) -> Vec<(usize, Arc<super::prepared::Prepared>)> {
        let mut parsed: HashMap<String, Arc<super::prepared::Prepared>> = HashMap::new();
        let mut bound = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            match f.tag {
                b'P' => {
                    if let Ok(p) = protocol::decode_parse(f.body()) {
                        let name = p.name.to_owned();
                        let st = self.prepared_of(p);
                        parsed.insert(name, st);
                    }
                }
                b'B' => {
                    if let Ok(b) = protocol::decode_bind(f.body()) {
                        let st = parsed
                            .get(b.statement)
                            .or_else(|| self.stmts.get(b.statement));
                        if let Some(st) = st {
                            bound.push((i, st.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        bound
    }

    pub(super) async fn recv_frame(
        &mut self,
        conn: &mut PooledConn,
    ) -> Step<Result<Frame, std::io::Error>> {
        Ok(match self.recv(conn).await? {
            super::exec::Recv::Frame(f) => Ok(f),
            super::exec::Recv::Broken(e) => Err(e),
        })
    }
}
