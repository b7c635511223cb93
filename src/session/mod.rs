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
//!
//! * [`serve`](self): the loop, its timers and liveness;
//! * `ops`: what a client asks for (subscribe, unsubscribe, auth, ping);
//! * `frame`: the next frame and the control replies waiting for it;
//! * [`crate::outbox`]: what a frame carries, also written by the fan-out
//!   while the task sleeps.

mod config;
mod frame;
mod ops;
mod patterns;
mod rate;
mod serve;
mod socket;
pub(crate) mod sse;

pub use config::SessionConfig;
pub(crate) use socket::PlainTcp;

use crate::auth::{Auth, AuthError, Entitlement, KeyConnGuard};
use crate::fanout::{Fanout, SessionHandle};
use crate::flow::ReadWindow;
use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::outbox::{Direct, Sub, Unsent};
use crate::protocol::{
    Control, Disconnect, ErrorCode, Limits, OpId, MAX_FLOW_WINDOW, PROTOCOL_VERSION,
};
use crate::shutdown::Trigger;
use crate::slots::SlotTable;
use crate::sync::RwLock;
use frame::ControlQueue;
use futures_util::SinkExt;
use rate::OpLimiter;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;

/// What every session uses, and nothing else: its limits, the symbols and
/// slots it reads, the fan-out it registers with, the auth it checks
/// tokens with, the metrics it counts in and the shutdown it closes on.
pub(crate) struct Context {
    pub config: SessionConfig,
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub fanout: Arc<Fanout>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub shutdown: Trigger,
    next_id: AtomicU64,
    /// When the gateway started (sessions log their duration against it).
    started: std::time::Instant,
    /// This process's seq numbering, as sent in `welcome`: every symbol's
    /// seq starts again at 1 when the gateway restarts, and a client that
    /// sees another epoch knows it (16 hex digits, different for every
    /// start). A cluster node serves the cluster's (see
    /// [`Context::epoch_cell`]).
    epoch: Arc<RwLock<String>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: SessionConfig,
        symbols: Arc<Symbols>,
        slots: Arc<SlotTable>,
        fanout: Arc<Fanout>,
        metrics: Arc<Metrics>,
        auth: Arc<Auth>,
        shutdown: Trigger,
    ) -> Self {
        Context {
            config,
            symbols,
            slots,
            fanout,
            metrics,
            auth,
            shutdown,
            next_id: AtomicU64::new(1),
            started: std::time::Instant::now(),
            epoch: Arc::new(RwLock::new(new_epoch())),
        }
    }

    /// The limits announced in `welcome` (and `authenticated`), for a
    /// session that may hold `max_symbols`.
    fn limits(&self, max_symbols: usize) -> Limits {
        let cfg = &self.config;
        Limits {
            max_symbols,
            max_msgs_per_sec: cfg.max_msgs_per_sec,
            max_message_bytes: cfg.max_message_bytes,
            max_flow_window: MAX_FLOW_WINDOW,
            max_symbols_per_op: cfg.max_symbols_per_op,
            msgs_burst: cfg.msgs_burst,
            max_pending_trades: cfg.max_pending_trades,
        }
    }

    /// Milliseconds since the gateway started, wrapping at 2^32.
    fn uptime_ms(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    /// The epoch new sessions are told: a cluster node serves the
    /// cluster's (whose seqs it keeps), and an edge that started before
    /// any ingest adopts it when it first hears one.
    pub(crate) fn epoch_cell(&self) -> Arc<RwLock<String>> {
        self.epoch.clone()
    }

    /// See [`Context::epoch`](Context#structfield.epoch).
    pub(crate) fn epoch(&self) -> String {
        self.epoch.read().clone()
    }

    fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// An epoch no other start of this or another gateway is likely to share:
/// the start time in ns and the process id, mixed (SplitMix64's finalizer).
pub(crate) fn new_epoch() -> String {
    let t = u64::try_from(crate::model::now_ns()).unwrap_or(0);
    let mut z = t ^ (u64::from(std::process::id()) << 40) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// What the edge holds for a session's life: its places among the
/// server's and its address's connections. Opaque here: the session only
/// releases them when it ends, before the connection gauge falls.
pub(crate) type Held = Box<dyn Send>;

/// How a session is admitted.
pub(crate) struct Admission {
    /// What the edge holds for the session, or the disconnect that turns
    /// it away at once (a full server or address, 1013: a browser cannot
    /// read the status of a refused upgrade).
    pub held: Result<Held, &'static Disconnect>,
    /// The token that came with the upgrade request, checked: `None` when
    /// none came (or auth is off).
    pub token: Option<Result<Arc<Entitlement>, AuthError>>,
    /// The client's address (for the open log line only: not kept).
    pub peer: std::net::SocketAddr,
}

/// How a session ends.
enum Exit {
    /// Close with this disconnect, counted in `disconnects_total`.
    Close(&'static Disconnect),
    /// The connection is gone (reset, EOF, I/O error); nothing more to send.
    Gone,
    /// The client sent a close frame: answer it (RFC 6455 5.5.1).
    PeerClosed,
}

/// Everything a session keeps for its life. It lives inside the session's
/// task, so every byte here is paid per connection.
struct Session {
    ctx: Arc<Context>,
    handle: Arc<SessionHandle>,
    /// Sorted by symbol; sized exactly (`reserve_exact`).
    subs: Vec<Sub>,
    /// Control replies not yet sent; its buffer is released once drained.
    control: ControlQueue,
    /// What the edge admitted the session with, held for its life (see
    /// [`Admission::held`]); `None` when it was refused.
    held: Option<Held>,
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
    raw_out: Option<Box<Unsent>>,
    /// Something may be dirty (woken by a shard, or a subscription changed).
    dirty: bool,
    /// Capacity for the next frame: the size of the last one.
    frame_hint: u32,
    /// Earliest `next_at` of a subscription held back by `max_hz`.
    due: Option<Instant>,
    /// Where the next scan starts: a frame cut at `max_frame_bytes` resumes
    /// after the last subscription it carried, so no symbol starves.
    scan_from: u32,
    /// Frames this task wrote (the fan-out's direct writes are counted in
    /// the parked state), for the close log line.
    frames: u32,
    /// When the session opened, ms since the gateway started (wraps after
    /// 49 days; only differences are used), for the close log line.
    opened_ms: u32,
    /// Ack mode is on (the window itself is in the parked state, under its
    /// lock; this flag spares sessions without it the lock).
    acking: bool,
    /// A `flow` reply waits in the control queue: how many queued replies
    /// up to and including it (0: none), and the window it starts.
    flow_reply: (u16, u8),
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
pub(crate) fn run<S>(
    mut ws: WebSocketStream<S>,
    ctx: Arc<Context>,
    adm: Admission,
    tcp: Option<Arc<TcpStream>>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = ctx.next_session_id();
    let cfg = &ctx.config;
    let (held, refused) = match adm.held {
        Ok(held) => (Some(held), None),
        Err(d) => (None, Some(d)),
    };
    let mut s = Session {
        limiter: OpLimiter::new(cfg),
        handle: Arc::new(SessionHandle::new(id)),
        subs: Vec::new(),
        control: ControlQueue::empty(),
        held,
        authed: !ctx.auth.enabled(),
        entitlement: None,
        key_conn: None,
        max_symbols: clamp_u32(cfg.max_symbols),
        raw_out: None,
        dirty: false,
        frame_hint: 256,
        due: None,
        scan_from: 0,
        frames: 0,
        opened_ms: ctx.uptime_ms(),
        acking: false,
        flow_reply: (0, 0),
        last_write: Instant::now(),
        ctx,
    };
    {
        let mut d = s.handle.direct.lock();
        d.tcp = tcp;
        d.window = ReadWindow::new(s.ctx.config.read_window());
    }
    let m = &s.ctx.metrics;
    m.connections.inc();
    // `None`: admitted, serve it.
    let refusal = if let Some(d) = refused {
        m.connections_rejected.inc();
        if *d == Disconnect::ADDRESS_FULL {
            m.ip_sessions_full.inc();
        }
        Some(Exit::Close(d))
    } else if let Some(exit) = s.admit_token(adm.token) {
        Some(exit)
    } else {
        s.ctx.metrics.connections_opened.inc();
        tracing::debug!(
            session = %format_args!("{id:016x}"),
            peer = %adm.peer,
            key = %s.key_name(),
            "session open"
        );
        let epoch = s.ctx.epoch();
        s.push(Control::Welcome {
            protocol: PROTOCOL_VERSION,
            session: &format!("{id:016x}"),
            epoch: &epoch,
            heartbeat_ms: s.ctx.config.heartbeat_ms,
            limits: s.limits(),
            auth_required: !s.authed,
        });
        None
    };
    async move {
        let exit = match refusal {
            None => s.serve(&mut ws).await,
            Some(refused) => refused,
        };
        s.log_close(&exit);
        match exit {
            Exit::Close(d) => {
                s.ctx.metrics.closed(d);
                s.finish(&mut ws, d).await;
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
        if s.acking {
            s.ctx.metrics.ack_mode_sessions.dec();
        }
        // A shard may still hold this handle for a while (a pass's targets,
        // a pace list): drop the socket and buffers it could reach, so the
        // connection closes with the task and nothing more is written.
        *s.handle.direct.lock() = Direct::default();
        // The key's connection is free before the session stops counting.
        drop(s.key_conn.take());
        // The edge's places are free before the gauge says so: a client
        // that waits for the gauge to fall is admitted.
        drop(s.held.take());
        s.ctx.metrics.connections.dec();
    }
}

/// A count that fits u32 in practice (symbol limits), saturated if not.
fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Session {
    fn cfg(&self) -> &SessionConfig {
        &self.ctx.config
    }

    /// The key's name for log lines ("-" without auth or before it).
    fn key_name(&self) -> &str {
        self.entitlement.as_ref().map_or("-", |e| e.name.as_str())
    }

    /// The session's close line (debug): how it ended, after how long and
    /// how many frames.
    fn log_close(&self, exit: &Exit) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let (code, reason) = match exit {
            Exit::Close(d) => (d.code, d.reason),
            Exit::PeerClosed => (0, "closed by the client"),
            Exit::Gone => (0, "connection lost"),
        };
        let frames = u64::from(self.frames) + u64::from(self.handle.direct.lock().frames);
        let ms = self.ctx.uptime_ms().wrapping_sub(self.opened_ms);
        tracing::debug!(
            session = %format_args!("{:016x}", self.handle.id),
            key = %self.key_name(),
            code,
            reason = %reason,
            duration_ms = ms,
            frames,
            "session closed"
        );
    }

    fn push(&mut self, msg: Control) {
        self.control.push_back(msg.to_json());
    }

    fn error(&mut self, id: Option<OpId>, code: ErrorCode, message: &str, symbol: Option<&str>) {
        self.ctx.metrics.error(code);
        self.push(Control::Error {
            id,
            code,
            message,
            symbol,
        });
    }

    /// The limits announced in `welcome` and `authenticated`.
    fn limits(&self) -> Limits {
        self.ctx.limits(self.max_symbols as usize)
    }

    fn drop_subs(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let syms: Vec<SymbolId> = self.subs.iter().map(|s| s.sym).collect();
        ops::release_trades(&self.ctx.slots, &self.subs);
        self.ctx.fanout.unsubscribe(&self.handle, &syms);
        self.ctx.metrics.subscriptions.sub(syms.len() as i64);
        self.subs.clear();
    }

    /// Parks the subscriptions in the handle (plain TCP sessions only).
    fn park(&mut self) {
        let mut d = self.handle.direct.lock();
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
        let mut d = self.handle.direct.lock();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FeedConfig, SimConfig};
    use hyper_util::rt::TokioIo;
    use std::mem::{size_of, size_of_val};
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The stream a real session runs on (see `start_session` in
    /// `edge/upgrade.rs`). The two production streams: plain TCP, and TLS (hyper's upgraded
    /// connection).
    type Prod = WebSocketStream<PlainTcp>;
    type ProdTls = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
    type Test = WebSocketStream<tokio::io::DuplexStream>;

    /// Each session is one task, and its future is most of the task's
    /// memory, so every byte here is paid once per connection. A tokio
    /// task cell is the future plus 104 bytes, rounded up to 128 (its
    /// alignment), so at most 1,048 bytes fits the 1,152-byte cell.
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
            WebSocketStream::from_raw_socket(a, Role::Server, Some(gw.ws_config())).await;
        let adm = Admission {
            held: Err(&Disconnect::SERVER_FULL),
            token: None,
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let fut = run(ws, gw.session_context().clone(), adm, None);
        // The stream is held once; count it at its (larger) production size.
        let prod = size_of::<Prod>().max(size_of::<ProdTls>());
        let size = size_of_val(&fut) - size_of::<Test>() + prod;
        eprintln!("session future: {size} bytes (stream {prod})");
        assert!(
            size <= 1048,
            "session future is {size} bytes (stream {}): over the 1,152-byte task cell",
            prod
        );
        let mut shutdown = gw.session_context().shutdown.subscribe();
        assert!(size_of_val(&shutdown.wait()) <= 80);
        drop(fut);
        gw.shutdown();
    }
}
