//! Random queries from a small grammar of what the gather engine supports across shards: select
//! lists of columns, expressions or aggregates, WHERE predicates on values the data holds, GROUP BY
//! with HAVING, DISTINCT, and total ORDER BYs with LIMIT/OFFSET, over users, orders, their colocated
//! join and the join of users with the reference table.

use super::data::{Data, Ty, HOT_USER};
use super::queries::{Class, Query};
use super::terms::{dir, Expr, Gen, Src};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

/// One select-list entry.
#[derive(Clone)]
struct Item {
    sql: String,
    /// Always set for aggregates: `a<i>` for exact ones, `f_<i>` for float-valued ones (compared
    /// with tolerance, never ordered on).
    alias: Option<String>,
}

impl Item {
    fn render(&self) -> String {
        match &self.alias {
            Some(a) => format!("{} AS {a}", self.sql),
            None => self.sql.clone(),
        }
    }
}

impl Gen<'_> {
    fn limit(&mut self) -> String {
        let mut out = String::new();
        if self.rng.random_bool(0.5) {
            let n = *["0", "1", "3", "20", "100", "ALL"]
                .choose(&mut self.rng)
                .unwrap();
            out.push_str(&format!(" LIMIT {n}"));
        }
        if self.rng.random_bool(0.3) {
            let n = *[0, 1, 5, 40, 100_000].choose(&mut self.rng).unwrap();
            out.push_str(&format!(" OFFSET {n}"));
        }
        out
    }

    /// How an ORDER BY refers to select item `i`: its ordinal, its alias or its expression.
    fn refer(&mut self, items: &[Item], i: usize) -> String {
        match (self.rng.random_range(0..3), &items[i].alias) {
            (0, _) => (i + 1).to_string(),
            (1, Some(a)) => a.clone(),
            _ => items[i].sql.clone(),
        }
    }

    /// The `n`th generated query: its source, an optional pin to one key, an optional WHERE, and a
    /// shape (plain rows, DISTINCT, or aggregates).
    pub fn query(&mut self, n: usize) -> Query {
        let pinned = self.rng.random_bool(if self.basic { 0.5 } else { 0.15 });
        let plain_only = self.basic && !pinned;
        let srcs: &[Src] = if plain_only {
            &[Src::Users, Src::Orders]
        } else {
            &[
                Src::Users,
                Src::Users,
                Src::Orders,
                Src::Orders,
                Src::Join,
                Src::Join,
                Src::LeftJoin,
                Src::UsersCountries,
                Src::UsersLeftCountries,
            ]
        };
        let src = *srcs.choose(&mut self.rng).unwrap();
        let cols = self.columns(src);
        let mut exprs = cols.clone();
        exprs.extend(self.expressions(src));

        let mut conds = Vec::new();
        if pinned {
            let key = if self.rng.random_bool(0.3) {
                HOT_USER.to_string()
            } else {
                let id_col = Expr {
                    sql: String::new(),
                    ty: Ty::Int,
                    sample: Some(('u', 0)),
                };
                self.literal(&id_col)
            };
            conds.push(format!("{} = {key}", src.pin()));
        }
        if self.rng.random_bool(0.7) {
            let c = self.condition(&cols);
            conds.push(if conds.is_empty() {
                c
            } else {
                format!("({c})")
            });
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };

        let shape = if plain_only {
            0
        } else {
            self.rng.random_range(0..20)
        };
        let sql = match shape {
            0..=5 => self.plain(src, &exprs, &where_, plain_only),
            6..=8 => self.distinct(&exprs, src, &where_),
            _ => self.grouped(src, &cols, &exprs, &where_),
        };
        let class = if pinned {
            Class::OneShard
        } else if plain_only {
            Class::Gather
        } else {
            Class::Engine
        };
        Query::new(sql, class, format!("gen #{n}"))
    }

    fn pick_items(&mut self, exprs: &[Expr], max: usize) -> Vec<Item> {
        let n = self.rng.random_range(1..=max);
        let mut items: Vec<Item> = Vec::new();
        for (i, e) in exprs.choose_multiple(&mut self.rng, n).enumerate() {
            let alias = (e.sample.is_none() || self.rng.random_bool(0.3)).then(|| format!("c{i}"));
            items.push(Item {
                sql: e.sql.clone(),
                alias,
            });
        }
        items
    }

    fn select(items: &[Item]) -> String {
        items
            .iter()
            .map(Item::render)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Rows of the source: columns and expressions, optionally in a total order with LIMIT/OFFSET.
    fn plain(&mut self, src: Src, exprs: &[Expr], where_: &str, plain_only: bool) -> String {
        let items = self.pick_items(exprs, 4);
        let mut sql = format!(
            "SELECT {} FROM {}{where_}",
            Self::select(&items),
            src.tables_sql()
        );
        if plain_only || self.rng.random_bool(0.3) {
            return sql;
        }
        let mut keys = Vec::new();
        for _ in 0..self.rng.random_range(0..=2) {
            let key = if self.rng.random_bool(0.5) {
                let i = self.rng.random_range(0..items.len());
                self.refer(&items, i)
            } else {
                exprs.choose(&mut self.rng).unwrap().sql.clone()
            };
            keys.push(format!("{key}{}", dir(&mut self.rng)));
        }
        for u in src.unique() {
            keys.push(format!("{u}{}", dir(&mut self.rng)));
        }
        sql.push_str(&format!(" ORDER BY {}{}", keys.join(", "), self.limit()));
        sql
    }

    /// SELECT DISTINCT, ordered (when at all) by every selected item, which is a total order.
    fn distinct(&mut self, exprs: &[Expr], src: Src, where_: &str) -> String {
        let items = self.pick_items(exprs, 3);
        let mut sql = format!(
            "SELECT DISTINCT {} FROM {}{where_}",
            Self::select(&items),
            src.tables_sql()
        );
        if self.rng.random_bool(0.6) {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.shuffle(&mut self.rng);
            let keys: Vec<String> = (order.into_iter())
                .map(|i| format!("{}{}", self.refer(&items, i), dir(&mut self.rng)))
                .collect();
            sql.push_str(&format!(" ORDER BY {}{}", keys.join(", "), self.limit()));
        }
        sql
    }

    /// Aggregates, with or without GROUP BY (+ HAVING); ordered by an aggregate and then by every
    /// group item, which is a total order.
    fn grouped(&mut self, src: Src, cols: &[Expr], exprs: &[Expr], where_: &str) -> String {
        let groups: Vec<Expr> = if self.rng.random_bool(0.75) {
            let n = self.rng.random_range(1..=2);
            exprs.choose_multiple(&mut self.rng, n).cloned().collect()
        } else {
            Vec::new()
        };
        // Group items in the select list (most of them), then one to three aggregates.
        let mut items: Vec<Item> = Vec::new();
        for (g, e) in groups.iter().enumerate() {
            if self.rng.random_bool(0.85) {
                let alias =
                    (e.sample.is_none() || self.rng.random_bool(0.3)).then(|| format!("g{g}"));
                items.push(Item {
                    sql: e.sql.clone(),
                    alias,
                });
            }
        }
        for i in 0..self.rng.random_range(1..=3) {
            let (sql, float, _) = self.aggregate(exprs, src);
            let alias = if float {
                format!("f_{i}")
            } else {
                format!("a{i}")
            };
            items.push(Item {
                sql,
                alias: Some(alias),
            });
        }
        // Now and then a constant, which the shards evaluate beside the aggregates.
        if self.rng.random_bool(0.1) {
            let sql = *["'k'", "2 + 3", "NULL::int", "true"]
                .choose(&mut self.rng)
                .unwrap();
            items.push(Item {
                sql: sql.to_string(),
                alias: Some("c".to_string()),
            });
        }
        items.shuffle(&mut self.rng);
        let item_of = |items: &[Item], e: &Expr| items.iter().position(|it| it.sql == e.sql);

        let mut sql = format!(
            "SELECT {} FROM {}{where_}",
            Self::select(&items),
            src.tables_sql()
        );
        if !groups.is_empty() {
            let keys: Vec<String> = (groups.iter())
                .map(|e| match item_of(&items, e) {
                    Some(i) if self.rng.random_bool(0.3) => (i + 1).to_string(),
                    _ => e.sql.clone(),
                })
                .collect();
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        }
        if self.rng.random_bool(0.35) {
            sql.push_str(&format!(
                " HAVING {}",
                self.having(src, cols, exprs, &groups)
            ));
        }
        if self.rng.random_bool(0.55) {
            let mut keys = Vec::new();
            let exact_aggs: Vec<usize> = (0..items.len())
                .filter(|&i| {
                    items[i]
                        .alias
                        .as_deref()
                        .is_some_and(|a| a.starts_with('a'))
                })
                .collect();
            if groups.is_empty() || self.rng.random_bool(0.4) {
                let key = match exact_aggs.choose(&mut self.rng) {
                    Some(&i) if self.rng.random_bool(0.7) => self.refer(&items, i),
                    _ => "count(*)".to_string(),
                };
                keys.push(format!("{key}{}", dir(&mut self.rng)));
            }
            for e in &groups {
                let key = match item_of(&items, e) {
                    Some(i) => self.refer(&items, i),
                    None => e.sql.clone(),
                };
                keys.push(format!("{key}{}", dir(&mut self.rng)));
            }
            sql.push_str(&format!(" ORDER BY {}{}", keys.join(", "), self.limit()));
        }
        sql
    }

    /// Comparisons of exact aggregates (selected or not) and of group items with constants.
    fn having(&mut self, src: Src, cols: &[Expr], exprs: &[Expr], groups: &[Expr]) -> String {
        let n = self.rng.random_range(1..=2);
        let mut parts = Vec::new();
        for _ in 0..n {
            if !groups.is_empty() && self.rng.random_bool(0.3) {
                let e = groups.choose(&mut self.rng).unwrap().clone();
                parts.push(match self.rng.random_range(0..3) {
                    0 => format!("{} IS NOT NULL", e.sql),
                    _ if e.ty == Ty::Bool => format!("{} = {}", e.sql, self.literal(&e)),
                    _ => {
                        let op = *["<", ">=", "<>"].choose(&mut self.rng).unwrap();
                        format!("{} {op} {}", e.sql, self.literal(&e))
                    }
                });
                continue;
            }
            let (agg, ty) = loop {
                let (agg, float, ty) = self.aggregate(exprs, src);
                if !float {
                    break (agg, ty);
                }
            };
            let constant = match ty {
                Ty::Int if agg.starts_with("count") => self.rng.random_range(0..40).to_string(),
                Ty::Bool => "true".to_string(),
                _ => {
                    // A value from the aggregated column when there is one, else a typed literal.
                    let probe = cols
                        .iter()
                        .find(|c| agg.contains(&format!("({})", c.sql)) && c.ty == ty)
                        .cloned()
                        .unwrap_or(Expr {
                            sql: String::new(),
                            ty,
                            sample: None,
                        });
                    self.literal(&probe)
                }
            };
            let op = *["<", "<=", ">", ">=", "=", "<>"]
                .choose(&mut self.rng)
                .unwrap();
            parts.push(format!("{agg} {op} {constant}"));
        }
        let joiner = if self.rng.random_bool(0.6) {
            " AND "
        } else {
            " OR "
        };
        let out = parts.join(joiner);
        if self.rng.random_bool(0.15) {
            format!("NOT ({out})")
        } else {
            out
        }
    }
}

/// `n` random queries for `seed`; the first k are the same whatever `n` is.
pub fn generate(data: &Data, seed: u64, n: usize, basic: bool) -> Vec<Query> {
    let mut g = Gen::new(data, seed, basic);
    (0..n).map(|i| g.query(i)).collect()
}
