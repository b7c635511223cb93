//! Token auth. Only the SHA-256 of each token is configured and kept; a
//! presented token is hashed and compared in constant time against each.
//! Auth is off when no token is configured.

use sha2::{Digest, Sha256};

pub struct Auth {
    hashes: Vec<[u8; 32]>,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Lowercase hex SHA-256 of `token`: what goes into `auth.token_sha256`.
pub fn token_hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Auth {
    /// `hashes` were validated by `Config::validate`; invalid ones are skipped.
    pub fn new(hashes: &[String]) -> Self {
        Auth {
            hashes: hashes.iter().filter_map(|h| unhex(h)).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether `token` is accepted. Every configured hash is compared, so
    /// the time taken does not depend on which one (if any) matches.
    pub fn verify(&self, token: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.hashes.iter().fold(false, |ok, k| ct_eq(k, &h) | ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_configured_tokens() {
        let a = Auth::new(&[token_hash_hex("s3cret")]);
        assert!(a.enabled());
        assert!(a.verify("s3cret"));
        assert!(!a.verify("s3cret "));
        assert!(!a.verify(""));
        let off = Auth::new(&[]);
        assert!(!off.enabled());
        assert!(off.verify("anything"));
    }
}
