//! The session's loop: one `poll_fn` over the shutdown signal, the
//! fan-out's wake, the socket both ways and one timer; liveness (Pings,
//! idle and slow-consumer deadlines) and the close.

use super::{Exit, Session};
use crate::flow;
use crate::model::now_ns;
use crate::outbox::{age_secs, Unsent};
use crate::protocol::{Control, Disconnect};
use futures_util::{SinkExt, StreamExt};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Writes `buf[*at..]` to `s`, advancing `at`, then flushes (a TLS stream
/// holds records until then). `Pending` leaves `at` where the socket
/// stopped taking bytes.
fn poll_write_all<S: AsyncWrite + Unpin>(
    s: &mut S,
    cx: &mut Context<'_>,
    buf: &[u8],
    at: &mut usize,
) -> Poll<std::io::Result<()>> {
    while *at < buf.len() {
        match Pin::new(&mut *s).poll_write(cx, &buf[*at..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => *at += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(s).poll_flush(cx)
}

/// How long a probe that keeps the read window full goes unanswered before
/// a Ping asks again (see [`Session::plan`]).
const PROBE_RETRY: Duration = Duration::from_secs(1);

/// A session whose deadline passed (the client's silence, an unread read
/// window) as its task ran is closed only after this long more of reading
/// as usual: a last call for what the client sent while the task was late
/// (a stalled, overloaded server) and the runtime has not handed it yet.
const FINAL_CALL: Duration = Duration::from_millis(250);

/// The serve loop's timekeeping.
struct Clock {
    /// Last frame of any kind from the client.
    last_rx: Instant,
    /// Last WebSocket Ping sent.
    last_ping: Instant,
    /// How long after the client's last frame the first Ping since was
    /// owed, in ms (0: none yet): the client's time to answer runs from
    /// there. Milliseconds in a `u32`, so that `Clock` (in every session's
    /// future) does not grow.
    asked_ms: u32,
    /// A deadline has passed: the last call ([`FINAL_CALL`]) runs on the
    /// loop's timer.
    final_call: bool,
    /// When the frame in flight was handed to the sink.
    write_started: Instant,
    /// A Ping is owed.
    ping_due: bool,
    /// A frame is in flight: the sink is being flushed.
    flushing: bool,
}

/// What the next wait is for (see [`Session::arm`]).
#[derive(Clone, Copy)]
struct Want {
    /// Something to write: a frame in flight, replies, data, a Ping.
    write: bool,
    /// Data may go (the client's read window is not full).
    data_open: bool,
    /// A last call: the read goes first.
    read_first: bool,
}

/// What woke the session.
enum Io {
    Shutdown,
    /// The fan-out left something for the task (see [`News`]).
    Direct,
    /// The rest of a frame written straight to the socket is out.
    RawDone(std::io::Result<()>),
    /// The sink finished flushing, or can take the next frame.
    Write(Result<(), WsError>),
    /// An inbound WebSocket event.
    Read(Option<Result<Message, WsError>>),
    /// The deadline from [`Session::plan`] (or an earlier one) passed.
    Timer,
    /// A shard's wake while data may not go: taken as dirty data, so that
    /// the next plan arms the timer for a spaced frame (a wake that
    /// waited for the socket instead would sleep until the heartbeat, as
    /// a pending wake is not signalled again).
    Woke,
}

impl Session {
    /// Where the loop stands before it waits: `Err` ends the session; else
    /// when the timer branch must wake, whether there is anything to
    /// write, whether data may go (the client's read window is not full),
    /// and the close a passed deadline calls for (after the last call). A
    /// plain function, so that its temporaries (and the borrows the
    /// comparisons take) do not become part of `serve`'s future.
    fn plan(&mut self, c: &mut Clock) -> Result<(Instant, bool, bool, Option<Exit>), Exit> {
        let now = Instant::now();
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
            self.dirty = true;
        }
        // Dirty data waits while the client's read window is full (its
        // Pong wakes the task), its frames are spaced (the timer does) or,
        // in ack mode, its frames are unacknowledged (its ack does).
        // Without dirty data only look: a hold is counted when data waits.
        let open = if !self.flow_on() && !self.acking {
            true
        } else if self.dirty {
            self.data_gate()
        } else {
            let d = self.handle.direct.lock();
            (!self.flow_on() || d.window.would_open(now)) && d.ack.is_open()
        };
        let data = self.dirty && open;
        // Since when the client has kept data waiting: its read window
        // full (its probe unanswered), or its acks not coming.
        let (stalled, ack_stalled) = if open {
            (None, None)
        } else {
            let d = self.handle.direct.lock();
            (d.window.stalled_since(), d.ack.held_since())
        };
        let cfg = &self.ctx.config;
        // A client that reads or acks nothing keeps its window full: a
        // slow consumer after `slow_consumer_ms`, as with a full socket.
        let slow = Duration::from_millis(cfg.slow_consumer_ms);
        let held_since = match (stalled, ack_stalled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut overdue = held_since
            .is_some_and(|t| now >= t + slow)
            .then_some(Exit::Close(&Disconnect::SLOW_READ));
        if self.control.len() > cfg.max_pending_control {
            return Err(Exit::Close(&Disconnect::SLOW_REPLIES));
        }
        // Liveness: a WebSocket Ping after `ping_interval_ms` of client
        // silence, close 1008 after `idle_timeout_ms` without any frame.
        let ping_every = Duration::from_millis(cfg.ping_interval_ms);
        let mut ping_at = c.last_ping.max(c.last_rx) + ping_every;
        // A full window whose probe got no answer: ask again (with the
        // probe's mark) every second, as a client may have missed it, and
        // a client that answers nothing is closed at `slow_consumer_ms`.
        if let Some(t) = stalled {
            ping_at = ping_at.min(t.max(c.last_ping) + PROBE_RETRY);
        }
        if !c.ping_due && now >= ping_at {
            c.ping_due = true;
            c.last_ping = now;
            ping_at = now + ping_every;
        }
        // (Also a probe's Ping, owed since a Pong: from here.)
        if c.ping_due && c.asked_ms == 0 {
            let after = now.saturating_duration_since(c.last_rx).as_millis();
            c.asked_ms = u32::try_from(after).unwrap_or(u32::MAX).max(1);
        }
        // ... and only once the client has had its time to answer the
        // Ping (`idle_timeout_ms - ping_interval_ms`): a Ping that went
        // late because the server was late (a stalled, overloaded
        // process) does not shorten that time.
        let idle = Duration::from_millis(cfg.idle_timeout_ms);
        let mut idle_at = c.last_rx + idle;
        if c.asked_ms > 0 {
            let asked = c.last_rx + Duration::from_millis(u64::from(c.asked_ms));
            idle_at = idle_at.max(asked + idle.saturating_sub(ping_every));
        }
        if now >= idle_at && overdue.is_none() {
            overdue = Some(Exit::Close(&Disconnect::IDLE));
        }
        let want_write = c.flushing || !self.control.is_empty() || data || c.ping_due;
        let timer = if c.flushing {
            c.write_started + slow
        } else {
            let hb = self.last_write + Duration::from_millis(cfg.heartbeat_ms);
            let t = self.due.map_or(hb, |d| d.min(hb));
            held_since.map_or(t, |s| t.min(s + slow))
        };
        // A Ping already owed waits for the socket, not for the clock.
        let ping_wake = if c.ping_due { idle_at } else { ping_at };
        Ok((timer.min(idle_at).min(ping_wake), want_write, open, overdue))
    }

    /// The main loop. Returns how the session ends.
    ///
    /// Its locals are part of every session's task, so it keeps few: the
    /// timer arithmetic is in [`Session::plan`], durations are read from
    /// the config when needed instead of copied, and the socket is polled
    /// both ways from one `poll_fn` ([`Session::poll_io`]; no `split()`
    /// and its lock).
    ///
    /// Per frame it does as little as it can: the shutdown future and the
    /// timer live across iterations (the timer is re-armed only when its
    /// deadline moves earlier or it has fired; firing early is harmless,
    /// [`Session::on_timer`] re-checks), a shard's wake is a flag read in
    /// the same poll as the socket, and a frame is flushed in the iteration
    /// that built it, so a woken session with a writable socket builds,
    /// writes and goes back to sleep in one pass.
    pub(super) async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let start = Instant::now();
        let mut c = Clock {
            last_rx: start,
            last_ping: start,
            asked_ms: 0,
            final_call: false,
            write_started: start,
            ping_due: false,
            flushing: false,
        };
        let mut shutdown = self.ctx.shutdown.subscribe();
        let shutdown = shutdown.wait();
        tokio::pin!(shutdown);
        let first = match self.plan(&mut c) {
            Ok((first, ..)) => first,
            Err(exit) => return exit,
        };
        let sleep = tokio::time::sleep_until(first);
        tokio::pin!(sleep);
        loop {
            let want = match self.arm(&mut c, sleep.as_mut()) {
                Ok(want) => want,
                Err(exit) => return exit,
            };
            // One reference to the session in the closure, not one per
            // field: the closure is part of every session's task.
            let s = &mut *self;
            let (io, woke) =
                poll_fn(|cx| s.poll_io(cx, ws, shutdown.as_mut(), sleep.as_mut(), want)).await;
            if woke {
                self.dirty = true;
                if self.handle.take_grown() {
                    self.adopt_new_symbols();
                }
            }
            let done = match io {
                Io::Direct => self.on_direct(&mut c),
                Io::Shutdown => Err(Exit::Close(&Disconnect::SHUTDOWN)),
                Io::Woke => Ok(()),
                Io::Timer => {
                    // A write was wanted and the timer came first: the sink
                    // could not be flushed (tungstenite holds unwritten
                    // bytes, a Pong it answered, and the socket is full).
                    // That is a write in flight: bounded by
                    // `slow_consumer_ms`, and no past heartbeat time to
                    // spin on.
                    if want.write && !c.flushing {
                        c.flushing = true;
                        c.write_started = Instant::now();
                    }
                    self.on_timer(&c)
                }
                Io::Write(Err(_)) | Io::RawDone(Err(_)) => Err(Exit::Gone),
                Io::RawDone(Ok(())) => {
                    if let Some(done) = self.raw_out.take() {
                        self.written(done.oldest);
                    }
                    c.flushing = false;
                    Ok(())
                }
                Io::Write(Ok(())) if c.flushing => {
                    c.flushing = false;
                    Ok(())
                }
                Io::Write(Ok(())) if c.ping_due => {
                    if let Err(exit) = self.start_ping(ws, &mut c) {
                        return exit;
                    }
                    match poll_fn(|cx| Poll::Ready(ws.poll_flush_unpin(cx))).await {
                        Poll::Ready(Ok(())) => Ok(()),
                        Poll::Ready(Err(_)) => Err(Exit::Gone),
                        Poll::Pending => {
                            c.flushing = true;
                            Ok(())
                        }
                    }
                }
                Io::Write(Ok(())) => {
                    let Some((bytes, mut at, oldest)) = self.next_frame(&mut c) else {
                        continue;
                    };
                    let sent = poll_fn(|cx| {
                        Poll::Ready(poll_write_all(ws.get_mut(), cx, &bytes, &mut at))
                    })
                    .await;
                    match sent {
                        Poll::Ready(Ok(())) => {
                            self.written(oldest);
                            Ok(())
                        }
                        Poll::Ready(Err(_)) => Err(Exit::Gone),
                        // What the socket does not take is finished before
                        // anything else (`raw_out`).
                        Poll::Pending => {
                            self.raw_out = Some(Box::new(Unsent { bytes, at, oldest }));
                            c.flushing = true;
                            Ok(())
                        }
                    }
                }
                Io::Read(msg) => self.on_read(&mut c, msg).map_or(Ok(()), Err),
            };
            if let Err(exit) = done {
                return exit;
            }
        }
    }

    /// Plans the next wait: the deadlines ([`Session::plan`]), the last
    /// call once one has passed, and the timer. `Err` ends the session.
    fn arm(&mut self, c: &mut Clock, mut sleep: Pin<&mut Sleep>) -> Result<Want, Exit> {
        let (timer, write, data_open, overdue) = self.plan(c)?;
        match overdue {
            // A deadline has passed as this task runs. The session ends
            // after the last call: reading as usual, with this task's
            // waker, for what the client sent while the task was late.
            // A frame that answers the deadline ends the last call.
            Some(exit) if c.final_call => {
                if sleep.is_elapsed() {
                    return Err(exit);
                }
            }
            Some(_) => {
                c.final_call = true;
                sleep.as_mut().reset(Instant::now() + FINAL_CALL);
            }
            None => c.final_call = false,
        }
        // (During the last call the timer is its end.)
        if !c.final_call && (timer < sleep.deadline() || sleep.is_elapsed()) {
            sleep.as_mut().reset(timer);
        }
        Ok(Want {
            write,
            data_open,
            // During a last call the read goes first (not past a frame
            // half written: a read can make tungstenite write a Pong).
            read_first: c.final_call && self.raw_out.is_none(),
        })
    }

    /// One poll of everything the session waits on, in priority order:
    /// what happened, and whether a shard's wake is pending.
    fn poll_io<S>(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocketStream<S>,
        shutdown: Pin<&mut impl Future<Output = ()>>,
        mut sleep: Pin<&mut Sleep>,
        want: Want,
    ) -> Poll<(Io, bool)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Take back what the fan-out held while this task slept; anything
        // it could not finish is the task's now.
        if self.unpark() {
            return Poll::Ready((Io::Direct, false));
        }
        if shutdown.poll(cx).is_ready() {
            return Poll::Ready((Io::Shutdown, false));
        }
        let woke = self.handle.poll_woken(cx);
        if want.read_first {
            if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                return Poll::Ready((Io::Read(m), woke));
            }
        }
        if woke && !want.data_open && !self.dirty {
            return Poll::Ready((Io::Woke, true));
        }
        if let Some(r) = self.raw_out.as_deref_mut() {
            // Finish the frame in flight before anything else.
            if let Poll::Ready(res) = poll_write_all(ws.get_mut(), cx, &r.bytes, &mut r.at) {
                return Poll::Ready((Io::RawDone(res), woke));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready((Io::Timer, woke));
            }
            return Poll::Pending;
        }
        // Writing first: flushing the frame in flight, or waiting until the
        // sink can take the next one (only when there is something to
        // send). A shard's wake is data: while the read window is full it
        // waits, and the socket is read (the Pong that opens it must not
        // starve behind wakes).
        if want.write || (woke && want.data_open) {
            // A flush, not `poll_ready`: tungstenite may hold the unwritten
            // rest of a Pong it answered while reading, and a frame written
            // raw must not land inside it.
            if let Poll::Ready(r) = ws.poll_flush_unpin(cx) {
                return Poll::Ready((Io::Write(r), woke));
            }
        }
        if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
            return Poll::Ready((Io::Read(m), woke));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready((Io::Timer, woke));
        }
        // Nothing to write and nothing pending: let the fan-out write this
        // session's frames itself until it wakes (once tungstenite holds no
        // unwritten bytes, so nothing can interleave).
        if !want.write && !woke {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.park(),
                Poll::Ready(Err(e)) => return Poll::Ready((Io::Write(Err(e)), woke)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// What the fan-out left while the task slept: a failed socket ends
    /// the session, the unwritten rest of its frame is finished first.
    fn on_direct(&mut self, c: &mut Clock) -> Result<(), Exit> {
        let news = std::mem::take(&mut self.handle.direct.lock().news);
        if news.failed {
            return Err(Exit::Gone);
        }
        if let Some(left) = news.leftover {
            // The fan-out's frame did not all go: finish it first, as a
            // frame of our own.
            self.raw_out = Some(left);
            c.flushing = true;
            c.write_started = Instant::now();
        }
        if let Some(d) = news.due {
            self.due = Some(self.due.map_or(d, |x| x.min(d)));
        }
        if news.more {
            self.dirty = true;
        }
        Ok(())
    }

    /// Queues a WebSocket Ping in tungstenite (its sink is flushed:
    /// `poll_flush` was ready); the caller flushes it. With a probe in
    /// flight it repeats the probe's mark (a client may answer only its
    /// latest Ping).
    fn start_ping<S>(&mut self, ws: &mut WebSocketStream<S>, c: &mut Clock) -> Result<(), Exit>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        c.ping_due = false;
        let payload = self.handle.direct.lock().window.keepalive_payload();
        if ws.start_send_unpin(Message::Ping(payload.into())).is_err() {
            return Err(Exit::Gone);
        }
        c.write_started = Instant::now();
        Ok(())
    }

    /// The next frame with its header, and where it starts, if there is
    /// anything to send: it goes straight to the socket, header and
    /// payload in one write (`poll_flush` was ready, so tungstenite holds
    /// no unwritten bytes), with a probe behind it when the read window
    /// wants one.
    fn next_frame(&mut self, c: &mut Clock) -> Option<(Vec<u8>, usize, i64)> {
        let (mut frame, at, oldest) = self.build_frame()?;
        c.write_started = Instant::now();
        let probe = self.flow_on().then(|| {
            self.handle
                .direct
                .lock()
                .window
                .wrote(frame.len() - at, c.write_started)
        });
        if let Some(Some(probe)) = probe {
            frame.extend_from_slice(&probe);
        }
        self.last_write = c.write_started;
        Some((frame, at, oldest))
    }

    /// A frame the socket has taken whole: its oldest live quote's age
    /// goes into the write-age histogram.
    fn written(&self, oldest: i64) {
        if let Some(age) = age_secs(oldest) {
            self.ctx.metrics.write_age.observe(age);
        }
    }

    /// A frame from the client, of any kind, or its end; `Some` ends the
    /// session.
    fn on_read(&mut self, c: &mut Clock, msg: Option<Result<Message, WsError>>) -> Option<Exit> {
        c.last_rx = Instant::now();
        c.asked_ms = 0;
        if let Some(Ok(Message::Pong(p))) = &msg {
            let limits = self.cfg().read_window();
            let pong = self.handle.direct.lock().window.pong(p, c.last_rx, limits);
            match pong {
                flow::Pong::Ignored | flow::Pong::Acked => {}
                // Whatever was held goes now, newest values.
                flow::Pong::Opened => self.dirty = true,
                flow::Pong::Probe => c.ping_due = true,
            }
            return None;
        }
        self.on_message(msg)
    }

    /// The timer branch: a frame stuck for `slow_consumer_ms` ends the
    /// session (4008); `heartbeat_ms` without a frame queues a heartbeat.
    fn on_timer(&mut self, c: &Clock) -> Result<(), Exit> {
        let cfg = &self.ctx.config;
        if c.flushing {
            if c.write_started.elapsed() >= Duration::from_millis(cfg.slow_consumer_ms) {
                return Err(Exit::Close(&Disconnect::SLOW_WRITE));
            }
        } else if self.last_write.elapsed() >= Duration::from_millis(cfg.heartbeat_ms)
            && self.control.is_empty()
        {
            self.push(Control::Heartbeat { ts: now_ns() });
        }
        Ok(())
    }

    /// Sends a close frame and gives it `close_grace_ms` to leave (after
    /// the rest of a frame in flight, which must not be cut) and the
    /// client to answer it.
    pub(super) async fn finish<S>(&mut self, tx: &mut WebSocketStream<S>, d: &Disconnect)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let grace = Duration::from_millis(self.ctx.config.close_grace_ms);
        if let Some(mut r) = self.raw_out.take() {
            let (buf, at) = (&r.bytes, &mut r.at);
            let done = poll_fn(|cx| poll_write_all(tx.get_mut(), cx, buf, at));
            if !matches!(tokio::time::timeout(grace, done).await, Ok(Ok(()))) {
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(d.code),
            reason: d.reason.into(),
        };
        let pending: Vec<String> = self.control.take_all();
        let _ = tokio::time::timeout(grace, async {
            if !pending.is_empty() {
                let text = format!("[{}]", pending.join(","));
                if tx.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            if tx.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // Read until the client's close or EOF (within the grace):
            // closing the socket with client bytes unread (a Pong to a
            // probe, an op in flight) makes the kernel reset the
            // connection, and a reset can discard the close frame before
            // the client has read it.
            while let Some(Ok(m)) = tx.next().await {
                if m.is_close() {
                    return;
                }
            }
            // No close came back: after an error (a frame too big, bad
            // UTF-8) tungstenite reads no further, so the rest of what the
            // client sent is discarded as raw bytes, up to its EOF.
            // On the heap: an array here would sit in every session's future.
            let mut scratch = vec![0u8; 4096];
            while let Ok(1..) = tx.get_mut().read(&mut scratch).await {}
        })
        .await;
    }
}
