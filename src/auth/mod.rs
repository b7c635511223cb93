//! Token auth and entitlements.
//!
//! Two kinds of credential map to an [`Entitlement`] (which symbols a client
//! may see, how many connections and symbols it may hold):
//! - API keys: only the SHA-256 of each key is configured and kept; a
//!   presented token is hashed and compared in constant time against every
//!   configured hash, so the time taken does not say which (if any) matched.
//!   The legacy `auth.token_sha256` list are keys entitled to everything.
//! - JWTs, for teams that issue tokens from their own auth service or an
//!   identity provider, carrying the same entitlements as claims: HS256
//!   with a shared secret, or RS256, ES256 and EdDSA with the provider's
//!   public keys (verified with ring). Which one is configuration, never
//!   the token's `alg` (no algorithm confusion).
//!
//! Auth is off when nothing is configured. Errors say "invalid token" or
//! "expired token", never which key exists.

mod config;
mod jwt;

pub use config::{AuthConfig, JwtConfig, KeyConfig, MIN_JWT_SECRET_BYTES};
pub use jwt::KeyFileError;

use crate::invalid::Invalid;
use crate::protocol::Disconnect;
use crate::sync::Mutex;
use jwt::Jwt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Why the configured auth cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid config: {0}")]
    Secret(Invalid),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

/// Why a token was refused. The message is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown key, bad signature, malformed, wrong `alg`, `iss` or `aud`.
    #[error("invalid token")]
    Invalid,
    /// A JWT past its `exp` (plus leeway).
    #[error("expired token")]
    Expired,
    /// A JWT before its `nbf` (minus leeway).
    #[error("token not yet valid")]
    NotYetValid,
}

impl AuthError {
    /// How a session that presented the token is closed.
    pub fn disconnect(&self) -> &'static Disconnect {
        match self {
            AuthError::Invalid => &Disconnect::TOKEN_INVALID,
            AuthError::Expired => &Disconnect::TOKEN_EXPIRED,
            AuthError::NotYetValid => &Disconnect::TOKEN_NOT_YET_VALID,
        }
    }

    /// The client-facing message, also the close reason.
    pub fn reason(&self) -> &'static str {
        self.disconnect().reason
    }

    /// The `reason` label of `tickergate_auth_failures_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired",
            AuthError::Invalid | AuthError::NotYetValid => "invalid",
        }
    }
}

pub use crate::model::Pattern;

/// What one credential may do.
#[derive(Debug, Clone)]
pub struct Entitlement {
    /// Key name from config, or `jwt:<sub>`. For logs, metrics and the
    /// per-key connection count; never the secret.
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub max_connections: Option<usize>,
    pub max_symbols: Option<usize>,
}

impl Entitlement {
    /// Entitled to every symbol, no per-key limits.
    pub fn all(name: &str) -> Entitlement {
        Entitlement {
            name: name.to_string(),
            patterns: vec![Pattern::All],
            max_connections: None,
            max_symbols: None,
        }
    }

    pub fn allows(&self, symbol: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(symbol))
    }
}

/// The most symbols a session (or a request) of `ent` may hold: the key's
/// `max_symbols` under the gateway's `cap` (`None`: auth off, the cap).
pub fn symbol_cap(ent: Option<&Entitlement>, cap: usize) -> usize {
    ent.and_then(|e| e.max_symbols).map_or(cap, |m| m.min(cap))
}

/// Whether `ent` (if any: `None` means auth is off) allows `symbol`.
pub fn allowed(ent: Option<&Entitlement>, symbol: &str) -> bool {
    ent.is_none_or(|e| e.allows(symbol))
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

/// Lowercase hex SHA-256 of `token`: what goes into `auth.token_sha256`
/// and `auth.keys[].sha256`.
pub fn token_hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longest token looked at; longer ones are invalid without further work.
const MAX_TOKEN_BYTES: usize = 8192;

/// Open connections per key name, for `max_connections`. An entry exists
/// only while the key has a connection, so the map is bounded by the
/// number of sessions.
type ConnCounts = Arc<Mutex<HashMap<String, usize>>>;

/// Holds one of a key's connections; released on drop.
pub struct KeyConnGuard {
    counts: ConnCounts,
    name: String,
}

impl Drop for KeyConnGuard {
    fn drop(&mut self) {
        let mut m = self.counts.lock();
        if let Some(n) = m.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

/// The key already holds its `max_connections` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections for this key")]
pub struct KeyAtLimit;

pub struct Auth {
    keys: Vec<([u8; 32], Arc<Entitlement>)>,
    jwt: Option<Jwt>,
    conns: ConnCounts,
}

impl Auth {
    /// Legacy constructor: each hash is a token entitled to everything.
    /// `hashes` were validated by `Config::validate`; invalid ones are skipped.
    pub fn new(hashes: &[String]) -> Self {
        let keys = hashes
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let name = format!("token_sha256[{i}]");
                unhex(h).map(|k| (k, Arc::new(Entitlement::all(&name))))
            })
            .collect();
        Auth {
            keys,
            jwt: None,
            conns: Default::default(),
        }
    }

    /// From `[auth]` (validated). Fails when the JWT secret's environment
    /// variable is missing at start, or a public key file cannot be read or
    /// is not a key a JWT can be verified with (the error names it).
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, SetupError> {
        let mut auth = Auth::new(&cfg.token_sha256);
        for k in &cfg.keys {
            let Some(h) = unhex(&k.sha256) else { continue };
            let ent = Entitlement {
                name: k.name.clone(),
                patterns: k.symbols.iter().filter_map(|p| Pattern::parse(p)).collect(),
                max_connections: k.max_connections,
                max_symbols: k.max_symbols,
            };
            auth.keys.push((h, Arc::new(ent)));
        }
        if let Some(j) = &cfg.jwt {
            auth.jwt = Some(Jwt::from_config(j)?);
        }
        Ok(auth)
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || self.jwt.is_some()
    }

    /// Reads `[auth.jwt] public_keys` again (SIGHUP, after an identity
    /// provider's key rotation): tokens are checked against the new set
    /// from now on, and sessions already admitted stay. Returns how many
    /// keys were loaded; `None` without public keys. On an error (a file
    /// that cannot be used, named) the keys in use stay. Blocks on file
    /// reads.
    pub fn reload_public_keys(&self, cfg: &AuthConfig) -> Option<Result<usize, KeyFileError>> {
        self.jwt.as_ref()?.reload(cfg.jwt.as_ref()?)
    }

    /// Whether SIGHUP has JWT public keys to reload.
    pub fn has_public_keys(&self) -> bool {
        self.jwt.as_ref().is_some_and(Jwt::has_public_keys)
    }

    /// Whether `token` is accepted (any entitlement). True when auth is off.
    pub fn verify(&self, token: &str) -> bool {
        self.authenticate(token).is_ok()
    }

    /// The entitlement of `token`. With auth off, everything is allowed.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Entitlement>, AuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.authenticate_at(token, now)
    }

    /// [`Auth::authenticate`] with the clock (Unix seconds) as a parameter.
    pub fn authenticate_at(&self, token: &str, now: i64) -> Result<Arc<Entitlement>, AuthError> {
        if !self.enabled() {
            return Ok(Arc::new(Entitlement::all("anonymous")));
        }
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        // Every configured hash is compared, so the time taken does not
        // depend on which one (if any) matches.
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Arc<Entitlement>> = None;
        for (k, ent) in &self.keys {
            if ct_eq(k, &h) {
                found = Some(ent);
            }
        }
        if let Some(ent) = found {
            return Ok(ent.clone());
        }
        match &self.jwt {
            Some(jwt) if token.bytes().filter(|&b| b == b'.').count() == 2 => {
                jwt.verify(token, now)
            }
            _ => Err(AuthError::Invalid),
        }
    }

    /// Takes one of `ent`'s connections. `Ok(None)`: the key has no
    /// connection limit.
    pub fn acquire(&self, ent: &Entitlement) -> Result<Option<KeyConnGuard>, KeyAtLimit> {
        let Some(max) = ent.max_connections else {
            return Ok(None);
        };
        let mut m = self.conns.lock();
        let n = m.entry(ent.name.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                m.remove(&ent.name);
            }
            return Err(KeyAtLimit);
        }
        *n += 1;
        Ok(Some(KeyConnGuard {
            counts: self.conns.clone(),
            name: ent.name.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};

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

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    pub(super) fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn jwt(header: &str, claims: &str, secret: &str) -> String {
        let signing = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing.as_bytes());
        format!("{signing}.{}", b64(&mac.finalize().into_bytes()))
    }

    pub(super) fn auth() -> Auth {
        Auth::from_config(&AuthConfig {
            token_sha256: vec![token_hash_hex("legacy")],
            keys: vec![KeyConfig {
                name: "desk".into(),
                sha256: token_hash_hex("desk-key"),
                symbols: vec!["BTC-*".into(), "AAPL".into()],
                max_connections: Some(1),
                max_symbols: Some(3),
            }],
            jwt: Some(JwtConfig {
                public_keys: Vec::new(),
                secret: Some(SECRET.into()),
                secret_env: None,
                issuer: Some("idp".into()),
                audience: Some("tickergate".into()),
                leeway_s: 30,
            }),
        })
        .unwrap()
    }

    const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("*"), Some(Pattern::All));
        assert_eq!(
            Pattern::parse("BTC-*"),
            Some(Pattern::Prefix("BTC-".into()))
        );
        assert_eq!(Pattern::parse("AAPL"), Some(Pattern::Exact("AAPL".into())));
        for bad in ["", "**", "B*C", "*BTC", "a b", "BTC-**"] {
            assert_eq!(Pattern::parse(bad), None, "{bad}");
        }
        let a = auth();
        let e = a.authenticate("desk-key").unwrap();
        assert_eq!(e.name, "desk");
        assert!(e.allows("BTC-USD") && e.allows("AAPL"));
        assert!(!e.allows("ETH-USD") && !e.allows("AAPLX") && !e.allows("BTC"));
        assert!(a.authenticate("legacy").unwrap().allows("ETH-USD"));
        assert_eq!(a.authenticate("nope").unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn per_key_connections() {
        let a = auth();
        let e = a.authenticate("desk-key").unwrap();
        let g = a.acquire(&e).unwrap();
        assert!(g.is_some());
        assert!(a.acquire(&e).is_err());
        drop(g);
        assert!(a.acquire(&e).unwrap().is_some());
        let legacy = a.authenticate("legacy").unwrap();
        assert!(a.acquire(&legacy).unwrap().is_none());
        assert!(a.conns.lock().is_empty());
    }

    #[test]
    fn jwt_checks() {
        let a = auth();
        let now = 1_800_000_000;
        let good = r#"{"sub":"bot","exp":1800000100,"iss":"idp","aud":["x","tickergate"],"symbols":["ETH-*"],"max_symbols":2}"#;
        let e = a.authenticate_at(&jwt(HS, good, SECRET), now).unwrap();
        assert_eq!(e.name, "jwt:bot");
        assert!(e.allows("ETH-USD") && !e.allows("BTC-USD"));
        assert_eq!(e.max_symbols, Some(2));
        let t = jwt(HS, good, SECRET);
        // Expiry with leeway.
        assert!(a.authenticate_at(&t, 1_800_000_129).is_ok());
        assert_eq!(
            a.authenticate_at(&t, 1_800_000_131).unwrap_err(),
            AuthError::Expired
        );
        let nbf =
            r#"{"sub":"bot","exp":1800000100,"nbf":1800000050,"iss":"idp","aud":"tickergate"}"#;
        assert_eq!(
            a.authenticate_at(&jwt(HS, nbf, SECRET), now).unwrap_err(),
            AuthError::NotYetValid
        );
        assert!(a
            .authenticate_at(&jwt(HS, nbf, SECRET), 1_800_000_021)
            .is_ok());
        let invalid = |tok: &str| a.authenticate_at(tok, now).unwrap_err();
        assert_eq!(invalid(&jwt(HS, good, "wrong-secret")), AuthError::Invalid);
        assert_eq!(
            invalid(&jwt(r#"{"alg":"none"}"#, good, SECRET)),
            AuthError::Invalid
        );
        let parts: Vec<&str> = t.split('.').collect();
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(invalid(&unsigned), AuthError::Invalid);
        assert_eq!(
            invalid(&jwt(r#"{"alg":"HS512"}"#, good, SECRET)),
            AuthError::Invalid
        );
        for claims in [
            r#"{"sub":"bot","exp":1800000100,"iss":"other","aud":"tickergate"}"#,
            r#"{"sub":"bot","exp":1800000100,"iss":"idp","aud":"other"}"#,
            r#"{"sub":"bot","exp":1800000100,"iss":"idp"}"#,
            r#"{"exp":1800000100,"iss":"idp","aud":"tickergate"}"#,
            r#"{"sub":"bot","iss":"idp","aud":"tickergate"}"#,
            r#"{"sub":"bot","exp":"soon","iss":"idp","aud":"tickergate"}"#,
            r#"{"sub":"bot","exp":1800000100,"iss":"idp","aud":"tickergate","symbols":["B*D"]}"#,
            r#"[1,2]"#,
            "not json",
        ] {
            assert_eq!(
                invalid(&jwt(HS, claims, SECRET)),
                AuthError::Invalid,
                "{claims}"
            );
        }
        for junk in [
            "a.b.c",
            "..",
            "a..",
            "....",
            "ey.ey.ey",
            &format!("{}.{}.%%%", parts[0], parts[1]),
            &format!("{}.{}.{}x", parts[0], parts[1], parts[2]),
            &format!("{}.{}", parts[0], parts[1]),
            &"a.".repeat(5000),
        ] {
            assert_eq!(invalid(junk), AuthError::Invalid, "{junk:.40}");
        }
    }
}
