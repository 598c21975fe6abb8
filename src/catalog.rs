//! What the proxy knows of each table: sharded (key column, its type and position) or reference.
//!
//! INTERFACE FROZEN FOR HELPERS.

use crate::config::{Config, KeyType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    Sharded {
        /// Key column name, folded as PostgreSQL folds identifiers.
        key: String,
        /// From the config, or discovered from the shards' catalog; None until known.
        key_type: Option<KeyType>,
        /// 0-based position of the key among the table's live columns (for INSERT without a
        /// column list); None until discovered.
        key_position: Option<usize>,
    },
    Reference,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRule {
    /// Schema if the config qualified the name; None matches any schema.
    pub schema: Option<String>,
    pub name: String,
    pub kind: TableKind,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: Vec<TableRule>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Catalog {
        let tables = config
            .tables
            .iter()
            .filter_map(|t| {
                let kind = match (&t.shard_key, t.reference) {
                    (Some(key), _) => TableKind::Sharded {
                        key: key.clone(),
                        key_type: t.key_type,
                        key_position: None,
                    },
                    (None, true) => TableKind::Reference,
                    // Config validation refuses such an entry; leaving it out keeps the table
                    // unknown (refused) rather than guessing how it is placed.
                    (None, false) => return None,
                };
                let (schema, name) = split_qualified(&t.name);
                Some(TableRule { schema, name, kind })
            })
            .collect();
        Catalog { tables }
    }

    /// Looks a table up by (optional schema, name); names already folded.
    pub fn lookup(&self, schema: Option<&str>, name: &str) -> Option<&TableRule> {
        self.tables.iter().find(|rule| {
            rule.name == name
                && match (&rule.schema, schema) {
                    (Some(want), Some(got)) => want == got,
                    _ => true,
                }
        })
    }

    /// Records what the shards' catalog says of a sharded table's key.
    pub fn set_key_info(
        &mut self,
        table: &str,
        key_type: Option<KeyType>,
        key_position: Option<usize>,
    ) {
        let (schema, name) = split_qualified(table);
        for rule in &mut self.tables {
            let schema_matches = match (&rule.schema, &schema) {
                (Some(want), Some(got)) => want == got,
                _ => true,
            };
            if rule.name != name || !schema_matches {
                continue;
            }
            if let TableKind::Sharded {
                key_type: ty,
                key_position: pos,
                ..
            } = &mut rule.kind
            {
                if key_type.is_some() {
                    *ty = key_type;
                }
                *pos = key_position;
            }
        }
    }

    pub fn tables(&self) -> &[TableRule] {
        &self.tables
    }
}

impl TableRule {
    /// The name as shards.toml gives it (folded): "users", or "app.users" when qualified.
    pub fn configured_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// "schema.name" → (Some(schema), name); "name" → (None, name).
fn split_qualified(name: &str) -> (Option<String>, String) {
    match name.rsplit_once('.') {
        Some((schema, table)) => (Some(schema.to_string()), table.to_string()),
        None => (None, name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProxyConfig, TableConfig};

    fn table(name: &str, key: Option<&str>, reference: bool) -> TableConfig {
        TableConfig {
            name: name.into(),
            shard_key: key.map(Into::into),
            key_type: None,
            reference,
        }
    }

    fn catalog() -> Catalog {
        let config = Config {
            proxy: ProxyConfig {
                listen: "127.0.0.1:0".into(),
                max_client_connections: 1,
                pool_size: 1,
                database: None,
                vnodes: 1,
                connect_timeout_ms: 1,
                pool_timeout_ms: 1,
                gather_memory_mb: 1,
                recovery_interval_ms: 10_000,
                rebalance_step_rows: 25_000,
                max_user_connections: 0,
                client_idle_timeout_ms: 0,
                idle_transaction_timeout_ms: 0,
                statement_timeout_ms: 0,
                workers: 0,
                auto_prepare: true,
            },
            auth: None,
            shards: vec![],
            tables: vec![
                table("users", Some("id"), false),
                table("sales.orders", Some("user_id"), false),
                table("countries", None, true),
            ],
            metrics: None,
            stats: Default::default(),
            rate_limits: vec![],
            tls: None,
        };
        Catalog::from_config(&config)
    }

    #[test]
    fn lookup_matches_schema_loosely() {
        let c = catalog();
        assert!(c.lookup(None, "users").is_some());
        assert!(c.lookup(Some("anything"), "users").is_some());
        assert!(c.lookup(None, "orders").is_some());
        assert!(c.lookup(Some("sales"), "orders").is_some());
        assert!(c.lookup(Some("public"), "orders").is_none());
        assert_eq!(
            c.lookup(None, "countries").unwrap().kind,
            TableKind::Reference
        );
        assert!(c.lookup(None, "nope").is_none());
    }

    #[test]
    fn key_info_is_recorded() {
        let mut c = catalog();
        c.set_key_info("sales.orders", Some(KeyType::Int), Some(2));
        match &c.lookup(None, "orders").unwrap().kind {
            TableKind::Sharded {
                key_type,
                key_position,
                ..
            } => {
                assert_eq!(*key_type, Some(KeyType::Int));
                assert_eq!(*key_position, Some(2));
            }
            other => panic!("{other:?}"),
        }
    }
}
