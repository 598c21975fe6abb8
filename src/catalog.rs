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
        let _ = config;
        todo!("helper: router")
    }

    /// Looks a table up by (optional schema, name); names already folded.
    pub fn lookup(&self, schema: Option<&str>, name: &str) -> Option<&TableRule> {
        let _ = (schema, name);
        todo!("helper: router")
    }

    /// Records what the shards' catalog says of a sharded table's key.
    pub fn set_key_info(&mut self, table: &str, key_type: Option<KeyType>, key_position: Option<usize>) {
        let _ = (table, key_type, key_position);
        todo!("helper: router")
    }

    pub fn tables(&self) -> &[TableRule] {
        &self.tables
    }
}
