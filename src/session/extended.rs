//! The extended query protocol: Parse/Bind/Describe/Execute/Close batches, routed by the key in
//! their bound parameters and relayed to one shard, with client statements prepared lazily on
//! whichever pooled connection serves them.

use super::{Session, Step};
use crate::backend::PooledConn;
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::{array_from_binary, array_from_text, oid, ArrayKeys, Key, Ring, ShardId};
use crate::router::{self, QueryPlan, Route, Target};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Messages buffered before a batch is sent on without waiting for Sync or Flush.
const MAX_BATCH: usize = 1000;

/// A statement a client prepared, as the proxy keeps it.
pub struct Prepared {
    sql: Arc<str>,
    pub(super) types: Vec<u32>,
    hash: u64,
    pub(super) plan: Arc<QueryPlan>,
    /// Its name on backend connections: the same for every client preparing the same text and
    /// types, so a pooled connection prepares it once.
    backend_name: String,
    /// The session runs it itself (see `runs_locally`).
    local: bool,
}

/// One client message of a batch, with the statement it referred to when it arrived (a later
/// Parse of the same name must not change what an earlier Bind meant).
pub(super) struct Msg {
    pub frame: Frame,
    pub stmt: Option<Arc<Prepared>>,
}

/// A run of messages for one shard, or one message the proxy answers itself (transaction
/// control and SET, which the session's own machinery runs).
enum Segment {
    Shard(Vec<Msg>),
    Local(Msg),
}

/// What becomes of the shard's answer to one message of the batch, in order.
enum Expect {
    /// The answer to a client message, relayed; on success `record` is noted as prepared.
    Relay(End, Option<(String, u64)>),
    /// The answer to a Parse the proxy added: noted, never shown.
    Swallow(String, u64),
    /// An answer the proxy gives itself, in its turn.
    Emit(Bytes),
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

fn empty(tag: u8) -> Bytes {
    let mut b = BytesMut::with_capacity(5);
    protocol::put_empty(&mut b, tag);
    b.freeze()
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
        let frames = std::mem::take(&mut self.batch);
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
        let segments = self.segment(frames);
        let count = segments.len();
        let mut segments = segments.into_iter().enumerate().peekable();
        while let Some((i, seg)) = segments.next() {
            if self.ext_skipping {
                break;
            }
            match seg {
                Segment::Local(m) => {
                    self.close_open_batch().await?;
                    let next = match segments.peek() {
                        Some((_, Segment::Local(n))) => Some(&n.frame),
                        _ => None,
                    };
                    if self.describe_with_next_execute(&m.frame, next) {
                        // The Execute right after answers this Describe with its own rows'
                        // description: one round trip to the shards instead of two.
                        continue;
                    }
                    self.run_local(m).await?;
                }
                Segment::Shard(msgs) => self.run_segment(msgs, sync || i + 1 < count).await?,
            }
        }
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

    /// Splits a batch at the messages the proxy answers itself, registering Parses in order.
    fn segment(&mut self, frames: Vec<Frame>) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut run = Vec::new();
        for frame in frames {
            if matches!(frame.tag, b'S' | b'H') {
                continue;
            }
            let (local, stmt) = self.classify(&frame);
            let msg = Msg { frame, stmt };
            if local {
                if !run.is_empty() {
                    out.push(Segment::Shard(std::mem::take(&mut run)));
                }
                out.push(Segment::Local(msg));
            } else {
                run.push(msg);
            }
        }
        if !run.is_empty() {
            out.push(Segment::Shard(run));
        }
        out
    }

    /// Whether the proxy answers this message itself, and the statement it refers to.
    fn classify(&mut self, f: &Frame) -> (bool, Option<Arc<Prepared>>) {
        let is_local = |st: &Option<Arc<Prepared>>| st.as_ref().is_some_and(|s| s.local());
        match f.tag {
            b'P' => match protocol::decode_parse(f.body()) {
                Ok(p) => {
                    let st = Some(self.register(p));
                    (is_local(&st), st)
                }
                Err(_) => (false, None),
            },
            b'B' => match protocol::decode_bind(f.body()) {
                Ok(b) => {
                    let st = self.stmts.get(b.statement).cloned();
                    self.gather_portals.remove(b.portal);
                    match &st {
                        Some(s) if s.local() || self.gather_bind(s, &b, f) => {
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
    async fn run_local(&mut self, m: Msg) -> Step {
        let Some(st) = m.stmt else { return Ok(()) };
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
    async fn run_segment(&mut self, msgs: Vec<Msg>, sync: bool) -> Step {
        let (shard, refused_at) = self.decide(&msgs);
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        let needs_backend =
            self.ext.is_some() || msgs[..stop].iter().any(|m| !is_statement_close(&m.frame));
        if !needs_backend {
            return self.answer_locally(&msgs, refused_at);
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
            if let Ok(bind) = protocol::decode_bind(m.frame.body()) {
                note_portal(&mut self.portals, bind.portal, shard);
            }
        }
        let expects = self.build(&msgs, refused_at, sync, &mut conn);
        // A CancelRequest (or the statement timeout) reaches the Executes of this run too.
        let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
        if let Err(e) = conn.flush().await {
            return self.batch_broken(shard, conn, e).await;
        }
        let mut skipping = self.ext_skipping;
        let mut status = None;
        for exp in expects {
            match exp {
                Expect::Emit(b) if !skipping => self.out.extend_from_slice(&b),
                Expect::Refuse(e) if !skipping => {
                    self.error(&e);
                    skipping = true;
                }
                Expect::Relay(end, record) if !skipping => {
                    match self.relay_one(&mut conn, Some(end), record).await? {
                        Ok(ok) => skipping = !ok,
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
                    match self.recv_frame(&mut conn).await? {
                        Ok(f) if f.tag == b'Z' => {
                            status = Some(protocol::ready_status(f.body()));
                            break;
                        }
                        Ok(f) => self.out.extend_from_slice(&f.bytes),
                        Err(e) => return self.batch_broken(shard, conn, e).await,
                    }
                },
                _ => {}
            }
            self.maybe_flush().await?;
        }
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

    /// Where a run of messages goes: the shard of its bound keys, and the first message (with
    /// its error) that cannot run there.
    fn decide(&mut self, msgs: &[Msg]) -> (Option<ShardId>, Option<(usize, Error)>) {
        let mut shard = self.ext.as_ref().map(|(s, _)| *s);
        for (i, m) in msgs.iter().enumerate() {
            let f = &m.frame;
            let here = match f.tag {
                b'B' => match self.bind_shard(m) {
                    Ok((portal, s)) => {
                        if let Some(s) = s {
                            note_portal(&mut self.portals, portal, s);
                        }
                        s
                    }
                    Err(e) => return (shard, Some((i, e))),
                },
                b'E' => {
                    protocol::portal_of_execute(f.body()).and_then(|p| self.portals.get(p).copied())
                }
                b'D' | b'C' if is_portal_message(f) => protocol::decode_target(f.body())
                    .ok()
                    .and_then(|(_, p)| self.portals.get(p).copied()),
                b'D' if m.stmt.is_none() => {
                    let name = protocol::decode_target(f.body()).map(|(_, n)| n.to_owned());
                    let e = Error::UnknownStatement {
                        name: name.unwrap_or_default(),
                    };
                    return (shard, Some((i, e)));
                }
                _ => None,
            };
            match (shard, here) {
                (None, Some(s)) => shard = Some(s),
                (Some(a), Some(b)) if a != b => {
                    let e = Error::unsupported(
                        "statements for different shards in one pipelined batch are not supported yet",
                        "send Sync after each statement, or group the statements by shard key",
                    );
                    return (shard, Some((i, e)));
                }
                _ => {}
            }
        }
        (shard, None)
    }

    /// Records a client's Parse under its name (the unnamed statement too).
    fn register(&mut self, p: protocol::ParseMsg<'_>) -> Arc<Prepared> {
        // Drivers re-parse the unnamed statement with every query: the same text and types, and
        // the same cached plan, keep the statement already registered (no allocation).
        if let Some(old) = self.stmts.get(p.name).cloned() {
            if *old.sql == *p.query
                && old.types == p.types
                && Arc::ptr_eq(&self.plan(p.query), &old.plan)
            {
                return old;
            }
        }
        let name = p.name.to_owned();
        let prepared = self.prepared_of(p);
        self.stmts.insert(name, prepared.clone());
        prepared
    }

    /// A client's Parse as the session keeps it.
    pub(super) fn prepared_of(&mut self, p: protocol::ParseMsg<'_>) -> Arc<Prepared> {
        let mut h = twox_hash::XxHash3_64::with_seed(0);
        std::hash::Hasher::write(&mut h, p.query.as_bytes());
        for t in &p.types {
            std::hash::Hasher::write_u32(&mut h, *t);
        }
        let hash = std::hash::Hasher::finish(&h);
        let backend_name = if p.name.is_empty() {
            String::new()
        } else {
            format!("sg_{hash:016x}")
        };
        let plan = self.plan(p.query);
        let prepared = Prepared {
            local: runs_locally(p.query, &plan),
            sql: Arc::from(p.query),
            types: p.types,
            hash,
            plan,
            backend_name,
        };
        Arc::new(prepared)
    }

    /// The portal a Bind creates and the one shard its statement needs (None: any).
    fn bind_shard<'m>(&self, m: &'m Msg) -> Result<(&'m str, Option<ShardId>), Error> {
        let bind = protocol::decode_bind(m.frame.body())?;
        let prepared = m.stmt.clone().ok_or_else(|| Error::UnknownStatement {
            name: bind.statement.to_owned(),
        })?;
        let portal = bind.portal;
        let ring = self.ctx.ring.load();
        let route = match self.bind_route(&prepared, &bind, &ring, true)? {
            Some(r) => r,
            None => return Ok((portal, None)),
        };
        match route {
            Route::Any => Ok((portal, None)),
            Route::Shards(v) if v.len() == 1 => Ok((portal, Some(v[0]))),
            _ => Err(Error::unsupported(
                "writes that span shards and return rows are not supported through the extended query protocol yet",
                "add a condition on the shard key so the statement runs on one shard, or use the simple query protocol",
            )),
        }
    }

    /// Where a bound statement goes; None for an empty or multi-statement string (PostgreSQL
    /// says what is wrong with it).
    /// With `count`, the statement and the keys it is routed by are counted in the statistics.
    pub(super) fn bind_route(
        &self,
        prepared: &Prepared,
        bind: &protocol::BindMsg<'_>,
        ring: &Ring,
        count: bool,
    ) -> Result<Option<Route>, Error> {
        let [stmt] = prepared.plan.statements.as_slice() else {
            return Ok(None);
        };
        let route = match &stmt.target {
            Target::Bound(b) => {
                let ty = b.key_type;
                let mut param = |i: usize| -> Option<Result<Key, String>> {
                    let value = (*bind.params.get(i)?)?;
                    let oid = prepared.types.get(i).copied().unwrap_or(0);
                    let key = if bind.format(i) == 1 {
                        Key::from_binary(ty, oid, value).map_err(|e| e.0)
                    } else {
                        match std::str::from_utf8(value) {
                            Ok(text) => Key::from_text(ty, text).map_err(|e| e.0),
                            Err(_) => Err("parameter is not valid UTF-8".to_owned()),
                        }
                    };
                    if let (true, Ok(k)) = (count, &key) {
                        self.count_key(&stmt.tables, k);
                    }
                    Some(key)
                };
                let mut array = |i: usize| -> Option<Result<ArrayKeys, String>> {
                    let value = (*bind.params.get(i)?)?;
                    let declared = prepared.types.get(i).copied().unwrap_or(0);
                    // A parameter declared as text is the array's text form even in binary.
                    let textual = bind.format(i) != 1
                        || matches!(declared, oid::TEXT | oid::VARCHAR | oid::UNKNOWN);
                    let keys = if textual {
                        match std::str::from_utf8(value) {
                            Ok(text) => array_from_text(ty, text).map_err(|e| e.0),
                            Err(_) => Err("parameter is not valid UTF-8".to_owned()),
                        }
                    } else {
                        array_from_binary(ty, value).map_err(|e| e.0)
                    };
                    if let (true, Ok(ArrayKeys::Keys(keys))) = (count, &keys) {
                        for k in keys.iter().flatten() {
                            self.count_key(&stmt.tables, k);
                        }
                    }
                    Some(keys)
                };
                router::route_bound(stmt, ring, &mut param, &mut array)?
            }
            _ => router::route(stmt, ring)?,
        };
        if count {
            self.count(stmt, &route, ring);
        }
        Ok(Some(route))
    }

    /// The bytes for the shard and what to do with each answer.
    fn build(
        &mut self,
        msgs: &[Msg],
        refused_at: Option<(usize, Error)>,
        sync: bool,
        conn: &mut PooledConn,
    ) -> Vec<Expect> {
        if conn.has_prelude() {
            // The transaction's BEGIN goes ahead of this batch through the unnamed statement.
            conn.prepared.remove("");
        }
        let mut out = BytesMut::new();
        let mut expects = Vec::with_capacity(msgs.len() + 1);
        // Statements this batch prepares: the shard has not confirmed them yet.
        let mut parsed: Vec<(String, u64)> = Vec::new();
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        for msg in &msgs[..stop] {
            let m = &msg.frame;
            match m.tag {
                b'P' => {
                    let Some(st) = msg.stmt.clone() else {
                        continue;
                    };
                    if !st.backend_name.is_empty() && has(conn, &parsed, &st) {
                        expects.push(Expect::Emit(empty(b'1')));
                    } else {
                        protocol::put_parse(&mut out, &st.backend_name, &st.sql, &st.types);
                        let record = (st.backend_name.clone(), st.hash);
                        note(&mut parsed, &record);
                        expects.push(Expect::Relay(End::Parse, Some(record)));
                    }
                }
                b'B' => {
                    let Ok(bind) = protocol::decode_bind(m.body()) else {
                        continue;
                    };
                    let Some(st) = msg.stmt.clone() else {
                        continue;
                    };
                    ensure_prepared(conn, &mut parsed, &st, &mut out, &mut expects);
                    protocol::put_bind_renamed(&mut out, m.body(), &bind, &st.backend_name);
                    expects.push(Expect::Relay(End::Bind, None));
                }
                b'D' if !is_portal_message(m) => {
                    let Some(st) = msg.stmt.clone() else {
                        continue;
                    };
                    ensure_prepared(conn, &mut parsed, &st, &mut out, &mut expects);
                    protocol::put_target_message(&mut out, b'D', b'S', &st.backend_name);
                    expects.push(Expect::Relay(End::Describe, None));
                }
                b'C' if !is_portal_message(m) => {
                    if let Ok((_, name)) = protocol::decode_target(m.body()) {
                        self.stmts.remove(name);
                    }
                    expects.push(Expect::Emit(empty(b'3')));
                }
                b'S' | b'H' => {}
                tag => {
                    out.extend_from_slice(&m.bytes);
                    let end = match tag {
                        b'E' => End::Execute,
                        b'C' => End::Close,
                        _ => End::Describe,
                    };
                    expects.push(Expect::Relay(end, None));
                }
            }
        }
        if let Some((_, e)) = refused_at {
            expects.push(Expect::Refuse(e));
        }
        if sync {
            protocol::put_empty(&mut out, b'S');
            expects.push(Expect::Sync);
        } else {
            protocol::put_empty(&mut out, b'H');
        }
        conn.send(&out);
        expects
    }
}

impl Prepared {
    fn local(&self) -> bool {
        self.local
    }

    /// The text of one of its statements.
    pub(super) fn sql_of(&self, stmt: &router::StatementPlan) -> &str {
        self.sql.get(stmt.span.clone()).unwrap_or(&self.sql)
    }
}

/// Statements the session runs itself rather than relaying the protocol: transaction
/// control and SET, and schema changes and writes for several shards that return no rows
/// (run as the simple-protocol machinery runs them: on every shard, atomically).
fn runs_locally(sql: &str, plan: &QueryPlan) -> bool {
    let [one] = plan.statements.as_slice() else {
        return false;
    };
    match &one.target {
        Target::Transaction(_) | Target::Session(_) | Target::CopyIn(_) => true,
        Target::All | Target::Split(_) => {
            let lower = sql.trim_start().to_ascii_lowercase();
            // COPY ... TO STDOUT answers with CopyData, not rows: the gather relays it as is.
            one.ddl || lower.starts_with("copy") || (one.writes && !lower.contains("returning"))
        }
        _ => false,
    }
}

/// Records that this batch (re)defines a statement name: the latest Parse of a name wins.
fn note(parsed: &mut Vec<(String, u64)>, record: &(String, u64)) {
    parsed.retain(|(n, _)| *n != record.0);
    parsed.push(record.clone());
}

/// True when the connection has the statement, or this batch prepares it before.
fn has(conn: &PooledConn, parsed: &[(String, u64)], st: &Prepared) -> bool {
    conn.prepared.get(&st.backend_name) == Some(&st.hash)
        || parsed
            .iter()
            .any(|(n, h)| *n == st.backend_name && *h == st.hash)
}

/// Prepares the statement on this connection first if it is not there yet (lazily, hidden).
fn ensure_prepared(
    conn: &PooledConn,
    parsed: &mut Vec<(String, u64)>,
    st: &Prepared,
    out: &mut BytesMut,
    expects: &mut Vec<Expect>,
) {
    if !has(conn, parsed, st) {
        protocol::put_parse(out, &st.backend_name, &st.sql, &st.types);
        note(parsed, &(st.backend_name.clone(), st.hash));
        expects.push(Expect::Swallow(st.backend_name.clone(), st.hash));
    }
}

/// Records the shard of a portal; the unnamed portal, rebound with every query, is updated in
/// place rather than allocated again.
fn note_portal(portals: &mut protocol::Names<ShardId>, portal: &str, shard: ShardId) {
    match portals.get_mut(portal) {
        Some(s) => *s = shard,
        None => {
            portals.insert(portal.to_owned(), shard);
        }
    }
}

pub(super) fn is_statement_close(m: &Frame) -> bool {
    m.tag == b'C' && m.body().first() == Some(&b'S')
}

/// Describe or Close of a portal (as opposed to a statement).
fn is_portal_message(m: &Frame) -> bool {
    matches!(m.tag, b'D' | b'C') && m.body().first() == Some(&b'P')
}
