//! TLS to the shards: which connections use it, the certificate check of each mode, and the
//! SSLRequest exchange that opens the proxy's own wire connections.

use super::{provider, read_certs, ServerStream, ALPN};
use crate::config::{ShardTls, TlsConfig};
use crate::error::Error;
use crate::protocol::SSL_REQUEST_CODE;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_rustls::TlsConnector;

/// How one shard is reached: `[tls] shards`, raised to `require` when the shard's url says
/// sslmode=require (as libpq would honour it), never lowered by the url.
pub fn shard_mode(tls: Option<&TlsConfig>, url: &tokio_postgres::Config) -> ShardTls {
    match (
        tls.map_or(ShardTls::Disable, |t| t.shards),
        url.get_ssl_mode(),
    ) {
        (ShardTls::Disable, SslMode::Require) => ShardTls::Require,
        (mode, _) => mode,
    }
}

/// What starts `shard_mode`'s TLS, for messages: the config's setting or the url's.
fn why(tls: Option<&TlsConfig>, mode: ShardTls) -> &'static str {
    match (tls.map(|t| t.shards), mode) {
        (_, ShardTls::VerifyFull) => "[tls] shards = \"verify-full\"",
        (Some(ShardTls::Require), _) => "[tls] shards = \"require\"",
        _ => "its url's sslmode=require",
    }
}

/// The client config of a mode; `None` for plain connections.
pub(super) fn client_config(
    tls: Option<&TlsConfig>,
    mode: ShardTls,
) -> Result<Option<Arc<ClientConfig>>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("[tls]: {e}")))?;
    let mut config = match mode {
        ShardTls::Disable => return Ok(None),
        ShardTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
        ShardTls::VerifyFull => {
            // Validation makes sure verify-full names a shard_ca.
            let path = tls.and_then(|t| t.shard_ca.as_deref()).unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for (i, ca) in read_certs("shard_ca", path)?.into_iter().enumerate() {
                roots.add(ca).map_err(|e| {
                    Error::config(format!(
                        "[tls] shard_ca = {path:?}: certificate {} cannot be a trust anchor: {e}",
                        i + 1
                    ))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The TLS side of a shard target: plain, or a connector with the name to check and send.
/// Cloning shares it (an `Arc`), so cancel keys can carry it.
#[derive(Clone, Default)]
pub struct ShardConnector(Option<Arc<Link>>);

struct Link {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    why: &'static str,
}

impl std::fmt::Debug for ShardConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tls() { "tls" } else { "plain" })
    }
}

impl ShardConnector {
    /// For the shard `shard` whose url is `url` and whose host is `host`.
    pub fn new(
        tls: Option<&TlsConfig>,
        shard: &str,
        url: &tokio_postgres::Config,
        host: &str,
    ) -> Result<ShardConnector, Error> {
        let mode = shard_mode(tls, url);
        let Some(config) = client_config(tls, mode)? else {
            return Ok(ShardConnector(None));
        };
        let server_name = match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            // Nothing is checked against the name in require mode; SNI is left out.
            Err(_) if mode == ShardTls::Require => {
                ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "shard {shard}: host {host:?} cannot be checked against a certificate: {e}"
                )))
            }
        };
        Ok(ShardConnector(Some(Arc::new(Link {
            connector: TlsConnector::from(config),
            server_name,
            why: why(tls, mode),
        }))))
    }

    pub fn is_tls(&self) -> bool {
        self.0.is_some()
    }

    /// Starts TLS on a fresh connection to the shard (SSLRequest, 'S', the handshake); a plain
    /// connector leaves it plain. The error is the detail of the shard's unavailability.
    pub async fn connect(&self, mut tcp: TcpStream) -> Result<ServerStream, String> {
        let Some(link) = &self.0 else {
            return Ok(ServerStream::Plain(tcp));
        };
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request)
            .await
            .map_err(|e| format!("sending SSLRequest: {e}"))?;
        // Exactly one byte: whatever follows 'S' belongs to the handshake, and a byte injected
        // there in clear fails it instead of being read as the server's.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| format!("no answer to SSLRequest: {e}"))?;
        match answer[0] {
            b'S' => {}
            b'N' => {
                return Err(format!(
                    "TLS is required ({}) but the shard does not offer it (it answered N to SSLRequest): set ssl = on in its postgresql.conf",
                    link.why
                ))
            }
            other => {
                return Err(format!(
                    "the shard answered SSLRequest with {:?} instead of S or N",
                    char::from(other)
                ))
            }
        }
        let stream = link
            .connector
            .connect(link.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake failed ({}): {e}", link.why))?;
        Ok(ServerStream::Tls(Box::new(stream)))
    }
}

/// `require`: encryption without authentication, as libpq's sslmode=require. Any certificate is
/// taken, but the handshake signatures must still be valid for the one presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
