//! Running a multi-shard query whose rows must be merged: the shard query goes to every shard
//! at once, their rows feed the gather (k-way as they stream when ordered), and the client gets
//! one RowDescription, the merged rows and one CommandComplete.

use super::exec::Recv;
use super::{Session, Step};
use crate::backend::PooledConn;
use crate::error::Error;
use crate::gather::{Gather, Next};
use crate::protocol::Frame;
use crate::ring::ShardId;
use crate::router::MergePlan;
use bytes::Bytes;
use std::sync::Arc;

/// What one shard said next.
enum Ev {
    Row(Bytes),
    End,
    Error(Frame),
    Fail(Error),
}

/// How a gather ended.
pub(super) enum Gathered {
    /// It ran: true, or it failed and the client was told (false).
    Done(bool),
    /// A shard refused the request before describing its rows (at Parse or Bind), and the
    /// caller asked to hear of that instead of the client: nothing was sent to the client.
    Refused,
}

/// Why a gather stopped early.
enum Failure {
    Frame(Frame),
    Error(Error),
}

struct Shard {
    id: ShardId,
    conn: PooledConn,
    /// Its statement's answer has ended (CommandComplete or an error).
    ended: bool,
    /// ReadyForQuery has arrived: nothing more to read.
    ready: bool,
}

impl Session {
    /// Sends `request` (the same bytes to each shard, ending in a Sync or a simple Query) and
    /// merges the answers as `plan` says. `describe`: the client gets the RowDescription;
    /// `execute`: rows and a CommandComplete (else the request only describes).
    pub(super) async fn exec_gather(
        &mut self,
        shards: Vec<ShardId>,
        plan: Arc<MergePlan>,
        request: &[u8],
        describe: bool,
        execute: bool,
        limits: (Option<u64>, u64),
    ) -> Step<bool> {
        let g = self.gather_on(shards, plan, request, (describe, execute), limits, false);
        match g.await? {
            Gathered::Done(ok) => Ok(ok),
            Gathered::Refused => Ok(false),
        }
    }

    /// `exec_gather`; with `refusable`, a shard's error before any RowDescription is not
    /// passed on but reported as `Gathered::Refused`.
    pub(super) async fn gather_on(
        &mut self,
        shards: Vec<ShardId>,
        plan: Arc<MergePlan>,
        request: &[u8],
        (describe, execute): (bool, bool),
        limits: (Option<u64>, u64),
        refusable: bool,
    ) -> Step<Gathered> {
        let mut open: Vec<Shard> = Vec::with_capacity(shards.len());
        for id in shards {
            match self.acquire(id).await {
                Ok(mut conn) => {
                    conn.prepared.remove("");
                    conn.send(request);
                    if let Err(e) = conn.flush().await {
                        self.drain(&mut open).await?;
                        self.restore_shards(open);
                        return self.broken(id, conn, e).map(Gathered::Done);
                    }
                    open.push(Shard {
                        id,
                        conn,
                        ended: false,
                        ready: false,
                    });
                }
                Err(e) => {
                    self.drain(&mut open).await?;
                    self.restore_shards(open);
                    return self.fail(&e).map(Gathered::Done);
                }
            }
        }
        let keys: Vec<&PooledConn> = open.iter().map(|s| &s.conn).collect();
        let _cancellable = super::exec::Cancellable::new(&self.running, &keys);
        drop(keys);
        let limit_mb = self.config.get().proxy.gather_memory_mb;
        let mut g = Gather::new(plan, self.ctx.collation.load_full(), limit_mb, open.len());
        g.bind_limits(limits.0, limits.1);
        let merged = self.merge(&mut open, &mut g, describe, execute).await;
        let (failure, described) = match merged {
            Ok(f) => f,
            Err(gone) => {
                // The client left mid-merge: the shards' answers are unread, so none of these
                // connections may go back to the pool.
                for s in &mut open {
                    s.conn.broken = true;
                }
                return Err(gone);
            }
        };
        if let Err(gone) = self.drain(&mut open).await {
            for s in &mut open {
                s.conn.broken = true;
            }
            return Err(gone);
        }
        self.restore_shards(open);
        match failure {
            None => {
                if execute {
                    crate::protocol::put_command_complete(&mut self.out, &g.tag());
                }
                Ok(Gathered::Done(true))
            }
            Some(Failure::Frame(_)) if refusable && !described => Ok(Gathered::Refused),
            Some(Failure::Frame(f)) => {
                self.out.extend_from_slice(&f.bytes);
                if let Some(t) = &mut self.txn {
                    t.failed = true;
                }
                Ok(Gathered::Done(false))
            }
            Some(Failure::Error(e)) => self.fail(&e).map(Gathered::Done),
        }
    }

    /// Reads the shards' rows into the gather; the reason it stopped early, if it did, and
    /// whether a shard had described its rows.
    async fn merge(
        &mut self,
        open: &mut [Shard],
        g: &mut Gather,
        describe: bool,
        execute: bool,
    ) -> Step<(Option<Failure>, bool)> {
        let ordered = g.ordered();
        let mut described = !describe;
        let mut failure = None;
        if ordered {
            let mut want: Vec<usize> = (0..open.len()).rev().collect();
            'merge: loop {
                while let Some(i) = want.pop() {
                    match self.next_event(&mut open[i], g, &mut described, i).await? {
                        Ev::Row(body) => {
                            if let Err(e) = g.push(i, body, &mut self.out) {
                                failure = Some(Failure::Error(e));
                                break 'merge;
                            }
                        }
                        Ev::End => g.finish_shard(i),
                        Ev::Error(f) => {
                            failure = Some(Failure::Frame(f));
                            break 'merge;
                        }
                        Ev::Fail(e) => {
                            failure = Some(Failure::Error(e));
                            break 'merge;
                        }
                    }
                }
                match g.next(&mut self.out) {
                    Ok(Next::Need(i)) => want.push(i),
                    Ok(Next::Done) => break,
                    Err(e) => {
                        failure = Some(Failure::Error(e));
                        break;
                    }
                }
                self.maybe_flush().await?;
            }
        } else {
            'shards: for (i, shard) in open.iter_mut().enumerate() {
                loop {
                    match self.next_event(shard, g, &mut described, i).await? {
                        Ev::Row(body) => {
                            if let Err(e) = g.push(i, body, &mut self.out) {
                                failure = Some(Failure::Error(e));
                                break 'shards;
                            }
                            self.maybe_flush().await?;
                        }
                        Ev::End => break,
                        Ev::Error(f) => {
                            failure = Some(Failure::Frame(f));
                            break 'shards;
                        }
                        Ev::Fail(e) => {
                            failure = Some(Failure::Error(e));
                            break 'shards;
                        }
                    }
                }
            }
            if failure.is_none() && execute {
                if let Err(e) = g.finish(&mut self.out) {
                    failure = Some(Failure::Error(e));
                }
            }
        }
        Ok((failure, described))
    }

    /// The next row of one shard, or the end of its answer. Its RowDescription (the first
    /// shard's to arrive) describes the merge.
    async fn next_event(
        &mut self,
        shard: &mut Shard,
        g: &mut Gather,
        described: &mut bool,
        index: usize,
    ) -> Step<Ev> {
        if shard.ended {
            return Ok(Ev::End);
        }
        loop {
            let frame = match self.recv(&mut shard.conn).await? {
                Recv::Frame(f) => f,
                Recv::Broken(e) => {
                    shard.ended = true;
                    shard.ready = true;
                    let name = self.ctx.backend.name(shard.id).to_owned();
                    return Ok(Ev::Fail(Error::ShardUnavailable {
                        shard: name,
                        detail: format!("connection lost: {e}"),
                    }));
                }
            };
            match frame.tag {
                b'T' => match g.describe(frame.body()) {
                    Ok(msg) => {
                        if !*described {
                            self.out.extend_from_slice(&msg);
                            *described = true;
                        }
                    }
                    Err(e) => {
                        shard.ended = true;
                        return Ok(Ev::Fail(e));
                    }
                },
                b'D' => return Ok(Ev::Row(frame.bytes.slice(5..))),
                b'C' | b'I' => {
                    shard.ended = true;
                    return Ok(Ev::End);
                }
                b'E' => {
                    shard.ended = true;
                    return Ok(Ev::Error(frame));
                }
                b'Z' => {
                    shard.ended = true;
                    shard.ready = true;
                    return Ok(Ev::End);
                }
                // The same notice from every shard would only repeat itself.
                b'N' if index == 0 => self.out.extend_from_slice(&frame.bytes),
                _ => {}
            }
        }
    }

    /// Reads every shard's answer to its ReadyForQuery, so the connections come back idle.
    async fn drain(&mut self, open: &mut [Shard]) -> Step {
        for s in open.iter_mut() {
            while !s.ready {
                match self.recv(&mut s.conn).await? {
                    Recv::Frame(f) if f.tag == b'Z' => s.ready = true,
                    Recv::Frame(_) => {}
                    Recv::Broken(_) => s.ready = true,
                }
            }
        }
        Ok(())
    }

    fn restore_shards(&mut self, open: Vec<Shard>) {
        for s in open {
            self.release(s.id, s.conn);
        }
    }
}
