//! The gateway in front of the shards: token-bucket rate limits per statement and connection
//! caps per user.

mod bucket;
mod conns;
mod limits;

pub use bucket::Bucket;
pub use conns::{ConnCaps, UserSlot};
pub use limits::{Limiter, Per, Rule};

use crate::error::Error;
use std::collections::HashMap;
use std::sync::Arc;

/// One session's buckets, resolved once and re-resolved after a reload.
#[derive(Debug)]
pub struct SessionLimits {
    user: String,
    database: String,
    ip: String,
    /// The limiter generation the buckets below belong to.
    generation: Option<u64>,
    /// Buckets of the user, address and database rules, with their rule's index.
    fixed: Vec<(usize, Arc<Bucket>)>,
    /// Buckets of the table rules, by table.
    tables: HashMap<Arc<str>, Vec<(usize, Arc<Bucket>)>>,
    has_table_rules: bool,
}

impl SessionLimits {
    pub fn new(user: &str, database: &str, ip: std::net::IpAddr) -> SessionLimits {
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        SessionLimits {
            user: user.to_owned(),
            database: database.to_owned(),
            ip: ip.to_string(),
            generation: None,
            fixed: Vec::new(),
            tables: HashMap::new(),
            has_table_rules: false,
        }
    }

    fn resolve(&mut self, limiter: &Limiter) {
        let now = limiter.now();
        self.fixed.clear();
        self.tables.clear();
        self.has_table_rules = false;
        for (i, rule) in limiter.rules.iter().enumerate() {
            let key = match rule.per {
                Per::User => &self.user,
                Per::ClientIp => &self.ip,
                Per::Database => &self.database,
                Per::Table => {
                    self.has_table_rules = true;
                    continue;
                }
            };
            self.fixed.push((i, rule.bucket(key, now)));
        }
        self.generation = Some(limiter.generation);
    }

    /// Takes one token per statement from every bucket that applies (the table buckets: one
    /// per statement naming the table), or none at all and says which limit refused.
    pub fn admit<'t>(
        &mut self,
        limiter: &Limiter,
        statements: u32,
        tables: impl Iterator<Item = &'t str>,
    ) -> Result<(), Error> {
        if limiter.is_empty() || statements == 0 {
            return Ok(());
        }
        if self.generation != Some(limiter.generation) {
            self.resolve(limiter);
        }
        let now = limiter.now();
        for (n, (i, b)) in self.fixed.iter().enumerate() {
            if let Err(r) = b.take(statements, now) {
                for (_, back) in &self.fixed[..n] {
                    back.refund(statements, now);
                }
                return Err(refusal(
                    limiter,
                    *i,
                    self.key(limiter, *i),
                    b,
                    statements,
                    r,
                ));
            }
        }
        if !self.has_table_rules {
            return Ok(());
        }
        let mut taken: Vec<(usize, Arc<Bucket>)> = Vec::new();
        for table in tables {
            if !self.tables.contains_key(table) {
                let made = limiter
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.per == Per::Table)
                    .map(|(i, r)| (i, r.bucket(table, now)))
                    .collect();
                self.tables.insert(Arc::from(table), made);
            }
            let buckets = &self.tables[table];
            for (i, b) in buckets {
                if let Err(r) = b.take(1, now) {
                    for (_, back) in &taken {
                        back.refund(1, now);
                    }
                    for (_, back) in &self.fixed {
                        back.refund(statements, now);
                    }
                    return Err(refusal(limiter, *i, table, b, 1, r));
                }
                taken.push((*i, b.clone()));
            }
        }
        Ok(())
    }

    fn key(&self, limiter: &Limiter, rule: usize) -> &str {
        match limiter.rules[rule].per {
            Per::User => &self.user,
            Per::ClientIp => &self.ip,
            Per::Database => &self.database,
            Per::Table => "",
        }
    }
}

fn refusal(
    limiter: &Limiter,
    rule: usize,
    key: &str,
    b: &Bucket,
    asked: u32,
    r: bucket::Refused,
) -> Error {
    let rule_ref = &limiter.rules[rule];
    rule_ref
        .refused
        .fetch_add(u64::from(asked), std::sync::atomic::Ordering::Relaxed);
    let what = match rule_ref.per {
        Per::ClientIp => "client address",
        other => other.as_str(),
    };
    let limit = format!(
        "{what} \"{key}\" may run {} statements per second (bursts of {})",
        trim(b.rate),
        b.burst
    );
    let hint = if asked > b.burst {
        format!(
            "this request has {asked} statements, more than the bucket holds ({}): send them in smaller batches",
            b.burst
        )
    } else {
        format!(
            "retry in {} ms; the admin console's SHOW LIMITS shows the buckets",
            r.wait.div_ceil(1_000_000)
        )
    };
    Error::RateLimited { limit, hint }
}

/// A rate as written: `100`, `2.5`.
pub fn trim(rate: f64) -> String {
    let s = format!("{rate:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitConfig;

    fn limiter(rules: &[(&str, f64, u32)]) -> Limiter {
        let config: Vec<RateLimitConfig> = rules
            .iter()
            .map(|(per, rate, burst)| RateLimitConfig {
                per: (*per).into(),
                rate: *rate,
                burst: *burst,
                overrides: vec![],
            })
            .collect();
        Limiter::new(&config)
    }

    fn session(user: &str) -> SessionLimits {
        SessionLimits::new(user, "app", "127.0.0.1".parse().unwrap())
    }

    #[test]
    fn a_refusal_takes_nothing_from_the_other_buckets() {
        // A slow rate, so nothing refills while the test runs.
        let l = limiter(&[("user", 0.001, 10), ("table", 0.001, 2)]);
        let mut s = session("app");
        s.admit(&l, 1, ["orders"].into_iter()).unwrap();
        s.admit(&l, 1, ["orders"].into_iter()).unwrap();
        let e = s.admit(&l, 1, ["orders"].into_iter()).unwrap_err();
        assert_eq!(e.sqlstate(), "53400");
        assert!(e.to_string().contains("table \"orders\""), "{e}");
        // The user bucket lost only the two admitted statements.
        let user = l.rules[0].bucket("app", l.now());
        assert!((user.tokens(l.now()) - 8.0).abs() < 0.01);
        s.admit(&l, 1, ["users"].into_iter()).unwrap();
    }

    #[test]
    fn a_batch_counts_each_statement_and_one_too_big_says_so() {
        let l = limiter(&[("user", 0.001, 5)]);
        let mut s = session("app");
        s.admit(&l, 3, std::iter::empty()).unwrap();
        let e = s.admit(&l, 3, std::iter::empty()).unwrap_err();
        assert!(e.hint().unwrap().starts_with("retry in"), "{:?}", e.hint());
        let e = s.admit(&l, 6, std::iter::empty()).unwrap_err();
        assert!(e.hint().unwrap().contains("more than the bucket holds"));
        s.admit(&l, 2, std::iter::empty()).unwrap();
    }

    #[test]
    fn sessions_of_one_user_share_a_bucket_and_others_do_not() {
        let l = limiter(&[("user", 0.001, 1)]);
        let (mut a, mut b, mut c) = (session("app"), session("app"), session("etl"));
        a.admit(&l, 1, std::iter::empty()).unwrap();
        assert!(b.admit(&l, 1, std::iter::empty()).is_err());
        c.admit(&l, 1, std::iter::empty()).unwrap();
    }

    #[test]
    fn mapped_ipv4_addresses_count_as_ipv4() {
        let s = SessionLimits::new("u", "d", "::ffff:127.0.0.2".parse().unwrap());
        assert_eq!(s.ip, "127.0.0.2");
    }
}
