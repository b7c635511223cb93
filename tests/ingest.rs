//! HTTP ingest (`kind = "http"`, `POST /v1/ingest`) against a real gateway:
//! mixed good and bad lines, keys, body limits, methods.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use tickergate::auth::token_hash_hex;
use tickergate::config::{Config, FeedConfig, IngestConfig};
use tickergate::Gateway;

const KEY: &str = "s3cret-ingest-key";

fn ingest_feed() -> IngestConfig {
    IngestConfig {
        name: "pusher".into(),
        key_sha256: token_hash_hex(KEY),
        symbols: ["AAPL", "MSFT", "BTC-USD", "ES.Z26"]
            .map(String::from)
            .to_vec(),
        ..IngestConfig::default()
    }
}

async fn start_ingest(tweak: impl FnOnce(&mut IngestConfig)) -> Gateway {
    let mut feed = ingest_feed();
    tweak(&mut feed);
    start(|c| c.feeds = vec![FeedConfig::Http(feed)]).await
}

async fn post(gw: &Gateway, headers: &str, body: &str) -> (u16, Value) {
    ingest_request(gw.local_addr, headers, body).await
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}\r\n")
}

fn pusher_metric(gw: &Gateway, name: &str, reason: Option<&str>) -> f64 {
    let labels = match reason {
        Some(r) => format!("feed=\"pusher\",reason=\"{r}\""),
        None => "feed=\"pusher\"".into(),
    };
    metric(&metrics_text(gw), &format!("tickergate_{name}{{{labels}}}"))
}

#[tokio::test]
async fn mixed_good_and_bad_lines() {
    let gw = start_ingest(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL", "MSFT", "BTC-USD", "ES.Z26"]).await;
    let lines = [
        // 1: good, every field, scale kept.
        r#"{"symbol":"AAPL","bid":"189.1200","bid_size":"300","ask":"189.14","ask_size":"200","last":"189.13","last_size":"100","ts":1763900000123456789}"#,
        // 2: malformed JSON.
        r#"{"symbol":"MSFT","bid":"#,
        // 3: a JSON number for a price.
        r#"{"symbol":"MSFT","bid":410.1,"ask":"410.20"}"#,
        // 4: NaN.
        r#"{"symbol":"MSFT","bid":"NaN","ask":"410.20"}"#,
        // 5: not one of this feed's symbols.
        r#"{"symbol":"XYZ","bid":"1.00"}"#,
        // 6: crossed once merged with line 1 (bid 189.20 > ask 189.14).
        r#"{"symbol":"AAPL","bid":"189.20"}"#,
        // 7: negative size.
        r#"{"symbol":"ES.Z26","bid":"6012.25","bid_size":"-5"}"#,
        // 8: empty line.
        "",
        // 9: good, partial (no sizes).
        r#"{"symbol":"MSFT","bid":"410.1000","ask":"410.2000","last":"410.15"}"#,
        // 10: wrong type for the symbol.
        r#"{"symbol":["BTC-USD"],"last":"1"}"#,
        // 11: good, CRLF line ending.
        "{\"symbol\":\"BTC-USD\",\"last\":\"97000.01000000\",\"last_size\":\"0.00100000\"}\r",
        // 12: zero price.
        r#"{"symbol":"ES.Z26","last":"0"}"#,
        // 13: ts of the wrong type.
        r#"{"symbol":"ES.Z26","bid":"1.5","ts":"soon"}"#,
    ];
    let body = lines.join("\n") + "\n";
    let (st, r) = post(&gw, &bearer(KEY), &body).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&json!(3), &json!(10)),
        "{r}"
    );
    let codes: Vec<(u64, &str)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (2, "bad_request"),
            (3, "bad_request"),
            (4, "bad_request"),
            (5, "unknown_symbol"),
            (6, "crossed"),
            (7, "negative_size"),
            (8, "bad_request"),
            (10, "bad_request"),
            (12, "non_positive_price"),
            (13, "bad_request"),
        ]
    );
    assert_eq!(r["errors_omitted"], 0);
    let msg = |line: u64| {
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["line"] == line)
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(msg(3).contains("decimal strings"), "{}", msg(3));
    assert!(
        msg(4).contains("bid") && msg(4).contains("NaN"),
        "{}",
        msg(4)
    );
    assert!(msg(5).contains("XYZ"), "{}", msg(5));
    assert!(msg(8).contains("empty line"), "{}", msg(8));
    assert!(msg(13).contains("ts"), "{}", msg(13));

    // The subscriber gets exactly the good quotes, with the exact text.
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 3 {
        let m = c.next_msg().await;
        if m["type"] == "quote" {
            let prev = got.insert(m["symbol"].as_str().unwrap().to_string(), m.clone());
            assert!(prev.is_none(), "one update per symbol, got another: {m}");
        }
    }
    let strip = |mut m: Value| {
        let o = m.as_object_mut().unwrap();
        assert!(o.remove("gw_ts").is_some_and(|t| t.as_i64().unwrap() > 0));
        m
    };
    assert_eq!(
        strip(got["AAPL"].clone()),
        json!({"type":"quote","symbol":"AAPL","seq":1,"bid":"189.1200","bid_size":"300",
               "ask":"189.14","ask_size":"200","last":"189.13","last_size":"100",
               "ts":1763900000123456789i64})
    );
    assert_eq!(
        strip(got["MSFT"].clone()),
        json!({"type":"quote","symbol":"MSFT","seq":1,"bid":"410.1000","ask":"410.2000","last":"410.15"})
    );
    assert_eq!(
        strip(got["BTC-USD"].clone()),
        json!({"type":"quote","symbol":"BTC-USD","seq":1,"last":"97000.01000000","last_size":"0.00100000"})
    );
    // Nothing else was ever published: every seq is 1 and ES.Z26 (only bad
    // lines) has no value at all.
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL,MSFT,BTC-USD,ES.Z26").await;
    let all: Value = serde_json::from_str(&body).unwrap();
    let seqs: Vec<(&str, u64)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["symbol"].as_str().unwrap(), q["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(seqs, [("AAPL", 1), ("MSFT", 1), ("BTC-USD", 1)]);

    assert_eq!(pusher_metric(&gw, "updates_in_total", None), 3.0);
    for (reason, n) in [
        ("malformed", 2.0),
        ("bad_field", 4.0),
        ("unmapped_symbol", 1.0),
        ("crossed", 1.0),
        ("negative_size", 1.0),
        ("non_positive_price", 1.0),
    ] {
        assert_eq!(
            pusher_metric(&gw, "feed_rejects_total", Some(reason)),
            n,
            "{reason}"
        );
    }
    // A push feed with stale_after_ms = 0 is never stale: ready.
    wait_for("ready", || gw.feeds().all_up()).await;
}

#[tokio::test]
async fn wrong_or_missing_key_is_401() {
    let gw = start_ingest(|_| {}).await;
    let body = r#"{"symbol":"AAPL","bid":"1.00"}"#;
    for headers in [
        String::new(),
        bearer("wrong"),
        bearer(&format!("{KEY}x")),
        format!("Authorization: Basic {KEY}\r\n"),
        format!("Authorization: {KEY}\r\n"),
    ] {
        let (st, r) = post(&gw, &headers, body).await;
        assert_eq!(st, 401, "{headers:?}: {r}");
        assert_eq!(r["code"], "unauthorized");
    }
    // The key goes in the header only, never in the URL.
    let raw = format!(
        "POST /v1/ingest?token={KEY} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http_request(gw.local_addr, &raw).await.0, 401);
    assert_eq!(pusher_metric(&gw, "updates_in_total", None), 0.0);
    // The right key works, and the subscriber token auth is separate.
    let (st, r) = post(&gw, &bearer(KEY), body).await;
    assert_eq!((st, &r["accepted"]), (200, &json!(1)), "{r}");
}

#[tokio::test]
async fn oversized_body_is_413_and_nothing_is_applied() {
    let gw = start_ingest(|f| f.max_body_bytes = 1024).await;
    let line = r#"{"symbol":"AAPL","bid":"189.12","ask":"189.14"}"#;
    let big = format!("{line}\n").repeat(3000 / line.len() + 1);
    assert!(big.len() > 1024);
    // With a Content-Length.
    let (st, r) = post(&gw, &bearer(KEY), &big).await;
    assert_eq!(st, 413, "{r}");
    assert_eq!(r["code"], "payload_too_large");
    // Chunked, so the limit is found while reading.
    let mut raw = format!(
        "POST /v1/ingest HTTP/1.1\r\nHost: t\r\n{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        bearer(KEY)
    );
    for chunk in big.as_bytes().chunks(500) {
        raw += &format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        );
    }
    raw += "0\r\n\r\n";
    let (st, body) = http_request(gw.local_addr, &raw).await;
    assert_eq!(st, 413, "{body}");
    // Declared far too large: refused before anything is read.
    let raw = format!(
        "POST /v1/ingest HTTP/1.1\r\nHost: t\r\n{}Content-Length: 1000000000\r\nConnection: close\r\n\r\n",
        bearer(KEY)
    );
    assert_eq!(http_request(gw.local_addr, &raw).await.0, 413);
    assert_eq!(pusher_metric(&gw, "updates_in_total", None), 0.0);
    // Just under the limit is fine.
    let ok = format!("{line}\n").repeat(1024 / (line.len() + 1));
    let (st, r) = post(&gw, &bearer(KEY), &ok).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["rejected"], 0);
}

/// A big body (applied on the blocking pool) with many bad lines: every
/// good line lands, the error list is capped and the rest counted.
#[tokio::test]
async fn big_body_caps_the_error_list() {
    let gw = start_ingest(|_| {}).await;
    let mut body = String::new();
    for i in 1..=1500u32 {
        body += &format!("{{\"symbol\":\"AAPL\",\"last\":\"{i}.25\",\"ts\":{i}}}\n");
        body += "{\"symbol\":\"AAPL\",\"last\":1.5}\n";
    }
    assert!(body.len() > 64 * 1024);
    let (st, r) = post(&gw, &bearer(KEY), &body).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&json!(1500), &json!(1500))
    );
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(
        (&errors[0]["line"], &errors[99]["line"]),
        (&json!(2), &json!(200))
    );
    assert_eq!(r["errors_omitted"], 1400);
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL").await;
    let q: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&q[0]["last"], &q[0]["seq"], &q[0]["ts"]),
        (&json!("1500.25"), &json!(1500), &json!(1500))
    );
}

#[tokio::test]
async fn only_post_and_only_with_an_http_feed() {
    let gw = start_ingest(|_| {}).await;
    for method in ["GET", "PUT", "DELETE"] {
        let raw = format!(
            "{method} /v1/ingest HTTP/1.1\r\nHost: t\r\n{}Content-Length: 0\r\nConnection: close\r\n\r\n",
            bearer(KEY)
        );
        let (st, body) = http_request(gw.local_addr, &raw).await;
        assert_eq!(st, 405, "{method}: {body}");
    }
    // Without an http feed there is nothing to push to.
    let plain = start(|_| {}).await;
    let (st, r) = post(&plain, &bearer(KEY), r#"{"symbol":"AAPL","bid":"1"}"#).await;
    assert_eq!(st, 404, "{r}");
}

/// The sample config and its NDJSON sample stay in step: three good lines
/// and one that shows a per-line error.
#[tokio::test]
async fn sample_config_and_ndjson() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds");
    let mut c = Config::load(&dir.join("http.toml")).unwrap();
    c.validate().unwrap();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    let gw = Gateway::start(c).await.unwrap();
    let body = std::fs::read_to_string(dir.join("ingest/sample.ndjson")).unwrap();
    let (st, r) = post(&gw, &bearer("change-me"), &body).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&json!(3), &json!(1)),
        "{r}"
    );
    assert_eq!(r["errors"][0]["line"], 4);
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=ES.Z26").await;
    let q: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&q[0]["last"], &q[0]["last_size"]),
        (&json!("6012.25"), &json!("3"))
    );
}

/// A push feed that has sent nothing since the gateway started is stale
/// after `stale_after_ms`, like one that went silent (it never was live):
/// subscribers are told, and the first push makes it live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_never_sent_turns_stale_then_live_on_its_first_push() {
    let gw = start_ingest(|f| f.stale_after_ms = 300).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let st = c.recv_type("status").await;
    assert_eq!(
        (st["symbol"].as_str(), st["state"].as_str()),
        (Some("AAPL"), Some("stale"))
    );
    let line = r#"{"symbol":"AAPL","bid":"189.1200","ask":"189.1300"}"#;
    let (code, r) = post(&gw, &bearer(KEY), line).await;
    assert_eq!(code, 200, "{r}");
    let (live, _) = c
        .recv_until(|m| m["type"] == "status" && m["state"] == "live")
        .await;
    assert_eq!(live["symbol"], "AAPL");
    let q = c.recv_type("quote").await;
    assert_eq!(q["bid"], "189.1200");
}
