//! Password authentication at the proxy against real clients (tokio-postgres, psql): SCRAM with
//! plain passwords and with verifiers copied from a real PostgreSQL's pg_authid, md5, wrong
//! passwords and unknown users (28P01), the admin console, and logs free of passwords.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::proxy::{value, Proxy};
use support::Shards;
use tokio_postgres::{Client, NoTls};

/// Everything the proxy logs in this test binary (every test's, as they share the process).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("shardgate=trace")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails if any of `secrets` was logged; returns the log text.
fn assert_logs_hold_none_of(secrets: &[&str]) -> String {
    let logs = captured_logs();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for s in secrets {
        assert!(!text.contains(s), "the log holds a secret: {s:?}");
    }
    text
}

fn auth_toml(method: &str, users: &[(&str, &str)], admins: &[&str]) -> String {
    let admins: Vec<String> = admins.iter().map(|a| format!("{a:?}")).collect();
    let mut toml = format!(
        "[auth]\nmethod = \"{method}\"\nadmin_users = [{}]\n",
        admins.join(", ")
    );
    for (name, password) in users {
        toml.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\npassword = '{password}'\n"
        ));
    }
    toml
}

async fn proxy_with(shards: &Shards, auth: &str) -> Proxy {
    captured_logs();
    Proxy::start_with(&shards.urls(), "pool_size = 2", auth).await
}

async fn login(
    proxy: &Proxy,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.addr.port())
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE and message of a refused login.
async fn refused(proxy: &Proxy, user: &str, password: &str, db: &str) -> (String, String) {
    let Err(e) = login(proxy, user, password, db).await else {
        panic!("{user} logged in with {password:?}");
    };
    let db_error = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (
        db_error.code().code().to_owned(),
        db_error.message().to_owned(),
    )
}

fn failed_for(user: &str) -> (String, String) {
    (
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )
}

/// The verifier a real PostgreSQL stores for a role created with this password_encryption.
async fn pg_verifier(shards: &Shards, encryption: &str, role: &str, password: &str) -> String {
    let c = shards.client(0).await;
    c.batch_execute(&format!(
        "SET password_encryption = '{encryption}'; CREATE ROLE {role} LOGIN PASSWORD '{password}'"
    ))
    .await
    .unwrap();
    let row = c
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_plain_and_copied_passwords_and_28p01_for_the_rest() {
    let shards = Shards::databases(1).await;
    let copied = pg_verifier(&shards, "scram-sha-256", "copied", "from-pg-pw").await;
    assert!(copied.starts_with("SCRAM-SHA-256$4096:"), "{copied}");
    let auth = auth_toml(
        "scram-sha-256",
        &[("app", "plain-scram-pw"), ("copied", &copied)],
        &[],
    );
    let proxy = proxy_with(&shards, &auth).await;

    let app = login(&proxy, "app", "plain-scram-pw", "app").await.unwrap();
    assert_eq!(value(&app, "SELECT 40 + 2").await, "42");
    let c = login(&proxy, "copied", "from-pg-pw", "app").await.unwrap();
    assert_eq!(value(&c, "SELECT 'in'").await, "in");

    assert_eq!(
        refused(&proxy, "app", "wrong-scram-pw", "app").await,
        failed_for("app")
    );
    assert_eq!(
        refused(&proxy, "copied", "plain-scram-pw", "app").await,
        failed_for("copied")
    );
    assert_eq!(
        refused(&proxy, "ghost", "plain-scram-pw", "app").await,
        failed_for("ghost")
    );
    // The proxy goes on serving, and the sessions already in are untouched.
    let again = login(&proxy, "app", "plain-scram-pw", "app").await.unwrap();
    assert_eq!(value(&again, "SELECT 1").await, "1");
    assert_eq!(value(&app, "SELECT 2").await, "2");

    let logs = assert_logs_hold_none_of(&[
        "plain-scram-pw",
        "wrong-scram-pw",
        "from-pg-pw",
        &copied[20..],
    ]);
    assert!(
        logs.contains("password authentication failed") && logs.contains("\"ghost\""),
        "the failures are logged, so the log was captured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_with_copied_and_plain_passwords() {
    let shards = Shards::databases(1).await;
    let copied = pg_verifier(&shards, "md5", "oldapp", "md5-from-pg").await;
    assert!(copied.starts_with("md5") && copied.len() == 35, "{copied}");
    let scram = pg_verifier(&shards, "scram-sha-256", "newapp", "scram-under-md5").await;
    let auth = auth_toml(
        "md5",
        &[
            ("oldapp", &copied),
            ("app", "md5-plain-pw"),
            ("newapp", &scram),
        ],
        &[],
    );
    let proxy = proxy_with(&shards, &auth).await;
    for (user, password) in [
        ("oldapp", "md5-from-pg"),
        ("app", "md5-plain-pw"),
        // A SCRAM verifier is served by SCRAM even under method md5, as in PostgreSQL.
        ("newapp", "scram-under-md5"),
    ] {
        let c = login(&proxy, user, password, "app").await.unwrap();
        assert_eq!(value(&c, "SELECT 7").await, "7", "{user}");
    }
    assert_eq!(
        refused(&proxy, "oldapp", "md5-plain-pw", "app").await,
        failed_for("oldapp")
    );
    assert_eq!(
        refused(&proxy, "app", "md5-wrong-pw", "app").await,
        failed_for("app")
    );
    assert_eq!(
        refused(&proxy, "nobody", "md5-plain-pw", "app").await,
        failed_for("nobody")
    );
    assert_logs_hold_none_of(&[
        "md5-from-pg",
        "md5-plain-pw",
        "md5-wrong-pw",
        "scram-under-md5",
        &copied[3..],
    ]);

    // Under scram-sha-256 the md5 verifier cannot serve: even its right password fails.
    let auth = auth_toml("scram-sha-256", &[("oldapp", &copied)], &[]);
    let proxy = proxy_with(&shards, &auth).await;
    assert_eq!(
        refused(&proxy, "oldapp", "md5-from-pg", "app").await,
        failed_for("oldapp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_console_asks_admins_for_their_password() {
    let shards = Shards::databases(1).await;
    let auth = auth_toml(
        "scram-sha-256",
        &[("ops", "console-pw"), ("app", "app-console-pw")],
        &["ops"],
    );
    let proxy = proxy_with(&shards, &auth).await;
    let ops = login(&proxy, "ops", "console-pw", "shardgate")
        .await
        .unwrap();
    let shards_rows = ops.simple_query("SHOW SHARDS").await.unwrap();
    assert!(shards_rows.len() > 1);
    let config = support::proxy::rows(&ops, "SHOW CONFIG").await;
    assert!(format!("{config:?}").contains("auth.users"), "{config:?}");
    assert!(!format!("{config:?}").contains("console-pw"), "{config:?}");
    assert_eq!(
        refused(&proxy, "ops", "app-console-pw", "shardgate").await,
        failed_for("ops")
    );
    let (code, message) = refused(&proxy, "app", "app-console-pw", "shardgate").await;
    assert_eq!(code, "28000", "{message}");
    // The same user with the same password reaches the sharded database.
    login(&proxy, "app", "app-console-pw", "app").await.unwrap();
    assert_logs_hold_none_of(&["console-pw"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_scram() {
    let shards = Shards::databases(1).await;
    let auth = auth_toml("scram-sha-256", &[("app", "psql-secret-pw")], &[]);
    let proxy = proxy_with(&shards, &auth).await;
    let psql = |password: &str| {
        let bindir = shardgate::localpg::find_bindir().expect("PostgreSQL binaries");
        let exe = Some(bindir.join("psql"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| "psql".into());
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["-X", "-At", "-h", "127.0.0.1", "-U", "app", "-d", "app"])
            .args(["-p", &proxy.addr.port().to_string(), "-c", "SELECT 1"])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE");
        cmd.output()
    };
    let ok = psql("psql-secret-pw").await.unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1");
    let bad = psql("psql-wrong-pw").await.unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("password authentication failed for user \"app\""),
        "{stderr}"
    );
    assert_logs_hold_none_of(&["psql-secret-pw", "psql-wrong-pw"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_passwords_and_keeps_sessions() {
    let shards = Shards::databases(1).await;
    let before = auth_toml("scram-sha-256", &[("app", "reload-old-pw")], &[]);
    let proxy = proxy_with(&shards, &before).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    proxy.ctx.config_path.set(file.path().into()).unwrap();
    let write = |auth: &str| {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\npool_size = 2\n{}\n{auth}",
            shards.shards_toml()
        );
        std::fs::write(file.path(), text).unwrap();
    };
    let app = login(&proxy, "app", "reload-old-pw", "app").await.unwrap();
    app.batch_execute("BEGIN").await.unwrap();

    // A malformed verifier changes nothing.
    write(&auth_toml(
        "scram-sha-256",
        &[("app", "SCRAM-SHA-256$1:x")],
        &[],
    ));
    let e = shardgate::reload::reload(&proxy.ctx).await.unwrap_err();
    assert!(e.to_string().contains("\"app\""), "{e}");
    login(&proxy, "app", "reload-old-pw", "app").await.unwrap();

    write(&auth_toml("md5", &[("app", "reload-new-pw")], &[]));
    shardgate::reload::reload(&proxy.ctx).await.unwrap();
    assert_eq!(
        refused(&proxy, "app", "reload-old-pw", "app").await,
        failed_for("app")
    );
    login(&proxy, "app", "reload-new-pw", "app").await.unwrap();
    // The session that logged in before the reload is still in its transaction.
    assert_eq!(value(&app, "SELECT 3").await, "3");
    app.batch_execute("COMMIT").await.unwrap();
    assert_logs_hold_none_of(&["reload-old-pw", "reload-new-pw"]);
}
