//! One WebSocket client: ops in, batched frames out, in a single task.
//!
//! The socket is read and written from one branch of one `select!` (no
//! `split()`), so a session costs one task, and that task is most of what an
//! idle connection costs: its size is kept down on purpose (see the size
//! test at the bottom). A frame is built only at the moment the socket
//! can take one, from the newest slot values: while the client is slow,
//! updates simply wait in the slots (the dirty state is each subscription's
//! last sent seq, bounded by the subscription count). Control replies wait
//! in a small bounded queue and always go out first in the next frame, so
//! they are never stuck behind data. A socket that accepts nothing for
//! `slow_consumer_ms` is closed with 4008.

use crate::auth::{AuthError, Entitlement, KeyConnGuard};
use crate::fanout::{Fanout, SessionHandle};
use crate::flow::{self, Gate, ReadWindow};
use crate::gateway::Shared;
use crate::limits::{IpAtLimit, IpSessionGuard, OpLimiter};
use crate::model::{now_ns, Status, SymbolId};
use crate::protocol::{
    close, encode_quote, encode_status, parse_op, Control, ErrorCode, Limits, Op, OpError, OpId,
    PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// One subscription of a session: 40 bytes, since a session holds one per
/// symbol for its whole life.
struct Sub {
    sym: SymbolId,
    /// Minimum gap between two updates in microseconds (from `max_hz`),
    /// zero for none. Saturates at `u32::MAX` (~71 minutes).
    interval_us: u32,
    /// Seq of the last quote sent; the subscription is dirty while the
    /// slot's seq is higher.
    last_seq: u64,
    /// Earliest time the next update may go (with `interval_us`).
    next_at: Option<Instant>,
    /// A snapshot is owed (sent with `"snapshot":true`).
    snapshot: bool,
    /// Last status the client was told.
    status: Status,
}

// A session holds one `Sub` per symbol for its life.
const _: () = assert!(std::mem::size_of::<Sub>() <= 40);

/// `max_hz` as [`Sub::interval_us`]. Never panics: a tiny rate saturates
/// (a float-to-int `as` cast does), which also keeps `now + interval` far
/// from overflowing.
fn interval_us(hz: Option<f64>) -> u32 {
    hz.map_or(0, |h| (1e6 / h) as u32)
}

/// How a session is admitted.
pub struct Admission {
    /// Held for the session's life; `None` means the server is full and the
    /// session is closed with 1013 at once.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The session's place among its address's
    /// (`server.max_connections_per_ip`): `Ok(None)` without a cap, `Err`
    /// when the address is at it (closed with 1013 at once).
    pub per_ip: Result<Option<Box<IpSessionGuard>>, IpAtLimit>,
    /// The token that came with the upgrade request, checked: `None` when
    /// none came (or auth is off).
    pub token: Option<Result<Arc<Entitlement>, AuthError>>,
}

enum Exit {
    /// Close with this code and reason, counted in `disconnects_total`.
    Close(u16, &'static str),
    /// The connection is gone (reset, EOF, I/O error); nothing more to send.
    Gone,
    /// The client sent a close frame: answer it (RFC 6455 5.5.1).
    PeerClosed,
}

/// Everything a session keeps for its life. It lives inside the session's
/// task, so every byte here is paid per connection.
struct Session {
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    /// Sorted by symbol; sized exactly (`reserve_exact`).
    subs: Vec<Sub>,
    /// Control replies not yet sent; its buffer is released once drained.
    control: ControlQueue,
    /// The connection permit (`server.max_connections`), held for the
    /// session's life; `None` when the server was full.
    permit: Option<OwnedSemaphorePermit>,
    /// Its address's count (`server.max_connections_per_ip`), held for the
    /// session's life; `None` without a cap or when the address was full.
    per_ip: Option<Box<IpSessionGuard>>,
    authed: bool,
    /// What the session's key may see; `None` while unauthenticated or
    /// with auth off (then everything).
    entitlement: Option<Arc<Entitlement>>,
    /// One of the key's `max_connections`, held for the session's life.
    /// Boxed: only keys with `max_connections` have one, and unboxed it
    /// would make every session's task 24 bytes larger.
    key_conn: Option<Box<KeyConnGuard>>,
    /// `session.max_symbols`, lowered by the key's `max_symbols` (u32:
    /// every byte here is in every session's task).
    max_symbols: u32,
    limiter: OpLimiter,
    /// The rest of a data frame the socket did not take at once (bytes,
    /// how many are written). While it is here nothing else is written and
    /// nothing is read (a read could make tungstenite write a pong into the
    /// middle of it).
    raw_out: Option<Box<(Vec<u8>, usize)>>,
    /// Something may be dirty (woken by a shard, or a subscription changed).
    dirty: bool,
    /// Capacity for the next frame: the size of the last one.
    frame_hint: u32,
    /// Earliest `next_at` of a subscription held back by `max_hz`.
    due: Option<Instant>,
    /// Where the next scan starts: a frame cut at `max_frame_bytes` resumes
    /// after the last subscription it carried, so no symbol starves.
    scan_from: u32,
    /// Last data or control frame, also one the fan-out wrote directly
    /// (heartbeats are due after it).
    last_write: Instant,
}

/// The session of one upgraded WebSocket, as a future that runs it to its
/// end (spawn it as its own task).
///
/// Not an `async fn`: an `async fn` keeps its arguments in its future for
/// its whole life, next to whatever they are moved into. Here everything
/// that need not live across an await is done before the future exists,
/// and the future holds the stream and the session once each (see the
/// size test below).
///
/// `tcp`: the plain TCP socket under `ws` (a [`PlainTcp`]), which lets the
/// fan-out write frames itself while the task sleeps; `None` for TLS.
pub fn run<S>(
    mut ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    adm: Admission,
    tcp: Option<Arc<TcpStream>>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = shared.next_session_id();
    let cfg = &shared.config.session;
    let mut s = Session {
        limiter: OpLimiter::new(cfg),
        handle: Arc::new(SessionHandle::new(id)),
        subs: Vec::new(),
        control: ControlQueue(None),
        permit: adm.permit,
        per_ip: None,
        authed: !shared.auth.enabled(),
        entitlement: None,
        key_conn: None,
        max_symbols: clamp_u32(cfg.max_symbols),
        raw_out: None,
        dirty: false,
        frame_hint: 256,
        due: None,
        scan_from: 0,
        last_write: Instant::now(),
        shared,
    };
    {
        let mut d = lock_direct(&s.handle);
        d.tcp = tcp;
        d.window = ReadWindow::new(flow::Limits::from_config(&s.shared.config.session));
    }
    let m = &s.shared.metrics;
    m.connections.inc();
    // `Gone` here means: admitted, serve it.
    let first = if let Err(IpAtLimit) = adm.per_ip.map(|g| s.per_ip = g) {
        m.connections_rejected.inc();
        m.ip_sessions_full.inc();
        Exit::Close(
            close::OVERLOADED,
            "too many connections from this address, try again later",
        )
    } else if s.permit.is_none() {
        m.connections_rejected.inc();
        Exit::Close(close::OVERLOADED, "server full, try again later")
    } else if let Some(exit) = s.admit_token(adm.token) {
        exit
    } else {
        s.shared.metrics.connections_opened.inc();
        s.push(Control::Welcome {
            protocol: PROTOCOL_VERSION,
            session: &format!("{id:016x}"),
            heartbeat_ms: s.shared.config.session.heartbeat_ms,
            limits: s.limits(),
            auth_required: !s.authed,
        });
        Exit::Gone
    };
    async move {
        let exit = match first {
            Exit::Gone => s.serve(&mut ws).await,
            other => other,
        };
        match exit {
            Exit::Close(code, reason) => {
                s.shared.metrics.closed(code);
                s.finish(&mut ws, code, reason).await;
            }
            Exit::PeerClosed => {
                // tungstenite queued the close reply when it read the
                // client's close; flushing sends it and completes the
                // handshake.
                let grace = Duration::from_millis(s.cfg().close_grace_ms);
                let _ = tokio::time::timeout(grace, SinkExt::close(&mut ws)).await;
            }
            Exit::Gone => {}
        }
        s.drop_subs();
        // A shard may still hold this handle for a while (a pass's targets,
        // a pace list): drop the socket and buffers it could reach, so the
        // connection closes with the task and nothing more is written.
        *lock_direct(&s.handle) = Direct::default();
        // The key's connection is free before the session stops counting.
        drop(s.key_conn.take());
        drop(s.per_ip.take());
        // The slot is free before the gauge says so: a client that waits
        // for the gauge to fall is admitted.
        drop(s.permit.take());
        s.shared.metrics.connections.dec();
    }
}

/// Control replies waiting for the next frame. Boxed and absent while
/// empty: an idle session holds 8 bytes for it, not a 32-byte `VecDeque`.
// The box is the point: it keeps the inline size at 8 bytes.
#[allow(clippy::box_collection)]
struct ControlQueue(Option<Box<VecDeque<String>>>);

impl ControlQueue {
    fn push_back(&mut self, msg: String) {
        self.0.get_or_insert_with(Default::default).push_back(msg);
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn front(&self) -> Option<&String> {
        self.0.as_ref().and_then(|q| q.front())
    }

    fn pop_front(&mut self) -> Option<String> {
        self.0.as_mut().and_then(|q| q.pop_front())
    }

    fn take_all(&mut self) -> Vec<String> {
        self.0
            .take()
            .map(|q| q.into_iter().collect())
            .unwrap_or_default()
    }

    fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

/// A count that fits u32 in practice (symbol limits), saturated if not.
fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Placeholder in front of every data frame for its WebSocket header (at
/// most 10 bytes from server to client: no mask).
const HEADER_ROOM: &str = "          ";

/// Writes the header of an unmasked, final text frame into the end of the
/// `HEADER_ROOM` in front of `buf`'s payload (RFC 6455 section 5.2);
/// returns where the frame starts.
fn frame_header(buf: &mut [u8]) -> usize {
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

/// Writes `buf[*at..]` to `s`, advancing `at`, then flushes (a TLS stream
/// holds records until then). `Pending` leaves `at` where the socket
/// stopped taking bytes.
fn poll_write_all<S: AsyncWrite + Unpin>(
    s: &mut S,
    cx: &mut std::task::Context<'_>,
    buf: &[u8],
    at: &mut usize,
) -> Poll<std::io::Result<()>> {
    use std::pin::Pin;
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
    fn cfg(&self) -> &crate::config::SessionConfig {
        &self.shared.config.session
    }

    fn push(&mut self, msg: Control) {
        self.control.push_back(msg.to_json());
    }

    fn error(&mut self, id: Option<OpId>, code: ErrorCode, message: &str, symbol: Option<&str>) {
        self.shared.metrics.error(code);
        self.push(Control::Error {
            id,
            code,
            message,
            symbol,
        });
    }

    /// The limits announced in `welcome` and `authenticated`.
    fn limits(&self) -> Limits {
        let cfg = &self.shared.config.session;
        Limits {
            max_symbols: self.max_symbols as usize,
            max_msgs_per_sec: cfg.max_msgs_per_sec,
            max_message_bytes: cfg.max_message_bytes,
        }
    }

    /// A token from the upgrade request. `Some` closes the session.
    fn admit_token(&mut self, token: Option<Result<Arc<Entitlement>, AuthError>>) -> Option<Exit> {
        if !self.shared.auth.enabled() {
            return None;
        }
        match token? {
            Ok(ent) => self.authenticate(None, ent).err(),
            Err(e) => Some(self.refuse_token(None, e)),
        }
    }

    fn refuse_token(&mut self, id: Option<OpId>, e: AuthError) -> Exit {
        self.shared.metrics.auth_failure(e.metric_reason());
        self.error(id, ErrorCode::Unauthorized, e.reason(), None);
        Exit::Close(close::POLICY, e.reason())
    }

    /// Adopts a valid token's entitlement, taking one of its key's
    /// connections; a key at its `max_connections` closes the session.
    fn authenticate(&mut self, id: Option<OpId>, ent: Arc<Entitlement>) -> Result<(), Exit> {
        const TOO_MANY: &str = "too many connections for this key";
        match self.shared.auth.acquire(&ent) {
            Ok(guard) => self.key_conn = guard.map(Box::new),
            Err(crate::auth::KeyAtLimit) => {
                tracing::debug!(key = %ent.name, "{TOO_MANY}");
                self.shared.metrics.auth_failure("key_connection_limit");
                self.error(id, ErrorCode::Unauthorized, TOO_MANY, None);
                return Err(Exit::Close(close::POLICY, TOO_MANY));
            }
        }
        let cap = self.shared.config.session.max_symbols;
        self.max_symbols = clamp_u32(ent.max_symbols.map_or(cap, |m| m.min(cap)));
        self.entitlement = Some(ent);
        self.authed = true;
        Ok(())
    }

    fn op_error(&mut self, e: OpError) {
        self.error(e.id, e.code, &e.message, None);
    }

    fn drop_subs(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let syms: Vec<SymbolId> = self.subs.iter().map(|s| s.sym).collect();
        self.shared.fanout.unsubscribe(&self.handle, &syms);
        self.shared.metrics.subscriptions.sub(syms.len() as i64);
        self.subs.clear();
    }

    /// Where the loop stands before it waits: `Err` ends the session; else
    /// when the timer branch must wake, whether there is anything to
    /// write, whether data may go (the client's read window is not full),
    /// and the close a passed deadline calls for (after the last call). A plain function, so that its temporaries (and the borrows
    /// the comparisons take) do not become part of `serve`'s future.
    fn plan(&mut self, c: &mut Clock) -> Result<(Instant, bool, bool, Option<Exit>), Exit> {
        let now = Instant::now();
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
            self.dirty = true;
        }
        // Dirty data waits while the client's read window is full (its
        // Pong wakes the task) or its frames are spaced (the timer does).
        // Without dirty data only look: a hold is counted when data waits.
        let open = if !self.flow_on() {
            true
        } else if self.dirty {
            self.data_gate()
        } else {
            lock_direct(&self.handle).window.would_open(now)
        };
        let data = self.dirty && open;
        let stalled = if open {
            None
        } else {
            lock_direct(&self.handle).window.stalled_since()
        };
        let cfg = &self.shared.config.session;
        // A client that reads nothing keeps the window full: a slow
        // consumer after `slow_consumer_ms`, as with a full socket.
        let slow = Duration::from_millis(cfg.slow_consumer_ms);
        let mut overdue = stalled
            .is_some_and(|t| now >= t + slow)
            .then_some(Exit::Close(
                close::SLOW_CONSUMER,
                "slow consumer: data not read",
            ));
        if self.control.len() > cfg.max_pending_control {
            return Err(Exit::Close(
                close::SLOW_CONSUMER,
                "slow consumer: replies not read",
            ));
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
            overdue = Some(Exit::Close(close::POLICY, "idle timeout: no pong"));
        }
        let want_write = c.flushing || !self.control.is_empty() || data || c.ping_due;
        let timer = if c.flushing {
            c.write_started + slow
        } else {
            let hb = self.last_write + Duration::from_millis(cfg.heartbeat_ms);
            let t = self.due.map_or(hb, |d| d.min(hb));
            stalled.map_or(t, |s| t.min(s + slow))
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
    /// both ways from one `poll_fn` (no `split()` and its lock).
    ///
    /// Per frame it does as little as it can: the shutdown future and the
    /// timer live across iterations (the timer is re-armed only when its
    /// deadline moves earlier or it has fired; firing early is harmless,
    /// [`Session::on_timer`] re-checks), a shard's wake is a flag read in
    /// the same poll as the socket, and a frame is flushed in the iteration
    /// that built it, so a woken session with a writable socket builds,
    /// writes and goes back to sleep in one pass.
    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> Exit
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
        let mut shutdown = self.shared.shutdown.subscribe();
        let shutdown = shutdown.wait();
        tokio::pin!(shutdown);
        let first = match self.plan(&mut c) {
            Ok((first, ..)) => first,
            Err(exit) => return exit,
        };
        let sleep = tokio::time::sleep_until(first);
        tokio::pin!(sleep);
        loop {
            // (A block: `overdue` must not live on across the awaits below,
            // where it would join every session's future.)
            let (timer, want_write, data_open) = {
                let (timer, want_write, data_open, overdue) = match self.plan(&mut c) {
                    Ok(v) => v,
                    Err(exit) => return exit,
                };
                match overdue {
                    // A deadline has passed as this task runs. The session ends
                    // after the last call: reading as usual, with this task's
                    // waker, for what the client sent while the task was late.
                    // A frame that answers the deadline ends the last call.
                    Some(exit) if c.final_call => {
                        if sleep.is_elapsed() {
                            return exit;
                        }
                    }
                    Some(_) => {
                        c.final_call = true;
                        sleep.as_mut().reset(Instant::now() + FINAL_CALL);
                    }
                    None => c.final_call = false,
                }
                (timer, want_write, data_open)
            };
            // (During the last call the timer is its end.)
            if !c.final_call && (timer < sleep.deadline() || sleep.is_elapsed()) {
                sleep.as_mut().reset(timer);
            }
            // During a last call the read goes first (not past a frame
            // half written: a read can make tungstenite write a Pong).
            let read_first = c.final_call && self.raw_out.is_none();
            // One reference to the session in the closure, not one per
            // field: the closure is part of every session's task.
            let s = &mut *self;
            // (what happened, whether a shard's wake is pending)
            let (io, woke) = poll_fn(|cx| {
                // Take back what the fan-out held while this task slept;
                // anything it could not finish is the task's now.
                if s.unpark() {
                    return Poll::Ready((Io::Direct, false));
                }
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready((Io::Shutdown, false));
                }
                let woke = s.handle.poll_woken(cx);
                if read_first {
                    if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                        return Poll::Ready((Io::Read(m), woke));
                    }
                }
                if woke && !data_open && !s.dirty {
                    return Poll::Ready((Io::Woke, true));
                }
                if let Some(r) = s.raw_out.as_deref_mut() {
                    // Finish the frame in flight before anything else.
                    if let Poll::Ready(res) = poll_write_all(ws.get_mut(), cx, &r.0, &mut r.1) {
                        return Poll::Ready((Io::RawDone(res), woke));
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready((Io::Timer, woke));
                    }
                    return Poll::Pending;
                }
                // Writing first: flushing the frame in flight, or waiting
                // until the sink can take the next one (only when there is
                // something to send).
                // A shard's wake is data: while the read window is full it
                // waits, and the socket is read (the Pong that opens it
                // must not starve behind wakes).
                if want_write || (woke && data_open) {
                    // A flush, not `poll_ready`: tungstenite may hold the
                    // unwritten rest of a Pong it answered while reading,
                    // and a frame written raw must not land inside it.
                    let r = ws.poll_flush_unpin(cx);
                    if let Poll::Ready(r) = r {
                        return Poll::Ready((Io::Write(r), woke));
                    }
                }
                if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                    return Poll::Ready((Io::Read(m), woke));
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready((Io::Timer, woke));
                }
                // Nothing to write and nothing pending: let the fan-out
                // write this session's frames itself until it wakes (once
                // tungstenite holds no unwritten bytes, so nothing can
                // interleave).
                if !want_write && !woke {
                    match ws.poll_flush_unpin(cx) {
                        Poll::Ready(Ok(())) => s.park(),
                        Poll::Ready(Err(e)) => return Poll::Ready((Io::Write(Err(e)), woke)),
                        Poll::Pending => {}
                    }
                }
                Poll::Pending
            })
            .await;
            if woke {
                self.dirty = true;
            }
            match io {
                Io::Direct => {
                    let news = std::mem::take(&mut lock_direct(&self.handle).news);
                    if news.failed {
                        return Exit::Gone;
                    }
                    if let Some(left) = news.leftover {
                        // The fan-out's frame did not all go: finish it
                        // first, as a frame of our own.
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
                }
                Io::Shutdown => return Exit::Close(close::GOING_AWAY, "server shutting down"),
                Io::Woke => {}
                Io::Timer => {
                    // A write was wanted and the timer came first: the sink
                    // could not be flushed (tungstenite holds unwritten
                    // bytes, a Pong it answered, and the socket is full).
                    // That is a write in flight: bounded by
                    // `slow_consumer_ms`, and no past heartbeat time to
                    // spin on.
                    if want_write && !c.flushing {
                        c.flushing = true;
                        c.write_started = Instant::now();
                    }
                    if let Err(exit) = self.on_timer(&c) {
                        return exit;
                    }
                }
                Io::Write(Err(_)) | Io::RawDone(Err(_)) => return Exit::Gone,
                Io::RawDone(Ok(())) => {
                    self.raw_out = None;
                    c.flushing = false;
                }
                Io::Write(Ok(())) if c.flushing => c.flushing = false,
                Io::Write(Ok(())) if c.ping_due => {
                    // Pings go through tungstenite (its sink is flushed:
                    // `poll_ready` was ready).
                    c.ping_due = false;
                    // With a probe in flight the Ping repeats its mark (a
                    // client may answer only its latest Ping).
                    let payload = lock_direct(&self.handle).window.keepalive_payload();
                    if ws.start_send_unpin(Message::Ping(payload.into())).is_err() {
                        return Exit::Gone;
                    }
                    c.write_started = Instant::now();
                    match poll_fn(|cx| Poll::Ready(ws.poll_flush_unpin(cx))).await {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Exit::Gone,
                        Poll::Pending => c.flushing = true,
                    }
                }
                Io::Write(Ok(())) => {
                    // `poll_ready` was ready, so tungstenite holds no
                    // unwritten bytes: the frame goes straight to the
                    // socket, header and payload in one write, with no copy
                    // into tungstenite's buffer.
                    let Some((mut frame, mut at)) = self.build_frame() else {
                        continue;
                    };
                    c.write_started = Instant::now();
                    let probe = self.flow_on().then(|| {
                        lock_direct(&self.handle)
                            .window
                            .wrote(frame.len() - at, c.write_started)
                    });
                    if let Some(Some(probe)) = probe {
                        frame.extend_from_slice(&probe);
                    }
                    self.last_write = c.write_started;
                    let sent = poll_fn(|cx| {
                        Poll::Ready(poll_write_all(ws.get_mut(), cx, &frame, &mut at))
                    })
                    .await;
                    match sent {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Exit::Gone,
                        Poll::Pending => {
                            self.raw_out = Some(Box::new((frame, at)));
                            c.flushing = true;
                        }
                    }
                }
                Io::Read(msg) => {
                    if let Some(exit) = self.on_read(&mut c, msg) {
                        return exit;
                    }
                }
            }
        }
    }

    /// A frame from the client, of any kind, or its end; `Some` ends the
    /// session.
    fn on_read(&mut self, c: &mut Clock, msg: Option<Result<Message, WsError>>) -> Option<Exit> {
        c.last_rx = Instant::now();
        c.asked_ms = 0;
        if let Some(Ok(Message::Pong(p))) = &msg {
            let limits = flow::Limits::from_config(self.cfg());
            let pong = lock_direct(&self.handle).window.pong(p, c.last_rx, limits);
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
        let cfg = &self.shared.config.session;
        if c.flushing {
            if c.write_started.elapsed() >= Duration::from_millis(cfg.slow_consumer_ms) {
                return Err(Exit::Close(
                    close::SLOW_CONSUMER,
                    "slow consumer: could not keep up",
                ));
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
    async fn finish<S>(&mut self, tx: &mut WebSocketStream<S>, code: u16, reason: &'static str)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let grace = Duration::from_millis(self.shared.config.session.close_grace_ms);
        if let Some(mut r) = self.raw_out.take() {
            let (buf, at) = (&r.0, &mut r.1);
            let done = poll_fn(|cx| poll_write_all(tx.get_mut(), cx, buf, at));
            if !matches!(tokio::time::timeout(grace, done).await, Ok(Ok(()))) {
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
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
            while let Some(Ok(_)) = tx.next().await {}
        })
        .await;
    }

    /// Handles one inbound WebSocket event; `Some` ends the session.
    fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Exit> {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let msg = match msg {
            None => return Some(Exit::Gone),
            Some(Ok(m)) => m,
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                return Some(Exit::Close(close::TOO_BIG, "message too big"))
            }
            Some(Err(WsError::Capacity(_))) => {
                return Some(Exit::Close(close::TOO_BIG, "message too big"))
            }
            Some(Err(WsError::Utf8(_))) => {
                return Some(Exit::Close(close::INVALID_PAYLOAD, "invalid UTF-8"))
            }
            Some(Err(WsError::Protocol(_))) => {
                return Some(Exit::Close(close::PROTOCOL_ERROR, "protocol error"))
            }
            Some(Err(_)) => return Some(Exit::Gone),
        };
        match msg {
            Message::Text(t) => self.on_op(t.as_bytes()),
            Message::Binary(_) => {
                if let Some(exit) = self.admit_op() {
                    return Some(exit);
                }
                self.error(
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported: send JSON ops as text frames",
                    None,
                );
                None
            }
            // tungstenite answers pings itself; a close is answered too and
            // the stream then ends.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
            Message::Close(_) => Some(Exit::PeerClosed),
        }
    }

    /// Counts an inbound op against the rate limit. `Some` closes.
    fn admit_op(&mut self) -> Option<Exit> {
        self.shared.metrics.ops_in.inc();
        match self.limiter.check() {
            Ok(()) => None,
            Err(true) => Some(Exit::Close(
                close::POLICY,
                "kept flooding after rate_limited",
            )),
            Err(false) => {
                self.error(
                    None,
                    ErrorCode::RateLimited,
                    "too many ops: slow down (see limits.max_msgs_per_sec in welcome)",
                    None,
                );
                None
            }
        }
    }

    fn on_op(&mut self, text: &[u8]) -> Option<Exit> {
        if let Some(exit) = self.admit_op() {
            return Some(exit);
        }
        let cfg = &self.shared.config.session;
        if text.len() > cfg.max_message_bytes {
            let msg = format!(
                "message of {} bytes; the limit is {}",
                text.len(),
                cfg.max_message_bytes
            );
            self.error(None, ErrorCode::PayloadTooLarge, &msg, None);
            return None;
        }
        let max_per_op = cfg.max_symbols_per_op;
        // simd-json parses in place. A copy per op, not a buffer kept per
        // session: ops are rare, sessions many.
        let mut buf = text.to_vec();
        let parsed = parse_op(&mut buf, max_per_op);
        drop(buf);
        let (id, op) = match parsed {
            Ok(v) => v,
            Err(e) => {
                self.op_error(e);
                return None;
            }
        };
        match op {
            Op::Ping => self.push(Control::Pong { id, ts: now_ns() }),
            Op::Auth { token } => {
                if !self.shared.auth.enabled() {
                    let limits = self.limits();
                    self.push(Control::Authenticated { id, limits });
                } else if self.entitlement.is_some() {
                    // Switching keys mid-session would leave subscriptions
                    // the new key may not see.
                    self.error(
                        id,
                        ErrorCode::BadRequest,
                        "already authenticated: a session keeps its first token",
                        None,
                    );
                } else {
                    match self.shared.auth.authenticate(&token) {
                        Ok(ent) => {
                            if let Err(exit) = self.authenticate(id.clone(), ent) {
                                return Some(exit);
                            }
                            let limits = self.limits();
                            self.push(Control::Authenticated { id, limits });
                        }
                        Err(e) => return Some(self.refuse_token(id, e)),
                    }
                }
            }
            _ if !self.authed => {
                self.error(
                    id,
                    ErrorCode::Unauthorized,
                    "authenticate first: send {\"op\":\"auth\",\"token\":...}",
                    None,
                );
            }
            Op::Subscribe {
                symbols,
                max_hz,
                snapshot,
            } => self.subscribe(id, symbols, max_hz, snapshot),
            Op::Unsubscribe { symbols } => self.unsubscribe(id, symbols),
        }
        None
    }

    /// Resolves names; unknown ones get an `unknown_symbol` error each,
    /// valid names the key may not see a `forbidden_symbol` each. The
    /// entitlement is checked before existence, so the errors do not tell
    /// which un-entitled symbols exist; a pattern such as `BTC-*` is not a
    /// valid name, so it is `unknown_symbol` (v1 has no wildcards).
    fn resolve(&mut self, id: &Option<OpId>, names: &[String]) -> Vec<SymbolId> {
        let symbols = self.shared.symbols.clone();
        let ent = self.entitlement.clone();
        let mut out: Vec<SymbolId> = Vec::with_capacity(names.len());
        for n in names {
            if let Some(ent) = &ent {
                if crate::model::valid_symbol(n) && !ent.allows(n) {
                    self.shared.metrics.auth_failure("forbidden_symbol");
                    let msg = format!("not entitled to symbol: {n}");
                    self.error(id.clone(), ErrorCode::ForbiddenSymbol, &msg, Some(n));
                    continue;
                }
            }
            match symbols.get(n) {
                Some(s) => {
                    if !out.contains(&s) {
                        out.push(s)
                    }
                }
                None => {
                    let shown: String = n.chars().take(64).collect();
                    let msg = format!("no such symbol: {shown}");
                    self.error(id.clone(), ErrorCode::UnknownSymbol, &msg, Some(&shown));
                }
            }
        }
        out
    }

    fn find(&self, sym: SymbolId) -> Result<usize, usize> {
        self.subs.binary_search_by_key(&sym, |s| s.sym)
    }

    fn subscribe(
        &mut self,
        id: Option<OpId>,
        names: Vec<String>,
        max_hz: Option<f64>,
        snapshot: bool,
    ) {
        let syms = self.resolve(&id, &names);
        if syms.is_empty() {
            return;
        }
        let max = self.max_symbols as usize;
        let new = syms.iter().filter(|s| self.find(**s).is_err()).count();
        if self.subs.len() + new > max {
            let msg = format!(
                "subscribing {new} more symbols would hold {}; the limit is {max}",
                self.subs.len() + new
            );
            self.error(id, ErrorCode::TooManySymbols, &msg, None);
            return;
        }
        let hz = max_hz.map(|h| h.min(self.shared.config.session.max_hz_limit));
        let interval = interval_us(hz);
        let slots = self.shared.slots.clone();
        // Exactly what is held, not the next power of two: the list stays
        // at this size for the session's life.
        self.subs.reserve_exact(new);
        let mut added = Vec::with_capacity(new);
        for &sym in &syms {
            let pos = match self.find(sym) {
                Ok(p) => p,
                Err(p) => {
                    self.subs.insert(
                        p,
                        Sub {
                            sym,
                            interval_us: interval,
                            last_seq: 0,
                            next_at: None,
                            snapshot: false,
                            status: Status::Live,
                        },
                    );
                    added.push(sym);
                    p
                }
            };
            let sub = &mut self.subs[pos];
            sub.interval_us = interval;
            sub.next_at = None;
            let seq = slots.seq(sym);
            if snapshot && seq > 0 {
                // A symbol with no value yet gets no snapshot: its first
                // value arrives as a live update.
                sub.snapshot = true;
                sub.last_seq = 0;
            } else if snapshot {
                sub.snapshot = false;
                sub.last_seq = 0;
            } else {
                sub.snapshot = false;
                sub.last_seq = sub.last_seq.max(seq);
            }
        }
        // Register before the first scan: a write either sees our interest
        // bit or is seen by the scan (see `SlotTable::notify`).
        self.shared.fanout.subscribe(&self.handle, &added);
        self.shared.metrics.subscriptions.add(added.len() as i64);
        let names: Vec<&str> = syms.iter().map(|s| self.shared.symbols.name(*s)).collect();
        let msg = Control::Subscribed {
            id,
            symbols: names,
            max_hz: hz,
        }
        .to_json();
        self.control.push_back(msg);
        self.dirty = true;
    }

    fn unsubscribe(&mut self, id: Option<OpId>, names: Vec<String>) {
        let syms = self.resolve(&id, &names);
        if syms.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for &sym in &syms {
            if let Ok(p) = self.find(sym) {
                self.subs.remove(p);
                removed.push(sym);
            }
        }
        if self.subs.len() <= self.subs.capacity() / 2 {
            self.subs.shrink_to_fit();
        }
        self.shared.fanout.unsubscribe(&self.handle, &removed);
        self.shared.metrics.subscriptions.sub(removed.len() as i64);
        let names: Vec<&str> = syms.iter().map(|s| self.shared.symbols.name(*s)).collect();
        let msg = Control::Unsubscribed { id, symbols: names }.to_json();
        self.control.push_back(msg);
    }

    /// Whether read-window flow control is on (`read_lag_ms` > 0); off,
    /// the task never takes the parked state's lock for it.
    fn flow_on(&self) -> bool {
        self.cfg().read_lag_ms != 0
    }

    /// Whether data may go now (the client's read window is not full);
    /// counts a hold once.
    fn data_gate(&mut self) -> bool {
        if !self.flow_on() {
            return true;
        }
        let gate = lock_direct(&self.handle).window.gate(Instant::now());
        match gate {
            Gate::Open => true,
            Gate::Held => false,
            Gate::HeldNow => {
                self.shared.metrics.read_window_holds.inc();
                false
            }
            // The client's lag spaces its frames: the timer wakes the
            // task when the next may go.
            Gate::Paced(at, first) => {
                if first {
                    self.shared.metrics.read_window_paced.inc();
                }
                self.due = Some(self.due.map_or(at, |d| d.min(at)));
                false
            }
        }
    }

    /// Builds the next frame: pending control replies first, then the
    /// newest value of every dirty subscription. `None` if there is
    /// nothing to send (everything held back by `max_hz`).
    fn build_frame(&mut self) -> Option<(Vec<u8>, usize)> {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        let max = shared.config.session.max_frame_bytes;
        // Sized like the previous frame, so a steady stream of similar
        // frames does not regrow the buffer several times each.
        let mut out = String::with_capacity(self.frame_hint as usize);
        // Room for the WebSocket header, written in front once the length
        // is known (see `frame_header`).
        out.push_str(HEADER_ROOM);
        out.push('[');
        let mut n_ctrl = 0u64;
        while let Some(c) = self.control.front() {
            if n_ctrl > 0 && out.len() + c.len() > max {
                break;
            }
            if n_ctrl > 0 {
                out.push(',');
            }
            out.push_str(c);
            self.control.pop_front();
            n_ctrl += 1;
        }
        // Idle sessions hold no queue (replies are occasional).
        self.control.release_if_empty();
        let mut data = Data::default();
        if self.dirty && out.len() < max && self.data_gate() {
            self.dirty = false;
            self.handle.clear();
            data = append_data(
                &shared.fanout,
                &mut self.subs,
                &mut self.scan_from,
                &mut out,
                n_ctrl > 0,
                max,
                Instant::now(),
                None,
            );
            if data.more {
                self.dirty = true;
            }
            if let Some(d) = data.due {
                self.due = Some(self.due.map_or(d, |x| x.min(d)));
            }
        }
        if n_ctrl + data.n == 0 {
            return None;
        }
        out.push(']');
        self.frame_hint = out.len().clamp(256, max + 64) as u32;
        count_frame(m, &out, n_ctrl, &data);
        let mut bytes = out.into_bytes();
        let start = frame_header(&mut bytes);
        Some((bytes, start))
    }
}

impl Data {
    /// Age of the frame's oldest live quote when it was built, in seconds
    /// (`None` without one).
    fn age_secs(&self) -> Option<f64> {
        (self.oldest != i64::MAX)
            .then(|| self.now_wall.saturating_sub(self.oldest).max(0) as f64 / 1e9)
    }
}

/// What [`append_data`] put in a frame.
#[derive(Default)]
struct Data {
    /// Quote and status messages.
    n: u64,
    /// Updates skipped over (seq gaps), for `updates_conflated_total`.
    conflated: u64,
    /// gw_ts of the oldest live quote (`i64::MAX` if none).
    oldest: i64,
    /// Earliest time a subscription held back by `max_hz` may go.
    due: Option<Instant>,
    /// The frame is full: more is dirty, to go in the next frame.
    more: bool,
    /// Wall clock when the frame was built, ns.
    now_wall: i64,
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
fn append_data(
    fan: &Fanout,
    subs: &mut [Sub],
    scan_from: &mut u32,
    out: &mut String,
    mut comma: bool,
    max: usize,
    now: Instant,
    mut memo: Option<&mut crate::fanout::Memo>,
) -> Data {
    let mut d = Data {
        oldest: i64::MAX,
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
        let st = fan.slots.status(sub.sym);
        if st != sub.status {
            if comma {
                out.push(',');
            }
            encode_status(out, fan.symbols.name(sub.sym), st, d.now_wall);
            sub.status = st;
            comma = true;
            d.n += 1;
        }
        let seq = fan.slots.seq(sub.sym);
        if seq <= sub.last_seq && !(sub.snapshot && seq > 0) {
            continue;
        }
        if !sub.snapshot {
            if let Some(at) = sub.next_at {
                if at > now {
                    d.due = Some(d.due.map_or(at, |x: Instant| x.min(at)));
                    continue;
                }
            }
        }
        if comma {
            out.push(',');
        }
        let was_snapshot = sub.snapshot;
        let sent = if sub.snapshot {
            fan.slots.read(sub.sym).map(|(q, seq)| {
                encode_quote(out, fan.symbols.name(sub.sym), seq, &q, true);
                (seq, q.gw_ts)
            })
        } else {
            let r = match memo.as_deref_mut() {
                Some(m) => fan.append_latest_memo(sub.sym, out, m),
                None => fan.append_latest(sub.sym, out),
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
    d
}

/// A fan-out slice's frame counts, added to the shared metrics once per
/// slice ([`Tally::flush`]) rather than per frame: a direct frame then
/// costs no atomic for its metrics, where [`count_frame`] pays about ten.
pub(crate) struct Tally {
    frames: u64,
    bytes: u64,
    messages: u64,
    conflated: u64,
    /// Sessions found holding for their read window (see `flow.rs`).
    holds: u64,
    /// Data frames that wait for their time (spaced, see `flow.rs`).
    paced: u64,
    latency: prometheus::local::LocalHistogram,
}

impl Tally {
    pub(crate) fn new(m: &crate::metrics::Metrics) -> Self {
        Tally {
            frames: 0,
            bytes: 0,
            messages: 0,
            conflated: 0,
            holds: 0,
            paced: 0,
            latency: m.latency.local(),
        }
    }

    fn add(&mut self, out: &str, d: &Data) {
        self.frames += 1;
        self.bytes += (out.len() - HEADER_ROOM.len()) as u64;
        self.messages += d.n;
        self.conflated += d.conflated;
        if let Some(age) = d.age_secs() {
            self.latency.observe(age);
        }
    }

    /// Adds the counts to `m` (every frame counted here was direct).
    pub(crate) fn flush(&mut self, m: &crate::metrics::Metrics) {
        if self.frames > 0 {
            m.frames_out.inc_by(self.frames);
            m.frames_direct.inc_by(self.frames);
            m.bytes_out.inc_by(self.bytes);
            m.messages_out.inc_by(self.messages);
            m.conflated.inc_by(self.conflated);
            self.latency.flush();
        }
        if self.holds > 0 {
            m.read_window_holds.inc_by(self.holds);
            self.holds = 0;
        }
        if self.paced > 0 {
            m.read_window_paced.inc_by(self.paced);
            self.paced = 0;
        }
        (self.frames, self.bytes, self.messages, self.conflated) = (0, 0, 0, 0);
    }
}

/// Counts a finished frame (`out` holds `HEADER_ROOM` and the payload).
fn count_frame(m: &crate::metrics::Metrics, out: &str, n_ctrl: u64, d: &Data) {
    if d.conflated > 0 {
        m.conflated.inc_by(d.conflated);
    }
    // One observation per frame, of its oldest live quote: the histogram
    // costs a few atomics, too many to pay per quote in a 50-quote frame.
    if let Some(age) = d.age_secs() {
        m.latency.observe(age);
    }
    m.frames_out.inc();
    m.bytes_out.inc_by((out.len() - HEADER_ROOM.len()) as u64);
    m.control_out.inc_by(n_ctrl);
    m.messages_out.inc_by(d.n);
}

/// The part of a session the fan-out may use while the session's task
/// sleeps (in [`SessionHandle::direct`]): a plain-TCP session parks its
/// subscriptions here each time it waits with nothing to write, and a
/// shard pass that finds them parked builds the frame and writes it to the
/// socket itself ([`deliver`]) instead of waking the task, which is most of
/// what a frame costs in user space (wake, schedule, poll, socket layers).
/// Whatever needs the task (a partial write, a full socket, an error, a
/// `max_hz` hold-back, a frame cut at `max_frame_bytes`) is left here and
/// the task is woken; the task takes everything back before it does
/// anything else, so the two never write at once.
#[derive(Default)]
pub struct Direct {
    /// The socket (plain TCP only; TLS sessions never park).
    tcp: Option<Arc<TcpStream>>,
    parked: bool,
    /// The session's subscriptions while parked (moved, not copied).
    subs: Vec<Sub>,
    scan_from: u32,
    frame_hint: u32,
    /// How much the client has left unread (see `flow.rs`): here rather
    /// than in the task, which both use (under this lock) and where every
    /// byte is paid per connection.
    window: ReadWindow,
    /// What happened while parked, for the task.
    news: News,
}

/// What the fan-out did while a session was parked.
#[derive(Default)]
struct News {
    /// When the last direct frame went (heartbeats are due after it).
    wrote_at: Option<Instant>,
    /// The rest of a frame the socket did not take (bytes, how many are
    /// written): the task finishes it before anything else.
    leftover: Option<Box<(Vec<u8>, usize)>>,
    /// The socket failed.
    failed: bool,
    /// A `max_hz` hold-back: wake for it then.
    due: Option<Instant>,
    /// A frame was cut at `max_frame_bytes`: more to send.
    more: bool,
}

impl News {
    /// Whether the task must act on this (not just note the time).
    fn needs_task(&self) -> bool {
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

fn lock_direct(h: &SessionHandle) -> std::sync::MutexGuard<'_, Direct> {
    h.direct.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Parks the subscriptions in the handle (plain TCP sessions only).
    fn park(&mut self) {
        let mut d = lock_direct(&self.handle);
        if d.tcp.is_none() || d.parked {
            return;
        }
        std::mem::swap(&mut d.subs, &mut self.subs);
        d.scan_from = self.scan_from;
        d.frame_hint = self.frame_hint;
        d.parked = true;
        self.handle
            .parked
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Takes the subscriptions back and notes when the fan-out last wrote.
    /// Returns whether it left something the task must handle (then in
    /// `Direct::news`).
    fn unpark(&mut self) -> bool {
        let mut d = lock_direct(&self.handle);
        if !d.parked {
            return false;
        }
        std::mem::swap(&mut d.subs, &mut self.subs);
        self.scan_from = d.scan_from;
        self.frame_hint = d.frame_hint;
        d.parked = false;
        self.handle
            .parked
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(at) = d.news.wrote_at.take() {
            self.last_write = self.last_write.max(at);
        }
        d.news.needs_task()
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

/// The fan-out's direct write (see [`Direct`]): if `h`'s session is parked,
/// builds its frame into `buf` (a scratch buffer the shard reuses) and
/// writes it to the socket without waking the task. `pass_at`: when the
/// shard's pass began (a session served twice in one pass, as a dirty
/// symbol's holder and from the pace list, is spaced only by its next
/// pass).
pub(crate) fn deliver(
    fan: &Fanout,
    h: &SessionHandle,
    buf: &mut String,
    tally: &mut Tally,
    memo: &mut crate::fanout::Memo,
    pass_at: Instant,
) -> Delivery {
    // A session busy taking its state back is simply woken.
    let Ok(mut g) = h.direct.try_lock() else {
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
        window,
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
    buf.clear();
    buf.push_str(HEADER_ROOM);
    buf.push('[');
    let max = fan.max_frame_bytes;
    let data = append_data(fan, subs, scan_from, buf, false, max, now, Some(memo));
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
    news.wrote_at = Some(now);
    match tcp.try_write(&bytes[start..]) {
        Ok(n) if start + n == bytes.len() => {
            // Keep the buffer for the next session: emptied, it is valid
            // UTF-8 whatever it held.
            bytes.clear();
            *buf = String::from_utf8(bytes).unwrap_or_default();
        }
        Ok(n) => news.leftover = Some(Box::new((bytes, start + n))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            news.leftover = Some(Box::new((bytes, start)));
        }
        Err(_) => news.failed = true,
    }
    news.verdict()
}

/// A plain TCP socket shared between a session's task (which reads and
/// writes it through tungstenite) and the fan-out's direct writes (which
/// only `try_write` while the task is parked). Only the task polls for
/// readiness, so the socket's wakers are the task's.
pub struct PlainTcp(pub Arc<TcpStream>);

impl AsyncRead for PlainTcp {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for PlainTcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Half-close: the close frame is out, the peer may still answer.
        let r = socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
mod tests {

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

    use super::*;
    use crate::config::{Config, FeedConfig, SimConfig};
    use hyper_util::rt::TokioIo;
    use std::mem::{size_of, size_of_val};
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The stream a real session runs on (see `http::try_upgrade`).
    /// The two production streams: plain TCP, and TLS (hyper's upgraded
    /// connection).
    type Prod = WebSocketStream<PlainTcp>;
    type ProdTls = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
    type Test = WebSocketStream<tokio::io::DuplexStream>;

    #[test]
    fn max_hz_interval_never_panics() {
        assert_eq!(interval_us(None), 0);
        assert_eq!(interval_us(Some(1000.0)), 1000);
        assert_eq!(interval_us(Some(4.0)), 250_000);
        // `Duration::from_secs_f64(1.0 / h)` panicked here (a client's
        // `"max_hz":1e-300`); now it saturates at ~71 minutes.
        assert_eq!(interval_us(Some(1e-300)), u32::MAX);
        assert_eq!(interval_us(Some(1e12)), 0);
    }

    /// Each session is one task, and its future is most of the task's
    /// memory: at 15,000 connections every 8 bytes here are 120 KB. A tokio
    /// task cell is the future plus 104 bytes, rounded up to 128 (its
    /// alignment), so at most 1,048 bytes fits the 1,152-byte cell (before
    /// this test it was 1,544 bytes, a 1,664-byte cell).
    #[tokio::test]
    async fn session_future_stays_small() {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.feeds = vec![FeedConfig::Sim(SimConfig {
            rate: 0.0,
            ..SimConfig::default()
        })];
        let gw = crate::Gateway::start(c).await.unwrap();
        let (a, _b) = tokio::io::duplex(64);
        let ws: Test =
            WebSocketStream::from_raw_socket(a, Role::Server, Some(gw.shared.ws_config)).await;
        let adm = Admission {
            permit: None,
            per_ip: Ok(None),
            token: None,
        };
        let fut = run(ws, gw.shared.clone(), adm, None);
        // The stream is held once; count it at its (larger) production size.
        let prod = size_of::<Prod>().max(size_of::<ProdTls>());
        let size = size_of_val(&fut) - size_of::<Test>() + prod;
        assert!(
            size <= 1048,
            "session future is {size} bytes (stream {}): over the 1,152-byte task cell",
            prod
        );
        let mut shutdown = gw.shared.shutdown.subscribe();
        assert!(size_of_val(&shutdown.wait()) <= 80);
        drop(fut);
        gw.shutdown();
    }
}
