//! float4/float8 text output exactly as PostgreSQL 12+ prints it with extra_float_digits = 1.
//!
//! PostgreSQL's Ryu (src/common/d2s.c, f2s.c, with STRICTLY_SHORTEST 0) picks the fewest digits
//! that lie strictly between the value's rounding boundaries, then the candidate nearest the
//! exact value, ties to even. Rust's `{:e}` differs in both respects (it accepts a boundary when
//! the mantissa is even and rounds ties up), so it only seeds the search here; the digits are
//! settled with exact integer arithmetic.

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::One;

/// d2s.c's `to_chars` prints fixed-point while the decimal exponent is in [-4, 15).
const FLOAT8_FIXED_MAX_EXP: i32 = 15;
/// f2s.c's `to_chars` prints fixed-point while the decimal exponent is in [-4, 6).
const FLOAT4_FIXED_MAX_EXP: i32 = 6;
const FIXED_MIN_EXP: i32 = -4;

pub fn float8_text(v: f64) -> String {
    if let Some(s) = special(v.is_nan(), v.is_infinite(), v == 0.0, v.is_sign_negative()) {
        return s.into();
    }
    let bits = v.to_bits();
    let (man, exp) = (bits & ((1 << 52) - 1), ((bits >> 52) & 0x7ff) as i32);
    let b = Binary::new(man, exp, 52, 1075);
    let (digits, e) = shortest(&b, &format!("{:e}", v.abs()));
    layout(v < 0.0, &digits, e, FLOAT8_FIXED_MAX_EXP)
}

pub fn float4_text(v: f32) -> String {
    if let Some(s) = special(v.is_nan(), v.is_infinite(), v == 0.0, v.is_sign_negative()) {
        return s.into();
    }
    let bits = u64::from(v.to_bits());
    let (man, exp) = (bits & ((1 << 23) - 1), ((bits >> 23) & 0xff) as i32);
    let b = Binary::new(man, exp, 23, 150);
    let (digits, e) = shortest(&b, &format!("{:e}", v.abs()));
    layout(v < 0.0, &digits, e, FLOAT4_FIXED_MAX_EXP)
}

fn special(nan: bool, inf: bool, zero: bool, neg: bool) -> Option<&'static str> {
    match (nan, inf, zero, neg) {
        (true, ..) => Some("NaN"),
        (_, true, _, false) => Some("Infinity"),
        (_, true, _, true) => Some("-Infinity"),
        (_, _, true, false) => Some("0"),
        (_, _, true, true) => Some("-0"),
        _ => None,
    }
}

/// A positive finite float as Ryu sees it: the value is 4·m2·2^(e2-2), its rounding interval
/// runs from (4·m2 - 1 - mm_shift)·2^(e2-2) to (4·m2 + 2)·2^(e2-2), both ends excluded.
struct Binary {
    m2: u64,
    e2: i32,
    mm_shift: u64,
}

impl Binary {
    fn new(man: u64, exp: i32, mantissa_bits: u32, bias_plus_bits: i32) -> Binary {
        let (m2, e2) = if exp == 0 {
            (man, 1 - bias_plus_bits)
        } else {
            (man | (1 << mantissa_bits), exp - bias_plus_bits)
        };
        // The gap below a power of two is half the gap above it.
        let mm_shift = u64::from(man != 0 || exp <= 1);
        Binary { m2, e2, mm_shift }
    }

    /// (lower, value, upper) divided by 10^p, each as a numerator over the shared denominator.
    fn scaled(&self, p: i32) -> ([BigInt; 3], BigInt) {
        let s = self.e2 - 2;
        let mut num_scale = BigInt::one() << s.max(0) as usize;
        let mut den = BigInt::one() << (-s).max(0) as usize;
        if p >= 0 {
            den *= num_traits::pow(BigInt::from(10u8), p as usize);
        } else {
            num_scale *= num_traits::pow(BigInt::from(10u8), (-p) as usize);
        }
        let mv = 4 * self.m2;
        let nums = [mv - 1 - self.mm_shift, mv, mv + 2].map(|x| BigInt::from(x) * &num_scale);
        (nums, den)
    }

    /// The integers k with k·10^p strictly inside the rounding interval, if any.
    fn candidates(&self, p: i32) -> Option<(BigInt, BigInt)> {
        let ([lo, _, hi], den) = self.scaled(p);
        let k_lo = lo.div_floor(&den) + 1u8;
        let k_hi = (hi - 1u8).div_floor(&den);
        (k_lo <= k_hi).then_some((k_lo, k_hi))
    }
}

/// Ryu's digits and decimal exponent (of the first digit) for `b`; `seed` is Rust's shortest
/// form, whose length is never more than Ryu's and at most a digit or so less.
fn shortest(b: &Binary, seed: &str) -> (String, i32) {
    let (mant, exp) = seed.split_once('e').unwrap_or((seed, "0"));
    let n = mant.chars().filter(char::is_ascii_digit).count() as i32;
    let mut p = exp.parse::<i32>().unwrap_or(0) - (n - 1);
    // Bounded walks keep a wrong seed from looping; 40 digits exceed any float's need.
    for _ in 0..40 {
        if b.candidates(p + 1).is_none() {
            break;
        }
        p += 1;
    }
    let mut range = b.candidates(p);
    for _ in 0..40 {
        if range.is_some() {
            break;
        }
        p -= 1;
        range = b.candidates(p);
    }
    let Some((k_lo, k_hi)) = range else {
        return (mant.replace('.', ""), exp.parse().unwrap_or(0));
    };
    let ([_, mv, _], den) = b.scaled(p);
    let (q, r) = mv.div_rem(&den);
    let twice: BigInt = r * 2;
    let nearest = if twice > den || (twice == den && q.is_odd()) {
        q + 1
    } else {
        q
    };
    let k = nearest.clamp(k_lo, k_hi);
    let digits = k.to_string();
    let e = p + digits.len() as i32 - 1;
    (digits, e)
}

/// d2s.c/f2s.c's layout of `digits` × 10^(exp - len + 1): fixed-point for exponents in
/// [-4, fixed_max_exp), else "d.ddde±XX" with at least two exponent digits.
fn layout(neg: bool, digits: &str, exp: i32, fixed_max_exp: i32) -> String {
    let olength = digits.len() as i32;
    let mut out = String::with_capacity(olength as usize + 8);
    if neg {
        out.push('-');
    }
    if (FIXED_MIN_EXP..fixed_max_exp).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(digits);
        } else if exp + 1 >= olength {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (exp + 1 - olength) as usize));
        } else {
            let (int, frac) = digits.split_at(exp as usize + 1);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str(&digits[..1]);
        if olength > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every expected string below is what PostgreSQL 15.18 printed for the same value. (The
    /// implementation was also compared with PostgreSQL on ~75,000 random, power-of-two,
    /// subnormal and integral float4/float8 values, all identical.)
    #[test]
    fn float8_matches_postgres() {
        let cases: &[(f64, &str)] = &[
            (1e15, "1e+15"),
            (1e16, "1e+16"),
            (123456789012345680000.0, "1.2345678901234568e+20"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "1e+20"),
            (1.5e-5, "1.5e-05"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (2.5e-310, "2.5e-310"),
            (f64::MAX, "1.7976931348623157e+308"),
            (100.0, "100"),
            (0.5, "0.5"),
            (-12.25, "-12.25"),
            (-0.000123, "-0.000123"),
            (9.999999999999999e14, "999999999999999.9"),
            (5e-324, "5e-324"),
            (-7.5e15, "-7.5e+15"),
            // Exact ties: Ryu rounds the last digit to even where `{:e}` rounds up.
            (-1703180826890560.2, "-1.7031808268905602e+15"),
            (-253971092206524.12, "-253971092206524.12"),
            (574786098743012.2, "574786098743012.2"),
            // A shorter candidate sits exactly on a rounding boundary: Ryu (as PostgreSQL
            // builds it) refuses boundaries, `{:e}` accepts them for even mantissas.
            (2.377354342734871e16, "2.3773543427348712e+16"),
            (1.01957424433941e17, "1.0195742443394099e+17"),
            (8.98846567431158e307, "8.98846567431158e+307"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
        ];
        for (v, want) in cases {
            assert_eq!(float8_text(*v), *want, "{v:e}");
        }
    }

    #[test]
    fn float4_matches_postgres() {
        let cases: &[(f32, &str)] = &[
            (1e6, "1e+06"),
            (1e7, "1e+07"),
            (100000.0, "100000"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (16777215.0, "1.6777215e+07"),
            (-0.0, "-0"),
            (1.0 / 3.0, "0.33333334"),
            (f32::MAX, "3.4028235e+38"),
            (1e-45, "1e-45"),
            (65173008.0, "6.5173008e+07"),
            (1.1754944e-38, "1.1754944e-38"),
            (99999.99, "99999.99"),
            (999999.9, "999999.9"),
            (0.00012345, "0.00012345"),
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
        ];
        for (v, want) in cases {
            assert_eq!(float4_text(*v), *want, "{v:e}");
        }
    }

    #[test]
    fn output_parses_back_to_the_same_value() {
        for v in [
            0.1f64,
            1e-7,
            123.456,
            9.999999999999999e14,
            5e-324,
            1e308,
            -7.5e15,
        ] {
            assert_eq!(float8_text(v).parse::<f64>().unwrap(), v);
        }
    }
}
