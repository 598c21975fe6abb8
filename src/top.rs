//! `shardgate top`: a live terminal view of per-shard traffic and hot keys, read from a running
//! proxy's admin console (SHOW SHARDS and SHOW HOTSPOTS) and refreshed every interval.

use crate::error::Error;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, SimpleQueryMessage};

pub struct Options {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub interval: Duration,
    /// Frames to draw before returning; 0 draws until interrupted.
    pub frames: u64,
}

type Rows = Vec<HashMap<String, Option<String>>>;
/// Each shard's (queries, rows, errors) counters at one instant, for rates between frames.
type Counts = HashMap<String, (f64, f64, f64)>;

async fn rows(client: &Client, sql: &str) -> Result<Rows, Error> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| Error::internal(format!("{sql}: {e}")))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), r.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// A value as text fit for a terminal: keys are client data, and a control character in one
/// must not reach the operator's terminal as an escape sequence.
fn get(row: &HashMap<String, Option<String>>, col: &str) -> String {
    let v = row.get(col).and_then(|v| v.as_deref()).unwrap_or("");
    if v.chars().any(char::is_control) {
        v.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        v.to_owned()
    }
}

fn num(row: &HashMap<String, Option<String>>, col: &str) -> f64 {
    get(row, col).parse().unwrap_or(0.0)
}

/// Connects to the console and draws frames until `frames` are drawn (or forever).
pub async fn run(opts: Options) -> Result<(), Error> {
    let conn = format!(
        "host={} port={} user={} dbname=shardgate connect_timeout=10",
        opts.host, opts.port, opts.user
    );
    let mut cfg: tokio_postgres::Config = conn
        .parse()
        .map_err(|e| Error::config(format!("bad console address: {e}")))?;
    // A proxy with [tls] require = true takes only TLS clients.
    let tls = crate::tls::postgres::prefer(&mut cfg)?;
    let (client, connection) = cfg.connect(tls).await.map_err(|e| {
        Error::config(format!(
            "cannot reach the admin console at {}:{}: {e}",
            opts.host, opts.port
        ))
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let tty = std::io::stdout().is_terminal();
    let mut last: Option<(Instant, Counts)> = None;
    let mut drawn = 0u64;
    loop {
        let shards = rows(&client, "SHOW SHARDS").await?;
        let hot = rows(&client, "SHOW HOTSPOTS 10").await?;
        let now = Instant::now();
        let counts: Counts = shards
            .iter()
            .map(|r| {
                let c = (num(r, "queries"), num(r, "rows"), num(r, "errors"));
                (get(r, "name"), c)
            })
            .collect();
        let frame = draw(&opts, &shards, &hot, last.as_ref(), &counts, now);
        let mut out = std::io::stdout().lock();
        if tty {
            // Home and clear, so the view updates in place.
            let _ = out.write_all(b"\x1b[H\x1b[2J");
        }
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
        drop(out);
        last = Some((now, counts));
        drawn += 1;
        if opts.frames != 0 && drawn >= opts.frames {
            return Ok(());
        }
        tokio::time::sleep(opts.interval).await;
    }
}

fn draw(
    opts: &Options,
    shards: &Rows,
    hot: &Rows,
    last: Option<&(Instant, Counts)>,
    counts: &Counts,
    now: Instant,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shardgate top: {}:{} (every {:.1}s; Ctrl-C quits)\n",
        opts.host,
        opts.port,
        opts.interval.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "{:<14} {:<5} {:>9} {:>10} {:>7} {:>8} {:>8} {:>7} {:>7}  skew",
        "shard", "state", "queries/s", "rows/s", "err/s", "p50 ms", "p99 ms", "share%", "weight%"
    );
    for r in shards {
        let name = get(r, "name");
        let rate = |pick: fn(&(f64, f64, f64)) -> f64| -> String {
            match (last, counts.get(&name)) {
                (Some((t, before)), Some(c)) => match before.get(&name) {
                    Some(b) => {
                        let secs = now.duration_since(*t).as_secs_f64().max(1e-3);
                        format!("{:.0}", ((pick(c) - pick(b)) / secs).max(0.0))
                    }
                    None => "-".into(),
                },
                _ => "-".into(),
            }
        };
        let skew = if get(r, "skewed") == "t" {
            format!("SKEWED: {}", get(r, "why"))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{:<14} {:<5} {:>9} {:>10} {:>7} {:>8} {:>8} {:>7} {:>7}  {}",
            name,
            get(r, "state"),
            rate(|c| c.0),
            rate(|c| c.1),
            rate(|c| c.2),
            get(r, "p50_ms"),
            get(r, "p99_ms"),
            get(r, "share"),
            get(r, "weight_share"),
            skew
        );
    }
    let _ = writeln!(s, "\nhot keys (recent hits, decayed)");
    let _ = writeln!(
        s,
        "{:<20} {:<24} {:<14} {:>10} {:>7}",
        "table", "key", "shard", "hits", "share%"
    );
    if hot.is_empty() {
        let _ = writeln!(s, "(no keyed traffic yet)");
    }
    for r in hot {
        let _ = writeln!(
            s,
            "{:<20} {:<24} {:<14} {:>10} {:>7}",
            get(r, "table"),
            get(r, "key").chars().take(24).collect::<String>(),
            get(r, "shard"),
            get(r, "hits"),
            get(r, "share")
        );
    }
    s
}
