//! Array parameter decoding tests: text and binary, malformed input, the element cap.

use super::*;
use crate::ring::oid;
use KeyType::{Int, Text, Uuid};

fn text(ty: KeyType, s: &str) -> Vec<Option<Key>> {
    match array_from_text(ty, s) {
        Ok(ArrayKeys::Keys(k)) => k,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn ints(v: &[Option<i64>]) -> Vec<Option<Key>> {
    v.iter().map(|k| k.map(Key::Int)).collect()
}

fn texts(v: &[Option<&str>]) -> Vec<Option<Key>> {
    v.iter().map(|k| k.map(|t| Key::Text(t.into()))).collect()
}

/// array_send's bytes for `elems` (each with its length prefix) in `dims` dimensions.
fn binary(dims: &[(i32, i32)], elem_oid: u32, elems: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(dims.len() as i32).to_be_bytes());
    b.extend_from_slice(&i32::from(elems.iter().any(Option::is_none)).to_be_bytes());
    b.extend_from_slice(&elem_oid.to_be_bytes());
    for (len, lower) in dims {
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&lower.to_be_bytes());
    }
    for e in elems {
        match e {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(e) => {
                b.extend_from_slice(&(e.len() as i32).to_be_bytes());
                b.extend_from_slice(e);
            }
        }
    }
    b
}

fn bin(ty: KeyType, b: &[u8]) -> Vec<Option<Key>> {
    match array_from_binary(ty, b) {
        Ok(ArrayKeys::Keys(k)) => k,
        other => panic!("{other:?}"),
    }
}

#[test]
fn text_arrays() {
    assert_eq!(text(Int, "{1,2,3}"), ints(&[Some(1), Some(2), Some(3)]));
    assert_eq!(
        text(Int, " { 1 , -2 ,\t3 } "),
        ints(&[Some(1), Some(-2), Some(3)])
    );
    assert_eq!(text(Int, "{}"), ints(&[]));
    assert_eq!(text(Int, " { } "), ints(&[]));
    assert_eq!(text(Int, "{NULL,4,null}"), ints(&[None, Some(4), None]));
    assert_eq!(text(Int, r#"{"1","2"}"#), ints(&[Some(1), Some(2)]));
    assert_eq!(
        text(Int, "{{1,2},{3,4}}"),
        ints(&[Some(1), Some(2), Some(3), Some(4)])
    );
    assert_eq!(text(Int, "[1:2]={7,8}"), ints(&[Some(7), Some(8)]));
    assert_eq!(
        text(Int, "[0:1][-1:0] = {{1,2},{3,4}}").len(),
        4,
        "dimension prefix"
    );
    assert_eq!(
        text(Text, r#"{"a b","c\"d",NULL,"NULL",\NULL, x y ,"",é}"#),
        texts(&[
            Some("a b"),
            Some("c\"d"),
            None,
            Some("NULL"),
            Some("NULL"),
            Some("x y"),
            Some(""),
            Some("é"),
        ])
    );
    // Escaped and quoted spaces are kept, unquoted ones around an element are not.
    assert_eq!(
        text(Text, r#"{ a\ ," b ",a"b"c,\\}"#),
        texts(&[Some("a "), Some(" b "), Some("abc"), Some("\\")])
    );
    let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(
        text(Uuid, &format!("{{{u},NULL}}")),
        vec![Some(Key::from_text(Uuid, u).unwrap()), None]
    );
}

#[test]
fn malformed_text_arrays() {
    for bad in [
        "",
        "1,2",
        "{",
        "}",
        "{1,2",
        "{1,,2}",
        "{,}",
        "{1,}",
        "{,1}",
        "{1}x",
        "{1}}",
        "{{1}",
        r#"{"a}"#,
        r#"{"a"b"#,
        "{a\\",
        "{1{2}}",
        "{1 2 {}",
        "{}{}",
        "[1:2]{1,2}",
        "[a]={1}",
        "[1:2:3]={1}",
        "{{{{{{{1}}}}}}}",
        "{1}{",
    ] {
        let e = array_from_text(Text, bad).unwrap_err();
        assert!(e.0.starts_with("malformed array literal"), "{bad:?}: {e}");
    }
    // Elements that are not keys of the type.
    let e = array_from_text(Int, "{1,x}").unwrap_err();
    assert!(e.0.contains("invalid input syntax for type bigint"), "{e}");
    assert!(array_from_text(Uuid, "{1}").is_err());
    assert!(array_from_text(Int, "{{{{{{1}}}}}}").is_ok());
    let long = format!("{{{}", "1,".repeat(10_000));
    assert!(array_from_text(Int, &long).unwrap_err().0.len() < 200);
}

#[test]
fn binary_arrays() {
    let one = 1i64.to_be_bytes();
    let two = 2i32.to_be_bytes();
    let b = binary(&[(3, 1)], oid::INT8, &[Some(&one), None, Some(&one)]);
    assert_eq!(bin(Int, &b), ints(&[Some(1), None, Some(1)]));
    let b = binary(&[(2, 1)], oid::INT4, &[Some(&two), Some(&two)]);
    assert_eq!(bin(Int, &b), ints(&[Some(2), Some(2)]));
    let b = binary(&[(2, 0), (1, 5)], oid::INT8, &[Some(&one), Some(&one)]);
    assert_eq!(bin(Int, &b), ints(&[Some(1), Some(1)]));
    assert_eq!(bin(Int, &binary(&[], oid::INT8, &[])), ints(&[]));
    assert_eq!(bin(Int, &binary(&[(0, 1)], oid::INT8, &[])), ints(&[]));
    let b = binary(&[(2, 1)], oid::TEXT, &[Some(b"a b"), Some("é".as_bytes())]);
    assert_eq!(bin(Text, &b), texts(&[Some("a b"), Some("é")]));
    let u = *b"0123456789abcdef";
    let b = binary(&[(1, 1)], oid::UUID, &[Some(&u)]);
    assert_eq!(bin(Uuid, &b), vec![Some(Key::Uuid(u))]);
}

#[test]
fn malformed_binary_arrays() {
    let one = 1i64.to_be_bytes();
    let good = binary(&[(2, 1)], oid::INT8, &[Some(&one), Some(&one)]);
    for cut in 0..good.len() {
        assert!(
            array_from_binary(Int, &good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert!(array_from_binary(Int, &long).is_err());
    let mut bad_flags = good.clone();
    bad_flags[7] = 2;
    assert!(array_from_binary(Int, &bad_flags).is_err());
    for ndim in [-1i32, 7] {
        let mut b = good.clone();
        b[..4].copy_from_slice(&ndim.to_be_bytes());
        assert!(array_from_binary(Int, &b).is_err(), "ndim {ndim}");
    }
    assert!(array_from_binary(Int, &binary(&[(-1, 1)], oid::INT8, &[])).is_err());
    assert!(array_from_binary(Int, &binary(&[(1, i32::MAX)], oid::INT8, &[Some(&one)])).is_err());
    let mut bad_len = binary(&[(1, 1)], oid::INT8, &[Some(&one)]);
    bad_len[20..24].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(array_from_binary(Int, &bad_len).is_err());
    // Elements of the wrong type or length.
    let b = binary(&[(1, 1)], oid::UUID, &[Some(&[0; 16])]);
    assert!(array_from_binary(Int, &b).unwrap_err().0.contains("uuid"));
    let b = binary(&[(1, 1)], oid::INT8, &[Some(&[0; 3])]);
    assert!(array_from_binary(Int, &b).is_err());
}

#[test]
fn huge_arrays_are_not_read() {
    let claim = binary(&[(100_001, 1)], oid::INT8, &[]);
    assert_eq!(array_from_binary(Int, &claim), Ok(ArrayKeys::TooMany));
    let claim = binary(&[(1 << 20, 1), (1 << 20, 1)], oid::INT8, &[]);
    assert_eq!(array_from_binary(Int, &claim), Ok(ArrayKeys::TooMany));
    // A header that claims fewer elements than the cap but sends none allocates little.
    let liar = binary(&[(MAX_ARRAY_KEYS as i32, 1)], oid::INT8, &[]);
    assert!(array_from_binary(Int, &liar).is_err());
    let big = format!("{{{}0}}", "1,".repeat(MAX_ARRAY_KEYS));
    assert_eq!(array_from_text(Int, &big), Ok(ArrayKeys::TooMany));
    let at_cap = format!("{{{}0}}", "1,".repeat(MAX_ARRAY_KEYS - 1));
    assert_eq!(text(Int, &at_cap).len(), MAX_ARRAY_KEYS);
}

#[test]
fn random_input_never_panics() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    };
    let alphabet = b"{}{},,\"\\ 12NULnul[]:=-\t\xc3\xa9";
    let seed = binary(&[(2, 1), (1, 1)], oid::INT8, &[Some(&[0; 8]), None]);
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let t: Vec<u8> = (0..len)
            .map(|_| alphabet[next() as usize % alphabet.len()])
            .collect();
        let t = String::from_utf8_lossy(&t);
        for ty in [Int, Text, Uuid] {
            let _ = array_from_text(ty, &t);
        }
        let mut b = seed.clone();
        for _ in 0..(next() % 4) {
            let at = next() as usize % b.len();
            b[at] = next() as u8;
        }
        b.truncate(next() as usize % (b.len() + 1));
        for ty in [Int, Text, Uuid] {
            let _ = array_from_binary(ty, &b);
        }
    }
}
