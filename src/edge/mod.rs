//! The edge: everything between a client's TCP connection and its session.
//!
//! * [`listener`](self::listener): accepts connections (a per-address rate
//!   limit first, then TLS when configured) and serves HTTP/1.1 on each;
//! * `upgrade`: the WebSocket handshake at `/v1/ws`, and the places a
//!   session holds (the server's and its address's);
//! * `rest`: `/v1/quotes`, `/v1/symbols`, `/metrics`, `/healthz`,
//!   `/readyz`, `/v1/feeds`; `ingest`: `POST /v1/ingest` for `kind = "http"` feeds;
//!   `web`: the ticker board at `/` and its embedded assets; `sse`:
//!   `GET /v1/sse`, the Server-Sent Events stream;
//! * [`limits`]: per-address connection limits; [`proxy`]: the client's
//!   address behind a trusted reverse proxy (`X-Forwarded-For`); [`tls`]: certificates and
//!   their renewal; `response`: the HTTP responses all of them send.

mod config;
mod ingest;
pub(crate) mod limits;
mod listener;
pub(crate) mod proxy;
mod response;
mod rest;
mod sse;
pub(crate) mod tls;
mod upgrade;
mod web;

pub use config::ServerConfig;
pub(crate) use ingest::Ingest;
pub(crate) use listener::{bind, serve};
pub use tls::TlsConfig;
pub(crate) use upgrade::ws_config;

use crate::feed::Feeds;
use crate::metrics::Metrics;
use crate::shutdown::Trigger;
use limits::{ConnLimiter, IpSessions};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the edge uses: its own settings and limits, the feeds' health (for
/// `/readyz`) and the ingest feeds, and the context it hands each session.
pub(crate) struct Context {
    pub config: ServerConfig,
    pub session: Arc<crate::session::Context>,
    pub feeds: Arc<Feeds>,
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    pub shutdown: Trigger,
    /// `server.max_connections`: one permit per session.
    pub conn_limit: Arc<Semaphore>,
    /// New connections per client address (`server.conn_rate_per_ip`),
    /// pruned by [`limits::prune_task`].
    pub conn_limiter: ConnLimiter,
    /// Sessions per client address (`server.max_connections_per_ip`).
    pub ip_sessions: Arc<IpSessions>,
    /// `server.trusted_proxies`, parsed.
    pub trusted: Vec<proxy::Cidr>,
    pub ws_config: WebSocketConfig,
    /// `[server.tls]`: every accepted connection is TLS first.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `[cluster] role`: an ingest node serves no WebSocket or SSE
    /// clients, and a cluster node is ready only while NATS is there.
    pub role: crate::cluster::Role,
    /// An edge node's way to the cluster's last values (`/v1/quotes` of
    /// symbols it does not follow).
    pub last_values: Option<Arc<crate::cluster::last_values::LastValues>>,
}
