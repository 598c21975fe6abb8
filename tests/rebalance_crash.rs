//! A rebalance cut short by the death of the proxy running it (the `shardgate` binary, killed at
//! a failpoint of its switch), then a restart: no row is ever visible twice, the restart rolls
//! the switch back or finishes it as the placement journal says, and every row ends up exactly
//! once on the shard the new ring names. Also a second proxy that did not run the rebalance:
//! its client sees only retryable errors during the switch, loses nothing, and the proxy then
//! routes by the new ring.

mod support;

use rand::{Rng, SeedableRng};
use shardgate::config::Config;
use shardgate::ring::{Key, Ring};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::proxy::{eventually, rows, try_rows, value};
use support::Shards;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

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
const SCHEMA: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, name text, balance bigint NOT NULL DEFAULT 0);
    CREATE TABLE orders (id bigint, user_id bigint NOT NULL, amount bigint, PRIMARY KEY (user_id, id));
    CREATE TABLE countries (code text PRIMARY KEY, name text)";
const COUNTRIES: [(&str, &str); 3] = [("fr", "France"), ("jp", "Japan"), ("pe", "Peru")];
/// Users loaded before the rebalance, ids 1..=USERS, each with orders 1 and 2.
const USERS: i64 = 3000;
/// The writer's users start here, far above the loaded ones.
const FIRST_NEW: i64 = 100_000;
/// The switch's prepared transactions (src/rebalance/journal.rs).
const GID_PREFIX: &str = "shardgate_rb_";
const PREPARED: &str = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()";

/// A shardgate process, killed when dropped so a failing test leaves none behind.
struct Running {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Running {
    /// Its log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the shardgate binary on `config` and waits until it accepts connections.
async fn spawn_proxy(config: &Path, port: u16, failpoint: Option<&str>, log: PathBuf) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    cmd.arg("--config").arg(config).stdin(Stdio::null());
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"));
    match failpoint {
        Some(f) => cmd.env("SHARDGATE_FAILPOINT", f),
        None => cmd.env_remove("SHARDGATE_FAILPOINT"),
    };
    let child = cmd.spawn().expect("shardgate starts");
    let running = Running { child, port, log };
    // A restart reads the journal and finishes an interrupted switch before it listens.
    let up = eventually(30, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "shardgate did not start:\n{}", running.log());
    running
}

/// A config file's text: shards s0, s1, ... on `urls`, served on `port`.
fn config_text(port: u16, urls: &[String]) -> String {
    // Small steps: the crash hits the first of several, so a restart after the decision finds
    // an intermediate placement in force and must go on from there.
    let mut toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\npool_size = 8\nrebalance_step_rows = 500\n"
    );
    for (i, url) in urls.iter().enumerate() {
        toml.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
    }
    toml.push_str(TABLES);
    toml
}

/// The ring a config file names, built as the proxy builds it: ShardId(i) is database i.
fn ring_of(config: &Path) -> Ring {
    let parsed = Config::load(config).unwrap();
    Ring::new(&parsed.shards, parsed.proxy.vnodes)
}

/// A client of the proxy on `port`: database `app` for SQL, `shardgate` for its console.
async fn connect(port: u16, db: &str) -> Result<Client, tokio_postgres::Error> {
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname={db} connect_timeout=10");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The schema and the data, through the proxy.
async fn load(port: u16) {
    let c = connect(port, "app").await.unwrap();
    c.batch_execute(SCHEMA).await.unwrap();
    let countries = COUNTRIES.map(|(code, name)| format!("('{code}', '{name}')"));
    let sql = format!("INSERT INTO countries VALUES {}", countries.join(", "));
    c.batch_execute(&sql).await.unwrap();
    for first in (1..=USERS).step_by(500) {
        let ids = first..first + 500;
        let users: Vec<String> = ids.clone().map(|id| format!("({id}, 'u{id}')")).collect();
        let orders: Vec<String> = ids
            .flat_map(|u| (1..=2).map(move |o| format!("({o}, {u}, {})", u * o)))
            .collect();
        let (users, orders) = (users.join(", "), orders.join(", "));
        let sql = format!("INSERT INTO users (id, name) VALUES {users}; INSERT INTO orders (id, user_id, amount) VALUES {orders}");
        c.batch_execute(&sql).await.unwrap();
    }
}

/// SHOW REBALANCE's one row, by column name.
async fn show_rebalance(admin: &Client) -> BTreeMap<String, String> {
    let msgs = admin.simple_query("SHOW REBALANCE").await;
    let msgs = msgs.unwrap_or_else(|e| panic!("SHOW REBALANCE: {e}"));
    let mut found = msgs.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let r = found.next().expect("SHOW REBALANCE returns a row");
    let columns = r.columns().iter().enumerate();
    columns
        .map(|(i, c)| (c.name().to_owned(), r.get(i).unwrap_or("").to_owned()))
        .collect()
}

/// Every database's prepared transactions.
async fn prepared(shards: &Shards) -> Vec<String> {
    let mut gids = Vec::new();
    for i in 0..shards.len() {
        for r in shards.client(i).await.query(PREPARED, &[]).await.unwrap() {
            gids.push(r.get(0));
        }
    }
    gids
}

/// Polls the proxy's SHOW REBALANCE until its state is one of `states` and no database holds a
/// prepared transaction; an error on `failed`, after 120 s, or once `alive` turns false (the
/// client's own error then says why).
async fn settle(
    shards: &Shards,
    proxy: &Running,
    states: &[&str],
    alive: impl Fn() -> bool,
) -> Result<BTreeMap<String, String>, String> {
    let admin = connect(proxy.port, "shardgate").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = show_rebalance(&admin).await;
        let left = prepared(shards).await;
        match r["state"].as_str() {
            "failed" => return Err(format!("{r:?}\n{}", proxy.log())),
            s if states.contains(&s) && left.is_empty() => return Ok(r),
            _ if !alive() => return Err(format!("a client stopped early during {r:?}")),
            _ if Instant::now() > deadline => {
                let log = proxy.log();
                return Err(format!("after 120 s: {r:?}, {left:?}\n{log}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

type Keys = HashSet<(i64, i64)>;
type Stored = HashMap<(i64, i64), (usize, i64)>;

/// Rows as (a, b) → (database, v), from `sql` returning bigints a, b, v, read straight from
/// every database that has `table` (the new one has no tables until the rebalance creates them).
/// A row visible on two databases fails at once.
async fn stored(shards: &Shards, table: &str, sql: &str) -> Stored {
    let mut found = HashMap::new();
    for i in 0..shards.len() {
        let db = shards.client(i).await;
        if value(&db, &format!("SELECT to_regclass('{table}') IS NULL")).await == "t" {
            continue;
        }
        for r in db.query(sql, &[]).await.unwrap() {
            let key: (i64, i64) = (r.get(0), r.get(1));
            if let Some((other, _)) = found.insert(key, (i, r.get(2))) {
                panic!("{table} {key:?} is visible on shard_{other} and on shard_{i}");
            }
        }
    }
    found
}

const USERS_SQL: &str = "SELECT id, 0::bigint, balance FROM users";
const ORDERS_SQL: &str = "SELECT user_id, id, amount FROM orders";

/// Exactly the expected rows: none lost, none made up.
fn same(what: &str, want: &Keys, found: &Stored) {
    let found: Keys = found.keys().copied().collect();
    let missing: Vec<_> = want.difference(&found).take(10).collect();
    let extra: Vec<_> = found.difference(want).take(10).collect();
    let ok = missing.is_empty() && extra.is_empty();
    assert!(ok, "{what} missing {missing:?}, extra {extra:?}");
}

/// The loaded users' and orders' keys, and the new users'.
fn wanted(new_users: &[i64]) -> (Keys, Keys) {
    let users = (1..=USERS).chain(new_users.iter().copied());
    let orders = (1..=USERS).flat_map(|u| [(u, 1), (u, 2)]);
    (users.map(|u| (u, 0)).collect(), orders.collect())
}

/// Every loaded row and every one of `new_users` visible exactly once, with its acknowledged
/// balance; given a ring, each on the shard it names.
async fn exactly_once(shards: &Shards, ring: Option<&Ring>, new: &[i64], bal: &HashMap<i64, i64>) {
    let home = |key: i64| ring.map(|r| usize::from(r.shard_for_key(&Key::Int(key)).0));
    let users = stored(shards, "users", USERS_SQL).await;
    let orders = stored(shards, "orders", ORDERS_SQL).await;
    for (&(id, _), &(at, balance)) in &users {
        let ok = home(id).is_none_or(|h| h == at);
        assert!(ok, "user {id} is on shard_{at}, not on its shard");
        let bumps = bal.get(&id).copied().unwrap_or(0);
        assert_eq!(balance, bumps, "user {id}'s balance");
    }
    for (&(user, id), &(at, amount)) in &orders {
        let ok = home(user).is_none_or(|h| h == at);
        assert!(ok, "order {id} of {user} is on shard_{at}, not by its user");
        assert_eq!(amount, user * id, "order {id} of {user}");
    }
    let (want_users, want_orders) = wanted(new);
    same("users", &want_users, &users);
    same("orders", &want_orders, &orders);
}

/// All rows as `exactly_once` says, each on the shard `ring` names; the reference table whole
/// on every shard; no prepared transaction left.
async fn verify(shards: &Shards, ring: &Ring, new_users: &[i64], balances: &HashMap<i64, i64>) {
    exactly_once(shards, Some(ring), new_users, balances).await;
    let want = COUNTRIES.map(|(c, n)| vec![Some(c.to_owned()), Some(n.to_owned())]);
    for i in 0..ring.shard_count() {
        let db = shards.client(i).await;
        let got = rows(&db, "SELECT code, name FROM countries ORDER BY code").await;
        assert_eq!(got, want, "countries on shard_{i}");
    }
    assert_eq!(prepared(shards).await, Vec::<String>::new());
}

/// Loads the data through a proxy over 3 databases running with `failpoint`, RELOADs a config
/// with the 4th, waits for the process to kill itself in the switch, restarts it without the
/// failpoint, and waits for SHOW REBALANCE to say one of `states` with no prepared transaction
/// left: then every row is on the 4-shard ring's shard.
async fn crash_and_restart(failpoint: &str, states: &[&str]) {
    let shards = Shards::databases(4).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, config) = (free_port(), dir.path().join("shards.toml"));
    std::fs::write(&config, config_text(port, &shards.urls()[..3])).unwrap();
    let log = dir.path().join("first.log");
    let mut first = spawn_proxy(&config, port, Some(failpoint), log).await;
    load(port).await;
    std::fs::write(&config, config_text(port, &shards.urls())).unwrap();
    let admin = connect(port, "shardgate").await.unwrap();
    // RELOAD answers before the switch; should the process die first, the lost connection
    // says nothing. A refusal, though, means no rebalance started.
    let reload = try_rows(&admin, "RELOAD").await;
    eprintln!("RELOAD: {reload:?}");
    let refused = reload.as_ref().err().and_then(|e| e.as_db_error());
    assert!(refused.is_none(), "RELOAD was refused: {refused:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = first.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "not killed:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = first.log();
    let at = log.contains(&format!("failpoint {failpoint}"));
    assert!(at && status.signal() == Some(9), "{status:?}\n{log}");
    // Each row stays visible exactly once: the prepared parts are not, until committed.
    exactly_once(&shards, None, &[], &HashMap::new()).await;
    let gids = prepared(&shards).await;
    eprintln!("left prepared: {gids:?}");
    assert!(!gids.is_empty(), "the switch's parts were prepared");
    assert!(gids.iter().all(|g| g.starts_with(GID_PREFIX)), "{gids:?}");
    let second = spawn_proxy(&config, port, None, dir.path().join("second.log")).await;
    let report = settle(&shards, &second, states, || true).await;
    eprintln!("{:?}", report.unwrap_or_else(|e| panic!("{e}")));
    verify(&shards, &ring_of(&config), &[], &HashMap::new()).await;
    count_through(&second, USERS).await;
}

/// What the proxy serves: every user, once.
async fn count_through(proxy: &Running, users: i64) {
    let c = connect(proxy.port, "app").await.unwrap();
    let n = value(&c, "SELECT count(*) FROM users").await;
    assert_eq!(n, users.to_string(), "count(*) through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_decision_rolls_back_then_the_restart_rebalances() {
    // Nothing was decided: the restart rolls the switch back, serves the 3 shards the rows are
    // on, and rebalances to its file's 4 by itself.
    crash_and_restart("rebalance-prepared", &["done"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_decision_finishes_at_restart() {
    // Decided: the restart commits every prepared part; there is nothing left to move.
    crash_and_restart("rebalance-decided", &["idle", "done"]).await;
}

/// Runs `sql` through the other proxy until it succeeds or fails otherwise than with 40001 or
/// 08006, counting the retries by SQLSTATE. Also says whether an attempt ended in 08006: its
/// write may have committed all the same.
async fn retried(
    c: &Client,
    retries: &mut BTreeMap<String, u64>,
    sql: &str,
) -> (Result<Vec<SimpleQueryMessage>, String>, bool) {
    let (deadline, mut maybe) = (Instant::now() + Duration::from_secs(60), false);
    loop {
        let e = match c.simple_query(sql).await {
            Ok(msgs) => return (Ok(msgs), maybe),
            Err(e) => e,
        };
        let code = e.code().map(|s| s.code());
        if !matches!(code, Some("40001" | "08006")) || Instant::now() > deadline {
            return (Err(format!("{code:?}: {sql}: {e}")), maybe);
        }
        *retries.entry(code.unwrap().to_owned()).or_default() += 1;
        maybe |= code == Some("08006");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn affected(msgs: &[SimpleQueryMessage]) -> Option<u64> {
    msgs.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    })
}

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

/// What the writer was told had committed, and the retries it took.
#[derive(Default)]
struct Acked {
    users: Vec<i64>,
    balances: HashMap<i64, i64>,
    retries: BTreeMap<String, u64>,
}

/// Inserts users with increasing ids and bumps random users' balances through the proxy on
/// `port` until told to stop. Each bump names the balance it expects, so a lost or misrouted
/// update fails at once, and a retry of one that was cut off yet committed cannot count twice.
async fn writer(port: u16, stop: Arc<AtomicBool>, count: Arc<AtomicI64>) -> Result<Acked, String> {
    let c = connect(port, "app").await.map_err(|e| e.to_string())?;
    let mut acked = Acked::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for id in FIRST_NEW.. {
        if stop.load(SeqCst) {
            break;
        }
        let sql = format!("INSERT INTO users (id, name) VALUES ({id}, 'w{id}')");
        match retried(&c, &mut acked.retries, &sql).await {
            (Ok(_), _) => {}
            // An attempt cut off by 08006 had committed: its retry finds the row.
            (Err(e), true) if e.starts_with(r#"Some("23505")"#) => {}
            (Err(e), _) => return Err(e),
        }
        acked.users.push(id);
        count.fetch_add(1, SeqCst);
        for _ in 0..3 {
            // Loaded and new users alike, so rows that move get updated too.
            let k = rng.random_range(0..USERS + acked.users.len() as i64);
            let user = if k < USERS {
                k + 1
            } else {
                acked.users[(k - USERS) as usize]
            };
            let was = acked.balances.get(&user).copied().unwrap_or(0);
            let sql = format!(
                "UPDATE users SET balance = balance + 1 WHERE id = {user} AND balance = {was}"
            );
            let (result, maybe) = retried(&c, &mut acked.retries, &sql).await;
            let n = affected(&result?);
            if n == Some(0) && maybe {
                // Cut off yet committed, or lost: the balance tells.
                let sql = format!("SELECT balance FROM users WHERE id = {user}");
                let now = first_value(&retried(&c, &mut acked.retries, &sql).await.0?);
                if now != Some((was + 1).to_string()) {
                    return Err(format!("user {user}: balance {now:?}, acked {was}"));
                }
            } else if n != Some(1) {
                return Err(format!("{sql} changed {n:?} rows: lost or misrouted"));
            }
            *acked.balances.entry(user).or_insert(0) += 1;
        }
    }
    Ok(acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_agree_on_placement() {
    let shards = Shards::databases(4).await;
    let dir = tempfile::tempdir().unwrap();
    let port_b = free_port();
    let port_a = std::iter::repeat_with(free_port)
        .find(|p| *p != port_b)
        .unwrap();
    // Each proxy has its own file; B's is never edited, so B can only learn of the new
    // placement from the shards' journal.
    let (file_a, file_b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    std::fs::write(&file_a, config_text(port_a, &shards.urls()[..3])).unwrap();
    std::fs::write(&file_b, config_text(port_b, &shards.urls()[..3])).unwrap();
    let b = spawn_proxy(&file_b, port_b, None, dir.path().join("b.log")).await;
    let a = spawn_proxy(&file_a, port_a, None, dir.path().join("a.log")).await;
    load(port_a).await;

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicI64::new(0));
    let writing = tokio::spawn(writer(port_b, stop.clone(), count.clone()));
    // The writes must overlap the rebalance, so let the writer get going first.
    let going = || async { count.load(SeqCst) >= 20 || writing.is_finished() };
    let going = eventually(30, going).await && !writing.is_finished();
    assert!(going, "the writer is stuck or stopped");
    std::fs::write(&file_a, config_text(port_a, &shards.urls())).unwrap();
    let admin_a = connect(port_a, "shardgate").await.unwrap();
    let changes = rows(&admin_a, "RELOAD").await;
    let started = changes.iter().any(|r| {
        let result = r[1].as_deref().unwrap_or("");
        r[0].as_deref() == Some("shards") && result.starts_with("rebalance started")
    });
    assert!(started, "{changes:?}");
    let outcome = settle(&shards, &a, &["done"], || !writing.is_finished()).await;
    let mut more = true;
    if outcome.is_ok() {
        // Writes through B after the switch count too: two more seconds, and a few at least.
        let at_switch = count.load(SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = || async { count.load(SeqCst) >= at_switch + 10 || writing.is_finished() };
        more = eventually(30, after).await;
    }
    stop.store(true, SeqCst);
    // The writer's error first: it says why a rebalance stalled.
    let written = tokio::time::timeout(Duration::from_secs(90), writing).await;
    let written = written.unwrap_or_else(|_| panic!("the writer hangs:\n{}", b.log()));
    let written = written
        .unwrap()
        .map_err(|e| format!("writer: {e}\n{}", b.log()));
    let mut acked = written.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{:?}", outcome.unwrap_or_else(|e| panic!("{e}")));
    assert!(more, "B wrote nothing after the switch");
    let bumps: i64 = acked.balances.values().sum();
    let (users, retries) = (acked.users.len(), &acked.retries);
    eprintln!("{users} users and {bumps} bumps acknowledged; retried {retries:?}");
    let ring = ring_of(&file_a);
    verify(&shards, &ring, &acked.users, &acked.balances).await;

    // B routes by the new ring once it has read the journal.
    let admin_b = connect(port_b, "shardgate").await.unwrap();
    let names = || async {
        let shards = rows(&admin_b, "SHOW SHARDS").await;
        shards
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect::<Vec<_>>()
    };
    let want = ["s0", "s1", "s2", "s3"].map(|s| Some(s.to_owned()));
    let adopted = eventually(10, || async { names().await == want }).await;
    assert!(adopted, "B's SHOW SHARDS: {:?}\n{}", names().await, b.log());
    count_through(&b, USERS + users as i64).await;
    // The new users, and the loaded ones now on the new shard: found only by the new ring.
    let c = connect(port_b, "app").await.unwrap();
    let moved = (1..=USERS).filter(|u| ring.shard_for_key(&Key::Int(*u)).0 == 3);
    let named = acked.users.iter().map(|u| (*u, format!("w{u}")));
    for (id, name) in named.chain(moved.map(|u| (u, format!("u{u}")))) {
        let sql = format!("SELECT name FROM users WHERE id = {id}");
        let found = retried(&c, &mut acked.retries, &sql).await.0;
        let found = found.unwrap_or_else(|e| panic!("through B: {e}"));
        assert_eq!(first_value(&found), Some(name), "user {id} through B");
    }
}
