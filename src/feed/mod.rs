//! Feed adapters: everything that writes quotes into the slots, each
//! through its own normalizer.
//!
//! * [`sim`]: the built-in simulator; [`replay`]: recorded upstream frames;
//!   [`ingest`]: quotes pushed over HTTP (the endpoint itself is the
//!   edge's).
//! * Venue adapters ([`binance`], [`coinbase`], [`kraken`]) implement the
//!   contract in [`venue`] and run under the [`supervisor`], which owns the
//!   connection; [`wire`] holds what they read off the wire alike.
//! * [`health`]: when a feed is live or stale, and the watchdog that tells
//!   subscribers.

pub mod binance;
pub mod coinbase;
pub mod health;
pub mod ingest;
pub mod kraken;
pub mod replay;
pub mod sim;
pub mod supervisor;
pub mod venue;
pub mod wire;

pub use health::{FeedState, Feeds};
pub use venue::{Event, ParseError, SymbolMap, Venue, VenueConfig, VenueKind};

use crate::invalid::Invalid;
use ingest::IngestConfig;
use replay::ReplayConfig;
use serde::de::Error as _;
use serde::Deserialize;
use sim::SimConfig;

/// `[[feeds]]`: one upstream each, selected by `kind`.
#[derive(Debug, Clone)]
pub enum FeedConfig {
    /// `kind = "sim"`: the built-in simulator.
    Sim(SimConfig),
    /// `kind = "binance"`, `"coinbase"`, `"kraken"`: a venue's WebSocket.
    Venue(VenueKind, VenueConfig),
    /// `kind = "replay"`: a recorded file of raw upstream frames.
    Replay(ReplayConfig),
    /// `kind = "http"`: quotes pushed to `POST /v1/ingest` as NDJSON.
    Http(IngestConfig),
}

impl FeedConfig {
    pub fn name(&self) -> &str {
        match self {
            FeedConfig::Sim(s) => &s.name,
            FeedConfig::Venue(_, v) => &v.name,
            FeedConfig::Replay(r) => &r.name,
            FeedConfig::Http(h) => &h.name,
        }
    }

    /// The `kind` it was configured with.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedConfig::Sim(_) => "sim",
            FeedConfig::Venue(k, _) => k.name(),
            FeedConfig::Replay(_) => "replay",
            FeedConfig::Http(_) => "http",
        }
    }

    fn name_mut(&mut self) -> &mut String {
        match self {
            FeedConfig::Sim(s) => &mut s.name,
            FeedConfig::Venue(_, v) => &mut v.name,
            FeedConfig::Replay(r) => &mut r.name,
            FeedConfig::Http(h) => &mut h.name,
        }
    }

    /// An empty `name` becomes the kind.
    pub fn default_name(&mut self) {
        if self.name().is_empty() {
            *self.name_mut() = self.kind().to_string();
        }
    }

    /// The gateway symbols the feed writes, as its configuration names them.
    pub fn symbol_names(&self) -> Vec<String> {
        match self {
            FeedConfig::Sim(s) => sim::symbol_names(s.symbols),
            FeedConfig::Venue(_, v) => v.symbols.values().cloned().collect(),
            FeedConfig::Replay(r) => r.symbols.values().cloned().collect(),
            FeedConfig::Http(h) => h.symbols.clone(),
        }
    }

    /// Checks the kind's own fields, named relative to the feed's table
    /// (the name's uniqueness is the whole configuration's to check).
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            FeedConfig::Sim(s) => s.validate(),
            FeedConfig::Venue(_, v) => v.validate(),
            FeedConfig::Replay(r) => r.validate(),
            FeedConfig::Http(h) => h.validate(),
        }
    }
}

/// `kind` picks the variant; the rest of the table is that variant's
/// settings, with unknown fields refused. By hand rather than derived so
/// that every [`VenueKind`] is a kind without a variant of its own here.
impl<'de> Deserialize<'de> for FeedConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(_) => return Err(D::Error::custom("field `kind` must be a string")),
            None => return Err(D::Error::missing_field("kind")),
        };
        let settings = toml::Value::Table(table);
        let r = match kind.as_str() {
            "sim" => settings.try_into().map(FeedConfig::Sim),
            "replay" => settings.try_into().map(FeedConfig::Replay),
            "http" => settings.try_into().map(FeedConfig::Http),
            other => match VenueKind::from_name(other) {
                Some(k) => settings.try_into().map(|v| FeedConfig::Venue(k, v)),
                None => {
                    return Err(D::Error::custom(format!(
                        "unknown variant `{other}`, expected one of `sim`, {}, `replay`, `http`",
                        VenueKind::ALL.map(|k| format!("`{}`", k.name())).join(", ")
                    )))
                }
            },
        };
        r.map_err(D::Error::custom)
    }
}
