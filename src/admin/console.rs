//! The admin console: the database `shardgate` on the proxy's own port. It speaks the simple
//! query protocol and answers `SHOW ...` commands with rows, as PgBouncer's console does.

use super::table::Table;
use super::{describe, show};
use crate::context::Context;
use crate::error::Error;
use crate::protocol::{self, FrameReader};
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Serves one console client until it leaves.
pub async fn serve<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    ctx: Arc<Context>,
    mut client: FrameReader<R>,
    mut writer: W,
) {
    let mut out = BytesMut::with_capacity(4096);
    // Extended-protocol messages get one error, then are skipped up to their Sync.
    let mut skipping = false;
    loop {
        let Ok(Some(frame)) = client.next().await else {
            return;
        };
        match frame.tag {
            b'Q' => {
                match protocol::query_text(frame.body()) {
                    Ok(text) => answer(&ctx, text, &mut out).await,
                    Err(e) => protocol::put_error(&mut out, &e),
                }
                protocol::put_ready(&mut out, b'I');
            }
            b'X' => return,
            b'S' => {
                skipping = false;
                protocol::put_ready(&mut out, b'I');
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                if !skipping {
                    skipping = true;
                    let e = Error::unsupported(
                        "the shardgate admin console speaks the simple query protocol only",
                        "use psql, or your driver's simple query call (e.g. simple_query)",
                    );
                    protocol::put_error(&mut out, &e);
                }
                if frame.tag != b'H' {
                    continue;
                }
            }
            other => {
                let e = Error::Protocol {
                    message: format!("unexpected message type 0x{other:02x}"),
                };
                protocol::put_fatal(&mut out, &e);
                let _ = writer.write_all(&out).await;
                let _ = writer.flush().await;
                return;
            }
        }
        // The flush sends what TLS held back.
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Runs one console command string and writes its answer (without ReadyForQuery).
pub async fn answer(ctx: &Arc<Context>, text: &str, out: &mut BytesMut) {
    let command = text.trim().trim_end_matches(';').trim_end();
    if command.is_empty() {
        protocol::put_empty_query(out);
        return;
    }
    let result = if command.eq_ignore_ascii_case("reload") {
        reload(ctx).await
    } else {
        run(ctx, command)
    };
    match result {
        Ok(table) => table.write(out),
        Err(e) => protocol::put_error(out, &e),
    }
}

/// The commands, for errors and SHOW HELP.
pub const COMMANDS: [(&str, &str); 13] = [
    ("SHOW SHARDS", "per shard: traffic, latency, shares, skew"),
    (
        "SHOW HOTSPOTS [n]",
        "the hottest keys across tables, hottest first",
    ),
    (
        "SHOW STATS",
        "statements by route kind and by table, request latency",
    ),
    ("SHOW POOLS", "connections per shard pool"),
    ("SHOW CLIENTS", "connected clients"),
    ("SHOW CONFIG", "the loaded configuration, without secrets"),
    ("SHOW RING", "how the hash ring divides the key space"),
    ("SHOW ROUTE <sql>", "where a statement would go, and why"),
    ("SHOW MEMORY", "memory held by the hot-key sketches"),
    (
        "SHOW REBALANCE",
        "the running or last rebalance: state, rows moved",
    ),
    (
        "SHOW LIMITS",
        "rate limits: each rule and bucket, tokens left, statements refused",
    ),
    ("SHOW HELP", "this list"),
    (
        "RELOAD",
        "re-read shards.toml; new shards or weights start a rebalance",
    ),
];

fn run(ctx: &Context, command: &str) -> Result<Table, Error> {
    let mut words = command.split_whitespace();
    let first = words.next().unwrap_or_default().to_ascii_uppercase();
    let second = words.next().unwrap_or_default().to_ascii_uppercase();
    let rest: Vec<&str> = words.collect();
    if first != "SHOW" {
        return Err(unknown(command));
    }
    let no_args = |t: Table| {
        if rest.is_empty() {
            Ok(t)
        } else {
            Err(unknown(command))
        }
    };
    match second.as_str() {
        "SHARDS" => no_args(show::shards(ctx)),
        "HOTSPOTS" => match rest.as_slice() {
            [] => Ok(show::hotspots(ctx, 20)),
            [n] => match n.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => Ok(show::hotspots(ctx, n)),
                _ => Err(Error::Syntax {
                    message: format!("SHOW HOTSPOTS takes a count from 1 to 10000, not {n}"),
                }),
            },
            _ => Err(unknown(command)),
        },
        "STATS" => no_args(show::stats(ctx)),
        "POOLS" => no_args(show::pools(ctx)),
        "CLIENTS" => no_args(show::clients(ctx)),
        "CONFIG" => no_args(describe::config(ctx)),
        "RING" => no_args(describe::ring(ctx)),
        "MEMORY" => no_args(show::memory(ctx)),
        "REBALANCE" => no_args(rebalance(ctx)),
        "LIMITS" => no_args(super::limits::limits(ctx)),
        "HELP" => no_args(help()),
        "ROUTE" => {
            // The statement as written: everything after the word ROUTE.
            let at = command
                .to_ascii_uppercase()
                .find("ROUTE")
                .map_or(command.len(), |i| i + "ROUTE".len());
            let sql = command[at..].trim();
            if sql.is_empty() {
                return Err(Error::Syntax {
                    message: "SHOW ROUTE needs a statement: SHOW ROUTE SELECT ...".into(),
                });
            }
            Ok(describe::route(ctx, sql))
        }
        _ => Err(unknown(command)),
    }
}

async fn reload(ctx: &Arc<Context>) -> Result<Table, Error> {
    let outcome = crate::reload::reload(ctx).await?;
    let mut t = Table::new(&[
        ("setting", super::table::Kind::Text),
        ("result", super::table::Kind::Text),
    ]);
    for (k, v) in outcome.changes {
        t.row(vec![Some(k), Some(v)]);
    }
    Ok(t)
}

fn help() -> Table {
    let mut t = Table::new(&[
        ("command", super::table::Kind::Text),
        ("shows", super::table::Kind::Text),
    ]);
    for (c, what) in COMMANDS {
        t.row(vec![Some(c.to_owned()), Some(what.to_owned())]);
    }
    t
}

fn unknown(command: &str) -> Error {
    let list: Vec<&str> = COMMANDS.iter().map(|(c, _)| *c).collect();
    Error::Syntax {
        message: format!(
            "unknown admin console command \"{}\"; the console knows {}",
            command.chars().take(80).collect::<String>(),
            list.join(", ")
        ),
    }
}

/// SHOW REBALANCE: the running or last rebalance, state first.
fn rebalance(ctx: &Context) -> Table {
    use super::table::{float, int, text, Kind};
    let s = ctx.rebalance.status();
    let mut t = Table::new(&[
        ("state", Kind::Text),
        ("tables", Kind::Int),
        ("rows_moved", Kind::Int),
        ("rows_to_move", Kind::Int),
        ("elapsed_s", Kind::Float),
        ("pause_ms", Kind::Float),
        ("from", Kind::Text),
        ("to", Kind::Text),
        ("detail", Kind::Text),
    ]);
    t.row(vec![
        text(s.phase.name()),
        int(s.tables as u64),
        int(s.rows_moved),
        int(s.rows_to_move.max(s.rows_moved)),
        float(s.elapsed().as_secs_f64(), 3),
        float(s.pause.as_secs_f64() * 1000.0, 3),
        text(s.from),
        text(s.to),
        text(match s.step {
            (_, 0 | 1) => s.detail,
            (i, n) if s.detail.is_empty() => format!("step {i} of {n}"),
            (i, n) => format!("step {i} of {n}: {}", s.detail),
        }),
    ]);
    t
}
