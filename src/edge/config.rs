//! `[server]`: the public listener and what it admits.

use super::tls::TlsConfig;
use crate::invalid::{at_least_one, Invalid};
use serde::Deserialize;
use std::net::SocketAddr;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener (WebSocket, REST, metrics). Default `127.0.0.1:8080`;
    /// port 0 picks a free port (the bound address is logged).
    pub listen: SocketAddr,
    /// Fan-out shards. Default 0 = one per available core. Max 64.
    pub shards: usize,
    /// Tokio worker threads. Default 0 = one per available core.
    pub worker_threads: usize,
    /// Maximum concurrent WebSocket sessions; past it a new client is
    /// upgraded and closed at once with 1013 (browsers cannot read an HTTP
    /// 503). Default 20000.
    pub max_connections: usize,
    /// Time to read a request head before the HTTP connection is dropped,
    /// in milliseconds. Default 10000.
    pub header_timeout_ms: u64,
    /// How often an `info` summary is logged (sessions open, opened and
    /// closed since the last, closes by code, feeds' states), in seconds;
    /// 0 turns it off. Default 60.
    pub log_summary_secs: u64,
    /// On SIGINT/SIGTERM, how long sessions get to deliver their 1001 close
    /// before the process exits anyway, in milliseconds. Default 3000.
    pub shutdown_grace_ms: u64,
    /// New TCP connections per second from one client address (IPv6: per
    /// /64), sustained. Past it the connection gets a best-effort 429 and is
    /// closed at accept. Default 20.
    pub conn_rate_per_ip: u32,
    /// New connections one address may open at once above the sustained
    /// rate. Default 40.
    pub conn_burst_per_ip: u32,
    /// WebSocket sessions one address (IPv6: one /64) may hold at once;
    /// past it a new one is upgraded and closed at once with 1013, as when
    /// the server is full. Default 0: no cap (clients behind one NAT share
    /// an address; set it for a public listener).
    pub max_connections_per_ip: u32,
    /// How often the per-address limiter forgets addresses whose bucket has
    /// refilled, in milliseconds. Default 5000.
    pub conn_limiter_prune_ms: u64,
    /// Browser origins allowed to open a WebSocket, e.g.
    /// `["https://app.example.com"]` (compared case-insensitively). An upgrade
    /// whose `Origin` is not listed gets 403; requests without `Origin`
    /// (non-browser clients) are always allowed. Default: empty, any origin.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (CIDR, e.g. `127.0.0.1/32`, `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client: for their connections the
    /// client's address is the right-most entry that is not a trusted
    /// proxy, and the per-address limits, logs and metrics use it. Nobody
    /// else's header is believed. Default: empty.
    pub trusted_proxies: Vec<String>,
    /// `[server.tls]`: serve `wss://` and `https://` instead of plain TCP.
    /// Default: absent, plain `ws://` and `http://`.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shards: 0,
            worker_threads: 0,
            max_connections: 20_000,
            header_timeout_ms: 10_000,
            log_summary_secs: 60,
            shutdown_grace_ms: 3_000,
            conn_rate_per_ip: 20,
            conn_burst_per_ip: 40,
            max_connections_per_ip: 0,
            conn_limiter_prune_ms: 5_000,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// `trusted_proxies`, parsed (entries that do not parse were refused
    /// by [`ServerConfig::validate`]).
    pub(crate) fn trusted(&self) -> Vec<super::proxy::Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| super::proxy::Cidr::parse(p))
            .collect()
    }

    /// Checks the fields; names them relative to `[server]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.shards > crate::slots::MAX_SHARDS {
            return Err(Invalid::new("shards", "at most 64"));
        }
        at_least_one("max_connections", self.max_connections as u64)?;
        at_least_one("header_timeout_ms", self.header_timeout_ms)?;
        at_least_one("conn_rate_per_ip", u64::from(self.conn_rate_per_ip))?;
        at_least_one("conn_limiter_prune_ms", self.conn_limiter_prune_ms)?;
        if self.conn_burst_per_ip < self.conn_rate_per_ip {
            return Err(Invalid::new(
                "conn_burst_per_ip",
                "must be at least conn_rate_per_ip",
            ));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if o.is_empty() || o.ends_with('/') || !o.is_ascii() {
                return Err(Invalid::new(
                    format!("allowed_origins[{i}]"),
                    "an origin is scheme://host[:port] without a trailing slash",
                ));
            }
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            if super::proxy::Cidr::parse(p).is_none() {
                return Err(Invalid::new(
                    format!("trusted_proxies[{i}]"),
                    "a network is an address with an optional /prefix, e.g. 10.0.0.0/8 or ::1",
                ));
            }
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}
