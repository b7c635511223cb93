//! A wildcard subscription sees symbols added later: an HTTP ingest feed
//! whose `symbols` hold a pattern adds a symbol at its first line, and
//! every session whose pattern matches it (and whose key may see it) is
//! subscribed and told, with the options of its subscribe; entitlements
//! and `max_symbols` hold.

mod common;

use common::*;
use serde_json::{json, Value};
use tickergate::auth::token_hash_hex;
use tickergate::config::{FeedConfig, IngestConfig, KeyConfig};
use tickergate::Gateway;

const KEY: &str = "ingest-key";

async fn gw(tweak: impl FnOnce(&mut tickergate::Config)) -> Gateway {
    let feed = IngestConfig {
        name: "pusher".into(),
        key_sha256: token_hash_hex(KEY),
        symbols: vec!["AAPL".into(), "NEW-*".into()],
        max_new_symbols: 3,
        ..IngestConfig::default()
    };
    start(|c| {
        c.feeds = vec![FeedConfig::Http(feed)];
        tweak(c);
    })
    .await
}

async fn push(gw: &Gateway, lines: &[Value]) -> Value {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (st, r) = ingest_post(gw.local_addr, KEY, &body).await;
    assert_eq!(st, 200, "{r}");
    r
}

fn quote_line(sym: &str, bid: &str) -> Value {
    json!({"symbol": sym, "bid": bid, "ask": "99.00"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_takes_symbols_added_later_with_its_options() {
    let gw = gw(|_| {}).await;
    let r = push(&gw, &[quote_line("NEW-A", "1.00")]).await;
    assert_eq!(r["accepted"], 1, "{r}");
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["NEW-*"],"max_hz":100,"trades":true}))
        .await;
    let sub = c.recv_type("subscribed").await;
    assert_eq!(sub["symbols"], json!(["NEW-A"]));
    let (mut plain, _) = Client::connect_welcomed(gw.local_addr).await;
    plain.subscribe(1, &["NEW-A"]).await;

    // A new symbol the pattern matches: announced, then its value.
    let r = push(&gw, &[quote_line("NEW-B", "2.00")]).await;
    assert_eq!(r["accepted"], 1, "{r}");
    let (ann, _) = c
        .recv_until(|m| m["type"] == "subscribed" && m["symbols"] == json!(["NEW-B"]))
        .await;
    assert_eq!(
        (&ann["pattern"], &ann["max_hz"], &ann["trades"]),
        (&json!("NEW-*"), &json!(100.0), &json!(true)),
        "{ann}"
    );
    assert!(ann.get("id").is_none(), "no op asked: {ann}");
    c.recv_until(|m| m["type"] == "quote" && m["symbol"] == "NEW-B" && m["bid"] == "2.00")
        .await;
    // The pattern's trades option holds for it.
    push(
        &gw,
        &[json!({"type":"trade","symbol":"NEW-B","price":"2.50","size":"3","trade_id":9})],
    )
    .await;
    let (t, _) = c.recv_until(|m| m["type"] == "trade").await;
    assert_eq!(
        (&t["symbol"], &t["price"], &t["seq"]),
        (&json!("NEW-B"), &json!("2.50"), &json!(1))
    );

    // REST lists it; a session that named symbols gets nothing of it.
    let (_, list) = http_get(gw.local_addr, "/v1/symbols").await;
    assert!(list.contains("\"NEW-B\""), "{list}");
    push(&gw, &[quote_line("NEW-A", "1.01")]).await;
    let (_, skipped) = plain
        .recv_until(|m| m["type"] == "quote" && m["bid"] == "1.01")
        .await;
    assert!(
        skipped.iter().all(|m| m["symbol"] != "NEW-B"),
        "{skipped:?}"
    );

    // Unsubscribing the pattern stops the watch: the next addition is not
    // taken (NEW-C), and the feed's room is finite (max_new_symbols = 3:
    // NEW-A, NEW-B, NEW-C; NEW-D is refused with a clear error).
    c.send(json!({"op":"unsubscribe","id":2,"symbols":["NEW-*"]}))
        .await;
    c.recv_until(|m| m["type"] == "unsubscribed").await;
    let r = push(
        &gw,
        &[quote_line("NEW-C", "3.00"), quote_line("NEW-D", "4.00")],
    )
    .await;
    assert_eq!(
        (&r["accepted"], &r["rejected"]),
        (&json!(1), &json!(1)),
        "{r}"
    );
    assert_eq!(r["errors"][0]["code"], "unknown_symbol");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_new_symbols (3)")),
        "{r}"
    );
    // A name the patterns do not match is not added.
    let r = push(&gw, &[quote_line("OTHER", "5.00")]).await;
    assert_eq!(r["errors"][0]["code"], "unknown_symbol", "{r}");
    push(&gw, &[quote_line("AAPL", "6.00")]).await;
    c.subscribe(3, &["AAPL"]).await;
    let (_, seen) = c
        .recv_until(|m| m["type"] == "quote" && m["symbol"] == "AAPL")
        .await;
    assert!(
        seen.iter()
            .all(|m| m["symbol"] != "NEW-C" && m["symbols"] != json!(["NEW-C"])),
        "unwatched: {seen:?}"
    );
}

fn key(name: &str, token: &str, symbols: &[&str]) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        sha256: token_hash_hex(token),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        max_connections: None,
        max_symbols: Some(3),
    }
}

/// A key entitled to `NEW-A*` and AAPL that subscribes to `*` is told of
/// new symbols it may see and never of the others; at its `max_symbols`
/// a new match is refused with `too_many_symbols` naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_symbols_through_patterns_respect_entitlements_and_limits() {
    let gw = gw(|c| {
        c.auth.keys = vec![key("narrow", "narrow-key", &["NEW-A*", "AAPL"])];
        if let FeedConfig::Http(h) = &mut c.feeds[0] {
            h.max_new_symbols = 10;
        }
    })
    .await;
    push(&gw, &[quote_line("AAPL", "1.00")]).await;
    let mut c = Client::connect(gw.local_addr).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"auth","id":1,"token":"narrow-key"}))
        .await;
    c.recv_type("authenticated").await;
    c.send(json!({"op":"subscribe","id":2,"symbols":["*"]}))
        .await;
    let sub = c.recv_type("subscribed").await;
    assert_eq!(sub["symbols"], json!(["AAPL"]));

    // NEW-B: not entitled, never mentioned. NEW-AB and NEW-AC: taken.
    push(&gw, &[quote_line("NEW-B", "2.00")]).await;
    push(&gw, &[quote_line("NEW-AB", "3.00")]).await;
    let (ann, before) = c
        .recv_until(|m| m["type"] == "subscribed" && m["symbols"] == json!(["NEW-AB"]))
        .await;
    assert_eq!(ann["pattern"], "*");
    push(&gw, &[quote_line("NEW-AC", "4.00")]).await;
    c.recv_until(|m| m["type"] == "subscribed" && m["symbols"] == json!(["NEW-AC"]))
        .await;
    // The key's max_symbols is 3 (AAPL, NEW-AB, NEW-AC): one more is
    // refused, by name, and not held.
    let r = push(&gw, &[quote_line("NEW-AD", "5.00")]).await;
    assert_eq!(r["accepted"], 1, "{r}");
    let (e, after) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (&e["code"], &e["symbol"]),
        (&json!("too_many_symbols"), &json!("NEW-AD")),
        "{e}"
    );
    for m in before.iter().chain(after.iter()) {
        let text = m.to_string();
        assert!(!text.contains("NEW-B\""), "leaked: {m}");
    }
    // Still held: AAPL, NEW-AB, NEW-AC only.
    push(
        &gw,
        &[quote_line("NEW-AD", "5.01"), quote_line("AAPL", "1.01")],
    )
    .await;
    let (_, seen) = c
        .recv_until(|m| m["type"] == "quote" && m["symbol"] == "AAPL" && m["bid"] == "1.01")
        .await;
    assert!(seen.iter().all(|m| m["symbol"] != "NEW-AD"), "{seen:?}");
}
