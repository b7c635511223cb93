//! The public listener: hyper 1.x HTTP/1.1 with the WebSocket upgrade at
//! `/v1/ws`, the REST endpoints, `/metrics`, `/healthz` and `/readyz`;
//! `POST /v1/ingest` is handled by [`crate::feed::ingest`].

use crate::gateway::Shared;
use crate::protocol::{encode_quote, ErrorCode};
use crate::session::{self, Admission};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Resp {
    let body = serde_json::json!({"type": "error", "code": code.as_str(), "message": message});
    json(status, body.to_string())
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(stream, peer, shared.clone()));
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let sndbuf = shared.config.session.send_buffer_bytes;
    if sndbuf > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(sndbuf);
    }
    let mut shutdown = shared.shutdown.subscribe();
    let svc = {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            async move {
                if req.uri().path() == "/v1/ingest" {
                    return Ok::<_, Infallible>(crate::feed::ingest::handle(req, shared).await);
                }
                Ok::<_, Infallible>(route(req, shared, peer))
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(
            shared.config.server.header_timeout_ms,
        ))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "http connection: {e}");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Minimal percent-decoding for query values (tokens, symbol lists).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of a request: `?token=` or `Authorization: Bearer`.
fn request_token(req: &Request<Incoming>) -> Option<String> {
    if let Some(t) = query_param(req, "token") {
        return Some(percent_decode(t));
    }
    let h = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

fn route(req: Request<Incoming>, shared: Arc<Shared>, peer: SocketAddr) -> Resp {
    let path = req.uri().path();
    if path == "/v1/ws" {
        return upgrade(req, shared, peer);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "use GET",
        );
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let feeds: serde_json::Map<String, serde_json::Value> = shared
                .feeds
                .feeds
                .iter()
                .map(|f| (f.name.clone(), serde_json::Value::Bool(f.is_up())))
                .collect();
            let ready = shared.feeds.all_up();
            let body = serde_json::json!({"ready": ready, "feeds": feeds}).to_string();
            let st = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(st, body)
        }
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/v1/symbols" => {
            if let Some(r) = rest_auth(&req, &shared) {
                return r;
            }
            let names: Vec<&str> = shared.symbols.iter().map(|(_, n)| n).collect();
            json(
                StatusCode::OK,
                serde_json::to_string(&names).unwrap_or_default(),
            )
        }
        "/v1/quotes" => {
            if let Some(r) = rest_auth(&req, &shared) {
                return r;
            }
            quotes(&req, &shared)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "no such endpoint",
        ),
    }
}

fn rest_auth(req: &Request<Incoming>, shared: &Shared) -> Option<Resp> {
    if !shared.auth.enabled() {
        return None;
    }
    match request_token(req) {
        Some(t) if shared.auth.verify(&t) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid token is required (?token= or Authorization: Bearer)",
        )),
    }
}

fn quotes(req: &Request<Incoming>, shared: &Shared) -> Resp {
    let Some(list) = query_param(req, "symbols") else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing query parameter `symbols` (comma-separated)",
        );
    };
    let list = percent_decode(list);
    let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    let max = shared.config.session.max_symbols;
    if names.len() > max {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManySymbols,
            &format!("{} symbols; the limit is {max}", names.len()),
        );
    }
    let mut out = String::from("[");
    for name in names {
        let Some(sym) = shared.symbols.get(name) else {
            let shown: String = name.chars().take(64).collect();
            let body = serde_json::json!({"type": "error", "code": "unknown_symbol",
                "message": format!("no such symbol: {shown}"), "symbol": shown});
            return json(StatusCode::NOT_FOUND, body.to_string());
        };
        if let Some((q, seq)) = shared.slots.read(sym) {
            if out.len() > 1 {
                out.push(',');
            }
            encode_quote(&mut out, shared.symbols.name(sym), seq, &q, false);
        }
    }
    out.push(']');
    json(StatusCode::OK, out)
}

fn header_has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn upgrade(req: Request<Incoming>, shared: Arc<Shared>, peer: SocketAddr) -> Resp {
    let mut r = try_upgrade(req, shared, peer);
    if r.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A failed handshake ends the connection: the client meant to leave
        // HTTP, so there is no next request to keep it alive for.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn try_upgrade(mut req: Request<Incoming>, shared: Arc<Shared>, peer: SocketAddr) -> Resp {
    if !header_has_token(&req, UPGRADE, "websocket")
        || !header_has_token(&req, CONNECTION, "upgrade")
    {
        let mut r = error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadRequest,
            "this endpoint speaks WebSocket only: send a WebSocket upgrade request",
        );
        r.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "WebSocket upgrade must use GET",
        );
    }
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    if !version_ok {
        let mut r = error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "unsupported or missing Sec-WebSocket-Version (13 required)",
        );
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing Sec-WebSocket-Key",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let (authed, bad_token) = match request_token(&req) {
        Some(t) if shared.auth.enabled() => {
            let ok = shared.auth.verify(&t);
            (ok, !ok)
        }
        _ => (false, false),
    };
    let permit = shared.conn_limit.clone().try_acquire_owned().ok();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(shared.ws_config),
        )
        .await;
        session::run(
            ws,
            shared,
            Admission {
                permit,
                authed,
                bad_token,
            },
        )
        .await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Cb"), "a,b");
        assert_eq!(percent_decode("BTC-USD,AAPL"), "BTC-USD,AAPL");
        assert_eq!(percent_decode("x%"), "x%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("x%zz"), "x%zz");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
