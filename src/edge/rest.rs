//! The REST endpoints (`/v1/quotes`, `/v1/symbols`, `/v1/feeds`), `/metrics`,
//! `/healthz` and `/readyz`; `/v1/ws` is handed to [`super::upgrade`], and
//! any other path to [`super::web`] (the board and its assets).

use super::response::{self, error, json, symbol_error, text, Resp};
use super::{upgrade, Context};
use crate::protocol::{encode_quote, ErrorCode};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Minimal percent-decoding for query values (tokens, symbol lists).
pub(super) fn percent_decode(s: &str) -> String {
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
pub(super) fn request_token(req: &Request<Incoming>) -> Option<String> {
    if let Some(t) = query_param(req, "token") {
        return Some(percent_decode(t));
    }
    let h = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

pub(super) fn route(req: Request<Incoming>, ctx: Arc<Context>, peer: SocketAddr) -> Resp {
    let path = req.uri().path();
    // Behind a trusted proxy the client is the forwarded address: its
    // session places, its connection rate (not checked at accept for a
    // proxy's connections), its logs.
    let via_proxy = !ctx.trusted.is_empty() && super::proxy::is_trusted(&ctx.trusted, peer.ip());
    let peer = super::proxy::client_addr(&req, peer, &ctx.trusted);
    if via_proxy && (path == "/v1/ws" || path == "/v1/sse") && !ctx.conn_limiter.check(peer.ip()) {
        ctx.metrics.conn_rate_limited.inc();
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many new connections from this address (server.conn_rate_per_ip)",
        );
    }
    if (path == "/v1/ws" || path == "/v1/sse") && !ctx.role.serves_clients() {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this is an ingest node ([cluster] role = \"ingest\"): it serves no clients; connect to an edge node",
        );
    }
    if path == "/v1/ws" {
        return upgrade::upgrade(req, ctx, peer);
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
            let feeds: serde_json::Map<String, serde_json::Value> = ctx
                .feeds
                .iter()
                .map(|f| (f.name.clone(), serde_json::Value::Bool(f.is_up())))
                .collect();
            let nats = (ctx.role != crate::cluster::Role::Standalone)
                .then(|| ctx.metrics.cluster.connected.get() == 1);
            let ready = ctx.feeds.all_up() && nats != Some(false);
            let body = match nats {
                Some(n) => serde_json::json!({"ready": ready, "feeds": feeds, "nats": n}),
                None => serde_json::json!({"ready": ready, "feeds": feeds}),
            }
            .to_string();
            let st = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(st, body)
        }
        "/metrics" => response::metrics(ctx.metrics.render()),
        "/v1/symbols" => {
            let ent = match rest_auth(&req, &ctx) {
                Ok(e) => e,
                Err(r) => return *r,
            };
            // With auth on, only the symbols the key may see.
            let names: Vec<&str> = ctx
                .session
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
        "/v1/sse" => super::sse::serve(req, ctx, peer),
        "/v1/feeds" => match rest_auth(&req, &ctx) {
            Ok(_) => feeds(&ctx),
            Err(r) => *r,
        },
        "/v1/quotes" => match rest_auth(&req, &ctx) {
            Ok(ent) => quotes(&req, &ctx, ent.as_deref()),
            Err(r) => *r,
        },
        _ => super::web::asset(path).unwrap_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                &format!(
                    "no such endpoint: {}; see / (the board), /v1/ws, /v1/sse, /v1/quotes, /v1/symbols, /v1/feeds, /metrics, /healthz, /readyz",
                    path.chars().take(100).collect::<String>()
                ),
            )
        }),
    }
}

/// `GET /v1/feeds`: each feed's name, state (`live`, or `stale` while it
/// is silent or disconnected), its number of symbols and how long it has
/// been silent. Always 200 (unlike `/readyz`, which is for orchestrators),
/// so a page can poll it without logging errors.
fn feeds(ctx: &Context) -> Resp {
    let list: Vec<serde_json::Value> = ctx
        .feeds
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "state": if f.is_up() { "live" } else { "stale" },
                "symbols": f.symbol_count(),
                "silent_ms": f.silent_ms(),
            })
        })
        .collect();
    json(StatusCode::OK, serde_json::Value::Array(list).to_string())
}

/// The caller's entitlement (`None` with auth off), or the 401 to send.
pub(super) fn rest_auth(
    req: &Request<Incoming>,
    ctx: &Context,
) -> Result<Option<Arc<crate::auth::Entitlement>>, Box<Resp>> {
    if !ctx.session.auth.enabled() {
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
    match ctx.session.auth.authenticate(&token) {
        Ok(ent) => Ok(Some(ent)),
        Err(e) => {
            ctx.metrics.auth_failure(e.metric_reason());
            Err(refused(e.reason()))
        }
    }
}

/// The symbols of the query's `symbols=A,B` (percent-decoded, names
/// trimmed, empty ones skipped), checked alike for every endpoint that
/// takes such a list: at most the key's `max_symbols`; each name entitled
/// (checked before existence, as on the WebSocket, so a forbidden name is
/// 403 whether or not it exists) and known (`unknown_status` otherwise).
/// One bad name refuses the whole request: nothing of an un-entitled
/// symbol leaks.
pub(super) fn query_symbols(
    req: &Request<Incoming>,
    ctx: &Context,
    ent: Option<&crate::auth::Entitlement>,
    unknown_status: StatusCode,
) -> Result<Vec<crate::model::SymbolId>, Box<Resp>> {
    let Some(list) = query_param(req, "symbols") else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing query parameter `symbols` (comma-separated, e.g. symbols=AAPL,MSFT)",
        )));
    };
    let list = percent_decode(list);
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let max = crate::auth::symbol_cap(ent, ctx.session.config.max_symbols);
    if names.len() > max {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManySymbols,
            &format!("{} symbols asked for; the limit is {max}", names.len()),
        )));
    }
    let mut syms = Vec::with_capacity(names.len());
    for name in names {
        if crate::model::valid_symbol(name) && !crate::auth::allowed(ent, name) {
            ctx.metrics.auth_failure("forbidden_symbol");
            let message = format!("not entitled to symbol: {name}");
            return Err(Box::new(symbol_error(
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenSymbol,
                &message,
                name,
            )));
        }
        let Some(sym) = ctx.session.symbols.get(name) else {
            let shown: String = name.chars().take(64).collect();
            let message = format!("no such symbol: {shown}");
            return Err(Box::new(symbol_error(
                unknown_status,
                ErrorCode::UnknownSymbol,
                &message,
                &shown,
            )));
        };
        syms.push(sym);
    }
    Ok(syms)
}

fn quotes(req: &Request<Incoming>, ctx: &Context, ent: Option<&crate::auth::Entitlement>) -> Resp {
    let syms = match query_symbols(req, ctx, ent, StatusCode::NOT_FOUND) {
        Ok(syms) => syms,
        Err(r) => return *r,
    };
    quotes_of(ctx, syms)
}

/// `GET /v1/quotes` on an edge node: symbols no local session holds are
/// not followed on NATS, so their last values are read from the cluster's
/// stream first (what a subscribed symbol has is current already).
pub(super) async fn quotes_from_stream(req: Request<Incoming>, ctx: Arc<Context>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "use GET",
        );
    }
    let syms = match rest_auth(&req, &ctx) {
        Ok(ent) => match query_symbols(&req, &ctx, ent.as_deref(), StatusCode::NOT_FOUND) {
            Ok(syms) => syms,
            Err(r) => return *r,
        },
        Err(r) => return *r,
    };
    drop(req);
    if let Some(lv) = &ctx.last_values {
        let slots = &ctx.session.slots;
        let unfollowed: Vec<_> = syms
            .iter()
            .copied()
            .filter(|s| !slots.interested(*s))
            .collect();
        // At most a few seconds: NATS may be away, and then the values
        // are what they are.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), lv.refresh(&unfollowed)).await;
    }
    quotes_of(&ctx, syms)
}

fn quotes_of(ctx: &Context, syms: Vec<crate::model::SymbolId>) -> Resp {
    let mut out = String::from("[");
    for sym in syms {
        if let Some((q, seq)) = ctx.session.slots.read(sym) {
            if out.len() > 1 {
                out.push(',');
            }
            encode_quote(&mut out, &ctx.session.symbols, sym, seq, &q, false);
        }
    }
    out.push(']');
    json(StatusCode::OK, out)
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
