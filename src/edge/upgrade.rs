//! The WebSocket upgrade at `/v1/ws`: the handshake's checks (method,
//! version, key, `Origin`), the token, and the places the session holds
//! (the server's `max_connections`, its address's
//! `max_connections_per_ip`); then the session runs as a task of its own.

use super::limits::IpSessionGuard;
use super::response::{error, switching_protocols, Resp};
use super::rest::request_token;
use super::Context;
use crate::protocol::{Disconnect, ErrorCode};
use crate::session::{self, Admission, Held};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// The places an admitted session holds, released (in this order) when it
/// ends.
struct Places {
    _per_ip: Option<Box<IpSessionGuard>>,
    _permit: OwnedSemaphorePermit,
}

/// The session's places, or the disconnect that turns it away. The
/// address's cap first: a session it turns away takes no place of the
/// server's (an address at its cap reconnecting would otherwise hold
/// server places while each close goes out).
pub(super) fn admit(ctx: &Context, peer: SocketAddr) -> Result<Held, &'static Disconnect> {
    let per_ip = ctx
        .ip_sessions
        .acquire(peer.ip())
        .map_err(|_| &Disconnect::ADDRESS_FULL)?;
    let permit = ctx
        .conn_limit
        .clone()
        .try_acquire_owned()
        .map_err(|_| &Disconnect::SERVER_FULL)?;
    Ok(Box::new(Places {
        _per_ip: per_ip,
        _permit: permit,
    }))
}

/// The tungstenite settings: set deliberately, since the defaults allocate a
/// 128 KiB read buffer per connection and accept 64 MiB messages.
pub(crate) fn ws_config(s: &session::SessionConfig) -> WebSocketConfig {
    // Up to 4x the op limit is read and answered with `payload_too_large`;
    // beyond that the frame is refused outright with 1009.
    let hard = s.max_message_bytes.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(s.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(s.max_frame_bytes.saturating_mul(4).max(64 * 1024))
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
}

/// Whether a WebSocket upgrade's `Origin` is allowed: any origin when
/// `server.allowed_origins` is empty, no `Origin` header (a non-browser
/// client) always, the gateway's own origin (its ticker board at `/`: the
/// `Origin`'s host and port are the request's `Host`) always; otherwise a
/// case-insensitive exact match.
pub(super) fn origin_allowed(req: &Request<Incoming>, allowed: &[String]) -> bool {
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
    if same_origin(origin, req.headers().get(hyper::header::HOST)) {
        return true;
    }
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// `origin` (`scheme://host[:port]`) names the host the request was sent
/// to: a page this gateway served.
fn same_origin(origin: &str, host: Option<&hyper::header::HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let host = host.trim();
    rest.eq_ignore_ascii_case(host)
        || format!("{rest}{default_port}").eq_ignore_ascii_case(host)
        || format!("{host}{default_port}").eq_ignore_ascii_case(rest)
}

fn header_has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

pub(super) fn upgrade(req: Request<Incoming>, ctx: Arc<Context>, peer: SocketAddr) -> Resp {
    let mut r = try_upgrade(req, ctx, peer);
    if r.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A failed handshake ends the connection: the client meant to leave
        // HTTP, so there is no next request to keep it alive for.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn try_upgrade(mut req: Request<Incoming>, ctx: Arc<Context>, peer: SocketAddr) -> Resp {
    let accept = match check_handshake(&req, &ctx) {
        Ok(accept) => accept,
        Err(refused) => return *refused,
    };
    let auth = &ctx.session.auth;
    let token = request_token(&req)
        .filter(|_| auth.enabled())
        .map(|t| auth.authenticate(&t));
    let adm = Admission {
        held: admit(&ctx, peer),
        token,
        peer,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // This task only waits for hyper to hand over the connection; the
    // session then runs as a task of its own, so the session's task holds
    // none of what this one needed (the upgrade future, the peer address),
    // and this one is freed.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => start_session(upgraded, ctx, adm).await,
            Err(e) => tracing::debug!(%peer, "upgrade failed: {e}"),
        }
    });
    switching_protocols(&accept)
}

/// The RFC 6455 handshake's checks and the `Origin` allow-list: the
/// `Sec-WebSocket-Accept` value, or the response that refuses it.
fn check_handshake(req: &Request<Incoming>, ctx: &Context) -> Result<String, Box<Resp>> {
    if !header_has_token(req, UPGRADE, "websocket") || !header_has_token(req, CONNECTION, "upgrade")
    {
        let mut r = error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadRequest,
            "this endpoint speaks WebSocket only: send a WebSocket upgrade request",
        );
        r.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return Err(Box::new(r));
    }
    if req.method() != Method::GET {
        return Err(Box::new(error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "WebSocket upgrade must use GET",
        )));
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
        return Err(Box::new(r));
    }
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing Sec-WebSocket-Key",
        )));
    };
    let accept = derive_accept_key(key.as_bytes());
    if !origin_allowed(req, &ctx.config.allowed_origins) {
        ctx.metrics.origin_rejected.inc();
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            ErrorCode::BadRequest,
            "Origin not allowed (server.allowed_origins)",
        )));
    }
    Ok(accept)
}

/// Runs the session on the connection hyper handed over, as a task of its
/// own. Plain TCP: the session runs on the socket itself (shared with the
/// fan-out's direct writes, see `outbox::Direct`), with any bytes hyper
/// read past the handshake put back in front.
async fn start_session(upgraded: hyper::upgrade::Upgraded, ctx: Arc<Context>, adm: Admission) {
    match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            let tcp = Arc::new(parts.io.into_inner());
            let ws = WebSocketStream::from_partially_read(
                session::PlainTcp(tcp.clone()),
                parts.read_buf.to_vec(),
                Role::Server,
                Some(ctx.ws_config),
            )
            .await;
            tokio::spawn(session::run(ws, ctx.session.clone(), adm, Some(tcp)));
        }
        Err(upgraded) => {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ctx.ws_config),
            )
            .await;
            tokio::spawn(session::run(ws, ctx.session.clone(), adm, None));
        }
    }
}
