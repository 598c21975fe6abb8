//! TLS: the certificate the proxy offers clients, the connectors that reach the shards, and the
//! streams that are plain TCP or TLS over it. Every config is built over ring, chosen per config
//! (`builder_with_provider`), so no process-wide default provider is installed or raced over.

mod accept;
pub mod end_point;
pub mod postgres;
mod shard;
mod stream;

pub use accept::{negotiate, Negotiated};
pub use shard::{shard_mode, ShardConnector};
pub use stream::{ClientRead, ClientStream, ClientWrite, MaybeTls, ServerStream};

use crate::auth::ChannelBinding;
use crate::config::TlsConfig;
use crate::error::Error;
use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The protocol PostgreSQL registers for ALPN; libpq 17 offers it and expects it back.
const ALPN: &[u8] = b"postgresql";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS as offered to clients: the acceptor, and the channel binding of the certificate it
/// presents. Kept together so that a connection binds to the certificate its own handshake
/// used, even when a reload has swapped in another since.
pub struct ClientTls {
    pub acceptor: TlsAcceptor,
    /// The tls-server-end-point hash of the certificate; `None` when its signature names no
    /// usable hash (Ed25519), and then SCRAM-SHA-256-PLUS is not offered.
    pub channel_binding: Option<ChannelBinding>,
}

/// The acceptor for clients' TLS, when `[tls]` names a certificate and its key. The files are
/// read on every call, so RELOAD picks up renewed ones.
pub fn acceptor(tls: Option<&TlsConfig>) -> Result<Option<ClientTls>, Error> {
    let Some((cert, key)) = tls.and_then(|t| Some((t.cert.as_deref()?, t.key.as_deref()?))) else {
        return Ok(None);
    };
    let chain = read_certs("cert", cert)?;
    // The first certificate of the chain is the one the handshake presents as the server's.
    let channel_binding = end_point::hash(&chain[0]).map(ChannelBinding::tls_server_end_point);
    if channel_binding.is_none() {
        tracing::warn!(
            "[tls] cert {cert:?}: its signature algorithm names no hash for channel binding; SCRAM-SHA-256-PLUS is not offered"
        );
    }
    let private = read_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("[tls]: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::config(format!(
                "[tls] cert {cert:?} and key {key:?} cannot be used together: {e}"
            ))
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Some(ClientTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        channel_binding,
    }))
}

fn read_file(field: &str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(format!("[tls] {field} = {path:?} cannot be read: {e}")))
}

/// Every certificate of a PEM file (a chain, or a set of CAs).
fn read_certs(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_file(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("[tls] {field} = {path:?} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "[tls] {field} = {path:?} holds no certificate (no BEGIN CERTIFICATE section)"
        )));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_file("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::config(format!(
            "[tls] key = {path:?} holds no private key (no BEGIN PRIVATE KEY section)"
        )),
        e => Error::config(format!("[tls] key = {path:?} is not valid PEM: {e}")),
    })
}
