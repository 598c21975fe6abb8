//! Codecs of the extended-protocol messages the proxy routes: Parse, Bind, Describe, Close,
//! Execute, and the few bodiless answers it gives itself.

use super::take_cstr;
use crate::error::Error;
use bytes::{BufMut, BytesMut};
use smallvec::SmallVec;

/// A Parse message: statement name, SQL text, parameter type OIDs.
#[derive(Debug)]
pub struct ParseMsg<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub types: Vec<u32>,
}

pub fn decode_parse(body: &[u8]) -> Result<ParseMsg<'_>, Error> {
    let mut b = body;
    let name = take_cstr(&mut b)?;
    let query = take_cstr(&mut b)?;
    let n = take_count(&mut b)?;
    let mut types = Vec::with_capacity(n.min(b.len() / 4));
    for _ in 0..n {
        types.push(take_i32(&mut b)? as u32);
    }
    ended(b)?;
    Ok(ParseMsg { name, query, types })
}

/// Checks a Describe, Close, Execute, Sync or Flush as PostgreSQL reads it, for the proxy
/// answers some of them itself and reads the rest only in part (other messages: Ok).
pub fn check_message(tag: u8, body: &[u8]) -> Result<(), Error> {
    let mut b = body;
    match tag {
        b'D' | b'C' => {
            // PostgreSQL's order: the name and the end of the message before the subtype.
            let (&kind, rest) = b.split_first().ok_or_else(truncated)?;
            b = rest;
            take_cstr(&mut b)?;
            ended(b)?;
            if kind != b'S' && kind != b'P' {
                let what = if tag == b'D' { "DESCRIBE" } else { "CLOSE" };
                return Err(Error::Protocol {
                    message: format!("invalid {what} message subtype {kind}"),
                });
            }
        }
        // Most Executes name the unnamed portal: nothing to read but the row count.
        b'E' if body.len() == 5 && body[0] == 0 => return Ok(()),
        b'E' => {
            take_cstr(&mut b)?;
            take_i32(&mut b)?;
        }
        b'S' | b'H' => {}
        _ => return Ok(()),
    }
    ended(b)
}

/// The statement name of a Parse body, and the rest of the body after it.
pub fn parse_name(body: &[u8]) -> Result<(&str, &[u8]), Error> {
    let mut rest = body;
    let name = take_cstr(&mut rest)?;
    Ok((name, rest))
}

/// True when `rest` (a Parse body after its name) is exactly `query` with these parameter
/// types: a driver's repeated Parse of the same statement, recognized without decoding it.
pub fn parse_rest_is(rest: &[u8], query: &str, types: &[u32]) -> bool {
    let q = query.len();
    rest.len() == q + 3 + 4 * types.len()
        && rest[..q] == *query.as_bytes()
        && rest[q] == 0
        && rest[q + 1..q + 3] == (types.len() as i16).to_be_bytes()
        && (rest[q + 3..].chunks_exact(4))
            .zip(types)
            .all(|(b, t)| *b == t.to_be_bytes())
}

/// A Bind message with its parameters.
#[derive(Debug)]
pub struct BindMsg<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Inline up to eight, so that decoding a usual Bind allocates nothing.
    pub formats: SmallVec<[i16; 8]>,
    pub params: SmallVec<[Option<&'a [u8]>; 8]>,
    /// Where the parameter formats begin, and where the result formats begin, in the body.
    params_at: usize,
    results_at: usize,
}

impl BindMsg<'_> {
    /// The format code of parameter `i` (0 text, 1 binary).
    pub fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// The portal and statement a Bind names, read without its parameters: most of the batch's
/// passes over a Bind need only these, and this allocates nothing.
#[derive(Debug)]
pub struct BindNames<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// The byte range of the statement name in the body (see `put_bind_renamed`).
    pub statement_at: std::ops::Range<usize>,
}

pub fn bind_names(body: &[u8]) -> Result<BindNames<'_>, Error> {
    let mut b = body;
    let portal = take_cstr(&mut b)?;
    let start = body.len() - b.len();
    let statement = take_cstr(&mut b)?;
    Ok(BindNames {
        portal,
        statement,
        statement_at: start..start + statement.len(),
    })
}

/// The portal a Bind names, read without the statement name: for the batch's passes that need
/// only that (`bind_names` validates both names).
pub fn bind_portal(body: &[u8]) -> Result<&str, Error> {
    let mut b = body;
    take_cstr(&mut b)
}

/// Where a Bind's statement name lies in its body (see `put_bind_renamed`), found by its
/// terminators alone: for a Bind whose names were read once already (`bind_names`).
pub fn bind_statement_at(body: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = body.iter().position(|&b| b == 0)? + 1;
    let len = body.get(start..)?.iter().position(|&b| b == 0)?;
    Some(start..start + len)
}

pub fn decode_bind(body: &[u8]) -> Result<BindMsg<'_>, Error> {
    let BindNames {
        portal,
        statement,
        statement_at,
    } = bind_names(body)?;
    let mut b = &body[statement_at.end + 1..];
    let params_at = body.len() - b.len();
    let nf = take_count(&mut b)?;
    let mut formats = SmallVec::with_capacity(nf.min(b.len() / 2));
    for _ in 0..nf {
        formats.push(take_i16(&mut b)?);
    }
    let np = take_count(&mut b)?;
    let mut params = SmallVec::with_capacity(np.min(b.len() / 4));
    for _ in 0..np {
        let len = take_i32(&mut b)?;
        if len < 0 {
            params.push(None);
        } else {
            let len = len as usize;
            let v = b.get(..len).ok_or_else(truncated)?;
            params.push(Some(v));
            b = &b[len..];
        }
    }
    let results_at = body.len() - b.len();
    // The result formats and the end are checked by whoever runs the Bind (`check_bind_end`),
    // after its parameters, as PostgreSQL does.
    Ok(BindMsg {
        portal,
        statement,
        formats,
        params,
        params_at,
        results_at,
    })
}

/// PostgreSQL's refusal of a Bind with formats for some of its parameters but not all.
pub fn check_bind_formats(bind: &BindMsg<'_>) -> Result<(), Error> {
    let (formats, supplied) = (bind.formats.len(), bind.params.len());
    if formats > 1 && formats != supplied {
        return Err(Error::Protocol {
            message: format!(
                "bind message has {formats} parameter formats but {supplied} parameters"
            ),
        });
    }
    Ok(())
}

/// The result formats of a Bind, and nothing after them: for the Binds the proxy runs itself.
pub fn check_bind_end(body: &[u8], bind: &BindMsg<'_>) -> Result<(), Error> {
    let mut b = body.get(bind.results_at..).ok_or_else(truncated)?;
    for _ in 0..take_count(&mut b)? {
        take_i16(&mut b)?;
    }
    ended(b)
}

/// The client's Bind for the unnamed portal and statement, with `extra` more result columns
/// in text format when the client listed a format per column (a merge's hidden columns).
pub fn put_bind_unnamed(out: &mut BytesMut, body: &[u8], bind: &BindMsg<'_>, extra: usize) {
    let params = &body[bind.params_at..bind.results_at];
    let mut results: Vec<i16> = Vec::new();
    let mut r = &body[bind.results_at..];
    if let Ok(n) = take_i16(&mut r) {
        for _ in 0..n {
            results.push(take_i16(&mut r).unwrap_or(0));
        }
    }
    if results.len() > 1 {
        results.extend(std::iter::repeat_n(0, extra));
    }
    out.put_u8(b'B');
    out.put_i32((4 + 2 + params.len() + 2 + 2 * results.len()) as i32);
    out.put_u8(0);
    out.put_u8(0);
    out.put_slice(params);
    out.put_i16(results.len() as i16);
    for f in results {
        out.put_i16(f);
    }
}

/// An Execute of the unnamed portal for all its rows.
pub fn put_execute_all(out: &mut BytesMut) {
    out.put_u8(b'E');
    out.put_i32(9);
    out.put_u8(0);
    out.put_i32(0);
}

/// The row limit of an Execute (0: all rows).
pub fn max_rows_of_execute(body: &[u8]) -> i32 {
    let mut b = body;
    match take_cstr(&mut b) {
        Ok(_) => take_i32(&mut b).unwrap_or(0),
        Err(_) => 0,
    }
}

/// A copy of a Bind message naming another prepared statement; `at` is the byte range of the
/// statement name in `body` (`BindNames::statement_at`).
pub fn put_bind_renamed(out: &mut BytesMut, body: &[u8], at: std::ops::Range<usize>, name: &str) {
    let len = body.len() - at.len() + name.len();
    out.put_u8(b'B');
    out.put_i32(len as i32 + 4);
    out.put_slice(&body[..at.start]);
    out.put_slice(name.as_bytes());
    out.put_slice(&body[at.end..]);
}

pub fn put_parse(out: &mut BytesMut, name: &str, query: &str, types: &[u32]) {
    let len = 4 + name.len() + 1 + query.len() + 1 + 2 + 4 * types.len();
    out.put_u8(b'P');
    out.put_i32(len as i32);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_slice(query.as_bytes());
    out.put_u8(0);
    out.put_i16(types.len() as i16);
    for t in types {
        out.put_u32(*t);
    }
}

/// Describe or Close of a statement ('S') or portal ('P').
pub fn put_target_message(out: &mut BytesMut, tag: u8, kind: u8, name: &str) {
    out.put_u8(tag);
    out.put_i32((4 + 1 + name.len() + 1) as i32);
    out.put_u8(kind);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
}

/// An Execute of a portal no client has: the shard answers it with an error, which rolls back
/// what the batch ran there before a refusal, as PostgreSQL rolls back a batch at its error.
pub fn put_failing_execute(out: &mut BytesMut) {
    const PORTAL: &[u8] = b"shardgate: the batch was refused\0";
    out.put_u8(b'E');
    out.put_i32((4 + PORTAL.len() + 4) as i32);
    out.put_slice(PORTAL);
    out.put_i32(0);
}

/// The kind byte and name of a Describe or Close body.
pub fn decode_target(body: &[u8]) -> Result<(u8, &str), Error> {
    let (&kind, mut rest) = body.split_first().ok_or_else(truncated)?;
    Ok((kind, take_cstr(&mut rest)?))
}

/// The portal an Execute names.
pub fn portal_of_execute(body: &[u8]) -> Option<&str> {
    let mut b = body;
    take_cstr(&mut b).ok()
}

/// A message with no body (ParseComplete '1', BindComplete '2', CloseComplete '3', NoData 'n').
pub fn put_empty(out: &mut BytesMut, tag: u8) {
    out.put_u8(tag);
    out.put_i32(4);
}

fn truncated() -> Error {
    Error::Protocol {
        message: "insufficient data left in message".into(),
    }
}

fn take_i16(buf: &mut &[u8]) -> Result<i16, Error> {
    let v = buf.get(..2).ok_or_else(truncated)?;
    let n = i16::from_be_bytes([v[0], v[1]]);
    *buf = &buf[2..];
    Ok(n)
}

/// A count of what follows: PostgreSQL reads it unsigned, so a negative one is a count far
/// past the message's end.
fn take_count(buf: &mut &[u8]) -> Result<usize, Error> {
    usize::try_from(take_i16(buf)?).map_err(|_| truncated())
}

/// Nothing may follow a message's last field.
pub(super) fn ended(rest: &[u8]) -> Result<(), Error> {
    match rest.is_empty() {
        true => Ok(()),
        false => Err(invalid_format()),
    }
}

/// PostgreSQL's error for bytes past a message's last field.
pub fn invalid_format() -> Error {
    Error::Protocol {
        message: "invalid message format".into(),
    }
}

fn take_i32(buf: &mut &[u8]) -> Result<i32, Error> {
    let v = buf.get(..4).ok_or_else(truncated)?;
    let n = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    *buf = &buf[4..];
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_body(stmt: &str, formats: &[i16], params: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_slice(b"portal\0");
        b.put_slice(stmt.as_bytes());
        b.put_u8(0);
        b.put_i16(formats.len() as i16);
        for f in formats {
            b.put_i16(*f);
        }
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
        b.put_i16(0);
        b.to_vec()
    }

    #[test]
    fn bind_decodes_and_renames() {
        let body = bind_body("s1", &[1], &[Some(&42i64.to_be_bytes()), None]);
        let bind = decode_bind(&body).unwrap();
        assert_eq!((bind.portal, bind.statement), ("portal", "s1"));
        assert_eq!(bind.params[..], [Some(&42i64.to_be_bytes()[..]), None]);
        assert_eq!((bind.format(0), bind.format(1)), (1, 1));
        let mut out = BytesMut::new();
        let names = bind_names(&body).unwrap();
        assert_eq!((names.portal, names.statement), ("portal", "s1"));
        assert_eq!(bind_portal(&body).unwrap(), "portal");
        assert_eq!(bind_statement_at(&body), Some(names.statement_at.clone()));
        assert_eq!(bind_statement_at(b"portal\0s1"), None, "no terminator");
        put_bind_renamed(&mut out, &body, names.statement_at, "sg_0123456789abcdef");
        let renamed = decode_bind(&out[5..]).unwrap();
        assert_eq!(renamed.statement, "sg_0123456789abcdef");
        assert_eq!(renamed.params[..], bind.params[..]);
        assert_eq!(
            i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            out.len() - 1
        );
    }

    #[test]
    fn parse_roundtrips_and_truncation_is_an_error() {
        let mut out = BytesMut::new();
        put_parse(&mut out, "a", "SELECT $1", &[20]);
        let p = decode_parse(&out[5..]).unwrap();
        assert_eq!((p.name, p.query, p.types), ("a", "SELECT $1", vec![20]));
        let (name, rest) = parse_name(&out[5..]).unwrap();
        assert_eq!(name, "a");
        assert!(parse_rest_is(rest, "SELECT $1", &[20]));
        assert!(!parse_rest_is(rest, "SELECT $1", &[23]));
        assert!(!parse_rest_is(rest, "SELECT $1", &[]));
        assert!(!parse_rest_is(rest, "SELECT $2", &[20]));
        assert!(!parse_rest_is(&rest[..rest.len() - 1], "SELECT $1", &[20]));
        let body = bind_body("s", &[0, 1, 0], &[Some(b"12345")]);
        for cut in 0..body.len() {
            // Every prefix is either an error or (never) a panic.
            let _ = decode_bind(&body[..cut]);
        }
        assert!(decode_bind(&body[..body.len() - 5]).is_err());
        assert!(decode_target(b"").is_err());
    }

    /// What PostgreSQL refuses in a message's layout, with its SQLSTATE: the proxy answers some
    /// messages itself, so it must refuse the same.
    #[test]
    fn malformed_messages_are_refused_as_postgres_refuses_them() {
        let code = |r: Result<(), Error>| r.err().map(|e| e.sqlstate());
        assert_eq!(code(check_message(b'D', b"Sname\0")), None);
        assert_eq!(code(check_message(b'C', b"P\0")), None);
        assert_eq!(code(check_message(b'E', b"\0\0\0\0\0")), None);
        assert_eq!(code(check_message(b'S', b"")), None);
        assert_eq!(code(check_message(b'Q', b"anything")), None);
        for (tag, body) in [
            (b'D', &b"X\0"[..]), // no such subtype
            (b'C', b"Sname"),    // no terminator
            (b'D', b"S\0junk"),  // something after the end
            (b'E', b"\0\0\0"),   // a row count cut short
            (b'S', b"\x01"),     // Sync has no body
            (b'H', b"\x01"),     // nor Flush
        ] {
            assert_eq!(code(check_message(tag, body)), Some("08P01"), "{body:?}");
        }
        assert_eq!(code(check_message(b'D', b"S\xff\0")), Some("22021"));
        // The subtype is checked after the name, as PostgreSQL reads it.
        assert_eq!(code(check_message(b'D', b"X\xff\0")), Some("22021"));

        let mut parse = BytesMut::new();
        put_parse(&mut parse, "a", "SELECT $1", &[20]);
        let mut junk = parse[5..].to_vec();
        junk.push(7);
        assert_eq!(
            decode_parse(&junk).err().map(|e| e.sqlstate()),
            Some("08P01")
        );
        // A negative count is a count past the end: 0xffff types would not fit.
        let negative = b"a\0SELECT 1\0\xff\xff";
        assert!(decode_parse(negative).is_err());

        // Formats for some parameters but not all; and the end after the result formats.
        let body = bind_body("s", &[0, 1], &[Some(b"1")]);
        let bind = decode_bind(&body).unwrap();
        assert_eq!(code(check_bind_formats(&bind)), Some("08P01"));
        let body = bind_body("s", &[1], &[Some(b"1"), Some(b"2")]);
        let bind = decode_bind(&body).unwrap();
        assert_eq!(code(check_bind_formats(&bind)), None);
        assert_eq!(code(check_bind_end(&body, &bind)), None);
        let mut junk = body.clone();
        junk.push(0);
        let bind = decode_bind(&junk).unwrap();
        assert_eq!(code(check_bind_end(&junk, &bind)), Some("08P01"));
    }
}
