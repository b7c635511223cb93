//! `GET /v1/sse?symbols=A,B&max_hz=N&token=T`: the request's checks (the
//! same Origin allow-list, auth, entitlements and limits as `/v1/ws`), then
//! a [`session::sse`](crate::session::sse) session streaming into the
//! response body. A bad request gets a JSON error naming the problem.

use super::response::{error, Body, Resp};
use super::rest::{query_param, query_symbols, rest_auth};
use super::upgrade::{admit, origin_allowed};
use super::Context;
use crate::protocol::{Disconnect, ErrorCode};
use crate::session::sse::{self, SseStart};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The stream's response, or the error response that refuses it.
pub(super) fn serve(req: Request<Incoming>, ctx: Arc<Context>, peer: SocketAddr) -> Resp {
    let allowed = origin_allowed(&req, &ctx.config.allowed_origins);
    let mut r = match start(&req, &ctx, peer) {
        Ok(start) => stream(ctx, start),
        Err(r) => *r,
    };
    // A page of another allowed origin may read the stream and its
    // errors: EventSource is subject to CORS. A refused origin gets its
    // 403 without the header, so the page learns nothing more.
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN).filter(|_| allowed) {
        let h = r.headers_mut();
        h.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

fn bad(code: ErrorCode, message: &str) -> Box<Resp> {
    Box::new(error(StatusCode::BAD_REQUEST, code, message))
}

/// Checks the request in the order a client can act on: where it comes
/// from, who it is, what it asks for; then takes the session's places.
fn start(req: &Request<Incoming>, ctx: &Context, peer: SocketAddr) -> Result<SseStart, Box<Resp>> {
    if !origin_allowed(req, &ctx.config.allowed_origins) {
        ctx.metrics.origin_rejected.inc();
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            ErrorCode::BadRequest,
            "Origin not allowed (server.allowed_origins)",
        )));
    }
    let s = &ctx.session;
    let entitlement = rest_auth(req, ctx)?;
    let syms = query_symbols(req, ctx, entitlement.as_deref(), StatusCode::BAD_REQUEST)?;
    if syms.is_empty() {
        return Err(bad(
            ErrorCode::BadRequest,
            "symbols names no symbol: /v1/sse?symbols=A,B",
        ));
    }
    let max_hz = match query_param(req, "max_hz") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(h) if h.is_finite() && h > 0.0 => Some(h),
            _ => {
                let shown: String = v.chars().take(32).collect();
                return Err(bad(
                    ErrorCode::BadRequest,
                    &format!("max_hz must be a positive number, not {shown:?}"),
                ));
            }
        },
    };
    let trades = match query_param(req, "trades") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            let shown: String = v.chars().take(32).collect();
            return Err(bad(
                ErrorCode::BadRequest,
                &format!("trades must be true or false, not {shown:?}"),
            ));
        }
    };
    let held = admit(ctx, peer).map_err(|d| {
        ctx.metrics.connections_rejected.inc();
        if *d == Disconnect::ADDRESS_FULL {
            ctx.metrics.ip_sessions_full.inc();
        }
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RateLimited,
            d.reason,
        ))
    })?;
    let key_conn = match &entitlement {
        Some(ent) => s.auth.acquire(ent).map_err(|_| {
            ctx.metrics.auth_failure("key_connection_limit");
            Box::new(error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                Disconnect::KEY_AT_LIMIT.reason,
            ))
        })?,
        None => None,
    };
    Ok(SseStart {
        syms,
        max_hz,
        trades,
        key_conn,
        entitlement,
        held,
    })
}

/// The response whose body is the session's events. One frame waits in
/// the channel at most: a client that does not read holds the session's
/// next frame back, and the values coalesce in the slots meanwhile.
fn stream(ctx: Arc<Context>, start: SseStart) -> Resp {
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(sse::run(ctx.session.clone(), start, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let body: Body = StreamBody::new(events).boxed_unsync();
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Proxies (nginx) must pass each event on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
