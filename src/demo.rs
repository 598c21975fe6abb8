//! `shardgate demo`: three local PostgreSQL shards with a sample schema, served on one port.

use crate::config::Config;
use crate::error::Error;
use crate::localpg::{self, Cluster};
use std::path::Path;
use tokio::signal::unix::{Signal, SignalKind};

fn signal(kind: SignalKind) -> Result<Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::internal(format!("cannot install a signal handler: {e}")))
}

/// The demo's first shard listens here, the others on the next ports (as the example in
/// DESIGN.md and the repository's shards.toml).
pub const FIRST_SHARD_PORT: u16 = 5433;
const SHARDS: u16 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS orders (id bigint, user_id bigint NOT NULL, amount numeric(10,2), status text, PRIMARY KEY (user_id, id));
CREATE TABLE IF NOT EXISTS countries (code text PRIMARY KEY, name text NOT NULL)";

/// The demo's config: the same as the repository's top-level shards.toml.
pub fn config_text(listen_port: u16, first_shard_port: u16) -> String {
    let mut t = format!("[proxy]\nlisten = \"127.0.0.1:{listen_port}\"\npool_size = 10\n\n");
    for i in 0..SHARDS {
        let port = first_shard_port + i;
        t += &format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://postgres@127.0.0.1:{port}/app\"\n\n"
        );
    }
    t += "[[tables]]\nname = \"users\"\nshard_key = \"id\"\n\n\
          [[tables]]\nname = \"orders\"\nshard_key = \"user_id\"\n\n\
          [[tables]]\nname = \"countries\"\nreference = true\n";
    t
}

/// Stops the demo's clusters however `run` ends.
struct Clusters(Vec<Cluster>);

impl Drop for Clusters {
    fn drop(&mut self) {
        for c in &self.0 {
            if let Err(e) = c.stop() {
                eprintln!("{e}");
            }
        }
    }
}

pub async fn run(dir: &Path, port: u16, first_shard_port: u16) -> Result<(), Error> {
    // Registered before any shard starts, so Ctrl-C during setup still ends with the shards
    // stopped (Drop of `Clusters`) instead of killing the process around them.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
    let bindir = localpg::find_bindir()?;
    let mut clusters = Clusters(Vec::new());
    for i in 0..SHARDS {
        let shard_port = first_shard_port + i;
        let path = dir.join(format!("s{i}"));
        eprintln!("shard s{i}: {} on port {shard_port}", path.display());
        let cluster = Cluster::init_in(&bindir, &path, shard_port)?;
        if !cluster.is_running() {
            cluster.start()?;
        }
        cluster.create_database("app").await?;
        clusters.0.push(cluster);
    }
    let text = config_text(port, first_shard_port);
    let config_path = dir.join("shards.toml");
    std::fs::write(&config_path, &text)
        .map_err(|e| Error::config(format!("cannot write {}: {e}", config_path.display())))?;
    let config = Config::parse(&text)?;
    let (ctx, server) = crate::start(config).await?;
    // RELOAD in the console re-reads the demo's own file.
    let _ = ctx.config_path.set(config_path.clone());
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    load_sample(port).await?;
    println!(
        "\nshardgate is serving 3 shards (config: {}).\nConnect with:\n\n    psql -h 127.0.0.1 -p {port} -U postgres -d app\n\nThe admin console (SHOW SHARDS, SHOW HOTSPOTS, SHOW HELP):\n\n    psql -h 127.0.0.1 -p {port} -U postgres -d shardgate\n\nA live view: shardgate top -p {port}\nPress Ctrl-C to stop the proxy and its shards.",
        config_path.display(),
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    let _ = stop.send(());
    let _ = serving.await;
    eprintln!("stopping the shards");
    drop(clusters);
    Ok(())
}

/// Creates the sample schema and rows through the proxy itself (idempotent).
async fn load_sample(port: u16) -> Result<(), Error> {
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=app");
    let fail = |e: tokio_postgres::Error| Error::internal(format!("loading the sample data: {e}"));
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(fail)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.simple_query(SCHEMA).await.map_err(fail)?;
    let names = [
        "ada", "grace", "edsger", "barbara", "ken", "dennis", "margaret", "linus",
    ];
    let users: Vec<String> = (1..=200)
        .map(|id| {
            let n = names[id % names.len()];
            format!("({id}, '{n}{id}', '{n}{id}@example.com')")
        })
        .collect();
    client
        .simple_query(&format!(
            "INSERT INTO users (id, name, email) VALUES {} ON CONFLICT (id) DO NOTHING",
            users.join(", ")
        ))
        .await
        .map_err(fail)?;
    let orders: Vec<String> = (1..=600)
        .map(|id| {
            let user = id % 200 + 1;
            let status = ["new", "paid", "shipped"][id % 3];
            format!(
                "({id}, {user}, {}.{:02}, '{status}')",
                id % 97 + 1,
                id % 100
            )
        })
        .collect();
    client
        .simple_query(&format!(
            "INSERT INTO orders (id, user_id, amount, status) VALUES {} ON CONFLICT DO NOTHING",
            orders.join(", ")
        ))
        .await
        .map_err(fail)?;
    client
        .simple_query(
            "INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan'), ('br', 'Brazil'), \
             ('ke', 'Kenya'), ('nz', 'New Zealand') ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(fail)?;
    Ok(())
}
