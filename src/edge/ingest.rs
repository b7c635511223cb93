//! `POST /v1/ingest`: the HTTP side of `kind = "http"` feeds. The bearer
//! key picks the feed (its SHA-256 compared in constant time with every
//! feed's `key_sha256`); the body is read with bounds in size and time and
//! handed to the feed ([`crate::feed::ingest`]), which answers with a
//! report of its lines.

use super::response::{error, json, Resp};
use crate::auth::Auth;
use crate::feed::ingest::IngestFeed;
use crate::protocol::ErrorCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, EXPECT};
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Time a client gets to send the whole body once its headers are in.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies up to this size are applied on the request's task; larger ones on
/// the blocking pool.
pub(super) const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Every `http` feed of the gateway, each behind its key.
#[derive(Default)]
pub(crate) struct Ingest {
    feeds: Vec<(Auth, Arc<IngestFeed>)>,
}

impl Ingest {
    /// `feeds`: each feed with the SHA-256 (hex) of its key, validated
    /// (`key_sha256`).
    pub(crate) fn new(feeds: Vec<(String, IngestFeed)>) -> Self {
        Ingest {
            feeds: feeds
                .into_iter()
                .map(|(hash, f)| (Auth::new(std::slice::from_ref(&hash)), Arc::new(f)))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    /// The feed this key opens. Every feed's hash is compared, so the time
    /// taken does not say which feed (if any) matched; if two feeds share a
    /// key, the first in the config wins.
    pub(crate) fn feed_for_key(&self, key: &str) -> Option<&Arc<IngestFeed>> {
        let mut found = None;
        for (k, f) in &self.feeds {
            // A feed without a usable hash takes no key (Auth::verify
            // accepts anything when nothing is configured).
            if k.enabled() && k.verify(key) && found.is_none() {
                found = Some(f);
            }
        }
        found
    }
}

/// The ingest key: `Authorization: Bearer KEY` only.
fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let h = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

enum BodyError {
    TooLarge,
    TimedOut,
    Read(String),
}

/// Reads at most `max` bytes of body. Past the limit it keeps reading and
/// discarding up to `drain` more bytes, so the 413 reaches a client that is
/// still sending instead of being lost to a connection reset.
async fn read_body(mut body: Incoming, max: usize, drain: usize) -> Result<Vec<u8>, BodyError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen <= max {
                buf.extend_from_slice(&data);
            } else {
                buf = Vec::new();
                if seen > max.saturating_add(drain) {
                    break;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) if seen > max => Err(BodyError::TooLarge),
        Ok(Ok(())) => Ok(buf),
    }
}

fn too_large(max: usize) -> Resp {
    let mut r = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        &format!("request body larger than this feed's max_body_bytes ({max}); send fewer lines per request"),
    );
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `POST /v1/ingest`.
pub(super) async fn handle(req: Request<Incoming>, ingest: &Ingest) -> Resp {
    if req.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "use POST with an NDJSON body",
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if ingest.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "ingest is not configured: no feed of kind \"http\"",
        );
    }
    let Some(feed) = bearer(&req).and_then(|k| ingest.feed_for_key(k)).cloned() else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid ingest key is required (Authorization: Bearer KEY)",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    let max = feed.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain = max.saturating_mul(4).max(64 * 1024);
    if let Some(n) = declared {
        let expects_continue = req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // Refuse before reading when the client waits for our go-ahead or
        // the body is too large to be worth draining.
        if n > max as u64 && (expects_continue || n > max.saturating_add(drain) as u64) {
            return too_large(max);
        }
    }
    let mut body = match read_body(req.into_body(), max, drain).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(max),
        Err(BodyError::TimedOut) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                &format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            );
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(BodyError::Read(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &format!("cannot read the body: {e}"),
            )
        }
    };
    let report = if body.len() <= INLINE_BODY_BYTES {
        feed.apply_body(&mut body)
    } else {
        // A big body takes milliseconds to parse: do it on the blocking
        // pool so a large push never stalls a runtime worker.
        let f = feed.clone();
        match tokio::task::spawn_blocking(move || f.apply_body(&mut body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(feed = %feed.name, "ingest task failed: {e}");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "ingest failed",
                );
            }
        }
    };
    if report.rejected > 0 {
        tracing::debug!(feed = %feed.name, accepted = report.accepted, rejected = report.rejected, "ingest");
    }
    json(StatusCode::OK, report.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::ingest::IngestConfig;
    use crate::feed::FeedState;
    use crate::metrics::Metrics;
    use crate::model::SymbolId;
    use crate::normalize::Normalizer;
    use crate::slots::SlotTable;

    fn feed() -> IngestFeed {
        let slots = Arc::new(SlotTable::new(1, 1));
        let metrics = Arc::new(Metrics::new());
        let cfg = IngestConfig {
            name: "push".into(),
            symbols: vec!["AAPL".into()],
            ..IngestConfig::default()
        };
        let norm = Normalizer::new("push", slots, &metrics);
        let state = Arc::new(FeedState::new("push", vec![SymbolId(0)], None));
        IngestFeed::new(&cfg, &[SymbolId(0)], norm, state)
    }

    #[test]
    fn keys_select_feeds() {
        let ingest = Ingest::new(vec![(crate::auth::token_hash_hex("k"), feed())]);
        assert!(ingest.feed_for_key("k").is_some());
        assert!(ingest.feed_for_key("k ").is_none());
        assert!(ingest.feed_for_key("").is_none());
    }
}
