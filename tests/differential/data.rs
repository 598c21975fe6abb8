//! The differential suite's schema and its seeded data: the same rows go into the unsharded database
//! and, through the proxy, into the shards.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

/// The `[[tables]]` section the proxy gets.
pub const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"

[[tables]]
name = "orders"
shard_key = "user_id"

[[tables]]
name = "countries"
reference = true
"#;

pub const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text, city text NULL, \
     age int NULL, score numeric(10,2) NULL, ratio float8 NULL, active bool, country text NULL, \
     created timestamp);
CREATE TABLE orders (id bigint, user_id bigint, amount numeric(12,2), \
     qty int, status text, note varchar(20) NULL, PRIMARY KEY (user_id, id));
CREATE TABLE countries (code text PRIMARY KEY, name text, region text)";

/// The user who holds about a fifth of all orders.
pub const HOT_USER: i64 = 7;

/// What a column holds, as far as building predicates and aggregates is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ty {
    Int,
    Num,
    Float,
    Text,
    Bool,
    Ts,
}

/// A table's rows as raw values (`None` = NULL), rendered into SQL by `lit`.
pub struct Table {
    pub name: &'static str,
    pub columns: Vec<(&'static str, Ty)>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// Multi-row INSERTs of `batch` rows each.
    fn inserts(&self, batch: usize, reversed: bool) -> Vec<String> {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        self.rows
            .chunks(batch)
            .map(|chunk| {
                let mut rows: Vec<&Vec<Option<String>>> = chunk.iter().collect();
                if reversed {
                    rows.reverse();
                }
                let values: Vec<String> = rows
                    .iter()
                    .map(|row| {
                        let cells: Vec<String> = (row.iter().zip(&self.columns))
                            .map(|(v, (_, ty))| lit(*ty, v.as_deref()))
                            .collect();
                        format!("({})", cells.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    self.name,
                    names.join(", "),
                    values.join(", ")
                )
            })
            .collect()
    }
}

/// A value as an SQL literal of its column's type.
pub fn lit(ty: Ty, v: Option<&str>) -> String {
    match v {
        None => "NULL".into(),
        Some(v) => match ty {
            Ty::Text | Ty::Ts => quote(v),
            Ty::Int | Ty::Num | Ty::Float | Ty::Bool => v.to_owned(),
        },
    }
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub struct Data {
    pub users: Table,
    pub orders: Table,
    pub countries: Table,
}

const NAMES: &[&str] = &[
    "Ada",
    "ada",
    " Ada",
    "ADA",
    "Émile",
    "émile",
    "Emile",
    "Straße",
    "STRASSE",
    "strasse",
    "Bob",
    "bob",
    "Bob2",
    "bob 2",
    "42",
    "007",
    "Zoë",
    "zoe",
    "Ölaf",
    "olaf",
    "Łukasz",
    "O'Brien",
    "o'brien",
    "Mary-Jane",
    "  spaced",
    "x",
    "",
    "Ñandú",
    "ßen",
    "9lives",
];
const CITIES: &[&str] = &[
    "Paris",
    "paris",
    " Paris",
    "Berlin",
    "berlin",
    "München",
    "Zürich",
    "Köln",
    "São Paulo",
    "New York",
    "new york",
    "Łódź",
    "10th Ave",
    "Straßburg",
    "Oslo",
    "a",
];
const COUNTRY_CODES: &[&str] = &["FR", "DE", "US", "BR", "JP", "CH", "ES", "PL", "XX", "fr"];
const STATUSES: &[&str] = &[
    "new",
    "paid",
    "shipped",
    "cancelled",
    "Paid",
    " paid",
    "refund-2",
    "échec",
    "PAID",
];
const NOTES: &[&str] = &[
    "",
    "gift",
    "Gift",
    "rush ß",
    "n°5",
    "call 555-0100",
    "été",
    "  lead",
    "ZZZ",
    "note 12345678901234",
];
const RATIOS: &[f64] = &[0.1, 0.2, 0.3, 1.1, 2.5, 0.001, 123456.789, 1e-7, 7.0];
const STAMPS: &[&str] = &[
    "2020-01-01 00:00:00",
    "2021-06-15 12:30:00",
    "2022-02-28 23:59:59.999999",
    "2023-12-31 08:00:00.5",
];

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn maybe<T>(rng: &mut StdRng, null_share: f64, f: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    if rng.random_bool(null_share) {
        None
    } else {
        Some(f(rng))
    }
}

fn timestamp(rng: &mut StdRng) -> String {
    if rng.random_bool(0.2) {
        return STAMPS.choose(rng).unwrap().to_string();
    }
    // Days from 2020-01-01 within four years; a proleptic calendar is overkill, so stay in valid days.
    let (y, m, d) = (
        rng.random_range(2020..=2023),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
    );
    let (h, mi, s) = (
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
    );
    let mut t = format!("{y}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if rng.random_bool(0.3) {
        t.push_str(&format!(".{:06}", rng.random_range(0..1_000_000)));
    }
    t
}

fn user_name(rng: &mut StdRng) -> String {
    if rng.random_bool(0.5) {
        return NAMES.choose(rng).unwrap().to_string();
    }
    let stem = ["al", "Bo", "cé", "DU", "ß", "ki", "Mo", "ñu", " ro"]
        .choose(rng)
        .unwrap();
    format!("{stem}{}", rng.random_range(0..150))
}

pub fn generate(seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids: Vec<i64> = (1..=1995).collect();
    ids.extend([0, -1, -42, 1_000_000_000_000, 9_007_199_254_740_993]);
    let users_rows: Vec<Vec<Option<String>>> = ids
        .iter()
        .map(|id| {
            let r = &mut rng;
            vec![
                Some(id.to_string()),
                Some(user_name(r)),
                maybe(r, 0.1, |r| CITIES.choose(r).unwrap().to_string()),
                maybe(r, 0.1, |r| {
                    if r.random_bool(0.02) {
                        "0".into()
                    } else {
                        r.random_range(18..=90).to_string()
                    }
                }),
                maybe(r, 0.12, |r| {
                    if r.random_bool(0.3) {
                        ["0.00", "10.50", "-3.25", "99999.99"]
                            .choose(r)
                            .unwrap()
                            .to_string()
                    } else {
                        money(r.random_range(-100_000..=100_000))
                    }
                }),
                maybe(r, 0.1, |r| {
                    let x: f64 = match r.random_range(0..10) {
                        0..=3 => f64::from(r.random_range(0..=24)) / 8.0,
                        4..=6 => *RATIOS.choose(r).unwrap(),
                        _ => r.random_range(0.0..100.0),
                    };
                    format!("{x}")
                }),
                Some(r.random_bool(0.6).to_string()),
                maybe(r, 0.1, |r| COUNTRY_CODES.choose(r).unwrap().to_string()),
                Some(timestamp(r)),
            ]
        })
        .collect();
    let orders_rows = (1..=10_000i64)
        .map(|id| {
            let r = &mut rng;
            let user_id = match r.random_range(0..100) {
                0..=19 => HOT_USER,
                20..=21 => r.random_range(5000..5010), // orders of users that do not exist
                _ => *ids.choose(r).unwrap(),
            };
            let amount = match r.random_range(0..20) {
                0 => 0,
                1 | 2 => r.random_range(-50_000..0),
                3 | 4 => [1000, 1999, 250_000].choose(r).copied().unwrap(),
                _ => r.random_range(1..500_000),
            };
            vec![
                Some(id.to_string()),
                Some(user_id.to_string()),
                Some(money(amount)),
                Some(r.random_range(-1..=20).to_string()),
                Some(STATUSES.choose(r).unwrap().to_string()),
                maybe(r, 0.35, |r| {
                    if r.random_bool(0.7) {
                        NOTES.choose(r).unwrap().to_string()
                    } else {
                        format!("n{}", r.random_range(0..300))
                    }
                }),
            ]
        })
        .collect();
    let countries = [
        ("FR", "France", "Europe"),
        ("DE", "Deutschland", "Europe"),
        ("US", "United States", "Americas"),
        ("BR", "Brasil", "Americas"),
        ("JP", "Japan", "Asia"),
        ("CH", "Schweiz", "Europe"),
        ("ES", "España", "Europe"),
        ("PL", "Polska", "Europe"),
        ("KR", "Korea", "Asia"),
        ("IS", "Ísland", "europe"),
    ];
    Data {
        users: Table {
            name: "users",
            columns: vec![
                ("id", Ty::Int),
                ("name", Ty::Text),
                ("city", Ty::Text),
                ("age", Ty::Int),
                ("score", Ty::Num),
                ("ratio", Ty::Float),
                ("active", Ty::Bool),
                ("country", Ty::Text),
                ("created", Ty::Ts),
            ],
            rows: users_rows,
        },
        orders: Table {
            name: "orders",
            columns: vec![
                ("id", Ty::Int),
                ("user_id", Ty::Int),
                ("amount", Ty::Num),
                ("qty", Ty::Int),
                ("status", Ty::Text),
                ("note", Ty::Text),
            ],
            rows: orders_rows,
        },
        countries: Table {
            name: "countries",
            columns: vec![("code", Ty::Text), ("name", Ty::Text), ("region", Ty::Text)],
            rows: countries
                .iter()
                .map(|(c, n, r)| {
                    vec![
                        Some(c.to_string()),
                        Some(n.to_string()),
                        Some(r.to_string()),
                    ]
                })
                .collect(),
        },
    }
}

/// Creates the schema and loads every row, in multi-row INSERTs (which the proxy splits by key);
/// `reversed` inserts the rows last to first, so ties in a partial order come out differently.
pub async fn load(client: &Client, data: &Data, side: &str, reversed: bool) {
    client
        .batch_execute(SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("{side}: schema: {e:?}"));
    for table in [&data.countries, &data.users, &data.orders] {
        let mut inserts = table.inserts(500, reversed);
        if reversed {
            inserts.reverse();
        }
        for sql in inserts {
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{side}: loading {}: {e}", table.name));
        }
    }
}
