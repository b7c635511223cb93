//! Wires the parts together: symbols from the feeds, slots, the encode
//! cache and fan-out shards, feeds, the watchdog, the session and edge
//! contexts and the listener; and takes them down again.

use crate::auth::{Auth, KeyFileError, SetupError};
use crate::cluster;
use crate::config::Config;
use crate::consolidated::{self, Consolidation};
use crate::edge::{self, tls, Ingest};

pub use crate::edge::tls::TlsError;
use crate::encode::EncodeCache;
use crate::fanout::Fanout;
use crate::feed::ingest::{Growth, IngestFeed};
use crate::feed::replay::{Replay, ReplayError};
use crate::feed::supervisor::{self, SupervisorConfig};
use crate::feed::{sim, FeedConfig, FeedState, Feeds, SymbolMap, VenueConfig, VenueKind};
use crate::metrics::Metrics;
use crate::model::{InvalidSymbol, Quote, Status, SymbolId, Symbols};
use crate::normalize::{FeedNormalizer, Normalizer, Reject};
use crate::session;
use crate::shutdown::{self, Shutdown, Trigger};
use crate::slots::SlotTable;
use crate::trades::TradeInfo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::node::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("feed {feed}: {source}")]
    Feed { feed: String, source: FeedError },
    #[error("auth: {0}")]
    Auth(#[from] SetupError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("invalid config: {0}")]
    Consolidated(crate::invalid::Invalid),
    #[error("invalid config: {0}")]
    ClusterFiles(crate::invalid::Invalid),
}

/// Why a feed cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Symbol(#[from] InvalidSymbol),
    #[error(transparent)]
    Replay(#[from] ReplayError),
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

/// How a feed's quotes name their symbols.
enum FeedSymbols {
    /// The feed writes these gateway symbols by name (the simulator, HTTP
    /// ingest).
    Listed(Vec<SymbolId>),
    /// The feed maps venue symbols to gateway symbols.
    Mapped(SymbolMap),
}

impl FeedSymbols {
    fn of(f: &FeedConfig, symbols: &mut Symbols) -> Result<FeedSymbols, InvalidSymbol> {
        let listed = |names: &mut dyn Iterator<Item = &str>, symbols: &mut Symbols| {
            names
                .map(|n| symbols.intern(n))
                .collect::<Result<Vec<_>, _>>()
                .map(FeedSymbols::Listed)
        };
        match f {
            FeedConfig::Sim(s) => {
                let names = sim::symbol_names(s.symbols);
                listed(&mut names.iter().map(String::as_str), symbols)
            }
            // Patterns add their symbols while running.
            FeedConfig::Http(h) => listed(&mut h.names(), symbols),
            FeedConfig::Venue(_, v) => SymbolMap::build(&v.symbols, symbols).map(Self::Mapped),
            FeedConfig::Replay(r) => SymbolMap::build(&r.symbols, symbols).map(Self::Mapped),
        }
    }

    fn ids(&self) -> Vec<SymbolId> {
        match self {
            FeedSymbols::Listed(ids) => ids.clone(),
            FeedSymbols::Mapped(m) => m.ids(),
        }
    }
}

/// A feed's task, spawned when the gateway starts.
type FeedStart = Box<dyn FnOnce(Shutdown) + Send>;

/// Starts a venue adapter under its supervisor.
fn venue_start(
    kind: VenueKind,
    cfg: &VenueConfig,
    map: SymbolMap,
    norm: Normalizer,
    state: Arc<FeedState>,
    metrics: &Arc<Metrics>,
) -> FeedStart {
    let venue = kind.adapter(cfg, map);
    let sup = SupervisorConfig::from_venue(cfg);
    let fnorm = FeedNormalizer::new(norm, cfg.normalize.clone());
    let metrics = metrics.clone();
    Box::new(move |sd| {
        tokio::spawn(supervisor::run(venue, sup, fnorm, state, metrics, None, sd));
    })
}

/// The feeds, built from the configuration: their health, the tasks to
/// start, their normalizers (for [`Gateway::publish`]) and the HTTP ingest
/// feeds.
#[derive(Default)]
struct BuiltFeeds {
    health: Feeds,
    starts: Vec<FeedStart>,
    normalizers: Vec<(String, Normalizer)>,
    ingest: Vec<(String, IngestFeed)>,
}

fn build_feeds(
    config: &Config,
    plans: Vec<FeedSymbols>,
    slots: &Arc<SlotTable>,
    metrics: &Arc<Metrics>,
    growth: &dyn Fn() -> Growth,
) -> Result<BuiltFeeds, StartError> {
    let mut out = BuiltFeeds::default();
    for (f, plan) in config.feeds.iter().zip(plans) {
        let name = f.name().to_string();
        let stale_after = match f {
            FeedConfig::Sim(s) => Some(s.stale_after_ms),
            FeedConfig::Venue(_, v) => Some(v.stale_after_ms),
            FeedConfig::Replay(r) => Some(r.stale_after_ms),
            FeedConfig::Http(h) => (h.stale_after_ms > 0).then_some(h.stale_after_ms),
        };
        let ids = plan.ids();
        let state = Arc::new(FeedState::new(
            &name,
            ids.clone(),
            stale_after.map(Duration::from_millis),
        ));
        let up_gauge = metrics.feed_up.with_label_values(&[&name]);
        up_gauge.set(0);
        state.attach(slots.clone(), up_gauge);
        let norm = Normalizer::new(&name, slots.clone(), metrics);
        out.normalizers.push((name.clone(), norm.clone()));
        out.health.add(state.clone());
        let start: FeedStart = match (f, plan) {
            (FeedConfig::Sim(s), _) => {
                let sim = sim::Sim::new(s, ids);
                let s = s.clone();
                Box::new(move |sd| {
                    tokio::spawn(sim::run(s, sim, norm, state, sd));
                })
            }
            (FeedConfig::Venue(kind, v), FeedSymbols::Mapped(map)) => {
                venue_start(*kind, v, map, norm, state, metrics)
            }
            (FeedConfig::Replay(r), FeedSymbols::Mapped(map)) => {
                let replay = Replay::open(r, map).map_err(|e| StartError::Feed {
                    feed: name.clone(),
                    source: e.into(),
                })?;
                let metrics = metrics.clone();
                Box::new(move |sd| {
                    tokio::spawn(crate::feed::replay::run(replay, norm, state, metrics, sd));
                })
            }
            (FeedConfig::Http(h), _) => {
                let feed = IngestFeed::new(h, &ids, norm, state).with_growth(h, growth());
                out.ingest.push((h.key_sha256.clone(), feed));
                continue;
            }
            // A venue or replay feed's symbols are always mapped.
            (FeedConfig::Venue(..) | FeedConfig::Replay(_), FeedSymbols::Listed(_)) => continue,
        };
        out.starts.push(start);
    }
    Ok(out)
}

/// The gateway before it listens: everything built from the configuration,
/// with every file it names read and checked, nothing spawned.
struct Parts {
    metrics: Arc<Metrics>,
    symbols: Arc<Symbols>,
    slots: Arc<SlotTable>,
    fanout: Arc<Fanout>,
    nshards: usize,
    trigger: Trigger,
    feeds: BuiltFeeds,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<tls::CertStore>)>,
    auth: Arc<Auth>,
}

impl Parts {
    fn build(config: &Config) -> Result<Parts, StartError> {
        let metrics = Arc::new(Metrics::new());
        // First pass: every feed's symbols join the universe.
        let mut symbols = Symbols::new();
        let mut plans = Vec::with_capacity(config.feeds.len());
        for f in &config.feeds {
            let plan = FeedSymbols::of(f, &mut symbols).map_err(|e| StartError::Feed {
                feed: f.name().to_string(),
                source: e.into(),
            })?;
            plans.push(plan);
        }
        // Then the consolidated symbols, before the slots are sized.
        let consolidation = consolidated::resolve(&config.consolidated, &config.feed_symbols())
            .and_then(|r| Consolidation::build(&r, &mut symbols))
            .map_err(StartError::Consolidated)?;
        symbols.set_venues(config.feeds.iter().map(|f| f.name()));
        // Room for the symbols feeds add while running: every per-symbol
        // table is sized for it now.
        symbols.reserve(
            config
                .feeds
                .iter()
                .map(|f| match f {
                    FeedConfig::Http(h) => h.room(),
                    _ => 0,
                })
                .sum::<usize>()
                // An edge learns every symbol while running.
                + match config.cluster.role {
                    cluster::Role::Edge => config.cluster.max_symbols,
                    _ => 0,
                },
        );
        let symbols = Arc::new(symbols);
        let nshards = match config.server.shards {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let slots = Arc::new(SlotTable::with_trades(
            symbols.capacity(),
            nshards,
            config.session.max_pending_trades,
        ));
        if let Some(c) = consolidation {
            slots.set_derive(Box::new(c));
        }
        let cache = Arc::new(EncodeCache::new(slots.clone(), symbols.clone()));
        let fanout = Arc::new(Fanout::new(
            cache,
            metrics.clone(),
            config.session.max_frame_bytes,
        ));
        let growth = || Growth {
            symbols: symbols.clone(),
            slots: slots.clone(),
            on_new: {
                let f = fanout.clone();
                Arc::new(move || f.symbols_added())
            },
        };
        let feeds = build_feeds(config, plans, &slots, &metrics, &growth)?;
        let tls = match &config.server.tls {
            Some(t) => {
                let (acceptor, store) = tls::acceptor(t)?;
                metrics.tls_cert_not_after.set(store.not_after());
                Some((acceptor, store))
            }
            None => None,
        };
        let auth = Arc::new(Auth::from_config(&config.auth)?);
        config
            .cluster
            .check_files()
            .map_err(|e| StartError::ClusterFiles(e.under("cluster")))?;
        let (trigger, _) = shutdown::channel();
        Ok(Parts {
            metrics,
            symbols,
            slots,
            fanout,
            nshards,
            trigger,
            feeds,
            tls,
            auth,
        })
    }
}

/// What SIGHUP reloads: the TLS certificate and key, and the JWT public
/// keys. Cheap to clone into a signal task.
#[derive(Clone)]
pub struct Reloader {
    certs: Option<Arc<tls::CertStore>>,
    auth: Arc<Auth>,
    auth_config: crate::auth::AuthConfig,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// Whether there is anything to reload.
    pub fn any(&self) -> bool {
        self.certs.is_some() || self.auth.has_public_keys()
    }

    /// Reads `[server.tls]`'s certificate and key again, logs and counts
    /// the result; the new leaf's notAfter. `None` without TLS. Blocks on
    /// file reads.
    pub fn tls(&self) -> Option<Result<i64, tls::TlsError>> {
        Some(tls::reload(self.certs.as_ref()?, &self.metrics))
    }

    /// Reads `[auth.jwt] public_keys` again, logs and counts the result;
    /// how many keys are in use. `None` without public keys. Blocks on
    /// file reads.
    pub fn jwt_keys(&self) -> Option<Result<usize, KeyFileError>> {
        let r = self.auth.reload_public_keys(&self.auth_config)?;
        match &r {
            Ok(n) => tracing::info!(keys = *n, "JWT public keys reloaded"),
            Err(e) => tracing::error!("JWT public key reload failed, the keys in use stay: {e}"),
        }
        self.metrics.jwt_key_reload(r.is_ok());
        Some(r)
    }

    /// Both (what SIGHUP does).
    pub fn all(&self) {
        self.tls();
        self.jwt_keys();
    }
}

/// A running gateway.
pub struct Gateway {
    pub local_addr: SocketAddr,
    session: Arc<session::Context>,
    edge: Arc<edge::Context>,
    feeds: Arc<Feeds>,
    normalizers: Vec<(String, Normalizer)>,
    reloader: Reloader,
}

impl Gateway {
    /// What [`Gateway::start`] does before it listens, for
    /// `--check-config`: builds every feed and reads every file the
    /// configuration names (replay recordings, the TLS certificate and key,
    /// JWT public keys, a secret's environment variable), and says the first
    /// thing that would stop a start. Binds nothing and spawns nothing, so
    /// it can run beside the gateway it checks for.
    pub fn check(config: &Config) -> Result<(), StartError> {
        Parts::build(config).map(drop)
    }

    /// Starts everything on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let p = Parts::build(&config)?;
        let addr = config.server.listen;
        let bind_err = |source| StartError::Bind { addr, source };
        let listener = edge::bind(addr).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let server = config.server;
        let summary_every = server.log_summary_secs;
        p.metrics.connections_max.set(server.max_connections as i64);
        let ws_config = edge::ws_config(&config.session);
        let feeds = Arc::new(p.feeds.health);
        // A cluster node connects first: an ingest resumes its seqs before
        // its feeds run, an edge learns its symbols before clients come.
        let cluster_parts = cluster::node::Parts {
            symbols: p.symbols.clone(),
            slots: p.slots.clone(),
            feeds: feeds.clone(),
            metrics: p.metrics.clone(),
            on_new: {
                let f = p.fanout.clone();
                Arc::new(move || f.symbols_added())
            },
        };
        let node = cluster::node::prepare(&config.cluster, &cluster_parts).await?;
        let session = session::Context::new(
            config.session,
            p.symbols,
            p.slots.clone(),
            p.fanout.clone(),
            p.metrics.clone(),
            p.auth.clone(),
            p.trigger.clone(),
        );
        if let Some(n) = &node {
            *session.epoch_cell().write() = n.epoch().to_string();
        }
        let session = Arc::new(session);
        let session_epoch = session.epoch_cell();
        let (tls, certs) = p.tls.map_or((None, None), |(a, s)| (Some(a), Some(s)));
        let edge = Arc::new(edge::Context {
            conn_limiter: edge::limits::ConnLimiter::new(
                server.conn_rate_per_ip,
                server.conn_burst_per_ip,
            ),
            ip_sessions: Arc::new(edge::limits::IpSessions::new(server.max_connections_per_ip)),
            trusted: server.trusted(),
            conn_limit: Arc::new(Semaphore::new(
                server.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            config: server,
            session: session.clone(),
            feeds: feeds.clone(),
            ingest: Ingest::new(p.feeds.ingest),
            metrics: p.metrics.clone(),
            shutdown: p.trigger.clone(),
            ws_config,
            tls,
            role: config.cluster.role,
            last_values: node.as_ref().and_then(|n| n.last_values()),
        });
        for i in 0..p.nshards {
            tokio::spawn(p.fanout.clone().run_shard(i, p.trigger.subscribe()));
        }
        for start in p.feeds.starts {
            start(p.trigger.subscribe());
        }
        if let Some(n) = node {
            n.spawn(&p.trigger, session_epoch);
        }
        tokio::spawn(
            feeds
                .clone()
                .watchdog(p.slots, p.metrics.clone(), p.trigger.subscribe()),
        );
        tokio::spawn(edge::limits::prune_task(edge.clone()));
        if summary_every > 0 {
            tokio::spawn(log_summary(
                p.metrics.clone(),
                feeds.clone(),
                Duration::from_secs(summary_every),
                p.trigger.subscribe(),
            ));
        }
        if let Some(store) = &certs {
            let every = store.config().check_secs;
            if every > 0 {
                tokio::spawn(tls::watch(
                    store.clone(),
                    p.metrics.clone(),
                    Duration::from_secs(every),
                    p.trigger.subscribe(),
                ));
            }
        }
        tokio::spawn(edge::serve(listener, edge.clone()));
        let reloader = Reloader {
            certs,
            auth: p.auth,
            auth_config: config.auth,
            metrics: p.metrics,
        };
        Ok(Gateway {
            local_addr,
            session,
            edge,
            feeds,
            normalizers: p.feeds.normalizers,
            reloader,
        })
    }

    /// Writes a quote through a feed's normalizer, as if that feed had sent
    /// it. For embedding and tests; feeds use their own normalizer.
    pub fn publish(&self, feed: &str, symbol: &str, q: Quote) -> Result<u64, PublishError> {
        self.publish_with(feed, symbol, q, None)
    }

    /// [`Gateway::publish`] of a trade: `q`'s `last`/`last_size` (and
    /// `ts`) are the trade's, `info` the rest of it.
    pub fn publish_trade(
        &self,
        feed: &str,
        symbol: &str,
        q: Quote,
        info: TradeInfo,
    ) -> Result<u64, PublishError> {
        self.publish_with(feed, symbol, q, Some(info))
    }

    fn publish_with(
        &self,
        feed: &str,
        symbol: &str,
        q: Quote,
        trade: Option<TradeInfo>,
    ) -> Result<u64, PublishError> {
        let sym = self
            .session
            .symbols
            .get(symbol)
            .ok_or_else(|| PublishError::UnknownSymbol(symbol.to_string()))?;
        let norm = self
            .normalizers
            .iter()
            .find(|(n, _)| n == feed)
            .map(|(_, n)| n)
            .ok_or_else(|| PublishError::UnknownFeed(feed.to_string()))?;
        norm.apply_with(sym, q, trade)
            .map_err(PublishError::Rejected)
    }

    /// A feed's health state (pause it to simulate a silent upstream).
    pub fn feed(&self, name: &str) -> Option<Arc<FeedState>> {
        self.feeds.get(name)
    }

    /// Every feed's health.
    pub fn feeds(&self) -> &Feeds {
        &self.feeds
    }

    pub fn status(&self, symbol: &str) -> Option<Status> {
        let sym = self.session.symbols.get(symbol)?;
        Some(self.session.slots.status(sym))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.session.metrics
    }

    pub fn symbols(&self) -> &Symbols {
        &self.session.symbols
    }

    pub fn slots(&self) -> &SlotTable {
        &self.session.slots
    }

    /// The settings of every session's WebSocket.
    pub fn ws_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        self.edge.ws_config
    }

    /// What SIGHUP reloads.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Reads `[server.tls]`'s certificate and key again (what SIGHUP does):
    /// the next handshakes present the new pair, open sessions are not
    /// touched. `None` without TLS. On an error the served pair stays.
    pub fn reload_tls(&self) -> Option<Result<i64, tls::TlsError>> {
        self.reloader.tls()
    }

    /// Starts shutdown: listeners stop, every session closes with 1001.
    pub fn shutdown(&self) {
        self.session.shutdown.trigger();
    }

    /// Waits (at most `grace`) until every session has closed. Returns
    /// whether they all did.
    pub async fn drained(&self, grace: Duration) -> bool {
        let total = self.edge.config.max_connections.min(Semaphore::MAX_PERMITS);
        let all = u32::try_from(total).unwrap_or(u32::MAX);
        let sem = self.edge.conn_limit.clone();
        let gauge = self.session.metrics.connections.clone();
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

#[cfg(test)]
impl Gateway {
    /// What a session runs with.
    pub(crate) fn session_context(&self) -> &Arc<session::Context> {
        &self.session
    }
}

/// Every `every`, one `info` line an operator can read at a glance:
/// sessions open (SSE among them), opened and closed since the last line,
/// the server's closes by code since then, and each feed's state.
async fn log_summary(
    metrics: Arc<Metrics>,
    feeds: Arc<Feeds>,
    every: Duration,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_open = metrics.connections.get();
    let mut last_opened = metrics.connections_opened.get();
    let mut last_closes = metrics.closes_by_code();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let open = metrics.connections.get();
        let opened_total = metrics.connections_opened.get();
        let opened = opened_total.saturating_sub(last_opened);
        // Whatever was open or opened and is no longer open has closed.
        let closed = (last_open + opened as i64 - open).max(0);
        let closes = metrics.closes_by_code();
        let by_code: Vec<String> = closes
            .iter()
            .zip(&last_closes)
            .filter(|((_, now), (_, before))| now > before)
            .map(|((code, now), (_, before))| format!("{code}x{}", now - before))
            .collect();
        let feed_states: Vec<String> = feeds
            .iter()
            .map(|f| format!("{} {}", f.name, if f.is_up() { "live" } else { "stale" }))
            .collect();
        tracing::info!(
            "sessions: {open} open ({} SSE), {opened} opened, {closed} closed; server closes by code: {}; feeds: {}",
            metrics.sse_sessions.get(),
            if by_code.is_empty() { "none".to_string() } else { by_code.join(" ") },
            feed_states.join(", ")
        );
        last_open = open;
        last_opened = opened_total;
        last_closes = closes;
    }
}
