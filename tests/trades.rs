//! Trades as events against a real gateway and real WebSocket clients:
//! every trade in order beside conflating quotes, none lost below the
//! buffer, an overflow announced with its count, entitlements through
//! patterns and SSE, and HTTP ingest's trade lines.

mod common;

use common::*;
use serde_json::{json, Value};
use tickergate::auth::token_hash_hex;
use tickergate::config::{FeedConfig, IngestConfig, KeyConfig};
use tickergate::trades::{Side, TradeInfo};
use tickergate::Gateway;

const BTC: &str = "BTC-USD";

/// A trade of `sym` through the `sim` feed: price `97000.<n as 4 digits>`,
/// size `0.00100000`, numbered `n`, buyer on even numbers. (The `sim`
/// feed's quotes are whole, so it carries the book too.)
fn trade(gw: &Gateway, sym: &str, n: u64) {
    let q = quote("96999.00", "1", "97001.00", "1")
        .with_last(d(&format!("97000.{n:04}")), d("0.00100000"))
        .with_ts(1_700_000_000_000_000_000 + n as i64);
    let info = TradeInfo {
        side: Some(if n.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        }),
        trade_id: Some(n),
    };
    gw.publish_trade("sim", sym, q, info)
        .expect("trade accepted");
}

/// The trade messages (and drops) among `msgs`.
fn trade_msgs(msgs: &[Value]) -> Vec<&Value> {
    msgs.iter()
        .filter(|m| m["type"] == "trade" || m["type"] == "trades_dropped")
        .collect()
}

/// Reads until the trade with seq `last` of `sym` arrives; returns every
/// message read, that one included.
async fn read_to_trade(c: &mut Client, sym: &str, last: u64) -> Vec<Value> {
    let (m, mut seen) = c
        .recv_until(|m| m["type"] == "trade" && m["symbol"] == sym && m["seq"] == last)
        .await;
    seen.push(m);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trade_in_order_beside_conflated_quotes() {
    let gw = start(|_| {}).await;
    publish(&gw, BTC, quote("96999.00", "1", "97001.00", "1"));
    let (mut with, _) = Client::connect_welcomed(gw.local_addr).await;
    with.send(json!({"op":"subscribe","id":1,"symbols":[BTC],"trades":true}))
        .await;
    let sub = with.recv_type("subscribed").await;
    assert_eq!(
        (sub["trades"].as_bool(), sub["id"].as_i64()),
        (Some(true), Some(1))
    );
    let snap = with.recv_type("quote").await;
    assert_eq!(snap["snapshot"], true, "{snap}");
    let (mut without, _) = Client::connect_welcomed(gw.local_addr).await;
    let sub = without.subscribe(1, &[BTC]).await;
    assert!(sub.get("trades").is_none(), "{sub}");

    // 300 trades, well under the default buffer of 1024.
    for n in 1..=300 {
        trade(&gw, BTC, n);
    }
    let seen = read_to_trade(&mut with, BTC, 300).await;
    let trades = trade_msgs(&seen);
    assert_eq!(trades.len(), 300, "none lost, none doubled");
    for (i, t) in trades.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(t["type"], "trade", "{t}");
        assert_eq!(t["seq"], n, "in order: {t}");
        assert_eq!(t["price"], format!("97000.{n:04}"), "exact text: {t}");
        assert_eq!(t["size"], "0.00100000");
        assert_eq!(t["side"], if n.is_multiple_of(2) { "buy" } else { "sell" });
        assert_eq!(t["trade_id"], n);
        assert_eq!(t["ts"], 1_700_000_000_000_000_000u64 + n);
        assert!(t["gw_ts"].as_i64().is_some_and(|g| g > 0), "{t}");
    }
    // Quotes still conflate: fewer quote messages than trades, and the
    // newest carries the last trade as last/last_size.
    let quotes = seen.iter().filter(|m| m["type"] == "quote").count();
    assert!(quotes < 300, "{quotes} quotes for 300 trades");
    // (A frame carries the quote, then the trades it reflects and any
    // newer ones: the quote of trade 300 is in its frame or the next.)
    let newest = |m: &Value| m["type"] == "quote" && m["last"] == "97000.0300";
    let q = match seen.iter().find(|m| newest(m)) {
        Some(q) => q.clone(),
        None => with.recv_until(newest).await.0,
    };
    assert_eq!(
        (&q["last_size"], &q["bid"]),
        (&json!("0.00100000"), &json!("96999.00"))
    );

    // The client that did not ask gets no trade, and its quote's last moves.
    let (q, seen) = without
        .recv_until(|m| m["type"] == "quote" && m["last"] == "97000.0300")
        .await;
    assert_eq!(q["last_size"], "0.00100000");
    assert!(trade_msgs(&seen).is_empty(), "trades not asked for");
    let m = metrics_text(&gw);
    assert_eq!(
        metric(&m, "tickergate_trades_in_total{feed=\"sim\"}"),
        300.0
    );
    assert_eq!(metric(&m, "tickergate_trades_out_total"), 300.0);
    assert_eq!(metric(&m, "tickergate_trades_dropped_total"), 0.0);

    // Subscribing again without trades turns them off; with, from the
    // next trade on.
    without
        .send(json!({"op":"subscribe","id":2,"symbols":[BTC],"trades":true,"snapshot":false}))
        .await;
    without.recv_until(|m| m["type"] == "subscribed").await;
    trade(&gw, BTC, 301);
    let seen = read_to_trade(&mut without, BTC, 301).await;
    assert_eq!(
        trade_msgs(&seen).len(),
        1,
        "only the trade after subscribing"
    );
}

/// A client in ack mode that stops acking falls behind; with
/// `max_pending_trades = 8` the oldest are dropped, and it is told how
/// many before the first trade it still gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_drops_the_oldest_and_says_how_many_first() {
    let gw = start(|c| c.session.max_pending_trades = 8).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":[BTC],"trades":true}))
        .await;
    c.recv_type("subscribed").await;
    c.send(json!({"op":"flow","id":2,"window":1})).await;
    c.recv_until(|m| m["type"] == "flow").await;
    // Frames are counted from the one after the flow reply's.
    let mut frames = 0u64;
    let mut got: Vec<Value> = Vec::new();
    trade(&gw, BTC, 1);
    while !got.iter().any(|m| m["type"] == "trade" && m["seq"] == 1) {
        if let Event::Msgs(ms) = c.next_event().await {
            frames += 1;
            got.extend(ms);
        }
    }
    // The window (one frame) is used up and not acked: 100 more trades
    // wait in the ring, of which the client may be owed 8.
    for n in 2..=101 {
        trade(&gw, BTC, n);
    }
    while !got.iter().any(|m| m["type"] == "trade" && m["seq"] == 101) {
        c.send(json!({"op":"ack","n":frames})).await;
        if let Event::Msgs(ms) = c.next_event().await {
            frames += 1;
            got.extend(ms);
        }
    }
    let trades = trade_msgs(&got);
    let summary: Vec<String> = trades
        .iter()
        .map(|m| match m["type"].as_str() {
            Some("trade") => format!("t{}", m["seq"]),
            _ => format!("dropped {} of {}", m["count"], m["symbol"]),
        })
        .collect();
    let mut want = vec!["t1".to_string(), format!("dropped 92 of \"{BTC}\"")];
    want.extend((94..=101).map(|n| format!("t{n}")));
    assert_eq!(summary, want);
    // The trades after the drop are the newest, exactly.
    assert_eq!(trades[2]["price"], "97000.0094");
    let m = metrics_text(&gw);
    assert_eq!(metric(&m, "tickergate_trades_dropped_total"), 92.0);
    assert_eq!(metric(&m, "tickergate_trades_out_total"), 9.0);
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

/// A key entitled to `BTC-*` that subscribes to `*` with trades gets the
/// trades of BTC symbols only, by WebSocket and by SSE; asking for an
/// un-entitled symbol's trades by name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_only_of_entitled_symbols_through_patterns_and_sse() {
    let gw = start(|c| c.auth.keys = vec![key("btc", "btc-key", &["BTC-*"])]).await;
    let mut c = Client::connect(gw.local_addr).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"auth","id":1,"token":"btc-key"})).await;
    c.recv_type("authenticated").await;
    c.send(json!({"op":"subscribe","id":2,"symbols":["*"],"trades":true}))
        .await;
    let sub = c.recv_type("subscribed").await;
    let held: Vec<String> = serde_json::from_value(sub["symbols"].clone()).unwrap();
    assert!(held.iter().all(|s| s.starts_with("BTC-")), "{held:?}");
    assert!(held.contains(&BTC.to_string()));
    c.send(json!({"op":"subscribe","id":3,"symbols":["ETH-USD"],"trades":true}))
        .await;
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (e["id"].as_i64(), e["symbol"].as_str()),
        (Some(3), Some("ETH-USD"))
    );

    let (st, _) = http_get(
        gw.local_addr,
        "/v1/sse?symbols=ETH-USD&trades=true&token=btc-key",
    )
    .await;
    assert_eq!(st, 403, "an un-entitled symbol's trades by SSE");
    let (st, body) = http_get(
        gw.local_addr,
        "/v1/sse?symbols=BTC-USD&trades=maybe&token=btc-key",
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("trades must be true or false"), "{body}");

    for (n, sym) in [
        (1, "ETH-USD"),
        (1, "AAPL"),
        (1, BTC),
        (2, "ETH-USD"),
        (2, BTC),
    ] {
        trade(&gw, sym, n);
    }
    let seen = read_to_trade(&mut c, BTC, 2).await;
    for m in &seen {
        if let Some(sym) = m["symbol"].as_str() {
            assert!(sym.starts_with("BTC-"), "leaked through a pattern: {m}");
        }
    }
    assert_eq!(trade_msgs(&seen).len(), 2);
}

/// SSE with `trades=true`: the same trade messages, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_trades_when_asked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = start(|_| {}).await;
    let mut s = tokio::net::TcpStream::connect(gw.local_addr).await.unwrap();
    s.write_all(b"GET /v1/sse?symbols=BTC-USD&trades=true HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    // The subscribed event says trades; then the trades come.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut sent = false;
    while !text.contains(r#""type":"trade","symbol":"BTC-USD","seq":3,"#) {
        assert!(std::time::Instant::now() < deadline, "no trades: {text}");
        if !sent && text.contains(r#""trades":true"#) {
            for n in 1..=3 {
                trade(&gw, BTC, n);
            }
            sent = true;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("SSE data")
            .unwrap();
        assert!(n > 0, "stream ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let seqs: Vec<usize> = (1..=3)
        .map(|n| {
            text.find(&format!(r#""type":"trade","symbol":"BTC-USD","seq":{n},"#))
                .unwrap_or_else(|| panic!("trade {n}: {text}"))
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {text}");
    assert!(text.contains(r#""price":"97000.0002","size":"0.00100000","side":"buy","trade_id":2"#));
}

/// HTTP ingest's `"type":"trade"` lines: delivered as trades with their
/// exact text; bad trade lines get clear errors and lose nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_trade_lines() {
    const KEY: &str = "ingest-key";
    let feed = IngestConfig {
        name: "pusher".into(),
        key_sha256: token_hash_hex(KEY),
        symbols: vec!["AAPL".into()],
        ..IngestConfig::default()
    };
    let gw = start(|c| c.feeds = vec![FeedConfig::Http(feed)]).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL"],"trades":true}))
        .await;
    c.recv_type("subscribed").await;
    let lines = [
        r#"{"type":"trade","symbol":"AAPL","price":"189.1300","size":"100","side":"buy","trade_id":7,"ts":1763900000123456789}"#,
        r#"{"type":"trade","symbol":"AAPL","price":189.13,"size":"1"}"#,
        r#"{"type":"trade","symbol":"AAPL","price":"189.13"}"#,
        r#"{"type":"trade","symbol":"AAPL","price":"189.13","size":"1","side":"up"}"#,
        r#"{"type":"trade","symbol":"AAPL","price":"189.13","size":"1","bid":"1"}"#,
        r#"{"type":"tick","symbol":"AAPL","last":"1"}"#,
        r#"{"type":"trade","symbol":"AAPL","price":"189.14","size":"0.5"}"#,
        r#"{"type":"quote","symbol":"AAPL","bid":"189.10","ask":"189.20"}"#,
    ];
    let body = lines.join("\n") + "\n";
    let (st, r) = ingest_post(gw.local_addr, KEY, &body).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&json!(3), &json!(5)),
        "{r}"
    );
    let msgs: Vec<(u64, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        (2, "not JSON numbers"),
        (3, "a trade needs price and size"),
        (4, "\"buy\" or \"sell\""),
        (5, "unknown field \"bid\" in a trade"),
        (6, "\"quote\" (the default) or \"trade\""),
    ];
    for ((line, msg), (want_line, want)) in msgs.iter().zip(expect) {
        assert_eq!(*line, want_line);
        assert!(msg.contains(want), "line {line}: {msg}");
    }
    let seen = read_to_trade(&mut c, "AAPL", 2).await;
    let trades = trade_msgs(&seen);
    assert_eq!(trades.len(), 2, "{seen:?}");
    assert_eq!(
        trades[0],
        &json!({"type":"trade","symbol":"AAPL","seq":1,"price":"189.1300","size":"100","side":"buy","trade_id":7,"ts":1763900000123456789u64,"gw_ts":trades[0]["gw_ts"]})
    );
    // No side, no id, no ts: omitted, and ts is the gateway's.
    assert_eq!(
        (&trades[1]["price"], &trades[1]["size"]),
        (&json!("189.14"), &json!("0.5"))
    );
    assert!(trades[1].get("side").is_none() && trades[1].get("trade_id").is_none());
    assert_eq!(trades[1]["ts"], trades[1]["gw_ts"]);
}
