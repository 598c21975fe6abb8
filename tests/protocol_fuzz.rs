//! Malformed and out-of-place protocol messages from a client: the proxy answers each with an
//! error and stays usable, or ends that one connection with an error; it never panics, never
//! hangs, and leaves no server connection in a transaction. Seeded (`FUZZ_SEED`, `FUZZ_CASES`).

mod support;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore, SeedableRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::proxy::{eventually, raw_login, value, Proxy};
use support::Shards;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TABLES: &str = r#"
[[tables]]
name = "users"
shard_key = "id"
"#;

const STATEMENTS: &[&str] = &[
    "SELECT id, name FROM users WHERE id = $1",
    "SELECT count(*) FROM users",
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > $1 ORDER BY 1",
    "SELECT id FROM users WHERE id = ANY($1) ORDER BY id LIMIT $2",
    "SELECT $1::text",
    "BEGIN",
    "COMMIT",
    "SET application_name = 'fuzz'",
    "SELECT id FROM users ORDER BY id",
    "",
];

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A well-formed message of a random kind, as a driver would send it.
fn message(rng: &mut StdRng) -> (u8, Vec<u8>) {
    let sql = *STATEMENTS.choose(rng).unwrap();
    let name = *["", "s1", "s2"].choose(rng).unwrap();
    let mut b = Vec::new();
    let tag = *b"PPBBDEECHSQ".choose(rng).unwrap();
    match tag {
        b'P' => {
            cstr(&mut b, name);
            cstr(&mut b, sql);
            // Parameter types only where there are parameters: the proxy answers BEGIN, COMMIT
            // and SET itself, without checking declared types as PostgreSQL does (42P18 for an
            // undetermined one, 42704 for an unknown one).
            let n = if sql.contains('$') {
                rng.random_range(0..3i16)
            } else {
                0
            };
            b.extend_from_slice(&n.to_be_bytes());
            for _ in 0..n {
                let oid = *[0i32, 20, 23, 25, 1016, 99999].choose(rng).unwrap();
                b.extend_from_slice(&oid.to_be_bytes());
            }
        }
        b'B' => {
            cstr(&mut b, "");
            cstr(&mut b, name);
            let formats = rng.random_range(0..3i16);
            b.extend_from_slice(&formats.to_be_bytes());
            for _ in 0..formats {
                b.extend_from_slice(&rng.random_range(0..2i16).to_be_bytes());
            }
            let n = rng.random_range(0..3i16);
            b.extend_from_slice(&n.to_be_bytes());
            for _ in 0..n {
                match rng.random_range(0..4) {
                    0 => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    1 => {
                        b.extend_from_slice(&8i32.to_be_bytes());
                        b.extend_from_slice(&rng.random_range(-5..50i64).to_be_bytes());
                    }
                    2 => {
                        let v = rng.random_range(0..50).to_string();
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v.as_bytes());
                    }
                    _ => {
                        let mut v = vec![0u8; rng.random_range(0..12)];
                        rng.fill_bytes(&mut v);
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(&v);
                    }
                }
            }
            let results = rng.random_range(0..2i16);
            b.extend_from_slice(&results.to_be_bytes());
            for _ in 0..results {
                b.extend_from_slice(&rng.random_range(0..2i16).to_be_bytes());
            }
        }
        b'D' | b'C' => {
            b.push(*b"SP".choose(rng).unwrap());
            cstr(&mut b, name);
        }
        b'E' => {
            cstr(&mut b, "");
            b.extend_from_slice(&rng.random_range(0..3i32).to_be_bytes());
        }
        b'Q' => cstr(&mut b, &sql.replace("$1", "7").replace("$2", "3")),
        _ => {} // Flush, Sync
    }
    (tag, b)
}

/// A well-formed Bind of the unnamed portal for a statement the proxy gathers from every
/// shard, with values of the right types. The shards check a gathered statement's values when
/// it runs, so a value PostgreSQL refuses at Bind is refused at Execute through the proxy
/// (after BindComplete); the fuzz leaves such Binds alone.
fn gathered_bind(statement: &[u8], sql: &str) -> Option<Vec<u8>> {
    let values: &[&str] = match sql {
        "SELECT count(*) FROM users" | "SELECT id FROM users ORDER BY id" => &[],
        s if s.contains("HAVING count(*) > $1") => &["2"],
        s if s.contains("ANY($1)") => &["{1,2,3,17}", "2"],
        _ => return None,
    };
    let mut b = vec![0u8];
    b.extend_from_slice(statement);
    b.push(0);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    Some(b)
}

/// Spoils a message's body: cut short, a byte changed, a count or length made extreme, junk
/// appended; or a message of a kind a client does not send.
/// SQL text is left alone (but for cutting it short): changed, it would be other SQL, which
/// the proxy may rightly refuse across shards where PostgreSQL answers.
fn spoil(rng: &mut StdRng, (tag, mut body): (u8, Vec<u8>)) -> (u8, Vec<u8>) {
    let text_end = |b: &[u8], skip: usize| {
        (b.iter().enumerate().filter(|(_, c)| **c == 0).nth(skip)).map_or(b.len(), |(i, _)| i)
    };
    let free = match tag {
        b'Q' => text_end(&body, 0),
        b'P' => text_end(&body, 1),
        _ => 0,
    };
    match rng.random_range(0..6) {
        0 => {
            let cut = rng.random_range(0..=body.len());
            body.truncate(cut);
        }
        1 if body.len() > free => {
            let i = rng.random_range(free..body.len());
            body[i] = rng.random();
        }
        2 if body.len() >= free + 4 => {
            let i = rng.random_range(free..=body.len() - 4);
            let v = *[i32::MAX, -2, 0x7fff_0000, 0x0000_7fff, -1]
                .choose(rng)
                .unwrap();
            body[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        3 => {
            let mut junk = vec![0u8; rng.random_range(1..16)];
            rng.fill_bytes(&mut junk);
            body.extend_from_slice(&junk);
        }
        4 => {
            // Copy messages outside COPY, a password message.
            let tag = *b"dcfp".choose(rng).unwrap();
            return (tag, body);
        }
        _ => {
            let tag = rng.random_range(b'a'..=b'z');
            return (tag, body);
        }
    }
    (tag, body)
}

fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

/// What came back: the kinds of replies in order (a run of rows as one `D`, an error as its
/// SQLSTATE, notices and parameter reports left out), and whether the connection lived.
#[derive(Debug, PartialEq)]
struct Replies {
    kinds: Vec<String>,
    /// The probe `SELECT 42` after the messages (and a ROLLBACK) answered 42.
    usable: bool,
}

/// Reads the replies up to the probe's answer or the end of the connection. Every
/// ErrorResponse must carry a SQLSTATE.
async fn replies(s: &mut TcpStream, terminated: bool) -> Result<Replies, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut kinds: Vec<String> = Vec::new();
    let mut answered = false;
    loop {
        while buf.len() >= 5 {
            let len = i32::from_be_bytes(buf[1..5].try_into().unwrap());
            if len < 4 {
                return Err(format!("a reply with length {len}"));
            }
            let total = 1 + len as usize;
            if buf.len() < total {
                break;
            }
            let (tag, body) = (buf[0], buf[5..total].to_vec());
            buf.drain(..total);
            match tag {
                b'E' => {
                    let code = (body.split(|b| *b == 0))
                        .find(|f| f.first() == Some(&b'C'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                    let Some(code) = code.filter(|c| c.len() == 5) else {
                        return Err(format!("an error without SQLSTATE: {body:?}"));
                    };
                    kinds.push(code);
                }
                b'N' | b'S' => {}
                b'D' if body == [0, 1, 0, 0, 0, 2, b'4', b'2'] => answered = true,
                b'D' if kinds.last().is_some_and(|k| k == "D") => {}
                b'Z' if answered => {
                    kinds.push("Z".into());
                    return Ok(Replies {
                        kinds,
                        usable: true,
                    });
                }
                _ => kinds.push((tag as char).to_string()),
            }
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            if !terminated && !kinds.iter().any(|k| k.len() == 5) {
                return Err(format!("closed without an error after {kinds:?}"));
            }
            return Ok(Replies {
                kinds,
                usable: false,
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_not_panics_or_hangs() {
    let panics = Arc::new(AtomicUsize::new(0));
    let default = std::panic::take_hook();
    let counted = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));

    // Two shards behind the proxy, and a third database, unsharded, with the same rows.
    let shards = Shards::start(3).await;
    let urls = shards.urls();
    let proxy = Proxy::start_with(&urls[..2], "pool_size = 4", TABLES).await;
    let c = proxy.client().await;
    let direct = shards.client(2).await;
    let rows: Vec<String> = (1..=40).map(|i| format!("({i}, 'n{}')", i % 5)).collect();
    let insert = format!("INSERT INTO users (id, name) VALUES {}", rows.join(", "));
    for db in [&c, &direct] {
        let create = "CREATE TABLE users (id bigint PRIMARY KEY, name text)";
        db.batch_execute(create).await.unwrap();
        db.batch_execute(&insert).await.unwrap();
    }
    // postgres://postgres@127.0.0.1:PORT/DB
    let (host, db) = urls[2]
        .trim_start_matches("postgres://postgres@")
        .split_once('/')
        .unwrap();
    let (host, db): (SocketAddr, String) = (host.parse().unwrap(), db.to_string());

    let seed: u64 = std::env::var("FUZZ_SEED").map_or(7, |s| s.parse().unwrap());
    let cases: usize = std::env::var("FUZZ_CASES").map_or(400, |s| s.parse().unwrap());
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut usable, mut closed) = (0, 0);
    let mut s = raw_login(proxy.addr, "app").await;
    let mut d = raw_login(host, &db).await;
    for case in 0..cases {
        let mut out = Vec::new();
        let mut sent = Vec::new();
        // One Parse per statement name a case: PostgreSQL refuses a second one (42P05), where
        // the proxy lets it replace the first (the proxy cannot tell which Parses PostgreSQL
        // skipped after an error, so it cannot mirror the refusal safely).
        let mut named = Vec::new();
        // The statements parsed so far in this case, by name (the probe ends the others).
        let mut parsed: Vec<(Vec<u8>, String)> = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let mut m = message(&mut rng);
            let cstr_at = |b: &[u8], at: usize| {
                let end = at + b[at..].iter().position(|c| *c == 0).unwrap();
                (b[at..end].to_vec(), end + 1)
            };
            if m.0 == b'P' && m.1[0] != 0 {
                let name = cstr_at(&m.1, 0).0;
                if named.contains(&name) {
                    m.1.drain(..name.len());
                } else {
                    named.push(name);
                }
            }
            let mut spoilable = true;
            match m.0 {
                b'P' => {
                    let (name, at) = cstr_at(&m.1, 0);
                    let sql = String::from_utf8(cstr_at(&m.1, at).0).unwrap();
                    parsed.retain(|(n, _)| *n != name);
                    parsed.push((name, sql));
                }
                b'B' => {
                    let (_, at) = cstr_at(&m.1, 0);
                    let name = cstr_at(&m.1, at).0;
                    let sql = parsed.iter().find(|(n, _)| *n == name).map(|(_, q)| q);
                    if let Some(body) = sql.and_then(|q| gathered_bind(&name, q)) {
                        m.1 = body;
                        spoilable = false;
                    }
                }
                _ => {}
            }
            let (tag, body) = if spoilable && rng.random_bool(0.5) {
                spoil(&mut rng, m)
            } else {
                m
            };
            frame(&mut out, tag, &body);
            sent.push((tag as char, body));
        }
        let terminated = sent.iter().any(|(t, _)| *t == 'X');
        // The probe: the named statements closed, out of any transaction the messages began
        // (or aborted), then a query.
        frame(&mut out, b'S', &[]);
        frame(&mut out, b'C', b"Ss1\0");
        frame(&mut out, b'C', b"Ss2\0");
        frame(&mut out, b'S', &[]);
        frame(&mut out, b'Q', b"ROLLBACK\0");
        frame(&mut out, b'Q', b"SELECT 42\0");
        let what = format!("seed {seed} case {case}: {sent:?}");
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("{what}");
        }
        let limit = Duration::from_secs(20);
        s.write_all(&out).await.unwrap();
        let got = match tokio::time::timeout(limit, replies(&mut s, terminated)).await {
            Err(_) => panic!("{what}: no answer in 20 s"),
            Ok(Err(e)) => panic!("{what}: {e}"),
            Ok(Ok(r)) => r,
        };
        assert_eq!(
            panics.load(Ordering::SeqCst),
            0,
            "{what}: the proxy panicked"
        );
        d.write_all(&out).await.unwrap();
        let want = tokio::time::timeout(limit, replies(&mut d, terminated)).await;
        let want = want.unwrap_or_else(|_| panic!("{what}: PostgreSQL did not answer"));
        let mut want = want.unwrap_or_else(|e| panic!("{what}: PostgreSQL: {e}"));
        // In a failed transaction the proxy refuses a message at once (25P02), where
        // PostgreSQL first looks up the statement or portal it names (26000, 34000).
        for (w, g) in want.kinds.iter_mut().zip(&got.kinds) {
            if g == "25P02" && (w == "26000" || w == "34000") {
                *w = g.clone();
            }
        }
        assert_eq!(got, want, "{what}: through the proxy, and from PostgreSQL");
        if got.usable {
            usable += 1;
        } else {
            closed += 1;
            s = raw_login(proxy.addr, "app").await;
            d = raw_login(host, &db).await;
        }
    }
    drop(s);
    eprintln!("{cases} cases: {usable} left the connection usable, {closed} ended it");
    // Both outcomes occur, so the messages reached past the framing checks.
    assert!(
        usable > cases / 4 && closed > 0,
        "{usable} usable, {closed} closed"
    );

    // The proxy serves a new client, and no server connection was left inside a transaction.
    assert_eq!(value(&c, "SELECT count(*) FROM users").await, "40");
    // Connections the proxy dropped may take a moment to end on their shards.
    let stuck = "SELECT count(*) FROM pg_stat_activity
                 WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()";
    let clean = eventually(10, || async {
        shards.scalar_each(stuck).await == [0, 0, 0]
    })
    .await;
    assert!(clean, "{stuck}: {:?}", shards.scalar_each(stuck).await);
}
