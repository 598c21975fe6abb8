//! Rings with shards of weight 0: what a rebalance builds over the backend's stable ids.

use super::{movement, Key, Ring, ShardId};
use crate::config::{default_vnodes, ShardConfig};

fn shards(spec: &[(&str, u32)]) -> Vec<ShardConfig> {
    spec.iter()
        .map(|&(name, weight)| ShardConfig {
            name: name.into(),
            url: String::new(),
            weight,
            points: None,
        })
        .collect()
}

#[test]
fn a_weight_zero_shard_owns_nothing_and_moves_nobody() {
    let vnodes = default_vnodes();
    let without = Ring::new(&shards(&[("s0", 1), ("s1", 1), ("s2", 1)]), vnodes);
    // A drained shard between the others: ids shift for s2, so compare by name.
    let with = Ring::new(
        &shards(&[("s0", 1), ("old", 0), ("s1", 1), ("s2", 1)]),
        vnodes,
    );
    assert_eq!(with.point_count(), without.point_count());
    assert_eq!(with.ownership()[1], 0.0);
    assert_eq!(with.weight(ShardId(1)), 0);
    for k in (-5000i64..5000).map(Key::Int) {
        let (a, b) = (with.shard_for_key(&k), without.shard_for_key(&k));
        assert_ne!(a, ShardId(1), "{k}");
        assert_eq!(with.shard_name(a), without.shard_name(b), "{k}");
    }
    assert_eq!(movement(&without, &with).moved_share(), 0.0);
    // Still known by name and id, for statistics and SHOW commands.
    assert_eq!(with.shard_by_name("old"), Some(ShardId(1)));
    assert_eq!(with.shard_name(ShardId(1)), "old");
    assert_eq!(super::spread(&with), super::spread(&without));
}

#[test]
fn members_are_the_shards_with_weight_ascending() {
    let ring = Ring::new(
        &shards(&[("a", 0), ("b", 2), ("c", 1), ("d", 0), ("e", 1)]),
        16,
    );
    assert_eq!(ring.members(), [ShardId(1), ShardId(2), ShardId(4)]);
    assert_eq!(ring.shard_count(), 3);
    assert_eq!(ring.names().len(), 5);
    assert_eq!(ring.weight(ShardId(1)), 2);
    assert_eq!(ring.weight(ShardId(9)), 0);
    let all = Ring::new(&shards(&[("a", 1), ("b", 1)]), 16);
    assert_eq!(all.members(), [ShardId(0), ShardId(1)]);
    let none = Ring::new(&shards(&[("a", 0)]), 16);
    assert!(none.members().is_empty());
    assert_eq!(none.shard_count(), 0);
    assert_eq!(none.point_count(), 0);
}
