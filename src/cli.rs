//! The command line: flags for the common knobs over the configuration
//! file, `--check-config`, and the `record` and `watch` subcommands.
//! Parsed with clap, which also gives `--help` and `--version`.

use crate::config::{Config, ConfigError};
use crate::feed::FeedConfig;
use crate::gateway::Gateway;
use crate::record::{record, RecordOptions};
use crate::watch::{self, Endpoint};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// tickergate: market-data streaming gateway
#[derive(Debug, Parser)]
#[command(
    name = "tickergate",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Logging: RUST_LOG (default info), e.g. RUST_LOG=tickergate=debug."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log lines on stderr as plain text (colours only on a terminal) or
    /// as one JSON object per line, for log shippers
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr (stdout carries the banner, `watch`'s output and
/// `--check-config`'s verdict), with `RUST_LOG` over `default`; colours
/// only when stderr is a terminal, so a log file or journald gets plain
/// text.
fn init_logs(format: LogFormat, default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().with_current_span(false).init(),
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Running the gateway (no subcommand).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (default: built-in simulated feed)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Public listener, e.g. 127.0.0.1:8080 (port 0 = any free port)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Fan-out shards (0 = one per core)
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Total updates/s of every simulated feed
    #[arg(long, value_name = "N")]
    pub sim_rate: Option<f64>,
    /// Symbols of every simulated feed
    #[arg(long, value_name = "N")]
    pub sim_symbols: Option<usize>,
    /// Concurrent WebSocket sessions
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// New connections per second per client address
    #[arg(long, value_name = "N")]
    pub conn_rate_per_ip: Option<u32>,
    /// Validate the configuration, read every file it names, and exit
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture a venue feed's raw frames into a replay file
    #[command(
        after_help = "Without --duration or --max-frames it records until Ctrl-C (or SIGTERM).\nReplay the file with a feed of kind = \"replay\" (see README.md)."
    )]
    Record(RecordArgs),
    /// Watch live quotes from a running gateway: a table on a terminal, JSON lines otherwise
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
}

const WATCH_HELP: &str = "\
Output: on a terminal, a live table redrawn in place (at most 10 times a
second): bid, ask and last exactly as the gateway sent them, JUMPS (updates
conflated away, from seq gaps), AGE (ms since the gateway stamped the
quote), STALE. With --json, or when stdout is not a terminal, one JSON line
per server message as received (welcome, subscribed, quote, status,
heartbeat, error), for jq; quotes older than one already printed (a
reconnect's snapshot) are left out.

Auth: the token (--token, else $TICKERGATE_TOKEN) is sent in an `auth` op
when the gateway's welcome says auth_required, so it stays out of URLs.

Reconnects: full-jitter exponential backoff (a random delay up to 0.5 s,
doubling to at most 20 s; back to 0.5 s once a gateway answers), then
subscribes again. A gateway that is not reachable at start is retried the
same way, each failure reported on stderr (or on the status line), forever
unless --retries is given. Within one gateway run (epoch) seqs only grow:
older quotes are dropped; a restarted gateway (new epoch) starts over.

Exit status:
  0  stopped by Ctrl-C (SIGINT) or SIGTERM, or stdout closed
  1  other error (e.g. stdout not writable)
  2  bad command line, URL or --ca; unknown symbol; too many symbols
  3  token refused, or required and not given; a symbol the token may not see
  4  gateway not reachable after --retries attempts

Examples:
  tickergate watch AAPL MSFT BTC-USD
  tickergate watch --url wss://md.example.com --max-hz 2 AAPL
  tickergate watch AAPL | jq -c 'select(.type == \"quote\") | [.symbol, .bid, .ask]'";

/// `tickergate watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Gateway: ws://, wss://, http(s):// (as ws(s)://) or host:port; /v1/ws is appended unless the path ends with it
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// Token for a gateway with [auth] (default: $TICKERGATE_TOKEN, which keeps it out of `ps`)
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// At most N updates per second per symbol (the subscription's max_hz)
    #[arg(long, value_name = "N", value_parser = positive_hz)]
    pub max_hz: Option<f64>,
    /// One JSON line per server message, also on a terminal
    #[arg(long)]
    pub json: bool,
    /// Every trade of the symbols too (shown as JSON lines; the table's LAST follows them)
    #[arg(long)]
    pub trades: bool,
    /// PEM file of CA certificates trusted for wss:// (default: $SSL_CERT_FILE, else the system's)
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Give up (exit 4) when the first attempt and N retries in a row all fail to reach the gateway; default: retry forever
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Symbols to watch (case-sensitive), e.g. AAPL BTC-USD
    #[arg(value_name = "SYMBOL", required = true)]
    pub symbols: Vec<String>,
}

/// `tickergate record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// TOML configuration holding the feed (kind binance, coinbase or kraken)
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    #[arg(
        long,
        value_name = "NAME",
        help = "Which [[feeds]] entry to record (may be omitted if the config has one venue feed)"
    )]
    pub feed: Option<String>,
    /// Recorded file to write (JSONL, replaced if it exists)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Stop after this many seconds (fractions allowed)
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<Duration>,
    /// Stop after N frames
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frames: Option<u64>,
}

/// A `--max-hz` that is not a positive number.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: must be a positive number")]
struct NotPositive(String);

fn positive_hz(s: &str) -> Result<f64, NotPositive> {
    s.parse::<f64>()
        .ok()
        .filter(|hz| hz.is_finite() && *hz > 0.0)
        .ok_or_else(|| NotPositive(s.to_string()))
}

/// A `--duration` that is not a positive number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: must be a positive number of seconds")]
struct NotPositiveSecs(String);

fn positive_secs(s: &str) -> Result<Duration, NotPositiveSecs> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| NotPositiveSecs(s.to_string()))
}

impl ServeArgs {
    /// The configuration these flags ask for: the file (or the embedded
    /// default) with the flags on top, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(l) = self.listen {
            config.server.listen = l;
        }
        if let Some(s) = self.shards {
            config.server.shards = s;
        }
        if let Some(m) = self.max_connections {
            config.server.max_connections = m;
        }
        if let Some(r) = self.conn_rate_per_ip {
            // Load tests and trusted networks: the burst follows the rate.
            config.server.conn_rate_per_ip = r;
            config.server.conn_burst_per_ip = config.server.conn_burst_per_ip.max(r);
        }
        for f in &mut config.feeds {
            if let FeedConfig::Sim(sim) = f {
                if let Some(r) = self.sim_rate {
                    sim.rate = r;
                }
                if let Some(n) = self.sim_symbols {
                    sim.symbols = n;
                }
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// The `tickergate` binary: parse the command line, run what it asks for,
/// return the exit code (2 for a bad command line or configuration).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Watch(args)) => {
            // stdout carries the table or the JSON lines; logs only with
            // RUST_LOG.
            init_logs(cli.log_format, "off");
            watch_main(args)
        }
        Some(Command::Record(args)) => {
            init_logs(cli.log_format, "info");
            record_main(args)
        }
        None => {
            // async_nats logs each failed reconnect attempt at info; the
            // gateway says what matters (lost, reconnected) itself.
            init_logs(cli.log_format, "info,async_nats=warn");
            serve_main(&cli.serve)
        }
    }
}

fn watch_main(args: WatchArgs) -> ExitCode {
    use std::io::IsTerminal;
    let endpoint = match Endpoint::parse(&args.url) {
        Ok(e) => e,
        Err(e) => return usage_error(e),
    };
    let token = args.token.or_else(|| {
        std::env::var("TICKERGATE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    });
    let opts = watch::Options {
        endpoint,
        ca: args.ca,
        token,
        max_hz: args.max_hz,
        trades: args.trades,
        json: args.json || !std::io::stdout().is_terminal(),
        retries: args.retries,
        symbols: args.symbols,
    };
    let rt = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    ExitCode::from(rt.block_on(watch::run(opts)))
}

fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut rt = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    if let Some(n) = worker_threads.filter(|n| *n > 0) {
        rt.worker_threads(n);
    }
    rt.build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn serve_main(args: &ServeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if args.check_config {
        // Every file the configuration names is read, as a start would.
        return match Gateway::check(&config) {
            Ok(()) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        };
    }
    let rt = match runtime(Some(config.server.worker_threads)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let tls = config.server.tls.is_some();
    let role = config.cluster.role;
    let gw = match Gateway::start(config).await {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP reloads the TLS certificate and key and the JWT public keys
    // (registered before the address is printed, so a signal sent after it
    // is never the default action, which would end the process).
    #[cfg(unix)]
    reload_on_sighup(gw.reloader());
    // SIGINT and SIGTERM too, before the address is printed: a client told
    // where to connect may already be served when the stop comes.
    let stop = crate::shutdown::signals();
    let a = gw.local_addr;
    tracing::info!("tickergate listening on {a}");
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    if !role.serves_clients() {
        println!("tickergate is running as an ingest node: its feeds go to NATS; clients connect to edge nodes");
        println!("  metrics   : {http}://{a}/metrics   health: {http}://{a}/healthz  {http}://{a}/readyz");
        println!("  stop      : Ctrl-C");
    } else {
        print_endpoints(role, a, ws, http);
    }
    stop.recv().await;
    tracing::info!("shutting down: closing sessions with 1001");
    gw.shutdown();
    if !gw.drained(grace).await {
        tracing::warn!("some sessions did not close within {grace:?}");
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Where to connect, for a node that serves clients.
fn print_endpoints(role: crate::cluster::Role, a: std::net::SocketAddr, ws: &str, http: &str) {
    match role {
        crate::cluster::Role::Standalone => println!("tickergate is running"),
        r => println!(
            "tickergate is running as a cluster node (role {})",
            r.as_str()
        ),
    }
    println!("  board     : {http}://{a}/   (live ticker board in your browser)");
    println!("  WebSocket : {ws}://{a}/v1/ws   (try: {{\"op\":\"subscribe\",\"symbols\":[\"AAPL\",\"BTC-USD\"]}})");
    println!("  REST      : {http}://{a}/v1/quotes?symbols=AAPL,BTC-USD   {http}://{a}/v1/symbols");
    println!("  SSE       : {http}://{a}/v1/sse?symbols=AAPL,BTC-USD&max_hz=2");
    println!(
        "  metrics   : {http}://{a}/metrics   health: {http}://{a}/healthz  {http}://{a}/readyz"
    );
    println!("  stop      : Ctrl-C");
}

/// Reloads on every SIGHUP, when there is anything to reload (otherwise
/// SIGHUP keeps its default action: see the README).
#[cfg(unix)]
fn reload_on_sighup(reloader: crate::gateway::Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    if !reloader.any() {
        return;
    }
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let r = reloader.clone();
                    // File reads: off the workers serving sessions.
                    let _ = tokio::task::spawn_blocking(move || r.all()).await;
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGHUP (reloads): {e}"),
    }
}

fn record_main(args: RecordArgs) -> ExitCode {
    let config = match Config::load(&args.config).and_then(|c| c.validate().map(|_| c)) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let opts = RecordOptions {
        feed: args.feed,
        out: args.out,
        duration: args.duration,
        max_frames: args.max_frames,
    };
    let rt = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let done = rt.block_on(async {
        let stop = crate::shutdown::signals();
        record(&config, &opts, stop.recv()).await
    });
    match done {
        Ok(s) => {
            println!(
                "recorded {} frames ({} bytes) from feed {} to {}",
                s.frames,
                s.bytes,
                s.feed,
                opts.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.is_usage() => usage_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tickergate").chain(args.split_whitespace()))
    }

    #[test]
    fn flags_override_file() {
        let cli = parse("--listen 127.0.0.1:0 --sim-rate 10 --check-config").unwrap();
        assert!(cli.serve.check_config);
        let config = cli.serve.config().unwrap();
        assert_eq!(config.server.listen.port(), 0);
        let FeedConfig::Sim(s) = &config.feeds[0] else {
            panic!("default feed is the simulator")
        };
        assert_eq!(s.rate, 10.0);
        assert!(parse("--listen nope").is_err());
        assert!(parse("--bogus").is_err());
        let help = parse("--help").unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let version = parse("--version").unwrap_err();
        assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
    }

    #[test]
    fn record_arguments() {
        let cli = parse(
            "record --config c.toml --feed binance --out x.jsonl --duration 1.5 --max-frames 10",
        )
        .unwrap();
        let Some(Command::Record(a)) = cli.command else {
            panic!("record")
        };
        assert_eq!(a.config, Path::new("c.toml"));
        assert_eq!(a.feed.as_deref(), Some("binance"));
        assert_eq!(a.duration, Some(Duration::from_millis(1500)));
        assert_eq!(a.max_frames, Some(10));
        for bad in [
            "record --out x",
            "record --config c",
            "record --config c --out x --duration 0",
            "record --config c --out x --duration -1",
            "record --config c --out x --duration nan",
            "record --config c --out x --max-frames 0",
            "record --config c --out x --bogus",
            "record --config",
            "--listen 127.0.0.1:0 record --config c --out x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn watch_arguments() {
        let cli = parse(
            "watch --url wss://h --token t --max-hz 2.5 --json --ca ca.pem --retries 3 AAPL MSFT",
        )
        .unwrap();
        let Some(Command::Watch(a)) = cli.command else {
            panic!("watch")
        };
        assert_eq!(a.url, "wss://h");
        assert_eq!(a.token.as_deref(), Some("t"));
        assert_eq!(a.max_hz, Some(2.5));
        assert!(a.json);
        assert_eq!(a.ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(a.retries, Some(3));
        assert_eq!(a.symbols, ["AAPL", "MSFT"]);
        let Some(Command::Watch(a)) = parse("watch AAPL").unwrap().command else {
            panic!("watch")
        };
        assert_eq!(a.url, "ws://127.0.0.1:8080");
        assert!(!a.json && a.token.is_none() && a.max_hz.is_none() && a.retries.is_none());
        for bad in [
            "watch",
            "watch --url ws://h",
            "watch --max-hz 0 A",
            "watch --max-hz -1 A",
            "watch --max-hz nan A",
            "watch --max-hz inf A",
            "watch --retries -1 A",
            "watch --bogus A",
            "--listen 127.0.0.1:0 watch A",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let help = parse("watch --help").unwrap_err().to_string();
        assert!(help.contains("Exit status"), "{help}");
    }
}
