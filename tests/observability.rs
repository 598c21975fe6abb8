//! Observability through a real proxy over real shards: hot keys and skew from a skewed and a
//! uniform workload, the admin console's commands, its access rule, `/metrics`, and `shardgate top`.

mod support;

use shardgate::ring::Key;
use support::proxy::{rows, try_rows, Proxy};
use support::Shards;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "countries"
reference = true
"#;

async fn setup(extra: &str) -> (Shards, Proxy) {
    let shards = Shards::databases(3).await;
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{extra}")).await;
    let c = proxy.client().await;
    c.batch_execute(
        "CREATE TABLE users (id bigint PRIMARY KEY, name text);
         CREATE TABLE countries (code text PRIMARY KEY, name text);
         INSERT INTO countries VALUES ('fr', 'France')",
    )
    .await
    .expect("schema through the proxy");
    (shards, proxy)
}

async fn console_as(proxy: &Proxy, user: &str) -> Result<Client, tokio_postgres::Error> {
    let url = format!(
        "host=127.0.0.1 port={} user={user} dbname=shardgate connect_timeout=10",
        proxy.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn console(proxy: &Proxy) -> Client {
    console_as(proxy, "postgres").await.expect("console")
}

/// Rows of a console command as (column name → value) maps.
async fn show(c: &Client, sql: &str) -> Vec<std::collections::HashMap<String, String>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_owned(), r.get(i).unwrap_or("").to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// `n` statements on users: a share `hot_share` of them on key `hot`, the rest spread over
/// 1..=spread; half through the simple protocol, half bound as parameters.
async fn workload(c: &Client, n: usize, hot: i64, hot_share: f64, spread: i64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let stmt = c
        .prepare("SELECT name FROM users WHERE id = $1")
        .await
        .unwrap();
    for i in 0..n {
        let key = if rng.random_bool(hot_share) {
            hot
        } else {
            rng.random_range(1..=spread)
        };
        if i % 2 == 0 {
            rows(c, &format!("SELECT name FROM users WHERE id = {key}")).await;
        } else {
            c.query(&stmt, &[&key]).await.unwrap();
        }
    }
}

async fn load_users(c: &Client, n: i64) {
    // One multi-row INSERT split by the proxy: each row's key is counted once.
    let values: Vec<String> = (1..=n).map(|i| format!("({i}, 'u{i}')")).collect();
    c.batch_execute(&format!("INSERT INTO users VALUES {}", values.join(", ")))
        .await
        .unwrap();
}

/// The shard (by name) that physically holds users.id = key, asked of each shard directly.
async fn holder(shards: &Shards, key: i64) -> String {
    let counts = shards
        .scalar_each(&format!("SELECT count(*) FROM users WHERE id = {key}"))
        .await;
    let i = counts.iter().position(|&n| n == 1).expect("the row exists");
    assert_eq!(counts.iter().sum::<i64>(), 1, "exactly one copy");
    format!("s{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_named_first_and_its_shard_is_flagged() {
    let (shards, proxy) = setup("").await;
    let c = proxy.client().await;
    load_users(&c, 500).await;
    workload(&c, 3000, 42, 0.3, 500).await;
    proxy.ctx.stats.tick(&proxy.ctx.ring.load());

    let admin = console(&proxy).await;
    let hot = show(&admin, "SHOW HOTSPOTS").await;
    let home = holder(&shards, 42).await;
    let first = &hot[0];
    assert_eq!(first["table"], "users", "{hot:?}");
    assert_eq!(first["key"], "42", "{hot:?}");
    assert_eq!(first["shard"], home, "the shard that holds the row");
    let share: f64 = first["share"].parse().unwrap();
    // 30% of 3000 statements, among 3500 keyed ones (the 500 inserted rows included).
    assert!((22.0..=35.0).contains(&share), "share {share}");
    let second: f64 = hot[1]["hits"].parse().unwrap();
    let hits: f64 = first["hits"].parse().unwrap();
    assert!(hits > 10.0 * second, "{hot:?}");

    let shards_view = show(&admin, "SHOW SHARDS").await;
    assert_eq!(shards_view.len(), 3);
    for s in &shards_view {
        let flagged = s["skewed"] == "t";
        assert_eq!(flagged, s["name"] == home, "{shards_view:?}");
        if flagged {
            assert!(s["why"].starts_with("traffic "), "{}", s["why"]);
            assert!(s["why"].contains("hot keys: users 42 ("), "{}", s["why"]);
        }
        assert!(s["queries"].parse::<u64>().unwrap() > 500, "{s:?}");
        assert!(!s["p50_ms"].is_empty() && !s["p99_ms"].is_empty(), "{s:?}");
        assert_eq!(s["state"], "up");
    }
    let share: f64 = shards_view
        .iter()
        .map(|s| s["share"].parse::<f64>().unwrap())
        .sum();
    assert!(
        (share - 100.0).abs() < 0.5,
        "shares add up to 100%: {share}"
    );

    // The same verdict reaches Prometheus as a gauge.
    let ctx = proxy.ctx.clone();
    let text = shardgate::admin::metrics::render(&ctx);
    for i in 0..3 {
        let want = u8::from(format!("s{i}") == home);
        let line = format!("shardgate_shard_skewed{{shard=\"s{i}\"}} {want}\n");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains(&format!(
        "shardgate_hot_key_hits{{table=\"users\",key=\"42\",shard=\"{home}\"}}"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uniform_workload_flags_nothing() {
    let (_shards, proxy) = setup("").await;
    let c = proxy.client().await;
    load_users(&c, 1000).await;
    workload(&c, 3000, 1, 0.0, 1000).await;
    proxy.ctx.stats.tick(&proxy.ctx.ring.load());
    let admin = console(&proxy).await;
    let view = show(&admin, "SHOW SHARDS").await;
    for s in &view {
        assert_eq!(s["skewed"], "f", "{view:?}");
        let share: f64 = s["share"].parse().unwrap();
        assert!((20.0..=46.0).contains(&share), "{view:?}");
    }
    let hot = show(&admin, "SHOW HOTSPOTS 5").await;
    assert_eq!(hot.len(), 5);
    let top: f64 = hot[0]["share"].parse().unwrap();
    assert!(top < 2.0, "no key stands out: {hot:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_every_command_and_survives_bad_input() {
    let (shards, proxy) = setup("").await;
    let c = proxy.client().await;
    load_users(&c, 50).await;
    rows(&c, "SELECT count(*) FROM users").await;
    rows(&c, "SELECT * FROM countries").await;
    rows(
        &c,
        "SELECT name FROM users WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9)",
    )
    .await;
    let (a, b) = proxy.keys_on_two_shards();
    rows(
        &c,
        &format!("SELECT name FROM users WHERE id IN ({a}, {b})"),
    )
    .await;
    rows(&c, "SELECT name FROM users WHERE id = 1").await;
    let admin = console(&proxy).await;

    let stats = show(&admin, "show stats;").await;
    let scope = |name: &str| {
        stats
            .iter()
            .find(|r| r["scope"] == name)
            .unwrap_or_else(|| panic!("{name} in {stats:?}"))
            .clone()
    };
    assert!(scope("route all")["statements"].parse::<u64>().unwrap() >= 2);
    assert!(scope("route single")["statements"].parse::<u64>().unwrap() >= 1);
    assert!(scope("route multi")["statements"].parse::<u64>().unwrap() >= 1);
    assert_eq!(
        scope("table users")["keys"],
        "62",
        "50 inserted + 9 + 2 in IN (...) + 1"
    );
    assert!(
        scope("table countries")["statements"]
            .parse::<u64>()
            .unwrap()
            >= 2
    );
    assert!(!scope("total")["p99_ms"].is_empty());

    let pools = show(&admin, "SHOW POOLS").await;
    assert_eq!(pools.len(), 3);
    assert!(pools.iter().all(|p| p["max"] == "8" && p["state"] == "up"));

    let clients = show(&admin, "SHOW CLIENTS").await;
    assert!(
        clients.iter().any(|r| r["database"] == "app"),
        "{clients:?}"
    );
    assert!(clients.iter().any(|r| r["database"] == "shardgate"));

    let ring = show(&admin, "SHOW RING").await;
    let total: f64 = ring
        .iter()
        .map(|r| r["keyspace_share"].parse::<f64>().unwrap())
        .sum();
    assert!((total - 100.0).abs() < 0.5, "{ring:?}");

    let config = show(&admin, "SHOW CONFIG").await;
    let get = |k: &str| {
        config
            .iter()
            .find(|r| r["key"] == k)
            .map(|r| r["value"].clone())
    };
    assert_eq!(get("tables.users").as_deref(), Some("sharded by id (int)"));
    assert_eq!(get("stats.skew_factor").as_deref(), Some("1.25"));

    let route = show(&admin, "SHOW ROUTE SELECT * FROM users WHERE id = 7").await;
    assert_eq!(route[0]["route"], holder(&shards, 7).await);
    assert!(route[0]["why"].contains("shard key = 7"));
    let refused = show(
        &admin,
        "SHOW ROUTE SELECT * FROM users u JOIN users v ON u.name = v.name",
    )
    .await;
    assert_eq!(refused[0]["route"], "refused");
    assert!(refused[0]["why"].contains("0A000"), "{refused:?}");

    // Bad input: a proper error, and the console goes on.
    let err = admin.simple_query("SHOW NONSENSE").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42601");
    let message = err.as_db_error().unwrap().message();
    assert!(message.contains("SHOW HOTSPOTS"), "{message}");
    let err = admin.query("SHOW SHARDS", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000", "{err}");
    let err = admin.simple_query("SHOW HOTSPOTS 0").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42601");
    assert_eq!(show(&admin, "SHOW HELP").await.len(), 13);
    assert_eq!(show(&admin, "SHOW SHARDS").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_users_reach_the_console_when_auth_is_configured() {
    let extra = "[auth]\nmethod = \"trust\"\nadmin_users = [\"ops\"]\n";
    let (_shards, proxy) = setup(extra).await;
    let Err(err) = console_as(&proxy, "postgres").await else {
        panic!("a user not in admin_users reached the console");
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "28000", "{err}");
    let ops = console_as(&proxy, "ops")
        .await
        .expect("an admin user gets in");
    assert_eq!(show(&ops, "SHOW POOLS").await.len(), 3);
    // The application database is not affected.
    let c = proxy.client().await;
    assert_eq!(try_rows(&c, "SELECT 1").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text_format() {
    let (_shards, proxy) = setup("[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let c = proxy.client().await;
    load_users(&c, 100).await;
    workload(&c, 200, 3, 0.5, 100).await;
    let addr = *proxy
        .ctx
        .metrics_addr
        .get()
        .expect("metrics listener bound");
    let (status, body) = http_get(addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut families = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    let mut current = String::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(name.starts_with("shardgate_"), "{line}");
            let kind = parts.next().unwrap();
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counters end in _total: {line}");
            }
            assert!(
                families.insert(name.to_owned()),
                "one # TYPE per family: {line}"
            );
            current = name.to_owned();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let id = line.rsplit_once(' ').unwrap().0;
        assert!(
            series.insert(id.to_owned()),
            "a series appears once: {line}"
        );
        // name{labels} value: the value parses as a float.
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "sample value: {line}"
        );
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            name == current || family == current,
            "a family's samples follow its own # TYPE, together: {line}"
        );
    }
    let sample = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let total: f64 = (0..3)
        .map(|i| sample(&format!("shardgate_shard_queries_total{{shard=\"s{i}\"}}")))
        .sum();
    assert!(total >= 200.0, "{total}");
    assert!(sample("shardgate_statements_total{route=\"single\"}") >= 200.0);
    // Histogram buckets are cumulative and end with +Inf = count.
    let buckets: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("shardgate_shard_request_duration_seconds_bucket{shard=\"s0\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.len() > 10);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(
        *buckets.last().unwrap(),
        sample("shardgate_shard_request_duration_seconds_count{shard=\"s0\"}")
    );
    let key = Key::Int(3);
    let home = proxy.ctx.ring.load().shard_for_key(&key);
    let name = proxy.ctx.ring.load().shard_name(home).to_owned();
    assert!(body.contains(&format!(
        "shardgate_hot_key_share{{table=\"users\",key=\"3\",shard=\"{name}\"}}"
    )));
    let (status, _) = http_get(addr, "/other").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shardgate_top_draws_shards_and_hot_keys() {
    let (_shards, proxy) = setup("").await;
    let c = proxy.client().await;
    load_users(&c, 100).await;
    workload(&c, 300, 9, 0.5, 100).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["top", "--port", &proxy.addr.port().to_string()])
        .args(["--frames", "2", "--interval", "0.2"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["s0", "s1", "s2"] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("hot keys"), "{text}");
    let hot_line = text
        .lines()
        .find(|l| l.starts_with("users "))
        .unwrap_or_else(|| panic!("a hot key line in\n{text}"));
    assert!(
        hot_line.split_whitespace().nth(1) == Some("9"),
        "{hot_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_traffic_is_not_counted_as_the_shards_workload() {
    let shards = Shards::databases(3).await;
    for i in 0..3 {
        shards
            .client(i)
            .await
            .batch_execute("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let ctx = proxy.ctx.clone();
    // The catalog read, the first recovery pass and the stored-rows poll have all run once
    // the row counts are known.
    let polled = support::proxy::eventually(15, || {
        let ctx = ctx.clone();
        async move {
            (0..3).all(|i| {
                let s = ctx.stats.shard(shardgate::ring::ShardId(i));
                s.stored_rows.load(std::sync::atomic::Ordering::Relaxed) != u64::MAX
            })
        }
    })
    .await;
    assert!(polled, "stored rows polled");
    let admin = console(&proxy).await;
    for s in show(&admin, "SHOW SHARDS").await {
        assert_eq!(
            (s["queries"].as_str(), s["rows"].as_str()),
            ("0", "0"),
            "{s:?}"
        );
        assert_eq!(s["stored_rows"], "0");
    }
    // One client statement is one query on one shard.
    let c = proxy.client().await;
    rows(&c, "SELECT * FROM users WHERE id = 1").await;
    let view = show(&admin, "SHOW SHARDS").await;
    let total: u64 = view
        .iter()
        .map(|s| s["queries"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1, "{view:?}");
}

/// A read whose shape the shards refuse with its literals bound runs as its text instead: it
/// is still one statement in the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gathered_shape_refused_by_the_shards_is_counted_once() {
    let (_shards, proxy) = setup("").await;
    let c = proxy.client().await;
    load_users(&c, 20).await;
    let admin = console(&proxy).await;
    let users = |stats: &[std::collections::HashMap<String, String>]| -> u64 {
        let row = stats.iter().find(|r| r["scope"] == "table users");
        row.map_or(0, |r| r["statements"].parse().unwrap())
    };
    let before = show(&admin, "SHOW STATS").await;
    // The first statement of the shape runs by its own plan and makes the shape's; the others
    // are refused at Bind in the shape's form ('x2' is no bigint) and run as their text, which
    // PostgreSQL refuses as well.
    for k in 1..=3 {
        let sql = format!("SELECT count(*) FROM users WHERE id > 'x{k}'");
        let err = try_rows(&c, &sql).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_TEXT_REPRESENTATION),
            "{sql}"
        );
    }
    let after = show(&admin, "SHOW STATS").await;
    assert_eq!(users(&after) - users(&before), 3, "{after:?}");
}
