//! The Coinbase adapter against a fake Coinbase Exchange feed (a real
//! WebSocket server speaking its subscribe/ticker/heartbeat protocol from
//! feeds/coinbase/*.jsonl), end to end to a real gateway subscriber.

mod common;

use common::upstream::{sample_frames, Upstream};
use common::*;
use serde_json::json;
use std::time::Duration;
use tickergate::config::{FeedConfig, VenueConfig, VenueKind};

/// Coinbase closes a connection that has not subscribed within this long.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(5);

async fn gateway(up: &Upstream, tweak: impl FnOnce(&mut VenueConfig)) -> tickergate::Gateway {
    let mut v = VenueConfig {
        url: up.url("/"),
        symbols: [
            ("BTC-USD".to_string(), "BTC-USD".to_string()),
            ("ETH-USD".to_string(), "ETH-USD".to_string()),
        ]
        .into(),
        stale_after_ms: 5_000,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        ..VenueConfig::default()
    };
    tweak(&mut v);
    v.name = "coinbase".into();
    start(|c| c.feeds = vec![FeedConfig::Venue(VenueKind::Coinbase, v)]).await
}

/// Accepts the adapter and checks that its first message, sent unprompted,
/// is the subscribe Coinbase requires.
async fn subscribe_request(up: &mut Upstream) -> (common::upstream::UpConn, serde_json::Value) {
    let mut conn = up.accept().await;
    assert_eq!(conn.path, "/", "Coinbase's feed has no path");
    // Like the venue: no subscribe within 5 s and the connection is closed.
    let sub = tokio::time::timeout(SUBSCRIBE_WITHIN, conn.recv_json())
        .await
        .expect("the subscribe is sent right after connecting, unprompted");
    (conn, sub)
}

/// Acknowledges a subscribe the way Coinbase does: a `subscriptions`
/// message listing each channel with its products.
async fn acknowledge(conn: &mut common::upstream::UpConn, sub: &serde_json::Value) {
    conn.send(
        &json!({"type": "subscriptions", "channels": [
            {"name": "ticker", "product_ids": sub["product_ids"]},
            {"name": "heartbeat", "product_ids": sub["product_ids"]},
        ]})
        .to_string(),
    )
    .await;
}

/// Accepts the adapter, checks its subscribe and acknowledges it.
async fn handshake(up: &mut Upstream) -> common::upstream::UpConn {
    let (mut conn, sub) = subscribe_request(up).await;
    assert_eq!(sub["type"], "subscribe");
    let mut products: Vec<String> =
        serde_json::from_value(sub["product_ids"].clone()).expect("product_ids is a list");
    products.sort();
    assert_eq!(products, ["BTC-USD", "ETH-USD"]);
    let mut channels: Vec<String> =
        serde_json::from_value(sub["channels"].clone()).expect("channels is a list of names");
    channels.sort();
    assert_eq!(channels, ["heartbeat", "ticker"]);
    acknowledge(&mut conn, &sub).await;
    conn
}

/// A BTC-USD ticker with every field Coinbase sends.
fn btc_ticker(sequence: u64, bid: &str, ask: &str, time: &str) -> String {
    json!({"type":"ticker","sequence":sequence,"product_id":"BTC-USD","price":ask,
        "open_24h":"96210.55","volume_24h":"8123.41937210","low_24h":"95801.10","high_24h":"97480.00",
        "volume_30d":"301127.88345112","best_bid":bid,"best_bid_size":"1.00000000","best_ask":ask,
        "best_ask_size":"1.00000000","side":"buy","time":time,"trade_id":884522000,"last_size":"0.01000000"})
    .to_string()
}

fn heartbeat(sequence: u64, product: &str) -> String {
    json!({"type":"heartbeat","sequence":sequence,"last_trade_id":884521003,"product_id":product,
        "time":"2025-11-23T12:13:20.009500Z"})
    .to_string()
}

fn connects(gw: &tickergate::Gateway) -> f64 {
    feed_connects(gw, "coinbase")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_at_once_and_delivers_exact_decimals_and_venue_time() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD", "ETH-USD"]).await;
    let mut conn = handshake(&mut up).await;
    // Messages the adapter does not use are ignored, not counted as garbage.
    conn.send(r#"{"type":"status","products":[],"currencies":[]}"#)
        .await;
    conn.send(r#"{"type":"some_future_type","product_id":"BTC-USD"}"#)
        .await;
    for f in sample_frames("coinbase/session.jsonl").iter().skip(1) {
        conn.send(f).await;
    }
    let (btc, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.04")
        .await;
    assert_eq!(btc["type"], "quote");
    assert_eq!(btc["bid_size"], "0.75000000");
    assert_eq!(btc["ask"], "97000.05");
    assert_eq!(btc["ask_size"], "0.33100000");
    assert_eq!(btc["last"], "97000.05");
    assert_eq!(btc["last_size"], "0.00210000");
    assert_eq!(
        btc["ts"], 1_763_900_000_009_001_000i64,
        "2025-11-23T12:13:20.009001Z"
    );
    assert_eq!(btc["seq"], 3, "three tickers; heartbeats are not updates");
    let (eth, _) = c
        .recv_until(|m| m["symbol"] == "ETH-USD" && m["bid"] == "3450.11")
        .await;
    assert_eq!(eth["bid_size"], "8.01200000");
    assert_eq!(eth["ask"], "3450.13");
    assert_eq!(eth["ask_size"], "2.95000000");
    assert_eq!(eth["last"], "3450.12");
    assert_eq!(eth["last_size"], "0.50000000");
    assert_eq!(eth["ts"], 1_763_900_000_006_090_000i64);
    assert_eq!(eth["seq"], 2);
    let text = metrics_text(&gw);
    let rejects: f64 = text
        .lines()
        .filter(|l| l.starts_with(r#"tickergate_feed_rejects_total{feed="coinbase","#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejects, 0.0, "a clean session rejects nothing:\n{text}");
    let feed = gw.feed("coinbase").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_alone_keep_the_feed_live() {
    const STALE_AFTER: Duration = Duration::from_millis(1_000);
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |v| v.stale_after_ms = STALE_AFTER.as_millis() as u64).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD", "ETH-USD"]).await;
    let mut conn = handshake(&mut up).await;
    let feed = gw.feed("coinbase").unwrap();
    wait_for("feed up after the acknowledgement", || feed.is_up()).await;
    // No ticker at all, only heartbeats, for about twice stale_after. The
    // sleep paces the venue; it asserts nothing.
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while started.elapsed() <= 2 * STALE_AFTER {
        let product = if n.is_multiple_of(2) {
            "BTC-USD"
        } else {
            "ETH-USD"
        };
        conn.send(&heartbeat(112345679000 + n, product)).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same upstream connection is still open: the supervisor never
    // took the heartbeats for silence.
    conn.ping_pong(b"still-here").await;
    // A round trip through the gateway: a stale status, had there been
    // one, was flushed long before this pong.
    c.send(json!({"op": "ping", "id": 7})).await;
    let (_, skipped) = c.recv_until(|m| m["type"] == "pong" && m["id"] == 7).await;
    assert!(
        skipped.iter().all(|m| m["type"] != "status"),
        "no status change while heartbeats flowed: {skipped:?}"
    );
    assert!(feed.is_up());
    assert_eq!(connects(&gw), 1.0, "no reconnect for silence");
    assert_eq!(
        metric(&metrics_text(&gw), r#"tickergate_feed_up{feed="coinbase"}"#),
        1.0
    );
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resubscribes_after_the_upstream_drops() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let mut conn = handshake(&mut up).await;
    let frames = sample_frames("coinbase/session.jsonl");
    conn.send(&frames[1]).await; // heartbeat
    conn.send(&frames[3]).await; // first BTC-USD ticker
    c.recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.01")
        .await;
    // Drop mid-stream without a close frame.
    drop(conn);
    let mut conn = handshake(&mut up).await;
    conn.send(&btc_ticker(
        112345679100,
        "97100.00",
        "97100.01",
        "2025-11-23T12:13:30.000000Z",
    ))
    .await;
    let (q, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97100.00")
        .await;
    assert_eq!(q["ask"], "97100.01");
    assert_eq!(q["ts"], 1_763_900_010_000_000_000i64);
    assert_eq!(connects(&gw), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_by_reason_and_survived() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let mut conn = handshake(&mut up).await;
    conn.send(&sample_frames("coinbase/session.jsonl")[3]).await;
    c.recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.01")
        .await;
    for f in sample_frames("coinbase/malformed.jsonl") {
        conn.send(&f).await;
    }
    conn.send(&btc_ticker(
        112345679100,
        "96999.99",
        "97000.00",
        "2025-11-23T12:13:22.000000Z",
    ))
    .await;
    let (q, skipped) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "96999.99")
        .await;
    assert_eq!(q["ask"], "97000.00");
    for m in &skipped {
        assert!(
            m["type"] != "quote" || m["bid"] == "97000.01",
            "a rejected frame leaked: {m}"
        );
    }
    let r = feed_rejects(&gw, "coinbase");
    assert_eq!(r("malformed"), 2.0, "truncated and non-JSON");
    assert_eq!(r("unexpected"), 1.0, "not an object");
    assert_eq!(
        r("bad_field"),
        7.0,
        "number price, NaN, Infinity, huge, exponent, missing product_id, bad time"
    );
    assert_eq!(r("unmapped_symbol"), 1.0);
    assert_eq!(r("crossed"), 1.0);
    assert_eq!(r("negative_size"), 1.0);
    assert_eq!(r("non_positive_price"), 1.0);
    assert_eq!(r("out_of_order"), 1.0);
    assert_eq!(r("scale"), 0.0);
    assert_eq!(connects(&gw), 1.0, "garbage does not cost the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_turns_stale_then_reconnect_turns_live() {
    let mut up = Upstream::start().await;
    // Long enough that the test acknowledges the new connection before the
    // supervisor gives up on it too.
    let gw = gateway(&up, |v| v.stale_after_ms = 1_000).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let mut conn = handshake(&mut up).await;
    conn.send(&sample_frames("coinbase/session.jsonl")[3]).await;
    c.recv_until(|m| m["symbol"] == "BTC-USD").await;
    // The upstream goes silent: no tickers, no heartbeats.
    let (st, _) = c.recv_until(|m| m["type"] == "status").await;
    assert_eq!(st["state"], "stale");
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
    // The supervisor gave up on the silent connection and reconnects; until
    // the new subscription is acknowledged the feed is not ready.
    conn.wait_closed().await;
    let (mut conn, sub) = subscribe_request(&mut up).await;
    assert_eq!(sub["type"], "subscribe", "it subscribes again");
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
    acknowledge(&mut conn, &sub).await;
    conn.send(&heartbeat(112345679050, "BTC-USD")).await;
    conn.send(&btc_ticker(
        112345679100,
        "97200.00",
        "97200.01",
        "2025-11-23T12:13:40.000000Z",
    ))
    .await;
    // Both arrive, in either order: `live` and the new quote.
    let (mut live, mut quote) = (false, false);
    while !(live && quote) {
        let (m, _) = c
            .recv_until(|m| {
                m["type"] == "status" || (m["symbol"] == "BTC-USD" && m["type"] == "quote")
            })
            .await;
        if m["type"] == "status" {
            assert_eq!(m["state"], "live");
            live = true;
        } else if m["bid"] == "97200.00" {
            quote = true;
        }
    }
    assert_eq!(connects(&gw), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_is_logged_not_a_reconnect_storm() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |v| {
        v.reconnect_min_ms = 10;
        v.reconnect_max_ms = 60_000;
    })
    .await;
    let (mut conn, sub) = subscribe_request(&mut up).await;
    assert_eq!(sub["type"], "subscribe");
    conn.send(
        r#"{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}"#,
    )
    .await;
    conn.wait_closed().await;
    // reconnect_min is 10 ms; a storm would be back within a second.
    assert!(
        up.accept_within(Duration::from_secs(1)).await.is_none(),
        "after a refusal the adapter waits reconnect_max before trying again"
    );
    assert_eq!(connects(&gw), 1.0);
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
}

/// Subscribes `c` to `symbols`, with trades when `trades`.
async fn subscribe_with(c: &mut Client, id: i64, symbols: &[&str], trades: bool) {
    c.send(json!({"op": "subscribe", "id": id, "symbols": symbols, "trades": trades}))
        .await;
    c.recv_until(|m| m["type"] == "subscribed" && m["id"] == id)
        .await;
}

/// Every ticker that carries a trade reaches a `"trades":true` subscriber
/// as a trade message (in order per symbol, exact text, the taker's side,
/// the trade id, the ticker's time); the first ticker after subscribing
/// (no trade details) is no trade; a subscriber without trades gets none,
/// and its quotes carry the book and the last trade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickers_with_trades_reach_trade_subscribers() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut t, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut t, 1, &["BTC-USD", "ETH-USD"], true).await;
    let (mut q, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut q, 1, &["BTC-USD", "ETH-USD"], false).await;
    let mut conn = handshake(&mut up).await;
    // The first ticker after subscribing: no trade_id, last_size, side, time.
    conn.send(r#"{"type":"ticker","sequence":112345678901,"product_id":"BTC-USD","price":"96999.99","open_24h":"96210.55","volume_24h":"8123.41937210","low_24h":"95801.10","high_24h":"97480.00","volume_30d":"301127.88345112","best_bid":"96999.98","best_bid_size":"0.10000000","best_ask":"96999.99","best_ask_size":"0.20000000"}"#)
        .await;
    for f in sample_frames("coinbase/session.jsonl").iter().skip(1) {
        conn.send(f).await;
    }
    // (symbol, seq, price, size, side, trade_id, ts) from the session.
    let want = [
        (
            "BTC-USD",
            1,
            "97000.02",
            "0.00100000",
            "buy",
            884521001u64,
            1_763_900_000_001_250_000i64,
        ),
        (
            "BTC-USD",
            2,
            "97000.01",
            "0.04512300",
            "sell",
            884521002,
            1_763_900_000_004_750_000,
        ),
        (
            "BTC-USD",
            3,
            "97000.05",
            "0.00210000",
            "buy",
            884521003,
            1_763_900_000_009_001_000,
        ),
        (
            "ETH-USD",
            1,
            "3450.13",
            "0.25000000",
            "buy",
            612300001,
            1_763_900_000_002_500_000,
        ),
        (
            "ETH-USD",
            2,
            "3450.12",
            "0.50000000",
            "sell",
            612300002,
            1_763_900_000_006_090_000,
        ),
    ];
    // The ticker's side is the taker's.
    expect_trades(&mut t, &want).await;
    let (last, skipped) = q
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.04")
        .await;
    assert_eq!(
        (&last["last"], &last["last_size"], &last["ask"]),
        (&json!("97000.05"), &json!("0.00210000"), &json!("97000.05"))
    );
    assert_eq!(last["seq"], 4, "the first ticker and three with trades");
    assert!(
        skipped.iter().all(|m| m["type"] != "trade"),
        "no trades unasked: {skipped:?}"
    );
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, r#"tickergate_trades_in_total{feed="coinbase"}"#),
        5.0
    );
}
