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
