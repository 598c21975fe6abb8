//! TLS from the proxy to the shards, against shards that refuse plain connections: every kind of
//! connection the proxy makes (pooled wire connections, catalog discovery, two-phase commit,
//! cancel requests, tokio-postgres for the rebalance and journal) must get through.

use super::{psql, TABLES};
use crate::support::pki::Pki;
use crate::support::proxy::{value, Proxy};
use crate::support::{Options, Shards};
use std::time::Duration;

const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";

/// Two shards serving TLS with `pki`'s certificate and refusing plain connections.
async fn tls_shards(pki: &Pki) -> Shards {
    let options = Options {
        settings: pki.server_settings(),
        ..Options::default()
    };
    let shards = Shards::start_with(2, options).await;
    shards.reject_plain().await;
    shards
}

/// One value, read with psql straight from shard `i` over TLS.
async fn on_shard(shards: &Shards, i: usize, sql: &str) -> String {
    let url = format!("{}?sslmode=require", shards.url(i));
    let (ok, out, err) = psql(&url, &[sql]).await;
    assert!(ok, "shard {i}: {sql}: {err}");
    out.trim().to_owned()
}

/// Committed two-phase transactions, from the decision records on every shard.
async fn decisions(shards: &Shards) -> u32 {
    let mut n = 0;
    for i in 0..shards.len() {
        let has = "SELECT count(*) FROM pg_tables \
                   WHERE schemaname = 'shardgate' AND tablename = 'txn_decisions'";
        if on_shard(shards, i, has).await == "1" {
            let sql = "SELECT count(*) FROM shardgate.txn_decisions WHERE committed";
            n += on_shard(shards, i, sql).await.parse::<u32>().unwrap();
        }
    }
    n
}

/// "total|encrypted" for the proxy's own sessions on shard `i`.
async fn proxy_sessions(shards: &Shards, i: usize) -> String {
    let sql = "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
               JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'shardgate'";
    on_shard(shards, i, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_mode_reaches_shards_that_refuse_plain_connections() {
    let pki = Pki::new("shards");
    let shards = tls_shards(&pki).await;
    let (ok, _, err) = psql(&format!("{}?sslmode=disable", shards.url(0)), &["SELECT 1"]).await;
    assert!(
        !ok && err.contains("no encryption"),
        "plain is not refused: {err}"
    );

    let tls = "[tls]\nshards = \"require\"\n";
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{tls}")).await;
    let c = proxy.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    let (a, b) = proxy.keys_on_two_shards();
    let before = decisions(&shards).await;
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO users (id, name) VALUES ({a}, 'a'); INSERT INTO users (id, name) VALUES ({b}, 'b'); COMMIT"
    ))
    .await
    .unwrap();
    assert_eq!(
        decisions(&shards).await,
        before + 1,
        "not a two-phase commit"
    );
    assert_eq!(
        value(&c, &format!("SELECT name FROM users WHERE id = {b}")).await,
        "b"
    );
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "2");
    for i in 0..2 {
        assert_eq!(
            on_shard(&shards, i, "SELECT count(*) FROM users").await,
            "1"
        );
    }
    proxy
        .ctx
        .refresh_catalog()
        .await
        .expect("catalog discovery");
    for i in 0..2 {
        let sessions = proxy_sessions(&shards, i).await;
        let (total, encrypted) = sessions.split_once('|').unwrap();
        assert!(
            total != "0" && total == encrypted,
            "shard {i}: {total} sessions, {encrypted} over TLS"
        );
    }

    // The rebalance's and the journal's tokio-postgres connections.
    let config = proxy.ctx.config.load_full();
    let timeout = Duration::from_secs(5);
    let own = shardgate::rebalance::plan::connect(&config.shards[0], config.tls.as_ref(), timeout)
        .await
        .expect("tokio-postgres over TLS");
    let row = own
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));

    // A cancel request reaches the shard running the statement.
    let token = c.cancel_token();
    let sleep = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), sleep)
        .await
        .expect("the statement was cancelled")
        .unwrap();
    let code = res.err().and_then(|e| e.code().cloned());
    assert_eq!(code.as_ref().map(|c| c.code()), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_shard_certificates_against_shard_ca() {
    let pki = Pki::new("shards");
    let shards = tls_shards(&pki).await;
    let tls = format!(
        "[tls]\nshards = \"verify-full\"\nshard_ca = \"{}\"\n",
        pki.ca.display()
    );
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{tls}")).await;
    let c = proxy.client().await;
    c.batch_execute(SCHEMA).await.unwrap();
    c.batch_execute("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "3");
    assert_eq!(value(&c, "SELECT name FROM users WHERE id = 3").await, "c");

    // shard_ca did not sign the shards' certificates.
    let stranger = Pki::new("stranger");
    let tls = format!(
        "[tls]\nshards = \"verify-full\"\nshard_ca = \"{}\"\n",
        stranger.ca.display()
    );
    let wrong = Proxy::start(&shards.urls(), &format!("{TABLES}{tls}")).await;
    let e = wrong
        .client()
        .await
        .simple_query("SELECT count(*) FROM users")
        .await
        .expect_err("a shard whose certificate is not trusted");
    let db = e.as_db_error().expect("an error from the proxy");
    assert_eq!(db.code().code(), "08006");
    let m = db.message();
    assert!(
        m.contains("TLS handshake failed") && m.contains("UnknownIssuer"),
        "{m}"
    );

    // Without [tls], a url's sslmode=require is honoured.
    let urls: Vec<String> = (shards.urls().iter())
        .map(|u| format!("{u}?sslmode=require"))
        .collect();
    let by_url = Proxy::start(&urls, TABLES).await;
    assert_eq!(
        value(&by_url.client().await, "SELECT count(*) FROM users").await,
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_without_tls_is_an_error_that_names_it() {
    let shards = Shards::databases(1).await;
    let proxy = Proxy::start(&shards.urls(), "[tls]\nshards = \"require\"\n").await;
    let e = proxy
        .client()
        .await
        .simple_query("SELECT 1")
        .await
        .expect_err("TLS is required and the shard has none");
    let m = e
        .as_db_error()
        .expect("an error from the proxy")
        .message()
        .to_owned();
    assert!(
        m.contains("shard \"s0\"") && m.contains("does not offer it"),
        "{m}"
    );
    // tokio-postgres (rebalance, journal): plain without [tls], refused with it.
    let config = proxy.ctx.config.load_full();
    let (shard, timeout) = (&config.shards[0], Duration::from_secs(5));
    let plan = shardgate::rebalance::plan::connect;
    plan(shard, None, timeout)
        .await
        .expect("plain when TLS is off");
    let e = plan(shard, config.tls.as_ref(), timeout).await.err();
    assert!(e.is_some(), "connected in clear although TLS is required");
}
