//! The shardgate command line: parses arguments and calls into the library.

use clap::{Parser, Subcommand};
use shardgate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "shardgate", version, about = "A sharding proxy for PostgreSQL")]
struct Cli {
    /// The config file to serve.
    #[arg(long, short, default_value = "shards.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start three local PostgreSQL shards with sample data and serve them on 127.0.0.1:6432.
    Demo {
        /// Where the shards' data directories live (reused on the next run).
        #[arg(long, default_value = ".shardgate-demo")]
        dir: PathBuf,
        /// The proxy's port.
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// The first shard's port; the others take the next ones.
        #[arg(long, default_value_t = shardgate::demo::FIRST_SHARD_PORT)]
        shard_port: u16,
    },
    /// Validate a config and print the ring summary.
    Check,
    /// Print where a statement would go and why (no shard is contacted).
    Route { sql: String },
    /// A live view of a running proxy's shards and hot keys (through its admin console).
    Top {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, short, default_value_t = 6432)]
        port: u16,
        #[arg(long, short, default_value = "postgres")]
        user: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        frames: u64,
    },
    /// Print the share of keys that would move between shards from one config to another.
    Plan {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => serve(&cli.config),
        Some(Command::Demo {
            dir,
            port,
            shard_port,
        }) => runtime().and_then(|rt| rt.block_on(shardgate::demo::run(&dir, port, shard_port))),
        Some(Command::Check) => shardgate::cli::check(&cli.config),
        Some(Command::Route { sql }) => shardgate::cli::route(&cli.config, &sql),
        Some(Command::Plan { from, to }) => shardgate::cli::plan(&from, &to),
        Some(Command::Top {
            host,
            port,
            user,
            interval,
            frames,
        }) => runtime().and_then(|rt| {
            rt.block_on(shardgate::top::run(shardgate::top::Options {
                host,
                port,
                user,
                // NaN (`--interval nan`) is not a number of seconds: the default then.
                interval: std::time::Duration::from_secs_f64(if interval.is_nan() {
                    1.0
                } else {
                    interval.clamp(0.1, 3600.0)
                }),
                frames,
            }))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of the main thread, which is worker 0 when serving: the listener starts the
/// other workers' threads (`shardgate::workers`), each with a runtime like this one.
fn runtime() -> Result<tokio::runtime::Runtime, shardgate::error::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| shardgate::error::Error::internal(format!("cannot start the runtime: {e}")))
}

fn serve(path: &std::path::Path) -> Result<(), shardgate::error::Error> {
    let config = Config::load(path)?;
    runtime()?.block_on(async {
        let (ctx, server) = shardgate::start(config).await?;
        let _ = ctx.config_path.set(path.to_path_buf());
        tokio::spawn(reload_on_hangup(ctx.clone()));
        let threads = match ctx.backend.workers() {
            1 => "one worker thread".to_string(),
            n => format!("{n} worker threads"),
        };
        tracing::info!("shardgate listening on {} ({threads})", server.local_addr());
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

/// SIGHUP re-reads the config, as RELOAD in the admin console does.
async fn reload_on_hangup(ctx: std::sync::Arc<shardgate::context::Context>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use RELOAD in the admin console");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Err(e) = shardgate::reload::reload(&ctx).await {
            tracing::error!("reload refused, nothing changed: {e}");
        }
    }
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
