//! Auth and entitlements against a real gateway: API keys with symbol
//! patterns and per-key limits, JWTs (HS256, and RS256 verified with an
//! identity provider's public key), and the hostile cases (wrong, expired
//! and forged tokens, un-entitled symbols asked for by name, by pattern and
//! over REST). Every case asserts the documented code and that
//! a healthy client on the same gateway still gets its updates.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use tickergate::auth::token_hash_hex;
use tickergate::config::{JwtConfig, KeyConfig};
use tickergate::Gateway;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "test-secret-test-secret-test-secret!";

fn key(name: &str, token: &str, symbols: &[&str]) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        sha256: token_hash_hex(token),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        max_connections: None,
        max_symbols: None,
    }
}

/// Keys: `desk` (BTC-* and AAPL, one connection), `small` (everything,
/// two symbols), `healthy` (everything); a legacy token; JWTs from `idp`
/// for audience `tickergate`.
async fn gw() -> Gateway {
    start(|c| {
        c.auth.token_sha256 = vec![token_hash_hex("legacy")];
        let mut desk = key("desk", "desk-key", &["BTC-*", "AAPL"]);
        desk.max_connections = Some(1);
        let mut small = key("small", "small-key", &["*"]);
        small.max_symbols = Some(2);
        c.auth.keys = vec![desk, small, key("healthy", "healthy-key", &["*"])];
        c.auth.jwt = Some(JwtConfig {
            public_keys: Vec::new(),
            secret: Some(SECRET.into()),
            secret_env: None,
            issuer: Some("idp".into()),
            audience: Some("tickergate".into()),
            leeway_s: 30,
        });
    })
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt_raw(header: &Value, claims: &Value, secret: &str) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string().as_bytes());
    let signing = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

/// A JWT for `sub`, entitled to ETH-*, valid for an hour.
fn good_claims() -> Value {
    json!({"sub": "bot-7", "iss": "idp", "aud": "tickergate", "exp": now() + 3600,
           "symbols": ["ETH-*"], "max_symbols": 5})
}

fn jwt(claims: &Value) -> String {
    jwt_raw(&json!({"alg": "HS256", "typ": "JWT"}), claims, SECRET)
}

async fn connect_token(gw: &Gateway, token: &str) -> Client {
    Client::connect_url(&format!("{}?token={token}", ws_url(gw.local_addr))).await
}

async fn connect_bearer(gw: &Gateway, token: &str) -> Client {
    let mut req = ws_url(gw.local_addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio::time::timeout(EVENT_DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
        .expect("handshake");
    Client::from_ws(ws)
}

/// Connects without a token and sends it in an `auth` op; returns the
/// client and what followed (the `authenticated` or the `error`).
async fn connect_auth_op(gw: &Gateway, token: &str) -> (Client, Value) {
    let (mut c, w) = Client::connect_welcomed(gw.local_addr).await;
    assert_eq!(w["auth_required"], true);
    c.send(json!({"op":"auth","id":"a","token":token})).await;
    let (m, _) = c
        .recv_until(|m| m["type"] == "authenticated" || m["type"] == "error")
        .await;
    (c, m)
}

static PRICE: AtomicU64 = AtomicU64::new(100);

/// A bid no other publish in this process uses.
fn fresh_bid() -> String {
    format!("{}.25", PRICE.fetch_add(1, Ordering::Relaxed))
}

/// A client on the `healthy` key holding MSFT.
async fn healthy(gw: &Gateway) -> Client {
    let mut c = connect_token(gw, "healthy-key").await;
    assert_eq!(c.recv_type("welcome").await["auth_required"], false);
    c.subscribe(1, &["MSFT"]).await;
    c
}

/// The healthy client still gets a fresh update.
async fn still_healthy(gw: &Gateway, c: &mut Client) {
    let bid = fresh_bid();
    publish(gw, "MSFT", quote(&bid, "1", "999.99", "1"));
    c.recv_until(|m| m["type"] == "quote" && m["symbol"] == "MSFT" && m["bid"] == bid.as_str())
        .await;
}

/// Publishes `marker` (a symbol `c` holds), then pings; returns every
/// message up to both the marker's quote and the pong. Anything `c` would
/// get for a symbol written before the marker is in there.
async fn drain_to_marker(gw: &Gateway, c: &mut Client, marker: &str) -> Vec<Value> {
    let bid = fresh_bid();
    publish(gw, marker, quote(&bid, "1", "999.99", "1"));
    c.send(json!({"op":"ping","id":"marker"})).await;
    let mut seen = Vec::new();
    let (mut got_quote, mut got_pong) = (false, false);
    while !(got_quote && got_pong) {
        let (m, skipped) = c
            .recv_until(|m| {
                (m["type"] == "quote" && m["symbol"] == marker && m["bid"] == bid.as_str())
                    || (m["type"] == "pong" && m["id"] == "marker")
            })
            .await;
        got_quote |= m["type"] == "quote";
        got_pong |= m["type"] == "pong";
        seen.extend(skipped);
        seen.push(m);
    }
    seen
}

fn auth_failures(gw: &Gateway, reason: &str) -> f64 {
    metric(
        &metrics_text(gw),
        &format!("tickergate_auth_failures_total{{reason=\"{reason}\"}}"),
    )
}

async fn expect_refused(c: &mut Client, message: &str) {
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(e["message"], message, "{e}");
    assert_eq!(c.recv_close().await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_by_name_subscribes_only_the_entitled() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    let mut c = connect_token(&gw, "desk-key").await;
    c.recv_type("welcome").await;
    // ETH-USD exists but is not entitled; ZZZZ does not exist and is not
    // entitled either: both are forbidden, so existence does not leak.
    c.send(json!({"op":"subscribe","id":1,"symbols":["BTC-USD","ETH-USD","AAPL","ZZZZ"]}))
        .await;
    let (sub, skipped) = c.recv_until(|m| m["type"] == "subscribed").await;
    assert_eq!(sub["symbols"], json!(["BTC-USD", "AAPL"]));
    let errors: Vec<(&str, &str)> = skipped
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| (m["code"].as_str().unwrap(), m["symbol"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![
            ("forbidden_symbol", "ETH-USD"),
            ("forbidden_symbol", "ZZZZ")
        ]
    );
    assert_eq!(auth_failures(&gw, "forbidden_symbol"), 2.0);
    // ETH-USD updates never arrive; BTC-USD ones do.
    publish(&gw, "ETH-USD", quote("3000.01", "1", "3000.02", "1"));
    let seen = drain_to_marker(&gw, &mut c, "BTC-USD").await;
    assert!(seen.iter().all(|m| m["symbol"] != "ETH-USD"), "{seen:?}");
    // Unsubscribing a forbidden symbol is forbidden too (no ack that would
    // confirm it exists).
    c.send(json!({"op":"unsubscribe","id":2,"symbols":["ETH-USD"]}))
        .await;
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("forbidden_symbol"), Some(2))
    );
    still_healthy(&gw, &mut h).await;
}

/// A pattern in subscribe stands for the symbols the key may see, and
/// only those: `*` on a key entitled to `BTC-*` and `AAPL` holds exactly
/// those, and nothing else ever arrives (values, snapshots, statuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_in_subscribe_match_only_entitled_symbols() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    for sym in ["BTC-USD", "MSFT", "ETH-USD", "AAPL"] {
        publish(&gw, sym, quote("1.00", "1", "1.01", "1"));
    }
    let mut c = connect_token(&gw, "desk-key").await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"subscribe","id":2,"symbols":["*"]}))
        .await;
    let sub = c.recv_type("subscribed").await;
    let held: Vec<String> = serde_json::from_value(sub["symbols"].clone()).unwrap();
    assert!(held.contains(&"AAPL".to_string()) && held.contains(&"BTC-USD".to_string()));
    assert!(
        held.iter().all(|s| s == "AAPL" || s.starts_with("BTC-")),
        "only entitled matches: {held:?}"
    );
    // A pattern matching nothing the key may see is refused like an
    // unknown symbol (it does not tell that ETH-USD exists).
    c.send(json!({"op":"subscribe","id":3,"symbols":["ETH-*"]}))
        .await;
    let (e, _) = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("unknown_symbol"), Some(3))
    );
    assert_eq!(e["symbol"], "ETH-*");
    publish(&gw, "MSFT", quote("2.00", "1", "2.01", "1"));
    publish(&gw, "ETH-USD", quote("3.00", "1", "3.01", "1"));
    publish(&gw, "BTC-USD", quote("97000.01", "1", "97000.02", "1"));
    // The entitled symbol's update arrives; the rest up to a marker
    // written after all three carries nothing un-entitled.
    let (_, mut seen) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["bid"] == "97000.01")
        .await;
    seen.extend(drain_to_marker(&gw, &mut c, "AAPL").await);
    for m in &seen {
        if let Some(sym) = m["symbol"].as_str() {
            assert!(sym == "AAPL" || sym.starts_with("BTC-"), "leaked: {m}");
        }
    }
    still_healthy(&gw, &mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_rest_never_leak_an_unentitled_value() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    // The forbidden symbol has a value (a snapshot would carry it).
    publish(&gw, "ETH-USD", quote("7777.77", "1", "7777.78", "1"));
    publish(&gw, "BTC-USD", quote("97000.01", "1", "97000.02", "1"));
    let mut c = connect_token(&gw, "desk-key").await;
    let mut all: Vec<Value> = vec![c.recv_type("welcome").await];
    c.send(json!({"op":"subscribe","id":1,"symbols":["ETH-USD","BTC-USD"],"snapshot":true}))
        .await;
    let (snap, skipped) = c
        .recv_until(|m| m["type"] == "quote" && m["symbol"] == "BTC-USD")
        .await;
    assert_eq!(snap["snapshot"], true);
    all.extend(skipped);
    all.push(snap);
    publish(&gw, "ETH-USD", quote("7777.79", "1", "7777.80", "1"));
    all.extend(drain_to_marker(&gw, &mut c, "BTC-USD").await);
    for m in &all {
        let text = m.to_string();
        assert!(!text.contains("7777"), "value leaked: {text}");
        if m["symbol"] == "ETH-USD" {
            assert_eq!(m["type"], "error", "only the refusal names it: {text}");
            assert_eq!(m["code"], "forbidden_symbol");
        }
    }
    // REST: a forbidden symbol fails the whole request; nothing partial.
    for q in ["ETH-USD", "BTC-USD,ETH-USD", "ETH-USD,BTC-USD", "AAPL,ZZZZ"] {
        let (code, body) = http_get(
            gw.local_addr,
            &format!("/v1/quotes?symbols={q}&token=desk-key"),
        )
        .await;
        assert_eq!(code, 403, "{q}: {body}");
        assert!(body.contains("forbidden_symbol"), "{body}");
        assert!(
            !body.contains("7777") && !body.contains("\"bid\""),
            "{body}"
        );
    }
    let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USD&token=desk-key").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"symbol\":\"BTC-USD\""), "{body}");
    // A pattern is not a symbol name over REST either.
    let (code, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-*&token=desk-key").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("unknown_symbol"), "{body}");
    still_healthy(&gw, &mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_symbols_lists_only_the_entitled() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    let (code, body) = http_request(
        gw.local_addr,
        "GET /v1/symbols HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer desk-key\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let names: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(names.contains(&"BTC-USD".to_string()), "{names:?}");
    assert!(names.contains(&"AAPL".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| n == "AAPL" || n.starts_with("BTC-")),
        "{names:?}"
    );
    let (code, body) = http_get(gw.local_addr, "/v1/symbols?token=healthy-key").await;
    assert_eq!(code, 200);
    let all: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 300);
    let (code, body) = http_get(
        gw.local_addr,
        &format!("/v1/symbols?token={}", jwt(&good_claims())),
    )
    .await;
    assert_eq!(code, 200);
    let eth: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(
        !eth.is_empty() && eth.iter().all(|n| n.starts_with("ETH-")),
        "{eth:?}"
    );
    let (code, body) = http_get(gw.local_addr, "/v1/symbols?token=nope").await;
    assert_eq!(code, 401);
    assert!(body.contains("invalid token"), "{body}");
    still_healthy(&gw, &mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_max_connections() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    let mut first = connect_token(&gw, "desk-key").await;
    first.recv_type("welcome").await;
    // Second session on the same key: by URL, by header, by auth op.
    let mut c = connect_token(&gw, "desk-key").await;
    expect_refused(&mut c, "too many connections for this key").await;
    let mut c = connect_bearer(&gw, "desk-key").await;
    expect_refused(&mut c, "too many connections for this key").await;
    let (mut c, e) = connect_auth_op(&gw, "desk-key").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("unauthorized"), Some("a"))
    );
    assert_eq!(e["message"], "too many connections for this key");
    assert_eq!(c.recv_close().await, Some(1008));
    assert_eq!(auth_failures(&gw, "key_connection_limit"), 3.0);
    // Other keys are unaffected.
    let mut other = healthy(&gw).await;
    still_healthy(&gw, &mut other).await;
    // The first session still works, and its slot frees when it ends.
    first.subscribe(2, &["AAPL"]).await;
    first.ws.close(None).await.unwrap();
    let _ = first.recv_close().await;
    let conns = gw.metrics().connections.clone();
    wait_for("desk session to end", || conns.get() == 2).await;
    let mut again = connect_token(&gw, "desk-key").await;
    again.recv_type("welcome").await;
    again.subscribe(3, &["AAPL"]).await;
    still_healthy(&gw, &mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_max_symbols() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    // Token on the URL: welcome already carries the key's limit.
    let mut c = connect_token(&gw, "small-key").await;
    let w = c.recv_type("welcome").await;
    assert_eq!(w["limits"]["max_symbols"], 2);
    // Auth op: welcome has the server's limit, `authenticated` the key's.
    let (mut d, a) = connect_auth_op(&gw, "small-key").await;
    assert_eq!(a["type"], "authenticated");
    assert_eq!(a["id"], "a");
    assert_eq!(a["limits"]["max_symbols"], 2);
    assert_eq!(a["limits"]["max_msgs_per_sec"], 20);
    for cl in [&mut c, &mut d] {
        cl.send(json!({"op":"subscribe","id":1,"symbols":["AAPL","MSFT","NVDA"]}))
            .await;
        let e = cl.recv_type("error").await;
        assert_eq!(e["code"], "too_many_symbols", "{e}");
        cl.subscribe(2, &["AAPL", "MSFT"]).await;
        cl.send(json!({"op":"subscribe","id":3,"symbols":["NVDA"]}))
            .await;
        let (e, _) = cl.recv_until(|m| m["type"] == "error").await;
        assert_eq!(
            (e["code"].as_str(), e["id"].as_i64()),
            (Some("too_many_symbols"), Some(3))
        );
    }
    // REST applies the same cap to the number of names asked for.
    let (code, body) = http_get(
        gw.local_addr,
        "/v1/quotes?symbols=AAPL,MSFT,NVDA&token=small-key",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too_many_symbols"));
    // A second auth op does not switch keys.
    d.send(json!({"op":"auth","id":"b","token":"healthy-key"}))
        .await;
    let (e, _) = d.recv_until(|m| m["type"] == "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("bad_request"), Some("b"))
    );
    still_healthy(&gw, &mut h).await;
}

/// Each client, holding a `good_claims` JWT (ETH-*), asks for ETH-USD and
/// BTC-USD: BTC-USD is `forbidden_symbol`, ETH-USD is subscribed and its
/// next quote arrives. Returns that quote's bid.
async fn streams_eth_only(gw: &Gateway, clients: &mut [Client]) -> String {
    for c in clients.iter_mut() {
        c.send(json!({"op":"subscribe","id":7,"symbols":["ETH-USD","BTC-USD"]}))
            .await;
        let (e, _) = c.recv_until(|m| m["type"] == "error").await;
        assert_eq!(
            (e["code"].as_str(), e["symbol"].as_str()),
            (Some("forbidden_symbol"), Some("BTC-USD"))
        );
        let (s, _) = c.recv_until(|m| m["type"] == "subscribed").await;
        assert_eq!(s["symbols"], json!(["ETH-USD"]));
    }
    let bid = fresh_bid();
    publish(gw, "ETH-USD", quote(&bid, "1", "99999", "1"));
    for c in clients.iter_mut() {
        c.recv_until(|m| {
            m["type"] == "quote" && m["symbol"] == "ETH-USD" && m["bid"] == bid.as_str()
        })
        .await;
    }
    bid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_good_by_url_header_and_auth_op() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    let token = jwt(&good_claims());
    let mut by_url = connect_token(&gw, &token).await;
    let w = by_url.recv_type("welcome").await;
    assert_eq!(w["auth_required"], false);
    assert_eq!(w["limits"]["max_symbols"], 5);
    let mut by_header = connect_bearer(&gw, &token).await;
    by_header.recv_type("welcome").await;
    let (by_op, a) = connect_auth_op(&gw, &token).await;
    assert_eq!(a["type"], "authenticated", "{a}");
    assert_eq!(a["limits"]["max_symbols"], 5);
    let mut clients = [by_url, by_header, by_op];
    let bid = streams_eth_only(&gw, &mut clients).await;
    // REST with the JWT.
    let (code, body) = http_get(
        gw.local_addr,
        &format!("/v1/quotes?symbols=ETH-USD&token={token}"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&bid));
    still_healthy(&gw, &mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_everywhere() {
    let gw = gw().await;
    let mut h = healthy(&gw).await;
    let mut expired = good_claims();
    expired["exp"] = json!(now() - 120);
    let mut wrong_aud = good_claims();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = good_claims();
    wrong_iss["iss"] = json!("evil");
    let good = good_claims();
    let forged = jwt_raw(
        &json!({"alg":"HS256","typ":"JWT"}),
        &good,
        "not-the-secret-not-the-secret!!",
    );
    let none = {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string().as_bytes());
        format!(
            "{}.{}.",
            b64(&json!({"alg":"none","typ":"JWT"})),
            b64(&good)
        )
    };
    let alg_none_signed = jwt_raw(&json!({"alg":"none"}), &good, SECRET);
    let cases: Vec<(String, &str, &str)> = vec![
        (jwt(&expired), "expired token", "expired"),
        (forged, "invalid token", "invalid"),
        (none, "invalid token", "invalid"),
        (alg_none_signed, "invalid token", "invalid"),
        (jwt(&wrong_aud), "invalid token", "invalid"),
        (jwt(&wrong_iss), "invalid token", "invalid"),
        ("desk-key-wrong".to_string(), "invalid token", "invalid"),
    ];
    for (token, message, reason) in &cases {
        let before = auth_failures(&gw, reason);
        let mut c = connect_token(&gw, token).await;
        expect_refused(&mut c, message).await;
        let mut c = connect_bearer(&gw, token).await;
        expect_refused(&mut c, message).await;
        let (mut c, e) = connect_auth_op(&gw, token).await;
        assert_eq!(
            (e["code"].as_str(), e["message"].as_str()),
            (Some("unauthorized"), Some(*message)),
            "{token}"
        );
        assert_eq!(c.recv_close().await, Some(1008));
        let (code, body) = http_get(
            gw.local_addr,
            &format!("/v1/quotes?symbols=ETH-USD&token={token}"),
        )
        .await;
        assert_eq!(code, 401, "{body}");
        assert!(body.contains(message), "{body}");
        assert_eq!(auth_failures(&gw, reason), before + 4.0, "{token}");
        still_healthy(&gw, &mut h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_from_an_identity_provider_is_verified_with_its_public_key() {
    let gw = start(|c| {
        c.auth.keys = vec![key("healthy", "healthy-key", &["*"])];
        c.auth.jwt = Some(JwtConfig {
            secret: None,
            secret_env: None,
            public_keys: vec![jwt_fixture("rs256-public.pem")],
            issuer: Some("idp".into()),
            audience: Some("tickergate".into()),
            leeway_s: 30,
        });
    })
    .await;
    let mut h = healthy(&gw).await;
    let token = rs256_jwt("rs256-private.pem", &good_claims());
    let mut c = connect_token(&gw, &token).await;
    let w = c.recv_type("welcome").await;
    assert_eq!(w["auth_required"], false);
    assert_eq!(w["limits"]["max_symbols"], 5);
    streams_eth_only(&gw, std::slice::from_mut(&mut c)).await;
    // The same claims as HS256 with the public key file as the secret (the
    // algorithm-confusion forgery), and an RS256 token past its exp.
    let pem = std::fs::read_to_string(jwt_fixture("rs256-public.pem")).unwrap();
    let confused = jwt_raw(&json!({"alg":"HS256","typ":"JWT"}), &good_claims(), &pem);
    let mut expired = good_claims();
    expired["exp"] = json!(now() - 120);
    for (token, message, reason) in [
        (confused, "invalid token", "invalid"),
        (
            rs256_jwt("rs256-private.pem", &expired),
            "expired token",
            "expired",
        ),
    ] {
        let before = auth_failures(&gw, reason);
        let mut bad = connect_token(&gw, &token).await;
        expect_refused(&mut bad, message).await;
        assert_eq!(auth_failures(&gw, reason), before + 1.0, "{reason}");
    }
    still_healthy(&gw, &mut h).await;
}

#[test]
fn public_key_paths_are_relative_to_the_config_file() {
    let dir = std::env::temp_dir().join(format!("tg-jwt-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        "[auth.jwt]\npublic_keys = [\"keys/idp.pem\", \"/abs/old.pem\"]\nissuer = \"idp\"\naudience = \"tickergate\"\n",
    )
    .unwrap();
    let c = tickergate::config::Config::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let j = c.auth.jwt.as_ref().unwrap();
    assert_eq!(
        j.public_keys,
        vec![
            dir.join("keys/idp.pem"),
            std::path::PathBuf::from("/abs/old.pem")
        ]
    );
    c.validate()
        .expect("public keys alone are a complete [auth.jwt]");
}
