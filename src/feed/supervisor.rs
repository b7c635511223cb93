//! The supervisor around every venue adapter: connect, subscribe, read,
//! and when anything goes wrong, reconnect with exponential backoff and full
//! jitter, then subscribe again.
//!
//! * Silence: no frame at all (data, heartbeat, ping) for `stale_after` is
//!   a dead connection: the feed's symbols go `stale` and it reconnects.
//! * A venue that refuses the subscription is logged as an error and retried
//!   only after the longest backoff: asking again at once would be refused
//!   again (a reconnect storm helps nobody).
//! * Garbage frames are counted and logged at a bounded rate; the
//!   connection carries on.
//! * A recorder ([`FrameSink`]) sees every raw text frame with its receive
//!   time, so live sessions become replay files and test fixtures.

use super::{Event, FeedState, Venue};
use crate::metrics::Metrics;
use crate::model::now_ns;
use crate::normalize::FeedNormalizer;
use crate::shutdown::Shutdown;
use futures_util::{SinkExt, StreamExt};
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Timings of one supervised connection.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub stale_after: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
}

impl SupervisorConfig {
    pub fn from_venue(v: &super::VenueConfig) -> Self {
        SupervisorConfig {
            stale_after: Duration::from_millis(v.stale_after_ms),
            reconnect_min: Duration::from_millis(v.reconnect_min_ms),
            reconnect_max: Duration::from_millis(v.reconnect_max_ms),
            connect_timeout: Duration::from_millis(v.connect_timeout_ms),
            max_message_bytes: v.max_message_bytes,
        }
    }

    /// Delay before reconnect attempt `attempt` (0-based): exponential from
    /// `reconnect_min`, capped at `reconnect_max`, with full jitter over the
    /// upper half so a fleet of gateways does not reconnect in lockstep.
    pub fn backoff(&self, attempt: u32, rand01: f64) -> Duration {
        let base = self
            .reconnect_min
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.reconnect_max);
        base.mul_f64(0.5 + 0.5 * rand01.clamp(0.0, 1.0))
    }
}

/// Receives every raw upstream text frame (the recorder).
pub trait FrameSink: Send {
    fn frame(&mut self, recv_ns: i64, text: &str);
}

/// Why a connection ended.
#[derive(Debug)]
enum Outcome {
    Shutdown,
    Silent,
    Rejected(String),
    Closed(String),
}

/// Small xorshift for jitter; seeded from the clock.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Upstream = tokio_tungstenite::WebSocketStream<Box<dyn crate::client_tls::Io>>;

/// One feed's reading side: the adapter, its normalizer and health, and
/// the buffers reused for every frame.
struct Reader<V> {
    venue: V,
    norm: FeedNormalizer,
    state: Arc<FeedState>,
    recorder: Option<Box<dyn FrameSink>>,
    frames: IntCounter,
    pairs_refused: IntCounter,
    buf: Vec<u8>,
    events: Vec<Event>,
    /// A quote arrived on this connection (the backoff starts over).
    got_data: bool,
}

impl<V: Venue> Reader<V> {
    /// Reads frames until the connection ends, goes silent for
    /// `stale_after`, the venue refuses the subscription, or shutdown.
    async fn read(
        &mut self,
        ws: &mut Upstream,
        stale_after: Duration,
        shutdown: &mut Shutdown,
    ) -> Outcome {
        loop {
            let next = tokio::select! {
                _ = shutdown.wait() => return Outcome::Shutdown,
                r = tokio::time::timeout(stale_after, ws.next()) => r,
            };
            let msg = match next {
                Err(_) => return Outcome::Silent,
                Ok(None) => return Outcome::Closed("upstream closed the connection".into()),
                Ok(Some(Err(e))) => return Outcome::Closed(e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            if let Some(end) = self.message(msg) {
                return end;
            }
        }
    }

    /// One upstream message; `Some` ends the connection.
    fn message(&mut self, msg: Message) -> Option<Outcome> {
        match msg {
            Message::Text(t) => return self.text(&t),
            Message::Binary(_) => {
                self.frames.inc();
                let e = super::ParseError::Unexpected("binary frame from a JSON venue".into());
                self.norm.upstream_error(e.reason(), &e);
            }
            // tungstenite answers pings by itself; both show life.
            Message::Ping(_) | Message::Pong(_) => self.state.alive(),
            Message::Close(f) => {
                return Some(Outcome::Closed(format!(
                    "upstream sent close {}",
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default()
                )))
            }
            Message::Frame(_) => {}
        }
        None
    }

    /// A text frame: recorded, parsed, its quotes normalized; `Some` when
    /// the venue refused the subscription.
    fn text(&mut self, t: &str) -> Option<Outcome> {
        self.frames.inc();
        if let Some(r) = self.recorder.as_mut() {
            r.frame(now_ns(), t);
        }
        self.buf.clear();
        self.buf.extend_from_slice(t.as_bytes());
        self.events.clear();
        if let Err(e) = self.venue.parse(&mut self.buf, &mut self.events) {
            self.norm.upstream_error(e.reason(), &e);
            return None;
        }
        let feed = &self.state.name;
        let mut rejected = None;
        for ev in self.events.drain(..) {
            match ev {
                Event::Quote(u) => {
                    // Rejects are counted and logged inside.
                    let _ = self.norm.apply(u);
                    self.got_data = true;
                    self.state.alive();
                }
                Event::Trade(u, info) => {
                    let _ = self.norm.apply_with(u, Some(info));
                    self.got_data = true;
                    self.state.alive();
                }
                Event::Heartbeat | Event::Ignored => self.state.alive(),
                Event::Subscribed => {
                    tracing::info!(feed = %feed, "subscription acknowledged");
                    self.state.alive();
                }
                Event::Rejected(why) => rejected = Some(why),
                Event::PairRefused(why) => {
                    tracing::error!(
                        feed = %feed,
                        "{} refused a pair: {why}; check the feed's symbols. Its other pairs carry on",
                        self.venue.kind()
                    );
                    self.pairs_refused.inc();
                    self.state.alive();
                }
            }
        }
        rejected.map(Outcome::Rejected)
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connect failed: {0}")]
    Failed(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("TLS: {0}")]
    Ca(Arc<crate::client_tls::CaError>),
    #[error("connect timed out after {0:?}")]
    TimedOut(Duration),
}

/// The TLS connector for `wss://` venues, built once (the system's CA
/// bundle, or `$SSL_CERT_FILE`); the error, if any, is kept and reported
/// at every attempt.
fn venue_tls() -> Result<tokio_rustls::TlsConnector, ConnectError> {
    type Built = Result<tokio_rustls::TlsConnector, Arc<crate::client_tls::CaError>>;
    static TLS: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
    TLS.get_or_init(|| crate::client_tls::tls_connector(None).map_err(Arc::new))
        .clone()
        .map_err(ConnectError::Ca)
}

/// TCP (no Nagle), TLS for `wss://`, then the WebSocket handshake.
async fn open(url: &str, ws_cfg: WebSocketConfig) -> Result<Upstream, ConnectError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = url.into_client_request()?;
    let uri = req.uri();
    let tls = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn crate::client_tls::Io> = if tls {
        // IPv6 literals come bracketed in the URI.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(bare)
            .map_err(|e| ConnectError::Tls(format!("{host}: not a TLS server name: {e}")))?;
        let tls = venue_tls()?
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls(format!("with {host}: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_cfg)).await?;
    Ok(ws)
}

/// Connects to `url` within `connect_timeout`. `Ok(None)` is shutdown.
async fn connect(
    url: &str,
    cfg: &SupervisorConfig,
    ws_cfg: WebSocketConfig,
    shutdown: &mut Shutdown,
) -> Result<Option<Upstream>, ConnectError> {
    let conn = tokio::select! {
        _ = shutdown.wait() => return Ok(None),
        r = tokio::time::timeout(cfg.connect_timeout, open(url, ws_cfg)) => r,
    };
    match conn {
        Ok(Ok(ws)) => Ok(Some(ws)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::TimedOut(cfg.connect_timeout)),
    }
}

/// Sends the venue's subscription; `false` when it could not be sent.
async fn subscribe<V: Venue>(venue: &mut V, ws: &mut Upstream, feed: &str) -> bool {
    for m in venue.on_connect() {
        if let Err(e) = ws.send(Message::Text(m.into())).await {
            tracing::warn!(feed = %feed, "subscribe failed: {e}");
            return false;
        }
    }
    true
}

/// Runs `venue` until shutdown.
pub async fn run<V: Venue>(
    venue: V,
    cfg: SupervisorConfig,
    norm: FeedNormalizer,
    state: Arc<FeedState>,
    metrics: Arc<Metrics>,
    recorder: Option<Box<dyn FrameSink>>,
    mut shutdown: Shutdown,
) {
    let feed = state.name.clone();
    let connects = metrics.feed_connects.with_label_values(&[&feed]);
    let mut r = Reader {
        venue,
        norm,
        frames: metrics.feed_frames.with_label_values(&[&feed]),
        pairs_refused: metrics.feed_symbols_refused.with_label_values(&[&feed]),
        state,
        recorder,
        buf: Vec::new(),
        events: Vec::new(),
        got_data: false,
    };
    let mut jitter = Jitter(now_ns() as u64 | 1);
    let mut attempt: u32 = 0;
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let url = r.venue.url();
        let mut ws = match connect(&url, &cfg, ws_cfg, &mut shutdown).await {
            Ok(Some(ws)) => ws,
            Ok(None) => return,
            Err(why) => {
                tracing::warn!(feed = %feed, %url, "{why}");
                attempt = attempt.saturating_add(1);
                if sleep_or_shutdown(cfg.backoff(attempt - 1, jitter.next()), &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        connects.inc();
        tracing::info!(feed = %feed, %url, "connected");
        // A venue may number a new session afresh.
        r.norm.reset_order();
        r.got_data = false;
        let outcome = if subscribe(&mut r.venue, &mut ws, &feed).await {
            r.read(&mut ws, cfg.stale_after, &mut shutdown).await
        } else {
            Outcome::Closed("subscribe could not be sent".into())
        };
        // Its symbols go stale at once rather than after a silence.
        r.state.down();
        if r.got_data {
            attempt = 0;
        }
        let delay = match outcome {
            Outcome::Shutdown => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            Outcome::Rejected(why) => {
                tracing::error!(
                    feed = %feed,
                    "{} refused the subscription: {why}; check the feed's symbols. Retrying in {:?}",
                    r.venue.kind(),
                    cfg.reconnect_max
                );
                attempt = attempt.saturating_add(1);
                cfg.reconnect_max
            }
            Outcome::Silent => {
                tracing::warn!(feed = %feed, "no data or heartbeat for {:?}: reconnecting", cfg.stale_after);
                attempt = attempt.saturating_add(1);
                cfg.backoff(attempt - 1, jitter.next())
            }
            Outcome::Closed(why) => {
                tracing::warn!(feed = %feed, "disconnected: {why}");
                attempt = attempt.saturating_add(1);
                cfg.backoff(attempt - 1, jitter.next())
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        if sleep_or_shutdown(delay, &mut shutdown).await {
            return;
        }
    }
}

/// Sleeps `d`; returns true if shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.wait() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let c = SupervisorConfig {
            stale_after: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(1000),
            connect_timeout: Duration::from_secs(1),
            max_message_bytes: 1 << 20,
        };
        assert_eq!(c.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(c.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(c.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(c.backoff(4, 1.0), Duration::from_millis(1000));
        assert_eq!(c.backoff(60, 1.0), Duration::from_millis(1000));
        let mut j = Jitter(7);
        for _ in 0..1000 {
            let x = j.next();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
