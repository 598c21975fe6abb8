//! Resolving a statement plan under the current ring: its keys (literal, or bound at Bind time,
//! arrays included) to shards, and the refusal of a multi-shard route whose rows cannot be
//! combined exactly.

use super::*;
use crate::ring::key_error_sqlstate;

/// Resolves a statement plan under a ring. Rejects a multi-shard route of a statement whose
/// results cannot be concatenated exactly (`not_mergeable`), with 0A000.
///
/// A split INSERT whose rows all land on one shard still comes back as `Route::Split` with one
/// entry (the rendered text equals the original but for whitespace between rows).
pub fn route(stmt: &StatementPlan, ring: &Ring) -> Result<Route, Error> {
    let route = match &stmt.target {
        Target::Any | Target::Transaction(_) | Target::Session(_) => return Ok(Route::Any),
        Target::Reject(e) => return Err(e.clone()),
        Target::All | Target::CopyIn(_) => Route::All,
        Target::Keys(keys) => {
            let mut shards: ShardSet = keys.iter().map(|k| ring.shard_for_key(k)).collect();
            shards.sort_unstable();
            shards.dedup();
            if shards.is_empty() {
                // Keys are never empty; if they were, no row matches and any shard answers.
                return Ok(Route::Any);
            }
            Route::Shards(shards)
        }
        Target::Split(split) => return Ok(split_route(split, ring)),
        Target::Bound(_) => return Err(Error::internal("parameters needed")),
    };
    mergeable(stmt, route, ring)
}

/// Resolves a `Target::Bound` statement once its parameters are known. `param(i)` gives the key
/// decoded from parameter i, `None` if it is NULL, `Some(Err(msg))` if it cannot be decoded as the key type.
/// `array(i)` likewise gives the keys of array parameter i (`key = ANY($1)`).
///
/// A NULL key in a WHERE clause matches no row, so it adds no shard (nor does a NULL or empty
/// array, or a NULL element); if no shard remains, shard 0 answers (with no rows). An array too
/// long to read sends the statement to every shard. A NULL key of an INSERT cannot be placed, nor
/// can parameterized INSERT rows that land on several shards. Any other target is resolved by `route`.
pub fn route_bound(
    stmt: &StatementPlan,
    ring: &Ring,
    param: &mut dyn FnMut(usize) -> Option<Result<Key, String>>,
    array: &mut dyn FnMut(usize) -> Option<Result<ArrayKeys, String>>,
) -> Result<Route, Error> {
    let Target::Bound(bound) = &stmt.target else {
        return route(stmt, ring);
    };
    let mut shards: ShardSet = bound
        .literals
        .iter()
        .map(|k| ring.shard_for_key(k))
        .collect();
    let mut everywhere = false;
    for &i in &bound.arrays {
        match array(i) {
            Some(Ok(ArrayKeys::Keys(keys))) => {
                shards.extend(keys.iter().flatten().map(|k| ring.shard_for_key(k)));
                // Bounded by the shard count, not the array's length.
                shards.sort_unstable();
                shards.dedup();
            }
            Some(Ok(ArrayKeys::TooMany)) => everywhere = true,
            Some(Err(msg)) if key_error_sqlstate(&msg) != "0A000" => {
                return Err(bad_parameter(i, &msg))
            }
            Some(Err(msg)) => {
                return Err(Error::unsupported(
                    format!(
                    "parameter ${} holds shard keys but cannot be read as an array of them: {msg}",
                    i + 1
                ),
                    format!(
                        "bind an array of {} values",
                        insert::type_name(bound.key_type)
                    ),
                ))
            }
            None => {}
        }
    }
    for &i in &bound.params {
        match param(i) {
            Some(Ok(key)) => shards.push(ring.shard_for_key(&key)),
            Some(Err(msg)) if key_error_sqlstate(&msg) != "0A000" => {
                return Err(bad_parameter(i, &msg))
            }
            Some(Err(msg)) => {
                return Err(Error::unsupported(
                    format!(
                        "parameter ${} holds the shard key but cannot be read as one: {msg}",
                        i + 1
                    ),
                    format!(
                        "bind the shard key as a {} value",
                        insert::type_name(bound.key_type)
                    ),
                ))
            }
            None if stmt.inserts => {
                return Err(Error::unsupported(
                    format!(
                        "a NULL shard key cannot be placed on a shard (parameter ${} is NULL)",
                        i + 1
                    ),
                    "give the shard key a value",
                ))
            }
            None => {}
        }
    }
    if everywhere {
        return mergeable(stmt, Route::All, ring);
    }
    shards.sort_unstable();
    shards.dedup();
    if shards.is_empty() {
        shards.push(ring.first_member());
    }
    if stmt.inserts && shards.len() > 1 {
        return Err(Error::unsupported(
            format!(
                "the rows of this INSERT belong on {} different shards, and shardgate cannot split an INSERT whose keys are parameters",
                shards.len()
            ),
            "insert rows of different shards in separate statements, or write the keys as constants",
        ));
    }
    mergeable(stmt, Route::Shards(shards), ring)
}

/// Refuses a multi-shard route of a statement whose results cannot be concatenated exactly.
fn mergeable(stmt: &StatementPlan, route: Route, ring: &Ring) -> Result<Route, Error> {
    let spread = match &route {
        Route::Shards(s) => s.len(),
        _ => ring.shard_count(),
    };
    match &stmt.not_mergeable {
        Some(r) if spread > 1 => Err(Error::Unsupported {
            message: format!(
                "shardgate cannot combine {} exactly: this statement would run on {spread} shards",
                r.what
            ),
            hint: Some(r.hint.clone()),
        }),
        _ => Ok(route),
    }
}

fn split_route(split: &SplitInsert, ring: &Ring) -> Route {
    let mut rows: Vec<(ShardId, usize)> = split
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (ring.shard_for_key(k), i))
        .collect();
    // Stable by (shard, row): rows keep their order within a shard.
    rows.sort_unstable();
    let per_shard = rows
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| {
            let indices: Vec<usize> = group.iter().map(|&(_, i)| i).collect();
            (group[0].0, split.template.render(&indices))
        })
        .collect();
    Route::Split(per_shard)
}

/// A key parameter PostgreSQL would refuse as well: its SQLSTATE, and which parameter.
fn bad_parameter(i: usize, message: &str) -> Error {
    Error::BadParameter {
        sqlstate: key_error_sqlstate(message),
        message: message.to_owned(),
        param: i + 1,
    }
}
