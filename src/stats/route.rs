//! How a statement was routed: the kinds its statistics and latency are kept by.

/// How a statement was routed, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    /// Needs no particular shard (no sharded table, or transaction control): any one answered.
    Any,
    /// One shard.
    Single,
    /// Several shards, not all.
    Multi,
    /// Every shard.
    All,
}

impl RouteKind {
    pub const ALL: [RouteKind; 4] = [
        RouteKind::Any,
        RouteKind::Single,
        RouteKind::Multi,
        RouteKind::All,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Any => "any",
            RouteKind::Single => "single",
            RouteKind::Multi => "multi",
            RouteKind::All => "all",
        }
    }

    /// The kind of a statement reaching `shards` of `of` shards.
    pub fn of(shards: usize, of: usize) -> RouteKind {
        match shards {
            _ if shards >= of && of > 1 => RouteKind::All,
            0 | 1 => RouteKind::Single,
            _ => RouteKind::Multi,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The inverse of `kind as u8` (anything else: All).
    pub fn from_index(i: u8) -> RouteKind {
        RouteKind::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(RouteKind::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_kinds() {
        assert_eq!(RouteKind::of(1, 3), RouteKind::Single);
        assert_eq!(RouteKind::of(2, 3), RouteKind::Multi);
        assert_eq!(RouteKind::of(3, 3), RouteKind::All);
        assert_eq!(RouteKind::of(1, 1), RouteKind::Single);
    }
}
