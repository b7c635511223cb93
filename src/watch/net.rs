//! One connection to the gateway: TCP, TLS for `wss://` (rustls with ring,
//! as the gateway's own listener), then the WebSocket handshake.
//!
//! The certificates trusted for `wss://` are those of `--ca FILE` (PEM),
//! else of `$SSL_CERT_FILE`, else the system's bundle
//! (`/etc/ssl/certs/ca-certificates.crt` and the other usual places): no
//! root store is compiled in, and none is read for `ws://`.

use super::endpoint::Endpoint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

/// A byte stream: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Where the system keeps its CA bundle (Debian/Ubuntu, Fedora/RHEL,
/// openSUSE, Alpine/macOS).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Opens connections to one endpoint.
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A certificate file that cannot be used (a usage error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no usable CERTIFICATE in the PEM file")]
    Empty(PathBuf),
    #[error("no CA certificates for wss:// (looked in $SSL_CERT_FILE and {}): pass --ca FILE", SYSTEM_BUNDLES.join(", "))]
    NoSystemBundle,
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl Connector {
    pub fn new(endpoint: Endpoint, ca: Option<&Path>) -> Result<Connector, CaError> {
        let tls = if endpoint.tls {
            Some(tls_connector(ca)?)
        } else {
            None
        };
        Ok(Connector { endpoint, tls })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connects and upgrades, within `timeout`; the error is one line.
    pub async fn connect(&self, timeout: Duration) -> Result<Ws, String> {
        match tokio::time::timeout(timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no WebSocket within {} s", timeout.as_secs_f64())),
        }
    }

    async fn open(&self) -> Result<Ws, String> {
        let e = &self.endpoint;
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| format!("cannot connect to {}:{}: {err}", e.host, e.port))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(e.host.clone())
                    .map_err(|err| format!("{}: not a TLS server name: {err}", e.host))?;
                Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|err| format!("TLS with {}: {err}", e.host))?,
                )
            }
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(e.url.as_str(), stream, None)
            .await
            .map_err(|err| format!("WebSocket upgrade refused: {err}"))?;
        Ok(ws)
    }
}

fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, CaError> {
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
