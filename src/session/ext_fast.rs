//! The request drivers send for nearly every query once a statement is prepared: Bind, Execute
//! and Sync (libpq adds a Describe of the portal). It runs on its one shard without the batch
//! machinery (`extended.rs`): no segmenting, no plan of what each answer is, one pass over the
//! answer.
//!
//! Everything else, and any such batch that is not plainly one routed statement, takes the
//! batch machinery, which gives the same answers; this path only skips its work.

use super::batch::RELAYED;
use super::exec::Recv;
use super::prepared::Prepared;
use super::{Session, Step};
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use crate::router::Target;
use std::ops::Range;
use std::sync::Arc;

impl Session {
    /// The statement a batch of Bind, Describe (perhaps), Execute and Sync binds, and where the
    /// Bind names it (see `protocol::put_bind_renamed`), if the batch may take this path (see
    /// `bound_group`).
    pub(super) fn routed_batch_statement(&self) -> Option<(Arc<Prepared>, Range<usize>)> {
        let (_sync, group) = self.batch.split_last()?;
        match self.bound_group(group)? {
            (st, at, n) if n == group.len() => Some((st, at)),
            _ => None,
        }
    }

    /// True outside a failed transaction block and any earlier batch, with no rebalance running:
    /// where a batch of bound statements may skip the batch machinery.
    pub(super) fn fast_path_open(&self) -> bool {
        !(self
            .txn
            .as_ref()
            .is_some_and(|t| t.failed || t.lost.is_some())
            || self.ext.is_some()
            || self.ext_skipping
            || self.settings_after.is_some()
            || self.ctx.rebalance.gate.active())
    }

    /// The Bind, Describe (perhaps) and Execute at the start of `frames`, if they are
    /// well-formed messages about the one portal the Bind makes, of a statement that one shard
    /// answers as it is relayed (not one the proxy runs itself, gathers, or keeps for a client's
    /// unnamed one), and the batch may take a fast path at all: the statement, where the Bind
    /// names it, and how many frames the three take.
    pub(super) fn bound_group(
        &self,
        frames: &[Frame],
    ) -> Option<(Arc<Prepared>, Range<usize>, usize)> {
        let (bind, describe, execute, n) = match frames {
            [b, d, e, ..] if d.tag == b'D' => (b, Some(d), e, 3),
            [b, e, ..] => (b, None, e, 2),
            _ => return None,
        };
        if bind.tag != b'B' || execute.tag != b'E' || !self.fast_path_open() {
            return None;
        }
        let names = protocol::bind_names(bind.body()).ok()?;
        // libpq describes the portal it executes.
        if let Some(d) = describe {
            let target = protocol::decode_target(d.body()).ok()?;
            if protocol::check_message(b'D', d.body()).is_err() || target != (b'P', names.portal) {
                return None;
            }
        }
        if protocol::check_message(b'E', execute.body()).is_err()
            || protocol::portal_of_execute(execute.body()) != Some(names.portal)
        {
            return None;
        }
        let st = self.stmts.get(names.statement)?;
        let plain =
            matches!(st.plan.statements.as_slice(), [s] if !matches!(s.target, Target::CopyIn(_)));
        (plain && !st.local() && !st.auto && !super::ext_route::prepared_gathers(st))
            .then(|| (st.clone(), names.statement_at, n))
    }

    /// Runs the batch `routed_batch_statement` gave `st` for, up to its ReadyForQuery.
    pub(super) async fn run_routed_batch(&mut self, st: Arc<Prepared>, at: Range<usize>) -> Step {
        let frames = std::mem::take(&mut self.batch);
        let step = self.routed_batch(&st, at, &frames).await;
        self.batch = frames;
        self.batch.clear();
        step?;
        self.end_batch(true).await
    }

    /// Inside a transaction block, the portal a relayed Bind made outlives the batch: a later
    /// Execute of it finds it on `shard`.
    pub(super) fn note_relayed_portal(&mut self, portal: &str, shard: ShardId) {
        if self.txn.is_none() {
            return;
        }
        super::ext_route::note_portal(&mut self.portals, portal, shard);
        if !self.local_portals.is_empty() {
            self.local_portals.remove(portal);
        }
        if !self.gather_portals.is_empty() {
            self.gather_portals.remove(portal);
        }
    }

    async fn routed_batch(&mut self, st: &Prepared, at: Range<usize>, frames: &[Frame]) -> Step {
        self.arm_statement_timeout();
        if let Err(e) = self.limit_batch(frames) {
            self.fail(&e)?;
            return Ok(());
        }
        let bind = frames[0].body();
        let (portal, shard) = match self.bind_target(st, bind) {
            Ok((portal, shard)) => (portal, shard.unwrap_or_else(|| self.default_shard())),
            Err(e) => {
                self.fail(&e)?;
                return Ok(());
            }
        };
        self.note_relayed_portal(portal, shard);
        self.reads_only = st.plan.statements.iter().all(|s| !s.writes && !s.ddl);
        let mut conn = match self.acquire(shard).await {
            Ok(c) => c,
            Err(e) => {
                self.fail(&e)?;
                return Ok(());
            }
        };
        let name = st.backend_name.as_str();
        let parse = !conn.prepared.holds(name, st.hash);
        // Inside a transaction block, the Closes' Sync would end it: the statement is added.
        if parse && self.txn.is_none() && super::server_stmts::needs_room_for(&conn, st) {
            if let Err(e) = self.make_room(&mut conn).await? {
                self.broken(shard, conn, e)?;
                return Ok(());
            }
        }
        let out = &mut self.scratch.out;
        out.clear();
        if parse {
            protocol::put_parse(out, name, &st.sql, &st.types);
        }
        protocol::put_bind_renamed(out, bind, at, name);
        // The Describe, if any, and the Execute, as they came, then the Sync.
        for f in &frames[1..] {
            out.extend_from_slice(&f.bytes);
        }
        conn.send(out);
        // A CancelRequest (or the statement timeout) reaches the Execute.
        let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
        if let Err(e) = conn.flush().await {
            self.broken(shard, conn, e)?;
            return Ok(());
        }
        let (mut parsing, mut failed) = (parse, false);
        loop {
            let next = self.recv_past(&mut conn, RELAYED).await?;
            let f = match next {
                Recv::Frame(f) => f,
                Recv::Broken(e) => {
                    self.broken(shard, conn, e)?;
                    return Ok(());
                }
            };
            match f.tag {
                // The Parse the proxy added: noted, never shown.
                b'1' if parsing => {
                    parsing = false;
                    conn.prepared.insert(name.to_owned(), st.hash);
                    continue;
                }
                b'Z' => {
                    failed |= protocol::ready_status(f.body()) == b'E';
                    break;
                }
                b'E' => (parsing, failed) = (false, true),
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
