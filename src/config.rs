//! Configuration: a TOML file (`--config PATH`) plus flags for the common
//! knobs. Every field has a default, so an empty file (or none) runs the
//! embedded default: one simulated feed, no external services.
//!
//! Unknown fields are errors (a typo must not silently fall back to a
//! default), and every validation error names the field it is about.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Usage(String),
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub auth: AuthConfig,
    /// Upstream feeds. Default: one simulated feed named `sim`.
    pub feeds: Vec<FeedConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            session: SessionConfig::default(),
            auth: AuthConfig::default(),
            feeds: vec![FeedConfig::Sim(SimConfig::default())],
        }
    }
}

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
    /// On SIGINT/SIGTERM, how long sessions get to deliver their 1001 close
    /// before the process exits anyway, in milliseconds. Default 3000.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shards: 0,
            worker_threads: 0,
            max_connections: 20_000,
            header_timeout_ms: 10_000,
            shutdown_grace_ms: 3_000,
        }
    }
}

/// `[session]`: per-WebSocket-client limits and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Symbols one session may hold at once (`too_many_symbols` past it). Default 500.
    pub max_symbols: usize,
    /// Symbols one `subscribe` op may name. Default 500.
    pub max_symbols_per_op: usize,
    /// Sustained inbound ops per second (`rate_limited` past it). Default 20.
    pub max_msgs_per_sec: u32,
    /// Inbound ops allowed in a burst above the sustained rate. Default 40.
    pub msgs_burst: u32,
    /// `rate_limited` errors a session may collect before it is closed with
    /// 1008. The count decays by one per second of good behaviour. Default 20.
    pub max_rate_violations: u32,
    /// Largest inbound WebSocket message or frame, in bytes; a larger one is
    /// closed with 1009. Default 16384.
    pub max_message_bytes: usize,
    /// Target size of one outbound frame, in bytes: a batch is cut there and
    /// the rest follows in the next frame. Default 65536.
    pub max_frame_bytes: usize,
    /// Initial read buffer per connection, in bytes. tungstenite's default
    /// allocates 128 KiB per connection up front. Default 512.
    pub read_buffer_bytes: usize,
    /// Kernel send buffer (SO_SNDBUF) per client socket in bytes; 0 keeps the
    /// OS default. Default 0.
    pub send_buffer_bytes: usize,
    /// A `heartbeat` is sent after this long without other traffic, in
    /// milliseconds (reported to clients in `welcome`). Default 5000.
    pub heartbeat_ms: u64,
    /// A session whose socket accepts nothing for this long is a slow
    /// consumer and is closed with 4008, in milliseconds. Default 10000.
    pub slow_consumer_ms: u64,
    /// How long a closing session may take to flush its close frame before
    /// the socket is dropped, in milliseconds. Default 2000.
    pub close_grace_ms: u64,
    /// Control replies (acks, errors, pongs) waiting for a client that does
    /// not read; past it the client is a slow consumer (4008). Default 256.
    pub max_pending_control: usize,
    /// Highest `max_hz` a subscription may ask for; higher values are
    /// clamped. Default 1000.
    pub max_hz_limit: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_symbols: 500,
            max_symbols_per_op: 500,
            max_msgs_per_sec: 20,
            msgs_burst: 40,
            max_rate_violations: 20,
            max_message_bytes: 16 * 1024,
            max_frame_bytes: 64 * 1024,
            read_buffer_bytes: 512,
            send_buffer_bytes: 0,
            heartbeat_ms: 5_000,
            slow_consumer_ms: 10_000,
            close_grace_ms: 2_000,
            max_pending_control: 256,
            max_hz_limit: 1000.0,
        }
    }
}

/// `[auth]`: off unless at least one token is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted tokens, as lowercase hex SHA-256 of the token (the token
    /// itself is never stored). Default: empty, auth off.
    pub token_sha256: Vec<String>,
}

/// `[[feeds]]`: one upstream each, selected by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedConfig {
    /// The built-in simulator.
    Sim(SimConfig),
    /// Binance spot public streams (`bookTicker` + `trade`).
    Binance(VenueConfig),
    /// Coinbase Exchange public feed (`ticker` + `heartbeat` channels).
    Coinbase(VenueConfig),
    /// Kraken WebSocket v2 (`ticker` channel).
    Kraken(VenueConfig),
    /// Replay of a recorded file of raw upstream frames.
    Replay(ReplayConfig),
    /// Quotes pushed to `POST /v1/ingest` as NDJSON.
    Http(IngestConfig),
}

impl FeedConfig {
    pub fn name(&self) -> &str {
        match self {
            FeedConfig::Sim(s) => &s.name,
            FeedConfig::Binance(v) | FeedConfig::Coinbase(v) | FeedConfig::Kraken(v) => &v.name,
            FeedConfig::Replay(r) => &r.name,
            FeedConfig::Http(h) => &h.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            FeedConfig::Sim(_) => "sim",
            FeedConfig::Binance(_) => "binance",
            FeedConfig::Coinbase(_) => "coinbase",
            FeedConfig::Kraken(_) => "kraken",
            FeedConfig::Replay(_) => "replay",
            FeedConfig::Http(_) => "http",
        }
    }

    fn name_mut(&mut self) -> &mut String {
        match self {
            FeedConfig::Sim(s) => &mut s.name,
            FeedConfig::Binance(v) | FeedConfig::Coinbase(v) | FeedConfig::Kraken(v) => &mut v.name,
            FeedConfig::Replay(r) => &mut r.name,
            FeedConfig::Http(h) => &mut h.name,
        }
    }
}

/// What to do with a crossed quote (bid > ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrossedPolicy {
    /// Drop it and count it in `feed_rejects_total{reason="crossed"}`.
    #[default]
    Reject,
    /// Publish it and count it in `feed_flagged_total{reason="crossed"}`.
    Flag,
}

/// Validation every non-simulated feed applies before a slot is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Crossed quotes: `reject` or `flag`. Default `reject`.
    pub crossed: CrossedPolicy,
    /// Most decimal places accepted in a price or size. Default 12.
    pub max_scale: u32,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            crossed: CrossedPolicy::Reject,
            max_scale: 12,
        }
    }
}

/// `kind = "binance" | "coinbase" | "kraken"`: a venue WebSocket adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenueConfig {
    /// Feed name in metrics and logs. Default: the kind.
    pub name: String,
    /// Upstream WebSocket URL. Default: the venue's public endpoint.
    pub url: String,
    /// Venue symbol -> gateway symbol, e.g. `BTCUSDT = "BTC-USDT"`
    /// (Binance), `"BTC-USD" = "BTC-USD"` (Coinbase), `"BTC/USD" = "BTC-USD"`
    /// (Kraken). Required, at least one.
    pub symbols: std::collections::BTreeMap<String, String>,
    /// Silence (no data, no heartbeat) after which the connection is
    /// considered dead, its symbols go `stale` and it reconnects, in
    /// milliseconds. Default 10000.
    pub stale_after_ms: u64,
    /// First reconnect delay, in milliseconds; doubles per failed attempt
    /// with full jitter. Default 500.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay, in milliseconds. Also the delay after the
    /// venue rejects the subscription. Default 30000.
    pub reconnect_max_ms: u64,
    /// Time to connect and complete the WebSocket handshake, in
    /// milliseconds. Default 10000.
    pub connect_timeout_ms: u64,
    /// Largest upstream message accepted, in bytes. Default 1048576.
    pub max_message_bytes: usize,
    #[serde(flatten)]
    pub normalize: NormalizeConfig,
}

impl Default for VenueConfig {
    fn default() -> Self {
        VenueConfig {
            name: String::new(),
            url: String::new(),
            symbols: Default::default(),
            stale_after_ms: 10_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            connect_timeout_ms: 10_000,
            max_message_bytes: 1 << 20,
            normalize: NormalizeConfig::default(),
        }
    }
}

/// Replay pacing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPace {
    /// The gaps between frames as recorded (scaled by `speed`).
    #[default]
    Recorded,
    /// As fast as possible.
    Fast,
}

/// `kind = "replay"`: raw upstream frames from a recorded file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Feed name. Default `replay`.
    pub name: String,
    /// Recorded file (JSONL, see feeds/README.md). Required.
    pub path: std::path::PathBuf,
    /// Which venue's parser reads the frames: `binance`, `coinbase` or
    /// `kraken`. Required.
    pub venue: String,
    /// Venue symbol -> gateway symbol, as for the venue adapters.
    pub symbols: std::collections::BTreeMap<String, String>,
    /// `recorded` (keep the recorded gaps) or `fast`. Default `recorded`.
    pub pace: ReplayPace,
    /// Speed factor for `recorded` pace: 2.0 plays twice as fast. Default 1.0.
    pub speed: f64,
    /// Start again at the end of the file. Default false.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Silence after which its symbols are `stale`, in milliseconds. Default 10000.
    pub stale_after_ms: u64,
    #[serde(flatten)]
    pub normalize: NormalizeConfig,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            name: String::new(),
            path: Default::default(),
            venue: String::new(),
            symbols: Default::default(),
            pace: ReplayPace::Recorded,
            speed: 1.0,
            looping: false,
            stale_after_ms: 10_000,
            normalize: NormalizeConfig::default(),
        }
    }
}

/// `kind = "http"`: quotes pushed to `POST /v1/ingest` (NDJSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Feed name. Default `http`.
    pub name: String,
    /// SHA-256 (hex) of the ingest key, sent as `Authorization: Bearer KEY`.
    /// Required.
    pub key_sha256: String,
    /// Gateway symbols this feed may write. Required, at least one.
    pub symbols: Vec<String>,
    /// Silence after which its symbols are `stale`, in milliseconds; 0
    /// never marks them stale (pushers may be quiet). Default 0.
    pub stale_after_ms: u64,
    /// Largest request body, in bytes. Default 1048576.
    pub max_body_bytes: usize,
    #[serde(flatten)]
    pub normalize: NormalizeConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            name: String::new(),
            key_sha256: String::new(),
            symbols: Vec::new(),
            stale_after_ms: 0,
            max_body_bytes: 1 << 20,
            normalize: NormalizeConfig::default(),
        }
    }
}

/// `kind = "sim"`: seeded random walks on realistic symbols.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Feed name, used in metrics and logs. Default `sim`.
    pub name: String,
    /// Number of symbols: the built-in list of real equities and crypto
    /// pairs, extended with synthetic tickers past its end. Default 300.
    pub symbols: usize,
    /// Total updates per second across all symbols. Default 5000.
    pub rate: f64,
    /// Zipf exponent of symbol popularity: 0 = uniform, 1 = the first
    /// symbols are much hotter than the tail. Default 1.1.
    pub zipf: f64,
    /// Fraction of updates that also carry a trade (last/last_size).
    /// Default 0.3.
    pub trade_ratio: f64,
    /// RNG seed: the same seed gives the same walk. Default 42.
    pub seed: u64,
    /// Time between generator ticks, in milliseconds. Default 1.
    pub tick_ms: u64,
    /// Silence (no update, no heartbeat) after which the feed's symbols are
    /// `stale`, in milliseconds. Default 3000.
    pub stale_after_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "sim".into(),
            symbols: 300,
            rate: 5000.0,
            zipf: 1.1,
            trade_ratio: 0.3,
            seed: 42,
            tick_ms: 1,
            stale_after_ms: 3_000,
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for f in &mut cfg.feeds {
            if f.name().is_empty() {
                *f.name_mut() = f.kind().to_string();
            }
        }
        Ok(cfg)
    }

    /// Reads a config file. A relative replay `path` is taken relative to
    /// the directory of this file, not the working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut cfg = Config::from_toml(&text, path)?;
        for f in &mut cfg.feeds {
            if let FeedConfig::Replay(r) = f {
                r.path = crate::feed::replay::resolve_path(&r.path, path);
            }
        }
        Ok(cfg)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.shards > crate::slots::MAX_SHARDS {
            return Err(invalid("server.shards", "at most 64"));
        }
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if s.header_timeout_ms == 0 {
            return Err(invalid("server.header_timeout_ms", "must be at least 1"));
        }
        let c = &self.session;
        for (name, v) in [
            ("session.max_symbols", c.max_symbols),
            ("session.max_symbols_per_op", c.max_symbols_per_op),
            ("session.max_pending_control", c.max_pending_control),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if c.max_msgs_per_sec == 0 {
            return Err(invalid("session.max_msgs_per_sec", "must be at least 1"));
        }
        if c.max_message_bytes < 256 {
            return Err(invalid("session.max_message_bytes", "must be at least 256"));
        }
        if c.max_frame_bytes < 1024 {
            return Err(invalid("session.max_frame_bytes", "must be at least 1024"));
        }
        if c.read_buffer_bytes < 64 {
            return Err(invalid("session.read_buffer_bytes", "must be at least 64"));
        }
        for (name, v) in [
            ("session.heartbeat_ms", c.heartbeat_ms),
            ("session.slow_consumer_ms", c.slow_consumer_ms),
            ("session.close_grace_ms", c.close_grace_ms),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if !(c.max_hz_limit.is_finite() && c.max_hz_limit > 0.0) {
            return Err(invalid("session.max_hz_limit", "must be a positive number"));
        }
        for (i, t) in self.auth.token_sha256.iter().enumerate() {
            if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    &format!("auth.token_sha256[{i}]"),
                    "must be 64 hex digits (the SHA-256 of the token)",
                ));
            }
        }
        if self.feeds.is_empty() {
            return Err(invalid("feeds", "at least one feed is required"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, f) in self.feeds.iter().enumerate() {
            let at = |field: &str| format!("feeds[{i}].{field}");
            if f.name().is_empty() {
                return Err(invalid(&at("name"), "must not be empty"));
            }
            if !names.insert(f.name().to_string()) {
                return Err(invalid(
                    &at("name"),
                    format!("duplicate feed name {:?}", f.name()),
                ));
            }
            match f {
                FeedConfig::Sim(sim) => {
                    if sim.symbols == 0 || sim.symbols > 100_000 {
                        return Err(invalid(&at("symbols"), "must be in 1..=100000"));
                    }
                    if !(sim.rate.is_finite() && sim.rate >= 0.0) {
                        return Err(invalid(&at("rate"), "must be a number >= 0"));
                    }
                    if !(sim.zipf.is_finite() && (0.0..=4.0).contains(&sim.zipf)) {
                        return Err(invalid(&at("zipf"), "must be in 0..=4"));
                    }
                    if !(0.0..=1.0).contains(&sim.trade_ratio) {
                        return Err(invalid(&at("trade_ratio"), "must be in 0..=1"));
                    }
                    if sim.tick_ms == 0 {
                        return Err(invalid(&at("tick_ms"), "must be at least 1"));
                    }
                    if sim.stale_after_ms == 0 {
                        return Err(invalid(&at("stale_after_ms"), "must be at least 1"));
                    }
                }
                FeedConfig::Binance(v) | FeedConfig::Coinbase(v) | FeedConfig::Kraken(v) => {
                    validate_symbol_map(&at("symbols"), &v.symbols)?;
                    let scheme_ok = v.url.starts_with("ws://") || v.url.starts_with("wss://");
                    if !v.url.is_empty() && !scheme_ok {
                        return Err(invalid(&at("url"), "must start with ws:// or wss://"));
                    }
                    for (field, val) in [
                        ("stale_after_ms", v.stale_after_ms),
                        ("reconnect_min_ms", v.reconnect_min_ms),
                        ("connect_timeout_ms", v.connect_timeout_ms),
                    ] {
                        if val == 0 {
                            return Err(invalid(&at(field), "must be at least 1"));
                        }
                    }
                    if v.reconnect_max_ms < v.reconnect_min_ms {
                        return Err(invalid(
                            &at("reconnect_max_ms"),
                            "must be at least reconnect_min_ms",
                        ));
                    }
                    if v.max_message_bytes < 1024 {
                        return Err(invalid(&at("max_message_bytes"), "must be at least 1024"));
                    }
                    validate_normalize(&at("max_scale"), &v.normalize)?;
                }
                FeedConfig::Replay(r) => {
                    if r.path.as_os_str().is_empty() {
                        return Err(invalid(&at("path"), "required: the recorded file"));
                    }
                    if !matches!(r.venue.as_str(), "binance" | "coinbase" | "kraken") {
                        return Err(invalid(
                            &at("venue"),
                            "must be one of binance, coinbase, kraken",
                        ));
                    }
                    validate_symbol_map(&at("symbols"), &r.symbols)?;
                    if !(r.speed.is_finite() && r.speed > 0.0) {
                        return Err(invalid(&at("speed"), "must be a positive number"));
                    }
                    if r.stale_after_ms == 0 {
                        return Err(invalid(&at("stale_after_ms"), "must be at least 1"));
                    }
                    validate_normalize(&at("max_scale"), &r.normalize)?;
                }
                FeedConfig::Http(h) => {
                    if h.key_sha256.len() != 64
                        || !h.key_sha256.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(invalid(
                            &at("key_sha256"),
                            "must be 64 hex digits (the SHA-256 of the ingest key)",
                        ));
                    }
                    if h.symbols.is_empty() {
                        return Err(invalid(&at("symbols"), "at least one symbol is required"));
                    }
                    for (j, s) in h.symbols.iter().enumerate() {
                        if !crate::model::valid_symbol(s) {
                            return Err(invalid(
                                &at(&format!("symbols[{j}]")),
                                format!("invalid symbol {s:?}"),
                            ));
                        }
                    }
                    if h.max_body_bytes < 1024 {
                        return Err(invalid(&at("max_body_bytes"), "must be at least 1024"));
                    }
                    validate_normalize(&at("max_scale"), &h.normalize)?;
                }
            }
        }
        Ok(())
    }
}

fn validate_symbol_map(
    field: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if map.is_empty() {
        return Err(invalid(
            field,
            "at least one venue symbol -> gateway symbol mapping is required",
        ));
    }
    for (venue, gw) in map {
        if venue.is_empty() || venue.len() > 64 {
            return Err(invalid(field, format!("bad venue symbol {venue:?}")));
        }
        if !crate::model::valid_symbol(gw) {
            return Err(invalid(
                &format!("{field}.{venue}"),
                format!("invalid gateway symbol {gw:?}"),
            ));
        }
    }
    Ok(())
}

fn validate_normalize(field: &str, n: &NormalizeConfig) -> Result<(), ConfigError> {
    if n.max_scale > 28 {
        return Err(invalid(field, "at most 28 (rust_decimal's limit)"));
    }
    Ok(())
}

/// What the command line asked for.
#[derive(Debug)]
pub struct Cli {
    pub config: Config,
    pub check_only: bool,
}

pub const USAGE: &str = "\
tickergate: market-data streaming gateway

USAGE: tickergate [OPTIONS]
       tickergate record --config PATH --feed NAME --out FILE [--duration SECS] [--max-frames N]

OPTIONS:
  --config PATH        TOML configuration file (default: built-in simulated feed)
  --listen ADDR        public listener, e.g. 127.0.0.1:8080 (port 0 = any free port)
  --shards N           fan-out shards (0 = one per core)
  --sim-rate N         total updates/s of every simulated feed
  --sim-symbols N      symbols of every simulated feed
  --max-connections N  concurrent WebSocket sessions
  --check-config       validate the configuration and exit
  -h, --help           this text

Logging: RUST_LOG (default info), e.g. RUST_LOG=tickergate=debug.
";

fn flag_value<T: std::str::FromStr>(
    flag: &str,
    it: &mut impl Iterator<Item = String>,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let v = it
        .next()
        .ok_or_else(|| ConfigError::Usage(format!("{flag} needs a value\n\n{USAGE}")))?;
    v.parse()
        .map_err(|e| ConfigError::Usage(format!("{flag} {v:?}: {e}")))
}

/// Parses arguments (without the program name). `Ok(None)` means `--help`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Cli>, ConfigError> {
    let mut path = None;
    let mut listen: Option<SocketAddr> = None;
    let mut shards: Option<usize> = None;
    let mut sim_rate: Option<f64> = None;
    let mut sim_symbols: Option<usize> = None;
    let mut max_conn: Option<usize> = None;
    let mut check_only = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => path = Some(PathBuf::from(flag_value::<String>(&a, &mut it)?)),
            "--listen" => listen = Some(flag_value(&a, &mut it)?),
            "--shards" => shards = Some(flag_value(&a, &mut it)?),
            "--sim-rate" => sim_rate = Some(flag_value(&a, &mut it)?),
            "--sim-symbols" => sim_symbols = Some(flag_value(&a, &mut it)?),
            "--max-connections" => max_conn = Some(flag_value(&a, &mut it)?),
            "--check-config" => check_only = true,
            "-h" | "--help" => return Ok(None),
            other => {
                return Err(ConfigError::Usage(format!(
                    "unknown argument {other:?}\n\n{USAGE}"
                )))
            }
        }
    }
    let mut config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if let Some(s) = shards {
        config.server.shards = s;
    }
    if let Some(m) = max_conn {
        config.server.max_connections = m;
    }
    for f in &mut config.feeds {
        if let FeedConfig::Sim(sim) = f {
            if let Some(r) = sim_rate {
                sim.rate = r;
            }
            if let Some(n) = sim_symbols {
                sim.symbols = n;
            }
        }
    }
    config.validate()?;
    Ok(Some(Cli { config, check_only }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml(t, Path::new("test.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.feeds.len(), 1);
        assert_eq!(c.feeds[0].name(), "sim");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse("[session]\nmax_symbolz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_symbolz"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("[session]\nmax_symbols = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_symbols"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = parse("[session]\nmax_symbols = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.max_symbols"), "{e}");
        let e = parse("[[feeds]]\nkind = \"sim\"\nrate = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].rate"), "{e}");
        let e = parse("[auth]\ntoken_sha256 = [\"abc\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.token_sha256[0]"), "{e}");
    }

    #[test]
    fn unknown_feed_kind_is_an_error() {
        let e = parse("[[feeds]]\nkind = \"carrier-pigeon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("carrier-pigeon"), "{e}");
    }

    #[test]
    fn venue_feeds_validate_and_default_their_name() {
        let c = parse(
            "[[feeds]]\nkind = \"binance\"\nsymbols = { BTCUSDT = \"BTC-USDT\" }\ncrossed = \"flag\"\n",
        )
        .unwrap();
        assert_eq!(c.feeds[0].name(), "binance");
        let FeedConfig::Binance(v) = &c.feeds[0] else {
            panic!()
        };
        assert_eq!(v.normalize.crossed, CrossedPolicy::Flag);
        assert_eq!(v.symbols["BTCUSDT"], "BTC-USDT");
        let e = parse("[[feeds]]\nkind = \"kraken\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].symbols"), "{e}");
        let e = parse("[[feeds]]\nkind = \"coinbase\"\nsymbols = { \"BTC-USD\" = \"BAD SYM\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].symbols.BTC-USD"), "{e}");
        let e =
            parse("[[feeds]]\nkind = \"coinbase\"\nurl = \"http://x\"\nsymbols = { A = \"A\" }\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("feeds[0].url"), "{e}");
        let e = parse("[[feeds]]\nkind = \"http\"\nsymbols = [\"A\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].key_sha256"), "{e}");
        let e = parse("[[feeds]]\nkind = \"replay\"\npath = \"x\"\nvenue = \"nyse\"\nsymbols = { A = \"A\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].venue"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let cli = parse_args(
            [
                "--listen",
                "127.0.0.1:0",
                "--sim-rate",
                "10",
                "--check-config",
            ]
            .map(String::from),
        )
        .unwrap()
        .unwrap();
        assert!(cli.check_only);
        assert_eq!(cli.config.server.listen.port(), 0);
        let FeedConfig::Sim(s) = &cli.config.feeds[0] else {
            panic!("default feed is the simulator")
        };
        assert_eq!(s.rate, 10.0);
        assert!(parse_args(["--listen", "nope"].map(String::from)).is_err());
        assert!(parse_args(["--bogus"].map(String::from)).is_err());
        assert!(parse_args(["--help"].map(String::from)).unwrap().is_none());
    }
}
