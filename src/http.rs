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
        if !shared.conn_limiter.check(peer.ip()) {
            refuse_rate_limited(stream, &shared);
            continue;
        }
        tokio::spawn(connection(stream, peer, shared.clone()));
    }
}

/// Over `server.conn_rate_per_ip`: the connection is refused at accept,
/// without a task or an HTTP parser. A plain-HTTP client gets a 429 if the
/// socket takes it at once (it always does on a fresh connection); the
/// request itself is never read, so the close may reach the client as a
/// reset instead. TLS listeners just close.
fn refuse_rate_limited(stream: TcpStream, shared: &Shared) {
    shared.metrics.conn_rate_limited.inc();
    if shared.tls.is_none() {
        let _ = stream.try_write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n\
              Content-Type: application/json\r\nContent-Length: 76\r\n\r\n\
              {\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"too many new connections\"}\n",
        );
    }
    drop(stream);
}

/// Whether a WebSocket upgrade's `Origin` is allowed: any origin when
/// `server.allowed_origins` is empty, no `Origin` header (a non-browser
/// client) always; otherwise a case-insensitive exact match.
fn origin_allowed(req: &Request<Incoming>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = req.headers().get(hyper::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim();
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let sndbuf = shared.config.session.send_buffer_bytes;
    if sndbuf > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(sndbuf);
    }
    if let Some(tls) = shared.tls.clone() {
        // Bounded like a request head, so a half-open client cannot hold
        // the task forever.
        let limit = Duration::from_millis(shared.config.server.header_timeout_ms);
        let failure = match tokio::time::timeout(limit, tls.accept(stream)).await {
            Ok(Ok(tls_stream)) => return serve_http(tls_stream, peer, shared).await,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::debug!(%peer, "tls handshake failed: {failure}");
        shared.metrics.tls_handshake_failures.inc();
        return;
    }
    serve_http(stream, peer, shared).await
}

/// Serves HTTP/1.1 and WebSocket upgrades over plain TCP or TLS.
async fn serve_http<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
            let ent = match rest_auth(&req, &shared) {
                Ok(e) => e,
                Err(r) => return *r,
            };
            // With auth on, only the symbols the key may see.
            let names: Vec<&str> = shared
                .symbols
                .iter()
                .map(|(_, n)| n)
                .filter(|n| crate::auth::allowed(ent.as_deref(), n))
                .collect();
            json(
                StatusCode::OK,
                serde_json::to_string(&names).unwrap_or_default(),
            )
        }
        "/v1/quotes" => match rest_auth(&req, &shared) {
            Ok(ent) => quotes(&req, &shared, ent.as_deref()),
            Err(r) => *r,
        },
        _ => error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "no such endpoint",
        ),
    }
}

/// The caller's entitlement (`None` with auth off), or the 401 to send.
fn rest_auth(
    req: &Request<Incoming>,
    shared: &Shared,
) -> Result<Option<Arc<crate::auth::Entitlement>>, Box<Resp>> {
    if !shared.auth.enabled() {
        return Ok(None);
    }
    let refused = |why: &str| {
        Box::new(error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            &format!("{why}: a valid token is required (?token= or Authorization: Bearer)"),
        ))
    };
    let Some(token) = request_token(req) else {
        return Err(refused("no token"));
    };
    match shared.auth.authenticate(&token) {
        Ok(ent) => Ok(Some(ent)),
        Err(e) => {
            shared.metrics.auth_failure(e.metric_reason());
            Err(refused(e.reason()))
        }
    }
}

fn quotes(
    req: &Request<Incoming>,
    shared: &Shared,
    ent: Option<&crate::auth::Entitlement>,
) -> Resp {
    let Some(list) = query_param(req, "symbols") else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing query parameter `symbols` (comma-separated)",
        );
    };
    let list = percent_decode(list);
    let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    let cap = shared.config.session.max_symbols;
    let max = ent.and_then(|e| e.max_symbols).map_or(cap, |m| m.min(cap));
    if names.len() > max {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManySymbols,
            &format!("{} symbols; the limit is {max}", names.len()),
        );
    }
    let mut out = String::from("[");
    for name in names {
        // Entitlement before existence (as on the WebSocket), and the whole
        // request fails: nothing of an un-entitled symbol leaks.
        if crate::model::valid_symbol(name) && !crate::auth::allowed(ent, name) {
            shared.metrics.auth_failure("forbidden_symbol");
            let body = serde_json::json!({"type": "error", "code": "forbidden_symbol",
                "message": format!("not entitled to symbol: {name}"), "symbol": name});
            return json(StatusCode::FORBIDDEN, body.to_string());
        }
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
    if !origin_allowed(&req, &shared.config.server.allowed_origins) {
        shared.metrics.origin_rejected.inc();
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::BadRequest,
            "Origin not allowed (server.allowed_origins)",
        );
    }
    let token = request_token(&req)
        .filter(|_| shared.auth.enabled())
        .map(|t| shared.auth.authenticate(&t));
    // The address's cap first: a session it turns away takes no place of
    // the server's (an address at its cap reconnecting would otherwise
    // hold server places while each close goes out).
    let per_ip = shared.ip_sessions.acquire(peer.ip());
    let permit = per_ip
        .is_ok()
        .then(|| shared.conn_limit.clone().try_acquire_owned().ok())
        .flatten();
    let on_upgrade = hyper::upgrade::on(&mut req);
    // This task only waits for hyper to hand over the connection; the
    // session then runs as a task of its own, so the session's task holds
    // none of what this one needed (the upgrade future, the peer address),
    // and this one is freed.
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        let adm = Admission {
            permit,
            per_ip,
            token,
        };
        // Plain TCP: the session runs on the socket itself (shared with
        // the fan-out's direct writes, see `session::Direct`), with any
        // bytes hyper read past the handshake put back in front.
        match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => {
                let tcp = std::sync::Arc::new(parts.io.into_inner());
                let ws = WebSocketStream::from_partially_read(
                    session::PlainTcp(tcp.clone()),
                    parts.read_buf.to_vec(),
                    Role::Server,
                    Some(shared.ws_config),
                )
                .await;
                tokio::spawn(session::run(ws, shared, adm, Some(tcp)));
            }
            Err(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(shared.ws_config),
                )
                .await;
                tokio::spawn(session::run(ws, shared, adm, None));
            }
        }
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
