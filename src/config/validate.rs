//! Validation of a parsed shards.toml: semantic checks, identifier folding, and the line numbers
//! that let every error point at the offending line.

use super::{
    parse_postgres_url, Config, MAX_SHARDS, MAX_SHARD_NAME, MAX_VNODES, MAX_WEIGHT, MAX_WORKERS,
    RATE_LIMIT_KEYS,
};
use crate::error::Error;
use std::net::SocketAddr;
use std::ops::Range;
use std::str::FromStr;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated by the server, so by us too.
const MAX_IDENT_BYTES: usize = 63;

/// Checks `config` (parsed from `text`) and folds its identifiers in place.
pub(super) fn check(config: &mut Config, text: &str) -> Result<(), Error> {
    // The text deserialized already, so this only fails on inputs serde accepted and the span
    // parser did not; positions are then simply omitted.
    let doc = DeTable::parse(text).ok();
    config.validate(&Locator { text, doc })
}

impl Config {
    fn validate(&mut self, at: &Locator<'_>) -> Result<(), Error> {
        use Seg::{I, K};
        let p = &self.proxy;
        if SocketAddr::from_str(&p.listen).is_err() {
            return Err(at.err(
                &[K("proxy"), K("listen")],
                format!(
                    "[proxy] listen = {:?} is not an IP address and port such as \"127.0.0.1:6432\"",
                    p.listen
                ),
            ));
        }
        if p.rebalance_step_rows == 0 {
            let msg = "[proxy] rebalance_step_rows must be at least 1";
            return Err(at.err(&[K("proxy"), K("rebalance_step_rows")], msg));
        }
        if p.pool_size == 0 {
            let msg = "[proxy] pool_size must be at least 1";
            return Err(at.err(&[K("proxy"), K("pool_size")], msg));
        }
        if p.workers > MAX_WORKERS {
            let msg = format!(
                "[proxy] workers must be at most {MAX_WORKERS} (0: one per CPU), not {}",
                p.workers
            );
            return Err(at.err(&[K("proxy"), K("workers")], msg));
        }
        if p.max_client_connections == 0 {
            let msg = "[proxy] max_client_connections must be at least 1";
            return Err(at.err(&[K("proxy"), K("max_client_connections")], msg));
        }
        if p.vnodes == 0 || p.vnodes > MAX_VNODES {
            let msg = format!(
                "[proxy] vnodes must be between 1 and {MAX_VNODES}, not {}",
                p.vnodes
            );
            return Err(at.err(&[K("proxy"), K("vnodes")], msg));
        }
        if let Some(auth) = &self.auth {
            for (i, user) in auth.users.iter().enumerate() {
                if auth.users[..i].iter().any(|u| u.name == user.name) {
                    let msg = format!("user {:?} is listed twice in [[auth.users]]", user.name);
                    return Err(at.err(&[K("auth"), K("users"), I(i), K("name")], msg));
                }
            }
        }

        if self.shards.is_empty() {
            let msg = "no shards: add at least one [[shards]] table with a name and a url";
            return Err(at.err(&[K("shards")], msg));
        }
        if self.shards.len() > MAX_SHARDS {
            let msg = format!("at most {MAX_SHARDS} shards are supported");
            return Err(at.err(&[K("shards")], msg));
        }
        for (i, shard) in self.shards.iter().enumerate() {
            let here = |field| [K("shards"), I(i), K(field)];
            if shard.name.is_empty() {
                return Err(at.err(&here("name"), "a shard name must not be empty"));
            }
            // It is part of two-phase transaction ids, which PostgreSQL limits to 199 bytes.
            if shard.name.len() > MAX_SHARD_NAME {
                let msg = format!(
                    "shard name {:?} is longer than {MAX_SHARD_NAME} bytes",
                    shard.name
                );
                return Err(at.err(&here("name"), msg));
            }
            if self.shards[..i].iter().any(|s| s.name == shard.name) {
                let msg = format!("shard name {:?} is used twice", shard.name);
                return Err(at.err(&here("name"), msg));
            }
            if let Err(why) = parse_postgres_url(&shard.url) {
                // The url itself is not echoed: it may hold a password.
                let msg = format!(
                    "shard {:?}: url is not a valid postgres URL: {why}",
                    shard.name
                );
                return Err(at.err(&here("url"), msg));
            }
            if shard.weight == 0 || shard.weight > MAX_WEIGHT {
                let msg = format!(
                    "shard {:?}: weight must be between 1 and {MAX_WEIGHT}, not {}",
                    shard.name, shard.weight
                );
                return Err(at.err(&here("weight"), msg));
            }
        }

        for i in 0..self.tables.len() {
            let here = |field| [K("tables"), I(i), K(field)];
            let table = &mut self.tables[i];
            let raw_name = table.name.clone();
            table.name = fold_name(&raw_name, 2)
                .map_err(|why| at.err(&here("name"), format!("table name {raw_name:?}: {why}")))?;
            if let Some(key) = &table.shard_key {
                let folded = fold_name(key, 1).map_err(|why| {
                    at.err(
                        &here("shard_key"),
                        format!("table {raw_name:?}: shard_key {key:?}: {why}"),
                    )
                })?;
                table.shard_key = Some(folded);
            }
            let table = &self.tables[i];
            match (&table.shard_key, table.reference) {
                (Some(_), true) => {
                    let msg = format!(
                        "table {raw_name:?} has both shard_key and reference = true; \
                         a table is either sharded by a key or copied to every shard"
                    );
                    return Err(at.err(&here("reference"), msg));
                }
                (None, false) => {
                    let msg = format!(
                        "table {raw_name:?} needs shard_key = \"column\" (sharded) or reference = true"
                    );
                    return Err(at.err(&here("name"), msg));
                }
                (None, true) if table.key_type.is_some() => {
                    let msg =
                        format!("table {raw_name:?}: key_type applies only to a sharded table");
                    return Err(at.err(&here("key_type"), msg));
                }
                _ => {}
            }
            if self.tables[..i].iter().any(|t| t.name == table.name) {
                let msg = format!("table {:?} is listed twice", table.name);
                return Err(at.err(&here("name"), msg));
            }
        }

        if let Some(metrics) = &self.metrics {
            if SocketAddr::from_str(&metrics.listen).is_err() {
                let msg = format!(
                    "[metrics] listen = {:?} is not an IP address and port such as \"127.0.0.1:9930\"",
                    metrics.listen
                );
                return Err(at.err(&[K("metrics"), K("listen")], msg));
            }
        }
        let stats = &self.stats;
        if !(stats.skew_factor > 1.0 && stats.skew_factor <= 100.0) {
            let msg = format!(
                "[stats] skew_factor must be above 1 (e.g. 1.25: 25% more than the weight's share), not {}",
                stats.skew_factor
            );
            return Err(at.err(&[K("stats"), K("skew_factor")], msg));
        }
        if !(1..=7 * 86400).contains(&stats.half_life_secs) {
            let msg = format!(
                "[stats] half_life_secs must be between 1 and 604800 (a week), not {}",
                stats.half_life_secs
            );
            return Err(at.err(&[K("stats"), K("half_life_secs")], msg));
        }
        for (i, limit) in self.rate_limits.iter().enumerate() {
            let here = |field| [K("rate_limits"), I(i), K(field)];
            if !RATE_LIMIT_KEYS.contains(&limit.per.as_str()) {
                let msg = format!(
                    "[[rate_limits]] per = {:?} is not one of {}",
                    limit.per,
                    RATE_LIMIT_KEYS.join(", ")
                );
                return Err(at.err(&here("per"), msg));
            }
            // Written so that NaN fails too.
            if !(limit.rate > 0.0 && limit.rate.is_finite()) {
                let msg = format!(
                    "[[rate_limits]] rate must be a positive number, not {}",
                    limit.rate
                );
                return Err(at.err(&here("rate"), msg));
            }
            if limit.burst == 0 {
                let msg =
                    "[[rate_limits]] burst must be at least 1, or no statement could ever run";
                return Err(at.err(&here("burst"), msg));
            }
        }
        self.validate_gateway(at)
    }
}

/// Folds a name of up to `max_parts` dot-separated identifiers as PostgreSQL folds SQL
/// identifiers: unquoted parts to lower case, `"Quoted"` parts kept as written, without quotes.
pub fn fold_name(raw: &str, max_parts: usize) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    let mut chars = raw.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated double quote".into()),
                }
            }
            if part.is_empty() {
                return Err("a quoted identifier must not be empty".into());
            }
            // Downstream code splits schema.table on '.', so a dot inside quotes would be misread.
            if part.contains('.') {
                return Err("a quoted identifier must not contain '.'".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' || c.is_whitespace() {
                    return Err(format!("unexpected {c:?}; quote the whole identifier"));
                }
                // PostgreSQL folds only ASCII letters in UTF-8 databases.
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err("empty identifier".into());
            }
        }
        truncate_identifier(&mut part);
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(c) => return Err(format!("unexpected {c:?} after a quoted identifier")),
        }
    }
    if parts.len() > max_parts {
        let what = if max_parts == 1 {
            "a column name"
        } else {
            "table or schema.table"
        };
        return Err(format!("expected {what}"));
    }
    Ok(parts.join("."))
}

fn truncate_identifier(ident: &mut String) {
    if ident.len() > MAX_IDENT_BYTES {
        let mut end = MAX_IDENT_BYTES;
        while !ident.is_char_boundary(end) {
            end -= 1;
        }
        ident.truncate(end);
    }
}

/// "line N, column M" of a byte offset, both 1-based, columns counted in characters.
pub(super) fn position(text: &str, offset: usize) -> String {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("line {line}, column {column}")
}

/// One step of a path into the document: a table key or an array index.
#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    K(&'a str),
    I(usize),
}

/// Finds the text position of a config item, so that semantic errors can name a line.
pub(super) struct Locator<'t> {
    text: &'t str,
    doc: Option<Spanned<DeTable<'t>>>,
}

impl Locator<'_> {
    /// The span of the deepest item of `path` present in the text (a defaulted field has none,
    /// so its table is named instead).
    fn span(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let mut found: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (found, seg) {
                (None, Seg::K(k)) => doc.get_ref().get(*k),
                (None, Seg::I(_)) => None,
                (Some(v), Seg::K(k)) => v.get_ref().get(*k),
                (Some(v), Seg::I(i)) => v.get_ref().get(*i),
            };
            match next {
                Some(v) => found = Some(v),
                None => break,
            }
        }
        found.map(|v| v.span())
    }

    pub(super) fn err(&self, path: &[Seg<'_>], message: impl Into<String>) -> Error {
        let message = message.into();
        match self.span(path) {
            Some(span) => Error::config(format!("{}: {message}", position(self.text, span.start))),
            None => Error::config(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_fold_like_postgres() {
        assert_eq!(fold_name("Users", 2).unwrap(), "users");
        assert_eq!(fold_name("\"MixedCase\"", 2).unwrap(), "MixedCase");
        assert_eq!(
            fold_name("Sales.\"Q1 \"\"Orders\"\"\"", 2).unwrap(),
            "sales.Q1 \"Orders\""
        );
        assert_eq!(fold_name("ÉTÉ", 1).unwrap(), "ÉtÉ");
        assert_eq!(fold_name(&"A".repeat(70), 1).unwrap(), "a".repeat(63));
        for bad in [
            "", "a..b", "\"\"", "\"a.b\"", "a b", "\"a\"b", "a\"b\"", "a.", "\"open",
        ] {
            assert!(fold_name(bad, 2).is_err(), "{bad:?}");
        }
        assert!(fold_name("s.t", 1).is_err());
    }
}
