//! A venue feed over `wss://`, as the real venues are: a fake Binance
//! behind TLS with a certificate of a private CA, trusted through
//! `SSL_CERT_FILE`; the adapter connects, subscribes, and its quote reaches
//! a gateway subscriber byte-exact. (One test per binary: the trusted CA
//! is read once per process.)

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tickergate::config::{FeedConfig, VenueConfig, VenueKind};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_venue_is_reached_through_tls() {
    let dir = std::env::temp_dir().join(format!("tg-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    // The gateway's venue connections trust this file instead of the
    // system's bundle (read once, at the first wss:// connect).
    std::env::set_var("SSL_CERT_FILE", &ca);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let venue = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.expect("TLS handshake");
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        // The adapter's SUBSCRIBE, then a book ticker.
        let sub = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("no subscribe: {other:?}"),
            }
        };
        let v: serde_json::Value = serde_json::from_str(&sub).unwrap();
        assert_eq!(v["method"], "SUBSCRIBE");
        let ack = serde_json::json!({"result": null, "id": v["id"]}).to_string();
        ws.send(Message::Text(ack.into())).await.unwrap();
        let tick = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900230,"s":"BTCUSDT","b":"97000.01000000","B":"1.50000000","a":"97000.02000000","A":"0.25000000"}}"#;
        loop {
            if ws.send(Message::Text(tick.into())).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let v = VenueConfig {
        name: "binance".into(),
        url: format!("wss://localhost:{port}/stream"),
        symbols: [("BTCUSDT".to_string(), "BTC-USDT".to_string())].into(),
        stale_after_ms: 5_000,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        ..VenueConfig::default()
    };
    let gw = start(|c| c.feeds = vec![FeedConfig::Venue(VenueKind::Binance, v)]).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT"]).await;
    let q = c.recv_type("quote").await;
    assert_eq!(q["bid"], "97000.01000000");
    assert_eq!(q["ask_size"], "0.25000000");
    assert_eq!(feed_connects(&gw, "binance"), 1.0);
    venue.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
