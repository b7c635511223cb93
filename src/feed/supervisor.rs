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

/// Runs `venue` until shutdown.
pub async fn run<V: Venue>(
    mut venue: V,
    cfg: SupervisorConfig,
    mut norm: FeedNormalizer,
    state: Arc<FeedState>,
    metrics: Arc<Metrics>,
    mut recorder: Option<Box<dyn FrameSink>>,
    mut shutdown: Shutdown,
) {
    let feed = state.name.clone();
    let connects = metrics.feed_connects.with_label_values(&[&feed]);
    let frames = metrics.feed_frames.with_label_values(&[&feed]);
    let pairs_refused = metrics.feed_symbols_refused.with_label_values(&[&feed]);
    let mut jitter = Jitter(now_ns() as u64 | 1);
    let mut attempt: u32 = 0;
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let mut buf: Vec<u8> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let url = venue.url();
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_cfg), true);
        let conn = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout(cfg.connect_timeout, connect) => r,
        };
        let mut ws = match conn {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                tracing::warn!(feed = %feed, %url, "connect failed: {e}");
                attempt = attempt.saturating_add(1);
                if sleep_or_shutdown(cfg.backoff(attempt - 1, jitter.next()), &mut shutdown).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!(feed = %feed, %url, "connect timed out after {:?}", cfg.connect_timeout);
                attempt = attempt.saturating_add(1);
                if sleep_or_shutdown(cfg.backoff(attempt - 1, jitter.next()), &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        connects.inc();
        tracing::info!(feed = %feed, %url, "connected");
        norm.reset_order();
        let mut sent = true;
        for m in venue.on_connect() {
            if let Err(e) = ws.send(Message::Text(m.into())).await {
                tracing::warn!(feed = %feed, "subscribe failed: {e}");
                sent = false;
                break;
            }
        }
        let mut got_data = false;
        let outcome = if !sent {
            Outcome::Closed("subscribe could not be sent".into())
        } else {
            loop {
                let next = tokio::select! {
                    _ = shutdown.wait() => break Outcome::Shutdown,
                    r = tokio::time::timeout(cfg.stale_after, ws.next()) => r,
                };
                let msg = match next {
                    Err(_) => break Outcome::Silent,
                    Ok(None) => break Outcome::Closed("upstream closed the connection".into()),
                    Ok(Some(Err(e))) => break Outcome::Closed(e.to_string()),
                    Ok(Some(Ok(m))) => m,
                };
                match msg {
                    Message::Text(t) => {
                        frames.inc();
                        if let Some(r) = recorder.as_mut() {
                            r.frame(now_ns(), &t);
                        }
                        buf.clear();
                        buf.extend_from_slice(t.as_bytes());
                        events.clear();
                        if let Err(e) = venue.parse(&mut buf, &mut events) {
                            norm.upstream_error(e.reason(), &e);
                            continue;
                        }
                        let mut rejected = None;
                        for ev in events.drain(..) {
                            match ev {
                                Event::Quote(u) => {
                                    // Rejects are counted and logged inside.
                                    let _ = norm.apply(u);
                                    got_data = true;
                                    state.alive();
                                }
                                Event::Heartbeat | Event::Ignored => state.alive(),
                                Event::Subscribed => {
                                    tracing::info!(feed = %feed, "subscription acknowledged");
                                    state.alive();
                                }
                                Event::Rejected(why) => rejected = Some(why),
                                Event::PairRefused(why) => {
                                    tracing::error!(
                                        feed = %feed,
                                        "{} refused a pair: {why}; check the feed's symbols. Its other pairs carry on",
                                        venue.kind()
                                    );
                                    pairs_refused.inc();
                                    state.alive();
                                }
                            }
                        }
                        if let Some(why) = rejected {
                            break Outcome::Rejected(why);
                        }
                    }
                    Message::Binary(_) => {
                        frames.inc();
                        let e =
                            super::ParseError::Unexpected("binary frame from a JSON venue".into());
                        norm.upstream_error(e.reason(), &e);
                    }
                    // tungstenite answers pings by itself; both show life.
                    Message::Ping(_) | Message::Pong(_) => state.alive(),
                    Message::Close(f) => {
                        break Outcome::Closed(format!(
                            "upstream sent close {}",
                            f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                                .unwrap_or_default()
                        ))
                    }
                    Message::Frame(_) => {}
                }
            }
        };
        // Its symbols go stale at once rather than after a silence.
        state.down();
        if got_data {
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
                    venue.kind(),
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
