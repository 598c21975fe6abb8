//! The `[[rate_limits]]` rules and their buckets: one bucket per user, client address,
//! database or table, made when first needed and forgotten once idle and full again.
//!
//! Sessions resolve their buckets once (at connect, and again after a reload) and keep them,
//! so a statement's check is an atomic operation on a bucket it already holds; the maps here
//! are touched when a session starts, when a table is first used, and by SHOW LIMITS.

use super::bucket::{Bucket, Nanos};
use crate::config::{fold_name, parse_cidr, RateLimitConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Buckets untouched for this long, and full, are forgotten.
pub const IDLE_NANOS: Nanos = 60 * 1_000_000_000;
/// Lock stripes per rule: sessions starting at once rarely meet on one.
const STRIPES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    User,
    ClientIp,
    Database,
    Table,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::User => "user",
            Per::ClientIp => "client_ip",
            Per::Database => "database",
            Per::Table => "table",
        }
    }

    fn parse(s: &str) -> Option<Per> {
        Some(match s {
            "user" => Per::User,
            "client_ip" => Per::ClientIp,
            "database" => Per::Database,
            "table" => Per::Table,
            _ => return None,
        })
    }
}

/// Who an override applies to.
#[derive(Debug)]
enum Match {
    Name(String),
    Net(IpAddr, u8),
}

impl Match {
    /// How specific the match is for `key` (longer prefixes win), if it matches at all.
    fn score(&self, key: &str, ip: Option<IpAddr>) -> Option<u8> {
        match self {
            Match::Name(n) => (n == key).then_some(u8::MAX),
            Match::Net(net, bits) => ip.filter(|ip| in_net(*ip, *net, *bits)).map(|_| *bits),
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

#[derive(Debug)]
pub struct Rule {
    pub per: Per,
    pub rate: f64,
    pub burst: u32,
    overrides: Vec<(Match, f64, u32)>,
    stripes: Vec<Mutex<HashMap<String, Arc<Bucket>>>>,
    /// Statements refused by this rule since start (kept across reloads).
    pub refused: Arc<AtomicU64>,
}

impl Rule {
    /// The rate and burst that apply to `key`.
    fn limit_for(&self, key: &str) -> (f64, u32) {
        let ip = key.parse::<IpAddr>().ok();
        self.overrides
            .iter()
            .filter_map(|(m, r, b)| m.score(key, ip).map(|s| (s, *r, *b)))
            .max_by_key(|(s, _, _)| *s)
            .map_or((self.rate, self.burst), |(_, r, b)| (r, b))
    }

    fn stripe(&self, key: &str) -> MutexGuard<'_, HashMap<String, Arc<Bucket>>> {
        let i = twox_hash::XxHash3_64::oneshot(key.as_bytes()) as usize % STRIPES;
        self.stripes[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bucket for `key`, made now if there is none.
    pub fn bucket(&self, key: &str, now: Nanos) -> Arc<Bucket> {
        let mut map = self.stripe(key);
        if let Some(b) = map.get(key) {
            return b.clone();
        }
        // Growing stripes are swept as they grow, so many one-off addresses cannot pile up.
        if map.len() >= 64 && map.len().is_power_of_two() {
            sweep(&mut map, now);
        }
        let (rate, burst) = self.limit_for(key);
        let b = Arc::new(Bucket::new(rate, burst, now));
        map.insert(key.to_owned(), b.clone());
        b
    }

    /// Every bucket with its key, for SHOW LIMITS.
    pub fn buckets(&self) -> Vec<(String, Arc<Bucket>)> {
        let mut all = Vec::new();
        for s in &self.stripes {
            let map = s.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(map.iter().map(|(k, b)| (k.clone(), b.clone())));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn sweep(&self, now: Nanos) {
        for s in &self.stripes {
            sweep(&mut s.lock().unwrap_or_else(|p| p.into_inner()), now);
        }
    }
}

/// Forgets buckets that no session holds and that are full and idle.
fn sweep(map: &mut HashMap<String, Arc<Bucket>>, now: Nanos) {
    let before = now.saturating_sub(IDLE_NANOS);
    map.retain(|_, b| Arc::strong_count(b) > 1 || !b.idle(now, before));
}

/// The rules in force. A reload builds a new one, keeping the buckets whose limit is unchanged.
#[derive(Debug)]
pub struct Limiter {
    pub rules: Vec<Rule>,
    epoch: Instant,
    /// Changes on every reload, so sessions know to resolve their buckets again.
    pub generation: u64,
}

impl Limiter {
    pub fn new(config: &[RateLimitConfig]) -> Limiter {
        Limiter::build(config, Instant::now(), 0, None)
    }

    /// The limiter for a reloaded config: unchanged buckets carry over with their tokens.
    pub fn reload(&self, config: &[RateLimitConfig]) -> Limiter {
        Limiter::build(config, self.epoch, self.generation + 1, Some(self))
    }

    fn build(
        config: &[RateLimitConfig],
        epoch: Instant,
        generation: u64,
        old: Option<&Limiter>,
    ) -> Limiter {
        let now = epoch.elapsed().as_nanos() as Nanos;
        let rules = config
            .iter()
            .filter_map(|c| {
                let per = Per::parse(&c.per)?;
                let overrides = c
                    .overrides
                    .iter()
                    .filter_map(|o| {
                        let m = match per {
                            Per::ClientIp => {
                                let (net, bits) = parse_cidr(&o.matches)?;
                                Match::Net(net, bits)
                            }
                            // Table names compare as the config stores them: folded.
                            Per::Table => Match::Name(
                                fold_name(&o.matches, 2).unwrap_or_else(|_| o.matches.clone()),
                            ),
                            _ => Match::Name(o.matches.clone()),
                        };
                        Some((m, o.rate, o.burst))
                    })
                    .collect();
                Some(Rule {
                    per,
                    rate: c.rate,
                    burst: c.burst,
                    overrides,
                    stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
                    refused: Arc::default(),
                })
            })
            .collect::<Vec<Rule>>();
        if let Some(old) = old {
            for rule in &rules {
                // The first old rule of the same kind hands over its buckets and its count.
                let Some(prev) = old.rules.iter().find(|r| r.per == rule.per) else {
                    continue;
                };
                prev.sweep(now);
                for (key, b) in prev.buckets() {
                    let (rate, burst) = rule.limit_for(&key);
                    if b.same_limit(rate, burst) {
                        rule.stripe(&key).insert(key, b);
                    }
                }
                rule.refused
                    .store(prev.refused.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        Limiter {
            rules,
            epoch,
            generation,
        }
    }

    pub fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Forgets idle buckets (the background tick calls this).
    pub fn sweep(&self) {
        let now = self.now();
        for r in &self.rules {
            r.sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitOverride;

    fn rule(per: &str, rate: f64, burst: u32, overrides: &[(&str, f64, u32)]) -> RateLimitConfig {
        RateLimitConfig {
            per: per.into(),
            rate,
            burst,
            overrides: overrides
                .iter()
                .map(|(m, r, b)| RateLimitOverride {
                    matches: (*m).into(),
                    rate: *r,
                    burst: *b,
                })
                .collect(),
        }
    }

    #[test]
    fn overrides_pick_the_most_specific_match() {
        let l = Limiter::new(&[
            rule(
                "client_ip",
                1.0,
                1,
                &[("10.0.0.0/8", 5.0, 5), ("10.1.0.0/16", 7.0, 7)],
            ),
            rule("user", 2.0, 2, &[("batch", 100.0, 50)]),
            rule("table", 3.0, 3, &[("Public.Orders", 9.0, 9)]),
        ]);
        let ip = &l.rules[0];
        assert_eq!(ip.limit_for("10.1.2.3"), (7.0, 7));
        assert_eq!(ip.limit_for("10.2.2.3"), (5.0, 5));
        assert_eq!(ip.limit_for("127.0.0.1"), (1.0, 1));
        assert_eq!(ip.limit_for("::1"), (1.0, 1));
        assert_eq!(l.rules[1].limit_for("batch"), (100.0, 50));
        assert_eq!(l.rules[1].limit_for("app"), (2.0, 2));
        assert_eq!(l.rules[2].limit_for("public.orders"), (9.0, 9));
    }

    #[test]
    fn a_bucket_is_shared_by_key_and_forgotten_when_idle() {
        let l = Limiter::new(&[rule("user", 1.0, 2, &[])]);
        let a = l.rules[0].bucket("app", 0);
        assert!(Arc::ptr_eq(&a, &l.rules[0].bucket("app", 0)));
        a.take(2, 0).unwrap();
        drop(a);
        let later = IDLE_NANOS + 10_000_000_000;
        l.rules[0].sweep(later);
        assert!(l.rules[0].buckets().is_empty());
        // A bucket still in use survives, idle or not.
        let held = l.rules[0].bucket("app", later);
        l.rules[0].sweep(later * 3);
        assert_eq!(l.rules[0].buckets().len(), 1);
        drop(held);
    }

    #[test]
    fn a_reload_keeps_unchanged_buckets_and_their_tokens() {
        let l = Limiter::new(&[rule("user", 1.0, 3, &[("big", 10.0, 10)])]);
        let app = l.rules[0].bucket("app", l.now());
        app.take(3, l.now()).unwrap();
        let big = l.rules[0].bucket("big", l.now());
        let l2 = l.reload(&[rule("user", 1.0, 3, &[("big", 20.0, 10)])]);
        assert_eq!(l2.generation, 1);
        let app2 = l2.rules[0].bucket("app", l2.now());
        assert!(Arc::ptr_eq(&app, &app2), "unchanged limit: same bucket");
        assert!(
            app2.take(1, l2.now()).is_err(),
            "its tokens are still spent"
        );
        let big2 = l2.rules[0].bucket("big", l2.now());
        assert!(!Arc::ptr_eq(&big, &big2));
        assert_eq!(big2.rate, 20.0);
    }

    #[test]
    fn many_one_off_keys_do_not_pile_up() {
        let l = Limiter::new(&[rule("client_ip", 1000.0, 1, &[])]);
        let r = &l.rules[0];
        for i in 0..100_000u32 {
            let now = u64::from(i) * 10_000_000 + IDLE_NANOS * 2;
            let b = r.bucket(&std::net::Ipv4Addr::from(i).to_string(), now);
            b.take(1, now).unwrap();
        }
        let kept = r.buckets().len();
        assert!(kept < 20_000, "{kept} buckets kept");
    }
}
