//! Kraken Spot WebSocket v2: the `ticker` channel (best bid/ask with sizes,
//! last trade price) and the `trade` channel (every trade, see [`trade`])
//! for every mapped pair, over one connection.
//!
//! After connecting the adapter sends two `subscribe`s (Kraken takes one
//! channel per request), the ticker's and the trades', each with a
//! `req_id` that grows per request; Kraken answers with one ack per pair
//! and channel, sends a ticker `snapshot` per pair and then `update`s, and
//! a `heartbeat` about once a second, so a silent connection really is
//! dead. Kraken's ticker has no sequence number (`seq` is `None`) and no
//! last trade size (`last_size` comes from the trades); an entry's
//! `timestamp`, when present, becomes the quote's `ts`, so the normalizer
//! refuses a timestamp going backwards. Trades are numbered (`trade_id`, the
//! [`TRADE`] sequence stream) and keep their own time (see
//! [`crate::normalize::FeedNormalizer`]). Kraken acks or refuses each pair
//! on its own: a refused pair is an [`Event::PairRefused`] (logged and
//! counted; the other pairs stream on), and only when every configured
//! pair's ticker is refused, or a refusal names no pair, is it an
//! [`Event::Rejected`], so the supervisor waits its longest backoff before
//! trying again (a pair name Kraken does not know is a config error). A
//! pair whose trades alone are refused (the refusal carries the trade
//! request's `req_id`) keeps its quotes.
//!
//! Subscribe, ack (one per pair) and refusal, as documented:
//! ```json
//! {"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD","ETH/USD"],"event_trigger":"bbo"},"req_id":1}
//! {"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","ETH/USD"],"snapshot":false},"req_id":2}
//! {"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}
//! {"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}
//! ```
//! Ticker snapshot (`"type":"update"` has the same schema; `data` may hold
//! several pairs):
//! ```json
//! {"channel":"ticker","type":"snapshot","data":[{"symbol":"BTC/USD","bid":97000.1,"bid_qty":0.50000000,"ask":97000.2,"ask_qty":1.25,"last":97000.2,"volume":1234.5678,"vwap":96950.3,"low":96000.0,"high":97500.0,"change":120.5,"change_pct":0.12}]}
//! ```
//! Liveness: `{"channel":"heartbeat"}`, the connection status
//! `{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":123,"system":"online","version":"2.0.0"}]}`
//! (a `system` other than `online`, e.g. `maintenance`, is logged) and
//! `{"method":"pong",...}`.
//!
//! # Numbers keep their text
//!
//! Unlike Binance and Coinbase, Kraken v2 sends prices and sizes as JSON
//! *numbers*: `"bid_qty":0.50000000`. simd-json (the hot-path parser) turns
//! every number into an `f64`, which would print back as `0.5` and round
//! `97000.1` to the nearest binary fraction: both break the rule that a
//! price reaches subscribers as the exact text the venue sent.
//!
//! So before parsing, [`NumberQuoter`] rewrites the frame in one linear pass
//! into a buffer the adapter reuses: every number in a *value* position
//! outside strings is wrapped in quotes (`0.50000000` → `"0.50000000"`),
//! everything else is copied byte for byte. simd-json then hands back the
//! number's exact text as a string, and [`parse_decimal`] reads it exactly,
//! refusing what it cannot hold exactly (`1e-5`, 30-digit numbers) as
//! `bad_field`. A field Kraken already sends as a string is accepted the
//! same way. The pass keeps JSON validity intact both ways: strings (with
//! their `\"` and `\\` escapes) are skipped, `true`/`false`/`null` are
//! untouched, a token that is not a valid JSON number is left as it was and
//! a number followed by `:` (where only a key may stand: `{1:2}`) is not
//! quoted, so malformed input (truncated frames included) stays malformed
//! for simd-json. Alternatives refused: simd-json has no raw-number mode,
//! and serde_json's `arbitrary_precision` would change number handling for
//! the whole crate (Cargo features unify) and leave the hot-path parser.
//! The cost is one extra copy of the frame (at most 3x its size for
//! `[1,1,...]`, bounded by the supervisor's `max_message_bytes`; the
//! buffer shrinks back after an unusually large frame) and a scan that is
//! cheaper than simd-json's own parse of the frame. One consequence: after
//! the rewrite a number and a string are alike, so a symbol sent as `123`
//! reads as the text `"123"` (and is then unmapped), and a `req_id` reads
//! as a string.

use super::wire::json::{self, Object, Value};
use super::wire::{flat, parse_decimal, parse_rfc3339_ns};
use super::{Event, ParseError, SymbolMap, Venue, VenueConfig, VenueKind};
use crate::model::{field, Quote};
use crate::normalize::Update;
use rust_decimal::Decimal;
use simd_json::StaticNode;

mod quoter;
mod trade;
pub use quoter::NumberQuoter;
pub use trade::TRADE;

pub const DEFAULT_URL: &str = "wss://ws.kraken.com/v2";

/// Longest venue error text kept in a [`Event::Rejected`] (it is logged).
const MAX_ERROR_TEXT: usize = 200;

/// The adapter: its `req_id` counter and the buffer frames are rewritten
/// into (one per feed task, reused for every frame).
pub struct Kraken {
    url: String,
    map: SymbolMap,
    next_req_id: u64,
    quoter: NumberQuoter,
    /// Configured pairs whose ticker was refused on this connection (reset
    /// on connect).
    refused: Vec<String>,
    /// The `req_id` of this connection's trade subscription: a refusal
    /// carrying it is the trade channel's.
    trade_req_id: Option<u64>,
}

impl Kraken {
    pub fn new(cfg: &VenueConfig, map: SymbolMap) -> Self {
        let url = cfg.url_or(DEFAULT_URL);
        Kraken {
            url,
            map,
            next_req_id: 1,
            quoter: NumberQuoter::default(),
            refused: Vec::new(),
            trade_req_id: None,
        }
    }

    /// The `subscribe` requests for every mapped pair: the ticker, then
    /// the trades (Kraken takes one channel per request), each with its own
    /// `req_id`.
    pub fn subscribe_requests(&mut self) -> Vec<String> {
        self.refused.clear();
        let ticker = self.next_req_id;
        let trade = ticker + 1;
        self.next_req_id += 2;
        self.trade_req_id = Some(trade);
        vec![
            serde_json::json!({
                "method": "subscribe",
                // `bbo`: an update on every best-bid/offer change, not only
                // on trades (Kraken's default), which is what a quote
                // gateway needs.
                "params": {"channel": "ticker", "symbol": self.map.venue_symbols, "event_trigger": "bbo"},
                "req_id": ticker,
            })
            .to_string(),
            serde_json::json!({
                "method": "subscribe",
                // No snapshot: the trades before we subscribed are history,
                // not news (a snapshot that comes anyway is ignored).
                "params": {"channel": "trade", "symbol": self.map.venue_symbols, "snapshot": false},
                "req_id": trade,
            })
            .to_string(),
        ]
    }

    fn parse_frame(&mut self, frame: &[u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        let text = self.quoter.rewrite(frame);
        let v = json::parse(text)?;
        let o = json::object(&v)?;
        // Replies to our requests.
        if let Some(method) = o.get("method") {
            let Value::String(method) = method else {
                return Err(ParseError::field("method", "must be a string"));
            };
            match &**method {
                "subscribe" => {
                    let trades = self.trade_req_id.is_some() && req_id(o) == self.trade_req_id;
                    let ev = subscribe_reply(&self.map, &mut self.refused, trades, o)?;
                    out.push(ev);
                }
                "pong" => out.push(Event::Heartbeat),
                _ => out.push(Event::Ignored),
            }
            return Ok(());
        }
        let channel = match o.get("channel") {
            Some(Value::String(c)) => &**c,
            Some(_) => return Err(ParseError::field("channel", "must be a string")),
            None => return Err(ParseError::Unexpected("neither method nor channel".into())),
        };
        match channel {
            "heartbeat" => out.push(Event::Heartbeat),
            "status" => out.push(status(o)?),
            "ticker" => {
                match json::str_field(o, "type")? {
                    "snapshot" | "update" => {}
                    other => {
                        let shown: String = other.chars().take(40).collect();
                        return Err(ParseError::Unexpected(format!("ticker type {shown:?}")));
                    }
                }
                let Some(Value::Array(data)) = o.get("data") else {
                    return Err(ParseError::field("data", "must be an array"));
                };
                for entry in data.iter() {
                    let Value::Object(e) = entry else {
                        return Err(ParseError::field("data", "entries must be objects"));
                    };
                    out.push(ticker_entry(&self.map, e)?);
                }
            }
            "trade" => trade::message(&self.map, o, out)?,
            // Channels we never subscribe to (book, ohlc, ...).
            _ => out.push(Event::Ignored),
        }
        Ok(())
    }
}

impl Venue for Kraken {
    fn kind(&self) -> VenueKind {
        VenueKind::Kraken
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self) -> Vec<String> {
        self.subscribe_requests()
    }

    /// The fast path first ([`Kraken::parse_fast`], ticker data only); any
    /// frame it does not take goes through the general path, which owns
    /// every error. The adapter keeps no state between data frames (a
    /// snapshot and an update mean the same to it, and timestamp order is
    /// the normalizer's), so either path may take any ticker frame.
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        if self.parse_fast(frame, out).is_some() {
            return Ok(());
        }
        self.parse_general(frame, out)
    }
}

impl Kraken {
    /// A ticker `snapshot` or `update` in Kraken's canonical form
    /// (`{"channel":"ticker","type":"..","data":[{..},..]}`, no whitespace
    /// or escapes, flat entries, see [`flat`]) read without a DOM and
    /// without the number rewrite: a number's text is taken as it stands,
    /// which is exactly the text [`NumberQuoter`] would quote. Appends one
    /// event per entry and returns `Some`; `None` (with `out` as it was)
    /// for anything else (acks, heartbeats and status always take the
    /// general path) and for anything [`Kraken::parse_general`] would
    /// refuse; otherwise the very events the general path gives.
    pub fn parse_fast(&self, frame: &[u8], out: &mut Vec<Event>) -> Option<()> {
        let before = out.len();
        let r = if frame.starts_with(br#"{"channel":"trade","#) {
            trade::fast_frame(&self.map, frame, out)
        } else {
            self.fast_frame(frame, out)
        };
        if r.is_none() {
            out.truncate(before);
        }
        r
    }

    fn fast_frame(&self, frame: &[u8], out: &mut Vec<Event>) -> Option<()> {
        let mut c = flat::Cursor::new(frame);
        c.lit(br#"{"channel":"ticker","type":""#)?;
        if c.lit(br#"update""#).is_none() {
            c.lit(br#"snapshot""#)?;
        }
        c.lit(br#","data":["#)?;
        loop {
            out.push(self.fast_entry(&mut c)?);
            if c.lit(b"]").is_some() {
                break;
            }
            c.lit(b",")?;
        }
        c.lit(b"}")?;
        c.at_end().then_some(())
    }

    /// One flat entry of `data`: the fields [`ticker_entry`] reads, the
    /// others skipped (their values still checked), a field read twice
    /// declined. Members in Kraken's order are matched as constant
    /// literals (no key scan); from the first other key on (a snapshot has
    /// no `timestamp`; any order is fine) they are read one by one.
    #[inline]
    fn fast_entry(&self, c: &mut flat::Cursor<'_>) -> Option<Event> {
        let mut f: [Option<flat::Val<'_>>; 7] = [None; 7];
        c.lit(b"{")?;
        let mut first = true;
        'canonical: {
            macro_rules! member {
                ($label:lifetime, $lit:literal, $slot:expr) => {
                    if c.lit($lit).is_none() {
                        break $label;
                    }
                    first = false;
                    let v = c.value()?;
                    if let Some(i) = $slot {
                        f[i] = Some(v);
                    }
                };
            }
            member!('canonical, br#""symbol":"#, Some(0));
            member!('canonical, br#","bid":"#, Some(1));
            member!('canonical, br#","bid_qty":"#, Some(2));
            member!('canonical, br#","ask":"#, Some(3));
            member!('canonical, br#","ask_qty":"#, Some(4));
            member!('canonical, br#","last":"#, Some(5));
            member!('canonical, br#","volume":"#, None::<usize>);
            member!('canonical, br#","vwap":"#, None::<usize>);
            member!('canonical, br#","low":"#, None::<usize>);
            member!('canonical, br#","high":"#, None::<usize>);
            member!('canonical, br#","change":"#, None::<usize>);
            member!('canonical, br#","change_pct":"#, None::<usize>);
            member!('canonical, br#","timestamp":"#, Some(6));
        }
        loop {
            if !first {
                if c.lit(b"}").is_some() {
                    break;
                }
                c.lit(b",")?;
            }
            first = false;
            let k = c.string()?;
            c.lit(b":")?;
            let v = c.value()?;
            let i = match k {
                b"symbol" => 0,
                b"bid" => 1,
                b"bid_qty" => 2,
                b"ask" => 3,
                b"ask_qty" => 4,
                b"last" => 5,
                b"timestamp" => 6,
                _ => continue,
            };
            if f[i].replace(v).is_some() {
                return None;
            }
        }
        let [symbol, bid, bid_qty, ask, ask_qty, last, timestamp] = f;
        let sym = self.map.lookup(symbol?.as_str()?)?;
        // A number's text or a string, as [`number`] takes either.
        let num = |v: Option<flat::Val<'_>>, key| flat::decimal(v?.text()?, key);
        let ts = match timestamp {
            None => None,
            Some(flat::Val::Str(t)) => Some(super::wire::time::rfc3339_ns(t)?),
            Some(_) => return None,
        };
        Some(Event::Quote(Update {
            sym,
            quote: entry_quote(
                (num(bid, "bid")?, num(bid_qty, "bid_qty")?),
                (num(ask, "ask")?, num(ask_qty, "ask_qty")?),
                num(last, "last")?,
                ts,
            ),
            seq: None,
        }))
    }

    /// The general path: the number rewrite, then a simd-json DOM, every
    /// message shape, every error. A frame is used whole or not at all: if
    /// one entry of a multi-pair update is bad, the frame counts as one
    /// reject and none of its entries is published.
    pub fn parse_general(
        &mut self,
        frame: &mut [u8],
        out: &mut Vec<Event>,
    ) -> Result<(), ParseError> {
        let before = out.len();
        let r = self.parse_frame(frame, out);
        if r.is_err() {
            out.truncate(before);
        }
        r
    }
}

/// A reply's `req_id` (a string after the number rewrite), if it has one.
fn req_id(o: &Object) -> Option<u64> {
    json::opt_str(o, "req_id")?.parse().ok()
}

/// An ack (`success: true`) or a refusal. A refusal naming a pair refuses
/// that pair only (noted in `refused`, this connection's), unless it was
/// the last of the configured pairs still standing; one naming none
/// refuses the subscription. A refusal of the trade subscription (`trades`:
/// it carries that request's `req_id`) refuses the pair's trades only: its
/// quotes still stream, so it never refuses the whole subscription.
fn subscribe_reply(
    map: &SymbolMap,
    refused: &mut Vec<String>,
    trades: bool,
    o: &Object,
) -> Result<Event, ParseError> {
    match o.get("success") {
        Some(Value::Static(StaticNode::Bool(true))) => Ok(Event::Subscribed),
        Some(Value::Static(StaticNode::Bool(false))) => {
            let why = json::opt_str(o, "error").unwrap_or("subscription refused");
            let why: String = why.chars().take(MAX_ERROR_TEXT).collect();
            let Some(pair) = json::opt_str(o, "symbol") else {
                return Ok(Event::Rejected(why));
            };
            if trades {
                let shown: String = pair.chars().take(40).collect();
                return Ok(Event::PairRefused(format!("{shown} (trades): {why}")));
            }
            let ours = map.venue_symbols.iter().any(|s| s == pair);
            if ours && !refused.iter().any(|s| s == pair) {
                refused.push(pair.to_string());
            }
            if refused.len() >= map.venue_symbols.len() {
                return Ok(Event::Rejected(format!("{why} (every pair refused)")));
            }
            let shown: String = pair.chars().take(40).collect();
            Ok(Event::PairRefused(format!("{shown}: {why}")))
        }
        Some(_) => Err(ParseError::field("success", "must be a boolean")),
        None => Err(ParseError::field("success", "missing")),
    }
}

/// The connection status: life, and a warning when the engine is not online.
fn status(o: &Object) -> Result<Event, ParseError> {
    let Some(Value::Array(data)) = o.get("data") else {
        return Err(ParseError::field("data", "must be an array"));
    };
    let Some(Value::Object(s)) = data.first() else {
        return Err(ParseError::field("data", "must hold a status object"));
    };
    let system = json::str_field(s, "system")?;
    if system == "online" {
        Ok(Event::Heartbeat)
    } else {
        let shown: String = system.chars().take(40).collect();
        tracing::warn!(system = %shown, "kraken reports its system is not online");
        Ok(Event::Ignored)
    }
}

/// One pair's ticker.
fn ticker_entry(map: &SymbolMap, e: &Object) -> Result<Event, ParseError> {
    let sym = map.get(json::str_field(e, "symbol")?)?;
    let bid = (number(e, "bid")?, number(e, "bid_qty")?);
    let ask = (number(e, "ask")?, number(e, "ask_qty")?);
    let last = number(e, "last")?;
    let ts = match e.get("timestamp") {
        None => None,
        Some(Value::String(ts)) => Some(parse_rfc3339_ns(ts, "timestamp")?),
        Some(_) => {
            return Err(ParseError::field("timestamp", "must be an RFC 3339 string"));
        }
    };
    Ok(Event::Quote(Update {
        sym,
        quote: entry_quote(bid, ask, last, ts),
        seq: None,
    }))
}

/// An entry's quote from its fields (shared by both paths, so they agree).
fn entry_quote(
    (bid, bid_qty): (Decimal, Decimal),
    (ask, ask_qty): (Decimal, Decimal),
    last: Decimal,
    ts: Option<i64>,
) -> Quote {
    let mut quote = Quote::default()
        .with_bid(bid, bid_qty)
        .with_ask(ask, ask_qty);
    // Kraken's ticker has no last trade size: only the price is present.
    quote.last = last;
    quote.present |= field::LAST;
    match ts {
        Some(ts) => quote.with_ts(ts),
        None => quote,
    }
}

/// A JSON number (a string after [`NumberQuoter`]) or a decimal string,
/// parsed exactly.
fn number(o: &Object, key: &'static str) -> Result<Decimal, ParseError> {
    match o.get(key) {
        Some(Value::String(s)) => parse_decimal(s, key),
        Some(_) => Err(ParseError::field(key, "must be a number")),
        None => Err(ParseError::field(key, "missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SymbolId, Symbols};
    use crate::normalize::FeedNormalizer;
    use std::collections::BTreeMap;

    /// A Kraken adapter mapping BTC/USD and ETH/USD (also for `trade.rs`'s
    /// tests).
    pub(super) fn venue() -> Kraken {
        let mut syms = Symbols::new();
        let table: BTreeMap<String, String> = [
            ("BTC/USD".to_string(), "BTC-USD".to_string()),
            ("ETH/USD".to_string(), "ETH-USD".to_string()),
        ]
        .into();
        let map = SymbolMap::build(&table, &mut syms).unwrap();
        Kraken::new(&VenueConfig::default(), map)
    }

    pub(super) fn parse(v: &mut Kraken, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse(&mut b, &mut out).map(|_| out)
    }

    const SNAPSHOT: &str = r#"{"channel":"ticker","type":"snapshot","data":[{"symbol":"BTC/USD","bid":97000.1,"bid_qty":0.50000000,"ask":97000.2,"ask_qty":1.25,"last":97000.2,"volume":1234.5678,"vwap":96950.3,"low":96000.0,"high":97500.0,"change":120.5,"change_pct":0.12}]}"#;

    /// A ticker frame with `field` replaced by `value` (raw JSON text).
    fn ticker_with(field: &str, value: &str) -> String {
        let raw = |k: &str| match k {
            "bid" => "97000.1",
            "ask" => "97000.2",
            "last" => "97000.2",
            _ => "1.5",
        };
        let mut text =
            String::from(r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD""#);
        for k in ["bid", "bid_qty", "ask", "ask_qty", "last"] {
            if k == field {
                if !value.is_empty() {
                    text.push_str(&format!(r#","{k}":{value}"#));
                }
            } else {
                text.push_str(&format!(r#","{k}":{}"#, raw(k)));
            }
        }
        text.push_str("}]}");
        text
    }

    #[test]
    fn subscribe_names_the_ticker_and_trades_of_every_pair_with_increasing_req_ids() {
        let mut v = venue();
        let json = |m: &String| serde_json::from_str::<serde_json::Value>(m).unwrap();
        let msgs = v.on_connect();
        assert_eq!(msgs.len(), 2, "one request per channel");
        let (s, t) = (json(&msgs[0]), json(&msgs[1]));
        assert_eq!(s["method"], "subscribe");
        assert_eq!(s["params"]["channel"], "ticker");
        assert_eq!(s["params"]["event_trigger"], "bbo");
        assert_eq!(
            s["params"]["symbol"],
            serde_json::json!(["BTC/USD", "ETH/USD"])
        );
        assert_eq!(s["req_id"], 1);
        assert_eq!(
            t,
            serde_json::json!({"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","ETH/USD"],"snapshot":false},"req_id":2})
        );
        let msgs = v.on_connect();
        assert_eq!(
            (
                json(&msgs[0])["req_id"].clone(),
                json(&msgs[1])["req_id"].clone()
            ),
            (3.into(), 4.into())
        );
        assert_eq!(v.url(), DEFAULT_URL);
    }

    #[test]
    fn ticker_numbers_keep_their_exact_text() {
        let mut v = venue();
        let ev = parse(&mut v, SNAPSHOT).unwrap();
        assert_eq!(ev.len(), 1);
        let Event::Quote(Update { sym, quote, seq }) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(*sym, SymbolId(0));
        assert_eq!(quote.bid.to_string(), "97000.1");
        assert_eq!(quote.bid_size.to_string(), "0.50000000");
        assert_eq!(quote.ask.to_string(), "97000.2");
        assert_eq!(quote.ask_size.to_string(), "1.25");
        assert_eq!(quote.last.to_string(), "97000.2");
        assert!(
            quote.has(field::LAST) && !quote.has(field::LAST_SIZE),
            "no last size on Kraken"
        );
        assert!(!quote.has(field::TS));
        assert_eq!(*seq, None);
        // Several pairs in one update, a timestamp, and strings accepted too.
        let ev = parse(
            &mut v,
            r#"{"channel":"ticker","type":"update","data":[
                {"symbol":"ETH/USD","bid":"3450.12","bid_qty":12.50000000,"ask":3450.13,"ask_qty":3.1,"last":3450.13,"timestamp":"2023-09-25T09:04:31.742599Z"},
                {"symbol":"BTC/USD","bid":97000.0,"bid_qty":2.00000000,"ask":97000.1,"ask_qty":0.1,"last":97000.1}]}"#,
        )
        .unwrap();
        assert_eq!(ev.len(), 2);
        let Event::Quote(Update { sym, quote, .. }) = &ev[0] else {
            panic!()
        };
        assert_eq!(*sym, SymbolId(1));
        assert_eq!(quote.bid.to_string(), "3450.12");
        assert_eq!(quote.bid_size.to_string(), "12.50000000");
        assert_eq!(quote.ts, 1_695_632_671_742_599_000);
        let Event::Quote(Update { sym, quote, .. }) = &ev[1] else {
            panic!()
        };
        assert_eq!(*sym, SymbolId(0));
        assert_eq!(quote.bid.to_string(), "97000.0");
    }

    /// A refused pair is that pair's alone until every configured pair is
    /// refused; a new connection starts over.
    #[test]
    fn a_refused_pair_is_one_pair_until_all_are() {
        let mut v = venue();
        v.subscribe_requests();
        let refuse = |pair: &str| {
            format!(
                r#"{{"error":"Currency pair not supported {pair}","method":"subscribe","success":false,"symbol":"{pair}","req_id":1}}"#
            )
        };
        let pair = |ev: &[Event]| matches!(ev, [Event::PairRefused(_)]);
        let all =
            |ev: &[Event]| matches!(ev, [Event::Rejected(w)] if w.contains("every pair refused"));
        assert!(pair(&parse(&mut v, &refuse("BTC/USD")).unwrap()));
        assert!(
            pair(&parse(&mut v, &refuse("BTC/USD")).unwrap()),
            "counted once"
        );
        assert!(
            pair(&parse(&mut v, &refuse("XYZ/USD")).unwrap()),
            "not ours"
        );
        assert!(all(&parse(&mut v, &refuse("ETH/USD")).unwrap()));
        v.subscribe_requests();
        // The trade request's refusals (its req_id, 4 now) refuse trades
        // only: never the whole subscription.
        let refuse_trades = |pair: &str| refuse(pair).replace(r#""req_id":1"#, r#""req_id":4"#);
        for p in ["BTC/USD", "ETH/USD", "BTC/USD"] {
            let ev = parse(&mut v, &refuse_trades(p)).unwrap();
            assert!(
                matches!(&ev[..], [Event::PairRefused(w)] if w.starts_with(&format!("{p} (trades): "))),
                "{ev:?}"
            );
        }
        assert!(
            pair(&parse(&mut v, &refuse("ETH/USD")).unwrap()),
            "a new connection"
        );
    }

    #[test]
    fn acks_refusals_and_liveness() {
        let mut v = venue();
        let cases: &[(&str, Event)] = &[
            (
                r#"{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}"#,
                Event::Subscribed,
            ),
            (
                r#"{"method":"subscribe","result":{"channel":"trade","snapshot":false,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":2}"#,
                Event::Subscribed,
            ),
            (
                r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}"#,
                Event::PairRefused("XYZ/USD: Currency pair not supported XYZ/USD".into()),
            ),
            (
                r#"{"method":"subscribe","success":false,"req_id":1}"#,
                Event::Rejected("subscription refused".into()),
            ),
            (r#"{"channel":"heartbeat"}"#, Event::Heartbeat),
            (
                r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":123,"system":"online","version":"2.0.0"}]}"#,
                Event::Heartbeat,
            ),
            (
                r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":123,"system":"maintenance","version":"2.0.0"}]}"#,
                Event::Ignored,
            ),
            (
                r#"{"method":"pong","req_id":7,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#,
                Event::Heartbeat,
            ),
            (
                r#"{"method":"unsubscribe","success":true,"result":{"channel":"ticker","symbol":"BTC/USD"}}"#,
                Event::Ignored,
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[[97000.1,0.5]],"asks":[]}]}"#,
                Event::Ignored,
            ),
        ];
        for (input, want) in cases {
            let got = parse(&mut v, input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, vec![want.clone()], "{input}");
        }
        // An empty update says nothing.
        assert_eq!(
            parse(&mut v, r#"{"channel":"ticker","type":"update","data":[]}"#).unwrap(),
            vec![]
        );
    }

    fn parse_general(v: &mut Kraken, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse_general(&mut b, &mut out).map(|_| out)
    }

    fn parse_fast(v: &Kraken, s: &str) -> Option<Vec<Event>> {
        let mut out = Vec::new();
        v.parse_fast(s.as_bytes(), &mut out).map(|_| out)
    }

    /// Every decimal of a quote down to its bits (`==` ignores the scale).
    fn bits(evs: &[Event]) -> Vec<[[u8; 16]; 6]> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Quote(Update { quote: q, .. }) => Some(
                    [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size]
                        .map(|d| d.serialize()),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fast_path_takes_canonical_frames_only() {
        let mut v = venue();
        let mut taken: Vec<String> = vec![
            SNAPSHOT.into(),
            ticker_with("bid", "97000.1"),
            // Strings for numbers, `-0`, a timestamp, two pairs, other key
            // order and extra scalar keys.
            ticker_with("bid", r#""97000.10""#),
            ticker_with("bid_qty", "-0"),
            r#"{"channel":"ticker","type":"update","data":[{"timestamp":"2023-09-25T09:04:31.742599Z","last":3450.13,"ask_qty":3.1,"ask":3450.13,"bid_qty":12.50000000,"bid":3450.12,"symbol":"ETH/USD","x":null,"y":true},{"symbol":"BTC/USD","bid":97000.0,"bid_qty":2.00000000,"ask":97000.1,"ask_qty":0.1,"last":97000.1}]}"#.into(),
        ];
        taken.extend(
            sample(include_str!("../../../feeds/kraken/session.jsonl"))
                .into_iter()
                .map(|(_, f)| f)
                .filter(|f| f.starts_with(r#"{"channel":"ticker""#)),
        );
        assert_eq!(taken.len(), 9);
        for f in &taken {
            let fast = parse_fast(&v, f).expect(f);
            let general = parse_general(&mut v, f).unwrap();
            assert_eq!(fast, general, "{f}");
            assert_eq!(bits(&fast), bits(&general), "{f}");
        }
        // Number text kept byte for byte.
        let fast = parse_fast(&v, SNAPSHOT).unwrap();
        let [Event::Quote(Update {
            quote, seq: None, ..
        })] = &fast[..]
        else {
            panic!("{fast:?}")
        };
        assert_eq!(quote.bid_size.to_string(), "0.50000000");
        assert_eq!(quote.bid.to_string(), "97000.1");
        let declined: Vec<String> = vec![
            // Not ticker data: acks, liveness, other channels.
            r#"{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true,"req_id":1}"#.into(),
            r#"{"channel":"heartbeat"}"#.into(),
            r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":123,"system":"online","version":"2.0.0"}]}"#.into(),
            r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}"#.into(),
            r#"{"channel":"ticker","type":"trade","data":[]}"#.into(),
            r#"{"channel":"ticker","type":"updates","data":[]}"#.into(),
            r#"{"channel":"ticker","type":"update","data":[]}"#.into(),
            // Whitespace, an escape, a duplicate key, trailing bytes, a
            // nested value, an exponent, a leading zero, more than 18
            // digits, other top-level order.
            SNAPSHOT.replace(r#""bid":"#, r#""bid": "#),
            SNAPSHOT.replace("BTC/USD", r"BTC\/USD"),
            SNAPSHOT.replace(r#""last":"#, r#""bid":1,"last":"#),
            format!("{SNAPSHOT} "),
            SNAPSHOT.replace(r#""vwap":96950.3"#, r#""vwap":[96950.3]"#),
            SNAPSHOT.replace(r#""vwap":96950.3"#, r#""vwap":9.6e4"#),
            ticker_with("bid", "01"),
            ticker_with("bid", "1234567890123456789"),
            ticker_with("bid", "0.1234567890123456789"),
            SNAPSHOT.replace(r#""type":"snapshot","#, "").replace(r#""channel":"ticker","#, r#""type":"snapshot","channel":"ticker","#),
            // What the general path refuses (one bad entry refuses all).
            ticker_with("bid", r#""NaN""#),
            ticker_with("bid", "null"),
            ticker_with("bid", "true"),
            ticker_with("ask_qty", ""),
            ticker_with("last", ""),
            SNAPSHOT.replace("BTC/USD", "DOGE/USD"),
            SNAPSHOT.replace(r#""symbol":"BTC/USD""#, r#""symbol":123"#),
            SNAPSHOT.replace(r#""change_pct":0.12"#, r#""change_pct":0.12,"timestamp":"yesterday""#),
            SNAPSHOT.replace(r#""change_pct":0.12"#, r#""change_pct":0.12,"timestamp":1695632671"#),
            SNAPSHOT.replace(r#""change_pct":0.12"#, r#""change_pct":0.12,"timestamp":"9999-12-31T23:59:59Z""#),
            SNAPSHOT.replace("}]}", r#"},{"symbol":"BTC/USD","bid":"NaN"}]}"#),
        ];
        for f in &declined {
            let mut out = vec![Event::Heartbeat];
            assert!(v.parse_fast(f.as_bytes(), &mut out).is_none(), "{f}");
            assert_eq!(out, vec![Event::Heartbeat], "declined leaves `out` alone");
            // And `parse` still gives the general path's verdict.
            assert_eq!(parse(&mut v, f), parse_general(&mut v, f), "{f}");
        }
    }

    /// Every case of feeds/kraken/malformed.jsonl that the parser itself
    /// refuses (the rest are the normalizer's, see tests/venue_kraken.rs),
    /// and more.
    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let mut v = venue();
        let cases: Vec<(String, &str)> = vec![
            // truncated JSON, in a number, a string and between tokens
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":97000.1"#.into(), "malformed"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/U"#.into(), "malformed"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":97000"#.into(), "malformed"),
            (r#"{"channel":"heartbeat""#.into(), "malformed"),
            ("\u{0}\u{1}garbage".into(), "malformed"),
            ("not json".into(), "malformed"),
            ("".into(), "malformed"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":01}]}"#.into(), "malformed"),
            (r#"{1:2}"#.into(), "malformed"),
            (r#"{"a":1,2:3}"#.into(), "malformed"),
            ("[1,2]".into(), "unexpected"),
            ("97000.1".into(), "unexpected"),
            (r#"{"req_id":1}"#.into(), "unexpected"),
            (r#"{"channel":"ticker","type":"trade","data":[]}"#.into(), "unexpected"),
            (r#"{"channel":null}"#.into(), "bad_field"),
            (r#"{"method":true}"#.into(), "bad_field"),
            (r#"{"method":"subscribe","req_id":1}"#.into(), "bad_field"),
            (r#"{"channel":"status","type":"update","data":{}}"#.into(), "bad_field"),
            (r#"{"channel":"ticker","data":[]}"#.into(), "bad_field"),
            // price as a string that is not a decimal
            (ticker_with("bid", r#""NaN""#), "bad_field"),
            (ticker_with("bid", r#""Infinity""#), "bad_field"),
            (ticker_with("bid", r#"" 1""#), "bad_field"),
            // number with exponent
            (ticker_with("bid", "9.7e4"), "bad_field"),
            (ticker_with("bid_qty", "1e-5"), "bad_field"),
            (ticker_with("ask", "1E+2"), "bad_field"),
            // huge number
            (ticker_with("bid", "123456789012345678901234567890.5"), "bad_field"),
            (ticker_with("ask_qty", "0.000000000000000000000000000000001"), "bad_field"),
            (ticker_with("bid", "true"), "bad_field"),
            (ticker_with("bid", "null"), "bad_field"),
            (ticker_with("ask", r#"{"v":1}"#), "bad_field"),
            (ticker_with("last", "[97000.2]"), "bad_field"),
            (ticker_with("ask_qty", ""), "bad_field"),
            (ticker_with("last", ""), "bad_field"),
            // missing symbol
            (r#"{"channel":"ticker","type":"update","data":[{"bid":97000.1,"bid_qty":1,"ask":97000.2,"ask_qty":1,"last":97000.2}]}"#.into(), "bad_field"),
            // unmapped symbol (a number symbol reads as its text)
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"DOGE/USD","bid":0.38,"bid_qty":1,"ask":0.39,"ask_qty":1,"last":0.39}]}"#.into(), "unmapped_symbol"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":123,"bid":0.38,"bid_qty":1,"ask":0.39,"ask_qty":1,"last":0.39}]}"#.into(), "unmapped_symbol"),
            // data not an array
            (r#"{"channel":"ticker","type":"update","data":{"symbol":"BTC/USD","bid":97000.1,"bid_qty":1,"ask":97000.2,"ask_qty":1,"last":97000.2}}"#.into(), "bad_field"),
            (r#"{"channel":"ticker","type":"update","data":[97000.1]}"#.into(), "bad_field"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":97000.1,"bid_qty":1,"ask":97000.2,"ask_qty":1,"last":97000.2,"timestamp":"yesterday"}]}"#.into(), "bad_field"),
            (r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":97000.1,"bid_qty":1,"ask":97000.2,"ask_qty":1,"last":97000.2,"timestamp":1695632671}]}"#.into(), "bad_field"),
        ];
        for (input, reason) in &cases {
            let e = parse(&mut v, input).expect_err(input);
            assert_eq!(e.reason(), *reason, "{input}: {e}");
        }
        // The normalizer's cases parse; it refuses them (tests/venue_kraken.rs).
        for (f, value) in [("ask", "96000.0"), ("bid_qty", "-1.0"), ("bid", "0")] {
            assert!(parse(&mut v, &ticker_with(f, value)).is_ok(), "{f}={value}");
        }
        assert!(parse(&mut v, &ticker_with("bid", r#""97000.1""#)).is_ok());
    }

    /// `(case name, frame)` of a recorded sample file, the name being the
    /// `# ` comment before the frame.
    fn sample(text: &str) -> Vec<(String, String)> {
        let mut name = String::new();
        let mut out = Vec::new();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(c) = l.strip_prefix('#') {
                name = c.trim().to_string();
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            out.push((name.clone(), v["frame"].as_str().unwrap().to_string()));
        }
        out
    }

    /// The verdict on one frame: the parser's reject reason, the
    /// normalizer's, or `ok`.
    fn verdict(v: &mut Kraken, norm: &mut FeedNormalizer, frame: &str) -> String {
        match parse(v, frame) {
            Err(e) => e.reason().to_string(),
            Ok(events) => {
                for ev in events {
                    if let Event::Quote(Update { sym, quote, seq }) = ev {
                        if let Err(r) = norm.apply(Update { sym, quote, seq }) {
                            return r.as_str().to_string();
                        }
                    }
                }
                "ok".to_string()
            }
        }
    }

    /// feeds/kraken/*.jsonl through the parser and a real normalizer: the
    /// session is accepted whole, and every malformed case is refused for
    /// its own reason.
    #[test]
    fn sample_files() {
        use crate::metrics::Metrics;
        use crate::normalize::NormalizeConfig;
        use crate::normalize::Normalizer;
        use crate::slots::SlotTable;
        use std::sync::Arc;
        let slots = Arc::new(SlotTable::new(2, 1));
        let m = Arc::new(Metrics::new());
        let mut norm = FeedNormalizer::new(
            Normalizer::new("kraken", slots.clone(), &m),
            NormalizeConfig::default(),
        );
        let mut v = venue();
        let session = sample(include_str!("../../../feeds/kraken/session.jsonl"));
        let mut quotes = 0;
        for (_, frame) in &session {
            let events = parse(&mut v, frame).unwrap_or_else(|e| panic!("{frame}: {e}"));
            quotes += events
                .iter()
                .filter(|e| matches!(e, Event::Quote(Update { .. })))
                .count();
            assert_eq!(verdict(&mut venue(), &mut norm, frame), "ok", "{frame}");
        }
        assert_eq!(quotes, 5);
        let (btc, _) = slots.read(SymbolId(0)).unwrap();
        assert_eq!(
            [btc.bid, btc.bid_size, btc.ask, btc.ask_size, btc.last].map(|d| d.to_string()),
            ["97000.1", "0.50000000", "97000.2", "1.25000000", "97000.2"]
        );
        let want: &[(&str, &str)] = &[
            ("truncated JSON", "malformed"),
            ("not JSON", "malformed"),
            ("not an object", "unexpected"),
            ("price as a string \"NaN\"", "bad_field"),
            ("number with exponent", "bad_field"),
            ("huge number", "bad_field"),
            ("missing symbol", "bad_field"),
            ("unmapped symbol", "unmapped_symbol"),
            ("data not an array", "bad_field"),
            ("bad timestamp", "bad_field"),
            ("crossed quote (normalizer)", "crossed"),
            ("negative qty (normalizer)", "negative_size"),
            ("zero price (normalizer)", "non_positive_price"),
            (
                "timestamp going backwards after the session (normalizer)",
                "out_of_order",
            ),
        ];
        let got: Vec<(String, String)> =
            sample(include_str!("../../../feeds/kraken/malformed.jsonl"))
                .into_iter()
                .map(|(name, frame)| (name, verdict(&mut v, &mut norm, &frame)))
                .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_bad_entry_refuses_the_whole_frame() {
        let mut v = venue();
        let mut b = br#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1,"bid_qty":1,"ask":2,"ask_qty":1,"last":2},{"symbol":"BTC/USD","bid":"NaN"}]}"#.to_vec();
        let mut out = vec![Event::Heartbeat];
        let e = v.parse(&mut b, &mut out).unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        assert_eq!(
            out,
            vec![Event::Heartbeat],
            "earlier events are kept, none of the frame's"
        );
    }
}
