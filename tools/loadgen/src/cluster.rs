//! The scale-out topology for the load tools (issue 18): a `nats-server`
//! child with JetStream in a temporary store, gateway configs for the
//! ingest and edge roles, and a raw NATS publisher (the protocol's `PUB`
//! lines written straight to a socket, so the publisher costs little next
//! to what it drives).

use crate::{metric_text, BoxError};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The subject prefix of every cluster the tools start.
pub const PREFIX: &str = "tickergate";

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `nats-server -js` child on free ports with a fresh store directory;
/// killed and its store removed on drop.
pub struct NatsServer {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub monitor: u16,
    store: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server` (`$NATS_SERVER` or `nats-server` on PATH,
    /// else /usr/sbin/nats-server), under `taskset -c CORE` if `core` is
    /// given, and waits until it accepts connections.
    pub fn start(core: Option<usize>) -> Result<NatsServer, BoxError> {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| {
            if Command::new("nats-server")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                "nats-server".into()
            } else {
                "/usr/sbin/nats-server".into()
            }
        });
        let (port, monitor) = (free_port()?, free_port()?);
        let store = std::env::temp_dir().join(format!(
            "tickergate-bench-nats-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&store)?;
        let mut cmd = match core {
            Some(c) if crate::have_taskset() => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(&bin);
                cmd
            }
            _ => Command::new(&bin),
        };
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-js", "--store_dir"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let mut s = NatsServer {
            pid: child.id(),
            child,
            port,
            monitor,
            store,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("nats-server exited at start: {st}").into());
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("nats-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The `[cluster]` table of a node of `role` ("ingest", "edge") on
/// `nats_url`, with the tools' prefix, plus `extra` lines (`key = value`).
pub fn cluster_toml(role: &str, nats_url: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "\n[cluster]\nrole = \"{role}\"\nnats_url = \"{nats_url}\"\nsubject_prefix = \"{PREFIX}\"\n"
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The sum of every series of `name` (all label sets) in a `/metrics`
/// text; 0 when absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if rest.starts_with('{') {
                &rest[rest.find('}')? + 1..]
            } else {
                rest
            };
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .sum()
}

/// Reads `name` (summed over labels) from `addr`'s `/metrics` until
/// `ok(value)` or `timeout`; the last value read.
pub fn wait_metric(
    addr: SocketAddr,
    name: &str,
    ok: impl Fn(f64) -> bool,
    timeout: Duration,
) -> Result<f64, BoxError> {
    let t0 = Instant::now();
    loop {
        let v = metric_sum(&metric_text(addr)?, name);
        if ok(v) {
            return Ok(v);
        }
        if t0.elapsed() > timeout {
            return Err(format!("{name} = {v} at {addr} after {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A NATS connection speaking the protocol by hand: `CONNECT`, then
/// whatever `PUB` lines the caller writes. A reader thread counts the
/// server's `PING`s (answered by [`RawNats::pongs`] before the next
/// write) and prints `-ERR`.
pub struct RawNats {
    pub sock: TcpStream,
    pings: Arc<AtomicUsize>,
}

impl RawNats {
    pub fn connect(addr: SocketAddr, name: &str) -> Result<RawNats, BoxError> {
        let sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        let mut r = BufReader::new(sock.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if !line.starts_with("INFO ") {
            return Err(format!("NATS said {line:?}, not INFO").into());
        }
        let mut w = sock.try_clone()?;
        write!(
            w,
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"{name}\",\"lang\":\"raw\",\"version\":\"0\",\"protocol\":1,\"headers\":true}}\r\nPING\r\n"
        )?;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err("NATS closed the connection at CONNECT".into());
            }
            if line.starts_with("PONG") {
                break;
            }
            if line.starts_with("-ERR") {
                return Err(format!("NATS: {}", line.trim()).into());
            }
        }
        let pings = Arc::new(AtomicUsize::new(0));
        let p = pings.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.starts_with("PING") {
                            p.fetch_add(1, Ordering::Relaxed);
                        } else if line.starts_with("-ERR") {
                            eprintln!("NATS: {}", line.trim());
                        }
                    }
                }
            }
        });
        Ok(RawNats { sock, pings })
    }

    /// Appends a `PONG` to `buf` for each `PING` heard since last time.
    pub fn pongs(&self, buf: &mut Vec<u8>) {
        for _ in 0..self.pings.swap(0, Ordering::Relaxed) {
            buf.extend_from_slice(b"PONG\r\n");
        }
    }

    /// Appends `PUB subject len\r\npayload\r\n` to `buf`.
    pub fn pub_line(buf: &mut Vec<u8>, subject: &str, payload: &[u8]) {
        buf.extend_from_slice(b"PUB ");
        buf.extend_from_slice(subject.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(payload.len().to_string().as_bytes());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(payload);
        buf.extend_from_slice(b"\r\n");
    }

    /// A feed status as an ingest node publishes it
    /// (`<prefix>.status.<feed>`), stamped now.
    pub fn status_line(buf: &mut Vec<u8>, feed: &str, symbols: &[String], interval_ms: u64) {
        let body = serde_json::json!({
            "feed": feed,
            "node": "bench-blaster",
            "epoch": "bench",
            "up": true,
            "symbols": symbols,
            "interval_ms": interval_ms,
            "ts": now_ns(),
            // It publishes whole rounds to an edge that follows them.
            "rounds": true,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Self::pub_line(buf, &format!("{PREFIX}.status.{feed}"), &body);
    }

    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(buf)
    }
}

/// One round of quotes, one per symbol, as an ingest node publishes it:
/// each quote on its symbol's subject (`PUB` lines), or the round whole
/// as round messages (`<prefix>.r.bench-blaster`, quotes one per line,
/// cut as [`tickergate::cluster::wire::chunk_round`] cuts them, the first
/// and last of several marked with `Tg-Round`), which an edge following
/// every quote takes. Built once, then each round only its digits are
/// rewritten in place (`seq` is 10 digits from 1,000,000,000 on, `ts`
/// and `gw_ts` 19), so a round costs a copy.
pub struct QuoteRound {
    pub buf: Vec<u8>,
    /// Offsets of each message's seq, ts and gw_ts digits.
    at: Vec<(usize, usize, usize)>,
    pub round: u64,
}

impl QuoteRound {
    pub const SEQ0: u64 = 1_000_000_000;

    pub fn new(symbols: &[String], whole: bool) -> QuoteRound {
        use tickergate::cluster::wire::{chunk_round, round_quotes, Round, ROUND_CHUNK_BYTES};
        let t = now_ns();
        let quotes: Vec<(String, String)> = symbols
            .iter()
            .map(|s| {
                let head = format!(r#"{{"type":"quote","symbol":"{s}","seq":"#);
                let payload = format!(
                    r#"{head}{seq},"bid":"101.25","bid_size":"300","ask":"101.27","ask_size":"200","ts":{t},"gw_ts":{t}}}"#,
                    seq = Self::SEQ0
                );
                (head, payload)
            })
            .collect();
        // Where a quote's digits are, from the start of its text.
        let digits = |head: &str, payload: &str| {
            (
                head.len(),
                payload.find(r#""ts":"#).unwrap_or(0) + 5,
                payload.find(r#""gw_ts":"#).unwrap_or(0) + 8,
            )
        };
        let mut buf = Vec::new();
        let mut at = Vec::with_capacity(symbols.len());
        if !whole {
            for (s, (head, payload)) in symbols.iter().zip(&quotes) {
                let start = buf.len();
                let subject = format!("{PREFIX}.q.{}", tickergate::cluster::subject::encode(s));
                RawNats::pub_line(&mut buf, &subject, payload.as_bytes());
                let body = start + buf[start..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
                let (seq, ts, gw) = digits(head, payload);
                at.push((body + seq, body + ts, body + gw));
            }
            return QuoteRound { buf, at, round: 0 };
        }
        // Cut as an ingest cuts its rounds; each message's lines are the
        // quotes in order.
        let mut chunks = Vec::new();
        chunk_round(
            quotes.iter().map(|(_, p)| p.as_bytes()),
            ROUND_CHUNK_BYTES,
            &mut chunks,
        );
        let subject = format!("{PREFIX}.r.bench-blaster");
        let mut next = quotes.iter();
        let n = chunks.len();
        for (k, body) in chunks.iter().enumerate() {
            let header = Round::of(k, n)
                .map(|r| format!("NATS/1.0\r\n{}: {}\r\n\r\n", Round::HEADER, r.as_str()));
            match &header {
                None => {
                    buf.extend_from_slice(format!("PUB {subject} {}\r\n", body.len()).as_bytes())
                }
                Some(h) => buf.extend_from_slice(
                    format!("HPUB {subject} {} {}\r\n{h}", h.len(), h.len() + body.len())
                        .as_bytes(),
                ),
            }
            let start = buf.len();
            buf.extend_from_slice(body);
            buf.extend_from_slice(b"\r\n");
            let mut line = start;
            for _ in round_quotes(body) {
                let Some((head, payload)) = next.next() else {
                    break;
                };
                let (seq, ts, gw) = digits(head, payload);
                at.push((line + seq, line + ts, line + gw));
                line += payload.len() + 1;
            }
        }
        QuoteRound { buf, at, round: 0 }
    }

    /// Quotes per round.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The next round: every symbol's seq one higher, stamped now.
    pub fn next_round(&mut self) -> &[u8] {
        self.round += 1;
        let seq = (Self::SEQ0 + self.round).to_string();
        let t = now_ns().to_string();
        for &(s, ts, gw) in &self.at {
            self.buf[s..s + 10].copy_from_slice(seq.as_bytes());
            self.buf[ts..ts + 19].copy_from_slice(t.as_bytes());
            self.buf[gw..gw + 19].copy_from_slice(t.as_bytes());
        }
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_valid_quotes_with_rising_seqs() {
        let syms: Vec<String> = vec!["SIM0".into(), "AAPL".into()];
        let mut r = QuoteRound::new(&syms, false);
        let text = String::from_utf8(r.next_round().to_vec()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], format!("PUB {PREFIX}.q.SIM0 {}", lines[1].len()));
        let q = tickergate::cluster::wire::decode_quote(lines[1].as_bytes()).unwrap();
        assert_eq!((q.symbol, q.seq), ("SIM0", QuoteRound::SEQ0 + 1));
        assert!(q.quote.gw_ts > 0);
        let text = String::from_utf8(r.next_round().to_vec()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        let q = tickergate::cluster::wire::decode_quote(lines[3].as_bytes()).unwrap();
        assert_eq!((q.symbol, q.seq), ("AAPL", QuoteRound::SEQ0 + 2));
    }

    #[test]
    fn a_whole_round_is_round_messages_of_every_quote() {
        use tickergate::cluster::wire::{decode_quote, round_quotes};
        let syms: Vec<String> = (0..1000).map(|i| format!("SIM{i}")).collect();
        let mut r = QuoteRound::new(&syms, true);
        r.next_round();
        let buf = r.next_round().to_vec();
        // (mark, quotes) of each message, read as nats-server would.
        let mut msgs = Vec::new();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let line = std::str::from_utf8(&rest[..eol]).unwrap().to_string();
            rest = &rest[eol + 2..];
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f[1], format!("{PREFIX}.r.bench-blaster"));
            let (hdr, total): (usize, usize) = match f[0] {
                "PUB" => (0, f[2].parse().unwrap()),
                "HPUB" => (f[2].parse().unwrap(), f[3].parse().unwrap()),
                other => panic!("{other}"),
            };
            let header = std::str::from_utf8(&rest[..hdr]).unwrap().to_string();
            let body = &rest[hdr..total];
            assert_eq!(&rest[total..total + 2], b"\r\n");
            assert!(body.len() <= tickergate::cluster::wire::ROUND_CHUNK_BYTES);
            let quotes: Vec<(String, u64)> = round_quotes(body)
                .map(|l| {
                    let q = decode_quote(l).unwrap();
                    (q.symbol.to_string(), q.seq)
                })
                .collect();
            msgs.push((header, quotes));
            rest = &rest[total + 2..];
        }
        assert!(msgs.len() > 2, "{} messages", msgs.len());
        assert!(msgs[0].0.contains("Tg-Round: open"));
        assert!(msgs[msgs.len() - 1].0.contains("Tg-Round: end"));
        assert!(msgs[1..msgs.len() - 1].iter().all(|m| m.0.is_empty()));
        let all: Vec<(String, u64)> = msgs.into_iter().flat_map(|m| m.1).collect();
        let want: Vec<(String, u64)> = syms
            .iter()
            .map(|s| (s.clone(), QuoteRound::SEQ0 + 2))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn metric_sums_over_labels() {
        let t = "# HELP x\nx_total{reason=\"old\"} 2\nx_total{reason=\"invalid\"} 3\nx_totally 9\ny 1\n";
        assert_eq!(metric_sum(t, "x_total"), 5.0);
        assert_eq!(metric_sum(t, "y"), 1.0);
        assert_eq!(metric_sum(t, "z"), 0.0);
    }
}
