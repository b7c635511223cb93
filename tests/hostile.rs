//! Hostile clients against a real gateway: every case asserts the
//! documented answer (status or close code) AND that a healthy client,
//! connected and subscribed before the attack, still receives a freshly
//! published quote afterwards.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickergate::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const SYM: &str = "AAPL";

/// A client subscribed to [`SYM`], connected before the attack.
async fn healthy(gw: &Gateway) -> Client {
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(900, &[SYM]).await;
    c
}

/// Publishes a fresh quote and waits for the healthy client to get it.
async fn assert_flows(gw: &Gateway, c: &mut Client) {
    let seq = publish(gw, SYM, quote("101.25", "7", "101.50", "9"));
    let (q, _) = c
        .recv_until(|m| m["type"] == "quote" && m["seq"].as_u64() == Some(seq))
        .await;
    assert_eq!(q["bid"], "101.25");
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection from a chosen loopback source address.
async fn tcp_from(src: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    s.connect(addr).await
}

fn counter(gw: &Gateway, series: &str) -> f64 {
    metric(&metrics_text(gw), series)
}

/// Reads whatever the server sends until it closes (EOF or reset).
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, read_all)
        .await
        .expect("server closed the connection in time");
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_from_one_address_is_refused_others_unaffected() {
    let gw = start(|c| {
        c.server.conn_rate_per_ip = 1;
        c.server.conn_burst_per_ip = 5;
    })
    .await;
    let mut ok = healthy(&gw).await;
    let flooder = loopback(3);
    let (mut admitted, mut refused) = (0, 0);
    for _ in 0..50 {
        let mut s = tcp_from(flooder, gw.local_addr).await.expect("connect");
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await;
        let resp = read_until_closed(&mut s).await;
        if resp.starts_with(b"HTTP/1.1 200") {
            admitted += 1;
        } else {
            // A 429, or a reset when the request was already in flight.
            assert!(
                resp.is_empty() || resp.starts_with(b"HTTP/1.1 429"),
                "{:?}",
                String::from_utf8_lossy(&resp)
            );
            refused += 1;
        }
    }
    assert!(refused >= 40, "admitted {admitted}, refused {refused}");
    // A client that reads before writing sees the documented 429.
    let mut saw_429 = false;
    for _ in 0..10 {
        let mut s = tcp_from(flooder, gw.local_addr).await.expect("connect");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut buf)).await;
        if read.is_ok() {
            let text = String::from_utf8_lossy(&buf);
            assert!(text.starts_with("HTTP/1.1 429"), "{text:?}");
            assert!(text.contains("Retry-After: 1"), "{text:?}");
            assert!(text.contains("\"rate_limited\""), "{text:?}");
            saw_429 = true;
            break;
        }
    }
    assert!(saw_429, "no 429 from the flooded address");
    assert!(counter(&gw, "tickergate_conn_rate_limited_total") >= 41.0);
    assert!(counter(&gw, "tickergate_limiter_keys") >= 0.0);
    // Another source address is unaffected: it gets a WebSocket session.
    let s = tcp_from(loopback(4), gw.local_addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(
        ws_url(gw.local_addr),
        tokio_tungstenite::MaybeTlsStream::Plain(s),
    )
    .await
    .expect("other address upgrades");
    let mut other = Client::from_ws(ws);
    other.recv_type("welcome").await;
    assert_flows(&gw, &mut ok).await;
}

/// A WebSocket client connecting from `src`.
async fn ws_from(src: IpAddr, gw: &Gateway) -> Client {
    let s = tcp_from(src, gw.local_addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(
        ws_url(gw.local_addr),
        tokio_tungstenite::MaybeTlsStream::Plain(s),
    )
    .await
    .expect("upgrade");
    Client::from_ws(ws)
}

/// The first thing a new session hears: its welcome, or its close frame
/// (code, reason).
async fn welcome_or_close(c: &mut Client) -> Result<(), (u16, String)> {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(EVENT_DEADLINE, c.ws.next())
            .await
            .expect("an answer in time")
            .expect("not closed without a close frame")
            .expect("a frame");
        match m {
            Message::Text(t) if t.contains(r#""type":"welcome""#) => return Ok(()),
            Message::Close(Some(f)) => return Err((u16::from(f.code), f.reason.to_string())),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a welcome or a close, got {other:?}"),
        }
    }
}

/// `server.max_connections_per_ip`: an address holding its cap of
/// sessions has the next one closed with 1013 at once (after the upgrade,
/// so that a browser sees the code), other addresses are unaffected, and a
/// session that ends frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_address_are_capped_and_places_come_back() {
    let gw = start(|c| c.server.max_connections_per_ip = 2).await;
    let mut ok = healthy(&gw).await;
    let crowd = loopback(5);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = ws_from(crowd, &gw).await;
        assert_eq!(welcome_or_close(&mut c).await, Ok(()));
        held.push(c);
    }
    for _ in 0..3 {
        let mut c = ws_from(crowd, &gw).await;
        assert_eq!(
            welcome_or_close(&mut c).await,
            Err((
                1013,
                "too many connections from this address, try again later".to_string()
            ))
        );
    }
    assert_eq!(counter(&gw, "tickergate_ip_sessions_full_total"), 3.0);
    assert_eq!(counter(&gw, "tickergate_connections_rejected_total"), 3.0);
    // Another address is unaffected.
    let mut other = ws_from(loopback(6), &gw).await;
    assert_eq!(welcome_or_close(&mut other).await, Ok(()));
    // One of the two leaves: its place comes back once its session ends
    // (the gateway notices the close asynchronously).
    let mut leaving = held.pop().expect("two held");
    leaving.ws.close(None).await.expect("close");
    wait_for("the address's place back", || {
        counter(&gw, "tickergate_connections") == 3.0
    })
    .await;
    let mut again = ws_from(crowd, &gw).await;
    assert_eq!(welcome_or_close(&mut again).await, Ok(()));
    let mut fourth = ws_from(crowd, &gw).await;
    let refused = welcome_or_close(&mut fourth)
        .await
        .expect_err("at the cap again");
    assert_eq!(refused.0, 1013);
    assert_eq!(counter(&gw, "tickergate_ip_sessions_full_total"), 4.0);
    assert_flows(&gw, &mut ok).await;
}

/// The address's cap is checked before the server's: a session it turns
/// away is told so (and takes no server place), while another address
/// still hears that the server is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_cap_is_told_before_server_full() {
    let gw = start(|c| {
        c.server.max_connections = 1;
        c.server.max_connections_per_ip = 1;
    })
    .await;
    let mut first = ws_from(loopback(7), &gw).await;
    assert_eq!(welcome_or_close(&mut first).await, Ok(()));
    let mut same = ws_from(loopback(7), &gw).await;
    let (code, reason) = welcome_or_close(&mut same).await.expect_err("capped");
    assert_eq!(code, 1013);
    assert!(reason.contains("this address"), "{reason}");
    let mut other = ws_from(loopback(8), &gw).await;
    let (code, reason) = welcome_or_close(&mut other).await.expect_err("full");
    assert_eq!(code, 1013);
    assert!(reason.contains("server full"), "{reason}");
    assert_eq!(counter(&gw, "tickergate_ip_sessions_full_total"), 1.0);
    assert_eq!(counter(&gw, "tickergate_connections_rejected_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_flood_gets_rate_limited_then_1008() {
    let gw = start(|c| {
        c.session.max_msgs_per_sec = 2;
        c.session.msgs_burst = 2;
        c.session.max_rate_violations = 5;
    })
    .await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    for i in 0..50 {
        let op = json!({"op":"ping","id":i}).to_string();
        if c.ws.send(Message::Text(op.into())).await.is_err() {
            break;
        }
    }
    let (m, _) = c
        .recv_until(|m| m["type"] == "error" && m["code"] == "rate_limited")
        .await;
    assert_eq!(m["code"], "rate_limited");
    assert_eq!(c.recv_close().await, Some(1008));
    assert_flows(&gw, &mut ok).await;
}

fn many_symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i}")).collect()
}

/// With the default limits a 10,000-symbol subscribe does not even fit in
/// a message (4 × max_message_bytes): close 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_symbol_subscribe_is_1009_by_default() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let op = json!({"op":"subscribe","id":1,"symbols":many_symbols(10_000)}).to_string();
    assert!(op.len() > 4 * 16 * 1024);
    let _ = c.ws.send(Message::Text(op.into())).await;
    assert_eq!(c.recv_close().await, Some(1009));
    assert_flows(&gw, &mut ok).await;
}

/// When the message limit lets it through, the op is rejected whole with
/// `too_many_symbols` and the session stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_symbol_subscribe_is_too_many_symbols() {
    let gw = start(|c| c.session.max_message_bytes = 256 * 1024).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let mut syms = many_symbols(9_999);
    syms.push(SYM.to_string());
    c.send(json!({"op":"subscribe","id":1,"symbols":syms}))
        .await;
    let m = c.recv_type("error").await;
    assert_eq!(m["code"], "too_many_symbols");
    assert_eq!(m["id"], 1);
    // Nothing was subscribed: the quote below reaches only the healthy
    // client, and this session still answers.
    assert_flows(&gw, &mut ok).await;
    c.send(json!({"op":"ping","id":2})).await;
    let pong = c.recv_type("pong").await;
    assert_eq!(pong["id"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_single_frame_is_1009() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let big = format!(
        "{{\"op\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(4 * 16 * 1024)
    );
    let _ = c.ws.send(Message::Text(big.into())).await;
    assert_eq!(c.recv_close().await, Some(1009));
    assert_flows(&gw, &mut ok).await;
}

/// Sends `parts` as one text message in continuation frames.
async fn send_fragmented(c: &mut Client, parts: &[&[u8]]) {
    for (i, p) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let fin = i + 1 == parts.len();
        let frame = Frame::message(p.to_vec(), op, fin);
        if c.ws.send(Message::Frame(frame)).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_op_is_reassembled() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    send_fragmented(
        &mut c,
        &[
            b"{\"op\":\"subs",
            b"cribe\",\"id\":7,",
            b"\"symbols\":[\"MSFT\"]}",
        ],
    )
    .await;
    let m = c.recv_type("subscribed").await;
    assert_eq!(m["id"], 7);
    assert_eq!(m["symbols"], json!(["MSFT"]));
    assert_flows(&gw, &mut ok).await;
}

/// Each fragment is under the frame limit, their sum is over the message
/// limit: 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_past_the_limit_are_1009() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let chunk = vec![b'x'; 16 * 1024];
    let mut parts: Vec<&[u8]> = vec![b"{\"op\":\"ping\",\"pad\":\""];
    for _ in 0..5 {
        parts.push(&chunk);
    }
    parts.push(b"\"}");
    send_fragmented(&mut c, &parts).await;
    assert_eq!(c.recv_close().await, Some(1009));
    assert_flows(&gw, &mut ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_is_bad_request_and_session_stays() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.ws.send(Message::Binary(b"{\"op\":\"ping\"}".to_vec().into()))
        .await
        .expect("send");
    let m = c.recv_type("error").await;
    assert_eq!(m["code"], "bad_request");
    c.send(json!({"op":"ping","id":3})).await;
    assert_eq!(c.recv_type("pong").await["id"], 3);
    assert_flows(&gw, &mut ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_1007() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    let frame = Frame::message(
        b"{\"op\":\"ping\",\"x\":\"\xff\xfe\"}".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    let _ = c.ws.send(Message::Frame(frame)).await;
    assert_eq!(c.recv_close().await, Some(1007));
    assert_flows(&gw, &mut ok).await;
}

/// Slowloris: many sockets send half a request head and stall; the server
/// drops each after `header_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_are_dropped_after_header_timeout() {
    let gw = start(|c| c.server.header_timeout_ms = 300).await;
    let mut ok = healthy(&gw).await;
    let mut socks = Vec::new();
    for i in 0..30u8 {
        let mut s = tcp_from(loopback(10 + i % 5), gw.local_addr)
            .await
            .expect("connect");
        s.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .expect("write");
        socks.push(s);
    }
    for s in &mut socks {
        let resp = read_until_closed(s).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(
            !text.contains(" 101 "),
            "a half request was upgraded: {text:?}"
        );
    }
    assert_eq!(gw.metrics().connections.get(), 1);
    assert_flows(&gw, &mut ok).await;
}

/// A client that sends Pings and never reads: the server's Pongs fill its
/// socket, and tungstenite holds the next one unwritten. That is a write
/// stuck like any other: closed 4008 after `slow_consumer_ms`. (Before, the
/// session was never closed, since the client kept sending, and its task
/// spun on a heartbeat time already past.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pings_and_never_reads_is_4008() {
    let gw = start(|c| {
        c.session.slow_consumer_ms = 1000;
        c.session.send_buffer_bytes = 4096;
        c.session.heartbeat_ms = 100;
    })
    .await;
    let mut ok = healthy(&gw).await;
    let mut pinger = connect_tiny_rcvbuf(gw.local_addr).await;
    let closed = || counter(&gw, r#"tickergate_disconnects_total{code="4008"}"#) >= 1.0;
    let deadline = Instant::now() + EVENT_DEADLINE;
    while !closed() {
        assert!(Instant::now() < deadline, "the pinger was never closed");
        // 125 bytes: the largest Ping payload, so each Pong is large.
        if pinger
            .ws
            .send(Message::Ping(vec![7; 125].into()))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_for("the 4008 counted", closed).await;
    assert_flows(&gw, &mut ok).await;
    assert_eq!(
        counter(&gw, r#"tickergate_disconnects_total{code="4008"}"#),
        1.0
    );
}

/// Several clients that never read are closed with 4008 while a healthy
/// client on the same symbols keeps getting data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_non_readers_are_4008_and_healthy_flows() {
    const SLOW: usize = 3;
    let gw = Arc::new(
        start(|c| {
            // Also the healthy reader's limit: a second is more than a
            // loaded machine keeps the test's reader from running.
            c.session.slow_consumer_ms = 1000;
            c.session.send_buffer_bytes = 4096;
            c.session.close_grace_ms = 60_000;
        })
        .await,
    );
    let syms: Vec<String> = tickergate::feed::sim::symbol_names(40);
    let refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();
    let mut ok = healthy(&gw).await;
    ok.subscribe(901, &refs).await;
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut c = connect_tiny_rcvbuf(gw.local_addr).await;
        c.subscribe(1, &refs).await;
        slow.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (gw, stop, syms) = (gw.clone(), stop.clone(), syms.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for s in &syms {
                    let bid = format!("{}.{:02}", 100 + i % 100, i % 100);
                    let ask = format!("{}.{:02}", 200 + i % 100, i % 100);
                    publish(&gw, s, quote(&bid, "1", &ask, "1"));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    ok.read_until_done("every non-reader closed", || {
        counter(&gw, r#"tickergate_disconnects_total{code="4008"}"#) >= SLOW as f64
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_flows(&gw, &mut ok).await;
    for mut c in slow {
        assert_eq!(c.recv_close().await, Some(4008));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_not_allowed_is_403() {
    let gw = start(|c| c.server.allowed_origins = vec!["https://good.example".into()]).await;
    let mut ok = healthy(&gw).await;
    let addr = gw.local_addr;
    let (st, body) = http_request(
        addr,
        &upgrade_request(addr, "Origin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["type"], "error");
    assert_eq!(
        counter(&gw, "tickergate_origin_rejected_total"),
        1.0,
        "metric counts the refusal"
    );
    // A listed origin (any case) upgrades; so does a client with no Origin.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(upgrade_request(addr, "Origin: HTTPS://good.example\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let (_c, _) = Client::connect_welcomed(addr).await;
    // The gateway's own page (the board at `/`): its origin is the Host.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let own = format!("Origin: http://{addr}\r\n");
    s.write_all(upgrade_request(addr, &own).as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "same origin upgrades");
    // Another port on the same host is another origin.
    let other = format!("Origin: http://{}:1\r\n", addr.ip());
    let (st, _) = http_request(addr, &upgrade_request(addr, &other)).await;
    assert_eq!(st, 403, "another port is another origin");
    assert_flows(&gw, &mut ok).await;
}

/// A client that completes the handshake and then never reads nor answers
/// pings: pinged after `ping_interval_ms`, closed 1008 after
/// `idle_timeout_ms`. A reading client (tungstenite answers pings) on the
/// same gateway outlives the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_that_never_answers_pings_is_1008() {
    let gw = start(|c| {
        c.session.ping_interval_ms = 200;
        // The healthy client has 1.3 s to answer each Ping: more than a
        // loaded machine keeps the test's reader from running.
        c.session.idle_timeout_ms = 1500;
        c.session.heartbeat_ms = 100;
    })
    .await;
    let mut ok = healthy(&gw).await;
    let addr = gw.local_addr;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(upgrade_request(addr, "").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    // The healthy client keeps reading (and so answering pings).
    let deadline = Instant::now() + EVENT_DEADLINE;
    while counter(&gw, r#"tickergate_disconnects_total{code="1008"}"#) < 1.0 {
        assert!(Instant::now() < deadline, "idle client was never closed");
        ok.next_msg().await;
    }
    // Stay past another idle timeout: the healthy client is still served.
    while started.elapsed() < Duration::from_millis(3200) {
        ok.next_msg().await;
    }
    assert_flows(&gw, &mut ok).await;
    assert_eq!(
        counter(&gw, r#"tickergate_disconnects_total{code="1008"}"#),
        1.0
    );
    let buf = read_until_closed(&mut raw).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 101"), "{text:?}");
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let frames = server_frames(&buf[head_end..]);
    assert!(
        frames.iter().any(|(op, _)| *op == 0x9),
        "no ping: {frames:?}"
    );
    let close = frames
        .iter()
        .find(|(op, _)| *op == 0x8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1008);
    assert!(String::from_utf8_lossy(&close.1[2..]).contains("idle"));
}

/// A gateway that stalls longer than `idle_timeout_ms` (every worker
/// blocked, as in an overloaded or paused process) does not close its
/// clients for the silence it caused: when it runs again it pings them and
/// gives them their time to answer, and it reads what they sent before it
/// decides. (Before, every client was closed 1008 at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_does_not_close_clients_for_its_own_silence() {
    let gw = start(|c| {
        c.session.ping_interval_ms = 200;
        // 1.3 s to answer a Ping: more than a loaded machine keeps the
        // test's reader from running.
        c.session.idle_timeout_ms = 1500;
        c.session.heartbeat_ms = 100;
    })
    .await;
    let mut ok = healthy(&gw).await;
    // Served and pinged for a while (tungstenite answers pings as it reads).
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(500) {
        ok.next_msg().await;
    }
    // Longer than the idle timeout without the gateway running.
    stall_workers(2000).await;
    // Running again: the client, reading as before, is served past another
    // two idle timeouts.
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_millis(3200) {
        ok.next_msg().await;
    }
    assert_flows(&gw, &mut ok).await;
    assert_eq!(
        counter(&gw, r#"tickergate_disconnects_total{code="1008"}"#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_http_is_400() {
    let gw = start(|_| {}).await;
    let mut ok = healthy(&gw).await;
    let mut s = TcpStream::connect(gw.local_addr).await.unwrap();
    let _ = s
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n")
        .await;
    let resp = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&resp);
    assert!(
        resp.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text:?}"
    );
    let (st, _) = http_request(gw.local_addr, "NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(st, 400);
    assert_flows(&gw, &mut ok).await;
}
