//! Running one parsed statement: on one shard as a byte relay, or on several through
//! `scatter.rs`; and reading a shard's answer while watching the client.

use super::scatter::Combine;
use super::settings::UNKNOWN;
use super::{Gone, Session, Step, READ_AHEAD};
use crate::backend::{self, PooledConn, Running, Tags};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::{Ring, ShardId};
use crate::router::{self, QueryPlan, Route, StatementPlan, Target};
use crate::stats::RouteKind;
use std::sync::Arc;

/// Makes the statement's backends reachable by the client's CancelRequest while it runs.
pub(super) struct Cancellable(Arc<Running>);

impl Cancellable {
    pub(super) fn new(running: &Arc<Running>, conns: &[&PooledConn]) -> Self {
        for c in conns {
            running.add(c.cancel_key());
        }
        Cancellable(running.clone())
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// What one shard answered: the frame, or the connection broke.
pub(super) enum Recv {
    Frame(Frame),
    Broken(std::io::Error),
}

impl Session {
    /// Runs every statement of a query string; one ReadyForQuery follows (sent by the caller).
    pub(super) async fn run_plan(&mut self, text: &str, plan: &QueryPlan) -> Step {
        if let Err(e) = self.limit_plan(plan) {
            self.fail(&e)?;
            return Ok(());
        }
        if let Err(e) = self.gate_plan(plan).await {
            self.fail(&e)?;
            return Ok(());
        }
        if let [stmt] = plan.statements.as_slice() {
            self.run_statement(text, stmt).await?;
            return Ok(());
        }
        if let Some(shard) = self.common_shard(plan) {
            // Every statement lives on one shard: send the string as is, so PostgreSQL runs it
            // as the one implicit transaction it is.
            let ring = self.ctx.ring.load();
            for stmt in &plan.statements {
                let route = router::route(stmt, &ring).unwrap_or(Route::Any);
                self.count(stmt, &route, &ring);
            }
            self.exec_one(shard, text).await?;
            return Ok(());
        }
        let has_txn_control = plan
            .statements
            .iter()
            .any(|s| matches!(s.target, Target::Transaction(_)));
        let implicit = self.txn.is_none() && !has_txn_control;
        if implicit {
            self.txn = Some(super::txn::Txn::implicit(self.settings.clone()));
        }
        for stmt in &plan.statements {
            if !self.run_statement(text, stmt).await? {
                break;
            }
        }
        if implicit {
            let commit = self.txn.as_ref().is_some_and(|t| !t.failed);
            self.end_txn(commit, false).await?;
        }
        Ok(())
    }

    /// The one shard that every statement of a multi-statement string routes to, if any.
    fn common_shard(&self, plan: &QueryPlan) -> Option<ShardId> {
        if self.txn.is_some() {
            return None;
        }
        let ring = self.ctx.ring.load();
        let mut shard = None;
        for stmt in &plan.statements {
            if !matches!(stmt.target, Target::Any | Target::Keys(_)) {
                return None;
            }
            match router::route(stmt, &ring).ok()? {
                Route::Any => {}
                Route::Shards(v) if v.len() == 1 => match shard {
                    None => shard = Some(v[0]),
                    Some(s) if s == v[0] => {}
                    Some(_) => return None,
                },
                _ => return None,
            }
        }
        Some(shard.unwrap_or_else(|| ring.first_member()))
    }

    /// Runs one statement; returns whether it succeeded.
    pub(super) async fn run_statement(&mut self, text: &str, stmt: &StatementPlan) -> Step<bool> {
        self.run_statement_as(text, stmt, true).await
    }

    /// Runs one statement, counted in the statistics only with `count` (false: a statement
    /// counted already, whose first way to run was refused).
    pub(super) async fn run_statement_as(
        &mut self,
        text: &str,
        stmt: &StatementPlan,
        count: bool,
    ) -> Step<bool> {
        let counted = |s: &Self, tables: &crate::router::TableList, kind: RouteKind| {
            if count {
                s.count_kind(tables, kind);
            }
        };
        let sql = text.get(stmt.span.clone()).unwrap_or(text);
        if self.txn.as_ref().is_some_and(|t| t.failed)
            && !super::txn::allowed_when_failed(stmt, sql)
        {
            self.error(&Error::TransactionAborted);
            return Ok(false);
        }
        self.reads_only = !stmt.writes && !stmt.ddl;
        let ring = self.ctx.ring.load_full();
        let route = match &stmt.target {
            Target::Reject(e) => return self.fail(e),
            Target::Transaction(cmd) => {
                counted(self, &crate::router::TableList::default(), RouteKind::Any);
                return self.txn_command(cmd, sql).await;
            }
            Target::Session(cmd) => {
                counted(self, &crate::router::TableList::default(), RouteKind::Any);
                return self.session_command(cmd, sql).await;
            }
            // A simple Query has no parameters to bind: PostgreSQL answers ("there is no
            // parameter $1"), from any shard.
            Target::Bound(_) => {
                counted(self, &stmt.tables, RouteKind::Any);
                return self.exec_any(sql, &ring).await;
            }
            Target::CopyIn(copy) => {
                // Rows are not counted as keys: a bulk load would wash the hot keys out.
                let kind = RouteKind::of(ring.shard_count(), ring.shard_count());
                counted(self, &stmt.tables, kind);
                return self.copy_in(sql, copy, &ring).await;
            }
            _ => match router::route(stmt, &ring) {
                Ok(r) => r,
                Err(e) => return self.fail(&e),
            },
        };
        if count {
            self.count(stmt, &route, &ring);
        }
        let combine = match &stmt.target {
            _ if stmt.replicated => Combine::FirstCopy,
            Target::Split(split) => {
                Combine::RowOrder(split.keys.iter().map(|k| ring.shard_for_key(k)).collect())
            }
            _ => Combine::Concat,
        };
        if let Some(plan) = stmt.merge.clone() {
            if let Some(shards) = gather_shards(&route, &ring) {
                let mut request = bytes::BytesMut::new();
                protocol::put_query(&mut request, &plan.shard_sql);
                let limits = (plan.limit, plan.offset);
                return self
                    .exec_gather(shards, plan, &request, true, true, limits)
                    .await;
            }
        }
        let ok = match route {
            Route::Any => self.exec_any(sql, &ring).await?,
            Route::Shards(v) if v.len() == 1 => self.exec_one(v[0], sql).await?,
            Route::Shards(v) => {
                let parts = v.into_iter().map(|s| (s, sql.to_owned())).collect();
                self.exec_atomic(parts, stmt, combine).await?
            }
            Route::All => {
                let parts = (ring.members().iter())
                    .map(|&s| (s, sql.to_owned()))
                    .collect();
                self.exec_atomic(parts, stmt, combine).await?
            }
            Route::Split(mut parts) if parts.len() == 1 => {
                let (shard, sql) = parts.remove(0);
                self.exec_one(shard, &sql).await?
            }
            Route::Split(parts) => self.exec_atomic(parts, stmt, combine).await?,
        };
        if ok && stmt.ddl {
            match &mut self.txn {
                // Other connections see the new schema only after the commit.
                Some(t) => t.ddl = true,
                None => self.refresh_catalog().await,
            }
        }
        Ok(ok)
    }

    /// Reports an error for a statement that never reached a shard.
    pub(super) fn fail(&mut self, err: &Error) -> Step<bool> {
        self.error(err);
        if let Some(t) = &mut self.txn {
            t.failed = true;
        }
        Ok(false)
    }

    /// A statement that touches no sharded data: a shard already in the transaction, else the
    /// first of the ring's members that answers.
    pub(super) async fn exec_any(&mut self, sql: &str, ring: &Ring) -> Step<bool> {
        if let Some(t) = &self.txn {
            let shard = (t.conns.first().map(|(s, _)| *s)).unwrap_or_else(|| ring.first_member());
            return self.exec_one(shard, sql).await;
        }
        let mut last = None;
        for &shard in ring.members() {
            match self.acquire(shard).await {
                Ok(conn) => return self.relay(shard, conn, sql).await,
                Err(e @ Error::ShardUnavailable { .. }) => last = Some(e),
                Err(e) => return self.fail(&e),
            }
        }
        let err = last.unwrap_or_else(|| Error::internal("no shards configured"));
        self.fail(&err)
    }

    /// Multi-shard writes outside a transaction run inside one, committed on every shard only if
    /// the statement succeeded on every shard.
    async fn exec_atomic(
        &mut self,
        parts: Vec<(ShardId, String)>,
        stmt: &StatementPlan,
        combine: Combine,
    ) -> Step<bool> {
        let wrap = stmt.writes && !stmt.no_transaction && self.txn.is_none();
        if !wrap {
            return self.exec_many(parts, combine).await;
        }
        self.txn = Some(super::txn::Txn::implicit(self.settings.clone()));
        let ok = self.exec_many(parts, combine).await?;
        let committed = self.end_txn(ok, false).await?;
        Ok(ok && committed)
    }

    /// Relays one shard's whole answer to the client.
    pub(super) async fn exec_one(&mut self, shard: ShardId, sql: &str) -> Step<bool> {
        match self.acquire(shard).await {
            Ok(conn) => self.relay(shard, conn, sql).await,
            Err(e) => self.fail(&e),
        }
    }

    pub(super) async fn relay(
        &mut self,
        shard: ShardId,
        mut conn: PooledConn,
        sql: &str,
    ) -> Step<bool> {
        let _cancellable = Cancellable::new(&self.running, &[&conn]);
        conn.send_query(sql);
        let mut ok = true;
        if let Err(e) = conn.flush().await {
            return self.broken(shard, conn, e);
        }
        loop {
            let frame = match self.recv_past(&mut conn, Tags::of(b"TDCI")).await? {
                Recv::Frame(f) => f,
                Recv::Broken(e) => return self.broken(shard, conn, e),
            };
            match frame.tag {
                b'Z' => break,
                b'E' => ok = false,
                b'G' | b'W' => {
                    let _ = refuse_copy_in(&mut conn).await;
                    continue;
                }
                _ => {}
            }
            self.out.extend_from_slice(&frame.bytes);
            if self.out.len() >= super::FLUSH_AT {
                self.maybe_flush().await?;
            }
        }
        if !ok {
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
        }
        if let Some(fingerprint) = self.settings_after.take() {
            // This connection just ran the client's SET: label it with what it now holds.
            conn.settings = if ok { fingerprint } else { UNKNOWN };
        }
        self.release(shard, conn);
        Ok(ok)
    }

    /// The next frame from a shard, while watching the client: if the client hangs up meanwhile,
    /// the shard's statement is cancelled and the connection discarded.
    pub(super) async fn recv(&mut self, conn: &mut PooledConn) -> Step<Recv> {
        loop {
            if let Some(r) = self.buffered(conn) {
                return Ok(r);
            }
            if let Err(e) = self.wait_for(conn).await? {
                return Ok(Recv::Broken(e));
            }
        }
    }

    /// The next frame from a shard whose tag is not in `plain`; those before it are moved to
    /// the client's output as they came (`ServerConn::relay_plain`), the usual answer in one
    /// copy rather than a frame each.
    pub(super) async fn recv_past(&mut self, conn: &mut PooledConn, plain: Tags) -> Step<Recv> {
        loop {
            // After the statement timeout, each message is looked at (`after_timeout`).
            if !self.timed_out {
                conn.relay_plain(&mut self.out, super::FLUSH_AT, plain);
            }
            if let Some(r) = self.buffered(conn) {
                return Ok(r);
            }
            if let Err(e) = self.wait_for(conn).await? {
                return Ok(Recv::Broken(e));
            }
        }
    }

    /// Waits for more of a shard's answer (read into `conn`, not framed), while watching the
    /// client and the statement timeout.
    pub(super) async fn wait_for(
        &mut self,
        conn: &mut PooledConn,
    ) -> Step<Result<(), std::io::Error>> {
        loop {
            let watch = self.client.buffered() < READ_AHEAD;
            // Biased: the deadline first, so that a shard that always has rows ready cannot
            // keep it from being seen; the timer is registered once per request, not per frame.
            tokio::select! {
                biased;
                _ = self.timer.as_mut(), if self.deadline.is_some() => {
                    if !self.deadline_passed() {
                        conn.broken = true;
                        return Ok(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer to the statement timeout's cancel",
                        )));
                    }
                }
                r = conn.fill() => return Ok(r),
                n = self.client.fill(), if watch => {
                    if matches!(n, Ok(0) | Err(_)) {
                        conn.cancel().await;
                        conn.broken = true;
                        return Err(Gone);
                    }
                }
            }
        }
    }

    /// The next frame if the shard's answer already holds one, as `recv` gives it: the rest of
    /// an answer that arrived in one read is taken without a poll (or an await) per frame.
    pub(super) fn buffered(&mut self, conn: &mut PooledConn) -> Option<Recv> {
        Some(match conn.try_recv()? {
            Ok(f) if self.timed_out => Recv::Frame(self.after_timeout(conn, f)),
            Ok(f) => Recv::Frame(f),
            Err(e) => Recv::Broken(e),
        })
    }

    /// A shard connection broke mid-statement: discard it, tell the client, keep the session.
    pub(super) fn broken(
        &mut self,
        shard: ShardId,
        conn: PooledConn,
        e: std::io::Error,
    ) -> Step<bool> {
        backend::discard(conn);
        let err = self.unavailable(shard, e);
        self.mark_lost(shard);
        self.fail(&err)
    }

    pub(super) fn unavailable(&self, shard: ShardId, e: std::io::Error) -> Error {
        Error::ShardUnavailable {
            shard: self.ctx.backend.name(shard).to_owned(),
            detail: format!("connection lost: {e}"),
        }
    }
}

/// The shards a statement routed to several is gathered from: the members of the ring it was
/// routed with for one over all, even if a rebalance switches the ring meanwhile. None when
/// one shard answers it.
pub(super) fn gather_shards(route: &Route, ring: &Ring) -> Option<Vec<ShardId>> {
    match route {
        Route::Shards(v) if v.len() > 1 => Some(v.to_vec()),
        Route::All => Some(ring.members().to_vec()),
        _ => None,
    }
}

/// Refuses the COPY FROM STDIN a relayed statement started on a table the proxy does not
/// manage (the shard then answers with its error).
pub(super) async fn refuse_copy_in(conn: &mut PooledConn) -> std::io::Result<()> {
    conn.send(&copy_fail(
        "COPY FROM STDIN through shardgate is not supported yet",
    ));
    conn.flush().await
}

/// A CopyFail message.
pub(super) fn copy_fail(reason: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(reason.len() + 6);
    m.push(b'f');
    m.extend_from_slice(&((reason.len() + 5) as i32).to_be_bytes());
    m.extend_from_slice(reason.as_bytes());
    m.push(0);
    m
}
