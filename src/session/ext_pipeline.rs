//! A pipeline of bound statements for one shard: several Bind, Describe (perhaps) and Execute
//! before one Sync, as libpq's pipeline mode, psycopg's pipelines and pgx's batches send once
//! their statements are prepared. When every statement is one `ext_fast.rs` would take alone
//! and all of them go to the same shard, the batch goes there as it came (each Bind renamed to
//! the shard's statement) and the answer is relayed in one pass, without the batch machinery
//! (`extended.rs`).
//!
//! Anything else, a pipeline whose statements need different shards or with a Bind the proxy
//! refuses, takes the batch machinery as before. So the first pass here keeps what it would
//! count instead of counting it, and nothing is counted twice.

use super::batch::RELAYED;
use super::exec::Recv;
use super::ext_route::{one_shard, Count};
use super::prepared::Prepared;
use super::{Session, Step};
use crate::protocol::{self, Frame};
use crate::ring::{Key, Ring, ShardId};
use crate::router::Route;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

/// Buffers reused from one pipeline to the next (in the session's `Scratch`): its statements,
/// and what is counted when it runs, each statement's route (None: not counted) and the keys
/// it was routed by among `keys`.
#[derive(Default)]
pub(super) struct Buffers {
    bound: Vec<Bound>,
    routes: Vec<(Option<Route>, Range<usize>)>,
    keys: Vec<Key>,
    /// The shard the pipeline goes to, and the ring it was routed on.
    to: Option<(ShardId, Arc<Ring>)>,
}

impl Buffers {
    fn clear(&mut self) {
        self.bound.clear();
        self.routes.clear();
        self.keys.clear();
        self.to = None;
    }
}

/// One statement of the pipeline: what it binds, where its Bind names it, and its frames.
struct Bound {
    st: Arc<Prepared>,
    at: Range<usize>,
    frames: Range<usize>,
}

impl Session {
    /// True if the batch is two or more Bind/(Describe)/Execute groups and a Sync, each of
    /// which may take the fast path (`bound_group`), and all of them go to one shard: the
    /// pipeline's buffers then hold its statements, their routes and that shard.
    #[inline(always)]
    pub(super) fn routed_pipeline(&mut self) -> bool {
        // Most batches that get here are `-M extended`'s, which open with a Parse: tested here,
        // inline, so that they do not pay for a call.
        self.batch.len() >= 5 && self.batch[0].tag == b'B' && self.route_bound_groups()
    }

    fn route_bound_groups(&mut self) -> bool {
        let mut bufs = std::mem::take(&mut self.scratch.pipeline);
        let shard = match self.bound_groups(&mut bufs.bound) {
            true => {
                // One ring for routing and counting, so that each statement is counted where
                // it goes.
                let ring = self.ctx.ring.load_full();
                self.route_pipeline(&mut bufs, &ring).map(|s| (s, ring))
            }
            false => None,
        };
        let found = shard.is_some();
        match shard {
            Some(to) => bufs.to = Some(to),
            None => bufs.clear(),
        }
        self.scratch.pipeline = bufs;
        found
    }

    fn bound_groups(&self, bound: &mut Vec<Bound>) -> bool {
        let Some((_sync, mut rest)) = self.batch.split_last() else {
            return false;
        };
        let mut from = 0;
        while !rest.is_empty() {
            let Some((st, at, n)) = self.bound_group(rest) else {
                return false;
            };
            bound.push(Bound {
                st,
                at,
                frames: from..from + n,
            });
            from += n;
            rest = &rest[n..];
        }
        true
    }

    /// Runs the pipeline `routed_pipeline` found, up to its ReadyForQuery.
    pub(super) async fn run_routed_pipeline(&mut self) -> Step {
        let mut bufs = std::mem::take(&mut self.scratch.pipeline);
        let frames = std::mem::take(&mut self.batch);
        let step = match bufs.to.take() {
            Some((shard, ring)) => self.routed_pipeline_on(shard, &ring, &bufs, &frames).await,
            None => Ok(()),
        };
        self.batch = frames;
        self.batch.clear();
        bufs.clear();
        self.scratch.pipeline = bufs;
        step?;
        self.end_batch(true).await
    }

    /// Where the pipeline goes: the one shard every statement needs (the default one if none
    /// needs a particular one), or None if they need different ones or a Bind is refused.
    /// Nothing is counted yet; what will be is kept in `bufs`.
    fn route_pipeline(&self, bufs: &mut Buffers, ring: &Ring) -> Option<ShardId> {
        let keys = RefCell::new(std::mem::take(&mut bufs.keys));
        let mut shard = None;
        let mut refused = false;
        for b in &bufs.bound {
            let body = self.batch[b.frames.start].body();
            let from = keys.borrow().len();
            let Ok((_, route)) = self.bind_routed(&b.st, body, ring, Count::Later(&keys)) else {
                refused = true;
                break;
            };
            match one_shard(route.as_ref()) {
                Ok(Some(s)) if shard.is_some_and(|x| x != s) => refused = true,
                Ok(Some(s)) => shard = Some(s),
                Ok(None) => {}
                Err(_) => refused = true,
            }
            if refused {
                break;
            }
            bufs.routes.push((route, from..keys.borrow().len()));
        }
        bufs.keys = keys.into_inner();
        (!refused).then(|| shard.unwrap_or_else(|| self.default_shard()))
    }

    async fn routed_pipeline_on(
        &mut self,
        shard: ShardId,
        ring: &Ring,
        bufs: &Buffers,
        frames: &[Frame],
    ) -> Step {
        let bound = &bufs.bound[..];
        self.arm_statement_timeout();
        if let Err(e) = self.limit_batch(frames) {
            self.fail(&e)?;
            return Ok(());
        }
        // Counted now that the batch runs here, each as `ext_fast.rs` counts its one.
        for (b, (route, keys)) in bound.iter().zip(&bufs.routes) {
            if let (Some(route), [stmt]) = (route, b.st.plan.statements.as_slice()) {
                for k in &bufs.keys[keys.clone()] {
                    self.count_key(&stmt.tables, k);
                }
                self.count(stmt, route, ring);
            }
            if self.txn.is_some() {
                if let Ok(portal) = protocol::bind_portal(frames[b.frames.start].body()) {
                    self.note_relayed_portal(portal, shard);
                }
            }
        }
        self.reads_only = bound
            .iter()
            .all(|b| b.st.plan.statements.iter().all(|s| !s.writes && !s.ddl));
        let mut conn = match self.acquire(shard).await {
            Ok(c) => c,
            Err(e) => {
                self.fail(&e)?;
                return Ok(());
            }
        };
        // Inside a transaction block, the Closes' Sync would end it: the statements are added.
        if self.txn.is_none()
            && bound
                .iter()
                .any(|b| super::server_stmts::needs_room_for(&conn, &b.st))
        {
            if let Err(e) = self.make_room(&mut conn).await? {
                self.broken(shard, conn, e)?;
                return Ok(());
            }
        }
        // The statements the shard does not hold yet, prepared before their first Bind; the
        // ParseCompletes come back in this order.
        let mut parsing: Vec<(&str, u64)> = Vec::new();
        let out = &mut self.scratch.out;
        out.clear();
        for b in bound {
            let name = b.st.backend_name.as_str();
            if !conn.prepared.holds(name, b.st.hash) && !parsing.iter().any(|(n, _)| *n == name) {
                protocol::put_parse(out, name, &b.st.sql, &b.st.types);
                parsing.push((name, b.st.hash));
            }
            let group = &frames[b.frames.clone()];
            protocol::put_bind_renamed(out, group[0].body(), b.at.clone(), name);
            for f in &group[1..] {
                out.extend_from_slice(&f.bytes);
            }
        }
        if let Some(sync) = frames.last() {
            out.extend_from_slice(&sync.bytes);
        }
        conn.send(out);
        // A CancelRequest (or the statement timeout) reaches the running Execute.
        let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
        if let Err(e) = conn.flush().await {
            self.broken(shard, conn, e)?;
            return Ok(());
        }
        // The loop of `ext_fast.rs` with a list of Parses for its one: shared as an async fn
        // of its own, it cost that path about 120 instructions per transaction (callgrind).
        let mut parsed = 0;
        let mut failed = false;
        loop {
            let f = match self.recv_past(&mut conn, RELAYED).await? {
                Recv::Frame(f) => f,
                Recv::Broken(e) => {
                    self.broken(shard, conn, e)?;
                    return Ok(());
                }
            };
            match f.tag {
                // Only the proxy's Parses are in the batch: each is noted, never shown.
                b'1' => {
                    if let Some(&(name, hash)) = parsing.get(parsed) {
                        conn.prepared.insert(name.to_owned(), hash);
                        parsed += 1;
                    }
                    continue;
                }
                b'Z' => {
                    failed |= protocol::ready_status(f.body()) == b'E';
                    break;
                }
                // PostgreSQL skips the rest to the Sync, the Parses among it too.
                b'E' => failed = true,
                b'G' | b'W' => {
                    if let Err(e) = super::exec::refuse_copy_in(&mut conn).await {
                        self.broken(shard, conn, e)?;
                        return Ok(());
                    }
                    continue;
                }
                _ => {}
            }
            self.out.extend_from_slice(&f.bytes);
            if self.out.len() >= super::FLUSH_AT {
                self.maybe_flush().await?;
            }
        }
        if let Some(t) = self.txn.as_mut().filter(|_| failed) {
            t.failed = true;
        }
        self.release(shard, conn);
        Ok(())
    }
}
