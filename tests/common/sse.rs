//! A Server-Sent Events client on the raw stream (HTTP/1.1, chunked), for
//! `GET /v1/sse`: the response head, then events one by one.

use super::EVENT_DEADLINE;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Sse {
    s: TcpStream,
    buf: Vec<u8>,
    /// The response head, once read.
    pub head: String,
    /// Event text read but not yet taken.
    text: String,
}

impl Sse {
    /// Sends the request (`extra`: more header lines, each ending in
    /// `\r\n`); returns the client after the response head, or the status
    /// and body of a refusal.
    pub async fn open(addr: SocketAddr, query: &str, extra: &str) -> Result<Sse, (u16, String)> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /v1/sse?{query} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut c = Sse {
            s,
            buf: Vec::new(),
            head: String::new(),
            text: String::new(),
        };
        let end = c.read_until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&c.buf[..end]).into_owned();
        c.buf.drain(..end + 4);
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        if status != 200 {
            // The error body: Content-Length bytes.
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while c.buf.len() < len {
                c.fill().await;
            }
            return Err((status, String::from_utf8_lossy(&c.buf[..len]).into_owned()));
        }
        c.head = head;
        Ok(c)
    }

    async fn fill(&mut self) {
        let mut tmp = [0u8; 8192];
        let n = tokio::time::timeout(EVENT_DEADLINE, self.s.read(&mut tmp))
            .await
            .expect("SSE data in time")
            .unwrap();
        assert!(n > 0, "SSE stream ended");
        self.buf.extend_from_slice(&tmp[..n]);
    }

    async fn read_until(&mut self, pat: &[u8]) -> usize {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                return i;
            }
            self.fill().await;
        }
    }

    /// The next chunk's payload (chunked transfer coding).
    async fn chunk(&mut self) -> String {
        let end = self.read_until(b"\r\n").await;
        let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..end]).unwrap().trim(), 16)
            .unwrap();
        self.buf.drain(..end + 2);
        assert!(size > 0, "the SSE stream ended");
        while self.buf.len() < size + 2 {
            self.fill().await;
        }
        let data = String::from_utf8(self.buf[..size].to_vec()).unwrap();
        self.buf.drain(..size + 2);
        data
    }

    /// The next event or comment, as its lines' text (without the blank
    /// line that ends it).
    pub async fn event(&mut self) -> String {
        while !self.text.contains("\n\n") {
            let c = self.chunk().await;
            self.text.push_str(&c);
        }
        let (event, rest) = self.text.split_once("\n\n").unwrap();
        let (event, rest) = (event.to_string(), rest.to_string());
        self.text = rest;
        event
    }

    /// The next event's frame (its `data:` as JSON), skipping comments and
    /// `retry:`.
    pub async fn frame(&mut self) -> Vec<Value> {
        loop {
            let e = self.event().await;
            if let Some(data) = e.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(data).unwrap();
                return v.as_array().unwrap().clone();
            }
        }
    }
}
