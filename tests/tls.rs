//! TLS between clients and the proxy, with psql and tokio-postgres over certificates made at
//! test time; TLS from the proxy to the shards is in tls/shards.rs.

#[path = "tls/shards.rs"]
mod shards;
mod support;

use shardgate::config::{ShardTls, TlsConfig};
use std::path::Path;
use support::pki::Pki;
use support::proxy::{rows, Proxy};
use support::Shards;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TABLES: &str = "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n";

/// Runs psql with `conninfo` and the given `-c` commands: (succeeded, stdout, stderr).
pub async fn psql(conninfo: &str, commands: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new("psql");
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    for var in [
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .expect("psql runs (is the PostgreSQL client installed?)");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn conninfo(proxy: &Proxy, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user=postgres dbname=app {extra}",
        proxy.addr.port()
    )
}

/// `[tls]` for a tokio-postgres client that checks the server against `ca` (the verify-full
/// connector the proxy uses for shards serves as a client's too).
pub fn verify_full(ca: &Path) -> TlsConfig {
    TlsConfig {
        cert: None,
        key: None,
        require: false,
        shards: ShardTls::VerifyFull,
        shard_ca: Some(ca.display().to_string()),
    }
}

/// A tokio-postgres client over TLS, checking the server against `ca` and `host`.
async fn tls_client(
    proxy: &Proxy,
    host: &str,
    ca: &Path,
) -> Result<(tokio_postgres::Client, shardgate::tls::postgres::MakeRustls), tokio_postgres::Error> {
    let mut cfg: tokio_postgres::Config = conninfo(proxy, host, "").parse().unwrap();
    let tls = shardgate::tls::postgres::for_shard(Some(&verify_full(ca)), &mut cfg).unwrap();
    let (client, conn) = cfg.connect(tls.clone()).await?;
    tokio::spawn(conn);
    Ok((client, tls))
}

/// A proxy offering `pki`'s certificate, with `more` in its `[tls]`, and three users.
async fn proxy_with(shards: &Shards, pki: &Pki, more: &str) -> Proxy {
    let tls = format!("[tls]\n{}{more}", pki.client_toml());
    let proxy = Proxy::start(&shards.urls(), &format!("{TABLES}{tls}")).await;
    let (c, _) = tls_client(&proxy, "127.0.0.1", &pki.ca).await.unwrap();
    c.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_sslmode_require_reads_through_the_proxy() {
    let shards = Shards::databases(2).await;
    let pki = Pki::new("client");
    let proxy = proxy_with(&shards, &pki, "").await;
    let (ok, out, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=require"),
        &["\\conninfo", "SELECT 1", "SELECT count(*) FROM users"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection"), "not encrypted: {out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.contains(' ')).collect();
    assert_eq!(lines, ["1", "3"], "{out}");
    // Clients that do not ask for TLS still get in when it is not required.
    let (ok, out, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=disable"),
        &["\\conninfo", "SELECT 1"],
    )
    .await;
    assert!(ok && !out.contains("SSL connection"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_tls_is_declined_cleanly() {
    let shards = Shards::databases(1).await;
    let proxy = Proxy::start(&shards.urls(), TABLES).await;
    let (ok, _, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=require"),
        &["SELECT 1"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("server does not support SSL, but SSL was required"),
        "{err}"
    );
    let (ok, out, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=prefer"),
        &["SELECT 1"],
    )
    .await;
    assert!(ok && out.trim() == "1", "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_clients_in_clear_but_serves_their_cancel_requests() {
    let shards = Shards::databases(2).await;
    let pki = Pki::new("client");
    let proxy = proxy_with(&shards, &pki, "require = true\n").await;
    let (ok, _, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=disable"),
        &["SELECT 1"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("TLS is required: connect with sslmode=require"),
        "{err}"
    );
    let plain = tokio_postgres::connect(&proxy.url(), tokio_postgres::NoTls).await;
    let code = plain.err().and_then(|e| e.code().cloned());
    assert_eq!(code.as_ref().map(|c| c.code()), Some("28000"));
    let (ok, out, err) = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=prefer"),
        &["\\conninfo", "SELECT count(*) FROM users"],
    )
    .await;
    assert!(ok && out.contains("SSL connection"), "{out}{err}");

    // `shardgate top` prefers TLS, as libpq does, so it can watch such a proxy.
    let top = shardgate::top::Options {
        host: "127.0.0.1".into(),
        port: proxy.addr.port(),
        user: "postgres".into(),
        interval: std::time::Duration::from_millis(10),
        frames: 1,
    };
    shardgate::top::run(top).await.expect("top over TLS");

    // A cancel request in clear (libpq before 17 sends them so) gets no refusal: the proxy
    // reads it and hangs up without a word, as PostgreSQL does.
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut cancel = 16i32.to_be_bytes().to_vec();
    for v in [80877102i32, 12345, 678] {
        cancel.extend_from_slice(&v.to_be_bytes());
    }
    s.write_all(&cancel).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // One over TLS cancels the statement it names.
    let (client, tls) = tls_client(&proxy, "127.0.0.1", &pki.ca).await.unwrap();
    let token = client.cancel_token();
    let sleep = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    shards.until_running("SELECT pg_sleep(30)").await;
    token.cancel_query(tls).await.unwrap();
    let res = tokio::time::timeout(std::time::Duration::from_secs(10), sleep)
        .await
        .expect("the statement was cancelled")
        .unwrap();
    let code = res.err().and_then(|e| e.code().cloned());
    assert_eq!(code.as_ref().map(|c| c.code()), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_clients_check_the_proxy_certificate() {
    let shards = Shards::databases(2).await;
    let pki = Pki::new("client");
    let proxy = proxy_with(&shards, &pki, "").await;
    for host in ["127.0.0.1", "localhost"] {
        let (c, _) = tls_client(&proxy, host, &pki.ca).await.unwrap();
        assert_eq!(
            rows(&c, "SELECT count(*) FROM users").await[0][0].as_deref(),
            Some("3")
        );
        let ca = pki.ca.display();
        let (ok, out, err) = psql(
            &conninfo(
                &proxy,
                host,
                &format!("sslmode=verify-full sslrootcert={ca}"),
            ),
            &["SELECT name FROM users WHERE id = 2"],
        )
        .await;
        assert!(ok && out.trim() == "b", "{host}: {out}{err}");
    }
    // A CA that did not sign the proxy's certificate.
    let stranger = Pki::new("stranger");
    let err = tls_client(&proxy, "127.0.0.1", &stranger.ca).await.err();
    let err = err.expect("an unknown issuer is refused");
    let cause = std::error::Error::source(&err).map(|c| c.to_string());
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("UnknownIssuer")),
        "{err}: {cause:?}"
    );
    let ca = stranger.ca.display();
    let (ok, _, err) = psql(
        &conninfo(
            &proxy,
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        &["SELECT 1"],
    )
    .await;
    assert!(!ok && err.contains("certificate verify failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_sent_after_an_ssl_request_is_refused() {
    let shards = Shards::databases(1).await;
    let pki = Pki::new("client");
    let proxy = proxy_with(&shards, &pki, "").await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut bytes = 8i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&80877103i32.to_be_bytes());
    let mut startup = 196608i32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0postgres\0database\0app\0\0");
    bytes.extend_from_slice(&((startup.len() + 4) as i32).to_be_bytes());
    bytes.extend_from_slice(&startup);
    // SSLRequest and a startup packet in one write, without waiting for the answer.
    s.write_all(&bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(answer.first(), Some(&b'E'), "{text}");
    assert!(text.contains("08P01"), "{text}");
    assert!(
        text.contains("received unencrypted data after SSL request"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_offers_a_new_certificate_to_new_clients_only() {
    let shards = Shards::databases(1).await;
    let (first, second) = (Pki::new("first"), Pki::new("second"));
    let proxy = proxy_with(&shards, &first, "").await;
    let (old, _) = tls_client(&proxy, "127.0.0.1", &first.ca).await.unwrap();
    let mut config = (*proxy.ctx.config.load_full()).clone();
    let tls = config.tls.as_mut().unwrap();
    tls.cert = Some(second.cert.display().to_string());
    tls.key = Some(second.key.display().to_string());
    let outcome = shardgate::reload::apply(&proxy.ctx, config).await.unwrap();
    assert!(
        outcome
            .changes
            .iter()
            .any(|(k, v)| k == "tls" && v == "applied"),
        "{outcome:?}"
    );
    assert!(tls_client(&proxy, "127.0.0.1", &first.ca).await.is_err());
    let (new, _) = tls_client(&proxy, "127.0.0.1", &second.ca).await.unwrap();
    assert_eq!(rows(&new, "SELECT 1").await[0][0].as_deref(), Some("1"));
    // The client that came before keeps its session.
    assert_eq!(rows(&old, "SELECT 2").await[0][0].as_deref(), Some("2"));
}

#[test]
fn unreadable_or_mismatched_files_stop_the_start() {
    let (a, b) = (Pki::new("a"), Pki::new("b"));
    let base = "[proxy]\nlisten = \"127.0.0.1:0\"\n[[shards]]\nname = \"s0\"\nurl = \"postgres://postgres@127.0.0.1:1/app\"\n[tls]\n";
    let check = |tls: String| {
        let config = shardgate::config::Config::parse(&format!("{base}{tls}")).unwrap();
        shardgate::check_tls(&config).err().map(|e| e.to_string())
    };
    let (cert, key) = (a.cert.display(), a.key.display());
    assert_eq!(check(a.client_toml()), None);
    let missing = check(format!("cert = \"{cert}.gone\"\nkey = \"{key}\"\n")).unwrap();
    assert!(missing.contains(".gone\" cannot be read"), "{missing}");
    let other_key = b.key.display();
    let mismatch = check(format!("cert = \"{cert}\"\nkey = \"{other_key}\"\n")).unwrap();
    assert!(mismatch.contains("cannot be used together"), "{mismatch}");
    let swapped = check(format!("cert = \"{key}\"\nkey = \"{cert}\"\n")).unwrap();
    assert!(swapped.contains("holds no certificate"), "{swapped}");
    let ca = check(format!("shards = \"verify-full\"\nshard_ca = \"{key}\"\n")).unwrap();
    assert!(
        ca.contains("shard_ca") && ca.contains("holds no certificate"),
        "{ca}"
    );
}

/// What the issue asks of psql end to end: `sslmode=require` with SCRAM, against a proxy that
/// requires TLS, with one user configured by a plain password and one by a verifier copied from
/// PostgreSQL's pg_authid; wrong passwords are refused over TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_tls_with_scram_for_plain_and_copied_passwords() {
    let shards = Shards::databases(2).await;
    let pg = shards.client(0).await;
    pg.batch_execute(
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE copied LOGIN PASSWORD 'copied-pw'",
    )
    .await
    .unwrap();
    let verifier: String = pg
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'copied'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    let pki = Pki::new("scram-tls");
    let extra = format!(
        "{TABLES}[tls]\n{}require = true\n[auth]\nmethod = \"scram-sha-256\"\n[[auth.users]]\nname = \"plain\"\npassword = \"plain-pw\"\n[[auth.users]]\nname = \"copied\"\npassword = \"{verifier}\"\n",
        pki.client_toml()
    );
    let proxy = Proxy::start(&shards.urls(), &extra).await;
    let login = |user: &str, password: &str, sslmode: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=app sslmode={sslmode}",
            proxy.addr.port()
        )
    };
    for (user, password) in [("plain", "plain-pw"), ("copied", "copied-pw")] {
        let (ok, out, err) = psql(
            &login(user, password, "require"),
            &["\\conninfo", "SELECT 7"],
        )
        .await;
        assert!(ok, "{user}: {err}");
        assert!(
            out.contains("SSL connection"),
            "{user} not encrypted: {out}"
        );
        assert!(out.lines().any(|l| l == "7"), "{out}");
        let (ok, _, err) = psql(&login(user, "wrong-pw", "require"), &["SELECT 1"]).await;
        assert!(!ok);
        assert!(
            err.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{err}"
        );
        // TLS is required: the right password in clear is refused before it is asked for.
        let (ok, _, err) = psql(&login(user, password, "disable"), &["SELECT 1"]).await;
        assert!(!ok && err.contains("TLS is required"), "{err}");
    }
}

/// SCRAM-SHA-256-PLUS over TLS: psql (libpq computes the certificate hash with OpenSSL, on its
/// own) with channel_binding=require gets in, and with channel_binding=disable too; so does
/// tokio-postgres with channel_binding=require. After a reload to a certificate signed with
/// ECDSA P-384, the binding follows the new certificate and its SHA-384 hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_require_over_tls_with_scram() {
    let shards = Shards::databases(1).await;
    let pki = Pki::new("plus");
    let auth = "[auth]\nmethod = \"scram-sha-256\"\n[[auth.users]]\nname = \"app\"\npassword = \"app-pw\"\n";
    let extra = format!("{TABLES}[tls]\n{}{auth}", pki.client_toml());
    let proxy = Proxy::start(&shards.urls(), &extra).await;
    let login = |password: &str, binding: &str| {
        format!(
            "host=127.0.0.1 port={} user=app password={password} dbname=app sslmode=require channel_binding={binding}",
            proxy.addr.port()
        )
    };
    let psql_in = |password: &'static str, binding: &'static str| {
        let conninfo = login(password, binding);
        async move { psql(&conninfo, &["SELECT 7"]).await }
    };
    for binding in ["require", "disable", "prefer"] {
        let (ok, out, err) = psql_in("app-pw", binding).await;
        assert!(ok, "channel_binding={binding}: {err}");
        assert!(out.lines().any(|l| l == "7"), "{out}");
    }
    let (ok, _, err) = psql_in("wrong-pw", "require").await;
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"app\""),
        "{err}"
    );
    // In clear the proxy offers no PLUS, so a client that requires it gives up before a
    // password is sent.
    let clear = format!(
        "host=127.0.0.1 port={} user=app password=app-pw dbname=app sslmode=disable channel_binding=require",
        proxy.addr.port()
    );
    let (ok, _, err) = psql(&clear, &["SELECT 1"]).await;
    assert!(!ok && err.contains("channel binding"), "{err}");
    let (ok, _, err) = psql(&clear.replace("=require", "=disable"), &["SELECT 1"]).await;
    assert!(ok, "{err}");

    // tokio-postgres, its TLS through the proxy's connector, requiring the binding.
    let mut cfg: tokio_postgres::Config = login("app-pw", "require").parse().unwrap();
    let tls = shardgate::tls::postgres::for_shard(Some(&verify_full(&pki.ca)), &mut cfg).unwrap();
    let (client, conn) = cfg.connect(tls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(rows(&client, "SELECT 3").await[0][0].as_deref(), Some("3"));

    // Another certificate, another hash function: new connections bind to it.
    let p384 = Pki::signed_with("plus-384", &rcgen::PKCS_ECDSA_P384_SHA384);
    let mut config = (*proxy.ctx.config.load_full()).clone();
    let tls = config.tls.as_mut().unwrap();
    tls.cert = Some(p384.cert.display().to_string());
    tls.key = Some(p384.key.display().to_string());
    shardgate::reload::apply(&proxy.ctx, config).await.unwrap();
    let (ok, out, err) = psql_in("app-pw", "require").await;
    assert!(ok, "after the reload: {err}");
    assert!(out.lines().any(|l| l == "7"), "{out}");
    let mut cfg: tokio_postgres::Config = login("app-pw", "require").parse().unwrap();
    let tls = shardgate::tls::postgres::for_shard(Some(&verify_full(&p384.ca)), &mut cfg).unwrap();
    let (client, conn) = cfg.connect(tls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(rows(&client, "SELECT 4").await[0][0].as_deref(), Some("4"));
}
