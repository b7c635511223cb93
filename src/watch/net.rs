//! One connection to the gateway: TCP, TLS for `wss://` (rustls with ring,
//! as the gateway's own listener), then the WebSocket handshake.
//!
//! The certificates trusted for `wss://` are those of `--ca FILE` (PEM),
//! else of `$SSL_CERT_FILE`, else the system's bundle
//! (`/etc/ssl/certs/ca-certificates.crt` and the other usual places): no
//! root store is compiled in, and none is read for `ws://`.

use super::endpoint::Endpoint;
use rustls::pki_types::ServerName;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;

pub use crate::client_tls::{CaError, Io};

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Why a connection attempt failed (printed as one line).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Tcp {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{0}: not a TLS server name")]
    ServerName(String),
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("WebSocket upgrade refused: {0}")]
    Upgrade(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("no WebSocket within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// Opens connections to one endpoint.
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    pub fn new(endpoint: Endpoint, ca: Option<&Path>) -> Result<Connector, CaError> {
        let tls = if endpoint.tls {
            Some(crate::client_tls::tls_connector(ca)?)
        } else {
            None
        };
        Ok(Connector { endpoint, tls })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connects and upgrades, within `timeout`; the error prints as one
    /// line.
    pub async fn connect(&self, timeout: Duration) -> Result<Ws, ConnectError> {
        match tokio::time::timeout(timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::TimedOut(timeout)),
        }
    }

    async fn open(&self) -> Result<Ws, ConnectError> {
        let e = &self.endpoint;
        let host = || e.host.clone();
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|source| ConnectError::Tcp {
                host: host(),
                port: e.port,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(e.host.clone())
                    .map_err(|_| ConnectError::ServerName(host()))?;
                Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|source| ConnectError::Tls {
                            host: host(),
                            source,
                        })?,
                )
            }
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(e.url.as_str(), stream, None)
            .await
            .map_err(|err| ConnectError::Upgrade(Box::new(err)))?;
        Ok(ws)
    }
}
