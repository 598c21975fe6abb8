//! A session's cache of plans: by statement text, and by statement shape (the text with its
//! literals taken out, see `literals.rs`). The plan of a shape is made once, checked against the
//! plan of the statement itself, and from then on routes every statement of that shape by its
//! literals' values, as bind parameters would be, without parsing it.

use super::literals::{self, Lit, LitKind};
use super::prepare;
use super::{plan, route, route_bound, MergePlan, QueryPlan, Route, StatementPlan, Target};
use crate::catalog::Catalog;
use crate::ring::{array_from_text, ArrayKeys, Key, Ring};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The first statement of a shape, its literals, and the plan of its parameterized text.
#[derive(Clone)]
struct Template {
    text: Arc<str>,
    lits: Vec<Lit>,
    plan: Arc<QueryPlan>,
    /// The parameterized text, when the shards may run the shape as a prepared statement.
    shaped: Option<Arc<str>>,
    /// Its statements over several shards may be gathered by the shape's merge plan, with the
    /// literals bound as parameters (see `gatherable`); else such statements are planned as
    /// themselves.
    gather: bool,
}

/// A shape's statement as the shards prepare it, for one combination of its literals' types.
pub struct ServerStmt {
    /// Its name on backend connections (`prepare::backend_name`).
    pub name: String,
    pub sql: Arc<str>,
    pub types: Vec<u32>,
    /// Hash of the text and types, as backend connections record their statements.
    pub hash: u64,
    /// Where the cache keeps it: shape hash and types signature.
    key: (u64, u64),
}

pub struct PlanCache {
    plans: LruCache<u64, (Arc<str>, Arc<QueryPlan>)>,
    /// By shape hash; `None` for a shape whose plan cannot stand for its statements.
    templates: LruCache<u64, Option<Arc<Template>>>,
    /// The literals of the text being looked up (kept for their buffer).
    lits: Vec<Lit>,
    /// The keys the last statement `routed` routed was routed by.
    keys: Vec<Key>,
    /// By shape hash and types signature; `None` where the shards could not prepare it.
    server: LruCache<(u64, u64), Option<Arc<ServerStmt>>>,
    /// The parameter types of the last statement `server_stmt` looked at (kept for its buffer).
    types: Vec<u32>,
    /// The catalog version the cached plans were made under.
    version: u64,
}

/// A statement routed by its shape's plan.
pub struct Routed {
    pub plan: Arc<QueryPlan>,
    pub route: Route,
    /// The shape's hash, to ask for its server-side statement.
    pub shape: u64,
}

impl PlanCache {
    /// Holds up to `capacity` plans by text and as many by shape.
    pub fn new(capacity: usize, version: u64) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        PlanCache {
            plans: LruCache::new(cap),
            templates: LruCache::new(cap),
            server: LruCache::new(cap),
            lits: Vec::new(),
            keys: Vec::new(),
            types: Vec::new(),
            version,
        }
    }

    /// Forgets every plan when the catalog has changed since they were made.
    pub fn check_version(&mut self, version: u64) {
        if version != self.version {
            self.plans.clear();
            self.templates.clear();
            self.server.clear();
            self.version = version;
        }
    }

    /// The plan of `text`, cached by its text.
    pub fn plan(&mut self, text: &str, catalog: &Catalog) -> Arc<QueryPlan> {
        let hash = twox_hash::XxHash3_64::oneshot(text.as_bytes());
        if let Some((t, p)) = self.plans.get(&hash) {
            if &**t == text {
                return p.clone();
            }
        }
        let planned = Arc::new(plan(text, catalog));
        self.plans.put(hash, (Arc::from(text), planned.clone()));
        planned
    }

    /// `text` routed by its shape's plan, if its shape has one and the literals route it to
    /// one shard, or to several for a shape that may be gathered. The first statement of a
    /// shape gets `None` (the caller plans it as itself) while its shape's plan is made.
    pub fn routed(&mut self, text: &str, catalog: &Catalog, ring: &Ring) -> Option<Routed> {
        let mut lits = std::mem::take(&mut self.lits);
        let found = self.routed_with(text, &mut lits, catalog, ring);
        self.lits = lits;
        found
    }

    /// The keys the statement `routed` last routed was routed by, for the hot-key statistics.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The literals of the statement `routed` last looked at, in order: its parameters when it
    /// runs as its shape's prepared statement.
    pub fn lits(&self) -> &[Lit] {
        &self.lits
    }

    /// The prepared statement that runs `text`, the statement `routed` last routed (by the
    /// shape `shape`), with its literals as parameters; `None` if its shape does not qualify
    /// (see `prepare::preparable`) or the shards refused to prepare it.
    pub fn server_stmt(&mut self, shape: u64, text: &str) -> Option<Arc<ServerStmt>> {
        let shaped = self.templates.peek(&shape)?.as_ref()?.shaped.clone()?;
        let sig = prepare::types(text, &self.lits, &mut self.types);
        if let Some(found) = self.server.get(&(shape, sig)) {
            return found.clone();
        }
        let hash = prepare::statement_hash(&shaped, &self.types);
        let stmt = Arc::new(ServerStmt {
            name: prepare::backend_name(hash),
            sql: shaped,
            types: self.types.clone(),
            hash,
            key: (shape, sig),
        });
        self.server.put((shape, sig), Some(stmt.clone()));
        Some(stmt)
    }

    /// A shard could not prepare `stmt` (its text needs its constants): the shape's statements
    /// of these types run as text from now on.
    pub fn unpreparable(&mut self, stmt: &ServerStmt) {
        self.server.put(stmt.key, None);
    }

    /// The shards refused `shape`'s gather with the literals bound where the statement's text
    /// ran: its statements over several shards are planned as themselves from now on.
    pub fn no_gather(&mut self, shape: u64) {
        if let Some(Some(t)) = self.templates.peek_mut(&shape) {
            if t.gather {
                let mut plain = (**t).clone();
                plain.gather = false;
                *t = Arc::new(plain);
            }
        }
    }

    fn routed_with(
        &mut self,
        text: &str,
        lits: &mut Vec<Lit>,
        catalog: &Catalog,
        ring: &Ring,
    ) -> Option<Routed> {
        let hash = literals::shape(text, lits)?;
        if lits.is_empty() {
            // Nothing to take out: the cache by text serves it as well.
            return None;
        }
        match self.templates.get(&hash) {
            Some(Some(t)) if literals::same_shape(&t.text, &t.lits, text, lits) => {
                let plan = t.plan.clone();
                self.keys.clear();
                let route = route_by_literals(&plan, text, lits, ring, &mut self.keys)?;
                if !one_shard(&route) && !t.gather {
                    return None;
                }
                return Some(Routed {
                    plan,
                    route,
                    shape: hash,
                });
            }
            Some(_) => return None,
            None => {}
        }
        let template = self.make_template(text, lits, catalog, ring);
        self.templates.put(hash, template);
        None
    }

    /// The template of `text`'s shape, if its plan routes `text` exactly as `text`'s own plan
    /// does and agrees with it on everything else a session reads.
    fn make_template(
        &mut self,
        text: &str,
        lits: &[Lit],
        catalog: &Catalog,
        ring: &Ring,
    ) -> Option<Arc<Template>> {
        let own = self.plan(text, catalog);
        let shaped_text = literals::parameterized(text, lits);
        let mut shaped = plan(&shaped_text, catalog);
        let ([mine], [theirs]) = (own.statements.as_slice(), shaped.statements.as_slice()) else {
            return None;
        };
        let fits = match (&mine.target, &theirs.target) {
            (Target::Keys(_), Target::Bound(b)) => {
                b.params.iter().chain(&b.arrays).all(|&i| i < lits.len())
            }
            // A statement the router could not parse is refused if its text names a sharded
            // table, string constants included: the shape's text has no constants to find one
            // in, so only shapes whose constants are numbers stand for such statements.
            (Target::Any, Target::Any) => lits.iter().all(|l| l.kind == LitKind::Int),
            // Keyless reads: only ever gathered.
            (Target::All, Target::All) => true,
            _ => false,
        };
        if !fits || !same_flags(mine, theirs) {
            return None;
        }
        let own_route = route(mine, ring).ok()?;
        if route_by_literals(&shaped, text, lits, ring, &mut Vec::new())? != own_route {
            return None;
        }
        let preparable = prepare::preparable(&shaped_text, lits.len());
        let gather = preparable && gatherable(mine, theirs, text, lits);
        if !one_shard(&own_route) && !gather {
            return None;
        }
        if let (true, [theirs @ StatementPlan { merge: None, .. }]) =
            (gather, shaped.statements.as_mut_slice())
        {
            // Rows that concatenate exactly: gathered by the plan that merges nothing.
            theirs.merge = Some(Arc::new(MergePlan::concat(&shaped_text)));
        }
        Some(Arc::new(Template {
            text: Arc::from(text),
            lits: lits.to_vec(),
            plan: Arc::new(shaped),
            shaped: preparable.then(|| Arc::from(shaped_text)),
            gather,
        }))
    }
}

/// Routes a shape's statement by `text`'s literals; `None` for a target the literals do not
/// decide (the statement's own plan reports what is wrong with it).
fn route_by_literals(
    plan: &QueryPlan,
    text: &str,
    lits: &[Lit],
    ring: &Ring,
    keys: &mut Vec<Key>,
) -> Option<Route> {
    let stmt = plan.statements.first()?;
    let ty = match &stmt.target {
        Target::Any => return Some(Route::Any),
        Target::Bound(b) => b.key_type,
        Target::All => return Some(Route::All),
        _ => return None,
    };
    let mut param = |i: usize| -> Option<Result<Key, String>> {
        let key = Key::from_text(ty, &lits.get(i)?.value(text)).map_err(|e| e.0);
        if let Ok(k) = &key {
            keys.push(k.clone());
        }
        Some(key)
    };
    let mut array = |i: usize| -> Option<Result<ArrayKeys, String>> {
        Some(array_from_text(ty, &lits.get(i)?.value(text)).map_err(|e| e.0))
    };
    // A literal that is no key of the type is for the statement's own plan to report (or
    // PostgreSQL), so an error here only means "not by the template".
    match route_bound(stmt, ring, &mut param, &mut array).ok()? {
        r @ (Route::Shards(_) | Route::All | Route::Any) => Some(r),
        Route::Split(_) => None,
    }
}

/// One shard (or any) answers the route.
pub fn one_shard(route: &Route) -> bool {
    match route {
        Route::Any => true,
        Route::Shards(v) => v.len() == 1,
        _ => false,
    }
}

/// True when the shape's plan `theirs`, with `text`'s literals bound, merges the shards' rows
/// exactly as `mine`, the statement's own plan, does: a read both plans gather, alike in
/// everything but the literals, which only LIMIT and OFFSET and HAVING's comparisons may hold
/// for the merge (see `shape_merge`); or a read whose rows both plans concatenate.
fn gatherable(mine: &StatementPlan, theirs: &StatementPlan, text: &str, lits: &[Lit]) -> bool {
    if mine.writes || mine.ddl || mine.replicated || mine.not_mergeable.is_some() {
        return false;
    }
    let (a, b) = match (&mine.merge, &theirs.merge) {
        (Some(a), Some(b)) => (a, b),
        // Rows that concatenate exactly, in both plans.
        (None, None) => return matches!(mine.target, Target::Keys(_) | Target::All),
        _ => return false,
    };
    super::shape_merge::merges_alike(a, b)
        && literal_limits(b, text, lits) == Some((a.limit, a.offset))
}

/// The LIMIT and OFFSET of a shape's merge plan for `text`: its `LIMIT $n`/`OFFSET $n` take
/// the literals' values. `None` if such a literal is no whole number.
pub fn literal_limits(plan: &MergePlan, text: &str, lits: &[Lit]) -> Option<(Option<u64>, u64)> {
    let value = |i: usize| -> Option<u64> {
        let l = lits.get(i).filter(|l| l.kind == LitKind::Int)?;
        l.value(text).parse().ok()
    };
    let limit = match plan.limit_param {
        Some(i) => Some(value(i)?),
        None => plan.limit,
    };
    let offset = match plan.offset_param {
        Some(i) => value(i)?,
        None => plan.offset,
    };
    Some((limit, offset))
}

/// Whether two plans of one statement agree on what a session reads besides the target.
fn same_flags(a: &StatementPlan, b: &StatementPlan) -> bool {
    a.writes == b.writes
        && a.ddl == b.ddl
        && a.no_transaction == b.no_transaction
        && a.replicated == b.replicated
        && a.inserts == b.inserts
        && a.tables == b.tables
        && a.merge.is_none() == b.merge.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::{catalog, ring};

    /// Whenever the cache routes a statement by its shape, the route is exactly the one the
    /// statement's own plan gives; and the point statements are routed by shape at all.
    #[test]
    fn a_shape_routes_each_statement_as_its_own_plan_would() {
        let (catalog, ring) = (catalog(), ring());
        let families: &[(&str, bool)] = &[
            ("SELECT * FROM users WHERE id = {a}", true),
            ("SELECT * FROM users WHERE id = '{a}'", true),
            ("UPDATE users SET name = 'x{b}' WHERE id = {a}", true),
            ("INSERT INTO users (id, name) VALUES ({a}, 'n''{b}')", true),
            ("SELECT * FROM accounts WHERE name = 'o''{a}'", true),
            (
                "SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE u.id = {a}",
                true,
            ),
            ("DELETE FROM users WHERE id = {a} AND score > {b}", true),
            ("SELECT 1 + {a}", true),
            ("UPDATE users SET id = {b} WHERE id = {a}", false),
            (
                "INSERT INTO users (id, name) VALUES ({a}, 'a'), ({b}, 'b')",
                false,
            ),
            ("SELECT * FROM users WHERE id IN ({a}, {b})", false),
            ("SELECT * FROM users WHERE id = {a} OR id = {b}", false),
            ("SELECT count(*) FROM users WHERE score = {a}", false),
            ("SELECT * FROM users WHERE id = {a} LIMIT {b}", true),
        ];
        for (family, point) in families {
            let mut cache = PlanCache::new(16, 0);
            let mut hits = 0;
            for i in 0..300i64 {
                let (a, b) = (i * 7919 % 1000, (i * 104_729 + 13) % 1000);
                let text = family
                    .replace("{a}", &a.to_string())
                    .replace("{b}", &b.to_string());
                let own = plan(&text, &catalog);
                if let Some(r) = cache.routed(&text, &catalog, &ring) {
                    hits += 1;
                    let [stmt] = own.statements.as_slice() else {
                        panic!("{text}: routed by shape but is not one statement");
                    };
                    assert_eq!(Ok(r.route), route(stmt, &ring), "{text}");
                }
            }
            if *point {
                assert!(hits >= 250, "{family}: only {hits} of 300 routed by shape");
            }
        }
    }

    /// Reads over several shards are routed by shape when the shape's merge plan, with the
    /// literals bound, merges as the statement's own plan does; never when a write spans
    /// shards.
    #[test]
    fn a_gather_shape_merges_as_its_statements_own_plan() {
        let (catalog, ring) = (catalog(), ring());
        let families: &[(&str, bool)] = &[
            ("SELECT count(*) FROM users WHERE score BETWEEN {a} AND {b}", true),
            (
                "SELECT id FROM users WHERE score > {a} ORDER BY id LIMIT {b} OFFSET {a}",
                true,
            ),
            ("SELECT DISTINCT name FROM users WHERE score < {a}", true),
            ("SELECT id FROM users WHERE id IN ({a}, {b}) ORDER BY id", true),
            // Rows concatenated: by the plan that merges nothing.
            ("SELECT * FROM users WHERE id IN ({a}, {b})", true),
            ("SELECT id, name FROM users WHERE score > {a}", true),
            (
                "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > {a}",
                true,
            ),
            (
                "SELECT name FROM users WHERE score > {a} GROUP BY name HAVING min(created) >= '2024-01-{b}'",
                true,
            ),
            (
                "SELECT name FROM users GROUP BY name HAVING count(*) > {a} OR max(score) < {b} ORDER BY max(id) LIMIT {a}",
                true,
            ),
            ("UPDATE users SET score = {a} WHERE score = {b}", false),
        ];
        for (family, gathered) in families {
            let mut cache = PlanCache::new(16, 0);
            let mut hits = 0;
            for i in 0..50i64 {
                let (a, b) = (i * 7919 % 1000 + 1, (i * 104_729 + 13) % 1000 + 1);
                let text = family
                    .replace("{a}", &a.to_string())
                    .replace("{b}", &b.to_string());
                let Some(r) = cache.routed(&text, &catalog, &ring) else {
                    continue;
                };
                if one_shard(&r.route) {
                    continue;
                }
                hits += 1;
                let own = plan(&text, &catalog);
                let (mine, theirs) = (&own.statements[0], &r.plan.statements[0]);
                let Some(t) = &theirs.merge else {
                    panic!("{text}: gathered without a merge plan");
                };
                let Some(m) = &mine.merge else {
                    // The statement's own rows concatenate: so must the shape's.
                    assert_eq!(**t, MergePlan::concat(t.shard_sql.as_str()), "{text}");
                    assert_eq!(t.shard_sql, literals::parameterized(&text, cache.lits()));
                    continue;
                };
                assert_eq!(
                    literal_limits(t, &text, cache.lits()),
                    Some((m.limit, m.offset)),
                    "{text}"
                );
                assert!(super::super::shape_merge::merges_alike(m, t), "{text}");
            }
            assert_eq!(hits > 0, *gathered, "{family}: {hits} gathered by shape");
        }
    }

    #[test]
    fn a_shape_refused_as_a_gather_is_planned_as_itself_after() {
        let (catalog, ring) = (catalog(), ring());
        let mut cache = PlanCache::new(16, 1);
        let sql = |k: i64| format!("SELECT count(*) FROM users WHERE score > {k}");
        assert!(cache.routed(&sql(1), &catalog, &ring).is_none());
        let r = cache
            .routed(&sql(2), &catalog, &ring)
            .expect("gathered by shape");
        assert!(matches!(r.route, Route::All));
        cache.no_gather(r.shape);
        assert!(cache.routed(&sql(3), &catalog, &ring).is_none());
    }

    #[test]
    fn a_new_catalog_forgets_the_shapes() {
        let (catalog, ring) = (catalog(), ring());
        let mut cache = PlanCache::new(16, 1);
        assert!(cache
            .routed("SELECT * FROM users WHERE id = 1", &catalog, &ring)
            .is_none());
        assert!(cache
            .routed("SELECT * FROM users WHERE id = 2", &catalog, &ring)
            .is_some());
        cache.check_version(2);
        assert!(cache
            .routed("SELECT * FROM users WHERE id = 3", &catalog, &ring)
            .is_none());
    }
}
