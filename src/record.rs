//! `tickergate record`: captures a venue feed's raw upstream frames, with
//! their receive times, into the recorded-file format that `kind = "replay"`
//! reads (`feeds/README.md`). Live sessions become replays and test
//! fixtures.
//!
//! The feed runs under the same supervisor as in the gateway (connect,
//! subscribe, reconnect with backoff), so what is recorded is exactly what
//! the gateway would have received: data, acks, heartbeats and garbage
//! alike. No listener is opened; the quotes go into private slots nobody
//! reads.
//!
//! The file is written through a 64 KiB buffer, straight from the
//! supervisor's read loop: a local append into a buffer is cheaper than a
//! hop through a channel, and a recorder has no subscribers to keep fast.
//! It stops after `--max-frames`, after `--duration`, or on Ctrl-C/SIGTERM,
//! and flushes before it exits. A write error stops the recording and is
//! reported; the frames before it stay in the file.

use crate::config::Config;
use crate::feed::supervisor::{self, FrameSink, SupervisorConfig};
use crate::feed::{FeedConfig, FeedState, SymbolMap, VenueConfig, VenueKind};
use crate::metrics::Metrics;
use crate::model::{now_ns, InvalidSymbol, Symbols};
use crate::normalize::{FeedNormalizer, Normalizer};
use crate::shutdown::{self, Trigger};
use crate::slots::SlotTable;
use crate::sync::{Mutex, MutexGuard};
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to record and when to stop.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Feed name; `None` picks the config's only venue feed.
    pub feed: Option<String>,
    pub out: PathBuf,
    pub duration: Option<Duration>,
    pub max_frames: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no feed named {0:?} in the configuration")]
    UnknownFeed(String),
    #[error("feed {name:?} is of kind {kind:?}: only venue feeds ({names}) have upstream frames to record", names = crate::feed::VenueKind::names())]
    NotAVenue { name: String, kind: &'static str },
    #[error("the configuration has {0} venue feeds: name the one to record with --feed")]
    WhichFeed(usize),
    #[error(
        "the configuration has no venue feed (kind {}) to record",
        crate::feed::VenueKind::names()
    )]
    NoVenueFeed,
    #[error("feed {feed}: {source}")]
    Feed { feed: String, source: InvalidSymbol },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RecordError {
    /// Whether the command line or configuration asked for something
    /// impossible (exit code 2), rather than the recording failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RecordError::UnknownFeed(_)
                | RecordError::NotAVenue { .. }
                | RecordError::WhichFeed(_)
                | RecordError::NoVenueFeed
        )
    }
}

/// What was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub feed: String,
    pub frames: u64,
    pub bytes: u64,
}

/// The file being written, shared by the sink (inside the supervisor) and
/// [`record`] (which flushes it at the end).
struct Writer {
    out: BufWriter<File>,
    frames: u64,
    bytes: u64,
    error: Option<std::io::Error>,
}

struct Sink {
    writer: Arc<Mutex<Writer>>,
    max_frames: Option<u64>,
    stop: Trigger,
}

fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock()
}

/// One line of the recorded format.
pub fn encode_line(recv_ns: i64, frame: &str) -> String {
    // serde_json escapes the frame as a JSON string; it cannot fail on &str.
    let escaped = serde_json::to_string(frame).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"recv_ns\":{recv_ns},\"frame\":{escaped}}}\n")
}

impl FrameSink for Sink {
    fn frame(&mut self, recv_ns: i64, text: &str) {
        let mut w = lock(&self.writer);
        // The supervisor may hand over a frame or two after we asked it to
        // stop; the file holds exactly max_frames.
        if w.error.is_some() || self.max_frames.is_some_and(|m| w.frames >= m) {
            return;
        }
        let line = encode_line(recv_ns, text);
        if let Err(e) = w.out.write_all(line.as_bytes()) {
            w.error = Some(e);
            self.stop.trigger();
            return;
        }
        w.frames += 1;
        w.bytes += line.len() as u64;
        if self.max_frames.is_some_and(|m| w.frames >= m) {
            self.stop.trigger();
        }
    }
}

/// The venue feed to record: the one named, or the only one.
fn pick_feed<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<(String, VenueKind, &'a VenueConfig), RecordError> {
    let feed_cfg = match name {
        Some(name) => config
            .feeds
            .iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| RecordError::UnknownFeed(name.to_string()))?,
        None => {
            let venues: Vec<&FeedConfig> = config
                .feeds
                .iter()
                .filter(|f| matches!(f, FeedConfig::Venue(..)))
                .collect();
            match venues.as_slice() {
                [one] => *one,
                [] => return Err(RecordError::NoVenueFeed),
                many => return Err(RecordError::WhichFeed(many.len())),
            }
        }
    };
    match feed_cfg {
        FeedConfig::Venue(kind, v) => Ok((feed_cfg.name().to_string(), *kind, v)),
        other => Err(RecordError::NotAVenue {
            name: other.name().to_string(),
            kind: other.kind(),
        }),
    }
}

/// Records one feed of `config` into `opts.out` until a limit is reached or
/// `stop` resolves (Ctrl-C).
pub async fn record(
    config: &Config,
    opts: &RecordOptions,
    stop: impl Future<Output = ()>,
) -> Result<RecordSummary, RecordError> {
    let (name, kind, v) = pick_feed(config, opts.feed.as_deref())?;
    let feed_err = |source| RecordError::Feed {
        feed: name.clone(),
        source,
    };
    let mut symbols = Symbols::new();
    let map = SymbolMap::build(&v.symbols, &mut symbols).map_err(feed_err)?;
    let slots = Arc::new(SlotTable::new(symbols.len(), 1));
    let metrics = Arc::new(Metrics::new());
    let norm = FeedNormalizer::new(Normalizer::new(&name, slots, &metrics), v.normalize.clone());
    let state = Arc::new(FeedState::new(
        &name,
        map.ids(),
        Some(Duration::from_millis(v.stale_after_ms)),
    ));
    let file = File::create(&opts.out).map_err(|e| RecordError::Create {
        path: opts.out.clone(),
        source: e,
    })?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let header = format!(
        "# recorded by tickergate record: feed {name:?}, kind {kind}, started at {} ns\n",
        now_ns()
    );
    out.write_all(header.as_bytes())
        .map_err(|e| RecordError::Write {
            path: opts.out.clone(),
            source: e,
        })?;
    let writer = Arc::new(Mutex::new(Writer {
        out,
        frames: 0,
        bytes: header.len() as u64,
        error: None,
    }));
    let (trigger, _) = shutdown::channel();
    let sink: Box<dyn FrameSink> = Box::new(Sink {
        writer: writer.clone(),
        max_frames: opts.max_frames,
        stop: trigger.clone(),
    });
    let sup = SupervisorConfig::from_venue(v);
    let sd = trigger.subscribe();
    let venue = kind.adapter(v, map);
    let task = tokio::spawn(supervisor::run(
        venue,
        sup,
        norm,
        state,
        metrics,
        Some(sink),
        sd,
    ));
    tracing::info!(
        feed = %name,
        kind = kind.name(),
        out = %opts.out.display(),
        max_frames = ?opts.max_frames,
        duration = ?opts.duration,
        "recording (stop with Ctrl-C)"
    );
    let mut limit_reached = trigger.subscribe();
    let duration = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => tracing::info!(feed = %name, "interrupted: stopping"),
        _ = duration => tracing::info!(feed = %name, "duration reached: stopping"),
        _ = limit_reached.wait() => {}
    }
    trigger.trigger();
    if let Err(e) = task.await {
        tracing::error!(feed = %name, "recorder task failed: {e}");
    }
    let mut w = lock(&writer);
    let path = opts.out.clone();
    if let Some(e) = w.error.take() {
        // Keep what was written before the error.
        let _ = w.out.flush();
        return Err(RecordError::Write { path, source: e });
    }
    w.out
        .flush()
        .map_err(|e| RecordError::Write { path, source: e })?;
    let summary = RecordSummary {
        feed: name,
        frames: w.frames,
        bytes: w.bytes,
    };
    tracing::info!(
        feed = %summary.feed,
        frames = summary.frames,
        bytes = summary.bytes,
        out = %opts.out.display(),
        "recording written"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_escape_the_frame() {
        let l = encode_line(7, "{\"a\":\"x\\\"y\"}\n\u{e9}");
        assert_eq!(
            l,
            "{\"recv_ns\":7,\"frame\":\"{\\\"a\\\":\\\"x\\\\\\\"y\\\"}\\n\u{e9}\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["frame"], "{\"a\":\"x\\\"y\"}\n\u{e9}");
        assert_eq!(v["recv_ns"], 7);
    }
}
