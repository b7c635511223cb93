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

mod common;

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

// ---------------------------------------------------------------- tests

/// An ingest and two edges, one started after the other with quotes in
/// between: both edges serve each symbol's quotes with the ingest's seqs,
/// byte-exact values and the cluster's epoch, and a new subscriber first
/// gets the last value from the stream, with its seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn two_edges_deliver_the_ingests_quotes_and_seqs() {
    const SYMS: [&str; 3] = ["AAPL", "MSFT", "BRK.B"];
    let dir = Scratch::new("identical");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t1", &SYMS)).await;
    // An ingest node serves no clients.
    for path in ["/v1/ws", "/v1/sse?symbols=AAPL"] {
        let (st, body) = http_get(ingest.addr, path).await;
        assert_eq!(st, 404, "{path}: {body}");
    }
    let ingest_addr = ingest.addr;
    eventually("the ingest ready, with NATS", || async move {
        let (st, r) = readyz(ingest_addr).await;
        (st == 200 && r["nats"] == true).then_some(())
    })
    .await;
    let mut p = Pusher::new(ingest.addr);
    // Values before any edge exists: AAPL seq 3, MSFT 2, BRK.B 1.
    for syms in [&SYMS[..], &["AAPL", "MSFT"], &["AAPL"]] {
        p.push(syms).await;
    }
    assert_eq!((p.seq("AAPL"), p.seq("MSFT"), p.seq("BRK.B")), (3, 2, 1));

    let edge_a = Node::start(&dir.0, "edge-a", &edge_toml(&nats, "t1", 1000, "")).await;
    wait_learned(edge_a.addr, None, &SYMS).await;
    wait_feed_state(edge_a.addr, None, "live").await;
    let (mut a, wa) = Client::connect_welcomed(edge_a.addr).await;
    // The edge reads each symbol's last value from the stream: value and
    // seq as the ingest numbered them, once each (once they are stored).
    let want = p.last(&SYMS);
    wait_stored(&nats, "t1", &want).await;
    a.subscribe(1, &SYMS).await;
    let mut first_a = read_quotes(&mut a, &want).await;
    first_a.sort();
    assert_eq!(first_a, want, "the last values from the stream");
    // Quotes only edge A sees: AAPL is at seq 5 when edge B comes.
    for _ in 0..2 {
        let want = p.push(&["AAPL"]).await;
        assert_eq!(read_quotes(&mut a, &want).await, want);
    }

    let edge_b = Node::start(&dir.0, "edge-b", &edge_toml(&nats, "t1", 1000, "")).await;
    wait_learned(edge_b.addr, None, &SYMS).await;
    wait_feed_state(edge_b.addr, None, "live").await;
    let (mut b, wb) = Client::connect_welcomed(edge_b.addr).await;
    let want = p.last(&SYMS);
    assert_eq!(want[0].1, 5, "AAPL: {want:?}");
    wait_stored(&nats, "t1", &want).await;
    b.subscribe(1, &SYMS).await;
    let mut first_b = read_quotes(&mut b, &want).await;
    first_b.sort();
    assert_eq!(first_b, want, "edge B starts from the ingest's seqs");

    // Every node serves the cluster's epoch, the one in the stream.
    let epoch = wa["epoch"].as_str().unwrap().to_string();
    assert_eq!(wb["epoch"], epoch.as_str(), "both edges serve one epoch");
    let nc = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(nc);
    let stream = js
        .get_stream("T1_LAST")
        .await
        .expect("the ingest made the stream");
    let info = &stream.cached_info().config;
    assert_eq!(info.max_messages_per_subject, 1, "a last-value stream");
    for s in ["t1.lv.>", "t1.status.>", "t1.epoch"] {
        assert!(info.subjects.iter().any(|x| x == s), "{:?}", info.subjects);
    }
    assert!(
        !info.subjects.iter().any(|x| x.starts_with("t1.q")),
        "live quotes are not stored: {:?}",
        info.subjects
    );
    let stored = stream
        .direct_get_last_for_subject("t1.epoch")
        .await
        .expect("the epoch is stored");
    let stored: Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(stored["epoch"], epoch.as_str(), "{stored}");
    // The stream holds BRK.B's last value under its encoded subject.
    let brk = stream
        .direct_get_last_for_subject("t1.lv.BRK~2EB")
        .await
        .expect("BRK.B's last value");
    let brk: Value = serde_json::from_slice(&brk.payload).unwrap();
    assert_eq!((&brk["symbol"], &brk["seq"]), (&json!("BRK.B"), &json!(1)));

    // Both edges now: every quote, in lockstep (each round is read by both
    // clients before the next is pushed, so nothing is coalesced and the
    // lists are exact).
    let (mut got_a, mut got_b, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..30 {
        let syms: &[&str] = if i % 3 == 0 { &SYMS } else { &SYMS[..2] };
        let round = p.push(syms).await;
        got_a.extend(read_quotes(&mut a, &round).await);
        got_b.extend(read_quotes(&mut b, &round).await);
        want.extend(round);
    }
    let (pa, pb) = (per_symbol(&got_a), per_symbol(&got_b));
    assert_eq!(
        pa, pb,
        "both edges deliver the same (symbol, seq, bid, ask) per symbol"
    );
    assert_eq!(
        pa,
        per_symbol(&want),
        "and exactly what the ingest numbered"
    );
    assert_eq!(pa["AAPL"].last().unwrap().1, p.seq("AAPL"));

    for e in [&edge_a, &edge_b] {
        let (st, r) = readyz(e.addr).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(
            (&r["ready"], &r["nats"]),
            (&json!(true), &json!(true)),
            "{r}"
        );
        let (_, body) = http_get(e.addr, "/v1/quotes?symbols=AAPL").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["seq"], p.seq("AAPL"), "REST on an edge: {body}");
    }
}

/// SIGKILL the ingest: its status stops, and after `stale_after_ms` both
/// edges mark its symbols stale (clients told, `/v1/feeds` says so).
/// Started again with the same config, it reads its seqs back from the
/// stream: the symbols go live, and the next quote's seq goes on past the
/// stored one by its lag (`Tg-Lag`), so past every seq clients saw though
/// the last quotes before the kill were not stored yet (stored every 3
/// seqs here, and by time only every 10 s), not from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn killed_ingest_goes_stale_and_its_restart_goes_on_numbering() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("ingest-kill");
    let nats = NatsServer::start(&dir.0).await;
    let toml = with_cluster(
        ingest_toml(&nats, "t2", &SYMS),
        "last_value_interval_ms = 10000\nlast_value_max_lag = 3\n",
    );
    let mut ingest = Node::start(&dir.0, "ingest", &toml).await;
    let edge_a = Node::start(&dir.0, "edge-a", &edge_toml(&nats, "t2", 1000, "")).await;
    let edge_b = Node::start(&dir.0, "edge-b", &edge_toml(&nats, "t2", 1000, "")).await;
    let mut clients = Vec::new();
    for e in [&edge_a, &edge_b] {
        wait_learned(e.addr, None, &SYMS).await;
        wait_feed_state(e.addr, None, "live").await;
        let (mut c, _) = Client::connect_welcomed(e.addr).await;
        c.subscribe(1, &SYMS).await;
        clients.push(c);
    }
    let mut p = Pusher::new(ingest.addr);
    let mut seen_max = 0;
    // Seq 1 is stored (a symbol's first), 4 (3 on), 5 not before a tick.
    for _ in 0..5 {
        let want = p.push(&SYMS).await;
        for c in &mut clients {
            let got = read_quotes(c, &want).await;
            seen_max = seen_max.max(got.iter().map(|q| q.1).max().unwrap());
        }
    }
    assert_eq!(seen_max, 5);

    ingest.kill();
    let (last, lag) = stored(&nats, "T2_LAST", "t2.lv.AAPL")
        .await
        .expect("AAPL's last value is stored");
    assert_eq!(lag, 3, "the lag it was stored with: {last}");
    let stored_seq = last["seq"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&stored_seq),
        "stored at most 3 seqs behind: {last}"
    );
    for c in &mut clients {
        read_status(c, "stale", &SYMS).await;
    }
    for e in [&edge_a, &edge_b] {
        wait_feed_state(e.addr, None, "stale").await;
        let (st, r) = readyz(e.addr).await;
        assert_eq!(st, 503, "a stale feed is not ready: {r}");
        assert_eq!(r["nats"], true, "{r}");
    }

    ingest.restart().await;
    for c in &mut clients {
        read_status(c, "live", &SYMS).await;
    }
    for e in [&edge_a, &edge_b] {
        wait_feed_state(e.addr, None, "live").await;
    }
    // The restarted ingest numbers on past the stored seq by its lag.
    p.addr = ingest.addr;
    p.renumber("AAPL", stored_seq + lag);
    let want = p.push(&["AAPL"]).await;
    // An ingest node answers REST: the seq it gave (numbering from 1
    // again would be refused as old by every edge).
    let (_, body) = http_get(ingest.addr, "/v1/quotes?symbols=AAPL").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v[0]["seq"], want[0].1,
        "the restarted ingest numbers on: {body}"
    );
    for c in &mut clients {
        let got = read_quotes(c, &want).await;
        assert!(
            got[0].1 > seen_max,
            "seq {} goes on past {seen_max}: {got:?}",
            got[0].1
        );
        assert_eq!(got, want, "exactly that seq, and nothing sent again");
    }
    let (_, m) = http_get(edge_a.addr, "/metrics").await;
    assert!(
        m.contains("tickergate_cluster_refused_total{reason=\"old\"} 0"),
        "no seq of the restarted ingest is refused as one seen before"
    );
    let log = std::fs::read_to_string(&ingest.log).unwrap();
    assert!(
        log.contains("resumed=2"),
        "the restart resumed both symbols:\n{log}"
    );
}

/// SIGKILL nats-server: the edges lose it, their symbols go stale and
/// `/readyz` says not ready with `"nats": false`. A quote the ingest
/// accepts meanwhile is kept. nats-server started again on the same port
/// and store: the symbols go live, the kept quote arrives, and the next
/// one's seq is higher still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn nats_outage_goes_stale_and_recovers_on_restart() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("nats-kill");
    let mut nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t3", &SYMS)).await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t3", 1000, "")).await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &SYMS).await;
    let mut p = Pusher::new(ingest.addr);
    for _ in 0..3 {
        let want = p.push(&SYMS).await;
        assert_same(
            &read_quotes(&mut c, &want).await,
            &want,
            "before the outage",
        );
    }

    nats.kill();
    read_status(&mut c, "stale", &SYMS).await;
    let (edge_addr, ingest_addr) = (edge.addr, ingest.addr);
    eventually("edge /readyz: not ready, nats false", || async move {
        let (st, r) = readyz(edge_addr).await;
        (st == 503 && r["ready"] == false && r["nats"] == false).then_some(())
    })
    .await;
    eventually("ingest /readyz: nats false", || async move {
        let (st, r) = readyz(ingest_addr).await;
        (st == 503 && r["nats"] == false).then_some(())
    })
    .await;
    // The ingest's HTTP feed still takes quotes; they wait in its slots.
    let during = p.push(&["AAPL"]).await;

    nats.restart().await;
    // Live again, and the quote from the outage arrives (in either order:
    // the edge may read it from the stream before the first status).
    let mut quotes = read_status(&mut c, "live", &SYMS).await;
    if !quotes.iter().any(|q| *q == during[0]) {
        quotes.extend(read_quotes(&mut c, &during).await);
    }
    assert_eq!(
        quotes, during,
        "the quote accepted during the outage, once, and nothing sent again"
    );
    let after = p.push(&SYMS).await;
    assert_same(
        &read_quotes(&mut c, &after).await,
        &after,
        "after the outage",
    );
    assert!(after[0].1 > during[0].1);
    eventually("edge /readyz ready again", || async move {
        let (st, r) = readyz(edge_addr).await;
        (st == 200 && r["ready"] == true && r["nats"] == true).then_some(())
    })
    .await;
}

/// Interest-based following, as NATS itself shows it (`/connz`: the
/// edge's own connection): no quote subscription before a client holds a
/// symbol; `<prefix>.q.<token>` while one does (the encoded token for
/// `BRK.B`), one per edge however many clients; gone `linger_ms` after the
/// last one leaves. With `wildcard_share`, once that share of the symbols
/// is wanted, one subscription to every quote instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_subscribes_on_nats_only_while_clients_hold_a_symbol() {
    const SYMS: [&str; 3] = ["AAPL", "MSFT", "BRK.B"];
    let dir = Scratch::new("interest");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t4", &SYMS)).await;
    // One subscription per symbol, however many are wanted.
    let per_symbol = "node = \"edge-t4\"\nwildcard_share = 2.0\n";
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t4", 50, per_symbol)).await;
    wait_learned(edge.addr, None, &SYMS).await;
    let mut p = Pusher::new(ingest.addr);
    let first = p.push(&SYMS).await;
    let n = &nats;
    let quote_subs = move || async move { n.subjects_of("edge-t4", "t4.q.").await };
    let (mut c1, _) = Client::connect_welcomed(edge.addr).await;
    // Learned, connected, but nobody holds a symbol: no subscription. A
    // status round trip later (the edge has run its batches since).
    wait_feed_state(edge.addr, None, "live").await;
    assert_eq!(
        nats.subjects_of("edge-t4", "t4.").await,
        ["t4.status.>"],
        "the edge follows the feed status, and no quote"
    );

    c1.subscribe(1, &["AAPL", "BRK.B"]).await;
    eventually("t4.q.AAPL and t4.q.BRK~2EB subscribed", || async move {
        (quote_subs().await == ["t4.q.AAPL", "t4.q.BRK~2EB"]).then_some(())
    })
    .await;
    // Followed means served: the values arrive, BRK.B's from its encoded
    // subject.
    let got = read_quotes(&mut c1, &[first[0].clone(), first[2].clone()]).await;
    assert!(got.contains(&first[2]), "{got:?}");
    let want = p.push(&["BRK.B"]).await;
    assert_eq!(read_quotes(&mut c1, &want).await, want);

    // A second client on AAPL: still one subscription for the edge.
    let (mut c2, _) = Client::connect_welcomed(edge.addr).await;
    c2.subscribe(1, &["AAPL"]).await;
    assert_eq!(
        read_quotes(&mut c2, &first[..1]).await,
        &first[..1],
        "snapshot"
    );
    assert_eq!(quote_subs().await, ["t4.q.AAPL", "t4.q.BRK~2EB"]);
    c1.send(json!({"op":"unsubscribe","id":2,"symbols":["AAPL","BRK.B"]}))
        .await;
    c1.recv_until(|m| m["type"] == "unsubscribed" && m["id"] == 2)
        .await;
    // BRK.B had only c1: dropped after the linger. AAPL has c2: kept (the
    // same pass that dropped BRK.B saw AAPL still wanted).
    eventually("t4.q.BRK~2EB unsubscribed", || async move {
        (!quote_subs().await.contains(&"t4.q.BRK~2EB".to_string())).then_some(())
    })
    .await;
    assert_eq!(quote_subs().await, ["t4.q.AAPL"]);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut c2, &want).await, want);

    // The last holder disconnects: AAPL's subscription goes too.
    drop(c2);
    eventually("t4.q.AAPL unsubscribed", || async move {
        quote_subs().await.is_empty().then_some(())
    })
    .await;
    let (_, m) = http_get(edge.addr, "/metrics").await;
    assert_eq!(metric(&m, "tickergate_cluster_subscriptions"), 0.0);
    drop(c1);

    // wildcard_share = 0.5: one symbol of three wanted is one subscription
    // of its own; two of three, one to every quote instead; none, none.
    let wild = "node = \"edge-t4-wild\"\nwildcard_share = 0.5\n";
    let edge = Node::start(&dir.0, "edge-wild", &edge_toml(&nats, "t4", 50, wild)).await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let wild_subs = move || async move { n.quotes_followed_by("edge-t4-wild", "t4").await };
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    eventually("t4.q.AAPL subscribed", || async move {
        (wild_subs().await == ["t4.q.AAPL"]).then_some(())
    })
    .await;
    c.subscribe(2, &["BRK.B"]).await;
    eventually("t4.r.> subscribed in place of t4.q.AAPL", || async move {
        (wild_subs().await == ["t4.r.>"]).then_some(())
    })
    .await;
    // Served as before, and an unwanted symbol's quotes stay on the edge.
    let want = p.push(&["MSFT", "BRK.B", "AAPL"]).await;
    let got = read_quotes(&mut c, &want[1..]).await;
    assert!(got.iter().all(|q| q.0 != "MSFT"), "{got:?}");
    for q in &want[1..] {
        assert!(got.contains(q), "{q:?} with the ingest's seq: {got:?}");
    }
    drop(c);
    eventually("no quote subscription", || async move {
        wild_subs().await.is_empty().then_some(())
    })
    .await;
}

/// An edge with API keys: the key `desk` may see `BTC-*` and `AAPL`.
/// Subscribing MSFT by name is `forbidden_symbol`; `*` holds only the
/// entitled symbols, and nothing else arrives from NATS; SSE refuses a
/// forbidden symbol with 403 and streams the entitled ones with the
/// ingest's seqs. Both ways an edge follows: one subscription per symbol
/// (it never follows a forbidden one), and one to every quote (the
/// forbidden quotes reach the edge and stop there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn entitlements_hold_on_an_edge() {
    const SYMS: [&str; 4] = ["AAPL", "MSFT", "BTC-USD", "ETH-USD"];
    let dir = Scratch::new("entitlements");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t5", &SYMS)).await;
    let keys = format!(
        r#"
[[auth.keys]]
name = "desk"
sha256 = "{}"
symbols = ["BTC-*", "AAPL"]

[[auth.keys]]
name = "all"
sha256 = "{}"
"#,
        token_hash_hex("desk-key"),
        token_hash_hex("all-key")
    );
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    for (node, share, followed) in [
        ("edge-t5", "2.0", &["t5.q.AAPL", "t5.q.BTC-USD"][..]),
        ("edge-t5-wild", "0.0", &["t5.r.>"][..]),
    ] {
        let extra = format!("node = \"{node}\"\nwildcard_share = {share}\n{keys}");
        let edge = Node::start(&dir.0, node, &edge_toml(&nats, "t5", 50, &extra)).await;
        wait_learned(edge.addr, Some("all-key"), &SYMS).await;
        wait_feed_state(edge.addr, Some("all-key"), "live").await;
        entitled_only(&edge, &mut p).await;
        assert_eq!(
            nats.quotes_followed_by(node, "t5").await,
            followed,
            "{node}"
        );
    }
}

/// What `desk` (BTC-* and AAPL) gets on `edge`: see
/// [`entitlements_hold_on_an_edge`].
async fn entitled_only(edge: &Node, p: &mut Pusher) {
    // /v1/symbols lists only the key's.
    let (_, body) = http_get(edge.addr, "/v1/symbols?token=desk-key").await;
    let mut names: Vec<String> = serde_json::from_str(&body).unwrap();
    names.sort();
    assert_eq!(names, ["AAPL", "BTC-USD"]);

    let mut c = Client::connect_url(&format!("ws://{}/v1/ws?token=desk-key", edge.addr)).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL","MSFT"]}))
        .await;
    let (sub, skipped) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 1)
        .await;
    assert_eq!(sub["symbols"], json!(["AAPL"]));
    let errors: Vec<(&str, &str)> = skipped
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| (m["code"].as_str().unwrap(), m["symbol"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [("forbidden_symbol", "MSFT")]);

    c.send(json!({"op":"subscribe","id":2,"symbols":["*"]}))
        .await;
    let (sub, _) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 2)
        .await;
    let mut held: Vec<String> = serde_json::from_value(sub["symbols"].clone()).unwrap();
    held.sort();
    assert!(
        held.iter().all(|s| s == "AAPL" || s == "BTC-USD"),
        "only entitled symbols: {held:?}"
    );
    assert!(held.contains(&"BTC-USD".to_string()), "{held:?}");
    // Values of every symbol go out; the client gets only its own, up to
    // the last of them.
    let round = p.push(&["MSFT", "ETH-USD", "BTC-USD", "AAPL"]).await;
    let mut seen = Vec::new();
    let mut left = vec![round[2].clone(), round[3].clone()];
    while !left.is_empty() {
        let (m, skipped) = c.recv_until(|m| m["type"] == "quote").await;
        seen.extend(skipped);
        left.retain(|q| *q != q_of(&m));
        seen.push(m);
    }
    for m in &seen {
        if let Some(sym) = m["symbol"].as_str() {
            assert!(sym == "AAPL" || sym == "BTC-USD", "leaked: {m}");
        }
    }

    // SSE: a forbidden symbol refuses the whole request.
    let (st, body) = Sse::open(edge.addr, "symbols=AAPL,MSFT&token=desk-key", "")
        .await
        .err()
        .expect("refused");
    assert_eq!(st, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&v["code"], &v["symbol"]),
        (&json!("forbidden_symbol"), &json!("MSFT"))
    );
    let (st, _) = Sse::open(edge.addr, "symbols=ETH-USD&token=desk-key", "")
        .await
        .err()
        .expect("refused");
    assert_eq!(st, 403);
    // Entitled: the stream, then a new value with the ingest's seq.
    let mut s = Sse::open(edge.addr, "symbols=AAPL,BTC-USD&token=desk-key", "")
        .await
        .expect("entitled symbols stream");
    let first = s.frame().await;
    assert_eq!(first[0]["type"], "welcome");
    assert_eq!(first[1]["symbols"], json!(["AAPL", "BTC-USD"]));
    let want = p.push(&["MSFT", "AAPL"]).await;
    loop {
        let f = s.frame().await;
        for m in &f {
            if let Some(sym) = m["symbol"].as_str() {
                assert!(sym == "AAPL" || sym == "BTC-USD", "leaked over SSE: {m}");
            }
        }
        if f.iter().any(|m| q_of(m) == want[1]) {
            break;
        }
    }
}

/// An ingest restarted with one symbol swapped for another (as many
/// symbols as before): the edge learns the new one and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_learns_a_symbol_swapped_on_the_ingest() {
    let dir = Scratch::new("swap");
    let nats = NatsServer::start(&dir.0).await;
    let mut ingest = Node::start(
        &dir.0,
        "ingest",
        &ingest_toml(&nats, "t8", &["AAPL", "MSFT"]),
    )
    .await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t8", 1000, "")).await;
    wait_learned(edge.addr, None, &["AAPL", "MSFT"]).await;
    ingest.kill();
    std::fs::write(&ingest.config, ingest_toml(&nats, "t8", &["AAPL", "TSLA"])).unwrap();
    ingest.restart().await;
    wait_learned(edge.addr, None, &["TSLA"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["TSLA"]).await;
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&["TSLA"]).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);
    // MSFT, which the feed no longer lists, is stale there for good (not
    // live without updates), while the feed itself is live.
    let (mut m, _) = Client::connect_welcomed(edge.addr).await;
    m.subscribe(2, &["MSFT"]).await;
    read_status(&mut m, "stale", &["MSFT"]).await;
    let (_, feeds) = http_get(edge.addr, "/v1/feeds").await;
    let feeds: Value = serde_json::from_str(&feeds).unwrap();
    assert_eq!(feeds[0]["state"], "live", "{feeds}");
    assert_eq!(feeds[0]["symbols"], 2, "{feeds}");
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

/// `storage = "memory"`: a NATS restart loses the stream. The ingest
/// makes it again and stores its own epoch (the one its seqs go on in)
/// and its values, so an edge started afterwards serves the same epoch and
/// seqs as one that was there all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn memory_stream_lost_with_nats_comes_back_with_the_same_epoch() {
    let dir = Scratch::new("memory");
    let mut nats = NatsServer::start(&dir.0).await;
    let toml = with_cluster(
        ingest_toml(&nats, "t9", &["AAPL"]),
        "storage = \"memory\"\n",
    );
    let ingest = Node::start(&dir.0, "ingest", &toml).await;
    let early = Node::start(&dir.0, "edge-early", &edge_toml(&nats, "t9", 1000, "")).await;
    wait_learned(early.addr, None, &["AAPL"]).await;
    wait_feed_state(early.addr, None, "live").await;
    let mut p = Pusher::new(ingest.addr);
    let (mut a, wa) = Client::connect_welcomed(early.addr).await;
    a.subscribe(1, &["AAPL"]).await;
    for _ in 0..2 {
        let want = p.push(&["AAPL"]).await;
        assert_eq!(read_quotes(&mut a, &want).await, want);
    }
    let epoch = stored_epoch(&nats, "T9_LAST", "t9.epoch").await.unwrap();
    assert_eq!(wa["epoch"], epoch.as_str());

    nats.kill();
    nats.restart().await;
    let n = &nats;
    let again = eventually("the ingest to store an epoch again", move || async move {
        stored_epoch(n, "T9_LAST", "t9.epoch").await
    })
    .await;
    assert_eq!(
        again, epoch,
        "the ingest stores the epoch its seqs go on in"
    );
    let late = Node::start(&dir.0, "edge-late", &edge_toml(&nats, "t9", 1000, "")).await;
    wait_learned(late.addr, None, &["AAPL"]).await;
    wait_feed_state(late.addr, None, "live").await;
    let (mut b, wb) = Client::connect_welcomed(late.addr).await;
    assert_eq!(
        wb["epoch"],
        epoch.as_str(),
        "the late edge serves the same epoch"
    );
    b.subscribe(1, &["AAPL"]).await;
    // The ingest wrote its values again: the late edge starts from seq 2.
    let last = p.last(&["AAPL"]);
    assert_eq!(read_quotes(&mut b, &last).await, last);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut a, &want).await, want);
    assert_eq!(read_quotes(&mut b, &want).await, want);
}

/// An edge started before any ingest (no stream, no epoch yet: an
/// orchestrator starting everything at once) learns the feed when the
/// ingest comes, serves its values with its seqs, and tells its clients
/// the cluster's epoch, the same as an edge started after the ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_started_before_the_ingest_serves_the_cluster_epoch() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("edge-first");
    let nats = NatsServer::start(&dir.0).await;
    let early = Node::start(&dir.0, "edge-early", &edge_toml(&nats, "t7", 1000, "")).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t7", &SYMS)).await;
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    let late = Node::start(&dir.0, "edge-late", &edge_toml(&nats, "t7", 1000, "")).await;
    let mut epochs = Vec::new();
    for e in [&early, &late] {
        wait_learned(e.addr, None, &SYMS).await;
        wait_feed_state(e.addr, None, "live").await;
        let (mut c, w) = Client::connect_welcomed(e.addr).await;
        let last = p.last(&SYMS);
        wait_stored(&nats, "t7", &last).await;
        c.subscribe(1, &SYMS).await;
        assert_same(&read_quotes(&mut c, &last).await, &last, "last values");
        let next = p.push(&SYMS).await;
        assert_same(&read_quotes(&mut c, &next).await, &next, "live values");
        epochs.push(w["epoch"].as_str().unwrap().to_string());
    }
    let stored = stored_epoch(&nats, "T7_LAST", "t7.epoch").await.unwrap();
    assert_eq!(epochs[1], stored, "the late edge");
    assert_eq!(
        epochs[0], epochs[1],
        "an edge started before the ingest serves the cluster's epoch too"
    );
    for e in [&early, &late] {
        let (_, m) = http_get(e.addr, "/metrics").await;
        let refused = r#"tickergate_cluster_refused_total{reason="epoch"}"#;
        assert_eq!(
            metric(&m, refused),
            0.0,
            "{}: statuses of its own epoch",
            e.name
        );
    }
}

/// `--check-config` refuses what a cluster node cannot run, naming the
/// field, and takes the example configs. Needs no NATS (nothing connects).
#[test]
fn check_config_refuses_bad_cluster_configs() {
    let dir = Scratch::new("check-config");
    let check = |name: &str, toml: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, toml).unwrap();
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .output()
            .unwrap()
    };
    let refused = |name: &str, toml: &str, field: &str| {
        let out = check(name, toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{field}: ")),
            "{name} names {field}: {err}"
        );
    };
    refused(
        "edge-feeds.toml",
        "[cluster]\nrole = \"edge\"\n\n[[feeds]]\nkind = \"sim\"\nname = \"s\"\n",
        "feeds",
    );
    for (i, prefix) in ["a.*", "a..b", "$JS", "a b", "x.>"].iter().enumerate() {
        for role in ["edge", "ingest"] {
            refused(
                &format!("prefix-{role}-{i}.toml"),
                &format!("[cluster]\nrole = \"{role}\"\nsubject_prefix = \"{prefix}\"\n"),
                "cluster.subject_prefix",
            );
        }
    }
    refused(
        "stale.toml",
        "[cluster]\nrole = \"edge\"\nstatus_interval_ms = 500\nstale_after_ms = 600\n",
        "cluster.stale_after_ms",
    );
    // An edge without feeds, and the examples, pass.
    for toml in [
        "[cluster]\nrole = \"edge\"\nsubject_prefix = \"md.eu-1\"\n".to_string(),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/cluster-edge.toml"),
        )
        .unwrap(),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/cluster-ingest.toml"),
        )
        .unwrap(),
    ] {
        let out = check("good.toml", &toml);
        assert!(
            out.status.success(),
            "{toml}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    }
}

/// Trades travel too: every trade pushed to the ingest reaches a client
/// of an edge that asked for trades, in order, byte-exact, with the
/// trade's own fields; a key sees the trades of its symbols only (`*`
/// with `"trades": true`), and an edge follows a symbol's trades on NATS
/// only while someone takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn trades_reach_edge_clients_in_order_and_only_entitled() {
    const SYMS: [&str; 3] = ["AAPL", "BTC-USD", "ETH-USD"];
    let dir = Scratch::new("trades");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t9", &SYMS)).await;
    let keys = format!(
        "node = \"edge-t9\"\nwildcard_share = 2.0\n\n[[auth.keys]]\nname = \"desk\"\nsha256 = \"{}\"\nsymbols = [\"BTC-*\"]\n",
        token_hash_hex("desk-key")
    );
    let edge = Node::start(&dir.0, "edge-t9", &edge_toml(&nats, "t9", 50, &keys)).await;
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    wait_learned(edge.addr, Some("desk-key"), &["BTC-USD"]).await;
    wait_feed_state(edge.addr, Some("desk-key"), "live").await;
    assert!(
        nats.subjects_of("edge-t9", "t9.t.").await.is_empty(),
        "no trade subscription before anyone takes trades"
    );
    let mut c = Client::connect_url(&format!("ws://{}/v1/ws?token=desk-key", edge.addr)).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["*"],"trades":true}))
        .await;
    let (sub, _) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 1)
        .await;
    assert_eq!(sub["symbols"], json!(["BTC-USD"]));
    eventually("the edge follows BTC-USD's trades", || async {
        (nats.subjects_of("edge-t9", "t9.t.").await == ["t9.t.BTC-USD"]).then_some(())
    })
    .await;
    // 30 trades of each symbol, interleaved, in three pushes.
    let mut n = 0;
    for _ in 0..3 {
        let mut body = String::new();
        for _ in 0..10 {
            for sym in SYMS {
                n += 1;
                body.push_str(&format!(
                    "{{\"type\":\"trade\",\"symbol\":\"{sym}\",\"price\":\"{}.{:03}0\",\"size\":\"0.00{n:03}\",\"side\":\"{}\",\"trade_id\":{n},\"ts\":{}}}\n",
                    100 + n,
                    n,
                    if n % 2 == 0 { "buy" } else { "sell" },
                    1_700_000_000_000_000_000u64 + n as u64
                ));
            }
        }
        let (st, r) = ingest_post(ingest.addr, PUSH_KEY, &body).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["accepted"], 30, "{r}");
    }
    let want: Vec<(u64, String, String)> = (1..=90u64)
        .filter(|n| (n - 1) % 3 == 1)
        .map(|n| (n, format!("{}.{n:03}0", 100 + n), format!("0.00{n:03}")))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let (m, skipped) = c.recv_until(|m| m["type"] == "trade").await;
        for x in skipped.iter().chain(std::iter::once(&m)) {
            if let Some(sym) = x["symbol"].as_str() {
                assert_eq!(sym, "BTC-USD", "leaked: {x}");
            }
            assert_ne!(x["type"], "trades_dropped", "{x}");
        }
        got.push((
            m["trade_id"].as_u64().unwrap(),
            m["price"].as_str().unwrap().to_string(),
            m["size"].as_str().unwrap().to_string(),
        ));
        // Numbered by the edge, gapless from 1.
        assert_eq!(m["seq"], got.len(), "{m}");
    }
    assert_eq!(got, want, "every BTC-USD trade, in order, exact text");
    drop(c);
    eventually("the edge lets the trades go", || async {
        nats.subjects_of("edge-t9", "t9.t.")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// NATS with user/password auth: nodes configured with the credentials
/// connect and serve; the edge's connection is authorized as that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn nodes_authenticate_to_nats() {
    let dir = Scratch::new("auth");
    let nats = NatsServer::start_with(&dir.0, &["--user", "tg", "--pass", "s3cret"]).await;
    let creds = "user = \"tg\"\npassword = \"s3cret\"\n";
    let ingest_cfg = ingest_toml(&nats, "t10", &["AAPL"]).replacen(
        "[cluster]\n",
        &format!("[cluster]\n{creds}"),
        1,
    );
    assert!(ingest_cfg.contains("password"), "{ingest_cfg}");
    let ingest = Node::start(&dir.0, "ingest", &ingest_cfg).await;
    let edge = Node::start(
        &dir.0,
        "edge-t10",
        &edge_toml(&nats, "t10", 50, &format!("node = \"edge-t10\"\n{creds}")),
    )
    .await;
    wait_learned(edge.addr, None, &["AAPL"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);
    // The server lists the edge's connection as the authorized user.
    let (_, body) = nats_get(nats.monitor, "/connz?auth=1").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let edge_conn = v["connections"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "edge-t10"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(edge_conn["authorized_user"], "tg", "{body}");
}

/// A publishing round goes out whole on `<prefix>.r.<node>` (issue 18's
/// board-burst figure), besides each quote on its symbol's subject: one
/// push to the ingest is one round message of its quotes. A round cut in
/// several messages is marked (`Tg-Round: open` on the first, `end` on
/// the last), and an edge following every quote wakes its clients once
/// the round is in, so it reaches a client in one frame however far apart
/// NATS delivers its messages (here the test publishes one slowly
/// itself); a round whose end never comes goes out after `round_hold_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn a_publishing_round_reaches_edge_clients_in_one_frame() {
    use futures_util::StreamExt;
    const SYMS: [&str; 3] = ["R1", "R2", "R3"];
    let dir = Scratch::new("rounds");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t11", &SYMS)).await;
    let edge = Node::start(
        &dir.0,
        "edge-t11",
        &edge_toml(
            &nats,
            "t11",
            50,
            "node = \"edge-t11\"\nwildcard_share = 0.0\nround_hold_ms = 1000\n",
        ),
    )
    .await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let nc = async_nats::connect(nats.url())
        .await
        .expect("test's NATS client");
    let mut rounds = nc.subscribe("t11.r.>").await.unwrap();
    let mut quotes = nc.subscribe("t11.q.>").await.unwrap();
    nc.flush().await.unwrap();
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &SYMS).await;

    // The ingest: one push is one round, published whole as one message
    // of its quotes, one per line in the push's order (a round in one
    // message carries no mark), and each quote on its own subject.
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&SYMS).await;
    async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
        tokio::time::timeout(DEADLINE, sub.next())
            .await
            .expect("the ingest publishes")
            .expect("subscription open")
    }
    let mark_of = |m: &async_nats::Message| {
        m.headers
            .as_ref()
            .and_then(|h| h.get("Tg-Round"))
            .map(|v| v.as_str().to_string())
    };
    let m = next(&mut rounds).await;
    let lines: Vec<Q> = tickergate::cluster::wire::round_quotes(&m.payload)
        .map(|l| q_of(&serde_json::from_slice::<Value>(l).expect("a quote per line")))
        .collect();
    assert_eq!(lines, want, "the round's quotes in one message, in order");
    assert_eq!(mark_of(&m), None);
    for w in &want {
        let m = next(&mut quotes).await;
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(q_of(&v), *w, "each quote on its symbol's subject");
        assert_eq!(mark_of(&m), None);
    }
    assert_eq!(read_quotes(&mut c, &want).await, want);

    // A round cut in three messages that come 100 ms apart: one frame,
    // all three quotes.
    let quote = |sym: &str, seq: u64| {
        format!(
            r#"{{"type":"quote","symbol":"{sym}","seq":{seq},"bid":"2{seq}.25","bid_size":"1","ask":"2{seq}.75","ask_size":"2","ts":1700000000000000000,"gw_ts":1700000000000000001}}"#
        )
    };
    let mark = |m: &str| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Tg-Round", m);
        h
    };
    let seq = 10;
    nc.publish_with_headers("t11.r.test", mark("open"), quote("R1", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    nc.publish("t11.r.test", quote("R2", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    nc.publish_with_headers("t11.r.test", mark("end"), quote("R3", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let frame = loop {
        match c.next_event().await {
            Event::Msgs(ms) if ms.iter().any(|m| m["type"] == "quote") => break ms,
            Event::Msgs(_) => continue,
            other => panic!("expected quotes, got {other:?}"),
        }
    };
    let mut got: Vec<Q> = frame
        .iter()
        .filter(|m| m["type"] == "quote")
        .map(q_of)
        .collect();
    got.sort();
    let round: Vec<Q> = SYMS
        .iter()
        .map(|s| {
            (
                s.to_string(),
                seq,
                format!("2{seq}.25"),
                format!("2{seq}.75"),
            )
        })
        .collect();
    assert_eq!(got, round, "the round's three quotes in its first frame");

    // A round that never ends: what came goes out after the hold.
    nc.publish_with_headers("t11.r.test", mark("open"), quote("R1", seq + 1).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let (m, _) = c.recv_until(|m| m["type"] == "quote").await;
    assert_eq!(
        q_of(&m),
        ("R1".into(), seq + 1, "211.25".into(), "211.75".into())
    );
    let (_, text) = http_get(edge.addr, "/metrics").await;
    assert_eq!(
        metric(
            &text,
            "tickergate_cluster_rounds_held_total{ended=\"timeout\"}"
        ),
        1.0,
        "{text}"
    );
    assert!(metric(&text, "tickergate_cluster_rounds_held_total{ended=\"end\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn consolidated_quotes_name_their_venues_on_an_edge() {
    // Two venues (HTTP feeds with their own keys) quote one instrument;
    // the ingest consolidates them into X. An edge's client gets X with
    // the venue of each side named, as a standalone gateway's would.
    const KEY_B: &str = "cluster-test-push-key-b";
    let dir = Scratch::new("venues");
    let nats = NatsServer::start(&dir.0).await;
    let cfg = format!(
        r#"{}node = "ingest-t12"

[[feeds]]
kind = "http"
name = "venue-a"
key_sha256 = "{}"
symbols = ["A-X"]
stale_after_ms = 0

[[feeds]]
kind = "http"
name = "venue-b"
key_sha256 = "{}"
symbols = ["B-X"]
stale_after_ms = 0

[[consolidated]]
symbol = "X"
from = ["A-X", "B-X"]
"#,
        common_toml("ingest", &nats, "t12"),
        token_hash_hex(PUSH_KEY),
        token_hash_hex(KEY_B),
    );
    let ingest = Node::start(&dir.0, "ingest", &cfg).await;
    let edge = Node::start(&dir.0, "edge-t12", &edge_toml(&nats, "t12", 50, "")).await;
    wait_learned(edge.addr, None, &["X", "A-X", "B-X"]).await;
    let (mut on_edge, _) = Client::connect_welcomed(edge.addr).await;
    on_edge.subscribe(1, &["X"]).await;

    // venue-a has the better bid, venue-b the better ask (the edge may
    // take this one from the last-value stream, the next one is live).
    let post = |key, body: Value| async move {
        let (st, r) = ingest_post(ingest.addr, key, &format!("{body}\n")).await;
        assert_eq!((st, &r["accepted"]), (200, &json!(1)), "{r}");
    };
    post(PUSH_KEY, line("A-X", "100.25", "101.75")).await;
    post(KEY_B, line("B-X", "100.00", "100.50")).await;
    let both = |m: &Value| m["type"] == "quote" && m["symbol"] == "X" && m["ask"] == "100.50";
    let (e, _) = on_edge.recv_until(both).await;
    assert_eq!(
        (&e["bid"], &e["bid_venue"], &e["ask"], &e["ask_venue"]),
        (
            &json!("100.25"),
            &json!("venue-a"),
            &json!("100.50"),
            &json!("venue-b")
        ),
        "{e}"
    );

    // venue-b takes the bid too: the edge names it.
    post(KEY_B, line("B-X", "100.40", "100.50")).await;
    let (e, _) = on_edge
        .recv_until(|m| m["symbol"] == "X" && m["bid"] == "100.40")
        .await;
    assert_eq!(
        (&e["bid_venue"], &e["ask_venue"]),
        (&json!("venue-b"), &json!("venue-b")),
        "{e}"
    );
}

/// An ingest stores a symbol's last value up to `last_value_interval_ms`
/// after the value went out live (live quotes are not stored). A client
/// that subscribes on an edge in between gets the older stored value
/// first; the edge reads the symbol's value once more after that
/// interval, so the symbol, quiet from then on, does not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn a_value_stored_after_an_edge_subscribed_still_reaches_it() {
    let dir = Scratch::new("store-window");
    let nats = NatsServer::start(&dir.0).await;
    let slow = "last_value_interval_ms = 2000\n";
    let toml = with_cluster(ingest_toml(&nats, "t13", &["AAPL"]), slow);
    let ingest = Node::start(&dir.0, "ingest", &toml).await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t13", 1000, slow)).await;
    wait_learned(edge.addr, None, &["AAPL"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let mut p = Pusher::new(ingest.addr);
    // A symbol's first value is stored at once.
    let first = p.push(&["AAPL"]).await;
    let n = &nats;
    eventually("AAPL's first value stored", move || async move {
        let (v, _) = stored(n, "T13_LAST", "t13.lv.AAPL").await?;
        (v["seq"] == 1).then_some(())
    })
    .await;
    // The next one goes out live to nobody and is stored at a tick.
    let second = p.push(&["AAPL"]).await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let got = read_quotes(&mut c, &second).await;
    assert_eq!(got.last(), second.last(), "the newest value: {got:?}");
    assert!(
        got == second || got == [first[0].clone(), second[0].clone()],
        "the stored value, then the newer one, or the newer one at once: {got:?}"
    );
}

/// A stream made by a build that stored every quote (`<prefix>.q.>`) is
/// not used as it is: the ingest refuses to start and says what to do,
/// instead of numbering on from values that are no longer written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn an_ingest_refuses_a_stream_that_stores_every_quote() {
    let dir = Scratch::new("old-layout");
    let nats = NatsServer::start(&dir.0).await;
    let nc = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    async_nats::jetstream::new(nc)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "T14_LAST".into(),
            subjects: vec!["t14.q.>".into(), "t14.status.>".into(), "t14.epoch".into()],
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("the old layout's stream");
    let config = dir.0.join("ingest.toml");
    std::fs::write(&config, ingest_toml(&nats, "t14", &["AAPL"])).unwrap();
    let log = dir.0.join("ingest.log");
    let (status, log_text) = tokio::task::spawn_blocking(move || {
        let mut child = Proc(
            Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["--listen", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(append(&log))
                .spawn()
                .expect("spawn tickergate"),
        );
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(st) = child.0.try_wait().expect("wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "the ingest did not stop");
            std::thread::sleep(POLL);
        };
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    })
    .await
    .unwrap();
    assert!(!status.success(), "{status}; log:\n{log_text}");
    assert!(
        log_text.contains("stores every quote") && log_text.contains("nats stream rm T14_LAST"),
        "the error says what is wrong and what to do:\n{log_text}"
    );
}
