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
        Certs::expiring(tag, None)
    }

    /// The same with the certificate's notAfter on `(year, month, day)`
    /// (rcgen's default is far in the future).
    fn expiring(tag: &str, not_after: Option<(i32, u8, u8)>) -> Certs {
        let dir = std::env::temp_dir().join(format!("tg-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        if let Some((y, m, d)) = not_after {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let signing_key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&signing_key).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, c.pem()).unwrap();
        std::fs::write(&key, signing_key.serialize_pem()).unwrap();
        Certs {
            der: c.der().clone(),
            dir,
            cert,
            key,
        }
    }

    /// A renewal: `next`'s certificate and key written over this one's
    /// files.
    /// Replaces the pair as a renewal tool does: the slow copies go to
    /// temporary names first, then two renames put both files in place
    /// within microseconds (a file check between two slow copies would see
    /// a half-done renewal settle).
    fn renew_with(&self, next: &Certs) {
        let (cert_tmp, key_tmp) = (
            self.cert.with_extension("new"),
            self.key.with_extension("new"),
        );
        std::fs::copy(&next.cert, &cert_tmp).unwrap();
        std::fs::copy(&next.key, &key_tmp).unwrap();
        std::fs::rename(&cert_tmp, &self.cert).unwrap();
        std::fs::rename(&key_tmp, &self.key).unwrap();
    }

    fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ..TlsConfig::default()
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
    connector_for(&[certs])
}

/// A client that trusts each of `trusted`.
fn connector_for(trusted: &[&Certs]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
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

/// A `wss://` session, welcomed and subscribed to AAPL.
async fn wss_aapl(addr: SocketAddr, certs: &Certs) -> TlsWs {
    let mut ws = wss_connect(addr, certs).await;
    recv_until(&mut ws, |m| m["type"] == "welcome").await;
    ws.send(Message::Text(
        json!({"op":"subscribe","id":1,"symbols":["AAPL"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    recv_until(&mut ws, |m| m["type"] == "subscribed" && m["id"] == 1).await;
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
    let mut ws = wss_aapl(gw.local_addr, &certs).await;
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
    // Long enough for the healthy TLS request below on a loaded machine.
    let gw = start_tls(&certs, |c| c.server.header_timeout_ms = 1000).await;
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

/// Reads `ws` for `ms`, as a healthy client does (tungstenite answers
/// Pings as it reads); panics if the server closes.
async fn read_for(ws: &mut TlsWs, ms: u64) {
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
    while let Ok(m) = tokio::time::timeout_at(until, ws.next()).await {
        match m {
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// A TLS session (its task writes every frame; it is never parked) that
/// wakes from a gateway stall with data owed writes before it reads. It
/// must still take the Pong its client sent during the stall before it
/// judges the client idle: a deadline that passed while the task was late
/// gets a last call of reading first. (Before, the client was closed 1008
/// on the loop's first turn after the write.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_session_reads_the_waiting_pong_before_it_closes() {
    let certs = Certs::new("late");
    let gw = start_tls(&certs, |c| {
        c.session.ping_interval_ms = 200;
        c.session.idle_timeout_ms = 1500;
        c.session.heartbeat_ms = 100;
    })
    .await;
    let mut ws = wss_aapl(gw.local_addr, &certs).await;
    read_for(&mut ws, 300).await;
    // The client stops reading: the gateway's next Ping waits unread in
    // the client's socket.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    // The gateway stalls past the idle deadline (1.5 s after the client's
    // last frame). Meanwhile a quote is published (when the gateway runs
    // again its shard wakes the session with data), and the client reads
    // up to the Ping and answers it. (No timers until the stall ends: the
    // runtime's clock is stalled too.)
    let stall = stall_workers(2500);
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "0.50"));
    let mut quoted = false;
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_))) => break,
            Some(Ok(Message::Text(t))) => quoted |= t.contains("189.1200"),
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    // Sends the queued Pong.
    ws.flush().await.unwrap();
    stall.await;
    if !quoted {
        let q = recv_until(&mut ws, |m| m["type"] == "quote" && m["symbol"] == "AAPL").await;
        assert_eq!(q["bid"], "189.1200");
    }
    read_for(&mut ws, 1000).await;
    assert_eq!(
        metric(
            &metrics_text(&gw),
            r#"tickergate_disconnects_total{code="1008"}"#
        ),
        0.0
    );
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
        ..TlsConfig::default()
    })
    .await;
    assert!(
        err.contains("server.tls.cert") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: missing.clone(),
        ..TlsConfig::default()
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
        ..TlsConfig::default()
    })
    .await;
    assert!(
        err.contains("server.tls.cert") && err.contains(garbage.to_str().unwrap()),
        "{err}"
    );
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: garbage.clone(),
        ..TlsConfig::default()
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
        ..TlsConfig::default()
    })
    .await;
    assert!(err.contains("server.tls.key"), "{err}");
    // A key that does not belong to the certificate.
    let other = Certs::new("bad-other");
    let err = start_err(TlsConfig {
        cert: certs.cert.clone(),
        key: other.key.clone(),
        ..TlsConfig::default()
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
    assert_eq!(
        tls.check_secs, 60,
        "files are checked for a renewal every minute"
    );
    c.validate().unwrap();
    let c = Config::from_toml(
        "[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\ncheck_secs = 100000\n",
        std::path::Path::new("x.toml"),
    )
    .unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("server.tls.check_secs"), "{err}");
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

/// Runs the binary with the config at `path`; returns it with the
/// `wss://` address it printed (if it did) and everything it printed up to
/// the last line, `stop : Ctrl-C`.
fn spawn_bin(path: &std::path::Path) -> (Proc, Option<SocketAddr>, Vec<String>) {
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
    (Proc(child), addr, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_wss_urls_and_serves_tls() {
    let certs = Certs::new("bin");
    let path = certs.dir.join("gw.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    )
    .unwrap();
    let (mut child, addr, printed) = spawn_bin(&path);
    let result = match addr {
        Some(addr) => Some(https_get(addr, &certs, "/healthz").await),
        None => None,
    };
    let _ = child.0.kill();
    let _ = child.0.wait();
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

/// The leaf certificate a new handshake is shown, by a client that trusts
/// each of `trusted`.
async fn served_cert(addr: SocketAddr, trusted: &[&Certs]) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(EVENT_DEADLINE, connector_for(trusted).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presents a certificate")
        .clone()
        .into_owned()
}

/// Polls new handshakes until one is shown `want` (bounded).
async fn wait_served(addr: SocketAddr, trusted: &[&Certs], want: &Certs, what: &str) {
    let wait = async {
        while served_cert(addr, trusted).await != want.der {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: the new certificate was never served"));
}

/// A series' value, which must be exported (`metric` reads a missing one
/// as 0).
fn exported(gw: &Gateway, series: &str) -> f64 {
    let text = metrics_text(gw);
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{series} "))),
        "{series} is not exported"
    );
    metric(&text, series)
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    exported(
        gw,
        &format!("tickergate_tls_cert_reloads_total{{result=\"{result}\"}}"),
    )
}

fn served_not_after(gw: &Gateway) -> f64 {
    exported(gw, "tickergate_tls_cert_not_after_seconds")
}

fn reload_failing(gw: &Gateway) -> f64 {
    exported(gw, "tickergate_tls_cert_reload_failing")
}

fn epoch(y: i32, m: u8, d: u8) -> i64 {
    rcgen::date_time_ymd(y, m, d).unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_from_the_next_handshake_and_open_sessions_stay() {
    let old = Certs::expiring("renew", Some((2030, 1, 2)));
    let next = Certs::expiring("renew-next", Some((2031, 5, 6)));
    let both = [&old, &next];
    let gw = start_tls(&old, |c| {
        if let Some(t) = &mut c.server.tls {
            t.check_secs = 0;
        }
    })
    .await;
    assert_eq!(served_not_after(&gw), epoch(2030, 1, 2) as f64);
    assert!(served_cert(gw.local_addr, &both).await == old.der);
    // A session opened on the old certificate.
    let mut ws = wss_aapl(gw.local_addr, &old).await;

    old.renew_with(&next);
    let not_after = gw
        .reload_tls()
        .expect("TLS is on")
        .expect("the renewed pair loads");
    assert_eq!(not_after, epoch(2031, 5, 6));
    assert!(
        served_cert(gw.local_addr, &both).await == next.der,
        "a new handshake is shown the renewed certificate"
    );
    assert_eq!(served_not_after(&gw), epoch(2031, 5, 6) as f64);
    assert_eq!(reloads(&gw, "ok"), 1.0);
    assert_eq!(reloads(&gw, "error"), 0.0);
    assert_eq!(reload_failing(&gw), 0.0);
    // The session from before the renewal still streams.
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "0.50"));
    let q = recv_until(&mut ws, |m| m["type"] == "quote" && m["symbol"] == "AAPL").await;
    assert_eq!(q["bid"], "189.1200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_does_not_load_keeps_the_served_certificate() {
    let old = Certs::expiring("badrenew", Some((2030, 1, 2)));
    let stranger = Certs::new("badrenew-stranger");
    let expired = Certs::expiring("badrenew-expired", Some((2020, 1, 2)));
    let next = Certs::expiring("badrenew-next", Some((2031, 5, 6)));
    let all = [&old, &stranger, &expired, &next];
    let gw = start_tls(&old, |c| {
        if let Some(t) = &mut c.server.tls {
            t.check_secs = 0;
        }
    })
    .await;
    // Half a renewal: a key that does not belong to the certificate.
    std::fs::copy(&stranger.key, &old.key).unwrap();
    let err = gw.reload_tls().expect("TLS is on").unwrap_err().to_string();
    assert!(
        err.contains(old.cert.to_str().unwrap()) && err.contains(old.key.to_str().unwrap()),
        "{err}"
    );
    // A certificate file that is not PEM.
    std::fs::write(&old.cert, "not a certificate\n").unwrap();
    let err = gw.reload_tls().expect("TLS is on").unwrap_err().to_string();
    assert!(
        err.contains("server.tls.cert") && err.contains(old.cert.to_str().unwrap()),
        "{err}"
    );
    // A valid pair whose certificate has expired: serving it would fail
    // every handshake.
    old.renew_with(&expired);
    let err = gw.reload_tls().expect("TLS is on").unwrap_err().to_string();
    assert!(
        err.contains("expired") && err.contains(old.cert.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(reloads(&gw, "error"), 3.0);
    assert_eq!(reloads(&gw, "ok"), 0.0);
    assert_eq!(reload_failing(&gw), 1.0);
    assert!(
        served_cert(gw.local_addr, &all).await == old.der,
        "the certificate loaded at start is still served"
    );
    assert_eq!(served_not_after(&gw), epoch(2030, 1, 2) as f64);
    let (code, _) = https_get(gw.local_addr, &old, "/readyz").await;
    assert_eq!(code, 200);
    // The renewal completed: it loads.
    old.renew_with(&next);
    assert!(gw.reload_tls().expect("TLS is on").is_ok());
    assert!(served_cert(gw.local_addr, &all).await == next.der);
    assert_eq!(reloads(&gw, "ok"), 1.0);
    assert_eq!(reload_failing(&gw), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_loaded_by_the_check_without_a_signal() {
    let old = Certs::new("watch");
    let next = Certs::expiring("watch-next", Some((2031, 5, 6)));
    let both = [&old, &next];
    let gw = start_tls(&old, |c| {
        if let Some(t) = &mut c.server.tls {
            t.check_secs = 1;
        }
    })
    .await;
    assert!(served_cert(gw.local_addr, &both).await == old.der);
    old.renew_with(&next);
    wait_served(gw.local_addr, &both, &next, "check_secs = 1").await;
    // (The check's metrics follow its swap from another thread: waited
    // for, not read once.)
    wait_for("the expiry gauge to follow", || {
        served_not_after(&gw) == epoch(2031, 5, 6) as f64
    })
    .await;
    wait_for("one load counted", || reloads(&gw, "ok") == 1.0).await;
    assert_eq!(
        reloads(&gw, "error"),
        0.0,
        "a renewal caught halfway is not an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_reports_a_bad_renewal_once_and_loads_the_next_good_one() {
    let old = Certs::new("watchbad");
    let stranger = Certs::new("watchbad-stranger");
    let next = Certs::new("watchbad-next");
    let all = [&old, &stranger, &next];
    let gw = start_tls(&old, |c| {
        if let Some(t) = &mut c.server.tls {
            t.check_secs = 1;
        }
    })
    .await;
    // A key that does not belong to the certificate, left in place.
    std::fs::copy(&stranger.key, &old.key).unwrap();
    wait_for("the bad renewal to be reported", || {
        reloads(&gw, "error") == 1.0
    })
    .await;
    wait_for("the failing gauge", || reload_failing(&gw) == 1.0).await;
    // Checks go on every second meanwhile; unchanged files are not tried
    // again. (On a slow machine fewer checks run: the count stays 1.)
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(reloads(&gw, "error"), 1.0, "reported once");
    assert!(served_cert(gw.local_addr, &all).await == old.der);
    // The next renewal is complete: it loads.
    old.renew_with(&next);
    wait_served(gw.local_addr, &all, &next, "after a bad renewal").await;
    wait_for("the failing gauge to clear", || reload_failing(&gw) == 0.0).await;
    wait_for("the good load counted", || reloads(&gw, "ok") == 1.0).await;
    assert_eq!(reloads(&gw, "error"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary_s_certificate() {
    let old = Certs::new("hup");
    let next = Certs::new("hup-next");
    let both = [&old, &next];
    let path = old.dir.join("gw.toml");
    // No file check: only the signal can load the renewal.
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\ncheck_secs = 0\n",
    )
    .unwrap();
    let (mut child, addr, printed) = spawn_bin(&path);
    // (The guard kills the binary if this panics.)
    let Some(addr) = addr else {
        panic!("no wss:// line in {printed:?}");
    };
    let before = served_cert(addr, &both).await;
    old.renew_with(&next);
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status();
    let served = async {
        let wait = async {
            while served_cert(addr, &both).await != next.der {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(EVENT_DEADLINE, wait).await.is_ok()
    }
    .await;
    let alive = matches!(child.0.try_wait(), Ok(None));
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(before == old.der);
    assert!(hup.is_ok_and(|s| s.success()), "kill -HUP ran");
    assert!(
        served,
        "after SIGHUP new handshakes are shown the renewed certificate"
    );
    assert!(alive, "SIGHUP does not end the process");
}
