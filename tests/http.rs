//! REST, health, metrics and handshake edge cases against a real gateway.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_endpoint_returns_exact_latest_values() {
    let gw = start(|_| {}).await;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "200"));
    publish(&gw, "AAPL", quote("189.13", "300", "189.14", "200"));
    publish(
        &gw,
        "BTC-USD",
        quote("97000.01", "0.51230000", "97000.02", "0.1"),
    );
    let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL,BTC-USD,MSFT").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(
        arr.len(),
        2,
        "MSFT has no value yet and is left out: {body}"
    );
    assert_eq!(arr[0]["symbol"], "AAPL");
    assert_eq!(arr[0]["type"], "quote");
    assert_eq!(arr[0]["seq"], 2);
    assert_eq!(arr[0]["bid"], "189.13");
    assert_eq!(arr[1]["bid_size"], "0.51230000");
    // Percent-encoded comma works too.
    let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL%2CBTC-USD").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_endpoint_errors() {
    let gw = start(|_| {}).await;
    let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL,NOPE").await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "unknown_symbol");
    assert_eq!(v["symbol"], "NOPE");
    let (code, body) = http_get(gw.local_addr, "/v1/quotes").await;
    assert_eq!(code, 400);
    assert!(body.contains("bad_request"));
    let (code, body) = http_get(gw.local_addr, "/nowhere").await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "not_found", "{body}");
    assert!(
        v["message"].as_str().unwrap().contains("/nowhere"),
        "{body}"
    );
    let (code, _) = http_request(
        gw.local_addr,
        "POST /v1/quotes HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_health_and_metrics() {
    let gw = start(|c| sim_cfg(c).symbols = 50).await;
    let (code, body) = http_get(gw.local_addr, "/v1/symbols").await;
    assert_eq!(code, 200);
    let names: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(names.len(), 50);
    assert!(names.contains(&"AAPL".to_string()) && names.contains(&"BTC-USD".to_string()));
    assert_eq!(http_get(gw.local_addr, "/healthz").await.0, 200);
    let feed = gw.feed("sim").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    let (code, body) = http_get(gw.local_addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["feeds"]["sim"],
        true
    );

    let (_c, _) = Client::connect_welcomed(gw.local_addr).await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    let (code, text) = http_get(gw.local_addr, "/metrics").await;
    assert_eq!(code, 200);
    for family in [
        "tickergate_connections",
        "tickergate_connections_opened_total",
        "tickergate_connections_max",
        "tickergate_subscriptions",
        "tickergate_updates_in_total",
        "tickergate_messages_out_total",
        "tickergate_frames_out_total",
        "tickergate_bytes_out_total",
        "tickergate_updates_conflated_total",
        "tickergate_delivery_latency_seconds_bucket",
        "tickergate_sse_sessions",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    assert_eq!(metric(&text, "tickergate_connections"), 1.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric(
            &text,
            &format!(r#"tickergate_build_info{{version="{version}"}}"#)
        ),
        1.0
    );
    assert!(metric(&text, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&text, "process_open_fds") >= 3.0);
    assert_eq!(
        metric(&text, r#"tickergate_updates_in_total{feed="sim"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_upgrade_requests_to_ws_get_http_errors() {
    let gw = start(|_| {}).await;
    let (code, body) = http_get(gw.local_addr, "/v1/ws").await;
    assert_eq!(code, 426, "{body}");
    // Upgrade headers but no key.
    let (code, _) = http_request(
        gw.local_addr,
        "GET /v1/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400);
    // Wrong version.
    let (code, _) = http_request(
        gw.local_addr,
        "GET /v1/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400);
}

/// A client that sends half a request head is dropped after the header
/// timeout, and never holds the server up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshake_is_dropped() {
    // Long enough for the healthy handshake below on a loaded machine.
    let gw = start(|c| c.server.header_timeout_ms = 1000).await;
    let mut s = tokio::net::TcpStream::connect(gw.local_addr).await.unwrap();
    s.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nUpgr")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(EVENT_DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "server must close a half-sent request");
    // Others are unaffected.
    let (_c, w) = Client::connect_welcomed(gw.local_addr).await;
    assert_eq!(w["type"], "welcome");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The whole response (head and body) to a GET.
async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// The board at `/` and every asset it loads are served from the binary,
/// with their content types; the page may run only its own scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_assets_are_served() {
    let gw = start(|_| {}).await;
    let page = get_raw(gw.local_addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html; charset=utf-8"));
    assert!(lower.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(page.contains(r#"<script type="module" src="/assets/board.js">"#));
    for (path, ty, needle) in [
        (
            "/assets/board.js",
            "text/javascript",
            "tickergate-client.js",
        ),
        (
            "/assets/tickergate-client.js",
            "text/javascript",
            "export function connect",
        ),
        (
            "/assets/decimal.js",
            "text/javascript",
            "export function sub",
        ),
        ("/assets/board.css", "text/css", "table-layout: fixed"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = get_raw(gw.local_addr, path).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
        assert!(
            r.to_ascii_lowercase()
                .contains(&format!("content-type: {ty}")),
            "{path}"
        );
        assert!(r.contains(needle), "{path} carries {needle}");
    }
    let (code, body) = http_get(gw.local_addr, "/assets/nope.js").await;
    assert_eq!(code, 404, "{body}");
}

/// `/v1/feeds`: each feed's state, always 200 (a page polls it), stale
/// while the feed is silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_endpoint_reports_each_feed() {
    let gw = start(|c| {
        let s = sim_cfg(c);
        s.symbols = 20;
        s.stale_after_ms = 300;
    })
    .await;
    let feed = gw.feed("sim").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    let (code, body) = http_get(gw.local_addr, "/v1/feeds").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["name"], "sim");
    assert_eq!(v[0]["state"], "live");
    assert_eq!(v[0]["symbols"], 20);
    assert!(v[0]["silent_ms"].as_i64().is_some_and(|ms| ms >= 0));
    feed.set_paused(true);
    wait_for("feed stale", || !feed.is_up()).await;
    let (code, body) = http_get(gw.local_addr, "/v1/feeds").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["state"], "stale", "{body}");
    feed.set_paused(false);
}
