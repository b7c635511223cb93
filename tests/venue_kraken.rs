//! The Kraken adapter against a fake Kraken (a real WebSocket server
//! speaking Kraken's Spot WebSocket v2 protocol from feeds/kraken/*.jsonl),
//! end to end to a real gateway subscriber. Kraken sends prices as JSON
//! numbers: their exact text must reach subscribers.

mod common;

use common::upstream::{sample_frames, Upstream};
use common::*;
use serde_json::json;
use std::time::Duration;
use tickergate::config::{FeedConfig, VenueConfig, VenueKind};

async fn gateway(up: &Upstream, tweak: impl FnOnce(&mut VenueConfig)) -> tickergate::Gateway {
    let mut v = VenueConfig {
        url: up.url("/v2"),
        symbols: [
            ("BTC/USD".to_string(), "BTC-USD".to_string()),
            ("ETH/USD".to_string(), "ETH-USD".to_string()),
        ]
        .into(),
        stale_after_ms: 5_000,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        ..VenueConfig::default()
    };
    tweak(&mut v);
    v.name = "kraken".into();
    start(|c| c.feeds = vec![FeedConfig::Venue(VenueKind::Kraken, v)]).await
}

/// Accepts the adapter, checks its two `subscribe`s (ticker, then trades)
/// and acknowledges each pair of each as Kraken does (one ack per pair and
/// channel). Returns the connection and the ticker's `req_id`.
async fn handshake(up: &mut Upstream) -> (common::upstream::UpConn, u64) {
    let mut conn = up.accept().await;
    assert_eq!(conn.path, "/v2", "the v2 endpoint");
    let sub = conn.recv_json().await;
    assert_eq!(sub["method"], "subscribe");
    assert_eq!(sub["params"]["channel"], "ticker");
    assert_eq!(
        sub["params"]["event_trigger"], "bbo",
        "updates on every BBO change"
    );
    let mut symbols: Vec<String> =
        serde_json::from_value(sub["params"]["symbol"].clone()).expect("symbol is a list of pairs");
    symbols.sort();
    assert_eq!(symbols, ["BTC/USD", "ETH/USD"]);
    let req_id = sub["req_id"]
        .as_u64()
        .expect("subscribe carries an integer req_id");
    let trades = conn.recv_json().await;
    assert_eq!(trades["method"], "subscribe");
    assert_eq!(
        trades["params"]["channel"], "trade",
        "the trade channel too"
    );
    assert_eq!(
        trades["params"]["snapshot"], false,
        "no history of trades before ours"
    );
    let mut pairs: Vec<String> = serde_json::from_value(trades["params"]["symbol"].clone())
        .expect("symbol is a list of pairs");
    pairs.sort();
    assert_eq!(pairs, symbols, "every pair's trades");
    let trade_req_id = trades["req_id"].as_u64().expect("an integer req_id");
    assert_ne!(trade_req_id, req_id, "a req_id per request");
    for (channel, id) in [("ticker", req_id), ("trade", trade_req_id)] {
        for s in &symbols {
            let ack = json!({
                "method": "subscribe",
                "result": {"channel": channel, "snapshot": channel == "ticker", "symbol": s},
                "success": true,
                "time_in": "2025-11-23T12:13:19.998512Z",
                "time_out": "2025-11-23T12:13:19.998570Z",
                "req_id": id,
            });
            conn.send(&ack.to_string()).await;
        }
    }
    (conn, req_id)
}

/// The recorded session without its acks (the handshake sends those).
fn session() -> Vec<String> {
    sample_frames("kraken/session.jsonl")
        .into_iter()
        .filter(|f| !f.contains(r#""method":"subscribe""#))
        .collect()
}

/// The BTC/USD snapshot of the recorded session.
fn btc_snapshot() -> String {
    session()
        .into_iter()
        .find(|f| f.contains(r#""type":"snapshot""#) && f.contains("BTC/USD"))
        .expect("the session has a BTC/USD snapshot")
}

/// A BTC/USD ticker update with these JSON number texts.
fn btc_update(bid: &str, ask: &str) -> String {
    format!(
        r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"BTC/USD","bid":{bid},"bid_qty":1.00000000,"ask":{ask},"ask_qty":2.00000000,"last":{ask},"volume":1.0,"vwap":1.0,"low":1.0,"high":1.0,"change":0.0,"change_pct":0.00}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_and_delivers_the_exact_number_text_kraken_sent() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD", "ETH-USD"]).await;
    let (mut conn, _) = handshake(&mut up).await;
    for f in session() {
        conn.send(&f).await;
    }
    let (btc, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.1")
        .await;
    assert_eq!(
        btc["bid_size"], "0.50000000",
        "not 0.5: the number's text, not an f64"
    );
    assert_eq!(btc["ask"], "97000.2");
    assert_eq!(btc["ask_size"], "1.25000000");
    assert_eq!(btc["last"], "97000.2");
    assert!(
        btc.get("last_size").is_none(),
        "Kraken's ticker has no last size: {btc}"
    );
    assert_eq!(
        btc["ts"], 1_763_900_000_004_500_000i64,
        "the entry's RFC 3339 timestamp"
    );
    assert_eq!(btc["seq"], 3, "a snapshot and two updates");
    let (eth, _) = c
        .recv_until(|m| m["symbol"] == "ETH-USD" && m["bid"] == "3450.20")
        .await;
    assert_eq!(eth["bid_size"], "8.00000000");
    assert_eq!(eth["ask"], "3450.21");
    assert_eq!(eth["ask_size"], "4.40000000");
    assert_eq!(eth["seq"], 2);
    let feed = gw.feed("kraken").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 200);
    // The last frames (a heartbeat) come after the ETH quote: counted by
    // the feed's task, maybe after the quote reached us. Four acks and the
    // session's eight frames.
    wait_for("all 12 frames counted", || {
        metric(
            &metrics_text(&gw),
            r#"tickergate_feed_frames_total{feed="kraken"}"#,
        ) == 12.0
    })
    .await;
    for reason in [
        "malformed",
        "unexpected",
        "bad_field",
        "unmapped_symbol",
        "out_of_order",
    ] {
        assert_eq!(
            feed_rejects(&gw, "kraken")(reason),
            0.0,
            "{reason}: the recorded session is clean"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_status_and_pongs_keep_it_live() {
    let mut up = Upstream::start().await;
    // 1.1 s of slack per sign of life: more than a loaded machine delays
    // the test's sends.
    let gw = gateway(&up, |v| v.stale_after_ms = 1200).await;
    let (mut conn, _) = handshake(&mut up).await;
    conn.send(&btc_snapshot()).await;
    let feed = gw.feed("kraken").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    // No data for 2.5x stale_after, only signs of life every 100 ms.
    let life = [
        r#"{"channel":"heartbeat"}"#,
        r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":123,"system":"online","version":"2.0.0"}]}"#,
        r#"{"method":"pong","req_id":9,"time_in":"2025-11-23T12:13:20.000000Z","time_out":"2025-11-23T12:13:20.000010Z"}"#,
    ];
    for i in 0..30 {
        conn.send(life[i % life.len()]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            feed.is_up(),
            "still live after {} ms of heartbeats only",
            (i + 1) * 100
        );
    }
    assert_eq!(feed_connects(&gw, "kraken"), 1.0, "no reconnect");
    // And it was the heartbeats: without them the feed goes stale.
    wait_for("feed stale", || !feed.is_up()).await;
    conn.wait_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resubscribes_after_the_upstream_drops() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let (mut conn, first_id) = handshake(&mut up).await;
    conn.send(&btc_snapshot()).await;
    c.recv_until(|m| m["symbol"] == "BTC-USD").await;
    // Drop mid-stream without a close frame.
    drop(conn);
    let (mut conn, second_id) = handshake(&mut up).await;
    assert!(second_id > first_id, "req_id grows per connection attempt");
    conn.send(&btc_update("97100.00", "97100.01")).await;
    let (q, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97100.00")
        .await;
    assert_eq!(q["ask"], "97100.01");
    assert_eq!(q["bid_size"], "1.00000000");
    assert_eq!(feed_connects(&gw, "kraken"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_by_reason_and_survived() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let (mut conn, _) = handshake(&mut up).await;
    // The whole session first: the timestamp case needs its timestamps.
    for f in session() {
        conn.send(&f).await;
    }
    c.recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.1")
        .await;
    for f in sample_frames("kraken/malformed.jsonl") {
        conn.send(&f).await;
    }
    conn.send(&btc_update("96999.5", "96999.6")).await;
    let (q, skipped) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "96999.5")
        .await;
    assert_eq!(q["ask"], "96999.6");
    for m in &skipped {
        let bid = m["bid"].as_str().unwrap_or("");
        assert!(
            !["97000.5", "NaN", "0", "9.7e4"].contains(&bid) && m["bid_size"] != "-1.0",
            "a rejected frame leaked: {m}"
        );
    }
    let r = feed_rejects(&gw, "kraken");
    assert_eq!(r("malformed"), 2.0, "truncated and non-JSON");
    assert_eq!(r("unexpected"), 1.0, "not an object");
    assert_eq!(
        r("bad_field"),
        6.0,
        "NaN string, exponent, huge number, missing symbol, data not an array, bad timestamp"
    );
    assert_eq!(r("unmapped_symbol"), 1.0);
    assert_eq!(r("crossed"), 1.0);
    assert_eq!(r("negative_size"), 1.0);
    assert_eq!(r("non_positive_price"), 1.0);
    assert_eq!(r("out_of_order"), 1.0, "timestamp going backwards");
    assert_eq!(r("scale"), 0.0);
    assert_eq!(
        feed_connects(&gw, "kraken"),
        1.0,
        "garbage does not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_turns_stale_then_reconnect_turns_live() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |v| v.stale_after_ms = 1_000).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let (mut conn, _) = handshake(&mut up).await;
    conn.send(&btc_snapshot()).await;
    c.recv_until(|m| m["symbol"] == "BTC-USD").await;
    // The upstream goes silent: no data, no heartbeat.
    let (st, _) = c.recv_until(|m| m["type"] == "status").await;
    assert_eq!(st["state"], "stale");
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
    // The supervisor gave up on the silent connection and reconnects; until
    // the new subscription is acknowledged the feed is not ready.
    conn.wait_closed().await;
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    assert_eq!(sub["method"], "subscribe", "it subscribes again");
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
    let ack = json!({
        "method": "subscribe",
        "result": {"channel": "ticker", "snapshot": true, "symbol": "BTC/USD"},
        "success": true,
        "req_id": sub["req_id"],
    });
    conn.send(&ack.to_string()).await;
    conn.send(&btc_update("97200.0", "97200.1")).await;
    // Both arrive, in either order: `live` (at the watchdog's next pass)
    // and the new quote (at once).
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
        } else if m["bid"] == "97200.0" {
            assert_eq!(m["ask"], "97200.1");
            quote = true;
        }
    }
}

/// Reconnects would come within 10 ms; a refused subscription waits a
/// minute: a reconnect storm would show at once.
fn quick_retry_long_wait(v: &mut VenueConfig) {
    v.reconnect_min_ms = 10;
    v.reconnect_max_ms = 60_000;
}

/// Kraken's refusal of one pair, as documented.
fn refusal(pair: &str, req_id: &serde_json::Value) -> String {
    json!({
        "error": format!("Currency pair not supported {pair}"),
        "method": "subscribe",
        "success": false,
        "symbol": pair,
        "time_in": "2025-11-23T12:13:19.998512Z",
        "time_out": "2025-11-23T12:13:19.998570Z",
        "req_id": req_id,
    })
    .to_string()
}

/// Kraken acks or refuses each pair on its own: one refused pair is logged
/// and counted, and the other pair streams on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pair_is_counted_and_the_other_pairs_stream_on() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, quick_retry_long_wait).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD", "ETH-USD"]).await;
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    conn.send(&refusal("BTC/USD", &sub["req_id"])).await;
    let ack = json!({
        "method": "subscribe",
        "result": {"channel": "ticker", "snapshot": true, "symbol": "ETH/USD"},
        "success": true,
        "req_id": sub["req_id"],
    });
    conn.send(&ack.to_string()).await;
    let eth = btc_update("3450.20", "3450.21").replace("BTC/USD", "ETH/USD");
    conn.send(&eth).await;
    let (q, _) = c
        .recv_until(|m| m["symbol"] == "ETH-USD" && m["type"] == "quote")
        .await;
    assert_eq!(q["bid"], "3450.20");
    let text = metrics_text(&gw);
    assert_eq!(
        metric(
            &text,
            r#"tickergate_feed_symbols_refused_total{feed="kraken"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"tickergate_feed_connects_total{feed="kraken"}"#),
        1.0,
        "no reconnect for one refused pair"
    );
    assert!(
        up.accept_within(Duration::from_millis(300)).await.is_none(),
        "the connection stays"
    );
}

/// Every configured pair refused: nothing would ever stream, so the
/// adapter closes and waits its longest backoff (not a reconnect storm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_refused_is_logged_not_a_reconnect_storm() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, quick_retry_long_wait).await;
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    conn.send(&refusal("BTC/USD", &sub["req_id"])).await;
    conn.send(&refusal("ETH/USD", &sub["req_id"])).await;
    conn.wait_closed().await;
    // reconnect_min is 10 ms; a storm would be back within a second.
    assert!(
        up.accept_within(Duration::from_secs(1)).await.is_none(),
        "after a refusal the adapter waits reconnect_max before trying again"
    );
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
}

/// Subscribes `c` to `symbols`, with trades when `trades`.
async fn subscribe_with(c: &mut Client, id: i64, symbols: &[&str], trades: bool) {
    c.send(json!({"op": "subscribe", "id": id, "symbols": symbols, "trades": trades}))
        .await;
    c.recv_until(|m| m["type"] == "subscribed" && m["id"] == id)
        .await;
}

/// The trade channel's recorded frames without their acks.
fn trade_frames() -> Vec<String> {
    sample_frames("kraken/trades.jsonl")
        .into_iter()
        .filter(|f| !f.contains(r#""method":"subscribe""#))
        .collect()
}

/// A BTC/USD trade update with these JSON number texts.
fn btc_trade(id: u64, price: &str, qty: &str) -> String {
    format!(
        r#"{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USD","side":"buy","price":{price},"qty":{qty},"ord_type":"market","trade_id":{id},"timestamp":"2025-11-23T12:13:21.000000Z"}}]}}"#
    )
}

/// Kraken's trades reach a `"trades":true` subscriber in order per pair
/// with the numbers' exact text (`97000.10`, not `97000.1`), the taker's
/// side, the trade id and the trade's time; the snapshot's trades (history)
/// are not delivered; a repeated trade id is refused; a subscriber without
/// trades gets none, and its quotes carry the last trade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_reach_trade_subscribers_with_the_exact_number_text() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut t, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut t, 1, &["BTC-USD", "ETH-USD"], true).await;
    let (mut q, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut q, 1, &["BTC-USD", "ETH-USD"], false).await;
    let (mut conn, _) = handshake(&mut up).await;
    for f in session().into_iter().chain(trade_frames()) {
        conn.send(&f).await;
    }
    // A repeat of an id already taken, then the next trade.
    conn.send(&btc_trade(4665907, "1.0", "1.0")).await;
    conn.send(&btc_trade(4665909, "97000.30", "0.00200000"))
        .await;
    // (symbol, seq, price, size, side, trade_id, ts)
    let want = [
        (
            "BTC-USD",
            1,
            "97000.10",
            "0.00100000",
            "buy",
            4665906u64,
            1_763_900_000_001_000_000i64,
        ),
        (
            "BTC-USD",
            2,
            "97000.0",
            "0.50000000",
            "sell",
            4665907,
            1_763_900_000_001_000_000,
        ),
        (
            "BTC-USD",
            3,
            "97000.2",
            "0.07500000",
            "sell",
            4665908,
            1_763_900_000_004_400_000,
        ),
        (
            "BTC-USD",
            4,
            "97000.30",
            "0.00200000",
            "buy",
            4665909,
            1_763_900_001_000_000_000,
        ),
        (
            "ETH-USD",
            1,
            "3450.21",
            "1.20000000",
            "buy",
            1830001,
            1_763_900_000_002_900_000,
        ),
    ];
    // The number's text, not an f64; neither a snapshot trade nor the
    // repeat.
    expect_trades(&mut t, &want).await;
    let (last, skipped) = q
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["last_size"] == "0.00200000")
        .await;
    assert_eq!(last["last"], "97000.30");
    assert_eq!(last["bid"], "97000.1", "the book stays the ticker's");
    assert!(
        skipped.iter().all(|m| m["type"] != "trade"),
        "no trades unasked: {skipped:?}"
    );
    assert_eq!(
        feed_rejects(&gw, "kraken")("out_of_order"),
        1.0,
        "the repeat"
    );
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, r#"tickergate_trades_in_total{feed="kraken"}"#),
        5.0,
        "the snapshot's two trades are not counted"
    );
    // Nothing more came for the trade subscriber: the next message after a
    // fresh quote is that quote, not a late snapshot trade.
    conn.send(&btc_update("97000.3", "97000.4")).await;
    let (_, skipped) = t
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.3")
        .await;
    assert!(skipped.iter().all(|m| m["type"] != "trade"), "{skipped:?}");
}
