//! The HTTP responses the edge sends: JSON bodies, errors in the
//! protocol's shape (`{"type":"error","code":...,"message":...}`), plain
//! text.

use crate::protocol::ErrorCode;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Response, StatusCode};
use std::convert::Infallible;

/// Every response's body: whole (`Full`) or streamed (`/v1/sse`).
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;
pub(super) type Resp = Response<Body>;

/// A whole body.
pub(super) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

/// A response with `body` and, when given, its content type.
fn with_body(status: StatusCode, body: Bytes, content_type: Option<&'static str>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if let Some(t) = content_type {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    r
}

pub(super) fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    with_body(status, body.into(), Some("application/json"))
}

pub(super) fn error(status: StatusCode, code: ErrorCode, message: &str) -> Resp {
    let body = serde_json::json!({"type": "error", "code": code.as_str(), "message": message});
    json(status, body.to_string())
}

/// An error about one symbol (it also names the symbol).
pub(super) fn symbol_error(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    symbol: &str,
) -> Resp {
    let body = serde_json::json!({"type": "error", "code": code.as_str(),
        "message": message, "symbol": symbol});
    json(status, body.to_string())
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Resp {
    with_body(status, Bytes::from_static(body.as_bytes()), None)
}

/// Prometheus text exposition.
pub(super) fn metrics(body: Vec<u8>) -> Resp {
    with_body(
        StatusCode::OK,
        Bytes::from(body),
        Some("text/plain; version=0.0.4; charset=utf-8"),
    )
}

/// The WebSocket handshake's answer (RFC 6455 section 4.2.2).
pub(crate) fn switching_protocols(accept: &str) -> Resp {
    let mut r = with_body(StatusCode::SWITCHING_PROTOCOLS, Bytes::new(), None);
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}
