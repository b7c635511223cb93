//! Scale-out benchmarks (issue 18): the gateway's ingest and edge roles
//! against a real `nats-server`, each figure against a baseline measured
//! in the same invocation.
//!
//! ```text
//! cargo build --release
//! cargo run --release -p tickergate-loadgen --bin cluster -- edge-ingest --rate 500000,1000000
//! cargo run --release -p tickergate-loadgen --bin cluster -- latency --runs 3
//! cargo run --release -p tickergate-loadgen --bin cluster -- ingest-cost --runs 3
//! ```
//! (the board-burst workload on an edge: `loadgen --workload board-burst
//! --topology paired`).
//!
//! This tool re-executes itself under `taskset -c 1`; the node under test
//! runs on core 0 and everything else (nats-server, other nodes, the
//! publisher, the WebSocket client) on core 1.
//!
//! - `edge-ingest`: how many quotes/s an edge takes from NATS per core.
//!   nats-server (no JetStream stream: nothing is stored, NATS only
//!   routes) and an edge (core 0). A raw NATS publisher (this tool, core 1)
//!   publishes a feed status listing `--symbols` symbols (`SIM0`...) every
//!   500 ms, one WebSocket client subscribes to all of them with
//!   `max_hz` 1 (so the edge follows every symbol and fan-out costs
//!   little), then the publisher sends rounds of one quote per symbol,
//!   seq rising by one each round, at `--rate` quotes/s (0: as fast as
//!   it can write; pre-encoded, only the digits rewritten), as an ingest
//!   does: whole rounds (`<prefix>.r.`) to an edge that follows every
//!   quote (the default `wildcard_share`), each quote on its symbol's
//!   subject to one that follows one subscription per symbol
//!   (`--edge wildcard_share=2`). Over the
//!   window: quotes sent, the edge's `tickergate_cluster_received_total`,
//!   refused and overflow counts, and the edge's CPU (/proc/PID/stat),
//!   hence quotes per CPU-second (= per core) and CPU ns per quote.
//!   Each `--rate` (comma-separated) is run `--runs` times, each on a
//!   fresh nats-server and edge.
//! - `latency`: feed → client age (client receipt minus `gw_ts`, the
//!   ingest's accept stamp; one host clock) with one simulated feed of
//!   `--symbols` symbols at `--rate` updates/s, one client subscribed to
//!   every symbol (no `max_hz`), in pairs alternating the order:
//!   `standalone` (the gateway with the feed, core 0) and `edge` (ingest
//!   with the feed, nats-server and the client on core 1, the edge on
//!   core 0). Snapshots are left out.
//! - `ingest-cost`: CPU per quote of the same simulated feed (no clients)
//!   in a standalone gateway and in an ingest node publishing every quote
//!   to NATS (nats-server with its file-backed last-value stream on core
//!   1), in pairs alternating the order; the difference is the cost of
//!   publishing, per quote.
//!
//! Options: --runs R [3], --duration SECS [20], --warmup SECS [3],
//! --symbols N [edge-ingest 1000, latency 100, ingest-cost 1000],
//! --rate R[,R..] [edge-ingest 1000000, latency 10000, ingest-cost 100000],
//! --bin PATH [target/release/tickergate], --out FILE
//! [results/cluster/MODE.json], --no-pin.

use tickergate_loadgen as common;

use common::cluster::{self, metric_sum, NatsServer, QuoteRound, RawNats};
use common::{cpu_secs, latency_of, metric_text, BoxError, GatewayProc, LatencyMs};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PIN_ENV: &str = "TICKERGATE_CLUSTER_BENCH_PINNED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    EdgeIngest,
    Latency,
    IngestCost,
}

#[derive(Debug, Clone)]
struct Opts {
    mode: Mode,
    runs: usize,
    duration: Duration,
    warmup: Duration,
    symbols: usize,
    rates: Vec<f64>,
    bin: PathBuf,
    out: PathBuf,
    pin: bool,
    /// Lines added to the edge's `[cluster]` table (`--edge KEY=VALUE`).
    edge: Vec<String>,
    /// Lines added to the ingest's `[cluster]` table (`--ingest KEY=VALUE`).
    ingest: Vec<String>,
    /// The ingest's binary when it is not `bin` (`--ingest-bin`: an edge
    /// measured against another build's ingest).
    ingest_bin: Option<PathBuf>,
}

fn usage() -> &'static str {
    "usage: cluster edge-ingest|latency|ingest-cost [--runs R] [--duration SECS] [--warmup SECS] \
     [--symbols N] [--rate R[,R..]] [--bin PATH] [--out FILE] [--no-pin] [--edge KEY=VALUE].. [--ingest KEY=VALUE].. [--ingest-bin PATH]\n\
     (see tools/loadgen/src/bin/cluster.rs)"
}

fn parse_opts() -> Result<Opts, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("edge-ingest") => Mode::EdgeIngest,
        Some("latency") => Mode::Latency,
        Some("ingest-cost") => Mode::IngestCost,
        _ => return Err(usage().into()),
    };
    let (symbols, rate, name) = match mode {
        Mode::EdgeIngest => (1000, 1_000_000.0, "edge-ingest"),
        Mode::Latency => (100, 10_000.0, "latency"),
        Mode::IngestCost => (1000, 100_000.0, "ingest-cost"),
    };
    let mut o = Opts {
        mode,
        runs: 3,
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(3),
        symbols,
        rates: vec![rate],
        bin: common::default_gateway_bin(),
        out: common::results_dir()
            .join("cluster")
            .join(format!("{name}.json")),
        pin: true,
        edge: Vec::new(),
        ingest_bin: None,
        ingest: Vec::new(),
    };
    let val = |f: &str, it: &mut std::iter::Skip<std::env::Args>| common::arg_value(f, it, usage());
    use common::arg_num as num;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => o.runs = num(&a, &val(&a, &mut it)?)?,
            "--duration" => o.duration = Duration::from_secs_f64(num(&a, &val(&a, &mut it)?)?),
            "--warmup" => o.warmup = Duration::from_secs_f64(num(&a, &val(&a, &mut it)?)?),
            "--symbols" => o.symbols = num(&a, &val(&a, &mut it)?)?,
            "--rate" => {
                o.rates = val(&a, &mut it)?
                    .split(',')
                    .map(|r| num(&a, r))
                    .collect::<Result<_, _>>()?
            }
            "--bin" => o.bin = PathBuf::from(val(&a, &mut it)?),
            "--out" => o.out = PathBuf::from(val(&a, &mut it)?),
            "--no-pin" => o.pin = false,
            // A line of the edge's [cluster] table, e.g. round_hold_ms=0.
            "--edge" => o.edge.push(val(&a, &mut it)?.replacen('=', " = ", 1)),
            "--ingest" => o.ingest.push(val(&a, &mut it)?.replacen('=', " = ", 1)),
            "--ingest-bin" => o.ingest_bin = Some(PathBuf::from(val(&a, &mut it)?)),
            "-h" | "--help" => return Err(usage().into()),
            _ => return Err(format!("unknown option {a:?}\n{}", usage())),
        }
    }
    if !(1..=20).contains(&o.runs) || !(1..=10_000).contains(&o.symbols) {
        return Err("--runs must be in 1..=20, --symbols in 1..=10000".into());
    }
    if o.rates.is_empty() || o.rates.iter().any(|r| !(0.0..=1e8).contains(r)) {
        return Err("--rate must be in 0..=1e8 (0: as fast as possible)".into());
    }
    common::check_gateway_bin(&o.bin)?;
    Ok(o)
}

fn core(o: &Opts, c: usize) -> Option<usize> {
    o.pin.then_some(c)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Median, min and max of one figure over runs.
fn summary(runs: &[Value], key: &str) -> Value {
    let v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
    let (lo, hi) = range(&v);
    json!({"median": median(v), "min": lo, "max": hi})
}

/// A gateway config: one simulated feed (or none) plus extra tables.
fn sim_toml(symbols: usize, rate: f64) -> String {
    format!(
        "[[feeds]]\nkind = \"sim\"\nname = \"sim\"\nsymbols = {symbols}\nrate = {rate:.1}\n\
         zipf = 0.0\ntrade_ratio = 0.0\n"
    )
}

/// A WebSocket client subscribed to `names` (one op each 500 names) with
/// `max_hz`, retrying while the gateway does not know them yet; then it
/// reads every frame, recording each non-snapshot quote's age (µs) into
/// `hist` when given.
async fn ws_client(
    gw: SocketAddr,
    names: Vec<String>,
    max_hz: Option<f64>,
    hist: Option<Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>>,
    ready: Arc<AtomicBool>,
    quotes: Arc<AtomicU64>,
) -> Result<(), BoxError> {
    let t0 = Instant::now();
    // Subscribe once the gateway lists every name (an edge learns them
    // from feed status): a subscribe full of unknown symbols is a flood
    // of errors.
    loop {
        let list = common::http_get(gw, "/v1/symbols")?;
        if names.iter().all(|n| list.contains(&format!("\"{n}\""))) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the gateway did not list the symbols within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gw}/v1/ws")).await?;
    let mut pending: Vec<&[String]> = names.chunks(500).collect();
    let mut id = 0u64;
    while !pending.is_empty() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the gateway did not learn the symbols within 30 s".into());
        }
        let mut again = Vec::new();
        for chunk in pending {
            id += 1;
            let mut op = json!({"op": "subscribe", "id": id, "symbols": chunk});
            if let Some(hz) = max_hz {
                op["max_hz"] = json!(hz);
            }
            ws.send(Message::Text(op.to_string().into())).await?;
            // The reply: `subscribed` with this id, or errors for it.
            let mut unknown = false;
            loop {
                let m = ws.next().await.ok_or("closed while subscribing")??;
                if let Message::Close(c) = &m {
                    return Err(format!("closed while subscribing: {c:?}").into());
                }
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t)?;
                let mut done = false;
                for m in v.as_array().into_iter().flatten() {
                    if m["id"].as_u64() != Some(id) {
                        continue;
                    }
                    match m["type"].as_str() {
                        Some("subscribed") => done = true,
                        Some("error") if m["code"] == "unknown_symbol" => unknown = true,
                        Some("error") => return Err(format!("subscribe refused: {m}").into()),
                        _ => {}
                    }
                }
                if done {
                    break;
                }
            }
            if unknown {
                again.push(chunk);
            }
        }
        if !again.is_empty() {
            // Unsubscribe nothing: the known ones are held; ask again.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pending = again;
    }
    ready.store(true, Ordering::Release);
    while let Some(m) = ws.next().await {
        let Message::Text(t) = m? else { continue };
        let now = cluster::now_ns();
        let v: Value = serde_json::from_str(&t)?;
        for q in v.as_array().into_iter().flatten() {
            if q["type"] != "quote" {
                continue;
            }
            quotes.fetch_add(1, Ordering::Relaxed);
            if q["snapshot"] == true {
                continue;
            }
            if let (Some(h), Some(gw_ts)) = (&hist, q["gw_ts"].as_i64()) {
                let us = ((now - gw_ts).max(0) / 1000) as u64;
                let _ = h.lock().map(|mut h| h.saturating_record(us));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------ edge-ingest

/// `go` of [`blaster`]: not yet, each quote on its symbol's subject (the
/// edge follows one subscription each), the rounds whole (it follows
/// every quote).
const WAIT: u8 = 0;
const PER_SYMBOL: u8 = 1;
const WHOLE: u8 = 2;

/// The publisher thread: statuses every 500 ms from the start, quote
/// rounds once `go` says how, at `rate` quotes/s (0: unpaced), until
/// `stop`.
fn blaster(
    mut nats: RawNats,
    names: Vec<String>,
    rate: f64,
    go: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut round: Option<QuoteRound> = None;
    let mut extra = Vec::new();
    let mut last_status: Option<Instant> = None;
    let mut started: Option<(Instant, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        extra.clear();
        nats.pongs(&mut extra);
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            RawNats::status_line(&mut extra, "blast", &names, 500);
            last_status = Some(Instant::now());
        }
        if !extra.is_empty() {
            nats.write(&extra).map_err(|e| e.to_string())?;
        }
        let mode = go.load(Ordering::Relaxed);
        if mode == WAIT {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let round = round.get_or_insert_with(|| QuoteRound::new(&names, mode == WHOLE));
        let (t0, n0) = *started.get_or_insert((Instant::now(), sent.load(Ordering::Relaxed)));
        if rate > 0.0 {
            let due =
                t0 + Duration::from_secs_f64((sent.load(Ordering::Relaxed) - n0) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
        }
        nats.write(round.next_round()).map_err(|e| e.to_string())?;
        sent.fetch_add(round.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn lines(l: &[String]) -> Vec<&str> {
    l.iter().map(String::as_str).collect()
}

async fn edge_ingest_run(o: &Opts, rate: f64, run: usize) -> Result<Value, BoxError> {
    let nats = NatsServer::start(core(o, 1))?;
    let n = o.symbols;
    let cfg = format!(
        "[server]\nmax_connections = 100\n\n[session]\nmax_symbols = {n}\nmax_symbols_per_op = {n}\n{}",
        cluster::cluster_toml("edge", &nats.url(), &lines(&o.edge))
    );
    let edge = GatewayProc::spawn_on(&o.bin, core(o, 0), Some(&cfg), &[], &[])?;
    let names: Vec<String> = (0..n).map(|i| format!("SIM{i}")).collect();
    let (go, stop) = (
        Arc::new(AtomicU8::new(WAIT)),
        Arc::new(AtomicBool::new(false)),
    );
    let sent = Arc::new(AtomicU64::new(0));
    let raw = RawNats::connect(nats.addr(), "bench-blaster")?;
    let th = {
        let (names, go, stop, sent) = (names.clone(), go.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || blaster(raw, names, rate, go, stop, sent))
    };
    // Stops the publisher on every way out.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop = Stop(stop.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let mut client = tokio::task::spawn_local(ws_client(
        edge.addr,
        names.clone(),
        Some(1.0),
        None,
        ready.clone(),
        got.clone(),
    ));
    let t0 = Instant::now();
    wait_subscribed(&mut client, &ready).await?;
    // The edge follows every symbol on NATS (batched every 20 ms): one
    // subscription each, or one to every quote (`wildcard_share`; the
    // client asks for all of them in one op, so it is one or the other).
    let mode = loop {
        let subs = metric_sum(&metric_text(edge.addr)?, "tickergate_cluster_subscriptions");
        if subs as usize >= n {
            break PER_SYMBOL;
        }
        if subs == 1.0 {
            break WHOLE;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            return Err(format!("edge follows {subs} of {n} symbols after 40 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    go.store(mode, Ordering::Relaxed);
    tokio::time::sleep(o.warmup).await;
    // Refused for a reason other than "epoch" (the publisher's statuses
    // carry an epoch the edge does not serve: counted, harmless).
    let read = |addr| -> Result<[f64; 4], BoxError> {
        let t = metric_text(addr)?;
        Ok([
            metric_sum(&t, "tickergate_cluster_received_total"),
            metric_sum(&t, "tickergate_cluster_refused_total")
                - metric_sum(&t, "tickergate_cluster_refused_total{reason=\"epoch\"}"),
            metric_sum(&t, "tickergate_cluster_overflow_total"),
            metric_sum(&t, "process_cpu_seconds_total"),
        ])
    };
    let m0 = read(edge.addr)?;
    let (c0, nc0, s0) = (
        cpu_secs(edge.pid)?,
        cpu_secs(nats.pid)?,
        cpu_secs(std::process::id())?,
    );
    let sent0 = sent.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(o.duration).await;
    let sent1 = sent.load(Ordering::Relaxed);
    let window = start.elapsed().as_secs_f64();
    let (c1, nc1, s1) = (
        cpu_secs(edge.pid)?,
        cpu_secs(nats.pid)?,
        cpu_secs(std::process::id())?,
    );
    let m1 = read(edge.addr)?;
    stop.store(true, Ordering::Relaxed);
    let th = tokio::task::spawn_blocking(move || th.join()).await?;
    if let Ok(Err(e)) = th {
        return Err(format!("publisher: {e}").into());
    }
    client.abort();
    // nats-server's own count of connections it cut as slow consumers.
    let varz = common::http_get(SocketAddr::from(([127, 0, 0, 1], nats.monitor)), "/varz")
        .ok()
        .and_then(|b| serde_json::from_str::<Value>(&b).ok());
    let nats_slow = varz.as_ref().map(|v| v["slow_consumers"].clone());
    let cpu = c1 - c0;
    let received = m1[0] - m0[0];
    let r = json!({
        "run": run,
        "rate_target": rate,
        "edge_follows": if mode == WHOLE { "rounds" } else { "one subscription per symbol" },
        "window_secs": window,
        "sent_per_sec": (sent1 - sent0) as f64 / window,
        "received_per_sec": received / window,
        "received_share": if sent1 > sent0 { received / (sent1 - sent0) as f64 } else { 0.0 },
        "refused": m1[1] - m0[1],
        "overflow_events": m1[2] - m0[2],
        "nats_slow_consumers": nats_slow,
        "edge_cpu_cores": cpu / window,
        "edge_cpu_cores_metric": (m1[3] - m0[3]) / window,
        "quotes_per_cpu_sec": if cpu > 0.0 { received / cpu } else { 0.0 },
        "edge_ns_per_quote": if received > 0.0 { cpu * 1e9 / received } else { 0.0 },
        "nats_cpu_cores": (nc1 - nc0) / window,
        "tool_cpu_cores": (s1 - s0) / window,
        "client_quotes_per_sec": got.load(Ordering::Relaxed) as f64 / (t0.elapsed().as_secs_f64()),
    });
    println!(
        "  run {run} rate {:>9}: sent {:>9.0}/s received {:>9.0}/s ({:.1} %), edge {:.3} cores = {:>9.0} quotes/CPU-s ({:.0} ns/quote); refused {}, overflow {}; nats {:.2} cores, tool {:.2}",
        if rate > 0.0 { format!("{rate:.0}") } else { "max".into() },
        r["sent_per_sec"].as_f64().unwrap_or(0.0),
        r["received_per_sec"].as_f64().unwrap_or(0.0),
        r["received_share"].as_f64().unwrap_or(0.0) * 100.0,
        r["edge_cpu_cores"].as_f64().unwrap_or(0.0),
        r["quotes_per_cpu_sec"].as_f64().unwrap_or(0.0),
        r["edge_ns_per_quote"].as_f64().unwrap_or(0.0),
        r["refused"],
        r["overflow_events"],
        r["nats_cpu_cores"].as_f64().unwrap_or(0.0),
        r["tool_cpu_cores"].as_f64().unwrap_or(0.0),
    );
    drop(edge);
    drop(nats);
    Ok(r)
}

async fn edge_ingest(o: &Opts) -> Result<Value, BoxError> {
    println!(
        "edge-ingest: {} symbols, {} s window after {} s warm-up, {} run(s) per rate",
        o.symbols,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        o.runs
    );
    let mut out = Vec::new();
    for &rate in &o.rates {
        let mut runs = Vec::new();
        for run in 1..=o.runs {
            runs.push(edge_ingest_run(o, rate, run).await?);
        }
        let mut s = json!({});
        for k in [
            "sent_per_sec",
            "received_per_sec",
            "edge_cpu_cores",
            "quotes_per_cpu_sec",
            "edge_ns_per_quote",
            "refused",
            "overflow_events",
            "nats_cpu_cores",
        ] {
            s[k] = summary(&runs, k);
        }
        println!(
            "  rate {rate:.0}: median received {:.0}/s, {:.0} quotes per CPU-second (min {:.0}, max {:.0})",
            s["received_per_sec"]["median"].as_f64().unwrap_or(0.0),
            s["quotes_per_cpu_sec"]["median"].as_f64().unwrap_or(0.0),
            s["quotes_per_cpu_sec"]["min"].as_f64().unwrap_or(0.0),
            s["quotes_per_cpu_sec"]["max"].as_f64().unwrap_or(0.0),
        );
        out.push(json!({"rate_target": rate, "summary": s, "runs": runs}));
    }
    Ok(json!({"mode": "edge-ingest", "symbols": o.symbols, "results": out}))
}

// ---------------------------------------------------------------- topology

/// Core 0 runs the node under test; the rest of its cluster is on core 1.
struct Topology {
    /// The node clients connect to (standalone or edge), or the ingest
    /// under test for `ingest-cost`.
    node: GatewayProc,
    _ingest: Option<GatewayProc>,
    nats: Option<NatsServer>,
}

/// `standalone`: the gateway with the feed on core 0. `edge`: nats-server
/// and an ingest with the feed on core 1, an edge on core 0 (it learns the
/// symbols from the stream before it serves). `ingest`: nats-server on
/// core 1, an ingest with the feed on core 0.
fn start(o: &Opts, kind: &str, feed: &str) -> Result<Topology, BoxError> {
    if kind == "standalone" {
        let node = GatewayProc::spawn_on(&o.bin, core(o, 0), Some(feed), &[], &[])?;
        return Ok(Topology {
            node,
            _ingest: None,
            nats: None,
        });
    }
    let nats = NatsServer::start(core(o, 1))?;
    let ingest_cfg = format!(
        "{feed}{}",
        cluster::cluster_toml("ingest", &nats.url(), &lines(&o.ingest))
    );
    let ingest_core = if kind == "ingest" { 0 } else { 1 };
    let ingest_bin = o.ingest_bin.as_ref().unwrap_or(&o.bin);
    let ingest = GatewayProc::spawn_on(
        ingest_bin,
        core(o, ingest_core),
        Some(&ingest_cfg),
        &[],
        &[],
    )?;
    // Published quotes and a status are in the stream before an edge starts.
    cluster::wait_metric(
        ingest.addr,
        "tickergate_cluster_status_published_total",
        |v| v >= 1.0,
        Duration::from_secs(20),
    )?;
    if kind == "ingest" {
        return Ok(Topology {
            node: ingest,
            _ingest: None,
            nats: Some(nats),
        });
    }
    let edge_cfg = cluster::cluster_toml("edge", &nats.url(), &lines(&o.edge));
    let node = GatewayProc::spawn_on(&o.bin, core(o, 0), Some(&edge_cfg), &[], &[])?;
    Ok(Topology {
        node,
        _ingest: Some(ingest),
        nats: Some(nats),
    })
}

// ------------------------------------------------------------------ latency

async fn latency_run(o: &Opts, kind: &str, rate: f64, run: usize) -> Result<Value, BoxError> {
    let topo = start(o, kind, &sim_toml(o.symbols, rate))?;
    let names = tickergate::feed::sim::symbol_names(o.symbols);
    let hist = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let mut client = tokio::task::spawn_local(ws_client(
        topo.node.addr,
        names,
        None,
        Some(hist.clone()),
        ready.clone(),
        got.clone(),
    ));
    wait_subscribed(&mut client, &ready).await?;
    tokio::time::sleep(o.warmup).await;
    if let Ok(mut h) = hist.lock() {
        h.reset();
    }
    let q0 = got.load(Ordering::Relaxed);
    let c0 = cpu_secs(topo.node.pid)?;
    let start = Instant::now();
    tokio::time::sleep(o.duration).await;
    let window = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(topo.node.pid)? - c0;
    let q = (got.load(Ordering::Relaxed) - q0) as f64;
    client.abort();
    let lat: LatencyMs = match hist.lock() {
        Ok(h) => latency_of(&h),
        Err(_) => return Err("histogram lock poisoned".into()),
    };
    let r = json!({
        "run": run,
        "topology": kind,
        "window_secs": window,
        "quotes_per_sec": q / window,
        "node_cpu_cores": cpu / window,
        "latency_ms": lat,
        "p50_ms": lat.p50,
        "p99_ms": lat.p99,
        "p999_ms": lat.p999,
        "max_ms": lat.max,
    });
    println!(
        "  run {run} {kind:>10}: {:>7.0} quotes/s to the client, age p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms ({} quotes), node {:.3} cores",
        q / window,
        lat.p50,
        lat.p90,
        lat.p99,
        lat.p999,
        lat.max,
        lat.count,
        cpu / window
    );
    drop(topo);
    Ok(r)
}

// -------------------------------------------------------------- ingest-cost

async fn ingest_cost_run(o: &Opts, kind: &str, rate: f64, run: usize) -> Result<Value, BoxError> {
    let topo = start(o, kind, &sim_toml(o.symbols, rate))?;
    tokio::time::sleep(o.warmup).await;
    let read = |addr| -> Result<[f64; 3], BoxError> {
        let t = metric_text(addr)?;
        Ok([
            metric_sum(&t, "tickergate_updates_in_total"),
            metric_sum(&t, "tickergate_cluster_published_total"),
            metric_sum(&t, "tickergate_cluster_publish_errors_total"),
        ])
    };
    let m0 = read(topo.node.addr)?;
    let c0 = cpu_secs(topo.node.pid)?;
    let nc0 = match &topo.nats {
        Some(n) => cpu_secs(n.pid)?,
        None => 0.0,
    };
    let start = Instant::now();
    tokio::time::sleep(o.duration).await;
    let window = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(topo.node.pid)? - c0;
    let nats_cpu = match &topo.nats {
        Some(n) => cpu_secs(n.pid)? - nc0,
        None => 0.0,
    };
    let m1 = read(topo.node.addr)?;
    let quotes = m1[0] - m0[0];
    let r = json!({
        "run": run,
        "topology": kind,
        "window_secs": window,
        "quotes_in_per_sec": quotes / window,
        "published_per_sec": (m1[1] - m0[1]) / window,
        "publish_errors": m1[2] - m0[2],
        "node_cpu_cores": cpu / window,
        "ns_per_quote": if quotes > 0.0 { cpu * 1e9 / quotes } else { 0.0 },
        "nats_cpu_cores": nats_cpu / window,
    });
    println!(
        "  run {run} {kind:>10}: {:>8.0} quotes/s in, {:>8.0} published/s, node {:.3} cores = {:>6.0} ns/quote; nats {:.3} cores",
        quotes / window,
        (m1[1] - m0[1]) / window,
        cpu / window,
        r["ns_per_quote"].as_f64().unwrap_or(0.0),
        nats_cpu / window
    );
    drop(topo);
    Ok(r)
}

/// `latency` and `ingest-cost`: pairs of the baseline and the cluster
/// topology, the order alternating run by run.
async fn paired(o: &Opts) -> Result<Value, BoxError> {
    let (name, kinds, keys): (&str, [&str; 2], &[&str]) = match o.mode {
        Mode::Latency => (
            "latency",
            ["standalone", "edge"],
            &[
                "p50_ms",
                "p99_ms",
                "p999_ms",
                "max_ms",
                "quotes_per_sec",
                "node_cpu_cores",
            ],
        ),
        _ => (
            "ingest-cost",
            ["standalone", "ingest"],
            &[
                "ns_per_quote",
                "node_cpu_cores",
                "quotes_in_per_sec",
                "published_per_sec",
                "nats_cpu_cores",
            ],
        ),
    };
    println!(
        "{name}: sim feed of {} symbols, {} s window after {} s warm-up, {} pair(s), {} vs {}",
        o.symbols,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        o.runs,
        kinds[0],
        kinds[1]
    );
    let mut out = Vec::new();
    for &rate in &o.rates {
        let mut by: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
        for run in 1..=o.runs {
            let order = if run % 2 == 1 { [0, 1] } else { [1, 0] };
            for k in order {
                let r = match o.mode {
                    Mode::Latency => latency_run(o, kinds[k], rate, run).await?,
                    _ => ingest_cost_run(o, kinds[k], rate, run).await?,
                };
                by[k].push(r);
            }
        }
        let key0 = keys[if o.mode == Mode::Latency { 1 } else { 0 }];
        let diffs: Vec<f64> = by[0]
            .iter()
            .zip(&by[1])
            .map(|(a, b)| b[key0].as_f64().unwrap_or(0.0) - a[key0].as_f64().unwrap_or(0.0))
            .collect();
        let mut sum = json!({});
        for (k, runs) in kinds.iter().zip(&by) {
            let mut s = json!({});
            for key in keys {
                s[*key] = summary(runs, key);
            }
            sum[*k] = s;
        }
        let (lo, hi) = range(&diffs);
        sum[format!("{key0}_difference")] =
            json!({"per_pair": diffs, "median": median(diffs.clone()), "min": lo, "max": hi});
        println!("  rate {rate:.0} medians (min-max):");
        for key in keys {
            let f = |k: usize| {
                let s = &sum[kinds[k]][*key];
                format!(
                    "{:.3} ({:.3}-{:.3})",
                    s["median"].as_f64().unwrap_or(f64::NAN),
                    s["min"].as_f64().unwrap_or(f64::NAN),
                    s["max"].as_f64().unwrap_or(f64::NAN)
                )
            };
            println!(
                "    {key:>18}: {} {:<28} {} {}",
                kinds[0],
                f(0),
                kinds[1],
                f(1)
            );
        }
        println!(
            "    {key0} difference per pair ({} - {}): {:?}, median {:.3}",
            kinds[1],
            kinds[0],
            sum[format!("{key0}_difference")]["per_pair"],
            median(
                sum[format!("{key0}_difference")]["per_pair"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default()
            )
        );
        out.push(json!({"rate": rate, "summary": sum, kinds[0]: by[0], kinds[1]: by[1]}));
    }
    Ok(json!({"mode": name, "symbols": o.symbols, "results": out}))
}

async fn main_async(o: Opts) -> Result<(), BoxError> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cluster bench ({}); load average at start: {}",
        if o.pin && common::have_taskset() {
            "node under test on core 0, the rest on core 1"
        } else {
            "unpinned"
        },
        load.trim()
    );
    let local = tokio::task::LocalSet::new();
    let mut doc = local
        .run_until(async {
            match o.mode {
                Mode::EdgeIngest => edge_ingest(&o).await,
                _ => paired(&o).await,
            }
        })
        .await?;
    doc["duration_secs"] = json!(o.duration.as_secs_f64());
    doc["warmup_secs"] = json!(o.warmup.as_secs_f64());
    doc["runs"] = json!(o.runs);
    doc["pinned"] = json!(o.pin && common::have_taskset());
    doc["load_average_start"] = json!(load.trim());
    common::write_json(&o.out, &doc)
}

fn main() -> ExitCode {
    common::run_tool("cluster", parse_opts, |o: &Opts| o.pin, PIN_ENV, main_async)
}

/// Waits until the client task says it is subscribed; its error if it
/// ended first, or one after 40 s.
async fn wait_subscribed<T: std::fmt::Debug>(
    client: &mut tokio::task::JoinHandle<T>,
    ready: &AtomicBool,
) -> Result<(), BoxError> {
    let t0 = Instant::now();
    while !ready.load(Ordering::Acquire) {
        if client.is_finished() {
            return Err(format!("client: {:?}", client.await).into());
        }
        if t0.elapsed() > Duration::from_secs(40) {
            return Err("client not subscribed within 40 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
