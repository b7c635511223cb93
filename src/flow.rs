//! Read-window flow control: how much a WebSocket client may have left
//! unread.
//!
//! TCP pushes back only when the client's socket buffer is full, and Linux
//! grows a receive buffer to megabytes. A client that reads slower than the
//! gateway writes (a busy browser tab, a front-end on one core) would sit
//! behind a growing queue of frames that were fresh when written and are
//! stale when read, and conflation in the slots never gets a chance.
//!
//! So each session counts the bytes it wrote and learns how far the client
//! has read from WebSocket Pings: a probe Ping whose payload is the byte
//! count so far follows a data frame, and the client's Pong (RFC 6455
//! requires one, sent when it reads the Ping, which is after everything in
//! front of it) says it has read that far. With a full window of bytes
//! unread the session writes no data; its symbols keep coalescing in their
//! slots, and the Pong lets the newest values go. Control replies are never
//! held.
//!
//! The window adapts to how long the client takes to answer, delay-based
//! like TCP Vegas: a Pong back within `lag / 2` of the fastest one seen
//! doubles it (the client keeps up; a long link needs its bandwidth times
//! its round trip, and a larger window means fewer probes), one later than
//! `lag` while the session kept writing halves it (its bytes queue in
//! front of the client). It starts at [`INITIAL_WINDOW`], and the first
//! frame carries a probe, to learn the fastest round trip before any
//! backlog. So a reader that falls behind gets at most about `lag` of
//! backlog, and a fast one is not slowed.
//!
//! A window bounds the bytes in flight, not the rate: a client whose reads
//! come late because it is busy (one core reading thousands of sockets, a
//! library that queues frames for an application that takes one every
//! 20 ms) would still get a frame per round trip, stay saturated, and read
//! every frame a full cycle late. So a Pong later than `lag`, with more
//! written since its probe or data held for it, starts a *drain*: no data
//! goes until the client has read everything (a bare probe asks), and then
//! for as long again as that Pong was late (so that a library queue, full
//! of what was read, empties first). The session is then *paced*: frames
//! go at three quarters of the client's measured rate (each frame's length
//! over the rate is the wait before the next), raised by a sixteenth each
//! [`RAISE_EVERY`] while its Pongs come within `lag / 2`, up to just below
//! that rate, and no further: a library that reads the socket into a
//! bounded queue answers every probe at once until the queue is full, so a
//! limit above its application's pace would show only once every value in
//! the queue is old. The rate is measured over the drain and over the
//! cycle since the last drain (see `Pacing::measured`). Instead of creeping
//! up, the limit is lifted outright after [`RELEASE_AFTER`] at its cap,
//! with the smallest window: a client that got faster keeps up and is
//! unlimited after [`PROBATION`]; one that did not falls behind at once,
//! is drained, gets its old limit back, and the next lift waits twice as
//! long. A paced session probes at most every [`PROBE_EVERY`]. The client
//! gets fewer, fuller frames, each with the newest values, at a pace it
//! can read.
//!
//! Ack mode ([`AckWindow`]) is the application-level form of the same
//! limit, for clients whose library answers Pings whether or not the
//! application keeps up: the client says how many frames it has
//! processed.

use std::time::Duration;
use tokio::time::Instant;

/// A session's first window (within the configured min and max): large
/// enough that a client that keeps up is probed rarely from the start.
pub(crate) const INITIAL_WINDOW: u32 = 64 * 1024;

/// How often a limited rate is raised while the client keeps up.
pub(crate) const RAISE_EVERY: Duration = Duration::from_secs(1);

/// How long a paced session must keep up at its limit before the limit is
/// lifted, to learn whether the client got faster: doubled after each lift
/// that failed (the client fell behind again within [`PROBATION`]), up to
/// `RELEASE_AFTER << MAX_BACKOFF`; a lift that holds forgets the session's
/// pacing altogether.
pub(crate) const RELEASE_AFTER: Duration = Duration::from_secs(30);
pub(crate) const MAX_BACKOFF: u8 = 3;

/// A lifted limit that a late Pong follows within this long failed.
pub(crate) const PROBATION: Duration = Duration::from_secs(2);

/// The shortest interval between two drains over which the client's
/// rate is measured too (see `Pacing::measured`).
pub(crate) const CYCLE_MIN: Duration = Duration::from_secs(2);

/// The longest wait after a drain (see `Pacing::drain_lag_us`).
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(500);

/// How often a session whose rate is limited probes, at most.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// A probe Ping's frame: FIN + opcode 9, 4-byte payload (the mark, big
/// endian), unmasked (server to client).
pub(crate) const PROBE_LEN: usize = 6;

/// The window's limits, from `[session]` (`read_lag_ms`,
/// `read_window_min_bytes`, `read_window_max_bytes`; see
/// `SessionConfig::read_window`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Backlog the client may have, as the delay of its Pongs over the
    /// fastest one seen, µs; 0 turns flow control off.
    pub lag_us: u32,
    pub min: u32,
    pub max: u32,
}

/// What a Pong did (see [`ReadWindow::pong`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pong {
    /// Not an answer to the probe in flight: nothing changed.
    Ignored,
    /// The read mark moved, and data had been held: it may go now.
    Opened,
    /// The read mark moved; nothing was held.
    Acked,
    /// The read mark moved but the (smaller) window is still full: send a
    /// Ping with [`ReadWindow::keepalive_payload`] now, as no frame will
    /// carry the next probe.
    Probe,
}

/// What [`ReadWindow::gate`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Data may go.
    Open,
    /// The window is full: hold data until a Pong.
    Held,
    /// As `Held`, and the first time since the last Pong (for the
    /// `read_window_holds_total` metric).
    HeldNow,
    /// The client's lag spaces its frames: data may go at this time.
    /// `true` the first time it is reported for this gap (one data frame
    /// waits: the `read_window_paced_total` metric).
    Paced(Instant, bool),
}

/// One session's window (see the module docs). It lives with what a direct
/// write needs (`outbox::Direct`), off the session's task: every byte in
/// the task is paid per connection in its allocation's size class. What
/// only a session whose rate is limited needs is boxed apart.
///
/// Byte counts wrap at 4 GiB: only differences are used, and no window
/// comes near that.
#[derive(Debug)]
pub(crate) struct ReadWindow {
    /// Frame bytes written to the client (headers included, probes not).
    sent: u32,
    /// Bytes the client has read for sure: the mark of its last Pong.
    acked: u32,
    /// The probe in flight: its mark, and when it went (`None`: none).
    probe_mark: u32,
    probe_at: Option<Instant>,
    /// Fastest probe round trip seen, µs (`u32::MAX` before the first).
    min_rtt_us: u32,
    /// Current window, bytes; 0 when flow control is off.
    size: u32,
    /// The window was full while the probe was out.
    filled: bool,
    /// The rate limit, once the client has fallen behind.
    pacing: Option<Box<Pacing>>,
}

/// A session's rate limit: what the client was measured to read, with a
/// margin, raised while it keeps up, but never past the measured rate: a
/// client library that reads the socket into a bounded queue (Python's
/// `websockets` holds 16 messages) answers every probe at once while that
/// queue grows, so a limit above the application's pace would show only
/// once the queue is full, with every value in it old. Instead the limit is
/// lifted outright now and then (see [`RELEASE_AFTER`]): a fast burst that
/// fills such a queue at once costs fewer stale values than a slow creep.
#[derive(Debug, Default)]
struct Pacing {
    /// Bytes per ms allowed (0: none, while a first drain is on or the
    /// limit is lifted).
    rate: u32,
    /// The rate the client was measured to read, bytes per ms: the limit
    /// is raised up to just below it.
    peak: u32,
    /// A drain is on: since when, and the read mark then. The client fell
    /// behind; nothing more is sent until it has read everything, which
    /// also measures how fast it reads.
    drain: Option<(Instant, u32)>,
    /// How late the Pong that started the drain was, µs: once the drain
    /// is over, data waits that long again (at most [`MAX_HOLD`]), so that
    /// a client library's queue, full of what it read during the drain,
    /// empties before new frames queue behind it.
    drain_lag_us: u32,
    /// When the rate was last set or raised.
    rated_at: Option<Instant>,
    /// When the last probe went (answered or not).
    probed_at: Option<Instant>,
    /// When the next data frame may go.
    next_data: Option<Instant>,
    /// `next_data` was reported (see [`Gate::Paced`]).
    paced_told: bool,
    /// When the limit may be lifted (set when a drain ends).
    release_at: Option<Instant>,
    /// The limit is lifted: since when, and the rate and peak it had.
    released: Option<(Instant, u32, u32, bool)>,
    /// Lifts that failed in a row (the wait before the next one doubles).
    backoff: u8,
    /// When the last drain ended, and the read mark then.
    drained_at: Option<(Instant, u32)>,
    /// `peak` was measured over a cycle between drains, not a drain alone.
    over_cycle: bool,
}

impl Pacing {
    /// The limit after a drain that read `read` bytes in `ms`, the read
    /// mark now being `mark`. The client's rate is the larger of what it
    /// read over the drain and, when the last drain ended at least
    /// [`CYCLE_MIN`] ago, what it read since then: a client whose library
    /// reads into a queue reads in bursts as its application frees room,
    /// so a drain that ends soon after a burst says little, while over a
    /// cycle that ended with its queue full what it read is what its
    /// application took, give or take that queue. After a lift that
    /// failed, the limit from before it stands unless this measured more.
    fn measured(&mut self, read: u32, ms: u128, mark: u32, now: Instant) {
        let before = self.released.take();
        let per_ms = |bytes: u32, ms: u128| {
            let r = u64::from(bytes) / u64::try_from(ms.max(1)).unwrap_or(u64::MAX);
            u32::try_from(r).unwrap_or(u32::MAX)
        };
        let drain = if ms >= 10 { per_ms(read, ms) } else { 0 };
        let cycle = match self.drained_at {
            Some((at, from)) if now >= at + CYCLE_MIN => per_ms(
                mark.wrapping_sub(from),
                now.saturating_duration_since(at).as_millis(),
            ),
            _ => 0,
        };
        let r = drain.max(cycle);
        if r > 0 {
            self.peak = r;
            self.rate = (r / 4 * 3).max(1);
            self.over_cycle = cycle > 0;
        }
        if let Some((_, rate, peak, over_cycle)) = before {
            if peak >= self.peak || self.rate == 0 {
                (self.rate, self.peak, self.over_cycle) = (rate, peak, over_cycle);
            }
        }
        self.drained_at = Some((now, mark));
        if self.rate > 0 {
            self.rated_at = Some(now);
            self.release_at = Some(now + RELEASE_AFTER * (1 << self.backoff));
        }
    }

    /// The highest limit: a sixteenth below the measured rate, or three
    /// sixteenths while it was measured over a drain alone (which can be
    /// off by one of a queueing client's bursts either way).
    fn cap(&self) -> u32 {
        let margin = if self.over_cycle { 1 } else { 3 };
        (self.peak - self.peak / 16 * margin).max(1)
    }

    /// Keeping up: raised by a sixteenth, at most once per [`RAISE_EVERY`]
    /// (a client that reads in the background shows its application's
    /// pace only once its library's queue is full, so probing fast would
    /// refill that queue), up to [`Pacing::cap`]; there, once it is time,
    /// lifted. Returns whether it was lifted now.
    fn raise(&mut self, now: Instant) -> bool {
        if self.rate == 0 || self.rated_at.is_some_and(|r| now < r + RAISE_EVERY) {
            return false;
        }
        if self.rate < self.cap() {
            self.rate = self
                .rate
                .saturating_add((self.rate / 16).max(1))
                .min(self.cap());
            self.rated_at = Some(now);
            return false;
        }
        if self.release_at.is_none_or(|t| now < t) {
            return false;
        }
        self.released = Some((now, self.rate, self.peak, self.over_cycle));
        (self.rate, self.next_data, self.release_at) = (0, None, None);
        true
    }
}

impl Default for ReadWindow {
    /// Off (a session's parked copy before its first park).
    fn default() -> Self {
        ReadWindow::new(Limits {
            lag_us: 0,
            min: 0,
            max: 0,
        })
    }
}

impl ReadWindow {
    pub(crate) fn new(l: Limits) -> Self {
        ReadWindow {
            sent: 0,
            acked: 0,
            probe_mark: 0,
            probe_at: None,
            min_rtt_us: u32::MAX,
            size: if l.lag_us == 0 {
                0
            } else {
                INITIAL_WINDOW.clamp(l.min, l.max)
            },
            filled: false,
            pacing: None,
        }
    }

    fn unread(&self) -> u32 {
        self.sent.wrapping_sub(self.acked)
    }

    fn draining(&self) -> bool {
        self.pacing.as_ref().is_some_and(|p| p.drain.is_some())
    }

    /// Whether data may be written now.
    pub(crate) fn gate(&mut self, now: Instant) -> Gate {
        if self.is_full() || self.draining() {
            return if std::mem::replace(&mut self.filled, true) {
                Gate::Held
            } else {
                Gate::HeldNow
            };
        }
        match self.pacing.as_deref_mut() {
            Some(p) => match p.next_data {
                Some(t) if now < t => Gate::Paced(t, !std::mem::replace(&mut p.paced_told, true)),
                _ => Gate::Open,
            },
            None => Gate::Open,
        }
    }

    /// Whether data could go now (as [`ReadWindow::gate`], without its
    /// side effects).
    pub(crate) fn would_open(&self, now: Instant) -> bool {
        !self.is_full()
            && self
                .pacing
                .as_ref()
                .is_none_or(|p| p.drain.is_none() && p.next_data.is_none_or(|t| now >= t))
    }

    /// Whether data would be held now (no side effects).
    pub(crate) fn is_full(&self) -> bool {
        self.size != 0 && self.unread() >= self.size
    }

    /// Since when the client has been holding up data: the window is full
    /// (or a drain is on) and the probe that would open it went then
    /// (`None`: not held).
    pub(crate) fn stalled_since(&self) -> Option<Instant> {
        self.probe_at.filter(|_| self.is_full() || self.draining())
    }

    /// Notes a frame of `n` bytes handed to the socket; returns the probe
    /// Ping to write right after it when one is due (half a window unread
    /// and none in flight).
    pub(crate) fn wrote(&mut self, n: usize, now: Instant) -> Option<[u8; PROBE_LEN]> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.sent = self.sent.wrapping_add(n);
        // Probes go every half window, every `PROBE_EVERY` while the rate
        // is limited (the limit follows the client's pace), and with the
        // first frame (whose prompt answer is the round trip every later
        // one is compared with).
        let mut paced_probe = false;
        if let Some(p) = self.pacing.as_deref_mut() {
            p.paced_told = false;
            p.next_data = (p.rate > 0)
                .then(|| now + Duration::from_micros(u64::from(n) * 1000 / u64::from(p.rate)));
            paced_probe = p.rate > 0 && p.probed_at.is_none_or(|t| now >= t + PROBE_EVERY);
        }
        let due = self.unread() >= self.size / 2 || paced_probe || self.min_rtt_us == u32::MAX;
        if self.size == 0 || self.probe_at.is_some() || !due {
            return None;
        }
        Some(self.probe(now))
    }

    /// Sends a probe now: its mark is everything written so far.
    fn probe(&mut self, now: Instant) -> [u8; PROBE_LEN] {
        self.probe_mark = self.sent;
        self.probe_at = Some(now);
        if let Some(p) = self.pacing.as_deref_mut() {
            p.probed_at = Some(now);
        }
        probe_frame(self.sent)
    }

    /// The payload for a keepalive Ping: the probe in flight, if any, so
    /// that a client answering only its latest Ping (RFC 6455 allows it)
    /// still answers the probe.
    pub(crate) fn keepalive_payload(&self) -> Vec<u8> {
        match self.probe_at {
            None => Vec::new(),
            Some(_) => self.probe_mark.to_be_bytes().to_vec(),
        }
    }

    /// A Pong from the client. Pongs that are not an answer to the probe
    /// in flight (unsolicited, empty, or a mark never sent) change nothing.
    pub(crate) fn pong(&mut self, payload: &[u8], now: Instant, l: Limits) -> Pong {
        let Ok(mark) = <[u8; 4]>::try_from(payload).map(u32::from_be_bytes) else {
            return Pong::Ignored;
        };
        let Some(at) = self.probe_at else {
            return Pong::Ignored;
        };
        if self.size == 0 || mark != self.probe_mark {
            return Pong::Ignored;
        }
        self.acked = mark;
        self.probe_at = None;
        let rtt = now.saturating_duration_since(at);
        let rtt_us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        self.min_rtt_us = self.min_rtt_us.min(rtt_us);
        let lag = rtt_us - self.min_rtt_us;
        if lag <= l.lag_us / 2 {
            // Lifted: what a failed lift sends beyond the client's pace is
            // bounded by the smallest window, until it has held for
            // PROBATION (the client then keeps up unlimited).
            let lifted = self
                .pacing
                .as_deref_mut()
                .map(|p| (p.raise(now), p.released));
            match lifted {
                Some((true, _)) => self.size = l.min,
                Some((_, Some((at, ..)))) if now < at + PROBATION => {}
                Some((_, Some(_))) => {
                    self.pacing = None;
                    self.size = self.size.saturating_mul(2).min(l.max);
                }
                _ => self.size = self.size.saturating_mul(2).min(l.max),
            }
        } else if lag > l.lag_us && (self.sent != mark || self.filled) {
            // Late, and this session kept writing while the probe was out,
            // or had data waiting for it: its own frames queue in front of
            // the client. A late Pong with nothing sent or held after its
            // probe says the client (or this gateway, reading the Pong late
            // in a long pass) was busy with something else: slowing this
            // session would not help.
            self.size = (self.size / 2).max(l.min);
            let p = self.pacing.get_or_insert_with(Box::default);
            if p.drain.is_none() && p.released.is_some() {
                // The lift failed: wait longer before the next.
                p.backoff = (p.backoff + 1).min(MAX_BACKOFF);
            }
            if p.drain.is_none() {
                p.drain = Some((now, mark));
                p.drain_lag_us = lag;
            }
        }
        let mut drained = false;
        if let Some(p) = self.pacing.as_deref_mut() {
            if let Some((since, from)) = p.drain {
                if mark == self.sent {
                    // Everything written is read: the drain measured how
                    // fast the client reads.
                    let ms = now.saturating_duration_since(since).as_millis();
                    p.measured(mark.wrapping_sub(from), ms, mark, now);
                    p.drain = None;
                    let hold = Duration::from_micros(u64::from(p.drain_lag_us)).min(MAX_HOLD);
                    p.next_data = Some(now + hold);
                    drained = true;
                } else if !self.is_full() {
                    // Not read to the end yet, and no frame is coming to
                    // carry the next probe: ask with a bare one.
                    self.probe(now);
                    return Pong::Probe;
                }
            }
        }
        let held = std::mem::replace(&mut self.filled, false) || drained;
        if self.is_full() {
            self.probe(now);
            return Pong::Probe;
        }
        if held {
            Pong::Opened
        } else {
            Pong::Acked
        }
    }
}

/// Client-paced delivery (ack mode, protocol `flow` and `ack` ops): the
/// client counts the frames it receives after the one that carried the
/// `flow` reply and acknowledges how many it has processed; data goes only
/// while fewer than `window` frames are unacknowledged. A browser reads
/// its socket and answers Pings whether or not the page keeps up, so only
/// the application can say how far it has got.
///
/// It lives beside the read window (`outbox::Direct`), under the same
/// lock: the task and a direct write both count frames. Boxed, and absent
/// while ack mode is off: most sessions never use it.
#[derive(Debug, Default)]
pub(crate) struct AckWindow(Option<Box<Acks>>);

#[derive(Debug, Default)]
struct Acks {
    /// Unacknowledged frames allowed.
    window: u8,
    /// Data has waited for an ack since the last one (for the hold metric,
    /// counted once per wait).
    held: bool,
    /// Frames sent since the `flow` reply's frame.
    sent: u32,
    /// The client's last `ack`.
    acked: u32,
    /// Since when data has waited for an ack (`None`: not waiting).
    held_since: Option<Instant>,
}

impl Acks {
    fn is_open(&self) -> bool {
        self.sent.wrapping_sub(self.acked) < u32::from(self.window)
    }
}

/// What an `ack` did (see [`AckWindow::ack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acked {
    /// It acknowledged frames not acknowledged before; `opened` when data
    /// had been waiting for it.
    Progress { opened: bool },
    /// Not past the last one: nothing changed.
    Stale,
    /// More frames than were sent: refused.
    TooMany,
}

impl AckWindow {
    /// Starts counting (or stops, with 0) after the frame that carried the
    /// `flow` reply.
    pub(crate) fn start(window: u8) -> Self {
        AckWindow((window > 0).then(|| {
            Box::new(Acks {
                window,
                ..Acks::default()
            })
        }))
    }

    /// Frames sent since the `flow` reply's frame.
    pub(crate) fn sent(&self) -> u32 {
        self.0.as_ref().map_or(0, |a| a.sent)
    }

    /// Counts a frame written to the client.
    pub(crate) fn sent_frame(&mut self) {
        if let Some(a) = self.0.as_deref_mut() {
            a.sent = a.sent.wrapping_add(1);
        }
    }

    /// Whether data may go now: fewer than `window` frames unacknowledged.
    /// `Err(true)` the first time it is held since the last ack (for the
    /// `ack_window_holds_total` metric).
    pub(crate) fn gate(&mut self, now: Instant) -> Result<(), bool> {
        match self.0.as_deref_mut() {
            Some(a) if !a.is_open() => {
                a.held_since.get_or_insert(now);
                Err(!std::mem::replace(&mut a.held, true))
            }
            _ => Ok(()),
        }
    }

    /// Whether data could go now (as [`AckWindow::gate`], without its side
    /// effects).
    pub(crate) fn is_open(&self) -> bool {
        self.0.as_ref().is_none_or(|a| a.is_open())
    }

    /// Since when data has waited for an ack (`None`: it has not).
    pub(crate) fn held_since(&self) -> Option<Instant> {
        self.0
            .as_ref()
            .and_then(|a| a.held_since.filter(|_| !a.is_open()))
    }

    /// The client's `ack` of `n` frames (cumulative).
    pub(crate) fn ack(&mut self, n: u64) -> Acked {
        let (Some(a), Ok(n)) = (self.0.as_deref_mut(), u32::try_from(n)) else {
            return Acked::TooMany;
        };
        if n > a.sent {
            return Acked::TooMany;
        }
        if n <= a.acked {
            return Acked::Stale;
        }
        a.acked = n;
        a.held_since = None;
        Acked::Progress {
            opened: std::mem::replace(&mut a.held, false),
        }
    }
}

fn probe_frame(mark: u32) -> [u8; PROBE_LEN] {
    let mut f = [0u8; PROBE_LEN];
    f[0] = 0x89;
    f[1] = 4;
    f[2..].copy_from_slice(&mark.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_window_holds_data_at_w_unacked_frames_only() {
        let t = Instant::now();
        let mut a = AckWindow::start(2);
        assert_eq!(a.gate(t), Ok(()));
        a.sent_frame();
        assert_eq!(a.gate(t), Ok(()));
        a.sent_frame();
        // Two unacknowledged: held, counted once.
        assert_eq!(a.gate(t), Err(true));
        assert_eq!(a.gate(t), Err(false));
        assert!(!a.is_open());
        assert_eq!(a.held_since(), Some(t));
        assert_eq!(a.ack(3), Acked::TooMany, "more than were sent");
        assert_eq!(a.ack(0), Acked::Stale);
        assert_eq!(a.ack(1), Acked::Progress { opened: true });
        assert_eq!(a.held_since(), None);
        assert_eq!(a.gate(t), Ok(()));
        assert_eq!(a.ack(1), Acked::Stale, "not past the last ack");
        assert_eq!(a.ack(2), Acked::Progress { opened: false });
        // Off: nothing is counted or held, every ack is refused.
        let mut off = AckWindow::start(0);
        off.sent_frame();
        assert_eq!(off.gate(t), Ok(()));
        assert_eq!(off.ack(0), Acked::TooMany);
        assert_eq!(AckWindow::start(1).ack(u64::MAX), Acked::TooMany);
    }

    impl ReadWindow {
        /// Current window, bytes (0: off).
        fn size(&self) -> u32 {
            self.size
        }

        /// The rate limit, bytes per ms (0: none).
        fn rate(&self) -> u32 {
            self.pacing.as_ref().map_or(0, |p| p.rate)
        }
    }

    const L: Limits = Limits {
        lag_us: 20_000,
        min: 8192,
        max: 1 << 20,
    };

    fn mark(p: &[u8; PROBE_LEN]) -> [u8; 4] {
        assert_eq!(&p[..2], &[0x89, 4], "a final Ping with 4 bytes");
        p[2..].try_into().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Writes `n`-byte frames until the window holds (regardless of any
    /// gap); returns the probes.
    fn fill(w: &mut ReadWindow, n: usize, t: Instant) -> Vec<[u8; PROBE_LEN]> {
        let mut probes = Vec::new();
        while matches!(w.gate(t), Gate::Open | Gate::Paced(..)) {
            probes.extend(w.wrote(n, t));
        }
        probes
    }

    /// A window past its first probe, answered at once (fastest round
    /// trip 0).
    fn started(t: Instant) -> ReadWindow {
        let mut w = ReadWindow::new(L);
        let p = w.wrote(100, t).expect("the first frame carries a probe");
        assert_eq!(w.pong(&mark(&p), t, L), Pong::Acked);
        w
    }

    #[test]
    fn holds_after_a_window_and_opens_on_the_probe_pong() {
        let t = Instant::now();
        let mut w = started(t);
        assert_eq!(w.size(), 2 * INITIAL_WINDOW, "prompt: doubled");
        let probes = fill(&mut w, 1000, t);
        // 100 + 132 frames: 131,100 bytes unread of a 131,072 window.
        assert_eq!(w.sent, 132_100);
        assert_eq!(probes.len(), 1, "one probe in flight");
        assert_eq!(u32::from_be_bytes(mark(&probes[0])), 66_100, "at half");
        assert!(w.is_full());
        assert_eq!(w.stalled_since(), Some(t), "since the probe went");
        assert_eq!(w.gate(t), Gate::Held, "counted once per hold");
        assert_eq!(w.pong(&mark(&probes[0]), t, L), Pong::Opened);
        assert_eq!(w.gate(t), Gate::Open);
        assert_eq!(w.stalled_since(), None);
    }

    #[test]
    fn a_pong_that_answers_no_probe_changes_nothing() {
        let t = Instant::now();
        let mut w = ReadWindow::new(L);
        let probes = fill(&mut w, 3000, t);
        let m = u32::from_be_bytes(mark(&probes[0]));
        assert_eq!(m, 3000, "the first frame's probe");
        for bogus in [
            Vec::new(),
            b"hi".to_vec(),
            (m + 1).to_be_bytes().to_vec(),
            (m - 1).to_be_bytes().to_vec(),
            u32::MAX.to_be_bytes().to_vec(),
            [m.to_be_bytes().as_slice(), &[0]].concat(),
        ] {
            assert_eq!(w.pong(&bogus, t, L), Pong::Ignored, "{bogus:?}");
            assert!(w.is_full());
        }
        assert_eq!(w.keepalive_payload(), m.to_be_bytes());
        assert_eq!(w.pong(&m.to_be_bytes(), t, L), Pong::Opened);
        assert_eq!(w.pong(&m.to_be_bytes(), t, L), Pong::Ignored, "twice");
        assert!(w.keepalive_payload().is_empty());
    }

    #[test]
    fn the_window_follows_the_client_lag() {
        let t0 = Instant::now();
        let mut w = started(t0);
        let mut t = t0;
        // One probe round trip: write while open, answer the probe (a
        // bare one when the window shrank below what is unread).
        let round = |w: &mut ReadWindow, rtt_us: u64, t: &mut Instant| {
            let m = match fill(w, 2000, *t).first() {
                Some(p) => mark(p),
                None => w.keepalive_payload().try_into().unwrap(),
            };
            *t += Duration::from_micros(rtt_us);
            assert_ne!(w.pong(&m, *t, L), Pong::Ignored);
        };
        // A prompt client (100 µs): doubles up to the max.
        for _ in 0..20 {
            round(&mut w, 100, &mut t);
        }
        assert_eq!(w.size(), L.max);
        assert_eq!(w.rate(), 0, "no limit while it keeps up");
        // Backlogged (its Pongs 50 ms late with the window full): halves
        // down to the min, never below, and its rate is limited.
        for _ in 0..20 {
            round(&mut w, 50_000, &mut t);
        }
        assert_eq!(w.size(), L.min);
        assert!(w.rate() > 0);
        // Between lag/2 and lag: stays.
        round(&mut w, 100, &mut t);
        let s = (w.size(), w.rate());
        round(&mut w, 15_000, &mut t);
        assert_eq!((w.size(), w.rate()), s);
    }

    #[test]
    fn a_late_pong_with_nothing_sent_after_its_probe_changes_nothing() {
        let t = Instant::now();
        let mut w = started(t);
        let s = w.size();
        let p = w.wrote(70_000, t).expect("probe at half a window");
        assert_eq!(w.gate(t), Gate::Open, "70,000 of {s}");
        assert_eq!(w.pong(&mark(&p), t + ms(100), L), Pong::Acked);
        assert_eq!((w.size(), w.rate()), (s, 0), "slow, but not our bytes");
        assert!(w.pacing.is_none(), "no drain either");
    }

    #[test]
    fn a_late_reader_is_drained_then_paced_at_the_rate_it_read() {
        let t = Instant::now();
        let mut w = started(t);
        // Full, and answered 50 ms late with more written since the probe:
        // a drain. Nothing more goes until everything written is read.
        let p = fill(&mut w, 5000, t);
        let t1 = t + ms(50);
        assert_eq!(w.pong(&mark(&p[0]), t1, L), Pong::Probe, "a bare probe");
        assert_eq!(w.gate(t1), Gate::Held, "the same hold: counted once");
        assert_eq!(w.stalled_since(), Some(t1));
        let bare: [u8; 4] = w.keepalive_payload().try_into().unwrap();
        assert_eq!(u32::from_be_bytes(bare), w.sent, "asks for everything");
        // It has read everything 300 ms later: the drain measured how fast
        // (the bytes it read since the late Pong, per ms) and the limit is
        // three quarters of that.
        let read = w.sent - u32::from_be_bytes(mark(&p[0]));
        let t2 = t1 + ms(300);
        assert_eq!(w.pong(&bare, t2, L), Pong::Opened);
        assert_eq!(w.rate(), read / 300 / 4 * 3);
        assert!(w.rate() > 0);
        // Data waits as long again as the late Pong was late (the client's
        // queue, if it has one, empties first), then each frame waits its
        // share of the rate: 1,000 bytes at the limit's bytes per ms.
        let t2 = t2 + ms(50);
        assert_eq!(w.gate(t2 - ms(1)), Gate::Paced(t2, true));
        assert_eq!(w.gate(t2), Gate::Open);
        let probe = w.wrote(1000, t2).expect("a paced session probes");
        let due = t2 + Duration::from_micros(1_000_000 / u64::from(w.rate()));
        assert_eq!(w.gate(t2), Gate::Paced(due, true), "told once");
        assert_eq!(w.gate(t2), Gate::Paced(due, false));
        assert_eq!(w.gate(due), Gate::Open);
        // Prompt answers raise the limit, at most once per RAISE_EVERY, by
        // a sixteenth, up to three sixteenths below the rate measured over
        // a drain alone.
        let r = w.rate();
        assert_eq!(w.pong(&mark(&probe), t2, L), Pong::Acked);
        assert_eq!(w.rate(), r, "not again within RAISE_EVERY of the drain");
        let mut now = due;
        let mut rates = vec![r];
        for _ in 0..10 {
            now += RAISE_EVERY;
            let p = w.wrote(1000, now).expect("PROBE_EVERY passed");
            assert_eq!(w.pong(&mark(&p), now, L), Pong::Acked);
            rates.push(w.rate());
        }
        assert_eq!(rates[1], r + r / 16, "{rates:?}");
        let peak = read / 300;
        assert_eq!(*rates.last().unwrap(), peak - peak / 16 * 3, "{rates:?}");
        // Frames closer together than PROBE_EVERY do not each carry one.
        assert!(w.wrote(10, now).is_none(), "within PROBE_EVERY");
        now += PROBE_EVERY;
        assert!(w.wrote(10, now).is_some());
    }

    /// A started window drained once: paced, at its cap.
    fn paced_at_cap(t: Instant) -> (ReadWindow, Instant) {
        let mut w = started(t);
        let p = fill(&mut w, 5000, t);
        let mut now = t + ms(50);
        assert_eq!(w.pong(&mark(&p[0]), now, L), Pong::Probe);
        let bare = w.keepalive_payload();
        now += ms(300);
        assert_eq!(w.pong(&bare, now, L), Pong::Opened);
        for _ in 0..10 {
            now += RAISE_EVERY;
            let p = w.wrote(1000, now).expect("PROBE_EVERY passed");
            assert_eq!(w.pong(&mark(&p), now, L), Pong::Acked);
        }
        let peak = w.pacing.as_ref().unwrap().peak;
        assert_eq!(w.rate(), peak - peak / 16 * 3, "at the cap");
        (w, now)
    }

    #[test]
    fn a_limit_held_at_its_cap_is_lifted_then_restored_if_the_client_falls_behind() {
        let t = Instant::now();
        let (mut w, mut now) = paced_at_cap(t);
        let cap = w.rate();
        // Keeping up at the cap: stays until RELEASE_AFTER from the drain's
        // end, then lifted, with the window at its smallest while on
        // probation (a failed lift queues little more than that).
        let drained = t + ms(350);
        while now + RAISE_EVERY < drained + RELEASE_AFTER {
            now += RAISE_EVERY;
            let p = w.wrote(1000, now).expect("paced: probes");
            assert_eq!(w.pong(&mark(&p), now, L), Pong::Acked);
            assert_eq!(w.rate(), cap, "not lifted before RELEASE_AFTER");
        }
        assert!(w.size() > INITIAL_WINDOW, "grew while it kept up");
        now += RAISE_EVERY;
        let p = w.wrote(1000, now).expect("paced: probes");
        assert_eq!(w.pong(&mark(&p), now, L), Pong::Acked);
        assert_eq!(w.rate(), 0, "lifted");
        assert_eq!(w.size(), L.min);
        assert_eq!(w.gate(now), Gate::Open);
        let p = w.wrote(5000, now).expect("half the window");
        assert_eq!(w.pong(&mark(&p), now, L), Pong::Acked);
        assert_eq!(w.size(), L.min, "not grown on probation");
        // It falls behind at once: drained, and the limit from before the
        // lift stands (this drain measured less: two frames in a second,
        // and so did the cycle since the last drain); the next lift waits
        // twice as long.
        let p = fill(&mut w, 5000, now);
        let late = now + ms(60);
        assert_eq!(w.pong(&mark(&p[0]), late, L), Pong::Probe);
        let bare = w.keepalive_payload();
        let end = late + ms(1000);
        assert_eq!(w.pong(&bare, end, L), Pong::Opened);
        assert_eq!(w.rate(), cap, "restored");
        let pacing = w.pacing.as_ref().unwrap();
        assert_eq!(pacing.backoff, 1);
        assert_eq!(pacing.release_at, Some(end + 2 * RELEASE_AFTER));
    }

    #[test]
    fn a_later_drain_measures_over_the_cycle_since_the_last() {
        let t = Instant::now();
        let (mut w, mut now) = paced_at_cap(t);
        let p = w.pacing.as_ref().unwrap();
        let (drained, from) = p.drained_at.unwrap();
        // A client whose queue filled (reading at once until then): late
        // with data held, and everything read within 5 ms, too soon to
        // measure a drain. Its rate is what it read since the last drain.
        now += ms(2500);
        let probes = fill(&mut w, 4000, now);
        let late = now + ms(80);
        assert_ne!(w.pong(&mark(&probes[0]), late, L), Pong::Ignored);
        let bare = w.keepalive_payload();
        let end = late + ms(5);
        assert_eq!(w.pong(&bare, end, L), Pong::Opened);
        let p = w.pacing.as_ref().unwrap();
        let cycle_ms = u32::try_from((end - drained).as_millis()).unwrap();
        let peak = w.sent.wrapping_sub(from) / cycle_ms;
        assert_eq!(p.peak, peak);
        assert!(p.over_cycle);
        assert_eq!(w.rate(), peak / 4 * 3);
        assert_eq!(p.cap(), peak - peak / 16, "a cycle's measure: closer");
    }

    #[test]
    fn a_lift_that_holds_forgets_the_pacing() {
        let t = Instant::now();
        let (mut w, mut now) = paced_at_cap(t);
        let p = w.pacing.as_deref_mut().unwrap();
        p.release_at = Some(now);
        now += RAISE_EVERY;
        let probe = w.wrote(1000, now).expect("paced: probes");
        assert_eq!(w.pong(&mark(&probe), now, L), Pong::Acked);
        assert_eq!(w.rate(), 0, "lifted");
        assert!(w.pacing.is_some(), "on probation");
        // Prompt answers for PROBATION: the client keeps up unlimited.
        now += PROBATION;
        let probe = fill(&mut w, 1000, now);
        assert_eq!(w.pong(&mark(&probe[0]), now, L), Pong::Opened);
        assert!(w.pacing.is_none());
    }

    #[test]
    fn a_window_that_shrinks_below_the_unread_bytes_asks_for_a_bare_probe() {
        let t = Instant::now();
        let mut w = started(t);
        assert_eq!(w.size(), 131_072);
        let p = fill(&mut w, 1000, t);
        // 50 ms late with the window full: halved to 64 KiB while ~64 KiB
        // stay unread, so no frame can carry the next probe.
        let late = t + ms(50);
        assert_eq!(w.pong(&mark(&p[0]), late, L), Pong::Probe);
        assert_eq!(w.size(), 65_536);
        assert!(w.is_full());
        assert_eq!(w.gate(late), Gate::HeldNow);
        let bare = w.keepalive_payload();
        assert_eq!(u32::from_be_bytes(bare.clone().try_into().unwrap()), w.sent);
        assert_eq!(w.pong(&bare, late, L), Pong::Opened);
        assert!(matches!(w.gate(late), Gate::Open | Gate::Paced(..)));
    }

    #[test]
    fn byte_counts_wrap_at_4_gib() {
        let t = Instant::now();
        let mut w = started(t);
        (w.sent, w.acked) = (u32::MAX - 3000, u32::MAX - 3000);
        let p = fill(&mut w, 20_000, t);
        assert_eq!(w.sent, 16_999 + 120_000, "wrapped");
        assert!(w.is_full());
        assert_eq!(w.pong(&mark(&p[0]), t, L), Pong::Opened);
        assert_eq!(w.gate(t), Gate::Open);
    }

    #[test]
    fn off_means_never_held_and_no_probes() {
        let t = Instant::now();
        let mut w = ReadWindow::new(Limits { lag_us: 0, ..L });
        for _ in 0..1000 {
            assert_eq!(w.gate(t), Gate::Open);
            assert!(w.wrote(60_000, t).is_none());
        }
        assert_eq!(w.pong(&1u32.to_be_bytes(), t, L), Pong::Ignored);
    }
}
