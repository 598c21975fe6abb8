//! Arrays of shard keys: the value bound to `key = ANY($1)`, in PostgreSQL's binary array format
//! or its text form (`{1,2,3}`), read into the keys of its elements.

use super::key::{is_pg_space, quoted};
use super::{Key, KeyError};
use crate::config::KeyType;

/// Arrays with more elements than this are not read: placing them would cost more than running
/// the statement on every shard.
pub const MAX_ARRAY_KEYS: usize = 100_000;

/// PostgreSQL's MAXDIM.
const MAX_DIMS: usize = 6;

/// The keys an array value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayKeys {
    /// Its elements in storage order (nested dimensions flattened), a NULL element as None.
    /// Empty for an empty array.
    Keys(Vec<Option<Key>>),
    /// More than `MAX_ARRAY_KEYS` elements: not read, so its keys may be anywhere.
    TooMany,
}

/// Reads an array in PostgreSQL's binary format (array_send): ndim, has-null flag, element type
/// OID, then a (length, lower bound) per dimension, then each element as a length (-1: NULL) and
/// its bytes, decoded as `Key::from_binary` does with the element type OID.
pub fn array_from_binary(ty: KeyType, bytes: &[u8]) -> Result<ArrayKeys, KeyError> {
    let mut r = Reader { bytes, at: 0 };
    let ndim = r.i32()?;
    let flags = r.i32()?;
    let elem_oid = r.i32()? as u32;
    let ndim = usize::try_from(ndim)
        .ok()
        .filter(|&n| n <= MAX_DIMS)
        .ok_or_else(|| KeyError(format!("invalid number of array dimensions: {ndim}")))?;
    if flags != 0 && flags != 1 {
        return Err(KeyError("invalid array flags".into()));
    }
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let len = r.i32()?;
        let lower = r.i32()?;
        let len = usize::try_from(len)
            .map_err(|_| KeyError(format!("invalid array dimension length: {len}")))?;
        if i32::try_from(len).is_ok_and(|l| lower.checked_add(l).is_none()) {
            return Err(KeyError("array upper bound is too large".into()));
        }
        count = count.saturating_mul(len);
    }
    if count > MAX_ARRAY_KEYS {
        return Ok(ArrayKeys::TooMany);
    }
    // Each element takes at least its 4-byte length: a lying header allocates no more than that.
    let mut keys = Vec::with_capacity(count.min(r.left() / 4));
    for _ in 0..count {
        match r.i32()? {
            -1 => keys.push(None),
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| KeyError(format!("invalid array element length: {len}")))?;
                keys.push(Some(Key::from_binary(ty, elem_oid, r.take(len)?)?));
            }
        }
    }
    if r.left() != 0 {
        return Err(KeyError(
            "incorrect binary data format for an array: bytes left after the last element".into(),
        ));
    }
    Ok(ArrayKeys::Keys(keys))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyError> {
        if n > self.left() {
            return Err(KeyError(
                "incorrect binary data format for an array: it ends too soon".into(),
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, KeyError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads an array in PostgreSQL's text form (array_in): `{1,2,3}`, `{"a b","c\"d",NULL}`,
/// nested braces (flattened), an optional `[1:3]=` dimension prefix, whitespace around elements.
/// An unquoted NULL is a NULL element; quoted or escaped, it is the text NULL. Elements are
/// decoded as `Key::from_text` does.
pub fn array_from_text(ty: KeyType, text: &str) -> Result<ArrayKeys, KeyError> {
    let malformed =
        |why: &str| KeyError(format!("malformed array literal {}: {why}", quoted(text)));
    let s = text.as_bytes();
    let mut i = skip_space(s, 0);
    if s.get(i) == Some(&b'[') {
        i = skip_dimensions(s, i).ok_or_else(|| malformed("bad dimension information"))?;
    }
    if s.get(i) != Some(&b'{') {
        return Err(malformed("an array must start with \"{\""));
    }
    i += 1;
    let mut depth = 1;
    // What may come next: an element or '{' (after '{' or ','), or ',' or '}' (after an element
    // or a closed sub-array). `open` is "just after '{'", where '}' closes an empty array.
    let (mut want_item, mut open) = (true, true);
    let mut keys = Vec::new();
    while depth > 0 {
        i = skip_space(s, i);
        let Some(&c) = s.get(i) else {
            return Err(malformed("unexpected end of input"));
        };
        match (c, want_item) {
            (b'{', true) => {
                depth += 1;
                if depth > MAX_DIMS {
                    return Err(malformed("too many dimensions"));
                }
                i += 1;
                open = true;
            }
            (b'}', true) if open => {
                depth -= 1;
                i += 1;
                (want_item, open) = (false, false);
            }
            (b'}', false) => {
                depth -= 1;
                i += 1;
            }
            (b',', false) => {
                i += 1;
                (want_item, open) = (true, false);
            }
            (b'{' | b'}' | b',', _) => {
                return Err(malformed(&format!("unexpected \"{}\"", c as char)))
            }
            (_, false) => return Err(malformed("expected \",\" or \"}\" after an element")),
            (_, true) => {
                let (element, next) = read_element(s, i).ok_or_else(|| malformed("bad element"))?;
                i = next;
                if keys.len() == MAX_ARRAY_KEYS {
                    return Ok(ArrayKeys::TooMany);
                }
                keys.push(match element {
                    None => None,
                    Some(e) => Some(Key::from_text(ty, &e)?),
                });
                (want_item, open) = (false, false);
            }
        }
    }
    if skip_space(s, i) != s.len() {
        return Err(malformed("junk after the closing \"}\""));
    }
    Ok(ArrayKeys::Keys(keys))
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_pg_space(b)) {
        i += 1;
    }
    i
}

/// Skips `[lo:hi][lo:hi]=` (or `[hi]`), returning the index after '=' and the spaces after it.
fn skip_dimensions(s: &[u8], mut i: usize) -> Option<usize> {
    let mut dims = 0;
    while s.get(i) == Some(&b'[') {
        let close = i + s[i..].iter().position(|&b| b == b']')?;
        let inner = &s[i + 1..close];
        let bounds = |part: &[u8]| {
            let t = part.trim_ascii();
            let digits = t.strip_prefix(b"-").or(t.strip_prefix(b"+")).unwrap_or(t);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        };
        if !inner.split(|&b| b == b':').all(bounds) || inner.split(|&b| b == b':').count() > 2 {
            return None;
        }
        dims += 1;
        i = skip_space(s, close + 1);
    }
    (dims <= MAX_DIMS && s.get(i) == Some(&b'=')).then(|| skip_space(s, i + 1))
}

/// One element starting at `i` (not a space, '{', '}' or ','): its text (None for an unquoted
/// NULL) and the index where it ends (at ',' or '}' or the spaces before them). None if a quote
/// or an escape is left open, or a '{' stands inside it.
fn read_element(s: &[u8], mut i: usize) -> Option<(Option<String>, usize)> {
    let mut out = Vec::new();
    // Length of `out` up to its last byte that is not unquoted whitespace.
    let mut kept = 0;
    let (mut in_quotes, mut literal) = (false, false);
    while let Some(&c) = s.get(i) {
        match c {
            b'\\' => {
                out.push(*s.get(i + 1)?);
                kept = out.len();
                literal = true;
                i += 2;
                continue;
            }
            b'"' => {
                in_quotes = !in_quotes;
                kept = out.len();
                literal = true;
            }
            _ if in_quotes => {
                out.push(c);
                kept = out.len();
            }
            b',' | b'}' => break,
            b'{' => return None,
            _ => {
                out.push(c);
                if !is_pg_space(c) {
                    kept = out.len();
                }
            }
        }
        i += 1;
    }
    if in_quotes {
        return None;
    }
    out.truncate(kept);
    if !literal && out.eq_ignore_ascii_case(b"NULL") {
        return Some((None, i));
    }
    // Splits happen only at ASCII bytes, so the pieces of valid UTF-8 stay valid.
    String::from_utf8(out).ok().map(|e| (Some(e), i))
}

#[cfg(test)]
#[path = "array_tests.rs"]
mod tests;
