//! The serde model of shards.toml and its validation.
//!
//! INTERFACE FROZEN FOR HELPERS: field names and types below are used across the crate.

use crate::error::Error;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

mod gateway;
mod validate;
pub use gateway::parse_cidr;
pub use validate::fold_name;

/// The whole of shards.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    // Defaulted so that a config without shards gets our message rather than serde's.
    #[serde(default)]
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub stats: StatsConfig,
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Client-facing address, "host:port".
    pub listen: String,
    #[serde(default = "default_max_client_connections")]
    pub max_client_connections: usize,
    /// Server connections per shard.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// If set, the only database name clients may ask for (besides `shardgate`).
    #[serde(default)]
    pub database: Option<String>,
    /// Ring points per unit of weight.
    #[serde(default = "default_vnodes")]
    pub vnodes: u32,
    /// Connect timeout to shards, milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a statement waits for a free pooled connection, milliseconds.
    #[serde(default = "default_pool_timeout_ms")]
    pub pool_timeout_ms: u64,
    /// Memory one multi-shard query may use to merge its rows (groups, sorted rows), MB.
    #[serde(default = "default_gather_memory_mb")]
    pub gather_memory_mb: u64,
    /// How often in-doubt two-phase transactions are looked for and resolved, milliseconds.
    #[serde(default = "default_recovery_interval_ms")]
    pub recovery_interval_ms: u64,
    /// Rows a rebalance moves per step: each step's switch holds the moving writes while its
    /// rows change shard, so fewer rows per step means shorter pauses and more table reads.
    #[serde(default = "default_rebalance_step_rows")]
    pub rebalance_step_rows: u64,
    /// Connections one user name may hold (0: no cap beyond max_client_connections);
    /// `[[auth.users]] max_connections` overrides it per user.
    #[serde(default)]
    pub max_user_connections: usize,
    /// A client idle this long between requests (outside a transaction) is disconnected
    /// (57P05), milliseconds; 0: never.
    #[serde(default)]
    pub client_idle_timeout_ms: u64,
    /// A client idle this long inside a transaction is disconnected (25P03) and its
    /// transaction rolled back, milliseconds; 0: never.
    #[serde(default)]
    pub idle_transaction_timeout_ms: u64,
    /// A statement running longer than this at the proxy is cancelled on its shards (57014),
    /// milliseconds; 0: no limit.
    #[serde(default)]
    pub statement_timeout_ms: u64,
    /// Threads that serve clients: 0 for one per CPU, but at most one per four of `pool_size`;
    /// never more than `pool_size`. Each runs its own runtime with the clients handed to it in
    /// turn and its share of every shard's pool (`crate::workers`); 1 serves every session on
    /// one thread, as PgBouncer does. Read at start only.
    #[serde(default)]
    pub workers: usize,
    /// Simple-protocol statements that differ only in their constants run on the shards as
    /// one prepared statement with the constants as parameters, so PostgreSQL parses and plans
    /// the shape once per connection rather than every statement (see `router/prepare.rs`).
    #[serde(default = "default_true")]
    pub auto_prepare: bool,
}

fn default_true() -> bool {
    true
}

pub fn default_max_client_connections() -> usize {
    1000
}
pub fn default_pool_size() -> usize {
    20
}
/// Chosen by measurement (see ring tests): over 500 random sets of 3 shard names, 1280 is the
/// smallest count tried whose 95th-percentile spread (max/mean ownership) is within 1.05 and
/// where adding a 4th shard always moved within 10% of 1/4 of the keys.
pub fn default_vnodes() -> u32 {
    1280
}
pub fn default_connect_timeout_ms() -> u64 {
    5000
}
pub fn default_pool_timeout_ms() -> u64 {
    30000
}
pub fn default_gather_memory_mb() -> u64 {
    256
}
pub fn default_recovery_interval_ms() -> u64 {
    10_000
}
pub fn default_rebalance_step_rows() -> u64 {
    25_000
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Copy, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    #[default]
    Trust,
    Md5,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub method: AuthMethod,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Users allowed into the admin console (database `shardgate`); with `[auth]` present,
    /// nobody else is.
    #[serde(default)]
    pub admin_users: Vec<String>,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// A verifier as in pg_authid (SCRAM-SHA-256$..., md5...) or a plain password.
    pub password: String,
    /// Connections this user may hold; absent: `[proxy] max_user_connections`.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl std::fmt::Debug for UserConfig {
    // Passwords never reach logs, not even through {:?}.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Placement derives from the name, never from the url.
    pub name: String,
    /// postgres://user:password@host:port/db
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Ring points, when not `vnodes × weight`: only the intermediate placements a rebalance
    /// steps through have this (never shards.toml).
    #[serde(skip)]
    pub points: Option<u32>,
}

pub fn default_weight() -> u32 {
    1
}

/// The type of a shard key, which decides its canonical bytes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// smallint, integer, bigint: 8-byte little-endian i64.
    #[serde(
        alias = "bigint",
        alias = "integer",
        alias = "int",
        alias = "smallint",
        alias = "int8",
        alias = "int4",
        alias = "int2"
    )]
    Int,
    /// text, varchar, char: UTF-8 bytes.
    #[serde(alias = "varchar", alias = "character varying")]
    Text,
    /// uuid: 16 bytes.
    Uuid,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Table name, optionally schema-qualified ("public.users").
    pub name: String,
    /// The column that places a row; absent for reference tables.
    #[serde(default)]
    pub shard_key: Option<String>,
    /// The key's type; absent: read from the shards' catalog.
    #[serde(default)]
    pub key_type: Option<KeyType>,
    /// A full copy on every shard.
    #[serde(default)]
    pub reference: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: String,
}

/// `[stats]`: how traffic statistics judge skew and forget the past.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// A shard is flagged as skewed when its share of recent keyed statements (or of stored
    /// rows) exceeds its share of the ring's weight by this factor.
    #[serde(default = "default_skew_factor")]
    pub skew_factor: f64,
    /// Hot keys and traffic shares halve their weight every this many seconds.
    #[serde(default = "default_half_life_secs")]
    pub half_life_secs: u64,
    /// Recent keyed statements (decayed) needed before traffic skew is judged at all.
    #[serde(default = "default_skew_min_statements")]
    pub skew_min_statements: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            skew_factor: default_skew_factor(),
            half_life_secs: default_half_life_secs(),
            skew_min_statements: default_skew_min_statements(),
        }
    }
}

pub fn default_skew_factor() -> f64 {
    1.25
}
pub fn default_half_life_secs() -> u64 {
    60
}
pub fn default_skew_min_statements() -> u64 {
    200
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per: String,
    pub rate: f64,
    pub burst: u32,
    /// Other rates for named users, addresses (or CIDR ranges), databases or tables.
    #[serde(default)]
    pub overrides: Vec<RateLimitOverride>,
}

/// `[[rate_limits.overrides]]`: a bucket of another size for the names it matches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    /// A user, database or table name, or a client address or CIDR range (`10.0.0.0/8`).
    #[serde(rename = "match")]
    pub matches: String,
    pub rate: f64,
    pub burst: u32,
}

/// `[tls]`: TLS for clients (cert and key) and to the shards.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain offered to clients; with `key`, clients may use TLS.
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<String>,
    /// Refuse clients that do not use TLS (28000); needs cert and key.
    #[serde(default)]
    pub require: bool,
    /// TLS to the shards.
    #[serde(default)]
    pub shards: ShardTls,
    /// PEM CA certificates that shard certificates must chain to (`verify-full`).
    #[serde(default)]
    pub shard_ca: Option<String>,
}

/// How the proxy's own connections to the shards use TLS (as libpq's sslmode).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ShardTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted; the certificate is not checked.
    Require,
    /// Encrypted; the certificate must chain to `shard_ca` and name the host.
    VerifyFull,
}

/// The `[[rate_limits]] per` values the proxy knows how to bucket by.
pub const RATE_LIMIT_KEYS: [&str; 4] = ["user", "client_ip", "database", "table"];
/// Longest shard name, in bytes: it is part of two-phase transaction ids (at most 199 bytes).
pub const MAX_SHARD_NAME: usize = 63;
/// Bounds that keep a typo (an extra zero) from building a ring of millions of points.
pub const MAX_WEIGHT: u32 = 1000;
pub const MAX_VNODES: u32 = 10000;
/// More threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;
/// Shards one proxy can know over its life (the config's and any a rebalance adds): the backend
/// and the statistics keep a fixed table of slots so that looking a shard up takes no lock.
pub const MAX_SHARDS: usize = 1024;

impl Config {
    /// Reads and validates a config file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("{shown}: cannot read config: {e}")))?;
        Config::parse(&text).map_err(|e| match e {
            Error::Config { message } => Error::config(format!("{shown}: {message}")),
            other => other,
        })
    }

    /// Parses and validates config text; errors carry line numbers.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            match e.span() {
                // serde reports a field missing from the top level at offset 0, which is no help.
                Some(span) if !(span.is_empty() && message.starts_with("missing field")) => {
                    Error::config(format!(
                        "{}: {message}",
                        validate::position(text, span.start)
                    ))
                }
                _ => Error::config(message),
            }
        })?;
        validate::check(&mut config, text)?;
        Ok(config)
    }
}

impl ShardConfig {
    /// The url without its password, for logs and SHOW output: `postgres://app@127.0.0.1:5433/app`.
    pub fn redacted_url(&self) -> String {
        let Ok(pg) = parse_postgres_url(&self.url) else {
            return "<invalid url>".into();
        };
        let user = pg
            .get_user()
            .map(|u| format!("{}@", escape(u)))
            .unwrap_or_default();
        let db = pg.get_dbname().map(escape).unwrap_or_default();
        format!("postgres://{user}{}/{db}", hosts(&pg, true))
    }

    /// Where the shard lives, as `host:port/db`, with no credentials.
    pub fn host_port_db(&self) -> String {
        let Ok(pg) = parse_postgres_url(&self.url) else {
            return "<invalid url>".into();
        };
        // libpq's default database is the user's name.
        let db = pg.get_dbname().or(pg.get_user()).unwrap_or_default();
        format!("{}/{db}", hosts(&pg, false))
    }
}

impl fmt::Debug for ShardConfig {
    // The url carries the password, so Debug shows only its redacted form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardConfig")
            .field("name", &self.name)
            .field("url", &self.redacted_url())
            .field("weight", &self.weight)
            .finish()
    }
}

fn parse_postgres_url(url: &str) -> Result<tokio_postgres::Config, String> {
    // tokio-postgres also takes "key=value" strings; only the URL form is documented for shards.toml.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("it must start with postgres:// or postgresql://".into());
    }
    let pg = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
    if pg.get_hosts().is_empty() {
        return Err("it names no host".into());
    }
    if pg.get_user().is_none() {
        return Err("it names no user (postgres://USER@host:port/db)".into());
    }
    Ok(pg)
}

/// `host:port` for each host, comma-separated as in a multi-host URL.
fn hosts(pg: &tokio_postgres::Config, url_escape: bool) -> String {
    let ports = pg.get_ports();
    let mut out = Vec::new();
    for (i, host) in pg.get_hosts().iter().enumerate() {
        let name = match host {
            tokio_postgres::config::Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let name = if url_escape { escape(&name) } else { name };
        // One port applies to every host; none means the default.
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        out.push(format!("{name}:{port}"));
    }
    out.join(",")
}

/// Percent-encodes what cannot stand unencoded in a URL component (IPv6 brackets excepted).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~[]".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of DESIGN.md with every optional section switched on.
    const FULL: &str = r#"[proxy]
listen = "127.0.0.1:6432"          # client-facing address
max_client_connections = 1000    # beyond it: SQLSTATE 53300
pool_size = 20                   # server connections per shard

[auth]                            # absent: trust
method = "scram-sha-256"          # or "md5", "trust"
[[auth.users]]
name = "app"
password = "SCRAM-SHA-256$4096:..."   # a verifier as in pg_authid, or a plain password

[[shards]]
name = "s0"                         # placement derives from the name, never from the url
url = "postgres://postgres:s3cret@127.0.0.1:5433/app"
weight = 1

[[shards]]
name = "s1"
url = "postgresql://app:hunter2@db1.internal:5434/app?sslmode=disable"
weight = 2

[[tables]]
name = "users"
shard_key = "id"                    # the column that places a row

[[tables]]
name = "Public.Orders"
shard_key = "User_ID"
key_type = "bigint"

[[tables]]
name = '"Countries"'
reference = true                  # a full copy on every shard

[metrics]
listen = "127.0.0.1:9930"         # Prometheus text format at /metrics

[[rate_limits]]
per = "user"                      # or "client_ip"
rate = 100                        # statements per second refilled into the bucket
burst = 20                        # bucket size
"#;

    #[test]
    fn stats_section_is_validated() {
        let base = "[proxy]\nlisten = \"127.0.0.1:6432\"\n[[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/d\"\n";
        let ok = Config::parse(&format!(
            "{base}[stats]\nskew_factor = 2.0\nhalf_life_secs = 5\n"
        ))
        .unwrap();
        assert_eq!((ok.stats.skew_factor, ok.stats.half_life_secs), (2.0, 5));
        assert_eq!(Config::parse(base).unwrap().stats, StatsConfig::default());
        for (extra, want) in [
            (
                "skew_factor = 1.0",
                "line 7, column 15: [stats] skew_factor must be above 1",
            ),
            (
                "half_life_secs = 0",
                "line 7, column 18: [stats] half_life_secs must be between 1",
            ),
            ("top_k = 3", "line 7, column 1: unknown field `top_k`"),
        ] {
            let m = error_of(&format!("{base}[stats]\n{extra}\n"));
            assert!(m.starts_with(want), "{extra}: got {m}");
        }
    }

    fn error_of(text: &str) -> String {
        match Config::parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(Error::Config { message }) => message,
            Err(other) => panic!("expected a config error, got {other:?}"),
        }
    }

    /// FULL with `from` replaced by `to` (which must occur in it).
    fn full_with(from: &str, to: &str) -> String {
        assert!(FULL.contains(from), "{from:?} not in FULL");
        FULL.replacen(from, to, 1)
    }

    #[test]
    fn full_example_parses() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:6432");
        assert_eq!(c.proxy.pool_size, 20);
        assert_eq!(c.proxy.vnodes, default_vnodes());
        assert_eq!(c.proxy.connect_timeout_ms, 5000);
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(auth.method, AuthMethod::ScramSha256);
        assert_eq!(auth.users[0].name, "app");
        assert_eq!(c.shards.len(), 2);
        assert_eq!(c.shards[1].weight, 2);
        assert_eq!(c.tables[0].name, "users");
        assert_eq!(c.tables[1].name, "public.orders");
        assert_eq!(c.tables[1].shard_key.as_deref(), Some("user_id"));
        assert_eq!(c.tables[1].key_type, Some(KeyType::Int));
        assert_eq!(c.tables[2].name, "Countries");
        assert!(c.tables[2].reference);
        assert_eq!(c.metrics.as_ref().unwrap().listen, "127.0.0.1:9930");
        assert_eq!(c.rate_limits[0].rate, 100.0);
    }

    #[test]
    fn minimal_example_parses() {
        let text = "[proxy]\nlisten = \"127.0.0.1:6432\"\n[[shards]]\nname = \"s0\"\n\
                    url = \"postgres://postgres@127.0.0.1:5433/app\"\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.shards[0].weight, 1);
        assert!(c.tables.is_empty() && c.auth.is_none() && c.rate_limits.is_empty());
    }

    #[test]
    fn toml_errors_carry_line_and_column() {
        let m = error_of(&full_with("pool_size = 20", "pool_size = \"twenty\""));
        assert!(m.starts_with("line 4, column 13: invalid type"), "{m}");
        let m = error_of(&full_with("weight = 2", "weigth = 2"));
        assert!(
            m.starts_with("line 20, column 1: unknown field `weigth`"),
            "{m}"
        );
        let m = error_of(&full_with("[metrics]", "[metrics"));
        assert!(m.starts_with("line 35, "), "{m}");
        let m = error_of(&full_with("name = \"users\"\n", ""));
        assert!(
            m.starts_with("line 22, column 1: missing field `name`"),
            "{m}"
        );
        let m = error_of("[[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/d\"\n");
        assert!(m.contains("missing field `proxy`"), "{m}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("name = \"s1\"", "name = \"s0\"", "line 18, column 8: shard name \"s0\" is used twice"),
            ("postgres://postgres:s3cret@127.0.0.1:5433/app", "mysql://x@y/z", "line 14, column 7: shard \"s0\": url is not"),
            ("postgres://postgres:s3cret@127.0.0.1:5433/app", "postgres://127.0.0.1:5433/app", "line 14, column 7: shard \"s0\": url is not"),
            ("5433/app\"", "notaport/app\"", "line 14, column 7: shard \"s0\": url is not"),
            ("weight = 2", "weight = 0", "line 20, column 10: shard \"s1\": weight must be between 1 and 1000, not 0"),
            ("weight = 2", "weight = 1001", "line 20, column 10: shard \"s1\": weight"),
            ("shard_key = \"id\"  ", "reference = true\nshard_key = \"id\"", "line 24, column 13: table \"users\" has both"),
            ("shard_key = \"id\"  ", "", "line 23, column 8: table \"users\" needs shard_key"),
            ("name = \"Public.Orders\"", "name = \"USERS\"", "line 27, column 8: table \"users\" is listed twice"),
            ("name = \"Public.Orders\"", "name = \"a.b.c\"", "line 27, column 8: table name \"a.b.c\": expected table"),
            ("name = '\"Countries\"'", "name = '\"Coun'", "line 32, column 8: table name \"\\\"Coun\": unterminated"),
            ("reference = true  ", "reference = true\nkey_type = \"text\"", "line 34, column 12: table \"\\\"Countries\\\"\": key_type"),
            ("listen = \"127.0.0.1:6432\"", "listen = \"localhost\"", "line 2, column 10: [proxy] listen = \"localhost\""),
            ("listen = \"127.0.0.1:9930\"", "listen = \":9930\"", "line 36, column 10: [metrics] listen"),
            ("per = \"user\"", "per = \"host\"", "line 39, column 7: [[rate_limits]] per = \"host\" is not one of user, client_ip, database, table"),
            ("rate = 100", "rate = 0", "line 40, column 8: [[rate_limits]] rate must be a positive number"),
            ("rate = 100", "rate = -1.5", "line 40, column 8: [[rate_limits]] rate"),
            ("rate = 100", "rate = nan", "line 40, column 8: [[rate_limits]] rate"),
            ("burst = 20", "burst = 0", "line 41, column 9: [[rate_limits]] burst"),
            ("pool_size = 20", "pool_size = 0", "line 4, column 13: [proxy] pool_size must be at least 1"),
            ("pool_size = 20", "vnodes = 0", "line 4, column 10: [proxy] vnodes must be between 1 and 10000, not 0"),
            ("pool_size = 20", "vnodes = 10001", "line 4, column 10: [proxy] vnodes"),
            ("pool_size = 20", "workers = 1025", "line 4, column 11: [proxy] workers must be at most 1024 (0: one per CPU), not 1025"),
            ("max_client_connections = 1000", "max_client_connections = 0", "line 3, column 26: [proxy] max_client"),
            ("[[auth.users]]", "[[auth.users]]\nname = \"app\"\npassword = \"x\"\n[[auth.users]]", "line 12, column 8: user \"app\" is listed twice"),
        ];
        for (from, to, want) in cases {
            let m = error_of(&full_with(from, to));
            assert!(
                m.starts_with(want),
                "replacing {from:?} by {to:?}:\n got  {m}\n want {want}"
            );
            assert!(!m.contains("s3cret") && !m.contains("hunter2"), "{m}");
        }
    }

    #[test]
    fn no_shards_is_an_error() {
        let m = error_of("shards = []\n[proxy]\nlisten = \"127.0.0.1:6432\"\n");
        assert!(m.starts_with("line 1, column 10: no shards"), "{m}");
        let m = error_of("[proxy]\nlisten = \"127.0.0.1:6432\"\n");
        assert!(m.starts_with("no shards"), "{m}");
    }

    #[test]
    fn load_prefixes_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shards.toml");
        std::fs::write(&path, full_with("rate = 100", "rate = 0")).unwrap();
        let Err(Error::Config { message }) = Config::load(&path) else {
            panic!("expected an error")
        };
        assert_eq!(
            message,
            format!(
                "{}: line 40, column 8: [[rate_limits]] rate must be a positive number, not 0",
                path.display()
            )
        );
        std::fs::write(&path, FULL).unwrap();
        assert_eq!(Config::load(&path).unwrap(), Config::parse(FULL).unwrap());
        let Err(Error::Config { message }) = Config::load(&dir.path().join("nope.toml")) else {
            panic!("expected an error")
        };
        assert!(
            message.contains("nope.toml: cannot read config"),
            "{message}"
        );
    }

    #[test]
    fn passwords_stay_out_of_debug_and_redacted_urls() {
        let c = Config::parse(FULL).unwrap();
        let debug = format!("{c:?}");
        for secret in ["s3cret", "hunter2", "SCRAM-SHA-256$4096"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert_eq!(
            c.shards[0].redacted_url(),
            "postgres://postgres@127.0.0.1:5433/app"
        );
        assert_eq!(c.shards[0].host_port_db(), "127.0.0.1:5433/app");
        assert_eq!(
            c.shards[1].redacted_url(),
            "postgres://app@db1.internal:5434/app"
        );
        let shard = |url: &str| ShardConfig {
            name: "x".into(),
            url: url.into(),
            weight: 1,
            points: None,
        };
        let s = shard("postgres://u:pw@h1,h2:6000/d?password=pw2");
        assert_eq!(s.redacted_url(), "postgres://u@h1:5432,h2:6000/d");
        assert_eq!(shard("postgres://u@[::1]/").host_port_db(), "[::1]:5432/u");
        assert_eq!(
            shard("postgres://u%40x:pw@h/my%20db").redacted_url(),
            "postgres://u%40x@h:5432/my%20db"
        );
        assert_eq!(shard("not a url :pw@").redacted_url(), "<invalid url>");
        assert!(!format!("{s:?}").contains("pw"));
    }
}
