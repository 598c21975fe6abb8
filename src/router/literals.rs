//! The constants of a query string: a lexer that finds its integer and string literals, so that
//! statements differing only in them share one cached plan (their "shape"), routed by the
//! literals' values as if they were bind parameters.
//!
//! The lexer follows PostgreSQL's rules for what it must not misread (quoted identifiers,
//! comments, dollar quoting, numbers that are not plain integers) and gives up, returning
//! `None`, on anything where a literal's value would be uncertain (escape strings, Unicode
//! strings, bit strings, string continuation over a newline, parameters, several statements).
//! Giving up costs only the cache: the caller plans the text itself.

use std::ops::Range;

/// What kind of constant a literal is; part of the shape, as `5` and `'5'` plan differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LitKind {
    /// An unsigned integer: digits only.
    Int,
    /// A standard string constant, `'...'` with `''` for a quote.
    Str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lit {
    /// The literal's bytes in the text, quotes included.
    pub span: Range<usize>,
    pub kind: LitKind,
}

impl Lit {
    /// The literal's value as a text-format parameter would carry it.
    pub fn value<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let raw = &text[self.span.clone()];
        match self.kind {
            LitKind::Int => raw.into(),
            LitKind::Str => {
                let inner = &raw[1..raw.len() - 1];
                if inner.contains("''") {
                    inner.replace("''", "'").into()
                } else {
                    inner.into()
                }
            }
        }
    }
}

/// Finds the literals of `text` into `lits` (cleared first) and returns the hash of its shape:
/// the text with each literal replaced by a marker of its kind. `None` when the text is not one
/// statement the lexer reads with certainty.
pub fn shape(text: &str, lits: &mut Vec<Lit>) -> Option<u64> {
    lits.clear();
    let b = text.as_bytes();
    // Chained one-shot hashes: XxHash3's streaming state would be allocated per statement.
    let mut h = 0u64;
    let mut kept = 0; // start of the text not yet hashed
    let mut i = 0;
    let mut ended = false; // a `;` was seen: only blanks and comments may follow
    while i < b.len() {
        let c = b[i];
        let class = CLASS[usize::from(c)];
        // Most of a statement is words, blanks and operators: they take no branch below.
        if class & SPECIAL == 0 {
            if class & BLANK != 0 {
                i += 1;
                continue;
            }
            if ended {
                return None;
            }
            if class & WORD == 0 {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < b.len() && CLASS[usize::from(b[i])] & IN_WORD != 0 {
                i += 1;
            }
            // E'...', B'...', X'...', N'...', U&'...': prefixed constants.
            if matches!(b.get(i), Some(b'\'' | b'&')) && i - start <= 1 {
                return None;
            }
            continue;
        }
        match c {
            b';' => {
                ended = true;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr(b, i, b'\n').map_or(b.len(), |n| n + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = block_comment_end(b, i)?,
            _ if ended => return None,
            b'\'' => {
                let end = quoted_end(b, i)?;
                // `'x'AS a` would become `$1AS a`, another token.
                if continues_on_next_line(b, end) || b.get(end).is_some_and(|&n| is_ident(n)) {
                    return None;
                }
                push(&mut h, &b[kept..i], b'S');
                lits.push(Lit {
                    span: i..end,
                    kind: LitKind::Str,
                });
                kept = end;
                i = end;
            }
            b'"' => i = quoted_end(b, i)?,
            b'$' => match b.get(i + 1) {
                // A parameter: a simple Query has none to bind.
                Some(d) if d.is_ascii_digit() => return None,
                _ => i = dollar_quote_end(b, i)?,
            },
            b'0'..=b'9' => {
                let end = digits_end(b, i);
                match b.get(end) {
                    Some(b'.' | b'e' | b'E') => i = number_end(b, i)?,
                    Some(&n) if is_ident(n) => return None,
                    _ => {
                        push(&mut h, &b[kept..i], b'N');
                        lits.push(Lit {
                            span: i..end,
                            kind: LitKind::Int,
                        });
                        kept = end;
                        i = end;
                    }
                }
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => i = number_end(b, i)?,
            _ => i += 1,
        }
    }
    Some(twox_hash::XxHash3_64::oneshot_with_seed(h, &b[kept..]))
}

/// Whether `a` and `b` have the same shape, given the literals `shape` found in each.
pub fn same_shape(a: &str, a_lits: &[Lit], b: &str, b_lits: &[Lit]) -> bool {
    if a_lits.len() != b_lits.len() {
        return false;
    }
    let (mut ka, mut kb) = (0, 0);
    for (la, lb) in a_lits.iter().zip(b_lits) {
        if la.kind != lb.kind || a[ka..la.span.start] != b[kb..lb.span.start] {
            return false;
        }
        ka = la.span.end;
        kb = lb.span.end;
    }
    a[ka..] == b[kb..]
}

/// `text` with literal i replaced by the parameter `$i+1`.
pub fn parameterized(text: &str, lits: &[Lit]) -> String {
    let mut out = String::with_capacity(text.len() + lits.len() * 2);
    let mut kept = 0;
    for (i, l) in lits.iter().enumerate() {
        out.push_str(&text[kept..l.span.start]);
        out.push('$');
        out.push_str(&(i + 1).to_string());
        kept = l.span.end;
    }
    out.push_str(&text[kept..]);
    out
}

/// Folds the text before a literal, and the literal's kind, into the shape hash.
fn push(h: &mut u64, kept: &[u8], marker: u8) {
    let seed = h.rotate_left(8) ^ u64::from(marker);
    *h = twox_hash::XxHash3_64::oneshot_with_seed(seed, kept);
}

/// A blank between tokens.
const BLANK: u8 = 1;
/// A byte that starts a word (a keyword or an unquoted identifier).
const WORD: u8 = 2;
/// A byte that continues a word.
const IN_WORD: u8 = 4;
/// A byte the lexer must look at: it may start a literal, a quoted name, a comment or the end.
const SPECIAL: u8 = 8;

/// Each byte's classes, so that the common bytes cost one lookup rather than a chain of tests.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') {
            k |= BLANK;
        }
        if is_ident_start(c) {
            k |= WORD;
        }
        if is_ident(c) {
            k |= IN_WORD;
        }
        if matches!(
            c,
            b';' | b'-' | b'/' | b'\'' | b'"' | b'$' | b'.' | b'0'..=b'9'
        ) {
            k |= SPECIAL;
        }
        t[i] = k;
        i += 1;
    }
    t
};

const fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

const fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn memchr(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    b[from..]
        .iter()
        .position(|&c| c == needle)
        .map(|p| from + p)
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The end of a numeric constant that is not a plain integer (`1.5`, `.5`, `1e10`, `2.`);
/// `None` if letters run on after it (`1.5x`), which PostgreSQL 15 reads in ways not worth
/// following.
fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let mut i = digits_end(b, i);
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i = digits_end(b, i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !b.get(j).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        i = digits_end(b, j);
    }
    match b.get(i) {
        Some(&n) if is_ident(n) || n == b'.' => None,
        _ => Some(i),
    }
}

/// The end of a `'...'` string or `"..."` identifier starting at `i` (past its closing quote,
/// a doubled quote standing for one).
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let mut j = i + 1;
    loop {
        let q = memchr(b, j, quote)?;
        if b.get(q + 1) == Some(&quote) {
            j = q + 2;
        } else {
            return Some(q + 1);
        }
    }
}

/// `'a'\n'b'` is one constant in PostgreSQL: a quote after blanks holding a newline.
fn continues_on_next_line(b: &[u8], mut i: usize) -> bool {
    let mut newline = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' | b'\r' => newline = true,
            b' ' | b'\t' | b'\x0c' => {}
            b'\'' => return newline,
            // A comment may sit between the parts, on the first part's line too: not followed.
            b'-' | b'/' => return true,
            _ => return false,
        }
        i += 1;
    }
    false
}

/// The end of a nested `/* ... */` comment starting at `i`.
fn block_comment_end(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < b.len() {
        match (b[j], b[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// The end of a `$tag$ ... $tag$` string starting at `i`; `None` if `$` starts none (an
/// operator or a malformed text: not worth guessing).
fn dollar_quote_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && b[j] != b'$' {
        if !(is_ident_start(b[j]) || (j > i + 1 && b[j].is_ascii_digit())) {
            return None;
        }
        j += 1;
    }
    if j >= b.len() {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let close = b[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + close + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(text: &str) -> Option<(u64, Vec<String>)> {
        let mut v = Vec::new();
        let h = shape(text, &mut v)?;
        Some((h, v.iter().map(|l| l.value(text).into_owned()).collect()))
    }

    #[test]
    fn finds_integers_and_strings() {
        let (_, v) = lits("SELECT a FROM t WHERE id = 42 AND name = 'O''Brien' LIMIT 5;").unwrap();
        assert_eq!(v, ["42", "O'Brien", "5"]);
        let (_, v) = lits("select x1, \"7\", $q$ 'no' 8 $q$ from t2 -- 9 '\n where k=3").unwrap();
        assert_eq!(v, ["3"]);
        let (_, v) = lits("SELECT 1.5, .5, 2e3, 3 /* 4 /* 5 */ '6' */").unwrap();
        assert_eq!(v, ["3"]);
    }

    #[test]
    fn same_shape_only_when_only_literals_differ() {
        let a = "SELECT v FROM t WHERE id = 1";
        let b = "SELECT v FROM t WHERE id = 123456";
        let c = "SELECT v FROM t WHERE id = '1'";
        let d = "SELECT w FROM t WHERE id = 1";
        let (ha, hb, hc, hd) = (
            lits(a).unwrap().0,
            lits(b).unwrap().0,
            lits(c).unwrap().0,
            lits(d).unwrap().0,
        );
        assert_eq!(ha, hb);
        assert_ne!(ha, hc);
        assert_ne!(ha, hd);
        let (mut la, mut lb, mut lc) = (vec![], vec![], vec![]);
        shape(a, &mut la);
        shape(b, &mut lb);
        shape(c, &mut lc);
        assert!(same_shape(a, &la, b, &lb));
        assert!(!same_shape(a, &la, c, &lc));
        // Moving text across a literal boundary changes the shape.
        let (e, f) = ("SELECT 12 + 3", "SELECT 1 + 23");
        let (mut le, mut lf) = (vec![], vec![]);
        assert_eq!(shape(e, &mut le), shape(f, &mut lf));
        assert!(same_shape(e, &le, f, &lf));
        assert_eq!(parameterized(a, &la), "SELECT v FROM t WHERE id = $1");
        assert_eq!(
            parameterized("SELECT 'a', 2", &{
                let mut v = vec![];
                shape("SELECT 'a', 2", &mut v);
                v
            }),
            "SELECT $1, $2"
        );
    }

    #[test]
    fn gives_up_where_unsure() {
        for text in [
            "SELECT E'a\\'b' FROM t WHERE id = 1",
            "SELECT x'1f', 1",
            "SELECT U&'d\\0061t' , 1",
            "SELECT 'a'\n'b', 1",
            "SELECT $1, 2",
            "SELECT 1; SELECT 2",
            "SELECT 1x",
            "SELECT 1.5e",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT /* unterminated",
            "SELECT $a$ unterminated",
            "SELECT 'a' -- c\n'b', 1",
            "SELECT 'x'AS a, 1",
        ] {
            assert!(lits(text).is_none(), "{text}");
        }
        // A trailing semicolon and comment are one statement still.
        assert!(lits("SELECT 1; -- done\n").is_some());
        assert!(lits("SELECT 1;;").is_some());
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let text = "SELECT \"a\"\"b\", $t$x$t$, 'it''s', 1.5e-3, 7 /* c /* d */ */ -- e\n;";
        for end in 0..=text.len() {
            if let Some(t) = text.get(..end) {
                let _ = lits(t);
            }
        }
    }
}
