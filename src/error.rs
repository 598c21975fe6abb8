//! The one error type of shardgate and its mapping to SQLSTATEs and client messages.

use std::fmt;

/// Every failure a client can see, plus the few that only operators see (config, I/O at startup).
///
/// Each variant maps to exactly one SQLSTATE (see `sqlstate`). Messages are written for a person:
/// they say what was refused and why, and `hint` says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A statement shardgate cannot execute exactly across shards (0A000).
    Unsupported {
        message: String,
        hint: Option<String>,
    },
    /// A statement shardgate cannot parse that names a sharded or reference table (42601).
    Syntax { message: String },
    /// DML or a query on a table that shards.toml does not list (42P01).
    UnknownTable { table: String },
    /// A shard is down or its connection broke mid-statement (08006).
    ShardUnavailable { shard: String, detail: String },
    /// No pooled connection to a shard became free in time (53300).
    PoolTimeout { shard: String },
    /// A database name the proxy does not serve (3D000).
    UnknownDatabase { database: String },
    /// Too many client connections (53300).
    TooManyConnections,
    /// Too many connections for one user name (53300).
    UserConnections { user: String, limit: usize },
    /// Rate limit exceeded (53400): which limit, and what to do.
    RateLimited { limit: String, hint: String },
    /// The client was idle past `[proxy] client_idle_timeout_ms` (57P05) or, inside a
    /// transaction, past `idle_transaction_timeout_ms` (25P03).
    IdleTimeout { in_transaction: bool },
    /// A statement ran past `[proxy] statement_timeout_ms` and was cancelled (57014).
    StatementTimeout,
    /// Bad password (28P01).
    BadPassword { user: String },
    /// A user not listed in `[auth] admin_users` asked for the admin console (28000).
    NotAdmin { user: String },
    /// `[tls] require = true` and the client started without TLS (28000).
    TlsRequired,
    /// Over TLS, where SCRAM-SHA-256-PLUS was offered, the client said it could bind to the
    /// channel but thought the server could not: the offer was stripped on the way (28000).
    ChannelBindingDowngrade,
    /// The client broke the wire protocol (08P01).
    Protocol { message: String },
    /// Input that is not valid UTF-8 (22021).
    Encoding,
    /// A bound parameter PostgreSQL would refuse as well, with its SQLSTATE (a shard key that
    /// is no value of its type: 22P02, 22P03, 22003, 22021, 08P01).
    /// The message is PostgreSQL's; which parameter (1-based) goes in the context field, as
    /// PostgreSQL puts it there.
    BadParameter {
        sqlstate: &'static str,
        message: String,
        param: usize,
    },
    /// A Bind or Describe names a statement the client never prepared (26000).
    UnknownStatement { name: String },
    /// The current transaction is aborted (25P02).
    TransactionAborted,
    /// Recovery of in-doubt transactions rolled this one back before it could commit; retrying
    /// it is safe (40001).
    RecoveredAway { txn: String },
    /// The transaction lost its connection to a shard; only ROLLBACK can end it (25P02).
    TransactionLost { shard: String },
    /// The connection to a shard broke while committing over several shards, and the outcome
    /// could not be learned yet (08007); recovery finishes the transaction either way.
    CommitUnknown { shard: String, gid: String },
    /// A value the proxy computed (a sum across shards) does not fit its type (22003).
    OutOfRange { message: String },
    /// A negative LIMIT (2201W) or OFFSET (2201X) bound to a parameter.
    NegativeLimit { offset: bool },
    /// Merging a multi-shard result needed more proxy memory than `gather_memory_mb` (53200).
    GatherMemory { limit_mb: u64 },
    /// A write waited longer than allowed for a rebalance's switch (55P03).
    RebalanceWait { secs: u64 },
    /// Another proxy moved rows to a newer placement; the statement, routed by the old one,
    /// was not run (40001).
    PlacementChanged { version: i64 },
    /// An invalid or inconsistent shards.toml; never sent to clients as such.
    Config { message: String },
    /// Any other internal failure (XX000).
    Internal { message: String },
}

impl Error {
    pub fn unsupported(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Unsupported {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    /// The SQLSTATE a client receives for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Unsupported { .. } => "0A000",
            Error::Syntax { .. } => "42601",
            Error::UnknownTable { .. } => "42P01",
            Error::ShardUnavailable { .. } => "08006",
            Error::UnknownDatabase { .. } => "3D000",
            Error::PoolTimeout { .. } | Error::TooManyConnections => "53300",
            Error::UserConnections { .. } => "53300",
            Error::RateLimited { .. } => "53400",
            Error::IdleTimeout {
                in_transaction: false,
            } => "57P05",
            Error::IdleTimeout {
                in_transaction: true,
            } => "25P03",
            Error::StatementTimeout => "57014",
            Error::BadPassword { .. } => "28P01",
            Error::NotAdmin { .. } | Error::TlsRequired => "28000",
            Error::ChannelBindingDowngrade => "28000",
            Error::Protocol { .. } => "08P01",
            Error::Encoding => "22021",
            Error::BadParameter { sqlstate, .. } => sqlstate,
            Error::UnknownStatement { .. } => "26000",
            Error::TransactionAborted => "25P02",
            Error::CommitUnknown { .. } => "08007",
            Error::TransactionLost { .. } => "25P02",
            Error::RecoveredAway { .. } => "40001",
            Error::OutOfRange { .. } => "22003",
            Error::GatherMemory { .. } => "53200",
            Error::RebalanceWait { .. } => "55P03",
            Error::PlacementChanged { .. } => "40001",
            Error::NegativeLimit { offset: false } => "2201W",
            Error::NegativeLimit { offset: true } => "2201X",
            Error::Config { .. } => "F0000",
            Error::Internal { .. } => "XX000",
        }
    }

    /// The context field (`W`): where the error arose.
    pub fn context(&self) -> Option<String> {
        match self {
            Error::BadParameter { param, .. } => Some(format!("bind parameter ${param}")),
            _ => None,
        }
    }

    /// The hint line, where there is something useful to suggest.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Unsupported { hint, .. } => hint.clone(),
            Error::UnknownTable { .. } => Some(
                "shardgate only runs statements on tables listed in shards.toml; add a [[tables]] entry \
                 (shard_key = \"...\" or reference = true) and RELOAD"
                    .into(),
            ),
            Error::PoolTimeout { .. } => {
                Some("raise [proxy] pool_size or shorten the transactions that hold connections".into())
            }
            Error::PlacementChanged { .. } => Some(
                "retry it: this proxy routes by the new placement from now on".into(),
            ),
            Error::RebalanceWait { .. } => Some(
                "retry it; SHOW REBALANCE in the admin console tells how the rebalance is doing"
                    .into(),
            ),
            Error::RateLimited { hint, .. } => Some(hint.clone()),
            Error::GatherMemory { .. } => Some(
                "narrow the query (WHERE, fewer groups, a LIMIT with ORDER BY), or raise [proxy] gather_memory_mb"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported { message, .. } => write!(f, "{message}"),
            Error::Syntax { message } => write!(f, "{message}"),
            Error::UnknownTable { table } => {
                write!(f, "table \"{table}\" is not listed in shards.toml")
            }
            Error::ShardUnavailable { shard, detail } => {
                write!(f, "shard \"{shard}\" is unavailable: {detail}")
            }
            Error::PoolTimeout { shard } => {
                write!(f, "no connection to shard \"{shard}\" became free in time")
            }
            Error::UnknownDatabase { database } => {
                write!(f, "database \"{database}\" does not exist")
            }
            Error::TooManyConnections => write!(f, "too many client connections to shardgate"),
            Error::UserConnections { user, limit } => write!(
                f,
                "too many connections for user \"{user}\" (at most {limit})"
            ),
            Error::RateLimited { limit, .. } => write!(f, "rate limit exceeded: {limit}"),
            Error::IdleTimeout {
                in_transaction: false,
            } => write!(f, "terminating connection due to idle-session timeout"),
            Error::IdleTimeout {
                in_transaction: true,
            } => write!(
                f,
                "terminating connection due to idle-in-transaction timeout"
            ),
            Error::StatementTimeout => write!(f, "canceling statement due to statement timeout"),
            Error::BadPassword { user } => {
                write!(f, "password authentication failed for user \"{user}\"")
            }
            Error::NotAdmin { user } => write!(
                f,
                "user \"{user}\" may not use the shardgate admin console (not in [auth] admin_users)"
            ),
            Error::TlsRequired => write!(f, "TLS is required: connect with sslmode=require"),
            // PostgreSQL's message and detail, in one line.
            Error::ChannelBindingDowngrade => write!(
                f,
                "SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server does not, however this server does support channel binding"
            ),
            Error::Protocol { message } => write!(f, "{message}"),
            Error::Encoding => write!(f, "invalid byte sequence for encoding \"UTF8\""),
            Error::BadParameter { message, .. } => write!(f, "{message}"),
            Error::UnknownStatement { name } => {
                write!(f, "prepared statement \"{name}\" does not exist")
            }
            Error::TransactionAborted => write!(
                f,
                "current transaction is aborted, commands ignored until end of transaction block"
            ),
            Error::RecoveredAway { txn } => write!(
                f,
                "could not commit: transaction {txn} took long enough between its phases that \
                 shardgate's recovery rolled it back; nothing was committed, retry it"
            ),
            Error::TransactionLost { shard } => write!(
                f,
                "current transaction is aborted: its part on shard \"{shard}\" was lost with the \
                 connection; only ROLLBACK can end it"
            ),
            Error::CommitUnknown { shard, gid } => write!(
                f,
                "lost the connection to shard \"{shard}\" while committing; whether the \
                 transaction committed is not known yet (shardgate finishes it as transaction \
                 {gid} when the shard is reachable: all of it commits or none of it does)"
            ),
            Error::OutOfRange { message } => write!(f, "{message}"),
            Error::NegativeLimit { offset: false } => write!(f, "LIMIT must not be negative"),
            Error::NegativeLimit { offset: true } => write!(f, "OFFSET must not be negative"),
            Error::PlacementChanged { version } => write!(
                f,
                "another shardgate moved rows to placement version {version}; the statement was routed by the previous one and was not run"
            ),
            Error::RebalanceWait { secs: 0 } => write!(
                f,
                "a rebalance is moving this statement's rows to their new shard right now, and a pipeline already under way cannot wait for it"
            ),
            Error::RebalanceWait { secs } => write!(
                f,
                "the statement waited {secs} s for a rebalance to move its rows to their new shard"
            ),
            Error::GatherMemory { limit_mb } => write!(
                f,
                "merging this multi-shard result needs more than {limit_mb} MB of proxy memory"
            ),
            Error::Config { message } => write!(f, "{message}"),
            Error::Internal { message } => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_follow_the_design() {
        assert_eq!(Error::unsupported("x", "y").sqlstate(), "0A000");
        assert_eq!(
            Error::Syntax {
                message: "x".into()
            }
            .sqlstate(),
            "42601"
        );
        assert_eq!(
            Error::UnknownTable { table: "t".into() }.sqlstate(),
            "42P01"
        );
        let down = Error::ShardUnavailable {
            shard: "s1".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(down.sqlstate(), "08006");
        assert!(down.to_string().contains("s1"));
        assert_eq!(
            Error::RateLimited {
                limit: "u".into(),
                hint: String::new()
            }
            .sqlstate(),
            "53400"
        );
        assert_eq!(Error::TooManyConnections.sqlstate(), "53300");
        assert_eq!(Error::BadPassword { user: "u".into() }.sqlstate(), "28P01");
        let unknown = Error::UnknownTable { table: "t".into() };
        assert!(unknown.hint().unwrap().contains("shards.toml"));
    }
}
