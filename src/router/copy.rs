//! COPY statements: `COPY t FROM STDIN` on a listed table becomes a per-row split (the key's
//! column and the data format); other COPYs on listed tables are refused.

use super::classify::{query_plan, Planned};
use super::keys::fold;
use super::tables::Walker;
use super::{CopyIn, Target};
use crate::catalog::{Catalog, TableKind};
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, Ident, ObjectName,
};

/// `COPY t FROM STDIN` on a listed table; None for tables shardgate does not manage.
pub(super) fn copy_in(
    table: &ObjectName,
    columns: &[Ident],
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
    catalog: &Catalog,
) -> Option<Planned> {
    let walker = Walker::new(catalog);
    let (shown, rule) = walker.classify(table).ok()?;
    let mut copy = CopyIn {
        key: None,
        csv: false,
        binary: false,
        delimiter: b'\t',
        quote: b'"',
        escape: 0,
        header: false,
    };
    let mut binary = false;
    let mut delimiter = None;
    let byte = |c: char| u8::try_from(c as u32).ok().filter(u8::is_ascii);
    for o in options {
        match o {
            CopyOption::Format(f) => {
                let f = f.value.to_ascii_lowercase();
                copy.csv = f == "csv";
                binary = f == "binary";
            }
            CopyOption::Delimiter(c) => delimiter = byte(*c),
            CopyOption::Header(h) => copy.header = *h,
            CopyOption::Quote(c) => copy.quote = byte(*c).unwrap_or(b'"'),
            CopyOption::Escape(c) => copy.escape = byte(*c).unwrap_or(0),
            _ => {}
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => binary = true,
            CopyLegacyOption::Delimiter(c) => delimiter = byte(*c),
            CopyLegacyOption::Header => copy.header = true,
            CopyLegacyOption::Csv(csv) => {
                copy.csv = true;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => copy.header = true,
                        CopyLegacyCsvOption::Quote(q) => copy.quote = byte(*q).unwrap_or(b'"'),
                        CopyLegacyCsvOption::Escape(e) => copy.escape = byte(*e).unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    copy.binary = binary;
    copy.delimiter = delimiter.unwrap_or(if copy.csv { b',' } else { b'\t' });
    if copy.escape == 0 {
        copy.escape = copy.quote;
    }
    if let TableKind::Sharded {
        key,
        key_type,
        key_position,
    } = &rule.kind
    {
        let Some(ty) = key_type else {
            return Some(Planned::reject(
                format!("the type of {shown}.{key} is not known yet"),
                "set key_type for the table in shards.toml, or retry once shardgate has read the shards' catalog",
            ));
        };
        let index = if columns.is_empty() {
            *key_position
        } else {
            columns.iter().position(|c| fold(c) == *key)
        };
        let Some(index) = index else {
            return Some(Planned::reject(
                format!("COPY {shown} must include the shard key column {key}"),
                "list the columns, including the shard key",
            ));
        };
        copy.key = Some((index, *ty));
    }
    Some(Planned {
        tables: super::TableList::of([std::sync::Arc::from(rule.configured_name())]),
        ..Planned::write(Target::CopyIn(copy))
    })
}

/// Every other COPY: `COPY t TO STDOUT` and `COPY (query) TO STDOUT` read like the table or
/// query (several shards' rows concatenated, which is exact for COPY's unordered output); the
/// header of CSV and the framing of binary would repeat per shard, so those are refused.
pub(super) fn copy_plan(
    source: &CopySource,
    to_stdout: bool,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
    text: &str,
    catalog: &Catalog,
) -> Planned {
    let planned = match source {
        CopySource::Table { table_name, .. } => match Walker::new(catalog).classify(table_name) {
            Err(_) => return Planned::read(Target::Any),
            // COPY t FROM a server file would load one shard's file into one place.
            Ok(_) if !to_stdout => Planned::read(Target::All),
            Ok((_, rule)) => match rule.kind {
                TableKind::Reference => Planned::read(Target::Any),
                TableKind::Sharded { .. } => Planned::read(Target::All),
            },
        },
        CopySource::Query(q) => query_plan(q, text, catalog),
    };
    if matches!(planned.target, Target::Any | Target::Reject(_)) {
        return planned;
    }
    if !to_stdout {
        return Planned::reject(
            "COPY to or from a file or program on the shards is not supported by shardgate".into(),
            "use COPY ... FROM STDIN or TO STDOUT (psql's \\copy)",
        );
    }
    let header = options
        .iter()
        .any(|o| matches!(o, CopyOption::Header(true)))
        || legacy.iter().any(|o| match o {
            CopyLegacyOption::Header => true,
            CopyLegacyOption::Csv(c) => c.iter().any(|c| matches!(c, CopyLegacyCsvOption::Header)),
            _ => false,
        });
    let binary = options
        .iter()
        .any(|o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("binary")))
        || legacy.iter().any(|o| matches!(o, CopyLegacyOption::Binary));
    if header || binary {
        return Planned::reject(
            "COPY TO STDOUT with HEADER or in binary format is not supported across shards yet"
                .into(),
            "leave out HEADER, or use the text or csv format",
        );
    }
    planned
}
