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

use crate::config::AuthConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    /// The client-facing message, also the close reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Invalid => "invalid token",
            AuthError::Expired => "expired token",
            AuthError::NotYetValid => "token not yet valid",
        }
    }

    /// The `reason` label of `tickergate_auth_failures_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired",
            AuthError::Invalid | AuthError::NotYetValid => "invalid",
        }
    }
}

/// One symbol pattern: an exact name, a trailing-`*` prefix, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    All,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `BTC-*` or `AAPL`; `None` for anything else (a `*`
    /// elsewhere than at the end, characters no symbol can have).
    pub fn parse(s: &str) -> Option<Pattern> {
        if s == "*" {
            return Some(Pattern::All);
        }
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_/:".contains(&b))
        };
        match s.strip_suffix('*') {
            Some(prefix) if ok(prefix) => Some(Pattern::Prefix(prefix.to_string())),
            Some(_) => None,
            None if ok(s) => Some(Pattern::Exact(s.to_string())),
            None => None,
        }
    }

    pub fn matches(&self, symbol: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(p) => symbol.starts_with(p.as_str()),
            Pattern::Exact(e) => symbol == e,
        }
    }
}

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

/// JWT verification settings.
struct Jwt {
    /// Public keys are read again on SIGHUP ([`Auth::reload_public_keys`]).
    keys: std::sync::RwLock<JwtKeys>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: i64,
}

/// What verifies a JWT's signature: one or the other, by configuration.
enum JwtKeys {
    /// HS256.
    Secret(Vec<u8>),
    /// Each with its algorithm; a token is checked against those of its
    /// `alg`.
    Public(Vec<PublicKey>),
}

/// The JWS algorithms a public key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn ring(self) -> &'static dyn ring::signature::VerificationAlgorithm {
        match self {
            Alg::Rs256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            // JWS (RFC 7518 3.4): r and s, 32 bytes each, not DER.
            Alg::Es256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
            Alg::EdDsa => &ring::signature::ED25519,
        }
    }
}

struct PublicKey {
    alg: Alg,
    key: ring::signature::UnparsedPublicKey<Vec<u8>>,
}

/// Reads the PEM public keys (SubjectPublicKeyInfo, one or more blocks) of
/// a file and finds what each verifies. The error names the file.
fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, String> {
    use rustls::pki_types::pem::PemObject;
    let err = |m: String| format!("auth.jwt.public_keys {}: {m}", path.display());
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let ders = rustls::pki_types::SubjectPublicKeyInfoDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if ders.is_empty() {
        return Err(err("no PUBLIC KEY in the PEM file".into()));
    }
    ders.iter()
        .enumerate()
        .map(|(i, d)| public_key(d.as_ref()).map_err(|m| err(format!("key {}: {m}", i + 1))))
        .collect()
}

/// Every key of every file in `paths` (at start and on SIGHUP).
fn load_all_public_keys(paths: &[std::path::PathBuf]) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for p in paths {
        keys.extend(load_public_keys(p)?);
    }
    Ok(keys)
}

/// One SubjectPublicKeyInfo: its algorithm, and a shape ring will accept
/// (ring checks a key only when it verifies: a key that cannot work must
/// stop the start, not refuse every token later).
fn public_key(der: &[u8]) -> Result<PublicKey, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey as Parsed;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| format!("the public key does not parse: {e}"))?;
    let oid = &spki.algorithm.algorithm;
    let data: &[u8] = &spki.subject_public_key.data;
    let alg = if *oid == OID_PKCS1_RSAENCRYPTION {
        let Ok(Parsed::RSA(rsa)) = spki.parsed() else {
            return Err("the RSA key does not parse".into());
        };
        let n = rsa.modulus;
        let n = &n[n.iter().take_while(|&&b| b == 0).count()..];
        let bits = n
            .first()
            .map_or(0, |&b| n.len() * 8 - b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(format!(
                "an RSA key of {bits} bits: RS256 needs 2048 to 8192"
            ));
        }
        let e = rsa.try_exponent().unwrap_or(0);
        if e < 3 || e % 2 == 0 || e >= 1 << 33 {
            return Err(format!(
                "an RSA public exponent of {e}: must be odd, 3 to 2^33-1"
            ));
        }
        Alg::Rs256
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.as_ref() != Some(&OID_EC_P256) {
            return Err("an EC key on a curve other than P-256 (ES256)".into());
        }
        if data.len() != 65 || data[0] != 4 {
            return Err("a P-256 key that is not an uncompressed point (65 bytes)".into());
        }
        Alg::Es256
    } else if *oid == OID_SIG_ED25519 {
        if data.len() != 32 || spki.algorithm.parameters.is_some() {
            return Err(format!(
                "an Ed25519 key of {} bytes: must be 32, without parameters",
                data.len()
            ));
        }
        Alg::EdDsa
    } else {
        return Err(format!(
            "a key of type {oid}: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) only"
        ));
    };
    Ok(PublicKey {
        alg,
        key: ring::signature::UnparsedPublicKey::new(alg.ring(), data.to_vec()),
    })
}

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
        // std Mutex: held for a map update only, never across an await.
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
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
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, String> {
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
            let keys = if j.public_keys.is_empty() {
                JwtKeys::Secret(j.resolve_secret().map_err(|e| e.to_string())?.into_bytes())
            } else {
                JwtKeys::Public(load_all_public_keys(&j.public_keys)?)
            };
            auth.jwt = Some(Jwt {
                keys: std::sync::RwLock::new(keys),
                issuer: j.issuer.clone(),
                audience: j.audience.clone(),
                leeway_s: i64::try_from(j.leeway_s).unwrap_or(i64::MAX),
            });
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
    pub fn reload_public_keys(&self, cfg: &AuthConfig) -> Option<Result<usize, String>> {
        let paths = &cfg.jwt.as_ref()?.public_keys;
        let jwt = self.jwt.as_ref()?;
        if paths.is_empty() {
            return None;
        }
        let keys = match load_all_public_keys(paths) {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        let n = keys.len();
        *jwt.keys.write().unwrap_or_else(|p| p.into_inner()) = JwtKeys::Public(keys);
        Some(Ok(n))
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
        let mut m = self.conns.lock().unwrap_or_else(|p| p.into_inner());
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

/// Claims read from a JWT payload. Unknown claims are ignored.
#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    #[serde(default)]
    symbols: Vec<String>,
    max_connections: Option<u64>,
    max_symbols: Option<u64>,
}

fn numeric_date(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

impl Jwt {
    fn verify(&self, token: &str, now: i64) -> Result<Arc<Entitlement>, AuthError> {
        use AuthError::Invalid;
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid);
        };
        let header = URL_SAFE_NO_PAD.decode(h64).map_err(|_| Invalid)?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| Invalid)?;
        // The configuration decides the algorithm: HS256 with a secret,
        // the public keys' own with keys. `none`, and any `alg` that is not
        // the configured kind, are refused before anything else is looked
        // at (no algorithm confusion: an RSA public key is never tried as
        // an HMAC secret).
        let alg = header.get("alg").and_then(|a| a.as_str()).ok_or(Invalid)?;
        if header.get("crit").is_some() {
            return Err(Invalid);
        }
        let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| Invalid)?;
        match &*self.keys.read().unwrap_or_else(|p| p.into_inner()) {
            JwtKeys::Secret(secret) => {
                if alg != "HS256" {
                    return Err(Invalid);
                }
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Invalid)?;
                mac.update(h64.as_bytes());
                mac.update(b".");
                mac.update(p64.as_bytes());
                // Constant-time comparison.
                mac.verify_slice(&sig).map_err(|_| Invalid)?;
            }
            JwtKeys::Public(keys) => {
                let signed = token.get(..h64.len() + 1 + p64.len()).ok_or(Invalid)?;
                let ok = keys
                    .iter()
                    .filter(|k| k.alg.name() == alg)
                    .any(|k| k.key.verify(signed.as_bytes(), &sig).is_ok());
                if !ok {
                    return Err(Invalid);
                }
            }
        }
        let payload = URL_SAFE_NO_PAD.decode(p64).map_err(|_| Invalid)?;
        let c: Claims = serde_json::from_slice(&payload).map_err(|_| Invalid)?;
        let sub = c.sub.filter(|s| !s.is_empty()).ok_or(Invalid)?;
        let exp = c.exp.as_ref().and_then(numeric_date).ok_or(Invalid)?;
        if now > exp.saturating_add(self.leeway_s) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = &c.nbf {
            let nbf = numeric_date(nbf).ok_or(Invalid)?;
            if now.saturating_add(self.leeway_s) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(iss) = &self.issuer {
            if c.iss.as_deref() != Some(iss.as_str()) {
                return Err(Invalid);
            }
        }
        if let Some(aud) = &self.audience {
            let ok = match &c.aud {
                Some(serde_json::Value::String(a)) => a == aud,
                Some(serde_json::Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(Invalid);
            }
        }
        let mut patterns = Vec::with_capacity(c.symbols.len());
        for s in &c.symbols {
            patterns.push(Pattern::parse(s).ok_or(Invalid)?);
        }
        let size = |v: Option<u64>| v.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let name: String = sub.chars().take(128).collect();
        Ok(Arc::new(Entitlement {
            name: format!("jwt:{name}"),
            patterns,
            max_connections: size(c.max_connections),
            max_symbols: size(c.max_symbols),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, JwtConfig, KeyConfig};

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

    fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn jwt(header: &str, claims: &str, secret: &str) -> String {
        let signing = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing.as_bytes());
        format!("{signing}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn auth() -> Auth {
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
        assert!(a.conns.lock().unwrap().is_empty());
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

    /// JWTs verified with public keys: RS256 (the fixture key), ES256 and
    /// EdDSA (keys made here), against `alg` confusion and forgery.
    mod public_keys {
        use super::*;
        use crate::config::{AuthConfig, JwtConfig};
        use base64::engine::general_purpose::STANDARD;
        use ring::rand::SystemRandom;
        use ring::signature::{self, KeyPair};
        use std::path::PathBuf;

        /// SubjectPublicKeyInfo up to the key bits, for P-256 and Ed25519.
        const P256_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
        const ED25519_SPKI: &str = "302a300506032b6570032100";

        fn unhex_all(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }

        fn dir() -> PathBuf {
            let d = std::env::temp_dir().join(format!(
                "tg-jwt-unit-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&d).unwrap();
            d
        }

        fn write_spki(name: &str, der: &[u8]) -> PathBuf {
            let b64 = STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let path = dir().join(name);
            std::fs::write(
                &path,
                format!(
                    "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                    lines.join("\n")
                ),
            )
            .unwrap();
            path
        }

        type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

        /// A signing key, its `alg` and its public key file.
        struct Signer {
            alg: &'static str,
            public: PathBuf,
            sign: Sign,
        }

        fn es256(name: &str) -> Signer {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let kp = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let mut spki = unhex_all(P256_SPKI);
            spki.extend_from_slice(kp.public_key().as_ref());
            Signer {
                alg: "ES256",
                public: write_spki(name, &spki),
                sign: Box::new(move |m| {
                    kp.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec()
                }),
            }
        }

        fn eddsa(name: &str) -> Signer {
            let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            let kp = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let mut spki = unhex_all(ED25519_SPKI);
            spki.extend_from_slice(kp.public_key().as_ref());
            Signer {
                alg: "EdDSA",
                public: write_spki(name, &spki),
                sign: Box::new(move |m| kp.sign(m).as_ref().to_vec()),
            }
        }

        fn fixture(name: &str) -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/jwt")
                .join(name)
        }

        fn rs256() -> Signer {
            rs256_from("rs256-private.pem")
        }

        /// The fixture key (verified by `rs256-public.pem`), or another.
        fn rs256_from(private: &str) -> Signer {
            use rustls::pki_types::pem::PemObject;
            let der =
                rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(fixture(private)).unwrap();
            let kp = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
            Signer {
                alg: "RS256",
                public: fixture("rs256-public.pem"),
                sign: Box::new(move |m| {
                    let mut sig = vec![0; kp.public().modulus_len()];
                    kp.sign(
                        &signature::RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        m,
                        &mut sig,
                    )
                    .unwrap();
                    sig
                }),
            }
        }

        fn token_with(header: &str, claims: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
            let signing = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let sig = sign(signing.as_bytes());
            format!("{signing}.{}", b64(&sig))
        }

        fn token(s: &Signer, claims: &str) -> String {
            token_with(
                &format!(r#"{{"alg":"{}","typ":"JWT"}}"#, s.alg),
                claims,
                &s.sign,
            )
        }

        fn auth_with(keys: &[&Signer]) -> Auth {
            let cfg = AuthConfig {
                jwt: Some(JwtConfig {
                    secret: None,
                    secret_env: None,
                    public_keys: keys.iter().map(|k| k.public.clone()).collect(),
                    issuer: Some("idp".into()),
                    audience: Some("tickergate".into()),
                    leeway_s: 30,
                }),
                ..AuthConfig::default()
            };
            Auth::from_config(&cfg).unwrap()
        }

        const NOW: i64 = 1_800_000_000;
        const CLAIMS: &str = r#"{"sub":"desk-9","iss":"idp","aud":"tickergate","exp":1800003600,"symbols":["BTC-*"],"max_symbols":4}"#;

        #[test]
        fn each_algorithm_verifies_its_own_tokens_and_no_forgery() {
            for (s, other) in [
                (rs256(), rs256_from("rs256-other-private.pem")),
                (es256("es.pem"), es256("es-other.pem")),
                (eddsa("ed.pem"), eddsa("ed-other.pem")),
            ] {
                let auth = auth_with(&[&s]);
                let ent = auth.authenticate_at(&token(&s, CLAIMS), NOW).unwrap();
                assert_eq!(ent.name, "jwt:desk-9", "{}", s.alg);
                assert!(ent.allows("BTC-USD") && !ent.allows("AAPL"));
                assert_eq!(ent.max_symbols, Some(4));
                // The same claims signed by a key that is not configured.
                let forged = token_with(&format!(r#"{{"alg":"{}"}}"#, s.alg), CLAIMS, &other.sign);
                assert_eq!(
                    auth.authenticate_at(&forged, NOW).err(),
                    Some(AuthError::Invalid)
                );
                // A valid signature over other claims, claims swapped in.
                let good = token(&s, CLAIMS);
                let parts: Vec<&str> = good.split('.').collect();
                let more = CLAIMS.replace("BTC-*", "*");
                let tampered = format!("{}.{}.{}", parts[0], b64(more.as_bytes()), parts[2]);
                assert_eq!(
                    auth.authenticate_at(&tampered, NOW).err(),
                    Some(AuthError::Invalid)
                );
                // Expiry still applies.
                assert_eq!(
                    auth.authenticate_at(&token(&s, CLAIMS), 1_800_003_700)
                        .err(),
                    Some(AuthError::Expired)
                );
            }
        }

        #[test]
        fn the_configuration_not_the_token_chooses_the_algorithm() {
            let rsa = rs256();
            let auth = auth_with(&[&rsa]);
            // The classic confusion: HS256 with the public key as the secret.
            let pem = std::fs::read(&rsa.public).unwrap();
            let confused = token_with(r#"{"alg":"HS256"}"#, CLAIMS, &|m: &[u8]| {
                let mut mac = Hmac::<Sha256>::new_from_slice(&pem).unwrap();
                mac.update(m);
                mac.finalize().into_bytes().to_vec()
            });
            assert_eq!(
                auth.authenticate_at(&confused, NOW).err(),
                Some(AuthError::Invalid)
            );
            let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(CLAIMS.as_bytes()));
            assert_eq!(
                auth.authenticate_at(&none, NOW).err(),
                Some(AuthError::Invalid)
            );
            // An RS256 signature presented as another algorithm.
            let relabelled = token_with(r#"{"alg":"PS256"}"#, CLAIMS, &rsa.sign);
            assert_eq!(
                auth.authenticate_at(&relabelled, NOW).err(),
                Some(AuthError::Invalid)
            );
            // A secret-configured gateway refuses public-key algorithms.
            let hs = super::auth();
            assert_eq!(
                hs.authenticate_at(&token(&rsa, CLAIMS), NOW).err(),
                Some(AuthError::Invalid)
            );
        }

        #[test]
        fn two_keys_of_a_rotation_both_verify() {
            let (old, new, rsa) = (es256("rot-old.pem"), es256("rot-new.pem"), rs256());
            let auth = auth_with(&[&old, &new, &rsa]);
            for s in [&old, &new, &rsa] {
                assert!(
                    auth.authenticate_at(&token(s, CLAIMS), NOW).is_ok(),
                    "{}",
                    s.alg
                );
            }
            // One file may hold several keys (a provider's bundle).
            let bundle = dir().join("bundle.pem");
            let text = [&old, &new].map(|s| std::fs::read_to_string(&s.public).unwrap());
            std::fs::write(&bundle, text.concat()).unwrap();
            let auth = auth_with(&[&Signer {
                alg: "ES256",
                public: bundle,
                sign: Box::new(|_| Vec::new()),
            }]);
            for s in [&old, &new] {
                assert!(auth.authenticate_at(&token(s, CLAIMS), NOW).is_ok());
            }
            // After the rotation the old key is gone.
            let auth = auth_with(&[&new]);
            assert_eq!(
                auth.authenticate_at(&token(&old, CLAIMS), NOW).err(),
                Some(AuthError::Invalid)
            );
        }

        #[test]
        fn a_reload_moves_to_the_new_keys_and_a_bad_file_keeps_the_old() {
            let (a, b) = (es256("reload-a.pem"), es256("reload-b.pem"));
            let path = dir().join("reload-idp.pem");
            std::fs::copy(&a.public, &path).unwrap();
            let cfg = AuthConfig {
                jwt: Some(JwtConfig {
                    secret: None,
                    secret_env: None,
                    public_keys: vec![path.clone()],
                    issuer: Some("idp".into()),
                    audience: Some("tickergate".into()),
                    leeway_s: 30,
                }),
                ..AuthConfig::default()
            };
            let auth = Auth::from_config(&cfg).unwrap();
            let ok = |s: &Signer| auth.authenticate_at(&token(s, CLAIMS), NOW).is_ok();
            assert!(ok(&a) && !ok(&b));
            // The provider rotated: its new key replaces the file.
            std::fs::copy(&b.public, &path).unwrap();
            assert_eq!(auth.reload_public_keys(&cfg), Some(Ok(1)));
            assert!(ok(&b) && !ok(&a));
            // A bad file: the error names it, the keys in use stay.
            std::fs::write(&path, "truncated\n").unwrap();
            let e = auth.reload_public_keys(&cfg).unwrap().unwrap_err();
            assert!(e.contains(path.to_str().unwrap()), "{e}");
            assert!(ok(&b) && !ok(&a));
            // Nothing to reload with a secret.
            assert_eq!(
                super::auth().reload_public_keys(&AuthConfig::default()),
                None
            );
        }

        #[test]
        fn unusable_key_files_are_start_errors_naming_them() {
            let cfg = |path: PathBuf| AuthConfig {
                jwt: Some(JwtConfig {
                    secret: None,
                    secret_env: None,
                    public_keys: vec![path],
                    issuer: None,
                    audience: None,
                    leeway_s: 30,
                }),
                ..AuthConfig::default()
            };
            let missing = dir().join("missing.pem");
            let garbage = dir().join("garbage.pem");
            std::fs::write(&garbage, "not a key\n").unwrap();
            // A private key where the public one belongs.
            let private = fixture("rs256-private.pem");
            // An EC key on P-384 (made by hand: P-384's SPKI header).
            let p384 = {
                let rng = SystemRandom::new();
                let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
                let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
                let kp = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
                let mut spki = unhex_all("3076301006072a8648ce3d020106052b81040022036200");
                spki.extend_from_slice(kp.public_key().as_ref());
                write_spki("p384.pem", &spki)
            };
            // An Ed25519 key one byte short: ring would refuse every token.
            let short = {
                let mut spki = unhex_all("302930050603" /* len 0x29 */);
                spki.extend(unhex_all("2b6570032000"));
                spki.extend([7u8; 31]);
                write_spki("ed-short.pem", &spki)
            };
            for (path, says) in [
                (missing, "cannot read"),
                (garbage, "no PUBLIC KEY"),
                (private, "no PUBLIC KEY"),
                (p384, "P-256"),
                (short, "must be 32"),
            ] {
                let e = Auth::from_config(&cfg(path.clone()))
                    .err()
                    .unwrap_or_default();
                assert!(
                    e.contains(path.to_str().unwrap()) && e.contains(says),
                    "{}: {e}",
                    path.display()
                );
            }
        }
    }
}
