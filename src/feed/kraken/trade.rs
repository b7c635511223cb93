//! Kraken's `trade` channel: every trade of a subscribed pair, as it
//! happens.
//!
//! ```json
//! {"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":97000.1,"qty":0.00100000,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}
//! ```
//!
//! Each entry of an `update` is one [`Event::Trade`], in the order sent:
//! `price` and `qty` (JSON numbers: their exact text, as for the ticker)
//! as the trade's price and size (the quote's `last`/`last_size` too),
//! `timestamp` as its `ts`, `trade_id` as its id and its venue sequence on
//! the [`TRADE`] stream (Kraken numbers a pair's trades upward, so an older
//! or repeated id is refused as `out_of_order`), and `side`, the taker's
//! side, as its aggressor side.
//!
//! A `snapshot` is history, not news: the last trades before we
//! subscribed (Kraken sends up to 50 unless asked not to; the adapter asks
//! for none with `"snapshot": false`). Its trades are not delivered, nor
//! do they touch the quote: a snapshot is [`Event::Ignored`] whole.

use super::number;
use crate::feed::wire::json::{self, Object, Value};
use crate::feed::wire::{flat, parse_rfc3339_ns};
use crate::feed::{Event, ParseError, SymbolMap};
use crate::model::{Quote, SymbolId};
use crate::normalize::Update;
use crate::trades::{Side, TradeInfo};
use rust_decimal::Decimal;

/// The venue sequence stream of trades (the ticker has none).
pub const TRADE: u8 = 1;

/// A `trade` channel message: one event per entry of an update; a
/// snapshot is ignored (see the module docs).
pub(super) fn message(map: &SymbolMap, o: &Object, out: &mut Vec<Event>) -> Result<(), ParseError> {
    match json::str_field(o, "type")? {
        "update" => {}
        "snapshot" => {
            out.push(Event::Ignored);
            return Ok(());
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(ParseError::Unexpected(format!("trade type {shown:?}")));
        }
    }
    let Some(Value::Array(data)) = o.get("data") else {
        return Err(ParseError::field("data", "must be an array"));
    };
    for entry in data.iter() {
        let Value::Object(e) = entry else {
            return Err(ParseError::field("data", "entries must be objects"));
        };
        out.push(entry_event(map, e)?);
    }
    Ok(())
}

/// One trade.
fn entry_event(map: &SymbolMap, e: &Object) -> Result<Event, ParseError> {
    let sym = map.get(json::str_field(e, "symbol")?)?;
    let price = number(e, "price")?;
    let qty = number(e, "qty")?;
    let trade_id = match e.get("trade_id") {
        Some(Value::String(t)) => {
            uint(t.as_bytes()).ok_or_else(|| ParseError::field("trade_id", "must be an integer"))?
        }
        Some(_) => return Err(ParseError::field("trade_id", "must be an integer")),
        None => return Err(ParseError::field("trade_id", "missing")),
    };
    let ts = match e.get("timestamp") {
        None => None,
        Some(Value::String(ts)) => Some(parse_rfc3339_ns(ts, "timestamp")?),
        Some(_) => {
            return Err(ParseError::field("timestamp", "must be an RFC 3339 string"));
        }
    };
    let side = match e.get("side") {
        None => None,
        Some(Value::String(s)) => side_of(s.as_bytes()),
        Some(_) => return Err(ParseError::field("side", "must be a string")),
    };
    Ok(trade_event(sym, (price, qty), trade_id, ts, side))
}

/// The taker's side: Kraken documents a trade's `side` as the taker
/// order's direction. Any other text says nothing.
fn side_of(s: &[u8]) -> Option<Side> {
    match s {
        b"buy" => Some(Side::Buy),
        b"sell" => Some(Side::Sell),
        _ => None,
    }
}

/// A trade id: digits only, no leading zero (a JSON integer's text after
/// the number rewrite), at most what a `u64` holds.
fn uint(t: &[u8]) -> Option<u64> {
    if t.is_empty() || (t[0] == b'0' && t.len() > 1) || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A trade's event (shared by both paths, so they agree).
fn trade_event(
    sym: SymbolId,
    (price, qty): (Decimal, Decimal),
    trade_id: u64,
    ts: Option<i64>,
    side: Option<Side>,
) -> Event {
    let quote = Quote::default().with_last(price, qty);
    Event::Trade(
        Update {
            sym,
            quote: match ts {
                Some(ts) => quote.with_ts(ts),
                None => quote,
            },
            seq: Some((TRADE, trade_id)),
        },
        TradeInfo {
            side,
            trade_id: Some(trade_id),
        },
    )
}

/// Fields of a trade entry, in the order Kraken sends them.
const KEYS: [&str; 7] = [
    "symbol",
    "side",
    "price",
    "qty",
    "ord_type",
    "trade_id",
    "timestamp",
];

/// A trade `update` in Kraken's canonical form
/// (`{"channel":"trade","type":"update","data":[{..},..]}`, no whitespace
/// or escapes, flat entries, see [`flat`]), read without a DOM and without
/// the number rewrite. Appends one event per entry; `None` (the caller
/// restores `out`) for anything else (snapshots included) and for anything
/// [`message`] would refuse; otherwise the very events it gives.
pub(super) fn fast_frame(map: &SymbolMap, frame: &[u8], out: &mut Vec<Event>) -> Option<()> {
    let mut c = flat::Cursor::new(frame);
    c.lit(br#"{"channel":"trade","type":"update","data":["#)?;
    loop {
        let mut f = [None; 7];
        flat::fields(&mut c, &KEYS, &mut f)?;
        let [symbol, side, price, qty, _, trade_id, timestamp] = f;
        let sym = map.lookup(symbol?.as_str()?)?;
        // A number's text or a string, as [`number`] takes either.
        let num = |v: Option<flat::Val<'_>>, key| flat::decimal(v?.text()?, key);
        let price = num(price, "price")?;
        let qty = num(qty, "qty")?;
        let trade_id = trade_id?.as_u64()?;
        let ts = match timestamp {
            None => None,
            Some(flat::Val::Str(t)) => Some(crate::feed::wire::time::rfc3339_ns(t)?),
            Some(_) => return None,
        };
        let side = match side {
            None => None,
            Some(flat::Val::Str(s)) => side_of(s),
            Some(_) => return None,
        };
        out.push(trade_event(sym, (price, qty), trade_id, ts, side));
        if c.lit(b"]").is_some() {
            break;
        }
        c.lit(b",")?;
    }
    c.lit(b"}")?;
    c.at_end().then_some(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, venue};
    use super::*;
    use crate::feed::kraken::Kraken;
    use crate::feed::Venue;

    fn parse_general(v: &mut Kraken, s: &str) -> Result<Vec<Event>, ParseError> {
        let mut b = s.as_bytes().to_vec();
        let mut out = Vec::new();
        v.parse_general(&mut b, &mut out).map(|_| out)
    }

    fn parse_fast(v: &Kraken, s: &str) -> Option<Vec<Event>> {
        let mut out = Vec::new();
        v.parse_fast(s.as_bytes(), &mut out).map(|_| out)
    }

    const UPDATE: &str = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":97000.10,"qty":0.00100000,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"},{"symbol":"BTC/USD","side":"sell","price":97000.0,"qty":1.5,"ord_type":"limit","trade_id":4665907,"timestamp":"2023-09-25T07:49:37.708706Z"},{"symbol":"ETH/USD","side":"buy","price":3450.12,"qty":12,"ord_type":"market","trade_id":100,"timestamp":"2023-09-25T07:49:38Z"}]}"#;

    /// `(price, size, side, trade_id, seq, ts)` of each trade.
    type Row = (
        String,
        String,
        Option<Side>,
        Option<u64>,
        Option<(u8, u64)>,
        i64,
    );

    fn rows(evs: &[Event]) -> Vec<Row> {
        evs.iter()
            .map(|e| match e {
                Event::Trade(u, info) => (
                    u.quote.last.to_string(),
                    u.quote.last_size.to_string(),
                    info.side,
                    info.trade_id,
                    u.seq,
                    u.quote.ts,
                ),
                other => panic!("not a trade: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_entry_is_a_trade_in_order_with_the_exact_number_text() {
        let mut v = venue();
        let ev = parse(&mut v, UPDATE).unwrap();
        let ts = 1_695_628_177_708_706_000;
        assert_eq!(
            rows(&ev),
            vec![
                (
                    "97000.10".into(),
                    "0.00100000".into(),
                    Some(Side::Buy),
                    Some(4665906),
                    Some((TRADE, 4665906)),
                    ts
                ),
                (
                    "97000.0".into(),
                    "1.5".into(),
                    Some(Side::Sell),
                    Some(4665907),
                    Some((TRADE, 4665907)),
                    ts
                ),
                (
                    "3450.12".into(),
                    "12".into(),
                    Some(Side::Buy),
                    Some(100),
                    Some((TRADE, 100)),
                    1_695_628_178_000_000_000
                ),
            ]
        );
        let Event::Trade(u, _) = &ev[2] else { panic!() };
        assert_eq!(u.sym, SymbolId(1));
        assert_eq!(
            u.quote.present,
            crate::model::field::LAST | crate::model::field::LAST_SIZE | crate::model::field::TS,
            "a trade touches the last trade only"
        );
    }

    #[test]
    fn a_snapshot_is_history_and_ignored() {
        let mut v = venue();
        let snap = UPDATE.replace(r#""type":"update""#, r#""type":"snapshot""#);
        assert_eq!(parse(&mut v, &snap).unwrap(), vec![Event::Ignored]);
        assert!(parse_fast(&v, &snap).is_none(), "the general path decides");
        assert_eq!(
            parse(&mut v, r#"{"channel":"trade","type":"update","data":[]}"#).unwrap(),
            vec![]
        );
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let mut v = venue();
        let taken: Vec<String> = vec![
            UPDATE.into(),
            // Other key order, extra keys, no side, no timestamp, strings
            // for the numbers, an unknown side.
            r#"{"channel":"trade","type":"update","data":[{"trade_id":5,"qty":"0.10","price":"97000.10","symbol":"BTC/USD","x":null}]}"#.into(),
            UPDATE.replace(r#""side":"buy""#, r#""side":"cross""#),
            UPDATE.replace(r#","timestamp":"2023-09-25T07:49:38Z""#, ""),
        ];
        for f in &taken {
            let fast = parse_fast(&v, f).expect(f);
            let general = parse_general(&mut v, f).unwrap();
            assert_eq!(fast, general, "{f}");
            assert_eq!(rows(&fast), rows(&general), "{f}: the text too");
        }
        let declined: Vec<String> = vec![
            // Snapshots, acks, whitespace, an escape, a duplicate key,
            // trailing bytes, other top-level order.
            UPDATE.replace(r#""type":"update""#, r#""type":"snapshot""#),
            r#"{"method":"subscribe","result":{"channel":"trade","snapshot":false,"symbol":"BTC/USD"},"success":true,"req_id":2}"#.into(),
            UPDATE.replace(r#""qty":12"#, r#""qty": 12"#),
            UPDATE.replace("ETH/USD", r"ETH\/USD"),
            UPDATE.replace(r#""qty":12"#, r#""qty":12,"qty":13"#),
            format!("{UPDATE} "),
            UPDATE.replace(r#"{"channel":"trade","type":"update","#, r#"{"type":"update","channel":"trade","#),
            // A trade id that is not a plain integer or over 18 digits.
            UPDATE.replace("4665906", r#""4665906""#),
            UPDATE.replace("4665906", "4665906.0"),
            UPDATE.replace("4665906", "-1"),
            UPDATE.replace("4665906", "1234567890123456789"),
            // What the general path refuses.
            UPDATE.replace("4665906,", ""),
            UPDATE.replace(r#","trade_id":100"#, ""),
            UPDATE.replace("97000.10", "9.7e4"),
            UPDATE.replace("97000.10", r#""NaN""#),
            UPDATE.replace(r#""qty":12"#, r#""qty":null"#),
            UPDATE.replace(r#""side":"buy""#, r#""side":true"#),
            UPDATE.replace("2023-09-25T07:49:38Z", "yesterday"),
            UPDATE.replace(r#""2023-09-25T07:49:38Z""#, "1695628178"),
            UPDATE.replace("ETH/USD", "DOGE/USD"),
        ];
        for f in &declined {
            let mut out = vec![Event::Heartbeat];
            assert!(v.parse_fast(f.as_bytes(), &mut out).is_none(), "{f}");
            assert_eq!(out, vec![Event::Heartbeat], "declined leaves `out` alone");
            assert_eq!(parse(&mut v, f), parse_general(&mut v, f), "{f}");
        }
    }

    #[test]
    fn malformed_trades_are_refused_whole_with_a_reason() {
        let mut v = venue();
        let cases: Vec<(String, &str)> = vec![
            (UPDATE.replace("4665906,", ""), "malformed"),
            (UPDATE.replace(r#","trade_id":100"#, ""), "bad_field"),
            (UPDATE.replace("4665906", "4665906.0"), "bad_field"),
            (UPDATE.replace("4665906", "-1"), "bad_field"),
            (
                UPDATE.replace("4665906", "99999999999999999999"),
                "bad_field",
            ),
            (UPDATE.replace("4665906", "true"), "bad_field"),
            (UPDATE.replace("97000.10", "9.7e4"), "bad_field"),
            (UPDATE.replace("97000.10", r#""NaN""#), "bad_field"),
            (UPDATE.replace(r#""qty":12"#, r#""qty":null"#), "bad_field"),
            (UPDATE.replace(r#","qty":12"#, ""), "bad_field"),
            (
                UPDATE.replace(r#""side":"buy""#, r#""side":true"#),
                "bad_field",
            ),
            (
                UPDATE.replace("2023-09-25T07:49:38Z", "yesterday"),
                "bad_field",
            ),
            (UPDATE.replace(r#""symbol":"ETH/USD","#, ""), "bad_field"),
            (UPDATE.replace("ETH/USD", "DOGE/USD"), "unmapped_symbol"),
            (
                r#"{"channel":"trade","type":"update","data":{}}"#.into(),
                "bad_field",
            ),
            (
                r#"{"channel":"trade","type":"update","data":[1]}"#.into(),
                "bad_field",
            ),
            (r#"{"channel":"trade","data":[]}"#.into(), "bad_field"),
            (
                r#"{"channel":"trade","type":"trades","data":[]}"#.into(),
                "unexpected",
            ),
        ];
        for (input, reason) in &cases {
            let mut out = vec![Event::Heartbeat];
            let mut b = input.as_bytes().to_vec();
            let e = v.parse(&mut b, &mut out).expect_err(input);
            assert_eq!(e.reason(), *reason, "{input}: {e}");
            assert_eq!(
                out,
                vec![Event::Heartbeat],
                "{input}: no trade of a bad frame"
            );
        }
    }
}

#[cfg(test)]
mod sample_tests {
    use crate::feed::kraken::Kraken;
    use crate::feed::{Event, SymbolMap, Venue, VenueConfig};
    use crate::metrics::Metrics;
    use crate::model::{SymbolId, Symbols};
    use crate::normalize::{FeedNormalizer, NormalizeConfig, Normalizer};
    use crate::slots::SlotTable;
    use crate::trades::{Read, Side};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn frames(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["frame"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// feeds/kraken/trades.jsonl after session.jsonl, through the adapter
    /// and a real normalizer: the snapshot's trades are not stored, the
    /// updates' are, in order, with their exact text; the same frames
    /// again are refused as out of order.
    #[test]
    fn sample_trades_reach_the_trade_rings() {
        let mut syms = Symbols::new();
        let table: BTreeMap<String, String> = [
            ("BTC/USD".to_string(), "BTC-USD".to_string()),
            ("ETH/USD".to_string(), "ETH-USD".to_string()),
        ]
        .into();
        let map = SymbolMap::build(&table, &mut syms).unwrap();
        let mut v = Kraken::new(&VenueConfig::default(), map);
        let slots = Arc::new(SlotTable::new(2, 1));
        // A subscription takes both symbols' trades (else none is stored).
        for i in 0..2 {
            slots.trades().listen(crate::model::SymbolId(i), true);
        }
        let m = Arc::new(Metrics::new());
        let mut norm = FeedNormalizer::new(
            Normalizer::new("kraken", slots.clone(), &m),
            NormalizeConfig::default(),
        );
        let mut play = |frames: &[String]| {
            let mut verdicts = Vec::new();
            for f in frames {
                let mut b = f.as_bytes().to_vec();
                let mut out = Vec::new();
                v.parse(&mut b, &mut out)
                    .unwrap_or_else(|e| panic!("{f}: {e}"));
                for ev in out {
                    let r = match ev {
                        Event::Quote(u) => norm.apply(u),
                        Event::Trade(u, info) => norm.apply_with(u, Some(info)),
                        _ => continue,
                    };
                    verdicts.push(r.map(|_| "ok").unwrap_or_else(|r| r.as_str()));
                }
            }
            verdicts
        };
        play(&frames(include_str!("../../../feeds/kraken/session.jsonl")));
        let trades = frames(include_str!("../../../feeds/kraken/trades.jsonl"));
        assert_eq!(play(&trades), ["ok"; 4], "four trades, the snapshot's none");
        let table = slots.trades();
        let got = |sym: SymbolId| {
            (1..=table.head(sym))
                .map(|seq| match table.read(sym, seq) {
                    Read::Trade(t) => (t.price.to_string(), t.size.to_string(), t.side, t.trade_id),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(SymbolId(0)),
            vec![
                (
                    "97000.10".into(),
                    "0.00100000".into(),
                    Some(Side::Buy),
                    Some(4665906)
                ),
                (
                    "97000.0".into(),
                    "0.50000000".into(),
                    Some(Side::Sell),
                    Some(4665907)
                ),
                (
                    "97000.2".into(),
                    "0.07500000".into(),
                    Some(Side::Sell),
                    Some(4665908)
                ),
            ]
        );
        assert_eq!(
            got(SymbolId(1)),
            vec![(
                "3450.21".into(),
                "1.20000000".into(),
                Some(Side::Buy),
                Some(1830001)
            )]
        );
        let (btc, _) = slots.read(SymbolId(0)).unwrap();
        assert_eq!(
            (
                btc.last.to_string(),
                btc.last_size.to_string(),
                btc.bid.to_string()
            ),
            ("97000.2".into(), "0.07500000".into(), "97000.1".into()),
            "the quote's last trade follows, the book stays"
        );
        // Played again (a venue repeating itself): every trade refused.
        assert_eq!(play(&trades), ["out_of_order"; 4]);
        assert_eq!(table.head(SymbolId(0)), 3);
    }
}
