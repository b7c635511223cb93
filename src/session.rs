//! One WebSocket client: ops in, batched frames out, in a single task.
//!
//! The socket's read and write halves are driven from one `select!`, so a
//! session costs one task. A frame is built only at the moment the socket
//! can take one, from the newest slot values: while the client is slow,
//! updates simply wait in the slots (the dirty state is each subscription's
//! last sent seq, bounded by the subscription count). Control replies wait
//! in a small bounded queue and always go out first in the next frame, so
//! they are never stuck behind data. A socket that accepts nothing for
//! `slow_consumer_ms` is closed with 4008.

use crate::auth::{AuthError, Entitlement, KeyConnGuard};
use crate::fanout::SessionHandle;
use crate::gateway::Shared;
use crate::limits::OpLimiter;
use crate::model::{now_ns, Status, SymbolId};
use crate::protocol::{
    close, encode_quote, encode_status, parse_op, Control, ErrorCode, Limits, Op, OpError, OpId,
    PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// One subscription of a session.
struct Sub {
    sym: SymbolId,
    /// Seq of the last quote sent; the subscription is dirty while the
    /// slot's seq is higher.
    last_seq: u64,
    /// Minimum gap between two updates (from `max_hz`), zero for none.
    interval: Duration,
    /// Earliest time the next update may go (with `interval`).
    next_at: Option<Instant>,
    /// A snapshot is owed (sent with `"snapshot":true`).
    snapshot: bool,
    /// Last status the client was told.
    status: Status,
}

/// How a session is admitted.
pub struct Admission {
    /// Held for the session's life; `None` means the server is full and the
    /// session is closed with 1013 at once.
    pub permit: Option<OwnedSemaphorePermit>,
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

struct Session {
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    subs: Vec<Sub>,
    control: VecDeque<String>,
    authed: bool,
    /// What the session's key may see; `None` while unauthenticated or
    /// with auth off (then everything).
    entitlement: Option<Arc<Entitlement>>,
    /// One of the key's `max_connections`, held for the session's life.
    key_conn: Option<KeyConnGuard>,
    /// `session.max_symbols`, lowered by the key's `max_symbols`.
    max_symbols: usize,
    limiter: OpLimiter,
    /// Something may be dirty (woken by a shard, or a subscription changed).
    dirty: bool,
    /// Earliest `next_at` of a subscription held back by `max_hz`.
    due: Option<Instant>,
    scratch: Vec<u8>,
    /// Where the next scan starts: a frame cut at `max_frame_bytes` resumes
    /// after the last subscription it carried, so no symbol starves.
    scan_from: usize,
}

/// Runs one session to its end.
pub async fn run<S>(ws: WebSocketStream<S>, shared: Arc<Shared>, adm: Admission)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = shared.next_session_id();
    let handle = Arc::new(SessionHandle::new(id));
    let cfg = &shared.config.session;
    let mut s = Session {
        limiter: OpLimiter::new(cfg),
        shared: shared.clone(),
        handle,
        subs: Vec::new(),
        control: VecDeque::new(),
        authed: !shared.auth.enabled(),
        entitlement: None,
        key_conn: None,
        max_symbols: cfg.max_symbols,
        dirty: false,
        due: None,
        scratch: Vec::new(),
        scan_from: 0,
    };
    let m = &shared.metrics;
    m.connections.inc();
    let exit = if adm.permit.is_none() {
        m.connections_rejected.inc();
        Exit::Close(close::OVERLOADED, "server full, try again later")
    } else if let Some(exit) = s.admit_token(adm.token) {
        exit
    } else {
        m.connections_opened.inc();
        s.push(Control::Welcome {
            protocol: PROTOCOL_VERSION,
            session: &format!("{id:016x}"),
            heartbeat_ms: cfg.heartbeat_ms,
            limits: s.limits(),
            auth_required: !s.authed,
        });
        Exit::Gone
    };
    let (mut tx, rx) = ws.split();
    let exit = match exit {
        Exit::Gone => s.serve(&mut tx, rx).await,
        other => other,
    };
    match exit {
        Exit::Close(code, reason) => {
            m.closed(code);
            s.finish(&mut tx, code, reason).await;
        }
        Exit::PeerClosed => {
            // tungstenite queued the close reply when it read the client's
            // close; flushing sends it and completes the handshake.
            let grace = Duration::from_millis(s.shared.config.session.close_grace_ms);
            let _ = tokio::time::timeout(grace, futures_util::SinkExt::close(&mut tx)).await;
        }
        Exit::Gone => {}
    }
    s.drop_subs();
    // The key's connection is free before the session stops counting.
    drop(s.key_conn.take());
    m.connections.dec();
    drop(adm.permit);
}

impl Session {
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
            max_symbols: self.max_symbols,
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
            Ok(guard) => self.key_conn = guard,
            Err(crate::auth::KeyAtLimit) => {
                tracing::debug!(key = %ent.name, "{TOO_MANY}");
                self.shared.metrics.auth_failure("key_connection_limit");
                self.error(id, ErrorCode::Unauthorized, TOO_MANY, None);
                return Err(Exit::Close(close::POLICY, TOO_MANY));
            }
        }
        let cap = self.shared.config.session.max_symbols;
        self.max_symbols = ent.max_symbols.map_or(cap, |m| m.min(cap));
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

    /// The main loop. Returns how the session ends.
    async fn serve<Tx, Rx>(&mut self, tx: &mut Tx, mut rx: Rx) -> Exit
    where
        Tx: futures_util::Sink<Message, Error = WsError> + Unpin,
        Rx: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let cfg = self.shared.config.session.clone();
        let heartbeat = Duration::from_millis(cfg.heartbeat_ms);
        let slow = Duration::from_millis(cfg.slow_consumer_ms);
        // Liveness: a WebSocket Ping after `ping_interval_ms` of client
        // silence, close 1008 after `idle_timeout_ms` without any frame.
        let ping_every = Duration::from_millis(cfg.ping_interval_ms);
        let idle = Duration::from_millis(cfg.idle_timeout_ms);
        let mut last_rx = Instant::now();
        let mut last_ping = last_rx;
        let mut ping_due = false;
        let mut shutdown = self.shared.shutdown.subscribe();
        let handle = self.handle.clone();
        let mut flushing = false;
        let mut write_started = Instant::now();
        let mut last_write = Instant::now();
        loop {
            let now = Instant::now();
            if self.due.is_some_and(|d| d <= now) {
                self.due = None;
                self.dirty = true;
            }
            if self.control.len() > cfg.max_pending_control {
                return Exit::Close(close::SLOW_CONSUMER, "slow consumer: replies not read");
            }
            let idle_at = last_rx + idle;
            if now >= idle_at {
                return Exit::Close(close::POLICY, "idle timeout: no pong");
            }
            let mut ping_at = last_ping.max(last_rx) + ping_every;
            if !ping_due && now >= ping_at {
                ping_due = true;
                last_ping = now;
                ping_at = now + ping_every;
            }
            let has_work = !self.control.is_empty() || self.dirty || ping_due;
            let timer = if flushing {
                write_started + slow
            } else {
                let hb = last_write + heartbeat;
                self.due.map_or(hb, |d| d.min(hb))
            };
            let timer = timer.min(idle_at).min(ping_at);
            tokio::select! {
                biased;
                _ = shutdown.wait() => return Exit::Close(close::GOING_AWAY, "server shutting down"),
                // One branch for both write states: flushing the frame in
                // flight, or waiting until the sink can take the next one.
                r = poll_fn(|cx| {
                    if flushing {
                        tx.poll_flush_unpin(cx)
                    } else {
                        tx.poll_ready_unpin(cx)
                    }
                }), if flushing || has_work => {
                    if r.is_err() {
                        return Exit::Gone;
                    }
                    if flushing {
                        flushing = false;
                    } else if ping_due {
                        ping_due = false;
                        if tx.start_send_unpin(Message::Ping(Default::default())).is_err() {
                            return Exit::Gone;
                        }
                        flushing = true;
                        write_started = Instant::now();
                    } else if let Some(frame) = self.build_frame() {
                        if tx.start_send_unpin(Message::Text(frame.into())).is_err() {
                            return Exit::Gone;
                        }
                        flushing = true;
                        write_started = Instant::now();
                        last_write = write_started;
                    }
                }
                msg = rx.next() => {
                    last_rx = Instant::now();
                    if let Some(exit) = self.on_message(msg) {
                        return exit;
                    }
                }
                _ = handle.woken() => self.dirty = true,
                _ = tokio::time::sleep_until(timer) => {
                    if flushing {
                        if write_started.elapsed() >= slow {
                            return Exit::Close(close::SLOW_CONSUMER, "slow consumer: could not keep up");
                        }
                    } else if last_write.elapsed() >= heartbeat && self.control.is_empty() {
                        self.push(Control::Heartbeat { ts: now_ns() });
                    }
                }
            }
        }
    }

    /// Sends a close frame and gives it `close_grace_ms` to leave.
    async fn finish<Tx>(&mut self, tx: &mut Tx, code: u16, reason: &'static str)
    where
        Tx: futures_util::Sink<Message, Error = WsError> + Unpin,
    {
        let grace = Duration::from_millis(self.shared.config.session.close_grace_ms);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let pending: Vec<String> = self.control.drain(..).collect();
        let _ = tokio::time::timeout(grace, async {
            if !pending.is_empty() {
                let text = format!("[{}]", pending.join(","));
                if tx.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Message::Close(Some(frame))).await;
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
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(text);
        let parsed = parse_op(&mut buf, max_per_op);
        // Keep a small buffer for the next op, not the largest ever seen.
        if buf.capacity() <= 1024 {
            self.scratch = buf;
        }
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
        let max = self.max_symbols;
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
        let interval = hz.map_or(Duration::ZERO, |h| Duration::from_secs_f64(1.0 / h));
        let slots = self.shared.slots.clone();
        let mut added = Vec::with_capacity(new);
        for &sym in &syms {
            let pos = match self.find(sym) {
                Ok(p) => p,
                Err(p) => {
                    self.subs.insert(
                        p,
                        Sub {
                            sym,
                            last_seq: 0,
                            interval,
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
            sub.interval = interval;
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
        self.shared.fanout.unsubscribe(&self.handle, &removed);
        self.shared.metrics.subscriptions.sub(removed.len() as i64);
        let names: Vec<&str> = syms.iter().map(|s| self.shared.symbols.name(*s)).collect();
        let msg = Control::Unsubscribed { id, symbols: names }.to_json();
        self.control.push_back(msg);
    }

    /// Builds the next frame: pending control replies first, then the
    /// newest value of every dirty subscription. `None` if there is
    /// nothing to send (everything held back by `max_hz`).
    fn build_frame(&mut self) -> Option<String> {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        let max = shared.config.session.max_frame_bytes;
        let mut out = String::with_capacity(256);
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
        let mut n_data = 0u64;
        if self.dirty && out.len() < max {
            self.dirty = false;
            self.handle.clear();
            let now = Instant::now();
            let now_wall = now_ns();
            let mut due: Option<Instant> = None;
            let mut conflated = 0u64;
            let n = self.subs.len();
            let start = if self.scan_from < n {
                self.scan_from
            } else {
                0
            };
            self.scan_from = 0;
            for k in 0..n {
                let i = (start + k) % n;
                if out.len() >= max {
                    // The rest goes in the next frame, starting here.
                    self.dirty = true;
                    self.scan_from = i;
                    break;
                }
                let sub = &mut self.subs[i];
                let st = shared.slots.status(sub.sym);
                if st != sub.status {
                    if n_ctrl + n_data > 0 {
                        out.push(',');
                    }
                    encode_status(&mut out, shared.symbols.name(sub.sym), st, now_wall);
                    sub.status = st;
                    n_data += 1;
                }
                let seq = shared.slots.seq(sub.sym);
                if seq <= sub.last_seq && !(sub.snapshot && seq > 0) {
                    continue;
                }
                if !sub.snapshot {
                    if let Some(at) = sub.next_at {
                        if at > now {
                            due = Some(due.map_or(at, |d: Instant| d.min(at)));
                            continue;
                        }
                    }
                }
                if n_ctrl + n_data > 0 {
                    out.push(',');
                }
                let was_snapshot = sub.snapshot;
                let sent = if sub.snapshot {
                    shared.slots.read(sub.sym).map(|(q, seq)| {
                        encode_quote(&mut out, shared.symbols.name(sub.sym), seq, &q, true);
                        (seq, q.gw_ts)
                    })
                } else {
                    let r = shared.fanout.append_latest(sub.sym, &mut out);
                    if let Some((seq, _)) = r {
                        if sub.last_seq > 0 && seq > sub.last_seq + 1 {
                            conflated += seq - sub.last_seq - 1;
                        }
                    }
                    r
                };
                match sent {
                    Some((seq, gw_ts)) => {
                        sub.last_seq = seq;
                        sub.snapshot = false;
                        if !sub.interval.is_zero() {
                            sub.next_at = Some(now + sub.interval);
                        }
                        if !was_snapshot {
                            // A snapshot's age is how quiet the symbol is,
                            // not how fast the gateway is.
                            m.latency
                                .observe(now_wall.saturating_sub(gw_ts).max(0) as f64 / 1e9);
                        }
                        n_data += 1;
                    }
                    None => {
                        // Value vanished between seq and read: cannot happen
                        // (slots never empty), but never emit a dangling comma.
                        if out.ends_with(',') {
                            out.pop();
                        }
                    }
                }
            }
            if let Some(d) = due {
                self.due = Some(self.due.map_or(d, |x| x.min(d)));
            }
            if conflated > 0 {
                m.conflated.inc_by(conflated);
            }
        }
        if n_ctrl + n_data == 0 {
            return None;
        }
        out.push(']');
        m.frames_out.inc();
        m.bytes_out.inc_by(out.len() as u64);
        m.control_out.inc_by(n_ctrl);
        m.messages_out.inc_by(n_data);
        Some(out)
    }
}
