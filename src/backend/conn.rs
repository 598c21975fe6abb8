//! One wire connection from the proxy to a shard: connect, authenticate, send and receive frames.

use super::cancel::CancelKey;
use crate::config::TlsConfig;
use crate::error::Error;
use crate::protocol::{self, Drain, Frame, FrameReader};
use crate::stats::stamp::Stamp;
use crate::stats::ShardStats;
use crate::tls::{ServerStream, ShardConnector};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod login;

/// Where and as whom to connect to one shard, parsed once from its url.
#[derive(Clone)]
pub struct ShardTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Vec<u8>>,
    pub database: String,
    pub connect_timeout: Duration,
    /// Plain, or the TLS that `[tls] shards` (or the url's sslmode) asks for.
    pub tls: ShardConnector,
    /// The shard's counters, fed by every connection made to it.
    pub stats: Arc<ShardStats>,
}

impl std::fmt::Debug for ShardTarget {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}@{}:{}/{})",
            self.name, self.user, self.host, self.port, self.database
        )
    }
}

impl ShardTarget {
    pub fn from_url(
        name: &str,
        url: &str,
        tls: Option<&TlsConfig>,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        use tokio_postgres::config::Host;
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::config(format!("shard {name}: invalid url: {e}")))?;
        let host = match cfg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(_) => {
                return Err(Error::config(format!(
                    "shard {name}: only TCP hosts are supported"
                )))
            }
            None => "localhost".to_owned(),
        };
        let user = cfg.get_user().unwrap_or("postgres").to_owned();
        let tls = ShardConnector::new(tls, name, &cfg, &host)?;
        Ok(ShardTarget {
            name: name.to_owned(),
            host,
            port: cfg.get_ports().first().copied().unwrap_or(5432),
            database: cfg.get_dbname().unwrap_or(&user).to_owned(),
            user,
            password: cfg.get_password().map(|p| p.to_vec()),
            connect_timeout,
            tls,
            stats: Arc::default(),
        })
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> Error {
        Error::ShardUnavailable {
            shard: self.name.clone(),
            detail: detail.to_string(),
        }
    }
}

/// An authenticated connection, idle between statements.
pub struct ServerConn {
    /// Reads frames and, through `get_mut`, writes: one stream, as a TLS stream cannot be split
    /// without a lock, and reading and writing never overlap here.
    reader: FrameReader<ServerStream>,
    pub(super) out: BytesMut,
    /// The status of the last ReadyForQuery: b'I', b'T' or b'E'.
    pub status: u8,
    /// Set when the connection can no longer be trusted (I/O error, protocol surprise).
    pub broken: bool,
    /// ParameterStatus values the server reported.
    pub parameters: Vec<(String, String)>,
    /// Fingerprint of the session settings applied on this connection (0 = server defaults).
    pub settings: u64,
    /// Statements prepared on this connection: backend name → hash of (SQL, parameter types).
    /// The unnamed statement ("") is listed too, until a simple Query replaces it.
    pub prepared: super::statements::Statements,
    /// A transaction's BEGIN riding along with the next request (see `prelude.rs`).
    pub(super) prelude: super::prelude::Pending,
    pid: i32,
    secret: i32,
    addr: SocketAddr,
    /// How a cancel request reaches the server: as this connection did.
    tls: ShardConnector,
    pub shard: String,
    stats: Arc<ShardStats>,
    /// When the request now awaiting its ReadyForQuery was first sent.
    started: Option<Stamp>,
    /// Bytes received since the last ReadyForQuery, published then (one shared atomic add per
    /// request rather than per row).
    received: u64,
}

/// A set of message tags (ASCII letters and digits), tested with a shift.
#[derive(Clone, Copy)]
pub struct Tags(u128);

impl Tags {
    pub const fn of(tags: &[u8]) -> Tags {
        let mut set = 0u128;
        let mut i = 0;
        while i < tags.len() {
            set |= 1 << (tags[i] & 127);
            i += 1;
        }
        Tags(set)
    }

    pub const fn has(self, tag: u8) -> bool {
        tag < 128 && (self.0 >> tag) & 1 == 1
    }
}

impl ServerConn {
    pub async fn connect(target: &ShardTarget) -> Result<ServerConn, Error> {
        let stream = tokio::time::timeout(
            target.connect_timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| target.unavailable("connect timed out"))?
        .map_err(|e| target.unavailable(e))?;
        let _ = stream.set_nodelay(true);
        let addr = stream.peer_addr().map_err(|e| target.unavailable(e))?;
        // The TLS handshake and the startup share one timeout, so that a pool's create timeout
        // (twice connect_timeout) covers the whole of connecting.
        tokio::time::timeout(target.connect_timeout, async {
            let stream = target
                .tls
                .connect(stream)
                .await
                .map_err(|e| target.unavailable(e))?;
            let mut conn = ServerConn::new(stream, addr, target);
            conn.startup(target).await?;
            Ok(conn)
        })
        .await
        .map_err(|_| target.unavailable("TLS handshake or startup timed out"))?
        .map(|mut conn| {
            conn.started = None;
            conn.received = 0;
            conn.stats = target.stats.clone();
            conn
        })
    }

    fn new(stream: ServerStream, addr: SocketAddr, target: &ShardTarget) -> ServerConn {
        ServerConn {
            reader: FrameReader::new(stream),
            out: BytesMut::with_capacity(8 * 1024),
            status: b'I',
            broken: false,
            parameters: Vec::new(),
            settings: 0,
            prepared: super::statements::Statements::new(),
            prelude: Default::default(),
            pid: 0,
            secret: 0,
            addr,
            tls: target.tls.clone(),
            shard: target.name.clone(),
            // The handshake is the proxy's own traffic, not the shard's workload.
            stats: Arc::default(),
            started: None,
            received: 0,
        }
    }

    /// Queues raw message bytes (a whole simple Query, or extended-protocol messages).
    pub fn send(&mut self, bytes: &[u8]) {
        if self.has_prelude() {
            if let Some(sql) = protocol::whole_query(bytes) {
                let sql = sql.to_owned();
                return self.send_query(&sql);
            }
            self.put_prelude_extended();
        }
        self.out.extend_from_slice(bytes);
    }

    /// Queues a simple Query.
    pub fn send_query(&mut self, sql: &str) {
        // A simple Query runs through the unnamed statement, replacing it; DISCARD ALL and
        // DEALLOCATE drop the named ones too.
        let head = sql.trim_start().as_bytes();
        let starts = |w: &[u8]| head.len() >= w.len() && head[..w.len()].eq_ignore_ascii_case(w);
        if starts(b"discard") || starts(b"deallocate") {
            self.prepared.clear();
        } else {
            self.prepared.remove("");
        }
        match self.prelude_text(sql) {
            Some(text) => protocol::put_query(&mut self.out, &text),
            None => protocol::put_query(&mut self.out, sql),
        }
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.started.get_or_insert_with(Stamp::now);
        let stream = self.reader.get_mut();
        // TLS keeps what the socket would not take yet until flushed; plain TCP flushes at once.
        let r = match stream.write_all(&self.out).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        self.stats
            .sent_bytes
            .fetch_add(self.out.len() as u64, Relaxed);
        self.out.clear();
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// The next frame from the server; tracks ReadyForQuery status.
    pub async fn recv(&mut self) -> std::io::Result<Frame> {
        loop {
            let frame = self.recv_raw().await?;
            if self.prelude.swallow == 0 && self.prelude.shift == 0 {
                return Ok(frame);
            }
            if let Some(frame) = self.through_prelude(frame) {
                return Ok(frame);
            }
        }
    }

    /// The next frame if one is already buffered, as `recv` would give it, without waiting:
    /// a relay takes the rest of an answer that arrived in one read without a poll per frame.
    pub fn try_recv(&mut self) -> Option<std::io::Result<Frame>> {
        loop {
            let frame = match self.reader.try_frame() {
                Ok(Some(frame)) => self.account(frame),
                Ok(None) => return None,
                Err(e) => {
                    self.broken = true;
                    Err(e)
                }
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Some(Err(e)),
            };
            if self.prelude.swallow == 0 && self.prelude.shift == 0 {
                return Some(Ok(frame));
            }
            if let Some(frame) = self.through_prelude(frame) {
                return Some(Ok(frame));
            }
        }
    }

    /// Moves the messages already read whose tags are in `plain` (answers a relay passes on
    /// untouched: rows, command tags...) into `out`, as `try_recv` and a copy of each frame
    /// would, until `out` holds `limit` bytes; stops before any other message, which
    /// `try_recv` gives. `plain` holds no tag `try_recv` looks at but 'C'.
    pub fn relay_plain(&mut self, out: &mut BytesMut, limit: usize, plain: Tags) {
        self.relay_through(out, limit, plain, Tags(0));
    }

    /// `relay_plain`, also taking a message whose tag is in `last` and stopping after it (the
    /// one that ends the answer to a client's message): true when it moved one.
    pub fn relay_through(
        &mut self,
        out: &mut BytesMut,
        limit: usize,
        plain: Tags,
        last: Tags,
    ) -> bool {
        if self.prelude.swallow != 0 || self.prelude.shift != 0 {
            return false;
        }
        let stats = &self.stats;
        // ReadyForQuery and errors are `account`'s to read.
        const LOOKED_AT: Tags = Tags::of(b"ZE");
        let plain = Tags((plain.0 | last.0) & !LOOKED_AT.0);
        let (moved, ended) = self.reader.drain_into(out, limit, |tag, body| {
            if !plain.has(tag) {
                return Drain::Stop;
            }
            if tag == b'C' {
                stats.command(body);
            }
            match last.has(tag) {
                true => Drain::TakeLast,
                false => Drain::Take,
            }
        });
        self.received += moved as u64;
        ended
    }

    /// Reads more of the server's answer, for `try_recv` and `relay_plain` to take; the end
    /// of the stream is an error, and leaves the connection broken.
    pub async fn fill(&mut self) -> std::io::Result<()> {
        match self.reader.fill().await {
            Ok(0) => {
                self.broken = true;
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    async fn recv_raw(&mut self) -> std::io::Result<Frame> {
        match self.reader.next().await {
            Ok(Some(frame)) => self.account(frame),
            Ok(None) => {
                self.broken = true;
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ))
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Notes what a received frame tells: the transaction status, the shard's counters, and a
    /// FATAL error, which ends the connection.
    fn account(&mut self, frame: Frame) -> std::io::Result<Frame> {
        let stats = &self.stats;
        self.received += frame.bytes.len() as u64;
        match frame.tag {
            b'Z' => {
                self.status = protocol::ready_status(frame.body());
                stats
                    .received_bytes
                    .fetch_add(std::mem::take(&mut self.received), Relaxed);
                if let Some(t) = self.started.take() {
                    stats.requests.fetch_add(1, Relaxed);
                    stats.latency.record_ns(t.elapsed_ns());
                }
            }
            b'C' => stats.command(frame.body()),
            // The server hangs up after a FATAL (shutdown, terminated backend).
            b'E' if protocol::is_fatal(frame.body()) => {
                stats.errors.fetch_add(1, Relaxed);
                self.broken = true;
                let msg = protocol::error_field(frame.body(), b'M').unwrap_or_default();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    msg,
                ));
            }
            b'E' => {
                stats.errors.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        Ok(frame)
    }

    /// Runs statements whose results the proxy itself consumes (not the client). Returns the
    /// rows of every result in text form; the first error becomes `Err` (after draining).
    pub async fn query_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        let shard = self.shard.clone();
        let unavailable = |e: std::io::Error| Error::ShardUnavailable {
            shard: shard.clone(),
            detail: e.to_string(),
        };
        self.send_query(sql);
        self.flush().await.map_err(unavailable)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.recv().await.map_err(unavailable)?;
            match frame.tag {
                b'D' => rows.push(decode_text_row(frame.body())),
                b'E' if error.is_none() => {
                    let msg = protocol::error_field(frame.body(), b'M').unwrap_or_default();
                    error = Some(Error::internal(format!("shard {}: {msg}", self.shard)));
                }
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// What a CancelRequest for this connection's statement needs.
    pub fn cancel_key(&self) -> CancelKey {
        CancelKey {
            addr: self.addr,
            tls: self.tls.clone(),
            pid: self.pid,
            secret: self.secret,
        }
    }

    /// Asks the server to cancel what this connection is running.
    pub async fn cancel(&self) {
        self.cancel_key().cancel().await;
    }

    /// True when an idle connection has been closed by the server or has something to say
    /// (a FATAL message before the server shut down): either way it cannot serve a statement.
    pub fn is_dead(&mut self) -> bool {
        self.broken || self.reader.buffered() > 0 || self.reader.get_mut().closed_or_talking()
    }

    /// Closes the sending side without a word, as a network failure would (crash tests only):
    /// the next send fails and the server ends the session.
    /// Counts this connection's traffic in `stats` from now on (the proxy's own work, such as
    /// polling, goes to a throwaway set); returns the previous set.
    pub fn count_in(&mut self, stats: Arc<ShardStats>) -> Arc<ShardStats> {
        std::mem::replace(&mut self.stats, stats)
    }

    /// Counts in `stats` again, if it does not already.
    pub fn count_to(&mut self, stats: &Arc<ShardStats>) {
        if !Arc::ptr_eq(&self.stats, stats) {
            self.stats = stats.clone();
        }
    }

    pub async fn sever(&mut self) {
        let _ = self.reader.get_mut().shutdown().await;
    }

    /// Sends Terminate so the server ends the session cleanly.
    pub async fn terminate(mut self) {
        protocol::put_terminate(&mut self.out);
        let _ = self.flush().await;
    }
}

/// The columns of a DataRow in text form.
pub fn decode_text_row(body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let n = body
        .get(0..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let mut at = 2;
    for _ in 0..n {
        let Some(len) = protocol::be_i32(body, at) else {
            break;
        };
        at += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = (at + len as usize).min(body.len());
        out.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
        at = end;
    }
    out
}
