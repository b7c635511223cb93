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
    /// `[server.tls]`: serve `wss://` and `https://` instead of plain TCP.
    /// Default: absent, plain `ws://` and `http://`.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: TLS (rustls) on the public listener. The handshake is
/// bounded by `server.header_timeout_ms`. The files are loaded again on
/// SIGHUP and when the check every `check_secs` sees them changed and then
/// settled: a renewed certificate is served from the next handshake on,
/// open sessions stay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Required. A relative path is
    /// taken relative to the config file's directory.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1). Required. A relative path is
    /// taken relative to the config file's directory.
    pub key: PathBuf,
    /// How often to read both files and compare them with the last load;
    /// files that changed and then stayed the same for one interval are
    /// loaded. 0: only on SIGHUP. Default 60.
    pub check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            check_secs: 60,
        }
    }
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
            conn_rate_per_ip: 20,
            conn_burst_per_ip: 40,
            max_connections_per_ip: 0,
            conn_limiter_prune_ms: 5_000,
            allowed_origins: Vec::new(),
            tls: None,
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
    /// allocates 128 KiB per connection up front. Client ops are ~100-150
    /// bytes; a larger frame grows the buffer as needed, so this only sets
    /// what an idle connection holds. Default 128.
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
    /// After this long without any frame from the client, the server sends
    /// a WebSocket Ping, in milliseconds. Default 20000.
    pub ping_interval_ms: u64,
    /// A client that sends no frame at all (pong, op, anything) for this
    /// long, and has had a Ping owed for `idle_timeout_ms -
    /// ping_interval_ms`, is closed with 1008, in milliseconds. Must exceed
    /// `ping_interval_ms`. Default 60000.
    pub idle_timeout_ms: u64,
    /// Read-window flow control (see `flow.rs`): the backlog a client may
    /// have unread, as how much later than its fastest its probe Pongs may
    /// come back, in milliseconds; past it the window shrinks and data waits
    /// in the slots, coalescing. 0 turns it off (TCP's own push-back only).
    /// Default 0 (off; 20 is a good value: see BENCHMARKS.md for what it
    /// costs and buys).
    pub read_lag_ms: u64,
    /// Smallest read window, in bytes (a session starts at 64 KiB, within
    /// the min and max). Default 8192.
    pub read_window_min_bytes: u32,
    /// Largest read window, in bytes (a fast client on a long link needs
    /// its bandwidth times its round trip). Default 4194304.
    pub read_window_max_bytes: u32,
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
            read_buffer_bytes: 128,
            send_buffer_bytes: 0,
            heartbeat_ms: 5_000,
            slow_consumer_ms: 10_000,
            close_grace_ms: 2_000,
            max_pending_control: 256,
            max_hz_limit: 1000.0,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            read_lag_ms: 0,
            read_window_min_bytes: 8 * 1024,
            read_window_max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[auth]`: off unless a token, a key or `[auth.jwt]` is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted tokens, as lowercase hex SHA-256 of the token (the token
    /// itself is never stored), each entitled to every symbol. Default: empty.
    pub token_sha256: Vec<String>,
    /// `[[auth.keys]]`: API keys with entitlements. Default: none.
    pub keys: Vec<KeyConfig>,
    /// `[auth.jwt]`: accept JWTs (HS256 with a shared secret, or RS256,
    /// ES256 and EdDSA with public keys). Default: absent (no JWTs).
    pub jwt: Option<JwtConfig>,
}

impl AuthConfig {
    /// Whether clients must present a token.
    pub fn enabled(&self) -> bool {
        !self.token_sha256.is_empty() || !self.keys.is_empty() || self.jwt.is_some()
    }
}

fn all_symbols() -> Vec<String> {
    vec!["*".to_string()]
}

/// `[[auth.keys]]`: one API key and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Unique name, used in logs and metrics (never the key). Required.
    pub name: String,
    /// Lowercase hex SHA-256 of the key. Required.
    pub sha256: String,
    /// Symbol patterns the key may see: exact names, a trailing-`*` prefix
    /// (`BTC-*`) or `*` for all. Default `["*"]`.
    #[serde(default = "all_symbols")]
    pub symbols: Vec<String>,
    /// Concurrent WebSocket sessions with this key. Default: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Symbols one session of this key may hold; the lower of this and
    /// `session.max_symbols` applies. Default: `session.max_symbols`.
    #[serde(default)]
    pub max_symbols: Option<usize>,
}

fn default_leeway() -> u64 {
    30
}

/// `[auth.jwt]`: JSON Web Tokens, verified with an HS256 shared secret or
/// with public keys (RS256, ES256, EdDSA).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HS256 shared secret (at least 32 bytes). Exactly one of
    /// `secret`, `secret_env` and `public_keys` is required.
    #[serde(default)]
    pub secret: Option<String>,
    /// Name of an environment variable holding the secret, read at start.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, as an identity
    /// provider publishes them): RSA of 2048 to 8192 bits (RS256), EC P-256
    /// (ES256) or Ed25519 (EdDSA). A token is checked against every key of
    /// its `alg`, so an old and a new key can be configured during a
    /// rotation. Read at start; a relative path is taken relative to the
    /// config file's directory.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// Required `iss` claim. Default: not checked.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` claim (string, or one of an array). Default: not checked.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
}

impl std::fmt::Debug for JwtConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("public_keys", &self.public_keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl JwtConfig {
    /// The secret, from the file or the environment; the error names the field.
    pub fn resolve_secret(&self) -> Result<String, ConfigError> {
        let secret = match (&self.secret, &self.secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                invalid(
                    "auth.jwt.secret_env",
                    format!("environment variable {var:?} is not set (or not UTF-8)"),
                )
            })?,
            _ => {
                return Err(invalid(
                    "auth.jwt.secret",
                    "exactly one of `secret`, `secret_env` and `public_keys` is required",
                ))
            }
        };
        if secret.len() < MIN_JWT_SECRET_BYTES {
            let field = if self.secret.is_some() {
                "auth.jwt.secret"
            } else {
                "auth.jwt.secret_env"
            };
            return Err(invalid(
                field,
                format!("the HS256 secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        Ok(secret)
    }
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

impl VenueConfig {
    /// The configured `url`, or the venue's public endpoint when unset.
    pub fn url_or(&self, default: &str) -> String {
        if self.url.is_empty() {
            default.to_string()
        } else {
            self.url.clone()
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
    /// Total updates per second across all symbols, spread evenly in time,
    /// each update on a symbol drawn by Zipf popularity. Default 5000.
    /// Ignored when `burst_hz` is set.
    pub rate: f64,
    /// Burst mode: when > 0, every symbol ticks together this many times a
    /// second (a "board" where a whole market moves at once: 1,000 symbols
    /// at 2 Hz is 2,000 updates in two bursts a second). Default 0 = off.
    pub burst_hz: f64,
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
            burst_hz: 0.0,
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

    /// Reads a config file. A relative replay `path` or `server.tls` path is
    /// taken relative to the directory of this file, not the working directory.
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
        if let Some(j) = &mut cfg.auth.jwt {
            for k in &mut j.public_keys {
                *k = crate::feed::replay::resolve_path(k, path);
            }
        }
        if let Some(t) = &mut cfg.server.tls {
            t.cert = crate::feed::replay::resolve_path(&t.cert, path);
            t.key = crate::feed::replay::resolve_path(&t.key, path);
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
        for (name, v) in [
            ("server.conn_rate_per_ip", u64::from(s.conn_rate_per_ip)),
            ("server.conn_limiter_prune_ms", s.conn_limiter_prune_ms),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if s.conn_burst_per_ip < s.conn_rate_per_ip {
            return Err(invalid(
                "server.conn_burst_per_ip",
                "must be at least conn_rate_per_ip",
            ));
        }
        for (i, o) in s.allowed_origins.iter().enumerate() {
            if o.is_empty() || o.ends_with('/') || !o.is_ascii() {
                return Err(invalid(
                    &format!("server.allowed_origins[{i}]"),
                    "an origin is scheme://host[:port] without a trailing slash",
                ));
            }
        }
        if let Some(t) = &s.tls {
            if t.cert.as_os_str().is_empty() {
                return Err(invalid(
                    "server.tls.cert",
                    "required: a PEM certificate chain",
                ));
            }
            if t.key.as_os_str().is_empty() {
                return Err(invalid("server.tls.key", "required: a PEM private key"));
            }
            if t.check_secs > 86_400 {
                return Err(invalid(
                    "server.tls.check_secs",
                    "at most 86400 (0: reload only on SIGHUP)",
                ));
            }
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
            ("session.ping_interval_ms", c.ping_interval_ms),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if c.idle_timeout_ms <= c.ping_interval_ms {
            return Err(invalid(
                "session.idle_timeout_ms",
                "must be greater than ping_interval_ms",
            ));
        }
        if c.read_window_min_bytes < 1024 {
            return Err(invalid(
                "session.read_window_min_bytes",
                "must be at least 1024",
            ));
        }
        if c.read_window_max_bytes < c.read_window_min_bytes {
            return Err(invalid(
                "session.read_window_max_bytes",
                "must be at least read_window_min_bytes",
            ));
        }
        if c.read_lag_ms > 60_000 {
            return Err(invalid(
                "session.read_lag_ms",
                "must be at most 60000 (0 turns flow control off)",
            ));
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
        self.validate_auth()?;
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
                    if !(sim.burst_hz.is_finite() && (0.0..=10_000.0).contains(&sim.burst_hz)) {
                        return Err(invalid(&at("burst_hz"), "must be in 0..=10000"));
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

impl Config {
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut hashes: std::collections::HashSet<String> = self
            .auth
            .token_sha256
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for (i, k) in self.auth.keys.iter().enumerate() {
            let at = |field: &str| format!("auth.keys[{i}].{field}");
            if k.name.is_empty() || k.name.len() > 64 {
                return Err(invalid(&at("name"), "must be 1 to 64 characters"));
            }
            if k.name.starts_with("jwt:") {
                // Reserved for JWT subjects (`jwt:<sub>`), which share the
                // per-key connection count.
                return Err(invalid(&at("name"), "must not start with `jwt:`"));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(
                    &at("name"),
                    format!("duplicate key name {:?}", k.name),
                ));
            }
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    &at("sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                ));
            }
            if !hashes.insert(k.sha256.to_ascii_lowercase()) {
                return Err(invalid(&at("sha256"), "the same key is configured twice"));
            }
            if k.symbols.is_empty() {
                return Err(invalid(
                    &at("symbols"),
                    "at least one pattern is required (`*` for all)",
                ));
            }
            for (j, p) in k.symbols.iter().enumerate() {
                if crate::auth::Pattern::parse(p).is_none() {
                    return Err(invalid(
                        &at(&format!("symbols[{j}]")),
                        format!(
                            "bad pattern {p:?}: an exact symbol, a prefix ending in `*`, or `*`"
                        ),
                    ));
                }
            }
            if k.max_connections == Some(0) {
                return Err(invalid(&at("max_connections"), "must be at least 1"));
            }
            if k.max_symbols == Some(0) {
                return Err(invalid(&at("max_symbols"), "must be at least 1"));
            }
        }
        if let Some(j) = &self.auth.jwt {
            if j.public_keys.is_empty() {
                j.resolve_secret()?;
            } else if j.secret.is_some() || j.secret_env.is_some() {
                return Err(invalid(
                    "auth.jwt.public_keys",
                    "public keys or an HS256 secret, not both (a token's alg must not choose)",
                ));
            } else {
                // An identity provider signs tokens for other applications
                // too: only `iss` and `aud` make one meant for this gateway.
                for (field, v) in [
                    ("auth.jwt.issuer", &j.issuer),
                    ("auth.jwt.audience", &j.audience),
                ] {
                    if v.is_none() {
                        return Err(invalid(
                            field,
                            "required with public_keys: the identity provider signs tokens for other applications too",
                        ));
                    }
                }
            }
            for (i, p) in j.public_keys.iter().enumerate() {
                if p.as_os_str().is_empty() {
                    return Err(invalid(
                        &format!("auth.jwt.public_keys[{i}]"),
                        "an empty path",
                    ));
                }
            }
            if j.issuer.as_deref() == Some("") {
                return Err(invalid("auth.jwt.issuer", "must not be empty"));
            }
            if j.audience.as_deref() == Some("") {
                return Err(invalid("auth.jwt.audience", "must not be empty"));
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
  --conn-rate-per-ip N new connections per second per client address
  --check-config       validate the configuration, read every file it names, and exit
  -h, --help           this text

Logging: RUST_LOG (default info), e.g. RUST_LOG=tickergate=debug.
";

/// The value after `flag`, parsed; `usage` is shown when it is missing.
pub(crate) fn flag_value<T: std::str::FromStr>(
    flag: &str,
    it: &mut impl Iterator<Item = String>,
    usage: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let v = it
        .next()
        .ok_or_else(|| ConfigError::Usage(format!("{flag} needs a value\n\n{usage}")))?;
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
    let mut conn_rate: Option<u32> = None;
    let mut check_only = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => path = Some(PathBuf::from(flag_value::<String>(&a, &mut it, USAGE)?)),
            "--listen" => listen = Some(flag_value(&a, &mut it, USAGE)?),
            "--shards" => shards = Some(flag_value(&a, &mut it, USAGE)?),
            "--sim-rate" => sim_rate = Some(flag_value(&a, &mut it, USAGE)?),
            "--sim-symbols" => sim_symbols = Some(flag_value(&a, &mut it, USAGE)?),
            "--max-connections" => max_conn = Some(flag_value(&a, &mut it, USAGE)?),
            "--conn-rate-per-ip" => conn_rate = Some(flag_value(&a, &mut it, USAGE)?),
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
    if let Some(r) = conn_rate {
        // Load tests and trusted networks: the burst follows the rate.
        config.server.conn_rate_per_ip = r;
        config.server.conn_burst_per_ip = config.server.conn_burst_per_ip.max(r);
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
    fn auth_keys_and_jwt_validate() {
        let h = "a".repeat(64);
        let c = parse(&format!(
            "[[auth.keys]]\nname = \"desk\"\nsha256 = \"{h}\"\n\n[auth.jwt]\nsecret = \"{}\"\n",
            "s".repeat(32)
        ))
        .unwrap();
        assert!(c.auth.enabled());
        assert_eq!(c.auth.keys[0].symbols, vec!["*"]);
        assert_eq!(c.auth.jwt.as_ref().unwrap().leeway_s, 30);
        assert!(
            !format!("{c:?}").contains(&"s".repeat(32)),
            "secret leaks in Debug"
        );
        for (toml, field) in [
            (format!("[[auth.keys]]\nsha256 = \"{h}\"\n"), "name"),
            (format!("[[auth.keys]]\nname = \"\"\nsha256 = \"{h}\"\n"), "auth.keys[0].name"),
            ("[[auth.keys]]\nname = \"a\"\nsha256 = \"xyz\"\n".to_string(), "auth.keys[0].sha256"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"{}\"\n", "b".repeat(64)), "auth.keys[1].name"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\n[[auth.keys]]\nname = \"b\"\nsha256 = \"{h}\"\n"), "auth.keys[1].sha256"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nsymbols = [\"B*C\"]\n"), "auth.keys[0].symbols[0]"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nmax_connections = 0\n"), "auth.keys[0].max_connections"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nmax_symbols = 0\n"), "auth.keys[0].max_symbols"),
            (format!("[[auth.keys]]\nname = \"jwt:x\"\nsha256 = \"{h}\"\n"), "auth.keys[0].name"),
            ("[auth.jwt]\nsecret = \"short\"\n".to_string(), "auth.jwt.secret"),
            ("[auth.jwt]\nleeway_s = 5\n".to_string(), "auth.jwt.secret"),
            ("[auth.jwt]\nsecret_env = \"TICKERGATE_TEST_UNSET_VAR_X\"\n".to_string(), "auth.jwt.secret_env"),
            ("[auth.jwt]\nsecrett = \"x\"\n".to_string(), "secrett"),
            (format!("[auth.jwt]\nsecret = \"{}\"\npublic_keys = [\"k.pem\"]\n", "s".repeat(32)), "auth.jwt.public_keys"),
            ("[auth.jwt]\npublic_keys = [\"\"]\naudience = \"a\"\nissuer = \"i\"\n".to_string(), "auth.jwt.public_keys[0]"),
            ("[auth.jwt]\npublic_keys = [\"k.pem\"]\nissuer = \"i\"\n".to_string(), "auth.jwt.audience"),
            ("[auth.jwt]\npublic_keys = [\"k.pem\"]\naudience = \"a\"\n".to_string(), "auth.jwt.issuer"),
        ] {
            let e = parse(&toml).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
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
