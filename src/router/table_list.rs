//! The tables a plan touches, by configured name, with a slot where the statistics keep which
//! of their counters each name is: resolved once per cached plan, not hashed per statement.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// Table names of a plan, shared by every use of a cached plan.
pub type Tables = Arc<TableList>;

/// Configured table names, the sharded ones first (the first one's keys route the statement).
#[derive(Default)]
pub struct TableList {
    names: Box<[Arc<str>]>,
    resolved: OnceLock<Resolved>,
}

/// What one resolver made of the names: `ids[i]` for `names[i]`, in that resolver's numbering.
struct Resolved {
    owner: usize,
    ids: Box<[u32]>,
}

impl TableList {
    pub fn of<I: IntoIterator<Item = Arc<str>>>(names: I) -> Tables {
        Arc::new(TableList {
            names: names.into_iter().collect(),
            resolved: OnceLock::new(),
        })
    }

    /// The ids `resolve` gives these names, computed at the first call and kept. `owner` tells
    /// resolvers apart: for any other owner than the first this answers None (the caller then
    /// resolves by name itself), so a list never answers with another numbering's ids.
    pub fn ids(
        &self,
        owner: usize,
        resolve: impl FnOnce(&[Arc<str>]) -> Box<[u32]>,
    ) -> Option<&[u32]> {
        let r = self.resolved.get_or_init(|| Resolved {
            owner,
            ids: resolve(&self.names),
        });
        (r.owner == owner).then_some(&*r.ids)
    }
}

impl Deref for TableList {
    type Target = [Arc<str>];

    fn deref(&self) -> &[Arc<str>] {
        &self.names
    }
}

/// Two lists are equal when they name the same tables, resolved or not.
impl PartialEq for TableList {
    fn eq(&self, other: &TableList) -> bool {
        self.names == other.names
    }
}

impl std::fmt::Debug for TableList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_once_and_only_for_its_owner() {
        let list = TableList::of(["users".into(), "orders".into()]);
        let mut calls = 0;
        let mut resolve = |names: &[Arc<str>]| {
            calls += 1;
            names.iter().map(|n| n.len() as u32).collect()
        };
        assert_eq!(list.ids(1, &mut resolve), Some(&[5, 6][..]));
        assert_eq!(list.ids(1, &mut resolve), Some(&[5, 6][..]));
        assert_eq!(list.ids(2, &mut resolve), None);
        assert_eq!(calls, 1);
        assert_eq!(&list[..], &["users".into(), "orders".into()] as &[Arc<str>]);
        assert_eq!(*list, *TableList::of(["users".into(), "orders".into()]));
        assert!(TableList::default().is_empty());
    }
}
