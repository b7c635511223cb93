//! `GET /v1/sse` against a real gateway with a raw HTTP client: the event
//! stream (retry, the first frame with welcome, subscribed and snapshots,
//! then updates and status, `: hb` comments), the errors a bad query gets,
//! auth and entitlements, the Origin allow-list, the connection limit, and
//! a client that stops reading.

mod common;

use common::sse::Sse;
use common::*;
use serde_json::Value;
use std::time::Duration;
use tickergate::auth::token_hash_hex;
use tickergate::config::KeyConfig;
use tokio::io::AsyncWriteExt;

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_starts_with_welcome_and_snapshots_then_updates_status_and_heartbeats() {
    let gw = start(|c| {
        sim_cfg(c).rate = 0.0;
        sim_cfg(c).stale_after_ms = 1000;
        c.session.heartbeat_ms = 200;
    })
    .await;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.1400", "200"));
    let mut c = Sse::open(gw.local_addr, "symbols=AAPL,MSFT", "")
        .await
        .unwrap();
    assert_eq!(
        header(&c.head, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(
        header(&c.head, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(c.event().await, "retry: 2000");
    let first = c.frame().await;
    assert_eq!(first[0]["type"], "welcome");
    assert_eq!(first[0]["protocol"], 1);
    assert!(first[0]["epoch"].as_str().is_some());
    assert_eq!(first[1]["type"], "subscribed");
    assert_eq!(first[1]["symbols"], serde_json::json!(["AAPL", "MSFT"]));
    // AAPL has a value: its snapshot, byte-exact; MSFT has none yet.
    let snap: Vec<&Value> = first.iter().filter(|m| m["type"] == "quote").collect();
    assert_eq!(snap.len(), 1, "{first:?}");
    assert_eq!(snap[0]["symbol"], "AAPL");
    assert_eq!(snap[0]["bid"], "189.1200");
    assert_eq!(snap[0]["snapshot"], true);
    // Quiet: a heartbeat comment.
    assert_eq!(c.event().await, ": hb");
    // An update, and MSFT's first value as an ordinary update.
    publish(&gw, "MSFT", quote("410.01", "1", "410.02", "1"));
    let f = c.frame().await;
    assert_eq!(f[0]["symbol"], "MSFT");
    assert_eq!(f[0]["bid"], "410.01");
    assert!(f[0].get("snapshot").is_none());
    // The feed goes silent: status stale for both symbols.
    let feed = gw.feed("sim").unwrap();
    feed.set_paused(true);
    let mut stale = std::collections::BTreeSet::new();
    while stale.len() < 2 {
        for m in c.frame().await {
            if m["type"] == "status" {
                assert_eq!(m["state"], "stale");
                stale.insert(m["symbol"].as_str().unwrap().to_string());
            }
        }
    }
    feed.set_paused(false);
    let text = metrics_text(&gw);
    assert_eq!(metric(&text, "tickergate_sse_sessions"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hz_coalesces_to_the_newest_value() {
    let gw = start(|c| sim_cfg(c).rate = 0.0).await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    let mut c = Sse::open(gw.local_addr, "symbols=AAPL&max_hz=2", "")
        .await
        .unwrap();
    c.event().await;
    let first = c.frame().await;
    assert_eq!(first[1]["max_hz"], 2.0);
    let seq0 = first[2]["seq"].as_u64().unwrap();
    // Ten updates at once: at 2 Hz they leave as one, the newest.
    for i in 0..10 {
        publish(&gw, "AAPL", quote(&format!("2.{i:02}"), "1", "3.00", "1"));
    }
    let f = c.frame().await;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["bid"], "2.09");
    assert_eq!(
        f[0]["seq"].as_u64().unwrap(),
        seq0 + 10,
        "the seq jump says 9 were conflated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_400_naming_the_problem() {
    let gw = start(|c| c.session.max_symbols = 3).await;
    let a = gw.local_addr;
    let err = |r: Result<Sse, (u16, String)>| -> (u16, Value) {
        let (st, body) = r.err().expect("refused");
        (st, serde_json::from_str(&body).expect("JSON error body"))
    };
    let (st, v) = err(Sse::open(a, "symbols=AAPL,NOPE", "").await);
    assert_eq!((st, v["code"].as_str()), (400, Some("unknown_symbol")));
    assert_eq!(v["symbol"], "NOPE");
    assert_eq!(v["type"], "error");
    let (st, v) = err(Sse::open(a, "symbols=AAPL,MSFT,NVDA,TSLA", "").await);
    assert_eq!((st, v["code"].as_str()), (400, Some("too_many_symbols")));
    assert!(v["message"].as_str().unwrap().contains("limit is 3"), "{v}");
    for q in [
        "symbols=AAPL&max_hz=abc",
        "symbols=AAPL&max_hz=0",
        "symbols=AAPL&max_hz=-1",
    ] {
        let (st, v) = err(Sse::open(a, q, "").await);
        assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{q}");
        assert!(
            v["message"].as_str().unwrap().contains("max_hz"),
            "{q}: {v}"
        );
    }
    let (st, v) = err(Sse::open(a, "symbols=", "").await);
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")));
    assert!(v["message"].as_str().unwrap().contains("symbols"));
    // Nothing was opened by any of them.
    assert_eq!(metric(&metrics_text(&gw), "tickergate_sse_sessions"), 0.0);
}

fn key(name: &str, token: &str, symbols: &[&str]) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        sha256: token_hash_hex(token),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        max_connections: None,
        max_symbols: None,
    }
}

/// Entitlements hold on SSE: a key gets only its symbols; asking for
/// another is refused whole (403 naming it), never served in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_entitlements() {
    let gw = start(|c| {
        sim_cfg(c).rate = 0.0;
        let mut desk = key("desk", "desk-key", &["BTC-*", "AAPL"]);
        desk.max_connections = Some(1);
        c.auth.keys = vec![desk];
    })
    .await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    publish(&gw, "MSFT", quote("2.00", "1", "2.01", "1"));
    let a = gw.local_addr;
    let (st, body) = Sse::open(a, "symbols=AAPL", "").await.err().unwrap();
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("unauthorized"));
    let (st, _) = Sse::open(a, "symbols=AAPL&token=wrong", "")
        .await
        .err()
        .unwrap();
    assert_eq!(st, 401);
    let (st, body) = Sse::open(a, "symbols=AAPL,MSFT&token=desk-key", "")
        .await
        .err()
        .unwrap();
    assert_eq!(st, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "forbidden_symbol");
    assert_eq!(v["symbol"], "MSFT");
    // Entitled: by query token, and the key's connection is held.
    let mut c = Sse::open(a, "symbols=AAPL,BTC-USD&token=desk-key", "")
        .await
        .unwrap();
    c.event().await;
    let first = c.frame().await;
    assert_eq!(first[1]["symbols"], serde_json::json!(["AAPL", "BTC-USD"]));
    for m in &first[2..] {
        assert!(m["symbol"] == "AAPL" || m["symbol"] == "BTC-USD", "{m}");
    }
    publish(&gw, "MSFT", quote("2.10", "1", "2.11", "1"));
    publish(&gw, "AAPL", quote("1.10", "1", "1.11", "1"));
    let f = c.frame().await;
    assert!(f.iter().all(|m| m["symbol"] == "AAPL"), "{f:?}");
    // The key allows one connection: a second (Bearer header) is refused.
    let (st, _) = Sse::open(a, "symbols=AAPL", "Authorization: Bearer desk-key\r\n")
        .await
        .err()
        .unwrap();
    assert_eq!(st, 429);
    drop(c);
    // Once the first is gone, the header form works.
    let mut ok = None;
    for _ in 0..100 {
        match Sse::open(a, "symbols=AAPL", "Authorization: Bearer desk-key\r\n").await {
            Ok(c) => {
                ok = Some(c);
                break;
            }
            Err((429, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(ok.is_some(), "the key's connection was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list_and_connection_limit_apply() {
    let gw = start(|c| {
        c.server.allowed_origins = vec!["https://good.example".into()];
        c.server.max_connections = 1;
    })
    .await;
    let a = gw.local_addr;
    let (st, _) = Sse::open(a, "symbols=AAPL", "Origin: https://evil.example\r\n")
        .await
        .err()
        .unwrap();
    assert_eq!(st, 403);
    let held = Sse::open(a, "symbols=AAPL", "Origin: https://good.example\r\n")
        .await
        .unwrap();
    // EventSource is subject to CORS: the allowed origin may read it.
    assert_eq!(
        header(&held.head, "access-control-allow-origin"),
        Some("https://good.example")
    );
    // The one place is taken: SSE sessions count like WebSocket ones.
    let (st, body) = Sse::open(a, "symbols=AAPL", "").await.err().unwrap();
    assert_eq!(st, 503, "{body}");
}

/// A client that stops reading: the session's next frame waits (nothing
/// queues beyond one frame and the socket buffers), and after
/// `slow_consumer_ms` the stream is ended and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_ended() {
    let gw = start(|c| {
        let s = sim_cfg(c);
        s.rate = 50_000.0;
        s.symbols = 50;
        c.session.slow_consumer_ms = 300;
    })
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(gw.local_addr).await.unwrap();
    let (_, body) = http_get(gw.local_addr, "/v1/symbols").await;
    let names: Vec<String> = serde_json::from_str(&body).unwrap();
    let req = format!(
        "GET /v1/sse?symbols={} HTTP/1.1\r\nHost: t\r\n\r\n",
        names.join(",")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Never read: the session is ended as a slow consumer.
    wait_for("slow SSE client ended", || {
        metric(
            &metrics_text(&gw),
            r#"tickergate_disconnects_total{code="4008"}"#,
        ) >= 1.0
    })
    .await;
    wait_for("session gone", || {
        metric(&metrics_text(&gw), "tickergate_sse_sessions") == 0.0
    })
    .await;
    // A reading client meanwhile is served.
    let mut c = Sse::open(gw.local_addr, "symbols=AAPL", "").await.unwrap();
    c.event().await;
    assert_eq!(c.frame().await[0]["type"], "welcome");
}
