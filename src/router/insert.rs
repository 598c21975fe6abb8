//! INSERT planning: the key of each VALUES row, and the template that re-renders the INSERT
//! with a subset of its rows (sliced from the original text, so every literal stays as written).

use super::classify::Planned;
use super::keys::{self, fold, Lit};
use super::split::Offsets;
use super::tables::{Ctx, Role, Walker};
use super::{BoundKeys, InsertTemplate, SplitInsert, Target};
use crate::catalog::{Catalog, TableKind};
use crate::config::KeyType;
use crate::error::Error;
use crate::ring::Key;
use sqlparser::ast::{AssignmentTarget, Insert, OnConflictAction, OnInsert, SetExpr, TableObject};

fn refuse(message: String, hint: &str) -> Planned {
    Planned::write(Target::Reject(Error::unsupported(message, hint)))
}

/// Plans `ins`, whose text is `text`; `in_with` when it is the body of a WITH query.
pub(super) fn plan(ins: &Insert, text: &str, catalog: &Catalog, in_with: bool) -> Planned {
    let TableObject::TableName(name) = &ins.table else {
        return Planned::write(Target::Any);
    };
    let mut walker = Walker::new(catalog);
    let (shown, rule) = match walker.classify(name) {
        Ok(found) => found,
        Err(Role::Unknown(table)) => {
            return Planned::write(Target::Reject(Error::UnknownTable { table }))
        }
        // Catalog tables and the like: PostgreSQL decides.
        Err(_) => return Planned::write(Target::Any),
    };
    let TableKind::Sharded {
        key,
        key_type,
        key_position,
    } = &rule.kind
    else {
        if let Some(source) = &ins.source {
            walker.query(source, Ctx::Subquery);
        }
        walker.scan(&ins.on);
        walker.scan(&ins.returning);
        walker.refs.tables.insert(0, rule.configured_name());
        return Planned::write_to(&walker.refs, &Role::Reference(shown));
    };
    if in_with {
        return refuse(
            format!("INSERT into sharded table {shown} with a WITH clause is not supported by shardgate"),
            "run the WITH part separately and INSERT with VALUES",
        );
    }
    let Some(source) = &ins.source else {
        return refuse(
            format!("INSERT into sharded table {shown} without VALUES (DEFAULT VALUES) cannot be placed on a shard"),
            &format!("give the shard key a value: INSERT INTO {shown} ({key}, ...) VALUES (...)"),
        );
    };
    let SetExpr::Values(values) = source.body.as_ref() else {
        return refuse(
            format!("INSERT ... SELECT into sharded table {shown} is not supported by shardgate"),
            "select the rows first, then INSERT them with VALUES",
        );
    };
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || values.explicit_row
    {
        return refuse(
            format!("this form of INSERT into sharded table {shown} is not supported by shardgate"),
            "use INSERT INTO ... (columns) VALUES (...), (...)",
        );
    }
    let index = if ins.columns.is_empty() {
        match key_position {
            Some(p) => *p,
            None => {
                return refuse(
                    format!("INSERT into {shown} without a column list needs the key's position; list the columns"),
                    &format!("write INSERT INTO {shown} ({key}, ...) VALUES (...)"),
                )
            }
        }
    } else {
        let column_names = ins
            .columns
            .iter()
            .map(|c| c.0.last().and_then(|p| p.as_ident()).map(fold));
        match column_names.into_iter().position(|c| c.as_deref() == Some(key.as_str())) {
            Some(i) => i,
            None => {
                return refuse(
                    format!("INSERT into sharded table {shown} must give the shard key column {key} a value"),
                    &format!("add {key} to the column list"),
                )
            }
        }
    };
    let Some(ty) = *key_type else {
        return refuse(
            format!("the type of {shown}.{key} is not known yet"),
            "set key_type for the table in shards.toml, or retry once shardgate has read the shards' catalog",
        );
    };
    walker.scan(values);
    walker.scan(&ins.on);
    walker.scan(&ins.returning);
    if let Some(error) = walker.refs.error.take() {
        return Planned::write(Target::Reject(error));
    }
    if let Some(table) = walker.refs.unknown.take() {
        return Planned::write(Target::Reject(Error::UnknownTable { table }));
    }
    if let Some(other) = walker.refs.occs.first() {
        return refuse(
            format!(
                "an INSERT into {shown} that reads sharded table {} is not supported by shardgate",
                other.name
            ),
            "read the values first, then INSERT them as constants",
        );
    }
    if let Some(OnInsert::OnConflict(c)) = &ins.on {
        if let OnConflictAction::DoUpdate(update) = &c.action {
            let names = update.assignments.iter().flat_map(|a| match &a.target {
                AssignmentTarget::ColumnName(n) => std::slice::from_ref(n).iter(),
                AssignmentTarget::Tuple(ns) => ns.iter(),
            });
            if names
                .filter_map(super::tables::qualified)
                .any(|(_, c)| c == *key)
            {
                return refuse(
                    format!("shardgate cannot change the shard key {shown}.{key}: changing the shard key would move the row to another shard"),
                    "leave the key out of ON CONFLICT DO UPDATE SET",
                );
            }
        }
    }
    let mut row_keys = Vec::with_capacity(values.rows.len());
    let mut params: Vec<usize> = Vec::new();
    for (n, row) in values.rows.iter().enumerate() {
        match row_key(row.content.get(index), ty, &shown, key, n + 1) {
            Ok(RowKey::Key(k)) => row_keys.push(k),
            Ok(RowKey::Param(i)) => {
                if !params.contains(&i) {
                    params.push(i);
                }
            }
            Err(e) => return Planned::write(Target::Reject(e)),
        }
    }
    if !params.is_empty() {
        let mut literals: Vec<Key> = Vec::with_capacity(row_keys.len());
        for k in row_keys {
            if !literals.contains(&k) {
                literals.push(k);
            }
        }
        return placed(
            rule,
            Target::Bound(BoundKeys {
                key_type: ty,
                literals,
                params,
                arrays: Vec::new(),
            }),
        );
    }
    if row_keys.windows(2).all(|w| w[0] == w[1]) {
        row_keys.truncate(1);
        return placed(rule, Target::Keys(row_keys));
    }
    match template(text, values) {
        Some(template) => placed(
            rule,
            Target::Split(SplitInsert {
                keys: row_keys,
                template,
            }),
        ),
        None => Planned::write(Target::Reject(Error::internal(
            "could not locate the VALUES rows of a multi-row INSERT",
        ))),
    }
}

fn placed(rule: &crate::catalog::TableRule, target: Target) -> Planned {
    Planned {
        inserts: true,
        tables: super::TableList::of([std::sync::Arc::from(rule.configured_name())]),
        ..Planned::write(target)
    }
}

/// A row's shard key: a constant, or the parameter (0-based) that will hold it at Bind time.
enum RowKey {
    Key(Key),
    Param(usize),
}

fn row_key(
    expr: Option<&sqlparser::ast::Expr>,
    ty: KeyType,
    table: &str,
    key: &str,
    row: usize,
) -> Result<RowKey, Error> {
    let Some(expr) = expr else {
        return Err(Error::unsupported(
            format!("row {row} of the INSERT into {table} has no value for the shard key {key}"),
            "give every row a value for each listed column",
        ));
    };
    match keys::literal(expr) {
        Lit::Val(text) => Key::from_text(ty, &text).map(RowKey::Key).map_err(|e| {
            Error::unsupported(
                format!("row {row} of the INSERT into {table} cannot be placed: {}", e.0),
                format!("the shard key {key} takes {} values", type_name(ty)),
            )
        }),
        Lit::Null => Err(Error::unsupported(
            format!("row {row} of the INSERT into {table} has a NULL shard key {key}, which cannot be placed on a shard"),
            "give the shard key a value",
        )),
        Lit::Param(p) => Ok(RowKey::Param(p.index)),
        Lit::Other => Err(Error::unsupported(
            format!("the shard key {key} of row {row} of the INSERT into {table} must be a constant to place the row"),
            "compute the key first and write it as a constant (DEFAULT, functions and expressions cannot be placed)",
        )),
    }
}

pub(super) fn type_name(ty: KeyType) -> &'static str {
    match ty {
        KeyType::Int => "integer",
        KeyType::Text => "text",
        KeyType::Uuid => "uuid",
    }
}

/// Byte ranges of each VALUES row, `(` to `)`, from the tokens the parser kept.
fn template(text: &str, values: &sqlparser::ast::Values) -> Option<InsertTemplate> {
    let mut offsets = Offsets::new(text);
    let mut rows = Vec::with_capacity(values.rows.len());
    let mut prev_end = 0;
    for row in &values.rows {
        let start = offsets.byte(row.opening_token.0.span.start);
        let end = offsets.byte(row.closing_token.0.span.end);
        let slice = text.get(start..end)?;
        if start < prev_end || !slice.starts_with('(') || !slice.ends_with(')') {
            return None;
        }
        prev_end = end;
        rows.push(start..end);
    }
    Some(InsertTemplate {
        text: text.to_string(),
        rows,
    })
}
