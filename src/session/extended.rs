//! The extended query protocol: Parse/Bind/Describe/Execute/Close batches, routed by the key in
//! their bound parameters and relayed to one shard, with client statements prepared lazily on
//! whichever pooled connection serves them.

use super::prepared::Prepared;
use super::{Session, Step};
use crate::backend::Tags;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::router::Target;
use bytes::BytesMut;
use std::sync::Arc;

/// Messages buffered before a batch is sent on without waiting for Sync or Flush.
const MAX_BATCH: usize = 1000;

/// Whether a batch needs an implicit transaction of the proxy's (see `run_batch`): a Bind of a
/// statement that writes, then a message the proxy answers itself, and no transaction control,
/// statement that cannot run in a transaction block, or COPY (whose rows arrive after the
/// Sync) anywhere in it.
fn needs_implicit(msgs: &[Msg]) -> bool {
    let control = |s: &crate::router::StatementPlan| {
        matches!(s.target, Target::Transaction(_) | Target::CopyIn(_)) || s.no_transaction
    };
    let (mut wrote, mut then_local) = (false, false);
    for m in msgs {
        let Some(st) = &m.stmt else {
            continue;
        };
        let stmts = &st.plan.statements;
        if stmts.iter().any(control) {
            return false;
        }
        if m.local {
            then_local |= wrote;
        } else if m.frame.tag == b'B' && stmts.iter().any(|s| s.writes || s.ddl) {
            wrote = true;
        }
    }
    then_local
}

/// One client message of a batch, with the statement it referred to when it arrived (a later
/// Parse of the same name must not change what an earlier Bind meant).
pub(super) struct Msg {
    pub frame: Frame,
    pub stmt: Option<Arc<Prepared>>,
    /// The proxy answers it itself (transaction control and SET, which the session's own
    /// machinery runs, and multi-shard reads, which the gather runs).
    pub local: bool,
    /// Its layout is not what PostgreSQL accepts (`protocol::check_message`): refused in its
    /// turn.
    pub malformed: bool,
    /// The gather portal a Bind makes when it runs.
    pub gather: Option<Box<super::ext_gather::GatherPortal>>,
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
    /// The error the shard answers `put_failing_execute` with, after a refusal: not shown (the
    /// shard sends none if an error of its own came first).
    Abort,
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
    /// The tags of the answers that end it.
    pub(super) fn last_tags(self) -> Tags {
        match self {
            End::Parse => Tags::of(b"1"),
            End::Bind => Tags::of(b"2"),
            End::Describe => Tags::of(b"Tn"),
            End::Execute => Tags::of(b"CIs"),
            End::Close => Tags::of(b"3"),
        }
    }

    pub(super) fn is_last(self, tag: u8) -> bool {
        self.last_tags().has(tag)
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
    /// The batch's Parses and statement Closes in order, with the name each changed (a Parse
    /// may change none) and what it named before (see `undo_names`).
    registered: Vec<Option<(String, Option<Arc<Prepared>>)>>,
    /// How many of them have run; `parse_failed`: the next one, a Parse, failed.
    pub(super) names_run: usize,
    pub(super) parse_failed: bool,
    /// A pipeline's statements and routes (`ext_pipeline.rs`).
    pub(super) pipeline: super::ext_pipeline::Buffers,
}

impl Session {
    /// Buffers one extended-protocol message; a Sync or Flush (or a full buffer) sends the batch.
    pub(super) async fn on_extended(&mut self, frame: Frame) -> Step {
        let tag = frame.tag;
        if tag == b'S' && !frame.body().is_empty() {
            return self.malformed_sync().await;
        }
        self.batch.push(frame);
        match tag {
            b'S' => match self.routed_batch_statement() {
                Some((st, at)) => self.run_routed_batch(st, at).await,
                None => self.run_batch(true).await,
            },
            b'H' => self.run_batch(false).await,
            _ if self.batch.len() >= MAX_BATCH => self.run_batch(false).await,
            _ => Ok(()),
        }
    }

    /// A Sync with a body: PostgreSQL runs what came before, then fails the Sync itself (after
    /// an earlier error too), which rolls back the implicit transaction, and is ready again.
    async fn malformed_sync(&mut self) -> Step {
        if !self.batch.is_empty() {
            self.run_batch(false).await?;
        }
        self.end_open_batch(true).await?;
        let _ = self.fail(&protocol::invalid_format());
        self.end_batch(true).await
    }

    pub(super) async fn run_batch(&mut self, sync: bool) -> Step {
        if sync && self.routed_pipeline() {
            return self.run_routed_pipeline().await;
        }
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
        self.scratch.registered.clear();
        (self.scratch.names_run, self.scratch.parse_failed) = (0, false);
        self.segment(&mut frames, &mut msgs);
        self.batch = frames;
        // What runs on a shard before a message the proxy answers itself is ended with a Sync
        // of the proxy's: PostgreSQL would run the whole batch as one implicit transaction, so
        // a write there runs inside one of the proxy's, ended at the client's Sync (committed
        // on every shard it wrote to, or rolled back if anything in the batch failed).
        let implicit = sync && self.txn.is_none() && self.ext.is_none() && needs_implicit(&msgs);
        if implicit {
            self.txn = Some(super::txn::Txn::implicit(self.settings.clone()));
        }
        let mut i = 0;
        while i < msgs.len() && !self.ext_skipping {
            if msgs[i].local {
                self.close_open_batch().await?;
                let next = msgs.get(i + 1).filter(|n| n.local).map(|n| &n.frame);
                // The Execute right after a Describe answers it with its own rows'
                // description: one round trip to the shards instead of two.
                if !self.describe_with_next_execute(&msgs[i].frame, next) {
                    self.run_local(&mut msgs[i]).await?;
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
        if self.ext_skipping {
            self.undo_names();
        }
        self.describe_next = None;
        if sync {
            self.close_open_batch().await?;
        }
        if implicit && self.txn.is_some() {
            let commit = !self.ext_skipping;
            self.end_txn(commit, false).await?;
        }
        let copied = std::mem::take(&mut self.copy_ran);
        if sync && copied {
            // The Sync sent with the COPY's Execute arrived before the data: PostgreSQL ignores
            // Syncs during COPY, and the client's next Sync gets the ReadyForQuery.
            return self.flush().await;
        }
        self.end_batch(sync).await
    }

    /// After an error, the Parses and Closes of the batch that did not run leave the names as
    /// they were, as PostgreSQL skips them; a Parse that failed leaves its name unused, as
    /// PostgreSQL creates no statement (and drops the unnamed one before parsing).
    fn undo_names(&mut self) {
        let (run, failed) = (self.scratch.names_run, self.scratch.parse_failed);
        let registered = std::mem::take(&mut self.scratch.registered);
        let undone = registered.into_iter().enumerate().skip(run).rev();
        for (i, (name, before)) in undone.filter_map(|(i, r)| Some((i, r?))) {
            match before {
                Some(st) if !(failed && i == run) => {
                    self.stmts.insert(name, st);
                }
                _ => {
                    self.stmts.remove(&name);
                }
            }
        }
    }

    /// Takes the batch's messages but Sync and Flush into `msgs`, registering Parses in order
    /// and marking the messages the proxy answers itself.
    fn segment(&mut self, frames: &mut Vec<Frame>, msgs: &mut Vec<Msg>) {
        for frame in frames.drain(..) {
            // A Flush with a body is an error in its turn (`decide`).
            if matches!(frame.tag, b'S' | b'H') && frame.body().is_empty() {
                continue;
            }
            let malformed = protocol::check_message(frame.tag, frame.body()).is_err();
            let mut gather = None;
            let (local, stmt) = match malformed {
                true => (false, None),
                false => self.classify(&frame, &mut gather),
            };
            msgs.push(Msg {
                frame,
                stmt,
                local,
                malformed,
                gather,
            });
        }
    }

    /// Whether the proxy answers this message itself, and the statement it refers to.
    /// A Bind of a read over several shards also gives the gather portal it makes (`gather`).
    fn classify(
        &mut self,
        f: &Frame,
        gather: &mut Option<Box<super::ext_gather::GatherPortal>>,
    ) -> (bool, Option<Arc<Prepared>>) {
        let is_local = |st: &Option<Arc<Prepared>>| st.as_ref().is_some_and(|s| s.local());
        match f.tag {
            b'P' => match self.repeated_parse(f.body()) {
                Some(st) => {
                    self.scratch.registered.push(None);
                    (st.local(), Some(st))
                }
                None => match protocol::decode_parse(f.body()) {
                    Ok(p) => {
                        let name = p.name.to_owned();
                        let before = self.stmts.get(&name).cloned();
                        let st = self.register(p);
                        self.scratch.registered.push(Some((name, before)));
                        (st.local(), Some(st))
                    }
                    Err(_) => {
                        self.scratch.registered.push(None);
                        (false, None)
                    }
                },
            },
            // The portal it makes is the proxy's from here on in the batch (`local_portals`);
            // a gather portal is made when the Bind runs, for the messages before it may still
            // run the portal of that name it replaces.
            b'B' => match protocol::bind_names(f.body()) {
                Ok(b) => {
                    let st = self.stmts.get(b.statement).cloned();
                    let fits = |s: &Prepared| {
                        let bind = protocol::decode_bind(f.body());
                        bind.is_ok_and(|b| s.bind_mismatch(f.body(), &b).is_none())
                    };
                    *gather = match &st {
                        Some(s) if !s.local() => self.gather_bind(s, f),
                        _ => None,
                    };
                    let local =
                        gather.is_some() || st.as_ref().is_some_and(|s| s.local() && fits(s));
                    match (&st, local) {
                        (Some(s), true) => {
                            self.local_portals.insert(b.portal.to_owned(), s.clone());
                        }
                        _ => {
                            self.local_portals.remove(b.portal);
                        }
                    }
                    (local, st)
                }
                Err(_) => (false, None),
            },
            b'C' => match protocol::decode_target(f.body()) {
                // The name is free for what follows in the batch, as in PostgreSQL.
                Ok((b'S', name)) => {
                    let st = self.stmts.remove(name);
                    self.scratch
                        .registered
                        .push(Some((name.to_owned(), st.clone())));
                    (is_local(&st), st)
                }
                Ok((_, portal)) => match self.local_portals.get(portal) {
                    Some(s) => (true, Some(s.clone())),
                    None => (false, None),
                },
                Err(_) => (false, None),
            },
            b'D' => match protocol::decode_target(f.body()) {
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
    async fn run_local(&mut self, m: &mut Msg) -> Step {
        let Some(st) = m.stmt.clone() else {
            return Ok(());
        };
        let body = m.frame.body();
        match m.frame.tag {
            b'P' => {
                self.scratch.names_run += 1;
                protocol::put_empty(&mut self.out, b'1');
            }
            b'B' => {
                if let Ok(b) = protocol::bind_names(body) {
                    match m.gather.take() {
                        Some(g) => self.gather_portals.insert(b.portal.to_owned(), *g),
                        None => self.gather_portals.remove(b.portal),
                    };
                }
                protocol::put_empty(&mut self.out, b'2');
            }
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
                // A statement's name was freed when the batch was read (`classify`).
                match protocol::decode_target(body) {
                    Ok((b'S', _)) => self.scratch.names_run += 1,
                    Ok((_, name)) => {
                        self.local_portals.remove(name);
                        self.gather_portals.remove(name);
                    }
                    Err(_) => {}
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
}

pub(super) fn is_statement_close(m: &Frame) -> bool {
    m.tag == b'C' && m.body().first() == Some(&b'S')
}

/// Describe or Close of a portal (as opposed to a statement).
pub(super) fn is_portal_message(m: &Frame) -> bool {
    matches!(m.tag, b'D' | b'C') && m.body().first() == Some(&b'P')
}
