//! Statements the proxy closes on a shard connection of its own accord: the ones kept by name
//! for a client's unnamed statement after a schema change, and the least recently used ones
//! when a connection holds as many as it may.

use super::exec::Recv;
use super::extended::Msg;
use super::prepared::Prepared;
use super::{Session, Step};
use crate::backend::statements::EVICT_AT_ONCE;
use crate::backend::PooledConn;
use crate::protocol;

/// True when `conn` holds as many statements as it may, a statement of `msgs` is not among
/// them, and closing some is safe now: between transactions, with no BEGIN waiting to ride
/// along with the next request (the Sync after the Closes would end either).
pub(super) fn needs_room(conn: &PooledConn, msgs: &[Msg]) -> bool {
    (msgs.iter().filter_map(|m| m.stmt.as_ref())).any(|st| needs_room_for(conn, st))
}

/// As `needs_room`, for the one statement `st`.
pub(super) fn needs_room_for(conn: &PooledConn, st: &Prepared) -> bool {
    conn.prepared.full() && may_close(conn) && conn.prepared.get(&st.backend_name) != Some(st.hash)
}

/// True when Closes and a Sync can go to `conn` now without touching a transaction.
pub(super) fn may_close(conn: &PooledConn) -> bool {
    conn.status == b'I' && !conn.has_prelude()
}

impl Session {
    /// Closes the statements `conn` used least recently, a tenth of what it may hold, so that
    /// the next ones can be prepared there: one round trip per that many new statements.
    pub(super) async fn make_room(
        &mut self,
        conn: &mut PooledConn,
    ) -> Step<Result<(), std::io::Error>> {
        let out = &mut self.scratch.out;
        out.clear();
        for name in conn.prepared.evict(EVICT_AT_ONCE) {
            protocol::put_target_message(out, b'C', b'S', &name);
        }
        self.closes_synced(conn).await
    }

    /// Closes on `conn` the statements of `msgs` kept by name for a client's unnamed one, and
    /// forgets them there, so that the next batch prepares them anew.
    pub(super) async fn close_auto(
        &mut self,
        msgs: &[Msg],
        conn: &mut PooledConn,
    ) -> Step<Result<(), std::io::Error>> {
        let out = &mut self.scratch.out;
        out.clear();
        for st in msgs
            .iter()
            .filter_map(|m| m.stmt.as_ref())
            .filter(|s| s.auto)
        {
            if conn.prepared.remove(&st.backend_name).is_some() {
                protocol::put_target_message(out, b'C', b'S', &st.backend_name);
            }
        }
        self.closes_synced(conn).await
    }

    /// Sends the Closes in the scratch buffer with a Sync, and waits for ReadyForQuery. Closing
    /// a statement cannot fail in PostgreSQL; if the shard says otherwise, it may still hold
    /// statements the proxy forgot, so the connection is not used again.
    async fn closes_synced(&mut self, conn: &mut PooledConn) -> Step<Result<(), std::io::Error>> {
        let out = &mut self.scratch.out;
        protocol::put_empty(out, b'S');
        conn.send(out);
        if let Err(e) = conn.flush().await {
            return Ok(Err(e));
        }
        loop {
            match self.recv(conn).await? {
                Recv::Frame(f) if f.tag == b'Z' => return Ok(Ok(())),
                Recv::Frame(f) if f.tag == b'E' => conn.broken = true,
                Recv::Frame(_) => {}
                Recv::Broken(e) => return Ok(Err(e)),
            }
        }
    }
}
