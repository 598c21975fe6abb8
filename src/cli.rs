//! The offline commands: `check`, `route` and `plan` (no shard is contacted).

use crate::catalog::{Catalog, TableKind};
use crate::config::{Config, KeyType};
use crate::error::Error;
use crate::explain;
use crate::ring::{self, Ring};
use std::path::Path;

/// `shardgate check`: validates the config and prints how the ring divides the key space.
pub fn check(path: &Path) -> Result<(), Error> {
    let config = Config::load(path)?;
    crate::check_auth(&config)?;
    crate::check_tls(&config)?;
    let ring = Ring::new(&config.shards, config.proxy.vnodes);
    println!("{}: ok", path.display());
    println!(
        "{} shards, {} vnodes per unit of weight, spread (max/mean ownership) {:.3}",
        config.shards.len(),
        config.proxy.vnodes,
        ring::spread(&ring)
    );
    println!("{:<16} {:>6} {:>10}  url", "shard", "weight", "keys");
    for (s, share) in config.shards.iter().zip(ring.ownership()) {
        println!(
            "{:<16} {:>6} {:>9.2}%  {}",
            s.name,
            s.weight,
            share * 100.0,
            s.redacted_url()
        );
    }
    for t in &config.tables {
        match (&t.shard_key, t.reference) {
            (Some(k), _) => println!("table {}: sharded by {k}", t.name),
            (None, _) => println!("table {}: reference (a copy on every shard)", t.name),
        }
    }
    Ok(())
}

/// `shardgate route`: where each statement of `sql` would go, and why.
pub fn route(path: &Path, sql: &str) -> Result<(), Error> {
    let config = Config::load(path)?;
    let ring = Ring::new(&config.shards, config.proxy.vnodes);
    let mut catalog = Catalog::from_config(&config);
    let mut assumed = Vec::new();
    for t in catalog.tables().to_vec() {
        if let TableKind::Sharded {
            key_type: None,
            key,
            ..
        } = &t.kind
        {
            // Offline there is no shard to ask; integer keys are by far the most common.
            catalog.set_key_info(&t.name, Some(KeyType::Int), None);
            assumed.push(format!("{}.{key}", t.name));
        }
    }
    if !assumed.is_empty() {
        println!(
            "note: assuming integer keys for {} (set key_type in shards.toml to be sure)",
            assumed.join(", ")
        );
    }
    let explained = explain::explain(sql, &catalog, &ring);
    if explained.is_empty() {
        println!("empty query: answered by the proxy");
    }
    for (n, e) in explained.iter().enumerate() {
        println!("statement {}: {}", n + 1, e.statement);
        match &e.refused {
            Some(r) => {
                println!("  refused: {} (SQLSTATE {})", r.message, r.sqlstate);
                if let Some(h) = &r.hint {
                    println!("  hint:    {h}");
                }
            }
            None => {
                let place = match &e.split {
                    Some(parts) => parts
                        .iter()
                        .map(|(s, q)| format!("\n    {s}: {q}"))
                        .collect(),
                    None => e.route.clone(),
                };
                println!("  route: {place}\n  why:   {}", e.why);
                if let Some((merge, shard_sql)) = &e.merge {
                    println!("  merge: {merge}");
                    println!("  shards run: {shard_sql}");
                }
            }
        }
    }
    Ok(())
}

/// `shardgate plan`: the share of keys that moves between shards from one config to another.
pub fn plan(from: &Path, to: &Path) -> Result<(), Error> {
    let old = Config::load(from)?;
    let new = Config::load(to)?;
    let old_ring = Ring::new(&old.shards, old.proxy.vnodes);
    let new_ring = Ring::new(&new.shards, new.proxy.vnodes);
    let movement = ring::movement(&old_ring, &new_ring);
    println!("{movement}");
    let tables: Vec<&str> = new
        .tables
        .iter()
        .filter(|t| t.shard_key.is_some())
        .map(|t| t.name.as_str())
        .collect();
    let references: Vec<&str> = new
        .tables
        .iter()
        .filter(|t| t.reference)
        .map(|t| t.name.as_str())
        .collect();
    if !references.is_empty() {
        println!(
            "reference tables ({}) are copied whole onto every new shard",
            references.join(", ")
        );
    }
    if !tables.is_empty() {
        println!(
            "every sharded table ({}) moves this share of its keys: {:.2}%",
            tables.join(", "),
            movement.moved_share() * 100.0
        );
    }
    Ok(())
}
