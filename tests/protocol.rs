//! Protocol v1 against a real gateway over real WebSockets: welcome,
//! subscribe with snapshot, live updates for exactly the asked symbols,
//! unsubscribe, ping/pong, heartbeat, status, and every error code the
//! gateway can produce, each leaving the connection usable.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_announces_protocol_and_limits() {
    let gw = start(|c| {
        c.session.max_symbols = 7;
        c.session.max_msgs_per_sec = 9;
        c.session.heartbeat_ms = 1234;
        c.session.max_symbols_per_op = 6;
        c.session.msgs_burst = 11;
        c.session.max_pending_trades = 77;
    })
    .await;
    let (_c, w) = Client::connect_welcomed(gw.local_addr).await;
    assert_eq!(
        (
            &w["limits"]["max_symbols_per_op"],
            &w["limits"]["msgs_burst"],
            &w["limits"]["max_pending_trades"]
        ),
        (&json!(6), &json!(11), &json!(77)),
        "{w}"
    );
    assert_eq!(w["protocol"], 1);
    assert_eq!(w["heartbeat_ms"], 1234);
    assert_eq!(w["limits"]["max_symbols"], 7);
    assert_eq!(w["limits"]["max_msgs_per_sec"], 9);
    assert_eq!(w["limits"]["max_message_bytes"], 16384);
    assert_eq!(w["auth_required"], false);
    assert!(w["session"].as_str().is_some_and(|s| !s.is_empty()));
}

/// `epoch` names the seq numbering: the same for every session of one
/// gateway, another for another start (whose seqs begin at 1 again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_epoch_is_per_gateway_start() {
    let a = start(|_| {}).await;
    let (_c1, w1) = Client::connect_welcomed(a.local_addr).await;
    let (_c2, w2) = Client::connect_welcomed(a.local_addr).await;
    let e1 = w1["epoch"].as_str().expect("epoch is a string").to_string();
    assert_eq!(e1.len(), 16, "{e1}");
    assert!(e1.bytes().all(|b| b.is_ascii_hexdigit()), "{e1}");
    assert_eq!(w2["epoch"], e1.as_str(), "one gateway, one epoch");
    assert_ne!(w1["session"], w2["session"]);
    let b = start(|_| {}).await;
    let (_c3, w3) = Client::connect_welcomed(b.local_addr).await;
    assert_ne!(w3["epoch"], e1.as_str(), "another start, another epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_live_updates_for_exactly_the_asked_symbols() {
    let gw = start(|_| {}).await;
    let seq = publish(
        &gw,
        "AAPL",
        quote("189.1200", "300", "189.14", "200").with_ts(1_763_900_000_123_456_789),
    );
    assert_eq!(seq, 1);
    publish(&gw, "MSFT", quote("420.00", "100", "420.05", "100"));
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL","BTC-USD"]}))
        .await;
    let ack = c.recv_type("subscribed").await;
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["symbols"], json!(["AAPL", "BTC-USD"]));
    // AAPL has a value: snapshot first, exact strings, venue ts kept.
    let snap = c.recv_type("quote").await;
    assert_eq!(snap["symbol"], "AAPL");
    assert_eq!(snap["snapshot"], true);
    assert_eq!(snap["seq"], 1);
    assert_eq!(snap["bid"], "189.1200");
    assert_eq!(snap["bid_size"], "300");
    assert_eq!(snap["ask"], "189.14");
    assert_eq!(snap["ts"], 1_763_900_000_123_456_789i64);
    assert!(snap["gw_ts"].as_i64().unwrap() > 0);
    assert!(
        snap.get("last").is_none(),
        "fields the feed did not send are omitted"
    );

    // Not subscribed: MSFT. Subscribed: BTC-USD (no value yet, so no
    // snapshot) and AAPL. Publish MSFT first; it must never arrive.
    publish(&gw, "MSFT", quote("420.01", "100", "420.05", "100"));
    publish(
        &gw,
        "BTC-USD",
        quote("97000.01", "0.51230000", "97000.02", "1.00000000")
            .with_last(d("97000.02"), d("0.00010000")),
    );
    let (btc, skipped) = c.recv_until(|m| m["symbol"] == "BTC-USD").await;
    assert!(skipped.iter().all(|m| m["symbol"] != "MSFT"), "{skipped:?}");
    assert_eq!(btc["type"], "quote");
    assert!(
        btc.get("snapshot").is_none(),
        "live updates carry no snapshot flag"
    );
    assert_eq!(btc["seq"], 1);
    assert_eq!(btc["bid"], "97000.01");
    assert_eq!(btc["bid_size"], "0.51230000");
    assert_eq!(btc["last_size"], "0.00010000");
    assert!(btc.get("ts").is_none());

    publish(&gw, "MSFT", quote("420.02", "100", "420.05", "100"));
    publish(&gw, "AAPL", quote("189.13", "100", "189.14", "200"));
    let (aapl, skipped) = c.recv_until(|m| m["symbol"] == "AAPL").await;
    assert!(skipped.iter().all(|m| m["symbol"] != "MSFT"), "{skipped:?}");
    assert_eq!(aapl["seq"], 2);
    assert_eq!(aapl["bid"], "189.13");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_false_sends_only_later_updates() {
    let gw = start(|_| {}).await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":"s","symbols":["AAPL"],"snapshot":false}))
        .await;
    assert_eq!(c.recv_type("subscribed").await["id"], "s");
    publish(&gw, "AAPL", quote("1.02", "1", "1.03", "1"));
    let q = c.recv_type("quote").await;
    assert_eq!(q["seq"], 2);
    assert_eq!(q["bid"], "1.02");
    assert!(q.get("snapshot").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_updates() {
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL", "MSFT"]).await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    c.recv_until(|m| m["symbol"] == "AAPL").await;
    c.send(json!({"op":"unsubscribe","id":2,"symbols":["AAPL"]}))
        .await;
    let (ack, _) = c.recv_until(|m| m["type"] == "unsubscribed").await;
    assert_eq!(ack["id"], 2);
    assert_eq!(ack["symbols"], json!(["AAPL"]));
    publish(&gw, "AAPL", quote("2.00", "1", "2.01", "1"));
    publish(&gw, "MSFT", quote("3.00", "1", "3.01", "1"));
    let (msft, skipped) = c.recv_until(|m| m["symbol"] == "MSFT").await;
    assert_eq!(msft["bid"], "3.00");
    assert!(skipped.iter().all(|m| m["symbol"] != "AAPL"), "{skipped:?}");
    let text = metrics_text(&gw);
    assert_eq!(metric(&text, "tickergate_subscriptions"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_websocket_ping() {
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"ping","id":"p1"})).await;
    let pong = c.recv_type("pong").await;
    assert_eq!(pong["id"], "p1");
    assert!(pong["ts"].as_i64().unwrap() > 0);
    c.ws.send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(EVENT_DEADLINE, futures_util::StreamExt::next(&mut c.ws))
            .await
            .unwrap()
        {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"hi");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected pong, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_after_silence() {
    let gw = start(|c| c.session.heartbeat_ms = 100).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let hb = c.next_msg().await;
    assert_eq!(hb["type"], "heartbeat");
    assert!(hb["ts"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_feed_turns_stale_then_live() {
    let gw = start(|c| {
        // Not stale before the pause, even on a loaded machine.
        sim_cfg(c).stale_after_ms = 1000;
    })
    .await;
    publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
    let feed = gw.feed("sim").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL"]).await;
    c.recv_type("quote").await;
    feed.set_paused(true);
    let st = c.recv_type("status").await;
    assert_eq!(st["symbol"], "AAPL");
    assert_eq!(st["state"], "stale");
    let (code, body) = http_get(gw.local_addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    feed.set_paused(false);
    let st = c.recv_type("status").await;
    assert_eq!(st["state"], "live");
    wait_for("feed up again", || feed.is_up()).await;
    assert_eq!(http_get(gw.local_addr, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_stale_symbol_says_so() {
    let gw = start(|c| {
        sim_cfg(c).stale_after_ms = 100;
    })
    .await;
    let feed = gw.feed("sim").unwrap();
    wait_for("feed up", || feed.is_up()).await;
    feed.set_paused(true);
    wait_for("stale", || {
        gw.status("AAPL") == Some(tickergate::Status::Stale)
    })
    .await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let st = c.recv_type("status").await;
    assert_eq!(st["state"], "stale");
}

/// Each bad op gets its documented error and the connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_codes_and_the_connection_survives() {
    let gw = start(|c| {
        c.session.max_symbols = 3;
        c.session.max_msgs_per_sec = 1000;
        c.session.msgs_burst = 1000;
    })
    .await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let cases: Vec<(String, &str, serde_json::Value)> = vec![
        ("{not json".into(), "bad_request", serde_json::Value::Null),
        ("[1,2,3]".into(), "bad_request", serde_json::Value::Null),
        (r#"{"op":"teleport","id":5}"#.into(), "unknown_op", json!(5)),
        (
            r#"{"op":"subscribe","id":6,"symbols":"AAPL"}"#.into(),
            "bad_request",
            json!(6),
        ),
        (
            r#"{"op":"subscribe","id":7,"symbols":[1,2]}"#.into(),
            "bad_request",
            json!(7),
        ),
        (
            r#"{"op":"subscribe","id":8,"symbols":["AAPL"],"max_hz":"fast"}"#.into(),
            "bad_request",
            json!(8),
        ),
        (
            r#"{"op":"subscribe","id":9,"symbols":["AAPL"],"snapshot":"yes"}"#.into(),
            "bad_request",
            json!(9),
        ),
        (
            r#"{"op":"subscribe","id":10}"#.into(),
            "bad_request",
            json!(10),
        ),
        (r#"{"id":11}"#.into(), "bad_request", json!(11)),
        (
            r#"{"op":"subscribe","id":12,"symbols":["NOPE"]}"#.into(),
            "unknown_symbol",
            json!(12),
        ),
        (
            r#"{"op":"subscribe","id":13,"symbols":["AAPL","MSFT","NVDA","AMZN"]}"#.into(),
            "too_many_symbols",
            json!(13),
        ),
        (
            format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(20_000)),
            "payload_too_large",
            serde_json::Value::Null,
        ),
    ];
    for (i, (input, code, id)) in cases.iter().enumerate() {
        c.send_text(input).await;
        let e = c.recv_type("error").await;
        assert_eq!(e["code"], *code, "case {i}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case {i}: {e}"
        );
        if !id.is_null() {
            assert_eq!(e["id"], *id, "case {i}: id is echoed");
        }
        // Still alive after every mistake.
        c.send(json!({"op":"ping","id":i})).await;
        assert_eq!(c.recv_type("pong").await["id"], i);
    }
    // unknown_symbol names the symbol; known ones in the same op still work.
    c.send(json!({"op":"subscribe","id":20,"symbols":["XYZ","AAPL"]}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["symbol"].as_str()),
        (Some("unknown_symbol"), Some("XYZ"))
    );
    let ack = c.recv_type("subscribed").await;
    assert_eq!(ack["symbols"], json!(["AAPL"]));
    // A binary frame is a bad_request, not a crash.
    c.ws.send(Message::Binary(vec![0u8, 159, 146, 150].into()))
        .await
        .unwrap();
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "bad_request");
    assert!(e["message"].as_str().unwrap().contains("binary"));
    c.send(json!({"op":"ping","id":"alive"})).await;
    assert_eq!(c.recv_type("pong").await["id"], "alive");
    // Other clients were never affected.
    let (mut other, _) = Client::connect_welcomed(gw.local_addr).await;
    other.subscribe(1, &["AAPL"]).await;
    publish(&gw, "AAPL", quote("5.00", "1", "5.01", "1"));
    assert_eq!(other.recv_type("quote").await["bid"], "5.00");
    let text = metrics_text(&gw);
    assert!(metric(&text, r#"tickergate_errors_total{code="bad_request"}"#) >= 8.0);
    assert!(metric(&text, r#"tickergate_errors_total{code="unknown_symbol"}"#) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009() {
    let gw = start(|c| c.session.max_message_bytes = 1024).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    // Past 4x the op limit the frame is refused outright.
    let _ = c.ws.send(Message::Text("x".repeat(8 * 1024).into())).await;
    assert_eq!(c.recv_close().await, Some(1009));
    let (mut ok, _) = Client::connect_welcomed(gw.local_addr).await;
    ok.send(json!({"op":"ping","id":1})).await;
    assert_eq!(ok.recv_type("pong").await["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::Data, coding::OpCode, Frame};
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let f = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    let _ = c.ws.send(Message::Frame(f)).await;
    assert_eq!(c.recv_close().await, Some(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_gets_rate_limited_then_closed_with_1008() {
    let gw = start(|c| {
        c.session.max_msgs_per_sec = 2;
        c.session.msgs_burst = 2;
        c.session.max_rate_violations = 5;
    })
    .await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    for i in 0..50 {
        if c.ws
            .send(Message::Text(
                json!({"op":"ping","id":i}).to_string().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut limited = 0;
    let mut ids = std::collections::BTreeSet::new();
    let code = loop {
        match c.next_event().await {
            Event::Msgs(ms) => {
                for m in ms.iter().filter(|m| m["code"] == "rate_limited") {
                    limited += 1;
                    // The refusal names the op it refused.
                    let id = m["id"].as_i64().expect("rate_limited echoes the op's id");
                    assert!((0..50).contains(&id), "{m}");
                    assert!(ids.insert(id), "each op refused once: {m}");
                }
            }
            Event::Close(code) => break code,
            Event::Eof => break None,
        }
    };
    assert!(limited >= 1, "rate_limited errors come before the close");
    assert_eq!(code, Some(1008));
    let text = metrics_text(&gw);
    assert!(metric(&text, r#"tickergate_errors_total{code="rate_limited"}"#) >= 1.0);
    assert_eq!(
        metric(&text, r#"tickergate_disconnects_total{code="1008"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_server_closes_new_clients_with_1013() {
    let gw = start(|c| c.server.max_connections = 2).await;
    let (_a, _) = Client::connect_welcomed(gw.local_addr).await;
    let (_b, _) = Client::connect_welcomed(gw.local_addr).await;
    let mut third = Client::connect(gw.local_addr).await;
    assert_eq!(third.recv_close().await, Some(1013));
    drop(_a);
    // A slot frees up once a session ends.
    wait_for("a session to end", || gw.metrics().connections.get() <= 1).await;
    let (_d, w) = Client::connect_welcomed(gw.local_addr).await;
    assert_eq!(w["type"], "welcome");
}

mod auth {
    use super::*;
    use tickergate::auth::token_hash_hex;

    async fn gw() -> tickergate::Gateway {
        start(|c| c.auth.token_sha256 = vec![token_hash_hex("let-me-in")]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_data_before_auth_op_then_works() {
        let gw = gw().await;
        publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
        let (mut c, w) = Client::connect_welcomed(gw.local_addr).await;
        assert_eq!(w["auth_required"], true);
        c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL"]}))
            .await;
        let e = c.recv_type("error").await;
        assert_eq!(
            (e["code"].as_str(), e["id"].as_i64()),
            (Some("unauthorized"), Some(1))
        );
        c.send(json!({"op":"auth","id":2,"token":"let-me-in"}))
            .await;
        assert_eq!(c.recv_type("authenticated").await["id"], 2);
        c.subscribe(3, &["AAPL"]).await;
        assert_eq!(c.recv_type("quote").await["bid"], "1.00");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_token_op_closes_with_1008() {
        let gw = gw().await;
        let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
        c.send(json!({"op":"auth","id":1,"token":"guess"})).await;
        let e = c.recv_type("error").await;
        assert_eq!(e["code"], "unauthorized");
        assert_eq!(c.recv_close().await, Some(1008));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn token_in_url_or_header() {
        let gw = gw().await;
        let url = format!("{}?token=let-me-in", ws_url(gw.local_addr));
        let mut c = Client::connect_url(&url).await;
        assert_eq!(c.recv_type("welcome").await["auth_required"], false);
        c.subscribe(1, &["AAPL"]).await;

        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ws_url(gw.local_addr).into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", "Bearer let-me-in".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut c = Client::from_ws(ws);
        assert_eq!(c.recv_type("welcome").await["auth_required"], false);

        let url = format!("{}?token=nope", ws_url(gw.local_addr));
        let mut bad = Client::connect_url(&url).await;
        let e = bad.recv_type("error").await;
        assert_eq!(e["code"], "unauthorized");
        assert_eq!(bad.recv_close().await, Some(1008));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rest_needs_the_token_too() {
        let gw = gw().await;
        publish(&gw, "AAPL", quote("1.00", "1", "1.01", "1"));
        let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL").await;
        assert_eq!(code, 401);
        assert!(body.contains("unauthorized"));
        let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=AAPL&token=let-me-in").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"1.00\""));
    }
}

/// A client's normal close is answered with a normal close (1000) and the
/// session's subscriptions are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_close_is_answered_with_1000() {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL"]).await;
    c.ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(c.recv_close().await, Some(1000));
    wait_for("session released", || {
        gw.metrics().connections.get() == 0 && gw.metrics().subscriptions.get() == 0
    })
    .await;
}

/// Wildcard subscriptions: `BTC-*` holds every matching symbol, with a
/// snapshot for each that has a value; `unsubscribe` takes the same
/// pattern; a pattern counts as its matches against `max_symbols`, and the
/// refusal says how many it matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscribe_and_unsubscribe() {
    let gw = start(|c| c.session.max_symbols = 20).await;
    let (_, body) = http_get(gw.local_addr, "/v1/symbols").await;
    let all: Vec<String> = serde_json::from_str(&body).unwrap();
    let btc: Vec<String> = all
        .iter()
        .filter(|s| s.starts_with("BTC-"))
        .cloned()
        .collect();
    assert!(btc.len() >= 2, "{btc:?}");
    for s in &btc {
        publish(&gw, s, quote("97000.01", "1", "97000.02", "1"));
    }
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["BTC-*"]}))
        .await;
    let sub = c.recv_type("subscribed").await;
    let mut held: Vec<String> = serde_json::from_value(sub["symbols"].clone()).unwrap();
    held.sort();
    let mut want = btc.clone();
    want.sort();
    assert_eq!(held, want, "every match, and only matches");
    let mut snaps = std::collections::BTreeSet::new();
    while snaps.len() < btc.len() {
        let q = c.recv_type("quote").await;
        assert_eq!(q["snapshot"], true, "{q}");
        snaps.insert(q["symbol"].as_str().unwrap().to_string());
    }
    // `*` matches more than max_symbols: refused whole, with the count.
    c.send(json!({"op":"subscribe","id":2,"symbols":["*"]}))
        .await;
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(e["code"], "too_many_symbols");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("* matches {}", all.len())), "{msg}");
    // Unsubscribe by the same pattern.
    c.send(json!({"op":"unsubscribe","id":3,"symbols":["BTC-*"]}))
        .await;
    let un = c.recv_type("unsubscribed").await;
    assert_eq!(un["symbols"].as_array().unwrap().len(), btc.len());
    publish(&gw, &btc[0], quote("1.00", "1", "1.01", "1"));
    c.send(json!({"op":"ping","id":"after"})).await;
    let (_, before) = c.recv_until(|m| m["type"] == "pong").await;
    assert!(before.iter().all(|m| m["type"] != "quote"), "{before:?}");
    // A pattern that matches nothing is unknown.
    c.send(json!({"op":"subscribe","id":4,"symbols":["NOPE-*"]}))
        .await;
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (e["code"].as_str(), e["symbol"].as_str()),
        (Some("unknown_symbol"), Some("NOPE-*"))
    );
}
