//! The vocabulary of the query generator: the sources (tables and joins), their columns and
//! row-level expressions, literals drawn from the data, WHERE predicates and aggregates.

use super::data::{lit, quote, Data, Table, Ty};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// What a generated query reads: one sharded table, the colocated join, or users with the
/// reference table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Src {
    Users,
    Orders,
    Join,
    LeftJoin,
    UsersCountries,
    UsersLeftCountries,
}

impl Src {
    pub fn tables_sql(self) -> &'static str {
        match self {
            Src::Users => "users u",
            Src::Orders => "orders o",
            Src::Join => "users u JOIN orders o ON o.user_id = u.id",
            Src::LeftJoin => "users u LEFT JOIN orders o ON o.user_id = u.id",
            Src::UsersCountries => "users u JOIN countries c ON c.code = u.country",
            Src::UsersLeftCountries => "users u LEFT JOIN countries c ON c.code = u.country",
        }
    }

    pub fn aliases(self) -> &'static [char] {
        match self {
            Src::Users => &['u'],
            Src::Orders => &['o'],
            Src::Join | Src::LeftJoin => &['u', 'o'],
            Src::UsersCountries | Src::UsersLeftCountries => &['u', 'c'],
        }
    }

    /// Columns that together tell every row of the source apart.
    pub fn unique(self) -> &'static [&'static str] {
        match self {
            Src::Orders | Src::Join => &["o.id"],
            Src::LeftJoin => &["u.id", "o.id"],
            Src::Users | Src::UsersCountries | Src::UsersLeftCountries => &["u.id"],
        }
    }

    /// The shard key column that pins the whole source to one shard.
    pub fn pin(self) -> &'static str {
        match self {
            Src::Orders => "o.user_id",
            _ => "u.id",
        }
    }
}

/// A column or row-level expression, with where its literals can be drawn from.
#[derive(Clone)]
pub struct Expr {
    pub sql: String,
    pub ty: Ty,
    /// (table alias, column index) to sample literals from; `None` for computed expressions.
    pub sample: Option<(char, usize)>,
}

/// The query generator: its own random stream (derived from the run's seed, so data and queries
/// replay together) and the data its literals come from.
pub struct Gen<'a> {
    pub rng: StdRng,
    data: &'a Data,
    pub basic: bool,
}

/// A random direction and NULLS placement for one ORDER BY key.
pub fn dir(rng: &mut StdRng) -> &'static str {
    const DIRS: &[&str] = &[
        "",
        " ASC",
        " DESC",
        " NULLS FIRST",
        " NULLS LAST",
        " DESC NULLS FIRST",
        " ASC NULLS LAST",
        " DESC NULLS LAST",
    ];
    DIRS.choose(rng).unwrap()
}

impl<'a> Gen<'a> {
    pub fn new(data: &'a Data, seed: u64, basic: bool) -> Gen<'a> {
        Gen {
            rng: StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15),
            data,
            basic,
        }
    }

    fn table(&self, alias: char) -> &'a Table {
        match alias {
            'u' => &self.data.users,
            'o' => &self.data.orders,
            _ => &self.data.countries,
        }
    }

    pub fn columns(&self, src: Src) -> Vec<Expr> {
        let mut out = Vec::new();
        for &a in src.aliases() {
            for (i, (name, ty)) in self.table(a).columns.iter().enumerate() {
                out.push(Expr {
                    sql: format!("{a}.{name}"),
                    ty: *ty,
                    sample: Some((a, i)),
                });
            }
        }
        out
    }

    pub fn expressions(&self, src: Src) -> Vec<Expr> {
        let per_alias: &[(char, &str, Ty)] = &[
            ('u', "lower(u.name)", Ty::Text),
            ('u', "upper(u.city)", Ty::Text),
            ('u', "length(u.name)", Ty::Int),
            ('u', "u.age + 1", Ty::Int),
            ('u', "u.age / 10", Ty::Int),
            ('u', "u.score * 2", Ty::Num),
            ('u', "coalesce(u.city, '?')", Ty::Text),
            ('u', "date_trunc('month', u.created)", Ty::Ts),
            ('u', "u.ratio * 4", Ty::Float),
            ('u', "u.id % 5", Ty::Int),
            ('u', "substr(u.name, 1, 2)", Ty::Text),
            ('u', "(u.active AND u.age > 40)", Ty::Bool),
            ('o', "o.amount * o.qty", Ty::Num),
            ('o', "o.qty % 4", Ty::Int),
            ('o', "lower(o.status)", Ty::Text),
            ('o', "coalesce(o.note, 'none')", Ty::Text),
            ('o', "(o.amount > 0)", Ty::Bool),
            ('o', "abs(o.amount)", Ty::Num),
            ('c', "lower(c.region)", Ty::Text),
        ];
        (per_alias.iter())
            .filter(|(a, _, _)| src.aliases().contains(a))
            .map(|(_, sql, ty)| Expr {
                sql: sql.to_string(),
                ty: *ty,
                sample: None,
            })
            .collect()
    }

    /// A literal for comparing with `e`: a value the data holds when `e` is a column.
    pub fn literal(&mut self, e: &Expr) -> String {
        if let Some((a, col)) = e.sample {
            let rows = &self.table(a).rows;
            let row = &rows[self.rng.random_range(0..rows.len())];
            if let Some(v) = &row[col] {
                return lit(e.ty, Some(v));
            }
        }
        let r = &mut self.rng;
        match e.ty {
            Ty::Int => r.random_range(-2..100).to_string(),
            Ty::Num => format!(
                "{}.{:02}",
                r.random_range(-100..3000),
                r.random_range(0..100)
            ),
            Ty::Float => format!("{}", f64::from(r.random_range(0..400)) / 8.0),
            Ty::Text => quote(
                ["a", "Paris", "ß", "PAID", " ", "m", "new"]
                    .choose(r)
                    .unwrap(),
            ),
            Ty::Bool => r.random_bool(0.5).to_string(),
            Ty::Ts => quote(&format!(
                "{}-0{}-01",
                r.random_range(2020..2025),
                r.random_range(1..10)
            )),
        }
    }

    /// A LIKE pattern from a value the column holds.
    pub fn pattern(&mut self, e: &Expr) -> String {
        let value = e.sample.and_then(|(a, col)| {
            let rows = &self.table(a).rows;
            rows[self.rng.random_range(0..rows.len())][col].clone()
        });
        let chars: Vec<char> = value.unwrap_or_else(|| "pa".into()).chars().collect();
        let take = self.rng.random_range(0..=chars.len().min(3));
        let part: String = chars.iter().take(take).collect();
        match self.rng.random_range(0..3) {
            0 => quote(&format!("{part}%")),
            1 => quote(&format!("%{part}%")),
            _ => quote(&format!("%{part}")),
        }
    }

    pub fn predicate(&mut self, cols: &[Expr]) -> String {
        let e = cols.choose(&mut self.rng).unwrap().clone();
        let kind = self.rng.random_range(0..6);
        match (kind, e.ty) {
            (2, _) => format!(
                "{} IS {}NULL",
                e.sql,
                if self.rng.random_bool(0.5) {
                    "NOT "
                } else {
                    ""
                }
            ),
            (3, ty) if ty != Ty::Bool => {
                let n = self.rng.random_range(1..=4);
                let items: Vec<String> = (0..n).map(|_| self.literal(&e)).collect();
                let not = if self.rng.random_bool(0.3) {
                    "NOT "
                } else {
                    ""
                };
                format!("{} {not}IN ({})", e.sql, items.join(", "))
            }
            (4, ty) if ty != Ty::Bool => {
                // Not BETWEEN SYMMETRIC: the proxy's SQL parser rejects it (42601).
                let (lo, hi) = (self.literal(&e), self.literal(&e));
                let not = if self.rng.random_bool(0.2) {
                    "NOT "
                } else {
                    ""
                };
                format!("{} {not}BETWEEN {lo} AND {hi}", e.sql)
            }
            (5, Ty::Text) => {
                let op = *["LIKE", "ILIKE", "NOT LIKE"].choose(&mut self.rng).unwrap();
                format!("{} {op} {}", e.sql, self.pattern(&e))
            }
            (_, Ty::Bool) => {
                let op = *["=", "<>", "IS DISTINCT FROM"]
                    .choose(&mut self.rng)
                    .unwrap();
                format!("{} {op} {}", e.sql, self.literal(&e))
            }
            _ => {
                let op = *["=", "<>", "<", "<=", ">", ">="]
                    .choose(&mut self.rng)
                    .unwrap();
                format!("{} {op} {}", e.sql, self.literal(&e))
            }
        }
    }

    /// One to three predicates joined by AND/OR, sometimes negated.
    pub fn condition(&mut self, cols: &[Expr]) -> String {
        let n = self.rng.random_range(1..=3);
        let mut out = self.predicate(cols);
        for _ in 1..n {
            let op = if self.rng.random_bool(0.6) {
                "AND"
            } else {
                "OR"
            };
            out = format!("{out} {op} {}", self.predicate(cols));
        }
        if self.rng.random_bool(0.15) {
            out = format!("NOT ({out})");
        }
        out
    }

    /// An aggregate over `cols`: (sql, float-valued, comparable type for HAVING constants).
    pub fn aggregate(&mut self, cols: &[Expr], src: Src) -> (String, bool, Ty) {
        let e = cols.choose(&mut self.rng).unwrap().clone();
        let (mut sql, float, ty) = loop {
            match self.rng.random_range(0..8) {
                0 => break ("count(*)".to_string(), false, Ty::Int),
                1 => break (format!("count({})", e.sql), false, Ty::Int),
                2 => break (format!("count(DISTINCT {})", e.sql), false, Ty::Int),
                3 if matches!(e.ty, Ty::Int | Ty::Num | Ty::Float) => {
                    break (format!("sum({})", e.sql), e.ty == Ty::Float, e.ty)
                }
                4 if matches!(e.ty, Ty::Int | Ty::Num | Ty::Float) => {
                    break (format!("avg({})", e.sql), e.ty == Ty::Float, Ty::Num)
                }
                5 | 6 if e.ty != Ty::Bool => {
                    let f = if self.rng.random_bool(0.5) {
                        "min"
                    } else {
                        "max"
                    };
                    break (format!("{f}({})", e.sql), e.ty == Ty::Float, e.ty);
                }
                7 if e.ty == Ty::Bool => {
                    let f = *["bool_and", "bool_or", "every"]
                        .choose(&mut self.rng)
                        .unwrap();
                    break (format!("{f}({})", e.sql), false, Ty::Bool);
                }
                _ => {}
            }
        };
        if self.rng.random_bool(0.15) {
            let base = self.columns(src);
            sql = format!("{sql} FILTER (WHERE {})", self.predicate(&base));
        }
        (sql, float, ty)
    }
}
