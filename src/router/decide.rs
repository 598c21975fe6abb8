//! From the table occurrences of a statement to its target: one shard per key, every shard, any
//! shard, or a refusal that names the construct that cannot run exactly.

use super::tables::{Ctx, Refs, Role};
use super::{BoundKeys, Target};
use crate::error::Error;
use crate::ring::Key;

/// `written` is the role of the table the statement writes (`Role::Other` for reads).
pub(super) fn decide(refs: &Refs, written: &Role) -> Target {
    if let Some(e) = &refs.error {
        return Target::Reject(e.clone());
    }
    if let Some(table) = &refs.unknown {
        return Target::Reject(Error::UnknownTable {
            table: table.clone(),
        });
    }
    if let Some(o) = refs.occs.iter().find(|o| o.untyped_pin) {
        return Target::Reject(Error::unsupported(
            format!("the type of {}.{} is not known yet", o.name, o.key),
            "set key_type for the table in shards.toml, or retry once shardgate has read the shards' catalog",
        ));
    }
    if let Role::Reference(table) = written {
        // Every copy must end up the same: rows read from one shard would differ per shard.
        return match refs.occs.first() {
            Some(o) => Target::Reject(Error::unsupported(
                format!(
                    "writing reference table {table} from sharded table {} is not supported by shardgate: the copies of {table} would differ between shards",
                    o.name
                ),
                "read the sharded rows first, then write the reference table with constants",
            )),
            None => Target::All,
        };
    }
    if refs.occs.is_empty() {
        return Target::Any;
    }
    if refs.occs.iter().all(|o| o.keys.is_some()) {
        let mut keys: Vec<Key> = Vec::new();
        for k in refs.occs.iter().flat_map(|o| o.keys.iter().flatten()) {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        if refs.occs.iter().all(|o| o.params.is_empty()) {
            return Target::Keys(keys);
        }
        return bound(refs, keys);
    }
    let top = refs
        .occs
        .iter()
        .all(|o| o.ctx == Ctx::Top && o.keys.is_none());
    if top && (refs.occs.len() == 1 || refs.occs.iter().all(|o| o.colocated)) {
        // One sharded table, or tables joined on their keys: each shard joins its own rows.
        return Target::All;
    }
    Target::Reject(refusal(refs))
}

/// Every occurrence is pinned and some by parameters. One parameter type per statement: the
/// session decodes every parameter as that type.
fn bound(refs: &Refs, literals: Vec<Key>) -> Target {
    let with_params = || refs.occs.iter().filter(|o| !o.params.is_empty());
    let Some(first) = with_params().next() else {
        return Target::Keys(literals);
    };
    if let Some(other) = with_params().find(|o| o.key_type != first.key_type) {
        return Target::Reject(Error::unsupported(
            format!(
                "shardgate cannot route one statement whose parameters hold shard keys of different types ({}.{} and {}.{})",
                first.name, first.key, other.name, other.key
            ),
            "write one of the keys as a constant, or run one statement per table",
        ));
    }
    let Some(key_type) = first.key_type else {
        // Untyped pins were refused before.
        return Target::Reject(Error::internal("a parameter pins a key of unknown type"));
    };
    let mut all: Vec<_> = with_params().flat_map(|o| o.params.iter()).collect();
    all.sort_by_key(|p| p.at);
    let (mut params, mut arrays): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for p in all {
        let list = if p.array { &mut arrays } else { &mut params };
        if !list.contains(&p.index) {
            list.push(p.index);
        }
    }
    Target::Bound(BoundKeys {
        key_type,
        literals,
        params,
        arrays,
    })
}

fn refusal(refs: &Refs) -> Error {
    let unpinned = |ctx: Ctx| {
        refs.occs
            .iter()
            .find(|o| o.keys.is_none() && o.ctx == ctx)
            .map(|o| o.name.as_str())
    };
    let construct = if let Some(t) = unpinned(Ctx::SetOp) {
        format!("a UNION, INTERSECT or EXCEPT over sharded table {t}")
    } else if let Some(t) = unpinned(Ctx::Cte) {
        format!("a WITH query over sharded table {t}")
    } else if let Some(t) = unpinned(Ctx::Subquery) {
        format!("a subquery over sharded table {t}")
    } else if let Some(nested) = refs.occs.iter().find(|o| o.ctx != Ctx::Top) {
        let top = unpinned(Ctx::Top).unwrap_or("?");
        format!(
            "sharded table {top} together with sharded table {} in a subquery",
            nested.name
        )
    } else {
        let mut names: Vec<&str> = Vec::new();
        for o in &refs.occs {
            if !names.contains(&o.name.as_str()) {
                names.push(&o.name);
            }
        }
        match names.as_slice() {
            [one] => format!("a self-join of sharded table {one}"),
            [init @ .., last] => format!("a join of sharded tables {} and {last}", init.join(", ")),
            [] => "this statement".to_string(),
        }
    };
    Error::unsupported(
        format!(
            "shardgate cannot run {construct} without the shard keys pinned to one value: the rows may live on different shards"
        ),
        "add a condition on each sharded table's key (e.g. WHERE users.id = 42, joining on the keys), or make the smaller table a reference table",
    )
}
