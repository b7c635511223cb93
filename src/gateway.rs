//! Wires the parts together: symbols from the feeds, slots, fan-out shards,
//! feeds, the watchdog and the listener; and takes them down again.

use crate::auth::Auth;
use crate::config::{Config, FeedConfig};
use crate::fanout::Fanout;
use crate::feed::{sim, FeedState, Feeds};
use crate::metrics::Metrics;
use crate::model::{Quote, Status, Symbols};
use crate::normalize::{Normalizer, Reject};
use crate::shutdown::{self, Trigger};
use crate::slots::SlotTable;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What every session and endpoint shares.
pub struct Shared {
    pub config: Config,
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub fanout: Arc<Fanout>,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    pub feeds: Arc<Feeds>,
    pub shutdown: Trigger,
    pub conn_limit: Arc<Semaphore>,
    pub ws_config: WebSocketConfig,
    next_id: AtomicU64,
}

impl Shared {
    pub fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("feed {feed}: {message}")]
    Feed { feed: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    #[error("unknown feed {0:?}")]
    UnknownFeed(String),
    #[error("rejected: {}", .0.as_str())]
    Rejected(Reject),
}

/// A running gateway.
pub struct Gateway {
    pub shared: Arc<Shared>,
    pub local_addr: SocketAddr,
    normalizers: Vec<(String, Normalizer)>,
}

/// The tungstenite settings: set deliberately, since the defaults allocate a
/// 128 KiB read buffer per connection and accept 64 MiB messages.
fn ws_config(cfg: &Config) -> WebSocketConfig {
    let s = &cfg.session;
    // Up to 4x the op limit is read and answered with `payload_too_large`;
    // beyond that the frame is refused outright with 1009.
    let hard = s.max_message_bytes.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(s.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(s.max_frame_bytes.saturating_mul(4).max(64 * 1024))
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
}

impl Gateway {
    /// Starts everything on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let metrics = Arc::new(Metrics::new());
        let mut symbols = Symbols::new();
        let mut feed_syms = Vec::new();
        for f in &config.feeds {
            match f {
                FeedConfig::Sim(s) => {
                    let mut ids = Vec::with_capacity(s.symbols);
                    for n in sim::symbol_names(s.symbols) {
                        let id = symbols.intern(&n).map_err(|message| StartError::Feed {
                            feed: s.name.clone(),
                            message,
                        })?;
                        ids.push(id);
                    }
                    feed_syms.push(ids);
                }
            }
        }
        let symbols = Arc::new(symbols);
        let nshards = match config.server.shards {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let slots = Arc::new(SlotTable::new(symbols.len(), nshards));
        let fanout = Arc::new(Fanout::new(slots.clone(), symbols.clone(), metrics.clone()));
        let (trigger, _) = shutdown::channel();
        let mut feeds = Feeds::default();
        let mut starts = Vec::new();
        let mut normalizers = Vec::new();
        for (f, ids) in config.feeds.iter().zip(feed_syms) {
            match f {
                FeedConfig::Sim(s) => {
                    let state = Arc::new(FeedState::new(
                        &s.name,
                        ids.clone(),
                        Duration::from_millis(s.stale_after_ms),
                    ));
                    metrics.feed_up.with_label_values(&[&s.name]).set(0);
                    let norm = Normalizer::new(&s.name, slots.clone(), &metrics);
                    normalizers.push((s.name.clone(), norm.clone()));
                    feeds.feeds.push(state.clone());
                    let sim = sim::Sim::new(s, ids);
                    starts.push((s.clone(), sim, norm, state));
                }
            }
        }
        let listener =
            TcpListener::bind(config.server.listen)
                .await
                .map_err(|e| StartError::Bind {
                    addr: config.server.listen,
                    source: e,
                })?;
        let local_addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: config.server.listen,
            source: e,
        })?;
        metrics
            .connections_max
            .set(config.server.max_connections as i64);
        let shared = Arc::new(Shared {
            auth: Auth::new(&config.auth.token_sha256),
            conn_limit: Arc::new(Semaphore::new(
                config.server.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            ws_config: ws_config(&config),
            config,
            symbols,
            slots: slots.clone(),
            fanout: fanout.clone(),
            metrics: metrics.clone(),
            feeds: Arc::new(feeds),
            shutdown: trigger.clone(),
            next_id: AtomicU64::new(1),
        });
        for i in 0..nshards {
            tokio::spawn(fanout.clone().run_shard(i, trigger.subscribe()));
        }
        for (cfg, s, norm, state) in starts {
            tokio::spawn(sim::run(cfg, s, norm, state, trigger.subscribe()));
        }
        tokio::spawn(
            shared
                .feeds
                .clone()
                .watchdog(slots, metrics, trigger.subscribe()),
        );
        tokio::spawn(crate::http::serve(listener, shared.clone()));
        Ok(Gateway {
            shared,
            local_addr,
            normalizers,
        })
    }

    /// Writes a quote through a feed's normalizer, as if that feed had sent
    /// it. For embedding and tests; feeds use their own normalizer.
    pub fn publish(&self, feed: &str, symbol: &str, q: Quote) -> Result<u64, PublishError> {
        let sym = self
            .shared
            .symbols
            .get(symbol)
            .ok_or_else(|| PublishError::UnknownSymbol(symbol.to_string()))?;
        let norm = self
            .normalizers
            .iter()
            .find(|(n, _)| n == feed)
            .map(|(_, n)| n)
            .ok_or_else(|| PublishError::UnknownFeed(feed.to_string()))?;
        norm.apply(sym, q).map_err(PublishError::Rejected)
    }

    /// A feed's health state (pause it to simulate a silent upstream).
    pub fn feed(&self, name: &str) -> Option<Arc<FeedState>> {
        self.shared.feeds.get(name).cloned()
    }

    pub fn status(&self, symbol: &str) -> Option<Status> {
        let sym = self.shared.symbols.get(symbol)?;
        Some(self.shared.slots.status(sym))
    }

    /// Starts shutdown: listeners stop, every session closes with 1001.
    pub fn shutdown(&self) {
        self.shared.shutdown.trigger();
    }

    /// Waits (at most `grace`) until every session has closed. Returns
    /// whether they all did.
    pub async fn drained(&self, grace: Duration) -> bool {
        let total = self
            .shared
            .config
            .server
            .max_connections
            .min(Semaphore::MAX_PERMITS);
        let all = u32::try_from(total).unwrap_or(u32::MAX);
        let sem = self.shared.conn_limit.clone();
        let gauge = self.shared.metrics.connections.clone();
        tokio::time::timeout(grace, async move {
            // Permits come back as sessions end; rejected sessions hold none,
            // so also wait for the connection gauge to reach zero.
            let _all = sem.acquire_many(all).await;
            while gauge.get() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok()
    }
}
