//! The byte streams that are either plain TCP or TLS over it: one type for clients and one for
//! the proxy's wire connections to shards, so the code above them is instantiated once.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Plain TCP, or TLS (`T`) over it. The TLS state is boxed: it is large, and allocated once per
/// connection rather than carried by every plain one.
#[derive(Debug)]
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A client's connection to the proxy.
pub type ClientStream = MaybeTls<ClientTls>;
/// TLS over a client's connection.
pub type ClientTls = tokio_rustls::server::TlsStream<TcpStream>;
/// What a session reads a client's messages from.
pub type ClientRead = ReadSide<ClientTls>;
/// What a session writes its answers to.
pub type ClientWrite = WriteSide<ClientTls>;
/// The proxy's wire connection to a shard.
pub type ServerStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T: AsyncRead + Unpin> MaybeTls<T> {
    /// True when the peer closed the connection or sent something, without waiting: an idle
    /// connection of either kind must have nothing to say. What a probe reads is lost, which is
    /// why only connections about to be dropped when it finds something may be probed.
    pub fn closed_or_talking(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            MaybeTls::Plain(s) => !matches!(
                s.try_read(&mut probe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            // The socket may hold TLS records that carry no data (a session ticket): only the
            // TLS layer can tell, so it is polled once instead of the socket being peeked.
            MaybeTls::Tls(s) => {
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf).is_ready()
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The reading half of a client's stream. Plain TCP is split without a lock: each half polls the
/// socket itself. TLS goes through tokio's split, whose lock both directions take, as one TLS
/// session's state changes with reads and writes alike.
#[derive(Debug)]
pub enum ReadSide<T> {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<Box<T>>),
}

/// The writing half of a client's stream (see [`ReadSide`]). Dropping a plain one shuts the
/// socket down for writing, which only ever happens as the session ends.
#[derive(Debug)]
pub enum WriteSide<T> {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<Box<T>>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> MaybeTls<T> {
    /// Splits the stream into halves that a session reads from and writes to independently.
    pub fn into_sides(self) -> (ReadSide<T>, WriteSide<T>) {
        match self {
            MaybeTls::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadSide::Plain(r), WriteSide::Plain(w))
            }
            MaybeTls::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (ReadSide::Tls(r), WriteSide::Tls(w))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadSide<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadSide::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteSide<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteSide::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WriteSide::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(s) => s.is_write_vectored(),
            WriteSide::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteSide::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WriteSide::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
