//! Gateway symbols as NATS subject tokens, reversibly.
//!
//! A subject is tokens separated by `.`; `*` and `>` are wildcards and
//! whitespace ends a subject. A symbol may hold `.` (`ES.Z26`), so a
//! symbol is one token with every byte outside `A-Z a-z 0-9 - _ / :`
//! written as `~` and two upper-case hex digits (`ES.Z26` → `ES~2EZ26`;
//! `~` itself is `~7E`). Names of the symbol alphabet other than `.` pass
//! unchanged, so subjects stay readable (`tickergate.q.BTC-USD`), and
//! [`decode`] refuses anything [`encode`] cannot produce, so one symbol
//! has exactly one subject.

/// Bytes that stand for themselves in a token.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b':')
}

/// `name` as one subject token.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for b in name.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push('~');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// A token that [`encode`] did not produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an encoded symbol: {0:?}")]
pub struct BadToken(pub String);

/// The name a token of [`encode`] stands for.
pub fn decode(token: &str) -> Result<String, BadToken> {
    let bad = || BadToken(token.chars().take(64).collect());
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if plain(c) => {
                out.push(c);
                i += 1;
            }
            b'~' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                // Upper-case hex only, and only for bytes that need it:
                // one name, one token.
                if !hex
                    .iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                {
                    return Err(bad());
                }
                let s = std::str::from_utf8(hex).map_err(|_| bad())?;
                let v = u8::from_str_radix(s, 16).map_err(|_| bad())?;
                if plain(v) {
                    return Err(bad());
                }
                out.push(v);
                i += 3;
            }
            _ => return Err(bad()),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_one_readable_token_and_come_back() {
        for (name, token) in [
            ("BTC-USD", "BTC-USD"),
            ("ES.Z26", "ES~2EZ26"),
            ("BTC/USD", "BTC/USD"),
            ("a:b_c", "a:b_c"),
            ("x*y>z", "x~2Ay~3Ez"),
            ("~", "~7E"),
            ("a b", "a~20b"),
        ] {
            assert_eq!(encode(name), token);
            assert_eq!(decode(token).as_deref(), Ok(name));
            assert!(!token.contains(['.', '*', '>', ' ']), "{token}");
        }
    }

    #[test]
    fn decode_refuses_what_encode_never_writes() {
        for t in ["a.b", "a~2e", "a~2", "a~", "~41", "a*", "a>", "~ZZ", "é"] {
            assert!(decode(t).is_err(), "{t}");
        }
    }

    #[test]
    fn every_valid_symbol_round_trips() {
        // Pseudo-random names over the symbol alphabet and a few others.
        let alphabet = b"ABCxyz019.-_/:~*> ";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 32) as usize;
            let name: String = (0..len)
                .map(|i| alphabet[((x >> (i % 8 * 8)) as usize + i) % alphabet.len()] as char)
                .collect();
            let token = encode(&name);
            assert_eq!(decode(&token).as_deref(), Ok(name.as_str()));
            assert!(!token.contains(['.', '*', '>', ' ']));
        }
    }
}
