//! Wire framing and the few message codecs the proxy needs (pgwire's message types at the edges).
//!
//! Frames are kept as the raw bytes they arrived in, so a message relayed from one shard to a
//! client is copied, never decoded and re-encoded.

use crate::error::Error;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::Message;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest message accepted from either side (PostgreSQL's own limit is 1 GB).
pub const MAX_MESSAGE_LEN: usize = 1 << 30;
/// Largest startup-phase packet (as PostgreSQL's MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_LEN: usize = 10_000;

mod extended;
mod names;
pub use extended::*;
pub use names::Names;

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;

/// One tagged message: `bytes` holds the tag, the length and the body.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub bytes: Bytes,
}

impl Frame {
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// What `FrameReader::drain_into` does with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Leave it, and what follows, in the buffer.
    Stop,
    Take,
    /// Take it and stop: it ends what the caller waits for.
    TakeLast,
}

/// A reader's buffer, and the least spare room it reads into (see `make_room`).
const READ_BUFFER: usize = 16 * 1024;
const READ_ROOM: usize = 4 * 1024;

/// Buffered reader of tagged frames from one socket half.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_BUFFER),
        }
    }

    /// A reader whose first bytes were already read from `inner` (into `buf`).
    pub fn with_buffer(inner: R, mut buf: BytesMut) -> Self {
        buf.reserve(READ_BUFFER);
        FrameReader { inner, buf }
    }

    /// Next complete frame; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        self.next_within(MAX_MESSAGE_LEN).await
    }

    /// As `next`, refusing a message longer than `max` bytes before buffering it (for clients
    /// not yet authenticated).
    pub async fn next_within(&mut self, max: usize) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.frame_within(max)? {
                return Ok(Some(frame));
            }
            self.make_room();
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-message",
                    ))
                };
            }
        }
    }

    /// A frame if one is already buffered, without reading.
    pub fn try_frame(&mut self) -> io::Result<Option<Frame>> {
        self.frame_within(MAX_MESSAGE_LEN)
    }

    fn frame_within(&mut self, max: usize) -> io::Result<Option<Frame>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len < 4 || len as usize > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid message length {len}"),
            ));
        }
        let total = len as usize + 1;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        Ok(Some(Frame {
            tag: bytes[0],
            bytes,
        }))
    }

    /// Moves the complete messages at the front of the buffer that `take` accepts (it sees
    /// each one's tag and body) into `out` whole, in one copy, stopping before the first it
    /// refuses, after one it takes as the last, or once `out` holds `limit` bytes; returns how
    /// many bytes moved and whether the last message taken was one to stop after. A relay
    /// takes the usual answer this way instead of a frame per message.
    pub fn drain_into(
        &mut self,
        out: &mut BytesMut,
        limit: usize,
        mut take: impl FnMut(u8, &[u8]) -> Drain,
    ) -> (usize, bool) {
        let buf = &self.buf[..];
        let (mut end, mut last) = (0, false);
        while out.len() + end < limit {
            let Some(header) = buf.get(end..end + 5) else {
                break;
            };
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            // A bad length is `frame_within`'s to report.
            let Some(frame) = usize::try_from(len)
                .ok()
                .filter(|&l| (4..=MAX_MESSAGE_LEN).contains(&l))
                .and_then(|l| buf.get(end..end + 1 + l))
            else {
                break;
            };
            let drain = take(frame[0], &frame[5..]);
            if drain == Drain::Stop {
                break;
            }
            end += frame.len();
            if drain == Drain::TakeLast {
                last = true;
                break;
            }
        }
        out.extend_from_slice(&buf[..end]);
        self.buf.advance(end);
        (end, last)
    }

    /// True when bytes of a further message are already buffered.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// How many bytes are buffered but not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads more bytes into the buffer; returns how many (0 = end of stream).
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        self.inner.read_buf(&mut self.buf).await
    }

    /// Room for a whole request or reply in one read. Frames are split off the front, so the
    /// spare capacity shrinks with every one; left alone, a read once the spare was down to 17
    /// bytes took 17 and a second system call the rest. Once the frames split off are dropped,
    /// `reserve` takes the buffer back from its start without allocating.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_ROOM {
            self.buf.reserve(READ_BUFFER);
        }
    }

    /// The untagged startup-phase packet: (code, whole packet including length).
    pub async fn startup_packet(&mut self) -> io::Result<Option<(i32, Bytes)>> {
        loop {
            if self.buf.len() >= 8 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid startup packet length {len}"),
                    ));
                }
                if self.buf.len() >= len as usize {
                    let code =
                        i32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    return Ok(Some((code, self.buf.split_to(len as usize).freeze())));
                }
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// Parses the parameters of a v3 startup packet (after length and version).
pub fn startup_parameters(packet: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut body = &packet[8..];
    let mut out = Vec::new();
    loop {
        let name = take_cstr(&mut body)?;
        if name.is_empty() {
            return Ok(out);
        }
        let value = take_cstr(&mut body)?;
        out.push((name.to_owned(), value.to_owned()));
    }
}

pub(crate) fn take_cstr<'a>(buf: &mut &'a [u8]) -> Result<&'a str, Error> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| Error::Protocol {
            message: "missing string terminator".into(),
        })?;
    // Most names in the extended protocol are empty (the unnamed statement and portal).
    let s = match end {
        0 => "",
        _ => std::str::from_utf8(&buf[..end]).map_err(|_| Error::Encoding)?,
    };
    *buf = &buf[end + 1..];
    Ok(s)
}

/// The SQL text of a Query message body.
pub fn query_text(body: &[u8]) -> Result<&str, Error> {
    let mut b = body;
    let text = take_cstr(&mut b)?;
    extended::ended(b)?;
    Ok(text)
}

/// The fields of an ErrorResponse or NoticeResponse body.
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut b = body;
    while let Some((&code, rest)) = b.split_first() {
        if code == 0 {
            break;
        }
        let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
        out.push((code, String::from_utf8_lossy(&rest[..end]).into_owned()));
        b = rest.get(end + 1..).unwrap_or(&[]);
    }
    out
}

/// One field (e.g. b'C' for the SQLSTATE, b'M' for the message) of an error body.
pub fn error_field(body: &[u8], field: u8) -> Option<String> {
    error_fields(body)
        .into_iter()
        .find(|(c, _)| *c == field)
        .map(|(_, v)| v)
}

/// True for an ErrorResponse after which the server closes the connection (FATAL, PANIC).
pub fn is_fatal(body: &[u8]) -> bool {
    error_fields(body)
        .iter()
        .any(|(c, v)| (*c == b'V' || *c == b'S') && (v == "FATAL" || v == "PANIC"))
}

/// The tag of a CommandComplete body ("SELECT 3", "INSERT 0 1").
pub fn command_tag(body: &[u8]) -> &str {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    std::str::from_utf8(&body[..end]).unwrap_or("")
}

/// Adds the row counts of several shards' tags for the same statement: "UPDATE 2" + "UPDATE 3"
/// = "UPDATE 5"; "INSERT 0 1" + "INSERT 0 2" = "INSERT 0 3". Tags without a count keep the first.
pub fn sum_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut first: Option<&str> = None;
    let mut total: u64 = 0;
    let mut counted = false;
    for tag in tags {
        first.get_or_insert(tag);
        if let Some((_, n)) = tag.rsplit_once(' ') {
            if let Ok(n) = n.parse::<u64>() {
                total += n;
                counted = true;
            }
        }
    }
    let first = first?;
    if !counted {
        return Some(first.to_owned());
    }
    let prefix = first.rsplit_once(' ').map(|(p, _)| p).unwrap_or(first);
    Some(format!("{prefix} {total}"))
}

/// Appends an ErrorResponse for a shardgate error.
pub fn put_error(out: &mut BytesMut, err: &Error) {
    put_error_fields(out, "ERROR", err);
}

/// Appends a FATAL ErrorResponse (sent before closing a connection).
pub fn put_fatal(out: &mut BytesMut, err: &Error) {
    put_error_fields(out, "FATAL", err);
}

fn put_error_fields(out: &mut BytesMut, severity: &str, err: &Error) {
    let mut fields = vec![
        (b'S', severity.to_owned()),
        (b'V', severity.to_owned()),
        (b'C', err.sqlstate().to_owned()),
        (b'M', err.to_string()),
    ];
    if let Some(hint) = err.hint() {
        fields.push((b'H', hint));
    }
    if let Some(context) = err.context() {
        fields.push((b'W', context));
    }
    encode(out, &ErrorResponse::new(fields));
}

/// A NoticeResponse (`notice`) or ErrorResponse with these fields, e.g. a shard's error with
/// one field changed.
pub fn put_fields(out: &mut BytesMut, notice: bool, fields: Vec<(u8, String)>) {
    if notice {
        encode(out, &NoticeResponse::new(fields));
    } else {
        encode(out, &ErrorResponse::new(fields));
    }
}

pub fn put_ready(out: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    encode(out, &ReadyForQuery::new(status));
}

pub fn put_command_complete(out: &mut BytesMut, tag: &str) {
    encode(out, &CommandComplete::new(tag.to_owned()));
}

pub fn put_empty_query(out: &mut BytesMut) {
    out.put_u8(b'I');
    out.put_i32(4);
}

pub fn put_auth_ok(out: &mut BytesMut) {
    encode(out, &Authentication::Ok);
}

/// AuthenticationSASL offering these mechanisms.
pub fn put_auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    let list = mechanisms.iter().map(|m| m.to_string()).collect();
    encode(out, &Authentication::SASL(list));
}

pub fn put_auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    encode(
        out,
        &Authentication::SASLContinue(Bytes::copy_from_slice(data)),
    );
}

pub fn put_auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    encode(
        out,
        &Authentication::SASLFinal(Bytes::copy_from_slice(data)),
    );
}

pub fn put_auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    encode(out, &Authentication::MD5Password(salt.to_vec()));
}

pub fn put_parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    encode(
        out,
        &ParameterStatus::new(name.to_owned(), value.to_owned()),
    );
}

pub fn put_backend_key(out: &mut BytesMut, pid: i32, secret: i32) {
    encode(out, &BackendKeyData::new(pid, SecretKey::I32(secret)));
}

/// The text of `bytes` when they are exactly one simple Query message.
pub fn whole_query(bytes: &[u8]) -> Option<&str> {
    let (&tag, rest) = bytes.split_first()?;
    let len = be_i32(rest, 0)? as usize;
    if tag != b'Q' || len + 1 != bytes.len() || len < 5 {
        return None;
    }
    std::str::from_utf8(&bytes[5..bytes.len() - 1]).ok()
}

/// A simple-protocol Query message.
pub fn put_query(out: &mut BytesMut, sql: &str) {
    out.put_u8(b'Q');
    out.put_i32((4 + sql.len() + 1) as i32);
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
}

pub fn put_terminate(out: &mut BytesMut) {
    out.put_u8(b'X');
    out.put_i32(4);
}

/// NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_` options.
pub fn put_negotiate_protocol(out: &mut BytesMut, options: &[String]) {
    let len = 4 + 4 + 4 + options.iter().map(|o| o.len() + 1).sum::<usize>();
    out.put_u8(b'v');
    out.put_i32(len as i32);
    out.put_i32(0);
    out.put_i32(options.len() as i32);
    for o in options {
        out.put_slice(o.as_bytes());
        out.put_u8(0);
    }
}

fn encode<M: Message>(out: &mut BytesMut, msg: &M) {
    // Encoding into a BytesMut only fails for oversized messages, which the proxy never builds.
    if let Err(e) = msg.encode(out) {
        tracing::error!("failed to encode a protocol message: {e}");
    }
}

/// The u8 status of a ReadyForQuery body.
pub fn ready_status(body: &[u8]) -> u8 {
    body.first().copied().unwrap_or(b'I')
}

/// Reads a big-endian i32 at `at`, if present.
pub fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    buf.get(at..at + 4).map(|mut b| b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that hands over one whole request per read if the buffer has room, and counts
    /// the reads: what a client sending one request per round trip looks like.
    struct Requests {
        pending: Vec<u8>,
        left: usize,
        reads: usize,
    }

    impl AsyncRead for Requests {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if self.pending.is_empty() && self.left > 0 {
                self.left -= 1;
                let mut b = BytesMut::new();
                put_query(&mut b, &"x".repeat(44));
                self.pending = b.to_vec();
            }
            let n = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..n]);
            self.pending.drain(..n);
            self.reads += 1;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Frames split off the front shrink the spare room; a reader that let it run down read
    /// requests in two pieces (two system calls each).
    #[tokio::test]
    async fn a_request_takes_one_read_however_many_came_before() {
        let requests = 5000;
        let mut r = FrameReader::new(Requests {
            pending: Vec::new(),
            left: requests,
            reads: 0,
        });
        // The session keeps a request's bytes past the next read (a statement's Parse, say),
        // so the buffer is shared whenever it runs out of room.
        let mut last = None;
        for _ in 0..requests {
            let f = r.next().await.unwrap().unwrap();
            assert_eq!((f.tag, f.bytes.len()), (b'Q', 50));
            last = Some(f);
        }
        drop(last);
        assert!(r.next().await.unwrap().is_none());
        // One read per request, and the last one finding the end of the stream.
        assert_eq!(r.inner.reads, requests + 1);
    }

    #[test]
    fn tags_add_up() {
        assert_eq!(
            sum_tags(["UPDATE 2", "UPDATE 3"]).as_deref(),
            Some("UPDATE 5")
        );
        assert_eq!(
            sum_tags(["INSERT 0 1", "INSERT 0 2"]).as_deref(),
            Some("INSERT 0 3")
        );
        assert_eq!(
            sum_tags(["SELECT 0", "SELECT 7"]).as_deref(),
            Some("SELECT 7")
        );
        assert_eq!(
            sum_tags(["CREATE TABLE", "CREATE TABLE"]).as_deref(),
            Some("CREATE TABLE")
        );
        assert_eq!(sum_tags([]), None);
    }

    #[tokio::test]
    async fn frames_split_and_join() {
        let mut out = BytesMut::new();
        put_query(&mut out, "SELECT 1");
        put_ready(&mut out, b'T');
        let mut r = FrameReader::new(&out[..]);
        let q = r.next().await.unwrap().unwrap();
        assert_eq!(q.tag, b'Q');
        assert_eq!(query_text(q.body()).unwrap(), "SELECT 1");
        let z = r.next().await.unwrap().unwrap();
        assert_eq!(ready_status(z.body()), b'T');
        assert!(r.next().await.unwrap().is_none());
    }

    /// What a relay takes in one copy: up to a refused message, through one taken as the last,
    /// and never past the limit or into an incomplete message.
    #[tokio::test]
    async fn drain_stops_before_refused_after_last_and_at_the_limit() {
        let mut answer = BytesMut::new();
        put_empty(&mut answer, b'2');
        put_empty(&mut answer, b'n');
        put_empty(&mut answer, b'2');
        put_ready(&mut answer, b'I');
        let mut r = FrameReader::new(&answer[..]);
        r.fill().await.unwrap();
        let mut out = BytesMut::new();
        let pick = |last: u8| {
            move |tag: u8, _: &[u8]| match tag {
                b'Z' => Drain::Stop,
                t if t == last => Drain::TakeLast,
                _ => Drain::Take,
            }
        };
        // Through the first 'n', which ends what is waited for.
        assert_eq!(r.drain_into(&mut out, 1 << 20, pick(b'n')), (10, true));
        assert_eq!(&out[..], &answer[..10]);
        // Then up to ReadyForQuery, which is refused and stays buffered.
        assert_eq!(r.drain_into(&mut out, 1 << 20, pick(b'n')), (5, false));
        assert_eq!(r.buffered(), 6);
        assert_eq!(r.next().await.unwrap().unwrap().tag, b'Z');
        // The limit: nothing more once `out` holds that much.
        let mut r = FrameReader::new(&answer[..]);
        r.fill().await.unwrap();
        let mut out = BytesMut::new();
        assert_eq!(r.drain_into(&mut out, 6, pick(b'x')), (10, false));
        assert_eq!(r.drain_into(&mut out, 6, pick(b'x')), (0, false));
        // A message not all read yet is left for the next read.
        let mut r = FrameReader::new(&answer[..8]);
        r.fill().await.unwrap();
        let mut out = BytesMut::new();
        assert_eq!(r.drain_into(&mut out, 1 << 20, pick(b'x')), (5, false));
    }

    #[tokio::test]
    async fn bad_lengths_are_errors_not_panics() {
        let bytes = [b'Q', 0, 0, 0, 1];
        let mut r = FrameReader::new(&bytes[..]);
        assert!(r.next().await.is_err());
        let truncated = [b'Q', 0, 0, 0, 9, b'x'];
        let mut r = FrameReader::new(&truncated[..]);
        assert!(r.next().await.is_err());
    }

    #[test]
    fn error_fields_roundtrip() {
        let mut out = BytesMut::new();
        put_error(&mut out, &Error::UnknownTable { table: "t".into() });
        let body = &out[5..];
        assert_eq!(error_field(body, b'C').as_deref(), Some("42P01"));
        assert!(error_field(body, b'M').unwrap().contains("shards.toml"));
        assert_eq!(query_text(b"abc\0").unwrap(), "abc");
        assert!(query_text(b"\xff\0").is_err());
        assert!(query_text(b"abc").is_err());
    }
}
