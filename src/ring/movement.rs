//! What a ring change does to placement: the exact share of keys moving between shards.

use super::Ring;
use std::fmt;

/// The shares of the hash space (so of uniformly hashed keys) by old owner and new owner.
/// Shards of the two rings are matched by name: an unchanged name means "stays".
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    from: Vec<String>,
    to: Vec<String>,
    /// `share[f][t]`: the share owned by old shard `f` and new shard `t`.
    share: Vec<Vec<f64>>,
}

/// Computes the movement from `old` to `new` by intersecting their arcs over the whole 64-bit
/// hash space, so the figures are exact rather than sampled.
pub fn movement(old: &Ring, new: &Ring) -> Movement {
    let mut acc = vec![vec![0u128; new.names.len()]; old.names.len()];
    let (a, b) = (&old.points, &new.points);
    if !a.is_empty() && !b.is_empty() {
        // Between consecutive boundaries of either ring both owners are constant, and each
        // segment (prev, here] belongs to the first point at or after `here` in each ring.
        let mut bounds: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
        bounds.sort_unstable();
        bounds.dedup();
        let (mut i, mut j) = (0, 0);
        let last = bounds[bounds.len() - 1];
        let mut prev: Option<u64> = None;
        for &here in &bounds {
            while i < a.len() && a[i] < here {
                i += 1;
            }
            while j < b.len() && b[j] < here {
                j += 1;
            }
            // The segment that ends at the first boundary also takes the wrap above the last.
            let size = match prev {
                None => (1u128 << 64) - u128::from(last) + u128::from(here),
                Some(p) => u128::from(here - p),
            };
            let f = old.owners[if i == a.len() { 0 } else { i }];
            let t = new.owners[if j == b.len() { 0 } else { j }];
            acc[usize::from(f.0)][usize::from(t.0)] += size;
            prev = Some(here);
        }
    }
    Movement {
        from: old.names.clone(),
        to: new.names.clone(),
        share: acc
            .iter()
            .map(|row| row.iter().map(|&c| c as f64 / super::SPACE).collect())
            .collect(),
    }
}

impl Movement {
    /// The share of all keys whose shard changes.
    pub fn moved_share(&self) -> f64 {
        self.moves().map(|(_, _, s)| s).sum()
    }

    /// The share of keys on old shard `from` that the new ring places on `to` (0 if either is unknown).
    pub fn share(&self, from: &str, to: &str) -> f64 {
        let f = self.from.iter().position(|n| n == from);
        let t = self.to.iter().position(|n| n == to);
        match (f, t) {
            (Some(f), Some(t)) => self.share[f][t],
            _ => 0.0,
        }
    }

    /// Every non-empty (old shard, new shard, share), staying keys included.
    pub fn flows(&self) -> impl Iterator<Item = (&str, &str, f64)> + '_ {
        self.share.iter().enumerate().flat_map(move |(f, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, &s)| s > 0.0)
                .map(move |(t, &s)| (self.from[f].as_str(), self.to[t].as_str(), s))
        })
    }

    /// The flows whose keys change shard.
    pub fn moves(&self) -> impl Iterator<Item = (&str, &str, f64)> + '_ {
        self.flows().filter(|(f, t, _)| f != t)
    }

    /// Old shard names, in the old ring's ShardId order.
    pub fn from_names(&self) -> &[String] {
        &self.from
    }

    /// New shard names, in the new ring's ShardId order.
    pub fn to_names(&self) -> &[String] {
        &self.to
    }
}

impl fmt::Display for Movement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "keys moving: {:.2}%", self.moved_share() * 100.0)?;
        let wf = self
            .from
            .iter()
            .map(String::len)
            .chain([4])
            .max()
            .unwrap_or(4);
        let wt = self
            .to
            .iter()
            .map(String::len)
            .chain([2])
            .max()
            .unwrap_or(2);
        writeln!(f, "{:<wf$}  {:<wt$}  {:>7}", "from", "to", "share")?;
        // Moves first: they are what an operator plans for; staying keys follow for the totals.
        let moves = self.moves();
        let stays = self.flows().filter(|(a, b, _)| a == b);
        for (from, to, share) in moves.chain(stays) {
            let note = if from == to { "  (stays)" } else { "" };
            writeln!(f, "{from:<wf$}  {to:<wt$}  {:>6.2}%{note}", share * 100.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tests::ring_of;
    use crate::ring::Key;

    #[test]
    fn identical_rings_move_nothing() {
        let r = ring_of(&["a", "b", "c"], 64);
        let m = movement(&r, &r);
        assert_eq!(m.moved_share(), 0.0);
        assert_eq!(m.moves().count(), 0);
        let total: f64 = m.flows().map(|(_, _, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-12);
        for (name, own) in r.names().iter().zip(r.ownership()) {
            assert_eq!(m.share(name, name), own);
        }
    }

    #[test]
    fn shards_match_by_name_not_by_id() {
        let old = ring_of(&["a", "b"], 64);
        let new = ring_of(&["b", "a"], 64);
        assert_eq!(movement(&old, &new).moved_share(), 0.0);
    }

    #[test]
    fn exact_shares_agree_with_sampled_keys() {
        let old = ring_of(&["a", "b", "c"], 32);
        let new = ring_of(&["a", "c", "d"], 32);
        let m = movement(&old, &new);
        let n = 200_000;
        let mut moved = 0;
        let mut b_to_d = 0;
        for k in 0..n {
            let h = Key::Int(k).hash();
            let (from, to) = (
                old.shard_name(old.shard_for_hash(h)),
                new.shard_name(new.shard_for_hash(h)),
            );
            moved += usize::from(from != to);
            b_to_d += usize::from(from == "b" && to == "d");
        }
        let sampled = moved as f64 / n as f64;
        assert!((sampled - m.moved_share()).abs() < 0.01, "{sampled} vs {m}");
        assert!((b_to_d as f64 / n as f64 - m.share("b", "d")).abs() < 0.01);
        // Removing b hands all of b away; a and c only ever lose keys to d.
        assert!(
            (m.share("b", "a") + m.share("b", "c") + m.share("b", "d") - old.ownership()[1]).abs()
                < 1e-12
        );
        assert!(m.moves().all(|(from, to, _)| from == "b" || to == "d"));
        assert_eq!(m.share("zz", "a"), 0.0);
    }

    #[test]
    fn display_is_a_readable_table() {
        let three = ring_of(&["s0", "s1", "s2"], 64);
        let four = ring_of(&["s0", "s1", "s2", "s3"], 64);
        let text = movement(&three, &four).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("keys moving: "), "{text}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["from", "to", "share"]
        );
        assert!(lines[2].starts_with("s0    s3"), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("s1    s1") && l.ends_with("(stays)")),
            "{text}"
        );
        assert_eq!(lines.len(), 2 + 3 + 3);
    }
}
