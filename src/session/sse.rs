//! A Server-Sent Events session (`GET /v1/sse`): the same frames a
//! WebSocket client gets, each as one event's `data:`, for clients that
//! cannot or should not open a WebSocket.
//!
//! The subscription is fixed by the request (symbols, `max_hz`), so there
//! are no ops. The session registers with the fan-out like a WebSocket
//! session whose task is never parked: every write to one of its symbols
//! wakes it, and it builds its next frame from the slots with
//! [`append_data`], exactly as a WebSocket session does. Frames go to the
//! HTTP body through a channel of one frame: while the client does not
//! read, the send waits, nothing more is built, and the values coalesce in
//! the slots; the next frame carries the newest. A send that waits longer
//! than `slow_consumer_ms` ends the stream (counted as `slow_write`).
//! After `heartbeat_ms` without an event a comment (`: hb`) goes out.

use super::Context;
use super::Held;
use crate::auth::{Entitlement, KeyConnGuard};
use crate::fanout::SessionHandle;
use crate::model::{Status, SymbolId};
use crate::outbox::{append_data, Sub};
use crate::protocol::{Control, Disconnect, PROTOCOL_VERSION};
use crate::trades::Cursor;
use bytes::Bytes;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What an SSE client reconnects after (`retry:`), in ms: about the
/// WebSocket clients' first backoff.
pub(crate) const RETRY_MS: u64 = 2000;

/// A checked request: what the session serves and what it holds.
pub(crate) struct SseStart {
    pub syms: Vec<SymbolId>,
    pub max_hz: Option<f64>,
    /// Every trade of the symbols too (`trades=true`).
    pub trades: bool,
    /// The key's connection, held for the session's life (auth on).
    pub key_conn: Option<KeyConnGuard>,
    pub entitlement: Option<Arc<Entitlement>>,
    /// The edge's places (server and address), held for the session's life.
    pub held: Held,
}

/// Waits for the fan-out's wake.
fn woken(h: &SessionHandle) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if h.poll_woken(cx) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Serves one SSE client until it goes away, the gateway stops, or it
/// stops reading for `slow_consumer_ms`.
pub(crate) async fn run(ctx: Arc<Context>, start: SseStart, tx: mpsc::Sender<Bytes>) {
    // The places and the key's connection are held until the end.
    let SseStart {
        syms: asked,
        max_hz,
        trades,
        key_conn: _key_conn,
        entitlement,
        held: _held,
    } = start;
    let cfg = &ctx.config;
    let id = ctx.next_session_id();
    let handle = Arc::new(SessionHandle::new(id));
    let hz = max_hz.map(|h| h.min(cfg.max_hz_limit));
    let interval = super::ops::interval_us(hz);
    let mut syms = asked;
    syms.sort_unstable();
    syms.dedup();
    let mut subs: Vec<Sub> = syms
        .iter()
        .map(|&sym| Sub {
            sym,
            interval_us: interval,
            last_seq: 0,
            next_at: None,
            // A symbol with a value gets it as a snapshot; one without gets
            // its first value as an ordinary update.
            snapshot: ctx.slots.seq(sym) > 0,
            status: Status::Live,
            // From the next trade on.
            trades: if trades {
                ctx.slots.trades().listen(sym, true);
                Cursor::at(ctx.slots.trades().head(sym))
            } else {
                Cursor::OFF
            },
        })
        .collect();
    ctx.fanout.subscribe(&handle, &syms);
    let m = &ctx.metrics;
    m.subscriptions.add(syms.len() as i64);
    m.sse_sessions.inc();
    m.connections_opened.inc();
    let max_symbols = crate::auth::symbol_cap(entitlement.as_deref(), cfg.max_symbols);
    let session = format!("{id:016x}");
    let names: Vec<&str> = syms.iter().map(|s| ctx.symbols.name(*s)).collect();
    let epoch = ctx.epoch();
    let mut head = Control::Welcome {
        protocol: PROTOCOL_VERSION,
        session: &session,
        epoch: &epoch,
        heartbeat_ms: cfg.heartbeat_ms,
        limits: ctx.limits(max_symbols),
        auth_required: false,
    }
    .to_json();
    head.push(',');
    head.push_str(
        &Control::Subscribed {
            id: None,
            symbols: names,
            max_hz: hz,
            trades,
            pattern: None,
        }
        .to_json(),
    );
    let mut first = Some(head);
    let mut shutdown = ctx.shutdown.subscribe();
    let heartbeat = Duration::from_millis(cfg.heartbeat_ms.max(1));
    let slow = Duration::from_millis(cfg.slow_consumer_ms.max(1));
    let mut scan_from = 0u32;
    let mut last_sent = Instant::now();
    let send = |text: String| {
        let tx = &tx;
        async move {
            let n = text.len();
            match tokio::time::timeout(slow, tx.send(Bytes::from(text))).await {
                Ok(Ok(())) => Ok(n),
                Ok(Err(_)) => Err(None),
                Err(_) => Err(Some(&Disconnect::SLOW_WRITE)),
            }
        }
    };
    let end: Option<&'static Disconnect> = 'serve: {
        if let Err(e) = send(format!("retry: {RETRY_MS}\n\n")).await {
            break 'serve e;
        }
        loop {
            handle.clear();
            let now = Instant::now();
            let mut out = String::with_capacity(256);
            out.push_str("data: [");
            let control = first.take();
            let comma = control.is_some();
            if let Some(c) = &control {
                out.push_str(c);
            }
            let cache = ctx.fanout.cache();
            let max = cfg.max_frame_bytes;
            let d = append_data(
                cache,
                &mut subs,
                &mut scan_from,
                &mut out,
                comma,
                max,
                now,
                None,
            );
            if d.n > 0 || comma {
                out.push_str("]\n\n");
                match send(out).await {
                    Ok(n) => {
                        m.frames_out.inc();
                        m.messages_out.inc_by(d.n as u64 + u64::from(comma));
                        m.bytes_out.inc_by(n as u64);
                        m.conflated.inc_by(d.conflated);
                        d.count_trades(m);
                        last_sent = Instant::now();
                    }
                    Err(e) => break 'serve e,
                }
                if d.more {
                    continue;
                }
            }
            let beat_at = last_sent + heartbeat;
            let wake_at = d.due.map_or(beat_at, |due| due.min(beat_at));
            tokio::select! {
                _ = woken(&handle) => {}
                _ = tokio::time::sleep_until(wake_at) => {
                    if Instant::now() >= beat_at {
                        match send(": hb\n\n".to_string()).await {
                            Ok(n) => {
                                m.bytes_out.inc_by(n as u64);
                                last_sent = Instant::now();
                            }
                            Err(e) => break 'serve e,
                        }
                    }
                }
                _ = shutdown.wait() => break 'serve Some(&Disconnect::SHUTDOWN),
                _ = tx.closed() => break 'serve None,
            }
        }
    };
    if let Some(d) = end {
        m.closed(d);
        tracing::debug!(session = %session, reason = d.reason, "sse session ended");
    }
    super::ops::release_trades(&ctx.slots, &subs);
    ctx.fanout.unsubscribe(&handle, &syms);
    m.subscriptions.sub(syms.len() as i64);
    m.sse_sessions.dec();
}
