//! Shard keys in canonical form: parsing a value's text or binary form into the bytes that are hashed.

use crate::config::KeyType;
use std::borrow::Cow;
use std::fmt;
use twox_hash::XxHash3_64;

/// A shard key in canonical form: equal values of a column type give equal bytes whatever
/// their spelling (`42`, `'42'`, `$1` as text or binary int4/int8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
}

/// Why a value could not be made into a key of the column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// The SQLSTATE PostgreSQL gives the same fault in a bound value, from the message a
/// `KeyError` carries (PostgreSQL's own wording); 0A000 where PostgreSQL would accept the value
/// and only the proxy cannot read it as a key (another type, or an array past its limits).
pub fn key_error_sqlstate(message: &str) -> &'static str {
    let binary = "incorrect binary data format";
    if message.starts_with("invalid byte sequence") {
        "22021"
    } else if message.starts_with("invalid input syntax") || message.starts_with("malformed array")
    {
        "22P02"
    } else if message.contains("is out of range") {
        "22003"
    } else if message.contains("ends too soon") || short_binary(message) {
        // PostgreSQL reads past the value's end: "insufficient data left in message".
        "08P01"
    } else if message.starts_with(binary) || message.starts_with("invalid array") {
        "22P03"
    } else {
        "0A000"
    }
}

/// "... expected N bytes, got M" (or "expected 2, 4 or N bytes") with M < N.
fn short_binary(message: &str) -> bool {
    let Some((expected, got)) = message.split_once(" bytes, got ") else {
        return false;
    };
    let want = expected
        .rsplit(' ')
        .next()
        .and_then(|w| w.parse::<usize>().ok());
    let got = got.split(|c: char| !c.is_ascii_digit()).next();
    matches!((want, got.and_then(|g| g.parse::<usize>().ok())), (Some(w), Some(g)) if g < w)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
            Key::Uuid(b) => write!(f, "'{}'", uuid::Uuid::from_bytes(*b).hyphenated()),
        }
    }
}

/// Type OIDs of pg_type that a bound key parameter may carry.
pub mod oid {
    pub const UNSPECIFIED: u32 = 0;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const UUID: u32 = 2950;
}

impl Key {
    /// Canonical bytes: Int as 8-byte little-endian, Text as UTF-8, Uuid as its 16 bytes.
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Key::Int(v) => Cow::Owned(v.to_le_bytes().to_vec()),
            Key::Text(s) => Cow::Borrowed(s.as_bytes()),
            Key::Uuid(u) => Cow::Borrowed(u),
        }
    }

    /// xxh3_64 of the canonical bytes.
    pub fn hash(&self) -> u64 {
        // Not via bytes(): the hot path must not allocate for integer keys.
        match self {
            Key::Int(v) => XxHash3_64::oneshot(&v.to_le_bytes()),
            Key::Text(s) => XxHash3_64::oneshot(s.as_bytes()),
            Key::Uuid(u) => XxHash3_64::oneshot(u),
        }
    }

    /// A key from the text form of a value (a SQL literal's content, or a text-format parameter).
    pub fn from_text(ty: KeyType, text: &str) -> Result<Key, KeyError> {
        match ty {
            KeyType::Int => parse_int(text).map(Key::Int),
            KeyType::Text => Ok(Key::Text(text.to_owned())),
            KeyType::Uuid => parse_uuid(text).map(Key::Uuid),
        }
    }

    /// A key from a binary-format parameter whose type OID is `oid` (0 = unspecified: use `ty`).
    pub fn from_binary(ty: KeyType, oid: u32, bytes: &[u8]) -> Result<Key, KeyError> {
        match (oid, ty) {
            (oid::INT2 | oid::INT4 | oid::INT8 | oid::UNSPECIFIED, KeyType::Int) => {
                binary_int(oid, bytes).map(Key::Int)
            }
            (oid::TEXT | oid::VARCHAR | oid::NAME | oid::UNSPECIFIED, KeyType::Text) => {
                utf8(bytes).map(|s| Key::Text(s.to_owned()))
            }
            // A char(n) value arrives blank-padded, yet compares equal to its unpadded text.
            (oid::BPCHAR, KeyType::Text) => {
                utf8(bytes).map(|s| Key::Text(s.trim_end_matches(' ').to_owned()))
            }
            // Drivers that bind every parameter as text still name an integer key exactly.
            (oid::TEXT | oid::VARCHAR | oid::NAME | oid::BPCHAR, KeyType::Int) => {
                utf8(bytes).and_then(parse_int).map(Key::Int)
            }
            // "unknown" is untyped text: the server would read it with the column's input function.
            (oid::UNKNOWN, _) => utf8(bytes).and_then(|s| Key::from_text(ty, s)),
            (oid::UUID | oid::UNSPECIFIED, KeyType::Uuid) => match <[u8; 16]>::try_from(bytes) {
                Ok(u) => Ok(Key::Uuid(u)),
                Err(_) => Err(wrong_length("uuid", 16, bytes.len())),
            },
            (oid, ty) => Err(KeyError(format!(
                "a parameter of type {} cannot be a key of a {} column",
                type_name(oid),
                key_type_name(ty)
            ))),
        }
    }
}

/// A big-endian int2/int4/int8; with no OID the length tells which.
fn binary_int(type_oid: u32, bytes: &[u8]) -> Result<i64, KeyError> {
    let want = match type_oid {
        oid::INT2 => 2,
        oid::INT4 => 4,
        oid::INT8 => 8,
        _ => match bytes.len() {
            2 | 4 | 8 => bytes.len(),
            got => {
                return Err(KeyError(format!(
                "incorrect binary data format for an integer: expected 2, 4 or 8 bytes, got {got}"
            )))
            }
        },
    };
    match (want, bytes) {
        (2, &[a, b]) => Ok(i16::from_be_bytes([a, b]).into()),
        (4, &[a, b, c, d]) => Ok(i32::from_be_bytes([a, b, c, d]).into()),
        (8, _) => <[u8; 8]>::try_from(bytes)
            .map(i64::from_be_bytes)
            .map_err(|_| wrong_length(&type_name(type_oid), want, bytes.len())),
        _ => Err(wrong_length(&type_name(type_oid), want, bytes.len())),
    }
}

fn wrong_length(name: &str, want: usize, got: usize) -> KeyError {
    KeyError(format!(
        "incorrect binary data format for type {name}: expected {want} bytes, got {got}"
    ))
}

fn utf8(bytes: &[u8]) -> Result<&str, KeyError> {
    std::str::from_utf8(bytes)
        .map_err(|_| KeyError("invalid byte sequence for encoding \"UTF8\"".into()))
}

fn key_type_name(ty: KeyType) -> &'static str {
    match ty {
        KeyType::Int => "bigint",
        KeyType::Text => "text",
        KeyType::Uuid => "uuid",
    }
}

fn type_name(type_oid: u32) -> String {
    let name = match type_oid {
        oid::UNSPECIFIED => "unspecified",
        oid::NAME => "name",
        oid::INT8 => "bigint",
        oid::INT2 => "smallint",
        oid::INT4 => "integer",
        oid::TEXT => "text",
        oid::BPCHAR => "character",
        oid::VARCHAR => "character varying",
        oid::UUID => "uuid",
        other => return format!("OID {other}"),
    };
    name.into()
}

/// The input as quoted in an error message, shortened so a huge parameter cannot flood the log.
pub(super) fn quoted(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("\"{}...\"", &text[..cut]),
        None => format!("\"{text}\""),
    }
}

/// PostgreSQL's isspace() in the C locale, which int8in uses to trim its input.
pub(super) fn is_pg_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// What nearly every integer key's text is: at most 18 plain decimal digits, which cannot
/// overflow. Read from the bytes, so a bound parameter needs no UTF-8 check first.
#[inline]
pub fn plain_int(text: &[u8]) -> Option<i64> {
    ((1..=18).contains(&text.len()) && text.iter().all(|b| b.is_ascii_digit()))
        .then(|| text.iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0')))
}

/// Parses an integer as PostgreSQL 16's int8in does: surrounding whitespace, a sign, decimal
/// digits or a 0x/0o/0b prefix, and single underscores between digits.
fn parse_int(text: &str) -> Result<i64, KeyError> {
    if let Some(n) = plain_int(text.as_bytes()) {
        return Ok(n);
    }
    let syntax = || {
        KeyError(format!(
            "invalid input syntax for type bigint: {}",
            quoted(text)
        ))
    };
    let range = || {
        KeyError(format!(
            "value {} is out of range for type bigint",
            quoted(text)
        ))
    };
    let s = text.as_bytes();
    let mut i = 0;
    while i < s.len() && is_pg_space(s[i]) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let radix: u64 = match (s.get(i), s.get(i + 1).map(u8::to_ascii_lowercase)) {
        (Some(b'0'), Some(b'x')) => 16,
        (Some(b'0'), Some(b'o')) => 8,
        (Some(b'0'), Some(b'b')) => 2,
        _ => 10,
    };
    if radix != 10 {
        i += 2;
    }
    let digit = |b: u8| char::from(b).to_digit(radix as u32).map(u64::from);
    // The magnitude of i64::MIN is one more than i64::MAX.
    let limit = if negative {
        1u64 << 63
    } else {
        i64::MAX as u64
    };
    let first_digit = i;
    let mut magnitude: u64 = 0;
    while i < s.len() {
        if let Some(d) = digit(s[i]) {
            magnitude = magnitude
                .checked_mul(radix)
                .and_then(|m| m.checked_add(d))
                .filter(|&m| m <= limit)
                .ok_or_else(range)?;
            i += 1;
        } else if s[i] == b'_' && (radix != 10 || i > first_digit) {
            // An underscore must sit between digits (after the prefix is fine for 0x/0o/0b).
            i += 1;
            if s.get(i).and_then(|&b| digit(b)).is_none() {
                return Err(syntax());
            }
        } else {
            break;
        }
    }
    if i == first_digit {
        return Err(syntax());
    }
    while i < s.len() && is_pg_space(s[i]) {
        i += 1;
    }
    if i != s.len() {
        return Err(syntax());
    }
    Ok(if negative {
        // Wrapping covers i64::MIN, whose magnitude is 2^63.
        (magnitude as i64).wrapping_neg()
    } else {
        magnitude as i64
    })
}

/// Parses a uuid as PostgreSQL's uuid_in does: 32 hex digits in either case, optionally in
/// braces, with an optional hyphen after any group of four digits (but not at the end).
fn parse_uuid(text: &str) -> Result<[u8; 16], KeyError> {
    let syntax = || {
        KeyError(format!(
            "invalid input syntax for type uuid: {}",
            quoted(text)
        ))
    };
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let s = text.as_bytes();
    let braces = s.first() == Some(&b'{');
    let mut i = usize::from(braces);
    let mut out = [0u8; 16];
    for (n, byte) in out.iter_mut().enumerate() {
        let hi = s.get(i).and_then(|&b| hex(b)).ok_or_else(syntax)?;
        let lo = s.get(i + 1).and_then(|&b| hex(b)).ok_or_else(syntax)?;
        *byte = hi << 4 | lo;
        i += 2;
        if s.get(i) == Some(&b'-') && n % 2 == 1 && n < 15 {
            i += 1;
        }
    }
    if braces {
        if s.get(i) != Some(&b'}') {
            return Err(syntax());
        }
        i += 1;
    }
    if i != s.len() {
        return Err(syntax());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyType::{Int, Text, Uuid};

    fn int(text: &str) -> Result<i64, String> {
        match Key::from_text(Int, text) {
            Ok(Key::Int(v)) => Ok(v),
            Ok(other) => panic!("{other:?}"),
            Err(KeyError(m)) => Err(m),
        }
    }

    #[test]
    fn key_errors_carry_postgres_sqlstates() {
        use crate::config::KeyType::{Int, Text, Uuid};
        let code = |r: Result<Key, KeyError>| key_error_sqlstate(&r.unwrap_err().0);
        assert_eq!(code(Key::from_text(Int, "abc")), "22P02");
        assert_eq!(code(Key::from_text(Int, "99999999999999999999")), "22003");
        assert_eq!(code(Key::from_binary(Int, oid::INT8, &[0; 7])), "08P01");
        assert_eq!(code(Key::from_binary(Int, oid::INT8, &[0; 9])), "22P03");
        assert_eq!(
            code(Key::from_binary(Int, oid::UNSPECIFIED, &[0; 3])),
            "08P01"
        );
        assert_eq!(
            code(Key::from_binary(Int, oid::UNSPECIFIED, &[0; 9])),
            "22P03"
        );
        assert_eq!(code(Key::from_binary(Uuid, oid::UUID, &[0; 15])), "08P01");
        assert_eq!(code(Key::from_binary(Text, oid::TEXT, b"\xff")), "22021");
        assert_eq!(code(Key::from_binary(Int, 701, &[0; 8])), "0A000");
    }

    #[test]
    fn plain_digits_read_as_the_general_parser_reads_them() {
        // A leading space takes the general path, which the other tests hold to PostgreSQL.
        let mut digits = String::new();
        for n in 1..=20 {
            digits.push(char::from(b'0' + (n * 7 % 10) as u8));
            for s in [digits.clone(), "0".repeat(n), "9".repeat(n)] {
                assert_eq!(int(&s).ok(), int(&format!(" {s}")).ok(), "{s}");
                // The bytes-only reading a bound parameter gets agrees where it answers.
                if let Some(v) = plain_int(s.as_bytes()) {
                    assert_eq!(Ok(v), int(&format!(" {s}")), "{s}");
                }
                assert_eq!(plain_int(s.as_bytes()).is_some(), n <= 18, "{s}");
            }
        }
        for other in ["", "-1", "+1", "1 ", "1_0", "0x1", "١"] {
            assert_eq!(plain_int(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn int_text_follows_postgres() {
        assert_eq!(int("42"), Ok(42));
        assert_eq!(int(" +42 "), Ok(42));
        assert_eq!(int("\t\n-42\r\x0b\x0c"), Ok(-42));
        assert_eq!(int("-0"), Ok(0));
        assert_eq!(int("007"), Ok(7));
        assert_eq!(int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(int("1_000_000"), Ok(1_000_000));
        assert_eq!(int("0x1F"), Ok(31));
        assert_eq!(int("-0X_ff"), Ok(-255));
        assert_eq!(int("0o17"), Ok(15));
        assert_eq!(int("0b101"), Ok(5));
        assert_eq!(int("-0x8000000000000000"), Ok(i64::MIN));
        assert_eq!(
            int("abc"),
            Err("invalid input syntax for type bigint: \"abc\"".into())
        );
        for bad in [
            "", " ", "+", "-", "4 2", "42x", "4.2", "1e3", "_1", "1_", "1__0", "0x", "0xg", "0b2",
            "--1", "+-1", "٣", "42\0",
        ] {
            assert!(
                int(bad).unwrap_err().starts_with("invalid input syntax"),
                "{bad:?}"
            );
        }
        for big in [
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
            "0x8000000000000000",
        ] {
            let e = int(big).unwrap_err();
            assert_eq!(
                e,
                format!("value \"{big}\" is out of range for type bigint")
            );
        }
        let long = "x".repeat(1000);
        assert!(int(&long).unwrap_err().len() < 120);
    }

    #[test]
    fn uuid_text_follows_postgres() {
        let want = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        for form in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(Key::from_text(Uuid, form), Ok(Key::Uuid(want)), "{form}");
        }
        for bad in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            let e = Key::from_text(Uuid, bad).unwrap_err();
            assert_eq!(
                e.0,
                format!("invalid input syntax for type uuid: \"{bad}\"")
            );
        }
    }

    #[test]
    fn every_spelling_of_42_is_one_key() {
        let k = Key::from_text(Int, "42").unwrap();
        let spellings = [
            Key::from_text(Int, " +42 "),
            Key::from_binary(Int, oid::INT2, &42i16.to_be_bytes()),
            Key::from_binary(Int, oid::INT4, &42i32.to_be_bytes()),
            Key::from_binary(Int, oid::INT8, &42i64.to_be_bytes()),
            Key::from_binary(Int, oid::UNSPECIFIED, &42i32.to_be_bytes()),
            Key::from_binary(Int, oid::UNSPECIFIED, &42i16.to_be_bytes()),
            Key::from_binary(Int, oid::TEXT, b"42"),
            Key::from_binary(Int, oid::VARCHAR, b" 42"),
            Key::from_binary(Int, oid::BPCHAR, b"42  "),
            Key::from_binary(Int, oid::UNKNOWN, b"42"),
        ];
        for s in spellings {
            let s = s.unwrap();
            assert_eq!(s, k);
            assert_eq!(s.hash(), k.hash());
        }
        assert_eq!(k.bytes().as_ref(), &42i64.to_le_bytes());
        let neg = Key::from_binary(Int, oid::INT2, &(-2i16).to_be_bytes()).unwrap();
        assert_eq!(neg, Key::Int(-2));
    }

    #[test]
    fn binary_text_and_uuid() {
        let t = |o, b: &[u8]| Key::from_binary(Text, o, b);
        assert_eq!(t(oid::TEXT, "été".as_bytes()), Ok(Key::Text("été".into())));
        assert_eq!(t(oid::BPCHAR, b"ab  "), Ok(Key::Text("ab".into())));
        assert_eq!(t(oid::VARCHAR, b"ab  "), Ok(Key::Text("ab  ".into())));
        assert_eq!(t(oid::NAME, b"n"), Ok(Key::Text("n".into())));
        assert_eq!(t(oid::UNSPECIFIED, b""), Ok(Key::Text(String::new())));
        assert_eq!(
            t(oid::TEXT, b"\xff").unwrap_err().0,
            "invalid byte sequence for encoding \"UTF8\""
        );
        let u = *b"0123456789abcdef";
        assert_eq!(Key::from_binary(Uuid, oid::UUID, &u), Ok(Key::Uuid(u)));
        assert_eq!(Key::from_binary(Uuid, 0, &u), Ok(Key::Uuid(u)));
        let from_unknown =
            Key::from_binary(Uuid, oid::UNKNOWN, b"30313233-3435-3637-3839-616263646566");
        assert_eq!(from_unknown, Ok(Key::Uuid(u)));
        assert_eq!(Key::Uuid(u).bytes().as_ref(), &u);
        let mismatch = Key::from_binary(Uuid, oid::TEXT, b"x").unwrap_err();
        assert_eq!(
            mismatch.0,
            "a parameter of type text cannot be a key of a uuid column"
        );
        let mismatch = Key::from_binary(Int, oid::UUID, &u).unwrap_err();
        assert_eq!(
            mismatch.0,
            "a parameter of type uuid cannot be a key of a bigint column"
        );
        assert!(Key::from_binary(Text, oid::INT4, &[0; 4]).is_err());
        assert!(Key::from_binary(Int, 700, &[0; 4])
            .unwrap_err()
            .0
            .contains("OID 700"));
        let short = Key::from_binary(Int, oid::INT4, &[0; 3]).unwrap_err();
        assert_eq!(
            short.0,
            "incorrect binary data format for type integer: expected 4 bytes, got 3"
        );
        assert!(Key::from_binary(Int, 0, &[0; 3])
            .unwrap_err()
            .0
            .contains("2, 4 or 8 bytes"));
        assert!(Key::from_binary(Uuid, oid::UUID, &[0; 15]).is_err());
    }

    #[test]
    fn random_input_never_panics() {
        // xorshift64*: deterministic, so a failure reproduces.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let alphabet = b"0123456789abcdefxXoObB_+- \t{}-\xff\xc3\xa9";
        let oids = [0, 19, 20, 21, 23, 25, 705, 1042, 1043, 2950, 700, u32::MAX];
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            let oid = oids[(next() % oids.len() as u64) as usize];
            for ty in [Int, Text, Uuid] {
                let _ = Key::from_binary(ty, oid, &bytes);
                let _ = Key::from_text(ty, &String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn hash_values_are_pinned() {
        // XXH3-64 of the empty input, seed 0, is the reference value from the xxHash project.
        assert_eq!(Key::Text(String::new()).hash(), 0x2D06_8005_38D3_94C2);
        // A change here means every key moves shard.
        assert_eq!(Key::Int(42).hash(), PIN_INT_42);
        assert_eq!(Key::Int(-1).hash(), PIN_INT_MINUS_1);
        assert_eq!(Key::Text("abc".into()).hash(), PIN_TEXT_ABC);
        assert_eq!(Key::Uuid([0; 16]).hash(), PIN_UUID_NIL);
    }

    // Cross-checked against the reference C xxHash (python-xxhash's xxh3_64_intdigest).
    const PIN_INT_42: u64 = 0xD5A6_F8C8_38DF_27C8;
    const PIN_INT_MINUS_1: u64 = 0x5111_C7E4_7D78_4413;
    const PIN_TEXT_ABC: u64 = 0x78AF_5F94_892F_3950;
    const PIN_UUID_NIL: u64 = 0xD0A6_6A65_C752_8968;
}
