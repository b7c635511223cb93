//! Consolidated best bid/offer end to end: a fake Coinbase and a fake
//! Kraken (real WebSocket servers speaking each venue's protocol) feed the
//! legs CB-BTC-USD and KR-BTC-USD of a `[[consolidated]]` BTC-USD, and a
//! real WebSocket client subscribed to BTC-USD sees the best of both with
//! the feed of each side. And `--check-config` refuses every bad
//! `[[consolidated]]` table, naming it and the symbol.

mod common;

use common::upstream::{UpConn, Upstream};
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use tickergate::config::{ConsolidatedConfig, FeedConfig, VenueConfig, VenueKind};

const BIN: &str = env!("CARGO_BIN_EXE_tickergate");

/// Kraken goes stale after this much silence; Coinbase only when its
/// connection drops (its stale_after is far longer than any test step).
const KRAKEN_STALE_AFTER_MS: u64 = 1_000;

async fn gateway(cb: &Upstream, kr: &Upstream) -> tickergate::Gateway {
    let venue = |name: &str, url: String, venue_sym: &str, sym: &str, stale_after_ms| VenueConfig {
        name: name.into(),
        url,
        symbols: [(venue_sym.to_string(), sym.to_string())].into(),
        stale_after_ms,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        ..VenueConfig::default()
    };
    start(|c| {
        c.feeds = vec![
            FeedConfig::Venue(
                VenueKind::Coinbase,
                venue("coinbase", cb.url("/"), "BTC-USD", "CB-BTC-USD", 60_000),
            ),
            FeedConfig::Venue(
                VenueKind::Kraken,
                venue(
                    "kraken",
                    kr.url("/v2"),
                    "BTC/USD",
                    "KR-BTC-USD",
                    KRAKEN_STALE_AFTER_MS,
                ),
            ),
        ];
        c.consolidated = vec![ConsolidatedConfig {
            symbol: "BTC-USD".into(),
            from: vec!["CB-BTC-USD".into(), "KR-BTC-USD".into()],
        }];
    })
    .await
}

/// Accepts the Coinbase adapter and acknowledges its subscribe.
async fn coinbase_handshake(up: &mut Upstream) -> UpConn {
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    assert_eq!(sub["type"], "subscribe");
    conn.send(
        &json!({"type": "subscriptions", "channels": [
            {"name": "ticker", "product_ids": sub["product_ids"]},
            {"name": "heartbeat", "product_ids": sub["product_ids"]},
        ]})
        .to_string(),
    )
    .await;
    conn
}

/// Accepts the Kraken adapter and acknowledges its subscribe.
async fn kraken_handshake(up: &mut Upstream) -> UpConn {
    let mut conn = up.accept().await;
    let sub = conn.recv_json().await;
    assert_eq!(sub["method"], "subscribe");
    conn.send(
        &json!({
            "method": "subscribe",
            "result": {"channel": "ticker", "snapshot": true, "symbol": "BTC/USD"},
            "success": true,
            "req_id": sub["req_id"],
        })
        .to_string(),
    )
    .await;
    conn
}

/// A Coinbase BTC-USD ticker: `n` numbers the sequence and the time.
fn cb_ticker(n: u64, bid: &str, bid_size: &str, ask: &str, ask_size: &str) -> String {
    json!({"type":"ticker","sequence":1000 + n,"product_id":"BTC-USD","price":ask,
        "best_bid":bid,"best_bid_size":bid_size,"best_ask":ask,"best_ask_size":ask_size,
        "side":"buy","time":format!("2025-11-23T12:13:{:02}.000000Z", 20 + n),"trade_id":884522000 + n,
        "last_size":"0.01000000"})
    .to_string()
}

/// A Kraken BTC/USD ticker update with these JSON number texts.
fn kr_update(bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> String {
    format!(
        r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"BTC/USD","bid":{bid},"bid_qty":{bid_qty},"ask":{ask},"ask_qty":{ask_qty},"last":{ask},"volume":1.0,"vwap":1.0,"low":1.0,"high":1.0,"change":0.0,"change_pct":0.00}}]}}"#
    )
}

/// The next BTC-USD quote with this bid and ask.
async fn consolidated(c: &mut Client, bid: &str, ask: &str) -> Value {
    let (m, _) = c
        .recv_until(|m| {
            m["type"] == "quote" && m["symbol"] == "BTC-USD" && m["bid"] == bid && m["ask"] == ask
        })
        .await;
    m
}

fn sides(m: &Value) -> (&str, &str, &str, &str, &str, &str) {
    let s = |k: &str| m[k].as_str().unwrap_or("-");
    (
        s("bid"),
        s("bid_size"),
        s("bid_venue"),
        s("ask"),
        s("ask_size"),
        s("ask_venue"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_of_both_venues_with_provenance_crosses_and_staleness() {
    let (mut cb_up, mut kr_up) = (Upstream::start().await, Upstream::start().await);
    let gw = gateway(&cb_up, &kr_up).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USD"]).await;
    let mut cb = coinbase_handshake(&mut cb_up).await;
    let mut kr = kraken_handshake(&mut kr_up).await;

    // The best bid is Kraken's, the best ask Coinbase's.
    cb.send(&cb_ticker(
        1,
        "97000.00",
        "0.50000000",
        "97000.50",
        "1.25000000",
    ))
    .await;
    kr.send(&kr_update("97000.10", "2.00000000", "97000.60", "3.0"))
        .await;
    let m = consolidated(&mut c, "97000.10", "97000.50").await;
    assert_eq!(
        sides(&m),
        (
            "97000.10",
            "2.00000000",
            "kraken",
            "97000.50",
            "1.25000000",
            "coinbase"
        )
    );
    assert!(m.get("crossed").is_none(), "not crossed: {m}");
    assert!(
        m.get("last").is_none(),
        "a consolidated quote has no last: {m}"
    );
    assert!(m["seq"].as_u64().is_some_and(|s| s >= 2), "{m}");

    // Coinbase improves its bid: the bid follows it, with its provenance.
    cb.send(&cb_ticker(
        2,
        "97000.20",
        "0.10000000",
        "97000.50",
        "1.25000000",
    ))
    .await;
    let m = consolidated(&mut c, "97000.20", "97000.50").await;
    assert_eq!(
        sides(&m),
        (
            "97000.20",
            "0.10000000",
            "coinbase",
            "97000.50",
            "1.25000000",
            "coinbase"
        )
    );
    // Kraken improves its ask.
    kr.send(&kr_update("97000.10", "2.00000000", "97000.40", "0.75"))
        .await;
    let m = consolidated(&mut c, "97000.20", "97000.40").await;
    assert_eq!(
        (m["ask_venue"].as_str(), m["ask_size"].as_str()),
        (Some("kraken"), Some("0.75"))
    );

    // Kraken's bid above Coinbase's ask: the venues cross, and it is shown.
    kr.send(&kr_update("97000.70", "1.5", "97000.80", "0.75"))
        .await;
    let m = consolidated(&mut c, "97000.70", "97000.50").await;
    assert_eq!(m["crossed"], true, "{m}");
    assert_eq!(
        (m["bid_venue"].as_str(), m["ask_venue"].as_str()),
        (Some("kraken"), Some("coinbase"))
    );
    kr.send(&kr_update("97000.25", "2.00000000", "97000.60", "3.0"))
        .await;
    let m = consolidated(&mut c, "97000.25", "97000.50").await;
    assert!(m.get("crossed").is_none(), "uncrossed again: {m}");
    assert_eq!(
        (m["bid_venue"].as_str(), m["ask_venue"].as_str()),
        (Some("kraken"), Some("coinbase"))
    );

    // A new subscriber gets the consolidated snapshot; REST has it too.
    let (mut late, _) = Client::connect_welcomed(gw.local_addr).await;
    late.subscribe(2, &["BTC-USD"]).await;
    let (snap, _) = late
        .recv_until(|m| m["type"] == "quote" && m["symbol"] == "BTC-USD")
        .await;
    assert_eq!(snap["snapshot"], true);
    assert_eq!(sides(&snap), sides(&m));
    assert_eq!(snap["seq"], m["seq"]);
    let (status, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USD").await;
    assert_eq!(status, 200, "{body}");
    let rest: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(sides(&rest[0]), sides(&m), "{body}");

    // Kraken goes silent: its leg goes stale and drops out; the symbol
    // stays live on Coinbase alone.
    let m = consolidated(&mut c, "97000.20", "97000.50").await;
    assert_eq!(
        (m["bid_venue"].as_str(), m["ask_venue"].as_str()),
        (Some("coinbase"), Some("coinbase")),
        "{m}"
    );
    assert_eq!(gw.status("KR-BTC-USD"), Some(tickergate::Status::Stale));
    assert_eq!(gw.status("BTC-USD"), Some(tickergate::Status::Live));
    // Coinbase's connection drops too: every leg is stale, and so is
    // BTC-USD, told to its subscribers as any symbol's staleness.
    drop(cb);
    let (st, _) = c.recv_until(|m| m["type"] == "status").await;
    assert_eq!(
        (st["symbol"].as_str(), st["state"].as_str()),
        (Some("BTC-USD"), Some("stale"))
    );
    // Coinbase comes back: BTC-USD is live again, from its fresh quote.
    let mut cb = coinbase_handshake(&mut cb_up).await;
    cb.send(&cb_ticker(
        3,
        "97000.30",
        "0.20000000",
        "97000.55",
        "1.00000000",
    ))
    .await;
    let (mut live, mut quote) = (false, false);
    while !(live && quote) {
        let (m, _) = c
            .recv_until(|m| {
                m["type"] == "status" || (m["type"] == "quote" && m["bid"] == "97000.30")
            })
            .await;
        if m["type"] == "status" {
            assert_eq!(
                (m["symbol"].as_str(), m["state"].as_str()),
                (Some("BTC-USD"), Some("live"))
            );
            live = true;
        } else {
            assert_eq!(
                (m["bid_venue"].as_str(), m["ask_venue"].as_str()),
                (Some("coinbase"), Some("coinbase"))
            );
            assert_eq!(m["ask"], "97000.55");
            quote = true;
        }
    }
}

/// Runs `tickergate --check-config` on two Coinbase feeds (legs
/// CB-BTC-USD and CB-ETH-USD; BTC-USD2 on the second) plus `consolidated`.
fn check(name: &str, consolidated: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("tg-cons-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let feeds = "[[feeds]]\nkind = \"coinbase\"\nname = \"cb\"\nsymbols = { \"BTC-USD\" = \"CB-BTC-USD\", \"ETH-USD\" = \"CB-ETH-USD\" }\n\n\
                 [[feeds]]\nkind = \"kraken\"\nname = \"kr\"\nsymbols = { \"BTC/USD\" = \"KR-BTC-USD\", \"ETH/USD\" = \"CB-ETH-USD\" }\n\n";
    std::fs::write(&path, format!("{feeds}{consolidated}")).unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    if out.status.success() {
        (true, String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        assert_eq!(out.status.code(), Some(2), "{name}");
        (false, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn table(symbol: &str, from: &[&str]) -> String {
    format!("[[consolidated]]\nsymbol = {symbol:?}\nfrom = {from:?}\n\n")
}

#[test]
fn check_config_refuses_bad_consolidated_tables() {
    let ok = table("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD"]);
    let (good, out) = check("good.toml", &ok);
    assert!(good, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    for (name, toml, says) in [
        (
            "no-such-leg.toml",
            table("BTC-USD", &["CB-BTC-USD", "XX-BTC-USD"]),
            r#"consolidated[0].from[1]: leg "XX-BTC-USD" is not a symbol of any feed"#,
        ),
        (
            "feed-symbol.toml",
            table("KR-BTC-USD", &["CB-BTC-USD", "CB-ETH-USD"]),
            r#"consolidated[0].symbol: "KR-BTC-USD" is already a symbol of feed "kr""#,
        ),
        (
            "twice.toml",
            ok.clone() + &table("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD"]),
            r#"consolidated[1].symbol: duplicate consolidated symbol "BTC-USD""#,
        ),
        (
            "leg-twice.toml",
            table("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD", "CB-BTC-USD"]),
            r#"consolidated[0].from[2]: leg "CB-BTC-USD" is listed twice"#,
        ),
        (
            "one-leg.toml",
            table("BTC-USD", &["CB-BTC-USD"]),
            r#"consolidated[0].from: "BTC-USD" needs at least 2 legs, has 1"#,
        ),
        (
            "nested.toml",
            ok.clone() + &table("ALL-BTC", &["BTC-USD", "KR-BTC-USD"]),
            r#"consolidated[1].from[0]: leg "BTC-USD" is a consolidated symbol"#,
        ),
        (
            "cycle.toml",
            table("A", &["B", "CB-BTC-USD"]) + &table("B", &["A", "KR-BTC-USD"]),
            r#"consolidated[0].from[0]: leg "B" is a consolidated symbol"#,
        ),
        (
            "two-feeds.toml",
            table("ETH-USD", &["CB-ETH-USD", "KR-BTC-USD"]),
            r#"consolidated[0].from[0]: leg "CB-ETH-USD" is a symbol of feeds "cb" and "kr""#,
        ),
        (
            "unknown-field.toml",
            "[[consolidated]]\nsymbol = \"BTC-USD\"\nfrom = [\"CB-BTC-USD\", \"KR-BTC-USD\"]\nlegs = 2\n"
                .to_string(),
            "unknown field `legs`",
        ),
    ] {
        let (good, err) = check(name, &toml);
        assert!(!good, "{name} passed the check");
        assert!(err.contains(says), "{name}: expected {says:?} in: {err}");
    }
}
