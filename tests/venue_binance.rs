//! The Binance adapter against a fake Binance (a real WebSocket server
//! speaking Binance's combined-stream protocol from feeds/binance/*.jsonl),
//! end to end to a real gateway subscriber.

mod common;

use common::upstream::{sample_frames, Upstream};
use common::*;
use serde_json::json;
use std::time::Duration;
use tickergate::config::{FeedConfig, VenueConfig, VenueKind};

async fn gateway(up: &Upstream, tweak: impl FnOnce(&mut VenueConfig)) -> tickergate::Gateway {
    let mut v = VenueConfig {
        url: up.url("/stream"),
        symbols: [
            ("BTCUSDT".to_string(), "BTC-USDT".to_string()),
            ("ETHUSDT".to_string(), "ETH-USDT".to_string()),
        ]
        .into(),
        stale_after_ms: 5_000,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        ..VenueConfig::default()
    };
    tweak(&mut v);
    v.name = "binance".into();
    start(|c| c.feeds = vec![FeedConfig::Venue(VenueKind::Binance, v)]).await
}

/// Accepts the adapter, checks its SUBSCRIBE and acknowledges it.
async fn handshake(up: &mut Upstream) -> common::upstream::UpConn {
    let mut conn = up.accept().await;
    assert_eq!(conn.path, "/stream", "combined-stream endpoint");
    let sub = conn.recv_json().await;
    assert_eq!(sub["method"], "SUBSCRIBE");
    let mut params: Vec<String> =
        serde_json::from_value(sub["params"].clone()).expect("params is a list of streams");
    params.sort();
    assert_eq!(
        params,
        [
            "btcusdt@bookTicker",
            "btcusdt@trade",
            "ethusdt@bookTicker",
            "ethusdt@trade"
        ]
    );
    let id = sub["id"].as_u64().expect("SUBSCRIBE carries an integer id");
    conn.send(&json!({"result": null, "id": id}).to_string())
        .await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_and_delivers_exact_decimals_merging_trades_into_the_book() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT", "ETH-USDT"]).await;
    let mut conn = handshake(&mut up).await;
    // Binance pings; the adapter must pong.
    conn.ping_pong(b"binance-ping").await;
    for f in sample_frames("binance/session.jsonl").iter().skip(1) {
        conn.send(f).await;
    }
    let (btc, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USDT" && m["bid"] == "97000.00000000")
        .await;
    assert_eq!(btc["bid_size"], "2.00000000");
    assert_eq!(btc["ask"], "97000.01000000");
    assert_eq!(btc["ask_size"], "0.10000000");
    assert_eq!(
        btc["last"], "97000.02000000",
        "the trade merged into the book"
    );
    assert_eq!(btc["last_size"], "0.00100000");
    assert_eq!(btc["ts"], 1_763_900_000_001_000_000i64);
    assert_eq!(btc["seq"], 4, "three book updates and one trade");
    let (eth, _) = c
        .recv_until(|m| m["symbol"] == "ETH-USDT" && m.get("last").is_some())
        .await;
    assert_eq!(eth["bid"], "3450.12000000");
    assert_eq!(eth["last"], "3450.13000000");
    assert_eq!(eth["last_size"], "0.25000000");
    let feed = gw.feed("binance").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resubscribes_after_the_upstream_drops() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT"]).await;
    let mut conn = handshake(&mut up).await;
    let frames = sample_frames("binance/session.jsonl");
    conn.send(&frames[1]).await;
    c.recv_until(|m| m["symbol"] == "BTC-USDT").await;
    // Drop mid-stream without a close frame.
    drop(conn);
    let mut conn = handshake(&mut up).await;
    conn.send(r#"{"stream":"btcusdt@bookTicker","data":{"u":400900300,"s":"BTCUSDT","b":"97100.00","B":"1","a":"97100.01","A":"1"}}"#)
        .await;
    let (q, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USDT" && m["bid"] == "97100.00")
        .await;
    assert_eq!(q["ask"], "97100.01");
    assert_eq!(feed_connects(&gw, "binance"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_by_reason_and_survived() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT"]).await;
    let mut conn = handshake(&mut up).await;
    conn.send(&sample_frames("binance/session.jsonl")[1]).await;
    c.recv_until(|m| m["symbol"] == "BTC-USDT").await;
    for f in sample_frames("binance/malformed.jsonl") {
        conn.send(&f).await;
    }
    conn.send(r#"{"stream":"btcusdt@bookTicker","data":{"u":400900400,"s":"BTCUSDT","b":"96999.99","B":"1","a":"97000.00","A":"1"}}"#)
        .await;
    let (q, skipped) = c
        .recv_until(|m| m["symbol"] == "BTC-USDT" && m["bid"] == "96999.99")
        .await;
    assert_eq!(q["ask"], "97000.00");
    for m in &skipped {
        let bid = m["bid"].as_str().unwrap_or("");
        assert!(
            !["97000.05", "NaN", "0"].contains(&bid) && m["bid_size"] != "-1.0",
            "a rejected frame leaked: {m}"
        );
    }
    let r = feed_rejects(&gw, "binance");
    assert_eq!(r("malformed"), 2.0, "truncated and non-JSON");
    assert_eq!(
        r("bad_field"),
        6.0,
        "number price, NaN, Infinity, huge, exponent, missing"
    );
    assert_eq!(r("unmapped_symbol"), 1.0);
    assert_eq!(r("unexpected"), 1.0);
    assert_eq!(r("crossed"), 1.0);
    assert_eq!(r("negative_size"), 1.0);
    assert_eq!(r("non_positive_price"), 1.0);
    assert_eq!(r("out_of_order"), 1.0);
    assert_eq!(
        feed_connects(&gw, "binance"),
        1.0,
        "garbage does not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_turns_stale_then_reconnect_turns_live() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |v| v.stale_after_ms = 1_000).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT"]).await;
    let mut conn = handshake(&mut up).await;
    conn.send(&sample_frames("binance/session.jsonl")[1]).await;
    c.recv_until(|m| m["symbol"] == "BTC-USDT").await;
    // The upstream goes silent: no data, no heartbeat.
    let (st, _) = c.recv_until(|m| m["type"] == "status").await;
    assert_eq!(st["state"], "stale");
    // The supervisor gave up on the silent connection and reconnects; until
    // the new subscription is acknowledged the feed is not ready.
    conn.wait_closed().await;
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    assert_eq!(sub["method"], "SUBSCRIBE", "it subscribes again");
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 503);
    conn.send(&json!({"result": null, "id": sub["id"]}).to_string())
        .await;
    conn.send(r#"{"stream":"btcusdt@bookTicker","data":{"u":400900500,"s":"BTCUSDT","b":"97200.00","B":"1","a":"97200.01","A":"1"}}"#)
        .await;
    // Both arrive, in either order: `live` and the new quote.
    let (mut live, mut quote) = (false, false);
    while !(live && quote) {
        let (m, _) = c
            .recv_until(|m| {
                m["type"] == "status" || (m["symbol"] == "BTC-USDT" && m["type"] == "quote")
            })
            .await;
        if m["type"] == "status" {
            assert_eq!(m["state"], "live");
            live = true;
        } else if m["bid"] == "97200.00" {
            quote = true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_is_logged_not_a_reconnect_storm() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |v| {
        v.reconnect_min_ms = 10;
        v.reconnect_max_ms = 60_000;
    })
    .await;
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    assert_eq!(sub["id"], 1);
    // The refusal as recorded in feeds/binance/errors.jsonl.
    conn.send(&sample_frames("binance/errors.jsonl")[0]).await;
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

/// A BTCUSDT (or another symbol's) trade frame as Binance sends it.
fn trade_frame(sym: &str, t: u64, p: &str, q: &str, ms: u64, buyer_is_maker: bool) -> String {
    json!({"stream": format!("{}@trade", sym.to_lowercase()),
           "data": {"e": "trade", "E": ms, "s": sym, "t": t, "p": p, "q": q, "T": ms,
                    "m": buyer_is_maker, "M": true}})
    .to_string()
}

/// Every upstream trade reaches a `"trades":true` subscriber as a trade
/// message, in order, with the exact text, the taker's side and the trade
/// id; a repeated trade id is refused; a subscriber without trades gets
/// none but its quotes' last trade still moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_reach_trade_subscribers_in_order_with_exact_text() {
    let mut up = Upstream::start().await;
    let gw = gateway(&up, |_| {}).await;
    let (mut t, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut t, 1, &["BTC-USDT", "ETH-USDT"], true).await;
    let (mut q, _) = Client::connect_welcomed(gw.local_addr).await;
    subscribe_with(&mut q, 1, &["BTC-USDT", "ETH-USDT"], false).await;
    let mut conn = handshake(&mut up).await;
    let ms = 1_763_900_000_001;
    for f in [
        trade_frame("BTCUSDT", 5123456, "97000.10000000", "0.00100000", ms, true),
        trade_frame("ETHUSDT", 880001, "3450.13000000", "0.25000000", ms, false),
        trade_frame("BTCUSDT", 5123457, "97000.00", "1.50000000", ms + 1, false),
        // Binance repeating itself: refused as out of order.
        trade_frame("BTCUSDT", 5123457, "1.00", "1", ms + 2, false),
        trade_frame("BTCUSDT", 5123458, "97000.2", "0.075", ms + 3, true),
    ] {
        conn.send(&f).await;
    }
    // (symbol, seq, price, size, side, trade_id, ts)
    let want = [
        (
            "BTC-USDT",
            1,
            "97000.10000000",
            "0.00100000",
            "sell",
            5123456,
            ms,
        ),
        (
            "ETH-USDT",
            1,
            "3450.13000000",
            "0.25000000",
            "buy",
            880001,
            ms,
        ),
        (
            "BTC-USDT",
            2,
            "97000.00",
            "1.50000000",
            "buy",
            5123457,
            ms + 1,
        ),
        ("BTC-USDT", 3, "97000.2", "0.075", "sell", 5123458, ms + 3),
    ];
    // m=true: the seller took; ts is the trade time T, in ns.
    let want: Vec<WantTrade> = want
        .iter()
        .map(|&(sym, seq, price, size, side, id, ms)| {
            (sym, seq, price, size, side, id, ms as i64 * 1_000_000)
        })
        .collect();
    expect_trades(&mut t, &want).await;
    // The quotes-only subscriber: the last trade in its quote, no trades.
    let (last, skipped) = q
        .recv_until(|m| m["symbol"] == "BTC-USDT" && m["last"] == "97000.2")
        .await;
    assert_eq!(last["last_size"], "0.075");
    assert!(
        skipped.iter().all(|m| m["type"] != "trade"),
        "no trades unasked: {skipped:?}"
    );
    assert_eq!(feed_rejects(&gw, "binance")("out_of_order"), 1.0);
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, r#"tickergate_trades_in_total{feed="binance"}"#),
        4.0
    );
}
