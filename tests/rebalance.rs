//! Online rebalance: after a RELOAD that adds a shard, removes one or changes a weight, every row
//! ends up exactly once on the shard the new ring names, only the rows whose owner changed move,
//! and a client writing and reading through the proxy the whole time loses nothing, sees no
//! duplicate, and gets no error.

mod support;

use rand::{Rng, SeedableRng};
use shardgate::ring::Key;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::proxy::{rows, try_rows, value, Proxy};
use support::Shards;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

/// Small steps, so that every test goes through intermediate placements (about 6 steps here).
const OPTS: &str = "pool_size = 8\nrebalance_step_rows = 1000";
const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "orders"
shard_key = "user_id"

[[tables]]
name = "countries"
reference = true
"#;
/// A foreign key between the co-located tables and an identity column: the switch inserts
/// parents first and deletes children first, and writes identity values as they were.
const SCHEMA: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, name text, balance bigint NOT NULL DEFAULT 0);
    CREATE TABLE orders (id bigint, user_id bigint NOT NULL REFERENCES users (id), amount bigint,
                         line bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (user_id, id));
    CREATE TABLE countries (code text PRIMARY KEY, name text)";
const COUNTRIES: [(&str, &str); 3] = [("fr", "France"), ("jp", "Japan"), ("pe", "Peru")];
/// Users loaded before the rebalance, ids 1..=USERS.
const USERS: i64 = 6000;
/// The writer's users start here, far above the loaded ones.
const FIRST_NEW: i64 = 100_000;

/// The loaded orders of a user: 2 or 3 of them.
fn order_ids(user: i64) -> std::ops::RangeInclusive<i64> {
    1..=2 + user % 2
}

/// The config file text; `Proxy::start_with(urls, OPTS, TABLES)` runs the same with weights 1.
fn config_text(urls: &[String], weights: &[u32]) -> String {
    let mut toml = format!("[proxy]\nlisten = \"127.0.0.1:0\"\n{OPTS}\n");
    for (i, (url, weight)) in urls.iter().zip(weights).enumerate() {
        toml.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
        if *weight != 1 {
            toml.push_str(&format!("weight = {weight}\n"));
        }
    }
    toml.push_str(TABLES);
    toml
}

/// A proxy over the first `n` databases, started from a config file that RELOAD re-reads,
/// with the schema and the data loaded through it.
async fn serve(shards: &Shards, n: usize) -> (Proxy, tempfile::NamedTempFile) {
    let urls = &shards.urls()[..n];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config_text(urls, &vec![1; n])).unwrap();
    let proxy = Proxy::start_with(urls, OPTS, TABLES).await;
    let path = file.path().to_path_buf();
    proxy.ctx.config_path.set(path).unwrap();
    let c = proxy.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    let countries = COUNTRIES.map(|(code, name)| format!("('{code}', '{name}')"));
    let sql = format!("INSERT INTO countries VALUES {}", countries.join(", "));
    c.batch_execute(&sql).await.unwrap();
    // Multi-row INSERTs of 500 users, each split by the proxy across the shards.
    for first in (1..=USERS).step_by(500) {
        let ids = first..first + 500;
        let users: Vec<String> = ids.clone().map(|id| format!("({id}, 'u{id}')")).collect();
        let orders: Vec<String> = ids
            .flat_map(|u| order_ids(u).map(move |o| format!("({o}, {u}, {})", u * o)))
            .collect();
        let (users, orders) = (users.join(", "), orders.join(", "));
        let sql = format!("INSERT INTO users (id, name) VALUES {users}; INSERT INTO orders (id, user_id, amount) VALUES {orders}");
        c.batch_execute(&sql).await.unwrap();
    }
    (proxy, file)
}

async fn console(proxy: &Proxy) -> Client {
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=shardgate",
        proxy.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// One row of SHOW REBALANCE.
#[derive(Debug)]
#[allow(dead_code)] // the test prints some fields (through Debug) without reading them
struct Rebalance {
    state: String,
    tables: i64,
    rows_moved: i64,
    rows_to_move: i64,
    elapsed_s: f64,
    pause_ms: f64,
    from: String,
    to: String,
    detail: String,
}

async fn show_rebalance(admin: &Client) -> Rebalance {
    let msgs = admin.simple_query("SHOW REBALANCE").await;
    let msgs = msgs.unwrap_or_else(|e| panic!("SHOW REBALANCE: {e}"));
    let mut found = msgs.into_iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let r = found.next().expect("SHOW REBALANCE returns a row");
    assert!(found.next().is_none(), "SHOW REBALANCE returns one row");
    Rebalance {
        state: col(&r, "state"),
        tables: col(&r, "tables"),
        rows_moved: col(&r, "rows_moved"),
        rows_to_move: col(&r, "rows_to_move"),
        elapsed_s: col(&r, "elapsed_s"),
        pause_ms: col(&r, "pause_ms"),
        from: col(&r, "from"),
        to: col(&r, "to"),
        detail: col(&r, "detail"),
    }
}

/// A column by name, so the column order is free.
fn col<T: std::str::FromStr<Err: std::fmt::Debug>>(r: &SimpleQueryRow, name: &str) -> T {
    let text = r.get(name).unwrap_or("");
    text.parse()
        .unwrap_or_else(|e| panic!("{name} = {text:?}: {e:?}"))
}

/// Polls SHOW REBALANCE until `done`; an error on `failed`, after 120 s, or once a client task
/// has stopped (its own error then says why).
async fn wait_done(admin: &Client, clients_alive: impl Fn() -> bool) -> Result<Rebalance, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = show_rebalance(admin).await;
        match r.state.as_str() {
            "done" => return Ok(r),
            "failed" => return Err(format!("rebalance failed: {}", r.detail)),
            _ if Instant::now() > deadline => return Err(format!("not done after 120 s: {r:?}")),
            _ if !clients_alive() => return Err(format!("a client stopped early during {r:?}")),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Shared between the test, the writer and the reader.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    /// New users whose INSERT was sent, and whose INSERT was acknowledged.
    started: AtomicI64,
    acked: AtomicI64,
}

/// What the writer was told had committed.
#[derive(Default)]
struct Acked {
    users: Vec<i64>,
    /// Users whose order 1 was acknowledged.
    orders: Vec<i64>,
    increments: HashMap<i64, i64>,
    writes: u64,
    longest: Duration,
}

/// Awaits one write, keeping the longest latency.
async fn timed(
    acked: &mut Acked,
    what: String,
    write: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
) -> Result<u64, String> {
    let start = Instant::now();
    let n = write.await.map_err(|e| match e.as_db_error() {
        Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
        None => format!("{what}: {e}"),
    })?;
    acked.longest = acked.longest.max(start.elapsed());
    acked.writes += 1;
    Ok(n)
}

/// Inserts users with increasing ids (each with one order) and bumps random users' balances
/// until told to stop. Any error ends it: writes must never fail during a rebalance.
async fn writer(c: Client, p: Arc<Progress>) -> Result<Acked, String> {
    let prepare = async |sql: &str| c.prepare(sql).await.map_err(|e| format!("{sql}: {e}"));
    let user = prepare("INSERT INTO users (id, name) VALUES ($1, $2)").await?;
    let order = prepare("INSERT INTO orders (id, user_id, amount) VALUES ($1, $2, $3)").await?;
    let bump = prepare("UPDATE users SET balance = balance + 1 WHERE id = $1").await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut acked = Acked::default();
    for id in FIRST_NEW.. {
        if p.stop.load(SeqCst) {
            break;
        }
        p.started.fetch_add(1, SeqCst);
        let name = format!("w{id}");
        let what = format!("insert user {id}");
        timed(&mut acked, what, c.execute(&user, &[&id, &name])).await?;
        acked.users.push(id);
        p.acked.fetch_add(1, SeqCst);
        let what = format!("insert order of {id}");
        timed(&mut acked, what, c.execute(&order, &[&1i64, &id, &7i64])).await?;
        acked.orders.push(id);
        for _ in 0..3 {
            // Loaded and new users alike, so keys that are being copied get updated too.
            let k = rng.random_range(0..USERS + acked.users.len() as i64);
            let target = if k < USERS {
                k + 1
            } else {
                acked.users[(k - USERS) as usize]
            };
            let what = format!("update {target}");
            let n = timed(&mut acked, what, c.execute(&bump, &[&target])).await?;
            if n != 1 {
                return Err(format!("the update of user {target} changed {n} rows"));
            }
            *acked.increments.entry(target).or_insert(0) += 1;
        }
    }
    Ok(acked)
}

/// Counts users and looks for duplicate ids through the proxy until told to stop. A count
/// below the acknowledged inserts means a row was missed mid-move; above the sent ones, a row
/// was seen twice.
async fn reader(c: Client, p: Arc<Progress>) -> Result<u64, String> {
    let mut reads = 0;
    while !p.stop.load(SeqCst) {
        let low = USERS + p.acked.load(SeqCst);
        let sql = "SELECT count(*) FROM users";
        let got = try_rows(&c, sql).await.map_err(|e| format!("{sql}: {e}"))?;
        let n: i64 = got[0][0].as_deref().unwrap_or("").parse().unwrap();
        let high = USERS + p.started.load(SeqCst);
        if n < low || n > high {
            return Err(format!("count(*) = {n}, expected {low}..={high}"));
        }
        // The proxy refuses a subquery over a sharded table, so the groups come back merged.
        let sql = "SELECT id FROM users GROUP BY id HAVING count(*) > 1";
        let dups = try_rows(&c, sql).await.map_err(|e| format!("{sql}: {e}"))?;
        if !dups.is_empty() {
            return Err(format!("duplicate users seen: {dups:?}"));
        }
        reads += 1;
    }
    Ok(reads)
}

/// Each loaded user's database, read straight from the `n` serving databases.
async fn placement(shards: &Shards, n: usize) -> HashMap<i64, usize> {
    let mut at = HashMap::new();
    for i in 0..n {
        let db = shards.client(i).await;
        for r in db.query("SELECT id FROM users", &[]).await.unwrap() {
            assert!(at.insert(r.get::<_, i64>(0), i).is_none(), "loaded twice");
        }
    }
    assert_eq!(at.len() as i64, USERS);
    at
}

/// Users and orders found on each database.
struct Counts {
    users: Vec<usize>,
    orders: Vec<usize>,
}

/// Applies `next` with RELOAD while the writer and the reader run, waits for the rebalance, and
/// checks what every rebalance must hold. `may_move(before, after)` says which database changes
/// a loaded user may make.
async fn rebalance(
    shards: &Shards,
    proxy: &Proxy,
    file: &tempfile::NamedTempFile,
    serving: usize,
    next: &str,
    may_move: fn(usize, usize) -> bool,
) -> Counts {
    let before = placement(shards, serving).await;
    let admin = console(proxy).await;
    assert_eq!(show_rebalance(&admin).await.state, "idle");
    let p = Arc::new(Progress::default());
    let writer = tokio::spawn(writer(proxy.client().await, p.clone()));
    let reader = tokio::spawn(reader(proxy.client().await, p.clone()));
    // The writes must overlap the rebalance, so let the writer get going first.
    // (A writer that stopped on an error makes wait_done return at once, and says so below.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.acked.load(SeqCst) < 20 && !writer.is_finished() {
        assert!(Instant::now() < deadline, "the writer is stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    std::fs::write(file.path(), next).unwrap();
    // RELOAD answers at once, with the rebalance running in the background.
    let changes = rows(&admin, "RELOAD").await;
    let started = changes.iter().any(|r| {
        let result = r[1].as_deref().unwrap_or("");
        r[0].as_deref() == Some("shards") && result.starts_with("rebalance started")
    });
    assert!(started, "{changes:?}");
    let outcome = wait_done(&admin, || !writer.is_finished() && !reader.is_finished()).await;
    if outcome.is_ok() {
        // Writes on the new ring, after the switch, count too.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    p.stop.store(true, SeqCst);
    // The clients' errors first: they say why a rebalance stalled.
    let acked = writer.await.unwrap();
    let acked = acked.unwrap_or_else(|e| panic!("writer: {e}"));
    let reads = reader.await.unwrap();
    let reads = reads.unwrap_or_else(|e| panic!("reader: {e}"));
    let report = outcome.unwrap_or_else(|e| panic!("{e}"));
    let (longest, writes) = (acked.longest, acked.writes);
    eprintln!("{report:?}\nlongest of {writes} writes: {longest:?}; {reads} reads");
    assert!(report.tables >= 2, "users and orders: {report:?}");
    assert!(report.rows_moved > 0, "{report:?}");
    assert!(
        acked.longest < Duration::from_secs(10),
        "writes must only wait briefly"
    );
    assert!(!acked.users.is_empty());
    verify(shards, proxy, &before, &acked, may_move).await
}

/// Reads every database directly: each row exactly once, on the shard the new ring names, no
/// loaded user moved otherwise than `may_move` allows, every acknowledged write present.
async fn verify(
    shards: &Shards,
    proxy: &Proxy,
    before: &HashMap<i64, usize>,
    acked: &Acked,
    may_move: fn(usize, usize) -> bool,
) -> Counts {
    let ring = proxy.ctx.ring.load();
    let home = |key: i64| usize::from(ring.shard_for_key(&Key::Int(key)).0);
    let mut counts = Counts {
        users: vec![0; shards.len()],
        orders: vec![0; shards.len()],
    };
    let mut users: HashMap<i64, usize> = HashMap::new();
    let mut orders: HashMap<(i64, i64), usize> = HashMap::new();
    for i in 0..shards.len() {
        let db = shards.client(i).await;
        // A shard dropped from the config may keep its emptied tables or lose them.
        let sql = "SELECT to_regclass('users') IS NULL AND to_regclass('orders') IS NULL";
        if i >= ring.shard_count() && value(&db, sql).await == "t" {
            continue;
        }
        let found = db.query("SELECT id, balance FROM users", &[]).await;
        for r in found.unwrap() {
            let (id, balance): (i64, i64) = (r.get(0), r.get(1));
            if let Some(other) = users.insert(id, i) {
                panic!("user {id} is on s{other} and on s{i}");
            }
            assert_eq!(home(id), i, "user {id} is on s{i}, not on its shard");
            if let Some(&was) = before.get(&id) {
                assert!(may_move(was, i), "user {id} moved from s{was} to s{i}");
            }
            let bumps = acked.increments.get(&id).copied().unwrap_or(0);
            assert_eq!(balance, bumps, "user {id}'s balance");
            counts.users[i] += 1;
        }
        let found = db.query("SELECT user_id, id FROM orders", &[]).await;
        for r in found.unwrap() {
            let key: (i64, i64) = (r.get(0), r.get(1));
            if let Some(other) = orders.insert(key, i) {
                panic!("order {key:?} is on s{other} and on s{i}");
            }
            assert_eq!(home(key.0), i, "order {key:?} is on s{i}, not by its user");
            counts.orders[i] += 1;
        }
    }
    let want_users: HashSet<i64> = (1..=USERS).chain(acked.users.iter().copied()).collect();
    let want_orders: HashSet<(i64, i64)> = (1..=USERS)
        .flat_map(|u| order_ids(u).map(move |o| (u, o)))
        .chain(acked.orders.iter().map(|u| (*u, 1)))
        .collect();
    same("users", &want_users, users.keys().copied().collect());
    same("orders", &want_orders, orders.keys().copied().collect());
    // The reference table is whole on every shard of the new ring, new ones included.
    let want: Vec<Vec<Option<String>>> = COUNTRIES
        .iter()
        .map(|(c, n)| vec![Some(c.to_string()), Some(n.to_string())])
        .collect();
    for i in 0..ring.shard_count() {
        let db = shards.client(i).await;
        let got = rows(&db, "SELECT code, name FROM countries ORDER BY code").await;
        assert_eq!(got, want, "countries on s{i}");
    }
    let c = proxy.client().await;
    let total = value(&c, "SELECT count(*) FROM users").await;
    assert_eq!(
        total,
        want_users.len().to_string(),
        "count(*) through the proxy"
    );
    counts
}

/// Exactly the acknowledged rows: none lost, none made up.
fn same<T: std::hash::Hash + Eq + std::fmt::Debug>(
    what: &str,
    want: &HashSet<T>,
    found: HashSet<T>,
) {
    let missing: Vec<_> = want.difference(&found).take(10).collect();
    let extra: Vec<_> = found.difference(want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} missing {missing:?}, extra {extra:?}"
    );
}

fn share(counts: &[usize], i: usize) -> f64 {
    counts[i] as f64 / counts.iter().sum::<usize>() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_fourth_shard_moves_a_quarter_onto_it() {
    let shards = Shards::databases(4).await;
    let (proxy, file) = serve(&shards, 3).await;
    // The new shard is an empty database: the rebalance creates the tables there itself.
    let fresh = shards.client(3).await;
    let sql = "SELECT to_regclass('users') IS NULL AND to_regclass('countries') IS NULL";
    assert_eq!(value(&fresh, sql).await, "t");
    let next = config_text(&shards.urls(), &[1, 1, 1, 1]);
    // Rows only leave the old shards for the new one, never for another old shard.
    let counts = rebalance(&shards, &proxy, &file, 3, &next, |was, is| {
        is == was || is == 3
    })
    .await;
    assert_eq!(proxy.ctx.ring.load().names(), ["s0", "s1", "s2", "s3"]);
    let on_new = share(&counts.users, 3);
    assert!(
        (0.15..=0.35).contains(&on_new),
        "s3 holds {on_new:.3} of users: {:?}",
        counts.users
    );
    assert!(counts.orders[3] > 0, "{:?}", counts.orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_shard_drains_it() {
    let shards = Shards::databases(4).await;
    let (proxy, file) = serve(&shards, 4).await;
    let next = config_text(&shards.urls()[..3], &[1, 1, 1]);
    // Only s3's rows move; the other shards keep theirs.
    let counts = rebalance(&shards, &proxy, &file, 4, &next, |was, is| {
        is == was || was == 3
    })
    .await;
    // s3 keeps its id until the proxy restarts, with weight 0: it owns no keys.
    let ring = proxy.ctx.ring.load();
    assert_eq!(ring.names(), ["s0", "s1", "s2", "s3"]);
    assert_eq!(ring.weights(), [1, 1, 1, 0]);
    assert_eq!(ring.shard_count(), 3);
    assert_eq!((counts.users[3], counts.orders[3]), (0, 0), "s3 is drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_change_moves_only_its_share() {
    let shards = Shards::databases(3).await;
    let (proxy, file) = serve(&shards, 3).await;
    let next = config_text(&shards.urls(), &[2, 1, 1]);
    // s0 only gains points on the ring, so rows only move onto it.
    let counts = rebalance(&shards, &proxy, &file, 3, &next, |was, is| {
        is == was || is == 0
    })
    .await;
    assert_eq!(proxy.ctx.ring.load().weights(), [2, 1, 1]);
    let on_s0 = share(&counts.users, 0);
    assert!(
        (0.40..=0.60).contains(&on_s0),
        "s0 holds {on_s0:.3} of users: {:?}",
        counts.users
    );
}
