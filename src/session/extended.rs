//! The extended query protocol: Parse/Bind/Describe/Execute/Close batches, routed by the key in
//! their bound parameters and relayed to one shard, with client statements prepared lazily on
//! whichever pooled connection serves them.

use super::exec::Recv;
use super::ext_route::note_portal;
use super::prepared::Prepared;
use super::{Session, Step};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::router::Target;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Messages buffered before a batch is sent on without waiting for Sync or Flush.
const MAX_BATCH: usize = 1000;

/// One client message of a batch, with the statement it referred to when it arrived (a later
/// Parse of the same name must not change what an earlier Bind meant).
pub(super) struct Msg {
    pub frame: Frame,
    pub stmt: Option<Arc<Prepared>>,
    /// The proxy answers it itself (transaction control and SET, which the session's own
    /// machinery runs, and multi-shard reads, which the gather runs).
    pub local: bool,
}

/// What becomes of the shard's answer to one message of the batch, in order.
pub(super) enum Expect {
    /// The answer to a client message, relayed; on success `record` is noted as prepared.
    Relay(End, Option<(String, u64)>),
    /// The answer to a Parse the proxy added: noted, never shown.
    Swallow(String, u64),
    /// A bodiless answer the proxy gives itself, in its turn (ParseComplete, CloseComplete).
    Emit(u8),
    /// A message the proxy refused: PostgreSQL never saw it or anything after it.
    Refuse(Error),
    Sync,
}

/// The message whose last response ends one `Expect::Relay`.
#[derive(Clone, Copy)]
pub(super) enum End {
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
}

impl End {
    pub(super) fn is_last(self, tag: u8) -> bool {
        match self {
            End::Parse => tag == b'1',
            End::Bind => tag == b'2',
            End::Describe => tag == b'T' || tag == b'n',
            End::Execute => matches!(tag, b'C' | b'I' | b's'),
            End::Close => tag == b'3',
        }
    }
}

/// Buffers reused from one batch to the next: a driver's every query is a batch, and these
/// would otherwise be allocated and freed with each.
#[derive(Default)]
pub(super) struct Scratch {
    msgs: Vec<Msg>,
    pub(super) expects: Vec<Expect>,
    /// Statements the batch being built prepares (name, hash).
    pub(super) parsed: Vec<(String, u64)>,
    /// The bytes for the shard, before they join the connection's output.
    pub(super) out: BytesMut,
    /// The SQLSTATE of the last error a shard answered a relayed message with.
    pub(super) last_error: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// Buffers one extended-protocol message; a Sync or Flush (or a full buffer) sends the batch.
    pub(super) async fn on_extended(&mut self, frame: Frame) -> Step {
        let tag = frame.tag;
        self.batch.push(frame);
        match tag {
            b'S' => self.run_batch(true).await,
            b'H' => self.run_batch(false).await,
            _ if self.batch.len() >= MAX_BATCH => self.run_batch(false).await,
            _ => Ok(()),
        }
    }

    pub(super) async fn run_batch(&mut self, sync: bool) -> Step {
        let mut frames = std::mem::take(&mut self.batch);
        self.arm_statement_timeout();
        let admitted = match self.ext_skipping {
            // A batch already failing runs nothing up to its Sync, so it takes no tokens.
            true => Ok(()),
            false => self.limit_batch(&frames),
        };
        let admitted = match admitted {
            Ok(()) => self.gate_batch(&frames).await,
            refused => refused,
        };
        if let Err(e) = admitted {
            frames.clear();
            self.batch = frames;
            // As any refusal in a batch: the error, then nothing up to Sync. An earlier part of
            // the batch may have run on a connection held since a Flush: its Sync would commit
            // that part, which the client, seeing the error, takes for failed; closing the
            // connection rolls it back, as an error before Sync does in PostgreSQL.
            if let Some((shard, conn)) = self.ext.take() {
                crate::backend::discard(conn);
                self.mark_lost(shard);
            }
            let _ = self.fail(&e);
            self.ext_skipping = true;
            return self.end_batch(sync).await;
        }
        let mut msgs = std::mem::take(&mut self.scratch.msgs);
        self.segment(&mut frames, &mut msgs);
        self.batch = frames;
        let mut i = 0;
        while i < msgs.len() && !self.ext_skipping {
            if msgs[i].local {
                self.close_open_batch().await?;
                let next = msgs.get(i + 1).filter(|n| n.local).map(|n| &n.frame);
                // The Execute right after a Describe answers it with its own rows'
                // description: one round trip to the shards instead of two.
                if !self.describe_with_next_execute(&msgs[i].frame, next) {
                    self.run_local(&msgs[i]).await?;
                }
                i += 1;
            } else {
                // A run of messages for one shard, up to the next one the proxy answers.
                let end = (msgs[i..].iter().position(|m| m.local)).map_or(msgs.len(), |n| i + n);
                self.run_segment(&msgs[i..end], sync || end < msgs.len())
                    .await?;
                i = end;
            }
        }
        msgs.clear();
        self.scratch.msgs = msgs;
        self.describe_next = None;
        if sync {
            self.close_open_batch().await?;
        }
        let copied = std::mem::take(&mut self.copy_ran);
        if sync && copied {
            // The Sync sent with the COPY's Execute arrived before the data: PostgreSQL ignores
            // Syncs during COPY, and the client's next Sync gets the ReadyForQuery.
            return self.flush().await;
        }
        self.end_batch(sync).await
    }

    /// Takes the batch's messages but Sync and Flush into `msgs`, registering Parses in order
    /// and marking the messages the proxy answers itself.
    fn segment(&mut self, frames: &mut Vec<Frame>, msgs: &mut Vec<Msg>) {
        for frame in frames.drain(..) {
            if matches!(frame.tag, b'S' | b'H') {
                continue;
            }
            let (local, stmt) = self.classify(&frame);
            msgs.push(Msg { frame, stmt, local });
        }
    }

    /// Whether the proxy answers this message itself, and the statement it refers to.
    fn classify(&mut self, f: &Frame) -> (bool, Option<Arc<Prepared>>) {
        let is_local = |st: &Option<Arc<Prepared>>| st.as_ref().is_some_and(|s| s.local());
        match f.tag {
            b'P' => match self.repeated_parse(f.body()) {
                Some(st) => (st.local(), Some(st)),
                None => match protocol::decode_parse(f.body()) {
                    Ok(p) => {
                        let st = self.register(p);
                        (st.local(), Some(st))
                    }
                    Err(_) => (false, None),
                },
            },
            b'B' => match protocol::bind_names(f.body()) {
                Ok(b) => {
                    let st = self.stmts.get(b.statement).cloned();
                    self.gather_portals.remove(b.portal);
                    match &st {
                        Some(s) if s.local() || self.gather_bind(s, f) => {
                            self.local_portals.insert(b.portal.to_owned(), s.clone());
                            (true, st)
                        }
                        _ => {
                            self.local_portals.remove(b.portal);
                            (false, st)
                        }
                    }
                }
                Err(_) => (false, None),
            },
            b'D' | b'C' => match protocol::decode_target(f.body()) {
                Ok((b'S', name)) => {
                    let st = self.stmts.get(name).cloned();
                    (is_local(&st), st)
                }
                Ok((_, portal)) => match self.local_portals.get(portal) {
                    Some(s) => (true, Some(s.clone())),
                    None => (false, None),
                },
                Err(_) => (false, None),
            },
            b'E' => match protocol::portal_of_execute(f.body())
                .and_then(|p| self.local_portals.get(p))
            {
                Some(s) => (true, Some(s.clone())),
                None => (false, None),
            },
            _ => (false, None),
        }
    }

    /// Answers a message about BEGIN/COMMIT/ROLLBACK/SAVEPOINT/SET/RESET itself; Execute runs it
    /// through the same transaction and settings machinery as a simple query.
    async fn run_local(&mut self, m: &Msg) -> Step {
        let Some(st) = m.stmt.clone() else {
            return Ok(());
        };
        let body = m.frame.body();
        match m.frame.tag {
            b'P' => protocol::put_empty(&mut self.out, b'1'),
            b'B' => protocol::put_empty(&mut self.out, b'2'),
            b'D' | b'E' if self.gather_portal(&m.frame).is_some() => {
                self.run_gather_portal(&m.frame).await?;
            }
            b'D' => {
                if body.first() == Some(&b'S') {
                    // ParameterDescription: these statements take no parameters.
                    self.out.extend_from_slice(&[b't', 0, 0, 0, 6, 0, 0]);
                }
                protocol::put_empty(&mut self.out, b'n');
            }
            b'C' => {
                if let Ok((kind, name)) = protocol::decode_target(body) {
                    if kind == b'S' {
                        self.stmts.remove(name);
                    } else {
                        self.local_portals.remove(name);
                        self.gather_portals.remove(name);
                    }
                }
                protocol::put_empty(&mut self.out, b'3');
            }
            b'E' => {
                let Some(stmt) = st.plan.statements.first() else {
                    return Ok(());
                };
                let sql = st.sql.get(stmt.span.clone()).unwrap_or(&st.sql).to_owned();
                self.copy_ran = matches!(stmt.target, Target::CopyIn(_));
                let ok = match &stmt.target {
                    Target::Transaction(c) => self.txn_command(c, &sql).await?,
                    Target::Session(c) => self.session_command(c, &sql).await?,
                    _ => self.run_statement(&st.sql, stmt).await?,
                };
                if !ok {
                    self.ext_skipping = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends one run of messages to its shard and relays the answers. `sync`: end it with a
    /// Sync (the client's, or one between runs); otherwise with a Flush, keeping the connection.
    async fn run_segment(&mut self, msgs: &[Msg], sync: bool) -> Step {
        let (shard, refused_at) = self.decide(msgs);
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        let needs_backend =
            self.ext.is_some() || msgs[..stop].iter().any(|m| !is_statement_close(&m.frame));
        if !needs_backend {
            return self.answer_locally(msgs, refused_at);
        }
        if self.ext.is_none() && self.txn.as_ref().is_some_and(|t| t.failed) {
            // As PostgreSQL: nothing but the transaction's end runs in a failed transaction.
            let _ = self.fail(&Error::TransactionAborted);
            self.ext_skipping = true;
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
            if let Ok(bind) = protocol::bind_names(m.frame.body()) {
                note_portal(&mut self.portals, bind.portal, shard);
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
        let (skipping, status) = loop {
            self.build(msgs, refused_at.take(), sync, &mut conn, &mut expects);
            // A CancelRequest (or the statement timeout) reaches the Executes of this run too.
            let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
            if let Err(e) = conn.flush().await {
                return self.batch_broken(shard, conn, e).await;
            }
            let mut skipping = self.ext_skipping;
            let mut status = None;
            let (mut ran, mut stale) = (false, false);
            for exp in expects.drain(..) {
                match exp {
                    Expect::Emit(tag) if !skipping => protocol::put_empty(&mut self.out, tag),
                    Expect::Refuse(e) if !skipping => {
                        self.error(&e);
                        skipping = true;
                    }
                    Expect::Relay(end, record) if !skipping => {
                        let bind = matches!(end, End::Bind);
                        ran |= matches!(end, End::Execute);
                        match self.relay_one(&mut conn, Some(end), record).await? {
                            Ok(ok) => {
                                skipping = !ok;
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
                            Ok(ok) => skipping = !ok,
                            Err(e) => return self.batch_broken(shard, conn, e).await,
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

pub(super) fn is_statement_close(m: &Frame) -> bool {
    m.tag == b'C' && m.body().first() == Some(&b'S')
}

/// Describe or Close of a portal (as opposed to a statement).
pub(super) fn is_portal_message(m: &Frame) -> bool {
    matches!(m.tag, b'D' | b'C') && m.body().first() == Some(&b'P')
}
