//! Memory of the gateway under a connection spray from many source
//! addresses: the per-address connection limiter holds one entry per
//! address until it is pruned, so its state must stay bounded.
//!
//! ```text
//! cargo build --release      # the gateway binary it starts: target/release/tickergate
//! cargo run --release -p tickergate-loadgen --bin spray -- --addrs 20000 --per-addr 2
//! cargo run --release -p tickergate-loadgen --bin spray -- --prune-ms 3600000   # contrast: never pruned
//! ```
//!
//! Starts the `tickergate` binary (pinned to core 0 with `taskset -c 0` when
//! taskset exists; this tool re-executes itself under `taskset -c 1`), idle
//! (`--sim-rate 0`), with `server.conn_limiter_prune_ms` from `--prune-ms`.
//! After `--warmup-ms` it records the gateway's RSS (`VmRSS` in
//! /proc/PID/status), then from source addresses 127.0.1.2, 127.0.1.3, ...
//! (`--addrs` of them) opens `--per-addr` connections each, at most
//! `--concurrency` in flight; each sends `GET /healthz` with
//! `Connection: close` and reads the answer (5 s limit per connection). A
//! sampler reads RSS and `tickergate_limiter_keys` every 100 ms during the
//! spray; afterwards it waits `--after-ms` (default: two prune intervals
//! plus 3 s, so every bucket has refilled and been pruned) and samples
//! again. Reports RSS before / peak / after and limiter keys peak / after,
//! on stdout and as JSON in `results/spray.json` in the workspace root (or
//! `--out`).
//!
//! Bounded: at most 200,000 connections, `--max-secs` for the spray (it
//! stops launching when that passes), and the gateway child is killed on
//! exit, error or panic (a Drop guard).
//!
//! Options (defaults in brackets):
//!   --addrs N        distinct source addresses [20000, max 60000]
//!   --per-addr K     connections per address [2]
//!   --concurrency C  connections in flight [256]
//!   --prune-ms MS    gateway server.conn_limiter_prune_ms [5000]
//!   --after-ms MS    wait after the spray before the final sample
//!   --warmup-ms MS   wait after start before the baseline [1000]
//!   --max-secs S     spray time limit [120]
//!   --bin PATH       gateway binary [target/release/tickergate in the
//!                    workspace, or under $CARGO_TARGET_DIR if set]
//!   --no-pin         do not use taskset
//!   --out PATH       JSON output [results/spray.json in the workspace root]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

use tickergate_loadgen as common;

use common::{metric, rss_kib, BoxError, GatewayProc};

const PIN_ENV: &str = "TICKERGATE_SPRAY_PINNED";
const MAX_TOTAL: usize = 200_000;

#[derive(Debug, Clone)]
struct Opts {
    addrs: usize,
    per_addr: usize,
    concurrency: usize,
    prune_ms: u64,
    after_ms: Option<u64>,
    warmup: Duration,
    max_secs: u64,
    bin: PathBuf,
    pin: bool,
    out: PathBuf,
}

fn usage() -> &'static str {
    "usage: spray [--addrs N] [--per-addr K] [--concurrency C] \
     [--prune-ms MS] [--after-ms MS] [--warmup-ms MS] [--max-secs S] [--bin PATH] [--no-pin] [--out PATH]\n\
     run it with: cargo run --release -p tickergate-loadgen --bin spray -- OPTIONS"
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        addrs: 20_000,
        per_addr: 2,
        concurrency: 256,
        prune_ms: 5_000,
        after_ms: None,
        warmup: Duration::from_millis(1000),
        max_secs: 120,
        bin: common::default_gateway_bin(),
        pin: true,
        out: common::results_dir().join("spray.json"),
    };
    let mut it = std::env::args().skip(1);
    let val =
        |flag: &str, it: &mut std::iter::Skip<std::env::Args>| common::arg_value(flag, it, usage());
    use common::arg_num as num;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addrs" => o.addrs = num(&a, &val(&a, &mut it)?)?,
            "--per-addr" => o.per_addr = num(&a, &val(&a, &mut it)?)?,
            "--concurrency" => o.concurrency = num(&a, &val(&a, &mut it)?)?,
            "--prune-ms" => o.prune_ms = num(&a, &val(&a, &mut it)?)?,
            "--after-ms" => o.after_ms = Some(num(&a, &val(&a, &mut it)?)?),
            "--warmup-ms" => o.warmup = Duration::from_millis(num(&a, &val(&a, &mut it)?)?),
            "--max-secs" => o.max_secs = num(&a, &val(&a, &mut it)?)?,
            "--bin" => o.bin = PathBuf::from(val(&a, &mut it)?),
            "--no-pin" => o.pin = false,
            "--out" => o.out = PathBuf::from(val(&a, &mut it)?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if o.addrs == 0 || o.addrs > 60_000 || o.per_addr == 0 || o.concurrency == 0 {
        return Err("--addrs in 1..=60000, --per-addr and --concurrency at least 1".into());
    }
    if o.addrs * o.per_addr > MAX_TOTAL {
        return Err(format!("--addrs x --per-addr must be at most {MAX_TOTAL}"));
    }
    if o.concurrency > 2_000 {
        return Err("--concurrency at most 2000 (file descriptors)".into());
    }
    if o.prune_ms == 0 || o.max_secs == 0 {
        return Err("--prune-ms and --max-secs must be at least 1".into());
    }
    common::check_gateway_bin(&o.bin)?;
    Ok(o)
}

/// The gateway, idle, with the limiter's prune period under test.
fn start_gateway(o: &Opts) -> Result<GatewayProc, BoxError> {
    let cfg = format!("[server]\nconn_limiter_prune_ms = {}\n", o.prune_ms);
    GatewayProc::spawn(
        &o.bin,
        o.pin,
        Some(&cfg),
        &["--sim-rate".into(), "0".into()],
        &[],
    )
}

fn src_addr(i: usize) -> IpAddr {
    IpAddr::V4(common::src_ip(i))
}

/// One connection from `src`: `GET /healthz`, read the answer. Returns
/// whether it got a 200.
async fn one(src: IpAddr, addr: SocketAddr) -> Result<bool, BoxError> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    let mut c = s.connect(addr).await?;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::with_capacity(256);
    c.read_to_end(&mut buf).await?;
    Ok(buf.starts_with(b"HTTP/1.1 200"))
}

#[derive(Default)]
struct Peak {
    rss: AtomicU64,
    keys: AtomicU64,
}

async fn main_async(o: Opts) -> Result<(), BoxError> {
    let gw = start_gateway(&o)?;
    let pid = gw.pid;
    tokio::time::sleep(o.warmup).await;
    let rss_before = rss_kib(pid);
    let keys_before = metric(gw.addr, "tickergate_limiter_keys")?;
    println!(
        "gateway pid {pid} on {} ({}); RSS before {rss_before} KiB, limiter keys {keys_before}",
        gw.addr,
        if o.pin && common::have_taskset() {
            "gateway on core 0, tool on core 1"
        } else {
            "not pinned"
        }
    );
    let peak = Arc::new(Peak::default());
    let done = Arc::new(AtomicBool::new(false));
    // Sampler on its own thread so a busy runtime cannot starve it.
    let sampler = {
        let (peak, done, addr) = (peak.clone(), done.clone(), gw.addr);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                if let Ok(k) = metric(addr, "tickergate_limiter_keys") {
                    peak.keys.fetch_max(k as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(o.max_secs);
    let mut launched = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    'outer: for round in 0..o.per_addr {
        for i in 0..o.addrs {
            if Instant::now() >= deadline {
                eprintln!("spray time limit reached after {launched} connections");
                break 'outer;
            }
            let permit = sem.clone().acquire_owned().await?;
            let (ok, refused, failed, addr) =
                (ok.clone(), refused.clone(), failed.clone(), gw.addr);
            tasks.spawn(async move {
                let r = tokio::time::timeout(Duration::from_secs(5), one(src_addr(i), addr)).await;
                match r {
                    Ok(Ok(true)) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Ok(false)) => refused.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                drop(permit);
            });
            launched += 1;
            while tasks.try_join_next().is_some() {}
            let _ = round;
        }
    }
    while tasks.join_next().await.is_some() {}
    let spray_secs = t0.elapsed().as_secs_f64();
    let limited = metric(gw.addr, "tickergate_conn_rate_limited_total")?;
    println!(
        "spray: {launched} connections from {} addresses in {spray_secs:.1} s: \
         {} ok, {} non-200, {} failed; conn_rate_limited_total {limited}",
        o.addrs,
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    let rss_end_spray = rss_kib(pid);
    let after = Duration::from_millis(o.after_ms.unwrap_or(2 * o.prune_ms + 3_000));
    println!("waiting {} ms for the limiter to prune", after.as_millis());
    tokio::time::sleep(after).await;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let rss_after = rss_kib(pid);
    let keys_after = metric(gw.addr, "tickergate_limiter_keys")?;
    let rss_peak = peak.rss.load(Ordering::Relaxed).max(rss_end_spray);
    let keys_peak = peak.keys.load(Ordering::Relaxed);
    println!();
    println!("| RSS before | RSS peak | RSS at spray end | RSS after prune | keys peak (gauge) | keys after |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {rss_before} KiB | {rss_peak} KiB | {rss_end_spray} KiB | {rss_after} KiB | {keys_peak} | {keys_after} |"
    );
    let doc = serde_json::json!({
        "tool": "spray",
        "addrs": o.addrs,
        "per_addr": o.per_addr,
        "concurrency": o.concurrency,
        "prune_ms": o.prune_ms,
        "connections": launched,
        "ok": ok.load(Ordering::Relaxed),
        "non_200": refused.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
        "conn_rate_limited_total": limited,
        "spray_secs": spray_secs,
        "rss_before_kib": rss_before,
        "rss_peak_kib": rss_peak,
        "rss_spray_end_kib": rss_end_spray,
        "rss_after_prune_kib": rss_after,
        "limiter_keys_peak": keys_peak,
        "limiter_keys_after": keys_after,
        "pinned": o.pin && common::have_taskset(),
    });
    common::write_json(&o.out, &doc)
}

fn main() -> ExitCode {
    common::run_tool("spray", parse_opts, |o: &Opts| o.pin, PIN_ENV, main_async)
}
