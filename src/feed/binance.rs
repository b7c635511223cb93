//! Binance spot public market streams: `<symbol>@bookTicker` (best bid/ask)
//! and `<symbol>@trade` (last trade), over one combined-stream connection.
//!
//! After connecting to the combined endpoint (`/stream`) the adapter sends
//! one `SUBSCRIBE` with an `id` and expects `{"result":null,"id":N}`.
//! Binance pings every few minutes; tungstenite answers with the pong.
//! Prices and quantities are JSON strings and keep their exact text.
//!
//! Combined-stream envelope, book ticker and trade, as documented:
//! ```json
//! {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"97000.01000000","B":"0.51230000","a":"97000.02000000","A":"1.00000000"}}
//! {"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"97000.02000000","q":"0.00100000","T":1672515782136,"m":true,"M":true}}
//! ```
//! Errors: `{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}`
//! (older servers: `{"code":2,"msg":"...","id":1}`).
//!
//! A book ticker is an [`Event::Quote`]; a trade is an [`Event::Trade`]:
//! price `p` and quantity `q` (as the quote's `last`/`last_size` too), the
//! trade time `T` (ms) as its `ts`, `t` as its trade id and venue sequence
//! (the trade stream numbers apart from the book's `u`), and the aggressor
//! side from `m` (see [`side_of`]).

use super::wire::flat;
use super::wire::json::{self, Value};
use super::{Event, ParseError, SymbolMap, Venue, VenueConfig, VenueKind};
use crate::model::Quote;
use crate::normalize::Update;
use crate::trades::{Side, TradeInfo};

pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/stream";

/// Sequence streams: book updates (`u`) and trades (`t`) count separately.
const BOOK: u8 = 0;
const TRADE: u8 = 1;

pub struct Binance {
    url: String,
    map: SymbolMap,
    next_id: u64,
}

impl Binance {
    pub fn new(cfg: &VenueConfig, map: SymbolMap) -> Self {
        let url = cfg.url_or(DEFAULT_URL);
        Binance {
            url,
            map,
            next_id: 1,
        }
    }

    /// The `SUBSCRIBE` request for every mapped symbol.
    pub fn subscribe_request(&mut self) -> String {
        let params: Vec<String> = self
            .map
            .venue_symbols
            .iter()
            .flat_map(|s| {
                let l = s.to_ascii_lowercase();
                [format!("{l}@bookTicker"), format!("{l}@trade")]
            })
            .collect();
        let id = self.next_id;
        self.next_id += 1;
        serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": id}).to_string()
    }
}

impl Venue for Binance {
    fn kind(&self) -> VenueKind {
        VenueKind::Binance
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self) -> Vec<String> {
        vec![self.subscribe_request()]
    }

    /// The fast path first ([`Binance::parse_fast`]); any frame it does not
    /// take goes through the general path, which owns every error.
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        if let Some(ev) = self.parse_fast(frame) {
            out.push(ev);
            return Ok(());
        }
        self.parse_general(frame, out)
    }
}

/// The aggressor side from a trade's `m`. Binance documents `m` as "is
/// the buyer the market maker?": when it is `true` the buyer's order was
/// resting on the book, so the seller crossed the spread and took it, a
/// sell by the taker ([`Side::Sell`]); `false` means the buyer took
/// liquidity ([`Side::Buy`]). Anything but a boolean (or no `m`) says
/// nothing about the side.
fn side_of(buyer_is_maker: Option<bool>) -> Option<Side> {
    buyer_is_maker.map(|m| if m { Side::Sell } else { Side::Buy })
}

/// A trade's event (shared by both paths, so they agree).
fn trade_event(
    sym: crate::model::SymbolId,
    (price, qty): (rust_decimal::Decimal, rust_decimal::Decimal),
    t: u64,
    ts: i64,
    buyer_is_maker: Option<bool>,
) -> Event {
    Event::Trade(
        Update {
            sym,
            quote: Quote::default().with_last(price, qty).with_ts(ts),
            seq: Some((TRADE, t)),
        },
        TradeInfo {
            side: side_of(buyer_is_maker),
            trade_id: Some(t),
        },
    )
}

/// Fields of a `bookTicker` payload, in the order Binance sends them.
const BOOK_KEYS: [&str; 6] = ["u", "s", "b", "B", "a", "A"];
/// Fields of a `trade` payload, in the order Binance sends them.
const TRADE_KEYS: [&str; 9] = ["e", "E", "s", "t", "p", "q", "T", "m", "M"];

impl Binance {
    /// The combined-stream data frame in Binance's canonical form
    /// (`{"stream":"..@bookTicker","data":{..}}` or `@trade`, no
    /// whitespace or escapes, see [`flat`]), read without a DOM. `None` for
    /// anything else and for anything [`Binance::parse_general`] would
    /// refuse; otherwise the very event the general path gives.
    pub fn parse_fast(&self, frame: &[u8]) -> Option<Event> {
        let mut c = flat::Cursor::new(frame);
        c.lit(br#"{"stream":"#)?;
        let stream = c.string()?;
        c.lit(br#","data":"#)?;
        let ev = if stream.ends_with(b"@bookTicker") {
            let mut f = [None; 6];
            flat::fields(&mut c, &BOOK_KEYS, &mut f)?;
            let [u, s, b, bq, a, aq] = f;
            let sym = self.map.lookup(s?.as_str()?)?;
            let u = u?.as_u64()?;
            let dec = |v: Option<flat::Val>, key| flat::decimal(v?.as_str()?, key);
            Event::Quote(Update {
                sym,
                quote: Quote::default()
                    .with_bid(dec(b, "b")?, dec(bq, "B")?)
                    .with_ask(dec(a, "a")?, dec(aq, "A")?),
                seq: Some((BOOK, u)),
            })
        } else if stream.ends_with(b"@trade") {
            let mut f = [None; 9];
            flat::fields(&mut c, &TRADE_KEYS, &mut f)?;
            let [_, _, s, t, p, q, tt, m, _] = f;
            let sym = self.map.lookup(s?.as_str()?)?;
            let price = flat::decimal(p?.as_str()?, "p")?;
            let qty = flat::decimal(q?.as_str()?, "q")?;
            let t = t?.as_u64()?;
            let ts = i64::try_from(tt?.as_u64()?).ok()?.checked_mul(1_000_000)?;
            let m = match m {
                Some(flat::Val::True) => Some(true),
                Some(flat::Val::False) => Some(false),
                _ => None,
            };
            trade_event(sym, (price, qty), t, ts, m)
        } else {
            return None;
        };
        c.lit(b"}")?;
        c.at_end().then_some(ev)
    }

    /// The general path: simd-json DOM, every message shape, every error.
    pub fn parse_general(
        &mut self,
        frame: &mut [u8],
        out: &mut Vec<Event>,
    ) -> Result<(), ParseError> {
        let v = json::parse(frame)?;
        let o = json::object(&v)?;
        // Replies to our requests.
        if let Some(err) = o.get("error") {
            let msg = match err {
                Value::Object(e) => json::opt_str(e, "msg")
                    .unwrap_or("unknown error")
                    .to_string(),
                _ => "unknown error".to_string(),
            };
            out.push(Event::Rejected(msg));
            return Ok(());
        }
        if o.contains_key("id") && !o.contains_key("stream") {
            if o.contains_key("result") {
                out.push(Event::Subscribed);
            } else {
                let msg = json::opt_str(o, "msg").unwrap_or("request failed");
                out.push(Event::Rejected(msg.to_string()));
            }
            return Ok(());
        }
        // Data: combined envelope, or a raw payload on a /ws connection.
        let (stream, data) = match (o.get("stream"), o.get("data")) {
            (Some(Value::String(s)), Some(d)) => (Some(&**s), json::object(d)?),
            (None, None) => (None, o),
            _ => return Err(ParseError::Unexpected("stream without data".into())),
        };
        let is_trade = match stream {
            Some(s) if s.ends_with("@trade") => true,
            Some(s) if s.ends_with("@bookTicker") => false,
            Some(s) => {
                let shown: String = s.chars().take(40).collect();
                return Err(ParseError::Unexpected(format!("stream {shown:?}")));
            }
            None => json::opt_str(data, "e") == Some("trade"),
        };
        let sym = self.map.get(json::str_field(data, "s")?)?;
        if is_trade {
            let price = json::dec_field(data, "p")?;
            let qty = json::dec_field(data, "q")?;
            let t = json::u64_field(data, "t")?;
            let ms = json::u64_field(data, "T")?;
            let ts = i64::try_from(ms)
                .ok()
                .and_then(|m| m.checked_mul(1_000_000))
                .ok_or_else(|| ParseError::field("T", "out of range"))?;
            let m = match data.get("m") {
                Some(Value::Static(simd_json::StaticNode::Bool(b))) => Some(*b),
                _ => None,
            };
            out.push(trade_event(sym, (price, qty), t, ts, m));
        } else {
            let u = json::u64_field(data, "u")?;
            let q = Quote::default()
                .with_bid(json::dec_field(data, "b")?, json::dec_field(data, "B")?)
                .with_ask(json::dec_field(data, "a")?, json::dec_field(data, "A")?);
            out.push(Event::Quote(Update {
                sym,
                quote: q,
                seq: Some((BOOK, u)),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SymbolId, Symbols};
    use std::collections::BTreeMap;

    fn venue() -> Binance {
        let mut syms = Symbols::new();
        let table: BTreeMap<String, String> =
            [("BTCUSDT".to_string(), "BTC-USDT".to_string())].into();
        let map = SymbolMap::build(&table, &mut syms).unwrap();
        Binance::new(&VenueConfig::default(), map)
    }

    fn parse(v: &mut Binance, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse(&mut b, &mut out).map(|_| out)
    }

    #[test]
    fn subscribe_names_both_streams_with_increasing_ids() {
        let mut v = venue();
        let s: serde_json::Value = serde_json::from_str(&v.on_connect()[0]).unwrap();
        assert_eq!(s["method"], "SUBSCRIBE");
        assert_eq!(
            s["params"],
            serde_json::json!(["btcusdt@bookTicker", "btcusdt@trade"])
        );
        assert_eq!(s["id"], 1);
        let s: serde_json::Value = serde_json::from_str(&v.on_connect()[0]).unwrap();
        assert_eq!(s["id"], 2);
    }

    #[test]
    fn book_ticker_and_trade_keep_exact_text() {
        let mut v = venue();
        let ev = parse(&mut v, r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"97000.01000000","B":"0.51230000","a":"97000.02000000","A":"1.00000000"}}"#).unwrap();
        let Event::Quote(Update { sym, quote, seq }) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(*sym, SymbolId(0));
        assert_eq!(quote.bid.to_string(), "97000.01000000");
        assert_eq!(quote.bid_size.to_string(), "0.51230000");
        assert_eq!(*seq, Some((BOOK, 400900217)));
        let ev = parse(&mut v, r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"97000.02000000","q":"0.00100000","T":1672515782136,"m":true,"M":true}}"#).unwrap();
        let Event::Trade(Update { quote, seq, .. }, info) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(quote.last.to_string(), "97000.02000000");
        assert_eq!(quote.last_size.to_string(), "0.00100000");
        assert_eq!(quote.ts, 1_672_515_782_136_000_000);
        assert_eq!(*seq, Some((TRADE, 12345)));
        assert_eq!(
            *info,
            TradeInfo {
                side: Some(Side::Sell),
                trade_id: Some(12345)
            },
            "the buyer was the maker: the seller took"
        );
        // Raw payload on a /ws connection.
        let ev = parse(
            &mut v,
            r#"{"u":1,"s":"BTCUSDT","b":"1.0","B":"1","a":"1.1","A":"2"}"#,
        )
        .unwrap();
        assert!(matches!(ev[0], Event::Quote(Update { .. })));
    }

    #[test]
    fn fast_path_takes_canonical_frames_only() {
        let mut v = venue();
        let book = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"97000.01000000","B":"0.51230000","a":"97000.02000000","A":"1.00000000"}}"#;
        let trade = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"97000.02000000","q":"0.00100000","T":1672515782136,"m":true,"M":true}}"#;
        // Other key order: the scanner's any-order pass.
        let reordered = r#"{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT","A":"1.00000000","u":400900217,"b":"97000.01000000","B":"0.51230000","a":"97000.02000000","x":null}}"#;
        for f in [book, trade, reordered] {
            let fast = v.parse_fast(f.as_bytes()).expect(f);
            let general = parse_general(&mut v, f).unwrap();
            assert_eq!(vec![fast], general, "{f}");
        }
        let Some(Event::Quote(Update { quote, .. })) = v.parse_fast(book.as_bytes()) else {
            panic!()
        };
        assert_eq!(quote.ask_size.to_string(), "1.00000000");
        for declined in [
            // Whitespace, an escape, a duplicate key, trailing bytes, an
            // exponent, a key missing, an error: all left to the general path.
            r#"{"stream": "btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTC\u0055SDT","b":"1","B":"1","a":"1","A":"1"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1","b":"2"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1"}} "#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1e3,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"1"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"NaN","B":"1","a":"1","A":"1"}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":01,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
            r#"{"stream":"ethusdt@bookTicker","data":{"u":1,"s":"ETHUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
        ] {
            assert!(v.parse_fast(declined.as_bytes()).is_none(), "{declined}");
        }
    }

    /// `m` ("is the buyer the market maker") gives the taker's side; both
    /// paths agree on every form of it, other key orders and a raw `/ws`
    /// payload included.
    #[test]
    fn trade_side_and_id_on_both_paths() {
        let mut v = venue();
        let frame = |m: &str| {
            format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":77,"p":"97000.10","q":"0.00100000","T":1763900000001,"m":{m},"M":true}}}}"#
            )
        };
        for (m, side) in [
            ("true", Some(Side::Sell)),
            ("false", Some(Side::Buy)),
            ("null", None),
            (r#""yes""#, None),
        ] {
            let f = frame(m);
            let fast = v.parse_fast(f.as_bytes()).expect(&f);
            assert_eq!(
                vec![fast.clone()],
                parse_general(&mut v, &f).unwrap(),
                "{f}"
            );
            let Event::Trade(u, info) = fast else {
                panic!("{fast:?}")
            };
            assert_eq!(
                info,
                TradeInfo {
                    side,
                    trade_id: Some(77)
                },
                "{f}"
            );
            assert_eq!(u.quote.last.to_string(), "97000.10");
            assert_eq!(u.quote.last_size.to_string(), "0.00100000");
            assert_eq!(u.quote.ts, 1_763_900_000_001_000_000);
            assert_eq!(u.seq, Some((TRADE, 77)));
        }
        // No `m` at all, keys in another order: the any-order pass.
        let f =
            r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","p":"1.5","q":"2","t":3,"T":4}}"#;
        let fast = v.parse_fast(f.as_bytes()).expect(f);
        assert_eq!(vec![fast.clone()], parse_general(&mut v, f).unwrap());
        assert!(matches!(
            fast,
            Event::Trade(
                _,
                TradeInfo {
                    side: None,
                    trade_id: Some(3)
                }
            )
        ));
        // A raw trade payload on a /ws connection (general path only).
        let raw =
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":9,"p":"1.5","q":"2","T":4,"m":false,"M":true}"#;
        assert!(matches!(
            &parse(&mut v, raw).unwrap()[..],
            [Event::Trade(
                _,
                TradeInfo {
                    side: Some(Side::Buy),
                    trade_id: Some(9)
                }
            )]
        ));
    }

    fn parse_general(v: &mut Binance, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse_general(&mut b, &mut out).map(|_| out)
    }

    #[test]
    fn acks_errors_and_garbage() {
        let mut v = venue();
        assert_eq!(
            parse(&mut v, r#"{"result":null,"id":1}"#).unwrap(),
            vec![Event::Subscribed]
        );
        assert!(matches!(
            &parse(&mut v, r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}"#).unwrap()[0],
            Event::Rejected(m) if m.contains("invalid stream")
        ));
        assert!(matches!(
            &parse(&mut v, r#"{"code":2,"msg":"Invalid request","id":1}"#).unwrap()[0],
            Event::Rejected(_)
        ));
        let cases: &[(&str, &str)] = &[
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"97000.01""#,
                "malformed",
            ),
            ("not json", "malformed"),
            ("[1,2]", "unexpected"),
            (r#"{"stream":"btcusdt@depth","data":{}}"#, "unexpected"),
            (
                r#"{"stream":"ethusdt@bookTicker","data":{"u":1,"s":"ETHUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
                "unmapped_symbol",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":97000.01,"B":"1","a":"1","A":"1"}}"#,
                "bad_field",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"NaN","B":"1","a":"1","A":"1"}}"#,
                "bad_field",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1e400","B":"1","a":"1","A":"1"}}"#,
                "bad_field",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"123456789012345678901234567890","B":"1","a":"1","A":"1"}}"#,
                "bad_field",
            ),
            (
                r#"{"stream":"btcusdt@bookTicker","data":{"u":-1,"s":"BTCUSDT","b":"1","B":"1","a":"1","A":"1"}}"#,
                "bad_field",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1","q":"1"}}"#,
                "bad_field",
            ),
        ];
        for (input, reason) in cases {
            let e = parse(&mut v, input).expect_err(input);
            assert_eq!(e.reason(), *reason, "{input}: {e}");
        }
    }
}
