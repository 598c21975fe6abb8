//! Connections per user name, against `[proxy] max_user_connections` and
//! `[[auth.users]] max_connections`. Touched at connect and disconnect only.

use crate::error::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct ConnCaps {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// A user's connection slot, given back when dropped.
#[derive(Debug)]
pub struct UserSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl ConnCaps {
    /// A slot for `user`, unless it already holds `cap` connections (0: no cap).
    pub fn acquire(&self, user: &str, cap: usize) -> Result<UserSlot, Error> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(user.to_owned()).or_default();
        if cap != 0 && *n >= cap {
            return Err(Error::UserConnections {
                user: user.to_owned(),
                limit: cap,
            });
        }
        *n += 1;
        Ok(UserSlot {
            counts: self.counts.clone(),
            user: user.to_owned(),
        })
    }

    /// Connections `user` holds now.
    #[cfg(test)]
    pub fn count(&self, user: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(user).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_counts_live_slots_per_user() {
        let caps = ConnCaps::default();
        let a = caps.acquire("app", 2).unwrap();
        let _b = caps.acquire("app", 2).unwrap();
        let e = caps.acquire("app", 2).unwrap_err();
        assert_eq!(e.sqlstate(), "53300");
        assert!(e.to_string().contains("\"app\" (at most 2)"));
        let _other = caps.acquire("etl", 2).unwrap();
        drop(a);
        let _c = caps.acquire("app", 2).unwrap();
        assert_eq!(caps.count("app"), 2);
        let _unbounded: Vec<_> = (0..10).map(|_| caps.acquire("x", 0).unwrap()).collect();
    }
}
