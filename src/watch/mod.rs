//! `tickergate watch`: a terminal client of a running gateway.
//!
//! It connects to `<url>/v1/ws`, subscribes to the symbols asked (with
//! `max_hz` when given) and shows what comes: on a terminal a live table
//! redrawn in place (`screen`), otherwise (or with `--json`) one JSON
//! line per server message as received, for `jq`.
//!
//! * A token (`--token`, else `$TICKERGATE_TOKEN`) is sent in an `auth`
//!   op when the `welcome` says `auth_required`: it stays out of URLs and
//!   the logs of whatever proxies them. A `?token=` typed in `--url` is
//!   sent as typed (and shown as `token=***`).
//! * Reconnects with full-jitter exponential backoff (a delay drawn from
//!   0 to 0.5 s x 2^attempt, at most 20 s; back to 0.5 s after a
//!   `welcome`) and subscribes again. A gateway not reachable at start is
//!   retried the same way (each failure on stderr, or on the status line),
//!   forever unless `--retries N` (then exit 4).
//! * Seqs per symbol within an epoch (`book`): older quotes are dropped
//!   (not printed either); a new epoch (a restarted gateway) starts over.
//! * SIGINT and SIGTERM close the connection and exit 0, the terminal
//!   restored.
//!
//! Layers: uses `shutdown` and `model` only; `cli` runs it.

mod book;
mod endpoint;
mod net;
mod screen;
mod session;

pub use endpoint::{BadUrl, Endpoint};

use crate::shutdown::{self, Shutdown};
use screen::{Conn, Output};
use session::{Fatal, Outcome};
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of `tickergate watch`.
pub mod exit {
    /// Stopped by SIGINT or SIGTERM (or stdout closed).
    pub const STOPPED: u8 = 0;
    /// Anything else: stdout not writable, the runtime would not start.
    pub const ERROR: u8 = 1;
    /// Bad command line, URL or `--ca`; unknown symbol; too many symbols.
    pub const USAGE: u8 = 2;
    /// The token was refused, is required and missing, or may not see a
    /// symbol asked for.
    pub const AUTH: u8 = 3;
    /// Not reachable after `--retries` attempts.
    pub const UNREACHABLE: u8 = 4;
}

/// Redraws and the status line's countdown: at most 10 a second.
pub const TICK: Duration = Duration::from_millis(100);

/// Backoff: the first ceiling and the last.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// What `tickergate watch` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: Endpoint,
    /// PEM CA certificates for `wss://` (default: the system's).
    pub ca: Option<PathBuf>,
    pub token: Option<String>,
    pub max_hz: Option<f64>,
    /// Subscribe with `"trades": true`.
    pub trades: bool,
    /// JSON lines rather than the table.
    pub json: bool,
    /// Failed attempts in a row retried before giving up; `None`: forever.
    pub retries: Option<u32>,
    pub symbols: Vec<String>,
}

/// Runs until a signal or a fatal error; returns the exit code. Prints
/// fatal errors on stderr (after giving the terminal back).
pub async fn run(opts: Options) -> u8 {
    let connector = match net::Connector::new(opts.endpoint.clone(), opts.ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let (trigger, mut stop) = shutdown::channel();
    let signals = shutdown::signals();
    tokio::spawn(async move {
        signals.recv().await;
        trigger.trigger();
    });
    let url = opts.endpoint.display();
    let mut out = if opts.json {
        Output::json()
    } else {
        match Output::table(url.clone()) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: cannot draw on the terminal: {e}");
                return exit::ERROR;
            }
        }
    };
    let result = watch(&connector, &opts, &mut out, &mut stop).await;
    out.close();
    match result {
        Ok(()) => exit::STOPPED,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", screen::clean(&f.message));
            }
            f.code
        }
    }
}

/// The reconnect loop.
async fn watch(
    connector: &net::Connector,
    opts: &Options,
    out: &mut Output,
    stop: &mut Shutdown,
) -> Result<(), Fatal> {
    let url = connector.endpoint().display();
    let mut book = book::Book::new(&opts.symbols);
    let mut jitter = Jitter::seeded();
    // The backoff's exponent, and the attempts in a row that got no welcome.
    let (mut attempt, mut failures) = (0u32, 0u32);
    loop {
        out.conn(&url, Conn::Connecting);
        let (reason, welcomed) = match session::run(connector, opts, &mut book, out, stop).await {
            Outcome::Stopped => return Ok(()),
            Outcome::Fatal(f) => return Err(f),
            Outcome::Lost { reason, welcomed } => (reason, welcomed),
        };
        if welcomed {
            (attempt, failures) = (0, 0);
        } else {
            failures = failures.saturating_add(1);
        }
        if let Some(n) = opts.retries.filter(|n| failures > *n) {
            let tries = match n.saturating_add(1) {
                1 => "1 attempt".to_string(),
                t => format!("{t} attempts"),
            };
            return Err(Fatal::new(
                exit::UNREACHABLE,
                format!("{url}: not reachable after {tries}: {reason}"),
            ));
        }
        let delay = backoff(attempt, jitter.next());
        attempt = attempt.saturating_add(1);
        let until = tokio::time::Instant::now() + delay;
        out.conn(
            &url,
            Conn::Waiting {
                until: until.into_std(),
                attempt,
                reason,
            },
        );
        if pause(until, out, &book, stop).await? {
            return Ok(());
        }
    }
}

/// Waits until `until`, redrawing; true when a signal came.
async fn pause(
    until: tokio::time::Instant,
    out: &mut Output,
    book: &book::Book,
    stop: &mut Shutdown,
) -> Result<bool, Fatal> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.wait() => return Ok(true),
            _ = tokio::time::sleep_until(until) => return Ok(false),
            _ = tick.tick() => out.tick(book).map_err(|e| Fatal::output(&e))?,
        }
    }
}

/// Full jitter: uniform in [0, min(max, min x 2^attempt)).
fn backoff(attempt: u32, rand01: f64) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(rand01.clamp(0.0, 1.0))
}

/// Small xorshift for the jitter, seeded from the clock and the pid.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let seed = crate::model::now_ns() as u64 ^ (u64::from(std::process::id()) << 32);
        Jitter(seed | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_from_half_a_second_to_twenty() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(0, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(5, 1.0), Duration::from_secs(16));
        assert_eq!(backoff(6, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(u32::MAX, 0.5), Duration::from_secs(10));
        let mut j = Jitter::seeded();
        for _ in 0..1000 {
            let r = j.next();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
