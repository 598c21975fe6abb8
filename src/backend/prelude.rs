//! A transaction's BEGIN (with the savepoints and SETs replayed after it) sent to a shard that
//! joins the transaction in the same round trip as the statement that made it join, rather than
//! in a round trip of its own. `ServerConn::recv` drops the answers to it. If it fails, the
//! server skips the statement too: the rest of a simple Query string, or an extended batch up
//! to Sync. So the statement can never run outside the transaction.

use super::ServerConn;
use crate::protocol::{self, Frame};
use bytes::{BufMut, BytesMut};

/// What is owed for a prelude that went out.
#[derive(Default)]
pub(super) struct Pending {
    /// Statements to send ahead of the next request.
    pub queued: Vec<String>,
    /// CommandCompletes (and a CloseComplete) of the prelude still to drop.
    pub swallow: u32,
    /// Characters of prelude text in front of the client's simple Query: error positions the
    /// server reports count them, the client's must not.
    pub shift: u32,
}

impl ServerConn {
    /// Runs `stmts` ahead of the next request sent on this connection, in its round trip. They
    /// go through the unnamed statement, which the request must therefore parse again.
    pub fn set_prelude(&mut self, stmts: Vec<String>) {
        self.prelude.queued = stmts;
        self.prepared.remove("");
    }

    /// True while a prelude waits to be sent.
    pub fn has_prelude(&self) -> bool {
        !self.prelude.queued.is_empty()
    }

    /// The text of a simple Query with the prelude in front, each statement on lines of its
    /// own so that a comment at the end of one cannot swallow the next.
    pub(super) fn prelude_text(&mut self, sql: &str) -> Option<String> {
        if self.prelude.queued.is_empty() {
            return None;
        }
        let stmts = std::mem::take(&mut self.prelude.queued);
        let mut text = String::new();
        for s in &stmts {
            text.push_str(s);
            text.push_str("\n;\n");
        }
        self.prelude.swallow = stmts.len() as u32;
        self.prelude.shift = text.chars().count() as u32;
        text.push_str(sql);
        Some(text)
    }

    /// Queues the prelude as extended-protocol messages (no Sync: an error in it makes the
    /// server skip the batch that follows, up to its Sync).
    pub(super) fn put_prelude_extended(&mut self) {
        let stmts = std::mem::take(&mut self.prelude.queued);
        for s in &stmts {
            protocol::put_parse(&mut self.out, "", s, &[]);
            // Bind: unnamed portal and statement, no parameters, default result format.
            self.out.put_u8(b'B');
            self.out.put_i32(4 + 1 + 1 + 2 + 2 + 2);
            self.out.put_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            protocol::put_execute_all(&mut self.out);
        }
        // The unnamed portal is closed again: the client's Execute of a portal it never bound
        // must find none, as in PostgreSQL.
        protocol::put_target_message(&mut self.out, b'C', b'P', "");
        self.prepared.remove("");
        self.prelude.swallow = stmts.len() as u32 + 1;
        self.prelude.shift = 0;
    }

    /// Filters one frame while a prelude's answers are due: `None` drops it. Error positions
    /// are moved back to the client's own text.
    pub(super) fn through_prelude(&mut self, frame: Frame) -> Option<Frame> {
        if self.prelude.swallow > 0 {
            match frame.tag {
                // The CommandComplete of each statement, and the extended prelude's CloseComplete.
                b'C' | b'3' => {
                    self.prelude.swallow -= 1;
                    return None;
                }
                // ParseComplete, BindComplete, notices and parameter changes of the prelude.
                b'1' | b'2' | b'N' | b'S' => return None,
                // The prelude failed: the server skips the request; the error stands for it.
                b'E' => self.prelude.swallow = 0,
                _ => {}
            }
        }
        match frame.tag {
            b'Z' => {
                self.prelude.shift = 0;
                Some(frame)
            }
            b'E' | b'N' if self.prelude.shift > 0 => Some(unshift(frame, self.prelude.shift)),
            _ => Some(frame),
        }
    }
}

/// The error or notice with its position field ('P') moved back by `shift` characters.
fn unshift(frame: Frame, shift: u32) -> Frame {
    let mut fields = protocol::error_fields(frame.body());
    let Some(pos) = fields.iter_mut().find(|(c, _)| *c == b'P') else {
        return frame;
    };
    if let Ok(p) = pos.1.parse::<u32>() {
        if p > shift {
            pos.1 = (p - shift).to_string();
        }
    }
    let mut bytes = BytesMut::new();
    protocol::put_fields(&mut bytes, frame.tag == b'N', fields);
    Frame {
        tag: frame.tag,
        bytes: bytes.freeze(),
    }
}
