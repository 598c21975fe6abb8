//! A simple Query whose answer the proxy reads itself (transaction control, 2PC): the first
//! error and the last command tag, with the rows dropped.

use super::ServerConn;
use crate::error::Error;
use crate::protocol::{self, Frame};

/// What a shard answered to one simple Query.
pub struct Reply {
    /// The first ErrorResponse, as sent (the client may see it byte for byte).
    pub error: Option<Frame>,
    /// The last CommandComplete, as sent.
    pub tag: Option<Frame>,
}

impl Reply {
    /// The last command tag ("COMMIT", "PREPARE TRANSACTION", ...), empty without one.
    pub fn tag_text(&self) -> &str {
        self.tag
            .as_ref()
            .and_then(|f| std::str::from_utf8(f.body().strip_suffix(&[0]).unwrap_or(f.body())).ok())
            .unwrap_or("")
    }

    /// The error's SQLSTATE, if there was an error.
    pub fn sqlstate(&self) -> Option<String> {
        self.error
            .as_ref()
            .and_then(|f| protocol::error_field(f.body(), b'C'))
    }

    /// The error's message, if there was an error.
    pub fn message(&self) -> Option<String> {
        self.error
            .as_ref()
            .and_then(|f| protocol::error_field(f.body(), b'M'))
    }

    /// A COMMIT/ROLLBACK PREPARED that took effect, or had already: 42704 says the prepared
    /// transaction no longer exists (another proxy's recovery or a retry got there first).
    pub fn finished_prepared(&self) -> bool {
        self.error.is_none() || self.sqlstate().as_deref() == Some("42704")
    }

    /// Succeeded with exactly this final tag.
    pub fn is(&self, tag: &str) -> bool {
        self.error.is_none() && self.tag_text() == tag
    }
}

/// Runs `sql` on `conn` and reads the answer up to ReadyForQuery. A lost connection is an
/// `Err` naming the shard (and leaves the connection marked broken).
pub async fn exchange(conn: &mut ServerConn, sql: &str) -> Result<Reply, Error> {
    let lost = |conn: &ServerConn, e: std::io::Error| Error::ShardUnavailable {
        shard: conn.shard.clone(),
        detail: format!("connection lost: {e}"),
    };
    conn.send_query(sql);
    if let Err(e) = conn.flush().await {
        return Err(lost(conn, e));
    }
    let mut reply = Reply {
        error: None,
        tag: None,
    };
    loop {
        let frame = match conn.recv().await {
            Ok(f) => f,
            Err(e) => return Err(lost(conn, e)),
        };
        match frame.tag {
            b'Z' => return Ok(reply),
            b'E' if reply.error.is_none() => reply.error = Some(frame),
            b'C' => reply.tag = Some(frame),
            _ => {}
        }
    }
}
