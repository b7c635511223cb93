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

use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use tickergate_loadgen as common;

use common::{http_get, BoxError, GatewayProc};

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
}

fn usage() -> &'static str {
    "usage: idle_conns [--conns N[,N..]] [--runs R] [--symbols K] \
     [--concurrency C] [--settle-ms MS] [--warmup-ms MS] [--samples S] [--sample-every-ms MS] [--bin PATH] \
     [--gw-arg ARG].. [--gw-env K=V].. [--label TEXT] [--src-ips K] [--no-pin] [--out PATH] \
     [--attach ADDR --attach-pid PID]\n\
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
    if o.src_ips == 0 || o.src_ips > 250 {
        return Err("--src-ips must be in 1..=250".into());
    }
    if o.attach.is_none() {
        common::check_gateway_bin(&o.bin)?;
    }
    Ok(o)
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
        let p = GatewayProc::spawn(&o.bin, o.pin, None, &args, &o.gw_env)?;
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
}

/// One client: connect from `src`, handshake, subscribe, then read until
/// aborted.
async fn client(
    i: usize,
    gw: SocketAddr,
    src: Ipv4Addr,
    symbols: Arc<Vec<String>>,
    k: usize,
    sem: Arc<Semaphore>,
    c: Arc<Counters>,
) {
    let permit = sem.acquire_owned().await;
    let ws = async {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
        let tcp = sock.connect(gw).await?;
        tcp.set_nodelay(true)?;
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let url = format!("ws://{gw}/v1/ws");
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(cfg)).await?;
        let names: Vec<&str> = (0..k)
            .map(|j| symbols[(i * k + j) % symbols.len()].as_str())
            .collect();
        let op = serde_json::json!({"op": "subscribe", "id": i, "symbols": names}).to_string();
        ws.send(Message::Text(op.into())).await?;
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
    // Keep reading: heartbeats every 5 s; pings are answered by tungstenite.
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
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
    let symbols = Arc::new(symbols);
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
            o.symbols,
            sem.clone(),
            counters.clone(),
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
    // Kill the gateway first (one signal), then drop the clients.
    drop(gw);
    set.shutdown().await;
    if dropped > 0 {
        return Err(format!("{dropped} connections were closed while idle").into());
    }
    if gauge != n as u64 {
        return Err(format!("the gateway reports {gauge} sessions, expected {n}").into());
    }
    let after_rss_median = median_u64(&after_samples.iter().map(|m| m.rss).collect::<Vec<_>>());
    let after_anon = median_u64(&after_samples.iter().map(|m| m.anon).collect::<Vec<_>>());
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
        "idle_conns: gateway {} ({}), {} symbols/conn, {} in flight, settle {:?}, {} samples every {:?}{}",
        o.bin.display(),
        if o.pin && common::have_taskset() { "gateway on core 0, tool on core 1" } else { "not pinned" },
        o.symbols,
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
            results.push(r);
        }
    }

    println!();
    println!(
        "{:>7} {:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "conns", "runs", "RSS before", "RSS after", "delta MiB", "KiB/conn", "min", "max"
    );
    let mut summary = Vec::new();
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
        summary.push(serde_json::json!({
            "conns": n,
            "runs": rs.len(),
            "kib_per_conn_median": med,
            "kib_per_conn_min": min,
            "kib_per_conn_max": max,
            "anon_kib_per_conn_median": median_f64(&anon),
            "rss_before_kib_median": before,
            "rss_after_kib_median": after,
        }));
    }
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
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
            })
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
    let doc = serde_json::json!({
        "bench": "idle_conns",
        "unix_time": unix,
        "label": o.label,
        "machine": machine(),
        "gateway_bin": o.bin.display().to_string(),
        "gateway_args": gateway_args,
        "gateway_env": gateway_env,
        "pinned": o.pin && common::have_taskset(),
        "symbols_per_conn": o.symbols,
        "concurrency": o.concurrency,
        "settle_ms": o.settle.as_millis() as u64,
        "warmup_ms": o.warmup.as_millis() as u64,
        "samples": o.samples,
        "sample_every_ms": o.sample_every.as_millis() as u64,
        "target_kib_per_conn": 4.0,
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
