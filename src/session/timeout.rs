//! The proxy's own timeouts for a client: idle between requests, idle inside a transaction,
//! and a request running past `[proxy] statement_timeout_ms`.

use super::Session;
use crate::error::Error;
use crate::protocol::{self, Frame};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a shard may take to answer once asked to cancel, before its connection is given up.
pub(super) const CANCEL_GRACE: Duration = Duration::from_secs(5);

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// The idle limit that applies while waiting for the client's next message, if any: only
    /// between requests (a half-sent batch is not idle), and whether it is the transaction's.
    pub(super) fn idle_limit(&self) -> Option<(Duration, bool)> {
        if self.began.is_some() || !self.batch.is_empty() || self.ext.is_some() {
            return None;
        }
        let p = &self.ctx.config.load().proxy;
        let (ms, in_transaction) = match self.txn {
            Some(_) => (p.idle_transaction_timeout_ms, true),
            None => (p.client_idle_timeout_ms, false),
        };
        (ms > 0).then(|| (Duration::from_millis(ms), in_transaction))
    }

    /// Starts the statement timeout's clock for the request that just began.
    pub(super) fn arm_statement_timeout(&mut self) {
        let ms = self.ctx.config.load().proxy.statement_timeout_ms;
        self.deadline = (ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(ms));
    }

    /// The deadline passed while waiting for a shard: the first time, every shard the request
    /// runs on is asked to cancel (true: keep waiting for their answers); the second time, the
    /// grace for answering is over as well (false: give the connection up).
    pub(super) fn deadline_passed(&mut self) -> bool {
        if self.timed_out {
            return false;
        }
        self.timed_out = true;
        self.deadline = Some(tokio::time::Instant::now() + CANCEL_GRACE);
        let running = self.running.clone();
        tokio::spawn(async move { running.cancel_all().await });
        true
    }
}

/// A shard's answer after the statement timeout's cancel: its "canceling statement due to user
/// request" becomes what the client would see from PostgreSQL's own statement_timeout.
pub(super) fn timeout_error(frame: Frame) -> Frame {
    if frame.tag != b'E' || protocol::error_field(frame.body(), b'C').as_deref() != Some("57014") {
        return frame;
    }
    let mut out = BytesMut::new();
    protocol::put_error(&mut out, &Error::StatementTimeout);
    Frame {
        tag: b'E',
        bytes: out.freeze(),
    }
}
