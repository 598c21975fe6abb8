//! Two-phase transaction ids: what a participant's gid says about its transaction.

/// A participant's two-phase transaction id:
/// `sg_<instance>_<sequence>_<participant shard id>_<coordinator shard name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gid {
    pub instance: String,
    pub seq: u64,
    pub participant: u16,
    pub coordinator: String,
}

impl Gid {
    pub fn parse(s: &str) -> Option<Gid> {
        let rest = s.strip_prefix("sg_")?;
        let mut parts = rest.splitn(4, '_');
        let instance = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        let participant = parts.next()?.parse().ok()?;
        let coordinator = parts.next()?;
        if instance.is_empty() || coordinator.is_empty() {
            return None;
        }
        Some(Gid {
            instance: instance.to_owned(),
            seq,
            participant,
            coordinator: coordinator.to_owned(),
        })
    }

    /// The distributed transaction's id, the key of its decision record: `sg_<instance>_<seq>`.
    pub fn txn(&self) -> String {
        format!("sg_{}_{}", self.instance, self.seq)
    }
}

impl std::fmt::Display for Gid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sg_{}_{}_{}_{}",
            self.instance, self.seq, self.participant, self.coordinator
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Gid;

    #[test]
    fn gids_round_trip_and_foreign_ones_are_not_ours() {
        let g = Gid {
            instance: "0a1b2c3d4e5f".into(),
            seq: 42,
            participant: 3,
            coordinator: "eu_west_1".into(),
        };
        let text = g.to_string();
        assert_eq!(text, "sg_0a1b2c3d4e5f_42_3_eu_west_1");
        assert_eq!(Gid::parse(&text), Some(g.clone()));
        assert_eq!(g.txn(), "sg_0a1b2c3d4e5f_42");
        for foreign in [
            "someone_else",
            "sg_x_1",
            "sg_x_one_2_s0",
            "sg__1_2_s0",
            "sg_x_1_2_",
        ] {
            assert_eq!(Gid::parse(foreign), None, "{foreign}");
        }
    }
}
