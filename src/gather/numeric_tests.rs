//! Expected strings and bytes in this file were printed by PostgreSQL 15.18 for the same inputs
//! (`numeric_send(...)`, `SELECT avg(x) FROM (VALUES ...)`). The implementation was also
//! compared with PostgreSQL on 20,000 random values and counts (text, numeric_send, and
//! `sum / count::numeric`), all identical.

use super::*;

fn n(s: &str) -> Numeric {
    Numeric::parse(s).unwrap_or_else(|| panic!("cannot parse {s}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn text_round_trips_keep_the_display_scale() {
    for s in [
        "0",
        "0.000",
        "12.50",
        "-12.340",
        "1",
        "-1",
        "0.00012",
        "-0.5",
        "123456789012345678901234567890.000000000000000000001",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        assert_eq!(n(s).to_text(), s);
    }
}

#[test]
fn parse_accepts_what_numeric_in_accepts() {
    // SELECT 1.5e3::numeric, 1.5e-3::numeric, -0.000::numeric, 1e-20::numeric
    assert_eq!(n("1.5e3").to_text(), "1500");
    assert_eq!(n("1.5e-3").to_text(), "0.0015");
    assert_eq!(n("-0.000").to_text(), "0.000");
    assert_eq!(n("1e-20").to_text(), "0.00000000000000000001");
    assert_eq!(n("1E+2").to_text(), "100");
    assert_eq!(n(" 7 ").to_text(), "7");
    assert_eq!(n("+.5").to_text(), "0.5");
    assert_eq!(n("5.").to_text(), "5");
    assert!(matches!(n("nan"), Numeric::NaN));
    assert!(matches!(n("inf"), Numeric::PosInf));
    assert!(matches!(n("-infinity"), Numeric::NegInf));
    for bad in [
        "", "-", ".", "1.2.3", "1e", "1e+", "abc", "1,5", "--1", "1e99999", "1e1001", "0x10",
    ] {
        assert!(Numeric::parse(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn to_binary_matches_numeric_send() {
    let cases = [
        ("12.50", "0002000000000002000c1388"),
        ("0", "0000000000000000"),
        ("0.00", "0000000000000002"),
        ("NaN", "00000000c0000000"),
        ("Infinity", "00000000d0000020"),
        ("-Infinity", "00000000f0000020"),
        ("-12345678.9", "000300014000000104d2162e2328"),
        ("0.0001", "0001ffff000000040001"),
        ("0.00001", "0001fffe0000000503e8"),
        ("10000", "00010001000000000001"),
        ("100000000000000000000", "00010005000000000001"),
        ("-0.5", "0001ffff400000011388"),
        ("1", "00010000000000000001"),
        ("-1", "00010000400000000001"),
        ("9999", "0001000000000000270f"),
        ("10000.5", "0003000100000001000100001388"),
        ("0.1", "0001ffff0000000103e8"),
        ("0.12345", "0002ffff0000000504d21388"),
        (
            "1234567890.0987654321",
            "000600020000000a000c0d801ed203db198f0834",
        ),
        ("0.00000000000000000001", "0001fffb000000140001"),
        ("123.4500", "0002000000000004007b1194"),
        ("-0.00012", "0002ffff40000005000107d0"),
    ];
    for (text, bin) in cases {
        let want = hex(bin);
        assert_eq!(n(text).to_binary(), want, "{text}");
        let back = Numeric::from_binary(&want).unwrap();
        assert_eq!(back.to_text(), text, "{bin}");
    }
}

#[test]
fn from_binary_reads_unnormalized_input_and_truncates_past_dscale() {
    // 0001 0000 | digits with leading and trailing zero groups, weight 1, dscale 2.
    let raw = hex(
        "0004000100000002", /* ndigits 4, weight 1, +, dscale 2 */
    );
    let mut raw = raw;
    for d in [0u16, 12, 3400, 0] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    assert_eq!(Numeric::from_binary(&raw).unwrap().to_text(), "12.34");
    // numeric_recv truncates digits beyond dscale: 1.23456 with dscale 2 reads as 1.23.
    let mut raw = hex("0003000000000002");
    for d in [1u16, 2345, 6000] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    assert_eq!(Numeric::from_binary(&raw).unwrap().to_text(), "1.23");
}

#[test]
fn from_binary_rejects_malformed_input_without_panicking() {
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        hex("000000000000"),
        hex("0001000000000000"),         // ndigits 1 but no digit
        hex("00010000000000002710"),     // digit 10000
        hex("000000000000000000"),       // an odd byte after the header
        hex("0000000000004000"),         // dscale > 0x3FFF
        hex("ffff000000000000"),         // negative ndigits
        hex("0000000012340000"),         // unknown sign
        hex("000100000000000000010000"), // trailing garbage
    ];
    for b in bad {
        assert!(Numeric::from_binary(&b).is_none(), "{b:02x?}");
    }
    // Extreme weights still decode, quickly, to the value numeric_recv would build.
    let mut huge = hex("00017fff00003fff");
    huge.extend_from_slice(&1u16.to_be_bytes());
    let v = Numeric::from_binary(&huge).unwrap();
    assert_eq!(v.to_text().len(), 1 + 4 * 32767 + 1 + 0x3FFF);
    let mut tiny = hex("0001800000000004");
    tiny.extend_from_slice(&1u16.to_be_bytes());
    assert_eq!(Numeric::from_binary(&tiny).unwrap().to_text(), "0.0000");
}

#[test]
fn ordering_puts_nan_above_infinity() {
    let order = [
        "-Infinity",
        "-1e30",
        "-1.5",
        "-1.49999999999999999999",
        "0",
        "0.000001",
        "1",
        "1.0000000000000000000001",
        "99999999999999999999999",
        "Infinity",
        "NaN",
    ];
    for (i, a) in order.iter().enumerate() {
        for (j, b) in order.iter().enumerate() {
            assert_eq!(n(a).cmp(&n(b)), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(n("1.0").cmp(&n("1.000")), Ordering::Equal);
    assert_eq!(n("-0.00").cmp(&n("0")), Ordering::Equal);
    assert_eq!(n("NaN").cmp(&n("NaN")), Ordering::Equal);
    assert_eq!(n("Infinity").cmp(&n("Infinity")), Ordering::Equal);
}

#[test]
fn add_follows_postgres_rules() {
    // SELECT sum(x) FROM (VALUES (1.5),(2.25)) v(x) = 3.75
    assert_eq!(n("1.5").add(&n("2.25")).to_text(), "3.75");
    assert_eq!(n("1.50").add(&n("-1.5")).to_text(), "0.00");
    assert_eq!(n("1e20").add(&n("3")).to_text(), "100000000000000000003");
    assert_eq!(n("NaN").add(&n("Infinity")).to_text(), "NaN");
    assert_eq!(n("Infinity").add(&n("-Infinity")).to_text(), "NaN");
    assert_eq!(n("-Infinity").add(&n("5")).to_text(), "-Infinity");
    assert_eq!(n("5").add(&n("Infinity")).to_text(), "Infinity");
    assert_eq!(Numeric::from_i128(-7).add(&n("0.001")).to_text(), "-6.999");
    assert_eq!(
        Numeric::from_i128(i128::MAX).to_text(),
        i128::MAX.to_string()
    );
}

/// avg over the listed values, summed the way the shards and the proxy would.
fn avg_of(values: &[&str]) -> String {
    let sum = values
        .iter()
        .fold(Numeric::from_i128(0), |acc, v| acc.add(&n(v)));
    Numeric::avg(&sum, values.len() as i64).to_text()
}

#[test]
fn avg_matches_postgres() {
    let cases: &[(&[&str], &str)] = &[
        (&["1", "2"], "1.5000000000000000"),
        (&["0", "0"], "0.00000000000000000000"),
        (&["1", "2", "4"], "2.3333333333333333"),
        (&["12.50", "1.25"], "6.8750000000000000"),
        (&["1e20", "3"], "50000000000000000002"),
        (
            &["0.00001", "0.00002", "0.00004"],
            "0.000023333333333333333333",
        ),
        (&["-5", "-2"], "-3.5000000000000000"),
        (&["9999", "9999"], "9999.0000000000000000"),
        (&["10000", "10000", "10000"], "10000.0000000000000000"),
        (&["1.00000000000000000001", "2"], "1.50000000000000000001"),
        (&["1", "2", "3"], "2.0000000000000000"),
        (&["0.001", "0.002"], "0.00150000000000000000"),
        (&["123456789.123", "1"], "61728395.061500000000"),
        (
            &["1e-30", "0"],
            "0.000000000000000000000000000000500000000000000000",
        ),
        (&["5"], "5.0000000000000000"),
        (&["19999", "0"], "9999.5000000000000000"),
        (&["-1"; 7], "-1.00000000000000000000"),
        (&["2", "1"], "1.5000000000000000"),
        (&["-1", "-2", "-2"], "-1.6666666666666667"),
        (&["0.5", "0"], "0.25000000000000000000"),
        (&["99999999", "1"], "50000000.000000000000"),
        (&["-0.00005", "0"], "-0.000025000000000000000000"),
        (&["Infinity", "1"], "Infinity"),
        (&["Infinity", "-Infinity"], "NaN"),
        (&["NaN", "1"], "NaN"),
        (&["-Infinity", "1"], "-Infinity"),
    ];
    for (values, want) in cases {
        assert_eq!(avg_of(values), *want, "avg of {values:?}");
    }
}

#[test]
fn avg_of_large_counts_and_the_scale_clamp() {
    // SELECT avg(x) FROM generate_series(1, 12345) x (as numeric): sum 76205685
    assert_eq!(
        Numeric::avg(&n("76205685"), 12345).to_text(),
        "6173.0000000000000000"
    );
    // generate_series(1, 20000): sum 200010000
    assert_eq!(
        Numeric::avg(&n("200010000"), 20000).to_text(),
        "10000.5000000000000000"
    );
    // avg of 1e-990 and 0 wants more than 1000 digits of scale and is clamped to 1000.
    let got = avg_of(&["1e-990", "0"]);
    let want = format!("0.{}5{}", "0".repeat(990), "0".repeat(9));
    assert_eq!(got, want);
    assert_eq!(Numeric::avg(&n("1"), 0).to_text(), "NaN");
}

#[test]
fn normalized_ignores_display_scale() {
    assert_eq!(n("1.0").normalized(), n("1.00").normalized());
    assert_eq!(n("100").normalized(), n("1e2").normalized());
    assert_eq!(n("0.000").normalized(), n("0").normalized());
    assert_ne!(n("1").normalized(), n("-1").normalized());
    assert_ne!(n("10").normalized(), n("1").normalized());
    assert_eq!(n("NaN").normalized(), None);
}
