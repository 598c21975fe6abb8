//! Reading date, time, timestamp and timestamptz as PostgreSQL prints them under DateStyle ISO,
//! into the integers PostgreSQL stores (days or microseconds since 2000-01-01).
//!
//! Anything else (other DateStyles, hand-written input forms) is refused rather than guessed:
//! a misread date would silently reorder a merge.

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;
/// Days from 1970-01-01 (the civil algorithm's origin) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i64 = 10_957;

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn eat_str(&mut self, t: &str) -> bool {
        let hit = self.s[self.i..].starts_with(t.as_bytes());
        if hit {
            self.i += t.len();
        }
        hit
    }

    /// A run of `min..=max` ASCII digits; None if shorter or longer.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let run = self.s[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if run < min || run > max {
            return None;
        }
        let v = self.s[self.i..self.i + run]
            .iter()
            .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'));
        self.i += run;
        Some(v)
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

fn is_leap(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Proleptic Gregorian date (astronomical year: 1 BC = 0) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "YYYY-MM-DD" (four or more year digits), validated; returns (year as printed, month, day).
fn ymd(c: &mut Cursor) -> Option<(i64, i64, i64)> {
    let y = c.digits(4, 9)?;
    c.eat(b'-').then_some(())?;
    let m = c.digits(2, 2)?;
    c.eat(b'-').then_some(())?;
    let d = c.digits(2, 2)?;
    (y >= 1 && (1..=12).contains(&m)).then_some((y, m, d))
}

/// Days since 2000-01-01 once the era suffix is known; checks the day against the real year.
fn to_days((y, m, d): (i64, i64, i64), bc: bool) -> Option<i64> {
    let astro = if bc { 1 - y } else { y };
    (1..=days_in_month(astro, m).max(1))
        .contains(&d)
        .then(|| days_from_civil(astro, m, d) - PG_EPOCH_DAYS)
}

/// "HH:MM:SS[.ffffff]" as microseconds since midnight; "24:00:00" is a valid time.
fn hms(c: &mut Cursor) -> Option<i64> {
    let h = c.digits(2, 2)?;
    c.eat(b':').then_some(())?;
    let mi = c.digits(2, 2)?;
    c.eat(b':').then_some(())?;
    let s = c.digits(2, 2)?;
    let mut frac = 0;
    if c.eat(b'.') {
        let start = c.i;
        let f = c.digits(1, 6)?;
        frac = f * 10i64.pow((6 - (c.i - start)) as u32);
    }
    if mi > 59 || s > 60 || h > 24 {
        return None;
    }
    let us = ((h * 60 + mi) * 60 + s) * USECS_PER_SEC + frac;
    (us <= USECS_PER_DAY).then_some(us)
}

/// "+HH[:MM[:SS]]" as seconds east of UTC.
fn offset(c: &mut Cursor) -> Option<i64> {
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let h = c.digits(2, 2)?;
    let mut secs = h * 3600;
    if c.eat(b':') {
        secs += c.digits(2, 2)? * 60;
        if c.eat(b':') {
            secs += c.digits(2, 2)?;
        }
    }
    Some(sign * secs)
}

fn infinity(s: &str) -> Option<i64> {
    match s {
        "infinity" => Some(i64::MAX),
        "-infinity" => Some(i64::MIN),
        _ => None,
    }
}

/// `date` text: "2024-03-01", "0044-03-15 BC", "infinity".
pub fn parse_date(s: &str) -> Option<i64> {
    if let Some(v) = infinity(s) {
        return Some(v);
    }
    let mut c = Cursor::new(s);
    let parts = ymd(&mut c)?;
    let bc = c.eat_str(" BC");
    c.done().then_some(())?;
    to_days(parts, bc)
}

/// `time` text: "12:34:56.789".
pub fn parse_time(s: &str) -> Option<i64> {
    let mut c = Cursor::new(s);
    let us = hms(&mut c)?;
    c.done().then_some(us)
}

/// `timestamp` / `timestamptz` text: "2024-03-01 12:00:00.5[+01[:30[:15]]][ BC]"; with_tz
/// demands the offset and returns the UTC instant.
pub fn parse_timestamp(s: &str, with_tz: bool) -> Option<i64> {
    if let Some(v) = infinity(s) {
        return Some(v);
    }
    let mut c = Cursor::new(s);
    let parts = ymd(&mut c)?;
    c.eat(b' ').then_some(())?;
    let time = hms(&mut c)?;
    let off = if with_tz { offset(&mut c)? } else { 0 };
    let bc = c.eat_str(" BC");
    c.done().then_some(())?;
    let days = to_days(parts, bc)?;
    days.checked_mul(USECS_PER_DAY)?
        .checked_add(time)?
        .checked_sub(off.checked_mul(USECS_PER_SEC)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected day numbers are PostgreSQL 15's `d - '2000-01-01'::date` for the same dates.
    #[test]
    fn dates_match_postgres_day_numbers() {
        assert_eq!(parse_date("2000-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(8826));
        assert_eq!(parse_date("0001-01-01 BC"), Some(-730485));
        assert_eq!(parse_date("4713-11-24 BC"), Some(-2451179));
        assert_eq!(parse_date("0001-01-01"), Some(-730119));
        assert_eq!(parse_date("5874897-12-31"), Some(2145031948));
        assert_eq!(parse_date("infinity"), Some(i64::MAX));
        assert_eq!(parse_date("-infinity"), Some(i64::MIN));
        assert_eq!(parse_date("2024-02-29"), Some(8825));
        assert_eq!(parse_date("0005-02-29 BC"), Some(-731887)); // 5 BC is astronomical -4, leap
    }

    #[test]
    fn other_datestyles_and_garbage_are_refused() {
        for s in [
            "03-01-2024",
            "01/03/2024",
            "01.03.2024",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-3-1",
            "0000-01-01",
            "2024-03-01 AD",
            "2024-03-01 ",
            "",
            "Infinity",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
        for s in [
            "Fri Mar 01 12:00:00 2024",
            "2024-03-01T12:00:00",
            "2024-03-01 12:00",
            "2024-03-01 12:00:00.1234567",
            "2024-03-01 12:60:00",
            "2024-03-01 25:00:00",
            "2024-03-01 12:00:00+01",
        ] {
            assert_eq!(parse_timestamp(s, false), None, "{s}");
        }
        assert_eq!(parse_timestamp("2024-03-01 12:00:00", true), None);
        assert_eq!(parse_timestamp("99999999-01-01 00:00:00", false), None);
        assert_eq!(parse_time("24:00:01"), None);
    }

    #[test]
    fn times_and_timestamps_match_postgres_binary() {
        // time_send('12:34:56.789') = \x0000000a8be62608
        assert_eq!(parse_time("12:34:56.789"), Some(0x0a8be62608));
        assert_eq!(parse_time("24:00:00"), Some(USECS_PER_DAY));
        assert_eq!(parse_time("00:00:00"), Some(0));
        // timestamp_send('2024-03-01 12:00:00.5') = \x0002b596e2571120
        assert_eq!(
            parse_timestamp("2024-03-01 12:00:00.5", false),
            Some(0x0002b596e2571120)
        );
        // timestamptz_send('2024-03-01 12:00:00.5+01') = \x0002b5960bc36d20, printed in
        // Asia/Kolkata as below and in America/Los_Angeles as the one after.
        for s in ["2024-03-01 16:30:00.5+05:30", "2024-03-01 03:00:00.5-08"] {
            assert_eq!(parse_timestamp(s, true), Some(0x0002b5960bc36d20), "{s}");
        }
        assert_eq!(
            parse_timestamp("1849-12-31 16:07:02-07:52:58", true),
            parse_timestamp("1850-01-01 00:00:00+00", true)
        );
        assert_eq!(
            parse_timestamp("0044-03-15 17:53:28+05:53:28 BC", true),
            parse_timestamp("0044-03-15 12:00:00 BC", false)
        );
        assert_eq!(parse_timestamp("-infinity", true), Some(i64::MIN));
        assert_eq!(
            parse_timestamp("294276-12-31 23:59:59.999999", false),
            Some(0x7fffff5bb3b29fff)
        );
    }
}
