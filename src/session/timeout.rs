//! The proxy's own timeouts for a client: idle between requests, idle inside a transaction,
//! and a request running past `[proxy] statement_timeout_ms`.

use super::Session;
use crate::backend::PooledConn;
use crate::error::Error;
use crate::protocol::{self, Frame};
use bytes::BytesMut;
use std::time::Duration;

/// How long a shard may take to answer once asked to cancel, before its connection is given up.
pub(super) const CANCEL_GRACE: Duration = Duration::from_secs(5);

impl Session {
    /// The idle limit that applies while waiting for the client's next message, if any: only
    /// between requests (a half-sent batch is not idle), and whether it is the transaction's.
    pub(super) fn idle_limit(&mut self) -> Option<(Duration, bool)> {
        if self.began.is_some() || !self.batch.is_empty() || self.ext.is_some() {
            return None;
        }
        let p = &self.config.get().proxy;
        let (ms, in_transaction) = match self.txn {
            Some(_) => (p.idle_transaction_timeout_ms, true),
            None => (p.client_idle_timeout_ms, false),
        };
        (ms > 0).then(|| (Duration::from_millis(ms), in_transaction))
    }

    /// Starts the statement timeout's clock for the request that just began.
    /// (Each Query and each batch sent is a statement to PostgreSQL's statement_timeout too.)
    pub(super) fn arm_statement_timeout(&mut self) {
        self.timed_out = false;
        let ms = self.config.get().proxy.statement_timeout_ms;
        self.deadline = (ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(ms));
        if let Some(d) = self.deadline {
            self.timer.as_mut().reset(d);
        }
    }

    /// The deadline passed while waiting for a shard: the first time, every shard the request
    /// runs on is asked to cancel (true: keep waiting for their answers); the second time, the
    /// grace for answering is over as well (false: give the connection up).
    pub(super) fn deadline_passed(&mut self) -> bool {
        if self.timed_out {
            return false;
        }
        self.timed_out = true;
        let grace = tokio::time::Instant::now() + CANCEL_GRACE;
        self.deadline = Some(grace);
        self.timer.as_mut().reset(grace);
        // The keys as they are now: read later, the set could hold the next request's.
        let keys = self.running.keys();
        self.cancels_sent
            .extend(keys.iter().map(|k| (k.addr, k.pid)));
        tokio::spawn(async move {
            for key in keys {
                key.cancel().await;
            }
        });
        true
    }
}

/// A shard's answer after the statement timeout's cancel: its "canceling statement due to user
/// request" becomes what the client would see from PostgreSQL's own statement_timeout.
pub(super) fn timeout_error(frame: &Frame) -> Option<Frame> {
    if frame.tag != b'E' || protocol::error_field(frame.body(), b'C').as_deref() != Some("57014") {
        return None;
    }
    let mut out = BytesMut::new();
    protocol::put_error(&mut out, &Error::StatementTimeout);
    Some(Frame {
        tag: b'E',
        bytes: out.freeze(),
    })
}

impl Session {
    /// A frame from `conn` after the timeout's cancel was sent: a 57014 shows the cancel was
    /// consumed by the statement it was meant for.
    pub(super) fn after_timeout(&mut self, conn: &PooledConn, frame: Frame) -> Frame {
        match timeout_error(&frame) {
            Some(rewritten) => {
                let key = conn.cancel_key();
                self.cancels_seen.push((key.addr, key.pid));
                rewritten
            }
            None => frame,
        }
    }

    /// A connection that was sent the timeout's cancel without showing it consumed: the cancel
    /// may still arrive and would then hit the next statement run on it (another client's,
    /// once pooled), so it is not used again.
    pub(super) fn cancel_pending(&self, conn: &PooledConn) -> bool {
        if self.cancels_sent.is_empty() {
            return false;
        }
        let key = conn.cancel_key();
        let id = (key.addr, key.pid);
        self.cancels_sent.contains(&id) && !self.cancels_seen.contains(&id)
    }
}
