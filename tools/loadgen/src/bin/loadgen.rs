//! The load generator: many real WebSocket clients against the real
//! gateway binary, with the feed driven at a stated rate, and the raw
//! loopback TCP limit measured in the same run.
//!
//! ```text
//! cargo build --release      # the gateway binary it starts: target/release/tickergate
//! cargo run --release -p tickergate-loadgen --bin loadgen -- --workload board-burst --runs 3
//! cargo run --release -p tickergate-loadgen --bin loadgen -- --workload all --runs 3   # every workload below
//! cargo run --release -p tickergate-loadgen --bin loadgen -- --workload board-smooth --clients 1000 --duration 10
//! ```
//!
//! Per run it starts `tickergate` (pinned to core 0 with `taskset -c 0`;
//! this tool re-executes itself under `taskset -c 1`) with a generated
//! config: one simulated feed of `--universe` symbols in burst mode (every
//! symbol ticks together `burst_hz` times a second) or at a steady rate
//! (`rate` updates/s spread evenly, symbols drawn uniformly). Then:
//!
//! 1. connect: N clients, each from one of `--src-ips` loopback source
//!    addresses (127.0.1.2, ...) so ephemeral ports never run out; each
//!    subscribes to K distinct symbols drawn with Zipf popularity
//!    (`--sub-zipf`, seeded) and waits for `subscribed`. Handshakes per
//!    second over this phase is the connect rate.
//! 2. warm-up (`--warmup`), then a measured window (`--duration`): every
//!    client reads every frame; the tool counts frames, quotes and bytes,
//!    records each quote's age (receipt wall clock minus the quote's
//!    `gw_ts`, the gateway's ingest stamp) in an HDR histogram, and counts
//!    seq gaps per subscription (updates conflated away: the gateway sends
//!    the newest value, so a gap is by design, not a loss). Snapshot quotes
//!    are not in the latency figures. The gateway's CPU time (utime+stime)
//!    and RSS come from /proc/PID, sampled every second.
//! 3. raw loopback baseline (unless `--no-raw`): a child process of this
//!    tool, pinned to core 0 like the gateway, accepts the same number of
//!    plain TCP connections and writes 100-byte messages round-robin to all
//!    of them, one write per socket per round, for `--raw-secs`: once with 1
//!    message per write, once with as many per write as the gateway put in
//!    a frame. The gateway's frames/s and updates/s are reported as a
//!    fraction of these.
//! 4. one-core floor (boards and steady feeds, with the raw baseline): the
//!    latency distribution no server on one core could beat, from the
//!    subscription map and the raw writer's cost per write in the same run
//!    (see `Floor`): after an update, the i-th socket write it needs ends
//!    no sooner than i x that cost. The gateway's p99 is reported against
//!    the floor's p99, and the latency chart draws the floor dashed.
//!
//! The `slow-reader` workload adds slow clients to ordinary ones: the
//! age of the values a client sees that reads slower than the feed. A slow
//! client behaves like a real client library (Python `websockets` 14+, a
//! browser): a reader reads the socket eagerly (tokio-tungstenite, so
//! Pings are answered as frames are read) and queues every text message
//! for the application, up to `--slow-queue` messages: when the queue
//! holds that many the reader stops reading the socket until the
//! application has taken it down to a quarter (websockets' high and low
//! water marks; 0 = unbounded, a browser). The application takes one
//! message every `--slow-every-ms` and records the age of each
//! non-snapshot quote in it at that moment (now minus `gw_ts`). With
//! `--slow-ack W` the client asks for client-paced delivery right after
//! subscribing (`{"op":"flow","id":2,"window":W}`, answered by
//! `{"type":"flow","id":2,"window":W}`), counts the frames after the one
//! that carried that reply, and after taking each one sends
//! `{"op":"ack","n":N}` with N the count of frames taken so far; a gateway
//! that answers `flow` with an error is reported and the run goes on
//! without acks. Slow clients subscribe to every symbol of the feed. The
//! fast clients are ordinary clients as in the other workloads; the
//! gateway's CPU per update counts what both kinds were delivered (for a
//! slow client: what its reader took off the socket). It has no raw
//! baseline; its extra chart is `slow-reader-age.png` (age by percentile,
//! fast clients at receipt and slow clients at take, log scale).
//!
//! Trades (`--trades on|paired`, and the `trades` workload): the clients
//! subscribe with `"trades": true` (checking that `subscribed` says so)
//! and read `trade` and `trades_dropped` messages beside their quotes
//! (src/trades.rs of this crate). They count trades apart from quotes,
//! check per symbol that trade seqs are gapless: the first trade sets the
//! baseline (no history), every later one must be the last + 1 + the
//! counts of the `trades_dropped` since; anything else is a gap or a
//! disorder, counted over the whole connection (warm-up included),
//! printed as `!!!! ERROR`, stored in the JSON, and makes the tool exit
//! non-zero after writing it. Every frame is checked for trades even with
//! `--scan-every`, whose sampling then applies to the ages only. A
//! trade's age (receipt minus its `gw_ts`) goes into its own histogram.
//! The gateway's CPU per delivered message counts quotes, trades and
//! `trades_dropped`; per trade, all its CPU over the trades alone. The
//! sim feed's `trade_ratio` is written into the gateway's config (the
//! sim's own default, 0.3, unless the workload or `--trade-ratio` sets
//! it). With `paired` every run is done twice on fresh gateways, same
//! feed, same subscriptions: mode "quotes" (no `"trades"`: conflated
//! quotes only) and mode "trades", the order alternating run by run; then
//! a side-by-side table (medians: delivered msgs/s, quotes/s, trades/s,
//! gateway CPU per message, per quote, per trade, quote and trade age p50
//! and p99, RSS, drops, seq errors, and the extra gateway CPU per trade
//! of a run with trades over its quotes-only pair, which means little
//! when the quotes-only run already fills the core). No raw baseline for
//! trade runs; slow clients never ask for trades.
//!
//! Everything is bounded: at most 19,000 clients (`ulimit -n` is 20,000),
//! every phase has a deadline, and the gateway child is killed when a run
//! ends, also on error (a Drop guard).
//!
//! Output: a table on stdout, `results/loadgen/<workload>.json` in the
//! workspace root (every run, and the median, min and max of each figure),
//! and PNG charts in the same folder: `<workload>-latency.png` (latency by
//! percentile, one line per run; runs with trades add their trades' age
//! dashed), `<workload>-timeline.png` (delivered
//! updates/s and gateway RSS per second), and for `sweep`
//! `sweep-delivered.png` (delivered against offered updates/s); for a
//! paired workload these are the runs with trades, and
//! `<workload>-quotes-latency.png` the quotes-only ones. The JSON of a
//! paired workload has one `results` entry per mode (`"mode"`) and a
//! `comparison` (the side-by-side figures). Charts need a TTF font (DejaVu Sans from Debian's
//! fonts-dejavu-core, or `--font PATH`); without one the JSON is still
//! written.
//!
//! Workloads (`--workload`, comma-separated, or `all`: every one below,
//! `trades` included):
//!   board-burst   2,000 clients x 10 of 1,000 symbols, every symbol ticking together twice a second
//!   board-smooth  5,000 clients x 10 of 1,000 symbols, 2,000 updates/s spread evenly
//!   hot           2,000 clients x all of 50 symbols, each symbol updated 1,000 times a second
//!   connect       10,000 clients connecting (no subscription): handshakes/s
//!   sweep         1,000 clients x 10 of 1,000 symbols at 1k..64k updates/s: delivered vs offered
//!   slow-reader   100 clients x all of 50 symbols, each symbol updated 1,000 times a second, plus
//!                 3 slow clients (all 50 symbols) taking one message every 20 ms from a 16-message
//!                 queue: the age of what a slow reader sees (see above)
//!   trades        issue 19: 1,000 clients x 1 of 100 symbols, every symbol ticking 1,000 times a
//!                 second and every update a trade (trade_ratio 1: 100k trades/s in), clients
//!                 with trades (1,000 trades/s each, 1M trades/s out) paired with the same run
//!                 quotes only (see Trades above). K = 1 is the fewest symbols a client can have:
//!                 1M trade messages/s is more than one core is likely to write, so expect the
//!                 figures to show CPU per trade at saturation and any drops; fewer per client
//!                 means fewer clients (--clients) or a slower feed (--burst-hz), and --symbols
//!                 raises K
//!
//! Options (override the workload's defaults):
//!   --runs R            runs per workload, each on a fresh gateway [3]
//!   --clients N         connections
//!   --symbols K         symbols per client
//!   --universe U        symbols in the simulated feed
//!   --burst-hz H        burst mode: every symbol H times a second
//!   --rate R            steady mode: R updates/s (disables burst)
//!   --sub-zipf S        Zipf exponent of client symbol choice [1.0]
//!   --duration SECS     measured window [20]
//!   --warmup SECS       before the window [3]
//!   --raw-secs SECS     each raw-baseline measurement [5]
//!   --no-raw            skip the raw baseline
//!   --concurrency C     handshakes in flight while connecting [256]
//!   --src-ips N         loopback source addresses [16]
//!   --seed S            client symbol draw [7]
//!   --bin PATH          gateway binary [target/release/tickergate in the
//!                       workspace, or under $CARGO_TARGET_DIR if set]
//!   --gw-arg ARG        extra gateway argument (repeatable)
//!   --session K=V       a `[session]` setting for the gateway, e.g.
//!                       `read_lag_ms=0` (repeatable; TOML value)
//!   --label TEXT        free text stored in the JSON
//!   --out-dir DIR       [results/loadgen in the workspace root]
//!   --font PATH         TTF for chart text [DejaVuSans]
//!   --no-pin            do not use taskset
//!   --no-progress       no progress bar (for logs)
//!   --scan-every N      each client scans 1 text frame in N for ages and
//!                       seq gaps and only counts the quotes of the others
//!                       [1]: gives the one-core reader headroom where it,
//!                       not the gateway, sets the age (hot); seq gaps are
//!                       then not counted
//!   --slow-clients S    slow-reader: slow clients [3] (then --clients 0 is allowed)
//!   --slow-queue Q      slow-reader: a slow client's receive queue, in messages;
//!                       0 = unbounded (a browser) [16]
//!   --slow-every-ms M   slow-reader: its application takes one message every M ms [20]
//!   --slow-ack W        slow-reader: ack mode with a window of W frames (1..=64);
//!                       0 = off [0]
//!   --trades MODE       off: quotes only; on: every (fast) client subscribes with
//!                       "trades": true; paired: each run twice, quotes only and with
//!                       trades [off; the trades workload: paired]
//!   --trade-ratio R     the sim feed's trade_ratio, 0..=1 [0.3, the sim's default;
//!                       the trades workload: 1]
//!                       (a smaller trade buffer: --session max_pending_trades=N)
//!   --topology T        standalone: the gateway runs the feed (core 0); edge: the
//!                       scale-out topology of issue 18, nats-server (JetStream, a
//!                       temporary store) and an ingest node running the same sim
//!                       feed on core 1, the clients served by an edge node on core
//!                       0 (the gateway whose CPU, RSS and /metrics are reported);
//!                       paired: each run twice, standalone and edge, fresh each,
//!                       the order alternating run by run, then the edge's CPU per
//!                       delivered update against the standalone one's, per pair
//!                       [standalone]. Not with --trades paired.

use tickergate_loadgen as common;

use common::trades::{GwTrades, TradeStats, TradeTrack};
use common::{
    cpu_secs, cpu_split, curve_quantiles, latency_curve, latency_of, parse_u64, rss_kib, BoxError,
    GatewayProc, LatencyMs,
};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpSocket;

const PIN_ENV: &str = "TICKERGATE_LOADGEN_PINNED";
const MAX_CLIENTS: usize = 19_000;
/// Size of one raw-baseline message, the size of a typical quote object.
const RAW_MSG: usize = 100;

// ------------------------------------------------------------------ options

#[derive(Debug, Clone)]
enum Feed {
    /// Every symbol `hz` times a second.
    Burst { hz: f64 },
    /// `rate` updates/s, uniform over symbols, evenly in time.
    Steady { rate: f64 },
}

impl Feed {
    /// Updates per second of one symbol (uniform popularity).
    fn per_symbol(&self, universe: usize) -> f64 {
        match *self {
            Feed::Burst { hz } => hz,
            Feed::Steady { rate } => rate / universe as f64,
        }
    }

    fn upstream_rate(&self, universe: usize) -> f64 {
        self.per_symbol(universe) * universe as f64
    }

    fn describe(&self, universe: usize) -> String {
        match *self {
            Feed::Burst { hz } => format!("{universe} symbols ticking together {hz} times/s"),
            Feed::Steady { rate } => {
                format!("{rate} updates/s spread evenly over {universe} symbols")
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Workload {
    name: String,
    clients: usize,
    symbols: usize,
    universe: usize,
    feed: Feed,
    /// Steady rates of a sweep; empty for a single-point workload.
    sweep: Vec<f64>,
    /// Slow clients (slow-reader), on top of `clients`.
    slow: usize,
    /// The sim feed's `trade_ratio` (fraction of updates that are also a
    /// trade); `None`: the sim's default.
    trade_ratio: Option<f64>,
    /// Whether the (fast) clients subscribe with `"trades": true`.
    trades: TradeMode,
}

/// How a workload's clients ask for trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TradeMode {
    /// Quotes only (no `"trades"` in the subscribe).
    Off,
    /// Every client subscribes with `"trades": true`.
    On,
    /// Each run twice on fresh gateways, the same feed and subscriptions:
    /// once quotes only (mode "quotes"), once with trades (mode "trades"),
    /// the order alternating run by run; reported side by side.
    Paired,
}

impl TradeMode {
    fn parse(v: &str) -> Result<TradeMode, String> {
        match v {
            "off" => Ok(TradeMode::Off),
            "on" => Ok(TradeMode::On),
            "paired" => Ok(TradeMode::Paired),
            _ => Err(format!("--trades wants off, on or paired, got {v:?}")),
        }
    }
}

/// The sim feed's `trade_ratio` when the workload does not set it.
fn sim_trade_ratio() -> f64 {
    tickergate::feed::sim::SimConfig::default().trade_ratio
}

impl Workload {
    /// The `trade_ratio` written into the gateway's config.
    fn trade_ratio(&self) -> f64 {
        self.trade_ratio.unwrap_or_else(sim_trade_ratio)
    }
}

fn preset(name: &str) -> Option<Workload> {
    let w = |clients, symbols, universe, feed| Workload {
        name: name.to_string(),
        clients,
        symbols,
        universe,
        feed,
        sweep: Vec::new(),
        slow: 0,
        trade_ratio: None,
        trades: TradeMode::Off,
    };
    Some(match name {
        "board-burst" => w(2000, 10, 1000, Feed::Burst { hz: 2.0 }),
        "board-smooth" => w(5000, 10, 1000, Feed::Steady { rate: 2000.0 }),
        "hot" => w(2000, 50, 50, Feed::Burst { hz: 1000.0 }),
        "connect" => w(10_000, 0, 100, Feed::Steady { rate: 0.0 }),
        "sweep" => Workload {
            sweep: vec![1000.0, 4000.0, 16_000.0, 32_000.0, 64_000.0],
            ..w(1000, 10, 1000, Feed::Steady { rate: 1000.0 })
        },
        "slow-reader" => Workload {
            slow: 3,
            ..w(100, 50, 50, Feed::Burst { hz: 1000.0 })
        },
        // Issue 19: 100k trades/s in (100 symbols x 1,000 Hz, every update
        // a trade) to 1,000 subscribers of one symbol each (1,000 trades/s
        // per client, 1M trades/s out), against the same run without trades.
        "trades" => Workload {
            trade_ratio: Some(1.0),
            trades: TradeMode::Paired,
            ..w(1000, 1, 100, Feed::Burst { hz: 1000.0 })
        },
        _ => return None,
    })
}

const ALL: &[&str] = &[
    "board-burst",
    "board-smooth",
    "hot",
    "connect",
    "sweep",
    "slow-reader",
    "trades",
];

/// How the slow clients of `slow-reader` read.
#[derive(Debug, Clone, Copy)]
struct SlowCfg {
    /// High-water mark of the receive queue, in messages (0: unbounded);
    /// the reader resumes at a quarter of it.
    queue: usize,
    /// The application takes one message this often.
    every: Duration,
    /// Ack mode's window in frames (0: off).
    ack: u8,
}

#[derive(Debug, Clone)]
struct Opts {
    workloads: Vec<Workload>,
    runs: usize,
    sub_zipf: f64,
    duration: Duration,
    warmup: Duration,
    raw_secs: Duration,
    raw: bool,
    concurrency: usize,
    src_ips: usize,
    seed: u64,
    bin: PathBuf,
    gw_args: Vec<String>,
    /// `[session]` lines for the gateway's config (`K = V`).
    session: Vec<String>,
    label: String,
    out_dir: PathBuf,
    font: Option<PathBuf>,
    pin: bool,
    progress: bool,
    /// Each client scans one text frame in this many for ages and seq
    /// gaps, and only counts the quotes of the others.
    scan_every: u64,
    slow: SlowCfg,
    topology: Topology,
}

/// Where the feed runs and who serves the clients (`--topology`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// One gateway with the feed.
    Standalone,
    /// nats-server and an ingest with the feed on core 1; an edge serves.
    Edge,
    /// Each run twice: standalone and edge.
    Paired,
}

impl Topology {
    fn parse(v: &str) -> Result<Topology, String> {
        match v {
            "standalone" => Ok(Topology::Standalone),
            "edge" => Ok(Topology::Edge),
            "paired" => Ok(Topology::Paired),
            _ => Err(format!(
                "--topology wants standalone, edge or paired, got {v:?}"
            )),
        }
    }
}

fn usage() -> &'static str {
    "usage: loadgen --workload NAME[,NAME..]|all [--runs R] [--clients N] \
     [--symbols K] [--universe U] [--burst-hz H | --rate R] [--sub-zipf S] [--duration SECS] \
     [--warmup SECS] [--raw-secs SECS] [--no-raw] [--concurrency C] [--src-ips N] [--seed S] \
     [--bin PATH] [--gw-arg ARG].. [--session K=V].. [--label TEXT] [--out-dir DIR] [--font PATH] [--no-pin] \
     [--no-progress] [--scan-every N] [--slow-clients S] [--slow-queue Q] [--slow-every-ms M] \
     [--slow-ack W] [--trades off|on|paired] [--trade-ratio R] \
     [--topology standalone|edge|paired]\n\
     workloads: board-burst, board-smooth, hot, connect, sweep, slow-reader, trades \
     (see tools/loadgen/src/bin/loadgen.rs)\n\
     run it with: cargo run --release -p tickergate-loadgen --bin loadgen -- OPTIONS"
}

fn parse_opts() -> Result<Opts, String> {
    let mut names: Vec<String> = Vec::new();
    let (mut clients, mut symbols, mut universe) = (None, None, None);
    let mut feed: Option<Feed> = None;
    let mut slow_clients: Option<usize> = None;
    let mut trades: Option<TradeMode> = None;
    let mut trade_ratio: Option<f64> = None;
    let mut o = Opts {
        workloads: Vec::new(),
        runs: 3,
        sub_zipf: 1.0,
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(3),
        raw_secs: Duration::from_secs(5),
        raw: true,
        concurrency: 256,
        src_ips: 16,
        seed: 7,
        bin: common::default_gateway_bin(),
        gw_args: Vec::new(),
        session: Vec::new(),
        label: String::new(),
        out_dir: common::results_dir().join("loadgen"),
        font: None,
        pin: true,
        progress: true,
        scan_every: 1,
        slow: SlowCfg {
            queue: 16,
            every: Duration::from_millis(20),
            ack: 0,
        },
        topology: Topology::Standalone,
    };
    let mut it = std::env::args().skip(1);
    let val =
        |flag: &str, it: &mut std::iter::Skip<std::env::Args>| common::arg_value(flag, it, usage());
    use common::arg_num as num;
    let secs = |flag: &str, v: &str| -> Result<Duration, String> {
        let s: f64 = num(flag, v)?;
        if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
            return Err(format!("{flag} must be in (0, 3600] seconds"));
        }
        Ok(Duration::from_secs_f64(s))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workload" => names.extend(val(&a, &mut it)?.split(',').map(str::to_string)),
            "--runs" => o.runs = num(&a, &val(&a, &mut it)?)?,
            "--clients" => clients = Some(num(&a, &val(&a, &mut it)?)?),
            "--symbols" => symbols = Some(num(&a, &val(&a, &mut it)?)?),
            "--universe" => universe = Some(num(&a, &val(&a, &mut it)?)?),
            "--burst-hz" => {
                feed = Some(Feed::Burst {
                    hz: num(&a, &val(&a, &mut it)?)?,
                })
            }
            "--rate" => {
                feed = Some(Feed::Steady {
                    rate: num(&a, &val(&a, &mut it)?)?,
                })
            }
            "--sub-zipf" => o.sub_zipf = num(&a, &val(&a, &mut it)?)?,
            "--duration" => o.duration = secs(&a, &val(&a, &mut it)?)?,
            "--warmup" => o.warmup = secs(&a, &val(&a, &mut it)?)?,
            "--raw-secs" => o.raw_secs = secs(&a, &val(&a, &mut it)?)?,
            "--no-raw" => o.raw = false,
            "--scan-every" => o.scan_every = num(&a, &val(&a, &mut it)?)?,
            "--slow-clients" => slow_clients = Some(num(&a, &val(&a, &mut it)?)?),
            "--slow-queue" => o.slow.queue = num(&a, &val(&a, &mut it)?)?,
            "--slow-every-ms" => {
                let ms: f64 = num(&a, &val(&a, &mut it)?)?;
                if !(ms.is_finite() && (1.0..=10_000.0).contains(&ms)) {
                    return Err("--slow-every-ms must be in 1..=10000".into());
                }
                o.slow.every = Duration::from_secs_f64(ms / 1000.0);
            }
            "--slow-ack" => o.slow.ack = num(&a, &val(&a, &mut it)?)?,
            "--trades" => trades = Some(TradeMode::parse(&val(&a, &mut it)?)?),
            "--trade-ratio" => {
                let r: f64 = num(&a, &val(&a, &mut it)?)?;
                if !(0.0..=1.0).contains(&r) {
                    return Err("--trade-ratio must be in 0..=1".into());
                }
                trade_ratio = Some(r);
            }
            "--concurrency" => o.concurrency = num(&a, &val(&a, &mut it)?)?,
            "--src-ips" => o.src_ips = num(&a, &val(&a, &mut it)?)?,
            "--seed" => o.seed = num(&a, &val(&a, &mut it)?)?,
            "--bin" => o.bin = PathBuf::from(val(&a, &mut it)?),
            "--gw-arg" => o.gw_args.push(val(&a, &mut it)?),
            "--session" => {
                let kv = val(&a, &mut it)?;
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(format!("--session wants KEY=VALUE, got {kv:?}"));
                };
                o.session.push(format!("{} = {}", k.trim(), v.trim()));
            }
            "--label" => o.label = val(&a, &mut it)?,
            "--out-dir" => o.out_dir = PathBuf::from(val(&a, &mut it)?),
            "--font" => o.font = Some(PathBuf::from(val(&a, &mut it)?)),
            "--no-pin" => o.pin = false,
            "--topology" => o.topology = Topology::parse(&val(&a, &mut it)?)?,
            "--no-progress" => o.progress = false,
            "-h" | "--help" => return Err(usage().to_string()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if names.is_empty() {
        return Err(format!("--workload is required\n{}", usage()));
    }
    if names.iter().any(|n| n == "all") {
        names = ALL.iter().map(|s| s.to_string()).collect();
    }
    for n in &names {
        let mut w = preset(n).ok_or_else(|| format!("unknown workload {n:?}\n{}", usage()))?;
        if let Some(c) = clients {
            w.clients = c;
        }
        if let Some(k) = symbols {
            w.symbols = k;
        }
        if let Some(u) = universe {
            w.universe = u;
        }
        if let Some(f) = &feed {
            w.feed = f.clone();
            w.sweep.clear();
        }
        if let (Some(s), "slow-reader") = (slow_clients, n.as_str()) {
            w.slow = s;
        }
        if let Some(t) = trades {
            w.trades = t;
        }
        if let Some(r) = trade_ratio {
            w.trade_ratio = Some(r);
        }
        if w.trades != TradeMode::Off && w.symbols == 0 {
            return Err(format!("{n}: --trades needs subscriptions (symbols > 0)"));
        }
        if w.slow > 1000 {
            return Err("--slow-clients must be in 0..=1000".into());
        }
        // Only slow clients is a valid slow-reader run.
        if (w.clients == 0 && w.slow == 0) || w.clients + w.slow > MAX_CLIENTS {
            return Err(format!("--clients must be in 1..={MAX_CLIENTS}"));
        }
        if w.slow > 0 && w.universe > 500 {
            return Err("slow clients subscribe to every symbol: --universe must be <= 500".into());
        }
        if w.universe == 0 || w.universe > 100_000 || w.symbols > w.universe || w.symbols > 500 {
            return Err("need 1 <= universe <= 100000 and symbols <= min(universe, 500)".into());
        }
        let rate_ok = |r: f64| r.is_finite() && (0.0..=10_000_000.0).contains(&r);
        let ok = match w.feed {
            Feed::Burst { hz } => rate_ok(hz) && hz <= 10_000.0,
            Feed::Steady { rate } => rate_ok(rate),
        };
        if !ok {
            return Err("--burst-hz must be in 0..=10000, --rate in 0..=1e7".into());
        }
        o.workloads.push(w);
    }
    if o.runs == 0 || o.runs > 20 {
        return Err("--runs must be in 1..=20".into());
    }
    if o.topology != Topology::Standalone
        && o.workloads
            .iter()
            .any(|w| w.trades == TradeMode::Paired || w.slow > 0)
    {
        return Err("--topology edge|paired: not with --trades paired or slow-reader".into());
    }
    if o.slow.ack > 64 {
        return Err("--slow-ack must be in 0..=64 (0: off)".into());
    }
    if o.slow.queue > 1_000_000 {
        return Err("--slow-queue must be in 0..=1000000 (0: unbounded)".into());
    }
    if o.scan_every == 0 || o.scan_every > 1000 {
        return Err("--scan-every must be in 1..=1000".into());
    }
    if o.concurrency == 0 || o.src_ips == 0 || o.src_ips > 250 * 250 {
        return Err("--concurrency and --src-ips must be at least 1".into());
    }
    if !(o.sub_zipf.is_finite() && (0.0..=4.0).contains(&o.sub_zipf)) {
        return Err("--sub-zipf must be in 0..=4".into());
    }
    common::check_gateway_bin(&o.bin)?;
    Ok(o)
}

// ------------------------------------------------------------ symbol draws

/// SplitMix64: the same seed, the same subscriptions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Each client's K distinct symbol indices, drawn with Zipf popularity
/// over `universe` (index 0 the most popular).
fn draw_subscriptions(
    n: usize,
    k: usize,
    universe: usize,
    zipf: f64,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut acc = 0.0;
    let cdf: Vec<f64> = (0..universe)
        .map(|i| {
            acc += 1.0 / ((i + 1) as f64).powf(zipf);
            acc
        })
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut picked: Vec<usize> = Vec::with_capacity(k);
            while picked.len() < k {
                let u = rng.unit() * acc;
                let i = cdf.partition_point(|c| *c < u).min(universe - 1);
                if !picked.contains(&i) {
                    picked.push(i);
                }
            }
            picked
        })
        .collect()
}

// ------------------------------------------------------------------ clients

/// Counters of the measured window, shared by every client task on this
/// (single) thread.
struct Stats {
    measuring: Cell<bool>,
    ready: Cell<usize>,
    failed: Cell<usize>,
    /// Connections closed or broken after `subscribed`, by close code (0 =
    /// no close frame).
    closed: RefCell<Vec<(u16, usize)>>,
    frames: Cell<u64>,
    quotes: Cell<u64>,
    bytes: Cell<u64>,
    gaps: Cell<u64>,
    /// Quotes whose seq went backwards or repeated: must stay 0.
    disorder: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
    /// Clients that subscribed with `"trades": true`: their trades.
    trades: TradeStats,
    first_error: RefCell<Option<String>>,
}

impl Stats {
    fn new() -> Result<Stats, BoxError> {
        Ok(Stats {
            measuring: Cell::new(false),
            ready: Cell::new(0),
            failed: Cell::new(0),
            closed: RefCell::new(Vec::new()),
            frames: Cell::new(0),
            quotes: Cell::new(0),
            bytes: Cell::new(0),
            gaps: Cell::new(0),
            disorder: Cell::new(0),
            // 1 µs .. 100 s, 3 significant digits.
            latency_us: RefCell::new(Histogram::new_with_bounds(1, 100_000_000, 3)?),
            trades: TradeStats::new()?,
            first_error: RefCell::new(None),
        })
    }

    fn reset(&self) {
        self.frames.set(0);
        self.quotes.set(0);
        self.bytes.set(0);
        self.gaps.set(0);
        self.disorder.set(0);
        self.latency_us.borrow_mut().reset();
        self.trades.reset_window();
    }

    fn error(&self, e: impl std::fmt::Display) {
        let mut f = self.first_error.borrow_mut();
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }

    fn closed_with(&self, code: u16) {
        let mut c = self.closed.borrow_mut();
        match c.iter_mut().find(|(k, _)| *k == code) {
            Some((_, n)) => *n += 1,
            None => c.push((code, 1)),
        }
    }

    fn closed_total(&self) -> usize {
        self.closed.borrow().iter().map(|(_, n)| n).sum()
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One client's subscriptions as the scanner tracks them.
struct Subs<'a> {
    names: Vec<&'a [u8]>,
    last_seq: Vec<u64>,
    /// The subscription that followed each one in the last frame: the
    /// gateway writes a client's quotes in one stable (rotating) order, not
    /// necessarily the client's, so this guesses the next symbol right
    /// after the first frame.
    next: Vec<usize>,
}

impl<'a> Subs<'a> {
    fn new(names: Vec<&'a [u8]>) -> Self {
        let n = names.len();
        Subs {
            names,
            last_seq: vec![0; n],
            next: (0..n).map(|j| if j + 1 == n { 0 } else { j + 1 }).collect(),
        }
    }
}

/// Scans one frame (a JSON array of messages) for quotes. The gateway
/// writes each quote as `{"type":"quote","symbol":"S","seq":N,...,"gw_ts":T`
/// optionally followed by `,"snapshot":true`; this reads those fields
/// without a full JSON parse so one core can keep up with the gateway.
/// Returns the number of quotes, or an error on a quote it cannot read.
fn scan_frame(text: &[u8], subs: &mut Subs, stats: &Stats, now: i64) -> Result<u64, String> {
    const QUOTE: &[u8] = br#"{"type":"quote","symbol":""#;
    const SEQ: &[u8] = br#"","seq":"#;
    const SNAP: &[u8] = br#","snapshot":true"#;
    const GW: &[u8] = br#","gw_ts":"#;
    thread_local! {
        // Built once: `memmem::find` would build a searcher per call.
        static FIND: (memchr::memmem::Finder<'static>, memchr::memmem::Finder<'static>) = (
            memchr::memmem::Finder::new(QUOTE),
            memchr::memmem::Finder::new(GW),
        );
    }
    FIND.with(|(quote, gw)| {
        let mut n = 0u64;
        let mut hist = stats.latency_us.borrow_mut();
        // The gateway writes a client's quotes in one stable (rotating)
        // order, so the next symbol is usually the one that followed the
        // last in the previous frame (`Subs::next`).
        let mut guess = 0usize;
        let mut prev: Option<usize> = None;
        // Where the next quote may start: right after the previous one
        // (`},`), checked in place; anything else (a status or control
        // message) is skipped with a search.
        let mut pos = 0usize;
        while pos < text.len() {
            let start = if text[pos..].starts_with(QUOTE) {
                pos
            } else {
                match quote.find(&text[pos..]) {
                    Some(at) => pos + at,
                    None => break,
                }
            };
            let rest = &text[start + QUOTE.len()..];
            let end = memchr::memchr(b'"', rest).ok_or("unterminated symbol")?;
            let sym = &rest[..end];
            let rest = rest[end..].strip_prefix(SEQ).ok_or("no seq after symbol")?;
            let (seq, _) = parse_u64(rest).ok_or("bad seq")?;
            // `gw_ts` is the quote's last field (before an optional
            // `"snapshot":true`): read it backwards from the object's end
            // (a quote holds no nested object) instead of searching for it.
            let close = memchr::memchr(b'}', rest).ok_or("unterminated quote")?;
            let mut body = &rest[..close];
            let snapshot = body.ends_with(SNAP);
            if snapshot {
                body = &body[..body.len() - SNAP.len()];
            }
            // A `gw_ts` has 19 digits until 2286: try that first.
            let at19 = body.len().saturating_sub(19);
            let digits = match body.get(..at19) {
                Some(head) if head.ends_with(GW) => 19,
                _ => body.iter().rev().take_while(|c| c.is_ascii_digit()).count(),
            };
            let (head, tail) = body.split_at(body.len() - digits);
            let in_place = match parse_u64(tail) {
                Some((v, n)) if n == digits && head.ends_with(GW) => Some(v),
                _ => None,
            };
            let gw_ts = if let Some(v) = in_place {
                v
            } else {
                // Not the layout this reader expects: search for it.
                let at = gw.find(rest).ok_or("no gw_ts")?;
                parse_u64(&rest[at + GW.len()..]).ok_or("bad gw_ts")?.0
            };
            pos = (rest.as_ptr() as usize - text.as_ptr() as usize) + close + 2;
            n += 1;
            let j = if subs.names.get(guess) == Some(&sym) {
                guess
            } else {
                let j = subs.names.iter().position(|s| *s == sym).ok_or_else(|| {
                    format!(
                        "quote for {:?}, not subscribed",
                        String::from_utf8_lossy(sym)
                    )
                })?;
                if let Some(p) = prev {
                    subs.next[p] = j;
                }
                j
            };
            prev = Some(j);
            guess = subs.next[j];
            let last_seq = &mut subs.last_seq;
            let last = last_seq[j];
            if last != 0 && !snapshot {
                if seq <= last {
                    stats.disorder.set(stats.disorder.get() + 1);
                } else {
                    stats.gaps.set(stats.gaps.get() + (seq - last - 1));
                }
            }
            last_seq[j] = last.max(seq);
            if !snapshot {
                let age_us = ((now - gw_ts as i64).max(0) / 1000) as u64;
                let _ = hist.record(age_us.clamp(1, 100_000_000));
            }
        }
        Ok(n)
    })
}

/// The quotes of a frame that is not scanned (`--scan-every`): counted,
/// not read.
fn count_quotes(text: &[u8]) -> u64 {
    thread_local! {
        static FIND: memchr::memmem::Finder<'static> =
            memchr::memmem::Finder::new(br#"{"type":"quote","#);
    }
    FIND.with(|f| f.find_iter(text).count() as u64)
}

/// A minimal WebSocket client: the HTTP upgrade, masked text frames out,
/// and unfragmented frames read in place from one 64 KiB buffer, with no
/// copy and no UTF-8 pass (the scanner only looks for ASCII markers). The
/// load generator has one core for thousands of clients; with
/// tokio-tungstenite's per-message allocation and validation the clients,
/// not the gateway, would set the figures. Pings are answered.
struct RawWs {
    tcp: tokio::net::TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Largest frame the client accepts (the gateway's default frame cap is
/// 64 KiB).
const MAX_FRAME: usize = 1 << 20;

impl RawWs {
    async fn connect(tcp: tokio::net::TcpStream, gw: SocketAddr) -> Result<RawWs, BoxError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut ws = RawWs {
            tcp,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        };
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {gw}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.tcp.write_all(req.as_bytes()).await?;
        loop {
            if let Some(p) = memchr::memmem::find(&ws.buf[..ws.end], b"\r\n\r\n") {
                if !ws.buf.starts_with(b"HTTP/1.1 101") {
                    let line = ws.buf[..p].split(|&c| c == b'\r').next().unwrap_or(&[]);
                    return Err(
                        format!("upgrade refused: {}", String::from_utf8_lossy(line)).into(),
                    );
                }
                ws.start = p + 4;
                return Ok(ws);
            }
            if ws.end == ws.buf.len() {
                return Err("upgrade response head too large".into());
            }
            let n = ws.tcp.read(&mut ws.buf[ws.end..]).await?;
            if n == 0 {
                return Err("closed during the upgrade".into());
            }
            ws.end += n;
        }
    }

    /// Sends one masked frame.
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), BoxError> {
        use tokio::io::AsyncWriteExt;
        let mask = [0x5a, 0xc3, 0x1f, 0x77];
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&f).await?;
        Ok(())
    }

    /// The next frame's opcode and payload range in `self.buf`; valid until
    /// the next call. `None` at end of stream.
    async fn next(&mut self) -> Result<Option<(u8, std::ops::Range<usize>)>, BoxError> {
        use tokio::io::AsyncReadExt;
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() >= 2 {
                let (b0, b1) = (avail[0], avail[1]);
                if b1 & 0x80 != 0 {
                    return Err("masked frame from the server".into());
                }
                let (hdr, len) = match b1 & 0x7f {
                    126 if avail.len() >= 4 => {
                        (4, u16::from_be_bytes([avail[2], avail[3]]) as usize)
                    }
                    127 if avail.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&avail[2..10]);
                        (10, u64::from_be_bytes(b).min(u64::MAX >> 1) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if hdr != usize::MAX {
                    if len > MAX_FRAME {
                        return Err(format!("frame of {len} bytes").into());
                    }
                    if b0 & 0x80 == 0 || b0 & 0x0f == 0 {
                        return Err("fragmented frame".into());
                    }
                    if avail.len() >= hdr + len {
                        let at = self.start + hdr;
                        self.start = at + len;
                        return Ok(Some((b0 & 0x0f, at..at + len)));
                    }
                    if hdr + len > self.buf.len() {
                        self.buf.resize(hdr + len, 0);
                    }
                }
            }
            // Need more bytes: move the partial frame to the front.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.tcp.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    gw: SocketAddr,
    src: std::net::Ipv4Addr,
    subs: Vec<String>,
    stats: Rc<Stats>,
    sem: Rc<tokio::sync::Semaphore>,
    connected: Rc<Cell<usize>>,
    scan_every: u64,
    trades: bool,
) {
    let permit = sem.acquire().await;
    let setup = async {
        let tcp = tickergate_loadgen::tcp_from(src, gw).await?;
        let mut ws = RawWs::connect(tcp, gw).await?;
        connected.set(connected.get() + 1);
        if !subs.is_empty() {
            let mut op = json!({"op": "subscribe", "id": i, "symbols": subs});
            if trades {
                op["trades"] = json!(true);
            }
            ws.send(0x1, op.to_string().as_bytes()).await?;
            loop {
                match ws.next().await? {
                    Some((0x1, r)) => {
                        let t = &ws.buf[r];
                        if memchr::memmem::find(t, br#""type":"subscribed""#).is_some() {
                            // The reply says `"trades":true` when the
                            // gateway took the option.
                            if trades && memchr::memmem::find(t, br#""trades":true"#).is_none() {
                                let t = String::from_utf8_lossy(t).into_owned();
                                return Err(format!("subscribed without trades: {t}").into());
                            }
                            break;
                        }
                        if memchr::memmem::find(t, br#""type":"error""#).is_some() {
                            let t = String::from_utf8_lossy(t).into_owned();
                            return Err(format!("subscribe refused: {t}").into());
                        }
                    }
                    Some((0x8, _)) | None => return Err("closed before subscribed".into()),
                    Some((0x9, r)) => {
                        let payload = ws.buf[r].to_vec();
                        ws.send(0xA, &payload).await?;
                    }
                    Some(_) => {}
                }
            }
        }
        Ok::<_, BoxError>(ws)
    };
    let mut ws = match setup.await {
        Ok(ws) => ws,
        Err(e) => {
            stats.failed.set(stats.failed.get() + 1);
            stats.error(format!("client {i}: {e}"));
            return;
        }
    };
    drop(permit);
    stats.ready.set(stats.ready.get() + 1);
    let mut tracked = Subs::new(subs.iter().map(|s| s.as_bytes()).collect());
    let mut trade_track =
        trades.then(|| TradeTrack::new(subs.iter().map(|s| s.as_bytes()).collect()));
    // Frames read since the last scanned one (`--scan-every`).
    let mut unscanned = 0u64;
    loop {
        match ws.next().await {
            Ok(Some((0x1, r))) => {
                let b = &ws.buf[r];
                unscanned += 1;
                let scanned = unscanned >= scan_every;
                let now = now_ns();
                let read = if scanned {
                    unscanned = 0;
                    scan_frame(b, &mut tracked, &stats, now)
                } else {
                    Ok(count_quotes(b))
                };
                // Trades: every frame is checked (gapless seqs); the ages
                // of the scanned ones are recorded.
                let read = match (read, &mut trade_track) {
                    (Ok(q), Some(t)) => common::trades::scan(
                        b,
                        t,
                        &stats.trades,
                        scanned.then_some(now),
                        stats.measuring.get(),
                    )
                    .map(|_| q),
                    (read, _) => read,
                };
                match read {
                    Ok(q) if stats.measuring.get() => {
                        stats.frames.set(stats.frames.get() + 1);
                        stats.quotes.set(stats.quotes.get() + q);
                        stats.bytes.set(stats.bytes.get() + b.len() as u64);
                    }
                    Ok(_) => {}
                    Err(e) => stats.error(format!("client {i}: {e}")),
                }
            }
            Ok(Some((0x8, r))) => {
                let b = &ws.buf[r];
                let code = if b.len() >= 2 {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    0
                };
                stats.closed_with(code);
                return;
            }
            Ok(Some((0x9, r))) => {
                let payload = ws.buf[r].to_vec();
                if let Err(e) = ws.send(0xA, &payload).await {
                    stats.closed_with(0);
                    stats.error(format!("client {i}: pong: {e}"));
                    return;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                stats.closed_with(0);
                return;
            }
            Err(e) => {
                stats.closed_with(0);
                stats.error(format!("client {i}: {e}"));
                return;
            }
        }
    }
}

// ------------------------------------------------------------- slow clients

/// What the slow clients of a run share (on this one thread). `stats`
/// is the applications' view: `frames`, `quotes` and `bytes` count the
/// messages they took in the window and the age histogram holds each
/// quote's age at the moment its message was taken.
struct Slow {
    stats: Stats,
    /// Text messages and quotes the readers took off the sockets in the
    /// window (what the gateway delivered, taken or still queued).
    recv_frames: Cell<u64>,
    recv_quotes: Cell<u64>,
    /// Times a reader stopped reading at the queue's high-water mark.
    pauses: Cell<u64>,
    /// Longest queue seen in the window, in messages.
    max_queued: Cell<usize>,
    /// `ack` ops sent in the window.
    acks: Cell<u64>,
    /// Slow clients whose `flow` op the gateway accepted.
    ack_on: Cell<usize>,
    /// The gateway's answer to `flow` when it was not the `flow` reply
    /// (the first one).
    ack_refused: RefCell<Option<String>>,
}

impl Slow {
    fn new() -> Result<Slow, BoxError> {
        Ok(Slow {
            stats: Stats::new()?,
            recv_frames: Cell::new(0),
            recv_quotes: Cell::new(0),
            pauses: Cell::new(0),
            max_queued: Cell::new(0),
            acks: Cell::new(0),
            ack_on: Cell::new(0),
            ack_refused: RefCell::new(None),
        })
    }

    fn reset(&self) {
        self.stats.reset();
        self.recv_frames.set(0);
        self.recv_quotes.set(0);
        self.pauses.set(0);
        self.max_queued.set(0);
        self.acks.set(0);
    }
}

type SlowWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Reads a slow client's messages (during its setup) until the reply of
/// type `ty` to op `id`: `Ok(Ok(reply))`, or `Ok(Err(text))` when an
/// `error` reply comes first. Data before it is dropped; 20 s at most.
async fn slow_reply(ws: &mut SlowWs, ty: &str, id: u64) -> Result<Result<Value, String>, BoxError> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no `{ty}` reply within 20 s"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                // A frame is a JSON array of messages.
                let frame: Vec<Value> = serde_json::from_str(t.as_str())?;
                for m in frame {
                    let this = m.get("type").and_then(Value::as_str);
                    if this == Some("error") {
                        return Ok(Err(m.to_string()));
                    }
                    if this == Some(ty) && m.get("id").and_then(Value::as_u64) == Some(id) {
                        return Ok(Ok(m));
                    }
                }
            }
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}").into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(format!("connection ended before `{ty}`").into()),
        }
    }
}

/// A slow client, read the way a real client library reads: a reader that
/// takes every message off the socket as it comes (tungstenite answers
/// Pings as it reads, whatever the application does) into a queue of at
/// most `cfg.queue` messages, stopping at that high-water mark until the
/// application has taken the queue down to a quarter of it; and an
/// application that takes one message every `cfg.every`, records its
/// quotes' ages, and in ack mode acknowledges it. Both run in this one
/// task, so aborting the task stops both.
#[allow(clippy::too_many_arguments)]
async fn slow_client(
    i: usize,
    gw: SocketAddr,
    src: std::net::Ipv4Addr,
    subs: Vec<String>,
    slow: Rc<Slow>,
    sem: Rc<tokio::sync::Semaphore>,
    connected: Rc<Cell<usize>>,
    cfg: SlowCfg,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let permit = sem.acquire().await;
    let setup = async {
        let tcp = tickergate_loadgen::tcp_from(src, gw).await?;
        let url = format!("ws://{gw}/v1/ws");
        let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
        connected.set(connected.get() + 1);
        let op = json!({"op": "subscribe", "id": 1, "symbols": subs}).to_string();
        ws.send(Message::Text(op.into())).await?;
        if let Err(e) = slow_reply(&mut ws, "subscribed", 1).await? {
            return Err(format!("subscribe refused: {e}").into());
        }
        let mut ack = false;
        if cfg.ack > 0 {
            let op = json!({"op": "flow", "id": 2, "window": cfg.ack}).to_string();
            ws.send(Message::Text(op.into())).await?;
            match slow_reply(&mut ws, "flow", 2).await? {
                Ok(reply)
                    if reply.get("window").and_then(Value::as_u64) == Some(cfg.ack.into()) =>
                {
                    ack = true;
                }
                Ok(reply) => {
                    let mut r = slow.ack_refused.borrow_mut();
                    r.get_or_insert(format!("flow answered with another window: {reply}"));
                }
                Err(e) => {
                    let mut r = slow.ack_refused.borrow_mut();
                    r.get_or_insert(e);
                }
            }
        }
        Ok::<_, BoxError>((ws, ack))
    };
    let (ws, ack) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            let s = &slow.stats;
            s.failed.set(s.failed.get() + 1);
            s.error(format!("slow client {i}: {e}"));
            return;
        }
    };
    drop(permit);
    let stats = &slow.stats;
    stats.ready.set(stats.ready.get() + 1);
    if ack {
        slow.ack_on.set(slow.ack_on.get() + 1);
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Messages in the queue, and the water marks (websockets: a quarter).
    let queued = Cell::new(0usize);
    let (high, low) = (cfg.queue, cfg.queue / 4);
    let resume = tokio::sync::Notify::new();
    let reader = async {
        loop {
            if high > 0 && queued.get() >= high {
                if stats.measuring.get() {
                    slow.pauses.set(slow.pauses.get() + 1);
                }
                while queued.get() > low {
                    resume.notified().await;
                }
            }
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    if stats.measuring.get() {
                        slow.recv_frames.set(slow.recv_frames.get() + 1);
                        let q = count_quotes(t.as_str().as_bytes());
                        slow.recv_quotes.set(slow.recv_quotes.get() + q);
                    }
                    queued.set(queued.get() + 1);
                    if stats.measuring.get() {
                        slow.max_queued.set(slow.max_queued.get().max(queued.get()));
                    }
                    if tx.send(t).is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    stats.closed_with(f.map_or(0, |f| u16::from(f.code)));
                    return;
                }
                // A Ping: tungstenite has queued the Pong and writes it
                // with the next read, right away.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    stats.closed_with(0);
                    stats.error(format!("slow client {i}: {e}"));
                    return;
                }
                None => {
                    stats.closed_with(0);
                    return;
                }
            }
        }
    };
    let app = async {
        let mut tracked = Subs::new(subs.iter().map(|s| s.as_bytes()).collect());
        // Frames taken since the one that carried the `flow` reply.
        let mut taken = 0u64;
        // One message every `cfg.every` (later when none is queued).
        let mut tick = tokio::time::interval(cfg.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(t) = rx.recv().await else { return };
            queued.set(queued.get() - 1);
            if queued.get() <= low {
                resume.notify_one();
            }
            let b = t.as_str().as_bytes();
            match scan_frame(b, &mut tracked, stats, now_ns()) {
                Ok(q) if stats.measuring.get() => {
                    stats.frames.set(stats.frames.get() + 1);
                    stats.quotes.set(stats.quotes.get() + q);
                    stats.bytes.set(stats.bytes.get() + b.len() as u64);
                }
                Ok(_) => {}
                Err(e) => stats.error(format!("slow client {i}: {e}")),
            }
            taken += 1;
            if ack {
                let op = format!(r#"{{"op":"ack","n":{taken}}}"#);
                if let Err(e) = sink.send(Message::Text(op.into())).await {
                    stats.error(format!("slow client {i}: ack: {e}"));
                    return;
                }
                if stats.measuring.get() {
                    slow.acks.set(slow.acks.get() + 1);
                }
            }
        }
    };
    futures_util::future::select(std::pin::pin!(reader), std::pin::pin!(app)).await;
}

// ------------------------------------------------------------- one run

#[derive(Debug, Clone, Default, serde::Serialize)]
struct RunResult {
    run: usize,
    /// Paired workloads: "quotes" or "trades" (`--trades paired`),
    /// "standalone" or "edge" (`--topology paired`).
    mode: Option<&'static str>,
    /// "edge" when an edge node served the clients (`--topology`).
    topology: &'static str,
    /// Edge topology: the ingest node's and nats-server's CPU over the
    /// window, in cores (both on core 1).
    ingest_cpu_share: Option<f64>,
    nats_cpu_share: Option<f64>,
    /// The sim feed's `trade_ratio` in the gateway's config.
    trade_ratio: f64,
    clients: usize,
    ready: usize,
    failed: usize,
    closed: Vec<(u16, usize)>,
    connect_secs: f64,
    connects_per_sec: f64,
    window_secs: f64,
    upstream_per_sec: f64,
    offered_per_sec: f64,
    updates_per_sec: f64,
    frames_per_sec: f64,
    updates_per_frame: f64,
    bytes_per_sec: f64,
    /// `None` when clients scanned only some frames (`--scan-every`).
    seq_gaps: Option<u64>,
    /// 1 text frame in this many was scanned for ages and seq gaps.
    scan_every: u64,
    /// Share of offered updates that the client saw (the rest conflated).
    delivered_share: f64,
    disorder: u64,
    latency_ms: LatencyMs,
    gw_cpu_secs: f64,
    gw_cpu_share: f64,
    gw_cpu_us_per_update: f64,
    gw_cpu_us_per_frame: f64,
    /// Messages delivered per second: quotes, trades and `trades_dropped`
    /// (the same as updates_per_sec without trades).
    msgs_per_sec: f64,
    /// Gateway CPU per delivered message (quote, trade or trades_dropped).
    gw_cpu_us_per_msg: f64,
    /// The gateway's trade counters over the window, per second (trades
    /// in from the feed, trade messages out, trades dropped for clients).
    gw_trades_in_per_sec: Option<f64>,
    gw_trades_out_per_sec: Option<f64>,
    gw_trades_dropped_per_sec: Option<f64>,
    /// The same split into user space and kernel (utime and stime).
    gw_user_us_per_frame: f64,
    gw_kernel_us_per_frame: f64,
    gw_rss_kib_start: u64,
    gw_rss_kib_end: u64,
    gw_rss_kib_max: u64,
    loadgen_cpu_share: f64,
    /// Per second of the window: delivered updates/s.
    timeline_updates: Vec<f64>,
    /// Per second of the window: gateway RSS, KiB.
    timeline_rss_kib: Vec<u64>,
    /// Per second of the window: delivered trades/s (clients with trades).
    timeline_trades: Vec<f64>,
    /// (percentile, ms) points of the latency distribution, for charts.
    latency_curve: Vec<(f64, f64)>,
    raw: Option<RawResult>,
    /// One-core latency floor (boards and steady feeds, with the raw
    /// baseline).
    floor: Option<Floor>,
    /// The gateway's own view over the window: p50 and p99 of each frame's
    /// oldest quote's age when the frame was built (its
    /// `delivery_latency_seconds` histogram, as bucket upper bounds, ms).
    /// Against the age at receipt it splits the latency into the gateway's
    /// part and what happened after the write (socket buffers, the reader).
    built_ms: Option<(f64, f64)>,
    /// slow-reader: the slow clients. Then the fields above are the fast
    /// clients' (the ordinary ones), except the gateway CPU per update and
    /// per frame, which count what every client was delivered.
    slow: Option<SlowResult>,
    /// Clients that subscribed with trades: their trades.
    trades: Option<TradeResult>,
    first_error: Option<String>,
}

/// The trades of the clients that subscribed with `"trades": true`.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct TradeResult {
    /// Every update of a subscribed symbol that carries a trade:
    /// clients x symbols x per-symbol rate x trade_ratio.
    offered_per_sec: f64,
    /// Trade messages received per second.
    per_sec: f64,
    per_sec_per_client: f64,
    /// Share of offered trades received (the rest dropped, or not yet
    /// sent when the window closed).
    delivered_share: f64,
    /// Sum of the `trades_dropped` counts in the window, and per second.
    dropped: u64,
    dropped_per_sec: f64,
    dropped_msgs: u64,
    /// Trades missing with no `trades_dropped` to explain them, and
    /// repeated or backward seqs, over the connections' whole life: must
    /// be 0; anything else is a gateway bug, reported loudly.
    seq_gaps: u64,
    seq_gap_events: u64,
    disorder: u64,
    /// Age of each trade at receipt (minus its `gw_ts`).
    age_ms: LatencyMs,
    age_curve: Vec<(f64, f64)>,
    /// Gateway CPU per trade delivered: all of its CPU in the window over
    /// the trades alone (the quotes it sent are in it too; the paired
    /// comparison gives the extra CPU the trades cost).
    gw_cpu_us_per_trade: f64,
    /// The first gap or disorder, described.
    first_error: Option<String>,
}

/// The slow clients of a slow-reader run (all of them together unless
/// said otherwise).
#[derive(Debug, Clone, Default, serde::Serialize)]
struct SlowResult {
    clients: usize,
    ready: usize,
    failed: usize,
    closed: Vec<(u16, usize)>,
    /// Receive queue's high-water mark in messages (0: unbounded); the
    /// reader resumes at a quarter of it.
    queue: usize,
    every_ms: f64,
    /// Ack mode's window asked for (0: off).
    ack_window: u8,
    /// Slow clients whose `flow` op the gateway accepted.
    ack_on: usize,
    /// What the gateway answered instead of the `flow` reply.
    ack_refused: Option<String>,
    acks_sent: u64,
    /// Messages (frames) the applications took in the window.
    taken_msgs: u64,
    taken_msgs_per_sec_per_client: f64,
    /// Updates in the messages taken, per second.
    taken_updates_per_sec: f64,
    /// Updates the readers took off the sockets per second: what the
    /// gateway delivered to the slow clients.
    delivered_updates_per_sec: f64,
    delivered_updates_per_sec_per_client: f64,
    delivered_frames_per_sec: f64,
    /// Times a reader stopped reading at the high-water mark.
    reader_pauses: u64,
    max_queued: usize,
    seq_gaps: u64,
    disorder: u64,
    /// Age of each non-snapshot quote when the application took it.
    age_ms: LatencyMs,
    age_curve: Vec<(f64, f64)>,
    first_error: Option<String>,
}

/// The gateway config of a workload: one simulated feed, limits lifted for
/// a load test from a few loopback addresses.
fn gateway_config(w: &Workload, feed: &Feed, session: &[String]) -> String {
    let (rate, burst) = match *feed {
        Feed::Burst { hz } => (0.0, hz),
        Feed::Steady { rate } => (rate, 0.0),
    };
    format!(
        "[server]\n\
         max_connections = {max}\n\
         conn_rate_per_ip = 1000000\n\
         conn_burst_per_ip = 1000000\n\
         \n\
         [[feeds]]\n\
         kind = \"sim\"\n\
         symbols = {u}\n\
         rate = {rate:.1}\n\
         burst_hz = {burst:.3}\n\
         zipf = 0.0\n\
         trade_ratio = {ratio:?}\n\
         \n\
         [session]\n\
         {session}\n",
        max = w.clients + w.slow + 100,
        u = w.universe,
        ratio = w.trade_ratio(),
        session = session.join("\n"),
    )
}

/// An edge's config for `--topology edge`: the limits of
/// [`gateway_config`], no feed, `[cluster] role = "edge"` on `nats_url`.
fn edge_config(w: &Workload, session: &[String], nats_url: &str) -> String {
    format!(
        "[server]\n\
         max_connections = {max}\n\
         conn_rate_per_ip = 1000000\n\
         conn_burst_per_ip = 1000000\n\
         \n\
         [session]\n\
         {session}\n\
         {cluster}",
        max = w.clients + w.slow + 100,
        session = session.join("\n"),
        cluster = common::cluster::cluster_toml("edge", nats_url, &[]),
    )
}

/// What stands behind an edge (`--topology edge`): nats-server and an
/// ingest node running the workload's feed, both on core 1 (children of
/// this tool, which runs there), killed on drop.
struct EdgeCluster {
    ingest: GatewayProc,
    nats: common::cluster::NatsServer,
}

impl EdgeCluster {
    fn start(o: &Opts, w: &Workload, feed: &Feed) -> Result<EdgeCluster, BoxError> {
        let core1 = o.pin.then_some(1);
        let nats = common::cluster::NatsServer::start(core1)?;
        let cfg = format!(
            "{}{}",
            gateway_config(w, feed, &[]),
            common::cluster::cluster_toml("ingest", &nats.url(), &[])
        );
        let ingest = GatewayProc::spawn_on(&o.bin, core1, Some(&cfg), &[], &[])?;
        // Its feed status is in the stream before the edge starts, so the
        // edge knows every symbol when it serves.
        common::cluster::wait_metric(
            ingest.addr,
            "tickergate_cluster_status_published_total",
            |v| v >= 1.0,
            Duration::from_secs(20),
        )?;
        Ok(EdgeCluster { ingest, nats })
    }

    /// CPU seconds used so far by the ingest and by nats-server.
    fn cpu(&self) -> Result<(f64, f64), BoxError> {
        Ok((cpu_secs(self.ingest.pid)?, cpu_secs(self.nats.pid)?))
    }
}

struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(on: bool, len: u64, what: &str) -> Progress {
        if !on {
            return Progress(None);
        }
        let pb = indicatif::ProgressBar::new(len);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(what.to_string());
        Progress(Some(pb))
    }

    fn set(&self, pos: u64, msg: String) {
        if let Some(pb) = &self.0 {
            pb.set_position(pos);
            pb.set_message(msg);
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// One run on a fresh gateway. `mode` is the half of a paired run
/// (`TradeMode::Paired`): "quotes" or "trades".
async fn one_run(
    o: &Opts,
    w: &Workload,
    feed: &Feed,
    run: usize,
    mode: Option<&'static str>,
) -> Result<RunResult, BoxError> {
    let trades_on = w.trades == TradeMode::On || mode == Some("trades");
    let edge = o.topology == Topology::Edge || mode == Some("edge");
    let cluster = if edge {
        Some(EdgeCluster::start(o, w, feed)?)
    } else {
        None
    };
    let gw = match &cluster {
        Some(c) => GatewayProc::spawn(
            &o.bin,
            o.pin,
            Some(&edge_config(w, &o.session, &c.nats.url())),
            &o.gw_args,
            &[],
        )?,
        None => GatewayProc::spawn(
            &o.bin,
            o.pin,
            Some(&gateway_config(w, feed, &o.session)),
            &o.gw_args,
            &[],
        )?,
    };
    let pid = gw.pid;
    let names = tickergate::feed::sim::symbol_names(w.universe);
    let draws = draw_subscriptions(w.clients, w.symbols, w.universe, o.sub_zipf, o.seed);
    let mut holders = vec![0u32; w.universe];
    for d in &draws {
        for &j in d {
            holders[j] += 1;
        }
    }
    // Offered deliveries: every update of every subscribed symbol.
    let offered = w.clients as f64 * w.symbols as f64 * feed.per_symbol(w.universe);
    let stats = Rc::new(Stats::new()?);
    let slow = Rc::new(Slow::new()?);
    let sem = Rc::new(tokio::sync::Semaphore::new(o.concurrency));
    let connected = Rc::new(Cell::new(0usize));
    let mut tasks = Vec::with_capacity(w.clients + w.slow);
    let t0 = Instant::now();
    for (i, mut d) in draws.into_iter().enumerate() {
        // In the simulator's order, which is the order the gateway interns
        // them and writes a client's quotes in.
        d.sort_unstable();
        let subs = d.into_iter().map(|j| names[j].clone()).collect();
        tasks.push(tokio::task::spawn_local(client(
            i,
            gw.addr,
            common::src_ip(i % o.src_ips),
            subs,
            stats.clone(),
            sem.clone(),
            connected.clone(),
            o.scan_every,
            trades_on,
        )));
    }
    // Slow clients: every symbol of the feed.
    for k in 0..w.slow {
        let i = w.clients + k;
        tasks.push(tokio::task::spawn_local(slow_client(
            i,
            gw.addr,
            common::src_ip(i % o.src_ips),
            names.clone(),
            slow.clone(),
            sem.clone(),
            connected.clone(),
            o.slow,
        )));
    }
    let all = w.clients + w.slow;
    let done = || {
        stats.ready.get() + stats.failed.get() + slow.stats.ready.get() + slow.stats.failed.get()
    };
    // Connect phase, bounded: 60 s plus 10 ms per client.
    let deadline = t0 + Duration::from_secs(60) + Duration::from_millis(10 * all as u64);
    let pb = Progress::new(o.progress, all as u64, "connecting");
    while done() < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pb.set(
            (stats.ready.get() + slow.stats.ready.get()) as u64,
            format!("{} failed", stats.failed.get() + slow.stats.failed.get()),
        );
    }
    pb.finish();
    let connect_secs = t0.elapsed().as_secs_f64();
    let ready = stats.ready.get();
    if ready + slow.stats.ready.get() == 0 {
        let e = stats.first_error.borrow().clone();
        let e = e.or_else(|| slow.stats.first_error.borrow().clone());
        return Err(format!("no client connected: {}", e.unwrap_or_default()).into());
    }
    let mut r = RunResult {
        run,
        mode,
        trade_ratio: w.trade_ratio(),
        topology: if edge { "edge" } else { "standalone" },
        clients: w.clients,
        connect_secs,
        connects_per_sec: connected.get() as f64 / connect_secs,
        upstream_per_sec: feed.upstream_rate(w.universe),
        offered_per_sec: offered,
        ..RunResult::default()
    };
    if w.symbols > 0 {
        tokio::time::sleep(o.warmup).await;
        stats.reset();
        slow.reset();
        stats.measuring.set(true);
        slow.stats.measuring.set(true);
        let built0 = built_ages(gw.addr);
        let gwt0 = GwTrades::read(gw.addr);
        let (user0, sys0) = cpu_split(pid)?;
        let self0 = cpu_secs(std::process::id())?;
        let others0 = cluster.as_ref().map(EdgeCluster::cpu).transpose()?;
        r.gw_rss_kib_start = rss_kib(pid);
        let start = Instant::now();
        let secs = o.duration.as_secs_f64().ceil() as u64;
        let pb = Progress::new(o.progress, secs, "measuring");
        let (mut last_q, mut last_t) = (0u64, 0u64);
        for s in 1..=secs {
            let until = start + Duration::from_secs_f64((s as f64).min(o.duration.as_secs_f64()));
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
            let q = stats.quotes.get();
            let rss = rss_kib(pid);
            r.timeline_updates.push((q - last_q) as f64);
            r.timeline_rss_kib.push(rss);
            r.gw_rss_kib_max = r.gw_rss_kib_max.max(rss);
            last_q = q;
            if trades_on {
                let t = stats.trades.trades.get();
                r.timeline_trades.push((t - last_t) as f64);
                last_t = t;
            }
            pb.set(
                s,
                format!(
                    "{:.0} updates/s, RSS {} MiB, {} closed",
                    q as f64 / start.elapsed().as_secs_f64(),
                    rss / 1024,
                    stats.closed_total()
                ),
            );
        }
        stats.measuring.set(false);
        slow.stats.measuring.set(false);
        pb.finish();
        let window = start.elapsed().as_secs_f64();
        let (user1, sys1) = cpu_split(pid)?;
        if let (Some(c), Some((i0, n0))) = (&cluster, others0) {
            let (i1, n1) = c.cpu()?;
            r.ingest_cpu_share = Some((i1 - i0) / window);
            r.nats_cpu_share = Some((n1 - n0) / window);
        }
        if let (Some(a), Some(b)) = (built0, built_ages(gw.addr)) {
            r.built_ms = built_quantiles(&a, &b);
        }
        if let (Some(a), Some(b)) = (gwt0, GwTrades::read(gw.addr)) {
            r.gw_trades_in_per_sec = Some((b.trades_in - a.trades_in) / window);
            r.gw_trades_out_per_sec = Some((b.trades_out - a.trades_out) / window);
            r.gw_trades_dropped_per_sec = Some((b.dropped - a.dropped) / window);
        }
        let (user, sys) = (user1 - user0, sys1 - sys0);
        let cpu = user + sys;
        let self_cpu = cpu_secs(std::process::id())? - self0;
        r.gw_rss_kib_end = rss_kib(pid);
        let (q, f) = (stats.quotes.get() as f64, stats.frames.get() as f64);
        r.window_secs = window;
        r.updates_per_sec = q / window;
        r.frames_per_sec = f / window;
        r.updates_per_frame = if f > 0.0 { q / f } else { 0.0 };
        r.bytes_per_sec = stats.bytes.get() as f64 / window;
        r.scan_every = o.scan_every;
        r.seq_gaps = (o.scan_every == 1).then(|| stats.gaps.get());
        r.delivered_share = if offered > 0.0 {
            r.updates_per_sec / offered
        } else {
            0.0
        };
        r.disorder = stats.disorder.get();
        let h = stats.latency_us.borrow();
        r.latency_ms = latency_of(&h);
        r.latency_curve = latency_curve(&h);
        drop(h);
        if w.slow > 0 {
            r.slow = Some(slow_result(&slow, w.slow, &o.slow, window));
        }
        // The gateway's work covers every client: the slow ones too.
        let (q, f) = (
            q + slow.recv_quotes.get() as f64,
            f + slow.recv_frames.get() as f64,
        );
        let ts = &stats.trades;
        let msgs = q + (ts.trades.get() + ts.dropped_msgs.get()) as f64;
        r.msgs_per_sec = msgs / window;
        r.gw_cpu_us_per_msg = if msgs > 0.0 { cpu * 1e6 / msgs } else { 0.0 };
        if trades_on {
            r.trades = Some(trade_result(ts, w, feed, ready, window, cpu));
        }
        r.gw_cpu_secs = cpu;
        r.gw_cpu_share = cpu / window;
        r.gw_cpu_us_per_update = if q > 0.0 { cpu * 1e6 / q } else { 0.0 };
        r.gw_cpu_us_per_frame = if f > 0.0 { cpu * 1e6 / f } else { 0.0 };
        r.gw_user_us_per_frame = if f > 0.0 { user * 1e6 / f } else { 0.0 };
        r.gw_kernel_us_per_frame = if f > 0.0 { sys * 1e6 / f } else { 0.0 };
        r.loadgen_cpu_share = self_cpu / window;
    }
    r.ready = ready;
    r.failed = stats.failed.get();
    r.closed = stats.closed.borrow().clone();
    r.first_error = stats.first_error.borrow().clone();
    for t in &tasks {
        t.abort();
    }
    // Let the aborted tasks drop their sockets before the gateway goes.
    tokio::task::yield_now().await;
    drop(tasks);
    drop(gw);
    drop(cluster);
    // slow-reader asks how fresh a slow reader's values are, not how fast:
    // no raw baseline.
    // Trades: the figure is CPU per message against the same run without
    // trades, not against raw writes: no raw baseline either.
    if o.raw && w.symbols > 0 && w.slow == 0 && w.clients > 0 && w.trades == TradeMode::Off {
        let batch = r.updates_per_frame.round().max(1.0) as usize;
        let one = raw_baseline(o, ready, 1, 0.0).await?;
        let many = if batch > 1 {
            Some(raw_baseline(o, ready, batch, 0.0).await?)
        } else {
            None
        };
        // A board that ticks a few times a second: how long writing one
        // frame of the same size to every socket takes, with nothing else
        // to do (the floor under the gateway's burst latency).
        let paced = match *feed {
            Feed::Burst { hz } if hz <= 20.0 => Some(raw_baseline(o, ready, batch, hz).await?),
            _ => None,
        };
        r.floor = Floor::of(feed, w.symbols, &holders, &one, paced.as_ref());
        r.raw = Some(RawResult::new(&r, one, many, paced));
    }
    Ok(r)
}

/// The trade-reading clients' figures over a window of `window` seconds,
/// with the gateway's CPU `cpu` (seconds) in it.
fn trade_result(
    s: &TradeStats,
    w: &Workload,
    feed: &Feed,
    ready: usize,
    window: f64,
    cpu: f64,
) -> TradeResult {
    let offered =
        w.clients as f64 * w.symbols as f64 * feed.per_symbol(w.universe) * w.trade_ratio();
    let n = s.trades.get() as f64;
    let h = s.age_us.borrow();
    TradeResult {
        offered_per_sec: offered,
        per_sec: n / window,
        per_sec_per_client: n / window / ready.max(1) as f64,
        delivered_share: if offered > 0.0 {
            n / window / offered
        } else {
            0.0
        },
        dropped: s.dropped.get(),
        dropped_per_sec: s.dropped.get() as f64 / window,
        dropped_msgs: s.dropped_msgs.get(),
        seq_gaps: s.gaps.get(),
        seq_gap_events: s.gap_events.get(),
        disorder: s.disorder.get(),
        age_ms: latency_of(&h),
        age_curve: latency_curve(&h),
        gw_cpu_us_per_trade: if n > 0.0 { cpu * 1e6 / n } else { 0.0 },
        first_error: s.first_error.borrow().clone(),
    }
}

/// The slow clients' figures over a window of `window` seconds.
fn slow_result(slow: &Slow, clients: usize, cfg: &SlowCfg, window: f64) -> SlowResult {
    let s = &slow.stats;
    let h = s.latency_us.borrow();
    let ready = s.ready.get().max(1) as f64;
    let recv_q = slow.recv_quotes.get() as f64;
    SlowResult {
        clients,
        ready: s.ready.get(),
        failed: s.failed.get(),
        closed: s.closed.borrow().clone(),
        queue: cfg.queue,
        every_ms: cfg.every.as_secs_f64() * 1000.0,
        ack_window: cfg.ack,
        ack_on: slow.ack_on.get(),
        ack_refused: slow.ack_refused.borrow().clone(),
        acks_sent: slow.acks.get(),
        taken_msgs: s.frames.get(),
        taken_msgs_per_sec_per_client: s.frames.get() as f64 / window / ready,
        taken_updates_per_sec: s.quotes.get() as f64 / window,
        delivered_updates_per_sec: recv_q / window,
        delivered_updates_per_sec_per_client: recv_q / window / ready,
        delivered_frames_per_sec: slow.recv_frames.get() as f64 / window,
        reader_pauses: slow.pauses.get(),
        max_queued: slow.max_queued.get(),
        seq_gaps: s.gaps.get(),
        disorder: s.disorder.get(),
        age_ms: latency_of(&h),
        age_curve: latency_curve(&h),
        first_error: s.first_error.borrow().clone(),
    }
}

// ------------------------------------------------- gateway-side latency

/// Cumulative buckets of the gateway's `delivery_latency_seconds`
/// histogram: (upper bound in seconds, count), `+Inf` last.
fn built_ages(addr: std::net::SocketAddr) -> Option<Vec<(f64, f64)>> {
    const SERIES: &str = "tickergate_delivery_latency_seconds_bucket{le=\"";
    let body = common::http_get(addr, "/metrics").ok()?;
    let v: Vec<(f64, f64)> = body
        .lines()
        .filter_map(|l| {
            let (le, count) = l.strip_prefix(SERIES)?.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

/// p50 and p99 (bucket upper bounds, ms) of the frames built between two
/// snapshots of the histogram.
fn built_quantiles(a: &[(f64, f64)], b: &[(f64, f64)]) -> Option<(f64, f64)> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<(f64, f64)> = a.iter().zip(b).map(|(x, y)| (y.0, y.1 - x.1)).collect();
    let total = d.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let at = |q: f64| {
        d.iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    };
    Some((at(0.50), at(0.99)))
}

// --------------------------------------------------------- one-core floor

/// The lowest latency any server on one core could give this workload,
/// from the subscription map and a per-write cost measured by the raw
/// writer in the same run. One core writes sockets one after another, so
/// after an update the i-th of the writes it needs ends no sooner than
/// i x cost after the update arrived, however the server is built;
/// every other piece of work (the other updates, reading, framing) only
/// adds to it. Counting each delivery at that bound gives a latency
/// distribution no one-core server can beat: its percentiles are the
/// floor under the measured ones.
///
/// - Burst feed (every symbol at once): every client needs one write per
///   burst carrying all its symbols; the cost is the raw paced writer's
///   CPU per write (the same frames to the same sleeping readers).
/// - Steady feed (one symbol per update, uniform): an update of a symbol
///   held by n clients needs n writes; the cost is the cheapest write the
///   raw writer measured (back-to-back 100-byte writes to busy readers),
///   so the floor errs low.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Floor {
    /// µs per write used.
    cost_us: f64,
    /// Which raw measurement it is.
    cost_from: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// (percentile, ms) at the points of [`latency_curve`].
    curve: Vec<(f64, f64)>,
}

impl Floor {
    fn of(
        feed: &Feed,
        symbols: usize,
        holders: &[u32],
        one: &RawRun,
        paced: Option<&RawRun>,
    ) -> Option<Floor> {
        // Position in the write sequence of every delivery.
        let mut pos: Vec<u32> = Vec::new();
        let (cost_us, cost_from) = match *feed {
            Feed::Burst { hz } if hz <= 20.0 => {
                let writers = holders.iter().map(|&n| n as usize).sum::<usize>() / symbols.max(1);
                for i in 1..=writers as u32 {
                    pos.extend(std::iter::repeat_n(i, symbols));
                }
                (
                    paced?.cpu_us_per_write,
                    "raw paced writes (same frames, one per socket per burst)",
                )
            }
            Feed::Steady { rate } if rate > 0.0 => {
                for &n in holders {
                    pos.extend(1..=n);
                }
                (
                    one.cpu_us_per_write,
                    "raw back-to-back 100 B writes (the cheapest measured)",
                )
            }
            _ => return None,
        };
        if pos.is_empty() || cost_us <= 0.0 {
            return None;
        }
        pos.sort_unstable();
        let at = |q: f64| {
            let k = ((q * pos.len() as f64).ceil() as usize).clamp(1, pos.len()) - 1;
            pos[k] as f64 * cost_us / 1000.0
        };
        Some(Floor {
            cost_us,
            cost_from,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            curve: curve_quantiles().map(|q| (q * 100.0, at(q))).collect(),
        })
    }
}

// ------------------------------------------------------------ raw baseline

/// What a raw writer did in its window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct RawRun {
    conns: usize,
    msgs_per_write: usize,
    writes_per_sec: f64,
    /// Messages the readers received per second (bytes / 100).
    msgs_per_sec: f64,
    /// Writes that found a full socket buffer, per second.
    would_block_per_sec: f64,
    cpu_us_per_write: f64,
    /// Paced rounds per second (0: back to back).
    paced_hz: f64,
    /// Paced: median and longest time to write every socket once, ms.
    round_ms: f64,
    round_max_ms: f64,
    /// Paced: age of each write at receipt by the same kind of reader as
    /// the gateway's clients (round start to read), p50 and p99, ms; NaN
    /// when not paced. The one-core floor is computed from CPU per write
    /// and leaves the reader out; this includes it.
    receipt_p50_ms: f64,
    receipt_p99_ms: f64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct RawResult {
    one: RawRun,
    batched: Option<RawRun>,
    /// Burst workloads: the gateway's frames written the same way, paced
    /// at the burst rate.
    paced: Option<RawRun>,
    /// Gateway frames/s as a fraction of raw 100-byte writes/s.
    frames_vs_raw_writes: f64,
    /// Gateway updates/s as a fraction of raw messages/s with the
    /// gateway's messages per write.
    updates_vs_raw_batched: f64,
    /// Raw CPU per write divided by the gateway's CPU per frame.
    cpu_per_write_ratio: f64,
}

impl RawResult {
    fn new(r: &RunResult, one: RawRun, many: Option<RawRun>, paced: Option<RawRun>) -> RawResult {
        let b = many.unwrap_or(one);
        RawResult {
            one,
            batched: many,
            paced,
            frames_vs_raw_writes: r.frames_per_sec / one.writes_per_sec.max(1e-9),
            updates_vs_raw_batched: r.updates_per_sec / b.msgs_per_sec.max(1e-9),
            cpu_per_write_ratio: if r.gw_cpu_us_per_frame > 0.0 {
                one.cpu_us_per_write / r.gw_cpu_us_per_frame
            } else {
                0.0
            },
        }
    }
}

/// Raw baseline: a child process of this binary (`--raw-server`), pinned
/// like the gateway, accepts `conns` connections and writes for
/// `o.raw_secs`; this process reads everything.
async fn raw_baseline(o: &Opts, conns: usize, batch: usize, hz: f64) -> Result<RawRun, BoxError> {
    let exe = std::env::current_exe()?;
    let mut cmd = if o.pin && common::have_taskset() {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("0").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.arg("--raw-server")
        .arg(conns.to_string())
        .arg(batch.to_string())
        .arg(o.raw_secs.as_secs_f64().to_string())
        .arg(hz.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = KillOnDrop(cmd.spawn()?);
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut stdin = child.0.stdin.take().ok_or("no stdin")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let recv = |what: &str, secs: u64| -> Result<String, BoxError> {
        rx.recv_timeout(Duration::from_secs(secs))
            .map_err(|_| format!("raw server: no {what} line within {secs} s").into())
    };
    let addr: SocketAddr = recv("LISTEN", 20)?
        .strip_prefix("LISTEN ")
        .ok_or("raw server: expected LISTEN")?
        .parse()?;
    let total = Rc::new(Cell::new(0u64));
    // Paced rounds carry their start time (wall clock ns, little endian)
    // in the first 8 bytes of every write: the readers record each
    // write's age when they read it.
    let ages = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(
        1,
        100_000_000,
        3,
    )?));
    let wlen = batch * RAW_MSG;
    let mut readers = Vec::with_capacity(conns);
    for i in 0..conns {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(
            common::src_ip(i % o.src_ips),
            0,
        )))?;
        let mut s = sock.connect(addr).await?;
        let total = total.clone();
        let ages = ages.clone();
        readers.push(tokio::task::spawn_local(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 64 * 1024];
            // Bytes of this socket's stream read so far.
            let mut pos = 0usize;
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total.set(total.get() + n as u64);
                if hz > 0.0 {
                    let now = now_ns();
                    // Every write that starts in this read, when its
                    // stamp is whole in it (a split one is skipped).
                    let mut at = (wlen - pos % wlen) % wlen;
                    while at + 8 <= n {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(&buf[at..at + 8]);
                        let age_us = (now - i64::from_le_bytes(ts)) / 1000;
                        if age_us > 0 {
                            let _ = ages.borrow_mut().record(age_us as u64);
                        }
                        at += wlen;
                    }
                }
                pos += n;
            }
        }));
    }
    // The readers run on this thread: wait without blocking it.
    let ready = recv_polling(&rx, "READY", Duration::from_secs(60)).await?;
    if ready != "READY" {
        return Err(format!("raw server: expected READY, got {ready:?}").into());
    }
    total.set(0);
    ages.borrow_mut().reset();
    writeln!(stdin, "GO")?;
    let done = recv_polling(&rx, "DONE", o.raw_secs + Duration::from_secs(30)).await?;
    let received = total.get();
    for t in &readers {
        t.abort();
    }
    let (receipt_p50_ms, receipt_p99_ms) = {
        let h = ages.borrow();
        (receipt_ms(&h, hz, 50.0), receipt_ms(&h, hz, 99.0))
    };
    let mut f = done.split_whitespace();
    if f.next() != Some("DONE") {
        return Err(format!("raw server: expected DONE, got {done:?}").into());
    }
    let mut field = |name: &str| -> Result<f64, BoxError> {
        f.next()
            .and_then(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("raw server: bad DONE line {done:?}").into())
    };
    let (secs, writes, would_block, cpu, round_ms, round_max_ms) = (
        field("secs=")?,
        field("writes=")?,
        field("would_block=")?,
        field("cpu=")?,
        field("round_ms=")?,
        field("round_max_ms=")?,
    );
    Ok(RawRun {
        conns,
        msgs_per_write: batch,
        writes_per_sec: writes / secs,
        msgs_per_sec: received as f64 / RAW_MSG as f64 / secs,
        would_block_per_sec: would_block / secs,
        cpu_us_per_write: if writes > 0.0 {
            cpu * 1e6 / writes
        } else {
            0.0
        },
        paced_hz: hz,
        round_ms,
        round_max_ms,
        receipt_p50_ms,
        receipt_p99_ms,
    })
}

/// A percentile of the paced writes' ages at receipt, ms (NaN unpaced).
fn receipt_ms(h: &Histogram<u64>, hz: f64, q: f64) -> f64 {
    if hz > 0.0 && !h.is_empty() {
        h.value_at_quantile(q / 100.0) as f64 / 1000.0
    } else {
        f64::NAN
    }
}

/// The next line from `rx`, polled so the client tasks on this thread keep
/// running meanwhile.
async fn recv_polling(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    wait: Duration,
) -> Result<String, BoxError> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(l) => return Ok(l),
            Err(std::sync::mpsc::TryRecvError::Empty) if start.elapsed() < wait => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => return Err(format!("raw server: no {what} line").into()),
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--raw-server CONNS BATCH SECS [HZ]`: the raw-baseline writer, run as a
/// child process. Accepts CONNS connections, says READY, waits for GO,
/// then writes BATCH 100-byte messages per write, one write per socket per
/// round (non-blocking: a full socket is skipped and counted), for SECS:
/// rounds back to back, or with HZ > 0 paced HZ times a second.
fn raw_server(args: &[String]) -> Result<(), BoxError> {
    let conns: usize = args.first().ok_or("conns")?.parse()?;
    let batch: usize = args.get(1).ok_or("batch")?.parse()?;
    let secs: f64 = args.get(2).ok_or("secs")?.parse()?;
    let hz: f64 = args.get(3).map_or(Ok(0.0), |v| v.parse())?;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!("LISTEN {}", l.local_addr()?);
    let mut socks = Vec::with_capacity(conns);
    while socks.len() < conns {
        let (s, _) = l.accept()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    println!("READY");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let mut msg = Vec::with_capacity(RAW_MSG * batch);
    for _ in 0..batch {
        let mut m =
            br#"{"type":"quote","symbol":"RAW","seq":1,"bid":"1.00","ask":"1.01"}"#.to_vec();
        m.resize(RAW_MSG - 1, b' ');
        m.push(b',');
        msg.extend_from_slice(&m);
    }
    let cpu0 = cpu_secs(std::process::id())?;
    let start = Instant::now();
    let (mut writes, mut would_block) = (0u64, 0u64);
    let until = Duration::from_secs_f64(secs);
    let mut rounds: Vec<f64> = Vec::new();
    if hz > 0.0 {
        // Paced rounds, like a burst feed: one write to every socket, then
        // idle until the next round; each round's duration is what writing
        // that many sockets alone takes.
        let period = Duration::from_secs_f64(1.0 / hz);
        let mut next = start;
        while start.elapsed() < until {
            let t = Instant::now();
            // The round's start, for the readers' age at receipt.
            msg[..8].copy_from_slice(&now_ns().to_le_bytes());
            for s in &mut socks {
                match s.write(&msg) {
                    Ok(_) => writes += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => would_block += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            rounds.push(t.elapsed().as_secs_f64() * 1e3);
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    } else {
        'outer: loop {
            for s in &mut socks {
                match s.write(&msg) {
                    Ok(_) => writes += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => would_block += 1,
                    Err(e) => return Err(e.into()),
                }
                if writes % 256 == 0 && start.elapsed() >= until {
                    break 'outer;
                }
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(std::process::id())? - cpu0;
    rounds.sort_by(f64::total_cmp);
    let (round_ms, round_max_ms) = match rounds.len() {
        0 => (0.0, 0.0),
        n => (rounds[n / 2], rounds[n - 1]),
    };
    println!(
        "DONE secs={el} writes={writes} would_block={would_block} cpu={cpu} \
         round_ms={round_ms} round_max_ms={round_max_ms}"
    );
    // Give the reader a moment to drain before the sockets close.
    std::thread::sleep(Duration::from_millis(200));
    let mut sink = [0u8; 1];
    let _ = std::io::stdin().read(&mut sink);
    Ok(())
}

// ------------------------------------------------------------ summaries

/// Median, min and max of the finite values (NaN marks "not measured").
fn stat(v: &[f64]) -> Value {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return Value::Null;
    }
    s.sort_by(f64::total_cmp);
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    json!({"median": med, "min": s[0], "max": s[s.len() - 1]})
}

fn summarize(runs: &[RunResult]) -> Value {
    let f = |g: &dyn Fn(&RunResult) -> f64| stat(&runs.iter().map(g).collect::<Vec<_>>());
    let raw = |g: &dyn Fn(&RawResult) -> f64| {
        stat(
            &runs
                .iter()
                .filter_map(|r| r.raw.as_ref())
                .map(g)
                .collect::<Vec<_>>(),
        )
    };
    let mut out = json!({
        "connects_per_sec": f(&|r| r.connects_per_sec),
        "updates_per_sec": f(&|r| r.updates_per_sec),
        "frames_per_sec": f(&|r| r.frames_per_sec),
        "updates_per_frame": f(&|r| r.updates_per_frame),
        "delivered_share": f(&|r| r.delivered_share),
        "latency_p50_ms": f(&|r| r.latency_ms.p50),
        "latency_p99_ms": f(&|r| r.latency_ms.p99),
        "latency_p999_ms": f(&|r| r.latency_ms.p999),
        "latency_max_ms": f(&|r| r.latency_ms.max),
        "gw_cpu_share": f(&|r| r.gw_cpu_share),
        "gw_cpu_us_per_update": f(&|r| r.gw_cpu_us_per_update),
        "gw_cpu_us_per_frame": f(&|r| r.gw_cpu_us_per_frame),
        "gw_user_us_per_frame": f(&|r| r.gw_user_us_per_frame),
        "gw_kernel_us_per_frame": f(&|r| r.gw_kernel_us_per_frame),
        "gw_rss_kib_growth": f(&|r| r.gw_rss_kib_end as f64 - r.gw_rss_kib_start as f64),
        "loadgen_cpu_share": f(&|r| r.loadgen_cpu_share),
        "raw_writes_per_sec": raw(&|x| x.one.writes_per_sec),
        "raw_cpu_us_per_write": raw(&|x| x.one.cpu_us_per_write),
        "raw_batched_msgs_per_sec": raw(&|x| x.batched.unwrap_or(x.one).msgs_per_sec),
        "frames_vs_raw_writes": raw(&|x| x.frames_vs_raw_writes),
        "updates_vs_raw_batched": raw(&|x| x.updates_vs_raw_batched),
        "raw_paced_round_ms": raw(&|x| x.paced.map_or(f64::NAN, |p| p.round_ms)),
        "raw_paced_cpu_us_per_write": raw(&|x| x.paced.map_or(f64::NAN, |p| p.cpu_us_per_write)),
        "raw_paced_receipt_p50_ms": raw(&|x| x.paced.map_or(f64::NAN, |p| p.receipt_p50_ms)),
        "raw_paced_receipt_p99_ms": raw(&|x| x.paced.map_or(f64::NAN, |p| p.receipt_p99_ms)),
        "built_p50_ms": f(&|r| r.built_ms.map_or(f64::NAN, |x| x.0)),
        "built_p99_ms": f(&|r| r.built_ms.map_or(f64::NAN, |x| x.1)),
        "floor_p50_ms": f(&|r| r.floor.as_ref().map_or(f64::NAN, |x| x.p50_ms)),
        "floor_p99_ms": f(&|r| r.floor.as_ref().map_or(f64::NAN, |x| x.p99_ms)),
        "floor_cost_us": f(&|r| r.floor.as_ref().map_or(f64::NAN, |x| x.cost_us)),
        "p99_vs_floor": f(&|r| r.floor.as_ref().map_or(f64::NAN, |x| r.latency_ms.p99 / x.p99_ms)),
        "msgs_per_sec": f(&|r| r.msgs_per_sec),
        "gw_cpu_us_per_msg": f(&|r| r.gw_cpu_us_per_msg),
        "gw_rss_kib_max": f(&|r| r.gw_rss_kib_max as f64),
        "gw_trades_in_per_sec": f(&|r| r.gw_trades_in_per_sec.unwrap_or(f64::NAN)),
        "gw_trades_out_per_sec": f(&|r| r.gw_trades_out_per_sec.unwrap_or(f64::NAN)),
        "gw_trades_dropped_per_sec": f(&|r| r.gw_trades_dropped_per_sec.unwrap_or(f64::NAN)),
    });
    if runs.iter().any(|r| r.trades.is_some()) {
        let t = |g: &dyn Fn(&TradeResult) -> f64| {
            f(&|r: &RunResult| r.trades.as_ref().map_or(f64::NAN, g))
        };
        let trades = json!({
            "trades_offered_per_sec": t(&|x| x.offered_per_sec),
            "trades_per_sec": t(&|x| x.per_sec),
            "trades_per_sec_per_client": t(&|x| x.per_sec_per_client),
            "trade_delivered_share": t(&|x| x.delivered_share),
            "trades_dropped_per_sec": t(&|x| x.dropped_per_sec),
            "trades_dropped": t(&|x| x.dropped as f64),
            "trade_seq_gaps": t(&|x| x.seq_gaps as f64),
            "trade_disorder": t(&|x| x.disorder as f64),
            "trade_age_p50_ms": t(&|x| x.age_ms.p50),
            "trade_age_p90_ms": t(&|x| x.age_ms.p90),
            "trade_age_p99_ms": t(&|x| x.age_ms.p99),
            "trade_age_p999_ms": t(&|x| x.age_ms.p999),
            "trade_age_max_ms": t(&|x| x.age_ms.max),
            "gw_cpu_us_per_trade": t(&|x| x.gw_cpu_us_per_trade),
        });
        if let (Some(a), Value::Object(b)) = (out.as_object_mut(), trades) {
            a.extend(b);
        }
    }
    if runs.iter().any(|r| r.slow.is_some()) {
        let s = |g: &dyn Fn(&SlowResult) -> f64| {
            f(&|r: &RunResult| r.slow.as_ref().map_or(f64::NAN, g))
        };
        let per_client = |r: &RunResult| r.updates_per_sec / r.ready.max(1) as f64;
        let slow = json!({
            "fast_delivered_per_s": f(&|r| r.updates_per_sec),
            "fast_delivered_per_s_per_client": f(&per_client),
            "fast_age_p50_ms": f(&|r| r.latency_ms.p50),
            "fast_age_p90_ms": f(&|r| r.latency_ms.p90),
            "fast_age_p99_ms": f(&|r| r.latency_ms.p99),
            "fast_age_max_ms": f(&|r| r.latency_ms.max),
            "slow_taken_msgs": s(&|x| x.taken_msgs as f64),
            "slow_taken_per_s_per_client": s(&|x| x.taken_msgs_per_sec_per_client),
            "slow_taken_updates_per_s": s(&|x| x.taken_updates_per_sec),
            "slow_delivered_per_s": s(&|x| x.delivered_updates_per_sec),
            "slow_delivered_per_s_per_client": s(&|x| x.delivered_updates_per_sec_per_client),
            "slow_age_p50_ms": s(&|x| x.age_ms.p50),
            "slow_age_p90_ms": s(&|x| x.age_ms.p90),
            "slow_age_p99_ms": s(&|x| x.age_ms.p99),
            "slow_age_max_ms": s(&|x| x.age_ms.max),
            "slow_reader_pauses": s(&|x| x.reader_pauses as f64),
            "slow_acks_sent": s(&|x| x.acks_sent as f64),
        });
        if let (Some(a), Value::Object(b)) = (out.as_object_mut(), slow) {
            a.extend(b);
        }
    }
    out
}

fn print_run(w: &Workload, r: &RunResult) {
    if w.symbols == 0 {
        println!(
            "  run {}: {} of {} connected in {:.2} s: {:.0} handshakes/s ({} failed)",
            r.run, r.ready, r.clients, r.connect_secs, r.connects_per_sec, r.failed
        );
        return;
    }
    println!(
        "  run {}: {} clients ({} failed, closed {:?}), {:.0} handshakes/s",
        r.run, r.ready, r.failed, r.closed, r.connects_per_sec
    );
    println!(
        "    delivered {:.0} updates/s of {:.0} offered ({:.1}%), {:.0} frames/s, {:.1} updates/frame, {:.1} MB/s",
        r.updates_per_sec,
        r.offered_per_sec,
        r.delivered_share * 100.0,
        r.frames_per_sec,
        r.updates_per_frame,
        r.bytes_per_sec / 1e6
    );
    let l = r.latency_ms;
    println!(
        "    age at receipt ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} quotes; {}, disorder {})",
        l.p50, l.p90, l.p99, l.p999, l.max, l.count,
        match r.seq_gaps {
            Some(g) => format!("seq gaps {g}"),
            None => format!("1 frame in {} scanned, seq gaps not counted", r.scan_every),
        },
        r.disorder
    );
    if let Some(x) = &r.slow {
        print_slow(r, x);
    }
    if let Some(x) = &r.trades {
        print_trades(r, x);
    }
    println!(
        "    gateway CPU {:.0}% = {:.3} µs/update, {:.3} µs/msg, {:.2} µs/frame ({:.2} user + {:.2} kernel); RSS {} -> {} KiB (max {}); loadgen CPU {:.0}%",
        r.gw_cpu_share * 100.0,
        r.gw_cpu_us_per_update,
        r.gw_cpu_us_per_msg,
        r.gw_cpu_us_per_frame,
        r.gw_user_us_per_frame,
        r.gw_kernel_us_per_frame,
        r.gw_rss_kib_start,
        r.gw_rss_kib_end,
        r.gw_rss_kib_max,
        r.loadgen_cpu_share * 100.0
    );
    if let Some(x) = &r.raw {
        println!(
            "    raw loopback, {} sockets: {:.0} writes/s of 100 B ({:.2} µs CPU/write); gateway frames/s = {:.2} of it",
            x.one.conns, x.one.writes_per_sec, x.one.cpu_us_per_write, x.frames_vs_raw_writes
        );
        if let Some(b) = &x.batched {
            println!(
                "    raw loopback, {} x 100 B per write: {:.0} msgs/s; gateway updates/s = {:.2} of it",
                b.msgs_per_write, b.msgs_per_sec, x.updates_vs_raw_batched
            );
        }
    }
    if let Some(p) = r.raw.as_ref().and_then(|x| x.paced) {
        println!(
            "    raw loopback, paced {} rounds/s: one {} x 100 B write to each of {} sockets takes {:.2} ms (max {:.2}), {:.2} µs CPU/write",
            p.paced_hz, p.msgs_per_write, p.conns, p.round_ms, p.round_max_ms, p.cpu_us_per_write
        );
        println!(
            "    raw paced writes at receipt (same reader, round start to read): p50 {:.2} ms, p99 {:.2} ms",
            p.receipt_p50_ms, p.receipt_p99_ms
        );
    }
    if let Some((p50, p99)) = r.built_ms {
        println!(
            "    gateway side (frame built, its own histogram): p50 <= {p50} ms, p99 <= {p99} ms; the rest of the age at receipt is after the write"
        );
    }
    if let Some(f) = &r.floor {
        println!(
            "    one-core floor at {:.2} µs/write ({}): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; gateway p99 = {:.2}x the floor",
            f.cost_us,
            f.cost_from,
            f.p50_ms,
            f.p99_ms,
            f.p999_ms,
            r.latency_ms.p99 / f.p99_ms
        );
    }
    if let Some(e) = &r.first_error {
        println!("    first client error: {e}");
    }
}

/// The trade lines of a run whose clients subscribed with trades; seq
/// gaps and disorder loudly.
fn print_trades(r: &RunResult, x: &TradeResult) {
    let a = x.age_ms;
    println!(
        "    trades: {:.0}/s of {:.0} offered ({:.1}%), {:.0}/s per client; {} dropped ({:.0}/s) in {} trades_dropped",
        x.per_sec,
        x.offered_per_sec,
        x.delivered_share * 100.0,
        x.per_sec_per_client,
        x.dropped,
        x.dropped_per_sec,
        x.dropped_msgs
    );
    println!(
        "    trade age at receipt ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} trades; seq gaps {}, disorder {}); gateway {:.3} µs CPU/trade delivered",
        a.p50, a.p90, a.p99, a.p999, a.max, a.count, x.seq_gaps, x.disorder, x.gw_cpu_us_per_trade
    );
    if let (Some(i), Some(o), Some(d)) = (
        r.gw_trades_in_per_sec,
        r.gw_trades_out_per_sec,
        r.gw_trades_dropped_per_sec,
    ) {
        println!("    gateway's trade counters: in {i:.0}/s, out {o:.0}/s, dropped {d:.0}/s");
    }
    if x.seq_gaps > 0 || x.disorder > 0 {
        println!(
            "    !!!! ERROR: trade seqs broken: {} trades missing in {} gaps no trades_dropped explains, {} out of order; first: {}",
            x.seq_gaps,
            x.seq_gap_events,
            x.disorder,
            x.first_error.as_deref().unwrap_or("?")
        );
    }
}

/// The slow-reader lines: fast clients' delivered rate, then the slow
/// clients.
fn print_slow(r: &RunResult, x: &SlowResult) {
    let l = r.latency_ms;
    if r.ready > 0 {
        println!(
            "    fast clients: {} delivered {:.0} updates/s each; age at receipt ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            r.ready,
            r.updates_per_sec / r.ready as f64,
            l.p50,
            l.p90,
            l.p99,
            l.max
        );
    }
    let ack = match (x.ack_window, &x.ack_refused) {
        (0, _) => "ack off".to_string(),
        (w, None) => format!(
            "ack mode, window {w}: on for {} ({} acks)",
            x.ack_on, x.acks_sent
        ),
        (w, Some(_)) => format!(
            "ack mode, window {w}: REFUSED, on for {} ({} acks)",
            x.ack_on, x.acks_sent
        ),
    };
    let queue = match x.queue {
        0 => "unbounded queue".to_string(),
        q => format!("queue {q} (resume at {})", q / 4),
    };
    println!(
        "    slow clients: {} of {} ({} failed, closed {:?}), {queue}, one message every {} ms, {ack}",
        x.ready, x.clients, x.failed, x.closed, x.every_ms
    );
    println!(
        "      took {} messages ({:.1}/s each) holding {:.0} updates/s; delivered {:.0} updates/s ({:.0} each) in {:.0} frames/s; reader paused {} times, queue max {}",
        x.taken_msgs,
        x.taken_msgs_per_sec_per_client,
        x.taken_updates_per_sec,
        x.delivered_updates_per_sec,
        x.delivered_updates_per_sec_per_client,
        x.delivered_frames_per_sec,
        x.reader_pauses,
        x.max_queued
    );
    let a = x.age_ms;
    println!(
        "      age at take ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} quotes; seq gaps {}, disorder {})",
        a.p50, a.p90, a.p99, a.max, a.count, x.seq_gaps, x.disorder
    );
    if let Some(e) = &x.ack_refused {
        println!("      the gateway refused `flow` (ran without acks): {e}");
    }
    if let Some(e) = &x.first_error {
        println!("      first slow client error: {e}");
    }
}

// ------------------------------------------------------------------ charts

fn load_font(o: &Opts) -> Option<()> {
    let candidates: Vec<PathBuf> = match &o.font {
        Some(p) => vec![p.clone()],
        None => vec![
            PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            PathBuf::from("/usr/share/fonts/TTF/DejaVuSans.ttf"),
        ],
    };
    let bytes = candidates.iter().find_map(|p| std::fs::read(p).ok())?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).ok()
}

type ChartResult = Result<(), Box<dyn std::error::Error>>;

/// One colour per run, the same in every chart.
fn run_color(i: usize) -> plotters::style::RGBColor {
    use plotters::style::{BLACK, BLUE, CYAN, GREEN, MAGENTA, RED};
    [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK][i % 6]
}

/// The charts' plotting area: f64 on both axes, drawn into a PNG.
type Chart<'a, 'b> = plotters::chart::ChartContext<
    'a,
    plotters::prelude::BitMapBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// Draws one run's line, labelled "run N" in the legend.
fn run_line(
    ch: &mut Chart<'_, '_>,
    i: usize,
    run: usize,
    pts: impl IntoIterator<Item = (f64, f64)>,
) -> ChartResult {
    use plotters::prelude::*;
    let c = run_color(i);
    ch.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
        .label(format!("run {run}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    Ok(())
}

/// The legend box, in the same style on every chart.
fn legend<'b>(ch: &mut Chart<'b, 'b>, pos: plotters::chart::SeriesLabelPosition) -> ChartResult {
    use plotters::prelude::*;
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(pos)
        .draw()?;
    Ok(())
}

fn chart_latency(path: &Path, title: &str, runs: &[RunResult]) -> ChartResult {
    use plotters::prelude::*;
    let ymax = runs
        .iter()
        .flat_map(|r| {
            let t = r.trades.as_ref().map_or(&[][..], |t| &t.age_curve[..]);
            r.latency_curve.iter().chain(t).map(|p| p.1)
        })
        .fold(0.1f64, f64::max)
        * 1.1;
    let x_of = |pct: f64| -(1.0 - pct / 100.0).max(1e-5).log10();
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, 0f64..ymax)?;
    ch.configure_mesh()
        .x_desc("percentile")
        .y_desc("age at receipt (ms)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{q:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
                + "%"
        })
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let pts = r.latency_curve.iter().map(|&(pct, ms)| (x_of(pct), ms));
        run_line(&mut ch, i, r.run, pts)?;
        // Runs with trades: the trades' age at receipt, dashed.
        if let Some(t) = r.trades.as_ref().filter(|t| !t.age_curve.is_empty()) {
            let style = run_color(i).stroke_width(2);
            let pts = t.age_curve.iter().map(|&(pct, ms)| (x_of(pct), ms));
            ch.draw_series(DashedLineSeries::new(pts, 8, 5, style))?
                .label(format!("run {}: trades", r.run))
                .legend(move |(x, y)| {
                    plotters::element::DashedPathElement::new(
                        vec![(x, y), (x + 20, y)],
                        5,
                        3,
                        style,
                    )
                });
        }
    }
    // The one-core floor of the first run that has one (the runs' floors
    // differ only by their raw write cost).
    if let Some(f) = runs.iter().find_map(|r| r.floor.as_ref()) {
        let pts = f.curve.iter().map(|&(pct, ms)| (x_of(pct), ms));
        let style = BLACK.stroke_width(1);
        ch.draw_series(DashedLineSeries::new(pts, 6, 4, style))?
            .label(format!("one-core floor at {:.1} µs/write", f.cost_us))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

fn chart_timeline(path: &Path, title: &str, runs: &[RunResult]) -> ChartResult {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(320);
    let n = runs
        .iter()
        .map(|r| r.timeline_updates.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ymax = runs
        .iter()
        .flat_map(|r| r.timeline_updates.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut ch = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
    ch.configure_mesh().y_desc("delivered updates/s").draw()?;
    for (i, r) in runs.iter().enumerate() {
        let pts = r
            .timeline_updates
            .iter()
            .enumerate()
            .map(|(s, v)| (s as f64 + 1.0, *v));
        ch.draw_series(LineSeries::new(pts, run_color(i).stroke_width(2)))?;
    }
    let rmax = runs
        .iter()
        .flat_map(|r| r.timeline_rss_kib.iter().copied())
        .max()
        .unwrap_or(1) as f64
        / 1024.0
        * 1.2;
    let mut ch = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..rmax)?;
    ch.configure_mesh()
        .x_desc("second of the measured window")
        .y_desc("gateway RSS (MiB)")
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let pts = r
            .timeline_rss_kib
            .iter()
            .enumerate()
            .map(|(s, v)| (s as f64 + 1.0, *v as f64 / 1024.0));
        run_line(&mut ch, i, r.run, pts)?;
    }
    legend(&mut ch, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

/// slow-reader: age by percentile, log scale, one colour per run: the
/// fast clients' age at receipt solid, the slow clients' age at take
/// dashed.
fn chart_slow_age(path: &Path, title: &str, runs: &[RunResult]) -> ChartResult {
    use plotters::prelude::*;
    let ages: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            let slow = r.slow.as_ref().map_or(&[][..], |x| &x.age_curve[..]);
            r.latency_curve.iter().chain(slow).map(|p| p.1)
        })
        .collect();
    let ymax = ages.iter().copied().fold(1.0f64, f64::max) * 2.0;
    let ymin = ages.iter().copied().fold(ymax, f64::min).clamp(0.01, 1.0) / 2.0;
    let x_of = |pct: f64| -(1.0 - pct / 100.0).max(1e-5).log10();
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..5f64, (ymin..ymax).log_scale())?;
    ch.configure_mesh()
        .x_desc("percentile")
        .y_desc("age (ms, log scale)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{q:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
                + "%"
        })
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let c = run_color(i);
        let pts = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
            v.iter()
                .map(|&(pct, ms)| (x_of(pct), ms.max(ymin)))
                .collect()
        };
        if !r.latency_curve.is_empty() {
            ch.draw_series(LineSeries::new(pts(&r.latency_curve), c.stroke_width(2)))?
                .label(format!("run {}: fast clients, at receipt", r.run))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        if let Some(x) = r.slow.as_ref().filter(|x| !x.age_curve.is_empty()) {
            let style = c.stroke_width(2);
            ch.draw_series(DashedLineSeries::new(pts(&x.age_curve), 8, 5, style))?
                .label(format!("run {}: slow clients, at take", r.run))
                .legend(move |(x, y)| {
                    plotters::element::DashedPathElement::new(
                        vec![(x, y), (x + 20, y)],
                        5,
                        3,
                        style,
                    )
                });
        }
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Delivered against offered updates/s, one point per (rate, run), with
/// the ideal y = x line.
fn chart_sweep(path: &Path, points: &[(f64, f64)]) -> ChartResult {
    use plotters::prelude::*;
    let max = points.iter().map(|p| p.0.max(p.1)).fold(1.0f64, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ch = ChartBuilder::on(&root)
        .caption("delivered vs offered updates/s", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max, 0f64..max)?;
    ch.configure_mesh()
        .x_desc("offered updates/s (upstream rate x subscribers)")
        .y_desc("delivered updates/s")
        .draw()?;
    ch.draw_series(LineSeries::new(
        vec![(0.0, 0.0), (max, max)],
        BLACK.mix(0.4),
    ))?
    .label("every update delivered")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    ch.draw_series(
        points
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled())),
    )?
    .label("measured (newest value, conflated)")
    .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
    legend(&mut ch, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

// ------------------------------------------------------------------ main

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": kernel.trim(),
    })
}

/// `--topology paired`: the edge's CPU per delivered update against the
/// standalone gateway's, pair by pair (same run number), printed and
/// returned for the JSON.
fn compare_topologies(s: &[RunResult], e: &[RunResult]) -> Value {
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let pairs: Vec<Value> = s
        .iter()
        .zip(e)
        .map(|(a, b)| {
            json!({
                "run": a.run,
                "standalone_us_per_update": a.gw_cpu_us_per_update,
                "edge_us_per_update": b.gw_cpu_us_per_update,
                "ratio": b.gw_cpu_us_per_update / a.gw_cpu_us_per_update,
                "standalone_p99_ms": a.latency_ms.p99,
                "edge_p99_ms": b.latency_ms.p99,
                "standalone_updates_per_sec": a.updates_per_sec,
                "edge_updates_per_sec": b.updates_per_sec,
                "edge_ingest_cpu_share": b.ingest_cpu_share,
                "edge_nats_cpu_share": b.nats_cpu_share,
            })
        })
        .collect();
    let ratios: Vec<f64> = pairs.iter().filter_map(|p| p["ratio"].as_f64()).collect();
    println!("\n  standalone vs edge, gateway CPU per delivered update (µs):");
    for p in &pairs {
        println!(
            "    pair {}: standalone {:.3}  edge {:.3}  edge/standalone {:.3}  (p99 {:.1} / {:.1} ms)",
            p["run"],
            p["standalone_us_per_update"].as_f64().unwrap_or(f64::NAN),
            p["edge_us_per_update"].as_f64().unwrap_or(f64::NAN),
            p["ratio"].as_f64().unwrap_or(f64::NAN),
            p["standalone_p99_ms"].as_f64().unwrap_or(f64::NAN),
            p["edge_p99_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let m = med(ratios.clone());
    println!("    median edge/standalone {m:.3}");
    json!({
        "pairs": pairs,
        "median_ratio": m,
        "standalone_median_us_per_update": med(s.iter().map(|r| r.gw_cpu_us_per_update).collect()),
        "edge_median_us_per_update": med(e.iter().map(|r| r.gw_cpu_us_per_update).collect()),
    })
}

async fn run_workload(o: &Opts, w: &Workload, charts: bool) -> Result<Value, BoxError> {
    let feeds: Vec<Feed> = if w.sweep.is_empty() {
        vec![w.feed.clone()]
    } else {
        w.sweep.iter().map(|&rate| Feed::Steady { rate }).collect()
    };
    let mut out = Vec::new();
    let mut sweep_points = Vec::new();
    let mut all_runs = Vec::new();
    let slow = if w.slow > 0 {
        format!(
            " + {} slow clients x all {} symbols ({}, one message every {} ms, {})",
            w.slow,
            w.universe,
            match o.slow.queue {
                0 => "unbounded queue".to_string(),
                q => format!("queue {q}, resume at {}", q / 4),
            },
            o.slow.every.as_secs_f64() * 1000.0,
            match o.slow.ack {
                0 => "ack off".to_string(),
                a => format!("ack window {a}"),
            }
        )
    } else {
        String::new()
    };
    // A paired workload runs each run twice: quotes only, then with trades
    // (the order alternating run by run, so a drift of the machine falls on
    // both), each on a fresh gateway with the same feed and subscriptions.
    let paired = w.trades == TradeMode::Paired;
    let topo_paired = o.topology == Topology::Paired;
    let modes: &[Option<&'static str>] = if paired {
        &[Some("quotes"), Some("trades")]
    } else if topo_paired {
        &[Some("standalone"), Some("edge")]
    } else {
        &[None]
    };
    let trades = match w.trades {
        TradeMode::Off => String::new(),
        TradeMode::On => format!(", with trades (trade_ratio {})", w.trade_ratio()),
        TradeMode::Paired => format!(
            ", paired: quotes only vs with trades (trade_ratio {})",
            w.trade_ratio()
        ),
    };
    let mut comparison = Vec::new();
    for feed in &feeds {
        println!(
            "\n== {}: {} clients x {} symbols{slow}; feed: {}{trades}; {} run(s)",
            w.name,
            w.clients,
            w.symbols,
            feed.describe(w.universe),
            o.runs
        );
        let mut by_mode: Vec<Vec<RunResult>> = vec![Vec::new(); modes.len()];
        for run in 1..=o.runs {
            let mut order: Vec<usize> = (0..modes.len()).collect();
            if run % 2 == 0 {
                order.reverse();
            }
            for k in order {
                let r = one_run(o, w, feed, run, modes[k]).await?;
                if let Some(m) = modes[k] {
                    println!("  -- mode {m}");
                }
                print_run(w, &r);
                sweep_points.push((r.offered_per_sec, r.updates_per_sec));
                by_mode[k].push(r);
            }
        }
        if let ([q, t], true) = (&by_mode[..], paired) {
            let c = compare_modes(q, t);
            print_comparison(&c, q.len());
            comparison.push(json!({"feed": feed.describe(w.universe), "figures": c}));
        }
        if let ([s, e], true) = (&by_mode[..], topo_paired) {
            let c = compare_topologies(s, e);
            comparison.push(json!({"feed": feed.describe(w.universe), "figures": c}));
        }
        for (k, runs) in by_mode.into_iter().enumerate() {
            let mut entry = json!({
                "feed": feed.describe(w.universe),
                "upstream_per_sec": feed.upstream_rate(w.universe),
                "summary": summarize(&runs),
                "runs": runs,
            });
            if let Some(m) = modes[k] {
                entry["mode"] = json!(m);
            }
            out.push(entry);
            all_runs.push(runs);
        }
    }
    if charts && w.symbols > 0 {
        std::fs::create_dir_all(&o.out_dir)?;
        let runs = all_runs.last().map(Vec::as_slice).unwrap_or(&[]);
        let title = format!(
            "{}: {} clients x {} symbols, {}",
            w.name,
            w.clients,
            w.symbols,
            feeds
                .last()
                .map(|f| f.describe(w.universe))
                .unwrap_or_default()
        );
        let mut made = Vec::new();
        let lat = o.out_dir.join(format!("{}-latency.png", w.name));
        chart_latency(&lat, &title, runs).map_err(|e| e.to_string())?;
        made.push(lat);
        let tl = o.out_dir.join(format!("{}-timeline.png", w.name));
        chart_timeline(&tl, &title, runs).map_err(|e| e.to_string())?;
        made.push(tl);
        if !w.sweep.is_empty() {
            let p = o.out_dir.join("sweep-delivered.png");
            chart_sweep(&p, &sweep_points).map_err(|e| e.to_string())?;
            made.push(p);
        }
        if paired && all_runs.len() >= 2 {
            // The quotes-only half (the charts above are the trades half).
            let q = &all_runs[all_runs.len() - 2];
            let p = o.out_dir.join(format!("{}-quotes-latency.png", w.name));
            chart_latency(&p, &format!("{title} (quotes only)"), q).map_err(|e| e.to_string())?;
            made.push(p);
        }
        if w.slow > 0 {
            let p = o.out_dir.join(format!("{}-age.png", w.name));
            chart_slow_age(&p, &format!("{}{slow}", w.name), runs).map_err(|e| e.to_string())?;
            made.push(p);
        }
        for p in made {
            println!("wrote {}", p.display());
        }
    }
    let mut doc = json!({
        "workload": w.name,
        "clients": w.clients,
        "symbols_per_client": w.symbols,
        "universe": w.universe,
        "results": out,
    });
    doc["trade_ratio"] = json!(w.trade_ratio());
    doc["trades"] = json!(match w.trades {
        TradeMode::Off => "off",
        TradeMode::On => "on",
        TradeMode::Paired => "paired",
    });
    if paired || topo_paired {
        doc["comparison"] = json!(comparison);
    }
    doc["topology"] = json!(match o.topology {
        Topology::Standalone => "standalone",
        Topology::Edge => "edge",
        Topology::Paired => "paired",
    });
    let broken: u64 = all_runs
        .iter()
        .flatten()
        .filter_map(|r| r.trades.as_ref())
        .map(|x| x.seq_gaps + x.disorder)
        .sum();
    if w.trades != TradeMode::Off {
        doc["trade_seq_errors"] = json!(broken);
    }
    if w.slow > 0 {
        doc["slow_clients"] = json!(w.slow);
        doc["slow_queue"] = json!(o.slow.queue);
        doc["slow_every_ms"] = json!(o.slow.every.as_secs_f64() * 1000.0);
        doc["slow_ack"] = json!(o.slow.ack);
    }
    Ok(doc)
}

async fn main_async(o: Opts) -> Result<(), BoxError> {
    let charts = load_font(&o).is_some();
    if !charts {
        eprintln!("no TTF font found (install fonts-dejavu-core or pass --font): no charts");
    }
    println!(
        "loadgen: {}",
        if o.pin && common::have_taskset() {
            "gateway and raw writer on core 0, clients on core 1"
        } else {
            "not pinned"
        }
    );
    let mut broken = Vec::new();
    for w in &o.workloads {
        let doc = run_workload(&o, w, charts).await?;
        let doc = json!({
            "tool": "loadgen",
            "date": today_utc(),
            "label": o.label,
            "machine": machine(),
            "pinned": o.pin && common::have_taskset(),
            "duration_secs": o.duration.as_secs_f64(),
            "warmup_secs": o.warmup.as_secs_f64(),
            "sub_zipf": o.sub_zipf,
            "src_ips": o.src_ips,
            "workload": doc,
        });
        common::write_json(&o.out_dir.join(format!("{}.json", w.name)), &doc)?;
        if let Some(n) = doc["workload"]["trade_seq_errors"]
            .as_u64()
            .filter(|&n| n > 0)
        {
            broken.push(format!("{}: {n}", w.name));
        }
    }
    if !broken.is_empty() {
        return Err(format!(
            "trade seqs broken (gaps no trades_dropped explains, or out of order): {}",
            broken.join(", ")
        )
        .into());
    }
    Ok(())
}

/// One figure of a paired workload, both modes: medians over the runs.
#[derive(Debug, Clone, serde::Serialize)]
struct Compared {
    key: &'static str,
    label: &'static str,
    quotes: Option<f64>,
    trades: Option<f64>,
}

/// Median of the finite values, `None` if there are none.
fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    let mut s: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The paired workload's figures side by side: the quotes-only runs `q`
/// and the runs with trades `t` (paired by run number).
fn compare_modes(q: &[RunResult], t: &[RunResult]) -> Vec<Compared> {
    type Get = dyn Fn(&RunResult) -> Option<f64>;
    let row = |key, label, g: &Get| Compared {
        key,
        label,
        quotes: median(q.iter().filter_map(g)),
        trades: median(t.iter().filter_map(g)),
    };
    let tr = |g: fn(&TradeResult) -> f64| move |r: &RunResult| r.trades.as_ref().map(g);
    let mut rows = vec![
        row(
            "msgs_per_sec",
            "delivered msgs/s (quotes + trades + drops)",
            &|r| Some(r.msgs_per_sec),
        ),
        row("quotes_per_sec", "… quotes/s", &|r| {
            Some(r.updates_per_sec)
        }),
        row("trades_per_sec", "… trades/s", &|r| {
            Some(r.trades.as_ref().map_or(0.0, |x| x.per_sec))
        }),
        row("frames_per_sec", "frames/s", &|r| Some(r.frames_per_sec)),
        row("gw_cpu_share", "gateway CPU (cores)", &|r| {
            Some(r.gw_cpu_share)
        }),
        row(
            "gw_cpu_us_per_msg",
            "gateway µs CPU per delivered msg",
            &|r| Some(r.gw_cpu_us_per_msg),
        ),
        row(
            "gw_cpu_us_per_quote",
            "gateway µs CPU per quote (all CPU / quotes)",
            &|r| Some(r.gw_cpu_us_per_update),
        ),
        row(
            "gw_cpu_us_per_trade",
            "gateway µs CPU per trade (all CPU / trades)",
            &tr(|x| x.gw_cpu_us_per_trade),
        ),
        row("gw_cpu_us_per_frame", "gateway µs CPU per frame", &|r| {
            Some(r.gw_cpu_us_per_frame)
        }),
        row("quote_age_p50_ms", "quote age p50 ms", &|r| {
            Some(r.latency_ms.p50)
        }),
        row("quote_age_p99_ms", "quote age p99 ms", &|r| {
            Some(r.latency_ms.p99)
        }),
        row(
            "trade_age_p50_ms",
            "trade age p50 ms",
            &tr(|x| x.age_ms.p50),
        ),
        row(
            "trade_age_p99_ms",
            "trade age p99 ms",
            &tr(|x| x.age_ms.p99),
        ),
        row("gw_rss_mib_max", "gateway RSS max MiB", &|r| {
            Some(r.gw_rss_kib_max as f64 / 1024.0)
        }),
        row(
            "trade_delivered_share",
            "trades delivered / offered",
            &tr(|x| x.delivered_share),
        ),
        row(
            "trades_dropped_per_sec",
            "trades dropped/s (trades_dropped counts)",
            &tr(|x| x.dropped_per_sec),
        ),
        // Every run's, not the median.
        Compared {
            key: "trade_seq_errors",
            label: "trade seq gaps + disorder, all runs (must be 0)",
            quotes: None,
            trades: t
                .iter()
                .filter_map(|r| r.trades.as_ref())
                .map(|x| (x.seq_gaps + x.disorder) as f64)
                .reduce(|a, b| a + b),
        },
        row(
            "gw_trades_in_per_sec",
            "gateway trades in/s (its counter)",
            &|r| r.gw_trades_in_per_sec,
        ),
    ];
    // What the trades add: the extra gateway CPU of a run with trades over
    // its quotes-only pair, per trade delivered. Meaningless when the
    // quotes-only run already used the whole core (then the trades take
    // CPU from the quotes, which conflate more).
    let extra = median(t.iter().filter_map(|rt| {
        let rq = q.iter().find(|x| x.run == rt.run)?;
        let n = rt.trades.as_ref()?.per_sec;
        (n > 0.0).then(|| (rt.gw_cpu_share - rq.gw_cpu_share) * 1e6 / n)
    }));
    rows.push(Compared {
        key: "gw_extra_cpu_us_per_trade",
        label: "extra gateway µs CPU per trade (vs the quotes-only pair)",
        quotes: None,
        trades: extra,
    });
    rows
}

fn print_comparison(rows: &[Compared], runs: usize) {
    let cell = |v: Option<f64>| match v {
        None => "–".to_string(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    };
    println!("\n  quotes only vs with trades, median of {runs} run(s) each:");
    println!(
        "  {:<58} {:>14} {:>14} {:>10}",
        "", "quotes only", "with trades", "ratio"
    );
    for r in rows {
        let ratio = match (r.quotes, r.trades) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:.2}x", b / a),
            _ => String::new(),
        };
        println!(
            "  {:<58} {:>14} {:>14} {:>10}",
            r.label,
            cell(r.quotes),
            cell(r.trades),
            ratio
        );
    }
    if rows
        .iter()
        .any(|r| r.key == "trade_seq_errors" && r.trades.is_some_and(|x| x > 0.0))
    {
        println!("  !!!! ERROR: trade seqs broken in a run with trades (see the runs above)");
    }
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn today_utc() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--raw-server") {
        return match raw_server(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("raw server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    common::run_tool(
        "loadgen",
        parse_opts,
        |o| o.pin,
        PIN_ENV,
        |o| async move {
            let local = tokio::task::LocalSet::new();
            local.run_until(main_async(o)).await
        },
    )
}
