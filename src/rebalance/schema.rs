//! Recreates tables on a shard that lacks them (a new, possibly empty database) from an existing
//! shard's catalog, so that a rebalance has somewhere to copy rows to.
//!
//! Covered: columns (type, collation, NOT NULL, default, identity, stored generated), the sequences
//! the defaults use, PRIMARY KEY / UNIQUE / CHECK / EXCLUDE / FOREIGN KEY constraints, other
//! indexes, UNLOGGED and storage parameters. Not covered: triggers, policies, grants, owners,
//! comments, tablespaces, and user-defined types, domains or extensions the columns need (those
//! must exist on the target; otherwise CREATE TABLE fails there and nothing is created).

use crate::error::Error;
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// The statements that recreate `schema.table` (as it is on `source`) on another database:
/// sequences its columns' defaults use, CREATE TABLE with columns (types via format_type,
/// collation if not default, NOT NULL, defaults via pg_get_expr, identity columns), constraints
/// (pg_get_constraintdef: PRIMARY KEY, UNIQUE, CHECK, EXCLUDE; FOREIGN KEY last, only when the
/// referenced table also exists on the target or is in the same batch), and the other indexes
/// (pg_get_indexdef).
///
/// Without a target to look at, this returns every FOREIGN KEY; `ensure_tables` filters them.
/// Names are schema-qualified, so the target's search_path does not matter. `source` briefly has
/// its search_path set to '' (restored before returning): do not share it with other tasks
/// during the call.
pub async fn table_ddl(
    source: &Client,
    schema: Option<&str>,
    table: &str,
) -> Result<Vec<String>, Error> {
    let Some(rel) = resolve(source, schema, table).await? else {
        let shown = schema.map_or(table.to_owned(), |s| format!("{s}.{table}"));
        return Err(Error::internal(format!(
            "table {shown} does not exist on the source shard"
        )));
    };
    let ddl = read_qualified(source, rel.oid).await?;
    let mut out = Vec::new();
    for seq in &ddl.sequences {
        out.push(seq.create.clone());
        out.push(seq.setval.clone());
    }
    out.push(ddl.create.clone());
    out.extend(ddl.sequences.iter().filter_map(|s| s.owned_by.clone()));
    out.extend(ddl.after_create.iter().cloned());
    out.extend(ddl.foreign_keys.iter().map(|fk| fk.sql.clone()));
    Ok(out)
}

/// Creates on `target` each of `tables` (schema, name) missing there, from `source`; creates
/// missing schemas too; all in one transaction on target. Returns the tables it created, as
/// `schema.name` (unquoted; a table given without schema is resolved by `source`'s search_path
/// and created in the same schema on `target`).
///
/// A table that does not exist on `source` either is skipped with a warning: shards.toml may list
/// tables not created yet, and there are no rows to move for them. `target` must not be inside a
/// transaction of its own. Sequences that already exist on `target` are left as they are.
pub async fn ensure_tables(
    source: &Client,
    target: &Client,
    tables: &[(Option<String>, String)],
) -> Result<Vec<String>, Error> {
    let mut missing: Vec<Relation> = Vec::new();
    for (schema, name) in tables {
        let Some(rel) = resolve(source, schema.as_deref(), name).await? else {
            tracing::warn!(
                "rebalance: table {name} does not exist on the source shard; not created"
            );
            continue;
        };
        let duplicate = missing.iter().any(|m| m.oid == rel.oid);
        if !duplicate && !exists(target, &rel.schema, &rel.name).await? {
            missing.push(rel);
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut ddls = Vec::new();
    for rel in &missing {
        ddls.push(read_qualified(source, rel.oid).await?);
    }

    // Sequences first (defaults need them), then tables, then foreign keys once every table of the
    // batch exists, so the order of `tables` does not matter.
    let mut statements = Vec::new();
    let schemas: BTreeSet<&String> = (ddls.iter())
        .flat_map(|d| std::iter::once(&d.schema).chain(d.sequences.iter().map(|s| &s.schema)))
        .collect();
    for s in schemas {
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(s)));
    }
    let mut sequences_made = BTreeSet::new();
    for ddl in &ddls {
        for seq in &ddl.sequences {
            // One sequence may serve several tables, or exist on the target already (a table there
            // uses it): create it once, and never move an existing one's value.
            if sequences_made.contains(&seq.qualified)
                || exists(target, &seq.schema, &seq.name).await?
            {
                continue;
            }
            sequences_made.insert(seq.qualified.clone());
            statements.push(seq.create.clone());
            statements.push(seq.setval.clone());
        }
    }
    for ddl in &ddls {
        statements.push(ddl.create.clone());
        for seq in &ddl.sequences {
            if let Some(owned) = seq
                .owned_by
                .as_ref()
                .filter(|_| sequences_made.contains(&seq.qualified))
            {
                statements.push(owned.clone());
            }
        }
        statements.extend(ddl.after_create.iter().cloned());
    }
    for ddl in &ddls {
        for fk in &ddl.foreign_keys {
            let (s, t) = &fk.references;
            let in_batch = ddls.iter().any(|d| (&d.schema, &d.name) == (s, t));
            if in_batch || exists(target, s, t).await? {
                statements.push(fk.sql.clone());
            } else {
                tracing::warn!(
                    "rebalance: {}.{}: foreign key to {s}.{t} not created: {s}.{t} is not on the new shard",
                    ddl.schema,
                    ddl.name
                );
            }
        }
    }

    let all = std::iter::once("BEGIN").chain(statements.iter().map(String::as_str));
    for sql in all.chain(["COMMIT"]) {
        if let Err(e) = target.batch_execute(sql).await {
            // Leave the connection usable; the error that matters is the statement's.
            let _ = target.batch_execute("ROLLBACK").await;
            return Err(pg_error(&format!("on the new shard: {sql}"), e));
        }
    }
    let created: Vec<String> = ddls
        .iter()
        .map(|d| format!("{}.{}", d.schema, d.name))
        .collect();
    tracing::info!("rebalance: created on the new shard: {created:?}");
    Ok(created)
}

/// A table found on the source: its oid, and its schema and name unquoted.
struct Relation {
    oid: u32,
    schema: String,
    name: String,
}

/// One table's DDL in the pieces `ensure_tables` orders across a batch.
struct TableDdl {
    schema: String,
    name: String,
    sequences: Vec<SequenceDdl>,
    create: String,
    /// Identity sequences' setval, constraints other than FOREIGN KEY, and indexes.
    after_create: Vec<String>,
    foreign_keys: Vec<ForeignKey>,
}

struct SequenceDdl {
    schema: String,
    name: String,
    qualified: String,
    create: String,
    setval: String,
    /// ALTER SEQUENCE ... OWNED BY, for serial columns' sequences (dropped with the table).
    owned_by: Option<String>,
}

struct ForeignKey {
    /// The referenced table's (schema, name), unquoted.
    references: (String, String),
    sql: String,
}

/// Finds the table as the source's search_path would, or in `schema`; None when absent.
async fn resolve(
    source: &Client,
    schema: Option<&str>,
    table: &str,
) -> Result<Option<Relation>, Error> {
    let row = source
        .query_opt(
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = pg_catalog.to_regclass(CASE WHEN $1::text IS NULL THEN pg_catalog.quote_ident($2) \
                 ELSE pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2) END)",
            &[&schema, &table],
        )
        .await
        .map_err(|e| pg_error("resolving a table on the source shard", e))?;
    Ok(row.map(|row| Relation {
        oid: row.get(0),
        schema: row.get(1),
        name: row.get(2),
    }))
}

/// Whether `schema.name` (unquoted) names any relation on `client`.
async fn exists(client: &Client, schema: &str, name: &str) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2)) IS NOT NULL",
            &[&schema, &name],
        )
        .await
        .map_err(|e| pg_error("looking for a table on the new shard", e))?;
    Ok(row.get(0))
}

/// Reads the table's DDL with search_path set to '' (as pg_dump does), so every name that
/// format_type, pg_get_expr and pg_get_*def print is schema-qualified; then restores search_path.
async fn read_qualified(source: &Client, oid: u32) -> Result<TableDdl, Error> {
    let fail = |e| pg_error("reading the source shard's catalog", e);
    let saved: String = source
        .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
        .await
        .map_err(fail)?
        .get(0);
    source
        .batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")
        .await
        .map_err(fail)?;
    let ddl = read(source, oid).await;
    // In an aborted transaction this fails, but then the rollback restores the setting anyway.
    let restored = source
        .execute(
            "SELECT pg_catalog.set_config('search_path', $1, false)",
            &[&saved],
        )
        .await;
    let ddl = ddl?;
    restored.map_err(fail)?;
    Ok(ddl)
}

async fn read(source: &Client, oid: u32) -> Result<TableDdl, Error> {
    let fail = |e| pg_error("reading the source shard's catalog", e);
    let rel = source
        .query_one(
            "SELECT CASE WHEN c.relkind = 'p' OR c.relispartition THEN 'partitioned or a partition' \
                 WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE c.oid IN (i.inhrelid, i.inhparent)) \
                   THEN 'in an inheritance hierarchy' \
                 WHEN c.relkind <> 'r' OR c.reloftype <> 0 THEN 'not an ordinary table' END, \
               c.relpersistence = 'u', pg_catalog.array_to_string(c.reloptions, ', '), \
               n.nspname, c.relname, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .map_err(fail)?;
    let (schema, name, qualified): (String, String, String) = (rel.get(3), rel.get(4), rel.get(5));
    if let Some(what) = rel.get::<_, Option<String>>(0) {
        return Err(Error::unsupported(
            format!("cannot create {qualified} on the new shard: it is {what}"),
            "create the table on the new shard by hand before rebalancing",
        ));
    }

    let sequences = read_sequences(source, oid, &qualified).await?;
    let columns = source
        .query(
            "SELECT pg_catalog.quote_ident(a.attname), pg_catalog.format_type(a.atttypid, a.atttypmod), \
               a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
               CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 \
                 THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END, \
               pg_catalog.pg_get_serial_sequence($2, a.attname) \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
             LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid, &qualified],
        )
        .await
        .map_err(fail)?;
    let mut defs = Vec::new();
    let mut after_create = Vec::new();
    for c in &columns {
        let mut def = format!("{} {}", c.get::<_, String>(0), c.get::<_, String>(1));
        if let Some(collation) = c.get::<_, Option<String>>(6) {
            def.push_str(&format!(" COLLATE {collation}"));
        }
        let default: Option<String> = c.get(3);
        let (identity, generated): (String, String) = (c.get(4), c.get(5));
        if generated == "s" {
            def.push_str(&format!(
                " GENERATED ALWAYS AS ({}) STORED",
                default.unwrap_or_default()
            ));
        } else if let Some(default) = default {
            def.push_str(&format!(" DEFAULT {default}"));
        } else if !identity.is_empty() {
            // pg_get_serial_sequence also names identity sequences; its text is already quoted.
            let seq_name: String = c.get::<_, Option<String>>(7).unwrap_or_default();
            let seq = sequence_state(source, &seq_name).await?;
            let when = if identity == "a" {
                "ALWAYS"
            } else {
                "BY DEFAULT"
            };
            def.push_str(&format!(
                " GENERATED {when} AS IDENTITY (SEQUENCE NAME {seq_name} {})",
                seq.options
            ));
            after_create.push(seq.setval);
        }
        if c.get::<_, bool>(2) {
            def.push_str(" NOT NULL");
        }
        defs.push(def);
    }
    let mut create = format!(
        "CREATE {}TABLE {qualified} (\n    {}\n)",
        if rel.get::<_, bool>(1) {
            "UNLOGGED "
        } else {
            ""
        },
        defs.join(",\n    ")
    );
    if let Some(options) = rel.get::<_, Option<String>>(2).filter(|o| !o.is_empty()) {
        create.push_str(&format!(" WITH ({options})"));
    }

    // contype 'n' (NOT NULL, PostgreSQL 18+) is already in the column definitions; 't' (constraint
    // triggers) belongs with the triggers, which are not copied.
    let constraints = source
        .query(
            "SELECT pg_catalog.quote_ident(con.conname), pg_catalog.pg_get_constraintdef(con.oid), \
               con.contype = 'f', rn.nspname, rc.relname \
             FROM pg_catalog.pg_constraint con \
             LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
             LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE con.conrelid = $1 AND con.contype IN ('p', 'u', 'c', 'x', 'f') \
             ORDER BY pg_catalog.strpos('pucxf', con.contype::text), con.conname",
            &[&oid],
        )
        .await
        .map_err(fail)?;
    let mut foreign_keys = Vec::new();
    for c in &constraints {
        let sql = format!(
            "ALTER TABLE {qualified} ADD CONSTRAINT {} {}",
            c.get::<_, String>(0),
            c.get::<_, String>(1)
        );
        if c.get::<_, bool>(2) {
            foreign_keys.push(ForeignKey {
                references: (c.get(3), c.get(4)),
                sql,
            });
        } else {
            after_create.push(sql);
        }
    }
    // Indexes that back a constraint were made by ADD CONSTRAINT above.
    let indexes = source
        .query(
            "SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i \
             WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con \
               WHERE con.conrelid = i.indrelid AND con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')) \
             ORDER BY i.indexrelid",
            &[&oid],
        )
        .await
        .map_err(fail)?;
    after_create.extend(indexes.iter().map(|r| r.get::<_, String>(0)));
    Ok(TableDdl {
        schema,
        name,
        sequences,
        create,
        after_create,
        foreign_keys,
    })
}

/// The sequences the table's column defaults use (`nextval('seq'::regclass)` records a dependency
/// of the default on the sequence), with serial columns' OWNED BY. Identity sequences are made by
/// CREATE TABLE itself.
///
/// Each shard has its own sequence, so shards hand out overlapping values; the new shard's starts
/// at the source's current value. That is acceptable: keys unique across shards cannot come from
/// per-shard sequences anyway (the proxy routes by key, it does not coordinate sequences).
async fn read_sequences(source: &Client, oid: u32, table: &str) -> Result<Vec<SequenceDdl>, Error> {
    let rows = source
        .query(
            "SELECT DISTINCT s.oid, n.nspname, s.relname, \
               pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.relname), \
               (SELECT pg_catalog.quote_ident(a.attname) FROM pg_catalog.pg_depend o \
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = o.refobjid AND a.attnum = o.refobjsubid \
                WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objid = s.oid AND o.deptype = 'a' \
                  AND o.refclassid = 'pg_catalog.pg_class'::regclass AND o.refobjid = $1) \
             FROM pg_catalog.pg_attrdef d \
             JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::regclass AND dep.objid = d.oid \
               AND dep.refclassid = 'pg_catalog.pg_class'::regclass \
             JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S' \
             JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace \
             WHERE d.adrelid = $1 ORDER BY s.oid",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error("reading the source shard's sequences", e))?;
    let mut out = Vec::new();
    for r in &rows {
        let qualified: String = r.get(3);
        let state = sequence_state(source, &qualified).await?;
        out.push(SequenceDdl {
            schema: r.get(1),
            name: r.get(2),
            create: format!(
                "CREATE SEQUENCE {qualified} AS {} {}",
                state.type_name, state.options
            ),
            owned_by: (r.get::<_, Option<String>>(4))
                .map(|col| format!("ALTER SEQUENCE {qualified} OWNED BY {table}.{col}")),
            setval: state.setval,
            qualified,
        });
    }
    Ok(out)
}

struct SequenceState {
    type_name: String,
    /// INCREMENT BY ... CYCLE, as CREATE SEQUENCE and identity columns take them.
    options: String,
    /// Sets the copy to the source's current value.
    setval: String,
}

/// A sequence's parameters and current value; `qualified` is its quoted, schema-qualified name.
async fn sequence_state(source: &Client, qualified: &str) -> Result<SequenceState, Error> {
    let fail = |e| {
        pg_error(
            &format!("reading sequence {qualified} on the source shard"),
            e,
        )
    };
    let p = source
        .query_one(
            "SELECT pg_catalog.format_type(seqtypid, NULL), pg_catalog.format( \
               'INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %sCYCLE', \
               seqincrement, seqmin, seqmax, seqstart, seqcache, CASE WHEN seqcycle THEN '' ELSE 'NO ' END) \
             FROM pg_catalog.pg_sequence WHERE seqrelid = $1::text::regclass",
            &[&qualified],
        )
        .await
        .map_err(fail)?;
    // Read from the sequence itself: pg_sequence_last_value hides a setval(..., false).
    let setval = format!(
        "SELECT pg_catalog.format('SELECT pg_catalog.setval(%L, %s, %s)', $1::text, last_value, is_called::text) \
         FROM {qualified}"
    );
    let v = source
        .query_one(&setval, &[&qualified])
        .await
        .map_err(fail)?;
    Ok(SequenceState {
        type_name: p.get(0),
        options: p.get(1),
        setval: v.get(0),
    })
}

/// An identifier, always double-quoted (correct for any name, keywords included).
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A tokio_postgres failure as the crate's error, with the server's message when there is one.
fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::internal(format!("{what}: {} ({})", db.message(), db.code().code())),
        None => Error::internal(format!("{what}: {e}")),
    }
}
