//! A client's transaction across shards: which backend connections it holds, how a shard joins
//! it late, and how it ends (natively on one shard, by two-phase commit on several).

use super::settings::{Settings, UNKNOWN};
use super::{Session, Step};
use crate::backend::twophase::{Failure, Outcome};
use crate::backend::{self, PooledConn, Reply};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use crate::router::{SessionCommand, StatementPlan, Target, TxnCommand};
use futures_util::future::join_all;

pub struct Txn {
    /// The shards in the transaction, each with the connection pinned to it until the end.
    pub conns: Vec<(ShardId, PooledConn)>,
    /// The client's BEGIN, replayed on each shard as it joins (keeps isolation level and mode).
    begin: String,
    /// SAVEPOINT/RELEASE/ROLLBACK TO and SET commands, replayed on shards that join later.
    replay: Vec<String>,
    pub failed: bool,
    /// A shard's connection broke inside the transaction: its part is gone, so only ROLLBACK
    /// can end it (not even ROLLBACK TO SAVEPOINT).
    pub lost: Option<ShardId>,
    /// Shards a statement other than a plain read went to (the rest are asked at COMMIT).
    pub writers: Vec<ShardId>,
    /// Settings when the transaction began: a rollback undoes SETs made inside it.
    settings_before: Settings,
    settings_changed: bool,
    /// A schema change ran inside: re-read key types once it commits.
    pub ddl: bool,
}

impl Txn {
    pub fn explicit(begin: &str, settings: Settings) -> Txn {
        Txn {
            conns: Vec::new(),
            begin: begin.to_owned(),
            replay: Vec::new(),
            failed: false,
            lost: None,
            writers: Vec::new(),
            settings_before: settings,
            settings_changed: false,
            ddl: false,
        }
    }

    pub fn implicit(settings: Settings) -> Txn {
        Txn::explicit("BEGIN", settings)
    }
}

/// What a failed transaction still accepts: its end, or a rollback to a savepoint.
pub fn allowed_when_failed(stmt: &StatementPlan, sql: &str) -> bool {
    match &stmt.target {
        Target::Transaction(TxnCommand::Commit | TxnCommand::Rollback) => true,
        Target::Transaction(TxnCommand::Savepoint) => starts_with_words(sql, &["rollback"]),
        _ => false,
    }
}

fn starts_with_words(sql: &str, words: &[&str]) -> bool {
    let mut it = sql.split_whitespace();
    words
        .iter()
        .all(|w| it.next().is_some_and(|t| t.eq_ignore_ascii_case(w)))
}

impl Session {
    /// A connection to `shard` for the next statement: the transaction's own, or one from the
    /// pool with this client's settings applied (joining the transaction if one is open).
    pub(super) async fn acquire(&mut self, shard: ShardId) -> Result<PooledConn, Error> {
        if let Some(txn) = &mut self.txn {
            if !self.reads_only && !txn.writers.contains(&shard) {
                txn.writers.push(shard);
            }
            if let Some(i) = txn.conns.iter().position(|(s, _)| *s == shard) {
                return Ok(txn.conns.swap_remove(i).1);
            }
        }
        let mut conn = self.ctx.backend.checkout_on(self.worker, shard).await?;
        let fingerprint = self.settings.fingerprint();
        if conn.settings != fingerprint {
            let sql = self.settings.apply_sql();
            if let Err(e) = conn.query_rows(&sql).await {
                backend::discard(conn);
                return Err(e);
            }
            conn.settings = fingerprint;
        }
        if let Some(txn) = &self.txn {
            // Joins the transaction in the round trip of the statement that brings it here.
            let mut stmts = Vec::with_capacity(1 + txn.replay.len());
            stmts.push(txn.begin.clone());
            stmts.extend(txn.replay.iter().cloned());
            conn.set_prelude(stmts);
        }
        Ok(conn)
    }

    /// Gives a connection back to the transaction that holds it, or to the pool.
    pub(super) fn release(&mut self, shard: ShardId, mut conn: PooledConn) {
        if self.cancel_pending(&conn) {
            conn.broken = true;
        }
        if conn.broken {
            backend::discard(conn);
            self.mark_lost(shard);
            return;
        }
        if self.txn.is_none() && conn.status != b'I' {
            // Never hand a connection inside a transaction to the pool.
            tracing::warn!(
                "a connection to shard \"{}\" was still in a transaction; discarded",
                self.ctx.backend.name(shard)
            );
            backend::discard(conn);
            return;
        }
        match &mut self.txn {
            // Idle means the shard holds no transaction (its BEGIN failed with the statement,
            // or it was rolled back): it is not part of this one, and joins again when needed.
            Some(_) if conn.status == b'I' => drop(conn),
            Some(t) => t.conns.push((shard, conn)),
            None => drop(conn),
        }
    }

    pub(super) async fn txn_command(&mut self, cmd: &TxnCommand, sql: &str) -> Step<bool> {
        match cmd {
            TxnCommand::Begin => {
                if self.txn.is_some() {
                    self.notice("25001", "there is already a transaction in progress");
                } else {
                    self.txn = Some(Txn::explicit(sql, self.settings.clone()));
                }
                protocol::put_command_complete(&mut self.out, "BEGIN");
                Ok(true)
            }
            TxnCommand::Commit | TxnCommand::Rollback => {
                let commit = *cmd == TxnCommand::Commit;
                if self.txn.is_none() {
                    self.notice("25P01", "there is no transaction in progress");
                    let tag = if commit { "COMMIT" } else { "ROLLBACK" };
                    protocol::put_command_complete(&mut self.out, tag);
                    return Ok(true);
                }
                self.end_txn(commit, true).await
            }
            TxnCommand::Savepoint => self.savepoint(sql).await,
            TxnCommand::TwoPhase => self.fail(&Error::unsupported(
                "PREPARE TRANSACTION and COMMIT/ROLLBACK PREPARED cannot be used through shardgate",
                "shardgate manages two-phase commit across shards itself",
            )),
        }
    }

    /// SAVEPOINT, RELEASE and ROLLBACK TO run on every shard in the transaction and are replayed
    /// on shards that join later, so each shard has the same savepoints.
    async fn savepoint(&mut self, sql: &str) -> Step<bool> {
        let shards: Vec<ShardId> = match &self.txn {
            None => {
                let shard = self.ctx.ring.load().first_member();
                return self.exec_one(shard, sql).await;
            }
            Some(t) => t.conns.iter().map(|(s, _)| *s).collect(),
        };
        let rollback_to = starts_with_words(sql, &["rollback"]);
        if let Some(shard) = self.txn.as_ref().and_then(|t| t.lost) {
            let shard = self.ctx.backend.name(shard).to_owned();
            self.error(&Error::TransactionLost { shard });
            return Ok(false);
        }
        let ok = if shards.is_empty() {
            let tag = sql
                .split_whitespace()
                .next()
                .unwrap_or("SAVEPOINT")
                .to_ascii_uppercase();
            protocol::put_command_complete(&mut self.out, &tag);
            true
        } else {
            let was_failed = self.txn.as_ref().is_some_and(|t| t.failed);
            if let Some(t) = &mut self.txn {
                t.failed = false;
            }
            let ok = self.run_everywhere(&shards, sql).await?;
            if let Some(t) = &mut self.txn {
                t.failed = !ok || (was_failed && !rollback_to);
            }
            ok
        };
        if ok {
            if let Some(t) = &mut self.txn {
                t.replay.push(sql.to_owned());
            }
        }
        Ok(ok)
    }

    /// SET, RESET, DISCARD ALL: run once, then remembered and re-applied on every connection
    /// that serves this client.
    pub(super) async fn session_command(&mut self, cmd: &SessionCommand, sql: &str) -> Step<bool> {
        if let SessionCommand::Deallocate { name } = cmd {
            // The client's statements live in the session; backend connections keep theirs,
            // shared under content-derived names.
            let tag = match name {
                Some(n) if self.stmts.remove(n).is_none() => {
                    return self.fail(&Error::UnknownStatement { name: n.clone() })
                }
                Some(_) => "DEALLOCATE",
                None => {
                    self.stmts.clear();
                    "DEALLOCATE ALL"
                }
            };
            protocol::put_command_complete(&mut self.out, tag);
            return Ok(true);
        }
        let next = self.settings.after(cmd, sql);
        let shards: Vec<ShardId> = match &self.txn {
            Some(t) if !t.conns.is_empty() => t.conns.iter().map(|(s, _)| *s).collect(),
            _ => vec![self.ctx.ring.load().first_member()],
        };
        let ok = if shards.len() == 1 {
            if self.txn.is_none() {
                self.settings_after = Some(next.fingerprint());
            }
            self.exec_one(shards[0], sql).await?
        } else {
            self.run_everywhere(&shards, sql).await?
        };
        if ok {
            if let Some(t) = &mut self.txn {
                t.replay.push(sql.to_owned());
                t.settings_changed = true;
            }
            self.settings = next;
            if *cmd == SessionCommand::ResetAll {
                // DISCARD ALL deallocates the client's prepared statements too.
                self.stmts.clear();
            }
        }
        Ok(ok)
    }

    /// Runs `sql` on the given shards of the transaction, answering once.
    async fn run_everywhere(&mut self, shards: &[ShardId], sql: &str) -> Step<bool> {
        self.reads_only = true;
        let mut ok = true;
        let mut last_tag: Option<Frame> = None;
        for shard in shards {
            let mut conn = match self.acquire(*shard).await {
                Ok(c) => c,
                Err(e) => return self.fail(&e),
            };
            let result = backend::exchange(&mut conn, sql).await;
            self.release(*shard, conn);
            match result {
                Ok(Reply { error: None, tag }) => last_tag = tag.or(last_tag),
                Ok(Reply {
                    error: Some(err), ..
                }) => {
                    if ok {
                        self.out.extend_from_slice(&err.bytes);
                    }
                    ok = false;
                }
                Err(e) => return self.fail(&e),
            }
        }
        if ok {
            if let Some(tag) = last_tag {
                self.out.extend_from_slice(&tag.bytes);
            }
        }
        Ok(ok)
    }

    /// Ends the transaction on every shard in it: one shard commits natively, several through
    /// two-phase commit. With `report`, the client sees COMMIT or ROLLBACK (or the error that
    /// made the commit fail). Returns whether it committed.
    pub(super) async fn end_txn(&mut self, commit: bool, report: bool) -> Step<bool> {
        let Some(mut txn) = self.txn.take() else {
            return Ok(!commit);
        };
        let commit = commit && !txn.failed;
        let ok = if !commit {
            rollback(&mut txn.conns).await;
            true
        } else if txn.conns.len() > 1 {
            let backend = &self.ctx.backend;
            match backend
                .twophase
                .commit(backend, &mut txn.conns, &txn.writers)
                .await
            {
                Outcome::Committed { pending } => {
                    for shard in pending {
                        self.notice(
                            "01000",
                            &format!(
                                "the transaction committed, but shard \"{shard}\" has not \
                                 applied its part yet; shardgate applies it when the shard is \
                                 reachable again"
                            ),
                        );
                    }
                    true
                }
                Outcome::Aborted(Failure::Shard(frame)) => {
                    self.out.extend_from_slice(&frame.bytes);
                    false
                }
                Outcome::Aborted(Failure::Proxy(e)) | Outcome::Unknown(e) => {
                    self.error(&e);
                    false
                }
            }
        } else {
            self.commit_one(&mut txn.conns).await
        };
        for (shard, mut conn) in txn.conns {
            if txn.settings_changed {
                conn.settings = UNKNOWN;
            }
            self.release(shard, conn);
        }
        if !commit || !ok {
            self.settings = txn.settings_before;
        }
        if commit && ok && txn.ddl {
            self.refresh_catalog().await;
        }
        if report && ok {
            let tag = if commit { "COMMIT" } else { "ROLLBACK" };
            protocol::put_command_complete(&mut self.out, tag);
        }
        Ok(commit && ok)
    }

    /// COMMIT of a transaction on at most one shard, natively.
    async fn commit_one(&mut self, conns: &mut [(ShardId, PooledConn)]) -> bool {
        let Some((shard, conn)) = conns.first_mut() else {
            return true;
        };
        match backend::exchange(conn, "COMMIT").await {
            Ok(r) if r.is("COMMIT") => true,
            Ok(r) => {
                match r.error {
                    Some(frame) => self.out.extend_from_slice(&frame.bytes),
                    // A transaction the shard had already aborted answers COMMIT with ROLLBACK.
                    None => self.error(&Error::TransactionLost {
                        shard: self.ctx.backend.name(*shard).to_owned(),
                    }),
                }
                if conn.status != b'I' {
                    let _ = backend::exchange(conn, "ROLLBACK").await;
                }
                false
            }
            Err(e) => {
                self.error(&e);
                false
            }
        }
    }

    /// A connection of the open transaction broke: the transaction can only end in ROLLBACK,
    /// which happens on the other shards at once (see `settle_lost`).
    pub(super) fn mark_lost(&mut self, shard: ShardId) {
        if let Some(t) = &mut self.txn {
            t.failed = true;
            t.lost.get_or_insert(shard);
        }
    }

    /// Rolls back the other shards of a transaction that lost a shard, so their locks go now
    /// rather than when the client gets to its ROLLBACK.
    pub(super) async fn settle_lost(&mut self) {
        if let Some(t) = &mut self.txn {
            if t.lost.is_some() && !t.conns.is_empty() {
                let mut conns = std::mem::take(&mut t.conns);
                rollback(&mut conns).await;
                for (shard, conn) in conns {
                    self.release(shard, conn);
                }
            }
        }
    }

    /// The client left: roll back whatever it had open so its connections go back clean.
    pub(super) async fn abandon(&mut self) {
        if self.txn.is_some() {
            let _ = self.end_txn(false, false).await;
        }
        self.out.clear();
    }

    pub(super) fn notice(&mut self, code: &str, message: &str) {
        let fields = [
            (b'S', "WARNING"),
            (b'V', "WARNING"),
            (b'C', code),
            (b'M', message),
        ];
        let fields = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        protocol::put_fields(&mut self.out, true, fields);
    }
}

/// Rolls back every connection of a transaction, in parallel; a connection that cannot is
/// discarded when released (it is broken).
async fn rollback(conns: &mut [(ShardId, PooledConn)]) {
    join_all(
        conns
            .iter_mut()
            .map(|(_, c)| backend::exchange(c, "ROLLBACK")),
    )
    .await;
}
