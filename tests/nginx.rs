//! The gateway behind a real nginx (Debian `nginx-light`), configured from
//! the shipped example `deploy/nginx.conf` (TLS lines dropped, ports set):
//! WebSocket subscriptions and SSE work through it, the per-address limit
//! sees the forwarded client address (`server.trusted_proxies`), and a
//! forged `X-Forwarded-For` is ignored, whether it comes through the proxy
//! or straight from an untrusted client.
//!
//! Ignored by default: `scripts/test` installs nginx-light and runs it with
//! `--include-ignored`. nginx is started by the test on a free port (its
//! workers as `nobody` when the test runs as root) and stopped by its PID.

mod common;

use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn nginx_bin() -> PathBuf {
    let env = std::env::var_os("NGINX_BIN").map(PathBuf::from);
    env.into_iter()
        .chain([
            PathBuf::from("/usr/sbin/nginx"),
            PathBuf::from("/usr/bin/nginx"),
        ])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx not found (Debian package nginx-light). Run scripts/test, or set NGINX_BIN"
            )
        })
}

/// nginx, stopped (gracefully, by PID: its master then stops its workers)
/// when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful shutdown; the master takes its workers along.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// deploy/nginx.conf as a test server: plain HTTP on `port`, the gateway
/// at `gateway`, files in `dir`.
fn config(dir: &std::path::Path, port: u16, gateway: SocketAddr) -> String {
    let example = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
    )
    .unwrap();
    let mut body = String::new();
    for line in example.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || t.starts_with("ssl_") || t.starts_with("listen [::]") {
            continue;
        }
        if t.starts_with("listen 443") {
            body.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            continue;
        }
        if t.starts_with("server 127.0.0.1:8080") {
            body.push_str(&format!("    server {gateway};\n"));
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    assert!(
        body.contains("location = /v1/ws"),
        "the example has its locations"
    );
    let d = dir.display();
    let root = unsafe { libc::geteuid() } == 0;
    format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n{body}}}\n",
        user = if root { "user nobody nogroup;\n" } else { "" },
    )
}

async fn start_nginx(gateway: SocketAddr) -> (Nginx, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("tg-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(&dir, port, gateway)).unwrap();
    let child = Command::new(nginx_bin())
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let mut n = Nginx { child, dir };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if let Ok(Some(st)) = n.child.try_wait() {
            let log = std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({st}): {log}");
        }
        if TcpStream::connect(addr).await.is_ok() {
            return (n, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not listen on {addr}");
}

/// A TCP connection from the loopback address `from` to `to`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A WebSocket client from `from` through `to`, sending `xff` as its own
/// `X-Forwarded-For` when given.
async fn ws_from(from: &str, to: SocketAddr, xff: Option<&str>) -> Client {
    let tcp = tcp_from(from, to).await;
    let mut req = format!("ws://{to}/v1/ws").into_client_request().unwrap();
    if let Some(x) = xff {
        req.headers_mut()
            .insert("x-forwarded-for", x.parse().unwrap());
    }
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    Client::from_ws(ws)
}

/// The first message's type, or the close code when the server closes.
async fn first(c: &mut Client) -> Result<String, u16> {
    loop {
        let m = tokio::time::timeout(EVENT_DEADLINE, c.ws.next())
            .await
            .expect("a frame in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                return Ok(v[0]["type"].as_str().unwrap_or("").to_string());
            }
            Some(Ok(Message::Close(f))) => return Err(f.map_or(0, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx: run scripts/test"]
async fn behind_nginx_limits_see_the_forwarded_address_and_forgeries_are_ignored() {
    let gw = start(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.server.max_connections_per_ip = 1;
    })
    .await;
    let (_nginx, proxy) = start_nginx(gw.local_addr).await;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.1400", "200"));

    // 127.0.0.2 through nginx, with a forged header naming someone else.
    let mut a = ws_from("127.0.0.2", proxy, Some("203.0.113.9")).await;
    assert_eq!(first(&mut a).await, Ok("welcome".into()));
    a.subscribe(1, &["AAPL"]).await;
    let q = a.recv_type("quote").await;
    assert_eq!(q["bid"], "189.1200", "a snapshot through nginx, byte-exact");
    // A second session of 127.0.0.2 through nginx: the address is full.
    // The forged 203.0.113.9 did not count: the limit saw 127.0.0.2.
    let mut b = ws_from("127.0.0.2", proxy, None).await;
    assert_eq!(first(&mut b).await, Err(1013));
    // Another client behind the same proxy is not nginx's address.
    let mut c = ws_from("127.0.0.3", proxy, None).await;
    assert_eq!(first(&mut c).await, Ok("welcome".into()));
    // Straight to the gateway, untrusted, claiming to be 127.0.0.2 (full):
    // the header is not believed, so it is 127.0.0.4 and welcome.
    let mut d = ws_from("127.0.0.4", gw.local_addr, Some("127.0.0.2")).await;
    assert_eq!(first(&mut d).await, Ok("welcome".into()));
    assert_eq!(
        metric(&metrics_text(&gw), "tickergate_ip_sessions_full_total"),
        1.0
    );

    // Server-Sent Events through nginx, unbuffered: the first event
    // arrives while the stream stays open.
    let mut s = tcp_from("127.0.0.5", proxy).await;
    s.write_all(b"GET /v1/sse?symbols=AAPL HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"type\":\"welcome\"") {
        let n = tokio::time::timeout(EVENT_DEADLINE, s.read(&mut buf))
            .await
            .expect("an SSE event through nginx in time")
            .unwrap();
        assert!(
            n > 0,
            "nginx closed the stream: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{text}"
    );
}
