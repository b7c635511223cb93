//! Client ops: one text message from a client, parsed into an [`Op`].
//!
//! Ops are parsed with simd-json into a borrowed DOM and then checked field
//! by field, so every mistake maps to a precise error code and message
//! instead of a generic "invalid JSON".

use super::ErrorCode;
use serde::Serialize;
use simd_json::{BorrowedValue as Value, StaticNode};

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
        /// Every trade of the symbols too, in order (`"trades":true`).
        trades: bool,
    },
    Unsubscribe {
        symbols: Vec<String>,
    },
    Ping,
    Auth {
        token: String,
    },
    /// Client-paced delivery: at most `window` unacknowledged frames
    /// carrying data; 0 turns it off.
    Flow {
        window: u8,
    },
    /// The frames processed since the `flow` reply's frame (cumulative).
    Ack {
        n: u64,
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

/// Largest `window` of the `flow` op, in frames.
pub const MAX_FLOW_WINDOW: u8 = 64;

/// A required non-negative integer field.
fn uint_field(
    id: &Option<OpId>,
    obj: &simd_json::value::borrowed::Object,
    name: &str,
) -> Result<u64, OpError> {
    match obj.get(name) {
        Some(Value::Static(StaticNode::U64(v))) => Ok(*v),
        Some(Value::Static(StaticNode::I64(v))) if *v >= 0 => Ok(*v as u64),
        Some(other) => Err(bad(
            id,
            format!(
                "field `{name}` must be a non-negative integer, got {}",
                type_name(other)
            ),
        )),
        None => Err(bad(id, format!("missing field `{name}`"))),
    }
}

/// What a message that is not JSON gets told: what is wrong, where, and
/// the byte found there (a control byte in hex), in words that point at
/// the client's text, not at the server. simd-json's own errors name a
/// structural position, not the bad byte, so the refused text (kept
/// before simd-json parsed it in place) is read again with serde_json,
/// on this error path only.
fn not_json(original: &[u8]) -> String {
    const HINT: &str = "; send one JSON object per message, e.g. {\"op\":\"ping\"}";
    let e = match serde_json::from_slice::<serde::de::IgnoredAny>(original) {
        Ok(_) => return format!("not JSON (nested too deeply?){HINT}"),
        Err(e) => e,
    };
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    // serde_json's line and column (1-based, in bytes) as an offset.
    let line_start: usize = original
        .split(|&b| b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    let off = line_start + e.column().saturating_sub(1);
    match original.get(off) {
        _ if e.classify() == serde_json::error::Category::Eof => format!(
            "not JSON: {what} (the message ends at offset {}){HINT}",
            original.len()
        ),
        Some(&b) if b.is_ascii_graphic() || b == b' ' => {
            format!(
                "not JSON: {what}, found {:?} at offset {off}{HINT}",
                b as char
            )
        }
        Some(&b) => format!("not JSON: {what}, found byte {b:#04x} at offset {off}{HINT}"),
        None => format!("not JSON: {what} at offset {off}{HINT}"),
    }
}

/// Parses one client text message. `buf` is parsed in place (simd-json).
/// `max_symbols_per_op` bounds the `symbols` array.
/// An optional boolean field (`null` or absent: `default`).
fn bool_field(
    id: &Option<OpId>,
    obj: &simd_json::borrowed::Object,
    name: &str,
    default: bool,
) -> Result<bool, OpError> {
    match obj.get(name) {
        None | Some(Value::Static(StaticNode::Null)) => Ok(default),
        Some(Value::Static(StaticNode::Bool(b))) => Ok(*b),
        Some(other) => Err(bad(
            id,
            format!("field `{name}` must be a boolean, got {}", type_name(other)),
        )),
    }
}

pub fn parse_op(buf: &mut [u8], max_symbols_per_op: usize) -> Result<(Option<OpId>, Op), OpError> {
    // Ops are small (at most `max_message_bytes`) and rate-limited: a copy
    // for the error message costs little, and simd-json's in-place parse
    // may have changed `buf` by the time it fails.
    let original = buf.to_vec();
    let value = simd_json::to_borrowed_value(buf).map_err(|_| bad(&None, not_json(&original)))?;
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
            return Err(bad(&None, format!("`id` longer than {MAX_ID_LEN} bytes")))
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
            Op::Subscribe {
                symbols,
                max_hz,
                snapshot: bool_field(&id, obj, "snapshot", true)?,
                trades: bool_field(&id, obj, "trades", false)?,
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
        "flow" => {
            let window = uint_field(&id, obj, "window")?;
            match u8::try_from(window) {
                Ok(w) if w <= MAX_FLOW_WINDOW => Op::Flow { window: w },
                _ => {
                    return Err(bad(
                        &id,
                        format!("field `window` must be 0 (off) to {MAX_FLOW_WINDOW} frames"),
                    ))
                }
            }
        }
        "ack" => Op::Ack {
            n: uint_field(&id, obj, "n")?,
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(OpError {
                id,
                code: ErrorCode::UnknownOp,
                message: format!(
                    "unknown op {shown:?}; expected subscribe, unsubscribe, ping, auth, flow or ack"
                ),
            });
        }
    };
    Ok((id, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(Option<OpId>, Op), OpError> {
        let mut b = s.as_bytes().to_vec();
        parse_op(&mut b, 10)
    }

    #[test]
    fn a_string_id_is_at_most_64_bytes() {
        let id = "é".repeat(32); // 64 bytes, 32 characters
        let op = format!(r#"{{"op":"ping","id":"{id}"}}"#);
        assert_eq!(p(&op), Ok((Some(OpId::Str(id.clone())), Op::Ping)));
        let long = format!(r#"{{"op":"ping","id":"{id}x"}}"#);
        let e = p(&long).unwrap_err();
        assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));
        assert_eq!(e.message, "`id` longer than 64 bytes");
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
                    snapshot: false,
                    trades: false
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
            p(r#"{"op":"flow","id":2,"window":1}"#),
            Ok((Some(OpId::Int(2)), Op::Flow { window: 1 }))
        );
        assert_eq!(
            p(r#"{"op":"flow","window":0}"#),
            Ok((None, Op::Flow { window: 0 }))
        );
        assert_eq!(p(r#"{"op":"ack","n":7}"#), Ok((None, Op::Ack { n: 7 })));
        assert_eq!(
            p(r#"{"op":"auth","token":"t"}"#),
            Ok((None, Op::Auth { token: "t".into() }))
        );
    }

    #[test]
    fn table_of_bad_ops() {
        let cases: &[(&str, ErrorCode, &str)] = &[
            (
                "{",
                ErrorCode::BadRequest,
                "not JSON: EOF while parsing an object (the message ends at offset 1)",
            ),
            (
                "",
                ErrorCode::BadRequest,
                "not JSON: EOF while parsing a value (the message ends at offset 0)",
            ),
            (
                "hello",
                ErrorCode::BadRequest,
                "not JSON: expected value, found 'h' at offset 0",
            ),
            (
                "{\"op\":\"ping\"} x",
                ErrorCode::BadRequest,
                "not JSON: trailing characters, found 'x' at offset 14",
            ),
            (
                "{\"op\":\u{1}}",
                ErrorCode::BadRequest,
                "found byte 0x01 at offset 6",
            ),
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
                r#"{"op":"flow"}"#,
                ErrorCode::BadRequest,
                "missing field `window`",
            ),
            (
                r#"{"op":"flow","window":65}"#,
                ErrorCode::BadRequest,
                "0 (off) to 64",
            ),
            (
                r#"{"op":"flow","window":-1}"#,
                ErrorCode::BadRequest,
                "non-negative integer",
            ),
            (
                r#"{"op":"flow","window":1.5}"#,
                ErrorCode::BadRequest,
                "non-negative integer",
            ),
            (
                r#"{"op":"ack"}"#,
                ErrorCode::BadRequest,
                "missing field `n`",
            ),
            (
                r#"{"op":"ack","n":"3"}"#,
                ErrorCode::BadRequest,
                "`n` must be a non-negative integer",
            ),
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
}
