//! A validating scanner for the canonical form of venue frames: flat JSON
//! objects with no whitespace, no escapes, ASCII strings and scalar values.
//! It is the first half of every adapter's fast path: a frame in that form
//! is read here without a DOM; anything else (whitespace, an escape, a
//! nested value, an exponent, a duplicate field, an error of any kind) makes
//! it give up with `None`, and the adapter parses the frame again with its
//! general simd-json path, which owns every error. So the scanner accepts
//! only text every JSON parser reads the same way, and never reports.

/// A scalar value as it stood in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<'a> {
    /// A string without escapes or control bytes, ASCII only.
    Str(&'a [u8]),
    /// A number's exact text: `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at
    /// most 18 digits before and 18 after the point (no exponent).
    Num(&'a [u8]),
    True,
    False,
    Null,
}

impl<'a> Val<'a> {
    #[inline]
    pub fn as_str(self) -> Option<&'a [u8]> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A JSON integer `>= 0` (what `json::u64_field` takes).
    #[inline]
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Val::Num(t) => uint(t),
            _ => None,
        }
    }

    /// A string or a number, as text.
    #[inline]
    pub fn text(self) -> Option<&'a [u8]> {
        match self {
            Val::Str(s) | Val::Num(s) => Some(s),
            _ => None,
        }
    }
}

/// [`super::decimal::parse_decimal`] on scanned text, without its error.
#[inline]
pub fn decimal(b: &[u8], key: &'static str) -> Option<rust_decimal::Decimal> {
    match super::decimal::fast_decimal(b) {
        Some(d) => Some(d),
        None => super::decimal::parse_decimal_reference(std::str::from_utf8(b).ok()?, key).ok(),
    }
}

/// Most integer (and fraction) digits of a number the scanner takes:
/// such an integer fits an `i64` and a `u64` alike.
const MAX_NUMBER_DIGITS: usize = 18;

/// Digits only (no sign, point or leading zero) as a `u64`.
#[inline]
fn uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > MAX_NUMBER_DIGITS || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        v = v * 10 + d as u64;
    }
    Some(v)
}

/// `0x01` in every byte of a word.
const LO: u64 = u64::from_le_bytes([1; 8]);
/// The high bit of every byte of a word.
const HI: u64 = LO << 7;

/// Reads 8 bytes at once, little-endian (the first byte lowest).
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// The high bit set in each byte of `x` equal to `c`. Exact in the
/// lowest flagged byte (a borrow only flags bytes above a true one),
/// which is all the callers use.
#[inline(always)]
fn eq_bytes(x: u64, c: u8) -> u64 {
    let y = x ^ (LO * c as u64);
    y.wrapping_sub(LO) & !y & HI
}

/// Count of leading bytes of `b` that `keep` takes, 8 at a time:
/// `stops` flags (high bit) the bytes of a word `keep` refuses, exactly
/// in the lowest flagged byte; the tail goes byte by byte.
#[inline(always)]
fn leading(b: &[u8], stops: impl Fn(u64) -> u64, keep: impl Fn(u8) -> bool) -> usize {
    let mut chunks = b.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        let flags = stops(word(chunk));
        if flags != 0 {
            return n + (flags.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + chunks.remainder().iter().take_while(|&&c| keep(c)).count()
}

/// Count of leading ASCII digits: the word's bytes are flagged exactly
/// (7-bit sums never carry into the next byte).
#[inline(always)]
fn digits(b: &[u8]) -> usize {
    let not_digit = |x: u64| {
        let low7 = x & !HI;
        let above_9 = low7 + LO * (0x7f - b'9' as u64);
        let from_0 = low7 + LO * (0x80 - b'0' as u64);
        (above_9 | !from_0 | x) & HI
    };
    leading(b, not_digit, |c| c.is_ascii_digit())
}

/// Count of leading bytes a scanned string may hold (see
/// [`STRING_BYTE`]).
#[inline(always)]
fn string_bytes(b: &[u8]) -> usize {
    let stop = |x: u64| {
        // Each term's lowest flag is exact, so the lowest of all is.
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        let stop = eq_bytes(x, b'"') | eq_bytes(x, b'\\') | eq_bytes(x, 0x7f);
        control | stop | (x & HI)
    };
    leading(b, stop, |c| STRING_BYTE[c as usize])
}

/// Bytes a scanned string may hold: printable ASCII but `"` and `\`.
static STRING_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x20;
    while c < 0x7f {
        t[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
    t
};

/// A position in a frame. The frame need not be UTF-8: every byte a
/// scan accepts is ASCII (literals, string bodies, numbers), and a
/// scan must reach the end, so a frame it takes whole is ASCII.
pub struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, i: 0 }
    }

    #[inline]
    fn text(&self, from: usize, to: usize) -> Option<&'a [u8]> {
        self.b.get(from..to)
    }

    #[inline]
    pub fn at_end(&self) -> bool {
        self.i == self.b.len()
    }

    #[inline]
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.i..).unwrap_or_default()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Exactly `s`.
    #[inline]
    pub fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.rest().starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// A string: its bytes between the quotes, printable ASCII other
    /// than `"` and `\`.
    #[inline(always)]
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let body = self.rest().strip_prefix(b"\"")?;
        let n = string_bytes(body);
        if body.get(n) != Some(&b'"') {
            return None;
        }
        let from = self.i + 1;
        self.i += n + 2;
        self.text(from, from + n)
    }

    #[inline(always)]
    fn number(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest();
        let sign = usize::from(rest.first() == Some(&b'-'));
        let int = digits(&rest[sign..]);
        if int == 0 || int > MAX_NUMBER_DIGITS || (rest[sign] == b'0' && int > 1) {
            return None;
        }
        let mut end = sign + int;
        if rest.get(end) == Some(&b'.') {
            let frac = digits(&rest[end + 1..]);
            if frac == 0 || frac > MAX_NUMBER_DIGITS {
                return None;
            }
            end += 1 + frac;
        }
        if matches!(rest.get(end), Some(b'e' | b'E' | b'.')) {
            return None;
        }
        let from = self.i;
        self.i += end;
        self.text(from, from + end)
    }

    /// A string holding a plain decimal (`"-?digits(.digits)?"`, at most
    /// 19 digits), read straight into the decimal [`super::decimal::parse_decimal`]
    /// gives for its text, with that text; `None`, the cursor unmoved,
    /// for anything else (the caller then reads it as a [`Val`]). What
    /// it takes, [`Cursor::string`] takes too.
    #[inline(always)]
    pub fn decimal_str(&mut self) -> Option<(rust_decimal::Decimal, &'a [u8])> {
        let body = self.rest().strip_prefix(b"\"")?;
        let (d, n) = super::decimal::decimal_prefix(body)?;
        if body.get(n) != Some(&b'"') {
            return None;
        }
        let from = self.i + 1;
        let text = self.text(from, from + n)?;
        self.i += n + 2;
        Some((d, text))
    }

    /// A scalar value: string, number, `true`, `false` or `null`.
    #[inline(always)]
    pub fn value(&mut self) -> Option<Val<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Val::Str),
            b't' => self.lit(b"true").map(|_| Val::True),
            b'f' => self.lit(b"false").map(|_| Val::False),
            b'n' => self.lit(b"null").map(|_| Val::Null),
            b'-' | b'0'..=b'9' => self.number().map(Val::Num),
            _ => None,
        }
    }

    /// A non-empty flat object `{"k":v,...}`: `f` sees every member in
    /// order and may give up (`None`), and so does the scan.
    #[inline]
    pub fn object(&mut self, mut f: impl FnMut(&'a [u8], Val<'a>) -> Option<()>) -> Option<()> {
        self.lit(b"{")?;
        loop {
            let k = self.string()?;
            self.lit(b":")?;
            let v = self.value()?;
            f(k, v)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Reads a flat object's members into `slots` by key (`keys[i]` goes to
/// `slots[i]`). First as the exact layout `{"keys[0]":v,"keys[1]":v,..}`
/// (a venue's canonical frame: no key lookups), else in any order, where
/// other keys are skipped (their values still checked) and a key seen
/// twice gives up, since parsers disagree on which one wins.
#[inline]
pub fn fields<'a, const N: usize>(
    c: &mut Cursor<'a>,
    keys: &[&str; N],
    slots: &mut [Option<Val<'a>>; N],
) -> Option<()> {
    let start = c.i;
    if in_order(c, keys, slots).is_some() {
        return Some(());
    }
    c.i = start;
    *slots = [None; N];
    c.object(|k, v| {
        if let Some(i) = keys.iter().position(|x| x.as_bytes() == k) {
            if slots[i].replace(v).is_some() {
                return None;
            }
        }
        Some(())
    })
}

#[inline]
fn in_order<'a, const N: usize>(
    c: &mut Cursor<'a>,
    keys: &[&str; N],
    slots: &mut [Option<Val<'a>>; N],
) -> Option<()> {
    for (i, (k, slot)) in keys.iter().zip(slots.iter_mut()).enumerate() {
        c.lit(if i == 0 { b"{\"" } else { b",\"" })?;
        c.lit(k.as_bytes())?;
        c.lit(b"\":")?;
        *slot = Some(c.value()?);
    }
    c.lit(b"}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits_bytewise(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }

    fn string_bytewise(b: &[u8]) -> usize {
        b.iter().take_while(|&&c| STRING_BYTE[c as usize]).count()
    }

    /// Every byte value at every position of the first two words and
    /// the tail, behind runs of allowed bytes: the first stop found 8
    /// bytes at a time is the one found byte by byte.
    #[test]
    fn word_scans_stop_where_byte_scans_do() {
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut d = vec![b'7'; len];
                    d[at] = c;
                    assert_eq!(digits(&d), digits_bytewise(&d), "{d:?}");
                    let mut s = vec![b'a'; len];
                    s[at] = c;
                    // A stop byte, then every value behind it.
                    s.extend_from_slice(&[0, b'"', 0xff, b'\\', 0x7f, b' ']);
                    assert_eq!(string_bytes(&s), string_bytewise(&s), "{s:?}");
                }
            }
        }
    }

    /// Frames are not checked for UTF-8 as a whole: a scan refuses any
    /// byte outside printable ASCII wherever it stands.
    #[test]
    fn scans_refuse_bytes_outside_ascii() {
        for text in [
            &b"\"b\xc3\xbcy\""[..],
            b"\"\xff\"",
            b"\"tab\there\"",
            b"\"\x7f\"",
            b"\"esc\\\"\"",
        ] {
            assert_eq!(Cursor::new(text).value(), None, "{text:?}");
        }
        let mut c = Cursor::new(b"\"buy\"");
        assert_eq!(c.value(), Some(Val::Str(b"buy")));
        assert!(c.at_end());
        assert_eq!(Cursor::new(b"1\xc3").value(), Some(Val::Num(b"1")));
    }

    proptest::proptest! {
        #[test]
        fn word_scans_agree_on_any_bytes(b in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::sample::select(b"0123456789.\"\\ az\x1f\x20\x7e\x7f\x80".to_vec()),
            ],
            0..40,
        )) {
            proptest::prop_assert_eq!(digits(&b), digits_bytewise(&b));
            proptest::prop_assert_eq!(string_bytes(&b), string_bytewise(&b));
        }

        /// A quoted decimal read in one pass is `None` (cursor unmoved)
        /// or exactly what the string scan and `parse_decimal` of its
        /// text give, bits included, with the cursor where the string
        /// scan leaves it.
        #[test]
        fn decimal_strings_read_as_scan_then_parse(body in proptest::prop_oneof![
            "-?[0-9]{1,21}(\\.[0-9]{1,10})?",
            "[-0-9.]{0,24}[\"x,]?[0-9]{0,3}",
        ]) {
            let text = format!("\"{body}\",");
            let mut fused = Cursor::new(text.as_bytes());
            let mut scan = Cursor::new(text.as_bytes());
            match fused.decimal_str() {
                None => proptest::prop_assert_eq!(fused.i, 0),
                Some((d, t)) => {
                    let s = scan.string();
                    proptest::prop_assert_eq!(Some(t), s);
                    let reference = crate::feed::wire::decimal::parse_decimal(
                        std::str::from_utf8(t).unwrap_or_default(),
                        "p",
                    );
                    proptest::prop_assert_eq!(
                        Ok(d.serialize()),
                        reference.map(|r| r.serialize()).map_err(|e| e.to_string())
                    );
                    proptest::prop_assert_eq!(fused.i, scan.i);
                }
            }
        }
    }
}
