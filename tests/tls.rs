//! `[server.tls]`: `wss://` and `https://` on the public listener, against a
//! real gateway with a self-signed certificate made at test time.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use tickergate::config::{Config, TlsConfig};
use tickergate::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files into a directory of its own (removed on drop).
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certs {
    fn new(tag: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("tg-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Certs {
            der: ck.cert.der().clone(),
            dir,
            cert,
            key,
        }
    }

    fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_tls(certs: &Certs, tweak: impl FnOnce(&mut Config)) -> Gateway {
    let tls = certs.tls_config();
    start(move |c| {
        c.server.tls = Some(tls);
        tweak(c);
    })
    .await
}

/// A client that trusts exactly the test certificate.
fn connector(certs: &Certs) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.der.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

async fn tls_connect(addr: SocketAddr, certs: &Certs) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(EVENT_DEADLINE, connector(certs).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake")
}

/// HTTP/1.1 over TLS; returns (status, body).
async fn https_get(addr: SocketAddr, certs: &Certs, path: &str) -> (u16, String) {
    let mut s = tls_connect(addr, certs).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    // A peer that closes without close_notify is an error after the data:
    // what was read is still the response.
    let _ = tokio::time::timeout(EVENT_DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

type TlsWs = WebSocketStream<TlsStream<TcpStream>>;

async fn wss_connect(addr: SocketAddr, certs: &Certs) -> TlsWs {
    let tls = tls_connect(addr, certs).await;
    let (ws, _) = tokio::time::timeout(
        EVENT_DEADLINE,
        tokio_tungstenite::client_async("wss://localhost/v1/ws", tls),
    )
    .await
    .expect("upgrade in time")
    .expect("websocket handshake over TLS");
    ws
}

/// The next message matching `pred`, skipping others; bounded by the deadline.
async fn recv_until(ws: &mut TlsWs, pred: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("valid JSON");
                    let arr = v.as_array().expect("frames are JSON arrays");
                    if let Some(m) = arr.iter().find(|m| pred(m)) {
                        return m.clone();
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, wait)
        .await
        .expect("message before the deadline")
}

fn handshake_failures(gw: &Gateway) -> f64 {
    metric(&metrics_text(gw), "tickergate_tls_handshake_failures_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_streams_quotes_with_exact_decimals() {
    let certs = Certs::new("wss");
    let gw = start_tls(&certs, |_| {}).await;
    let mut ws = wss_connect(gw.local_addr, &certs).await;
    recv_until(&mut ws, |m| m["type"] == "welcome").await;
    ws.send(Message::Text(
        json!({"op":"subscribe","id":1,"symbols":["AAPL"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    recv_until(&mut ws, |m| m["type"] == "subscribed" && m["id"] == 1).await;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "0.50"));
    let q = recv_until(&mut ws, |m| m["type"] == "quote" && m["symbol"] == "AAPL").await;
    assert_eq!(q["bid"], "189.1200");
    assert_eq!(q["bid_size"], "300");
    assert_eq!(q["ask"], "189.14");
    assert_eq!(q["ask_size"], "0.50");
    assert_eq!(handshake_failures(&gw), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_health_and_rest() {
    let certs = Certs::new("https");
    let gw = start_tls(&certs, |_| {}).await;
    let (code, body) = https_get(gw.local_addr, &certs, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    publish(&gw, "AAPL", quote("189.13", "300", "189.14", "200"));
    let (code, body) = https_get(gw.local_addr, &certs, "/v1/quotes?symbols=AAPL").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["bid"], "189.13");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_refused_and_counted() {
    let certs = Certs::new("plain");
    let gw = start_tls(&certs, |_| {}).await;
    let mut s = TcpStream::connect(gw.local_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // EOF, a reset or a TLS alert: anything but an HTTP answer.
    let _ = tokio::time::timeout(EVENT_DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("the server ends the connection");
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&buf)
    );
    wait_for("the failed handshake to be counted", || {
        handshake_failures(&gw) == 1.0
    })
    .await;
    // The server is unaffected.
    let (code, _) = https_get(gw.local_addr, &certs, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(handshake_failures(&gw), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let certs = Certs::new("silent");
    let gw = start_tls(&certs, |c| c.server.header_timeout_ms = 200).await;
    let mut s = TcpStream::connect(gw.local_addr).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(EVENT_DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("the server drops a client that never starts the handshake");
    assert!(buf.is_empty(), "nothing is sent to a silent client");
    wait_for("the timed-out handshake to be counted", || {
        handshake_failures(&gw) == 1.0
    })
    .await;
    let (code, _) = https_get(gw.local_addr, &certs, "/healthz").await;
    assert_eq!(code, 200);
}

async fn start_err(tls: TlsConfig) -> String {
    let mut c = test_config();
    c.server.tls = Some(tls);
    c.validate()
        .expect("paths are present, so the config is valid");
    match Gateway::start(c).await {
        Ok(_) => panic!("the gateway must not start"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cert_or_key_files_are_start_errors_naming_the_path() {
    let certs = Certs::new("bad");
    let missing = certs.dir.join("nope.pem");
    let err = start_err(TlsConfig {
        cert: missing.clone(),
        key: certs.key.clone(),
    })
    .await;
    assert!(
        err.contains("server.tls.cert") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: missing.clone(),
    })
    .await;
    assert!(
        err.contains("server.tls.key") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );

    let garbage = certs.dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let err = start_err(TlsConfig {
        cert: garbage.clone(),
        key: certs.key.clone(),
    })
    .await;
    assert!(
        err.contains("server.tls.cert") && err.contains(garbage.to_str().unwrap()),
        "{err}"
    );
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: garbage.clone(),
    })
    .await;
    assert!(
        err.contains("server.tls.key") && err.contains(garbage.to_str().unwrap()),
        "{err}"
    );
    // The certificate where the key belongs: valid PEM, but no key in it.
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: certs.cert.clone(),
    })
    .await;
    assert!(err.contains("server.tls.key"), "{err}");
    // A key that does not belong to the certificate.
    let other = Certs::new("bad-other");
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: other.key.clone(),
    })
    .await;
    assert!(
        err.contains(certs.cert.to_str().unwrap()) && err.contains(other.key.to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn config_table_resolves_relative_paths_and_names_missing_fields() {
    let certs = Certs::new("cfg");
    let path = certs.dir.join("gw.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"/abs/key.pem\"\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    let tls = c.server.tls.as_ref().unwrap();
    assert_eq!(tls.cert, certs.cert, "relative to the config file");
    assert_eq!(tls.key, PathBuf::from("/abs/key.pem"));
    c.validate().unwrap();
    assert!(Config::load(&certs.dir.join("missing.toml")).is_err());

    let c = Config::from_toml(
        "[server.tls]\ncert = \"c.pem\"\n",
        std::path::Path::new("x.toml"),
    )
    .unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("server.tls.key"), "{err}");
    let c = Config::from_toml("[server.tls]\n", std::path::Path::new("x.toml")).unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("server.tls.cert"), "{err}");
    let err = Config::from_toml(
        "[server.tls]\ncert = \"c\"\nkey = \"k\"\nchain = \"x\"\n",
        std::path::Path::new("x.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("chain"), "{err}");
    assert!(
        Config::default().server.tls.is_none(),
        "TLS is off by default"
    );
}

const BIN: &str = env!("CARGO_BIN_EXE_tickergate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_wss_urls_and_serves_tls() {
    let certs = Certs::new("bin");
    let path = certs.dir.join("gw.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tickergate");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Everything it prints up to the last line, `stop : Ctrl-C`.
    let mut printed = Vec::new();
    while let Ok(line) = rx.recv_timeout(EVENT_DEADLINE) {
        let last = line.trim().starts_with("stop");
        printed.push(line);
        if last {
            break;
        }
    }
    let addr: Option<SocketAddr> = printed.iter().find_map(|l| {
        let rest = l.trim().strip_prefix("WebSocket : wss://")?;
        rest.split('/').next()?.parse().ok()
    });
    let result = match addr {
        Some(addr) => Some(https_get(addr, &certs, "/healthz").await),
        None => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    let addr = addr.unwrap_or_else(|| panic!("no wss:// line in {printed:?}"));
    assert_eq!(result.unwrap().0, 200, "healthz over https at {addr}");
    let text = printed.join("\n");
    assert!(text.contains(&format!("https://{addr}/metrics")), "{text}");
    assert!(
        !text.contains(" ws://") && !text.contains(" http://"),
        "{text}"
    );

    // A missing certificate: a clear error naming it, not a panic.
    std::fs::remove_file(&certs.cert).unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(certs.cert.to_str().unwrap()) && !err.contains("panicked"),
        "{err}"
    );
}
