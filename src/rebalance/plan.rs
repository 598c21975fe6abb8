//! What a rebalance works on: a connection to each shard involved, and each table's columns,
//! key and stage table, read from a shard's catalog.

use super::copy::describe;
use crate::catalog::{Catalog, TableKind};
use crate::config::{KeyType, ShardConfig, TlsConfig};
use crate::error::Error;
use crate::ring::ShardId;
use std::time::Duration;
use tokio_postgres::Client;

/// Schema of the stage tables on the shards receiving rows.
pub const STAGE_SCHEMA: &str = "shardgate_stage";

/// A shard taking part, with its own connection (the proxy's pools are for clients).
pub struct Shard {
    pub name: String,
    pub client: Client,
}

/// A sharded table as the rebalance moves it.
#[derive(Debug, Clone)]
pub struct TableMove {
    /// As shards.toml names it.
    pub name: String,
    /// Quoted, schema-qualified when the config qualifies it.
    pub qualified: String,
    /// Quoted stage table on the receiving shards.
    pub stage: String,
    /// Quoted key column.
    pub key: String,
    pub key_type: KeyType,
    /// The key column's SQL type (format_type), to cast keys sent as text.
    pub key_sql_type: String,
    /// Quoted columns in table order, comma-separated.
    pub columns: String,
}

/// A reference table, copied whole onto shards that join.
#[derive(Debug, Clone)]
pub struct RefTable {
    pub name: String,
    pub qualified: String,
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
        None => quote_ident(name),
    }
}

/// Opens a connection of the rebalance's own to a shard, with the TLS `[tls]` asks for.
pub async fn connect(
    shard: &ShardConfig,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<Shard, Error> {
    let mut cfg: tokio_postgres::Config = shard
        .url
        .parse()
        .map_err(|e| Error::config(format!("shard {}: {e}", shard.name)))?;
    cfg.connect_timeout(timeout);
    cfg.application_name("shardgate rebalance");
    let tls = crate::tls::postgres::for_shard(tls, &mut cfg)?;
    let unavailable = |detail| Error::ShardUnavailable {
        shard: shard.name.clone(),
        detail,
    };
    // tokio-postgres bounds only the TCP connect; the TLS handshake and the startup get as
    // long again, as in the proxy's pools.
    let (client, conn) = tokio::time::timeout(timeout * 2, cfg.connect(tls))
        .await
        .map_err(|_| unavailable("TLS handshake or startup timed out".into()))?
        .map_err(|e| unavailable(describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Shard {
        name: shard.name.clone(),
        client,
    })
}

/// Reads each table's columns and key type from `source`.
pub async fn tables(
    source: &Client,
    catalog: &Catalog,
) -> Result<(Vec<TableMove>, Vec<RefTable>), Error> {
    let mut moves = Vec::new();
    let mut refs = Vec::new();
    for rule in catalog.tables() {
        let name = rule.configured_name();
        let qualified = qualified(rule.schema.as_deref(), &rule.name);
        match &rule.kind {
            TableKind::Reference => refs.push(RefTable { name, qualified }),
            TableKind::Sharded { key, key_type, .. } => {
                let rows = source
                    .query(
                        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                                t.typname::text \
                           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
                            AND NOT a.attisdropped AND a.attgenerated = '' \
                          ORDER BY a.attnum",
                        &[&qualified],
                    )
                    .await
                    .map_err(|e| Error::internal(format!("reading {name}: {}", describe(&e))))?;
                if rows.is_empty() {
                    return Err(Error::internal(format!(
                        "table {name} of shards.toml is missing on shard that holds rows"
                    )));
                }
                let cols: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                let Some(k) = rows.iter().find(|r| r.get::<_, String>(0) == *key) else {
                    return Err(Error::internal(format!("{name} has no column {key}")));
                };
                let key_sql_type: String = k.get(1);
                let ty = match key_type {
                    Some(t) => *t,
                    None => key_type_of(&k.get::<_, String>(2)).ok_or_else(|| {
                        Error::unsupported(
                            format!("{name}.{key} is of type {key_sql_type}, which cannot be moved by key"),
                            "shard keys are integers, text or uuid",
                        )
                    })?,
                };
                moves.push(TableMove {
                    stage: format!("{STAGE_SCHEMA}.{}", quote_ident(&name)),
                    key: quote_ident(key),
                    key_type: ty,
                    key_sql_type,
                    columns: cols
                        .iter()
                        .map(|c| quote_ident(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    name,
                    qualified,
                });
            }
        }
    }
    Ok((moves, refs))
}

fn key_type_of(typname: &str) -> Option<KeyType> {
    match typname {
        "int2" | "int4" | "int8" => Some(KeyType::Int),
        "text" | "varchar" | "bpchar" | "name" => Some(KeyType::Text),
        "uuid" => Some(KeyType::Uuid),
        _ => None,
    }
}

/// The shards and weights of a placement, in a stable text form (stored in the journal).
pub fn placement_key(shards: &[ShardConfig], vnodes: u32) -> String {
    let mut parts: Vec<String> = shards
        .iter()
        .map(|s| match s.points {
            Some(p) => format!("{}={}@{p}", s.name, s.weight),
            None => format!("{}={}", s.name, s.weight),
        })
        .collect();
    parts.sort();
    format!("vnodes={vnodes};{}", parts.join(","))
}

/// A shard id for a name among a placement's shards.
pub fn id_of(ids: &[(String, ShardId)], name: &str) -> Option<ShardId> {
    ids.iter().find(|(n, _)| n == name).map(|(_, id)| *id)
}
