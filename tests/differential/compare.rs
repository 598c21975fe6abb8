//! Running one query on one side through either protocol, and comparing two sides' answers.
//!
//! Values compare byte for byte (text through the simple protocol, binary through the extended one),
//! except in columns named `f_...`: float aggregates, whose last bits legitimately depend on the order
//! of summation; those compare as floats with a relative tolerance of 1e-9.

use std::cmp::Ordering;
use std::time::Duration;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// How long one statement may take on one side before it counts as hung.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Relative tolerance for `f_` columns.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// Any column, undecoded: the bytes the server sent (`None` = NULL).
pub struct Raw(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    /// `simple_query`: text values and column names.
    Simple,
    /// Parse/Describe, then Bind/Execute with binary results: values, names and type OIDs.
    Extended,
}

/// One side's answer to one query.
#[derive(Debug, Clone)]
pub struct Answer {
    pub proto: Proto,
    /// Column names, with their type OIDs through the extended protocol.
    pub columns: Vec<(String, Option<u32>)>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// The row count of the command tag (`SELECT n`), through the simple protocol.
    pub tag: Option<u64>,
}

/// An error answer: the SQLSTATE (or `client`/`timeout` when there was none) and the message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Failure {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => Failure {
                code: "client".into(),
                message: e.to_string(),
            },
        }
    }
}

/// One side of the comparison: a connection that can be reopened after it broke.
pub struct Side {
    url: String,
    client: Client,
}

impl Side {
    pub async fn connect(url: String) -> Side {
        let client = Self::open(&url).await;
        Side { url, client }
    }

    async fn open(url: &str) -> Client {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn reconnect(&mut self) {
        self.client = Self::open(&self.url).await;
    }

    /// True when the connection still answers a trivial query.
    pub async fn usable(&self) -> bool {
        let ping = tokio::time::timeout(
            Duration::from_secs(10),
            self.client.simple_query("SELECT 1"),
        );
        matches!(ping.await, Ok(Ok(_)))
    }

    pub async fn run(&self, proto: Proto, sql: &str) -> Result<Answer, Failure> {
        let answer = match proto {
            Proto::Simple => tokio::time::timeout(STATEMENT_TIMEOUT, self.simple(sql)).await,
            Proto::Extended => tokio::time::timeout(STATEMENT_TIMEOUT, self.extended(sql)).await,
        };
        answer.unwrap_or_else(|_| {
            Err(Failure {
                code: "timeout".into(),
                message: format!("no answer within {STATEMENT_TIMEOUT:?}"),
            })
        })
    }

    async fn simple(&self, sql: &str) -> Result<Answer, Failure> {
        let mut answer = Answer {
            proto: Proto::Simple,
            columns: Vec::new(),
            rows: Vec::new(),
            tag: None,
        };
        for msg in self.client.simple_query(sql).await? {
            match msg {
                SimpleQueryMessage::RowDescription(cols) => {
                    answer.columns = cols.iter().map(|c| (c.name().to_owned(), None)).collect();
                }
                SimpleQueryMessage::Row(row) => answer.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(|s| s.as_bytes().to_vec()))
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(n) => answer.tag = Some(n),
                _ => {}
            }
        }
        Ok(answer)
    }

    async fn extended(&self, sql: &str) -> Result<Answer, Failure> {
        let stmt = self.client.prepare(sql).await?;
        let rows = self.client.query(&stmt, &[]).await?;
        let columns = (stmt.columns().iter())
            .map(|c| (c.name().to_owned(), Some(c.type_().oid())))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                cells.push(row.try_get::<_, Raw>(i)?.0);
            }
            out.push(cells);
        }
        Ok(Answer {
            proto: Proto::Extended,
            columns,
            rows: out,
            tag: None,
        })
    }
}

/// True when the statement has an ORDER BY of its own (not one inside parentheses, such as a
/// window's or an ordered aggregate's), so its rows compare in order.
pub fn has_top_level_order_by(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let (mut depth, mut quoted) = (0i32, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b'O' if !quoted && depth == 0 && upper[i..].starts_with("ORDER BY") => {
                let before = i.checked_sub(1).map(|j| bytes[j]);
                if before.is_none_or(|c| !c.is_ascii_alphanumeric() && c != b'_') {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn is_float_column(name: &str) -> bool {
    name.starts_with("f_")
}

impl Answer {
    /// The value of a cell of an `f_` column as a float, when it is one.
    fn float(&self, col: usize, v: &[u8]) -> Option<f64> {
        if !is_float_column(&self.columns[col].0) {
            return None;
        }
        match (self.proto, self.columns[col].1) {
            (Proto::Simple, _) => std::str::from_utf8(v).ok()?.parse().ok(),
            (Proto::Extended, Some(701)) => Some(f64::from_be_bytes(v.try_into().ok()?)),
            (Proto::Extended, Some(700)) => Some(f64::from(f32::from_be_bytes(v.try_into().ok()?))),
            _ => None,
        }
    }

    fn cell_cmp(&self, col: usize, a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> Ordering {
        if let (Some(x), Some(y)) = (a, b) {
            if let (Some(x), Some(y)) = (self.float(col, x), self.float(col, y)) {
                return x.total_cmp(&y);
            }
        }
        a.cmp(b)
    }

    /// Orders rows by their exact columns first and their float columns last, so float noise
    /// cannot reorder rows that an exact column already tells apart.
    fn sorted(&self) -> Vec<&Vec<Option<Vec<u8>>>> {
        let n = self.columns.len();
        let order: Vec<usize> = (0..n)
            .filter(|i| !is_float_column(&self.columns[*i].0))
            .chain((0..n).filter(|i| is_float_column(&self.columns[*i].0)))
            .collect();
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| {
            (order.iter())
                .map(|&i| self.cell_cmp(i, &a[i], &b[i]))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        rows
    }

    fn show_cell(&self, col: usize, v: &Option<Vec<u8>>) -> String {
        let Some(v) = v else {
            return "NULL".into();
        };
        if let Some(f) = self.float(col, v) {
            return format!("{f:?}");
        }
        let text = |v: &[u8]| {
            let s = String::from_utf8_lossy(v);
            let short: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "…" } else { "" };
            format!("{short:?}{more}")
        };
        match (self.proto, self.columns[col].1) {
            (Proto::Simple, _) => text(v),
            (_, Some(16)) if v.len() == 1 => (v[0] != 0).to_string(),
            (_, Some(20)) if v.len() == 8 => {
                i64::from_be_bytes(v[..8].try_into().unwrap()).to_string()
            }
            (_, Some(23)) if v.len() == 4 => {
                i32::from_be_bytes(v[..4].try_into().unwrap()).to_string()
            }
            (_, Some(21)) if v.len() == 2 => {
                i16::from_be_bytes(v[..2].try_into().unwrap()).to_string()
            }
            (_, Some(19 | 25 | 1042 | 1043)) => text(v),
            _ => {
                let hex: String = v.iter().take(20).map(|b| format!("{b:02x}")).collect();
                let more = if v.len() > 20 { "…" } else { "" };
                format!("\\x{hex}{more}")
            }
        }
    }

    pub fn show_row(&self, row: &[Option<Vec<u8>>]) -> String {
        let cells: Vec<String> = (row.iter().enumerate())
            .map(|(i, v)| self.show_cell(i, v))
            .collect();
        format!("({})", cells.join(", "))
    }

    fn show_columns(&self) -> String {
        let cols: Vec<String> = (self.columns.iter())
            .map(|(n, oid)| match oid {
                Some(oid) => format!("{n}:{oid}"),
                None => n.clone(),
            })
            .collect();
        format!("[{}]", cols.join(", "))
    }

    /// Columns, row count and the first few rows (in the order compared).
    pub fn abridged(&self, ordered: bool) -> String {
        const SHOWN: usize = 6;
        let rows: Vec<&Vec<Option<Vec<u8>>>> = if ordered {
            self.rows.iter().collect()
        } else {
            self.sorted()
        };
        let shown: Vec<String> = rows.iter().take(SHOWN).map(|r| self.show_row(r)).collect();
        let more = if rows.len() > SHOWN { " …" } else { "" };
        format!(
            "{} {} rows: {}{more}",
            self.show_columns(),
            rows.len(),
            shown.join(" ")
        )
    }
}

fn close(x: f64, y: f64) -> bool {
    x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs())
}

/// `Ok` when `actual` answers as `expected` does: same columns (names, and type OIDs when known),
/// same rows (in order when `ordered`, else as multisets), values byte-identical except `f_` floats.
pub fn compare(expected: &Answer, actual: &Answer, ordered: bool) -> Result<(), String> {
    compare_with(expected, actual, ordered, "proxy")
}

/// `compare`, naming the side that gave `actual` as `actual_side` in the report.
pub fn compare_with(
    expected: &Answer,
    actual: &Answer,
    ordered: bool,
    actual_side: &str,
) -> Result<(), String> {
    let both = || {
        format!(
            "\n      unsharded: {}\n      {:<10} {}",
            expected.abridged(ordered),
            format!("{actual_side}:"),
            actual.abridged(ordered)
        )
    };
    if expected.columns != actual.columns {
        return Err(format!("columns differ{}", both()));
    }
    if expected.rows.len() != actual.rows.len() {
        return Err(format!(
            "{} rows vs {} rows{}",
            expected.rows.len(),
            actual.rows.len(),
            both()
        ));
    }
    let (e_rows, a_rows): (Vec<_>, Vec<_>) = if ordered {
        (expected.rows.iter().collect(), actual.rows.iter().collect())
    } else {
        (expected.sorted(), actual.sorted())
    };
    let same_cell = |col: usize, x: &Option<Vec<u8>>, y: &Option<Vec<u8>>| match (x, y) {
        (Some(a), Some(b)) => match (expected.float(col, a), actual.float(col, b)) {
            (Some(a), Some(b)) => close(a, b),
            _ => a == b,
        },
        (None, None) => true,
        _ => false,
    };
    let first_diff = (e_rows.iter().zip(&a_rows).enumerate()).find(|(_, (e, a))| {
        !(e.iter().zip(a.iter()).enumerate()).all(|(c, (x, y))| same_cell(c, x, y))
    });
    let Some((i, (e, a))) = first_diff else {
        if expected.tag != actual.tag {
            return Err(format!(
                "command tags differ: SELECT {:?} vs SELECT {:?}{}",
                expected.tag,
                actual.tag,
                both()
            ));
        }
        return Ok(());
    };
    let reordered = ordered && compare(expected, actual, false).is_ok();
    Err(format!(
        "row {i} differs{}: unsharded {} vs {actual_side} {}{}",
        if reordered {
            " (same rows, different order)"
        } else {
            ""
        },
        expected.show_row(e),
        actual.show_row(a),
        both()
    ))
}
