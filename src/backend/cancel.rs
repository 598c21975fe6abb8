//! Query cancellation: the keys the proxy hands to clients, and the shard connections each
//! client is running a statement on, so a client's CancelRequest reaches the right backends.

use crate::protocol;
use crate::tls::ShardConnector;
use bytes::{BufMut, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What PostgreSQL needs to cancel one backend's running statement.
#[derive(Debug, Clone)]
pub struct CancelKey {
    pub addr: SocketAddr,
    /// The TLS of the connection to cancel: the request carries its secret, so it goes the
    /// same way (PostgreSQL reads a cancel request inside TLS as well as in clear).
    pub tls: ShardConnector,
    pub pid: i32,
    pub secret: i32,
}

impl CancelKey {
    /// Sends a CancelRequest on a fresh connection, as the protocol requires.
    pub async fn cancel(self) {
        let mut packet = BytesMut::with_capacity(16);
        packet.put_i32(16);
        packet.put_i32(protocol::CANCEL_REQUEST_CODE);
        packet.put_i32(self.pid);
        packet.put_i32(self.secret);
        let attempt = async {
            let tcp = TcpStream::connect(self.addr).await?;
            let mut s = self.tls.connect(tcp).await.map_err(std::io::Error::other)?;
            s.write_all(&packet).await?;
            s.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), attempt).await;
    }
}

/// The backends one client's current statement runs on (empty between statements).
#[derive(Debug, Default)]
pub struct Running(Mutex<Vec<CancelKey>>);

impl Running {
    pub fn add(&self, key: CancelKey) {
        lock(&self.0).push(key);
    }

    pub fn clear(&self) {
        lock(&self.0).clear();
    }

    /// The backends in the set now.
    pub fn keys(&self) -> Vec<CancelKey> {
        lock(&self.0).clone()
    }
}

/// Every connected client's (pid, secret) and what it is running. Touched at connect, at
/// disconnect and by cancel requests, never per statement.
#[derive(Debug, Default)]
pub struct Cancels(Mutex<HashMap<i32, (i32, Arc<Running>)>>);

impl Cancels {
    /// A fresh key for a new client: (pid, secret, its running set).
    pub fn register(&self) -> (i32, i32, Arc<Running>) {
        let running = Arc::new(Running::default());
        let mut map = lock(&self.0);
        loop {
            let pid = rand::random::<i32>() & i32::MAX;
            if pid != 0 && !map.contains_key(&pid) {
                let secret = rand::random::<i32>();
                map.insert(pid, (secret, running.clone()));
                return (pid, secret, running);
            }
        }
    }

    pub fn unregister(&self, pid: i32) {
        lock(&self.0).remove(&pid);
    }

    /// Cancels what the client with this key runs; unknown keys are ignored, as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let keys = match lock(&self.0).get(&pid) {
            Some((s, running)) if *s == secret => running.keys(),
            _ => return,
        };
        for key in keys {
            key.cancel().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
