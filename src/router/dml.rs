//! UPDATE and DELETE: their target, FROM/USING tables and WHERE as one scope.

use super::keys;
use super::scope::Scope;
use super::tables::{qualified, Ctx, Role, Walker};
use crate::error::Error;
use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, FromTable, Update, UpdateTableFromKind,
};

impl Walker<'_> {
    pub fn update(&mut self, u: &Update, ctx: Ctx) -> Role {
        let mut scope = Scope::default();
        let target = self.join_tree(&u.table, &mut scope, ctx);
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &u.from
        {
            for item in from {
                self.join_tree(item, &mut scope, ctx);
            }
        }
        if let Some(w) = &u.selection {
            keys::conjuncts(w, &mut scope.conds);
        }
        self.check_key_unchanged(&target, &u.assignments);
        self.scan(&u.assignments);
        self.scan(&u.selection);
        self.scan(&u.returning);
        self.finish(scope);
        target
    }

    pub fn delete(&mut self, d: &Delete, ctx: Ctx) -> Role {
        let mut scope = Scope::default();
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
        let mut target = Role::Other;
        for (i, item) in from.iter().enumerate() {
            let role = self.join_tree(item, &mut scope, ctx);
            if i == 0 {
                target = role;
            }
        }
        for item in d.using.iter().flatten() {
            self.join_tree(item, &mut scope, ctx);
        }
        if let Some(w) = &d.selection {
            keys::conjuncts(w, &mut scope.conds);
        }
        self.scan(&d.selection);
        self.scan(&d.returning);
        self.finish(scope);
        target
    }

    /// Refuses assignments to a sharded target's key: the row would belong on another shard.
    pub fn check_key_unchanged(&mut self, target: &Role, assignments: &[Assignment]) {
        let Role::Sharded(o) = target else { return };
        let key = self.refs.occs[*o].key.clone();
        let names = assignments.iter().flat_map(|a| match &a.target {
            AssignmentTarget::ColumnName(n) => std::slice::from_ref(n).iter(),
            AssignmentTarget::Tuple(ns) => ns.iter(),
        });
        let changes_key = names.filter_map(qualified).any(|(_, col)| col == key);
        if changes_key {
            let table = self.refs.occs[*o].name.clone();
            self.fail(Error::unsupported(
                format!("shardgate cannot change the shard key {table}.{key}: changing the shard key would move the row to another shard"),
                "delete the row and insert it again with the new key",
            ));
        }
    }
}
