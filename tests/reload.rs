//! RELOAD through the admin console on a running proxy: settings that move no rows apply at
//! once (pool size, a shard's url, new tables) without dropping clients or open transactions;
//! an invalid file or a change that would move rows changes nothing.

mod support;

use support::proxy::{rows, Proxy};
use support::Shards;
use tokio_postgres::{Client, NoTls};

fn config_text(urls: &[String], proxy_opts: &str, extra: &str) -> String {
    let mut toml = format!("[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_opts}\n");
    for (i, url) in urls.iter().enumerate() {
        toml.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n"));
    }
    toml.push_str(extra);
    toml
}

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";
const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";

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

/// RELOAD's rows as (setting, result), or its SQLSTATE and message.
async fn reload(admin: &Client) -> Result<Vec<(String, String)>, (String, String)> {
    match admin.simple_query("RELOAD").await {
        Ok(msgs) => Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap_or("").to_owned(),
                    r.get(1).unwrap_or("").to_owned(),
                )),
                _ => None,
            })
            .collect()),
        Err(e) => {
            let db = e.as_db_error().expect("a server error");
            Err((db.code().code().to_owned(), db.message().to_owned()))
        }
    }
}

async fn pool_max(admin: &Client) -> Vec<String> {
    rows(admin, "SHOW POOLS")
        .await
        .into_iter()
        .map(|r| r[2].clone().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_what_moves_no_rows_and_refuses_the_rest() {
    let shards = Shards::databases(4).await;
    let urls = shards.urls();
    let serving = &urls[..3];
    let file = tempfile::NamedTempFile::new().unwrap();
    let write = |text: &str| std::fs::write(file.path(), text).unwrap();
    let first = config_text(serving, "pool_size = 4", TABLES);
    write(&first);
    let proxy = Proxy::start_with(serving, "pool_size = 4", TABLES).await;
    proxy
        .ctx
        .config_path
        .set(file.path().to_path_buf())
        .unwrap();
    let c = proxy.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    shards.client(3).await.batch_execute(SCHEMA).await.unwrap();
    c.batch_execute("INSERT INTO users VALUES (7, 'seven')")
        .await
        .unwrap();
    let home = proxy
        .ctx
        .ring
        .load()
        .shard_for_key(&shardgate::ring::Key::Int(7))
        .0 as usize;
    let admin = console(&proxy).await;
    assert_eq!(
        reload(&admin).await.unwrap(),
        [("-".into(), "no change".into())]
    );

    // A transaction open across the reload, on another client and another shard (the url
    // change below concerns key 7's shard only).
    let ring = proxy.ctx.ring.load();
    let other = (8..)
        .find(|k| ring.shard_for_key(&shardgate::ring::Key::Int(*k)).0 as usize != home)
        .unwrap();
    let t = proxy.client().await;
    t.batch_execute(&format!(
        "BEGIN; INSERT INTO users VALUES ({other}, 'other')"
    ))
    .await
    .unwrap();

    // Smaller pools, key 7's shard moved to the fourth database, a new table, a new listen.
    let mut moved: Vec<String> = serving.to_vec();
    moved[home] = urls[3].clone();
    let items = "[[tables]]\nname = \"items\"\nshard_key = \"id\"\n";
    let next = config_text(&moved, "pool_size = 2", &format!("{TABLES}{items}"))
        .replace("127.0.0.1:0", "127.0.0.1:1");
    write(&next);
    let changes = reload(&admin).await.unwrap();
    let said = |k: &str| {
        changes
            .iter()
            .find(|(s, _)| s == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} in {changes:?}"))
    };
    assert!(said(&format!("shards.s{home}.url")).starts_with("applied"));
    assert_eq!(said("proxy.pool_size"), "applied: 4 → 2");
    assert_eq!(said("tables.items"), "applied: added");
    assert!(said("proxy.listen").starts_with("needs a restart"));
    assert_eq!(pool_max(&admin).await, ["2", "2", "2"]);

    // The open transaction and the old client go on.
    t.batch_execute("COMMIT").await.unwrap();
    let sql = format!("SELECT name FROM users WHERE id = {other}");
    assert_eq!(rows(&c, &sql).await.len(), 1);
    // Key 7 is now read from the fourth database, which does not hold it...
    assert!(rows(&c, "SELECT name FROM users WHERE id = 7")
        .await
        .is_empty());
    shards
        .client(3)
        .await
        .batch_execute("INSERT INTO users VALUES (7, 'on the new url')")
        .await
        .unwrap();
    let name = rows(&c, "SELECT name FROM users WHERE id = 7").await;
    assert_eq!(name[0][0].as_deref(), Some("on the new url"));
    // ... and the new table is routed.
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO items VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert_eq!(
        rows(&c, "SELECT count(*) FROM items").await[0][0].as_deref(),
        Some("3")
    );
    let config = rows(&admin, "SHOW CONFIG").await;
    let listen = config
        .iter()
        .find(|r| r[0].as_deref() == Some("proxy.listen"))
        .unwrap();
    assert_eq!(
        listen[1].as_deref(),
        Some("127.0.0.1:0"),
        "the running value is shown"
    );

    // A broken file changes nothing, and says where it is broken.
    write(&next.replace("pool_size = 2", "pool_size = 1\n[proxy"));
    let (code, message) = reload(&admin).await.unwrap_err();
    assert_eq!(code, "F0000", "{message}");
    assert!(message.contains("line "), "{message}");
    assert_eq!(pool_max(&admin).await, ["2", "2", "2"]);

    // A table removed would leave its placed rows unfindable: refused whole, pools untouched.
    // (Shard and weight changes start a rebalance: tests/rebalance.rs.)
    write(&config_text(&moved, "pool_size = 3", TABLES).replace("127.0.0.1:0", "127.0.0.1:1"));
    let (code, message) = reload(&admin).await.unwrap_err();
    assert_eq!(code, "0A000", "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(pool_max(&admin).await, ["2", "2", "2"]);
    // The console and the clients still work.
    assert_eq!(
        rows(&c, "SELECT count(*) FROM users").await[0][0].as_deref(),
        Some("2")
    );
}

/// SIGHUP does what RELOAD does, for the binary started with --config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let shards = Shards::databases(2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shards.toml");
    let text = |pool: usize| {
        config_text(&shards.urls(), &format!("pool_size = {pool}"), TABLES)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
    };
    std::fs::write(&path, text(4)).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=shardgate");
    let admin = loop {
        if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            break client;
        }
        assert!(child.try_wait().unwrap().is_none(), "shardgate exited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(pool_max(&admin).await, ["4", "4"]);
    std::fs::write(&path, text(3)).unwrap();
    // SAFETY: kill(2) with a valid pid of our own child and a signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let applied = support::proxy::eventually(10, || {
        let admin = &admin;
        async move { pool_max(admin).await == ["3", "3"] }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(applied, "pools resized after SIGHUP; log:\n{log}");
    assert!(
        log.contains("reload: proxy.pool_size: applied: 4 → 3"),
        "{log}"
    );
}
