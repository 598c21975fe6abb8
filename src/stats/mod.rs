//! Traffic statistics kept on the hot path: per-shard counters and latency, statements by route
//! kind and by table, hot keys per sharded table, skew judgement, and the connected clients.
//! Counters are relaxed atomics; the hot-key sketches are striped; nothing here does I/O.

pub mod clients;
pub mod histogram;
pub mod hotkeys;
mod route;
mod skew;
pub mod stamp;
mod window;

use crate::config::{Config, StatsConfig, MAX_SHARDS};
use crate::ring::{Key, Ring, ShardId};
use crate::router::TableList;
use histogram::Histogram;
use hotkeys::HotKeys;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use route::RouteKind;
pub use skew::ShardSkew;

/// Hot-key entries per stripe, and stripes per table: 8 × 64 tracked keys per table, enough
/// that any key above ~1/64 of a stripe's traffic is always among them.
const HOT_CAPACITY: usize = 64;
const HOT_STRIPES: usize = 8;

/// One shard's counters. Padded so that two shards' counters never share a cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct ShardStats {
    /// Requests answered (one per ReadyForQuery).
    pub requests: AtomicU64,
    /// Statements completed (CommandComplete).
    pub commands: AtomicU64,
    /// Rows returned or affected, as the command tags report them.
    pub rows: AtomicU64,
    pub errors: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Statements routed here by a shard key, once per shard they reach (the traffic skew is
    /// judged on these).
    pub keyed: AtomicU64,
    /// Rows of the sharded tables stored on the shard (pg_stat_user_tables), u64::MAX unknown.
    pub stored_rows: AtomicU64,
    /// Request latency: from the request's first byte sent to the shard's ReadyForQuery.
    pub latency: Histogram,
}

impl ShardStats {
    pub fn new() -> ShardStats {
        ShardStats {
            stored_rows: AtomicU64::new(u64::MAX),
            ..Default::default()
        }
    }

    /// A CommandComplete tag: one statement, and the rows its tag counts (`SELECT 5`,
    /// `INSERT 0 3`, `UPDATE 2`...).
    pub fn command(&self, tag: &[u8]) {
        self.commands.fetch_add(1, Relaxed);
        if let Some(n) = tag_rows(tag) {
            self.rows.fetch_add(n, Relaxed);
        }
    }
}

/// The row count at the end of a command tag, if it has one.
fn tag_rows(tag: &[u8]) -> Option<u64> {
    let tag = tag.strip_suffix(b"\0").unwrap_or(tag);
    let last = tag.rsplit(|&b| b == b' ').next()?;
    if last.is_empty() || last.len() > 19 || !last.iter().all(u8::is_ascii_digit) || last == tag {
        return None;
    }
    Some(last.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[derive(Default)]
#[repr(align(128))]
struct RouteStats {
    statements: AtomicU64,
    /// Client requests (up to ReadyForQuery) whose widest statement had this kind.
    latency: Histogram,
}

/// FNV-1a: table names are short and chosen by the operator, so SipHash's flood resistance buys
/// nothing here, and this lookup runs twice per statement.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A table of shards.toml: statements touching it, and its hot keys if sharded.
pub struct TableStats {
    pub statements: AtomicU64,
    /// Keys routed (several per statement for `IN (...)` or multi-row INSERTs).
    pub keys: AtomicU64,
    hot: Option<HotKeys>,
}

/// One hot key as reported: where it lives now and how much of its table's traffic it takes.
#[derive(Debug, Clone)]
pub struct HotSpot {
    pub table: Arc<str>,
    pub key: Key,
    pub shard: ShardId,
    /// Decayed hits (recent hits count fully, older ones fade by the half-life).
    pub hits: f64,
    /// Share of the table's keyed traffic (decayed alike), 0..1.
    pub share: f64,
    /// Space-Saving's bound on how much `hits` may overstate.
    pub error: f64,
}

pub struct Stats {
    /// By ShardId, for every id a shard may ever get: a shard added at runtime finds its slot
    /// without a lock, and ids never move, so neither do a shard's counters.
    shards: Box<[OnceLock<Arc<ShardStats>>]>,
    /// One past the highest id whose counters exist.
    known: AtomicUsize,
    routes: [RouteStats; 4],
    /// In config order; a plan's table names resolve to indexes here once (`TableList::ids`).
    tables: Box<[(Arc<str>, TableStats)]>,
    by_name: HashMap<Arc<str>, u32, BuildHasherDefault<Fnv>>,
    started: Instant,
    /// Whole seconds since `started`, advanced by `tick`: the sketches' coarse clock.
    clock: AtomicU64,
    config: StatsConfig,
    skew: Mutex<skew::Tracker>,
    window: Mutex<window::Window>,
    pub clients: Arc<clients::Registry>,
}

impl Stats {
    pub fn new(config: &Config) -> Stats {
        let half_life = config.stats.half_life_secs as f64;
        let weights: Vec<u32> = config.shards.iter().map(|s| s.weight).collect();
        let tables: Box<[(Arc<str>, TableStats)]> = config
            .tables
            .iter()
            .map(|t| {
                let hot = (!t.reference && t.shard_key.is_some())
                    .then(|| HotKeys::new(HOT_CAPACITY, HOT_STRIPES, half_life));
                let stats = TableStats {
                    statements: AtomicU64::new(0),
                    keys: AtomicU64::new(0),
                    hot,
                };
                (Arc::from(t.name.as_str()), stats)
            })
            .collect();
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i as u32))
            .collect();
        let stats = Stats {
            shards: (0..MAX_SHARDS).map(|_| OnceLock::new()).collect(),
            known: AtomicUsize::new(0),
            routes: Default::default(),
            tables,
            by_name,
            started: Instant::now(),
            clock: AtomicU64::new(0),
            config: config.stats.clone(),
            skew: Mutex::new(skew::Tracker::new(&weights)),
            window: Mutex::default(),
            clients: Arc::default(),
        };
        for i in 0..config.shards.len() {
            stats.shard(ShardId(i as u16));
        }
        stats
    }

    /// The counters of shard `id`, created on first use. Panics for an id past `MAX_SHARDS`,
    /// which no shard can have.
    pub fn shard(&self, id: ShardId) -> &Arc<ShardStats> {
        let i = usize::from(id.0);
        self.shards[i].get_or_init(|| {
            self.known.fetch_max(i + 1, Relaxed);
            Arc::new(ShardStats::new())
        })
    }

    /// How many shard ids have counters: every id below this one (ids are handed out in order).
    pub fn shard_count(&self) -> usize {
        self.known.load(Relaxed)
    }

    /// Every shard's counters, by id.
    fn each_shard(&self) -> impl Iterator<Item = &Arc<ShardStats>> {
        (0..self.shard_count()).map(|i| self.shard(ShardId(i as u16)))
    }

    pub fn config(&self) -> &StatsConfig {
        &self.config
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The sketches' clock: whole seconds since start, as of the last tick.
    pub fn now(&self) -> u64 {
        self.clock.load(Relaxed)
    }

    /// Where the counters of the plan's tables are (`u32::MAX` for a table that shards.toml
    /// does not list), in the plan's order: resolved once per plan, so the statements of a
    /// cached plan hash no names. None if another Stats resolved the plan first (only where a
    /// test shares plans): the caller then goes by name.
    fn ids<'a>(&self, tables: &'a TableList) -> Option<&'a [u32]> {
        // A plan lives in a session's cache, so the Stats that resolved it outlives it: its
        // address cannot be another live Stats'.
        let owner = self as *const Stats as usize;
        tables.ids(owner, |names| {
            names
                .iter()
                .map(|n| self.by_name.get(n).copied().unwrap_or(u32::MAX))
                .collect()
        })
    }

    fn table(&self, id: u32) -> Option<&TableStats> {
        self.tables.get(id as usize).map(|(_, t)| t)
    }

    fn named(&self, name: &str) -> Option<&TableStats> {
        self.table(*self.by_name.get(name)?)
    }

    /// A statement about to run: counted by route kind and for each table it touches.
    pub fn statement(&self, tables: &TableList, kind: RouteKind) {
        self.routes[kind.index()].statements.fetch_add(1, Relaxed);
        let count = |t: &TableStats| t.statements.fetch_add(1, Relaxed);
        match self.ids(tables) {
            Some(ids) => ids.iter().filter_map(|&i| self.table(i)).for_each(|t| {
                count(t);
            }),
            None => tables.iter().filter_map(|n| self.named(n)).for_each(|t| {
                count(t);
            }),
        }
    }

    /// A statement routed to `shard` by its key (counted once per shard it reaches).
    pub fn keyed(&self, shard: ShardId) {
        if usize::from(shard.0) < MAX_SHARDS {
            self.shard(shard).keyed.fetch_add(1, Relaxed);
        }
    }

    /// A key a statement was routed by: its table's key count and hot-key sketch.
    pub fn key(&self, tables: &TableList, key: &Key, hash: u64) {
        // The first table's: a plan lists the sharded tables first.
        let first = match self.ids(tables) {
            Some(ids) => ids.first().and_then(|&i| self.table(i)),
            None => tables.first().and_then(|n| self.named(n)),
        };
        let Some(t) = first else {
            return;
        };
        t.keys.fetch_add(1, Relaxed);
        if let Some(hot) = &t.hot {
            hot.hit(key, hash, self.now());
        }
    }

    /// A client request finished (at its ReadyForQuery).
    pub fn request(&self, kind: RouteKind, elapsed_ns: u64) {
        self.routes[kind.index()].latency.record_ns(elapsed_ns);
    }

    pub fn route_statements(&self, kind: RouteKind) -> u64 {
        self.routes[kind.index()].statements.load(Relaxed)
    }

    pub fn route_latency(&self, kind: RouteKind) -> histogram::Snapshot {
        self.routes[kind.index()].latency.snapshot()
    }

    /// (table, statements, keys routed) in config order.
    pub fn table_counts(&self) -> Vec<(Arc<str>, u64, u64)> {
        let mut v: Vec<_> = self
            .tables
            .iter()
            .map(|(n, t)| (n.clone(), t.statements.load(Relaxed), t.keys.load(Relaxed)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The hottest keys of every sharded table, hottest first (by decayed hits), at most `n`.
    pub fn hot_spots(&self, ring: &Ring, n: usize) -> Vec<HotSpot> {
        let now = self.now();
        let mut all = Vec::new();
        for (name, t) in &self.tables {
            let Some(hot) = &t.hot else { continue };
            let total = hot.total(now);
            if total <= 0.0 {
                continue;
            }
            for k in hot.top(n, now) {
                all.push(HotSpot {
                    table: name.clone(),
                    shard: ring.shard_for_hash(k.hash),
                    share: (k.hits / total).min(1.0),
                    key: k.key,
                    hits: k.hits,
                    error: k.error,
                });
            }
        }
        all.sort_by(|a, b| b.hits.total_cmp(&a.hits).then(a.table.cmp(&b.table)));
        all.truncate(n);
        all
    }

    /// The hot keys that live on `shard` with at least 1% of their table's traffic, as
    /// "users 42 (31%)", hottest first: what a skew verdict names.
    pub fn hot_keys_on(&self, ring: &Ring, shard: ShardId, n: usize) -> Vec<String> {
        self.hot_spots(ring, 100)
            .into_iter()
            .filter(|h| h.shard == shard && h.share >= 0.01)
            .take(n)
            .map(|h| format!("{} {} ({:.0}%)", h.table, h.key, h.share * 100.0))
            .collect()
    }

    /// Bytes the hot-key sketches hold now.
    pub fn sketch_memory(&self) -> usize {
        self.tables
            .iter()
            .filter_map(|(_, t)| t.hot.as_ref())
            .map(HotKeys::memory_bytes)
            .sum()
    }

    /// Advances the clock and the decayed traffic shares; run about once a second. Shares are
    /// judged against `ring`'s weights (the current placement). Returns the shards whose
    /// verdict changed: (shard, why it is skewed now, or None if no longer).
    pub fn tick(&self, ring: &Ring) -> Vec<(ShardId, Option<String>)> {
        let secs = self.started.elapsed().as_secs();
        self.clock.fetch_max(secs, Relaxed);
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tick(secs, || {
                self.each_shard().map(|s| s.latency.snapshot()).collect()
            });
        let keyed: Vec<u64> = self.each_shard().map(|s| s.keyed.load(Relaxed)).collect();
        let stored: Vec<Option<u64>> = self
            .each_shard()
            .map(|s| Some(s.stored_rows.load(Relaxed)).filter(|&n| n != u64::MAX))
            .collect();
        // Every shard the ring lists has counters (the backend makes them when it adds one).
        let weights: Vec<u32> = (0..keyed.len())
            .map(|i| ring.weight(ShardId(i as u16)))
            .collect();
        let mut tracker = self.skew.lock().unwrap_or_else(|p| p.into_inner());
        let before: Vec<bool> = tracker
            .report()
            .iter()
            .map(|s| s.skewed.is_some())
            .collect();
        tracker.tick(secs, &keyed, &stored, &weights, &self.config);
        tracker
            .report()
            .into_iter()
            .enumerate()
            // A shard new to the tracker was not skewed before.
            .filter(|(i, s)| before.get(*i).copied().unwrap_or(false) != s.skewed.is_some())
            .map(|(i, s)| (ShardId(i as u16), s.skewed))
            .collect()
    }

    /// The shard's request latency over about the last minute (see window.rs).
    pub fn recent_latency(&self, shard: ShardId) -> histogram::Snapshot {
        let now = self.shard(shard).latency.snapshot();
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recent(shard.0 as usize, &now)
    }

    /// Each shard's shares and skew verdict as of the last tick.
    pub fn skew(&self) -> Vec<ShardSkew> {
        self.skew.lock().unwrap_or_else(|p| p.into_inner()).report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_command_tags() {
        assert_eq!(tag_rows(b"SELECT 5\0"), Some(5));
        assert_eq!(tag_rows(b"INSERT 0 3\0"), Some(3));
        assert_eq!(tag_rows(b"UPDATE 12"), Some(12));
        assert_eq!(tag_rows(b"COPY 1000000\0"), Some(1_000_000));
        assert_eq!(tag_rows(b"BEGIN\0"), None);
        assert_eq!(tag_rows(b"CREATE TABLE\0"), None);
        assert_eq!(tag_rows(b"123\0"), None);
        assert_eq!(tag_rows(b"SELECT 99999999999999999999\0"), None);
    }

    #[test]
    fn plans_count_by_resolved_table_ids() {
        let config = Config::parse(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n\
             [[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/db\"\n\
             [[tables]]\nname = \"users\"\nshard_key = \"id\"\n\
             [[tables]]\nname = \"orders\"\nshard_key = \"user_id\"\n",
        )
        .unwrap();
        let (a, b) = (Stats::new(&config), Stats::new(&config));
        let counts = |s: &Stats| {
            s.table_counts()
                .into_iter()
                .map(|(n, st, k)| (n.to_string(), st, k))
                .collect::<Vec<_>>()
        };
        let plan = TableList::of(["orders".into(), "nowhere".into(), "users".into()]);
        let unlisted_first = TableList::of(["nowhere".into(), "users".into()]);
        for _ in 0..2 {
            // `a` resolves the lists; `b` then finds them resolved by another and goes by name.
            for s in [&a, &b] {
                s.statement(&plan, RouteKind::Single);
                s.key(&plan, &Key::Int(7), Key::Int(7).hash());
                s.statement(&unlisted_first, RouteKind::Single);
                s.key(&unlisted_first, &Key::Int(8), Key::Int(8).hash());
            }
        }
        let want = vec![("orders".to_owned(), 2, 2), ("users".to_owned(), 4, 0)];
        assert_eq!(counts(&a), want);
        assert_eq!(counts(&b), want);
        assert_eq!(a.route_statements(RouteKind::Single), 4);
        let hot = a.hot_spots(&Ring::new(&config.shards, config.proxy.vnodes), 10);
        assert_eq!(hot.len(), 1);
        assert_eq!(
            (&*hot[0].table, &hot[0].key, hot[0].hits),
            ("orders", &Key::Int(7), 2.0)
        );
    }
}
