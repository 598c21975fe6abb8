//! One client connection after startup: reads its messages, plans and routes each statement,
//! and drives the backend connections that answer it.

mod autoprep;
mod batch;
mod copy;
mod copy_binary;
mod copy_split;
mod exec;
mod ext_fast;
mod ext_gather;
mod ext_pipeline;
mod ext_route;
mod ext_segment;
mod extended;
mod gate;
mod gather;
mod limit;
mod live;
mod prepared;
mod scatter;
mod server_stmts;
mod settings;
mod shape_gather;
mod template;
mod timeout;
mod txn;

use crate::backend::{PooledConn, Running};
use crate::context::Context;
use crate::error::Error;
use crate::protocol::{self, Frame, FrameReader};
use crate::ring::{Ring, ShardId};
use crate::router::{self, QueryPlan, Route, StatementPlan, TableList, Target};
use crate::stats::clients::{Client, State};
use crate::stats::stamp::Stamp;
use crate::stats::RouteKind;
use crate::tls::{ClientRead, ClientWrite};
use bytes::BytesMut;
use settings::Settings;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use txn::Txn;

/// Plans kept per session; point queries with literal keys rarely repeat, prepared-style ones do.
const PLAN_CACHE: usize = 256;
/// Output is flushed to the client once this much is buffered, and always at ReadyForQuery.
const FLUSH_AT: usize = 64 * 1024;
/// While a statement runs, at most this much of the client's next input is read ahead.
const READ_AHEAD: usize = 1 << 20;

/// The client went away (or broke the protocol badly enough that we must hang up).
#[derive(Debug)]
pub struct Gone;

type Step<T = ()> = Result<T, Gone>;

pub struct Session {
    ctx: Arc<Context>,
    /// The config and the rate limits as they are now, read on every request.
    config: live::Live<live::ConfigPart>,
    limiter: live::Live<live::LimitsPart>,
    client: FrameReader<ClientRead>,
    writer: ClientWrite,
    out: BytesMut,
    /// How many times `out` was sent: a batch may be run again only if none of its answer was.
    flushes: u32,
    /// Output is being collected for a suspended portal, not sent: no flushing.
    capturing: bool,
    cache: router::cache::PlanCache,
    txn: Option<Txn>,
    settings: Settings,
    /// The settings fingerprint a connection will hold once the SET now running succeeds.
    settings_after: Option<u64>,
    /// The shard connections the current statement runs on, for the client's CancelRequest.
    running: Arc<Running>,
    /// Statements the client prepared, by its names ("" = unnamed).
    stmts: protocol::Names<Arc<prepared::Prepared>>,
    /// The shard each open portal runs on.
    portals: protocol::Names<ShardId>,
    /// Portals of statements the proxy runs itself (BEGIN, SET... bound through the protocol).
    local_portals: protocol::Names<Arc<prepared::Prepared>>,
    /// Portals of multi-shard reads, run through the gather when executed.
    gather_portals: protocol::Names<ext_gather::GatherPortal>,
    /// A gather portal whose Describe the following Execute answers.
    describe_next: Option<String>,
    /// Extended-protocol messages not yet sent (up to the next Sync or Flush).
    batch: Vec<Frame>,
    /// Buffers an extended-protocol batch reuses from the last one.
    scratch: extended::Scratch,
    /// The connection of a batch the client flushed but has not synced yet.
    ext: Option<(ShardId, PooledConn)>,
    /// An error happened in the open batch: messages up to Sync are ignored, as PostgreSQL does.
    ext_skipping: bool,
    sync_buf: BytesMut,
    /// A COPY ran in this extended-protocol batch (its Sync came before the data).
    copy_ran: bool,
    /// This request's pass through a running rebalance's gate, held to its ReadyForQuery.
    ticket: Option<crate::rebalance::Ticket>,
    /// The statement now running only reads, as far as the router can tell (a hint for the
    /// commit, which checks it).
    reads_only: bool,
    /// This client in the registry SHOW CLIENTS lists.
    me: Arc<Client>,
    /// The worker thread serving this client, whose share of the pools it borrows from.
    worker: usize,
    /// When the request now being answered arrived (its first message).
    began: Option<Stamp>,
    /// The widest route of the request's statements so far.
    kind: std::sync::atomic::AtomicU8,
    /// This client's rate-limit buckets.
    limits: crate::gateway::SessionLimits,
    /// When the request now running passes `[proxy] statement_timeout_ms`.
    deadline: Option<tokio::time::Instant>,
    /// The statement timeout fired and the shards were asked to cancel.
    timed_out: bool,
    /// Fires at `deadline` (polled only while there is one).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Backends the statement timeout sent a cancel to, and those whose answer showed it
    /// consumed (by address and pid), until the request ends.
    cancels_sent: Vec<(std::net::SocketAddr, i32)>,
    cancels_seen: Vec<(std::net::SocketAddr, i32)>,
}

impl Session {
    pub fn new(
        ctx: Arc<Context>,
        client: FrameReader<ClientRead>,
        writer: ClientWrite,
        startup: &[(String, String)],
        running: Arc<Running>,
        me: Arc<Client>,
    ) -> Self {
        let limits = crate::gateway::SessionLimits::new(&me.user, &me.database, me.addr.ip());
        Session {
            limits,
            deadline: None,
            timed_out: false,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(86_400))),
            cancels_sent: Vec::new(),
            cancels_seen: Vec::new(),
            cache: router::cache::PlanCache::new(
                PLAN_CACHE,
                ctx.catalog_version.load(Ordering::Acquire),
            ),
            config: live::Live::new(&ctx),
            limiter: live::Live::new(&ctx),
            ctx,
            client,
            writer,
            out: BytesMut::with_capacity(16 * 1024),
            flushes: 0,
            capturing: false,
            txn: None,
            settings: Settings::from_startup(startup),
            settings_after: None,
            running,
            stmts: protocol::Names::new(),
            portals: protocol::Names::new(),
            local_portals: protocol::Names::new(),
            gather_portals: protocol::Names::new(),
            describe_next: None,
            batch: Vec::new(),
            scratch: Default::default(),
            ext: None,
            ext_skipping: false,
            sync_buf: BytesMut::new(),
            copy_ran: false,
            ticket: None,
            reads_only: false,
            me,
            worker: 0,
            began: None,
            kind: Default::default(),
        }
    }

    /// Runs on worker `w` (`crate::workers`): checkouts take that worker's pool first.
    pub fn on_worker(mut self, w: usize) -> Self {
        self.worker = w;
        self
    }

    /// Serves the client until it leaves; then leaves every backend connection clean.
    pub async fn run(mut self) {
        let _ = self.serve().await;
        if let Some((_, conn)) = self.ext.take() {
            // Mid-batch: its state on the shard is unknown.
            crate::backend::discard(conn);
        }
        self.abandon().await;
    }

    async fn serve(&mut self) -> Step {
        loop {
            // A message already read in (the rest of a batch) is taken without waiting, so
            // without the idle limit's clock.
            let frame = match self.client.try_frame() {
                Ok(None) => self.wait_message().await?,
                buffered => buffered,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                _ => return Err(Gone),
            };
            if self.began.is_none() {
                self.began = Some(Stamp::now());
                self.me.set_state(State::Active);
            }
            match frame.tag {
                b'Q' => self.on_query(&frame).await?,
                b'X' => return Err(Gone),
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S' => self.on_extended(frame).await?,
                // Stray COPY traffic after a refused COPY is ignored, as PostgreSQL does.
                b'd' | b'c' | b'f' => {}
                // The fastpath function call (libpq's large-object functions): an error, as a
                // query would get, and the session goes on.
                b'F' => {
                    if self.extended_first().await? {
                        self.end_open_batch(true).await?;
                        let _ = self.fail(&Error::unsupported(
                            "function call messages (the fastpath interface, used by large-object functions) are not supported by shardgate",
                            "call the function in a SELECT",
                        ));
                        self.ready().await?;
                    }
                }
                other => {
                    // What came before it has run in PostgreSQL, and its answers precede the end.
                    self.extended_first().await?;
                    let err = Error::Protocol {
                        message: format!("unexpected message type 0x{other:02x}"),
                    };
                    protocol::put_fatal(&mut self.out, &err);
                    let _ = self.flush().await;
                    return Err(Gone);
                }
            }
        }
    }

    /// Waits for the client's next message, for at most the idle limit (which ends the
    /// session with a FATAL error).
    async fn wait_message(&mut self) -> Step<std::io::Result<Option<Frame>>> {
        let Some((limit, in_transaction)) = self.idle_limit() else {
            return Ok(self.client.next().await);
        };
        match tokio::time::timeout(limit, self.client.next()).await {
            Ok(next) => Ok(next),
            Err(_) => {
                let err = Error::IdleTimeout { in_transaction };
                protocol::put_fatal(&mut self.out, &err);
                let _ = self.flush().await;
                Err(Gone)
            }
        }
    }

    /// Before a Query or a function call: extended-protocol messages the client sent before it
    /// without a Sync run first, as PostgreSQL has run them by then. False when they failed:
    /// PostgreSQL then ignores everything up to the Sync.
    async fn extended_first(&mut self) -> Step<bool> {
        if !self.batch.is_empty() {
            self.run_batch(false).await?;
        }
        Ok(!self.ext_skipping)
    }

    async fn on_query(&mut self, frame: &Frame) -> Step {
        if !self.extended_first().await? {
            return Ok(());
        }
        self.arm_statement_timeout();
        self.close_open_batch().await?;
        let text = match protocol::query_text(frame.body()) {
            Ok(t) => t,
            Err(e) => {
                // As any error: a transaction block it comes in is failed, and outside one the
                // implicit transaction ends with its portals.
                let _ = self.fail(&e);
                self.end_portals();
                return self.ready().await;
            }
        };
        // A simple query ends the unnamed statement, as in PostgreSQL.
        self.stmts.remove("");
        if let Some(routed) = self.templated(text) {
            self.run_routed(text, routed).await?;
            self.end_portals();
            return self.ready().await;
        }
        let mut plan = self.plan(text);
        if self.needs_catalog(&plan) && self.ctx.refresh_catalog().await.is_ok() {
            plan = self.plan(text);
        }
        if plan.statements.is_empty() {
            protocol::put_empty_query(&mut self.out);
            self.end_portals();
            return self.ready().await;
        }
        self.run_plan(text, &plan).await?;
        self.end_portals();
        self.ready().await
    }

    /// The cached plan for `text`, made anew when the catalog has changed.
    fn plan(&mut self, text: &str) -> Arc<QueryPlan> {
        let version = self.ctx.catalog_version.load(Ordering::Acquire);
        self.cache.check_version(version);
        self.cache.plan(text, &self.ctx.catalog.load())
    }

    /// True when a statement was refused only because a key's type is not known yet (the table
    /// was created after the proxy started, outside it).
    fn needs_catalog(&self, plan: &QueryPlan) -> bool {
        let unknown = self.ctx.catalog.load().tables().iter().any(|t| {
            matches!(
                t.kind,
                crate::catalog::TableKind::Sharded { key_type: None, .. }
            )
        });
        unknown
            && plan
                .statements
                .iter()
                .any(|s| matches!(s.target, Target::Reject(Error::Unsupported { .. })))
    }

    /// Ends the reply to one Query with ReadyForQuery and sends everything buffered.
    async fn ready(&mut self) -> Step {
        self.settle_lost().await;
        let status = match &self.txn {
            Some(t) if t.failed => b'E',
            Some(_) => b'T',
            None => b'I',
        };
        protocol::put_ready(&mut self.out, status);
        self.ticket = None;
        self.deadline = None;
        self.timed_out = false;
        self.cancels_sent.clear();
        self.cancels_seen.clear();
        if let Some(began) = self.began.take() {
            let kind = RouteKind::from_index(self.kind.swap(0, Ordering::Relaxed));
            self.ctx.stats.request(kind, began.elapsed_ns());
        }
        self.me.set_state(match status {
            b'I' => State::Idle,
            _ => State::IdleInTransaction,
        });
        self.flush().await
    }

    /// Counts a statement by its route, and the literal keys it was routed by (keys bound as
    /// parameters are counted where they are decoded).
    /// `ring` is the one the statement was routed with: "all" means all of its members.
    pub(super) fn count(&self, stmt: &StatementPlan, route: &Route, ring: &Ring) {
        let n = ring.shard_count();
        let kind = match route {
            Route::Any => RouteKind::Any,
            Route::Shards(v) => RouteKind::of(v.len(), n),
            Route::All => RouteKind::of(n, n),
            Route::Split(parts) => RouteKind::of(parts.len(), n),
        };
        self.count_kind(&stmt.tables, kind);
        let keys: &[crate::ring::Key] = match &stmt.target {
            Target::Keys(k) => k,
            Target::Split(s) => &s.keys,
            Target::Bound(b) => &b.literals,
            _ => return,
        };
        for k in keys {
            self.count_key(&stmt.tables, k);
        }
        let stats = &self.ctx.stats;
        match route {
            Route::Shards(v) => v.iter().for_each(|s| stats.keyed(*s)),
            Route::Split(parts) => parts.iter().for_each(|(s, _)| stats.keyed(*s)),
            // Too many keys to route one by one: not keyed traffic.
            Route::All | Route::Any => {}
        }
    }

    pub(super) fn count_kind(&self, tables: &TableList, kind: RouteKind) {
        self.ctx.stats.statement(tables, kind);
        self.me.statements.fetch_add(1, Ordering::Relaxed);
        self.kind.fetch_max(kind as u8, Ordering::Relaxed);
    }

    pub(super) fn count_key(&self, tables: &TableList, key: &crate::ring::Key) {
        self.ctx.stats.key(tables, key, key.hash());
    }

    async fn flush(&mut self) -> Step {
        if self.out.is_empty() {
            return Ok(());
        }
        // TLS may hold back what the socket would not take yet; a flush sends it.
        let r = match self.writer.write_all(&self.out).await {
            Ok(()) => self.writer.flush().await,
            Err(e) => Err(e),
        };
        self.out.clear();
        self.flushes = self.flushes.wrapping_add(1);
        r.map_err(|_| Gone)
    }

    /// Flushes when enough output has accumulated.
    async fn maybe_flush(&mut self) -> Step {
        if self.out.len() >= FLUSH_AT && !self.capturing {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Re-reads key types after a schema change; a failure only delays routing that needs them.
    async fn refresh_catalog(&self) {
        if let Err(e) = self.ctx.refresh_catalog().await {
            tracing::warn!("catalog refresh after DDL failed: {e}");
        }
    }

    fn error(&mut self, err: &Error) {
        protocol::put_error(&mut self.out, err);
    }
}
