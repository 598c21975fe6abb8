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
    if binary {
        return Some(Planned::reject(
            format!("COPY {shown} FROM STDIN in binary format is not supported by shardgate yet"),
            "use the text or csv format",
        ));
    }
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
    Some(Planned::write(Target::CopyIn(copy)))
}

pub(super) fn copy_plan(source: &CopySource, text: &str, catalog: &Catalog) -> Planned {
    let listed = match source {
        CopySource::Table { table_name, .. } => Walker::new(catalog).classify(table_name).is_ok(),
        CopySource::Query(q) => !matches!(query_plan(q, text, catalog).target, Target::Any),
    };
    if listed {
        Planned::reject(
            "COPY is not supported by shardgate yet".into(),
            "use INSERT ... VALUES to load rows and SELECT to read them",
        )
    } else {
        Planned::read(Target::Any)
    }
}
