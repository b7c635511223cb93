//! TLS on the public listener (`[server.tls]`), for `wss://` and `https://`.
//!
//! rustls with the ring provider, chosen explicitly rather than through a
//! process-wide default (which panics when none or several are installed)
//! and because aws-lc costs minutes of build on a small machine. The
//! certificate chain and key are read once at start; a bad file is a start
//! error that names it. [`crate::http`] runs the handshake per connection,
//! bounded by `server.header_timeout_ms`, then serves HTTP over the TLS
//! stream exactly as over plain TCP.

use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// The rustls server settings for `cfg`: ring provider, TLS 1.2 and 1.3,
/// no client certificates, ALPN `http/1.1`.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let pair_err = |e: rustls::Error| TlsError::Pair {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        message: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair_err)?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// The acceptor [`crate::http`] wraps each accepted TCP stream with.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    server_config(cfg).map(TlsAcceptor::from)
}
