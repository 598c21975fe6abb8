//! One parsed statement → its plan: transaction control, session state, DDL, reads and writes.

use super::decide::decide;
use super::keys::fold;
use super::rewrite::{self, Refusal};
use super::tables::{Ctx, Role, Walker};
use super::{insert, MergePlan, SessionCommand, TableList, Tables, Target, TxnCommand};
use crate::catalog::Catalog;
use crate::error::Error;
use sqlparser::ast::{
    ContextModifier, CopySource, CopyTarget, DiscardObject, ObjectName, ObjectType, Query, Reset,
    Set, SetExpr, Statement,
};

/// A statement plan without its span.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub target: Target,
    pub writes: bool,
    pub ddl: bool,
    pub no_transaction: bool,
    pub not_mergeable: Option<Refusal>,
    pub merge: Option<std::sync::Arc<MergePlan>>,
    pub replicated: bool,
    pub inserts: bool,
    /// The listed tables touched (names as in shards.toml), sharded ones first; keys belong to
    /// the first.
    pub tables: Tables,
}

/// The tables a walk found, as plan data: the sharded tables first (in order of appearance),
/// so that the first is the one whose keys route the statement.
pub(super) fn tables_of(refs: &super::tables::Refs) -> Tables {
    let mut names: Vec<&str> = Vec::with_capacity(refs.tables.len());
    for name in refs.occs.iter().map(|o| o.configured.as_str()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in &refs.tables {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    TableList::of(names.into_iter().map(std::sync::Arc::from))
}

impl Planned {
    pub fn read(target: Target) -> Self {
        Planned {
            target,
            writes: false,
            ddl: false,
            no_transaction: false,
            not_mergeable: None,
            merge: None,
            replicated: false,
            inserts: false,
            tables: Tables::default(),
        }
    }

    pub fn write(target: Target) -> Self {
        Planned {
            writes: true,
            ..Planned::read(target)
        }
    }

    /// A write to the table of `written`: to a reference table it goes to every copy.
    pub fn write_to(refs: &super::tables::Refs, written: &Role) -> Self {
        let target = decide(refs, written);
        Planned {
            replicated: matches!(written, Role::Reference(_)) && matches!(target, Target::All),
            tables: tables_of(refs),
            ..Planned::write(target)
        }
    }

    /// Schema changes go to every shard, whether or not shards.toml lists the table.
    pub fn ddl(no_transaction: bool) -> Self {
        Planned {
            ddl: true,
            no_transaction,
            ..Planned::write(Target::All)
        }
    }

    pub(super) fn reject(message: String, hint: &str) -> Self {
        Planned::read(Target::Reject(Error::unsupported(message, hint)))
    }
}

fn name_of(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(fold)
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn plan(stmt: &Statement, text: &str, catalog: &Catalog) -> Planned {
    use Statement as S;
    match stmt {
        S::StartTransaction { .. } => Planned::read(Target::Transaction(TxnCommand::Begin)),
        S::Commit { .. } => Planned::read(Target::Transaction(TxnCommand::Commit)),
        S::Rollback { savepoint: None, .. } => Planned::read(Target::Transaction(TxnCommand::Rollback)),
        S::Rollback { .. } | S::Savepoint { .. } | S::ReleaseSavepoint { .. } => {
            Planned::read(Target::Transaction(TxnCommand::Savepoint))
        }
        S::Set(set) => set_plan(set),
        S::Reset(r) => Planned::read(Target::Session(match &r.reset {
            Reset::ALL => SessionCommand::ResetAll,
            Reset::SessionAuthorization => SessionCommand::Reset {
                name: "session_authorization".into(),
            },
            Reset::ConfigurationParameter(n) => SessionCommand::Reset { name: name_of(n) },
        })),
        S::Discard {
            object_type: DiscardObject::ALL,
        } => Planned::read(Target::Session(SessionCommand::ResetAll)),
        S::Query(q) => query_plan(q, text, catalog),
        S::Insert(ins) => insert::plan(ins, text, catalog, false),
        S::Update(u) => {
            let mut w = Walker::new(catalog);
            let role = w.update(u, Ctx::Top);
            Planned::write_to(&w.refs, &role)
        }
        S::Delete(d) => {
            let mut w = Walker::new(catalog);
            let role = w.delete(d, Ctx::Top);
            Planned::write_to(&w.refs, &role)
        }
        S::Merge(m) => merge_plan(m, catalog),
        S::Explain {
            statement, analyze, ..
        } => {
            let inner = plan(statement, text, catalog);
            let target = match inner.target {
                // EXPLAIN shows one plan: the rows of a split INSERT would all go to one shard.
                Target::Split(split) => Target::Keys(split.keys),
                t => t,
            };
            let many = matches!(target, Target::Keys(_) | Target::All | Target::Bound(_));
            Planned {
                target,
                writes: *analyze && inner.writes,
                ddl: false,
                no_transaction: false,
                not_mergeable: many.then(|| Refusal {
                    what: "EXPLAIN across shards".into(),
                    hint: rewrite::KEY_HINT.into(),
                }),
                merge: None,
                replicated: false,
                // Only EXPLAIN ANALYZE inserts the rows; a plain EXPLAIN of a NULL key is harmless.
                inserts: *analyze && inner.inserts,
                tables: inner.tables,
            }
        }
        S::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => match (source, to, target) {
            (CopySource::Table { table_name, columns }, false, CopyTarget::Stdin) => {
                super::copy::copy_in(table_name, columns, options, legacy_options, catalog)
                    .unwrap_or_else(|| Planned::read(Target::Any))
            }
            _ => super::copy::copy_plan(
                source,
                *to && matches!(target, CopyTarget::Stdout),
                options,
                legacy_options,
                text,
                catalog,
            ),
        },
        S::Lock(lock) => {
            let mut w = Walker::new(catalog);
            for t in &lock.tables {
                w.table(&t.name, Ctx::Top);
            }
            match decide(&w.refs, &Role::Other) {
                Target::Reject(e) => Planned::read(Target::Reject(e)),
                _ if w.refs.occs.is_empty() && w.refs.references.is_empty() => Planned::read(Target::Any),
                _ => Planned::read(Target::All),
            }
        }
        S::Call(_) => Planned::write(Target::Any),
        S::Deallocate { name, .. } => {
            // Drivers (psycopg after DDL, for one) deallocate their protocol-level statements,
            // which the session keeps itself.
            let name = (!name.value.eq_ignore_ascii_case("all") || name.quote_style.is_some())
                .then(|| super::keys::fold(name));
            Planned::read(Target::Session(SessionCommand::Deallocate { name }))
        }
        S::Prepare { .. } | S::Execute { .. } => Planned::reject(
            "SQL-level PREPARE and EXECUTE are not supported by shardgate yet".into(),
            "use your driver's protocol-level prepared statements (Parse/Bind), which shardgate routes",
        ),
        S::Declare { stmts, .. } => {
            let Some(q) = stmts.iter().find_map(|d| d.for_query.as_ref()) else {
                return Planned::read(Target::Any);
            };
            let mut inner = query_plan(q, text, catalog);
            if matches!(inner.target, Target::Keys(_) | Target::All | Target::Bound(_)) {
                inner.not_mergeable = Some(Refusal {
                    what: "a cursor across shards".into(),
                    hint: "fetch the rows with a plain query, or add a condition on the shard key"
                        .into(),
                });
                inner.merge = None;
            }
            inner
        }
        S::CreateTable(ct) => match &ct.query {
            Some(q) => ddl_reading(q, catalog, "CREATE TABLE ... AS"),
            None => Planned::ddl(false),
        },
        S::CreateIndex(ci) => Planned::ddl(ci.concurrently),
        S::CreateDatabase { .. } => Planned::ddl(true),
        S::Drop { object_type, .. } => Planned::ddl(*object_type == ObjectType::Database),
        S::Vacuum(_) => Planned::ddl(true),
        // Statistics need no atomicity across shards, and one transaction around every shard's
        // ANALYZE deadlocks when shards share a cluster: each waits for the others' locks on
        // the shared catalogs.
        S::Analyze(_) => Planned::ddl(true),
        S::Truncate(_)
        | S::CreateView(_)
        | S::CreateRole(_)
        | S::CreateServer(_)
        | S::CreateForeignTable(_)
        | S::CreateForeignDataWrapper(_)
        | S::CreateUserMapping(_)
        | S::CreatePolicy(_)
        | S::CreateRule(_)
        | S::CreateOperator(_)
        | S::CreateOperatorFamily(_)
        | S::CreateOperatorClass(_)
        | S::CreateTextSearch(_)
        | S::CreateAggregate(_)
        | S::AlterTable(_)
        | S::AlterSchema(_)
        | S::AlterIndex { .. }
        | S::AlterView(_)
        | S::AlterFunction(_)
        | S::AlterType(_)
        | S::AlterCollation(_)
        | S::AlterOperator(_)
        | S::AlterOperatorFamily(_)
        | S::AlterOperatorClass(_)
        | S::AlterTextSearch(_)
        | S::AlterRole { .. }
        | S::AlterPolicy(_)
        | S::AlterTrigger(_)
        | S::DropFunction(_)
        | S::DropDomain(_)
        | S::DropProcedure { .. }
        | S::DropPolicy(_)
        | S::DropRule(_)
        | S::CreateExtension(_)
        | S::CreateCollation(_)
        | S::DropExtension(_)
        | S::DropOperator(_)
        | S::DropOperatorFamily(_)
        | S::DropOperatorClass(_)
        | S::Comment { .. }
        | S::CreateSchema { .. }
        | S::CreateFunction(_)
        | S::CreateTrigger(_)
        | S::DropTrigger(_)
        | S::CreateProcedure { .. }
        | S::CreateSequence { .. }
        | S::CreateDomain(_)
        | S::CreateType { .. }
        | S::Grant(_)
        | S::GrantRole(_)
        | S::Revoke(_)
        | S::RevokeRole(_)
        | S::AlterDefaultPrivileges(_)
        | S::RenameTable(_)
        | S::CreateUser(_)
        | S::AlterUser(_)
        | S::RefreshMaterializedView(_) => Planned::ddl(false),
        // SHOW, LISTEN/NOTIFY, FETCH/CLOSE, DISCARD PLANS and whatever else touches no table
        // of ours: any one shard answers.
        _ => Planned::read(Target::Any),
    }
}

fn set_plan(set: &Set) -> Planned {
    let session = |c| Planned::read(Target::Session(c));
    let named = |local: bool, name: &str| {
        session(if local {
            SessionCommand::SetLocal
        } else {
            SessionCommand::Set { name: name.into() }
        })
    };
    match set {
        Set::SingleAssignment {
            scope, variable, ..
        } => named(
            matches!(scope, Some(ContextModifier::Local)),
            &name_of(variable),
        ),
        Set::SetTimeZone { local, .. } => named(*local, "timezone"),
        Set::SetRole {
            context_modifier, ..
        } => named(
            matches!(context_modifier, Some(ContextModifier::Local)),
            "role",
        ),
        Set::SetSessionAuthorization(_) => named(false, "session_authorization"),
        Set::SetNames { .. } | Set::SetNamesDefault {} => named(false, "client_encoding"),
        Set::SetTransaction { session: true, .. } => named(false, "default_transaction_isolation"),
        // SET TRANSACTION applies to the transaction the session is in: forwarded there.
        Set::SetTransaction { .. } => Planned::read(Target::Any),
        // Not PostgreSQL syntax: PostgreSQL will say so.
        _ => Planned::read(Target::Any),
    }
}

pub(super) fn query_plan(q: &Query, text: &str, catalog: &Catalog) -> Planned {
    match q.body.as_ref() {
        SetExpr::Select(s) if s.into.is_some() => {
            return ddl_reading(q, catalog, "SELECT ... INTO")
        }
        SetExpr::Insert(Statement::Insert(ins)) => {
            let mut planned = insert::plan(ins, text, catalog, q.with.is_some());
            if q.with.is_some() && !matches!(planned.target, Target::Reject(_)) {
                // The WITH part may read tables too: judge the whole statement.
                let mut w = Walker::new(catalog);
                w.query(q, Ctx::Top);
                if let Target::Reject(e) = decide(&w.refs, &Role::Other) {
                    planned.target = Target::Reject(e);
                }
            }
            return planned;
        }
        _ => {}
    }
    let mut w = Walker::new(catalog);
    w.query(q, Ctx::Top);
    if let Some(written) = w.refs.top_write.take() {
        // WITH ... UPDATE / DELETE: a write at the top level.
        return Planned::write_to(&w.refs, &written);
    }
    let target = decide(&w.refs, &Role::Other);
    let (merge, not_mergeable) = match target {
        // One key always lives on one shard: nothing to merge, nothing to plan.
        _ if target.single_key() => (None, None),
        Target::Keys(_) | Target::All | Target::Bound(_) => match rewrite::plan(q) {
            Ok(m) => (m.map(std::sync::Arc::new), None),
            Err(r) => (None, Some(r)),
        },
        _ => (None, None),
    };
    Planned {
        not_mergeable,
        merge,
        writes: w.refs.nested_write,
        tables: tables_of(&w.refs),
        ..Planned::read(target)
    }
}

/// CREATE TABLE AS / SELECT INTO: DDL, unless it reads sharded rows (each shard would get a
/// different table).
fn ddl_reading(q: &Query, catalog: &Catalog, what: &str) -> Planned {
    let mut w = Walker::new(catalog);
    w.query(q, Ctx::Top);
    match w.refs.occs.first() {
        Some(o) => Planned::reject(
            format!("{what} over sharded table {} cannot be exact: each shard would create the table from its own rows", o.name),
            "create the table first, then fill it with INSERT ... VALUES",
        ),
        None => Planned::ddl(false),
    }
}

fn merge_plan(m: &sqlparser::ast::Merge, catalog: &Catalog) -> Planned {
    let mut w = Walker::new(catalog);
    let target = match &m.table {
        sqlparser::ast::TableFactor::Table { name, .. } => w.table(name, Ctx::Top),
        _ => Role::Other,
    };
    if let Role::Sharded(o) = target {
        let name = w.refs.occs[o].name.clone();
        return Planned::reject(
            format!("MERGE into sharded table {name} is not supported by shardgate"),
            "use INSERT ... ON CONFLICT, UPDATE or DELETE with the shard key",
        );
    }
    if let sqlparser::ast::TableFactor::Table { name, .. } = &m.source {
        w.table(name, Ctx::Subquery);
    } else if let sqlparser::ast::TableFactor::Derived { subquery, .. } = &m.source {
        w.query(subquery, Ctx::Subquery);
    }
    w.scan(&m.on);
    w.scan(&m.clauses);
    Planned::write_to(&w.refs, &target)
}
