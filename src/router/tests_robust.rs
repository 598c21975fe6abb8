//! Router tests: no input makes the planner or route() panic or overflow the stack.

use super::tests::{catalog, ring};
use super::*;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "SELECT * FROM users WHERE id = 42",
    "SELECT u.*, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id IN (1, 2)",
    "INSERT INTO users (id, name) VALUES (1, 'a'), (2, E'b\\'c'), (3, $$d$$) RETURNING *",
    "UPDATE users SET name = 'x' WHERE id = 1; DELETE FROM orders WHERE user_id = 2",
    "WITH x AS (SELECT * FROM users WHERE id = 1) SELECT count(*) FROM x GROUP BY 1 ORDER BY 1",
    "BEGIN; SET LOCAL a = 1; COMMIT",
    "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$'",
    "CREATE INDEX CONCURRENTLY i ON users (name); VACUUM users",
    "SELECT 'ünïcødé ✓', \"日本\" FROM accounts WHERE name = '名前'",
    "COPY users FROM STDIN; TABLE users; DO $$ BEGIN END $$",
];

const FRAGMENTS: &[&str] = &[
    "'", "\"", "$$", "$a$", ";", "(", ")", "/*", "*/", "--", "\n", " AND ", " OR ", "users", "id",
    "=", "1", "-", "::", "E'", "\\", "ü", "日", "✓", "SELECT", "FROM", "WHERE", "VALUES", ",",
    "IN", "NULL", "$1", "[", "]", "U&'", "WITH", "UNION", "JOIN", "ON", "\u{0}", "\t", "é",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(s.len() + 1);
        match rng.below(3) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(8)).min(s.len());
                s.drain(at.min(s.len())..end);
            }
            1 => {
                let frag = FRAGMENTS[rng.below(FRAGMENTS.len())];
                for (i, c) in frag.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            _ => s.truncate(at),
        }
    }
    s.into_iter().collect()
}

fn exercise(sql: &str, catalog: &Catalog, ring: &Ring) {
    let p = plan(sql, catalog);
    for st in &p.statements {
        assert!(
            st.span.end <= sql.len()
                && sql.is_char_boundary(st.span.start)
                && sql.is_char_boundary(st.span.end)
        );
        let _ = route(st, ring);
    }
}

#[test]
fn random_and_mutated_sql_never_panics() {
    let (catalog, ring) = (catalog(), ring());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        exercise(&mutate(&mut rng, seed), &catalog, &ring);
    }
    for _ in 0..1500 {
        let len = rng.below(40);
        let s: String = (0..len)
            .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
            .collect();
        exercise(&s, &catalog, &ring);
    }
}

/// Runs on a 2 MiB stack, as a tokio worker thread would.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("planner overflowed or panicked");
}

#[test]
fn deep_input_is_bounded() {
    on_small_stack(|| {
        let (catalog, ring) = (catalog(), ring());
        let long_and = format!(
            "SELECT * FROM users WHERE id = 1 AND {}",
            vec!["x = 1"; 7000].join(" AND ")
        );
        let p = plan(&long_and, &catalog);
        assert!(
            matches!(&p.statements[0].target, Target::Keys(k) if *k == vec![Key::Int(1)]),
            "{:?}",
            p.statements[0].target
        );
        let long_or = format!(
            "SELECT * FROM users WHERE {}",
            vec!["id = 1"; 7000].join(" OR ")
        );
        assert!(matches!(
            plan(&long_or, &catalog).statements[0].target,
            Target::All
        ));
        let huge = format!(
            "SELECT * FROM users WHERE {}",
            vec!["id = 1"; 60_000].join(" AND ")
        );
        assert!(matches!(
            plan(&huge, &catalog).statements[0].target,
            Target::Reject(_)
        ));
        let huge_plus = format!("SELECT {}", vec!["1"; 60_000].join(" + "));
        assert!(matches!(
            plan(&huge_plus, &catalog).statements[0].target,
            Target::Any
        ));
        let plus = format!(
            "SELECT * FROM users WHERE x = {}",
            vec!["1"; 15_990].join(" + ")
        );
        exercise(&plus, &catalog, &ring);
        let concat = format!(
            "SELECT {} FROM users WHERE id = 1",
            vec!["'a'"; 15_990].join(" || ")
        );
        exercise(&concat, &catalog, &ring);
        for n in [10, 40, 100, 1000, 10_000] {
            let parens = format!(
                "SELECT * FROM users WHERE {}id = 1{}",
                "(".repeat(n),
                ")".repeat(n)
            );
            exercise(&parens, &catalog, &ring);
            let subs = format!(
                "SELECT * FROM users WHERE id IN {}1{}",
                "(SELECT ".repeat(n),
                ")".repeat(n)
            );
            exercise(&subs, &catalog, &ring);
            let derived = format!(
                "SELECT * FROM {}users{}",
                "(SELECT * FROM ".repeat(n),
                ") s".repeat(n)
            );
            exercise(&derived, &catalog, &ring);
            let not = format!("SELECT 1 WHERE {} true", "NOT ".repeat(n));
            exercise(&not, &catalog, &ring);
        }
        let many_rows: Vec<String> = (0..5000).map(|i| format!("({i}, -{i}, 'x')")).collect();
        let insert = format!(
            "INSERT INTO users (id, a, b) VALUES {}",
            many_rows.join(", ")
        );
        let p = plan(&insert, &catalog);
        let Target::Split(split) = &p.statements[0].target else {
            panic!()
        };
        assert_eq!(split.keys.len(), 5000);
        assert!(matches!(
            route(&p.statements[0], &ring),
            Ok(Route::Split(_))
        ));
    });
}
