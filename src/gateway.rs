//! Wires the parts together: symbols from the feeds, slots, fan-out shards,
//! feeds, the watchdog and the listener; and takes them down again.

use crate::auth::Auth;
use crate::config::{Config, FeedConfig, VenueConfig};
use crate::fanout::Fanout;
use crate::feed::supervisor::{self, SupervisorConfig};
use crate::feed::{sim, FeedState, Feeds, SymbolMap, Venue};
use crate::metrics::Metrics;
use crate::model::{Quote, Status, SymbolId, Symbols};
use crate::normalize::{FeedNormalizer, Normalizer, Reject};
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
    /// The `http` feeds behind `POST /v1/ingest`.
    pub ingest: crate::feed::ingest::Ingest,
    pub shutdown: Trigger,
    pub conn_limit: Arc<Semaphore>,
    /// New connections per client address (`server.conn_rate_per_ip`),
    /// pruned by [`crate::limits::prune_task`].
    pub conn_limiter: crate::limits::ConnLimiter,
    /// Sessions per client address (`server.max_connections_per_ip`).
    pub ip_sessions: Arc<crate::limits::IpSessions>,
    pub ws_config: WebSocketConfig,
    /// `[server.tls]`: every accepted connection is TLS first.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The certificate the acceptor presents, reloadable.
    pub tls_certs: Option<Arc<crate::tls::CertStore>>,
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
    #[error("auth: {0}")]
    Auth(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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

enum FeedPlan {
    /// The feed writes these gateway symbols directly.
    Sim(Vec<SymbolId>),
    /// The feed maps venue symbols to gateway symbols.
    Mapped(SymbolMap),
}

/// Starts a venue adapter under its supervisor.
fn venue_start<V: Venue>(
    venue: V,
    cfg: &VenueConfig,
    norm: Normalizer,
    state: Arc<FeedState>,
    metrics: &Arc<Metrics>,
) -> Box<dyn FnOnce(crate::shutdown::Shutdown) + Send> {
    let sup = SupervisorConfig::from_venue(cfg);
    let fnorm = FeedNormalizer::new(norm, cfg.normalize.clone());
    let metrics = metrics.clone();
    Box::new(move |sd| {
        tokio::spawn(supervisor::run(venue, sup, fnorm, state, metrics, None, sd));
    })
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

/// The gateway before it listens: everything built from the configuration,
/// with every file it names read and checked, nothing spawned.
struct Parts {
    metrics: Arc<Metrics>,
    symbols: Arc<Symbols>,
    slots: Arc<SlotTable>,
    fanout: Arc<Fanout>,
    nshards: usize,
    trigger: shutdown::Trigger,
    feeds: Feeds,
    starts: Vec<Box<dyn FnOnce(crate::shutdown::Shutdown) + Send>>,
    normalizers: Vec<(String, Normalizer)>,
    ingest_feeds: Vec<crate::feed::ingest::IngestFeed>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_certs: Option<Arc<crate::tls::CertStore>>,
    auth: Auth,
}

impl Gateway {
    /// What [`Gateway::start`] does before it listens, for
    /// `--check-config`: builds every feed and reads every file the
    /// configuration names (replay recordings, the TLS certificate and key,
    /// JWT public keys, a secret's environment variable), and says the first
    /// thing that would stop a start. Binds nothing and spawns nothing, so
    /// it can run beside the gateway it checks for.
    pub fn check(config: &Config) -> Result<(), StartError> {
        Self::parts(config).map(drop)
    }

    fn parts(config: &Config) -> Result<Parts, StartError> {
        let metrics = Arc::new(Metrics::new());
        let mut symbols = Symbols::new();
        // First pass: every feed's symbols join the universe.
        let mut plans = Vec::with_capacity(config.feeds.len());
        for f in &config.feeds {
            let feed_err = |message: String| StartError::Feed {
                feed: f.name().to_string(),
                message,
            };
            let plan = match f {
                FeedConfig::Sim(s) => {
                    let mut ids = Vec::with_capacity(s.symbols);
                    for n in sim::symbol_names(s.symbols) {
                        ids.push(symbols.intern(&n).map_err(feed_err)?);
                    }
                    FeedPlan::Sim(ids)
                }
                FeedConfig::Binance(v) | FeedConfig::Coinbase(v) | FeedConfig::Kraken(v) => {
                    FeedPlan::Mapped(SymbolMap::build(&v.symbols, &mut symbols).map_err(feed_err)?)
                }
                FeedConfig::Replay(r) => {
                    FeedPlan::Mapped(SymbolMap::build(&r.symbols, &mut symbols).map_err(feed_err)?)
                }
                FeedConfig::Http(h) => {
                    let mut ids = Vec::with_capacity(h.symbols.len());
                    for n in &h.symbols {
                        ids.push(symbols.intern(n).map_err(feed_err)?);
                    }
                    FeedPlan::Sim(ids)
                }
            };
            plans.push(plan);
        }
        let symbols = Arc::new(symbols);
        let nshards = match config.server.shards {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let slots = Arc::new(SlotTable::new(symbols.len(), nshards));
        let mut fanout = Fanout::new(slots.clone(), symbols.clone(), metrics.clone());
        fanout.max_frame_bytes = config.session.max_frame_bytes;
        let fanout = Arc::new(fanout);
        let (trigger, _) = shutdown::channel();
        let mut feeds = Feeds::default();
        let mut starts: Vec<Box<dyn FnOnce(crate::shutdown::Shutdown) + Send>> = Vec::new();
        let mut normalizers = Vec::new();
        let mut ingest_feeds = Vec::new();
        for (f, plan) in config.feeds.iter().zip(plans) {
            let name = f.name().to_string();
            let ids = match &plan {
                FeedPlan::Sim(ids) => ids.clone(),
                FeedPlan::Mapped(m) => m.ids(),
            };
            let stale_after = match f {
                FeedConfig::Sim(s) => Some(s.stale_after_ms),
                FeedConfig::Binance(v) | FeedConfig::Coinbase(v) | FeedConfig::Kraken(v) => {
                    Some(v.stale_after_ms)
                }
                FeedConfig::Replay(r) => Some(r.stale_after_ms),
                FeedConfig::Http(h) => (h.stale_after_ms > 0).then_some(h.stale_after_ms),
            };
            let state = Arc::new(FeedState::new(
                &name,
                ids.clone(),
                stale_after.map(Duration::from_millis),
            ));
            let up_gauge = metrics.feed_up.with_label_values(&[&name]);
            up_gauge.set(0);
            state.attach(slots.clone(), up_gauge);
            let norm = Normalizer::new(&name, slots.clone(), &metrics);
            normalizers.push((name.clone(), norm.clone()));
            feeds.feeds.push(state.clone());
            match (f, plan) {
                (FeedConfig::Sim(s), _) => {
                    let sim = sim::Sim::new(s, ids);
                    let s = s.clone();
                    starts.push(Box::new(move |sd| {
                        tokio::spawn(sim::run(s, sim, norm, state, sd));
                    }));
                }
                (FeedConfig::Binance(v), FeedPlan::Mapped(map)) => {
                    let venue = crate::feed::binance::Binance::new(v, map);
                    starts.push(venue_start(venue, v, norm, state, &metrics));
                }
                (FeedConfig::Coinbase(v), FeedPlan::Mapped(map)) => {
                    let venue = crate::feed::coinbase::Coinbase::new(v, map);
                    starts.push(venue_start(venue, v, norm, state, &metrics));
                }
                (FeedConfig::Kraken(v), FeedPlan::Mapped(map)) => {
                    let venue = crate::feed::kraken::Kraken::new(v, map);
                    starts.push(venue_start(venue, v, norm, state, &metrics));
                }
                (FeedConfig::Replay(r), FeedPlan::Mapped(map)) => {
                    let replay = crate::feed::replay::Replay::open(r, map).map_err(|message| {
                        StartError::Feed {
                            feed: name.clone(),
                            message,
                        }
                    })?;
                    let metrics = metrics.clone();
                    starts.push(Box::new(move |sd| {
                        tokio::spawn(crate::feed::replay::run(replay, norm, state, metrics, sd));
                    }));
                }
                (FeedConfig::Http(h), FeedPlan::Sim(ids)) => {
                    let feed = crate::feed::ingest::IngestFeed::new(h, &ids, norm, state).map_err(
                        |message| StartError::Feed {
                            feed: name.clone(),
                            message,
                        },
                    )?;
                    ingest_feeds.push(feed);
                }
                (other, _) => {
                    return Err(StartError::Feed {
                        feed: name,
                        message: format!("feed kind {:?} is not available yet", other.kind()),
                    })
                }
            }
        }
        let (tls, tls_certs) = match &config.server.tls {
            Some(t) => {
                let (acceptor, store) = crate::tls::acceptor(t)?;
                metrics.tls_cert_not_after.set(store.not_after());
                (Some(acceptor), Some(store))
            }
            None => (None, None),
        };
        let auth = Auth::from_config(&config.auth).map_err(StartError::Auth)?;
        Ok(Parts {
            metrics,
            symbols,
            slots,
            fanout,
            nshards,
            trigger,
            feeds,
            starts,
            normalizers,
            ingest_feeds,
            tls,
            tls_certs,
            auth,
        })
    }

    /// Starts everything on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let p = Self::parts(&config)?;
        let listener = bind(config.server.listen).map_err(|e| StartError::Bind {
            addr: config.server.listen,
            source: e,
        })?;
        let local_addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: config.server.listen,
            source: e,
        })?;
        p.metrics
            .connections_max
            .set(config.server.max_connections as i64);
        let shared = Arc::new(Shared {
            auth: p.auth,
            conn_limiter: crate::limits::ConnLimiter::new(
                config.server.conn_rate_per_ip,
                config.server.conn_burst_per_ip,
            ),
            ip_sessions: Arc::new(crate::limits::IpSessions::new(
                config.server.max_connections_per_ip,
            )),
            conn_limit: Arc::new(Semaphore::new(
                config.server.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            ws_config: ws_config(&config),
            tls: p.tls,
            tls_certs: p.tls_certs,
            config,
            symbols: p.symbols,
            slots: p.slots.clone(),
            fanout: p.fanout.clone(),
            metrics: p.metrics.clone(),
            feeds: Arc::new(p.feeds),
            ingest: crate::feed::ingest::Ingest::new(p.ingest_feeds),
            shutdown: p.trigger.clone(),
            next_id: AtomicU64::new(1),
        });
        for i in 0..p.nshards {
            tokio::spawn(p.fanout.clone().run_shard(i, p.trigger.subscribe()));
        }
        for start in p.starts {
            start(p.trigger.subscribe());
        }
        tokio::spawn(
            shared
                .feeds
                .clone()
                .watchdog(p.slots, p.metrics, p.trigger.subscribe()),
        );
        tokio::spawn(crate::limits::prune_task(
            shared.clone(),
            Duration::from_millis(shared.config.server.conn_limiter_prune_ms),
        ));
        if let Some(store) = &shared.tls_certs {
            let every = store.config().check_secs;
            if every > 0 {
                tokio::spawn(watch_tls(
                    shared.clone(),
                    Duration::from_secs(every),
                    p.trigger.subscribe(),
                ));
            }
        }
        tokio::spawn(crate::http::serve(listener, shared.clone()));
        Ok(Gateway {
            shared,
            local_addr,
            normalizers: p.normalizers,
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

    /// Reads `[server.tls]`'s certificate and key again (what SIGHUP does):
    /// the next handshakes present the new pair, open sessions are not
    /// touched. `None` without TLS. On an error the served pair stays.
    pub fn reload_tls(&self) -> Option<Result<i64, crate::tls::TlsError>> {
        reload_tls(&self.shared)
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

/// Reloads the TLS certificate and key (what SIGHUP does), logs and counts
/// the result; returns the new leaf's notAfter (Unix seconds). `None`
/// without TLS. Blocks on file reads: off the async workers, call it
/// through `spawn_blocking`.
pub fn reload_tls(shared: &Shared) -> Option<Result<i64, crate::tls::TlsError>> {
    let store = shared.tls_certs.as_ref()?;
    let r = store.reload(|r| record_tls_load(shared, r));
    Some(r.map(|l| l.not_after))
}

/// Reads `[auth.jwt] public_keys` again (what SIGHUP does), logs and counts
/// the result; returns how many keys are in use. `None` without public
/// keys. Blocks on file reads.
pub fn reload_jwt_keys(shared: &Shared) -> Option<Result<usize, String>> {
    let r = shared.auth.reload_public_keys(&shared.config.auth)?;
    match &r {
        Ok(n) => tracing::info!(keys = *n, "JWT public keys reloaded"),
        Err(e) => tracing::error!("JWT public key reload failed, the keys in use stay: {e}"),
    }
    shared.metrics.jwt_key_reload(r.is_ok());
    Some(r)
}

/// Whether SIGHUP has anything to reload: the TLS certificate or JWT
/// public keys.
pub fn reloadable(shared: &Shared) -> bool {
    shared.tls_certs.is_some()
        || shared
            .config
            .auth
            .jwt
            .as_ref()
            .is_some_and(|j| !j.public_keys.is_empty())
}

/// Metrics and log of one load after start (under the store's lock, so
/// they follow the loads' order).
fn record_tls_load(shared: &Shared, r: &Result<crate::tls::Loaded, crate::tls::TlsError>) {
    let m = &shared.metrics;
    match r {
        Ok(l) => {
            m.tls_cert_not_after.set(l.not_after);
            m.tls_cert_reload_failing.set(0);
            tracing::info!(
                not_after = l.not_after,
                "TLS certificate reloaded; new handshakes present it"
            );
        }
        Err(e) => {
            m.tls_cert_reload_failing.set(1);
            tracing::error!("TLS certificate reload failed, still serving the one before: {e}");
        }
    }
    m.tls_cert_reload(r.is_ok());
}

/// Every `every`, looks at the TLS files and loads them once they changed
/// and then stayed the same for an interval (a renewal by certbot,
/// cert-manager or a deploy job needs no signal, and one caught halfway is
/// not loaded).
async fn watch_tls(shared: Arc<Shared>, every: Duration, mut shutdown: shutdown::Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let s = shared.clone();
        let check = tokio::task::spawn_blocking(move || {
            if let Some(store) = &s.tls_certs {
                store.check(|r| record_tls_load(&s, r));
            }
        });
        if let Err(e) = check.await {
            tracing::error!("TLS file check failed: {e}");
        }
    }
}

/// The public listener, with an accept backlog of 4096 (tokio's `bind`
/// uses 1024; the kernel caps it at `net.core.somaxconn`): a reconnect
/// storm after a restart, or a load test opening thousands of sockets,
/// should not see SYNs dropped and retried a second later.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}
