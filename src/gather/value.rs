//! Typed column values: decoding shard DataRow bytes, ordering and grouping them as PostgreSQL
//! does, and encoding the values the proxy computes itself.

use super::collate::Collation;
use super::datetime;
use super::float::{float4_text, float8_text};
use super::numeric::Numeric;
use crate::error::Error;
use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float4,
    Float8,
    Numeric,
    Text,
    Bpchar,
    Bool,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Other(u32),
}

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
}

impl Kind {
    pub fn of(type_oid: u32) -> Kind {
        match type_oid {
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => Kind::Int,
            oid::FLOAT4 => Kind::Float4,
            oid::FLOAT8 => Kind::Float8,
            oid::NUMERIC => Kind::Numeric,
            oid::TEXT | oid::VARCHAR | oid::NAME => Kind::Text,
            oid::BPCHAR => Kind::Bpchar,
            oid::BOOL => Kind::Bool,
            oid::DATE => Kind::Date,
            oid::TIME => Kind::Time,
            oid::TIMESTAMP => Kind::Timestamp,
            oid::TIMESTAMPTZ => Kind::TimestampTz,
            oid::UUID => Kind::Uuid,
            other => Kind::Other(other),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Float4 => "real",
            Kind::Float8 => "double precision",
            Kind::Numeric => "numeric",
            Kind::Text => "text",
            Kind::Bpchar => "character",
            Kind::Bool => "boolean",
            Kind::Date => "date",
            Kind::Time => "time",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamp with time zone",
            Kind::Uuid => "uuid",
            Kind::Other(_) => "unknown",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Numeric(Numeric),
    Text(Vec<u8>),
    Bool(bool),
    /// Days since 2000-01-01 (date), or microseconds since 2000-01-01 00:00 (timestamp; UTC for
    /// timestamptz), or since midnight (time); ±infinity are i64::MAX / i64::MIN.
    Time(i64),
    Uuid([u8; 16]),
}

fn unreadable(kind: Kind, format: i16, raw: &[u8], problem: &str) -> Error {
    let shown = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    let what = if format == 0 {
        format!("\"{shown}\"")
    } else {
        format!("({} bytes, binary)", raw.len())
    };
    let hint = match kind {
        Kind::Date | Kind::Timestamp | Kind::TimestampTz | Kind::Time => {
            "set DateStyle to ISO (the default) for this session and on the shards"
        }
        _ => "this is a shardgate bug if the shards run PostgreSQL; please report it",
    };
    Error::unsupported(
        format!(
            "shardgate cannot read the {} value {what} a shard sent: {problem}",
            kind.type_name()
        ),
        hint,
    )
}

fn be<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

pub fn decode(kind: Kind, format: i16, raw: Option<&[u8]>) -> Result<Value, Error> {
    if let Kind::Other(type_oid) = kind {
        return Err(Error::unsupported(
            format!("shardgate cannot compare values of type with OID {type_oid} across shards"),
            "cast the column to text, a number, a date/time type or uuid where the query sorts, \
             groups or aggregates it, or keep the query on one shard",
        ));
    }
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let v = match format {
        // Strings pass through as bytes, as they do in binary; every other type's text is ASCII.
        0 if matches!(kind, Kind::Text | Kind::Bpchar) => Some(Value::Text(raw.to_vec())),
        0 => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| unreadable(kind, format, raw, "it is not valid UTF-8"))?;
            decode_text(kind, text)
        }
        1 => decode_binary(kind, raw),
        other => {
            return Err(Error::internal(format!(
                "a shard sent a column in unknown format code {other}"
            )))
        }
    };
    v.ok_or_else(|| {
        let problem = match (format, kind) {
            (0, Kind::Date | Kind::Timestamp | Kind::TimestampTz | Kind::Time) => {
                "it is not in ISO DateStyle"
            }
            (0, _) => "it is not in PostgreSQL's text output form",
            _ => "its binary form is malformed",
        };
        unreadable(kind, format, raw, problem)
    })
}

fn decode_text(kind: Kind, s: &str) -> Option<Value> {
    Some(match kind {
        Kind::Int => Value::Int(s.parse().ok()?),
        Kind::Float4 => Value::Float(f64::from(parse_float::<f32>(s)?)),
        Kind::Float8 => Value::Float(parse_float::<f64>(s)?),
        Kind::Numeric => Value::Numeric(Numeric::parse(s)?),
        Kind::Bool => match s {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => return None,
        },
        Kind::Date => Value::Time(datetime::parse_date(s)?),
        Kind::Time => Value::Time(datetime::parse_time(s)?),
        Kind::Timestamp => Value::Time(datetime::parse_timestamp(s, false)?),
        Kind::TimestampTz => Value::Time(datetime::parse_timestamp(s, true)?),
        Kind::Uuid => Value::Uuid(parse_uuid(s)?),
        Kind::Text | Kind::Bpchar | Kind::Other(_) => return None,
    })
}

/// Float text as float4out/float8out print it; float4 goes through f32 so that text and binary
/// shards yield the very same value.
fn parse_float<F: std::str::FromStr>(s: &str) -> Option<F> {
    let plain = s
        .bytes()
        .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
        && !s.is_empty();
    if plain || matches!(s, "NaN" | "Infinity" | "-Infinity") {
        s.parse().ok()
    } else {
        None
    }
}

/// Canonical "8-4-4-4-12" lowercase or uppercase hex, and the braced/unhyphenated forms
/// uuid_in also accepts.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 || s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some(out)
}

fn decode_binary(kind: Kind, raw: &[u8]) -> Option<Value> {
    Some(match kind {
        Kind::Int => Value::Int(match raw.len() {
            2 => i64::from(i16::from_be_bytes(be(raw)?)),
            4 => i64::from(i32::from_be_bytes(be(raw)?)),
            8 => i64::from_be_bytes(be(raw)?),
            _ => return None,
        }),
        Kind::Float4 => Value::Float(f64::from(f32::from_be_bytes(be(raw)?))),
        Kind::Float8 => Value::Float(f64::from_be_bytes(be(raw)?)),
        Kind::Numeric => Value::Numeric(Numeric::from_binary(raw)?),
        Kind::Text | Kind::Bpchar => Value::Text(raw.to_vec()),
        Kind::Bool => Value::Bool(u8::from_be_bytes(be(raw)?) != 0),
        Kind::Date => Value::Time(match i32::from_be_bytes(be(raw)?) {
            i32::MAX => i64::MAX,
            i32::MIN => i64::MIN,
            d => i64::from(d),
        }),
        Kind::Time | Kind::Timestamp | Kind::TimestampTz => {
            Value::Time(i64::from_be_bytes(be(raw)?))
        }
        Kind::Uuid => Value::Uuid(be(raw)?),
        Kind::Other(_) => return None,
    })
}

fn variant_rank(v: &Value) -> u8 {
    match v {
        Value::Int(_) => 0,
        Value::Float(_) => 1,
        Value::Numeric(_) => 2,
        Value::Text(_) => 3,
        Value::Bool(_) => 4,
        Value::Time(_) => 5,
        Value::Uuid(_) => 6,
        Value::Null => 7,
    }
}

/// bpchar's comparisons and equality ignore trailing spaces (bcTruelen).
fn bp_trim(s: &[u8]) -> &[u8] {
    let n = s.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &s[..n]
}

/// float8_cmp_internal: NaNs are equal to each other and above everything else.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

pub fn cmp(a: &Value, b: &Value, coll: &Collation, bpchar: bool) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => float_cmp(*x, *y),
        (Value::Numeric(x), Value::Numeric(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) if bpchar => coll.compare(bp_trim(x), bp_trim(y)),
        (Value::Text(x), Value::Text(y)) => coll.compare(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        _ => variant_rank(a).cmp(&variant_rank(b)),
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn group_key(v: &Value, bpchar: bool, out: &mut Vec<u8>) {
    out.push(variant_rank(v));
    match v {
        Value::Null => {}
        Value::Int(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Float(f) => {
            let canon = if f.is_nan() {
                f64::NAN
            } else if *f == 0.0 {
                0.0
            } else {
                *f
            };
            out.extend_from_slice(&canon.to_bits().to_be_bytes());
        }
        Value::Numeric(n) => match n.normalized() {
            Some((digits, exp)) => {
                out.push(b'f');
                out.extend_from_slice(&exp.to_be_bytes());
                push_len_prefixed(out, digits.as_bytes());
            }
            None => out.push(match n {
                Numeric::NaN => b'n',
                Numeric::PosInf => b'p',
                _ => b'm',
            }),
        },
        Value::Text(t) => push_len_prefixed(out, if bpchar { bp_trim(t) } else { t }),
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Time(t) => out.extend_from_slice(&t.to_be_bytes()),
        Value::Uuid(u) => out.extend_from_slice(u),
    }
}

/// Writes `v` as a column of type `type_oid`. Computed results are int2/4/8, numeric, float4/8
/// and bool; other pairs get a best-effort form (see `encode_other`). The caller range-checks
/// integers against the type: an int4 out of range saturates rather than wraps.
pub fn encode(v: &Value, type_oid: u32, format: i16, out: &mut Vec<u8>) {
    let text = format == 0;
    match (type_oid, v) {
        (oid::INT8 | oid::INT4 | oid::INT2, Value::Int(i)) if text => {
            out.extend_from_slice(i.to_string().as_bytes())
        }
        (oid::INT8, Value::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (oid::INT4, Value::Int(i)) => {
            let n = (*i).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            out.extend_from_slice(&n.to_be_bytes())
        }
        (oid::INT2, Value::Int(i)) => {
            let n = (*i).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
            out.extend_from_slice(&n.to_be_bytes())
        }
        (oid::NUMERIC, Value::Numeric(n)) => encode_numeric(n, text, out),
        (oid::NUMERIC, Value::Int(i)) => {
            encode_numeric(&Numeric::from_i128(i128::from(*i)), text, out)
        }
        (oid::FLOAT4, Value::Float(_) | Value::Int(_)) => {
            let f = as_f64(v) as f32;
            if text {
                out.extend_from_slice(float4_text(f).as_bytes())
            } else {
                out.extend_from_slice(&f.to_be_bytes())
            }
        }
        (oid::FLOAT8, Value::Float(_) | Value::Int(_)) => {
            let f = as_f64(v);
            if text {
                out.extend_from_slice(float8_text(f).as_bytes())
            } else {
                out.extend_from_slice(&f.to_be_bytes())
            }
        }
        (oid::BOOL, Value::Bool(b)) if text => out.push(if *b { b't' } else { b'f' }),
        (oid::BOOL, Value::Bool(b)) => out.push(u8::from(*b)),
        _ => encode_other(v, type_oid, text, out),
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        _ => f64::NAN,
    }
}

fn encode_numeric(n: &Numeric, text: bool, out: &mut Vec<u8>) {
    if text {
        out.extend_from_slice(n.to_text().as_bytes())
    } else {
        out.extend_from_slice(&n.to_binary())
    }
}

/// Pairs outside the computed-result set. Text-like and uuid values and the binary forms of the
/// date/time types are exact; date/time *text* would need the session's TimeZone and DateStyle,
/// so callers must pass shard bytes through for those instead of re-encoding.
fn encode_other(v: &Value, type_oid: u32, text: bool, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Text(t) => out.extend_from_slice(t),
        Value::Uuid(u) if text => {
            let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
            let parts = [
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..],
            ];
            out.extend_from_slice(parts.join("-").as_bytes());
        }
        Value::Uuid(u) => out.extend_from_slice(u),
        Value::Time(t) if !text && type_oid == oid::DATE => {
            let d = (*t).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Time(t) if !text => out.extend_from_slice(&t.to_be_bytes()),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(float8_text(*f).as_bytes()),
        Value::Numeric(n) => out.extend_from_slice(n.to_text().as_bytes()),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Time(t) => out.extend_from_slice(t.to_string().as_bytes()),
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "value_tests_keys.rs"]
mod tests_keys;
