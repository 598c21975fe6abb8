//! The hand-written queries: what the proxy must answer exactly as one PostgreSQL does, and what it
//! must refuse with 0A000.

use super::compare::has_top_level_order_by;

/// What a query needs from the proxy, which decides where it runs under `DIFF_ONLY_BASIC=1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// Runs on one shard (a pinned key, a reference table alone): works today in both protocols.
    OneShard,
    /// A plain keyless (or multi-key) read of one sharded table, rows concatenated: works today
    /// through the simple protocol; the extended protocol needs the gather engine.
    Gather,
    /// Needs the gather engine (ORDER BY/LIMIT, aggregates, GROUP BY, DISTINCT, joins across shards).
    Engine,
    /// The proxy may refuse it with 0A000; if it answers, the answer must be exact.
    ExactOrRefused,
}

pub struct Query {
    pub sql: String,
    pub class: Class,
    /// Compared in order (the query orders its rows totally).
    pub ordered: bool,
    /// Where it came from, for reports: "hand" or "gen #n".
    pub origin: String,
}

impl Query {
    pub fn new(sql: impl Into<String>, class: Class, origin: impl Into<String>) -> Query {
        let sql = sql.into();
        Query {
            ordered: has_top_level_order_by(&sql),
            sql,
            class,
            origin: origin.into(),
        }
    }
}

const ONE_SHARD: &[&str] = &[
    "SELECT * FROM users WHERE id = 7",
    "SELECT * FROM users WHERE id = '7'",
    "SELECT name, city FROM users WHERE id = 12345678",
    "SELECT * FROM users WHERE id = -42",
    "SELECT id, name, score, ratio FROM users WHERE id = 9007199254740993",
    "SELECT id, amount FROM orders WHERE user_id = 7 ORDER BY id LIMIT 20",
    "SELECT id, amount, note FROM orders WHERE user_id = 7 ORDER BY note NULLS FIRST, id DESC LIMIT 30 OFFSET 5",
    "SELECT count(*), sum(amount), avg(qty), min(status), max(note) FROM orders WHERE user_id = 7",
    "SELECT status, count(*), sum(amount) FROM orders WHERE user_id = 7 GROUP BY status ORDER BY status",
    "SELECT DISTINCT status FROM orders WHERE user_id = 7 ORDER BY 1",
    "SELECT sum(o.qty), avg(o.amount) FROM orders o WHERE o.user_id = 7 AND o.amount > 0",
    "SELECT u.name, o.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 5 ORDER BY o.id",
    "SELECT u.id, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id = 3 GROUP BY u.id",
    "SELECT u.name, c.name, c.region FROM users u JOIN countries c ON c.code = u.country WHERE u.id = 10",
    "SELECT * FROM countries",
    "SELECT code, name FROM countries WHERE region = 'Europe' ORDER BY name",
    "SELECT region, count(*), min(code), max(name) FROM countries GROUP BY region ORDER BY region",
    "SELECT 1 AS one, 'ß'::text AS t, 2.50::numeric(5,2) AS n, NULL::int AS nothing",
];

const GATHER: &[&str] = &[
    "SELECT * FROM users",
    "SELECT * FROM orders",
    "SELECT id, name FROM users WHERE city = 'Paris'",
    "SELECT * FROM orders WHERE amount < 0",
    "SELECT * FROM orders WHERE amount = 0",
    "SELECT id, name FROM users WHERE id IN (1, 2, 3, 500, 1999, -42)",
    "SELECT id FROM users WHERE age IS NULL",
    "SELECT name, city FROM users WHERE name LIKE 'a%'",
    "SELECT id, name FROM users WHERE name ILIKE '%ß%' OR name LIKE ' %'",
    "SELECT * FROM orders WHERE status = 'paid' AND qty > 5",
    "SELECT id, created FROM users WHERE created > '2023-01-01'",
    "SELECT id, lower(name), length(name), age + 1 AS next FROM users WHERE active",
    "SELECT * FROM users WHERE false",
    "SELECT user_id, id, note FROM orders WHERE note IS NOT NULL AND user_id IN (7, 8, 9)",
    "SELECT * FROM orders WHERE user_id = ANY(ARRAY[7, 11, 13])",
    "SELECT id, ratio FROM users WHERE ratio BETWEEN 0.5 AND 2",
    "SELECT id, score FROM users WHERE score >= 0 AND NOT active",
    "SELECT u.id, u.country FROM users u WHERE u.country NOT IN ('FR', 'DE') OR u.country IS NULL",
];

const ENGINE: &[&str] = &[
    // ORDER BY, LIMIT, OFFSET
    "SELECT id, name FROM users ORDER BY id",
    "SELECT id, name FROM users ORDER BY id DESC LIMIT 10",
    "SELECT id, name, city FROM users ORDER BY city NULLS FIRST, name DESC, id",
    "SELECT id, name, city FROM users ORDER BY city DESC NULLS LAST, id LIMIT 25 OFFSET 10",
    "SELECT id, lower(name) FROM users ORDER BY lower(name), id LIMIT 30",
    "SELECT id, name AS n FROM users ORDER BY n, id LIMIT 50",
    "SELECT id, age, name FROM users ORDER BY 2 DESC NULLS FIRST, 1 LIMIT 40",
    "SELECT name FROM users ORDER BY id LIMIT 15",
    "SELECT name FROM users ORDER BY age NULLS FIRST, id DESC LIMIT 15",
    "SELECT id FROM users ORDER BY id LIMIT 10 OFFSET 100000",
    "SELECT id FROM users ORDER BY id LIMIT 0",
    "SELECT id, score FROM users ORDER BY score DESC NULLS LAST, id LIMIT ALL",
    "SELECT id, ratio FROM users ORDER BY ratio, id OFFSET 1990",
    "SELECT id, user_id, amount FROM orders ORDER BY amount, id LIMIT 100",
    "SELECT * FROM orders WHERE user_id IN (7, 8, 9, 10) ORDER BY user_id, id DESC",
    "SELECT id, created FROM users ORDER BY created DESC, id LIMIT 20",
    "SELECT id, name FROM users WHERE city IS NULL ORDER BY name COLLATE \"C\", id",
    "SELECT id, active FROM users ORDER BY active, id DESC LIMIT 7",
    "SELECT id, upper(status) AS s FROM orders ORDER BY s DESC, id LIMIT 12",
    "SELECT id, age * 2 AS a2 FROM users ORDER BY age * 2 NULLS FIRST, id LIMIT 33",
    "SELECT * FROM users ORDER BY id LIMIT 5 OFFSET 5",
    "SELECT id, name FROM users ORDER BY id FETCH FIRST 3 ROWS ONLY",
    "SELECT city, name, id FROM users ORDER BY city ASC NULLS LAST, name ASC, id DESC LIMIT 60",
    // aggregates
    "SELECT count(*) FROM users",
    "SELECT count(*) FROM orders",
    "SELECT count(*)::int, count(city)::bigint AS c FROM users",
    "SELECT city, count(*)::integer AS n FROM users GROUP BY city HAVING count(*)::int > 3 ORDER BY n DESC, city",
    "SELECT count(city), count(age), count(*) FROM users",
    "SELECT count(DISTINCT id) FROM users",
    "SELECT count(DISTINCT city), count(DISTINCT age), count(DISTINCT ratio) FROM users",
    "SELECT count(DISTINCT user_id), count(DISTINCT status) FROM orders",
    "SELECT sum(age), sum(score), sum(ratio) AS f_sum FROM users",
    "SELECT sum(qty), sum(amount), sum(id) FROM orders",
    "SELECT min(age), max(age), min(score), max(score), min(ratio) AS f_min, max(ratio) AS f_max FROM users",
    "SELECT avg(age), avg(score), avg(ratio) AS f_avg FROM users",
    "SELECT avg(qty), avg(amount), avg(user_id) FROM orders",
    "SELECT min(name), max(name), min(city), max(city) FROM users",
    "SELECT min(created), max(created) FROM users",
    "SELECT bool_and(active), bool_or(active), every(active) FROM users",
    "SELECT bool_and(age > 17), bool_or(city = 'Paris') FROM users",
    "SELECT count(*) FILTER (WHERE active), sum(age) FILTER (WHERE city IS NULL), avg(score) FILTER (WHERE age > 50) FROM users",
    "SELECT count(*), sum(qty), avg(amount), min(status), max(status) FROM orders WHERE false",
    "SELECT count(*), count(DISTINCT city), bool_and(active), max(created), sum(ratio) AS f_s FROM users WHERE id < -1000",
    "SELECT 'x' AS tag, now() IS NOT NULL, count(DISTINCT city) FILTER (WHERE active), count(*) FROM users WHERE id < -1000",
    "SELECT 'x' AS tag, count(DISTINCT city), count(DISTINCT age), sum(age) FROM users WHERE id < 40",
    "SELECT count(DISTINCT lower(city)) FROM users WHERE id < -1000 HAVING count(*) <= '5' OR min(name) > 'a'",
    "SELECT max(amount) FILTER (WHERE status = 'paid'), min(amount) FILTER (WHERE qty = 0) FROM orders",
    "SELECT count(*) FROM users WHERE name LIKE ' %'",
    "SELECT count(*) AS n, sum(amount) AS total FROM orders WHERE user_id = 7 OR amount < 0",
    "SELECT count(*) FROM orders WHERE user_id IN (7, 8, 9)",
    // GROUP BY, HAVING
    "SELECT city, count(*) FROM users GROUP BY city",
    "SELECT city, count(*) FROM users GROUP BY city ORDER BY city NULLS FIRST",
    "SELECT city, active, count(*), avg(age) FROM users GROUP BY city, active ORDER BY city, active",
    "SELECT lower(city) AS lc, count(*) FROM users GROUP BY lower(city) ORDER BY lc NULLS LAST",
    "SELECT age / 10 AS decade, count(*), min(name) FROM users GROUP BY 1 ORDER BY 1",
    "SELECT status, sum(amount), avg(qty), count(DISTINCT user_id) FROM orders GROUP BY status",
    "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > 100",
    "SELECT city, avg(score) FROM users GROUP BY city HAVING avg(score) > 0 AND count(*) >= 5",
    "SELECT city FROM users GROUP BY city HAVING max(age) > 80 OR city IS NULL",
    "SELECT country, count(*) FROM users GROUP BY country HAVING NOT (country = 'FR') ORDER BY country",
    "SELECT user_id, count(*) AS n FROM orders GROUP BY user_id ORDER BY n DESC, user_id LIMIT 10",
    "SELECT user_id, sum(amount) AS s FROM orders GROUP BY user_id ORDER BY s DESC, user_id LIMIT 5 OFFSET 2",
    "SELECT status, note, count(*) FROM orders GROUP BY status, note ORDER BY 3 DESC, 1, 2 NULLS FIRST LIMIT 15",
    "SELECT date_trunc('year', created) AS y, count(*), max(created) FROM users GROUP BY 1 ORDER BY 1",
    "SELECT active, sum(ratio) AS f_sum, avg(ratio) AS f_avg, count(ratio) FROM users GROUP BY active",
    "SELECT city, count(*) FILTER (WHERE active) AS act FROM users GROUP BY city HAVING count(*) FILTER (WHERE active) > 2 ORDER BY act DESC, city",
    "SELECT qty, count(*) FROM orders WHERE amount <= 0 GROUP BY qty ORDER BY qty",
    "SELECT city, count(*) FROM users WHERE false GROUP BY city",
    "SELECT id % 3 AS m, count(*), sum(age) FROM users GROUP BY id % 3 ORDER BY m",
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1 ORDER BY count(*) DESC, name",
    "SELECT country, min(created), max(score), bool_or(active) FROM users GROUP BY country",
    "SELECT id, count(*) FROM users GROUP BY id HAVING id < 10",
    "SELECT user_id, count(*) FROM orders WHERE user_id IN (7, 8, 9) GROUP BY user_id ORDER BY user_id",
    "SELECT count(*) FROM users HAVING count(*) > 5",
    "SELECT status FROM orders GROUP BY status HAVING sum(qty) < 5000 AND min(amount) < 0 ORDER BY status DESC",
    // DISTINCT
    "SELECT DISTINCT city FROM users",
    "SELECT DISTINCT city FROM users ORDER BY city NULLS FIRST",
    "SELECT DISTINCT status, qty FROM orders ORDER BY status DESC, qty",
    "SELECT DISTINCT lower(name) FROM users ORDER BY 1 LIMIT 20",
    "SELECT DISTINCT age FROM users ORDER BY age DESC NULLS LAST LIMIT 5 OFFSET 3",
    "SELECT DISTINCT active, country FROM users",
    "SELECT DISTINCT user_id FROM orders WHERE amount < 0 ORDER BY user_id",
    // colocated joins
    "SELECT u.id, u.name, o.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id",
    "SELECT u.name, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE o.amount > 4000",
    "SELECT u.id, count(o.id), sum(o.amount) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id ORDER BY u.id LIMIT 50",
    "SELECT u.city, count(*), sum(o.qty) FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.city ORDER BY u.city NULLS FIRST",
    "SELECT u.id, u.name, o.id AS oid FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.id IS NULL ORDER BY u.id",
    "SELECT count(*) FROM users u JOIN orders o ON o.user_id = u.id",
    "SELECT u.active, avg(o.amount), max(o.note) FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.active",
    "SELECT u.name, o.status FROM users u JOIN orders o ON u.id = o.user_id WHERE u.id IN (7, 9, 11) ORDER BY o.id",
    "SELECT DISTINCT u.country FROM users u JOIN orders o ON o.user_id = u.id ORDER BY 1 NULLS FIRST",
    "SELECT u.id, o.id FROM users u JOIN orders o ON o.user_id = u.id ORDER BY o.amount DESC, o.id LIMIT 10",
    "SELECT u.id, sum(o.amount) AS total FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.id HAVING sum(o.amount) > 10000 ORDER BY total DESC, u.id",
    "SELECT u.id, o.id, o.note FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.age > 85",
    // joins with the reference table
    "SELECT u.id, c.name FROM users u JOIN countries c ON c.code = u.country",
    "SELECT c.region, count(*) FROM users u JOIN countries c ON c.code = u.country GROUP BY c.region ORDER BY c.region",
    "SELECT c.name, count(u.id) FROM users u LEFT JOIN countries c ON c.code = u.country GROUP BY c.name ORDER BY c.name NULLS FIRST",
    "SELECT u.id, u.name, c.region FROM users u JOIN countries c ON c.code = u.country WHERE c.region = 'Europe' ORDER BY u.id LIMIT 30",
    "SELECT c.region, avg(u.age), count(DISTINCT u.city) FROM users u JOIN countries c ON c.code = u.country GROUP BY 1 HAVING count(*) > 10 ORDER BY 1",
    "SELECT c.code, sum(o.amount), count(DISTINCT u.id) FROM users u JOIN orders o ON o.user_id = u.id JOIN countries c ON c.code = u.country GROUP BY c.code ORDER BY c.code",
];

/// Queries a correct proxy may either answer exactly or refuse.
const EXACT_OR_REFUSED: &[&str] = &[
    // The reference table on the preserved side of an outer join: one copy per shard would repeat
    // every unmatched country.
    "SELECT c.code, u.id FROM countries c LEFT JOIN users u ON u.country = c.code",
    "SELECT c.code, count(u.id) FROM countries c LEFT JOIN users u ON u.country = c.code GROUP BY c.code ORDER BY c.code",
    "SELECT u.id, c.code FROM users u RIGHT JOIN countries c ON c.code = u.country",
    "SELECT u.id, c.code FROM users u FULL JOIN countries c ON c.code = u.country",
    "SELECT c.code FROM countries c WHERE EXISTS (SELECT 1 FROM users u WHERE u.country = c.code)",
    "SELECT c.code FROM countries c WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.country = c.code)",
    "SELECT DISTINCT ON (city) city, id FROM users ORDER BY city, id",
    "SELECT sum(DISTINCT qty), avg(DISTINCT qty) FROM orders",
    "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE amount > 4900)",
];

/// Queries the proxy must refuse with 0A000 (they need data from several shards combined in ways a
/// concatenation or a merge of partial aggregates cannot give).
pub const REFUSED: &[&str] = &[
    "SELECT id, row_number() OVER (ORDER BY id) FROM users",
    "SELECT id, rank() OVER (PARTITION BY city ORDER BY age) FROM users",
    "SELECT id, sum(amount) OVER () FROM orders",
    "SELECT u.id, o.id FROM users u JOIN orders o ON o.id = u.age",
    "SELECT count(*) FROM users u JOIN orders o ON o.user_id = u.age",
    "SELECT u1.id FROM users u1 JOIN users u2 ON u2.age = u1.id",
    "SELECT string_agg(name, ',') FROM users",
    "SELECT array_agg(id) FROM orders",
    "SELECT id FROM users UNION SELECT user_id FROM orders",
    "SELECT id FROM users UNION ALL SELECT id FROM users",
    "SELECT id FROM users EXCEPT SELECT user_id FROM orders",
    "SELECT id FROM users WHERE age > (SELECT avg(age) FROM users)",
    "SELECT id FROM users WHERE age IN (SELECT qty FROM orders)",
    "SELECT sum(qty) * 2 FROM orders",
    "SELECT count(*) + 1 FROM users",
    "SELECT city, sum(age) / count(*) FROM users GROUP BY city",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age) FROM users",
    "SELECT mode() WITHIN GROUP (ORDER BY city) FROM users",
    "WITH t AS (SELECT avg(age) AS a FROM users) SELECT count(*) FROM users, t WHERE age > t.a",
];

/// Every hand-written query the proxy must answer (or may refuse, for `ExactOrRefused`).
pub fn hand_written() -> Vec<Query> {
    let lists = [
        (ONE_SHARD, Class::OneShard),
        (GATHER, Class::Gather),
        (ENGINE, Class::Engine),
        (EXACT_OR_REFUSED, Class::ExactOrRefused),
    ];
    lists
        .iter()
        .flat_map(|(list, class)| list.iter().map(|sql| Query::new(*sql, *class, "hand")))
        .collect()
}
