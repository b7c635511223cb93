//! RFC 3339 UTC timestamps (the form Coinbase and Kraken send) as
//! nanoseconds since the Unix epoch.

use crate::feed::ParseError;

/// Parses an RFC 3339 UTC timestamp (`2022-10-19T23:28:22.061769Z`, the
/// form Coinbase and Kraken send) into ns since the epoch.
pub fn parse_rfc3339_ns(text: &str, field: &'static str) -> Result<i64, ParseError> {
    let bad = || ParseError::field(field, format!("not an RFC 3339 UTC time: {text:?}"));
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, ParseError> {
        let s = text.get(r).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &text[19..];
    let (frac, tz) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(bad());
            }
            (&r[..n], &r[n..])
        }
        None => ("", rest),
    };
    if tz != "Z" && tz != "+00:00" {
        return Err(bad());
    }
    let mut ns: i64 = 0;
    for (i, c) in frac.bytes().enumerate() {
        ns += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    civil_ns([y, mo, d, h, mi, s], ns).ok_or_else(bad)
}

/// Nanoseconds since the Unix epoch of a UTC time given as year, month,
/// day, hour, minute, second (four-digit year) plus `ns`; `None` when a
/// field is out of range (month, day of that month, 23:59:59) or the time
/// is past i64 nanoseconds (2262-04-11T23:47:16.854775807Z: a later time
/// is refused, not wrapped). Shared by every RFC 3339 reader so they agree
/// to the nanosecond.
pub(crate) fn civil_ns([y, mo, d, h, mi, s]: [i64; 6], ns: i64) -> Option<i64> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + h * 3_600 + mi * 60 + s)
        .checked_mul(1_000_000_000)?
        .checked_add(ns)
}

/// [`parse_rfc3339_ns`] without its error, quicker for the form Coinbase
/// and Kraken send (`2022-10-19T23:28:22.061769Z`: a fraction and `Z`),
/// which it reads at fixed offsets; anything else goes to
/// [`parse_rfc3339_ns`] itself, so the value is the same for every input.
/// For the venues' fast paths.
#[inline]
pub fn rfc3339_ns(text: &[u8]) -> Option<i64> {
    match fixed_rfc3339_ns(text) {
        Some(ns) => Some(ns),
        None => parse_rfc3339_ns(std::str::from_utf8(text).ok()?, "time").ok(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.f{1,9}Z` as ns since the epoch, with
/// [`parse_rfc3339_ns`]'s checks and arithmetic; `None` for any other
/// text and for anything that refuses.
#[inline]
fn fixed_rfc3339_ns(b: &[u8]) -> Option<i64> {
    let n = b.len();
    if !(22..=30).contains(&n) || b.get(n - 1) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut v: i64 = 0;
        for &c in b.get(from..to)? {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as i64;
        }
        Some(v)
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if !seps.iter().all(|&(i, c)| sep(i, c)) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    // 1 to 9 fraction digits, scaled to ns.
    let frac = b.get(20..n - 1)?;
    let mut ns = num(20, n - 1)?;
    for _ in frac.len()..9 {
        ns *= 10;
    }
    civil_ns([y, mo, d, h, mi, s], ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z", "t").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_ns("2022-10-19T23:28:22.061769Z", "t").unwrap(),
            1_666_222_102_061_769_000
        );
        assert_eq!(
            parse_rfc3339_ns("2023-09-25T09:04:31.742599123Z", "t").unwrap(),
            1_695_632_671_742_599_123
        );
        assert_eq!(
            parse_rfc3339_ns("2262-04-11T23:47:16.854775807Z", "t").unwrap(),
            i64::MAX
        );
        assert!(
            parse_rfc3339_ns("2024-02-29T00:00:00Z", "t").is_ok(),
            "leap day"
        );
        for bad in [
            "2025-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-01T00:00:60Z",
            "1900-02-29T00:00:00Z",
            "",
            "2022-10-19",
            "2022-13-19T23:28:22Z",
            "2022-10-19T23:28:22+01:00",
            "2022-10-19T23:28:22.Z",
            "x022-10-19T23:28:22Z",
            // Past the end of i64 nanoseconds: refused, never wrapped.
            "2262-04-11T23:47:16.854775808Z",
            "2262-05-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert!(parse_rfc3339_ns(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn quick_times_are_the_reference() {
        let mut texts: Vec<String> = vec![
            "2022-10-19T23:28:22.061769Z".into(),
            "2023-09-25T09:04:31.742599123Z".into(),
            "2262-04-11T23:47:16.854775807Z".into(),
            "2262-04-11T23:47:16.854775808Z".into(),
            "9999-12-31T23:59:59.999999999Z".into(),
            "0000-01-01T00:00:00.0Z".into(),
            "1970-01-01T00:00:00.000Z".into(),
            "2024-02-29T00:00:00.5Z".into(),
            "2025-02-29T00:00:00.5Z".into(),
            "1900-02-29T00:00:00.5Z".into(),
            "2000-02-29T00:00:00.5Z".into(),
            "2025-04-31T00:00:00.5Z".into(),
            "2025-01-01T00:00:60.5Z".into(),
            "2025-01-01T24:00:00.5Z".into(),
            "2025-00-01T00:00:00.5Z".into(),
            "2025-13-01T00:00:00.5Z".into(),
            "2025-01-00T00:00:00.5Z".into(),
            "2025-01-01T00:00:00.Z".into(),
            "2025-01-01T00:00:00.1234567890Z".into(),
            "2025-01-01T00:00:00Z".into(),
            "2025-01-01T00:00:00.5+00:00".into(),
            "2025-01-01 00:00:00.5Z".into(),
            "2025-01-01T00:00:00,5Z".into(),
            "2025-01-01T00:00:0x.5Z".into(),
            "-025-01-01T00:00:00.5Z".into(),
            "+025-01-01T00:00:00.5Z".into(),
            "2025-01-01T00:00:00.-5Z".into(),
            "2025-01-01T00:00:00.5z".into(),
            "".into(),
        ];
        // Every digit position through every digit, and a few non-digits.
        let base = b"2024-02-29T23:59:59.123456789Z";
        for i in 0..base.len() {
            for c in b"0123456789-.:TZ /a\xff".iter().copied() {
                let mut t = base.to_vec();
                t[i] = c;
                texts.push(String::from_utf8_lossy(&t).into_owned());
            }
            texts.push(String::from_utf8_lossy(&base[..i]).into_owned());
        }
        for t in &texts {
            assert_eq!(
                rfc3339_ns(t.as_bytes()),
                parse_rfc3339_ns(t, "t").ok(),
                "{t:?}"
            );
        }
        assert_eq!(
            rfc3339_ns(texts[0].as_bytes()),
            Some(1_666_222_102_061_769_000)
        );
        assert!(fixed_rfc3339_ns(texts[0].as_bytes()).is_some());
    }
}
