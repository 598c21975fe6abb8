//! Starts shardgate in-process on a free port in front of given shards, for integration tests.

use shardgate::context::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub struct Proxy {
    pub addr: SocketAddr,
    pub ctx: Arc<Context>,
    stop: Option<oneshot::Sender<()>>,
}

impl Proxy {
    /// A proxy over `urls` (named s0, s1, ...) with `extra` appended to the config (tables...).
    /// Eight pooled connections: on two CPUs or more, two workers with four each, so that the
    /// tests run sessions on several worker threads.
    pub async fn start(urls: &[String], extra: &str) -> Proxy {
        Self::start_with(urls, "pool_size = 8", extra).await
    }

    pub async fn start_with(urls: &[String], proxy_opts: &str, extra: &str) -> Proxy {
        let mut toml = format!("[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_opts}\n");
        for (i, url) in urls.iter().enumerate() {
            toml.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
        }
        toml.push_str(extra);
        let config = shardgate::config::Config::parse(&toml).expect("test config is valid");
        let (ctx, server) = shardgate::start(config).await.expect("proxy starts");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Proxy {
            addr,
            ctx,
            stop: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=app connect_timeout=10",
            self.addr.port()
        )
    }

    /// Two integer keys that the ring places on different shards.
    pub fn keys_on_two_shards(&self) -> (i64, i64) {
        let ring = self.ctx.ring.load();
        let home = ring.shard_for_key(&shardgate::ring::Key::Int(1));
        let other = (2..)
            .find(|k| ring.shard_for_key(&shardgate::ring::Key::Int(*k)) != home)
            .expect("more than one shard");
        (1, other)
    }

    /// A tokio-postgres client connected through the proxy.
    pub async fn client(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect through the proxy");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Rows of a simple query as text columns.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    try_rows(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn try_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let msgs = client.simple_query(sql).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// The row count of the last CommandComplete of a simple query.
pub async fn affected(client: &Client, sql: &str) -> u64 {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .expect("a command tag")
}

/// The SQLSTATE of a failing statement.
pub async fn sqlstate(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql}: expected an error"),
        Err(e) => e
            .as_db_error()
            .map(|d| d.code().code().to_owned())
            .unwrap_or_else(|| panic!("{sql}: not a server error: {e}")),
    }
}

/// A single text value.
pub async fn value(client: &Client, sql: &str) -> String {
    rows(client, sql).await[0][0].clone().unwrap_or_default()
}

/// A bare-socket client logged in to database `db` as postgres (trust), past the first
/// ReadyForQuery; the server may be the proxy or PostgreSQL itself.
pub async fn raw_login(addr: SocketAddr, db: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608i32.to_be_bytes());
    for part in ["user", "postgres", "database", db, ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    s.write_all(&packet).await.unwrap();
    // Read up to the first ReadyForQuery ('Z', length 5, status).
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5]) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during startup");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

/// A bare-socket client: logs in, sends one simple query, and returns the socket so the
/// caller can drop it mid-query, as a killed process would (no Terminate message).
pub async fn send_and_keep_socket(addr: SocketAddr, sql: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = raw_login(addr, "app").await;
    let mut q = vec![b'Q'];
    q.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    q.extend_from_slice(sql.as_bytes());
    q.push(0);
    s.write_all(&q).await.unwrap();
    s
}

/// Polls `check` every 50 ms for up to `secs` seconds; true once it holds.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 20 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
