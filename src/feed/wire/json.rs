//! Field access on a simd-json borrowed DOM with errors that name the field.

use super::decimal::parse_decimal;
use crate::feed::ParseError;
use rust_decimal::Decimal;
pub use simd_json::value::borrowed::Object;
pub use simd_json::BorrowedValue as Value;
use simd_json::StaticNode;

thread_local! {
    /// simd-json's scratch space, reused for every frame parsed on this
    /// thread instead of allocated per frame (the hot path of every
    /// adapter). The parsed value borrows the frame, not these.
    static BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::default());
}

/// Parses a frame in place.
pub fn parse(frame: &mut [u8]) -> Result<Value<'_>, ParseError> {
    BUFFERS
        .with(|b| simd_json::to_borrowed_value_with_buffers(frame, &mut b.borrow_mut()))
        .map_err(|e| ParseError::Json(e.to_string()))
}

pub fn object<'a, 'v>(v: &'a Value<'v>) -> Result<&'a Object<'v>, ParseError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(ParseError::Unexpected("not a JSON object".into())),
    }
}

pub fn str_field<'a>(o: &'a Object, key: &'static str) -> Result<&'a str, ParseError> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ParseError::field(key, "must be a string")),
        None => Err(ParseError::field(key, "missing")),
    }
}

pub fn opt_str<'a>(o: &'a Object, key: &'static str) -> Option<&'a str> {
    match o.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

pub fn u64_field(o: &Object, key: &'static str) -> Result<u64, ParseError> {
    match o.get(key) {
        Some(Value::Static(StaticNode::U64(v))) => Ok(*v),
        Some(Value::Static(StaticNode::I64(v))) if *v >= 0 => Ok(*v as u64),
        Some(_) => Err(ParseError::field(key, "must be a non-negative integer")),
        None => Err(ParseError::field(key, "missing")),
    }
}

/// A decimal sent as a JSON string (`"189.12"`), parsed exactly.
pub fn dec_field(o: &Object, key: &'static str) -> Result<Decimal, ParseError> {
    parse_decimal(str_field(o, key)?, key)
}
