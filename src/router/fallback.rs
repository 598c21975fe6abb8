//! Statements sqlparser cannot parse: the PostgreSQL commands it lacks (DO, REINDEX, ALTER
//! SYSTEM, two-phase commit, TABLE x, ...) are recognised by their leading words; the rest go to
//! PostgreSQL to answer, unless they name a table of ours (then shardgate cannot route them).

use super::classify::{self, Planned};
use super::{Target, TxnCommand};
use crate::catalog::Catalog;
use crate::error::Error;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

pub(super) fn plan(text: &str, parse_error: &str, catalog: &Catalog) -> Planned {
    let mut tokens: Vec<TokenWithSpan> = Vec::new();
    let _ =
        Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location_into_buf(&mut tokens);
    let mut words: Vec<String> = Vec::new();
    let mut table_word_end = None;
    for t in &tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::Word(w) if w.quote_style.is_none() => {
                words.push(w.value.to_ascii_uppercase());
                if words.len() == 1 && words[0] == "TABLE" {
                    table_word_end = Some(t.span.end);
                }
            }
            _ => break,
        }
        if words.len() == 4 {
            break;
        }
    }
    let has = |w: &str| words.iter().any(|x| x == w);
    let first: Vec<&str> = words.iter().map(String::as_str).collect();
    match first.as_slice() {
        ["DO", ..] => return Planned::write(Target::Any),
        ["PREPARE", "TRANSACTION", ..] | ["COMMIT" | "ROLLBACK", "PREPARED", ..] => {
            return Planned::read(Target::Transaction(TxnCommand::TwoPhase))
        }
        // Transaction control in forms sqlparser lacks (`BEGIN ... DEFERRABLE`): the proxy must
        // still see it, or a shard would hold a transaction the proxy does not know of.
        ["BEGIN" | "START", ..] => return Planned::read(Target::Transaction(TxnCommand::Begin)),
        ["ROLLBACK" | "ABORT", "TO", ..] | ["SAVEPOINT" | "RELEASE", ..] => {
            return Planned::read(Target::Transaction(TxnCommand::Savepoint))
        }
        ["COMMIT" | "END", ..] => return Planned::read(Target::Transaction(TxnCommand::Commit)),
        ["ROLLBACK" | "ABORT", ..] => {
            return Planned::read(Target::Transaction(TxnCommand::Rollback))
        }
        ["REINDEX", kind, ..] => {
            return Planned::ddl(has("CONCURRENTLY") || matches!(*kind, "SYSTEM" | "DATABASE"))
        }
        ["ALTER", "SYSTEM", ..] | ["CREATE" | "DROP", "TABLESPACE" | "DATABASE", ..] => {
            return Planned::ddl(true)
        }
        ["CLUSTER"] => return Planned::ddl(true),
        ["CHECKPOINT", ..] => return Planned::read(Target::All),
        ["TABLE", ..] => {
            if let Some(end) = table_word_end {
                let mut offsets = super::split::Offsets::new(text);
                let rest = &text[offsets.byte(end)..];
                let select = format!("SELECT * FROM {rest}");
                if let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, &select) {
                    if let [stmt] = stmts.as_slice() {
                        return classify::plan(stmt, &select, catalog);
                    }
                }
            }
        }
        ["CREATE" | "ALTER" | "DROP" | "COMMENT" | "SECURITY" | "GRANT" | "REVOKE" | "IMPORT"
        | "REFRESH" | "TRUNCATE" | "ANALYZE" | "CLUSTER" | "REINDEX", ..] => {
            return Planned::ddl(has("CONCURRENTLY") && first[0] == "DROP")
        }
        ["VACUUM", ..] => return Planned::ddl(true),
        _ => {}
    }
    match mentioned_table(text, catalog) {
        Some(table) => Planned::read(Target::Reject(Error::Syntax {
            message: format!(
                "shardgate could not parse this statement, which names table {table}, so it cannot route it: {parse_error}"
            ),
        })),
        None => Planned::read(Target::Any),
    }
}

/// A statement too big to parse safely: PostgreSQL may run it if it touches no table of ours.
pub(super) fn too_complex(text: &str, operators: usize, catalog: &Catalog) -> Planned {
    match mentioned_table(text, catalog) {
        Some(table) => Planned::read(Target::Reject(Error::unsupported(
            format!("this statement on table {table} has more than {operators} operators, too many for shardgate to route"),
            "split it into smaller statements",
        ))),
        None => Planned::read(Target::Any),
    }
}

/// The first configured table named as a word anywhere in the text (case-insensitively).
fn mentioned_table(text: &str, catalog: &Catalog) -> Option<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .find_map(|w| {
            catalog
                .tables()
                .iter()
                .find(|rule| {
                    rule.name.eq_ignore_ascii_case(w)
                        || rule.name.to_lowercase() == w.to_lowercase()
                })
                .map(|rule| rule.name.clone())
        })
}
