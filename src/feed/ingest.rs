//! HTTP ingest (`kind = "http"`): custom upstreams push quotes to
//! `POST /v1/ingest` as NDJSON, one quote per line.
//!
//! ```text
//! POST /v1/ingest
//! Authorization: Bearer <ingest key>
//!
//! {"symbol":"AAPL","bid":"189.12","bid_size":"300","ask":"189.14","ask_size":"200","last":"189.13","last_size":"100","ts":1763900000123456789}
//! {"symbol":"MSFT","last":"410.15"}
//! ```
//!
//! * **Key.** The bearer key selects the feed: its SHA-256 is compared in
//!   constant time ([`crate::auth`]) with every `http` feed's `key_sha256`,
//!   and the feed whose hash matches takes the body. Only the header is
//!   accepted (a key in a URL ends up in access logs).
//! * **Lines.** Each line is parsed in place with simd-json. Prices and
//!   sizes are decimal **strings**, parsed exactly to `Decimal`; a JSON
//!   number is refused for that line (`bad_request`, "prices and sizes must
//!   be decimal strings"), because the parser turns numbers into `f64` and
//!   the exact text the pusher meant would be lost. `ts` is an optional
//!   integer (ns since the Unix epoch). At least one of `bid`, `ask`,
//!   `last` is required; unknown fields are errors (a typo must not be
//!   dropped silently). A trailing newline ends the last line; any other
//!   empty line is an error.
//! * **Partial success.** Every line stands alone: bad lines are reported
//!   with their 1-based line number and a code, and the good lines of the
//!   same body are applied anyway, in order. Codes: `bad_request` (not a
//!   usable quote), `unknown_symbol` (not one of this feed's `symbols`), or
//!   the normalizer's reject reason (`crossed`, `negative_size`,
//!   `non_positive_price`, `out_of_order`, `scale`, `empty`). The errors
//!   list holds the first [`MAX_REPORTED_ERRORS`]; `errors_omitted` counts
//!   the rest.
//! * **Bounded.** The body is read frame by frame up to the feed's
//!   `max_body_bytes` (413 past it) within [`BODY_TIMEOUT`] (408 past it);
//!   nothing is buffered beyond the limit.

use super::{FeedState, ParseError};
use crate::auth::Auth;
use crate::config::IngestConfig;
use crate::gateway::Shared;
use crate::model::{field, Quote, SymbolId};
use crate::normalize::{FeedNormalizer, Normalizer};
use crate::protocol::ErrorCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use hyper::{Method, Request, Response, StatusCode};
use simd_json::value::borrowed::{Object, Value};
use simd_json::StaticNode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per-line errors listed in a response; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;
/// Time a client gets to send the whole body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies up to this size are applied on the request's task; larger ones on
/// the blocking pool.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// One `http` feed: who may push to it, what it may write, and its
/// normalizer.
pub struct IngestFeed {
    pub name: String,
    key: Auth,
    symbols: HashMap<String, SymbolId>,
    /// Shared by every request to this feed. A std mutex, not an async one:
    /// it is taken for one line's `apply` or reject count at a time (a few
    /// microseconds, no `.await` while held), so requests to one feed
    /// interleave line by line and never wait on each other's I/O.
    norm: Mutex<FeedNormalizer>,
    state: Arc<FeedState>,
    pub max_body_bytes: usize,
}

impl IngestFeed {
    /// `ids[i]` is the interned id of `cfg.symbols[i]`.
    pub fn new(
        cfg: &IngestConfig,
        ids: &[SymbolId],
        norm: Normalizer,
        state: Arc<FeedState>,
    ) -> Result<IngestFeed, String> {
        let key = Auth::new(std::slice::from_ref(&cfg.key_sha256));
        if !key.enabled() {
            // Auth::verify accepts anything when no hash is configured.
            return Err("key_sha256 must be 64 hex digits (the SHA-256 of the ingest key)".into());
        }
        if ids.len() != cfg.symbols.len() {
            return Err("internal: symbol ids do not match the configured symbols".into());
        }
        Ok(IngestFeed {
            name: cfg.name.clone(),
            key,
            symbols: cfg
                .symbols
                .iter()
                .cloned()
                .zip(ids.iter().copied())
                .collect(),
            norm: Mutex::new(FeedNormalizer::new(norm, cfg.normalize.clone())),
            state,
            max_body_bytes: cfg.max_body_bytes,
        })
    }

    fn normalizer(&self) -> std::sync::MutexGuard<'_, FeedNormalizer> {
        // A panic while holding the lock cannot leave the normalizer
        // inconsistent in a way that matters (at worst one high-water mark
        // is not advanced), so a poisoned lock is used as is.
        self.norm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies an NDJSON body line by line; the body is parsed in place.
    pub fn apply_body(&self, body: &mut [u8]) -> Report {
        let mut report = Report::default();
        let mut buffers = simd_json::Buffers::new(256);
        // A trailing newline ends the last line; it does not start one.
        let body = match body {
            [rest @ .., b'\n'] => rest,
            b => b,
        };
        if body.is_empty() {
            return report;
        }
        for (i, line) in body.split_mut(|b| *b == b'\n').enumerate() {
            let line_no = i + 1;
            let line = match line {
                [rest @ .., b'\r'] => rest,
                l => l,
            };
            match self.parse_line(line, &mut buffers) {
                Ok((sym, quote)) => {
                    let applied = self.normalizer().apply(sym, quote, None);
                    match applied {
                        Ok(_) => report.accepted += 1,
                        Err(r) => report.reject(
                            line_no,
                            r.as_str(),
                            format!("quote rejected: {}", r.as_str()),
                        ),
                    }
                }
                Err(LineError::Bad(e)) => {
                    self.normalizer().parse_error(&e);
                    report.reject(line_no, ErrorCode::BadRequest.as_str(), e.to_string());
                }
                Err(LineError::UnknownSymbol(name)) => {
                    self.normalizer()
                        .parse_error(&ParseError::Unmapped(name.clone()));
                    report.reject(
                        line_no,
                        ErrorCode::UnknownSymbol.as_str(),
                        format!("{name:?} is not one of this feed's symbols"),
                    );
                }
            }
        }
        if report.accepted > 0 {
            self.state.alive();
        }
        report
    }

    fn parse_line(
        &self,
        line: &mut [u8],
        buffers: &mut simd_json::Buffers,
    ) -> Result<(SymbolId, Quote), LineError> {
        if line.trim_ascii().is_empty() {
            return Err(LineError::Bad(ParseError::Json("empty line".into())));
        }
        let v = simd_json::value::borrowed::to_value_with_buffers(line, buffers)
            .map_err(|e| LineError::Bad(ParseError::Json(e.to_string())))?;
        let Value::Object(o) = &v else {
            return Err(LineError::Bad(ParseError::Unexpected(
                "each line must be a JSON object".into(),
            )));
        };
        parse_quote(o, &self.symbols)
    }
}

enum LineError {
    Bad(ParseError),
    UnknownSymbol(String),
}

const PRICE_FIELDS: [(&str, u8); 6] = [
    ("bid", field::BID),
    ("bid_size", field::BID_SIZE),
    ("ask", field::ASK),
    ("ask_size", field::ASK_SIZE),
    ("last", field::LAST),
    ("last_size", field::LAST_SIZE),
];

fn parse_quote(
    o: &Object,
    symbols: &HashMap<String, SymbolId>,
) -> Result<(SymbolId, Quote), LineError> {
    let bad = |field: &'static str, why: &str| LineError::Bad(ParseError::field(field, why));
    let mut q = Quote::default();
    let mut symbol = None;
    for (k, v) in o.iter() {
        let k: &str = k;
        if k == "symbol" {
            match v {
                Value::String(s) => symbol = Some(&**s),
                _ => return Err(bad("symbol", "must be a string")),
            }
            continue;
        }
        if k == "ts" {
            let ts = match v {
                Value::Static(StaticNode::I64(t)) if *t >= 0 => *t,
                Value::Static(StaticNode::U64(t)) => {
                    i64::try_from(*t).map_err(|_| bad("ts", "out of range"))?
                }
                _ => {
                    return Err(bad(
                        "ts",
                        "must be a non-negative integer: ns since the Unix epoch",
                    ))
                }
            };
            q.ts = ts;
            q.present |= field::TS;
            continue;
        }
        let Some(&(name, bit)) = PRICE_FIELDS.iter().find(|(n, _)| *n == k) else {
            let shown: String = k.chars().take(40).collect();
            return Err(LineError::Bad(ParseError::Unexpected(format!(
                "unknown field {shown:?} (symbol, bid, bid_size, ask, ask_size, last, last_size, ts)"
            ))));
        };
        let text = match v {
            Value::String(s) => &**s,
            Value::Static(StaticNode::Null) | Value::Static(StaticNode::Bool(_)) => {
                return Err(bad(name, "must be a decimal string (omit the field if unknown)"))
            }
            Value::Static(_) => {
                return Err(bad(
                    name,
                    "prices and sizes must be decimal strings (e.g. \"189.12\"), not JSON numbers: a number's exact text is not kept",
                ))
            }
            _ => return Err(bad(name, "must be a decimal string")),
        };
        let d = super::parse_decimal(text, name).map_err(LineError::Bad)?;
        match bit {
            field::BID => q.bid = d,
            field::BID_SIZE => q.bid_size = d,
            field::ASK => q.ask = d,
            field::ASK_SIZE => q.ask_size = d,
            field::LAST => q.last = d,
            _ => q.last_size = d,
        }
        q.present |= bit;
    }
    let Some(name) = symbol else {
        return Err(bad("symbol", "missing"));
    };
    let Some(&sym) = symbols.get(name) else {
        return Err(LineError::UnknownSymbol(name.chars().take(40).collect()));
    };
    if q.present & (field::BID | field::ASK | field::LAST) == 0 {
        return Err(LineError::Bad(ParseError::Unexpected(
            "a quote needs at least one of bid, ask, last".into(),
        )));
    }
    Ok((sym, q))
}

/// What became of one request's lines.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub accepted: u64,
    pub rejected: u64,
    /// The first [`MAX_REPORTED_ERRORS`] errors, by line.
    pub errors: Vec<LineReport>,
    /// Errors beyond the listed ones.
    pub errors_omitted: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct LineReport {
    pub line: usize,
    pub code: &'static str,
    pub message: String,
}

impl Report {
    fn reject(&mut self, line: usize, code: &'static str, message: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineReport {
                line,
                code,
                message,
            });
        } else {
            self.errors_omitted += 1;
        }
    }

    /// `{"accepted":N,"rejected":M,"errors":[{"line":..,"code":..,"message":..}],"errors_omitted":K}`
    /// (fields in this order).
    pub fn to_json(&self) -> String {
        // Plain numbers, strings and a Vec of them: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Every `http` feed of the gateway.
#[derive(Default)]
pub struct Ingest {
    feeds: Vec<Arc<IngestFeed>>,
}

impl Ingest {
    pub fn new(feeds: Vec<IngestFeed>) -> Self {
        Ingest {
            feeds: feeds.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    /// The feed this key opens. Every feed's hash is compared, so the time
    /// taken does not say which feed (if any) matched; if two feeds share a
    /// key, the first in the config wins.
    pub fn feed_for_key(&self, key: &str) -> Option<&Arc<IngestFeed>> {
        let mut found = None;
        for f in &self.feeds {
            if f.key.verify(key) && found.is_none() {
                found = Some(f);
            }
        }
        found
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Resp {
    let body = serde_json::json!({"type": "error", "code": code.as_str(), "message": message});
    respond(status, body.to_string())
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
pub async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Resp {
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
    if shared.ingest.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "ingest is not configured: no feed of kind \"http\"",
        );
    }
    let Some(feed) = bearer(&req).and_then(|k| shared.ingest.feed_for_key(k)) else {
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
    respond(StatusCode::OK, report.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NormalizeConfig;
    use crate::metrics::Metrics;
    use crate::slots::SlotTable;

    fn feed() -> (Arc<SlotTable>, IngestFeed) {
        let slots = Arc::new(SlotTable::new(2, 1));
        let metrics = Arc::new(Metrics::new());
        let cfg = IngestConfig {
            name: "push".into(),
            key_sha256: crate::auth::token_hash_hex("k"),
            symbols: vec!["AAPL".into(), "BTC-USD".into()],
            normalize: NormalizeConfig::default(),
            ..IngestConfig::default()
        };
        let norm = Normalizer::new("push", slots.clone(), &metrics);
        let state = Arc::new(FeedState::new("push", vec![SymbolId(0), SymbolId(1)], None));
        let f = IngestFeed::new(&cfg, &[SymbolId(0), SymbolId(1)], norm, state).unwrap();
        (slots, f)
    }

    fn codes(r: &Report) -> Vec<(usize, &'static str)> {
        r.errors.iter().map(|e| (e.line, e.code)).collect()
    }

    #[test]
    fn lines_stand_alone() {
        let (slots, f) = feed();
        let mut body = concat!(
            r#"{"symbol":"AAPL","bid":"189.1200","bid_size":"300","ask":"189.14","ts":5}"#,
            "\r\n",
            r#"{"symbol":"AAPL","bid":189.12}"#,
            "\n",
            r#"{"symbol":"AAPL","bid":"1e3"}"#,
            "\n",
            "\n",
            r#"{"symbol":"AAPL","bidd":"1"}"#,
            "\n",
            r#"{"symbol":"NOPE","bid":"1"}"#,
            "\n",
            r#"{"symbol":"AAPL","ts":6}"#,
            "\n",
            r#"{"symbol":"AAPL","ask":"189.10"}"#,
            "\n",
            r#"{"symbol":"AAPL","last":"189.13","ts":4}"#,
            "\n",
            r#"{"symbol":"AAPL","last":"189.13","ts":-1}"#,
            "\n",
            r#"["AAPL"]"#,
            "\n",
            r#"{"symbol":"BTC-USD","last":"97000.01000000","last_size":"0.001"}"#,
            "\n",
        )
        .as_bytes()
        .to_vec();
        let r = f.apply_body(&mut body);
        assert_eq!((r.accepted, r.rejected), (2, 10), "{r:?}");
        assert_eq!(
            codes(&r),
            vec![
                (2, "bad_request"),
                (3, "bad_request"),
                (4, "bad_request"),
                (5, "bad_request"),
                (6, "unknown_symbol"),
                (7, "bad_request"),
                (8, "crossed"),
                (9, "out_of_order"),
                (10, "bad_request"),
                (11, "bad_request"),
            ]
        );
        assert!(
            r.errors[0].message.contains("decimal strings"),
            "{}",
            r.errors[0].message
        );
        let (q, seq) = slots.read(SymbolId(0)).unwrap();
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string(), seq),
            ("189.1200".into(), "189.14".into(), 1)
        );
        assert!(!q.has(field::ASK_SIZE), "fields not sent stay absent");
        assert_eq!(
            slots.read(SymbolId(1)).unwrap().0.last_size.to_string(),
            "0.001"
        );
    }

    #[test]
    fn errors_list_is_capped() {
        let (_, f) = feed();
        let mut body = "x\n".repeat(MAX_REPORTED_ERRORS + 7).into_bytes();
        let r = f.apply_body(&mut body);
        assert_eq!(r.rejected, MAX_REPORTED_ERRORS as u64 + 7);
        assert_eq!(r.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(r.errors_omitted, 7);
        let mut empty = Vec::new();
        assert_eq!(f.apply_body(&mut empty).rejected, 0);
    }

    #[test]
    fn keys_select_feeds() {
        let (_, f) = feed();
        let ingest = Ingest::new(vec![f]);
        assert!(ingest.feed_for_key("k").is_some());
        assert!(ingest.feed_for_key("k ").is_none());
        assert!(ingest.feed_for_key("").is_none());
    }
}
