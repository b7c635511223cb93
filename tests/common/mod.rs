//! Test harness: a real gateway on 127.0.0.1:0 and real WebSocket clients.
//!
//! Waits are for events (a message, a close, a metric reaching a value),
//! bounded by a generous deadline that only turns a hang into a failure;
//! nothing asserts on how long something took.
#![allow(dead_code)]

pub mod sse;

use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;
use tickergate::config::{Config, FeedConfig, SimConfig};
use tickergate::{Gateway, Quote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Deadline for any single expected event.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A config for tests: port 0, one simulated feed named `sim` that
/// heartbeats but publishes nothing (rate 0), so tests publish exactly the
/// quotes they assert on.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.feeds = vec![FeedConfig::Sim(SimConfig {
        rate: 0.0,
        symbols: 300,
        ..SimConfig::default()
    })];
    c
}

pub async fn start(tweak: impl FnOnce(&mut Config)) -> Gateway {
    // Gateway logs appear with RUST_LOG set (and only for failing tests).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = test_config();
    tweak(&mut c);
    c.validate().expect("test config must be valid");
    Gateway::start(c).await.expect("gateway starts")
}

pub fn quote(bid: &str, bid_size: &str, ask: &str, ask_size: &str) -> Quote {
    Quote::default()
        .with_bid(d(bid), d(bid_size))
        .with_ask(d(ask), d(ask_size))
}

/// Publishes through the `sim` feed's normalizer; returns the new seq.
pub fn publish(gw: &Gateway, sym: &str, q: Quote) -> u64 {
    gw.publish("sim", sym, q).expect("publish")
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A child process (the gateway binary), killed and reaped when dropped,
/// also when the test panics: a leaked gateway would keep loading the
/// machine the rest of the suite runs on.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client with a 4 KiB receive buffer (so the server's writes back up
/// as soon as it stops reading), welcomed.
pub async fn connect_tiny_rcvbuf(addr: std::net::SocketAddr) -> Client {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(ws_url(addr), stream)
        .await
        .unwrap();
    let mut c = Client::from_ws(ws);
    c.recv_type("welcome").await;
    c
}

/// Blocks both of the test runtime's workers, and so the gateway's tasks,
/// timers and shards, for `ms`; returns once both are blocked, and the
/// future resolves when they run again. Spawned from the test's own thread
/// (not a worker), so each lands on its own worker; a barrier of three
/// holds the first worker until the second runs, and the caller until both
/// do. Call it from the test's body, not from a spawned task.
pub fn stall_workers(ms: u64) -> impl std::future::Future<Output = ()> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let stalls: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait();
                std::thread::sleep(Duration::from_millis(ms));
            })
        })
        .collect();
    barrier.wait();
    async move {
        for s in stalls {
            s.await.unwrap();
        }
    }
}

/// What the client saw next.
#[derive(Debug)]
pub enum Event {
    Msgs(Vec<Value>),
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Eof,
}

pub struct Client {
    pub ws: Ws,
    /// Messages received but not yet consumed by `recv_until`.
    backlog: std::collections::VecDeque<Value>,
}

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/v1/ws")
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_url(&ws_url(addr)).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(EVENT_DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket handshake");
        Client {
            ws,
            backlog: Default::default(),
        }
    }

    /// Connects and consumes the `welcome`, returning it.
    pub async fn connect_welcomed(addr: SocketAddr) -> (Client, Value) {
        let mut c = Client::connect(addr).await;
        let w = c.recv_type("welcome").await;
        (c, w)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::Text(s.to_string().into()))
            .await
            .expect("send");
    }

    /// The next frame or close. Panics after the deadline.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let m = tokio::time::timeout(EVENT_DEADLINE, self.ws.next())
                .await
                .expect("no event before the deadline");
            match m {
                None => return Event::Eof,
                Some(Err(_)) => return Event::Eof,
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent valid JSON");
                    let arr = v
                        .as_array()
                        .expect("every server frame is a JSON array")
                        .clone();
                    assert!(!arr.is_empty(), "server frames are never empty arrays");
                    return Event::Msgs(arr);
                }
                Some(Ok(Message::Close(f))) => return Event::Close(f.map(|f| u16::from(f.code))),
                Some(Ok(Message::Binary(_))) => panic!("server must not send binary frames"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Next message (one element of a frame).
    pub async fn next_msg(&mut self) -> Value {
        loop {
            if let Some(m) = self.backlog.pop_front() {
                return m;
            }
            match self.next_event().await {
                Event::Msgs(ms) => self.backlog.extend(ms),
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Keeps reading, as a healthy client does, until `done()`. `done` is
    /// checked once per frame, not per message: an expensive check
    /// (rendering `/metrics`) must not make this reader the slow one.
    /// Messages read are dropped.
    pub async fn read_until_done(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + EVENT_DEADLINE;
        self.backlog.clear();
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            match self.next_event().await {
                Event::Msgs(_) => {}
                other => panic!("expected data while waiting for {what}, got {other:?}"),
            }
        }
    }

    /// Reads messages until one matches; returns it and those skipped.
    /// The whole wait is bounded by the deadline, so a stream of other
    /// messages (heartbeats, unrelated quotes) cannot keep it alive.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        let wait = async {
            loop {
                let m = self.next_msg().await;
                if pred(&m) {
                    return m;
                }
                skipped.push(m);
            }
        };
        match tokio::time::timeout(EVENT_DEADLINE, wait).await {
            Ok(m) => (m, skipped),
            Err(_) => panic!(
                "no matching message before the deadline; last skipped: {:?}",
                skipped.iter().rev().take(5).collect::<Vec<_>>()
            ),
        }
    }

    /// Next message of `type`, skipping heartbeats only; any other message
    /// in between fails the test.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let m = self.next_msg().await;
            if m["type"] == ty {
                return m;
            }
            assert_eq!(m["type"], "heartbeat", "expected {ty}, got {m}");
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        self.backlog.clear();
        loop {
            match self.next_event().await {
                Event::Msgs(_) => continue,
                Event::Close(c) => return c,
                Event::Eof => return None,
            }
        }
    }

    pub async fn subscribe(&mut self, id: i64, symbols: &[&str]) -> Value {
        self.send(json!({"op":"subscribe","id":id,"symbols":symbols}))
            .await;
        let (m, _) = self
            .recv_until(|m| m["type"] == "subscribed" && m["id"] == id)
            .await;
        m
    }
}

/// A raw `POST /v1/ingest` with `headers` (each ending in \r\n) and an
/// NDJSON body sent with a Content-Length; the JSON report.
pub async fn ingest_request(addr: SocketAddr, headers: &str, body: &str) -> (u16, Value) {
    let raw = format!(
        "POST /v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (st, body) = http_request(addr, &raw).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{st}: {body:?}: {e}"));
    (st, v)
}

/// [`ingest_request`] with the ingest key as a bearer token.
#[allow(dead_code)]
pub async fn ingest_post(addr: SocketAddr, key: &str, body: &str) -> (u16, Value) {
    ingest_request(addr, &format!("Authorization: Bearer {key}\r\n"), body).await
}

/// A trade a test expects: (symbol, seq, price, size, side, trade_id, ts
/// in ns).
pub type WantTrade<'a> = (&'a str, u64, &'a str, &'a str, &'a str, u64, i64);

/// Reads as many trade messages as `want` holds and checks them against
/// it, symbol by symbol in order (symbols interleave as the fan-out goes):
/// every field, the price and size as exact text, and a gateway stamp.
pub async fn expect_trades(c: &mut Client, want: &[WantTrade<'_>]) {
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(c.recv_until(|m| m["type"] == "trade").await.0);
    }
    let mut syms: Vec<&str> = Vec::new();
    for w in want {
        if !syms.contains(&w.0) {
            syms.push(w.0);
        }
    }
    for sym in syms {
        let w: Vec<_> = want.iter().filter(|w| w.0 == sym).collect();
        let g: Vec<_> = got.iter().filter(|m| m["symbol"] == sym).collect();
        assert_eq!(w.len(), g.len(), "{sym}: {got:?}");
        for (&&(_, seq, price, size, side, id, ts), m) in w.iter().zip(g) {
            assert_eq!(m["seq"], seq, "{m}");
            assert_eq!(m["price"], price, "the venue's text: {m}");
            assert_eq!(m["size"], size, "{m}");
            assert_eq!(m["side"], side, "{m}");
            assert_eq!(m["trade_id"], id, "{m}");
            assert_eq!(m["ts"], ts, "{m}");
            assert!(m["gw_ts"].as_i64().is_some_and(|g| g > 0), "{m}");
        }
    }
}

/// Minimal HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path_and_query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
    .await
}

pub async fn http_request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(EVENT_DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
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

/// Value of a metric line in /metrics text (exact series match), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `cond` holds (checked every 10 ms), failing after the deadline.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(EVENT_DEADLINE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

pub fn metrics_text(gw: &Gateway) -> String {
    String::from_utf8(gw.metrics().render()).unwrap()
}

impl Client {
    pub fn from_ws(ws: Ws) -> Client {
        Client {
            ws,
            backlog: Default::default(),
        }
    }
}

/// The first feed's simulator settings.
pub fn sim_cfg(c: &mut Config) -> &mut SimConfig {
    match &mut c.feeds[0] {
        FeedConfig::Sim(s) => s,
        other => panic!("feeds[0] is {}, not the simulator", other.kind()),
    }
}
pub mod upstream;

/// `tickergate_feed_rejects_total{feed,reason}` of `feed`, read once from
/// /metrics: call the result with a reason.
pub fn feed_rejects(gw: &Gateway, feed: &str) -> impl Fn(&str) -> f64 {
    let text = metrics_text(gw);
    let feed = feed.to_string();
    move |reason| {
        metric(
            &text,
            &format!(r#"tickergate_feed_rejects_total{{feed="{feed}",reason="{reason}"}}"#),
        )
    }
}

/// `tickergate_feed_connects_total` of `feed`.
pub fn feed_connects(gw: &Gateway, feed: &str) -> f64 {
    metric(
        &metrics_text(gw),
        &format!(r#"tickergate_feed_connects_total{{feed="{feed}"}}"#),
    )
}

/// The raw upgrade request head, ending with the blank line.
pub fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// The first unmasked server frame in `buf`: (opcode, payload, bytes it
/// takes on the wire); `None` until it is all there.
pub fn server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let (len, hdr) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n if n < 126 => (n as usize, 2),
        _ => return None,
    };
    (buf.len() >= hdr + len).then(|| (op, buf[hdr..hdr + len].to_vec(), hdr + len))
}

/// Unmasked server frames in `buf`: (opcode, payload).
pub fn server_frames(mut buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((op, payload, n)) = server_frame(buf) {
        out.push((op, payload));
        buf = &buf[n..];
    }
    out
}

/// A masked client frame (FIN set).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(
                &u16::try_from(n)
                    .expect("test frames are small")
                    .to_be_bytes(),
            );
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A WebSocket client on a bare socket, for tests that must control what
/// a library does by itself (tungstenite answers every Ping it reads).
pub struct RawClient {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and completes the upgrade.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(upgrade_request(addr, "").as_bytes())
            .await
            .expect("send upgrade");
        let mut c = RawClient {
            tcp,
            buf: Vec::new(),
        };
        let head_end = loop {
            if let Some(p) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            c.fill().await;
        };
        assert!(c.buf.starts_with(b"HTTP/1.1 101"), "not upgraded");
        c.buf.drain(..head_end);
        c
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(EVENT_DEADLINE, self.tcp.read(&mut chunk))
            .await
            .expect("server frame in time")
            .expect("read");
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next server frame: (opcode, payload, bytes on the wire).
    pub async fn next_frame(&mut self) -> (u8, Vec<u8>, usize) {
        loop {
            if let Some((op, payload, n)) = server_frame(&self.buf) {
                self.buf.drain(..n);
                return (op, payload, n);
            }
            self.fill().await;
        }
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.tcp
            .write_all(&client_frame(opcode, payload))
            .await
            .expect("send");
    }
}

/// A file of the JWT test keys (tests/fixtures/jwt).
pub fn jwt_fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// A JWT signed RS256 with the private key `private` of tests/fixtures/jwt.
pub fn rs256_jwt(private: &str, claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(jwt_fixture(private)).unwrap();
    let kp = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string().as_bytes());
    let signing = format!(
        "{}.{}",
        b64(&json!({"alg":"RS256","typ":"JWT"})),
        b64(claims)
    );
    let mut sig = vec![0; kp.public().modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig))
}
