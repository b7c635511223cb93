//! A fake venue: a real WebSocket server on 127.0.0.1:0 that a test drives
//! step by step (read the subscribe, answer, send recorded frames, ping,
//! go silent, drop the connection), so adapters are tested against the
//! venue's protocol over a real socket.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::EVENT_DEADLINE;

pub struct Upstream {
    pub addr: SocketAddr,
    conns: mpsc::Receiver<UpConn>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct UpConn {
    pub ws: WebSocketStream<TcpStream>,
    /// The request path the adapter connected to (e.g. `/stream`).
    pub path: String,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut path = String::new();
                    // The callback's error type is tungstenite's; nothing to shrink.
                    #[allow(clippy::result_large_err)]
                    let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              resp| {
                        path = req.uri().to_string();
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await {
                        let _ = tx.send(UpConn { ws, path }).await;
                    }
                });
            }
        });
        Upstream { addr, conns, task }
    }

    /// `ws://addr{path}`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The next adapter connection.
    pub async fn accept(&mut self) -> UpConn {
        tokio::time::timeout(EVENT_DEADLINE, self.conns.recv())
            .await
            .expect("adapter connected before the deadline")
            .expect("listener alive")
    }

    /// A connection arriving within `d`, if any (for "does not reconnect
    /// at once" checks, with `d` far below the configured backoff).
    pub async fn accept_within(&mut self, d: Duration) -> Option<UpConn> {
        tokio::time::timeout(d, self.conns.recv())
            .await
            .ok()
            .flatten()
    }
}

impl UpConn {
    /// The next text message from the adapter (pings/pongs skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            let m = tokio::time::timeout(EVENT_DEADLINE, self.ws.next())
                .await
                .expect("adapter sent something before the deadline")
                .expect("connection open")
                .expect("valid frame");
            match m {
                Message::Text(t) => return t.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame from adapter: {other:?}"),
            }
        }
    }

    pub async fn recv_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.recv_text().await).expect("adapter sends JSON")
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send to adapter");
    }

    /// Sends a ping and waits for the adapter's pong with the same payload.
    pub async fn ping_pong(&mut self, payload: &[u8]) {
        self.ws
            .send(Message::Ping(payload.to_vec().into()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(EVENT_DEADLINE, self.ws.next())
                .await
                .expect("pong before the deadline")
                .expect("open")
                .expect("valid");
            if let Message::Pong(p) = m {
                assert_eq!(&p[..], payload);
                return;
            }
        }
    }

    /// Waits until the adapter closes or drops this connection.
    pub async fn wait_closed(&mut self) {
        loop {
            match tokio::time::timeout(EVENT_DEADLINE, self.ws.next())
                .await
                .expect("adapter closed before the deadline")
            {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// The `frame` texts of a recorded sample file under `feeds/` (see
/// feeds/README.md), in order.
pub fn sample_frames(rel: &str) -> Vec<String> {
    let path = format!("{}/feeds/{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: bad line {l:?}: {e}"));
            v["frame"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no frame in {l}"))
                .to_string()
        })
        .collect()
}
