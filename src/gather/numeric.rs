//! PostgreSQL's `numeric`: exact decimal values, their text and binary wire forms, and the
//! sum/avg arithmetic whose result scale must match what one PostgreSQL server would print.

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{Signed, Zero};
use std::cmp::Ordering;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;
/// numeric_recv rejects larger display scales.
const DSCALE_MAX: u16 = 0x3FFF;
const DEC_DIGITS: i64 = 4;
const NBASE: u16 = 10000;
const MIN_SIG_DIGITS: i64 = 16;
const MAX_DISPLAY_SCALE: i64 = 1000;
/// numeric_in refuses exponents beyond NUMERIC_MAX_PRECISION; so do we, which also bounds the
/// size of the numbers a hostile string can make us build.
const MAX_EXPONENT: i64 = 1000;

#[derive(Clone, Debug)]
pub enum Numeric {
    NaN,
    PosInf,
    NegInf,
    /// value = mantissa / 10^dscale; dscale is the display scale PostgreSQL prints.
    Finite {
        mantissa: BigInt,
        dscale: u16,
    },
}

fn pow10(n: u64) -> BigInt {
    num_traits::pow(BigInt::from(10u8), n as usize)
}

/// `m * 10^from` re-expressed with `to >= from` fractional digits.
fn rescale(m: &BigInt, from: u16, to: u16) -> BigInt {
    if to == from {
        m.clone()
    } else {
        m * pow10(u64::from(to - from))
    }
}

impl Numeric {
    pub fn parse(text: &str) -> Option<Numeric> {
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Some(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => return Some(Numeric::PosInf),
            "-infinity" | "-inf" => return Some(Numeric::NegInf),
            _ => {}
        }
        let (neg, body) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (num, exp) = match body.find(['e', 'E']) {
            Some(i) => {
                let e = &body[i + 1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                // Long digit strings would overflow the parse; they are out of range anyway.
                let e: i64 = e.parse().ok()?;
                if e.abs() > MAX_EXPONENT {
                    return None;
                }
                (&body[..i], e)
            }
            None => (body, 0),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let mut digits = String::with_capacity(int.len() + frac.len());
        digits.push_str(int);
        digits.push_str(frac);
        let mut mantissa: BigInt = digits.parse().ok()?;
        // numeric_in: dscale = digits after the point minus the exponent, never below zero.
        let scale = frac.len() as i64 - exp;
        let dscale = if scale < 0 {
            mantissa *= pow10((-scale) as u64);
            0
        } else {
            scale
        };
        if dscale > i64::from(DSCALE_MAX) {
            return None;
        }
        if neg {
            mantissa = -mantissa;
        }
        Some(Numeric::Finite {
            mantissa,
            dscale: dscale as u16,
        })
    }

    pub fn from_binary(b: &[u8]) -> Option<Numeric> {
        let word = |i: usize| -> Option<u16> {
            let s = b.get(i..i + 2)?;
            Some(u16::from_be_bytes([s[0], s[1]]))
        };
        let ndigits = word(0)? as i16;
        let weight = i64::from(word(2)? as i16);
        let sign = word(4)?;
        let dscale = word(6)?;
        if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize {
            return None;
        }
        match sign {
            SIGN_NAN => return Some(Numeric::NaN),
            SIGN_PINF => return Some(Numeric::PosInf),
            SIGN_NINF => return Some(Numeric::NegInf),
            SIGN_POS | SIGN_NEG => {}
            _ => return None,
        }
        if dscale > DSCALE_MAX {
            return None;
        }
        let mut digits = Vec::with_capacity(ndigits as usize);
        for i in 0..ndigits as usize {
            let d = word(8 + 2 * i)?;
            if d >= NBASE {
                return None;
            }
            digits.push(d);
        }
        // numeric_recv truncates digits beyond dscale; dropping them before building the
        // number also keeps a huge negative weight from costing a huge division.
        let frac_digits = (i64::from(dscale) + DEC_DIGITS - 1) / DEC_DIGITS;
        let keep = (weight + frac_digits + 1).clamp(0, digits.len() as i64) as usize;
        digits.truncate(keep);
        let mut n = BigInt::zero();
        for chunk in digits.chunks(4) {
            let mut acc: u64 = 0;
            for &d in chunk {
                acc = acc * u64::from(NBASE) + u64::from(d);
            }
            n = n * BigInt::from(u64::from(NBASE).pow(chunk.len() as u32)) + acc;
        }
        let e = DEC_DIGITS * (weight - (digits.len() as i64 - 1)) + i64::from(dscale);
        let mut mantissa = if digits.is_empty() {
            BigInt::zero()
        } else if e >= 0 {
            n * pow10(e as u64)
        } else {
            n / pow10((-e) as u64)
        };
        if sign == SIGN_NEG {
            mantissa = -mantissa;
        }
        Some(Numeric::Finite { mantissa, dscale })
    }

    pub fn from_i128(v: i128) -> Numeric {
        Numeric::Finite {
            mantissa: BigInt::from(v),
            dscale: 0,
        }
    }

    pub fn to_text(&self) -> String {
        let (mantissa, dscale) = match self {
            Numeric::NaN => return "NaN".into(),
            Numeric::PosInf => return "Infinity".into(),
            Numeric::NegInf => return "-Infinity".into(),
            Numeric::Finite { mantissa, dscale } => (mantissa, usize::from(*dscale)),
        };
        let digits = mantissa.magnitude().to_string();
        let mut out = String::with_capacity(digits.len() + dscale + 3);
        if mantissa.is_negative() {
            out.push('-');
        }
        if digits.len() > dscale {
            let (int, frac) = digits.split_at(digits.len() - dscale);
            out.push_str(int);
            if dscale > 0 {
                out.push('.');
                out.push_str(frac);
            }
        } else {
            out.push('0');
            if dscale > 0 {
                out.push('.');
                out.extend(std::iter::repeat_n('0', dscale - digits.len()));
                out.push_str(&digits);
            }
        }
        out
    }

    pub fn to_binary(&self) -> Vec<u8> {
        // A special value's header is NUMERIC_SHORT-shaped, so numeric_send reads its dscale
        // field out of the sign bits: 0 for NaN, 32 for the infinities.
        let (mantissa, dscale) = match self {
            Numeric::NaN => return header(0, 0, SIGN_NAN, 0),
            Numeric::PosInf => return header(0, 0, SIGN_PINF, 32),
            Numeric::NegInf => return header(0, 0, SIGN_NINF, 32),
            Numeric::Finite { mantissa, dscale } => (mantissa, *dscale),
        };
        if mantissa.is_zero() {
            return header(0, 0, SIGN_POS, dscale);
        }
        let pad = (DEC_DIGITS - i64::from(dscale) % DEC_DIGITS) % DEC_DIGITS;
        let frac_groups = (i64::from(dscale) + pad) / DEC_DIGITS;
        let mut dec = (mantissa.magnitude() * pow10(pad as u64).magnitude()).to_string();
        let lead = (DEC_DIGITS as usize - dec.len() % 4) % 4;
        dec.insert_str(0, &"000"[..lead]);
        let mut groups: Vec<u16> = dec
            .as_bytes()
            .chunks(4)
            .map(|g| g.iter().fold(0u16, |acc, c| acc * 10 + u16::from(c - b'0')))
            .collect();
        let weight = groups.len() as i64 - 1 - frac_groups;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let sign = if mantissa.is_negative() {
            SIGN_NEG
        } else {
            SIGN_POS
        };
        // Values beyond PostgreSQL's own range cannot come from a shard; saturate, don't wrap.
        let ndigits = groups.len().min(i16::MAX as usize);
        let weight = weight.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        let mut out = header(ndigits as i16, weight, sign, dscale);
        for g in &groups[..ndigits] {
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }

    pub fn add(&self, o: &Numeric) -> Numeric {
        use Numeric::*;
        match (self, o) {
            (NaN, _) | (_, NaN) | (PosInf, NegInf) | (NegInf, PosInf) => NaN,
            (PosInf, _) | (_, PosInf) => PosInf,
            (NegInf, _) | (_, NegInf) => NegInf,
            (
                Finite {
                    mantissa: a,
                    dscale: da,
                },
                Finite {
                    mantissa: b,
                    dscale: db,
                },
            ) => {
                let dscale = *da.max(db);
                Finite {
                    mantissa: rescale(a, *da, dscale) + rescale(b, *db, dscale),
                    dscale,
                }
            }
        }
    }

    /// numeric_avg's final step: numeric_div(sum, count) at select_div_scale's scale.
    pub fn avg(sum: &Numeric, count: i64) -> Numeric {
        let (m, ds) = match sum {
            Numeric::Finite { mantissa, dscale } => (mantissa, *dscale),
            // Infinity / positive count keeps its sign; count is never 0 or negative here.
            special => return special.clone(),
        };
        if count == 0 {
            return Numeric::NaN;
        }
        let c = BigInt::from(count);
        let (w1, f1) = weight_and_first_digit(m, ds);
        let (w2, f2) = weight_and_first_digit(&c, 0);
        let mut qweight = w1 - w2;
        if f1 <= f2 {
            qweight -= 1;
        }
        let rscale = (MIN_SIG_DIGITS - qweight * DEC_DIGITS)
            .max(i64::from(ds))
            .clamp(0, MAX_DISPLAY_SCALE);
        // quotient * 10^rscale = m * 10^rscale / (count * 10^ds)
        let (num, den) = if rscale >= i64::from(ds) {
            (m * pow10((rscale - i64::from(ds)) as u64), c)
        } else {
            (m.clone(), c * pow10((i64::from(ds) - rscale) as u64))
        };
        Numeric::Finite {
            mantissa: div_round_half_away(&num, &den),
            dscale: rscale as u16,
        }
    }

    /// The value with trailing zeros dropped, as (sign-and-digits, power of ten): equal values
    /// give equal pairs whatever their display scales.
    pub fn normalized(&self) -> Option<(String, i64)> {
        let Numeric::Finite { mantissa, dscale } = self else {
            return None;
        };
        if mantissa.is_zero() {
            return Some(("0".into(), 0));
        }
        let mut s = mantissa.to_string();
        let kept = s.trim_end_matches('0').len();
        let exp = (s.len() - kept) as i64 - i64::from(*dscale);
        s.truncate(kept);
        Some((s, exp))
    }
}

/// numeric_cmp's total order: -Infinity < finite < Infinity < NaN, NaN equal to itself, and
/// equal values equal whatever their display scales (1.0 = 1.00).
impl Ord for Numeric {
    fn cmp(&self, o: &Numeric) -> Ordering {
        use Numeric::*;
        let rank = |n: &Numeric| match n {
            NegInf => 0,
            Finite { .. } => 1,
            PosInf => 2,
            NaN => 3,
        };
        match (self, o) {
            (
                Finite {
                    mantissa: a,
                    dscale: da,
                },
                Finite {
                    mantissa: b,
                    dscale: db,
                },
            ) => {
                if a.sign() != b.sign() || da == db {
                    return a.cmp(b);
                }
                let s = *da.max(db);
                rescale(a, *da, s).cmp(&rescale(b, *db, s))
            }
            _ => rank(self).cmp(&rank(o)),
        }
    }
}

impl PartialOrd for Numeric {
    fn partial_cmp(&self, o: &Numeric) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Numeric {
    fn eq(&self, o: &Numeric) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Numeric {}

fn header(ndigits: i16, weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 2 * ndigits.max(0) as usize);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    out
}

/// The base-10000 weight of the first nonzero digit and that digit, as select_div_scale reads
/// them off a normalized NumericVar; zero gives (0, 0).
fn weight_and_first_digit(m: &BigInt, dscale: u16) -> (i64, u16) {
    if m.is_zero() {
        return (0, 0);
    }
    let digits = m.magnitude().to_string();
    let e = digits.len() as i64 - 1 - i64::from(dscale);
    let w = e.div_euclid(DEC_DIGITS);
    // The group holds decimal exponents 4w+3 ..= 4w; digits past the string's end are zeros.
    let first_len = (e - w * DEC_DIGITS + 1) as usize;
    let taken = first_len.min(digits.len());
    let first: u16 = digits[..taken].parse().unwrap_or(0);
    (w, first * 10u16.pow((first_len - taken) as u32))
}

fn div_round_half_away(num: &BigInt, den: &BigInt) -> BigInt {
    let (q, r) = num.div_rem(den);
    if (r.magnitude() * 2u8) >= *den.magnitude() {
        if num.is_negative() != den.is_negative() {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

#[cfg(test)]
#[path = "numeric_tests.rs"]
mod tests;
