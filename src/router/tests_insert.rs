//! Router tests: INSERT placement, split rendering, and statement splitting with spans.

use super::tests::{catalog, ints, keys, one, rejected, ring, unsupported};
use super::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fn split_of(sql: &str) -> SplitInsert {
    match one(sql).target {
        Target::Split(s) => s,
        other => panic!("{sql}: expected Split, got {other:?}"),
    }
}

#[test]
fn single_row_inserts_pin_their_key() {
    assert_eq!(
        keys("INSERT INTO users (id, name) VALUES (42, 'a')"),
        ints(&[42])
    );
    assert_eq!(
        keys("INSERT INTO users (name, ID) VALUES ('a', '42')"),
        ints(&[42])
    );
    assert_eq!(
        keys("INSERT INTO users (name, id) VALUES ('a', '42'::bigint) RETURNING *"),
        ints(&[42])
    );
    assert_eq!(keys("INSERT INTO users (id) VALUES (-7)"), ints(&[-7]));
    assert_eq!(
        keys("INSERT INTO users (id) VALUES (CAST('8' AS int))"),
        ints(&[8])
    );
    assert_eq!(keys("INSERT INTO users (id) VALUES (1), (1)"), ints(&[1]));
    assert_eq!(
        keys("insert into accounts (name) values ($$O'Neil$$)"),
        vec![Key::Text("O'Neil".into())]
    );
    assert_eq!(
        keys("INSERT INTO sales.items (order_id, n) VALUES (3, 1)"),
        ints(&[3])
    );
    let p = one(
        "INSERT INTO users (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n",
    );
    assert!(p.writes && !p.ddl && p.not_mergeable.is_none());
}

#[test]
fn unplaceable_inserts_are_refused() {
    unsupported(
        "INSERT INTO users VALUES (1, 'a')",
        "without a column list needs the key's position",
    );
    unsupported(
        "INSERT INTO users (name) VALUES ('a')",
        "shard key column id",
    );
    unsupported("INSERT INTO users (id) VALUES (NULL)", "NULL");
    unsupported("INSERT INTO users (id) VALUES (DEFAULT)", "constant");
    unsupported("INSERT INTO users (id) VALUES (nextval('s'))", "constant");
    unsupported("INSERT INTO users (id) VALUES (1 + 1)", "constant");
    // A parameter key is placed at Bind time (tests_params.rs).
    assert!(matches!(
        one("INSERT INTO users (id) VALUES ($1)").target,
        Target::Bound(_)
    ));
    unsupported("INSERT INTO users (id) VALUES ('abc')", "cannot be placed");
    unsupported(
        "INSERT INTO users (id) SELECT id FROM countries",
        "INSERT ... SELECT",
    );
    unsupported("INSERT INTO users DEFAULT VALUES", "DEFAULT VALUES");
    unsupported(
        "WITH x AS (SELECT 1) INSERT INTO users (id) VALUES (1)",
        "WITH",
    );
    unsupported("INSERT INTO events (id) VALUES (1)", "not known yet");
    unsupported(
        "INSERT INTO users (id, n) VALUES (1, (SELECT count(*) FROM orders))",
        "reads sharded table orders",
    );
    unsupported(
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
        "shard key",
    );
    assert_eq!(
        rejected("INSERT INTO users (id, c) VALUES (1, (SELECT x FROM nope))").sqlstate(),
        "42P01"
    );
    assert_eq!(
        keys("INSERT INTO users (id, c) VALUES (1, (SELECT code FROM countries LIMIT 1))"),
        ints(&[1])
    );
}

#[test]
fn key_position_is_used_without_a_column_list() {
    let mut cat = catalog();
    cat.set_key_info("users", None, Some(1));
    let p = plan("INSERT INTO users VALUES ('a', 5)", &cat);
    assert!(matches!(&p.statements[0].target, Target::Keys(k) if *k == ints(&[5])));
    cat.set_key_info("events", Some(crate::config::KeyType::Int), Some(0));
    let p = plan("INSERT INTO events VALUES (9)", &cat);
    assert!(matches!(&p.statements[0].target, Target::Keys(k) if *k == ints(&[9])));
}

#[test]
fn multi_row_inserts_split_and_render() {
    let sql = "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b''s'), (3, NULL) RETURNING id";
    let split = split_of(sql);
    assert_eq!(split.keys, ints(&[1, 2, 3]));
    assert_eq!(
        split.template.render(&[0, 1, 2]),
        "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b''s'), (3, NULL) RETURNING id"
    );
    assert_eq!(
        split.template.render(&[2, 0]),
        "INSERT INTO users (id, name) VALUES (3, NULL), (1, 'a') RETURNING id"
    );
    assert_eq!(
        split.template.render(&[1]),
        "INSERT INTO users (id, name) VALUES (2, 'b''s') RETURNING id"
    );
}

#[test]
fn rendered_rows_keep_every_literal_as_written() {
    let rows = [
        "(1, 'plain')",
        "(-2, 'it''s')",
        "('3'::bigint, E'esc\\'aped\\n')",
        "(CAST('4' AS int8), $$dollar ' \" ; $$)",
        "(5, $tag$with $$ inside$tag$)",
        "(6, ARRAY[1, -2, 3])",
        "(7, true)",
        "(8, NULL)",
        "(9, '{\"json\": [1, 2]}'::jsonb)",
        "(10, 'ünïcödé ✓ 日本')",
        "(11, -1.5e3)",
        "(12, U&'d\\0061t\\+000061')",
    ];
    let sql = format!(
        "INSERT INTO users (id, v)\n  VALUES {} ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v RETURNING id, v",
        rows.join(",\n   ")
    );
    let split = split_of(&sql);
    assert_eq!(split.keys, ints(&[1, -2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    let all: Vec<usize> = (0..rows.len()).collect();
    let original = Parser::parse_sql(&PostgreSqlDialect {}, &sql).unwrap();
    let rendered = Parser::parse_sql(&PostgreSqlDialect {}, &split.template.render(&all)).unwrap();
    assert_eq!(original, rendered);
    for (i, row) in rows.iter().enumerate() {
        let text = split.template.render(&[i]);
        assert!(text.contains(row), "{text} lacks {row}");
        assert!(text.ends_with("ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v RETURNING id, v"));
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &text).unwrap();
        let single = format!("INSERT INTO users (id, v)\n  VALUES {row} ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v RETURNING id, v");
        assert_eq!(
            parsed,
            Parser::parse_sql(&PostgreSqlDialect {}, &single).unwrap()
        );
    }
}

#[test]
fn split_routes_group_rows_by_shard_in_order() {
    let ring = ring();
    let ids: Vec<i64> = (1..=20).collect();
    let values: Vec<String> = ids.iter().map(|i| format!("({i}, 'n{i}')")).collect();
    let sql = format!("INSERT INTO users (id, name) VALUES {}", values.join(", "));
    let p = one(&sql);
    let Route::Split(parts) = route(&p, &ring).unwrap() else {
        panic!()
    };
    assert!(parts.len() > 1);
    assert!(parts.windows(2).all(|w| w[0].0 < w[1].0));
    let mut seen = 0;
    for (shard, text) in &parts {
        let mine: Vec<String> = ids
            .iter()
            .filter(|&&i| ring.shard_for_key(&Key::Int(i)) == *shard)
            .map(|i| format!("({i}, 'n{i}')"))
            .collect();
        seen += mine.len();
        assert_eq!(
            *text,
            format!("INSERT INTO users (id, name) VALUES {}", mine.join(", "))
        );
    }
    assert_eq!(seen, ids.len());
}

#[test]
fn statements_split_with_exact_spans() {
    let cat = catalog();
    let sql = "SELECT 1; SELECT ';' AS x ; -- c;\n SELECT $$;$$ /* ; */;;\n\n  SELECT \"a;b\" FROM users WHERE id = 1  ;  ";
    let p = plan(sql, &cat);
    let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        texts,
        [
            "SELECT 1",
            "SELECT ';' AS x",
            "-- c;\n SELECT $$;$$ /* ; */",
            "SELECT \"a;b\" FROM users WHERE id = 1"
        ]
    );
    assert!(matches!(p.statements[3].target, Target::Keys(_)));
    assert!(plan("", &cat).statements.is_empty());
    assert!(plan("  ;; ; -- nothing\n", &cat).statements.is_empty());
    let sql =
        "SELECT 'ünï;cødé' AS ä; INSERT INTO accounts (name) VALUES ('日本'), ('ß') ; SELECT 2";
    let p = plan(sql, &cat);
    let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        texts,
        [
            "SELECT 'ünï;cødé' AS ä",
            "INSERT INTO accounts (name) VALUES ('日本'), ('ß')",
            "SELECT 2"
        ]
    );
    let Target::Split(split) = &p.statements[1].target else {
        panic!()
    };
    assert_eq!(
        split.template.render(&[1]),
        "INSERT INTO accounts (name) VALUES ('ß')"
    );
    // Unterminated quotes: the rest is one statement, PostgreSQL reports it.
    let sql = "SELECT 1; SELECT 'oops; SELECT 2";
    let p = plan(sql, &cat);
    assert_eq!(p.statements.len(), 2);
    assert_eq!(&sql[p.statements[1].span.clone()], "SELECT 'oops; SELECT 2");
    assert!(matches!(p.statements[1].target, Target::Any));
    // COPY FROM STDIN data is not part of a wire-protocol query: what follows is SQL.
    let sql = "COPY nope FROM STDIN; SELECT * FROM users WHERE id = 1;\nSELECT 2";
    let p = plan(sql, &cat);
    let texts: Vec<&str> = p.statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        texts,
        [
            "COPY nope FROM STDIN",
            "SELECT * FROM users WHERE id = 1",
            "SELECT 2"
        ]
    );
}

#[test]
fn unparsable_statements() {
    let e = rejected("SELECT * FROM users WHERE id = = 1");
    assert_eq!(e.sqlstate(), "42601");
    assert!(e.to_string().contains("could not parse"), "{e}");
    let e = rejected("SELEC * FROM Users");
    assert_eq!(e.sqlstate(), "42601");
    assert!(matches!(one("SELEC 1").target, Target::Any));
    assert!(matches!(one("SELECT 'unterminated").target, Target::Any));
}
