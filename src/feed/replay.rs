//! Replay of a recorded file (`kind = "replay"`): raw upstream frames, as
//! `tickergate record` writes them (format in `feeds/README.md`), fed
//! through the named venue's parser and the feed's normalizer exactly as the
//! supervisor feeds a live connection.
//!
//! ```text
//!  reader thread ──(bounded channel, 1024 lines)──► replay task
//!  (std::fs, one line at a time,                    (pacing, venue parser,
//!   ≤ 1 MiB per line, loops by seeking)              FeedNormalizer, alive)
//! ```
//!
//! * **Bounded reading.** The file is streamed line by line on its own
//!   thread (the runtime never blocks on disk), a line longer than
//!   [`MAX_LINE_BYTES`] is skipped without being held in memory, and the
//!   channel to the async side holds at most [`CHANNEL_LINES`] lines: a huge
//!   file costs the same memory as a small one.
//! * **Bad input loses nothing else.** A line that is not a
//!   `{"recv_ns":..,"frame":".."}` object is counted in
//!   `feed_rejects_total{reason="malformed"}` and skipped; a frame the venue
//!   parser refuses is counted under the parser's reason, as live.
//! * **Pacing.** `recorded` keeps the gaps between `recv_ns` (divided by
//!   `speed`), measured from the first frame of each pass so rounding never
//!   accumulates; a `recv_ns` that goes backwards plays at once. `fast` plays
//!   as fast as the normalizer takes it, yielding to the runtime every
//!   [`FAST_YIELD_EVERY`] frames.
//! * **Looping.** Pass `k` (from 0) continues the session of pass `k-1`
//!   instead of repeating it: the venue sequence numbers and timestamps of
//!   its quotes are shifted by `k` times the span seen in the first pass
//!   (`max - min + 1`), so they keep increasing. Without that, the
//!   normalizer would refuse every quote of the second pass as
//!   `out_of_order` (the file's sequences start over), and subscribers would
//!   see `ts` jump back in time. Prices and sizes are never touched, and the
//!   first pass is exactly the file. One [`FeedNormalizer`] serves every
//!   pass, so its rate-limited reject log spans passes too (a normalizer
//!   per pass would log a fresh burst every pass: a flood for a small file
//!   looped at `fast` pace). The venue parser is rebuilt per pass, as after
//!   a reconnect, so no parser state leaks across the seam. The gateway's
//!   own `seq` per symbol keeps growing. A file without a single frame is
//!   not looped (that would spin).
//! * **Staleness.** While the replay runs (including long recorded gaps,
//!   which are a property of the recording, not an outage) the feed is kept
//!   alive, so its symbols never flap to `stale` mid-replay. When a replay
//!   without `loop` reaches the end it goes quiet like a finished upstream:
//!   after `stale_after_ms` its symbols are `stale` and `/readyz` reports
//!   it, which is the truth: nothing updates them any more.

use super::{Event, FeedState, ParseError, SymbolMap, Venue, VenueConfig, VenueKind};
use crate::invalid::{at_least_one, Invalid};
use crate::metrics::Metrics;
use crate::model::{field, SymbolId};
use crate::normalize::{FeedNormalizer, Normalizer, Reject, Update};
use crate::shutdown::Shutdown;
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest line accepted in a recorded file (the envelope around one frame).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Lines buffered between the reader thread and the replay task.
pub const CHANNEL_LINES: usize = 1024;
/// In `fast` pace, the replay task yields to the runtime this often.
pub const FAST_YIELD_EVERY: u32 = 256;
/// Longest single wait in `recorded` pace (guards against a corrupt
/// `recv_ns` far in the future overflowing the clock).
const MAX_GAP: Duration = Duration::from_secs(365 * 24 * 3600);

/// Replay pacing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPace {
    /// The gaps between frames as recorded (scaled by `speed`).
    #[default]
    Recorded,
    /// As fast as possible.
    Fast,
}

/// `kind = "replay"`: raw upstream frames from a recorded file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Feed name. Default `replay`.
    pub name: String,
    /// Recorded file (JSONL, see feeds/README.md). Required. A relative path
    /// is taken relative to the config file's directory.
    pub path: PathBuf,
    /// Which venue's parser reads the frames: `binance`, `coinbase` or
    /// `kraken`. Required.
    pub venue: String,
    /// Venue symbol -> gateway symbol, as for the venue adapters.
    pub symbols: std::collections::BTreeMap<String, String>,
    /// `recorded` (keep the recorded gaps) or `fast`. Default `recorded`.
    pub pace: ReplayPace,
    /// Speed factor for `recorded` pace: 2.0 plays twice as fast. Default 1.0.
    pub speed: f64,
    /// Start again at the end of the file. Default false.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Silence after which its symbols are `stale`, in milliseconds. Default 10000.
    pub stale_after_ms: u64,
    #[serde(flatten)]
    pub normalize: crate::normalize::NormalizeConfig,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            name: String::new(),
            path: Default::default(),
            venue: String::new(),
            symbols: Default::default(),
            pace: ReplayPace::Recorded,
            speed: 1.0,
            looping: false,
            stale_after_ms: 10_000,
            normalize: Default::default(),
        }
    }
}

impl ReplayConfig {
    /// Checks the fields; names them relative to the feed's table.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "required: the recorded file"));
        }
        if VenueKind::from_name(&self.venue).is_none() {
            return Err(Invalid::new(
                "venue",
                format!("must be one of {}", VenueKind::names()),
            ));
        }
        super::venue::validate_symbol_map("symbols", &self.symbols)?;
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(Invalid::new("speed", "must be a positive number"));
        }
        at_least_one("stale_after_ms", self.stale_after_ms)?;
        self.normalize.validate()
    }
}

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown venue {0:?} (one of {names})", names = VenueKind::names())]
    UnknownVenue(String),
    #[error("cannot open replay file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replay path {} is a directory, not a recorded file", .0.display())]
    Directory(PathBuf),
}

/// What became of one quote of a frame: the symbol and the normalizer's
/// verdict (the symbol's new seq, or why it was rejected).
pub type Applied = (SymbolId, Result<u64, Reject>);

/// One recorded frame through a venue parser and a normalizer: the part of
/// the supervisor's read loop that does not touch the network.
pub struct Player {
    venue: Box<dyn Venue>,
    norm: FeedNormalizer,
    buf: Vec<u8>,
    events: Vec<Event>,
    /// Loop pass, from 0.
    pass: u64,
    /// Lowest and highest venue sequence and timestamp of the first pass.
    seq_range: Option<(u64, u64)>,
    ts_range: Option<(i64, i64)>,
    /// Added to every venue sequence and timestamp of this pass.
    seq_shift: u64,
    ts_shift: i64,
}

fn widen<T: Copy + Ord>(r: &mut Option<(T, T)>, v: T) {
    *r = Some(match *r {
        Some((lo, hi)) => (lo.min(v), hi.max(v)),
        None => (v, v),
    });
}

impl Player {
    pub fn new(venue: Box<dyn Venue>, norm: FeedNormalizer) -> Self {
        Player {
            venue,
            norm,
            buf: Vec::new(),
            events: Vec::new(),
            pass: 0,
            seq_range: None,
            ts_range: None,
            seq_shift: 0,
            ts_shift: 0,
        }
    }

    /// Starts the next loop pass with a fresh venue parser: from now on,
    /// venue sequences and timestamps are shifted past the previous pass's
    /// (see "Looping" in the module docs).
    pub fn next_pass(&mut self, venue: Box<dyn Venue>) {
        self.venue = venue;
        self.pass += 1;
        let k = self.pass;
        self.seq_shift = self
            .seq_range
            .map_or(0, |(lo, hi)| (hi - lo).saturating_add(1).saturating_mul(k));
        self.ts_shift = self.ts_range.map_or(0, |(lo, hi)| {
            let span = hi.saturating_sub(lo).saturating_add(1);
            span.saturating_mul(i64::try_from(k).unwrap_or(i64::MAX))
        });
    }

    /// Parses and applies one raw frame. Quotes go through
    /// [`FeedNormalizer::apply`]; what became of each is appended to
    /// `applied` (the caller clears it). Heartbeats, acks and ignored
    /// messages show the feed is alive; a recorded refusal is logged.
    pub fn frame(&mut self, frame: &[u8], state: &FeedState, applied: &mut Vec<Applied>) {
        self.buf.clear();
        self.buf.extend_from_slice(frame);
        self.events.clear();
        if let Err(e) = self.venue.parse(&mut self.buf, &mut self.events) {
            self.norm.upstream_error(e.reason(), &e);
            return;
        }
        for ev in self.events.drain(..) {
            let (u, trade) = match ev {
                Event::Quote(u) => (u, None),
                Event::Trade(u, info) => (u, Some(info)),
                Event::Heartbeat | Event::Ignored | Event::Subscribed => {
                    state.alive();
                    continue;
                }
                Event::Rejected(why) | Event::PairRefused(why) => {
                    tracing::warn!(feed = %state.name, "recorded frame: the venue refused a subscription: {why}");
                    continue;
                }
            };
            let Update {
                sym,
                mut quote,
                seq,
            } = u;
            if self.pass == 0 {
                if let Some((_, s)) = seq {
                    widen(&mut self.seq_range, s);
                }
                if quote.has(field::TS) {
                    widen(&mut self.ts_range, quote.ts);
                }
            }
            let seq = seq.map(|(st, s)| (st, s.saturating_add(self.seq_shift)));
            if quote.has(field::TS) {
                quote.ts = quote.ts.saturating_add(self.ts_shift);
            }
            // Rejects are counted and logged inside.
            let u = Update { sym, quote, seq };
            applied.push((sym, self.norm.apply_with(u, trade)));
            state.alive();
        }
    }

    /// Counts a line of the file that is not a recorded frame.
    pub fn bad_line(&mut self, e: &ParseError) {
        self.norm.upstream_error(e.reason(), &e);
    }
}

/// A line of the recorded file, as the reader thread hands it over.
#[derive(Debug)]
enum Item {
    Frame {
        recv_ns: i64,
        frame: String,
    },
    /// Not a recorded frame (malformed envelope, line too long).
    Bad {
        line: u64,
        error: String,
    },
    /// End of one pass over the file; `frames` frames were read.
    End {
        frames: u64,
    },
    /// The file cannot be read any further.
    Fatal(String),
}

#[derive(serde::Deserialize)]
struct Envelope {
    recv_ns: i64,
    frame: String,
}

/// A checked replay feed, ready to run: the file is open, the venue known.
pub struct Replay {
    cfg: ReplayConfig,
    kind: VenueKind,
    venue_cfg: VenueConfig,
    map: SymbolMap,
    /// Taken by the reader thread when the replay runs.
    file: Option<File>,
}

impl Replay {
    /// Opens the recorded file and checks the venue, so a bad path fails at
    /// start-up with a clear error instead of a silent feed.
    pub fn open(cfg: &ReplayConfig, map: SymbolMap) -> Result<Replay, ReplayError> {
        let kind = VenueKind::from_name(&cfg.venue)
            .ok_or_else(|| ReplayError::UnknownVenue(cfg.venue.clone()))?;
        let venue_cfg = VenueConfig {
            name: cfg.name.clone(),
            symbols: cfg.symbols.clone(),
            normalize: cfg.normalize.clone(),
            ..VenueConfig::default()
        };
        let file = File::open(&cfg.path).map_err(|source| ReplayError::Open {
            path: cfg.path.clone(),
            source,
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(ReplayError::Directory(cfg.path.clone()));
        }
        Ok(Replay {
            cfg: cfg.clone(),
            kind,
            venue_cfg,
            map,
            file: Some(file),
        })
    }

    /// A fresh venue parser: one per pass over the file.
    fn venue(&self) -> Box<dyn Venue> {
        self.kind.adapter(&self.venue_cfg, self.map.clone())
    }

    pub fn config(&self) -> &ReplayConfig {
        &self.cfg
    }
}

/// When the frame recorded at `recv_ns` is due, in a pass that started
/// playing its first frame (recorded at `base_ns`) at `start`.
pub fn due_at(start: Instant, base_ns: i64, recv_ns: i64, speed: f64) -> Instant {
    let gap_ns = recv_ns.saturating_sub(base_ns).max(0) as f64;
    let secs = gap_ns / 1e9 / speed;
    let gap = Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_GAP)
        .min(MAX_GAP);
    start.checked_add(gap).unwrap_or(start)
}

/// Runs the replay until the end of the file (without `loop`), a fatal read
/// error, or shutdown.
pub async fn run(
    mut replay: Replay,
    norm: Normalizer,
    state: Arc<FeedState>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let feed = state.name.clone();
    let frames_metric = metrics.feed_frames.with_label_values(&[&feed]);
    let fnorm = FeedNormalizer::new(norm, replay.cfg.normalize.clone());
    let mut player = Player::new(replay.venue(), fnorm);
    let Some(file) = replay.file.take() else {
        tracing::error!(feed = %feed, "replay started twice");
        return;
    };
    let (tx, mut rx) = mpsc::channel(CHANNEL_LINES);
    let path = replay.cfg.path.clone();
    let looping = replay.cfg.looping;
    let spawned = std::thread::Builder::new()
        .name(format!("replay-{feed}"))
        .spawn(move || read_file(file, &path, looping, &tx));
    if let Err(e) = spawned {
        tracing::error!(feed = %feed, "replay cannot start its reader thread: {e}");
        return;
    }
    tracing::info!(
        feed = %feed,
        path = %replay.cfg.path.display(),
        venue = %replay.cfg.venue,
        pace = ?replay.cfg.pace,
        speed = replay.cfg.speed,
        looping,
        "replay started"
    );
    // Keep the feed alive while the replay runs, also across recorded gaps
    // longer than stale_after (see the module docs).
    let stale_after = Duration::from_millis(replay.cfg.stale_after_ms.max(3));
    let mut keepalive = tokio::time::interval(stale_after / 3);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    state.alive();
    let mut applied = Vec::new();
    let mut base: Option<(Instant, i64)> = None;
    let mut since_yield = 0u32;
    let mut passes = 0u64;
    loop {
        let item = tokio::select! {
            _ = shutdown.wait() => return,
            _ = keepalive.tick() => { state.alive(); continue; }
            it = rx.recv() => it,
        };
        let Some(item) = item else {
            // The reader ended without saying why; it always sends End or
            // Fatal first, so this is only reachable if it panicked.
            tracing::error!(feed = %feed, "replay reader stopped unexpectedly");
            return;
        };
        match item {
            Item::Frame { recv_ns, frame } => {
                if replay.cfg.pace == ReplayPace::Recorded {
                    let (start, base_ns) = *base.get_or_insert((Instant::now(), recv_ns));
                    let due = due_at(start, base_ns, recv_ns, replay.cfg.speed);
                    loop {
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            _ = keepalive.tick() => state.alive(),
                            _ = tokio::time::sleep_until(due) => break,
                        }
                    }
                } else {
                    since_yield += 1;
                    if since_yield >= FAST_YIELD_EVERY {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                }
                applied.clear();
                player.frame(frame.as_bytes(), &state, &mut applied);
                // Counted once the frame is applied, so a reader of the metric
                // knows every frame up to that count has taken effect.
                frames_metric.inc();
            }
            Item::Bad { line, error } => {
                player.bad_line(&ParseError::Json(format!("line {line}: {error}")));
            }
            Item::End { frames } => {
                passes += 1;
                if !looping {
                    tracing::info!(
                        feed = %feed,
                        frames,
                        "replay finished; its symbols go stale after {} ms",
                        replay.cfg.stale_after_ms
                    );
                    return;
                }
                if frames == 0 {
                    tracing::warn!(feed = %feed, "replay file holds no frames: not looping");
                    return;
                }
                tracing::debug!(feed = %feed, passes, frames, "replay pass done; starting over");
                // The session continues: see "Looping" in the module docs.
                player.next_pass(replay.venue());
                base = None;
            }
            Item::Fatal(e) => {
                tracing::error!(feed = %feed, "replay stopped: {e}");
                return;
            }
        }
    }
}

/// How reading one line went.
#[derive(Debug, PartialEq)]
enum Line {
    /// `buf` holds the line, without its newline.
    Ok,
    /// The line was longer than the limit; it was skipped, `buf` is empty.
    TooLong,
    Eof,
}

/// Reads one line into `buf` without ever holding more than `max` bytes of
/// it: the rest of a longer line is consumed and dropped.
fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Ok,
            });
        }
        any = true;
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Ok });
        }
    }
}

/// Sends `item`; false when the replay task is gone (shutdown).
fn send(tx: &mpsc::Sender<Item>, item: Item) -> bool {
    tx.blocking_send(item).is_ok()
}

/// The reader thread: every pass over the file, line by line, into `tx`.
/// Ends at the end of the file (without `looping`), on a read error, or as
/// soon as the replay task has gone away.
fn read_file(file: File, path: &Path, looping: bool, tx: &mpsc::Sender<Item>) {
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut buf = Vec::new();
    loop {
        let mut line_no = 0u64;
        let mut frames = 0u64;
        loop {
            let line = match read_line_bounded(&mut r, &mut buf, MAX_LINE_BYTES) {
                Ok(l) => l,
                Err(e) => {
                    let _ = send(
                        tx,
                        Item::Fatal(format!("cannot read {}: {e}", path.display())),
                    );
                    return;
                }
            };
            line_no += 1;
            let item = match line {
                Line::Eof => break,
                Line::TooLong => Item::Bad {
                    line: line_no,
                    error: format!("longer than {MAX_LINE_BYTES} bytes"),
                },
                Line::Ok => match parse_line(&buf) {
                    None => continue,
                    Some(Ok(env)) => {
                        frames += 1;
                        Item::Frame {
                            recv_ns: env.recv_ns,
                            frame: env.frame,
                        }
                    }
                    Some(Err(e)) => Item::Bad {
                        line: line_no,
                        error: e.to_string(),
                    },
                },
            };
            if !send(tx, item) {
                return;
            }
        }
        if !send(tx, Item::End { frames }) || !looping || frames == 0 {
            return;
        }
        if let Err(e) = r.seek(SeekFrom::Start(0)) {
            let _ = send(
                tx,
                Item::Fatal(format!("cannot rewind {}: {e}", path.display())),
            );
            return;
        }
    }
}

/// A line that is neither a recorded frame, a comment nor blank.
#[derive(Debug, thiserror::Error)]
#[error("not a recorded frame ({{\"recv_ns\":<integer>,\"frame\":<string>}}): {0}")]
struct NotAFrame(serde_json::Error);

/// One line of a recorded file: `None` for comments and blank lines.
fn parse_line(line: &[u8]) -> Option<Result<Envelope, NotAFrame>> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() || trimmed.starts_with(b"#") {
        return None;
    }
    Some(serde_json::from_slice::<Envelope>(trimmed).map_err(NotAFrame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NormalizeConfig;
    use crate::model::Symbols;
    use crate::slots::SlotTable;
    use std::collections::BTreeMap;

    #[test]
    fn bounded_lines() {
        let text = b"short\n\nthis one is too long\nok\r\ntail";
        let mut r = BufReader::with_capacity(4, &text[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line_bounded(&mut r, &mut buf, 8).unwrap() {
                Line::Eof => break,
                Line::TooLong => got.push("<too long>".to_string()),
                Line::Ok => got.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(
            got,
            ["short", "", "<too long>", "ok\r", "tail"].map(String::from)
        );
    }

    #[test]
    fn lines_comments_and_garbage() {
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"   \r").is_none());
        assert!(parse_line(b"# a comment").is_none());
        let env = parse_line(br#"{"recv_ns":5,"frame":"{\"a\":1}"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((env.recv_ns, env.frame.as_str()), (5, r#"{"a":1}"#));
        for bad in [
            &b"not json"[..],
            br#"{"recv_ns":"5","frame":"x"}"#,
            br#"{"recv_ns":5}"#,
            br#"{"recv_ns":5,"frame":{"a":1}}"#,
            br#"{"recv_ns":1.5,"frame":"x"}"#,
            br#"[1,2]"#,
            b"\xff\xfe",
        ] {
            assert!(
                parse_line(bad).unwrap().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pacing_keeps_gaps_scaled_by_speed() {
        let t0 = Instant::now();
        assert_eq!(due_at(t0, 1_000, 1_000, 1.0), t0);
        assert_eq!(
            due_at(t0, 0, 2_000_000_000, 1.0),
            t0 + Duration::from_secs(2)
        );
        assert_eq!(
            due_at(t0, 0, 2_000_000_000, 4.0),
            t0 + Duration::from_millis(500)
        );
        // Backwards plays at once; absurd gaps are capped, never overflow.
        assert_eq!(due_at(t0, 5_000, 1_000, 1.0), t0);
        assert_eq!(due_at(t0, i64::MIN, i64::MAX, 1e-9), t0 + MAX_GAP);
    }

    const SAMPLE: &[&str] = &[
        r#"{"result":null,"id":1}"#,
        r#"{"stream":"btcusdt@bookTicker","data":{"u":10,"s":"BTCUSDT","b":"97000.01000000","B":"0.51230000","a":"97000.02000000","A":"1.00000000"}}"#,
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"97000.02000000","q":"0.00100000","T":1672515782136,"m":true,"M":true}}"#,
        r#"{"stream":"btcusdt@bookTicker","data":{"u":9,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}"#,
        r#"{"stream":"btcusdt@bookTicker","data":{"u":11,"s":"BTCUSDT","b":"97000.03","B":"2","a":"97000.04","A":"3"}}"#,
        r#"{"stream":"btcusdt@bookTicker","data":{"u":12,"s":"BTCUSDT","b":"NaN","B":"2","a":"97000.04","A":"3"}}"#,
    ];

    /// Plays SAMPLE twice into fresh slots, as a looping replay does
    /// (`next_pass` between the passes) or, with `continue_session` false,
    /// as if the same normalizer simply saw the file again. Returns every
    /// outcome and the final quote (without the gateway stamp, the one
    /// non-deterministic field).
    fn play_twice(continue_session: bool) -> (Vec<Applied>, crate::Quote) {
        let mut syms = Symbols::new();
        let table: BTreeMap<String, String> =
            [("BTCUSDT".to_string(), "BTC-USDT".to_string())].into();
        let map = SymbolMap::build(&table, &mut syms).unwrap();
        let slots = Arc::new(SlotTable::new(syms.len(), 1));
        let metrics = Arc::new(Metrics::new());
        let norm = Normalizer::new("r", slots.clone(), &metrics);
        let venue = || VenueKind::Binance.adapter(&VenueConfig::default(), map.clone());
        let mut p = Player::new(
            venue(),
            FeedNormalizer::new(norm, NormalizeConfig::default()),
        );
        let state = FeedState::new("r", vec![SymbolId(0)], None);
        let mut all = Vec::new();
        for pass in 0..2 {
            if pass > 0 && continue_session {
                p.next_pass(venue());
            }
            for f in SAMPLE {
                p.frame(f.as_bytes(), &state, &mut all);
            }
        }
        let (mut q, _) = slots.read(SymbolId(0)).unwrap();
        q.gw_ts = 0;
        (all, q)
    }

    #[test]
    fn same_frames_same_outcomes_and_loops_continue_the_session() {
        let (a, qa) = play_twice(true);
        let (b, qb) = play_twice(true);
        assert_eq!(a, b, "same file, same outcomes in the same order");
        assert_eq!(qa, qb);
        // Each pass: book, trade, an older book refused, book; the NaN
        // frame never gets to the normalizer. The second pass repeats the
        // first, its seqs continuing.
        let s = SymbolId(0);
        let ooo = Err(Reject::OutOfOrder);
        assert_eq!(
            a,
            vec![
                (s, Ok(1)),
                (s, Ok(2)),
                (s, ooo),
                (s, Ok(3)),
                (s, Ok(4)),
                (s, Ok(5)),
                (s, ooo),
                (s, Ok(6)),
            ]
        );
        assert_eq!(qa.bid.to_string(), "97000.03");
        assert_eq!(qa.last.to_string(), "97000.02000000");
        // One trade timestamp in the file: a span of 1 ns per pass.
        assert_eq!(qa.ts, 1_672_515_782_136_000_001);

        // Why: the same normalizer seeing the file again refuses it all.
        let (c, qc) = play_twice(false);
        assert_eq!(&c[4..], &[(s, ooo), (s, ooo), (s, ooo), (s, ooo)]);
        assert_eq!(qc.ts, 1_672_515_782_136_000_000);
    }
}
