//! The outbox: what a session sends, built the same way by its own task
//! and by a fan-out pass that writes for it while the task sleeps.
//!
//! * [`append_data`] puts the newest value of every dirty subscription
//!   into a frame (status changes and owed snapshots included), each quote
//!   copied from the [`EncodeCache`].
//! * [`Direct`] is what a parked session leaves where the fan-out can reach
//!   it (its subscriptions, its socket, its read window); [`deliver`] is
//!   the fan-out's write into it.
//! * [`Tally`] counts a pass's direct frames once per slice.

use crate::encode::{EncodeCache, Memo};
use crate::flow::{AckWindow, Gate, ReadWindow};
use crate::metrics::Metrics;
use crate::model::{now_ns, Status, SymbolId};
use crate::protocol::{encode_quote, encode_status, encode_trade, encode_trades_dropped};
use crate::sync::Mutex;
use crate::trades::{Cursor, Read};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One subscription of a session: 40 bytes, since a session holds one per
/// symbol for its whole life.
pub(crate) struct Sub {
    pub(crate) sym: SymbolId,
    /// Minimum gap between two updates in microseconds (from `max_hz`),
    /// zero for none. Saturates at `u32::MAX` (~71 minutes).
    pub(crate) interval_us: u32,
    /// Seq of the last quote sent; the subscription is dirty while the
    /// slot's seq is higher.
    pub(crate) last_seq: u64,
    /// Earliest time the next update may go (with `interval_us`).
    pub(crate) next_at: Option<Instant>,
    /// A snapshot is owed (sent with `"snapshot":true`).
    pub(crate) snapshot: bool,
    /// Last status the client was told.
    pub(crate) status: Status,
    /// Trades asked for (`"trades":true`): the last one given.
    pub(crate) trades: Cursor,
}

// A session holds one `Sub` per symbol for its life.
const _: () = assert!(std::mem::size_of::<Sub>() <= 40);

/// The patterns a session subscribed with, watched for symbols added to
/// the gateway later (boxed: most sessions hold none).
pub(crate) struct Watch {
    /// Symbols looked at so far: ids below it were matched already.
    pub(crate) seen: usize,
    pub(crate) patterns: Vec<Watched>,
}

/// One watched pattern and the options its subscribe gave.
pub(crate) struct Watched {
    pub(crate) text: Box<str>,
    pub(crate) pattern: crate::model::Pattern,
    pub(crate) max_hz: Option<f64>,
    pub(crate) trades: bool,
}

/// Placeholder in front of every data frame for its WebSocket header (at
/// most 10 bytes from server to client: no mask).
pub(crate) const HEADER_ROOM: &str = "          ";

/// Writes the header of an unmasked, final text frame into the end of the
/// `HEADER_ROOM` in front of `buf`'s payload (RFC 6455 section 5.2);
/// returns where the frame starts.
pub(crate) fn frame_header(buf: &mut [u8]) -> usize {
    let room = HEADER_ROOM.len();
    let len = buf.len() - room;
    let (start, hdr): (usize, &[u8]) = match len {
        0..=125 => (room - 2, &[0x81, len as u8]),
        126..=0xffff => {
            let l = (len as u16).to_be_bytes();
            (room - 4, &[0x81, 126, l[0], l[1]])
        }
        _ => {
            let l = (len as u64).to_be_bytes();
            (
                room - 10,
                &[0x81, 127, l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]],
            )
        }
    };
    buf[start..room].copy_from_slice(hdr);
    start
}

impl Data {
    /// Adds the frame's trades to the metrics (nothing without any).
    pub(crate) fn count_trades(&self, m: &Metrics) {
        if self.trades > 0 {
            m.trades_out.inc_by(self.trades);
        }
        if self.trades_dropped > 0 {
            m.trades_dropped.inc_by(self.trades_dropped);
        }
    }

    /// Age of the frame's oldest live quote when it was built, in seconds
    /// (`None` without one).
    pub(crate) fn age_secs(&self) -> Option<f64> {
        (self.oldest != i64::MAX)
            .then(|| self.now_wall.saturating_sub(self.oldest).max(0) as f64 / 1e9)
    }
}

/// What [`append_data`] put in a frame.
pub(crate) struct Data {
    /// Quote and status messages.
    pub(crate) n: u64,
    /// Updates skipped over (seq gaps), for `updates_conflated_total`.
    pub(crate) conflated: u64,
    /// gw_ts of the oldest live quote (`i64::MAX` if none).
    pub(crate) oldest: i64,
    /// Earliest time a subscription held back by `max_hz` may go.
    pub(crate) due: Option<Instant>,
    /// The frame is full: more is dirty, to go in the next frame.
    pub(crate) more: bool,
    /// Wall clock when the frame was built, ns.
    pub(crate) now_wall: i64,
    /// Trades in the frame, and trades dropped for the client (each
    /// drop is announced in the frame).
    pub(crate) trades: u64,
    pub(crate) trades_dropped: u64,
}

impl Default for Data {
    /// Nothing: a frame of control replies only has no quote to age.
    fn default() -> Self {
        Data {
            n: 0,
            conflated: 0,
            oldest: i64::MAX,
            due: None,
            more: false,
            now_wall: 0,
            trades: 0,
            trades_dropped: 0,
        }
    }
}

/// Appends the newest value of every dirty subscription in `subs` to
/// `out` (a status message first where the feed's status changed, a
/// snapshot where one is owed), comma-separated, starting where the last
/// full frame stopped (`scan_from`) and stopping at `max` bytes. Used by
/// the session's own frames and by the fan-out's direct writes
/// ([`deliver`]), so both send exactly the same thing.
// The frame's state and the caller's context, passed apart so that both
// callers (the task and a direct write) keep their own borrows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_data(
    cache: &EncodeCache,
    subs: &mut [Sub],
    scan_from: &mut u32,
    out: &mut String,
    mut comma: bool,
    max: usize,
    now: Instant,
    mut memo: Option<&mut Memo>,
) -> Data {
    let mut d = Data {
        now_wall: now_ns(),
        ..Data::default()
    };
    let n = subs.len();
    let start = if (*scan_from as usize) < n {
        *scan_from as usize
    } else {
        0
    };
    *scan_from = 0;
    for k in 0..n {
        let i = (start + k) % n;
        if out.len() >= max {
            // The rest goes in the next frame, starting here.
            d.more = true;
            // `subs` is capped by `max_symbols`, far below 2^32.
            *scan_from = i as u32;
            break;
        }
        let sub = &mut subs[i];
        let st = cache.slots().status(sub.sym);
        if st != sub.status {
            if comma {
                out.push(',');
            }
            encode_status(out, cache.symbols().name(sub.sym), st, d.now_wall);
            sub.status = st;
            comma = true;
            d.n += 1;
        }
        'quote: {
            let seq = cache.slots().seq(sub.sym);
            if seq <= sub.last_seq && !(sub.snapshot && seq > 0) {
                break 'quote;
            }
            if !sub.snapshot {
                if let Some(at) = sub.next_at {
                    if at > now {
                        d.due = Some(d.due.map_or(at, |x: Instant| x.min(at)));
                        break 'quote;
                    }
                }
            }
            if comma {
                out.push(',');
            }
            let was_snapshot = sub.snapshot;
            let sent = if sub.snapshot {
                cache.slots().read(sub.sym).map(|(q, seq)| {
                    encode_quote(out, cache.symbols(), sub.sym, seq, &q, true);
                    (seq, q.gw_ts)
                })
            } else {
                let r = match memo.as_deref_mut() {
                    Some(m) => cache.append_latest_memo(sub.sym, out, m),
                    None => cache.append_latest(sub.sym, out),
                };
                if let Some((seq, _)) = r {
                    if sub.last_seq > 0 && seq > sub.last_seq + 1 {
                        d.conflated += seq - sub.last_seq - 1;
                    }
                }
                r
            };
            match sent {
                Some((seq, gw_ts)) => {
                    sub.last_seq = seq;
                    sub.snapshot = false;
                    if sub.interval_us > 0 {
                        sub.next_at = Some(now + Duration::from_micros(u64::from(sub.interval_us)));
                    }
                    if !was_snapshot {
                        // A snapshot's age is how quiet the symbol is, not how
                        // fast the gateway is.
                        d.oldest = d.oldest.min(gw_ts);
                    }
                    comma = true;
                    d.n += 1;
                }
                None => {
                    // Value vanished between seq and read: cannot happen (slots
                    // never empty), but never emit a dangling comma.
                    if comma && out.ends_with(',') {
                        out.pop();
                    }
                }
            }
        }
        // Then the trades the client is owed, read after the quote: every
        // trade the quote's last reflects is in this frame too (a trade is
        // stored before the quote write it belongs to).
        if sub.trades != Cursor::OFF && !append_trades(cache, sub, out, &mut comma, max, &mut d) {
            // Full in the middle of this symbol's trades: the rest lead
            // the next frame.
            d.more = true;
            *scan_from = i as u32;
            break;
        }
    }
    d
}

/// Appends the trades of `sub`'s symbol the client has not had, oldest
/// first, each after a `trades_dropped` where it fell more than the
/// table's `keep` behind (or the ring moved past a trade meanwhile).
/// Returns false when the frame filled up before the last of them.
fn append_trades(
    cache: &EncodeCache,
    sub: &mut Sub,
    out: &mut String,
    comma: &mut bool,
    max: usize,
    d: &mut Data,
) -> bool {
    let table = cache.slots().trades();
    let Some(mut last) = sub.trades.get() else {
        return true;
    };
    let head = table.head(sub.sym);
    if head <= last {
        return true;
    }
    let name = cache.symbols().name(sub.sym);
    let mut dropped = (head - last).saturating_sub(table.keep());
    last += dropped;
    let mut complete = true;
    while last < head {
        if out.len() >= max {
            complete = false;
            break;
        }
        match table.read(sub.sym, last + 1) {
            Read::Gone => {
                dropped += 1;
                last += 1;
            }
            // Its writer has not finished; it wakes us when it has.
            Read::NotYet => break,
            Read::Trade(t) => {
                if dropped > 0 {
                    comma_then(out, comma);
                    encode_trades_dropped(out, name, dropped);
                    d.trades_dropped += dropped;
                    d.n += 1;
                    dropped = 0;
                }
                comma_then(out, comma);
                encode_trade(out, name, last + 1, &t);
                d.trades += 1;
                d.n += 1;
                last += 1;
            }
        }
    }
    if dropped > 0 {
        // Dropped, and nothing after them yet: say so now all the same.
        comma_then(out, comma);
        encode_trades_dropped(out, name, dropped);
        d.trades_dropped += dropped;
        d.n += 1;
    }
    sub.trades = Cursor::at(last);
    complete
}

fn comma_then(out: &mut String, comma: &mut bool) {
    if *comma {
        out.push(',');
    }
    *comma = true;
}

/// Seconds since `gw_ts` (ns since the epoch), `None` for `i64::MAX`.
pub(crate) fn age_secs(gw_ts: i64) -> Option<f64> {
    (gw_ts != i64::MAX).then(|| now_ns().saturating_sub(gw_ts).max(0) as f64 / 1e9)
}

/// A fan-out slice's frame counts, added to the shared metrics once per
/// slice ([`Tally::flush`]) rather than per frame: a direct frame then
/// costs no atomic for its metrics.
pub(crate) struct Tally {
    frames: u64,
    bytes: u64,
    messages: u64,
    conflated: u64,
    trades: u64,
    trades_dropped: u64,
    /// Sessions found holding for their read window (see `flow.rs`).
    pub(crate) holds: u64,
    /// Data frames that wait for their time (spaced, see `flow.rs`).
    pub(crate) paced: u64,
    /// Sessions found waiting for their client's ack (ack mode).
    pub(crate) ack_holds: u64,
    latency: prometheus::local::LocalHistogram,
    write_age: prometheus::local::LocalHistogram,
}

impl Tally {
    pub(crate) fn new(m: &Metrics) -> Self {
        Tally {
            frames: 0,
            bytes: 0,
            messages: 0,
            conflated: 0,
            trades: 0,
            trades_dropped: 0,
            holds: 0,
            paced: 0,
            ack_holds: 0,
            latency: m.latency.local(),
            write_age: m.write_age.local(),
        }
    }

    pub(crate) fn add(&mut self, out: &str, d: &Data) {
        self.frames += 1;
        self.bytes += (out.len() - HEADER_ROOM.len()) as u64;
        self.messages += d.n;
        self.conflated += d.conflated;
        self.trades += d.trades;
        self.trades_dropped += d.trades_dropped;
        if let Some(age) = d.age_secs() {
            self.latency.observe(age);
        }
    }

    /// A frame the socket took whole, with `oldest` its oldest live
    /// quote's `gw_ts` (`i64::MAX`: none).
    pub(crate) fn written(&mut self, oldest: i64) {
        if let Some(age) = age_secs(oldest) {
            self.write_age.observe(age);
        }
    }

    /// Adds the counts to `m` (every frame counted here was direct).
    pub(crate) fn flush(&mut self, m: &Metrics) {
        if self.frames > 0 {
            m.frames_out.inc_by(self.frames);
            m.frames_direct.inc_by(self.frames);
            m.bytes_out.inc_by(self.bytes);
            m.messages_out.inc_by(self.messages);
            m.conflated.inc_by(self.conflated);
            if self.trades + self.trades_dropped > 0 {
                m.trades_out.inc_by(self.trades);
                m.trades_dropped.inc_by(self.trades_dropped);
            }
            self.latency.flush();
            self.write_age.flush();
        }
        if self.holds > 0 {
            m.read_window_holds.inc_by(self.holds);
            self.holds = 0;
        }
        if self.paced > 0 {
            m.read_window_paced.inc_by(self.paced);
            self.paced = 0;
        }
        if self.ack_holds > 0 {
            m.ack_window_holds.inc_by(self.ack_holds);
            self.ack_holds = 0;
        }
        (self.frames, self.bytes, self.messages, self.conflated) = (0, 0, 0, 0);
        (self.trades, self.trades_dropped) = (0, 0);
    }
}

/// The part of a session the fan-out may use while the session's task
/// sleeps (in the session's handle, which the fan-out holds): a plain-TCP
/// session parks its subscriptions here each time it waits with nothing to
/// write, and a shard pass that finds them parked builds the frame and
/// writes it to the socket itself ([`deliver`]) instead of waking the task,
/// which is most of what a frame costs in user space (wake, schedule, poll,
/// socket layers).
/// Whatever needs the task (a partial write, a full socket, an error, a
/// `max_hz` hold-back, a frame cut at `max_frame_bytes`) is left here and
/// the task is woken; the task takes everything back before it does
/// anything else, so the two never write at once.
#[derive(Default)]
pub(crate) struct Direct {
    /// The socket (plain TCP only; TLS sessions never park).
    pub(crate) tcp: Option<Arc<TcpStream>>,
    pub(crate) parked: bool,
    /// The session's subscriptions while parked (moved, not copied).
    pub(crate) subs: Vec<Sub>,
    pub(crate) scan_from: u32,
    pub(crate) frame_hint: u32,
    /// Frames the fan-out wrote directly (for the session's close log).
    pub(crate) frames: u32,
    /// The session's watched patterns (here, in the heap, rather than in
    /// the task, where every byte is paid per connection).
    pub(crate) watch: Option<Box<Watch>>,
    /// How much the client has left unread (see [`crate::flow`]): here rather
    /// than in the task, which both use (under this lock) and where every
    /// byte is paid per connection.
    pub(crate) window: ReadWindow,
    /// Ack mode: the frames the client has not acknowledged (see
    /// [`crate::flow`]), counted by both writers.
    pub(crate) ack: AckWindow,
    /// What happened while parked, for the task.
    pub(crate) news: News,
}

/// A frame the socket has not taken whole yet: its bytes, how many are
/// written, and its oldest live quote's `gw_ts` (`i64::MAX`: none), for
/// the write-age histogram once the rest is out.
pub(crate) struct Unsent {
    pub(crate) bytes: Vec<u8>,
    pub(crate) at: usize,
    pub(crate) oldest: i64,
}

/// What the fan-out did while a session was parked.
#[derive(Default)]
pub(crate) struct News {
    /// When the last direct frame went (heartbeats are due after it).
    pub(crate) wrote_at: Option<Instant>,
    /// The rest of a frame the socket did not take (bytes, how many are
    /// written): the task finishes it before anything else.
    pub(crate) leftover: Option<Box<Unsent>>,
    /// The socket failed.
    pub(crate) failed: bool,
    /// A `max_hz` hold-back: wake for it then.
    pub(crate) due: Option<Instant>,
    /// A frame was cut at `max_frame_bytes`: more to send.
    pub(crate) more: bool,
}

impl News {
    /// Whether the task must act on this (not just note the time).
    pub(crate) fn needs_task(&self) -> bool {
        self.leftover.is_some() || self.failed || self.due.is_some() || self.more
    }

    fn verdict(&self) -> Delivery {
        if self.needs_task() {
            Delivery::Wake
        } else {
            Delivery::Done
        }
    }
}

/// What a direct write did (see [`deliver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Written, or nothing to write, or held by a full read window (the
    /// client's Pong wakes the task).
    Done,
    /// The task must run: not parked (busy, or TLS), or something only it
    /// can handle happened. The caller wakes it.
    Wake,
    /// The client's read lag spaces its frames and the next may go at
    /// this time: the caller comes back then (the shard's pace list), so
    /// a spaced frame costs no task wake-up either.
    PaceAt(Instant),
}

/// The fan-out's direct write (see [`Direct`]): if the session is parked,
/// builds its frame into `buf` (a scratch buffer the shard reuses) and
/// writes it to the socket without waking the task. `pass_at`: when the
/// shard's pass began (a session served twice in one pass, as a dirty
/// symbol's holder and from the pace list, is spaced only by its next
/// pass).
pub(crate) fn deliver(
    cache: &EncodeCache,
    max_frame_bytes: usize,
    direct: &Mutex<Direct>,
    buf: &mut String,
    tally: &mut Tally,
    memo: &mut Memo,
    pass_at: Instant,
) -> Delivery {
    // A session busy taking its state back is simply woken.
    let Some(mut g) = direct.try_lock() else {
        return Delivery::Wake;
    };
    let d = &mut *g;
    if !d.parked || d.news.needs_task() {
        return Delivery::Wake;
    }
    // Field by field: the socket is borrowed while the rest is updated.
    let Direct {
        tcp: Some(tcp),
        subs,
        scan_from,
        frame_hint,
        frames,
        window,
        ack,
        news,
        ..
    } = d
    else {
        return Delivery::Wake;
    };
    // The client has a full window unread: the slots coalesce until its
    // Pong wakes the task (which then writes the newest values). Or its lag
    // spaces its frames: the shard comes back when the next may go.
    let now = Instant::now();
    match window.gate(now) {
        Gate::Open => {}
        Gate::Held => return Delivery::Done,
        Gate::HeldNow => {
            tally.holds += 1;
            return Delivery::Done;
        }
        Gate::Paced(_, _) if news.wrote_at.is_some_and(|w| w >= pass_at) => return Delivery::Done,
        Gate::Paced(at, first) => {
            tally.paced += u64::from(first);
            return Delivery::PaceAt(at);
        }
    }
    // Ack mode: the client's ack wakes the task, which then writes the
    // newest values.
    if let Err(first) = ack.gate(now) {
        tally.ack_holds += u64::from(first);
        return Delivery::Done;
    }
    buf.clear();
    buf.push_str(HEADER_ROOM);
    buf.push('[');
    let max = max_frame_bytes;
    let data = append_data(cache, subs, scan_from, buf, false, max, now, Some(memo));
    if let Some(due) = data.due {
        news.due = Some(news.due.map_or(due, |x| x.min(due)));
    }
    news.more |= data.more;
    if data.n == 0 {
        return news.verdict();
    }
    buf.push(']');
    *frame_hint = buf.len().clamp(256, max + 64) as u32;
    tally.add(buf, &data);
    let mut bytes = std::mem::take(buf).into_bytes();
    let start = frame_header(&mut bytes);
    if let Some(probe) = window.wrote(bytes.len() - start, now) {
        bytes.extend_from_slice(&probe);
    }
    ack.sent_frame();
    *frames = frames.wrapping_add(1);
    news.wrote_at = Some(now);
    match tcp.try_write(&bytes[start..]) {
        Ok(n) if start + n == bytes.len() => {
            tally.written(data.oldest);
            // Keep the buffer for the next session: emptied, it is valid
            // UTF-8 whatever it held.
            bytes.clear();
            *buf = String::from_utf8(bytes).unwrap_or_default();
        }
        Ok(n) => {
            let (at, oldest) = (start + n, data.oldest);
            news.leftover = Some(Box::new(Unsent { bytes, at, oldest }));
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let (at, oldest) = (start, data.oldest);
            news.leftover = Some(Box::new(Unsent { bytes, at, oldest }));
        }
        Err(_) => news.failed = true,
    }
    news.verdict()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_matches_rfc6455_lengths() {
        for (len, hdr) in [
            (0usize, vec![0x81u8, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut buf = HEADER_ROOM.as_bytes().to_vec();
            buf.resize(HEADER_ROOM.len() + len, b'x');
            let start = frame_header(&mut buf);
            assert_eq!(&buf[start..HEADER_ROOM.len()], &hdr[..], "len {len}");
            assert_eq!(buf.len() - start, hdr.len() + len);
        }
    }
}
