//! Exact decimals from a venue's text: `-?digits(.digits)?`, never rounded,
//! the scale kept (`"189.1200"` stays `"189.1200"`).

use crate::feed::ParseError;
use rust_decimal::Decimal;

/// Longest decimal text accepted (sign, 28 digits, point, some zeros).
const MAX_DECIMAL_TEXT: usize = 40;

/// Parses a venue's decimal text exactly: `-?digits(.digits)?`, nothing
/// else (no exponent, no `NaN`/`Infinity`, no `+`, no spaces), and never
/// rounds: a value `rust_decimal` cannot hold exactly is an error. The
/// scale is kept, so `"189.1200"` prints back as `"189.1200"`.
///
/// Hot path: text of at most 19 digits (every venue price and size) is read
/// straight into a `u64` mantissa and a scale ([`fast_decimal`]); anything
/// else, including every error, goes through [`parse_decimal_reference`],
/// so results and errors are those of the reference, bit for bit.
#[inline]
pub fn parse_decimal(text: &str, field: &'static str) -> Result<Decimal, ParseError> {
    match fast_decimal(text.as_bytes()) {
        Some(d) => Ok(d),
        None => parse_decimal_reference(text, field),
    }
}

/// Most digits [`fast_decimal`] takes: any 19-digit number fits a `u64`.
const FAST_DECIMAL_DIGITS: usize = 19;

/// `-?digits(.digits)?` with at most 19 digits in all, as a `Decimal` equal
/// (same mantissa, scale and sign bits) to what `Decimal::from_str_exact`
/// gives; `None` for anything else (longer, malformed, or `-0`, whose sign
/// the reference keeps and `Decimal::from_parts` would drop), which the
/// caller hands to the reference parser. One pass, no branch on the
/// point inside the digit loops.
#[inline]
pub fn fast_decimal(b: &[u8]) -> Option<Decimal> {
    match decimal_prefix(b) {
        Some((d, n)) if n == b.len() => Some(d),
        _ => None,
    }
}

/// [`fast_decimal`] of the longest `-?digits(.digits)?` at the start of
/// `b`, and its length; `None` where `fast_decimal` of that text would be
/// (so a caller that finds the text ends there gets `fast_decimal`'s
/// answer without a second pass: see [`super::flat::Cursor::decimal_str`]).
#[inline(always)]
pub(super) fn decimal_prefix(b: &[u8]) -> Option<(Decimal, usize)> {
    let neg = b.first() == Some(&b'-');
    let start = usize::from(neg);
    // `mant` wraps while the digits run on and is refused after: at most
    // 19 digits fit.
    let mut mant: u64 = 0;
    let int_end = scan_digits(b, start, &mut mant);
    let int = int_end - start;
    let (frac, len) = match b.get(int_end) {
        Some(b'.') => {
            let end = scan_digits(b, int_end + 1, &mut mant);
            (end - int_end - 1, end)
        }
        _ => (0, int_end),
    };
    // Both ends are digits, and the mantissa fits a u64.
    if int == 0 || (len > int_end && frac == 0) {
        return None;
    }
    if int + frac > FAST_DECIMAL_DIGITS || (neg && mant == 0) {
        return None;
    }
    let d = Decimal::from_parts(mant as u32, (mant >> 32) as u32, 0, neg, frac as u32);
    Some((d, len))
}

/// Reads the digits of `b` from `i` on into `mant`; the index past them.
#[inline(always)]
fn scan_digits(b: &[u8], mut i: usize, mant: &mut u64) -> usize {
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d >= 10 {
            break;
        }
        *mant = mant.wrapping_mul(10).wrapping_add(d as u64);
        i += 1;
    }
    i
}

/// The general decimal parser (validation, then `Decimal::from_str_exact`):
/// what [`parse_decimal`] falls back to, and the oracle its fast path is
/// tested against.
pub fn parse_decimal_reference(text: &str, field: &'static str) -> Result<Decimal, ParseError> {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let ok = !digits.is_empty()
        && b.len() <= MAX_DECIMAL_TEXT
        && digits[0].is_ascii_digit()
        && digits[digits.len() - 1].is_ascii_digit()
        && digits.iter().filter(|c| **c == b'.').count() <= 1
        && digits.iter().all(|c| c.is_ascii_digit() || *c == b'.');
    if !ok {
        let shown: String = text.chars().take(40).collect();
        return Err(ParseError::field(
            field,
            format!("not a decimal: {shown:?}"),
        ));
    }
    Decimal::from_str_exact(text).map_err(|e| ParseError::field(field, format!("{text}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        for (text, printed) in [
            ("189.1200", "189.1200"),
            ("0.00000001", "0.00000001"),
            ("97000", "97000"),
            ("-1.5", "-1.5"),
            ("0", "0"),
            ("00.10", "0.10"),
        ] {
            assert_eq!(parse_decimal(text, "p").unwrap().to_string(), printed);
        }
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1e5",
            "NaN",
            "nan",
            "Infinity",
            "+1",
            " 1",
            "1 ",
            "1.2.3",
            "0x10",
            "1,5",
            "١",
            "99999999999999999999999999999999",
            "0.00000000000000000000000000000001",
        ] {
            assert!(parse_decimal(bad, "p").is_err(), "{bad:?} must be refused");
        }
        let e = parse_decimal("NaN", "bid").unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        assert!(e.to_string().contains("bid"));
    }

    #[test]
    fn fast_decimals_are_the_reference_bit_for_bit() {
        for text in [
            "189.1200",
            "0.00000001",
            "97000",
            "-1.5",
            "0",
            "00.10",
            "-0",
            "-0.00",
            "9999999999999999999",
            "99999999999999999999",
            "1844674407370955161.5",
            "0.0000000000000000001",
            "1.",
            ".5",
            "-",
            "",
            "1e5",
            "+1",
            "1.2.3",
        ] {
            let fast = parse_decimal(text, "p").map(|d| d.serialize());
            let reference = parse_decimal_reference(text, "p").map(|d| d.serialize());
            assert_eq!(fast, reference, "{text:?}");
        }
        assert!(fast_decimal(b"97000.01000000").is_some());
        assert!(
            fast_decimal(b"-0").is_none(),
            "negative zero is the reference's"
        );
    }
}
