//! Table references of a statement, scope by scope: which listed tables it touches, where
//! (top level, subquery, WITH, set operation), and which sharded occurrences are pinned to keys.

use super::keys::{self, fold};
pub(super) use super::scope::Scope;
use crate::catalog::{Catalog, TableKind, TableRule};
use crate::config::KeyType;
use crate::error::Error;
use crate::ring::Key;
use sqlparser::ast::{
    Expr, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    Statement, TableFactor, TableWithJoins, Visit, Visitor,
};
use std::ops::ControlFlow;

/// Deeper expression trees are refused rather than risking the stack.
const MAX_EXPR_DEPTH: usize = 12_000;
const MAX_QUERY_DEPTH: usize = 64;

/// Where an occurrence sits in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    Top,
    Subquery,
    Cte,
    SetOp,
}

/// One occurrence of a sharded table.
#[derive(Debug)]
pub(super) struct Occ {
    /// The table's name in shards.toml (for statistics).
    pub configured: String,
    pub name: String,
    pub key: String,
    pub key_type: Option<KeyType>,
    pub ctx: Ctx,
    /// Pinned (`Some`) to these literal keys and the values of `params`.
    pub keys: Option<Vec<Key>>,
    pub params: Vec<keys::Param>,
    /// Constants constrain the key but its type is not known yet.
    pub untyped_pin: bool,
    /// Joined on equal keys with every other sharded table of its scope: their matching rows
    /// live on the same shard.
    pub colocated: bool,
}

/// What a FROM item or write target turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    Sharded(usize),
    Reference(String),
    Catalog,
    Unknown(String),
    Other,
}

#[derive(Debug, Default)]
pub(super) struct Refs {
    pub occs: Vec<Occ>,
    pub references: Vec<String>,
    pub unknown: Option<String>,
    pub error: Option<Error>,
    /// UPDATE/DELETE inside WITH.
    pub nested_write: bool,
    /// The table written by `WITH ... UPDATE/DELETE`, the statement's own write.
    pub top_write: Option<Role>,
    /// The listed tables touched, by their names in shards.toml, in order of appearance.
    pub tables: Vec<String>,
}

pub(super) struct Walker<'c> {
    catalog: &'c Catalog,
    pub refs: Refs,
    ctes: Vec<String>,
    depth: usize,
}

/// Splits a table name into (schema, name), folded.
pub(super) fn qualified(name: &ObjectName) -> Option<(Option<String>, String)> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(i) => parts.push(fold(i)),
            ObjectNamePart::Function(_) => return None,
        }
    }
    let table = parts.pop()?;
    Some((parts.pop(), table))
}

pub(super) fn is_catalog_table(schema: Option<&str>, name: &str) -> bool {
    match schema {
        Some(s) => s == "pg_catalog" || s == "information_schema" || s.starts_with("pg_"),
        None => name.starts_with("pg_"),
    }
}

fn display(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{s}.{name}"),
        None => name.to_string(),
    }
}

impl<'c> Walker<'c> {
    pub fn new(catalog: &'c Catalog) -> Self {
        Walker {
            catalog,
            refs: Refs::default(),
            ctes: Vec::new(),
            depth: 0,
        }
    }

    pub fn fail(&mut self, error: Error) {
        if self.refs.error.is_none() {
            self.refs.error = Some(error);
        }
    }

    /// Classifies a table name without recording it (CTE names are not tables).
    pub fn classify(&self, name: &ObjectName) -> Result<(String, &'c TableRule), Role> {
        let Some((schema, table)) = qualified(name) else {
            return Err(Role::Other);
        };
        if schema.is_none() && self.ctes.contains(&table) {
            return Err(Role::Other);
        }
        if is_catalog_table(schema.as_deref(), &table) {
            return Err(Role::Catalog);
        }
        match self.catalog.lookup(schema.as_deref(), &table) {
            Some(rule) => Ok((display(schema.as_deref(), &table), rule)),
            None => Err(Role::Unknown(display(schema.as_deref(), &table))),
        }
    }

    /// Records a table occurrence.
    pub fn table(&mut self, name: &ObjectName, ctx: Ctx) -> Role {
        match self.classify(name) {
            Ok((shown, rule)) => {
                let configured = rule.configured_name();
                if !self.refs.tables.contains(&configured) {
                    self.refs.tables.push(configured.clone());
                }
                match &rule.kind {
                    TableKind::Sharded { key, key_type, .. } => {
                        self.refs.occs.push(Occ {
                            configured,
                            name: shown,
                            key: key.clone(),
                            key_type: *key_type,
                            ctx,
                            keys: None,
                            params: Vec::new(),
                            untyped_pin: false,
                            colocated: false,
                        });
                        Role::Sharded(self.refs.occs.len() - 1)
                    }
                    TableKind::Reference => {
                        self.refs.references.push(shown.clone());
                        Role::Reference(shown)
                    }
                }
            }
            Err(Role::Unknown(shown)) => {
                if self.refs.unknown.is_none() {
                    self.refs.unknown = Some(shown.clone());
                }
                Role::Unknown(shown)
            }
            Err(role) => role,
        }
    }

    /// Walks every query nested in `node` (subqueries in expressions) as its own scope.
    pub fn scan<V: Visit + ?Sized>(&mut self, node: &V) {
        if self.refs.error.is_some() {
            return;
        }
        let mut finder = Finder {
            walker: self,
            nesting: 0,
            depth: 0,
        };
        let _ = node.visit(&mut finder);
    }

    pub fn query(&mut self, q: &Query, ctx: Ctx) {
        if self.refs.error.is_some() {
            return;
        }
        self.depth += 1;
        if self.depth > MAX_QUERY_DEPTH {
            self.fail(too_deep());
            return;
        }
        let mark = self.ctes.len();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = fold(&cte.alias.name);
                if with.recursive {
                    self.ctes.push(name.clone());
                }
                self.query(&cte.query, Ctx::Cte);
                if !with.recursive {
                    self.ctes.push(name);
                }
            }
        }
        self.set_expr(&q.body, ctx);
        self.scan(&q.order_by);
        self.scan(&q.limit_clause);
        self.scan(&q.fetch);
        self.ctes.truncate(mark);
        self.depth -= 1;
    }

    fn set_expr(&mut self, body: &SetExpr, ctx: Ctx) {
        match body {
            SetExpr::Select(s) => self.select(s, ctx),
            SetExpr::Query(q) => self.query(q, ctx),
            SetExpr::SetOperation { left, right, .. } => {
                let inner = if ctx == Ctx::Top { Ctx::SetOp } else { ctx };
                self.set_expr(left, inner);
                self.set_expr(right, inner);
            }
            SetExpr::Values(v) => self.scan(v),
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let mut parts = Vec::new();
                    if let Some(schema) = &t.schema_name {
                        parts.push(schema.clone());
                    }
                    parts.push(name.clone());
                    self.table(&ObjectName::from(parts), ctx);
                }
            }
            SetExpr::Update(stmt) | SetExpr::Delete(stmt) | SetExpr::Insert(stmt) => {
                self.nested_write(stmt, ctx)
            }
            SetExpr::Merge(_) => self.fail(Error::unsupported(
                "MERGE inside a WITH query is not supported by shardgate",
                "run the MERGE as a statement of its own",
            )),
        }
    }

    /// A data-modifying statement inside WITH.
    fn nested_write(&mut self, stmt: &Statement, ctx: Ctx) {
        let written = match stmt {
            Statement::Update(u) => self.update(u, ctx),
            Statement::Delete(d) => self.delete(d, ctx),
            Statement::Insert(ins) => match &ins.table {
                sqlparser::ast::TableObject::TableName(name) => match self.classify(name) {
                    Ok((shown, _)) => {
                        return self.fail(Error::unsupported(
                            format!(
                            "INSERT into {shown} inside a WITH query is not supported by shardgate"
                        ),
                            "run the INSERT as a statement of its own, with VALUES",
                        ))
                    }
                    Err(_) => self.table(name, ctx),
                },
                _ => Role::Other,
            },
            _ => Role::Other,
        };
        if ctx == Ctx::Top {
            self.refs.top_write = Some(written);
            return;
        }
        self.refs.nested_write = true;
        if let Role::Reference(name) = written {
            self.fail(Error::unsupported(
                format!("writing reference table {name} inside a WITH query is not supported by shardgate"),
                "run the write as a statement of its own",
            ));
        }
    }

    fn select(&mut self, s: &Select, ctx: Ctx) {
        let mut scope = Scope::default();
        for item in &s.from {
            self.join_tree(item, &mut scope, ctx);
        }
        if let Some(w) = &s.selection {
            keys::conjuncts(w, &mut scope.conds);
        }
        self.scan(&s.projection);
        self.scan(&s.selection);
        self.scan(&s.distinct);
        self.scan(&s.group_by);
        self.scan(&s.having);
        self.scan(&s.qualify);
        self.scan(&s.named_window);
        self.scan(&s.sort_by);
        self.scan(&s.prewhere);
        self.finish(scope);
    }

    pub fn join_tree<'a>(
        &mut self,
        twj: &'a TableWithJoins,
        scope: &mut Scope<'a>,
        ctx: Ctx,
    ) -> Role {
        let before = self.refs.occs.len();
        let first = self.factor(&twj.relation, scope, ctx);
        for join in &twj.joins {
            let left_sharded = self.refs.occs.len() > before;
            let mark = self.refs.occs.len();
            self.factor(&join.relation, scope, ctx);
            let right_sharded = self.refs.occs.len() > mark;
            use JoinOperator as J;
            let (constraint, outer) = match &join.join_operator {
                J::Join(c) | J::Inner(c) | J::CrossJoin(c) | J::StraightJoin(c) => (c, false),
                J::Left(c) | J::LeftOuter(c) | J::Right(c) | J::RightOuter(c) | J::FullOuter(c) => {
                    // A side without sharded rows is the same on every shard: kept whole by an
                    // outer join against sharded rows, its unmatched rows would come back once
                    // per shard.
                    let (keeps_left, keeps_right) = match &join.join_operator {
                        J::Left(_) | J::LeftOuter(_) => (true, false),
                        J::Right(_) | J::RightOuter(_) => (false, true),
                        _ => (true, true),
                    };
                    if (keeps_left && !left_sharded && right_sharded)
                        || (keeps_right && !right_sharded && left_sharded)
                    {
                        self.fail(Error::unsupported(
                            "an outer join that keeps all rows of a reference table (or of rows that are not sharded) against a sharded table would repeat the unmatched rows once per shard",
                            "put the sharded table on the kept side (users LEFT JOIN countries), use an inner join, or add a condition on the shard key",
                        ));
                    }
                    (c, true)
                }
                // Non-PostgreSQL join kinds: their conditions pin nothing.
                other => {
                    self.scan(other);
                    continue;
                }
            };
            if let JoinConstraint::On(on) = constraint {
                keys::conjuncts(
                    on,
                    if outer {
                        &mut scope.outer
                    } else {
                        &mut scope.conds
                    },
                );
                self.scan(on);
            }
        }
        first
    }

    fn factor<'a>(&mut self, f: &'a TableFactor, scope: &mut Scope<'a>, ctx: Ctx) -> Role {
        let alias = |a: &Option<sqlparser::ast::TableAlias>| a.as_ref().map(|a| fold(&a.name));
        let (role, name, schema, aliased) = match f {
            TableFactor::Table {
                name,
                alias: a,
                args: None,
                ..
            } => {
                let role = self.table(name, ctx);
                let (schema, table) = qualified(name).unwrap_or_default();
                match alias(a) {
                    Some(al) => (role, al, None, true),
                    None => (role, table, schema, false),
                }
            }
            TableFactor::Table {
                name,
                alias: a,
                args: Some(args),
                ..
            } => {
                self.scan(args);
                let fname = qualified(name).map(|q| q.1).unwrap_or_default();
                (Role::Other, alias(a).unwrap_or(fname), None, true)
            }
            TableFactor::Derived {
                subquery, alias: a, ..
            } => {
                self.query(subquery, Ctx::Subquery);
                (Role::Other, alias(a).unwrap_or_default(), None, true)
            }
            TableFactor::TableFunction { expr, alias: a } => {
                self.scan(expr);
                (Role::Other, alias(a).unwrap_or_default(), None, true)
            }
            TableFactor::Function {
                name,
                args,
                alias: a,
                ..
            } => {
                self.scan(args);
                let fname = qualified(name).map(|q| q.1).unwrap_or_default();
                (Role::Other, alias(a).unwrap_or(fname), None, true)
            }
            TableFactor::UNNEST {
                array_exprs,
                alias: a,
                ..
            } => {
                self.scan(array_exprs);
                (Role::Other, alias(a).unwrap_or_default(), None, true)
            }
            TableFactor::JsonTable {
                json_expr,
                alias: a,
                ..
            } => {
                self.scan(json_expr);
                (Role::Other, alias(a).unwrap_or_default(), None, true)
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => return self.join_tree(table_with_joins, scope, ctx),
            _ => {
                self.fail(Error::unsupported(
                    "shardgate cannot route this kind of FROM item",
                    "use plain tables, subqueries and joins",
                ));
                return Role::Other;
            }
        };
        let occ = match role {
            Role::Sharded(i) => Some(i),
            _ => None,
        };
        scope.bindings.push(super::scope::Binding {
            name,
            schema,
            aliased,
            occ,
        });
        role
    }
}

pub(super) fn too_deep() -> Error {
    Error::unsupported(
        "the statement is nested too deeply for shardgate to route",
        "simplify the statement (fewer nested subqueries or chained operators)",
    )
}

/// Finds the queries nested directly in an expression (not those nested in them: the walker
/// visits those itself), bounding the depth it descends.
struct Finder<'w, 'c> {
    walker: &'w mut Walker<'c>,
    nesting: usize,
    depth: usize,
}

impl Visitor for Finder<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.nesting == 0 {
            self.walker.query(query, Ctx::Subquery);
            if self.walker.refs.error.is_some() {
                return ControlFlow::Break(());
            }
        }
        self.nesting += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.nesting -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            self.walker.fail(too_deep());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}
