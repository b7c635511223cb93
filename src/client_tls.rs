//! TLS for the gateway's outgoing WebSocket connections (venue feeds,
//! `tickergate watch`): rustls with ring, as the listener uses, trusting
//! the CA certificates of a given PEM file, else of `$SSL_CERT_FILE`, else
//! of the system's bundle (`/etc/ssl/certs/ca-certificates.crt` and the
//! other usual places). No root store is compiled in.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where the system keeps its CA bundle (Debian/Ubuntu, Fedora/RHEL,
/// openSUSE, Alpine/macOS).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A certificate file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no usable CERTIFICATE in the PEM file")]
    Empty(PathBuf),
    #[error("no CA certificates for wss:// (looked in $SSL_CERT_FILE and {}): set SSL_CERT_FILE (or pass --ca FILE to watch)", SYSTEM_BUNDLES.join(", "))]
    NoSystemBundle,
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A TLS connector trusting the CA certificates of `ca`, else the
/// defaults above.
pub fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, CaError> {
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .ok_or(CaError::NoSystemBundle)?,
    };
    let pem = std::fs::read(&path).map_err(|e| CaError::Read(path.clone(), e))?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CaError::Empty(path));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
