//! Reads the shards' catalog to learn each sharded table's key type and column position.

use super::Backend;
use crate::catalog::{Catalog, TableKind};
use crate::config::KeyType;
use crate::error::Error;
use crate::ring::ShardId;

/// What one shard's catalog says of a configured table's key: (table, type, position).
pub type KeyInfo = (String, Option<KeyType>, Option<usize>);

/// Asks the first reachable of `shards` for the key column of every sharded table in `catalog`
/// (the schema is shared, so one shard speaks for all). Tables that do not exist yet are absent.
pub async fn discover_keys(
    backend: &Backend,
    shards: &[ShardId],
    catalog: &Catalog,
) -> Result<Vec<KeyInfo>, Error> {
    let wanted: Vec<_> = catalog
        .tables()
        .iter()
        .filter_map(|t| match &t.kind {
            TableKind::Sharded { key, .. } => Some((t, key)),
            TableKind::Reference => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names = wanted
        .iter()
        .map(|(t, _)| quote_literal(&t.name))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT c.relname, n.nspname, a.attname, a.atttypid::int4, \
           (SELECT count(*) FROM pg_catalog.pg_attribute b WHERE b.attrelid = c.oid \
              AND b.attnum > 0 AND NOT b.attisdropped AND b.attnum < a.attnum), \
           pg_catalog.pg_table_is_visible(c.oid) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
           AND c.relname IN ({names})"
    );
    let mut last_err = None;
    for &id in shards {
        let rows = match backend.checkout_quiet(id).await {
            Ok(mut conn) => conn.query_rows(&sql).await,
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => return Ok(match_rows(&wanted, &rows)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::internal("no shards")))
}

/// The collation of the shards' database (`datcollate`), asked of the first reachable of
/// `shards`.
pub async fn discover_collation(backend: &Backend, shards: &[ShardId]) -> Result<String, Error> {
    let sql = "SELECT datcollate FROM pg_catalog.pg_database WHERE datname = current_database()";
    let mut last_err = None;
    for &id in shards {
        let rows = match backend.checkout_quiet(id).await {
            Ok(mut conn) => conn.query_rows(sql).await,
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => {
                let name = rows.first().and_then(|r| r.first().cloned().flatten());
                return Ok(name.unwrap_or_else(|| "C".into()));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::internal("no shards")))
}

fn match_rows(
    wanted: &[(&crate::catalog::TableRule, &String)],
    rows: &[Vec<Option<String>>],
) -> Vec<KeyInfo> {
    let mut out = Vec::new();
    for (rule, key) in wanted {
        let hit = rows.iter().find(|r| {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            col(0) == rule.name
                && col(2) == key.as_str()
                && match &rule.schema {
                    Some(s) => col(1) == s,
                    None => col(5) == "t",
                }
        });
        if let Some(r) = hit {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let ty = match col(3).parse::<u32>().unwrap_or(0) {
                20 | 21 | 23 => Some(KeyType::Int),
                25 | 1043 | 1042 | 19 => Some(KeyType::Text),
                2950 => Some(KeyType::Uuid),
                _ => None,
            };
            out.push((rule.name.clone(), ty, col(4).parse().ok()));
        }
    }
    out
}

/// A SQL string literal (standard_conforming_strings on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
