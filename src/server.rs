//! The client-facing listener: accepts connections, runs the startup handshake, and hands each
//! client to a session.

use crate::auth::ChannelBinding;
use crate::backend::Running;
use crate::config::AuthMethod;
use crate::context::Context;
use crate::error::Error;
use crate::protocol::{self, FrameReader};
use crate::session::Session;
use crate::tls;
use crate::workers::Workers;
use bytes::BytesMut;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Server {
    ctx: Arc<Context>,
    listener: TcpListener,
    workers: Workers,
}

impl Server {
    /// Binds the address in `[proxy] listen` (port 0 picks a free port).
    pub async fn bind(ctx: Arc<Context>) -> Result<Server, Error> {
        let addr = ctx.config.load().proxy.listen.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
        let workers = Workers::start(ctx.backend.workers())?;
        Ok(Server {
            ctx,
            listener,
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Accepts clients until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.hand_over(stream, peer),
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        self.ctx.backend.close();
    }

    /// Starts the client's session on the next worker, its socket registered with that
    /// worker's runtime.
    fn hand_over(&self, stream: TcpStream, peer: SocketAddr) {
        let ctx = self.ctx.clone();
        let w = self.workers.pick();
        if w == 0 {
            // Already registered with this runtime, worker 0's.
            self.workers.spawn(0, serve_client(ctx, stream, peer, 0));
            return;
        }
        match stream.into_std() {
            Ok(std) => self.workers.spawn(w, async move {
                match TcpStream::from_std(std) {
                    Ok(stream) => serve_client(ctx, stream, peer, w).await,
                    Err(e) => tracing::warn!(%peer, "cannot hand the client to worker {w}: {e}"),
                }
            }),
            Err(e) => tracing::warn!(%peer, "cannot hand the client to worker {w}: {e}"),
        }
    }
}

/// Releases a client's slot and cancel key when its task ends, however it ends.
struct ClientSlot {
    ctx: Arc<Context>,
    pid: Option<i32>,
    admin: bool,
    /// Whether the client holds a place in its counter (clients, or the console's reserve).
    counted: bool,
    /// The user's slot under its connection cap.
    _user: Option<crate::gateway::UserSlot>,
}

/// Console sessions beyond max_client_connections: an operator can look in when the proxy is
/// full, and the console cannot be used to exhaust file descriptors.
const ADMIN_RESERVE: usize = 8;

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let counter = if self.admin {
            &self.ctx.admin_clients
        } else {
            &self.ctx.clients
        };
        if self.counted {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(pid) = self.pid {
            self.ctx.cancels.unregister(pid);
        }
    }
}

/// From accept to AuthenticationOk, as PostgreSQL's authentication_timeout: a client that stalls
/// anywhere before it is in (TLS, startup packet, password) gives its socket back.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Decrements the count of handshakes in progress when one ends, however it ends.
struct Handshake<'a>(&'a AtomicUsize);

impl Drop for Handshake<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_client(ctx: Arc<Context>, stream: TcpStream, peer: SocketAddr, worker: usize) {
    let _ = stream.set_nodelay(true);
    // Clients not yet in are bounded too, or idle sockets could use up file descriptors.
    let handshake = Handshake(&ctx.handshakes);
    if ctx.handshakes.fetch_add(1, Ordering::AcqRel)
        >= ctx.config.load().proxy.max_client_connections
    {
        return;
    }
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    // SSLRequest is answered on the raw socket, so that nothing read in clear can be taken for
    // what the client sends inside TLS.
    let acceptor = ctx.tls_acceptor.load_full();
    let require = ctx.config.load().tls.as_ref().is_some_and(|t| t.require);
    let negotiated = tokio::time::timeout_at(
        deadline,
        tls::negotiate(stream, acceptor.as_deref(), require),
    );
    let Ok(Some(start)) = negotiated.await else {
        return;
    };
    let (r, mut w) = start.stream.into_sides();
    let mut reader = FrameReader::with_buffer(r, start.buffered);
    let binding = start.channel_binding.as_ref();
    let starting = startup(&ctx, &mut reader, &mut w, binding);
    let Ok(started) = tokio::time::timeout_at(deadline, starting).await else {
        tracing::debug!(%peer, "client did not complete its startup in time");
        return;
    };
    drop(handshake);
    match started {
        Ok(Some(started)) => {
            let get = |k: &str| {
                started
                    .params
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or("", |(_, v)| v.as_str())
            };
            let database = match get("database") {
                "" => get("user"),
                db => db,
            };
            let registered = ctx.stats.clients.register(get("user"), database, peer);
            tracing::debug!(%peer, user = get("user"), database, "client connected");
            let me = registered.client.clone();
            if started.admin {
                crate::admin::console::serve(ctx, reader, w).await;
            } else {
                Session::new(ctx, reader, w, &started.params, started.running, me)
                    .on_worker(worker)
                    .run()
                    .await;
            }
            drop(started.slot);
            tracing::debug!(%peer, "client left");
        }
        Ok(None) => {}
        Err(e) => {
            let mut out = BytesMut::new();
            protocol::put_fatal(&mut out, &e);
            let _ = w.write_all(&out).await;
            let _ = w.shutdown().await;
        }
    }
}

struct Started {
    params: Vec<(String, String)>,
    running: Arc<Running>,
    slot: ClientSlot,
    /// The client asked for the admin console (database `shardgate`).
    admin: bool,
}

/// The startup phase: the startup packet, authentication, parameters (SSL and GSS requests
/// were answered by `tls::negotiate`).
/// `Ok(None)` when the client went away (or sent a cancel request). `binding` is the TLS
/// channel SCRAM-SHA-256-PLUS can bind to, when the client is on one.
async fn startup<R, W>(
    ctx: &Arc<Context>,
    reader: &mut FrameReader<R>,
    w: &mut W,
    binding: Option<&ChannelBinding>,
) -> Result<Option<Started>, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let protocol_err = |m: &str| Error::Protocol { message: m.into() };
    let packet = loop {
        let Ok(Some((code, packet))) = reader.startup_packet().await else {
            return Ok(None);
        };
        match code {
            // Only a client already inside TLS asks here; it is told no.
            protocol::SSL_REQUEST_CODE | protocol::GSSENC_REQUEST_CODE => {
                w.write_all(b"N").await.map_err(|_| protocol_err("write"))?;
                w.flush().await.map_err(|_| protocol_err("write"))?;
            }
            protocol::CANCEL_REQUEST_CODE => {
                if let (Some(pid), Some(secret)) =
                    (protocol::be_i32(&packet, 8), protocol::be_i32(&packet, 12))
                {
                    ctx.cancels.cancel(pid, secret).await;
                }
                return Ok(None);
            }
            c if c >> 16 == 3 => break packet,
            _ => return Err(protocol_err("unsupported frontend protocol version")),
        }
    };
    let minor = protocol::be_i32(&packet, 4).unwrap_or(0) & 0xffff;
    let params = protocol::startup_parameters(&packet)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("user").ok_or_else(|| protocol_err("no user name in the startup packet"))?;
    let database = get("database").unwrap_or(user);
    let config = ctx.config.load();
    let admin = database == "shardgate";
    // Who may use the console is checked after authentication, below: asking first would
    // tell anyone who connects which names are admins.
    if let Some(only) = config.proxy.database.as_ref().filter(|_| !admin) {
        if only != database {
            return Err(Error::UnknownDatabase {
                database: database.to_owned(),
            });
        }
    }
    let mut slot = ClientSlot {
        ctx: ctx.clone(),
        pid: None,
        admin,
        counted: false,
        _user: None,
    };
    // Clients count from their startup packet on, as in PostgreSQL; the console's reserve only
    // once authenticated, so that clients stalling in the exchange cannot lock operators out.
    let take = |slot: &mut ClientSlot| {
        let (counter, limit) = if admin {
            (&ctx.admin_clients, ADMIN_RESERVE)
        } else {
            (&ctx.clients, config.proxy.max_client_connections)
        };
        slot.counted = true;
        match counter.fetch_add(1, Ordering::AcqRel) >= limit {
            true => Err(Error::TooManyConnections),
            false => Ok(()),
        }
    };
    if !admin {
        take(&mut slot)?;
    }

    let mut out = BytesMut::with_capacity(512);
    if minor != 0 {
        let unsupported: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.clone())
            .collect();
        protocol::put_negotiate_protocol(&mut out, &unsupported);
    }
    if let Some(auth) = config
        .auth
        .as_ref()
        .filter(|a| a.method != AuthMethod::Trust)
    {
        // NegotiateProtocolVersion comes before the authentication request.
        if !out.is_empty() {
            w.write_all(&out).await.map_err(|_| protocol_err("write"))?;
            out.clear();
        }
        let users = ctx.users.load_full();
        crate::auth::authenticate(&users, auth.method, user, binding, reader, w).await?;
    }
    // Without [auth] every client is trusted, for the console too.
    if let Some(auth) = config.auth.as_ref().filter(|_| admin) {
        if !auth.admin_users.iter().any(|u| u == user) {
            return Err(Error::NotAdmin {
                user: user.to_owned(),
            });
        }
    }
    if admin {
        take(&mut slot)?;
    } else {
        // Counted once the client is who it says it is, as PostgreSQL counts rolconnlimit.
        let cap = config
            .auth
            .as_ref()
            .and_then(|a| a.users.iter().find(|u| u.name == user))
            .and_then(|u| u.max_connections)
            .unwrap_or(config.proxy.max_user_connections);
        slot._user = Some(ctx.user_conns.acquire(user, cap)?);
    }
    protocol::put_auth_ok(&mut out);
    for (name, value) in ctx.server_params().await.iter() {
        let own = params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        protocol::put_parameter_status(&mut out, name, own.unwrap_or(value));
    }
    let (pid, secret, running) = ctx.cancels.register();
    slot.pid = Some(pid);
    protocol::put_backend_key(&mut out, pid, secret);
    protocol::put_ready(&mut out, b'I');
    w.write_all(&out).await.map_err(|_| protocol_err("write"))?;
    // TLS may hold back what the socket would not take yet.
    w.flush().await.map_err(|_| protocol_err("write"))?;
    Ok(Some(Started {
        params,
        running,
        slot,
        admin,
    }))
}
