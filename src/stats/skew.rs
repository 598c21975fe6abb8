//! Skew judgement: each shard's recent share of keyed traffic (exponentially decayed) and of
//! stored rows, against its share of the ring's weight. Shards are indexed by ShardId; a shard
//! of weight 0 (not in the ring) owns no keys, so it is neither judged nor counted in the totals.

use crate::config::StatsConfig;

/// Stored rows below this (over all shards) are too few to call a shard's share skewed.
const MIN_ROWS: u64 = 1000;

/// One shard's shares and verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardSkew {
    /// Share of recent keyed statements, 0..1 (0 before any).
    pub traffic_share: f64,
    /// Recent keyed statements, decayed by the half-life.
    pub recent: f64,
    /// Share of the sharded tables' stored rows, when every shard's count is known.
    pub rows_share: Option<f64>,
    pub weight_share: f64,
    /// Why the shard is flagged, if it is: "traffic 53% vs weight 33%".
    pub skewed: Option<String>,
}

pub(super) struct Tracker {
    last_secs: u64,
    last_keyed: Vec<u64>,
    decayed: Vec<f64>,
    /// The ring's weights the shares were gathered under.
    weights: Vec<u32>,
    report: Vec<ShardSkew>,
}

impl Tracker {
    pub fn new(weights: &[u32]) -> Tracker {
        let n = weights.len();
        Tracker {
            last_secs: 0,
            last_keyed: vec![0; n],
            decayed: vec![0.0; n],
            weights: weights.to_vec(),
            report: vec![ShardSkew::default(); n],
        }
    }

    /// Follows a change of the ring: shards added since (their counters start at 0) are
    /// appended; if any known shard's weight changed, the decayed traffic was routed by another
    /// placement and says nothing about this one, so it starts afresh from `keyed`.
    fn follow(&mut self, keyed: &[u64], weights: &[u32]) {
        let n = keyed.len().max(weights.len());
        let moved = self.weights.iter().zip(weights).any(|(a, b)| a != b);
        self.last_keyed.resize(n, 0);
        self.decayed.resize(n, 0.0);
        self.report.resize(n, ShardSkew::default());
        if moved {
            self.decayed.iter_mut().for_each(|d| *d = 0.0);
            for (last, &now) in self.last_keyed.iter_mut().zip(keyed) {
                *last = now;
            }
        }
        self.weights = weights.to_vec();
    }

    pub fn report(&self) -> Vec<ShardSkew> {
        self.report.clone()
    }

    /// `keyed`: each shard's keyed-statement counter now; `stored`: its stored rows if known.
    pub fn tick(
        &mut self,
        secs: u64,
        keyed: &[u64],
        stored: &[Option<u64>],
        weights: &[u32],
        config: &StatsConfig,
    ) {
        if self.weights != weights || self.decayed.len() < keyed.len() {
            self.follow(keyed, weights);
        }
        let dt = secs.saturating_sub(self.last_secs) as f64;
        self.last_secs = self.last_secs.max(secs);
        let decay = (-dt / config.half_life_secs.max(1) as f64).exp2();
        for (i, &now) in keyed.iter().enumerate().take(self.decayed.len()) {
            let delta = now.saturating_sub(self.last_keyed[i]) as f64;
            self.decayed[i] = self.decayed[i] * decay + delta;
            self.last_keyed[i] = now;
        }
        let was: Vec<bool> = self.report.iter().map(|r| r.skewed.is_some()).collect();
        self.report = judge(&self.decayed, stored, weights, config, &was);
    }
}

/// The verdict for each shard from its decayed traffic and stored rows.
pub(super) fn judge(
    decayed: &[f64],
    stored: &[Option<u64>],
    weights: &[u32],
    config: &StatsConfig,
    was: &[bool],
) -> Vec<ShardSkew> {
    let member = |i: usize| weights.get(i).is_some_and(|&w| w > 0);
    let total: f64 = (decayed.iter().enumerate())
        .filter(|(i, _)| member(*i))
        .map(|(_, d)| d)
        .sum();
    let weight_total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    // Rows left on a shard that has left the ring are not part of the placement judged here.
    let rows: Option<Vec<u64>> = (stored.iter().enumerate())
        .map(|(i, &r)| if member(i) { r } else { Some(0) })
        .collect();
    let rows_total: u64 = rows.iter().flatten().sum();
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    decayed
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if !member(i) {
                return ShardSkew {
                    recent: d,
                    ..Default::default()
                };
            }
            let weight_share = if weight_total > 0.0 {
                f64::from(weights.get(i).copied().unwrap_or(0)) / weight_total
            } else {
                0.0
            };
            let traffic_share = if total > 0.0 { d / total } else { 0.0 };
            let rows_share = rows
                .as_ref()
                .filter(|_| rows_total > 0)
                .map(|r| r[i] as f64 / rows_total as f64);
            // A flagged shard clears only half way back to its due share, so that a share
            // hovering at the threshold does not flip the verdict (and the log) every second.
            let factor = if was.get(i).copied().unwrap_or(false) {
                1.0 + (config.skew_factor - 1.0) / 2.0
            } else {
                config.skew_factor
            };
            let mut why = Vec::new();
            if total >= config.skew_min_statements as f64 && traffic_share > factor * weight_share {
                why.push(format!(
                    "traffic {} vs weight {}",
                    pct(traffic_share),
                    pct(weight_share)
                ));
            }
            if let Some(r) = rows_share.filter(|_| rows_total >= MIN_ROWS) {
                if r > factor * weight_share {
                    why.push(format!("rows {} vs weight {}", pct(r), pct(weight_share)));
                }
            }
            ShardSkew {
                traffic_share,
                recent: d,
                rows_share,
                weight_share,
                skewed: (!why.is_empty()).then(|| why.join(", ")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StatsConfig {
        StatsConfig::default()
    }

    #[test]
    fn uniform_traffic_is_not_skewed() {
        let r = judge(
            &[1000.0, 1050.0, 980.0],
            &[None; 3],
            &[1, 1, 1],
            &config(),
            &[],
        );
        assert!(r.iter().all(|s| s.skewed.is_none()), "{r:?}");
        assert!((r[1].traffic_share - 1050.0 / 3030.0).abs() < 1e-9);
    }

    #[test]
    fn a_shard_above_its_weight_is_flagged() {
        let r = judge(
            &[1600.0, 700.0, 700.0],
            &[None; 3],
            &[1, 1, 1],
            &config(),
            &[],
        );
        let why = r[0].skewed.as_deref().expect("flagged");
        assert_eq!(why, "traffic 53% vs weight 33%");
        assert!(r[1].skewed.is_none() && r[2].skewed.is_none());
    }

    #[test]
    fn weights_set_the_expected_share() {
        // Shard 0 has weight 2 of 4: half the traffic is its due.
        let r = judge(
            &[1000.0, 500.0, 500.0],
            &[None; 3],
            &[2, 1, 1],
            &config(),
            &[],
        );
        assert!(r.iter().all(|s| s.skewed.is_none()), "{r:?}");
    }

    #[test]
    fn little_traffic_is_not_judged() {
        let r = judge(&[150.0, 0.0, 0.0], &[None; 3], &[1, 1, 1], &config(), &[]);
        assert!(r[0].skewed.is_none());
    }

    #[test]
    fn stored_rows_are_judged_when_all_known() {
        let rows = [Some(9000), Some(500), Some(500)];
        let r = judge(&[0.0; 3], &rows, &[1, 1, 1], &config(), &[]);
        assert_eq!(r[0].skewed.as_deref(), Some("rows 90% vs weight 33%"));
        let unknown = [Some(9000), None, Some(500)];
        let r = judge(&[0.0; 3], &unknown, &[1, 1, 1], &config(), &[]);
        assert!(r[0].skewed.is_none() && r[0].rows_share.is_none());
    }

    #[test]
    fn a_flagged_shard_clears_half_way_back() {
        // 40% against a third is 1.2x: below 1.25 to be flagged, above 1.125 to stay flagged.
        let traffic = [1200.0, 900.0, 900.0];
        let fresh = judge(&traffic, &[None; 3], &[1, 1, 1], &config(), &[]);
        assert!(fresh[0].skewed.is_none());
        let held = judge(
            &traffic,
            &[None; 3],
            &[1, 1, 1],
            &config(),
            &[true, false, false],
        );
        assert!(held[0].skewed.is_some());
        let back = [1100.0, 950.0, 950.0];
        let cleared = judge(
            &back,
            &[None; 3],
            &[1, 1, 1],
            &config(),
            &[true, false, false],
        );
        assert!(cleared[0].skewed.is_none());
    }

    #[test]
    fn traffic_fades_by_the_half_life() {
        let c = config();
        let mut t = Tracker::new(&[1, 1]);
        t.tick(1, &[1000, 0], &[None; 2], &[1, 1], &c);
        assert!(t.report()[0].skewed.is_some());
        // Uniform traffic from then on: after ten half-lives the old burst no longer counts.
        t.tick(601, &[2000, 1000], &[None; 2], &[1, 1], &c);
        let r = t.report();
        assert!(r.iter().all(|s| s.skewed.is_none()), "{r:?}");
        assert!((r[0].recent - 1000.0 - 1000.0 / 1024.0).abs() < 1e-6);
    }

    #[test]
    fn a_ring_change_resizes_and_restarts_the_shares() {
        let c = config();
        let mut t = Tracker::new(&[1, 1]);
        t.tick(1, &[1000, 0], &[None; 2], &[1, 1], &c);
        assert!(t.report()[0].skewed.is_some());
        // A third shard joins with weight 0 (being filled): nothing is forgotten, nothing judged.
        t.tick(2, &[1000, 0, 0], &[None; 3], &[1, 1, 0], &c);
        let r = t.report();
        assert_eq!(r.len(), 3);
        assert!(r[0].skewed.is_some() && r[2].skewed.is_none(), "{r:?}");
        // The switch: shard 0 leaves, 1 and 2 share the keys. Old traffic no longer counts.
        t.tick(
            3,
            &[1000, 300, 300],
            &[Some(5000), Some(0), Some(0)],
            &[0, 1, 1],
            &c,
        );
        let r = t.report();
        assert_eq!(r[0], ShardSkew::default(), "{r:?}");
        assert_eq!(r[1].traffic_share, 0.0);
        // Rows still on the drained shard are left out of the rows totals.
        assert_eq!(r[1].rows_share, None);
        t.tick(
            4,
            &[1000, 400, 400],
            &[Some(5000), Some(600), Some(600)],
            &[0, 1, 1],
            &c,
        );
        let r = t.report();
        assert!((r[1].traffic_share - 0.5).abs() < 1e-9, "{r:?}");
        assert_eq!(r[2].rows_share, Some(0.5));
        assert!(r.iter().all(|s| s.skewed.is_none()), "{r:?}");
    }
}
