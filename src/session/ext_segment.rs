//! One run of extended-protocol messages on its shard: the bytes sent (`ext_route`), and each
//! answer relayed, swallowed or stood in for, up to the Sync or Flush that ends the run.

use super::exec::Recv;
use super::ext_route::note_portal;
use super::extended::{is_statement_close, End, Expect, Msg};
use super::{Session, Step};
use crate::error::Error;
use crate::protocol;

impl Session {
    /// Sends one run of messages to its shard and relays the answers. `sync`: end it with a
    /// Sync (the client's, or one between runs); otherwise with a Flush, keeping the connection.
    pub(super) async fn run_segment(&mut self, msgs: &[Msg], sync: bool) -> Step {
        let (shard, refused_at) = self.decide(msgs);
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        let needs_backend =
            self.ext.is_some() || msgs[..stop].iter().any(|m| !is_statement_close(&m.frame));
        if !needs_backend {
            return self.answer_locally(msgs, refused_at);
        }
        if self.ext.is_none() && self.txn.as_ref().is_some_and(|t| t.failed) {
            // As PostgreSQL: nothing but the transaction's end runs in a failed transaction,
            // and a Close (of a statement or a portal) still does.
            let closes = (msgs[..stop].iter())
                .take_while(|m| m.frame.tag == b'C')
                .count();
            for m in &msgs[..closes] {
                self.scratch.names_run += usize::from(is_statement_close(&m.frame));
                protocol::put_empty(&mut self.out, b'3');
            }
            let e = match refused_at {
                Some((_, e)) if closes == stop => e,
                _ => Error::TransactionAborted,
            };
            if closes < msgs.len() {
                let _ = self.fail(&e);
                self.ext_skipping = true;
            }
            return Ok(());
        }
        self.reads_only = msgs
            .iter()
            .filter_map(|m| m.stmt.as_ref())
            .all(|st| st.plan.statements.iter().all(|s| !s.writes && !s.ddl));
        let first = self.ext.is_none();
        let (shard, mut conn) = match self.ext.take() {
            Some(pinned) => pinned,
            None => {
                let shard = shard.unwrap_or_else(|| self.default_shard());
                match self.acquire(shard).await {
                    Ok(c) => (shard, c),
                    Err(e) => {
                        let _ = self.fail(&e);
                        self.ext_skipping = true;
                        return Ok(());
                    }
                }
            }
        };
        // Portals live on the connection that bound them, including those of statements that
        // could have run anywhere: Execute must find them there.
        for m in msgs.iter().filter(|m| m.frame.tag == b'B') {
            if let Ok(portal) = protocol::bind_portal(m.frame.body()) {
                note_portal(&mut self.portals, portal, shard);
                // A gather portal of that name ends as this Bind runs.
                if !self.gather_portals.is_empty() {
                    self.gather_portals.remove(portal);
                }
            }
        }
        // A connection that holds as many statements as it may closes some first, before
        // anything of this batch is on its way.
        if first && self.txn.is_none() && super::server_stmts::needs_room(&conn, msgs) {
            if let Err(e) = self.make_room(&mut conn).await? {
                return self.batch_broken(shard, conn, e).await;
            }
        }
        // A client's unnamed statement kept by name (`Prepared::auto`) is refused at Bind once
        // a schema change altered its result columns (0A000, "cached plan must not change
        // result type"), where the client's own unnamed statement would have been parsed anew.
        // If nothing of the batch has run, and no transaction holds it, the batch runs again
        // with the statement prepared anew.
        let mut retry = first
            && sync
            && refused_at.is_none()
            && self.txn.is_none()
            && msgs.iter().any(|m| m.stmt.as_ref().is_some_and(|s| s.auto));
        let (mark, flushes) = (self.out.len(), self.flushes);
        let mut refused_at = refused_at;
        let mut expects = std::mem::take(&mut self.scratch.expects);
        let names_before = self.scratch.names_run;
        let (skipping, status) = loop {
            self.scratch.names_run = names_before;
            self.build(msgs, refused_at.take(), sync, &mut conn, &mut expects);
            // A CancelRequest (or the statement timeout) reaches the Executes of this run too.
            let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
            if let Err(e) = conn.flush().await {
                return self.batch_broken(shard, conn, e).await;
            }
            let mut skipping = self.ext_skipping;
            let mut shard_failed = false;
            let mut status = None;
            let (mut ran, mut stale) = (false, false);
            for exp in expects.drain(..) {
                match exp {
                    Expect::Emit(tag) if !skipping => {
                        // ParseComplete or a statement's CloseComplete.
                        self.scratch.names_run += usize::from(tag == b'1' || tag == b'3');
                        protocol::put_empty(&mut self.out, tag);
                    }
                    Expect::Refuse(e) if !skipping => {
                        self.error(&e);
                        skipping = true;
                    }
                    Expect::Relay(end, record) if !skipping => {
                        let bind = matches!(end, End::Bind);
                        let parse = matches!(end, End::Parse);
                        ran |= matches!(end, End::Execute);
                        match self.relay_one(&mut conn, Some(end), record).await? {
                            Ok(ok) => {
                                skipping = !ok;
                                shard_failed = !ok;
                                if parse {
                                    self.scratch.names_run += usize::from(ok);
                                    self.scratch.parse_failed = !ok;
                                }
                                stale |= !ok
                                    && bind
                                    && !ran
                                    && self.scratch.last_error.as_deref() == Some("0A000");
                            }
                            Err(e) => return self.batch_broken(shard, conn, e).await,
                        }
                    }
                    Expect::Swallow(name, hash) if !skipping => {
                        match self.relay_one(&mut conn, None, Some((name, hash))).await? {
                            Ok(ok) => (skipping, shard_failed) = (!ok, !ok),
                            Err(e) => return self.batch_broken(shard, conn, e).await,
                        }
                    }
                    Expect::Abort if !shard_failed => {
                        if let Err(e) = self.swallow_error(&mut conn).await? {
                            return self.batch_broken(shard, conn, e).await;
                        }
                    }
                    Expect::Sync => loop {
                        let next = match self.buffered(&mut conn) {
                            Some(r) => r,
                            None => self.recv(&mut conn).await?,
                        };
                        match next {
                            Recv::Frame(f) if f.tag == b'Z' => {
                                status = Some(protocol::ready_status(f.body()));
                                break;
                            }
                            Recv::Frame(f) => self.out.extend_from_slice(&f.bytes),
                            Recv::Broken(e) => return self.batch_broken(shard, conn, e).await,
                        }
                    },
                    _ => {}
                }
                if self.out.len() >= super::FLUSH_AT {
                    self.maybe_flush().await?;
                }
            }
            let unseen = self.flushes == flushes && self.out.len() >= mark;
            if !(retry && stale && unseen && status == Some(b'I')) {
                break (skipping, status);
            }
            retry = false;
            self.out.truncate(mark);
            if let Err(e) = self.close_auto(msgs, &mut conn).await? {
                return self.batch_broken(shard, conn, e).await;
            }
        };
        self.scratch.expects = expects;
        self.ext_skipping = skipping;
        if !sync {
            self.ext = Some((shard, conn));
            return Ok(());
        }
        if status == Some(b'E') || skipping {
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
        }
        self.release(shard, conn);
        Ok(())
    }
}
