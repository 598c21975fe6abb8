//! Where an extended-protocol run of messages goes (the shard of the keys its Binds carry) and
//! the bytes the proxy sends there for it, with client statements prepared lazily on the
//! connection.

use super::extended::{is_portal_message, End, Expect, Msg, Scratch};
use super::prepared::Prepared;
use super::Session;
use crate::backend::PooledConn;
use crate::error::Error;
use crate::protocol;
use crate::ring::{array_from_binary, array_from_text, oid, ArrayKeys, Key, Ring, ShardId};
use crate::router::{self, Route, Target};
use std::cell::RefCell;

impl Session {
    /// Where a run of messages goes: the shard of its bound keys, and the first message (with
    /// its error) that cannot run there.
    pub(super) fn decide(&mut self, msgs: &[Msg]) -> (Option<ShardId>, Option<(usize, Error)>) {
        let mut shard = self.ext.as_ref().map(|(s, _)| *s);
        for (i, m) in msgs.iter().enumerate() {
            let f = &m.frame;
            if m.malformed {
                let e = protocol::check_message(f.tag, f.body()).err();
                let e = e.unwrap_or_else(|| Error::internal("a malformed message"));
                return (shard, Some((i, e)));
            }
            let here = match f.tag {
                b'P' if m.stmt.is_none() => {
                    // A Parse the proxy could not read: PostgreSQL's own error for it.
                    let e = protocol::decode_parse(f.body()).err();
                    let e = e.unwrap_or_else(|| Error::internal("a Parse without its statement"));
                    return (shard, Some((i, e)));
                }
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

    /// The portal a Bind creates and the one shard its statement needs (None: any).
    fn bind_shard<'m>(&self, m: &'m Msg) -> Result<(&'m str, Option<ShardId>), Error> {
        // As PostgreSQL: the statement is looked up before the parameters are read.
        let Some(prepared) = m.stmt.as_ref() else {
            let names = protocol::bind_names(m.frame.body())?;
            return Err(Error::UnknownStatement {
                name: names.statement.to_owned(),
            });
        };
        self.bind_target(prepared, m.frame.body())
    }

    /// The portal a Bind of `prepared` (its body) creates and the one shard it needs (None:
    /// any); its keys are counted in the statistics.
    pub(super) fn bind_target<'b>(
        &self,
        prepared: &Prepared,
        body: &'b [u8],
    ) -> Result<(&'b str, Option<ShardId>), Error> {
        let (portal, route) =
            self.bind_routed(prepared, body, &self.ctx.ring.load(), Count::Now)?;
        Ok((portal, one_shard(route.as_ref())?))
    }

    /// The portal a Bind of `prepared` (its body) creates and where its statement goes on
    /// `ring`. None where PostgreSQL is to refuse it (a malformed Bind of a statement it is
    /// relayed to, an empty or multi-statement string): any shard will do.
    pub(super) fn bind_routed<'b>(
        &self,
        prepared: &Prepared,
        body: &'b [u8],
        ring: &Ring,
        count: Count<'_>,
    ) -> Result<(&'b str, Option<Route>), Error> {
        let own = prepared.local() || prepared_gathers(prepared);
        let bind = match protocol::decode_bind(body) {
            Ok(b) => b,
            // PostgreSQL reads the parameters one by one and may find another fault in one
            // before this: a Bind the proxy does not answer itself goes to a shard, which
            // answers with PostgreSQL's own error (the batch is skipped from there to Sync).
            Err(_) if !own => return Ok((protocol::bind_names(body)?.portal, None)),
            Err(e) => return Err(e),
        };
        // Before the keys are read, as PostgreSQL checks them before the parameters.
        prepared.params_mismatch(&bind)?;
        if own {
            // Not relayed as it is, so PostgreSQL would not see its end.
            protocol::check_bind_end(body, &bind)?;
        }
        Ok((bind.portal, self.bind_route(prepared, &bind, ring, count)?))
    }

    /// Where a bound statement goes; None for an empty or multi-statement string (PostgreSQL
    /// says what is wrong with it). `count` says whether the statement and the keys it is
    /// routed by are counted in the statistics.
    pub(super) fn bind_route(
        &self,
        prepared: &Prepared,
        bind: &protocol::BindMsg<'_>,
        ring: &Ring,
        count: Count<'_>,
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
                    let plain = (ty == crate::config::KeyType::Int && bind.format(i) != 1)
                        .then(|| crate::ring::plain_int(value))
                        .flatten();
                    let key = if let Some(n) = plain {
                        Ok(Key::Int(n))
                    } else if bind.format(i) == 1 {
                        Key::from_binary(ty, oid, value).map_err(|e| e.0)
                    } else {
                        text_param(value).and_then(|t| Key::from_text(ty, t).map_err(|e| e.0))
                    };
                    if let Ok(k) = &key {
                        count.key(self, &stmt.tables, k);
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
                        text_param(value).and_then(|t| array_from_text(ty, t).map_err(|e| e.0))
                    } else {
                        array_from_binary(ty, value).map_err(|e| e.0)
                    };
                    if let Ok(ArrayKeys::Keys(keys)) = &keys {
                        for k in keys.iter().flatten() {
                            count.key(self, &stmt.tables, k);
                        }
                    }
                    Some(keys)
                };
                router::route_bound(stmt, ring, &mut param, &mut array)?
            }
            _ => router::route(stmt, ring)?,
        };
        if let Count::Now = count {
            self.count(stmt, &route, ring);
        }
        Ok(Some(route))
    }

    /// Puts the bytes for the shard on the connection, and what to do with each answer in
    /// `expects`.
    pub(super) fn build(
        &mut self,
        msgs: &[Msg],
        refused_at: Option<(usize, Error)>,
        sync: bool,
        conn: &mut PooledConn,
        expects: &mut Vec<Expect>,
    ) {
        let Scratch {
            out, parsed: batch, ..
        } = &mut self.scratch;
        out.clear();
        // Statements this batch prepares: the shard has not confirmed them yet.
        batch.clear();
        let in_txn = self.txn.is_some();
        let stop = refused_at.as_ref().map_or(msgs.len(), |(i, _)| *i);
        for msg in &msgs[..stop] {
            let m = &msg.frame;
            match m.tag {
                b'P' => {
                    let Some(st) = &msg.stmt else {
                        continue;
                    };
                    let name = server_name(st, conn, batch, in_txn);
                    if !name.is_empty() && has(conn, batch, name, st.hash) {
                        expects.push(Expect::Emit(b'1'));
                    } else {
                        protocol::put_parse(out, name, &st.sql, &st.types);
                        let record = (name.to_owned(), st.hash);
                        note(batch, &record);
                        expects.push(Expect::Relay(End::Parse, Some(record)));
                    }
                }
                b'B' => {
                    // Its names were read when it arrived (`classify`).
                    let Some(statement_at) = protocol::bind_statement_at(m.body()) else {
                        continue;
                    };
                    let Some(st) = &msg.stmt else {
                        continue;
                    };
                    let name = server_name(st, conn, batch, in_txn);
                    ensure_prepared(conn, batch, name, st, out, expects);
                    protocol::put_bind_renamed(out, m.body(), statement_at, name);
                    expects.push(Expect::Relay(End::Bind, None));
                }
                b'D' if !is_portal_message(m) => {
                    let Some(st) = &msg.stmt else {
                        continue;
                    };
                    let name = server_name(st, conn, batch, in_txn);
                    ensure_prepared(conn, batch, name, st, out, expects);
                    protocol::put_target_message(out, b'D', b'S', name);
                    expects.push(Expect::Relay(End::Describe, None));
                }
                // The name was freed when the batch was read (`classify`).
                b'C' if !is_portal_message(m) => expects.push(Expect::Emit(b'3')),
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
            // What ran before the refusal must not be committed by the Sync.
            protocol::put_failing_execute(out);
            expects.push(Expect::Abort);
        }
        if sync {
            protocol::put_empty(out, b'S');
            expects.push(Expect::Sync);
        } else {
            protocol::put_empty(out, b'H');
        }
        conn.send(out);
    }
}

/// Records that this batch (re)defines a statement name: the latest Parse of a name wins.
fn note(parsed: &mut Vec<(String, u64)>, record: &(String, u64)) {
    parsed.retain(|(n, _)| *n != record.0);
    parsed.push(record.clone());
}

/// True when the connection has the statement `name` with this hash, or this batch prepares
/// it before.
fn has(conn: &mut PooledConn, parsed: &[(String, u64)], name: &str, hash: u64) -> bool {
    conn.prepared.holds(name, hash) || parsed.iter().any(|(n, h)| n == name && *h == hash)
}

/// The name a statement goes by on this connection. A client's unnamed statement kept under
/// its own name (`Prepared::auto`) goes unnamed again inside a transaction block, where a
/// shard's refusal to bind it after a schema change could not be retried, and on a connection
/// that holds as many statements as it may when none can be closed first (see `needs_room`).
fn server_name<'s>(
    st: &'s Prepared,
    conn: &mut PooledConn,
    parsed: &[(String, u64)],
    in_txn: bool,
) -> &'s str {
    let mut full = || conn.prepared.full() && !has(conn, parsed, &st.backend_name, st.hash);
    if st.auto && (in_txn || full()) {
        ""
    } else {
        &st.backend_name
    }
}

/// Prepares the statement on this connection first if it is not there yet (lazily, hidden).
fn ensure_prepared(
    conn: &mut PooledConn,
    parsed: &mut Vec<(String, u64)>,
    name: &str,
    st: &Prepared,
    out: &mut bytes::BytesMut,
    expects: &mut Vec<Expect>,
) {
    if !has(conn, parsed, name, st.hash) {
        protocol::put_parse(out, name, &st.sql, &st.types);
        note(parsed, &(name.to_owned(), st.hash));
        expects.push(Expect::Swallow(name.to_owned(), st.hash));
    }
}

/// Whether `bind_route` counts the statement it routes in the statistics: at once, not at all,
/// or later, its keys bound as parameters kept here meanwhile (the statement and the keys it
/// names as literals are counted then, with its route: `Session::count`).
pub(super) enum Count<'a> {
    Now,
    Not,
    Later(&'a RefCell<Vec<Key>>),
}

impl Count<'_> {
    fn key(&self, session: &Session, tables: &crate::router::TableList, key: &Key) {
        match self {
            Count::Now => session.count_key(tables, key),
            Count::Not => {}
            Count::Later(keys) => keys.borrow_mut().push(key.clone()),
        }
    }
}

/// The one shard a bound statement's route needs (None: any), or why it cannot run so.
pub(super) fn one_shard(route: Option<&Route>) -> Result<Option<ShardId>, Error> {
    match route {
        None | Some(Route::Any) => Ok(None),
        Some(Route::Shards(v)) if v.len() == 1 => Ok(Some(v[0])),
        Some(_) => Err(Error::unsupported(
            "writes that span shards and return rows are not supported through the extended query protocol yet",
            "add a condition on the shard key so the statement runs on one shard, or use the simple query protocol",
        )),
    }
}

/// Records the shard of a portal; the unnamed portal, rebound with every query, is updated in
/// place rather than allocated again.
pub(super) fn note_portal(portals: &mut protocol::Names<ShardId>, portal: &str, shard: ShardId) {
    match portals.get_mut(portal) {
        Some(s) => *s = shard,
        None => {
            portals.insert(portal.to_owned(), shard);
        }
    }
}

/// A statement whose Binds the gather may answer: a read over several shards (as
/// `gather_bind` takes them).
pub(super) fn prepared_gathers(p: &Prepared) -> bool {
    let [s] = p.plan.statements.as_slice() else {
        return false;
    };
    let several = match &s.target {
        Target::Keys(_) | Target::Bound(_) => !s.target.single_key(),
        Target::All => true,
        _ => false,
    };
    several && !s.writes && s.not_mergeable.is_none()
}

/// A text-format parameter as PostgreSQL reads it: UTF-8 without NUL bytes.
fn text_param(value: &[u8]) -> Result<&str, String> {
    match std::str::from_utf8(value) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => Err("invalid byte sequence for encoding \"UTF8\"".to_owned()),
    }
}
