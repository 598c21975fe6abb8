//! One query scope's bindings and conjuncts, and the decision which of its sharded occurrences
//! are pinned to which keys (union-find over column equalities).

use super::keys::{self, Classes, Fact};
use super::tables::Walker;
use sqlparser::ast::Expr;

pub(super) struct Binding {
    pub name: String,
    pub schema: Option<String>,
    pub aliased: bool,
    pub occ: Option<usize>,
}

/// One query scope: its FROM bindings and the conjuncts that filter its rows.
#[derive(Default)]
pub(super) struct Scope<'a> {
    pub bindings: Vec<Binding>,
    /// WHERE and inner-join ON conjuncts: they filter every row of the scope.
    pub conds: Vec<&'a Expr>,
    /// Outer-join ON conjuncts: they filter only the nullable side, so only column
    /// equalities are used (a constant there must not pin the preserved side).
    pub outer: Vec<&'a Expr>,
}

impl Walker<'_> {
    /// The binding a column reference names, if it can be told within the scope.
    fn binding_of(&self, scope: &Scope<'_>, parts: &[String]) -> Option<usize> {
        let unique = |mut it: Box<dyn Iterator<Item = usize> + '_>| {
            let first = it.next()?;
            it.next().is_none().then_some(first)
        };
        match parts {
            [col] => {
                // A table that has the column as its key owns it: any other table with a
                // column of that name would make PostgreSQL refuse the reference as ambiguous.
                let keyed = (0..scope.bindings.len()).filter(|&b| {
                    scope.bindings[b]
                        .occ
                        .is_some_and(|o| self.refs.occs[o].key == *col)
                });
                unique(Box::new(keyed)).or_else(|| (scope.bindings.len() == 1).then_some(0))
            }
            [qualifier, _] => unique(Box::new(
                (0..scope.bindings.len()).filter(|&b| scope.bindings[b].name == *qualifier),
            )),
            [.., schema, table, _] => unique(Box::new((0..scope.bindings.len()).filter(|&b| {
                let bnd = &scope.bindings[b];
                !bnd.aliased
                    && bnd.name == *table
                    && bnd.schema.as_ref().is_none_or(|s| s == schema)
            }))),
            [] => None,
        }
    }

    /// Decides which sharded occurrences of the scope are pinned, and to which keys.
    pub fn finish(&mut self, scope: Scope<'_>) {
        if !scope.bindings.iter().any(|b| b.occ.is_some()) {
            return;
        }
        let mut classes = Classes::default();
        let facts = scope
            .conds
            .iter()
            .map(|c| (false, c))
            .chain(scope.outer.iter().map(|c| (true, c)));
        for (outer, cond) in facts {
            match keys::fact(cond) {
                Some(Fact::Same(a, b)) => {
                    if let (Some(ba), Some(bb)) =
                        (self.binding_of(&scope, &a), self.binding_of(&scope, &b))
                    {
                        classes.same((ba, last(&a)), (bb, last(&b)));
                    }
                }
                Some(Fact::OneOf(col, lits)) if !outer => {
                    if let Some(b) = self.binding_of(&scope, &col) {
                        classes.one_of((b, last(&col)), lits);
                    }
                }
                _ => {}
            }
        }
        self.colocate(&scope, &mut classes);
        for (b, binding) in scope.bindings.iter().enumerate() {
            let Some(o) = binding.occ else { continue };
            let occ = &mut self.refs.occs[o];
            let sets = classes.sets_of(b, &occ.key);
            if sets.is_empty() {
                continue;
            }
            match occ.key_type {
                Some(ty) => {
                    if let Some(pin) = keys::pinned(ty, sets) {
                        occ.keys = Some(pin.keys);
                        occ.params = pin.params;
                    }
                }
                None => occ.untyped_pin = true,
            }
        }
    }
}

impl Walker<'_> {
    /// Marks the scope's sharded occurrences colocated when all of them are joined on their
    /// keys (one equality class) and their keys have one type, so equal keys hash alike.
    fn colocate(&mut self, scope: &Scope<'_>, classes: &mut Classes) {
        let occs: Vec<(usize, usize)> = scope
            .bindings
            .iter()
            .enumerate()
            .filter_map(|(b, bnd)| bnd.occ.map(|o| (b, o)))
            .collect();
        if occs.len() < 2 {
            return;
        }
        let mut class = None;
        let mut key_type = None;
        for &(b, o) in &occs {
            let occ = &self.refs.occs[o];
            let Some(ty) = occ.key_type else { return };
            let Some(c) = classes.class_of(b, &occ.key) else {
                return;
            };
            if *class.get_or_insert(c) != c || *key_type.get_or_insert(ty) != ty {
                return;
            }
        }
        for (_, o) in occs {
            self.refs.occs[o].colocated = true;
        }
    }
}

fn last(parts: &[String]) -> &str {
    parts.last().map(String::as_str).unwrap_or("")
}
