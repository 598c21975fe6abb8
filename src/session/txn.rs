//! A client's transaction across shards: which backend connections it holds, how a shard joins
//! it late, and how it ends. (Commit over several shards is sequential here; two-phase commit
//! arrives with the transactions work.)

use super::settings::{Settings, UNKNOWN};
use super::{Session, Step};
use crate::backend::{self, PooledConn};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use crate::router::{SessionCommand, StatementPlan, Target, TxnCommand};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

pub struct Txn {
    /// The shards in the transaction, each with the connection pinned to it until the end.
    pub conns: Vec<(ShardId, PooledConn)>,
    /// The client's BEGIN, replayed on each shard as it joins (keeps isolation level and mode).
    begin: String,
    /// SAVEPOINT/RELEASE/ROLLBACK TO and SET commands, replayed on shards that join later.
    replay: Vec<String>,
    pub failed: bool,
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

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// A connection to `shard` for the next statement: the transaction's own, or one from the
    /// pool with this client's settings applied (joining the transaction if one is open).
    pub(super) async fn acquire(&mut self, shard: ShardId) -> Result<PooledConn, Error> {
        if let Some(txn) = &mut self.txn {
            if let Some(i) = txn.conns.iter().position(|(s, _)| *s == shard) {
                return Ok(txn.conns.swap_remove(i).1);
            }
        }
        let mut conn = self.ctx.backend.checkout(shard).await?;
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
            let mut sql = txn.begin.clone();
            for r in &txn.replay {
                sql.push_str("; ");
                sql.push_str(r);
            }
            if let Err(e) = conn.query_rows(&sql).await {
                backend::discard(conn);
                return Err(e);
            }
        }
        Ok(conn)
    }

    /// Gives a connection back to the transaction that holds it, or to the pool.
    pub(super) fn release(&mut self, shard: ShardId, conn: PooledConn) {
        if conn.broken {
            backend::discard(conn);
            if let Some(t) = &mut self.txn {
                t.failed = true;
            }
            return;
        }
        match &mut self.txn {
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
            None => return self.exec_one(ShardId(0), sql).await,
            Some(t) => t.conns.iter().map(|(s, _)| *s).collect(),
        };
        let rollback_to = starts_with_words(sql, &["rollback"]);
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
            _ => vec![ShardId(0)],
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
        }
        Ok(ok)
    }

    /// Runs `sql` on the given shards of the transaction, answering once.
    async fn run_everywhere(&mut self, shards: &[ShardId], sql: &str) -> Step<bool> {
        let mut ok = true;
        let mut last_tag: Option<Frame> = None;
        for shard in shards {
            let mut conn = match self.acquire(*shard).await {
                Ok(c) => c,
                Err(e) => return self.fail(&e),
            };
            let result = collect(&mut conn, sql).await;
            self.release(*shard, conn);
            match result {
                Ok((None, tag)) => last_tag = tag.or(last_tag),
                Ok((Some(err), _)) => {
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

    /// Ends the transaction on every shard in it. With `report`, the client sees COMMIT or
    /// ROLLBACK (or the error that made the commit fail). Returns whether it committed.
    pub(super) async fn end_txn(&mut self, commit: bool, report: bool) -> Step<bool> {
        let Some(txn) = self.txn.take() else {
            return Ok(!commit);
        };
        let commit = commit && !txn.failed;
        let mut ok = true;
        for (shard, mut conn) in txn.conns {
            let sql = if commit && ok { "COMMIT" } else { "ROLLBACK" };
            match collect(&mut conn, sql).await {
                Ok((Some(err), _)) if sql == "COMMIT" => {
                    ok = false;
                    self.out.extend_from_slice(&err.bytes);
                }
                Ok(_) => {}
                Err(e) => {
                    if sql == "COMMIT" {
                        ok = false;
                        self.error(&e);
                    }
                }
            }
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

    /// The client left: roll back whatever it had open so its connections go back clean.
    pub(super) async fn abandon(&mut self) {
        if self.txn.is_some() {
            let _ = self.end_txn(false, false).await;
        }
        self.out.clear();
    }

    pub(super) fn notice(&mut self, code: &str, message: &str) {
        let mut body = BytesMut::new();
        for (k, v) in [
            (b'S', "WARNING"),
            (b'V', "WARNING"),
            (b'C', code),
            (b'M', message),
        ] {
            body.extend_from_slice(&[k]);
            body.extend_from_slice(v.as_bytes());
            body.extend_from_slice(&[0]);
        }
        body.extend_from_slice(&[0]);
        self.out.extend_from_slice(b"N");
        self.out
            .extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        self.out.extend_from_slice(&body);
    }
}

/// Runs `sql` and reads the answer to its end: (the first error, the last CommandComplete).
async fn collect(
    conn: &mut PooledConn,
    sql: &str,
) -> Result<(Option<Frame>, Option<Frame>), Error> {
    let lost = |conn: &PooledConn, e: std::io::Error| Error::ShardUnavailable {
        shard: conn.shard.clone(),
        detail: format!("connection lost: {e}"),
    };
    conn.send_query(sql);
    if let Err(e) = conn.flush().await {
        return Err(lost(conn, e));
    }
    let (mut err, mut tag) = (None, None);
    loop {
        let frame = match conn.recv().await {
            Ok(f) => f,
            Err(e) => return Err(lost(conn, e)),
        };
        match frame.tag {
            b'Z' => return Ok((err, tag)),
            b'E' if err.is_none() => err = Some(frame),
            b'C' => tag = Some(frame),
            _ => {}
        }
    }
}
