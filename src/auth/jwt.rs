//! JSON Web Tokens: HS256 with a shared secret, or RS256, ES256 and EdDSA
//! with an identity provider's public keys (verified with ring). The
//! configuration decides the algorithm, never the token's `alg`.

use super::config::JwtConfig;
use super::{AuthError, Entitlement, Pattern, SetupError};
use crate::sync::RwLock;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A public key file that cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("auth.jwt.public_keys {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth.jwt.public_keys {}: invalid PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("auth.jwt.public_keys {}: no PUBLIC KEY in the PEM file", path.display())]
    NoKey { path: PathBuf },
    #[error("auth.jwt.public_keys {}: key {index}: {problem}", path.display())]
    Unusable {
        path: PathBuf,
        index: usize,
        problem: UnusableKey,
    },
}

/// Why one public key cannot verify JWTs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnusableKey(String);

/// JWT verification settings.
pub(super) struct Jwt {
    /// Public keys are read again on SIGHUP
    /// ([`super::Auth::reload_public_keys`]).
    keys: RwLock<JwtKeys>,
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
fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, KeyFileError> {
    use rustls::pki_types::pem::PemObject;
    let path_buf = || path.to_path_buf();
    let pem = std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path_buf(),
        source,
    })?;
    let ders = rustls::pki_types::SubjectPublicKeyInfoDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyFileError::Pem {
            path: path_buf(),
            message: e.to_string(),
        })?;
    if ders.is_empty() {
        return Err(KeyFileError::NoKey { path: path_buf() });
    }
    ders.iter()
        .enumerate()
        .map(|(i, d)| {
            public_key(d.as_ref()).map_err(|problem| KeyFileError::Unusable {
                path: path_buf(),
                index: i + 1,
                problem,
            })
        })
        .collect()
}

/// Every key of every file in `paths` (at start and on SIGHUP).
fn load_all_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, KeyFileError> {
    let mut keys = Vec::new();
    for p in paths {
        keys.extend(load_public_keys(p)?);
    }
    Ok(keys)
}

/// One SubjectPublicKeyInfo: its algorithm, and a shape ring will accept
/// (ring checks a key only when it verifies: a key that cannot work must
/// stop the start, not refuse every token later).
fn public_key(der: &[u8]) -> Result<PublicKey, UnusableKey> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey as Parsed;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| UnusableKey(format!("the public key does not parse: {e}")))?;
    let oid = &spki.algorithm.algorithm;
    let data: &[u8] = &spki.subject_public_key.data;
    let alg = if *oid == OID_PKCS1_RSAENCRYPTION {
        let Ok(Parsed::RSA(rsa)) = spki.parsed() else {
            return Err(UnusableKey("the RSA key does not parse".into()));
        };
        let n = rsa.modulus;
        let n = &n[n.iter().take_while(|&&b| b == 0).count()..];
        let bits = n
            .first()
            .map_or(0, |&b| n.len() * 8 - b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(UnusableKey(format!(
                "an RSA key of {bits} bits: RS256 needs 2048 to 8192"
            )));
        }
        let e = rsa.try_exponent().unwrap_or(0);
        if e < 3 || e % 2 == 0 || e >= 1 << 33 {
            return Err(UnusableKey(format!(
                "an RSA public exponent of {e}: must be odd, 3 to 2^33-1"
            )));
        }
        Alg::Rs256
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.as_ref() != Some(&OID_EC_P256) {
            return Err(UnusableKey(
                "an EC key on a curve other than P-256 (ES256)".into(),
            ));
        }
        if data.len() != 65 || data[0] != 4 {
            return Err(UnusableKey(
                "a P-256 key that is not an uncompressed point (65 bytes)".into(),
            ));
        }
        Alg::Es256
    } else if *oid == OID_SIG_ED25519 {
        if data.len() != 32 || spki.algorithm.parameters.is_some() {
            return Err(UnusableKey(format!(
                "an Ed25519 key of {} bytes: must be 32, without parameters",
                data.len()
            )));
        }
        Alg::EdDsa
    } else {
        return Err(UnusableKey(format!(
            "a key of type {oid}: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) only"
        )));
    };
    Ok(PublicKey {
        alg,
        key: ring::signature::UnparsedPublicKey::new(alg.ring(), data.to_vec()),
    })
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
    pub(super) fn from_config(j: &JwtConfig) -> Result<Jwt, SetupError> {
        let keys = if j.public_keys.is_empty() {
            let secret = j
                .resolve_secret()
                .map_err(|e| SetupError::Secret(e.under("auth")))?;
            JwtKeys::Secret(secret.into_bytes())
        } else {
            JwtKeys::Public(load_all_public_keys(&j.public_keys)?)
        };
        Ok(Jwt {
            keys: RwLock::new(keys),
            issuer: j.issuer.clone(),
            audience: j.audience.clone(),
            leeway_s: i64::try_from(j.leeway_s).unwrap_or(i64::MAX),
        })
    }

    pub(super) fn has_public_keys(&self) -> bool {
        matches!(*self.keys.read(), JwtKeys::Public(_))
    }

    /// Reads the public keys again (see [`super::Auth::reload_public_keys`]);
    /// `None` with a secret.
    pub(super) fn reload(&self, j: &JwtConfig) -> Option<Result<usize, KeyFileError>> {
        if j.public_keys.is_empty() || !self.has_public_keys() {
            return None;
        }
        let keys = match load_all_public_keys(&j.public_keys) {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        let n = keys.len();
        *self.keys.write() = JwtKeys::Public(keys);
        Some(Ok(n))
    }

    pub(super) fn verify(&self, token: &str, now: i64) -> Result<Arc<Entitlement>, AuthError> {
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
        match &*self.keys.read() {
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
/// JWTs verified with public keys: RS256 (the fixture key), ES256 and
/// EdDSA (keys made here), against `alg` confusion and forgery.
mod tests {
    use super::*;
    use crate::auth::tests::{auth as hs256_auth, b64};
    use crate::auth::{Auth, AuthConfig};
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
            sign: Box::new(move |m| kp.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec()),
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
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(fixture(private)).unwrap();
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
        let hs = hs256_auth();
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
        assert!(matches!(auth.reload_public_keys(&cfg), Some(Ok(1))));
        assert!(ok(&b) && !ok(&a));
        // A bad file: the error names it, the keys in use stay.
        std::fs::write(&path, "truncated\n").unwrap();
        let e = auth.reload_public_keys(&cfg).unwrap().unwrap_err();
        assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
        assert!(ok(&b) && !ok(&a));
        // Nothing to reload with a secret.
        assert!(hs256_auth()
            .reload_public_keys(&AuthConfig::default())
            .is_none());
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
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(path.to_str().unwrap()) && e.contains(says),
                "{}: {e}",
                path.display()
            );
        }
    }
}
