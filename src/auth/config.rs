//! `[auth]`: API keys, legacy tokens and JWTs, and what each may see.

use super::Pattern;
use crate::invalid::Invalid;
use serde::Deserialize;
use std::path::PathBuf;

/// `[auth]`: off unless a token, a key or `[auth.jwt]` is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted tokens, as lowercase hex SHA-256 of the token (the token
    /// itself is never stored), each entitled to every symbol. Default: empty.
    pub token_sha256: Vec<String>,
    /// `[[auth.keys]]`: API keys with entitlements. Default: none.
    pub keys: Vec<KeyConfig>,
    /// `[auth.jwt]`: accept JWTs (HS256 with a shared secret, or RS256,
    /// ES256 and EdDSA with public keys). Default: absent (no JWTs).
    pub jwt: Option<JwtConfig>,
}

impl AuthConfig {
    /// Whether clients must present a token.
    pub fn enabled(&self) -> bool {
        !self.token_sha256.is_empty() || !self.keys.is_empty() || self.jwt.is_some()
    }
}

fn all_symbols() -> Vec<String> {
    vec!["*".to_string()]
}

/// `[[auth.keys]]`: one API key and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Unique name, used in logs and metrics (never the key). Required.
    pub name: String,
    /// Lowercase hex SHA-256 of the key. Required.
    pub sha256: String,
    /// Symbol patterns the key may see: exact names, a trailing-`*` prefix
    /// (`BTC-*`) or `*` for all. Default `["*"]`.
    #[serde(default = "all_symbols")]
    pub symbols: Vec<String>,
    /// Concurrent WebSocket sessions with this key. Default: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Symbols one session of this key may hold; the lower of this and
    /// `session.max_symbols` applies. Default: `session.max_symbols`.
    #[serde(default)]
    pub max_symbols: Option<usize>,
}

fn default_leeway() -> u64 {
    30
}

/// `[auth.jwt]`: JSON Web Tokens, verified with an HS256 shared secret or
/// with public keys (RS256, ES256, EdDSA).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HS256 shared secret (at least 32 bytes). Exactly one of
    /// `secret`, `secret_env` and `public_keys` is required.
    #[serde(default)]
    pub secret: Option<String>,
    /// Name of an environment variable holding the secret, read at start.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, as an identity
    /// provider publishes them): RSA of 2048 to 8192 bits (RS256), EC P-256
    /// (ES256) or Ed25519 (EdDSA). A token is checked against every key of
    /// its `alg`, so an old and a new key can be configured during a
    /// rotation. Read at start; a relative path is taken relative to the
    /// config file's directory.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// Required `iss` claim. Default: not checked.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` claim (string, or one of an array). Default: not checked.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
}

impl std::fmt::Debug for JwtConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("public_keys", &self.public_keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl JwtConfig {
    /// The secret, from the file or the environment; the error names the
    /// field relative to `[auth]`.
    pub fn resolve_secret(&self) -> Result<String, Invalid> {
        let secret = match (&self.secret, &self.secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                Invalid::new(
                    "jwt.secret_env",
                    format!("environment variable {var:?} is not set (or not UTF-8)"),
                )
            })?,
            _ => {
                return Err(Invalid::new(
                    "jwt.secret",
                    "exactly one of `secret`, `secret_env` and `public_keys` is required",
                ))
            }
        };
        if secret.len() < MIN_JWT_SECRET_BYTES {
            let field = if self.secret.is_some() {
                "jwt.secret"
            } else {
                "jwt.secret_env"
            };
            return Err(Invalid::new(
                field,
                format!("the HS256 secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        Ok(secret)
    }
}

impl AuthConfig {
    /// Checks the fields; names them relative to `[auth]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, t) in self.token_sha256.iter().enumerate() {
            if !is_sha256_hex(t) {
                return Err(Invalid::new(
                    format!("token_sha256[{i}]"),
                    "must be 64 hex digits (the SHA-256 of the token)",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut hashes: std::collections::HashSet<String> = self
            .token_sha256
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for (i, k) in self.keys.iter().enumerate() {
            k.validate(&mut names, &mut hashes)
                .map_err(|e| e.under(&format!("keys[{i}]")))?;
        }
        if let Some(j) = &self.jwt {
            j.validate()?;
        }
        Ok(())
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl KeyConfig {
    /// Checks one key against the names and hashes of those before it.
    fn validate<'a>(
        &'a self,
        names: &mut std::collections::HashSet<&'a str>,
        hashes: &mut std::collections::HashSet<String>,
    ) -> Result<(), Invalid> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(Invalid::new("name", "must be 1 to 64 characters"));
        }
        if self.name.starts_with("jwt:") {
            // Reserved for JWT subjects (`jwt:<sub>`), which share the
            // per-key connection count.
            return Err(Invalid::new("name", "must not start with `jwt:`"));
        }
        if !names.insert(self.name.as_str()) {
            return Err(Invalid::new(
                "name",
                format!("duplicate key name {:?}", self.name),
            ));
        }
        if !is_sha256_hex(&self.sha256) {
            return Err(Invalid::new(
                "sha256",
                "must be 64 hex digits (the SHA-256 of the key)",
            ));
        }
        if !hashes.insert(self.sha256.to_ascii_lowercase()) {
            return Err(Invalid::new("sha256", "the same key is configured twice"));
        }
        if self.symbols.is_empty() {
            return Err(Invalid::new(
                "symbols",
                "at least one pattern is required (`*` for all)",
            ));
        }
        for (j, p) in self.symbols.iter().enumerate() {
            if Pattern::parse(p).is_none() {
                return Err(Invalid::new(
                    format!("symbols[{j}]"),
                    format!("bad pattern {p:?}: an exact symbol, a prefix ending in `*`, or `*`"),
                ));
            }
        }
        if self.max_connections == Some(0) {
            return Err(Invalid::new("max_connections", "must be at least 1"));
        }
        if self.max_symbols == Some(0) {
            return Err(Invalid::new("max_symbols", "must be at least 1"));
        }
        Ok(())
    }
}

impl JwtConfig {
    /// Checks `[auth.jwt]`; names fields relative to `[auth]`.
    fn validate(&self) -> Result<(), Invalid> {
        if self.public_keys.is_empty() {
            self.resolve_secret()?;
        } else if self.secret.is_some() || self.secret_env.is_some() {
            return Err(Invalid::new(
                "jwt.public_keys",
                "public keys or an HS256 secret, not both (a token's alg must not choose)",
            ));
        } else {
            // An identity provider signs tokens for other applications
            // too: only `iss` and `aud` make one meant for this gateway.
            for (field, v) in [
                ("jwt.issuer", &self.issuer),
                ("jwt.audience", &self.audience),
            ] {
                if v.is_none() {
                    return Err(Invalid::new(
                        field,
                        "required with public_keys: the identity provider signs tokens for other applications too",
                    ));
                }
            }
        }
        for (i, p) in self.public_keys.iter().enumerate() {
            if p.as_os_str().is_empty() {
                return Err(Invalid::new(
                    format!("jwt.public_keys[{i}]"),
                    "an empty path",
                ));
            }
        }
        if self.issuer.as_deref() == Some("") {
            return Err(Invalid::new("jwt.issuer", "must not be empty"));
        }
        if self.audience.as_deref() == Some("") {
            return Err(Invalid::new("jwt.audience", "must not be empty"));
        }
        Ok(())
    }
}
