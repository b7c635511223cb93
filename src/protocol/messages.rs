//! Server messages: written by hand into byte buffers. Quotes are the hot
//! path and are encoded once per update for every subscriber, with each
//! decimal written at the exact scale the venue sent; control messages are
//! rare and go through serde.

use super::{ErrorCode, OpId};
use crate::model::{field, Quote, Status, SymbolId, Symbols};
use crate::trades::Trade;
use rust_decimal::Decimal;
use serde::Serialize;

/// Control messages (everything but quotes). Serialized with serde; they
/// are rare next to quotes.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control<'a> {
    Welcome {
        protocol: u32,
        session: &'a str,
        /// The gateway's seq numbering: a new epoch means every seq starts
        /// again (the gateway restarted).
        epoch: &'a str,
        heartbeat_ms: u64,
        limits: Limits,
        auth_required: bool,
    },
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        symbols: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_hz: Option<f64>,
        /// Trades asked for (absent: not).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        trades: bool,
        /// A symbol added to the gateway after the subscribe that this
        /// pattern of the session matches (no `id`: no op asked for it).
        #[serde(skip_serializing_if = "Option::is_none")]
        pattern: Option<&'a str>,
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        symbols: Vec<&'a str>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        ts: i64,
    },
    Authenticated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        /// The session's effective limits now that its key is known (the
        /// key may lower `max_symbols` below what `welcome` said).
        limits: Limits,
    },
    /// The reply to `flow`: client-paced delivery with this window (0:
    /// off), counted from the frame after the one carrying this reply.
    Flow {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        window: u8,
    },
    Heartbeat {
        ts: i64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<OpId>,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        symbol: Option<&'a str>,
    },
}

/// Session limits announced in `welcome` so clients can adapt.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub max_symbols: usize,
    pub max_msgs_per_sec: u32,
    pub max_message_bytes: usize,
    /// The largest `flow` window: the gateway supports client-paced
    /// delivery (`flow` and `ack` ops).
    pub max_flow_window: u8,
    /// Most names one `subscribe` or `unsubscribe` may carry.
    pub max_symbols_per_op: usize,
    /// Ops allowed in a burst above `max_msgs_per_sec`.
    pub msgs_burst: u32,
    /// Trades a subscription with `trades` may be owed before the oldest
    /// are dropped (`trades_dropped`).
    pub max_pending_trades: usize,
}

impl Control<'_> {
    /// One JSON object (not wrapped in an array).
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys,
        // no non-finite floats (max_hz is validated finite).
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_string()
        })
    }
}

/// A whole frame holding one control message: `[{...}]`.
pub fn frame_of(msg: &Control) -> String {
    let mut s = String::with_capacity(96);
    s.push('[');
    s.push_str(&msg.to_json());
    s.push(']');
    s
}

/// A `status` message for one symbol.
pub fn encode_status(out: &mut String, symbol: &str, st: Status, ts: i64) {
    out.push_str(r#"{"type":"status","symbol":""#);
    out.push_str(symbol);
    out.push_str(r#"","state":""#);
    out.push_str(st.as_str());
    out.push_str(r#"","ts":"#);
    out.push_str(itoa::Buffer::new().format(ts));
    out.push('}');
}

fn dec(out: &mut String, key: &str, d: &Decimal) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    write_decimal(out, d);
    out.push('"');
}

/// Writes `d` exactly as `Display` does (every digit of its scale, so
/// `"189.1200"` stays `"189.1200"`), from the integer mantissa with `itoa`:
/// cheaper than going through `fmt`.
pub fn write_decimal(out: &mut String, d: &Decimal) {
    let m = d.mantissa();
    let scale = d.scale() as usize;
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(m.unsigned_abs());
    if m < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(digits);
    }
}

/// Appends one quote object of `sym`; `symbols` names it and, for a
/// consolidated quote, the feeds of its sides (symbol names never need
/// escaping: see `model::valid_symbol`; feed names are kept as JSON).
pub fn encode_quote(
    out: &mut String,
    symbols: &Symbols,
    sym: SymbolId,
    seq: u64,
    q: &Quote,
    snapshot: bool,
) {
    out.push_str(r#"{"type":"quote","symbol":""#);
    out.push_str(symbols.name(sym));
    out.push_str(r#"","seq":"#);
    out.push_str(itoa::Buffer::new().format(seq));
    if q.has(field::BID) {
        dec(out, "bid", &q.bid);
    }
    if q.has(field::BID_SIZE) {
        dec(out, "bid_size", &q.bid_size);
    }
    venue(out, "bid_venue", symbols, q.bid_venue);
    if q.has(field::ASK) {
        dec(out, "ask", &q.ask);
    }
    if q.has(field::ASK_SIZE) {
        dec(out, "ask_size", &q.ask_size);
    }
    venue(out, "ask_venue", symbols, q.ask_venue);
    if q.crossed {
        out.push_str(r#","crossed":true"#);
    }
    if q.has(field::LAST) {
        dec(out, "last", &q.last);
    }
    if q.has(field::LAST_SIZE) {
        dec(out, "last_size", &q.last_size);
    }
    if q.has(field::TS) {
        out.push_str(r#","ts":"#);
        out.push_str(itoa::Buffer::new().format(q.ts));
    }
    out.push_str(r#","gw_ts":"#);
    out.push_str(itoa::Buffer::new().format(q.gw_ts));
    if snapshot {
        out.push_str(r#","snapshot":true"#);
    }
    out.push('}');
}

/// Appends one trade object (`seq` is the trade's number in its symbol's
/// trades, see `trades.rs`).
pub fn encode_trade(out: &mut String, symbol: &str, seq: u64, t: &Trade) {
    out.push_str(r#"{"type":"trade","symbol":""#);
    out.push_str(symbol);
    out.push_str(r#"","seq":"#);
    out.push_str(itoa::Buffer::new().format(seq));
    dec(out, "price", &t.price);
    dec(out, "size", &t.size);
    if let Some(side) = t.side {
        out.push_str(r#","side":""#);
        out.push_str(side.as_str());
        out.push('"');
    }
    if let Some(id) = t.trade_id {
        out.push_str(r#","trade_id":"#);
        out.push_str(itoa::Buffer::new().format(id));
    }
    out.push_str(r#","ts":"#);
    out.push_str(itoa::Buffer::new().format(t.ts));
    out.push_str(r#","gw_ts":"#);
    out.push_str(itoa::Buffer::new().format(t.gw_ts));
    out.push('}');
}

/// Appends a `trades_dropped` message: `count` trades of `symbol` were
/// dropped for this client (it fell too far behind).
pub fn encode_trades_dropped(out: &mut String, symbol: &str, count: u64) {
    out.push_str(r#"{"type":"trades_dropped","symbol":""#);
    out.push_str(symbol);
    out.push_str(r#"","count":"#);
    out.push_str(itoa::Buffer::new().format(count));
    out.push('}');
}

/// A consolidated quote's `"bid_venue":"<feed>"` (or ask); nothing for
/// venue 0 (any other quote).
fn venue(out: &mut String, key: &str, symbols: &Symbols, v: u8) {
    if let Some(name) = symbols.venue_json(v) {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        out.push_str(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn trade_encoding_is_exact_and_omits_what_the_venue_did_not_say() {
        let d = |s| Decimal::from_str(s).unwrap();
        let mut t = Trade {
            price: d("97000.02000000"),
            size: d("0.00100000"),
            side: Some(crate::trades::Side::Sell),
            trade_id: Some(12345),
            ts: 1,
            gw_ts: 2,
        };
        let mut s = String::new();
        encode_trade(&mut s, "BTC-USD", 9, &t);
        assert_eq!(
            s,
            r#"{"type":"trade","symbol":"BTC-USD","seq":9,"price":"97000.02000000","size":"0.00100000","side":"sell","trade_id":12345,"ts":1,"gw_ts":2}"#
        );
        (t.side, t.trade_id) = (None, None);
        s.clear();
        encode_trade(&mut s, "X", 1, &t);
        assert_eq!(
            s,
            r#"{"type":"trade","symbol":"X","seq":1,"price":"97000.02000000","size":"0.00100000","ts":1,"gw_ts":2}"#
        );
        s.clear();
        encode_trades_dropped(&mut s, "X", 17);
        assert_eq!(s, r#"{"type":"trades_dropped","symbol":"X","count":17}"#);
    }

    #[test]
    fn quote_encoding_is_exact_and_omits_missing_fields() {
        let d = |s| Decimal::from_str(s).unwrap();
        let q = Quote {
            gw_ts: 2,
            ..Quote::default()
        }
        .with_bid(d("189.1200"), d("300"))
        .with_ts(1);
        let mut syms = Symbols::new();
        let aapl = syms.intern("AAPL").unwrap();
        let mut s = String::new();
        encode_quote(&mut s, &syms, aapl, 7, &q, true);
        assert_eq!(
            s,
            r#"{"type":"quote","symbol":"AAPL","seq":7,"bid":"189.1200","bid_size":"300","ts":1,"gw_ts":2,"snapshot":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["bid"], "189.1200");
        assert!(v.get("ask").is_none());
    }

    #[test]
    fn consolidated_quotes_name_their_venues() {
        let d = |s| Decimal::from_str(s).unwrap();
        let mut syms = Symbols::new();
        let btc = syms.intern("BTC-USD").unwrap();
        syms.set_venues(["coinbase", "kraken"]);
        let q = Quote {
            gw_ts: 2,
            bid_venue: 2,
            ask_venue: 1,
            crossed: true,
            ..Quote::default()
        }
        .with_bid(d("97000.10"), d("0.5"))
        .with_ask(d("97000.05"), d("1.25"));
        let mut s = String::new();
        encode_quote(&mut s, &syms, btc, 9, &q, false);
        assert_eq!(
            s,
            r#"{"type":"quote","symbol":"BTC-USD","seq":9,"bid":"97000.10","bid_size":"0.5","bid_venue":"kraken","ask":"97000.05","ask_size":"1.25","ask_venue":"coinbase","crossed":true,"gw_ts":2}"#
        );
        // A quote with no venues (any feed's) carries none of the fields.
        let mut s = String::new();
        encode_quote(
            &mut s,
            &syms,
            btc,
            9,
            &Quote {
                bid_venue: 0,
                ask_venue: 0,
                crossed: false,
                ..q
            },
            false,
        );
        assert!(!s.contains("venue") && !s.contains("crossed"), "{s}");
    }

    #[test]
    fn write_decimal_matches_display() {
        let mut cases: Vec<Decimal> = [
            "0",
            "-0",
            "0.0",
            "0.00000001",
            "189.1200",
            "-1.5",
            "97000.01000000",
            "1",
            "10",
            "0.1",
            "-0.001",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7.9228162514264337593543950335",
            "0.0000000000000000000000000001",
        ]
        .iter()
        .map(|s| Decimal::from_str(s).unwrap())
        .collect();
        // Deterministic pseudo-random mantissas and scales.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = (x as i64) >> (x % 60);
            cases.push(Decimal::new(m, (x % 29) as u32));
        }
        for d in cases {
            let mut s = String::new();
            write_decimal(&mut s, &d);
            assert_eq!(
                s,
                d.to_string(),
                "mantissa {} scale {}",
                d.mantissa(),
                d.scale()
            );
        }
    }

    #[test]
    fn control_messages_serialize() {
        let m = Control::Error {
            id: Some(OpId::Int(3)),
            code: ErrorCode::UnknownSymbol,
            message: "no such symbol: XYZ",
            symbol: Some("XYZ"),
        };
        assert_eq!(
            frame_of(&m),
            r#"[{"type":"error","id":3,"code":"unknown_symbol","message":"no such symbol: XYZ","symbol":"XYZ"}]"#
        );
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
