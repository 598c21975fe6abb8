//! TLS for the tokio-postgres connections of the proxy's own to shards (rebalance, journal,
//! placement following): tokio-postgres's MakeTlsConnect and TlsConnect over tokio-rustls, and
//! the one function that sets a shard's mode on its tokio-postgres config.

use super::shard::{client_config, shard_mode};
use crate::config::TlsConfig;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

/// Sets the TLS mode `[tls]` (or the url) asks for on a shard's config and returns the
/// connector to connect it with. Every tokio-postgres connection to a shard is made this way,
/// so none goes out in clear when TLS is required, nor tries TLS when it is not.
pub fn for_shard(
    tls: Option<&TlsConfig>,
    cfg: &mut tokio_postgres::Config,
) -> Result<MakeRustls, crate::error::Error> {
    let config = client_config(tls, shard_mode(tls, cfg))?;
    cfg.ssl_mode(if config.is_some() {
        SslMode::Require
    } else {
        SslMode::Disable
    });
    Ok(MakeRustls(config))
}

/// For a client of the proxy's own (`shardgate top`): TLS when the server offers it, with no
/// certificate check, else plain, as libpq's default sslmode=prefer.
pub fn prefer(cfg: &mut tokio_postgres::Config) -> Result<MakeRustls, crate::error::Error> {
    let config = client_config(None, crate::config::ShardTls::Require)?;
    cfg.ssl_mode(SslMode::Prefer);
    Ok(MakeRustls(config))
}

/// tokio-postgres's connector: TLS with this client config (`None` while the config disables
/// TLS, when tokio-postgres still makes a `TlsConnect` but never runs it).
#[derive(Clone)]
pub struct MakeRustls(Option<Arc<ClientConfig>>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let Some(config) = self.0.clone() else {
            return Ok(RustlsConnect(None));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect(Some((TlsConnector::from(config), name))))
    }
}

/// A handshake to make, with the name to check; `None` when TLS is disabled.
pub struct RustlsConnect(Option<(TlsConnector, ServerName<'static>)>);

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let Some((connector, name)) = self.0 else {
                let disabled = "TLS is disabled for this connection";
                return Err(io::Error::new(io::ErrorKind::Unsupported, disabled));
            };
            let tls = connector.connect(name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS stream as tokio-postgres wants it.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    // The server's certificate as this handshake received it, so that tokio-postgres can use
    // SCRAM-SHA-256-PLUS (with channel_binding=prefer, its default, whenever it is offered).
    // A certificate that names no usable hash binds to nothing, as libpq's would fail to.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| super::end_point::hash(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_shutdown(cx)
    }
}
