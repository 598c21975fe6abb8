//! shardgate: a sharding proxy for PostgreSQL.

pub mod catalog;
pub mod config;
pub mod error;
pub mod ring;
pub mod router;
