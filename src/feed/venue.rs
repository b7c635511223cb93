//! The venue contract: what an upstream frame can say ([`Event`]), how an
//! adapter turns frames into events ([`Venue`]), which venues exist
//! ([`VenueKind`]), their shared settings ([`VenueConfig`]), and the map
//! from venue symbols to gateway symbols ([`SymbolMap`]).
//!
//! Adding a venue: a file beside `binance.rs` with its [`Venue`] impl, and
//! one variant of [`VenueKind`].

use super::{binance, coinbase, kraken};
use crate::invalid::{at_least_one, Invalid};
use crate::model::{InvalidSymbol, SymbolId, Symbols};
use crate::normalize::{NormalizeConfig, Update};
use crate::trades::TradeInfo;
use serde::Deserialize;
use std::collections::HashMap;

/// The venues with an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VenueKind {
    /// Binance spot public streams (`bookTicker` + `trade`).
    Binance,
    /// Coinbase Exchange public feed (`ticker` + `heartbeat` channels; a
    /// ticker with a trade is a trade too).
    Coinbase,
    /// Kraken WebSocket v2 (`ticker` + `trade` channels).
    Kraken,
}

impl VenueKind {
    pub const ALL: [VenueKind; 3] = [VenueKind::Binance, VenueKind::Coinbase, VenueKind::Kraken];

    /// The name in configuration (`kind = "binance"`), logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            VenueKind::Binance => "binance",
            VenueKind::Coinbase => "coinbase",
            VenueKind::Kraken => "kraken",
        }
    }

    pub fn from_name(name: &str) -> Option<VenueKind> {
        VenueKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every venue's name, for error messages: `binance, coinbase, kraken`.
    pub fn names() -> String {
        VenueKind::ALL.map(VenueKind::name).join(", ")
    }

    /// The venue's adapter (the recorder, replay and the gateway pick the
    /// venue at run time).
    pub fn adapter(self, cfg: &VenueConfig, map: SymbolMap) -> Box<dyn Venue> {
        match self {
            VenueKind::Binance => Box::new(binance::Binance::new(cfg, map)),
            VenueKind::Coinbase => Box::new(coinbase::Coinbase::new(cfg, map)),
            VenueKind::Kraken => Box::new(kraken::Kraken::new(cfg, map)),
        }
    }
}

impl std::fmt::Display for VenueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

    /// Checks the fields; names them relative to the feed's table.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_symbol_map("symbols", &self.symbols)?;
        let scheme_ok = self.url.starts_with("ws://") || self.url.starts_with("wss://");
        if !self.url.is_empty() && !scheme_ok {
            return Err(Invalid::new("url", "must start with ws:// or wss://"));
        }
        at_least_one("stale_after_ms", self.stale_after_ms)?;
        at_least_one("reconnect_min_ms", self.reconnect_min_ms)?;
        at_least_one("connect_timeout_ms", self.connect_timeout_ms)?;
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(Invalid::new(
                "reconnect_max_ms",
                "must be at least reconnect_min_ms",
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(Invalid::new("max_message_bytes", "must be at least 1024"));
        }
        self.normalize.validate()
    }
}

/// Checks a feed's `symbols` table (venue symbol -> gateway symbol).
pub fn validate_symbol_map(
    field: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> Result<(), Invalid> {
    if map.is_empty() {
        return Err(Invalid::new(
            field,
            "at least one venue symbol -> gateway symbol mapping is required",
        ));
    }
    for (venue, gw) in map {
        if venue.is_empty() || venue.len() > 64 {
            return Err(Invalid::new(field, format!("bad venue symbol {venue:?}")));
        }
        if !crate::model::valid_symbol(gw) {
            return Err(Invalid::new(
                format!("{field}.{venue}"),
                format!("invalid gateway symbol {gw:?}"),
            ));
        }
    }
    Ok(())
}

/// One thing an upstream frame said.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New values for a mapped symbol, as the normalizer takes them.
    Quote(Update),
    /// A trade: the update's `last`/`last_size` (and `ts`) are the trade's.
    /// It updates the quote like any update and also goes, in order, to
    /// the subscribers that asked for trades.
    Trade(Update, TradeInfo),
    /// The upstream is alive (heartbeat, pong, status).
    Heartbeat,
    /// The venue acknowledged our subscription.
    Subscribed,
    /// The venue refused our subscription. Reconnecting at once would only
    /// be refused again, so the supervisor logs it and waits the longest
    /// backoff.
    Rejected(String),
    /// The venue refused one pair of our subscription and took the rest:
    /// the supervisor logs it and counts it (`feed_symbols_refused_total`),
    /// and the feed carries on with the other pairs (the refused one's
    /// symbol gets no quotes: it stays stale).
    PairRefused(String),
    /// Understood and deliberately unused.
    Ignored,
}

/// An upstream frame that could not be used. Counted in
/// `feed_rejects_total{feed, reason}`; the feed carries on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unexpected message: {0}")]
    Unexpected(String),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("unmapped venue symbol {0:?}")]
    Unmapped(String),
}

impl ParseError {
    /// The `reason` label in `feed_rejects_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "malformed",
            ParseError::Unexpected(_) => "unexpected",
            ParseError::Field { .. } => "bad_field",
            ParseError::Unmapped(_) => "unmapped_symbol",
        }
    }

    pub fn field(field: &'static str, reason: impl Into<String>) -> Self {
        ParseError::Field {
            field,
            reason: reason.into(),
        }
    }
}

/// A venue's wire format and subscription handshake. The supervisor owns the
/// connection; the venue only says what to send and what frames mean.
pub trait Venue: Send + 'static {
    /// Which venue this adapter speaks.
    fn kind(&self) -> VenueKind;
    /// The URL to connect to (it may carry the subscription, as Binance's
    /// combined-stream URLs do).
    fn url(&self) -> String;
    /// Text messages to send right after connecting, in order.
    fn on_connect(&mut self) -> Vec<String>;
    /// Parses one text frame. `frame` may be modified (simd-json parses in
    /// place). Events are appended to `out`.
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError>;
}

/// A boxed adapter is an adapter: lets one code path pick the venue at run
/// time (the recorder, replay, the gateway).
impl Venue for Box<dyn Venue> {
    fn kind(&self) -> VenueKind {
        (**self).kind()
    }
    fn url(&self) -> String {
        (**self).url()
    }
    fn on_connect(&mut self) -> Vec<String> {
        (**self).on_connect()
    }
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        (**self).parse(frame, out)
    }
}

/// The hash of [`SymbolMap`]: FxHash over 8-byte words, cheaper than
/// SipHash on the short names looked up once per frame. The keys come from
/// the config, so nothing is gained by seeding it.
#[derive(Default, Clone, Copy)]
pub struct SymbolHasher(u64);

impl std::hash::Hasher for SymbolHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut add = |w: u64| self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Venue symbol -> gateway symbol id, from a feed's `symbols` table.
#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    /// Keyed by bytes, so the fast paths look up a scanned name as is.
    map: HashMap<Box<[u8]>, SymbolId, std::hash::BuildHasherDefault<SymbolHasher>>,
    /// Venue symbols in config order.
    pub venue_symbols: Vec<String>,
}

impl SymbolMap {
    /// Interns every gateway symbol of `table` into `symbols`.
    pub fn build(
        table: &std::collections::BTreeMap<String, String>,
        symbols: &mut Symbols,
    ) -> Result<SymbolMap, InvalidSymbol> {
        let mut m = SymbolMap::default();
        for (venue, gw) in table {
            let id = symbols.intern(gw)?;
            m.map.insert(venue.as_bytes().into(), id);
            m.venue_symbols.push(venue.clone());
        }
        Ok(m)
    }

    /// [`SymbolMap::get`] without the error (for fast paths, which leave
    /// errors to the general path).
    #[inline]
    pub fn lookup(&self, venue_symbol: &[u8]) -> Option<SymbolId> {
        self.map.get(venue_symbol).copied()
    }

    pub fn get(&self, venue_symbol: &str) -> Result<SymbolId, ParseError> {
        self.map
            .get(venue_symbol.as_bytes())
            .copied()
            .ok_or_else(|| {
                let shown: String = venue_symbol.chars().take(40).collect();
                ParseError::Unmapped(shown)
            })
    }

    /// Every gateway symbol id this map writes.
    pub fn ids(&self) -> Vec<SymbolId> {
        let mut v: Vec<SymbolId> = self.map.values().copied().collect();
        v.sort();
        v.dedup();
        v
    }
}
