//! The client's session settings (startup parameters and SET), replayed on whichever pooled
//! backend connection serves the client, so one client's settings never leak to another.

use crate::router::SessionCommand;

/// Settings that are never replayed: they describe the connection, not the session.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

/// Marks a backend connection whose settings are unknown (after a transaction that changed
/// them); it never equals a real fingerprint, so the next user re-applies its own.
pub const UNKNOWN: u64 = u64::MAX;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// (lower-case name, the SET statement that establishes it), in the order set.
    entries: Vec<(String, String)>,
    fingerprint: u64,
}

impl Settings {
    pub fn from_startup(params: &[(String, String)]) -> Settings {
        let mut s = Settings::default();
        for (name, value) in params {
            let lower = name.to_ascii_lowercase();
            let plain = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            // Backend connections already speak UTF8; repeating it would only cost a round trip.
            let redundant = lower == "client_encoding" && value.eq_ignore_ascii_case("utf8");
            if plain && !redundant && !NOT_SETTINGS.contains(&lower.as_str()) {
                let stmt = format!("SET {lower} TO '{}'", value.replace('\'', "''"));
                s.entries.push((lower, stmt));
            }
        }
        s.refresh();
        s
    }

    /// The settings after `cmd` (whose text is `sql`) succeeds.
    pub fn after(&self, cmd: &SessionCommand, sql: &str) -> Settings {
        let mut next = self.clone();
        match cmd {
            SessionCommand::Set { name } => {
                next.entries.retain(|(n, _)| n != name);
                next.entries.push((name.clone(), sql.to_owned()));
            }
            SessionCommand::Reset { name } => next.entries.retain(|(n, _)| n != name),
            SessionCommand::ResetAll => next.entries.clear(),
            SessionCommand::SetLocal | SessionCommand::Deallocate { .. } => {}
        }
        next.refresh();
        next
    }

    /// 0 for server defaults, else a hash of the statements that establish the settings.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// One simple query that turns any connection's settings into these.
    pub fn apply_sql(&self) -> String {
        let mut sql = String::from("RESET ALL");
        for (_, stmt) in &self.entries {
            sql.push_str("; ");
            sql.push_str(stmt);
        }
        sql
    }

    fn refresh(&mut self) {
        self.fingerprint = if self.entries.is_empty() {
            0
        } else {
            let mut h = twox_hash::XxHash3_64::with_seed(0);
            for (_, stmt) in &self.entries {
                std::hash::Hasher::write(&mut h, stmt.as_bytes());
                std::hash::Hasher::write_u8(&mut h, 0);
            }
            match std::hash::Hasher::finish(&h) {
                0 | UNKNOWN => 1,
                f => f,
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_parameters_become_set_statements() {
        let s = Settings::from_startup(&[
            ("user".into(), "app".into()),
            ("application_name".into(), "it's".into()),
            ("client_encoding".into(), "UTF8".into()),
            ("bad name;".into(), "x".into()),
        ]);
        assert_eq!(s.apply_sql(), "RESET ALL; SET application_name TO 'it''s'");
        assert_ne!(s.fingerprint(), 0);
        assert_eq!(Settings::from_startup(&[]).fingerprint(), 0);
    }

    #[test]
    fn set_and_reset_change_the_fingerprint() {
        let base = Settings::default();
        let set = base.after(
            &SessionCommand::Set {
                name: "search_path".into(),
            },
            "SET search_path = a",
        );
        assert_ne!(set.fingerprint(), base.fingerprint());
        let again = set.after(
            &SessionCommand::Set {
                name: "search_path".into(),
            },
            "SET search_path = a",
        );
        assert_eq!(again.fingerprint(), set.fingerprint());
        let reset = set.after(
            &SessionCommand::Reset {
                name: "search_path".into(),
            },
            "RESET search_path",
        );
        assert_eq!(reset.fingerprint(), 0);
    }
}
