//! TLS on the public listener (`[server.tls]`), for `wss://` and `https://`.
//!
//! rustls with the ring provider, chosen explicitly rather than through a
//! process-wide default (which panics when none or several are installed)
//! and because aws-lc costs minutes of build on a small machine. A bad
//! certificate or key file at start is a start error that names it.
//! [`crate::http`] runs the handshake per connection, bounded by
//! `server.header_timeout_ms`, then serves HTTP over the TLS stream exactly
//! as over plain TCP.
//!
//! Renewal without a restart: the serving certificate lives in a
//! [`CertStore`] that each handshake asks, and [`CertStore::reload`] swaps
//! in the files' new contents (on SIGHUP, and when `server.tls.check_secs`
//! sees them change). A restart would drop every subscriber; a reload
//! touches none, and a renewal that does not load (half written, key not
//! matching) keeps the certificate being served.

use crate::config::TlsConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert {}: {message}", path.display())]
    Cert { path: PathBuf, message: String },
    #[error("server.tls.key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("server.tls: certificate {} with key {}: {message}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// Reads a PEM certificate chain (leaf first).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Cert {
        path: path.to_path_buf(),
        message,
    };
    let pem = read(path).map_err(err)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE found in the PEM file".into()));
    }
    Ok(certs)
}

/// Reads the first PEM private key (PKCS#8, RSA/PKCS#1 or SEC1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |message: String| TlsError::Key {
        path: path.to_path_buf(),
        message,
    };
    let pem = read(path).map_err(err)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            err("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY found in the PEM file".into())
        }
        e => err(format!("invalid PEM: {e}")),
    })
}

/// A certificate and key as loaded: what handshakes present, and when the
/// leaf certificate expires.
#[derive(Debug, Clone)]
pub struct Loaded {
    key: Arc<CertifiedKey>,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Loads and checks the pair: both files parse, the key is one the provider
/// can sign with, it belongs to the leaf certificate, and the leaf's
/// validity can be read.
fn load(cfg: &TlsConfig, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let not_after = not_after(&certs[0]).map_err(|message| TlsError::Cert {
        path: cfg.cert.clone(),
        message,
    })?;
    let key = CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Pair {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        not_after,
    })
}

/// The notAfter of a DER certificate, seconds since the Unix epoch.
fn not_after(der: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the first certificate does not parse: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// What a file looked like when last loaded: a renewal changes one of
/// these (a replaced file, or a Kubernetes secret's swapped symlink).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The certificate every handshake presents, swapped by
/// [`CertStore::reload`]. Sessions already open keep theirs: TLS needs
/// the certificate only during the handshake.
pub struct CertStore {
    cfg: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// The files' stamps at the last load attempt, good or bad: a bad
    /// renewal is reported once, not at every check, and tried again when
    /// the files change again.
    tried: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cfg.cert)
            .field("key", &self.cfg.key)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the configured pair; an error names the file at fault.
    pub fn open(cfg: &TlsConfig) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(&cfg.cert), stamp(&cfg.key));
        let loaded = load(cfg, &provider)?;
        Ok(Arc::new(CertStore {
            cfg: cfg.clone(),
            provider,
            current: RwLock::new(loaded),
            tried: Mutex::new(stamps),
        }))
    }

    /// Reads the files again and serves the new pair from the next
    /// handshake on. On an error the pair being served stays.
    pub fn reload(&self) -> Result<Loaded, TlsError> {
        let stamps = (stamp(&self.cfg.cert), stamp(&self.cfg.key));
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        let loaded = load(&self.cfg, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.clone();
        Ok(loaded)
    }

    /// Whether either file changed since the last load attempt.
    pub fn changed(&self) -> bool {
        let now = (stamp(&self.cfg.cert), stamp(&self.cfg.key));
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) != now
    }

    /// The leaf notAfter of the pair being served (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .not_after
    }

    pub fn config(&self) -> &TlsConfig {
        &self.cfg
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .key
                .clone(),
        )
    }
}

/// The rustls server settings over `store`: ring provider, TLS 1.2 and
/// 1.3, no client certificates, ALPN `http/1.1`.
pub fn server_config(store: &Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = &store.cfg;
    let mut sc = rustls::ServerConfig::builder_with_provider(store.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair {
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// The acceptor [`crate::http`] wraps each accepted TCP stream with, and
/// the store behind it.
pub fn acceptor(cfg: &TlsConfig) -> Result<(TlsAcceptor, Arc<CertStore>), TlsError> {
    let store = CertStore::open(cfg)?;
    Ok((TlsAcceptor::from(server_config(&store)?), store))
}
