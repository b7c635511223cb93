//! Scale-out over NATS (issue 18) with real processes: a real
//! `nats-server` with JetStream, and the `tickergate` binary as ingest and
//! edge nodes (`[cluster] role`), each a child process on port 0 that a
//! test can SIGKILL and start again.
//!
//! * Two edges serve the same quotes with the ingest's seqs and the
//!   cluster's epoch (`two_edges_deliver_the_ingests_quotes_and_seqs`).
//! * A killed ingest turns its symbols stale on every edge, and its
//!   restart turns them live with seqs going on from the stream
//!   (`killed_ingest_goes_stale_and_its_restart_goes_on_numbering`).
//! * A killed NATS server turns the edges stale and not ready; its restart
//!   on the same port and store brings them back, with a quote accepted
//!   during the outage (`nats_outage_goes_stale_and_recovers_on_restart`).
//! * An edge follows a symbol on NATS only while it has a local subscriber,
//!   under the encoded subject, as NATS's own `/subsz` shows
//!   (`edge_subscribes_on_nats_only_while_clients_hold_a_symbol`).
//! * Entitlements hold for what comes over NATS: WebSocket by name and by
//!   `*`, SSE (`entitlements_hold_on_an_edge`).
//! * `--check-config` refuses cluster configs naming the field
//!   (`check_config_refuses_bad_cluster_configs`, needs no NATS).
//!
//! Those that need `nats-server` are ignored by default: `scripts/test`
//! installs it (Debian package `nats-server`) and runs them with
//! `--include-ignored`. Each test runs its own `nats-server` (ports chosen
//! by the server, store in the test's scratch directory) and its own
//! subject prefix, so tests run in parallel. Quotes come from an HTTP
//! ingest feed (`kind = "http"`), so every value and seq is known; waits
//! are for events, bounded by deadlines that only turn a hang into a
//! failure. On a failure the tail of every process's log is printed.

#[path = "../common/mod.rs"]
mod common;
mod failover;
mod interest;
mod rounds;
mod serving;
mod setup;

use common::sse::Sse;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tickergate::auth::token_hash_hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_tickergate");
/// The HTTP ingest feed's key (the ingest node's `kind = "http"` feed).
const PUSH_KEY: &str = "cluster-test-push-key";
/// Bound on a process start or a state a test waits for; never asserted on.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

// ------------------------------------------------------------ processes

/// A directory for one test's configs, logs and NATS store; removed when
/// the test passes, kept (and named) when it fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("tg-cluster-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs and configs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// `nats-server` from PATH, else Debian's /usr/sbin (not on every PATH).
fn nats_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let p = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    assert!(
        p.is_file(),
        "nats-server is not in PATH or /usr/sbin: run scripts/test (it installs the Debian package nats-server)"
    );
    p
}

/// A `nats-server` with JetStream, killed (by PID) when dropped.
struct NatsServer {
    proc: Option<Proc>,
    port: u16,
    monitor: u16,
    store: PathBuf,
    log: PathBuf,
    /// More arguments for every start (auth).
    args: Vec<String>,
}

impl NatsServer {
    /// [`NatsServer::start`] with more server arguments.
    async fn start_with(dir: &Path, args: &[&str]) -> NatsServer {
        Self::start_args(dir, args.iter().map(|a| a.to_string()).collect()).await
    }

    /// Starts on ports the server picks itself (`-1`, read back from its
    /// ports file: no window in which another process takes them).
    async fn start(dir: &Path) -> NatsServer {
        Self::start_args(dir, Vec::new()).await
    }

    async fn start_args(dir: &Path, args: Vec<String>) -> NatsServer {
        let ports_dir = dir.join("nats-ports");
        std::fs::create_dir_all(&ports_dir).unwrap();
        let mut n = NatsServer {
            proc: None,
            port: 0,
            monitor: 0,
            store: dir.join("nats-store"),
            log: dir.join("nats-server.log"),
            args,
        };
        let ports_arg = ports_dir.to_str().unwrap().to_string();
        let proc = n.spawn(&["-p", "-1", "-m", "-1", "--ports_file_dir", &ports_arg]);
        let file = ports_dir.join(format!("nats-server_{}.ports", proc.0.id()));
        n.proc = Some(proc);
        let (port, monitor) = eventually("nats-server's ports file", || {
            let file = file.clone();
            async move {
                let v: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
                let port_of = |key: &str| -> Option<u16> {
                    v[key][0].as_str()?.rsplit(':').next()?.parse().ok()
                };
                Some((port_of("nats")?, port_of("monitoring")?))
            }
        })
        .await;
        (n.port, n.monitor) = (port, monitor);
        n.wait_healthy().await;
        n
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new(nats_bin())
            .args(["-a", "127.0.0.1", "-js", "--store_dir"])
            .arg(&self.store)
            .args(&self.args)
            .args(args)
            .stdout(Stdio::null())
            .stderr(append(&self.log))
            .spawn()
            .expect("spawn nats-server");
        Proc(child)
    }

    async fn wait_healthy(&self) {
        let mon = self.monitor;
        eventually("nats-server /healthz 200", || async move {
            matches!(nats_get(mon, "/healthz").await, Some((200, _))).then_some(())
        })
        .await;
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        drop(self.proc.take().expect("nats-server is running"));
    }

    /// Starts again on the same ports and store directory.
    async fn restart(&mut self) {
        assert!(self.proc.is_none(), "kill it first");
        let (p, m) = (self.port.to_string(), self.monitor.to_string());
        self.proc = Some(self.spawn(&["-p", &p, "-m", &m]));
        self.wait_healthy().await;
    }

    /// The subjects a client connection named `name` (`[cluster] node`)
    /// subscribes to that start with `prefix`, sorted, as the server
    /// itself lists them (`/connz?subs=1`); empty while it is not
    /// connected.
    /// The quote subjects (`q`, and `r`: every ingest's rounds) the
    /// connection `name` subscribes to, under the subject prefix `cluster`.
    async fn quotes_followed_by(&self, name: &str, cluster: &str) -> Vec<String> {
        let mut subs = self.subjects_of(name, &format!("{cluster}.q.")).await;
        subs.extend(self.subjects_of(name, &format!("{cluster}.r.")).await);
        subs
    }

    async fn subjects_of(&self, name: &str, prefix: &str) -> Vec<String> {
        let (st, body) = nats_get(self.monitor, "/connz?subs=1&limit=1000")
            .await
            .expect("nats-server monitoring answers");
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("connz is JSON");
        let conn = v["connections"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name));
        let mut subs: Vec<String> = conn
            .and_then(|c| c["subscriptions_list"].as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str())
                    .filter(|s| s.starts_with(prefix))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        subs.sort();
        subs
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server log (last lines) ----\n{}",
                tail(&self.log, 30)
            );
        }
    }
}

/// GET on nats-server's monitoring port (HTTP/1.0: the whole body, no
/// chunks); `None` while nothing listens.
async fn nats_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A `tickergate` node: the binary with `--config <file> --listen
/// 127.0.0.1:0`, its stderr in a log file, killed (by PID) when dropped.
struct Node {
    name: String,
    proc: Option<Proc>,
    addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Node {
    async fn start(dir: &Path, name: &str, toml: &str) -> Node {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).unwrap();
        let mut n = Node {
            name: name.into(),
            proc: None,
            addr: "0.0.0.0:0".parse().unwrap(),
            config,
            log: dir.join(format!("{name}.log")),
        };
        n.spawn().await;
        n
    }

    /// Starts the binary and reads the address it prints (an ingest prints
    /// it once it has NATS and its seqs; an edge once it has NATS).
    async fn spawn(&mut self) {
        let (config, log) = (self.config.clone(), self.log.clone());
        let (proc, addr) = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["--listen", "127.0.0.1:0"])
                // RUST_LOG=tickergate=debug for more in the logs.
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdout(Stdio::piped())
                .stderr(append(&log))
                .spawn()
                .expect("spawn tickergate");
            let stdout = child.stdout.take().unwrap();
            let proc = Proc(child);
            let (tx, rx) = std::sync::mpsc::channel();
            // Reads the address (an edge prints its WebSocket URL, an
            // ingest node, which serves no clients, its metrics URL), then
            // keeps draining so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let t = line.trim();
                    let url = t.strip_prefix("WebSocket : ws://").or_else(|| {
                        t.strip_prefix("metrics")
                            .and_then(|r| r.trim_start().strip_prefix(": http://"))
                    });
                    if let Some(rest) = url {
                        let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                    }
                }
            });
            match rx.recv_timeout(DEADLINE) {
                Ok(a) => (proc, a.parse::<SocketAddr>().expect("a socket address")),
                Err(e) => panic!(
                    "{} did not print its address ({e}); log:\n{}",
                    config.display(),
                    tail(&log, 30)
                ),
            }
        })
        .await
        .unwrap();
        self.proc = Some(proc);
        self.addr = addr;
    }

    /// SIGKILL, and reaped: no shutdown, no last status.
    fn kill(&mut self) {
        drop(self.proc.take().expect("node is running"));
    }

    /// Starts again with the same config (on another port).
    async fn restart(&mut self) {
        assert!(self.proc.is_none(), "kill it first");
        self.spawn().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.proc.take());
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (last lines) ----\n{}",
                self.name,
                tail(&self.log, 30)
            );
        }
    }
}

/// Polls `f` until it gives a value; fails after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

// -------------------------------------------------------------- configs

/// Settings every node of these tests shares: small, and fast to notice
/// a silent ingest (status every 100 ms, stale after 500 ms).
fn common_toml(role: &str, nats: &NatsServer, prefix: &str) -> String {
    format!(
        r#"[server]
worker_threads = 1
shards = 1
conn_rate_per_ip = 1000
conn_burst_per_ip = 1000
log_summary_secs = 0

[cluster]
role = "{role}"
nats_url = "{url}"
subject_prefix = "{prefix}"
status_interval_ms = 100
stale_after_ms = 500
subscribe_batch_ms = 20
"#,
        url = nats.url()
    )
}

/// An ingest node whose one feed is HTTP ingest (`push`) for `symbols`.
fn ingest_toml(nats: &NatsServer, prefix: &str, symbols: &[&str]) -> String {
    format!(
        r#"{}node = "ingest-{prefix}"

[[feeds]]
kind = "http"
name = "push"
key_sha256 = "{}"
symbols = {}
stale_after_ms = 0
"#,
        common_toml("ingest", nats, prefix),
        token_hash_hex(PUSH_KEY),
        json!(symbols)
    )
}

/// An ingest's config with `lines` added to its `[cluster]` table.
fn with_cluster(ingest: String, lines: &str) -> String {
    ingest.replacen("[[feeds]]", &format!("{lines}\n[[feeds]]"), 1)
}

/// An edge node; `extra` is appended (`[[auth.keys]]`, ...).
fn edge_toml(nats: &NatsServer, prefix: &str, linger_ms: u64, extra: &str) -> String {
    format!(
        "{}linger_ms = {linger_ms}\n{extra}",
        common_toml("edge", nats, prefix)
    )
}

// --------------------------------------------------------------- quotes

/// A full quote line for HTTP ingest.
fn line(sym: &str, bid: &str, ask: &str) -> Value {
    json!({"symbol": sym, "bid": bid, "bid_size": "1", "ask": ask, "ask_size": "2"})
}

/// What the tests compare: (symbol, seq, bid, ask).
type Q = (String, u64, String, String);

fn q_of(m: &Value) -> Q {
    (
        m["symbol"].as_str().unwrap_or_default().to_string(),
        m["seq"].as_u64().unwrap_or(0),
        m["bid"].as_str().unwrap_or_default().to_string(),
        m["ask"].as_str().unwrap_or_default().to_string(),
    )
}

/// The ingest's side: pushes quotes and numbers them as the ingest must
/// (each accepted quote moves its symbol's seq on by one).
struct Pusher {
    addr: SocketAddr,
    /// Each symbol's last quote pushed.
    last: HashMap<String, Q>,
    n: u64,
}

impl Pusher {
    fn new(addr: SocketAddr) -> Pusher {
        Pusher {
            addr,
            last: HashMap::new(),
            n: 0,
        }
    }

    /// Pushes one new value for each of `syms` in one request; returns
    /// them as the clients must see them.
    async fn push(&mut self, syms: &[&str]) -> Vec<Q> {
        let mut body = String::new();
        let mut out = Vec::new();
        for sym in syms {
            self.n += 1;
            let (bid, ask) = (
                format!("{}.25", 100 + self.n),
                format!("{}.75", 100 + self.n),
            );
            body.push_str(&line(sym, &bid, &ask).to_string());
            body.push('\n');
            let q = (sym.to_string(), self.seq(sym) + 1, bid, ask);
            self.last.insert(sym.to_string(), q.clone());
            out.push(q);
        }
        let (st, r) = ingest_post(self.addr, PUSH_KEY, &body).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["accepted"], syms.len(), "{r}");
        out
    }

    fn seq(&self, sym: &str) -> u64 {
        self.last.get(sym).map_or(0, |q| q.1)
    }

    /// `sym`'s next quote is numbered `seq + 1` (an ingest that restarted
    /// numbers on past its stored value).
    fn renumber(&mut self, sym: &str, seq: u64) {
        if let Some(q) = self.last.get_mut(sym) {
            q.1 = seq;
        }
    }

    /// The last quotes pushed for `syms`, sorted.
    fn last(&self, syms: &[&str]) -> Vec<Q> {
        let mut v: Vec<Q> = syms.iter().map(|s| self.last[*s].clone()).collect();
        v.sort();
        v
    }
}

/// Reads until every quote of `want` has arrived (by symbol and bid);
/// returns every quote read meanwhile, in order (statuses and heartbeats
/// are skipped).
async fn read_quotes(c: &mut Client, want: &[Q]) -> Vec<Q> {
    let mut left: Vec<(String, String)> = want.iter().map(|q| (q.0.clone(), q.2.clone())).collect();
    let mut got = Vec::new();
    while !left.is_empty() {
        let (m, _) = c.recv_until(|m| m["type"] == "quote").await;
        let q = q_of(&m);
        left.retain(|(s, b)| !(*s == q.0 && *b == q.2));
        got.push(q);
    }
    got
}

/// Reads until a `status` of `state` has come for each of `syms`;
/// returns the quotes read meanwhile.
async fn read_status(c: &mut Client, state: &str, syms: &[&str]) -> Vec<Q> {
    let mut left: BTreeSet<String> = syms.iter().map(|s| s.to_string()).collect();
    let mut quotes = Vec::new();
    while !left.is_empty() {
        let (m, skipped) = c
            .recv_until(|m| {
                m["type"] == "status"
                    && m["state"] == state
                    && left.contains(m["symbol"].as_str().unwrap_or_default())
            })
            .await;
        quotes.extend(skipped.iter().filter(|m| m["type"] == "quote").map(q_of));
        left.remove(m["symbol"].as_str().unwrap());
    }
    quotes
}

/// Quotes per symbol, each in the order received (symbols interleave
/// differently on each node: only each symbol's own order is defined).
fn per_symbol(qs: &[Q]) -> BTreeMap<String, Vec<Q>> {
    let mut m: BTreeMap<String, Vec<Q>> = BTreeMap::new();
    for q in qs {
        m.entry(q.0.clone()).or_default().push(q.clone());
    }
    m
}

/// `got` is `want`, symbol by symbol in order.
#[track_caller]
fn assert_same(got: &[Q], want: &[Q], what: &str) {
    assert_eq!(per_symbol(got), per_symbol(want), "{what}");
}

/// Waits until the node's `/v1/symbols` (with `token`, if any) lists
/// `syms`: the edge has learned them from the ingest's status.
async fn wait_learned(addr: SocketAddr, token: Option<&str>, syms: &[&str]) {
    let path = match token {
        Some(t) => format!("/v1/symbols?token={t}"),
        None => "/v1/symbols".into(),
    };
    let want: Vec<String> = syms.iter().map(|s| s.to_string()).collect();
    eventually(&format!("{addr} to learn {syms:?}"), || {
        let (path, want) = (path.clone(), want.clone());
        async move {
            let (st, body) = http_get(addr, &path).await;
            let names: Vec<String> = serde_json::from_str(&body).ok()?;
            (st == 200 && want.iter().all(|s| names.contains(s))).then_some(())
        }
    })
    .await;
}

/// Waits until `/v1/feeds` (with `token`, if any) shows feed `push` in
/// `state`.
async fn wait_feed_state(addr: SocketAddr, token: Option<&str>, state: &str) {
    let state = state.to_string();
    let path = match token {
        Some(t) => format!("/v1/feeds?token={t}"),
        None => "/v1/feeds".into(),
    };
    eventually(&format!("feed push {state} on {addr}"), || {
        let (state, path) = (state.clone(), path.clone());
        async move {
            let (st, body) = http_get(addr, &path).await;
            let v: Value = serde_json::from_str(&body).ok()?;
            let feed = v.as_array()?.iter().find(|f| f["name"] == "push")?.clone();
            (st == 200 && feed["state"] == state.as_str()).then_some(())
        }
    })
    .await;
}

/// `/readyz`: status and body.
async fn readyz(addr: SocketAddr) -> (u16, Value) {
    let (st, body) = http_get(addr, "/readyz").await;
    (st, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The message stored in the stream `stream` under `subject`, if any
/// yet, and its `Tg-Lag` header (0 without one).
async fn stored(nats: &NatsServer, stream: &str, subject: &str) -> Option<(Value, u64)> {
    let nc = async_nats::connect(nats.url()).await.ok()?;
    let s = async_nats::jetstream::new(nc)
        .get_stream(stream)
        .await
        .ok()?;
    let m = s.direct_get_last_for_subject(subject).await.ok()?;
    let lag = tickergate::cluster::wire::read_lag(&m.headers);
    Some((serde_json::from_slice(&m.payload).ok()?, lag))
}

/// Waits until the stream of cluster `prefix` holds each of `last` (the
/// values pushed last) as its symbol's last value, as it does within
/// `last_value_interval_ms` of their going out.
async fn wait_stored(nats: &NatsServer, prefix: &str, last: &[Q]) {
    let stream = format!("{}_LAST", prefix.to_uppercase());
    for q in last {
        let subject = format!("{prefix}.lv.{}", tickergate::cluster::subject::encode(&q.0));
        let (stream, subject) = (&stream, &subject);
        eventually(&format!("{subject} at seq {}", q.1), move || async move {
            let (v, _) = stored(nats, stream, subject).await?;
            (v["seq"] == q.1).then_some(())
        })
        .await;
    }
}

/// The epoch stored in the stream `stream` under `subject`, if any yet.
async fn stored_epoch(nats: &NatsServer, stream: &str, subject: &str) -> Option<String> {
    let (v, _) = stored(nats, stream, subject).await?;
    v["epoch"].as_str().map(String::from)
}
