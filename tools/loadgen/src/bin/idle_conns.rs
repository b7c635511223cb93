//! Idle memory per WebSocket connection, measured on the real gateway
//! binary.
//!
//! ```text
//! cargo build --release      # the gateway binary it starts: target/release/tickergate
//! cargo run --release -p tickergate-loadgen --bin idle_conns -- --conns 5000 --runs 3
//! cargo run --release -p tickergate-loadgen --bin idle_conns -- --conns 1000,5000,15000
//! ```
//!
//! For each run it starts `tickergate` as a child process (pinned to core 0
//! with `taskset -c 0` when taskset exists; this tool re-executes itself
//! under `taskset -c 1`), idle: `--sim-rate 0` (the simulator still ticks
//! and keeps the feed fresh, but writes no quotes). It reads the gateway's
//! resident set (`VmRSS` in /proc/PID/status) before any WebSocket
//! connection, then opens N connections (bounded concurrency), each
//! subscribing to `--symbols` symbols taken from `/v1/symbols` and waiting
//! for its `subscribed` reply; every client keeps reading (heartbeats come
//! every 5 s) so none becomes a slow consumer. After `--settle-ms` it
//! samples RSS a few times and reports `(RSS_after - RSS_before) / N`.
//! The gateway's `tickergate_connections` gauge is checked against N.
//!
//! `--gw-arg --sim-rate --gw-arg R` overrides the 0 (the gateway takes the
//! last flag): with `--warmup-ms` long enough for every slot to hold a value,
//! each client then gets a snapshot frame and a trickle of updates, which
//! shows what buffers a connection keeps after traffic.
//!
//! Burst mode (`--burst-kib K`): what a burst leaves behind in idle
//! sessions. The gateway then runs a generated config instead of its
//! simulator: one `kind = "http"` feed of 500 symbols (`B000`..`B499`),
//! never stale, which this tool fills once through `POST /v1/ingest` (one
//! quote per symbol, key `change-me` as in feeds/http.toml) and never
//! again, so nothing moves afterwards. A probe connection (closed before
//! the baseline) measures the bytes per symbol of a snapshot frame; each
//! of the N connections then subscribes to the S symbols that make about
//! K KiB with `"snapshot":false` (no data) and idles: that is the idle
//! measurement above. The median of its samples is the before-burst
//! baseline. Then every connection subscribes again to the same symbols
//! with `"snapshot":true`, all at once: the gateway answers with
//! `subscribed` and a snapshot of the S quotes, one frame of about K KiB
//! (a frame is cut at `session.max_frame_bytes`, 64 KiB by default), which
//! the client reads; then the connections are quiet again (heartbeats).
//! RSS is sampled every 100 ms until every connection has its whole
//! snapshot, then every `--sample-every-ms` for `--burst-secs`; reported
//! are the peak and the last sample as KiB per connection above the
//! before-burst baseline. The subscriptions are the same before and after
//! the burst, so only what the burst left behind counts (the issue's
//! target: at most 4 KiB per connection). `--symbols` is not used in burst
//! mode, and `--gw-arg --config ..` would replace the generated config.
//!
//! Client sockets are bound to 127.0.0.2, 127.0.0.3, ... before connecting,
//! so source ports never run out; one process can hold ~19.9k sockets here
//! (`ulimit -n` 20000), so N is capped at 19000.
//!
//! Output: a table on stdout and JSON in `results/idle_conns.json` in the
//! workspace root (or `--out PATH`). The gateway child is killed when a run ends, also on error
//! or panic (a Drop guard).
//!
//! Options (defaults in brackets):
//!   --conns N[,N...]     connections per run [5000]
//!   --runs R             runs per connection count, each on a fresh gateway [1]
//!   --symbols K          symbols each connection subscribes to [10]
//!   --concurrency C      connects in flight [200]
//!   --settle-ms MS       wait after the last `subscribed` before sampling [2000]
//!   --warmup-ms MS       wait after the gateway starts, before the baseline [1000]
//!   --samples S          RSS samples after settling [5]
//!   --sample-every-ms MS gap between samples [1000]
//!   --bin PATH           gateway binary [target/release/tickergate in the
//!                        workspace, or under $CARGO_TARGET_DIR if set]
//!   --gw-arg ARG         extra gateway argument (repeatable), e.g. --gw-arg --config --gw-arg f.toml
//!   --gw-env K=V         extra gateway environment (repeatable), e.g. MALLOC_ARENA_MAX=2
//!   --label TEXT         free text stored in the JSON (what this run varies)
//!   --src-ips K          source addresses 127.0.0.2.. to spread over [4]
//!   --no-pin             do not use taskset
//!   --out PATH           JSON output [results/idle_conns.json in the workspace root]
//!   --attach ADDR --attach-pid PID
//!                        measure an already running gateway (say, one started
//!                        under heaptrack) instead of starting one; one run
//!   --burst-kib K        burst mode: after the idle measurement, one ~K KiB
//!                        frame per connection (1..=100; 0 = off) [0]
//!   --burst-secs SECS    burst mode: sampling after every connection has its
//!                        frame [30]

use futures_util::future::{select, Either};
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use tickergate_loadgen as common;

use common::{http_get, http_post, BoxError, GatewayProc};

const PIN_ENV: &str = "TICKERGATE_IDLE_CONNS_PINNED";
const MAX_CONNS: usize = 19_000;

#[derive(Debug, Clone)]
struct Opts {
    conns: Vec<usize>,
    runs: usize,
    symbols: usize,
    concurrency: usize,
    settle: Duration,
    warmup: Duration,
    samples: usize,
    sample_every: Duration,
    bin: PathBuf,
    gw_args: Vec<String>,
    gw_env: Vec<(String, String)>,
    label: String,
    src_ips: usize,
    pin: bool,
    out: PathBuf,
    /// `--attach ADDR --attach-pid PID`: measure a running gateway.
    attach: Option<(SocketAddr, u32)>,
    /// Burst mode: one frame of about this many KiB per connection (0:
    /// off).
    burst_kib: usize,
    burst_secs: Duration,
}

fn usage() -> &'static str {
    "usage: idle_conns [--conns N[,N..]] [--runs R] [--symbols K] \
     [--concurrency C] [--settle-ms MS] [--warmup-ms MS] [--samples S] [--sample-every-ms MS] [--bin PATH] \
     [--gw-arg ARG].. [--gw-env K=V].. [--label TEXT] [--src-ips K] [--no-pin] [--out PATH] \
     [--attach ADDR --attach-pid PID] [--burst-kib K] [--burst-secs SECS]\n\
     run it with: cargo run --release -p tickergate-loadgen --bin idle_conns -- OPTIONS"
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        conns: vec![5000],
        runs: 1,
        symbols: 10,
        concurrency: 200,
        settle: Duration::from_millis(2000),
        warmup: Duration::from_millis(1000),
        samples: 5,
        sample_every: Duration::from_millis(1000),
        bin: common::default_gateway_bin(),
        gw_args: Vec::new(),
        gw_env: Vec::new(),
        label: String::new(),
        src_ips: 4,
        pin: true,
        out: common::results_dir().join("idle_conns.json"),
        attach: None,
        burst_kib: 0,
        burst_secs: Duration::from_secs(30),
    };
    let mut attach_addr: Option<SocketAddr> = None;
    let mut attach_pid: Option<u32> = None;
    let mut it = std::env::args().skip(1);
    let val =
        |flag: &str, it: &mut std::iter::Skip<std::env::Args>| common::arg_value(flag, it, usage());
    use common::arg_num as num;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--conns" => {
                let v = val(&a, &mut it)?;
                o.conns = v
                    .split(',')
                    .map(|s| num::<usize>(&a, s.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--runs" => o.runs = num(&a, &val(&a, &mut it)?)?,
            "--symbols" => o.symbols = num(&a, &val(&a, &mut it)?)?,
            "--concurrency" => o.concurrency = num(&a, &val(&a, &mut it)?)?,
            "--settle-ms" => o.settle = Duration::from_millis(num(&a, &val(&a, &mut it)?)?),
            "--warmup-ms" => o.warmup = Duration::from_millis(num(&a, &val(&a, &mut it)?)?),
            "--samples" => o.samples = num(&a, &val(&a, &mut it)?)?,
            "--sample-every-ms" => {
                o.sample_every = Duration::from_millis(num(&a, &val(&a, &mut it)?)?)
            }
            "--bin" => o.bin = PathBuf::from(val(&a, &mut it)?),
            "--gw-arg" => o.gw_args.push(val(&a, &mut it)?),
            "--gw-env" => {
                let v = val(&a, &mut it)?;
                let (k, x) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--gw-env wants K=V, got {v:?}"))?;
                o.gw_env.push((k.to_string(), x.to_string()));
            }
            "--label" => o.label = val(&a, &mut it)?,
            "--src-ips" => o.src_ips = num(&a, &val(&a, &mut it)?)?,
            "--no-pin" => o.pin = false,
            "--out" => o.out = PathBuf::from(val(&a, &mut it)?),
            "--attach" => {
                let v = val(&a, &mut it)?;
                attach_addr = Some(v.parse().map_err(|e| format!("--attach {v:?}: {e}"))?);
            }
            "--attach-pid" => attach_pid = Some(num(&a, &val(&a, &mut it)?)?),
            "--burst-kib" => o.burst_kib = num(&a, &val(&a, &mut it)?)?,
            "--burst-secs" => {
                let s: f64 = num(&a, &val(&a, &mut it)?)?;
                if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
                    return Err("--burst-secs must be in (0, 3600]".into());
                }
                o.burst_secs = Duration::from_secs_f64(s);
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    match (attach_addr, attach_pid) {
        (None, None) => {}
        (Some(a), Some(p)) => {
            if o.runs != 1 || o.conns.len() != 1 {
                return Err("--attach measures one run of one --conns value".into());
            }
            o.attach = Some((a, p));
        }
        _ => return Err("--attach and --attach-pid go together".into()),
    }
    if o.conns.is_empty() || o.conns.iter().any(|&n| n == 0 || n > MAX_CONNS) {
        return Err(format!(
            "--conns must be in 1..={MAX_CONNS}: this process holds one socket per connection \
             and may have at most ~19.9k"
        ));
    }
    if o.runs == 0 || o.symbols == 0 || o.concurrency == 0 || o.samples == 0 {
        return Err("--runs, --symbols, --concurrency and --samples must be at least 1".into());
    }
    if o.burst_kib > 100 {
        return Err(
            "--burst-kib must be in 1..=100 (0: off): a session holds at most 500 symbols".into(),
        );
    }
    if o.burst_kib > 0 && o.attach.is_some() {
        return Err("--burst-kib starts the gateway with its own config: not with --attach".into());
    }
    if o.src_ips == 0 || o.src_ips > 250 {
        return Err("--src-ips must be in 1..=250".into());
    }
    if o.attach.is_none() {
        common::check_gateway_bin(&o.bin)?;
    }
    Ok(o)
}

// --------------------------------------------------------------- burst mode

/// Burst mode's feed: its symbols (`B000`..), and the ingest key that
/// fills it (the sample key of feeds/http.toml) with its SHA-256.
const BURST_SYMBOLS: usize = 500;
const INGEST_KEY: &str = "change-me";
const INGEST_KEY_SHA256: &str = "e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f";

fn burst_names() -> Vec<String> {
    (0..BURST_SYMBOLS).map(|i| format!("B{i:03}")).collect()
}

/// Burst mode's gateway config: one `http` feed that never goes stale, so
/// nothing moves unless this tool pushes.
fn burst_config() -> String {
    let names: Vec<String> = burst_names().iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[[feeds]]\n\
         kind = \"http\"\n\
         name = \"burst\"\n\
         key_sha256 = \"{INGEST_KEY_SHA256}\"\n\
         symbols = [{}]\n\
         stale_after_ms = 0\n",
        names.join(", ")
    )
}

/// Burst mode: one quote for every symbol of the feed, pushed once.
fn fill_burst_feed(addr: SocketAddr) -> Result<(), BoxError> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let body: String = burst_names()
        .iter()
        .map(|n| {
            format!(
                "{{\"symbol\":\"{n}\",\"bid\":\"100.00\",\"bid_size\":\"100\",\"ask\":\"100.01\",\
                 \"ask_size\":\"100\",\"last\":\"100.00\",\"last_size\":\"100\",\"ts\":{ts}}}\n"
            )
        })
        .collect();
    let auth = format!("Bearer {INGEST_KEY}");
    let reply = http_post(
        addr,
        "/v1/ingest",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        body.as_bytes(),
    )?;
    let v: serde_json::Value = serde_json::from_str(&reply)?;
    if v["accepted"].as_u64() != Some(BURST_SYMBOLS as u64) {
        return Err(format!("POST /v1/ingest: {reply}").into());
    }
    Ok(())
}

/// Burst mode: bytes per symbol of a snapshot (the quote, and the name in
/// the `subscribed` reply that opens the frame), from one probe connection
/// subscribing to every symbol of the feed with a snapshot. It is closed
/// before the baseline.
async fn probe_snapshot_bytes(gw: SocketAddr) -> Result<f64, BoxError> {
    let tcp = tokio::net::TcpStream::connect(gw).await?;
    let url = format!("ws://{gw}/v1/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
    let op = serde_json::json!({"op": "subscribe", "id": 0, "symbols": burst_names()});
    ws.send(Message::Text(op.to_string().into())).await?;
    let (mut bytes, mut quotes) = (0usize, 0usize);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while quotes < BURST_SYMBOLS {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "probe: no whole snapshot within 20 s")?;
        match msg {
            Some(Ok(Message::Text(t))) if !t.contains("\"type\":\"welcome\"") => {
                if t.contains("\"type\":\"error\"") {
                    return Err(format!("probe: {t}").into());
                }
                bytes += t.len();
                quotes += t.matches("\"type\":\"quote\"").count();
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("probe: connection ended".into()),
        }
    }
    let _ = ws.close(None).await;
    Ok(bytes as f64 / quotes as f64)
}

/// What the burst left behind.
#[derive(Debug, Clone)]
struct BurstResult {
    kib: usize,
    /// Symbols each connection held and got in its snapshot.
    symbols: usize,
    /// The probe's bytes per symbol.
    bytes_per_symbol: f64,
    /// The before-burst baseline: the idle samples' median.
    base: Mem,
    /// From the trigger until every connection had its whole snapshot.
    deliver_secs: f64,
    /// Text bytes and frames each connection read in the burst.
    bytes_per_conn: f64,
    frames_per_conn: f64,
    /// (seconds since the trigger, memory): every 100 ms until delivered,
    /// then every `--sample-every-ms` for `--burst-secs`.
    samples: Vec<(f64, Mem)>,
    peak_rss: u64,
    last: Mem,
    peak_kib_per_conn: f64,
    last_kib_per_conn: f64,
    last_anon_kib_per_conn: f64,
    slab_before_burst_kib: u64,
    slab_after_kib: u64,
    tool_rss_kib: u64,
}

/// Fires the burst (`go`) and samples the gateway's memory until every
/// connection has its whole snapshot and for `o.burst_secs` after.
#[allow(clippy::too_many_arguments)]
async fn run_burst(
    o: &Opts,
    pid: u32,
    n: usize,
    symbols: usize,
    bytes_per_symbol: f64,
    go: &watch::Sender<bool>,
    c: &Counters,
    base: Mem,
) -> Result<BurstResult, BoxError> {
    let slab_before_burst_kib = slab_kib();
    let t0 = Instant::now();
    go.send(true)?;
    let mut samples = Vec::new();
    let deadline = t0 + Duration::from_secs(60 + n as u64 / 100);
    loop {
        samples.push((t0.elapsed().as_secs_f64(), read_mem(pid)?));
        let done = c.burst_done.load(Ordering::Relaxed);
        if done >= n {
            break;
        }
        let dropped = c.dropped.load(Ordering::Relaxed);
        if dropped > 0 || Instant::now() > deadline {
            return Err(format!(
                "only {done} of {n} connections got their whole snapshot ({dropped} closed)"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliver_secs = t0.elapsed().as_secs_f64();
    let start = Instant::now();
    let every = o.sample_every.max(Duration::from_millis(10));
    let count = (o.burst_secs.as_secs_f64() / every.as_secs_f64())
        .ceil()
        .max(1.0) as u32;
    for k in 1..=count {
        tokio::time::sleep_until((start + every * k).into()).await;
        samples.push((t0.elapsed().as_secs_f64(), read_mem(pid)?));
    }
    let last = samples.last().map_or(base, |s| s.1);
    let peak_rss = samples.iter().map(|s| s.1.rss).max().unwrap_or(0);
    let per = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    Ok(BurstResult {
        kib: o.burst_kib,
        symbols,
        bytes_per_symbol,
        base,
        deliver_secs,
        bytes_per_conn: c.burst_bytes.load(Ordering::Relaxed) as f64 / n as f64,
        frames_per_conn: c.burst_frames.load(Ordering::Relaxed) as f64 / n as f64,
        peak_rss,
        last,
        peak_kib_per_conn: per(peak_rss, base.rss),
        last_kib_per_conn: per(last.rss, base.rss),
        last_anon_kib_per_conn: per(last.anon, base.anon),
        samples,
        slab_before_burst_kib,
        slab_after_kib: slab_kib(),
        tool_rss_kib: self_rss_kib(),
    })
}

/// The gateway under measurement: one this tool started (killed on
/// drop), or with `--attach` one it did not.
struct Gateway {
    _proc: Option<GatewayProc>,
    pid: u32,
    addr: SocketAddr,
}

impl Gateway {
    fn start(o: &Opts, max_conns: usize) -> Result<Gateway, BoxError> {
        if let Some((addr, pid)) = o.attach {
            return Ok(Gateway {
                _proc: None,
                pid,
                addr,
            });
        }
        // The per-address connection limit protects a public gateway; the
        // tool opens thousands of connections from a few loopback
        // addresses, so it lifts that limit.
        let mut args: Vec<String> = ["--sim-rate", "0", "--conn-rate-per-ip", "1000000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push("--max-connections".into());
        args.push((max_conns + 100).to_string());
        args.extend(o.gw_args.iter().cloned());
        let config = (o.burst_kib > 0).then(burst_config);
        let p = GatewayProc::spawn(&o.bin, o.pin, config.as_deref(), &args, &o.gw_env)?;
        Ok(Gateway {
            pid: p.pid,
            addr: p.addr,
            _proc: Some(p),
        })
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Fields of /proc/PID/status in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss: u64,
    anon: u64,
    threads: u64,
}

fn read_mem(pid: u32) -> Result<Mem, BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut m = Mem::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let key = f.next().unwrap_or("");
        let v: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "VmRSS:" => m.rss = v,
            "RssAnon:" => m.anon = v,
            "Threads:" => m.threads = v,
            _ => {}
        }
    }
    if m.rss == 0 {
        return Err(format!("no VmRSS in /proc/{pid}/status").into());
    }
    Ok(m)
}

/// Kernel slab memory (`Slab:` in /proc/meminfo), KiB. Socket structures
/// live there, outside any process's RSS; both ends of every connection
/// are on this machine, so a delta covers two sockets per connection.
fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Slab:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn self_rss_kib() -> u64 {
    read_mem(std::process::id()).map_or(0, |m| m.rss)
}

fn connections_gauge(addr: SocketAddr) -> Result<u64, BoxError> {
    let body = http_get(addr, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix("tickergate_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| "no tickergate_connections in /metrics".into())
}

// ------------------------------------------------------------------ clients

struct Counters {
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// Connections the server closed (or that errored) after being ready.
    dropped: AtomicUsize,
    frames: AtomicUsize,
    /// Burst mode: connections that have their whole snapshot, and the
    /// text frames and bytes they read for it.
    burst_done: AtomicUsize,
    burst_frames: AtomicUsize,
    burst_bytes: AtomicU64,
}

/// One client: connect from `src`, handshake, subscribe, then read until
/// aborted. In burst mode (`burst`) it subscribes without a snapshot, and
/// when the burst fires subscribes again to the same symbols with one and
/// counts what it reads until the whole snapshot is in.
#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    gw: SocketAddr,
    src: Ipv4Addr,
    symbols: Arc<Vec<String>>,
    k: usize,
    sem: Arc<Semaphore>,
    c: Arc<Counters>,
    mut burst: Option<watch::Receiver<bool>>,
) {
    let permit = sem.acquire_owned().await;
    let names: Vec<&str> = (0..k)
        .map(|j| symbols[(i * k + j) % symbols.len()].as_str())
        .collect();
    let ws = async {
        let tcp = tickergate_loadgen::tcp_from(src, gw).await?;
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let url = format!("ws://{gw}/v1/ws");
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(cfg)).await?;
        let mut op = serde_json::json!({"op": "subscribe", "id": i, "symbols": names});
        if burst.is_some() {
            op["snapshot"] = false.into();
        }
        ws.send(Message::Text(op.to_string().into())).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| "no `subscribed` within 30 s")?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.contains("\"type\":\"subscribed\"") {
                        break;
                    }
                    if t.contains("\"type\":\"error\"") {
                        return Err(format!("server error: {t}").into());
                    }
                }
                Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}").into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection ended before `subscribed`".into()),
            }
        }
        Ok::<_, BoxError>(ws)
    }
    .await;
    drop(permit);
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            if c.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("  connection {i} from {src} failed: {e}");
            }
            return;
        }
    };
    c.ready.fetch_add(1, Ordering::Relaxed);
    // Snapshot quotes still to come in the burst (`None`: not fired).
    let mut burst_left: Option<usize> = None;
    // Keep reading: heartbeats every 5 s; pings are answered by tungstenite.
    loop {
        let msg = match burst.as_mut() {
            Some(go) => {
                let fired = std::pin::pin!(go.wait_for(|go| *go));
                match select(ws.next(), fired).await {
                    Either::Left((msg, _)) => Some(msg),
                    Either::Right((fired, _)) => {
                        if fired.is_ok() {
                            burst_left = Some(k);
                        }
                        None
                    }
                }
            }
            None => Some(ws.next().await),
        };
        let Some(msg) = msg else {
            burst = None;
            if burst_left.is_some() {
                let op = serde_json::json!({"op": "subscribe", "id": i, "symbols": names});
                if ws.send(Message::Text(op.to_string().into())).await.is_err() {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            continue;
        };
        match msg {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(m)) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
                if let (Some(left), Message::Text(t)) = (burst_left.as_mut(), &m) {
                    c.burst_frames.fetch_add(1, Ordering::Relaxed);
                    c.burst_bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                    *left = left.saturating_sub(t.matches("\"type\":\"quote\"").count());
                    if *left == 0 {
                        burst_left = None;
                        c.burst_done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

// --------------------------------------------------------------------- runs

#[derive(Debug, Clone)]
struct RunResult {
    conns: usize,
    run: usize,
    before: Mem,
    after_samples: Vec<Mem>,
    after_rss_median: u64,
    per_conn_kib: f64,
    per_conn_anon_kib: f64,
    connect_secs: f64,
    gauge: u64,
    client_rss_kib: u64,
    slab_before_kib: u64,
    slab_after_kib: u64,
    heartbeat_frames: usize,
    burst: Option<BurstResult>,
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn one_run(o: &Opts, n: usize, run: usize) -> Result<RunResult, BoxError> {
    let gw = Gateway::start(o, n)?;
    let addr = gw.addr;
    let pid = gw.pid();
    let symbols: Vec<String> = {
        let body = tokio::task::spawn_blocking(move || http_get(addr, "/v1/symbols")).await??;
        serde_json::from_str(&body)?
    };
    if symbols.len() < o.symbols {
        return Err(format!(
            "the gateway knows {} symbols, fewer than --symbols {}",
            symbols.len(),
            o.symbols
        )
        .into());
    }
    // Burst mode: fill the feed, then pick the symbols whose snapshot
    // makes about --burst-kib.
    let (symbols, k, burst_sizing) = if o.burst_kib > 0 {
        tokio::task::spawn_blocking(move || fill_burst_feed(addr)).await??;
        let per_symbol = probe_snapshot_bytes(addr).await?;
        let k = (o.burst_kib as f64 * 1024.0 / per_symbol).round().max(1.0) as usize;
        if k > BURST_SYMBOLS {
            return Err(format!(
                "--burst-kib {} needs {k} symbols per connection at {per_symbol:.0} bytes each, \
                 more than the {BURST_SYMBOLS} a session may hold",
                o.burst_kib
            )
            .into());
        }
        (burst_names(), k, Some(per_symbol))
    } else {
        (symbols, o.symbols, None)
    };
    let symbols = Arc::new(symbols);
    let (go, go_rx) = watch::channel(false);
    // Let start-up allocations settle (and, with a non-zero sim rate, the
    // slots fill), then take the baseline.
    tokio::time::sleep(o.warmup).await;
    let mut base = Vec::new();
    for _ in 0..3 {
        base.push(read_mem(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = Mem {
        rss: median_u64(&base.iter().map(|m| m.rss).collect::<Vec<_>>()),
        anon: median_u64(&base.iter().map(|m| m.anon).collect::<Vec<_>>()),
        threads: base[base.len() - 1].threads,
    };
    let slab_before_kib = slab_kib();

    let counters = Arc::new(Counters {
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        frames: AtomicUsize::new(0),
        burst_done: AtomicUsize::new(0),
        burst_frames: AtomicUsize::new(0),
        burst_bytes: AtomicU64::new(0),
    });
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    for i in 0..n {
        let src = Ipv4Addr::new(127, 0, 0, 2 + (i % o.src_ips) as u8);
        set.spawn(client(
            i,
            addr,
            src,
            symbols.clone(),
            k,
            sem.clone(),
            counters.clone(),
            burst_sizing.map(|_| go_rx.clone()),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 50);
    loop {
        let done = counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
        if done >= n {
            break;
        }
        if Instant::now() > deadline {
            set.shutdown().await;
            return Err(format!("only {done} of {n} connections finished in time").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        set.shutdown().await;
        return Err(format!("{failed} of {n} connections failed").into());
    }
    let frames_at_ready = counters.frames.load(Ordering::Relaxed);

    tokio::time::sleep(o.settle).await;
    let mut after_samples = Vec::new();
    for s in 0..o.samples {
        if s > 0 {
            tokio::time::sleep(o.sample_every).await;
        }
        after_samples.push(read_mem(pid)?);
    }
    let gauge = tokio::task::spawn_blocking(move || connections_gauge(addr)).await??;
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let heartbeat_frames = counters.frames.load(Ordering::Relaxed) - frames_at_ready;
    let client_rss_kib = self_rss_kib();
    let slab_after_kib = slab_kib();
    let after_rss_median = median_u64(&after_samples.iter().map(|m| m.rss).collect::<Vec<_>>());
    let after_anon = median_u64(&after_samples.iter().map(|m| m.anon).collect::<Vec<_>>());
    let burst = match burst_sizing {
        Some(per_symbol) if dropped == 0 && gauge == n as u64 => {
            let base = Mem {
                rss: after_rss_median,
                anon: after_anon,
                threads: after_samples.last().map_or(0, |m| m.threads),
            };
            let b = run_burst(o, pid, n, k, per_symbol, &go, &counters, base).await;
            let dropped = counters.dropped.load(Ordering::Relaxed);
            if dropped > 0 {
                return Err(format!("{dropped} connections were closed after the burst").into());
            }
            Some(b?)
        }
        _ => None,
    };
    // Kill the gateway first (one signal), then drop the clients.
    drop(gw);
    set.shutdown().await;
    if dropped > 0 {
        return Err(format!("{dropped} connections were closed while idle").into());
    }
    if gauge != n as u64 {
        return Err(format!("the gateway reports {gauge} sessions, expected {n}").into());
    }
    Ok(RunResult {
        conns: n,
        run,
        before,
        per_conn_kib: (after_rss_median as f64 - before.rss as f64) / n as f64,
        per_conn_anon_kib: (after_anon as f64 - before.anon as f64) / n as f64,
        after_samples,
        after_rss_median,
        connect_secs,
        gauge,
        client_rss_kib,
        slab_before_kib,
        slab_after_kib,
        heartbeat_frames,
        burst,
    })
}

fn print_burst(n: usize, b: &BurstResult) {
    // After delivery (the 100 ms samples before it are in the peak).
    let rss: Vec<u64> = b
        .samples
        .iter()
        .filter(|s| s.0 > b.deliver_secs)
        .map(|s| s.1.rss)
        .collect();
    println!(
        "  conns {:>6} burst: {} symbols/conn ({:.0} B each), {:.1} KiB in {:.2} frames per conn, all delivered in {:.1} s; \
         RSS {} KiB before -> peak {} KiB (+{:.2} KiB/conn) -> {} KiB {:.0} s after (+{:.2} KiB/conn, anon +{:.2}); \
         tool RSS {} KiB, kernel slab +{:.2} KiB/conn since before the burst (both ends)",
        n,
        b.symbols,
        b.bytes_per_symbol,
        b.bytes_per_conn / 1024.0,
        b.frames_per_conn,
        b.deliver_secs,
        b.base.rss,
        b.peak_rss,
        b.peak_kib_per_conn,
        b.last.rss,
        b.samples.last().map_or(0.0, |s| s.0),
        b.last_kib_per_conn,
        b.last_anon_kib_per_conn,
        b.tool_rss_kib,
        (b.slab_after_kib as f64 - b.slab_before_burst_kib as f64) / n as f64,
    );
    println!("    RSS after delivery, KiB: {rss:?}");
}

fn burst_json(n: usize, b: &BurstResult) -> serde_json::Value {
    serde_json::json!({
        "kib": b.kib,
        "symbols_per_conn": b.symbols,
        "probe_bytes_per_symbol": b.bytes_per_symbol,
        "bytes_per_conn": b.bytes_per_conn,
        "frames_per_conn": b.frames_per_conn,
        "deliver_secs": b.deliver_secs,
        "rss_baseline_kib": b.base.rss,
        "anon_baseline_kib": b.base.anon,
        "samples_secs_rss_anon_kib": b.samples.iter().map(|(t, m)| (*t, m.rss, m.anon)).collect::<Vec<_>>(),
        "rss_peak_kib": b.peak_rss,
        "rss_last_kib": b.last.rss,
        "anon_last_kib": b.last.anon,
        "peak_kib_per_conn": b.peak_kib_per_conn,
        "last_kib_per_conn": b.last_kib_per_conn,
        "last_anon_kib_per_conn": b.last_anon_kib_per_conn,
        "kernel_slab_before_kib": b.slab_before_burst_kib,
        "kernel_slab_after_kib": b.slab_after_kib,
        "kernel_slab_kib_per_conn_both_ends":
            (b.slab_after_kib as f64 - b.slab_before_burst_kib as f64) / n as f64,
        "tool_rss_kib": b.tool_rss_kib,
    })
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    serde_json::json!({"cpu": cpu, "kernel": kernel, "cpus_visible_to_tool": cpus})
}

async fn main_async(o: Opts) -> Result<(), BoxError> {
    println!(
        "idle_conns: gateway {} ({}), {}, {} in flight, settle {:?}, {} samples every {:?}{}",
        o.bin.display(),
        if o.pin && common::have_taskset() {
            "gateway on core 0, tool on core 1"
        } else {
            "not pinned"
        },
        if o.burst_kib > 0 {
            format!(
                "burst mode: a ~{} KiB snapshot per conn, sampled for {:?} after",
                o.burst_kib, o.burst_secs
            )
        } else {
            format!("{} symbols/conn", o.symbols)
        },
        o.concurrency,
        o.settle,
        o.samples,
        o.sample_every,
        if o.gw_env.is_empty() && o.gw_args.is_empty() {
            String::new()
        } else {
            format!(", gateway env {:?} args {:?}", o.gw_env, o.gw_args)
        }
    );
    let mut results: Vec<RunResult> = Vec::new();
    for &n in &o.conns {
        for run in 1..=o.runs {
            let r = one_run(&o, n, run).await?;
            println!(
                "  conns {:>6} run {}: RSS {:>8} KiB -> {:>8} KiB (samples {:?}), \
                 {:.2} KiB/conn (anon {:.2}), connected in {:.1} s, {} heartbeat frames, tool RSS {} KiB, kernel slab +{:.2} KiB/conn (both ends)",
                n,
                run,
                r.before.rss,
                r.after_rss_median,
                r.after_samples.iter().map(|m| m.rss).collect::<Vec<_>>(),
                r.per_conn_kib,
                r.per_conn_anon_kib,
                r.connect_secs,
                r.heartbeat_frames,
                r.client_rss_kib,
                (r.slab_after_kib as f64 - r.slab_before_kib as f64) / n as f64,
            );
            if let Some(b) = &r.burst {
                print_burst(n, b);
            }
            results.push(r);
        }
    }

    println!();
    println!(
        "{:>7} {:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "conns", "runs", "RSS before", "RSS after", "delta MiB", "KiB/conn", "min", "max"
    );
    let mut summary = Vec::new();
    let mut burst_rows = Vec::new();
    for &n in &o.conns {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.conns == n).collect();
        let per: Vec<f64> = rs.iter().map(|r| r.per_conn_kib).collect();
        let anon: Vec<f64> = rs.iter().map(|r| r.per_conn_anon_kib).collect();
        let med = median_f64(&per);
        let min = per.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = per.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let before = median_u64(&rs.iter().map(|r| r.before.rss).collect::<Vec<_>>());
        let after = median_u64(&rs.iter().map(|r| r.after_rss_median).collect::<Vec<_>>());
        println!(
            "{:>7} {:>5} {:>9} KiB {:>9} KiB {:>12.1} {:>12.2} {:>12.2} {:>12.2}",
            n,
            rs.len(),
            before,
            after,
            (after as f64 - before as f64) / 1024.0,
            med,
            min,
            max
        );
        let mut row = serde_json::json!({
            "conns": n,
            "runs": rs.len(),
            "kib_per_conn_median": med,
            "kib_per_conn_min": min,
            "kib_per_conn_max": max,
            "anon_kib_per_conn_median": median_f64(&anon),
            "rss_before_kib_median": before,
            "rss_after_kib_median": after,
        });
        let bs: Vec<&BurstResult> = rs.iter().filter_map(|r| r.burst.as_ref()).collect();
        if !bs.is_empty() {
            let m = |g: &dyn Fn(&BurstResult) -> f64| {
                median_f64(&bs.iter().map(|b| g(b)).collect::<Vec<_>>())
            };
            row["burst_last_kib_per_conn_median"] = m(&|b| b.last_kib_per_conn).into();
            row["burst_last_anon_kib_per_conn_median"] = m(&|b| b.last_anon_kib_per_conn).into();
            row["burst_peak_kib_per_conn_median"] = m(&|b| b.peak_kib_per_conn).into();
            row["burst_bytes_per_conn_median"] = m(&|b| b.bytes_per_conn).into();
            burst_rows.push((
                n,
                bs.len(),
                m(&|b| b.bytes_per_conn),
                m(&|b| b.peak_kib_per_conn),
                m(&|b| b.last_kib_per_conn),
                m(&|b| b.last_anon_kib_per_conn),
            ));
        }
        summary.push(row);
    }
    if !burst_rows.is_empty() {
        println!();
        println!(
            "{:>7} {:>5} {:>14} {:>16} {:>16} {:>16}",
            "conns", "runs", "burst KiB/conn", "peak KiB/conn", "last KiB/conn", "last anon"
        );
        for (n, runs, bytes, peak, last, anon) in burst_rows {
            println!(
                "{n:>7} {runs:>5} {:>14.1} {peak:>16.2} {last:>16.2} {anon:>16.2}",
                bytes / 1024.0
            );
        }
        println!("(above the before-burst baseline; the target is <= 4 KiB/conn)");
    }
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let mut run = serde_json::json!({
                "conns": r.conns,
                "run": r.run,
                "rss_before_kib": r.before.rss,
                "anon_before_kib": r.before.anon,
                "threads": r.after_samples.last().map_or(0, |m| m.threads),
                "rss_after_kib_samples": r.after_samples.iter().map(|m| m.rss).collect::<Vec<_>>(),
                "anon_after_kib_samples": r.after_samples.iter().map(|m| m.anon).collect::<Vec<_>>(),
                "rss_after_kib_median": r.after_rss_median,
                "kib_per_conn": r.per_conn_kib,
                "anon_kib_per_conn": r.per_conn_anon_kib,
                "connect_secs": r.connect_secs,
                "gateway_connections_gauge": r.gauge,
                "heartbeat_frames_during_sampling": r.heartbeat_frames,
                "tool_rss_kib": r.client_rss_kib,
                "kernel_slab_before_kib": r.slab_before_kib,
                "kernel_slab_after_kib": r.slab_after_kib,
                "kernel_slab_kib_per_conn_both_ends":
                    (r.slab_after_kib as f64 - r.slab_before_kib as f64) / r.conns as f64,
            });
            if let Some(b) = &r.burst {
                run["burst"] = burst_json(r.conns, b);
            }
            run
        })
        .collect();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gateway_args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--sim-rate",
        "0",
        "--max-connections",
        "N+100",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(o.gw_args.iter().cloned())
    .collect();
    let gateway_env: Vec<String> = o.gw_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let gateway_args: Vec<String> = if o.burst_kib > 0 {
        let mut a = vec![
            "--config".to_string(),
            "GENERATED (see gateway_config)".to_string(),
        ];
        a.extend(gateway_args);
        a
    } else {
        gateway_args
    };
    let doc = serde_json::json!({
        "bench": "idle_conns",
        "unix_time": unix,
        "label": o.label,
        "machine": machine(),
        "gateway_bin": o.bin.display().to_string(),
        "gateway_args": gateway_args,
        "gateway_env": gateway_env,
        "pinned": o.pin && common::have_taskset(),
        // Burst mode: see each run's `burst.symbols_per_conn`.
        "symbols_per_conn": if o.burst_kib > 0 { None } else { Some(o.symbols) },
        "concurrency": o.concurrency,
        "settle_ms": o.settle.as_millis() as u64,
        "warmup_ms": o.warmup.as_millis() as u64,
        "samples": o.samples,
        "sample_every_ms": o.sample_every.as_millis() as u64,
        "target_kib_per_conn": 4.0,
        "burst_kib": o.burst_kib,
        "burst_secs": o.burst_secs.as_secs_f64(),
        "gateway_config": if o.burst_kib > 0 { Some(burst_config()) } else { None },
        "summary": summary,
        "runs": runs,
    });
    common::write_json(&o.out, &doc)
}

fn main() -> ExitCode {
    common::run_tool(
        "idle_conns",
        parse_opts,
        |o: &Opts| o.pin,
        PIN_ENV,
        main_async,
    )
}
