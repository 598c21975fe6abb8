//! Simple-protocol statements run as their shape's prepared statement (`[proxy] auto_prepare`):
//! parsed once per shard connection, then bound with the statement's literals as text
//! parameters, and answered to the client exactly as the simple protocol answers.
//!
//! Only outside a transaction block: if the shard refuses the prepared form before running it
//! (at Parse or Bind), nothing has happened yet, and the statement's own text runs instead,
//! so the client sees what PostgreSQL says of the text itself.

use super::exec::Recv;
use super::{Session, Step};
use crate::backend::{PooledConn, Tags};
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use crate::router::cache::ServerStmt;
use crate::router::literals::{Lit, LitKind};
use bytes::{BufMut, BytesMut};
use std::sync::Arc;

/// How the shard answered before running the statement.
enum Early {
    Ran,
    /// Refused at Parse or Bind, with the SQLSTATE it gave.
    Refused {
        parsed: bool,
        code: Option<String>,
    },
}

impl Session {
    /// The server-side statement to run `text` (routed by the shape `shape`) as, if it is to
    /// run as one.
    pub(super) fn auto_prepared(&mut self, shape: u64, text: &str) -> Option<Arc<ServerStmt>> {
        if !self.may_bind_literals(text) {
            return None;
        }
        self.cache.server_stmt(shape, text)
    }

    /// Whether `text`, the statement the plan cache last routed by its shape, may run with its
    /// literals bound as parameters: with `auto_prepare` on, outside a transaction block (a
    /// shard's refusal of that form is answered by running the text, which a failed
    /// transaction would not allow), not while a SET is being applied, and with no backslash
    /// in a string constant (an escape if the session turned standard_conforming_strings off:
    /// such a literal keeps its text).
    pub(super) fn may_bind_literals(&mut self, text: &str) -> bool {
        self.txn.is_none()
            && self.settings_after.is_none()
            && self.config.get().proxy.auto_prepare
            && !(self.cache.lits().iter())
                .any(|l| l.kind == LitKind::Str && text[l.span.clone()].contains('\\'))
    }

    /// Runs `text` on `shard` as `st` with its literals bound, relaying the answer.
    pub(super) async fn exec_prepared(
        &mut self,
        shard: ShardId,
        text: &str,
        st: Arc<ServerStmt>,
    ) -> Step<bool> {
        let mut conn = match self.acquire(shard).await {
            Ok(c) => c,
            Err(e) => return self.fail(&e),
        };
        let parse = !conn.prepared.holds(&st.name, st.hash);
        if parse && conn.prepared.full() {
            if !super::server_stmts::may_close(&conn) {
                return self.relay(shard, conn, text).await;
            }
            if let Err(e) = self.make_room(&mut conn).await? {
                return self.broken(shard, conn, e);
            }
        }
        let _cancellable = super::exec::Cancellable::new(&self.running, &[&conn]);
        let out = &mut self.scratch.out;
        out.clear();
        if parse {
            protocol::put_parse(out, &st.name, &st.sql, &st.types);
        }
        put_bind_literals(out, &st.name, text, self.cache.lits());
        protocol::put_target_message(out, b'D', b'P', "");
        protocol::put_execute_all(out);
        protocol::put_empty(out, b'S');
        conn.send(out);
        if let Err(e) = conn.flush().await {
            return self.broken(shard, conn, e);
        }
        let mut early = Early::Ran;
        let (mut bound, mut parsed, mut ok) = (false, false, true);
        // Notices the shard sent before BindComplete: the client's only if the statement ran.
        let mut held: Vec<Frame> = Vec::new();
        loop {
            // Once bound, rows and the command tag are the client's as they came.
            let plain = Tags::of(if bound { b"TDC" } else { b"" });
            let frame = match self.recv_past(&mut conn, plain).await? {
                Recv::Frame(f) => f,
                Recv::Broken(e) => return self.broken(shard, conn, e),
            };
            match frame.tag {
                b'1' => {
                    parsed = true;
                    conn.prepared.insert(st.name.clone(), st.hash);
                    continue;
                }
                b'2' => {
                    bound = true;
                    for f in held.drain(..) {
                        self.out.extend_from_slice(&f.bytes);
                    }
                    continue;
                }
                // The Describe's answer for a statement without rows: the simple protocol has none.
                b'n' => continue,
                b'Z' => break,
                b'E' if !bound => {
                    early = Early::Refused {
                        parsed: parsed || !parse,
                        code: protocol::error_field(frame.body(), b'C'),
                    };
                    continue;
                }
                b'E' => ok = false,
                _ if !bound => {
                    held.push(frame);
                    continue;
                }
                _ => {}
            }
            self.out.extend_from_slice(&frame.bytes);
            if self.out.len() >= super::FLUSH_AT {
                self.maybe_flush().await?;
            }
        }
        match early {
            Early::Ran => {
                self.release(shard, conn);
                Ok(ok)
            }
            Early::Refused { parsed, code } => {
                self.run_as_text(shard, conn, text, &st, parsed, code).await
            }
        }
    }

    /// After the shard refused the prepared form: closes it (a statement whose result type a
    /// schema change altered must be prepared again) and runs the text itself. A form the
    /// shard refuses while it runs the text is not tried again by this session.
    async fn run_as_text(
        &mut self,
        shard: ShardId,
        mut conn: PooledConn,
        text: &str,
        st: &ServerStmt,
        parsed: bool,
        code: Option<String>,
    ) -> Step<bool> {
        conn.prepared.remove(&st.name);
        let out = &mut self.scratch.out;
        out.clear();
        protocol::put_target_message(out, b'C', b'S', &st.name);
        protocol::put_empty(out, b'S');
        conn.send(out);
        if let Err(e) = conn.flush().await {
            return self.broken(shard, conn, e);
        }
        loop {
            match self.next_frame(&mut conn).await? {
                Recv::Frame(f) if f.tag == b'Z' => break,
                Recv::Frame(_) => {}
                Recv::Broken(e) => return self.broken(shard, conn, e),
            }
        }
        let ok = self.relay(shard, conn, text).await?;
        // "cached plan must not change result type" (0A000) only needs the statement again.
        if ok && (!parsed || code.as_deref() != Some("0A000")) {
            self.cache.unpreparable(st);
        }
        Ok(ok)
    }

    async fn next_frame(&mut self, conn: &mut PooledConn) -> Step<Recv> {
        match self.buffered(conn) {
            Some(r) => Ok(r),
            None => self.recv(conn).await,
        }
    }
}

/// A Bind of the unnamed portal to `name` with each literal's value as a text parameter, and
/// every result column in text, as the simple protocol returns them.
pub(super) fn put_bind_literals(out: &mut BytesMut, name: &str, text: &str, lits: &[Lit]) {
    out.put_u8(b'B');
    let at = out.len();
    out.put_i32(0);
    out.put_u8(0);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_i16(0);
    out.put_i16(lits.len() as i16);
    for l in lits {
        let raw = &text[l.span.clone()];
        match l.kind {
            LitKind::Int => {
                out.put_i32(raw.len() as i32);
                out.put_slice(raw.as_bytes());
            }
            LitKind::Str => {
                let value = l.value(text);
                out.put_i32(value.len() as i32);
                out.put_slice(value.as_bytes());
            }
        }
    }
    out.put_i16(0);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}
