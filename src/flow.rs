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
//! come late because it is busy (one core reading thousands of sockets)
//! would still get a frame per round trip, stay saturated, and read every
//! frame a full cycle late. So such a late Pong also spaces the
//! session's data frames (a minimum gap that doubles from 1 ms, up to
//! [`MAX_GAP_US`]), and one within `lag / 2` shrinks the gap by a quarter
//! until it is gone: the client gets fewer, fuller frames, each the newest
//! values, and keeps the headroom to read them when they arrive. While a
//! gap is set every data frame carries a probe, so the gap follows the
//! client's lag frame by frame.

use std::time::Duration;
use tokio::time::Instant;

/// A session's first window (within the configured min and max): large
/// enough that a client that keeps up is probed rarely from the start.
pub(crate) const INITIAL_WINDOW: u32 = 64 * 1024;

/// How often a limited rate is raised while the client keeps up.
pub(crate) const RAISE_EVERY: Duration = Duration::from_secs(1);

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
/// margin, raised while it keeps up.
#[derive(Debug, Default)]
struct Pacing {
    /// Bytes per ms allowed (0: none yet, a first drain is on).
    rate: u32,
    /// The rate the last drain measured, bytes per ms: the limit is
    /// raised quickly up to just below it, slowly past it.
    peak: u32,
    /// A drain is on: since when, and the read mark then. The client fell
    /// behind; nothing more is sent until it has read everything, which
    /// also measures how fast it reads.
    drain: Option<(Instant, u32)>,
    /// When the rate was last set or raised.
    rated_at: Option<Instant>,
    /// When the last probe went (answered or not).
    probed_at: Option<Instant>,
    /// When the next data frame may go.
    next_data: Option<Instant>,
    /// `next_data` was reported (see [`Gate::Paced`]).
    paced_told: bool,
}

impl Pacing {
    /// The limit after a drain that read `read` bytes in `ms`.
    fn measured(&mut self, read: u32, ms: u128, now: Instant) {
        if ms >= 10 && read > 0 {
            let r = u64::from(read) / u64::try_from(ms).unwrap_or(u64::MAX);
            self.peak = u32::try_from(r).unwrap_or(u32::MAX).max(1);
            self.rate = (self.peak / 4 * 3).max(1);
            self.rated_at = Some(now);
        }
    }

    /// Keeping up: raised a little, at most once per [`RAISE_EVERY`] (a
    /// client that reads in the background shows its application's pace
    /// only once its library's queue is full, so probing fast would
    /// refill that queue).
    fn raise(&mut self, now: Instant) {
        if self.rate == 0 || self.rated_at.is_some_and(|r| now < r + RAISE_EVERY) {
            return;
        }
        let step = if self.rate < self.peak - self.peak / 16 {
            self.rate / 16
        } else {
            self.rate / 256
        };
        self.rate = self.rate.saturating_add(step.max(1));
        self.rated_at = Some(now);
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
            self.size = self.size.saturating_mul(2).min(l.max);
            if let Some(p) = self.pacing.as_deref_mut() {
                p.raise(now);
            }
        } else if lag > l.lag_us && self.sent != mark {
            // Late, and this session kept writing while the probe was out:
            // its own frames queue in front of the client. A late Pong with
            // nothing sent after its probe says the client (or this
            // gateway, reading the Pong late in a long pass) was busy with
            // something else: slowing this session would not help.
            self.size = (self.size / 2).max(l.min);
            let p = self.pacing.get_or_insert_with(Box::default);
            p.drain.get_or_insert((now, mark));
        }
        let mut drained = false;
        if let Some(p) = self.pacing.as_deref_mut() {
            if let Some((since, from)) = p.drain {
                if mark == self.sent {
                    // Everything written is read: the drain measured how
                    // fast the client reads.
                    let ms = now.saturating_duration_since(since).as_millis();
                    p.measured(mark.wrapping_sub(from), ms, now);
                    p.drain = None;
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
        // Each frame now waits its share of the rate: 1,000 bytes at the
        // limit's bytes per ms.
        assert_eq!(w.gate(t2), Gate::Open);
        let probe = w.wrote(1000, t2).expect("a paced session probes");
        let due = t2 + Duration::from_micros(1_000_000 / u64::from(w.rate()));
        assert_eq!(w.gate(t2), Gate::Paced(due, true), "told once");
        assert_eq!(w.gate(t2), Gate::Paced(due, false));
        assert_eq!(w.gate(due), Gate::Open);
        // Prompt answers raise the limit, at most once per RAISE_EVERY: by
        // a sixteenth below the measured rate, by 1/256 above it.
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
        let top = *rates.last().unwrap();
        assert!(top > peak - peak / 16 && top < peak, "{rates:?} vs {peak}");
        // Frames closer together than PROBE_EVERY do not each carry one.
        assert!(w.wrote(10, now).is_none(), "within PROBE_EVERY");
        now += PROBE_EVERY;
        assert!(w.wrote(10, now).is_some());
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
