//! HTTP ingest (`kind = "http"`): custom upstreams push quotes and trades
//! to `POST /v1/ingest` as NDJSON, one quote (or `"type":"trade"`) per line.
//!
//! ```text
//! POST /v1/ingest
//! Authorization: Bearer <ingest key>
//!
//! {"symbol":"AAPL","bid":"189.12","bid_size":"300","ask":"189.14","ask_size":"200","last":"189.13","last_size":"100","ts":1763900000123456789}
//! {"symbol":"MSFT","last":"410.15"}
//! {"type":"trade","symbol":"MSFT","price":"410.15","size":"25","side":"buy","trade_id":42}
//! ```
//!
//! * **Key.** The bearer key selects the feed (the endpoint, at the edge,
//!   compares its SHA-256 in constant time with every `http` feed's
//!   `key_sha256`). Only the header is accepted (a key in a URL ends up in
//!   access logs).
//! * **Lines.** Each line is parsed in place with simd-json. Prices and
//!   sizes are decimal **strings**, parsed exactly to `Decimal`; a JSON
//!   number is refused for that line (`bad_request`, "prices and sizes must
//!   be decimal strings"), because the parser turns numbers into `f64` and
//!   the exact text the pusher meant would be lost. `ts` is an optional
//!   integer (ns since the Unix epoch). At least one of `bid`, `ask`,
//!   `last` is required; unknown fields are errors (a typo must not be
//!   dropped silently). A trailing newline ends the last line; any other
//!   empty line is an error.
//! * **Partial success.** Every line stands alone: bad lines are reported
//!   with their 1-based line number and a code, and the good lines of the
//!   same body are applied anyway, in order. Codes: `bad_request` (not a
//!   usable quote), `unknown_symbol` (not one of this feed's `symbols`), or
//!   the normalizer's reject reason (`crossed`, `negative_size`,
//!   `non_positive_price`, `out_of_order`, `scale`, `empty`). The errors
//!   list holds the first [`MAX_REPORTED_ERRORS`]; `errors_omitted` counts
//!   the rest.
//! * **Bounded.** The endpoint reads the body frame by frame up to the
//!   feed's `max_body_bytes` (413 past it) within a time limit (408 past
//!   it); nothing is buffered beyond the limit.

use super::{FeedState, ParseError};
use crate::invalid::Invalid;
use crate::model::{field, AddError, Pattern, Quote, SymbolId, Symbols};
use crate::normalize::{FeedNormalizer, NormalizeConfig, Normalizer, Update};
use crate::protocol::ErrorCode;
use crate::slots::SlotTable;
use crate::sync::{Mutex, MutexGuard, RwLock};
use crate::trades::{Side, TradeInfo};
use serde::Deserialize;
use simd_json::value::borrowed::{Object, Value};
use simd_json::StaticNode;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest `max_new_symbols` (room is reserved in every per-symbol table).
pub const MAX_NEW_SYMBOLS: usize = 100_000;

/// Per-line errors listed in a response; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// `kind = "http"`: quotes pushed to `POST /v1/ingest` (NDJSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Feed name. Default `http`.
    pub name: String,
    /// SHA-256 (hex) of the ingest key, sent as `Authorization: Bearer KEY`.
    /// Required.
    pub key_sha256: String,
    /// Gateway symbols this feed may write. Required, at least one. An
    /// entry ending in `*` (`NEW-*`, or `*`) is a pattern: a symbol it
    /// matches that the gateway does not have yet is added at the feed's
    /// first line for it (see `max_new_symbols`).
    pub symbols: Vec<String>,
    /// Most symbols this feed's patterns may add while the gateway runs
    /// (room for them is reserved at start). Default 1000.
    pub max_new_symbols: usize,
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
            max_new_symbols: 1000,
            stale_after_ms: 0,
            max_body_bytes: 1 << 20,
            normalize: NormalizeConfig::default(),
        }
    }
}

impl IngestConfig {
    /// The patterns among `symbols`.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.symbols
            .iter()
            .map(String::as_str)
            .filter(|s| s.ends_with('*'))
    }

    /// The plain names among `symbols`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.symbols
            .iter()
            .map(String::as_str)
            .filter(|s| !s.ends_with('*'))
    }

    /// The room this feed needs for symbols it adds while running.
    pub fn room(&self) -> usize {
        if self.patterns().next().is_some() {
            self.max_new_symbols
        } else {
            0
        }
    }

    /// Checks the fields; names them relative to the feed's table.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.key_sha256.len() != 64 || !self.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::new(
                "key_sha256",
                "must be 64 hex digits (the SHA-256 of the ingest key)",
            ));
        }
        if self.symbols.is_empty() {
            return Err(Invalid::new("symbols", "at least one symbol is required"));
        }
        for (j, s) in self.symbols.iter().enumerate() {
            let pattern = s.ends_with('*') && Pattern::parse(s).is_some();
            if !pattern && !crate::model::valid_symbol(s) {
                return Err(Invalid::new(
                    format!("symbols[{j}]"),
                    format!("invalid symbol {s:?} (a name, or a pattern such as NEW-* or *)"),
                ));
            }
        }
        if self.max_new_symbols > MAX_NEW_SYMBOLS {
            return Err(Invalid::new(
                "max_new_symbols",
                format!("at most {MAX_NEW_SYMBOLS}"),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(Invalid::new("max_body_bytes", "must be at least 1024"));
        }
        self.normalize.validate()
    }
}

/// What an ingest feed with patterns needs to add symbols while running:
/// the symbol table, the slots (for the new symbol's status), and who to
/// tell (the fan-out, for the sessions that watch patterns).
pub struct Growth {
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub on_new: Arc<dyn Fn() + Send + Sync>,
}

/// Symbols an ingest feed's patterns add while running.
struct Adding {
    growth: Growth,
    patterns: Vec<Pattern>,
    max: usize,
    added: usize,
}

/// One `http` feed: what it may write, and its normalizer.
pub struct IngestFeed {
    pub name: String,
    /// Its symbols by name (those its patterns added too).
    symbols: RwLock<HashMap<String, SymbolId>>,
    /// With patterns and room: how it adds symbols.
    adding: Option<Mutex<Adding>>,
    /// Shared by every request to this feed. A std mutex, not an async one:
    /// it is taken for one line's `apply` or reject count at a time (briefly,
    /// no `.await` while held), so requests to one feed interleave line by
    /// line and never wait on each other's I/O.
    norm: Mutex<FeedNormalizer>,
    state: Arc<FeedState>,
    pub max_body_bytes: usize,
}

impl IngestFeed {
    /// `ids[i]` is the interned id of the `i`th plain name of
    /// `cfg.symbols` ([`IngestConfig::names`]).
    pub fn new(
        cfg: &IngestConfig,
        ids: &[SymbolId],
        norm: Normalizer,
        state: Arc<FeedState>,
    ) -> IngestFeed {
        IngestFeed {
            name: cfg.name.clone(),
            symbols: RwLock::new(
                cfg.names()
                    .map(str::to_string)
                    .zip(ids.iter().copied())
                    .collect(),
            ),
            adding: None,
            norm: Mutex::new(FeedNormalizer::new(norm, cfg.normalize.clone())),
            state,
            max_body_bytes: cfg.max_body_bytes,
        }
    }

    /// Lets the feed's patterns add symbols (without it, a name its
    /// patterns match but the gateway lacks is `unknown_symbol`).
    pub fn with_growth(mut self, cfg: &IngestConfig, growth: Growth) -> IngestFeed {
        let patterns: Vec<Pattern> = cfg.patterns().filter_map(Pattern::parse).collect();
        if !patterns.is_empty() && cfg.max_new_symbols > 0 {
            self.adding = Some(Mutex::new(Adding {
                growth,
                patterns,
                max: cfg.max_new_symbols,
                added: 0,
            }));
        }
        self
    }

    /// The id of `name` if this feed may write it: one of its symbols, or
    /// one its patterns match, added to the gateway now if it is new.
    fn lookup(&self, name: &str) -> Result<SymbolId, LineError> {
        if let Some(id) = self.symbols.read().get(name) {
            return Ok(*id);
        }
        let unknown = || LineError::UnknownSymbol(name.chars().take(40).collect());
        let Some(adding) = &self.adding else {
            return Err(unknown());
        };
        let mut a = adding.lock();
        if !a.patterns.iter().any(|p| p.matches(name)) {
            return Err(unknown());
        }
        if let Some(id) = self.symbols.read().get(name) {
            return Ok(*id);
        }
        if a.added >= a.max {
            return Err(LineError::NoRoom(format!(
                "{:?} matches this feed's symbols but the feed has added its max_new_symbols ({})",
                name.chars().take(40).collect::<String>(),
                a.max
            )));
        }
        let id = match a.growth.symbols.add(name) {
            Ok(id) => id,
            Err(AddError::Invalid(e)) => {
                return Err(LineError::Bad(ParseError::field("symbol", e.to_string())))
            }
            Err(e @ AddError::Full(_)) => return Err(LineError::NoRoom(e.to_string())),
        };
        a.added += 1;
        self.symbols.write().insert(name.to_string(), id);
        self.state.add_symbol(id, &a.growth.slots);
        tracing::info!(feed = %self.name, symbol = name, "symbol added");
        (a.growth.on_new)();
        Ok(id)
    }

    fn normalizer(&self) -> MutexGuard<'_, FeedNormalizer> {
        self.norm.lock()
    }

    /// Applies an NDJSON body line by line; the body is parsed in place.
    pub fn apply_body(&self, body: &mut [u8]) -> Report {
        let mut report = Report::default();
        let mut buffers = simd_json::Buffers::new(256);
        // A trailing newline ends the last line; it does not start one.
        let body = match body {
            [rest @ .., b'\n'] => rest,
            b => b,
        };
        if body.is_empty() {
            return report;
        }
        for (i, line) in body.split_mut(|b| *b == b'\n').enumerate() {
            let line_no = i + 1;
            let line = match line {
                [rest @ .., b'\r'] => rest,
                l => l,
            };
            match self.parse_line(line, &mut buffers) {
                Ok((sym, quote, trade)) => {
                    let u = Update {
                        sym,
                        quote,
                        seq: None,
                    };
                    let applied = self.normalizer().apply_with(u, trade);
                    match applied {
                        Ok(_) => report.accepted += 1,
                        Err(r) => report.reject(
                            line_no,
                            r.as_str(),
                            format!("quote rejected: {}", r.as_str()),
                        ),
                    }
                }
                Err(LineError::Bad(e)) => {
                    self.normalizer().upstream_error(e.reason(), &e);
                    report.reject(line_no, ErrorCode::BadRequest.as_str(), e.to_string());
                }
                Err(LineError::NoRoom(message)) => {
                    let e = ParseError::Unmapped(message.clone());
                    self.normalizer().upstream_error(e.reason(), &e);
                    report.reject(line_no, ErrorCode::UnknownSymbol.as_str(), message);
                }
                Err(LineError::UnknownSymbol(name)) => {
                    let e = ParseError::Unmapped(name.clone());
                    self.normalizer().upstream_error(e.reason(), &e);
                    report.reject(
                        line_no,
                        ErrorCode::UnknownSymbol.as_str(),
                        format!("{name:?} is not one of this feed's symbols"),
                    );
                }
            }
        }
        if report.accepted > 0 {
            self.state.alive();
        }
        report
    }

    fn parse_line(
        &self,
        line: &mut [u8],
        buffers: &mut simd_json::Buffers,
    ) -> Result<Line, LineError> {
        if line.trim_ascii().is_empty() {
            return Err(LineError::Bad(ParseError::Json("empty line".into())));
        }
        let v = simd_json::value::borrowed::to_value_with_buffers(line, buffers)
            .map_err(|e| LineError::Bad(ParseError::Json(e.to_string())))?;
        let Value::Object(o) = &v else {
            return Err(LineError::Bad(ParseError::Unexpected(
                "each line must be a JSON object".into(),
            )));
        };
        match o.get("type") {
            None => parse_quote(o, &|n| self.lookup(n)).map(|(sym, q)| (sym, q, None)),
            Some(Value::String(t)) if t == "quote" => {
                parse_quote(o, &|n| self.lookup(n)).map(|(sym, q)| (sym, q, None))
            }
            Some(Value::String(t)) if t == "trade" => parse_trade(o, &|n| self.lookup(n)),
            Some(_) => Err(LineError::Bad(ParseError::field(
                "type",
                "must be \"quote\" (the default) or \"trade\"",
            ))),
        }
    }
}

/// A symbol's id by name, or why the feed may not write it.
type Lookup<'a> = &'a dyn Fn(&str) -> Result<SymbolId, LineError>;

/// A line's symbol, its quote and, for a trade, what else it said.
type Line = (SymbolId, Quote, Option<TradeInfo>);

enum LineError {
    Bad(ParseError),
    UnknownSymbol(String),
    /// A name the feed's patterns match, with no room left to add it.
    NoRoom(String),
}

const PRICE_FIELDS: [(&str, u8); 6] = [
    ("bid", field::BID),
    ("bid_size", field::BID_SIZE),
    ("ask", field::ASK),
    ("ask_size", field::ASK_SIZE),
    ("last", field::LAST),
    ("last_size", field::LAST_SIZE),
];

fn parse_quote(o: &Object, lookup: Lookup) -> Result<(SymbolId, Quote), LineError> {
    let bad = |field: &'static str, why: &str| LineError::Bad(ParseError::field(field, why));
    let mut q = Quote::default();
    let mut symbol = None;
    for (k, v) in o.iter() {
        let k: &str = k;
        if k == "type" {
            continue;
        }
        if k == "symbol" {
            match v {
                Value::String(s) => symbol = Some(&**s),
                _ => return Err(bad("symbol", "must be a string")),
            }
            continue;
        }
        if k == "ts" {
            q.ts = timestamp(v)?;
            q.present |= field::TS;
            continue;
        }
        let Some(&(name, bit)) = PRICE_FIELDS.iter().find(|(n, _)| *n == k) else {
            let shown: String = k.chars().take(40).collect();
            return Err(LineError::Bad(ParseError::Unexpected(format!(
                "unknown field {shown:?} (type, symbol, bid, bid_size, ask, ask_size, last, last_size, ts)"
            ))));
        };
        let d = decimal(name, v)?;
        match bit {
            field::BID => q.bid = d,
            field::BID_SIZE => q.bid_size = d,
            field::ASK => q.ask = d,
            field::ASK_SIZE => q.ask_size = d,
            field::LAST => q.last = d,
            _ => q.last_size = d,
        }
        q.present |= bit;
    }
    let Some(name) = symbol else {
        return Err(bad("symbol", "missing"));
    };
    if q.present & (field::BID | field::ASK | field::LAST) == 0 {
        return Err(LineError::Bad(ParseError::Unexpected(
            "a quote needs at least one of bid, ask, last".into(),
        )));
    }
    // Last: a line that is no use adds no symbol.
    let sym = lookup(name)?;
    Ok((sym, q))
}

/// A price or size: a decimal string, parsed exactly.
fn decimal(name: &'static str, v: &Value) -> Result<rust_decimal::Decimal, LineError> {
    let bad = |why: &str| LineError::Bad(ParseError::field(name, why));
    let text = match v {
        Value::String(s) => &**s,
        Value::Static(StaticNode::Null) | Value::Static(StaticNode::Bool(_)) => {
            return Err(bad("must be a decimal string (omit the field if unknown)"))
        }
        Value::Static(_) => {
            return Err(bad(
                "prices and sizes must be decimal strings (e.g. \"189.12\"), not JSON numbers: a number's exact text is not kept",
            ))
        }
        _ => return Err(bad("must be a decimal string")),
    };
    super::wire::parse_decimal(text, name).map_err(LineError::Bad)
}

/// `ts`: ns since the Unix epoch.
fn timestamp(v: &Value) -> Result<i64, LineError> {
    let bad = |why: &str| LineError::Bad(ParseError::field("ts", why));
    match v {
        Value::Static(StaticNode::I64(t)) if *t >= 0 => Ok(*t),
        Value::Static(StaticNode::U64(t)) => i64::try_from(*t).map_err(|_| bad("out of range")),
        _ => Err(bad(
            "must be a non-negative integer: ns since the Unix epoch",
        )),
    }
}

/// A `"type":"trade"` line: `symbol`, `price`, `size` (required), `side`
/// (`buy`/`sell`), `trade_id` (integer), `ts`. Its price and size become
/// the quote's `last`/`last_size`.
fn parse_trade(o: &Object, lookup: Lookup) -> Result<Line, LineError> {
    let bad = |field: &'static str, why: &str| LineError::Bad(ParseError::field(field, why));
    let (mut price, mut size, mut symbol) = (None, None, None);
    let mut q = Quote::default();
    let mut info = TradeInfo::default();
    for (k, v) in o.iter() {
        match &**k {
            "type" => {}
            "symbol" => match v {
                Value::String(s) => symbol = Some(&**s),
                _ => return Err(bad("symbol", "must be a string")),
            },
            "price" => price = Some(decimal("price", v)?),
            "size" => size = Some(decimal("size", v)?),
            "ts" => q = q.with_ts(timestamp(v)?),
            "side" => match v {
                Value::String(s) if matches!(&**s, "buy" | "sell") => info.side = Side::parse(s),
                _ => {
                    return Err(bad(
                        "side",
                        "must be \"buy\" or \"sell\" (omit it if unknown)",
                    ))
                }
            },
            "trade_id" => match v {
                Value::Static(StaticNode::U64(n)) => info.trade_id = Some(*n),
                Value::Static(StaticNode::I64(n)) if *n >= 0 => info.trade_id = Some(*n as u64),
                _ => return Err(bad("trade_id", "must be a non-negative integer")),
            },
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(LineError::Bad(ParseError::Unexpected(format!(
                    "unknown field {shown:?} in a trade (type, symbol, price, size, side, trade_id, ts)"
                ))));
            }
        }
    }
    let name = symbol.ok_or_else(|| bad("symbol", "missing"))?;
    let price = price.ok_or_else(|| bad("price", "missing: a trade needs price and size"))?;
    let size = size.ok_or_else(|| bad("size", "missing: a trade needs price and size"))?;
    let sym = lookup(name)?;
    Ok((sym, q.with_last(price, size), Some(info)))
}

/// What became of one request's lines.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub accepted: u64,
    pub rejected: u64,
    /// The first [`MAX_REPORTED_ERRORS`] errors, by line.
    pub errors: Vec<LineReport>,
    /// Errors beyond the listed ones.
    pub errors_omitted: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct LineReport {
    pub line: usize,
    pub code: &'static str,
    pub message: String,
}

impl Report {
    fn reject(&mut self, line: usize, code: &'static str, message: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineReport {
                line,
                code,
                message,
            });
        } else {
            self.errors_omitted += 1;
        }
    }

    /// `{"accepted":N,"rejected":M,"errors":[{"line":..,"code":..,"message":..}],"errors_omitted":K}`
    /// (fields in this order).
    pub fn to_json(&self) -> String {
        // Plain numbers, strings and a Vec of them: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::slots::SlotTable;

    fn feed() -> (Arc<SlotTable>, IngestFeed) {
        let slots = Arc::new(SlotTable::new(2, 1));
        let metrics = Arc::new(Metrics::new());
        let cfg = IngestConfig {
            name: "push".into(),
            symbols: vec!["AAPL".into(), "BTC-USD".into()],
            normalize: NormalizeConfig::default(),
            ..IngestConfig::default()
        };
        let norm = Normalizer::new("push", slots.clone(), &metrics);
        let state = Arc::new(FeedState::new("push", vec![SymbolId(0), SymbolId(1)], None));
        let f = IngestFeed::new(&cfg, &[SymbolId(0), SymbolId(1)], norm, state);
        (slots, f)
    }

    fn codes(r: &Report) -> Vec<(usize, &'static str)> {
        r.errors.iter().map(|e| (e.line, e.code)).collect()
    }

    #[test]
    fn lines_stand_alone() {
        let (slots, f) = feed();
        let mut body = concat!(
            r#"{"symbol":"AAPL","bid":"189.1200","bid_size":"300","ask":"189.14","ts":5}"#,
            "\r\n",
            r#"{"symbol":"AAPL","bid":189.12}"#,
            "\n",
            r#"{"symbol":"AAPL","bid":"1e3"}"#,
            "\n",
            "\n",
            r#"{"symbol":"AAPL","bidd":"1"}"#,
            "\n",
            r#"{"symbol":"NOPE","bid":"1"}"#,
            "\n",
            r#"{"symbol":"AAPL","ts":6}"#,
            "\n",
            r#"{"symbol":"AAPL","ask":"189.10"}"#,
            "\n",
            r#"{"symbol":"AAPL","last":"189.13","ts":4}"#,
            "\n",
            r#"{"symbol":"AAPL","last":"189.13","ts":-1}"#,
            "\n",
            r#"["AAPL"]"#,
            "\n",
            r#"{"symbol":"BTC-USD","last":"97000.01000000","last_size":"0.001"}"#,
            "\n",
        )
        .as_bytes()
        .to_vec();
        let r = f.apply_body(&mut body);
        assert_eq!((r.accepted, r.rejected), (2, 10), "{r:?}");
        assert_eq!(
            codes(&r),
            vec![
                (2, "bad_request"),
                (3, "bad_request"),
                (4, "bad_request"),
                (5, "bad_request"),
                (6, "unknown_symbol"),
                (7, "bad_request"),
                (8, "crossed"),
                (9, "out_of_order"),
                (10, "bad_request"),
                (11, "bad_request"),
            ]
        );
        assert!(
            r.errors[0].message.contains("decimal strings"),
            "{}",
            r.errors[0].message
        );
        let (q, seq) = slots.read(SymbolId(0)).unwrap();
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string(), seq),
            ("189.1200".into(), "189.14".into(), 1)
        );
        assert!(!q.has(field::ASK_SIZE), "fields not sent stay absent");
        assert_eq!(
            slots.read(SymbolId(1)).unwrap().0.last_size.to_string(),
            "0.001"
        );
    }

    #[test]
    fn errors_list_is_capped() {
        let (_, f) = feed();
        let mut body = "x\n".repeat(MAX_REPORTED_ERRORS + 7).into_bytes();
        let r = f.apply_body(&mut body);
        assert_eq!(r.rejected, MAX_REPORTED_ERRORS as u64 + 7);
        assert_eq!(r.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(r.errors_omitted, 7);
        let mut empty = Vec::new();
        assert_eq!(f.apply_body(&mut empty).rejected, 0);
    }
}
