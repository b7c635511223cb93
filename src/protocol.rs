//! Wire protocol v1 (see PROTOCOL.md): client ops in, server messages out.
//!
//! Client ops are parsed with simd-json into a borrowed DOM and then checked
//! field by field, so every mistake maps to a precise error code and message
//! instead of a generic "invalid JSON". Server messages are written by hand
//! into byte buffers: quotes are the hot path and are encoded once per
//! update for every subscriber, and decimals are written with the exact
//! scale the venue sent.

use crate::model::{field, Quote, Status};
use rust_decimal::Decimal;
use serde::Serialize;
use simd_json::{BorrowedValue as Value, StaticNode};

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Machine-readable error codes (PROTOCOL.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    UnknownSymbol,
    TooManySymbols,
    RateLimited,
    Unauthorized,
    ForbiddenSymbol,
    PayloadTooLarge,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::UnknownSymbol,
        ErrorCode::TooManySymbols,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::ForbiddenSymbol,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForbiddenSymbol => "forbidden_symbol",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Internal => "internal",
        }
    }
}

/// WebSocket close codes (PROTOCOL.md, "Close codes").
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const OVERLOADED: u16 = 1013;
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// The `id` a client put on an op, echoed on the reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OpId {
    Int(i64),
    UInt(u64),
    Str(String),
}

/// A parsed client op.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Subscribe {
        symbols: Vec<String>,
        max_hz: Option<f64>,
        snapshot: bool,
    },
    Unsubscribe {
        symbols: Vec<String>,
    },
    Ping,
    Auth {
        token: String,
    },
}

/// A client op that could not be accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub id: Option<OpId>,
    pub code: ErrorCode,
    pub message: String,
}

/// Longest `id` string echoed back.
const MAX_ID_LEN: usize = 64;

fn bad(id: &Option<OpId>, msg: impl Into<String>) -> OpError {
    OpError {
        id: id.clone(),
        code: ErrorCode::BadRequest,
        message: msg.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Static(StaticNode::Null) => "null",
        Value::Static(StaticNode::Bool(_)) => "boolean",
        Value::Static(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn symbols_field(
    id: &Option<OpId>,
    obj: &simd_json::value::borrowed::Object,
    max: usize,
) -> Result<Vec<String>, OpError> {
    let v = obj
        .get("symbols")
        .ok_or_else(|| bad(id, "missing field `symbols` (array of strings)"))?;
    let Value::Array(arr) = v else {
        return Err(bad(
            id,
            format!(
                "field `symbols` must be an array of strings, got {}",
                type_name(v)
            ),
        ));
    };
    if arr.is_empty() {
        return Err(bad(id, "field `symbols` must not be empty"));
    }
    if arr.len() > max {
        return Err(OpError {
            id: id.clone(),
            code: ErrorCode::TooManySymbols,
            message: format!("{} symbols in one op; the limit is {max}", arr.len()),
        });
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, s) in arr.iter().enumerate() {
        match s {
            Value::String(s) => out.push(s.to_string()),
            other => {
                return Err(bad(
                    id,
                    format!("`symbols[{i}]` must be a string, got {}", type_name(other)),
                ))
            }
        }
    }
    Ok(out)
}

/// Parses one client text message. `buf` is parsed in place (simd-json).
/// `max_symbols_per_op` bounds the `symbols` array.
pub fn parse_op(buf: &mut [u8], max_symbols_per_op: usize) -> Result<(Option<OpId>, Op), OpError> {
    let value = simd_json::to_borrowed_value(buf)
        .map_err(|e| bad(&None, format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(bad(
            &None,
            format!("an op must be a JSON object, got {}", type_name(&value)),
        ));
    };
    let id = match obj.get("id") {
        None | Some(Value::Static(StaticNode::Null)) => None,
        Some(Value::Static(StaticNode::I64(i))) => Some(OpId::Int(*i)),
        Some(Value::Static(StaticNode::U64(u))) => Some(match i64::try_from(*u) {
            Ok(i) => OpId::Int(i),
            Err(_) => OpId::UInt(*u),
        }),
        Some(Value::String(s)) if s.len() <= MAX_ID_LEN => Some(OpId::Str(s.to_string())),
        Some(Value::String(_)) => {
            return Err(bad(
                &None,
                format!("`id` longer than {MAX_ID_LEN} characters"),
            ))
        }
        Some(other) => {
            return Err(bad(
                &None,
                format!(
                    "`id` must be an integer or a string, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    let op = match obj.get("op") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(bad(
                &id,
                format!("field `op` must be a string, got {}", type_name(other)),
            ))
        }
        None => return Err(bad(&id, "missing field `op`")),
    };
    let parsed = match op.as_ref() {
        "subscribe" => {
            let symbols = symbols_field(&id, obj, max_symbols_per_op)?;
            let max_hz = match obj.get("max_hz") {
                None | Some(Value::Static(StaticNode::Null)) => None,
                Some(Value::Static(StaticNode::I64(v))) => Some(*v as f64),
                Some(Value::Static(StaticNode::U64(v))) => Some(*v as f64),
                Some(Value::Static(StaticNode::F64(v))) => Some(*v),
                Some(other) => {
                    return Err(bad(
                        &id,
                        format!("field `max_hz` must be a number, got {}", type_name(other)),
                    ))
                }
            };
            if let Some(hz) = max_hz {
                if !(hz.is_finite() && hz > 0.0) {
                    return Err(bad(&id, "field `max_hz` must be a positive number"));
                }
            }
            let snapshot = match obj.get("snapshot") {
                None | Some(Value::Static(StaticNode::Null)) => true,
                Some(Value::Static(StaticNode::Bool(b))) => *b,
                Some(other) => {
                    return Err(bad(
                        &id,
                        format!(
                            "field `snapshot` must be a boolean, got {}",
                            type_name(other)
                        ),
                    ))
                }
            };
            Op::Subscribe {
                symbols,
                max_hz,
                snapshot,
            }
        }
        "unsubscribe" => Op::Unsubscribe {
            symbols: symbols_field(&id, obj, max_symbols_per_op)?,
        },
        "ping" => Op::Ping,
        "auth" => match obj.get("token") {
            Some(Value::String(t)) => Op::Auth {
                token: t.to_string(),
            },
            Some(other) => {
                return Err(bad(
                    &id,
                    format!("field `token` must be a string, got {}", type_name(other)),
                ))
            }
            None => return Err(bad(&id, "missing field `token`")),
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(OpError {
                id,
                code: ErrorCode::UnknownOp,
                message: format!(
                    "unknown op {shown:?}; expected subscribe, unsubscribe, ping or auth"
                ),
            });
        }
    };
    Ok((id, parsed))
}

// ---------------------------------------------------------------- encoding

/// Control messages (everything but quotes). Serialized with serde; they
/// are rare next to quotes.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control<'a> {
    Welcome {
        protocol: u32,
        session: &'a str,
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
/// several times cheaper than going through `fmt`.
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

/// Appends one quote object. `symbol` must be a valid symbol name (never
/// needs escaping: see `model::valid_symbol`).
pub fn encode_quote(out: &mut String, symbol: &str, seq: u64, q: &Quote, snapshot: bool) {
    out.push_str(r#"{"type":"quote","symbol":""#);
    out.push_str(symbol);
    out.push_str(r#"","seq":"#);
    out.push_str(itoa::Buffer::new().format(seq));
    if q.has(field::BID) {
        dec(out, "bid", &q.bid);
    }
    if q.has(field::BID_SIZE) {
        dec(out, "bid_size", &q.bid_size);
    }
    if q.has(field::ASK) {
        dec(out, "ask", &q.ask);
    }
    if q.has(field::ASK_SIZE) {
        dec(out, "ask_size", &q.ask_size);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn p(s: &str) -> Result<(Option<OpId>, Op), OpError> {
        let mut b = s.as_bytes().to_vec();
        parse_op(&mut b, 10)
    }

    #[test]
    fn parses_ops() {
        assert_eq!(
            p(
                r#"{"op":"subscribe","id":1,"symbols":["AAPL","BTC-USD"],"max_hz":2.5,"snapshot":false}"#
            ),
            Ok((
                Some(OpId::Int(1)),
                Op::Subscribe {
                    symbols: vec!["AAPL".into(), "BTC-USD".into()],
                    max_hz: Some(2.5),
                    snapshot: false
                }
            ))
        );
        assert_eq!(
            p(r#"{"op":"unsubscribe","id":"x","symbols":["A"]}"#),
            Ok((
                Some(OpId::Str("x".into())),
                Op::Unsubscribe {
                    symbols: vec!["A".into()]
                }
            ))
        );
        assert_eq!(p(r#"{"op":"ping"}"#), Ok((None, Op::Ping)));
        assert_eq!(
            p(r#"{"op":"auth","token":"t"}"#),
            Ok((None, Op::Auth { token: "t".into() }))
        );
    }

    #[test]
    fn table_of_bad_ops() {
        let cases: &[(&str, ErrorCode, &str)] = &[
            ("{", ErrorCode::BadRequest, "malformed JSON"),
            ("", ErrorCode::BadRequest, "malformed JSON"),
            ("[1,2]", ErrorCode::BadRequest, "must be a JSON object"),
            ("\"ping\"", ErrorCode::BadRequest, "must be a JSON object"),
            ("{}", ErrorCode::BadRequest, "missing field `op`"),
            (
                r#"{"op":5}"#,
                ErrorCode::BadRequest,
                "`op` must be a string",
            ),
            (r#"{"op":"fly"}"#, ErrorCode::UnknownOp, "unknown op"),
            (
                r#"{"op":"subscribe"}"#,
                ErrorCode::BadRequest,
                "missing field `symbols`",
            ),
            (
                r#"{"op":"subscribe","symbols":"AAPL"}"#,
                ErrorCode::BadRequest,
                "array of strings",
            ),
            (
                r#"{"op":"subscribe","symbols":[]}"#,
                ErrorCode::BadRequest,
                "must not be empty",
            ),
            (
                r#"{"op":"subscribe","symbols":[1]}"#,
                ErrorCode::BadRequest,
                "`symbols[0]` must be a string",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_hz":"5"}"#,
                ErrorCode::BadRequest,
                "`max_hz` must be a number",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_hz":0}"#,
                ErrorCode::BadRequest,
                "positive",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"max_hz":-1}"#,
                ErrorCode::BadRequest,
                "positive",
            ),
            (
                r#"{"op":"subscribe","symbols":["A"],"snapshot":1}"#,
                ErrorCode::BadRequest,
                "`snapshot` must be a boolean",
            ),
            (
                r#"{"op":"subscribe","symbols":["A","B","C","D","E","F","G","H","I","J","K"]}"#,
                ErrorCode::TooManySymbols,
                "limit is 10",
            ),
            (
                r#"{"op":"ping","id":1.5}"#,
                ErrorCode::BadRequest,
                "`id` must be an integer or a string",
            ),
            (
                r#"{"op":"ping","id":[1]}"#,
                ErrorCode::BadRequest,
                "`id` must be",
            ),
            (
                r#"{"op":"auth"}"#,
                ErrorCode::BadRequest,
                "missing field `token`",
            ),
            (
                r#"{"op":"auth","token":7}"#,
                ErrorCode::BadRequest,
                "`token` must be a string",
            ),
        ];
        for (input, code, needle) in cases {
            let e = p(input).expect_err(input);
            assert_eq!(e.code, *code, "{input}: {e:?}");
            assert!(
                e.message.contains(needle),
                "{input}: {:?} lacks {needle:?}",
                e.message
            );
        }
        let e = p(r#"{"op":"fly","id":"abc"}"#).unwrap_err();
        assert_eq!(
            e.id,
            Some(OpId::Str("abc".into())),
            "id is echoed on errors"
        );
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
        let mut s = String::new();
        encode_quote(&mut s, "AAPL", 7, &q, true);
        assert_eq!(
            s,
            r#"{"type":"quote","symbol":"AAPL","seq":7,"bid":"189.1200","bid_size":"300","ts":1,"gw_ts":2,"snapshot":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["bid"], "189.1200");
        assert!(v.get("ask").is_none());
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
