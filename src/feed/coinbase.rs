//! Coinbase Exchange public WebSocket feed: the `ticker` channel (best
//! bid/ask and the last trade in one message) and the `heartbeat` channel,
//! over one connection to `wss://ws-feed.exchange.coinbase.com`.
//!
//! Coinbase closes a connection that has not subscribed within 5 s, so the
//! adapter sends its one `subscribe` as soon as the socket is open and
//! expects a `subscriptions` message listing the `ticker` channel. Prices and
//! sizes are JSON strings and keep their exact text.
//!
//! Subscribe request and acknowledgement:
//! ```json
//! {"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["ticker","heartbeat"]}
//! {"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}
//! ```
//! Ticker and heartbeat, as documented:
//! ```json
//! {"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}
//! {"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}
//! ```
//! Errors: `{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}`.
//!
//! Sequence numbers count every message of a product across all channels
//! (heartbeats included), so consecutive tickers skip numbers. A gap means
//! nothing to a latest-value gateway; only a repeated or older sequence is
//! refused (by the normalizer). Heartbeat sequences are not used for
//! ordering: they only prove the connection is alive.
//!
//! Coinbase adds message types over time and tells clients to ignore the
//! ones they do not support; so does this adapter (`status`, `snapshot`,
//! anything new).
//!
//! # Trades
//!
//! Coinbase sends one ticker per match (cascades batched), so a ticker that
//! carries `trade_id` and `last_size` is an [`Event::Trade`]: its `price`
//! and `last_size` are the trade's price and size, `time` its time,
//! `trade_id` its id, and `side` its aggressor side (see [`side_of`]), and
//! the same update still carries the ticker's best bid and ask for the
//! book. The first ticker after subscribing has no trade details (no
//! `trade_id`, `last_size`, `side` or `time`): that one stays a plain
//! [`Event::Quote`]. Trades are ordered by the ticker's `sequence`, like the
//! ticker itself.

use super::wire::json::{self, Object, Value};
use super::wire::{flat, parse_decimal, parse_rfc3339_ns};
use super::{Event, ParseError, SymbolMap, Venue, VenueConfig, VenueKind};
use crate::model::{field, Quote};
use crate::normalize::Update;
use crate::trades::{Side, TradeInfo};
use rust_decimal::Decimal;

pub const DEFAULT_URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// The only sequence stream: tickers carry the product's sequence.
const TICKER: u8 = 0;

/// Longest venue error text kept for the log.
const MAX_ERROR_TEXT: usize = 200;

pub struct Coinbase {
    url: String,
    map: SymbolMap,
}

impl Coinbase {
    pub fn new(cfg: &VenueConfig, map: SymbolMap) -> Self {
        let url = cfg.url_or(DEFAULT_URL);
        Coinbase { url, map }
    }

    /// The `subscribe` request for every mapped product, on both channels.
    pub fn subscribe_request(&self) -> String {
        serde_json::json!({
            "type": "subscribe",
            "product_ids": self.map.venue_symbols,
            "channels": ["ticker", "heartbeat"],
        })
        .to_string()
    }

    /// A `ticker` message. Required: `product_id`, `sequence` and `price`
    /// (without them it says nothing usable). Optional: `best_bid`,
    /// `best_ask` and their sizes (older feeds send no sizes), `last_size`
    /// and `time` (the first ticker after subscribing has neither). An
    /// optional field that is present must be valid; only the fields
    /// present are set, so the normalizer keeps the others.
    fn ticker(&self, o: &Object, out: &mut Vec<Event>) -> Result<(), ParseError> {
        let sym = self.map.get(json::str_field(o, "product_id")?)?;
        let sequence = json::u64_field(o, "sequence")?;
        let price = json::dec_field(o, "price")?;
        let last_size = opt_dec(o, "last_size")?;
        let bid = level(o, "best_bid", "best_bid_size")?;
        let ask = level(o, "best_ask", "best_ask_size")?;
        let ts = match opt_text(o, "time")? {
            Some(t) => Some(parse_rfc3339_ns(t, "time")?),
            None => None,
        };
        let trade_id = match o.get("trade_id") {
            None | Some(Value::Static(simd_json::StaticNode::Null)) => None,
            Some(_) => Some(json::u64_field(o, "trade_id")?),
        };
        let side = opt_text(o, "side")?.and_then(side_of);
        out.push(ticker_event(
            Update {
                sym,
                quote: ticker_quote(price, last_size, bid, ask, ts),
                seq: Some((TICKER, sequence)),
            },
            trade_id,
            side,
        ));
        Ok(())
    }

    /// A `ticker` message in Coinbase's canonical form (`{"type":"ticker",`
    /// first, no whitespace or escapes, flat, see [`flat`]) read without a
    /// DOM: its fields in the order Coinbase sends them, or in any order
    /// (a ticker without `time` or `last_size`). `None` for anything else
    /// (other message types included: acks, heartbeats and errors always
    /// take the general path) and for anything [`Coinbase::parse_general`]
    /// would refuse; otherwise the very event the general path gives.
    pub fn parse_fast(&self, frame: &[u8]) -> Option<Event> {
        let mut c = flat::Cursor::new(frame);
        c.lit(br#"{"type":"ticker""#)?;
        // `type` is read: a second one declines.
        let mut f: [Option<flat::Val<'_>>; 12] = [None; 12];
        f[9] = Some(flat::Val::Str(b"ticker"));
        // Decimals read during the scan (their text is in `f` as well).
        let mut dec: [Option<Decimal>; 9] = [None; 9];
        // Members in Coinbase's order are matched as constant literals (no
        // key scan); from the first other key on (the first ticker after
        // subscribing has no `time`; any order is fine) they are read one
        // by one.
        'canonical: {
            macro_rules! member {
                ($label:lifetime, $lit:literal, $slot:expr) => {
                    if c.lit($lit).is_none() {
                        break $label;
                    }
                    let v = c.value()?;
                    if let Some(i) = $slot {
                        f[i] = Some(v);
                    }
                };
            }
            // A member holding a decimal: read as one when it is a plain
            // decimal string, else as any value (checked later).
            macro_rules! decimal {
                ($label:lifetime, $lit:literal, $i:expr) => {
                    if c.lit($lit).is_none() {
                        break $label;
                    }
                    match c.decimal_str() {
                        Some((d, text)) => {
                            f[$i] = Some(flat::Val::Str(text));
                            dec[$i] = Some(d);
                        }
                        None => f[$i] = Some(c.value()?),
                    }
                };
            }
            member!('canonical, br#","sequence":"#, Some(0));
            member!('canonical, br#","product_id":"#, Some(1));
            decimal!('canonical, br#","price":"#, 2);
            member!('canonical, br#","open_24h":"#, None::<usize>);
            member!('canonical, br#","volume_24h":"#, None::<usize>);
            member!('canonical, br#","low_24h":"#, None::<usize>);
            member!('canonical, br#","high_24h":"#, None::<usize>);
            member!('canonical, br#","volume_30d":"#, None::<usize>);
            decimal!('canonical, br#","best_bid":"#, 3);
            decimal!('canonical, br#","best_bid_size":"#, 4);
            decimal!('canonical, br#","best_ask":"#, 5);
            decimal!('canonical, br#","best_ask_size":"#, 6);
            member!('canonical, br#","side":"#, Some(10));
            member!('canonical, br#","time":"#, Some(7));
            member!('canonical, br#","trade_id":"#, Some(11));
            decimal!('canonical, br#","last_size":"#, 8);
        }
        while c.lit(b"}").is_none() {
            c.lit(b",")?;
            let k = c.string()?;
            c.lit(b":")?;
            let v = c.value()?;
            let i = match k {
                b"sequence" => 0,
                b"product_id" => 1,
                b"price" => 2,
                b"best_bid" => 3,
                b"best_bid_size" => 4,
                b"best_ask" => 5,
                b"best_ask_size" => 6,
                b"time" => 7,
                b"last_size" => 8,
                b"type" => 9,
                b"side" => 10,
                b"trade_id" => 11,
                _ => continue,
            };
            if f[i].replace(v).is_some() {
                return None;
            }
        }
        if !c.at_end() {
            return None;
        }
        let [sequence, product_id, price, bid, bid_size, ask, ask_size, time, last_size, _, side, trade_id] =
            f;
        let sym = self.map.lookup(product_id?.as_str()?)?;
        let sequence = sequence?.as_u64()?;
        let price = match dec[2] {
            Some(d) => d,
            None => flat::decimal(price?.as_str()?, "price")?,
        };
        let last_size = fast_opt_dec((last_size, dec[8]), "last_size")?;
        let bid = fast_level(
            ((bid, dec[3]), "best_bid"),
            ((bid_size, dec[4]), "best_bid_size"),
        )?;
        let ask = fast_level(
            ((ask, dec[5]), "best_ask"),
            ((ask_size, dec[6]), "best_ask_size"),
        )?;
        let ts = match fast_opt_text(time)? {
            Some(t) => Some(super::wire::time::rfc3339_ns(t)?),
            None => None,
        };
        let trade_id = match trade_id {
            None | Some(flat::Val::Null) => None,
            Some(v) => Some(v.as_u64()?),
        };
        let side = match fast_opt_text(side)? {
            Some(s) => side_of(std::str::from_utf8(s).ok()?),
            None => None,
        };
        Some(ticker_event(
            Update {
                sym,
                quote: ticker_quote(price, last_size, bid, ask, ts),
                seq: Some((TICKER, sequence)),
            },
            trade_id,
            side,
        ))
    }

    /// The general path: simd-json DOM, every message type, every error.
    pub fn parse_general(
        &mut self,
        frame: &mut [u8],
        out: &mut Vec<Event>,
    ) -> Result<(), ParseError> {
        let v = json::parse(frame)?;
        let o = json::object(&v)?;
        let ty = match o.get("type") {
            Some(Value::String(t)) => &**t,
            Some(_) => return Err(ParseError::Unexpected("`type` is not a string".into())),
            None => return Err(ParseError::Unexpected("message without a `type`".into())),
        };
        match ty {
            "ticker" => self.ticker(o, out)?,
            "heartbeat" => out.push(Event::Heartbeat),
            // Sent after every (un)subscribe with the full current set; only
            // one naming the ticker channel acknowledges ours.
            "subscriptions" if lists_channel(o, "ticker")? => out.push(Event::Subscribed),
            "error" => {
                // We only ever send `subscribe`, so any error refuses it.
                let msg = json::opt_str(o, "message").unwrap_or("error");
                let why = match json::opt_str(o, "reason") {
                    Some(r) if !r.is_empty() => format!("{msg}: {r}"),
                    _ => msg.to_string(),
                };
                out.push(Event::Rejected(shorten(&why)));
            }
            _ => out.push(Event::Ignored),
        }
        Ok(())
    }
}

/// The taker's side from a ticker's `side`. Coinbase's ticker documents
/// `side` as the taker's side (its example reads `"side": "buy" // taker
/// side`), unlike the `matches` channel, whose `side` is the maker's; so
/// `buy` means a buyer took liquidity and is [`Side::Buy`]. Any other text
/// says nothing.
fn side_of(side: &str) -> Option<Side> {
    match side {
        "buy" => Some(Side::Buy),
        "sell" => Some(Side::Sell),
        _ => None,
    }
}

/// A ticker's event (shared by both paths): a trade when it carries one
/// (`trade_id` and `last_size`; the first ticker after subscribing has
/// neither), else a quote.
fn ticker_event(update: Update, trade_id: Option<u64>, side: Option<Side>) -> Event {
    match trade_id {
        Some(id) if update.quote.has(field::LAST_SIZE) => Event::Trade(
            update,
            TradeInfo {
                side,
                trade_id: Some(id),
            },
        ),
        _ => Event::Quote(update),
    }
}

/// A ticker's quote from its fields (shared by both paths, so they agree):
/// only the fields sent are set, so the normalizer keeps the others.
fn ticker_quote(
    price: Decimal,
    last_size: Option<Decimal>,
    (bid, bid_size): (Option<Decimal>, Option<Decimal>),
    (ask, ask_size): (Option<Decimal>, Option<Decimal>),
    ts: Option<i64>,
) -> Quote {
    let mut q = Quote {
        last: price,
        present: field::LAST,
        ..Quote::default()
    };
    // Field by field rather than `with_bid`/`with_ask`, which would mark a
    // size present that Coinbase did not send.
    for (value, slot, bit) in [
        (last_size, &mut q.last_size, field::LAST_SIZE),
        (bid, &mut q.bid, field::BID),
        (bid_size, &mut q.bid_size, field::BID_SIZE),
        (ask, &mut q.ask, field::ASK),
        (ask_size, &mut q.ask_size, field::ASK_SIZE),
    ] {
        if let Some(v) = value {
            *slot = v;
            q.present |= bit;
        }
    }
    match ts {
        Some(ts) => q.with_ts(ts),
        None => q,
    }
}

/// [`opt_text`] on a scanned value: `Some(None)` when absent or `null`,
/// `None` (decline) when neither that nor a string.
fn fast_opt_text(v: Option<flat::Val<'_>>) -> Option<Option<&[u8]>> {
    match v {
        None | Some(flat::Val::Null) => Some(None),
        Some(flat::Val::Str(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// [`opt_dec`] on a scanned value (with its decimal when the scan read
/// one); `None` (decline) where it errs.
fn fast_opt_dec((v, read): Scanned<'_>, key: &'static str) -> Option<Option<Decimal>> {
    if read.is_some() {
        return Some(read);
    }
    match fast_opt_text(v)? {
        Some(t) => Some(Some(flat::decimal(t, key)?)),
        None => Some(None),
    }
}

/// [`level`] on scanned values; `None` (decline) where it errs.
type Scanned<'a> = (Option<flat::Val<'a>>, Option<Decimal>);

fn fast_level(
    (price, price_key): (Scanned<'_>, &'static str),
    (size, size_key): (Scanned<'_>, &'static str),
) -> Option<(Option<Decimal>, Option<Decimal>)> {
    let p = fast_opt_dec(price, price_key)?;
    let s = fast_opt_dec(size, size_key)?;
    if p.is_none() && s.is_some() {
        return None;
    }
    Some((p, s))
}

/// An optional string field: absent or `null` is `None`; any other
/// non-string is an error.
fn opt_text<'a>(o: &'a Object, key: &'static str) -> Result<Option<&'a str>, ParseError> {
    match o.get(key) {
        None | Some(Value::Static(simd_json::StaticNode::Null)) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::field(key, "must be a string")),
    }
}

/// An optional decimal sent as a string, parsed exactly when present.
fn opt_dec(o: &Object, key: &'static str) -> Result<Option<Decimal>, ParseError> {
    opt_text(o, key)?.map(|t| parse_decimal(t, key)).transpose()
}

/// One side of the book: its price and size, each optional, but a size
/// without its price is refused (it would pair with a stale price).
fn level(
    o: &Object,
    price_key: &'static str,
    size_key: &'static str,
) -> Result<(Option<Decimal>, Option<Decimal>), ParseError> {
    let price = opt_dec(o, price_key)?;
    let size = opt_dec(o, size_key)?;
    if price.is_none() && size.is_some() {
        return Err(ParseError::field(
            size_key,
            format!("without `{price_key}`"),
        ));
    }
    Ok((price, size))
}

/// Whether a `subscriptions` message lists `name`. Channels are objects
/// (`{"name":"ticker","product_ids":[..]}`) or, in older replies, names.
fn lists_channel(o: &Object, name: &str) -> Result<bool, ParseError> {
    let channels = match o.get("channels") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ParseError::field("channels", "must be a list")),
        None => return Err(ParseError::field("channels", "missing")),
    };
    Ok(channels.iter().any(|c| match c {
        Value::String(s) => s == name,
        Value::Object(c) => json::opt_str(c, "name") == Some(name),
        _ => false,
    }))
}

fn shorten(text: &str) -> String {
    text.chars().take(MAX_ERROR_TEXT).collect()
}

impl Venue for Coinbase {
    fn kind(&self) -> VenueKind {
        VenueKind::Coinbase
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self) -> Vec<String> {
        vec![self.subscribe_request()]
    }

    /// The fast path first ([`Coinbase::parse_fast`], tickers only); any
    /// frame it does not take goes through the general path, which owns
    /// every error. The adapter keeps no state between frames (sequence
    /// order is the normalizer's), so either path may take any ticker.
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        if let Some(ev) = self.parse_fast(frame) {
            out.push(ev);
            return Ok(());
        }
        self.parse_general(frame, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::{SymbolId, Symbols};
    use crate::normalize::NormalizeConfig;
    use crate::normalize::{FeedNormalizer, Normalizer};
    use crate::slots::SlotTable;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn venue() -> Coinbase {
        let mut syms = Symbols::new();
        let table: BTreeMap<String, String> = [
            ("BTC-USD".to_string(), "BTC-USD".to_string()),
            ("ETH-USD".to_string(), "ETH-USD".to_string()),
        ]
        .into();
        let map = SymbolMap::build(&table, &mut syms).unwrap();
        Coinbase::new(&VenueConfig::default(), map)
    }

    fn parse(v: &mut Coinbase, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse(&mut b, &mut out).map(|_| out)
    }

    /// The one update of `ev`, a quote or a trade.
    fn quote(ev: &[Event]) -> (SymbolId, Quote, Option<(u8, u64)>) {
        match ev {
            [Event::Quote(Update { sym, quote, seq })]
            | [Event::Trade(Update { sym, quote, seq }, _)] => (*sym, *quote, *seq),
            other => panic!("expected one update, got {other:?}"),
        }
    }

    /// The update of an event, a quote or a trade.
    fn update_of(ev: &Event) -> Option<&Update> {
        match ev {
            Event::Quote(u) | Event::Trade(u, _) => Some(u),
            _ => None,
        }
    }

    /// A BTC-USD ticker with every field, `patch` applied to its JSON.
    fn ticker(patch: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut t = serde_json::json!({"type":"ticker","sequence":112345679000u64,"product_id":"BTC-USD","price":"97000.03","open_24h":"96210.55","volume_24h":"8123.41937210","low_24h":"95801.10","high_24h":"97480.00","volume_30d":"301127.88345112","best_bid":"97000.02","best_bid_size":"0.50000000","best_ask":"97000.03","best_ask_size":"0.40000000","side":"buy","time":"2025-11-23T12:13:21.000100Z","trade_id":884521100,"last_size":"0.00100000"});
        patch(&mut t);
        t.to_string()
    }

    fn without(key: &'static str) -> impl FnOnce(&mut serde_json::Value) {
        move |t| {
            t.as_object_mut().unwrap().remove(key);
        }
    }

    fn with(key: &'static str, v: serde_json::Value) -> impl FnOnce(&mut serde_json::Value) {
        move |t| t[key] = v
    }

    #[test]
    fn url_defaults_to_the_public_feed() {
        assert_eq!(venue().url(), DEFAULT_URL);
        let cfg = VenueConfig {
            url: "ws://127.0.0.1:9/".into(),
            ..VenueConfig::default()
        };
        assert_eq!(
            Coinbase::new(&cfg, SymbolMap::default()).url(),
            "ws://127.0.0.1:9/"
        );
    }

    #[test]
    fn subscribe_names_every_product_and_both_channels() {
        let mut v = venue();
        let msgs = v.on_connect();
        assert_eq!(msgs.len(), 1, "one subscribe, sent at once");
        let s: serde_json::Value = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["ticker","heartbeat"]})
        );
        assert_eq!(
            v.on_connect(),
            msgs,
            "every reconnect subscribes the same way"
        );
    }

    #[test]
    fn documented_ticker_keeps_exact_text_and_time() {
        let mut v = venue();
        let ev = parse(&mut v, r#"{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}"#).unwrap();
        let (sym, q, seq) = quote(&ev);
        assert_eq!(sym, SymbolId(1));
        assert_eq!(seq, Some((TICKER, 37475248783)));
        assert_eq!(q.bid.to_string(), "1285.04");
        assert_eq!(q.bid_size.to_string(), "0.46688654");
        assert_eq!(q.ask.to_string(), "1285.27");
        assert_eq!(q.ask_size.to_string(), "1.56637040");
        assert_eq!(q.last.to_string(), "1285.22");
        assert_eq!(q.last_size.to_string(), "11.4396987");
        assert_eq!(q.ts, 1_666_222_102_061_769_000);
        assert_eq!(
            q.present,
            field::BID
                | field::BID_SIZE
                | field::ASK
                | field::ASK_SIZE
                | field::LAST
                | field::LAST_SIZE
                | field::TS
        );
    }

    /// A ticker with a trade is a trade carrying the book as well; the
    /// first ticker after subscribing (no trade details) is a quote.
    #[test]
    fn tickers_with_a_trade_are_trades() {
        let mut v = venue();
        let ev = parse(&mut v, &ticker(|_| {})).unwrap();
        let [Event::Trade(u, info)] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            *info,
            TradeInfo {
                side: Some(Side::Buy),
                trade_id: Some(884521100)
            }
        );
        assert_eq!(
            (u.quote.last.to_string(), u.quote.last_size.to_string()),
            ("97000.03".into(), "0.00100000".into())
        );
        assert_eq!(
            (u.quote.bid.to_string(), u.quote.ask.to_string()),
            ("97000.02".into(), "97000.03".into()),
            "the book rides along"
        );
        assert_eq!(u.quote.ts, 1_763_900_001_000_100_000);
        assert_eq!(u.seq, Some((TICKER, 112345679000)));
        let cases: Vec<(String, Option<TradeInfo>)> = vec![
            (
                ticker(with("side", serde_json::json!("sell"))),
                Some(TradeInfo {
                    side: Some(Side::Sell),
                    trade_id: Some(884521100),
                }),
            ),
            // A side that says nothing known, or none: the trade still counts.
            (
                ticker(with("side", serde_json::json!("cross"))),
                Some(TradeInfo {
                    side: None,
                    trade_id: Some(884521100),
                }),
            ),
            (
                ticker(without("side")),
                Some(TradeInfo {
                    side: None,
                    trade_id: Some(884521100),
                }),
            ),
            // No trade id or no size: no trade, the ticker is a quote.
            (ticker(without("trade_id")), None),
            (ticker(with("trade_id", serde_json::Value::Null)), None),
            (ticker(without("last_size")), None),
            (
                ticker(|t| {
                    for k in ["time", "last_size", "trade_id", "side"] {
                        without(k)(t);
                    }
                }),
                None,
            ),
        ];
        for (f, want) in cases {
            let f = type_first(f);
            let general = parse_general(&mut v, &f).unwrap();
            assert_eq!(v.parse_fast(f.as_bytes()), Some(general[0].clone()), "{f}");
            match (&general[..], want) {
                ([Event::Trade(_, got)], Some(want)) => assert_eq!(*got, want, "{f}"),
                ([Event::Quote(_)], None) => {}
                (got, want) => panic!("{f}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn optional_fields_set_only_what_was_sent() {
        let mut v = venue();
        // Older feeds: best prices without sizes.
        let t = ticker(|t| {
            without("best_bid_size")(t);
            without("best_ask_size")(t);
        });
        let (_, q, _) = quote(&parse(&mut v, &t).unwrap());
        assert_eq!(
            q.present,
            field::BID | field::ASK | field::LAST | field::LAST_SIZE | field::TS
        );
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("97000.02".into(), "97000.03".into())
        );
        // The first ticker after subscribing: no trade details, no time.
        let t = ticker(|t| {
            for k in ["time", "last_size", "trade_id", "side"] {
                without(k)(t);
            }
        });
        let (_, q, _) = quote(&parse(&mut v, &t).unwrap());
        assert_eq!(
            q.present,
            field::BID | field::BID_SIZE | field::ASK | field::ASK_SIZE | field::LAST
        );
        // Only the required fields; null means absent.
        let (_, q, seq) = quote(
            &parse(&mut v, r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","price":"1.5","best_bid":null,"time":null}"#)
                .unwrap(),
        );
        assert_eq!(
            (q.present, q.last.to_string(), seq),
            (field::LAST, "1.5".into(), Some((TICKER, 5)))
        );
    }

    #[test]
    fn acks_heartbeats_errors_and_unknown_types() {
        let mut v = venue();
        let ack = r#"{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}"#;
        assert_eq!(parse(&mut v, ack).unwrap(), vec![Event::Subscribed]);
        assert_eq!(
            parse(&mut v, r#"{"type":"subscriptions","channels":["ticker"]}"#).unwrap(),
            vec![Event::Subscribed],
            "older replies name channels as strings"
        );
        assert_eq!(
            parse(
                &mut v,
                r#"{"type":"subscriptions","channels":[{"name":"status","product_ids":[]}]}"#
            )
            .unwrap(),
            vec![Event::Ignored],
            "another channel's subscriptions do not acknowledge ours"
        );
        let hb = r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#;
        assert_eq!(parse(&mut v, hb).unwrap(), vec![Event::Heartbeat]);
        assert_eq!(
            parse(&mut v, r#"{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}"#).unwrap(),
            vec![Event::Rejected("Failed to subscribe: XYZ-USD is not a valid product".into())]
        );
        assert_eq!(
            parse(
                &mut v,
                r#"{"type":"error","message":"Failed to subscribe"}"#
            )
            .unwrap(),
            vec![Event::Rejected("Failed to subscribe".into())]
        );
        let long = format!(
            r#"{{"type":"error","message":"m","reason":"{}"}}"#,
            "x".repeat(5000)
        );
        let [Event::Rejected(why)] = &parse(&mut v, &long).unwrap()[..] else {
            panic!()
        };
        assert_eq!(
            why.len(),
            MAX_ERROR_TEXT,
            "venue text is bounded before it is logged"
        );
        for other in [
            r#"{"type":"status","products":[],"currencies":[]}"#,
            r#"{"type":"snapshot","product_id":"BTC-USD","bids":[],"asks":[]}"#,
            r#"{"type":"some_future_type","x":1}"#,
        ] {
            assert_eq!(
                parse(&mut v, other).unwrap(),
                vec![Event::Ignored],
                "{other}"
            );
        }
    }

    /// `frame` with its `type` member moved first (serde_json sorts keys),
    /// the canonical position; a frame that is not such an object is kept.
    fn type_first(frame: String) -> String {
        let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(&frame) else {
            return frame;
        };
        let Some(ty) = o.remove("type") else {
            return frame;
        };
        if o.is_empty() {
            return frame;
        }
        let rest = serde_json::Value::Object(o).to_string();
        format!(r#"{{"type":{ty},{}"#, &rest[1..])
    }

    fn parse_general(v: &mut Coinbase, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse_general(&mut b, &mut out).map(|_| out)
    }

    #[test]
    fn fast_path_takes_canonical_frames_only() {
        let mut v = venue();
        let documented = r#"{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}"#;
        let mut taken = vec![
            documented.to_string(),
            type_first(ticker(|_| {})),
            // The first ticker after subscribing (no trade, no time), older
            // feeds (no sizes), nulls, other key order and extra keys: the
            // scanner's any-order pass.
            type_first(ticker(|t| {
                for k in ["time", "last_size", "trade_id", "side"] {
                    without(k)(t);
                }
            })),
            type_first(ticker(|t| {
                without("best_bid_size")(t);
                without("best_ask_size")(t);
            })),
            r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","price":"1.5","best_bid":null,"time":null}"#.into(),
            r#"{"type":"ticker","product_id":"BTC-USD","price":"1.5","sequence":0,"x":true,"best_ask":"1.6"}"#.into(),
        ];
        taken.extend(
            samples(include_str!("../../feeds/coinbase/session.jsonl"))
                .into_iter()
                .map(|(_, f)| f)
                .filter(|f| f.starts_with(r#"{"type":"ticker""#)),
        );
        assert_eq!(taken.len(), 11);
        for f in &taken {
            let fast = v.parse_fast(f.as_bytes()).expect(f);
            let general = parse_general(&mut v, f).unwrap();
            assert_eq!(vec![fast.clone()], general, "{f}");
            // Decimals to the bit: `==` ignores the scale.
            let Some(Update { quote: g, .. }) = update_of(&general[0]) else {
                panic!()
            };
            let Some(Update { quote: q, .. }) = update_of(&fast) else {
                panic!()
            };
            let bits = |q: &Quote| {
                [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size].map(|d| d.serialize())
            };
            assert_eq!(bits(q), bits(g), "{f}");
        }
        let Some(Event::Trade(Update { quote, .. }, info)) = v.parse_fast(documented.as_bytes())
        else {
            panic!()
        };
        assert_eq!(
            info,
            TradeInfo {
                side: Some(Side::Buy),
                trade_id: Some(370843401)
            }
        );
        assert_eq!(quote.last_size.to_string(), "11.4396987");
        assert_eq!(quote.ts, 1_666_222_102_061_769_000);
        use serde_json::json;
        let declined: Vec<String> = vec![
            // Not a ticker: acks, heartbeats, errors, other types.
            r#"{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]}]}"#.into(),
            r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#.into(),
            r#"{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}"#.into(),
            r#"{"type":"tickers","sequence":5,"product_id":"BTC-USD","price":"1.5"}"#.into(),
            // `type` not first, whitespace, an escape, a duplicate key,
            // trailing bytes, a nested value, an exponent, a leading zero.
            r#"{"sequence":5,"type":"ticker","product_id":"BTC-USD","price":"1.5"}"#.into(),
            r#"{"type":"ticker","sequence":5, "product_id":"BTC-USD","price":"1.5"}"#.into(),
            r#"{"type":"ticker","sequence":5,"product_id":"BTC\u002dUSD","price":"1.5"}"#.into(),
            r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","price":"1.5","price":"1.6"}"#.into(),
            r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","price":"1.5","type":"ticker"}"#.into(),
            format!("{documented}\n"),
            r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","price":"1.5","x":{"a":1}}"#.into(),
            r#"{"type":"ticker","sequence":5e3,"product_id":"BTC-USD","price":"1.5"}"#.into(),
            r#"{"type":"ticker","sequence":05,"product_id":"BTC-USD","price":"1.5"}"#.into(),
            // What the general path refuses.
            type_first(ticker(with("price", json!(97000.03)))),
            type_first(ticker(with("best_bid", json!("NaN")))),
            type_first(ticker(with("best_bid_size", json!("")))),
            type_first(ticker(with("last_size", json!(0.001)))),
            type_first(ticker(without("product_id"))),
            type_first(ticker(without("sequence"))),
            type_first(ticker(with("sequence", json!(-1)))),
            type_first(ticker(with("sequence", json!("112345679000")))),
            type_first(ticker(without("price"))),
            type_first(ticker(without("best_bid"))),
            type_first(ticker(with("time", json!("2025-11-23 12:13:21.000900")))),
            type_first(ticker(with("time", json!(1763900001)))),
            type_first(ticker(with("time", json!("9999-12-31T23:59:59Z")))),
            type_first(ticker(with("product_id", json!("DOGE-USD")))),
            type_first(ticker(with("trade_id", json!("884521100")))),
            type_first(ticker(with("trade_id", json!(-1)))),
            type_first(ticker(with("trade_id", json!(1.5)))),
            type_first(ticker(with("side", json!(1)))),
        ];
        for f in &declined {
            assert!(v.parse_fast(f.as_bytes()).is_none(), "{f}");
            // And `parse` still gives the general path's verdict.
            assert_eq!(parse(&mut v, f), parse_general(&mut v, f), "{f}");
        }
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let mut v = venue();
        use serde_json::json;
        let cases: Vec<(String, &str)> = vec![
            (ticker(|_| {})[..60].to_string(), "malformed"),
            ("\u{0}\u{1}garbage".into(), "malformed"),
            ("not json".into(), "malformed"),
            (r#"["ticker","BTC-USD"]"#.into(), "unexpected"),
            ("42".into(), "unexpected"),
            (r#"{"product_id":"BTC-USD"}"#.into(), "unexpected"),
            (r#"{"type":7}"#.into(), "unexpected"),
            (ticker(with("price", json!(97000.03))), "bad_field"),
            (ticker(with("best_bid", json!("NaN"))), "bad_field"),
            (ticker(with("best_ask", json!("Infinity"))), "bad_field"),
            (
                ticker(with("price", json!("123456789012345678901234567890.5"))),
                "bad_field",
            ),
            (ticker(with("best_bid", json!("9.7e4"))), "bad_field"),
            (ticker(with("best_bid_size", json!(""))), "bad_field"),
            (ticker(with("last_size", json!(0.001))), "bad_field"),
            (ticker(without("product_id")), "bad_field"),
            (ticker(with("product_id", json!(1))), "bad_field"),
            (ticker(without("sequence")), "bad_field"),
            (ticker(with("sequence", json!(-1))), "bad_field"),
            (ticker(with("sequence", json!("112345679000"))), "bad_field"),
            (ticker(without("price")), "bad_field"),
            (
                ticker(with("time", json!("2025-11-23 12:13:21.000900"))),
                "bad_field",
            ),
            (ticker(with("time", json!(1763900001))), "bad_field"),
            (ticker(without("best_bid")), "bad_field"),
            (
                ticker(with("product_id", json!("DOGE-USD"))),
                "unmapped_symbol",
            ),
            (ticker(with("trade_id", json!("884521100"))), "bad_field"),
            (ticker(with("trade_id", json!(-1))), "bad_field"),
            (ticker(with("side", json!(1))), "bad_field"),
            (
                r#"{"type":"subscriptions","channels":"ticker"}"#.into(),
                "bad_field",
            ),
            (r#"{"type":"subscriptions"}"#.into(), "bad_field"),
        ];
        for (input, reason) in &cases {
            let e = parse(&mut v, input).expect_err(input);
            assert_eq!(e.reason(), *reason, "{input}: {e}");
        }
    }

    /// The (case, frame) pairs of a sample file; the case is the comment line
    /// right before the frame.
    fn samples(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut case = String::new();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(c) = l.strip_prefix('#') {
                case = c.trim().to_string();
                continue;
            }
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            out.push((case.clone(), line["frame"].as_str().unwrap().to_string()));
        }
        out
    }

    fn normalizer(n: usize) -> (FeedNormalizer, Arc<Metrics>) {
        let slots = Arc::new(SlotTable::new(n, 1));
        let m = Arc::new(Metrics::new());
        let norm = Normalizer::new("coinbase", slots, &m);
        (FeedNormalizer::new(norm, NormalizeConfig::default()), m)
    }

    /// What the adapter and the normalizer make of a frame: `accepted`, an
    /// event name, or the reject reason.
    fn outcome(v: &mut Coinbase, n: &mut FeedNormalizer, frame: &str) -> String {
        match parse(v, frame) {
            Err(e) => {
                n.upstream_error(e.reason(), &e);
                e.reason().to_string()
            }
            Ok(evs) => evs
                .into_iter()
                .map(|ev| {
                    let applied = match ev {
                        Event::Quote(u) => n.apply(u),
                        Event::Trade(u, info) => n.apply_with(u, Some(info)),
                        other => return format!("{other:?}"),
                    };
                    match applied {
                        Ok(_) => "accepted".to_string(),
                        Err(r) => r.as_str().to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    #[test]
    fn session_sample_is_accepted_whole() {
        let (mut n, _) = normalizer(2);
        let mut v = venue();
        let text = include_str!("../../feeds/coinbase/session.jsonl");
        let got: Vec<String> = samples(text)
            .iter()
            .map(|(_, f)| outcome(&mut v, &mut n, f))
            .collect();
        assert_eq!(got[0], "Subscribed");
        assert_eq!(got.iter().filter(|o| *o == "Heartbeat").count(), 4);
        assert_eq!(
            got.iter().filter(|o| *o == "accepted").count(),
            5,
            "{got:?}"
        );
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn malformed_samples_are_refused_with_their_documented_reason() {
        let (mut n, m) = normalizer(2);
        let mut v = venue();
        for (_, f) in samples(include_str!("../../feeds/coinbase/session.jsonl")) {
            outcome(&mut v, &mut n, &f);
        }
        let cases = samples(include_str!("../../feeds/coinbase/malformed.jsonl"));
        assert_eq!(cases.len(), 15);
        for (case, frame) in &cases {
            let (name, want) = case
                .rsplit_once(" -> ")
                .unwrap_or_else(|| panic!("comment {case:?} names no reason"));
            assert_eq!(outcome(&mut v, &mut n, frame), want, "{name}: {frame}");
        }
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"tickergate_feed_rejects_total{feed="coinbase",reason="bad_field"} 7"#),
            "{text}"
        );
    }
}
