//! Change capture on the shards rows leave: a trigger logs the key of every row written while
//! the copy runs, so the catch-up can copy those keys again. Triggers see every writer (this
//! proxy, other proxies, direct sessions), which tracking in the proxy could not.

use super::copy::describe;
use super::plan::{quote_ident, RefTable, TableMove, STAGE_SCHEMA};
use crate::backend::quote_literal;
use crate::error::Error;
use tokio_postgres::Client;

const TRIGGER: &str = "shardgate_rebalance";

const SETUP: &str = "CREATE SCHEMA IF NOT EXISTS shardgate;
CREATE TABLE IF NOT EXISTS shardgate.rebalance_log (
  id bigserial PRIMARY KEY,
  tbl text NOT NULL,
  k text);
CREATE OR REPLACE FUNCTION shardgate.rebalance_capture() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    -- TRUNCATE: no keys to name; NULL asks for the whole table.
    INSERT INTO shardgate.rebalance_log (tbl, k) VALUES (TG_ARGV[0], NULL);
    RETURN NULL;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO shardgate.rebalance_log (tbl, k)
      VALUES (TG_ARGV[0], CASE WHEN TG_ARGV[1] = '' THEN NULL ELSE to_jsonb(NEW) ->> TG_ARGV[1] END);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO shardgate.rebalance_log (tbl, k)
      VALUES (TG_ARGV[0], CASE WHEN TG_ARGV[1] = '' THEN NULL ELSE to_jsonb(OLD) ->> TG_ARGV[1] END);
  END IF;
  RETURN NULL;
END
$fn$;";

fn fail(doing: &str, e: tokio_postgres::Error) -> Error {
    Error::internal(format!("rebalance: {doing}: {}", describe(&e)))
}

/// Installs the log and a trigger on each table (sharded tables log keys; reference tables
/// log that they changed). Each table is done in a transaction of its own, with CREATE OR
/// REPLACE (no DROP, whose exclusive lock would block readers): holding one table's lock while
/// waiting for another's would deadlock with a client writing a child row, whose foreign key
/// check locks the parent.
pub async fn install(client: &Client, moves: &[TableMove], refs: &[RefTable]) -> Result<(), Error> {
    client
        .batch_execute(SETUP)
        .await
        .map_err(|e| fail("installing change capture", e))?;
    let tables = moves
        .iter()
        .map(|t| (&t.name, &t.qualified, key_name(&t.key)))
        .chain(refs.iter().map(|r| (&r.name, &r.qualified, String::new())));
    for (name, q, key) in tables {
        let (n, k) = (quote_literal(name), quote_literal(&key));
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '5s';
CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {q}
  FOR EACH ROW EXECUTE FUNCTION shardgate.rebalance_capture({n}, {k});
CREATE OR REPLACE TRIGGER {TRIGGER}_t AFTER TRUNCATE ON {q}
  FOR EACH STATEMENT EXECUTE FUNCTION shardgate.rebalance_capture({n}, {k});
COMMIT;"
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| fail("installing change capture", e))?;
    }
    Ok(())
}

/// Removes the triggers and the log (idempotent).
pub async fn remove(client: &Client, moves: &[TableMove], refs: &[RefTable]) -> Result<(), Error> {
    let names: Vec<String> = moves
        .iter()
        .map(|t| t.qualified.clone())
        .chain(refs.iter().map(|r| r.qualified.clone()))
        .collect();
    remove_named(client, &names).await
}

/// `remove` by the tables' quoted names; tables missing on this shard are skipped. One table
/// per transaction, for the reason `install` gives.
pub async fn remove_named(client: &Client, qualified: &[String]) -> Result<(), Error> {
    for q in qualified {
        let lit = quote_literal(q);
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '5s';
DO $do$ BEGIN IF to_regclass({lit}) IS NOT NULL THEN \
   DROP TRIGGER IF EXISTS {TRIGGER} ON {q}; DROP TRIGGER IF EXISTS {TRIGGER}_t ON {q}; \
 END IF; END $do$;
COMMIT;"
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| fail("removing change capture", e))?;
    }
    client
        .batch_execute(
            "DROP TABLE IF EXISTS shardgate.rebalance_log;
             DROP FUNCTION IF EXISTS shardgate.rebalance_capture();",
        )
        .await
        .map_err(|e| fail("removing change capture", e))
}

/// The column name inside a quoted identifier (to_jsonb's keys are bare names).
fn key_name(quoted: &str) -> String {
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map(|s| s.replace("\"\"", "\""))
        .unwrap_or_else(|| quoted.to_owned())
}

/// Takes up to `limit` logged changes off the log: (table, key), key None = the whole table.
/// Entries of transactions not yet committed are invisible here and stay for a later round.
pub async fn drain(client: &Client, limit: i64) -> Result<Vec<(String, Option<String>)>, Error> {
    let rows = client
        .query(
            "DELETE FROM shardgate.rebalance_log WHERE id IN \
               (SELECT id FROM shardgate.rebalance_log ORDER BY id LIMIT $1) \
             RETURNING tbl, k",
            &[&limit],
        )
        .await
        .map_err(|e| fail("reading the change log", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// (Re)creates the stage tables on a shard receiving rows: same columns as the real table,
/// unlogged (a crash restarts the rebalance anyway), with an index on the key for catch-up.
pub async fn create_stage(client: &Client, moves: &[TableMove]) -> Result<(), Error> {
    let mut sql = format!("CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA};\n");
    for t in moves {
        sql.push_str(&format!(
            "DROP TABLE IF EXISTS {s};
CREATE UNLOGGED TABLE {s} AS SELECT {c} FROM {q} WITH NO DATA;
CREATE INDEX ON {s} ({k});\n",
            s = t.stage,
            c = t.columns,
            q = t.qualified,
            k = t.key,
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| fail("creating stage tables", e))
}

/// Drops every stage table (idempotent).
pub async fn drop_stage(client: &Client) -> Result<(), Error> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {STAGE_SCHEMA} CASCADE"))
        .await
        .map_err(|e| fail("dropping stage tables", e))
}

/// Removes the given keys' rows from a stage table (before copying them again).
pub async fn unstage(client: &Client, table: &TableMove, keys: &[String]) -> Result<(), Error> {
    let sql = format!(
        "DELETE FROM {} WHERE {} = ANY($1::text[]::{}[])",
        table.stage, table.key, table.key_sql_type
    );
    client
        .execute(sql.as_str(), &[&keys])
        .await
        .map(drop)
        .map_err(|e| fail("refreshing stage rows", e))
}

/// `quote_ident` for callers that build stage names.
pub fn stage_name(table: &str) -> String {
    format!("{STAGE_SCHEMA}.{}", quote_ident(table))
}
