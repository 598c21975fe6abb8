//! Token-bucket rate limits at the gateway, driven by real clients through the proxy: a flood
//! gets burst + rate × time through and 53400 for the rest on a connection that still works;
//! other users and addresses keep their own buckets; buckets refill; limits reload live.

mod support;

use std::str::FromStr;
use std::time::{Duration, Instant};
use support::proxy::{rows, value, Proxy};
use support::Shards;
use tokio_postgres::{Client, NoTls};

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n[[tables]]\nname = \"orders\"\nshard_key = \"id\"\n";

/// A client of the proxy as `user`, from the source address `from`.
async fn connect(proxy: &Proxy, user: &str, from: &str, db: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(proxy.addr).await.unwrap();
    let config = tokio_postgres::Config::from_str(&format!("user={user} dbname={db}")).unwrap();
    let (client, conn) = config.connect_raw(stream, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `sql` and says whether it passed; anything but success or 53400 fails the test.
async fn attempt(c: &Client, sql: &str) -> bool {
    match c.simple_query(sql).await {
        Ok(_) => true,
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            assert_eq!(db.code().code(), "53400", "{sql}: {}", db.message());
            assert!(
                db.message().starts_with("rate limit exceeded: "),
                "{}",
                db.message()
            );
            false
        }
    }
}

/// Statements sent as fast as one client can for `secs`: (passed, refused, seconds taken, the
/// longest time between two statements' starts).
async fn flood(c: &Client, secs: f64) -> (u32, u32, f64, f64) {
    let began = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    let (mut last, mut longest) = (began, 0f64);
    // Until enough refusals too, so that a slow machine still floods; a fast one passes both.
    while began.elapsed().as_secs_f64() < secs || (refused < 100 && began.elapsed().as_secs() < 10)
    {
        longest = longest.max(last.elapsed().as_secs_f64());
        last = Instant::now();
        if attempt(c, "SELECT 1").await {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    (ok, refused, began.elapsed().as_secs_f64(), longest)
}

/// The next refusal's error.
async fn refusal(c: &Client) -> tokio_postgres::Error {
    for _ in 0..100 {
        if let Err(e) = c.simple_query("SELECT 1").await {
            return e;
        }
    }
    panic!("the bucket never ran dry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_burst_plus_rate_through_and_others_are_untouched() {
    let shards = Shards::databases(2).await;
    let limits = "[[rate_limits]]\nper = \"user\"\nrate = 20\nburst = 10\n";
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{limits}")).await;
    let flooder = connect(&proxy, "flood", "127.0.0.1", "app").await;
    let (ok, refused, secs, longest) = flood(&flooder, 1.5).await;
    let expected = 10.0 + 20.0 * secs;
    println!("flood: {ok} passed, {refused} refused in {secs:.3} s (expected about {expected:.1})");
    assert!(
        f64::from(ok) <= expected + 1.0,
        "{ok} passed, more than burst + rate × {secs:.3} s"
    );
    // A pause longer than the half second that refills the bucket loses what it would add
    // beyond; a loaded machine may pause so.
    let lost = 20.0 * (longest - 0.5).max(0.0);
    assert!(
        f64::from(ok) >= 10.0 + 20.0 * secs * 0.85 - 1.0 - lost,
        "{ok} passed, well under burst + rate × {secs:.3} s (longest pause {longest:.3} s)"
    );
    assert!(refused > 100, "the flood was refused only {refused} times");

    // The same user's bucket is empty: right after the flood, only what refilled since passes
    // (one token per 50 ms; a loaded machine may take that long between two statements).
    let emptied = Instant::now();
    let right_after = passed(&flooder).await;
    let refilled = 20.0 * emptied.elapsed().as_secs_f64();
    assert!(
        f64::from(right_after) <= refilled + 1.0,
        "{right_after} passed right after the flood, {refilled:.1} tokens refilled"
    );
    // Another user's bucket is full; the connection still works.
    let calm = connect(&proxy, "calm", "127.0.0.1", "app").await;
    for _ in 0..10 {
        assert!(attempt(&calm, "SELECT 1").await, "another user was limited");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 600 ms at 20/s: the burst's 10 tokens back (less what rounding takes), then empty again,
    // with what refills while they are spent.
    let began = Instant::now();
    let after = passed(&flooder).await;
    let refilled = 20.0 * began.elapsed().as_secs_f64();
    assert!(
        f64::from(after) >= 9.0 && f64::from(after) <= 10.0 + refilled + 1.0,
        "{after} passed after the pause ({refilled:.1} tokens refilled while they ran)"
    );
    assert_eq!(value(&calm, "SELECT 41 + 1").await, "42");

    // The message names the limit; the hint says when to retry.
    let err = refusal(&flooder).await;
    let db = err.as_db_error().unwrap();
    assert!(
        db.message()
            .contains("user \"flood\" may run 20 statements per second (bursts of 10)"),
        "{}",
        db.message()
    );
    assert!(
        db.hint().unwrap().starts_with("retry in "),
        "{:?}",
        db.hint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_address_has_its_own_bucket() {
    let shards = Shards::databases(2).await;
    let limits = "[[rate_limits]]\nper = \"client_ip\"\nrate = 0.01\nburst = 5\n[[rate_limits.overrides]]\nmatch = \"127.0.0.3/32\"\nrate = 0.01\nburst = 8\n";
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{limits}")).await;
    let one = connect(&proxy, "app", "127.0.0.1", "app").await;
    let one_again = connect(&proxy, "app", "127.0.0.1", "app").await;
    let two = connect(&proxy, "app", "127.0.0.2", "app").await;
    let three = connect(&proxy, "app", "127.0.0.3", "app").await;
    assert_eq!(passed(&one).await, 5);
    // Another connection from the same address shares the empty bucket.
    assert!(!attempt(&one_again, "SELECT 1").await);
    assert_eq!(passed(&two).await, 5, "127.0.0.2 was limited by 127.0.0.1");
    assert_eq!(passed(&three).await, 8, "the override's burst");

    let admin = console(&proxy, "postgres").await;
    let t = rows(&admin, "SHOW LIMITS").await;
    let row = |key: &str| {
        t.iter()
            .find(|r| r[1].as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no row for {key}: {t:?}"))
            .clone()
    };
    assert_eq!(row("127.0.0.1")[0].as_deref(), Some("client_ip"));
    assert_eq!(row("127.0.0.1")[5].as_deref(), Some("5"), "allowed");
    assert_eq!(row("127.0.0.1")[6].as_deref(), Some("2"), "refused");
    assert_eq!(row("127.0.0.1")[7].as_deref(), Some("2"), "sessions");
    assert_eq!(row("127.0.0.3")[3].as_deref(), Some("8"), "burst");
    assert_eq!(row("*")[6].as_deref(), Some("4"), "refused by the rule");
}

/// Statements that pass before the first refusal.
async fn passed(c: &Client) -> u32 {
    let mut n = 0;
    while attempt(c, "SELECT 1").await {
        n += 1;
        assert!(n < 50);
    }
    n
}

/// The admin console as `user`.
async fn console(proxy: &Proxy, user: &str) -> Client {
    connect(proxy, user, "127.0.0.1", "shardgate").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_count_each_statement_and_tables_have_buckets() {
    let shards = Shards::databases(2).await;
    let limits = "[[rate_limits]]\nper = \"user\"\nrate = 0.01\nburst = 6\n[[rate_limits]]\nper = \"table\"\nrate = 0.01\nburst = 100\n[[rate_limits.overrides]]\nmatch = \"Orders\"\nrate = 0.01\nburst = 2\n";
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{limits}")).await;
    let setup = connect(&proxy, "owner", "127.0.0.1", "app").await;
    setup
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY)",
        )
        .await
        .unwrap();
    let c = connect(&proxy, "app", "127.0.0.1", "app").await;
    // Seven statements in one Query: more than the bucket holds, refused whole, nothing ran.
    let seven = "SELECT 1; SELECT 2; SELECT 3; SELECT 4; SELECT 5; SELECT 6; SELECT 7";
    let err = c.simple_query(seven).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53400");
    assert!(db
        .hint()
        .unwrap()
        .contains("more than the bucket holds (6)"));
    // Three statements take three tokens.
    assert!(attempt(&c, "SELECT 1; SELECT 2; SELECT 3").await);
    // Extended protocol, pipelined: each Execute counts. Two orders statements exhaust the
    // orders bucket; the third is refused, and users still has room.
    let stmt = c
        .prepare("SELECT count(*) FROM orders WHERE id = $1")
        .await
        .unwrap();
    let (a, b) = tokio::join!(c.query(&stmt, &[&1i32]), c.query(&stmt, &[&2i32]));
    a.unwrap();
    b.unwrap();
    let third = c.query(&stmt, &[&3i32]).await.unwrap_err();
    let db = third.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53400");
    assert!(
        db.message().contains("table \"orders\""),
        "{}",
        db.message()
    );
    // The refused statement took no token from the user bucket: one is left for users.
    assert!(attempt(&c, "SELECT count(*) FROM users").await);
    assert!(!attempt(&c, "SELECT 1").await, "the user bucket is empty");
    // The orders bucket is the table's, whoever asks.
    assert!(!attempt(&setup, "SELECT count(*) FROM orders").await);
    assert!(attempt(&setup, "SELECT count(*) FROM users").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_reload_without_disconnecting_and_the_console_is_exempt() {
    let shards = Shards::databases(2).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let config = |limits: &str| {
        let mut t = "[proxy]\nlisten = \"127.0.0.1:0\"\npool_size = 4\n".to_owned();
        for (i, url) in shards.urls().iter().enumerate() {
            t.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
        }
        format!("{t}{TABLES}{limits}")
    };
    let tight = "[[rate_limits]]\nper = \"user\"\nrate = 0.01\nburst = 3\n";
    std::fs::write(file.path(), config(tight)).unwrap();
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{tight}")).await;
    proxy
        .ctx
        .config_path
        .set(file.path().to_path_buf())
        .unwrap();
    let c = connect(&proxy, "postgres", "127.0.0.1", "app").await;
    for _ in 0..3 {
        assert!(attempt(&c, "SELECT 1").await);
    }
    assert!(!attempt(&c, "SELECT 1").await);
    // The console, as the same user, is not limited.
    let admin = console(&proxy, "postgres").await;
    for _ in 0..20 {
        rows(&admin, "SHOW LIMITS").await;
    }
    // A reload that adds a rule but leaves this one as it is keeps its bucket, still empty...
    let database = "[[rate_limits]]\nper = \"database\"\nrate = 1000\nburst = 1000\n";
    std::fs::write(file.path(), config(&format!("{tight}{database}"))).unwrap();
    let reloaded = rows(&admin, "RELOAD").await;
    assert!(
        reloaded
            .iter()
            .any(|r| r[0].as_deref() == Some("rate_limits")),
        "{reloaded:?}"
    );
    assert!(!attempt(&c, "SELECT 1").await);
    assert_eq!(
        rows(&admin, "SHOW LIMITS").await.len(),
        4,
        "two rules, two buckets"
    );
    // ...and one that changes it gives the same session a new bucket at its next statement.
    let loose = "[[rate_limits]]\nper = \"user\"\nrate = 0.01\nburst = 50\n";
    std::fs::write(file.path(), config(loose)).unwrap();
    let reloaded = rows(&admin, "RELOAD").await;
    assert!(
        reloaded
            .iter()
            .any(|r| r[0].as_deref() == Some("rate_limits")),
        "{reloaded:?}"
    );
    for _ in 0..10 {
        assert!(attempt(&c, "SELECT 1").await, "the new limit did not apply");
    }
    // Removing every rule lifts the limit.
    std::fs::write(file.path(), config("")).unwrap();
    rows(&admin, "RELOAD").await;
    for _ in 0..100 {
        assert!(attempt(&c, "SELECT 1").await);
    }
    assert!(rows(&admin, "SHOW LIMITS").await.is_empty());
    // A rule added later applies to a session that began with none, through either protocol
    // (each session keeps its own view of the limits, which must follow the reload).
    let late = connect(&proxy, "postgres", "127.0.0.1", "app").await;
    let prepared = late.prepare("SELECT 1").await.unwrap();
    for _ in 0..5 {
        assert!(late.query(&prepared, &[]).await.is_ok());
        assert!(attempt(&late, "SELECT 1").await);
    }
    std::fs::write(file.path(), config(tight)).unwrap();
    rows(&admin, "RELOAD").await;
    for _ in 0..3 {
        assert!(late.query(&prepared, &[]).await.is_ok());
    }
    let e = late.query(&prepared, &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("53400"), "{e}");
    assert!(!attempt(&late, "SELECT 1").await);
}

/// A raw extended-protocol client, so that one batch can hold several Executes and a Flush
/// can split it (drivers' own pipelines vary).
mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
    }

    /// Parse (unnamed), Bind (no parameters), Execute: one statement of a pipeline.
    pub fn statement(out: &mut Vec<u8>, sql: &str) {
        let mut p = vec![0u8];
        p.extend_from_slice(sql.as_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        msg(out, b'P', &p);
        msg(out, b'B', &[0, 0, 0, 0, 0, 0, 0, 0]);
        msg(out, b'E', &[0, 0, 0, 0, 0]);
    }

    pub fn flush(out: &mut Vec<u8>) {
        msg(out, b'H', &[]);
    }

    pub fn sync(out: &mut Vec<u8>) {
        msg(out, b'S', &[]);
    }

    pub async fn connect(addr: std::net::SocketAddr, user: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for part in ["user", user, "database", "app", ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        s.write_all(&packet).await.unwrap();
        read_until(&mut s, b"Z").await;
        s
    }

    /// The messages read up to one of `ends` (tag, and the SQLSTATE of errors).
    pub async fn read_until(s: &mut TcpStream, ends: &[u8]) -> Vec<(u8, String)> {
        let mut seen = Vec::new();
        loop {
            let tag = s.read_u8().await.unwrap();
            let len = s.read_i32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            s.read_exact(&mut body).await.unwrap();
            let code = match tag {
                b'E' => body
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            seen.push((tag, code));
            if ends.contains(&tag) {
                return seen;
            }
        }
    }

    pub async fn send(s: &mut TcpStream, bytes: &[u8]) {
        s.write_all(bytes).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_counts_every_execute_and_a_refusal_after_a_flush_commits_nothing() {
    let shards = Shards::databases(2).await;
    let limits = "[[rate_limits]]\nper = \"user\"\nrate = 0.01\nburst = 2\n";
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{limits}")).await;
    let setup = connect(&proxy, "owner", "127.0.0.1", "app").await;
    setup
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY)")
        .await
        .unwrap();
    let on_shards = |id: i32| {
        let shards = &shards;
        async move {
            let sql = format!("SELECT count(*) FROM users WHERE id = {id}");
            shards.scalar_each(&sql).await.iter().sum::<i64>()
        }
    };

    // Three Executes before one Sync need three tokens: refused whole, nothing inserted.
    let mut s = raw::connect(proxy.addr, "piper").await;
    let mut out = Vec::new();
    for id in [101, 102, 103] {
        raw::statement(&mut out, &format!("INSERT INTO users VALUES ({id})"));
    }
    raw::sync(&mut out);
    raw::send(&mut s, &out).await;
    let seen = raw::read_until(&mut s, b"Z").await;
    assert_eq!(seen[0], (b'E', "53400".into()), "{seen:?}");
    for id in [101, 102, 103] {
        assert_eq!(on_shards(id).await, 0);
    }

    // One Execute, then Flush: it runs (a token taken), its transaction left open to the Sync.
    let mut s = raw::connect(proxy.addr, "flusher").await;
    let mut out = Vec::new();
    raw::statement(&mut out, "INSERT INTO users VALUES (201)");
    raw::flush(&mut out);
    raw::send(&mut s, &out).await;
    let seen = raw::read_until(&mut s, b"CE").await;
    assert_eq!(seen.last().unwrap().0, b'C', "{seen:?}");
    // Two more before the Sync: one token is left, so this part is refused, and the first
    // part, which the client now takes for failed, must not commit at the Sync.
    let mut out = Vec::new();
    raw::statement(&mut out, "INSERT INTO users VALUES (202)");
    raw::statement(&mut out, "INSERT INTO users VALUES (203)");
    raw::sync(&mut out);
    raw::send(&mut s, &out).await;
    let seen = raw::read_until(&mut s, b"Z").await;
    assert!(seen.contains(&(b'E', "53400".into())), "{seen:?}");
    // The connection still works: a lone statement takes the last token (and would commit
    // the first part, were it still open on its shard).
    let mut out = Vec::new();
    raw::statement(&mut out, "SELECT 1");
    raw::sync(&mut out);
    raw::send(&mut s, &out).await;
    let seen = raw::read_until(&mut s, b"Z").await;
    assert!(seen.iter().all(|(t, _)| *t != b'E'), "{seen:?}");
    for id in [201, 202, 203] {
        assert_eq!(on_shards(id).await, 0, "row {id} was committed");
    }
}
