//! The connection to NATS: credentials, TLS, reconnects with jitter, and
//! its events turned into metrics and a connected/disconnected signal.

use super::config::ClusterConfig;
use crate::metrics::Metrics;
use async_nats::{ConnectOptions, Event};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read {what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
}

/// A NATS client and what its events say.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    /// `true` while connected.
    pub connected: watch::Receiver<bool>,
    /// Set when NATS dropped a message for a full subscription buffer
    /// (the edge reads the values it may have missed again).
    pub overflowed: Arc<AtomicBool>,
}

/// The delay before reconnect attempt `n` (1, 2, ...): exponential from
/// 50 ms to 5 s with full jitter in its upper half, so gateways that lost
/// the same server do not come back in one herd.
pub fn reconnect_delay(attempt: usize, rand01: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(10) as u32;
    let cap = (50u64 << exp).min(5000) as f64;
    Duration::from_millis((cap * (0.5 + 0.5 * rand01.clamp(0.0, 1.0))) as u64)
}

/// A cheap random number in [0, 1) (xorshift over a shared word).
fn rand01(state: &AtomicU64) -> f64 {
    let mut x = state.load(Ordering::Relaxed) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The options for `cfg` (credentials and TLS files are read here).
pub async fn options(cfg: &ClusterConfig, node: &str) -> Result<ConnectOptions, ConnectError> {
    let read = |what: &'static str, p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|source| ConnectError::File {
            what,
            path: p.display().to_string(),
            source,
        })
    };
    let mut o = if let Some(t) = &cfg.token {
        ConnectOptions::with_token(t.clone())
    } else if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        ConnectOptions::with_user_and_password(u.clone(), p.clone())
    } else if let Some(f) = &cfg.creds_file {
        // Read here for a clear error; the library parses it.
        let text = read("creds_file", f)?;
        ConnectOptions::with_credentials(&text).map_err(|source| ConnectError::File {
            what: "creds_file",
            path: f.display().to_string(),
            source,
        })?
    } else if let Some(f) = &cfg.nkey_file {
        let seed = read("nkey_file", f)?;
        ConnectOptions::with_nkey(seed.trim().to_string())
    } else {
        ConnectOptions::new()
    };
    if let Some(t) = &cfg.tls {
        o = o.require_tls(true);
        if let Some(ca) = &t.ca_file {
            read("tls.ca_file", ca)?;
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
            read("tls.cert_file", c)?;
            read("tls.key_file", k)?;
            o = o.add_client_certificate(c.clone(), k.clone());
        }
    }
    let seed = AtomicU64::new(crate::model::now_ns() as u64 ^ u64::from(std::process::id()));
    Ok(o.name(node)
        .connection_timeout(Duration::from_secs(3))
        .ping_interval(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(3)))
        .subscription_capacity(cfg.subscription_capacity)
        .max_reconnects(None)
        .retry_on_initial_connect()
        .reconnect_delay_callback(move |n| reconnect_delay(n, rand01(&seed))))
}

/// Connects (in the background: the client retries until NATS is there)
/// and watches the connection.
pub async fn connect(
    cfg: &ClusterConfig,
    node: &str,
    metrics: &Arc<Metrics>,
) -> Result<Nats, ConnectError> {
    let (tx, rx) = watch::channel(false);
    let overflowed = Arc::new(AtomicBool::new(false));
    let ever = Arc::new(AtomicBool::new(false));
    let (m, flag) = (metrics.clone(), overflowed.clone());
    let url = cfg.nats_url.clone();
    let opts = options(cfg, node).await?.event_callback(move |ev| {
        let (m, tx, flag, ever, url) = (
            m.clone(),
            tx.clone(),
            flag.clone(),
            ever.clone(),
            url.clone(),
        );
        async move {
            let c = &m.cluster;
            match ev {
                Event::Connected => {
                    c.connected.set(1);
                    if ever.swap(true, Ordering::AcqRel) {
                        c.reconnects.inc();
                        tracing::info!(%url, "reconnected to NATS");
                    } else {
                        tracing::info!(%url, "connected to NATS");
                    }
                    let _ = tx.send(true);
                }
                Event::Disconnected => {
                    c.connected.set(0);
                    tracing::warn!(%url, "lost NATS; reconnecting");
                    let _ = tx.send(false);
                }
                Event::SlowConsumer(_) => {
                    c.overflow.inc();
                    flag.store(true, Ordering::Release);
                }
                Event::ServerError(e) => tracing::warn!(%url, "NATS server error: {e}"),
                Event::ClientError(e) => tracing::debug!(%url, "NATS client error: {e}"),
                Event::LameDuckMode => tracing::warn!(%url, "NATS server entering lame duck mode"),
                other => tracing::debug!(%url, "NATS: {other}"),
            }
        }
    });
    let client = opts.connect(cfg.nats_url.as_str()).await?;
    Ok(Nats {
        client,
        connected: rx,
        overflowed,
    })
}

impl Nats {
    /// Waits until connected, saying so in the log every few seconds.
    pub async fn wait_connected(&mut self, url: &str) {
        loop {
            let wait = self.connected.wait_for(|c| *c);
            match tokio::time::timeout(Duration::from_secs(5), wait).await {
                Ok(_) => return,
                Err(_) => tracing::warn!(%url, "waiting for NATS"),
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_to_a_cap_with_jitter() {
        let lo: Vec<u128> = (1..=12)
            .map(|n| reconnect_delay(n, 0.0).as_millis())
            .collect();
        let hi: Vec<u128> = (1..=12)
            .map(|n| reconnect_delay(n, 1.0).as_millis())
            .collect();
        assert_eq!(lo[0], 25);
        assert_eq!(hi[0], 50);
        assert!(lo.windows(2).all(|w| w[0] <= w[1]), "{lo:?}");
        assert_eq!(*hi.last().unwrap(), 5000);
        assert_eq!(*lo.last().unwrap(), 2500);
        let s = AtomicU64::new(7);
        let draws: Vec<f64> = (0..100).map(|_| rand01(&s)).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.5) && draws.iter().any(|x| *x >= 0.5));
    }
}
