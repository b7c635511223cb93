//! The number rewrite Kraken's frames go through before simd-json: every
//! JSON number in a value position becomes a string holding its exact text
//! (see "Numbers keep their text" in the adapter's module docs).

/// Output capacity kept between frames; a larger buffer (after an unusually
/// big frame) is released on the next small one.
const RETAIN_BYTES: usize = 64 * 1024;

/// Bytes that start a string or a number token outside strings.
static TOKEN_START: [bool; 256] = byte_set(b"\"-+.0123456789");
/// Bytes of a number token (a superset of the JSON grammar, checked after).
static NUMBER_BYTE: [bool; 256] = byte_set(b"-+.eE0123456789");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// Rewrites JSON text so that every number in a value position becomes a
/// string holding the number's exact text (see the module doc). One linear
/// pass that copies runs of bytes, no allocation once its buffer has grown
/// to the frame size.
#[derive(Debug, Default)]
pub struct NumberQuoter {
    out: Vec<u8>,
}

impl NumberQuoter {
    /// Returns the rewritten text, valid until the next call. Valid JSON
    /// gives valid JSON, anything else gives something a JSON parser
    /// refuses; never panics, whatever the bytes.
    pub fn rewrite(&mut self, src: &[u8]) -> &mut [u8] {
        if self.out.capacity() > RETAIN_BYTES && src.len() < RETAIN_BYTES / 4 {
            self.out = Vec::new();
        }
        let out = &mut self.out;
        out.clear();
        out.reserve(src.len() + src.len() / 8 + 16);
        let n = src.len();
        let mut i = 0;
        // Bytes before `copied` are in `out`. Everything but the inserted
        // quotes is copied in runs, so the cost is per number, not per
        // token.
        let mut copied = 0;
        while i < n {
            // Structure and literals (`true`, `false`, `null`) are skipped
            // up to the next string or number.
            match src[i..].iter().position(|&c| TOKEN_START[c as usize]) {
                Some(p) => i += p,
                None => break,
            }
            let start = i;
            if src[i] == b'"' {
                // A string, through its closing quote; a backslash escapes
                // the byte after it. Unterminated: the rest of the input.
                i += 1;
                loop {
                    match src[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                        None => {
                            i = n;
                            break;
                        }
                        Some(p) if src[i + p] == b'"' => {
                            i += p + 1;
                            break;
                        }
                        Some(p) => i = (i + p + 2).min(n),
                    }
                }
            } else {
                let len = src[i..]
                    .iter()
                    .position(|&c| !NUMBER_BYTE[c as usize])
                    .unwrap_or(n - i);
                i += len;
                let tok = &src[start..i];
                // A number followed by `:` stands where a key should be:
                // invalid JSON, kept invalid (`{1:2}` must not become
                // `{"1":"2"}`). A token that is not a JSON number is left
                // as it is, so it stays invalid too.
                let next = src[i..]
                    .iter()
                    .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
                if next != Some(&b':') && is_json_number(tok) {
                    out.extend_from_slice(&src[copied..start]);
                    out.push(b'"');
                    out.extend_from_slice(tok);
                    out.push(b'"');
                    copied = i;
                }
            }
        }
        out.extend_from_slice(&src[copied..]);
        out
    }
}

/// Whether `t` is exactly one JSON number:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let digits = |i: &mut usize| {
        let s = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > s
    };
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::wire::json::{self, Value};
    use simd_json::StaticNode;

    fn rewrite(s: &[u8]) -> Vec<u8> {
        NumberQuoter::default().rewrite(s).to_vec()
    }

    #[test]
    fn rewriter_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (br#"{"a":1}"#, br#"{"a":"1"}"#),
            (
                br#"{"a":-0.50000000,"b":[1,2.5e-3,-3E+2]}"#,
                br#"{"a":"-0.50000000","b":["1","2.5e-3","-3E+2"]}"#,
            ),
            (
                br#"{"a":{"b":[[0],{"c":10}]}}"#,
                br#"{"a":{"b":[["0"],{"c":"10"}]}}"#,
            ),
            (br#"[true,false,null]"#, br#"[true,false,null]"#),
            (br#"{"a\"1":2}"#, br#"{"a\"1":"2"}"#),
            (br#"{"k":"a\"1","n":3}"#, br#"{"k":"a\"1","n":"3"}"#),
            (br#"{"k":"\\","n":4}"#, br#"{"k":"\\","n":"4"}"#),
            (br#"{"k":"\\\"5","n":6}"#, br#"{"k":"\\\"5","n":"6"}"#),
            (br#"["12 34","-5",7]"#, br#"["12 34","-5","7"]"#),
            (br#"{"k":"\u0022 8"}"#, br#"{"k":"\u0022 8"}"#),
            (
                b" { \"a\" :\t 1 ,\n\"b\"\r: [ 2 ] } ",
                b" { \"a\" :\t \"1\" ,\n\"b\"\r: [ \"2\" ] } ",
            ),
            (b"42", b"\"42\""),
            (b"-0", b"\"-0\""),
            (b"[1,", b"[\"1\","),
            (b"[1", b"[\"1\""),
            // Not JSON numbers: left as they were, so still invalid.
            (b"[01]", b"[01]"),
            (b"[1.]", b"[1.]"),
            (b"[-]", b"[-]"),
            (b"[1e]", b"[1e]"),
            (b"[.5]", b"[.5]"),
            (b"[+1]", b"[+1]"),
            (b"[1-2]", b"[1-2]"),
            (b"[--1]", b"[--1]"),
            // Keys are never quoted (`{1:2}` must stay invalid).
            (b"{1:2}", b"{1:\"2\"}"),
            (b"{\"a\":1,2:3}", b"{\"a\":\"1\",2:\"3\"}"),
            (b"[1,2]", b"[\"1\",\"2\"]"),
            (b"[{\"a\":1},2]", b"[{\"a\":\"1\"},\"2\"]"),
            // Truncated and unbalanced input is copied, never a panic.
            (br#"{"a":"x\"#, br#"{"a":"x\"#),
            (br#"{"a":"x"#, br#"{"a":"x"#),
            (br#"]]}}1"#, br#"]]}}"1""#),
            (b"", b""),
        ];
        let mut q = NumberQuoter::default();
        for (input, want) in cases {
            let got = q.rewrite(input).to_vec();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "input {}",
                String::from_utf8_lossy(input)
            );
        }
        // Arbitrary bytes, including invalid UTF-8: no panic, and every
        // input byte is kept in order (only quotes are inserted).
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let len = (rng.next() % 40) as usize;
            let alphabet = b"{}[],:\"\\-+.eE0123456789 tfn\xff";
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect();
            let out = q.rewrite(&input).to_vec();
            let mut it = out.iter();
            assert!(
                input.iter().all(|b| it.any(|o| o == b)),
                "{input:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn rewriting_preserves_validity() {
        for input in [
            r#"{"a":1}"#,
            r#"{1:2}"#,
            r#"{"a":1,2:3}"#,
            "[01]",
            "[1 2]",
            r#"{"a":"b"1}"#,
            r#"["a"1"]"#,
            "[1,]",
            "[1.5e]",
            r#"{"a":-}"#,
            "tru1e",
            "[1]]",
            "{[1]}",
        ] {
            let valid = serde_json::from_str::<serde_json::Value>(input).is_ok();
            let out = rewrite(input.as_bytes());
            let still = serde_json::from_slice::<serde_json::Value>(&out).is_ok();
            assert_eq!(valid, still, "{input} -> {}", String::from_utf8_lossy(&out));
        }
    }

    /// Small xorshift for the generated tests (no extra dev-dependency).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn random_value(rng: &mut Rng, depth: u32) -> serde_json::Value {
        use serde_json::Value as J;
        let pick = rng.next() % if depth > 3 { 7 } else { 9 };
        match pick {
            0 => J::Null,
            1 => J::Bool(rng.next().is_multiple_of(2)),
            2 => J::from(rng.next() as i64 >> (rng.next() % 64)),
            3 => J::from(rng.next() >> (rng.next() % 64)),
            4 => {
                // Floats of every magnitude: serde_json prints some with
                // exponents (`1e-7`), some as `0.1`.
                let f = f64::from_bits(rng.next());
                if f.is_finite() {
                    J::from(f)
                } else {
                    J::from(0.5)
                }
            }
            5 => J::from((rng.next() % 2_000_000) as f64 / 1000.0 - 1000.0),
            6 => J::String(random_string(rng)),
            7 => J::Array(
                (0..rng.next() % 5)
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => J::Object(
                (0..rng.next() % 5)
                    .map(|_| (random_string(rng), random_value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    fn random_string(rng: &mut Rng) -> String {
        let parts = [
            "a", "\"", "\\", "1", "-2.5", "e", " ", "\u{1}", "\n", "é", "💹", "{", "]", ":", ",",
        ];
        (0..rng.next() % 6)
            .map(|_| parts[(rng.next() % parts.len() as u64) as usize])
            .collect()
    }

    /// After rewriting and parsing with simd-json, every number is a string
    /// equal to serde_json's text for it; everything else is unchanged.
    fn same(j: &serde_json::Value, s: &Value) -> bool {
        use serde_json::Value as J;
        match (j, s) {
            (J::Null, Value::Static(StaticNode::Null)) => true,
            (J::Bool(a), Value::Static(StaticNode::Bool(b))) => a == b,
            (J::Number(n), Value::String(t)) => n.to_string() == **t,
            (J::String(a), Value::String(b)) => a == &**b,
            (J::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| same(x, y))
            }
            (J::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, x)| b.get(k.as_str()).is_some_and(|y| same(x, y)))
            }
            _ => false,
        }
    }

    #[test]
    fn property_numbers_become_their_serde_json_text() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut q = NumberQuoter::default();
        for i in 0..3000 {
            let j = random_value(&mut rng, 0);
            let text = if i % 2 == 0 {
                serde_json::to_string(&j).unwrap()
            } else {
                serde_json::to_string_pretty(&j).unwrap()
            };
            let buf = q.rewrite(text.as_bytes());
            let s = json::parse(buf).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(same(&j, &s), "{text}\n -> {s:?}");
        }
    }

    #[test]
    fn large_frames_are_rewritten_and_the_buffer_is_released_after() {
        let mut q = NumberQuoter::default();
        let big = format!("[{}1]", "1,".repeat(300_000));
        let out = q.rewrite(big.as_bytes());
        assert_eq!(out.len(), big.len() + 2 * 300_001);
        assert!(q.out.capacity() > RETAIN_BYTES);
        q.rewrite(b"[1]");
        assert!(q.out.capacity() <= RETAIN_BYTES);
        // Deeply nested input: no recursion in the rewriter.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(q.rewrite(deep.as_bytes()).len(), deep.len() + 2);
    }
}
