//! One differential run: which queries run through which protocols, both sides' answers to each,
//! what went wrong, and the report.

use super::compare::{compare, compare_with, Answer, Proto, Side};
use super::queries::{Class, Query};

pub struct Settings {
    pub seed: u64,
    pub queries: usize,
    pub basic: bool,
    filter: Option<String>,
    show: usize,
}

impl Settings {
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| {
            var(name).map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
        };
        Settings {
            seed: number("DIFF_SEED").unwrap_or_else(rand::random),
            queries: number("DIFF_QUERIES").map_or(300, |n| n as usize),
            basic: var("DIFF_ONLY_BASIC").is_some_and(|v| v != "0"),
            filter: var("DIFF_FILTER"),
            show: number("DIFF_SHOW").map_or(20, |n| n as usize),
        }
    }

    /// False when `DIFF_FILTER` leaves the query out.
    fn wanted(&self, sql: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| sql.contains(f.as_str()))
    }

    /// Through which protocols `q` runs, or none when it is left out of this run.
    fn protocols(&self, q: &Query) -> &'static [Proto] {
        if !self.wanted(&q.sql) {
            return &[];
        }
        match (self.basic, q.class) {
            (true, Class::Engine | Class::ExactOrRefused) => &[],
            (true, Class::Gather) => &[Proto::Simple],
            _ => &[Proto::Simple, Proto::Extended],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    /// The unsharded database failed, or the two unsharded copies disagree (an ORDER BY that is
    /// not total, a float aggregate not named `f_`): a bug in the query list or the generator.
    Invalid,
    /// The proxy answered, differently.
    Wrong,
    /// The proxy's connection did not work after an error.
    Broken,
    /// A query of the refused list was not refused with 0A000.
    NotRefused,
    /// The proxy failed with something other than 0A000.
    ProxyError,
    /// The proxy refused (0A000) a query the unsharded database answered.
    Refused,
}

struct Problem {
    kind: Kind,
    origin: String,
    sql: String,
    proto: Proto,
    detail: String,
}

/// Outcomes of one run.
pub struct Run {
    pub settings: Settings,
    plain: Side,
    control: Side,
    sharded: Side,
    problems: Vec<Problem>,
    compared: usize,
    agreed: usize,
    refused_ok: usize,
    refused_total: usize,
    may_refuse_refused: usize,
    /// Queries whose unsharded answer has no rows (a measure of how selective the generator is).
    empty: usize,
}

impl Run {
    /// `plain`: the unsharded database; `control`: its copy loaded in reverse; `sharded`: the proxy.
    pub fn new(settings: Settings, plain: Side, control: Side, sharded: Side) -> Run {
        Run {
            settings,
            plain,
            control,
            sharded,
            problems: Vec::new(),
            compared: 0,
            agreed: 0,
            refused_ok: 0,
            refused_total: 0,
            may_refuse_refused: 0,
            empty: 0,
        }
    }

    fn problem(&mut self, kind: Kind, q: &Query, proto: Proto, detail: String) {
        self.problems.push(Problem {
            kind,
            origin: q.origin.clone(),
            sql: q.sql.clone(),
            proto,
            detail,
        });
    }

    /// After a proxy error: the same connection must still answer.
    async fn still_usable(&mut self, q: &Query, proto: Proto) {
        if !self.sharded.usable().await {
            self.problem(
                Kind::Broken,
                q,
                proto,
                "the proxy connection stopped answering after the error".into(),
            );
            self.sharded.reconnect().await;
        }
    }

    /// Both sides' answers to `q` through `proto`; `None` (with the problem noted) when either failed.
    async fn answers(&mut self, q: &Query, proto: Proto) -> Option<(Answer, Answer)> {
        let expected = match self.plain.run(proto, &q.sql).await {
            Ok(a) => a,
            Err(e) => {
                self.problem(Kind::Invalid, q, proto, format!("unsharded: {e}"));
                if !self.plain.usable().await {
                    self.plain.reconnect().await;
                }
                return None;
            }
        };
        if proto == Proto::Simple {
            if expected.rows.is_empty() {
                self.empty += 1;
            }
            match self.control.run(proto, &q.sql).await {
                Ok(control) => {
                    if let Err(diff) = compare_with(&expected, &control, q.ordered, "control") {
                        let detail = format!("the two unsharded copies disagree: {diff}");
                        self.problem(Kind::Invalid, q, proto, detail);
                    }
                }
                Err(e) => self.problem(Kind::Invalid, q, proto, format!("control: {e}")),
            }
        }
        match self.sharded.run(proto, &q.sql).await {
            Ok(actual) => Some((expected, actual)),
            Err(e) if e.code == "0A000" && q.class == Class::ExactOrRefused => {
                self.may_refuse_refused += 1;
                self.still_usable(q, proto).await;
                None
            }
            Err(e) => {
                let kind = if e.code == "0A000" {
                    Kind::Refused
                } else {
                    Kind::ProxyError
                };
                self.problem(kind, q, proto, format!("proxy: {e}"));
                self.still_usable(q, proto).await;
                None
            }
        }
    }

    pub async fn check(&mut self, q: &Query) {
        let protocols = self.settings.protocols(q);
        if protocols.is_empty() {
            return;
        }
        self.compared += 1;
        let before = self.problems.len();
        for &proto in protocols {
            // Through the simple protocol each query runs twice: the first statement of a shape
            // is planned as itself (and makes the shape's plan), later ones of the shape run by
            // the shape's plan, gathers included (session/shape_gather.rs).
            let runs = if proto == Proto::Simple { 2 } else { 1 };
            for _ in 0..runs {
                if let Some((expected, actual)) = self.answers(q, proto).await {
                    if let Err(diff) = compare(&expected, &actual, q.ordered) {
                        self.problem(Kind::Wrong, q, proto, diff);
                    }
                }
            }
        }
        if self.problems.len() == before {
            self.agreed += 1;
        }
    }

    /// A query of the refused list: valid SQL (the unsharded database answers), refused by the
    /// proxy with 0A000 and a message, through both protocols, leaving the connection usable.
    pub async fn check_refused(&mut self, sql: &str) {
        let q = Query::new(sql, Class::Engine, "refused");
        if !self.settings.wanted(sql) {
            return;
        }
        self.refused_total += 1;
        let before = self.problems.len();
        for proto in [Proto::Simple, Proto::Extended] {
            if let Err(e) = self.plain.run(proto, sql).await {
                self.problem(Kind::Invalid, &q, proto, format!("unsharded: {e}"));
                continue;
            }
            match self.sharded.run(proto, sql).await {
                Err(e) if e.code == "0A000" && !e.message.trim().is_empty() => {}
                Err(e) => self.problem(Kind::NotRefused, &q, proto, format!("proxy: {e}")),
                Ok(a) => {
                    let detail = format!("proxy answered: {}", a.abridged(false));
                    self.problem(Kind::NotRefused, &q, proto, detail);
                    continue;
                }
            }
            self.still_usable(&q, proto).await;
        }
        if self.problems.len() == before {
            self.refused_ok += 1;
        }
    }

    /// How many queries had a problem of this kind (through either protocol).
    fn count(&self, kind: Kind) -> usize {
        let sqls: std::collections::HashSet<&str> = (self.problems.iter())
            .filter(|p| p.kind == kind)
            .map(|p| p.sql.as_str())
            .collect();
        sqls.len()
    }

    /// The summary lines, and the first failures when there are any.
    pub fn report(&mut self) -> Result<String, String> {
        let seed = self.settings.seed;
        let summary = format!(
            "differential: {} queries compared, {} refused as expected (of {}); {} agree, {} wrong results, \
             {} refused with 0A000, {} other proxy errors, {} broken connections, {} not refused, \
             {} invalid queries, {} accepted refusals of may-refuse queries, {} empty answers; seed = {seed}",
            self.compared,
            self.refused_ok,
            self.refused_total,
            self.agreed,
            self.count(Kind::Wrong),
            self.count(Kind::Refused),
            self.count(Kind::ProxyError),
            self.count(Kind::Broken),
            self.count(Kind::NotRefused),
            self.count(Kind::Invalid),
            self.may_refuse_refused,
            self.empty,
        );
        if self.problems.is_empty() {
            return Ok(summary);
        }
        // Most telling first: generator bugs, wrong answers, broken connections; refusals last.
        self.problems.sort_by_key(|p| p.kind);
        let shown: Vec<String> = (self.problems.iter().take(self.settings.show))
            .map(|p| {
                format!(
                    "- {:?} [{}, {:?} protocol, seed {seed}]\n    {}\n    {}",
                    p.kind, p.origin, p.proto, p.sql, p.detail
                )
            })
            .collect();
        Err(format!(
            "{summary}\n{} problems (a query may have one per protocol); the first {}:\n{}\nreplay: DIFF_SEED={seed} cargo test --release --test differential",
            self.problems.len(),
            shown.len(),
            shown.join("\n")
        ))
    }
}
