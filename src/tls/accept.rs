//! The start of a client connection, before its startup packet: SSLRequest and GSSENCRequest
//! are answered on the raw socket, and the TLS handshake runs there when the proxy offers it.

use super::{ClientStream, ClientTls};
use crate::auth::ChannelBinding;
use crate::error::Error;
use crate::protocol::{self, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};
use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// As PostgreSQL's authentication_timeout: a client stuck mid-handshake does not hold its task
/// (and file descriptor) for longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection ready for its startup packet.
pub struct Negotiated {
    pub stream: ClientStream,
    /// What the client already sent in clear past the negotiation: its startup (or cancel)
    /// packet, for the frame reader to start from. Always empty after a TLS handshake.
    pub buffered: BytesMut,
    /// What SCRAM-SHA-256-PLUS binds to on this connection: the hash of the certificate its
    /// handshake presented. `None` in clear.
    pub channel_binding: Option<ChannelBinding>,
}

/// Answers the client's SSL and GSS requests: 'S' and a TLS handshake when `acceptor` is set,
/// 'N' otherwise (GSS encryption is never offered). With `require`, a client that goes on in
/// clear with anything but a cancel request is refused (28000). `None` when the client left,
/// failed the handshake or was refused (it has been told why, where it could be).
pub async fn negotiate(
    mut tcp: TcpStream,
    acceptor: Option<&ClientTls>,
    require: bool,
) -> Option<Negotiated> {
    let mut buf = BytesMut::with_capacity(512);
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let code = match whole_packet(&mut tcp, &mut buf).await {
            Ok(Some(code)) => code,
            Ok(None) => return None,
            Err(e) => return refuse(tcp, e).await,
        };
        match code {
            SSL_REQUEST_CODE if !ssl_asked => {
                ssl_asked = true;
                buf.advance(8);
                let Some(acceptor) = acceptor else {
                    tcp.write_all(b"N").await.ok()?;
                    continue;
                };
                // Bytes sent before our answer would be taken as part of the handshake, or
                // worse, as if they had been encrypted: refused, as PostgreSQL does.
                if !buf.is_empty() {
                    let message = "received unencrypted data after SSL request".into();
                    return refuse(tcp, Error::Protocol { message }).await;
                }
                tcp.write_all(b"S").await.ok()?;
                let shake = acceptor.acceptor.accept(tcp);
                return match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
                    Ok(Ok(tls)) => Some(Negotiated {
                        stream: ClientStream::Tls(Box::new(tls)),
                        buffered: buf,
                        channel_binding: acceptor.channel_binding.clone(),
                    }),
                    Ok(Err(e)) => {
                        tracing::debug!("client TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("client TLS handshake timed out");
                        None
                    }
                };
            }
            GSSENC_REQUEST_CODE if !gss_asked => {
                gss_asked = true;
                buf.advance(8);
                tcp.write_all(b"N").await.ok()?;
            }
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
                let message = "encryption was requested twice".into();
                return refuse(tcp, Error::Protocol { message }).await;
            }
            // A cancel request carries no credentials and opens no session: libpq before 17
            // always sends it in clear, so it is served whatever `require` says.
            CANCEL_REQUEST_CODE => break,
            _ if require => return refuse(tcp, Error::TlsRequired).await,
            _ => break,
        }
    }
    Some(Negotiated {
        stream: ClientStream::Plain(tcp),
        buffered: buf,
        channel_binding: None,
    })
}

/// Reads until `buf` starts with a whole startup-class packet (length, code, body) and returns
/// its code; `None` at a clean end of stream.
async fn whole_packet(tcp: &mut TcpStream, buf: &mut BytesMut) -> Result<Option<i32>, Error> {
    loop {
        if buf.len() >= 8 {
            let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if !(8..=protocol::MAX_STARTUP_LEN as i32).contains(&len) {
                let message = format!("invalid length of startup packet: {len}");
                return Err(Error::Protocol { message });
            }
            // Waiting for the whole packet before answering also means a refusal is never
            // followed by unread bytes, whose reset could cost the client its error message.
            if buf.len() >= len as usize {
                return Ok(Some(i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]])));
            }
        }
        match tcp.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Sends a FATAL in clear and hangs up.
async fn refuse(mut tcp: TcpStream, e: Error) -> Option<Negotiated> {
    let mut out = BytesMut::new();
    protocol::put_fatal(&mut out, &e);
    let _ = tcp.write_all(&out).await;
    let _ = tcp.shutdown().await;
    None
}
